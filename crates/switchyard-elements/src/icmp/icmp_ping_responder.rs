//! ICMPPingResponder: turns ICMP echo requests into echo replies in place
//! (addresses swapped, fresh TTL, checksums updated incrementally); every
//! other packet leaves by output 1, or is dropped without one.

use super::icmp_error::{ICMP_ECHO, ICMP_ECHO_REPLY, ICMP_HEADER_LEN};
use crate::util::{self, Verdict};
use crate::wire::{self, be16, be32, ip, put16, put32, Ipv4, IP_PROTO_ICMP};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::packet::now_ns;
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, Packet};

documented! {
    /// Answers ICMP echo requests (Click's ICMPPingResponder).
    ///
    /// Each ICMP echo request becomes its echo reply, emitted on output 0:
    /// source and destination are swapped, the fragment field is cleared,
    /// the TTL becomes 255, the type becomes echo reply (code 0), and both
    /// checksums are updated incrementally (RFC 1624; an ICMP checksum
    /// that would come out as -0 is written as +0xffff). The reply's
    /// destination IP annotation is its new destination and its paint is
    /// cleared, so that output 0 can feed the route lookup; its timestamp
    /// is the current time; other annotations are kept. The IP header is
    /// found by the network header annotation (CheckIPHeader sets it), or
    /// at the data start without one.
    ///
    /// Other packets are emitted on output 1 if there are two outputs and
    /// dropped otherwise: IP packets that are not echo requests, and
    /// malformed ones (a bad IP header, or ICMP shorter than 8 bytes), which
    /// are also counted in `malformed`.
    ///
    /// Differences from Click: a fragment of an echo request goes to output
    /// 1 (Click would answer a first fragment with a truncated reply whose
    /// checksum cannot verify). The ICMP message ends at the IP total
    /// length, not at the end of the data. The handlers are Switchyard's.
    ///
    /// # Ports
    /// One input; one or two outputs (output 1 for everything that is not
    /// an echo request, push, in pull mode too). Agnostic.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// - `replies` (read): echo replies made.
    /// - `malformed` (read): packets that were not well-formed IP, or too
    ///   short an ICMP message.
    ///
    /// # Example
    /// ```text
    /// rt[0] -> ping :: ICMPPingResponder -> rt;
    /// ping[1] -> Discard;
    /// ```
    pub struct ICMPPingResponder {
        stats: Arc<Stats>,
    }
}

#[derive(Default)]
struct Stats {
    replies: AtomicU64,
    malformed: AtomicU64,
}

const REPLY_TTL: u8 = 255;

/// Why a packet got no reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NoReply {
    Other,
    Malformed,
}

impl ICMPPingResponder {
    pub const CLASS: ElementClass = ElementClass {
        name: "ICMPPingResponder",
        ports: "1/1-2",
        processing: "a/ah",
        doc: ICMPPingResponder::DOC,
        factory: ICMPPingResponder::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(ICMPPingResponder { stats: Arc::default() }))
    }
}

/// Turns `p` into its echo reply if it is an echo request; `now` gives
/// the reply's timestamp.
fn respond(p: &mut Packet, now: impl FnOnce() -> u64) -> Result<(), NoReply> {
    let off = wire::ip_offset(p);
    let (hl, end) = {
        let Ok(iph) = Ipv4::new_checked(&p.data()[off..]) else {
            return Err(NoReply::Malformed);
        };
        if iph.proto() != IP_PROTO_ICMP || iph.is_fragment() {
            return Err(NoReply::Other);
        }
        let icmp = iph.payload();
        if icmp.len() < ICMP_HEADER_LEN {
            return Err(NoReply::Malformed);
        }
        if icmp[0] != ICMP_ECHO {
            return Err(NoReply::Other);
        }
        (iph.header_len(), iph.total_len())
    };
    let h = &mut p.data_mut()[off..off + end];
    let (src, dst) = (be32(h, ip::SRC), be32(h, ip::DST));
    // Swapping two words leaves the ones-complement sum as it is.
    put32(h, ip::SRC, dst);
    put32(h, ip::DST, src);
    let mut sum = be16(h, ip::SUM);
    sum = wire::update16(sum, be16(h, ip::FRAG), 0);
    put16(h, ip::FRAG, 0);
    let old = be16(h, ip::TTL);
    h[ip::TTL] = REPLY_TTL;
    sum = wire::update16(sum, old, be16(h, ip::TTL));
    put16(h, ip::SUM, sum);

    let icmp = &mut h[hl..];
    let old = be16(icmp, 0);
    icmp[0] = ICMP_ECHO_REPLY;
    icmp[1] = 0;
    let mut c = wire::update16(be16(icmp, 2), old, be16(icmp, 0));
    // Equation 3 never yields 0xffff, yet a message of zeros sums to it:
    // the one case where the incremental result is the wrong zero.
    if c == 0 && icmp[..2].iter().chain(&icmp[4..]).all(|&b| b == 0) {
        c = 0xffff;
    }
    put16(icmp, 2, c);

    p.anno.dst_ip = src;
    p.anno.paint = 0;
    p.anno.timestamp_ns = now();
    Ok(())
}

