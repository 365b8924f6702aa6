//! A stateful release rolled back without breaking a connection, on real
//! interfaces: namespaces `h1` (client) -> `rtr` -> `h2` (server) joined by
//! veth pairs, the router running configs/nat-release.click (a source NAT
//! behind the hub, old branch ports 10000-19999, new branch 20000-29999,
//! each flow pinned to the branch that took its first packet).
//!
//! Long-lived TCP connections stream random data through the NAT and check
//! the echo byte by byte: pinned flips, a hot reload and a rollback break
//! none of them, the drained signal follows the new branch's connections
//! closing, SeqCheck sees every packet leave production once, and a forced
//! flip shows what pinning prevents: the established connections break.
//!
//! Needs root, iproute2 and python3; without them the test says so loudly
//! and skips, except under CI=true, where it fails. Everything created
//! (namespaces, router, Python processes) is removed, also on failure.

mod common;

use common::netns::{require_root_or_skip, router_between_two_hosts, Namespaces};
use common::{await_until, num, RouterProc};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};
use switchyard_control::client::Client;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/nat-release.click");
/// The namespaces, by index.
const H1: usize = 0;
const RTR: usize = 1;
const H2: usize = 2;
/// The NAT branches' source ports, as the config defines them.
const OLD_PORTS: std::ops::RangeInclusive<u64> = 10000..=19999;
const NEW_PORTS: std::ops::RangeInclusive<u64> = 20000..=29999;
/// The configuration's last line, and a variant of it with one more
/// element: a reload to the variant replaces the router's main thread.
const LAST_LINE: &str = "cp1[1] -> ICMPError($ADDR1, redirect, host) -> rt;";
const VARIANT_LAST_LINE: &str = "cp1[1] -> ICMPError($ADDR1, redirect, host) -> reloaded :: Counter -> rt;";
/// No echo progress for this long, while streaming, is a stall: above any
/// single retransmission timeout, far below a broken connection's wait.
const STALL_S: f64 = 2.0;

/// The server in h2: every connection first hears `PORT <peer port> <peer
/// address>` (so the test learns which NAT branch translated it), then gets
/// every byte echoed. It exits when its standard input closes.
const SERVER: &str = r#"
import os, socket, sys, threading

def serve(c, peer):
    try:
        c.sendall(b'PORT %d %s\n' % (peer[1], peer[0].encode()))
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('10.2.0.2', 5001))
s.listen(512)

def accept():
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()

threading.Thread(target=accept, daemon=True).start()
print('READY', flush=True)
sys.stdin.read()
os._exit(0)
"#;

/// The client driver in h1, one command a line on standard input, one JSON
/// answer a line on standard output:
/// - `open GROUP N`: N connections, each then streaming 512 random bytes
///   every 20 ms and checking the echo; answers the ports and address the
///   server saw.
/// - `status`: per group, connections, bytes echoed (in all and each),
///   connections failed by kind (reset, mismatch, eof, timeout, other),
///   closed cleanly, the longest gap without echo progress while streaming
///   (an ongoing one included), how many connections had a stall, and how
///   many failed or stalled.
/// - `close GROUP`: a graceful close of every connection still streaming
///   (shutdown for writing, read to the end, close); answers when done.
///
/// It exits when its standard input closes.
const CLIENT: &str = r#"
import json, os, socket, sys, threading, time

DST = ('10.2.0.2', 5001)
CHUNK, PERIOD, STALL = 512, 0.02, float(sys.argv[1])
lock = threading.Lock()
groups = {}

