//! IPFragmenter: splits IP packets longer than the MTU into fragments (RFC
//! 791). A batch whose packets all fit passes as it is; otherwise the first
//! fragment is the original packet cut short, and the others are new pooled
//! packets.

use super::ip_options::{self, IPOPT_COPIED, IPOPT_EOL};
use crate::rng::Rng;
use crate::util::Warnings;
use crate::wire::{self, ip, put16, IpAddr, Ipv4};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::packet::MAX_BATCH;
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, Packet};

documented! {
    /// Fragments IP packets larger than MTU (Click's IPFragmenter).
    ///
    /// A packet whose IP part (from the network header on) fits in MTU
    /// bytes leaves on output 0 as it is. A larger one with the
    /// don't-fragment bit set goes to output 1 (usually an
    /// `ICMPError(ADDR, unreachable, needfrag, PMTU MTU)`), or is dropped
    /// without it, and is counted in `drops`; so is a packet whose header
    /// leaves no 8 bytes of payload per fragment. Any other is split into
    /// fragments of at most MTU bytes, sent in order on output 0: payload
    /// offsets in 8-byte units, more-fragments set on all but the last
    /// (and on the last too when the packet was itself a non-final
    /// fragment: fragments of fragments keep their place in the original
    /// datagram), options copied to later fragments only when their copy
    /// flag is set, and each header's checksum computed. Every fragment
    /// carries the packet's annotations; the first keeps any bytes before
    /// the network header, the others start at their IP header.
    ///
    /// With HONOR_DF false, packets with DF are fragmented too; their DF bit
    /// is cleared and, as the sender's identifier cannot be trusted to be
    /// unique for fragments, they get a random one (as in Click).
    ///
    /// The IP header is found by the network header annotation
    /// (CheckIPHeader sets it), or at the data start without one.
    ///
    /// Differences from Click: a packet over MTU only because of link
    /// padding after its IP total length is cut to that length rather than
    /// fragmented; a malformed IP header, or one whose fragments would run
    /// past the largest fragment offset, is dropped (counted in `drops`)
    /// rather than trusted. HEADROOM is accepted and ignored: every packet
    /// here has the pool's fixed headroom.
    ///
    /// # Ports
    /// One input; one or two outputs (output 1 for packets with DF over
    /// MTU). Push.
    ///
    /// # Arguments
    /// - `MTU` (positional or keyword, mandatory): the largest IP packet
    ///   sent, at least 8.
    /// - `HONOR_DF` (positional or keyword): send packets with DF over MTU
    ///   to output 1. Default true.
    /// - `VERBOSE` (positional or keyword): log every packet not
    ///   fragmented, not only the first (logs are rate-limited to one a
    ///   second either way). Default false.
    /// - `HEADROOM`: accepted for Click compatibility.
    ///
    /// # Handlers
    /// - `fragments` (read): fragments sent.
    /// - `drops` (read): packets not fragmented (DF over MTU, or
    ///   malformed).
    ///
    /// # Example
    /// ```text
    /// ... -> fr :: IPFragmenter(1500) -> [0]arpq;
    /// fr[1] -> ICMPError(10.0.1.1, unreachable, needfrag, PMTU 1500) -> rt;
    /// ```
    pub struct IPFragmenter {
        mtu: usize,
        honor_df: bool,
        warnings: Warnings,
        stats: Arc<Stats>,
        rng: Rng,
    }
}

#[derive(Default)]
struct Stats {
    fragments: AtomicU64,
    drops: AtomicU64,
}

/// What one packet became.
enum Outcome {
    /// Passed whole (maybe trimmed) or fragmented: how many fragments.
    Sent(u64),
    /// Not sent on output 0: too big to fragment (to output 1) or
    /// malformed.
    Dropped,
}

/// A packet that could not be fragmented, for the log.
struct Unfragmentable {
    src: u32,
    dst: u32,
    len: usize,
    /// DF set, rather than too long a header for 8 bytes of payload.
    df: bool,
}

