use super::classification::{Expr, Listing, Program, Space, Test, Windows};
use super::scatter::Scatter;
use std::sync::Arc;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, PortCount};

documented! {
    /// Sends each packet to the output of the first pattern it matches;
    /// packets that match none are dropped.
    ///
    /// The patterns are compiled once into a decision program, as Click's
    /// Classifier does: tests that several patterns share are made once,
    /// and patterns that compare the same bytes against different values
    /// are dispatched in one table lookup.
    ///
    /// # Ports
    /// One input; one output per pattern; push.
    ///
    /// # Arguments
    /// - `PATTERN...` (positional): each a space-separated list of terms
    ///   `OFFSET/VALUE` or `OFFSET/VALUE%MASK` (VALUE and MASK in hex, `?`
    ///   for a don't-care nibble), all of which must match; `!` before a
    ///   term negates it; `-` matches every packet. Bytes beyond the end of
    ///   a short packet never match (so a negated term on them does).
    ///
    /// # Handlers
    /// - `program` (read): the compiled decision program, in Click's
    ///   format: one step per line, `N OFFSET/VALUE%MASK  yes->J  no->J`
    ///   over 32-bit words, J being `step N`, an output `[N]` or `[X]`
    ///   (drop); a step that dispatches on several values lists them as
    ///   `V1|V2%MASK  yes->J1|J2`; then `safe length` and
    ///   `alignment offset`.
    ///
    /// # Example
    /// ```text
    /// c :: Classifier(12/0806, 12/0800 23/11, -);  // ARP, IPv4/UDP, rest
    /// ```
    pub struct Classifier {
        program: Arc<Program>,
        outputs: usize,
        scatter: Scatter,
    }
}

/// One term: bytes at an offset, each with a mask, all of which must
/// match; `negate` inverts the term.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    offset: usize,
    value: Vec<u8>,
    mask: Vec<u8>,
    negate: bool,
}

/// Offsets past this cannot be in any packet.
const MAX_OFFSET: usize = 0xffff;

impl Term {
    /// The naive reading, kept as the reference the compiled program is
    /// checked against.
    #[cfg(test)]
    fn matches(&self, data: &[u8]) -> bool {
        let hit = data
            .get(self.offset..self.offset.saturating_add(self.value.len()))
            .is_some_and(|bytes| {
                bytes
                    .iter()
                    .zip(&self.value)
                    .zip(&self.mask)
                    .all(|((b, v), m)| b & m == *v)
            });
        hit != self.negate
    }

    /// The term as word tests, one per 4-byte word it touches. Each test
    /// needs the term's bytes in its word to be present, masked or not.
    fn to_expr(&self) -> Expr {
        let mut words: Vec<Test> = Vec::new();
        for (i, (&v, &m)) in self.value.iter().zip(&self.mask).enumerate() {
            let at = (self.offset + i) as u32;
            let shift = 8 * (3 - (at % 4));
            let word = at & !3;
            match words.last_mut() {
                Some(t) if t.off == word => {
                    t.mask |= u32::from(m) << shift;
                    t.value |= u32::from(v & m) << shift;
                    t.end = at + 1;
                }
                _ => words.push(Test::new(
                    Space::Data,
                    word,
                    u32::from(m) << shift,
                    u32::from(v & m) << shift,
                    at + 1,
                )),
            }
        }
        let all = Expr::And(words.into_iter().map(Expr::Test).collect());
        if self.negate {
            all.negate()
        } else {
            all
        }
    }
}

fn parse_term(text: &str) -> Result<Term, String> {
    let (negate, t) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (off, rest) = t.split_once('/').ok_or("expected OFFSET/VALUE")?;
    let offset: usize = off.parse().map_err(|_| format!("bad offset '{off}'"))?;
    let (val, mask) = match rest.split_once('%') {
        Some((v, m)) => (v, Some(m)),
        None => (rest, None),
    };
    if val.is_empty() || !val.len().is_multiple_of(2) {
        return Err(format!("value '{val}' must be an even number of hex digits"));
    }
    let mut value = Vec::new();
    let mut vmask = Vec::new();
    for pair in val.as_bytes().chunks(2) {
        let (mut v, mut m) = (0u8, 0u8);
        for &c in pair {
            v <<= 4;
            m <<= 4;
            if c != b'?' {
                let d = (c as char)
                    .to_digit(16)
                    .ok_or_else(|| format!("bad hex digit '{}' in '{val}'", c as char))?;
                v |= d as u8;
                m |= 0xf;
            }
        }
        value.push(v);
        vmask.push(m);
    }
    if let Some(m) = mask {
        if m.len() != val.len() {
            return Err(format!("mask '{m}' must be as long as value '{val}'"));
        }
        for (i, pair) in m.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| "bad mask")?;
            vmask[i] &= u8::from_str_radix(s, 16).map_err(|_| format!("bad hex in mask '{m}'"))?;
        }
    }
    // Checked: an offset near usize::MAX must be an error, not a wrap.
    if !matches!(offset.checked_add(value.len()), Some(end) if end <= MAX_OFFSET) {
        return Err(format!("offset {offset} is past the largest packet"));
    }
    for (v, m) in value.iter_mut().zip(&vmask) {
        *v &= m;
    }
    Ok(Term {
        offset,
        value,
        mask: vmask,
        negate,
    })
}

