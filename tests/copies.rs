//! Several copies of one pipeline behind one logical switch
//! (`Copies(N)`): each copy on a thread of its own, one switch to the
//! operator. In memory, each copy's source is its own flow, numbered by
//! its own hub; a flip must leave every packet of every flow in
//! production exactly once.

mod common;

use common::{audit_lines, await_until, scratch_dir, RouterProc};
use std::sync::Arc;
use switchyard_core::{load_text, HandlerError, HandlerTable, Router};

fn count(t: &HandlerTable, h: &str) -> u64 {
    let v = t.read(h).unwrap_or_else(|e| panic!("{h}: {e}"));
    v.trim().parse().unwrap_or_else(|_| panic!("{h}: '{v}'"))
}

fn start(text: &str) -> Router {
    let registry = switchyard_elements::standard();
    let (graph, table) = load_text("copies.click", text, &registry, &[]).unwrap_or_else(|e| panic!("{e}"));
    Router::start(graph, Arc::new(table))
}

/// The hub/switch graph with a late branch (behind a Queue and a
/// DelayUnqueue), in two copies, flipped 200 times from outside under
/// full traffic: both copies follow every flip, and each copy's packets
/// leave exactly once (the stop delivers what is in flight).
#[test]
fn copies_flip_as_one_and_every_flow_leaves_exactly_once() {
    let text = "Copies(2);
         src :: InfiniteSource(LENGTH 64) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> late :: Queue(65536) -> DelayUnqueue(0.0005) -> new :: Counter -> [1]sel;
         sel -> check :: SeqCheck -> out :: Counter -> Discard;";
    let router = start(text);
    let h = router.handlers().clone();
    for i in 0..200 {
        let (a, b) = (count(&h, "out#0.count"), count(&h, "out#1.count"));
        await_until("traffic through both copies", || {
            count(&h, "out#0.count") > a && count(&h, "out#1.count") > b
        });
        let to = if i % 2 == 0 { "1" } else { "0" };
        h.write("sel.switch", to).unwrap();
        // Every copy follows.
        assert_eq!(h.read("sel.switch").unwrap(), to);
        assert_eq!(h.read("sel#0.switch").unwrap(), to);
        assert_eq!(h.read("sel#1.switch").unwrap(), to);
    }
    router.stop_and_wait();
    for k in 0..2 {
        let sent = count(&h, &format!("src#{k}.count"));
        assert!(sent > 0);
        assert_eq!(count(&h, &format!("check#{k}.unique")), sent, "copy {k}: none lost");
        assert_eq!(count(&h, &format!("check#{k}.count")), sent, "copy {k}: none twice");
    }
    assert_eq!(count(&h, "check.unique"), count(&h, "src.count"));
    assert_eq!(count(&h, "check.duplicates"), 0);
    assert_eq!(count(&h, "check.missing"), 0);
    // Each copy flipped at its own boundary.
    let boundaries = h.read("sel.boundary").unwrap();
    let b: Vec<u64> = boundaries.split(' ').map(|x| x.parse().unwrap()).collect();
    assert_eq!(b.len(), 2, "{boundaries}");
    assert!(b.iter().all(|&x| x > 0), "{boundaries}");
}

