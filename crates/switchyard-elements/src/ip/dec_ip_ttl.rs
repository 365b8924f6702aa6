use crate::util::{self, Verdict};
use crate::wire::{self, ip};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, Packet};

documented! {
    /// Decrements the IP time-to-live; expired packets go to output 1.
    ///
    /// Expects IP packets: the header is at the network header annotation
    /// (set by CheckIPHeader), or at the data start. A packet whose TTL is
    /// 1 or 0 has expired: it goes to output 1 (usually an ICMPError for
    /// time exceeded) if that is connected, and is dropped otherwise.
    /// Otherwise the TTL goes down by one and the header checksum is
    /// updated incrementally (RFC 1624), not recomputed.
    ///
    /// Switchyard addition: a packet with no readable IPv4 header there
    /// (shorter than 20 bytes, or not version 4) is dropped and counted
    /// in `malformed`, instead of being read past its end.
    ///
    /// # Ports
    /// One input; one or two outputs (output 1 for expired packets, push,
    /// in pull mode too). Agnostic.
    ///
    /// # Arguments
    /// - `ACTIVE`: when false, pass every packet untouched. Default true.
    /// - `MULTICAST`: when false, leave the TTL of multicast packets
    ///   (224.0.0.0/4) alone. Default true.
    ///
    /// # Handlers
    /// - `count` (read): packets whose TTL was decremented.
    /// - `drops` (read): expired packets.
    /// - `malformed` (read): packets without a readable IPv4 header.
    /// - `active` (read/write): as the keyword.
    ///
    /// # Example
    /// ```text
    /// ... -> dt :: DecIPTTL -> IPFragmenter(1500) -> ...;
    /// dt[1] -> ICMPError(10.0.0.1, timeexceeded) -> rt;
    /// ```
    pub struct DecIPTTL {
        multicast: bool,
        active: Arc<AtomicBool>,
        stats: Arc<Stats>,
    }
}

#[derive(Default)]
struct Stats {
    count: AtomicU64,
    drops: AtomicU64,
    malformed: AtomicU64,
}

/// Why a TTL was left alone.
enum Refusal {
    Expired,
    Malformed,
}

impl DecIPTTL {
    pub const CLASS: ElementClass = ElementClass {
        name: "DecIPTTL",
        ports: "1/1-2",
        processing: "a/ah",
        doc: DecIPTTL::DOC,
        factory: DecIPTTL::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let active = args.read("ACTIVE").unwrap_or(true);
        let multicast = args.read("MULTICAST").unwrap_or(true);
        if args.has_errors() {
            return None;
        }
        Some(Box::new(DecIPTTL {
            multicast,
            active: Arc::new(AtomicBool::new(active)),
            stats: Arc::default(),
        }))
    }

    /// Decrements `p`'s TTL, or says why not.
    #[inline(always)]
    fn decrement(&self, p: &mut Packet) -> Result<(), Refusal> {
        let off = wire::ip_offset(p);
        let Some(h) = p.data().get(off..off + ip::MIN_LEN) else {
            return Err(Refusal::Malformed);
        };
        if h[0] >> 4 != 4 {
            return Err(Refusal::Malformed);
        }
        if !self.multicast && h[ip::DST] & 0xf0 == 0xe0 {
            return Ok(());
        }
        if h[ip::TTL] <= 1 {
            return Err(Refusal::Expired);
        }
        let h = &mut p.data_mut()[off..off + ip::MIN_LEN];
        // TTL and protocol share a 16-bit word: TTL is its high byte.
        let old = wire::be16(h, ip::TTL);
        let new = old - 0x100;
        wire::put16(h, ip::TTL, new);
        let sum = wire::update16(wire::be16(h, ip::SUM), old, new);
        wire::put16(h, ip::SUM, sum);
        Ok(())
    }

    /// Decrements the TTLs of `batch`; returns the expired packets when
    /// `refused` says to keep them for output 1.
    fn process(&mut self, batch: &mut Batch, refused: Verdict) -> Option<Batch> {
        if !self.active.load(Relaxed) {
            return None;
        }
        let (mut expired, mut malformed) = (0u64, 0u64);
        let rejects = util::sort_out(batch, |p| match self.decrement(p) {
            Ok(()) => Verdict::Pass,
            Err(Refusal::Expired) => {
                expired += 1;
                refused
            }
            Err(Refusal::Malformed) => {
                malformed += 1;
                Verdict::Drop
            }
        });
        self.stats.count.fetch_add(batch.len() as u64, Relaxed);
        if expired > 0 {
            self.stats.drops.fetch_add(expired, Relaxed);
        }
        if malformed > 0 {
            self.stats.malformed.fetch_add(malformed, Relaxed);
        }
        rejects
    }
}

