use crate::util::{self, Verdict, Warnings};
use crate::wire::{self, IpError, IpPrefix, Ipv4};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, Packet};

documented! {
    /// Checks that packets hold a valid IPv4 header, marks it, and sets the
    /// destination IP annotation.
    ///
    /// The header starts OFFSET bytes into the data. A packet passes when
    /// it is long enough, has version 4, a header length of at least 20
    /// bytes inside the packet, a total length between the header length
    /// and the packet length, a correct checksum (unless CHECKSUM is
    /// false), and a source address that is not a bad source (RFC 1812
    /// 5.3.7). A passing packet is cut to its IP length (link padding
    /// goes), gets its network header annotation, and its destination IP
    /// annotation becomes the header's destination. Invalid packets go to
    /// output 1 if it is connected, and are dropped otherwise; either way
    /// they are counted.
    ///
    /// # Ports
    /// One input; one or two outputs (output 1 for invalid packets, push,
    /// in pull mode too). Agnostic.
    ///
    /// # Arguments
    /// - `OFFSET` (positional, before or after the keywords, as in Click):
    ///   where the IP header starts. Default 0.
    /// - `INTERFACES`: space-separated `ADDR/MASK` of this router's
    ///   interfaces. Their broadcast addresses, 0.0.0.0 and
    ///   255.255.255.255 become bad sources, and their addresses good
    ///   destinations (packets to them are exempt from the source check).
    /// - `BADSRC`: space-separated addresses refused as sources.
    /// - `GOODDST`: space-separated destinations exempt from BADSRC.
    /// - `CHECKSUM`: verify the header checksum. Default true.
    /// - `VERBOSE`: log every invalid packet, not only the first (logs are
    ///   rate-limited to one a second either way). Default false.
    /// - `DETAILS`: accepted for Click compatibility; `drop_details` is
    ///   always kept (it costs one counter per reason).
    ///
    /// Click's deprecated positional BADSRC form (`CheckIPHeader(1.0.0.255)`)
    /// is not accepted: a bare address is refused rather than misread as
    /// an offset.
    ///
    /// # Handlers
    /// - `count` (read): valid packets.
    /// - `drops` (read): invalid packets.
    /// - `drop_details` (read): invalid packets by reason, one
    ///   `COUNT<TAB>REASON` line per reason, as Click prints them.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0) -> Strip(14) -> c :: CheckIPHeader(INTERFACES 10.0.0.1/24) -> rt;
    /// c[1] -> bad :: Counter -> Discard;
    /// ```
    pub struct CheckIPHeader {
        offset: usize,
        checksum: bool,
        bad_src: Vec<u32>,
        good_dst: Vec<u32>,
        stats: Arc<Stats>,
        warnings: Warnings,
    }
}

const NREASONS: usize = IpError::ALL.len();

#[derive(Default)]
struct Stats {
    count: AtomicU64,
    /// Drops by [`IpError`]; `drops` is their sum.
    reasons: [AtomicU64; NREASONS],
}

/// Parses a space-separated list with `parse`, recording an error for the
/// first word that does not parse.
fn word_list<T>(args: &mut Args, name: &'static str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    let Some(text) = args.read::<String>(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for w in text.split_whitespace() {
        match parse(w) {
            Some(v) => out.push(v),
            None => {
                let span = args.span_of(name);
                args.error(Some(span), format!("{name}: '{w}' is not a valid address"));
            }
        }
    }
    out
}

impl CheckIPHeader {
    pub const CLASS: ElementClass = ElementClass {
        name: "CheckIPHeader",
        ports: "1/1-2",
        processing: "a/ah",
        doc: CheckIPHeader::DOC,
        factory: CheckIPHeader::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let interfaces = word_list(args, "INTERFACES", IpPrefix::parse);
        let mut bad_src = word_list(args, "BADSRC", wire::parse_ip);
        let mut good_dst = word_list(args, "GOODDST", wire::parse_ip);
        if !interfaces.is_empty() {
            bad_src.extend(interfaces.iter().map(|p| p.addr | !p.mask));
            bad_src.extend([0, u32::MAX]);
            good_dst.extend(interfaces.iter().map(|p| p.addr));
        }
        bad_src.sort_unstable();
        bad_src.dedup();
        good_dst.sort_unstable();
        good_dst.dedup();
        let checksum = args.read("CHECKSUM").unwrap_or(true);
        let verbose = args.read("VERBOSE").unwrap_or(false);
        let _details: Option<bool> = args.read("DETAILS");
        // Read last, as Click does: the offset may come after the keywords
        // (`CheckIPHeader(BADSRC 1.0.0.255, 14)`).
        let offset = args.read_p::<usize>("OFFSET").unwrap_or(0);
        if args.has_errors() {
            return None;
        }
        Some(Box::new(CheckIPHeader {
            offset,
            checksum,
            bad_src,
            good_dst,
            stats: Arc::default(),
            warnings: Warnings::new(verbose),
        }))
    }

