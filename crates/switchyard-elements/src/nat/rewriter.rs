//! The core IPRewriter, TCPRewriter and UDPRewriter share (Click's
//! `IPRewriterBase` and the three `push` paths): configuration, the
//! per-packet path, ICMP error translation, handlers and hot reload.
//!
//! A batch is handled under one lock of the mapping table (the handlers
//! take the same lock, never the data path more than once a batch), with
//! one clock read. Each packet is looked up by its flow; a known flow is
//! rewritten by its mapping and goes to that mapping's output; an unknown
//! one is handled by its input's spec, which may make a new mapping. The
//! batch then leaves whole if every packet goes one way, else split by
//! output.

use super::flow::{apply_delta, FlowId, Key};
use super::pattern::{Pattern, Spec};
use super::table::{self, Flow, Table, Timing};
use crate::icmp::icmp_error::is_error_type;
use crate::rng::Rng;
use crate::standard::scatter::Scatter;
use crate::wire::{
    self, be16, be32, ip, put16, put32, update16, update32, Ipv4, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP,
};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use switchyard_core::{Args, Batch, Context, Handler, Packet, PortCount, PortInfo, Scope, Seconds};

/// Which of the three elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// IPRewriter: TCP and UDP, each in its own table.
    Ip,
    /// TCPRewriter: TCP only.
    Tcp,
    /// UDPRewriter: UDP and TCP in one table, both with UDP's timeouts.
    Udp,
}

/// The table (map id) IPRewriter keeps TCP flows in, and UDP flows.
pub const MAP_TCP: u8 = 0;
pub const MAP_UDP: u8 = 1;

impl Variant {
    /// The table a protocol's flows go in, if the element handles it.
    #[inline]
    fn map_of(self, proto: u8) -> Option<u8> {
        match (self, proto) {
            (Variant::Ip, IP_PROTO_TCP) | (Variant::Tcp, IP_PROTO_TCP) => Some(MAP_TCP),
            (Variant::Ip, IP_PROTO_UDP) => Some(MAP_UDP),
            (Variant::Udp, IP_PROTO_TCP | IP_PROTO_UDP) => Some(0),
            _ => None,
        }
    }

    /// TCP connection state is tracked (UDPRewriter treats TCP as UDP).
    #[inline]
    fn tracks_tcp(self, proto: u8) -> bool {
        proto == IP_PROTO_TCP && self != Variant::Udp
    }
}

const DROP: u32 = u32::MAX;

/// Why packets were dropped, as `drop_details` lists them.
const REASONS: [&str; 7] = [
    "bad IP header",
    "not TCP or UDP",
    "later fragments",
    "bad transport header",
    "dropped by input spec",
    "mapping failures",
    "unmapped ICMP errors",
];
const BAD_IP: usize = 0;
const NOT_TCP_UDP: usize = 1;
const LATER_FRAGMENT: usize = 2;
const BAD_TRANSPORT: usize = 3;
const BY_SPEC: usize = 4;
const FAILURE: usize = 5;
const UNMAPPED_ICMP: usize = 6;

/// TCP state bits (Click's `TCPFlow` flags): FIN seen forward / in reply,
/// payload seen forward / in reply.
const FWD_DONE: u8 = 1;
const BOTH_DONE: u8 = 3;
const FWD_DATA: u8 = 4;
const BOTH_DATA: u8 = 12;

const TH_FIN: u8 = 0x01;
const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;

/// Milliseconds on a process-wide monotonic clock, so that a table
/// handed over at a reload keeps meaning the same times. The rewriter's
/// time: the data path reads it once per batch and passes it down.
pub fn real_ms() -> u64 {
    // The router's clock, so NAT timeouts follow simulated time too.
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let now = switchyard_core::clock::now();
    now.saturating_duration_since(*EPOCH.get_or_init(|| now)).as_millis() as u64
}

#[derive(Default)]
struct Stats {
    drops: [AtomicU64; 7],
}

/// What the data path and the handlers share.
pub struct Shared {
    table: Mutex<Table>,
    stats: Stats,
}

fn lock(t: &Mutex<Table>) -> MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// A packet's headers, read once through the checked view.
struct Info {
    hl: usize,
    total: usize,
    proto: u8,
    later_fragment: bool,
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    tcp_off: usize,
}

fn parse(b: &[u8]) -> Option<Info> {
    let v = Ipv4::new_checked(b).ok()?;
    let l4 = v.payload();
    let (sport, dport) = match l4 {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    };
    let (tcp_off, tcp_flags) = match l4.get(12..14) {
        Some(&[o, f]) => (usize::from(o >> 4) * 4, f),
        _ => (0, 0),
    };
    Some(Info {
        hl: v.header_len(),
        total: v.total_len(),
        proto: v.proto(),
        later_fragment: v.is_later_fragment(),
        src: v.src(),
        dst: v.dst(),
        sport,
        dport,
        tcp_flags,
        tcp_off,
    })
}

/// The shared core of the rewriters.
pub struct RewriterCore {
    variant: Variant,
    specs: Arc<Vec<Spec>>,
    pub(crate) shared: Arc<Shared>,
    dst_anno: bool,
    reply_paint: bool,
    noutputs: usize,
    rng: Rng,
    scatter: Scatter,
}

fn ms(s: Seconds) -> u64 {
    (s.0 * 1000.0).round() as u64
}

/// Reads keyword `a`, then `b`; `b` wins when both are given (Click
/// reads them in that order into one variable).
fn seconds(args: &mut Args, a: &'static str, b: &'static str) -> Option<u64> {
    let first = args.read::<Seconds>(a);
    let second = args.read::<Seconds>(b);
    second.or(first).map(ms)
}

impl RewriterCore {
    /// Reads the input specs (one positional argument per input) and the
    /// keywords of `variant`. None after recording errors.
    pub fn configure(variant: Variant, args: &mut Args) -> Option<RewriterCore> {
        let raw = args.rest_positional();
        let mut specs = Vec::with_capacity(raw.len());
        for (i, (text, span)) in raw.iter().enumerate() {
            match Spec::parse(text) {
                Ok(s) => specs.push(s),
                Err(e) => args.error(Some(*span), format!("input spec {i}: {e}")),
            }
        }
        const S: u64 = 1000;
        let mut timeout = [300 * S, 86_400 * S, 240 * S, 300 * S, 300 * S];
        let (mut tcp_guarantee, mut udp_guarantee) = (5 * S, 5 * S);
        if variant != Variant::Udp {
            if let Some(t) = args.read::<Seconds>("TCP_NODATA_TIMEOUT") {
                timeout[usize::from(table::TCP_NODATA)] = ms(t);
            }
            // Click reads TCP_GUARANTEE before GUARANTEE: GUARANTEE wins.
            if let Some(g) = seconds(args, "TCP_GUARANTEE", "GUARANTEE") {
                tcp_guarantee = g;
            }
            if let Some(t) = seconds(args, "TIMEOUT", "TCP_TIMEOUT") {
                timeout[usize::from(table::TCP_DATA)] = t;
            }
            if let Some(t) = args.read::<Seconds>("TCP_DONE_TIMEOUT") {
                timeout[usize::from(table::TCP_DONE)] = ms(t);
            }
        }
        if variant != Variant::Tcp {
            let (udp, streaming, guarantee) = if variant == Variant::Udp {
                (
                    seconds(args, "UDP_TIMEOUT", "TIMEOUT"),
                    seconds(args, "UDP_STREAMING_TIMEOUT", "STREAMING_TIMEOUT"),
                    seconds(args, "UDP_GUARANTEE", "GUARANTEE"),
                )
            } else {
                (
                    args.read::<Seconds>("UDP_TIMEOUT").map(ms),
                    args.read::<Seconds>("UDP_STREAMING_TIMEOUT").map(ms),
                    args.read::<Seconds>("UDP_GUARANTEE").map(ms),
                )
            };
            if let Some(t) = udp {
                timeout[usize::from(table::UDP)] = t;
            }
            timeout[usize::from(table::UDP_STREAMING)] = streaming.unwrap_or(timeout[usize::from(table::UDP)]);
            if let Some(g) = guarantee {
                udp_guarantee = g;
            }
        }
        // Reaping is continuous here (a bounded amount every batch); the
        // interval, and its old name REAP_TIME, are accepted for Click's
        // configurations.
        let _ = args.read::<Seconds>("REAP_INTERVAL");
        let _ = args.read::<Seconds>("REAP_TIME");
        let capacity = {
            let a = args.read::<u64>("CAPACITY");
            let b = args.read::<u64>("MAPPING_CAPACITY");
            b.or(a).unwrap_or(DEFAULT_CAPACITY as u64)
        };
        let dst_anno = args.read::<bool>("DST_ANNO").unwrap_or(true);
        let reply_paint = match args.read::<String>("REPLY_ANNO") {
            None => false,
            Some(a) if a == "PAINT" => true,
            Some(a) => {
                let span = args.span_of("REPLY_ANNO");
                args.error(
                    Some(span),
                    format!("REPLY_ANNO: '{a}' is not supported (only PAINT, the paint annotation)"),
                );
                false
            }
        };
        if raw.is_empty() {
            args.error(None, "need at least one input spec, one per input port");
        }
        if args.has_errors() {
            return None;
        }
        let guarantee = [
            tcp_guarantee,
            tcp_guarantee,
            tcp_guarantee,
            udp_guarantee,
            udp_guarantee,
        ];
        let timing = Timing { timeout, guarantee };
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Some(RewriterCore {
            variant,
            specs: Arc::new(specs),
            shared: Arc::new(Shared {
                table: Mutex::new(Table::new(capacity, timing)),
                stats: Stats::default(),
            }),
            dst_anno,
            reply_paint,
            noutputs: 0,
            rng: Rng::new(),
            scatter: Scatter::new(),
        })
    }

