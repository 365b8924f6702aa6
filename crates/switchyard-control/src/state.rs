//! The state file: the values and generations of persistent handlers
//! (switch positions...), saved atomically on every accepted write and
//! restored at start, so a rollback survives a crash or a reboot.
//!
//! Written as a temporary file in the same directory, fsync'd, renamed
//! over the old one, and the directory fsync'd: after a crash the file is
//! either the old state or the new one, never a torn mix.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub value: String,
    pub generation: u64,
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved handlers; an absent file is an empty state, a corrupt one
    /// an error (starting over silently would undo a rollback).
    pub fn load(&self) -> Result<BTreeMap<String, Saved>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a state file: {e}", self.path.display()))?;
        let mut out = BTreeMap::new();
        if let Some(map) = v.get("handlers").and_then(Value::as_object) {
            for (name, h) in map {
                let value = h.get("value").and_then(Value::as_str).unwrap_or_default().to_string();
                let generation = h.get("generation").and_then(Value::as_u64).unwrap_or(0);
                out.insert(name.clone(), Saved { value, generation });
            }
        }
        Ok(out)
    }

    pub fn save(&self, handlers: &BTreeMap<String, Saved>) -> std::io::Result<()> {
        let map: serde_json::Map<String, Value> = handlers
            .iter()
            .map(|(k, s)| (k.clone(), json!({"value": s.value, "generation": s.generation})))
            .collect();
        let text = serde_json::to_string_pretty(&json!({"version": 1, "handlers": map}))? + "\n";
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomic_replace() {
        let dir = std::env::temp_dir().join(format!("sy-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = StateFile::new(&dir.join("state.json"));
        assert!(f.load().unwrap().is_empty(), "absent file is empty state");
        let mut m = BTreeMap::new();
        m.insert(
            "sel.switch".to_string(),
            Saved {
                value: "1".into(),
                generation: 3,
            },
        );
        f.save(&m).unwrap();
        assert_eq!(f.load().unwrap(), m);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temporary file renamed away");
        std::fs::write(dir.join("state.json"), "{not json").unwrap();
        assert!(f.load().unwrap_err().contains("not a state file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
