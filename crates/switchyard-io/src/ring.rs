//! AF_PACKET rings (PACKET_MMAP): the kernel writes received frames into
//! memory shared with us (TPACKET_V3: blocks of frames, one poll per
//! block), and sends frames we write into a transmit ring (TPACKET_V2)
//! with one system call per batch, bypassing the qdisc.
//!
//! The only unsafe code of the project is here and in device.rs: the
//! mapped memory is shared with the kernel, so every access goes through
//! volatile reads/writes at offsets checked against the mapping, ordered
//! by fences as the kernel's packet_mmap documentation prescribes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;
use switchyard_core::packet::now_ns;
use switchyard_core::{Batch, Packet};

const ETH_P_ALL: u16 = 0x0003;
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT: libc::c_int = 18;

/// How PACKET_FANOUT spreads frames over the sockets of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fanout {
    /// By flow hash: a flow always reaches the same pipeline copy.
    Hash = 0,
    /// Round robin.
    RoundRobin = 1,
    /// By the CPU that received the frame.
    Cpu = 2,
}

// Offsets in struct tpacket_block_desc (version, offset_to_priv, then
// tpacket_hdr_v1: block_status, num_pkts, offset_to_first_pkt, ...).
const BD_STATUS: usize = 8;
const BD_NUM_PKTS: usize = 12;
const BD_FIRST: usize = 16;
// Offsets in struct tpacket3_hdr.
const H3_NEXT: usize = 0;
const H3_SNAPLEN: usize = 12;
const H3_MAC: usize = 24;
// struct tpacket2_hdr is 32 bytes (tp_status first, tp_len at 4); a
// transmitted frame's data starts at TPACKET_ALIGN(32) = 32.
const H2_LEN: usize = 4;
const TX_DATA: usize = 32;

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// An AF_PACKET socket for every protocol, in ring `version` (bound later,
/// once its ring is set up).
fn packet_socket(version: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with constant arguments; the result is
    // checked before use and wrapped in an OwnedFd that closes it.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(ETH_P_ALL.to_be())) };
    if fd < 0 {
        return Err(os_err("socket(AF_PACKET) (needs CAP_NET_RAW)"));
    }
    // SAFETY: fd is a fresh, valid descriptor we own from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt(&fd, libc::PACKET_VERSION, &version, "PACKET_VERSION")?;
    Ok(fd)
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed; the kernel
    // copies it and keeps no reference.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os_err(what));
    }
    Ok(())
}

fn bind(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; we fill the fields bind
    // needs.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a properly initialised sockaddr_ll and the length
    // passed is its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os_err("bind"));
    }
    Ok(())
}

/// A shared mapping of a ring, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with the kernel; the ring
// owning it is used by one thread at a time (it is moved, never shared).
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: mapping `len` bytes of the ring the kernel just set up on
        // `fd`; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os_err("mmap"));
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }

    /// Volatile read of a u32 at `off` (bounds-checked).
    fn read_u32(&self, off: usize) -> u32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "ring offset {off} out of bounds"
        );
        // SAFETY: in bounds and 4-aligned (the mapping is page-aligned and
        // the kernel's ring structures align their u32 fields); volatile
        // because the kernel writes this memory concurrently.
        unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u32>()) }
    }

    fn read_u16(&self, off: usize) -> u16 {
        assert!(
            off.is_multiple_of(2) && off + 2 <= self.len,
            "ring offset {off} out of bounds"
        );
        // SAFETY: as read_u32, for a 2-aligned u16.
        unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u16>()) }
    }

    fn write_u32(&self, off: usize, v: u32) {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "ring offset {off} out of bounds"
        );
        // SAFETY: in bounds and aligned; this field (a status word) is
        // ours to write when the protocol hands the slot to user space.
        unsafe { std::ptr::write_volatile(self.ptr.add(off).cast::<u32>(), v) }
    }

    /// The bytes `[off, off + len)` (bounds-checked).
    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "ring range out of bounds"
        );
        // SAFETY: in bounds; the kernel does not write a frame while its
        // block or slot is owned by user space (status checked first).
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "ring range out of bounds"
        );
        // SAFETY: in bounds; a transmit slot whose status is AVAILABLE is
        // ours until we mark it SEND_REQUEST; &mut self makes it exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows
        // the mapping any more (borrows are tied to &self).
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

