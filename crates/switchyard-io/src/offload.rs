//! Frames as a Linux host's stack hands them to a packet socket, made
//! wire-correct.
//!
//! A sender with TSO/GSO (veth's default, and any NIC with GRO on the
//! router's side) passes TCP "super-frames" of up to 64 KB whose
//! checksums are unfinished (CHECKSUM_PARTIAL: the checksum field holds
//! only the pseudo-header sum). A packet socket with PACKET_VNET_HDR gets,
//! before each frame, the `struct virtio_net_hdr` that says so: whether a
//! checksum is to be completed and where, and the segment size. The ring
//! backend reads it and calls [`complete_checksum`] or [`Segmenter`],
//! which do in software what the NIC would have done: pure functions over
//! bytes, so that they are tested without a kernel.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use switchyard_core::checksum::{checksum, fold, sum};
use switchyard_core::Packet;

/// Size of `struct virtio_net_hdr`, placed just before the MAC header.
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` holds the pseudo-header sum; the rest is to be added.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_*`, the low bits of `gso_type`.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
/// UDP fragmentation offload (UFO): no longer produced by Linux; dropped.
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
/// UDP segmentation (UDP_SEGMENT senders: each segment its own datagram).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the sender uses ECN (CWR may be set).
pub const GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr`, in the host's byte order (the kernel writes a
/// packet socket's header in the legacy, native-endian layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the MAC header.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from its 10 bytes; None when `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The inverse of [`parse`](Self::parse), for tests and tools.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in [self.hdr_len, self.gso_size, self.csum_start, self.csum_offset]
            .into_iter()
            .enumerate()
        {
            b[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// The GSO kind without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Why a frame could not be made wire-correct (it is dropped and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// A GSO type this router does not segment (UFO, or one a later kernel adds).
    Unsupported(u8),
    /// Headers that do not describe the frame: what was wrong.
    Malformed(&'static str),
}

impl std::fmt::Display for OffloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OffloadError::Unsupported(t) => write!(f, "GSO type {t} not supported"),
            OffloadError::Malformed(why) => f.write_str(why),
        }
    }
}

/// What a receive device counts: the frames FromDevice passes on, and
/// what the ring did with offloaded frames (Switchyard additions); shared
/// with FromDevice's handlers.
#[derive(Debug, Default)]
pub struct RxStats {
    /// Frames received and passed on (FromDevice's `count`): a segmented
    /// super-frame counts as its segments.
    pub received: AtomicU64,
    /// Super-frames split into wire-sized segments.
    pub gso_segmented: AtomicU64,
    /// Segments those super-frames became.
    pub gso_segments: AtomicU64,
    /// Super-frames dropped: unsupported GSO type or headers not matching it.
    pub gso_dropped: AtomicU64,
    /// Frames whose partial checksum was completed in software.
    pub csum_completed: AtomicU64,
    /// Partial-checksum frames dropped: checksum offsets outside the frame.
    pub csum_dropped: AtomicU64,
    /// Frames the ring held only part of (snap length below the length).
    pub truncated: AtomicU64,
}

/// A warning at most once per interval, saying how many were held back:
/// anomalies in received frames are not logged per packet.
#[derive(Debug, Default)]
pub struct RateLimited {
    last: Option<Instant>,
    held: u64,
}

impl RateLimited {
    const EVERY: Duration = Duration::from_secs(10);

    /// True when a warning may be logged now; `held` tells how many were
    /// held back since the last one.
    pub fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Completes a partial checksum as the NIC (or Linux's
/// `skb_checksum_help`) would: the ones' complement sum from `start` to
/// the end of the frame, whose checksum field at `start + offset` already
/// holds the pseudo-header sum, complemented into that field (0 written as
/// 0xffff, as Linux does: the same value for TCP, and for UDP the only
/// correct one). False, leaving the frame as it was, when the field is
/// outside the frame.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(end) = start.checked_add(offset).and_then(|f| f.checked_add(2)) else {
        return false;
    };
    if end > frame.len() {
        return false;
    }
    let field = end - 2;
    let c = checksum(&frame[start..]);
    put16(frame, field, if c == 0 { 0xffff } else { c });
    true
}

