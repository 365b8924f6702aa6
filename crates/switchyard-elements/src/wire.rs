//! Bytes from the wire: checked views over Ethernet, ARP and IPv4 headers,
//! the Internet checksum (RFC 1071) and its incremental update (RFC 1624),
//! and the address syntax element arguments use.
//!
//! A view is made with `new_checked`, which verifies the length once;
//! its accessors cannot read past the buffer after that. Elements never
//! index packet bytes without going through one of these views or an
//! explicit length check.

use switchyard_core::FromArg;

pub const ETHER_HEADER_LEN: usize = 14;
pub const ETHERTYPE_IP: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;

pub const IP_PROTO_ICMP: u8 = 1;
pub const IP_PROTO_TCP: u8 = 6;
pub const IP_PROTO_UDP: u8 = 17;

/// The IP protocol names elements read and print (Click's), sorted by
/// name.
pub const IP_PROTOS: &[(&str, u8)] = &[
    ("dccp", 33),
    ("gre", 47),
    ("icmp", IP_PROTO_ICMP),
    ("igmp", 2),
    ("ipip", 4),
    ("sctp", 132),
    ("tcp", IP_PROTO_TCP),
    ("udp", IP_PROTO_UDP),
];

/// The name of IP protocol `proto`, if it has one in [`IP_PROTOS`].
pub fn ip_proto_name(proto: u8) -> Option<&'static str> {
    IP_PROTOS.iter().find(|&&(_, p)| p == proto).map(|&(n, _)| n)
}

/// Byte offsets of IPv4 header fields.
pub mod ip {
    pub const TOS: usize = 1;
    pub const LEN: usize = 2;
    pub const ID: usize = 4;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const SUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const MIN_LEN: usize = 20;
    /// The longest header: 15 words, options included.
    pub const MAX_HEADER: usize = 60;
    /// Don't-fragment and more-fragments bits of the FRAG field.
    pub const DF: u16 = 0x4000;
    pub const MF: u16 = 0x2000;
    pub const OFFMASK: u16 = 0x1fff;
}

/// Reads a big-endian u16 at `at`; the caller has checked the length.
#[inline]
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian u32 at `at`; the caller has checked the length.
#[inline]
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub use switchyard_core::checksum::{checksum, fold, sum, update16, update32};

/// Why bytes are not a usable IPv4 header: Click's CheckIPHeader reasons,
/// in its order. [`Ipv4::new_checked`] finds the first four; the checksum
/// and the source address are checked by those who want them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpError {
    /// Shorter than 20 bytes.
    TooShort,
    /// Version is not 4.
    BadVersion,
    /// IHL below 5.
    BadHeaderLen,
    /// Total length below the header length, or beyond the data.
    BadLength,
    /// The header checksum does not verify.
    BadChecksum,
    /// A source address a router must refuse (RFC 1812 5.3.7).
    BadSource,
}

impl IpError {
    /// Every reason, in Click's order; `e as usize` indexes it.
    pub const ALL: [IpError; 6] = [
        IpError::TooShort,
        IpError::BadVersion,
        IpError::BadHeaderLen,
        IpError::BadLength,
        IpError::BadChecksum,
        IpError::BadSource,
    ];

    /// Click's label (CheckIPHeader's `drop_details` lines).
    pub fn label(self) -> &'static str {
        match self {
            IpError::TooShort => "tiny packet",
            IpError::BadVersion => "bad IP version",
            IpError::BadHeaderLen => "bad IP header length",
            IpError::BadLength => "bad IP length",
            IpError::BadChecksum => "bad IP checksum",
            IpError::BadSource => "bad source address",
        }
    }
}

