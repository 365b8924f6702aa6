//! IPGWOptions: the IP options every router on the path processes (record
//! route and timestamp). Packets without options pass after one byte is
//! read; a header with options is worked on in a 60-byte copy and written
//! back only if an option changed.

use super::ip_options::{self, AddrList, IPOPT_RR, IPOPT_TS};
use crate::util::Drops;
use crate::util::{self, Verdict};
use crate::wire::{self, ip, IpAddr};
use switchyard_core::packet::now_ns;
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, Packet};

documented! {
    /// Processes the IP options every router handles, not only the packet's
    /// destination (Click's IPGWOptions): Record Route and Timestamp, not
    /// the source routes.
    ///
    /// Record Route gets MYADDR, the address of the interface downstream of
    /// the element (RFC 1812 4.2.2.2), at its pointer; a full route is left
    /// alone. Timestamp gets milliseconds since midnight UT, after MYADDR
    /// for flag 1, or in the slot of one of this router's addresses (MYADDR
    /// or OTHERADDRS) for flag 3 (prespecified addresses); a full option has
    /// its overflow count incremented. A changed header gets its checksum
    /// recomputed. Packets without options pass untouched.
    ///
    /// A malformed option (a length below 2 or past the header, a pointer
    /// out of place, an unknown timestamp flag, an overflow count at 15)
    /// sends the packet to output 1, if it exists, with the
    /// parameter-problem annotation set to the offset of the bad byte in
    /// the IP header, for an ICMPError(..., parameterproblem); without
    /// output 1 it is dropped. Either way it is counted in `drops`. The
    /// same goes for a header too short for its header length, or not
    /// IPv4, that claims options (pointer 0).
    ///
    /// The IP header is found by the network header annotation
    /// (CheckIPHeader sets it), or at the data start without one.
    ///
    /// Differences from Click: a full prespecified-address timestamp (flag
    /// 3) has its overflow count incremented, as RFC 791 says, where Click
    /// sends a parameter problem. An option whose length byte lies past the
    /// header is an error pointing at its type byte (Click reads past it).
    ///
    /// # Ports
    /// One input; one or two outputs (output 1 for packets with bad
    /// options, push, in pull mode too). Agnostic.
    ///
    /// # Arguments
    /// - `MYADDR` (positional or keyword, mandatory): this interface's
    ///   address.
    /// - `OTHERADDRS` (positional or keyword): space-separated addresses of
    ///   the router's other interfaces, for prespecified timestamps.
    ///
    /// # Handlers
    /// - `drops` (read): packets with bad options.
    ///
    /// # Example
    /// ```text
    /// gw :: IPGWOptions(10.0.1.1, 10.0.2.1) -> FixIPSrc(10.0.1.1) -> dt :: DecIPTTL;
    /// gw[1] -> ICMPError(10.0.1.1, parameterproblem) -> rt;
    /// ```
    pub struct IPGWOptions {
        my_addr: u32,
        my_addrs: Vec<u32>,
        drops: Drops,
    }
}

