use switchyard_core::{documented, Args, Batch, Element, ElementClass};

documented! {
    /// Stamps each packet's `flow_hash` annotation from its headers (the
    /// IPv4/IPv6 5-tuple, else the MAC pair), so that elements further on
    /// (CanarySwitch) key flows by what the packet was when it arrived,
    /// even after a branch rewrote addresses or ports. Put it before the
    /// hub.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0) -> FlowHash -> hub :: Tee(2);
    /// ```
    pub struct FlowHash;
}

impl FlowHash {
    pub const CLASS: ElementClass = ElementClass {
        name: "FlowHash",
        ports: "1/1",
        processing: "a/a",
        doc: FlowHash::DOC,
        factory: FlowHash::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(FlowHash))
    }
}

impl Element for FlowHash {
    fn simple_action(&mut self, batch: &mut Batch) {
        for p in batch.packets_mut() {
            // Folded to 32 bits; 0 means "not stamped", so never 0.
            let h = flow_hash(p.data());
            p.anno.flow_hash = ((h ^ (h >> 32)) as u32).max(1);
        }
    }
}

/// A 64-bit mix (splitmix64's finaliser).
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `bytes` as little-endian 64-bit words, the last one padded with
/// zeros: what a word-at-a-time hash consumes.
pub fn words(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks(8).map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    })
}

fn fold(h: u64, bytes: &[u8]) -> u64 {
    words(bytes).fold(h, |h, w| mix(h ^ w))
}

/// The flow key of a frame: the IPv4 or IPv6 5-tuple (one VLAN tag
/// skipped), else the MAC pair, else the length. Never panics on short
/// or odd frames. CanarySwitch keys flows by it.
pub fn flow_hash(f: &[u8]) -> u64 {
    let mut off = 12;
    let mut ethertype = f.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if ethertype == Some(0x8100) {
        off = 16;
        ethertype = f.get(16..18).map(|b| u16::from_be_bytes([b[0], b[1]]));
    }
    let l3 = off + 2;
    let ports = |at: usize, proto: u8| -> u64 {
        match (proto, f.get(at..at + 4)) {
            (6 | 17 | 132, Some(p)) => u64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            _ => 0,
        }
    };
    match ethertype {
        Some(0x0800) if f.len() >= l3 + 20 => {
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            let proto = f[l3 + 9];
            let fragment = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]) & 0x1fff != 0;
            let p = if fragment || ihl < 20 {
                0
            } else {
                ports(l3 + ihl, proto)
            };
            mix(fold(0x4, &f[l3 + 12..l3 + 20]) ^ (u64::from(proto) << 32) ^ p)
        }
        Some(0x86dd) if f.len() >= l3 + 40 => {
            let proto = f[l3 + 6];
            mix(fold(0x6, &f[l3 + 8..l3 + 40]) ^ (u64::from(proto) << 32) ^ ports(l3 + 40, proto))
        }
        _ if f.len() >= 12 => fold(0xe, &f[..12]),
        _ => mix(f.len() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_frames_never_panic() {
        for len in 0..80 {
            let f = vec![0x86; len];
            let _ = flow_hash(&f);
            let mut v = crate::default_frame(64);
            v.truncate(len);
            let _ = flow_hash(&v);
        }
    }

    #[test]
    fn words_pad_the_last_one_with_zeros() {
        let w: Vec<u64> = words(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).collect();
        assert_eq!(w, [0x0807_0605_0403_0201, 9]);
        assert_eq!(words(&[]).count(), 0);
    }
}
