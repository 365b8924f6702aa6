//! AF_PACKET rings (PACKET_MMAP): the kernel writes received frames into
//! memory shared with us (TPACKET_V3: blocks of frames, one poll per
//! block), and sends frames we write into a transmit ring (TPACKET_V2)
//! with one system call per batch, bypassing the qdisc.
//!
//! The only unsafe code of the project is here and in device.rs: the
//! mapped memory is shared with the kernel, so every access goes through
//! volatile reads/writes at offsets checked against the mapping, ordered
//! by fences as the kernel's packet_mmap documentation prescribes.
//!
//! The receive socket asks for PACKET_VNET_HDR, so that each frame comes
//! with the `virtio_net_hdr` that says whether it is a GSO super-frame or
//! carries a partial checksum; such frames are segmented or completed
//! (offload.rs) before they enter the graph, the super-frame read
//! straight from the ring.

use crate::offload::{self, RateLimited, RxStats, Segmenter, VnetHdr, GSO_NONE, VNET_HDR_LEN};
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering, Ordering::Relaxed};
use std::sync::Arc;
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
// Offsets in struct tpacket3_hdr, then in the struct sockaddr_ll the
// kernel puts after it, at TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
// (TPACKET3_HDRLEN is that offset plus the sockaddr_ll).
const H3_NEXT: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
const H3_SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
const H3_LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
const H3_MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
const H3_SLL: usize = libc::TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>();
const H3_PKTTYPE: usize = H3_SLL + offset_of!(libc::sockaddr_ll, sll_pkttype);
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

    /// Private anonymous memory laid out by a test as the kernel lays out
    /// a ring.
    #[cfg(test)]
    fn anonymous(len: usize) -> Mapping {
        // SAFETY: a fresh private anonymous mapping, checked against
        // MAP_FAILED; it aliases nothing. Used by the ring tests below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
        Mapping { ptr: ptr.cast(), len }
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
    /// Frames come with a virtio_net_hdr (PACKET_VNET_HDR was accepted).
    vnet: bool,
    /// The next segment to emit of the super-frame at `offset`, when a
    /// batch filled up in the middle of one: it stays in the ring (its
    /// block is still ours) and the next call goes on from there.
    seg_next: usize,
    device: String,
    stats: Arc<RxStats>,
    /// Checksums completed since the last `recv` published them: counted
    /// per frame here, added to the shared stats once per batch.
    csum_completed: u64,
    warn: RateLimited,
}

const RX_BLOCK_SIZE: usize = 1 << 18;
const RX_BLOCK_NR: usize = 64;
const FRAME_SIZE: usize = 2048;

