//! The operator's side: `switchyard fleet status|set|rollback|watch
//! --etcd etcd://HOST:PORT/PREFIX`.
//!
//! `set` is two phases over the desired state, each a compare-and-set on
//! the revision read before it, so racing operators cannot silently undo
//! each other:
//! 1. prepare: every registered router checks the values and acks ready
//!    or rejected; nothing changes production;
//! 2. commit: every router applies them and acks.
//!
//! A rejection or a missed deadline in the prepare ends the change before
//! any router moved (a new revision carrying the previous values closes
//! it). A failure in the commit, with `--atomic` (the default), writes a
//! new revision with the previous values: all routers change or none. A
//! rollback is always a new revision, never a toggle.

use crate::{epoch, now, show, Ack, Desired, FleetUrl, Phase};
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions, WatchStream};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// What an operator asked for.
pub enum Action {
    Status,
    /// Handler and value pairs.
    Set {
        values: Vec<(String, String)>,
        timeout: Duration,
        atomic: bool,
        /// Hold the prepared change this long before the commit (a look
        /// at the prepared fleet, or a drill).
        pause: Duration,
    },
    Rollback {
        timeout: Duration,
    },
    /// Print every change until interrupted, or `count` events.
    Watch {
        count: Option<u64>,
    },
}

/// How a command ended: its exit status (0 done, 1 the fleet refused or
/// failed and was put back, 2 another operator's change won the race, 3
/// etcd could not be reached).
pub type Outcome = std::result::Result<(), (i32, String)>;

fn etcd(e: etcd_client::Error) -> (i32, String) {
    (3, format!("etcd: {e}"))
}

/// Runs `action` against the fleet at `url`, printing to stdout.
pub fn run(url: &FleetUrl, action: Action) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (3, e.to_string()))?;
    runtime.block_on(async move {
        let mut client = Client::connect(url.endpoints(), Some(crate::connect_options()))
            .await
            .map_err(etcd)?;
        match action {
            Action::Status => status(&mut client, url).await,
            Action::Set {
                values,
                timeout,
                atomic,
                pause,
            } => set(&mut client, url, values, timeout, atomic, pause).await,
            Action::Rollback { timeout } => rollback(&mut client, url, timeout).await,
            Action::Watch { count } => watch(&mut client, url, count).await,
        }
    })
}

/// The fleet as etcd holds it now.
struct View {
    desired: Option<(Desired, i64)>,
    /// The revision of a desired state that is not readable (a `set`
    /// may replace it).
    unreadable: Option<i64>,
    unreadable_why: String,
    routers: BTreeMap<String, Value>,
    acks: BTreeMap<String, Ack>,
}

