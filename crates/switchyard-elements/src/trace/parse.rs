//! FromIPSummaryDump's half of the format: one line to one IPv4 packet.
//!
//! A [`Parser`] keeps what the dump's `!` lines set (the fields, the
//! default protocol and flow) and turns each packet line into the packet
//! its [`Builder`] holds. The builder follows Click's way of making the
//! packet: an IP header appears when a field needs one (with protocol
//! TCP and TTL 100 unless told otherwise), a transport header when a
//! field inside it is written, and lengths are made consistent at the
//! end. Bytes written past the packet's current end land in spare room
//! of the buffer and show only if the packet grows over them, as in
//! Click's tailroom, so no write ever depends on a length check passing.

use super::ip_summary::{self as fmt, tcpopt, Field, Lookup};
use crate::wire::{checksum, fold, put16, sum, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP};
use switchyard_core::Packet;

/// The longest packet a line may describe: an IPv4 packet's most, plus
/// room for headers a payload is placed after.
pub const MAX_PACKET: usize = 65535 + 120;
const DCCP: u8 = 33;
const UDPLITE: u8 = 136;
const OFFMASK: u16 = 0x1fff;
const MF: u16 = 0x2000;

/// Addresses and ports for packets whose line gives none (`!flowid`,
/// FLOWID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowId {
    pub src: u32,
    pub sport: u16,
    pub dst: u32,
    pub dport: u16,
}

impl FlowId {
    /// Parses `SRC SPORT DST DPORT [PROTO]`, any of the first four `-`
    /// for zero; the protocol, if given, comes back separately.
    pub fn parse(words: &[String]) -> Option<(FlowId, Option<u8>)> {
        if !(4..=5).contains(&words.len()) {
            return None;
        }
        let addr = |w: &str| if w == "-" { Some(0) } else { crate::wire::parse_ip(w) };
        let port = |w: &str| {
            if w == "-" {
                Some(0)
            } else {
                fmt::parse_uint(w.as_bytes(), 65535).map(|v| v as u16)
            }
        };
        let flow = FlowId {
            src: addr(&words[0])?,
            sport: port(&words[1])?,
            dst: addr(&words[2])?,
            dport: port(&words[3])?,
        };
        let proto = match words.get(4) {
            Some(w) => Some(fmt::parse_proto_name(w)?),
            None => None,
        };
        Some((flow, proto))
    }
}

/// The packet a line describes, being built.
pub struct Builder {
    buf: Vec<u8>,
    len: usize,
    /// Bytes of `buf` that may hold something from an earlier line.
    dirty: usize,
    /// The IP header length, where the transport header starts; 0 while
    /// there is no IP header.
    hl: usize,
    /// The length the fields ask for (`ip_len`, `wire_len`, the payload).
    want_len: u32,
    have_ip_hl: bool,
    have_tcp_hl: bool,
    sum_given: bool,
    pub timestamp_ns: u64,
    pub paint: u8,
    pub count: u32,
    default_proto: u8,
    flowid: Option<FlowId>,
}

/// A packet grew past [`MAX_PACKET`].
#[derive(Debug)]
pub struct TooLong;

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            buf: vec![0; MAX_PACKET],
            len: 0,
            dirty: 0,
            hl: 0,
            want_len: 0,
            have_ip_hl: false,
            have_tcp_hl: false,
            sum_given: false,
            timestamp_ns: 0,
            paint: 0,
            count: 1,
            default_proto: IP_PROTO_TCP,
            flowid: None,
        }
    }
}

impl Builder {
    /// Starts a new packet; with `zero`, bytes no field sets are zero,
    /// else whatever earlier lines left (Click's ZERO false).
    fn reset(&mut self, zero: bool, default_proto: u8, flowid: Option<FlowId>) {
        if zero {
            self.buf[..self.dirty].fill(0);
            self.dirty = 0;
        }
        self.len = 0;
        self.hl = 0;
        self.want_len = 0;
        self.have_ip_hl = false;
        self.have_tcp_hl = false;
        self.sum_given = false;
        self.timestamp_ns = 0;
        self.paint = 0;
        self.count = 1;
        self.default_proto = default_proto;
        self.flowid = flowid;
    }

