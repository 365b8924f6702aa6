//! Flow identifiers, the keys of the mapping tables, their hash, and the
//! checksum arithmetic a rewrite needs.
//!
//! A rewrite changes the two addresses and the two ports of a packet. The
//! ones-complement difference those changes make to a checksum is the
//! same for every packet of a mapping, so it is computed once, when the
//! mapping is made (RFC 1624), and each packet's checksums are adjusted
//! by one addition: by the difference going forward, by its complement
//! coming back.

use crate::wire::{fold, IpAddr};
use std::hash::{BuildHasher, Hash, Hasher};

/// A TCP or UDP flow as one direction of it appears on the wire: source
/// address and port, destination address and port, host order (Click's
/// `IPFlowID`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
}

impl FlowId {
    pub fn new(saddr: u32, sport: u16, daddr: u32, dport: u16) -> FlowId {
        FlowId {
            saddr,
            daddr,
            sport,
            dport,
        }
    }

    /// The other direction of the same flow.
    pub fn reverse(self) -> FlowId {
        FlowId {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

impl std::fmt::Display for FlowId {
    /// Click's form: `(10.0.0.2, 5000, 8.8.8.8, 53)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}, {}, {}, {})",
            IpAddr(self.saddr),
            self.sport,
            IpAddr(self.daddr),
            self.dport
        )
    }
}

/// A key of a mapping table: the flow as the packet carries it, and which
/// of the element's tables it belongs to (IPRewriter keeps TCP and UDP
/// apart; UDPRewriter keeps both in one, as Click does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub map: u8,
    pub flow: FlowId,
}

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        let f = &self.flow;
        h.write_u64(u64::from(f.saddr) << 32 | u64::from(f.daddr));
        h.write_u64(u64::from(f.sport) << 32 | u64::from(f.dport) << 16 | u64::from(self.map));
    }
}

/// A keyed hash for flow keys: two folded multiplications per key, with
/// per-table random keys, so that the inside hosts that choose the keys
/// cannot predict collisions. Cheaper per packet than SipHash.
#[derive(Clone)]
pub struct FlowHashState {
    k0: u64,
    k1: u64,
}

impl FlowHashState {
    pub fn random() -> FlowHashState {
        let seed = std::collections::hash_map::RandomState::new();
        FlowHashState {
            k0: seed.hash_one(0x006e_6174_u64),
            k1: seed.hash_one(0x0072_7277_u64) | 1,
        }
    }
}

impl BuildHasher for FlowHashState {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher { h: self.k0, k: self.k1 }
    }
}

pub struct FlowHasher {
    h: u64,
    k: u64,
}

#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

const MULTIPLE: u64 = 0x5851_f42d_4c95_7f2d;

impl Hasher for FlowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for w in crate::standard::flow_hash::words(bytes) {
            self.write_u64(w);
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.h = folded_mul(self.h ^ x, MULTIPLE);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_mul(self.h, self.k).rotate_left((self.k & 63) as u32)
    }
}

/// The ones-complement checksum differences a rewrite from `old` to `new`
/// makes: to the IP header checksum (the addresses) and to a TCP or UDP
/// checksum (the addresses in the pseudo-header, and the ports).
pub fn deltas(old: FlowId, new: FlowId) -> (u16, u16) {
    let words = |a: u32| [(a >> 16) as u16, a as u16];
    let mut s = 0u64;
    for (o, n) in words(old.saddr)
        .into_iter()
        .chain(words(old.daddr))
        .zip(words(new.saddr).into_iter().chain(words(new.daddr)))
    {
        s += u64::from(!o) + u64::from(n);
    }
    let ip = fold(s);
    let l4 = fold(
        u64::from(ip) + u64::from(!old.sport) + u64::from(new.sport) + u64::from(!old.dport) + u64::from(new.dport),
    );
    (ip, l4)
}

/// Applies a difference from [`deltas`] (or its complement, for the
/// other direction) to a checksum: RFC 1624's equation 3 with the sum of
/// all changed words at once.
#[inline]
pub fn apply_delta(check: u16, delta: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(delta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{update16, update32};

    #[test]
    fn deltas_match_word_by_word_updates_both_ways() {
        let old = FlowId::new(0x0a00_0002, 5000, 0x0808_0808, 53);
        let new = FlowId::new(0xc633_6401, 1024, 0x0808_0808, 53);
        let (ip, l4) = deltas(old, new);
        for check in [0u16, 1, 0x1234, 0xfffe, 0x8000] {
            let by_words = update32(update32(check, old.saddr, new.saddr), old.daddr, new.daddr);
            assert_eq!(apply_delta(check, ip), by_words);
            let by_words = update16(update16(by_words, old.sport, new.sport), old.dport, new.dport);
            assert_eq!(apply_delta(check, l4), by_words);
            // The complement undoes it.
            assert_eq!(apply_delta(apply_delta(check, l4), !l4), apply_delta(check, 0));
        }
    }

    #[test]
    fn keys_hash_by_every_field() {
        let s = FlowHashState::random();
        let k = Key {
            map: 0,
            flow: FlowId::new(1, 2, 3, 4),
        };
        let mut other = k;
        other.map = 1;
        assert_ne!(s.hash_one(k), s.hash_one(other));
        assert_ne!(s.hash_one([1u8; 9]), s.hash_one([1u8, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert_eq!(k.flow.reverse().reverse(), k.flow);
        assert_eq!(k.flow.to_string(), "(0.0.0.1, 2, 0.0.0.3, 4)");
    }
}
