//! The dashboard's data: the running graph (`GET /api/v1/graph`), which
//! part of it carries production traffic, and the snapshots pushed to the
//! page over Server-Sent Events (`GET /api/v1/events`). The page itself
//! and its assets are compiled into the binary ([`asset`]): the machines
//! that run a router may have no internet.
//!
//! Which elements and connections carry production traffic is read off
//! the selectors' positions: a connection is live if a packet sent along
//! it can reach a sink (an element without outputs) through selectors
//! that let it pass. A selector is an element with a persistent `switch`
//! or `weights` handler: on its inputs when it has several (InputSwitch,
//! a merging CanarySwitch), else on its outputs (Switch, a splitting
//! CanarySwitch). ShadowCompare passes input N to output N only. Every
//! other element passes any input to any output.

use serde_json::{json, Map, Value};
use std::time::Instant;
use switchyard_control::Control;
use switchyard_core::HandlerTable;

/// The audit entries a snapshot carries.
pub const AUDIT_TAIL: usize = 12;

/// This process's boot: configuration generations start at 1 in every
/// process, so a page that outlives a restart tells graphs apart by it.
pub fn boot() -> u64 {
    static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ u64::from(std::process::id()).rotate_left(48)
    })
}

/// A file of the page: its bytes and content type.
pub fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    Some(match path {
        "/" | "/index.html" => (
            include_bytes!("../assets/index.html").as_slice(),
            "text/html; charset=utf-8",
        ),
        "/assets/dashboard.js" => (
            include_bytes!("../assets/dashboard.js").as_slice(),
            "text/javascript; charset=utf-8",
        ),
        "/assets/dashboard.css" => (
            include_bytes!("../assets/dashboard.css").as_slice(),
            "text/css; charset=utf-8",
        ),
        "/assets/dagre.min.js" => (
            include_bytes!("../assets/vendor/dagre.min.js").as_slice(),
            "text/javascript; charset=utf-8",
        ),
        _ => return None,
    })
}

/// The running graph: elements with their port counts, and connections
/// by element name.
pub fn graph(control: &Control) -> Value {
    let table = control.table();
    let elements: Vec<Value> = table
        .elements()
        .iter()
        .map(
            |e| json!({"name": e.name, "class": e.class, "inputs": e.inputs, "outputs": e.outputs, "copies": e.copies}),
        )
        .collect();
    let name = |i: usize| table.elements()[i].name.as_str();
    let wires: Vec<Value> = table
        .wires()
        .iter()
        .map(|w| json!({"from": name(w.from), "from_port": w.from_port, "to": name(w.to), "to_port": w.to_port}))
        .collect();
    json!({
        "boot": boot().to_string(),
        "config_generation": control.config_generation(),
        "elements": elements,
        "wires": wires,
    })
}

/// How an element lets packets through, for the liveness analysis.
#[derive(Clone, Debug, PartialEq)]
enum Pass {
    /// Any input to any output.
    Any,
    /// Only through the inputs marked true.
    Inputs(Vec<bool>),
    /// Only to the outputs marked true.
    Outputs(Vec<bool>),
    /// Input N to output N.
    Paired,
}

/// A selector's open positions from its `switch` or `weights` value.
fn open_positions(handler: &str, value: &str, ports: usize) -> Vec<bool> {
    match handler {
        "switch" => {
            let pos = value.trim().parse::<i64>().unwrap_or(-1);
            (0..ports).map(|p| p as i64 == pos).collect()
        }
        _ => {
            let w: Vec<u64> = value.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
            (0..ports).map(|p| w.get(p).is_some_and(|&x| x > 0)).collect()
        }
    }
}

