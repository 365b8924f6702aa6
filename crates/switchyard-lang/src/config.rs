//! Click configuration strings: the text between an element's parentheses.
//!
//! Click splits it at top-level commas (parentheses, brackets, braces and
//! quotes nest), recognises `KEYWORD value` arguments by an all-uppercase
//! first word, and unquotes values with its escapes, including hex data
//! `\<00 11 22>`; before that, `$variables` in it are expanded as Click's
//! lexer expands them. These are pure functions over text; the element
//! layer decides what each argument means.

/// One argument of a configuration string: trimmed text and its byte range
/// relative to the start of the configuration string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawArg<'a> {
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

/// Splits a configuration string at top-level commas. An empty string has
/// no arguments; `a,,b` has an empty middle argument, as in Click.
pub fn split_args(text: &str) -> Vec<RawArg<'_>> {
    let bytes = text.as_bytes();
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => i = skip_double_quoted(bytes, i),
            b'\'' => {
                i = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b'\'')
                    .map_or(bytes.len(), |p| i + 1 + p)
            }
            b'\\' if bytes.get(i + 1) == Some(&b'<') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'>')
                    .map_or(bytes.len(), |p| i + p)
            }
            b'/' => {
                if let Some(end) = comment_end(bytes, i) {
                    i = end - 1;
                }
            }
            b',' if depth == 0 => {
                args.push(trimmed(text, start, i));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    // Click's cp_argvec: an empty last argument is no argument, so
    // `Print(x,)` has one and `()` none.
    let last = trimmed(text, start, bytes.len());
    if !last.text.is_empty() {
        args.push(last);
    }
    args
}

/// If a comment starts at `i` (`// ...` or `/* ... */`), where it ends:
/// at its newline (kept) or just after its `*/`; the end of `bytes` for
/// an unterminated one.
fn comment_end(bytes: &[u8], i: usize) -> Option<usize> {
    let rest = &bytes[i..];
    match rest {
        [b'/', b'/', ..] => Some(rest.iter().position(|&x| x == b'\n').map_or(bytes.len(), |p| i + p)),
        [b'/', b'*', body @ ..] => Some(
            body.windows(2)
                .position(|w| w == b"*/")
                .map_or(bytes.len(), |p| i + 2 + p + 2),
        ),
        _ => None,
    }
}

