//! Input specs and rewrite patterns (Click's `IPRewriterInput` and
//! `IPRewriterPattern`).
//!
//! A pattern is `SADDR SPORT DADDR DPORT` (or `SADDR DADDR`, addresses
//! only): each field is a value or `-` (unchanged); the source port, or in
//! the two-word form the source address, may be a range from which a
//! value is chosen so that the new mapping's reply key is free. A pattern
//! is shared (an `Arc`) between the inputs that name it; its sequential
//! position is an atomic, so rewriters on different threads may share it.
//!
//! # Named patterns
//! Click finds a pattern name through the configuration's name scope,
//! filled by IPRewriterPatterns. Here the same: IPRewriterPatterns lends
//! each pattern under its name ([`Element::exports`]), and a rewriter
//! looks its names up in that configuration's scope
//! ([`Element::resolve`]) once every element is configured, so the order
//! of declarations does not matter, and a configuration (a reload's
//! included) sees only its own names. A rewriter keeps the patterns it
//! resolved.
//!
//! [`Element::exports`]: switchyard_core::Element::exports
//! [`Element::resolve`]: switchyard_core::Element::resolve

use super::flow::{FlowId, Key};
use crate::rng::Rng;
use crate::wire::{parse_ip, IpAddr, IpPrefix};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

/// A range a pattern chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Variation {
    /// Chooses the source port (else the source address).
    on_port: bool,
    base: u32,
    /// Values are `base ..= base + top`.
    top: u32,
    /// `#`: in turn, from where the last choice left off.
    sequential: bool,
    /// Prefer the packet's own value when it is in the range (unless `#`
    /// or `?`).
    same_first: bool,
}

/// A rewrite pattern.
#[derive(Debug)]
pub struct Pattern {
    saddr: Option<u32>,
    sport: Option<u16>,
    daddr: Option<u32>,
    dport: Option<u16>,
    /// Written with ports (the four-word form).
    napt: bool,
    var: Option<Variation>,
    next: AtomicU32,
}

/// A pattern's words: the pattern itself, or the name of one.
pub enum Parsed {
    Pattern(Pattern),
    Name(String),
}

/// Strips a trailing `#` (sequential) or `?` (random), returning the
/// rest and the (sequential, same_first) flags.
fn flags(word: &str) -> (&str, bool, bool) {
    if let Some(w) = word.strip_suffix('#') {
        (w, true, false)
    } else if let Some(w) = word.strip_suffix('?') {
        (w, false, false)
    } else {
        (word, false, true)
    }
}

/// A source address field: `-`, an address, `A-B`, or a prefix (whose
/// network and broadcast addresses are left out, as in Click).
fn source_address(word: &str) -> Option<(Option<u32>, Option<Variation>)> {
    if word == "-" {
        return Some((None, None));
    }
    let (w, sequential, same_first) = flags(word);
    let var = |base: u32, top: u32| Variation {
        on_port: false,
        base,
        top,
        sequential,
        same_first,
    };
    let (base, top) = if let Some((a, b)) = w.split_once('-') {
        let (a, b) = (parse_ip(a)?, parse_ip(b)?);
        (a, b.checked_sub(a)?)
    } else if w.contains('/') {
        let p = IpPrefix::parse(w)?;
        if p.addr == 0 || p.mask == 0 {
            return None;
        }
        match p.len() {
            32 => (p.addr, 0),
            31 => (p.addr & p.mask, 1),
            _ => ((p.addr & p.mask) | 1, !p.mask - 2),
        }
    } else {
        (parse_ip(w)?, 0)
    };
    if base == 0 {
        return None;
    }
    Some((Some(base), (top > 0).then(|| var(base, top))))
}

/// A port: 1 to 65535.
fn port(word: &str) -> Option<u16> {
    word.parse::<u16>().ok().filter(|&p| p > 0)
}

/// A source port field: `-`, a port, or `L-H`.
fn source_port(word: &str) -> Option<(Option<u16>, Option<Variation>)> {
    if word == "-" {
        return Some((None, None));
    }
    let (w, sequential, same_first) = flags(word);
    match w.split_once('-') {
        Some((l, h)) => {
            let (l, h) = (l.parse::<u16>().ok()?, h.parse::<u16>().ok()?);
            let top = h.checked_sub(l)?;
            let var = Variation {
                on_port: true,
                base: u32::from(l),
                top: u32::from(top),
                sequential,
                same_first,
            };
            Some((Some(l), (top > 0).then_some(var)))
        }
        None => Some((Some(port(w)?), None)),
    }
}

