//! ToIPSummaryDump's half of the format: the line one packet becomes.
//!
//! The packet's IP header is where its network header annotation says
//! (none marked: no IP fields), looked at through bounds-checked reads
//! only. A field that does not apply (ports of an ICMP packet, a TCP
//! field of a header cut short) is written `-`; with BAD_PACKETS the
//! first problem found becomes a `!bad` line before the packet's line,
//! in Click's words.

use super::ip_summary::{self as fmt, tcpopt, Field};
use crate::wire::{be16, be32, IP_PROTO_TCP, IP_PROTO_UDP};
use std::io::Write as _;
use switchyard_core::Packet;

const OFFMASK: u16 = 0x1fff;
const UDPLITE: u8 = 136;

/// The fields of one dump and how to write them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    fields: Vec<Field>,
    needs_headers: bool,
    careful_trunc: bool,
}

/// What a missing field was looking for, for the `!bad` line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Ip,
    Tcp,
    Udp,
    TcpOrUdp,
}

impl Summary {
    pub fn new(fields: Vec<Field>, careful_trunc: bool) -> Summary {
        let needs_headers = fields.iter().any(|f| f.needs_headers());
        Summary {
            fields,
            needs_headers,
            careful_trunc,
        }
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Appends `p`'s line to `out`. With `bad`, the first problem with
    /// its headers goes to `bad` as a `!bad` line (which belongs before
    /// the packet's line).
    pub fn write(&self, p: &Packet, out: &mut Vec<u8>, bad: Option<&mut Vec<u8>>) {
        let mut d = Desc {
            p,
            data: p.data(),
            ip: None,
            hl: 0,
            tailpad: 0,
            tcp: false,
            udp: false,
            bad,
        };
        if self.needs_headers {
            d.prepare(self.careful_trunc);
        }
        for (i, &f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            if !d.field(f, out) {
                out.push(b'-');
            }
        }
        out.push(b'\n');
    }
}

/// One packet as the fields see it (Click's `PacketDesc`).
struct Desc<'a> {
    p: &'a Packet,
    data: &'a [u8],
    /// Where an acceptable IPv4 header starts.
    ip: Option<usize>,
    /// Its length in bytes.
    hl: usize,
    /// Bytes past the IP length (link-layer padding), left out of every
    /// length.
    tailpad: usize,
    tcp: bool,
    udp: bool,
    bad: Option<&'a mut Vec<u8>>,
}

