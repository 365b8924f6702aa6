use super::scatter::Scatter;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass};

documented! {
    /// Sends each packet to the output numbered by its paint annotation;
    /// packets painted beyond the last output are dropped.
    ///
    /// # Ports
    /// One input, any number of outputs; push.
    ///
    /// # Arguments
    /// None.
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

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
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
