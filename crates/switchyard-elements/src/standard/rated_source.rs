use crate::standard::source::SourceCore;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work,
};

documented! {
    /// Generates copies of one packet at a steady rate.
    ///
    /// # Ports
    /// No inputs, one output; agnostic (pushed from its own task, or
    /// pulled at most at RATE).
    ///
    /// # Arguments
    /// - `DATA` (positional): packet contents; default a 64-byte
    ///   Ethernet/IPv4/UDP frame.
    /// - `RATE` (positional): packets per second; default 10.
    /// - `LIMIT` (positional): packets to send in all; -1 (default) for no limit.
    /// - `ACTIVE` (positional): start sending at once; default true.
    /// - `STOP`: stop the router when LIMIT is reached; default false.
    /// - `LENGTH`: packet length in bytes; pads or truncates DATA.
    /// - `FLOWS`: with N > 1, the UDP source port (bytes 34-35) cycles
    ///   through N values, so the packets form N flows; default 1.
    /// - `BURST`: most packets per batch when catching up; default 128.
    ///
    /// # Handlers
    /// - `count` (read), `reset` (write), `active` (read/write), `limit`
    ///   (read/write): as InfiniteSource.
    /// - `rate` (read/write): packets per second.
    ///
    /// # Example
    /// ```text
    /// RatedSource(RATE 100000) -> Counter -> Discard;
    /// ```
    pub struct RatedSource {
        core: SourceCore,
        rate: Arc<AtomicU64>,
        /// When the packets sent so far were due; credit accrues from here.
        start: Instant,
        sent_since_start: u64,
        last_rate: u64,
        done: bool,
    }
}

impl RatedSource {
    pub const CLASS: ElementClass = ElementClass {
        name: "RatedSource",
        ports: "0/1",
        processing: "a/a",
        doc: RatedSource::DOC,
        factory: RatedSource::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let mut rate = 10u64;
        let core = SourceCore::configure(args, false, |a| {
            if let Some(r) = a.read_p::<u64>("RATE") {
                rate = r;
            }
        })?;
        Some(Box::new(RatedSource {
            core,
            rate: Arc::new(AtomicU64::new(rate)),
            start: switchyard_core::clock::now(),
            sent_since_start: 0,
            last_rate: rate,
            done: false,
        }))
    }

    /// Packets due now under the rate, and when the next one is due.
    fn due(&mut self) -> (usize, Option<Instant>) {
        let rate = self.rate.load(Relaxed);
        let now = switchyard_core::clock::now();
        if rate != self.last_rate {
            self.start = now;
            self.sent_since_start = 0;
            self.last_rate = rate;
        }
        if rate == 0 {
            return (0, None);
        }
        let elapsed = now.duration_since(self.start).as_secs_f64();
        let owed = (elapsed * rate as f64) as u64;
        let n = owed.saturating_sub(self.sent_since_start);
        if n == 0 {
            let next = self.start + Duration::from_secs_f64((self.sent_since_start + 1) as f64 / rate as f64);
            return (0, Some(next));
        }
        // After a long stall, do not burst more than a second's worth.
        if n > rate.max(1) {
            self.sent_since_start = owed - rate.max(1);
        }
        (owed.saturating_sub(self.sent_since_start) as usize, None)
    }

    fn produce(&mut self, cx: &Context<'_>, room: usize) -> Result<Batch, Work> {
        if self.core.allowance(1) == 0 {
            if self.core.exhausted() && !self.done {
                self.done = true;
                self.core.finish(cx);
            }
            return Err(Work::Idle);
        }
        self.done = false;
        let (due, next) = self.due();
        if due == 0 {
            return Err(next.map_or(Work::Idle, Work::SleepUntil));
        }
        let n = self.core.allowance(due.min(self.core.burst).min(room));
        if n == 0 {
            // The Queue downstream is full: its consumer wakes us.
            return Err(Work::Idle);
        }
        self.sent_since_start += n as u64;
        Ok(self.core.make_batch(n))
    }
}

impl Element for RatedSource {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<RatedSource>(old) {
            self.core.take_state(old.core);
        }
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        self.start = switchyard_core::clock::now();
        Ok(ports.outputs.first() == Some(&Processing::Push))
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if cx.stopping() {
            return Work::Done;
        }
        let room = cx.room();
        match self.produce(cx, room) {
            Ok(batch) => {
                cx.push(0, batch);
                Work::Busy
            }
            Err(w) => w,
        }
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        self.produce(cx, usize::MAX).ok()
    }

    fn handlers(&self) -> Vec<Handler> {
        let mut h = self.core.handlers();
        let (r1, r2) = (self.rate.clone(), self.rate.clone());
        h.push(Handler::read_write(
            "rate",
            move || r1.load(Relaxed).to_string(),
            move |v| {
                let r: u64 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("expected packets per second, found '{}'", v.trim()))?;
                r2.store(r, Relaxed);
                Ok(())
            },
        ));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_arguments_are_clicks_data_rate_limit_active() {
        let e = crate::testutil::configure("s :: RatedSource", RatedSource::CLASS, "\\<00>, 10, 5, false");
        assert!(e.is_ok(), "{:?}", e.err());
        let err = crate::testutil::configure("s :: RatedSource", RatedSource::CLASS, "\\<00>, 10, 5, false, 3").err();
        assert!(err.is_some_and(|e| e.contains("too many")), "BURST is a keyword");
    }
}
