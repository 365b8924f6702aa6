//! The `switchyard` binary as users run it: a separate process, its exit
//! status, what it prints, and how it reacts to signals.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    c
}

fn output(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_all_three_mistakes_and_fails() {
    let (code, _, err) = output(&["check", "tests/data/three_mistakes.click"]);
    assert_eq!(code, 3, "{err}");
    let heads: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(
        heads,
        [
            "tests/data/three_mistakes.click:2:35: error: 'src :: InfiniteSource': STOP: expected true or false, found 'yes please'",
            "tests/data/three_mistakes.click:4:18: error: unknown element class 'Countr'",
            "tests/data/three_mistakes.click:7:5: error: illegal reuse of 'out :: Counter' push output 0",
        ]
    );
    assert!(
        err.contains("4 | hub[0] -> old :: Countr -> [0]sel :: InputSwitch(0);\n  |                  ^^^^^^"),
        "{err}"
    );
    assert!(err.contains("did you mean 'Counter'?"), "{err}");
}

#[test]
fn check_accepts_the_shipped_configs() {
    for f in [
        "configs/rollback.click",
        "configs/bench-hub-switch.click",
        "configs/canary.click",
    ] {
        let (code, out, err) = output(&["check", f]);
        assert_eq!(code, 0, "{f}: {err}");
        assert!(out.contains(": ok"), "{out}");
    }
}

#[test]
fn run_prints_handlers_like_click() {
    let (code, out, err) = output(&[
        "run",
        "-e",
        "InfiniteSource(LIMIT $N, STOP true) -> t :: Tee(2); t[0] -> a :: Counter -> Discard; t[1] -> b :: Counter -> Discard;",
        "N=100000",
        "--handler",
        "a.count",
        "-H",
        "b.count",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "a.count:\n100000\nb.count:\n100000\n");
    assert!(err.contains("switchyard: stopped after"), "{err}");
}

#[test]
fn command_line_defines_override_the_file() {
    let (code, out, err) = output(&[
        "run",
        "configs/bench-hub-switch.click",
        "N=4242",
        "-q",
        "-H",
        "out.count",
        "-H",
        "new.count",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "out.count:\n4242\nnew.count:\n4242\n");
}

#[test]
fn unknown_handler_is_a_usage_error_before_running() {
    let (code, _, err) = output(&[
        "run",
        "-e",
        "InfiniteSource(LIMIT 1, STOP true) -> Discard;",
        "-H",
        "x.count",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("No element named 'x'"), "{err}");
}

#[test]
fn print_writes_click_style_lines() {
    let (code, _, err) = output(&[
        "run",
        "-q",
        "-e",
        r"InfiniteSource(DATA \<0a0b0c0d 0e>, LIMIT 2, STOP true) -> Print(new) -> Discard;",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "new:    5 | 0a0b0c0d 0e\nnew:    5 | 0a0b0c0d 0e\n");
}

/// The default job: runs the built-in rollback graph, prints a line of
/// counters a second, and stops cleanly on a signal with final counters.
fn default_run_stops_on(signal: &str) {
    // The demo's socket goes in the runtime directory: a scratch one.
    let runtime_dir = common::scratch_dir();
    let mut child = bin()
        .arg("run")
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait for the first per-second counter line: traffic is flowing.
    let tick = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("[   1s]"))
        .expect("a counter line");
    assert!(tick.contains("old.count=") && tick.contains("sel.switch=0"), "{tick}");
    let old: u64 = tick
        .split("old.count=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(old > 0, "no traffic after a second: {tick}");
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(0), "{rest:?}");
    let last = rest
        .iter()
        .find(|l| l.starts_with("switchyard: stopped after"))
        .expect("final counters");
    assert!(last.contains("out.count="), "{last}");
    // The demo's socket is gone with it.
    let left: Vec<_> = std::fs::read_dir(&runtime_dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `switchyard run` alone is the rollback itself: it prints the dashboard's
/// address with a write token, and the exact lines that go live and roll
/// back, on a control socket in the runtime directory. Run as printed,
/// they move production; the token works on the API.
#[test]
fn the_demo_opens_a_socket_and_the_dashboard_and_says_how() {
    let runtime_dir = common::scratch_dir();
    let mut child = bin()
        .arg("run")
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped however the test ends: a failed assertion must not leave a
    // demo running.
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
    let guard = Stop(child.id());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let done = line.starts_with("switchyard: control socket listening on");
        said.push(line);
        if done {
            break;
        }
    }
    let find = |label: &str| {
        said.iter()
            .find_map(|l| l.strip_prefix(&format!("switchyard:   {label}")))
            .unwrap_or_else(|| panic!("no {label} line in {said:#?}"))
            .trim()
            .to_string()
    };
    let (dashboard, go_live, roll_back) = (find("dashboard"), find("go live"), find("roll back"));
    let socket = runtime_dir.join("switchyard.sock");
    assert!(
        go_live.ends_with(&format!("ctl -s {} write sel.switch 1", socket.display())),
        "{go_live}"
    );
    assert!(roll_back.ends_with("write sel.switch 0"), "{roll_back}");
    // The printed commands, run as printed (through a shell).
    let sh = |cmd: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let read = |h: &str| {
        let out = bin()
            .args(["ctl", "-s", socket.to_str().unwrap(), "read", h])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    sh(&go_live);
    assert_eq!(read("sel.switch"), "1");
    sh(&roll_back);
    assert_eq!(read("sel.switch"), "0");
    // The dashboard's address carries a write token for its API.
    let (addr, token) = dashboard
        .strip_prefix("http://")
        .and_then(|d| d.split_once("/#token="))
        .unwrap_or_else(|| panic!("{dashboard}"));
    let (status, page) = common::http(addr, "GET", "/", None, &[], "");
    assert_eq!((status, page), (200, serde_json::Value::Null), "the page is HTML");
    let (status, who) = common::http(addr, "GET", "/api/v1/whoami", Some(token), &[], "");
    assert_eq!(status, 200);
    assert_eq!(who["scope"], "write");
    let (status, _) = common::http(addr, "GET", "/api/v1/whoami", None, &[], "");
    assert_eq!(status, 401, "without the token nothing is open");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest:?}");
    std::mem::forget(guard);
    assert!(!socket.exists());
    let _ = std::fs::remove_dir_all(&runtime_dir);
}

#[test]
fn default_run_stops_cleanly_on_sigint() {
    default_run_stops_on("-INT");
}

#[test]
fn default_run_stops_cleanly_on_sigterm() {
    default_run_stops_on("-TERM");
}

#[test]
fn elements_prints_the_reference() {
    let (code, out, _) = output(&["elements"]);
    assert_eq!(code, 0);
    for class in ["Classifier", "Counter", "InputSwitch", "Queue", "Tee", "Unqueue"] {
        assert!(out.lines().any(|l| l.starts_with(class)), "{class} missing:\n{out}");
    }
    let (code, out, _) = output(&["elements", "InputSwitch"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("InputSwitch (ports -/1, processing h/h)"), "{out}");
    for section in [
        "# Ports",
        "# Arguments",
        "# Handlers",
        "`switch` (read/write, persistent)",
    ] {
        assert!(out.contains(section), "{section} missing:\n{out}");
    }
    let (code, _, err) = output(&["elements", "Countr"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean 'Counter'?"), "{err}");
}

#[test]
fn graph_draws_the_active_path_bold() {
    let (code, out, err) = output(&["graph", "configs/rollback.click"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("digraph switchyard {"), "{out}");
    let edge = |from: &str| {
        out.lines()
            .find(|l| l.contains(&format!("\"{from}\" -> \"sel\"")))
            .unwrap()
            .to_string()
    };
    assert!(edge("old").contains("style=bold"), "{out}");
    assert!(edge("new").contains("style=dashed"), "{out}");
}

/// `require(library FILE)` reads element classes from a file beside the
/// configuration (Click's way of sharing them); a missing library is an
/// error at the require, naming where it looked; an error inside the
/// library names the library's file and line.
#[test]
fn libraries_are_read_beside_the_configuration() {
    let dir = std::env::temp_dir().join(format!("sy-lib-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(
        dir.join("lib/branches.click"),
        "elementclass Branch { LIMIT $n | input -> c :: Counter -> output; }\n",
    )
    .unwrap();
    let main = dir.join("main.click");
    std::fs::write(
        &main,
        "require(library lib/branches.click);\nInfiniteSource(LIMIT 40, STOP true) -> b :: Branch(LIMIT 1) -> Discard;\n",
    )
    .unwrap();
    let main = main.to_str().unwrap();
    let (code, out, err) = output(&["run", main, "-q", "--handler", "b/c.count"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "b/c.count:\n40\n");

    // After writing `text` to `file`, checking the configuration fails
    // with `expected` among its errors.
    let fails_with = |file: &str, text: &str, expected: &str| {
        std::fs::write(dir.join(file), text).unwrap();
        let (code, _, err) = output(&["check", main]);
        assert_eq!(code, 3);
        assert!(err.contains(expected), "{err}");
    };
    fails_with(
        "lib/branches.click",
        "elementclass Branch { LIMIT $n | input -> Countr -> output; }\n",
        "lib/branches.click:1:43: error: undeclared element 'Countr'",
    );
    fails_with(
        "main.click",
        "require(library nope.click);\nIdle -> Discard;\n",
        "main.click:1:17: error: library 'nope.click' not found (looked for ",
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn readiness_is_sent_to_systemd_once_the_router_runs() {
    // Type=notify: READY=1 on $NOTIFY_SOCKET once the graph runs and the
    // sockets listen, STOPPING=1 when a signal stops it.
    let dir = std::env::temp_dir().join(format!("sy-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let control = dir.join("ctl.sock");
    let mut child = bin()
        .args([
            "run",
            "-q",
            "-e",
            "Idle -> Discard;",
            "--control",
            control.to_str().unwrap(),
        ])
        .env("NOTIFY_SOCKET", &path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 within a minute");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(control.exists(), "ready means the control socket listens");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
