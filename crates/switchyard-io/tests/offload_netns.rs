//! The receive ring between two real Linux stacks at veth's default
//! offloads: host A sends a TCP stream to host B, and a ring on B's
//! interface must see it as it would be on a wire (no super-frame, no
//! partial checksum) and never see what B sends. Needs root; without it
//! the test says so and skips, except under CI=true, where it fails.
//! Everything created is removed, also when the test fails (Drop).
//!
//! Sockets, rings and the TCP stream all live in this process: a thread
//! that joins a namespace (setns) creates them there, and they stay in
//! that namespace whichever thread uses them afterwards.

#[path = "../../../tests/common/netns.rs"]
mod netns;

use netns::{require_root_or_skip, Namespaces};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::packet::Annotations;
use switchyard_core::Batch;
use switchyard_io::device::{ifindex, Device};
use switchyard_io::offload::RxStats;
use switchyard_io::ring::{RxRing, TxRing};

const A_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x0a];
const B_MAC: [u8; 6] = [0x02, 0x5e, 0, 0, 0, 0x0b];
const STREAM: usize = 2 << 20;
/// An ethertype for local experiments (IEEE 802): the frames ToDevice's
/// ring sends, which the receive ring must not see.
const MARKER: [u8; 2] = [0x88, 0xb5];

/// Two namespaces joined by a veth pair, removed on drop.
struct Hosts {
    ns: Namespaces,
    dev: [String; 2],
}

impl Hosts {
    fn new() -> Option<Hosts> {
        if !require_root_or_skip("the offload netns test", &[]) {
            return None;
        }
        let ns = Namespaces::new(&["syoffa", "syoffb"]);
        let dev = [format!("offa{}", ns.tag()), format!("offb{}", ns.tag())];
        ns.veth((0, &dev[0]), (1, &dev[1]));
        let mac = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
        for (i, (addr, m)) in [("10.201.0.1/24", A_MAC), ("10.201.0.2/24", B_MAC)]
            .into_iter()
            .enumerate()
        {
            assert!(ns.ip(i, &["link", "set", &dev[i], "address", &mac(m)]));
            assert!(ns.ip(i, &["addr", "add", addr, "dev", &dev[i]]));
            assert!(ns.ip(i, &["link", "set", &dev[i], "up"]));
        }
        Some(Hosts { ns, dev })
    }

    /// Runs `f` on a thread that joined namespace `i`: what it creates
    /// (sockets, rings) belongs to that namespace.
    fn within<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns.name(i));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on a valid namespace descriptor, moving
            // only this fresh thread (network namespaces are per thread);
            // the descriptor outlives the call.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

fn sum(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// For a TCP/IPv4 frame: (IP checksum verifies, TCP checksum verifies,
/// destination port, payload length). None for other frames.
fn tcp4(f: &[u8]) -> Option<(bool, bool, u16, usize)> {
    if f.get(12..14)? != [0x08, 0x00] || f.get(23)? != &6 {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let seg = ip.get(ihl..tot)?;
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(seg);
    let doff = usize::from(seg[12] >> 4) * 4;
    Some((
        sum(&ip[..ihl]) == 0xffff,
        sum(&pseudo) == 0xffff,
        u16::from_be_bytes([seg[2], seg[3]]),
        seg.len() - doff,
    ))
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

#[test]
fn ring_delivers_wire_frames_from_a_tso_sender_and_never_its_own() {
    let Some(hosts) = Hosts::new() else { return };
    let stats = Arc::new(RxStats::default());
    let (b_dev, st) = (hosts.dev[1].clone(), stats.clone());
    let mut rx = hosts.within(1, move || {
        RxRing::open(&b_dev, ifindex(&b_dev).unwrap(), false, None, st).expect("receive ring")
    });
    let b_dev = hosts.dev[1].clone();
    let mut tx = hosts.within(1, move || {
        TxRing::open(ifindex(&b_dev).unwrap()).expect("transmit ring")
    });
    let listener = hosts.within(1, || TcpListener::bind("10.201.0.2:5001").unwrap());
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got
    });
    let mut client = hosts.within(0, || TcpStream::connect("10.201.0.2:5001").unwrap());
    let sender = std::thread::spawn(move || {
        let data: Vec<u8> = (0..STREAM).map(pattern).collect();
        client.write_all(&data).unwrap();
    });

    // What B's own transmit ring sends out of the interface.
    let mut marker = Batch::new();
    for i in 0..16u8 {
        let mut f = A_MAC.to_vec();
        f.extend_from_slice(&B_MAC);
        f.extend_from_slice(&MARKER);
        f.extend_from_slice(&[i; 46]);
        marker.push(switchyard_core::Packet::from_data(&f));
    }
    assert_eq!(tx.send(&marker).unwrap(), 16);

    let (mut frames, mut too_long, mut own, mut bad_ip, mut bad_tcp, mut payload) = (0, 0, 0, 0, 0, 0);
    let mut not_host = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until the ring has seen the whole stream go by.
    while payload < STREAM {
        let mut b = Batch::new();
        let n = rx.recv(&mut b, 256).unwrap();
        for p in b.iter() {
            let f = p.data();
            frames += 1;
            too_long += usize::from(f.len() > 1514);
            own += usize::from(f[6..12] == B_MAC || f[12..14] == MARKER);
            if let Some((ip_ok, tcp_ok, dport, len)) = tcp4(f) {
                bad_ip += usize::from(!ip_ok);
                bad_tcp += usize::from(!tcp_ok);
                if dport == 5001 {
                    payload += len;
                    not_host += usize::from(p.anno.pkt_type != Annotations::HOST);
                }
            }
        }
        if n == 0 {
            assert!(
                Instant::now() < deadline,
                "the ring saw {payload} of {STREAM} stream bytes in time"
            );
            rx.wait(Duration::from_millis(10)).unwrap();
        }
    }
    sender.join().unwrap();
    let got = server.join().unwrap();
    assert!(got.len() == STREAM && got.iter().enumerate().all(|(i, &b)| b == pattern(i)));

    let seg = stats.gso_segmented.load(Relaxed);
    let segs = stats.gso_segments.load(Relaxed);
    let csum = stats.csum_completed.load(Relaxed);
    eprintln!(
        "{frames} frames; {seg} super-frames became {segs} segments; {csum} partial checksums completed; {} truncated, {} GSO dropped",
        stats.truncated.load(Relaxed),
        stats.gso_dropped.load(Relaxed)
    );
    assert_eq!(too_long, 0, "frames over 1514 bytes reached the graph");
    assert_eq!(
        (bad_ip, bad_tcp),
        (0, 0),
        "frames with wrong checksums reached the graph"
    );
    assert_eq!(own, 0, "the ring saw frames its own host sent");
    assert_eq!(not_host, 0, "frames to B's address not typed HOST");
    assert!(
        seg > 0 && segs > seg,
        "no super-frame was segmented: were veth's offloads off?"
    );
    assert!(csum > 0, "no partial checksum was completed");
    assert_eq!(stats.truncated.load(Relaxed) + stats.gso_dropped.load(Relaxed), 0);
}
