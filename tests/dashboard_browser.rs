//! The dashboard in a real browser: Debian's chromium, headless, driven
//! by chromedriver over the W3C WebDriver protocol. The test loads the
//! page a router serves, sees its live counters move, clicks Back and
//! confirms, and checks through the router's own counters and audit log
//! that production moved. Assertions are on the DOM.

mod common;

use common::{audit_lines, await_until, http, RouterProc};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const WRITER: &str = "dashboard-writer-0123456789";
const READER: &str = "dashboard-reader-0123456789";

/// Production is told apart by paint: the old branch paints 0, the new
/// one 1, and after the switch the paint picks which counter counts the
/// packet. The new branch is live at start.
const CONFIG: &str = "src :: RatedSource(RATE 20000, LENGTH 64);
src -> hub :: Tee(2);
hub[0] -> Paint(0) -> old :: Counter -> [0]sel :: InputSwitch(1);
hub[1] -> Paint(1) -> new :: Counter -> [1]sel;
sel -> ps :: PaintSwitch;
ps[0] -> from_old :: Counter -> Discard;
ps[1] -> from_new :: Counter -> Discard;";

/// chromedriver and chromium, or None (said loudly; required under CI).
fn browser() -> Option<(String, String)> {
    let (driver, chrome) = ("/usr/bin/chromedriver", "/usr/bin/chromium");
    if Path::new(driver).exists() && Path::new(chrome).exists() {
        return Some((driver.into(), chrome.into()));
    }
    assert!(
        std::env::var("CI").is_err(),
        "chromium and chromium-driver are required under CI (.ci/run installs them)"
    );
    eprintln!("SKIPPED: Debian's chromium and chromium-driver are not installed");
    None
}

