//! `--metrics ADDR`: the router's handlers as Prometheus metrics over
//! HTTP (`GET /metrics`), for the tools operators already use.
//!
//! Every numeric read handler of every element becomes a gauge named
//! `switchyard_<handler>` labelled with the element and its class
//! (`switchyard_count{element="old",class="Counter"}`); booleans are 0/1;
//! a multi-number value (`weights 90 10`) is one sample per position with
//! an `index` label. Control writes and the gate's writes are counters.

use crate::control::Control;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Handlers every element has that are not measurements.
const NOT_METRICS: &[&str] = &[
    "name",
    "class",
    "config",
    "ports",
    "handlers",
    "differences",
    "reason",
    "error",
    "method",
];

fn numbers(value: &str) -> Option<Vec<f64>> {
    let v: Option<Vec<f64>> = value
        .split_whitespace()
        .map(|t| match t {
            "true" => Some(1.0),
            "false" => Some(0.0),
            t => t.parse::<f64>().ok().filter(|x| x.is_finite()),
        })
        .collect();
    v.filter(|v| !v.is_empty())
}

/// Renders the exposition text for the router behind `control`.
pub fn render(control: &Control, started: Instant) -> String {
    let table = control.table();
    let mut registry = Registry::default();
    let mut families: BTreeMap<String, Family<Labels, FloatGauge>> = BTreeMap::new();
    for e in table.elements() {
        for h in e
            .handlers
            .iter()
            .filter(|h| h.read.is_some() && !NOT_METRICS.contains(&h.name.as_str()))
        {
            let Some(values) = numbers(&(h.read.as_ref().expect("readable"))()) else {
                continue;
            };
            let family = families.entry(h.name.clone()).or_default();
            for (i, v) in values.iter().enumerate() {
                let mut labels = vec![
                    ("element".to_string(), e.name.clone()),
                    ("class".to_string(), e.class.to_string()),
                ];
                if values.len() > 1 {
                    labels.push(("index".to_string(), i.to_string()));
                }
                family.get_or_create(&labels).set(*v);
            }
        }
    }
    for (name, family) in families {
        registry.register(
            format!("switchyard_{name}"),
            format!("the '{name}' read handler of each element"),
            family,
        );
    }
    let writes = Family::<Labels, Counter>::default();
    let stats = control.write_stats();
    for (actor, result, n) in stats {
        writes
            .get_or_create(&vec![("actor".to_string(), actor), ("result".to_string(), result)])
            .inc_by(n);
    }
    registry.register(
        "switchyard_control_writes",
        "handler writes through the control plane, by actor and result",
        writes,
    );
    let uptime = FloatGauge::default();
    uptime.set(started.elapsed().as_secs_f64());
    registry.register("switchyard_uptime_seconds", "time since the router started", uptime);
    let generation = Gauge::<i64>::default();
    generation.set(control.config_generation() as i64);
    registry.register(
        "switchyard_config_generation",
        "configurations loaded: 1 plus accepted reloads",
        generation,
    );
    if let Some(r) = control.last_reload() {
        let pause = FloatGauge::default();
        pause.set(r.pause.as_secs_f64());
        registry.register(
            "switchyard_reload_pause_seconds",
            "how long the last reload paused the threads it replaced (0: none)",
            pause,
        );
        let threads = Family::<Labels, FloatGauge>::default();
        for (kind, n) in [("kept", r.threads_kept), ("replaced", r.threads_replaced)] {
            threads
                .get_or_create(&vec![("kind".to_string(), kind.to_string())])
                .set(n as f64);
        }
        registry.register(
            "switchyard_reload_threads",
            "threads the last reload kept running or replaced",
            threads,
        );
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}