impl RxRing {
    /// Opens a receive ring on `device` (index `ifindex`), counting what
    /// it does about offloaded frames in `stats`.
    pub fn open(
        device: &str,
        ifindex: u32,
        promisc: bool,
        fanout: Option<(u16, Fanout)>,
        stats: Arc<RxStats>,
    ) -> io::Result<RxRing> {
        let fd = packet_socket(TPACKET_V3)?;
        let one: libc::c_int = 1;
        // Before the ring: the kernel refuses it once a ring exists. With
        // it, GSO super-frames and partial checksums of the senders' stacks
        // are made wire-correct here, whatever the interfaces' offloads.
        let vnet = match setsockopt(&fd, libc::PACKET_VNET_HDR, &one, "PACKET_VNET_HDR") {
            Ok(()) => {
                tracing::info!(
                    device,
                    "GSO super-frames and partial checksums are segmented and completed in software"
                );
                true
            }
            Err(e) => {
                tracing::warn!(device, error = %e, "no PACKET_VNET_HDR: GSO super-frames and partial checksums pass unmodified; turn off TSO, GSO, GRO and checksum offload on the senders");
                false
            }
        };
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
        // Frames this host sends out of the interface are not input. Where
        // the kernel cannot leave them out, `take` skips them by type.
        if let Err(e) = setsockopt(&fd, libc::PACKET_IGNORE_OUTGOING, &one, "PACKET_IGNORE_OUTGOING") {
            tracing::info!(device, error = %e, "outgoing frames are skipped by packet type instead");
        }
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
            vnet,
            seg_next: 0,
            device: device.to_string(),
            stats,
            csum_completed: 0,
            warn: RateLimited::default(),
        })
    }

    fn block_base(&self) -> usize {
        self.block * self.block_size
    }

    /// Turns the frame at `h` (in the block at `base`) into at most `room`
    /// packets appended to `batch`: as it is, with its checksum completed,
    /// or as the segments of a super-frame. Returns how many, and whether
    /// the frame is done with (false: the batch filled up first).
    fn take(&mut self, h: usize, base: usize, batch: &mut Batch, room: usize, ts: u64) -> (usize, bool) {
        let snaplen = self.map.read_u32(h + H3_SNAPLEN) as usize;
        let len = self.map.read_u32(h + H3_LEN) as usize;
        let mac = self.map.read_u16(h + H3_MAC) as usize;
        let lead = libc::TPACKET3_HDRLEN + if self.vnet { VNET_HDR_LEN } else { 0 };
        // A frame must lie inside its block, after its headers; anything
        // else is a corrupt ring and is skipped, never read.
        if mac < lead || h + mac + snaplen > base + self.block_size {
            return (0, true);
        }
        let pkttype = self.map.bytes(h + H3_PKTTYPE, 1)[0];
        if pkttype == libc::PACKET_OUTGOING {
            return (0, true);
        }
        if snaplen < len {
            self.stats.truncated.fetch_add(1, Relaxed);
            warn(
                &mut self.warn,
                &self.device,
                format_args!("frame longer than the ring holds: dropped"),
            );
            return (0, true);
        }
        let hdr = if self.vnet {
            VnetHdr::parse(self.map.bytes(h + mac - VNET_HDR_LEN, VNET_HDR_LEN)).unwrap_or_default()
        } else {
            VnetHdr::default()
        };
        let data = self.map.bytes(h + mac, snaplen);
        if hdr.gso_type == GSO_NONE {
            let mut p = if hdr.needs_csum() {
                let (start, off) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
                let mut completed = false;
                // Completed in the copy as it is made: one uniqueness check.
                let p = Packet::from_data_patched(data, |f| completed = offload::complete_checksum(f, start, off));
                if !completed {
                    self.stats.csum_dropped.fetch_add(1, Relaxed);
                    warn(
                        &mut self.warn,
                        &self.device,
                        format_args!("partial checksum outside the frame: dropped"),
                    );
                    return (0, true);
                }
                self.csum_completed += 1;
                p
            } else {
                Packet::from_data(data)
            };
            p.anno.timestamp_ns = ts;
            p.anno.pkt_type = pkttype;
            batch.push(p);
            return (1, true);
        }
        let seg = match Segmenter::new(data, &hdr) {
            Ok(seg) => seg,
            Err(e) => {
                self.stats.gso_dropped.fetch_add(1, Relaxed);
                // Formatted only when the rate limit lets it out.
                warn(
                    &mut self.warn,
                    &self.device,
                    format_args!("GSO super-frame not segmented ({e}): dropped"),
                );
                return (0, true);
            }
        };
        let mut n = 0;
        while self.seg_next < seg.count() {
            if n == room {
                return (n, false);
            }
            let mut p = seg.packet(self.seg_next);
            p.anno.timestamp_ns = ts;
            p.anno.pkt_type = pkttype;
            batch.push(p);
            n += 1;
            self.seg_next += 1;
        }
        self.seg_next = 0;
        self.stats.gso_segmented.fetch_add(1, Relaxed);
        self.stats.gso_segments.fetch_add(seg.count() as u64, Relaxed);
        (n, true)
    }
}