impl IPGWOptions {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPGWOptions",
        ports: "1/1-2",
        processing: "a/ah",
        doc: IPGWOptions::DOC,
        factory: IPGWOptions::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let my_addr = args.read_mp::<IpAddr>("MYADDR");
        let others = args.read_p::<AddrList>("OTHERADDRS").unwrap_or_default();
        let my_addr = my_addr?.0;
        if args.has_errors() {
            return None;
        }
        let mut my_addrs = others.0;
        my_addrs.push(my_addr);
        Some(Box::new(IPGWOptions {
            my_addr,
            my_addrs,
            drops: Drops::default(),
        }))
    }

    /// Processes `p`'s options; on a bad one returns the offset of the bad
    /// byte, to be the parameter-problem pointer.
    fn handle(&self, p: &mut Packet, ms: u32) -> Result<(), u8> {
        let off = wire::ip_offset(p);
        let data = &p.data()[off..];
        let hl = wire::checked_header_len(data).ok_or(0u8)?;
        // The options are read from the packet and updated in a copy,
        // which goes back only if an option changed.
        let mut h = [0u8; ip::MAX_HEADER];
        h[..hl].copy_from_slice(&data[..hl]);
        let mut changed = false;
        for opt in ip_options::options(&data[..hl]) {
            let opt = opt.map_err(|at| at as u8)?;
            let (oi, o) = (opt.at, &mut h[opt.at..opt.at + opt.bytes.len()]);
            changed |= match opt.kind() {
                IPOPT_RR => self.record_route(o, oi)?,
                IPOPT_TS => self.timestamp(o, oi, ms)?,
                _ => false,
            };
        }
        if changed {
            wire::set_ip_checksum(&mut h[..hl]);
            p.data_mut()[off..off + hl].copy_from_slice(&h[..hl]);
        }
        Ok(())
    }

    /// Record Route (RFC 791): `o` is the option, at `oi` in the header.
    fn record_route(&self, o: &mut [u8], oi: usize) -> Result<bool, u8> {
        let xlen = o.len();
        if xlen < 3 {
            return Err((oi + 1) as u8);
        }
        // The pointer counts from 1: the first slot is at pointer 4.
        let p = usize::from(o[2]).wrapping_sub(1);
        if (3..=xlen.saturating_sub(4)).contains(&p) {
            wire::put32(o, p, self.my_addr);
            o[2] += 4;
            Ok(true)
        } else if p == xlen {
            Ok(false)
        } else {
            Err((oi + 2) as u8)
        }
    }

    /// Internet Timestamp (RFC 791): `o` is the option, at `oi`.
    fn timestamp(&self, o: &mut [u8], oi: usize, ms: u32) -> Result<bool, u8> {
        let xlen = o.len();
        if xlen < 4 {
            return Err((oi + 1) as u8);
        }
        let p = usize::from(o[2]).wrapping_sub(1);
        let overflow = o[3] >> 4;
        let flag = o[3] & 0xf;
        if !(4..=255).contains(&p) {
            return Err((oi + 2) as u8);
        }
        let fits = |n: usize| p + n <= xlen;
        match flag {
            0 if fits(4) => {
                wire::put32(o, p, ms);
                o[2] += 4;
                return Ok(true);
            }
            1 if fits(8) => {
                wire::put32(o, p, self.my_addr);
                wire::put32(o, p + 4, ms);
                o[2] += 8;
                return Ok(true);
            }
            3 if fits(8) => {
                if !self.my_addrs.contains(&wire::be32(o, p)) {
                    return Ok(false);
                }
                wire::put32(o, p + 4, ms);
                o[2] += 8;
                return Ok(true);
            }
            0 | 1 | 3 => {}
            _ => return Err((oi + 3) as u8),
        }
        // No room left: count the router that could not stamp.
        if overflow == 15 {
            return Err((oi + 3) as u8);
        }
        o[3] = ((overflow + 1) << 4) | flag;
        Ok(true)
    }

    /// Handles `batch`; returns the packets with bad options when
    /// `refused` says to keep them for output 1.
    fn run(&mut self, batch: &mut Batch, refused: Verdict) -> Option<Batch> {
        // Packets with options are rare: the clock is read only if an
        // option may need it, once per batch.
        let mut ms = None;
        let mut bad = 0u64;
        let rejects = util::sort_out(batch, |p| {
            if !needs_work(p) {
                return Verdict::Pass;
            }
            let now = *ms.get_or_insert_with(|| (now_ns() / 1_000_000 % 86_400_000) as u32);
            match self.handle(p, now) {
                Ok(()) => Verdict::Pass,
                Err(ptr) => {
                    p.anno.param_off = ptr;
                    bad += 1;
                    refused
                }
            }
        });
        if bad > 0 {
            self.drops.add(bad as usize);
        }
        rejects
    }
}

/// False for the common packet: a 20-byte header with no options.
#[inline]
fn needs_work(p: &Packet) -> bool {
    p.data().get(wire::ip_offset(p)).is_none_or(|&b| b & 0xf != 5)
}