/// `bytes` without their comments.
fn without_comments(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match comment_end(bytes, i) {
            Some(end) => i = end,
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn skip_double_quoted(bytes: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'"' => return i,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

fn trimmed(text: &str, start: usize, end: usize) -> RawArg<'_> {
    let end = end.min(text.len());
    let t = strip_comments_edges(&text[start..end]).trim();
    // `t` is a piece of `text`: its own offset, after any leading comment
    // (the span points at the argument, not at the comment before it).
    let s = if t.is_empty() {
        start + (text[start..end].len() - text[start..end].trim_start().len())
    } else {
        t.as_ptr() as usize - text.as_ptr() as usize
    };
    RawArg {
        text: t,
        start: s,
        end: s + t.len(),
    }
}

/// Comments at the edges of an argument are not part of it.
fn strip_comments_edges(s: &str) -> &str {
    let mut s = s.trim();
    loop {
        if let Some(rest) = s.strip_prefix("//") {
            s = rest.find('\n').map_or("", |p| &rest[p + 1..]).trim();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |p| &rest[p + 2..]).trim();
        } else if let Some(p) = s.strip_suffix("*/").and_then(|t| t.rfind("/*")) {
            s = s[..p].trim();
        } else if let Some(p) = s
            .rfind("//")
            .filter(|&p| !s[p..].contains('\n') && !s[..p].contains('"'))
        {
            s = s[..p].trim();
        } else {
            return s;
        }
    }
}

/// If `arg` starts with an all-uppercase word (`LIMIT 1000`), that keyword
/// and the rest of the argument, trimmed, with the rest's offset in `arg`.
pub fn split_keyword(arg: &str) -> Option<(&str, &str, usize)> {
    let end = arg.find(|c: char| c.is_whitespace()).unwrap_or(arg.len());
    let word = &arg[..end];
    let is_keyword = word.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !is_keyword {
        return None;
    }
    let rest = arg[end..].trim_start();
    Some((word, rest, arg.len() - rest.len()))
}

/// One backslash escape at `s[i]`, Click's lenient way
/// (`cp_process_backslash`): C escapes, up to three octal digits, `\x`
/// and its hex digits, `\<hex pairs>` (spaces and comments between
/// digits), a backslash-newline that vanishes, any other character
/// standing for itself, and a lone final backslash kept. Appends to `out`;
/// returns the index after the escape. Script's and the trace format's
/// unquoting share it; [`unquote`] is the strict form for arguments.
pub fn process_backslash(s: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    let end = s.len();
    if i + 1 >= end {
        out.push(b'\\');
        return end;
    }
    let hex = |c: u8| (c as char).to_digit(16);
    match s[i + 1] {
        b'\r' => {
            if i + 2 < end && s[i + 2] == b'\n' {
                i + 3
            } else {
                i + 2
            }
        }
        b'\n' => i + 2,
        b'0'..=b'7' => {
            let (mut c, mut j) = (0u32, i + 1);
            while j < end && j < i + 4 && (b'0'..=b'7').contains(&s[j]) {
                c = c * 8 + u32::from(s[j] - b'0');
                j += 1;
            }
            out.push(c as u8);
            j
        }
        b'x' => {
            let (mut c, mut j) = (0u32, i + 2);
            while let Some(d) = s.get(j).and_then(|&b| hex(b)) {
                c = c.wrapping_mul(16).wrapping_add(d);
                j += 1;
            }
            out.push(c as u8);
            j
        }
        b'<' => {
            let (mut c, mut digits, mut j) = (0u32, 0, i + 2);
            while j < end {
                if s[j] == b'>' {
                    return j + 1;
                } else if let Some(d) = hex(s[j]) {
                    c = c * 16 + d;
                    digits += 1;
                    if digits == 2 {
                        out.push(c as u8);
                        c = 0;
                        digits = 0;
                    }
                    j += 1;
                } else if let Some(after) = comment_end(s, j) {
                    j = after;
                } else {
                    j += 1;
                }
            }
            end
        }
        c => {
            out.push(match c {
                b'a' => 7,
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 11,
                c => c,
            });
            i + 2
        }
    }
}

/// Click's unquoting: `"..."` with C escapes and `\<hex>`, `'...'` literal,
/// `\<hex>` outside quotes, anything else kept as is.
pub fn unquote(arg: &str) -> Result<Vec<u8>, String> {
    let b = arg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated string: missing '\"'".into()),
                        Some(b'"') => break,
                        Some(b'\\') => i = escape(b, i, &mut out)?,
                        Some(&c) => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            b'\'' => {
                let close = b[i + 1..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .ok_or("unterminated string: missing \"'\"")?;
                out.extend_from_slice(&b[i + 1..i + 1 + close]);
                i += close + 2;
            }
            b'\\' if b.get(i + 1) == Some(&b'<') => i = escape(b, i, &mut out)?,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// One backslash escape at `b[i]`; returns the index after it.
fn escape(b: &[u8], i: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    let Some(&c) = b.get(i + 1) else {
        return Err("backslash at end of string".into());
    };
    let simple = match c {
        b'n' => Some(b'\n'),
        b't' => Some(b'\t'),
        b'r' => Some(b'\r'),
        b'a' => Some(7),
        b'b' => Some(8),
        b'f' => Some(12),
        b'v' => Some(11),
        b'\\' | b'"' | b'\'' | b'$' => Some(c),
        _ => None,
    };
    if let Some(v) = simple {
        out.push(v);
        return Ok(i + 2);
    }
    match c {
        b'<' => {
            let close = b[i..]
                .iter()
                .position(|&x| x == b'>')
                .ok_or("hex data '\\<' without closing '>'")?;
            // Spaces and comments (Click's `//` and `/* */`) separate digits.
            let digits: Vec<u8> = without_comments(&b[i + 2..i + close])
                .into_iter()
                .filter(|x| !x.is_ascii_whitespace())
                .collect();
            if !digits.len().is_multiple_of(2) {
                return Err("hex data '\\<...>' has an odd number of digits".into());
            }
            for pair in digits.chunks(2) {
                let s = std::str::from_utf8(pair).map_err(|_| "bad hex data")?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| format!("bad hex digit in '\\<...>': '{s}'"))?);
            }
            Ok(i + close + 1)
        }
        b'x' => {
            let digits: String = b[i + 2..]
                .iter()
                .take(2)
                .take_while(|x| x.is_ascii_hexdigit())
                .map(|&x| x as char)
                .collect();
            if digits.is_empty() {
                return Err("'\\x' without hex digits".into());
            }
            out.push(u8::from_str_radix(&digits, 16).expect("checked hex digits"));
            Ok(i + 2 + digits.len())
        }
        b'0'..=b'7' => {
            let digits: String = b[i + 1..]
                .iter()
                .take(3)
                .take_while(|x| (b'0'..=b'7').contains(x))
                .map(|&x| x as char)
                .collect();
            let v = u16::from_str_radix(&digits, 8).expect("checked octal digits");
            out.push(v as u8);
            Ok(i + 1 + digits.len())
        }
        b'\n' => Ok(i + 2),
        other => {
            out.push(b'\\');
            out.push(other);
            Ok(i + 2)
        }
    }
}

/// A variable reference that nothing expanded: no definition and no
/// default. It stays in the text as written (Click keeps it); the caller
/// decides whether that is an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undefined {
    /// The variable's bare name: `N` for `$N`, `${N[1]}` and `$(N)`.
    pub name: String,
    /// Byte range of the whole reference in the text.
    pub start: usize,
    pub end: usize,
    /// Written with braces, where a default would go (`${N-VALUE}`).
    pub braced: bool,
}