class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.echoed = 0
        self.error = None
        self.closed = False
        self.stop = threading.Event()
        self.done = threading.Event()
        self.last = time.monotonic()
        self.max_gap = 0.0
        threading.Thread(target=self.run, daemon=True).start()

    def gap(self, now):
        # An ongoing gap counts while the connection is meant to stream.
        if self.error is None and not self.stop.is_set():
            return max(self.max_gap, now - self.last)
        return self.max_gap

    def progress(self, n):
        now = time.monotonic()
        with lock:
            self.echoed += n
            self.max_gap = max(self.max_gap, now - self.last)
            self.last = now

    def run(self):
        s = self.sock
        try:
            while not self.stop.is_set():
                data = os.urandom(CHUNK)
                s.sendall(data)
                got = 0
                while got < CHUNK:
                    d = s.recv(CHUNK - got)
                    if not d:
                        raise EOFError()
                    if d != data[got:got + len(d)]:
                        raise ValueError('mismatch')
                    got += len(d)
                    self.progress(len(d))
                time.sleep(PERIOD)
            s.shutdown(socket.SHUT_WR)
            if s.recv(65536):
                raise ValueError('mismatch')
            with lock:
                self.closed = True
        except socket.timeout:
            self.fail('timeout')
        except (ConnectionResetError, BrokenPipeError):
            self.fail('reset')
        except EOFError:
            self.fail('eof')
        except ValueError:
            self.fail('mismatch')
        except OSError as e:
            self.fail('other')
            print('connection error: %r' % e, file=sys.stderr, flush=True)
        finally:
            s.close()
            self.done.set()

    def fail(self, kind):
        with lock:
            self.max_gap = max(self.max_gap, time.monotonic() - self.last)
            self.error = kind

def open_group(name, n):
    conns, ports, addrs = groups.setdefault(name, []), [], set()
    for _ in range(n):
        s = socket.create_connection(DST, timeout=10)
        line = b''
        while not line.endswith(b'\n'):
            d = s.recv(1)
            if not d:
                raise EOFError('closed before its PORT line')
            line += d
        word = line.split()
        ports.append(int(word[1]))
        addrs.add(word[2].decode())
        s.settimeout(30)
        conns.append(Conn(s))
    return {'ports': ports, 'addrs': sorted(addrs)}

def status():
    now, out = time.monotonic(), {}
    with lock:
        for name, conns in groups.items():
            g = {'conns': len(conns), 'bytes': 0, 'each': [], 'failed': 0, 'closed': 0, 'max_gap': 0.0, 'stalled': 0,
                 'broken': 0}
            for k in ('reset', 'mismatch', 'eof', 'timeout', 'other'):
                g[k] = 0
            for c in conns:
                g['bytes'] += c.echoed
                g['each'].append(c.echoed)
                gap = c.gap(now)
                g['max_gap'] = max(g['max_gap'], gap)
                g['stalled'] += gap > STALL
                g['broken'] += bool(c.error) or gap > STALL
                g['closed'] += c.closed
                if c.error:
                    g['failed'] += 1
                    g[c.error] += 1
            out[name] = g
    return out

def close_group(name):
    conns = groups[name]
    for c in conns:
        c.stop.set()
    for c in conns:
        c.done.wait(15)
    return status()[name]

for line in sys.stdin:
    w = line.split()
    try:
        if w[0] == 'open':
            answer = open_group(w[1], int(w[2]))
        elif w[0] == 'status':
            answer = status()
        elif w[0] == 'close':
            answer = close_group(w[1])
        else:
            answer = {'error': 'unknown command %r' % line}
    except Exception as e:
        answer = {'error': repr(e)}
    print(json.dumps(answer), flush=True)
os._exit(0)
"#;

/// A Python program in a namespace, talked to a line at a time; killed on
/// drop (and it exits by itself when its standard input closes, should the
/// test process die first).
struct Py {
    what: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Py {
    fn spawn(ns: &Namespaces, i: usize, what: &'static str, script: &str, args: &[&str]) -> Py {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(i), "python3", "-u", "-c", script])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Py {
            what,
            child,
            stdin,
            lines,
        }
    }

    /// The next line it prints; a minute at most (its own waits are
    /// shorter).
    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{}: no answer ({e})", self.what))
    }

    fn ask(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        let line = self.line();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e}: {line}", self.what));
        assert!(v.get("error").is_none(), "{} `{command}`: {v}", self.what);
        v
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two hosts and a router namespace, as in tests/ip_router.rs.
struct Net {
    /// Declared first: stopped before the namespaces go.
    client: Option<Py>,
    server: Option<Py>,
    router: Option<RouterProc>,
    ns: Namespaces,
}

