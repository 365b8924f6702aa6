//! Diagnostics for people: `file:line:column: error: message`, the source
//! line, a caret under the spot, then notes and a suggestion.

use crate::span::{SourceMap, Span};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A secondary message, optionally pointing at another place
/// (`previously declared here`).
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub span: Option<Span>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    pub notes: Vec<Note>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
            notes: Vec::new(),
            help: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    pub fn with_note(mut self, span: Option<Span>, message: impl Into<String>) -> Diagnostic {
        self.notes.push(Note {
            span,
            message: message.into(),
        });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// `file:line:column`, the first line of the rendered form.
    pub fn location(&self, map: &SourceMap) -> String {
        let (line, col) = map.line_col(self.span.file, self.span.start as usize);
        format!("{}:{}:{}", map.name(self.span.file), line, col)
    }

    /// The full text shown to the user.
    pub fn render(&self, map: &SourceMap) -> String {
        let mut out = String::new();
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{}: {}: {}", self.location(map), kind, self.message);
        snippet(&mut out, map, self.span);
        for note in &self.notes {
            match note.span {
                Some(span) => {
                    let (line, col) = map.line_col(span.file, span.start as usize);
                    let _ = writeln!(out, "{}:{}:{}: note: {}", map.name(span.file), line, col, note.message);
                    snippet(&mut out, map, span);
                }
                None => {
                    let _ = writeln!(out, "  = note: {}", note.message);
                }
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// The widest stretch of a source line a snippet shows, in characters: a
/// huge one-line config gets a readable window around the caret.
const SNIPPET_WIDTH: usize = 120;

/// The source line of `span` and a caret run under it (clipped to the line,
/// and to a window around the caret when the line is long). Columns count
/// characters, so the caret lines up under multi-byte text.
fn snippet(out: &mut String, map: &SourceMap, span: Span) {
    let (line, col) = map.line_col(span.file, span.start as usize);
    let text = map.line_text(span.file, line);
    let len = text.chars().count();
    let width = map.slice(span).lines().next().map_or(1, |s| s.chars().count().max(1));
    let width = width.min(len.saturating_sub(col - 1).max(1)).min(SNIPPET_WIDTH / 2);
    // First character shown: keep the caret within the window.
    let first = if len <= SNIPPET_WIDTH {
        0
    } else {
        (col - 1).saturating_sub(SNIPPET_WIDTH / 4)
    };
    let shown: String = text.chars().skip(first).take(SNIPPET_WIDTH).collect();
    let lead = if first > 0 { "..." } else { "" };
    let tail = if first + SNIPPET_WIDTH < len { "..." } else { "" };
    let gutter = line.to_string().len();
    let _ = writeln!(out, "{:>gutter$} | {lead}{}{tail}", line, shown.replace('\t', " "));
    let pad = lead.len() + (col - 1 - first);
    let _ = writeln!(out, "{:>gutter$} | {}{}", "", " ".repeat(pad), "^".repeat(width));
}

/// Renders every diagnostic, errors and warnings in source order.
pub fn render_all(diags: &[Diagnostic], map: &SourceMap) -> String {
    diags.iter().map(|d| d.render(map)).collect()
}

/// Renders as Click's own tools do, for `switchyard click`: one
/// `FILE:LINE: message` line per diagnostic and note, no column, source
/// line or suggestion. An argument error (`'x :: C': why`) takes Click's
/// two lines (`While configuring 'x :: C':` and the reason, indented); a
/// push/pull mismatch has no location, as in Click.
pub fn render_click(diags: &[Diagnostic], map: &SourceMap) -> String {
    let mut out = String::new();
    let mut last = None;
    for d in diags {
        // One line per problem, as Click: an argument error repeated for
        // each extra argument is said once.
        if last == Some((&d.message, d.span.file)) {
            continue;
        }
        last = Some((&d.message, d.span.file));
        // Click reports a reused port where it was first connected.
        let span = match d.notes.first().and_then(|n| n.span) {
            Some(first) if d.message.starts_with("illegal reuse of ") => first,
            _ => d.span,
        };
        let (line, _) = map.line_col(span.file, span.start as usize);
        let at = format!("{}:{line}: ", map.name(span.file));
        let warning = if d.severity == Severity::Warning {
            "warning: "
        } else {
            ""
        };
        if let Some(m) = d.message.strip_prefix("push/pull mismatch: ") {
            let _ = writeln!(out, "{m}");
        } else if let Some((who, why)) = configure_error(&d.message) {
            let _ = writeln!(out, "{at}While configuring {who}:\n  {why}");
        } else {
            let _ = writeln!(out, "{at}{warning}{}", click_wording(&d.message));
        }
        // Click prints companion lines for a redeclaration and for a
        // compound no version of which matches (`candidates are:` at the
        // first candidate, then one line per candidate); the other notes
        // are Switchyard's additions.
        let no_match = d.message.starts_with("no match for '");
        let located = |n: &Note| {
            n.span
                .map(|s| format!("{}:{}: ", map.name(s.file), map.line_col(s.file, s.start as usize).0))
        };
        for (k, n) in d.notes.iter().enumerate() {
            if !(no_match || n.message.contains("previously declared")) {
                continue;
            }
            let at = located(n)
                .or_else(|| d.notes[k + 1..].iter().find_map(located).filter(|_| no_match))
                .unwrap_or_else(|| at.clone());
            let _ = writeln!(out, "{at}{}", n.message);
        }
    }
    out
}

/// Click's shorter wording for the syntax errors Switchyard explains:
/// `syntax error near '->'` without what was expected, `near ''` at the
/// end of the text, `expected ')'` for an unclosed parenthesis.
fn click_wording(message: &str) -> std::borrow::Cow<'_, str> {
    if let Some(rest) = message.strip_prefix("syntax error near end of file") {
        let _ = rest;
        return "syntax error near ''".into();
    }
    if let Some(rest) = message.strip_prefix("syntax error near '") {
        if let Some(close) = rest.find("'") {
            return message[.."syntax error near '".len() + close + 1].into();
        }
    }
    if message.starts_with("unbalanced '(': missing ')'") {
        return "expected ')'".into();
    }
    message.into()
}

/// `'x :: C': why` split into its element and reason.
fn configure_error(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix('\'')?;
    let close = rest.find("': ")?;
    let who = &message[..close + 2];
    who.contains(" :: ").then(|| (who, &rest[close + 3..]))
}

/// Renders for someone who gave only the text of `shown` (a reload over
/// the control socket): a diagnostic about any other file (a library the
/// router read on their behalf, with its own privileges) gives only its
/// location, never a line or a word of that file.
pub fn render_redacted(diags: &[Diagnostic], map: &SourceMap, shown: crate::FileId) -> String {
    diags
        .iter()
        .map(|d| {
            if d.span.file == shown && d.notes.iter().all(|n| n.span.is_none_or(|s| s.file == shown)) {
                d.render(map)
            } else {
                format!(
                    "{}: error in a file the router read (details in the router's log)\n",
                    d.location(map)
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_line_and_caret() {
        let mut map = SourceMap::new();
        let f = map.add("x.click", "a :: Tee;\nb :: Countr;\n");
        let d = Diagnostic::error(Span::new(f, 15, 21), "unknown element class 'Countr'")
            .with_help("did you mean 'Counter'?");
        let text = d.render(&map);
        assert_eq!(
            text,
            "x.click:2:6: error: unknown element class 'Countr'\n\
             2 | b :: Countr;\n  |      ^^^^^^\n  = help: did you mean 'Counter'?\n"
        );
    }

    #[test]
    fn a_span_inside_a_multibyte_character_renders_on_its_boundary() {
        let mut map = SourceMap::new();
        let f = map.add("u.click", "Watchdog(,\n//\n\u{e9}ET);\n");
        // Byte 15 is inside 'é' (bytes 14..16): the caret goes under it.
        let d = Diagnostic::error(Span::new(f, 15, 17), "bad");
        assert_eq!(d.render(&map), "u.click:3:1: error: bad\n3 | \u{e9}ET);\n  | ^^\n");
    }

    #[test]
    fn a_long_line_is_shown_in_a_window_around_the_caret() {
        let mut map = SourceMap::new();
        let text = format!("{}X{};", "a".repeat(5000), "b".repeat(5000));
        let f = map.add("l.click", text);
        let d = Diagnostic::error(Span::new(f, 5000, 5001), "bad");
        let out = d.render(&map);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].len() < 200, "{}", lines[1]);
        let caret = lines[2].find('^').unwrap();
        assert_eq!(&lines[1][caret..caret + 1], "X");
    }
}
