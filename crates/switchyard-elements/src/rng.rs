//! A small fast pseudo-random generator shared by the elements that need
//! one per packet (RandomSwitch, port choice in NAT patterns, IP ids).
//!
//! xorshift64* (Vigna, "An experimental exploration of Marsaglia's
//! xorshift generators, scrambled", 2016): one shift-xor round and one
//! multiplication per number; the high 32 bits of its output pass
//! BigCrush. Fine for spreading load or choosing among free ports; not
//! for anything an adversary must not predict.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Default for Rng {
    fn default() -> Rng {
        Rng::new()
    }
}

impl Rng {
    /// A generator seeded differently on each call and in each process,
    /// without a clock read: std's `RandomState` keys come from the OS
    /// once per thread, and a process-wide counter tells apart the
    /// generators made in one thread.
    pub fn new() -> Rng {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let n = MADE.fetch_add(1, Relaxed);
        Rng::seeded(std::collections::hash_map::RandomState::new().hash_one(n))
    }

    /// A generator that always gives the same sequence for `seed` (tests).
    pub fn seeded(seed: u64) -> Rng {
        // splitmix64 spreads a small or regular seed over all 64 bits; the
        // state must not be zero.
        Rng(crate::standard::flow_hash::mix(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The high half, the better one.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A number below `n` (0 when `n` is 0), by multiply-shift (Lemire),
    /// which takes the high bits: the bias is below n / 2^64, far under
    /// anything a switch or a port choice could show.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_sequence_and_the_state_is_never_zero() {
        let (mut a, mut b) = (Rng::seeded(7), Rng::seeded(7));
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xa, xb);
        // The one seed splitmix64 maps to zero still gives a live state.
        let mut z = Rng::seeded(0x61c8_8646_80b5_83eb);
        assert!((0..4).any(|_| z.next_u64() != 0));
        assert_ne!(Rng::seeded(1).next_u64(), Rng::seeded(2).next_u64());
    }

    #[test]
    fn generators_made_in_one_process_differ() {
        let xs: Vec<u64> = (0..64).map(|_| Rng::new().next_u64()).collect();
        let mut unique = xs.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), xs.len());
        let elsewhere = std::thread::spawn(|| Rng::new().next_u64()).join().unwrap();
        assert!(!xs.contains(&elsewhere));
    }

    #[test]
    fn below_stays_in_range_and_is_uniform() {
        let mut r = Rng::seeded(11);
        assert_eq!(r.below(0), 0);
        assert!((0..1000).all(|_| r.below(1) == 0));
        let span = 1u64 << 32;
        assert!((0..1000).all(|_| r.below(span) < span));
        assert!((0..1000).all(|_| r.below(u64::MAX) < u64::MAX));
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        // Chi-square with 6 degrees of freedom: 22.5 is the 0.999 quantile.
        let chi2: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - 10_000.0).powi(2) / 10_000.0)
            .sum();
        assert!(chi2 < 22.5, "{counts:?}");
    }
}
