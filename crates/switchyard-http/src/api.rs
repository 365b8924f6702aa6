//! The JSON API, `api/v1`: a door onto the same control plane as the
//! Unix socket. Reads and writes go through [`Control`], so a write is
//! validated, audited (actor `http`, the token's name as the reason) and
//! persisted exactly as one made with `switchyard ctl`. Pure over a
//! request's parts: the server in `lib.rs` reads the body and the token.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/v1/elements` | every element: name, class, handlers and their modes |
//! | `GET /api/v1/elements/{e}/{h}` | a handler's value (`?param=` for a read with a parameter), and its generation if persistent |
//! | `PUT /api/v1/elements/{e}/{h}` | writes the body; `If-Match: N` writes only at generation N |
//! | `GET /api/v1/graph` | the running graph: elements with their port counts, connections |
//! | `GET /api/v1/events` | Server-Sent Events: a snapshot every 500 ms (counters, selectors, gates, audit tail, the live path) |
//! | `GET /api/v1/whoami` | the token's name and scope (`read` or `write`) |
//! | `GET /api/v1/status` | configuration generation, uptime, the last reload |
//! | `GET /api/v1/audit?n=N` | the audit log's last N entries |
//! | `POST /api/v1/reload`, `/api/v1/reload/check` | replace (or check) the configuration with the body |
//! | `POST /api/v1/rollback-config` | go back to the configuration before the last reload |
//! | `POST /api/v1/alertmanager` | Alertmanager's webhook: firing alerts matching a rule roll back ([`crate::alerts`]) |

use crate::tokens::{Grant, Scope};
use serde_json::{json, Value};
use std::time::Instant;
use switchyard_control::protocol::{code, Reply};
use switchyard_control::{Control, Peer};

/// An answer: HTTP status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

fn ok(body: Value) -> Answer {
    Answer { status: 200, body }
}

/// An error in the API's one shape: `{"error": {"status", "code", "message"}}`,
/// `code` being the control protocol's (510 no element...) where there is one.
pub fn error(status: u16, protocol: Option<u16>, message: impl Into<String>) -> Answer {
    Answer {
        status,
        body: json!({"error": {"status": status, "code": protocol, "message": message.into()}}),
    }
}

/// A control-plane reply as an answer: its code mapped to HTTP.
fn from_reply(reply: &Reply) -> Answer {
    let message = reply.lines.join("\n");
    let status = match reply.code {
        code::OK | code::OK_WARN => 200,
        code::NO_ELEMENT | code::NO_HANDLER => 404,
        code::PERMISSION => 405,
        code::SYNTAX => 400,
        code::DATA_TOO_BIG => 413,
        code::HANDLER_ERROR if message.contains("generation is ") => 412,
        code::HANDLER_ERROR => 422,
        _ => 500,
    };
    error(status, Some(reply.code), message)
}

