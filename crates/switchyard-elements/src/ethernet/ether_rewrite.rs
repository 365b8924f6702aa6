use super::ether_cell::EtherCell;
use crate::util::Drops;
use crate::wire::{EtherAddr, ETHER_HEADER_LEN};
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler};

documented! {
    /// Overwrites the source and destination addresses of each packet's
    /// Ethernet header, leaving its type alone (Click's EtherRewrite): for
    /// a link with a single possible next hop, such as a transparent
    /// firewall's.
    ///
    /// The header is taken to start at the packet data (Switchyard keeps
    /// no MAC header annotation). A packet shorter than an Ethernet header
    /// is dropped and counted, where Click would write past it.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `SRC` (positional, mandatory): the new source address.
    /// - `DST` (positional, mandatory): the new destination address.
    ///
    /// # Handlers
    /// - `src`, `dst` (read/write): the addresses, read as Click prints
    ///   them (`00-1A-2B-3C-4D-5E`); writes apply from the next batch.
    /// - `drops` (read): packets dropped as too short (Switchyard's).
    ///
    /// # Example
    /// ```text
    /// ... -> EtherRewrite(00:00:c0:ae:67:ef, 00:00:c0:4f:71:ef) -> ToDevice(eth0);
    /// ```
    pub struct EtherRewrite {
        src: Arc<EtherCell>,
        dst: Arc<EtherCell>,
        drops: Drops,
    }
}

impl EtherRewrite {
    pub const CLASS: ElementClass = ElementClass {
        name: "EtherRewrite",
        ports: "1/1",
        processing: "a/a",
        doc: EtherRewrite::DOC,
        factory: EtherRewrite::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let src = args.read_mp::<EtherAddr>("SRC");
        let dst = args.read_mp::<EtherAddr>("DST");
        Some(Box::new(EtherRewrite {
            src: EtherCell::new(src?),
            dst: EtherCell::new(dst?),
            drops: Drops::default(),
        }))
    }
}

impl Element for EtherRewrite {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<EtherRewrite>(old) {
            self.drops = old.drops;
        }
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        let mut addrs = [0u8; 12];
        addrs[..6].copy_from_slice(&self.dst.get().0);
        addrs[6..].copy_from_slice(&self.src.get().0);
        self.drops.retain(batch, |p| {
            if p.len() < ETHER_HEADER_LEN {
                return false;
            }
            // Already right (the common case on a fixed link): no write,
            // so a shared packet is not copied.
            if p.data()[..12] != addrs {
                p.data_mut()[..12].copy_from_slice(&addrs);
            }
            true
        });
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.src.handler("src"), self.dst.handler("dst"), self.drops.handler()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet};

    fn rewrite(config: &str) -> (Harness, Vec<Handler>) {
        let mut args = Args::parse_str("r :: EtherRewrite", config);
        let e = EtherRewrite::make(&mut args).unwrap();
        args.complete().unwrap();
        let hs = e.handlers();
        (Harness::new(e, 1, 1), hs)
    }

    #[test]
    fn rewrites_addresses_and_keeps_the_type() {
        let (mut h, hs) = rewrite("1:1:1:1:1:1, 2:2:2:2:2:2");
        let mut frame = vec![0xee; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&crate::wire::tests::ipv4_packet([1, 2, 3, 4], [5, 6, 7, 8], 6, 64, 0));
        let original = Packet::from_data(&frame);
        let mut b = Batch::new();
        b.push(original.clone());
        h.push(0, b);
        let out = h.take(0);
        let p = &out[0].packets()[0];
        assert_eq!(&p.data()[..14], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 8, 0]);
        assert_eq!(&p.data()[14..], &frame[14..]);
        assert_eq!(original.data(), &frame[..], "a shared packet is copied before writing");
        assert_eq!((hs[1].read.as_ref().unwrap())(), "02-02-02-02-02-02");
    }

    #[test]
    fn short_frames_are_dropped_and_counted() {
        let (mut h, hs) = rewrite("SRC 1:1:1:1:1:1, DST 2:2:2:2:2:2");
        let mut b = Batch::new();
        b.push(Packet::from_data(&[0; 13]));
        b.push(Packet::from_data(&[]));
        b.push(Packet::from_data(&[0; 14]));
        h.push(0, b);
        assert_eq!(h.count(0), 1);
        assert_eq!((hs[2].read.as_ref().unwrap())(), "2");
    }
}
