use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::packet::now_ns;
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Seconds, Work,
};

documented! {
    /// Pulls packets and pushes them out once they are DELAY old (by their
    /// timestamp annotation): a branch that runs late, for testing cut-over
    /// between branches of different latency, or to emulate a slow path.
    ///
    /// # Ports
    /// One pull input, one push output.
    ///
    /// # Arguments
    /// - `DELAY` (positional, mandatory): a time, in seconds (`0.002`) or
    ///   with Click's units (`2ms`, `.1s`), at most an hour.
    ///
    /// # Handlers
    /// - `count` (read): packets moved.
    /// - `delay` (read): DELAY in seconds.
    ///
    /// # Example
    /// ```text
    /// hub[1] -> Queue(100000) -> DelayUnqueue(0.002) -> [1]sel;
    /// ```
    pub struct DelayUnqueue {
        delay_ns: u64,
        held: Option<Batch>,
        count: Arc<AtomicU64>,
    }
}

impl DelayUnqueue {
    pub const CLASS: ElementClass = ElementClass {
        name: "DelayUnqueue",
        ports: "1/1",
        processing: "l/h",
        doc: DelayUnqueue::DOC,
        factory: DelayUnqueue::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let Seconds(delay) = args.read_mp::<Seconds>("DELAY")?;
        if !(0.0..=3600.0).contains(&delay) {
            args.error(None, format!("DELAY {delay} out of range: 0 to 3600 seconds"));
            return None;
        }
        Some(Box::new(DelayUnqueue {
            delay_ns: (delay * 1e9) as u64,
            held: None,
            count: Arc::default(),
        }))
    }
}

impl Element for DelayUnqueue {
    fn take_state(&mut self, old: Box<dyn Element>) {
        // A held batch goes on waiting in the successor, not lost.
        if let Some(mut old) = downcast::<DelayUnqueue>(old) {
            self.held = old.held.take();
            self.count = old.count.clone();
        }
    }

    fn initialize(&mut self, _ports: &PortInfo) -> Result<bool, String> {
        Ok(true)
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        let mut moved = false;
        for _ in 0..64 {
            let batch = match self.held.take() {
                Some(b) => b,
                None => match cx.pull(0) {
                    Some(b) => b,
                    None => break,
                },
            };
            // A batch carries one timestamp (sources stamp per batch).
            let stamp = batch.packets().first().map_or(0, |p| p.anno.timestamp_ns);
            let now = now_ns();
            let due = stamp.saturating_add(self.delay_ns);
            if now < due {
                self.held = Some(batch);
                return if moved {
                    Work::Busy
                } else {
                    Work::SleepUntil(switchyard_core::clock::now() + Duration::from_nanos(due - now))
                };
            }
            self.count.fetch_add(batch.len() as u64, Relaxed);
            cx.push(0, batch);
            moved = true;
        }
        if moved {
            Work::Busy
        } else {
            Work::Idle
        }
    }

    fn has_pending(&self) -> bool {
        false
    }

    fn is_finished(&self) -> bool {
        self.held.is_none()
    }

    fn holds_packets(&self) -> bool {
        self.held.is_some()
    }

    fn handlers(&self) -> Vec<Handler> {
        let c = self.count.clone();
        let d = self.delay_ns;
        vec![
            Handler::read_only("count", move || c.load(Relaxed).to_string()),
            Handler::read_only("delay", move || format!("{}", d as f64 / 1e9)).merged(switchyard_core::Merge::Same),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;

    #[test]
    fn delay_is_positional_with_clicks_time_units() {
        for config in ["0.002", "2ms", ".1s", "DELAY 0.03s"] {
            let e = configure("d :: DelayUnqueue", DelayUnqueue::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        let e = configure("d :: DelayUnqueue", DelayUnqueue::CLASS, "2ms").unwrap();
        assert_eq!(crate::testutil::read(&e.handlers(), "delay"), "0.002");
        assert!(configure("d :: DelayUnqueue", DelayUnqueue::CLASS, "2h").is_err());
    }
}
