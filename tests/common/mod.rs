//! What the integration tests share: a router process with a control
//! socket in a scratch directory (also in a network namespace), raw
//! protocol conversations, audit lines, waiting for a condition.
#![allow(dead_code)]

pub mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchyard_control::client::Client;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// The rollback graph at full rate, production checked by sequence number.
pub const ROLLBACK: &str = "src :: InfiniteSource(LENGTH 64, BURST 16);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> $NEWnew :: Counter -> [1]sel;
sel -> check :: SeqCheck -> out :: Counter -> Discard;";

/// 40 element classes D0..D39, each passing its argument doubled to the
/// one before: `D39(x)` asks for 2^39 copies of x, which the config byte
/// limit must stop (a class cannot use itself, as in Click).
pub fn doubling_classes() -> String {
    (0..40)
        .map(|k| match k {
            0 => "elementclass D0 { $a | input -> Idle($a) -> output; }\n".to_string(),
            k => format!("elementclass D{k} {{ $a | input -> D{}($a$a) -> output; }}\n", k - 1),
        })
        .collect()
}

pub fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "sy-ctl-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A router process with a control socket in a scratch directory.
pub struct RouterProc {
    pub child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// What the router printed while starting.
    pub banner: String,
    stderr: std::thread::JoinHandle<String>,
}

impl RouterProc {
    pub fn start(config: &str, extra: &[&str]) -> RouterProc {
        RouterProc::start_in(scratch_dir(), config, extra)
    }

    pub fn start_in(dir: PathBuf, config: &str, extra: &[&str]) -> RouterProc {
        RouterProc::start_prefixed(&[], dir, config, extra)
    }

    /// Like [`start_in`](Self::start_in), the command run through
    /// `prefix` (`ip netns exec NAME`).
    pub fn start_prefixed(prefix: &[&str], dir: PathBuf, config: &str, extra: &[&str]) -> RouterProc {
        let file = dir.join("r.click");
        std::fs::write(&file, config).unwrap();
        let socket = dir.join("ctl.sock");
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .arg("run")
            .arg(&file)
            .arg("--control")
            .arg(&socket)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // The router says when its socket is ready: wait for that event.
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("switchyard: control socket listening on unix:") {
                break;
            }
        }
        // The loop also ends when the router exits: no hang either way.
        assert!(seen.contains("listening"), "router did not start:\n{seen}");
        let stderr = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        RouterProc {
            child,
            dir,
            socket,
            stderr,
            banner: seen,
        }
    }

    pub fn client(&self) -> Client {
        Client::unix(&self.socket).unwrap()
    }

    pub fn read(&self, h: &str) -> String {
        self.client().read(h).unwrap()
    }

    pub fn num(&self, h: &str) -> u64 {
        num(&mut self.client(), h)
    }

    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        output(
            Command::new(BIN)
                .arg("ctl")
                .arg("--socket")
                .arg(&self.socket)
                .args(args),
        )
    }

    /// SIGKILL (no chance to save anything on the way out), and the
    /// directory, kept (its state file, audit log) for a restart.
    pub fn kill9(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::take(&mut self.dir)
    }

    /// SIGTERM, then the exit status and what it printed.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let code = self.child.wait().unwrap().code();
        let dummy = std::thread::spawn(String::new);
        let err = std::mem::replace(&mut self.stderr, dummy).join().unwrap();
        (code, err)
    }
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if std::thread::panicking() {
            // What the router said is the best clue to a failed test.
            let dummy = std::thread::spawn(String::new);
            if let Ok(err) = std::mem::replace(&mut self.stderr, dummy).join() {
                eprintln!("--- router stderr ---\n{}{err}\n---", self.banner);
            }
        }
    }
}

impl netns::Namespaces {
    /// Starts `switchyard run` with a control socket in namespace `i`, in
    /// a directory `name` of the scratch directory; returns once the
    /// socket is ready.
    pub fn start_router(&self, i: usize, name: &str, config: &str, extra: &[&str]) -> RouterProc {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        RouterProc::start_prefixed(&self.exec(i), dir, config, extra)
    }
}

/// A numeric handler's value, read on an open connection.
pub fn num(c: &mut Client, h: &str) -> u64 {
    let v = c.read(h).unwrap_or_else(|e| panic!("{h}: {e}"));
    v.trim().parse().unwrap_or_else(|_| panic!("{h}: not a number: {v}"))
}

/// Waits until `cond` holds, for up to 20 s; the router's counters (or
/// files, or frames) are the event, never a fixed sleep. Polled after
/// 1 ms, then less often, up to every 20 ms, so that a slow event does
/// not take the cores from the traffic it waits for.
pub fn await_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The audit log, one JSON value per line.
pub fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn rollback(new_path: &str) -> String {
    ROLLBACK.replace("$NEW", new_path)
}

/// Reads a whole reply off a raw stream: the bytes exactly as sent. A
/// successful read is followed by DATA.
pub fn raw_reply(s: &mut BufReader<UnixStream>, read: bool) -> String {
    let mut out = String::new();
    loop {
        let mut line = String::new();
        assert!(s.read_line(&mut line).unwrap() > 0, "connection closed after {out:?}");
        out.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            if read && line.starts_with("200 ") {
                let mut data = String::new();
                s.read_line(&mut data).unwrap();
                out.push_str(&data);
                let n: usize = data.trim_end().strip_prefix("DATA ").unwrap().parse().unwrap();
                let mut buf = vec![0; n];
                s.read_exact(&mut buf).unwrap();
                out.push_str(&String::from_utf8_lossy(&buf));
            }
            return out;
        }
    }
}

pub fn raw(r: &RouterProc) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(&r.socket).unwrap();
    let w = s.try_clone().unwrap();
    let mut reader = BufReader::new(s);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert_eq!(greeting, "Click::ControlSocket/1.3\r\n");
    (reader, w)
}

pub fn say(conn: &mut (BufReader<UnixStream>, UnixStream), bytes: &str) -> String {
    conn.1.write_all(bytes.as_bytes()).unwrap();
    let word = bytes.split_ascii_whitespace().next().unwrap_or("").to_ascii_uppercase();
    raw_reply(
        &mut conn.0,
        matches!(word.as_str(), "READ" | "GET" | "READDATA" | "READUNTIL"),
    )
}

/// One HTTP/1.1 request over a fresh connection: its status and its body
/// as JSON (Null if it is not JSON).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    // A server that stops answering fails the test, not hangs the run.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    // The body is Content-Length bytes where the server says so (some,
    // chromedriver among them, keep the connection open), else up to EOF.
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    let body = String::from_utf8_lossy(&body);
    (
        status,
        serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null),
    )
}

/// Runs a command to its end: exit status, stdout, stderr.
pub fn output(command: &mut Command) -> (i32, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A loopback TCP port free a moment ago, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A bearer-token file for `--http-tokens` (`NAME SCOPE SECRET` lines) in
/// `dir`, with `mode`: the router refuses one that others can read.
pub fn token_file(dir: &std::path::Path, lines: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("tokens");
    std::fs::write(&p, lines).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}
