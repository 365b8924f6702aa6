//! The AF_XDP backend (`METHOD xdp`): one XSK per interface queue, its
//! frames in a UMEM of this process, the redirect program (`bpf/xsk.c`,
//! shipped compiled as `bpf/xsk.o`) loaded and attached by aya.
//!
//! A port is an (interface, queue). FromDevice and ToDevice on the same
//! port share one socket and one UMEM: the receive side owns the fill
//! ring, the RX ring and the first [`RX_FRAMES`] frames; the transmit side
//! owns the completion ring, the TX ring and the rest. Each ring
//! has one user, so the two sides run on their own threads without a
//! lock. The socket closes, and the UMEM is unmapped, when both sides
//! are gone.
//!
//! The program is attached once per interface while a receiving side
//! exists (through a bpf_link, which the kernel removes if the process
//! dies), its XSKMAP slot Q holding the socket of queue Q. A program of
//! ours left on the interface (an older version, a crash with netlink
//! attachment) is detected at start and replaced, with a log line;
//! another program is an error at start, not removed.
//!
//! Copy mode by default (veth has no zero-copy); `ZEROCOPY true` asks
//! for zero-copy and fails to open where the driver has none. Frames are
//! copied between the UMEM and packets once each way, as the ring backend
//! copies from its ring.

use crate::device::Device;
use aya::maps::{MapData, XskMap};
use aya::programs::{Xdp, XdpMode};
use std::collections::HashMap;
use std::io;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use switchyard_core::{Batch, Packet};
use xdpilone::xdp::XdpDesc;
use xdpilone::{CompletionQueue, FillQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig};

/// Bytes per UMEM frame: a full Ethernet frame after the kernel's 256
/// bytes of XDP headroom.
pub const FRAME: u32 = 2048;
/// Receive frames (and entries of the fill and RX rings): a burst the
/// router cannot take at once waits here, as in the ring backend's
/// blocks.
pub const RX_FRAMES: u32 = 8192;
/// Transmit frames (and entries of the completion and TX rings).
pub const TX_FRAMES: u32 = 4096;
/// Most TX descriptors the kernel sends per wakeup in copy mode; a batch
/// larger than that needs several.
const KICKS: usize = 16;

/// The compiled redirect program (`bpf/xsk.c`).
static PROGRAM: &[u8] = aya::include_bytes_aligned!("../bpf/xsk.o");

/// Where the program runs: in the driver, or in the kernel's generic path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    pub fn parse(s: &str) -> Option<AttachMode> {
        match s.to_ascii_lowercase().as_str() {
            "native" | "drv" | "driver" => Some(AttachMode::Native),
            "generic" | "skb" => Some(AttachMode::Generic),
            _ => None,
        }
    }
}

/// How an XDP port is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpOptions {
    pub queue: u32,
    pub zerocopy: bool,
    pub mode: AttachMode,
}

impl Default for XdpOptions {
    fn default() -> Self {
        XdpOptions {
            queue: 0,
            zerocopy: false,
            mode: AttachMode::Native,
        }
    }
}

