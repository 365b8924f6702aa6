use crate::device::{check, open, retire, Device, Direction, Method};
use crate::ring::Fanout;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Work};

documented! {
    /// Receives frames from a Linux network interface.
    ///
    /// The default method, `ring`, maps an AF_PACKET TPACKET_V3 receive
    /// ring: the kernel fills blocks of frames in shared memory and the
    /// router reads a batch without a system call per frame (one poll when
    /// idle). `pnet` uses pnet's datalink channel, one system call per
    /// frame: portable, slower (measured in the closing note of the devices
    /// work and in benches/netns_forward.sh).
    ///
    /// Like Click's userlevel FromDevice, it sees a copy of each frame; the
    /// kernel still gets the frame too. `SNIFFER false` is accepted for
    /// Click configurations but cannot take frames off the kernel's path
    /// from user space: keep the kernel from forwarding them by leaving IP
    /// forwarding off in the router's namespace, or drop them at ingress
    /// after the capture: `tc qdisc add dev IF clsact; tc filter add dev IF
    /// ingress matchall action drop`.
    ///
    /// The device is opened when the router starts; checking a
    /// configuration (`switchyard check`, a reload) only checks that it
    /// could be. A hot reload that keeps the element (same DEVNAME, METHOD,
    /// PROMISC and FANOUT) keeps the open ring: frames that arrive while
    /// its thread is swapped wait in it, and a FANOUT group never sees a
    /// second socket.
    ///
    /// # Ports
    /// No inputs, one push output.
    ///
    /// # Arguments
    /// - `DEVNAME` (positional, mandatory): the interface.
    /// - `PROMISC`: receive frames for other MAC addresses too; default false.
    /// - `SNIFFER`: see above; default true.
    /// - `BURST`: frames per batch; default 128.
    /// - `METHOD`: `ring` (default) or `pnet`.
    /// - `FANOUT`: ring only: a PACKET_FANOUT group number (0 to 65535).
    ///   Several FromDevice elements on the same interface with the same
    ///   group share its frames, so copies of a pipeline (each on its own
    ///   thread when they do not connect) can use several cores.
    /// - `FANOUT_MODE`: `hash` (default: a flow stays on one copy), `lb`
    ///   (round robin) or `cpu`.
    ///
    /// # Handlers
    /// - `count` (read): frames received.
    /// - `method` (read): the backend in use.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0, PROMISC true) -> hub :: Tee(2);
    /// ```
    pub struct FromDevice {
        name: String,
        method: Method,
        promisc: bool,
        fanout: Option<(u16, Fanout)>,
        burst: usize,
        dev: Option<Box<dyn Device>>,
        count: Arc<AtomicU64>,
        failing: bool,
    }
}

impl FromDevice {
    pub const CLASS: ElementClass = ElementClass {
        name: "FromDevice",
        ports: "0/1",
        processing: "h/h",
        doc: FromDevice::DOC,
        factory: FromDevice::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let name = args.read_mp::<String>("DEVNAME")?;
        let promisc = args.read::<bool>("PROMISC").unwrap_or(false);
        let sniffer = args.read::<bool>("SNIFFER").unwrap_or(true);
        let burst = args
            .read::<usize>("BURST")
            .unwrap_or(128)
            .clamp(1, switchyard_core::packet::MAX_BATCH);
        let method = read_method(args)?;
        let group = args.read::<u16>("FANOUT");
        let mode = match args.read::<String>("FANOUT_MODE").as_deref() {
            None | Some("hash") => Fanout::Hash,
            Some("lb") => Fanout::RoundRobin,
            Some("cpu") => Fanout::Cpu,
            Some(other) => {
                args.error(
                    Some(args.span_of("FANOUT_MODE")),
                    format!("FANOUT_MODE '{other}' unknown: expected hash, lb or cpu"),
                );
                return None;
            }
        };
        if group.is_some() && method != Method::Ring {
            args.error(Some(args.span_of("FANOUT")), "FANOUT needs METHOD ring");
            return None;
        }
        let fanout = group.map(|g| (g, mode));
        if !sniffer {
            tracing::warn!(device = %name, "SNIFFER false: the kernel still sees these frames; see `switchyard elements FromDevice`");
        }
        Some(Box::new(FromDevice {
            name,
            method,
            promisc,
            fanout,
            burst,
            dev: None,
            count: Arc::default(),
            failing: false,
        }))
    }
}

pub(crate) fn read_method(args: &mut Args) -> Option<Method> {
    match args.read::<String>("METHOD") {
        None => Some(Method::Ring),
        Some(m) => match Method::parse(&m) {
            Some(m) => Some(m),
            None => {
                args.error(
                    Some(args.span_of("METHOD")),
                    format!("METHOD '{m}' unknown: expected ring or pnet"),
                );
                None
            }
        },
    }
}

impl Element for FromDevice {
    fn take_state(&mut self, old: Box<dyn Element>) {
        // Keep the open ring: frames that arrived during the swap wait in it.
        if let Some(mut old) = downcast::<FromDevice>(old) {
            if old.name == self.name
                && old.method == self.method
                && old.promisc == self.promisc
                && old.fanout == self.fanout
            {
                self.dev = old.dev.take();
            } else if let Some(dev) = old.dev.take() {
                retire(dev);
            }
            self.count = old.count.clone();
        }
    }

    fn initialize(&mut self, _ports: &PortInfo) -> Result<bool, String> {
        check(&self.name)?;
        Ok(true)
    }

    fn activate(&mut self) -> Result<(), String> {
        if self.dev.is_none() {
            self.dev = Some(open(
                &self.name,
                self.method,
                Direction::Receive {
                    promisc: self.promisc,
                    fanout: self.fanout,
                },
            )?);
        }
        Ok(())
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if cx.stopping() {
            return Work::Done;
        }
        let Some(dev) = self.dev.as_mut() else {
            return Work::Done;
        };
        let mut batch = Batch::new();
        let mut r = dev.recv(&mut batch, self.burst);
        if matches!(r, Ok(0)) {
            // Nothing yet: wait on the device (poll returns as soon as
            // frames arrive; the timeout only bounds how long other tasks
            // of this thread and a stop request wait), then come back
            // without the runtime parking us.
            let _ = dev.wait(Duration::from_millis(5));
            r = dev.recv(&mut batch, self.burst);
        }
        match r {
            Ok(0) => Work::SleepUntil(Instant::now()),
            Ok(n) => {
                if self.failing {
                    self.failing = false;
                    tracing::warn!(device = %self.name, "receiving again");
                }
                self.count.fetch_add(n as u64, Relaxed);
                cx.push(0, batch);
                Work::Busy
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(device = %self.name, error = %e, "receive failed (interface down?); retrying");
                }
                Work::SleepUntil(Instant::now() + Duration::from_millis(10))
            }
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let c = self.count.clone();
        let m = format!("{:?}", self.method).to_lowercase();
        vec![
            Handler::read_only("count", move || c.load(Relaxed).to_string()),
            Handler::read_only("method", move || m.clone()),
        ]
    }
}