/// A pattern's terms (all must match); none for `-`.
fn parse_pattern(text: &str) -> Result<Vec<Term>, String> {
    if text.trim() == "-" {
        return Ok(Vec::new());
    }
    let terms = text.split_whitespace().map(parse_term).collect::<Result<Vec<_>, _>>()?;
    if terms.is_empty() {
        return Err("is empty (use '-' to match everything)".into());
    }
    Ok(terms)
}

fn compile(patterns: &[Vec<Term>]) -> Program {
    let rules: Vec<(Expr, Option<u32>)> = patterns
        .iter()
        .enumerate()
        .map(|(i, terms)| (Expr::And(terms.iter().map(Term::to_expr).collect()), Some(i as u32)))
        .collect();
    Program::compile(&rules, Listing::Data)
}

impl Classifier {
    pub const CLASS: ElementClass = ElementClass {
        name: "Classifier",
        ports: "1/-",
        processing: "h/h",
        doc: Classifier::DOC,
        factory: Classifier::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let raw = args.rest_positional();
        if raw.is_empty() {
            args.error(None, "at least one pattern is required");
            return None;
        }
        let mut patterns = Vec::new();
        for (i, (text, span)) in raw.iter().enumerate() {
            match parse_pattern(text) {
                Ok(p) => patterns.push(p),
                Err(e) => args.error(Some(*span), format!("pattern {i}: {e}")),
            }
        }
        if args.has_errors() {
            return None;
        }
        Some(Box::new(Classifier::from_terms(&patterns)))
    }

    fn from_terms(patterns: &[Vec<Term>]) -> Classifier {
        Classifier {
            program: Arc::new(compile(patterns)),
            outputs: patterns.len(),
            scatter: Scatter::new(),
        }
    }

