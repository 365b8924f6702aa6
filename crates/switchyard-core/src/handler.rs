//! Handlers: how the outside world reads and steers elements, in-process.
//! The control socket exposes exactly this interface.
//!
//! A handler is a name and closures over the element's shared state
//! (atomics), so reading or writing one never touches the thread that runs
//! the element and never blocks it.

use std::fmt;
use std::sync::Arc;

pub type ReadFn = Arc<dyn Fn() -> String + Send + Sync>;
pub type WriteFn = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
/// A read that takes a parameter (`READ rt.lookup 10.0.0.1`).
pub type ParamReadFn = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

#[derive(Clone)]
pub struct Handler {
    pub name: String,
    pub read: Option<ReadFn>,
    pub write: Option<WriteFn>,
    /// Read with a parameter (Click's read handlers with arguments).
    pub read_param: Option<ParamReadFn>,
    /// Kept across restarts and reloads (switch positions, weights).
    pub persistent: bool,
    /// A write here changes the persistent value of this other handler of
    /// the same element, which is what the state file keeps: a route
    /// table's `add` and `remove` change `table`.
    pub persists_as: Option<String>,
    /// Stands for every handler name the element does not have (a Script
    /// of TYPE PROXY): reads and writes get the name asked for as their
    /// first word.
    pub proxy: bool,
    /// Validates a value without writing it (a fleet's prepare phase
    /// asks every router whether it could apply a change before any
    /// router does). None: the handler has no check of its own.
    pub check: Option<WriteFn>,
    /// How the values of the copies of an element make the one value a
    /// read gives, when the pipeline runs as several (`Copies(N)`).
    pub merge: Merge,
}

/// How a read of an element that runs as several copies combines the
/// copies' values ([`crate::copies`]). Values are compared and combined
/// token by token (words between blanks), the blanks of copy 0's value
/// kept: `50 20` and `5 2` sum to `55 22`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// [`Same`](Merge::Same) for a setting (a writable or persistent
    /// handler: every write reaches every copy), else
    /// [`Sum`](Merge::Sum).
    Auto,
    /// The value every copy has; where they differ (a setting configured
    /// per copy with `$COPY`), one line per copy: `#k value`.
    Same,
    /// Numbers summed (counts, rates); text equal in every copy kept;
    /// else one line per copy.
    Sum,
    /// The highest number (high-water marks, the worst copy's ratio);
    /// else one line per copy.
    Max,
    /// `true` only if every copy says `true` (`drained`).
    All,
    /// The first copy's value that is not empty: a lookup of state only
    /// one copy holds (a flow's NAT mapping).
    First,
    /// Every copy's value, in copy order, space-separated (one per line
    /// if any has blanks of its own).
    List,
}

impl Handler {
    pub fn read_only(name: &str, f: impl Fn() -> String + Send + Sync + 'static) -> Handler {
        Handler {
            name: name.to_string(),
            read: Some(Arc::new(f)),
            write: None,
            read_param: None,
            persistent: false,
            persists_as: None,
            proxy: false,
            check: None,
            merge: Merge::Auto,
        }
    }

