//! Both elements together: dumps written, read back and written again,
//! through a running router and through the format functions.

use super::ip_summary::{split_words, Field};
use super::parse::{Line, Parser};
use super::summary::Summary;
use crate::testutil::{configure, handler, read, write};
use crate::wire::{checksum, put16, put32, set_ip_checksum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::{Batch, HandlerTable, Harness, Packet, PortInfo, Processing, Router};

/// A directory of its own under the system's temporary directory,
/// removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("switchyard-trace-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `config` until it stops by itself and returns its handlers.
fn run(config: &str) -> Arc<HandlerTable> {
    let (mut graph, table) =
        switchyard_core::load_text("t.click", config, &crate::standard(), &[]).unwrap_or_else(|e| panic!("{e}"));
    switchyard_core::activate(&mut graph).unwrap();
    let table = Arc::new(table);
    let mut router = Router::start(graph, table.clone());
    assert!(router.wait_timeout(Duration::from_secs(20)), "the router stops");
    table
}

fn num(t: &HandlerTable, h: &str) -> u64 {
    t.read(h).unwrap().parse().unwrap()
}

const FIELDS: &str = "timestamp ip_src ip_dst sport dport ip_proto ip_len ip_id ip_ttl \
                      tcp_flags tcp_seq tcp_ack tcp_window payload_len payload";

/// Lines as ToIPSummaryDump writes them for FIELDS: a TCP SYN with a
/// payload, a SYN-ACK, a UDP packet whose payload needs escapes, an
/// ICMP packet (no ports, no TCP fields).
const PACKETS: &[&str] = &[
    "1.000001 10.0.0.1 10.0.0.2 1234 80 T 43 7 64 S 100 0 8192 3 \"abc\"",
    "1.500000 10.0.0.2 10.0.0.1 80 1234 T 40 8 63 SA 200 101 65535 0 \"\"",
    "2.000000001 192.168.0.1 8.8.8.8 5353 53 U 36 9 1 - - - - 8 \"\\001\\002\\\"\\$\\\\\\n\\r\\t\"",
    "3.250000 1.1.1.1 2.2.2.2 - - I 28 10 255 - - - - 8 \"\\000\\000\\000\\000\\000\\000\\000\\000\"",
];

fn header(banner: &str, fields: &str) -> String {
    format!("!IPSummaryDump 1.3\n!creator \"{banner}\"\n!data {fields}\n")
}

#[test]
fn a_dump_read_and_written_again_has_the_same_lines() {
    let dir = TempDir::new("round");
    let (input, output) = (dir.path("in.txt"), dir.path("out.txt"));
    let mut text = header("test", FIELDS);
    text.push_str("# a comment, then a line that does not parse\n");
    text.push_str(&PACKETS[..2].join("\n"));
    text.push_str("\nyesterday 10.0.0.1 10.0.0.2\n\n");
    text.push_str(&PACKETS[2..].join("\n"));
    text.push('\n');
    std::fs::write(&input, text).unwrap();
    let t = run(&format!(
        "f :: FromIPSummaryDump(\"{input}\", STOP true) -> t :: ToIPSummaryDump(\"{output}\", CONTENTS {FIELDS}, BANNER test);"
    ));
    assert_eq!(num(&t, "f.count"), 4);
    assert_eq!(num(&t, "f.bad_lines"), 1);
    assert_eq!(num(&t, "t.count"), 4);
    let written = std::fs::read_to_string(&output).unwrap();
    assert_eq!(written, header("test", FIELDS) + &PACKETS.join("\n") + "\n");
    assert_eq!(t.read("f.filepos").unwrap(), t.read("f.filesize").unwrap());
}

#[test]
fn with_checksum_packets_are_whole_and_pass_check_ip_header() {
    let data = "!data src dst proto len sport dport\\n\
                10.0.0.1 10.0.0.2 T 1500 1 2\\n\
                10.0.0.1 10.0.0.2 U 100 3 4\\n\
                10.0.0.1 10.0.0.2 I 84 - -\\n";
    let t = run(&format!(
        "FromIPSummaryDump(DATA \"{data}\", STOP true, CHECKSUM true) -> c :: CheckIPHeader -> n :: Counter -> Discard;"
    ));
    assert_eq!(num(&t, "n.count"), 3);
    assert_eq!(num(&t, "n.byte_count"), 1500 + 100 + 84);
}

#[test]
fn one_line_stands_for_count_packets_with_multipacket() {
    let dir = TempDir::new("multi");
    let out = dir.path("out.txt");
    let data = "!data ts ip_len count\\n1 3001 3\\n2 40 0\\n";
    let t = run(&format!(
        "f :: FromIPSummaryDump(DATA \"{data}\", STOP true, MULTIPACKET true) \
         -> ToIPSummaryDump(\"{out}\", CONTENTS ts len count, HEADER false);"
    ));
    assert_eq!(num(&t, "f.count"), 4);
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written,
        "1.000000 1000 1\n1.000000 1000 1\n1.000000 1001 1\n2.000000 40 1\n"
    );
}