/// Expands variables as Click's lexer does (`cp_expand` with its
/// `VariableEnvironment`), from `lookup`:
/// - `$N`, `${N}` and `$(N)`: the value of N;
/// - `${N[i]}`: word i (from 0) of the value split at unquoted spaces, a
///   quoted string being one word; past the last word, nothing; a negative
///   or malformed index means the whole value;
/// - `${N-default}`, `${N[i]-default}`: the default when N is undefined;
/// - inside `"..."` the value is escaped so that it reads back as itself;
///   inside `'...'` and inside comments nothing is expanded;
/// - a value is itself expanded, a few levels deep, so that a definition
///   may name another one, in any order.
///
/// Anything else (`$(add 1 2)`, a Script's own variables) stays as written;
/// references to undefined variables come back as [`Undefined`].
pub fn substitute<'a>(text: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> (String, Vec<Undefined>) {
    substitute_within(text, lookup, usize::MAX).expect("no bound")
}

/// [`substitute`], giving up (`None`) as soon as the result would pass
/// `max` bytes: `$a$a$a...` with a large `$a` is refused before it is
/// built, not after.
pub fn substitute_within<'a>(
    text: &str,
    lookup: impl Fn(&str) -> Option<&'a str>,
    max: usize,
) -> Option<(String, Vec<Undefined>)> {
    let mut x = Expander {
        lookup: &lookup,
        max,
        work: 0,
        undefined: Vec::new(),
    };
    let mut out = String::with_capacity(text.len().min(max));
    x.expand(text, 0, Some(0), &mut out)?;
    Some((out, x.undefined))
}

/// Click expands a value found inside a value at most this deep, so a
/// definition that names itself ends instead of looping.
const MAX_DEPTH: usize = 10;

struct Expander<'l, F> {
    lookup: &'l F,
    max: usize,
    /// Bytes read so far, values included: values that name other values
    /// many times over grow exponentially with the depth even when they
    /// end up empty, so reading is bounded by `max` as writing is.
    work: usize,
    undefined: Vec<Undefined>,
}

/// A `$` reference, as written: its kind, the text naming the variable
/// (between the braces or parentheses) with its offset, and its end.
struct Reference<'t> {
    kind: RefKind,
    vname: &'t str,
    vname_at: usize,
    end: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RefKind {
    /// `$N`, and Click's one-character `$$`, `$?`, `$#`.
    Plain,
    /// `${...}`: name, optional `[index]`, optional `-default`.
    Brace,
    /// `$(...)`: a variable only if the whole text names one.
    Paren,
}