    /// The packet's bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn set(&mut self, at: usize, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.dirty = self.dirty.max(at + bytes.len());
        }
    }

    fn set8(&mut self, at: usize, v: u8) {
        self.set(at, &[v]);
    }

    fn set16(&mut self, at: usize, v: u16) {
        self.set(at, &v.to_be_bytes());
    }

    fn get8(&self, at: usize) -> u8 {
        self.buf.get(at).copied().unwrap_or(0)
    }

    fn get16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.get8(at), self.get8(at + 1)])
    }

    /// Adds `n` bytes at the end (what the spare room holds).
    fn put(&mut self, n: usize) -> Result<(), TooLong> {
        if self.len + n > MAX_PACKET {
            return Err(TooLong);
        }
        self.len += n;
        self.dirty = self.dirty.max(self.len);
        Ok(())
    }

    /// Opens `n` zero bytes at `at`, moving what follows.
    fn open_gap(&mut self, at: usize, n: usize) -> Result<(), TooLong> {
        let old = self.len;
        self.put(n)?;
        if at < old {
            self.buf.copy_within(at..old, at + n);
        }
        if let Some(gap) = self.buf.get_mut(at..at + n) {
            gap.fill(0);
        }
        Ok(())
    }

    fn proto(&self) -> u8 {
        self.get8(9)
    }

    fn first_frag(&self) -> bool {
        self.get16(6) & OFFMASK == 0
    }

    fn trans_len(&self) -> i64 {
        self.len as i64 - self.hl as i64
    }

    /// Makes the IP header if there is none; true if its protocol is
    /// `proto` (or either is 0).
    fn make_ip(&mut self, proto: u8) -> Result<bool, TooLong> {
        if self.hl == 0 {
            self.put(20 - self.len.min(20))?;
            self.hl = 20;
            self.set8(0, 0x45);
            self.set16(2, 0);
            self.set16(6, 0);
            self.set8(8, 100);
            self.set8(9, self.default_proto);
            if let Some(f) = self.flowid {
                self.set(12, &f.src.to_be_bytes());
                self.set(16, &f.dst.to_be_bytes());
            }
        }
        let have = self.proto();
        Ok(proto == 0 || have == 0 || have == proto)
    }

    /// Makes the transport header of the packet's protocol, as far as
    /// the wanted length allows; false for a later fragment, which has
    /// none.
    fn make_transp(&mut self) -> Result<bool, TooLong> {
        if !self.first_frag() {
            return Ok(false);
        }
        if self.trans_len() >= 8 {
            return Ok(true);
        }
        let proto = self.proto();
        let mut need: i64 = match proto {
            IP_PROTO_TCP => 20,
            IP_PROTO_UDP | UDPLITE | IP_PROTO_ICMP => 8,
            DCCP => 12,
            _ => return Ok(true),
        };
        let toff = self.hl as i64;
        if self.want_len > 0 && i64::from(self.want_len) < toff + need {
            need = i64::from(self.want_len) - toff;
        }
        let have = self.trans_len();
        if have < need {
            let grown = need.max(4);
            self.put((grown - have) as usize)?;
            if proto == IP_PROTO_TCP && need >= 13 {
                let b = self.get8(self.hl + 12);
                self.set8(self.hl + 12, 5 << 4 | (b & 0xf));
            }
            if let Some(f) = self.flowid.filter(|_| fmt::has_ports(proto)) {
                self.set16(self.hl, f.sport);
                self.set16(self.hl + 2, f.dport);
            }
            self.len -= (grown - need) as usize;
        }
        Ok(true)
    }

    /// Where the payload starts: after the transport header as far as
    /// it is known (a TCP header cut short counts as 20 bytes).
    fn payload_off(&self) -> usize {
        let mut off = self.hl;
        if self.first_frag() {
            match self.proto() {
                IP_PROTO_TCP => {
                    let th = usize::from(self.get8(self.hl + 12) >> 4) * 4;
                    off += if self.trans_len() >= 13 && th >= 20 { th } else { 20 };
                }
                IP_PROTO_UDP | UDPLITE => off += 8,
                _ => {}
            }
        }
        off
    }

    /// Click's `account_payload_len`: a payload of `plen` bytes at `off`.
    /// With no length known yet, that sets it; with a longer length,
    /// the difference goes into TCP and then IP options (end-of-list
    /// bytes), unless the line gave those headers' lengths, so that both
    /// the IP length and the payload length come out as the line says.
    fn account_payload(&mut self, off: usize, plen: usize) -> Result<(), TooLong> {
        let hdr = self.get16(2);
        if hdr == 0 && self.want_len == 0 {
            self.want_len = u32::try_from(off + plen).unwrap_or(u32::MAX);
            return Ok(());
        }
        let ip_len = if hdr != 0 { u32::from(hdr) } else { self.want_len };
        let mut delta = i64::from(ip_len) - (off + plen) as i64;
        let th = self.get8(self.hl + 12);
        if delta > 0 && self.first_frag() && self.proto() == IP_PROTO_TCP && !self.have_tcp_hl && th >> 4 == 5 {
            let grow = (delta - (delta & 3)).min(40) as usize;
            self.open_gap(self.hl + 20, grow)?;
            self.set8(self.hl + 12, (((20 + grow) / 4) as u8) << 4 | (th & 0xf));
            delta -= grow as i64;
        }
        if delta > 0 && !self.have_ip_hl && self.get8(0) & 0xf == 5 {
            let grow = (delta - (delta & 3)).min(40) as usize;
            self.open_gap(20, grow)?;
            self.set8(0, 0x40 | ((20 + grow) / 4) as u8);
            self.hl = 20 + grow;
        }
        Ok(())
    }

    /// Writes one field's value into the packet (Click's `inject`).
    fn inject(&mut self, f: Field, v: u64, bytes: &[u8]) -> Result<(), TooLong> {
        const NS: u64 = 1_000_000_000;
        match f {
            Field::Timestamp | Field::NTimestamp => self.timestamp_ns = v,
            Field::TsSec => self.timestamp_ns = v * NS + self.timestamp_ns % NS,
            Field::TsUsec => self.timestamp_ns = self.timestamp_ns / NS * NS + v * 1000,
            Field::TsUsec1 => self.timestamp_ns = v * 1000,
            Field::Count => self.count = v as u32,
            Field::Link | Field::Paint | Field::Direction => self.paint = v as u8,
            Field::WireLen => self.want_len = v as u32,
            Field::IpSrc
            | Field::IpDst
            | Field::IpTos
            | Field::IpDscp
            | Field::IpEcn
            | Field::IpTtl
            | Field::IpFrag
            | Field::IpFragoff
            | Field::IpId
            | Field::IpSum
            | Field::IpProto
            | Field::IpHl
            | Field::IpLen
            | Field::IpCaptureLen => {
                self.make_ip(0)?;
                self.inject_ip(f, v)?;
            }
            Field::Sport | Field::Dport => {
                if !self.make_ip(0)? || !self.make_transp()? {
                    return Ok(());
                }
                let p = self.proto();
                if p == 0 || fmt::has_ports(p) {
                    let at = self.hl + if f == Field::Sport { 0 } else { 2 };
                    self.set16(at, v as u16);
                }
            }
            Field::TcpSeq
            | Field::TcpAck
            | Field::TcpOff
            | Field::TcpFlags
            | Field::TcpWindow
            | Field::TcpUrp
            | Field::TcpOpt
            | Field::TcpNtopt
            | Field::TcpSack => {
                if self.make_ip(IP_PROTO_TCP)? && self.make_transp()? {
                    self.inject_tcp(f, v, bytes)?;
                }
            }
            Field::UdpLen => {
                if !self.make_ip(0)? || !self.make_transp()? {
                    return Ok(());
                }
                let p = self.proto();
                if p != 0 && p != IP_PROTO_UDP && p != UDPLITE {
                    return Ok(());
                }
                if self.trans_len() < 8 {
                    self.put((8 - self.trans_len()) as usize)?;
                }
                self.set16(self.hl + 4, v as u16);
            }
            Field::Payload | Field::PayloadLen => {
                if self.make_ip(0)? {
                    self.make_transp()?;
                }
                let plen = if f == Field::Payload { bytes.len() } else { v as usize };
                if f == Field::Payload && bytes.is_empty() {
                    return Ok(());
                }
                self.account_payload(self.payload_off(), plen)?;
                if f == Field::Payload {
                    // The payload goes after the headers as the accounting
                    // left them (Click copies it to the offset from before,
                    // over the options it just made).
                    let off = self.payload_off();
                    if self.len >= off && self.len - off < plen {
                        self.put(plen - (self.len - off))?;
                    }
                    self.set(off, bytes);
                }
            }
        }
        Ok(())
    }

    fn inject_ip(&mut self, f: Field, v: u64) -> Result<(), TooLong> {
        match f {
            Field::IpSrc => self.set(12, &(v as u32).to_be_bytes()),
            Field::IpDst => self.set(16, &(v as u32).to_be_bytes()),
            Field::IpTos => self.set8(1, v as u8),
            Field::IpDscp => {
                let tos = self.get8(1);
                self.set8(1, (tos & 3) | ((v as u8) << 2));
            }
            Field::IpEcn => {
                let tos = self.get8(1);
                self.set8(1, (tos & 0xfc) | (v as u8 & 3));
            }
            Field::IpTtl => self.set8(8, v as u8),
            Field::IpFrag | Field::IpFragoff => self.set16(6, v as u16),
            Field::IpId => self.set16(4, v as u16),
            Field::IpSum => {
                self.set16(10, v as u16);
                self.sum_given = true;
            }
            Field::IpProto => self.set8(9, v as u8),
            Field::IpHl => {
                self.have_ip_hl = true;
                let hl = (v as usize + 3) & !3;
                if hl > self.hl {
                    let more = hl - self.hl;
                    self.put(more)?;
                    let from = self.hl;
                    if let Some(opts) = self.buf.get_mut(from..hl) {
                        opts.fill(0);
                    }
                    self.hl = hl;
                }
                let b = self.get8(0);
                self.set8(0, (b & 0xf0) | (hl / 4) as u8);
            }
            Field::IpLen => self.want_len = v as u32,
            // The capture length says how much of the packet was seen,
            // which a made-up packet has no use for.
            _ => {}
        }
        Ok(())
    }

    fn inject_tcp(&mut self, f: Field, v: u64, bytes: &[u8]) -> Result<(), TooLong> {
        let t = self.hl;
        match f {
            Field::TcpSeq => self.set(t + 4, &(v as u32).to_be_bytes()),
            Field::TcpAck => self.set(t + 8, &(v as u32).to_be_bytes()),
            Field::TcpFlags => {
                let b = self.get8(t + 12);
                self.set8(t + 12, (b & 0xf0) | ((v >> 8) as u8 & 0xf));
                self.set8(t + 13, v as u8);
            }
            Field::TcpOff => {
                let off = (v as usize + 3) & !3;
                let b = self.get8(t + 12);
                let cur = usize::from(b >> 4) * 4;
                if off > cur {
                    let more = off - cur;
                    self.put(more)?;
                    if let Some(gap) = self.buf.get_mut(t + off - more..t + off) {
                        gap.fill(0);
                    }
                }
                self.set8(t + 12, ((off / 4) as u8) << 4 | (b & 0xf));
            }
            Field::TcpWindow => self.set16(t + 14, v as u16),
            Field::TcpUrp => self.set16(t + 18, v as u16),
            _ => {
                self.have_tcp_hl = true;
                if bytes.is_empty() {
                    return Ok(());
                }
                let off = (20 + bytes.len() + 3) & !3;
                if self.trans_len() < off as i64 {
                    self.put((off as i64 - self.trans_len()) as usize)?;
                }
                let b = self.get8(t + 12);
                if off > usize::from(b >> 4) * 4 {
                    self.set8(t + 12, ((off / 4) as u8) << 4 | (b & 0xf));
                }
                self.set(t + 20, bytes);
                if let Some(pad) = self.buf.get_mut(t + 20 + bytes.len()..t + off) {
                    pad.fill(0);
                }
            }
        }
        Ok(())
    }

    /// Completes the packet once every field is in: its headers, its IP
    /// length (from the fields, else its size), and an unset UDP length.
    fn finish(&mut self) -> Result<(), TooLong> {
        self.make_ip(0)?;
        self.make_transp()?;
        let mut ip_len = self.get16(2);
        if ip_len == 0 {
            ip_len = match self.want_len {
                0 => self.len.min(0xffff) as u16,
                w => w.min(0xffff) as u16,
            };
            self.set16(2, ip_len);
        }
        if self.proto() == IP_PROTO_UDP && self.first_frag() && self.get16(self.hl + 4) == 0 {
            self.set16(self.hl + 4, ip_len.saturating_sub(self.hl as u16));
        }
        Ok(())
    }

    /// The IP length the packet ends with.
    pub fn ip_len(&self) -> u16 {
        self.get16(2)
    }

    /// The packet, with IP length `share` instead of its own when one
    /// line stands for several packets. With `checksum`, it is padded to
    /// its IP length and its TCP, UDP or ICMP checksum is set; the IP
    /// header checksum is always set, unless the line gave one and
    /// `checksum` is false.
    pub fn emit(&self, share: Option<u16>, checksum_all: bool) -> Packet {
        let ip_len = share.unwrap_or_else(|| self.ip_len());
        let out_len = if checksum_all {
            self.len.max(usize::from(ip_len))
        } else {
            self.len
        };
        let (hl, proto) = (self.hl, self.proto());
        let frag = self.get16(6) & (MF | OFFMASK) != 0;
        let mut p = Packet::with_len_filled(out_len, |d| {
            d.copy_from_slice(&self.buf[..out_len]);
            if let Some(s) = share {
                put16(d, 2, s);
                if proto == IP_PROTO_UDP && d.len() >= hl + 6 {
                    put16(d, hl + 4, s.saturating_sub(hl as u16));
                }
            }
            let field_hl = usize::from(d[0] & 0xf) * 4;
            if (checksum_all || !self.sum_given) && (20..=d.len()).contains(&field_hl) {
                put16(d, 10, 0);
                let c = checksum(&d[..field_hl]);
                put16(d, 10, c);
            }
            if checksum_all && !frag {
                set_transport_checksum(d, hl, proto);
            }
        });
        p.set_network_header(0, hl.min(out_len));
        p.anno.timestamp_ns = self.timestamp_ns;
        p.anno.paint = self.paint;
        if out_len >= 20 {
            p.anno.dst_ip = crate::wire::be32(p.data(), 16);
        }
        p
    }
}

