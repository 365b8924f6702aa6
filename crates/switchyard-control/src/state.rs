//! Durable state of persistent handlers (switch positions, weights): an
//! append-only journal, fsync'd once per accepted write, is the source of
//! truth; the state file is its compaction.
//!
//! `FILE` holds every handler's value and generation as of the last
//! compaction; `FILE.journal` holds one JSON line per write since then.
//! Loading reads the file and replays the journal over it. A write appends
//! its line and syncs it before the write is acknowledged; if the append
//! fails (a full disk) the journal is cut back to where it was, so a
//! partial line never survives to corrupt the next one, and the caller
//! undoes the write. Compaction writes the whole state to a new file
//! (created exclusively under an unpredictable name, synced, renamed over
//! `FILE`, directory synced) and then empties the journal.
//!
//! Generations come from one counter for all handlers, so each write's is
//! larger than any before it. The file records the counter as `floor`,
//! and replaying applies only journal lines above it: after a crash
//! between the compaction's rename and the journal's truncation, lines
//! already in the file are skipped, never replayed over newer values. A
//! handler that a reload removes and a later one adds back starts above
//! every number it ever had, so a compare-and-set prepared before cannot
//! succeed by coincidence.
//!
//! No path is followed through a symbolic link: a link planted at `FILE`,
//! at the journal or at a temporary name makes the open fail instead of
//! making a root router overwrite what the link points to.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub value: String,
    pub generation: u64,
}

/// Generations above this are refused when loading: no real router gets
/// there, and the next write must always have a successor.
pub const MAX_GENERATION: u64 = 1 << 62;

/// Journal lines after which a write also compacts.
const COMPACT_AFTER: usize = 4096;

/// A state file too large to be real is refused rather than read.
const MAX_STATE_BYTES: u64 = 64 << 20;

pub struct StateFile {
    path: PathBuf,
    journal: Mutex<Journal>,
}

#[derive(Default)]
struct Journal {
    file: Option<File>,
    /// Its length: where the next line starts, and where a failed append
    /// cuts it back to.
    len: u64,
    lines: usize,
    /// A failed append could not be cut back: nothing more is appended
    /// (every write is refused) until a compaction rewrites everything.
    damaged: bool,
}

/// Where the journal was before an append, to take the line back.
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

/// Opens `path` without following a symbolic link, with errors that say
/// so and name the path.
pub(crate) fn open_nofollow(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    refuse_link(path)?;
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!("{} is a symbolic link; refusing to follow it", path.display()),
                )
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })
}

/// A clear error for a path that is a symbolic link (the open that
/// follows uses O_NOFOLLOW too, so a link planted in between fails there).
fn refuse_link(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link; refusing to follow it", path.display()),
        )),
        _ => Ok(()),
    }
}

/// Reads a whole file without following a link, up to `max` bytes.
fn read_nofollow(path: &Path, max: u64) -> io::Result<Option<String>> {
    let mut f = match open_nofollow(OpenOptions::new().read(true), path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    (&mut f).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: larger than {max} bytes", path.display()),
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{}: not UTF-8", path.display())))
}

/// 64 unpredictable bits, for temporary names.
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// One handler's entry, strictly: `{"value": STRING, "generation": N}`.
fn saved_of(name: &str, v: &Value) -> Result<Saved, String> {
    let value = v
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("'{name}': \"value\" is not a string"))?;
    let generation = v
        .get("generation")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("'{name}': \"generation\" is not a non-negative integer"))?;
    if generation > MAX_GENERATION {
        return Err(format!(
            "'{name}': generation {generation} is beyond {MAX_GENERATION} (a damaged or forged file)"
        ));
    }
    Ok(Saved {
        value: value.to_string(),
        generation,
    })
}

/// Saved handlers, and the generation counter as of the last write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub handlers: BTreeMap<String, Saved>,
    /// No generation given so far is above it; the next is above it.
    pub floor: u64,
}

/// Parses a state file's text: `{"version": 1, "floor": N, "handlers":
/// {NAME: ENTRY}}` (`floor` optional: files before it had none), nothing
/// else. Pure, for tests and the fuzzer.
pub fn parse_state(text: &str) -> Result<State, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not a state file: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("not a state file: expected a JSON object with \"version\" and \"handlers\"")?;
    match obj.get("version").and_then(Value::as_u64) {
        Some(1) => {}
        Some(n) => return Err(format!("state file version {n} is not supported (expected 1)")),
        None => return Err("not a state file: no \"version\"".into()),
    }
    let handlers = obj
        .get("handlers")
        .and_then(Value::as_object)
        .ok_or("not a state file: \"handlers\" is not an object")?;
    let mut out = BTreeMap::new();
    for (name, h) in handlers {
        out.insert(
            name.clone(),
            saved_of(name, h).map_err(|e| format!("bad state file entry {e}"))?,
        );
    }
    let floor = match obj.get("floor") {
        None => 0,
        Some(f) => f
            .as_u64()
            .filter(|f| *f <= MAX_GENERATION)
            .ok_or_else(|| format!("not a state file: \"floor\" is not an integer up to {MAX_GENERATION}"))?,
    };
    let floor = out.values().map(|s| s.generation).fold(floor, u64::max);
    Ok(State { handlers: out, floor })
}