/// Reads give sums for counts, the one value for settings, and each copy
/// by its name; the generic handlers and the graph show plain names;
/// writes are checked and made in every copy; `$COPY` numbers the copies.
#[test]
fn copies_read_and_write_as_one_element() {
    const N: u64 = 20_000;
    let text = format!(
        "c :: Copies(3);
         src :: InfiniteSource(LENGTH 64, LIMIT {N}, STOP true) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> new :: Counter -> [1]sel;
         sel -> Paint($COPY) -> ps :: PaintSwitch;
         ps[0] -> p0 :: Counter -> Discard;
         ps[1] -> p1 :: Counter -> Discard;
         ps[2] -> p2 :: Counter -> Discard;"
    );
    let mut router = start(&text);
    let h = router.handlers().clone();
    // Every copy's STOP counts: the router stops once all three sent N.
    assert!(
        router.wait_timeout(std::time::Duration::from_secs(60)),
        "the router stopped"
    );
    assert_eq!(count(&h, "src.count"), 3 * N);
    assert_eq!(count(&h, "old.count"), 3 * N);
    for k in 0..3 {
        assert_eq!(count(&h, &format!("src#{k}.count")), N);
        // Copy k painted its packets k.
        for p in 0..3 {
            let want = if p == k { N } else { 0 };
            assert_eq!(count(&h, &format!("p{p}#{k}.count")), want, "p{p}#{k}");
        }
    }
    assert_eq!(h.read("c.copies").unwrap(), "3");
    assert_eq!(h.read("sel.switch").unwrap(), "0");
    let list = h.read("list").unwrap();
    assert!(list.lines().any(|l| l == "sel") && !list.contains('#'), "{list}");
    let ports = h.read("sel.ports").unwrap();
    assert!(ports.contains("old[0]") && !ports.contains('#'), "{ports}");
    assert!(h.read("sel#2.ports").unwrap().contains("old#2[0]"));
    assert_eq!(h.element("sel").unwrap().copies, 3);
    // The graph as the operator sees it: one sel, wired once.
    let sel = h.elements().iter().position(|e| e.name == "sel").unwrap();
    assert_eq!(h.wires().iter().filter(|w| w.to == sel).count(), 2);
    // A write every copy refuses, refused once, with the element's reason.
    let refused = h.write("sel.switch", "2").unwrap_err().to_string();
    assert!(refused.contains("out of range"), "{refused}");
    h.write("sel.switch", "1").unwrap();
    for k in 0..3 {
        assert_eq!(h.read(&format!("sel#{k}.switch")).unwrap(), "1");
    }
    // One copy is read only: writes go to every copy through the element,
    // so the copies, the audit log and the state file agree.
    let one = h.write("sel#2.switch", "0").unwrap_err();
    assert_eq!(one, HandlerError::NotWritable("sel#2.switch".into()));
    h.write("old.reset", "").unwrap();
    assert_eq!(count(&h, "old.count"), 0, "reset reached every copy");
    // The flattened configuration is the pipeline once, under plain
    // names, `$COPY` as written: it loads again to the same copies.
    let flat = h.read("flatconfig").unwrap();
    assert!(
        flat.contains("Copies(3)") && flat.contains("Paint($COPY)") && !flat.contains('#'),
        "{flat}"
    );
    let registry = switchyard_elements::standard();
    let (again, _) = load_text("flat.click", &flat, &registry, &[]).unwrap_or_else(|e| panic!("{e}\n{flat}"));
    let paints: Vec<&str> = again
        .nodes
        .iter()
        .filter(|n| n.class == "Paint")
        .map(|n| n.config.as_str())
        .collect();
    assert_eq!(paints, ["0", "1", "2"]);
}

/// The standard elements with the devices and dumps.
fn registry() -> switchyard_core::Registry {
    let mut r = switchyard_elements::standard();
    for c in switchyard_io::CLASSES {
        r.add(*c);
    }
    r
}

