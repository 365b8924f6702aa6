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
    /// - `SNAPLEN` (positional): most bytes kept per packet; 0 for no limit,
    ///   as in Click. Default 65535 (Click's is 2000).
    /// - `ENCAP` (positional): the link type recorded: `ETHER` (default)
    ///   for Ethernet frames, `IP` for packets starting at the IP header
    ///   (pcap link type RAW), or another of Click's names (`NULL`, `FDDI`,
    ///   `ATM`, `RFC1483`, `ATM_RFC1483`, `802_11`, `802.11`,
    ///   `802_11_RADIO`, `802.11_RADIO`, `SLL`, `AIRONET`, `HDLC`,
    ///   `PPP_HDLC`, `PPP`, `SUNATM`, `PRISM`) or `#N` for link type N.
    ///   Packets are written as they are, whatever the type says.
    /// - `EXTRA_LENGTH`: accepted for Click's configurations: packets here
    ///   carry no extra-length annotation, so the original length is the
    ///   packet's either way.
    /// - `UNBUFFERED`: accepted; the file is flushed after every batch
    ///   anyway.
    /// - `NANO`: only `false` is accepted: files have microsecond
    ///   timestamps.
    ///
    /// Click's `USE_ENCAP_FROM` is not supported.
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
        let snaplen = match args.read_p::<u32>("SNAPLEN").unwrap_or(65535) {
            0 => u32::MAX,
            n => n,
        };
        let linktype = match args.read_p::<String>("ENCAP") {
            None => Some(crate::pcap::LINKTYPE_ETHERNET),
            Some(name) => linktype(&name).or_else(|| {
                args.error(
                    Some(args.span_of("ENCAP")),
                    format!("ENCAP '{name}' unknown: expected ETHER, IP, another pcap link type name or #N"),
                );
                None
            }),
        };
        let _extra_length: Option<bool> = args.read("EXTRA_LENGTH");
        let _unbuffered: Option<bool> = args.read("UNBUFFERED");
        if args.read::<bool>("NANO") == Some(true) {
            let span = args.span_of("NANO");
            args.error(
                Some(span),
                "NANO true is not supported: files have microsecond timestamps",
            );
        }
        let linktype = linktype.filter(|_| !args.has_errors())?;
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

/// Click's names for pcap link types, and `#N`.
fn linktype(name: &str) -> Option<u32> {
    const NAMES: [(&str, u32); 18] = [
        ("NULL", 0),
        ("IP", crate::pcap::LINKTYPE_RAW),
        ("ETHER", crate::pcap::LINKTYPE_ETHERNET),
        ("FDDI", 10),
        ("ATM", 100),
        ("RFC1483", 100),
        ("ATM_RFC1483", 100),
        ("802_11", 105),
        ("802.11", 105),
        ("802_11_RADIO", 127),
        ("802.11_RADIO", 127),
        ("SLL", 113),
        ("AIRONET", 120),
        ("HDLC", 104),
        ("PPP_HDLC", 50),
        ("PPP", 9),
        ("SUNATM", 123),
        ("PRISM", 119),
    ];
    if let Some(&(_, t)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Some(t);
    }
    let n: u32 = name.strip_prefix('#')?.parse().ok()?;
    (n < 0x7FFF_FFFF).then_some(n)
}

impl Element for ToDump {
    fn exclusive(&self) -> Option<(String, String)> {
        Some((
            format!("write '{}'", self.path.display()),
            "put $COPY in its file name".into(),
        ))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(config: &str) -> Result<ToDump, String> {
        let e = ToDump::CLASS.configure("d :: ToDump", config)?;
        Ok(*downcast::<ToDump>(e).expect("a ToDump"))
    }

    #[test]
    fn positional_arguments_are_clicks_filename_snaplen_encap() {
        let dir = std::env::temp_dir().join(format!("sy-todump-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("out.pcap");
        let f = f.display();
        let d = configure(&format!("{f}, 2000, IP")).unwrap();
        assert_eq!((d.snaplen, d.linktype), (2000, crate::pcap::LINKTYPE_RAW));
        let d = configure(&format!("{f}, 0")).unwrap();
        assert_eq!((d.snaplen, d.linktype), (u32::MAX, crate::pcap::LINKTYPE_ETHERNET));
        for (encap, t) in [("SLL", 113), ("802.11", 105), ("#147", 147), ("ETHER", 1)] {
            assert_eq!(
                configure(&format!("{f}, ENCAP {encap}")).map(|d| d.linktype),
                Ok(t),
                "{encap}"
            );
        }
        let d = configure(&format!(
            "FILENAME {f}, SNAPLEN 96, EXTRA_LENGTH false, UNBUFFERED true, NANO false"
        ));
        assert_eq!(d.map(|d| d.snaplen), Ok(96));
        assert!(
            configure(&format!("{f}, ENCAP ether")).is_err(),
            "Click's names are upper case"
        );
        assert!(configure(&format!("{f}, NANO true"))
            .err()
            .unwrap()
            .contains("NANO true"));
        assert!(configure(&format!("{f}, 96, IP, 3"))
            .err()
            .unwrap()
            .contains("too many"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