    /// One input per spec; at least one output.
    pub fn port_count(&self) -> PortCount {
        let mut pc = PortCount::exactly(self.specs.len() as u32, 1);
        pc.outputs.max = u32::MAX;
        pc
    }

    /// Resolves named patterns and checks the outputs the specs name.
    /// Replaces pattern names by the patterns IPRewriterPatterns lent
    /// this configuration.
    pub fn resolve(&mut self, scope: &Scope) -> Result<(), String> {
        let mut specs = Vec::with_capacity(self.specs.len());
        for (i, s) in self.specs.iter().enumerate() {
            specs.push(match s {
                Spec::Named(name, f, r) => match scope.get::<Pattern>(name) {
                    Some(p) => Spec::Pattern(p, *f, *r),
                    None => return Err(format!("input spec {i}: no such pattern '{name}'")),
                },
                s => s.clone(),
            });
        }
        self.specs = Arc::new(specs);
        Ok(())
    }

    pub fn initialize(&mut self, ports: &PortInfo) -> Result<(), String> {
        self.noutputs = ports.outputs.len();
        for (i, s) in self.specs.iter().enumerate() {
            if s.outputs().iter().any(|&o| usize::from(o) >= self.noutputs) {
                return Err(format!(
                    "input spec {i}: output port out of range (the element has {} outputs)",
                    self.noutputs
                ));
            }
        }
        Ok(())
    }

    pub fn push(&mut self, port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.push_at(port, batch, real_ms(), cx);
    }

    /// [`push`](Self::push) at time `now` (milliseconds on [`real_ms`]'s
    /// clock; tests pass their own, never going back).
    pub fn push_at(&mut self, port: usize, batch: Batch, now: u64, cx: &mut Context<'_>) {
        let mut counts = [0u64; REASONS.len()];
        let mut scatter = std::mem::take(&mut self.scatter);
        // The mappings are looked up under one lock per batch, released
        // before the batch moves on. DROP is past every output.
        scatter.send_with(batch, cx, |batch, outputs| {
            let shared = Arc::clone(&self.shared);
            let mut t = lock(&shared.table);
            t.collect(now, 32 + batch.len());
            for p in batch.packets_mut() {
                outputs.push(self.process(&mut t, port, p, now, &mut counts) as usize);
            }
        });
        self.scatter = scatter;
        for (c, n) in self.shared.stats.drops.iter().zip(counts) {
            if n > 0 {
                c.fetch_add(n, Relaxed);
            }
        }
    }

    /// One packet: its output, or [`DROP`] with the reason counted.
    fn process(&mut self, t: &mut Table, port: usize, p: &mut Packet, now: u64, counts: &mut [u64; 7]) -> u32 {
        let off = wire::ip_offset(p);
        let Some(info) = p.data().get(off..).and_then(parse) else {
            counts[BAD_IP] += 1;
            return DROP;
        };
        if info.proto == IP_PROTO_ICMP && !info.later_fragment {
            if let Some(out) = self.icmp_error(t, p, off, &info, now) {
                return out;
            }
        }
        let map = self.variant.map_of(info.proto);
        let l4_len = info.total - info.hl;
        let tcp = info.proto == IP_PROTO_TCP;
        let short = if tcp {
            l4_len < 20 || info.tcp_off < 20
        } else {
            l4_len < 8
        };
        let (Some(map), false, false) = (map, info.later_fragment, short) else {
            // Click: such packets go out unchanged on a `pass` input, and
            // are dropped on any other.
            if let Some(Spec::Pass(o)) = self.specs.get(port) {
                return u32::from(*o);
            }
            let icmp_error =
                info.proto == IP_PROTO_ICMP && p.data().get(off + info.hl).copied().is_some_and(is_error_type);
            let reason = match map {
                None if icmp_error => UNMAPPED_ICMP,
                None => NOT_TCP_UDP,
                Some(_) if info.later_fragment => LATER_FRAGMENT,
                Some(_) => BAD_TRANSPORT,
            };
            counts[reason] += 1;
            return DROP;
        };
        let flow = FlowId::new(info.src, info.sport, info.dst, info.dport);
        let key = Key { map, flow };
        let (idx, dir) = match t.lookup(&key, now) {
            Some(found) => found,
            None => {
                let (rewritten, f, r) = match self.specs.get(port) {
                    Some(Spec::Pass(o)) => return u32::from(*o),
                    Some(Spec::Keep(f, r)) => (flow, *f, *r),
                    Some(Spec::Pattern(pat, f, r)) => {
                        match pat.rewrite(flow, map, &mut self.rng, |k| t.is_taken(k, now)) {
                            Some(rw) => (rw, *f, *r),
                            None => {
                                counts[FAILURE] += 1;
                                return DROP;
                            }
                        }
                    }
                    _ => {
                        counts[BY_SPEC] += 1;
                        return DROP;
                    }
                };
                let class = if self.variant.tracks_tcp(info.proto) {
                    table::TCP_NODATA
                } else {
                    table::UDP
                };
                let mut new = Flow::new(map, flow, rewritten, [f, r], port as u16, info.proto, class);
                new.reply_paint = p.anno.paint;
                match t.insert(new, now) {
                    Ok(idx) => (idx, 0),
                    Err(_) => {
                        counts[FAILURE] += 1;
                        return DROP;
                    }
                }
            }
        };
        self.apply(t, idx, dir, p, off, &info);
        let f = t.flow_mut(idx);
        let class = if self.variant.tracks_tcp(info.proto) {
            // Click's TCP tracking: RST ends both ways, FIN one way; a SYN
            // or data reopens a direction.
            let payload = info.hl + info.tcp_off < info.total;
            if info.tcp_flags & TH_RST != 0 {
                f.state |= BOTH_DONE;
            } else if info.tcp_flags & TH_FIN != 0 {
                f.state |= FWD_DONE << dir;
            } else if info.tcp_flags & TH_SYN != 0 || payload {
                f.state &= !(FWD_DONE << dir);
            }
            if payload {
                f.state |= FWD_DATA << dir;
            }
            if f.state & BOTH_DONE == BOTH_DONE {
                table::TCP_DONE
            } else if f.state & BOTH_DATA == BOTH_DATA {
                table::TCP_DATA
            } else {
                table::TCP_NODATA
            }
        } else {
            // Click's UDP tracking: streaming after three packets, one of
            // them a reply.
            if dir == 1 {
                f.state |= 1;
            }
            if f.state < 6 {
                f.state += 2;
            }
            if f.state > 6 {
                table::UDP_STREAMING
            } else {
                table::UDP
            }
        };
        let out = f.outputs[dir];
        t.touch(idx, now, class);
        u32::from(out)
    }

    /// Rewrites a packet of flow `idx` travelling in direction `dir`: both
    /// addresses, both ports, the checksums by the mapping's difference.
    #[inline]
    fn apply(&self, t: &Table, idx: u32, dir: usize, p: &mut Packet, off: usize, info: &Info) {
        let f = t.flow(idx);
        let new = f.rewritten(dir);
        if self.dst_anno {
            p.anno.dst_ip = new.daddr;
        }
        if dir == 1 && self.reply_paint {
            p.anno.paint = f.reply_paint;
        }
        if f.identity {
            return;
        }
        let (ipd, l4d) = if dir == 0 {
            (f.ip_delta, f.l4_delta)
        } else {
            (!f.ip_delta, !f.l4_delta)
        };
        let h = &mut p.data_mut()[off..off + info.total];
        put32(h, ip::SRC, new.saddr);
        put32(h, ip::DST, new.daddr);
        let c = be16(h, ip::SUM);
        put16(h, ip::SUM, apply_delta(c, ipd));
        let l4 = &mut h[info.hl..];
        put16(l4, 0, new.sport);
        put16(l4, 2, new.dport);
        if info.proto == IP_PROTO_TCP {
            let c = be16(l4, 16);
            put16(l4, 16, apply_delta(c, l4d));
        } else {
            // UDP: zero means no checksum, and a computed zero is sent as
            // all ones.
            let c = be16(l4, 6);
            if c != 0 {
                let n = apply_delta(c, l4d);
                put16(l4, 6, if n == 0 { 0xffff } else { n });
            }
        }
    }

