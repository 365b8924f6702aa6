use super::ip_pattern::{self, packet_windows};
use crate::standard::classification::{Expr, Listing, Program};
use crate::standard::scatter::Scatter;
use std::sync::Arc;
use switchyard_core::element::PortRange;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, Packet, PortCount};

documented! {
    /// Filters IP packets with an ordered list of rules `ACTION PATTERN`:
    /// each packet gets the action of the first rule whose pattern it
    /// matches; a packet that matches no rule is dropped.
    ///
    /// The patterns are IPClassifier's (see `switchyard elements
    /// IPClassifier`): `host`, `net`, `port`, `proto`, `tcp opt`, `icmp
    /// type`, `ip[POS:LEN]`, `transp[POS:LEN]`, `ip ttl` and the other
    /// header fields, with `src`/`dst`, `and`/`or`/`not`, parentheses and
    /// relational operators; an empty pattern, `-`, `any` or `all`
    /// matches every packet. The IP header is at the network-header
    /// annotation, or at the start of the data when it is unset; a packet
    /// that is not IPv4 has no fields, so only rules that test none match
    /// it.
    ///
    /// All rules are compiled once into one decision program (see the
    /// `program` handler): a test shared by several rules is made once,
    /// and rules comparing the same field against different values (a
    /// hundred `deny src net A.B.0.0/16 ...`) are dispatched in one table
    /// lookup, so the cost per packet does not grow with such rules.
    ///
    /// As in Click, `deny` drops the packet whatever the number of
    /// outputs (there is no reject output: send packets to a numbered
    /// output for that), and there are no counters (put a Counter on an
    /// output). Differences from Click are IPClassifier's.
    ///
    /// # Ports
    /// One input; outputs up to the highest output a rule names (`allow`
    /// is output 0), all of which must be connected; push.
    ///
    /// # Arguments
    /// - `RULE...` (positional): `ACTION PATTERN`, ACTION being `allow`
    ///   (output 0), `deny` or `drop` (drop the packet), or an output
    ///   number.
    ///
    /// # Handlers
    /// - `program` (read): the compiled decision program, in Click's
    ///   format (see IPClassifier's `program`).
    ///
    /// # Example
    /// ```text
    /// IPFilter(deny src net 10.0.0.0/8,
    ///          allow tcp && dst port 22 && syn,
    ///          deny tcp && syn,
    ///          allow all);
    /// ```
    pub struct IPFilter {
        program: Arc<Program>,
        outputs: u32,
        scatter: Scatter,
    }
}

impl IPFilter {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPFilter",
        ports: "1/-",
        processing: "h/h",
        doc: IPFilter::DOC,
        factory: IPFilter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let mut rules = Vec::new();
        for (i, (text, span)) in args.rest_positional().into_iter().enumerate() {
            match ip_pattern::parse_rule(&text).and_then(|(action, pattern)| Ok((pattern.lower()?, action))) {
                Ok(rule) => rules.push(rule),
                Err(e) => args.error(Some(span), format!("pattern {i} '{}': {e}", text.trim())),
            }
        }
        if args.has_errors() {
            return None;
        }
        Some(Box::new(IPFilter::from_compiled(&rules)))
    }

    fn from_compiled(rules: &[(Expr, Option<u32>)]) -> IPFilter {
        IPFilter {
            program: Arc::new(Program::compile(rules, Listing::Ip)),
            outputs: rules.iter().filter_map(|r| r.1).map(|o| o + 1).max().unwrap_or(0),
            scatter: Scatter::new(),
        }
    }

    /// An IPFilter from rule texts (for benchmarks and fuzzing); the error
    /// names the first bad rule.
    pub fn from_rules(rules: &[&str]) -> Result<IPFilter, String> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                ip_pattern::parse_rule(r)
                    .and_then(|(action, pattern)| Ok((pattern.lower()?, action)))
                    .map_err(|e| format!("pattern {i} '{r}': {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(IPFilter::from_compiled(&compiled))
    }

    /// The output for a packet, or `None` if it is dropped.
    #[inline]
    pub fn classify(&self, p: &Packet) -> Option<usize> {
        self.program.run(p.data(), &packet_windows(p))
    }

    /// How many program steps a packet goes through (its cost).
    pub fn path_len(&self, p: &Packet) -> usize {
        self.program.path_len(p.data(), &packet_windows(p))
    }

    /// The compiled program, as the `program` handler prints it.
    pub fn program(&self) -> String {
        self.program.unparse()
    }
}

impl Element for IPFilter {
    fn port_count(&self) -> Option<PortCount> {
        Some(PortCount {
            inputs: PortRange { min: 1, max: 1 },
            outputs: PortRange {
                min: self.outputs,
                max: u32::MAX,
            },
        })
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.program.push(&mut self.scatter, batch, cx, packet_windows);
    }

