//! Parser for Click's configuration language.
//!
//! nom reads tokens on demand (as Click's own lexer does: the text inside
//! an element's parentheses is not tokenised but taken raw, nesting kept);
//! a recursive-descent parser over those tokens builds the AST. A syntax
//! error is recorded and the parser skips to the next `;` so that one run
//! reports every error of the file.

use crate::ast::*;
use crate::config::split_args;
use crate::diag::Diagnostic;
use crate::limits::{Exceeded, Limits};
use crate::span::{FileId, SourceMap, Span};
use nom::branch::alt;
use nom::bytes::complete::{tag, take_until, take_while, take_while1};
use nom::character::complete::{anychar, multispace1, not_line_ending};
use nom::combinator::{map, recognize, value};
use nom::multi::many0_count;
use nom::sequence::{pair, preceded};
use nom::{IResult, Parser as _};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Ident,
    Var,
    Arrow,
    DoubleArrow,
    DoubleColon,
    /// `||` between the versions of an overloaded compound.
    DoubleBar,
    /// `...`: the version a compound extends.
    Ellipsis,
    Char(char),
    Eof,
}

/// Whitespace, `//` and `/* */` comments, and `#` preprocessor lines.
fn trivia(i: &str) -> IResult<&str, usize> {
    many0_count(alt((
        multispace1,
        recognize(pair(tag("//"), not_line_ending)),
        recognize((tag("/*"), take_until("*/"), tag("*/"))),
        recognize(pair(tag("#"), not_line_ending)),
    )))
    .parse(i)
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '/'
}

/// An identifier; a `/` that starts a comment ends it.
fn ident(i: &str) -> IResult<&str, &str> {
    let (_, word) = take_while1(ident_char).parse(i)?;
    let cut = word
        .find("//")
        .into_iter()
        .chain(word.find("/*"))
        .min()
        .unwrap_or(word.len());
    let word = word[..cut].trim_end_matches('/');
    if word.is_empty() {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::TakeWhile1,
        )));
    }
    Ok((&i[word.len()..], word))
}

fn token(i: &str) -> IResult<&str, Tok> {
    if i.is_empty() {
        return Ok((i, Tok::Eof));
    }
    alt((
        value(Tok::Arrow, tag("->")),
        value(Tok::DoubleArrow, tag("=>")),
        value(Tok::DoubleColon, tag("::")),
        value(Tok::DoubleBar, tag("||")),
        value(Tok::Ellipsis, tag("...")),
        value(
            Tok::Var,
            recognize(preceded(
                tag("$"),
                take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_'),
            )),
        ),
        value(Tok::Ident, ident),
        map(anychar, Tok::Char),
    ))
    .parse(i)
}