#[test]
fn a_binary_dump_is_refused_after_its_text_lines() {
    let data = "!data ts\\n1\\n!binary\\n\\x00\\x00\\x00\\x08\\n";
    let t = run(&format!(
        "f :: FromIPSummaryDump(DATA \"{data}\", STOP true) -> Discard;"
    ));
    assert_eq!(num(&t, "f.count"), 1);
}

#[test]
fn configuration_errors_name_the_problem() {
    let dir = TempDir::new("config");
    let missing = dir.path("nope.txt");
    let err = configure(
        "f :: FromIPSummaryDump",
        crate::FromIPSummaryDump::CLASS,
        &format!("\"{missing}\""),
    )
    .err();
    assert!(err.as_deref().is_some_and(|e| e.contains(&missing)), "{err:?}");
    assert!(configure(
        "f :: FromIPSummaryDump",
        crate::FromIPSummaryDump::CLASS,
        &format!("\"{missing}\", ALLOW_NONEXISTENT true")
    )
    .is_ok());
    let err = configure(
        "f :: FromIPSummaryDump",
        crate::FromIPSummaryDump::CLASS,
        "DATA x, CONTENTS ip_srcc",
    )
    .err();
    assert_eq!(
        err.as_deref(),
        Some("'f :: FromIPSummaryDump': CONTENTS: unknown field 'ip_srcc' (did you mean 'ip_src'?)")
    );
    let out = dir.path("out.txt");
    let err = configure(
        "t :: ToIPSummaryDump",
        crate::ToIPSummaryDump::CLASS,
        &format!("\"{out}\", CONTENTS ip_opt"),
    )
    .err();
    assert_eq!(
        err.as_deref(),
        Some("'t :: ToIPSummaryDump': CONTENTS: field 'ip_opt' is not supported")
    );
    let err = configure(
        "t :: ToIPSummaryDump",
        crate::ToIPSummaryDump::CLASS,
        &format!("\"{out}\", BINARY true"),
    )
    .err();
    assert!(err.is_some_and(|e| e.contains("BINARY")));
    let nodir = dir.path("no/such/dir/out.txt");
    assert!(configure(
        "t :: ToIPSummaryDump",
        crate::ToIPSummaryDump::CLASS,
        &format!("\"{nodir}\"")
    )
    .is_err());
    assert!(configure(
        "t :: ToIPSummaryDump",
        crate::ToIPSummaryDump::CLASS,
        &format!("\"{out}\", src dst")
    )
    .is_ok());
    assert!(!std::path::Path::new(&out).exists(), "configuring creates no file");
}

#[test]
fn the_sink_writes_through_a_harness_and_passes_packets_on() {
    let dir = TempDir::new("harness");
    let out = dir.path("out.txt");
    let mut e = configure(
        "t :: ToIPSummaryDump",
        crate::ToIPSummaryDump::CLASS,
        &format!("\"{out}\", CONTENTS src proto tcp_flags, BAD_PACKETS true"),
    )
    .unwrap();
    e.initialize(&PortInfo {
        inputs: vec![Processing::Push],
        outputs: vec![Processing::Push],
    })
    .unwrap();
    e.activate().unwrap();
    let hs = e.handlers();
    let mut h = Harness::new(e, 1, 1);
    let mut b = Batch::new();
    let mut syn = crate::wire::tests::ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 20);
    syn[32] = 0x50;
    syn[33] = 0x02;
    let mut p = Packet::from_data(&syn);
    p.set_network_header(0, 20);
    b.push(p);
    b.push(Packet::from_data(&[1, 2, 3]));
    h.push(0, b);
    assert_eq!(h.count(0), 2, "both packets go on");
    assert_eq!(read(&hs, "count"), "2");
    write(&hs, "flush", "").unwrap();
    assert!(handler(&hs, "flush").read.is_none());
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written,
        "!IPSummaryDump 1.3\n!data ip_src ip_proto tcp_flags\n10.0.0.1 T S\n!bad no IP header\n- - -\n"
    );
}

