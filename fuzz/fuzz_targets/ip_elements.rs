//! Every element that reads packet bytes, on arbitrary bytes with
//! arbitrary annotations: never a panic (an index past the packet would
//! be one), and never more packets out than the element's kind allows
//! (see [`most_out`]): one packet in makes at most one out, except where
//! the element makes packets (fragments). The first input bytes choose
//! the element and the annotations; the rest is the packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use switchyard_core::{Args, Batch, Harness, Packet, PortInfo, Processing, Registry};

/// (class, configuration, inputs, outputs)
const CASES: &[(&str, &str, usize, usize)] = &[
    ("Strip", "14", 1, 1),
    ("Unstrip", "14", 1, 1),
    ("CheckIPHeader", "INTERFACES 10.0.0.1/24", 1, 2),
    ("MarkIPHeader", "0", 1, 1),
    ("GetIPAddress", "16", 1, 1),
    ("DecIPTTL", "", 1, 2),
    ("SetIPChecksum", "", 1, 1),
    ("SetIPDSCP", "10", 1, 1),
    ("FixIPSrc", "10.0.0.1", 1, 1),
    ("IPGWOptions", "10.0.0.1", 1, 2),
    ("IPFragmenter", "576", 1, 2),
    ("ICMPError", "10.0.0.1, unreachable, needfrag, PMTU 576", 1, 1),
    ("ICMPPingResponder", "", 1, 2),
    ("DropBroadcasts", "", 1, 1),
    ("HostEtherFilter", "00:01:02:03:04:05", 1, 2),
    ("EtherRewrite", "00:01:02:03:04:05, 00:01:02:03:04:06", 1, 1),
    ("ARPResponder", "10.0.0.1/24 00:01:02:03:04:05", 1, 2),
    ("ARPQuerier", "10.0.0.1, 00:01:02:03:04:05", 2, 2),
    ("HashSwitch", "12, 8", 1, 3),
    ("FlowTable", "CAPACITY 4", 2, 2),
    ("IPPrint", "ACTIVE false", 1, 1),
    ("Classifier", "12/0800 23/11, 12/0806, -", 1, 3),
    ("IPClassifier", "tcp dst port 80, udp, icmp type echo, -", 1, 4),
    (
        "IPFilter",
        "deny src net 10.0.0.0/8 and tcp opt syn, allow ip[9] == 17, deny all",
        1,
        1,
    ),
];

/// The most packets `class` may emit for one packet of `len` bytes. Most
/// pass it on, answer it (a ping reply, an ICMP error, an ARP reply) or
/// drop it: one. IPFragmenter cuts it into fragments of at least 8 data
/// bytes. ARPQuerier, given an IP packet it has no entry for, holds it
/// and sends a query; one packet in never releases more than itself, but
/// it may be sent with the query, so two.
fn most_out(class: &str, len: usize) -> usize {
    match class {
        "IPFragmenter" => 1 + len / 8,
        "ARPQuerier" => 2,
        _ => 1,
    }
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(switchyard_elements::standard)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, bytes) = data.split_at(8);
    let (class, config, inputs, outputs) = CASES[head[0] as usize % CASES.len()];
    let Some(c) = registry().get(class) else {
        return;
    };
    let mut args = Args::parse_str("fuzz", config);
    let Some(mut e) = (c.factory)(&mut args) else {
        panic!("{class}({config}) must configure");
    };
    let ports = PortInfo {
        inputs: vec![Processing::Push; inputs],
        outputs: vec![Processing::Push; outputs],
    };
    e.initialize(&ports).expect("initializes");
    let mut h = Harness::new(e, inputs, outputs);
    let mut p = Packet::from_data(bytes);
    p.anno.dst_ip = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    p.anno.pkt_type = head[5] % 5;
    p.anno.paint = head[6] % 3;
    if head[7] & 0x80 != 0 {
        let off = (head[7] & 0x3f) as usize;
        p.set_network_header(off.min(bytes.len()), 20);
    }
    if head[7] & 0x40 != 0 {
        p.anno.flags |= switchyard_core::Annotations::FIX_IP_SRC;
    }
    let mut b = Batch::new();
    b.push(p);
    h.push(head[1] as usize % inputs, b);
    let out: usize = (0..outputs).map(|o| h.count(o)).sum();
    let most = most_out(class, bytes.len());
    assert!(out <= most, "{class}: {out} packets out for one in (at most {most})");
});
