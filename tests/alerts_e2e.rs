//! Rollback on an alert, end to end with the real tools: Prometheus
//! (Debian's `prometheus`) scrapes the router's /metrics every second, a
//! rule fires when the shadow comparison diverges for 2 s, Alertmanager
//! (`prometheus-alertmanager`) posts the webhook, and the router moves
//! production back. The configs are the ones in examples/prometheus/. It
//! prints the time from "the release goes bad" to "production is back on
//! the old branch", and the in-router Watchdog's, measured the same way.

mod common;

use common::{await_until, free_port, RouterProc};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "alertmanager-0123456789abcdef";

/// A server process stopped when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The tools, or None (said loudly; required under CI).
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        Command::new("which")
            .arg(name)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    match (find("prometheus"), find("prometheus-alertmanager")) {
        (Some(p), Some(a)) => Some((p, a)),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "prometheus and prometheus-alertmanager are required under CI (.ci/run installs them)"
            );
            eprintln!("SKIPPED: prometheus or prometheus-alertmanager not installed");
            None
        }
    }
}

/// The rollback graph, with a release that goes bad on `bug.switch 1`:
/// its branch then rewrites a byte, and the shadow comparison diverges.
fn config(gate: &str) -> String {
    format!(
        "src :: RatedSource(RATE 20000) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]cmp :: ShadowCompare(WINDOW 2000);
         hub[1] -> bug :: Switch(0); bug[0] -> new :: Counter; bug[1] -> StoreData(20, \\<ff>) -> new;
         new -> [1]cmp;
         cmp[0] -> [0]sel :: InputSwitch(1);
         cmp[1] -> [1]sel;
         sel -> out :: Counter -> Discard;
         {gate}"
    )
}

/// Makes the release go bad and waits until production is back on the
/// old branch; the time that took.
fn time_to_rollback(r: &RouterProc) -> Duration {
    let mut c = r.client();
    await_until("the new branch live and clean", || {
        c.read("sel.switch").unwrap() == "1" && c.read("cmp.identical").unwrap().parse::<u64>().unwrap() > 1000
    });
    let bad = Instant::now();
    c.write("bug.switch", "1").unwrap();
    let deadline = bad + Duration::from_secs(120);
    while c.read("sel.switch").unwrap() != "0" {
        assert!(Instant::now() < deadline, "no rollback within 2 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    bad.elapsed()
}

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/prometheus")
            .join(name),
    )
    .unwrap()
}

#[test]
fn an_alert_from_prometheus_through_alertmanager_rolls_back() {
    let Some((prometheus, alertmanager)) = tools() else {
        return;
    };
    let dir = common::scratch_dir();
    let (http, prom_port, am_port) = (free_port(), free_port(), free_port());
    let tokens = common::token_file(&dir, &format!("alertmanager write {TOKEN}\n"), 0o600);
    let audit = dir.join("audit.jsonl");
    let r = RouterProc::start_in(
        dir.clone(),
        &config(""),
        &[
            "--http",
            &format!("127.0.0.1:{http}"),
            "--http-tokens",
            tokens.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
            "--alert-rules",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/prometheus/switchyard-alert-rules"
            ),
        ],
    );
    // The example configs, pointed at this test's ports and token.
    let router = format!("127.0.0.1:{http}");
    let am = format!("127.0.0.1:{am_port}");
    std::fs::write(dir.join("rules.yml"), example("rules.yml")).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        example("prometheus.yml")
            .replace("127.0.0.1:8080", &router)
            .replace("127.0.0.1:9093", &am),
    )
    .unwrap();
    std::fs::write(
        dir.join("alertmanager.yml"),
        example("alertmanager.yml")
            .replace("127.0.0.1:8080", &router)
            .replace("REPLACE-WITH-A-WRITE-TOKEN", TOKEN),
    )
    .unwrap();
    let quiet = || (Stdio::null(), Stdio::null());
    let (o, e) = quiet();
    let _am = Server(
        Command::new(alertmanager)
            .arg(format!("--config.file={}", dir.join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address={am}"))
            .arg("--cluster.listen-address=")
            .stdout(o)
            .stderr(e)
            .spawn()
            .unwrap(),
    );
    let (o, e) = quiet();
    let _prom = Server(
        Command::new(prometheus)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(o)
            .stderr(e)
            .spawn()
            .unwrap(),
    );
    r.client().write("sel.switch", "1").unwrap();
    let took = time_to_rollback(&r);
    let lines = common::audit_lines(&audit);
    let by_alert = lines
        .iter()
        .find(|e| e["actor"] == "alertmanager")
        .expect("a write by the alert");
    assert_eq!(by_alert["handler"], "sel.switch");
    assert!(by_alert["reason"]
        .as_str()
        .unwrap()
        .starts_with("alert ShadowDivergence fingerprint "));
    r.stop();

    // The in-router gate, measured the same way (the same 2 s hold).
    let gate =
        "wd :: Watchdog(CONDITION \"cmp.divergence_rate > 0.01\", WRITE \"sel.switch 0\", FOR 2s, INTERVAL 20ms);";
    let r = RouterProc::start_in(common::scratch_dir(), &config(gate), &[]);
    r.client().write("sel.switch", "1").unwrap();
    let gate_took = time_to_rollback(&r);
    r.stop();
    eprintln!(
        "release goes bad -> production back on the old branch: Prometheus+Alertmanager {:.2} s, in-router Watchdog {:.2} s (both holding 2 s; Flagger's documented example: 1 min x 10 checks = 600 s)",
        took.as_secs_f64(),
        gate_took.as_secs_f64()
    );
}
