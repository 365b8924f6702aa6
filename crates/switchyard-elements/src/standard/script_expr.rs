//! The expression handlers of Click's Script element (`add`, `lt`,
//! `sprintf`, `random`, ...) and the word-level text rules they share with
//! it: splitting at unquoted spaces, removing a layer of quotes, quoting,
//! and reading booleans.
//!
//! Everything here is a pure function of text (plus a seeded generator and
//! a clock hook in [`ExprEnv`], and a file read for `cat`), so the Script
//! element, its tests and a fuzzer can call it without a router. The rules
//! follow Click 2.1's `elements/standard/script.cc` and `lib/confparse.cc`
//! as measured against the Click binary, quirks included: a script written
//! for Click gets the same text back here. Where Click crashes, hangs or
//! reads out of bounds, this module answers an error or a fixed value; the
//! places are named in the comments.
//!
//! Text is worked on as bytes because Click's escapes (`"\377"`) can make
//! any byte; results that are not UTF-8 reach the caller with U+FFFD in
//! place of the bad bytes.

use crate::rng::Rng;
use std::borrow::Cow;

/// The handlers [`call`] answers that a Script element shows as its own
/// read handlers. `cat` and `catq` are answered too but not listed: Click
/// keeps them private (a control client must not read arbitrary files).
pub const NAMES: &[&str] = &[
    "add", "sub", "min", "max", "mul", "div", "idiv", "mod", "rem", "neg", "abs", "eq", "ne", "gt", "ge", "lt", "le",
    "not", "sprintf", "first", "random", "and", "or", "nand", "nor", "if", "in", "now", "length", "unquote", "htons",
    "htonl", "ntohs", "ntohl",
];

/// What the handlers need beyond their text: a generator for `random` and
/// the clock for `now`, both replaceable so tests are repeatable.
pub struct ExprEnv {
    rng: Rng,
    now: fn() -> (i64, u32),
}

impl Default for ExprEnv {
    fn default() -> ExprEnv {
        ExprEnv::new()
    }
}

impl ExprEnv {
    /// A generator seeded differently each time, and the system clock.
    pub fn new() -> ExprEnv {
        ExprEnv {
            rng: Rng::new(),
            now: system_now,
        }
    }

    /// The same `random` sequence for the same seed, and `now` from `now`
    /// (seconds and nanoseconds since the Unix epoch).
    // A seam for tests: a running router seeds from the OS and reads the clock.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn with_seed_and_clock(seed: u64, now: fn() -> (i64, u32)) -> ExprEnv {
        ExprEnv {
            rng: Rng::seeded(seed),
            now,
        }
    }

    /// Click's `click_random()`: 0 to 2^31 - 1, like glibc's `random()`.
    fn random31(&mut self) -> u32 {
        self.rng.next_u32() >> 1
    }

    /// Click's `click_random(low, high)`, by the same rejection steps, so
    /// the distribution is Click's even though the numbers differ.
    fn random_between(&mut self, low: u32, high: u32) -> u32 {
        const RAND_MAX: u32 = 0x7fff_ffff;
        if low > high {
            return low;
        }
        let span = high - low;
        if span > RAND_MAX {
            loop {
                let r = (self.random31() << 17) ^ (self.random31() >> 14);
                if r <= span {
                    return r + low;
                }
            }
        } else if span == 1 {
            low + ((self.random31() >> 14) & 1)
        } else {
            let count = (RAND_MAX + 1) / (span + 1);
            let max = count * (span + 1);
            loop {
                let r = self.random31();
                if r < max {
                    return r / count + low;
                }
            }
        }
    }
}

fn system_now() -> (i64, u32) {
    // The router's clock: simulated under `click --simtime`.
    let ns = switchyard_core::clock::now_ns();
    ((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
}

/// Click's expression handlers by name: `call("add", "1 2", env)` is
/// `Some(Ok("3"))`; a name this module does not know is `None`. `args` is
/// the text after the handler name, as Click hands it over: leading space
/// removed, trailing space kept (`length` counts it). Errors carry Click's
/// wording ("expected list of numbers", "syntax error", ...).
pub fn call(name: &str, args: &str, env: &mut ExprEnv) -> Option<Result<String, String>> {
    let a = args.as_bytes();
    let r = match name {
        "add" => arithmetic(Arith::Add, a),
        "sub" => arithmetic(Arith::Sub, a),
        "min" => arithmetic(Arith::Min, a),
        "max" => arithmetic(Arith::Max, a),
        "mul" => arithmetic(Arith::Mul, a),
        "div" => arithmetic(Arith::Div, a),
        "idiv" => arithmetic(Arith::Idiv, a),
        "mod" => modrem(false, a),
        "rem" => modrem(true, a),
        "neg" => negabs(true, a),
        "abs" => negabs(false, a),
        "lt" => compare(Cmp::Lt, a),
        "eq" => compare(Cmp::Eq, a),
        "gt" => compare(Cmp::Gt, a),
        "ge" => compare(Cmp::Ge, a),
        "ne" => compare(Cmp::Ne, a),
        "le" => compare(Cmp::Le, a),
        "not" => truth(args).map(|x| unparse_bool(!x)).ok_or_else(syntax_error),
        "and" | "or" | "nand" | "nor" => logic(name, a),
        "if" => if_handler(a),
        "in" => Ok(unparse_bool(in_handler(a))),
        "first" => Ok(text(shift_spacevec(a).0)),
        "sprintf" => sprintf(a).map(|v| text(&v)),
        "random" => random(a, env),
        "now" => Ok(unparse_timestamp((env.now)())),
        "length" => Ok(a.len().to_string()),
        "unquote" => Ok(text(&unquote_bytes(a))),
        "htons" | "ntohs" => c_int(a).map(|x| u16::from_be(x as u16).to_string()),
        "htonl" | "ntohl" => c_int(a).map(|x| u32::from_be(x as u32).to_string()),
        "cat" => cat(a).map(|v| text(&v)),
        "catq" => cat(a).map(|v| text(&quote_bytes(&v))),
        _ => return None,
    };
    Some(r)
}

/// Splits at unquoted spaces as Click's `cp_spacevec` does: quotes and
/// `\<...>` stay inside a word and are kept, comments separate words.
pub fn words(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = args.as_bytes();
    while !rest.is_empty() {
        let (word, r) = shift_spacevec(rest);
        if word.is_empty() {
            break;
        }
        out.push(text(word));
        rest = r;
    }
    out
}

/// Removes one layer of quoting as Click's `cp_unquote`: comments and outer
/// space go, `"..."` and `'...'` lose their quotes, backslash escapes are
/// expanded inside double quotes, and `\<hex>` anywhere outside quotes.
pub fn unquote(s: &str) -> String {
    text(&unquote_bytes(s.as_bytes()))
}

/// A double-quoted form of `s` that [`unquote`] turns back into `s`, as
/// Click's `cp_quote` writes it (`\n`, `\t`, `\$`, octal for other control
/// and non-ASCII bytes).
pub fn quote(s: &str) -> String {
    text(&quote_bytes(s.as_bytes()))
}

/// Click's boolean words: `true yes t y 1` and `false no f n 0`, exactly
/// (no case folding, no quotes, no space).
pub fn truth(s: &str) -> Option<bool> {
    match s {
        "1" | "y" | "t" | "true" | "yes" => Some(true),
        "0" | "n" | "f" | "false" | "no" => Some(false),
        _ => None,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn syntax_error() -> String {
    "syntax error".to_string()
}

fn unparse_bool(b: bool) -> String {
    (if b { "true" } else { "false" }).to_string()
}

// ---------------------------------------------------------------------------
// Words, quotes and comments (Click's confparse rules).

/// C's `isspace` in the "C" locale; Rust's ASCII whitespace lacks `\v`.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn starts_comment(s: &[u8], i: usize) -> bool {
    s[i] == b'/' && i + 1 < s.len() && (s[i + 1] == b'/' || s[i + 1] == b'*')
}

/// The index after the comment at `i`; an open comment runs to the end.
fn skip_comment(s: &[u8], mut i: usize) -> usize {
    let end = s.len();
    if s[i + 1] == b'/' {
        i += 2;
        while i + 1 < end && s[i] != b'\n' && s[i] != b'\r' {
            i += 1;
        }
        if i + 1 < end && s[i] == b'\r' && s[i + 1] == b'\n' {
            i += 1;
        }
        (i + 1).min(end)
    } else {
        i += 2;
        while i + 2 < end && (s[i] != b'*' || s[i + 1] != b'/') {
            i += 1;
        }
        (i + 2).min(end)
    }
}

fn skip_backslash(s: &[u8], i: usize) -> usize {
    let end = s.len();
    if i + 1 >= end {
        end
    } else if s[i + 1] == b'<' {
        let mut j = i + 2;
        while j < end {
            if s[j] == b'>' {
                return j + 1;
            } else if starts_comment(s, j) {
                j = skip_comment(s, j);
            } else {
                j += 1;
            }
        }
        end
    } else if s[i + 1] == b'\r' && i + 2 < end && s[i + 2] == b'\n' {
        i + 3
    } else {
        i + 2
    }
}

fn skip_double_quote(s: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i = skip_backslash(s, i),
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

fn skip_single_quote(s: &[u8], i: usize) -> usize {
    s[i + 1..]
        .iter()
        .position(|&c| c == b'\'')
        .map_or(s.len(), |p| i + p + 2)
}

fn skip_comment_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        if is_space(s[i]) {
            i += 1;
        } else if starts_comment(s, i) {
            i = skip_comment(s, i);
        } else {
            break;
        }
    }
    i
}

fn skip_spacevec_item(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        match s[i] {
            b'/' if starts_comment(s, i) => return i,
            b'"' => i = skip_double_quote(s, i),
            b'\'' => i = skip_single_quote(s, i),
            b'\\' if i + 1 < s.len() && s[i + 1] == b'<' => i = skip_backslash(s, i),
            c if is_space(c) => return i,
            _ => i += 1,
        }
    }
    i
}

fn shift_spacevec(s: &[u8]) -> (&[u8], &[u8]) {
    let start = skip_comment_space(s, 0);
    let end = skip_spacevec_item(s, start);
    let next = skip_comment_space(s, end);
    (&s[start..end], &s[next..])
}

/// Click's `cp_uncomment`: outer space trimmed, each comment (with the
/// space around it) turned into one space, other inner space kept.
fn uncomment(s: &[u8]) -> Cow<'_, [u8]> {
    let end = s.len();
    let mut i = skip_comment_space(s, 0);
    let mut out: Vec<u8> = Vec::new();
    let (mut left, mut right) = (i, i);
    let mut closed = false;
    while i < end {
        if is_space(s[i]) {
            i += 1;
        } else if starts_comment(s, i) {
            i = skip_comment(s, i);
            closed = true;
        } else {
            if closed {
                out.extend_from_slice(&s[left..right]);
                out.push(b' ');
                left = i;
                closed = false;
            }
            i = match s[i] {
                b'\'' => skip_single_quote(s, i),
                b'"' => skip_double_quote(s, i),
                b'\\' if i + 1 < end && s[i + 1] == b'<' => skip_backslash(s, i),
                _ => i + 1,
            };
            right = i;
        }
    }
    if out.is_empty() {
        Cow::Borrowed(&s[left..right])
    } else {
        out.extend_from_slice(&s[left..right]);
        Cow::Owned(out)
    }
}

