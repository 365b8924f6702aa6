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
        scratch: Vec<Option<Batch>>,
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
        Some(Box::new(PaintSwitch { scratch: Vec::new() }))
    }
}

impl Element for PaintSwitch {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let n = cx.noutputs();
        self.scratch.resize_with(n, || None);
        // Common case: the whole batch has one colour and goes as it is.
        let first = batch.packets().first().map(|p| p.anno.paint);
        if let Some(c) = first {
            if batch.iter().all(|p| p.anno.paint == c) {
                if (c as usize) < n {
                    cx.push(c as usize, batch);
                }
                return;
            }
        }
        for p in batch.drain() {
            let c = p.anno.paint as usize;
            if c < n {
                self.scratch[c].get_or_insert_with(Batch::new).push(p);
            }
        }
        drop(batch);
        for out in 0..n {
            if let Some(b) = self.scratch[out].take() {
                cx.push(out, b);
            }
        }
    }
}