fn poll_in(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
    if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
        return Err(os_err("poll"));
    }
    Ok(())
}

/// Receive ring: TPACKET_V3.
pub struct RxRing {
    fd: OwnedFd,
    map: Mapping,
    block_size: usize,
    block_nr: usize,
    /// The block being read, and where in it.
    block: usize,
    next_pkt: u32,
    offset: usize,
}

const RX_BLOCK_SIZE: usize = 1 << 18;
const RX_BLOCK_NR: usize = 64;
const FRAME_SIZE: usize = 2048;

impl RxRing {
    pub fn open(ifindex: u32, promisc: bool, fanout: Option<(u16, Fanout)>) -> io::Result<RxRing> {
        let fd = packet_socket(TPACKET_V3)?;
        let req = libc::tpacket_req3 {
            tp_block_size: RX_BLOCK_SIZE as u32,
            tp_block_nr: RX_BLOCK_NR as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: (RX_BLOCK_SIZE * RX_BLOCK_NR / FRAME_SIZE) as u32,
            tp_retire_blk_tov: 1,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::PACKET_RX_RING, &req, "PACKET_RX_RING")?;
        // Frames this host sends out of the interface are not input.
        let one: libc::c_int = 1;
        let _ = setsockopt(&fd, PACKET_IGNORE_OUTGOING, &one, "PACKET_IGNORE_OUTGOING");
        let map = Mapping::new(&fd, RX_BLOCK_SIZE * RX_BLOCK_NR)?;
        bind(&fd, ifindex)?;
        if let Some((group, mode)) = fanout {
            // Every socket joining `group` on this interface gets a share.
            let arg: libc::c_int = libc::c_int::from(group) | ((mode as libc::c_int) << 16);
            setsockopt(&fd, PACKET_FANOUT, &arg, "PACKET_FANOUT")?;
        }
        if promisc {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(&fd, libc::PACKET_ADD_MEMBERSHIP, &mreq, "PACKET_ADD_MEMBERSHIP")?;
        }
        Ok(RxRing {
            fd,
            map,
            block_size: RX_BLOCK_SIZE,
            block_nr: RX_BLOCK_NR,
            block: 0,
            next_pkt: 0,
            offset: 0,
        })
    }

    fn block_base(&self) -> usize {
        self.block * self.block_size
    }
}

impl crate::device::Device for RxRing {
    fn recv(&mut self, batch: &mut Batch, max: usize) -> io::Result<usize> {
        let ts = now_ns();
        let mut got = 0;
        while got < max {
            let base = self.block_base();
            let status = self.map.read_u32(base + BD_STATUS);
            if status & TP_STATUS_USER == 0 {
                break;
            }
            // Acquire: the frames of a block handed to us are visible
            // after its status.
            fence(Ordering::Acquire);
            let num = self.map.read_u32(base + BD_NUM_PKTS);
            if self.next_pkt == 0 {
                self.offset = base + self.map.read_u32(base + BD_FIRST) as usize;
            }
            while self.next_pkt < num && got < max {
                let h = self.offset;
                let snaplen = self.map.read_u32(h + H3_SNAPLEN) as usize;
                let mac = self.map.read_u16(h + H3_MAC) as usize;
                let next = self.map.read_u32(h + H3_NEXT) as usize;
                // A frame must lie inside its block; anything else is a
                // corrupt ring and is skipped, never read.
                if h + mac + snaplen <= base + self.block_size {
                    let mut p = Packet::from_data(self.map.bytes(h + mac, snaplen));
                    p.anno.timestamp_ns = ts;
                    batch.push(p);
                    got += 1;
                }
                self.next_pkt += 1;
                if next == 0 || h + next >= base + self.block_size {
                    self.next_pkt = num;
                } else {
                    self.offset = h + next;
                }
            }
            if self.next_pkt >= num {
                // Release: we are done reading before the kernel may reuse it.
                fence(Ordering::Release);
                self.map.write_u32(base + BD_STATUS, TP_STATUS_KERNEL);
                self.block = (self.block + 1) % self.block_nr;
                self.next_pkt = 0;
            }
        }
        Ok(got)
    }

