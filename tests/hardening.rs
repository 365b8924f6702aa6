//! What one write, one file or one full disk must not do to a router:
//! lose an acknowledged write, acknowledge one that was not kept, tear the
//! audit log, restart into a state that disagrees with what ran, or be
//! tricked into writing through a planted link.
//!
//! The disk-full cases mount a small tmpfs of their own and fill it; the
//! link case creates an unprivileged user. Both need root: without it
//! they say so and skip, except under CI=true, where they fail.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A light graph with one persistent switch: nothing runs per packet.
const SWITCH: &str = "Idle -> [0]sel :: InputSwitch(0); Idle -> [1]sel; sel -> c :: Counter -> Discard;";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True if the test can run; false (after saying so) if it must skip.
fn need_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} needs root, and CI=true: it must run"
    );
    eprintln!("SKIPPED: {what} needs root (mount, useradd); run as root or under CI=true");
    false
}

/// A tmpfs of `kib` KiB mounted on a fresh directory; unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(kib: u32) -> SmallDisk {
        let dir = scratch_dir().join("disk");
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0700"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", dir.display());
        SmallDisk { dir }
    }

    /// Fills what is left with a file, so the next append fails.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        use std::io::Write;
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(self.dir.parent().unwrap());
    }
}

fn write_reply(r: &RouterProc, handler: &str, value: &str) -> String {
    let mut c = r.client();
    let reply = c.command(&format!("WRITE {handler} {value}")).unwrap();
    format!("{} [{}]", reply.lines.join(" / "), reply.code)
}

#[test]
fn a_full_disk_never_gets_a_write_acknowledged_that_the_audit_log_lacks() {
    if !need_root("audit log on a full disk") {
        return;
    }
    let disk = SmallDisk::mount(256);
    let audit = disk.dir.join("audit.jsonl");
    let r = RouterProc::start(SWITCH, &["--audit", audit.to_str().unwrap()]);
    let mut acknowledged = 0;
    let mut refused = 0;
    let mut live = "0".to_string();
    for i in 0..400 {
        if i == 5 {
            disk.fill();
        }
        // Appends go on while the log's last page has room; once one is
        // refused, a few more are, then the disk gets space again.
        if refused == 3 {
            disk.free();
        }
        let value = (1 - i % 2).to_string();
        let reply = write_reply(&r, "sel.switch", &value);
        if reply.ends_with("[200]") {
            acknowledged += 1;
            live = value;
            if refused >= 3 && acknowledged > 0 {
                break;
            }
        } else {
            assert!(reply.contains("audit log could not record it"), "{reply}");
            refused += 1;
        }
        // Not acknowledged means not applied.
        assert_eq!(r.read("sel.switch"), live, "{reply}");
    }
    assert!(refused >= 3, "the full disk never refused a write");
    // Every line is whole JSON (no torn line, nothing glued), and every
    // acknowledged write is there.
    let text = std::fs::read_to_string(&audit).unwrap();
    let ok_lines = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .filter(|v| v["result"] == "ok")
        .count();
    assert_eq!(ok_lines, acknowledged);
    assert!(text.ends_with('\n'));
}

#[test]
fn a_full_disk_refuses_the_write_and_what_survives_a_crash_is_what_was_acknowledged() {
    if !need_root("state journal on a full disk") {
        return;
    }
    let disk = SmallDisk::mount(256);
    let state = disk.dir.join("state.json");
    let dir = scratch_dir();
    let args = ["--state", state.to_str().unwrap()];
    let r = RouterProc::start_in(dir.clone(), SWITCH, &args);
    assert!(write_reply(&r, "sel.switch", "1").ends_with("[200]"));
    disk.fill();
    // Appends go on while the journal's last page has room.
    let mut generation = 1;
    let mut live = "1";
    let refusal = loop {
        let value = if live == "1" { "0" } else { "1" };
        let reply = write_reply(&r, "sel.switch", value);
        if reply.ends_with("[200]") {
            generation += 1;
            live = value;
            assert!(generation < 500, "the full disk never refused a write");
            continue;
        }
        break reply;
    };
    assert!(
        refusal.contains("[520]") && refusal.contains("state journal could not record it"),
        "{refusal}"
    );
    // The reply said no: production stays where it was.
    assert_eq!(r.read("sel.switch"), live);
    assert_eq!(r.read("sel.switch@gen"), generation.to_string());
    disk.free();
    assert!(write_reply(&r, "sel.switch", "-1").ends_with("[200]"));
    generation += 1;
    disk.fill();
    let mut refused = false;
    for _ in 0..500 {
        if write_reply(&r, "sel.switch", "-1").ends_with("[200]") {
            generation += 1;
        } else {
            refused = true;
            break;
        }
    }
    assert!(refused);
    let dir = r.kill9();
    disk.free();
    let r = RouterProc::start_in(dir, SWITCH, &args);
    assert_eq!(r.read("sel.switch"), "-1", "the last acknowledged value");
    assert_eq!(
        r.read("sel.switch@gen"),
        generation.to_string(),
        "generations agree with the acknowledged writes"
    );
}

