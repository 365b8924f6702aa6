use crate::device::{check, open_receive, retire, Device, Method};
use crate::offload::RxStats;
use crate::ring::Fanout;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
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
    /// Like Click's userlevel FromDevice, with `ring` and `pnet` it sees a
    /// copy of each frame; the kernel still gets the frame too (with `xdp`
    /// it does not: see METHOD). `SNIFFER false` is accepted for
    /// Click configurations but cannot take frames off the kernel's path
    /// from user space: keep the kernel from forwarding them by leaving IP
    /// forwarding off in the router's namespace, or drop them at ingress
    /// after the capture: `tc qdisc add dev IF clsact; tc filter add dev IF
    /// ingress matchall action drop`.
    ///
    /// Frames leave FromDevice as they would be on the wire, whatever the
    /// interface's offload settings (a Switchyard addition: Click forwards
    /// what the socket gives it). A Linux sender with TSO/GSO (veth's
    /// default) hands the router TCP super-frames of up to 64 KB, and its
    /// frames carry unfinished checksums (only the pseudo-header sum);
    /// turning the router's own offloads off does not change that, the
    /// sender's do. The `ring` method reads the kernel's description of
    /// each frame (PACKET_VNET_HDR) and, in software, completes partial
    /// checksums and splits super-frames (TCP over IPv4 and IPv6, and UDP
    /// segmentation) into segments of the sender's segment size, with IP
    /// lengths, IPv4 ids and header checksums, TCP sequence numbers and
    /// flags, and transport checksums as Linux's own segmentation writes
    /// them. Frames the ring held only part of, super-frames of another
    /// GSO type and frames whose offload description does not fit them
    /// are dropped and counted (a rate-limited warning says so). `pnet`
    /// cannot see that description and passes such frames unchanged: with
    /// it, turn off TSO, GSO and checksum offload on the senders (`ethtool
    /// -K PEER tx off`, which implies TSO off) and GRO on the router's
    /// interfaces.
    ///
    /// Frames the router (or its host) sends out of the interface are
    /// never received back. The packet-type annotation is set from the
    /// kernel's packet type (host, broadcast, multicast, other host), as
    /// in Click; with `pnet` it stays 0 (host).
    ///
    /// The device is opened when the router starts; checking a
    /// configuration (`switchyard check`, a reload) only checks that it
    /// could be. A hot reload that keeps the element (same DEVNAME, METHOD
    /// with its QUEUE, ZEROCOPY and XDP_MODE, PROMISC (not for xdp) and
    /// FANOUT) keeps the open ring or socket: frames that arrive while
    /// its thread is swapped wait in it, and a FANOUT group never sees a
    /// second socket.
    ///
    /// # Ports
    /// No inputs, one push output.
    ///
    /// # Arguments
    /// - `DEVNAME` (positional, mandatory): the interface.
    /// - `PROMISC` (positional): receive frames for other MAC addresses
    ///   too; default false.
    /// - `SNAPLEN` (positional): longest frame passed on, in bytes; longer
    ///   frames are cut to it (Click's capture length). Default: whole
    ///   frames.
    /// - `SNIFFER`: see above; default true.
    ///
    /// Click's `FORCE_IP`, `BPF_FILTER`, `PROTOCOL`, `OUTBOUND`, `ENCAP`
    /// and `TIMESTAMP` are not supported (an unknown-argument error).
    /// - `BURST`: frames per batch; default 128.
    /// - `METHOD`: `ring` (default), `pnet` or `xdp`. Click's `LINUX` and
    ///   `PCAP` mean `ring` (on Linux each reads an AF_PACKET socket);
    ///   `CAPTURE` is Click's old name for METHOD. `xdp` (a Switchyard
    ///   addition) is AF_XDP: Switchyard attaches its XDP program to the
    ///   interface, which redirects every frame of the queue to the
    ///   router's socket: unlike `ring`, the kernel no longer sees them
    ///   (the router answers ARP itself, as an IP router config does), and
    ///   PROMISC has no effect (`ip link set IF promisc on` does that). The
    ///   program is detached when the router stops; one left by something
    ///   else is replaced at start, with a log line.
    /// - `QUEUE`: `xdp` only: the interface queue (0 to 63); default 0.
    /// - `ZEROCOPY`: `xdp` only: AF_XDP zero-copy, for drivers that have
    ///   it (veth has not: the open fails); default false (copy mode).
    /// - `XDP_MODE`: `xdp` only: `native` (default; in the driver, falling
    ///   back to generic where the driver has no XDP) or `generic`.
    /// - `HEADROOM`: accepted for Click's configurations, no effect (the
    ///   packet pool decides headroom).
    /// - `FANOUT`: ring only: a PACKET_FANOUT group number (0 to 65535).
    ///   Several FromDevice elements on the same interface with the same
    ///   group share its frames, so copies of a pipeline can use several
    ///   cores: `Copies(N)` runs N of them (without FANOUT, two copies
    ///   receiving from one interface with ring or pnet are refused: each
    ///   would get every frame; with xdp, give each copy its queue,
    ///   `QUEUE $COPY`).
    /// - `FANOUT_MODE`: `hash` (default: a flow stays on one copy), `lb`
    ///   (round robin) or `cpu`.
    ///
    /// # Handlers
    /// - `count` (read): frames received (a segmented super-frame counts
    ///   as its segments).
    /// - `method` (read): the backend in use.
    ///
    /// Switchyard additions, `ring` only (the counts of the software
    /// offloads above):
    /// - `gso_segmented` (read): super-frames split into segments.
    /// - `gso_segments` (read): the segments they became.
    /// - `gso_dropped` (read): super-frames dropped: a GSO type not
    ///   segmented here (UFO), or headers not matching it.
    /// - `csum_completed` (read): frames whose partial checksum was
    ///   completed.
    /// - `csum_dropped` (read): partial-checksum frames dropped: checksum
    ///   offsets outside the frame.
    /// - `truncated` (read): frames dropped because the ring held only
    ///   part of them.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0, PROMISC true) -> hub :: Tee(2);
    /// ```
    pub struct FromDevice {
        name: String,
        method: Method,
        promisc: bool,
        /// Longest frame passed on; longer ones are cut (Click's SNAPLEN).
        snaplen: usize,
        fanout: Option<(u16, Fanout)>,
        burst: usize,
        dev: Option<Box<dyn Device>>,
        /// Shared with the ring, which counts its offload work into it;
        /// `received` is counted here.
        stats: Arc<RxStats>,
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
        // Click's positional order: DEVNAME, PROMISC, SNAPLEN.
        let promisc = args.read_p::<bool>("PROMISC").unwrap_or(false);
        let snaplen = args.read_p::<usize>("SNAPLEN").unwrap_or(usize::MAX);
        if snaplen == 0 {
            args.error(Some(args.span_of("SNAPLEN")), "SNAPLEN must be at least 1");
            return None;
        }
        let sniffer = args.read::<bool>("SNIFFER").unwrap_or(true);
        let burst = args
            .read::<usize>("BURST")
            .unwrap_or(128)
            .clamp(1, switchyard_core::packet::MAX_BATCH);
        let method = read_method(args, Some("CAPTURE"))?;
        // Headroom is the packet pool's business here; Click's knob for it
        // is accepted so its configurations run.
        let _headroom: Option<usize> = args.read("HEADROOM");
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
            snaplen,
            fanout,
            burst,
            dev: None,
            stats: Arc::default(),
            failing: false,
        }))
    }
}