async fn view(client: &mut Client, url: &FleetUrl) -> Result<View, (i32, String)> {
    let got = client
        .get(url.all(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(etcd)?;
    let mut v = View {
        desired: None,
        unreadable: None,
        unreadable_why: String::new(),
        routers: BTreeMap::new(),
        acks: BTreeMap::new(),
    };
    for kv in got.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        if key == url.desired() {
            match Desired::from_json(kv.value()) {
                Ok(d) => v.desired = Some((d, kv.mod_revision())),
                Err(e) => {
                    v.unreadable = Some(kv.mod_revision());
                    v.unreadable_why = e;
                }
            }
        } else if let Some(name) = key.strip_prefix(&url.routers()) {
            if let Ok(doc) = serde_json::from_slice::<Value>(kv.value()) {
                v.routers.insert(name.to_string(), doc);
            }
        } else if let Some(name) = key.strip_prefix(&url.acks()) {
            if let Some(a) = Ack::from_json(kv.value()) {
                v.acks.insert(name.to_string(), a);
            }
        }
    }
    Ok(v)
}

fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

async fn status(client: &mut Client, url: &FleetUrl) -> Outcome {
    let v = view(client, url).await?;
    let mut out = String::new();
    match &v.desired {
        Some((d, rev)) => out.push_str(&format!(
            "desired: revision {rev} ({}) {}; by {}, {}: {}\n",
            d.phase.as_str(),
            show(&d.values),
            d.by,
            d.time,
            d.reason
        )),
        None => match v.unreadable {
            Some(rev) => out.push_str(&format!(
                "desired: revision {rev} is unreadable ({}); a `fleet set` replaces it\n",
                v.unreadable_why
            )),
            None => out.push_str("desired: nothing yet (no fleet set)\n"),
        },
    }
    out.push_str(&format!(
        "routers: {} registered (alive: each holds a lease)\n",
        v.routers.len()
    ));
    out.push_str(&format!(
        "{:<16} {:>8} {:>6}  {:<28} {}\n",
        "ROUTER", "APPLIED", "LAG", "VALUES", "DIVERGED"
    ));
    let last_commit = v
        .desired
        .as_ref()
        .filter(|(d, _)| d.phase == Phase::Commit)
        .map_or(0, |(_, r)| *r);
    for (name, doc) in &v.routers {
        let applied = doc["applied"].as_i64().unwrap_or(0);
        let values = doc["values"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, x)| {
                        format!(
                            "{k}={} (g{})",
                            x["value"].as_str().unwrap_or(""),
                            x["generation"].as_u64().unwrap_or(0)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let diverged = doc["diverged"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.iter()
                    .map(|d| {
                        format!(
                            "{} is {} (fleet: {})",
                            d["handler"].as_str().unwrap_or(""),
                            d["local"].as_str().unwrap_or("missing"),
                            d["desired"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|| "-".into());
        let gates = doc["gates_tripped"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| {
                format!(
                    " gate tripped: {}",
                    a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
                )
            })
            .unwrap_or_default();
        // Behind: the last commit is not applied here (a prepare or an
        // abort in flight changes nothing).
        let lag = if last_commit > 0 && applied < last_commit {
            "behind"
        } else {
            "0"
        };
        out.push_str(&format!(
            "{name:<16} {applied:>8} {lag:>6}  {values:<28} {diverged}{gates}\n"
        ));
    }
    print!("{out}");
    Ok(())
}

/// The values a first `set` of a handler goes back from: what the
/// routers report now, if they agree.
fn current_values(v: &View, handlers: &[String]) -> Result<BTreeMap<String, String>, (i32, String)> {
    let mut out = BTreeMap::new();
    for h in handlers {
        let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        // A router without the handler is refused in the prepare phase.
        for (name, doc) in &v.routers {
            if let Some(value) = doc["values"][h.as_str()]["value"].as_str() {
                seen.entry(value.to_string()).or_default().push(name);
            }
        }
        match seen.len() {
            0 => {}
            1 => {
                out.extend(seen.into_keys().next().map(|value| (h.clone(), value)));
            }
            _ => {
                let split: Vec<String> = seen.iter().map(|(v, n)| format!("{v} on {}", n.join(","))).collect();
                return Err((
                    1,
                    format!(
                        "the routers disagree on {h} ({}): set it on the fleet once they agree, or give every router the same value first",
                        split.join("; ")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Writes `next` at `PREFIX/desired` if it is still at `expected` (0:
/// absent). The new revision, or who won the race.
async fn write_desired(
    client: &mut Client,
    url: &FleetUrl,
    expected: i64,
    next: &Desired,
) -> Result<i64, (i32, String)> {
    let key = url.desired();
    let txn = Txn::new()
        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, expected)])
        .and_then([TxnOp::put(key.clone(), next.to_json(), None)]);
    let resp = client.txn(txn).await.map_err(etcd)?;
    if resp.succeeded() {
        return Ok(resp.header().map_or(0, |h| h.revision()));
    }
    let got = client.get(key, None).await.map_err(etcd)?;
    let (rev, who) = got
        .kvs()
        .first()
        .map(|kv| {
            let d = Desired::from_json(kv.value()).ok();
            (
                kv.mod_revision(),
                d.map(|d| format!("{} ({}: {})", d.by, d.reason, show(&d.values)))
                    .unwrap_or_default(),
            )
        })
        .unwrap_or((0, String::new()));
    Err((
        2,
        format!(
            "another change won: the desired state moved from revision {expected} to {rev} by {who}; this step wrote nothing: read `fleet status` and run again"
        ),
    ))
}

/// An error in a later step of a change, with what the earlier steps did.
fn after((code, message): (i32, String), done: &str) -> (i32, String) {
    (code, format!("{done}; then: {message}"))
}

/// Waits until every router in `names` acked `revision` (or left the
/// fleet: its lease ran out), or `timeout`: each router's ack. The
/// `watch` (on the whole fleet, started before the write) sees them.
async fn await_acks(
    watch: &mut WatchStream,
    url: &FleetUrl,
    names: &[String],
    revision: i64,
    timeout: Duration,
) -> Result<(BTreeMap<String, (Ack, Duration)>, Vec<String>), (i32, String)> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut acks: BTreeMap<String, (Ack, Duration)> = BTreeMap::new();
    let mut gone = Vec::new();
    while acks.len() + gone.len() < names.len() {
        let msg = match tokio::time::timeout_at(deadline, watch.message()).await {
            Err(_) => break,
            Ok(m) => m.map_err(etcd)?,
        };
        let Some(resp) = msg else { break };
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            if let Some(name) = key.strip_prefix(&url.acks()) {
                if ev.event_type() != EventType::Put || !names.iter().any(|n| n == name) {
                    continue;
                }
                if let Some(a) = Ack::from_json(kv.value()).filter(|a| a.revision == revision) {
                    gone.retain(|g| g != name);
                    acks.entry(name.to_string()).or_insert((a, started.elapsed()));
                }
            } else if let Some(name) = key.strip_prefix(&url.routers()) {
                if ev.event_type() == EventType::Delete
                    && names.iter().any(|n| n == name)
                    && !acks.contains_key(name)
                    && !gone.iter().any(|g| g == name)
                {
                    gone.push(name.to_string());
                }
            }
        }
    }
    Ok((acks, gone))
}

/// Prints each router's answer; the routers that did not answer well.
fn report(
    names: &[String],
    acks: &BTreeMap<String, (Ack, Duration)>,
    gone: &[String],
    timeout: Duration,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut out = String::new();
    for n in names {
        match acks.get(n) {
            Some((a, t)) => {
                out.push_str(&format!("  {n:<16} {:<9} {:>8.1} ms", a.status, t.as_secs_f64() * 1e3));
                if !a.error.is_empty() {
                    out.push_str(&format!("  {}", a.error));
                }
                out.push('\n');
                if !a.ok() {
                    failed.push(format!("{n} {}: {}", a.status, a.error));
                }
            }
            None if gone.contains(n) => {
                out.push_str(&format!(
                    "  {n:<16} gone      (its lease ran out: the router stopped)\n"
                ));
                failed.push(format!("{n} went away"));
            }
            None => {
                out.push_str(&format!("  {n:<16} no answer within {:.1} s\n", timeout.as_secs_f64()));
                failed.push(format!("{n} did not answer"));
            }
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
    failed
}

fn slowest(acks: &BTreeMap<String, (Ack, Duration)>) -> f64 {
    acks.values().map(|(_, t)| t.as_secs_f64() * 1e3).fold(0.0, f64::max)
}

async fn set(
    client: &mut Client,
    url: &FleetUrl,
    pairs: Vec<(String, String)>,
    timeout: Duration,
    atomic: bool,
    pause: Duration,
) -> Outcome {
    // Every ack of this change, and every router leaving, comes after
    // this watch starts: it starts before the routers are counted.
    let mut watch = crate::watch_from_now(client, url.all(), true).await.map_err(etcd)?;
    let v = view(client, url).await?;
    let names: Vec<String> = v.routers.keys().cloned().collect();
    if names.is_empty() {
        return Err((1, format!("no routers are registered under {}", url.prefix)));
    }
    let (base, base_previous, base_rev) = match &v.desired {
        Some((d, rev)) if d.phase == Phase::Prepare && d.deadline > epoch() => {
            return Err((
                2,
                format!(
                    "a change is in progress (revision {rev} by {}: {}); run again when it ends",
                    d.by,
                    show(&d.values)
                ),
            ))
        }
        // A prepare past its deadline (its operator went away) changed
        // nothing: the fleet runs its previous values.
        Some((d, rev)) if d.phase == Phase::Prepare => (d.previous.clone(), d.previous.clone(), *rev),
        Some((d, rev)) => (d.values.clone(), d.previous.clone(), *rev),
        None => (BTreeMap::new(), BTreeMap::new(), v.unreadable.unwrap_or(0)),
    };
    // The fleet's previous values; for a handler it never set, what the
    // routers run now.
    let handlers: Vec<String> = pairs
        .iter()
        .map(|(h, _)| h.clone())
        .filter(|h| !base.contains_key(h))
        .collect();
    let mut previous = base.clone();
    for (h, value) in current_values(&v, &handlers)? {
        previous.entry(h).or_insert(value);
    }
    let mut values = base.clone();
    for (h, value) in &pairs {
        values.insert(h.clone(), value.trim().to_string());
    }
    let started = Instant::now();
    let by = who();
    // 1. Prepare.
    let prepare = Desired {
        phase: Phase::Prepare,
        values: values.clone(),
        previous: previous.clone(),
        by: by.clone(),
        reason: "set".into(),
        time: now(),
        deadline: epoch() + timeout.as_secs_f64() + pause.as_secs_f64() + 1.0,
    };
    let r1 = write_desired(client, url, base_rev, &prepare).await?;
    println!(
        "fleet: revision {r1}: prepare {} on {} routers",
        show(&values),
        names.len()
    );
    let (acks, gone) = await_acks(&mut watch, url, &names, r1, timeout).await?;
    let failed = report(&names, &acks, &gone, timeout);
    if !failed.is_empty() {
        // Close the change: every router still runs the previous values,
        // and an abort asks none to apply anything.
        let close = Desired {
            phase: Phase::Abort,
            values: previous_or_base(&base, &previous),
            previous: base_previous.clone(),
            by,
            reason: format!("set refused in prepare (revision {r1}): {}", failed.join("; ")),
            time: now(),
            deadline: 0.0,
        };
        let r2 = write_desired(client, url, r1, &close)
            .await
            .map_err(|e| after(e, &format!("revision {r1} (the prepare) was written")))?;
        return Err((
            1,
            format!(
                "refused in the prepare phase, no router changed production (closed by revision {r2}): {}",
                failed.join("; ")
            ),
        ));
    }
    if !pause.is_zero() {
        println!(
            "fleet: prepared revision {r1} on all {} routers; committing in {:.1} s",
            names.len(),
            pause.as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        tokio::time::sleep(pause).await;
    }
    // 2. Commit.
    let commit = Desired {
        phase: Phase::Commit,
        values: values.clone(),
        previous: previous.clone(),
        by: by.clone(),
        reason: "set".into(),
        time: now(),
        deadline: 0.0,
    };
    let r2 = write_desired(client, url, r1, &commit).await.map_err(|e| {
        after(
            e,
            &format!("revision {r1} (the prepare) was written and every router was ready"),
        )
    })?;
    println!("fleet: revision {r2}: commit {}", show(&values));
    let (acks, gone) = await_acks(&mut watch, url, &names, r2, timeout).await?;
    let failed = report(&names, &acks, &gone, timeout);
    if failed.is_empty() {
        println!(
            "fleet: all {} routers applied revision {r2}: last ack {:.1} ms after the commit, {:.1} ms after the set began",
            names.len(),
            slowest(&acks),
            started.elapsed().as_secs_f64() * 1e3
        );
        // A gate may have rolled the fleet back meanwhile: say so.
        let now_at = view(client, url).await?;
        if let Some((d, rev)) = now_at.desired.filter(|(_, rev)| *rev != r2) {
            return Err((
                1,
                format!(
                    "revision {r2} was applied, but revision {rev} has replaced it since: {} by {}: {}",
                    show(&d.values),
                    d.by,
                    d.reason
                ),
            ));
        }
        return Ok(());
    }
    if !atomic {
        return Err((
            1,
            format!("not every router applied revision {r2}: {}", failed.join("; ")),
        ));
    }
    // All or none: a new revision with the previous values.
    let back = Desired {
        phase: Phase::Commit,
        values: previous_or_base(&base, &previous),
        previous: base_previous,
        by,
        reason: format!("atomic set: revision {r2} failed on {}", failed.join("; ")),
        time: now(),
        deadline: 0.0,
    };
    let r3 = write_desired(client, url, r2, &back).await.map_err(|e| {
        after(
            e,
            &format!(
                "revision {r2} (the commit) was written and failed on {}",
                failed.join("; ")
            ),
        )
    })?;
    println!("fleet: revision {r3}: rolling back to {}", show(&back.values));
    let live: Vec<String> = names.iter().filter(|n| !gone.contains(n)).cloned().collect();
    let (acks, gone3) = await_acks(&mut watch, url, &live, r3, timeout).await?;
    let back_failed = report(&live, &acks, &gone3, timeout);
    Err((
        1,
        format!(
            "revision {r2} failed ({}); the fleet was put back by revision {r3}{}",
            failed.join("; "),
            if back_failed.is_empty() {
                String::new()
            } else {
                format!(", which failed too on {}", back_failed.join("; "))
            }
        ),
    ))
}

/// The values before a change: the desired state's, with what the
/// routers ran for handlers the fleet had not set yet.
fn previous_or_base(base: &BTreeMap<String, String>, previous: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut v = base.clone();
    for (h, x) in previous {
        v.entry(h.clone()).or_insert_with(|| x.clone());
    }
    v
}

async fn rollback(client: &mut Client, url: &FleetUrl, timeout: Duration) -> Outcome {
    let v = view(client, url).await?;
    let Some((d, rev)) = v.desired else {
        return Err((1, "nothing to roll back: the fleet was never set".into()));
    };
    if d.phase == Phase::Prepare && d.deadline > epoch() {
        return Err((
            2,
            format!(
                "a change is in progress (revision {rev} by {}); run again when it ends",
                d.by
            ),
        ));
    }
    let running = d.running();
    if d.previous.is_empty() {
        return Err((1, format!("revision {rev} records no previous values")));
    }
    let names: Vec<String> = v.routers.keys().cloned().collect();
    let back = Desired {
        phase: Phase::Commit,
        values: d.previous.clone(),
        previous: running,
        by: who(),
        reason: format!("rollback of revision {rev}"),
        time: now(),
        deadline: 0.0,
    };
    let mut watch = crate::watch_from_now(client, url.all(), true).await.map_err(etcd)?;
    let r = write_desired(client, url, rev, &back).await?;
    println!("fleet: revision {r}: rollback to {}", show(&back.values));
    let (acks, gone) = await_acks(&mut watch, url, &names, r, timeout).await?;
    let failed = report(&names, &acks, &gone, timeout);
    if failed.is_empty() {
        println!(
            "fleet: all {} routers applied revision {r}: last ack {:.1} ms after the rollback",
            names.len(),
            slowest(&acks)
        );
        Ok(())
    } else {
        Err((
            1,
            format!("not every router applied revision {r}: {}", failed.join("; ")),
        ))
    }
}

async fn watch(client: &mut Client, url: &FleetUrl, count: Option<u64>) -> Outcome {
    let mut w = client
        .watch(url.all(), Some(WatchOptions::new().with_prefix()))
        .await
        .map_err(etcd)?;
    println!("fleet: watching {}{}", url.endpoint, url.prefix);
    let _ = std::io::stdout().flush();
    let mut seen = 0u64;
    while let Some(resp) = w.message().await.map_err(etcd)? {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let rev = kv.mod_revision();
            let line = if key == url.desired() {
                match Desired::from_json(kv.value()) {
                    Ok(d) => format!(
                        "desired {rev} {} {} by {}: {}",
                        d.phase.as_str(),
                        show(&d.values),
                        d.by,
                        d.reason
                    ),
                    Err(e) => format!("desired {rev} unreadable: {e}"),
                }
            } else if let Some(name) = key.strip_prefix(&url.acks()) {
                match (ev.event_type(), Ack::from_json(kv.value())) {
                    (EventType::Put, Some(a)) => format!(
                        "ack {name} {} {} {}{}",
                        a.revision,
                        a.phase.as_str(),
                        a.status,
                        if a.error.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", a.error)
                        }
                    ),
                    _ => continue,
                }
            } else if let Some(name) = key.strip_prefix(&url.routers()) {
                match ev.event_type() {
                    EventType::Delete => format!("router {name} gone"),
                    EventType::Put if kv.version() == 1 => format!("router {name} up"),
                    EventType::Put => {
                        let doc: Value = serde_json::from_slice(kv.value()).unwrap_or(Value::Null);
                        let diverged = doc["diverged"].as_array().map_or(0, Vec::len);
                        format!(
                            "router {name} applied {}{}",
                            doc["applied"].as_i64().unwrap_or(0),
                            if diverged > 0 {
                                format!(", {diverged} diverged")
                            } else {
                                String::new()
                            }
                        )
                    }
                }
            } else {
                continue;
            };
            println!("{line}");
            let _ = std::io::stdout().flush();
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
        }
    }
    Err((3, "etcd: the watch ended".into()))
}