fn load_error(text: &str) -> String {
    let registry = registry();
    match load_text("copies.click", text, &registry, &[]) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn copies_that_would_share_a_resource_are_refused() {
    let e = load_error(
        "Copies(2);\nFromDevice(lo) -> Counter -> ToDump(/tmp/one.pcap);\nsrc :: InfiniteSource -> ToDump(/tmp/c$COPY.pcap);",
    );
    assert!(
        e.contains("copies.click:2:1: error: 'FromDevice@2 :: FromDevice': copies 0 and 1 would both receive every frame of 'lo': give it FANOUT"),
        "{e}"
    );
    assert!(
        e.contains("would both write '/tmp/one.pcap': put $COPY in its file name"),
        "{e}"
    );
    assert!(!e.contains("/tmp/c"), "$COPY tells the files apart: {e}");
    assert_eq!(e.matches("error:").count(), 2, "each reported once: {e}");
    // NAT keeps its mappings per copy, and a reply may reach the other.
    let e = load_error(
        "Copies(2);\nsrc :: InfiniteSource -> Strip(14) -> CheckIPHeader -> nat :: IPRewriter(pattern 10.0.0.1 1024-65535 - - 0 1, drop);\nnat[0] -> Discard; nat[1] -> Discard; Idle -> [1]nat;",
    );
    assert!(
        e.contains("'nat :: IPRewriter': copies 0 and 1 would both keep NAT mappings: NAT does not run in copies yet"),
        "{e}"
    );
    // FANOUT shares the interface: accepted.
    let registry = registry();
    let ok = "Copies(2); FromDevice(lo, FANOUT 5) -> Discard;";
    assert!(load_text("copies.click", ok, &registry, &[]).is_ok());
}

#[test]
fn copies_count_errors_name_the_place() {
    let e = load_error("Copies(0);\nInfiniteSource -> Discard;");
    assert!(e.contains("copies.click:1:") && e.contains("N must be 1 to 64"), "{e}");
    let e = load_error("Copies(2);\nsecond :: Copies(3);\nInfiniteSource -> Discard;");
    assert!(
        e.contains("copies.click:2:1: error: 'second :: Copies': a configuration has one Copies element"),
        "{e}"
    );
    // An error inside the copied pipeline is reported once, not per copy.
    let e = load_error("Copies(4);\nInfiniteSource(NOSUCH 1) -> Discard;");
    assert_eq!(e.matches("NOSUCH").count(), 2, "one error, its line and caret: {e}");
}

/// A reload keeps every copy's state and threads where unchanged, and a
/// reload to another number of copies is refused with the router
/// untouched.
#[test]
fn reloads_keep_the_copies_and_refuse_another_count() {
    let registry = switchyard_elements::standard();
    let a = "Copies(2);
         src :: InfiniteSource(LENGTH 64) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> new :: Counter -> [1]sel;
         sel -> out :: Counter -> Discard;";
    let mut router = start(a);
    let h = router.handlers().clone();
    h.write("sel.switch", "1").unwrap();
    let b = a.replace("sel -> out", "sel -> extra :: Counter -> out");
    let (graph, _) = load_text("b.click", &b, &registry, &[]).unwrap();
    let report = router
        .reload(graph, |g| HandlerTable::new(g, &registry, &b), |_| {})
        .unwrap();
    assert_eq!(report.threads_replaced, 2, "{report:?}");
    let h = router.handlers().clone();
    for k in 0..2 {
        assert_eq!(
            h.read(&format!("sel#{k}.switch")).unwrap(),
            "1",
            "copy {k}'s position carried"
        );
    }
    await_until("traffic after the reload", || {
        count(&h, "extra#0.count") > 0 && count(&h, "extra#1.count") > 0
    });
    let c = b.replace("Copies(2)", "Copies(3)");
    let (graph, _) = load_text("c.click", &c, &registry, &[]).unwrap();
    let err = router
        .reload(graph, |g| HandlerTable::new(g, &registry, &c), |_| {})
        .unwrap_err();
    assert!(err.contains("a reload cannot change the number of copies"), "{err}");
    let before = count(&h, "extra.count");
    await_until("traffic goes on", || count(&h, "extra.count") > before);
    router.stop_and_wait();
}

/// Through the control socket: one audit line and one state-file entry
/// for the logical switch, restored into every copy after a restart.
#[test]
fn the_control_plane_sees_one_switch() {
    let dir = scratch_dir();
    let (audit, state) = (dir.join("audit.jsonl"), dir.join("state.json"));
    let flags = ["--audit", audit.to_str().unwrap(), "--state", state.to_str().unwrap()];
    let config = "Copies(2);
         src :: RatedSource(LENGTH 64, RATE 2000) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> new :: Counter -> [1]sel;
         sel -> out :: Counter -> Discard;";
    let r = RouterProc::start_in(dir.clone(), config, &flags);
    let (code, _, err) = r.ctl(&["write", "sel.switch", "1"]);
    assert_eq!(code, 0, "{err}");
    let lines = audit_lines(&audit);
    let writes: Vec<_> = lines.iter().filter(|l| l["handler"].as_str().is_some()).collect();
    assert_eq!(writes.len(), 1, "one audit line: {lines:?}");
    assert_eq!(writes[0]["handler"], "sel.switch");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("sel.switch") && !saved.contains('#'), "{saved}");
    let before = r.num("new.count");
    await_until("both copies count", || r.num("new.count") > before + 100);
    assert!(r.num("new#0.count") > 0 && r.num("new#1.count") > 0);
    let dir = r.kill9();
    let r = RouterProc::start_in(dir, config, &flags);
    assert_eq!(r.read("sel#0.switch"), "1", "restored into copy 0");
    assert_eq!(r.read("sel#1.switch"), "1", "restored into copy 1");
    r.stop();
}