/// A request as the API sees it.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub if_match: Option<&'a str>,
    pub body: &'a [u8],
    /// The bearer token's grant, if one was given and valid.
    pub grant: Option<Grant>,
    pub peer: String,
    /// The alert rules and the alerts already acted on.
    pub alerts: (&'a [crate::alerts::Rule], &'a std::sync::Mutex<crate::alerts::Seen>),
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `%XX` decoding for a query value (`+` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Who may: with a token file every call needs a token (reads a read or
/// write one); without one, reads are open (loopback only) and nothing
/// may write. The refusal, if any.
pub fn refuse(grant: Option<&Grant>, write: bool, tokens_required: bool) -> Option<Answer> {
    match (grant, write) {
        (None, true) => Some(error(
            401,
            None,
            "a write needs a bearer token (Authorization: Bearer ...)",
        )),
        (None, false) if tokens_required => Some(error(
            401,
            None,
            "a bearer token is required (Authorization: Bearer ...)",
        )),
        (Some(g), true) if g.scope < Scope::Write => {
            Some(error(403, None, format!("token '{}' may only read", g.name)))
        }
        _ => None,
    }
}

/// Answers one API call, which [`refuse`] let through (the server asks
/// it before reading the body).
pub fn answer(call: &Call<'_>, control: &Control, started: Instant) -> Answer {
    let parts: Vec<&str> = call.path.trim_start_matches("/api/v1/").split('/').collect();
    match (call.method, parts.as_slice()) {
        ("GET", ["elements"]) => elements(control),
        ("GET", ["graph"]) => ok(crate::dashboard::graph(control)),
        ("GET", ["whoami"]) => ok(match &call.grant {
            Some(g) => json!({"token": g.name, "scope": if g.scope >= Scope::Write { "write" } else { "read" }}),
            None => json!({"token": null, "scope": "read"}),
        }),
        ("GET", ["elements", element, handler]) => read(control, element, handler, call.query),
        ("PUT", ["elements", element, handler]) => put(control, call, element, handler),
        ("GET", ["status"]) => ok(json!({
            "config_generation": control.config_generation(),
            "uptime_seconds": started.elapsed().as_secs_f64(),
            "last_reload": control.last_reload().map(|r| json!({
                "threads_kept": r.threads_kept,
                "threads_replaced": r.threads_replaced,
                "threads_started": r.threads_started,
                "carried": r.carried,
                "pause_us": r.pause.as_micros() as u64,
                "dropped_holding": r.dropped_holding,
            })),
        })),
        ("POST", ["alertmanager"]) => {
            let (status, body) = crate::alerts::webhook(call.body, call.alerts.0, call.alerts.1, control, &call.peer);
            Answer { status, body }
        }
        ("GET", ["audit"]) => {
            let n = query_param(call.query, "n")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(20)
                .min(1000);
            let entries: Vec<Value> = control
                .audit_tail(n)
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!(l)))
                .collect();
            ok(json!({ "entries": entries }))
        }
        ("POST", ["reload"]) | ("POST", ["reload", "check"]) | ("POST", ["rollback-config"]) => {
            let peer = peer(call);
            let text = String::from_utf8_lossy(call.body);
            let r = match parts.as_slice() {
                ["reload"] => control.reload(&text, &peer),
                ["reload", "check"] => control.reload_check(&text),
                _ => control.rollback_config(&peer),
            };
            match r {
                Ok(()) => ok(json!({ "ok": true, "config_generation": control.config_generation() })),
                Err(e) => error(422, Some(code::HANDLER_ERROR), e),
            }
        }
        (_, ["elements"] | ["elements", _, _] | ["status"] | ["audit"] | ["reload"] | ["reload", "check"])
        | (_, ["rollback-config"] | ["graph"] | ["whoami"] | ["events"]) => {
            error(405, None, format!("{} is not allowed on {}", call.method, call.path))
        }
        _ => error(404, None, format!("no API at {}", call.path)),
    }
}

fn peer(call: &Call<'_>) -> Peer {
    Peer {
        addr: Some(call.peer.clone()),
        ..Peer::default()
    }
}

fn elements(control: &Control) -> Answer {
    let table = control.table();
    let list: Vec<Value> = table
        .elements()
        .iter()
        .map(|e| {
            let handlers: Vec<Value> = e
                .handlers
                .iter()
                .filter(|h| !h.proxy)
                .map(|h| json!({"name": h.name, "mode": h.mode(), "persistent": h.persistent}))
                .collect();
            json!({"name": e.name, "class": e.class, "handlers": handlers})
        })
        .collect();
    ok(json!({ "elements": list }))
}

fn read(control: &Control, element: &str, handler: &str, query: &str) -> Answer {
    let name = format!("{element}.{handler}");
    let param = query_param(query, "param").map(unescape).unwrap_or_default();
    let reply = control.read(&name, &param);
    if reply.code != code::OK {
        return from_reply(&reply);
    }
    let value = String::from_utf8_lossy(reply.data.as_deref().unwrap_or_default()).into_owned();
    let persistent = control.table().find(&name).is_ok_and(|h| h.persistent);
    let mut body = json!({"handler": name, "value": value});
    if persistent {
        body["generation"] = json!(control.generation(&name));
    }
    ok(body)
}

fn put(control: &Control, call: &Call<'_>, element: &str, handler: &str) -> Answer {
    let Ok(value) = std::str::from_utf8(call.body) else {
        return error(400, None, "the value must be UTF-8 text");
    };
    let name = format!("{element}.{handler}");
    // If-Match: the generation the client read (quotes allowed, as ETags).
    let target = match call.if_match.map(|g| g.trim().trim_matches('"')) {
        Some(g) if g.parse::<u64>().is_err() => {
            return error(400, None, format!("If-Match '{g}': expected a generation number"))
        }
        Some(g) => format!("{name}@{g}"),
        None => name.clone(),
    };
    let grant = call.grant.as_ref().map_or("", |g| g.name.as_str());
    let reason = format!("token {grant}");
    let reply = control.write_as(&target, value, &peer(call), Some(("http", &reason)));
    if reply.code != code::OK {
        return from_reply(&reply);
    }
    let persistent = control.table().find(&name).is_ok_and(|h| h.persistent);
    let mut body = json!({"handler": name, "ok": true});
    if persistent {
        body["generation"] = json!(control.generation(&name));
    }
    ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_unescaped() {
        assert_eq!(query_param("a=1&param=10.0.0.1", "param"), Some("10.0.0.1"));
        assert_eq!(unescape("10.0.0.1%2F24+x"), "10.0.0.1/24 x");
        assert_eq!(unescape("%"), "%");
        assert_eq!(unescape("%zz"), "%zz");
    }
}
