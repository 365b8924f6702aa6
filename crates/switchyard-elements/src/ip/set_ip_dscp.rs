use crate::util::Drops;
use crate::wire::{be16, checked_header_len, ip, put16, update16};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::handler::parse_in_range;
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler, Packet};

documented! {
    /// Sets the Differentiated Services Code Point, the upper six bits of
    /// the IP TOS byte, to DSCP, keeping the two ECN bits, and updates the
    /// header checksum incrementally (RFC 1624) (Click's SetIPDSCP).
    ///
    /// Works on the marked network header (CheckIPHeader or MarkIPHeader
    /// upstream). Click requires one; Switchyard drops and counts a packet
    /// without one, or whose header there is shorter than 20 bytes, has a
    /// header length below 20 or past the end, or a version other than 4.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `DSCP` (positional, mandatory): the code point, 0 to 63.
    ///
    /// # Handlers
    /// - `dscp` (read/write): DSCP; a write out of range is refused, and
    ///   one accepted applies from the next batch.
    /// - `drops` (read): packets dropped as malformed (Switchyard's).
    ///
    /// # Example
    /// ```text
    /// CheckIPHeader -> SetIPDSCP(46) -> ...;  // expedited forwarding
    /// ```
    pub struct SetIPDSCP {
        dscp: Arc<AtomicU8>,
        drops: Drops,
    }
}

impl SetIPDSCP {
    pub const CLASS: ElementClass = ElementClass {
        name: "SetIPDSCP",
        ports: "1/1",
        processing: "a/a",
        doc: SetIPDSCP::DOC,
        factory: SetIPDSCP::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let dscp = args.read_mp::<u32>("DSCP")?;
        if dscp > 0x3f {
            args.error(Some(args.span_of("DSCP")), "diffserv code point out of range (0 to 63)");
            return None;
        }
        Some(Box::new(SetIPDSCP {
            dscp: Arc::new(AtomicU8::new(dscp as u8)),
            drops: Drops::default(),
        }))
    }
}

/// Sets the DSCP bits (already shifted into place) of the packet's
/// network header; false if there is no usable IPv4 header.
fn set_dscp(p: &mut Packet, bits: u8) -> bool {
    let Some(h) = p.network_header() else {
        return false;
    };
    if checked_header_len(h).is_none() {
        return false;
    }
    let tos = (h[ip::TOS] & 0x3) | bits;
    if tos == h[ip::TOS] {
        // Nothing to change: a shared packet is not copied.
        return true;
    }
    let Some(h) = p.network_header_mut() else {
        return false;
    };
    let old = be16(h, 0);
    h[ip::TOS] = tos;
    let sum = update16(be16(h, ip::SUM), old, be16(h, 0));
    put16(h, ip::SUM, sum);
    true
}

impl Element for SetIPDSCP {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<SetIPDSCP>(old) {
            self.drops = old.drops;
        }
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        let bits = self.dscp.load(Relaxed) << 2;
        self.drops.retain(batch, |p| set_dscp(p, bits));
    }

    fn handlers(&self) -> Vec<Handler> {
        let (r, w) = (self.dscp.clone(), self.dscp.clone());
        vec![
            Handler::read_write(
                "dscp",
                move || r.load(Relaxed).to_string(),
                move |v| {
                    let d = parse_in_range(v, 0..=0x3f).map_err(|e| format!("diffserv code point: {e}"))?;
                    w.store(d as u8, Relaxed);
                    Ok(())
                },
            ),
            self.drops.handler(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{checksum, set_ip_checksum, Ipv4};
    use proptest::prelude::*;

    fn element(dscp: &str) -> SetIPDSCP {
        *downcast::<SetIPDSCP>(testutil::element(SetIPDSCP::CLASS, dscp)).unwrap()
    }

    fn run(e: &mut SetIPDSCP, packets: Vec<Packet>) -> Vec<Packet> {
        let mut b = testutil::batch(packets);
        e.simple_action(&mut b);
        b.drain().collect()
    }

    fn marked(data: &[u8], off: usize) -> Packet {
        let mut p = Packet::from_data(data);
        p.set_network_header(off, 20);
        p
    }

    #[test]
    fn sets_dscp_keeps_ecn_and_fixes_the_checksum() {
        let mut ip = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 8);
        ip[ip::TOS] = 0x03; // ECN CE
        set_ip_checksum(&mut ip);
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(&ip);
        let mut e = element("46");
        let out = run(&mut e, vec![marked(&frame, 14)]);
        let h = Ipv4::new_checked(&out[0].data()[14..]).unwrap();
        assert_eq!(h.tos(), (46 << 2) | 0x03);
        assert!(h.checksum_ok());
        assert_eq!(&out[0].data()[..14], &[0; 14]);
    }

    #[test]
    fn handler_reads_and_writes_like_click() {
        let mut e = element("DSCP 10");
        let hs = e.handlers();
        assert_eq!((hs[0].read.as_ref().unwrap())(), "10");
        (hs[0].write.as_ref().unwrap())("2").unwrap();
        assert_eq!((hs[0].read.as_ref().unwrap())(), "2");
        assert!((hs[0].write.as_ref().unwrap())("64").is_err());
        assert!((hs[0].write.as_ref().unwrap())("x").is_err());
        let ip = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 0);
        let out = run(&mut e, vec![marked(&ip, 0)]);
        assert_eq!(out[0].network_header().unwrap()[ip::TOS], 2 << 2);
    }

    #[test]
    fn malformed_or_unmarked_packets_are_dropped() {
        let ip = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 0);
        let mut ihl4 = ip.clone();
        ihl4[0] = 0x44;
        let mut opts_past_end = ip.clone();
        opts_past_end[0] = 0x47;
        let mut v6 = ip.clone();
        v6[0] = 0x60;
        let mut short = Packet::from_data(&ip[..19]);
        short.set_network_header(0, 19);
        let mut e = element("1");
        let out = run(
            &mut e,
            vec![
                Packet::from_data(&ip),
                marked(&ihl4, 0),
                marked(&opts_past_end, 0),
                marked(&v6, 0),
                short,
                Packet::from_data(&[]),
                marked(&ip, 0),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(e.drops.get(), 6);
    }

    #[test]
    fn out_of_range_dscp_is_a_config_error() {
        for config in ["64", "", "x"] {
            let mut args = Args::parse_str("d :: SetIPDSCP", config);
            assert!(SetIPDSCP::make(&mut args).is_none(), "{config}");
            assert!(args.complete().is_err());
        }
    }

    proptest! {
        #[test]
        fn incremental_checksum_equals_a_full_recomputation(
            words in 5usize..=15,
            bytes in proptest::collection::vec(any::<u8>(), 60),
            dscp in 0u8..64,
            lead in 0usize..20,
        ) {
            let hl = words * 4;
            let mut header = bytes[..hl].to_vec();
            header[0] = 0x40 | words as u8;
            set_ip_checksum(&mut header);
            let mut frame = vec![0x5a; lead];
            frame.extend_from_slice(&header);
            let mut p = Packet::from_data(&frame);
            p.set_network_header(lead, hl);
            let mut e = element(&dscp.to_string());
            let out = run(&mut e, vec![p]);
            prop_assert_eq!(out.len(), 1);
            let h = &out[0].data()[lead..lead + hl];
            prop_assert_eq!(h[ip::TOS], (dscp << 2) | (header[ip::TOS] & 3));
            prop_assert_eq!(checksum(h), 0);
            let mut full = h.to_vec();
            set_ip_checksum(&mut full);
            prop_assert_eq!(h, &full[..]);
        }
    }
}