impl Net {
    /// None (after saying why) when this machine cannot run the test.
    fn new() -> Option<Net> {
        if !require_root_or_skip("the stateful release test", &["python3"]) {
            return None;
        }
        let ns = router_between_two_hosts();
        Some(Net {
            client: None,
            server: None,
            router: None,
            ns,
        })
    }

    fn router(&self) -> &RouterProc {
        self.router.as_ref().unwrap()
    }

    /// `switchyard ctl ARGS` against the router, as an operator types it;
    /// its output, which must be a success.
    fn ctl(&self, args: &[&str]) -> String {
        let (code, out, err) = self.router().ctl(args);
        assert_eq!(code, 0, "switchyard ctl {args:?}: {out}{err}");
        out
    }

    fn client(&mut self) -> &mut Py {
        self.client.as_mut().unwrap()
    }
}

fn drained(c: &mut Client, input: &str) -> bool {
    let v = c.read_param("fsel.drained", input).unwrap();
    match v.trim() {
        "true" => true,
        "false" => false,
        _ => panic!("fsel.drained {input}: {v}"),
    }
}

fn pinned(c: &mut Client) -> String {
    c.read("fsel.pinned").unwrap().trim().to_string()
}

/// Opens `n` connections as group `name`; their NAT ports, each checked
/// to lie in `range` (the branch that must translate them) and the source
/// address the server saw to be the router's.
fn open(net: &mut Net, name: &str, n: usize, range: &std::ops::RangeInclusive<u64>) -> Vec<u64> {
    let v = net.client().ask(&format!("open {name} {n}"));
    let ports: Vec<u64> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(ports.len(), n);
    let outside: Vec<&u64> = ports.iter().filter(|p| !range.contains(p)).collect();
    assert!(outside.is_empty(), "group {name}: ports outside {range:?}: {outside:?}");
    assert_eq!(
        v["addrs"],
        serde_json::json!(["10.2.0.1"]),
        "group {name}: not the NAT address"
    );
    ports
}

/// Every group's state from the client driver.
fn status(net: &mut Net) -> Value {
    net.client().ask("status")
}

