//! The Internet checksum (RFC 1071) and its incremental update (RFC
//! 1624): one copy for every crate that writes headers (the elements'
//! rewrites, the I/O layer's checksum completion and segmentation).

/// The ones-complement sum of `data` as 16-bit big-endian words (an odd
/// last byte is padded with zero), added to `initial`, not yet folded.
#[inline]
pub fn sum(data: &[u8], initial: u64) -> u64 {
    // 32-bit words into a 64-bit accumulator: no carry is lost for any
    // packet shorter than 2^34 bytes, and folding at the end gives the
    // same ones-complement sum as 16-bit words (RFC 1071, section 2(B)).
    let mut acc = initial;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    // The tail by hand: a copy of a variable-length slice is a call to
    // memmove, which showed up in the forwarding path's profile.
    match *chunks.remainder() {
        [] => acc,
        [a] => acc + (u64::from(a) << 24),
        [a, b] => acc + (u64::from(a) << 24) + (u64::from(b) << 16),
        [a, b, c, ..] => acc + (u64::from(a) << 24) + (u64::from(b) << 16) + (u64::from(c) << 8),
    }
}

/// Folds a sum to 16 bits with end-around carry.
#[inline]
pub fn fold(mut s: u64) -> u16 {
    if s >> 32 == 0 {
        return fold32(s as u32);
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// [`fold`] for a sum below 2^32 (a header's, an incremental update's):
/// three steps without a branch. After the first the value is below
/// 2^17, after the second at most 0x10000, after the third 16 bits.
#[inline(always)]
fn fold32(s: u32) -> u16 {
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The Internet checksum of `data` (RFC 1071): the value to store in a
/// header whose checksum field is zero, or 0 when verifying a header
/// that holds a correct checksum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Updates checksum `check` for a 16-bit field changing from `old` to
/// `new`: RFC 1624, equation 3, `HC' = ~(~HC + ~m + m')`, which never
/// produces the -0 that equation 2 can.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!check) + u64::from(!old) + u64::from(new))
}

/// [`update16`] for a 32-bit field (an address), as two words.
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let s = u64::from(!check)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !fold(s)
}
