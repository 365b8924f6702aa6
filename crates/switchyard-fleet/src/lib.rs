//! A fleet of routers moved as one, through etcd (its v3 API only).
//!
//! Each router runs an [`agent`]: it registers under a lease, watches the
//! fleet's desired state, checks (prepare) and applies (commit) it through
//! the same control plane as a local write, and acks. The operator's side
//! ([`operator`]) writes the desired state with a compare-and-set on its
//! revision, waits for every router's ack, and, if any router cannot
//! follow, writes a new revision that carries the previous values: all
//! routers change or none.
//!
//! The keys, under a PREFIX (`etcd://HOST:PORT/PREFIX`):
//!
//! | key | written by | what |
//! |---|---|---|
//! | `PREFIX/desired` | operators, a router's gate | [`Desired`]: phase, values, previous values |
//! | `PREFIX/routers/NAME` | the router, under its lease | config hash, persistent values and generations, applied revision, divergences |
//! | `PREFIX/acks/NAME` | the router, under its lease | the desired revision it answered, and how |
//!
//! The etcd client and its tokio runtime live in this crate, on threads of
//! their own: the core, the elements and the data path never see them.
#![forbid(unsafe_code)]

pub mod agent;
pub mod operator;

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Where the fleet lives: an etcd endpoint and a key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetUrl {
    /// `HOST:PORT[,HOST:PORT...]`: the cluster's endpoints, as given.
    pub endpoint: String,
    /// No trailing slash, never empty (`/switchyard` by default).
    pub prefix: String,
}

impl FleetUrl {
    /// Parses `etcd://HOST:PORT/PREFIX` (the prefix defaults to
    /// `/switchyard`).
    pub fn parse(text: &str) -> Result<FleetUrl, String> {
        let rest = text
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("'{text}': expected etcd://HOST:PORT/PREFIX"))?;
        let (endpoint, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if endpoint.split(',').any(|e| e.is_empty() || !e.contains(':')) {
            return Err(format!(
                "'{text}': expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX (each port is needed)"
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() { "/switchyard" } else { prefix };
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "'{text}': the prefix may not hold spaces or control characters"
            ));
        }
        Ok(FleetUrl {
            endpoint: endpoint.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The endpoints, for the client (it balances and fails over).
    pub fn endpoints(&self) -> Vec<&str> {
        self.endpoint.split(',').collect()
    }

    pub fn desired(&self) -> String {
        format!("{}/desired", self.prefix)
    }

    pub fn routers(&self) -> String {
        format!("{}/routers/", self.prefix)
    }

    pub fn acks(&self) -> String {
        format!("{}/acks/", self.prefix)
    }

    /// Everything of this fleet (a watch on it sees every change).
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }
}

/// A router's name: what its keys are called.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "fleet name '{name}': use 1 to 128 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// The two phases of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Check the values; change nothing; ack ready or rejected.
    Prepare,
    /// Apply the values; ack applied or error.
    Commit,
    /// A change refused in its prepare: the values are the ones running
    /// (nothing to apply, nothing to ack).
    Abort,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Commit => "commit",
            Phase::Abort => "abort",
        }
    }
}

/// The fleet's desired state, the value of `PREFIX/desired`.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub phase: Phase,
    /// Handler (`sel.switch`) to value, for every router.
    pub values: BTreeMap<String, String>,
    /// The values before this change: what `fleet rollback` goes back to.
    pub previous: BTreeMap<String, String>,
    /// Who wrote it (`user@host`, or `router NAME`).
    pub by: String,
    /// Why (`set`, `rollback of revision N`, `gate g tripped on r3: ...`).
    pub reason: String,
    /// RFC 3339.
    pub time: String,
    /// Until when a prepare may hold the fleet (seconds since the epoch);
    /// another operator may take over a prepare past it.
    pub deadline: f64,
}

fn map_json(m: &BTreeMap<String, String>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn json_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Desired {
    /// What the fleet runs while this is the desired state: a prepare
    /// has changed nothing yet; an abort's values are the running ones.
    pub fn running(&self) -> BTreeMap<String, String> {
        match self.phase {
            Phase::Commit | Phase::Abort => self.values.clone(),
            Phase::Prepare => self.previous.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        json!({
            "phase": self.phase.as_str(),
            "values": map_json(&self.values),
            "previous": map_json(&self.previous),
            "by": self.by,
            "reason": self.reason,
            "time": self.time,
            "deadline": self.deadline,
        })
        .to_string()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Desired, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("the desired state is not JSON: {e}"))?;
        let phase = match v["phase"].as_str() {
            Some("prepare") => Phase::Prepare,
            Some("commit") => Phase::Commit,
            Some("abort") => Phase::Abort,
            other => {
                return Err(format!(
                    "the desired state's phase {other:?}: expected prepare, commit or abort"
                ))
            }
        };
        if !v["values"].is_object() {
            return Err("the desired state has no values".into());
        }
        // Values are text, as handlers take them: anything else would be
        // acked as applied having applied nothing.
        for key in ["values", "previous"] {
            if let Some((h, _)) = v[key].as_object().and_then(|o| o.iter().find(|(_, x)| !x.is_string())) {
                return Err(format!("the desired state's {key}: {h} is not a string"));
            }
        }
        Ok(Desired {
            phase,
            values: json_map(&v["values"]),
            previous: json_map(&v["previous"]),
            by: v["by"].as_str().unwrap_or("").to_string(),
            reason: v["reason"].as_str().unwrap_or("").to_string(),
            time: v["time"].as_str().unwrap_or("").to_string(),
            deadline: v["deadline"].as_f64().unwrap_or(0.0),
        })
    }
}

/// How a router answered a desired revision.
#[derive(Clone, Debug, PartialEq)]
pub struct Ack {
    /// The etcd revision of the desired state answered.
    pub revision: i64,
    pub phase: Phase,
    /// `ready` / `rejected` (prepare), `applied` / `error` (commit).
    pub status: String,
    pub error: String,
}

impl Ack {
    pub fn ok(&self) -> bool {
        self.status == "ready" || self.status == "applied"
    }

    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("revision".into(), json!(self.revision));
        m.insert("phase".into(), json!(self.phase.as_str()));
        m.insert("status".into(), json!(self.status));
        if !self.error.is_empty() {
            m.insert("error".into(), json!(self.error));
        }
        m.insert("time".into(), json!(now()));
        Value::Object(m).to_string()
    }

    pub fn from_json(bytes: &[u8]) -> Option<Ack> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        Some(Ack {
            revision: v["revision"].as_i64()?,
            phase: match v["phase"].as_str()? {
                "prepare" => Phase::Prepare,
                "commit" => Phase::Commit,
                "abort" => Phase::Abort,
                _ => return None,
            },
            status: v["status"].as_str()?.to_string(),
            error: v["error"].as_str().unwrap_or("").to_string(),
        })
    }
}

