use crate::util::flag_handler;
use crate::wire::{self, be16, be32, ip, IpAddr, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler, Packet};

documented! {
    /// Prints a tcpdump-like line per IP packet to standard error (Click's
    /// IPPrint), for debugging, in Click's format:
    ///
    /// ```text
    /// label: 1.000020: 10.0.0.1.1234 > 10.0.0.2.80: S 0:1(1,54,40) win 512
    /// ```
    ///
    /// TCP shows its flags (`S`, `F`, `R`, `P`, or `.`), `seq:end(seqlen,
    /// packet length, IP length)`, `ack` and `win`; UDP `udp LENGTH`; ICMP
    /// the type and code by name, echo identifier and sequence, and the
    /// original destination of an unreachable; other protocols
    /// `ip-proto-N`. Fragments get ` (frag ID:LEN@OFFSET+)`; headers cut
    /// short print `truncated-tcp` and the like, never bytes past the
    /// packet. Packets without a marked network header pass unprinted, as
    /// in Click: put it after CheckIPHeader or MarkIPHeader.
    ///
    /// The lines of a batch are formatted into one reused buffer and
    /// written at once. Protocol names come from a built-in list (icmp,
    /// igmp, ipip, tcp, udp, dccp, gre, sctp), not `/etc/protocols`.
    /// Click's `AGGREGATE` (no aggregate annotation here) and `CHANNEL`
    /// (no chatter channels) are not supported.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `LABEL` (positional): text at the start of each line; default none.
    /// - `CONTENTS`: `NONE`, `HEX` or `ASCII` (or a boolean, true meaning
    ///   HEX): also dump the packet bytes from the data start; default NONE.
    /// - `PAYLOAD`: like CONTENTS (`false`, `HEX`/`true`, `ASCII`), but from
    ///   the transport payload. At most one of CONTENTS and PAYLOAD.
    /// - `MAXLENGTH`: most bytes dumped, -1 for all; default 1500 (`NBYTES`
    ///   is Click's old name for it).
    /// - `ID`, `TTL`, `TOS`, `LENGTH`: print those IP header fields;
    ///   default false.
    /// - `TIMESTAMP`: print the timestamp annotation (seconds since 1970);
    ///   default true.
    /// - `PAINT`: print the paint annotation; default false.
    /// - `SWAP`: print ICMP echo identifier and sequence in network byte
    ///   order (as Click on a little-endian host); false prints them
    ///   byte-swapped; default true.
    /// - `OUTFILE`: write to this file (created or truncated when the router
    ///   starts, kept across a reload that keeps the name) instead of
    ///   standard error.
    /// - `ACTIVE`: print at all; default true.
    ///
    /// # Handlers
    /// - `active` (read/write): ACTIVE.
    ///
    /// # Example
    /// ```text
    /// CheckIPHeader -> IPPrint(in, TTL true, PAYLOAD ASCII, MAXLENGTH 64) -> rt;
    /// ```
    pub struct IPPrint {
        opts: Options,
        active: Arc<AtomicBool>,
        outfile: Option<String>,
        out: Option<std::fs::File>,
        line: String,
    }
}

/// How packet bytes are dumped (Click's CONTENTS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dump {
    None,
    Hex,
    Ascii,
}

impl Dump {
    /// Click's CONTENTS value: a boolean (true meaning HEX), or `NONE`,
    /// `HEX` or `ASCII`, in any case.
    pub(crate) fn parse(text: &str) -> Option<Dump> {
        match text.to_ascii_uppercase().as_str() {
            "NONE" | "FALSE" | "NO" | "0" | "F" | "N" => Some(Dump::None),
            "HEX" | "TRUE" | "YES" | "1" | "T" | "Y" => Some(Dump::Hex),
            "ASCII" => Some(Dump::Ascii),
            _ => None,
        }
    }
}

struct Options {
    label: String,
    dump: Dump,
    payload: bool,
    max_length: usize,
    id: bool,
    ttl: bool,
    tos: bool,
    length: bool,
    timestamp: bool,
    paint: bool,
    swap: bool,
}