/// Sets the TCP, UDP or ICMP checksum of the transport header at `hl`
/// when the header holds its checksum field.
fn set_transport_checksum(d: &mut [u8], hl: usize, proto: u8) {
    let tl = d.len().saturating_sub(hl);
    let pseudo = if d.len() >= 20 {
        sum(&d[12..20], 0) + u64::from(proto) + tl as u64
    } else {
        0
    };
    match proto {
        IP_PROTO_TCP if tl >= 18 => {
            put16(d, hl + 16, 0);
            let c = !fold(sum(&d[hl..], pseudo));
            put16(d, hl + 16, c);
        }
        IP_PROTO_UDP if tl >= 8 => {
            put16(d, hl + 6, 0);
            // All ones stands for zero: a zero UDP checksum means none.
            let c = match !fold(sum(&d[hl..], pseudo)) {
                0 => 0xffff,
                c => c,
            };
            put16(d, hl + 6, c);
        }
        IP_PROTO_ICMP if tl >= 4 => {
            put16(d, hl + 2, 0);
            let c = checksum(&d[hl..]);
            put16(d, hl + 2, c);
        }
        _ => {}
    }
}

/// One column's value on a line.
#[derive(Clone, Copy)]
enum Val {
    Absent,
    Num(u64),
    /// Bytes (a payload, options) at this range of the arena.
    Bytes(usize, usize),
}

