//! Real interfaces: network namespaces `gen` -> `rtr` -> `sink` joined by
//! veth pairs, a Switchyard process in each, real frames through the
//! router. Needs root; without it the tests say so loudly and skip, except
//! under CI=true, where they fail. Everything created is removed, also
//! when a test fails (Drop).

mod common;

use common::netns::{require_root_or_skip, Namespaces};
use common::{await_until, RouterProc, BIN};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_io::pcap::{Reader, Writer};

/// Namespaces `gen`, `rtr` and `sink`, joined by two veth pairs.
struct Topology {
    ns: Namespaces,
}

impl Topology {
    /// None (after saying why) when this machine cannot run the test.
    fn new() -> Option<Topology> {
        Topology::with_queues(1)
    }

    /// The same, each veth end with `queues` queues.
    fn with_queues(queues: u32) -> Option<Topology> {
        if !require_root_or_skip("the netns tests", &[]) {
            return None;
        }
        let ns = Namespaces::new(&["sygen", "syrtr", "sysink"]);
        if queues == 1 {
            ns.veth((0, "gen0"), (1, "rtr0"));
            ns.veth((1, "rtr1"), (2, "sink0"));
        } else {
            ns.veth_queues((0, "gen0"), (1, "rtr0"), queues);
            ns.veth_queues((1, "rtr1"), (2, "sink0"), queues);
        }
        for (n, dev) in [(0, "gen0"), (1, "rtr0"), (1, "rtr1"), (2, "sink0")] {
            assert!(ns.ip(n, &["link", "set", dev, "up"]));
        }
        Some(Topology { ns })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.ns.path(name)
    }

    /// Starts `switchyard run` with a control socket in namespace `n`;
    /// returns once the socket is ready.
    fn start(&self, n: usize, name: &str, config: &str) -> RouterProc {
        self.ns.start_router(n, name, config, &[])
    }

    /// Runs a generator to completion in namespace `n`.
    fn run(&self, n: usize, config: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name(n), BIN, "run", "-q", "-e", config])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Waits for a counter to reach `n` (the frames are the event), and
/// checks it goes no further.
fn await_count(r: &RouterProc, h: &str, n: u64) {
    await_until(&format!("{h} to reach {n}"), || r.num(h) >= n);
    assert_eq!(r.num(h), n, "{h}: more frames than sent");
}

/// Test frames: an experimental EtherType (0x88b5) so nothing else on the
/// link is mistaken for them, numbered, of several sizes.
fn frames(n: usize, sizes: &[usize]) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let len = sizes[i % sizes.len()];
            let mut f = vec![0u8; len];
            f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
            f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x88, 0xb5]);
            for (k, b) in f[14..].iter_mut().enumerate() {
                *b = (i + k) as u8;
            }
            if len >= 18 {
                f[14..18].copy_from_slice(&(i as u32).to_be_bytes());
            }
            f
        })
        .collect()
}

/// Frames `gap_ns` apart, for generators that replay with TIMING true.
fn write_pcap_paced(path: &Path, frames: &[Vec<u8>], gap_ns: u64) {
    let mut w = Writer::create(path, 65535, switchyard_io::pcap::LINKTYPE_ETHERNET).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(i as u64 * gap_ns, f).unwrap();
    }
    w.flush().unwrap();
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    write_pcap_paced(path, frames, 0);
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut r = Reader::open(path).unwrap();
    std::iter::from_fn(|| r.next_record().unwrap())
        .map(|rec| rec.data)
        .collect()
}

const SINK: &str =
    "FromDevice(sink0) -> c :: Classifier(12/88b5, -); c[0] -> got :: Counter -> ToDump($OUT); c[1] -> Discard;";

fn rollback_router(method: &str) -> String {
    format!(
        "FromDevice(rtr0, METHOD {method}) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> StoreData(18, \\<ee>) -> new :: Counter -> [1]sel;
         sel -> ToDevice(rtr1, METHOD {method});"
    )
}

