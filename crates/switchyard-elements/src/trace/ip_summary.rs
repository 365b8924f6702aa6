//! The IP summary dump format (Click's `IPSummaryDump 1.3`) that
//! FromIPSummaryDump reads and ToIPSummaryDump writes: the field names
//! and their aliases, and the text form of each kind of value.
//!
//! Everything here is a pure function over text and numbers, so both
//! elements and the tests share one definition of the format.

use crate::wire::{IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP};

/// The version ToIPSummaryDump writes and FromIPSummaryDump expects.
pub const MAJOR_VERSION: u32 = 1;
pub const MINOR_VERSION: u32 = 3;

/// One field (column) of a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Timestamp,
    NTimestamp,
    TsSec,
    TsUsec,
    TsUsec1,
    Count,
    Link,
    Paint,
    Direction,
    WireLen,
    IpSrc,
    IpDst,
    IpTos,
    IpDscp,
    IpEcn,
    IpTtl,
    IpFrag,
    IpFragoff,
    IpId,
    IpSum,
    IpProto,
    IpHl,
    IpLen,
    IpCaptureLen,
    Sport,
    Dport,
    TcpSeq,
    TcpAck,
    TcpOff,
    TcpFlags,
    TcpWindow,
    TcpUrp,
    TcpOpt,
    TcpNtopt,
    TcpSack,
    UdpLen,
    PayloadLen,
    Payload,
}

/// A field's canonical name and the rank at which the reader applies it:
/// annotations, then the IP header (fragment bits and header length
/// before the rest, the length and checksum after), then the transport
/// header, then the payload, as Click orders them, so that a header
/// exists with its protocol set before fields inside it are written.
struct Spec {
    name: &'static str,
    field: Field,
    order: u16,
}

const fn spec(name: &'static str, field: Field, order: u16) -> Spec {
    Spec { name, field, order }
}

const ANNO: u16 = 100;
const NET: u16 = 300;
const TRANSP: u16 = 400;
const PAYLOAD: u16 = 500;

const SPECS: &[Spec] = &[
    spec("timestamp", Field::Timestamp, ANNO),
    spec("ntimestamp", Field::NTimestamp, ANNO),
    spec("ts_sec", Field::TsSec, ANNO),
    spec("ts_usec", Field::TsUsec, ANNO),
    spec("ts_usec1", Field::TsUsec1, ANNO),
    spec("count", Field::Count, ANNO),
    spec("link", Field::Link, ANNO),
    spec("paint", Field::Paint, ANNO),
    spec("direction", Field::Direction, ANNO),
    spec("wire_len", Field::WireLen, ANNO),
    spec("ip_src", Field::IpSrc, NET),
    spec("ip_dst", Field::IpDst, NET),
    spec("ip_tos", Field::IpTos, NET),
    spec("ip_dscp", Field::IpDscp, NET),
    spec("ip_ecn", Field::IpEcn, NET),
    spec("ip_ttl", Field::IpTtl, NET),
    spec("ip_frag", Field::IpFrag, NET - 2),
    spec("ip_fragoff", Field::IpFragoff, NET - 1),
    spec("ip_id", Field::IpId, NET),
    spec("ip_sum", Field::IpSum, NET + 2),
    spec("ip_proto", Field::IpProto, NET),
    spec("ip_hl", Field::IpHl, NET - 1),
    spec("ip_len", Field::IpLen, NET + 1),
    spec("ip_capture_len", Field::IpCaptureLen, PAYLOAD + 2),
    spec("sport", Field::Sport, TRANSP),
    spec("dport", Field::Dport, TRANSP),
    spec("tcp_seq", Field::TcpSeq, TRANSP),
    spec("tcp_ack", Field::TcpAck, TRANSP),
    spec("tcp_off", Field::TcpOff, TRANSP - 1),
    spec("tcp_flags", Field::TcpFlags, TRANSP),
    spec("tcp_window", Field::TcpWindow, TRANSP),
    spec("tcp_urp", Field::TcpUrp, TRANSP),
    spec("tcp_opt", Field::TcpOpt, TRANSP + 3),
    spec("tcp_ntopt", Field::TcpNtopt, TRANSP + 2),
    spec("tcp_sack", Field::TcpSack, TRANSP + 1),
    spec("udp_len", Field::UdpLen, TRANSP),
    spec("payload_len", Field::PayloadLen, PAYLOAD + 1),
    spec("payload", Field::Payload, PAYLOAD),
];

