//! Packets and batches.
//!
//! A [`Packet`] is a window into a reference-counted buffer, with headroom
//! for encapsulation, plus annotations. Cloning a packet shares the buffer
//! (Click's `clone`); writing to a shared packet copies it first (Click's
//! `uniqueify`). Buffers and batch vectors are recycled through per-thread
//! pools, with a shared overflow so that buffers freed on a consumer thread
//! find their way back to the producer: in steady state nothing is
//! allocated per packet.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// Bytes before the packet data, for prepending headers without a copy.
pub const HEADROOM: usize = 128;
/// Size of a pooled buffer: headroom plus a jumbo-less Ethernet frame with
/// room to spare.
pub const BUFFER_SIZE: usize = 2048;
/// The most packets a batch holds.
pub const MAX_BATCH: usize = 256;

/// Per-packet metadata that travels with the packet (Click's annotations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// Nanoseconds since the Unix epoch, set by sources.
    pub timestamp_ns: u64,
    /// Sequence number stamped by a hub, for exactly-once cut-over.
    pub seq: u64,
    /// Flow hash, for flow-consistent splitting.
    pub flow_hash: u32,
    /// Paint colour (Click's `Paint`/`PaintSwitch`).
    pub paint: u8,
    /// How the frame arrived (Click's packet type annotation): one of
    /// [`HOST`](Annotations::HOST), [`BROADCAST`](Annotations::BROADCAST),
    /// [`MULTICAST`](Annotations::MULTICAST), [`OTHERHOST`](Annotations::OTHERHOST),
    /// [`OUTGOING`](Annotations::OUTGOING); set by FromDevice and HostEtherFilter.
    pub pkt_type: u8,
    /// Flag bits: [`NET_HEADER`](Annotations::NET_HEADER),
    /// [`FIX_IP_SRC`](Annotations::FIX_IP_SRC).
    pub flags: u8,
    /// The branch a flow table (FlowTable, before the hub) chose for this
    /// packet, plus one; 0 when none did. A pinned selector forwards the
    /// packet from that input only, so both copies of a packet are judged
    /// alike.
    pub branch: u8,
    /// The flow table slot of the packet's flow, plus one; 0 when the flow
    /// is not pinned. A pinned selector links the reply key it learns to it.
    pub flow: u32,
    /// Click's ICMP parameter-problem annotation: the offset, from the
    /// start of the IP header, of the byte a parameter problem is about;
    /// set by IPGWOptions, read by ICMPError (type 12, code 0).
    pub param_off: u8,
    /// Where the network header starts, as an offset into the buffer (not
    /// the data), so that `Strip` and `EtherEncap` leave it valid; set by
    /// CheckIPHeader/MarkIPHeader. Meaningful when `NET_HEADER` is set.
    pub net_off: u16,
    /// Length of the network header (the IP header with its options).
    pub net_len: u16,
    /// Destination IP address annotation (Click's `DST_IP_ANNO`), host
    /// order: set by GetIPAddress/CheckIPHeader, replaced by a route's
    /// gateway, read by ARPQuerier.
    pub dst_ip: u32,
}

impl Annotations {
    /// `net_off`/`net_len` hold a network header.
    pub const NET_HEADER: u8 = 1;
    /// Click's fix-IP-source annotation: FixIPSrc rewrites the source of
    /// a packet that carries it (set by ICMPError).
    pub const FIX_IP_SRC: u8 = 2;
    /// Packet types, numbered as Linux's `PACKET_*` (and Click's).
    pub const HOST: u8 = 0;
    pub const BROADCAST: u8 = 1;
    pub const MULTICAST: u8 = 2;
    pub const OTHERHOST: u8 = 3;
    pub const OUTGOING: u8 = 4;
}

/// A packet: data in a shared buffer and its annotations.
pub struct Packet {
    buf: Option<Arc<[u8]>>,
    head: u32,
    len: u32,
    pub anno: Annotations,
}

const LOCAL_POOL_MAX: usize = 4 * 1024;
const CHUNK: usize = 512;
const SHARED_POOL_MAX_CHUNKS: usize = 16;

