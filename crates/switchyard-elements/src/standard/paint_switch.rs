use super::scatter::Scatter;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass};

documented! {
    /// Sends each packet to the output numbered by its paint annotation;
    /// packets painted beyond the last output are dropped.
    ///
    /// Click's `ANNO` (switch on another one-byte annotation) is accepted
    /// only when it names paint, as in Paint.
    ///
    /// # Ports
    /// One input, any number of outputs; push.
    ///
    /// # Arguments
    /// - `ANNO` (positional): `PAINT` (the default) or 16, its offset in
    ///   Click's annotation area.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// ps :: PaintSwitch; ps[0] -> old_out; ps[1] -> new_out;
    /// ```
    pub struct PaintSwitch {
        scatter: Scatter,
    }
}

impl PaintSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "PaintSwitch",
        ports: "1/-",
        processing: "h/h",
        doc: PaintSwitch::DOC,
        factory: PaintSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        super::paint::read_anno(args, true, super::paint::Anno::PAINT);
        if args.has_errors() {
            return None;
        }
        Some(Box::new(PaintSwitch {
            scatter: Scatter::new(),
        }))
    }
}

impl Element for PaintSwitch {
    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.scatter.send(batch, cx, |p| usize::from(p.anno.paint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;

    #[test]
    fn positional_argument_is_clicks_anno() {
        for config in ["", "PAINT", "16", "ANNO PAINT"] {
            let e = configure("ps :: PaintSwitch", PaintSwitch::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        assert!(configure("ps :: PaintSwitch", PaintSwitch::CLASS, "17").is_err());
    }
}