fn errno(what: &str, e: xdpilone::Errno) -> io::Error {
    let raw = e.get_raw();
    if raw == libc::EBUSY {
        // Kept raw: Port::get waits on it.
        return io::Error::from_raw_os_error(raw);
    }
    let e = io::Error::from_raw_os_error(raw);
    let hint = if raw == libc::ENOBUFS || raw == libc::ENOMEM {
        " (the UMEM is locked memory: root, CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)"
    } else {
        ""
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

/// The UMEM's memory: an anonymous mapping, unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> io::Result<Area> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // touched. The result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Area {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    /// The bytes at `addr..addr + len`, if inside the area.
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        if start.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above) of a live mapping. The kernel
        // wrote this frame before handing its descriptor over, and gets
        // it back only after the copy (refilled after the read).
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), len) })
    }

    /// The frame at `addr` for writing `len` bytes, if inside the area.
    #[allow(clippy::mut_from_ref)]
    fn bytes_mut(&self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        if start.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds of a live mapping; the frame is one of the
        // transmit side's free frames, which no one else touches until its
        // descriptor is on the TX ring (after this write).
        Some(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(start), len) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once, after the
        // socket that used it (fields drop in order: see `Port`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// One XSK on one interface queue, and what its two sides take.
struct Port {
    // Fields drop in this order: the sides' parts first (taken already),
    // the socket and UMEM, then the memory they used.
    rx: Mutex<Option<RxParts>>,
    tx: Mutex<Option<TxParts>>,
    fd: i32,
    _socket: Socket,
    _umem: Umem,
    area: Area,
    queue: u32,
}

// SAFETY: the UMEM and socket are set up on one thread and never used
// again but to be dropped; the rings are handed out once each (behind
// the mutexes) to the one side that uses them, and each ring is a
// single-producer single-consumer queue shared only with the kernel. The
// frames are split between the sides (the first RX_FRAMES are RX's).
unsafe impl Send for Port {}
// SAFETY: as above: shared access is the mutexes' and the fd's only.
unsafe impl Sync for Port {}

type Key = (u32, u32);

/// What the receiving side uses, handed back to the port when it goes
/// (a reload may open the side again later).
type RxParts = (FillQueue, RingRx);
/// What the transmitting side uses, with its free frames (frames still
/// in flight come back through the completion ring to whoever has it).
type TxParts = (CompletionQueue, RingTx, Vec<u64>);

fn ports() -> &'static Mutex<HashMap<Key, Weak<Port>>> {
    static PORTS: std::sync::OnceLock<Mutex<HashMap<Key, Weak<Port>>>> = std::sync::OnceLock::new();
    PORTS.get_or_init(Default::default)
}

impl Port {
    /// The port of (ifindex, queue): the one open, or a new socket.
    fn get(name: &str, ifindex: u32, options: XdpOptions) -> io::Result<Arc<Port>> {
        let mut all = ports().lock().expect("ports");
        if let Some(p) = all.get(&(ifindex, options.queue)).and_then(Weak::upgrade) {
            return Ok(p);
        }
        all.retain(|_, w| w.strong_count() > 0);
        // A socket closed a moment ago (a reload dropped the last side of
        // this queue) may still hold the queue in the kernel: the bind
        // says busy until it lets go.
        let mut tries = 0;
        let port = loop {
            match Port::open(name, ifindex, options) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 40 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                r => break r?,
            }
        };
        let p = Arc::new(port);
        all.insert((ifindex, options.queue), Arc::downgrade(&p));
        Ok(p)
    }

    fn open(name: &str, ifindex: u32, options: XdpOptions) -> io::Result<Port> {
        let area = Area::new(((RX_FRAMES + TX_FRAMES) * FRAME) as usize)?;
        let config = UmemConfig {
            fill_size: RX_FRAMES,
            complete_size: TX_FRAMES,
            frame_size: FRAME,
            headroom: 0,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
        // SAFETY: `slice` is the whole of `area`: page-aligned (mmap) and
        // alive for as long as the UMEM (dropped after it, see `Port`).
        let umem = unsafe { Umem::new(config, slice) }.map_err(|e| errno("UMEM", e))?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex).map_err(|e| errno(name, e))?;
        info.set_queue(options.queue);
        let socket = Socket::with_shared(&info, &umem).map_err(|e| errno("AF_XDP socket", e))?;
        let device = umem.fq_cq(&socket).map_err(|e| errno("fill and completion rings", e))?;
        let mode = if options.zerocopy {
            SocketConfig::XDP_BIND_ZEROCOPY
        } else {
            SocketConfig::XDP_BIND_COPY
        };
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: NonZeroU32::new(RX_FRAMES),
                    tx_size: NonZeroU32::new(TX_FRAMES),
                    bind_flags: mode | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(|e| errno("RX and TX rings", e))?;
        let rx = user.map_rx().map_err(|e| errno("RX ring", e))?;
        let tx = user.map_tx().map_err(|e| errno("TX ring", e))?;
        umem.bind(&user).map_err(|e| {
            let hint = if options.zerocopy {
                " (ZEROCOPY needs a driver with AF_XDP zero-copy support)"
            } else {
                ""
            };
            errno(&format!("bind to {name} queue {}{hint}", options.queue), e)
        })?;
        let fd = user.as_raw_fd();
        let (mut fill, comp) = device.into_parts();
        // Every receive frame starts in the fill ring.
        {
            let mut w = fill.fill(RX_FRAMES);
            w.insert((0..RX_FRAMES).map(|i| u64::from(i * FRAME)));
            w.commit();
        }
        let free = (RX_FRAMES..RX_FRAMES + TX_FRAMES)
            .map(|i| u64::from(i * FRAME))
            .collect();
        Ok(Port {
            rx: Mutex::new(Some((fill, rx))),
            tx: Mutex::new(Some((comp, tx, free))),
            fd,
            _socket: socket,
            _umem: umem,
            area,
            queue: options.queue,
        })
    }
}

