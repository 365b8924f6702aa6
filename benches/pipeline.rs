//! Whole-pipeline benchmark: runs real configurations on the real runtime
//! and prints packets per second, plus peak memory.
//!
//!     cargo run --release -p switchyard --bin bench -- [PACKETS] [--repeat N] [--only PREFIX | --case NAME]
//!     cargo run --release -p switchyard --bin bench -- [PACKETS] --print-config NAME
//!
//! `--print-config` prints a case's configuration as Click runs it (the
//! source's frame as DATA, BURST 32; both routers run that text), so that
//! benches/click_ip_compare.sh measures Click on the same frame, routes and
//! rules.
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

/// The hub/switch graph with 100k active flows, without and with pinning
/// (issue #12's target: pinned at 50% or more of unpinned, same run).
const HUB_SWITCH_100K: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true, FLOWS 100000) -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;";

const PINNED_100K: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true, FLOWS 100000)
    -> flows :: FlowTable(CAPACITY 200000) -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0, PIN flows);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;";

const SOURCE_DISCARD: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> d :: Discard;";

const QUEUE: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> q :: Queue(4096, BLOCK true) -> Unqueue -> out :: Counter -> Discard;";

const CLASSIFY: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> c :: Classifier(12/0806, 12/0800 23/11, -);
c[0] -> Discard; c[1] -> out :: Counter -> Discard; c[2] -> Discard;";

/// Click's IP forwarding chain on a 64-byte UDP frame, with 1002 routes in
/// the table ($ROUTES): the figure issue #11 compares with Click's 4.3 Mpps.
const ROUTE: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> Strip(14) -> CheckIPHeader -> GetIPAddress(16)
-> rt :: RadixIPLookup($ROUTES);
rt[0] -> DecIPTTL -> EtherEncap(0x0800, 1:1:1:1:1:1, 2:2:2:2:2:2) -> out :: Counter -> Discard;
rt[1] -> Discard;";

/// A firewall of $RULES rules like `deny src net A.B.0.0/16 and udp dst port
/// P`, then `allow all`; the frame matches no deny rule, so every rule is
/// in play (Click: 1.07 Mpps with 100 rules).
const FILTER: &str = "InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> Strip(14) -> CheckIPHeader
-> IPFilter($RULES allow all) -> out :: Counter -> Discard;";

/// A reproducible pseudo-random sequence for generated tables.
fn lcg(x: &mut u64) -> u32 {
    *x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*x >> 33) as u32
}

/// 1000 distinct random prefixes (/8 to /24, none covering 10.0.0.0/8) to output 1,
/// 10.0.0.0/24 via a gateway to output 0, and a default route: 1002.
fn routes() -> String {
    let mut x = 7;
    let mut r = String::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 1000 {
        let len = 8 + lcg(&mut x) % 17;
        let mut a = lcg(&mut x) & (u32::MAX << (32 - len));
        if a >> 24 == 10 || a == 0 {
            a ^= 0x4000_0000;
        }
        if !seen.insert((a, len)) {
            continue;
        }
        let [b0, b1, b2, b3] = a.to_be_bytes();
        r.push_str(&format!("{b0}.{b1}.{b2}.{b3}/{len} 1, "));
    }
    r.push_str("10.0.0.0/24 10.0.0.254 0, 0.0.0.0/0 1");
    r
}

fn rules(n: usize) -> String {
    let mut x = 11;
    let mut r = String::new();
    for _ in 0..n {
        let (a, b) = (20 + lcg(&mut x) % 200, lcg(&mut x) % 256);
        let port = 1 + lcg(&mut x) % 5000;
        r.push_str(&format!("deny src net {a}.{b}.0.0/16 and udp dst port {port}, "));
    }
    r
}

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

/// One benchmark: a configuration, the counter that must have counted,
/// the size of its generated firewall, and how many copies of it run
/// (`Copies(N)`, the packets shared between them).
struct Case {
    name: &'static str,
    template: &'static str,
    check: &'static str,
    rules: usize,
    copies: u64,
}

const fn case(name: &'static str, template: &'static str, check: &'static str) -> Case {
    Case {
        name,
        template,
        check,
        rules: 0,
        copies: 1,
    }
}

const CASES: [Case; 14] = [
    case("hub/switch", HUB_SWITCH, "out.count"),
    case("hub/switch + shadow", SHADOW, "out.count"),
    case("10k flows -> discard", FLOWS_DISCARD, "out.count"),
    case("canary (10k flows)", CANARY, "out.count"),
    case("hub/switch, 100k flows", HUB_SWITCH_100K, "out.count"),
    case("pinned, 100k flows", PINNED_100K, "out.count"),
    case("source -> discard", SOURCE_DISCARD, "d.count"),
    // Several cores behind one switch: the same graphs as 2 copies on 2
    // threads, the same packets in all (aggregate packets/s).
    Case {
        copies: 2,
        ..case("hub/switch, 2 copies", HUB_SWITCH, "out.count")
    },
    Case {
        copies: 2,
        ..case("source -> discard, 2 copies", SOURCE_DISCARD, "d.count")
    },
    case("classifier", CLASSIFY, "out.count"),
    case("queue (2 threads)", QUEUE, "out.count"),
    case("IP route, 1002 routes", ROUTE, "out.count"),
    Case {
        rules: 100,
        ..case("IPFilter, 100 rules", FILTER, "out.count")
    },
    Case {
        rules: 1,
        ..case("IPFilter, 1 rule", FILTER, "out.count")
    },
];