fn hex_value(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

fn unquote_bytes(s: &[u8]) -> Vec<u8> {
    let x = uncomment(s);
    let x: &[u8] = &x;
    let mut out = Vec::with_capacity(x.len());
    let mut start = 0;
    let mut state = 0u8;
    let mut i = 0;
    while i < x.len() {
        match x[i] {
            q @ (b'"' | b'\'') if state == 0 || state == q => {
                out.extend_from_slice(&x[start..i]);
                start = i + 1;
                state = if state == 0 { q } else { 0 };
            }
            b'\\' if i + 1 < x.len() && (state == b'"' || (state == 0 && x[i + 1] == b'<')) => {
                out.extend_from_slice(&x[start..i]);
                start = switchyard_lang::config::process_backslash(x, i, &mut out);
                i = start;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.extend_from_slice(&x[start.min(x.len())..]);
    out
}

fn quote_bytes(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    switchyard_lang::config::quote_into(s, &mut out);
    out.push(b'"');
    out
}

/// Click's `cp_string`: one non-empty word, unquoted.
fn cp_string(word: &[u8]) -> Option<Vec<u8>> {
    let end = skip_spacevec_item_no_comments(word);
    (end != 0 && end == word.len()).then(|| unquote_bytes(word))
}

/// Like [`skip_spacevec_item`], but a comment does not end the word
/// (`cp_string`'s rule).
fn skip_spacevec_item_no_comments(s: &[u8]) -> usize {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => i = skip_double_quote(s, i),
            b'\'' => i = skip_single_quote(s, i),
            b'\\' if i + 1 < s.len() && s[i + 1] == b'<' => i = skip_backslash(s, i),
            c if is_space(c) => return i,
            _ => i += 1,
        }
    }
    i
}

// ---------------------------------------------------------------------------
// Numbers (Click's IntArg and DoubleArg).

enum IntParse {
    Ok(u64),
    /// Too large: the value saturated to the type's bound.
    Range(u64),
    Invalid,
}

/// Where Click's integer syntax ends in `s`, and the base it chose: an
/// optional sign, `0x`/`0b`/`0` prefixes, `_` between digits.
fn int_span(s: &[u8], signed: bool) -> (usize, u32) {
    let n = s.len();
    let mut i = 0;
    if i < n && ((signed && s[0] == b'-') || s[0] == b'+') {
        i += 1;
    }
    let base = if i + 2 < n && s[i] == b'0' && (s[i + 1] | 0x20) == b'x' {
        i += 2;
        16
    } else if i + 2 < n && s[i] == b'0' && (s[i + 1] | 0x20) == b'b' {
        i += 2;
        2
    } else if i < n && s[i] == b'0' {
        8
    } else {
        10
    };
    let first = i;
    // `last` is one past the last digit seen; `first` until a digit is seen.
    let mut last = None;
    while i < n {
        if s[i] == b'_' && last == Some(i) {
            // an underscore directly after a digit
        } else if (s[i] as char).is_digit(base) {
            last = Some(i + 1);
        } else {
            break;
        }
        i += 1;
    }
    match last {
        Some(l) => (l, base),
        // "0x!" and "+0x": the leading zero alone is the number
        None if first > 1 => (first - 1, base),
        None => (0, base),
    }
}

fn parse_int(s: &[u8], signed: bool, bits: u32) -> IntParse {
    let (end, base) = int_span(s, signed);
    if end == 0 || end != s.len() {
        return IntParse::Invalid;
    }
    let negative = signed && s[0] == b'-';
    let start = match s[0] {
        b'-' | b'+' => 1,
        _ => 0,
    };
    // skip the base prefix; the leading zero of an octal number is a digit
    let digits = if base == 16 || base == 2 {
        &s[start + 2..end]
    } else {
        &s[start..end]
    };
    let mut mag: u128 = 0;
    let mut overflow = false;
    for d in digits.iter().filter_map(|&c| (c as char).to_digit(base)) {
        mag = mag * u128::from(base) + u128::from(d);
        if mag > u128::from(u64::MAX) {
            overflow = true;
            mag = u128::from(u64::MAX);
        }
    }
    let limit: u128 = if signed {
        (1u128 << (bits - 1)) - 1 + u128::from(negative)
    } else {
        (1u128 << bits) - 1
    };
    if overflow || mag > limit {
        let sat = match (signed, negative) {
            (false, _) => limit as u64,
            (true, false) => limit as u64,
            (true, true) => (limit as u64).wrapping_neg(),
        };
        return IntParse::Range(sat);
    }
    let v = mag as u64;
    IntParse::Ok(if negative { v.wrapping_neg() } else { v })
}

/// Click's `IntArg().parse` into an `int64_t`: overflow is a failure.
fn int_i64(s: &[u8]) -> Option<i64> {
    match parse_int(s, true, 64) {
        IntParse::Ok(v) => Some(v as i64),
        _ => None,
    }
}

fn int_u64(s: &[u8]) -> Option<u64> {
    match parse_int(s, false, 64) {
        IntParse::Ok(v) => Some(v),
        _ => None,
    }
}

/// Click's `cp_integer` into an `int`: overflow saturates.
fn c_int(s: &[u8]) -> Result<i32, String> {
    match parse_int(s, true, 32) {
        IntParse::Ok(v) | IntParse::Range(v) => Ok(v as i32),
        IntParse::Invalid => Err(syntax_error()),
    }
}

/// Click's `DoubleArg`: C's `strtod` over the whole word, where a result
/// out of range (overflow, or underflow to zero or a subnormal) is a
/// failure, as glibc reports `ERANGE` for them.
fn double_arg(s: &[u8]) -> Option<f64> {
    let (negative, body) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == b"inf" || lower == b"infinity" {
        f64::INFINITY
    } else if lower.starts_with(b"nan") {
        let tail = &lower[3..];
        let ok = tail.is_empty()
            || (tail.len() >= 2
                && tail[0] == b'('
                && tail[tail.len() - 1] == b')'
                && tail[1..tail.len() - 1]
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_'));
        if !ok {
            return None;
        }
        f64::NAN
    } else if lower.len() > 2 && lower.starts_with(b"0x") {
        hex_float(&lower[2..])?
    } else {
        decimal_float(body)?
    };
    Some(if negative { -v } else { v })
}

fn decimal_float(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    let mut digits = 0;
    let mut nonzero = false;
    let mut dot = false;
    while i < s.len() {
        match s[i] {
            b'0'..=b'9' => {
                digits += 1;
                nonzero |= s[i] != b'0';
            }
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < s.len() {
        if s[i] | 0x20 != b'e' {
            return None;
        }
        let mut j = i + 1;
        if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
            j += 1;
        }
        if j == s.len() || !s[j..].iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    in_range(v, nonzero)
}

fn in_range(v: f64, nonzero: bool) -> Option<f64> {
    if v.is_infinite() || (nonzero && (v == 0.0 || v.is_subnormal())) {
        None
    } else {
        Some(v)
    }
}

/// The part of a C hexadecimal float after `0x` (lowercased).
fn hex_float(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    let mut mant: u64 = 0;
    let mut exp: i64 = 0;
    let mut digits = 0;
    let mut sticky = false;
    let mut dot = false;
    while i < s.len() {
        match s[i] {
            b'.' if !dot => dot = true,
            c => match hex_value(c) {
                Some(d) => {
                    digits += 1;
                    if mant >> 56 == 0 {
                        mant = mant * 16 + u64::from(d);
                        if dot {
                            exp -= 4;
                        }
                    } else {
                        sticky |= d != 0;
                        if !dot {
                            exp += 4;
                        }
                    }
                }
                None => break,
            },
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < s.len() {
        if s[i] != b'p' {
            return None;
        }
        let e = &s[i + 1..];
        let (sign, e) = match e.first() {
            Some(b'-') => (-1, &e[1..]),
            Some(b'+') => (1, &e[1..]),
            _ => (1, e),
        };
        if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let p = e.iter().fold(0i64, |a, &c| (a * 10 + i64::from(c - b'0')).min(1 << 20));
        exp += sign * p;
    }
    // a lost nonzero digit only matters for rounding; keep it as the low bit
    let m = (mant | u64::from(sticky)) as f64;
    let mut v = m;
    let mut e = exp;
    while e > 0 && v.is_finite() {
        let step = e.min(1000);
        v *= 2f64.powi(step as i32);
        e -= step;
    }
    while e < 0 && v != 0.0 {
        let step = e.max(-1000);
        v *= 2f64.powi(step as i32);
        e -= step;
    }
    in_range(v, mant != 0 || sticky)
}

/// C's `printf("%.12g")`, which Click uses to print every real number.
fn format_g12(x: f64) -> String {
    const P: i32 = 12;
    if x.is_nan() {
        return (if x.is_sign_negative() { "-nan" } else { "nan" }).to_string();
    }
    if x.is_infinite() {
        return (if x < 0.0 { "-inf" } else { "inf" }).to_string();
    }
    if x == 0.0 {
        return (if x.is_sign_negative() { "-0" } else { "0" }).to_string();
    }
    let sci = format!("{:.*e}", (P - 1) as usize, x);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..P).contains(&exp) {
        let mant = strip_zeros(mant);
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        strip_zeros(&format!("{:.*}", (P - 1 - exp) as usize, x)).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A double converted to `int64_t` as x86-64 does it: NaN and values out
/// of range become the "integer indefinite", i64::MIN (Click's `idiv`).
fn truncate_like_x86(d: f64) -> i64 {
    if d.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

// ---------------------------------------------------------------------------
// The handlers.

#[derive(Clone, Copy, PartialEq)]
enum Arith {
    Add,
    Sub,
    Min,
    Max,
    Mul,
    Div,
    Idiv,
}

/// Integer arithmetic while every word is an integer, doubles from the
/// first word that is not; `div` and `idiv` are in doubles throughout
/// (so they read `010` as ten, as `strtod` does).
fn arithmetic(op: Arith, args: &[u8]) -> Result<String, String> {
    let unit = if matches!(op, Arith::Add | Arith::Sub) { 0 } else { 1 };
    let mut accum: i64 = unit;
    let mut daccum = unit as f64;
    let mut doubles = matches!(op, Arith::Div | Arith::Idiv);
    let mut first = true;
    let mut rest = args;
    loop {
        let (word, r) = shift_spacevec(rest);
        rest = r;
        if word.is_empty() && rest.iter().all(|&c| is_space(c)) {
            break;
        }
        if !doubles {
            if let Some(x) = int_i64(word) {
                accum = match op {
                    _ if first => x,
                    Arith::Add => accum.wrapping_add(x),
                    Arith::Sub => accum.wrapping_sub(x),
                    Arith::Min => accum.min(x),
                    Arith::Max => accum.max(x),
                    Arith::Mul => accum.wrapping_mul(x),
                    Arith::Div | Arith::Idiv => unreachable!("division is always in doubles"),
                };
                first = false;
                continue;
            }
            doubles = true;
            daccum = accum as f64;
        }
        let x = double_arg(word).ok_or("expected list of numbers")?;
        // min and max keep Click's comparison order, which decides NaN
        daccum = match op {
            _ if first => x,
            Arith::Add => daccum + x,
            Arith::Sub => daccum - x,
            Arith::Min => {
                if daccum < x {
                    daccum
                } else {
                    x
                }
            }
            Arith::Max => {
                if daccum > x {
                    daccum
                } else {
                    x
                }
            }
            Arith::Mul => daccum * x,
            Arith::Div | Arith::Idiv => daccum / x,
        };
        first = false;
    }
    Ok(if op == Arith::Idiv {
        truncate_like_x86(daccum).to_string()
    } else if doubles {
        format_g12(daccum)
    } else {
        accum.to_string()
    })
}

fn two_words(args: &[u8]) -> Option<(&[u8], &[u8])> {
    let (a, r) = shift_spacevec(args);
    let (b, r) = shift_spacevec(r);
    (r.is_empty() && !a.is_empty() && !b.is_empty()).then_some((a, b))
}

/// `mod` needs integers; `rem` falls back to C's `fmod` for reals.
fn modrem(rem: bool, args: &[u8]) -> Result<String, String> {
    let two = || "expected two numbers".to_string();
    let (a, b) = two_words(args).ok_or_else(two)?;
    match (int_i64(a), int_i64(b)) {
        // Click dies of SIGFPE here; an error is kinder.
        (Some(_), Some(0)) => Err("division by zero".to_string()),
        (Some(x), Some(y)) => Ok(x.wrapping_rem(y).to_string()),
        _ if !rem => Err(two()),
        _ => match (double_arg(a), double_arg(b)) {
            (Some(x), Some(y)) => Ok(format_g12(x % y)),
            _ => Err(two()),
        },
    }
}

/// The whole text is the number (`neg 5 6` is an error).
fn negabs(neg: bool, args: &[u8]) -> Result<String, String> {
    if let Some(x) = int_i64(args) {
        return Ok(if neg || x < 0 { x.wrapping_neg() } else { x }.to_string());
    }
    let x = double_arg(args).ok_or("expected one number")?;
    Ok(format_g12(if neg { -x } else { x.abs() }))
}

#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    Lt,
    Eq,
    Gt,
    Ge,
    Ne,
    Le,
}

/// Numbers compare as numbers (integers exactly, else as doubles, where
/// NaN counts as greater); anything else compares as unquoted bytes.
fn compare(what: Cmp, args: &[u8]) -> Result<String, String> {
    use std::cmp::Ordering;
    let (a, b) = two_words(args).ok_or("expected two numbers")?;
    let order = match (int_i64(a), int_i64(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => match (double_arg(a), double_arg(b)) {
            (Some(x), Some(y)) if x < y => Ordering::Less,
            (Some(x), Some(y)) if x == y => Ordering::Equal,
            (Some(_), Some(_)) => Ordering::Greater,
            _ => unquote_bytes(a).cmp(&unquote_bytes(b)),
        },
    };
    let answer = match what {
        Cmp::Lt => order.is_lt(),
        Cmp::Eq => order.is_eq(),
        Cmp::Gt => order.is_gt(),
        Cmp::Ge => !order.is_lt(),
        Cmp::Ne => !order.is_eq(),
        Cmp::Le => !order.is_gt(),
    };
    Ok(unparse_bool(answer))
}

/// Words are read only until the answer is known: `and false junk` is false.
fn logic(name: &str, args: &[u8]) -> Result<String, String> {
    let is_and = name == "and" || name == "nand";
    let mut value = is_and;
    let mut rest = args;
    while value == is_and && !rest.is_empty() {
        let (word, r) = shift_spacevec(rest);
        rest = r;
        let x = std::str::from_utf8(word)
            .ok()
            .and_then(truth)
            .ok_or_else(syntax_error)?;
        value = if is_and { value && x } else { value || x };
    }
    if name.starts_with('n') {
        value = !value;
    }
    Ok(unparse_bool(value))
}

fn if_handler(args: &[u8]) -> Result<String, String> {
    let (cond, rest) = shift_spacevec(args);
    let cond = std::str::from_utf8(cond)
        .ok()
        .and_then(truth)
        .ok_or_else(syntax_error)?;
    let (yes, rest) = shift_spacevec(rest);
    Ok(text(if cond { yes } else { shift_spacevec(rest).0 }))
}

fn in_handler(args: &[u8]) -> bool {
    let (word, mut rest) = shift_spacevec(args);
    let word = unquote_bytes(word);
    while !word.is_empty() && !rest.is_empty() {
        let (other, r) = shift_spacevec(rest);
        rest = r;
        if unquote_bytes(other) == word {
            return true;
        }
    }
    false
}

/// `random`, `random N` (0 to N-1) and `random N1 N2` (N1 to N2).
fn random(args: &[u8], env: &mut ExprEnv) -> Result<String, String> {
    if args.is_empty() {
        return Ok(env.random31().to_string());
    }
    let mut words = Vec::new();
    let mut rest = args;
    loop {
        let (w, r) = shift_spacevec(rest);
        if w.is_empty() {
            break;
        }
        words.push(w);
        rest = r;
    }
    let mut errors = Vec::new();
    let mut read = |name: &str, w: Option<&&[u8]>| match w.map(|w| parse_int(w, false, 32)) {
        None => None,
        Some(IntParse::Ok(v)) => Some(v as u32),
        Some(IntParse::Range(_)) => {
            errors.push(format!("{name}: out of range, bound 4294967295"));
            None
        }
        Some(IntParse::Invalid) => {
            errors.push(format!("{name}: invalid number"));
            None
        }
    };
    let n1 = read("N1", words.first());
    let n2 = read("N2", words.get(1));
    if words.is_empty() {
        errors.push("N1: required argument missing".to_string());
    }
    if words.len() > 2 {
        errors.push("too many arguments".to_string());
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    match (n1, n2) {
        (Some(a), Some(b)) if b >= a => Ok(env.random_between(a, b).to_string()),
        (Some(n), None) if n > 0 => Ok(env.random_between(0, n - 1).to_string()),
        _ => Err("bad N".to_string()),
    }
}

/// Click's timestamp text: microseconds when they suffice, else nanoseconds.
fn unparse_timestamp((sec, nsec): (i64, u32)) -> String {
    let sec = sec.saturating_add(i64::from(nsec / 1_000_000_000));
    let nsec = nsec % 1_000_000_000;
    let (sign, sec, sub) = match (sec < 0, nsec) {
        (false, _) => ("", sec.unsigned_abs(), nsec),
        (true, 0) => ("-", sec.unsigned_abs(), 0),
        (true, n) => ("-", sec.unsigned_abs() - 1, 1_000_000_000 - n),
    };
    if sub % 1000 == 0 {
        format!("{sign}{sec}.{:06}", sub / 1000)
    } else {
        format!("{sign}{sec}.{sub:09}")
    }
}

/// A file's contents; the name is one word, `~/` means `$HOME`, and `-`
/// is standard input, as in Click.
fn cat(args: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "bad FILE".to_string();
    let mut name = cp_string(args).ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    if name[0] == b'~' && (name.len() == 1 || name[1] == b'/') {
        if let Some(home) = std::env::var_os("HOME") {
            let mut n = home.into_encoded_bytes();
            n.extend_from_slice(&name[1..]);
            name = n;
        }
    }
    name.dedup_by(|a, b| *a == b'/' && *b == b'/');
    if name == b"-" {
        // Standard input would block a router thread, possibly forever.
        return Err("<stdin>: not readable from a script".to_string());
    }
    // Bounded: `$(cat /dev/zero)` must not take the router's memory.
    use std::io::Read;
    let path = path_from_bytes(&name);
    let mut v = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_CAT + 1).read_to_end(&mut v))
        .map_err(|e| format!("{}: {}", text(&name), strerror(&e)))?;
    if v.len() as u64 > MAX_CAT {
        return Err(format!("{}: larger than {MAX_CAT} bytes", text(&name)));
    }
    Ok(v)
}

/// The most a script's `cat` reads.
const MAX_CAT: u64 = 1 << 20;

#[cfg(unix)]
fn path_from_bytes(b: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b).into()
}

#[cfg(not(unix))]
fn path_from_bytes(b: &[u8]) -> std::path::PathBuf {
    text(b).into()
}

/// The C library's message without Rust's " (os error N)" suffix.
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

// ---------------------------------------------------------------------------
// sprintf: Click parses the format itself and formats each conversion with
// its own printf (ErrorHandler::xformat), whose rules differ from C's in
// places: `+` and ` ` apply to unsigned conversions, `0` applies with `-`,
// `.0` still prints a zero, and `%#o` tests the second digit.

#[derive(Default, Clone, Copy)]
struct Spec {
    alt: bool,
    zero: bool,
    left: bool,
    space: bool,
    plus: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// Click caps number widths here; strings are capped by us (Click has no
/// cap) so a stray `%999999999s` cannot exhaust memory.
const NUM_WIDTH_MAX: usize = 128;
const NUM_PRECISION_MAX: usize = 124;
const TEXT_WIDTH_MAX: usize = 1 << 20;

fn sprintf(args: &[u8]) -> Result<Vec<u8>, String> {
    let (fmt, mut rest) = shift_spacevec(args);
    let fmt = unquote_bytes(fmt);
    let n = fmt.len();
    let mut out = Vec::new();
    let mut s = 0;
    while let Some(off) = fmt[s..].iter().position(|&c| c == b'%') {
        let pct = s + off;
        out.extend_from_slice(&fmt[s..pct]);
        let mut p = pct + 1;
        let mut spec = Spec::default();
        while p < n {
            match fmt[p] {
                b'0' => spec.zero = true,
                b'#' => spec.alt = true,
                b'-' => spec.left = true,
                b' ' => spec.space = true,
                b'+' => spec.plus = true,
                _ => break,
            }
            p += 1;
        }
        // Click reads a `*` argument but then takes the `*` itself for the
        // conversion, which is always an error.
        if p < n && fmt[p] == b'*' {
            return Err(syntax_error());
        }
        let digits = |p: &mut usize| {
            let mut v: usize = 0;
            while *p < n && fmt[*p].is_ascii_digit() {
                v = v.saturating_mul(10).saturating_add(usize::from(fmt[*p] - b'0'));
                *p += 1;
            }
            v
        };
        if p < n && fmt[p].is_ascii_digit() {
            spec.width = Some(digits(&mut p));
        }
        if p < n && fmt[p] == b'.' {
            p += 1;
            if p < n && fmt[p] == b'*' {
                return Err(syntax_error());
            }
            // a `.` without digits is dropped, not read as `.0`
            if p < n && fmt[p].is_ascii_digit() {
                spec.precision = Some(digits(&mut p));
            }
        }
        let mut short = false;
        while p < n && matches!(fmt[p], b'h' | b'l' | b'L' | b'q') {
            short = fmt[p] == b'h';
            p += 1;
        }
        let conv = *fmt.get(p).ok_or_else(syntax_error)?;
        let piece = match conv {
            b'o' | b'x' | b'X' | b'u' => {
                let (w, r) = shift_spacevec(rest);
                rest = r;
                let mut v = int_u64(w).ok_or_else(syntax_error)?;
                if short {
                    v &= 0xffff;
                }
                let base = match conv {
                    b'o' => 8,
                    b'u' => 10,
                    _ => 16,
                };
                format_number(v, false, base, conv == b'X', spec)
            }
            b'd' | b'i' => {
                let (w, r) = shift_spacevec(rest);
                rest = r;
                let mut v = int_i64(w).ok_or_else(syntax_error)?;
                if short {
                    v = i64::from(v as i16);
                }
                format_number(v.unsigned_abs(), v < 0, 10, false, spec)
            }
            b'%' => pad(b"%", spec, TEXT_WIDTH_MAX),
            b's' => {
                let (w, r) = shift_spacevec(rest);
                rest = r;
                let v = cp_string(w).ok_or_else(syntax_error)?;
                format_text(&v, spec)
            }
            _ => return Err(syntax_error()),
        };
        out.extend_from_slice(&piece);
        s = p + 1;
    }
    if !rest.is_empty() {
        return Err(syntax_error());
    }
    out.extend_from_slice(&fmt[s..]);
    Ok(out)
}

fn format_number(mag: u64, negative: bool, base: u32, upper: bool, spec: Spec) -> Vec<u8> {
    let width = spec.width.map(|w| w.min(NUM_WIDTH_MAX));
    let mut digits = match (base, upper) {
        (8, _) => format!("{mag:o}"),
        (16, false) => format!("{mag:x}"),
        (16, true) => format!("{mag:X}"),
        _ => mag.to_string(),
    }
    .into_bytes();
    let alt = spec.alt && !(base == 16 && mag == 0);
    let zeros = |d: &mut Vec<u8>, to: usize| {
        if d.len() < to {
            d.splice(0..0, std::iter::repeat_n(b'0', to - d.len()));
        }
    };
    if let Some(p) = spec.precision {
        zeros(&mut digits, p.min(NUM_PRECISION_MAX));
    } else if spec.zero {
        let mut w = width.unwrap_or(0);
        if alt && base == 16 {
            w = w.saturating_sub(2);
        }
        if negative || spec.plus || spec.space {
            w = w.saturating_sub(1);
        }
        zeros(&mut digits, w);
    }
    let mut prefix: Vec<u8> = Vec::new();
    if negative {
        prefix.push(b'-');
    } else if spec.plus {
        prefix.push(b'+');
    } else if spec.space {
        prefix.push(b' ');
    }
    // Click looks at the second digit, so "10" (eight) gets no extra zero;
    // for one digit it reads past its buffer, which in practice adds one.
    if alt && base == 8 && digits.get(1) != Some(&b'0') {
        prefix.push(b'0');
    } else if alt && base == 16 {
        prefix.extend_from_slice(if upper { b"0X" } else { b"0x" });
    }
    prefix.extend_from_slice(&digits);
    pad(&prefix, Spec { width, ..spec }, NUM_WIDTH_MAX)
}

fn format_text(s: &[u8], spec: Spec) -> Vec<u8> {
    // Click hands the text over as a C string
    let s = s.split(|&c| c == 0).next().unwrap_or_default();
    let mut len = spec.precision.map_or(s.len(), |p| p.min(s.len()));
    if !spec.alt {
        return pad(&s[..len], spec, TEXT_WIDTH_MAX);
    }
    let mut t = printable(&s[..len]);
    if spec.precision.is_none_or(|p| t.len() < p) {
        len = t.len();
    }
    // `#` also guards text that would read as an error annotation
    if starts_with_annotation(&t) {
        t.splice(0..0, *b"{}");
        len += 2;
    }
    pad(&t[..len], spec, TEXT_WIDTH_MAX)
}

fn pad(s: &[u8], spec: Spec, max: usize) -> Vec<u8> {
    let width = spec.width.unwrap_or(0).min(max);
    if s.len() >= width {
        return s.to_vec();
    }
    let fill = width - s.len();
    let mut out = Vec::with_capacity(width);
    if spec.left {
        out.extend_from_slice(s);
        out.resize(width, b' ');
    } else {
        out.resize(fill, if spec.zero { b'0' } else { b' ' });
        out.extend_from_slice(s);
    }
    out
}

/// Click's `String::printable`: `^X` for control bytes, octal above 126.
fn printable(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        match c {
            32..=126 => out.push(c),
            0..=31 => out.extend_from_slice(&[b'^', c + 64]),
            _ => out.extend_from_slice(format!("\\{c:03o}").as_bytes()),
        }
    }
    out
}

/// Whether Click's error machinery would read the start of `s` as an
/// annotation: `<level>` (repeatable) or `{}`.
fn starts_with_annotation(s: &[u8]) -> bool {
    let mut i = 0;
    loop {
        if i + 3 <= s.len() && s[i] == b'<' {
            let x = level_end(s, i + 1);
            if x != i + 1 && x != s.len() && s[x] == b'>' {
                i = x + 1;
                continue;
            }
        } else if i + 2 <= s.len() && s[i] == b'{' && s[i + 1] == b'}' {
            i += 2;
        }
        return i != 0;
    }
}

fn level_end(s: &[u8], begin: usize) -> usize {
    let mut i = begin;
    if i < s.len() && (s[i] == b'-' || s[i] == b'+') {
        i += 1;
    }
    let digits = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i == digits || (i == digits + 1 && s[i - 1] == b'.') {
        begin
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_clock() -> (i64, u32) {
        (1_700_000_000, 250_000_000)
    }

    fn env() -> ExprEnv {
        ExprEnv::with_seed_and_clock(7, fixed_clock)
    }

    fn run(name: &str, args: &str) -> Result<String, String> {
        call(name, args, &mut env()).expect("a known handler")
    }

    /// (handler, arguments, answer), each answer taken from a run of the
    /// Click 2.1 userlevel driver on this machine kind.
    #[rustfmt::skip]
    const CLICK_ANSWERS: &[(&str, &str, Result<&str, &str>)] = &[
        ("add", "", Ok("0")),
        ("add", "5", Ok("5")),
        ("add", "1 2 3", Ok("6")),
        ("add", "-1 -2", Ok("-3")),
        ("add", "1.5 2", Ok("3.5")),
        ("add", "1 2.5 3", Ok("6.5")),
        ("add", "0x10 1", Ok("17")),
        ("add", "010 1", Ok("9")),
        ("add", "08 1", Ok("9")),
        ("add", "0b101 1", Ok("6")),
        ("add", "1_000 1", Ok("1001")),
        ("add", "+5 1", Ok("6")),
        ("add", "9223372036854775807 1", Ok("-9223372036854775808")),
        ("add", "9223372036854775808 1", Ok("9.22337203685e+18")),
        ("add", "1e3 1", Ok("1001")),
        ("add", "1e400 1", Err("expected list of numbers")),
        ("add", "1e-310 0", Err("expected list of numbers")),
        ("add", "1e-400 0", Err("expected list of numbers")),
        ("add", "inf 1", Ok("inf")),
        ("add", "nan 1", Ok("nan")),
        ("add", "-nan 1", Ok("-nan")),
        ("add", "0x1.8p1 0", Ok("3")),
        ("add", "1. 1", Ok("2")),
        ("add", ".5 1", Ok("1.5")),
        ("add", "\"1\" 2", Err("expected list of numbers")),
        ("add", "1 x", Err("expected list of numbers")),
        ("add", "0.1 0.2", Ok("0.3")),
        ("add", "1234567890125 0.0", Ok("1.23456789012e+12")),
        ("add", "123456789012.5 0", Ok("123456789012")),
        ("add", "1e15 0.5", Ok("1e+15")),
        ("add", "0.0001 0", Ok("0.0001")),
        ("add", "0.00001 0", Ok("1e-05")),
        ("sub", "", Ok("0")),
        ("sub", "10 5 2", Ok("3")),
        ("sub", "5", Ok("5")),
        ("sub", "1 2.5", Ok("-1.5")),
        ("mul", "", Ok("1")),
        ("mul", "2 3 4", Ok("24")),
        ("mul", "4611686018427387904 2", Ok("-9223372036854775808")),
        ("mul", "9223372036854775807 9223372036854775807", Ok("1")),
        ("mul", "1.5 2", Ok("3")),
        ("mul", "3 0.5", Ok("1.5")),
        ("div", "", Ok("1")),
        ("div", "7 2", Ok("3.5")),
        ("div", "6 3", Ok("2")),
        ("div", "1 3", Ok("0.333333333333")),
        ("div", "1 0", Ok("inf")),
        ("div", "-1 0", Ok("-inf")),
        ("div", "0 0", Ok("-nan")),
        ("div", "0x10 2", Ok("8")),
        ("div", "010 2", Ok("5")),
        ("div", "1_0 2", Err("expected list of numbers")),
        ("div", "7", Ok("7")),
        ("idiv", "7 2", Ok("3")),
        ("idiv", "-7 2", Ok("-3")),
        ("idiv", "1 0", Ok("-9223372036854775808")),
        ("idiv", "0 0", Ok("-9223372036854775808")),
        ("idiv", "1e30 1", Ok("-9223372036854775808")),
        ("idiv", "", Ok("1")),
        ("min", "", Ok("1")),
        ("min", "5 3 9", Ok("3")),
        ("max", "5 10 2", Ok("10")),
        ("min", "1 0.5", Ok("0.5")),
        ("max", "1 nan", Ok("nan")),
        ("max", "nan 1", Ok("1")),
        ("min", "-3 -7", Ok("-7")),
        ("mod", "7 3", Ok("1")),
        ("mod", "-7 3", Ok("-1")),
        ("mod", "7 -3", Ok("1")),
        ("mod", "7.5 2", Err("expected two numbers")),
        ("mod", "7", Err("expected two numbers")),
        ("mod", "7 3 1", Err("expected two numbers")),
        ("mod", "", Err("expected two numbers")),
        ("rem", "7 3", Ok("1")),
        ("rem", "7.5 2", Ok("1.5")),
        ("rem", "-7.5 2", Ok("-1.5")),
        ("rem", "1 0.0", Ok("-nan")),
        ("rem", "5.5 0", Ok("-nan")),
        ("rem", "0x10 3", Ok("1")),
        ("neg", "5", Ok("-5")),
        ("neg", "-5", Ok("5")),
        ("neg", "0.0", Ok("-0")),
        ("neg", "1.5", Ok("-1.5")),
        ("neg", "x", Err("expected one number")),
        ("neg", "", Err("expected one number")),
        ("neg", "5 6", Err("expected one number")),
        ("neg", "-9223372036854775808", Ok("-9223372036854775808")),
        ("abs", "-5", Ok("5")),
        ("abs", "5", Ok("5")),
        ("abs", "-1.5", Ok("1.5")),
        ("abs", "-9223372036854775808", Ok("-9223372036854775808")),
        ("abs", "-0.0", Ok("0")),
        ("eq", "10 0xA", Ok("true")),
        ("eq", "1 1.0", Ok("true")),
        ("eq", "08 8", Ok("true")),
        ("eq", "10x 10x", Ok("true")),
        ("eq", "abc abd", Ok("false")),
        ("lt", "abc abd", Ok("true")),
        ("lt", "abc ab", Ok("false")),
        ("gt", "abc ab", Ok("true")),
        ("le", "9 8", Ok("false")),
        ("ge", "9 8", Ok("true")),
        ("ne", "1 2", Ok("true")),
        ("eq", "\"a b\" 'a b'", Ok("true")),
        ("eq", "\"a\" a", Ok("true")),
        ("lt", "2 10", Ok("true")),
        ("lt", "\"2\" \"10\"", Ok("false")),
        ("lt", "2 10x", Ok("false")),
        ("eq", "nan nan", Ok("false")),
        ("gt", "nan 1", Ok("true")),
        ("le", "nan 1", Ok("false")),
        ("ne", "nan nan", Ok("true")),
        ("eq", "1", Err("expected two numbers")),
        ("eq", "1 2 3", Err("expected two numbers")),
        ("eq", "", Err("expected two numbers")),
        ("eq", "inf inf", Ok("true")),
        ("lt", "-inf 0", Ok("true")),
        ("eq", "-0 0", Ok("true")),
        ("eq", "-0.0 0.0", Ok("true")),
        ("not", "true", Ok("false")),
        ("not", "false", Ok("true")),
        ("not", "0", Ok("true")),
        ("not", "yes", Ok("false")),
        ("not", "n", Ok("true")),
        ("not", "TRUE", Err("syntax error")),
        ("not", "", Err("syntax error")),
        ("not", "maybe", Err("syntax error")),
        ("and", "", Ok("true")),
        ("and", "true true", Ok("true")),
        ("and", "true false", Ok("false")),
        ("and", "false garbage", Ok("false")),
        ("and", "true garbage", Err("syntax error")),
        ("and", "\"true\"", Err("syntax error")),
        ("or", "", Ok("false")),
        ("or", "false true", Ok("true")),
        ("or", "true garbage", Ok("true")),
        ("or", "false false", Ok("false")),
        ("nand", "true true", Ok("false")),
        ("nand", "", Ok("false")),
        ("nor", "false false", Ok("true")),
        ("nor", "", Ok("true")),
        ("if", "true a b", Ok("a")),
        ("if", "false a b", Ok("b")),
        ("if", "1 \"a b\" c", Ok("\"a b\"")),
        ("if", "false a", Ok("")),
        ("if", "maybe a b", Err("syntax error")),
        ("if", "", Err("syntax error")),
        ("in", "foo bar foo", Ok("true")),
        ("in", "foo bar baz", Ok("false")),
        ("in", "\"foo\" 'foo'", Ok("true")),
        ("in", "foo", Ok("false")),
        ("in", "", Ok("false")),
        ("in", "\"\" \"\"", Ok("false")),
        ("first", "a b c", Ok("a")),
        ("first", "\"a b\" c", Ok("\"a b\"")),
        ("first", "", Ok("")),
        ("length", "abcdef", Ok("6")),
        ("length", "", Ok("0")),
        ("length", "\"ab\"", Ok("4")),
        ("length", "a  b", Ok("4")),
        ("unquote", "\"a\\nb\"", Ok("a\nb")),
        ("unquote", "'a b' c", Ok("a b c")),
        ("unquote", "\"\\x41\\102\" d", Ok("AB d")),
        ("unquote", "\\<4142>", Ok("AB")),
        ("unquote", "\"a\" /* c */ b", Ok("a b")),
        ("htons", "1", Ok("256")),
        ("htonl", "1", Ok("16777216")),
        ("ntohs", "256", Ok("1")),
        ("ntohl", "16777216", Ok("1")),
        ("htonl", "-1", Ok("4294967295")),
        ("htonl", "4294967295", Ok("4294967167")),
        ("htons", "65537", Ok("256")),
        ("htons", "x", Err("syntax error")),
        ("htons", "", Err("syntax error")),
        ("sprintf", "\"%05x\" 127", Ok("0007f")),
        ("sprintf", "\"%05X\" 127", Ok("0007F")),
        ("sprintf", "%d 42", Ok("42")),
        ("sprintf", "\"%d\" -42", Ok("-42")),
        ("sprintf", "\"%5d|\" 42", Ok("   42|")),
        ("sprintf", "\"%-5d|\" 42", Ok("42   |")),
        ("sprintf", "\"%-05d|\" 42", Ok("00042|")),
        ("sprintf", "\"%05d\" -42", Ok("-0042")),
        ("sprintf", "\"%+d\" 5", Ok("+5")),
        ("sprintf", "\"% d\" 5", Ok(" 5")),
        ("sprintf", "\"%+u\" 5", Ok("+5")),
        ("sprintf", "\"%+x\" 255", Ok("+ff")),
        ("sprintf", "\"%#x\" 255", Ok("0xff")),
        ("sprintf", "\"%#X\" 255", Ok("0XFF")),
        ("sprintf", "\"%#x\" 0", Ok("0")),
        ("sprintf", "\"%#06x\" 255", Ok("0x00ff")),
        ("sprintf", "\"%#o\" 8", Ok("10")),
        ("sprintf", "\"%#o\" 15", Ok("017")),
        ("sprintf", "\"%#o\" 7", Ok("07")),
        ("sprintf", "\"%#o\" 0", Ok("00")),
        ("sprintf", "\"%o\" 8", Ok("10")),
        ("sprintf", "\"%.5d\" 42", Ok("00042")),
        ("sprintf", "\"%.d\" 0", Ok("0")),
        ("sprintf", "\"%.0d\" 0", Ok("0")),
        ("sprintf", "\"%8.3d|\" -5", Ok("    -005|")),
        ("sprintf", "\"%08.3d|\" -5", Ok("0000-005|")),
        ("sprintf", "\"%u\" -1", Err("syntax error")),
        ("sprintf", "\"%x\" -1", Err("syntax error")),
        ("sprintf", "\"%d\" 0x10", Ok("16")),
        ("sprintf", "\"%d\" 1.5", Err("syntax error")),
        ("sprintf", "\"%d\" x", Err("syntax error")),
        ("sprintf", "\"%d\"", Err("syntax error")),
        ("sprintf", "\"%d %d\" 1", Err("syntax error")),
        ("sprintf", "\"%d\" 1 2", Err("syntax error")),
        ("sprintf", "\"%hd\" 65535", Ok("-1")),
        ("sprintf", "\"%hu\" 65537", Ok("1")),
        ("sprintf", "\"%hx\" -1", Err("syntax error")),
        ("sprintf", "\"%ld\" 5", Ok("5")),
        ("sprintf", "\"%lld\" 9223372036854775807", Ok("9223372036854775807")),
        ("sprintf", "\"%qd\" 5", Ok("5")),
        ("sprintf", "\"%hhd\" 300", Ok("300")),
        ("sprintf", "\"%i\" 7", Ok("7")),
        ("sprintf", "\"%x\" 18446744073709551615", Ok("ffffffffffffffff")),
        ("sprintf", "\"%d\" 9223372036854775808", Err("syntax error")),
        ("sprintf", "\"%%\"", Ok("%")),
        ("sprintf", "\"%5%|\"", Ok("    %|")),
        ("sprintf", "\"100%\"", Err("syntax error")),
        ("sprintf", "\"%s\" abc", Ok("abc")),
        ("sprintf", "\"%s-%s\" a \"b c\"", Ok("a-b c")),
        ("sprintf", "\"%5s|\" ab", Ok("   ab|")),
        ("sprintf", "\"%-5s|\" ab", Ok("ab   |")),
        ("sprintf", "\"%05s|\" ab", Ok("000ab|")),
        ("sprintf", "\"%.2s\" abcdef", Ok("ab")),
        ("sprintf", "\"%#s\" \"a\\tb\"", Ok("a^Ib")),
        ("sprintf", "\"%#s\" \"<3>x\"", Ok("{}<3>x")),
        ("sprintf", "\"%#.2s\" \"a\\tb\"", Ok("a^")),
        ("sprintf", "\"%s\"", Err("syntax error")),
        ("sprintf", "\"%s\" \"\"", Ok("")),
        ("sprintf", "\"%c\" 65", Err("syntax error")),
        ("sprintf", "\"%f\" 1.5", Err("syntax error")),
        ("sprintf", "\"%e\" 1.5", Err("syntax error")),
        ("sprintf", "\"%g\" 1.5", Err("syntax error")),
        ("sprintf", "\"%*d\" 5 42", Err("syntax error")),
        ("sprintf", "\"%.*d\" 5 42", Err("syntax error")),
        ("sprintf", "\"%'d\" 5", Err("syntax error")),
        ("sprintf", "", Ok("")),
        ("sprintf", "\"\"", Ok("")),
        ("sprintf", "abc", Ok("abc")),
        ("sprintf", "abc 1", Err("syntax error")),
        ("sprintf", "\"a%sb\" \"\"", Ok("ab")),
        ("sprintf", "\"%200d\" 1", Ok("                                                                                                                               1")),
        ("sprintf", "\"%.200d\" 1", Ok("0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001")),
        ("sprintf", "\"%#.5o\" 8", Ok("00010")),
        ("sprintf", "\"%-+5d|\" 3", Ok("+3   |")),
        ("sprintf", "\"% 05d\" 3", Ok(" 0003")),
        ("sprintf", "\"%+05x\" 255", Ok("+00ff")),
        ("sprintf", "\"%lx\" -5", Err("syntax error")),
        ("sprintf", "\"%#10.4x|\" 255", Ok("    0x00ff|")),
        ("sprintf", "\"%#-8x|\" 255", Ok("0xff    |")),
        ("sprintf", "\"%#08o\" 8", Ok("00000010")),
        ("unquote", "\"a\\tb\\\\c\\\"d\"", Ok("a\tb\\c\"d")),
        ("unquote", "'it''s'", Ok("its")),
        ("unquote", "\"x\" 'y' z", Ok("x y z")),
        ("unquote", "\"\\101\\1012\"", Ok("AA2")),
        ("unquote", "\"\\x4a\\x4B\"", Ok("JK")),
        ("unquote", "\"\\q\\$\\,\"", Ok("q$,")),
        ("unquote", "a\\nb", Ok("a\\nb")),
        ("unquote", "\"a // not comment\"", Ok("a // not comment")),
        ("unquote", "a /* c */   b   c", Ok("a b   c")),
        ("unquote", "  \"  lead\"", Ok("  lead")),
        ("unquote", "\\<41 42 /* c */ 43>", Ok("ABC")),
        ("unquote", "\\<414>", Ok("A")),
        ("unquote", "\"\\<4142>\"", Ok("AB")),
        ("unquote", "'\\<4142>'", Ok("\\<4142>")),
        ("unquote", "\"\"", Ok("")),
        ("unquote", "\"'\"", Ok("'")),
        ("unquote", "'\"'", Ok("\"")),
        ("length", "\"a b\"", Ok("5")),
        ("length", "'x'   ", Ok("6")),
        ("first", "/* c */ a b", Ok("a")),
        ("first", "'a b'c d", Ok("'a b'c")),
        ("first", "\"a\\\"b\" c", Ok("\"a\\\"b\"")),
        ("first", "\\<41 42> c", Ok("\\<41 42>")),
        ("in", "\"a b\" x 'a b'", Ok("true")),
        ("in", "a \"a\"", Ok("true")),
        ("in", "\\<41> A", Ok("true")),
        ("eq", "\"a\\x41\" aA", Ok("true")),
        ("eq", "'x' \"x\"", Ok("true")),
        ("lt", "\"\" a", Ok("true")),
        ("eq", "a/*c*/ a", Ok("true")),
        ("sprintf", "\"%s|%s\" 'a b' \"c\\td\"", Ok("a b|c\td")),
        ("sprintf", "'%d%%' 50", Ok("50%")),
        ("sprintf", "\"%s\" \\<4142>", Ok("AB")),
        ("sprintf", "\"x%sy\" \"a\\000b\"", Ok("xay")),
        ("sprintf", "\"%#s\" \"\\001\\377\"", Ok("^A\\377")),
        ("sprintf", "\"%#s\" \"{}a\"", Ok("{}{}a")),
        ("sprintf", "\"%#s\" \"<1><2>z\"", Ok("{}<1><2>z")),
        ("sprintf", "\"%#s\" \"<x>\"", Ok("<x>")),
        ("sprintf", "\"%#s\" \"<1.5>a\"", Ok("{}<1.5>a")),
        ("sprintf", "\"%#s\" \"<.>a\"", Ok("<.>a")),
        ("sprintf", "\"%#s\" \"a<1>\"", Ok("a<1>")),
        ("sprintf", "\"%.3s|\" \"ab\"", Ok("ab|")),
        ("sprintf", "\"%-#5x|\" 0", Ok("0    |")),
        ("sprintf", "\"%0#5x|\" 0", Ok("00000|")),
        ("sprintf", "\"%#5o|\" 8", Ok("   10|")),
        ("sprintf", "\"%+.3d\" 5", Ok("+005")),
        ("sprintf", "\"% .3d\" -5", Ok("-005")),
        ("sprintf", "\"%hd\" -32769", Ok("32767")),
        ("sprintf", "\"%lhd\" 65535", Ok("-1")),
        ("sprintf", "\"%hld\" 65535", Ok("65535")),
        ("sprintf", "\"%Lu\" 5", Ok("5")),
        ("sprintf", "\"%d\" -9223372036854775808", Ok("-9223372036854775808")),
        ("sprintf", "\"%x\" 0x10", Ok("10")),
        ("sprintf", "\"%o\" 0", Ok("0")),
        ("sprintf", "\"%X\" 0xabc", Ok("ABC")),
        ("sprintf", "\"%05%|\"", Ok("0000%|")),
        ("sprintf", "\"%-5%|\"", Ok("%    |")),
        ("sprintf", "\"%d\" \"5\"", Err("syntax error")),
        ("sprintf", "\"%s\" a/*c*/", Ok("a")),
        ("sprintf", "\"%2$d\" 1", Err("syntax error")),
        ("sprintf", "\"%5.1s|\" abc", Ok("    a|")),
        ("sprintf", "\"%%d\" ", Ok("%d")),
        ("sprintf", "\"%z\" 1", Err("syntax error")),
        ("sprintf", "%s%s a b", Ok("ab")),
        ("sprintf", "\"%s\"   a", Ok("a")),
        ("not", "true ", Err("syntax error")),
        ("and", "true  true", Ok("true")),
        ("or", "/*c*/ true", Ok("true")),
        ("if", "true a/*c*/ b", Ok("a")),
        ("if", "yes \"\" b", Ok("\"\"")),
        ("neg", "0x10", Ok("-16")),
        ("neg", "1e3", Ok("-1000")),
        ("abs", "-0x10", Ok("16")),
        ("abs", "nan", Ok("nan")),
        ("neg", "nan", Ok("-nan")),
        ("neg", "-inf", Ok("inf")),
        ("neg", "+5", Ok("-5")),
        ("mod", "0x10 010", Ok("0")),
        ("rem", "7 -2.5", Ok("2")),
        ("rem", "inf 2", Ok("-nan")),
        ("add", "1 /* c */ 2", Ok("3")),
        ("mul", "1e200 1e200", Ok("inf")),
        ("sub", "0 9223372036854775807 2", Ok("9223372036854775807")),
        ("max", "1 2.5 2", Ok("2.5")),
        ("min", "3 x", Err("expected list of numbers")),
        ("div", "1 3 3", Ok("0.111111111111")),
        ("idiv", "-1e30 1", Ok("-9223372036854775808")),
        ("idiv", "7 2.5", Ok("2")),
        ("add", "1 2   ", Ok("3")),
        ("htonl", "0x7fffffff", Ok("4294967167")),
        ("htons", "-1", Ok("65535")),
        ("ntohl", "-2147483649", Ok("128")),
        ("htonl", "1.5", Err("syntax error")),
        ("htons", "0", Ok("0")),
    ];

    #[test]
    fn matches_click_outputs() {
        let mut wrong = Vec::new();
        for &(name, args, want) in CLICK_ANSWERS {
            let want = want.map(str::to_string).map_err(str::to_string);
            // x86 makes 0/0 a negative NaN; other machines may not
            if !cfg!(target_arch = "x86_64") && want.as_deref() == Ok("-nan") {
                continue;
            }
            let got = run(name, args);
            if got != want {
                wrong.push(format!("{name} {args}: got {got:?}, Click {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{} differences:\n{}", wrong.len(), wrong.join("\n"));
    }

    #[test]
    fn unknown_names_are_left_to_the_caller() {
        for name in [
            "get", "set", "shift", "run", "step", "goto", "readable", "writable", "kill", "Add", "",
        ] {
            assert!(call(name, "1 2", &mut env()).is_none(), "{name}");
        }
        for name in NAMES {
            assert!(call(name, "", &mut env()).is_some(), "{name}");
        }
    }

    #[test]
    fn random_is_repeatable_and_in_range() {
        let draw = |args: &str| {
            let mut e = env();
            (0..200)
                .map(|_| call("random", args, &mut e).unwrap().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(""), draw(""));
        for v in draw("") {
            assert!(v.parse::<u32>().unwrap() <= 0x7fff_ffff);
        }
        let small: Vec<u32> = draw("3 9").iter().map(|v| v.parse().unwrap()).collect();
        assert!(small.iter().all(|v| (3..=9).contains(v)));
        assert!((3..=9).all(|n| small.contains(&n)), "every value turns up in 200 draws");
        let coin: Vec<u32> = draw("0 1").iter().map(|v| v.parse().unwrap()).collect();
        assert!(coin.contains(&0) && coin.contains(&1));
        let wide: Vec<u32> = draw("0 4294967295").iter().map(|v| v.parse().unwrap()).collect();
        assert!(
            wide.iter().any(|&v| v > 0x7fff_ffff),
            "the whole 32-bit range is reached"
        );
        assert!(draw("10").iter().all(|v| v.parse::<u32>().unwrap() < 10));
        assert_eq!(run("random", "5 5"), Ok("5".into()));
        assert_eq!(run("random", "1"), Ok("0".into()));
    }

    #[test]
    fn random_rejects_bad_bounds_with_clicks_words() {
        assert_eq!(run("random", "5 3"), Err("bad N".into()));
        assert_eq!(run("random", "0"), Err("bad N".into()));
        assert_eq!(run("random", "x"), Err("N1: invalid number".into()));
        assert_eq!(run("random", "-1"), Err("N1: invalid number".into()));
        assert_eq!(
            run("random", "4294967296"),
            Err("N1: out of range, bound 4294967295".into())
        );
        assert_eq!(run("random", "1 y"), Err("N2: invalid number".into()));
        assert_eq!(run("random", "1 2 3"), Err("too many arguments".into()));
        assert_eq!(run("random", " "), Err("N1: required argument missing".into()));
    }

    #[test]
    fn now_prints_micro_or_nanoseconds_as_click_does() {
        assert_eq!(run("now", ""), Ok("1700000000.250000".into()));
        let mut e = ExprEnv::with_seed_and_clock(1, || (1_796_021_786, 937_168_600));
        assert_eq!(call("now", "", &mut e), Some(Ok("1796021786.937168600".into())));
        let mut e = ExprEnv::with_seed_and_clock(1, || (-2, 250_000_000));
        assert_eq!(call("now", "", &mut e), Some(Ok("-1.750000".into())));
        let mut e = ExprEnv::with_seed_and_clock(1, || (-2, 0));
        assert_eq!(call("now", "", &mut e), Some(Ok("-2.000000".into())));
        let mut e = ExprEnv::new();
        let now = call("now", "", &mut e).unwrap().unwrap();
        assert!(now
            .split_once('.')
            .is_some_and(|(s, f)| s.parse::<i64>().unwrap() > 1_600_000_000 && f.len() >= 6));
    }

    #[test]
    fn cat_reads_files_and_catq_quotes_them() {
        let dir = std::env::temp_dir().join(format!("script_expr_cat_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.txt");
        std::fs::write(&file, b"a\"b$\\\n\tc\x01").unwrap();
        let name = file.to_str().unwrap();
        assert_eq!(run("cat", name), Ok("a\"b$\\\n\tc\x01".into()));
        // the answer Click's catq gave for the same bytes
        assert_eq!(run("catq", name), Ok(r#""a\"b\$\\\n\tc\001""#.into()));
        assert_eq!(run("cat", &format!("\"{name}\"")), run("cat", name));
        // unquoted, `//` would start a comment
        assert_eq!(
            run("cat", &format!("\"{}\"", name.replace('/', "//"))),
            run("cat", name)
        );
        std::fs::write(&file, b"").unwrap();
        assert_eq!(run("catq", name), Ok("\"\"".into()));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            run("cat", "/nonexistent/script_expr"),
            Err("/nonexistent/script_expr: No such file or directory".into())
        );
        assert_eq!(run("cat", ""), Err("bad FILE".into()));
        assert_eq!(run("cat", "a b"), Err("bad FILE".into()));
        assert_eq!(run("cat", "\"\""), Err("bad FILE".into()));
    }

    #[test]
    fn words_split_at_unquoted_space() {
        assert_eq!(
            words("  a  'b c'd \"e\\\" f\" \\<41 42> g/*x*/h "),
            ["a", "'b c'd", "\"e\\\" f\"", "\\<41 42>", "g", "h"]
        );
        assert!(words("").is_empty());
        assert!(words(" /* only */ ").is_empty());
        assert_eq!(
            words("a\u{b}b"),
            ["a", "b"],
            "vertical tab is space, as C's isspace says"
        );
        assert_eq!(words("x // rest\ny"), ["x", "y"]);
    }

    #[test]
    fn unquote_and_quote_follow_click() {
        assert_eq!(unquote("  \"a\\tb\" 'c\\d' e  "), "a\tb c\\d e");
        assert_eq!(unquote("\"\\x41\\102\\n\""), "AB\n");
        assert_eq!(unquote("\\<4869>"), "Hi");
        assert_eq!(unquote("a /* c */ b"), "a b");
        assert_eq!(unquote("\"\\\nx\""), "x", "an escaped newline disappears");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a\"b$\\\n\t\r\u{1}"), "\"a\\\"b\\$\\\\\\n\\t\\r\\001\"");
        assert_eq!(quote("é"), "\"\\303\\251\"", "bytes above 126 are octal");
        assert_eq!(unquote("\"\\377\""), "\u{fffd}", "a lone high byte is not UTF-8");
    }

    #[test]
    fn truth_is_clicks_boolean() {
        for t in ["true", "yes", "t", "y", "1"] {
            assert_eq!(truth(t), Some(true));
        }
        for f in ["false", "no", "f", "n", "0"] {
            assert_eq!(truth(f), Some(false));
        }
        for bad in ["", "TRUE", "True", " true", "true ", "\"true\"", "2", "on"] {
            assert_eq!(truth(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mod_by_zero_is_an_error_not_a_crash() {
        // Click dies of SIGFPE on these.
        assert_eq!(run("mod", "5 0"), Err("division by zero".into()));
        assert_eq!(run("rem", "5 0"), Err("division by zero".into()));
        assert_eq!(run("mod", "-9223372036854775808 -1"), Ok("0".into()));
    }

    #[test]
    fn huge_widths_stay_bounded() {
        assert_eq!(run("sprintf", "\"%99999999999999999999999d\" 1").unwrap().len(), 128);
        assert_eq!(
            run("sprintf", "\"%99999999999999999999999s\" a").unwrap().len(),
            1 << 20
        );
        assert_eq!(run("sprintf", "\"%.99999999999999999999999d\" 1").unwrap().len(), 124);
    }

    proptest::proptest! {
        #[test]
        fn quote_then_unquote_is_identity(s in "\\PC*|[\\x00-\\x7f]*") {
            proptest::prop_assert_eq!(unquote(&quote(&s)), s);
        }

        #[test]
        fn handlers_never_panic(
            name in proptest::sample::select(NAMES),
            args in "[-+ 0-9a-fA-FxXbeE.%#*hlqLsdiuoc\"'\\\\<>/{}_()\\t\\n]{0,24}|\\PC{0,12}",
        ) {
            let _ = call(name, &args, &mut env());
            let _ = words(&args);
            let _ = unquote(&args);
            let _ = truth(&args);
        }
    }
}