/// The redirect program on one interface, detached when the last
/// receiving side goes.
struct Program {
    _bpf: aya::Ebpf,
    xsks: Mutex<XskMap<MapData>>,
}

fn programs() -> &'static Mutex<HashMap<u32, Weak<Program>>> {
    static PROGRAMS: std::sync::OnceLock<Mutex<HashMap<u32, Weak<Program>>>> = std::sync::OnceLock::new();
    PROGRAMS.get_or_init(Default::default)
}

/// The XDP program attached to `name` now, if any: its id and name, read
/// from `ip -j link` (the kernel's view, whoever attached it).
fn attached_program(name: &str) -> Option<(u64, String)> {
    let out = std::process::Command::new("ip")
        .args(["-j", "link", "show", "dev", name])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `"xdp":{"mode":1,"prog":{"id":42,"name":"switchyard_xsk",...}}`,
    // without a JSON parser here.
    let at = text.find("\"xdp\":{")?;
    let prog = &text[at..];
    let field = |key: &str| -> Option<&str> {
        let i = prog.find(key)? + key.len();
        Some(&prog[i..])
    };
    let id = field("\"id\":")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let prog_name = field("\"name\":\"")
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string();
    Some((id, prog_name))
}

/// The name our program has in the kernel (names are cut to 15 bytes).
const PROGRAM_NAME: &str = "switchyard_xsk";

impl Program {
    fn get(name: &str, ifindex: u32, mode: AttachMode) -> io::Result<Arc<Program>> {
        let mut all = programs().lock().expect("programs");
        if let Some(p) = all.get(&ifindex).and_then(Weak::upgrade) {
            return Ok(p);
        }
        // A program someone left here (ours from a crashed netlink
        // attachment, or another tool's) would make the attach fail:
        // replace it, and say so.
        match attached_program(name) {
            Some((id, prog)) if prog == PROGRAM_NAME => {
                tracing::warn!(device = name, program = id, "replacing a stale XDP program");
                eprintln!("switchyard: {name}: replacing a stale XDP program (id {id})");
                for kind in ["xdp", "xdpgeneric", "xdpdrv"] {
                    let _ = std::process::Command::new("ip")
                        .args(["link", "set", "dev", name, kind, "off"])
                        .status();
                }
            }
            // Someone else's program: not ours to remove.
            Some((id, prog)) => {
                return Err(io::Error::other(format!(
                    "{name}: another XDP program is attached (id {id}, '{prog}'): remove it (ip link set dev {name} xdp off) or use METHOD ring"
                )))
            }
            None => {}
        }
        let p = Arc::new(Program::attach(name, ifindex, mode)?);
        all.insert(ifindex, Arc::downgrade(&p));
        Ok(p)
    }

