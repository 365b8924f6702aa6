//! Click users' command line and scripts, run as a separate process:
//! `switchyard click` with Click's options, output formats, messages and
//! exit codes (checked against Click 2.1's userlevel driver and its
//! documentation), `switchyard flatten`, and Script/DriverManager.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

fn click(args: &[&str]) -> (i32, String, String) {
    click_with_stdin(args, None)
}

fn click_with_stdin(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("click")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run switchyard click");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    // A hang is a failure, not a stuck test run.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(std::time::Duration::from_secs(60)) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    });
    let out = child.wait_with_output().expect("wait");
    drop(tx);
    let _ = watchdog.join();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FIVE: &str = "i :: InfiniteSource(LIMIT 5, STOP true) -> c :: Counter -> Discard;";

#[test]
fn handlers_print_bare_alone_and_named_together() {
    assert_eq!(click(&["-e", FIVE, "-h", "c.count"]), (0, "5\n".into(), String::new()));
    let (rc, out, _) = click(&["-e", FIVE, "-h", "c.count", "-h", "i.count"]);
    assert_eq!((rc, out.as_str()), (0, "c.count:\n5\n\ni.count:\n5\n\n"));
    // A class name or a glob names every match, even alone.
    let (_, out, _) = click(&["-e", FIVE, "-h", "Counter.count"]);
    assert_eq!(out, "c.count:\n5\n\n");
    let (_, out, _) = click(&["-e", FIVE, "-h", "*.count"]);
    assert_eq!(out, "i.count:\n5\n\nc.count:\n5\n\nDiscard@3.count:\n5\n\n");
    // A global handler, and the list.
    let (_, out, _) = click(&["-e", FIVE, "-h", "list"]);
    assert_eq!(out, "3\ni\nc\nDiscard@3\n");
    // Failures go to standard error, the rest still prints, status 1.
    let (rc, out, err) = click(&["-e", FIVE, "-h", "c.count", "-h", "c.nosuch", "-h", "c.reset"]);
    assert_eq!(rc, 1);
    assert_eq!(out, "c.count:\n5\n\n");
    assert_eq!(err, "no 'c.nosuch' handler\n'c.reset' is a write handler\n");
    let (rc, _, err) = click(&["-e", FIVE, "-h", "nosuch.count", "-h", "z*.count"]);
    assert_eq!(
        (rc, err.as_str()),
        (1, "no element 'nosuch'\nno element matching 'z*'\n")
    );
}

#[test]
fn quit_output_and_exit_handler() {
    // -q: initialized, not run; -o - prints the flat configuration first.
    let (rc, out, _) = click(&["-e", FIVE, "-qo-", "-h", "c.count"]);
    assert_eq!(rc, 0);
    assert_eq!(
        out,
        "i :: InfiniteSource(LIMIT 5, STOP true);\nc :: Counter;\nDiscard@3 :: Discard;\n\ni -> c\n    -> Discard@3;\n0\n"
    );
    // -x: an integer is the status, true 0, false 1, else 255.
    assert_eq!(click(&["-e", FIVE, "-x", "c.count"]).0, 5);
    let script = |v: &str| format!("s :: Script(TYPE PASSIVE, return {v})");
    assert_eq!(click(&["-e", &script("300"), "-q", "-x", "s.run"]).0, 44);
    assert_eq!(click(&["-e", &script("true"), "-q", "-x", "s.run"]).0, 0);
    assert_eq!(click(&["-e", &script("false"), "-q", "-x", "s.run"]).0, 1);
    let (rc, _, err) = click(&["-e", &script("abc"), "-q", "-x", "s.run"]);
    assert_eq!((rc, err.as_str()), (255, "exit handler value should be integer\n"));
    assert_eq!(click(&["-e", FIVE, "-q", "-x", "c.count"]).0, 0);
}

#[test]
fn configurations_come_from_files_expressions_stdin_and_defines() {
    let dir = common::scratch_dir();
    let file = dir.join("c.click");
    std::fs::write(
        &file,
        "define($N 7);\nInfiniteSource(LIMIT $N, STOP true) -> c :: Counter -> Discard;\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(click(&[f, "-h", "c.count"]).1, "7\n");
    assert_eq!(
        click(&["-f", f, "N=3", "-h", "c.count"]).1,
        "3\n",
        "the command line wins"
    );
    assert_eq!(click(&["N=2", f, "-h", "c.count"]).1, "2\n", "before or after the file");
    let (_, out, _) = click_with_stdin(&["-h", "c.count"], Some(FIVE));
    assert_eq!(out, "5\n");
    let (rc, _, err) = click(&["-e", "a", "-f", f]);
    assert_eq!(rc, 1);
    assert_eq!(
        err,
        "click: router configuration specified twice\nUsage: click [OPTION]... [ROUTERFILE]\nTry 'click --help' for more information.\n"
    );
    let missing = dir.join("nonexistent.click");
    let (rc, _, err) = click(&[missing.to_str().unwrap()]);
    assert_eq!(
        (rc, err),
        (1, format!("{}: No such file or directory\n", missing.display()))
    );
}

#[test]
fn errors_read_as_clicks() {
    let (rc, _, err) = click(&["-e", "x :: Nope -> Discard;"]);
    assert_eq!((rc, err.as_str()), (1, "config:1: unknown element class 'Nope'\n"));
    let (rc, _, err) = click(&["-e", "p :: Print(a);\nIdle -> p;"]);
    assert_eq!(rc, 1);
    assert_eq!(
        err,
        "config:1: 'p :: Print' output 0 unused\nRouter could not be initialized!\n"
    );
    let (rc, _, err) = click(&["-e", "Idle -> Counter(1, 2) -> Discard;"]);
    assert_eq!(rc, 1);
    assert_eq!(
        err,
        "config:1: While configuring 'Counter@2 :: Counter':\n  too many arguments\nRouter could not be initialized!\n"
    );
    // A reused port is reported where it was first connected.
    let (_, _, err) = click(&["-e", "i :: InfiniteSource -> Discard;\ni -> Discard;"]);
    assert_eq!(
        err,
        "config:1: illegal reuse of 'i :: InfiniteSource' push output 0\nRouter could not be initialized!\n"
    );
    // Click's other names for a Queue.
    let (_, out, _) = click(&[
        "-e",
        "InfiniteSource(LIMIT 3, STOP true) -> SimpleQueue -> Unqueue -> c :: Counter -> Discard;",
        "-h",
        "c.count",
    ]);
    assert_eq!(out, "3\n");
    // Syntax errors in Click's shorter words.
    assert_eq!(
        click(&["-e", "i :: InfiniteSource ->"]).2,
        "config:1: syntax error near ''\n"
    );
    assert_eq!(
        click(&["-e", "i :: InfiniteSource -> -> Discard"]).2,
        "config:1: syntax error near '->'\n"
    );
    // From standard input, the file is <stdin>.
    let (_, _, err) = click_with_stdin(&[], Some("\n\nx :: Nope;"));
    assert_eq!(err, "<stdin>:3: unknown element class 'Nope'\n");
    // An empty configuration says so and exits 0, handlers still read.
    let (rc, out, err) = click(&["-e", "", "-h", "list"]);
    assert_eq!((rc, out.as_str()), (0, "0\n"));
    assert_eq!(err, "warning: config: configuration has no elements, exiting\n");
    let (rc, _, err) = click(&["--bogus"]);
    assert_eq!(rc, 1);
    assert!(
        err.starts_with("click: unrecognized option '--bogus'\nUsage: click"),
        "{err}"
    );
}

#[test]
fn flatten_prints_clicks_flat_configuration() {
    let dir = common::scratch_dir();
    let file = dir.join("f.click");
    std::fs::write(
        &file,
        "elementclass Pipe { $n | input -> q :: Queue($n) -> u :: Unqueue -> output }\n\
         src :: InfiniteSource(LIMIT 10, STOP true) -> Pipe(5) -> t :: Tee(2);\n\
         t[0] -> Discard; t[1] -> c :: Counter -> Discard;\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["flatten", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Pipe@2/q :: Queue(5);\n"), "{text}");
    assert!(text.contains("c :: Counter;\n"), "{text}");
    assert!(
        text.contains("\nsrc -> Pipe@2/q\n    -> Pipe@2/u\n    -> t\n    -> Discard@"),
        "{text}"
    );
    assert!(text.contains("t [1] -> c\n    -> Discard@"), "{text}");
    // Errors in click-flatten's format.
    let bad = dir.join("bad.click");
    std::fs::write(&bad, "->Null;\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("flatten")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{}:1: syntax error near '->'\n", bad.display())
    );
    // The same text as the running router's flatconfig handler.
    let (_, flat, _) = click(&["-f", file.to_str().unwrap(), "-q", "-h", "flatconfig"]);
    assert_eq!(flat, text);
}