/// Click's other names for fields (each maps to a name, which may itself
/// be an alias).
const SYNONYMS: &[(&str, &str)] = &[
    ("utimestamp", "timestamp"),
    ("ts", "utimestamp"),
    ("sec", "ts_sec"),
    ("usec", "ts_usec"),
    ("usec1", "ts_usec1"),
    ("first_utimestamp", "first_timestamp"),
    ("first_ts", "first_utimestamp"),
    ("pkt_count", "count"),
    ("packet_count", "count"),
    ("agg", "aggregate"),
    ("wire_length", "wire_len"),
    ("length", "ip_len"),
    ("ip_p", "ip_proto"),
    ("tcp_seqno", "tcp_seq"),
    ("tcp_ackno", "tcp_ack"),
    ("tcp_win", "tcp_window"),
    ("payload_length", "payload_len"),
    ("ether_src", "eth_src"),
    ("ether_dst", "eth_dst"),
    ("ether_type", "eth_type"),
];

/// Fields Click knows that Switchyard does not: they need annotations
/// Switchyard lacks (first timestamp, aggregate), or are not written yet.
const UNSUPPORTED: &[&str] = &[
    "first_timestamp",
    "first_ntimestamp",
    "aggregate",
    "ip_opt",
    "icmp_type",
    "icmp_code",
    "icmp_type_name",
    "icmp_code_name",
    "icmp_flowid",
    "icmp_seq",
    "icmp_nextmtu",
    "payload_md5",
    "payload_md5_hex",
    "eth_src",
    "eth_dst",
    "eth_type",
];

/// What a field name means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Field),
    /// A Click field Switchyard does not support, by its canonical name.
    Unsupported(&'static str),
    Unknown,
}

impl Field {
    fn spec(self) -> &'static Spec {
        SPECS.iter().find(|s| s.field == self).expect("every field has a spec")
    }

    /// The canonical name, as `!data` lines write it.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The rank at which the reader applies this field.
    pub fn order(self) -> u16 {
        self.spec().order
    }

    /// True for fields read from the packet's IP headers (the rest are
    /// annotations): only these make the writer look at the headers.
    pub fn needs_headers(self) -> bool {
        self.order() != ANNO
    }

    /// Looks a name up as Click does: aliases, exact names, then the
    /// name with its first space made an underscore, or with `ip_`
    /// before it when it has no underscore (`src` is `ip_src`, `"tcp
    /// seq"` is `tcp_seq`). Case matters, as in Click.
    pub fn lookup(name: &str) -> Lookup {
        let mut name = name.to_string();
        // Each step either follows an alias (a bounded chain) or makes
        // the name longer by a fixed rule at most once per space, so
        // this ends; the bound is only a guard.
        for _ in 0..64 {
            if let Some(&(_, to)) = SYNONYMS.iter().find(|(from, _)| *from == name) {
                name = to.to_string();
                continue;
            }
            if let Some(s) = SPECS.iter().find(|s| s.name == name) {
                return Lookup::Found(s.field);
            }
            if let Some(&u) = UNSUPPORTED.iter().find(|u| **u == name) {
                return Lookup::Unsupported(u);
            }
            if let Some(i) = name.find(' ') {
                name.replace_range(i..i + 1, "_");
            } else if !name.contains('_') {
                name.insert_str(0, "ip_");
            } else {
                return Lookup::Unknown;
            }
        }
        Lookup::Unknown
    }

    /// Every canonical name (for suggestions).
    pub fn names() -> impl Iterator<Item = &'static str> {
        SPECS.iter().map(|s| s.name)
    }
}

/// A field list as an element argument gives it (`CONTENTS ip_src
/// "tcp seq"`): the raw text, split and looked up by [`FieldList::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldList(pub String);

impl switchyard_core::FromArg for FieldList {
    const EXPECTED: &'static str = "a space-separated list of field names";
    fn from_arg(text: &str) -> Option<Self> {
        Some(FieldList(text.to_string()))
    }
}

impl FieldList {
    /// The words of the list.
    pub fn words(&self) -> Vec<String> {
        split_words(&self.0)
    }

    /// The fields, or what is wrong with the first name that is not one
    /// (with a suggestion for a near miss).
    pub fn resolve(&self) -> Result<Vec<Field>, String> {
        let words = self.words();
        if words.is_empty() {
            return Err("no fields given".into());
        }
        words
            .iter()
            .map(|w| match Field::lookup(w) {
                Lookup::Found(f) => Ok(f),
                Lookup::Unsupported(c) => Err(format!("field '{c}' is not supported")),
                Lookup::Unknown => Err(match switchyard_lang::nearest(w, Field::names()) {
                    Some(n) => format!("unknown field '{w}' (did you mean '{n}'?)"),
                    None => format!("unknown field '{w}'"),
                }),
            })
            .collect()
    }
}

