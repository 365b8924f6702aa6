//! Bearer tokens for the HTTP API: a file of named tokens, each with a
//! scope. A line is `NAME SCOPE SECRET` (`#` starts a comment); SCOPE is
//! `read` or `write` (write includes read). The file must be readable by
//! its owner alone, and that owner must be the router's user: a token
//! others can read is no secret. Secrets are compared in constant time.

use std::path::Path;

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
}

/// A token's name (recorded in the audit log) and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub scope: Scope,
}

struct Entry {
    grant: Grant,
    secret: Vec<u8>,
}

/// The tokens of one file.
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Names and scopes only: a secret never reaches a log.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| &e.grant)).finish()
    }
}

/// Shortest secret accepted: guessing must not be a plan.
pub const MIN_SECRET: usize = 16;

impl Tokens {
    /// Reads and checks `path` (its permissions, then every line).
    pub fn from_file(path: &Path) -> Result<Tokens, String> {
        use std::os::unix::fs::MetadataExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{shown}: readable by others (mode {:o}); make it 0600",
                meta.mode() & 0o777
            ));
        }
        // The router's user is the owner of /proc/self (this crate has
        // no unsafe code to call geteuid with).
        let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if me.is_some_and(|uid| uid != meta.uid()) {
            return Err(format!("{shown}: owned by uid {}, not this user", meta.uid()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        Tokens::parse(&text).map_err(|e| format!("{shown}: {e}"))
    }

    /// Parses the file's text; every problem names its line.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let [name, scope, secret] = words[..] else {
                return Err(format!("line {}: expected NAME SCOPE SECRET", i + 1));
            };
            let scope = match scope {
                "read" => Scope::Read,
                "write" => Scope::Write,
                other => return Err(format!("line {}: scope '{other}': expected read or write", i + 1)),
            };
            if secret.len() < MIN_SECRET {
                return Err(format!(
                    "line {}: the secret of '{name}' is shorter than {MIN_SECRET} characters",
                    i + 1
                ));
            }
            if entries.iter().any(|e| e.grant.name == name) {
                return Err(format!("line {}: '{name}' is named twice", i + 1));
            }
            entries.push(Entry {
                grant: Grant {
                    name: name.to_string(),
                    scope,
                },
                secret: secret.as_bytes().to_vec(),
            });
        }
        if entries.is_empty() {
            return Err("no tokens".into());
        }
        Ok(Tokens { entries })
    }

    /// The grant of `secret`, comparing it with every token in constant
    /// time (the time depends on the number of tokens, not on where a
    /// guess goes wrong).
    pub fn check(&self, secret: &str) -> Option<Grant> {
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(e.secret.as_slice(), secret.as_bytes()) {
                found = Some(e.grant.clone());
            }
        }
        found
    }
}

/// True if `a == b`, in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_scope_and_secret() {
        let t = Tokens::parse("# ops\nalice write 0123456789abcdef0123\nbob read fedcba9876543210fedc # dashboard\n")
            .unwrap();
        assert_eq!(
            t.check("0123456789abcdef0123"),
            Some(Grant {
                name: "alice".into(),
                scope: Scope::Write
            })
        );
        assert_eq!(t.check("fedcba9876543210fedc").map(|g| g.scope), Some(Scope::Read));
        assert_eq!(t.check("0123456789abcdef012"), None, "a prefix is not the token");
        assert_eq!(t.check(""), None);
        assert!(Tokens::parse("a admin 0123456789abcdef")
            .unwrap_err()
            .contains("line 1: scope 'admin'"));
        assert!(Tokens::parse("a read short").unwrap_err().contains("shorter than 16"));
        assert!(Tokens::parse("a read 0123456789abcdef\na write 0123456789abcdeX")
            .unwrap_err()
            .contains("line 2: 'a' is named twice"));
        assert!(Tokens::parse("# nothing\n").is_err());
    }

    #[test]
    fn equality_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