fn pass_of(table: &HandlerTable, i: usize) -> Pass {
    let e = &table.elements()[i];
    if e.class == "ShadowCompare" {
        return Pass::Paired;
    }
    let Some(h) = e
        .handlers
        .iter()
        .find(|h| h.persistent && (h.name == "switch" || h.name == "weights"))
    else {
        return Pass::Any;
    };
    let value = h.read.as_ref().map(|r| r()).unwrap_or_default();
    let ports = if e.inputs > 1 { e.inputs } else { e.outputs };
    let mut open = open_positions(&h.name, &value, ports);
    // A pinned selector keeps established flows on their branch after a
    // flip: a position still holding flows (not `drained`) is live.
    if let Some(drained) = e
        .handlers
        .iter()
        .find(|h| h.name == "drained")
        .and_then(|h| h.read_param.as_ref())
    {
        for (k, o) in open.iter_mut().enumerate() {
            if !*o && drained(&k.to_string()).is_ok_and(|d| d.trim() == "false") {
                *o = true;
            }
        }
    }
    if e.inputs > 1 {
        Pass::Inputs(open)
    } else {
        Pass::Outputs(open)
    }
}

/// Which elements and which connections (in [`HandlerTable::wires`]
/// order) carry production traffic now: those on a path from a source to
/// a sink that the selectors let through. Elements with no ports at all
/// (scripts, gates, sockets) count as live: they are not on a branch.
pub fn liveness(table: &HandlerTable) -> (Vec<bool>, Vec<bool>) {
    let elements = table.elements();
    let wires = table.wires();
    let pass: Vec<Pass> = (0..elements.len()).map(|i| pass_of(table, i)).collect();
    let mut in_live: Vec<Vec<bool>> = elements.iter().map(|e| vec![false; e.inputs]).collect();
    let mut out_live: Vec<Vec<bool>> = elements.iter().map(|e| vec![false; e.outputs]).collect();
    let mut wire_live = vec![false; wires.len()];
    // The least fixed point, from "nothing is live": a loop that never
    // reaches a sink stays dark. Each round can only turn ports on, so
    // it ends within one round per port.
    loop {
        let mut changed = false;
        for (i, e) in elements.iter().enumerate() {
            for p in 0..e.inputs {
                let open = match &pass[i] {
                    Pass::Inputs(open) => open[p],
                    _ => true,
                };
                let onward = match &pass[i] {
                    _ if e.outputs == 0 => true,
                    Pass::Paired => out_live[i].get(p).copied().unwrap_or(false),
                    _ => out_live[i].iter().any(|&l| l),
                };
                if open && onward && !in_live[i][p] {
                    in_live[i][p] = true;
                    changed = true;
                }
            }
        }
        for (k, w) in wires.iter().enumerate() {
            let open = match &pass[w.from] {
                Pass::Outputs(open) => open.get(w.from_port as usize).copied().unwrap_or(false),
                _ => true,
            };
            let live = open && in_live[w.to].get(w.to_port as usize).copied().unwrap_or(false);
            if live && !wire_live[k] {
                wire_live[k] = true;
                if let Some(o) = out_live[w.from].get_mut(w.from_port as usize) {
                    *o = true;
                }
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Then forwards: what a source actually feeds along those wires.
    let mut fed: Vec<bool> = elements.iter().map(|e| e.inputs == 0 && e.outputs > 0).collect();
    loop {
        let mut changed = false;
        for (k, w) in wires.iter().enumerate() {
            if wire_live[k] && fed[w.from] && !fed[w.to] {
                fed[w.to] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (k, w) in wires.iter().enumerate() {
        wire_live[k] &= fed[w.from];
    }
    let element_live = elements
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (e.inputs == 0 && e.outputs == 0) || (fed[i] && (e.outputs == 0 || out_live[i].iter().any(|&l| l)))
        })
        .collect();
    (element_live, wire_live)
}

/// A read handler's value, if the element has that handler.
fn read(table: &HandlerTable, element: usize, handler: &str) -> Option<String> {
    table.elements()[element]
        .handlers
        .iter()
        .find(|h| h.name == handler)
        .and_then(|h| h.read.as_ref())
        .map(|r| r())
}

/// One push to the page: counters, selectors with their generations,
/// gates, the last reload, the audit log's tail, and liveness.
pub fn snapshot(control: &Control, started: Instant) -> Value {
    let table = control.table();
    let mut counts = Map::new();
    let mut controls = Vec::new();
    let mut gates = Vec::new();
    for (i, e) in table.elements().iter().enumerate() {
        if let Some(n) = read(&table, i, "count").and_then(|v| v.trim().parse::<u64>().ok()) {
            counts.insert(e.name.clone(), json!(n));
        }
        for h in e
            .handlers
            .iter()
            .filter(|h| h.persistent && h.write.is_some() && (h.name == "switch" || h.name == "weights"))
        {
            let value = h.read.as_ref().map(|r| r()).unwrap_or_default();
            let full = format!("{}.{}", e.name, h.name);
            controls.push(json!({
                "element": e.name,
                "class": e.class,
                "handler": h.name,
                // Pinned: a flip moves new flows; `force` moves them all.
                "pinned": e.handlers.iter().any(|x| x.name == "force"),
                "value": value.trim(),
                "generation": control.generation(&full),
                "inputs": e.inputs,
                "outputs": e.outputs,
            }));
        }
        if let Some(tripped) = read(&table, i, "tripped") {
            gates.push(json!({
                "element": e.name,
                "class": e.class,
                "tripped": tripped.trim() == "true",
                "reason": read(&table, i, "reason").unwrap_or_default().trim(),
                "checks": read(&table, i, "checks").and_then(|v| v.trim().parse::<u64>().ok()),
            }));
        }
    }
    let (element_live, wire_live) = liveness(&table);
    let standby: Vec<&str> = table
        .elements()
        .iter()
        .zip(&element_live)
        .filter(|(_, &l)| !l)
        .map(|(e, _)| e.name.as_str())
        .collect();
    let audit: Vec<Value> = control
        .audit_tail(AUDIT_TAIL)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!(l)))
        .collect();
    json!({
        "t": started.elapsed().as_secs_f64(),
        "boot": boot().to_string(),
        "config_generation": control.config_generation(),
        "counts": counts,
        "controls": controls,
        "gates": gates,
        "standby": standby,
        "wires_live": wire_live,
        "last_reload": control.last_reload().map(|r| json!({
            "threads_kept": r.threads_kept,
            "threads_replaced": r.threads_replaced,
            "threads_started": r.threads_started,
            "pause_us": r.pause.as_micros() as u64,
        })),
        "audit": audit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{load_text, HandlerTable};

    fn table(config: &str) -> HandlerTable {
        let registry = switchyard_elements::standard();
        load_text("test", config, &registry, &[]).expect("loads").1
    }

    fn standby(t: &HandlerTable) -> Vec<String> {
        let (live, _) = liveness(t);
        t.elements()
            .iter()
            .zip(live)
            .filter(|(_, l)| !l)
            .map(|(e, _)| e.name.clone())
            .collect()
    }

    const HUB: &str = "src :: InfiniteSource; src -> hub :: Tee(2);
        hub[0] -> old :: Counter -> [0]sel :: InputSwitch(SEL);
        hub[1] -> new :: Counter -> [1]sel; sel -> out :: Counter -> Discard;";

    #[test]
    fn the_branch_the_switch_does_not_select_is_standby() {
        let t = table(&HUB.replace("SEL", "0"));
        assert_eq!(standby(&t), ["new"]);
        let t = table(&HUB.replace("SEL", "1"));
        assert_eq!(standby(&t), ["old"]);
        // -1 drops everything: nothing upstream of the switch is live.
        let t = table(&HUB.replace("SEL", "-1"));
        let s = standby(&t);
        assert!(s.contains(&"src".to_string()) && s.contains(&"old".to_string()) && s.contains(&"out".to_string()));
        let (_, wires) = liveness(&t);
        assert!(wires.iter().all(|&w| !w));
    }

    #[test]
    fn a_flip_moves_the_live_path() {
        let t = table(&HUB.replace("SEL", "0"));
        t.write("sel.switch", "1").unwrap();
        assert_eq!(standby(&t), ["old"]);
        let (_, wires) = liveness(&t);
        let names = |k: usize| {
            let w = t.wires()[k];
            (t.elements()[w.from].name.clone(), t.elements()[w.to].name.clone())
        };
        for (k, live) in wires.iter().enumerate() {
            let (a, b) = names(k);
            assert_eq!(*live, a != "old" && b != "old", "{a} -> {b}");
        }
    }

    #[test]
    fn canaries_and_output_switches_open_positions_by_weight() {
        let t = table(
            "src :: InfiniteSource -> c :: CanarySwitch(WEIGHTS 100 0);
             c[0] -> old :: Counter -> out :: Discard; c[1] -> new :: Counter -> out;",
        );
        assert_eq!(standby(&t), ["new"]);
        t.write("c.weights", "90 10").unwrap();
        assert!(standby(&t).is_empty());
        let t = table(
            "src :: InfiniteSource -> s :: Switch(1);
             s[0] -> a :: Counter -> Discard; s[1] -> b :: Counter -> Discard;",
        );
        // a, and the Discard after it.
        let s = standby(&t);
        assert!(
            s.contains(&"a".to_string()) && !s.contains(&"b".to_string()) && s.len() == 2,
            "{s:?}"
        );
    }

    #[test]
    fn a_pinned_selector_dims_a_branch_once_it_holds_no_flows() {
        let t = table(
            "src :: InfiniteSource -> [0]flows :: FlowTable[0] -> hub :: Tee(2);
             hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0, PIN flows);
             hub[1] -> new :: Counter -> [1]sel; sel -> Discard;
             Idle -> [1]flows[1] -> Discard;",
        );
        assert_eq!(standby(&t), ["new"]);
        // No flow was ever pinned: after the flip the old branch is drained.
        t.write("sel.switch", "1").unwrap();
        assert_eq!(standby(&t), ["old"]);
    }

    #[test]
    fn shadow_compare_keeps_the_branches_apart() {
        let t = table(
            "src :: InfiniteSource -> hub :: Tee(2);
             hub[0] -> old :: Counter -> [0]cmp :: ShadowCompare;
             hub[1] -> new :: Counter -> [1]cmp;
             cmp[0] -> [0]sel :: InputSwitch(0); cmp[1] -> [1]sel; sel -> Discard;",
        );
        assert_eq!(standby(&t), ["new"]);
    }

    #[test]
    fn a_loop_that_reaches_no_sink_is_dark_and_portless_elements_are_not_standby() {
        let t = table(
            "src :: InfiniteSource -> x :: Counter -> [0]sel :: InputSwitch(0); sel -> Discard;
             Idle -> q :: Queue -> u :: Unqueue -> q;
             gate :: Watchdog(CONDITION \"x.count > 0\", WRITE \"sel.switch 0\");",
        );
        let s = standby(&t);
        assert!(s.contains(&"q".to_string()) && s.contains(&"u".to_string()), "{s:?}");
        assert!(
            !s.contains(&"gate".to_string()) && !s.contains(&"x".to_string()),
            "{s:?}"
        );
    }

    #[test]
    fn the_vendored_layout_library_is_the_one_recorded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/vendor");
        let record = std::fs::read_to_string(format!("{dir}/VENDOR")).unwrap();
        let want = record
            .lines()
            .find_map(|l| l.strip_prefix("sha256: "))
            .expect("VENDOR records a sha256");
        let out = std::process::Command::new("sha256sum")
            .arg(format!("{dir}/dagre.min.js"))
            .output()
            .expect("sha256sum runs");
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(got.split_whitespace().next(), Some(want));
        let (served, _) = asset("/assets/dagre.min.js").unwrap();
        assert_eq!(served, std::fs::read(format!("{dir}/dagre.min.js")).unwrap());
    }
}