/// The header length of the IPv4 header at the start of `b`, if `b` holds
/// one: version 4, a header length of at least 20 bytes, all inside `b`.
/// The total length is not looked at (elements that only rewrite the
/// header need no more).
#[inline]
pub fn checked_header_len(b: &[u8]) -> Option<usize> {
    let &first = b.first()?;
    let hl = usize::from(first & 0xf) * 4;
    (first >> 4 == 4 && hl >= ip::MIN_LEN && hl <= b.len()).then_some(hl)
}

/// A checked view of an IPv4 header: the header and its options are
/// inside the buffer, and the total length does not run past it.
#[derive(Clone, Copy)]
pub struct Ipv4<'a> {
    b: &'a [u8],
}

impl<'a> Ipv4<'a> {
    pub fn new_checked(b: &'a [u8]) -> Result<Ipv4<'a>, IpError> {
        if b.len() < ip::MIN_LEN {
            return Err(IpError::TooShort);
        }
        if b[0] >> 4 != 4 {
            return Err(IpError::BadVersion);
        }
        let hl = usize::from(b[0] & 0xf) * 4;
        if hl < ip::MIN_LEN {
            return Err(IpError::BadHeaderLen);
        }
        // A header longer than the packet fails here too (Click's order
        // and reasons): the total length cannot both cover the header and
        // stay inside the packet.
        let total = usize::from(be16(b, ip::LEN));
        if total < hl || total > b.len() {
            return Err(IpError::BadLength);
        }
        Ok(Ipv4 { b })
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.b[0] & 0xf) * 4
    }
    pub fn tos(&self) -> u8 {
        self.b[ip::TOS]
    }
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.b, ip::LEN))
    }
    pub fn id(&self) -> u16 {
        be16(self.b, ip::ID)
    }
    /// The flags-and-offset field.
    pub fn frag(&self) -> u16 {
        be16(self.b, ip::FRAG)
    }
    /// True for any fragment (MF set or a nonzero offset).
    pub fn is_fragment(&self) -> bool {
        self.frag() & (ip::MF | ip::OFFMASK) != 0
    }
    /// True for a fragment other than the first.
    pub fn is_later_fragment(&self) -> bool {
        self.frag() & ip::OFFMASK != 0
    }
    pub fn ttl(&self) -> u8 {
        self.b[ip::TTL]
    }
    pub fn proto(&self) -> u8 {
        self.b[ip::PROTO]
    }
    pub fn src(&self) -> u32 {
        be32(self.b, ip::SRC)
    }
    pub fn dst(&self) -> u32 {
        be32(self.b, ip::DST)
    }
    /// The header with its options.
    pub fn header(&self) -> &'a [u8] {
        &self.b[..self.header_len()]
    }
    /// The payload up to the total length (padding after it excluded).
    pub fn payload(&self) -> &'a [u8] {
        &self.b[self.header_len()..self.total_len()]
    }
    /// True if the header checksum verifies.
    #[inline]
    pub fn checksum_ok(&self) -> bool {
        match self.b.first_chunk::<20>() {
            // Most headers have no options: five words, unrolled.
            Some(h) if self.header_len() == 20 => {
                let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
                fold(w(0) + w(4) + w(8) + w(12) + w(16)) == 0xffff
            }
            _ => checksum(self.header()) == 0,
        }
    }
}

/// Where a packet's IP header starts in its data: at the network header
/// annotation when one is marked, else at the data start (as Click's
/// elements that expect an IP packet read it).
#[inline]
pub fn ip_offset(p: &switchyard_core::Packet) -> usize {
    p.network_offset().unwrap_or(0)
}

/// Recomputes the header checksum of the IPv4 header at the start of
/// `h` (whose header length the caller has checked).
pub fn set_ip_checksum(h: &mut [u8]) {
    let hl = usize::from(h[0] & 0xf) * 4;
    put16(h, ip::SUM, 0);
    let c = checksum(&h[..hl]);
    put16(h, ip::SUM, c);
}

/// An IPv4 address in host order, as element arguments write it
/// (`10.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpAddr(pub u32);

