//! Click's tcpdump-like pattern language of IPClassifier and IPFilter:
//! text in, [`Pattern`] (primitives joined by and/or/not) out, then
//! [`Pattern::lower`] to the word tests of the classification engine.
//!
//! The grammar is Click's:
//! ```text
//! expr   ::= orexpr | orexpr ? expr : expr
//! orexpr ::= term ((or | ||) term)*
//! term   ::= factor ((and | &&)? factor)*       juxtaposition is "and"
//! factor ::= (not | !) factor | ( expr ) | test
//! test   ::= true | false | QUALIFIERS [[POS:LEN]] [& MASK] [RELOP] [VALUE]
//! ```
//! A test without qualifiers borrows them from the test before it, so
//! `src port 80 or 443` is `src port 80 or src port 443`.
//!
//! Offsets count from the IP header (the network-header annotation, or the
//! data start when it is unset) and from the transport header after it
//! (IHL words on). A packet that is not a plausible IPv4 header (version
//! not 4, IHL below 5, shorter than its header) has no fields at all, and
//! a fragment other than the first has no transport fields: a primitive
//! on a field that is absent is false, whatever its operator, and `not`
//! of it is true, as with Click's short packets.

use crate::standard::classification::{Expr, Space, Test, Windows};
use crate::wire::{parse_ip, IpPrefix};
use switchyard_core::Packet;

/// Where the address spaces of an IP packet lie in `data`, the IP header
/// starting at `net`.
#[inline]
pub fn windows(data: &[u8], net: usize) -> Windows {
    let mut w = Windows {
        start: [0, net, net, 0],
        avail: [data.len(), 0, 0, 0],
    };
    if let Some(ip) = data.get(net..) {
        if let Some(hl) = crate::wire::checked_header_len(ip) {
            w.avail[1] = ip.len();
            if crate::wire::be16(ip, crate::wire::ip::FRAG) & crate::wire::ip::OFFMASK == 0 {
                w.start[2] = net + hl;
                w.avail[2] = ip.len() - hl;
            }
        }
    }
    w
}

/// [`windows`] for a packet: the IP header at its network-header
/// annotation if set, else at the data start.
#[inline]
pub fn packet_windows(p: &Packet) -> Windows {
    windows(p.data(), crate::wire::ip_offset(p))
}

/// Pseudo-protocols (Click's): TCP or UDP, and "any transport".
pub const TCP_OR_UDP: u32 = 0x100;
pub const TRANSP: u32 = 0x101;

/// A protocol name: IP's (shared with IPPrint), or Click's pseudo-protocols.
fn proto_named(w: &str) -> Option<u32> {
    match w {
        "tcpudp" => Some(TCP_OR_UDP),
        "transp" => Some(TRANSP),
        _ => crate::wire::IP_PROTOS.iter().find(|e| e.0 == w).map(|e| u32::from(e.1)),
    }
}

/// Click's port names, and a few common `/etc/services` names (Click
/// reads that file at user level).
const PORTS: &[(&str, u32)] = &[
    ("auth", 113),
    ("bgp", 179),
    ("bootpc", 68),
    ("bootps", 67),
    ("chargen", 19),
    ("daytime", 13),
    ("discard", 9),
    ("dns", 53),
    ("domain", 53),
    ("echo", 7),
    ("finger", 79),
    ("ftp", 21),
    ("ftp-data", 20),
    ("http", 80),
    ("https", 443),
    ("imap", 143),
    ("imap3", 220),
    ("imaps", 993),
    ("irc", 194),
    ("ldap", 389),
    ("netbios-dgm", 138),
    ("netbios-ns", 137),
    ("netbios-ssn", 139),
    ("nntp", 119),
    ("ntp", 123),
    ("pop3", 110),
    ("pop3s", 995),
    ("pptp", 1723),
    ("rip", 520),
    ("route", 520),
    ("smtp", 25),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("ssh", 22),
    ("submission", 587),
    ("sunrpc", 111),
    ("syslog", 514),
    ("telnet", 23),
    ("tftp", 69),
    ("www", 80),
];

const TCP_OPTS: &[(&str, u32)] = &[
    ("ack", 0x10),
    ("fin", 0x01),
    ("psh", 0x08),
    ("rst", 0x04),
    ("syn", 0x02),
    ("urg", 0x20),
];

fn name(table: &[(&str, u32)], word: &str) -> Option<u32> {
    table.iter().find(|e| e.0 == word).map(|e| e.1)
}

/// A header field: `width` bits from bit `bit` of its space, within one
/// 32-bit word; `proto` is the transport protocol it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub space: Space,
    pub bit: u32,
    pub width: u32,
    pub proto: Option<u32>,
}

const fn net(bit: u32, width: u32) -> Field {
    Field {
        space: Space::Net,
        bit,
        width,
        proto: None,
    }
}

const fn transp(bit: u32, width: u32, proto: Option<u32>) -> Field {
    Field {
        space: Space::Transp,
        bit,
        width,
        proto,
    }
}

pub const VERS: Field = net(0, 4);
pub const HL: Field = net(4, 4);
pub const TOS: Field = net(8, 8);
pub const DSCP: Field = net(8, 6);
pub const ECN: Field = net(14, 2);
pub const LEN: Field = net(16, 16);
pub const ID: Field = net(32, 16);
/// The more-fragments flag and the fragment offset.
pub const FRAG: Field = net(50, 14);
pub const TTL: Field = net(64, 8);
pub const PROTO: Field = net(72, 8);
pub const SRC: Field = net(96, 32);
pub const DST: Field = net(128, 32);
pub const SPORT: Field = transp(0, 16, None);
pub const DPORT: Field = transp(16, 16, None);
pub const TCP_FLAGS: Field = transp(104, 8, Some(6));
pub const TCP_WIN: Field = transp(112, 16, Some(6));
pub const ICMP_TYPE: Field = transp(0, 8, Some(1));

impl Field {
    fn full(&self) -> u32 {
        if self.width >= 32 {
            u32::MAX
        } else {
            (1 << self.width) - 1
        }
    }

    /// The test "field & mask == value" (mask and value in field units).
    fn test(&self, mask: u32, value: u32) -> Test {
        let shift = 32 - self.bit % 32 - self.width;
        let word = self.bit / 32 * 4;
        let end = (self.bit + self.width).div_ceil(8);
        Test::new(self.space, word, mask << shift, value << shift, end)
    }
}

/// Which addresses or ports a primitive looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    /// Either (the default).
    Or,
    /// Both.
    And,
}

/// A relation on a field's value ANDed with `mask`: `> value` when `gt`,
/// else `== value`; `negated` for `!=`, `<=` and `<` (as Click reduces
/// them), which still require the field to be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rel {
    pub mask: u32,
    pub gt: bool,
    pub value: i64,
    pub negated: bool,
}

/// A primitive, its qualifiers resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Prim {
    /// The source and/or destination address, masked, equals `addr`.
    Host {
        dir: Dir,
        addr: u32,
        mask: u32,
        negated: bool,
    },
    /// The source and/or destination port.
    Port {
        dir: Dir,
        rel: Rel,
    },
    Field {
        field: Field,
        rel: Rel,
    },
    /// All of these TCP flags are set.
    Opt {
        flags: u32,
    },
    /// The protocol is TCP or UDP.
    TcpOrUdp {
        negated: bool,
    },
}

/// A primitive and the transport protocol it requires, if any
/// (`tcp port 80`, `icmp type echo`, `udp src host 10.0.0.1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Primitive {
    pub proto: Option<u32>,
    pub prim: Prim,
}

/// A parsed pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    True,
    False,
    Prim(Primitive),
    Not(Box<Pattern>),
    And(Vec<Pattern>),
    Or(Vec<Pattern>),
    /// `c ? a : b`.
    Cond(Box<[Pattern; 3]>),
}