impl IPFragmenter {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPFragmenter",
        ports: "1/1-2",
        processing: "h/h",
        doc: IPFragmenter::DOC,
        factory: IPFragmenter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let mtu = args.read_mp::<u32>("MTU");
        let honor_df = args.read_p::<bool>("HONOR_DF").unwrap_or(true);
        let verbose = args.read_p::<bool>("VERBOSE").unwrap_or(false);
        let _headroom: Option<u32> = args.read("HEADROOM");
        let mtu = mtu?;
        if !(8..=65535).contains(&mtu) {
            args.error(Some(args.span_of("MTU")), "MTU must be 8 to 65535");
        }
        if args.has_errors() {
            return None;
        }
        Some(Box::new(IPFragmenter {
            mtu: mtu as usize,
            honor_df,
            warnings: Warnings::new(verbose),
            stats: Arc::default(),
            rng: Rng::new(),
        }))
    }

    #[inline]
    fn fits(&self, p: &Packet) -> bool {
        p.len() - wire::ip_offset(p) <= self.mtu
    }

    /// Sends `p` on output 0 through `out`, fragmented if needed; a packet
    /// with DF over MTU, or whose header leaves no room for 8 bytes of
    /// payload, goes into `too_big` and, if it is the first, into `noted`.
    fn handle(
        &mut self,
        mut p: Packet,
        out: &mut Output<'_, '_>,
        too_big: &mut Batch,
        noted: &mut Option<Unfragmentable>,
    ) -> Outcome {
        let mtu = self.mtu;
        let off = wire::ip_offset(&p);
        let nlen = p.len() - off;
        if nlen <= mtu {
            out.send(p);
            return Outcome::Sent(0);
        }
        let Ok(iph) = Ipv4::new_checked(&p.data()[off..]) else {
            return Outcome::Dropped;
        };
        let (hl, total, frag) = (iph.header_len(), iph.total_len(), iph.frag());
        if total <= mtu {
            p.take(nlen - total);
            out.send(p);
            return Outcome::Sent(0);
        }
        let first_dlen = mtu.saturating_sub(hl) & !7;
        let df = frag & ip::DF != 0;
        let df_refused = df && self.honor_df;
        if df_refused || first_dlen < 8 {
            noted.get_or_insert(Unfragmentable {
                src: iph.src(),
                dst: iph.dst(),
                len: total,
                df: df_refused,
            });
            too_big.push(p);
            return Outcome::Dropped;
        }
        let in_dlen = total - hl;
        // A hostile offset would carry into the flag bits.
        if usize::from(frag & ip::OFFMASK) + in_dlen.div_ceil(8) > usize::from(ip::OFFMASK) + 1 {
            return Outcome::Dropped;
        }

        // The header of the later fragments, from the original's.
        let mut later = [0u8; ip::MAX_HEADER];
        later[..ip::MIN_LEN].copy_from_slice(&iph.header()[..ip::MIN_LEN]);
        let out_hlen = ip::MIN_LEN + copy_options(iph.header(), &mut later[ip::MIN_LEN..]);
        later[0] = 0x40 | (out_hlen / 4) as u8;

        let had_mf = frag & ip::MF != 0;
        let mut base = frag | ip::MF;
        let id = if df {
            base &= !ip::DF;
            self.rng.next_u32() as u16
        } else {
            iph.id()
        };
        put16(&mut later, ip::ID, id);
        {
            let h = &mut p.data_mut()[off..];
            put16(h, ip::ID, id);
            put16(h, ip::FRAG, base);
            put16(h, ip::LEN, (hl + first_dlen) as u16);
            wire::set_ip_checksum(h);
        }

        // The first fragment shares the buffer with `p`, which the later
        // ones are copied from; once `p` goes, it is the buffer's owner
        // again (unless a full batch left before that).
        let mut first = p.clone();
        first.take(nlen - hl - first_dlen);
        out.send(first);
        let step = mtu.saturating_sub(out_hlen) & !7;
        let mut at = first_dlen;
        let mut count = 1;
        while at < in_dlen {
            let dlen = step.min(in_dlen - at);
            let mut q = Packet::with_len(out_hlen + dlen);
            let d = q.data_mut();
            d[..out_hlen].copy_from_slice(&later[..out_hlen]);
            let from = off + hl + at;
            d[out_hlen..].copy_from_slice(&p.data()[from..from + dlen]);
            let last = at + dlen >= in_dlen;
            let mut f = base + (at / 8) as u16;
            if last && !had_mf {
                f &= !ip::MF;
            }
            put16(d, ip::FRAG, f);
            put16(d, ip::LEN, (out_hlen + dlen) as u16);
            wire::set_ip_checksum(d);
            q.anno = p.anno;
            q.set_network_header(0, out_hlen);
            out.send(q);
            at += dlen;
            count += 1;
        }
        Outcome::Sent(count)
    }
}