impl Element for DecIPTTL {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let rejects = self.process(&mut batch, Verdict::refused(cx));
        util::push_sorted(cx, batch, rejects);
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let rejects = self.process(&mut batch, Verdict::refused(cx));
        util::push_rejects(cx, rejects);
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        let (c, d, m) = (self.stats.clone(), self.stats.clone(), self.stats.clone());
        vec![
            Handler::read_only("count", move || c.count.load(Relaxed).to_string()),
            Handler::read_only("drops", move || d.drops.load(Relaxed).to_string()),
            Handler::read_only("malformed", move || m.malformed.load(Relaxed).to_string()),
            crate::util::flag_handler("active", &self.active),
        ]
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = switchyard_core::downcast::<DecIPTTL>(old) {
            self.stats = old.stats.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{element, read as get};
    use crate::wire::tests::ipv4_packet;
    use crate::wire::Ipv4;
    use switchyard_core::runtime::Harness;

    fn harness(config: &str) -> (Harness, Vec<Handler>) {
        let e = element(DecIPTTL::CLASS, config);
        let hs = e.handlers();
        (Harness::new(e, 1, 2), hs)
    }

    fn packets(h: &mut Harness, port: usize) -> Vec<Vec<u8>> {
        crate::testutil::packets(h.take(port))
            .iter()
            .map(|p| p.data().to_vec())
            .collect()
    }

    #[test]
    fn decrements_with_a_correct_checksum_and_sends_expired_to_output_1() {
        let (mut h, hs) = harness("");
        let mut b = Batch::new();
        for ttl in [64, 1, 2, 0, 255] {
            b.push(Packet::from_data(&ipv4_packet([10, 0, 0, 1], [10, 0, 1, 1], 6, ttl, 4)));
        }
        b.push(Packet::from_data(&[0x45, 0, 0]));
        h.push(0, b);
        let out = packets(&mut h, 0);
        let ttls: Vec<u8> = out.iter().map(|d| d[ip::TTL]).collect();
        assert_eq!(ttls, [63, 1, 254]);
        for d in &out {
            assert!(Ipv4::new_checked(d).unwrap().checksum_ok());
        }
        let expired = packets(&mut h, 1);
        assert_eq!(expired.iter().map(|d| d[ip::TTL]).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(get(&hs, "count"), "3");
        assert_eq!(get(&hs, "drops"), "2");
        assert_eq!(get(&hs, "malformed"), "1");
    }

    #[test]
    fn uses_the_network_header_annotation() {
        let (mut h, _) = harness("");
        let mut frame = vec![0u8; 14];
        frame.extend(ipv4_packet([1, 2, 3, 4], [5, 6, 7, 8], 17, 10, 0));
        let mut p = Packet::from_data(&frame);
        p.set_network_header(14, 20);
        let mut b = Batch::new();
        b.push(p);
        h.push(0, b);
        assert_eq!(packets(&mut h, 0)[0][14 + ip::TTL], 9);
    }

    #[test]
    fn multicast_false_and_inactive_leave_ttl_alone() {
        let (mut h, _) = harness("MULTICAST false");
        let mut b = Batch::new();
        b.push(Packet::from_data(&ipv4_packet([1, 2, 3, 4], [224, 0, 0, 5], 17, 1, 0)));
        h.push(0, b);
        assert_eq!(packets(&mut h, 0)[0][ip::TTL], 1);
        let (mut h, _) = harness("ACTIVE false");
        let mut b = Batch::new();
        b.push(Packet::from_data(&ipv4_packet([1, 2, 3, 4], [5, 6, 7, 8], 17, 9, 0)));
        h.push(0, b);
        assert_eq!(packets(&mut h, 0)[0][ip::TTL], 9);
    }

    #[test]
    fn shared_packets_are_copied_before_the_write() {
        let (mut h, _) = harness("");
        let p = Packet::from_data(&ipv4_packet([1, 2, 3, 4], [5, 6, 7, 8], 17, 9, 0));
        let keep = p.clone();
        let mut b = Batch::new();
        b.push(p);
        h.push(0, b);
        assert_eq!(keep.data()[ip::TTL], 9);
        assert_eq!(packets(&mut h, 0)[0][ip::TTL], 8);
    }

    proptest::proptest! {
        #[test]
        fn checksum_equals_full_recomputation(
            src in proptest::array::uniform4(0u8..=255),
            dst in proptest::array::uniform4(0u8..=255),
            ttl in 2u8..=255, proto in 0u8..=255, tos in 0u8..=255, id in 0u16..=65535,
        ) {
            let mut d = ipv4_packet(src, dst, proto, ttl, 3);
            d[ip::TOS] = tos;
            wire::put16(&mut d, ip::ID, id);
            wire::set_ip_checksum(&mut d);
            let (mut h, _) = harness("");
            let mut b = Batch::new();
            b.push(Packet::from_data(&d));
            h.push(0, b);
            let out = packets(&mut h, 0);
            let mut expect = out[0].clone();
            wire::set_ip_checksum(&mut expect);
            proptest::prop_assert_eq!(&out[0], &expect);
            proptest::prop_assert_eq!(out[0][ip::TTL], ttl - 1);
        }
    }
}