impl<'a, F: Fn(&str) -> Option<&'a str>> Expander<'_, F> {
    /// Appends `text` expanded to `out`. `report`: where `text` starts in
    /// the caller's text, when its undefined references are the caller's
    /// to report (they are not inside a variable's value).
    fn expand(&mut self, text: &str, depth: usize, report: Option<usize>, out: &mut String) -> Option<()> {
        self.work = self.work.saturating_add(text.len() + 1);
        if self.work > self.max {
            return None;
        }
        let b = text.as_bytes();
        let mut quote = 0u8;
        let mut copied = 0;
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'\\' if quote == b'"' => i += 1,
                q @ (b'\'' | b'"') => {
                    if quote == 0 {
                        quote = q;
                    } else if quote == q {
                        quote = 0;
                    }
                }
                b'/' if quote == 0 => {
                    if let Some(end) = comment_end(b, i) {
                        i = end;
                        continue;
                    }
                }
                b'$' if quote != b'\'' && depth <= MAX_DEPTH => match reference(text, i) {
                    Some(Ok(r)) => {
                        out.push_str(&text[copied..i]);
                        self.reference(text, i, &r, depth, report, quote == b'"', out)?;
                        if out.len() > self.max {
                            return None;
                        }
                        copied = r.end;
                        i = r.end;
                        continue;
                    }
                    // An unclosed `${` or `$(`: Click expands nothing after it.
                    Some(Err(())) => break,
                    None => {}
                },
                _ => {}
            }
            i += 1;
        }
        out.push_str(&text[copied..]);
        (out.len() <= self.max).then_some(())
    }

    /// Appends the expansion of reference `r` (at `at` in `text`), or the
    /// reference as written when it expands to nothing.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        &mut self,
        text: &str,
        at: usize,
        r: &Reference<'_>,
        depth: usize,
        report: Option<usize>,
        in_double: bool,
        out: &mut String,
    ) -> Option<()> {
        // A name built from variables (`$(add $x 1)`, `${$v}`) is expanded
        // first, as Click does.
        let expanded_name;
        let vname = if r.vname.contains('$') {
            let mut s = String::new();
            self.expand(r.vname, depth + 1, report.map(|base| base + r.vname_at), &mut s)?;
            expanded_name = s;
            expanded_name.as_str()
        } else {
            r.vname
        };
        let (name, index, default) = match r.kind {
            RefKind::Brace => braced(vname),
            _ => (vname, None, None),
        };
        let value = match (self.lookup)(name) {
            Some(v) => {
                let mut full = String::new();
                self.expand(v, depth + 1, None, &mut full)?;
                Some(match index {
                    Some(k) => word(&full, k).to_string(),
                    None => full,
                })
            }
            None => match default {
                Some((d, d_at)) => {
                    let mut s = String::new();
                    // The default is the caller's text only when the name
                    // was not itself built from variables.
                    let base = report
                        .filter(|_| vname.len() == r.vname.len())
                        .map(|b| b + r.vname_at + d_at);
                    self.expand(d, depth + 1, base, &mut s)?;
                    Some(s)
                }
                None => None,
            },
        };
        match value {
            Some(v) if in_double => quote_inside(&v, out),
            Some(v) => out.push_str(&v),
            None => {
                let reportable = match r.kind {
                    RefKind::Brace => !name.is_empty(),
                    _ => is_identifier(name),
                };
                if let (Some(base), true) = (report, reportable) {
                    self.undefined.push(Undefined {
                        name: name.to_string(),
                        start: base + at,
                        end: base + r.end,
                        braced: r.kind == RefKind::Brace,
                    });
                }
                if vname.len() == r.vname.len() {
                    out.push_str(&text[at..r.end]);
                } else {
                    let (open, close) = match r.kind {
                        RefKind::Brace => ("${", "}"),
                        _ => ("$(", ")"),
                    };
                    out.push_str(open);
                    out.push_str(vname);
                    out.push_str(close);
                }
            }
        }
        Some(())
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// The reference starting with the `$` at `at`: `None` if it starts none
/// (a lone `$`), `Err` if a `${` or `$(` is never closed.
fn reference(text: &str, at: usize) -> Option<Result<Reference<'_>, ()>> {
    let b = text.as_bytes();
    let next = *b.get(at + 1)?;
    let r = match next {
        b'{' => {
            let Some(close) = b[at + 2..].iter().position(|&c| c == b'}') else {
                return Some(Err(()));
            };
            Reference {
                kind: RefKind::Brace,
                vname: &text[at + 2..at + 2 + close],
                vname_at: at + 2,
                end: at + 3 + close,
            }
        }
        b'(' => {
            // Parentheses nest; quotes hold them; a backslash escapes
            // outside single quotes.
            let (mut level, mut quote, mut i) = (1, 0u8, at + 2);
            while i < b.len() && level > 0 {
                match b[i] {
                    b'(' if quote == 0 => level += 1,
                    b')' if quote == 0 => level -= 1,
                    q @ (b'"' | b'\'') => {
                        if quote == 0 {
                            quote = q;
                        } else if quote == q {
                            quote = 0;
                        }
                    }
                    b'\\' if quote != b'\'' && i + 1 < b.len() => i += 1,
                    _ => {}
                }
                i += 1;
            }
            if level > 0 {
                return Some(Err(()));
            }
            Reference {
                kind: RefKind::Paren,
                vname: &text[at + 2..i - 1],
                vname_at: at + 2,
                end: i,
            }
        }
        c if c.is_ascii_alphanumeric() || c == b'_' => {
            let n = b[at + 1..]
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                .unwrap_or(b.len() - at - 1);
            Reference {
                kind: RefKind::Plain,
                vname: &text[at + 1..at + 1 + n],
                vname_at: at + 1,
                end: at + 1 + n,
            }
        }
        b'?' | b'#' | b'$' => Reference {
            kind: RefKind::Plain,
            vname: &text[at + 1..at + 2],
            vname_at: at + 1,
            end: at + 2,
        },
        _ => return None,
    };
    Some(Ok(r))
}