/// A state file's text.
pub fn render_state(state: &State) -> String {
    let map: serde_json::Map<String, Value> = state
        .handlers
        .iter()
        .map(|(k, s)| (k.clone(), json!({"value": s.value, "generation": s.generation})))
        .collect();
    let v = json!({"version": 1, "floor": state.floor, "handlers": map});
    serde_json::to_string_pretty(&v).expect("JSON values render") + "\n"
}

/// Replays journal text over `state`: the lines above its floor (older
/// ones are in the file already), raising the floor. A last line without
/// its newline is a write that never completed (never acknowledged):
/// ignored. Any other bad line is an error. Returns the lines applied.
pub fn replay_journal(text: &str, state: &mut State) -> Result<usize, String> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut n = 0;
    for (k, line) in complete.lines().enumerate() {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("journal line {}: {e}", k + 1))?;
        let name = v
            .get("handler")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("journal line {}: no \"handler\"", k + 1))?;
        let saved = saved_of(name, &v).map_err(|e| format!("journal line {}: {e}", k + 1))?;
        if saved.generation <= state.floor {
            continue;
        }
        state.floor = saved.generation;
        state.handlers.insert(name.to_string(), saved);
        n += 1;
    }
    Ok(n)
}

impl StateFile {
    pub fn new(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
            journal: Mutex::new(Journal::default()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn journal_path(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".journal");
        PathBuf::from(p)
    }

    fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// The saved handlers: the file, then the journal replayed over it. An
    /// absent file is an empty state; a file of the wrong shape, a bad
    /// entry or a generation out of range is an error (starting over
    /// silently would undo a rollback).
    pub fn load(&self) -> Result<State, String> {
        let where_ = |e: String| format!("{}: {e}", self.path.display());
        let mut state = match read_nofollow(&self.path, MAX_STATE_BYTES).map_err(|e| e.to_string())? {
            Some(text) => parse_state(&text).map_err(where_)?,
            None => State::default(),
        };
        let jpath = self.journal_path();
        if let Some(text) = read_nofollow(&jpath, MAX_STATE_BYTES).map_err(|e| e.to_string())? {
            replay_journal(&text, &mut state).map_err(|e| format!("{}: {e}", jpath.display()))?;
        }
        Ok(state)
    }

    /// Moves a bad state file and its journal aside (`FILE.bad.SECONDS`),
    /// for a start that was told to go on without them.
    pub fn set_aside(&self) -> io::Result<Vec<PathBuf>> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut moved = Vec::new();
        for p in [self.path.clone(), self.journal_path()] {
            let mut to = p.as_os_str().to_owned();
            to.push(format!(".bad.{stamp}"));
            match std::fs::rename(&p, &to) {
                Ok(()) => moved.push(PathBuf::from(to)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// Appends one write to the journal and syncs it. On failure nothing
    /// of the line stays in the journal (it is cut back) and the caller
    /// must undo the write. Returns where the line starts, for [`undo`].
    ///
    /// [`undo`]: Self::undo
    pub fn record(&self, handler: &str, saved: &Saved) -> io::Result<Mark> {
        let mut j = self.journal.lock().expect("journal lock");
        if j.damaged {
            return Err(io::Error::other(
                "the state journal could not be repaired after an earlier failure",
            ));
        }
        if j.file.is_none() {
            let f = open_nofollow(
                OpenOptions::new().create(true).append(true).mode(0o600),
                &self.journal_path(),
            )?;
            j.len = f.metadata()?.len();
            j.file = Some(f);
        }
        let mut line = json!({"handler": handler, "value": saved.value, "generation": saved.generation}).to_string();
        line.push('\n');
        let mark = j.len;
        let f = j.file.as_mut().expect("opened above");
        let written = f.write_all(line.as_bytes()).and_then(|()| f.sync_data());
        match written {
            Ok(()) => {
                j.len += line.len() as u64;
                j.lines += 1;
                Ok(Mark(mark))
            }
            Err(e) => {
                if f.set_len(mark).and_then(|()| f.sync_data()).is_err() {
                    j.damaged = true;
                }
                Err(e)
            }
        }
    }

    /// Takes back the line appended at `mark` (the write it recorded is
    /// being undone).
    pub fn undo(&self, mark: Mark) -> io::Result<()> {
        let mut j = self.journal.lock().expect("journal lock");
        let Some(f) = j.file.as_mut() else { return Ok(()) };
        let cut = f.set_len(mark.0).and_then(|()| f.sync_data());
        match cut {
            Ok(()) => {
                j.len = mark.0;
                j.lines = j.lines.saturating_sub(1);
                Ok(())
            }
            Err(e) => {
                j.damaged = true;
                Err(e)
            }
        }
    }

    /// Whether the journal has grown enough to compact.
    pub fn wants_compaction(&self) -> bool {
        let j = self.journal.lock().expect("journal lock");
        j.lines >= COMPACT_AFTER || j.damaged
    }

    /// Writes the whole state as the new file and empties the journal.
    pub fn save(&self, state: &State) -> io::Result<()> {
        let text = render_state(state);
        let dir = self.dir();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // O_EXCL on a name nobody can guess: a planted file or link at a
        // predictable name cannot be made to receive the state.
        let (tmp, mut f) = loop {
            let tmp = dir.join(format!(".{name}.{:016x}.tmp", random_u64()));
            match open_nofollow(OpenOptions::new().write(true).create_new(true).mode(0o600), &tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &self.path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(dir)?.sync_all()?;
        // Everything is in the file now: the journal starts over.
        let mut j = self.journal.lock().expect("journal lock");
        let f = match j.file.take() {
            Some(f) => f,
            None => open_nofollow(
                OpenOptions::new().create(true).append(true).mode(0o600),
                &self.journal_path(),
            )?,
        };
        f.set_len(0)?;
        f.sync_all()?;
        j.file = Some(f);
        j.len = 0;
        j.lines = 0;
        j.damaged = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sy-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn one(value: &str, generation: u64) -> Saved {
        Saved {
            value: value.into(),
            generation,
        }
    }

    #[test]
    fn round_trip_journal_and_compaction() {
        let dir = scratch("rt");
        let f = StateFile::new(&dir.join("state.json"));
        assert!(f.load().unwrap().handlers.is_empty(), "absent file is empty state");
        f.record("sel.switch", &one("1", 1)).unwrap();
        f.record("sel.switch", &one("0", 2)).unwrap();
        f.record("c.weights", &one("1 9", 3)).unwrap();
        let loaded = f.load().unwrap();
        assert_eq!(loaded.handlers["sel.switch"], one("0", 2));
        assert_eq!((loaded.handlers.len(), loaded.floor), (2, 3));
        f.save(&loaded).unwrap();
        assert_eq!(std::fs::metadata(f.journal_path()).unwrap().len(), 0);
        assert_eq!(f.load().unwrap(), loaded);
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0, "temporary file renamed away");
        // An undone write leaves no line behind.
        let mark = f.record("sel.switch", &one("1", 4)).unwrap();
        f.undo(mark).unwrap();
        assert_eq!(f.load().unwrap().handlers["sel.switch"], one("0", 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_a_bad_middle_line_is_an_error() {
        let mut s = State::default();
        let text = "{\"handler\":\"a.switch\",\"value\":\"1\",\"generation\":1}\n{\"handler\":\"a.sw";
        assert_eq!(replay_journal(text, &mut s).unwrap(), 1);
        assert_eq!(s.handlers["a.switch"], one("1", 1));
        let text = "{\"handler\":\"a.sw\n{\"handler\":\"a.switch\",\"value\":\"1\",\"generation\":1}\n";
        assert!(replay_journal(text, &mut s).unwrap_err().contains("journal line 1"));
    }

    #[test]
    fn lines_a_compaction_already_holds_are_not_replayed_over_it() {
        // The file was compacted at floor 5 with the switch at 0 (a reload
        // set it, generation unchanged); the journal still has older lines.
        let mut s =
            parse_state("{\"version\":1,\"floor\":5,\"handlers\":{\"a.switch\":{\"value\":\"0\",\"generation\":4}}}")
                .unwrap();
        let old = "{\"handler\":\"a.switch\",\"value\":\"1\",\"generation\":4}\n\
                   {\"handler\":\"b.switch\",\"value\":\"1\",\"generation\":5}\n\
                   {\"handler\":\"a.switch\",\"value\":\"-1\",\"generation\":6}\n";
        assert_eq!(replay_journal(old, &mut s).unwrap(), 1);
        assert_eq!(s.handlers["a.switch"], one("-1", 6));
        assert!(!s.handlers.contains_key("b.switch"), "a removed handler stays removed");
        assert_eq!(s.floor, 6);
    }

    #[test]
    fn state_files_of_the_wrong_shape_are_errors() {
        for (text, why) in [
            ("[1,2,3]", "expected a JSON object"),
            ("{not json", "not a state file"),
            ("{\"handlers\":{}}", "no \"version\""),
            ("{\"version\":2,\"handlers\":{}}", "version 2 is not supported"),
            ("{\"version\":1,\"handlers\":[]}", "\"handlers\" is not an object"),
            (
                "{\"version\":1,\"handlers\":{\"s.switch\":{\"value\":1,\"generation\":1}}}",
                "\"value\" is not a string",
            ),
            (
                "{\"version\":1,\"handlers\":{\"s.switch\":{\"value\":\"1\",\"generation\":18446744073709551615}}}",
                "beyond",
            ),
        ] {
            let e = parse_state(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
        assert!(parse_state("{\"version\":1,\"handlers\":{}}")
            .unwrap()
            .handlers
            .is_empty());
    }

    #[test]
    fn links_are_not_followed() {
        let dir = scratch("link");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("state.json.journal")).unwrap();
        let f = StateFile::new(&dir.join("state.json"));
        let e = f.record("s.switch", &one("1", 1)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::os::unix::fs::symlink(&victim, dir.join("state.json")).unwrap();
        assert!(f.load().unwrap_err().contains("symbolic link"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