thread_local! {
    static BUFFERS: RefCell<Vec<Arc<[u8]>>> = const { RefCell::new(Vec::new()) };
    static BATCHES: RefCell<Vec<Vec<Packet>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers handed between threads in chunks, one lock per chunk.
static SHARED_BUFFERS: Mutex<Vec<Vec<Arc<[u8]>>>> = Mutex::new(Vec::new());

/// Takes a chunk of buffers freed on other threads, if any.
fn refill(pool: &mut Vec<Arc<[u8]>>) {
    if let Some(chunk) = SHARED_BUFFERS.lock().ok().and_then(|mut s| s.pop()) {
        pool.extend(chunk);
    }
}

/// Hands a chunk of a full local pool to other threads.
fn spill(pool: &mut Vec<Arc<[u8]>>) {
    let keep = pool.len() - CHUNK;
    let chunk: Vec<_> = pool.drain(keep..).collect();
    if let Ok(mut shared) = SHARED_BUFFERS.lock() {
        if shared.len() < SHARED_POOL_MAX_CHUNKS {
            shared.push(chunk);
        }
    }
}

fn alloc_buffer(size: usize) -> Arc<[u8]> {
    if size <= BUFFER_SIZE {
        let pooled = BUFFERS.with(|p| {
            let mut p = p.borrow_mut();
            if p.is_empty() {
                refill(&mut p);
            }
            p.pop()
        });
        if let Some(b) = pooled {
            return b;
        }
        return Arc::from(vec![0u8; BUFFER_SIZE]);
    }
    Arc::from(vec![0u8; size])
}

fn free_buffer(buf: Arc<[u8]>) {
    if buf.len() != BUFFER_SIZE {
        return;
    }
    BUFFERS.with(|p| {
        let mut p = p.borrow_mut();
        p.push(buf);
        if p.len() >= LOCAL_POOL_MAX {
            spill(&mut p);
        }
    });
}

impl Packet {
    /// A new packet holding a copy of `data`, from the pool.
    pub fn from_data(data: &[u8]) -> Packet {
        Packet::from_buffer(alloc_buffer(HEADROOM + data.len()), data, |_| {})
    }

    /// A new packet holding a copy of `data` that `patch` changes (a
    /// checksum completed, a field rewritten) while the new buffer is
    /// known to be unique: one uniqueness check for the copy and the
    /// change, where `from_data` then [`data_mut`](Self::data_mut) costs two.
    #[inline]
    pub fn from_data_patched(data: &[u8], patch: impl FnOnce(&mut [u8])) -> Packet {
        Packet::from_buffer(alloc_buffer(HEADROOM + data.len()), data, patch)
    }

    /// Fills a unique buffer with `data` after the headroom, then lets
    /// `patch` change the copy while it is still known to be unique (no
    /// second uniqueness check, which is a locked operation).
    #[inline]
    fn from_buffer(buf: Arc<[u8]>, data: &[u8], patch: impl FnOnce(&mut [u8])) -> Packet {
        Packet::filled(buf, data.len(), |dst| {
            copy_small(dst, data);
            patch(dst);
        })
    }

    /// A packet of `len` bytes after the headroom of the unique `buf`, all
    /// written by `fill`.
    #[inline]
    fn filled(mut buf: Arc<[u8]>, len: usize, fill: impl FnOnce(&mut [u8])) -> Packet {
        fill(&mut Arc::get_mut(&mut buf).expect("pooled buffers are unique")[HEADROOM..HEADROOM + len]);
        Packet {
            buf: Some(buf),
            head: HEADROOM as u32,
            len: len as u32,
            anno: Annotations::default(),
        }
    }

    /// A new packet of `len` bytes whose contents are unspecified
    /// (recycled), for callers that overwrite them.
    pub fn with_len(len: usize) -> Packet {
        Packet::filled(alloc_buffer(HEADROOM + len), len, |_| {})
    }

    /// A new packet of `len` bytes, all written by `fill` (it gets them
    /// with unspecified, recycled contents): no packet with unspecified
    /// bytes escapes, and no later [`data_mut`](Self::data_mut).
    #[inline]
    pub fn with_len_filled(len: usize, fill: impl FnOnce(&mut [u8])) -> Packet {
        Packet::filled(alloc_buffer(HEADROOM + len), len, fill)
    }

    #[inline]
    fn buf(&self) -> &Arc<[u8]> {
        self.buf.as_ref().expect("packet buffer present until drop")
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.head as usize;
        &self.buf()[h..h + self.len as usize]
    }

    /// True if another packet shares this one's buffer.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(self.buf()) > 1
    }

    /// Writable data; copies the buffer first if it is shared.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.uniqueify();
        let (h, l) = (self.head as usize, self.len as usize);
        let buf = Arc::get_mut(self.buf.as_mut().expect("buffer")).expect("unique after uniqueify");
        &mut buf[h..h + l]
    }

    /// Makes the buffer this packet's own (Click's `uniqueify`).
    ///
    /// Buffers never have weak references, so a strong count of one
    /// means nobody else holds this one: the check is a plain load, where
    /// `Arc::get_mut` is a locked compare-and-swap (measured at a fifth
    /// of the IP forwarding path's time when every writer called it). The
    /// writable borrow itself still goes through `Arc::get_mut` (safe code
    /// has no other way), so [`data_mut`](Self::data_mut) and
    /// [`push_front_mut`](Self::push_front_mut) pay one such operation per
    /// call: borrow once per packet, and write a new packet's bytes as it
    /// is made ([`from_data_patched`](Self::from_data_patched),
    /// [`with_len_filled`](Self::with_len_filled)).
    #[inline]
    pub fn uniqueify(&mut self) {
        if Arc::strong_count(self.buf()) == 1 {
            return;
        }
        self.copy_out();
    }

    #[cold]
    fn copy_out(&mut self) {
        let mut fresh = alloc_buffer(self.buf().len());
        // The bytes before the data stay (Unstrip restores them); those
        // after it are not data and are not copied.
        let end = self.head as usize + self.len as usize;
        let src = &self.buf()[..end];
        Arc::get_mut(&mut fresh).expect("pooled buffers are unique")[..end].copy_from_slice(src);
        self.buf = Some(fresh);
    }

    /// Marks the network header: it starts `offset` bytes into the data
    /// and is `len` bytes long (Click's `set_network_header`).
    #[inline]
    pub fn set_network_header(&mut self, offset: usize, len: usize) {
        self.anno.net_off = (self.head as usize + offset).min(u16::MAX as usize) as u16;
        self.anno.net_len = len.min(u16::MAX as usize) as u16;
        self.anno.flags |= Annotations::NET_HEADER;
    }

    /// Where the network header starts relative to the data, if one is
    /// marked and still inside the data (a `Strip` past it unmarks it in
    /// effect).
    #[inline]
    pub fn network_offset(&self) -> Option<usize> {
        if self.anno.flags & Annotations::NET_HEADER == 0 {
            return None;
        }
        let off = (self.anno.net_off as usize).checked_sub(self.head as usize)?;
        (off <= self.len as usize).then_some(off)
    }

    /// The bytes from the network header to the end of the data.
    #[inline]
    pub fn network_header(&self) -> Option<&[u8]> {
        let off = self.network_offset()?;
        Some(&self.data()[off..])
    }

    /// Writable bytes from the network header on (copied first if shared).
    #[inline]
    pub fn network_header_mut(&mut self) -> Option<&mut [u8]> {
        let off = self.network_offset()?;
        Some(&mut self.data_mut()[off..])
    }

    /// Removes `n` bytes from the front (clamped to the length).
    pub fn pull(&mut self, n: usize) {
        let n = n.min(self.len as usize) as u32;
        self.head += n;
        self.len -= n;
    }

    /// Removes `n` bytes from the end (clamped to the length).
    pub fn take(&mut self, n: usize) {
        self.len -= n.min(self.len as usize) as u32;
    }

    /// Adds `n` bytes at the front, using headroom (copying if needed);
    /// the new bytes are unspecified.
    #[inline]
    pub fn push_front(&mut self, n: usize) {
        if n > self.head as usize {
            return self.push_front_copy(n);
        }
        self.uniqueify();
        self.head -= n as u32;
        self.len += n as u32;
    }

    /// [`push_front`](Self::push_front), then the `n` new bytes, writable
    /// (an encapsulation's header): one uniqueness check for both.
    #[inline]
    pub fn push_front_mut(&mut self, n: usize) -> &mut [u8] {
        self.push_front(n);
        let h = self.head as usize;
        let buf = Arc::get_mut(self.buf.as_mut().expect("buffer")).expect("unique after push_front");
        &mut buf[h..h + n]
    }

    /// [`push_front`](Self::push_front) beyond the headroom: a bigger
    /// buffer.
    #[cold]
    fn push_front_copy(&mut self, n: usize) {
        let mut fresh = Packet::with_len_filled(self.len as usize + n, |d| {
            // The new front bytes are the caller's to write.
            d[..n].fill(0);
            d[n..].copy_from_slice(self.data());
        });
        fresh.anno = self.anno;
        // The network header moves with the data.
        let moved = (fresh.head as usize + n) as isize - self.head as isize;
        fresh.anno.net_off = (self.anno.net_off as isize + moved).clamp(0, u16::MAX as isize) as u16;
        *self = fresh;
    }
}

