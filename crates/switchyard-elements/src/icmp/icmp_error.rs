//! ICMPError: turns a packet that caused a problem into the ICMP error
//! that reports it. Each input packet is consumed; what leaves is a new
//! pooled packet (IP header, ICMP header, the start of the offending
//! datagram) or nothing, when RFC 1812 forbids an error or the rate limit
//! holds it back.

use crate::ip::ip_options::{self, AddrList, IPOPT_EOL, IPOPT_LSRR, IPOPT_SSRR};
use crate::util::parse_value;
use crate::wire::{self, ip, put16, put32, IpAddr, Ipv4, IP_PROTO_ICMP};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::handler::parse_in_range;
use switchyard_core::packet::now_ns;
use switchyard_core::{documented, downcast, Annotations, Args, Batch, Element, ElementClass, Handler, Packet};

documented! {
    /// Generates ICMP error packets about the packets it receives (Click's
    /// ICMPError).
    ///
    /// Each input packet is an IP packet whose network header annotation
    /// is set (CheckIPHeader sets it); the packet is consumed and, unless a
    /// rule below forbids it, an IP/ICMP error of type TYPE and code CODE
    /// leaves in its place. The error's IP source is SRC, its destination
    /// the offending packet's source, its TTL 200 and its identifier a
    /// counter (Click's values). Its payload is the offending packet's IP
    /// header and as much of the datagram as fits in MTU bytes (RFC 1812
    /// 4.3.2.3). The output's destination IP annotation is the error's
    /// destination, so the error can go back into the route lookup; unless
    /// SET_FIX_ANNO is false it also carries the fix-IP-source annotation,
    /// so that FixIPSrc rewrites its source to the address of the interface
    /// it leaves by.
    ///
    /// Type details, as in Click:
    /// - `parameterproblem` with code 0 (`erroratptr`): the pointer is the
    ///   packet's parameter-problem annotation, which IPGWOptions sets.
    /// - `redirect`: the gateway is the packet's destination IP annotation.
    /// - `unreachable` with code 4 (`needfrag`): the next-hop MTU is PMTU
    ///   (0 without it).
    /// - a packet with a loose or strict source route option gets an error
    ///   with the traversed part of that route, reversed (RFC 1812
    ///   4.3.2.6); a source-routed packet never gets a redirect (5.2.7.2).
    ///
    /// No error is sent (RFC 1812 4.3.2.7; counted in `suppressed`) about:
    /// an ICMP error (types 3, 4, 5, 11, 12) or an ICMP packet too short to
    /// tell; a packet to a broadcast or multicast IP address, or to one of
    /// BADADDRS; a packet that arrived as a link-level broadcast or
    /// multicast (packet type annotation); a packet whose source is zero,
    /// loopback, broadcast, multicast, class E, or one of BADADDRS; a
    /// fragment other than the first; a packet without a network header
    /// annotation or whose IP header is malformed.
    ///
    /// Switchyard additions: Click leaves rate limiting to a RatedSplitter
    /// after the element; here errors are limited by a token bucket of RATE
    /// errors a second and BURST at once (RFC 1812 4.3.2.8 asks routers to
    /// limit them), and errors held back are counted in `rate_limited`.
    /// Error names are also accepted with hyphens (`time-exceeded`).
    /// USE_FIX_ANNO, the spelling of Click's documentation, is accepted
    /// besides SET_FIX_ANNO, the keyword Click reads. MTU must be 68 to
    /// 65535 (the smallest IPv4 MTU, room for any header with options).
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `SRC` (positional or keyword, mandatory): the errors' IP source.
    /// - `TYPE` (positional or keyword, mandatory): an ICMP error type, a
    ///   number or `unreachable` (3), `sourcequench` (4), `redirect` (5),
    ///   `timeexceeded` (11), `parameterproblem` (12).
    /// - `CODE` (positional or keyword): a number or a name for TYPE:
    ///   `net`, `host`, `protocol`, `port`, `needfrag`, `srcroutefail`,
    ///   `netunknown`, `hostunknown`, `isolated`, `netprohibited`,
    ///   `hostprohibited`, `tosnet`, `toshost`, `filterprohibited`,
    ///   `hostprecedence`, `precedencecutoff` for unreachable; `net`,
    ///   `host`, `tosnet`, `toshost` for redirect; `transit`, `reassembly`
    ///   for timeexceeded; `erroratptr`, `missingopt`, `length` for
    ///   parameterproblem. Default 0.
    /// - `BADADDRS` (positional or keyword): space-separated addresses
    ///   never answered, as source or destination (usually the subnet
    ///   broadcast addresses).
    /// - `MTU`: the largest error packet made. Default 576.
    /// - `PMTU`: the next-hop MTU reported in fragmentation-needed errors.
    ///   Default 0.
    /// - `SET_FIX_ANNO` (or `USE_FIX_ANNO`): set the fix-IP-source
    ///   annotation. Default true.
    /// - `RATE`: errors allowed per second; 0 for no limit. Default 1000
    ///   (Linux's `icmp_msgs_per_sec`).
    /// - `BURST`: errors allowed at once. Default 50 (Linux's
    ///   `icmp_msgs_burst`).
    ///
    /// # Handlers
    /// - `src` (read/write): SRC.
    /// - `mtu` (read/write): MTU.
    /// - `pmtu` (read/write): PMTU.
    /// - `sent` (read): errors generated.
    /// - `suppressed` (read): packets that RFC 1812 forbids answering.
    /// - `rate_limited` (read): errors the rate limit held back.
    ///
    /// # Example
    /// ```text
    /// dt :: DecIPTTL;
    /// dt[1] -> ICMPError(10.0.0.1, timeexceeded) -> rt;
    /// fr :: IPFragmenter(1500);
    /// fr[1] -> ICMPError(10.0.0.1, unreachable, needfrag, PMTU 1500) -> rt;
    /// ```
    pub struct ICMPError {
        ty: u8,
        code: u8,
        bad_addrs: Vec<u32>,
        fix_anno: bool,
        shared: Arc<Shared>,
        bucket: TokenBucket,
        next_id: u16,
    }
}