/// The raw configuration text after an opening parenthesis, up to (not
/// including) the matching `)`. Quotes and comments may hold parentheses.
fn config_body(i: &str) -> Option<usize> {
    let b = i.as_bytes();
    let mut depth = 1;
    let mut k = 0;
    while k < b.len() {
        match b[k] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            b'"' => {
                k += 1;
                while k < b.len() && b[k] != b'"' {
                    k += if b[k] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if b.get(k + 1) == Some(&b'/') => {
                let (rest, _) = take_while::<_, _, nom::error::Error<&str>>(|c| c != '\n')
                    .parse(&i[k..])
                    .ok()?;
                k = i.len() - rest.len();
            }
            b'/' if b.get(k + 1) == Some(&b'*') => k += i[k..].find("*/")? + 1,
            _ => {}
        }
        k += 1;
    }
    None
}

struct Parser<'a> {
    src: &'a str,
    file: FileId,
    pos: usize,
    diags: Vec<Diagnostic>,
    /// Blocks (compound bodies, groups) open around the current token.
    nesting: usize,
    /// The last token peeked: where the look started, and the token.
    peeked: Option<(usize, (Tok, &'a str, Span))>,
    max_nesting: usize,
    /// Ports per element (a port number must be below it).
    max_ports: usize,
}

/// Parses one file of the map. Returns the statements that parsed and every
/// syntax error found.
pub fn parse(map: &SourceMap, file: FileId) -> (Vec<Stmt>, Vec<Diagnostic>) {
    parse_limited(map, file, &Limits::default())
}

/// [`parse`], with blocks nested at most `limits.nesting` deep: the parser
/// recurses once per block, so the limit keeps its stack bounded whatever
/// the text.
pub fn parse_limited(map: &SourceMap, file: FileId, limits: &Limits) -> (Vec<Stmt>, Vec<Diagnostic>) {
    let mut p = Parser {
        src: map.text(file),
        file,
        pos: 0,
        diags: Vec::new(),
        nesting: 0,
        peeked: None,
        max_nesting: limits.nesting,
        max_ports: limits.ports,
    };
    let stmts = p.statements(None);
    (stmts, p.diags)
}

/// Reads a library: (path as written, name of the requiring file) to
/// (the library's name, its text), or why not.
pub type ReadLibrary<'r> = dyn FnMut(&str, &str) -> Result<(String, String), String> + 'r;

/// Libraries nest at most this deep (a library requiring itself, or a
/// cycle, is read once anyway).
const MAX_LIBRARY_DEPTH: usize = 16;

/// Parses `file` and, first, every library it names with
/// `require(library FILE)` (Click's way of sharing element classes between
/// configurations), each read once through `read`. `read` gets the path as
/// written and the name of the file that requires it, and returns the
/// library's name (for diagnostics) and text, or why it could not.
/// Library statements come before the file's own, as if written there.
pub fn parse_with_libraries(
    map: &mut SourceMap,
    file: FileId,
    read: &mut ReadLibrary<'_>,
    limits: &Limits,
) -> (Vec<Stmt>, Vec<Diagnostic>) {
    let mut seen = Libraries {
        names: [map.name(file).to_string()].into(),
        bytes: 0,
    };
    parse_file(map, file, read, &mut seen, 0, limits)
}

/// Libraries read so far: by the name `read` gives them (one file, one
/// name, however its path was written), and their bytes together, which
/// count against `config_bytes`.
struct Libraries {
    names: std::collections::HashSet<String>,
    bytes: usize,
}

fn parse_file(
    map: &mut SourceMap,
    file: FileId,
    read: &mut ReadLibrary<'_>,
    seen: &mut Libraries,
    depth: usize,
    limits: &Limits,
) -> (Vec<Stmt>, Vec<Diagnostic>) {
    let (stmts, mut diags) = parse_limited(map, file, limits);
    let libraries: Vec<Requirement> = stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Require(r) => Some(r),
            _ => None,
        })
        .flatten()
        .filter(|r| r.library)
        .cloned()
        .collect();
    let mut all = Vec::new();
    for lib in libraries {
        if depth >= MAX_LIBRARY_DEPTH {
            diags.push(Diagnostic::error(lib.span, "libraries nested too deeply"));
            break;
        }
        let from = map.name(file).to_string();
        match read(&lib.name, &from) {
            Ok((name, _)) if seen.names.contains(&name) => {}
            Ok((_, text)) if seen.bytes.saturating_add(text.len()) > limits.config_bytes => {
                diags.push(Diagnostic::error(
                    lib.span,
                    format!(
                        "libraries together are larger than {} bytes {}",
                        limits.config_bytes,
                        Exceeded("config_bytes", limits.config_bytes as u64)
                    ),
                ));
                break;
            }
            Ok((name, text)) => {
                seen.bytes += text.len();
                seen.names.insert(name.clone());
                let id = map.add(name, text);
                let (s, d) = parse_file(map, id, read, seen, depth + 1, limits);
                all.extend(s);
                diags.extend(d);
            }
            Err(why) => diags.push(Diagnostic::error(lib.span, why)),
        }
    }
    all.extend(stmts);
    (all, diags)
}