/// The parts of the text between `${` and `}`: the name, the word index
/// (`None` for the whole value: no index, a negative or malformed one),
/// and the default with its offset. What follows them is ignored, as in
/// Click (`${N[1]x}` is `${N[1]}`).
fn braced(v: &str) -> (&str, Option<usize>, Option<(&str, usize)>) {
    let b = v.as_bytes();
    let skip = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let begin = skip(0);
    let mut s = begin;
    while s < b.len() && (b[s].is_ascii_alphanumeric() || b[s] == b'_') {
        s += 1;
    }
    let name = &v[begin..s];
    s = skip(s);
    let mut index = None;
    if b.get(s) == Some(&b'[') {
        let start = skip(s + 1);
        let (len, n) = click_integer(&b[start..]);
        s = start + len;
        if len > 0 && b.get(s) == Some(&b']') {
            index = usize::try_from(n).ok();
            s = skip(s + 1);
        }
    }
    let default = (b.get(s) == Some(&b'-')).then(|| (&v[s + 1..], s + 1));
    (name, index, default)
}

/// Click's integer syntax (base 0): a sign, then `0x` hex, `0b` binary,
/// `0` octal or decimal, `_` between digits. Returns how many bytes it
/// took (0: no integer) and the value, saturated to Click's `int`.
fn click_integer(b: &[u8]) -> (usize, i64) {
    let mut s = 0;
    let negative = b.first() == Some(&b'-');
    if matches!(b.first(), Some(b'-' | b'+')) {
        s = 1;
    }
    let lower = |i: usize| b.get(i).map(u8::to_ascii_lowercase);
    let base = if b.len() > s + 2 && b[s] == b'0' && lower(s + 1) == Some(b'x') {
        s += 2;
        16
    } else if b.len() > s + 2 && b[s] == b'0' && lower(s + 1) == Some(b'b') {
        s += 2;
        2
    } else if b.get(s) == Some(&b'0') {
        8
    } else {
        10
    };
    let first = s;
    let mut last = None;
    let mut value: i64 = 0;
    while s < b.len() {
        let c = b[s];
        if c == b'_' && last == Some(s) {
            s += 1;
            continue;
        }
        match (c as char).to_digit(base) {
            Some(d) => {
                value = (value * i64::from(base) + i64::from(d)).min(1 << 40);
                last = Some(s + 1);
            }
            None => break,
        }
        s += 1;
    }
    let value = if negative { -value } else { value };
    let value = value.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    match last {
        Some(end) => (end, value),
        // `0x]` or `+0x]`: Click reads the `0`.
        None if first >= 2 => (first - 1, 0),
        None => (0, 0),
    }
}

