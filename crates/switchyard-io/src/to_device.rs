use crate::device::{check, open_transmit, retire, Device, Method};
use crate::from_device::read_method;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work,
};

documented! {
    /// Sends frames out of a Linux network interface.
    ///
    /// The default method, `ring`, writes frames into an AF_PACKET
    /// TPACKET_V2 transmit ring that bypasses the qdisc and flushes it with
    /// one system call per batch; `pnet` sends each frame with its own
    /// system call. Frames that do not fit in a ring slot (over 2016 bytes)
    /// or find the ring full are dropped and counted.
    ///
    /// Opened when the router starts; a hot reload that keeps the element
    /// (same DEVNAME and METHOD) keeps the open ring.
    ///
    /// # Ports
    /// One input, no outputs; agnostic: pushed to (sends at once), or a
    /// task pulling from a Queue, as in Click.
    ///
    /// # Arguments
    /// - `DEVNAME` (positional, mandatory): the interface.
    /// - `BURST`: frames pulled per batch; default 128.
    /// - `METHOD`: `ring` (default), `pnet` or `xdp`. Click's `LINUX`,
    ///   `PCAP` and `PCAPFD` mean `ring` (on Linux each sends through an
    ///   AF_PACKET socket); its `DEVBPF` and `NETMAP` are not supported.
    ///   `xdp` (a Switchyard addition) sends through the AF_XDP socket of
    ///   the interface queue, the one a FromDevice with `METHOD xdp` on
    ///   the same interface and queue receives from.
    /// - `QUEUE`, `ZEROCOPY`, `XDP_MODE`: `xdp` only, as FromDevice's.
    ///   With `xdp`, a frame must fit 2048 bytes, and a send waits (at most
    ///   20 ms, only while the kernel gives frames back) when the receiver
    ///   holds them all.
    /// - `DEBUG`: accepted for Click's configurations; send failures are
    ///   logged anyway.
    ///
    /// # Handlers
    /// - `count` (read): frames sent.
    /// - `drops` (read): frames that could not be sent.
    ///
    /// # Example
    /// ```text
    /// sel -> ToDevice(eth1);
    /// ```
    pub struct ToDevice {
        name: String,
        method: Method,
        burst: usize,
        dev: Option<Box<dyn Device>>,
        count: Arc<AtomicU64>,
        drops: Arc<AtomicU64>,
        failing: bool,
    }
}

impl ToDevice {
    pub const CLASS: ElementClass = ElementClass {
        name: "ToDevice",
        ports: "1/0",
        processing: "a/a",
        doc: ToDevice::DOC,
        factory: ToDevice::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let name = args.read_mp::<String>("DEVNAME")?;
        let burst = args
            .read::<usize>("BURST")
            .unwrap_or(128)
            .clamp(1, switchyard_core::packet::MAX_BATCH);
        let method = read_method(args, None)?;
        let _debug: Option<bool> = args.read("DEBUG");
        if args.has_errors() {
            return None;
        }
        Some(Box::new(ToDevice {
            name,
            method,
            burst,
            dev: None,
            count: Arc::default(),
            drops: Arc::default(),
            failing: false,
        }))
    }

    fn send(&mut self, batch: &Batch) {
        let Some(dev) = self.dev.as_mut() else { return };
        match dev.send(batch) {
            Ok(n) => {
                if self.failing {
                    self.failing = false;
                    tracing::warn!(device = %self.name, "sending again");
                }
                self.count.fetch_add(n as u64, Relaxed);
                self.drops.fetch_add((batch.len() - n) as u64, Relaxed);
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(device = %self.name, error = %e, "send failed (interface down?); dropping until it recovers");
                }
                self.drops.fetch_add(batch.len() as u64, Relaxed);
            }
        }
    }
}

impl Element for ToDevice {
    fn exclusive(&self) -> Option<(String, String)> {
        match &self.method {
            #[cfg(feature = "xdp")]
            Method::Xdp(x) => Some((
                format!("send on queue {} of '{}'", x.queue, self.name),
                "give each copy its own queue (QUEUE $COPY)".into(),
            )),
            // Several sockets may send on one interface.
            _ => None,
        }
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(mut old) = downcast::<ToDevice>(old) {
            if old.name == self.name && old.method == self.method {
                self.dev = old.dev.take();
            } else if let Some(dev) = old.dev.take() {
                retire(dev);
            }
            self.count = old.count.clone();
            self.drops = old.drops.clone();
        }
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        check(&self.name)?;
        Ok(ports.inputs.first() == Some(&Processing::Pull))
    }

    fn activate(&mut self) -> Result<(), String> {
        if self.dev.is_none() {
            self.dev = Some(open_transmit(&self.name, self.method)?);
        }
        Ok(())
    }

    fn push(&mut self, _port: usize, batch: Batch, _cx: &mut Context<'_>) {
        self.send(&batch);
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        let mut moved = 0;
        while moved < self.burst {
            let Some(b) = cx.pull(0) else { break };
            moved += b.len();
            self.send(&b);
        }
        if moved > 0 {
            Work::Busy
        } else {
            Work::Idle
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (c, d) = (self.count.clone(), self.drops.clone());
        vec![
            Handler::read_only("count", move || c.load(Relaxed).to_string()),
            Handler::read_only("drops", move || d.load(Relaxed).to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(config: &str) -> Result<ToDevice, String> {
        let e = ToDevice::CLASS.configure("t :: ToDevice", config)?;
        Ok(*downcast::<ToDevice>(e).expect("a ToDevice"))
    }

    #[test]
    fn positional_devname_and_clicks_keywords() {
        let t = configure("eth1").unwrap();
        assert_eq!((t.name.as_str(), t.method), ("eth1", Method::Ring));
        for config in [
            "eth1, METHOD LINUX",
            "eth1, METHOD PCAP",
            "DEVNAME eth1, BURST 8, DEBUG true",
        ] {
            assert_eq!(configure(config).map(|t| t.method), Ok(Method::Ring), "{config}");
        }
        assert!(configure("eth1, METHOD DEVBPF").is_err());
        assert!(
            configure("eth1, 8").err().unwrap().contains("too many"),
            "BURST is a keyword"
        );
    }
}