fn frames_arrive_byte_identical(method: &str) {
    let Some(t) = Topology::new() else { return };
    // pnet's receiver makes a system call per frame into a socket buffer
    // of ~100 frames: a full-speed generator (or a descheduled router on a
    // loaded 2-core machine) overruns it. Replay slowly for it; the ring
    // takes the full-speed burst.
    let (n, gap) = if method == "pnet" { (600, 500_000) } else { (3000, 0) };
    let sent = frames(n, &[60, 14, 1514, 64, 333]);
    let input = t.path("in.pcap");
    write_pcap_paced(&input, &sent, gap);
    let out = t.path("out.pcap");
    let sink = t.start(2, "sink", &SINK.replace("$OUT", out.to_str().unwrap()));
    let rtr = t.start(1, "rtr", &rollback_router(method));
    let timing = gap > 0;
    t.run(
        0,
        &format!(
            "FromDump({}, STOP true, TIMING {timing}) -> ToDevice(gen0);",
            input.display()
        ),
    );
    await_count(&sink, "got.count", sent.len() as u64);
    assert_eq!(rtr.num("old.count"), sent.len() as u64);
    assert_eq!(read_pcap(&out), sent, "frames arrive byte for byte, in order");
}

#[test]
fn frames_arrive_byte_identical_through_the_ring_backend() {
    frames_arrive_byte_identical("ring");
}

#[test]
fn frames_arrive_byte_identical_through_the_pnet_backend() {
    frames_arrive_byte_identical("pnet");
}

#[test]
fn frames_arrive_byte_identical_through_the_xdp_backend() {
    frames_arrive_byte_identical("xdp");
}

#[test]
fn flipping_the_switch_changes_what_reaches_the_sink() {
    flip_changes_what_reaches_the_sink("ring");
}

#[test]
fn flipping_the_switch_on_the_xdp_backend_changes_what_reaches_the_sink() {
    flip_changes_what_reaches_the_sink("xdp");
}

fn flip_changes_what_reaches_the_sink(method: &str) {
    let Some(t) = Topology::new() else { return };
    let out = t.path("out.pcap");
    let sink = t.start(2, "sink", &SINK.replace("$OUT", out.to_str().unwrap()));
    let rtr = t.start(1, "rtr", &rollback_router(method));
    let batch = frames(500, &[60]);
    let input = t.path("in.pcap");
    write_pcap(&input, &batch);
    let gen = format!("FromDump({}, STOP true) -> ToDevice(gen0);", input.display());
    t.run(0, &gen);
    await_count(&sink, "got.count", 500);
    // Go live with the new branch, from another process, as a user would.
    let (code, _, err) = rtr.ctl(&["write", "sel.switch", "1"]);
    assert_eq!(code, 0, "{err}");
    t.run(0, &gen);
    await_count(&sink, "got.count", 1000);
    let got = read_pcap(&out);
    assert_eq!(got[..500], batch[..], "old branch: frames unmodified");
    let rewritten: Vec<Vec<u8>> = batch
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[18] = 0xee;
            f
        })
        .collect();
    assert_eq!(got[500..], rewritten[..], "new branch: byte 18 rewritten, nothing else");
}

#[test]
fn interface_down_is_survived_and_traffic_resumes() {
    let Some(t) = Topology::new() else { return };
    let out = t.path("out.pcap");
    let sink = t.start(2, "sink", &SINK.replace("$OUT", out.to_str().unwrap()));
    let rtr = t.start(1, "rtr", "FromDevice(rtr0) -> c :: Counter -> td :: ToDevice(rtr1);");
    let input = t.path("in.pcap");
    write_pcap(&input, &frames(200, &[60]));
    let gen = format!("FromDump({}, STOP true) -> ToDevice(gen0);", input.display());
    assert!(t.ns.ip(1, &["link", "set", "rtr1", "down"]));
    t.run(0, &gen);
    await_count(&rtr, "c.count", 200);
    assert_eq!(sink.num("got.count"), 0, "nothing crosses a down link");
    assert!(t.ns.ip(1, &["link", "set", "rtr1", "up"]));
    // The link needs a moment to carry frames again; resend until they do.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.num("got.count") == 0 {
        assert!(Instant::now() < deadline, "traffic did not resume");
        t.run(0, &gen);
    }
    assert!(rtr.num("td.count") > 0);
}

#[test]
fn a_missing_interface_is_an_error_at_start_naming_it() {
    let out = Command::new(BIN)
        .args(["run", "-e", "FromDevice(nosuchif0) -> Discard;"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'FromDevice@1 :: FromDevice': no interface named 'nosuchif0'"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["run", "-e", "Idle -> ToDevice(nosuchif0, METHOD pnet);"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface named 'nosuchif0'"));
}

