use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::handler::parse_in_range;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler};

documented! {
    /// Sends every packet to output 0, and a copy of each packet whose
    /// paint annotation equals COLOR to output 1 (Click's PaintTee): on
    /// the IP path, the packets a router sends back out of the interface
    /// they came in on, for an ICMP redirect. The copy shares the data.
    ///
    /// Click's `ANNO` argument (any one-byte annotation instead of paint)
    /// is accepted only when it names paint: Switchyard packets carry
    /// named annotations, and paint is the one-byte colour.
    ///
    /// # Ports
    /// One input, two outputs; input and output 0 agnostic, output 1 push.
    ///
    /// # Arguments
    /// - `COLOR` (positional, mandatory): the paint value to copy, 0 to 255.
    /// - `ANNO` (positional): `PAINT` (the default) or 16, its offset in
    ///   Click's annotation area.
    ///
    /// # Handlers
    /// - `color` (read/write): COLOR; a write applies from the next batch.
    ///
    /// # Example
    /// ```text
    /// rt[1] -> pt :: PaintTee(1) -> out1;
    /// pt[1] -> ICMPError(10.0.0.1, redirect, host) -> rt;
    /// ```
    pub struct PaintTee {
        color: Arc<AtomicU8>,
    }
}

impl PaintTee {
    pub const CLASS: ElementClass = ElementClass {
        name: "PaintTee",
        ports: "1/2",
        processing: "a/ah",
        doc: PaintTee::DOC,
        factory: PaintTee::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let color = args.read_mp::<u8>("COLOR");
        super::paint::read_anno(args, true, super::paint::Anno::PAINT);
        let color = color.filter(|_| !args.has_errors())?;
        Some(Box::new(PaintTee {
            color: Arc::new(AtomicU8::new(color)),
        }))
    }

    /// Copies of the packets painted COLOR, if any.
    fn copies(&self, batch: &Batch) -> Option<Batch> {
        let color = self.color.load(Relaxed);
        if !batch.iter().any(|p| p.anno.paint == color) {
            return None;
        }
        let mut copies = Batch::new();
        copies.extend(batch.iter().filter(|p| p.anno.paint == color).cloned());
        Some(copies)
    }
}

impl Element for PaintTee {
    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        // Copies first, as Click's PaintTee emits the copy before
        // returning the original.
        if let Some(copies) = self.copies(&batch) {
            cx.push(1, copies);
        }
        cx.push(0, batch);
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let batch = cx.pull(0)?;
        if let Some(copies) = self.copies(&batch) {
            cx.push(1, copies);
        }
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        let (r, w) = (self.color.clone(), self.color.clone());
        vec![Handler::read_write(
            "color",
            move || r.load(Relaxed).to_string(),
            move |v| {
                let c = parse_in_range(v, 0..=255)?;
                w.store(c as u8, Relaxed);
                Ok(())
            },
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet};

    #[test]
    fn positional_arguments_are_clicks_color_anno() {
        for config in ["2", "2, PAINT", "2, 16", "COLOR 2, ANNO PAINT"] {
            let e = crate::testutil::configure("pt :: PaintTee", PaintTee::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        let err = crate::testutil::configure("pt :: PaintTee", PaintTee::CLASS, "2, 17").err();
        assert!(err.is_some_and(|e| e.contains("ANNO: only PAINT")));
    }

    #[test]
    fn copies_only_the_matching_colour() {
        let mut args = Args::parse_str("pt :: PaintTee", "2");
        let e = PaintTee::make(&mut args).unwrap();
        args.complete().unwrap();
        let color = e.handlers().remove(0);
        let mut h = Harness::new(e, 1, 2);
        let mut b = Batch::new();
        for (i, paint) in [1u8, 2, 2, 3].into_iter().enumerate() {
            let mut p = Packet::from_data(&[i as u8; 20]);
            p.anno.paint = paint;
            b.push(p);
        }
        h.push(0, b);
        let all = h.take(0);
        assert_eq!(all.iter().map(Batch::len).sum::<usize>(), 4);
        let copies = h.take(1);
        let firsts: Vec<u8> = copies.iter().flat_map(|b| b.iter().map(|p| p.data()[0])).collect();
        assert_eq!(firsts, vec![1, 2]);

        assert_eq!((color.read.as_ref().unwrap())(), "2");
        (color.write.as_ref().unwrap())("3").unwrap();
        assert!((color.write.as_ref().unwrap())("256").is_err());
        let mut b = Batch::new();
        for paint in [1u8, 2, 3] {
            let mut p = Packet::from_data(&[paint; 20]);
            p.anno.paint = paint;
            b.push(p);
        }
        h.push(0, b);
        assert_eq!(h.count(0), 3);
        assert_eq!(h.count(1), 1);
    }

    #[test]
    fn nothing_on_output_1_when_no_colour_matches() {
        let mut args = Args::parse_str("pt :: PaintTee", "COLOR 9");
        let e = PaintTee::make(&mut args).unwrap();
        args.complete().unwrap();
        let mut h = Harness::new(e, 1, 2);
        let mut b = Batch::new();
        b.push(Packet::from_data(&[]));
        h.push(0, b);
        assert_eq!(h.count(0), 1);
        assert!(h.take(1).is_empty());
    }
}