    /// Checks one packet; on success marks it, trims it and sets its
    /// destination annotation.
    #[inline(always)]
    fn check(&self, p: &mut Packet) -> Result<(), IpError> {
        let data = p.data();
        let b = data.get(self.offset..).ok_or(IpError::TooShort)?;
        let ip = Ipv4::new_checked(b)?;
        if self.checksum && !ip.checksum_ok() {
            return Err(IpError::BadChecksum);
        }
        if !self.bad_src.is_empty()
            && self.bad_src.binary_search(&ip.src()).is_ok()
            && self.good_dst.binary_search(&ip.dst()).is_err()
        {
            return Err(IpError::BadSource);
        }
        let (hl, len, dst) = (ip.header_len(), ip.total_len(), ip.dst());
        let extra = b.len() - len;
        p.set_network_header(self.offset, hl);
        if extra > 0 {
            p.take(extra);
        }
        p.anno.dst_ip = dst;
        Ok(())
    }

    /// Checks `batch`, keeping the valid packets; returns the invalid ones
    /// when `refused` says to keep them for output 1.
    fn process(&mut self, batch: &mut Batch, refused: Verdict) -> Option<Batch> {
        let mut reasons = [0u64; NREASONS];
        let mut first = None;
        let rejects = util::sort_out(batch, |p| match self.check(p) {
            Ok(()) => Verdict::Pass,
            Err(e) => {
                reasons[e as usize] += 1;
                first.get_or_insert(e);
                refused
            }
        });
        self.stats.count.fetch_add(batch.len() as u64, Relaxed);
        if let Some(e) = first {
            if self.warnings.due() {
                tracing::warn!(reason = e.label(), "IP header check failed");
            }
            for (c, n) in self.stats.reasons.iter().zip(reasons) {
                if n > 0 {
                    c.fetch_add(n, Relaxed);
                }
            }
        }
        rejects
    }
}