/// What a line was.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A packet, now in the builder.
    Packet,
    /// A comment, a blank line, or a `!` line taken in.
    Skip,
    /// A packet line that does not parse, and why.
    Bad(String),
    /// `!binary`: the rest of the file is in a format not read here.
    Binary,
}

/// The reading state of one dump.
pub struct Parser {
    fields: Vec<Option<Field>>,
    order: Vec<usize>,
    minor_version: u32,
    pub default_proto: u8,
    pub flowid: Option<FlowId>,
    pub zero: bool,
    pub builder: Builder,
    vals: Vec<Val>,
    arena: Vec<u8>,
    first: bool,
    /// Problems with `!` lines (not packet lines), for the caller to log.
    pub warnings: Vec<String>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser {
            fields: Vec::new(),
            order: Vec::new(),
            minor_version: fmt::MINOR_VERSION,
            default_proto: IP_PROTO_TCP,
            flowid: None,
            zero: true,
            builder: Builder::default(),
            vals: Vec::new(),
            arena: Vec::new(),
            first: true,
            warnings: Vec::new(),
        }
    }
}

impl Parser {
    /// The columns of the lines that follow (a `!data` line or the
    /// CONTENTS argument). Unknown names are columns skipped, with a
    /// warning, as Click does.
    pub fn set_fields(&mut self, names: &[String]) {
        self.fields.clear();
        for name in names {
            let f = match Field::lookup(name) {
                Lookup::Found(f) => Some(f),
                Lookup::Unsupported(canon) => {
                    self.warnings
                        .push(format!("field '{canon}' is not supported; its column is ignored"));
                    None
                }
                Lookup::Unknown => {
                    self.warnings
                        .push(format!("unknown field '{name}'; its column is ignored"));
                    None
                }
            };
            self.fields.push(f);
        }
        if self.fields.is_empty() {
            self.warnings.push("no fields given".into());
        }
        self.order = (0..self.fields.len()).collect();
        let fields = &self.fields;
        self.order.sort_by_key(|&i| (fields[i].map_or(0, Field::order), i));
    }

