//! The IPv4 router on real interfaces, between real hosts: namespaces
//! `h1` -> `rtr` -> `h2` joined by veth pairs at their default offloads.
//! The hosts are ordinary Linux stacks with an address and a default route
//! via the router; nothing is static, so ARP is real. The router's
//! interfaces hold no kernel address and its namespace does not forward:
//! every packet that crosses is Switchyard's work (configs/ip-router.click).
//!
//! Needs root, iproute2, ping (iputils), traceroute and python3; without
//! them the tests say so loudly and skip, except under CI=true, where they
//! fail. Everything created is removed, also when a test fails.

mod common;

use common::netns::{require_root_or_skip, router_between_two_hosts, Namespaces};
use common::{await_until, num, RouterProc};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use switchyard_control::client::Client;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/ip-router.click");
const MAC0: &str = "02:00:0a:01:00:01";
/// The namespaces, by index.
const H1: usize = 0;
const RTR: usize = 1;
const H2: usize = 2;

/// Two hosts and a router namespace.
pub struct Net {
    /// Declared first: stopped before its namespace goes.
    router: Option<RouterProc>,
    ns: Namespaces,
}

impl Net {
    /// None (after saying why) when this machine cannot run the test.
    pub fn new() -> Option<Net> {
        if !require_root_or_skip("the IP router tests", &["ping", "traceroute", "python3", "timeout"]) {
            return None;
        }
        let ns = router_between_two_hosts();
        Some(Net { router: None, ns })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.ns.path(name)
    }

    /// Runs a shell command in namespace `n`, bounded by a timeout.
    fn sh(&self, n: usize, cmd: &str) -> Output {
        self.ns.sh(n, cmd)
    }

