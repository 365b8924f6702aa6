//! End-to-end runs of real configurations on the real runtime: packets are
//! created, counted, duplicated, queued across threads and selected; the
//! tests assert the counters.

mod common;

use common::await_until;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::{load_text, run_text, HandlerTable, Router};

fn run(text: &str) -> Arc<HandlerTable> {
    run_text(text, &switchyard_elements::standard()).unwrap_or_else(|e| panic!("{e}"))
}

fn count(t: &HandlerTable, h: &str) -> u64 {
    t.read(h).unwrap_or_else(|e| panic!("{h}: {e}")).trim().parse().unwrap()
}

#[test]
fn tee_counts_every_packet_on_both_branches() {
    let t = run("InfiniteSource(LIMIT 100000, STOP true) -> Tee(2);
                 Tee@2[0] -> a :: Counter -> Discard; Tee@2[1] -> b :: Counter -> Discard;");
    assert_eq!(count(&t, "a.count"), 100_000);
    assert_eq!(count(&t, "b.count"), 100_000);
    assert_eq!(count(&t, "a.byte_count"), 100_000 * 64);
}

#[test]
fn hub_switch_graph_delivers_the_selected_branch_once() {
    let t = run("InfiniteSource(LENGTH 60, LIMIT 54321, STOP true) -> hub :: Tee(2);
                 hub[0] -> old :: Counter -> [0]sel :: InputSwitch(1);
                 hub[1] -> new :: Counter -> [1]sel;
                 sel -> out :: Counter -> Discard;");
    assert_eq!(count(&t, "old.count"), 54321);
    assert_eq!(count(&t, "new.count"), 54321);
    assert_eq!(count(&t, "out.count"), 54321);
    assert_eq!(t.read("sel.switch").unwrap(), "1");
}

#[test]
fn queue_with_back_pressure_loses_nothing() {
    let t = run("src :: InfiniteSource(LIMIT 200000, STOP true) -> q :: Queue(100, BLOCK true) -> Unqueue -> out :: Counter -> Discard;");
    assert_eq!(count(&t, "out.count"), 200_000);
    assert_eq!(count(&t, "q.drops"), 0);
    assert!(count(&t, "q.highwater_length") <= 100);
    assert_eq!(count(&t, "q.length"), 0);
}

#[test]
fn tail_drop_queue_accounts_for_every_packet() {
    // Click's Queue drops when full. A source waits for room, but a Tee
    // doubles what it sends into the same Queue, so the Queue overflows;
    // whatever was queued at the stop is still delivered: in == out + drops.
    let t = run("src :: InfiniteSource(LIMIT 300000, STOP true) -> t :: Tee(2);
                 t[0] -> q :: Queue(64) -> Unqueue -> out :: Counter -> Discard; t[1] -> q;");
    assert!(count(&t, "q.drops") > 0, "the test must overflow the queue");
    assert_eq!(count(&t, "out.count") + count(&t, "q.drops"), 600_000);
    assert!(count(&t, "q.highwater_length") <= 64);
}

#[test]
fn sources_wait_for_room_in_the_queue_they_fill() {
    // Click's sources wait on the Queue's full notifier: however slow the
    // consumer (one packet per run here), not one packet is dropped.
    for source in [
        "InfiniteSource(LIMIT 200000, STOP true)",
        "RatedSource(RATE 1000000000, LIMIT 50000, STOP true)",
    ] {
        let t = run(&format!(
            "src :: {source} -> c :: Counter -> q :: Queue(1000) -> Unqueue(BURST 1) -> out :: Counter -> Discard;"
        ));
        let sent = count(&t, "c.count");
        assert!(sent >= 50_000, "{source}: {sent}");
        assert_eq!(count(&t, "q.drops"), 0, "{source}");
        assert_eq!(count(&t, "out.count"), sent, "{source}");
        assert!(count(&t, "q.highwater_length") <= 1000);
    }
}

#[test]
fn a_stop_lets_every_source_run_before_the_router_stops() {
    // The first source's STOP can come before the second's thread has
    // run at all; every task runs once after a stop is requested, so the
    // second still sends its LIMIT, in every run.
    for _ in 0..20 {
        let t = run("InfiniteSource(LIMIT 777, STOP true) -> s :: Switch(-1) -> Discard;
                     InfiniteSource(LIMIT 10, STOP true) -> sw :: Switch(0) -> c2 :: Counter -> Discard;");
        assert_eq!(count(&t, "c2.count"), 10);
    }
}

#[test]
fn chained_queues_run_on_three_threads_and_deliver_all() {
    let t = run(
        "InfiniteSource(LIMIT 100000, STOP true) -> Queue(1000, BLOCK true) -> Unqueue -> a :: Counter
                 -> Queue(1000, BLOCK true) -> Unqueue -> b :: Counter -> Discard;",
    );
    assert_eq!(count(&t, "a.count"), 100_000);
    assert_eq!(count(&t, "b.count"), 100_000);
}

#[test]
fn pulling_discard_drains_a_queue_through_an_agnostic_counter() {
    let t = run("InfiniteSource(LIMIT 5000, STOP true) -> Queue(10000) -> c :: Counter -> d :: Discard;");
    assert_eq!(count(&t, "c.count"), 5000);
    assert_eq!(count(&t, "d.count"), 5000);
}

#[test]
fn rated_source_sends_its_limit() {
    let start = Instant::now();
    let t = run("RatedSource(RATE 20000, LIMIT 2000, STOP true) -> c :: Counter -> Discard;");
    assert_eq!(count(&t, "c.count"), 2000);
    // 2000 packets at 20000/s take about 0.1 s; anything far faster means
    // the rate is not applied (a loose bound: these machines are noisy).
    assert!(start.elapsed() >= Duration::from_millis(80), "{:?}", start.elapsed());
}

#[test]
fn classifier_splits_by_pattern_and_drops_the_rest() {
    // An ARP frame, an IPv4/UDP frame (the default), and a short runt.
    // As in Click, the first source to reach a LIMIT with STOP stops the
    // router; the three share a thread and take turns a batch at a time,
    // so the largest one, udp, finishes last.
    let t = run(
        r"arp :: InfiniteSource(DATA \<ffffffffffff 020000000001 0806 0001>, LIMIT 300);
                 udp :: InfiniteSource(LIMIT 500, STOP true);
                 runt :: InfiniteSource(DATA \<01 02 03>, LIMIT 7);
                 arp, udp, runt -> c :: Classifier(12/0806, 12/0800 23/11);
                 c[0] -> a :: Counter -> Discard; c[1] -> u :: Counter -> Discard;",
    );
    assert_eq!(count(&t, "a.count"), 300);
    assert_eq!(count(&t, "u.count"), 500);
}

#[test]
fn paint_and_paint_switch() {
    let t = run("a :: InfiniteSource(LIMIT 10) -> Paint(1) -> ps :: PaintSwitch;
                 b :: InfiniteSource(LIMIT 20) -> Paint(0) -> ps;
                 c :: InfiniteSource(LIMIT 300, STOP true) -> Paint(7) -> ps;
                 ps[0] -> zero :: Counter -> Discard; ps[1] -> one :: Counter -> Discard;");
    assert_eq!(count(&t, "zero.count"), 20);
    assert_eq!(count(&t, "one.count"), 10);
}

#[test]
fn static_switch_and_switch_send_one_way() {
    // Two unconnected pipelines run on two threads: wait for both sources
    // (a STOP source could end the run before the other one started).
    let text = "InfiniteSource(LIMIT 100) -> s :: StaticSwitch(1); s[0] -> a :: Counter -> Discard; s[1] -> b :: Counter -> Discard;
                ws :: InfiniteSource(LIMIT 300) -> w :: Switch(-1); w[0] -> c :: Counter -> Discard;";
    let (graph, table) = load_text("s.click", text, &switchyard_elements::standard(), &[]).unwrap();
    let router = Router::start(graph, Arc::new(table));
    let t = router.handlers().clone();
    await_until("both sources", || {
        count(&t, "b.count") == 100 && count(&t, "ws.count") == 300
    });
    router.stop_and_wait();
    assert_eq!(
        (count(&t, "a.count"), count(&t, "b.count"), count(&t, "c.count")),
        (0, 100, 0)
    );
}

#[test]
fn compound_elements_run_with_their_inner_names() {
    let t = run("elementclass Branch { $limit | input -> c :: Counter -> output; }
                 define($N 777);
                 InfiniteSource(LIMIT $N, STOP true) -> b :: Branch(1) -> Discard;");
    assert_eq!(count(&t, "b/c.count"), 777);
}

#[test]
fn inline_compounds_and_keyword_parameters_run() {
    let t = run(
        "elementclass Branch { $color, LIMIT $n | input -> Paint($color) -> c :: Counter -> output; }
                 InfiniteSource(LIMIT 300, STOP true) -> b :: Branch(2, LIMIT 300)
                   -> { input -> c :: Counter -> output } -> ps :: PaintSwitch;
                 ps[0], ps[1] -> Discard; ps[2] -> two :: Counter -> Discard;",
    );
    assert_eq!(count(&t, "b/c.count"), 300);
    assert_eq!(count(&t, "Compound@3/c.count"), 300, "the inline compound's counter");
    assert_eq!(count(&t, "two.count"), 300, "Paint(2) from the keyword-bound class");
}

#[test]
fn groups_and_port_lists_run() {
    let t = run("src :: InfiniteSource(LIMIT 100, STOP true) -> t :: Tee(2)
                   => ( input[0] -> a :: Counter -> output; input[1] -> b :: Counter -> output )
                   -> out :: Counter -> Discard;");
    assert_eq!((count(&t, "a.count"), count(&t, "b.count")), (100, 100));
    assert_eq!(count(&t, "out.count"), 200, "both group inputs reach its one output");
}

#[test]
fn switch_flips_while_running_and_refuses_out_of_range() {
    // The new branch paints its packets, so production can tell them apart.
    let text = "src :: InfiniteSource(LIMIT 1000, ACTIVE false) -> hub :: Tee(2);
                hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
                hub[1] -> Paint(1) -> new :: Counter -> [1]sel;
                sel -> ps :: PaintSwitch; ps[0] -> from_old :: Counter -> Discard; ps[1] -> from_new :: Counter -> Discard;";
    let (graph, table) = load_text("flip.click", text, &switchyard_elements::standard(), &[]).unwrap();
    let router = Router::start(graph, Arc::new(table));
    let h = router.handlers().clone();
    h.write("src.active", "true").unwrap();
    await_until("1000 packets from the old branch", || {
        count(&h, "from_old.count") == 1000
    });

    // A typo must not blackhole production: refused, position unchanged.
    let err = h.write("sel.switch", "7").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Write handler 'sel.switch' error: 7 out of range: expected -1 to 1"
    );
    assert_eq!(h.read("sel.switch").unwrap(), "0");

    h.write("sel.switch", "1").unwrap();
    h.write("src.reset", "").unwrap();
    await_until("1000 packets from the new branch", || {
        count(&h, "from_new.count") == 1000
    });
    assert_eq!(count(&h, "from_old.count"), 1000);
    assert_eq!(
        count(&h, "old.count"),
        2000,
        "the old branch keeps running while switched off"
    );
    router.stop_and_wait();
}

#[test]
fn flatconfig_prints_clicks_chains() {
    // Click's Router::unparse: sorted by destination, chained through port
    // 0, ports only when not 0, no parentheses for an empty configuration.
    let text = "a :: Idle; b :: Idle; c :: Idle; a[1] -> b; a -> c; c[1] -> [1] b; b -> [2]c; c -> [1]c; b[1] -> c;";
    let (graph, _) = load_text("f.click", text, &switchyard_elements::standard(), &[]).unwrap();
    assert_eq!(
        graph.flat_config(),
        "a :: Idle;\nb :: Idle;\nc :: Idle;\n\na [1] -> b\n    -> [2] c;\nc [1] -> [1] b;\na -> c\n    -> [1] c;\nb [1] -> c;\n"
    );
}

#[test]
fn the_global_stop_handler_stops_the_router() {
    let text = "InfiniteSource -> c :: Counter -> Discard;";
    let (graph, table) = load_text("stop.click", text, &switchyard_elements::standard(), &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    let h = router.handlers().clone();
    assert!(h.read("stop").is_err(), "write-only");
    await_until("packets flow", || count(&h, "c.count") > 0);
    assert!(!router.wait_timeout(Duration::from_millis(1)), "no limit: it runs");
    h.write("stop", "").unwrap();
    assert!(router.wait_timeout(Duration::from_secs(30)), "stopped by the handler");
}

#[test]
fn generic_and_global_handlers() {
    let text = "src :: InfiniteSource(LIMIT 5, STOP true) -> c :: Counter -> Discard;";
    let (graph, table) = load_text("h.click", text, &switchyard_elements::standard(), &[]).unwrap();
    drop(graph);
    assert_eq!(table.read("c.class").unwrap(), "Counter");
    assert_eq!(table.read("src.config").unwrap(), "LIMIT 5, STOP true");
    assert_eq!(table.read("1.name").unwrap(), "c", "elements by index");
    assert_eq!(table.read("list").unwrap(), "3\nsrc\nc\nDiscard@3\n");
    assert!(table.read("c.handlers").unwrap().contains("reset\tw\n"));
    assert!(table.read("classes").unwrap().contains("InputSwitch\n"));
    assert!(table
        .read("flatconfig")
        .unwrap()
        .contains("src -> c\n    -> Discard@3;"));
    assert_eq!(
        table.read("nosuch.count").unwrap_err().to_string(),
        "No element named 'nosuch'"
    );
    assert_eq!(
        table.read("c.nosuch").unwrap_err().to_string(),
        "No handler named 'c.nosuch'"
    );
    assert_eq!(
        table.read("c.reset").unwrap_err().to_string(),
        "Handler 'c.reset' write-only"
    );
    assert_eq!(
        table.write("c.count", "1").unwrap_err().to_string(),
        "Handler 'c.count' read-only"
    );
}

/// Records which threads, and which instances of it, passed batches: a
/// test probe for what a reload keeps running (a kept element is the same
/// instance on the same thread; a replaced one is a new instance).
struct ThreadProbe {
    id: u64,
    seen: Arc<std::sync::Mutex<ProbeSeen>>,
}

#[derive(Default)]
struct ProbeSeen {
    threads: std::collections::HashSet<std::thread::ThreadId>,
    instances: std::collections::HashSet<u64>,
}

static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl ThreadProbe {
    const CLASS: switchyard_core::ElementClass = switchyard_core::ElementClass {
        name: "ThreadProbe",
        ports: "1/1",
        processing: "a/a",
        doc: "Test probe: `threads` and `instances` that ran it.",
        factory: |_| {
            Some(Box::new(ThreadProbe {
                id: PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                seen: Arc::default(),
            }))
        },
    };
}

impl switchyard_core::Element for ThreadProbe {
    fn simple_action(&mut self, _batch: &mut switchyard_core::Batch) {
        let mut s = self.seen.lock().unwrap();
        s.threads.insert(std::thread::current().id());
        s.instances.insert(self.id);
    }

    fn take_state(&mut self, old: Box<dyn switchyard_core::Element>) {
        if let Some(old) = switchyard_core::downcast::<ThreadProbe>(old) {
            self.seen = old.seen.clone();
        }
    }

    fn handlers(&self) -> Vec<switchyard_core::Handler> {
        let (a, b) = (self.seen.clone(), self.seen.clone());
        vec![
            switchyard_core::Handler::read_only("threads", move || a.lock().unwrap().threads.len().to_string()),
            switchyard_core::Handler::read_only("instances", move || b.lock().unwrap().instances.len().to_string()),
        ]
    }
}

fn reload(router: &mut Router, registry: &switchyard_core::Registry, text: &str) -> switchyard_core::ReloadReport {
    let (graph, _) = load_text("reload.click", text, registry, &[]).unwrap_or_else(|e| panic!("{e}"));
    router
        .reload(graph, |g| HandlerTable::new(g, registry, text), |_| {})
        .unwrap()
}

/// A reload that changes only the consumer side of a Queue leaves the
/// producer's thread running (never paused, same OS thread), replaces the
/// consumer's between batches, and loses or repeats nothing.
#[test]
fn reload_keeps_unchanged_threads_running_and_loses_nothing() {
    const N: u64 = 3_000_000;
    let registry = switchyard_elements::standard().with(ThreadProbe::CLASS);
    let a = format!(
        "src :: InfiniteSource(LENGTH 64, LIMIT {N}) -> pp :: ThreadProbe -> q :: Queue(4096, BLOCK true)
           -> u :: Unqueue -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(1);
         hub[1] -> new :: Counter -> [1]sel;
         sel -> cp :: ThreadProbe -> check :: SeqCheck -> out :: Counter -> Discard;"
    );
    let b = a.replace(
        "new :: Counter -> [1]sel",
        "new :: Counter -> extra :: Counter -> [1]sel",
    );
    let (graph, table) = load_text("a.click", &a, &registry, &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    await_until("traffic", || count(router.handlers(), "out.count") > 0);
    const RELOADS: u64 = 50;
    for i in 0..RELOADS {
        let r = reload(&mut router, &registry, if i % 2 == 0 { &b } else { &a });
        assert_eq!(
            (r.threads_kept, r.threads_replaced, r.threads_started),
            (1, 1, 1),
            "reload {i}: {r:?}"
        );
        assert!(r.dropped_holding.is_empty(), "{r:?}");
        // The new consumer thread moves traffic before the next reload.
        let h = router.handlers().clone();
        let before = count(&h, "out.count");
        await_until("traffic after the reload", || count(&h, "out.count") > before);
    }
    let h = router.handlers().clone();
    assert!(count(&h, "src.count") < N, "the reloads happened under traffic");
    await_until("every packet", || count(&h, "out.count") == N);
    assert_eq!(count(&h, "check.unique"), N, "none lost");
    assert_eq!(count(&h, "check.duplicates"), 0, "none twice");
    assert_eq!(
        (count(&h, "pp.instances"), count(&h, "pp.threads")),
        (1, 1),
        "the producer was never replaced nor moved"
    );
    assert_eq!(
        count(&h, "cp.instances"),
        RELOADS + 1,
        "the consumer was replaced on each reload"
    );
    assert_eq!(
        count(&h, "cp.threads"),
        1,
        "each successor ran on the thread the reload freed"
    );
    assert_eq!(count(&h, "new.count"), N, "counters carried");
    router.stop_and_wait();
}

/// Queue contents survive a reload in place (not delivered early), move
/// into a queue of another capacity, and what does not fit is counted.
#[test]
fn reload_keeps_queue_contents_and_moves_them_on_a_new_capacity() {
    let registry = switchyard_elements::standard();
    let text = |cap: usize, tail: &str| {
        format!(
            "src :: InfiniteSource(LENGTH 64, LIMIT 500) -> q :: Queue({cap})
               -> u :: Unqueue(ACTIVE false) -> c :: Counter -> {tail}"
        )
    };
    let (graph, table) = load_text("q.click", &text(1000, "Discard;"), &registry, &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    await_until("500 packets queued", || count(router.handlers(), "q.length") == 500);

    let r = reload(&mut router, &registry, &text(1000, "extra :: Counter -> Discard;"));
    assert_eq!((r.threads_kept, r.threads_replaced), (1, 1), "{r:?}");
    let h = router.handlers().clone();
    assert_eq!(count(&h, "q.length"), 500, "held in place");
    assert_eq!(count(&h, "c.count"), 0, "not delivered early");

    let r = reload(&mut router, &registry, &text(2000, "extra :: Counter -> Discard;"));
    assert_eq!((r.threads_kept, r.threads_replaced), (0, 2), "{r:?}");
    let h = router.handlers().clone();
    assert_eq!((count(&h, "q.length"), count(&h, "q.capacity")), (500, 2000));

    reload(&mut router, &registry, &text(300, "extra :: Counter -> Discard;"));
    let h = router.handlers().clone();
    assert_eq!(count(&h, "q.length"), 300);
    assert_eq!(count(&h, "q.drops"), 200, "what did not fit is counted");

    h.write("u.active", "true").unwrap();
    await_until("the held packets", || count(&h, "extra.count") == 300);
    assert_eq!(count(&h, "src.count"), 500, "the source did not start over");
    router.stop_and_wait();
}

/// A reload in the middle of a replay: FromDump goes on where it was (no
/// frame twice), ToDump goes on appending to the same capture (not
/// truncated), and unnamed elements renamed by an insertion before them
/// (`Counter@2` becomes `Counter@3`) keep their state.
#[test]
fn reload_continues_dumps_and_keeps_unnamed_elements() {
    use switchyard_io::pcap::{Reader, Writer};
    let dir = std::env::temp_dir().join(format!("sy-reload-dump-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let sent: Vec<Vec<u8>> = (0..400u32)
        .map(|i| {
            let mut f = switchyard_elements::default_frame(64);
            f[60..64].copy_from_slice(&i.to_be_bytes());
            f
        })
        .collect();
    let mut w = Writer::create(&input, 65535, switchyard_io::pcap::LINKTYPE_ETHERNET).unwrap();
    for (i, f) in sent.iter().enumerate() {
        w.write(i as u64 * 1_000_000, f).unwrap(); // 1 ms apart: 0.4 s
    }
    w.flush().unwrap();
    let mut registry = switchyard_elements::standard();
    for c in switchyard_io::CLASSES {
        registry.add(*c);
    }
    let a = format!(
        "FromDump({}, TIMING true, BURST 1) -> Counter -> ToDump({});",
        input.display(),
        output.display()
    );
    let b = a.replace("-> Counter", "-> Paint(1) -> Counter");
    let (graph, table) = load_text("a.click", &a, &registry, &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    let steps = [(50, "Counter@2"), (150, "Counter@3"), (250, "Counter@2")];
    for (i, (k, name)) in steps.into_iter().enumerate() {
        await_until("frames", || count(router.handlers(), &format!("{name}.count")) >= k);
        let r = reload(&mut router, &registry, if i % 2 == 0 { &b } else { &a });
        assert_eq!(r.carried, 3, "FromDump by name, Counter and ToDump by kind: {r:?}");
    }
    let h = router.handlers().clone();
    await_until("every frame", || count(&h, "Counter@3.count") == 400);
    router.stop_and_wait();
    let mut r = Reader::open(&output).unwrap();
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| r.next_record().unwrap())
        .map(|rec| rec.data)
        .collect();
    assert_eq!(got, sent, "each frame once, in order, in one capture");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Flips and reloads interleaved under traffic, with the new branch 2 ms
/// late (its packets wait in a Queue and a DelayUnqueue across each
/// reload): production still gets every packet exactly once, so the
/// pending flip boundaries and the held packets both survive reloads.
#[test]
fn flips_and_reloads_interleaved_stay_exactly_once_with_a_late_branch() {
    const N: u64 = 2_000_000;
    let registry = switchyard_elements::standard();
    let a = format!(
        "src :: InfiniteSource(LENGTH 64, LIMIT {N}) -> Queue(65536, BLOCK true) -> Unqueue -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> late :: Queue(65536) -> DelayUnqueue(0.002) -> new :: Counter -> [1]sel;
         sel -> check :: SeqCheck -> out :: Counter -> Discard;"
    );
    let b = a.replace(
        "old :: Counter -> [0]sel",
        "old :: Counter -> extra :: Counter -> [0]sel",
    );
    let (graph, table) = load_text("a.click", &a, &registry, &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    for i in 0..40 {
        let h = router.handlers().clone();
        let before = count(&h, "out.count");
        await_until("traffic", || count(&h, "out.count") > before);
        h.write("sel.switch", if i % 2 == 0 { "1" } else { "0" }).unwrap();
        let r = reload(&mut router, &registry, if i % 2 == 0 { &b } else { &a });
        assert_eq!((r.threads_kept, r.threads_replaced), (1, 1), "{r:?}");
    }
    let h = router.handlers().clone();
    assert!(count(&h, "src.count") < N, "the reloads happened under traffic");
    await_until("every packet", || count(&h, "out.count") == N);
    assert_eq!(count(&h, "check.unique"), N, "none lost");
    assert_eq!(count(&h, "check.duplicates"), 0, "none twice");
    router.stop_and_wait();
}

/// A BLOCK producer waiting for room in a full Queue while its consumer is
/// paused by the same reload must not wait forever: it hands its batch
/// over and pauses too. Both sides change on every reload here.
#[test]
fn reload_of_both_sides_of_a_full_blocking_queue_neither_hangs_nor_loses() {
    const N: u64 = 1_000_000;
    let a = format!(
        "src :: InfiniteSource(LENGTH 64, LIMIT {N}) -> p :: Counter -> Queue(64, BLOCK true)
           -> Unqueue -> c :: Counter -> check :: SeqCheck -> out :: Counter -> Discard;"
    );
    // Numbered by a Tee so SeqCheck can tell loss and duplicates apart.
    let a = a.replace("-> p :: Counter", "-> Tee(1) -> p :: Counter");
    let b = a
        .replace("p :: Counter", "p :: Counter -> p2 :: Counter")
        .replace("c :: Counter", "c :: Counter -> c2 :: Counter");
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let registry = switchyard_elements::standard();
        let (graph, table) = load_text("a.click", &a, &registry, &[]).unwrap();
        let mut router = Router::start(graph, Arc::new(table));
        for i in 0..50 {
            let r = reload(&mut router, &registry, if i % 2 == 0 { &b } else { &a });
            assert_eq!((r.threads_kept, r.threads_replaced), (0, 2), "{r:?}");
        }
        let h = router.handlers().clone();
        let under_traffic = count(&h, "src.count") < N;
        await_until("every packet", || count(&h, "out.count") == N);
        let result = (under_traffic, count(&h, "check.unique"), count(&h, "check.duplicates"));
        router.stop_and_wait();
        let _ = done_tx.send(result);
    });
    let (under_traffic, unique, dup) = done
        .recv_timeout(Duration::from_secs(60))
        .expect("reloads hung (or the router thread panicked)");
    assert!(under_traffic, "the reloads happened under traffic");
    assert_eq!((unique, dup), (N, 0), "every packet once");
}

/// A reload that removes a Queue reports it when it still held packets
/// (they are gone with it), and not when it was empty.
#[test]
fn reload_reports_removed_elements_that_held_packets() {
    let registry = switchyard_elements::standard();
    let queued = |active: bool| {
        format!("src :: InfiniteSource(LENGTH 64, LIMIT 100) -> q :: Queue -> u :: Unqueue(ACTIVE {active}) -> out :: Counter -> Discard;")
    };
    let direct = "src :: InfiniteSource(LENGTH 64, LIMIT 100) -> out :: Counter -> Discard;";
    let (graph, table) = load_text("q.click", &queued(false), &registry, &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    await_until("100 held", || count(router.handlers(), "q.length") == 100);
    let r = reload(&mut router, &registry, direct);
    assert_eq!(r.dropped_holding, ["q"], "{r:?}");

    let r = reload(&mut router, &registry, &queued(true));
    assert!(r.dropped_holding.is_empty(), "{r:?}");
    router.handlers().write("src.reset", "").unwrap();
    await_until("delivered", || count(router.handlers(), "out.count") == 100);
    let r = reload(&mut router, &registry, direct);
    assert!(r.dropped_holding.is_empty(), "an empty queue held nothing: {r:?}");
    router.stop_and_wait();
}

#[test]
fn push_cycles_deliver_every_packet_once_around() {
    // Click's IP router sends ping replies and ICMP errors back into the
    // route lookup that produced them: the packets must come round, not
    // be lost because the lookup is still on the call stack.
    let t = run("InfiniteSource(LIMIT 100000, STOP true) -> ps :: PaintSwitch;
                 ps[0] -> again :: Counter -> Paint(1) -> ps;
                 ps[1] -> out :: Counter -> Discard;");
    assert_eq!(count(&t, "again.count"), 100_000);
    assert_eq!(count(&t, "out.count"), 100_000);
    assert_eq!(count(&t, "cycle_drops"), 0, "nothing circled past the bound");
}

#[test]
fn a_cycle_that_never_lets_go_is_bounded_not_a_hang() {
    // Every batch would circle forever: after the per-push bound the
    // router drops what circles and goes on, and the source finishes.
    let t = run("InfiniteSource(LIMIT 10, BURST 1, STOP true) -> c :: Counter; c -> c;");
    let n = count(&t, "c.count");
    assert!((10..=10 * 4097).contains(&n), "{n}");
    assert!(n > 10, "the cycle went round at least once: {n}");
    // Nothing leaves the cycle: each packet circles until it is dropped,
    // once.
    assert_eq!(count(&t, "cycle_drops"), 10);
}

#[test]
fn a_cycle_that_fans_out_is_bounded_too() {
    // Each round multiplies the batches waiting for the element on the
    // stack; the waiting list is bounded, so this ends, and promptly.
    let t = run(
        "InfiniteSource(LIMIT 3, BURST 1, STOP true) -> c :: Counter -> t :: Tee(64);
                 t[0] -> c; t[1] -> c; t[2] -> c; t[3] -> c; t[4] -> c; t[5] -> c; t[6] -> c; t[7] -> c;
                 t[8] -> c; t[9] -> c; t[10] -> c; t[11] -> c; t[12] -> c; t[13] -> c; t[14] -> c; t[15] -> c;
                 t[16] -> c; t[17] -> c; t[18] -> c; t[19] -> c; t[20] -> c; t[21] -> c; t[22] -> c; t[23] -> c;
                 t[24] -> c; t[25] -> c; t[26] -> c; t[27] -> c; t[28] -> c; t[29] -> c; t[30] -> c; t[31] -> c;
                 t[32] -> c; t[33] -> c; t[34] -> c; t[35] -> c; t[36] -> c; t[37] -> c; t[38] -> c; t[39] -> c;
                 t[40] -> c; t[41] -> c; t[42] -> c; t[43] -> c; t[44] -> c; t[45] -> c; t[46] -> c; t[47] -> c;
                 t[48] -> c; t[49] -> c; t[50] -> c; t[51] -> c; t[52] -> c; t[53] -> c; t[54] -> c; t[55] -> c;
                 t[56] -> c; t[57] -> c; t[58] -> c; t[59] -> c; t[60] -> c; t[61] -> c; t[62] -> c; t[63] -> c;",
    );
    let n = count(&t, "c.count");
    assert!(n > 3 && n <= 3 * (4096 + 1), "{n}");
    // Each of the n arrivals at c sends 64 copies back; all but the n - 3
    // that arrived again (the 3 came from the source) were dropped.
    assert_eq!(count(&t, "cycle_drops"), 64 * n - (n - 3));
}

#[test]
fn a_compounds_rest_arguments_are_arguments_again_and_a_trailing_comma_is_none() {
    // Click substitutes `$r` into the text, then splits it: LIMIT and
    // STOP reach the source, which sends 10 packets and stops the router.
    let t = run("elementclass S { __REST__ $r | InfiniteSource($r) -> output; }
                 S(LIMIT 10, STOP true,) -> c :: Counter -> Discard;
                 require(compact_config);");
    assert_eq!(count(&t, "c.count"), 10);
}

#[test]
fn a_driver_kept_by_a_reload_still_takes_the_stop_requests() {
    // The driver's thread is kept (its group did not change); stop
    // requests must reach the instance that runs, not the reload's copy.
    let registry = switchyard_elements::standard();
    let a = "src :: RatedSource(RATE 1000) -> c :: Counter -> Discard;
             dm :: DriverManager(wait_stop, set n 1, wait_stop, stop);";
    let b = format!("{a} Idle -> extra :: Counter -> Discard;");
    let (graph, table) = load_text("dm.click", a, &registry, &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    let r = reload(&mut router, &registry, &b);
    assert!(r.threads_kept >= 1, "{r:?}");
    let h = router.handlers().clone();
    h.write("stop", "").unwrap();
    await_until("the driver took the first request", || {
        h.read_with("dm.get", "n").is_ok()
    });
    assert!(
        !router.wait_timeout(Duration::from_millis(50)),
        "one request: still running"
    );
    h.write("stop", "").unwrap();
    assert!(
        router.wait_timeout(Duration::from_secs(30)),
        "the second request stops it"
    );
}

#[test]
fn a_graph_that_circulates_packets_forever_still_stops() {
    // A Tee feeding its own Queue keeps one packet going round forever:
    // the stop delivers in-flight packets for a bounded time, then ends.
    let text = "q :: Queue -> Unqueue -> t :: Tee(2); t[0] -> q; t[1] -> c :: Counter -> Discard;
                InfiniteSource(LIMIT 1) -> q;";
    let (graph, table) = load_text("cycle.click", text, &switchyard_elements::standard(), &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    let h = router.handlers().clone();
    await_until("the packet circulates", || count(&h, "c.count") > 100);
    router.stopper().stop();
    assert!(
        router.wait_timeout(Duration::from_secs(30)),
        "stopped despite the cycle"
    );
}
