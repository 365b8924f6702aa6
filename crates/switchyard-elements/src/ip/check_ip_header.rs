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
    /// One input; one or two outputs (output 1 for invalid packets, push).
    /// Agnostic.
    ///
    /// # Arguments
    /// - `OFFSET` (positional or keyword): where the IP header starts.
    ///   Default 0.
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
        verbose: bool,
        bad_src: Vec<u32>,
        good_dst: Vec<u32>,
        stats: Arc<Stats>,
        warned: Option<std::time::Instant>,
        bad: Option<Batch>,
    }
}

const REASONS: [&str; 6] = [
    "tiny packet",
    "bad IP version",
    "bad IP header length",
    "bad IP length",
    "bad IP checksum",
    "bad source address",
];

#[derive(Default)]
struct Stats {
    count: AtomicU64,
    drops: AtomicU64,
    reasons: [AtomicU64; 6],
}

fn reason_index(e: IpError) -> usize {
    match e {
        IpError::TooShort => 0,
        IpError::BadVersion => 1,
        IpError::BadHeaderLen => 2,
        IpError::BadLength => 3,
    }
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
        let offset = args.read_p::<usize>("OFFSET").unwrap_or(0);
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
        if args.has_errors() {
            return None;
        }
        Some(Box::new(CheckIPHeader {
            offset,
            checksum,
            verbose,
            bad_src,
            good_dst,
            stats: Arc::default(),
            warned: None,
            bad: None,
        }))
    }

    /// Checks one packet; on success marks it and returns None.
    #[inline(always)]
    fn check(&self, p: &mut Packet) -> Option<usize> {
        let data = p.data();
        let Some(b) = data.get(self.offset..) else {
            return Some(0);
        };
        let ip = match Ipv4::new_checked(b) {
            Ok(ip) => ip,
            Err(e) => return Some(reason_index(e)),
        };
        if self.checksum && !ip.checksum_ok() {
            return Some(4);
        }
        if !self.bad_src.is_empty()
            && self.bad_src.binary_search(&ip.src()).is_ok()
            && self.good_dst.binary_search(&ip.dst()).is_err()
        {
            return Some(5);
        }
        let (hl, len, dst) = (ip.header_len(), ip.total_len(), ip.dst());
        let extra = b.len() - len;
        p.set_network_header(self.offset, hl);
        if extra > 0 {
            p.take(extra);
        }
        p.anno.dst_ip = dst;
        None
    }

    fn note(&mut self, reason: usize) {
        let now = std::time::Instant::now();
        let first = self.stats.drops.load(Relaxed) == 0;
        let due = self.warned.is_none_or(|t| now.duration_since(t).as_secs() >= 1);
        if (first || self.verbose) && due {
            self.warned = Some(now);
            tracing::warn!(reason = REASONS[reason], "IP header check failed");
        }
    }
}

impl Element for CheckIPHeader {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let mut bad = self.bad.take().unwrap_or_default();
        let mut reasons = [0u64; 6];
        let mut first_reason = None;
        let mut ok = 0u64;
        // Invalid packets are rare: the batch goes on untouched until the
        // first one; from there the rest is sorted packet by packet.
        let mut first_bad = None;
        for (i, p) in batch.packets_mut().iter_mut().enumerate() {
            if let Some(r) = self.check(p) {
                first_bad = Some((i, r));
                break;
            }
            ok += 1;
        }
        if let Some((i, r)) = first_bad {
            reasons[r] += 1;
            first_reason = Some(r);
            let mut rest = batch.split_off(i);
            let mut it = rest.drain();
            bad.extend(it.next());
            for mut p in it {
                match self.check(&mut p) {
                    None => {
                        ok += 1;
                        batch.push(p);
                    }
                    Some(r) => {
                        reasons[r] += 1;
                        bad.push(p);
                    }
                }
            }
        }
        let dropped: u64 = reasons.iter().sum();
        self.stats.count.fetch_add(ok, Relaxed);
        if dropped > 0 {
            if let Some(r) = first_reason {
                self.note(r);
            }
            self.stats.drops.fetch_add(dropped, Relaxed);
            for (c, n) in self.stats.reasons.iter().zip(reasons) {
                if n > 0 {
                    c.fetch_add(n, Relaxed);
                }
            }
        }
        if !batch.is_empty() {
            cx.push(0, batch);
        }
        if !bad.is_empty() && cx.noutputs() > 1 {
            cx.push(1, bad);
        } else {
            drop(bad);
        }
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let mut reasons = [0u64; 6];
        batch.retain(|p| match self.check(p) {
            None => true,
            Some(r) => {
                reasons[r] += 1;
                false
            }
        });
        let dropped: u64 = reasons.iter().sum();
        self.stats.count.fetch_add(batch.len() as u64, Relaxed);
        self.stats.drops.fetch_add(dropped, Relaxed);
        for (c, n) in self.stats.reasons.iter().zip(reasons) {
            c.fetch_add(n, Relaxed);
        }
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        let (c, d, r) = (self.stats.clone(), self.stats.clone(), self.stats.clone());
        vec![
            Handler::read_only("count", move || c.count.load(Relaxed).to_string()),
            Handler::read_only("drops", move || d.drops.load(Relaxed).to_string()),
            Handler::read_only("drop_details", move || {
                let mut s = String::new();
                for (n, why) in r.reasons.iter().zip(REASONS) {
                    s.push_str(&format!("{}\t{why}\n", n.load(Relaxed)));
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
    use crate::wire::tests::ipv4_packet;
    use crate::wire::{ip, put16};
    use switchyard_core::runtime::Harness;

    fn element(config: &str) -> Box<dyn Element> {
        let mut args = Args::parse_str("c :: CheckIPHeader", config);
        let e = CheckIPHeader::make(&mut args);
        args.complete().expect("valid config");
        e.expect("element")
    }

    fn run(config: &str, frames: &[Vec<u8>]) -> (Vec<Packet>, Vec<Packet>, String) {
        let e = element(config);
        let details = {
            let hs = e.handlers();
            hs.iter()
                .find(|x| x.name == "drop_details")
                .unwrap()
                .read
                .clone()
                .unwrap()
        };
        let mut h = Harness::new(e, 1, 2);
        let mut b = Batch::new();
        for f in frames {
            b.push(Packet::from_data(f));
        }
        h.push(0, b);
        let take = |v: Vec<Batch>| v.into_iter().flat_map(|mut b| b.drain().collect::<Vec<_>>()).collect();
        (take(h.take(0)), take(h.take(1)), details())
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
        let e = element("");
        let handlers = e.handlers();
        let mut h = Harness::new(e, 1, 1);
        let mut b = Batch::new();
        b.push(Packet::from_data(&p));
        h.push(0, b);
        assert_eq!(h.count(0), 0);
        let get = |n: &str| (handlers.iter().find(|x| x.name == n).unwrap().read.as_ref().unwrap())();
        assert_eq!(get("drops"), "1");
        assert_eq!(get("count"), "0");
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
