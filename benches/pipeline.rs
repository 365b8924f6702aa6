//! Whole-pipeline benchmark: runs real configurations on the real runtime
//! and prints packets per second, plus peak memory.
//!
//!     cargo run --release -p switchyard --bin bench -- [PACKETS] [--repeat N]
//!
//! Each packet is really created (copied from the template), counted,
//! shared by Tee, selected by InputSwitch and freed back to the pool.
//! Figures from one run are comparable with each other; across runs and
//! machines, compare ratios.

use std::time::Instant;
use switchyard_core::run_text;

const HUB_SWITCH: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;";

const SHADOW: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]cmp :: ShadowCompare(MASK 24/2);
hub[1] -> new :: Counter -> [1]cmp;
cmp[0] -> [0]sel :: InputSwitch(0); cmp[1] -> [1]sel;
sel -> out :: Counter -> Discard;";

/// 10000 flows (the source varies the UDP source port, which costs a
/// write per packet): header parsing, hashing and the per-flow cache.
const CANARY: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true, FLOWS 10000) -> c :: CanarySwitch(WEIGHTS 95 5);
c[0] -> out :: Counter -> Discard; c[1] -> out;";

/// The same source into a plain Discard: what the canary adds is the
/// difference.
const FLOWS_DISCARD: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true, FLOWS 10000) -> out :: Counter -> Discard;";

const SOURCE_DISCARD: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> d :: Discard;";

const QUEUE: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> q :: Queue(4096, BLOCK true) -> Unqueue -> out :: Counter -> Discard;";

const CLASSIFY: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> c :: Classifier(12/0806, 12/0800 23/11, -);
c[0] -> Discard; c[1] -> out :: Counter -> Discard; c[2] -> Discard;";

/// Peak resident set size of this process, from /proc (kB).
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn run(name: &str, template: &str, n: u64, check: &str) -> f64 {
    let registry = switchyard_elements::standard();
    let text = template.replace("$N", &n.to_string());
    let start = Instant::now();
    let handlers = run_text(&text, &registry).expect("benchmark config is valid");
    let secs = start.elapsed().as_secs_f64();
    let got: u64 = handlers.read(check).expect("handler").trim().parse().expect("number");
    let mpps = n as f64 / secs / 1e6;
    println!("{name:<22} {n:>11} packets  {secs:>7.3} s  {mpps:>7.2} Mpps  ({check} = {got})");
    assert!(got > 0, "{check} counted nothing");
    mpps
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(50_000_000);
    let repeat: usize = args
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3);
    let only: Option<&String> = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1));
    println!("whole-pipeline benchmark, single router thread per pipeline, best of {repeat}");
    let cases = [
        ("hub/switch", HUB_SWITCH, "out.count"),
        ("hub/switch + shadow", SHADOW, "out.count"),
        ("10k flows -> discard", FLOWS_DISCARD, "out.count"),
        ("canary (10k flows)", CANARY, "out.count"),
        ("source -> discard", SOURCE_DISCARD, "d.count"),
        ("classifier", CLASSIFY, "out.count"),
        ("queue (2 threads)", QUEUE, "out.count"),
    ];
    let mut best = Vec::new();
    for (name, cfg, check) in cases {
        if only.is_some_and(|o| !name.starts_with(o.as_str())) {
            continue;
        }
        let b = (0..repeat).map(|_| run(name, cfg, n, check)).fold(0.0, f64::max);
        best.push((name, b));
    }
    println!("--");
    for (name, b) in &best {
        println!("{name:<22} best {b:>7.2} Mpps");
    }
    if let (Some(h), Some(s)) = (
        best.iter().find(|b| b.0 == "hub/switch"),
        best.iter().find(|b| b.0 == "source -> discard"),
    ) {
        println!(
            "hub/switch costs {:.1} ns/packet; source -> discard {:.1} ns/packet",
            1e3 / h.1,
            1e3 / s.1
        );
    }
    let find = |name: &str| best.iter().find(|b| b.0 == name).map(|b| b.1);
    if let (Some(h), Some(s)) = (find("hub/switch"), find("hub/switch + shadow")) {
        println!(
            "shadow comparison keeps {:.0}% of the hub/switch throughput",
            100.0 * s / h
        );
    }
    println!("peak RSS: {} kB", peak_rss_kb());
}
