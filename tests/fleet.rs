//! A fleet moved as one, with a real etcd: Debian's etcd-server on a
//! loopback port with a data directory of the test's own, started here
//! and stopped after. The routers are separate processes carrying
//! traffic; the operator is `switchyard fleet`.

mod common;

use common::{audit_lines, await_until, free_port, RouterProc, BIN};

/// etcd's `/health` says true. Any error is a no: while it starts, etcd
/// accepts connections and then resets them.
fn etcd_healthy(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut reply = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut reply).is_ok()
        && reply.replace(' ', "").contains("\"health\":\"true\"")
}
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The rollback graph, with a release that can be broken on purpose
/// (`bug.switch 1`) and a gate that rolls back when it is.
const CONFIG: &str = "src :: RatedSource(RATE 2000, LENGTH 64);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> bug :: Switch(0); bug[0] -> new :: Counter -> [1]sel; bug[1] -> broken :: Counter -> Discard;
sel -> out :: Counter -> Discard;
gate :: Watchdog(CONDITION \"broken.count > 0\", WRITE \"sel.switch 0\", INTERVAL 20ms);";

/// A real etcd, stopped (and its data removed) when the test ends.
struct Etcd {
    child: Option<Child>,
    client: u16,
    peer: u16,
    dir: PathBuf,
}

impl Etcd {
    /// None if etcd is not installed (said loudly; required under CI).
    fn start(dir: &Path) -> Option<Etcd> {
        if !Path::new("/usr/bin/etcd").exists() {
            assert!(
                std::env::var("CI").is_err(),
                "etcd is required under CI (.ci/run installs etcd-server)"
            );
            eprintln!("SKIPPED: Debian's etcd-server is not installed");
            return None;
        }
        let client = free_port();
        let peer = std::iter::repeat_with(free_port)
            .find(|&p| p != client)
            .expect("a second port");
        let mut e = Etcd {
            child: None,
            client,
            peer,
            dir: dir.join("etcd"),
        };
        e.run();
        Some(e)
    }

    fn run(&mut self) {
        let (c, p) = (self.client, self.peer);
        let child = Command::new("/usr/bin/etcd")
            .args(["--name", "fleet-test", "--data-dir"])
            .arg(&self.dir)
            .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{p}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"))
            .arg(format!("--initial-cluster=fleet-test=http://127.0.0.1:{p}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{c}");
        await_until("etcd healthy", || etcd_healthy(&addr));
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}/fleet-test", self.client)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `switchyard fleet --etcd URL ARGS`: status, stdout, stderr.
fn fleet(url: &str, args: &[&str]) -> (i32, String, String) {
    common::output(Command::new(BIN).args(["fleet", "--etcd", url]).args(args))
}

fn start_router(dir: &Path, url: &str, name: &str, config: &str) -> RouterProc {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let audit = d.join("audit.jsonl");
    RouterProc::start_in(
        d,
        config,
        &["--fleet", url, "--fleet-name", name, "--audit", audit.to_str().unwrap()],
    )
}

fn registered(url: &str) -> usize {
    let (_, out, _) = fleet(url, &["status"]);
    out.lines()
        .find_map(|l| l.strip_prefix("routers: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn fleet_of(dir: &Path, url: &str, n: usize) -> Vec<RouterProc> {
    let routers: Vec<RouterProc> = (0..n)
        .map(|i| start_router(dir, url, &format!("r{i:02}"), CONFIG))
        .collect();
    await_until("every router registered", || registered(url) == n);
    routers
}

/// The audit entries the fleet made on a router.
fn fleet_writes(r: &RouterProc) -> Vec<serde_json::Value> {
    audit_lines(&r.dir.join("audit.jsonl"))
        .into_iter()
        .filter(|e| e["actor"] == "fleet")
        .collect()
}

#[test]
fn fleet_set_flips_twenty_routers_and_each_acks() {
    let dir = common::scratch_dir();
    let Some(etcd) = Etcd::start(&dir) else { return };
    let url = etcd.url();
    let routers = fleet_of(&dir, &url, 20);

    let (code, out, err) = fleet(&url, &["set", "sel.switch", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all 20 routers applied revision"), "{out}");
    let acked = out
        .lines()
        .filter(|l| l.starts_with("  r") && l.contains(" applied "))
        .count();
    assert_eq!(acked, 20, "one line per router:\n{out}");
    for r in &routers {
        assert_eq!(r.read("sel.switch"), "1");
        let w = fleet_writes(r);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            (w[0]["handler"].as_str(), w[0]["new"].as_str()),
            (Some("sel.switch"), Some("1"))
        );
        assert!(w[0]["reason"].as_str().unwrap().starts_with("revision "), "{w:?}");
    }
    let (code, out, _) = fleet(&url, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("desired: revision") && out.contains("(commit) sel.switch=1"),
        "{out}"
    );
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('r') && !l.starts_with("routers:"))
        .collect();
    assert_eq!(rows.len(), 20, "{out}");
    assert!(
        rows.iter().all(|r| r.contains("sel.switch=1") && r.contains(" 0 ")),
        "{out}"
    );

    // A rollback is a new revision with the previous values.
    let (code, out, err) = fleet(&url, &["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    for r in &routers {
        assert_eq!(r.read("sel.switch"), "0");
        assert_eq!(fleet_writes(r).len(), 2);
    }
    // Production kept moving through it all.
    let before = routers[7].num("out.count");
    await_until("traffic flows", || routers[7].num("out.count") > before + 500);
}

#[test]
fn a_router_that_cannot_apply_stops_the_set_before_any_router_changes() {
    let dir = common::scratch_dir();
    let Some(etcd) = Etcd::start(&dir) else { return };
    let url = etcd.url();
    let mut routers: Vec<RouterProc> = (0..4)
        .map(|i| start_router(&dir, &url, &format!("r{i:02}"), CONFIG))
        .collect();
    // An older configuration: no `sel` element at all.
    routers.push(start_router(
        &dir,
        &url,
        "old-config",
        "RatedSource(RATE 2000) -> c :: Counter -> Discard;",
    ));
    await_until("every router registered", || registered(&url) == 5);

    let (code, out, err) = fleet(&url, &["set", "sel.switch", "1"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refused in the prepare phase, no router changed production"),
        "{err}"
    );
    assert!(
        out.contains("old-config") && out.contains("rejected") && out.contains("No element named 'sel'"),
        "{out}"
    );
    // The refused change was closed by an abort revision, which status
    // reads (and no router applied).
    let (code, out, err) = fleet(&url, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(abort) sel.switch=0"), "{out}");
    // A value a router's check refuses is stopped the same way.
    let (code, _, err) = fleet(&url, &["set", "sel.switch", "7"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refused in the prepare phase") && err.contains("7 out of range"),
        "{err}"
    );
    for r in &routers[..4] {
        assert_eq!(r.read("sel.switch"), "0");
        assert!(fleet_writes(r).is_empty(), "no router wrote anything");
    }
}

#[test]
fn a_router_killed_during_the_change_rolls_the_fleet_back_and_converges_when_restarted() {
    let dir = common::scratch_dir();
    let Some(etcd) = Etcd::start(&dir) else { return };
    let url = etcd.url();
    let mut routers = fleet_of(&dir, &url, 5);
    // The set prepares, pauses, commits; the victim dies in between.
    let mut set = Command::new(BIN)
        .args([
            "fleet",
            "--etcd",
            &url,
            "set",
            "sel.switch",
            "1",
            "--pause",
            "2",
            "--timeout",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(set.stdout.take().unwrap()).lines();
    let mut said = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        said.push_str(&line);
        said.push('\n');
        if line.starts_with("fleet: prepared revision") {
            break;
        }
    }
    assert!(said.contains("fleet: prepared"), "{said}");
    let victim = routers.remove(2);
    let victim_dir = victim.kill9();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = set.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut set.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{said}{}\n{err}", rest.join("\n"));
    assert!(err.contains("the fleet was put back by revision"), "{err}");
    for r in &routers {
        assert_eq!(r.read("sel.switch"), "0", "all or none");
    }
    // Restarted, the victim reads the fleet's state and follows it.
    let (code, _, _) = fleet(&url, &["set", "sel.switch", "1"]);
    assert_eq!(code, 0);
    let audit = victim_dir.join("audit.jsonl");
    let back = RouterProc::start_in(
        victim_dir,
        CONFIG,
        &[
            "--fleet",
            &url,
            "--fleet-name",
            "r02",
            "--audit",
            audit.to_str().unwrap(),
        ],
    );
    await_until("the restarted router converges", || back.read("sel.switch") == "1");
    assert!(!fleet_writes(&back).is_empty());
}

#[test]
fn routers_ride_out_an_etcd_outage_and_converge_when_it_returns() {
    let dir = common::scratch_dir();
    let Some(mut etcd) = Etcd::start(&dir) else { return };
    let url = etcd.url();
    let routers = fleet_of(&dir, &url, 3);
    assert_eq!(fleet(&url, &["set", "sel.switch", "1"]).0, 0);

    etcd.stop();
    // No etcd: traffic goes on, state stays, the local socket answers.
    let before: Vec<u64> = routers.iter().map(|r| r.num("out.count")).collect();
    await_until("traffic flows without etcd", || {
        routers.iter().zip(&before).all(|(r, b)| r.num("out.count") > b + 1000)
    });
    for r in &routers {
        assert_eq!(r.read("sel.switch"), "1", "never flips on its own");
    }
    // A local rollback while etcd is away: a divergence, not undone.
    let (code, _, err) = routers[1].ctl(&["write", "sel.switch", "0"]);
    assert_eq!(code, 0, "{err}");

    etcd.run();
    await_until("the routers are back", || registered(&url) == 3);
    await_until("the divergence is seen", || {
        let (_, out, _) = fleet(&url, &["status"]);
        out.lines()
            .any(|l| l.starts_with("r01") && l.contains("sel.switch is 0 (fleet: 1)"))
    });
    assert_eq!(
        routers[1].read("sel.switch"),
        "0",
        "a local write is not undone by a reconnect"
    );
    // The fleet moves again, all of it.
    let (code, out, err) = fleet(&url, &["set", "sel.switch", "0"]);
    assert_eq!(code, 0, "{out}{err}");
    for r in &routers {
        assert_eq!(r.read("sel.switch"), "0");
    }
}

#[test]
fn two_operators_at_once_exactly_one_wins_and_the_other_is_told_why() {
    let dir = common::scratch_dir();
    let Some(etcd) = Etcd::start(&dir) else { return };
    let url = etcd.url();
    let routers = fleet_of(&dir, &url, 3);
    let spawn = |v: &str| {
        Command::new(BIN)
            .args(["fleet", "--etcd", &url, "set", "sel.switch", v, "--pause", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("1"), spawn("-1"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    let (won, lost, value) = match codes {
        [Some(0), Some(2)] => (&a, &b, "1"),
        [Some(2), Some(0)] => (&b, &a, "-1"),
        _ => panic!(
            "exactly one should win: {codes:?}\n{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        ),
    };
    let why = String::from_utf8_lossy(&lost.stderr);
    assert!(
        why.contains("another change won") || why.contains("a change is in progress"),
        "{why}"
    );
    assert!(String::from_utf8_lossy(&won.stdout).contains("all 3 routers applied"));
    for r in &routers {
        assert_eq!(r.read("sel.switch"), value);
    }
}

#[test]
fn a_gate_that_trips_on_one_router_rolls_the_fleet_back() {
    let dir = common::scratch_dir();
    let Some(etcd) = Etcd::start(&dir) else { return };
    let url = etcd.url();
    let routers = fleet_of(&dir, &url, 4);
    assert_eq!(fleet(&url, &["set", "sel.switch", "1"]).0, 0);
    // The release breaks on one router: its gate moves it back, and the
    // fleet follows.
    let (code, _, err) = routers[2].ctl(&["write", "bug.switch", "1"]);
    assert_eq!(code, 0, "{err}");
    await_until("every router back on the old branch", || {
        routers.iter().all(|r| r.read("sel.switch") == "0")
    });
    for (i, r) in routers.iter().enumerate() {
        let audit = audit_lines(&r.dir.join("audit.jsonl"));
        let last = audit.iter().rev().find(|e| e["handler"] == "sel.switch").unwrap();
        assert_eq!(last["new"], "0");
        let actor = if i == 2 { "gate" } else { "fleet" };
        assert_eq!(last["actor"], actor, "router {i}: {last}");
    }
    let (_, out, _) = fleet(&url, &["status"]);
    assert!(out.contains("gate gate tripped on r02"), "{out}");
    // Until the gate is reset by hand, the fleet cannot move r02 again:
    // refused in the prepare phase, nobody moves.
    let (code, _, err) = fleet(&url, &["set", "sel.switch", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("gate gate tripped on this router"), "{err}");
    for r in &routers {
        assert_eq!(r.read("sel.switch"), "0");
    }
}