/// Where a super-frame's headers are, checked once: then each segment is
/// written straight from the frame (the ring's memory) into a buffer of
/// the packet pool, with no intermediate copy of the whole.
#[derive(Debug)]
pub struct Segmenter<'a> {
    frame: &'a [u8],
    /// Start of the IP header.
    l3: usize,
    /// Start of the TCP/UDP header.
    l4: usize,
    /// End of the TCP/UDP header: where payload starts.
    hdrs: usize,
    /// End of the IP packet (bytes after it, if any, are not sent).
    end: usize,
    v6: bool,
    udp: bool,
    gso: usize,
    count: usize,
}

const ETH_HLEN: usize = 14;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

impl<'a> Segmenter<'a> {
    /// Checks that `frame` (Ethernet, optionally 802.1Q/802.1ad tagged)
    /// is the kind of super-frame `hdr` says it is.
    pub fn new(frame: &'a [u8], hdr: &VnetHdr) -> Result<Segmenter<'a>, OffloadError> {
        use OffloadError::Malformed;
        let (want_v6, udp) = match hdr.gso_kind() {
            GSO_TCPV4 => (Some(false), false),
            GSO_TCPV6 => (Some(true), false),
            GSO_UDP_L4 => (None, true),
            other => return Err(OffloadError::Unsupported(other)),
        };
        let gso = usize::from(hdr.gso_size);
        const MIN_GSO_SIZE: usize = 48;
        // A tiny segment size would turn one 64 KB frame into tens of
        // thousands of packets; Linux's TCP never goes below 48 bytes.
        if gso < MIN_GSO_SIZE {
            return Err(Malformed("GSO segment size below 48"));
        }
        let mut l3 = ETH_HLEN;
        let mut ethertype = frame
            .get(12..14)
            .map(|_| be16(frame, 12))
            .ok_or(Malformed("short Ethernet header"))?;
        for _ in 0..2 {
            if ethertype != 0x8100 && ethertype != 0x88a8 {
                break;
            }
            ethertype = frame
                .get(l3 + 2..l3 + 4)
                .map(|_| be16(frame, l3 + 2))
                .ok_or(Malformed("short VLAN tag"))?;
            l3 += 4;
        }
        let v6 = match ethertype {
            0x0800 => false,
            0x86dd => true,
            _ => return Err(Malformed("GSO frame neither IPv4 nor IPv6")),
        };
        if want_v6.is_some_and(|w| w != v6) {
            return Err(Malformed("GSO type does not match the IP version"));
        }
        let ip = frame.get(l3..).ok_or(Malformed("short IP header"))?;
        let (l4, end, proto) = if v6 {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return Err(Malformed("bad IPv6 header"));
            }
            // Extension headers (and BIG TCP's jumbo payload, length 0)
            // are not segmented.
            let plen = usize::from(be16(ip, 4));
            if plen == 0 || 40 + plen > ip.len() {
                return Err(Malformed("IPv6 payload length does not match the frame"));
            }
            (l3 + 40, l3 + 40 + plen, ip[6])
        } else {
            let ihl = usize::from(ip.first().ok_or(Malformed("short IP header"))? & 0x0f) * 4;
            if ip.len() < 20 || ip[0] >> 4 != 4 || ihl < 20 || ihl > ip.len() {
                return Err(Malformed("bad IPv4 header"));
            }
            let tot = usize::from(be16(ip, 2));
            if tot < ihl || tot > ip.len() {
                return Err(Malformed("IPv4 total length does not match the frame"));
            }
            if be16(ip, 6) & 0x3fff != 0 {
                return Err(Malformed("GSO frame is a fragment"));
            }
            (l3 + ihl, l3 + tot, ip[9])
        };
        let hdrs = if udp {
            if proto != 17 {
                return Err(Malformed("UDP GSO frame is not UDP"));
            }
            l4 + 8
        } else {
            if proto != 6 {
                return Err(Malformed("TCP GSO frame is not TCP"));
            }
            let doff = usize::from(frame.get(l4 + 12).ok_or(Malformed("short TCP header"))? >> 4) * 4;
            if doff < 20 {
                return Err(Malformed("TCP data offset below 5"));
            }
            l4 + doff
        };
        if hdrs > end {
            return Err(Malformed("transport header runs past the packet"));
        }
        let count = (end - hdrs).div_ceil(gso).max(1);
        Ok(Segmenter {
            frame,
            l3,
            l4,
            hdrs,
            end,
            v6,
            udp,
            gso,
            count,
        })
    }