    /// An ICMP error about a mapped flow, translated as Click's
    /// ICMPRewriter does: the quoted header (addresses, ports, its IP
    /// checksum and, when present, its TCP or UDP checksum) becomes what
    /// the other side of the mapping sent, the outer destination follows
    /// when it is the quoted source, and the ICMP checksum is updated. The
    /// output is the mapping's for the direction the error travels. None
    /// if the packet is not such an error.
    fn icmp_error(&mut self, t: &mut Table, p: &mut Packet, off: usize, info: &Info, now: u64) -> Option<u32> {
        // Offsets within the IP packet: the ICMP header, the quoted IP
        // header, the quoted transport header.
        let icmp = info.hl;
        let enc = icmp + 8;
        let (search, map, l4, eproto) = {
            let h = p.data().get(off..off + info.total)?;
            if h.len() < enc + 20 || !is_error_type(h[icmp]) || h[enc] >> 4 != 4 {
                return None;
            }
            let ehl = usize::from(h[enc] & 0xf) * 4;
            let l4 = enc + ehl;
            if ehl < 20 || h.len() < l4 + 8 || be16(h, enc + ip::FRAG) & ip::OFFMASK != 0 {
                return None;
            }
            let eproto = h[enc + ip::PROTO];
            let map = self.variant.map_of(eproto)?;
            let (esrc, edst) = (be32(h, enc + ip::SRC), be32(h, enc + ip::DST));
            let (esport, edport) = (be16(h, l4), be16(h, l4 + 2));
            (FlowId::new(edst, edport, esrc, esport), map, l4, eproto)
        };
        let (idx, dir) = t.lookup(&Key { map, flow: search }, now)?;
        let f = t.flow(idx);
        // UDPRewriter keeps both protocols in one table: the quoted
        // protocol must be the mapping's (Click's `get_entry` check).
        if f.proto != eproto {
            return None;
        }
        let new = f.rewritten(dir);
        let out = u32::from(f.outputs[dir]);
        if dir == 1 && self.reply_paint {
            p.anno.paint = f.reply_paint;
        }
        let h = &mut p.data_mut()[off..off + info.total];
        // The outer header.
        let mut c = be16(h, ip::SUM);
        if info.dst == search.daddr {
            put32(h, ip::DST, new.daddr);
            c = update32(c, info.dst, new.daddr);
        }
        if info.src == search.saddr {
            put32(h, ip::SRC, new.saddr);
            c = update32(c, info.src, new.saddr);
        }
        put16(h, ip::SUM, c);
        // The quoted packet travelled the other way: it becomes the
        // mapping's rewrite reversed.
        let mut ic = be16(h, icmp + 2);
        let (esrc, edst) = (be32(h, enc + ip::SRC), be32(h, enc + ip::DST));
        let (nsrc, ndst) = (new.daddr, new.saddr);
        let old_sum = be16(h, enc + ip::SUM);
        let new_sum = update32(update32(old_sum, esrc, nsrc), edst, ndst);
        put32(h, enc + ip::SRC, nsrc);
        put32(h, enc + ip::DST, ndst);
        put16(h, enc + ip::SUM, new_sum);
        ic = update32(update32(update16(ic, old_sum, new_sum), esrc, nsrc), edst, ndst);
        let (osp, odp) = (be16(h, l4), be16(h, l4 + 2));
        let (nsp, ndp) = (new.dport, new.sport);
        put16(h, l4, nsp);
        put16(h, l4 + 2, ndp);
        ic = update16(update16(ic, osp, nsp), odp, ndp);
        let sum_at = match eproto {
            IP_PROTO_TCP if h.len() >= l4 + 18 => Some(l4 + 16),
            IP_PROTO_UDP if be16(h, l4 + 6) != 0 => Some(l4 + 6),
            _ => None,
        };
        if let Some(at) = sum_at {
            let old = be16(h, at);
            let mut n = update32(update32(old, esrc, nsrc), edst, ndst);
            n = update16(update16(n, osp, nsp), odp, ndp);
            if eproto == IP_PROTO_UDP && n == 0 {
                n = 0xffff;
            }
            put16(h, at, n);
            ic = update16(ic, old, n);
        }
        put16(h, icmp + 2, ic);
        if self.dst_anno && info.dst == search.daddr {
            p.anno.dst_ip = new.daddr;
        }
        Some(out)
    }

    /// Hot reload: takes the old element's mappings (see the element docs
    /// for the rule) and counts, at time `now`.
    pub fn take_state(&mut self, old: &RewriterCore, now: u64) {
        let (ninputs, noutputs) = (self.specs.len(), self.noutputs);
        {
            let mut theirs = lock(&old.shared.table);
            theirs.retain(|f| usize::from(f.input) < ninputs && f.outputs.iter().all(|&o| usize::from(o) < noutputs));
            lock(&self.shared.table).adopt(&mut theirs, now);
        }
        for (mine, theirs) in self.shared.stats.drops.iter().zip(&old.shared.stats.drops) {
            mine.fetch_add(theirs.load(Relaxed), Relaxed);
        }
    }

    /// The handlers all three share, plus `tables`: (handler name, table
    /// filter) pairs for the mapping dumps, and `lookups`: (handler name,
    /// map) for the lookup handlers. `now` is the time they read
    /// ([`real_ms`]; tests pass their clock).
    pub fn handlers(
        &self,
        tables: &[(&str, Option<u8>)],
        lookups: &[(&str, u8)],
        now: impl Fn() -> u64 + Clone + Send + Sync + 'static,
    ) -> Vec<Handler> {
        let mut hs = Vec::new();
        for &(name, filter) in tables {
            let (s, now) = (self.shared.clone(), now.clone());
            // Each copy's flows: one block per copy.
            hs.push(
                Handler::read_only(name, move || {
                    let now = now();
                    unparse_table(table_rows(&lock(&s.table), now, filter), now)
                })
                .merged(switchyard_core::Merge::List),
            );
        }
        for &(name, map) in lookups {
            let (s, now) = (self.shared.clone(), now.clone());
            hs.push(
                Handler::read_with_param(name, move |arg| {
                    let flow = parse_flow(arg)?;
                    let now = now();
                    let mut t = lock(&s.table);
                    Ok(match t.lookup(&Key { map, flow }, now) {
                        Some((idx, dir)) => {
                            let r = t.flow(idx).rewritten(dir);
                            format!(
                                "{} {} {} {}",
                                wire::IpAddr(r.saddr),
                                r.sport,
                                wire::IpAddr(r.daddr),
                                r.dport
                            )
                        }
                        None => String::new(),
                    })
                })
                // A flow is in one copy's table.
                .merged(switchyard_core::Merge::First),
            );
        }
        for name in ["table_size", "nmappings", "size"] {
            let (s, now) = (self.shared.clone(), now.clone());
            hs.push(Handler::read_only(name, move || {
                let now = now();
                lock(&s.table).live_len(now).to_string()
            }));
        }
        let s = self.shared.clone();
        hs.push(Handler::read_only("mapping_failures", move || {
            s.stats.drops[FAILURE].load(Relaxed).to_string()
        }));
        let (s, w, wnow) = (self.shared.clone(), self.shared.clone(), now.clone());
        hs.push(Handler::read_write(
            "capacity",
            move || lock(&s.table).capacity().to_string(),
            move |v| {
                let cap: usize = crate::util::parse_value(v)?;
                let now = wnow();
                lock(&w.table).set_capacity(cap, now);
                Ok(())
            },
        ));
        let s = self.shared.clone();
        hs.push(Handler::write_only("clear", move |_| {
            lock(&s.table).clear();
            Ok(())
        }));
        for only in std::iter::once(None).chain((0..self.specs.len()).map(Some)) {
            let (s, specs, now) = (self.shared.clone(), self.specs.clone(), now.clone());
            let name = only.map_or("patterns".to_string(), |i| format!("pattern{i}"));
            hs.push(
                Handler::read_only(&name, move || {
                    let now = now();
                    unparse_specs(&mappings_by_input(&lock(&s.table), now, specs.len()), &specs, only)
                })
                .merged(switchyard_core::Merge::List),
            );
        }
        let s = self.shared.clone();
        hs.push(Handler::read_only("drops", move || {
            s.stats.drops.iter().map(|c| c.load(Relaxed)).sum::<u64>().to_string()
        }));
        let s = self.shared.clone();
        hs.push(Handler::read_only("drop_details", move || {
            let mut out = String::new();
            for (c, why) in s.stats.drops.iter().zip(REASONS) {
                out.push_str(&format!("{}\t{why}\n", c.load(Relaxed)));
            }
            out
        }));
        hs
    }
}

/// The default MAPPING_CAPACITY (Click's is unlimited): flows, each with
/// both directions.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// What a table dump shows of one mapping.
struct Row {
    map: u8,
    keys: [FlowId; 2],
    outputs: [u16; 2],
    input: u16,
    expiry: u64,
}

/// The unexpired mappings of table `filter` (all if None), copied out so
/// that they are written after the lock, which the data path takes every
/// batch, is released. Expired ones are skipped, not collected: the data
/// path collects a bounded number per batch.
fn table_rows(t: &Table, now: u64, filter: Option<u8>) -> Vec<Row> {
    t.live_indices()
        .filter_map(|idx| {
            let f = t.flow(idx);
            let (map, expiry) = (f.keys[0].map, t.expiry(idx));
            (expiry > now && filter.is_none_or(|m| m == map)).then_some(Row {
                map,
                keys: [f.keys[0].flow, f.keys[1].flow],
                outputs: f.outputs,
                input: f.input,
                expiry,
            })
        })
        .collect()
}