#[test]
fn fanout_shares_one_interface_between_pipeline_copies() {
    let Some(t) = Topology::new() else { return };
    // Two copies of the pipeline, not connected: two threads, one group.
    let rtr = t.start(
        1,
        "rtr",
        "FromDevice(rtr0, FANOUT 7, FANOUT_MODE lb) -> a :: Counter -> Discard;
         FromDevice(rtr0, FANOUT 7, FANOUT_MODE lb) -> b :: Counter -> Discard;",
    );
    let input = t.path("in.pcap");
    write_pcap(&input, &frames(2000, &[60]));
    t.run(
        0,
        &format!("FromDump({}, STOP true) -> ToDevice(gen0);", input.display()),
    );
    await_until("all frames", || rtr.num("a.count") + rtr.num("b.count") >= 2000);
    let (a, b) = (rtr.num("a.count"), rtr.num("b.count"));
    assert_eq!(a + b, 2000, "each frame reaches exactly one copy");
    assert!(a > 0 && b > 0, "both copies get a share: {a} + {b}");
}

/// UDP frames of `flows` flows (source port 1000 + flow), `per_flow`
/// each, interleaved; the payload holds the flow's frame number (bytes
/// 42..46) and a byte the new branch marks (46).
fn flow_frames(flows: u16, per_flow: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(flows as usize * per_flow as usize);
    for n in 0..per_flow {
        for flow in 0..flows {
            let mut f = vec![0u8; 60];
            f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
            f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            // IPv4, 46 bytes, UDP, 10.9.0.1 -> 10.9.0.2.
            f[14..34].copy_from_slice(&[0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2]);
            let sum = switchyard_core::checksum::fold(switchyard_core::checksum::sum(&f[14..34], 0));
            f[24..26].copy_from_slice(&(!sum).to_be_bytes());
            f[34..36].copy_from_slice(&(1000 + flow).to_be_bytes());
            f[36..38].copy_from_slice(&7000u16.to_be_bytes());
            f[38..40].copy_from_slice(&26u16.to_be_bytes());
            f[42..46].copy_from_slice(&n.to_be_bytes());
            out.push(f);
        }
    }
    out
}

/// Two copies of the hub/switch pipeline share one interface through a
/// FANOUT group (a flow stays on one copy), flipped as one switch from
/// another process while traffic flows: every frame of every flow
/// reaches the sink exactly once and in its flow's order, both copies
/// carried traffic, and both branches reached production.
#[test]
fn two_copies_behind_one_switch_deliver_every_flow_exactly_once() {
    copies_deliver_every_flow_exactly_once("ring");
}

/// The same with the xdp backend: one XSK per queue (QUEUE $COPY) on
/// two-queue veths; the generator's stack spreads flows over the queues
/// by hash, as a NIC's RSS would.
#[test]
fn two_xdp_copies_one_queue_each_deliver_every_flow_exactly_once() {
    copies_deliver_every_flow_exactly_once("xdp");
}