/// A gate is one too: a Watchdog (kept once) reads the copies' sum and
/// its write moves every copy back. Each copy alone sends 15000 packets,
/// so only the sum crosses 20000.
#[test]
fn a_gate_reads_the_sum_and_rolls_every_copy_back() {
    let text = "Copies(2);
         src :: InfiniteSource(LENGTH 64, LIMIT 15000) -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(1);
         hub[1] -> new :: Counter -> [1]sel;
         sel -> out :: Counter -> Discard;
         gate :: Watchdog(CONDITION \"new.count > 20000\", INTERVAL 10ms, WRITE \"sel.switch 0\");";
    let router = start(text);
    let h = router.handlers().clone();
    await_until("the gate to trip", || h.read("gate.tripped").unwrap() == "true");
    let reason = h.read("gate.reason").unwrap();
    assert!(reason.contains("new.count"), "{reason}");
    for k in 0..2 {
        assert_eq!(h.read(&format!("sel#{k}.switch")).unwrap(), "0", "copy {k} rolled back");
        assert!(count(&h, &format!("new#{k}.count")) <= 15000);
    }
    assert!(count(&h, "new.count") > 20000);
    router.stop_and_wait();
}

/// A test element that holds its thread while `hold` is true (as a
/// thread blocked in a device or a lock would be), and says how many
/// copies are held.
struct Stall {
    hold: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<std::sync::atomic::AtomicU64>,
}

impl Stall {
    const CLASS: switchyard_core::ElementClass = switchyard_core::ElementClass {
        name: "Stall",
        ports: "1/1",
        processing: "a/a",
        doc: "Test element: holds its thread while `hold` is true; `held` says whether it does.",
        factory: |_| {
            Some(Box::new(Stall {
                hold: Arc::default(),
                held: Arc::default(),
            }))
        },
    };
}

impl switchyard_core::Element for Stall {
    fn simple_action(&mut self, _batch: &mut switchyard_core::Batch) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.hold.load(SeqCst) {
            self.held.store(1, SeqCst);
            while self.hold.load(SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.held.store(0, SeqCst);
        }
    }

    fn handlers(&self) -> Vec<switchyard_core::Handler> {
        use std::sync::atomic::Ordering::SeqCst;
        let (a, b) = (self.hold.clone(), self.held.clone());
        vec![
            switchyard_core::Handler::write_only("hold", move |v| {
                a.store(v.trim() == "true", SeqCst);
                Ok(())
            }),
            switchyard_core::Handler::read_only("held", move || b.load(SeqCst).to_string()),
        ]
    }
}

/// A write to copies waits for their threads: a thread held past the
/// limit makes the wait fail (the control socket answers 220 then), and
/// once it goes on, the wait succeeds.
#[test]
fn a_write_to_copies_waits_for_their_threads() {
    let registry = switchyard_elements::standard().with(Stall::CLASS);
    let text = "Copies(2);
         src :: InfiniteSource(LENGTH 64) -> st :: Stall -> hub :: Tee(2);
         hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
         hub[1] -> new :: Counter -> [1]sel;
         sel -> out :: Counter -> Discard;";
    let (graph, table) = load_text("stall.click", text, &registry, &[]).unwrap();
    let router = Router::start(graph, Arc::new(table));
    let h = router.handlers().clone();
    // Both copies' threads take this write, then hold.
    h.write("st.hold", "true").unwrap();
    await_until("both copies held", || count(&h, "st.held") == 2);
    h.write_unsettled("sel.switch", "1").unwrap();
    let late = h.settle("sel.switch").unwrap_err();
    assert!(late.contains("not every copy's thread took it"), "{late}");
    h.write_unsettled("st.hold", "false").unwrap();
    await_until("both copies going on", || count(&h, "st.held") == 0);
    h.settle("sel.switch").unwrap();
    assert_eq!(h.read("sel#0.switch").unwrap(), "1");
    router.stop_and_wait();
}