/// How many nodes the copies of `?:` conditions may add to one lowered
/// pattern (see [`Pattern::lower`]).
pub const MAX_COPIED: usize = 10_000;

impl Pattern {
    /// The pattern as engine tests, or an error if it is too complex.
    ///
    /// `c ? a : b` becomes `(c and a) or (not c and b)`: a formula needs
    /// `c` twice, so a condition nested in a condition doubles at each
    /// level (forty levels would be a trillion nodes). The copies are
    /// counted before they are made, and a pattern whose copies would add
    /// more than [`MAX_COPIED`] nodes is refused, so lowering takes time
    /// and memory linear in the pattern plus that bound. Everything but
    /// the copies is linear in the pattern, and not counted.
    pub fn lower(&self) -> Result<Expr, String> {
        let mut left = MAX_COPIED;
        match self.lower_within(&mut left) {
            Some((e, _)) => Ok(e),
            None => Err(format!(
                "pattern too complex: its '?:' conditions expand to more than {MAX_COPIED} copied tests"
            )),
        }
    }

    /// The lowered pattern and its size in nodes; `None` when the copies
    /// would take more than the `left` nodes still allowed.
    fn lower_within(&self, left: &mut usize) -> Option<(Expr, usize)> {
        Some(match self {
            Pattern::True => (Expr::True, 1),
            Pattern::False => (Expr::False, 1),
            Pattern::Prim(p) => {
                let e = p.lower();
                let n = nodes(&e);
                (e, n)
            }
            Pattern::Not(p) => {
                let (e, n) = p.lower_within(left)?;
                (e.negate(), n + 1)
            }
            Pattern::And(v) | Pattern::Or(v) => {
                let mut kids = Vec::with_capacity(v.len());
                let mut n = 1;
                for p in v {
                    let (e, k) = p.lower_within(left)?;
                    kids.push(e);
                    n += k;
                }
                let e = if matches!(self, Pattern::And(_)) {
                    Expr::And(kids)
                } else {
                    Expr::Or(kids)
                };
                (e, n)
            }
            Pattern::Cond(b) => {
                let [c, a, e] = &**b;
                let (c, cn) = c.lower_within(left)?;
                *left = left.checked_sub(cn)?;
                let (a, an) = a.lower_within(left)?;
                let (e, en) = e.lower_within(left)?;
                let lowered = Expr::Or(vec![Expr::And(vec![c.clone(), a]), Expr::And(vec![c.negate(), e])]);
                (lowered, 2 * cn + an + en + 4)
            }
        })
    }
}

/// The number of nodes of `e`.
fn nodes(e: &Expr) -> usize {
    match e {
        Expr::True | Expr::False | Expr::Test(_) => 1,
        Expr::Not(x) => 1 + nodes(x),
        Expr::And(v) | Expr::Or(v) => 1 + v.iter().map(nodes).sum::<usize>(),
    }
}

fn proto_expr(p: u32) -> Expr {
    if p == TCP_OR_UDP {
        Expr::Or(vec![Expr::Test(PROTO.test(0xff, 6)), Expr::Test(PROTO.test(0xff, 17))])
    } else {
        Expr::Test(PROTO.test(0xff, p & 0xff))
    }
}

fn combine(dir: Dir, src: Expr, dst: Expr) -> Expr {
    match dir {
        Dir::Src => src,
        Dir::Dst => dst,
        Dir::Or => Expr::Or(vec![src, dst]),
        Dir::And => Expr::And(vec![src, dst]),
    }
}

/// "field & mask > value" (or "== value"), false where the field is absent.
fn positive(f: Field, mask: u32, gt: bool, value: i64) -> Expr {
    if !gt {
        return Expr::Test(f.test(mask, value as u32));
    }
    let full = i64::from(f.full());
    let above = blocks(value + 1, full, mask, f.full());
    let below = blocks(0, value, mask, f.full());
    if above.len() <= below.len() {
        if above.is_empty() {
            // Never true; false when absent too, and so its negation is
            // "present".
            let mut t = f.test(0, 0);
            t.short = true;
            return Expr::Test(t).negate();
        }
        Expr::Or(above.into_iter().map(|(m, v)| Expr::Test(f.test(m, v))).collect())
    } else if below.is_empty() {
        Expr::Test(f.test(0, 0))
    } else {
        Expr::Or(below.into_iter().map(|(m, v)| Expr::Test(f.test(m, v))).collect()).negate_present()
    }
}

/// The values `lo..=hi` of `x & mask`, as the fewest tests "x & m == v":
/// aligned power-of-two blocks, those that no masked value can fall in
/// dropped.
fn blocks(lo: i64, hi: i64, mask: u32, full: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (lo.max(0), hi.min(i64::from(full)));
    while lo <= hi {
        let mut size = 1i64;
        while lo % (size * 2) == 0 && lo + size * 2 - 1 <= hi && size * 2 <= i64::from(full) + 1 {
            size *= 2;
        }
        let bmask = full & !((size - 1) as u32);
        let bvalue = lo as u32;
        if bvalue & !mask == 0 {
            let t = (bmask & mask, bvalue);
            if !out.contains(&t) {
                out.push(t);
            }
        }
        lo += size;
    }
    out
}

fn relation(f: Field, rel: &Rel) -> Expr {
    let e = positive(f, rel.mask, rel.gt, rel.value);
    if rel.negated {
        e.negate_present()
    } else {
        e
    }
}

impl Primitive {
    pub fn lower(&self) -> Expr {
        let body = match &self.prim {
            Prim::Host {
                dir,
                addr,
                mask,
                negated,
            } => {
                let e = combine(
                    *dir,
                    Expr::Test(SRC.test(*mask, *addr)),
                    Expr::Test(DST.test(*mask, *addr)),
                );
                if *negated {
                    e.negate_present()
                } else {
                    e
                }
            }
            Prim::Port { dir, rel } => {
                let side = |f| positive(f, rel.mask, rel.gt, rel.value);
                let e = combine(*dir, side(SPORT), side(DPORT));
                if rel.negated {
                    e.negate_present()
                } else {
                    e
                }
            }
            Prim::Field { field, rel } => relation(*field, rel),
            Prim::Opt { flags } => Expr::Test(TCP_FLAGS.test(*flags, *flags)),
            Prim::TcpOrUdp { negated } => {
                let e = proto_expr(TCP_OR_UDP);
                if *negated {
                    e.negate_present()
                } else {
                    e
                }
            }
        };
        match self.proto {
            Some(p) => Expr::And(vec![proto_expr(p), body]),
            None => body,
        }
    }
}

/// Parses one IPClassifier pattern (`-`, `any` and `all` match every
/// packet).
pub fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let text = unquoted(text)?;
    let words = tokenize(&text);
    match words.as_slice() {
        [] => Err("empty pattern".into()),
        ["-" | "any" | "all"] => Ok(Pattern::True),
        _ => parse_words(&words),
    }
}

/// Parses one IPFilter rule, `ACTION PATTERN`: the output (`allow` is 0,
/// `deny` and `drop` are `None`) and the pattern (empty, `-`, `any` or
/// `all` for every packet).
pub fn parse_rule(text: &str) -> Result<(Option<u32>, Pattern), String> {
    let text = unquoted(text)?;
    let words = tokenize(&text);
    let Some((&action, rest)) = words.split_first() else {
        return Err("empty rule".into());
    };
    let output = match action {
        "allow" => Some(0),
        "deny" | "drop" => None,
        w => match parse_int(w) {
            Some(n) if n < 1 << 16 => Some(n),
            Some(n) => return Err(format!("output {n} out of range")),
            None => {
                return Err(format!(
                    "unknown action '{w}' (expected allow, deny, drop or an output number)"
                ))
            }
        },
    };
    let pattern = match rest {
        [] | ["-" | "any" | "all"] => Pattern::True,
        _ => parse_words(rest)?,
    };
    Ok((output, pattern))
}