/// Copies `src` into `dst` (same length). Frames up to 128 bytes, most
/// of what sources make, are copied in at most four fixed 32-byte moves
/// written out (a loop is turned back into a call to memmove, which the
/// profile showed); longer ones go to memmove, which is good at them.
#[inline]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    if src.len() > 128 {
        dst.copy_from_slice(src);
        return;
    }
    let (mut d, mut s) = (dst, src);
    macro_rules! step {
        () => {
            if let (Some(a), Some(b)) = (d.first_chunk_mut::<32>(), s.first_chunk::<32>()) {
                *a = *b;
                d = &mut d[32..];
                s = &s[32..];
            }
        };
    }
    step!();
    step!();
    step!();
    step!();
    if !s.is_empty() {
        d.copy_from_slice(s);
    }
}

impl Clone for Packet {
    /// Shares the data (one reference-count increment, no copy).
    fn clone(&self) -> Packet {
        Packet {
            buf: self.buf.clone(),
            head: self.head,
            len: self.len,
            anno: self.anno,
        }
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            if Arc::strong_count(&buf) == 1 {
                free_buffer(buf);
            }
        }
    }
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len)
            .field("anno", &self.anno)
            .finish()
    }
}

/// Packets that travel together through the graph. The vector comes from
/// a per-thread pool and goes back to it on drop.
pub struct Batch {
    packets: Vec<Packet>,
}

