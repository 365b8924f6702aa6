use crate::pcap::Writer;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work};

documented! {
    /// Writes packets to a pcap file that tcpdump and Wireshark read.
    ///
    /// # Ports
    /// One input, no outputs; agnostic (on a pull path it pulls as a task).
    ///
    /// # Arguments
    /// - `FILENAME` (positional, mandatory): the file, created or truncated.
    /// - `SNAPLEN`: most bytes kept per packet; default 65535.
    ///
    /// # Handlers
    /// - `count` (read): packets written.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0) -> ToDump(capture.pcap);
    /// ```
    pub struct ToDump {
        writer: Writer,
        count: Arc<AtomicU64>,
        failed: bool,
    }
}

impl ToDump {
    pub const CLASS: ElementClass = ElementClass {
        name: "ToDump",
        ports: "1/0",
        processing: "a/a",
        doc: ToDump::DOC,
        factory: ToDump::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let path = args.read_mp::<String>("FILENAME")?;
        let snaplen = args.read::<u32>("SNAPLEN").unwrap_or(65535);
        match Writer::create(path.as_ref(), snaplen) {
            Ok(writer) => Some(Box::new(ToDump {
                writer,
                count: Arc::default(),
                failed: false,
            })),
            Err(e) => {
                args.error(None, e);
                None
            }
        }
    }

    fn write(&mut self, batch: &Batch) {
        if self.failed {
            return;
        }
        let mut r = batch
            .iter()
            .try_for_each(|p| self.writer.write(p.anno.timestamp_ns, p.data()));
        if r.is_ok() {
            // Flushed per batch: what was counted is on disk for readers.
            r = self.writer.flush();
        }
        match r {
            Ok(()) => {
                self.count.fetch_add(batch.len() as u64, Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "ToDump: write failed; dropping packets from now on");
                self.failed = true;
            }
        }
    }
}

impl Element for ToDump {
    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        Ok(ports.inputs.first() == Some(&Processing::Pull))
    }

    fn push(&mut self, _port: usize, batch: Batch, _cx: &mut Context<'_>) {
        self.write(&batch);
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        match cx.pull(0) {
            Some(b) => {
                self.write(&b);
                Work::Busy
            }
            None => Work::Idle,
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let c = self.count.clone();
        vec![Handler::read_only("count", move || c.load(Relaxed).to_string())]
    }
}

impl Drop for ToDump {
    fn drop(&mut self) {
        let _ = self.writer.flush();
    }
}
