use crate::pcap::Writer;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work,
};

documented! {
    /// Writes packets to a pcap file that tcpdump and Wireshark read.
    ///
    /// # Ports
    /// One input, no outputs; agnostic (on a pull path it pulls as a task).
    ///
    /// # Arguments
    /// - `FILENAME` (positional, mandatory): the file, created or truncated
    ///   when the router starts. A hot reload that keeps the ToDump (same
    ///   name, FILENAME and SNAPLEN) goes on appending to the same capture.
    /// - `SNAPLEN` (positional): most bytes kept per packet; default 65535.
    /// - `ENCAP` (positional): `ETHER` (default) for Ethernet frames, `IP`
    ///   for packets starting at the IP header (pcap link type RAW).
    ///
    /// # Handlers
    /// - `count` (read): packets written.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0) -> ToDump(capture.pcap);
    /// ```
    pub struct ToDump {
        path: PathBuf,
        snaplen: u32,
        linktype: u32,
        writer: Option<Writer>,
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
        let path: PathBuf = args.read_mp::<String>("FILENAME")?.into();
        // Click's positional order: FILENAME, SNAPLEN, ENCAP.
        let snaplen = args.read_p::<u32>("SNAPLEN").unwrap_or(65535);
        let linktype = match args.read_p::<String>("ENCAP").as_deref() {
            None | Some("ETHER") => crate::pcap::LINKTYPE_ETHERNET,
            Some("IP") => crate::pcap::LINKTYPE_RAW,
            Some(other) => {
                args.error(
                    Some(args.span_of("ENCAP")),
                    format!("ENCAP '{other}' unknown: expected ETHER or IP"),
                );
                return None;
            }
        };
        // Checked here, created (truncated) only by `activate`: checking a
        // reload must not wipe the capture the running ToDump writes.
        if let Err(e) = std::fs::OpenOptions::new().append(true).create(true).open(&path) {
            args.error(None, format!("{}: {e}", path.display()));
            return None;
        }
        Some(Box::new(ToDump {
            path,
            snaplen,
            linktype,
            writer: None,
            count: Arc::default(),
            failed: false,
        }))
    }

    fn write(&mut self, batch: &Batch) {
        let Some(writer) = self.writer.as_mut().filter(|_| !self.failed) else {
            return;
        };
        let mut r = batch
            .iter()
            .try_for_each(|p| writer.write(p.anno.timestamp_ns, p.data()));
        if r.is_ok() {
            // Flushed per batch: what was counted is on disk for readers.
            r = writer.flush();
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
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(mut old) = downcast::<ToDump>(old) {
            if old.path == self.path && old.snaplen == self.snaplen && old.linktype == self.linktype {
                self.writer = old.writer.take();
                self.failed = old.failed;
            }
            self.count = old.count.clone();
        }
    }

    fn activate(&mut self) -> Result<(), String> {
        if self.writer.is_none() {
            self.writer = Some(Writer::create(&self.path, self.snaplen, self.linktype).map_err(|e| e.to_string())?);
        }
        Ok(())
    }

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
        if let Some(w) = self.writer.as_mut() {
            let _ = w.flush();
        }
    }
}
