//! The audit log: one JSON object per line for every control write,
//! accepted or refused, appended and fsync'd before the client's reply.
//!
//! A line is all or nothing: an append that fails (a full disk) is cut
//! back to where it started, so a partial line never glues onto the next
//! one, and the write it records is not acknowledged as OK. The file is
//! opened without following a symbolic link. Values are recorded up to
//! [`MAX_VALUE`] bytes (longer ones by length and hash), so one refused
//! megabyte write does not become a megabyte line.

use crate::control::Peer;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes of a written value the log keeps.
pub const MAX_VALUE: usize = 1024;

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Open>,
}

struct Open {
    file: File,
    /// Where the next line starts (and a failed one is cut back to).
    len: u64,
}

/// A value as the log records it: itself if short, else its first bytes
/// and a note of its length and hash.
fn recorded(value: &str) -> String {
    if value.len() <= MAX_VALUE {
        return value.to_string();
    }
    let mut cut = MAX_VALUE;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}... ({} bytes, hash {})",
        &value[..cut],
        value.len(),
        crate::control::config_hash(value)
    )
}

/// One audited write.
pub struct Entry<'a> {
    pub peer: &'a Peer,
    pub handler: &'a str,
    pub old: Option<&'a str>,
    pub new: &'a str,
    /// `Ok(generation after the write)` or the error text.
    pub result: Result<Option<u64>, String>,
    /// Who wrote besides a control client (`"gate"` later), with a reason.
    pub actor: Option<(&'a str, &'a str)>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = crate::state::open_nofollow(OpenOptions::new().create(true).append(true).mode(0o600), path)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let len = file.metadata()?.len();
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(Open { file, len }),
        })
    }

    /// The last `n` lines, read from the end of the file (at most 256 KiB
    /// of it), however long the log has grown.
    pub fn tail(&self, n: usize) -> String {
        // Never through a link planted where the log was.
        let Ok(mut f) = crate::state::open_nofollow(OpenOptions::new().read(true), &self.path) else {
            return String::new();
        };
        let len = f.metadata().map_or(0, |m| m.len());
        let start = len.saturating_sub(256 << 10);
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err() || f.take(256 << 10).read_to_end(&mut bytes).is_err() {
            return String::new();
        }
        let text = String::from_utf8_lossy(&bytes);
        // From the middle of the file, the first line may be partial.
        let whole = if start > 0 {
            text.split_once('\n').map_or("", |(_, rest)| rest)
        } else {
            &text
        };
        let lines: Vec<&str> = whole.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and syncs one line; an error here is returned so the write
    /// can be reported as not durably audited.
    pub fn append(&self, e: &Entry) -> std::io::Result<()> {
        let mut v = json!({
            "time": crate::rfc3339(std::time::SystemTime::now()),
            "peer": e.peer.to_json(),
            "handler": e.handler,
            "old": e.old.map(recorded),
            "new": recorded(e.new),
        });
        match &e.result {
            Ok(generation) => {
                v["result"] = json!("ok");
                if let Some(g) = generation {
                    v["generation"] = json!(g);
                }
            }
            Err(msg) => {
                v["result"] = json!("error");
                v["error"] = json!(recorded(msg));
            }
        }
        if let Some((who, why)) = e.actor {
            v["actor"] = json!(who);
            v["reason"] = json!(why);
        }
        let mut line = v.to_string();
        line.push('\n');
        let mut open = self.file.lock().expect("audit lock");
        let start = open.len;
        let written = open
            .file
            .write_all(line.as_bytes())
            .and_then(|()| open.file.sync_data());
        match written {
            Ok(()) => {
                open.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                // No partial line: cut back, so the next entry starts clean.
                if let Err(cut) = open.file.set_len(start).and_then(|()| open.file.sync_data()) {
                    tracing::error!(error = %cut, "audit log: a partial line could not be cut back");
                    // Whatever is there, the next line starts on its own.
                    open.len = open.file.metadata().map_or(start, |m| m.len());
                    if open.file.write_all(b"\n").is_ok() {
                        open.len += 1;
                    }
                }
                Err(e)
            }
        }
    }
}
