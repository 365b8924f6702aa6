//! ARP for IPv4 over Ethernet (RFC 826), shared by ARPResponder and
//! ARPQuerier: a checked parse of an Ethernet frame that carries an ARP
//! packet ([`Arp::parse`]) and the frames both elements build
//! ([`Arp::emit`]).
//!
//! Only the one ARP flavour IP routers speak is accepted: hardware type
//! Ethernet (1) with 6-byte addresses, protocol IPv4 (0x0800) with 4-byte
//! addresses. Any other frame is refused before a field is read, so a
//! short or odd frame can never be read past.

use crate::wire::{be16, be32, ether_header, put16, put32, EtherAddr, ETHERTYPE_ARP, ETHERTYPE_IP, ETHER_HEADER_LEN};
use switchyard_core::Packet;

/// Length of an IPv4-over-Ethernet ARP packet.
pub const ARP_LEN: usize = 28;
/// An Ethernet header and an ARP packet (before any padding to 60 bytes).
pub const FRAME_LEN: usize = ETHER_HEADER_LEN + ARP_LEN;
pub const HRD_ETHER: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// Byte offsets in the frame, Ethernet header included.
mod off {
    pub const ETH_TYPE: usize = 12;
    pub const HRD: usize = 14;
    pub const PRO: usize = 16;
    pub const HLN: usize = 18;
    pub const PLN: usize = 19;
    pub const OP: usize = 20;
    pub const SHA: usize = 22;
    pub const SPA: usize = 28;
    pub const THA: usize = 32;
    pub const TPA: usize = 38;
}

/// Why a frame is not a usable ARP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpError {
    /// Shorter than an Ethernet header plus 28 bytes of ARP.
    TooShort,
    /// The Ethernet type is not ARP (0x0806).
    NotArp,
    /// Not Ethernet/IPv4 ARP: another hardware or protocol type, or
    /// address lengths other than 6 and 4.
    BadFormat,
}

/// The meaning of an Ethernet/IPv4 ARP packet (addresses in host order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    /// Sender hardware and protocol address.
    pub sha: EtherAddr,
    pub spa: u32,
    /// Target hardware and protocol address.
    pub tha: EtherAddr,
    pub tpa: u32,
}

fn ether_at(b: &[u8], at: usize) -> EtherAddr {
    let mut a = [0u8; 6];
    a.copy_from_slice(&b[at..at + 6]);
    EtherAddr(a)
}

impl Arp {
    /// Parses the ARP packet of an Ethernet frame; trailing padding is
    /// ignored.
    pub fn parse(frame: &[u8]) -> Result<Arp, ArpError> {
        if frame.len() < FRAME_LEN {
            return Err(ArpError::TooShort);
        }
        if be16(frame, off::ETH_TYPE) != ETHERTYPE_ARP {
            return Err(ArpError::NotArp);
        }
        if be16(frame, off::HRD) != HRD_ETHER
            || be16(frame, off::PRO) != ETHERTYPE_IP
            || frame[off::HLN] != 6
            || frame[off::PLN] != 4
        {
            return Err(ArpError::BadFormat);
        }
        Ok(Arp {
            op: be16(frame, off::OP),
            sha: ether_at(frame, off::SHA),
            spa: be32(frame, off::SPA),
            tha: ether_at(frame, off::THA),
            tpa: be32(frame, off::TPA),
        })
    }

    /// Writes the frame (Ethernet header from `eth_src` to `eth_dst`, then
    /// this ARP packet) into the first [`FRAME_LEN`] bytes of `b`.
    pub fn emit(&self, eth_dst: EtherAddr, eth_src: EtherAddr, b: &mut [u8]) {
        let b = &mut b[..FRAME_LEN];
        b[..ETHER_HEADER_LEN].copy_from_slice(&ether_header(eth_dst, eth_src, ETHERTYPE_ARP));
        put16(b, off::HRD, HRD_ETHER);
        put16(b, off::PRO, ETHERTYPE_IP);
        b[off::HLN] = 6;
        b[off::PLN] = 4;
        put16(b, off::OP, self.op);
        b[off::SHA..off::SHA + 6].copy_from_slice(&self.sha.0);
        put32(b, off::SPA, self.spa);
        b[off::THA..off::THA + 6].copy_from_slice(&self.tha.0);
        put32(b, off::TPA, self.tpa);
    }

