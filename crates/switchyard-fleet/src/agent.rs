//! The router's side of the fleet: `switchyard run ... --fleet
//! etcd://HOST:PORT/PREFIX --fleet-name NAME`.
//!
//! On a thread of its own, with a current-thread tokio runtime:
//! 1. registers `PREFIX/routers/NAME` under a lease ([`LEASE_TTL`]), with
//!    its config hash, its persistent handlers' values and generations,
//!    the desired revision it applied, and where it diverges;
//! 2. reads `PREFIX/desired`, then watches it, and for each new revision
//!    checks (prepare) or applies (commit) its values through the control
//!    plane (validated, audited with actor `fleet` and the revision,
//!    persisted), acking at `PREFIX/acks/NAME` under the same lease;
//! 3. every [`TICK`], looks for a tripped gate (Watchdog) and for local
//!    divergence, and republishes its key when either changed. With the
//!    `fleet` gate policy (the default) a gate trip writes a new desired
//!    revision carrying this router's rolled-back values, so the whole
//!    fleet follows.
//!
//! When etcd is lost the router keeps its state, its sockets and its
//! gates, and never flips on its own; it reconnects with backoff and then
//! reads the desired state afresh rather than trusting missed events.

use crate::{Ack, Desired, FleetUrl, Phase};
use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use switchyard_control::protocol::code;
use switchyard_control::{Control, Peer};
use switchyard_core::handler::moves_traffic_back;

/// The registration's lease: a router that dies leaves the fleet's view
/// within this many seconds.
pub const LEASE_TTL: i64 = 5;
/// Longest handler value published as such in the registration (longer
/// ones, route tables, are published as a hash).
const MAX_PUBLISHED: usize = 512;
/// How often gates and divergence are looked at.
pub const TICK: Duration = Duration::from_millis(200);

/// Whether a gate that trips on this router rolls the whole fleet back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatePolicy {
    /// A release that fails on one router is bad everywhere (default).
    Fleet,
    /// Only this router rolls back; the fleet sees a divergence.
    Local,
}

impl GatePolicy {
    pub fn parse(s: &str) -> std::result::Result<GatePolicy, String> {
        match s {
            "fleet" => Ok(GatePolicy::Fleet),
            "local" => Ok(GatePolicy::Local),
            _ => Err(format!("gate policy '{s}': expected fleet or local")),
        }
    }
}

pub struct Options {
    pub url: FleetUrl,
    pub name: String,
    pub gate_policy: GatePolicy,
}

/// A running agent; dropping it revokes its lease (the router leaves the
/// fleet's view at once) and stops the thread.
pub struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the agent remembers across connections.
#[derive(Default)]
struct Memory {
    /// The newest desired revision handled (never handled twice).
    handled: i64,
    /// The newest commit applied, and its values.
    applied: i64,
    desired: Option<Desired>,
    /// Gates seen tripped (a trip is acted on once).
    tripped: BTreeSet<String>,
    /// The registration last published, without its time.
    published: Option<Value>,
    /// The connection and lease of the session now, to revoke on stop.
    lease: Option<(Client, i64)>,
    /// The configuration's hash, and the generation it is of.
    config_hash: Option<(u64, String)>,
}