/// A chromedriver process and one browser session, both ended on drop.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    fn start(driver: &str, chrome: &str, profile: &Path) -> Browser {
        let port = common::free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr = format!("127.0.0.1:{port}");
        await_until("chromedriver ready", || {
            std::net::TcpStream::connect(&addr).is_ok()
                && http(&addr, "GET", "/status", None, &[], "").1["value"]["ready"] == true
        });
        // Flags from this machine's notes: no sandbox as root, and no
        // background connections to the outside (the network is closed).
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome, "args": args},
        }}});
        let (status, body) = http(
            &addr,
            "POST",
            "/session",
            None,
            &[("Content-Type", "application/json")],
            &caps.to_string(),
        );
        assert_eq!(status, 200, "new session: {body}");
        let session = body["value"]["sessionId"].as_str().expect("a session id").to_string();
        Browser {
            driver: child,
            addr,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let text = if method == "GET" {
            String::new()
        } else {
            body.to_string()
        };
        let (status, reply) = http(
            &self.addr,
            method,
            &path,
            None,
            &[("Content-Type", "application/json")],
            &text,
        );
        assert_eq!(status, 200, "{method} {path}: {reply}");
        reply["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` in the page (`arguments[0]` is `arg`).
    fn js(&self, script: &str, arg: &str) -> Value {
        self.call("POST", "/execute/sync", json!({"script": script, "args": [arg]}))
    }

    /// The text of the first element matching `css`, or None.
    fn text(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            css,
        )
        .as_str()
        .map(str::to_string)
    }

    fn attr(&self, css: &str, name: &str) -> Option<String> {
        let script = format!(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute({}) : null;",
            json!(name)
        );
        self.js(&script, css).as_str().map(str::to_string)
    }

    /// Clicks the element as a user would (WebDriver refuses one that is
    /// hidden or disabled).
    fn click(&self, css: &str) {
        let found = self.call("POST", "/element", json!({"using": "css selector", "value": css}));
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element id")
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
            &[],
            "",
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn count(b: &Browser, element: &str) -> Option<u64> {
    b.attr(&format!("#graph .node[data-element='{element}']"), "data-count")
        .and_then(|v| v.parse().ok())
}

fn has_class(b: &Browser, css: &str, class: &str) -> bool {
    b.attr(css, "class")
        .is_some_and(|c| c.split_whitespace().any(|x| x == class))
}

fn start_router(dir: &Path) -> (RouterProc, String) {
    let tokens = common::token_file(dir, &format!("ops write {WRITER}\nviewer read {READER}\n"), 0o600);
    let audit = dir.join("audit.jsonl");
    let r = RouterProc::start_in(
        dir.to_path_buf(),
        CONFIG,
        &[
            "--http",
            "127.0.0.1:0",
            "--http-tokens",
            tokens.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
    );
    let addr = r
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("switchyard: dashboard on http://"))
        .expect("the dashboard's address")
        .trim_end_matches('/')
        .to_string();
    (r, addr)
}

#[test]
fn back_in_the_browser_moves_production() {
    let Some((driver, chrome)) = browser() else { return };
    let dir = common::scratch_dir();
    let (r, addr) = start_router(&dir);
    let b = Browser::start(&driver, &chrome, &dir.join("chromium-profile"));

    // 1. The page, with a write token in the fragment (as the demo prints).
    b.goto(&format!("http://{addr}/#token={WRITER}"));
    await_until("the graph drawn", || count(&b, "old").is_some());
    // The token left the address bar (kept for the session only).
    let url = b.call("GET", "/url", json!({}));
    assert!(!url.as_str().unwrap().contains(WRITER), "{url}");
    assert_eq!(b.text("#scope").as_deref(), Some("token ops (write)"));

    // 2. Live counters: the same node's count moves on its own (pushed).
    let first = count(&b, "from_new").unwrap();
    await_until("the counters move", || count(&b, "from_new").unwrap() > first + 2000);
    assert!(b.attr("#graph .node[data-element='from_new']", "data-rate").is_some());
    // The production path is the new branch; the old one is drawn standby.
    assert!(has_class(&b, "#graph .node[data-element='old']", "standby"));
    assert!(!has_class(&b, "#graph .node[data-element='new']", "standby"));
    assert_eq!(
        b.attr(".control[data-element='sel'] .value", "data-value").as_deref(),
        Some("1")
    );
    let generation: u64 = b
        .attr(".control[data-element='sel']", "data-generation")
        .unwrap()
        .parse()
        .unwrap();

    // 3. Back asks first; Cancel changes nothing.
    b.click(".control[data-element='sel'] button.back");
    assert_eq!(b.attr("#confirm", "open").as_deref(), Some(""));
    assert!(
        b.text("#confirm-text").unwrap().starts_with("Roll back"),
        "{:?}",
        b.text("#confirm-text")
    );
    b.click("#confirm-no");
    assert_eq!(r.read("sel.switch"), "1");
    // Back, confirmed.
    b.click(".control[data-element='sel'] button.back");
    b.click("#confirm-yes");
    await_until("the result shown", || b.attr("#result", "data-generation").is_some());
    let result = b.text("#result").unwrap();
    let new_generation: u64 = b.attr("#result", "data-generation").unwrap().parse().unwrap();
    assert!(new_generation > generation, "{result}");
    assert!(result.contains(&format!("generation {new_generation}")), "{result}");
    await_until("the page shows the old branch live", || {
        has_class(&b, "#graph .node[data-element='new']", "standby")
            && !has_class(&b, "#graph .node[data-element='old']", "standby")
            && b.attr(".control[data-element='sel'] .value", "data-value").as_deref() == Some("0")
    });

    // 4. The router agrees: its position, its counters, its audit log.
    assert_eq!(r.read("sel.switch"), "0");
    let (old_before, new_before) = (r.num("from_old.count"), r.num("from_new.count"));
    await_until("production counted on the old branch", || {
        r.num("from_old.count") > old_before + 2000
    });
    assert_eq!(
        r.num("from_new.count"),
        new_before,
        "nothing more reaches production from the new branch"
    );
    let audit = audit_lines(&dir.join("audit.jsonl"));
    let last = audit.last().expect("the write audited");
    assert_eq!(last["handler"], "sel.switch");
    assert_eq!((last["old"].as_str(), last["new"].as_str()), (Some("1"), Some("0")));
    assert_eq!(
        (last["actor"].as_str(), last["reason"].as_str()),
        (Some("http"), Some("token ops"))
    );
    assert_eq!(last["result"], "ok");
    await_until("the audit entry on the page", || {
        b.text("#audit li")
            .is_some_and(|t| t.contains("sel.switch: 1 → 0") && t.contains("token ops"))
    });

    // A write the router refuses shows its reason: a stale generation.
    // The page stops taking snapshots (so it keeps showing the
    // generation it has), someone else writes, then the page writes.
    b.js("window.onSnapshot = async () => {}; return null;", "");
    let (status, _) = http(
        &addr,
        "PUT",
        "/api/v1/elements/sel/switch",
        Some(WRITER),
        &[("If-Match", &new_generation.to_string())],
        "0",
    );
    assert_eq!(status, 200, "a second write, behind the page's back");
    b.click(".control[data-element='sel'] button.golive");
    b.click("#confirm-yes");
    await_until("the refusal shown", || has_class(&b, "#result", "error"));
    let refused = b.text("#result").unwrap();
    assert!(
        refused.contains("refused") && refused.contains("generation"),
        "{refused}"
    );
    assert_eq!(r.read("sel.switch"), "0", "a refused write changes nothing");

    // A read-only token: the page shows, the buttons are disabled.
    b.js("sessionStorage.clear(); return null;", "");
    // (A new query string: a new page, not a jump within this one.)
    b.goto(&format!("http://{addr}/?viewer#token={READER}"));
    await_until("the controls drawn", || {
        b.text(".control[data-element='sel'] button.back").is_some()
    });
    assert_eq!(b.text("#scope").as_deref(), Some("token viewer (read)"));
    await_until("the buttons disabled", || {
        b.attr(".control[data-element='sel'] button.back", "disabled").is_some()
    });
    drop(b);
    r.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
