//! The receive ring's offload parser on arbitrary bytes: a virtio-net
//! header (VnetHdr::parse) and the frame after it, as a packet socket
//! hands them over. Never a panic; a checksum completion that is refused
//! leaves the frame as it was; a super-frame that is accepted becomes a
//! bounded number of segments, none longer than the frame, each with IP
//! and transport checksums that verify by full recomputation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard_core::checksum::{fold, sum};
use switchyard_io::offload::{complete_checksum, Segmenter, VnetHdr, VNET_HDR_LEN};

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// For an untagged IPv4 or IPv6 segment: its checksums verify.
fn verifies(seg: &[u8]) -> bool {
    let ip = &seg[14..];
    let (addrs, proto, l4) = match be16(seg, 12) {
        0x0800 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if fold(sum(&ip[..ihl], 0)) != 0xffff {
                return false;
            }
            (&ip[12..20], ip[9], &ip[ihl..be16(ip, 2)])
        }
        0x86dd => (&ip[8..40], ip[6], &ip[40..40 + be16(ip, 4)]),
        _ => return true,
    };
    let pseudo = sum(addrs, l4.len() as u64 + u64::from(proto));
    fold(sum(l4, pseudo)) == 0xffff
}

fuzz_target!(|data: &[u8]| {
    let Some(hdr) = VnetHdr::parse(data) else {
        return;
    };
    let frame = &data[VNET_HDR_LEN..];
    let mut copy = frame.to_vec();
    if !complete_checksum(&mut copy, usize::from(hdr.csum_start), usize::from(hdr.csum_offset)) {
        assert_eq!(copy, frame, "a refused completion changed the frame");
    }
    let Ok(s) = Segmenter::new(frame, &hdr) else {
        return;
    };
    // Segments carry at least 48 bytes of payload each but the last.
    assert!(
        s.count() >= 1 && s.count() <= frame.len() / 48 + 1,
        "{} segments",
        s.count()
    );
    for i in 0..s.count() {
        let p = s.packet(i);
        assert_eq!(p.len(), s.segment_len(i));
        assert!(p.len() <= frame.len(), "segment {i} longer than the frame");
        assert!(
            verifies(p.data()),
            "segment {i} of {}: checksums do not verify",
            s.count()
        );
    }
});
