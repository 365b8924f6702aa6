//! The HTTP API (`--http`, `api/v1`) of a real router process, spoken to
//! over a real TCP connection: its JSON shapes (the contract), bearer
//! tokens and scopes, compare-and-set writes, and that every write goes
//! through the same validation, audit and state as the control socket.

mod common;

use common::{http, RouterProc};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;

const WRITER: &str = "alice-secret-0123456789";
const READER: &str = "bob-dashboard-9876543210";

/// The tests' token file: alice may write, bob may read.
fn tokens_file(dir: &std::path::Path, mode: u32) -> std::path::PathBuf {
    common::token_file(dir, &format!("alice write {WRITER}\nbob read {READER}\n"), mode)
}

/// The API's address from the router's start-up lines.
fn api_addr(r: &RouterProc) -> String {
    let line = r
        .banner
        .lines()
        .find(|l| l.contains("HTTP API on http://"))
        .expect("the API line");
    line.split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches("/api/v1/")
        .to_string()
}

const CONFIG: &str = "src :: RatedSource(RATE 1000) -> hub :: Tee(2);
    hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
    hub[1] -> new :: Counter -> [1]sel;
    sel -> out :: Counter -> Discard;
    rt :: RadixIPLookup(10.0.0.0/8 0, 0.0.0.0/0 0); Idle -> rt -> Discard;";

fn start(dir: std::path::PathBuf, tokens: bool) -> (RouterProc, String, std::path::PathBuf) {
    let audit = dir.join("audit.jsonl");
    let mut args = vec![
        "--http".to_string(),
        "127.0.0.1:0".into(),
        "--audit".into(),
        audit.display().to_string(),
    ];
    if tokens {
        args.push("--http-tokens".into());
        args.push(tokens_file(&dir, 0o600).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = RouterProc::start_in(dir, CONFIG, &args);
    let addr = api_addr(&r);
    (r, addr, audit)
}

#[test]
fn the_v1_shapes_are_the_contract() {
    let (r, addr, _) = start(common::scratch_dir(), true);
    let (status, body) = http(&addr, "GET", "/api/v1/elements", Some(READER), &[], "");
    assert_eq!(status, 200);
    let sel = body["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "sel")
        .unwrap();
    assert_eq!(sel["class"], "InputSwitch");
    let switch = sel["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "switch")
        .unwrap();
    assert_eq!(switch, &json!({"name": "switch", "mode": "rw", "persistent": true}));
    let (status, body) = http(&addr, "GET", "/api/v1/elements/sel/switch", Some(READER), &[], "");
    assert_eq!(
        (status, body),
        (200, json!({"handler": "sel.switch", "value": "0", "generation": 0}))
    );
    // A read with a parameter; a handler without generation has none.
    let (status, body) = http(
        &addr,
        "GET",
        "/api/v1/elements/rt/lookup?param=10.1.2.3",
        Some(READER),
        &[],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(body["handler"], "rt.lookup");
    assert!(body.get("generation").is_none());
    let (status, body) = http(&addr, "GET", "/api/v1/status", Some(READER), &[], "");
    assert_eq!(status, 200);
    assert_eq!(body["config_generation"], 1);
    assert!(body["uptime_seconds"].as_f64().is_some());
    assert!(body["last_reload"].is_null());
    // Errors have one shape, with the socket's code where there is one.
    let (status, body) = http(&addr, "GET", "/api/v1/elements/nosuch/count", Some(READER), &[], "");
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"status": 404, "code": 510, "message": "No element named 'nosuch'"}})
    );
    let (status, _) = http(&addr, "GET", "/api/v1/frobnicate", Some(READER), &[], "");
    assert_eq!(status, 404);
    let (status, _) = http(&addr, "DELETE", "/api/v1/elements", Some(WRITER), &[], "");
    assert_eq!(status, 405);
    // /metrics is on the same server.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(
        page.contains("switchyard_count{element=\"out\",class=\"Counter\"}"),
        "{page}"
    );
    r.stop();
}