/// Click's table dump: one line per direction of each mapping, table 0
/// (IPRewriter's TCP) first,
/// `FLOW => REWRITTEN [F R] iINPUT expSECONDS`, the direction's output
/// starred.
fn unparse_table(mut rows: Vec<Row>, now: u64) -> String {
    use std::fmt::Write;
    rows.sort_by_key(|r| r.map);
    let mut out = String::with_capacity(rows.len() * 2 * 96);
    for r in &rows {
        let exp = (r.expiry.saturating_sub(now) + 500) / 1000;
        for dir in 0..2 {
            let star = |d: usize| if d == dir { "*" } else { "" };
            // A direction's packets become the other key, reversed.
            let _ = writeln!(
                out,
                "{} => {} [{}{} {}{}] i{} exp{}",
                r.keys[dir],
                r.keys[1 - dir].reverse(),
                star(0),
                r.outputs[0],
                star(1),
                r.outputs[1],
                r.input,
                exp
            );
        }
    }
    out
}

/// The number of unexpired mappings each of `inputs` inputs made.
fn mappings_by_input(t: &Table, now: u64, inputs: usize) -> Vec<usize> {
    let mut counts = vec![0usize; inputs];
    for idx in t.live_indices().filter(|&idx| t.expiry(idx) > now) {
        if let Some(c) = counts.get_mut(usize::from(t.flow(idx).input)) {
            *c += 1;
        }
    }
    counts
}

/// Click's `patterns`: each input's spec, with the number of its live
/// mappings in brackets when there are any.
fn unparse_specs(counts: &[usize], specs: &[Spec], only: Option<usize>) -> String {
    let mut out = String::new();
    for (i, spec) in specs.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        out.push_str(&spec.unparse());
        if counts[i] > 0 {
            out.push_str(&format!(" [{}]", counts[i]));
        }
        out.push('\n');
    }
    out
}

/// `SADDR SPORT DADDR DPORT`, for the lookup handlers.
fn parse_flow(arg: &str) -> Result<FlowId, String> {
    let w: Vec<&str> = arg.split_whitespace().collect();
    let [sa, sp, da, dp] = w[..] else {
        return Err("expected 'SADDR SPORT DADDR DPORT'".into());
    };
    let addr = |a: &str| wire::parse_ip(a).ok_or_else(|| format!("'{a}' is not an IP address"));
    let port = |p: &str| p.parse::<u16>().map_err(|_| format!("'{p}' is not a port"));
    Ok(FlowId::new(addr(sa)?, port(sp)?, addr(da)?, port(dp)?))
}

