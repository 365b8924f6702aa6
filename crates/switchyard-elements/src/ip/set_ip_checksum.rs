use crate::util::Drops;
use crate::wire::{self, checksum};
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler, Packet};

documented! {
    /// Recomputes the IP header checksum of each packet (Click's
    /// SetIPChecksum), over the header and its options, at the marked
    /// network header or else at the data start. Rarely needed: elements
    /// that change a header (DecIPTTL, SetIPDSCP) update the checksum
    /// themselves.
    ///
    /// A packet shorter than 20 bytes there, whose header length is below
    /// 20 bytes or runs past the end, or whose version is not 4, is
    /// dropped and counted. The version check is Switchyard's: Click would
    /// write a "checksum" into an IPv6 source address.
    ///
    /// A packet whose checksum is already right is left alone, so a packet
    /// a Tee shares is not copied for nothing.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// - `drops` (read): packets dropped as malformed.
    ///
    /// # Example
    /// ```text
    /// ... -> StoreData(8, \<01>) -> SetIPChecksum -> ...;
    /// ```
    pub struct SetIPChecksum {
        drops: Drops,
    }
}

impl SetIPChecksum {
    pub const CLASS: ElementClass = ElementClass {
        name: "SetIPChecksum",
        ports: "1/1",
        processing: "a/a",
        doc: SetIPChecksum::DOC,
        factory: SetIPChecksum::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(SetIPChecksum {
            drops: Drops::default(),
        }))
    }
}

/// Sets the checksum of the header at the network header (or the data
/// start); false if there is no usable IPv4 header there.
fn fix(p: &mut Packet) -> bool {
    let off = wire::ip_offset(p);
    let Some(hl) = wire::checked_header_len(&p.data()[off..]) else {
        return false;
    };
    if checksum(&p.data()[off..off + hl]) != 0 {
        wire::set_ip_checksum(&mut p.data_mut()[off..]);
    }
    true
}

impl Element for SetIPChecksum {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<SetIPChecksum>(old) {
            self.drops = old.drops;
        }
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        self.drops.retain(batch, fix);
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.drops.handler()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{ip, set_ip_checksum};
    use proptest::prelude::*;

    fn element() -> SetIPChecksum {
        SetIPChecksum {
            drops: Drops::default(),
        }
    }

    fn run(e: &mut SetIPChecksum, packets: Vec<Packet>) -> Vec<Packet> {
        let mut b = crate::testutil::batch(packets);
        e.simple_action(&mut b);
        b.drain().collect()
    }

    #[test]
    fn fixes_a_broken_checksum_at_the_data_start_or_network_header() {
        let good = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 12);
        let mut bad = good.clone();
        bad[ip::SUM] ^= 0x5a;
        let mut e = element();
        let out = run(&mut e, vec![Packet::from_data(&bad)]);
        assert_eq!(out[0].data(), &good[..]);

        let mut frame = vec![0x45u8; 14]; // an Ethernet header that looks like IP
        frame.extend_from_slice(&bad);
        let mut p = Packet::from_data(&frame);
        p.set_network_header(14, 20);
        let out = run(&mut e, vec![p]);
        assert_eq!(&out[0].data()[14..], &good[..]);
        assert_eq!(&out[0].data()[..14], &[0x45; 14]);
        assert_eq!(e.drops.get(), 0);
    }

    #[test]
    fn a_correct_shared_packet_is_not_copied() {
        let good = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 0);
        let p = Packet::from_data(&good);
        let keep = p.clone();
        let out = run(&mut element(), vec![p]);
        assert!(out[0].is_shared());
        drop(keep);
    }

    #[test]
    fn truncated_and_malformed_headers_are_dropped() {
        let good = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 0);
        let mut ihl4 = good.clone();
        ihl4[0] = 0x44;
        let mut options_past_end = good.clone();
        options_past_end[0] = 0x46;
        let mut v6 = good.clone();
        v6[0] = 0x65;
        let mut marked_past = Packet::from_data(&good);
        marked_past.set_network_header(8, 12);
        let mut e = element();
        let out = run(
            &mut e,
            vec![
                Packet::from_data(&good[..19]),
                Packet::from_data(&ihl4),
                Packet::from_data(&options_past_end),
                Packet::from_data(&v6),
                Packet::from_data(&[]),
                marked_past,
                Packet::from_data(&good),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(crate::testutil::read(&e.handlers(), "drops"), "6");
    }

    proptest! {
        #[test]
        fn checksum_equals_a_full_recomputation(
            words in 5usize..=15,
            bytes in proptest::collection::vec(any::<u8>(), 60),
            payload in 0usize..40,
            lead in 0usize..20,
        ) {
            let hl = words * 4;
            let mut header = bytes[..hl].to_vec();
            header[0] = 0x40 | words as u8;
            let mut frame = vec![0xa5; lead];
            frame.extend_from_slice(&header);
            frame.extend(std::iter::repeat_n(0x11, payload));
            let mut p = Packet::from_data(&frame);
            p.set_network_header(lead, hl);
            let out = run(&mut element(), vec![p]);
            prop_assert_eq!(out.len(), 1);
            let h = &out[0].data()[lead..lead + hl];
            prop_assert_eq!(checksum(h), 0);
            let mut full = header.clone();
            set_ip_checksum(&mut full);
            prop_assert_eq!(h, &full[..]);
        }
    }
}
