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
    /// - `BURST`: Click's packets pulled per run, accepted for Click
    ///   configurations: a run here pulls one batch, whatever BURST.
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
        let _burst: Option<u32> = args.read("BURST");
        if args.has_errors() {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;

    #[test]
    fn clicks_keywords_active_and_burst_are_accepted() {
        for config in ["", "ACTIVE false", "ACTIVE true, BURST 8", "BURST 0"] {
            let e = configure("d :: Discard", Discard::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        assert!(configure("d :: Discard", Discard::CLASS, "BURST x").is_err());
        assert!(
            configure("d :: Discard", Discard::CLASS, "false").is_err(),
            "ACTIVE is a keyword"
        );
    }
}