impl Batch {
    pub fn new() -> Batch {
        let packets = BATCHES
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(MAX_BATCH));
        Batch { packets }
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn push(&mut self, p: Packet) {
        self.packets.push(p);
    }

    pub fn packets(&self) -> &[Packet] {
        &self.packets
    }

    pub fn packets_mut(&mut self) -> &mut [Packet] {
        &mut self.packets
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.packets.iter()
    }

    /// Total bytes of packet data.
    pub fn byte_len(&self) -> u64 {
        self.packets.iter().map(|p| p.len() as u64).sum()
    }

    /// Keeps the packets for which `f` is true, dropping the rest.
    pub fn retain(&mut self, f: impl FnMut(&mut Packet) -> bool) {
        self.packets.retain_mut(f);
    }

    /// Removes and returns every packet, leaving the batch empty.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.packets.drain(..)
    }

    /// Drops packets beyond the first `n`.
    pub fn truncate(&mut self, n: usize) {
        self.packets.truncate(n);
    }

    /// A batch of `n` new packets, each a copy of `data` with annotations
    /// `anno`: what sources do, with one pool access for the whole batch.
    pub fn from_template(data: &[u8], n: usize, anno: Annotations) -> Batch {
        Batch::from_template_patched(data, n, anno, |_, _| {})
    }

    /// [`from_template`](Self::from_template), with `patch(i, bytes)`
    /// applied to packet `i`'s fresh copy (a source varying a field).
    pub fn from_template_patched(
        data: &[u8],
        n: usize,
        anno: Annotations,
        mut patch: impl FnMut(usize, &mut [u8]),
    ) -> Batch {
        let mut b = Batch::new();
        let size = HEADROOM + data.len();
        if size > BUFFER_SIZE {
            b.packets.extend((0..n).map(|i| {
                let mut p = Packet::from_data(data);
                patch(i, p.data_mut());
                p.anno = anno;
                p
            }));
            return b;
        }
        BUFFERS.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < n {
                refill(&mut pool);
            }
            let have = pool.len().min(n);
            let start = pool.len() - have;
            b.packets.extend(pool.drain(start..).enumerate().map(|(i, buf)| {
                let mut p = Packet::from_buffer(buf, data, |d| patch(i, d));
                p.anno = anno;
                p
            }));
        });
        // Pool empty (start-up, or buffers still held downstream): allocate.
        while b.packets.len() < n {
            let i = b.packets.len();
            let mut p = Packet::from_buffer(Arc::from(vec![0u8; BUFFER_SIZE]), data, |d| patch(i, d));
            p.anno = anno;
            b.packets.push(p);
        }
        b
    }

    /// Moves the packets from index `at` on into a new batch.
    pub fn split_off(&mut self, at: usize) -> Batch {
        let mut b = Batch::new();
        let at = at.min(self.packets.len());
        b.packets.extend(self.packets.drain(at..));
        b
    }

    /// A batch sharing every packet's data (for Tee).
    pub fn share(&self) -> Batch {
        let mut b = Batch::new();
        b.packets.extend(self.packets.iter().cloned());
        b
    }
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.packets);
        if v.capacity() == 0 {
            return;
        }
        if !v.is_empty() {
            // Free the buffers with one pool access for the whole batch.
            BUFFERS.with(|pool| {
                let mut pool = pool.borrow_mut();
                for mut p in v.drain(..) {
                    if let Some(buf) = p.buf.take() {
                        if Arc::strong_count(&buf) == 1 && buf.len() == BUFFER_SIZE {
                            pool.push(buf);
                        }
                    }
                    // Nothing left to release (annotations are plain
                    // data): skip the per-packet Drop call.
                    std::mem::forget(p);
                }
                if pool.len() >= LOCAL_POOL_MAX {
                    spill(&mut pool);
                }
            });
        }
        v.clear();
        BATCHES.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < 256 {
                p.push(v);
            }
        });
    }
}

