//! Work that must grow at most linearly with the configuration: checking
//! it, reloading it (above all the pause, which must grow with the part
//! that changes, not with the graph), stopping it.
//!
//! No timed assertions: each test measures the same operation on a small
//! and a large graph in one run and bounds the ratio. A linear cost makes
//! the ratio about the size ratio (or about 1 for the pause); the
//! quadratic code these guard against made it hundreds of times larger.

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::{load_text, HandlerTable, Router};

/// A running source thread, and `idle` unnamed elements that never run.
fn config(idle: usize, lead: bool) -> String {
    let mut text = String::new();
    if lead {
        // One unnamed element more at the top renames every later one.
        text.push_str("Idle -> Discard;\n");
    }
    text.push_str("src :: RatedSource(RATE 1000) -> c :: Counter -> Discard;\n");
    for _ in 0..idle / 4 {
        text.push_str("Idle -> Counter -> Counter -> Discard;\n");
    }
    text
}

fn best_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| f()).min().unwrap()
}

/// The shortest pause of several reloads that rename every unnamed
/// element of a graph of `idle` of them, and how long stopping took.
fn reload_pause(idle: usize) -> (Duration, Duration) {
    let registry = switchyard_elements::standard();
    let texts = [config(idle, false), config(idle, true)];
    let (graph, table) = load_text("a.click", &texts[0], &registry, &[]).unwrap();
    let mut router = Router::start(graph, Arc::new(table));
    let pause = best_of(6, || {
        let text = &texts[1];
        let (graph, _) = load_text("b.click", text, &registry, &[]).unwrap();
        let report = router
            .reload(graph, |g| HandlerTable::new(g, &registry, text), |_| {})
            .unwrap();
        assert_eq!(report.threads_replaced, 1);
        let (graph, _) = load_text("a.click", &texts[0], &registry, &[]).unwrap();
        router
            .reload(graph, |g| HandlerTable::new(g, &registry, &texts[0]), |_| {})
            .unwrap();
        report.pause.max(Duration::from_micros(50))
    });
    let stopping = Instant::now();
    router.stop_and_wait();
    let stop = stopping.elapsed();
    eprintln!("{idle} idle elements: pause {pause:?}, stop {stop:?}");
    (pause, stop)
}

#[test]
fn a_reload_pause_grows_with_what_changes_not_with_the_graph_and_stopping_is_linear() {
    let (small, stop_small) = reload_pause(400);
    let (large, stop_large) = reload_pause(20_000);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    eprintln!("pause ratio, 50x the elements: {ratio:.1}");
    // The same thread is replaced in both: linear in the change is ~1.
    // Planning inside the pause made it over 2,500 (quadratic).
    assert!(ratio < 25.0, "pause {small:?} with 400 elements, {large:?} with 20,000");
    // Stopping frees every element once: linear, so ~50 here (one
    // measurement each, hence the generous bound).
    let ratio = stop_large.as_secs_f64() / stop_small.max(Duration::from_millis(2)).as_secs_f64();
    assert!(
        ratio < 600.0,
        "stop took {stop_small:?} with 400 elements, {stop_large:?} with 20,000"
    );
}

fn check_time(elements: usize) -> Duration {
    let registry = switchyard_elements::standard();
    let text = config(elements, false);
    best_of(3, || {
        let t = Instant::now();
        let r = load_text("c.click", &text, &registry, &[]);
        let took = t.elapsed();
        assert!(r.is_ok());
        took
    })
}

#[test]
fn checking_grows_linearly_with_the_configuration() {
    let small = check_time(2_000);
    let large = check_time(20_000);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    eprintln!("check: 2,000 elements {small:?}, 20,000 {large:?}, ratio {ratio:.1}");
    // Linear is ~10; the per-element scans of every connection made it
    // ~100.
    assert!(
        ratio < 35.0,
        "check took {small:?} for 2,000 elements and {large:?} for 20,000"
    );
}