impl IPPrint {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPPrint",
        ports: "1/1",
        processing: "a/a",
        doc: IPPrint::DOC,
        factory: IPPrint::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let label = args.read_p::<String>("LABEL").unwrap_or_default();
        let contents = args.read::<String>("CONTENTS");
        let payload = args.read::<String>("PAYLOAD");
        // Click reads MAXLENGTH, then its old name NBYTES: the later wins.
        let max = args.read::<i64>("MAXLENGTH");
        let max = args.read::<i64>("NBYTES").or(max).unwrap_or(1500);
        let id = args.read::<bool>("ID").unwrap_or(false);
        let timestamp = args.read::<bool>("TIMESTAMP").unwrap_or(true);
        let paint = args.read::<bool>("PAINT").unwrap_or(false);
        let tos = args.read::<bool>("TOS").unwrap_or(false);
        let ttl = args.read::<bool>("TTL").unwrap_or(false);
        let swap = args.read::<bool>("SWAP").unwrap_or(true);
        let length = args.read::<bool>("LENGTH").unwrap_or(false);
        let active = args.read::<bool>("ACTIVE").unwrap_or(true);
        let outfile = args.read::<String>("OUTFILE");
        let contents = match contents.as_deref().map(|c| (c, Dump::parse(c))) {
            None => Dump::None,
            Some((_, Some(d))) => d,
            Some((other, None)) => {
                let span = args.span_of("CONTENTS");
                args.error(
                    Some(span),
                    format!("CONTENTS: expected NONE, HEX or ASCII, found '{other}'"),
                );
                Dump::None
            }
        };
        let payload = match payload.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("NO" | "FALSE") => Dump::None,
            Some("YES" | "TRUE" | "HEX") => Dump::Hex,
            Some("ASCII") => Dump::Ascii,
            Some(other) => {
                let span = args.span_of("PAYLOAD");
                args.error(
                    Some(span),
                    format!("PAYLOAD: expected false, HEX or ASCII, found '{other}'"),
                );
                Dump::None
            }
        };
        if contents != Dump::None && payload != Dump::None {
            args.error(None, "specify at most one of PAYLOAD and CONTENTS");
        }
        if args.has_errors() {
            return None;
        }
        let (dump, payload) = if payload != Dump::None {
            (payload, true)
        } else {
            (contents, false)
        };
        Some(Box::new(IPPrint {
            opts: Options {
                label,
                dump,
                payload,
                max_length: usize::try_from(max).unwrap_or(usize::MAX),
                id,
                ttl,
                tos,
                length,
                timestamp,
                paint,
                swap,
            },
            active: Arc::new(AtomicBool::new(active)),
            outfile,
            out: None,
            line: String::new(),
        }))
    }
}

impl Element for IPPrint {
    fn take_state(&mut self, old: Box<dyn Element>) {
        // Reopening the same file would truncate what was printed so far.
        if let Some(mut old) = downcast::<IPPrint>(old) {
            if old.outfile == self.outfile {
                self.out = old.out.take();
            }
        }
    }

    fn activate(&mut self) -> Result<(), String> {
        if let (Some(path), None) = (&self.outfile, &self.out) {
            self.out = Some(std::fs::File::create(path).map_err(|e| format!("OUTFILE {path}: {e}"))?);
        }
        Ok(())
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        if !self.active.load(Relaxed) {
            return;
        }
        self.line.clear();
        for p in batch.iter() {
            if self.opts.format(&mut self.line, p) {
                self.line.push('\n');
            }
        }
        if self.line.is_empty() {
            return;
        }
        // A failed debug print must not stop the router; nothing to do
        // about it but go on.
        let _ = match &mut self.out {
            Some(f) => f.write_all(self.line.as_bytes()),
            None => std::io::stderr().lock().write_all(self.line.as_bytes()),
        };
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![flag_handler("active", &self.active)]
    }
}

const TH_FIN: u8 = 0x01;
const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_PUSH: u8 = 0x08;
const TH_ACK: u8 = 0x10;

