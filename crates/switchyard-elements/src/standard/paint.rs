use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::handler::parse_in_range;
use switchyard_core::{documented, Args, Batch, Element, ElementClass, Handler};

documented! {
    /// Sets each packet's paint annotation, to mark which way it came.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `COLOR` (positional, mandatory): 0 to 255.
    ///
    /// # Handlers
    /// - `color` (read/write): COLOR.
    ///
    /// # Example
    /// ```text
    /// a -> Paint(1) -> [0]ps :: PaintSwitch;
    /// ```
    pub struct Paint {
        color: Arc<AtomicU8>,
    }
}

impl Paint {
    pub const CLASS: ElementClass = ElementClass {
        name: "Paint",
        ports: "1/1",
        processing: "a/a",
        doc: Paint::DOC,
        factory: Paint::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let color = args.read_mp::<u8>("COLOR")?;
        Some(Box::new(Paint {
            color: Arc::new(AtomicU8::new(color)),
        }))
    }
}

impl Element for Paint {
    fn simple_action(&mut self, batch: &mut Batch) {
        let c = self.color.load(Relaxed);
        for p in batch.packets_mut() {
            p.anno.paint = c;
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (r, w) = (self.color.clone(), self.color.clone());
        vec![Handler::read_write(
            "color",
            move || r.load(Relaxed).to_string(),
            move |v| {
                w.store(parse_in_range(v, 0..=255)? as u8, Relaxed);
                Ok(())
            },
        )]
    }
}
