use crate::pcap::{Reader, Record};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, Packet, PortInfo, Processing, Work,
};

documented! {
    /// Reads packets from a pcap file (as written by tcpdump or ToDump).
    ///
    /// A truncated or corrupt record ends the file: the error names the
    /// file and the record's byte offset, and every packet before it has
    /// been sent.
    ///
    /// # Ports
    /// No inputs, one output; push (its own task) or pull.
    ///
    /// # Arguments
    /// - `FILENAME` (positional, mandatory): the pcap file.
    /// - `TIMING` (positional): send packets at the pace they were captured; default
    ///   false (as fast as possible).
    /// - `STOP`: stop the router at the end of the file; default false.
    /// - `ACTIVE`: start at once; default true.
    /// - `BURST`: packets per batch; default 128.
    /// - `END_CALL`: `HANDLER [VALUE]`, a handler to write at the end of
    ///   the file (`END_CALL s.run`), through the control plane; at most
    ///   one of STOP and END_CALL.
    /// - `MMAP`: accepted for Click's configurations (how the file is
    ///   read is this element's business).
    ///
    /// Click's `SAMPLE`, `FORCE_IP`, `START`, `START_AFTER`, `END`,
    /// `END_AFTER`, `INTERVAL` and `FILEPOS` are not supported.
    ///
    /// A hot reload that keeps the FromDump (same name and FILENAME) goes
    /// on from where it was, not from the start of the file.
    ///
    /// # Handlers
    /// - `count` (read): packets sent.
    /// - `error` (read): the error that ended the file, if any.
    ///
    /// # Example
    /// ```text
    /// FromDump(in.pcap, STOP true) -> ToDump(out.pcap);
    /// ```
    pub struct FromDump {
        path: PathBuf,
        reader: Option<Reader>,
        stop: bool,
        /// END_CALL: the handler written, and the value, at the end.
        end_call: Option<switchyard_core::HandlerCall>,
        timing: bool,
        active: bool,
        burst: usize,
        pending: Option<Record>,
        /// Capture time of the first record and when it was sent.
        origin: Option<(u64, Instant)>,
        count: Arc<AtomicU64>,
        error: Arc<Mutex<String>>,
        finished: bool,
    }
}

impl FromDump {
    pub const CLASS: ElementClass = ElementClass {
        name: "FromDump",
        ports: "0/1",
        processing: "a/a",
        doc: FromDump::DOC,
        factory: FromDump::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let path: PathBuf = args.read_mp::<String>("FILENAME")?.into();
        // Click's positional order: FILENAME, TIMING.
        let timing = args.read_p::<bool>("TIMING").unwrap_or(false);
        let stop = args.read::<bool>("STOP").unwrap_or(false);
        let active = args.read::<bool>("ACTIVE").unwrap_or(true);
        let burst = args
            .read::<usize>("BURST")
            .unwrap_or(128)
            .clamp(1, switchyard_core::packet::MAX_BATCH);
        let end_call = args.read::<switchyard_core::HandlerCall>("END_CALL");
        if end_call.is_some() && stop {
            args.error(
                Some(args.span_of("END_CALL")),
                "END_CALL and STOP are mutually exclusive",
            );
        }
        let _mmap: Option<bool> = args.read("MMAP");
        if args.has_errors() {
            return None;
        }
        let reader = match Reader::open(&path) {
            Ok(r) => r,
            Err(e) => {
                args.error(None, e);
                return None;
            }
        };
        if reader.linktype != crate::pcap::LINKTYPE_ETHERNET {
            tracing::warn!(file = %path.display(), linktype = reader.linktype, "not an Ethernet capture; frames passed as they are");
        }
        Some(Box::new(FromDump {
            path,
            reader: Some(reader),
            stop,
            end_call,
            timing,
            active,
            burst,
            pending: None,
            origin: None,
            count: Arc::default(),
            error: Arc::default(),
            finished: false,
        }))
    }