    /// Takes one line (without its newline).
    pub fn line(&mut self, line: &[u8]) -> Line {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if std::mem::take(&mut self.first) {
            if let Some(rest) = line.strip_prefix(b"!IPSummaryDump") {
                self.version(rest);
                return Line::Skip;
            }
            let known = [&b"!creator"[..], b"!data", b"!contents", b"!proto", b"!flowid"];
            if !known.iter().any(|k| line.starts_with(k)) && self.fields.is_empty() {
                self.warnings
                    .push("missing banner line; is this an IP summary dump?".into());
            }
        }
        match line.first() {
            None | Some(b'#') => Line::Skip,
            Some(b'!') => self.bang(line),
            Some(_) if line.iter().all(u8::is_ascii_whitespace) => Line::Skip,
            Some(_) => match self.packet(line) {
                Ok(()) => Line::Packet,
                Err(why) => Line::Bad(why),
            },
        }
    }

    fn version(&mut self, rest: &[u8]) {
        let text = String::from_utf8_lossy(rest);
        let parsed = text
            .trim()
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        if let Some((major, minor)) = parsed {
            if major != fmt::MAJOR_VERSION || minor > fmt::MINOR_VERSION {
                self.warnings
                    .push(format!("unexpected IPSummaryDump version {major}.{minor}"));
                self.minor_version = fmt::MINOR_VERSION;
            } else {
                self.minor_version = minor;
            }
        }
    }