impl Element for CheckIPHeader {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let rejects = self.process(&mut batch, Verdict::refused(cx));
        util::push_sorted(cx, batch, rejects);
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let rejects = self.process(&mut batch, Verdict::refused(cx));
        util::push_rejects(cx, rejects);
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        let (c, d, r) = (self.stats.clone(), self.stats.clone(), self.stats.clone());
        vec![
            Handler::read_only("count", move || c.count.load(Relaxed).to_string()),
            Handler::read_only("drops", move || {
                d.reasons.iter().map(|r| r.load(Relaxed)).sum::<u64>().to_string()
            }),
            Handler::read_only("drop_details", move || {
                let mut s = String::new();
                for (n, why) in r.reasons.iter().zip(IpError::ALL) {
                    s.push_str(&format!("{}\t{}\n", n.load(Relaxed), why.label()));
                }
                s
            }),
        ]
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = switchyard_core::downcast::<CheckIPHeader>(old) {
            self.stats = old.stats.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{element, push_through, read};
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{ip, put16};

    #[test]
    fn offset_is_positional_before_or_after_keywords_as_in_click() {
        for config in ["14", "14, VERBOSE true", "BADSRC 1.0.0.255, 14", "OFFSET 14", ""] {
            let e = crate::testutil::configure("c :: CheckIPHeader", CheckIPHeader::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        // Click refuses the old positional BADSRC too.
        assert!(crate::testutil::configure("c :: CheckIPHeader", CheckIPHeader::CLASS, "1.0.0.255, 14").is_err());
    }

    fn run(config: &str, frames: &[Vec<u8>]) -> (Vec<Packet>, Vec<Packet>, String) {
        let e = element(CheckIPHeader::CLASS, config);
        let hs = e.handlers();
        let mut out = push_through(e, 2, frames.iter().map(|f| Packet::from_data(f)).collect());
        let bad = out.pop().unwrap();
        (out.pop().unwrap(), bad, read(&hs, "drop_details"))
    }

    #[test]
    fn valid_packet_is_marked_trimmed_and_annotated() {
        let mut frame = vec![0xaa; 14];
        frame.extend(ipv4_packet([10, 0, 0, 1], [10, 0, 1, 2], 17, 64, 8));
        frame.extend([0u8; 18]); // Ethernet padding
        let (good, bad, _) = run("14", &[frame]);
        assert!(bad.is_empty());
        let p = &good[0];
        assert_eq!(p.len(), 14 + 28);
        assert_eq!(p.network_offset(), Some(14));
        assert_eq!(p.anno.net_len, 20);
        assert_eq!(p.anno.dst_ip, 0x0a000102);
    }

    #[test]
    fn each_malformation_is_counted_under_its_reason_and_goes_to_output_1() {
        let good = ipv4_packet([10, 0, 0, 1], [10, 0, 1, 2], 6, 64, 20);
        let mut bad_sum = good.clone();
        bad_sum[ip::SUM] ^= 1;
        let mut v6 = good.clone();
        v6[0] = 0x60;
        let mut ihl = good.clone();
        ihl[0] = 0x44;
        let mut opts_past = good.clone();
        opts_past[0] = 0x4f;
        opts_past.truncate(40);
        put16(&mut opts_past, ip::LEN, 40);
        let mut long = good.clone();
        put16(&mut long, ip::LEN, 2000);
        let frames = vec![
            good.clone(),
            vec![],
            good[..10].to_vec(),
            bad_sum,
            v6,
            ihl,
            opts_past,
            long,
        ];
        let (ok, bad, details) = run("", &frames);
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 7);
        assert!(details.contains("2\ttiny packet"), "{details}");
        assert!(details.contains("1\tbad IP version"));
        assert!(details.contains("1\tbad IP header length"), "{details}");
        assert!(details.contains("2\tbad IP length"));
        assert!(details.contains("1\tbad IP checksum"));
    }

    #[test]
    fn interfaces_refuse_broadcast_sources_unless_sent_to_us() {
        let cfg = "INTERFACES 10.0.0.1/24 10.0.1.1/24";
        let from_bcast = ipv4_packet([10, 0, 0, 255], [10, 0, 1, 9], 17, 64, 0);
        let to_us = ipv4_packet([10, 0, 0, 255], [10, 0, 0, 1], 17, 64, 0);
        let zero = ipv4_packet([0, 0, 0, 0], [10, 0, 1, 9], 17, 64, 0);
        let fine = ipv4_packet([10, 0, 0, 7], [10, 0, 1, 9], 17, 64, 0);
        let (ok, bad, details) = run(cfg, &[from_bcast, to_us, zero, fine]);
        assert_eq!((ok.len(), bad.len()), (2, 2));
        assert!(details.contains("2\tbad source address"));
    }

    #[test]
    fn checksum_false_skips_the_checksum_and_counts_are_handlers() {
        let mut p = ipv4_packet([1, 1, 1, 1], [2, 2, 2, 2], 6, 9, 0);
        p[ip::SUM] ^= 0xff;
        let (ok, _, _) = run("CHECKSUM false", std::slice::from_ref(&p));
        assert_eq!(ok.len(), 1);
        // With the checksum checked, the same packet is dropped, and the
        // handlers of the element that saw it say so.
        let e = element(CheckIPHeader::CLASS, "");
        let hs = e.handlers();
        let out = push_through(e, 1, vec![Packet::from_data(&p)]);
        assert_eq!(out[0].len(), 0);
        assert_eq!(read(&hs, "drops"), "1");
        assert_eq!(read(&hs, "count"), "0");
    }

    #[test]
    fn refused_packets_leave_by_output_1_when_pulled_too() {
        // A Queue before the checks puts CheckIPHeader and DecIPTTL in
        // pull; their output 1 still pushes. One packet in three gets an
        // IPv6 version, one a TTL of 1 (the checksum is not checked, so
        // the TTL change does not make it invalid).
        let t = switchyard_core::run_text(
            "src :: InfiniteSource(LIMIT 999, BURST 9, STOP true) -> rr :: RoundRobinSwitch;
             rr[0] -> q :: Queue(2000);
             rr[1] -> StoreData(14, \\<65>) -> q;
             rr[2] -> StoreData(22, \\<01>) -> q;
             q -> c :: CheckIPHeader(14, CHECKSUM false) -> dt :: DecIPTTL -> ok :: Counter -> Discard;
             c[1] -> bad :: Counter -> Discard;
             dt[1] -> expired :: Counter -> Discard;",
            &crate::standard(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let count = |h: &str| t.read(h).unwrap_or_else(|e| panic!("{h}: {e}")).trim().to_string();
        assert_eq!(count("ok.count"), "333");
        assert_eq!(count("bad.count"), "333");
        assert_eq!(count("c.drops"), "333");
        assert_eq!(count("expired.count"), "333");
        assert_eq!(count("dt.drops"), "333");
    }

    #[test]
    fn bad_addresses_in_arguments_are_config_errors() {
        let mut args = Args::parse_str("c :: CheckIPHeader", "INTERFACES 10.0.0.1/24 10.0.0.300/24");
        assert!(CheckIPHeader::make(&mut args).is_none());
        let mut args = Args::parse_str("c :: CheckIPHeader", "BADSRC 1.2.3");
        assert!(CheckIPHeader::make(&mut args).is_none());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_and_pass_only_valid_headers(bytes in proptest::collection::vec(0u8..=255, 0..80)) {
            let (ok, bad, _) = run("", std::slice::from_ref(&bytes));
            proptest::prop_assert_eq!(ok.len() + bad.len(), 1);
            for p in ok {
                let ip = Ipv4::new_checked(p.data()).unwrap();
                proptest::prop_assert!(ip.checksum_ok());
                proptest::prop_assert_eq!(ip.total_len(), p.len());
            }
        }
    }
}