impl FromArg for IpAddr {
    const EXPECTED: &'static str = "an IP address";
    fn from_arg(text: &str) -> Option<Self> {
        parse_ip(text).map(IpAddr)
    }
}

impl std::fmt::Display for IpAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.0.to_be_bytes();
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// Parses a dotted quad (`10.0.0.1`). Click also accepts fewer parts
/// for a prefix (`10.0/16`); [`IpPrefix`] handles that.
pub fn parse_ip(s: &str) -> Option<u32> {
    let mut parts = s.split('.');
    let mut v = 0u32;
    for _ in 0..4 {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        v = (v << 8) | p.parse::<u8>().ok()? as u32;
    }
    parts.next().is_none().then_some(v)
}

/// The mask of a prefix length (0 to 32).
pub fn prefix_mask(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    }
}

/// The prefix length of a contiguous mask, or None.
pub fn mask_len(mask: u32) -> Option<u32> {
    let len = mask.leading_ones();
    (prefix_mask(len) == mask).then_some(len)
}

/// An address with a mask: `10.0.0.0/8`, `10.0.0.0/255.0.0.0`, or a bare
/// address (a /32), as Click's IPPrefix arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub addr: u32,
    pub mask: u32,
}

impl IpPrefix {
    pub fn matches(&self, a: u32) -> bool {
        a & self.mask == self.addr & self.mask
    }
    pub fn len(&self) -> u32 {
        self.mask.leading_ones()
    }
    pub fn is_empty(&self) -> bool {
        self.mask == 0
    }

    /// Parses `ADDR/LEN`, `ADDR/MASK` or `ADDR`; when a length or mask
    /// follows, the address part may have fewer than four parts (`10/8`,
    /// `192.168/16`), as Click allows.
    pub fn parse(s: &str) -> Option<IpPrefix> {
        let (a, m) = match s.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (s, None),
        };
        let addr = match parse_ip(a) {
            Some(v) => v,
            None if m.is_some() => {
                // Short forms: `10/8`, `10.1/16`.
                let parts: Vec<&str> = a.split('.').collect();
                if parts.is_empty() || parts.len() > 3 {
                    return None;
                }
                let mut v = 0u32;
                for (i, p) in parts.iter().enumerate() {
                    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                        return None;
                    }
                    v |= (p.parse::<u8>().ok()? as u32) << (24 - 8 * i);
                }
                v
            }
            None => return None,
        };
        let mask = match m {
            None => u32::MAX,
            Some(m) if m.contains('.') => {
                let mask = parse_ip(m)?;
                mask_len(mask)?;
                mask
            }
            Some(m) => {
                if m.is_empty() || m.len() > 2 || !m.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                let len: u32 = m.parse().ok()?;
                if len > 32 {
                    return None;
                }
                prefix_mask(len)
            }
        };
        Some(IpPrefix { addr, mask })
    }
}

impl FromArg for IpPrefix {
    const EXPECTED: &'static str = "an IP prefix (ADDR/LEN or ADDR/MASK)";
    fn from_arg(text: &str) -> Option<Self> {
        IpPrefix::parse(text)
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", IpAddr(self.addr), self.len())
    }
}

/// An Ethernet address, `00:11:22:33:44:55` or `00-11-22-33-44-55`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EtherAddr(pub [u8; 6]);

impl EtherAddr {
    pub const BROADCAST: EtherAddr = EtherAddr([0xff; 6]);

