//! Click configuration strings: the text between an element's parentheses.
//!
//! Click splits it at top-level commas (parentheses, brackets, braces and
//! quotes nest), recognises `KEYWORD value` arguments by an all-uppercase
//! first word, and unquotes values with its escapes, including hex data
//! `\<00 11 22>`. These are pure functions over text; the element layer
//! decides what each argument means.

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

/// Expands `$NAME` and `${NAME}` from `lookup`, except inside single
/// quotes. Unknown variables stay as written, as Click leaves them; the
/// caller reports them.
pub fn substitute<'a>(text: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> (String, Vec<String>) {
    substitute_within(text, lookup, usize::MAX).expect("no bound")
}

/// [`substitute`], giving up (`None`) as soon as the result would pass
/// `max` bytes: `$a$a$a...` with a large `$a` is refused before it is
/// built, not after.
pub fn substitute_within<'a>(
    text: &str,
    lookup: impl Fn(&str) -> Option<&'a str>,
    max: usize,
) -> Option<(String, Vec<String>)> {
    let mut out = String::with_capacity(text.len().min(max));
    let mut unknown = Vec::new();
    let mut rest = text;
    let mut in_single = false;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            in_single = !in_single;
        }
        if c == '$' && !in_single {
            let (name, len) = if rest[1..].starts_with('{') {
                match rest.find('}') {
                    Some(close) => (&rest[2..close], close + 1),
                    None => ("", 0),
                }
            } else {
                let n = rest[1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len() - 1);
                (&rest[1..1 + n], 1 + n)
            };
            if !name.is_empty() {
                match lookup(name) {
                    Some(v) if out.len().saturating_add(v.len()) > max => return None,
                    Some(v) => out.push_str(v),
                    None => {
                        out.push_str(&rest[..len]);
                        unknown.push(name.to_string());
                    }
                }
                rest = &rest[len..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        if out.len() > max {
            return None;
        }
    }
    Some((out, unknown))
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
        assert_eq!(
            substitute("$N, ${N}x, '$N', $M", look),
            ("7, 7x, '$N', $M".to_string(), vec!["M".to_string()])
        );
    }
}