fn copies_deliver_every_flow_exactly_once(method: &str) {
    let _turn = FULL_RATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(t) = Topology::with_queues(2) else { return };
    let out = t.path("out.pcap");
    let sink = t.start(
        2,
        "sink",
        &format!(
            "FromDevice(sink0) -> c :: Classifier(12/0800 23/11 36/1b58, -); c[0] -> got :: ToDump({}); c[1] -> Discard;",
            out.display()
        ),
    );
    let (rx, tx) = match method {
        "xdp" => ("METHOD xdp, QUEUE $COPY", "METHOD xdp, QUEUE $COPY"),
        _ => ("FANOUT 11", "METHOD ring"),
    };
    let rtr = t.start(
        1,
        "rtr",
        &format!(
            "Copies(2);
             rx :: FromDevice(rtr0, {rx}) -> hub :: Tee(2);
             hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
             hub[1] -> StoreData(46, \\<ee>) -> new :: Counter -> [1]sel;
             sel -> tx :: ToDevice(rtr1, {tx});"
        ),
    );
    // 16 flows, 0.8 s at 25k frames/s. The generator sends through the
    // kernel's queueing (pnet), which picks a transmit queue, and so the
    // veth peer's receive queue, by flow hash.
    let (flows, per_flow) = (16u16, 1250u32);
    let sent = flow_frames(flows, per_flow);
    let input = t.path("in.pcap");
    write_pcap_paced(&input, &sent, 40_000);
    let gen = format!(
        "FromDump({}, STOP true, TIMING true) -> ToDevice(gen0, METHOD pnet);",
        input.display()
    );
    let mut c = rtr.client();
    let flips = 40;
    std::thread::scope(|s| {
        s.spawn(|| t.run(0, &gen));
        // Each flip after more frames reached the router: all of them
        // under traffic.
        for i in 0..flips {
            let before = rtr.num("rx.count");
            await_until("traffic to reach the router", || rtr.num("rx.count") > before);
            c.write("sel.switch", if i % 2 == 0 { "1" } else { "0" }).unwrap();
        }
    });
    let counts = || {
        format!(
            "sent {}, router received {} + {}, sent on {} (dropped {}), sink got {}",
            sent.len(),
            rtr.num("rx#0.count"),
            rtr.num("rx#1.count"),
            rtr.num("tx.count"),
            rtr.num("tx.drops"),
            sink.num("got.count")
        )
    };
    // Polled as await_until does, saying where frames stopped if they do.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.num("got.count") < sent.len() as u64 {
        assert!(Instant::now() < deadline, "frames missing at the sink: {}", counts());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sink.num("got.count"), sent.len() as u64, "no frame twice: {}", counts());
    let (a, b) = (rtr.num("rx#0.count"), rtr.num("rx#1.count"));
    assert_eq!(a + b, sent.len() as u64, "each frame reached one copy: {}", counts());
    assert!(a > 0 && b > 0, "both copies carried flows: {a} + {b}");
    // Per flow: every frame once, in order, each from one branch.
    let mut next = vec![0u32; flows as usize];
    let mut marked = 0;
    for f in read_pcap(&out) {
        let flow = (u16::from_be_bytes([f[34], f[35]]) - 1000) as usize;
        let n = u32::from_be_bytes([f[42], f[43], f[44], f[45]]);
        assert_eq!(n, next[flow], "flow {flow}: frame {n} where {} was due", next[flow]);
        next[flow] += 1;
        match f[46] {
            0xee => marked += 1,
            0 => {}
            other => panic!("byte 46 is {other:#x}"),
        }
    }
    assert!(next.iter().all(|&n| n == per_flow), "{next:?}");
    assert!(
        marked > 0 && marked < sent.len(),
        "both branches reached production: {marked} marked"
    );
    eprintln!(
        "{method}: 2 copies, {flips} flips under 25k frames/s: copies got {a} + {b}; every flow exactly once, in order"
    );
}

/// Hot reload on a device path buffered by a Queue: the thread that reads
/// the device is unchanged, so it keeps running through every reload and
/// the Queue holds what arrives while the changed side is swapped. Every
/// frame reaches the sink, once, in order, byte for byte.
#[test]
fn hot_reload_loses_no_frame_on_a_queue_buffered_device_path() {
    hot_reload_loses_no_frame("ring");
}

/// The xdp backend's socket survives reloads: were it closed and opened
/// again, frames arriving meanwhile would go to the kernel, not the router.
#[test]
fn hot_reload_keeps_the_xdp_socket_and_loses_no_frame() {
    hot_reload_loses_no_frame("xdp");
}

/// The 100k frames/s tests take turns: two at once on 2 cores would
/// measure the machine, not the router.
static FULL_RATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hot_reload_loses_no_frame(method: &str) {
    let _turn = FULL_RATE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(t) = Topology::new() else { return };
    let a = &format!(
        "rx :: FromDevice(rtr0, METHOD {method}) -> q :: Queue(65536) -> Unqueue -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(1);
         hub[1] -> new :: Counter -> [1]sel;
         sel -> tx :: ToDevice(rtr1, METHOD {method});"
    );
    let b = a.replace(
        "new :: Counter -> [1]sel",
        "new :: Counter -> extra :: Counter -> [1]sel",
    );
    let out = t.path("out.pcap");
    let sink = t.start(2, "sink", &SINK.replace("$OUT", out.to_str().unwrap()));
    let rtr = t.start(1, "rtr", a);
    // 0.6 s of traffic at 100k frames/s.
    let sent = frames(60_000, &[60, 128]);
    let input = t.path("in.pcap");
    write_pcap_paced(&input, &sent, 10_000);
    let gen = format!(
        "FromDump({}, STOP true, TIMING true) -> ToDevice(gen0);",
        input.display()
    );
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut c = rtr.client();
    let mut during = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            t.run(0, &gen);
            done.store(true, Ordering::SeqCst);
        });
        // Wait for traffic, then reload for as long as it flows.
        await_until("traffic to reach the router", || rtr.num("old.count") > 0);
        while !done.load(Ordering::SeqCst) {
            c.write("hotconfig", if during % 2 == 0 { &b } else { a.as_str() })
                .unwrap();
            let last = c.read("last_reload").unwrap();
            assert!(last.starts_with("threads_kept=1 threads_replaced=1 "), "{last}");
            during += 1;
        }
    });
    assert!(during >= 10, "only {during} reloads while traffic flowed");
    eprintln!(
        "{method}: router received {}, sent {} (dropped {}), sink has {}",
        rtr.num("rx.count"),
        rtr.num("tx.count"),
        rtr.num("tx.drops"),
        sink.num("got.count")
    );
    await_count(&sink, "got.count", sent.len() as u64);
    assert_eq!(read_pcap(&out), sent, "every frame, once, in order, byte for byte");
    assert_eq!(rtr.num("q.drops"), 0);
    eprintln!("{method}: {during} reloads under 100k frames/s: 0 frames lost");
}