/// Now, RFC 3339.
pub fn now() -> String {
    switchyard_control::time::rfc3339(std::time::SystemTime::now())
}

/// Seconds since the epoch.
pub fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `a=1 b=2`, for lines a person reads.
pub fn show(values: &BTreeMap<String, String>) -> String {
    if values.is_empty() {
        return "(nothing)".into();
    }
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", if v.contains(' ') { format!("'{v}'") } else { v.clone() }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts a watch on `key` (a prefix if `prefix`) from now on, and waits
/// until etcd confirms it. Such a watcher is in step with the store:
/// etcd sends it each change at once. (One that starts at a past
/// revision is caught up by a background loop every 100 ms, which would
/// add up to 100 ms to every ack.)
pub async fn watch_from_now(
    client: &mut etcd_client::Client,
    key: String,
    prefix: bool,
) -> Result<etcd_client::WatchStream, etcd_client::Error> {
    let options = etcd_client::WatchOptions::new();
    let options = if prefix { options.with_prefix() } else { options };
    let mut stream = client.watch(key, Some(options)).await?;
    while let Some(resp) = stream.message().await? {
        if resp.created() {
            return Ok(stream);
        }
    }
    Err(etcd_client::Error::WatchError(
        "the watch ended before it started".into(),
    ))
}

/// The connect options every client here uses: short timeouts, so a lost
/// etcd is noticed within seconds, never hangs a command.
pub fn connect_options() -> etcd_client::ConnectOptions {
    etcd_client::ConnectOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(2))
        .with_timeout(std::time::Duration::from_secs(3))
        .with_keep_alive(std::time::Duration::from_secs(2), std::time::Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_an_endpoint_and_a_prefix() {
        let u = FleetUrl::parse("etcd://127.0.0.1:2379/prod/edge/").unwrap();
        assert_eq!(u.endpoint, "127.0.0.1:2379");
        assert_eq!(u.prefix, "/prod/edge");
        assert_eq!(u.desired(), "/prod/edge/desired");
        assert_eq!(u.routers(), "/prod/edge/routers/");
        assert_eq!(FleetUrl::parse("etcd://h:1").unwrap().prefix, "/switchyard");
        assert!(FleetUrl::parse("http://h:1/x").is_err());
        assert!(FleetUrl::parse("etcd://h/x").is_err());
        let u = FleetUrl::parse("etcd://a:1,b:2/p").unwrap();
        assert_eq!(u.endpoints(), ["a:1", "b:2"]);
        assert!(FleetUrl::parse("etcd://a:1,b/p").is_err());
        assert!(FleetUrl::parse("etcd://h:1/a b").is_err());
    }

    #[test]
    fn names_are_key_safe() {
        assert!(check_name("edge-01.fra").is_ok());
        for bad in ["", "a/b", "a b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn desired_and_acks_round_trip() {
        let d = Desired {
            phase: Phase::Prepare,
            values: [("sel.switch".to_string(), "1".to_string())].into(),
            previous: [("sel.switch".to_string(), "0".to_string())].into(),
            by: "alice@host".into(),
            reason: "set".into(),
            time: now(),
            deadline: 12.5,
        };
        assert_eq!(Desired::from_json(d.to_json().as_bytes()).unwrap(), d);
        assert!(Desired::from_json(b"{\"phase\":\"maybe\",\"values\":{}}").is_err());
        assert!(Desired::from_json(b"not json").is_err());
        assert!(Desired::from_json(br#"{"phase":"commit","values":{"sel.switch":1}}"#).is_err());
        let mut abort = d.clone();
        abort.phase = Phase::Abort;
        assert_eq!(Desired::from_json(abort.to_json().as_bytes()).unwrap(), abort);
        let a = Ack {
            revision: 9,
            phase: Phase::Commit,
            status: "error".into(),
            error: "no".into(),
        };
        assert_eq!(Ack::from_json(a.to_json().as_bytes()).unwrap(), a);
        assert_eq!(show(&d.values), "sel.switch=1");
    }
}