#[test]
fn scripts_compute_loop_and_stop_the_router() {
    // Click's documented loop: print 0..4, then stop.
    let (rc, out, _) = click(&[
        "-e",
        "Script(set x 0, label begin_loop, print $x, set x $(add $x 1), goto begin_loop $(lt $x 5), stop)",
    ]);
    assert_eq!((rc, out.as_str()), (0, "0\n1\n2\n3\n4\n"));
    // print: a handler when it starts with a letter, else unquoted text;
    // variables keep their quotes; undefined variables stay as written.
    let (_, out, err) = click(&[
        "-e",
        "c :: Counter; Idle -> c -> Discard;
         Script(print c.count, print \"c.count\", print '\"c.count\"', set x c.count, print $x, print $($x),
                set q \"a b\", print $q, setq u \"a b\", print $u, print $undefined,
                print $(div 7 2) $(sprintf \"%05x\" 127) $(eq 10 0xA), read c.count, stop)",
    ]);
    assert_eq!(
        out,
        "0\nc.count\n\"c.count\"\nc.count\n0\n\"a b\"\na b\n$undefined\n3.5 0007f true\n"
    );
    assert_eq!(err, "c.count:\n0\n");
    // A passive script is a computed handler.
    let (_, out, _) = click(&[
        "-e",
        "s :: Script(TYPE PASSIVE, return $(add $1 $2)); Script(print $(s.run 3 4), stop)",
    ]);
    assert_eq!(out, "7\n");
    // Writes report their status in $?; a refused write does not stop the script.
    let (_, out, err) = click(&[
        "-e",
        "Idle -> sw :: Switch(0) -> Discard; Script(write sw.switch 5, print $?, write sw.switch 0, print $?, stop)",
    ]);
    assert_eq!(out, "-22\n0\n");
    assert!(err.contains("While executing 'Script@4 :: Script':"), "{err}");
}

#[test]
fn passive_scripts_resume_after_a_wait_and_save_prints_to_a_file() {
    let (_, out, _) = click(&[
        "-e",
        "s :: Script(TYPE PASSIVE, print \"a\", wait 0.1, print \"b\"); Script(write s.run, wait 0.5, stop)",
    ]);
    assert_eq!(out, "a\nb\n");
    let dir = common::scratch_dir();
    let file = dir.join("saved.txt");
    let f = file.to_str().unwrap();
    let (rc, _, _) = click(&[
        "-e",
        &format!("Script(save \"$(add 1 2)\" {f}, append \"$(add 2 2)\" {f}, stop)"),
    ]);
    assert_eq!(rc, 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "3\n4\n");
}

#[test]
fn a_packet_script_routes_each_packet_by_its_return_value() {
    let (_, out, _) = click(&[
        "-e",
        "InfiniteSource(LIMIT 4, STOP true) -> s :: Script(TYPE PACKET, init n 0, set n $(add $n 1), return $(mod $n 2));
         s[0] -> c0 :: Counter -> Discard; s[1] -> c1 :: Counter -> Discard;",
        "-h",
        "c0.count",
        "-h",
        "c1.count",
    ]);
    assert_eq!(out, "c0.count:\n2\n\nc1.count:\n2\n\n");
}

#[test]
fn a_driver_manager_decides_when_the_router_stops() {
    // Each STOP true is a stop request the driver takes as a step.
    let (rc, out, _) = click(&[
        "-e",
        "InfiniteSource(LIMIT 3, STOP true) -> c :: Counter -> Discard;
         DriverManager(print \"dm start\", wait_stop, print \"after stop event c=$(c.count)\")",
    ]);
    assert_eq!((rc, out.as_str()), (0, "dm start\nafter stop event c=3\n"));
    // Two requests from another script, one per pause; `stop 2` is two.
    let (_, out, _) = click(&[
        "-e",
        "DriverManager(pause, print \"a\", pause, print \"b\");
         Script(write stop, print \"w1\", wait 0.1, write stop, print \"w2\")",
    ]);
    // The driver runs on its own thread: its lines and the writer's
    // interleave, each in its own order.
    let lines: Vec<&str> = out.lines().collect();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("{l} in {out}"))
    };
    assert!(at("a") < at("b") && at("w1") < at("w2") && at("w1") < at("b"), "{out}");
    let (_, out, _) = click(&[
        "-e",
        "DriverManager(pause 2, print \"a\"); Script(write stop 2, print \"w2\")",
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>().len(), 2);
    assert!(out.contains("a\n") && out.contains("w2\n"), "{out}");
    // After an explicit end the next request stops the router.
    let (rc, out, _) = click(&[
        "-e",
        "DriverManager(wait 0.1, print \"t\", end); Script(wait 0.5, print \"still running\", write stop)",
    ]);
    assert_eq!((rc, out.as_str()), (0, "t\nstill running\n"));
    // A driver that ends on a request lets it stop the router; an empty
    // DriverManager waits for one request first.
    let (rc, out, _) = click(&[
        "-e",
        "InfiniteSource(LIMIT 3, STOP true) -> Discard; DriverManager(wait_stop, print \"x\", end)",
    ]);
    assert_eq!((rc, out.as_str()), (0, "x\n"));
    let (rc, out, _) = click(&["-e", "DriverManager; Script(wait 0.1, print \"w\", write stop)"]);
    assert_eq!((rc, out.as_str()), (0, "w\n"), "not stopped before the request");
    // One driver per configuration.
    let (rc, _, err) = click(&["-e", "a :: DriverManager; b :: DriverManager;"]);
    assert_eq!(rc, 1);
    assert!(err.contains("While configuring 'b :: DriverManager'"), "{err}");
}

#[test]
fn a_script_rollback_procedure_writes_through_the_audited_control_plane() {
    // The README's procedure: raise the canary while the new branch stays
    // healthy; at the first failure, roll back. Here the new branch drops
    // everything, so the script rolls back after the first step.
    let config = "src :: RatedSource(RATE 20000) -> hub :: Tee(2);
        hub[0] -> old :: Counter -> [0]canary :: CanarySwitch(WEIGHTS 100 0);
        hub[1] -> new :: Counter -> Switch(-1) -> survived :: Counter -> [1]canary;
        canary -> out :: Counter -> Discard;
        rollout :: Script(export verdict pending,
            set w 0,
            label up,
            set w $(min 100 $(add $w 10)),
            write canary.weights $(sub 100 $w) $w,
            wait 50ms,
            goto back $(gt $(sub $(new.count) $(survived.count)) 100),
            goto up $(lt $w 100),
            exit,
            label back,
            write canary.weights 100 0,
            set verdict rolled_back);";
    let dir = common::scratch_dir();
    let audit = dir.join("audit.jsonl");
    let r = common::RouterProc::start_in(dir.clone(), config, &["--audit", audit.to_str().unwrap()]);
    common::await_until("the script rolled back", || {
        r.read("canary.weights").trim() == "100 0" && r.read("rollout.verdict").trim() == "rolled_back"
    });
    let lines = common::audit_lines(&audit);
    let by_script: Vec<_> = lines.iter().filter(|e| e["actor"] == "script").collect();
    assert!(by_script.len() >= 2, "{lines:?}");
    assert_eq!(by_script[0]["handler"], "canary.weights");
    assert_eq!(by_script[0]["new"], "90 10");
    assert_eq!(by_script.last().unwrap()["new"], "100 0");
    assert!(by_script[0]["reason"].as_str().unwrap().contains("rollout :: Script"));
    r.stop();
}

#[test]
fn signal_scripts_run_on_their_signals_and_replace_the_default() {
    let dir = common::scratch_dir();
    let log = dir.join("signals.log");
    let l = log.to_str().unwrap();
    let config = format!(
        "Idle -> Discard;
         usr :: Script(TYPE SIGNAL USR1 HUP, print >>{l} \"usr1 or hup\");
         int :: Script(TYPE SIGNAL INT, print >>{l} \"int\");"
    );
    let r = common::RouterProc::start_in(dir.clone(), &config, &[]);
    assert_eq!(r.read("usr.signals").trim(), "10 1", "USR1 then HUP, as written");
    let pid = r.child.id().to_string();
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    for (sig, want) in [
        ("-USR1", "usr1 or hup\n"),
        ("-INT", "usr1 or hup\nint\n"),
        ("-HUP", "usr1 or hup\nint\nusr1 or hup\n"),
    ] {
        Command::new("kill").args([sig, &pid]).status().unwrap();
        common::await_until("the script ran", || lines() == want);
    }
    // INT was the script's: the router still runs; TERM stops it.
    assert_eq!(r.read("int.signals").trim(), "2");
    let (code, _) = r.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn simulated_time_is_exact_and_takes_no_wall_time() {
    // 10 packets/s: stamped exactly 0.1 s apart from the start time.
    let (rc, out, err) = click(&[
        "--simtime",
        "-e",
        "RatedSource(RATE 10, LIMIT 5, STOP true) -> ToIPSummaryDump(-, CONTENTS timestamp);",
    ]);
    assert_eq!(rc, 0, "{err}");
    let stamps: Vec<&str> = out.lines().filter(|l| !l.starts_with('!')).collect();
    assert_eq!(
        stamps,
        [
            "1000000000.100000",
            "1000000000.200000",
            "1000000000.300000",
            "1000000000.400000",
            "1000000000.500000"
        ]
    );
    // A script's clock and waits: an hour passes at once.
    let (_, out, _) = click(&[
        "--simtime=5.5",
        "-e",
        "Script(print $(now), wait 1h, print $(now), stop)",
    ]);
    assert_eq!(out, "5.500000\n3605.500000\n");
    let (rc, _, err) = click(&["--simtime=soon", "-e", ""]);
    assert_eq!(rc, 1);
    assert!(
        err.starts_with("click: '--simtime' expects a time in seconds, not 'soon'"),
        "{err}"
    );
}

#[test]
fn a_proxy_script_answers_every_handler_name_it_lacks() {
    // Click's documented example: s.a and s.b are answered by the script;
    // its own handlers (add) still win; anything else is its error.
    let (rc, out, err) = click(&[
        "-e",
        "s :: Script(TYPE PROXY, goto nota $(ne $0 a), returnq \"you called a\", label nota,
                     goto notb $(ne $0 b), returnq \"you called b\", label notb, error bad handler);
         Script(print $(s.a), print $(s.b), print $(s.add 1 2), write s.foo 1 2, print $?, stop)",
    ]);
    assert_eq!(rc, 0);
    assert_eq!(out, "you called a\nyou called b\n3\n-22\n");
    assert!(err.contains("bad handler"), "{err}");
    // $0, $args and $write as the proxy sees a write.
    let (_, out, _) = click(&[
        "-e",
        "s :: Script(TYPE PROXY, print \"0=$0 args=[$args] 1=$1 write=$write\"); Script(write s.foo 1 2, stop)",
    ]);
    assert_eq!(out, "0=foo args=[1 2] 1=1 write=true\n");
}

#[test]
fn readable_and_writable_ask_the_router() {
    let (_, out, _) = click(&[
        "-e",
        "c :: Counter; Idle -> c -> Discard;
         Script(print $(readable c.count version), print $(readable c.reset), print $(writable c.reset),
                print $(readable nosuch.x), print $(readable add stop), stop)",
    ]);
    assert_eq!(out, "true\nfalse\ntrue\nfalse\nfalse\n");
}

#[test]
fn elements_cannot_reload_the_router_they_run_in_and_proxies_stay_hidden() {
    // A reload from a router thread would wait for that very thread: the
    // control plane refuses it, and the router goes on and stops.
    let (rc, out, err) = click(&[
        "-e",
        "InfiniteSource(LIMIT 5) -> Counter(COUNT_CALL 3 hotconfig Idle) -> Discard;
         Script(write hotconfig Idle, print $?, wait 0.2, stop)",
    ]);
    assert_eq!((rc, out.as_str()), (0, "-22\n"), "{err}");
    assert!(err.contains("cannot replace the configuration it runs in"), "{err}");
    // The proxy answers names, but is not a handler of its own.
    let proxy = "s :: Script(TYPE PROXY, return $0)";
    let (_, out, _) = click(&["-e", proxy, "-q", "-h", "s.handlers"]);
    assert!(!out.contains('*'), "{out}");
    assert_eq!(click(&["-e", proxy, "-q", "-h", "s.whatever"]).1, "whatever\n");
    // A script cannot export a variable named like one of its handlers.
    let (rc, _, err) = click(&["-e", "Script(TYPE SIGNAL USR1, export signals 2)"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("export signals: Script has a handler of that name"),
        "{err}"
    );
    let (rc, _, _) = click(&["--simtime=1e12", "-e", ""]);
    assert_eq!(rc, 1, "a start past what the clock holds is refused");
}

#[test]
fn a_unix_control_socket_steps_a_script_and_stops_the_router() {
    // `click -u PATH`: Click's control socket; a paused script goes on at
    // a write to its `step` handler, and the global `stop` ends the run.
    let dir = common::scratch_dir();
    let sock = dir.join("click.sock");
    let log = dir.join("steps.log");
    let config = format!("s :: Script(pause, print >>{} \"stepped\");", log.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["click", "-u", sock.to_str().unwrap(), "-e", &config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let connect = || switchyard_control::client::Client::unix(&sock);
    common::await_until("the socket", || connect().is_ok());
    let mut c = connect().unwrap();
    c.write("s.step", "").unwrap();
    common::await_until("the step", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l == "stepped\n")
    });
    c.write("stop", "").unwrap();
    assert!(child.wait().unwrap().success());
}