impl Element for IPGWOptions {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let rejects = self.run(&mut batch, Verdict::refused(cx));
        util::push_sorted(cx, batch, rejects);
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let rejects = self.run(&mut batch, Verdict::refused(cx));
        util::push_rejects(cx, rejects);
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.drops.handler()]
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<IPGWOptions>(old) {
            self.drops = old.drops.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::ip_options::{IPOPT_EOL, IPOPT_LSRR, IPOPT_NOP};
    use crate::testutil::{push_through, read};
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{be16, be32, put16, Ipv4, IP_PROTO_UDP};
    use proptest::prelude::*;

    const ME: u32 = 0x0a000101;

    fn element(config: &str) -> Box<dyn Element> {
        crate::testutil::element(IPGWOptions::CLASS, config)
    }

    /// A UDP packet whose header carries `opts` (padded with EOL to a
    /// multiple of 4).
    fn with_options(opts: &[u8]) -> Vec<u8> {
        let olen = opts.len().div_ceil(4) * 4;
        let mut v = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_UDP, 64, olen + 8);
        v[0] = 0x40 | ((20 + olen) / 4) as u8;
        v[20..20 + opts.len()].copy_from_slice(opts);
        v[20 + opts.len()..20 + olen].fill(IPOPT_EOL);
        wire::set_ip_checksum(&mut v);
        v
    }

    fn run(config: &str, outputs: usize, frames: &[Vec<u8>]) -> (Vec<Packet>, Vec<Packet>, String) {
        let e = element(config);
        let hs = e.handlers();
        let packets = frames
            .iter()
            .map(|f| {
                let mut p = Packet::from_data(f);
                p.set_network_header(0, 20);
                p
            })
            .collect();
        let mut out = push_through(e, outputs, packets).into_iter();
        let out0 = out.next().unwrap();
        (out0, out.next().unwrap_or_default(), read(&hs, "drops"))
    }

    fn run1(frame: Vec<u8>) -> Result<Vec<u8>, u8> {
        let (ok, bad, _) = run("10.0.1.1, 10.0.2.1 10.0.3.1", 2, &[frame]);
        match (ok.first(), bad.first()) {
            (Some(p), None) => {
                assert!(Ipv4::new_checked(p.data()).unwrap().checksum_ok());
                Ok(p.data().to_vec())
            }
            (None, Some(p)) => Err(p.anno.param_off),
            _ => panic!("one packet in, one out"),
        }
    }

    #[test]
    fn packets_without_options_pass_untouched() {
        let v = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_UDP, 64, 30);
        let p = Packet::from_data(&v);
        let buf = p.data().as_ptr();
        let out = push_through(element("10.0.1.1"), 1, vec![p]);
        assert_eq!(out[0][0].data(), &v[..]);
        assert_eq!(out[0][0].data().as_ptr(), buf, "not copied");
        // Unknown options (a source route) pass as they are too.
        let lsrr = with_options(&[IPOPT_LSRR, 7, 4, 1, 2, 3, 4]);
        assert_eq!(run1(lsrr.clone()), Ok(lsrr));
    }

    #[test]
    fn record_route_records_myaddr() {
        let v = with_options(&[IPOPT_NOP, IPOPT_RR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        let out = run1(v).unwrap();
        assert_eq!(&out[21..24], &[IPOPT_RR, 11, 8]);
        assert_eq!(be32(&out, 24), ME);
        let out = run1(out).unwrap();
        assert_eq!(out[23], 12);
        assert_eq!(be32(&out, 28), ME);
        // Full: left as it is.
        assert_eq!(run1(out.clone()), Ok(out));
    }

    #[test]
    fn timestamps() {
        // Flag 0: timestamps only.
        let out = run1(with_options(&[IPOPT_TS, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(out[22], 9);
        assert!(be32(&out, 24) < 86_400_000);
        // Flag 1: address and timestamp; full after one.
        let out = run1(with_options(&[IPOPT_TS, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!((out[22], be32(&out, 24)), (13, ME));
        let out = run1(out).unwrap();
        assert_eq!((out[22], out[23]), (13, 0x11), "overflow counted");
        // Flag 3: only our own slots are stamped.
        let mut o = vec![IPOPT_TS, 20, 5, 3];
        o.extend_from_slice(&[10, 0, 3, 1, 0, 0, 0, 0, 10, 0, 9, 9, 0, 0, 0, 0]);
        let out = run1(with_options(&o)).unwrap();
        assert_eq!(out[22], 13);
        let out = run1(out).unwrap();
        assert_eq!(out[22], 13, "not our slot: unchanged");
        // Overflow count at 15 is a parameter problem at the flags byte.
        assert_eq!(run1(with_options(&[IPOPT_TS, 4, 5, 0xf0])), Err(23));
        // Unknown flag.
        assert_eq!(run1(with_options(&[IPOPT_TS, 8, 5, 2, 0, 0, 0, 0])), Err(23));
        // Pointer below 5.
        assert_eq!(run1(with_options(&[IPOPT_TS, 8, 4, 0, 0, 0, 0, 0])), Err(22));
    }

    #[test]
    fn bad_options_go_to_output_1_with_a_pointer() {
        // Length past the header.
        assert_eq!(run1(with_options(&[IPOPT_RR, 40, 4])), Err(21));
        // Length below 2.
        assert_eq!(run1(with_options(&[IPOPT_NOP, 0x44, 1])), Err(22));
        // Record route pointer inside a slot.
        assert_eq!(run1(with_options(&[IPOPT_RR, 7, 6, 0, 0, 0, 0])), Err(22));
        // Record route too short for a pointer.
        assert_eq!(
            run1(with_options(&[IPOPT_NOP, IPOPT_NOP, IPOPT_NOP, IPOPT_RR, 2])),
            Err(24)
        );
        // A length byte past the header.
        assert_eq!(run1(with_options(&[IPOPT_NOP, IPOPT_NOP, IPOPT_NOP, 0x44])), Err(23));
        // IHL past the data, and below 5.
        let mut v = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_UDP, 64, 4);
        v[0] = 0x47;
        assert_eq!(run1(v.clone()), Err(0));
        v[0] = 0x43;
        assert_eq!(run1(v), Err(0));
        // Without output 1, dropped and counted.
        let frames = [with_options(&[IPOPT_RR, 40, 4]), vec![], vec![0x46; 10]];
        let (ok, _, drops) = run("10.0.1.1", 1, &frames);
        assert!(ok.is_empty());
        assert_eq!(drops, "3");
    }

    #[test]
    fn good_and_bad_packets_keep_their_order() {
        let good = ipv4_packet([192, 168, 1, 7], [10, 9, 9, 9], IP_PROTO_UDP, 64, 4);
        let bad = with_options(&[IPOPT_RR, 40, 4]);
        let rr = with_options(&[IPOPT_RR, 7, 4, 0, 0, 0, 0]);
        let (ok, err, drops) = run("10.0.1.1", 2, &[good.clone(), bad.clone(), rr, bad, good]);
        assert_eq!(ok.len(), 3);
        assert_eq!(be32(ok[1].data(), 23), ME);
        assert_eq!(err.len(), 2);
        assert_eq!(drops, "2");
    }

    #[test]
    fn config_errors() {
        let mut args = Args::parse_str("gw :: IPGWOptions", "");
        assert!(IPGWOptions::make(&mut args).is_none());
        let mut args = Args::parse_str("gw :: IPGWOptions", "10.0.0.1, 10.0.0");
        assert!(IPGWOptions::make(&mut args).is_none());
    }

    proptest! {
        #[test]
        fn checksum_equals_full_recomputation(
            opts in proptest::collection::vec(any::<u8>(), 0..40),
            rr_ptr in 0u8..45,
        ) {
            let mut o = vec![IPOPT_RR, 39, rr_ptr];
            o.resize(39, 0);
            for v in [o, opts] {
                let v = with_options(&v);
                if let Ok(out) = run1(v) {
                    let mut fresh = out.clone();
                    wire::set_ip_checksum(&mut fresh);
                    prop_assert_eq!(be16(&fresh, ip::SUM), be16(&out, ip::SUM));
                }
            }
        }
    }

    #[test]
    fn checksum_after_changes_verifies() {
        let mut v = with_options(&[IPOPT_RR, 7, 4, 0, 0, 0, 0]);
        put16(&mut v, ip::ID, 0xbeef);
        wire::set_ip_checksum(&mut v);
        let out = run1(v).unwrap();
        assert_eq!(wire::checksum(&out[..28]), 0);
        assert_eq!(be16(&out, ip::ID), 0xbeef);
    }
}
