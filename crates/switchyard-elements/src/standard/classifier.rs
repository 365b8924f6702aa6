use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, PortCount};

documented! {
    /// Sends each packet to the output of the first pattern it matches;
    /// packets that match none are dropped.
    ///
    /// # Ports
    /// One input; one output per pattern; push.
    ///
    /// # Arguments
    /// - `PATTERN...` (positional): each a space-separated list of terms
    ///   `OFFSET/VALUE` or `OFFSET/VALUE%MASK` (VALUE and MASK in hex, `?`
    ///   for a don't-care nibble), all of which must match; `!` before a
    ///   term negates it; `-` matches every packet. Bytes beyond the end of
    ///   a short packet never match.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// c :: Classifier(12/0806, 12/0800 23/11, -);  // ARP, IPv4/UDP, rest
    /// ```
    pub struct Classifier {
        patterns: Vec<Vec<Term>>,
        scratch: Vec<Option<Batch>>,
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Term {
    offset: usize,
    value: Vec<u8>,
    mask: Vec<u8>,
    negate: bool,
}

impl Term {
    #[inline]
    fn matches(&self, data: &[u8]) -> bool {
        let hit = data
            .get(self.offset..self.offset + self.value.len())
            .is_some_and(|bytes| {
                bytes
                    .iter()
                    .zip(&self.value)
                    .zip(&self.mask)
                    .all(|((b, v), m)| b & m == *v)
            });
        hit != self.negate
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
            if text.trim() == "-" {
                patterns.push(Vec::new());
                continue;
            }
            let terms: Result<Vec<Term>, String> = text.split_whitespace().map(parse_term).collect();
            match terms {
                Ok(t) if !t.is_empty() => patterns.push(t),
                Ok(_) => args.error(
                    Some(*span),
                    format!("pattern {i} is empty (use '-' to match everything)"),
                ),
                Err(e) => args.error(Some(*span), format!("pattern {i}: {e}")),
            }
        }
        if args.has_errors() {
            return None;
        }
        let n = patterns.len();
        Some(Box::new(Classifier {
            patterns,
            scratch: (0..n).map(|_| None).collect(),
        }))
    }

    fn classify(&self, data: &[u8]) -> Option<usize> {
        self.patterns
            .iter()
            .position(|terms| terms.iter().all(|t| t.matches(data)))
    }
}

impl Element for Classifier {
    fn port_count(&self) -> Option<PortCount> {
        Some(PortCount::exactly(1, self.patterns.len() as u32))
    }

    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        for p in batch.drain() {
            if let Some(out) = self.classify(p.data()) {
                self.scratch[out].get_or_insert_with(Batch::new).push(p);
            }
        }
        drop(batch);
        for out in 0..self.scratch.len() {
            if let Some(b) = self.scratch[out].take() {
                cx.push(out, b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(config: &str) -> Classifier {
        let mut args = Args::parse_str("c :: Classifier", config);
        let made = Classifier::make(&mut args);
        assert!(args.complete().is_ok());
        let _ = made;
        let mut args = Args::parse_str("c :: Classifier", config);
        let raw = args.rest_positional();
        let patterns = raw
            .iter()
            .map(|(t, _)| {
                if t == "-" {
                    Vec::new()
                } else {
                    t.split_whitespace().map(|x| parse_term(x).unwrap()).collect()
                }
            })
            .collect::<Vec<_>>();
        let n = patterns.len();
        Classifier {
            patterns,
            scratch: (0..n).map(|_| None).collect(),
        }
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
    }
}