    /// A Classifier from pattern texts (for benchmarks and fuzzing); the
    /// error names the first bad pattern.
    pub fn from_patterns(patterns: &[&str]) -> Result<Classifier, String> {
        let parsed = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| parse_pattern(p).map_err(|e| format!("pattern {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Classifier::from_terms(&parsed))
    }

    /// The output for packet data, or `None` if it matches no pattern.
    #[inline]
    pub fn classify(&self, data: &[u8]) -> Option<usize> {
        self.program.run(data, &Windows::data(data.len()))
    }

    /// The compiled program, as the `program` handler prints it.
    pub fn program(&self) -> String {
        self.program.unparse()
    }
}

impl Element for Classifier {
    fn port_count(&self) -> Option<PortCount> {
        Some(PortCount::exactly(1, self.outputs as u32))
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.program
            .push(&mut self.scatter, batch, cx, |p| Windows::data(p.len()));
    }

    fn handlers(&self) -> Vec<Handler> {
        let program = self.program.clone();
        vec![Handler::read_only("program", move || program.unparse()).merged(switchyard_core::Merge::Same)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use switchyard_core::{Harness, Packet};

    fn classifier(config: &str) -> Classifier {
        let mut args = Args::parse_str("c :: Classifier", config);
        let made = Classifier::make(&mut args);
        assert!(args.complete().is_ok());
        let raw: Vec<&str> = switchyard_lang::config::split_args(config)
            .into_iter()
            .map(|a| a.text)
            .collect();
        assert!(made.is_some());
        Classifier::from_patterns(&raw).unwrap()
    }

    #[test]
    fn first_matching_pattern_wins() {
        let c = classifier("12/0806, 12/0800 23/11, -");
        let mut ipv4_udp = vec![0u8; 34];
        ipv4_udp[12] = 8;
        ipv4_udp[23] = 0x11;
        assert_eq!(c.classify(&ipv4_udp), Some(1));
        let mut arp = vec![0u8; 14];
        arp[12..14].copy_from_slice(&[8, 6]);
        assert_eq!(c.classify(&arp), Some(0));
        assert_eq!(c.classify(&[1, 2, 3]), Some(2));
    }

    #[test]
    fn masks_wildcards_negation_and_short_packets() {
        let t = parse_term("0/f0%f0").unwrap();
        assert!(t.matches(&[0xf7]));
        assert!(!t.matches(&[0x07]));
        assert!(!t.matches(&[]), "short packet must not match");
        let t = parse_term("0/1?").unwrap();
        assert!(t.matches(&[0x1a]));
        assert!(parse_term("!0/00").unwrap().matches(&[1]));
        assert!(parse_term("0/0").is_err());
        assert!(parse_term("x/00").is_err());
        assert!(parse_term("0/zz").is_err());
        // The same through compiled programs.
        let c = classifier("0/f0%f0, 1/1?, !2/00, 3/??");
        assert_eq!(c.classify(&[0xf7]), Some(0));
        assert_eq!(c.classify(&[0x07, 0x1a]), Some(1));
        assert_eq!(
            c.classify(&[0x07, 0x2a]),
            Some(2),
            "a negated term matches a short packet"
        );
        assert_eq!(c.classify(&[0x07, 0x2a, 0]), None, "2/00 present, 3/?? absent");
        assert_eq!(c.classify(&[0x07, 0x2a, 0, 9]), Some(3), "?? needs its byte present");
        assert_eq!(c.classify(&[]), Some(2));
    }

    #[test]
    fn bad_pattern_is_a_config_error() {
        let mut args = Args::parse_str("c :: Classifier", "12/08x0, -");
        assert!(Classifier::make(&mut args).is_none());
        let errs = args.complete().unwrap_err();
        assert!(
            errs[0].message.contains("pattern 0: bad hex digit 'x'"),
            "{}",
            errs[0].message
        );
        let mut args = Args::parse_str("c :: Classifier", "-, 99999/00");
        assert!(Classifier::make(&mut args).is_none());
        assert!(args.complete().unwrap_err()[0]
            .message
            .contains("pattern 1: offset 99999"));
    }

    #[test]
    fn huge_offsets_are_config_errors_not_overflows() {
        for (text, off) in [
            ("18446744073709551615/00", "18446744073709551615"),
            ("18446744073709551614/0000", "18446744073709551614"),
            ("!18446744073709551615/00%ff", "18446744073709551615"),
            ("65535/00", "65535"),
        ] {
            let e = parse_term(text).unwrap_err();
            assert!(e.contains(&format!("offset {off}")), "{text}: {e}");
        }
        let mut args = Args::parse_str("c :: Classifier", "-, 18446744073709551615/00");
        assert!(Classifier::make(&mut args).is_none());
        assert!(args.complete().unwrap_err()[0]
            .message
            .contains("pattern 1: offset 18446744073709551615"));
        // The last byte a packet can have is still accepted.
        let t = parse_term("65534/ab").unwrap();
        assert!(t.matches(&vec![0xab; 65535]));
        assert!(!t.matches(&[0xab; 4]));
    }

    #[test]
    fn program_handler_prints_click_format() {
        let c = classifier("12/0806 20/0001, 12/0806 20/0002, 12/0800, -");
        let text = (c.handlers()[0].read.as_ref().unwrap())();
        assert_eq!(
            text,
            " 0  12/08000000|08060000%ffff0000  yes->[2]|step 1  no->[3]\n \
             1  20/00010000|00020000%ffff0000  yes->[0]|[1]  no->[3]\n\
             safe length 22\nalignment offset 0\n"
        );
        let c = classifier("12/0800 !23/06");
        assert_eq!(
            c.program(),
            " 0  12/08000000%ffff0000  yes->step 1  no->[X]\n \
             1  20/00000006%000000ff  yes->[X]  no->[0]\n\
             safe length 24\nalignment offset 0\n"
        );
        assert_eq!(
            classifier("-").program(),
            "all->[0]\nsafe length 0\nalignment offset 0\n"
        );
    }

    #[test]
    fn pushes_split_batches_by_output() {
        let c = classifier("12/0806, 12/0800, -");
        let mut h = Harness::new(Box::new(c), 1, 3);
        let mut b = Batch::new();
        for t in [[8u8, 6], [8, 0], [8, 6], [0x86, 0xdd]] {
            let mut f = vec![0u8; 60];
            f[12..14].copy_from_slice(&t);
            b.push(Packet::from_data(&f));
        }
        b.push(Packet::from_data(&[]));
        h.push(0, b);
        assert_eq!((h.count(0), h.count(1), h.count(2)), (2, 1, 2));
        // A batch bound for one output passes whole.
        let mut b = Batch::new();
        b.push(Packet::from_data(&[0u8; 14]));
        h.push(0, b);
        assert_eq!(h.take(2).len(), 1);
    }

    fn arb_term() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            0usize..12,
            prop::collection::vec((0u8..4, any::<bool>()), 1..5),
            any::<bool>(),
        )
            .prop_map(|(neg, off, bytes, masked)| {
                let value: String = bytes
                    .iter()
                    .map(|&(v, wild)| if wild { "?0".to_string() } else { format!("{v:02x}") })
                    .collect();
                let mut s = format!("{}{off}/{value}", if neg { "!" } else { "" });
                if masked {
                    s.push('%');
                    s.push_str(&"f3".repeat(bytes.len()));
                }
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn program_agrees_with_the_naive_reading(
            patterns in prop::collection::vec(
                prop_oneof![1 => Just("-".to_string()),
                            6 => prop::collection::vec(arb_term(), 1..4).prop_map(|t| t.join(" "))],
                1..6),
            packets in prop::collection::vec(prop::collection::vec(0u8..4, 0..18), 1..20),
        ) {
            let texts: Vec<&str> = patterns.iter().map(String::as_str).collect();
            let c = Classifier::from_patterns(&texts).unwrap();
            let parsed: Vec<Vec<Term>> = texts.iter().map(|p| parse_pattern(p).unwrap()).collect();
            for pkt in &packets {
                let want = parsed.iter().position(|terms| terms.iter().all(|t| t.matches(pkt)));
                prop_assert_eq!(c.classify(pkt), want, "{:?} {:?}\n{}", texts, pkt, c.program());
            }
        }
    }
}