fn each(g: &Value) -> Vec<u64> {
    g["each"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .collect()
}

/// Waits until every connection of `group` has echoed more than it had in
/// `before` (the event that it streams on); polled at a pace that leaves
/// the two cores to the traffic.
fn await_progress(net: &mut Net, group: &str, before: &[u64]) {
    await_until(
        &format!("every connection of group {group} to make echo progress"),
        || {
            let now = each(&status(net)[group]);
            now.len() == before.len() && now.iter().zip(before).all(|(n, b)| n > b)
        },
    );
}

/// No connection of `group` failed or stalled, and none was closed.
fn assert_healthy(s: &Value, group: &str, when: &str) {
    let g = &s[group];
    assert_eq!(g["failed"], 0, "{when}: group {group} has failed connections: {g}");
    assert_eq!(g["stalled"], 0, "{when}: group {group} stalled (> {STALL_S} s): {g}");
}

fn report(s: &Value, when: &str) {
    for (name, g) in s.as_object().unwrap() {
        eprintln!(
            "{when}: group {name}: {} connections, {} bytes echoed, {} failed (reset {}, mismatch {}, eof {}, \
             timeout {}, other {}), {} closed cleanly, max gap {:.3} s, {} stalled",
            g["conns"],
            g["bytes"],
            g["failed"],
            g["reset"],
            g["mismatch"],
            g["eof"],
            g["timeout"],
            g["other"],
            g["closed"],
            g["max_gap"].as_f64().unwrap(),
            g["stalled"]
        );
    }
}

/// The figures the release's note quotes: pins, the table, exactly-once.
fn report_router(c: &mut Client, when: &str) {
    let mut line = format!("{when}: fsel.pinned {:?}", pinned(c));
    for h in [
        "flows.count",
        "flows.overflow",
        "fseq.count",
        "fseq.duplicates",
        "fseq.missing",
        "rseq.count",
        "rseq.duplicates",
        "rseq.missing",
    ] {
        line.push_str(&format!(", {h} {}", num(c, h)));
    }
    eprintln!("{line}");
}

fn assert_exactly_once(c: &mut Client, when: &str) {
    for h in ["fseq.duplicates", "rseq.duplicates"] {
        assert_eq!(num(c, h), 0, "{when}: {h}");
    }
    // A number can be missing for the microseconds between a hub batch's
    // two branch pushes (a packet pinned to branch 1 arrives after a later
    // one pinned to branch 0); a lost packet stays missing.
    for h in ["fseq.missing", "rseq.missing"] {
        await_until(&format!("{when}: {h} to be 0"), || num(c, h) == 0);
    }
}

/// Lets every streaming connection run a little: the thing asserted after
/// it is that nothing broke meanwhile, so a fixed period is the point.
fn stream_for(d: Duration) {
    std::thread::sleep(d);
}

#[test]
fn pinned_flips_reload_and_rollback_keep_every_connection_and_a_forced_flip_breaks_them() {
    let Some(mut net) = Net::new() else { return };
    let config = std::fs::read_to_string(CONFIG).unwrap();
    net.router = Some(net.ns.start_router(RTR, "rtr", &config, &[]));
    let mut c = net.router().client();
    let mut server = Py::spawn(&net.ns, H2, "server", SERVER, &[]);
    assert_eq!(server.line(), "READY");
    net.server = Some(server);
    net.client = Some(Py::spawn(&net.ns, H1, "client", CLIENT, &[&STALL_S.to_string()]));
    assert_eq!(net.ctl(&["read", "fsel.switch"]).trim(), "0");

    // 1. Fifty connections on the old NAT, all echoing.
    let a = open(&mut net, "A", 50, &OLD_PORTS);
    let mut distinct = a.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 50, "one mapping per connection: {a:?}");
    await_progress(&mut net, "A", &[0; 50]);
    assert_eq!(pinned(&mut c), "50 0");
    report_router(&mut c, "A open");

    // 2. A pinned flip: new connections take the new NAT, established ones
    // stay on the old one and keep streaming.
    let before = status(&mut net);
    net.ctl(&["write", "fsel.switch", "1"]);
    assert_eq!(
        c.read("rsel.switch").unwrap().trim(),
        "1",
        "fsel and rsel share one position"
    );
    open(&mut net, "B", 20, &NEW_PORTS);
    await_progress(&mut net, "A", &each(&before["A"]));
    await_progress(&mut net, "B", &[0; 20]);
    stream_for(Duration::from_secs(1));
    let s = status(&mut net);
    assert_healthy(&s, "A", "after the pinned flip to 1");
    assert_healthy(&s, "B", "after the pinned flip to 1");
    assert_eq!(pinned(&mut c), "50 20");
    assert_eq!(net.ctl(&["read", "fsel.pinned", "1"]).trim(), "20");
    assert_eq!(net.ctl(&["read", "fsel.drained", "0"]).trim(), "false");
    report(&s, "after the flip to 1");
    report_router(&mut c, "after the flip to 1");

    // 3. Hot reloads mid-stream. The same text keeps every thread running;
    // a variant that touches the thread holding the flow table and the NATs
    // pauses and replaces it, and each element takes its predecessor's
    // state (the NAT mappings, the pins, the hub's numbering); then back to
    // the original, replaced again. Nothing breaks.
    let dir = net.router().dir.clone();
    let original = dir.join("r.click");
    let variant = dir.join("variant.click");
    assert!(
        config.contains(LAST_LINE),
        "configs/nat-release.click changed: update LAST_LINE"
    );
    std::fs::write(&variant, config.replace(LAST_LINE, VARIANT_LAST_LINE)).unwrap();
    let plan = net.ctl(&["reload", "--check", variant.to_str().unwrap()]);
    let carried: Vec<&str> = plan
        .lines()
        .find_map(|l| l.strip_prefix("carries state: "))
        .unwrap_or_else(|| panic!("no carried elements in the plan:\n{plan}"))
        .split(", ")
        .collect();
    for e in [
        "flows", "oldnat", "newnat", "fsel", "rsel", "fhub", "rhub", "fseq", "rseq",
    ] {
        assert!(carried.contains(&e), "the reload must carry {e}'s state:\n{plan}");
    }
    for (file, when, replaces) in [
        (&original, "the same configuration", false),
        (&variant, "a variant", true),
        (&original, "the original again", true),
    ] {
        let before = status(&mut net);
        let out = net.ctl(&["reload", file.to_str().unwrap()]);
        eprintln!("reload of {when}: {}", out.trim());
        let replaced = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("threads_replaced="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("reload of {when}: {out}"));
        assert_eq!(replaced > 0, replaces, "reload of {when}: {out}");
        await_progress(&mut net, "A", &each(&before["A"]));
        await_progress(&mut net, "B", &each(&before["B"]));
        stream_for(Duration::from_secs(1));
        let s = status(&mut net);
        let when = format!("after the reload of {when}");
        assert_healthy(&s, "A", &when);
        assert_healthy(&s, "B", &when);
        assert_eq!(pinned(&mut c), "50 20", "{when}: the pins survive");
        assert_eq!(
            c.read("fsel.switch").unwrap().trim(),
            "1",
            "{when}: the position survives"
        );
        assert_exactly_once(&mut c, &when);
        report_router(&mut c, &when);
    }

    // 4. Rollback, pinned: new connections take the old NAT again, the new
    // branch keeps its own.
    let before = status(&mut net);
    net.ctl(&["write", "fsel.switch", "0"]);
    open(&mut net, "C", 10, &OLD_PORTS);
    await_progress(&mut net, "A", &each(&before["A"]));
    await_progress(&mut net, "B", &each(&before["B"]));
    await_progress(&mut net, "C", &[0; 10]);
    stream_for(Duration::from_secs(1));
    let s = status(&mut net);
    for g in ["A", "B", "C"] {
        assert_healthy(&s, g, "after the rollback");
    }
    assert_eq!(pinned(&mut c), "60 20");
    report(&s, "after the rollback");
    report_router(&mut c, "after the rollback");

    // 5. The new branch's connections close: it drains.
    let b = net.client().ask("close B");
    assert_eq!(b["closed"], 20, "B closes gracefully: {b}");
    assert_eq!(b["failed"], 0, "{b}");
    let closed = Instant::now();
    await_until("fsel.drained 1", || drained(&mut c, "1"));
    let drain_time = closed.elapsed();
    assert_eq!(net.ctl(&["read", "fsel.drained", "1"]).trim(), "true");
    assert_eq!(net.ctl(&["read", "fsel.drained", "0"]).trim(), "false");
    assert_eq!(pinned(&mut c), "60 0");
    eprintln!(
        "drained: branch 1 drained {:.3} s after B closed",
        drain_time.as_secs_f64()
    );
    let s = status(&mut net);
    assert_healthy(&s, "A", "after B closed");
    assert_healthy(&s, "C", "after B closed");
    report(&s, "before the forced flip");
    report_router(&mut c, "before the forced flip");

    // 6. Every packet left production once, across flips and the reload.
    assert_exactly_once(&mut c, "pinned flips and a reload");
    assert_eq!(num(&mut c, "flows.overflow"), 0);

    // 7. A forced flip moves the established connections to the new NAT,
    // which translates them to another port: the server does not know
    // them, and they break. This is what pinning prevents.
    let forced = Instant::now();
    net.ctl(&["write", "fsel.force", "1"]);
    let broken = |s: &Value| s["A"]["broken"].as_u64().unwrap() + s["C"]["broken"].as_u64().unwrap();
    let mut s = status(&mut net);
    await_until("the established connections to break after the forced flip", || {
        s = status(&mut net);
        broken(&s) == 60
    });
    eprintln!(
        "forced flip: all 60 established connections broken {:.3} s after it",
        forced.elapsed().as_secs_f64()
    );
    report(&s, "after the forced flip");
    report_router(&mut c, "after the forced flip");
    for h in ["fseq.duplicates", "rseq.duplicates"] {
        assert_eq!(num(&mut c, h), 0, "after the forced flip: {h}");
    }
}