#[test]
fn tokens_decide_who_reads_and_who_writes() {
    let (r, addr, _) = start(common::scratch_dir(), true);
    assert_eq!(
        http(&addr, "GET", "/api/v1/elements", None, &[], "").0,
        401,
        "a token is required"
    );
    assert_eq!(
        http(
            &addr,
            "GET",
            "/api/v1/elements",
            Some("guess-guess-guess-guess"),
            &[],
            ""
        )
        .0,
        401
    );
    let (status, body) = http(&addr, "PUT", "/api/v1/elements/sel/switch", Some(READER), &[], "1");
    assert_eq!(status, 403);
    assert_eq!(body["error"]["message"], "token 'bob' may only read");
    assert_eq!(r.read("sel.switch"), "0", "nothing written");
    r.stop();
    // Without a token file: reads are open on loopback, writes are not.
    let (r, addr, _) = start(common::scratch_dir(), false);
    assert_eq!(http(&addr, "GET", "/api/v1/elements/sel/switch", None, &[], "").0, 200);
    assert_eq!(http(&addr, "PUT", "/api/v1/elements/sel/switch", None, &[], "1").0, 401);
    r.stop();
    // A token file others can read is refused at start.
    let dir = common::scratch_dir();
    let file = tokens_file(&dir, 0o644);
    let config = dir.join("r.click");
    std::fs::write(&config, CONFIG).unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("run")
        .arg(&config)
        .args(["--http", "127.0.0.1:0", "--http-tokens", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by others (mode 644)"));
}

#[test]
fn writes_go_through_validation_audit_and_compare_and_set() {
    let (r, addr, audit) = start(common::scratch_dir(), true);
    let (status, body) = http(&addr, "PUT", "/api/v1/elements/sel/switch", Some(WRITER), &[], "1");
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true);
    let generation = body["generation"].as_u64().unwrap();
    assert_eq!(r.read("sel.switch"), "1");
    // Audited as the socket's writes, with the actor and the token's name.
    let lines = common::audit_lines(&audit);
    let last = lines.last().unwrap();
    assert_eq!(
        (last["actor"].as_str(), last["reason"].as_str()),
        (Some("http"), Some("token alice"))
    );
    assert_eq!(
        (last["handler"].as_str(), last["new"].as_str()),
        (Some("sel.switch"), Some("1"))
    );
    // Compare-and-set: a stale generation is refused with 412.
    let stale = (generation - 1).to_string();
    let (status, body) = http(
        &addr,
        "PUT",
        "/api/v1/elements/sel/switch",
        Some(WRITER),
        &[("If-Match", &stale)],
        "0",
    );
    assert_eq!(status, 412);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("generation is {generation}")));
    assert_eq!(r.read("sel.switch"), "1");
    let current = format!("\"{generation}\"");
    let (status, _) = http(
        &addr,
        "PUT",
        "/api/v1/elements/sel/switch",
        Some(WRITER),
        &[("If-Match", &current)],
        "0",
    );
    assert_eq!(status, 200);
    assert_eq!(r.read("sel.switch"), "0");
    // A refused value: the router's reason, production untouched.
    let (status, body) = http(&addr, "PUT", "/api/v1/elements/sel/switch", Some(WRITER), &[], "7");
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("7 out of range: expected -1 to 1"),
        "{body}"
    );
    assert_eq!(r.read("sel.switch"), "0");
    // The audit tail through the API.
    let (status, body) = http(&addr, "GET", "/api/v1/audit?n=2", Some(READER), &[], "");
    assert_eq!(status, 200);
    assert_eq!(body["entries"].as_array().unwrap().len(), 2);
    r.stop();
}

#[test]
fn reloads_checks_and_config_rollback() {
    let (r, addr, _) = start(common::scratch_dir(), true);
    let (status, body) = http(&addr, "POST", "/api/v1/reload/check", Some(WRITER), &[], "x :: Nope;");
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown element class 'Nope'"),
        "{body}"
    );
    let next = CONFIG.replace("new :: Counter", "new :: Counter -> extra :: Counter");
    let (status, body) = http(&addr, "POST", "/api/v1/reload", Some(WRITER), &[], &next);
    assert_eq!((status, body["config_generation"].as_u64()), (200, Some(2)));
    assert!(r.read("extra.count").parse::<u64>().is_ok());
    let (status, body) = http(&addr, "POST", "/api/v1/rollback-config", Some(WRITER), &[], "");
    assert_eq!((status, body["config_generation"].as_u64()), (200, Some(3)));
    let mut c = r.client();
    assert!(c.read("extra.count").is_err(), "the element is gone again");
    assert_eq!(http(&addr, "POST", "/api/v1/reload", Some(READER), &[], &next).0, 403);
    r.stop();
}

