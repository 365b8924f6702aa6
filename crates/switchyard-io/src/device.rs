//! One batch-oriented interface to a network device, with backends:
//! `ring` (AF_PACKET with a TPACKET_V3 receive ring and a TPACKET_V2
//! transmit ring that bypasses the qdisc: no system call per frame),
//! `pnet` (pnet's datalink channel: one system call per frame; portable)
//! and, with the `xdp` feature (on by default), `xdp` (AF_XDP: an XSK per
//! interface queue, the kernel's XDP program redirecting frames to it).

use crate::offload::RxStats;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::Batch;

pub trait Device: Send {
    /// Appends up to `max` received frames to `batch` without blocking;
    /// returns how many.
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize>;

    /// Queues the frames for transmission; returns how many were taken
    /// (the rest did not fit and are dropped by the caller).
    fn send(&mut self, batch: &Batch) -> io::Result<usize>;

    /// Waits up to `timeout` for frames to receive.
    fn wait(&mut self, timeout: Duration) -> io::Result<()>;
}

/// Which backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Ring,
    Pnet,
    /// AF_XDP on one queue of the interface.
    #[cfg(feature = "xdp")]
    Xdp(crate::xdp::XdpOptions),
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s.to_ascii_lowercase().as_str() {
            "ring" | "mmap" | "packet_mmap" => Some(Method::Ring),
            "pnet" => Some(Method::Pnet),
            #[cfg(feature = "xdp")]
            "xdp" | "af_xdp" => Some(Method::Xdp(crate::xdp::XdpOptions::default())),
            _ => None,
        }
    }

    /// The method's name, as its `method` handler reads it.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Ring => "ring",
            Method::Pnet => "pnet",
            #[cfg(feature = "xdp")]
            Method::Xdp(_) => "xdp",
        }
    }
}

/// What a device is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Receive {
        promisc: bool,
        fanout: Option<(u16, crate::ring::Fanout)>,
    },
    Transmit,
}

/// The interface index of `name`, or an error naming it.
pub fn ifindex(name: &str) -> Result<u32, String> {
    let c = std::ffi::CString::new(name).map_err(|_| format!("bad interface name '{name}'"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the
    // call; if_nametoindex only reads it.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(format!("no interface named '{name}'"));
    }
    Ok(idx)
}

/// Checks, when a configuration is checked, that `name` could be opened
/// (the interface exists and packet sockets are allowed) without opening
/// it. The device itself is opened by `Element::activate`, after a
/// reload's new element had the chance to take over the running one's:
/// opening a second socket first would, with FANOUT, take a share of the
/// group's frames only to drop them when it closes.
pub fn check(name: &str) -> Result<(), String> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    ifindex(name)?;
    let probe = socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("{name}: cannot open a packet socket: {e} (needs root or CAP_NET_RAW)"))?;
    // Closing a packet socket waits for an RCU grace period: not here.
    std::thread::spawn(move || drop(probe));
    Ok(())
}

/// Closes a device away from the data path and the reload pause (closing
/// a packet socket waits for an RCU grace period, tens of milliseconds).
pub fn retire(dev: Box<dyn Device>) {
    std::thread::spawn(move || drop(dev));
}

/// Opens `name` for transmitting.
pub fn open_transmit(name: &str, method: Method) -> Result<Box<dyn Device>, String> {
    let index = ifindex(name)?;
    match method {
        Method::Ring => Ok(Box::new(
            crate::ring::TxRing::open(index).map_err(|e| format!("{name}: {e}"))?,
        )),
        Method::Pnet => Ok(Box::new(crate::pnet_dev::PnetDevice::open(name, Direction::Transmit)?)),
        #[cfg(feature = "xdp")]
        Method::Xdp(o) => Ok(Box::new(
            crate::xdp::open_transmit(name, index, o).map_err(|e| format!("{name}: {e}"))?,
        )),
    }
}

/// Opens `name` for receiving; the ring backend counts the offloaded
/// frames it segments, completes or drops in `stats`.
pub fn open_receive(
    name: &str,
    method: Method,
    promisc: bool,
    fanout: Option<(u16, crate::ring::Fanout)>,
    stats: Arc<RxStats>,
) -> Result<Box<dyn Device>, String> {
    let index = ifindex(name)?;
    match method {
        Method::Ring => Ok(Box::new(
            crate::ring::RxRing::open(name, index, promisc, fanout, stats).map_err(|e| format!("{name}: {e}"))?,
        )),
        Method::Pnet => Ok(Box::new(crate::pnet_dev::PnetDevice::open(
            name,
            Direction::Receive { promisc, fanout },
        )?)),
        #[cfg(feature = "xdp")]
        Method::Xdp(o) => Ok(Box::new(
            crate::xdp::open_receive(name, index, o).map_err(|e| format!("{name}: {e}"))?,
        )),
    }
}