    fn bang(&mut self, line: &[u8]) -> Line {
        let text = String::from_utf8_lossy(line);
        let mut words = fmt::split_words(&text);
        if words.is_empty() {
            return Line::Skip;
        }
        let word = words.remove(0);
        match word.as_str() {
            "!data" | "!contents" => self.set_fields(&words),
            "!flowid" => match FlowId::parse(&words) {
                Some((flow, proto)) => {
                    self.flowid = Some(flow);
                    if let Some(p) = proto {
                        self.default_proto = p;
                    }
                }
                None => {
                    self.flowid = None;
                    self.warnings.push("bad !flowid specification".into());
                }
            },
            "!proto" => match words.as_slice() {
                [p] if fmt::parse_proto_name(p).is_some() => {
                    self.default_proto = fmt::parse_proto_name(p).unwrap_or(IP_PROTO_TCP);
                }
                _ => self.warnings.push("bad protocol in !proto".into()),
            },
            "!binary" => return Line::Binary,
            // `!creator`, `!host`, `!runtime`, `!drops`, `!bad`, and
            // `!aggregate` (no aggregate annotation here) say nothing
            // the packets need.
            _ => {}
        }
        Line::Skip
    }

    /// Parses a packet line into the builder.
    fn packet(&mut self, line: &[u8]) -> Result<(), String> {
        if self.fields.is_empty() {
            return Err("no '!data' line gives the fields".into());
        }
        self.vals.clear();
        self.arena.clear();
        let mut i = 0;
        let mut given = 0;
        for k in 0..self.fields.len() {
            while i < line.len() && line[i].is_ascii_whitespace() {
                i += 1;
            }
            let start = i;
            while i < line.len() && !line[i].is_ascii_whitespace() {
                i = if line[i] == b'"' {
                    fmt::skip_double_quote(line, i)
                } else {
                    i + 1
                };
            }
            let word = &line[start..i];
            let val = match self.fields[k] {
                Some(f) if !word.is_empty() && word != b"-" => {
                    let v = self
                        .value(f, word)
                        .ok_or_else(|| format!("bad {} value '{}'", f.name(), String::from_utf8_lossy(word)))?;
                    given += 1;
                    v
                }
                _ => Val::Absent,
            };
            self.vals.push(val);
        }
        if given == 0 {
            return Err("no field has a value".into());
        }
        let b = &mut self.builder;
        b.reset(self.zero, self.default_proto, self.flowid);
        let too_long = |_| "packet longer than 65535 bytes".to_string();
        for &k in &self.order {
            let (Some(f), val) = (self.fields[k], self.vals[k]) else {
                continue;
            };
            match val {
                Val::Absent => {}
                Val::Num(v) => b.inject(f, v, &[]).map_err(too_long)?,
                Val::Bytes(s, e) => b.inject(f, 0, &self.arena[s..e]).map_err(too_long)?,
            }
        }
        b.finish().map_err(too_long)
    }