    fn handlers(&self) -> Vec<Handler> {
        let program = self.program.clone();
        vec![Handler::read_only("program", move || program.unparse()).merged(switchyard_core::Merge::Same)]
    }
}

#[cfg(test)]
mod tests {
    use super::super::ip_pattern::tests::{ip, tcp, udp};
    use super::*;
    use switchyard_core::Harness;

    fn make(config: &str) -> Result<Box<dyn Element>, String> {
        crate::testutil::configure("f :: IPFilter", IPFilter::CLASS, config)
    }

    use crate::testutil::frames as batch;

    const IN: [u8; 4] = [10, 1, 2, 3];
    const OUT: [u8; 4] = [198, 51, 100, 7];

    #[test]
    fn allow_deny_drop_and_numbered_outputs() {
        let elem = make(
            "deny src net 10.0.0.0/8 and udp, allow tcp && dst port 22 && syn, drop tcp && syn, \
             1 icmp, allow all",
        )
        .unwrap();
        assert_eq!(elem.port_count().unwrap().outputs.min, 2);
        let mut h = Harness::new(elem, 1, 2);
        h.push(
            0,
            batch(&[
                ip(17, IN, OUT, &udp(1, 53)),              // denied
                ip(6, OUT, IN, &tcp(5000, 22, 0x02)),      // allowed ssh SYN
                ip(6, OUT, IN, &tcp(5000, 80, 0x02)),      // dropped SYN
                ip(6, OUT, IN, &tcp(5000, 80, 0x10)),      // established: allow all
                ip(1, OUT, IN, &[8, 0, 0, 0, 0, 0, 0, 0]), // output 1
                ip(17, OUT, IN, &udp(1, 53)),              // allow all
            ]),
        );
        assert_eq!((h.count(0), h.count(1)), (3, 1));
    }

    #[test]
    fn no_match_drops_and_empty_filter_drops_all() {
        let f = IPFilter::from_rules(&["allow tcp"]).unwrap();
        assert_eq!(f.classify(&Packet::from_data(&ip(17, IN, OUT, &udp(1, 2)))), None);
        assert_eq!(f.classify(&Packet::from_data(&ip(6, IN, OUT, &tcp(1, 2, 0)))), Some(0));
        let f = IPFilter::from_rules(&[]).unwrap();
        assert_eq!(f.program(), "all->[X]\nsafe length 0\nalignment offset 0\n");
        assert_eq!(f.port_count().unwrap().outputs.min, 0);
        let mut h = Harness::new(make("").unwrap(), 1, 1);
        h.push(0, batch(&[ip(6, IN, OUT, &tcp(1, 2, 0))]));
        assert_eq!(h.count(0), 0);
    }

    #[test]
    fn click_edge_case_programs() {
        for (rules, want) in [
            (&["allow false"][..], "all->[X]\nsafe length 0\nalignment offset 0\n"),
            (
                &["allow false", "allow false", "allow false", "allow true"][..],
                "all->[0]\nsafe length 0\nalignment offset 0\n",
            ),
            (
                &["allow false", "allow false", "allow src 10.0.0.1"][..],
                " 0 268/0a000001%ffffffff  yes->[0]  no->[X]\nsafe length 272\nalignment offset 0\n",
            ),
            (
                &[
                    "allow tcp && dst 10.0.0.0/32 && src 2.0.0.0/32",
                    "allow tcp && dst 10.0.0.0/32 && dst port 80 && src 2.0.0.0/32",
                    "allow all",
                ][..],
                "all->[0]\nsafe length 0\nalignment offset 0\n",
            ),
        ] {
            assert_eq!(IPFilter::from_rules(rules).unwrap().program(), want, "{rules:?}");
        }
    }

    #[test]
    fn hundred_net_rules_cost_what_one_does() {
        let mut rules: Vec<String> = (0..100)
            .map(|i| format!("deny src net 10.{i}.0.0/16 and udp dst port {}", 1000 + i))
            .collect();
        rules.push("allow all".into());
        let texts: Vec<&str> = rules.iter().map(String::as_str).collect();
        let many = IPFilter::from_rules(&texts).unwrap();
        let one = IPFilter::from_rules(&[texts[42], "allow all"]).unwrap();
        let pkt = |src: [u8; 4], dport| Packet::from_data(&ip(17, src, OUT, &udp(9, dport)));
        for (p, want) in [
            (pkt([10, 42, 7, 7], 1042), None),
            (pkt([10, 42, 7, 7], 1043), Some(0)),
            (pkt([10, 43, 7, 7], 1042), Some(0)),
            (pkt([10, 43, 7, 7], 1043), None),
            (pkt([192, 168, 0, 1], 1042), Some(0)),
        ] {
            assert_eq!(many.classify(&p), want);
            // At most one dispatch more than the one-rule filter's path.
            assert!(many.path_len(&p) <= 3, "{}", many.path_len(&p));
        }
        let miss = pkt([192, 168, 0, 1], 53);
        assert_eq!((many.path_len(&miss), one.path_len(&miss)), (1, 1));
        let first = many.program().lines().next().unwrap().to_string();
        assert!(first.starts_with(" 0 268/0a000000|0a010000|"), "{first}");
        assert_eq!(first.matches('|').count(), 2 * 99, "one step dispatches all 100 nets");
    }