/// What the handlers see and steer.
struct Shared {
    src: AtomicU32,
    mtu: AtomicU32,
    pmtu: AtomicU32,
    sent: AtomicU64,
    suppressed: AtomicU64,
    rate_limited: AtomicU64,
}

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_UNREACH: u8 = 3;
pub const ICMP_SOURCE_QUENCH: u8 = 4;
pub const ICMP_REDIRECT: u8 = 5;
pub const ICMP_ECHO: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;
pub const ICMP_UNREACH_NEEDFRAG: u8 = 4;
pub const ICMP_PARAM_PROBLEM_ERRATPTR: u8 = 0;

/// Length of an ICMP header (type, code, checksum, four type-specific bytes).
pub const ICMP_HEADER_LEN: usize = 8;

/// The TTL Click gives the errors it makes.
const ERROR_TTL: u8 = 200;
const MIN_MTU: u32 = 68;

/// Looks `word` up in `table`, ignoring hyphens and case (`time-exceeded`
/// is `timeexceeded`), or reads it as a number.
fn lookup_name(table: &[(&str, u8)], word: &str) -> Option<u8> {
    if let Some(n) = <u8 as switchyard_core::FromArg>::from_arg(word) {
        return Some(n);
    }
    let squash = |s: &str| s.chars().filter(|&c| c != '-' && c != '_').collect::<String>();
    let w = squash(word).to_ascii_lowercase();
    table.iter().find(|(n, _)| squash(n) == w).map(|&(_, v)| v)
}

/// An ICMP type from its number or name.
pub fn icmp_type(word: &str) -> Option<u8> {
    lookup_name(super::names::TYPES, word)
}

/// An ICMP code for type `ty` from its number or name.
pub fn icmp_code(ty: u8, word: &str) -> Option<u8> {
    lookup_name(super::names::codes(ty), word)
}

/// True for the ICMP types that report errors, which never get an error
/// back (Click's list).
pub fn is_error_type(ty: u8) -> bool {
    matches!(
        ty,
        ICMP_UNREACH | ICMP_SOURCE_QUENCH | ICMP_REDIRECT | ICMP_TIME_EXCEEDED | ICMP_PARAM_PROBLEM
    )
}

