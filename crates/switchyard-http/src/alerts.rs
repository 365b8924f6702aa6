//! Rollback on alerts: Prometheus Alertmanager's webhook (payload
//! version 4) and the rules that turn a firing alert into rollback writes.
//!
//! A rule is `LABEL=VALUE[,LABEL=VALUE...] => HANDLER VALUE[; HANDLER
//! VALUE...]`: every firing alert whose labels include all the pairs has
//! the rule's writes made, through the control plane (audited as actor
//! `alertmanager`, with the alert's name and fingerprint). Like a
//! Watchdog, a rule may only move traffic back (checked when the rule is
//! read). Alertmanager resends on errors and on its repeat interval: an
//! alert (fingerprint and start) already acted on is answered 200 and not
//! acted on again; a resolved alert does nothing.

use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use switchyard_control::protocol::code;
use switchyard_control::{Control, Peer};

/// One rule: label pairs to match, writes to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub labels: Vec<(String, String)>,
    pub writes: Vec<(String, String)>,
}

/// Reads a rules file (`--alert-rules`): one rule per line as
/// [`Rule::parse`] takes it; blank lines and `#` comments are skipped. An
/// error names the file and line.
pub fn rules_file(path: &std::path::Path) -> Result<Vec<Rule>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rules_text(&text).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))
}

fn rules_text(text: &str) -> Result<Vec<Rule>, (usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| Rule::parse(l).map_err(|e| (n, e)))
        .collect()
}

impl Rule {
    /// Parses `alertname=X,severity=page => sel.switch 0; c.weights 100 0`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let (lhs, rhs) = text
            .split_once("=>")
            .ok_or_else(|| format!("alert rule '{text}': expected LABEL=VALUE,... => HANDLER VALUE; ..."))?;
        let labels = lhs
            .split(',')
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("alert rule '{text}': '{kv}' is not LABEL=VALUE"))?;
                Ok((k.trim().to_string(), v.trim().to_string()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if labels.iter().any(|(k, _)| k.is_empty()) {
            return Err(format!("alert rule '{text}': a label needs a name"));
        }
        let mut writes = Vec::new();
        for w in rhs.split(';').map(str::trim).filter(|w| !w.is_empty()) {
            let (h, v) = w.split_once(char::is_whitespace).unwrap_or((w, ""));
            let v = v.trim();
            if !switchyard_core::handler::moves_traffic_back(h, v) {
                return Err(format!(
                    "alert rule '{text}': '{h} {v}' does not move traffic back (`X.switch 0`, `X.weights N 0 ...`); an alert may only roll back"
                ));
            }
            writes.push((h.to_string(), v.to_string()));
        }
        if writes.is_empty() {
            return Err(format!("alert rule '{text}': no writes after '=>'"));
        }
        Ok(Rule { labels, writes })
    }

    fn matches(&self, labels: &Value) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v))
    }
}

/// Alerts acted on, remembered (the most recent [`REMEMBERED`]) so that a
/// resend does nothing more.
#[derive(Default)]
pub struct Seen {
    keys: HashSet<String>,
    order: VecDeque<String>,
}

/// Alerts remembered as acted on.
const REMEMBERED: usize = 10_000;

impl Seen {
    fn insert(&mut self, key: String) {
        if self.keys.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.keys.remove(&old);
                }
            }
        }
    }
}

