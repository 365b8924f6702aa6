use crate::util::RateMeter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler};

documented! {
    /// Counts packets and bytes passing through, and their rate.
    ///
    /// # Ports
    /// One input, one output; agnostic (works on push and pull paths).
    ///
    /// # Arguments
    /// - `COUNT_CALL`: `N HANDLER [VALUE]`: when the packet count reaches
    ///   N, write VALUE to HANDLER (through the control plane, like an
    ///   operator's write) before the batch holding that packet goes on.
    /// - `BYTE_COUNT_CALL`: `N HANDLER [VALUE]`: the same when the byte
    ///   count reaches or passes N.
    ///
    /// Each call happens once, and again after a `reset`.
    ///
    /// # Handlers
    /// - `count` (read): packets seen.
    /// - `byte_count` (read): bytes seen.
    /// - `rate` (read): packets per second, averaged over the last second or so.
    /// - `reset` (write): zeroes the counts (and rearms the calls).
    ///
    /// # Example
    /// ```text
    /// src -> old :: Counter -> Discard;
    /// ```
    pub struct Counter {
        stats: Arc<Stats>,
        meter: RateMeter,
        count_call: Option<Call>,
        byte_call: Option<Call>,
    }
}

#[derive(Default)]
struct Stats {
    count: AtomicU64,
    bytes: AtomicU64,
    /// Whether COUNT_CALL and BYTE_COUNT_CALL have been made since the
    /// last reset.
    count_called: AtomicBool,
    byte_called: AtomicBool,
}

/// A COUNT_CALL or BYTE_COUNT_CALL: the threshold, then the handler write.
struct Call {
    at: u64,
    handler: String,
    value: String,
}

impl Call {
    /// Reads keyword `name`, `N HANDLER [VALUE]`.
    fn read(args: &mut Args, name: &'static str) -> Option<Call> {
        let text = args.read::<String>(name)?;
        let mut words = text.trim().splitn(2, char::is_whitespace);
        let at = words.next().and_then(|n| n.parse::<u64>().ok());
        let call = <switchyard_core::HandlerCall as switchyard_core::FromArg>::from_arg(words.next().unwrap_or(""));
        match (at, call) {
            (Some(at), Some(call)) => Some(Call {
                at,
                handler: call.handler,
                value: call.value,
            }),
            _ => {
                let span = args.span_of(name);
                args.error(
                    Some(span),
                    format!("{name}: expected 'N HANDLER [VALUE]', found '{text}'"),
                );
                None
            }
        }
    }

    /// Makes the call if the total went from `before` to `after` across
    /// the threshold and it has not been made since the last reset.
    fn check(&self, before: u64, after: u64, called: &AtomicBool, what: &str, cx: &Context<'_>) {
        if before < self.at && after >= self.at && !called.swap(true, Relaxed) {
            let reason = format!("{what} reached {}", self.at);
            if let Err(e) = cx.control().write_as(&self.handler, &self.value, "Counter", &reason) {
                tracing::error!(handler = %self.handler, error = %e, "{what} call failed");
            }
        }
    }
}

impl Counter {
    pub const CLASS: ElementClass = ElementClass {
        name: "Counter",
        ports: "1/1",
        processing: "a/a",
        doc: Counter::DOC,
        factory: Counter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let count_call = Call::read(args, "COUNT_CALL");
        let byte_call = Call::read(args, "BYTE_COUNT_CALL");
        if args.has_errors() {
            return None;
        }
        Some(Box::new(Counter {
            stats: Arc::default(),
            meter: RateMeter::new(),
            count_call,
            byte_call,
        }))
    }

    /// Counts `batch`, making the calls whose thresholds it crosses.
    fn account(&mut self, batch: &Batch, cx: &Context<'_>) {
        let n = batch.len() as u64;
        let count = self.stats.count.fetch_add(n, Relaxed);
        let nbytes = batch.byte_len();
        let bytes = self.stats.bytes.fetch_add(nbytes, Relaxed);
        self.meter.add(n);
        if let Some(c) = &self.count_call {
            c.check(count, count + n, &self.stats.count_called, "COUNT_CALL", cx);
        }
        if let Some(c) = &self.byte_call {
            c.check(bytes, bytes + nbytes, &self.stats.byte_called, "BYTE_COUNT_CALL", cx);
        }
    }
}

impl Element for Counter {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<Counter>(old) {
            self.stats = old.stats;
        }
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.account(&batch, cx);
        if !batch.is_empty() {
            cx.push(0, batch);
        }
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let batch = cx.pull(0)?;
        self.account(&batch, cx);
        Some(batch)
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
                s3.count_called.store(false, Relaxed);
                s3.byte_called.store(false, Relaxed);
                Ok(())
            }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;
    use std::time::Duration;

    #[test]
    fn clicks_count_call_keywords_are_read() {
        for config in [
            "",
            "COUNT_CALL 3 b.active true",
            "BYTE_COUNT_CALL 1000 stop",
            "COUNT_CALL 1 s.run",
        ] {
            let e = configure("c :: Counter", Counter::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        for config in ["COUNT_CALL 3", "COUNT_CALL x b.active", "3"] {
            assert!(configure("c :: Counter", Counter::CLASS, config).is_err(), "{config}");
        }
    }

    /// As in Click's tests: the call at the third packet turns the source
    /// off, so exactly three packets pass.
    #[test]
    fn count_call_writes_its_handler_when_the_count_is_reached() {
        let config = "s :: InfiniteSource(LIMIT 10, BURST 1) -> c :: Counter(COUNT_CALL 3 s.active false) -> Discard;";
        let (mut graph, table) = switchyard_core::load_text("t.click", config, &crate::standard(), &[]).unwrap();
        switchyard_core::activate(&mut graph).unwrap();
        let table = Arc::new(table);
        let router = switchyard_core::Router::start(graph, table.clone());
        let deadline = switchyard_core::clock::now() + Duration::from_secs(20);
        while table.read("s.active").unwrap() != "false" {
            assert!(switchyard_core::clock::now() < deadline, "the call happens");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(table.read("c.count").unwrap(), "3");
        router.stop_and_wait();
    }
}
