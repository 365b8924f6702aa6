use crate::util::{count_handlers, flag_handler};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work,
};

documented! {
    /// Drops every packet (their buffers go back to the pool).
    ///
    /// # Ports
    /// One input, no outputs; agnostic. On a pull path it is a task that
    /// pulls as fast as packets come.
    ///
    /// # Arguments
    /// - `ACTIVE`: when pulling, whether to pull; default true.
    ///
    /// # Handlers
    /// - `count` (read): packets dropped.
    /// - `reset_counts` (write): zeroes the count.
    /// - `active` (read/write): ACTIVE.
    ///
    /// # Example
    /// ```text
    /// src -> Discard;
    /// ```
    pub struct Discard {
        count: Arc<AtomicU64>,
        active: Arc<AtomicBool>,
    }
}

impl Discard {
    pub const CLASS: ElementClass = ElementClass {
        name: "Discard",
        ports: "1/0",
        processing: "a/a",
        doc: Discard::DOC,
        factory: Discard::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let active = args.read::<bool>("ACTIVE").unwrap_or(true);
        Some(Box::new(Discard {
            count: Arc::new(AtomicU64::new(0)),
            active: Arc::new(AtomicBool::new(active)),
        }))
    }
}

impl Element for Discard {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<Discard>(old) {
            self.count = old.count;
        }
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        Ok(ports.inputs.first() == Some(&Processing::Pull))
    }

    fn push(&mut self, _port: usize, batch: Batch, _cx: &mut Context<'_>) {
        self.count.fetch_add(batch.len() as u64, Relaxed);
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if !self.active.load(Relaxed) {
            return Work::Idle;
        }
        match cx.pull(0) {
            Some(b) => {
                self.count.fetch_add(b.len() as u64, Relaxed);
                Work::Busy
            }
            None => Work::Idle,
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let [count, reset] = count_handlers(&self.count, "reset_counts");
        vec![count, reset, flag_handler("active", &self.active)]
    }
}