    pub fn parse(s: &str) -> Option<EtherAddr> {
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for o in &mut out {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 2 {
                return None;
            }
            *o = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(EtherAddr(out))
    }

    pub fn is_group(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Click's form in handler values (`EtherAddress::unparse`): upper-case
    /// hex separated by dashes, `00-1A-2B-3C-4D-5E`.
    pub fn unparse(&self) -> String {
        let b = self.0;
        format!(
            "{:02X}-{:02X}-{:02X}-{:02X}-{:02X}-{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromArg for EtherAddr {
    const EXPECTED: &'static str = "an Ethernet address";
    fn from_arg(text: &str) -> Option<Self> {
        EtherAddr::parse(text)
    }
}

impl std::fmt::Display for EtherAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An Ethernet header: destination, source, type (host order). Built once
/// and stored with one fixed-size copy per packet.
pub fn ether_header(dst: EtherAddr, src: EtherAddr, ethertype: u16) -> [u8; ETHER_HEADER_LEN] {
    let mut h = [0u8; ETHER_HEADER_LEN];
    h[..6].copy_from_slice(&dst.0);
    h[6..12].copy_from_slice(&src.0);
    h[12..].copy_from_slice(&ethertype.to_be_bytes());
    h
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A valid 20-byte IPv4 header with a correct checksum, followed by
    /// `payload` bytes of zeros: the fixture elements' tests start from.
    pub fn ipv4_packet(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, payload: usize) -> Vec<u8> {
        let total = 20 + payload;
        let mut h = vec![0u8; total];
        h[0] = 0x45;
        put16(&mut h, ip::LEN, total as u16);
        put16(&mut h, ip::ID, 0x1c46);
        put16(&mut h, ip::FRAG, ip::DF);
        h[ip::TTL] = ttl;
        h[ip::PROTO] = proto;
        h[ip::SRC..ip::SRC + 4].copy_from_slice(&src);
        h[ip::DST..ip::DST + 4].copy_from_slice(&dst);
        set_ip_checksum(&mut h);
        h
    }

    #[test]
    fn folding_matches_the_loop_at_the_edges() {
        let slow = |mut s: u64| {
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s as u16
        };
        for s in [
            0u64,
            1,
            0xffff,
            0x10000,
            0x1ffff,
            0x1fffe,
            0xffff_ffff,
            0xfffe_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            assert_eq!(fold(s), slow(s), "{s:#x}");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(fold(x >> 32), slow(x >> 32));
            assert_eq!(fold(x >> 20), slow(x >> 20));
        }
    }

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d, 0)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        // Odd length: the last byte is padded.
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn known_header_checksum() {
        // A classic example header (Wikipedia's IPv4 checksum example).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        let mut full = h.to_vec();
        full.resize(0x73, 0);
        put16(&mut full, ip::SUM, 0xb861);
        assert!(Ipv4::new_checked(&full).unwrap().checksum_ok());
    }

    #[test]
    fn rfc1624_incremental_matches_recomputation_and_avoids_minus_zero() {
        // RFC 1624 section 4: the other header words sum to 0xcd7a, and
        // a 0x5555 word becomes 0x3285. The old checksum is
        // ~(0xcd7a + 0x5555) = 0xdd2f; RFC 1141's update gave 0xffff,
        // equation 3 gives the correct 0x0000.
        assert_eq!(fold(0xcd7a + 0x5555), 0x22d0);
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), checksum(&[0xcd, 0x7a, 0x32, 0x85]));
        let mut h = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 64, 0);
        let before = be16(&h, ip::SUM);
        let old = be16(&h, ip::TTL);
        h[ip::TTL] -= 1;
        let new = be16(&h, ip::TTL);
        let inc = update16(before, old, new);
        set_ip_checksum(&mut h);
        assert_eq!(inc, be16(&h, ip::SUM));
        let mut h2 = h.clone();
        let c = update32(be16(&h2, ip::SUM), be32(&h2, ip::SRC), 0xc0a80101);
        put32(&mut h2, ip::SRC, 0xc0a80101);
        put16(&mut h2, ip::SUM, c);
        assert!(Ipv4::new_checked(&h2).unwrap().checksum_ok());
    }

