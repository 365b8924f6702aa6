use crate::util::{count_handlers, flag_handler};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Work};

documented! {
    /// Pulls packets from its input and pushes them out: drains a Queue on
    /// the Queue's consumer thread.
    ///
    /// # Ports
    /// One pull input, one push output.
    ///
    /// # Arguments
    /// - `BURST` (positional): most packets moved per run; default 256
    ///   (Click's default is 1; batches are how Switchyard is fast).
    /// - `ACTIVE`: whether it moves packets; default true.
    /// - `LIMIT`: most packets moved in all, -1 (default) for no limit.
    ///   Packets are pulled a batch at a time: the part of a batch past
    ///   LIMIT waits here, and goes first once the limit allows more.
    ///
    /// # Handlers
    /// - `count` (read): packets moved.
    /// - `reset` (write): zeroes the count, so LIMIT more packets may go.
    /// - `active` (read/write): ACTIVE.
    /// - `limit` (read/write): LIMIT.
    ///
    /// # Example
    /// ```text
    /// src -> Queue -> Unqueue -> Counter -> Discard;
    /// ```
    pub struct Unqueue {
        burst: usize,
        count: Arc<AtomicU64>,
        active: Arc<AtomicBool>,
        /// LIMIT; negative for none.
        limit: Arc<AtomicI64>,
        /// The part of a pulled batch past LIMIT.
        held: Option<Batch>,
    }
}

impl Unqueue {
    pub const CLASS: ElementClass = ElementClass {
        name: "Unqueue",
        ports: "1/1",
        processing: "l/h",
        doc: Unqueue::DOC,
        factory: Unqueue::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let burst = args.read_p::<usize>("BURST").unwrap_or(256);
        let active = args.read::<bool>("ACTIVE").unwrap_or(true);
        let limit = args.read::<i64>("LIMIT").unwrap_or(-1);
        if burst == 0 {
            args.error(Some(args.span_of("BURST")), "BURST must be at least 1");
            return None;
        }
        Some(Box::new(Unqueue {
            burst,
            count: Arc::new(AtomicU64::new(0)),
            active: Arc::new(AtomicBool::new(active)),
            limit: Arc::new(AtomicI64::new(limit)),
            held: None,
        }))
    }
}

impl Element for Unqueue {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<Unqueue>(old) {
            let old = *old;
            self.count = old.count;
            self.held = old.held;
        }
    }

    fn initialize(&mut self, _ports: &PortInfo) -> Result<bool, String> {
        Ok(true)
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if !self.active.load(Relaxed) {
            return Work::Idle;
        }
        let allowance = match u64::try_from(self.limit.load(Relaxed)) {
            Ok(limit) => usize::try_from(limit.saturating_sub(self.count.load(Relaxed))).unwrap_or(usize::MAX),
            Err(_) => usize::MAX,
        };
        let mut moved = 0;
        while moved < self.burst.min(allowance) {
            let Some(mut b) = self.held.take().or_else(|| cx.pull(0)) else {
                break;
            };
            if b.len() > allowance - moved {
                let rest = b.split_off(allowance - moved);
                self.held = Some(rest);
            }
            moved += b.len();
            if !b.is_empty() {
                cx.push(0, b);
            }
        }
        self.count.fetch_add(moved as u64, Relaxed);
        if moved > 0 {
            Work::Busy
        } else {
            Work::Idle
        }
    }

    fn holds_packets(&self) -> bool {
        self.held.is_some()
    }

    fn handlers(&self) -> Vec<Handler> {
        let [count, reset] = count_handlers(&self.count, "reset");
        let (r, w) = (self.limit.clone(), self.limit.clone());
        let limit = Handler::read_write(
            "limit",
            move || r.load(Relaxed).max(-1).to_string(),
            move |v| {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("expected an integer, found '{}'", v.trim()))?;
                w.store(n, Relaxed);
                Ok(())
            },
        );
        vec![count, reset, flag_handler("active", &self.active), limit]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;
    use std::time::Duration;

    #[test]
    fn positional_burst_and_clicks_keywords() {
        for config in ["10", "BURST 3", "ACTIVE false", "LIMIT 1", "200, LIMIT 5, ACTIVE true"] {
            let e = configure("u :: Unqueue", Unqueue::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        assert!(
            configure("u :: Unqueue", Unqueue::CLASS, "10, 5").is_err(),
            "LIMIT is a keyword"
        );
    }

    /// LIMIT cuts a batch; the rest waits and goes first after `reset`.
    #[test]
    fn limit_stops_after_that_many_packets_and_reset_allows_more() {
        let config = "InfiniteSource(LIMIT 10, BURST 4) -> Queue -> u :: Unqueue(LIMIT 3) -> c :: Counter -> Discard;";
        let (mut graph, table) = switchyard_core::load_text("t.click", config, &crate::standard(), &[]).unwrap();
        switchyard_core::activate(&mut graph).unwrap();
        let table = Arc::new(table);
        let router = switchyard_core::Router::start(graph, table.clone());
        let wait_for = |n: &str| {
            let deadline = switchyard_core::clock::now() + Duration::from_secs(20);
            while table.read("c.count").unwrap() != n {
                assert!(switchyard_core::clock::now() < deadline, "count {n}");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(table.read("c.count").unwrap(), n);
        };
        wait_for("3");
        assert_eq!(table.read("u.limit").unwrap(), "3");
        table.write("u.reset", "").unwrap();
        wait_for("6");
        table.write("u.limit", "-1").unwrap();
        wait_for("10");
        router.stop_and_wait();
    }
}
