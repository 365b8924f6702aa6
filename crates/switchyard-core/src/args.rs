//! Element arguments, read Click's way: positional arguments first, then
//! UPPERCASE keyword arguments; `complete` rejects leftovers. Every problem
//! becomes a diagnostic pointing at the argument's text.

use switchyard_lang::config::{split_keyword, unquote};
use switchyard_lang::{nearest, Diagnostic, FlatArg, Span};

/// A value that can be read from one argument.
pub trait FromArg: Sized {
    /// What the user should have written, for error messages.
    const EXPECTED: &'static str;
    fn from_arg(text: &str) -> Option<Self>;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl FromArg for $t {
            const EXPECTED: &'static str = "an integer";
            fn from_arg(text: &str) -> Option<Self> {
                let t = text.replace('_', "");
                if let Some(hex) = t.strip_prefix("0x") {
                    return <$t>::from_str_radix(hex, 16).ok();
                }
                t.parse().ok()
            }
        }
    )*};
}
int_arg!(u8, u16, u32, u64, usize, i32, i64);

impl FromArg for f64 {
    const EXPECTED: &'static str = "a number";
    fn from_arg(text: &str) -> Option<Self> {
        text.parse().ok().filter(|v: &f64| v.is_finite())
    }
}

impl FromArg for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_arg(text: &str) -> Option<Self> {
        // Click's BoolArg words.
        match text {
            "true" | "yes" | "1" | "t" | "y" => Some(true),
            "false" | "no" | "0" | "f" | "n" => Some(false),
            _ => None,
        }
    }
}

impl FromArg for String {
    const EXPECTED: &'static str = "a string";
    fn from_arg(text: &str) -> Option<Self> {
        unquote(text).ok().and_then(|b| String::from_utf8(b).ok())
    }
}

/// A duration in seconds: `0.2`, `200ms`, `50us`, `2s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seconds(pub f64);

impl FromArg for Seconds {
    const EXPECTED: &'static str = "a time (0.2, 200ms, 50us)";
    fn from_arg(text: &str) -> Option<Self> {
        // Click's units (cp_time), longest first so `ms` is not `m` + `s`.
        const UNITS: [(&str, f64); 14] = [
            ("nsec", 1e-9),
            ("usec", 1e-6),
            ("msec", 1e-3),
            ("sec", 1.0),
            ("min", 60.0),
            ("day", 86400.0),
            ("hr", 3600.0),
            ("ns", 1e-9),
            ("us", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
            ("d", 86400.0),
        ];
        let text = text.trim();
        let (num, scale) = UNITS
            .iter()
            .find_map(|&(unit, scale)| Some((text.strip_suffix(unit)?, scale)))
            .unwrap_or((text, 1.0));
        let v: f64 = num.trim_end().parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(Seconds(v * scale))
    }
}

/// A handler write to make later (Click's handler call arguments:
/// END_CALL, COUNT_CALL): `HANDLER [VALUE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerCall {
    pub handler: String,
    pub value: String,
}

impl FromArg for HandlerCall {
    const EXPECTED: &'static str = "a handler call, HANDLER [VALUE]";
    fn from_arg(text: &str) -> Option<Self> {
        let text = String::from_arg(text)?;
        let text = text.trim();
        let (handler, value) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        (!handler.is_empty()).then(|| HandlerCall {
            handler: handler.to_string(),
            value: value.trim().to_string(),
        })
    }
}

/// Packet contents: a Click string, usually hex data `\<00 11 22>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Data(pub Vec<u8>);

impl FromArg for Data {
    const EXPECTED: &'static str = "data (a string or \\<hex bytes>)";
    fn from_arg(text: &str) -> Option<Self> {
        unquote(text).ok().map(Data)
    }
}

struct Item {
    keyword: Option<String>,
    value: String,
    span: Span,
    used: bool,
}

/// The arguments of one element being configured.
pub struct Args {
    element: String,
    items: Vec<Item>,
    span: Span,
    known: Vec<&'static str>,
    errors: Vec<Diagnostic>,
}

