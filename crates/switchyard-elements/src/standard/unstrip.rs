use switchyard_core::{documented, Args, Batch, Element, ElementClass};

documented! {
    /// Puts LENGTH bytes back at the front of each packet (Click's
    /// Unstrip). After a `Strip` of the same length they are the bytes
    /// that were stripped, still in the buffer's headroom; a shared packet
    /// is copied first, headroom included, so they survive that too. When
    /// the headroom is too small, the packet is copied into a bigger
    /// buffer and the new bytes are unspecified, as in Click.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `LENGTH` (positional, mandatory): bytes to put back, at most 4096
    ///   (Switchyard bound: more is a configuration error, not a header).
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// Strip(14) -> CheckIPHeader -> Unstrip(14) -> q :: Queue;
    /// ```
    pub struct Unstrip {
        length: usize,
    }
}

impl Unstrip {
    pub const CLASS: ElementClass = ElementClass {
        name: "Unstrip",
        ports: "1/1",
        processing: "a/a",
        doc: Unstrip::DOC,
        factory: Unstrip::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let length = args.read_mp::<usize>("LENGTH")?;
        if length > MAX_LENGTH {
            let span = args.span_of("LENGTH");
            args.error(Some(span), format!("LENGTH {length} is more than {MAX_LENGTH}"));
            return None;
        }
        Some(Box::new(Unstrip { length }))
    }
}

/// Beyond the headroom every packet is copied into a bigger buffer; past
/// a few kilobytes that is a configuration mistake, not a header.
const MAX_LENGTH: usize = 4096;

impl Element for Unstrip {
    fn simple_action(&mut self, batch: &mut Batch) {
        for p in batch.packets_mut() {
            p.push_front(self.length);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::packet::HEADROOM;
    use switchyard_core::{Harness, Packet};

    fn harness(class: ElementClass, config: &str) -> Harness {
        let mut args = Args::parse_str(class.name, config);
        let e = (class.factory)(&mut args).unwrap();
        args.complete().unwrap();
        Harness::new(e, 1, 1)
    }

    fn one(h: &mut Harness, p: Packet) -> Packet {
        let mut b = Batch::new();
        b.push(p);
        h.push(0, b);
        let mut out = h.take(0);
        let p = out[0].drain().next().unwrap();
        p
    }

    #[test]
    fn restores_what_strip_removed() {
        let frame: Vec<u8> = (0..60).collect();
        let mut strip = harness(crate::Strip::CLASS, "14");
        let mut unstrip = harness(Unstrip::CLASS, "14");
        let p = one(&mut strip, Packet::from_data(&frame));
        assert_eq!(p.data(), &frame[14..]);
        let p = one(&mut unstrip, p);
        assert_eq!(p.data(), &frame[..]);
    }

    #[test]
    fn restores_the_bytes_of_a_shared_packet_too() {
        let frame: Vec<u8> = (0..60).collect();
        let mut p = Packet::from_data(&frame);
        p.pull(14);
        let keep = p.clone();
        let mut unstrip = harness(Unstrip::CLASS, "14");
        let p = one(&mut unstrip, p);
        assert_eq!(p.data(), &frame[..]);
        assert_eq!(keep.data(), &frame[14..]);
    }

    #[test]
    fn more_than_the_headroom_grows_the_packet() {
        let mut unstrip = harness(Unstrip::CLASS, &(HEADROOM + 20).to_string());
        let p = one(&mut unstrip, Packet::from_data(&[7; 10]));
        assert_eq!(p.len(), HEADROOM + 30);
        assert_eq!(&p.data()[HEADROOM + 20..], &[7; 10]);
    }

    #[test]
    fn absurd_lengths_are_config_errors() {
        for bad in ["4097", "100000", "4294967296"] {
            let mut args = Args::parse_str("u :: Unstrip", bad);
            assert!(Unstrip::make(&mut args).is_none(), "{bad}");
            assert!(args.has_errors());
        }
    }
}