/// A program left on the interface (here one attached by iproute2, as a
/// crash of something attaching through netlink would leave it) is
/// replaced at start, said in a log line, and frames reach the router.
#[test]
fn a_stale_xdp_program_is_replaced_at_start() {
    let Some(t) = Topology::new() else { return };
    let object = concat!(env!("CARGO_MANIFEST_DIR"), "/../switchyard-io/bpf/xsk.o");
    assert!(
        t.ns.ip(
            1,
            &[
                "link",
                "set",
                "dev",
                "rtr0",
                "xdpgeneric",
                "object",
                object,
                "section",
                "xdp"
            ]
        ),
        "iproute2 attaches the program"
    );
    let out = t.path("out.pcap");
    let sink = t.start(2, "sink", &SINK.replace("$OUT", out.to_str().unwrap()));
    let rtr = t.start(1, "rtr", &rollback_router("xdp"));
    assert!(rtr.banner.contains("replacing a stale XDP program"), "{}", rtr.banner);
    let batch = frames(200, &[60]);
    let input = t.path("in.pcap");
    write_pcap(&input, &batch);
    t.run(
        0,
        &format!("FromDump({}, STOP true) -> ToDevice(gen0);", input.display()),
    );
    await_count(&sink, "got.count", 200);
    assert_eq!(read_pcap(&out), batch);
    // Stopped, the router leaves no program behind.
    rtr.stop();
    let shown = Command::new("ip")
        .args(["-n", t.ns.name(1), "link", "show", "dev", "rtr0"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("xdp"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
}

/// A reload that removes the receiving side gives its rings back (and
/// detaches the program); one that brings it back opens it again, on the
/// socket the transmitting side kept.
#[test]
fn an_xdp_side_removed_by_a_reload_can_come_back() {
    let Some(t) = Topology::new() else { return };
    let out = t.path("out.pcap");
    let sink = t.start(2, "sink", &SINK.replace("$OUT", out.to_str().unwrap()));
    let a = "rx :: FromDevice(rtr0, METHOD xdp) -> c :: Counter -> tx :: ToDevice(rtr1, METHOD xdp);";
    let b = "Idle -> tx :: ToDevice(rtr1, METHOD xdp);";
    let rtr = t.start(1, "rtr", a);
    let batch = frames(100, &[60]);
    let input = t.path("in.pcap");
    write_pcap(&input, &batch);
    let gen = format!("FromDump({}, STOP true) -> ToDevice(gen0);", input.display());
    t.run(0, &gen);
    await_count(&sink, "got.count", 100);
    let xdp_on_rtr0 = || {
        let shown = Command::new("ip")
            .args(["-n", t.ns.name(1), "link", "show", "dev", "rtr0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&shown.stdout).contains("xdp")
    };
    assert!(xdp_on_rtr0());
    let mut c = rtr.client();
    c.write("hotconfig", b).unwrap();
    await_until("the program detached with the receiving side", || !xdp_on_rtr0());
    c.write("hotconfig", a).unwrap();
    assert!(xdp_on_rtr0());
    t.run(0, &gen);
    await_count(&sink, "got.count", 200);
    assert_eq!(read_pcap(&out), [batch.clone(), batch].concat());
}
