//! The control socket, tested as users meet it: the router is a separate
//! process (`switchyard run --control ...`), clients are this test process
//! or `switchyard ctl` processes, talking over a real Unix socket.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use switchyard_control::client::Client;

#[test]
fn every_command_and_reply_code_over_a_real_socket() {
    let r = RouterProc::start(&rollback(""), &[]);
    let mut c = raw(&r);
    assert_eq!(
        say(&mut c, "READ sel.switch\r\n"),
        "200 Read handler 'sel.switch' OK\r\nDATA 1\r\n0"
    );
    assert_eq!(
        say(&mut c, "get sel.switch\n"),
        "200 Read handler 'sel.switch' OK\r\nDATA 1\r\n0"
    );
    assert_eq!(
        say(&mut c, "READ 3.class\r\n"),
        "200 Read handler '3.class' OK\r\nDATA 11\r\nInputSwitch"
    );
    assert_eq!(
        say(&mut c, "WRITE sel.switch 1\r\n"),
        "200 Write handler 'sel.switch' OK\r\n"
    );
    assert_eq!(
        say(&mut c, "SET sel.switch 0\r\n"),
        "200 Write handler 'sel.switch' OK\r\n"
    );
    assert_eq!(
        say(&mut c, "WRITEDATA sel.switch 1\r\n1"),
        "200 Write handler 'sel.switch' OK\r\n"
    );
    assert_eq!(
        say(&mut c, "WRITEUNTIL sel.switch EOF\r\n0\r\nEOF\r\n"),
        "200 Write handler 'sel.switch' OK\r\n"
    );
    assert_eq!(
        say(&mut c, "READDATA sel.switch 0\r\n"),
        "200 Read handler 'sel.switch' OK\r\nDATA 1\r\n0"
    );
    assert_eq!(
        say(&mut c, "READUNTIL sel.switch .\r\n.\r\n"),
        "200 Read handler 'sel.switch' OK\r\nDATA 1\r\n0"
    );
    assert_eq!(
        say(&mut c, "CHECKREAD out.count\r\n"),
        "200 Read handler 'out.count' OK\r\n"
    );
    assert_eq!(
        say(&mut c, "CHECKWRITE sel.switch\r\n"),
        "200 Write handler 'sel.switch' OK\r\n"
    );
    assert_eq!(
        say(&mut c, "CHECKWRITE out.count\r\n"),
        "511 Handler 'out.count' not writable\r\n"
    );
    assert_eq!(
        say(&mut c, "CHECKREAD out.reset\r\n"),
        "511 Handler 'out.reset' not readable\r\n"
    );
    assert_eq!(
        say(&mut c, "CHECKWRITE hotconfig\r\n"),
        "200 Write handler 'hotconfig' OK\r\n"
    );
    assert_eq!(
        say(&mut c, "LLRPC 0x1234 sel\r\n"),
        "501 Command 'LLRPC' unimplemented\r\n"
    );
    assert_eq!(say(&mut c, "FROB\r\n"), "501 Command 'FROB' unimplemented\r\n");
    assert_eq!(say(&mut c, "READ\r\n"), "500 Wrong number of arguments\r\n");
    assert_eq!(
        say(&mut c, "WRITEDATA sel.switch lots\r\n"),
        "500 Bad command syntax\r\n"
    );
    // Too big: refused, and the connection closed, so the payload that
    // follows can never be read as commands.
    let mut big = raw(&r);
    assert_eq!(
        say(&mut big, "WRITEDATA sel.switch 99999999\r\nWRITE sel.switch 1\r\n"),
        "521 Data too big (99999999 bytes, at most 1048576)\r\n"
    );
    let mut rest = String::new();
    big.0.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "nothing after 521: closed");
    assert_eq!(r.read("sel.switch"), "0", "the payload was not executed");
    assert_eq!(
        say(&mut c, "READ nosuch.count\r\n"),
        "510 No element named 'nosuch'\r\n"
    );
    assert_eq!(
        say(&mut c, "READ out.nosuch\r\n"),
        "511 No handler named 'out.nosuch'\r\n"
    );
    assert_eq!(
        say(&mut c, "WRITE sel.switch 7\r\n"),
        "520-Write handler 'sel.switch' error:\r\n520 7 out of range: expected -1 to 1\r\n"
    );
    assert_eq!(
        say(&mut c, "WRITE out.count 5\r\n"),
        "530 Handler 'out.count' read-only\r\n"
    );
    assert_eq!(
        say(&mut c, "READ out.reset\r\n"),
        "530 Handler 'out.reset' write-only\r\n"
    );
    assert!(say(&mut c, "HELP\r\n").starts_with("200-Click::ControlSocket/1.3 commands:\r\n200-READ"));
    for global in ["version", "list", "classes", "config", "flatconfig"] {
        assert!(
            say(&mut c, &format!("READ {global}\r\n")).starts_with(&format!("200 Read handler '{global}' OK\r\nDATA "))
        );
    }
    assert_eq!(
        say(&mut c, "READ list\r\n"),
        "200 Read handler 'list' OK\r\nDATA 42\r\n8\nsrc\nhub\nold\nsel\nnew\ncheck\nout\nDiscard@8\n"
    );
    assert!(say(&mut c, "READ sel.handlers\r\n").contains("switch\trw\n"));
    assert_eq!(say(&mut c, "QUIT\r\n"), "200 Goodbye!\r\n");
    let mut rest = Vec::new();
    c.0.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed after QUIT");
    // The 540 reply (too many connections) is covered by
    // a_connection_flood_is_refused_politely.
}