fn unquoted(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.starts_with('"') {
        let bytes = switchyard_lang::config::unquote(t)?;
        String::from_utf8(bytes).map_err(|_| "pattern is not UTF-8".to_string())
    } else {
        Ok(t.to_string())
    }
}

/// Splits pattern text into words and operators, as Click does.
fn tokenize(s: &str) -> Vec<&str> {
    let word_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | '@' | '_' | ':');
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let next = s[i + c.len_utf8()..].chars().next();
        let two = match c {
            '&' | '|' => next == Some(c),
            '<' | '>' | '!' | '=' => next == Some('='),
            _ => false,
        };
        if two {
            out.push(&s[i..i + 2]);
            chars.next();
            chars.next();
        } else if word_char(c) {
            let mut end = i;
            while let Some(&(j, d)) = chars.peek() {
                if !word_char(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            out.push(&s[i..end]);
        } else {
            out.push(&s[i..i + c.len_utf8()]);
            chars.next();
        }
    }
    out
}

/// Integers as Click reads them: decimal, `0x` hex, or octal with a
/// leading zero.
fn parse_int(w: &str) -> Option<u32> {
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        return u32::from_str_radix(h, 16).ok();
    }
    if !w.bytes().all(|b| b.is_ascii_digit()) || w.is_empty() {
        return None;
    }
    if w.len() > 1 && w.starts_with('0') {
        return u32::from_str_radix(&w[1..], 8).ok();
    }
    w.parse().ok()
}

/// Qualifier kinds (Click's types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Host,
    Net,
    Port,
    Proto,
    Opt,
    Frag,
    Unfrag,
    Ect,
    Ce,
    Field(Field),
}