/// The configuration of `case` for `n` packets; tables are generated only
/// for the cases that have them.
fn config(case: &Case, n: u64) -> String {
    let mut text = case.template.replace("$N", &(n / case.copies).to_string());
    if case.copies > 1 {
        text = format!("Copies({});\n{text}", case.copies);
    }
    if text.contains("$ROUTES") {
        text = text.replace("$ROUTES", &routes());
    }
    if text.contains("$RULES") {
        text = text.replace("$RULES", &rules(case.rules));
    }
    text
}

/// `config` as Click runs it: Click's InfiniteSource has no default frame,
/// so the frame this router's source makes goes in as DATA (read back from
/// a capture of one packet), with Click's batching of 32.
fn click_config(case: &Case, n: u64) -> String {
    let pcap = std::env::temp_dir().join(format!("sy-bench-frame-{}.pcap", std::process::id()));
    let mut registry = switchyard_elements::standard();
    for c in switchyard_io::CLASSES {
        registry.add(*c);
    }
    let capture = format!(
        "InfiniteSource(LENGTH 64, LIMIT 1, STOP true) -> ToDump({});",
        pcap.display()
    );
    run_text(&capture, &registry).expect("frame capture");
    let mut reader = switchyard_io::pcap::Reader::open(&pcap).expect("frame capture");
    let frame = reader.next_record().ok().flatten().expect("one frame").data;
    let _ = std::fs::remove_file(&pcap);
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let text = config(case, n);
    assert!(
        text.contains("InfiniteSource(LENGTH 64, "),
        "{}: not a 64-byte source",
        case.name
    );
    text.replace(
        "InfiniteSource(LENGTH 64, ",
        &format!("InfiniteSource(DATA \\<{hex}>, BURST 32, "),
    )
}

fn run(case: &Case, n: u64) -> f64 {
    let (name, check) = (case.name, case.check);
    let n = n / case.copies * case.copies;
    let registry = switchyard_elements::standard();
    let text = config(case, n);
    let start = Instant::now();
    let handlers = run_text(&text, &registry).expect("benchmark config is valid");
    let secs = start.elapsed().as_secs_f64();
    let got: u64 = handlers.read(check).expect("handler").trim().parse().expect("number");
    let mpps = n as f64 / secs / 1e6;
    println!("{name:<27} {n:>11} packets  {secs:>7.3} s  {mpps:>7.2} Mpps  ({check} = {got})");
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
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let only = value("--only");
    // `--case NAME`: that case alone (`--only` takes every case whose
    // name starts with it).
    let exact = value("--case");
    if let Some(name) = value("--print-config") {
        let Some(case) = CASES.iter().find(|c| c.name == name.as_str()) else {
            let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
            eprintln!("bench: no case named '{name}'; cases: {names:?}");
            std::process::exit(2);
        };
        println!("{}", click_config(case, n));
        return;
    }
    println!("whole-pipeline benchmark, single router thread per pipeline, best of {repeat}");
    let mut best = Vec::new();
    for case in &CASES {
        if only.is_some_and(|o| !case.name.starts_with(o.as_str())) || exact.is_some_and(|e| case.name != e.as_str()) {
            continue;
        }
        let b = (0..repeat).map(|_| run(case, n)).fold(0.0, f64::max);
        best.push((case.name, b));
    }
    println!("--");
    for (name, b) in &best {
        println!("{name:<27} best {b:>7.2} Mpps");
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
    for base in ["hub/switch", "source -> discard"] {
        if let (Some(one), Some(two)) = (find(base), find(&format!("{base}, 2 copies"))) {
            println!(
                "{base}: 2 copies reach {:.2}x one copy's packets/s ({} cores here)",
                two / one,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
    }
    if let (Some(u), Some(p)) = (find("hub/switch, 100k flows"), find("pinned, 100k flows")) {
        println!(
            "pinned mode keeps {:.0}% of the hub/switch throughput at 100k flows (target 50%)",
            100.0 * p / u
        );
    }
    if let (Some(h), Some(s)) = (find("hub/switch"), find("hub/switch + shadow")) {
        println!(
            "shadow comparison keeps {:.0}% of the hub/switch throughput",
            100.0 * s / h
        );
    }
    if let (Some(r), Some(f100), Some(f1)) = (
        find("IP route, 1002 routes"),
        find("IPFilter, 100 rules"),
        find("IPFilter, 1 rule"),
    ) {
        // Click 2.1 userlevel was measured at 4.3 and 1.07 Mpps on this
        // machine kind (issue #11); only a ratio from one run means much:
        // benches/click_ip_compare.sh runs both.
        println!(
            "IP route chain {r:.2} Mpps; IPFilter 100 rules {f100:.2} Mpps, {:.0}% of its 1-rule speed \
             (Click on this machine kind: 4.3 and 1.07; same-run ratios: benches/click_ip_compare.sh)",
            100.0 * f100 / f1
        );
    }
    println!("peak RSS: {} kB", peak_rss_kb());
}