impl Extend<Packet> for Batch {
    fn extend<I: IntoIterator<Item = Packet>>(&mut self, iter: I) {
        self.packets.extend(iter);
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a Packet;
    type IntoIter = std::slice::Iter<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.packets.iter()
    }
}

/// Wall-clock nanoseconds, for timestamps (read once per batch); the
/// simulated clock's under `--simtime` (see [`crate::clock`]).
pub fn now_ns() -> u64 {
    crate::clock::now_ns()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_and_write_copies() {
        let a = Packet::from_data(&[1, 2, 3]);
        let mut b = a.clone();
        assert!(a.is_shared());
        b.data_mut()[0] = 9;
        assert_eq!(a.data(), &[1, 2, 3]);
        assert_eq!(b.data(), &[9, 2, 3]);
        assert!(!a.is_shared());
    }

    #[test]
    fn buffers_are_recycled() {
        let p = Packet::from_data(&[0; 64]);
        let ptr = p.data().as_ptr();
        drop(p);
        let q = Packet::from_data(&[0; 64]);
        assert_eq!(q.data().as_ptr(), ptr);
    }

    #[test]
    fn headroom_and_trimming() {
        let mut p = Packet::from_data(&[1, 2, 3, 4]);
        p.pull(1);
        p.take(1);
        assert_eq!(p.data(), &[2, 3]);
        p.push_front(2);
        assert_eq!(p.len(), 4);
        assert_eq!(&p.data()[2..], &[2, 3]);
        p.push_front(HEADROOM + 10);
        assert_eq!(p.len(), 4 + HEADROOM + 10);
        p.pull(1000);
        assert!(p.is_empty());
    }

    #[test]
    fn push_front_mut_gives_the_new_bytes_of_an_own_copy() {
        let p = Packet::from_data(&[1, 2, 3]);
        let mut q = p.clone();
        q.push_front_mut(2).copy_from_slice(&[8, 9]);
        assert_eq!(q.data(), &[8, 9, 1, 2, 3]);
        assert_eq!(p.data(), &[1, 2, 3]);
        let mut r = Packet::from_data(&[5]);
        r.push_front_mut(HEADROOM + 3).fill(7);
        assert_eq!(r.len(), HEADROOM + 4);
        assert_eq!(r.data()[HEADROOM + 3], 5);
    }

    #[test]
    fn network_header_survives_strip_and_encap() {
        let mut p = Packet::from_data(&[0xee; 34]);
        p.set_network_header(14, 20);
        assert_eq!(p.network_offset(), Some(14));
        p.pull(14);
        assert_eq!(p.network_offset(), Some(0));
        assert_eq!(p.network_header().unwrap().len(), 20);
        p.push_front(14);
        assert_eq!(p.network_offset(), Some(14));
        p.push_front(HEADROOM + 1);
        assert_eq!(p.network_offset(), Some(14 + HEADROOM + 1));
        p.pull(HEADROOM + 16);
        assert_eq!(p.network_offset(), None);
    }

    #[test]
    fn new_packets_are_written_as_they_are_made() {
        let p = Packet::from_data_patched(&[1, 2, 3], |d| d[1] = 9);
        assert_eq!(p.data(), &[1, 9, 3]);
        assert!(!p.is_shared());
        let q = Packet::with_len_filled(5, |d| d.copy_from_slice(&[5, 4, 3, 2, 1]));
        assert_eq!(q.data(), &[5, 4, 3, 2, 1]);
        let big = Packet::with_len_filled(9000, |d| d.fill(6));
        assert!(big.data().iter().all(|&b| b == 6) && big.len() == 9000);
    }

    #[test]
    fn oversized_packets_are_not_pooled_but_work() {
        let p = Packet::from_data(&vec![7u8; 9000]);
        assert_eq!(p.len(), 9000);
        assert_eq!(p.data()[8999], 7);
    }
}