/// A rate-limited warning about received frames.
fn warn(limit: &mut RateLimited, device: &str, what: std::fmt::Arguments<'_>) {
    if let Some(held) = limit.ready() {
        tracing::warn!(device, similar_since_last = held, "{what}");
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
                let next = self.map.read_u32(h + H3_NEXT) as usize;
                let (n, done) = self.take(h, base, batch, max - got, ts);
                got += n;
                if !done {
                    break; // the batch is full; this frame goes on next time
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
        if self.csum_completed > 0 {
            self.stats
                .csum_completed
                .fetch_add(std::mem::take(&mut self.csum_completed), Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use crate::offload::tests::{ip_ok, l4_ok, payload, tcp4_super};
    use crate::offload::{VnetHdr, GSO_UDP};
    use switchyard_core::packet::Annotations;

    #[test]
    fn frame_header_offsets_are_the_kernels() {
        // include/uapi/linux/if_packet.h: tpacket3_hdr is 48 bytes, the
        // sockaddr_ll follows at TPACKET_ALIGN(48), sll_pkttype is its
        // 11th byte.
        assert_eq!((H3_NEXT, H3_SNAPLEN, H3_LEN, H3_MAC), (0, 12, 16, 24));
        assert_eq!(size_of::<libc::tpacket3_hdr>(), 48);
        assert_eq!((H3_SLL, H3_PKTTYPE), (48, 58));
        assert_eq!(libc::PACKET_OUTGOING, Annotations::OUTGOING);
        assert_eq!(libc::PACKET_BROADCAST, Annotations::BROADCAST);
        assert_eq!(libc::PACKET_OTHERHOST, Annotations::OTHERHOST);
    }

    /// Where the kernel put the MAC header in the frames it wrote on this
    /// machine's kernel (6.18) with PACKET_VNET_HDR: the virtio header
    /// just before it.
    const MAC: usize = 92;

    /// A receive ring over anonymous memory, one block filled as the
    /// kernel fills one: `(pkttype, tp_len, vnet header, frame)` each.
    fn fake_ring(frames: &[(u8, usize, VnetHdr, Vec<u8>)]) -> (RxRing, Arc<RxStats>) {
        let block = 1 << 17;
        let mut map = Mapping::anonymous(2 * block);
        let mut h = 48;
        let n = frames.len();
        for (i, (pkttype, len, vnet, data)) in frames.iter().enumerate() {
            let next = (MAC + data.len()).next_multiple_of(16);
            let b = map.bytes_mut(h, next);
            let last = i + 1 == n;
            b[0..4].copy_from_slice(&(if last { 0 } else { next as u32 }).to_ne_bytes());
            b[12..16].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            b[16..20].copy_from_slice(&(*len as u32).to_ne_bytes());
            b[24..26].copy_from_slice(&(MAC as u16).to_ne_bytes());
            b[58] = *pkttype;
            b[MAC - VNET_HDR_LEN..MAC].copy_from_slice(&vnet.to_bytes());
            b[MAC..MAC + data.len()].copy_from_slice(data);
            h += next;
        }
        map.write_u32(BD_NUM_PKTS, n as u32);
        map.write_u32(BD_FIRST, 48);
        map.write_u32(BD_STATUS, TP_STATUS_USER);
        let stats = Arc::new(RxStats::default());
        let fd = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let ring = RxRing {
            fd,
            map,
            block_size: block,
            block_nr: 2,
            block: 0,
            next_pkt: 0,
            offset: 0,
            vnet: true,
            seg_next: 0,
            device: "test0".into(),
            stats: stats.clone(),
            csum_completed: 0,
            warn: RateLimited::default(),
        };
        (ring, stats)
    }

    #[test]
    fn ring_frames_come_out_wire_correct_across_small_batches() {
        let data = payload(5000);
        let (sup, gso) = tcp4_super(&data, 0x18);
        let (small, partial) = tcp4_super(&payload(100), 0x18);
        let partial = VnetHdr {
            gso_type: 0,
            gso_size: 0,
            ..partial
        };
        let arp = vec![0xff; 42];
        let plain = VnetHdr::default();
        let bad_csum = VnetHdr {
            csum_start: 200,
            ..partial
        };
        let (ring_frames, stats) = {
            let frames = vec![
                (Annotations::BROADCAST, 42, plain, arp.clone()),
                (Annotations::OUTGOING, small.len(), partial, small.clone()),
                (Annotations::HOST, small.len() + 10, partial, small.clone()),
                (Annotations::HOST, small.len(), partial, small.clone()),
                (Annotations::OTHERHOST, sup.len(), gso, sup.clone()),
                (
                    Annotations::HOST,
                    sup.len(),
                    VnetHdr {
                        gso_type: GSO_UDP,
                        ..gso
                    },
                    sup.clone(),
                ),
                (Annotations::HOST, small.len(), bad_csum, small.clone()),
                (Annotations::MULTICAST, 42, plain, arp.clone()),
            ];
            let (mut ring, stats) = fake_ring(&frames);
            let mut out = Vec::new();
            // Batches of 3: the super-frame's 4 segments span two calls.
            loop {
                let mut b = Batch::new();
                let n = ring.recv(&mut b, 3).unwrap();
                assert_eq!(n, b.len());
                assert!(n <= 3);
                if n == 0 {
                    break;
                }
                out.extend(b.drain().map(|p| (p.anno.pkt_type, p.data().to_vec())));
            }
            assert_eq!(ring.map.read_u32(BD_STATUS), TP_STATUS_KERNEL, "block handed back");
            assert_eq!(ring.block, 1);
            (out, stats)
        };
        let types: Vec<u8> = ring_frames.iter().map(|f| f.0).collect();
        assert_eq!(
            types,
            [1, 0, 3, 3, 3, 3, 2],
            "outgoing, truncated and bad frames left out"
        );
        assert_eq!(ring_frames[0].1, arp);
        assert!(l4_ok(&ring_frames[1].1[14..]), "partial checksum completed");
        let mut joined = Vec::new();
        for (_, s) in &ring_frames[2..6] {
            assert!(s.len() <= 1514 && ip_ok(&s[14..]) && l4_ok(&s[14..]));
            joined.extend_from_slice(&s[66..]);
        }
        assert_eq!(joined, data);
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        assert_eq!(get(&stats.truncated), 1);
        assert_eq!(get(&stats.csum_completed), 1);
        assert_eq!(get(&stats.csum_dropped), 1);
        assert_eq!(get(&stats.gso_segmented), 1);
        assert_eq!(get(&stats.gso_segments), 4);
        assert_eq!(get(&stats.gso_dropped), 1);
    }
}