    #[test]
    fn rule_sets_too_big_to_expand_whole_stay_exact() {
        // Disjunctive rules on shared words would specialise into a huge
        // program: they are compiled in chunks, and must still give the
        // first match.
        use super::super::ip_pattern::{parse_rule, tests::reference};
        let texts: Vec<String> = (0..160)
            .map(|i| {
                let action = ["allow", "deny", "1", "2"][i % 4];
                format!(
                    "{action} (src port {} or dst port {}) and (ip ttl > {} or not syn) and ip[{}] & 1 == 1",
                    i % 37,
                    i % 41,
                    i % 200,
                    i % 20
                )
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let f = IPFilter::from_rules(&refs).unwrap();
        assert!(f.program.len() > 100, "expanded at least in part");
        let parsed: Vec<_> = refs.iter().map(|r| parse_rule(r).unwrap()).collect();
        let mut seed = 7u64;
        let mut rnd = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..3000 {
            let mut p = ip(
                6,
                IN,
                OUT,
                &tcp(rnd(45) as u16, rnd(45) as u16, [2, 0x10, 0x12][rnd(3) as usize]),
            );
            p[8] = rnd(256) as u8;
            for b in p.iter_mut().take(20).skip(12) {
                *b |= rnd(2) as u8;
            }
            let want = parsed
                .iter()
                .find(|(_, pat)| reference::pattern(pat, &p))
                .and_then(|r| r.0);
            assert_eq!(f.classify(&Packet::from_data(&p)), want.map(|o| o as usize), "{p:?}");
        }
    }

    #[test]
    fn malformed_packets_never_panic() {
        let f = IPFilter::from_rules(&[
            "0 port != 80",
            "1 not tcp[13] & 2 != 0",
            "2 ip[0] & 0xf0 == 0x60",
            "3 transp[40:4] > 5",
            "deny ip frag",
            "allow -",
        ])
        .unwrap();
        let good = ip(6, IN, OUT, &tcp(80, 81, 2));
        let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        let mut ihl15 = good.clone();
        ihl15[0] = 0x4f;
        let mut ihl3 = good.clone();
        ihl3[0] = 0x43;
        let mut huge_len = good.clone();
        huge_len[2..4].copy_from_slice(&0xffffu16.to_be_bytes());
        cases.extend([v6, ihl15, ihl3, huge_len, vec![0xff; 3]]);
        for c in &cases {
            let mut p = Packet::from_data(c);
            let _ = f.classify(&p);
            // A network-header annotation past the data is ignored too.
            p.set_network_header(c.len(), 20);
            let _ = f.classify(&p);
        }
        // IPv6 matches only what needs no IPv4 field.
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        assert_eq!(f.classify(&Packet::from_data(&v6)), Some(1));
    }

    #[test]
    fn bad_rules_are_config_errors() {
        let e = make("allow tcp, deny src host 10.0.0.300").err().unwrap();
        assert_eq!(
            e,
            "'f :: IPFilter': pattern 1 'deny src host 10.0.0.300': bad address or prefix '10.0.0.300'"
        );
        let e = make("permit tcp").err().unwrap();
        assert!(e.contains("unknown action 'permit'"), "{e}");
        let e = make("allow tcp port 80 or").err().unwrap();
        assert!(e.contains("missing expression after 'or'"), "{e}");
    }

    #[test]
    fn too_complex_rules_are_config_errors() {
        let deep = super::super::ip_pattern::tests::nested_conditions(40, "tcp");
        let e = make(&format!("allow udp, deny {deep}")).err().unwrap();
        assert!(
            e.starts_with("'f :: IPFilter': pattern 1 'deny (") && e.contains("pattern too complex"),
            "{e}"
        );
        let e = IPFilter::from_rules(&["allow udp", &format!("deny {deep}")])
            .err()
            .unwrap();
        assert!(e.starts_with("pattern 1 ") && e.contains("pattern too complex"), "{e}");
    }

    #[test]
    fn program_handler_reads_the_program() {
        let elem = make("allow udp dst port 53, deny all").unwrap();
        let h = elem.handlers();
        assert_eq!(h[0].name, "program");
        assert_eq!(
            (h[0].read.as_ref().unwrap())(),
            " 0 264/00110000%00ff0000  yes->step 1  no->[X]\n \
             1 512/00000035%0000ffff  yes->[0]  no->[X]\n\
             safe length 516\nalignment offset 0\n"
        );
    }
}