#[test]
fn a_switch_removed_and_readded_by_reloads_restarts_as_it_ran() {
    let dir = scratch_dir();
    let state = dir.join("state.json");
    let args = ["--state", state.to_str().unwrap()];
    let r = RouterProc::start_in(dir.clone(), SWITCH, &args);
    r.client().write("sel.switch", "1").unwrap();
    assert_eq!(r.read("sel.switch@gen"), "1");
    let without = "Idle -> c :: Counter -> Discard;";
    let (code, _, err) = r.ctl(&["reload", write_file(&dir, "b.click", without).to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = r.ctl(&["reload", dir.join("r.click").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Re-added: it runs at its configured 0, and the state says so.
    assert_eq!(r.read("sel.switch"), "0");
    // A compare-and-set prepared before the removal cannot succeed, now or
    // after the next write: generations never come round again.
    assert_eq!(r.read("sel.switch@gen"), "0");
    let (code, _, _) = r.ctl(&["write", "--if-generation", "1", "sel.switch", "1"]);
    assert_eq!(code, 1);
    let (code, _, err) = r.ctl(&["write", "--if-generation", "0", "sel.switch", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r.read("sel.switch@gen"), "2");
    let r = RouterProc::start_in(r.kill9(), SWITCH, &args);
    assert_eq!(r.read("sel.switch"), "0", "a restart must not flip production");
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Starts a router expecting it to refuse; returns its exit code and
/// what it printed.
fn start_refused(dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let file = write_file(dir, "r.click", SWITCH);
    let out = Command::new(BIN)
        .arg("run")
        .arg(&file)
        .arg("-q")
        .args(extra)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_state_file_stops_the_start_unless_told_to_set_it_aside() {
    for (text, why) in [
        ("[1,2,3]", "expected a JSON object"),
        (
            "{\"version\":1,\"handlers\":{\"sel.switch\":{\"value\":\"1\",\"generation\":18446744073709551615}}}",
            "generation 18446744073709551615 is beyond",
        ),
    ] {
        let dir = scratch_dir();
        let state = write_file(&dir, "state.json", text);
        let (code, err) = start_refused(&dir, &["--state", state.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(why) && err.contains("--reset-state"), "{err}");
        // Told to, it starts, and the bad file is kept aside.
        let r = RouterProc::start_in(
            dir.clone(),
            SWITCH,
            &["--state", state.to_str().unwrap(), "--reset-state"],
        );
        assert!(r.banner.contains("moved aside"), "{}", r.banner);
        assert_eq!(r.read("sel.switch"), "0");
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("state.json.bad."))
            .count();
        assert_eq!(aside, 1);
    }
}

#[test]
fn a_link_planted_by_another_user_is_never_written_through() {
    if !need_root("planted links (a user made by the test)") {
        return;
    }
    let user = TestUser::create("link");
    let uid = user.uid;
    // A shared, sticky directory, like /tmp, where the user plants links
    // at the names a root router would write.
    let dir = scratch_dir();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let victim = write_file(&dir, "victim", "precious\n");
    for name in ["state.json", "state.json.journal", "audit.jsonl"] {
        let planted = Command::new("ln")
            .args(["-s", victim.to_str().unwrap(), dir.join(name).to_str().unwrap()])
            .uid(uid)
            .status()
            .unwrap();
        assert!(planted.success());
    }
    let state = dir.join("state.json");
    let (code, err) = start_refused(&dir, &["--state", state.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    let audit = dir.join("audit.jsonl");
    let (code, err) = start_refused(&dir, &["--audit", audit.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user made for a test (useradd), removed when dropped.
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create(tag: &str) -> TestUser {
        let name = format!("sy{tag}{}", std::process::id() % 100_000);
        // One left by a run that was killed before it could clean up.
        let _ = Command::new("userdel").arg(&name).output();
        let made = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .unwrap();
        assert!(made.success(), "useradd {name}");
        let uid = nix::unistd::User::from_name(&name).unwrap().unwrap().uid.as_raw();
        TestUser { name, uid }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A client, as `user`, that connects; once greeted (it holds a slot) it
/// says so with a file in the directory argv[3]; it waits for the file
/// argv[2] to exist (so that all of them hold a slot before any command
/// clock runs), then sends one byte a second.
const TRICKLE: &str = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(60)
greeting = s.recv(64)
if greeting.startswith(b"Click::ControlSocket/1.3"):
    open(os.path.join(sys.argv[3], str(os.getpid())), "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
got = b""
for b in b"WRITE sel.switch 0\r\n" * 2:
    try:
        s.send(bytes([b]))
        got += s.recv(4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass
    except OSError:
        break
    time.sleep(1)
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
sys.stdout.write(got.decode(errors="replace"))
"#;

#[test]
fn clients_trickling_bytes_cannot_lock_the_owner_out_of_the_rollback() {
    if !need_root("slow clients as another user") {
        return;
    }
    let user = TestUser::create("slow");
    let r = RouterProc::start(
        SWITCH,
        &[
            "--control-mode",
            "0666",
            "--control-max",
            "32",
            "--control-command-timeout",
            "10",
        ],
    );
    let go = r.dir.join("go");
    let ready = r.dir.join("ready");
    std::fs::create_dir(&ready).unwrap();
    std::fs::set_permissions(&ready, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let trickle = |n: usize| -> Vec<std::process::Child> {
        (0..n)
            .map(|_| {
                Command::new("python3")
                    .args(["-c", TRICKLE])
                    .arg(&r.socket)
                    .arg(&go)
                    .arg(&ready)
                    .uid(user.uid)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect()
    };
    let slow = trickle(32);
    // Wait until all 32 were greeted: each holds a general slot.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(&ready).unwrap().count() < 32 {
        assert!(
            std::time::Instant::now() < deadline,
            "the 32 slow clients never all got in"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Another user is refused now: every general slot is taken.
    let refused_as_user = || {
        let out = Command::new(BIN)
            .args(["ctl", "--socket", r.socket.to_str().unwrap(), "read", "sel.switch"])
            .uid(user.uid)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).contains("Too many control connections")
    };
    assert!(refused_as_user(), "a 33rd client of another user got in");
    // They all hold a slot: now they trickle.
    std::fs::write(&go, "").unwrap();
    // The operator rolls forward and back while they hold every slot.
    let (code, _, err) = r.ctl(&["write", "sel.switch", "1"]);
    assert_eq!(code, 0, "the owner was locked out: {err}");
    assert_eq!(r.read("sel.switch"), "1");
    let (code, _, err) = r.ctl(&["write", "sel.switch", "0"]);
    assert_eq!(code, 0, "{err}");
    // And the tricklers are cut off by the command deadline, without ever
    // completing their write.
    for child in slow {
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("Command not complete within 10 s; closing"), "{said}");
    }
    assert_eq!(r.read("sel.switch"), "0");
    assert_eq!(r.read("sel.switch@gen"), "2", "only the owner's two writes");
}

#[test]
fn ctl_output_into_a_closed_pipe_ends_quietly_and_a_silent_router_is_a_timeout() {
    let r = RouterProc::start(&"Idle -> Counter -> Discard; ".repeat(300), &[]);
    // `switchyard ctl list | head -1`: the reader goes after one line.
    let mut child = Command::new(BIN)
        .args(["ctl", "--socket", r.socket.to_str().unwrap(), "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    use std::io::Read;
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(13) || out.status.success(),
        "{:?} {err}",
        out.status
    );
    // A router that greets and then says nothing.
    let dir = scratch_dir();
    let sock = dir.join("mute.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mute = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        use std::io::Write;
        s.write_all(b"Click::ControlSocket/1.3\r\n").unwrap();
        let mut line = [0u8; 64];
        let _ = s.read(&mut line);
        // Hold the connection until the client gives up.
        let _ = s.read(&mut line);
    });
    let out = Command::new(BIN)
        .args([
            "ctl",
            "--timeout",
            "1",
            "--socket",
            sock.to_str().unwrap(),
            "read",
            "x.count",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("timed out after 1 s: no reply from unix:{}", sock.display())),
        "{err}"
    );
    assert!(!err.contains("os error 11"), "{err}");
    mute.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_single_config_sent_to_a_running_router_takes_it_down() {
    let dir = scratch_dir();
    let r = RouterProc::start_in(dir.clone(), SWITCH, &[]);
    let chain = format!(
        "Idle -> {} -> Discard;",
        vec!["Counter"; switchyard_core::Limits::default().chain + 10].join(" -> ")
    );
    let cases = [
        (
            format!("Idle -> {}c{} -> Discard;", "(".repeat(5000), ")".repeat(5000)),
            "limit nesting=64",
        ),
        (
            format!("{}{}", "elementclass A { ".repeat(5000), "}".repeat(5000)),
            "limit nesting=64",
        ),
        ("Watchdog(,\n//\néET);\n".to_string(), "Watchdog"),
        ("Idle -> Tee(100000000) -> Discard;".to_string(), "limit ports=4096"),
        // A port number a group would count up to, or overflow past.
        (
            "Idle -> (input[4000000000] -> Discard);".to_string(),
            "limit ports=4096",
        ),
        (
            "Idle -> (input[4294967295] -> Discard);".to_string(),
            "limit ports=4096",
        ),
        (chain, "limit chain=10000"),
        (
            format!(
                "{}Idle -> D39(xxxxxxxxxxxxxxxxxxxxxxxx) -> Discard;",
                common::doubling_classes()
            ),
            "limit config_bytes",
        ),
        (
            "require(library /dev/zero); Idle -> Discard;".to_string(),
            "not a regular file",
        ),
    ];
    for (k, (text, why)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{k}.click"));
        std::fs::write(&file, text).unwrap();
        for check in [true, false] {
            let mut args = vec!["reload"];
            if check {
                args.push("--check");
            }
            args.push(file.to_str().unwrap());
            let (code, _, err) = r.ctl(&args);
            assert_eq!(code, 1, "case {k} was accepted: {err}");
            assert!(err.contains(why), "case {k}: {err}");
        }
    }
    // Still running the configuration it had, and steerable.
    let (code, _, err) = r.ctl(&["write", "sel.switch", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r.read("sel.switch"), "1");
    assert_eq!(r.read("config"), SWITCH, "nothing was reloaded");
}

#[test]
fn a_refused_megabyte_is_a_short_audit_line_and_status_reads_only_the_logs_tail() {
    let dir = scratch_dir();
    let audit = dir.join("audit.jsonl");
    // A log that has grown large: 64 MiB of earlier entries.
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&audit).unwrap());
        let line = format!(
            "{{\"handler\":\"old.entry\",\"new\":\"{}\",\"result\":\"ok\"}}\n",
            "x".repeat(200)
        );
        for _ in 0..(64 << 20) / line.len() {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    let r = RouterProc::start_in(dir.clone(), SWITCH, &["--audit", audit.to_str().unwrap()]);
    let mut c = r.client();
    let value = "9".repeat(1_000_000);
    assert!(c.write("sel.switch", &value).is_err(), "refused");
    let last = std::fs::read_to_string(&audit).unwrap();
    let last = last.lines().last().unwrap();
    assert!(
        last.len() < 4096,
        "a refused 1 MB value became a {}-byte line",
        last.len()
    );
    let entry: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(entry["result"], "error");
    assert!(
        entry["new"].as_str().unwrap().contains("(1000000 bytes, hash "),
        "{entry}"
    );
    // ctl status shows the last entries, reading only the end of the log.
    let io = || -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/io", r.child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = io();
    let (code, out, err) = r.ctl(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sel.switch"), "{out}");
    let read = io() - before;
    assert!(read < 4 << 20, "ctl status made the router read {read} bytes");
}