    pub fn write_only(name: &str, f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Handler {
        Handler {
            name: name.to_string(),
            read: None,
            write: Some(Arc::new(f)),
            read_param: None,
            persistent: false,
            persists_as: None,
            proxy: false,
            check: None,
            merge: Merge::Auto,
        }
    }

    pub fn read_write(
        name: &str,
        r: impl Fn() -> String + Send + Sync + 'static,
        w: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Handler {
        Handler {
            name: name.to_string(),
            read: Some(Arc::new(r)),
            write: Some(Arc::new(w)),
            read_param: None,
            persistent: false,
            persists_as: None,
            proxy: false,
            check: None,
            merge: Merge::Auto,
        }
    }

    /// A handler read with a parameter, such as a route table's `lookup`:
    /// an empty parameter reaches `f` too, which may refuse it.
    pub fn read_with_param(name: &str, f: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static) -> Handler {
        Handler {
            name: name.to_string(),
            read: None,
            write: None,
            read_param: Some(Arc::new(f)),
            persistent: false,
            persists_as: None,
            proxy: false,
            check: None,
            merge: Merge::Auto,
        }
    }

    /// The catch-all handler of an element (Click's handler proxy): `read`
    /// gets `NAME PARAM`, `write` gets `NAME VALUE`, for any name the
    /// element has no handler of its own for.
    pub fn proxy(
        read: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
        write: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Handler {
        Handler {
            write: Some(Arc::new(write)),
            proxy: true,
            ..Handler::read_with_param("*", read)
        }
    }

    /// True if the handler can be read, with or without a parameter.
    pub fn readable(&self) -> bool {
        self.read.is_some() || self.read_param.is_some()
    }

    /// Reads with `param` (empty for none): a handler that takes no
    /// parameter refuses one, one that takes a parameter gets it, trimmed.
    /// `None` if the handler cannot be read at all.
    pub fn read_with(&self, param: &str) -> Option<Result<String, String>> {
        let param = param.trim();
        match (&self.read, &self.read_param) {
            (Some(read), _) if param.is_empty() => Some(Ok(read())),
            (_, Some(read)) => Some(read(param)),
            (Some(_), None) => Some(Err("this handler takes no parameters".into())),
            (None, None) => None,
        }
    }

    /// Marks a write handler whose effect is kept by persisting `other`
    /// (a persistent read-write handler of the same element) after each
    /// accepted write.
    pub fn persists_as(mut self, other: &str) -> Handler {
        self.persists_as = Some(other.to_string());
        self
    }

    /// Sets how copies' values combine ([`Merge`]).
    pub fn merged(mut self, merge: Merge) -> Handler {
        self.merge = merge;
        self
    }

    pub fn persistent(mut self) -> Handler {
        self.persistent = true;
        self
    }

    /// Sets the check [`check_value`](Self::check_value) runs: the write's
    /// validation, without its effect.
    pub fn checked(mut self, f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Handler {
        self.check = Some(Arc::new(f));
        self
    }

    /// Whether `value` would be accepted by a write, without writing it:
    /// an error if the handler is not writable or its check refuses.
    /// Handlers without a check accept any value here.
    pub fn check_value(&self, value: &str) -> Result<(), String> {
        if self.write.is_none() {
            return Err("not writable".into());
        }
        self.check.as_ref().map_or(Ok(()), |c| c(value))
    }

    /// `r`, `w` or `rw`, as Click's `handlers` handler lists them.
    pub fn mode(&self) -> &'static str {
        match (self.readable(), self.write.is_some()) {
            (true, true) => "rw",
            (true, false) => "r",
            (false, true) => "w",
            (false, false) => "",
        }
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handler({} {})", self.name, self.mode())
    }
}

/// Why a handler call failed; the control socket maps these to Click's
/// reply codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerError {
    /// No element of that name (510).
    NoElement(String),
    /// The element has no such handler (511).
    NoHandler(String),
    /// Read of a write-only handler, or the reverse (530).
    NotReadable(String),
    NotWritable(String),
    /// The handler refused the value (520).
    Refused {
        handler: String,
        message: String,
    },
    /// A read failed: a bad parameter, or a parameter given to a handler
    /// that takes none (520).
    ReadFailed {
        handler: String,
        message: String,
    },
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerError::NoElement(e) => write!(f, "No element named '{e}'"),
            HandlerError::NoHandler(h) => write!(f, "No handler named '{h}'"),
            HandlerError::NotReadable(h) => write!(f, "Handler '{h}' write-only"),
            HandlerError::NotWritable(h) => write!(f, "Handler '{h}' read-only"),
            HandlerError::Refused { handler, message } => {
                write!(f, "Write handler '{handler}' error: {message}")
            }
            HandlerError::ReadFailed { handler, message } => {
                write!(f, "Read handler '{handler}' error: {message}")
            }
        }
    }
}

impl std::error::Error for HandlerError {}

/// True if writing `value` to `handler` can only move traffic back to the
/// old branch: `X.switch 0`, or `X.weights N 0 ...` with N > 0. What an
/// automatic writer (a rollback gate, an alert rule) may do: a faulty one
/// must not be able to promote a release.
pub fn moves_traffic_back(handler: &str, value: &str) -> bool {
    match handler.rsplit('.').next().unwrap_or("") {
        "switch" => value.trim() == "0",
        "weights" => {
            let w: Vec<&str> = value.split_whitespace().collect();
            w.first().is_some_and(|f| f.parse::<u32>().is_ok_and(|v| v > 0))
                && w[1..].iter().all(|x| x.parse::<u32>() == Ok(0))
        }
        _ => false,
    }
}

/// Parses an integer handler value and checks it against `range`, for
/// switch-like write handlers (an out-of-range switch is an error, never a
/// silent blackhole).
pub fn parse_in_range(value: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("expected an integer, found '{}'", value.trim()))?;
    if !range.contains(&v) {
        return Err(format!(
            "{v} out of range: expected {} to {}",
            range.start(),
            range.end()
        ));
    }
    Ok(v)
}