/// One counter of [`RxStats`], for its handler.
type StatField = fn(&RxStats) -> &AtomicU64;

/// Reads METHOD (and, for FromDevice, `CAPTURE`, Click's old name for
/// it, which Click reads after METHOD: the later wins). Click's methods
/// that are an AF_PACKET socket on Linux (LINUX, PCAP, and ToDevice's
/// PCAPFD, libpcap's own) are the ring here.
pub(crate) fn read_method(args: &mut Args, old_name: Option<&'static str>) -> Option<Method> {
    let method = args.read::<String>("METHOD").map(|m| ("METHOD", m));
    let method = old_name
        .and_then(|name| args.read::<String>(name).map(|m| (name, m)))
        .or(method);
    // The AF_XDP options: with METHOD xdp only.
    let queue = args.read::<u32>("QUEUE").map(|q| ("QUEUE", q));
    let zerocopy = args.read::<bool>("ZEROCOPY").map(|z| ("ZEROCOPY", z));
    let mode = args.read::<String>("XDP_MODE").map(|m| ("XDP_MODE", m));
    let found = match &method {
        None => Some(Method::Ring),
        Some((_, m)) => Method::parse(m).or(matches!(m.as_str(), "LINUX" | "PCAP" | "PCAPFD").then_some(Method::Ring)),
    };
    let Some(found) = found else {
        let (name, m) = method.expect("named");
        let xdp = if cfg!(feature = "xdp") { ", xdp" } else { "" };
        args.error(
            Some(args.span_of(name)),
            format!("{name} '{m}' unknown: expected ring, pnet{xdp} (or Click's LINUX or PCAP)"),
        );
        return None;
    };
    #[cfg(feature = "xdp")]
    if let Method::Xdp(mut o) = found {
        if let Some((_, q)) = queue {
            if q >= 64 {
                args.error(Some(args.span_of("QUEUE")), "QUEUE: at most 63 (the XSK map's slots)");
                return None;
            }
            o.queue = q;
        }
        if let Some((_, z)) = zerocopy {
            o.zerocopy = z;
        }
        if let Some((_, m)) = mode {
            match crate::xdp::AttachMode::parse(&m) {
                Some(a) => o.mode = a,
                None => {
                    args.error(
                        Some(args.span_of("XDP_MODE")),
                        format!("XDP_MODE '{m}' unknown: expected native or generic"),
                    );
                    return None;
                }
            }
        }
        return Some(Method::Xdp(o));
    }
    if let Some((name, _)) = queue
        .map(|(n, _)| (n, ()))
        .or(zerocopy.map(|(n, _)| (n, ())))
        .or(mode.map(|(n, _)| (n, ())))
    {
        args.error(Some(args.span_of(name)), format!("{name} needs METHOD xdp"));
        return None;
    }
    Some(found)
}