    /// Parses one field's text; `None` if it does not parse or is out of
    /// range for the field.
    fn value(&mut self, f: Field, s: &[u8]) -> Option<Val> {
        let uint = |max: u64| fmt::parse_uint(s, max).map(Val::Num);
        let bytes = |arena: &mut Vec<u8>, ok: bool, start: usize| ok.then_some(Val::Bytes(start, arena.len()));
        match f {
            Field::Timestamp | Field::NTimestamp => fmt::parse_timestamp(s).map(Val::Num),
            Field::TsSec => uint(u64::from(u32::MAX)),
            Field::TsUsec => uint(999_999),
            Field::TsUsec1 => uint(u64::MAX / 1000),
            Field::Count | Field::WireLen | Field::IpLen | Field::IpCaptureLen | Field::PayloadLen => {
                uint(u64::from(u32::MAX))
            }
            Field::TcpSeq | Field::TcpAck => uint(u64::from(u32::MAX)),
            Field::Link | Field::Paint | Field::Direction => match s {
                b">" => Some(Val::Num(0)),
                b"<" => Some(Val::Num(1)),
                _ => uint(255),
            },
            Field::IpSrc | Field::IpDst => std::str::from_utf8(s)
                .ok()
                .and_then(crate::wire::parse_ip)
                .map(|a| Val::Num(a.into())),
            Field::IpTos | Field::IpTtl => uint(255),
            Field::IpDscp => uint(63),
            Field::IpEcn => fmt::parse_ip_ecn(s).map(|v| Val::Num(v.into())),
            Field::IpFrag | Field::IpFragoff => fmt::parse_ip_frag(s, self.minor_version).map(|v| Val::Num(v.into())),
            Field::IpId | Field::IpSum | Field::Sport | Field::Dport | Field::TcpWindow | Field::TcpUrp => uint(65535),
            Field::UdpLen => uint(65535),
            Field::IpProto => fmt::parse_proto(s).map(|v| Val::Num(v.into())),
            // Header lengths a 4-bit word count can hold.
            Field::IpHl | Field::TcpOff => fmt::parse_uint(s, 60).filter(|&v| v >= 20).map(Val::Num),
            Field::TcpFlags => fmt::parse_tcp_flags(s).map(|v| Val::Num(v.into())),
            Field::TcpOpt | Field::TcpNtopt | Field::TcpSack => {
                let mask = match f {
                    Field::TcpOpt => !0,
                    Field::TcpNtopt => tcpopt::NTALL,
                    _ => tcpopt::SACK,
                };
                let mut opts = Vec::new();
                let ok = fmt::parse_tcp_opt(s, mask, &mut opts);
                let start = self.arena.len();
                self.arena.extend_from_slice(&opts);
                bytes(&mut self.arena, ok, start)
            }
            Field::Payload => {
                let start = self.arena.len();
                let ok = fmt::unquote_into(s, &mut self.arena);
                bytes(&mut self.arena, ok, start)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{be16, be32, Ipv4};

    fn parser(fields: &str) -> Parser {
        let mut p = Parser::default();
        p.set_fields(&fmt::split_words(fields));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        p
    }

    fn one(fields: &str, line: &str, checksum: bool) -> Packet {
        let mut p = parser(fields);
        assert_eq!(p.line(line.as_bytes()), Line::Packet, "{line}");
        p.builder.emit(None, checksum)
    }

    #[test]
    fn a_tcp_line_makes_a_valid_tcp_packet() {
        let p = one(
            "ts ip_src ip_dst sport dport proto tcp_flags tcp_seq len",
            "1.5 10.0.0.1 10.0.0.2 1234 80 T SA 99 60",
            true,
        );
        let d = p.data();
        assert_eq!(d.len(), 60, "padded to the IP length with CHECKSUM");
        let ip = Ipv4::new_checked(d).unwrap();
        assert!(ip.checksum_ok());
        assert_eq!(
            (ip.src(), ip.dst(), ip.ttl(), ip.proto(), ip.total_len()),
            (0x0a000001, 0x0a000002, 100, 6, 60)
        );
        assert_eq!(
            (be16(d, 20), be16(d, 22), be32(d, 24), d[33], d[32] >> 4),
            (1234, 80, 99, 0x12, 5)
        );
        let pseudo = sum(&d[12..20], 0) + 6 + 40;
        assert_eq!(fold(sum(&d[20..], pseudo)), 0xffff, "TCP checksum verifies");
        assert_eq!(p.anno.timestamp_ns, 1_500_000_000);
        assert_eq!(p.network_offset(), Some(0));
        assert_eq!(p.anno.dst_ip, 0x0a000002);
    }

    #[test]
    fn without_checksum_the_packet_stops_after_its_headers() {
        let p = one("src dst proto len", "10.0.0.1 10.0.0.2 U 100", false);
        assert_eq!(p.len(), 28);
        let d = p.data();
        assert_eq!((be16(d, 2), be16(d, 24)), (100, 80), "IP and UDP lengths from ip_len");
        assert!(Ipv4::new_checked(&d[..20]).is_err(), "IP length beyond the data");
        assert_eq!(checksum(&d[..20]), 0, "the IP header checksum is set all the same");
    }

    #[test]
    fn a_payload_sets_the_length() {
        let p = one("proto payload", "U \"hi\\n\"", true);
        let d = p.data();
        assert_eq!(d.len(), 31);
        assert_eq!(&d[28..], b"hi\n");
        assert_eq!((be16(d, 2), be16(d, 24)), (31, 11));
        let p = one("ip_len payload_len", "100 40", false);
        assert_eq!(p.len(), 60, "the 20 missing bytes became TCP options");
        assert_eq!(p.data()[32] >> 4, 10);
    }

    #[test]
    fn a_given_ip_checksum_is_kept_without_checksum() {
        let p = one("src ip_sum", "1.2.3.4 4660", false);
        assert_eq!(be16(p.data(), 10), 4660);
        let p = one("src ip_sum", "1.2.3.4 4660", true);
        assert_eq!(checksum(&p.data()[..20]), 0);
    }

    #[test]
    fn bad_values_and_missing_fields() {
        let mut p = parser("src dst sport");
        assert_eq!(
            p.line(b"10.0.0.1 banana 3"),
            Line::Bad("bad ip_dst value 'banana'".into())
        );
        assert_eq!(
            p.line(b"10.0.0.1 10.0.0.2 70000"),
            Line::Bad("bad sport value '70000'".into())
        );
        assert_eq!(p.line(b"- - -"), Line::Bad("no field has a value".into()));
        assert_eq!(p.line(b"10.0.0.1"), Line::Packet, "missing columns are '-'");
        assert_eq!(p.line(b"   "), Line::Skip);
        assert_eq!(p.line(b"# comment"), Line::Skip);
        assert_eq!(p.line(b"!binary"), Line::Binary);
        let mut none = Parser::default();
        assert!(matches!(none.line(b"1 2 3"), Line::Bad(_)));
        assert_eq!(none.warnings, ["missing banner line; is this an IP summary dump?"]);
    }

    #[test]
    fn bang_lines_set_fields_protocol_and_flow() {
        let mut p = Parser::default();
        for l in [
            "!IPSummaryDump 1.3",
            "!creator \"test\"",
            "!data ip_src tcp_bogus ip_opt",
            "!proto U",
        ] {
            assert_eq!(p.line(l.as_bytes()), Line::Skip);
        }
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert_eq!(p.line(b"1.2.3.4 x y"), Line::Packet);
        assert_eq!(p.builder.data()[9], 17);
        assert_eq!(p.line(b"!flowid 5.6.7.8 10 9.9.9.9 20 T"), Line::Skip);
        assert_eq!(p.line(b"!data ts"), Line::Skip);
        assert_eq!(p.line(b"3"), Line::Packet);
        let d = p.builder.data();
        assert_eq!(
            (be32(d, 12), be16(d, 20), be32(d, 16), be16(d, 22), d[9]),
            (0x05060708, 10, 0x09090909, 20, 6)
        );
    }

    #[test]
    fn version_one_zero_counts_fragment_offsets_in_words() {
        let mut p = Parser::default();
        p.line(b"!IPSummaryDump 1.0");
        p.line(b"!data ip_fragoff");
        p.line(b"185+");
        assert_eq!(p.builder.data()[6..8], [0x20, 185]);
    }

    #[test]
    fn one_line_can_stand_for_several_packets() {
        let mut p = parser("len count");
        assert_eq!(p.line(b"3001 3"), Line::Packet);
        assert_eq!(p.builder.count, 3);
        let q = p.builder.emit(Some(1000), true);
        assert_eq!((q.len(), be16(q.data(), 2)), (1000, 1000));
        assert_eq!(checksum(&q.data()[..20]), 0);
    }
}
