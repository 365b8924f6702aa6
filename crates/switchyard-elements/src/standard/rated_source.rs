use crate::standard::source::{SourceClass, SourceCore};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, FromArg, Handler, PortInfo, Processing, Work,
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
    /// - `LENGTH`'s old name `DATASIZE` is accepted, as in Click.
    /// - `BANDWIDTH`: instead of RATE, bytes per second (`2000Bps`,
    ///   `100kbps`, `1Mb/s`; a bare number is bytes): the rate becomes
    ///   BANDWIDTH divided by the packet length.
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

/// Click's bandwidth argument, in bytes per second: a number, an
/// optional `k`/`K`, `M` or `G` (powers of 1000), and a unit: `Bps` or
/// `B/s` (bytes), `bps`, `b/s` or `baud` (bits). A bare number is bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bandwidth(u64);

impl FromArg for Bandwidth {
    const EXPECTED: &'static str = "a bandwidth (2000Bps, 100kbps)";
    fn from_arg(text: &str) -> Option<Self> {
        const UNITS: [(&str, f64); 5] = [
            ("Bps", 1.0),
            ("B/s", 1.0),
            ("bps", 0.125),
            ("b/s", 0.125),
            ("baud", 0.125),
        ];
        let text = text.trim();
        let (num, scale) = match UNITS
            .iter()
            .find_map(|&(u, scale)| Some((text.strip_suffix(u)?, scale)))
        {
            // A prefix only before a unit, as in Click.
            Some((rest, scale)) => match rest.as_bytes().last() {
                Some(b'k' | b'K') => (&rest[..rest.len() - 1], scale * 1e3),
                Some(b'M') => (&rest[..rest.len() - 1], scale * 1e6),
                Some(b'G') => (&rest[..rest.len() - 1], scale * 1e9),
                _ => (rest, scale),
            },
            None => (text, 1.0),
        };
        let v: f64 = num.parse().ok()?;
        let bytes = v * scale;
        (v.is_finite() && v >= 0.0 && bytes <= f64::from(u32::MAX)).then(|| Bandwidth(bytes.round() as u64))
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
        let mut bandwidth = None;
        let core = SourceCore::configure(args, SourceClass::Rated, |a| {
            if let Some(r) = a.read_p::<u64>("RATE") {
                rate = r;
            }
            bandwidth = a.read::<Bandwidth>("BANDWIDTH");
        })?;
        // Click: BANDWIDTH, in bytes per second, sets the packet rate.
        if let Some(Bandwidth(b)) = bandwidth.filter(|b| b.0 > 0) {
            rate = b / core.packet_len().max(1) as u64;
        }
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

    #[test]
    fn clicks_bandwidth_sets_the_rate_and_datasize_the_length() {
        let rate = |config: &str| {
            let e = crate::testutil::configure("s :: RatedSource", RatedSource::CLASS, config).unwrap();
            crate::testutil::read(&e.handlers(), "rate")
        };
        assert_eq!(rate("LENGTH 100, BANDWIDTH 2000Bps"), "20");
        assert_eq!(rate("DATASIZE 100, BANDWIDTH 16kbps"), "20");
        assert_eq!(rate("\\<00 01 02 03>, BANDWIDTH 1kB/s"), "250");
        assert_eq!(rate("LENGTH 125, BANDWIDTH 1Mb/s"), "1000");
        assert_eq!(Bandwidth::from_arg("2000"), Some(Bandwidth(2000)));
        for bad in ["2k", "fast", "-1Bps"] {
            assert_eq!(Bandwidth::from_arg(bad), None, "{bad}");
        }
    }
}
