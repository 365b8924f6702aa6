//! The audit log: one JSON object per line for every control write,
//! accepted or refused, appended and fsync'd before the client's reply.

use crate::control::Peer;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
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
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
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
            "old": e.old,
            "new": e.new,
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
                v["error"] = json!(msg);
            }
        }
        if let Some((who, why)) = e.actor {
            v["actor"] = json!(who);
            v["reason"] = json!(why);
        }
        let mut line = v.to_string();
        line.push('\n');
        let mut f = self.file.lock().expect("audit lock");
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }
}