/// Splits a field list (`ip_src ip_dst "tcp seq"`) into words at
/// whitespace outside quotes and removes one level of quoting from each,
/// as Click reads CONTENTS and `!data` lines.
pub fn split_words(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i = match b[i] {
                b'"' => skip_double_quote(b, i),
                b'\'' => b[i + 1..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map_or(b.len(), |p| i + p + 2),
                _ => i + 1,
            };
        }
        let word = &b[start..i];
        let unquoted = unquote(word).unwrap_or_else(|| word.to_vec());
        words.push(String::from_utf8_lossy(&unquoted).into_owned());
    }
    words
}

/// The index just past the double-quoted string starting at `b[at]`
/// (the end of `b` when it is not closed).
pub fn skip_double_quote(b: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Quotes `data` as Click's `cp_quote` does (what the `payload` field
/// holds): double quotes around it; backslash, double quote and dollar
/// escaped with a backslash; tab, CR and LF as `\t`, `\r`, `\n`; other
/// bytes below 32 or above 126 as three octal digits.
pub fn quote(data: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    switchyard_lang::config::quote_into(data, out);
    out.push(b'"');
}

/// Removes one level of quoting from one word, as Click's `cp_unquote`:
/// `"..."` with backslash escapes, `'...'` as it is, `\<hex>` outside
/// quotes, other bytes as they are. `None` for a quote left open (Click
/// takes the rest of the word; a dump line cut short is better refused).
pub fn unquote(word: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(word.len());
    unquote_into(word, &mut out).then_some(out)
}

/// [`unquote`] appending to `out`; false for a quote left open.
pub fn unquote_into(b: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(b'"') => break,
                        Some(b'\\') => i = switchyard_lang::config::process_backslash(b, i, out),
                        Some(&c) => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            b'\'' => {
                let Some(close) = b[i + 1..].iter().position(|&c| c == b'\'') else {
                    return false;
                };
                out.extend_from_slice(&b[i + 1..i + 1 + close]);
                i += close + 2;
            }
            b'\\' if b.get(i + 1) == Some(&b'<') => i = switchyard_lang::config::process_backslash(b, i, out),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    true
}

/// Parses an unsigned integer as Click's `IntArg` does: an optional `+`,
/// then `0x` hex, `0b` binary, a leading `0` for octal, or decimal, with
/// underscores allowed between digits. `None` past `max`.
pub fn parse_uint(s: &[u8], max: u64) -> Option<u64> {
    let s = s.strip_prefix(b"+").unwrap_or(s);
    let (digits, base) = if s.len() > 2 && s[0] == b'0' && matches!(s[1], b'x' | b'X') {
        (&s[2..], 16)
    } else if s.len() > 2 && s[0] == b'0' && matches!(s[1], b'b' | b'B') {
        (&s[2..], 2)
    } else if s.len() > 1 && s[0] == b'0' {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || digits[0] == b'_' || digits[digits.len() - 1] == b'_' {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if c == b'_' {
            continue;
        }
        let d = (c as char).to_digit(base)?;
        v = v.checked_mul(u64::from(base))?.checked_add(u64::from(d))?;
    }
    (v <= max).then_some(v)
}

const NS: u64 = 1_000_000_000;

/// Writes a timestamp as Click does with nanosecond timestamps: seconds,
/// a dot, then six digits when the time is a whole microsecond, nine
/// otherwise (`996033261.451094`).
pub fn format_timestamp(ns: u64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let (sec, sub) = (ns / NS, ns % NS);
    let _ = if sub % 1000 == 0 {
        write!(out, "{sec}.{:06}", sub / 1000)
    } else {
        write!(out, "{sec}.{sub:09}")
    };
}

/// Parses a timestamp (`996033261.451094`, `12`, `0.5`) to nanoseconds
/// since the epoch; digits past the ninth after the dot round. Negative
/// times (which Click allows) have no place in Switchyard's annotation.
pub fn parse_timestamp(s: &[u8]) -> Option<u64> {
    let (int, frac) = match s.iter().position(|&c| c == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &s[s.len()..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let mut sec: u64 = 0;
    for &c in int {
        sec = sec.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    let mut sub: u64 = 0;
    for i in 0..9 {
        sub = sub * 10 + frac.get(i).map_or(0, |&c| u64::from(c - b'0'));
    }
    if frac.get(9).is_some_and(|&c| c >= b'5') {
        sub += 1;
    }
    sec.checked_mul(NS)?.checked_add(sub)
}

/// TCP flag letters, bit 0 (FIN) first: Click's `FSRPAUECN`.
const TCP_FLAG_LETTERS: &[u8; 9] = b"FSRPAUECN";

/// Writes TCP flags as Click: `PA` for PSH+ACK, `A` for ACK, `.` for
/// none, else the letters of the set flags in the order `FSRPAUECN`
/// (`S`, `SA`, `FA`). Bits above NS (reserved) have no letter: flags
/// with one of them set are written as a number, which the reader
/// accepts (Click writes the letters it has and loses those bits).
pub fn format_tcp_flags(v: u16, out: &mut Vec<u8>) {
    use std::io::Write as _;
    const ACK: u16 = 0x10;
    const PSH: u16 = 0x08;
    match v {
        _ if v & !0x1ff != 0 => {
            let _ = write!(out, "{v}");
        }
        0 => out.push(b'.'),
        ACK => out.push(b'A'),
        _ if v == ACK | PSH => out.extend_from_slice(b"PA"),
        _ => out.extend(
            TCP_FLAG_LETTERS
                .iter()
                .enumerate()
                .filter(|&(bit, _)| v & (1 << bit) != 0)
                .map(|(_, &c)| c),
        ),
    }
}

/// Parses TCP flags: `.` (none), a number below 0x1000, or letters
/// (`FSRPAUECN`, plus `W` and `Y` for CWR and `X` for ECE, as old dumps
/// write them), in any order.
pub fn parse_tcp_flags(s: &[u8]) -> Option<u16> {
    match s.first()? {
        b'.' if s.len() == 1 => Some(0),
        c if c.is_ascii_digit() => parse_uint(s, 0xfff).map(|v| v as u16),
        _ => s.iter().try_fold(0u16, |acc, &c| {
            let bit = match c {
                b'W' | b'Y' => 7,
                b'X' => 6,
                _ => TCP_FLAG_LETTERS.iter().position(|&l| l == c)?,
            };
            Some(acc | 1 << bit)
        }),
    }
}

/// Writes an IP protocol: `T`, `U`, `I` for TCP, UDP, ICMP, else the
/// number.
pub fn format_proto(p: u8, out: &mut Vec<u8>) {
    match p {
        IP_PROTO_TCP => out.push(b'T'),
        IP_PROTO_UDP => out.push(b'U'),
        IP_PROTO_ICMP => out.push(b'I'),
        _ => {
            let _ = std::io::Write::write_fmt(out, format_args!("{p}"));
        }
    }
}

pub fn parse_proto(s: &[u8]) -> Option<u8> {
    match s {
        b"T" => Some(IP_PROTO_TCP),
        b"U" => Some(IP_PROTO_UDP),
        b"I" => Some(IP_PROTO_ICMP),
        _ => parse_uint(s, 255).map(|v| v as u8),
    }
}

/// A protocol as a `!proto` line or a `!flowid` names it: the letters, a
/// number, or a name (`tcp`, `udp`, ...).
pub fn parse_proto_name(s: &str) -> Option<u8> {
    parse_proto(s.as_bytes()).or_else(|| {
        crate::wire::IP_PROTOS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|&(_, p)| p)
    })
}

const DF: u16 = 0x4000;
const MF: u16 = 0x2000;
const OFFMASK: u16 = 0x1fff;

/// Writes the `ip_frag` field from the fragment word: `F` for a first
/// fragment, `f` for a later one, `!` for an unfragmented packet with
/// DF, `.` for one without.
pub fn format_ip_frag(off: u16, out: &mut Vec<u8>) {
    out.push(if off & (MF | OFFMASK) != 0 {
        if off & OFFMASK == 0 {
            b'F'
        } else {
            b'f'
        }
    } else if off & DF != 0 {
        b'!'
    } else {
        b'.'
    });
}

/// Writes the `ip_fragoff` field: the offset in bytes, then `+` for MF
/// and `!` for DF (`0`, `1480+`, `0!`).
pub fn format_ip_fragoff(off: u16, out: &mut Vec<u8>) {
    let _ = std::io::Write::write_fmt(out, format_args!("{}", u32::from(off & OFFMASK) << 3));
    if off & MF != 0 {
        out.push(b'+');
    }
    if off & DF != 0 {
        out.push(b'!');
    }
}

/// Parses `ip_frag` or `ip_fragoff` into the fragment word. `F`, `f`,
/// `!`, `.` stand for a first fragment, a later one (at an arbitrary
/// offset, 800 bytes), DF, and nothing; otherwise a byte offset (in
/// 8-byte units in a version 1.0 dump, `minor_version` 0) with `+` and
/// `!` suffixes.
pub fn parse_ip_frag(s: &[u8], minor_version: u32) -> Option<u16> {
    match s {
        b"." => return Some(0),
        b"!" => return Some(DF),
        b"F" => return Some(MF),
        b"f" => return Some(100),
        _ => {}
    }
    let digits = s
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    let mut v = parse_uint(&s[..digits], u64::MAX)?;
    if minor_version > 0 {
        v >>= 3;
    }
    if v > u64::from(OFFMASK) {
        return None;
    }
    let mut word = v as u16;
    for &c in &s[digits..] {
        word |= match c {
            b'!' => DF,
            b'+' => MF,
            _ => return None,
        };
    }
    Some(word)
}

/// The ECN field: `no`, `ect1`, `ect2`, `ce`.
pub fn format_ip_ecn(tos: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(match tos & 3 {
        0 => b"no".as_slice(),
        1 => b"ect1",
        2 => b"ect2",
        _ => b"ce",
    });
}

pub fn parse_ip_ecn(s: &[u8]) -> Option<u8> {
    match s {
        [d @ b'0'..=b'3'] => Some(d - b'0'),
        b"no" | b"-" => Some(0),
        b"ect1" | b"ECT(1)" => Some(1),
        b"ect2" | b"ECT(0)" => Some(2),
        b"ce" | b"CE" => Some(3),
        _ => None,
    }
}

/// Which TCP options a field shows (Click's `DO_TCPOPT_*` masks).
pub mod tcpopt {
    pub const PADDING: u32 = 1;
    pub const MSS: u32 = 2;
    pub const WSCALE: u32 = 4;
    pub const SACK: u32 = 8;
    pub const TIMESTAMP: u32 = 16;
    pub const UNKNOWN: u32 = 32;
    /// `tcp_opt`: everything but padding.
    pub const ALL_NOPAD: u32 = !PADDING;
    /// `tcp_ntopt`: everything but padding and timestamps.
    pub const NTALL: u32 = !(PADDING | TIMESTAMP);
}

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMP: u8 = 8;

/// Writes TCP options as Click: `mss1460`, `wscale7`, `sackok`,
/// `sack1-2` (one per block), `ts1:2`, other options by number with
/// colon-separated data bytes (`99=0:5`), separated by `;`; `.` when
/// none is shown; `?` when the options are malformed.
pub fn format_tcp_opt(opt: &[u8], mask: u32, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let start = out.len();
    let mut sep: &[u8] = b"";
    let mut i = 0;
    let bad = loop {
        let Some(&kind) = opt.get(i) else { break false };
        match kind {
            OPT_EOL => {
                if mask & tcpopt::PADDING != 0 {
                    out.extend_from_slice(sep);
                    out.extend_from_slice(b"eol");
                }
                break false;
            }
            OPT_NOP => {
                if mask & tcpopt::PADDING != 0 {
                    out.extend_from_slice(sep);
                    out.extend_from_slice(b"nop");
                    sep = b";";
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = opt.get(i + 1) else { break true };
        let len = usize::from(len);
        if i + len > opt.len() {
            break true;
        }
        let body = &opt[i..i + len];
        let (want, fixed) = match kind {
            OPT_MSS => (tcpopt::MSS, Some(4)),
            OPT_WSCALE => (tcpopt::WSCALE, Some(3)),
            OPT_SACK_PERMITTED => (tcpopt::SACK, Some(2)),
            OPT_SACK => (tcpopt::SACK, None),
            OPT_TIMESTAMP => (tcpopt::TIMESTAMP, Some(10)),
            _ => (tcpopt::UNKNOWN, None),
        };
        let malformed = match kind {
            OPT_SACK => len % 8 != 2,
            OPT_MSS | OPT_WSCALE | OPT_SACK_PERMITTED | OPT_TIMESTAMP => Some(len) != fixed,
            _ => len < 2,
        };
        if malformed {
            break true;
        }
        if mask & want == 0 {
            i += len;
            continue;
        }
        let be32 = |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        match kind {
            OPT_MSS => {
                let _ = write!(out, "{}mss{}", as_str(sep), u16::from_be_bytes([body[2], body[3]]));
            }
            OPT_WSCALE => {
                let _ = write!(out, "{}wscale{}", as_str(sep), body[2]);
            }
            OPT_SACK_PERMITTED => {
                let _ = write!(out, "{}sackok", as_str(sep));
            }
            OPT_SACK => {
                for block in (2..len).step_by(8) {
                    let _ = write!(out, "{}sack{}-{}", as_str(sep), be32(block), be32(block + 4));
                    sep = b";";
                }
            }
            OPT_TIMESTAMP => {
                let _ = write!(out, "{}ts{}:{}", as_str(sep), be32(2), be32(6));
            }
            _ => {
                let _ = write!(out, "{}{}", as_str(sep), kind);
                for (k, b) in body[2..].iter().enumerate() {
                    let _ = write!(out, "{}{}", if k == 0 { '=' } else { ':' }, b);
                }
            }
        }
        sep = b";";
        i += len;
    };
    if bad {
        out.truncate(start);
        out.push(b'?');
    } else if out.len() == start {
        out.push(b'.');
    }
}

fn as_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// Reads an unsigned decimal number at the start of `s` (Click's
/// `cp_integer` as the option parser uses it): its value, saturated, and
/// how many bytes it took.
fn leading_number(s: &[u8]) -> (u64, usize) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let v = s[..n]
        .iter()
        .fold(0u64, |v, &c| v.saturating_mul(10).saturating_add(u64::from(c - b'0')));
    (v, n)
}

/// Parses TCP options written by [`format_tcp_opt`] (and `nop`, `eol`)
/// into `out` (at most 40 bytes); `.` or nothing is no options. A
/// timestamp option written first gets two NOPs before it, as a sender
/// aligns it. False for anything malformed.
pub fn parse_tcp_opt(s: &[u8], mask: u32, out: &mut Vec<u8>) -> bool {
    out.clear();
    if s.is_empty() || s == b"." {
        return true;
    }
    let mut i = 0;
    loop {
        let rest = &s[i..];
        if rest.starts_with(b"mss") && rest.len() > 3 && mask & tcpopt::MSS != 0 {
            let (v, n) = leading_number(&rest[3..]);
            if n == 0 || v > 0xffff {
                return false;
            }
            out.extend_from_slice(&[OPT_MSS, 4]);
            out.extend_from_slice(&(v as u16).to_be_bytes());
            i += 3 + n;
        } else if rest.starts_with(b"wscale") && rest.len() > 6 && mask & tcpopt::WSCALE != 0 {
            let (v, n) = leading_number(&rest[6..]);
            if n == 0 || v > 255 {
                return false;
            }
            out.extend_from_slice(&[OPT_WSCALE, 3, v as u8]);
            i += 6 + n;
        } else if rest.starts_with(b"sackok") && mask & tcpopt::SACK != 0 {
            out.extend_from_slice(&[OPT_SACK_PERMITTED, 2]);
            i += 6;
        } else if rest.starts_with(b"sack") && rest.len() > 4 && mask & tcpopt::SACK != 0 {
            // Blocks joined by `,sack` make one option, as in Click.
            let at = out.len();
            out.extend_from_slice(&[OPT_SACK, 0]);
            i += 4;
            loop {
                let (a, n1) = leading_number(&s[i..]);
                let j = i + n1;
                if n1 == 0 || !matches!(s.get(j), Some(b':' | b'-')) {
                    return false;
                }
                let (b, n2) = leading_number(&s[j + 1..]);
                if n2 == 0 {
                    return false;
                }
                let (Ok(a), Ok(b)) = (u32::try_from(a), u32::try_from(b)) else {
                    return false;
                };
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&b.to_be_bytes());
                i = j + 1 + n2;
                if !s[i..].starts_with(b",sack") {
                    break;
                }
                i += 5;
            }
            let Ok(len) = u8::try_from(out.len() - at) else {
                return false;
            };
            out[at + 1] = len;
        } else if rest.starts_with(b"ts") && rest.len() > 2 && mask & tcpopt::TIMESTAMP != 0 {
            let (a, n1) = leading_number(&rest[2..]);
            let j = 2 + n1;
            if n1 == 0 || rest.get(j) != Some(&b':') {
                return false;
            }
            let (b, n2) = leading_number(&rest[j + 1..]);
            let (Ok(a), Ok(b)) = (u32::try_from(a), u32::try_from(b)) else {
                return false;
            };
            if n2 == 0 {
                return false;
            }
            if out.is_empty() {
                out.extend_from_slice(&[OPT_NOP, OPT_NOP]);
            }
            out.extend_from_slice(&[OPT_TIMESTAMP, 10]);
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&b.to_be_bytes());
            i += j + 1 + n2;
        } else if rest.first().is_some_and(u8::is_ascii_digit) && mask & tcpopt::UNKNOWN != 0 {
            let (kind, n) = leading_number(rest);
            if kind > 255 {
                return false;
            }
            out.push(kind as u8);
            i += n;
            if !(s.get(i) == Some(&b'=') && s.get(i + 1).is_some_and(u8::is_ascii_digit)) {
                // An option without data still has its length byte (Click
                // writes the kind alone, which no reader can take apart);
                // kinds 0 and 1 are the one-byte EOL and NOP.
                if kind >= 2 {
                    out.push(2);
                }
            } else {
                let at = out.len();
                out.push(0);
                loop {
                    let (v, n) = leading_number(&s[i + 1..]);
                    if v > 255 {
                        return false;
                    }
                    out.push(v as u8);
                    i += 1 + n;
                    if !(s.get(i) == Some(&b':') && s.get(i + 1).is_some_and(u8::is_ascii_digit)) {
                        break;
                    }
                }
                let Ok(len) = u8::try_from(out.len() - at + 1) else {
                    return false;
                };
                out[at] = len;
            }
        } else if rest.starts_with(b"nop") && mask & tcpopt::PADDING != 0 {
            out.push(OPT_NOP);
            i += 3;
        } else if rest.starts_with(b"eol") && mask & tcpopt::PADDING != 0 && rest.get(3) != Some(&b',') {
            out.push(OPT_EOL);
            i += 3;
        } else {
            return false;
        }
        match s.get(i) {
            None => break,
            Some(b',' | b';') => i += 1,
            Some(_) => return false,
        }
    }
    // Leading NOPs beyond what fits are padding, not options.
    while out.len() > 40 && out[0] == OPT_NOP {
        out.remove(0);
    }
    out.len() <= 40
}

/// True for IP protocols whose header starts with 16-bit source and
/// destination ports (TCP, UDP, DCCP, UDP-Lite), as Click's `sport` and
/// `dport` fields take them.
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, IP_PROTO_TCP | IP_PROTO_UDP | 33 | 136)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_as_click_resolves_them() {
        assert_eq!(Field::lookup("ts"), Lookup::Found(Field::Timestamp));
        assert_eq!(Field::lookup("src"), Lookup::Found(Field::IpSrc));
        assert_eq!(Field::lookup("len"), Lookup::Found(Field::IpLen));
        assert_eq!(Field::lookup("proto"), Lookup::Found(Field::IpProto));
        assert_eq!(Field::lookup("tcp seq"), Lookup::Found(Field::TcpSeq));
        assert_eq!(Field::lookup("ip_p"), Lookup::Found(Field::IpProto));
        assert_eq!(Field::lookup("pkt_count"), Lookup::Found(Field::Count));
        assert_eq!(Field::lookup("first_ts"), Lookup::Unsupported("first_timestamp"));
        assert_eq!(Field::lookup("opt"), Lookup::Unsupported("ip_opt"));
        assert_eq!(Field::lookup("SRC"), Lookup::Unknown, "case matters, as in Click");
        assert_eq!(Field::lookup("tcp_bogus"), Lookup::Unknown);
        for name in Field::names() {
            let Lookup::Found(f) = Field::lookup(name) else {
                panic!("{name}")
            };
            assert_eq!(f.name(), name);
        }
    }

    #[test]
    fn field_lists_split_at_unquoted_spaces() {
        assert_eq!(
            split_words("  ip_src  'ip dst' \"tcp seq\"\tsport "),
            ["ip_src", "ip dst", "tcp seq", "sport"]
        );
        assert!(split_words("   ").is_empty());
    }

    #[test]
    fn timestamps_print_six_or_nine_digits() {
        let f = |ns| {
            let mut v = Vec::new();
            format_timestamp(ns, &mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(f(996_033_261_451_094_000), "996033261.451094");
        assert_eq!(f(1_000_000_001), "1.000000001");
        assert_eq!(f(0), "0.000000");
        assert_eq!(parse_timestamp(b"996033261.451094"), Some(996_033_261_451_094_000));
        assert_eq!(parse_timestamp(b"1.000000001"), Some(1_000_000_001));
        assert_eq!(parse_timestamp(b"2"), Some(2_000_000_000));
        assert_eq!(parse_timestamp(b".5"), Some(500_000_000));
        assert_eq!(parse_timestamp(b"1.0000000015"), Some(1_000_000_002));
        for bad in [&b""[..], b".", b"-1.0", b"1.2.3", b"1e3", b"x"] {
            assert_eq!(parse_timestamp(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tcp_flags_print_as_click() {
        let f = |v| {
            let mut o = Vec::new();
            format_tcp_flags(v, &mut o);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(f(0x02), "S");
        assert_eq!(f(0x12), "SA");
        assert_eq!(f(0x10), "A");
        assert_eq!(f(0x18), "PA");
        assert_eq!(f(0x19), "FPA");
        assert_eq!(f(0x11), "FA");
        assert_eq!(f(0), ".");
        assert_eq!(f(0x1c0), "ECN");
        assert_eq!(f(0x204), "516");
        assert_eq!(parse_tcp_flags(b"SA"), Some(0x12));
        assert_eq!(parse_tcp_flags(b"AS"), Some(0x12));
        assert_eq!(parse_tcp_flags(b"."), Some(0));
        assert_eq!(parse_tcp_flags(b"18"), Some(18));
        assert_eq!(parse_tcp_flags(b"W"), Some(0x80));
        assert_eq!(parse_tcp_flags(b"XY"), Some(0xc0));
        assert_eq!(parse_tcp_flags(b"sa"), None);
        assert_eq!(parse_tcp_flags(b"4096"), None);
        assert_eq!(parse_tcp_flags(b""), None);
        for v in 0..0x1000u16 {
            let mut o = Vec::new();
            format_tcp_flags(v, &mut o);
            assert_eq!(parse_tcp_flags(&o), Some(v), "{v:#x}");
        }
    }

    #[test]
    fn payload_quoting_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let mut q = Vec::new();
        quote(&all, &mut q);
        assert!(q.iter().all(|c| (32..127).contains(c)), "printable only");
        assert_eq!(unquote(&q).unwrap(), all);
        let mut q = Vec::new();
        quote(b"a \"b\"\\$\n\t\x01\xff", &mut q);
        assert_eq!(q, b"\"a \\\"b\\\"\\\\\\$\\n\\t\\001\\377\"");
        let mut q = Vec::new();
        quote(b"", &mut q);
        assert_eq!(q, b"\"\"");
        assert_eq!(unquote(b"\"\\x41\\<42 43>\\q\"").unwrap(), b"ABCq");
        assert_eq!(unquote(b"'a\\b'").unwrap(), b"a\\b");
        assert_eq!(unquote(b"\"open"), None);
    }

    #[test]
    fn integers_read_as_click_reads_them() {
        assert_eq!(parse_uint(b"42", 255), Some(42));
        assert_eq!(parse_uint(b"0x2a", 255), Some(42));
        assert_eq!(parse_uint(b"052", 255), Some(42));
        assert_eq!(parse_uint(b"0b101010", 255), Some(42));
        assert_eq!(parse_uint(b"1_000", 9999), Some(1000));
        assert_eq!(parse_uint(b"256", 255), None);
        assert_eq!(parse_uint(b"-1", 255), None);
        assert_eq!(parse_uint(b"", 255), None);
        assert_eq!(parse_uint(b"09", 255), None, "octal");
    }

    #[test]
    fn fragments_print_and_parse() {
        let f = |fun: fn(u16, &mut Vec<u8>), v| {
            let mut o = Vec::new();
            fun(v, &mut o);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(f(format_ip_frag, 0), ".");
        assert_eq!(f(format_ip_frag, DF), "!");
        assert_eq!(f(format_ip_frag, MF), "F");
        assert_eq!(f(format_ip_frag, 185), "f");
        assert_eq!(f(format_ip_fragoff, MF | 185), "1480+");
        assert_eq!(f(format_ip_fragoff, DF), "0!");
        assert_eq!(parse_ip_frag(b"1480+", 3), Some(MF | 185));
        assert_eq!(
            parse_ip_frag(b"185+", 0),
            Some(MF | 185),
            "1.0 dumps count 8-byte units"
        );
        assert_eq!(parse_ip_frag(b"0!", 3), Some(DF));
        assert_eq!(parse_ip_frag(b"F", 3), Some(MF));
        assert_eq!(parse_ip_frag(b"0?", 3), None);
        for word in 0..=0xffffu16 {
            let word = word & !0x8000;
            let mut o = Vec::new();
            format_ip_fragoff(word, &mut o);
            assert_eq!(parse_ip_frag(&o, 3), Some(word));
        }
    }

    #[test]
    fn tcp_options_round_trip() {
        let syn = [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
        let mut o = Vec::new();
        format_tcp_opt(&syn, tcpopt::ALL_NOPAD, &mut o);
        assert_eq!(o, b"mss1460;sackok;ts1:0;wscale7");
        let mut bytes = Vec::new();
        assert!(parse_tcp_opt(&o, !0, &mut bytes));
        assert_eq!(bytes, [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 3, 3, 7]);
        let mut o = Vec::new();
        format_tcp_opt(&syn, tcpopt::NTALL, &mut o);
        assert_eq!(o, b"mss1460;sackok;wscale7");
        let mut o = Vec::new();
        format_tcp_opt(&syn, tcpopt::SACK, &mut o);
        assert_eq!(o, b"sackok");
        let sack = [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        let mut o = Vec::new();
        format_tcp_opt(&sack, tcpopt::ALL_NOPAD, &mut o);
        assert_eq!(o, b"sack1-2;sack3-4");
        assert!(parse_tcp_opt(b"sack1-2,sack3-4", !0, &mut bytes));
        assert_eq!(bytes, sack[2..]);
        let mut o = Vec::new();
        format_tcp_opt(&[99, 4, 0, 5, 1], tcpopt::ALL_NOPAD, &mut o);
        assert_eq!(o, b"99=0:5");
        assert!(parse_tcp_opt(b"99=0:5", !0, &mut bytes));
        assert_eq!(bytes, [99, 4, 0, 5]);
        let mut o = Vec::new();
        format_tcp_opt(&[2, 4, 5], tcpopt::ALL_NOPAD, &mut o);
        assert_eq!(o, b"?", "truncated option");
        let mut o = Vec::new();
        format_tcp_opt(&[1, 1, 0, 0], tcpopt::ALL_NOPAD, &mut o);
        assert_eq!(o, b".");
        assert!(!parse_tcp_opt(b"mss70000", !0, &mut bytes));
        assert!(!parse_tcp_opt(b"bogus", !0, &mut bytes));
        assert!(parse_tcp_opt(b".", !0, &mut bytes) && bytes.is_empty());
    }
}