impl Options {
    /// Appends the line for `p` (without a newline) to `out`; false, and
    /// nothing appended, for a packet without a network header.
    fn format(&self, out: &mut String, p: &Packet) -> bool {
        let (Some(nh_off), Some(nh)) = (p.network_offset(), p.network_header()) else {
            return false;
        };
        if !self.label.is_empty() {
            out.push_str(&self.label);
            out.push_str(": ");
        }
        if self.timestamp {
            push_timestamp(out, p.anno.timestamp_ns);
            out.push_str(": ");
        }
        if self.paint {
            let _ = write!(out, "paint {}: ", p.anno.paint);
        }
        if nh.len() < ip::MIN_LEN {
            out.push_str("truncated-ip");
            return true;
        }
        let ip_len = be16(nh, ip::LEN) as isize;
        let hl = isize::from(nh[0] & 0xf) * 4;
        let payload_len = ip_len - hl;
        let net_len = usize::from(p.anno.net_len);
        let tl = (nh.len() as isize - net_len as isize).min(payload_len);
        let transport: &[u8] = if tl > 0 {
            &nh[net_len..net_len + tl as usize]
        } else {
            &[]
        };
        let frag = be16(nh, ip::FRAG);
        let first_frag = frag & ip::OFFMASK == 0;
        let proto = nh[ip::PROTO];
        let seg = Segment {
            src: IpAddr(be32(nh, ip::SRC)),
            dst: IpAddr(be32(nh, ip::DST)),
            t: transport,
            tl,
            first_frag,
        };

        if self.id {
            let _ = write!(out, "id {} ", be16(nh, ip::ID));
        }
        if self.ttl {
            let _ = write!(out, "ttl {} ", nh[ip::TTL]);
        }
        if self.tos {
            let _ = write!(out, "tos {} ", nh[ip::TOS]);
        }
        if self.length {
            let _ = write!(out, "length {ip_len} ");
        }
        match proto {
            IP_PROTO_TCP => tcp_line(out, &seg, payload_len, p.len(), ip_len),
            IP_PROTO_UDP => udp_line(out, &seg),
            IP_PROTO_ICMP => self.icmp_line(out, &seg),
            _ => {
                let _ = write!(out, "{} > {}: ip-proto-{proto}", seg.src, seg.dst);
            }
        }
        if frag & (ip::MF | ip::OFFMASK) != 0 {
            let _ = write!(
                out,
                " (frag {}:{payload_len}@{}{})",
                be16(nh, ip::ID),
                u32::from(frag & ip::OFFMASK) << 3,
                if frag & ip::MF != 0 { "+" } else { "" }
            );
        }
        if self.dump != Dump::None {
            let data = p.data();
            let start = if self.payload {
                let transport_at = nh_off + net_len;
                let skip = match proto {
                    IP_PROTO_TCP if first_frag => data.get(transport_at + 12).map(|&b| usize::from(b >> 4) * 4),
                    IP_PROTO_UDP if first_frag => Some(8),
                    _ => Some(0),
                };
                skip.map_or(data.len(), |s| transport_at + s)
            } else {
                0
            };
            let shown = data.get(start..).unwrap_or(&[]);
            let shown = &shown[..shown.len().min(self.max_length)];
            match self.dump {
                Dump::Hex => push_hex(out, shown),
                Dump::Ascii => push_ascii(out, shown),
                Dump::None => {}
            }
        }
        true
    }

    fn icmp_line(&self, out: &mut String, e: &Segment<'_>) {
        let (t, tl, first_frag) = (e.t, e.tl, e.first_frag);
        let _ = write!(out, "{} > {}: ", e.src, e.dst);
        if !first_frag {
            out.push_str("icmp");
            return;
        }
        if tl < 2 {
            out.push_str("truncated-icmp");
            return;
        }
        let (ty, code) = (t[0], t[1]);
        match ty {
            0 | 8 => {
                out.push_str(if ty == 0 { "icmp echo-reply " } else { "icmp echo " });
                if tl < 8 {
                    out.push_str("truncated-icmp");
                    return;
                }
                let (id, seq) = if self.swap {
                    (be16(t, 4), be16(t, 6))
                } else {
                    (u16::from_le_bytes([t[4], t[5]]), u16::from_le_bytes([t[6], t[7]]))
                };
                let _ = write!(out, "({id}, {seq})");
            }
            3 => {
                // The quoted header follows the 8-byte ICMP header.
                let quoted_len = tl - 8;
                if quoted_len < ip::MIN_LEN as isize {
                    out.push_str("icmp unreachable ");
                    push_code(out, ty, code, "code ");
                    out.push_str(" truncated-icmp");
                    return;
                }
                let q = &t[8..];
                let qhl = usize::from(q[0] & 0xf) * 4;
                let _ = write!(out, "icmp {} unreachable ", IpAddr(be32(q, ip::DST)));
                push_code(out, ty, code, "code ");
                match code {
                    2 => {
                        out.push(' ');
                        push_proto(out, q[ip::PROTO], "");
                    }
                    3 => {
                        out.push(' ');
                        push_proto(out, q[ip::PROTO], "protocol ");
                        if quoted_len - (qhl as isize) < 4 {
                            out.push_str("truncated-icmp");
                            return;
                        }
                        let _ = write!(out, "/{}", be16(q, qhl + 2));
                    }
                    4 => {
                        let mtu = be16(t, 6);
                        if mtu != 0 {
                            let _ = write!(out, " (mtu {mtu})");
                        }
                    }
                    _ => {}
                }
            }
            _ => {
                out.push_str("icmp ");
                match crate::icmp::names::type_name(ty) {
                    Some(n) => out.push_str(n),
                    None => {
                        let _ = write!(out, "type {ty}");
                    }
                }
                if let Some(n) = crate::icmp::names::code_name(ty, code) {
                    out.push(' ');
                    out.push_str(n);
                } else if code != 0 {
                    let _ = write!(out, " code {code}");
                }
            }
        }
    }
}