impl Pattern {
    /// Parses a pattern's words: `SADDR SPORT DADDR DPORT`, `SADDR DADDR`,
    /// or one word naming a pattern of IPRewriterPatterns. The errors are
    /// Click's.
    pub fn parse(words: &[&str]) -> Result<Parsed, String> {
        let (s, sp, d, dp) = match *words {
            [name] => return Ok(Parsed::Name(name.to_string())),
            [s, d] => (s, None, d, None),
            [s, sp, d, dp] => (s, Some(sp), d, Some(dp)),
            _ => return Err("syntax error".into()),
        };
        let (saddr, avar) = source_address(s).ok_or("bad source address")?;
        let (sport, pvar) = match sp {
            Some(w) => source_port(w).ok_or("bad source port")?,
            None => (None, None),
        };
        if avar.is_some() && pvar.is_some() {
            return Err("bad source port: only one of the source address and port may be a range".into());
        }
        let daddr = match d {
            "-" => None,
            w => Some(parse_ip(w).filter(|&a| a != 0).ok_or("bad destination address")?),
        };
        let dport = match dp {
            None | Some("-") => None,
            Some(w) => Some(port(w).ok_or("bad destination port")?),
        };
        Ok(Parsed::Pattern(Pattern {
            saddr,
            sport,
            daddr,
            dport,
            napt: sp.is_some(),
            var: avar.or(pvar),
            next: AtomicU32::new(0),
        }))
    }

    /// The flow a new mapping for `flow` rewrites to, choosing from the
    /// pattern's range a value whose reply key (on `map`) `taken` says is
    /// free; None if the range is exhausted. `rng` is the caller's
    /// generator.
    pub fn rewrite(&self, flow: FlowId, map: u8, rng: &mut Rng, taken: impl Fn(&Key) -> bool) -> Option<FlowId> {
        let mut rw = flow;
        if let Some(a) = self.saddr {
            rw.saddr = a;
        }
        if let Some(p) = self.sport {
            rw.sport = p;
        }
        if let Some(a) = self.daddr {
            rw.daddr = a;
        }
        if let Some(p) = self.dport {
            rw.dport = p;
        }
        let Some(v) = self.var else {
            return Some(rw);
        };
        let with = |val: u32| {
            let mut r = rw;
            if v.on_port {
                r.sport = (v.base + val) as u16;
            } else {
                r.saddr = v.base.wrapping_add(val);
            }
            r
        };
        let free = |r: FlowId| !taken(&Key { map, flow: r.reverse() });
        let span = u64::from(v.top) + 1;
        if v.same_first {
            let own = if v.on_port { u32::from(flow.sport) } else { flow.saddr };
            let val = own.wrapping_sub(v.base);
            if val <= v.top && free(with(val)) {
                self.next.store(val.wrapping_add(1), Relaxed);
                return Some(with(val));
            }
        }
        let mut val = if v.sequential {
            let n = self.next.load(Relaxed);
            if n > v.top {
                0
            } else {
                n
            }
        } else {
            rng.below(span) as u32
        };
        // Every taken value is a live mapping, so a free one turns up
        // within (table size + 1) steps; a port range bounds it anyway.
        let mut left = span;
        while left > 0 {
            if free(with(val)) {
                self.next.store(val.wrapping_add(1), Relaxed);
                return Some(with(val));
            }
            val = if val == v.top { 0 } else { val + 1 };
            left -= 1;
        }
        None
    }

    /// The pattern as a configuration writes it.
    pub fn unparse(&self) -> String {
        let suffix = |v: &Variation| match (v.sequential, v.same_first) {
            (true, _) => "#",
            (false, false) => "?",
            (false, true) => "",
        };
        let mut s = String::new();
        match (self.saddr, self.var) {
            (Some(a), Some(v)) if !v.on_port => {
                s += &format!("{}-{}{}", IpAddr(a), IpAddr(a.wrapping_add(v.top)), suffix(&v))
            }
            (Some(a), _) => s += &IpAddr(a).to_string(),
            (None, _) => s.push('-'),
        }
        if self.napt {
            match (self.sport, self.var) {
                (Some(p), Some(v)) if v.on_port => s += &format!(" {}-{}{}", p, u32::from(p) + v.top, suffix(&v)),
                (Some(p), _) => s += &format!(" {p}"),
                (None, _) => s += " -",
            }
        }
        match self.daddr {
            Some(a) => s += &format!(" {}", IpAddr(a)),
            None => s += " -",
        }
        if self.napt {
            match self.dport {
                Some(p) => s += &format!(" {p}"),
                None => s += " -",
            }
        }
        s
    }
}