fn type_word(w: &str) -> Option<Ty> {
    Some(match w {
        "host" => Ty::Host,
        "net" => Ty::Net,
        "port" => Ty::Port,
        "proto" => Ty::Proto,
        "opt" => Ty::Opt,
        "frag" => Ty::Frag,
        "unfrag" => Ty::Unfrag,
        "ect" => Ty::Ect,
        "ce" => Ty::Ce,
        "vers" => Ty::Field(VERS),
        "hl" => Ty::Field(HL),
        "tos" => Ty::Field(TOS),
        "dscp" => Ty::Field(DSCP),
        "ttl" => Ty::Field(TTL),
        "id" => Ty::Field(ID),
        "len" => Ty::Field(LEN),
        "type" => Ty::Field(ICMP_TYPE),
        "win" => Ty::Field(TCP_WIN),
        _ => return None,
    })
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Host => "host",
        Ty::Net => "net",
        Ty::Port => "port",
        Ty::Proto => "proto",
        Ty::Opt => "tcp opt",
        Ty::Frag => "ip frag",
        Ty::Unfrag => "ip unfrag",
        Ty::Ect => "ip ect",
        Ty::Ce => "ip ce",
        Ty::Field(f) if f == VERS => "ip vers",
        Ty::Field(f) if f == HL => "ip hl",
        Ty::Field(f) if f == TOS => "ip tos",
        Ty::Field(f) if f == DSCP => "ip dscp",
        Ty::Field(f) if f == TTL => "ip ttl",
        Ty::Field(f) if f == ID => "ip id",
        Ty::Field(f) if f == LEN => "ip len",
        Ty::Field(f) if f == ICMP_TYPE => "icmp type",
        Ty::Field(f) if f == TCP_WIN => "tcp win",
        Ty::Field(_) => "[POS:LEN]",
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Data {
    None,
    Int(u32),
    Addr(u32),
    Prefix(u32, u32),
    Proto(u32),
    Port(u32),
    Opt(u32),
    IcmpType(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// What a test without qualifiers borrows from the one before it.
#[derive(Clone, Copy, Default)]
struct Prev {
    ty: Option<Ty>,
    dir: Option<Dir>,
    proto: Option<u32>,
}

#[derive(Clone, Copy, Default)]
struct Quals {
    ty: Option<Ty>,
    dir: Option<Dir>,
    proto: Option<u32>,
    ip: bool,
}

/// Deepest nesting of parentheses and `not` accepted.
const MAX_DEPTH: u32 = 64;

struct Parser<'a, 'b> {
    w: &'b [&'a str],
    pos: usize,
    prev: Prev,
    depth: u32,
}

fn parse_words(words: &[&str]) -> Result<Pattern, String> {
    let mut p = Parser {
        w: words,
        pos: 0,
        prev: Prev::default(),
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        None => Ok(e),
        Some(w) => Err(format!("garbage after expression at '{w}'")),
    }
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Option<&'a str> {
        self.w.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<&'a str> {
        self.w.get(self.pos + k).copied()
    }

    fn nest(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("pattern nested too deeply".into());
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Pattern, String> {
        self.nest()?;
        let c = self.or_expr()?;
        let e = if self.peek() == Some("?") {
            self.pos += 1;
            let a = self.expr()?;
            if self.peek() != Some(":") {
                return Err("missing ':' in ternary expression (the colon needs spaces around it)".into());
            }
            self.pos += 1;
            let b = self.expr()?;
            Pattern::Cond(Box::new([c, a, b]))
        } else {
            c
        };
        self.depth -= 1;
        Ok(e)
    }

    fn or_expr(&mut self) -> Result<Pattern, String> {
        let mut v = vec![self.term()?];
        while matches!(self.peek(), Some("or" | "||")) {
            self.pos += 1;
            v.push(self.term()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { Pattern::Or(v) })
    }

    fn term(&mut self) -> Result<Pattern, String> {
        let mut v = vec![self.factor()?];
        loop {
            match self.peek() {
                Some("and" | "&&") => {
                    self.pos += 1;
                    v.push(self.factor()?);
                }
                None | Some(")" | "or" | "||" | "?" | ":") => break,
                Some(_) => v.push(self.factor()?),
            }
        }
        Ok(if v.len() == 1 { v.remove(0) } else { Pattern::And(v) })
    }

    fn factor(&mut self) -> Result<Pattern, String> {
        match self.peek() {
            None => Err(match self.pos.checked_sub(1).map(|i| self.w[i]) {
                Some(w) => format!("missing expression after '{w}'"),
                None => "missing expression".into(),
            }),
            Some(w @ ("not" | "!")) => {
                self.pos += 1;
                self.nest()?;
                if matches!(self.peek(), None | Some(")" | "or" | "||" | "and" | "&&" | "?" | ":")) {
                    return Err(format!("missing expression after '{w}'"));
                }
                let f = self.factor()?;
                self.depth -= 1;
                Ok(Pattern::Not(Box::new(f)))
            }
            Some("(") => {
                self.pos += 1;
                if self.peek() == Some(")") {
                    return Err("missing expression after '('".into());
                }
                let e = self.expr()?;
                if self.peek() != Some(")") {
                    return Err(match self.peek() {
                        Some(w) => format!("missing ')' before '{w}'"),
                        None => "missing ')'".into(),
                    });
                }
                self.pos += 1;
                Ok(e)
            }
            Some(w @ (")" | "or" | "||" | "and" | "&&" | "?" | ":")) => Err(format!("missing expression before '{w}'")),
            Some(_) => self.test(),
        }
    }

    fn test(&mut self) -> Result<Pattern, String> {
        let first = self.pos;
        match self.peek() {
            Some("true") => {
                self.pos += 1;
                return Ok(Pattern::True);
            }
            Some("false") => {
                self.pos += 1;
                return Ok(Pattern::False);
            }
            _ => {}
        }
        let mut q = Quals::default();
        let mut negated = false;
        while let Some(w) = self.peek() {
            if let Some(ty) = type_word(w) {
                if q.ty.is_some() {
                    return Err(format!("type specified twice at '{w}'"));
                }
                q.ty = Some(ty);
                if let Ty::Field(Field { proto: Some(p), .. }) = ty {
                    set_proto(&mut q, p)?;
                }
            } else if let Some(p) = qualifier_proto(w) {
                set_proto(&mut q, p)?;
            } else if w == "src" {
                let both = matches!(self.peek_at(2), Some("dst" | "dest"));
                let dir = match self.peek_at(1) {
                    Some("and" | "&&") if both => Dir::And,
                    Some("or" | "||") if both => Dir::Or,
                    _ => Dir::Src,
                };
                if matches!(dir, Dir::And | Dir::Or) {
                    self.pos += 2;
                }
                set_dir(&mut q, dir)?;
            } else if w == "dst" || w == "dest" {
                set_dir(&mut q, Dir::Dst)?;
            } else if w == "ip" {
                if q.ip {
                    break;
                }
                q.ip = true;
            } else if w == "ether" {
                return Err("'ether' primitives are not supported (no MAC header annotation)".into());
            } else if w == "not" || w == "!" {
                negated = !negated;
            } else {
                break;
            }
            self.pos += 1;
        }
        // A test with qualifiers of its own borrows nothing.
        let prev = if self.pos == first { self.prev } else { Prev::default() };

        if self.peek() == Some("[") && self.pos > first && q.ty.is_none() {
            q.ty = Some(Ty::Field(self.brackets(&q)?));
        }

        let mut mask = None;
        if self.peek() == Some("&") {
            let m = self.peek_at(1).ok_or("missing mask after '&'")?;
            let v = parse_int(m)
                .or_else(|| parse_ip(m))
                .ok_or_else(|| format!("expected a mask after '&', found '{m}'"))?;
            if v == 0 {
                return Err("zero mask".into());
            }
            mask = Some(v);
            self.pos += 2;
        }

        let op = match self.peek() {
            Some("=" | "==") => Some(Op::Eq),
            Some("!=") => Some(Op::Ne),
            Some(">") => Some(Op::Gt),
            Some(">=") => Some(Op::Ge),
            Some("<") => Some(Op::Lt),
            Some("<=") => Some(Op::Le),
            _ => None,
        };
        if op.is_some() {
            self.pos += 1;
        }

        let data = self.value(&q)?;
        if data == Data::None {
            if let Some(op) = op {
                let w = self.w[self.pos - 1];
                return Err(match self.peek() {
                    Some(x) => format!("bad value '{x}' after '{w}'"),
                    None if op == Op::Eq => format!("missing value after '{w}'"),
                    None => format!("dangling operator '{w}'"),
                });
            }
        }
        if self.pos == first {
            let w = self.w[first];
            return Err(format!("unknown word '{w}'"));
        }
        let (prim, next) = resolve(&q, data, mask, op.unwrap_or(Op::Eq), &prev).map_err(|e| {
            if first == 0 && self.pos == self.w.len() {
                e
            } else {
                format!("'{}': {e}", self.w[first..self.pos].join(" "))
            }
        })?;
        self.prev = next;
        let p = Pattern::Prim(prim);
        Ok(if negated { Pattern::Not(Box::new(p)) } else { p })
    }

    /// `[POS]`, `[POS:LEN]` or `[POS,END]` after `ip` or a protocol.
    fn brackets(&mut self, q: &Quals) -> Result<Field, String> {
        self.pos += 1;
        let mut inside = String::new();
        loop {
            match self.peek() {
                None => return Err("missing ']'".into()),
                Some("]") => break,
                Some(w) => inside.push_str(w),
            }
            self.pos += 1;
        }
        self.pos += 1;
        let bad = || format!("syntax error in '[{inside}]', expected '[POS]' or '[POS:LEN]'");
        let (pos, len) = if let Some((p, l)) = inside.split_once(':') {
            (parse_int(p).ok_or_else(bad)?, parse_int(l).ok_or_else(bad)?)
        } else if let Some((p, e)) = inside.split_once(',') {
            let (p, e) = (parse_int(p).ok_or_else(bad)?, parse_int(e).ok_or_else(bad)?);
            (p, e.wrapping_sub(p).wrapping_add(1))
        } else {
            (parse_int(&inside).ok_or_else(bad)?, 1)
        };
        if !(1..=4).contains(&len) {
            return Err(format!("LEN in '[{inside}]' out of range, should be between 1 and 4"));
        }
        if pos > 0xfff0 || pos / 4 != (pos + len - 1) / 4 {
            return Err(format!("field [{pos}:{len}] does not fit in a single word"));
        }
        let (space, proto) = match q.proto {
            Some(TRANSP) => (Space::Transp, None),
            Some(p) => (Space::Transp, Some(p)),
            None => (Space::Net, None),
        };
        Ok(Field {
            space,
            bit: pos * 8,
            width: len * 8,
            proto,
        })
    }

    /// The value word, if there is one.
    fn value(&mut self, q: &Quals) -> Result<Data, String> {
        let Some(w) = self.peek() else {
            return Ok(Data::None);
        };
        if let Some(d) = lookup_name(w, q.ty, q.proto)? {
            self.pos += 1;
            return Ok(d);
        }
        if let Some(v) = parse_int(w) {
            self.pos += 1;
            return Ok(Data::Int(v));
        }
        if let Some(a) = parse_ip(w) {
            self.pos += 1;
            if self.peek() == Some("mask") {
                if let Some(m) = self.peek_at(1).and_then(parse_ip) {
                    self.pos += 2;
                    return Ok(Data::Prefix(a & m, m));
                }
            }
            return Ok(if q.ty == Some(Ty::Net) {
                Data::Prefix(a, u32::MAX)
            } else {
                Data::Addr(a)
            });
        }
        if let Some(p) = IpPrefix::parse(w) {
            self.pos += 1;
            return Ok(Data::Prefix(p.addr & p.mask, p.mask));
        }
        if w.starts_with(|c: char| c.is_ascii_digit()) && w.contains(['.', '/']) {
            return Err(format!("bad address or prefix '{w}'"));
        }
        Ok(Data::None)
    }
}

fn set_proto(q: &mut Quals, p: u32) -> Result<(), String> {
    match q.proto {
        Some(old) if old != p => Err("transport protocol specified twice".into()),
        _ => {
            q.proto = Some(p);
            Ok(())
        }
    }
}

fn set_dir(q: &mut Quals, d: Dir) -> Result<(), String> {
    if q.dir.is_some() {
        return Err("'src' or 'dst' specified twice".into());
    }
    q.dir = Some(d);
    Ok(())
}

/// A protocol name used as a qualifier (`tcp`), unless the word also
/// names something else.
fn qualifier_proto(w: &str) -> Option<u32> {
    let p = proto_named(w)?;
    (name(PORTS, w).is_none() && name(TCP_OPTS, w).is_none() && crate::icmp::names::TYPES.iter().all(|e| e.0 != w))
        .then_some(p)
}

/// A named value that fits the test's type and protocol, as Click's
/// lookup: an error when the name is ambiguous or meaningless there.
fn lookup_name(w: &str, ty: Option<Ty>, proto: Option<u32>) -> Result<Option<Data>, String> {
    if type_word(w).is_some() {
        return Ok(None);
    }
    let known = [
        proto_named(w).map(|v| (Data::Proto(v), format!("proto {w}"))),
        name(PORTS, w).map(|v| (Data::Port(v), format!("port {w}"))),
        name(TCP_OPTS, w).map(|v| (Data::Opt(v), format!("tcp opt {w}"))),
        crate::icmp::names::TYPES
            .iter()
            .find(|e| e.0 == w)
            .map(|e| (Data::IcmpType(u32::from(e.1)), format!("icmp type {w}"))),
    ];
    if known.iter().all(Option::is_none) {
        return Ok(None);
    }
    let fits = |d: &Data| match d {
        Data::Proto(_) => matches!(ty, None | Some(Ty::Proto)),
        Data::Port(_) => matches!(ty, None | Some(Ty::Port)) && matches!(proto, None | Some(6 | 17 | 33 | TCP_OR_UDP)),
        Data::Opt(_) => matches!(ty, None | Some(Ty::Opt)) && matches!(proto, None | Some(6)),
        Data::IcmpType(_) => matches!(ty, None | Some(Ty::Field(ICMP_TYPE))) && matches!(proto, None | Some(1)),
        _ => false,
    };
    let fitting: Vec<&(Data, String)> = known.iter().flatten().filter(|(d, _)| fits(d)).collect();
    if let [(d, _)] = fitting.as_slice() {
        return Ok(Some(*d));
    }
    let tries: Vec<String> = known.iter().flatten().map(|(_, s)| format!("'{s}'")).collect();
    let what = if fitting.len() > 1 {
        "ambiguous"
    } else {
        "meaningless here"
    };
    Err(format!("'{w}' is {what}; try {}", tries.join(", ")))
}

/// Click's primitive check: settles the type from the value or the test
/// before, then checks the value, mask and operator against it.
fn resolve(q: &Quals, data: Data, mask: Option<u32>, op: Op, prev: &Prev) -> Result<(Primitive, Prev), String> {
    let mut dir = q.dir;
    let mut proto = q.proto;
    let ty = match q.ty {
        Some(t) => t,
        None => match data {
            Data::Addr(_) => {
                dir = dir.or(prev.dir);
                Ty::Host
            }
            Data::Prefix(..) => {
                dir = dir.or(prev.dir);
                Ty::Net
            }
            Data::Opt(_) => Ty::Opt,
            Data::Proto(_) => Ty::Proto,
            Data::IcmpType(_) => Ty::Field(ICMP_TYPE),
            Data::Port(_) => {
                dir = dir.or(prev.dir);
                proto = proto.or(prev.proto);
                Ty::Port
            }
            Data::Int(_) => match prev.ty {
                Some(Ty::Port) => {
                    dir = dir.or(prev.dir);
                    proto = proto.or(prev.proto);
                    Ty::Port
                }
                Some(t @ (Ty::Field(_) | Ty::Proto)) => t,
                _ => return Err("a bare number needs a field: say 'port', 'ip ttl'...".into()),
            },
            Data::None if proto.is_some() => Ty::Proto,
            Data::None => return Err("incomplete primitive".into()),
        },
    };
    let name = type_name(ty);
    let int = |d: Data| match d {
        Data::Int(v) => Some(v),
        _ => None,
    };
    let no_value = |data: Data, mask: Option<u32>, op: Op| -> Result<(), String> {
        if data != Data::None || mask.is_some() || op != Op::Eq {
            return Err(format!("'{name}' takes no value"));
        }
        Ok(())
    };
    let eq_only = |op: Op| match op {
        Op::Eq => Ok(false),
        Op::Ne => Ok(true),
        _ => Err(format!("operator not supported by '{name}'")),
    };
    let mut next = Prev {
        ty: Some(ty),
        dir: None,
        proto: None,
    };
    let prim = match ty {
        Ty::Host | Ty::Net => {
            let (addr, mut m) = match (ty, data) {
                (Ty::Host, Data::Addr(a)) | (Ty::Net, Data::Addr(a)) => (a, u32::MAX),
                (Ty::Net, Data::Prefix(a, m)) => (a, m),
                (Ty::Host, Data::Prefix(..)) => return Err("'host' takes an address; use 'net' for a prefix".into()),
                _ => return Err("address missing".into()),
            };
            if let Some(x) = mask {
                m = x;
            }
            let negated = eq_only(op)?;
            let dir = dir.unwrap_or(Dir::Or);
            next.ty = Some(Ty::Host);
            next.dir = Some(dir);
            Prim::Host {
                dir,
                addr: addr & m,
                mask: m,
                negated,
            }
        }
        Ty::Proto => {
            let v = match data {
                Data::Int(v) | Data::Proto(v) => {
                    if proto.is_some_and(|p| p != v) {
                        return Err("protocol specified twice".into());
                    }
                    v
                }
                Data::None => proto.ok_or("value missing")?,
                _ => return Err("value missing".into()),
            };
            proto = None;
            match v {
                TCP_OR_UDP => {
                    if mask.is_some() {
                        return Err("'tcpudp': mask not supported".into());
                    }
                    Prim::TcpOrUdp { negated: eq_only(op)? }
                }
                TRANSP => return Err("'transp' is not an IP protocol".into()),
                v => {
                    let rel = rel(PROTO, op, v, mask)?;
                    if rel
                        == (Rel {
                            mask: 0xff,
                            gt: false,
                            value: i64::from(v),
                            negated: false,
                        })
                    {
                        next.proto = Some(v);
                    }
                    Prim::Field { field: PROTO, rel }
                }
            }
        }
        Ty::Port => {
            let v = match data {
                Data::Int(v) | Data::Port(v) => v,
                _ => return Err("value missing".into()),
            };
            let p = proto.unwrap_or(TCP_OR_UDP);
            if !matches!(p, 6 | 17 | 33 | TCP_OR_UDP) {
                return Err(format!("'port' needs TCP, UDP or DCCP, not protocol {p}"));
            }
            proto = Some(p);
            let dir = dir.unwrap_or(Dir::Or);
            next.dir = Some(dir);
            next.proto = Some(p);
            Prim::Port {
                dir,
                rel: rel(SPORT, op, v, mask)?,
            }
        }
        Ty::Opt => {
            let flags = match data {
                Data::Opt(v) => v,
                Data::Int(v) if v <= 0xff => v,
                Data::Int(v) => return Err(format!("value {v} out of range")),
                _ => return Err("value missing".into()),
            };
            if op != Op::Eq || mask.is_some() {
                return Err("operator or mask not supported".into());
            }
            if proto.is_some_and(|p| p != 6) {
                return Err("'tcp opt' needs TCP".into());
            }
            proto = Some(6);
            next.proto = proto;
            Prim::Opt { flags }
        }
        Ty::Frag | Ty::Unfrag | Ty::Ce => {
            no_value(data, mask, op)?;
            let (negated, value) = match ty {
                Ty::Frag => (true, 0),
                Ty::Unfrag => (false, 0),
                _ => (false, 3),
            };
            let field = if ty == Ty::Ce { ECN } else { FRAG };
            Prim::Field {
                field,
                rel: Rel {
                    mask: field.full(),
                    gt: false,
                    value,
                    negated,
                },
            }
        }
        Ty::Ect => match int(data) {
            None if data == Data::None && mask.is_none() && op == Op::Eq => Prim::Field {
                field: ECN,
                rel: Rel {
                    mask: 3,
                    gt: false,
                    value: 0,
                    negated: true,
                },
            },
            Some(v) => Prim::Field {
                field: ECN,
                rel: rel(ECN, op, v, mask)?,
            },
            None => return Err("bad value".into()),
        },
        Ty::Field(field) => {
            let v = match data {
                Data::Int(v) => v,
                Data::IcmpType(v) if field == ICMP_TYPE => v,
                _ => return Err("value missing".into()),
            };
            if let Some(p) = field.proto {
                if proto.is_some_and(|q| q != p) {
                    return Err("transport protocol specified twice".into());
                }
                proto = Some(p);
            } else if field.space == Space::Transp {
                proto = proto.filter(|&p| p != TRANSP);
            }
            next.proto = proto;
            Prim::Field {
                field,
                rel: rel(field, op, v, mask)?,
            }
        }
    };
    Ok((Primitive { proto, prim }, next))
}

/// The relation `field & mask OP value`, reduced to `==` or `>`, maybe
/// negated.
fn rel(field: Field, op: Op, v: u32, mask: Option<u32>) -> Result<Rel, String> {
    let full = field.full();
    let m = mask.unwrap_or(full);
    if m & !full != 0 {
        return Err(format!("mask out of range, bound 0x{full:X}"));
    }
    let v64 = i64::from(v);
    let (gt, value, negated) = match op {
        Op::Eq | Op::Ne => {
            if v & !full != 0 {
                return Err(format!("value {v} out of range, bound {full}"));
            }
            if v & !m != 0 {
                return Err(format!("value 0x{v:X} has bits outside the mask 0x{m:X}"));
            }
            (false, v64, op == Op::Ne)
        }
        Op::Gt => (true, v64, false),
        Op::Le => (true, v64, true),
        Op::Ge => (true, v64 - 1, false),
        Op::Lt => (true, v64 - 1, true),
    };
    Ok(Rel {
        mask: m,
        gt,
        value,
        negated,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::standard::classification::{Listing, Program};

    /// An IPv4 packet: header (`hl` words, version 4) and `payload`.
    pub(crate) fn ip(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        let len = (20 + payload.len()) as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p.extend_from_slice(payload);
        crate::wire::set_ip_checksum(&mut p);
        p
    }

    pub(crate) fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 0x50;
        t[13] = flags;
        t[14..16].copy_from_slice(&512u16.to_be_bytes());
        t
    }

    pub(crate) fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&8u16.to_be_bytes());
        u
    }

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [192, 168, 1, 2];

    fn syn() -> Vec<u8> {
        ip(6, A, B, &tcp(40000, 80, 0x02))
    }
    fn dns() -> Vec<u8> {
        ip(17, B, A, &udp(5353, 53))
    }
    fn ping() -> Vec<u8> {
        ip(1, A, B, &[8, 0, 0, 0, 0, 1, 0, 1])
    }

    fn matches(pattern: &str, pkt: &[u8]) -> bool {
        let p = parse_pattern(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        let prog = Program::compile(&[(p.lower().unwrap(), Some(0))], Listing::Ip);
        let w = windows(pkt, 0);
        let got = prog.run(pkt, &w) == Some(0);
        assert_eq!(got, p.lower().unwrap().eval(pkt, &w), "{pattern}");
        assert_eq!(got, reference::pattern(&p, pkt), "{pattern} against the reference");
        got
    }

    #[test]
    fn hosts_nets_and_directions() {
        for (pat, want) in [
            ("host 10.0.0.1", true),
            ("src host 10.0.0.1", true),
            ("dst host 10.0.0.1", false),
            ("src and dst host 10.0.0.1", false),
            ("src or dst host 192.168.1.2", true),
            ("10.0.0.1", true),
            ("src 10.0.0.1 and dst 192.168.1.2", true),
            ("dst 10.0.0.9 or 192.168.1.2", true),
            ("net 10.0.0.0/8", true),
            ("src net 192.168.0.0/16", false),
            ("dst net 192.168.0.0 mask 255.255.0.0", true),
            ("192.168.0.0/16", true),
            ("src host != 10.0.0.1", false),
            ("host != 10.9.9.9", true),
            ("not host 10.0.0.1", false),
            ("src host & 255.255.0.0 10.0.7.1", true),
        ] {
            assert_eq!(matches(pat, &syn()), want, "{pat}");
        }
    }

    #[test]
    fn protocols_ports_and_names() {
        for (pat, pkt, want) in [
            ("tcp", syn(), true),
            ("udp", syn(), false),
            ("ip proto tcp", syn(), true),
            ("ip proto 17", dns(), true),
            ("proto != 6", dns(), true),
            ("icmp", ping(), true),
            ("port 80", syn(), true),
            ("tcp port www", syn(), true),
            ("port http", syn(), true),
            ("udp port 80", syn(), false),
            ("dst port 53", dns(), true),
            ("src port 53", dns(), false),
            ("src port 5353 or 53", dns(), true),
            ("dst udp port dns", dns(), true),
            ("udp port domain", dns(), true),
            ("www", syn(), true),
            ("ssh or telnet", syn(), false),
            ("port 53", ping(), false),
            ("dst port > 1023", syn(), false),
            ("src port > 1023", syn(), true),
            ("port > 1023", syn(), true),
            ("port < 1024", syn(), false),
            ("port <= 80", syn(), false),
            ("port >= 40000", syn(), true),
            ("port != 80", syn(), false),
            ("port != 443", syn(), true),
            ("src port & 0xff00 == 0x9c00", syn(), true),
            ("tcp port 80 or 443 and dst 192.168.1.2", syn(), true),
        ] {
            assert_eq!(matches(pat, &pkt), want, "{pat}");
        }
    }

    #[test]
    fn tcp_flags_icmp_types_and_header_fields() {
        let mut synack = syn();
        synack[33] = 0x12;
        for (pat, pkt, want) in [
            ("syn", syn(), true),
            ("tcp opt syn", syn(), true),
            ("syn and not ack", syn(), true),
            ("syn && !ack", synack.clone(), false),
            ("syn ack", synack.clone(), true),
            ("fin or rst", synack.clone(), false),
            ("syn", dns(), false),
            ("tcp win 512", syn(), true),
            ("icmp type echo", ping(), true),
            ("icmp echo", ping(), true),
            ("echo-reply", ping(), false),
            ("icmp type 8", ping(), true),
            ("icmp type != 4", ping(), true),
            ("icmp type != 4", syn(), false),
            ("ip ttl 64", syn(), true),
            ("ip ttl < 2", syn(), false),
            ("ip vers 4", syn(), true),
            ("ip hl 5", syn(), true),
            ("ip tos 0", syn(), true),
            ("ip dscp 0", syn(), true),
            ("ip ect", syn(), false),
            ("ip ce", syn(), false),
            ("ip id 0", syn(), true),
            ("ip len 40", syn(), true),
            ("ip len > 100", syn(), false),
            ("ip unfrag", syn(), true),
            ("ip frag", syn(), false),
            ("unfrag", syn(), true),
            ("ip[9] == 6", syn(), true),
            ("ip[9] 6", syn(), true),
            ("ip[12:4] == 0x0a000001", syn(), true),
            ("ip[12,15] == 0x0a000001", syn(), true),
            ("transp[2:2] == 80", syn(), true),
            ("tcp[13] & 2 != 0", syn(), true),
            ("udp[2:2] == 53", dns(), true),
            ("udp[2:2] == 53", syn(), false),
            ("true", ping(), true),
            ("false", ping(), false),
            ("tcp ? dst port 80 : icmp", syn(), true),
            ("tcp ? dst port 81 : icmp", ping(), true),
            ("(dst port www or dst port ssh) and tcp opt syn", syn(), true),
            ("udp src host 10.0.0.1", syn(), false),
        ] {
            assert_eq!(matches(pat, &pkt), want, "{pat}");
        }
        let mut ecn = syn();
        ecn[1] = 0xb8 | 3;
        assert!(matches("ip ce", &ecn));
        assert!(matches("ip ect", &ecn));
        assert!(matches("ip dscp 46", &ecn));
        assert!(matches("ip tos & 0xfc == 0xb8", &ecn));
    }

    #[test]
    fn fragments_truncation_and_garbage() {
        // A later fragment has no transport fields: a port test is false
        // and its negation true, as in Click.
        let mut later = syn();
        later[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        assert!(!matches("port 80", &later));
        assert!(!matches("port != 80", &later));
        assert!(matches("not port 80", &later));
        assert!(!matches("transp[0] == 0x9c", &later));
        assert!(matches("ip frag and tcp", &later));
        let mut first = syn();
        first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        assert!(matches("port 80 and ip frag", &first));

        // Truncated inside the transport header.
        let syn = syn();
        let cut = &syn[..22];
        assert!(matches("src port 40000", cut));
        assert!(!matches("dst port 80", cut));
        assert!(!matches("port 80", cut));
        assert!(!matches("port != 80", cut), "absent ports are neither 80 nor not 80");
        assert!(matches("not port 80", cut));
        assert!(matches("tcp", cut));
        // Shorter than an IP header, IPv6, bad IHL: no fields at all.
        let mut v6 = [0x60u8; 60];
        v6[6] = 6;
        let mut bad_hl = syn.clone();
        bad_hl[0] = 0x43;
        for pkt in [&syn[..19], &v6[..], &bad_hl[..], &[][..]] {
            assert!(!matches("tcp", pkt));
            assert!(!matches("ip vers 6", pkt));
            assert!(!matches("ip proto != 6", pkt));
            assert!(matches("not tcp", pkt));
            assert!(matches("true", pkt));
        }
    }

    #[test]
    fn the_network_header_annotation_locates_the_header() {
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[8, 0]);
        frame.extend(syn());
        let mut p = Packet::from_data(&frame);
        let prog = Program::compile(
            &[(parse_pattern("dst port 80").unwrap().lower().unwrap(), Some(0))],
            Listing::Ip,
        );
        assert_eq!(
            prog.run(p.data(), &packet_windows(&p)),
            None,
            "at offset 0 it is no IP header"
        );
        p.set_network_header(14, 20);
        assert_eq!(prog.run(p.data(), &packet_windows(&p)), Some(0));
    }

    /// `(...((C ? true : true) ? true : true)... ? true : true)`, the
    /// condition nested `depth` deep.
    pub(crate) fn nested_conditions(depth: usize, inner: &str) -> String {
        let mut s = format!("{inner} ? true : true");
        for _ in 1..depth {
            s = format!("({s}) ? true : true");
        }
        s
    }

    #[test]
    fn nested_conditions_are_refused_before_they_blow_up() {
        // Each level copies its condition: forty levels would be 2^40
        // nodes, and are refused at once, the copies stopping at
        // MAX_COPIED.
        let deep = parse_pattern(&nested_conditions(40, "true")).unwrap();
        let e = deep.lower().unwrap_err();
        assert!(e.contains("pattern too complex"), "{e}");
        let deep = parse_pattern(&nested_conditions(40, "tcp port 80")).unwrap();
        assert!(deep.lower().unwrap_err().contains("pattern too complex"));
        // A few levels are fine, and mean what they say.
        for pkt in [syn(), dns(), ping()] {
            assert!(matches(&nested_conditions(6, "tcp port 80"), &pkt));
            let p = "(((tcp ? syn : udp) ? (port 80 ? 1 : 0) : icmp) ? ip ttl 64 : false) ? true : false";
            assert_eq!(matches(p, &pkt), reference::pattern(&parse_pattern(p).unwrap(), &pkt));
        }
        // Only the copies count: a long pattern without conditions lowers
        // whatever its size.
        let hosts: Vec<String> = (0..12_000)
            .map(|i| format!("src host 10.0.{}.{}", i / 256, i % 256))
            .collect();
        let long = parse_pattern(&hosts.join(" or ")).unwrap();
        assert!(nodes(&long.lower().unwrap()) > MAX_COPIED);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        for (pat, err) in [
            ("", "empty pattern"),
            ("tcp and", "missing expression after 'and'"),
            ("(tcp", "missing ')'"),
            ("tcp )", "garbage after expression at ')'"),
            ("foo", "unknown word 'foo'"),
            ("echo", "'echo' is ambiguous; try 'port echo', 'icmp type echo'"),
            ("udp syn", "'syn' is meaningless here"),
            ("port 70000", "out of range"),
            ("ip ttl 300", "out of range, bound 255"),
            ("ip[2:4] == 1", "does not fit in a single word"),
            ("ip[0:5] == 1", "LEN"),
            ("ip[x]", "syntax error"),
            ("host 10.0.0.0/8", "use 'net'"),
            ("src net 10.0.0.0/33", "bad address or prefix '10.0.0.0/33'"),
            (
                "tcp and port 70000",
                "'port 70000': value 70000 out of range, bound 65535",
            ),
            ("host > 10.0.0.1", "operator not supported"),
            ("tcp opt != syn", "operator or mask not supported"),
            ("ip ttl >", "dangling operator '>'"),
            ("ip ttl == bogus", "bad value 'bogus'"),
            ("80", "a bare number needs a field"),
            ("src", "incomplete primitive"),
            ("ip frag 1", "takes no value"),
            ("ip tos & 0xf0 == 0x11", "bits outside the mask"),
            ("ip tos & 0", "zero mask"),
            ("tcp ? syn", "missing ':'"),
            ("ether host 1:2:3:4:5:6", "not supported"),
            ("udp icmp type 3", "specified twice"),
            ("not", "missing expression after 'not'"),
        ] {
            let e = parse_pattern(pat).unwrap_err();
            assert!(e.contains(err), "{pat}: got '{e}', want '{err}'");
        }
        let deep = format!("{}tcp{}", "(".repeat(200), ")".repeat(200));
        assert!(parse_pattern(&deep).unwrap_err().contains("too deeply"));
        let nots = format!("{}tcp", "not ".repeat(200));
        assert!(parse_pattern(&nots).unwrap_err().contains("too deeply"));
        assert_eq!(parse_pattern("-").unwrap(), Pattern::True);
        assert_eq!(parse_pattern("\"tcp\"").unwrap(), parse_pattern("tcp").unwrap());
    }

    #[test]
    fn rules_parse_actions() {
        assert_eq!(parse_rule("allow").unwrap(), (Some(0), Pattern::True));
        assert_eq!(parse_rule("deny all").unwrap(), (None, Pattern::True));
        assert_eq!(parse_rule("drop -").unwrap().0, None);
        assert_eq!(parse_rule("3 tcp").unwrap().0, Some(3));
        assert!(parse_rule("permit tcp")
            .unwrap_err()
            .contains("unknown action 'permit'"));
        assert!(parse_rule("allow tcp or").is_err());
    }

    #[test]
    fn relations_decompose_exactly() {
        // Every relation on an 8-bit field, with a few masks, agrees with
        // the arithmetic at every value, and is false when absent.
        let mut pkt = syn();
        for mask in [0xff, 0xf0, 0x0f, 0xa5, 0x80] {
            for value in 0..=256i64 {
                for gt in [false, true] {
                    if !gt && (value > 255 || value as u32 & !mask != 0) {
                        continue;
                    }
                    for negated in [false, true] {
                        let rel = Rel {
                            mask,
                            gt,
                            value,
                            negated,
                        };
                        let e = relation(TTL, &rel);
                        for x in 0..=255u8 {
                            pkt[8] = x;
                            let y = i64::from(u32::from(x) & mask);
                            let want = (if gt { y > value } else { y == value }) != negated;
                            assert_eq!(e.eval(&pkt, &windows(&pkt, 0)), want, "{rel:?} at {x}");
                        }
                        assert!(!e.eval(&[], &windows(&[], 0)), "{rel:?} absent");
                    }
                }
            }
        }
    }

    const PRIMITIVES: &[&str] = &[
        "host 10.0.0.1",
        "src host 10.0.0.2",
        "dst host 192.168.1.2",
        "src and dst host 10.0.0.1",
        "src or dst host 10.0.1.5",
        "10.0.0.1",
        "net 10.0.0.0/24",
        "src net 10.0.0.0/16",
        "dst net 192.168.0.0 mask 255.255.0.0",
        "host != 10.0.0.1",
        "src host & 255.255.0.0 10.0.7.7",
        "dst 10.0.0.2 or 10.0.1.5",
        "tcp",
        "udp",
        "icmp",
        "ip proto 47",
        "proto != 6",
        "ip proto > 6",
        "ip proto <= 6",
        "tcpudp",
        "proto != tcpudp",
        "port 80",
        "src port 53",
        "dst port 443",
        "tcp port 1024",
        "udp dst port 53",
        "port != 80",
        "port > 1023",
        "src port < 1024",
        "dst port >= 1024",
        "port <= 443",
        "src and dst port 53",
        "port & 0xff00 == 0x0400",
        "src port 80 or 443",
        "dns",
        "www",
        "dst tcp port 40000 or 1023",
        "syn",
        "ack",
        "tcp opt fin",
        "syn ack",
        "rst",
        "icmp type echo",
        "icmp echo-reply",
        "icmp type > 5",
        "icmp type != 3",
        "ip ttl 64",
        "ip ttl < 2",
        "ip ttl > 63",
        "ip ttl 1 or 64",
        "ip tos 0x10",
        "ip dscp 46",
        "ip ect",
        "ip ce",
        "ip vers 4",
        "ip hl > 5",
        "ip id 1234",
        "ip len < 40",
        "ip frag",
        "ip unfrag",
        "tcp win 512",
        "ip[9] == 17",
        "ip[12:4] == 0x0a000001",
        "transp[0:2] > 1000",
        "tcp[13] & 2 != 0",
        "udp[2:2] == 53",
        "transp[3] < 5",
        "ip[1] & 0xfc == 0xb8",
        "true",
        "false",
    ];

    fn arb_pattern() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop::sample::select(PRIMITIVES).prop_map(str::to_string);
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|x| format!("not {x}")),
                inner.clone().prop_map(|x| format!("!({x})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) ({b})")),
                (inner.clone(), inner.clone(), inner).prop_map(|(a, b, c)| format!("({a}) ? ({b}) : ({c})")),
            ]
        })
    }

    /// IPv4 packets with fields drawn from the values the patterns use,
    /// some truncated, fragmented, with options, IPv6 or garbage, some
    /// behind an Ethernet header; with the IP header's offset.
    fn arb_packet() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, usize)> {
        use proptest::prelude::*;
        let addr = prop::sample::select(vec![[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 1, 5], [192, 168, 1, 2]]);
        let port = prop::sample::select(vec![53u16, 80, 443, 1023, 1024, 0x0400, 40000, 0x0800, 0x0300, 0]);
        (
            (
                prop::sample::select(vec![0x45u8, 0x45, 0x45, 0x46, 0x44, 0x65]),
                prop::sample::select(vec![0u8, 0x10, 0xb8, 0xbb, 1]),
            ),
            (
                prop::sample::select(vec![0u16, 0x2000, 0x0010, 0x4000, 0x1000]),
                prop::sample::select(vec![1u8, 2, 64, 255]),
            ),
            (prop::sample::select(vec![1u8, 6, 17, 47]), addr.clone(), addr),
            (
                port.clone(),
                port,
                prop::sample::select(vec![0x02u8, 0x12, 0x10, 0x11, 0x04]),
            ),
            (
                any::<bool>(),
                prop::option::of(0usize..64),
                any::<bool>(),
                prop::sample::select(vec![1234u16, 0]),
            ),
        )
            .prop_map(
                |((vhl, tos), (frag, ttl), (proto, src, dst), (sp, dp, flags), (eth, cut, win, id))| {
                    let mut t = tcp(sp, dp, flags);
                    if !win {
                        t[14] = 0;
                    }
                    let mut p = ip(proto, src, dst, &t);
                    p[0] = vhl;
                    p[1] = tos;
                    p[4..6].copy_from_slice(&id.to_be_bytes());
                    p[6..8].copy_from_slice(&frag.to_be_bytes());
                    p[8] = ttl;
                    if let Some(c) = cut {
                        p.truncate(c);
                    }
                    if eth {
                        let mut f = vec![0u8; 14];
                        f.extend(p);
                        (f, 14)
                    } else {
                        (p, 0)
                    }
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn compiled_patterns_agree_with_the_reference(
            texts in proptest::collection::vec(arb_pattern(), 1..7),
            packets in proptest::collection::vec(arb_packet(), 1..40),
        ) {
            // Some combinations are errors in Click too (a port name
            // borrowing ICMP from the test before it): leave those out.
            let patterns: Vec<Pattern> = texts.iter().filter_map(|t| parse_pattern(t).ok()).collect();
            let rules: Vec<(Expr, Option<u32>)> =
                patterns.iter().enumerate().map(|(i, p)| (p.lower().unwrap(), Some(i as u32))).collect();
            let prog = Program::compile(&rules, Listing::Ip);
            for (data, net) in &packets {
                let want = patterns.iter().position(|p| reference::pattern(p, &data[*net..]));
                proptest::prop_assert_eq!(prog.run(data, &windows(data, *net)), want,
                    "{:?} {:?}\n{}", texts, data, prog.unparse());
            }
        }
    }

    /// A direct reading of primitives from packet bytes, sharing nothing
    /// with the lowering to word tests.
    pub(crate) mod reference {
        use super::super::*;

        fn header(pkt: &[u8]) -> Option<usize> {
            let ok = pkt.len() >= 20 && pkt[0] >> 4 == 4;
            let hl = usize::from(pkt.first()? & 15) * 4;
            (ok && hl >= 20 && hl <= pkt.len()).then_some(hl)
        }

        pub fn field(f: Field, pkt: &[u8]) -> Option<u32> {
            let hl = header(pkt)?;
            let base = match f.space {
                Space::Net => 0,
                Space::Transp if pkt[6] & 0x1f == 0 && pkt[7] == 0 => hl,
                _ => return None,
            };
            let (first, end) = ((f.bit / 8) as usize, (f.bit + f.width).div_ceil(8) as usize);
            let bytes = pkt.get(base + first..base + end)?;
            let v = bytes.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
            let drop = end as u32 * 8 - f.bit - f.width;
            Some(((v >> drop) & ((1u64 << f.width) - 1)) as u32)
        }

        fn holds(rel: &Rel, x: u32) -> bool {
            let y = i64::from(x & rel.mask);
            if rel.gt {
                y > rel.value
            } else {
                y == rel.value
            }
        }

        /// A src/dst pair: plain, "either"/"both" of the sides present;
        /// negated, the same of the sides present and failing.
        fn pair(dir: Dir, negated: bool, s: Option<bool>, d: Option<bool>) -> bool {
            let one = |x: Option<bool>| if negated { x == Some(false) } else { x == Some(true) };
            match (dir, negated) {
                (Dir::Src, _) => one(s),
                (Dir::Dst, _) => one(d),
                (Dir::Or, false) | (Dir::And, true) => one(s) || one(d),
                (Dir::And, false) | (Dir::Or, true) => one(s) && one(d),
            }
        }

        fn proto_is(p: u32, pkt: &[u8]) -> bool {
            field(PROTO, pkt).is_some_and(|x| x == p || (p == TCP_OR_UDP && (x == 6 || x == 17)))
        }

        pub fn primitive(p: &Primitive, pkt: &[u8]) -> bool {
            if p.proto.is_some_and(|q| !proto_is(q, pkt)) {
                return false;
            }
            match &p.prim {
                Prim::Host {
                    dir,
                    addr,
                    mask,
                    negated,
                } => {
                    let side = |f| field(f, pkt).map(|a| a & mask == *addr);
                    pair(*dir, *negated, side(SRC), side(DST))
                }
                Prim::Port { dir, rel } => {
                    let side = |f| field(f, pkt).map(|x| holds(rel, x));
                    pair(*dir, rel.negated, side(SPORT), side(DPORT))
                }
                Prim::Field { field: f, rel } => field(*f, pkt).is_some_and(|x| holds(rel, x) != rel.negated),
                Prim::Opt { flags } => field(TCP_FLAGS, pkt).is_some_and(|x| x & flags == *flags),
                Prim::TcpOrUdp { negated } => field(PROTO, pkt).is_some_and(|x| (x == 6 || x == 17) != *negated),
            }
        }

        pub fn pattern(p: &Pattern, pkt: &[u8]) -> bool {
            match p {
                Pattern::True => true,
                Pattern::False => false,
                Pattern::Prim(x) => primitive(x, pkt),
                Pattern::Not(x) => !pattern(x, pkt),
                Pattern::And(v) => v.iter().all(|x| pattern(x, pkt)),
                Pattern::Or(v) => v.iter().any(|x| pattern(x, pkt)),
                Pattern::Cond(b) => {
                    if pattern(&b[0], pkt) {
                        pattern(&b[1], pkt)
                    } else {
                        pattern(&b[2], pkt)
                    }
                }
            }
        }
    }
}
