use super::ether_cell::EtherCell;
use crate::wire::{ether_header, EtherAddr, ETHER_HEADER_LEN};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::handler::parse_in_range;
use switchyard_core::{documented, Args, Batch, Element, ElementClass, FromArg, Handler};

documented! {
    /// Puts a 14-byte Ethernet header in front of each packet (Click's
    /// EtherEncap): destination DST, source SRC, type ETHERTYPE. The
    /// header goes into the buffer's headroom, without copying the packet
    /// unless it is shared or the headroom is used up. For IP packets
    /// toward a next hop whose address must be resolved, use ARPQuerier.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `ETHERTYPE` (positional, mandatory): the type, host order
    ///   (`0x0800`).
    /// - `SRC` (positional, mandatory): source Ethernet address.
    /// - `DST` (positional, mandatory): destination Ethernet address.
    ///
    /// # Handlers
    /// - `src`, `dst` (read/write): the addresses, read as Click prints
    ///   them (`00-1A-2B-3C-4D-5E`).
    /// - `ethertype` (read/write): the type, read in decimal (`2048`),
    ///   written as an integer (`0x0801` or `2049`).
    ///
    /// Writes apply from the next batch.
    ///
    /// # Example
    /// ```text
    /// ... -> EtherEncap(0x0800, 00:00:c0:ae:67:ef, 00:00:c0:4f:71:ef) -> ToDevice(eth0);
    /// ```
    pub struct EtherEncap {
        ethertype: Arc<AtomicU32>,
        src: Arc<EtherCell>,
        dst: Arc<EtherCell>,
    }
}

impl EtherEncap {
    pub const CLASS: ElementClass = ElementClass {
        name: "EtherEncap",
        ports: "1/1",
        processing: "a/a",
        doc: EtherEncap::DOC,
        factory: EtherEncap::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let ethertype = args.read_mp::<u16>("ETHERTYPE");
        let src = args.read_mp::<EtherAddr>("SRC");
        let dst = args.read_mp::<EtherAddr>("DST");
        Some(Box::new(EtherEncap {
            ethertype: Arc::new(AtomicU32::new(u32::from(ethertype?))),
            src: EtherCell::new(src?),
            dst: EtherCell::new(dst?),
        }))
    }

    fn header(&self) -> [u8; ETHER_HEADER_LEN] {
        ether_header(self.dst.get(), self.src.get(), self.ethertype.load(Relaxed) as u16)
    }
}

impl Element for EtherEncap {
    fn simple_action(&mut self, batch: &mut Batch) {
        let header = self.header();
        for p in batch.packets_mut() {
            if let Some(h) = p.push_front_mut(ETHER_HEADER_LEN).first_chunk_mut::<ETHER_HEADER_LEN>() {
                // A fixed-size copy: three moves, not a byte loop.
                *h = header;
            }
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (r, w) = (self.ethertype.clone(), self.ethertype.clone());
        vec![
            self.src.handler("src"),
            self.dst.handler("dst"),
            Handler::read_write(
                "ethertype",
                move || r.load(Relaxed).to_string(),
                move |v| {
                    // Hex as in the argument, or decimal as the read gives.
                    let t = match u16::from_arg(v.trim()) {
                        Some(t) => t,
                        None => parse_in_range(v, 0..=0xffff)? as u16,
                    };
                    w.store(u32::from(t), Relaxed);
                    Ok(())
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::packet::HEADROOM;
    use switchyard_core::{Harness, Packet};

    fn encap(config: &str) -> (Harness, Vec<Handler>) {
        let mut args = Args::parse_str("e :: EtherEncap", config);
        let e = EtherEncap::make(&mut args).unwrap();
        args.complete().unwrap();
        let hs = e.handlers();
        (Harness::new(e, 1, 1), hs)
    }

    fn run(h: &mut Harness, p: Packet) -> Packet {
        let mut b = Batch::new();
        b.push(p);
        h.push(0, b);
        h.take(0)[0].drain().next().unwrap()
    }

    #[test]
    fn prepends_the_configured_header() {
        let (mut h, _) = encap("0x0800, 1:1:1:1:1:1, 2:2:2:2:2:2");
        let ip = crate::wire::tests::ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 8);
        let mut p = Packet::from_data(&ip);
        p.set_network_header(0, 20);
        let p = run(&mut h, p);
        assert_eq!(&p.data()[..14], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 8, 0]);
        assert_eq!(&p.data()[14..], &ip[..]);
        assert_eq!(p.network_offset(), Some(14));
    }

    #[test]
    fn empty_shared_and_headroomless_packets() {
        let (mut h, _) = encap("0x86dd, 00:00:00:00:00:01, ff:ff:ff:ff:ff:ff");
        let p = run(&mut h, Packet::from_data(&[]));
        assert_eq!(
            p.data(),
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1, 0x86, 0xdd]
        );
        let original = Packet::from_data(&[9; 4]);
        let p = run(&mut h, original.clone());
        assert_eq!(original.data(), &[9; 4]);
        assert_eq!(&p.data()[14..], &[9; 4]);
        let mut full = Packet::from_data(&[5; 8]);
        full.push_front(HEADROOM);
        let p = run(&mut h, full);
        assert_eq!(p.len(), HEADROOM + 8 + 14);
        assert_eq!(&p.data()[12..14], &[0x86, 0xdd]);
    }

    #[test]
    fn handlers_read_and_write_like_click() {
        let (mut h, hs) = encap("0x0800, 1:1:1:1:1:1, 2:2:2:2:2:2");
        let read = |i: usize| (hs[i].read.as_ref().unwrap())();
        let write = |i: usize, v: &str| (hs[i].write.as_ref().unwrap())(v);
        assert_eq!(read(2), "2048");
        write(2, "0x0801").unwrap();
        assert_eq!(read(2), "2049");
        write(2, "2054").unwrap();
        assert!(write(2, "70000").is_err());
        assert_eq!(read(0), "01-01-01-01-01-01");
        write(0, "00:11:22:33:44:55").unwrap();
        write(1, "66-77-88-99-AA-BB").unwrap();
        assert!(write(1, "nonsense").is_err());
        let p = run(&mut h, Packet::from_data(&[0]));
        assert_eq!(
            &p.data()[..14],
            &[0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06]
        );
    }

    #[test]
    fn arguments_are_mandatory_and_checked() {
        let mut args = Args::parse_str("e :: EtherEncap", "0x0800, 1:1:1:1:1:1");
        assert!(EtherEncap::make(&mut args).is_none());
        assert!(args.complete().unwrap_err()[0]
            .message
            .contains("missing mandatory argument DST"));
        let mut args = Args::parse_str("e :: EtherEncap", "0x10000, 1:1:1:1:1:1, 2:2:2:2:2:2");
        assert!(EtherEncap::make(&mut args).is_none());
        assert!(args.complete().is_err());
    }
}
