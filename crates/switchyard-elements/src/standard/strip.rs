use switchyard_core::{documented, Args, Batch, Element, ElementClass};

documented! {
    /// Removes LENGTH bytes from the front of each packet (Click's Strip):
    /// `Strip(14)` takes off the Ethernet header. The bytes stay in the
    /// buffer's headroom, so `Unstrip` can put them back, and the network
    /// header annotation stays where it was. A packet shorter than LENGTH
    /// becomes empty, as Click's `pull` clamps.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `LENGTH` (positional, mandatory): bytes to remove.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// c[2] -> Strip(14) -> CheckIPHeader -> rt;
    /// ```
    pub struct Strip {
        length: usize,
    }
}

impl Strip {
    pub const CLASS: ElementClass = ElementClass {
        name: "Strip",
        ports: "1/1",
        processing: "a/a",
        doc: Strip::DOC,
        factory: Strip::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let length = args.read_mp::<usize>("LENGTH")?;
        Some(Box::new(Strip { length }))
    }
}

impl Element for Strip {
    fn simple_action(&mut self, batch: &mut Batch) {
        for p in batch.packets_mut() {
            p.pull(self.length);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet};

    fn strip(config: &str) -> Harness {
        let mut args = Args::parse_str("s :: Strip", config);
        let e = Strip::make(&mut args).unwrap();
        args.complete().unwrap();
        Harness::new(e, 1, 1)
    }

    #[test]
    fn removes_the_ethernet_header_and_keeps_the_network_header() {
        let mut h = strip("14");
        let mut frame = vec![0xaa; 14];
        frame.extend_from_slice(&crate::wire::tests::ipv4_packet(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            64,
            8,
        ));
        let mut p = Packet::from_data(&frame);
        p.set_network_header(14, 20);
        let mut b = Batch::new();
        b.push(p);
        h.push(0, b);
        let out = h.take(0);
        let p = &out[0].packets()[0];
        assert_eq!(p.data(), &frame[14..]);
        assert_eq!(p.network_offset(), Some(0));
    }

    #[test]
    fn short_and_empty_packets_become_empty() {
        let mut h = strip("LENGTH 14");
        let mut b = Batch::new();
        b.push(Packet::from_data(&[1, 2, 3]));
        b.push(Packet::from_data(&[]));
        h.push(0, b);
        let out = h.take(0);
        assert!(out[0].iter().all(|p| p.is_empty()));
        assert_eq!(out[0].len(), 2);
    }

    #[test]
    fn length_is_mandatory() {
        let mut args = Args::parse_str("s :: Strip", "");
        assert!(Strip::make(&mut args).is_none());
        assert!(args.complete().unwrap_err()[0]
            .message
            .contains("missing mandatory argument LENGTH"));
    }
}
