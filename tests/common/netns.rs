//! Network namespaces for the tests on real interfaces: the root check
//! with its skip, uniquely named namespaces removed on drop (also when a
//! test fails), and `ip` itself. Nothing here starts a router, so the I/O
//! crate's tests include this file too (`#[path]`); starting a router in
//! a namespace is [`Namespaces::start_router`] in `common`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `ip ARGS`, quietly; true if it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True if `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tag no other test of this run has: namespace and interface names.
fn unique_tag() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}x{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::SeqCst))
}

/// True if `what` can run here: root, `ip netns` working and every one of
/// `tools` installed. Otherwise says so loudly and returns false, except
/// under CI=true, where a skipped test would hide a broken setup: there it
/// fails.
pub fn require_root_or_skip(what: &str, tools: &[&str]) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    let probe = format!("syprobe{}", unique_tag());
    let netns = root && ip(&["netns", "add", &probe]) && ip(&["netns", "del", &probe]);
    if root && netns && missing.is_empty() {
        return true;
    }
    let why = format!("root: {root}, `ip netns`: {netns}, missing tools: {missing:?}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {what} must run (needs root, iproute2 and {tools:?}; {why})"
    );
    eprintln!("SKIPPED: {what} needs root, `ip netns` and {tools:?} ({why}); run as root to test real interfaces");
    false
}

/// Network namespaces named uniquely per test, without IPv6 chatter
/// (router solicitations) and with loopback up, and a scratch directory;
/// all removed on drop. Deleting a namespace deletes the interfaces in it,
/// and a veth end's peer with it.
pub struct Namespaces {
    names: Vec<String>,
    tag: String,
    dir: PathBuf,
}

impl Namespaces {
    /// One namespace per prefix (`sygen` becomes `sygen1234x0`). Call
    /// [`require_root_or_skip`] first: this panics if one cannot be made.
    pub fn new(prefixes: &[&str]) -> Namespaces {
        let tag = unique_tag();
        let dir = std::env::temp_dir().join(format!("sy-netns-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ns = Namespaces {
            names: Vec::new(),
            tag,
            dir,
        };
        for p in prefixes {
            let name = format!("{p}{}", ns.tag);
            assert!(ip(&["netns", "add", &name]), "ip netns add {name}");
            ns.names.push(name);
            let i = ns.names.len() - 1;
            ns.sh(
                i,
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
            );
            assert!(ns.ip(i, &["link", "set", "lo", "up"]));
        }
        ns
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// This set's unique tag, for interface names of its own.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The scratch directory, removed with the namespaces.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The command prefix that runs a program in namespace `i`.
    pub fn exec(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.names[i]]
    }

    /// `ip -n NAMESPACE ARGS`; true if it succeeded.
    pub fn ip(&self, i: usize, args: &[&str]) -> bool {
        let mut all = vec!["-n", self.names[i].as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A veth pair: interface `a.1` in namespace `a.0`, its peer `b.1` in
    /// namespace `b.0`.
    pub fn veth(&self, a: (usize, &str), b: (usize, &str)) {
        self.veth_with(a, b, &[]);
    }

    /// Like [`veth`](Self::veth), each end with `queues` receive and
    /// transmit queues (the queue a frame arrives on is the one its
    /// sender's stack picked by flow hash).
    pub fn veth_queues(&self, a: (usize, &str), b: (usize, &str), queues: u32) {
        let q = queues.to_string();
        self.veth_with(a, b, &["numtxqueues", &q, "numrxqueues", &q]);
    }

    /// A veth pair whose two ends both get `each` (link options).
    fn veth_with(&self, a: (usize, &str), b: (usize, &str), each: &[&str]) {
        let (na, nb) = (&self.names[a.0], &self.names[b.0]);
        let mut args = vec!["link", "add", a.1, "netns", na];
        args.extend(each);
        args.extend(["type", "veth", "peer", "name", b.1, "netns", nb]);
        args.extend(each);
        assert!(ip(&args), "veth {}@{na} - {}@{nb} {each:?}", a.1, b.1);
    }

    /// Runs a shell command in namespace `i`, bounded by a timeout.
    pub fn sh(&self, i: usize, cmd: &str) -> Output {
        Command::new("timeout")
            .args(["60", "ip", "netns", "exec", &self.names[i], "sh", "-c", cmd])
            .output()
            .unwrap()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            ip(&["netns", "del", n]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The router tests' network: namespace 0, a host (e0 10.1.0.2/24, default
/// via 10.1.0.1); namespace 1, the router (r0 with MAC
/// 02:00:0a:01:00:01 towards host 0, r1 with 02:00:0a:02:00:01 towards
/// host 2, no addresses, kernel forwarding off: Switchyard routes);
/// namespace 2, a host (e0 10.2.0.2/24, default via 10.2.0.1).
pub fn router_between_two_hosts() -> Namespaces {
    let ns = Namespaces::new(&["syh1", "syrt", "syh2"]);
    ns.veth((0, "e0"), (1, "r0"));
    ns.veth((1, "r1"), (2, "e0"));
    assert!(ns.ip(1, &["link", "set", "r0", "address", "02:00:0a:01:00:01"]));
    assert!(ns.ip(1, &["link", "set", "r1", "address", "02:00:0a:02:00:01"]));
    for (n, dev) in [(0, "e0"), (1, "r0"), (1, "r1"), (2, "e0")] {
        assert!(ns.ip(n, &["link", "set", dev, "up"]));
    }
    for (n, addr, gw) in [(0, "10.1.0.2/24", "10.1.0.1"), (2, "10.2.0.2/24", "10.2.0.1")] {
        assert!(ns.ip(n, &["addr", "add", addr, "dev", "e0"]));
        assert!(ns.ip(n, &["route", "add", "default", "via", gw]));
    }
    ns.sh(1, "sysctl -qw net.ipv4.ip_forward=0");
    ns
}