/// What an input does with a packet that has no mapping.
#[derive(Clone, Debug)]
pub enum Spec {
    /// `drop`, `discard`.
    Drop,
    /// `pass N` (`passthrough`, `nochange`): to output N, unchanged, no
    /// mapping.
    Pass(u16),
    /// `keep F R`: a mapping that changes nothing.
    Keep(u16, u16),
    /// `pattern ... F R`, resolved.
    Pattern(Arc<Pattern>, u16, u16),
    /// `pattern NAME F R` or `NAME F R`, until initialize resolves it.
    Named(String, u16, u16),
}

impl Spec {
    /// Parses one input spec; the error is without the `input spec N: `
    /// prefix.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some((&first, rest)) = words.split_first() else {
            return Err("empty argument".into());
        };
        match first {
            "pass" | "passthrough" | "nochange" => match rest {
                [] => Ok(Spec::Pass(0)),
                [n] => n
                    .parse()
                    .map(Spec::Pass)
                    .map_err(|_| format!("syntax error, expected '{first} [OUTPUT]'")),
                _ => Err(format!("syntax error, expected '{first} [OUTPUT]'")),
            },
            "drop" | "discard" if rest.is_empty() => Ok(Spec::Drop),
            "drop" | "discard" => Err(format!("syntax error, expected '{first}'")),
            "keep" => {
                let (f, r) = outputs(rest)?;
                Ok(Spec::Keep(f, r))
            }
            "pattern" | "xpattern" => {
                if rest.len() <= 2 {
                    return Err("syntax error".into());
                }
                let (pat, ports) = rest.split_at(rest.len() - 2);
                let parsed = Pattern::parse(pat)?;
                let (f, r) = outputs(ports)?;
                Ok(match parsed {
                    Parsed::Pattern(p) => Spec::Pattern(Arc::new(p), f, r),
                    Parsed::Name(n) => Spec::Named(n, f, r),
                })
            }
            name if rest.len() == 2 && is_name(name) => {
                let (f, r) = outputs(rest)?;
                Ok(Spec::Named(name.to_string(), f, r))
            }
            _ => Err("unknown specification".into()),
        }
    }

    /// The outputs the spec sends to.
    pub fn outputs(&self) -> Vec<u16> {
        match self {
            Spec::Drop => Vec::new(),
            Spec::Pass(o) => vec![*o],
            Spec::Keep(f, r) | Spec::Pattern(_, f, r) | Spec::Named(_, f, r) => vec![*f, *r],
        }
    }

    /// Click's `patterns` form: `<drop>`, `<nochange>`, `<keep>`, or the
    /// pattern.
    pub fn unparse(&self) -> String {
        match self {
            Spec::Drop => "<drop>".into(),
            Spec::Pass(_) => "<nochange>".into(),
            Spec::Keep(..) => "<keep>".into(),
            Spec::Pattern(p, ..) => p.unparse(),
            Spec::Named(n, ..) => format!("<unresolved {n}>"),
        }
    }
}

fn outputs(words: &[&str]) -> Result<(u16, u16), String> {
    let [f, r] = words else {
        return Err("bad forward port".into());
    };
    let f = f.parse().map_err(|_| "bad forward port")?;
    let r = r.parse().map_err(|_| "bad reply port")?;
    Ok((f, r))
}