    /// How many segments the super-frame becomes.
    pub fn count(&self) -> usize {
        self.count
    }

    fn payload(&self, i: usize) -> &'a [u8] {
        let from = (self.hdrs + i * self.gso).min(self.end);
        &self.frame[from..(from + self.gso).min(self.end)]
    }

    /// Length of segment `i` (Ethernet header included).
    pub fn segment_len(&self, i: usize) -> usize {
        self.hdrs + self.payload(i).len()
    }

    /// Writes segment `i` into `out`, which is `segment_len(i)` long: the
    /// headers copied, then per segment, as Linux's GSO does: IP length,
    /// IPv4 id + i and header checksum; TCP sequence number + offset, FIN
    /// and PSH only on the last segment, CWR only on the first (ECN bits
    /// of the IP header are copied unchanged); UDP length; and the full
    /// transport checksum.
    pub fn write(&self, i: usize, out: &mut [u8]) {
        let payload = self.payload(i);
        let (l3, l4, hdrs) = (self.l3, self.l4, self.hdrs);
        out[..hdrs].copy_from_slice(&self.frame[..hdrs]);
        out[hdrs..].copy_from_slice(payload);
        let l4_len = hdrs - l4 + payload.len();
        if self.v6 {
            put16(out, l3 + 4, l4_len as u16);
        } else {
            put16(out, l3 + 2, (l4 - l3 + l4_len) as u16);
            let id = be16(self.frame, l3 + 4).wrapping_add(i as u16);
            put16(out, l3 + 4, id);
            put16(out, l3 + 10, 0);
            let c = checksum(&out[l3..l4]);
            put16(out, l3 + 10, c);
        }
        let field = if self.udp {
            put16(out, l4 + 4, l4_len as u16);
            l4 + 6
        } else {
            let seq = u32::from_be_bytes([
                self.frame[l4 + 4],
                self.frame[l4 + 5],
                self.frame[l4 + 6],
                self.frame[l4 + 7],
            ]);
            out[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add((i * self.gso) as u32).to_be_bytes());
            if i + 1 < self.count {
                out[l4 + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                out[l4 + 13] &= !TCP_CWR;
            }
            l4 + 16
        };
        put16(out, field, 0);
        // The pseudo-header: addresses, then length and protocol added as
        // numbers (IPv6's 32-bit length too: 2^16 = 1 in ones' complement).
        let proto: u64 = if self.udp { 17 } else { 6 };
        let addrs = if self.v6 { l3 + 8..l3 + 40 } else { l3 + 12..l3 + 20 };
        let pseudo = sum(&out[addrs], l4_len as u64 + proto);
        let c = !fold(sum(&out[l4..], pseudo));
        // UDP sends a computed 0 as 0xffff (0 means "no checksum").
        put16(out, field, if c == 0 && self.udp { 0xffff } else { c });
    }

    /// Segment `i` as a new packet (a pooled buffer when it fits one).
    pub fn packet(&self, i: usize) -> Packet {
        Packet::with_len_filled(self.segment_len(i), |out| self.write(i, out))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 1071 done the slow, obvious way, as the reference.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    pub(crate) fn ip_ok(ip: &[u8]) -> bool {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        reference_sum(&ip[..ihl]) == 0xffff
    }

    /// The transport checksum of an IPv4 or IPv6 packet verifies by full
    /// recomputation over pseudo-header and segment.
    pub(crate) fn l4_ok(ip: &[u8]) -> bool {
        let mut pseudo = Vec::new();
        let seg = if ip[0] >> 4 == 4 {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let seg = &ip[ihl..usize::from(be16(ip, 2))];
            pseudo.extend_from_slice(&ip[12..20]);
            pseudo.extend_from_slice(&[0, ip[9]]);
            pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            seg
        } else {
            let seg = &ip[40..40 + usize::from(be16(ip, 4))];
            pseudo.extend_from_slice(&ip[8..40]);
            pseudo.extend_from_slice(&(seg.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, ip[6]]);
            seg
        };
        pseudo.extend_from_slice(seg);
        reference_sum(&pseudo) == 0xffff
    }

    pub(crate) fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    const MAC: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

    /// A TCP/IPv4 super-frame as a sender with TSO hands it over: total
    /// length covering everything, checksum field holding only the
    /// pseudo-header sum. TCP options (12 bytes of timestamps) included.
    pub(crate) fn tcp4_super(data: &[u8], flags: u8) -> (Vec<u8>, VnetHdr) {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x08, 0x00]);
        let tcp_len = 32 + data.len();
        let mut ip = vec![
            0x45, 0x03, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        put16(&mut ip, 2, (20 + tcp_len) as u16);
        let c = checksum(&ip);
        put16(&mut ip, 10, c);
        f.extend_from_slice(&ip);
        let mut tcp = vec![
            0x9c, 0x40, 0x13, 0x89, 0xff, 0xff, 0xfa, 0x00, 0, 0, 0, 7, 0x80, flags, 0xff, 0xff, 0, 0, 0, 0,
        ];
        tcp.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8]);
        let pseudo = fold(sum(&ip[12..20], tcp_len as u64 + 6));
        put16(&mut tcp, 16, pseudo);
        f.extend_from_slice(&tcp);
        f.extend_from_slice(data);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        (f, hdr)
    }

    fn segments(frame: &[u8], hdr: &VnetHdr) -> Vec<Vec<u8>> {
        let s = Segmenter::new(frame, hdr).unwrap();
        (0..s.count()).map(|i| s.packet(i).data().to_vec()).collect()
    }

    /// Core's checksum arithmetic, which the segmenter uses, as this
    /// module once had it: folded, not complemented.
    #[test]
    fn sum_matches_the_reference_at_every_length_and_alignment() {
        let sum = |d: &[u8]| fold(sum(d, 0));
        let data = payload(300);
        for from in 0..5 {
            for to in from..data.len() {
                assert_eq!(sum(&data[from..to]), reference_sum(&data[from..to]), "{from}..{to}");
            }
        }
        // RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn vnet_header_reads_back_what_was_written() {
        let h = VnetHdr {
            flags: 1,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
        assert_eq!(h.gso_kind(), GSO_TCPV4);
        assert_eq!(VnetHdr::parse(&[0; 9]), None);
    }

    #[test]
    fn tcp4_super_frame_becomes_wire_segments_with_verified_checksums() {
        let data = payload(5000);
        let flags = 0x80 | 0x10 | TCP_PSH | TCP_FIN; // CWR ACK PSH FIN
        let (frame, hdr) = tcp4_super(&data, flags);
        let segs = segments(&frame, &hdr);
        assert_eq!(segs.len(), 4, "5000 bytes at 1448 a segment");
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let ip = &s[14..];
            assert!(s.len() <= 14 + 20 + 32 + 1448);
            assert_eq!(usize::from(be16(ip, 2)), s.len() - 14, "IP total length");
            assert_eq!(be16(ip, 4), 0x1234 + i as u16, "IP id");
            assert!(ip_ok(ip), "IP checksum of segment {i}");
            assert!(l4_ok(ip), "TCP checksum of segment {i}");
            assert_eq!(ip[1], 0x03, "ECN bits copied");
            assert_eq!(&s[..14], &frame[..14]);
            let tcp = &ip[20..];
            let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            assert_eq!(seq, 0xffff_fa00u32.wrapping_add(1448 * i as u32), "sequence wraps");
            let last = i == segs.len() - 1;
            assert_eq!(tcp[13] & (TCP_FIN | TCP_PSH) != 0, last, "FIN/PSH on the last only");
            assert_eq!(tcp[13] & TCP_CWR != 0, i == 0, "CWR on the first only");
            assert_ne!(tcp[13] & 0x10, 0, "ACK on all");
            assert_eq!(&tcp[20..32], &frame[54..66], "options copied");
            joined.extend_from_slice(&tcp[32..]);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn a_payload_of_exactly_n_segments_and_an_empty_one() {
        let (frame, hdr) = tcp4_super(&payload(2 * 1448), 0x18);
        let segs = segments(&frame, &hdr);
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| s.len() == 66 + 1448 && l4_ok(&s[14..])));
        let (frame, hdr) = tcp4_super(&[], 0x10);
        let segs = segments(&frame, &hdr);
        assert_eq!(segs.len(), 1);
        assert!(ip_ok(&segs[0][14..]) && l4_ok(&segs[0][14..]));
    }

    #[test]
    fn tagged_tcp4_super_frame_is_segmented_behind_its_vlan_tag() {
        let (plain, hdr) = tcp4_super(&payload(3000), 0x10);
        let mut frame = plain[..12].to_vec();
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        frame.extend_from_slice(&plain[12..]);
        let segs = segments(&frame, &hdr);
        assert_eq!(segs.len(), 3);
        assert!(segs
            .iter()
            .all(|s| s[12..16] == [0x81, 0, 0, 5] && ip_ok(&s[18..]) && l4_ok(&s[18..])));
    }

    fn ip6_super(proto: u8, l4: &[u8], data: &[u8], gso_type: u8, gso: u16) -> (Vec<u8>, VnetHdr) {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x86, 0xdd]);
        let len = l4.len() + data.len();
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
        put16(&mut ip, 4, len as u16);
        ip.extend((0..32).map(|i| if i % 16 == 0 { 0xfd } else { i as u8 }));
        f.extend_from_slice(&ip);
        let field = if proto == 6 { 16 } else { 6 };
        let mut l4 = l4.to_vec();
        let pseudo = fold(sum(&ip[8..40], len as u64 + u64::from(proto)));
        put16(&mut l4, field, pseudo);
        f.extend_from_slice(&l4);
        f.extend_from_slice(data);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: 0,
            gso_size: gso,
            csum_start: 54,
            csum_offset: field as u16,
        };
        (f, hdr)
    }

    #[test]
    fn tcp6_super_frame_becomes_segments_with_verified_checksums() {
        let data = payload(4000);
        let tcp = [
            0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 7, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        ];
        let (frame, hdr) = ip6_super(6, &tcp, &data, GSO_TCPV6, 1428);
        let segs = segments(&frame, &hdr);
        assert_eq!(segs.len(), 3);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(usize::from(be16(&s[14..], 4)), s.len() - 54);
            assert!(l4_ok(&s[14..]), "segment {i}");
            joined.extend_from_slice(&s[74..]);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn udp_gso_frame_becomes_datagrams_of_the_segment_size() {
        let data = payload(2500);
        let udp = [0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 0];
        let (frame, hdr) = ip6_super(17, &udp, &data, GSO_UDP_L4, 1200);
        let segs = segments(&frame, &hdr);
        assert_eq!(segs.len(), 3);
        for s in &segs {
            assert_eq!(usize::from(be16(s, 58)), s.len() - 54, "UDP length");
            assert!(l4_ok(&s[14..]));
        }
        // And over IPv4: ids step, header checksums verify.
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 9, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        put16(&mut ip, 2, (28 + data.len()) as u16);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&udp);
        f.extend_from_slice(&data);
        let hdr = VnetHdr {
            gso_type: GSO_UDP_L4,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let segs = segments(&f, &hdr);
        assert_eq!(segs.len(), 3);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(be16(&s[14..], 4), 9 + i as u16);
            assert!(ip_ok(&s[14..]) && l4_ok(&s[14..]));
        }
    }

    #[test]
    fn partial_checksum_of_a_small_frame_is_completed() {
        let data = payload(37); // odd length: the last byte is padded
        let (mut frame, hdr) = tcp4_super(&data, 0x18);
        assert!(!l4_ok(&frame[14..]), "partial before");
        assert!(complete_checksum(
            &mut frame,
            usize::from(hdr.csum_start),
            usize::from(hdr.csum_offset)
        ));
        assert!(l4_ok(&frame[14..]), "complete after");
        assert!(ip_ok(&frame[14..]));
    }

    #[test]
    fn partial_checksum_offsets_outside_the_frame_are_refused_untouched() {
        let (frame, _) = tcp4_super(&payload(10), 0x18);
        for (start, off) in [
            (frame.len(), 0),
            (frame.len() - 1, 0),
            (34, frame.len()),
            (usize::MAX, 2),
        ] {
            let mut f = frame.clone();
            assert!(!complete_checksum(&mut f, start, off), "{start}+{off}");
            assert_eq!(f, frame);
        }
        let mut f = frame.clone();
        assert!(complete_checksum(&mut f, frame.len() - 2, 0), "the last two bytes");
    }

    #[test]
    fn malformed_and_unsupported_super_frames_are_refused() {
        let (frame, hdr) = tcp4_super(&payload(3000), 0x10);
        let err = |f: &[u8], h: &VnetHdr| Segmenter::new(f, h).err();
        assert_eq!(
            err(
                &frame,
                &VnetHdr {
                    gso_type: GSO_UDP,
                    ..hdr
                }
            ),
            Some(OffloadError::Unsupported(GSO_UDP))
        );
        assert_eq!(
            err(&frame, &VnetHdr { gso_type: 9, ..hdr }),
            Some(OffloadError::Unsupported(9))
        );
        assert!(err(&frame, &VnetHdr { gso_size: 0, ..hdr }).is_some());
        // One 64 KB frame must not become tens of thousands of packets.
        assert!(err(&frame, &VnetHdr { gso_size: 47, ..hdr }).is_some());
        assert!(err(&frame, &VnetHdr { gso_size: 1, ..hdr }).is_some());
        assert!(err(
            &frame,
            &VnetHdr {
                gso_type: GSO_TCPV6,
                ..hdr
            }
        )
        .is_some());
        assert!(err(
            &frame,
            &VnetHdr {
                gso_type: GSO_UDP_L4,
                ..hdr
            }
        )
        .is_some());
        let mut bad = frame.clone();
        bad[14] = 0x44; // IHL 4
        assert!(err(&bad, &hdr).is_some());
        let mut bad = frame.clone();
        put16(&mut bad, 16, 4000); // total length beyond the frame
        assert!(err(&bad, &hdr).is_some());
        let mut bad = frame.clone();
        bad[20] |= 0x20; // more fragments
        assert!(err(&bad, &hdr).is_some());
        let mut bad = frame.clone();
        bad[14 + 20 + 12] = 0x40; // TCP data offset 4
        assert!(err(&bad, &hdr).is_some());
        let mut bad = frame.clone();
        bad[14] = 0x4f; // options past the header
        put16(&mut bad, 16, 50);
        assert!(err(&bad, &hdr).is_some());
        for n in 0..70 {
            assert!(err(&frame[..n], &hdr).is_some(), "cut at {n}");
        }
    }

    /// Hostile input: random mutations of valid super-frames never panic,
    /// and whatever is accepted comes out with verifying checksums.
    #[test]
    fn mutated_super_frames_never_panic_and_accepted_ones_verify() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (base, hdr) = tcp4_super(&payload(3000), 0x19);
        let mut accepted = 0;
        for _ in 0..3000 {
            let mut f = base.clone();
            for _ in 0..(rnd() % 4) {
                let at = (rnd() % 80) as usize;
                f[at] = rnd() as u8;
            }
            if rnd() % 2 == 0 {
                f.truncate(f.len().saturating_sub((rnd() % 3100) as usize));
                if rnd() % 2 == 0 && f.len() >= 18 {
                    // A shorter but consistent super-frame.
                    let tot = (f.len() - 14) as u16;
                    put16(&mut f, 16, tot);
                }
            }
            let h = VnetHdr {
                // Refused below 48: 1 is; 48, the smallest accepted, makes
                // the most segments (63 of a full frame).
                gso_size: [1, 48, 536, 1448, 65535][(rnd() % 5) as usize],
                gso_type: [GSO_TCPV4, GSO_TCPV4, GSO_UDP_L4, GSO_TCPV6][(rnd() % 4) as usize],
                ..hdr
            };
            let Ok(s) = Segmenter::new(&f, &h) else { continue };
            accepted += 1;
            let mut total = 0;
            for i in 0..s.count() {
                let p = s.packet(i);
                total += p.len() - s.hdrs;
                let ip = &p.data()[s.l3..];
                if !s.v6 {
                    assert!(ip_ok(ip));
                }
                assert!(l4_ok(ip));
            }
            assert_eq!(total, s.end - s.hdrs);
            let mut g = f.clone();
            let _ = complete_checksum(&mut g, (rnd() % 100) as usize, (rnd() % 40) as usize);
        }
        assert!(
            accepted > 300,
            "only {accepted} mutations accepted: the test checks too little"
        );
    }
}