    #[test]
    fn checked_view_refuses_malformed_headers() {
        let good = ipv4_packet([1, 2, 3, 4], [5, 6, 7, 8], 6, 64, 8);
        assert!(Ipv4::new_checked(&good).is_ok());
        assert_eq!(Ipv4::new_checked(&good[..19]).err(), Some(IpError::TooShort));
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(Ipv4::new_checked(&v6).err(), Some(IpError::BadVersion));
        let mut ihl = good.clone();
        ihl[0] = 0x44;
        assert_eq!(Ipv4::new_checked(&ihl).err(), Some(IpError::BadHeaderLen));
        let mut opts = good.clone();
        opts[0] = 0x4f; // 60-byte header in a 28-byte packet
        assert_eq!(Ipv4::new_checked(&opts).err(), Some(IpError::BadLength));
        let mut long = good.clone();
        put16(&mut long, ip::LEN, 1000);
        assert_eq!(Ipv4::new_checked(&long).err(), Some(IpError::BadLength));
        let mut short = good;
        put16(&mut short, ip::LEN, 19);
        assert_eq!(Ipv4::new_checked(&short).err(), Some(IpError::BadLength));
    }

    #[test]
    fn header_length_check_needs_version_4_and_the_whole_header() {
        let mut h = ipv4_packet([1, 2, 3, 4], [5, 6, 7, 8], 6, 64, 8);
        assert_eq!(checked_header_len(&h), Some(20));
        assert_eq!(checked_header_len(&h[..19]), None);
        assert_eq!(checked_header_len(&[]), None);
        h[0] = 0x47;
        assert_eq!(checked_header_len(&h), Some(28));
        assert_eq!(checked_header_len(&h[..27]), None);
        h[0] = 0x44;
        assert_eq!(checked_header_len(&h), None);
        h[0] = 0x65;
        assert_eq!(checked_header_len(&h), None);
    }

    #[test]
    fn reasons_and_protocols_have_clicks_names() {
        let labels: Vec<&str> = IpError::ALL.iter().map(|e| e.label()).collect();
        assert_eq!(labels[0], "tiny packet");
        assert_eq!(labels[5], "bad source address");
        for (i, e) in IpError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        assert_eq!(ip_proto_name(6), Some("tcp"));
        assert_eq!(ip_proto_name(132), Some("sctp"));
        assert_eq!(ip_proto_name(99), None);
        assert!(IP_PROTOS.windows(2).all(|w| w[0].0 < w[1].0), "sorted by name");
    }

    #[test]
    fn address_syntax() {
        assert_eq!(parse_ip("10.0.0.1"), Some(0x0a000001));
        assert_eq!(parse_ip("10.0.0"), None);
        assert_eq!(parse_ip("256.0.0.1"), None);
        assert_eq!(parse_ip("1.2.3.4.5"), None);
        let p = IpPrefix::parse("10.1.0.0/16").unwrap();
        assert_eq!((p.addr, p.mask), (0x0a010000, 0xffff0000));
        assert_eq!(IpPrefix::parse("10.1.0.0/255.255.0.0"), Some(p));
        assert_eq!(IpPrefix::parse("10.1/16"), Some(p));
        assert!(IpPrefix::parse("10.0.0.0/255.0.255.0").is_none());
        assert!(IpPrefix::parse("10.0.0.0/33").is_none());
        assert_eq!(IpPrefix::parse("1.2.3.4").unwrap().len(), 32);
        assert_eq!(IpPrefix::parse("0.0.0.0/0").unwrap().mask, 0);
        assert_eq!(p.to_string(), "10.1.0.0/16");
        let m = EtherAddr::parse("00:1a:2B:3c:4d:5e").unwrap();
        assert_eq!(m.to_string(), "00:1a:2b:3c:4d:5e");
        assert_eq!(EtherAddr::parse("00-1a-2b-3c-4d-5e"), Some(m));
        assert!(EtherAddr::parse("00:1a:2b:3c:4d").is_none());
        assert!(EtherAddr::parse("00:1a:2b:3c:4d:5e:6f").is_none());
    }
}