impl<'a> Parser<'a> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn skip_trivia(&mut self) {
        if let Ok((rest, _)) = trivia(&self.src[self.pos..]) {
            self.pos = self.src.len() - rest.len();
        }
    }

    /// The next token, its text and span, without consuming it. The
    /// parser looks at the same token several times: the last one is kept,
    /// so trivia and the token are lexed once.
    fn peek(&mut self) -> (Tok, &'a str, Span) {
        if let Some((entry, t)) = self.peeked {
            if self.pos == entry || self.pos == t.2.start as usize {
                self.pos = t.2.start as usize;
                return t;
            }
        }
        let entry = self.pos;
        self.skip_trivia();
        let rest = &self.src[self.pos..];
        let (after, tok) = token(rest).unwrap_or((rest, Tok::Eof));
        let len = rest.len() - after.len();
        let t = (tok, &rest[..len], self.span(self.pos, self.pos + len));
        self.peeked = Some((entry, t));
        t
    }

    fn next(&mut self) -> (Tok, &'a str, Span) {
        let t = self.peek();
        self.pos = t.2.end as usize;
        t
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek().0 == Tok::Char(c) {
            self.next();
            true
        } else {
            false
        }
    }

    fn error_near(&mut self, span: Span, text: &str, expected: &str) {
        let near = if text.is_empty() {
            "end of file".to_string()
        } else {
            format!("'{text}'")
        };
        self.diags.push(Diagnostic::error(
            span,
            format!("syntax error near {near}: expected {expected}"),
        ));
    }

    /// Skips to just after the next `;` (or before a `}` closing the
    /// current compound, or the end of file).
    fn recover(&mut self) {
        loop {
            match self.peek().0 {
                Tok::Eof | Tok::Char('}') => return,
                Tok::Char(';') => {
                    self.next();
                    return;
                }
                Tok::Char('(') => {
                    self.next();
                    self.config_text();
                }
                _ => {
                    self.next();
                }
            }
        }
    }

    /// Statements up to the end of the file, or up to `close` (a
    /// compound's '}', a group's ')'; opened at the span given).
    fn statements(&mut self, close: Option<(char, Span)>) -> Vec<Stmt> {
        if let Some((c, open)) = close {
            if self.nesting >= self.max_nesting {
                return self.too_deep(c, open);
            }
            self.nesting += 1;
            let stmts = self.statements_in(close);
            self.nesting -= 1;
            return stmts;
        }
        self.statements_in(None)
    }

    /// A block opened past the nesting limit: one error, and the parser
    /// skips to its matching close without recursing (or to the end).
    fn too_deep(&mut self, close: char, open: Span) -> Vec<Stmt> {
        let what = if close == ')' { "groups" } else { "compounds" };
        self.diags.push(Diagnostic::error(
            open,
            format!(
                "{what} nested more than {} deep {}",
                self.max_nesting,
                Exceeded("nesting", self.max_nesting as u64)
            ),
        ));
        let mut depth = 0usize;
        loop {
            match self.peek().0 {
                Tok::Eof => return Vec::new(),
                Tok::Char('{') | Tok::Char('(') => depth += 1,
                Tok::Char(c @ ('}' | ')')) => {
                    if depth == 0 && c == close {
                        return Vec::new();
                    }
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            }
            self.next();
        }
    }

    fn statements_in(&mut self, close: Option<(char, Span)>) -> Vec<Stmt> {
        let mut stmts = Vec::new();
        loop {
            let (tok, text, span) = self.peek();
            match tok {
                Tok::Eof => {
                    if let Some((c, open)) = close {
                        let what = if c == ')' { "group" } else { "compound" };
                        self.diags
                            .push(Diagnostic::error(open, format!("unterminated {what}: missing '{c}'")));
                    }
                    return stmts;
                }
                Tok::Char(c) if close.is_some_and(|(want, _)| want == c) => return stmts,
                Tok::DoubleBar if close.is_some_and(|(want, _)| want == '}') => return stmts,
                Tok::Char(';') => {
                    self.next();
                }
                Tok::Ident if text == "elementclass" => {
                    self.next();
                    if let Some(s) = self.element_class() {
                        stmts.push(s);
                    }
                }
                Tok::Ident if text == "define" || text == "require" || text == "provide" => {
                    self.next();
                    if let Some(s) = self.define_or_require(text) {
                        stmts.push(s);
                    }
                }
                // Inside a group or compound a connection may start with
                // an arrow: `-> x` is `input -> x`.
                Tok::Arrow | Tok::DoubleArrow if self.nesting > 0 => match self.connection() {
                    Some(c) => stmts.push(Stmt::Connection(c)),
                    None => self.recover(),
                },
                Tok::Ident | Tok::Char('[') | Tok::Char('{') | Tok::Char('(') => match self.connection() {
                    Some(c) => stmts.push(Stmt::Connection(c)),
                    None => self.recover(),
                },
                _ => {
                    self.next();
                    self.error_near(span, text, "a declaration or connection");
                    self.recover();
                }
            }
        }
    }

    fn config_text(&mut self) -> Option<ConfigText> {
        let start = self.pos;
        match config_body(&self.src[start..]) {
            Some(len) => {
                self.pos = start + len + 1;
                Some(ConfigText {
                    text: self.src[start..start + len].to_string(),
                    span: self.span(start, start + len),
                })
            }
            None => {
                self.diags.push(Diagnostic::error(
                    self.span(start - 1, start),
                    "unbalanced '(': missing ')'",
                ));
                self.pos = self.src.len();
                None
            }
        }
    }

    fn element_class(&mut self) -> Option<Stmt> {
        let (tok, text, span) = self.next();
        if tok != Tok::Ident {
            self.error_near(span, text, "an element class name after 'elementclass'");
            self.recover();
            return None;
        }
        let name = Ident {
            name: text.to_string(),
            span,
        };
        let (tok, text2, span2) = self.next();
        match tok {
            Tok::Char('{') => {
                let mut alternatives = Vec::new();
                let mut extends = None;
                loop {
                    let (tok, _, first) = self.peek();
                    if tok == Tok::Ellipsis {
                        let at = self.next().2;
                        if extends.is_none() && (alternatives.is_empty() || self.peek().0 != Tok::Char('}')) {
                            self.diags.push(
                                Diagnostic::error(at, "'...' should occur last, after one or more compounds")
                                    .with_help(format!(
                                        "write elementclass {0} {{ VERSION || ... }}: '...' stands for the \
                                         class '{0}' defined before this one",
                                        name.name
                                    )),
                            );
                        }
                        extends = Some(at);
                        match self.peek() {
                            (Tok::Char('}'), _, _) => {
                                self.next();
                                break;
                            }
                            (Tok::DoubleBar, _, _) => {
                                self.next();
                                continue;
                            }
                            (_, text, span) => {
                                self.error_near(span, text, "'}' or '||' after '...'");
                                self.recover();
                                break;
                            }
                        }
                    }
                    let formals = self.formals();
                    let stmts = self.statements(Some(('}', span2)));
                    let (tok, _, end) = self.peek();
                    alternatives.push(Compound {
                        formals,
                        stmts,
                        span: first.to(end),
                    });
                    self.next();
                    if tok != Tok::DoubleBar {
                        break;
                    }
                }
                Some(Stmt::ElementClass(ElementClass {
                    name,
                    body: ClassBody::Compound { alternatives, extends },
                }))
            }
            Tok::Ident => Some(Stmt::ElementClass(ElementClass {
                name,
                body: ClassBody::Synonym(Ident {
                    name: text2.to_string(),
                    span: span2,
                }),
            })),
            _ => {
                self.error_near(span2, text2, "'{' after the class name");
                self.recover();
                None
            }
        }
    }

    /// `$a, KEYWORD $b |` at the start of a compound body, if present.
    fn formals(&mut self) -> Vec<Formal> {
        let save = self.pos;
        let mut formals: Vec<Formal> = Vec::new();
        loop {
            let (tok, text, span) = self.peek();
            let keyword = match tok {
                Tok::Var => None,
                Tok::Ident => {
                    // `KEYWORD $var`; anything else starts the body.
                    let at = self.pos;
                    self.next();
                    if self.peek().0 != Tok::Var {
                        self.pos = at;
                        break;
                    }
                    Some(Ident {
                        name: text.to_string(),
                        span,
                    })
                }
                _ => break,
            };
            let (_, text, vspan) = self.next();
            if keyword.is_none() && formals.iter().any(|f| f.keyword.is_some()) {
                self.diags.push(Diagnostic::error(
                    vspan,
                    "positional parameter after keyword parameters",
                ));
            }
            if formals
                .last()
                .is_some_and(|f| f.keyword.as_ref().is_some_and(|k| k.name == "__REST__"))
            {
                self.diags
                    .push(Diagnostic::error(vspan, "'__REST__ $var' must be the last parameter"));
            }
            formals.push(Formal {
                keyword,
                var: Ident {
                    name: text[1..].to_string(),
                    span: vspan,
                },
            });
            match self.next().0 {
                Tok::Char(',') => continue,
                Tok::Char('|') => return formals,
                _ => break,
            }
        }
        if !formals.is_empty() {
            let here = self.peek().2;
            self.diags
                .push(Diagnostic::error(here, "expected ',' or '|' after compound parameters"));
        }
        self.pos = save;
        Vec::new()
    }

    /// `define(...)`, `require(...)` or `provide(...)`, after the keyword.
    fn define_or_require(&mut self, keyword: &str) -> Option<Stmt> {
        let define = keyword == "define";
        if !self.eat('(') {
            let (_, text, span) = self.peek();
            self.error_near(span, text, &format!("'(' after '{keyword}'"));
            self.recover();
            return None;
        }
        let config = self.config_text()?;
        self.eat(';');
        let base = config.span.start as usize;
        let args = split_args(&config.text);
        if define {
            let mut defs = Vec::new();
            for a in args.iter().filter(|a| !a.text.is_empty()) {
                let var_len = a.text.find(char::is_whitespace).unwrap_or(a.text.len());
                let var = &a.text[..var_len];
                let span = self.span(base + a.start, base + a.start + var_len);
                let name = var
                    .strip_prefix('$')
                    .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                match name {
                    Some(n) => defs.push(Definition {
                        name: Ident {
                            name: n.to_string(),
                            span,
                        },
                        value: a.text[var_len..].trim().to_string(),
                    }),
                    None => self.diags.push(
                        Diagnostic::error(span, format!("bad 'define' declaration: '{var}' is not a variable"))
                            .with_help("write define($NAME value)"),
                    ),
                }
            }
            Some(Stmt::Define(defs))
        } else {
            let reqs = args
                .iter()
                .flat_map(|a| {
                    // Each word with its own offset, so errors point at it.
                    let mut words: Vec<(&str, usize)> = Vec::new();
                    let mut rest = a.text;
                    let mut offset = 0;
                    while let Some(i) = rest.find(|c: char| !c.is_whitespace()) {
                        let len = rest[i..].find(char::is_whitespace).unwrap_or(rest.len() - i);
                        words.push((&rest[i..i + len], offset + i));
                        offset += i + len;
                        rest = &rest[i + len..];
                    }
                    let library = words.first().is_some_and(|w| w.0 == "library");
                    if library || words.first().is_some_and(|w| w.0 == "package") {
                        words.remove(0);
                    }
                    let start = base + a.start;
                    words
                        .into_iter()
                        .map(move |(w, at)| (w.to_string(), start + at, library))
                })
                .map(|(name, start, library)| Requirement {
                    span: self.span(start, start + name.len()),
                    name: name.trim_matches('"').to_string(),
                    library,
                })
                .collect();
            Some(if keyword == "provide" {
                Stmt::Provide(reqs)
            } else {
                Stmt::Require(reqs)
            })
        }
    }

    fn connection(&mut self) -> Option<Connection> {
        let mut sections = vec![self.element_list(true)?.0];
        let mut arrows = Vec::new();
        loop {
            let (tok, _, span) = self.peek();
            let kind = match tok {
                Tok::Arrow => ArrowKind::Single,
                Tok::DoubleArrow => ArrowKind::Double,
                _ => break,
            };
            self.next();
            arrows.push((kind, span));
            let (section, implicit) = self.element_list(false)?;
            sections.push(section);
            let (tok, _, at) = self.peek();
            if implicit && matches!(tok, Tok::Arrow | Tok::DoubleArrow) {
                self.diags.push(
                    Diagnostic::error(at, "implicit ports used in the middle of a chain")
                        .with_help("a port without an element ('-> [1],') stands for 'output' and ends the chain"),
                );
                return None;
            }
        }
        let (tok, text, span) = self.peek();
        match tok {
            Tok::Char(';') => {
                self.next();
            }
            Tok::Eof | Tok::Ident | Tok::Char('}') | Tok::Char('{') | Tok::Char(')') | Tok::DoubleBar => {}
            _ => {
                self.error_near(span, text, "'->' or ';'");
                return None;
            }
        }
        Some(Connection { sections, arrows })
    }

    /// The elements between two arrows (`first_section`: before the
    /// first), and whether one of them is an implicit port.
    fn element_list(&mut self, first_section: bool) -> Option<(Vec<ElementRef>, bool)> {
        let mut list: Vec<ElementRef> = Vec::new();
        let mut any_implicit = false;
        loop {
            let (item, implicit) = self.element_ref(first_section, list.is_empty())?;
            any_implicit |= implicit;
            if let Target::Declare { names, .. } = &item.target {
                // `a, b :: C` declares every bare name before the `::`.
                let mut extra = Vec::new();
                while let Some(ElementRef {
                    input: None,
                    output: None,
                    target: Target::Name(_),
                    ..
                }) = list.last()
                {
                    if let Some(ElementRef {
                        target: Target::Name(id),
                        ..
                    }) = list.pop()
                    {
                        extra.push(id);
                    }
                }
                if !extra.is_empty() {
                    extra.reverse();
                    let mut item = item.clone();
                    if let Target::Declare { names: all, .. } = &mut item.target {
                        extra.extend(names.iter().cloned());
                        *all = extra;
                    }
                    list.push(item);
                } else {
                    list.push(item);
                }
            } else {
                list.push(item);
            }
            if !self.eat(',') {
                return Some((list, any_implicit));
            }
        }
    }

    fn port(&mut self) -> Option<Option<Port>> {
        if self.peek().0 != Tok::Char('[') {
            return Some(None);
        }
        let open = self.next().2;
        let mut numbers = Vec::new();
        let mut expandable = false;
        let close = loop {
            let (tok, text, span) = self.next();
            if tok == Tok::Char(']') && numbers.is_empty() {
                // `[]`: every port from 0, as many as needed.
                numbers.push(0);
                expandable = true;
                break span;
            }
            let Some(number) = (tok == Tok::Ident).then(|| text.parse::<u32>().ok()).flatten() else {
                self.error_near(span, text, "a port number inside '[...]'");
                return None;
            };
            // Bounded here: later stages count up to a port number (a
            // group's implied ports), so 4000000000 must not get that far.
            if number as usize >= self.max_ports {
                self.diags.push(Diagnostic::error(
                    span,
                    format!(
                        "port {number} out of range: at most {} ports per element {}",
                        self.max_ports,
                        Exceeded("ports", self.max_ports as u64)
                    ),
                ));
                return None;
            }
            numbers.push(number);
            let (tok, text, span) = self.next();
            match tok {
                Tok::Char(']') => break span,
                Tok::Char(',') if self.peek().0 == Tok::Char(']') => {
                    // `[1, ]`: from the last port listed on.
                    expandable = true;
                    break self.next().2;
                }
                Tok::Char(',') => {}
                _ => {
                    self.error_near(span, text, "',' or ']' in a port list");
                    return None;
                }
            }
        };
        Some(Some(Port {
            numbers,
            expandable,
            span: open.to(close),
        }))
    }

    /// Statements up to `close` (opened at `open`) and the closing
    /// character itself: a compound's body, a group.
    fn block(&mut self, close: char, open: Span, what: &str) -> Option<(Vec<Stmt>, Span)> {
        let stmts = self.statements(Some((close, open)));
        let (tok, text, at) = self.peek();
        if tok != Tok::Char(close) {
            self.error_near(at, text, &format!("'{close}' closing the {what}"));
            return None;
        }
        self.next();
        Some((stmts, at))
    }

    /// An anonymous compound in place of a class: `{ [formals |] stmts }`,
    /// then an optional configuration. The `{` is the next token.
    fn inline_compound(&mut self) -> Option<ClassUse> {
        let open = self.next().2;
        let formals = self.formals();
        let (stmts, close) = self.block('}', open, "compound")?;
        let config = if self.eat('(') { Some(self.config_text()?) } else { None };
        Some(ClassUse {
            class: Ident {
                name: "Compound".into(),
                span: open,
            },
            config,
            inline: Some(Box::new(Compound {
                formals,
                stmts,
                span: open.to(close),
            })),
        })
    }

    /// Click's implicit ports, inside a group or compound only: where an
    /// element is expected but a connection starts with `->` or `[p] ->`,
    /// that is `input[p] ->`; where it ends with `->` or `-> [p]`, that is
    /// `-> [p]output`. `port` is the port read before `tok`.
    fn implicit(
        &self,
        port: &Option<Port>,
        tok: Tok,
        at: Span,
        first_section: bool,
        first_in_section: bool,
    ) -> Option<ElementRef> {
        let starts = first_section && (port.is_some() || first_in_section);
        let ends = !first_section && (port.is_some() || first_in_section);
        let input = match tok {
            Tok::Arrow | Tok::DoubleArrow => starts.then_some(true),
            Tok::Char(',') => port.is_some().then_some(first_section),
            Tok::Char(')' | ';' | '}') | Tok::DoubleBar | Tok::Eof => ends.then_some(false),
            _ => None,
        }?;
        // Diagnostics about it point at its port, or at the arrow (or the
        // place just before the closing token).
        let span = port.as_ref().map_or(
            if input {
                at
            } else {
                Span::new(at.file, at.start as usize, at.start as usize)
            },
            |p| p.span,
        );
        let target = Target::Name(Ident {
            name: if input { "input" } else { "output" }.into(),
            span,
        });
        Some(if input {
            ElementRef {
                input: None,
                target,
                output: port.clone(),
                span,
            }
        } else {
            ElementRef {
                input: port.clone(),
                target,
                output: None,
                span,
            }
        })
    }

    /// One element of a connection, and whether it is an implicit port.
    fn element_ref(&mut self, first_section: bool, first_in_section: bool) -> Option<(ElementRef, bool)> {
        let input = self.port()?;
        if self.nesting > 0 {
            let (tok, _, span) = self.peek();
            if let Some(r) = self.implicit(&input, tok, span, first_section, first_in_section) {
                return Some((r, true));
            }
        }
        self.element_after_port(input).map(|r| (r, false))
    }

    /// An element of a connection after its input port, if any.
    fn element_after_port(&mut self, input: Option<Port>) -> Option<ElementRef> {
        let (tok, text, span) = self.peek();
        if tok == Tok::Char('(') {
            self.next();
            let (stmts, close) = self.block(')', span, "group")?;
            let output = self.port()?;
            let start = input.as_ref().map_or(span, |p| p.span);
            let stop = output.as_ref().map_or(close, |p| p.span);
            return Some(ElementRef {
                input,
                target: Target::Group(Group {
                    stmts,
                    span: span.to(close),
                }),
                output,
                span: start.to(stop),
            });
        }
        if tok == Tok::Char('{') {
            let class = self.inline_compound()?;
            let end = class
                .config
                .as_ref()
                .map_or(class.inline.as_ref().map_or(span, |c| c.span), |c| {
                    self.span(c.span.end as usize, c.span.end as usize + 1)
                });
            let output = self.port()?;
            let start = input.as_ref().map_or(span, |p| p.span);
            let stop = output.as_ref().map_or(end, |p| p.span);
            return Some(ElementRef {
                input,
                target: Target::Anonymous(class),
                output,
                span: start.to(stop),
            });
        }
        if tok != Tok::Ident {
            self.error_near(span, text, "an element name or class");
            return None;
        }
        self.next();
        let first = Ident {
            name: text.to_string(),
            span,
        };
        let mut end = span;
        let target = match self.peek().0 {
            Tok::DoubleColon => {
                self.next();
                if self.peek().0 == Tok::Char('{') {
                    let class = self.inline_compound()?;
                    end = class.inline.as_ref().map_or(span, |c| c.span);
                    if let Some(c) = &class.config {
                        end = self.span(c.span.end as usize, c.span.end as usize + 1);
                    }
                    let output = self.port()?;
                    let start = input.as_ref().map_or(span, |p| p.span);
                    let stop = output.as_ref().map_or(end, |p| p.span);
                    return Some(ElementRef {
                        input,
                        target: Target::Declare {
                            names: vec![first],
                            class,
                        },
                        output,
                        span: start.to(stop),
                    });
                }
                let (tok, text, cspan) = self.next();
                if tok != Tok::Ident {
                    self.error_near(cspan, text, "an element class after '::'");
                    return None;
                }
                end = cspan;
                let config = if self.eat('(') {
                    let c = self.config_text()?;
                    end = self.span(c.span.end as usize, c.span.end as usize + 1);
                    Some(c)
                } else {
                    None
                };
                Target::Declare {
                    names: vec![first],
                    class: ClassUse {
                        class: Ident {
                            name: text.to_string(),
                            span: cspan,
                        },
                        config,
                        inline: None,
                    },
                }
            }
            Tok::Char('(') => {
                self.next();
                let c = self.config_text()?;
                end = self.span(c.span.end as usize, c.span.end as usize + 1);
                Target::Anonymous(ClassUse {
                    class: first,
                    config: Some(c),
                    inline: None,
                })
            }
            _ => Target::Name(first),
        };
        let output = self.port()?;
        let start = input.as_ref().map_or(span, |p| p.span);
        let stop = output.as_ref().map_or(end, |p| p.span);
        Some(ElementRef {
            input,
            target,
            output,
            span: start.to(stop),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> (Vec<Stmt>, Vec<Diagnostic>) {
        let mut map = SourceMap::new();
        let f = map.add("t.click", text);
        parse(&map, f)
    }

    fn ok(text: &str) -> Vec<Stmt> {
        let (stmts, diags) = parse_str(text);
        assert!(diags.is_empty(), "{diags:?}");
        stmts
    }

    fn conn(s: &Stmt) -> &Connection {
        match s {
            Stmt::Connection(c) => c,
            other => panic!("not a connection: {other:?}"),
        }
    }

    #[test]
    fn declaration_with_config_keeps_raw_text() {
        let s = ok("src :: InfiniteSource(LENGTH 64, DATA \\<00 11>) // c\n;");
        let c = conn(&s[0]);
        let Target::Declare { names, class } = &c.sections[0][0].target else {
            panic!()
        };
        assert_eq!(names[0].name, "src");
        assert_eq!(class.class.name, "InfiniteSource");
        assert_eq!(class.config.as_ref().unwrap().text, "LENGTH 64, DATA \\<00 11>");
    }

    #[test]
    fn multi_declaration() {
        let s = ok("a, b :: Counter;");
        let Target::Declare { names, .. } = &conn(&s[0]).sections[0][0].target else {
            panic!()
        };
        assert_eq!(names.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn chain_with_ports_and_inline_elements() {
        let s = ok("src -> t :: Tee(2); t[1] -> [0]Counter -> Discard;");
        assert_eq!(s.len(), 2);
        let c = conn(&s[1]);
        assert_eq!(c.sections.len(), 3);
        assert_eq!(c.sections[0][0].output.as_ref().unwrap().numbers, [1]);
        assert_eq!(c.sections[1][0].input.as_ref().unwrap().numbers, [0]);
        assert!(matches!(c.sections[2][0].target, Target::Name(_)));
    }

    #[test]
    fn element_lists_and_double_arrow() {
        let s = ok("a, b -> c; x => y, z;");
        assert_eq!(conn(&s[0]).sections[0].len(), 2);
        assert_eq!(conn(&s[1]).arrows[0].0, ArrowKind::Double);
    }

    #[test]
    fn nested_config_and_comments() {
        let s = ok("/* block\n comment */ c :: Classifier(12/0800 /* ip ) */, -); // tail");
        let Target::Declare { class, .. } = &conn(&s[0]).sections[0][0].target else {
            panic!()
        };
        assert_eq!(class.config.as_ref().unwrap().text, "12/0800 /* ip ) */, -");
    }

    #[test]
    fn elementclass_with_formals() {
        let s = ok("elementclass Branch { $label | input -> Print($label) -> output; }");
        let Stmt::ElementClass(ec) = &s[0] else { panic!() };
        let ClassBody::Compound { alternatives, .. } = &ec.body else {
            panic!()
        };
        let c = &alternatives[0];
        assert_eq!(c.formals[0].var.name, "label");
        assert_eq!(c.stmts.len(), 1);
    }

    #[test]
    fn define_and_require() {
        let s = ok("define($N 10, $NAME \"x y\"); require(package switchyard);");
        let Stmt::Define(d) = &s[0] else { panic!() };
        assert_eq!((d[1].name.name.as_str(), d[1].value.as_str()), ("NAME", "\"x y\""));
        let Stmt::Require(r) = &s[1] else { panic!() };
        assert_eq!(r[0].name, "switchyard");
    }

    #[test]
    fn statements_without_semicolons() {
        let s = ok("a :: Idle\nb :: Idle\na -> b");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn every_syntax_error_is_reported() {
        let (stmts, diags) = parse_str("a :: Tee(2);\nb -> ;\nc :: Idle;\nd -> -> e;\n");
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags[0].message.contains("near ';'"));
        assert_eq!(stmts.len(), 2);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for (open, close) in [("{", "}"), ("(", ")")] {
            let text = format!("a -> {}b{} -> c;", open.repeat(50_000), close.repeat(50_000));
            let (_, diags) = parse_str(&text);
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert!(
                diags[0].message.contains("nested more than 64 deep (limit nesting=64"),
                "{diags:?}"
            );
        }
        let text = format!("elementclass A {{{}", "elementclass B { ".repeat(50_000));
        let (_, diags) = parse_str(&text);
        assert!(
            diags.iter().any(|d| d.message.contains("limit nesting=64")),
            "{diags:?}"
        );
        // 64 levels still parse.
        let text = format!("a -> {}b{} -> c;", "(".repeat(64), ")".repeat(64));
        assert!(parse_str(&text).1.is_empty());
    }

    #[test]
    fn unbalanced_parenthesis_is_an_error() {
        let (_, diags) = parse_str("a :: Tee(2;");
        assert!(diags[0].message.contains("missing ')'"));
    }
}