    fn next(&mut self) -> Option<Record> {
        if let Some(r) = self.pending.take() {
            return Some(r);
        }
        let reader = self.reader.as_mut()?;
        match reader.next_record() {
            Ok(Some(r)) => Some(r),
            Ok(None) => {
                self.reader = None;
                None
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), offset = e.offset, "{e}; the packets before it were sent");
                *self.error.lock().expect("error lock") = e.to_string();
                self.reader = None;
                None
            }
        }
    }

    /// Up to a batch of packets due now; `Err(when)` if the next is not due.
    fn fill(&mut self, room: usize) -> Result<Batch, Option<Instant>> {
        let mut b = Batch::new();
        while b.len() < self.burst.min(room) {
            let Some(rec) = self.next() else { break };
            if self.timing {
                let (t0, start) = *self
                    .origin
                    .get_or_insert((rec.timestamp_ns, switchyard_core::clock::now()));
                let due = start + Duration::from_nanos(rec.timestamp_ns.saturating_sub(t0));
                if due > switchyard_core::clock::now() {
                    self.pending = Some(rec);
                    if b.is_empty() {
                        return Err(Some(due));
                    }
                    break;
                }
            }
            let mut p = Packet::from_data(&rec.data);
            p.anno.timestamp_ns = rec.timestamp_ns;
            b.push(p);
        }
        self.count.fetch_add(b.len() as u64, Relaxed);
        Ok(b)
    }

    fn at_end(&mut self, cx: &Context<'_>) {
        if !self.finished {
            self.finished = true;
            tracing::info!(file = %self.path.display(), packets = self.count.load(Relaxed), "end of dump");
            if self.stop {
                cx.request_stop();
            }
            if let Some(switchyard_core::HandlerCall { handler, value }) = &self.end_call {
                if let Err(e) = cx
                    .control()
                    .write_as(handler, value, "FromDump", "END_CALL: end of file")
                {
                    tracing::error!(%handler, error = %e, "END_CALL failed");
                }
            }
        }
    }
}

impl Element for FromDump {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(mut old) = downcast::<FromDump>(old) {
            if old.path == self.path {
                self.reader = old.reader.take();
                self.pending = old.pending.take();
                self.origin = old.origin;
                self.finished = old.finished;
                self.count = old.count.clone();
                self.error = old.error.clone();
            }
        }
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        Ok(ports.outputs.first() == Some(&Processing::Push))
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if cx.stopping() || !self.active {
            return if cx.stopping() { Work::Done } else { Work::Idle };
        }
        // Never more than the Queues downstream can take, as Click's
        // FromDump waits on their full notifier.
        let room = cx.room();
        if room == 0 {
            return Work::Idle;
        }
        match self.fill(room) {
            Ok(b) if b.is_empty() => {
                self.at_end(cx);
                Work::Done
            }
            Ok(b) => {
                cx.push(0, b);
                Work::Busy
            }
            Err(Some(due)) => Work::SleepUntil(due),
            Err(None) => Work::Idle,
        }
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        match self.fill(usize::MAX) {
            Ok(b) if b.is_empty() => {
                self.at_end(cx);
                None
            }
            Ok(b) => Some(b),
            Err(_) => None,
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let c = self.count.clone();
        let e = self.error.clone();
        vec![
            Handler::read_only("count", move || c.load(Relaxed).to_string()),
            Handler::read_only("error", move || e.lock().expect("error lock").clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(config: &str) -> Result<FromDump, String> {
        let e = FromDump::CLASS.configure("f :: FromDump", config)?;
        Ok(*downcast::<FromDump>(e).expect("a FromDump"))
    }

    #[test]
    fn positional_arguments_are_clicks_filename_timing() {
        let dir = std::env::temp_dir().join(format!("sy-fromdump-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.pcap");
        crate::pcap::Writer::create(&path, 65535, crate::pcap::LINKTYPE_ETHERNET).unwrap();
        let f = path.display();
        let d = configure(&format!("{f}, true")).unwrap();
        assert!(d.timing && !d.stop);
        let d = configure(&format!("{f}, TIMING true, STOP true, ACTIVE false, MMAP false")).unwrap();
        assert!(d.timing && d.stop && !d.active);
        let d = configure(&format!("{f}, END_CALL s.run 1 2")).unwrap();
        assert_eq!(
            d.end_call,
            Some(switchyard_core::HandlerCall {
                handler: "s.run".into(),
                value: "1 2".into()
            })
        );
        let err = configure(&format!("{f}, STOP true, END_CALL s.run")).err().unwrap();
        assert!(err.contains("mutually exclusive"));
        assert!(
            configure(&format!("{f}, true, true"))
                .err()
                .unwrap()
                .contains("too many"),
            "STOP is a keyword"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