impl Args {
    /// `element` is how errors name it (`sw :: Switch`); `span` is where
    /// the configuration is (for missing arguments).
    pub fn new(element: impl Into<String>, args: &[FlatArg], span: Span) -> Args {
        let items = args
            .iter()
            .map(|a| match split_keyword(&a.text) {
                // A lone uppercase word (`TCP`) is a value, not a keyword.
                Some((kw, rest, _)) if !rest.is_empty() => Item {
                    keyword: Some(kw.to_string()),
                    value: rest.to_string(),
                    span: a.span,
                    used: false,
                },
                _ => Item {
                    keyword: None,
                    value: a.text.clone(),
                    span: a.span,
                    used: false,
                },
            })
            .collect();
        Args {
            element: element.into(),
            items,
            span,
            known: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Arguments parsed from a plain string (tests, programmatic use).
    pub fn parse_str(element: &str, config: &str) -> Args {
        let args: Vec<FlatArg> = switchyard_lang::config::split_args(config)
            .into_iter()
            .map(|a| FlatArg {
                text: a.text.to_string(),
                span: Span::default(),
            })
            .collect();
        Args::new(element, &args, Span::default())
    }

    fn convert<T: FromArg>(&mut self, name: &str, idx: usize) -> Option<T> {
        self.items[idx].used = true;
        let item = &self.items[idx];
        match T::from_arg(item.value.trim()) {
            Some(v) => Some(v),
            None => {
                let found = if item.value.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("'{}'", item.value)
                };
                let msg = format!(
                    "'{}': {}: expected {}, found {}",
                    self.element,
                    name,
                    T::EXPECTED,
                    found
                );
                self.errors.push(Diagnostic::error(item.span, msg));
                None
            }
        }
    }

    fn next_positional(&self) -> Option<usize> {
        // Positional arguments come before keywords, in order.
        let first_unused = self.items.iter().position(|i| !i.used)?;
        (self.items[first_unused].keyword.is_none()).then_some(first_unused)
    }

    fn keyword_index(&self, name: &str) -> Option<usize> {
        self.items.iter().rposition(|i| i.keyword.as_deref() == Some(name))
    }

    /// Keyword argument `NAME value`, if given.
    pub fn read<T: FromArg>(&mut self, name: &'static str) -> Option<T> {
        self.known.push(name);
        let idx = self.keyword_index(name)?;
        // Repeated keywords: the last wins, as in Click; mark all used.
        for i in &mut self.items {
            if i.keyword.as_deref() == Some(name) {
                i.used = true;
            }
        }
        self.convert(name, idx)
    }

    /// Every value of a keyword that may be repeated (`WRITE a 1, WRITE b 2`),
    /// in order.
    pub fn read_all<T: FromArg>(&mut self, name: &'static str) -> Vec<T> {
        self.known.push(name);
        let idx: Vec<usize> = (0..self.items.len())
            .filter(|&i| self.items[i].keyword.as_deref() == Some(name))
            .collect();
        idx.into_iter().filter_map(|i| self.convert(name, i)).collect()
    }

    /// The next positional argument, or else keyword `NAME`.
    pub fn read_p<T: FromArg>(&mut self, name: &'static str) -> Option<T> {
        if let Some(idx) = self.next_positional() {
            self.known.push(name);
            return self.convert(name, idx);
        }
        self.read(name)
    }

    /// Like [`read_p`](Self::read_p), and an error if absent.
    pub fn read_mp<T: FromArg>(&mut self, name: &'static str) -> Option<T> {
        let present = self.next_positional().is_some() || self.keyword_index(name).is_some();
        if !present {
            self.known.push(name);
            self.errors.push(Diagnostic::error(
                self.span,
                format!("'{}': missing mandatory argument {}", self.element, name),
            ));
            return None;
        }
        self.read_p(name)
    }

    /// All remaining positional arguments, raw, with their spans (for
    /// elements that take a list, such as Classifier's patterns).
    pub fn rest_positional(&mut self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        while let Some(idx) = self.next_positional() {
            self.items[idx].used = true;
            out.push((self.items[idx].value.clone(), self.items[idx].span));
        }
        out
    }

    /// The element's name (`sw` of `sw :: Switch`).
    pub fn name(&self) -> &str {
        self.element.split(" :: ").next().unwrap_or(&self.element)
    }

    /// Reports a problem with an argument's value found after reading it.
    pub fn error(&mut self, span: Option<Span>, message: impl std::fmt::Display) {
        let span = span.unwrap_or(self.span);
        self.errors
            .push(Diagnostic::error(span, format!("'{}': {}", self.element, message)));
    }

    /// The span of keyword `name` or of the configuration, for errors about
    /// a value that parsed but is out of range.
    pub fn span_of(&self, name: &str) -> Span {
        self.keyword_index(name).map_or(self.span, |i| self.items[i].span)
    }

    /// Ends reading: unknown keywords and extra arguments are errors.
    pub fn complete(mut self) -> Result<(), Vec<Diagnostic>> {
        for item in self.items.iter().filter(|i| !i.used) {
            let d = match &item.keyword {
                Some(kw) => {
                    let mut d = Diagnostic::error(item.span, format!("'{}': unknown argument '{}'", self.element, kw));
                    if let Some(n) = nearest(kw, self.known.iter().copied()) {
                        d = d.with_help(format!("did you mean '{n}'?"));
                    } else if !self.known.is_empty() {
                        d = d.with_note(None, format!("arguments: {}", self.known.join(", ")));
                    }
                    d
                }
                None => Diagnostic::error(item.span, format!("'{}': too many arguments", self.element)),
            };
            self.errors.push(d);
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }

    /// True when an error has been recorded so far.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_then_keywords() {
        let mut a = Args::parse_str("s :: InfiniteSource", "\\<01 02>, 5, STOP true");
        assert_eq!(a.read_p::<Data>("DATA"), Some(Data(vec![1, 2])));
        assert_eq!(a.read_p::<u64>("LIMIT"), Some(5));
        assert_eq!(a.read_p::<u32>("BURST"), None);
        assert_eq!(a.read::<bool>("STOP"), Some(true));
        assert!(a.complete().is_ok());
    }

    #[test]
    fn a_lone_uppercase_word_is_a_value() {
        let mut a = Args::parse_str("c :: ControlSocket", "TCP, 7777");
        assert_eq!(a.read_mp::<String>("TYPE").as_deref(), Some("TCP"));
        assert_eq!(a.read_mp::<u16>("ADDRESS"), Some(7777));
        assert!(a.complete().is_ok());
    }

    #[test]
    fn bad_value_names_element_and_argument() {
        let mut a = Args::parse_str("sw :: Switch", "foo");
        assert_eq!(a.read_p::<i32>("OUTPUT"), None);
        let errs = a.complete().unwrap_err();
        assert_eq!(
            errs[0].message,
            "'sw :: Switch': OUTPUT: expected an integer, found 'foo'"
        );
    }

    #[test]
    fn unknown_keyword_suggests() {
        let mut a = Args::parse_str("s :: InfiniteSource", "LIMT 5");
        a.read::<u64>("LIMIT");
        let errs = a.complete().unwrap_err();
        assert_eq!(errs[0].message, "'s :: InfiniteSource': unknown argument 'LIMT'");
        assert_eq!(errs[0].help.as_deref(), Some("did you mean 'LIMIT'?"));
    }

    #[test]
    fn missing_and_extra() {
        let mut a = Args::parse_str("q :: X", "");
        assert_eq!(a.read_mp::<u32>("N"), None);
        assert_eq!(
            a.complete().unwrap_err()[0].message,
            "'q :: X': missing mandatory argument N"
        );
        let mut a = Args::parse_str("q :: X", "1, 2");
        a.read_p::<u32>("N");
        assert_eq!(a.complete().unwrap_err()[0].message, "'q :: X': too many arguments");
    }
}