/// Starts the agent's thread. It connects in the background: a router
/// starts (and forwards) whether or not etcd is up.
pub fn start(control: Arc<Control>, options: Options) -> std::io::Result<Agent> {
    crate::check_name(&options.name).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("fleet".into()).spawn(move || {
        runtime.block_on(async move {
            let mut memory = Memory::default();
            let mut backoff = Duration::from_millis(100);
            loop {
                let ended = tokio::select! {
                    r = session(&control, &options, &mut memory) => r,
                    _ = &mut stopped => {
                        // Leave the fleet's view now, not when the lease runs out.
                        if let Some((mut client, lease)) = memory.lease.take() {
                            let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(lease)).await;
                        }
                        return;
                    }
                };
                match ended {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet: etcd lost; keeping the current state");
                        eprintln!("switchyard: fleet: {e}; keeping the current state, retrying");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = &mut stopped => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    })?;
    Ok(Agent {
        stop: Some(stop),
        thread: Some(thread),
    })
}

type Result<T> = std::result::Result<T, String>;

fn etcd(e: etcd_client::Error) -> String {
    format!("etcd: {e}")
}

/// One connection's life: until etcd is lost (an error) or the agent is
/// stopped (the caller's select drops this future; the lease is revoked
/// there).
async fn session(control: &Arc<Control>, options: &Options, memory: &mut Memory) -> Result<()> {
    let url = &options.url;
    let mut client = Client::connect(url.endpoints(), Some(crate::connect_options()))
        .await
        .map_err(etcd)?;
    let lease = client.lease_grant(LEASE_TTL, None).await.map_err(etcd)?.id();
    let (mut keeper, mut alive) = client.lease_keep_alive(lease).await.map_err(etcd)?;
    memory.lease = Some((client.clone(), lease));
    // The lease is kept alive by a task of its own: a slow etcd call in
    // the loop below must not let it run out (the fleet would see this
    // router leave in the middle of a change).
    let (lost_tx, mut lost) = tokio::sync::oneshot::channel::<String>();
    let keeping = tokio::spawn(async move {
        let why = loop {
            if let Err(e) = keeper.keep_alive().await {
                break etcd(e);
            }
            match alive.message().await {
                Ok(Some(r)) if r.ttl() > 0 => {}
                Ok(_) => break "etcd: the lease expired".to_string(),
                Err(e) => break etcd(e),
            }
            tokio::time::sleep(Duration::from_millis((LEASE_TTL as u64 * 1000) / 4)).await;
        };
        let _ = lost_tx.send(why);
    });
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _keeping = Abort(keeping);
    memory.published = None;
    publish(&mut client, control, options, memory, lease).await?;
    eprintln!(
        "switchyard: fleet: registered as {} at {}{}",
        options.name, url.endpoint, url.prefix
    );
    // Afresh: every change from now on, then the desired state now (a
    // change seen twice is handled once).
    let mut watch = crate::watch_from_now(&mut client, url.desired(), false)
        .await
        .map_err(etcd)?;
    let got = client.get(url.desired(), None).await.map_err(etcd)?;
    // A store restored from a backup may be behind what this router saw:
    // its revisions start over, and so does the memory of them.
    if got.header().is_some_and(|h| h.revision() < memory.handled) {
        memory.handled = 0;
    }
    if let Some(kv) = got.kvs().first() {
        handle(
            &mut client,
            control,
            options,
            memory,
            lease,
            kv.value(),
            kv.mod_revision(),
        )
        .await?;
    }
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            msg = watch.message() => {
                let Some(resp) = msg.map_err(etcd)? else {
                    return Err("etcd: the watch ended".into());
                };
                if resp.canceled() {
                    return Err(format!("etcd: the watch was cancelled ({})", resp.cancel_reason()));
                }
                for ev in resp.events() {
                    if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                        handle(&mut client, control, options, memory, lease, kv.value(), kv.mod_revision()).await?;
                    }
                }
            }
            why = &mut lost => {
                return Err(why.unwrap_or_else(|_| "etcd: the lease keeper stopped".into()));
            }
            _ = tick.tick() => {
                gates(&mut client, control, options, memory).await?;
                publish(&mut client, control, options, memory, lease).await?;
            }
        }
    }
}

/// The persistent handlers' values and generations.
fn persistent(control: &Control) -> Map<String, Value> {
    let table = control.table();
    let mut values = Map::new();
    for e in table.elements() {
        for h in e.handlers.iter().filter(|h| h.persistent && h.write.is_some()) {
            let Some(read) = &h.read else { continue };
            let full = format!("{}.{}", e.name, h.name);
            let value = read();
            let value = value.trim();
            let generation = control.generation(&full);
            // A whole route table would not fit an etcd value: its hash.
            let shown = if value.len() > MAX_PUBLISHED {
                json!({"hash": switchyard_control::config_hash(value), "generation": generation})
            } else {
                json!({"value": value, "generation": generation})
            };
            values.insert(full, shown);
        }
    }
    values
}

fn read(control: &Control, handler: &str) -> Option<String> {
    control.table().read(handler).ok().map(|v| v.trim().to_string())
}