#[test]
fn ctl_client_exit_status_and_messages() {
    let r = RouterProc::start(&rollback(""), &[]);
    assert_eq!(r.ctl(&["read", "sel.switch"]), (0, "0\n".into(), String::new()));
    assert_eq!(r.ctl(&["write", "sel.switch", "1"]).0, 0);
    assert_eq!(r.ctl(&["read", "sel.switch"]).1, "1\n");
    let (code, _, err) = r.ctl(&["write", "sel.switch", "2"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "switchyard ctl: 520 Write handler 'sel.switch' error: 2 out of range: expected -1 to 1"
    );
    let (code, out, _) = r.ctl(&["list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().any(|l| l == "sel") && !out.starts_with(char::is_numeric),
        "{out}"
    );
    let (code, out, _) = r.ctl(&["handlers", "sel"]);
    assert_eq!(code, 0);
    assert!(out.contains("switch\trw"), "{out}");
    let (code, out, _) = r.ctl(&["watch", "sel.switch", "--interval", "1", "--count", "3"]);
    assert_eq!((code, out.as_str()), (0, "1\n1\n1\n"));
    let (code, _, err) = r.ctl(&["read", "nosuch.x"]);
    assert_eq!((code, err.trim()), (1, "switchyard ctl: 510 No element named 'nosuch'"));
}

#[test]
fn compare_and_set_writes_detect_a_racing_operator() {
    let r = RouterProc::start(&rollback(""), &[]);
    assert_eq!(r.read("sel.switch@gen"), "0");
    // Two operators read generation 0; the first write wins...
    assert_eq!(r.ctl(&["write", "--if-generation", "0", "sel.switch", "1"]).0, 0);
    assert_eq!(r.read("sel.switch@gen"), "1");
    // ...and the second, based on what it saw, is refused.
    let (code, _, err) = r.ctl(&["write", "--if-generation", "0", "sel.switch", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("generation is 1, not 0"), "{err}");
    assert_eq!(r.read("sel.switch"), "1");
    // Writing the current value succeeds and changes nothing but the generation.
    assert_eq!(r.ctl(&["write", "sel.switch", "1"]).0, 0);
    assert_eq!(r.read("sel.switch"), "1");
    assert_eq!(r.read("sel.switch@gen"), "2");
}

/// 1000 flips from a separate `switchyard ctl` process while traffic runs
/// at full rate; then every sequence number left production exactly once.
/// Each flip waits for production to move on before the next, so flips
/// and traffic really interleave even on a loaded machine.
fn exactly_once(new_path: &str) {
    let r = RouterProc::start(&rollback(new_path), &[]);
    let mut flipper = Command::new(BIN)
        .args(["ctl", "--socket"])
        .arg(&r.socket)
        .arg("batch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_flipper = flipper.stdin.take().unwrap();
    let mut replies = BufReader::new(flipper.stdout.take().unwrap()).lines();
    let mut watch = r.client();
    let count = |c: &mut Client| c.read("out.count").unwrap().trim().parse::<u64>().unwrap();
    let before = r.num("src.count");
    let mut last = count(&mut watch);
    for i in 0..1000 {
        writeln!(to_flipper, "WRITE sel.switch {}", (i + 1) % 2).unwrap();
        let reply = replies.next().unwrap().unwrap();
        assert_eq!(reply, "200 Write handler 'sel.switch' OK");
        loop {
            let now = count(&mut watch);
            if now > last {
                last = now;
                break;
            }
            std::thread::yield_now();
        }
    }
    drop(to_flipper);
    assert!(flipper.wait().unwrap().success());
    let during = r.num("src.count") - before;
    assert!(r.num("sel.boundary") > 0, "flips took effect at sequence boundaries");
    if new_path.contains("q ::") {
        assert_eq!(r.num("q.drops"), 0, "the lagging branch itself lost nothing");
    }
    // Stop the source, let everything in flight arrive, then check.
    r.client().write("src.active", "false").unwrap();
    let sent = r.num("src.count");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while r.num("check.unique") < sent && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    let dups = r.num("check.duplicates");
    let unique = r.num("check.unique");
    let missing = r.num("check.missing");
    let max_reorder = r.num("check.max_reorder");
    eprintln!("{new_path:?}: sent {sent}, {during} during 1000 flips; unique {unique}, duplicates {dups}, missing {missing}, max reorder {max_reorder}");
    assert_eq!(dups, 0, "no packet left production twice");
    assert_eq!(unique, sent, "every packet left production");
    assert_eq!(missing, 0);
    assert_eq!(r.num("check.max_seq"), sent);
}

#[test]
fn exactly_once_flips_with_equal_branches() {
    exactly_once("");
}

#[test]
fn exactly_once_flips_with_a_branch_behind_a_queue() {
    // The new branch runs 2 ms behind the old one: hundreds of batches in
    // flight on it at every flip.
    exactly_once("q :: Queue(1000000) -> DelayUnqueue(0.002) -> ");
}

#[test]
fn audit_log_records_every_write_before_the_reply() {
    let dir = scratch_dir();
    let audit = dir.join("audit.jsonl");
    let r = RouterProc::start_in(dir, &rollback(""), &["--audit", audit.to_str().unwrap()]);
    let mut c = r.client();
    c.write("sel.switch", "1").unwrap();
    // The reply has arrived, so the line is already on disk.
    let lines: Vec<serde_json::Value> = audit_lines(&audit);
    assert_eq!(lines.len(), 1);
    let e = &lines[0];
    assert_eq!(
        (e["handler"].as_str(), e["old"].as_str(), e["new"].as_str()),
        (Some("sel.switch"), Some("0"), Some("1"))
    );
    assert_eq!(e["result"], "ok");
    assert_eq!(e["generation"], 1);
    assert_eq!(
        e["peer"]["pid"].as_i64(),
        Some(std::process::id() as i64),
        "SO_PEERCRED names this process"
    );
    assert_eq!(e["peer"]["uid"].as_u64(), Some(nix::unistd::getuid().as_raw() as u64));
    let t = e["time"].as_str().unwrap();
    assert!(t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T", "RFC 3339: {t}");
    assert!(c.write("sel.switch", "5").is_err());
    c.write("sel.switch", "1").unwrap();
    let lines: Vec<serde_json::Value> = audit_lines(&audit);
    assert_eq!(lines.len(), 3, "refused and idempotent writes are audited too");
    assert_eq!(lines[1]["result"], "error");
    assert!(lines[1]["error"].as_str().unwrap().contains("5 out of range"));
    assert_eq!(
        (lines[2]["old"].as_str(), lines[2]["new"].as_str()),
        (Some("1"), Some("1"))
    );
}

#[test]
fn switch_position_survives_kill_9() {
    let dir = scratch_dir();
    let state = dir.join("state.json");
    let config = rollback("");
    let r = RouterProc::start_in(dir.clone(), &config, &["--state", state.to_str().unwrap()]);
    r.client().write("sel.switch", "1").unwrap();
    // SIGKILL: no chance to save anything on the way out. The directory
    // (the state file) is kept for the restart.
    let dir = r.kill9();
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("\"sel.switch\""), "{saved}");
    let r = RouterProc::start_in(dir, &config, &["--state", state.to_str().unwrap()]);
    assert_eq!(r.read("sel.switch"), "1", "restored from the state file");
    assert_eq!(r.read("sel.switch@gen"), "1");
    // Production really is on the new branch: out follows `new`.
    let a = r.num("out.count");
    assert!(r.num("new.count") >= a);
}

#[test]
fn socket_is_private_and_a_live_socket_is_not_stolen() {
    let r = RouterProc::start(&rollback(""), &[]);
    let mode = std::fs::metadata(&r.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second router on the same socket must refuse to start.
    let out = Command::new(BIN)
        .args(["run", "-e", "Idle -> Idle;", "--control"])
        .arg(&r.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another router is listening"), "{err}");
    assert_eq!(r.read("sel.switch"), "0", "the first router is unharmed");
}

#[test]
fn stale_socket_is_replaced_and_mode_is_configurable() {
    let dir = scratch_dir();
    let sock = dir.join("ctl.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap()); // leaves a dead socket file
    let r = RouterProc::start_in(dir, "Idle -> Idle;", &["--control-mode", "0660"]);
    assert_eq!(
        std::fs::metadata(&r.socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
    assert_eq!(r.read("version"), env!("CARGO_PKG_VERSION"));
}

/// The traffic counter keeps rising while a client misbehaves (waits for
/// it to move: on a loaded machine the router's thread may be descheduled
/// for a while).
fn still_forwarding(c: &mut Client, before: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let after: u64 = c.read("out.count").unwrap().trim().parse().unwrap();
        if after > before {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "forwarding stalled at {before}");
        std::thread::yield_now();
    }
}

#[test]
fn garbage_long_lines_and_half_commands_leave_router_and_connection_working() {
    let r = RouterProc::start(&rollback(""), &[]);
    let before = r.num("out.count");
    let mut c = raw(&r);
    // Binary garbage: an error reply, and the connection stays usable.
    c.1.write_all(b"\x00\xff\xfe garbage \x01\r\n").unwrap();
    assert!(raw_reply(&mut c.0, false).starts_with("501 Command '"));
    // A 100 KiB line: refused, then business as usual.
    let long = format!("READ {}\r\n", "x".repeat(100 * 1024));
    assert_eq!(say(&mut c, &long), "500 Line too long (at most 65536 bytes)\r\n");
    assert_eq!(
        say(&mut c, "READ sel.switch\r\n"),
        "200 Read handler 'sel.switch' OK\r\nDATA 1\r\n0"
    );
    // A client that promises 100 bytes and hangs up after 3.
    let mut half = raw(&r);
    half.1.write_all(b"WRITEDATA sel.switch 100\r\nabc").unwrap();
    drop(half);
    // One that hangs up mid-line.
    let mut cut = raw(&r);
    cut.1.write_all(b"WRITE sel.swi").unwrap();
    drop(cut);
    assert_eq!(r.read("sel.switch"), "0", "half commands changed nothing");
    still_forwarding(&mut r.client(), before);
    assert_eq!(say(&mut c, "QUIT\r\n"), "200 Goodbye!\r\n");
}

#[test]
fn a_connection_flood_is_refused_politely() {
    let r = RouterProc::start(&rollback(""), &["--control-max", "4"]);
    // Four for anyone, four more kept for the owner (this test is root or
    // the router's own user, so it gets those too).
    let mut held: Vec<_> = (0..8).map(|_| raw(&r)).collect();
    let before: u64 = say(&mut held[0], "READ out.count\r\n")
        .rsplit('\n')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The ninth is told why and closed.
    let mut s = UnixStream::connect(&r.socket).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "540 Too many control connections (at most 4)\r\n");
    drop(held);
    // Once they are gone, a client gets in again (the server counts down
    // when each connection's thread ends: retry until it has).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut c = loop {
        match Client::unix(&r.socket) {
            Ok(c) => break c,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        std::thread::yield_now();
    };
    assert_eq!(c.read("sel.switch").unwrap(), "0");
    still_forwarding(&mut c, before);
}

#[test]
fn idle_connections_are_closed() {
    let r = RouterProc::start(&rollback(""), &["--control-idle", "1"]);
    let mut c = raw(&r);
    // Say nothing: the server closes the connection after a second.
    let mut rest = String::new();
    c.0.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "500 Idle timeout; closing\r\n");
}

#[test]
fn tcp_control_needs_the_owners_token_and_errors_never_show_other_files() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = scratch_dir();
    let config = format!("ControlSocket(TCP, {port}); {}", rollback(""));
    // No token: refused, before anything listens.
    let file = dir.join("t.click");
    std::fs::write(&file, &config).unwrap();
    let out = Command::new(BIN).arg("run").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("without a token"), "{err}");
    // A token others can read: refused, without showing it.
    let token = dir.join("token");
    std::fs::write(&token, "s3cret-t0ken-0123456789\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg(&file)
        .arg("--control-token")
        .arg(&token)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("others can read it") && !err.contains("s3cret"), "{err}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = RouterProc::start_in(dir.clone(), &config, &["--control-token", token.to_str().unwrap()]);
    let addr = format!("127.0.0.1:{port}");
    // Without AUTH nothing is read or written.
    let mut c = Client::tcp(&addr, None).unwrap();
    let reply = c.command("WRITE sel.switch 1").unwrap();
    assert_eq!(reply.code, 530, "{reply:?}");
    assert_eq!(r.read("sel.switch"), "0");
    // A wrong token ends the connection.
    let e = Client::tcp(&addr, Some("wrong-token-0123456789")).err().unwrap();
    assert!(e.to_string().contains("Bad token"), "{e}");
    let mut c = Client::tcp(&addr, Some("s3cret-t0ken-0123456789")).unwrap();
    c.write("sel.switch", "1").unwrap();
    assert_eq!(r.read("sel.switch"), "1");
    let o = Command::new(BIN)
        .args([
            "ctl",
            "--tcp",
            &addr,
            "--token-file",
            token.to_str().unwrap(),
            "read",
            "sel.switch",
        ])
        .output()
        .unwrap();
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()),
        (Some(0), "1\n")
    );
    // A reload naming a file that is not a configuration: the reply says
    // where the error is, never what the file holds.
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "root:$6$notaconfig:19000:0:99999:7:::\n").unwrap();
    let text = format!("require(library {}); {}", secret.display(), rollback(""));
    let e = c.write("hotconfig", &text).unwrap_err().to_string();
    assert!(
        e.contains("secret.txt:1:") && e.contains("error in a file the router read"),
        "{e}"
    );
    assert!(!e.contains("notaconfig") && !e.contains("root:"), "{e}");
    let (code, err) = r.stop();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_remote_tcp_address_needs_explicit_permission() {
    // Without --allow-remote (or LOCALHOST false in the element), a
    // non-loopback address is refused before anything is bound.
    let listen = switchyard_control::server::Listen::Tcp {
        addr: "0.0.0.0:0".parse().unwrap(),
        allow_remote: false,
        token: Some(switchyard_control::server::Token::new("0123456789abcdef")),
    };
    let table = std::sync::Arc::new(
        switchyard_core::load_text("t", "Idle -> Idle;", &switchyard_elements::standard(), &[])
            .unwrap()
            .1,
    );
    let control = std::sync::Arc::new(switchyard_control::Control::new(table, None, None));
    let err = switchyard_control::server::serve(&listen, control, Default::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}

#[test]
fn canary_weights_are_validated_audited_and_survive_a_restart() {
    let dir = scratch_dir();
    let (audit, state) = (dir.join("audit.jsonl"), dir.join("state.json"));
    let config = "src :: InfiniteSource -> canary :: CanarySwitch(WEIGHTS 99 1);
                  canary[0] -> old :: Counter -> Discard; canary[1] -> new :: Counter -> Discard;";
    let flags = ["--audit", audit.to_str().unwrap(), "--state", state.to_str().unwrap()];
    let r = RouterProc::start_in(dir.clone(), config, &flags);
    let mut c = r.client();
    c.write("canary.weights", "90 10").unwrap();
    let err = c.write("canary.weights", "90 10 0").unwrap_err().to_string();
    assert!(err.contains("3 weights for 2 outputs"), "{err}");
    assert_eq!(r.read("canary.weights"), "90 10");
    let log = audit_lines(&audit);
    assert_eq!(log.len(), 2, "accepted and refused writes audited: {log:?}");
    let r = RouterProc::start_in(r.kill9(), config, &flags);
    assert_eq!(r.read("canary.weights"), "90 10", "restored from the state file");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Start on the new branch; the new branch then starts dropping DNS (UDP
/// port 53); the gate sees it in the shadow comparison, moves production
/// back to the old branch within two checks, and says so in the audit log.
#[test]
fn the_gate_rolls_back_a_misbehaving_release_and_audits_why() {
    let web = switchyard_elements::default_frame(64);
    let mut dns = web.clone();
    dns[36..38].copy_from_slice(&53u16.to_be_bytes());
    let config = format!(
        r#"dns :: InfiniteSource(DATA \<{}>, BURST 16);
        web :: InfiniteSource(DATA \<{}>, BURST 16);
        dns, web -> hub :: Tee(2);
        hub[0] -> Paint(0) -> old :: Counter -> [0]cmp :: ShadowCompare(REORDER 64);
        hub[1] -> c :: Classifier(36/0035, -);
        c[0] -> bug :: Switch(0); bug[0] -> np :: Paint(1);
        c[1] -> np;
        np -> new :: Counter -> [1]cmp;
        cmp[0] -> [0]sel :: InputSwitch(1);
        cmp[1] -> [1]sel;
        sel -> ps :: PaintSwitch;
        ps[0] -> from_old :: Counter -> Discard;
        ps[1] -> from_new :: SeqCheck -> Discard;
        wd :: Watchdog(CONDITION "cmp.dropped_by_new > 100", WRITE "sel.switch 0", INTERVAL 20ms);"#,
        hex(&dns),
        hex(&web)
    );
    let dir = scratch_dir();
    let audit = dir.join("audit.jsonl");
    let r = RouterProc::start_in(dir, &config, &["--audit", audit.to_str().unwrap()]);
    let mut c = r.client();
    let num = |c: &mut Client, h: &str| c.read(h).unwrap().trim().parse::<f64>().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while num(&mut c, "from_new.count") == 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "production never ran on the new branch"
        );
    }
    assert_eq!(
        c.read("wd.tripped").unwrap(),
        "false",
        "a healthy release does not trip the gate"
    );
    // The release goes bad: DNS is dropped on the new branch.
    let armed_at = num(&mut c, "wd.checks");
    c.write("bug.switch", "-1").unwrap();
    while c.read("wd.tripped").unwrap() != "true" {
        assert!(std::time::Instant::now() < deadline, "the gate did not trip");
        std::thread::yield_now();
    }
    let tripped_at = num(&mut c, "wd.tripped_at_check");
    assert!(
        tripped_at - armed_at <= 2.0,
        "tripped {} checks after the failure",
        tripped_at - armed_at
    );
    assert_eq!(
        c.read("sel.switch").unwrap(),
        "0",
        "production is back on the old branch"
    );
    // Nothing numbered at or after the cut-over came from the new branch,
    // while the old branch carries production on.
    // The data path applies the write at its next batch, where it sets the
    // boundary: wait for that.
    while num(&mut c, "sel.boundary") == 0.0 {
        assert!(std::time::Instant::now() < deadline, "the flip was never applied");
        std::thread::yield_now();
    }
    let boundary = num(&mut c, "sel.boundary");
    let old_then = num(&mut c, "from_old.count");
    while num(&mut c, "from_old.count") <= old_then {
        assert!(std::time::Instant::now() < deadline, "production stalled");
    }
    assert!(
        num(&mut c, "from_new.max_seq") < boundary,
        "no new-branch packet after the boundary"
    );
    // The audit log names the gate and its reason.
    let lines: Vec<serde_json::Value> = audit_lines(&audit);
    let gate = lines
        .iter()
        .find(|e| e["actor"] == "gate")
        .expect("an audit line by the gate");
    assert_eq!(
        (gate["handler"].as_str(), gate["new"].as_str(), gate["result"].as_str()),
        (Some("sel.switch"), Some("0"), Some("ok"))
    );
    assert!(
        gate["reason"]
            .as_str()
            .unwrap()
            .starts_with("cmp.dropped_by_new > 100 held for"),
        "{gate}"
    );
    assert!(c.read("wd.reason").unwrap().contains("cmp.dropped_by_new > 100"));
}

#[test]
fn a_group_can_be_given_the_socket() {
    use std::os::unix::fs::MetadataExt;
    let Ok(Some(group)) = nix::unistd::Group::from_name("daemon") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: the 'daemon' group is needed for this test"
        );
        eprintln!("SKIPPED: no 'daemon' group on this machine");
        return;
    };
    let r = RouterProc::start(&rollback(""), &["--control-mode", "0660", "--control-group", "daemon"]);
    let meta = std::fs::metadata(&r.socket).unwrap();
    assert_eq!(meta.gid(), group.gid.as_raw());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

#[test]
fn metrics_are_scraped_over_http_and_parse_as_prometheus_text() {
    let r = RouterProc::start(&rollback(""), &["--metrics", "127.0.0.1:0"]);
    let addr = r
        .banner
        .split("metrics on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("metrics address")
        .to_string();
    let mut c = r.client();
    c.write("sel.switch", "1").unwrap();
    // "listening" comes before the first packet: wait for traffic.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while c.read("old.count").unwrap().trim() == "0" {
        assert!(std::time::Instant::now() < deadline, "no traffic");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let scrape = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    // Clients trickling a request byte by byte are connected first: the
    // scrape is answered all the same (a one-at-a-time server waits on
    // them, and this scrape's 3 s read timeout fails the test).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tricklers: Vec<_> = (0..3)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            let done = done.clone();
            std::thread::spawn(move || {
                for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter() {
                    if done.load(std::sync::atomic::Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
            })
        })
        .collect();
    let resp = {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp)
            .expect("a scrape blocked behind slow clients");
        resp
    };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tricklers {
        t.join().unwrap();
    }
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    let scrape_lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(scrape_lines).expect("Prometheus text format");
    let sample = |name: &str, element: &str| {
        parsed
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("element") == Some(element))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert!(sample("switchyard_count", "old").unwrap() > 0.0, "{body}");
    assert_eq!(sample("switchyard_switch", "sel"), Some(1.0));
    let writes = parsed
        .samples
        .iter()
        .find(|s| s.metric.starts_with("switchyard_control_writes") && s.labels.get("actor") == Some("client"))
        .expect("write counter");
    // OpenMetrics names a counter's sample `_total`; the parser may then see
    // it as untyped: the value is what matters.
    assert!(
        matches!(writes.value, prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v == 1.0),
        "{body}"
    );
    assert!(scrape("/nope").starts_with("HTTP/1.1 404"));
    let generation = |body: &str| {
        body.lines()
            .find(|l| l.starts_with("switchyard_config_generation "))
            .map(|l| l.to_string())
    };
    assert_eq!(generation(body).as_deref(), Some("switchyard_config_generation 1"));
    r.client().write("hotconfig", &rollback("")).unwrap();
    let resp = scrape("/metrics");
    let after = resp.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(generation(after).as_deref(), Some("switchyard_config_generation 2"));
    // The same text again: its one thread is kept, nothing paused.
    for line in [
        "switchyard_reload_threads{kind=\"kept\"} 1.0",
        "switchyard_reload_threads{kind=\"replaced\"} 0.0",
        "switchyard_reload_pause_seconds 0.0",
    ] {
        assert!(after.lines().any(|l| l == line), "{line}:\n{after}");
    }
    eprintln!(
        "scrape sample:\n{}",
        body.lines()
            .filter(|l| l.contains("\"sel\"") || l.contains("control_writes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn ctl_status_and_live_graph() {
    let dir = scratch_dir();
    let audit = dir.join("audit.jsonl");
    let r = RouterProc::start_in(dir, &rollback(""), &["--audit", audit.to_str().unwrap()]);
    assert_eq!(r.ctl(&["write", "sel.switch", "1"]).0, 0);
    let (code, out, err) = r.ctl(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("switchyard {}, up ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains("r.click"), "config name: {out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("sel") && l.ends_with("switch=1")),
        "{out}"
    );
    assert!(
        out.contains("last writes:") && out.contains("\"handler\":\"sel.switch\""),
        "{out}"
    );
    let (code, dot, _) = r.ctl(&["graph"]);
    assert_eq!(code, 0);
    assert!(dot.starts_with("digraph switchyard {"), "{dot}");
    let edge = |from: &str| {
        dot.lines()
            .find(|l| l.contains(&format!("\"{from}\" -> \"sel\"")))
            .unwrap_or_else(|| panic!("{dot}"))
            .to_string()
    };
    assert!(
        edge("new").contains("style=bold"),
        "production path is the new branch now"
    );
    assert!(edge("old").contains("style=dashed"));
    assert!(
        dot.contains("\"old\" [label=\"old\\nCounter\\n"),
        "live counts on the nodes"
    );
}

/// 100 reloads under full traffic from an in-memory source: not one packet
/// lost or duplicated, switch position and counters carried over.
#[test]
fn hot_reload_loses_nothing_across_100_reloads_and_keeps_state() {
    let a = "src :: InfiniteSource(LENGTH 64, LIMIT 2000000);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> check :: SeqCheck -> out :: Counter -> Discard;";
    // The other version adds an element on the new branch.
    let b = a.replace(
        "new :: Counter -> [1]sel",
        "new :: Counter -> extra :: Counter -> [1]sel",
    );
    let dir = scratch_dir();
    let audit = dir.join("audit.jsonl");
    let r = RouterProc::start_in(dir.clone(), a, &["--audit", audit.to_str().unwrap()]);
    let mut c = r.client();
    c.write("sel.switch", "1").unwrap();
    for i in 0..100 {
        c.write("hotconfig", if i % 2 == 0 { &b } else { a })
            .unwrap_or_else(|e| panic!("reload {i}: {e}"));
    }
    // A broken configuration is refused with its diagnostics; nothing changes.
    let err = c
        .write("hotconfig", "src :: InfiniteSource; src -> Countr;")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("<hotconfig>:1:31: error: undeclared element 'Countr'"),
        "{err}"
    );
    assert_eq!(c.read("sel.switch").unwrap(), "1", "the position survived 100 reloads");
    // One thread, changed each time: paused between batches and replaced.
    let last = c.read("last_reload").unwrap();
    assert!(
        last.starts_with("threads_kept=0 threads_replaced=1 threads_started=1 carried="),
        "{last}"
    );
    let (code, status, _) = r.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(status.contains(&format!("last reload:\n  {}", last.trim())), "{status}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let num = |c: &mut Client, h: &str| c.read(h).unwrap().trim().parse::<u64>().unwrap();
    while num(&mut c, "out.count") < 2_000_000 {
        assert!(std::time::Instant::now() < deadline, "traffic stalled after reloads");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(num(&mut c, "src.count"), 2_000_000);
    assert_eq!(num(&mut c, "check.unique"), 2_000_000, "every packet delivered");
    assert_eq!(num(&mut c, "check.duplicates"), 0, "none twice");
    assert_eq!(num(&mut c, "out.count"), 2_000_000, "counters carried over");
    // Every reload is audited with the hashes of both configurations.
    let reloads = audit_lines(&audit)
        .iter()
        .filter(|e| e["handler"] == "hotconfig")
        .count();
    assert_eq!(reloads, 101, "100 accepted and 1 refused");
    // One command undoes the last reload.
    c.write("rollback_config", "").unwrap();
    assert!(c.read("extra.count").is_ok(), "back to the version with `extra`");

    // The same from the command line, which says what each reload did.
    let file = dir.join("a.click");
    std::fs::write(&file, a).unwrap();
    // First only ask what it would do: one thread paused, `extra` gone.
    let (code, out, err) = r.ctl(&["reload", "--check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("keeps running: 0 thread(s)"), "{out}");
    assert!(out.contains("pauses and replaces: 1 thread(s)"), "{out}");
    assert!(out.contains("removes: extra\n"), "{out}");
    assert!(c.read("extra.count").is_ok(), "--check changes nothing");
    let (code, out, err) = r.ctl(&["reload", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("reloaded: threads_kept="), "{out}");
    assert!(c.read("extra.count").is_err(), "`extra` is gone");
    let (code, out, err) = r.ctl(&["rollback-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("reloaded: threads_kept="), "{out}");
    assert!(c.read("extra.count").is_ok(), "and back");
}

/// A route release as a handler write: validated, audited, persisted
/// across a kill -9, read back with `lookup`, and reversible by writing
/// the old table back.
#[test]
fn route_changes_are_validated_audited_persistent_and_reversible() {
    let dir = scratch_dir();
    let (state, audit) = (dir.join("state.json"), dir.join("audit.jsonl"));
    let config = "RatedSource(RATE 2000, LENGTH 64) -> Strip(14) -> CheckIPHeader
        -> rt :: RadixIPLookup(10.0.0.0/8 0, 0.0.0.0/0 1);
        rt[0] -> a :: Counter -> Discard; rt[1] -> b :: Counter -> Discard;";
    let flags = ["--state", state.to_str().unwrap(), "--audit", audit.to_str().unwrap()];
    let r = RouterProc::start_in(dir.clone(), config, &flags);
    // `lookup` takes a parameter, over the socket and through ctl.
    assert_eq!(r.client().read_param("rt.lookup", "10.0.0.2").unwrap().trim(), "0");
    let (code, out, _) = r.ctl(&["read", "rt.lookup", "192.0.2.1"]);
    assert_eq!((code, out.trim()), (0, "1"));
    let (code, _, err) = r.ctl(&["read", "rt.lookup", "10.0.0"]);
    assert_ne!(code, 0, "a bad address is an error: {err}");
    let before = r.read("rt.table");

    // The release: 10.0.0.0/24 moves to output 1; traffic follows.
    r.client().write("rt.set", "10.0.0.0/24 1").unwrap();
    assert_eq!(r.client().read_param("rt.lookup", "10.0.0.2").unwrap().trim(), "1");
    let b0 = r.num("b.count");
    await_until("traffic to follow the new route", || r.num("b.count") >= b0 + 100);
    // A bad route is refused and changes nothing.
    let err = r.client().write("rt.add", "10.9.0.0/16 7").unwrap_err().to_string();
    assert!(err.contains("520"), "{err}");
    assert!(!r.read("rt.table").contains("10.9.0.0"));
    let lines = audit_lines(&audit);
    assert!(
        lines
            .iter()
            .any(|l| l["handler"] == "rt.set" && l["new"] == "10.0.0.0/24 1"),
        "{lines:?}"
    );

    // kill -9 and restart: the route change is still there.
    let r = RouterProc::start_in(r.kill9(), config, &flags);
    assert_eq!(r.client().read_param("rt.lookup", "10.0.0.2").unwrap().trim(), "1");
    // Rolling back is writing the old table.
    r.client().write("rt.table", &before).unwrap();
    assert_eq!(r.client().read_param("rt.lookup", "10.0.0.2").unwrap().trim(), "0");
    assert_eq!(r.read("rt.table"), before);
}

#[test]
fn pinned_switch_writes_are_audited_persistent_and_a_gate_reads_drained() {
    let dir = scratch_dir();
    let (state, audit) = (dir.join("state.json"), dir.join("audit.jsonl"));
    let config = r#"RatedSource(RATE 2000, LENGTH 64) -> flows :: FlowTable -> hub :: Tee(2);
        hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0, PIN flows);
        hub[1] -> new :: Counter -> [1]sel;
        sel -> out :: Counter -> Discard;
        gate :: Watchdog(CONDITION "sel.drained == 0", INTERVAL 10ms, WRITE "sel.switch 0");"#;
    let flags = ["--state", state.to_str().unwrap(), "--audit", audit.to_str().unwrap()];
    let r = RouterProc::start_in(dir.clone(), config, &flags);
    await_until("the source's flow to be pinned", || r.read("sel.pinned") == "1 0");
    assert_eq!(r.read("sel.drained"), "true");
    await_until("the gate to check", || r.num("gate.checks") >= 3);
    assert_eq!(
        r.read("gate.tripped"),
        "false",
        "drained reads as 1: {}",
        r.read("gate.reason")
    );
    // A pinned flip leaves the flow on 0: branch 0 is not drained, and the
    // gate (reading the boolean) acts.
    r.client().write("sel.switch", "1").unwrap();
    await_until("the gate to trip", || r.read("gate.tripped") == "true");
    assert_eq!(r.read("sel.switch"), "0", "{}", r.read("gate.reason"));
    // The forced write: validated, audited, persisted as the position.
    let err = r.client().write("sel.force", "2").unwrap_err().to_string();
    assert!(err.contains("520"), "{err}");
    r.client().write("sel.force", "1").unwrap();
    await_until("the flow to move", || r.read("sel.pinned") == "0 1");
    let lines = audit_lines(&audit);
    for (h, v) in [("sel.switch", "1"), ("sel.force", "1")] {
        assert!(
            lines.iter().any(|l| l["handler"] == h && l["new"] == v),
            "{h}: {lines:?}"
        );
    }
    let r = RouterProc::start_in(r.kill9(), config, &flags);
    assert_eq!(r.read("sel.switch"), "1", "restored from the state file");
    await_until("the flow to be pinned to 1", || r.read("sel.pinned") == "0 1");
}