/// The class, factory and [`Element`](switchyard_core::Element) impl of a
/// rewriter: a struct `{ core: RewriterCore }`. The three classes differ
/// in their variant (which protocols, how many tables) and in the names
/// of their table and lookup handlers.
macro_rules! rewriter_element {
    ($ty:ident, $variant:expr, tables: $tables:expr, lookups: $lookups:expr) => {
        impl $ty {
            pub const CLASS: switchyard_core::ElementClass = switchyard_core::ElementClass {
                name: stringify!($ty),
                ports: "1-/1-",
                processing: "h/h",
                doc: $ty::DOC,
                factory: $ty::make,
            };

            /// The mapping dumps (handler name, table filter) and the
            /// lookup handlers (handler name, table).
            const TABLES: &'static [(&'static str, Option<u8>)] = $tables;
            const LOOKUPS: &'static [(&'static str, u8)] = $lookups;

            fn make(args: &mut switchyard_core::Args) -> Option<Box<dyn switchyard_core::Element>> {
                let core = $crate::nat::rewriter::RewriterCore::configure($variant, args)?;
                Some(Box::new($ty { core }))
            }

            /// The core and handler names, for tests that drive the core
            /// on their own clock.
            #[cfg(test)]
            pub(crate) fn into_parts(self) -> $crate::nat::rewriter::tests::Parts {
                (self.core, Self::TABLES, Self::LOOKUPS)
            }
        }

        impl switchyard_core::Element for $ty {
            fn port_count(&self) -> Option<switchyard_core::PortCount> {
                Some(self.core.port_count())
            }

            fn exclusive(&self) -> Option<(String, String)> {
                // A reply carries the rewritten tuple, which a fanout hash
                // may hand to another copy, whose table lacks the mapping.
                Some((
                    "keep NAT mappings".into(),
                    "NAT does not run in copies yet (a reply may reach the copy without its mapping)".into(),
                ))
            }

            fn resolve(&mut self, scope: &switchyard_core::Scope) -> Result<(), String> {
                self.core.resolve(scope)
            }

            fn initialize(&mut self, ports: &switchyard_core::PortInfo) -> Result<bool, String> {
                self.core.initialize(ports)?;
                Ok(false)
            }

            fn push(&mut self, port: usize, batch: switchyard_core::Batch, cx: &mut switchyard_core::Context<'_>) {
                self.core.push(port, batch, cx);
            }

            fn take_state(&mut self, old: Box<dyn switchyard_core::Element>) {
                if let Some(old) = switchyard_core::downcast::<$ty>(old) {
                    self.core.take_state(&old.core, $crate::nat::rewriter::real_ms());
                }
            }

            fn handlers(&self) -> Vec<switchyard_core::Handler> {
                self.core
                    .handlers(Self::TABLES, Self::LOOKUPS, $crate::nat::rewriter::real_ms)
            }
        }
    };
}
pub(crate) use rewriter_element;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nat::ip_rewriter::IPRewriter;
    use crate::nat::ip_rewriter_patterns::IPRewriterPatterns;
    use crate::nat::tcp_rewriter::TCPRewriter;
    use crate::nat::udp_rewriter::UDPRewriter;
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{checksum, fold, sum};
    use proptest::prelude::*;
    use switchyard_core::{Annotations, Element, ElementClass, Harness, Processing};

    #[test]
    fn clicks_keyword_forms_and_their_precedence() {
        let guarantee = |class: ElementClass, config: &str| {
            let mut args = Args::parse_str("rw :: X", config);
            let variant = match class.name {
                "TCPRewriter" => Variant::Tcp,
                "UDPRewriter" => Variant::Udp,
                _ => Variant::Ip,
            };
            let core = RewriterCore::configure(variant, &mut args).unwrap();
            args.complete().unwrap();
            let t = core.shared.table.lock().unwrap().timing.guarantee;
            (t[0], t[usize::from(table::UDP)])
        };
        for class in [IPRewriter::CLASS, TCPRewriter::CLASS, UDPRewriter::CLASS] {
            for config in [
                "pass 0, REAP_TIME 10",
                "pass 0, REAP_INTERVAL 10s",
                "pass 0, CAPACITY 10",
            ] {
                let e = crate::testutil::configure("rw :: X", class, config);
                assert!(e.is_ok(), "{} {config}: {:?}", class.name, e.err());
            }
        }
        assert_eq!(
            guarantee(TCPRewriter::CLASS, "pass 0, TCP_GUARANTEE 1, GUARANTEE 2").0,
            2000
        );
        assert_eq!(
            guarantee(IPRewriter::CLASS, "pass 0, GUARANTEE 2, TCP_GUARANTEE 1").0,
            2000
        );
        assert_eq!(
            guarantee(UDPRewriter::CLASS, "pass 0, UDP_GUARANTEE 1, GUARANTEE 2").1,
            2000
        );
    }

    pub const INSIDE: [u8; 4] = [10, 0, 0, 2];
    pub const SERVER: [u8; 4] = [198, 51, 100, 7];
    pub const PUBLIC: [u8; 4] = [192, 0, 2, 1];
    const SYN: u8 = TH_SYN;
    const ACK: u8 = 0x10;

    fn a(x: [u8; 4]) -> u32 {
        u32::from_be_bytes(x)
    }

    /// The correct TCP or UDP checksum of an IPv4 packet (a UDP zero sent
    /// as all ones).
    fn l4_checksum(p: &[u8]) -> u16 {
        let v = Ipv4::new_checked(p).unwrap();
        let (hl, total, proto) = (v.header_len(), v.total_len(), v.proto());
        let at = if proto == IP_PROTO_TCP { 16 } else { 6 };
        let mut seg = p[hl..total].to_vec();
        seg[at] = 0;
        seg[at + 1] = 0;
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[ip::SRC..ip::DST + 4]);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        let c = !fold(sum(&seg, sum(&pseudo, 0)));
        if proto == IP_PROTO_UDP && c == 0 {
            0xffff
        } else {
            c
        }
    }

    fn fill_l4_checksum(p: &mut [u8]) {
        let hl = usize::from(p[0] & 0xf) * 4;
        let at = hl + if p[ip::PROTO] == IP_PROTO_TCP { 16 } else { 6 };
        let c = l4_checksum(p);
        put16(p, at, c);
    }

    /// Both checksums equal a full recomputation (a UDP zero is "none").
    pub fn checksums_ok(p: &[u8]) -> bool {
        let v = Ipv4::new_checked(p).unwrap();
        let hl = v.header_len();
        let at = hl + if v.proto() == IP_PROTO_TCP { 16 } else { 6 };
        let stored = be16(p, at);
        let l4 = (v.proto() == IP_PROTO_UDP && stored == 0) || stored == l4_checksum(p);
        v.checksum_ok() && l4
    }

    pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = ipv4_packet(src, dst, IP_PROTO_TCP, 64, 20 + payload.len());
        let t = &mut p[20..];
        put16(t, 0, sport);
        put16(t, 2, dport);
        put32(t, 4, 0x1234_5678);
        put32(t, 8, 0x0bad_cafe);
        t[12] = 0x50;
        t[13] = flags;
        put16(t, 14, 0xffff);
        t[20..].copy_from_slice(payload);
        fill_l4_checksum(&mut p);
        p
    }

    pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8], with_sum: bool) -> Vec<u8> {
        let mut p = ipv4_packet(src, dst, IP_PROTO_UDP, 64, 8 + payload.len());
        let u = &mut p[20..];
        put16(u, 0, sport);
        put16(u, 2, dport);
        put16(u, 4, (8 + payload.len()) as u16);
        u[8..].copy_from_slice(payload);
        if with_sum {
            fill_l4_checksum(&mut p);
        }
        p
    }

    fn icmp(src: [u8; 4], dst: [u8; 4], kind: u8, quoted: &[u8]) -> Vec<u8> {
        let mut p = ipv4_packet(src, dst, IP_PROTO_ICMP, 64, 8 + quoted.len());
        p[20] = kind;
        p[21] = 3;
        p[28..].copy_from_slice(quoted);
        let c = checksum(&p[20..]);
        put16(&mut p, 22, c);
        p
    }

    fn ports(p: &[u8]) -> (u32, u16, u32, u16) {
        let hl = usize::from(p[0] & 0xf) * 4;
        (be32(p, ip::SRC), be16(p, hl), be32(p, ip::DST), be16(p, hl + 2))
    }

    /// A rewriter's core and handler names (see `into_parts`).
    pub type Parts = (
        RewriterCore,
        &'static [(&'static str, Option<u8>)],
        &'static [(&'static str, u8)],
    );

    fn parts(e: Box<dyn Element>) -> Parts {
        let any: Box<dyn std::any::Any> = e;
        let any = match any.downcast::<IPRewriter>() {
            Ok(x) => return (*x).into_parts(),
            Err(any) => any,
        };
        let any = match any.downcast::<TCPRewriter>() {
            Ok(x) => return (*x).into_parts(),
            Err(any) => any,
        };
        (*any.downcast::<UDPRewriter>().unwrap()).into_parts()
    }

    /// A rewriter core driven at the time its rig sets.
    struct Timed {
        core: RewriterCore,
        clock: Arc<AtomicU64>,
    }

    impl Element for Timed {
        fn push(&mut self, port: usize, batch: Batch, cx: &mut Context<'_>) {
            self.core.push_at(port, batch, self.clock.load(Relaxed), cx);
        }
    }

    pub struct Rig {
        pub h: Harness,
        pub hs: Vec<Handler>,
        pub shared: Arc<Shared>,
        /// Milliseconds, for the data path and the handlers alike.
        clock: Arc<AtomicU64>,
        outputs: usize,
    }

    pub fn configured(class: ElementClass, config: &str, outputs: usize) -> Result<Box<dyn Element>, String> {
        configured_in(class, config, outputs, &Scope::default())
    }

    /// [`configured`], with the names other elements lent (`scope`).
    pub fn configured_in(
        class: ElementClass,
        config: &str,
        outputs: usize,
        scope: &Scope,
    ) -> Result<Box<dyn Element>, String> {
        let mut args = Args::parse_str(&format!("nat :: {}", class.name), config);
        let e = (class.factory)(&mut args);
        if let Err(errs) = args.complete() {
            return Err(errs[0].message.clone());
        }
        let mut e = e.unwrap();
        e.resolve(scope)?;
        let inputs = e.port_count().unwrap().inputs.min as usize;
        e.initialize(&PortInfo {
            inputs: vec![Processing::Push; inputs],
            outputs: vec![Processing::Push; outputs],
        })?;
        Ok(e)
    }

    pub fn rig(class: ElementClass, config: &str, outputs: usize) -> Rig {
        let e = configured(class, config, outputs).unwrap();
        rig_of(e, outputs)
    }

    /// A rig whose clock starts at 1,000 seconds.
    fn rig_of(e: Box<dyn Element>, outputs: usize) -> Rig {
        let (core, tables, lookups) = parts(e);
        let clock = Arc::new(AtomicU64::new(1_000_000));
        let c = clock.clone();
        let hs = core.handlers(tables, lookups, move || c.load(Relaxed));
        let shared = core.shared.clone();
        let inputs = core.port_count().inputs.min as usize;
        let timed = Timed {
            core,
            clock: clock.clone(),
        };
        Rig {
            h: Harness::new(Box::new(timed), inputs, outputs),
            hs,
            shared,
            clock,
            outputs,
        }
    }

    impl Rig {
        /// Sends one packet (network header marked) into `port`: where it
        /// went, its bytes and annotations.
        pub fn send(&mut self, port: usize, bytes: &[u8]) -> Option<(usize, Vec<u8>, Annotations)> {
            let mut p = Packet::from_data(bytes);
            p.set_network_header(0, 20);
            p.anno.paint = 7;
            let mut b = Batch::new();
            b.push(p);
            self.h.push(port, b);
            let mut got = None;
            for o in 0..self.outputs {
                for b in self.h.take(o) {
                    for p in b.iter() {
                        assert!(got.is_none(), "one packet in, one out");
                        got = Some((o, p.data().to_vec(), p.anno));
                    }
                }
            }
            got
        }

        pub fn read(&self, name: &str) -> String {
            let h = self
                .hs
                .iter()
                .find(|h| h.name == name)
                .unwrap_or_else(|| panic!("no handler {name}"));
            (h.read.as_ref().unwrap())()
        }

        pub fn write(&self, name: &str, v: &str) -> Result<(), String> {
            let h = self.hs.iter().find(|h| h.name == name).unwrap();
            (h.write.as_ref().unwrap())(v)
        }

        pub fn at(&self, ms: u64) {
            self.clock.store(ms, Relaxed);
        }

        pub fn drop_count(&self, reason: &str) -> u64 {
            let details = self.read("drop_details");
            let line = details.lines().find(|l| l.ends_with(reason)).unwrap();
            line.split('\t').next().unwrap().parse().unwrap()
        }
    }

    const SNAT: &str = "pattern 192.0.2.1 1024-1030# - - 0 1, drop";

    #[test]
    fn snat_rewrites_forward_and_un_rewrites_replies() {
        let mut r = rig(IPRewriter::CLASS, SNAT, 2);
        let fwd = tcp(INSIDE, 5000, SERVER, 80, SYN, &[]);
        let (out, got, anno) = r.send(0, &fwd).unwrap();
        assert_eq!(out, 0);
        assert_eq!(ports(&got), (a(PUBLIC), 1024, a(SERVER), 80));
        assert!(checksums_ok(&got));
        assert_eq!(anno.dst_ip, a(SERVER));
        // Only addresses, ports and checksums changed.
        assert_eq!(got[20 + 4..20 + 16], fwd[20 + 4..20 + 16]);
        // The reply, to the public address and port, goes back inside.
        let reply = tcp(SERVER, 80, PUBLIC, 1024, SYN | ACK, b"hello");
        let (out, back, anno) = r.send(1, &reply).unwrap();
        assert_eq!(out, 1);
        assert_eq!(ports(&back), (a(SERVER), 80, a(INSIDE), 5000));
        assert!(checksums_ok(&back));
        assert_eq!(anno.dst_ip, a(INSIDE));
        assert_eq!(&back[40..], b"hello");
        // More of the forward flow reuses the mapping.
        let (_, again, _) = r.send(0, &tcp(INSIDE, 5000, SERVER, 80, ACK, b"x")).unwrap();
        assert_eq!(ports(&again).1, 1024);
        // A second inside flow gets the next port.
        let (_, second, _) = r.send(0, &tcp(INSIDE, 5001, SERVER, 80, SYN, &[])).unwrap();
        assert_eq!(ports(&second).1, 1025);
        assert_eq!(r.read("nmappings"), "2");
        assert_eq!(r.read("table_size"), "2");
        let table = r.read("tcp_table");
        assert!(
            table.contains(
                "(10.0.0.2, 5000, 198.51.100.7, 80) => (192.0.2.1, 1024, 198.51.100.7, 80) [*0 1] i0 exp86400"
            ),
            "{table}"
        );
        assert!(table.contains("(198.51.100.7, 80, 192.0.2.1, 1024) => (198.51.100.7, 80, 10.0.0.2, 5000) [0 *1] i0"));
        assert_eq!(r.read("udp_table"), "");
        assert_eq!(r.read("table"), table);
        assert_eq!(r.read("patterns"), "192.0.2.1 1024-1030# - - [2]\n<drop>\n");
        assert_eq!(r.read("pattern1"), "<drop>\n");
        let lookup = r.hs.iter().find(|h| h.name == "tcp_lookup").unwrap();
        let f = lookup.read_param.as_ref().unwrap();
        assert_eq!(
            f("10.0.0.2 5000 198.51.100.7 80").unwrap(),
            "192.0.2.1 1024 198.51.100.7 80"
        );
        assert_eq!(f("10.0.0.9 5000 198.51.100.7 80").unwrap(), "");
        assert!(f("nonsense").is_err());
        // A stranger's packet to the public address: no mapping, dropped.
        assert!(r.send(1, &tcp(SERVER, 80, PUBLIC, 1031, SYN, &[])).is_none());
        assert_eq!(r.drop_count("dropped by input spec"), 1);
        assert_eq!(r.read("drops"), "1");
    }

    #[test]
    fn udp_prefers_the_source_port_and_leaves_a_zero_checksum_alone() {
        let mut r = rig(IPRewriter::CLASS, "pattern 192.0.2.1 1024-65535 - - 0 1, drop", 2);
        let (_, got, _) = r.send(0, &udp(INSIDE, 5000, SERVER, 53, b"query", true)).unwrap();
        assert_eq!(ports(&got), (a(PUBLIC), 5000, a(SERVER), 53));
        assert!(checksums_ok(&got));
        // Another inside host with the same port gets another one.
        let (_, other, _) = r.send(0, &udp([10, 0, 0, 3], 5000, SERVER, 53, b"q", false)).unwrap();
        assert_ne!(ports(&other).1, 5000);
        assert_eq!(be16(&other, 26), 0, "no checksum stays none");
        assert!(checksums_ok(&other));
        let (out, back, _) = r
            .send(1, &udp(SERVER, 53, PUBLIC, ports(&other).1, b"answer", false))
            .unwrap();
        assert_eq!((out, ports(&back)), (1, (a(SERVER), 53, a([10, 0, 0, 3]), 5000)));
        assert_eq!(be16(&back, 26), 0);
        assert_eq!(r.read("tcp_table"), "");
        assert_eq!(r.read("udp_table").lines().count(), 4);
    }

    #[test]
    fn an_exhausted_port_range_drops_new_flows_and_counts_them() {
        let mut r = rig(IPRewriter::CLASS, "pattern 192.0.2.1 2000-2001 - - 0 1, drop", 2);
        for sport in [1, 2] {
            assert!(r.send(0, &udp(INSIDE, sport, SERVER, 53, b"", true)).is_some());
        }
        assert!(r.send(0, &udp(INSIDE, 3, SERVER, 53, b"", true)).is_none());
        assert_eq!(r.read("mapping_failures"), "1");
        assert_eq!(r.drop_count("mapping failures"), 1);
        // Known flows still pass; another destination has ports free.
        assert!(r.send(0, &udp(INSIDE, 1, SERVER, 53, b"", true)).is_some());
        assert!(r.send(0, &udp(INSIDE, 3, [198, 51, 100, 8], 53, b"", true)).is_some());
        // Once a mapping expires, its port is free again.
        r.at(1_000_000 + 301_000);
        let (_, got, _) = r.send(0, &udp(INSIDE, 3, SERVER, 53, b"", true)).unwrap();
        assert!((2000..=2001).contains(&ports(&got).1));
    }

    #[test]
    fn a_full_table_evicts_only_flows_out_of_their_guarantee() {
        let mut r = rig(
            IPRewriter::CLASS,
            "pattern 192.0.2.1 1024-65535# - - 0 1, drop, MAPPING_CAPACITY 2, UDP_GUARANTEE 5",
            2,
        );
        let t0 = 1_000_000;
        r.send(0, &udp(INSIDE, 1, SERVER, 53, b"", true)).unwrap();
        r.at(t0 + 1000);
        r.send(0, &udp(INSIDE, 2, SERVER, 53, b"", true)).unwrap();
        r.at(t0 + 2000);
        assert!(
            r.send(0, &udp(INSIDE, 3, SERVER, 53, b"", true)).is_none(),
            "all guaranteed"
        );
        assert_eq!(r.read("mapping_failures"), "1");
        // The first is out of its guarantee: it makes room.
        r.at(t0 + 5500);
        assert!(r.send(0, &udp(INSIDE, 3, SERVER, 53, b"", true)).is_some());
        assert_eq!(r.read("size"), "2");
        let table = r.read("table");
        assert!(!table.contains("(10.0.0.2, 1, "), "{table}");
        assert_eq!(r.read("capacity"), "2");
        r.write("capacity", "1").unwrap();
        assert_eq!(r.read("size"), "1");
        assert!(r.write("capacity", "x").is_err());
        r.write("clear", "").unwrap();
        assert_eq!(r.read("size"), "0");
    }

    #[test]
    fn udp_mappings_time_out_and_streaming_ones_later() {
        let mut r = rig(
            IPRewriter::CLASS,
            "pattern 192.0.2.1 1024-65535# - - 0 1, drop, UDP_TIMEOUT 10, UDP_STREAMING_TIMEOUT 60",
            2,
        );
        let t0 = 1_000_000;
        r.send(0, &udp(INSIDE, 1, SERVER, 53, b"", true)).unwrap();
        r.at(t0 + 9_999);
        assert!(r.send(1, &udp(SERVER, 53, PUBLIC, 1024, b"", true)).is_some());
        r.at(t0 + 9_999 + 10_000);
        assert!(
            r.send(1, &udp(SERVER, 53, PUBLIC, 1024, b"", true)).is_none(),
            "timed out"
        );
        assert_eq!(r.read("size"), "0");
        // Three packets, one a reply: streaming, 60 seconds.
        let t1 = t0 + 100_000;
        r.at(t1);
        let (_, got, _) = r.send(0, &udp(INSIDE, 2, SERVER, 53, b"", true)).unwrap();
        let port = ports(&got).1;
        r.send(1, &udp(SERVER, 53, PUBLIC, port, b"", true)).unwrap();
        r.send(0, &udp(INSIDE, 2, SERVER, 53, b"", true)).unwrap();
        r.at(t1 + 59_000);
        assert!(r.send(1, &udp(SERVER, 53, PUBLIC, port, b"", true)).is_some());
        r.at(t1 + 59_000 + 60_000);
        assert!(r.send(1, &udp(SERVER, 53, PUBLIC, port, b"", true)).is_none());
    }

    #[test]
    fn tcp_mappings_use_the_done_timeout_after_fin_both_ways_or_rst() {
        let cfg = "pattern 192.0.2.1 1024-65535# - - 0 1, drop, TCP_NODATA_TIMEOUT 100, TCP_TIMEOUT 1000, TCP_DONE_TIMEOUT 10";
        let mut r = rig(IPRewriter::CLASS, cfg, 2);
        let t0 = 1_000_000;
        let fwd = |flags, data: &[u8]| tcp(INSIDE, 5000, SERVER, 80, flags, data);
        let rev = |flags, data: &[u8]| tcp(SERVER, 80, PUBLIC, 1024, flags, data);
        r.send(0, &fwd(SYN, b"")).unwrap();
        assert!(r.read("table").contains("exp100\n"));
        r.send(1, &rev(SYN | ACK, b"")).unwrap();
        r.send(0, &fwd(ACK, b"GET")).unwrap();
        r.send(1, &rev(ACK, b"200")).unwrap();
        assert!(r.read("table").contains("exp1000\n"), "{}", r.read("table"));
        // FIN one way: still open.
        r.send(0, &fwd(ACK | TH_FIN, b"")).unwrap();
        assert!(r.read("table").contains("exp1000\n"));
        r.send(1, &rev(ACK | TH_FIN, b"")).unwrap();
        assert!(r.read("table").contains("exp10\n"));
        r.at(t0 + 9_000);
        assert!(r.send(1, &rev(ACK, b"")).is_some());
        r.at(t0 + 9_000 + 10_000);
        assert!(r.send(1, &rev(ACK, b"")).is_none(), "done and timed out");
        // RST alone ends a connection.
        r.send(0, &tcp(INSIDE, 6000, SERVER, 80, SYN, b"")).unwrap();
        r.send(1, &tcp(SERVER, 80, PUBLIC, 1025, TH_RST, b"")).unwrap();
        assert_eq!(r.read("table").matches("exp10\n").count(), 2);
        // Without data both ways the no-data timeout holds.
        r.send(0, &tcp(INSIDE, 7000, SERVER, 80, SYN, b"")).unwrap();
        assert_eq!(r.read("table").matches("exp100\n").count(), 2);
    }

    #[test]
    fn pass_drop_and_keep_inputs() {
        let mut r = rig(IPRewriter::CLASS, "keep 0 1, pass 2, drop", 3);
        let fwd = tcp(INSIDE, 5000, SERVER, 80, SYN, b"");
        let (out, got, _) = r.send(0, &fwd).unwrap();
        assert_eq!((out, &got), (0, &fwd), "kept unchanged");
        let back = tcp(SERVER, 80, INSIDE, 5000, SYN | ACK, b"");
        assert_eq!(r.send(2, &back).unwrap().0, 1, "its reply, from a dropping input");
        assert_eq!(r.read("size"), "1");
        let other = udp(INSIDE, 1, SERVER, 53, b"", true);
        let (out, got, _) = r.send(1, &other).unwrap();
        assert_eq!((out, got), (2, other.clone()));
        assert_eq!(r.read("size"), "1", "pass makes no mapping");
        assert!(r.send(2, &other).is_none());
        assert_eq!(r.drop_count("dropped by input spec"), 1);
        // Not TCP or UDP: passes on a pass input only.
        let ping = ipv4_packet(INSIDE, SERVER, IP_PROTO_ICMP, 64, 8);
        assert_eq!(r.send(1, &ping).unwrap().0, 2);
        assert!(r.send(0, &ping).is_none());
        assert_eq!(r.drop_count("not TCP or UDP"), 1);
        assert_eq!(r.read("patterns"), "<keep> [1]\n<nochange>\n<drop>\n");
    }

    #[test]
    fn named_patterns_resolve_from_the_configuration_scope() {
        let missing = configured(IPRewriter::CLASS, "pattern nat_test_pub 0 1, drop", 2)
            .err()
            .unwrap();
        assert_eq!(missing, "input spec 0: no such pattern 'nat_test_pub'");
        let mut args = Args::parse_str("p :: IPRewriterPatterns", "nat_test_pub 192.0.2.1 4000-4001# - -");
        let pats = (IPRewriterPatterns::CLASS.factory)(&mut args).unwrap();
        let mut scope = Scope::default();
        for (name, value) in pats.exports() {
            scope.insert(name, "p", value).unwrap();
        }
        drop(pats);
        let e = configured_in(
            IPRewriter::CLASS,
            "pattern nat_test_pub 0 1, nat_test_pub 0 1",
            2,
            &scope,
        )
        .unwrap();
        let mut r = rig_of(e, 2);
        let (_, got, _) = r.send(0, &udp(INSIDE, 1, SERVER, 53, b"", true)).unwrap();
        assert_eq!(ports(&got).1, 4000);
        // The inputs share the pattern and its turn.
        let (_, got, _) = r.send(1, &udp(INSIDE, 2, SERVER, 53, b"", true)).unwrap();
        assert_eq!(ports(&got).1, 4001);
        assert_eq!(r.read("pattern0"), "192.0.2.1 4000-4001# - - [1]\n");
    }

    #[test]
    fn outputs_out_of_range_and_bad_specs_are_configuration_errors() {
        let e = configured(IPRewriter::CLASS, "pattern 192.0.2.1 - - - 0 3", 2)
            .err()
            .unwrap();
        assert!(e.starts_with("input spec 0: output port out of range"), "{e}");
        let e = configured(IPRewriter::CLASS, "drop, frob", 1).err().unwrap();
        assert_eq!(e, "'nat :: IPRewriter': input spec 1: unknown specification");
        let e = configured(IPRewriter::CLASS, "", 1).err().unwrap();
        assert!(e.contains("need at least one input spec"), "{e}");
        let e = configured(IPRewriter::CLASS, "drop, REPLY_ANNO FOO", 1).err().unwrap();
        assert!(e.contains("REPLY_ANNO"), "{e}");
        let e = configured(IPRewriter::CLASS, "drop, MAPPING_CAPACITY rw", 1)
            .err()
            .unwrap();
        assert!(e.contains("MAPPING_CAPACITY: expected an integer"), "{e}");
        assert!(configured(
            UDPRewriter::CLASS,
            "drop, TIMEOUT 5, STREAMING_TIMEOUT 9, REAP_INTERVAL 1",
            1
        )
        .is_ok());
        assert!(configured(UDPRewriter::CLASS, "drop, TCP_TIMEOUT 5", 1).is_err());
        assert!(configured(TCPRewriter::CLASS, "drop, UDP_TIMEOUT 5", 1).is_err());
    }

    #[test]
    fn malformed_and_hostile_packets_never_panic_and_are_counted() {
        let mut r = rig(IPRewriter::CLASS, "pattern 192.0.2.1 1024-65535 - - 0 1, pass 1", 2);
        // Not IP at all, truncated, IPv6, a lying total length.
        let good = tcp(INSIDE, 5000, SERVER, 80, SYN, b"");
        let mut v6 = good.clone();
        v6[0] = 0x60;
        let mut long = good.clone();
        put16(&mut long, ip::LEN, 1500);
        for bad in [vec![], vec![0x45], good[..19].to_vec(), v6, long] {
            assert!(r.send(0, &bad).is_none());
            assert!(r.send(1, &bad).is_none(), "not even on a pass input");
        }
        assert_eq!(r.drop_count("bad IP header"), 10);
        // A TCP header cut short, and one with a data offset below 5.
        let mut short = ipv4_packet(INSIDE, SERVER, IP_PROTO_TCP, 64, 10);
        put16(&mut short, 20, 5000);
        assert!(r.send(0, &short).is_none());
        assert_eq!(r.send(1, &short).unwrap().0, 1, "a pass input passes it");
        let mut off = good.clone();
        off[32] = 0x40;
        assert!(r.send(0, &off).is_none());
        let short_udp = ipv4_packet(INSIDE, SERVER, IP_PROTO_UDP, 64, 7);
        assert!(r.send(0, &short_udp).is_none());
        assert_eq!(r.drop_count("bad transport header"), 3);
        // Fragments: the first is rewritten, later ones have no ports.
        let mut first = udp(INSIDE, 9, SERVER, 53, b"part one", true);
        put16(&mut first, ip::FRAG, ip::MF);
        crate::wire::set_ip_checksum(&mut first);
        let (_, got, _) = r.send(0, &first).unwrap();
        assert_eq!(ports(&got).0, a(PUBLIC));
        let mut later = ipv4_packet(INSIDE, SERVER, IP_PROTO_UDP, 64, 8);
        put16(&mut later, ip::FRAG, 1);
        crate::wire::set_ip_checksum(&mut later);
        assert!(r.send(0, &later).is_none());
        assert_eq!(r.send(1, &later).unwrap().0, 1);
        assert_eq!(r.drop_count("later fragments"), 1);
        // IP options: the transport header is found after them.
        let mut opts = vec![0u8; 24 + 20];
        opts[..20].copy_from_slice(&good[..20]);
        opts[0] = 0x46;
        opts[20..24].copy_from_slice(&[1, 1, 1, 0]);
        opts[24..].copy_from_slice(&good[20..]);
        put16(&mut opts, ip::LEN, 44);
        crate::wire::set_ip_checksum(&mut opts);
        fill_l4_checksum(&mut opts);
        let (_, got, _) = r.send(0, &opts).unwrap();
        assert_eq!(ports(&got).0, a(PUBLIC));
        assert!(checksums_ok(&got));
        // Without a network header annotation the data is the header.
        let mut b = Batch::new();
        b.push(Packet::from_data(&good));
        r.h.push(0, b);
        assert_eq!(r.h.count(0), 1);
    }

    #[test]
    fn icmp_errors_about_a_mapped_flow_are_translated() {
        let mut r = rig(IPRewriter::CLASS, SNAT, 2);
        let fwd = udp(INSIDE, 5000, SERVER, 53, b"query", true);
        let (_, sent, _) = r.send(0, &fwd).unwrap();
        // The server's port-unreachable quotes what it received.
        let err = icmp(SERVER, PUBLIC, 3, &sent[..28]);
        let (out, got, anno) = r.send(1, &err).unwrap();
        assert_eq!(out, 1, "the reply direction's output");
        assert_eq!((be32(&got, ip::SRC), be32(&got, ip::DST)), (a(SERVER), a(INSIDE)));
        assert_eq!(anno.dst_ip, a(INSIDE));
        assert!(Ipv4::new_checked(&got).unwrap().checksum_ok());
        assert_eq!(checksum(&got[20..]), 0, "ICMP checksum");
        // The quote is now exactly what the inside host sent.
        assert_eq!(got[28..], fwd[..28]);
        // A router on the way (not the quoted destination) keeps its
        // source; a TCP quote without its checksum is fine too.
        let (_, sent, _) = r.send(0, &tcp(INSIDE, 6000, SERVER, 80, SYN, b"")).unwrap();
        let router = [203, 0, 113, 1];
        let err = icmp(router, PUBLIC, 11, &sent[..28]);
        let (_, got, _) = r.send(1, &err).unwrap();
        assert_eq!((be32(&got, ip::SRC), be32(&got, ip::DST)), (a(router), a(INSIDE)));
        assert_eq!(be16(&got, 28 + 20), 6000);
        assert_eq!(checksum(&got[20..]), 0);
        assert_eq!(checksum(&got[28..48]), 0, "quoted IP checksum");
        // About no mapping: dropped and counted; cut short: the same.
        let stranger = udp(SERVER, 1, PUBLIC, 9, b"", true);
        assert!(r.send(1, &icmp(SERVER, PUBLIC, 3, &stranger[..28])).is_none());
        assert!(r.send(1, &icmp(SERVER, PUBLIC, 3, &sent[..24])).is_none());
        let mut bad_quote = sent[..28].to_vec();
        bad_quote[0] = 0x4f;
        assert!(r.send(1, &icmp(SERVER, PUBLIC, 3, &bad_quote)).is_none());
        assert_eq!(r.drop_count("unmapped ICMP errors"), 3);
    }

    #[test]
    fn udp_rewriter_maps_tcp_too_and_tcp_rewriter_only_tcp() {
        let mut r = rig(UDPRewriter::CLASS, SNAT, 2);
        let (_, got, _) = r.send(0, &tcp(INSIDE, 5000, SERVER, 80, SYN, b"")).unwrap();
        assert_eq!(ports(&got).1, 1024);
        assert!(checksums_ok(&got));
        let (_, got, _) = r.send(0, &udp(INSIDE, 5000, SERVER, 81, b"", true)).unwrap();
        assert_eq!(ports(&got).1, 1025);
        assert!(r.read("table").contains("exp300"));
        let mut r = rig(TCPRewriter::CLASS, SNAT, 2);
        assert!(r.send(0, &udp(INSIDE, 5000, SERVER, 81, b"", true)).is_none());
        assert!(r.send(0, &tcp(INSIDE, 5000, SERVER, 80, SYN, b"")).is_some());
        let lookup = r.hs.iter().find(|h| h.name == "lookup").unwrap();
        assert_eq!(
            (lookup.read_param.as_ref().unwrap())("10.0.0.2 5000 198.51.100.7 80").unwrap(),
            "192.0.2.1 1024 198.51.100.7 80"
        );
        assert!(r.read("mappings").contains("=>"));
    }

    #[test]
    fn reply_paint_and_dst_anno_follow_the_keywords() {
        let mut r = rig(
            IPRewriter::CLASS,
            &format!("{SNAT}, REPLY_ANNO PAINT, DST_ANNO false"),
            2,
        );
        let mut p = Packet::from_data(&udp(INSIDE, 1, SERVER, 53, b"", true));
        p.set_network_header(0, 20);
        p.anno.paint = 3;
        let mut b = Batch::new();
        b.push(p);
        r.h.push(0, b);
        assert_eq!(r.h.count(0), 1);
        let (_, _, anno) = r.send(1, &udp(SERVER, 53, PUBLIC, 1024, b"", true)).unwrap();
        assert_eq!(anno.paint, 3, "the forward packet's paint");
        assert_eq!(anno.dst_ip, 0, "no destination annotation");
    }

    #[test]
    fn a_mixed_batch_is_split_by_output() {
        let mut r = rig(IPRewriter::CLASS, "pattern 192.0.2.1 1024-65535 - - 0 1, drop", 2);
        r.send(0, &udp(INSIDE, 5000, SERVER, 53, b"", true)).unwrap();
        let mut b = Batch::new();
        for bytes in [
            udp(SERVER, 53, PUBLIC, 5000, b"", true),
            udp(SERVER, 53, PUBLIC, 2, b"", true),
            udp(INSIDE, 5000, SERVER, 53, b"", true),
            udp(SERVER, 53, PUBLIC, 5000, b"", true),
        ] {
            let mut p = Packet::from_data(&bytes);
            p.set_network_header(0, 20);
            b.push(p);
        }
        r.h.push(1, b);
        assert_eq!((r.h.count(0), r.h.count(1)), (1, 2));
    }

    /// An element of `class` standing for one whose state lives in
    /// `shared` (what a reload hands over), since the harness keeps the
    /// element it drove.
    fn predecessor(class: ElementClass, config: &str, outputs: usize, shared: &Arc<Shared>) -> Box<dyn Element> {
        let mut e = configured(class, config, outputs).unwrap();
        let any: &mut dyn std::any::Any = e.as_mut();
        any.downcast_mut::<IPRewriter>().unwrap().core_mut().shared = shared.clone();
        e
    }

    #[test]
    fn take_state_carries_mappings_that_fit_the_new_element() {
        let mut old = rig(IPRewriter::CLASS, SNAT, 2);
        old.at(5_000_000);
        old.send(0, &udp(INSIDE, 1, SERVER, 53, b"", true)).unwrap();
        old.send(0, &tcp(INSIDE, 2, SERVER, 80, SYN, b"")).unwrap();
        assert!(old.send(1, &udp(SERVER, 1, PUBLIC, 9, b"", true)).is_none());
        let mut new_e = configured(IPRewriter::CLASS, "pattern 192.0.2.1 3000-3010# - - 0 1, drop", 2).unwrap();
        new_e.take_state(predecessor(IPRewriter::CLASS, SNAT, 2, &old.shared));
        let mut r = rig_of(new_e, 2);
        r.at(5_000_000);
        assert_eq!(r.read("size"), "2");
        assert_eq!(r.drop_count("dropped by input spec"), 1, "counts carried");
        // Established flows keep the old translation both ways.
        let (_, got, _) = r.send(0, &udp(INSIDE, 1, SERVER, 53, b"", true)).unwrap();
        assert_eq!(ports(&got).1, 1024);
        let (out, back, _) = r.send(1, &tcp(SERVER, 80, PUBLIC, 1025, ACK, b"")).unwrap();
        assert_eq!((out, ports(&back).3), (1, 2));
        // New flows follow the new pattern.
        let (_, got, _) = r.send(0, &udp(INSIDE, 3, SERVER, 53, b"", true)).unwrap();
        assert_eq!(ports(&got).1, 3000);
        // A new element without the reply output cannot carry them; a
        // smaller capacity keeps the mappings that expire last.
        let mut narrow = configured(IPRewriter::CLASS, "pattern 192.0.2.1 - - - 0 0", 1).unwrap();
        narrow.take_state(predecessor(IPRewriter::CLASS, SNAT, 2, &r.shared));
        assert_eq!(rig_of(narrow, 1).read("size"), "0");
        let mut old = rig(IPRewriter::CLASS, SNAT, 2);
        for (i, sport) in [1u16, 2, 3].into_iter().enumerate() {
            old.at(1_000_000 + i as u64 * 10_000);
            old.send(0, &udp(INSIDE, sport, SERVER, 53, b"", true)).unwrap();
        }
        let mut small = configured(IPRewriter::CLASS, &format!("{SNAT}, MAPPING_CAPACITY 2"), 2).unwrap();
        small.take_state(predecessor(IPRewriter::CLASS, SNAT, 2, &old.shared));
        let small = rig_of(small, 2);
        assert_eq!(small.read("size"), "2");
        assert!(!small.read("table").contains("(10.0.0.2, 1, "));
    }

    proptest! {
        #[test]
        fn rewritten_checksums_equal_a_full_recomputation(
            src in any::<u32>(), dst in any::<u32>(), sport in 1u16.., dport in 1u16..,
            new_src in 1u32.., new_dst in prop::option::of(1u32..), new_dport in prop::option::of(1u16..),
            lo in 1u16..60000, is_tcp: bool, with_sum: bool, options: bool,
            payload in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let pattern = format!(
                "pattern {} {}-{} {} {} 0 1, drop",
                crate::wire::IpAddr(new_src), lo, lo + 100,
                new_dst.map_or("-".to_string(), |d| crate::wire::IpAddr(d).to_string()),
                new_dport.map_or("-".to_string(), |p| p.to_string()),
            );
            let mut r = rig(IPRewriter::CLASS, &pattern, 2);
            let (s, d) = (src.to_be_bytes(), dst.to_be_bytes());
            let mut pkt = if is_tcp {
                tcp(s, sport, d, dport, ACK, &payload)
            } else {
                udp(s, sport, d, dport, &payload, with_sum)
            };
            if options {
                let mut o = pkt[..20].to_vec();
                o[0] = 0x47;
                o.extend_from_slice(&[1, 1, 1, 1, 1, 1, 1, 0]);
                o.extend_from_slice(&pkt[20..]);
                let len = o.len() as u16;
                put16(&mut o, ip::LEN, len);
                crate::wire::set_ip_checksum(&mut o);
                if is_tcp || with_sum {
                    fill_l4_checksum(&mut o);
                }
                pkt = o;
            }
            let (out, got, _) = r.send(0, &pkt).unwrap();
            prop_assert_eq!(out, 0);
            prop_assert!(checksums_ok(&got));
            let (gs, gsp, gd, gdp) = ports(&got);
            prop_assert_eq!(gs, new_src);
            prop_assert!((lo..=lo + 100).contains(&gsp));
            prop_assert_eq!(gd, new_dst.unwrap_or(dst));
            prop_assert_eq!(gdp, new_dport.unwrap_or(dport));
            // The reply comes back to the original flow, checksums whole.
            let reply = if is_tcp {
                tcp(gd.to_be_bytes(), gdp, gs.to_be_bytes(), gsp, ACK, &payload)
            } else {
                udp(gd.to_be_bytes(), gdp, gs.to_be_bytes(), gsp, &payload, with_sum)
            };
            let (out, back, _) = r.send(1, &reply).unwrap();
            prop_assert_eq!(out, 1);
            prop_assert!(checksums_ok(&back));
            prop_assert_eq!(ports(&back), (dst, dport, src, sport));
        }
    }
}