/// A pattern name: a letter or `_`, then letters, digits, `_`, `-`, `/`.
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        let words: Vec<&str> = text.split_whitespace().collect();
        match Pattern::parse(&words) {
            Ok(Parsed::Pattern(p)) => p,
            Ok(Parsed::Name(n)) => panic!("a name: {n}"),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn flow() -> FlowId {
        FlowId::new(0x0a00_0002, 5000, 0x0808_0808, 53)
    }

    #[test]
    fn fixed_fields_and_dashes() {
        let p = pattern("1.0.0.1 20 - -");
        let mut rng = Rng::seeded(1);
        let r = p.rewrite(flow(), 0, &mut rng, |_| false).unwrap();
        assert_eq!(r, FlowId::new(0x0100_0001, 20, 0x0808_0808, 53));
        assert_eq!(p.unparse(), "1.0.0.1 20 - -");
        let p = pattern("- - 2.0.0.2 80");
        let r = p.rewrite(flow(), 0, &mut rng, |_| false).unwrap();
        assert_eq!(r, FlowId::new(0x0a00_0002, 5000, 0x0200_0002, 80));
    }

    #[test]
    fn port_ranges_prefer_the_source_then_go_in_turn_or_at_random() {
        let p = pattern("1.0.0.1 4000-5999 - -");
        let mut rng = Rng::seeded(7);
        assert_eq!(p.rewrite(flow(), 0, &mut rng, |_| false).unwrap().sport, 5000);
        // 5000 taken: somewhere else in range.
        let taken = |k: &Key| k.flow.dport == 5000;
        let r = p.rewrite(flow(), 0, &mut rng, taken).unwrap();
        assert!((4000..=5999).contains(&r.sport) && r.sport != 5000);
        let seq = pattern("1.0.0.1 1024-1026# - -");
        let got: Vec<u16> = (0..4)
            .map(|_| seq.rewrite(flow(), 0, &mut rng, |_| false).unwrap().sport)
            .collect();
        assert_eq!(got, [1024, 1025, 1026, 1024]);
        assert_eq!(seq.unparse(), "1.0.0.1 1024-1026# - -");
        // Exhausted.
        assert_eq!(seq.rewrite(flow(), 0, &mut rng, |_| true), None);
        let rnd = pattern("1.0.0.1 4000-5999? - -");
        let r = rnd.rewrite(flow(), 0, &mut rng, |_| false).unwrap();
        assert!((4000..=5999).contains(&r.sport));
    }

    #[test]
    fn address_ranges_and_prefixes() {
        let p = pattern("1.0.0.1-1.0.0.3# 2.0.0.2");
        let mut rng = Rng::seeded(3);
        let a: Vec<u32> = (0..3)
            .map(|_| p.rewrite(flow(), 0, &mut rng, |_| false).unwrap().saddr)
            .collect();
        assert_eq!(a, [0x0100_0001, 0x0100_0002, 0x0100_0003]);
        assert_eq!(p.unparse(), "1.0.0.1-1.0.0.3# 2.0.0.2");
        let p = pattern("1.0.0.0/24# -");
        assert_eq!(p.unparse(), "1.0.0.1-1.0.0.254# -");
        let p = pattern("1.0.0.0/31 - - -");
        assert_eq!(p.unparse(), "1.0.0.0-1.0.0.1 - - -");
    }

    #[test]
    fn bad_patterns_say_which_field() {
        let err = |t: &str| {
            let w: Vec<&str> = t.split_whitespace().collect();
            Pattern::parse(&w).err().unwrap()
        };
        assert_eq!(err("x - - -"), "bad source address");
        assert_eq!(err("- 70000 - -"), "bad source port");
        assert_eq!(err("- 5-3 - -"), "bad source port");
        assert_eq!(err("- - 1.2.3 -"), "bad destination address");
        assert_eq!(err("- - - 0"), "bad destination port");
        assert_eq!(err("- - -"), "syntax error");
        assert!(err("1.0.0.1-1.0.0.9 1-9 - -").contains("only one"));
        assert_eq!(err("0.0.0.0 - - -"), "bad source address");
    }

    #[test]
    fn specs_parse_as_click_writes_them() {
        assert!(matches!(Spec::parse("drop"), Ok(Spec::Drop)));
        assert!(matches!(Spec::parse("discard"), Ok(Spec::Drop)));
        assert!(matches!(Spec::parse("pass 2"), Ok(Spec::Pass(2))));
        assert!(matches!(Spec::parse("nochange"), Ok(Spec::Pass(0))));
        assert!(matches!(Spec::parse("keep 0 1"), Ok(Spec::Keep(0, 1))));
        assert!(matches!(
            Spec::parse("pattern 1.0.0.1 1024-65535 - - 0 1"),
            Ok(Spec::Pattern(_, 0, 1))
        ));
        assert!(matches!(Spec::parse("pattern to_world 0 1"), Ok(Spec::Named(n, 0, 1)) if n == "to_world"));
        assert!(matches!(Spec::parse("to_world 0 1"), Ok(Spec::Named(n, 0, 1)) if n == "to_world"));
        assert_eq!(Spec::parse("").unwrap_err(), "empty argument");
        assert_eq!(Spec::parse("drop 1").unwrap_err(), "syntax error, expected 'drop'");
        assert_eq!(Spec::parse("keep 0 x").unwrap_err(), "bad reply port");
        assert_eq!(Spec::parse("keep 0").unwrap_err(), "bad forward port");
        assert_eq!(Spec::parse("frob").unwrap_err(), "unknown specification");
        assert_eq!(
            Spec::parse("pass x").unwrap_err(),
            "syntax error, expected 'pass [OUTPUT]'"
        );
    }
}