    /// A new 42-byte packet holding the frame (the device pads it).
    pub fn packet(&self, eth_dst: EtherAddr, eth_src: EtherAddr) -> Packet {
        let mut p = Packet::with_len(FRAME_LEN);
        self.emit(eth_dst, eth_src, p.data_mut());
        p
    }

    /// A request from `sha`/`spa` for `tpa`.
    pub fn request(sha: EtherAddr, spa: u32, tpa: u32) -> Arp {
        Arp {
            op: OP_REQUEST,
            sha,
            spa,
            tha: EtherAddr::default(),
            tpa,
        }
    }
}

/// True for addresses no neighbour can own: 0.0.0.0, the limited
/// broadcast, and multicast (224/4) and class E (240/4) addresses.
pub fn is_special_ip(a: u32) -> bool {
    a == 0 || a >> 28 >= 0xe
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A real who-has frame as Linux sends it: 02:00:00:00:00:02 at
    /// 10.0.0.2 asks for 10.0.0.1, padded to 60 bytes.
    pub const REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x02, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    /// Builds an ARP frame by hand, for tests of both elements.
    pub fn frame(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], eth_dst: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&eth_dst);
        f.extend_from_slice(&sha);
        f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&sha);
        f.extend_from_slice(&spa);
        f.extend_from_slice(&tha);
        f.extend_from_slice(&tpa);
        f
    }

    #[test]
    fn parses_a_real_request() {
        let a = Arp::parse(&REQUEST).unwrap();
        assert_eq!(a.op, OP_REQUEST);
        assert_eq!(a.sha, EtherAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(a.spa, 0x0a000002);
        assert_eq!(a.tha, EtherAddr::default());
        assert_eq!(a.tpa, 0x0a000001);
        // The padding is not part of the ARP packet.
        assert_eq!(Arp::parse(&REQUEST[..FRAME_LEN]), Ok(a));
    }

    #[test]
    fn emit_writes_what_parse_reads() {
        let a = Arp::parse(&REQUEST).unwrap();
        let mut b = [0u8; FRAME_LEN];
        a.emit(EtherAddr::BROADCAST, a.sha, &mut b);
        assert_eq!(b[..], REQUEST[..FRAME_LEN]);
        let p = Arp::request(a.sha, a.spa, a.tpa).packet(EtherAddr::BROADCAST, a.sha);
        assert_eq!(p.data(), &REQUEST[..FRAME_LEN]);
    }

    #[test]
    fn refuses_frames_that_are_not_ethernet_ipv4_arp() {
        for n in 0..FRAME_LEN {
            assert_eq!(Arp::parse(&REQUEST[..n]), Err(ArpError::TooShort), "{n} bytes");
        }
        let with = |at: usize, v: u8| {
            let mut f = REQUEST;
            f[at] = v;
            Arp::parse(&f)
        };
        assert_eq!(with(13, 0x00), Err(ArpError::NotArp)); // 0x0800: IPv4
        assert_eq!(with(15, 0x06), Err(ArpError::BadFormat)); // IEEE 802 hardware
        assert_eq!(with(16, 0x86), Err(ArpError::BadFormat)); // protocol 0x86dd
        assert_eq!(with(18, 8), Err(ArpError::BadFormat)); // hardware length
        assert_eq!(with(19, 16), Err(ArpError::BadFormat)); // protocol length
    }

    #[test]
    fn addresses_in_clicks_form() {
        assert_eq!(
            EtherAddr([0, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]).unparse(),
            "00-1A-2B-3C-4D-5E"
        );
        assert!(is_special_ip(0) && is_special_ip(u32::MAX) && is_special_ip(0xe0000001));
        assert!(!is_special_ip(0x0a000001) && !is_special_ip(0xdfffffff));
    }
}