    fn attach(name: &str, ifindex: u32, mode: AttachMode) -> io::Result<Program> {
        let fail = |what: &str, e: &dyn std::fmt::Display| io::Error::other(format!("{name}: {what}: {e}"));
        let mut bpf = aya::Ebpf::load(PROGRAM).map_err(|e| fail("loading the XDP program", &e))?;
        let prog: &mut Xdp = bpf
            .program_mut("switchyard_xsk")
            .ok_or_else(|| io::Error::other("the XDP object has no switchyard_xsk"))?
            .try_into()
            .map_err(|e| fail("the XDP program", &e))?;
        prog.load()
            .map_err(|e| fail("loading the XDP program (needs root or CAP_BPF)", &e))?;
        let attached = match mode {
            AttachMode::Generic => prog.attach_to_if_index(ifindex, XdpMode::Skb),
            AttachMode::Native => prog.attach_to_if_index(ifindex, XdpMode::Driver).or_else(|e| {
                tracing::info!(device = name, error = %e, "native XDP unavailable; generic");
                prog.attach_to_if_index(ifindex, XdpMode::Skb)
            }),
        };
        attached.map_err(|e| fail("attaching the XDP program", &e))?;
        let map = bpf
            .take_map("xsks")
            .ok_or_else(|| io::Error::other("the XDP object has no xsks map"))?;
        let xsks = XskMap::try_from(map).map_err(|e| fail("the XSK map", &e))?;
        Ok(Program {
            _bpf: bpf,
            xsks: Mutex::new(xsks),
        })
    }
}

/// The receiving side of a port.
pub struct XdpRx {
    parts: Option<RxParts>,
    refill: Vec<u64>,
    host: [u8; 6],
    // Dropped after the rings: the port (socket, UMEM) outlives them.
    program: Arc<Program>,
    port: Arc<Port>,
}

impl Drop for XdpRx {
    fn drop(&mut self) {
        // The program must not redirect to a socket no one reads; the
        // rings go back to the port for a later receiving side.
        let _ = self
            .program
            .xsks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unset(self.port.queue);
        *self.port.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = self.parts.take();
    }
}

/// The transmitting side of a port.
pub struct XdpTx {
    comp: CompletionQueue,
    tx: RingTx,
    free: Vec<u64>,
    port: Arc<Port>,
}

/// The transmitting side, its parts returned to the port when it goes.
pub struct XdpTxSide(Option<XdpTx>);

impl Drop for XdpTxSide {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let port = t.port.clone();
            *port.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((t.comp, t.tx, t.free));
        }
    }
}

/// The interface's own address, for the packet-type annotation.
fn mac_of(name: &str) -> [u8; 6] {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).unwrap_or_default();
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *m = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