/// Output 0 in batches of at most [`MAX_BATCH`]: fragments can multiply
/// a batch many times over.
struct Output<'a, 'b> {
    batch: Batch,
    cx: &'a mut Context<'b>,
}

impl Output<'_, '_> {
    fn send(&mut self, p: Packet) {
        self.batch.push(p);
        if self.batch.len() >= MAX_BATCH {
            self.cx.push(0, std::mem::take(&mut self.batch));
        }
    }
}

/// Copies the options of header `h` whose copied flag is set into `out`,
/// padded with EOL to a multiple of 4 bytes; returns the length written.
/// NOPs are not copied; a malformed option ends the copy.
fn copy_options(h: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for opt in ip_options::options(h).map_while(Result::ok) {
        if opt.kind() & IPOPT_COPIED != 0 {
            out[n..n + opt.bytes.len()].copy_from_slice(opt.bytes);
            n += opt.bytes.len();
        }
    }
    while n % 4 != 0 {
        out[n] = IPOPT_EOL;
        n += 1;
    }
    n
}

impl Element for IPFragmenter {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let Some(first_big) = batch.iter().position(|p| !self.fits(p)) else {
            cx.push(0, batch);
            return;
        };
        let mut rest = batch.split_off(first_big);
        let mut too_big = Batch::new();
        let mut noted = None;
        let (mut fragments, mut drops) = (0u64, 0u64);
        let mut out = Output { batch, cx };
        for p in rest.drain() {
            match self.handle(p, &mut out, &mut too_big, &mut noted) {
                Outcome::Sent(n) => fragments += n,
                Outcome::Dropped => drops += 1,
            }
        }
        drop(rest);
        if fragments > 0 {
            self.stats.fragments.fetch_add(fragments, Relaxed);
        }
        if drops > 0 {
            self.stats.drops.fetch_add(drops, Relaxed);
        }
        if let Some(u) = noted.filter(|_| self.warnings.due()) {
            let why = if u.df {
                "packet with DF longer than MTU"
            } else {
                "header too long to fragment for MTU"
            };
            tracing::warn!(mtu = self.mtu, src = %IpAddr(u.src), dst = %IpAddr(u.dst), len = u.len, "{why}");
        }
        let Output { batch, cx } = out;
        if !batch.is_empty() {
            cx.push(0, batch);
        }
        if !too_big.is_empty() && cx.noutputs() > 1 {
            cx.push(1, too_big);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (f, d) = (self.stats.clone(), self.stats.clone());
        vec![
            Handler::read_only("fragments", move || f.fragments.load(Relaxed).to_string()),
            Handler::read_only("drops", move || d.drops.load(Relaxed).to_string()),
        ]
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<IPFragmenter>(old) {
            self.stats = old.stats.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::ip_options::{IPOPT_LSRR, IPOPT_NOP, IPOPT_RR};
    use crate::testutil::{marked, push_through, read};
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{be16, IP_PROTO_UDP};
    use proptest::prelude::*;
    use switchyard_core::runtime::Harness;

    struct Run {
        out: Vec<Packet>,
        df: Vec<Packet>,
        fragments: String,
        drops: String,
    }

    fn element(config: &str) -> Box<dyn Element> {
        crate::testutil::element(IPFragmenter::CLASS, config)
    }

    fn run(config: &str, outputs: usize, packets: Vec<Packet>) -> Run {
        let e = element(config);
        let hs = e.handlers();
        let mut out = push_through(e, outputs, packets).into_iter();
        Run {
            out: out.next().unwrap(),
            df: out.next().unwrap_or_default(),
            fragments: read(&hs, "fragments"),
            drops: read(&hs, "drops"),
        }
    }

    /// A UDP datagram of `payload` patterned bytes, DF clear, header
    /// options `opts` (a multiple of 4 long).
    fn datagram(payload: usize, opts: &[u8]) -> Vec<u8> {
        let mut v = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_UDP, 64, opts.len() + payload);
        put16(&mut v, ip::FRAG, 0);
        v[0] = 0x40 | ((20 + opts.len()) / 4) as u8;
        v[20..20 + opts.len()].copy_from_slice(opts);
        for (i, b) in v[20 + opts.len()..].iter_mut().enumerate() {
            *b = (i * 7 + i / 256) as u8;
        }
        wire::set_ip_checksum(&mut v);
        v
    }

    /// Checks each fragment and reassembles the payload: (payload, whether
    /// the last fragment has MF, the first fragment's offset).
    fn reassemble(frags: &[Packet], mtu: usize) -> (Vec<u8>, bool, usize) {
        let mut data = Vec::new();
        let mut last_mf = false;
        let mut first_off = None;
        for p in frags {
            let iph = Ipv4::new_checked(p.data()).expect("valid fragment");
            assert!(iph.checksum_ok());
            assert!(p.len() <= mtu);
            assert_eq!(iph.total_len(), p.len());
            assert_eq!(p.network_offset(), Some(0));
            let off = usize::from(iph.frag() & ip::OFFMASK) * 8;
            let base = *first_off.get_or_insert(off);
            assert_eq!(off - base, data.len(), "fragments are contiguous");
            if !std::ptr::eq(p, frags.last().unwrap()) {
                assert_ne!(iph.frag() & ip::MF, 0);
                assert_eq!(iph.payload().len() % 8, 0);
            }
            last_mf = iph.frag() & ip::MF != 0;
            data.extend_from_slice(iph.payload());
        }
        (data, last_mf, first_off.unwrap_or(0))
    }

    #[test]
    fn small_packets_pass_untouched() {
        let v = datagram(100, &[]);
        let r = run("1500", 2, vec![marked(&v), marked(&v)]);
        assert_eq!(r.out.len(), 2);
        assert_eq!(r.out[0].data(), &v[..]);
        assert_eq!((r.fragments.as_str(), r.drops.as_str()), ("0", "0"));
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let v = datagram(3000, &[]);
        let mut p = marked(&v);
        p.anno.paint = 4;
        p.anno.dst_ip = 0x0a000002;
        let r = run("1500", 2, vec![p]);
        assert_eq!(r.out.len(), 3);
        let lens: Vec<usize> = r.out.iter().map(Packet::len).collect();
        assert_eq!(lens, vec![1500, 1500, 60]);
        let offs: Vec<u16> = r.out.iter().map(|p| be16(p.data(), ip::FRAG)).collect();
        assert_eq!(offs, vec![ip::MF, ip::MF | 185, 370]);
        let (data, last_mf, _) = reassemble(&r.out, 1500);
        assert_eq!(&data[..], &v[20..]);
        assert!(!last_mf);
        for p in &r.out {
            assert_eq!(be16(p.data(), ip::ID), 0x1c46);
            assert_eq!((p.anno.paint, p.anno.dst_ip), (4, 0x0a000002));
        }
        assert_eq!(r.fragments, "3");
    }

    #[test]
    fn df_goes_to_output_1_or_is_dropped() {
        let mut v = datagram(2000, &[]);
        put16(&mut v, ip::FRAG, ip::DF);
        wire::set_ip_checksum(&mut v);
        let r = run("1500", 2, vec![marked(&v), marked(&datagram(10, &[]))]);
        assert_eq!(r.out.len(), 1);
        assert_eq!(r.df.len(), 1);
        assert_eq!(r.df[0].data(), &v[..]);
        assert_eq!(r.drops, "1");
        let r = run("1500", 1, vec![marked(&v)]);
        assert!(r.out.is_empty());
        assert_eq!(r.drops, "1");
        // HONOR_DF false: fragmented, DF cleared.
        let r = run("1500, false", 2, vec![marked(&v)]);
        assert_eq!(r.out.len(), 2);
        assert!(r.df.is_empty());
        let id = be16(r.out[0].data(), ip::ID);
        for p in &r.out {
            assert_eq!(be16(p.data(), ip::FRAG) & ip::DF, 0);
            assert_eq!(be16(p.data(), ip::ID), id);
        }
        assert_eq!(reassemble(&r.out, 1500).0, &v[20..]);
    }

    #[test]
    fn fragmenting_a_fragment_keeps_offset_and_mf() {
        // A middle fragment: offset 1480 bytes (185 units), MF set.
        let mut v = datagram(1480, &[]);
        put16(&mut v, ip::FRAG, ip::MF | 185);
        wire::set_ip_checksum(&mut v);
        let r = run("576", 2, vec![marked(&v)]);
        let (data, last_mf, first_off) = reassemble(&r.out, 576);
        assert_eq!(&data[..], &v[20..]);
        assert!(last_mf, "still not the datagram's end");
        assert_eq!(first_off, 1480);
        // The last fragment: MF clear on the last piece only.
        put16(&mut v, ip::FRAG, 185);
        wire::set_ip_checksum(&mut v);
        let r = run("576", 2, vec![marked(&v)]);
        let (_, last_mf, _) = reassemble(&r.out, 576);
        assert!(!last_mf);
        assert_eq!(r.out.len(), 3);
    }

    #[test]
    fn only_copied_options_reach_later_fragments() {
        // NOP, record route (not copied), LSRR (copied), EOL padding.
        let opts = [
            IPOPT_NOP, IPOPT_RR, 7, 4, 0, 0, 0, 0, IPOPT_LSRR, 7, 4, 1, 2, 3, 4, IPOPT_EOL,
        ];
        let v = datagram(1000, &opts);
        let r = run("600", 2, vec![marked(&v)]);
        assert_eq!(&r.out[0].data()[20..36], &opts);
        for p in &r.out[1..] {
            let d = p.data();
            assert_eq!(d[0] & 0xf, 7, "20 + 8 bytes of options");
            assert_eq!(&d[20..28], &[IPOPT_LSRR, 7, 4, 1, 2, 3, 4, IPOPT_EOL]);
        }
        assert_eq!(reassemble(&r.out, 600).0, &v[36..]);
    }

    #[test]
    fn link_header_stays_on_the_first_fragment() {
        let v = datagram(2000, &[]);
        let mut framed = vec![0xee; 14];
        framed.extend_from_slice(&v);
        let mut p = Packet::from_data(&framed);
        p.set_network_header(14, 20);
        let r = run("1500", 2, vec![p]);
        assert_eq!(&r.out[0].data()[..14], &[0xee; 14]);
        assert_eq!(r.out[0].len(), 14 + 1500);
        assert_eq!(r.out[0].network_offset(), Some(14));
        assert_eq!(r.out[1].network_offset(), Some(0));
        let mut first = r.out[0].clone();
        first.pull(14);
        let all: Vec<Packet> = std::iter::once(first).chain(r.out[1..].iter().cloned()).collect();
        assert_eq!(reassemble(&all, 1500).0, &v[20..]);
    }

    #[test]
    fn unmarked_and_padded_and_malformed_packets() {
        // No annotation: the data start.
        let v = datagram(2000, &[]);
        let r = run("1500", 2, vec![Packet::from_data(&v)]);
        assert_eq!(r.out.len(), 2);
        // Padding after the total length is cut, not fragmented.
        let mut padded = datagram(1400, &[]);
        padded.resize(1600, 0);
        let r = run("1500", 2, vec![marked(&padded)]);
        assert_eq!(r.out.len(), 1);
        assert_eq!(r.out[0].len(), 1420);
        // Malformed and large: dropped, counted, never on output 1.
        let mut bad = Vec::new();
        let mut ihl = datagram(2000, &[]);
        ihl[0] = 0x43;
        bad.push(ihl);
        let mut len = datagram(2000, &[]);
        put16(&mut len, ip::LEN, 4000);
        bad.push(len);
        bad.push(vec![0x60; 2000]);
        let mut far = datagram(2000, &[]);
        put16(&mut far, ip::FRAG, ip::OFFMASK - 10);
        wire::set_ip_checksum(&mut far);
        bad.push(far);
        let r = run("1500", 2, bad.iter().map(|b| marked(b)).collect());
        assert!(r.out.is_empty() && r.df.is_empty());
        assert_eq!(r.drops, "4");
        // A header that leaves no 8 bytes of payload goes to output 1.
        let opts = [IPOPT_NOP; 40];
        let r = run("64", 2, vec![marked(&datagram(100, &opts))]);
        assert_eq!(r.df.len(), 1);
    }

    #[test]
    fn many_fragments_leave_in_bounded_batches() {
        let v = datagram(1400, &[]);
        let e = element("68");
        let mut h = Harness::new(e, 1, 2);
        let mut b = Batch::new();
        for _ in 0..20 {
            b.push(marked(&v));
        }
        h.push(0, b);
        let batches = h.take(0);
        assert!(batches.iter().all(|b| b.len() <= MAX_BATCH));
        // 1400 bytes in 48-byte pieces: 30 fragments each.
        assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 20 * 30);
    }

