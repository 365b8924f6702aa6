use crate::util::RateMeter;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler};

documented! {
    /// Counts packets and bytes passing through, and their rate.
    ///
    /// # Ports
    /// One input, one output; agnostic (works on push and pull paths).
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// - `count` (read): packets seen.
    /// - `byte_count` (read): bytes seen.
    /// - `rate` (read): packets per second, averaged over the last second or so.
    /// - `reset` (write): zeroes the counts.
    ///
    /// # Example
    /// ```text
    /// src -> old :: Counter -> Discard;
    /// ```
    pub struct Counter {
        stats: Arc<Stats>,
        meter: RateMeter,
    }
}

struct Stats {
    count: AtomicU64,
    bytes: AtomicU64,
}

impl Counter {
    pub const CLASS: ElementClass = ElementClass {
        name: "Counter",
        ports: "1/1",
        processing: "a/a",
        doc: Counter::DOC,
        factory: Counter::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(Counter {
            stats: Arc::new(Stats {
                count: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
            }),
            meter: RateMeter::new(),
        }))
    }
}

impl Element for Counter {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<Counter>(old) {
            self.stats = old.stats;
        }
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        let n = batch.len() as u64;
        self.stats.count.fetch_add(n, Relaxed);
        self.stats.bytes.fetch_add(batch.byte_len(), Relaxed);
        self.meter.add(n);
    }

    fn handlers(&self) -> Vec<Handler> {
        let (s1, s2, s3) = (self.stats.clone(), self.stats.clone(), self.stats.clone());
        let rate = self.meter.shared();
        vec![
            Handler::read_only("count", move || s1.count.load(Relaxed).to_string()),
            Handler::read_only("byte_count", move || s2.bytes.load(Relaxed).to_string()),
            Handler::read_only("rate", move || format!("{:.0}", rate.read())),
            Handler::write_only("reset", move |_| {
                s3.count.store(0, Relaxed);
                s3.bytes.store(0, Relaxed);
                Ok(())
            }),
        ]
    }
}