impl ICMPPingResponder {
    /// Answers what it can in `batch`; returns the other packets when
    /// `refused` says to keep them for output 1.
    fn process(&mut self, batch: &mut Batch, refused: Verdict) -> Option<Batch> {
        let mut replies = 0u64;
        let mut malformed = 0u64;
        // Read once per batch, and only for a batch with a ping in it.
        let mut now = None;
        let others = util::sort_out(batch, |p| match respond(p, || *now.get_or_insert_with(now_ns)) {
            Ok(()) => {
                replies += 1;
                Verdict::Pass
            }
            Err(why) => {
                malformed += u64::from(why == NoReply::Malformed);
                refused
            }
        });
        if replies > 0 {
            self.stats.replies.fetch_add(replies, Relaxed);
        }
        if malformed > 0 {
            self.stats.malformed.fetch_add(malformed, Relaxed);
        }
        others
    }
}

impl Element for ICMPPingResponder {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let others = self.process(&mut batch, Verdict::refused(cx));
        util::push_sorted(cx, batch, others);
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let others = self.process(&mut batch, Verdict::refused(cx));
        util::push_rejects(cx, others);
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        let (a, b) = (self.stats.clone(), self.stats.clone());
        vec![
            Handler::read_only("replies", move || a.replies.load(Relaxed).to_string()),
            Handler::read_only("malformed", move || b.malformed.load(Relaxed).to_string()),
        ]
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<ICMPPingResponder>(old) {
            self.stats = old.stats.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{element, push_through, read};
    use crate::wire::tests::ipv4_packet;
    use crate::wire::IP_PROTO_UDP;
    use proptest::prelude::*;
    use switchyard_core::Annotations;

    /// An echo request from 192.168.1.7 to 10.0.0.1 with id 0x1234, seq 1,
    /// and `data` after the ICMP header.
    fn echo(data: &[u8]) -> Vec<u8> {
        let mut v = ipv4_packet([192, 168, 1, 7], [10, 0, 0, 1], IP_PROTO_ICMP, 64, 8 + data.len());
        v[20] = ICMP_ECHO;
        put16(&mut v, 24, 0x1234);
        put16(&mut v, 26, 1);
        v[28..].copy_from_slice(data);
        let c = wire::checksum(&v[20..]);
        put16(&mut v, 22, c);
        v
    }

    /// A marked packet, painted: replies must clear the paint, others
    /// keep it.
    fn marked(bytes: &[u8]) -> Packet {
        let mut p = crate::testutil::marked(bytes);
        p.anno.paint = 2;
        p
    }

    fn run(outputs: usize, packets: Vec<Packet>) -> (Vec<Packet>, Vec<Packet>, Vec<Handler>) {
        let e = element(ICMPPingResponder::CLASS, "");
        let handlers = e.handlers();
        let mut out = push_through(e, outputs, packets).into_iter();
        let out0 = out.next().unwrap();
        (out0, out.next().unwrap_or_default(), handlers)
    }

    #[test]
    fn echo_request_becomes_reply() {
        let req = echo(b"abcdefghijklmnopqrstuvwxyz0123456789");
        let (out, other, e) = run(2, vec![marked(&req)]);
        assert!(other.is_empty());
        let q = &out[0];
        let d = q.data();
        let iph = Ipv4::new_checked(d).unwrap();
        assert!(iph.checksum_ok());
        assert_eq!(iph.src(), 0x0a000001);
        assert_eq!(iph.dst(), 0xc0a80107);
        assert_eq!(iph.ttl(), 255);
        assert_eq!(iph.frag(), 0);
        assert_eq!(iph.id(), 0x1c46);
        let icmp = iph.payload();
        assert_eq!(wire::checksum(icmp), 0);
        assert_eq!(&icmp[..2], &[ICMP_ECHO_REPLY, 0]);
        assert_eq!(&icmp[4..], &req[24..]);
        assert_eq!(q.anno.dst_ip, 0xc0a80107);
        assert_eq!(q.anno.paint, 0);
        assert!(q.anno.timestamp_ns > 0);
        assert_eq!(read(&e, "replies"), "1");
    }

    #[test]
    fn all_zero_reply_gets_positive_zero_checksum() {
        // Type 8 with id 0, seq 0, no data: the reply is all zero but its
        // checksum, which must be 0xffff.
        let mut v = ipv4_packet([192, 168, 1, 7], [10, 0, 0, 1], IP_PROTO_ICMP, 64, 8);
        v[20] = ICMP_ECHO;
        let c = wire::checksum(&v[20..]);
        put16(&mut v, 22, c);
        let (out, _, _) = run(1, vec![marked(&v)]);
        let icmp = &out[0].data()[20..];
        assert_eq!(be16(icmp, 2), 0xffff);
        assert_eq!(wire::checksum(icmp), 0);
    }

    #[test]
    fn others_go_to_output_1_or_are_dropped() {
        let udp = ipv4_packet([192, 168, 1, 7], [10, 0, 0, 1], IP_PROTO_UDP, 64, 8);
        let mut reply = echo(b"x");
        reply[20] = ICMP_ECHO_REPLY;
        let mut frag = echo(b"0123456789abcdef");
        put16(&mut frag, ip::FRAG, ip::MF);
        wire::set_ip_checksum(&mut frag);
        let short = ipv4_packet([192, 168, 1, 7], [10, 0, 0, 1], IP_PROTO_ICMP, 64, 7);
        let mut bad_ihl = echo(b"x");
        bad_ihl[0] = 0x44;
        let mut long = echo(b"x");
        put16(&mut long, ip::LEN, 400);
        let batch = || {
            vec![
                marked(&echo(b"1")),
                marked(&udp),
                marked(&reply),
                marked(&echo(b"2")),
                marked(&frag),
                marked(&short),
                Packet::from_data(&bad_ihl),
                Packet::from_data(&long),
                Packet::from_data(&[]),
                Packet::from_data(&[0x60; 40]),
                marked(&echo(b"3")),
            ]
        };
        let (out, other, e) = run(2, batch());
        assert_eq!(out.len(), 3);
        assert_eq!(out.iter().map(|p| p.data()[28]).collect::<Vec<_>>(), b"123");
        assert_eq!(other.len(), 8);
        assert_eq!(other[0].data(), &udp[..]);
        assert_eq!(other[0].anno.paint, 2, "others are untouched");
        assert_eq!(read(&e, "malformed"), "5");
        assert_eq!(read(&e, "replies"), "3");
        let (out, _, _) = run(1, batch());
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn unmarked_packets_are_read_from_the_data_start() {
        let req = echo(b"hello");
        let (out, _, _) = run(1, vec![Packet::from_data(&req)]);
        assert_eq!(out.len(), 1);
        assert_eq!(be32(out[0].data(), ip::DST), 0xc0a80107);
        // A marked header after a link header is found by the annotation.
        let mut framed = vec![0xee; 14];
        framed.extend_from_slice(&req);
        let mut p = Packet::from_data(&framed);
        p.set_network_header(14, 20);
        let (out, _, _) = run(1, vec![p]);
        assert_eq!(&out[0].data()[..14], &[0xee; 14]);
        assert_eq!(be32(out[0].data(), 14 + ip::DST), 0xc0a80107);
        assert_eq!(out[0].anno.flags & Annotations::NET_HEADER, Annotations::NET_HEADER);
    }

    proptest! {
        #[test]
        fn checksums_equal_full_recomputation(
            data in proptest::collection::vec(any::<u8>(), 0..1400),
            id in any::<u16>(),
            ttl in any::<u8>(),
            frag_df in any::<bool>(),
            src in any::<u32>(),
        ) {
            let mut v = echo(&data);
            put16(&mut v, 24, id);
            v[ip::TTL] = ttl;
            put16(&mut v, ip::FRAG, if frag_df { ip::DF } else { 0 });
            put32(&mut v, ip::SRC, src);
            wire::set_ip_checksum(&mut v);
            put16(&mut v, 22, 0);
            let c = wire::checksum(&v[20..]);
            put16(&mut v, 22, c);
            let (out, _, _) = run(1, vec![marked(&v)]);
            let d = out[0].data().to_vec();
            let mut fresh = d.clone();
            wire::set_ip_checksum(&mut fresh);
            prop_assert_eq!(be16(&fresh, ip::SUM), be16(&d, ip::SUM));
            prop_assert_eq!(wire::checksum(&d[20..]), 0);
            prop_assert_eq!(be32(&d, ip::DST), src);
        }
    }
}