    #[test]
    fn config_errors() {
        for bad in ["", "4", "1500, maybe", "1500, HEADROOM x"] {
            let mut args = Args::parse_str("fr :: IPFragmenter", bad);
            let e = IPFragmenter::make(&mut args);
            assert!(e.is_none() || args.complete().is_err(), "{bad}");
        }
        let mut args = Args::parse_str(
            "fr :: IPFragmenter",
            "MTU 1500, HONOR_DF false, VERBOSE true, HEADROOM 64",
        );
        assert!(IPFragmenter::make(&mut args).is_some());
        assert!(args.complete().is_ok());
    }

    proptest! {
        #[test]
        fn fragments_checksums_and_payload(
            payload in 0usize..4000,
            mtu in 68usize..2000,
            opt_words in 0usize..10,
            frag_off in 0u16..100,
            mf in any::<bool>(),
        ) {
            let mut opts = vec![IPOPT_NOP; opt_words * 4];
            if opt_words >= 2 {
                opts[..7].copy_from_slice(&[IPOPT_LSRR, 7, 4, 1, 2, 3, 4]);
            }
            let mut v = datagram(payload, &opts);
            put16(&mut v, ip::FRAG, frag_off | if mf { ip::MF } else { 0 });
            wire::set_ip_checksum(&mut v);
            let r = run(&mtu.to_string(), 2, vec![marked(&v)]);
            if r.df.is_empty() {
                for p in &r.out {
                    let mut fresh = p.data().to_vec();
                    wire::set_ip_checksum(&mut fresh);
                    prop_assert_eq!(be16(&fresh, ip::SUM), be16(p.data(), ip::SUM));
                }
                let (data, last_mf, first_off) = reassemble(&r.out, mtu);
                prop_assert_eq!(&data[..], &v[20 + opts.len()..]);
                prop_assert_eq!(last_mf, mf);
                prop_assert_eq!(first_off, usize::from(frag_off) * 8);
            } else {
                prop_assert!(v.len() > mtu);
            }
        }
    }
}