impl Element for FromDevice {
    fn exclusive(&self) -> Option<(String, String)> {
        match &self.method {
            // A FANOUT group spreads the frames over the copies' sockets.
            Method::Ring if self.fanout.is_some() => None,
            #[cfg(feature = "xdp")]
            Method::Xdp(x) => Some((
                format!("receive from queue {} of '{}'", x.queue, self.name),
                "give each copy its own queue (QUEUE $COPY)".into(),
            )),
            _ => Some((
                format!("receive every frame of '{}'", self.name),
                "give it FANOUT N (METHOD ring; the copies share group N), or use METHOD xdp with QUEUE $COPY".into(),
            )),
        }
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        // Keep the open ring: frames that arrived during the swap wait in it.
        if let Some(mut old) = downcast::<FromDevice>(old) {
            // An XSK takes every frame of its queue: PROMISC is moot there.
            #[cfg(feature = "xdp")]
            let promisc_moot = matches!(self.method, Method::Xdp(_));
            #[cfg(not(feature = "xdp"))]
            let promisc_moot = false;
            if old.name == self.name
                && old.method == self.method
                && (promisc_moot || old.promisc == self.promisc)
                && old.fanout == self.fanout
            {
                self.dev = old.dev.take();
            } else if let Some(dev) = old.dev.take() {
                retire(dev);
            }
            // A kept ring counts into the old element's stats: keep them
            // (and the count of frames received with them).
            self.stats = old.stats.clone();
        }
    }

    fn initialize(&mut self, _ports: &PortInfo) -> Result<bool, String> {
        check(&self.name)?;
        Ok(true)
    }

    fn activate(&mut self) -> Result<(), String> {
        if self.dev.is_none() {
            self.dev = Some(open_receive(
                &self.name,
                self.method,
                self.promisc,
                self.fanout,
                self.stats.clone(),
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
            Ok(0) => Work::SleepUntil(switchyard_core::clock::now()),
            Ok(n) => {
                if self.failing {
                    self.failing = false;
                    tracing::warn!(device = %self.name, "receiving again");
                }
                self.stats.received.fetch_add(n as u64, Relaxed);
                if self.snaplen != usize::MAX {
                    for p in batch.packets_mut() {
                        p.take(p.len().saturating_sub(self.snaplen));
                    }
                }
                cx.push(0, batch);
                Work::Busy
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(device = %self.name, error = %e, "receive failed (interface down?); retrying");
                }
                Work::SleepUntil(switchyard_core::clock::now() + Duration::from_millis(10))
            }
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let s = self.stats.clone();
        let m = self.method.name().to_string();
        let mut v = vec![
            Handler::read_only("count", move || s.received.load(Relaxed).to_string()),
            Handler::read_only("method", move || m.clone()),
        ];
        let counters: [(&str, StatField); 6] = [
            ("gso_segmented", |s| &s.gso_segmented),
            ("gso_segments", |s| &s.gso_segments),
            ("gso_dropped", |s| &s.gso_dropped),
            ("csum_completed", |s| &s.csum_completed),
            ("csum_dropped", |s| &s.csum_dropped),
            ("truncated", |s| &s.truncated),
        ];
        for (name, field) in counters {
            let s = self.stats.clone();
            v.push(Handler::read_only(name, move || field(&s).load(Relaxed).to_string()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(config: &str) -> Result<FromDevice, String> {
        let e = FromDevice::CLASS.configure("f :: FromDevice", config)?;
        Ok(*downcast::<FromDevice>(e).expect("a FromDevice"))
    }

    #[test]
    fn positional_arguments_are_clicks_devname_promisc_snaplen() {
        let f = configure("eth0, true, 1500").unwrap();
        assert_eq!((f.name.as_str(), f.promisc, f.snaplen), ("eth0", true, 1500));
        let f = configure("eth0, PROMISC true, SNAPLEN 100, SNIFFER false, BURST 8").unwrap();
        assert_eq!((f.promisc, f.snaplen, f.burst), (true, 100, 8));
        assert!(configure("eth0, true, 1500, 4").err().unwrap().contains("too many"));
    }

    #[test]
    fn clicks_method_names_and_old_capture_keyword() {
        for (config, method) in [
            ("eth0, METHOD LINUX", Method::Ring),
            ("eth0, METHOD PCAP", Method::Ring),
            ("eth0, CAPTURE LINUX", Method::Ring),
            ("eth0, METHOD pnet", Method::Pnet),
            ("eth0, METHOD ring, CAPTURE pnet", Method::Pnet),
            ("eth0, HEADROOM 64", Method::Ring),
        ] {
            assert_eq!(configure(config).map(|f| f.method), Ok(method), "{config}");
        }
        assert!(configure("eth0, METHOD NETMAP")
            .err()
            .unwrap()
            .contains("METHOD 'NETMAP' unknown"));
        assert!(configure("eth0, CAPTURE BOGUS")
            .err()
            .unwrap()
            .contains("CAPTURE 'BOGUS' unknown"));
    }
}