impl Desc<'_> {
    /// Records the first problem, if problems are wanted.
    fn flag(&mut self, what: std::fmt::Arguments<'_>) {
        if let Some(bad) = self.bad.as_deref_mut().filter(|b| b.is_empty()) {
            let _ = writeln!(bad, "!bad {what}");
        }
    }

    fn len(&self) -> usize {
        self.data.len() - self.tailpad
    }

    /// Bytes from the IP header to the end of the IP packet.
    fn net_len(&self) -> usize {
        self.ip.map_or(0, |n| self.len().saturating_sub(n))
    }

    fn trans_len(&self) -> i64 {
        self.net_len() as i64 - self.hl as i64
    }

    /// The IP header and what follows, up to the IP length.
    fn iph(&self) -> &[u8] {
        self.ip.map_or(&[][..], |n| &self.data[n..n + self.net_len()])
    }

    fn frag_word(&self) -> u16 {
        let h = self.iph();
        if h.len() >= 8 {
            be16(h, 6)
        } else {
            0
        }
    }

    fn first_frag(&self) -> bool {
        self.frag_word() & OFFMASK == 0
    }

    fn proto(&self) -> Option<u8> {
        self.iph().get(9).copied()
    }

    /// The transport header and what follows.
    fn th(&self) -> &[u8] {
        self.iph().get(self.hl..).unwrap_or(&[])
    }

    /// Click's `ip_prepare`: accepts the IP header or says why not, finds
    /// link padding, and decides whether a TCP or UDP header follows.
    fn prepare(&mut self, careful_trunc: bool) {
        let Some(n) = self.p.network_offset() else {
            return;
        };
        let h = &self.data[n..];
        if h.len() < 4 {
            return self.flag(format_args!("truncated IP header"));
        }
        if h[0] >> 4 != 4 {
            return self.flag(format_args!("IP version {}", h[0] >> 4));
        }
        let hl = usize::from(h[0] & 0xf) * 4;
        if hl < 20 {
            return self.flag(format_args!("IP header length {}", hl / 4));
        }
        let ip_len = usize::from(be16(h, 2));
        if ip_len < hl {
            return self.flag(format_args!("IP length {ip_len}"));
        }
        self.ip = Some(n);
        self.hl = hl;
        if h.len() > ip_len {
            self.tailpad = h.len() - ip_len;
        } else if careful_trunc && h.len() < ip_len {
            self.flag(format_args!("truncated IP missing {}", ip_len - h.len()));
        }
        if self.net_len() <= hl || !self.first_frag() {
            return;
        }
        match self.proto() {
            Some(IP_PROTO_TCP) => {
                self.tcp = true;
                let th = self.th();
                if th.len() > 12 && th[12] >> 4 < 5 {
                    let off = th[12] >> 4;
                    self.flag(format_args!("TCP header length {off}"));
                    self.tcp = false;
                }
            }
            Some(IP_PROTO_UDP) => self.udp = true,
            _ => {}
        }
    }

    /// Click's `field_missing`: a field that needed `l` bytes of a header
    /// it did not find. Always false (the field is written `-`).
    fn missing(&mut self, want: Want, l: i64) -> bool {
        if self.bad.as_deref().is_none_or(|b| !b.is_empty()) {
            return false;
        }
        let name = match want {
            Want::Ip => "IP",
            Want::Tcp => "TCP",
            Want::Udp => "UDP",
            Want::TcpOrUdp => "TCP/UDP",
        };
        if self.ip.is_none() {
            self.flag(format_args!("no IP header"));
        } else if want == Want::Ip {
            self.flag(format_args!("truncated IP header capture"));
        } else if self.net_len() > 9 && {
            let p = self.proto().unwrap_or(0);
            match want {
                Want::Tcp => p != IP_PROTO_TCP,
                Want::Udp => p != IP_PROTO_UDP,
                _ => p != IP_PROTO_TCP && p != IP_PROTO_UDP,
            }
        } {
            // A field of another protocol is not a problem of the packet.
        } else if !self.first_frag() {
            self.flag(format_args!("fragmented {name} header"));
        } else if self.trans_len() >= l {
            self.flag(format_args!("truncated {name} header capture"));
        } else {
            self.flag(format_args!("truncated {name} header"));
        }
        false
    }

    /// The IP header if at least `l` bytes of it were captured.
    fn ip_bytes(&mut self, l: usize) -> Option<&[u8]> {
        if self.ip.is_some() && self.net_len() >= l {
            Some(self.iph())
        } else {
            self.missing(Want::Ip, l as i64);
            None
        }
    }

    /// The TCP header if at least `l` bytes of it were captured.
    fn tcp_bytes(&mut self, l: usize) -> Option<&[u8]> {
        if self.tcp && self.trans_len() >= l as i64 {
            Some(self.th())
        } else {
            self.missing(Want::Tcp, l as i64);
            None
        }
    }

    /// Where the payload starts in the data and how long the IP length
    /// says it is (Click's `payload_info`).
    fn payload_info(&self) -> (usize, i64) {
        let Some(n) = self.ip else {
            return (0, self.len() as i64);
        };
        let ip_len = i64::from(be16(self.iph(), 2));
        let mut off = n + self.hl;
        if self.first_frag() {
            match self.proto() {
                Some(IP_PROTO_TCP) => {
                    let th = self.th();
                    off += match th.get(12) {
                        Some(&b) if usize::from(b >> 4) * 4 >= 20 => usize::from(b >> 4) * 4,
                        _ => 20,
                    };
                }
                Some(IP_PROTO_UDP | UDPLITE) => off += 8,
                _ => {}
            }
        }
        (off, ip_len - (off - n) as i64)
    }

    /// Writes field `f`; false if it does not apply.
    fn field(&mut self, f: Field, out: &mut Vec<u8>) -> bool {
        let ts = self.p.anno.timestamp_ns;
        let num = |out: &mut Vec<u8>, v: u64| {
            let _ = write!(out, "{v}");
            true
        };
        match f {
            Field::Timestamp | Field::NTimestamp => {
                fmt::format_timestamp(ts, out);
                true
            }
            Field::TsSec => num(out, ts / 1_000_000_000),
            Field::TsUsec => num(out, ts % 1_000_000_000 / 1000),
            Field::TsUsec1 => num(out, ts / 1000),
            // One packet is one packet: there is no extra-packets
            // annotation to count more.
            Field::Count => num(out, 1),
            Field::Link | Field::Paint => num(out, u64::from(self.p.anno.paint)),
            Field::Direction => match self.p.anno.paint {
                0 => {
                    out.push(b'>');
                    true
                }
                1 => {
                    out.push(b'<');
                    true
                }
                v => num(out, u64::from(v)),
            },
            Field::WireLen => num(out, self.data.len() as u64),
            Field::IpSrc | Field::IpDst => {
                let at = if f == Field::IpSrc { 12 } else { 16 };
                let Some(h) = self.ip_bytes(at + 4) else {
                    return false;
                };
                let _ = write!(out, "{}", crate::wire::IpAddr(be32(h, at)));
                true
            }
            Field::IpTos | Field::IpDscp | Field::IpEcn => {
                let Some(tos) = self.ip_bytes(2).map(|h| h[1]) else {
                    return false;
                };
                match f {
                    Field::IpTos => num(out, u64::from(tos)),
                    Field::IpDscp => num(out, u64::from(tos >> 2)),
                    _ => {
                        fmt::format_ip_ecn(tos, out);
                        true
                    }
                }
            }
            Field::IpTtl => self.ip_bytes(9).map(|h| h[8]).is_some_and(|v| num(out, v.into())),
            Field::IpFrag | Field::IpFragoff => {
                let Some(word) = self.ip_bytes(8).map(|h| be16(h, 6)) else {
                    return false;
                };
                if f == Field::IpFrag {
                    fmt::format_ip_frag(word, out);
                } else {
                    fmt::format_ip_fragoff(word, out);
                }
                true
            }
            Field::IpId => self.ip_bytes(6).map(|h| be16(h, 4)).is_some_and(|v| num(out, v.into())),
            Field::IpSum => self
                .ip_bytes(12)
                .map(|h| be16(h, 10))
                .is_some_and(|v| num(out, v.into())),
            Field::IpProto => {
                let Some(p) = self.ip_bytes(10).map(|h| h[9]) else {
                    return false;
                };
                fmt::format_proto(p, out);
                true
            }
            Field::IpHl => {
                let hl = self.hl as u64;
                self.ip_bytes(1).is_some() && num(out, hl)
            }
            Field::IpLen => {
                let v = if self.ip.is_some() {
                    u64::from(be16(self.iph(), 2))
                } else {
                    self.len() as u64
                };
                num(out, v)
            }
            Field::IpCaptureLen => {
                let (allow, len) = if self.ip.is_some() {
                    (self.net_len() as u64, u64::from(be16(self.iph(), 2)))
                } else {
                    (self.len() as u64, self.len() as u64)
                };
                num(out, len.min(allow))
            }
            Field::Sport | Field::Dport => {
                let (at, l) = if f == Field::Sport { (0, 2) } else { (2, 4) };
                let ok = self.ip.is_some()
                    && self.net_len() > self.hl
                    && self.first_frag()
                    && self.proto().is_some_and(fmt::has_ports)
                    && self.trans_len() >= l;
                if !ok {
                    return self.missing(Want::TcpOrUdp, l);
                }
                num(out, be16(self.th(), at).into())
            }
            Field::TcpSeq => self
                .tcp_bytes(8)
                .map(|t| be32(t, 4))
                .is_some_and(|v| num(out, v.into())),
            Field::TcpAck => self
                .tcp_bytes(12)
                .map(|t| be32(t, 8))
                .is_some_and(|v| num(out, v.into())),
            Field::TcpOff => self
                .tcp_bytes(13)
                .map(|t| t[12] >> 4)
                .is_some_and(|v| num(out, u64::from(v) * 4)),
            Field::TcpFlags => {
                let Some(t) = self.tcp_bytes(14) else {
                    return false;
                };
                let flags = u16::from(t[13]) | u16::from(t[12] & 0xf) << 8;
                fmt::format_tcp_flags(flags, out);
                true
            }
            Field::TcpWindow => self
                .tcp_bytes(16)
                .map(|t| be16(t, 14))
                .is_some_and(|v| num(out, v.into())),
            Field::TcpUrp => self
                .tcp_bytes(20)
                .map(|t| be16(t, 18))
                .is_some_and(|v| num(out, v.into())),
            Field::TcpOpt | Field::TcpNtopt | Field::TcpSack => self.tcp_options(f, out),
            Field::UdpLen => {
                if self.udp && self.trans_len() >= 6 {
                    num(out, be16(self.th(), 4).into())
                } else {
                    self.missing(Want::Udp, 6)
                }
            }
            Field::PayloadLen => num(out, self.payload_info().1.max(0) as u64),
            Field::Payload => {
                let (off, len) = self.payload_info();
                let len = len.max(0) as usize;
                if len != 0 && off >= self.data.len() {
                    return false;
                }
                let len = len.min(self.len().saturating_sub(off));
                fmt::quote(self.data.get(off..off + len).unwrap_or(&[]), out);
                true
            }
        }
    }

    fn tcp_options(&mut self, f: Field, out: &mut Vec<u8>) -> bool {
        let tl = self.trans_len();
        let th = self.th();
        let off = th.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
        if !self.tcp || tl < 13 || (off > 20 && tl < off as i64) {
            return self.missing(Want::Tcp, tl + 1);
        }
        // A lone timestamp option (NOP, NOP, timestamp) is the common
        // case the fields without timestamps skip at once.
        let only_timestamp = off == 32 && tl >= 24 && th[20..24] == [1, 1, 8, 10];
        let opts = if off <= 20 || (f != Field::TcpOpt && only_timestamp) {
            &[][..]
        } else {
            &th[20..off]
        };
        if opts.is_empty() {
            out.push(b'.');
            return true;
        }
        let mask = match f {
            Field::TcpOpt => tcpopt::ALL_NOPAD,
            Field::TcpNtopt => tcpopt::NTALL,
            _ => tcpopt::SACK,
        };
        fmt::format_tcp_opt(opts, mask, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::ipv4_packet;

    fn line(fields: &[Field], p: &Packet, bad: bool) -> (String, String) {
        let s = Summary::new(fields.to_vec(), true);
        let (mut out, mut b) = (Vec::new(), Vec::new());
        s.write(p, &mut out, bad.then_some(&mut b));
        (String::from_utf8(out).unwrap(), String::from_utf8(b).unwrap())
    }

    fn marked(bytes: &[u8]) -> Packet {
        let mut p = Packet::from_data(bytes);
        p.set_network_header(0, 20);
        p
    }

    #[test]
    fn a_udp_packet_has_ports_and_no_tcp_fields() {
        let mut p = marked(&ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 12));
        p.anno.timestamp_ns = 1_500_000_000;
        let (l, bad) = line(
            &[
                Field::Timestamp,
                Field::IpSrc,
                Field::Sport,
                Field::Dport,
                Field::IpProto,
                Field::IpLen,
                Field::TcpFlags,
                Field::PayloadLen,
                Field::Count,
            ],
            &p,
            true,
        );
        let udp = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 12);
        let (sp, dp) = (be16(&udp, 20), be16(&udp, 22));
        assert_eq!(l, format!("1.500000 10.0.0.1 {sp} {dp} U 32 - 4 1\n"));
        assert_eq!(bad, "", "a TCP field on UDP is not a problem of the packet");
    }

    #[test]
    fn bad_headers_say_why_and_fields_are_dashes() {
        let mut bytes = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 30);
        bytes[0] = 0x65;
        let (l, bad) = line(&[Field::IpSrc, Field::IpLen], &marked(&bytes), true);
        assert_eq!(l, "- 50\n");
        assert_eq!(bad, "!bad IP version 6\n");
        let bytes = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 30);
        let (l, bad) = line(&[Field::TcpSeq, Field::TcpFlags], &marked(&bytes[..30]), true);
        assert_eq!(
            l, "0 -\n",
            "ten bytes of TCP header hold the sequence number, not the flags"
        );
        assert_eq!(bad, "!bad truncated IP missing 20\n");
        let (_, bad) = line(&[Field::TcpWindow], &marked(&bytes[..30]), false);
        assert_eq!(bad, "");
        let unmarked = Packet::from_data(&bytes);
        let (l, bad) = line(&[Field::IpSrc, Field::IpLen, Field::WireLen], &unmarked, true);
        assert_eq!(l, "- 50 50\n");
        assert_eq!(bad, "!bad no IP header\n");
    }

    #[test]
    fn ethernet_padding_is_left_out() {
        let mut bytes = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 8);
        bytes.extend_from_slice(&[0xee; 18]);
        let (l, _) = line(
            &[
                Field::IpLen,
                Field::IpCaptureLen,
                Field::PayloadLen,
                Field::Payload,
                Field::WireLen,
            ],
            &marked(&bytes),
            false,
        );
        assert_eq!(l, "28 28 0 \"\" 46\n");
    }

    #[test]
    fn directions_print_as_arrows() {
        let mut p = Packet::from_data(&[]);
        let f = [Field::Direction, Field::Link];
        assert_eq!(line(&f, &p, false).0, "> 0\n");
        p.anno.paint = 1;
        assert_eq!(line(&f, &p, false).0, "< 1\n");
        p.anno.paint = 7;
        assert_eq!(line(&f, &p, false).0, "7 7\n");
    }
}
