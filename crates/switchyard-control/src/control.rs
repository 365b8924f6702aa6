//! Requests applied to the router's handlers, with the audit log, the
//! state file and per-handler generations kept around every write.

use crate::audit::{AuditLog, Entry};
use crate::protocol::{code, help, split_generation, Reply, Request};
use crate::state::{Saved, State, StateFile};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use switchyard_core::{HandlerError, HandlerTable};

/// Who sent a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
    /// A TCP peer's address; or a name such as `"cli"` for in-process writers.
    pub addr: Option<String>,
}

impl Peer {
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({});
        if let Some(u) = self.uid {
            v["uid"] = json!(u);
        }
        if let Some(p) = self.pid {
            v["pid"] = json!(p);
        }
        if let Some(a) = &self.addr {
            v["addr"] = json!(a);
        }
        v
    }
}

pub struct Control {
    /// Replaced as a whole by a hot reload.
    table: std::sync::RwLock<Arc<HandlerTable>>,
    /// Where reload requests go (the thread that owns the router).
    reloads: Mutex<Option<crossbeam_channel::Sender<ReloadRequest>>>,
    /// The configuration before the last accepted reload.
    previous_config: Mutex<Option<String>>,
    /// Configurations loaded: 1, plus one per accepted reload.
    config_generation: std::sync::atomic::AtomicU64,
    audit: Option<AuditLog>,
    state: Option<StateFile>,
    /// Persistent handlers' values and generations, in write order: the
    /// lock also serialises writes, so audit and state agree.
    saved: Mutex<State>,
    /// Writes so far by (actor, result), for metrics.
    writes: Mutex<BTreeMap<(String, String), u64>>,
    /// What the last accepted reload did (`last_reload`, metrics).
    last_reload: Mutex<Option<switchyard_core::ReloadReport>>,
    /// What the last `hotconfig_check` said a reload would do.
    last_check: Mutex<String>,
    /// How long a reload may wait to start ([`START_WITHIN`]).
    start_within: std::time::Duration,
}

fn handler_error(e: HandlerError) -> Reply {
    match e {
        HandlerError::NoElement(_) => Reply::new(code::NO_ELEMENT, e.to_string()),
        HandlerError::NoHandler(_) => Reply::new(code::NO_HANDLER, e.to_string()),
        HandlerError::NotReadable(_) | HandlerError::NotWritable(_) => Reply::new(code::PERMISSION, e.to_string()),
        HandlerError::Refused { handler, message } => Reply::multi(
            code::HANDLER_ERROR,
            vec![format!("Write handler '{handler}' error:"), message],
        ),
        HandlerError::ReadFailed { handler, message } => Reply::multi(
            code::HANDLER_ERROR,
            vec![format!("Read handler '{handler}' error:"), message],
        ),
    }
}

/// A request to replace the running configuration; the answer is the
/// rendered errors if it was refused.
pub struct ReloadRequest {
    /// How diagnostics name the text (`<hotconfig>`, or the file for SIGHUP).
    pub name: String,
    pub text: String,
    /// Only say what the reload would do (the answer's text); change
    /// nothing.
    pub check: bool,
    pub reply: crossbeam_channel::Sender<Result<String, String>>,
    /// Pending, started or cancelled: the asker may give up only while
    /// the reload has not started, and the owner starts it only if the
    /// asker has not given up, decided by one compare-and-swap each.
    state: Arc<std::sync::atomic::AtomicU8>,
}

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

/// How long a reload may wait in line before its asker gives up (it is
/// then cancelled, and nothing changes). Once started, the asker waits
/// for the outcome however long it takes, so the reply and the audit say
/// what happened.
const START_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

impl ReloadRequest {
    /// Claims the request for execution. False: its asker gave up first,
    /// so it must be dropped without effect.
    pub fn start(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.state.compare_exchange(PENDING, STARTED, SeqCst, SeqCst).is_ok()
    }
}