/// A token bucket refilled from the clock once per batch.
struct TokenBucket {
    /// Tokens per second; 0 means no limit.
    rate: f64,
    burst: f64,
    tokens: f64,
    /// The last refill, in [`now_ns`] nanoseconds: the clock the errors'
    /// timestamps read, so one read serves both. A step back refills
    /// nothing; a step forward at most fills the bucket.
    last: Option<u64>,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: None,
        }
    }

    fn refill(&mut self, now: u64) {
        if let Some(last) = self.last {
            let dt = now.saturating_sub(last) as f64 / 1e9;
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.last = Some(now);
    }

    fn take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

/// Why no error came out of a packet.
enum NoError {
    Suppressed,
    RateLimited,
}

/// Per-batch copies of the handler-steered settings.
#[derive(Clone, Copy)]
struct Params {
    src: u32,
    mtu: usize,
    pmtu: u16,
    now_ns: u64,
}

impl ICMPError {
    pub const CLASS: ElementClass = ElementClass {
        name: "ICMPError",
        ports: "1/1",
        processing: "a/a",
        doc: ICMPError::DOC,
        factory: ICMPError::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let src = args.read_mp::<IpAddr>("SRC");
        let ty_word = args.read_mp::<String>("TYPE");
        let code_word = args.read_p::<String>("CODE");
        let bad_addrs = args.read_p::<AddrList>("BADADDRS").map_or_else(Vec::new, |l| l.0);
        let mtu = args.read::<u32>("MTU").unwrap_or(576);
        let pmtu = args.read::<u16>("PMTU").unwrap_or(0);
        let use_fix = args.read::<bool>("USE_FIX_ANNO");
        let fix_anno = args.read::<bool>("SET_FIX_ANNO").or(use_fix).unwrap_or(true);
        let rate = args.read::<u32>("RATE").unwrap_or(1000);
        let burst = args.read::<u32>("BURST").unwrap_or(50);
        let mut ty = None;
        if let Some(w) = &ty_word {
            match icmp_type(w) {
                None => args.error(Some(args.span_of("TYPE")), format!("TYPE: unknown ICMP type '{w}'")),
                Some(t) if !is_error_type(t) => args.error(
                    Some(args.span_of("TYPE")),
                    format!("ICMP type {t} is not an error type"),
                ),
                Some(t) => ty = Some(t),
            }
        }
        let mut code = None;
        if let Some(t) = ty {
            let w = code_word.as_deref().unwrap_or("0");
            match icmp_code(t, w) {
                Some(c) => code = Some(c),
                None => args.error(
                    Some(args.span_of("CODE")),
                    format!("CODE: '{w}' is not an ICMP code for type {t}"),
                ),
            }
        }
        if !(MIN_MTU..=65535).contains(&mtu) {
            args.error(Some(args.span_of("MTU")), format!("MTU must be {MIN_MTU} to 65535"));
        }
        if rate > 0 && burst == 0 {
            args.error(Some(args.span_of("BURST")), "BURST must be at least 1 when RATE is set");
        }
        let (Some(src), Some(ty), Some(code)) = (src, ty, code) else {
            return None;
        };
        if args.has_errors() {
            return None;
        }
        Some(Box::new(ICMPError {
            ty,
            code,
            bad_addrs,
            fix_anno,
            shared: Arc::new(Shared {
                src: AtomicU32::new(src.0),
                mtu: AtomicU32::new(mtu),
                pmtu: AtomicU32::new(u32::from(pmtu)),
                sent: AtomicU64::new(0),
                suppressed: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
            }),
            bucket: TokenBucket::new(rate, burst),
            next_id: 1,
        }))
    }

    /// Click's `unicast`: not the limited broadcast, not multicast, not a
    /// configured bad address.
    fn unicast(&self, a: u32) -> bool {
        a != u32::MAX && a & 0xf000_0000 != 0xe000_0000 && !self.bad_addrs.contains(&a)
    }

    /// RFC 1812 5.3.7: a source an error may be sent back to.
    fn valid_source(&self, a: u32) -> bool {
        let net = a >> 24;
        self.unicast(a) && net != 0 && net != 127 && net & 0xf0 != 0xf0
    }

    /// Builds the error about `p`, or says why there is none.
    fn error_for(&mut self, p: &Packet, prm: Params) -> Result<Packet, NoError> {
        let off = p.network_offset().ok_or(NoError::Suppressed)?;
        let orig = &p.data()[off..];
        let iph = Ipv4::new_checked(orig).map_err(|_| NoError::Suppressed)?;
        if iph.proto() == IP_PROTO_ICMP {
            let payload = iph.payload();
            if payload.len() < 4 || is_error_type(payload[0]) {
                return Err(NoError::Suppressed);
            }
        }
        let pt = p.anno.pkt_type;
        if !self.unicast(iph.dst())
            || pt == Annotations::BROADCAST
            || pt == Annotations::MULTICAST
            || !self.valid_source(iph.src())
            || iph.is_later_fragment()
        {
            return Err(NoError::Suppressed);
        }
        let mut route = source_route(iph.header());
        if let Some((at, opt)) = route {
            if self.ty == ICMP_REDIRECT {
                return Err(NoError::Suppressed);
            }
            // An error about the source route itself goes back without it
            // (RFC 1812 4.3.2.6).
            let ptr = usize::from(p.anno.param_off);
            if self.ty == ICMP_PARAM_PROBLEM
                && self.code == ICMP_PARAM_PROBLEM_ERRATPTR
                && (at..at + opt.len()).contains(&ptr)
            {
                route = None;
            }
        }
        if !self.bucket.take() {
            return Err(NoError::RateLimited);
        }

        // The reversed route takes `pointer - 1` option bytes plus one EOL
        // byte: a multiple of 4, since a valid pointer is.
        let opt_area = route.map_or(0, |(_, o)| usize::from(o[2]));
        let hl = ip::MIN_LEN + opt_area;
        let room = prm.mtu.saturating_sub(hl + ICMP_HEADER_LEN);
        let quoted = iph.total_len().min(room);
        let total = hl + ICMP_HEADER_LEN + quoted;

        let mut q = Packet::with_len(total);
        let d = q.data_mut();
        d[0] = 0x40 | (hl / 4) as u8;
        d[ip::TOS] = 0;
        put16(d, ip::LEN, total as u16);
        put16(d, ip::ID, self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        put16(d, ip::FRAG, 0);
        d[ip::TTL] = ERROR_TTL;
        d[ip::PROTO] = IP_PROTO_ICMP;
        put16(d, ip::SUM, 0);
        put32(d, ip::SRC, prm.src);
        put32(d, ip::DST, iph.src());
        if let Some((_, o)) = route {
            let ptr = usize::from(o[2]);
            let out = &mut d[ip::MIN_LEN..hl];
            out[0] = o[0];
            out[1] = (ptr - 1) as u8;
            out[2] = 4;
            // The hops already passed are o[3..ptr-1]; they go back in
            // reverse order.
            for (i, hop) in o[3..ptr - 1].chunks_exact(4).rev().enumerate() {
                out[3 + 4 * i..7 + 4 * i].copy_from_slice(hop);
            }
            out[ptr - 1] = IPOPT_EOL;
        }
        wire::set_ip_checksum(d);

        let icmp = &mut d[hl..];
        icmp[0] = self.ty;
        icmp[1] = self.code;
        icmp[2..8].fill(0);
        match (self.ty, self.code) {
            (ICMP_PARAM_PROBLEM, ICMP_PARAM_PROBLEM_ERRATPTR) => icmp[4] = p.anno.param_off,
            (ICMP_REDIRECT, _) => put32(icmp, 4, p.anno.dst_ip),
            (ICMP_UNREACH, ICMP_UNREACH_NEEDFRAG) => put16(icmp, 6, prm.pmtu),
            _ => {}
        }
        icmp[ICMP_HEADER_LEN..].copy_from_slice(&orig[..quoted]);
        let c = wire::checksum(icmp);
        put16(icmp, 2, c);

        q.set_network_header(0, hl);
        q.anno.dst_ip = iph.src();
        q.anno.timestamp_ns = prm.now_ns;
        if self.fix_anno {
            q.anno.flags |= Annotations::FIX_IP_SRC;
        }
        Ok(q)
    }
}

/// The first well-formed loose or strict source route option in header
/// `h` (with its options), as its offset in the header and its bytes.
/// Its pointer is checked: at least 4, a multiple of 4, inside the option.
fn source_route(h: &[u8]) -> Option<(usize, &[u8])> {
    for opt in ip_options::options(h) {
        let opt = opt.ok()?;
        let (o, len) = (opt.bytes, opt.bytes.len());
        if (opt.kind() == IPOPT_LSRR || opt.kind() == IPOPT_SSRR) && len >= 3 {
            let ptr = usize::from(o[2]);
            if ptr >= 4 && ptr % 4 == 0 && ptr <= len + 1 {
                return Some((opt.at, o));
            }
        }
    }
    None
}

impl Element for ICMPError {
    fn simple_action(&mut self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let s = &self.shared;
        let now = now_ns();
        let prm = Params {
            src: s.src.load(Relaxed),
            mtu: s.mtu.load(Relaxed).clamp(MIN_MTU, 65535) as usize,
            pmtu: s.pmtu.load(Relaxed).min(65535) as u16,
            now_ns: now,
        };
        if self.bucket.rate > 0.0 {
            self.bucket.refill(now);
        }
        let input = std::mem::take(batch);
        let (mut suppressed, mut limited) = (0u64, 0u64);
        for p in input.iter() {
            match self.error_for(p, prm) {
                Ok(q) => batch.push(q),
                Err(NoError::Suppressed) => suppressed += 1,
                Err(NoError::RateLimited) => limited += 1,
            }
        }
        drop(input);
        let s = &self.shared;
        s.sent.fetch_add(batch.len() as u64, Relaxed);
        if suppressed > 0 {
            s.suppressed.fetch_add(suppressed, Relaxed);
        }
        if limited > 0 {
            s.rate_limited.fetch_add(limited, Relaxed);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let s = &self.shared;
        let (a, b, c, d, e, f) = (s.clone(), s.clone(), s.clone(), s.clone(), s.clone(), s.clone());
        let (g, h, i) = (s.clone(), s.clone(), s.clone());
        vec![
            Handler::read_write(
                "src",
                move || IpAddr(a.src.load(Relaxed)).to_string(),
                move |v| {
                    b.src.store(parse_value::<IpAddr>(v)?.0, Relaxed);
                    Ok(())
                },
            ),
            Handler::read_write(
                "mtu",
                move || c.mtu.load(Relaxed).to_string(),
                move |v| {
                    let m = parse_in_range(v, i64::from(MIN_MTU)..=65535)?;
                    d.mtu.store(m as u32, Relaxed);
                    Ok(())
                },
            ),
            Handler::read_write(
                "pmtu",
                move || e.pmtu.load(Relaxed).to_string(),
                move |v| {
                    let m = parse_in_range(v, 0..=65535)?;
                    f.pmtu.store(m as u32, Relaxed);
                    Ok(())
                },
            ),
            Handler::read_only("sent", move || g.sent.load(Relaxed).to_string()),
            Handler::read_only("suppressed", move || h.suppressed.load(Relaxed).to_string()),
            Handler::read_only("rate_limited", move || i.rate_limited.load(Relaxed).to_string()),
        ]
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<ICMPError>(old) {
            for (new, old) in [
                (&self.shared.sent, &old.shared.sent),
                (&self.shared.suppressed, &old.shared.suppressed),
                (&self.shared.rate_limited, &old.shared.rate_limited),
            ] {
                new.store(old.load(Relaxed), Relaxed);
            }
            self.next_id = old.next_id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::ip_options::IPOPT_NOP;
    use crate::testutil::{self, batch, marked};
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{be16, be32, IP_PROTO_UDP};
    use proptest::prelude::*;

    fn element(config: &str) -> ICMPError {
        *downcast::<ICMPError>(testutil::element(ICMPError::CLASS, config)).expect("ICMPError")
    }

    fn config_error(config: &str) -> String {
        let mut args = Args::parse_str("e :: ICMPError", config);
        let e = ICMPError::make(&mut args);
        let r = args.complete();
        assert!(e.is_none() || r.is_err(), "{config} should fail");
        r.unwrap_err()[0].message.clone()
    }

    fn read(e: &ICMPError, name: &str) -> String {
        testutil::read(&e.handlers(), name)
    }

    fn write(e: &ICMPError, name: &str, v: &str) -> Result<(), String> {
        testutil::write(&e.handlers(), name, v)
    }

    fn run(e: &mut ICMPError, packets: Vec<Packet>) -> Vec<Packet> {
        let mut b = batch(packets);
        e.simple_action(&mut b);
        b.drain().collect()
    }

    fn udp(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
        let mut v = ipv4_packet(src, dst, IP_PROTO_UDP, 1, payload);
        for (i, b) in v[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        v
    }

    /// Checks the invariants every error holds and returns (ip header
    /// length, ICMP message).
    fn check_error(q: &Packet) -> (usize, Vec<u8>) {
        let d = q.data();
        let iph = Ipv4::new_checked(d).expect("valid IP");
        assert!(iph.checksum_ok(), "IP checksum");
        assert_eq!(iph.total_len(), d.len());
        assert_eq!(iph.proto(), IP_PROTO_ICMP);
        assert_eq!(iph.ttl(), ERROR_TTL);
        assert_eq!(iph.frag(), 0);
        let icmp = iph.payload();
        assert_eq!(wire::checksum(icmp), 0, "ICMP checksum");
        assert_eq!(q.network_offset(), Some(0));
        assert_eq!(q.anno.dst_ip, iph.dst());
        (iph.header_len(), icmp.to_vec())
    }

    #[test]
    fn time_exceeded_bytes() {
        let mut e = element("10.0.0.1, timeexceeded");
        let orig = udp([192, 168, 1, 7], [10, 9, 9, 9], 40);
        let mut p = marked(&orig);
        p.anno.paint = 3;
        let out = run(&mut e, vec![p]);
        assert_eq!(out.len(), 1);
        let q = &out[0];
        let (hl, icmp) = check_error(q);
        let d = q.data();
        assert_eq!(hl, 20);
        assert_eq!(be32(d, ip::SRC), 0x0a000001);
        assert_eq!(be32(d, ip::DST), 0xc0a80107);
        assert_eq!(&icmp[..2], &[11, 0]);
        assert_eq!(&icmp[4..8], &[0, 0, 0, 0]);
        // The whole 60-byte datagram fits in 576 bytes: it is all quoted.
        assert_eq!(&icmp[8..], &orig[..]);
        assert_eq!(d.len(), 20 + 8 + 60);
        assert_ne!(q.anno.flags & Annotations::FIX_IP_SRC, 0);
        assert_eq!(q.anno.paint, 0);
        assert_eq!(read(&e, "sent"), "1");
    }

    #[test]
    fn quote_is_cut_at_mtu_and_ids_advance() {
        let mut e = element("10.0.0.1, 11, 0");
        let big = udp([192, 168, 1, 7], [10, 9, 9, 9], 1400);
        let out = run(&mut e, vec![marked(&big), marked(&big)]);
        assert_eq!(out.len(), 2);
        for q in &out {
            check_error(q);
            assert_eq!(q.len(), 576);
            assert_eq!(&q.data()[28..], &big[..548]);
        }
        assert_eq!(be16(out[1].data(), ip::ID), be16(out[0].data(), ip::ID).wrapping_add(1));
        let mut e = element("10.0.0.1, 11, 0, MTU 100, SET_FIX_ANNO false");
        let out = run(&mut e, vec![marked(&big)]);
        assert_eq!(out[0].len(), 100);
        assert_eq!(out[0].anno.flags & Annotations::FIX_IP_SRC, 0);
        check_error(&out[0]);
    }

    #[test]
    fn needfrag_reports_pmtu_and_defaults_to_zero() {
        let orig = udp([192, 168, 1, 7], [10, 9, 9, 9], 1480);
        let mut e = element("10.0.0.1, unreachable, needfrag, PMTU 1400");
        let out = run(&mut e, vec![marked(&orig)]);
        let (_, icmp) = check_error(&out[0]);
        assert_eq!(&icmp[..2], &[3, 4]);
        assert_eq!(&icmp[4..8], &[0, 0, 0x05, 0x78]);
        let mut e = element("10.0.0.1, 3, 4");
        let out = run(&mut e, vec![marked(&orig)]);
        let (_, icmp) = check_error(&out[0]);
        assert_eq!(&icmp[4..8], &[0, 0, 0, 0]);
        write(&e, "pmtu", "576").unwrap();
        assert_eq!(read(&e, "pmtu"), "576");
        let out = run(&mut e, vec![marked(&orig)]);
        let (_, icmp) = check_error(&out[0]);
        assert_eq!(be16(&icmp, 6), 576);
    }

    #[test]
    fn parameter_problem_pointer_and_redirect_gateway_come_from_annotations() {
        let orig = udp([192, 168, 1, 7], [10, 9, 9, 9], 8);
        let mut e = element("10.0.0.1, parameterproblem");
        let mut p = marked(&orig);
        p.anno.param_off = 22;
        let out = run(&mut e, vec![p]);
        let (_, icmp) = check_error(&out[0]);
        assert_eq!(&icmp[..2], &[12, 0]);
        assert_eq!(&icmp[4..8], &[22, 0, 0, 0]);
        let mut e = element("10.0.0.1, redirect, host");
        let mut p = marked(&orig);
        p.anno.dst_ip = 0x0a000002;
        let out = run(&mut e, vec![p]);
        let (_, icmp) = check_error(&out[0]);
        assert_eq!(&icmp[..2], &[5, 1]);
        assert_eq!(&icmp[4..8], &[10, 0, 0, 2]);
        // The error goes to the offending packet's source, whatever the
        // gateway annotation said.
        assert_eq!(out[0].anno.dst_ip, 0xc0a80107);
    }

    #[test]
    fn rfc1812_never_answers() {
        let mut e = element("10.0.0.1, timeexceeded, BADADDRS 10.255.255.255 192.168.1.255");
        let mut cases: Vec<(&str, Packet)> = Vec::new();
        for ty in [3u8, 4, 5, 11, 12] {
            let mut v = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_ICMP, 1, 36);
            v[20] = ty;
            cases.push(("icmp error", marked(&v)));
        }
        let short_icmp = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_ICMP, 1, 3);
        cases.push(("short icmp", marked(&short_icmp)));
        for dst in [[255, 255, 255, 255], [224, 0, 0, 5], [10, 255, 255, 255]] {
            cases.push(("bad dst", marked(&udp([192, 168, 1, 7], dst, 8))));
        }
        for src in [
            [0, 0, 0, 0],
            [0, 1, 2, 3],
            [127, 0, 0, 1],
            [255, 255, 255, 255],
            [239, 1, 1, 1],
            [240, 0, 0, 1],
            [192, 168, 1, 255],
        ] {
            cases.push(("bad src", marked(&udp(src, [10, 9, 9, 9], 8))));
        }
        for t in [Annotations::BROADCAST, Annotations::MULTICAST] {
            let mut p = marked(&udp([192, 168, 1, 7], [10, 9, 9, 9], 8));
            p.anno.pkt_type = t;
            cases.push(("link broadcast", p));
        }
        let mut later = udp([192, 168, 1, 7], [10, 9, 9, 9], 8);
        put16(&mut later, ip::FRAG, ip::MF | 3);
        wire::set_ip_checksum(&mut later);
        cases.push(("later fragment", marked(&later)));
        let unmarked = Packet::from_data(&udp([192, 168, 1, 7], [10, 9, 9, 9], 8));
        cases.push(("no network header", unmarked));
        let n = cases.len();
        for (why, p) in cases {
            assert!(run(&mut e, vec![p]).is_empty(), "{why}");
        }
        assert_eq!(read(&e, "suppressed"), n.to_string());
        assert_eq!(read(&e, "sent"), "0");

        // What may be answered: echo requests, first fragments, unicast.
        let mut ok: Vec<Packet> = Vec::new();
        for ty in [0u8, 8, 13] {
            let mut v = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_ICMP, 1, 36);
            v[20] = ty;
            ok.push(marked(&v));
        }
        let mut first = udp([192, 168, 1, 7], [10, 9, 9, 9], 8);
        put16(&mut first, ip::FRAG, ip::MF);
        wire::set_ip_checksum(&mut first);
        ok.push(marked(&first));
        let mut p = marked(&udp([192, 168, 1, 7], [10, 9, 9, 9], 8));
        p.anno.pkt_type = Annotations::OTHERHOST;
        ok.push(p);
        assert_eq!(run(&mut e, ok).len(), 5);
    }

    #[test]
    fn malformed_input_never_panics() {
        let mut e = element("10.0.0.1, parameterproblem");
        let good = udp([192, 168, 1, 7], [10, 9, 9, 9], 8);
        let mut frames: Vec<Vec<u8>> = vec![vec![], vec![0x45], good[..19].to_vec()];
        let mut v6 = good.clone();
        v6[0] = 0x60;
        frames.push(v6);
        let mut ihl = good.clone();
        ihl[0] = 0x43;
        frames.push(ihl);
        let mut long = good.clone();
        put16(&mut long, ip::LEN, 1500);
        frames.push(long);
        let mut opts = good.clone();
        opts[0] = 0x4f;
        frames.push(opts);
        let packets = frames
            .iter()
            .map(|f| {
                let mut p = Packet::from_data(f);
                p.set_network_header(0, 20);
                p.anno.param_off = 255;
                p
            })
            .collect();
        assert!(run(&mut e, packets).is_empty());
        assert_eq!(read(&e, "suppressed"), "7");
    }

    #[test]
    fn rate_limit_holds_back_beyond_the_burst() {
        let mut e = element("10.0.0.1, timeexceeded, RATE 1, BURST 3");
        let packets = (0..10)
            .map(|_| marked(&udp([192, 168, 1, 7], [10, 9, 9, 9], 8)))
            .collect();
        assert_eq!(run(&mut e, packets).len(), 3);
        assert_eq!(read(&e, "rate_limited"), "7");
        assert_eq!(read(&e, "sent"), "3");
        // Suppressed packets take no token.
        let bad = marked(&udp([127, 0, 0, 1], [10, 9, 9, 9], 8));
        assert!(run(&mut e, vec![bad]).is_empty());
        assert_eq!(read(&e, "rate_limited"), "7");
        let mut e = element("10.0.0.1, timeexceeded, RATE 0");
        let packets = (0..200)
            .map(|_| marked(&udp([192, 168, 1, 7], [10, 9, 9, 9], 8)))
            .collect();
        assert_eq!(run(&mut e, packets).len(), 200);
    }

    #[test]
    fn bucket_refills_with_time() {
        let mut b = TokenBucket::new(10, 2);
        let t0 = 1_700_000_000_000_000_000u64;
        b.refill(t0);
        assert!(b.take() && b.take() && !b.take());
        b.refill(t0 + 150_000_000);
        assert!(b.take() && !b.take());
        b.refill(t0 + 10_000_000_000);
        assert!(b.take() && b.take() && !b.take());
        // A clock stepped back refills nothing.
        b.refill(t0);
        assert!(!b.take());
    }

    #[test]
    fn source_route_is_reversed_and_blocks_redirects() {
        // LSRR with two hops passed (pointer 12) and one to go.
        let mut v = vec![0u8; 24 + 16 + 8];
        v[0] = 0x4a; // 40-byte header
        put16(&mut v, ip::LEN, 48);
        v[ip::TTL] = 1;
        v[ip::PROTO] = IP_PROTO_UDP;
        v[12..16].copy_from_slice(&[192, 168, 1, 7]);
        v[16..20].copy_from_slice(&[10, 9, 9, 9]);
        v[20] = IPOPT_NOP;
        v[21..36].copy_from_slice(&[IPOPT_LSRR, 15, 12, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
        v[36..40].copy_from_slice(&[IPOPT_EOL, 0, 0, 0]);
        wire::set_ip_checksum(&mut v);
        let mut e = element("10.0.0.1, timeexceeded");
        let out = run(&mut e, vec![marked(&v)]);
        let (hl, icmp) = check_error(&out[0]);
        assert_eq!(hl, 32);
        let d = out[0].data();
        assert_eq!(&d[20..32], &[IPOPT_LSRR, 11, 4, 2, 2, 2, 2, 1, 1, 1, 1, IPOPT_EOL]);
        assert_eq!(&icmp[8..], &v[..]);
        let mut e = element("10.0.0.1, redirect, host");
        assert!(run(&mut e, vec![marked(&v)]).is_empty());
        // A parameter problem about the route itself is sent without it.
        let mut e = element("10.0.0.1, parameterproblem");
        let mut p = marked(&v);
        p.anno.param_off = 23;
        let out = run(&mut e, vec![p]);
        let (hl, icmp) = check_error(&out[0]);
        assert_eq!(hl, 20);
        assert_eq!(icmp[4], 23);
        // A malformed route option (pointer not a multiple of 4) is ignored.
        v[23] = 13;
        wire::set_ip_checksum(&mut v);
        let mut e = element("10.0.0.1, timeexceeded");
        let (hl, _) = check_error(&run(&mut e, vec![marked(&v)])[0]);
        assert_eq!(hl, 20);
    }

    #[test]
    fn names_numbers_and_bad_configs() {
        assert_eq!(icmp_type("time-exceeded"), Some(11));
        assert_eq!(icmp_type("timeexceeded"), Some(11));
        assert_eq!(icmp_type("echo-reply"), Some(0));
        assert_eq!(icmp_type("12"), Some(12));
        assert_eq!(icmp_code(3, "needfrag"), Some(4));
        assert_eq!(icmp_code(11, "transit"), Some(0));
        assert_eq!(icmp_code(5, "host"), Some(1));
        assert_eq!(icmp_code(12, "erroratptr"), Some(0));
        assert_eq!(icmp_code(11, "needfrag"), None);
        let e = element("SRC 10.0.0.1, TYPE parameter-problem, CODE length");
        assert_eq!((e.ty, e.code), (12, 2));
        let e = element("10.0.0.1, 3, 1, 10.0.0.255 10.255.255.255");
        assert_eq!(e.bad_addrs, vec![0x0a0000ff, 0x0affffff]);
        let e = element("10.0.0.1, 11, USE_FIX_ANNO false");
        assert!(!e.fix_anno);
        assert_eq!(read(&e, "src"), "10.0.0.1");
        write(&e, "src", "10.0.0.9").unwrap();
        assert_eq!(read(&e, "src"), "10.0.0.9");
        assert!(write(&e, "src", "10.0.0").is_err());
        assert!(write(&e, "mtu", "20").is_err());
        assert!(config_error("10.0.0.1, echo").contains("ICMP type 8 is not an error type"));
        assert!(config_error("10.0.0.1, frob").contains("unknown ICMP type"));
        assert!(config_error("10.0.0.1, 3, bogus").contains("not an ICMP code"));
        assert!(config_error("10.0.0.1, 3, 256").contains("not an ICMP code"));
        assert!(config_error("10.0.0.1").contains("missing mandatory argument TYPE"));
        assert!(config_error("10.0.0.1, 3, 1, MTU 40").contains("MTU"));
        assert!(config_error("10.0.0.1, 3, 1, 10.0.0.300").contains("BADADDRS"));
    }

    proptest! {
        #[test]
        fn checksums_equal_full_recomputation(
            payload in proptest::collection::vec(any::<u8>(), 0..1600),
            src in 0x0100_0000u32..0x7f00_0000,
            ty in prop::sample::select(vec![3u8, 4, 5, 11, 12]),
            code in 0u8..5,
            pmtu in any::<u16>(),
            anno_ptr in any::<u8>(),
        ) {
            let mut e = element(&format!("10.0.0.1, {ty}, {code}, PMTU {pmtu}, RATE 0"));
            let mut v = ipv4_packet(src.to_be_bytes(), [10, 9, 9, 9], IP_PROTO_UDP, 1, payload.len());
            v[20..].copy_from_slice(&payload);
            let mut p = marked(&v);
            p.anno.param_off = anno_ptr;
            let out = run(&mut e, vec![p]);
            prop_assert_eq!(out.len(), 1);
            let d = out[0].data().to_vec();
            let mut fresh = d.clone();
            wire::set_ip_checksum(&mut fresh);
            prop_assert_eq!(be16(&fresh, ip::SUM), be16(&d, ip::SUM));
            let mut icmp = d[20..].to_vec();
            put16(&mut icmp, 2, 0);
            prop_assert_eq!(wire::checksum(&icmp), be16(&d, 22));
            prop_assert!(d.len() <= 576);
        }
    }
}
