//! Bounds on what one configuration text may make the router do.
//!
//! A few bytes of config can ask for a lot: a hundred million ports, a
//! compound that doubles its argument at every level, braces nested
//! thousands deep, a library that is a device or a FIFO. Every such
//! request meets one of these limits and becomes a config error that names
//! the limit, before anything is allocated or started. The defaults are
//! generous for real configurations; `--limit NAME=N` raises any of them.

use std::fmt;

/// The limits a configuration is checked against. Each is inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `nesting`: how deep braces, groups and compounds may nest (64).
    pub nesting: usize,
    /// `elements`: elements after flattening (100,000).
    pub elements: usize,
    /// `config_bytes`: bytes of all element arguments after `$variable`
    /// substitution (16 MiB).
    pub config_bytes: usize,
    /// `library_bytes`: size of one `require(library FILE)` file (4 MiB).
    pub library_bytes: u64,
    /// `ports`: input or output ports of one element (4,096).
    pub ports: usize,
    /// `chain`: elements one batch may pass through by direct calls in one
    /// thread, the longest push or pull path between thread boundaries
    /// (10,000). Router threads get a stack sized for it.
    pub chain: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nesting: 64,
            elements: 100_000,
            config_bytes: 16 << 20,
            library_bytes: 4 << 20,
            ports: 4096,
            chain: 10_000,
        }
    }
}

/// Names, in the order `--limit` documents them.
pub const LIMIT_NAMES: &[&str] = &["nesting", "elements", "config_bytes", "library_bytes", "ports", "chain"];

impl Limits {
    /// Applies one `NAME=N` setting (`elements=500000`).
    pub fn set(&mut self, setting: &str) -> Result<(), String> {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("'{setting}': expected NAME=N (one of {})", LIMIT_NAMES.join(", ")))?;
        let n: u64 = value
            .trim()
            .parse()
            .map_err(|_| format!("'{setting}': '{value}' is not a non-negative integer"))?;
        let as_usize = || usize::try_from(n).map_err(|_| format!("'{setting}': {n} is too large"));
        match name.trim() {
            "nesting" => self.nesting = as_usize()?,
            "elements" => self.elements = as_usize()?,
            "config_bytes" => self.config_bytes = as_usize()?,
            "library_bytes" => self.library_bytes = n,
            "ports" => self.ports = as_usize()?,
            "chain" => self.chain = as_usize()?,
            other => return Err(format!("unknown limit '{other}' (one of {})", LIMIT_NAMES.join(", "))),
        }
        Ok(())
    }
}

/// The wording every limit error ends with, so an operator knows which
/// knob to turn: `(limit elements=100000; raise with --limit elements=N)`.
pub struct Exceeded<'a>(pub &'a str, pub u64);

impl fmt::Display for Exceeded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(limit {}={}; raise with --limit {}=N)", self.0, self.1, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_errors_name_the_choices() {
        let mut l = Limits::default();
        l.set("elements=500000").unwrap();
        l.set("library_bytes = 10").unwrap();
        assert_eq!((l.elements, l.library_bytes), (500_000, 10));
        assert!(l.set("elemnts=1").unwrap_err().contains("one of nesting"));
        assert!(l.set("ports").unwrap_err().contains("NAME=N"));
        assert!(l.set("ports=-1").unwrap_err().contains("non-negative"));
        assert_eq!(
            Exceeded("ports", 4096).to_string(),
            "(limit ports=4096; raise with --limit ports=N)"
        );
    }
}