#[test]
fn source_handlers_report_as_click() {
    let e = configure(
        "f :: FromIPSummaryDump",
        crate::FromIPSummaryDump::CLASS,
        "DATA \"\", SAMPLE 0.1",
    )
    .unwrap();
    let hs = e.handlers();
    assert_eq!(read(&hs, "sampling_prob"), "0.1");
    assert_eq!(read(&hs, "encap"), "IP");
    assert_eq!(read(&hs, "active"), "true");
    assert_eq!(read(&hs, "filesize"), "-");
    write(&hs, "active", "false").unwrap();
    assert_eq!(read(&hs, "active"), "false");
    assert!(write(&hs, "active", "maybe").is_err());
}

/// One packet as a generator draws it: an IPv4 header with a correct
/// checksum, a TCP or UDP header (checksum zero) when the packet is a
/// first fragment of those, then the payload.
#[derive(Debug, Clone)]
struct Drawn {
    proto: u8,
    tos: u8,
    id: u16,
    ttl: u8,
    frag: u16,
    src: u32,
    dst: u32,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u16,
    window: u16,
    urp: u16,
    payload: Vec<u8>,
    timestamp_ns: u64,
    paint: u8,
}

impl Drawn {
    fn packet(&self) -> Packet {
        let first = self.frag & 0x1fff == 0;
        let th = match self.proto {
            6 if first => 20,
            17 if first => 8,
            _ => 0,
        };
        let len = 20 + th + self.payload.len();
        let mut d = vec![0u8; len];
        d[0] = 0x45;
        d[1] = self.tos;
        put16(&mut d, 2, len as u16);
        put16(&mut d, 4, self.id);
        put16(&mut d, 6, self.frag);
        d[8] = self.ttl;
        d[9] = self.proto;
        put32(&mut d, 12, self.src);
        put32(&mut d, 16, self.dst);
        set_ip_checksum(&mut d);
        if th > 0 {
            put16(&mut d, 20, self.ports.0);
            put16(&mut d, 22, self.ports.1);
        }
        if th == 20 {
            put32(&mut d, 24, self.seq);
            put32(&mut d, 28, self.ack);
            d[32] = 0x50 | (self.flags >> 8) as u8;
            d[33] = self.flags as u8;
            put16(&mut d, 34, self.window);
            put16(&mut d, 38, self.urp);
        }
        if th == 8 {
            put16(&mut d, 24, (8 + self.payload.len()) as u16);
        }
        d[20 + th..].copy_from_slice(&self.payload);
        let mut p = Packet::from_data(&d);
        p.set_network_header(0, 20);
        p.anno.timestamp_ns = self.timestamp_ns;
        p.anno.paint = self.paint;
        p
    }
}

fn drawn() -> impl proptest::strategy::Strategy<Value = Drawn> {
    use proptest::prelude::*;
    let header = (
        // Not UDP-Lite (136): no field holds its coverage and checksum,
        // in Click either.
        prop_oneof![
            Just(6u8),
            Just(17u8),
            Just(1u8),
            any::<u8>().prop_map(|p| if p == 136 { 137 } else { p })
        ],
        any::<u8>(),
        any::<u16>(),
        any::<u8>(),
        prop_oneof![Just(0u16), Just(0x4000), Just(0x2000), 1u16..0x8000],
        any::<u32>(),
        any::<u32>(),
        any::<(u16, u16)>(),
    );
    let transport = (
        any::<u32>(),
        any::<u32>(),
        0u16..0x200,
        any::<u16>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        0u64..(1u64 << 32) * 1_000_000_000,
        any::<u8>(),
    );
    (header, transport).prop_map(
        |((proto, tos, id, ttl, frag, src, dst, ports), (seq, ack, flags, window, urp, payload, ts, paint))| Drawn {
            proto,
            tos,
            id,
            ttl,
            frag,
            src,
            dst,
            ports,
            seq,
            ack,
            flags,
            window,
            urp,
            payload,
            timestamp_ns: ts,
            paint,
        },
    )
}

const ALL_FIELDS: &str = "timestamp ip_src ip_dst ip_proto ip_tos ip_id ip_ttl ip_fragoff ip_len sport dport \
                          tcp_seq tcp_ack tcp_flags tcp_window tcp_urp udp_len payload direction";

fn summary_line(s: &Summary, p: &Packet) -> String {
    let mut out = Vec::new();
    s.write(p, &mut out, None);
    String::from_utf8(out).unwrap()
}