/// Word `k` (from 0) of `value`, split as Click's `cp_shift_spacevec`
/// does: at unquoted spaces, comments separating too; a quoted string or
/// `\<...>` is part of its word. Past the last word, nothing.
fn word(value: &str, k: usize) -> &str {
    let b = value.as_bytes();
    let mut i = 0;
    let mut n = 0;
    loop {
        // Spaces and comments before the word.
        loop {
            if i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            } else if let Some(end) = comment_end(b, i) {
                i = end;
            } else {
                break;
            }
        }
        if i >= b.len() {
            return "";
        }
        let start = i;
        while i < b.len() {
            match b[i] {
                b' ' | b'\x0c' | b'\n' | b'\r' | b'\t' | b'\x0b' => break,
                b'/' if comment_end(b, i).is_some() => break,
                b'"' => i = skip_double_quoted(b, i) + 1,
                b'\'' => {
                    i = b[i + 1..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map_or(b.len(), |p| i + p + 2)
                }
                b'\\' if b.get(i + 1) == Some(&b'<') => {
                    i = b[i..].iter().position(|&c| c == b'>').map_or(b.len(), |p| i + p + 1)
                }
                _ => i += 1,
            }
        }
        let i_end = i.min(b.len());
        if n == k {
            return &value[start..i_end];
        }
        n += 1;
        i = i_end;
    }
}

/// Appends `v` escaped for the inside of a double-quoted string (Click's
/// `cp_quote` without its quotes): it reads back as `v`.
fn quote_inside(v: &str, out: &mut String) {
    let mut b = Vec::with_capacity(v.len());
    quote_into(v.as_bytes(), &mut b);
    out.push_str(std::str::from_utf8(&b).expect("quoting writes ASCII"));
}