/// Opens the receiving side of `name`'s queue.
pub fn open_receive(name: &str, ifindex: u32, options: XdpOptions) -> io::Result<XdpRx> {
    let port = Port::get(name, ifindex, options)?;
    // A reload's old side may be closing on another thread: it hands its
    // rings back as it goes.
    for _ in 0..40 {
        if port.rx.lock().expect("rx").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    if port.rx.lock().expect("rx").is_none() {
        return Err(io::Error::other(format!(
            "{name} queue {} is received by another element",
            options.queue
        )));
    }
    let program = Program::get(name, ifindex, options.mode)?;
    program
        .xsks
        .lock()
        .expect("xsks")
        .set(options.queue, port.fd, 0)
        .map_err(|e| io::Error::other(format!("{name}: the XSK map: {e}")))?;
    let parts =
        port.rx.lock().expect("rx").take().ok_or_else(|| {
            io::Error::other(format!("{name} queue {} is received by another element", options.queue))
        })?;
    Ok(XdpRx {
        parts: Some(parts),
        refill: Vec::with_capacity(256),
        host: mac_of(name),
        program,
        port,
    })
}

/// Opens the transmitting side of `name`'s queue.
pub fn open_transmit(name: &str, ifindex: u32, options: XdpOptions) -> io::Result<XdpTxSide> {
    let port = Port::get(name, ifindex, options)?;
    for _ in 0..40 {
        if port.tx.lock().expect("tx").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (comp, tx, free) = port
        .tx
        .lock()
        .expect("tx")
        .take()
        .ok_or_else(|| io::Error::other(format!("{name} queue {} is sent to by another element", options.queue)))?;
    Ok(XdpTxSide(Some(XdpTx { comp, tx, free, port })))
}

/// Linux's packet type (`PACKET_HOST`...) from the destination address.
fn pkt_type(frame: &[u8], host: &[u8; 6]) -> u8 {
    match frame.get(..6) {
        Some(d) if d == [0xff; 6] => libc::PACKET_BROADCAST,
        Some(d) if d[0] & 1 == 1 => libc::PACKET_MULTICAST,
        Some(d) if d == host => libc::PACKET_HOST,
        Some(_) => libc::PACKET_OTHERHOST,
        None => libc::PACKET_HOST,
    }
}

impl Device for XdpRx {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let ts = switchyard_core::packet::now_ns();
        let mut got = 0;
        let Some((fill, rx)) = self.parts.as_mut() else {
            return Ok(0);
        };
        {
            let mut r = rx.receive(max.min(u32::MAX as usize) as u32);
            while let Some(XdpDesc { addr, len, .. }) = r.read() {
                // The frame goes back to the fill ring whatever it held. A
                // descriptor outside the receive frames (the kernel's bug)
                // is skipped, and never handed back.
                let frame = addr & !u64::from(FRAME - 1);
                if frame >= u64::from(RX_FRAMES * FRAME) {
                    continue;
                }
                self.refill.push(frame);
                let Some(data) = self.port.area.bytes(addr, len as usize) else {
                    continue;
                };
                let mut p = Packet::from_data(data);
                p.anno.timestamp_ns = ts;
                p.anno.pkt_type = pkt_type(data, &self.host);
                batch.push(p);
                got += 1;
            }
            r.release();
        }
        if !self.refill.is_empty() {
            // Only what went in leaves the list: a short reservation keeps
            // the rest for the next call rather than losing the frames.
            let mut w = fill.fill(self.refill.len() as u32);
            let n = w.insert(self.refill.iter().copied());
            w.commit();
            drop(w);
            self.refill.drain(..n as usize);
        }
        if fill.needs_wakeup() {
            fill.wake();
        }
        Ok(got)
    }

    fn send(&mut self, _batch: &Batch) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the receiving side cannot send",
        ))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if self.parts.as_ref().is_some_and(|(_, rx)| rx.available() > 0) {
            return Ok(());
        }
        let mut p = libc::pollfd {
            fd: self.port.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1; the fd is the port's socket,
        // open while `self.port` lives.
        let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl XdpTx {
    /// Frames the kernel has sent come back to the free list (only
    /// transmit frames, aligned: anything else would be the kernel's bug).
    fn reclaim(&mut self) -> usize {
        let tx_range = u64::from(RX_FRAMES * FRAME)..u64::from((RX_FRAMES + TX_FRAMES) * FRAME);
        let mut n = 0;
        let mut c = self.comp.complete(TX_FRAMES);
        while let Some(addr) = c.read() {
            if tx_range.contains(&addr) && addr % u64::from(FRAME) == 0 {
                self.free.push(addr);
                n += 1;
            }
        }
        c.release();
        n
    }

    /// Has the kernel send what is on the TX ring. In copy mode each
    /// wakeup sends a bounded number of frames: wake again while the ring
    /// drains, stop as soon as a wakeup moved nothing (the driver is busy;
    /// the next batch tries again).
    fn kick(&mut self) {
        for _ in 0..KICKS {
            let before = self.tx.pending();
            if before == 0 {
                break;
            }
            self.tx.wake();
            if self.tx.pending() >= before {
                break;
            }
        }
    }
}

/// How long a send may wait, in all, for frames the kernel gives back
/// while it is giving them back (a receiver that is slow, not stopped).
const TX_WAIT: Duration = Duration::from_millis(20);
/// How long a send waits when nothing comes back at all.
const TX_STALL: Duration = Duration::from_millis(1);

impl XdpTx {
    /// Puts `batch[from..]` on the TX ring, as far as free frames and the
    /// ring allow; the index reached.
    fn enqueue(&mut self, batch: &Batch, from: usize, dropped: &mut usize) -> usize {
        let mut i = from;
        let mut w = self.tx.transmit(self.free.len().min(batch.len() - from) as u32);
        while i < batch.len() {
            let data = batch.packets()[i].data();
            if data.is_empty() || data.len() > FRAME as usize {
                *dropped += 1; // cannot be sent as one frame
                i += 1;
                continue;
            }
            let Some(addr) = self.free.pop() else { break };
            let Some(frame) = self.port.area.bytes_mut(addr, data.len()) else {
                self.free.push(addr);
                *dropped += 1;
                i += 1;
                continue;
            };
            frame.copy_from_slice(data);
            if !w.insert_once(XdpDesc {
                addr,
                len: data.len() as u32,
                options: 0,
            }) {
                self.free.push(addr);
                break;
            }
            i += 1;
        }
        w.commit();
        i
    }
}

impl Device for XdpTxSide {
    fn recv(&mut self, _batch: &mut Batch, _max: usize) -> io::Result<usize> {
        Ok(0)
    }

    fn send(&mut self, batch: &Batch) -> io::Result<usize> {
        match self.0.as_mut() {
            Some(t) => t.send(batch),
            None => Ok(0),
        }
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        Ok(())
    }
}

impl XdpTx {
    fn send(&mut self, batch: &Batch) -> io::Result<usize> {
        let started = std::time::Instant::now();
        let mut stalled: Option<std::time::Instant> = None;
        let mut dropped = 0;
        let mut i = 0;
        self.reclaim();
        loop {
            i = self.enqueue(batch, i, &mut dropped);
            self.kick();
            if i == batch.len() || started.elapsed() >= TX_WAIT {
                break;
            }
            // Out of frames: the kernel holds them until the receiver
            // frees what it sent. Wait while they come back; give up soon
            // if none do (the caller counts the rest as dropped).
            if self.reclaim() > 0 {
                stalled = None;
                continue;
            }
            let since = *stalled.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= TX_STALL {
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
            self.reclaim();
        }
        Ok(i - dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_types_follow_the_destination() {
        let host = [2, 0, 0, 0, 0, 1];
        let f = |d: [u8; 6]| {
            let mut frame = d.to_vec();
            frame.extend_from_slice(&[0; 8]);
            pkt_type(&frame, &host)
        };
        assert_eq!(f([0xff; 6]), libc::PACKET_BROADCAST);
        assert_eq!(f([1, 0, 0x5e, 0, 0, 1]), libc::PACKET_MULTICAST);
        assert_eq!(f(host), libc::PACKET_HOST);
        assert_eq!(f([2, 0, 0, 0, 0, 2]), libc::PACKET_OTHERHOST);
    }

    #[test]
    fn the_area_refuses_what_lies_outside() {
        let a = Area::new(2 * 4096).unwrap();
        assert!(a.bytes(0, 4096).is_some());
        assert!(a.bytes(4096, 4096).is_some());
        assert!(a.bytes(4097, 4096).is_none());
        assert!(a.bytes(u64::MAX, 1).is_none());
        let w = a.bytes_mut(100, 4).unwrap();
        w.copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(a.bytes(100, 4).unwrap(), [1, 2, 3, 4]);
    }

    #[test]
    fn the_shipped_program_is_a_bpf_object_with_its_map() {
        let obj = aya_obj::Object::parse(PROGRAM).expect("the object parses");
        assert!(obj.maps.contains_key("xsks"));
        assert!(obj.programs.contains_key("switchyard_xsk"));
        // The attach modes by name, as FromDevice takes them.
        assert_eq!(AttachMode::parse("native"), Some(AttachMode::Native));
        assert_eq!(AttachMode::parse("skb"), Some(AttachMode::Generic));
        assert_eq!(AttachMode::parse("zc"), None);
    }
}
