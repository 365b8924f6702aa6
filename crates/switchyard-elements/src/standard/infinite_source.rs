use crate::standard::source::{SourceClass, SourceCore};
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work,
};

documented! {
    /// Generates copies of one packet as fast as it can.
    ///
    /// # Ports
    /// No inputs, one output; agnostic. Pushed from its own task, or
    /// generates on demand when pulled.
    ///
    /// # Arguments
    /// - `DATA` (positional): packet contents, e.g. `\<00 11 22>`; default a
    ///   64-byte Ethernet/IPv4/UDP frame (10.0.0.1:1234 -> 10.0.0.2:5678).
    /// - `LIMIT` (positional): packets to send in all; -1 (default) for no limit.
    /// - `BURST` (positional): packets per batch, 1 to 256; default 128
    ///   (Click's default is 1; batches are how Switchyard is fast).
    /// - `ACTIVE` (positional): start sending at once; default true.
    /// - `STOP`: stop the router when LIMIT is reached; default false.
    /// - `END_CALL`: `HANDLER [VALUE]`, a handler to write when LIMIT is
    ///   reached (`END_CALL s.run`), through the control plane; at most
    ///   one of STOP and END_CALL.
    /// - `LENGTH`: packet length in bytes; pads or truncates DATA.
    ///   `DATASIZE` is Click's old name for it.
    /// - `TIMESTAMP`: stamp each packet with the time; default true
    ///   (false leaves the timestamp annotation 0).
    /// - `FLOWS`: with N > 1, the UDP source port (bytes 34-35) cycles
    ///   through N values, so the packets form N flows; past 64512 flows
    ///   the destination port (bytes 36-37) varies too. Default 1.
    ///
    /// # Handlers
    /// - `count` (read): packets sent.
    /// - `reset` (write): zeroes the count, so LIMIT more packets go out.
    /// - `active` (read/write): whether it sends.
    /// - `limit` (read/write): LIMIT.
    ///
    /// # Example
    /// ```text
    /// InfiniteSource(LENGTH 64, LIMIT 1000, STOP true) -> Counter -> Discard;
    /// ```
    pub struct InfiniteSource {
        core: SourceCore,
        done: bool,
    }
}

impl InfiniteSource {
    pub const CLASS: ElementClass = ElementClass {
        name: "InfiniteSource",
        ports: "0/1",
        processing: "a/a",
        doc: InfiniteSource::DOC,
        factory: InfiniteSource::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let core = SourceCore::configure(args, SourceClass::Infinite, |_| {})?;
        Some(Box::new(InfiniteSource { core, done: false }))
    }
}

impl Element for InfiniteSource {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<InfiniteSource>(old) {
            self.core.take_state(old.core);
        }
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        Ok(ports.outputs.first() == Some(&Processing::Push))
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if cx.stopping() {
            return Work::Done;
        }
        // Never more than the Queues downstream can take (Click's sources
        // wait on the full notifier): a slow consumer loses nothing.
        let n = self.core.allowance(self.core.burst.min(cx.room()));
        if n == 0 {
            if self.core.exhausted() {
                if !self.done {
                    self.done = true;
                    self.core.finish(cx);
                }
                // Idle rather than Done: a `reset` or `limit` write revives it.
                return Work::Idle;
            }
            return Work::Idle;
        }
        self.done = false;
        let batch = self.core.make_batch(n);
        cx.push(0, batch);
        Work::Busy
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let n = self.core.allowance(self.core.burst);
        if n == 0 {
            if self.core.exhausted() && !self.done {
                self.done = true;
                self.core.finish(cx);
            }
            return None;
        }
        Some(self.core.make_batch(n))
    }

    fn handlers(&self) -> Vec<Handler> {
        self.core.handlers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;

    #[test]
    fn positional_arguments_are_clicks_data_limit_burst_active() {
        let e = configure("s :: InfiniteSource", InfiniteSource::CLASS, "\\<00 01>, 5, 2, false");
        assert!(e.is_ok(), "{:?}", e.err());
        let err = configure("s :: InfiniteSource", InfiniteSource::CLASS, "\\<00>, 5, 2, false, 1").err();
        assert!(err.is_some_and(|e| e.contains("too many")));
    }

    #[test]
    fn clicks_keywords_timestamp_datasize_and_end_call_are_accepted() {
        for config in [
            "LIMIT 1, TIMESTAMP false",
            "DATASIZE 100",
            "LENGTH 60, DATASIZE 100",
            "LIMIT 3, END_CALL s.run",
            "LIMIT 3, END_CALL c.write 1 2",
        ] {
            let e = configure("s :: InfiniteSource", InfiniteSource::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        let err = configure(
            "s :: InfiniteSource",
            InfiniteSource::CLASS,
            "STOP true, END_CALL s.run",
        )
        .err();
        assert!(err.is_some_and(|e| e.contains("mutually exclusive")));
        let err = configure("s :: InfiniteSource", InfiniteSource::CLASS, "DATASIZE 100000").err();
        assert!(err.is_some_and(|e| e.contains("DATASIZE 100000 too large")));
    }

    #[test]
    fn end_call_writes_its_handler_at_the_limit() {
        let config = "InfiniteSource(LIMIT 5, END_CALL stop) -> c :: Counter -> Discard;";
        let (mut graph, table) = switchyard_core::load_text("t.click", config, &crate::standard(), &[]).unwrap();
        switchyard_core::activate(&mut graph).unwrap();
        let table = std::sync::Arc::new(table);
        let mut router = switchyard_core::Router::start(graph, table.clone());
        assert!(
            router.wait_timeout(std::time::Duration::from_secs(20)),
            "END_CALL stop stops the router"
        );
        assert_eq!(table.read("c.count").unwrap(), "5");
    }

    #[test]
    fn timestamp_false_leaves_the_annotation_zero_and_datasize_sizes_packets() {
        let mut args = Args::parse_str("s :: InfiniteSource", "LIMIT 2, TIMESTAMP false, DATASIZE 100");
        let core = SourceCore::configure(&mut args, SourceClass::Infinite, |_| {}).unwrap();
        let b = core.make_batch(2);
        assert!(b.iter().all(|p| p.anno.timestamp_ns == 0 && p.len() == 100));
        let mut args = Args::parse_str("s :: InfiniteSource", "LIMIT 2");
        let core = SourceCore::configure(&mut args, SourceClass::Infinite, |_| {}).unwrap();
        assert!(core.make_batch(1).iter().all(|p| p.anno.timestamp_ns > 0));
    }
}