    fn send(&mut self, _batch: &Batch) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "receive ring cannot send"))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if self.map.read_u32(self.block_base() + BD_STATUS) & TP_STATUS_USER != 0 {
            return Ok(());
        }
        poll_in(&self.fd, timeout)
    }
}

/// Transmit ring: TPACKET_V2, qdisc bypassed.
pub struct TxRing {
    fd: OwnedFd,
    map: Mapping,
    frame_nr: usize,
    next: usize,
    down_logged: bool,
}

const TX_BLOCK_SIZE: usize = 1 << 16;
const TX_BLOCK_NR: usize = 32;

impl TxRing {
    pub fn open(ifindex: u32) -> io::Result<TxRing> {
        let fd = packet_socket(TPACKET_V2)?;
        let one: libc::c_int = 1;
        // Straight to the driver: no qdisc per frame (a ring is a queue).
        let _ = setsockopt(&fd, libc::PACKET_QDISC_BYPASS, &one, "PACKET_QDISC_BYPASS");
        let frame_nr = TX_BLOCK_SIZE * TX_BLOCK_NR / FRAME_SIZE;
        let req = libc::tpacket_req {
            tp_block_size: TX_BLOCK_SIZE as u32,
            tp_block_nr: TX_BLOCK_NR as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: frame_nr as u32,
        };
        setsockopt(&fd, libc::PACKET_TX_RING, &req, "PACKET_TX_RING")?;
        let map = Mapping::new(&fd, TX_BLOCK_SIZE * TX_BLOCK_NR)?;
        bind(&fd, ifindex)?;
        Ok(TxRing {
            fd,
            map,
            frame_nr,
            next: 0,
            down_logged: false,
        })
    }

    /// Asks the kernel to send what is marked; `wait` blocks until done.
    fn kick(&mut self, wait: bool) -> io::Result<()> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        // SAFETY: a zero-length send with no buffer and no address is the
        // documented way to flush a TX ring.
        let r = unsafe { libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, flags, std::ptr::null(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {}
                Some(libc::ENETDOWN) | Some(libc::ENXIO) => {
                    if !self.down_logged {
                        self.down_logged = true;
                        tracing::warn!("interface down: frames dropped until it is up again");
                    }
                    // Give the ring back: the frames are lost anyway.
                    for i in 0..self.frame_nr {
                        let off = i * FRAME_SIZE;
                        if self.map.read_u32(off) == TP_STATUS_SEND_REQUEST {
                            self.map.write_u32(off, TP_STATUS_AVAILABLE);
                        }
                    }
                }
                _ => return Err(e),
            }
        } else if self.down_logged {
            self.down_logged = false;
            tracing::warn!("interface up again: sending");
        }
        Ok(())
    }

    fn slot_free(&mut self, off: usize) -> bool {
        match self.map.read_u32(off) {
            TP_STATUS_AVAILABLE => true,
            TP_STATUS_WRONG_FORMAT => {
                self.map.write_u32(off, TP_STATUS_AVAILABLE);
                true
            }
            _ => false,
        }
    }
}

impl crate::device::Device for TxRing {
    fn recv(&mut self, _batch: &mut Batch, _max: usize) -> io::Result<usize> {
        Ok(0)
    }

    fn send(&mut self, batch: &Batch) -> io::Result<usize> {
        let mut sent = 0;
        for p in batch.iter() {
            let data = p.data();
            if data.is_empty() || data.len() > FRAME_SIZE - TX_DATA {
                continue; // cannot be sent as one frame; dropped
            }
            let off = self.next * FRAME_SIZE;
            if !self.slot_free(off) {
                // Ring full: let the kernel drain it, then look again.
                self.kick(true)?;
                if !self.slot_free(off) {
                    break;
                }
            }
            self.map.bytes_mut(off + TX_DATA, data.len()).copy_from_slice(data);
            self.map.write_u32(off + H2_LEN, data.len() as u32);
            // Release: the frame's bytes before its status.
            fence(Ordering::Release);
            self.map.write_u32(off, TP_STATUS_SEND_REQUEST);
            self.next = (self.next + 1) % self.frame_nr;
            sent += 1;
        }
        if sent > 0 {
            self.kick(false)?;
        }
        Ok(sent)
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        std::thread::sleep(timeout.min(Duration::from_millis(1)));
        Ok(())
    }
}