/// A short hash of a configuration text, for the audit log.
pub fn config_hash(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Control {
    pub fn new(table: Arc<HandlerTable>, audit: Option<AuditLog>, state: Option<StateFile>) -> Control {
        Control {
            table: std::sync::RwLock::new(table),
            reloads: Mutex::default(),
            previous_config: Mutex::default(),
            config_generation: std::sync::atomic::AtomicU64::new(1),
            audit,
            state,
            saved: Mutex::new(State::default()),
            writes: Mutex::default(),
            last_reload: Mutex::default(),
            last_check: Mutex::default(),
            start_within: START_WITHIN,
        }
    }

    /// How long a reload may wait for the router to start it before it is
    /// cancelled (60 s; shorter in tests).
    pub fn with_reload_start_timeout(mut self, d: std::time::Duration) -> Control {
        self.start_within = d;
        self
    }

    /// The handler table of the running configuration.
    pub fn table(&self) -> Arc<HandlerTable> {
        self.table.read().expect("table lock").clone()
    }

    /// Installs the table of a reloaded configuration.
    pub fn set_table(&self, table: Arc<HandlerTable>) {
        *self.table.write().expect("table lock") = table;
    }

    /// Lets `hotconfig` writes reach the thread that owns the router.
    pub fn accept_reloads(&self, tx: crossbeam_channel::Sender<ReloadRequest>) {
        *self.reloads.lock().expect("reloads") = Some(tx);
    }

    /// Replaces the running configuration with `text` (all checked first;
    /// refused with the errors otherwise), audited with both hashes.
    pub fn reload(&self, text: &str, peer: &Peer) -> Result<(), String> {
        self.reload_named("<hotconfig>", text, peer)
    }

    /// Asks the thread that owns the router: a reload of `text`, or with
    /// `check` only what it would do.
    fn ask(&self, name: &str, text: &str, check: bool) -> Result<String, String> {
        let Some(tx) = self.reloads.lock().expect("reloads").clone() else {
            return Err("this router does not reload (no configuration file or owner)".to_string());
        };
        let (reply, rx) = crossbeam_channel::bounded(1);
        let state = Arc::new(std::sync::atomic::AtomicU8::new(PENDING));
        tx.send(ReloadRequest {
            name: name.to_string(),
            text: text.to_string(),
            check,
            reply,
            state: state.clone(),
        })
        .map_err(|_| "the router is stopping".to_string())?;
        use std::sync::atomic::Ordering::SeqCst;
        let stopped = |state: &std::sync::atomic::AtomicU8| {
            if state.load(SeqCst) == STARTED {
                "the router stopped during the reload: its outcome is unknown".to_string()
            } else {
                "the router stopped before starting the reload: nothing changed".to_string()
            }
        };
        match rx.recv_timeout(self.start_within) {
            Ok(r) => r,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if state.compare_exchange(PENDING, CANCELLED, SeqCst, SeqCst).is_ok() {
                    Err(format!(
                        "the router did not start the reload within {:?} (busy with another); cancelled: nothing changed",
                        self.start_within
                    ))
                } else {
                    // Started: only its outcome may be reported.
                    rx.recv().unwrap_or_else(|_| Err(stopped(&state)))
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(stopped(&state)),
        }
    }

    /// What reloading `text` would do, kept for `last_check`; nothing
    /// changes (not audited).
    pub fn reload_check(&self, text: &str) -> Result<(), String> {
        let plan = self.ask("<hotconfig>", text, true)?;
        *self.last_check.lock().expect("last check") = plan;
        Ok(())
    }

    /// [`reload`](Self::reload), with the name diagnostics give the text.
    pub fn reload_named(&self, name: &str, text: &str, peer: &Peer) -> Result<(), String> {
        let old = self.table().read("config").unwrap_or_default();
        let mut result = self.ask(name, text, false).map(|_| ());
        if result.is_ok() {
            *self.previous_config.lock().expect("previous") = Some(old.clone());
            self.config_generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // First the state, so that it matches what now runs whatever
            // happens to the audit line.
            if let Err(e) = self.sync_state() {
                result = Err(format!(
                    "reloaded, but the state file could not be brought in line with it: {e}"
                ));
            }
        }
        if let Some(audit) = &self.audit {
            let (old_hash, new_hash) = (config_hash(&old), config_hash(text));
            let entry = Entry {
                peer,
                handler: "hotconfig",
                old: Some(&old_hash),
                new: &new_hash,
                result: result.as_ref().map(|_| None).map_err(|e| e.clone()),
                actor: None,
            };
            if let Err(e) = audit.append(&entry) {
                tracing::error!(error = %e, "audit log not written");
                if result.is_ok() {
                    return Err(format!("reloaded, but the audit log could not record it: {e}"));
                }
            }
        }
        result
    }

    /// Makes the saved state exactly the running router's persistent
    /// handlers and their values (after a start or a reload): a handler
    /// the configuration no longer has is forgotten, so a later reload
    /// that brings it back does not find a stale value waiting for the
    /// next restart; generations carry on.
    pub fn sync_state(&self) -> Result<(), String> {
        self.sync_state_as(false)
    }

    /// [`sync_state`](Self::sync_state); `compact`: write the state file
    /// even if nothing changed (at start: a journal left by a crash is
    /// folded in and emptied, a torn last line with it).
    fn sync_state_as(&self, compact: bool) -> Result<(), String> {
        let mut saved = self.saved.lock().expect("saved lock");
        // Read under the lock: a write cannot slip in with the old table.
        let table = self.table();
        let mut now = BTreeMap::new();
        for e in table.elements() {
            for h in e.handlers.iter().filter(|h| h.persistent) {
                let Some(read) = &h.read else { continue };
                let name = format!("{}.{}", e.name, h.name);
                let generation = saved.handlers.get(&name).map_or(0, |s| s.generation);
                now.insert(
                    name,
                    Saved {
                        value: read(),
                        generation,
                    },
                );
            }
        }
        let now = State {
            handlers: now,
            floor: saved.floor,
        };
        if let Some(state) = &self.state {
            if compact || now != *saved || state.wants_compaction() {
                state
                    .save(&now)
                    .map_err(|e| format!("{}: {e}", state.path().display()))?;
            }
        }
        *saved = now;
        Ok(())
    }

    /// Records what an accepted reload did.
    pub fn record_reload(&self, r: &switchyard_core::ReloadReport) {
        *self.last_reload.lock().expect("last reload") = Some(r.clone());
    }

    /// What the last accepted reload did, if any.
    pub fn last_reload(&self) -> Option<switchyard_core::ReloadReport> {
        self.last_reload.lock().expect("last reload").clone()
    }

    /// The last reload as `key=value` words, for the `last_reload` read
    /// handler (and `ctl status`); empty before the first.
    fn last_reload_line(&self) -> String {
        let Some(r) = self.last_reload() else {
            return String::new();
        };
        let mut line = format!(
            "threads_kept={} threads_replaced={} threads_started={} carried={} pause_us={}",
            r.threads_kept,
            r.threads_replaced,
            r.threads_started,
            r.carried,
            r.pause.as_micros()
        );
        if !r.dropped_holding.is_empty() {
            line.push_str(&format!(" dropped_holding={}", r.dropped_holding.join(",")));
        }
        line
    }

    /// The audit log's last `n` lines (JSON objects); none without --audit.
    pub fn audit_tail(&self, n: usize) -> Vec<String> {
        self.audit
            .as_ref()
            .map(|a| a.tail(n).lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Configurations loaded so far (1 plus accepted reloads).
    pub fn config_generation(&self) -> u64 {
        self.config_generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reloads the configuration that ran before the last reload.
    pub fn rollback_config(&self, peer: &Peer) -> Result<(), String> {
        let prev = self.previous_config.lock().expect("previous").clone();
        match prev {
            Some(text) => self.reload(&text, peer),
            None => Err("no previous configuration: nothing was reloaded yet".to_string()),
        }
    }

    /// Applies the state file's values to the (not yet running) router.
    /// Returns notes about values that no longer apply (the handler is
    /// gone, or refuses the old value under the new configuration).
    pub fn restore(&self) -> Result<Vec<String>, String> {
        let Some(state) = &self.state else {
            return Ok(Vec::new());
        };
        let loaded = state.load()?;
        let mut notes = Vec::new();
        let mut saved = self.saved.lock().expect("saved lock");
        saved.floor = loaded.floor;
        let table = self.table();
        for (name, s) in loaded.handlers {
            match table.find(&name) {
                Ok(h) if h.persistent => match table.write(&name, &s.value) {
                    Ok(()) => {
                        tracing::info!(handler = %name, value = %s.value, generation = s.generation, "restored");
                        saved.handlers.insert(name, s);
                    }
                    Err(e) => notes.push(format!("{name}: saved value '{}' not restored: {e}", s.value)),
                },
                Ok(_) => notes.push(format!("{name}: no longer a persistent handler; saved value ignored")),
                Err(e) => notes.push(format!("{name}: {e}; saved value ignored")),
            }
        }
        drop(saved);
        self.sync_state_as(true)?;
        Ok(notes)
    }

    /// The state file, if any (to set a bad one aside).
    pub fn state_file(&self) -> Option<&StateFile> {
        self.state.as_ref()
    }

    /// Writes so far as (actor, result, count): actor `client` or the
    /// element's name for writes by elements (`gate`), result `ok`/`error`.
    pub fn write_stats(&self) -> Vec<(String, String, u64)> {
        self.writes
            .lock()
            .expect("writes")
            .iter()
            .map(|((a, r), n)| (a.clone(), r.clone(), *n))
            .collect()
    }

    /// The generation of a persistent handler (0 if never written).
    pub fn generation(&self, handler: &str) -> u64 {
        self.saved
            .lock()
            .expect("saved lock")
            .handlers
            .get(handler)
            .map_or(0, |s| s.generation)
    }

    /// Reads `name` with `param` (empty for none): a handler, a
    /// persistent handler's generation (`element.handler@gen`), or one of
    /// the control plane's own (`last_check`, `last_reload`, `audit_tail`).
    pub fn read(&self, name: &str, param: &str) -> Reply {
        match self.read_value(name, param.trim()) {
            Ok(v) => Reply::new(code::OK, format!("Read handler '{name}' OK")).with_data(v.into_bytes()),
            Err(reply) => reply,
        }
    }

    fn read_value(&self, name: &str, param: &str) -> Result<String, Reply> {
        let (handler, generation) = split_generation(name);
        let own = matches!(name, "last_check" | "last_reload" | "audit_tail");
        if (own || generation.is_some()) && !param.is_empty() {
            return Err(handler_error(HandlerError::ReadFailed {
                handler: name.to_string(),
                message: "this handler takes no parameters".into(),
            }));
        }
        match name {
            "last_check" => return Ok(self.last_check.lock().expect("last check").clone()),
            "last_reload" => return Ok(self.last_reload_line()),
            // The last audit entries (for `ctl status`); empty without --audit.
            "audit_tail" => return Ok(self.audit.as_ref().map(|a| a.tail(5)).unwrap_or_default()),
            _ => {}
        }
        if let Some(g) = generation {
            if g != "gen" {
                return Err(Reply::new(
                    code::SYNTAX,
                    format!("Bad handler name '{name}' (use {handler}@gen)"),
                ));
            }
            return match self.table().find(handler) {
                Ok(h) if h.persistent => Ok(self.generation(handler).to_string()),
                Ok(_) => Err(Reply::new(
                    code::NO_HANDLER,
                    format!("Handler '{handler}' has no generation (not persistent)"),
                )),
                Err(e) => Err(handler_error(e)),
            };
        }
        self.table().read_with(name, param).map_err(handler_error)
    }

    /// Writes `value` to `name` (`element.handler`, or `element.handler@N`
    /// to write only if the generation is still N). Audited, accepted or
    /// not, before returning; a persistent handler's new value is saved.
    pub fn write(&self, name: &str, value: &str, peer: &Peer) -> Reply {
        self.write_as(name, value, peer, None)
    }

    /// [`write`](Self::write) on behalf of something other than a client
    /// (an automatic gate), recorded with its reason.
    pub fn write_as(&self, name: &str, value: &str, peer: &Peer, actor: Option<(&str, &str)>) -> Reply {
        if name == "hotconfig" || name == "rollback_config" || name == "hotconfig_check" {
            let r = match name {
                "hotconfig" => self.reload(value, peer),
                "hotconfig_check" => self.reload_check(value),
                _ => self.rollback_config(peer),
            };
            return match r {
                Ok(()) => Reply::new(code::OK, format!("Write handler '{name}' OK")),
                Err(e) => {
                    let mut lines = vec![format!("Write handler '{name}' error:")];
                    lines.extend(e.lines().map(str::to_string));
                    Reply::multi(code::HANDLER_ERROR, lines)
                }
            };
        }
        let (handler, expected) = split_generation(name);
        let mut guard = Some(self.saved.lock().expect("saved lock"));
        // The table under the lock: a reload's state sync takes it too, so
        // a persistent write is never applied to a table being replaced.
        // (A non-persistent one, below, drops the lock: a counter reset
        // racing a reload may land on the outgoing element.)
        let table = self.table();
        // A write whose effect another handler keeps (a route table's
        // `add` changes `table`): that one is read for the undo, carries
        // the generation, and is what the state file saves.
        let found = table.kept_by(handler);
        let (kept, kept_handler) = match &found {
            Ok((kept, h)) => (kept.clone(), Some(*h)),
            Err(_) => (handler.to_string(), None),
        };
        let old = kept_handler.and_then(|h| h.read.as_ref()).map(|r| r());
        let persistent = kept_handler.is_some_and(|h| h.persistent);
        let current = guard
            .as_ref()
            .and_then(|saved| saved.handlers.get(&kept))
            .map_or(0, |s| s.generation);
        if !persistent {
            // Nothing to keep in order: the write runs unlocked, so a
            // handler that writes others itself (a passive Script's `run`)
            // does not wait on this lock forever.
            guard = None;
        }

        let outcome: Result<Option<u64>, Reply> = (|| {
            if let Some(exp) = expected {
                let exp: u64 = exp
                    .parse()
                    .map_err(|_| Reply::new(code::SYNTAX, format!("Bad generation '{exp}' in '{name}'")))?;
                if !persistent {
                    found.as_ref().map_err(|e| handler_error(e.clone()))?;
                    return Err(Reply::new(
                        code::NO_HANDLER,
                        format!("Handler '{handler}' has no generation (not persistent)"),
                    ));
                }
                if exp != current {
                    return Err(Reply::multi(
                        code::HANDLER_ERROR,
                        vec![
                            format!("Write handler '{handler}' error:"),
                            format!("generation is {current}, not {exp}: written by someone else since you read it"),
                        ],
                    ));
                }
            }
            table.write_unsettled(handler, value).map_err(handler_error)?;
            let undo = |why: String| {
                // Put the old value back: what was not made durable must
                // not stay in production.
                if let Some(old) = &old {
                    if let Err(e) = table.write_unsettled(&kept, old) {
                        tracing::error!(handler, error = %e, "could not undo a write");
                    }
                }
                Reply::multi(
                    code::HANDLER_ERROR,
                    vec![format!("Write handler '{handler}' error:"), why],
                )
            };
            let Some(saved) = guard.as_mut().filter(|_| persistent) else {
                return Ok(None);
            };
            // One counter for every handler: each write's generation is
            // above every earlier one (see the state module).
            let floor = saved.floor;
            let generation = match floor.checked_add(1).filter(|g| *g <= crate::state::MAX_GENERATION) {
                Some(g) => g,
                None => return Err(undo(format!("not applied: generation {floor} has no successor"))),
            };
            let now = table.read(&kept).unwrap_or_else(|_| value.trim().to_string());
            let entry = Saved { value: now, generation };
            if let Some(state) = self.state.as_ref().filter(|s| s.wants_compaction()) {
                // Long, or damaged by an earlier failure: a compaction of
                // what was acknowledged repairs it before this write.
                if let Err(e) = state.save(saved) {
                    tracing::warn!(path = %state.path().display(), error = %e, "state file not compacted");
                }
            }
            let mark = match &self.state {
                Some(state) => match state.record(&kept, &entry) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::error!(path = %state.path().display(), error = %e, "state journal not written");
                        return Err(undo(format!("not applied: the state journal could not record it: {e}")));
                    }
                },
                None => None,
            };
            if let Some(audit) = &self.audit {
                let audited = audit.append(&Entry {
                    peer,
                    handler,
                    old: old.as_deref(),
                    new: value.trim(),
                    result: Ok(Some(generation)),
                    actor,
                });
                if let Err(e) = audited {
                    tracing::error!(path = %audit.path().display(), error = %e, "audit log not written");
                    if let (Some(state), Some(mark)) = (&self.state, mark) {
                        if let Err(e) = state.undo(mark) {
                            tracing::error!(error = %e, "state journal: could not take a line back");
                        }
                    }
                    return Err(undo(format!("not applied: the audit log could not record it: {e}")));
                }
            }
            saved.handlers.insert(kept.clone(), entry);
            saved.floor = generation;
            Ok(Some(generation))
        })();

        // Persistent writes that went through were audited above; the
        // rest (refusals, and writes to handlers without state) here.
        let audited_above = persistent && outcome.is_ok();
        if let (Some(audit), false) = (&self.audit, audited_above) {
            let entry = Entry {
                peer,
                handler,
                old: old.as_deref(),
                new: value.trim(),
                result: outcome.as_ref().map(|g| *g).map_err(|r| r.lines.join(" ")),
                actor,
            };
            if let Err(e) = audit.append(&entry) {
                tracing::error!(path = %audit.path().display(), error = %e, "audit log not written");
                if outcome.is_ok() {
                    // A counter reset cannot be taken back: say it happened
                    // (once the copies, if any, have it).
                    let _ = table.settle(handler);
                    return Reply::multi(
                        code::HANDLER_ERROR,
                        vec![
                            format!("Write handler '{handler}' error:"),
                            format!("applied, but the audit log could not record it: {e}"),
                        ],
                    );
                }
            }
        }
        drop(guard);
        // With copies: answered once every copy's thread took the write,
        // waited for outside the lock (a copy's thread may need it).
        let settled = match &outcome {
            Ok(_) => table.settle(handler),
            Err(_) => Ok(()),
        };
        let key = (
            actor.map_or("client", |a| a.0).to_string(),
            if outcome.is_ok() { "ok" } else { "error" }.to_string(),
        );
        *self.writes.lock().expect("writes").entry(key).or_default() += 1;
        match (outcome, settled) {
            (Ok(_), Ok(())) => Reply::new(code::OK, format!("Write handler '{name}' OK")),
            (Ok(_), Err(why)) => Reply::multi(code::OK_WARN, vec![format!("Write handler '{name}' OK"), why]),
            (Err(r), _) => r,
        }
    }

    fn check(&self, name: &str, write: bool) -> Reply {
        if name == "hotconfig" || name == "rollback_config" || name == "hotconfig_check" {
            let reloads = self.reloads.lock().expect("reloads").is_some();
            return match (write, reloads) {
                (true, true) => Reply::new(code::OK, format!("Write handler '{name}' OK")),
                (true, false) => Reply::new(
                    code::NO_HANDLER,
                    format!("Handler '{name}' not writable (this router does not reload)"),
                ),
                (false, _) => Reply::new(code::NO_HANDLER, format!("Handler '{name}' not readable")),
            };
        }
        let (handler, _) = split_generation(name);
        match self.table().find(handler) {
            Ok(h) if write && h.write.is_none() => {
                Reply::new(code::NO_HANDLER, format!("Handler '{name}' not writable"))
            }
            Ok(h) if !write && !h.readable() => Reply::new(code::NO_HANDLER, format!("Handler '{name}' not readable")),
            Ok(_) => Reply::new(
                code::OK,
                format!("{} handler '{name}' OK", if write { "Write" } else { "Read" }),
            ),
            Err(e) => handler_error(e),
        }
    }

    /// Executes a request whose payload (WRITEDATA/WRITEUNTIL value,
    /// READDATA/READUNTIL parameter) the server has already read.
    pub fn execute(&self, req: &Request, payload: &str, peer: &Peer) -> Reply {
        match req {
            Request::Read { handler, .. } | Request::ReadData { handler, .. } | Request::ReadUntil { handler, .. } => {
                self.read(handler, param_of(req).unwrap_or(payload))
            }
            Request::Write { handler, value } => self.write(handler, value, peer),
            Request::WriteData { handler, .. } | Request::WriteUntil { handler, .. } => {
                self.write(handler, payload, peer)
            }
            Request::CheckRead(h) => self.check(h, false),
            Request::CheckWrite(h) => self.check(h, true),
            Request::Llrpc => Reply::new(code::UNIMPLEMENTED, "Command 'LLRPC' unimplemented"),
            Request::Help => help(),
            Request::Quit => Reply::new(code::OK, "Goodbye!"),
            Request::Empty => Reply::new(code::OK, "OK"),
        }
    }
}

fn param_of(req: &Request) -> Option<&str> {
    match req {
        Request::Read { param, .. } => Some(param),
        _ => None,
    }
}

/// Elements (the rollback gate) write through here, so their writes are
/// validated, persisted and audited as the actor's, with the reason.
impl switchyard_core::ControlPlane for Control {
    fn read(&self, handler: &str, param: &str) -> Result<String, String> {
        self.read_value(handler, param.trim())
            .map_err(|reply| reply.lines.last().cloned().unwrap_or_default())
    }

    fn can(&self, handler: &str, write: bool) -> bool {
        switchyard_core::ControlPlane::can(self.table().as_ref(), handler, write)
    }

    fn write_as(&self, handler: &str, value: &str, actor: &str, reason: &str) -> Result<(), String> {
        // An element writes from a router thread, which a reload may
        // pause: that thread would then wait for itself.
        if matches!(handler, "hotconfig" | "hotconfig_check" | "rollback_config") {
            return Err(format!(
                "'{handler}': an element cannot replace the configuration it runs in"
            ));
        }
        let peer = Peer {
            addr: Some(actor.to_string()),
            ..Peer::default()
        };
        let reply = Control::write_as(self, handler, value, &peer, Some((actor, reason)));
        if reply.is_ok() {
            Ok(())
        } else {
            Err(reply.lines.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn control() -> (Control, crossbeam_channel::Receiver<ReloadRequest>) {
        let registry = switchyard_core::Registry::default();
        let (graph, table) = switchyard_core::load_text("t", "", &registry, &[]).unwrap();
        drop(graph);
        let c = Control::new(Arc::new(table), None, None).with_reload_start_timeout(Duration::from_millis(50));
        let (tx, rx) = crossbeam_channel::unbounded();
        c.accept_reloads(tx);
        (c, rx)
    }

    #[test]
    fn a_reload_that_never_started_is_cancelled_and_reported_as_not_done() {
        let (c, rx) = control();
        let peer = Peer::default();
        // The owner is busy: the asker gives up first.
        let result = c.reload("x", &peer);
        assert!(result.unwrap_err().contains("cancelled: nothing changed"));
        assert_eq!(c.config_generation(), 1);
        // When the owner gets to it, it must not run it.
        let req = rx.try_recv().unwrap();
        assert!(!req.start());
    }

    #[test]
    fn a_reload_that_started_is_reported_as_it_ended_however_long_it_took() {
        let (c, rx) = control();
        let owner = std::thread::spawn(move || {
            let req = rx.recv().unwrap();
            assert!(req.start());
            // Longer than the asker's wait to start: it must wait on.
            std::thread::sleep(Duration::from_millis(200));
            req.reply.send(Ok(String::new())).unwrap();
        });
        c.reload("x", &Peer::default()).unwrap();
        assert_eq!(c.config_generation(), 2, "reported and counted as done");
        owner.join().unwrap();
    }

    #[test]
    fn reads_with_a_parameter_take_one_path_for_every_kind_of_name() {
        let (c, _rx) = control();
        for name in ["version", "last_check", "last_reload", "audit_tail"] {
            let r = c.read(name, "");
            assert!(r.is_ok(), "{name}: {r:?}");
            assert_eq!(r.lines, [format!("Read handler '{name}' OK")]);
            // A parameter to a handler that takes none is refused alike.
            let r = c.read(name, " x ");
            assert_eq!(r.code, code::HANDLER_ERROR, "{name}: {r:?}");
            assert_eq!(r.lines[1], "this handler takes no parameters", "{name}");
        }
        assert_eq!(
            c.read("version", "  ").data,
            c.read("version", "").data,
            "blank is none"
        );
        assert_eq!(c.read("nosuch.h", "x").code, code::NO_ELEMENT);
    }
}