/// Click's `cp_quote` without the surrounding quotes: backslash, double
/// quote and dollar escaped with a backslash, tab, CR and LF as `\t`,
/// `\r`, `\n`, other bytes outside 32..126 as three octal digits. The
/// result is ASCII and unquotes back to `data`. Shared by expansion,
/// Script's `quote` and the trace format's `payload`.
pub fn quote_into(data: &[u8], out: &mut Vec<u8>) {
    for &c in data {
        match c {
            b'\\' | b'"' | b'$' => out.extend_from_slice(&[b'\\', c]),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            32..=126 => out.push(c),
            _ => out.extend_from_slice(&[b'\\', b'0' + (c >> 6), b'0' + ((c >> 3) & 7), b'0' + (c & 7)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<&str> {
        split_args(s).into_iter().map(|a| a.text).collect()
    }

    #[test]
    fn splits_at_top_level_commas_only() {
        assert_eq!(
            texts("a, b(1, 2), [c, d], {e, f}, \"g, h\", 'i, j'"),
            vec!["a", "b(1, 2)", "[c, d]", "{e, f}", "\"g, h\"", "'i, j'"]
        );
        assert_eq!(texts(""), Vec::<&str>::new());
        assert_eq!(texts("a,,b"), vec!["a", "", "b"]);
        // Click's cp_argvec drops an empty last argument only.
        assert_eq!(texts("LIMIT 10, STOP true,"), vec!["LIMIT 10", "STOP true"]);
        assert_eq!(texts(","), vec![""]);
        assert_eq!(texts("a, // nothing after\n"), vec!["a"]);
        assert_eq!(texts(" LIMIT 5 , STOP true "), vec!["LIMIT 5", "STOP true"]);
    }

    #[test]
    fn keeps_offsets() {
        let args = split_args("1,  LIMIT 5");
        assert_eq!((args[1].start, args[1].end), (4, 11));
    }

    #[test]
    fn comments_are_not_arguments() {
        assert_eq!(texts("a, // first\n b /* second */"), vec!["a", "b"]);
    }

    #[test]
    fn keywords_are_uppercase_first_words() {
        assert_eq!(split_keyword("LIMIT 1000"), Some(("LIMIT", "1000", 6)));
        assert_eq!(split_keyword("STOP"), Some(("STOP", "", 4)));
        assert_eq!(split_keyword("12/0800"), None);
        assert_eq!(split_keyword("foo bar"), None);
    }

    #[test]
    fn unquotes_click_escapes_and_hex_data() {
        assert_eq!(unquote(r"\<00 11 22 08 00>").unwrap(), vec![0, 0x11, 0x22, 8, 0]);
        assert_eq!(unquote(r#""a\tb\x41\101\<ff>""#).unwrap(), b"a\tbAA\xff".to_vec());
        assert_eq!(unquote("'a\\n'").unwrap(), b"a\\n".to_vec());
        assert!(unquote(r"\<0>").is_err());
        // Comments inside hex data, as Click allows.
        assert_eq!(
            unquote("\\<00 11 /* ip */ 22 // end\n 33>").unwrap(),
            vec![0, 0x11, 0x22, 0x33]
        );
        assert!(unquote("\"open").is_err());
    }

    #[test]
    fn substitutes_variables_outside_single_quotes() {
        let look = |n: &str| (n == "N").then_some("7");
        let (text, undefined) = substitute("$N, ${N}x, '$N', $M", look);
        assert_eq!(text, "7, 7x, '$N', $M");
        assert_eq!(
            undefined,
            [Undefined {
                name: "M".into(),
                start: 17,
                end: 19,
                braced: false
            }]
        );
    }

    /// `${A...}` forms against `A = a "b c" d`, each checked against
    /// Click 2.1 (`click -q -o -` on `Script(TYPE PASSIVE, print FORM)`).
    #[test]
    fn indexed_and_defaulted_variables_expand_as_in_click() {
        let look = |n: &str| (n == "A").then_some("a \"b c\" d");
        let x = |t: &str| substitute(t, look).0;
        let whole = "a \"b c\" d";
        for (form, want) in [
            ("${A[0]}", "a"),
            ("${A[1]}", "\"b c\""),
            ("${A[2]}", "d"),
            ("x${A[3]}y", "xy"),
            ("${A[99999999999999999999]}", ""),
            ("${A[+1]}", "\"b c\""),
            ("${A[01]}", "\"b c\""),
            ("${A[0x1]}", "\"b c\""),
            ("${A[0b1]}", "\"b c\""),
            ("-${A[-0]}-", "-a-"),
            ("${A[1]junk}", "\"b c\""),
            ("${A[1][2]}", "\"b c\""),
            ("${A[-1]}", whole),
            ("${A[x]}", whole),
            ("${A[1}", whole),
            ("${A[]}", whole),
            ("${A[1 2]}", whole),
            ("${A[ 1 ]}", whole),
            ("${A[08]}", whole),
            ("${A junk}", whole),
            ("${B-dflt}", "dflt"),
            ("${B[0]-dflt}", "dflt"),
            ("${A[1]-q}", "\"b c\""),
            ("${A[1] -q}", "\"b c\""),
            ("${A-q}", whole),
            ("${B -q}", "q"),
            ("${-q}", "q"),
            ("x${B-}y", "xy"),
            ("${B-$A}", whole),
            ("${B[x]-q}", "${B[x]-q}"),
            ("${B[0]}", "${B[0]}"),
            ("${}", "${}"),
            ("${A$B}", whole),
            ("${$A}", "${a \"b c\" d}"),
        ] {
            assert_eq!(x(form), want, "{form}");
        }
    }

    #[test]
    fn parenthesised_variables_and_script_expressions() {
        let look = |n: &str| match n {
            "N" => Some("3"),
            "A" => Some("a \"b c\" d"),
            _ => None,
        };
        let (text, undefined) = substitute("$(N) $( N) $(A B) $(add $A) $(add $x 1) $(Z)", look);
        assert_eq!(text, "3 $( N) $(A B) $(add a \"b c\" d) $(add $x 1) $(Z)");
        // `$(add $x 1)` is an expression for a Script, not a variable; the
        // `$x` inside it is, and `$(Z)` names one.
        let names: Vec<&str> = undefined.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["x", "Z"]);
        assert_eq!(
            &"$(N) $( N) $(A B) $(add $A) $(add $x 1) $(Z)"[undefined[1].start..undefined[1].end],
            "$(Z)"
        );
        // Click's one-character names and a lone `$` stay as written.
        assert_eq!(substitute("$$N $? $# $ $. $", look).0, "$$N $? $# $ $. $");
        // An unclosed `${` or `$(` ends the expansion: the rest is kept.
        assert_eq!(substitute("$N ${N $N", look).0, "3 ${N $N");
        assert_eq!(substitute("$N $(N $N", look).0, "3 $(N $N");
    }

    #[test]
    fn quotes_and_comments_decide_what_expands() {
        let look = |n: &str| match n {
            "A" => Some("a \"b c\" d"),
            "N" => Some("\"a b\""),
            "D" => Some("x$y\\z\t\u{e9}"),
            _ => None,
        };
        let x = |t: &str| substitute(t, look).0;
        // Inside double quotes the value is escaped to read back as itself.
        assert_eq!(x("\"$N\""), "\"\\\"a b\\\"\"");
        assert_eq!(x("\"$A\""), "\"a \\\"b c\\\" d\"");
        assert_eq!(x("\"${A[1]}\""), "\"\\\"b c\\\"\"");
        assert_eq!(x("\"$D\""), "\"x\\$y\\\\z\\t\\303\\251\"");
        assert_eq!(unquote(&x("\"$D\"")).unwrap(), "x$y\\z\t\u{e9}".as_bytes());
        assert_eq!(x("\"it's $N\""), "\"it's \\\"a b\\\"\"");
        // A backslash in double quotes protects the next character.
        assert_eq!(x("\"\\$N\""), "\"\\$N\"");
        assert_eq!(x("\\$N"), "\\\"a b\"");
        // Single quotes and comments: nothing expands, all is kept.
        assert_eq!(x("'$N' $N"), "'$N' \"a b\"");
        assert_eq!(x("/* $N */ $N // $N\n$N"), "/* $N */ \"a b\" // $N\n\"a b\"");
        assert_eq!(x("\"a // $N\""), "\"a // \\\"a b\\\"\"");
        let (_, undefined) = substitute("'$X' /* $Y */ // $Z", look);
        assert!(undefined.is_empty(), "{undefined:?}");
    }

    #[test]
    fn values_expand_in_turn_and_undefined_ones_are_reported_only_where_written() {
        let look = |n: &str| match n {
            "A" => Some("$B"),
            "B" => Some("1"),
            "S" => Some("x$S"),
            "U" => Some("$nothing"),
            _ => None,
        };
        assert_eq!(substitute("$A", look).0, "1");
        // A value that names itself stops after Click's ten levels.
        assert_eq!(substitute("$S", look).0, format!("{}$S", "x".repeat(11)));
        let (text, undefined) = substitute("$U ${W[1]} ${V[0]-d}", look);
        assert_eq!(text, "$nothing ${W[1]} d");
        assert_eq!(
            undefined,
            [Undefined {
                name: "W".into(),
                start: 3,
                end: 10,
                braced: true
            }]
        );
    }

    #[test]
    fn values_that_fan_out_are_bounded_even_when_they_end_up_empty() {
        let values: Vec<String> = (0..10)
            .map(|k| {
                if k == 0 {
                    String::new()
                } else {
                    format!("$V{}", k - 1).repeat(50)
                }
            })
            .collect();
        let look = |n: &str| {
            n.strip_prefix('V')
                .and_then(|k| k.parse::<usize>().ok())
                .and_then(|k| values.get(k))
                .map(String::as_str)
        };
        assert!(substitute_within("$V9", look, 1 << 20).is_none());
        assert_eq!(substitute_within("$V1", look, 1 << 20).unwrap().0, "");
    }
}