/// A value as compared: words separated by single spaces (`90  10` and
/// `90 10` are the same weights).
fn normal(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The gates (Watchdog elements) tripped now, with their reasons.
fn tripped_gates(control: &Control) -> Vec<(String, String)> {
    let table = control.table();
    table
        .elements()
        .iter()
        .filter(|e| {
            table
                .read(&format!("{}.tripped", e.name))
                .is_ok_and(|t| t.trim() == "true")
        })
        .map(|e| {
            let reason = table.read(&format!("{}.reason", e.name)).unwrap_or_default();
            (e.name.clone(), reason.trim().to_string())
        })
        .collect()
}

/// This router's registration, republished when it changed.
async fn publish(
    client: &mut Client,
    control: &Arc<Control>,
    options: &Options,
    memory: &mut Memory,
    lease: i64,
) -> Result<()> {
    // Atomic loads, no I/O: read in place, not on a blocking thread.
    let values = persistent(control);
    let diverged: Vec<Value> = memory
        .desired
        .as_ref()
        .filter(|d| d.phase == Phase::Commit)
        .map(|d| {
            d.values
                .iter()
                .filter_map(|(h, want)| {
                    let have = values.get(h).and_then(|v| v["value"].as_str()).map(str::to_string);
                    (have.as_deref() != Some(want.as_str()))
                        .then(|| json!({"handler": h, "local": have, "desired": want}))
                })
                .collect()
        })
        .unwrap_or_default();
    // The configuration's hash, computed again only after a reload.
    let generation = control.config_generation();
    if !matches!(&memory.config_hash, Some((g, _)) if *g == generation) {
        let config = control.table().read("config").unwrap_or_default();
        memory.config_hash = Some((generation, switchyard_control::config_hash(&config)));
    }
    let doc = json!({
        "name": options.name,
        "pid": std::process::id(),
        "config_hash": memory.config_hash.as_ref().map(|(_, h)| h.clone()),
        "config_generation": control.config_generation(),
        "values": values,
        "applied": memory.applied,
        "diverged": diverged,
        "gates_tripped": memory.tripped.iter().collect::<Vec<_>>(),
    });
    if memory.published.as_ref() == Some(&doc) {
        return Ok(());
    }
    let mut with_time = doc.clone();
    with_time["time"] = json!(crate::now());
    let key = format!("{}{}", options.url.routers(), options.name);
    put_leased(client, key, with_time.to_string(), lease).await?;
    memory.published = Some(doc);
    Ok(())
}

async fn ack(client: &mut Client, options: &Options, lease: i64, ack: &Ack) -> Result<()> {
    let key = format!("{}{}", options.url.acks(), options.name);
    put_leased(client, key, ack.to_json(), lease).await
}

/// Writes `key` under this router's lease: it goes when the router does.
async fn put_leased(client: &mut Client, key: String, value: String, lease: i64) -> Result<()> {
    client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
        .map_err(etcd)?;
    Ok(())
}

/// Whether this router could apply `values`: every handler exists, is
/// persistent, and would accept its value. Changes nothing.
pub fn check(control: &Control, values: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    let table = control.table();
    let mut problems = Vec::new();
    // What the commit would refuse, the prepare refuses: a tripped gate
    // here latches until reset by hand.
    if let Some((gate, why)) = tripped_gates(control).first() {
        let moves = values
            .iter()
            .any(|(h, v)| read(control, h).as_deref().map(normal) != Some(normal(v)));
        if moves {
            problems.push(format!(
                "gate {gate} tripped on this router ({why}); reset it ({gate}.reset) first"
            ));
        }
    }
    for (h, v) in values {
        match table.find(h) {
            Err(e) => problems.push(e.to_string()),
            Ok(handler) if !handler.persistent => problems.push(format!(
                "{h} is not a persistent handler (the fleet sets switch positions, weights, routes)"
            )),
            Ok(handler) => {
                if let Err(e) = handler.check_value(v) {
                    problems.push(format!("{h} {v}: {e}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Applies `values` through the control plane, writing only those that
/// differ, each audited as actor `fleet` with the revision.
pub fn apply(control: &Control, values: &BTreeMap<String, String>, revision: i64) -> std::result::Result<(), String> {
    let peer = Peer {
        addr: Some("fleet".into()),
        ..Peer::default()
    };
    let reason = format!("revision {revision}");
    let mut problems = Vec::new();
    let tripped = tripped_gates(control);
    for (h, v) in values {
        if read(control, h).as_deref().map(normal) == Some(normal(v)) {
            continue;
        }
        // A gate that tripped here latches until reset by hand, as in the
        // router alone: the fleet cannot undo its rollback either.
        if let Some((gate, why)) = tripped.first() {
            problems.push(format!(
                "{h}: gate {gate} tripped on this router ({why}); reset it ({gate}.reset) first"
            ));
            continue;
        }
        let reply = control.write_as(h, v, &peer, Some(("fleet", &reason)));
        if reply.code != code::OK {
            problems.push(reply.lines.join(" "));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// One desired revision: checked or applied, then acked.
async fn handle(
    client: &mut Client,
    control: &Arc<Control>,
    options: &Options,
    memory: &mut Memory,
    lease: i64,
    value: &[u8],
    revision: i64,
) -> Result<()> {
    if revision <= memory.handled {
        return Ok(());
    }
    let desired = match Desired::from_json(value) {
        Ok(d) => d,
        Err(e) => {
            let a = Ack {
                revision,
                phase: Phase::Commit,
                status: "error".into(),
                error: e,
            };
            ack(client, options, lease, &a).await?;
            memory.handled = revision;
            return Ok(());
        }
    };
    if desired.phase == Phase::Abort {
        // A change refused in its prepare: nothing to do, nobody waits.
        memory.desired = Some(desired);
        memory.handled = revision;
        return Ok(());
    }
    let c = control.clone();
    let (phase, values) = (desired.phase, desired.values.clone());
    let outcome = tokio::task::spawn_blocking(move || match phase {
        Phase::Commit => apply(&c, &values, revision),
        _ => check(&c, &values),
    })
    .await
    .map_err(|e| e.to_string())?;
    let status = match (desired.phase, outcome.is_ok()) {
        (Phase::Commit, true) => "applied",
        (Phase::Commit, false) => "error",
        (_, true) => "ready",
        (_, false) => "rejected",
    };
    if desired.phase == Phase::Commit {
        if outcome.is_ok() {
            memory.applied = revision;
        }
        memory.desired = Some(desired.clone());
        // The values just changed: the registration says so before the ack.
        publish(client, control, options, memory, lease).await?;
    }
    let a = Ack {
        revision,
        phase: desired.phase,
        status: status.into(),
        error: outcome.err().unwrap_or_default(),
    };
    ack(client, options, lease, &a).await?;
    // Handled once acked: an ack lost with the connection is sent again
    // after it (checking is pure, and applying skips equal values).
    memory.handled = revision;
    Ok(())
}

/// Gates that tripped since the last look; with the fleet policy, a new
/// desired revision carrying this router's rolled-back values. A trip is
/// remembered once the fleet has it (an etcd error tries again).
async fn gates(client: &mut Client, control: &Arc<Control>, options: &Options, memory: &mut Memory) -> Result<()> {
    let tripped = tripped_gates(control);
    memory.tripped.retain(|g| tripped.iter().any(|(t, _)| t == g));
    for (gate, reason) in tripped {
        if memory.tripped.contains(&gate) {
            continue;
        }
        let fleet = options.gate_policy == GatePolicy::Fleet;
        eprintln!(
            "switchyard: fleet: gate {gate} tripped ({reason}){}",
            if fleet { "; rolling the fleet back" } else { "" }
        );
        if fleet {
            roll_fleet_back(client, control, options, &gate, &reason).await?;
        }
        memory.tripped.insert(gate);
    }
    Ok(())
}

/// Writes a desired revision with this router's values for the handlers
/// the fleet sets (the gate moved them back), compare-and-set on the
/// revision read; a race re-reads and tries again.
async fn roll_fleet_back(
    client: &mut Client,
    control: &Arc<Control>,
    options: &Options,
    gate: &str,
    reason: &str,
) -> Result<()> {
    let key = options.url.desired();
    for _ in 0..5 {
        let got = client.get(key.clone(), None).await.map_err(etcd)?;
        let Some(kv) = got.kvs().first() else {
            return Ok(());
        };
        let Ok(current) = Desired::from_json(kv.value()) else {
            return Ok(());
        };
        // What the fleet runs: a prepare in flight has changed nothing yet.
        let running = current.running();
        // Only what the gate moved back goes to the fleet: a local
        // override of another kind (a drain, say) stays local.
        let mut values = running.clone();
        for (h, v) in values.iter_mut() {
            if let Some(local) = read(control, h) {
                if normal(&local) != normal(v) && moves_traffic_back(h, &local) {
                    *v = local;
                }
            }
        }
        if values == running && current.phase != Phase::Prepare {
            return Ok(());
        }
        let next = Desired {
            phase: Phase::Commit,
            previous: running,
            values,
            by: format!("router {}", options.name),
            reason: format!("gate {gate} tripped on {}: {reason}", options.name),
            time: crate::now(),
            deadline: 0.0,
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision())])
            .and_then([TxnOp::put(key.clone(), next.to_json(), None)]);
        if client.txn(txn).await.map_err(etcd)?.succeeded() {
            return Ok(());
        }
    }
    Err("etcd: could not write the fleet's rollback (the desired state kept changing)".into())
}