    /// Starts the router with `defines`; returns once its control socket
    /// is ready.
    pub fn start_router(&mut self, defines: &[&str]) -> Client {
        let config = std::fs::read_to_string(CONFIG).unwrap();
        let r = self.ns.start_router(RTR, "rtr", &config, defines);
        let c = r.client();
        self.router = Some(r);
        c
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Pings `dst` from namespace `from`: every reply must arrive, once.
fn ping_ok(net: &Net, from: usize, dst: &str) {
    let o = net.sh(from, &format!("ping -n -c 3 -i 0.2 -W 3 {dst}"));
    let t = text(&o);
    assert!(o.status.success(), "ping {dst} failed:\n{t}");
    assert!(t.contains("3 received"), "ping {dst}:\n{t}");
    assert!(
        !t.contains("DUP!"),
        "duplicate replies (a frame looped back into the router):\n{t}"
    );
}

#[test]
fn hosts_ping_each_other_and_the_router_with_real_arp() {
    let Some(mut net) = Net::new() else { return };
    let mut c = net.start_router(&[]);
    ping_ok(&net, H1, "10.2.0.2");
    ping_ok(&net, H2, "10.1.0.2");
    // The router's own addresses, near and far side.
    ping_ok(&net, H1, "10.1.0.1");
    ping_ok(&net, H1, "10.2.0.1");
    ping_ok(&net, H2, "10.2.0.1");
    // The hosts learned the router's Ethernet address by ARP.
    let neigh = text(&net.sh(H1, "ip neigh show 10.1.0.1"));
    assert!(neigh.contains(MAC0), "h1 has no ARP entry for the router:\n{neigh}");
    // And the router learned the hosts'.
    let table = c.read("arpq1.table").unwrap();
    assert!(table.contains("10.2.0.2"), "arpq1 did not learn h2:\n{table}");
    // A route release on the live router is a control write: take h2's
    // network out, and put the old table back.
    let before = c.read("rt.table").unwrap();
    c.write("rt.remove", "10.2.0.0/24").unwrap();
    // The ping below fails for any reason; the table says it is this one.
    assert_eq!(c.read_param("rt.lookup", "10.2.0.2").unwrap().trim(), "-1");
    let o = net.sh(H1, "ping -n -c 1 -W 1 10.2.0.2");
    assert!(!o.status.success(), "no route, no reply:\n{}", text(&o));
    c.write("rt.table", &before).unwrap();
    ping_ok(&net, H1, "10.2.0.2");
}

#[test]
fn ttl_one_gets_time_exceeded_and_traceroute_sees_the_facing_interface() {
    let Some(mut net) = Net::new() else { return };
    let mut c = net.start_router(&[]);
    let o = net.sh(H1, "ping -n -c 1 -t 1 -W 3 10.2.0.2");
    let t = text(&o);
    assert!(!o.status.success(), "a TTL-1 ping must not arrive:\n{t}");
    assert!(
        t.contains("From 10.1.0.1") && t.contains("Time to live exceeded"),
        "no time exceeded from the router's facing address:\n{t}"
    );
    assert!(num(&mut c, "dt1.drops") >= 1);
    // traceroute: hop 1 is the router's address on h1's side (FixIPSrc),
    // hop 2 the destination (port unreachable from h2's kernel).
    let o = net.sh(H1, "traceroute -n -q 1 -w 3 -m 4 10.2.0.2");
    let t = text(&o);
    let hops: Vec<&str> = t
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .collect();
    assert!(hops.len() >= 2, "traceroute:\n{t}");
    assert!(hops[0].contains("10.1.0.1"), "hop 1 should be 10.1.0.1:\n{t}");
    assert!(hops[1].contains("10.2.0.2"), "hop 2 should be 10.2.0.2:\n{t}");
}

/// A receiver in h2 that stores what one connection sends; the ready file
/// is the event that it listens.
fn start_receiver(net: &Net, out: &Path, ready: &Path) -> Child {
    let script = format!(
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('10.2.0.2', 5001)); s.listen(1)\n\
         open('{ready}', 'w').close()\n\
         s.settimeout(60); c, _ = s.accept(); c.settimeout(60)\n\
         with open('{out}', 'wb') as f:\n\
         \x20   while True:\n\
         \x20       d = c.recv(1 << 16)\n\
         \x20       if not d: break\n\
         \x20       f.write(d)\n",
        ready = ready.display(),
        out = out.display()
    );
    Command::new("timeout")
        .args(["90", "ip", "netns", "exec", net.ns.name(H2), "python3", "-c", &script])
        .spawn()
        .unwrap()
}

#[test]
fn tcp_transfer_of_10_mb_arrives_byte_identical() {
    let Some(mut net) = Net::new() else { return };
    let mut c = net.start_router(&[]);
    // Incompressible, reproducible data.
    let mut data = vec![0u8; 10 * 1024 * 1024 + 12345];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let src = net.path("send.bin");
    std::fs::write(&src, &data).unwrap();
    let (out, ready) = (net.path("recv.bin"), net.path("ready"));
    let mut rx = start_receiver(&net, &out, &ready);
    await_until("the receiver to listen", || ready.exists());
    let send = format!(
        "python3 -c \"import socket; s = socket.create_connection(('10.2.0.2', 5001), timeout=60); \
         s.sendall(open('{}', 'rb').read()); s.shutdown(socket.SHUT_WR); s.recv(1)\"",
        src.display()
    );
    let o = net.sh(H1, &send);
    assert!(o.status.success(), "sender failed:\n{}", text(&o));
    assert!(rx.wait().unwrap().success(), "receiver failed");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), data.len(), "length differs");
    assert!(got == data, "content differs");
    assert!(num(&mut c, "dt1.count") > 1000, "the transfer did not cross the router");
}

#[test]
fn lowered_mtu_fragments_and_df_gets_fragmentation_needed() {
    let Some(mut net) = Net::new() else { return };
    let mut c = net.start_router(&["MTU1=1000"]);
    // Without DF: the router fragments, h2's kernel reassembles, replies.
    let o = net.sh(H1, "ping -n -c 2 -i 0.2 -W 3 -M dont -s 1200 10.2.0.2");
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("2 received"),
        "fragmented ping failed:\n{t}"
    );
    assert!(num(&mut c, "fr1.fragments") >= 4, "router did not fragment");
    // With DF: fragmentation needed, with the MTU, from the router.
    let o = net.sh(H1, "ping -n -c 1 -W 3 -M do -s 1200 10.2.0.2");
    let t = text(&o);
    assert!(!o.status.success(), "a DF ping over the MTU must not arrive:\n{t}");
    assert!(
        t.contains("From 10.1.0.1") && t.contains("Frag needed") && t.contains("mtu = 1000"),
        "no fragmentation-needed with mtu 1000 from the router:\n{t}"
    );
}