/// An Alertmanager webhook body (version 4) with one alert.
fn alert(status: &str, name: &str, fingerprint: &str) -> String {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"x\"}",
        "status": status,
        "receiver": "switchyard",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "truncatedAlerts": 0,
        "alerts": [{
            "status": status,
            "labels": {"alertname": name, "severity": "page"},
            "annotations": {"summary": "the new branch diverges"},
            "startsAt": "2026-11-30T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": fingerprint
        }]
    })
    .to_string()
}

#[test]
fn a_firing_alert_rolls_back_once_and_a_resolved_one_never_promotes() {
    let dir = common::scratch_dir();
    let audit = dir.join("audit.jsonl");
    let tokens = tokens_file(&dir, 0o600);
    let r = RouterProc::start_in(
        dir,
        CONFIG,
        &[
            "--http",
            "127.0.0.1:0",
            "--http-tokens",
            tokens.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
            "--alert-rule",
            "alertname=ShadowDivergence => sel.switch 0",
        ],
    );
    let addr = api_addr(&r);
    let mut c = r.client();
    c.write("sel.switch", "1").unwrap();
    let post = |body: &str, token| http(&addr, "POST", "/api/v1/alertmanager", token, &[], body);
    assert_eq!(
        post(&alert("firing", "ShadowDivergence", "ab12"), None).0,
        401,
        "Alertmanager sends a bearer token"
    );
    let (status, body) = post(&alert("firing", "ShadowDivergence", "ab12"), Some(WRITER));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"][0]["handler"], "sel.switch");
    assert_eq!(r.read("sel.switch"), "0", "rolled back");
    let by_alert: Vec<Value> = common::audit_lines(&audit)
        .into_iter()
        .filter(|e| e["actor"] == "alertmanager")
        .collect();
    assert_eq!(by_alert.len(), 1);
    assert_eq!(by_alert[0]["reason"], "alert ShadowDivergence fingerprint ab12");
    // A resend (same fingerprint and start) does nothing more, even after
    // an operator went live again; a resolved alert never promotes.
    c.write("sel.switch", "1").unwrap();
    let (status, body) = post(&alert("firing", "ShadowDivergence", "ab12"), Some(WRITER));
    assert_eq!((status, body["duplicates"].as_u64()), (200, Some(1)));
    assert_eq!(r.read("sel.switch"), "1");
    let (status, body) = post(&alert("resolved", "ShadowDivergence", "ab12"), Some(WRITER));
    assert_eq!((status, body["applied"].as_array().map(Vec::len)), (200, Some(0)));
    // Another alert name matches no rule; a malformed body is a 400.
    let (_, body) = post(&alert("firing", "DiskFull", "cd34"), Some(WRITER));
    assert_eq!(body["applied"].as_array().map(Vec::len), Some(0));
    assert_eq!(r.read("sel.switch"), "1");
    assert_eq!(post("{", Some(WRITER)).0, 400);
    r.stop();
    // A rule that would promote is refused at start.
    let dir = common::scratch_dir();
    let config = dir.join("r.click");
    std::fs::write(&config, CONFIG).unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("run")
        .arg(&config)
        .args(["--http", "127.0.0.1:0", "--alert-rule", "alertname=X => sel.switch 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("an alert may only roll back"));
}

/// The dashboard's side of the API: the page and its assets (served from
/// the binary, kept to themselves by their headers), the graph, the
/// token's scope, and the event stream's snapshots.
#[test]
fn the_dashboard_page_graph_and_event_stream() {
    let (r, addr, _) = start(common::scratch_dir(), true);
    // The page: no data in it, so no token needed; scripts from itself.
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(lower.contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(lower.contains("content-type: text/html"));
    assert!(page.contains("<script src=\"/assets/dashboard.js\""));
    for asset in ["/assets/dashboard.js", "/assets/dashboard.css", "/assets/dagre.min.js"] {
        let (status, _) = http(&addr, "GET", asset, None, &[], "");
        assert_eq!(status, 200, "{asset}");
    }

    // The graph: elements with their ports, connections by name.
    let (status, g) = http(&addr, "GET", "/api/v1/graph", Some(READER), &[], "");
    assert_eq!(status, 200, "{g}");
    let sel = g["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "sel")
        .unwrap();
    assert_eq!(
        *sel,
        json!({"name": "sel", "class": "InputSwitch", "inputs": 2, "outputs": 1, "copies": 1})
    );
    assert!(g["wires"]
        .as_array()
        .unwrap()
        .contains(&json!({"from": "new", "from_port": 0, "to": "sel", "to_port": 1})));
    assert_eq!(g["config_generation"], 1);
    assert_eq!(http(&addr, "GET", "/api/v1/graph", None, &[], "").0, 401);

    // Who the page is talking as.
    let (_, who) = http(&addr, "GET", "/api/v1/whoami", Some(READER), &[], "");
    assert_eq!(who, json!({"token": "bob", "scope": "read"}));
    let (_, who) = http(&addr, "GET", "/api/v1/whoami", Some(WRITER), &[], "");
    assert_eq!(who, json!({"token": "alice", "scope": "write"}));

    // The event stream: a token needed; then a snapshot every 500 ms.
    assert_eq!(http(&addr, "GET", "/api/v1/events", None, &[], "").0, 401);
    let (_, w) = http(&addr, "PUT", "/api/v1/elements/sel/switch", Some(WRITER), &[], "1");
    assert_eq!(w["ok"], true);
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READER}\r\n\r\n"
    )
    .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(s));
    let head: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
    assert!(
        head.iter()
            .any(|h| h.eq_ignore_ascii_case("content-type: text/event-stream")),
        "{head:?}"
    );
    let mut snapshots = lines.map_while(Result::ok).filter_map(|l| {
        l.strip_prefix("data: ")
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
    });
    let first = snapshots.next().unwrap();
    let second = snapshots.next().unwrap();
    assert!(second["t"].as_f64().unwrap() > first["t"].as_f64().unwrap());
    assert!(second["counts"]["old"].as_u64().unwrap() >= first["counts"]["old"].as_u64().unwrap());
    let control = &first["controls"][0];
    assert_eq!(
        (&control["element"], &control["handler"], &control["value"]),
        (&json!("sel"), &json!("switch"), &json!("1"))
    );
    assert_eq!(control["generation"], r.num("sel.switch@gen"));
    assert_eq!(first["standby"], json!(["old"]));
    assert_eq!(
        first["audit"].as_array().unwrap().last().unwrap()["handler"],
        "sel.switch"
    );
    assert_eq!(
        first["wires_live"].as_array().unwrap().len(),
        g["wires"].as_array().unwrap().len()
    );
}

/// What keeps the API's connections for those who need them: a write
/// without a token is refused before its body is read, the event streams
/// are limited, and without tokens only a loopback Host is answered.
#[test]
fn refusals_come_before_bodies_streams_are_limited_and_hosts_checked() {
    let (r, addr, _) = start(common::scratch_dir(), true);
    // A megabyte announced, nothing sent: the refusal does not wait for it.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("an answer without the body");
    assert_eq!(&head, b"HTTP/1.1 401");

    let open = |n: usize| -> Vec<(TcpStream, String)> {
        (0..n)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
                write!(
                    s,
                    "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READER}\r\n\r\n"
                )
                .unwrap();
                let mut head = [0u8; 12];
                s.read_exact(&mut head).unwrap();
                (s, String::from_utf8_lossy(&head).into_owned())
            })
            .collect()
    };
    let streams = open(16);
    assert!(streams.iter().all(|(_, h)| h == "HTTP/1.1 200"));
    let more = open(1);
    assert_eq!(more[0].1, "HTTP/1.1 503", "the 17th waits for one to close");
    // Scrapes still get through.
    let (status, _) = http(&addr, "GET", "/api/v1/status", Some(READER), &[], "");
    assert_eq!(status, 200);
    drop(streams);
    common::await_until("a stream slot free again", || open(1)[0].1 == "HTTP/1.1 200");
    drop(r);

    // No tokens: reads are open, to loopback Hosts only.
    let (r, addr, _) = start(common::scratch_dir(), false);
    let host = |h: &str| {
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /api/v1/elements HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(host("rebound.example:8080"), "403");
    assert_eq!(host(&addr), "200");
    assert_eq!(host("localhost"), "200");
    drop(r);
}