proptest::proptest! {
    /// Writing a packet's line and reading it back gives the same
    /// packet, byte for byte, with its timestamp and paint, and the same
    /// line again.
    #[test]
    fn writing_then_reading_gives_the_same_packet(d in drawn()) {
        let words = split_words(ALL_FIELDS);
        let fields: Vec<Field> = super::ip_summary::FieldList(ALL_FIELDS.into()).resolve().unwrap();
        let summary = Summary::new(fields, true);
        let original = d.packet();
        let line = summary_line(&summary, &original);
        let mut parser = Parser::default();
        parser.set_fields(&words);
        proptest::prop_assert_eq!(parser.line(line.trim_end().as_bytes()), Line::Packet, "{}", line);
        let again = parser.builder.emit(None, false);
        proptest::prop_assert_eq!(again.data(), original.data(), "{}", line);
        proptest::prop_assert_eq!(again.anno.timestamp_ns, original.anno.timestamp_ns);
        proptest::prop_assert_eq!(again.anno.paint, original.anno.paint);
        proptest::prop_assert_eq!(summary_line(&summary, &again), line);
        proptest::prop_assert_eq!(checksum(&again.data()[..20]), 0);
    }

    /// Whatever bytes a packet holds, wherever its network header is
    /// marked, writing its line never panics and gives one line per
    /// packet (two with a `!bad` one).
    #[test]
    fn any_packet_is_written(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        net in proptest::option::of(0usize..40),
        version_ok in proptest::prelude::any::<bool>(),
    ) {
        let mut data = data;
        if let (true, Some(n)) = (version_ok, net) {
            if let Some(b) = data.get_mut(n) {
                *b = 0x45 + (*b & 3) * 2;
            }
        }
        let every = "timestamp ts_sec ts_usec ts_usec1 count link direction wire_len ip_src ip_dst ip_tos \
                     ip_dscp ip_ecn ip_ttl ip_frag ip_fragoff ip_id ip_sum ip_proto ip_hl ip_len ip_capture_len \
                     sport dport tcp_seq tcp_ack tcp_off tcp_flags tcp_window tcp_urp tcp_opt tcp_ntopt tcp_sack \
                     udp_len payload_len payload";
        let fields = super::ip_summary::FieldList(every.into()).resolve().unwrap();
        let summary = Summary::new(fields, true);
        let mut p = Packet::from_data(&data);
        if let Some(n) = net.filter(|&n| n <= data.len()) {
            p.set_network_header(n, 20);
        }
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        summary.write(&p, &mut out, Some(&mut bad));
        proptest::prop_assert_eq!(out.iter().filter(|&&c| c == b'\n').count(), 1);
        proptest::prop_assert!(bad.is_empty() || (bad.starts_with(b"!bad ") && bad.ends_with(b"\n")));
    }

    /// Whatever a line holds, reading it never panics, and a packet it
    /// makes has a valid IP header at its start.
    #[test]
    fn any_line_is_read_or_refused(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let mut parser = Parser::default();
        parser.set_fields(&split_words(ALL_FIELDS));
        if parser.line(&line) == Line::Packet {
            let p = parser.builder.emit(None, true);
            proptest::prop_assert!(crate::wire::checked_header_len(p.data()).is_some());
        }
    }
}

#[test]
fn a_line_too_long_is_skipped_without_being_kept() {
    let dir = TempDir::new("long");
    let input = dir.path("in.txt");
    let long = "1 ".repeat(super::from_ip_summary_dump::MAX_LINE);
    std::fs::write(&input, format!("!data ts\n{long}\n2\n")).unwrap();
    let t = run(&format!(
        "f :: FromIPSummaryDump(\"{input}\", STOP true) -> c :: Counter -> Discard;"
    ));
    assert_eq!((num(&t, "f.bad_lines"), num(&t, "c.count")), (1, 1));
}

#[test]
fn a_slow_consumer_behind_a_queue_loses_nothing() {
    let dir = TempDir::new("queue");
    let (input, output) = (dir.path("in.txt"), dir.path("out.txt"));
    let lines: Vec<String> = (0..2000)
        .map(|i| format!("{i}.000000 10.0.{}.{} {i}", i / 256, i % 256))
        .collect();
    std::fs::write(&input, format!("!data ts src id\n{}\n", lines.join("\n"))).unwrap();
    let t = run(&format!(
        "FromIPSummaryDump(\"{input}\", STOP true) -> q :: Queue(10) \
         -> t :: ToIPSummaryDump(\"{output}\", CONTENTS ts src id, HEADER false);"
    ));
    assert_eq!(num(&t, "q.drops"), 0);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), lines.join("\n") + "\n");
}

#[test]
fn a_pulled_source_sends_the_dump_and_stops() {
    let data = "!data ts\\n1\\n1.01\\n1.02\\n";
    let t = run(&format!(
        "f :: FromIPSummaryDump(DATA \"{data}\", STOP true, TIMING true) -> Unqueue -> c :: Counter -> Discard;"
    ));
    assert_eq!(num(&t, "c.count"), 3);
}