/// Handles one webhook body: the HTTP status and a JSON summary.
pub fn webhook(body: &[u8], rules: &[Rule], seen: &Mutex<Seen>, control: &Control, peer: &str) -> (u16, Value) {
    let payload: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return (
                400,
                json!({"error": {"status": 400, "message": format!("not JSON: {e}")}}),
            )
        }
    };
    let Some(alerts) = payload.get("alerts").and_then(Value::as_array) else {
        return (
            400,
            json!({"error": {"status": 400, "message": "no 'alerts' array (Alertmanager webhook version 4)"}}),
        );
    };
    let mut applied = Vec::new();
    let mut duplicates = 0;
    let mut failed = Vec::new();
    let mut retry = false;
    for alert in alerts {
        if alert.get("status").and_then(Value::as_str) != Some("firing") {
            continue; // A resolved alert never promotes anything.
        }
        let labels = alert.get("labels").cloned().unwrap_or(Value::Null);
        let name = labels.get("alertname").and_then(Value::as_str).unwrap_or("");
        let fingerprint = alert.get("fingerprint").and_then(Value::as_str).unwrap_or("");
        let starts = alert.get("startsAt").and_then(Value::as_str).unwrap_or("");
        for (i, rule) in rules.iter().enumerate().filter(|(_, r)| r.matches(&labels)) {
            let key = format!("{fingerprint}\t{starts}\t{i}");
            if seen.lock().expect("seen lock").keys.contains(&key) {
                duplicates += 1;
                continue;
            }
            let reason = format!("alert {name} fingerprint {fingerprint}");
            let mut done = true;
            for (h, v) in &rule.writes {
                let who = Peer {
                    addr: Some(peer.to_string()),
                    ..Peer::default()
                };
                let reply = control.write_as(h, v, &who, Some(("alertmanager", &reason)));
                if reply.code == code::OK {
                    applied.push(json!({"alert": name, "fingerprint": fingerprint, "handler": h, "value": v}));
                } else {
                    let message = reply.lines.join(" ");
                    // Not made durable (the state or audit file failed):
                    // a resend may succeed. A refused value will not.
                    if message.contains("not applied") {
                        retry = true;
                        done = false;
                    }
                    failed.push(json!({"alert": name, "handler": h, "value": v, "message": message}));
                }
            }
            if done {
                seen.lock().expect("seen lock").insert(key);
            }
        }
    }
    let summary = json!({"applied": applied, "duplicates": duplicates, "failed": failed});
    (if retry { 503 } else { 200 }, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_may_only_roll_back() {
        let r = Rule::parse("alertname=ShadowDivergence, severity=page => sel.switch 0; c.weights 100 0").unwrap();
        assert_eq!(
            r.labels,
            [
                ("alertname".into(), "ShadowDivergence".into()),
                ("severity".into(), "page".into())
            ]
        );
        assert_eq!(
            r.writes,
            [("sel.switch".into(), "0".into()), ("c.weights".into(), "100 0".into())]
        );
        assert!(r.matches(&json!({"alertname": "ShadowDivergence", "severity": "page", "x": "y"})));
        assert!(!r.matches(&json!({"alertname": "ShadowDivergence"})));
        assert!(Rule::parse("alertname=X => sel.switch 1")
            .unwrap_err()
            .contains("an alert may only roll back"));
        assert!(Rule::parse("alertname=X => c.weights 0 100").is_err());
        assert!(Rule::parse("alertname=X sel.switch 0").is_err());
        assert!(Rule::parse("alertname=X =>").is_err());
    }

    #[test]
    fn a_rules_file_has_a_rule_a_line_and_errors_name_the_line() {
        let rules = rules_text(
            "# what pages roll back\nalertname=ShadowDivergence => sel.switch 0\n\n\
             alertname=Errors, team=edge => c.weights 100 0  # the canary\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].labels[1], ("team".into(), "edge".into()));
        let (line, e) = rules_text("alertname=A => sel.switch 0\nalertname=B => sel.switch 1\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(e.contains("may only roll back"), "{e}");
    }

    #[test]
    fn seen_alerts_are_bounded() {
        let mut s = Seen::default();
        for i in 0..REMEMBERED + 5 {
            s.insert(i.to_string());
        }
        assert_eq!(s.keys.len(), REMEMBERED);
        assert!(!s.keys.contains("0") && s.keys.contains(&(REMEMBERED + 4).to_string()));
    }
}