/// What the protocol lines need: the addresses and the transport header.
struct Segment<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// The transport bytes within the IP length (`tl` of them when positive).
    t: &'a [u8],
    /// Click's transport length: may be negative when the header length
    /// runs past the data.
    tl: isize,
    first_frag: bool,
}

fn tcp_line(out: &mut String, e: &Segment<'_>, payload_len: isize, packet_len: usize, ip_len: isize) {
    let (t, tl, first_frag) = (e.t, e.tl, e.first_frag);
    if tl < 4 || !first_frag {
        let what = if first_frag { "truncated-tcp" } else { "tcp" };
        let _ = write!(out, "{} > {}: {what}", e.src, e.dst);
        return;
    }
    let _ = write!(out, "{}.{} > {}.{}: ", e.src, be16(t, 0), e.dst, be16(t, 2));
    if tl < 14 {
        out.push_str("truncated-tcp");
        return;
    }
    let flags = t[13];
    let mut seqlen = payload_len - isize::from(t[12] >> 4) * 4;
    if flags & TH_SYN != 0 {
        out.push('S');
        seqlen += 1;
    }
    if flags & TH_FIN != 0 {
        out.push('F');
        seqlen += 1;
    }
    if flags & TH_RST != 0 {
        out.push('R');
    }
    if flags & TH_PUSH != 0 {
        out.push('P');
    }
    if flags & (TH_SYN | TH_FIN | TH_RST | TH_PUSH) == 0 {
        out.push('.');
    }
    let seq = be32(t, 4);
    let _ = write!(
        out,
        " {seq}:{}({seqlen},{packet_len},{ip_len})",
        seq.wrapping_add(seqlen as u32)
    );
    if flags & TH_ACK != 0 {
        let _ = write!(out, " ack {}", be32(t, 8));
    }
    if tl < 16 {
        out.push_str("truncated-tcp");
        return;
    }
    let _ = write!(out, " win {}", be16(t, 14));
}

fn udp_line(out: &mut String, e: &Segment<'_>) {
    let (t, tl, first_frag) = (e.t, e.tl, e.first_frag);
    if tl < 4 || !first_frag {
        let what = if first_frag { "truncated-udp" } else { "udp" };
        let _ = write!(out, "{} > {}: {what}", e.src, e.dst);
        return;
    }
    let _ = write!(out, "{}.{} > {}.{}: ", e.src, be16(t, 0), e.dst, be16(t, 2));
    if tl < 8 {
        out.push_str("truncated-udp");
        return;
    }
    let _ = write!(out, "udp {}", be16(t, 4));
}

/// Seconds with microseconds, or nanoseconds when there are any, as
/// Click prints a timestamp.
pub(crate) fn push_timestamp(out: &mut String, ns: u64) {
    let (sec, sub) = (ns / 1_000_000_000, ns % 1_000_000_000);
    let _ = if sub % 1000 == 0 {
        write!(out, "{sec}.{:06}", sub / 1000)
    } else {
        write!(out, "{sec}.{sub:09}")
    };
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Hex, a space every 4 bytes, a new indented line every 24.
fn push_hex(out: &mut String, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if i % 24 == 0 {
            out.push_str("\n  ");
        } else if i % 4 == 0 {
            out.push(' ');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// Printable characters (others as `.`), a space every 8, a new indented
/// line every 48.
fn push_ascii(out: &mut String, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if i % 48 == 0 {
            out.push_str("\n  ");
        } else if i % 8 == 0 {
            out.push(' ');
        }
        out.push(if (32..=126).contains(&b) { char::from(b) } else { '.' });
    }
}

fn push_proto(out: &mut String, proto: u8, unnamed_prefix: &str) {
    match wire::ip_proto_name(proto) {
        Some(name) => out.push_str(name),
        None => {
            let _ = write!(out, "{unnamed_prefix}{proto}");
        }
    }
}

fn push_code(out: &mut String, ty: u8, code: u8, unnamed_prefix: &str) {
    match crate::icmp::names::code_name(ty, code) {
        Some(n) => out.push_str(n),
        None => {
            let _ = write!(out, "{unnamed_prefix}{code}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{put16, put32, set_ip_checksum};

    fn printer(config: &str) -> IPPrint {
        *downcast::<IPPrint>(crate::testutil::element(IPPrint::CLASS, config)).unwrap()
    }

    #[test]
    fn positional_label_and_clicks_keyword_forms() {
        for config in [
            "a",
            "a, TIMESTAMP false",
            "\"a b\", TIMESTAMP false, PAINT true",
            "b, CONTENTS t",
            "NBYTES 20",
        ] {
            let e = crate::testutil::configure("p :: IPPrint", IPPrint::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        assert_eq!(printer("b, CONTENTS t").opts.dump, Dump::Hex);
        assert_eq!(
            printer("MAXLENGTH 10, NBYTES 20").opts.max_length,
            20,
            "NBYTES read last, as in Click"
        );
        assert!(crate::testutil::configure("p :: IPPrint", IPPrint::CLASS, "a, b").is_err());
    }

    fn line(config: &str, p: &Packet) -> String {
        let mut s = String::new();
        assert!(printer(config).opts.format(&mut s, p));
        s
    }

    /// An Ethernet frame holding IPv4 `ip`, network header marked.
    fn framed(ip: &[u8]) -> Packet {
        let mut f = vec![0u8; 14];
        f.extend_from_slice(ip);
        let mut p = Packet::from_data(&f);
        let hl = usize::from(ip.first().map_or(0, |b| b & 0xf)) * 4;
        p.set_network_header(14, hl.min(ip.len()));
        p
    }

    fn tcp(flags: u8, payload: usize) -> Vec<u8> {
        let mut ip = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], IP_PROTO_TCP, 64, 20 + payload);
        let t = &mut ip[20..];
        put16(t, 0, 1234);
        put16(t, 2, 80);
        put32(t, 4, 1000);
        put32(t, 8, 77);
        t[12] = 5 << 4;
        t[13] = flags;
        put16(t, 14, 512);
        ip
    }

    #[test]
    fn tcp_lines_as_click_prints_them() {
        let mut p = framed(&tcp(TH_SYN, 0));
        p.anno.timestamp_ns = 1_000_020_000;
        assert_eq!(
            line("in", &p),
            "in: 1.000020: 10.0.0.1.1234 > 10.0.0.2.80: S 1000:1001(1,54,40) win 512"
        );
        p.anno.timestamp_ns = 1_000_000_001;
        assert!(line("", &p).starts_with("1.000000001: 10.0.0.1.1234"));
        let p = framed(&tcp(TH_ACK | TH_PUSH, 10));
        assert_eq!(
            line("TIMESTAMP false", &p),
            "10.0.0.1.1234 > 10.0.0.2.80: P 1000:1010(10,64,50) ack 77 win 512"
        );
        let p = framed(&tcp(TH_SYN | TH_FIN | TH_ACK, 0));
        assert!(line("TIMESTAMP false", &p).contains(": SF 1000:1002(2,54,40) ack 77 win 512"));
        let p = framed(&tcp(TH_ACK, 0));
        assert!(line("TIMESTAMP false", &p).contains(": . 1000:1000(0,54,40) ack 77 win 512"));
    }

    #[test]
    fn optional_fields_and_paint() {
        let mut ip = tcp(TH_RST, 0);
        ip[ip::TOS] = 0x10;
        set_ip_checksum(&mut ip);
        let mut p = framed(&ip);
        p.anno.paint = 3;
        assert_eq!(
            line(
                "x, TIMESTAMP false, PAINT true, ID true, TTL true, TOS true, LENGTH true",
                &p
            ),
            "x: paint 3: id 7238 ttl 64 tos 16 length 40 10.0.0.1.1234 > 10.0.0.2.80: R 1000:1000(0,54,40) win 512"
        );
    }

    #[test]
    fn udp_icmp_and_other_protocols() {
        let mut udp = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], IP_PROTO_UDP, 64, 12);
        put16(&mut udp[20..], 0, 53);
        put16(&mut udp[20..], 2, 5353);
        put16(&mut udp[20..], 4, 12);
        assert_eq!(
            line("TIMESTAMP false", &framed(&udp)),
            "10.0.0.1.53 > 10.0.0.2.5353: udp 12"
        );

        let mut echo = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], IP_PROTO_ICMP, 64, 8);
        echo[20] = 8;
        put16(&mut echo[20..], 4, 0x0102);
        put16(&mut echo[20..], 6, 7);
        assert_eq!(
            line("TIMESTAMP false", &framed(&echo)),
            "10.0.0.1 > 10.0.0.2: icmp echo (258, 7)"
        );
        assert!(line("TIMESTAMP false, SWAP false", &framed(&echo)).ends_with("icmp echo (513, 1792)"));

        // Port unreachable quoting a UDP packet to 10.9.9.9 port 33434.
        let mut quoted = ipv4_packet([10, 0, 0, 2], [10, 9, 9, 9], IP_PROTO_UDP, 1, 8);
        put16(&mut quoted[20..], 2, 33434);
        let mut unreach = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], IP_PROTO_ICMP, 64, 8 + quoted.len());
        unreach[20] = 3;
        unreach[21] = 3;
        unreach[28..].copy_from_slice(&quoted);
        assert_eq!(
            line("TIMESTAMP false", &framed(&unreach)),
            "10.0.0.1 > 10.0.0.2: icmp 10.9.9.9 unreachable port udp/33434"
        );
        unreach[21] = 4;
        put16(&mut unreach[20..], 6, 1400);
        assert!(line("TIMESTAMP false", &framed(&unreach)).ends_with("unreachable needfrag (mtu 1400)"));

        let mut exceeded = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], IP_PROTO_ICMP, 64, 8);
        exceeded[20] = 11;
        assert!(line("TIMESTAMP false", &framed(&exceeded)).ends_with(": icmp timeexceeded transit"));
        exceeded[20] = 42;
        exceeded[21] = 5;
        assert!(line("TIMESTAMP false", &framed(&exceeded)).ends_with(": icmp type 42 code 5"));

        let gre = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 47, 64, 4);
        assert_eq!(
            line("TIMESTAMP false", &framed(&gre)),
            "10.0.0.1 > 10.0.0.2: ip-proto-47"
        );
    }

    #[test]
    fn fragments() {
        let mut ip = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], IP_PROTO_UDP, 64, 16);
        put16(&mut ip, ip::FRAG, ip::MF | 3);
        assert_eq!(
            line("TIMESTAMP false", &framed(&ip)),
            "10.0.0.1 > 10.0.0.2: udp (frag 7238:16@24+)"
        );
        put16(&mut ip, ip::FRAG, ip::MF);
        put16(&mut ip[20..], 4, 99);
        assert!(line("TIMESTAMP false", &framed(&ip)).ends_with(": udp 99 (frag 7238:16@0+)"));
    }

    #[test]
    fn truncated_headers_never_read_past_the_packet() {
        let ip = tcp(TH_SYN, 0);
        // Cut inside the TCP header: total length still claims 40 bytes.
        let mut p = Packet::from_data(&ip[..34]);
        p.set_network_header(0, 20);
        assert_eq!(
            line("TIMESTAMP false", &p),
            "10.0.0.1.1234 > 10.0.0.2.80: S 1000:1001(1,34,40)truncated-tcp"
        );
        let mut p = Packet::from_data(&ip[..22]);
        p.set_network_header(0, 20);
        assert_eq!(line("TIMESTAMP false", &p), "10.0.0.1 > 10.0.0.2: truncated-tcp");
        let mut p = Packet::from_data(&ip[..10]);
        p.set_network_header(0, 10);
        assert_eq!(line("lbl, TIMESTAMP false", &p), "lbl: truncated-ip");
        // Header length annotation past the data.
        let mut p = Packet::from_data(&ip[..20]);
        p.set_network_header(0, 20);
        p.anno.net_len = 60;
        assert_eq!(line("TIMESTAMP false", &p), "10.0.0.1 > 10.0.0.2: truncated-tcp");
        // ICMP too short for anything, unreachable too short to quote.
        let mut icmp = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], IP_PROTO_ICMP, 64, 12);
        icmp[20] = 3;
        icmp[21] = 1;
        assert!(line("TIMESTAMP false", &framed(&icmp)).ends_with("icmp unreachable host truncated-icmp"));
        let mut p = Packet::from_data(&icmp[..21]);
        p.set_network_header(0, 20);
        assert!(line("TIMESTAMP false", &p).ends_with(": truncated-icmp"));
        // Random garbage with every protocol: no panic, whatever it prints.
        for proto in [IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_ICMP, 99] {
            for len in 0..70 {
                let mut g: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                if len > 9 {
                    g[0] = 0x4f;
                    g[9] = proto;
                }
                if len > 28 {
                    g[20] = 3;
                    g[21] = 3;
                }
                let mut p = Packet::from_data(&g);
                p.set_network_header(0, len.min(60));
                let mut s = String::new();
                printer("CONTENTS HEX, MAXLENGTH -1").opts.format(&mut s, &p);
                printer("PAYLOAD ASCII").opts.format(&mut s, &p);
            }
        }
    }

    #[test]
    fn contents_and_payload_dumps() {
        let mut ip = tcp(TH_ACK, 30);
        for (i, b) in ip[40..].iter_mut().enumerate() {
            *b = b'a' + i as u8;
        }
        ip[69] = 0x7f;
        let p = framed(&ip);
        let s = line("TIMESTAMP false, PAYLOAD ASCII", &p);
        assert!(s.ends_with("\n  abcdefgh ijklmnop qrstuvwx yz{|}."), "{s:?}");
        let s = line("TIMESTAMP false, CONTENTS HEX, MAXLENGTH 30", &p);
        let dump = s.split_once('\n').unwrap().1;
        assert_eq!(
            dump,
            "  00000000 00000000 00000000 00004500 00461c46 40004006\n  0a6a0a00 0001"
        );
        let s = line("TIMESTAMP false, PAYLOAD true, MAXLENGTH 2", &p);
        assert!(s.ends_with("\n  6162"), "{s:?}");
    }

    #[test]
    fn batch_output_skips_unmarked_packets_and_honours_active() {
        let path = std::env::temp_dir().join(format!("ipprint-test-{}.txt", std::process::id()));
        let mut e = printer(&format!("o, TIMESTAMP false, OUTFILE \"{}\"", path.display()));
        e.activate().unwrap();
        let mut b = Batch::new();
        b.push(framed(&tcp(TH_SYN, 0)));
        b.push(Packet::from_data(&tcp(TH_SYN, 0)));
        b.push(framed(&ipv4_packet([1, 1, 1, 1], [2, 2, 2, 2], 99, 64, 0)));
        e.simple_action(&mut b);
        assert_eq!(b.len(), 3);
        crate::testutil::write(&e.handlers(), "active", "false").unwrap();
        e.simple_action(&mut b);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            text,
            "o: 10.0.0.1.1234 > 10.0.0.2.80: S 1000:1001(1,54,40) win 512\no: 1.1.1.1 > 2.2.2.2: ip-proto-99\n"
        );
    }

    #[test]
    fn configuration_errors() {
        for config in ["CONTENTS BINARY", "PAYLOAD HEX, CONTENTS ASCII", "AGGREGATE true"] {
            let mut args = Args::parse_str("p :: IPPrint", config);
            let made = IPPrint::make(&mut args);
            assert!(made.is_none() || args.complete().is_err(), "{config}");
        }
    }
}
