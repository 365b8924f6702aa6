//! Running a checked graph: one thread per group of elements joined by
//! push/pull connections, split at thread boundaries (Queue).
//!
//! Within a thread, elements call each other directly: [`Context::push`]
//! and [`Context::pull`] look up the connected element and call it, one
//! virtual call per batch per hop, no channel and no lock. Each thread
//! loops over its tasks (sources, Unqueue, pulling sinks) and sleeps when
//! none has work, until a Queue or a stop request wakes it.
//!
//! Stopping: a source with `STOP true` (or a signal) requests a stop.
//! Sources then produce nothing more; each thread finishes the batches it
//! holds and exits once every Queue feeding it is empty and its producers
//! have exited, so everything in flight is delivered.

use crate::element::{Element, Processing, Work};
use crate::graph::Graph;
use crate::packet::Batch;
use crate::table::HandlerTable;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// The longest a thread sleeps without being woken; bounds the cost of a
/// missed wake-up.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Wakes one router thread when it sleeps for lack of work.
#[derive(Clone)]
pub struct Waker(Arc<WakerInner>);

struct WakerInner {
    sleeping: AtomicBool,
    thread: Thread,
}

impl Waker {
    fn current() -> Waker {
        Waker(Arc::new(WakerInner {
            sleeping: AtomicBool::new(false),
            thread: std::thread::current(),
        }))
    }

    /// Wakes the thread if it sleeps; one atomic load otherwise.
    pub fn wake(&self) {
        if self.0.sleeping.load(Ordering::SeqCst) {
            self.0.thread.unpark();
        }
    }

    /// Sleeps the calling thread (which must be this waker's) up to
    /// `timeout`, unless `ready` already holds once the thread is marked
    /// as sleeping, so a wake-up between the check and the sleep is not
    /// lost.
    pub fn sleep_unless(&self, timeout: Duration, ready: impl Fn() -> bool) {
        self.0.sleeping.store(true, Ordering::SeqCst);
        if !ready() {
            std::thread::park_timeout(timeout);
        }
        self.0.sleeping.store(false, Ordering::SeqCst);
    }
}

/// How elements that steer the router (an automatic rollback gate) read
/// and write handlers: through the same path as operators, so their
/// writes are validated, persisted and audited with who and why.
pub trait ControlPlane: Send + Sync {
    fn read(&self, handler: &str) -> Result<String, String>;
    /// Writes on behalf of `actor`, recording `reason`.
    fn write_as(&self, handler: &str, value: &str, actor: &str, reason: &str) -> Result<(), String>;
}

/// The plain handler table as a control plane (no audit, no state file):
/// what a router has when nothing better is given.
impl ControlPlane for HandlerTable {
    fn read(&self, handler: &str) -> Result<String, String> {
        HandlerTable::read(self, handler).map_err(|e| e.to_string())
    }

    fn write_as(&self, handler: &str, value: &str, actor: &str, reason: &str) -> Result<(), String> {
        tracing::warn!(handler, value, actor, reason, "handler written by an element");
        HandlerTable::write(self, handler, value).map_err(|e| e.to_string())
    }
}

/// State shared by every thread of a router and its handle.
pub(crate) struct Shared {
    stop: AtomicBool,
    threads: Mutex<Vec<Thread>>,
    control: Arc<dyn ControlPlane>,
}

impl Shared {
    fn request_stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            tracing::info!("router stopping");
        }
        for t in self.threads.lock().expect("threads lock").iter() {
            t.unpark();
        }
    }
}

const NONE: u32 = u32::MAX;

/// The elements of one thread and the wiring between all elements.
struct Runner {
    slots: Vec<Option<Box<dyn Element>>>,
    /// Push output `p` of element `e` goes to `push_to[out_base[e] + p]`.
    out_base: Arc<Vec<u32>>,
    push_to: Arc<Vec<(u32, u32)>>,
    /// Pull input `p` of element `e` comes from `pull_from[in_base[e] + p]`.
    in_base: Arc<Vec<u32>>,
    pull_from: Arc<Vec<(u32, u32)>>,
    noutputs: Arc<Vec<u32>>,
    shared: Arc<Shared>,
}

impl Runner {
    fn push(&mut self, elem: usize, port: usize, batch: Batch) {
        // A slot is empty while its element is on the call stack: a push
        // cycle. The batch is dropped rather than re-entering the element.
        if let Some(mut e) = self.slots[elem].take() {
            e.push(port, batch, &mut Context { runner: self, elem });
            self.slots[elem] = Some(e);
        }
    }

    fn pull(&mut self, elem: usize, port: usize) -> Option<Batch> {
        let mut e = self.slots[elem].take()?;
        let b = e.pull(port, &mut Context { runner: self, elem });
        self.slots[elem] = Some(e);
        b
    }

    fn run(&mut self, elem: usize) -> Work {
        let Some(mut e) = self.slots[elem].take() else {
            return Work::Done;
        };
        let w = e.run(&mut Context { runner: self, elem });
        self.slots[elem] = Some(e);
        w
    }

    fn all(&self, f: impl Fn(&dyn Element) -> bool) -> bool {
        self.slots.iter().flatten().all(|e| f(e.as_ref()))
    }
}

/// An element's view of the graph while it runs.
pub struct Context<'a> {
    runner: &'a mut Runner,
    elem: usize,
}

impl Context<'_> {
    /// Passes `batch` to whatever push output `port` is connected to.
    #[inline]
    pub fn push(&mut self, port: usize, batch: Batch) {
        let r = &mut *self.runner;
        let (dst, dport) = r.push_to[r.out_base[self.elem] as usize + port];
        if dst != NONE {
            r.push(dst as usize, dport as usize, batch);
        }
    }

    /// Pulls a batch from whatever pull input `port` is connected to.
    #[inline]
    pub fn pull(&mut self, port: usize) -> Option<Batch> {
        let r = &mut *self.runner;
        let (src, sport) = r.pull_from[r.in_base[self.elem] as usize + port];
        if src == NONE {
            return None;
        }
        r.pull(src as usize, sport as usize)
    }

    pub fn noutputs(&self) -> usize {
        self.runner.noutputs[self.elem] as usize
    }

    /// Asks the router to stop once in-flight packets are delivered
    /// (a source's `STOP true`).
    pub fn request_stop(&self) {
        self.runner.shared.request_stop();
    }

    /// True once a stop was requested: sources stop producing.
    pub fn stopping(&self) -> bool {
        self.runner.shared.stop.load(Ordering::Relaxed)
    }

    /// The router's control plane, for elements that read or steer other
    /// elements' handlers.
    pub fn control(&self) -> &Arc<dyn ControlPlane> {
        &self.runner.shared.control
    }
}

/// Elements by index, as a stopped router hands them back.
pub type Slots = Vec<Option<Box<dyn Element>>>;

/// A running router: its threads and its handlers.
pub struct Router {
    handlers: Arc<HandlerTable>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Slots>>,
    /// Elements of groups that never got a thread (nothing to run).
    idle: Slots,
    exited: Receiver<()>,
    running: usize,
    started: Instant,
}

/// A cloneable way to stop a router from elsewhere (a signal handler
/// thread, a control connection).
#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    pub fn stop(&self) {
        self.0.request_stop();
    }
}

impl Router {
    /// Partitions the graph into threads and starts them; elements that
    /// steer the router use the handler table directly.
    pub fn start(graph: Graph, handlers: Arc<HandlerTable>) -> Router {
        let control: Arc<dyn ControlPlane> = handlers.clone();
        Router::start_with(graph, handlers, control)
    }

    /// Like [`start`](Self::start), with the control plane (audit log,
    /// state file) that elements' writes go through.
    pub fn start_with(mut graph: Graph, handlers: Arc<HandlerTable>, control: Arc<dyn ControlPlane>) -> Router {
        let n = graph.nodes.len();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            control,
        });

        // Wiring tables, shared by every thread.
        let mut out_base = Vec::with_capacity(n);
        let mut in_base = Vec::with_capacity(n);
        let (mut nout, mut nin) = (0u32, 0u32);
        for node in &graph.nodes {
            out_base.push(nout);
            in_base.push(nin);
            nout += node.ports.outputs.len() as u32;
            nin += node.ports.inputs.len() as u32;
        }
        let mut push_to = vec![(NONE, NONE); nout as usize];
        let mut pull_from = vec![(NONE, NONE); nin as usize];
        for (f, t) in &graph.connections {
            let fe = f.element;
            if graph.nodes[fe].ports.outputs[f.port as usize] == Processing::Push {
                push_to[(out_base[fe] + f.port) as usize] = (t.element as u32, t.port);
            } else {
                pull_from[(in_base[t.element] + t.port) as usize] = (fe as u32, f.port);
            }
        }
        let noutputs: Vec<u32> = graph.nodes.iter().map(|n| n.ports.outputs.len() as u32).collect();

        // Threads: union-find over element halves; a thread boundary keeps
        // its input half (i) apart from its output half (n + i).
        let mut parent: Vec<usize> = (0..2 * n).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        fn union(p: &mut [usize], a: usize, b: usize) {
            let (ra, rb) = (find(p, a), find(p, b));
            p[ra] = rb;
        }
        for (i, node) in graph.nodes.iter().enumerate() {
            if !node.element.is_thread_boundary() {
                union(&mut parent, i, n + i);
            }
        }
        for (f, t) in &graph.connections {
            union(&mut parent, n + f.element, t.element);
        }
        // A boundary whose two sides still meet (a loop through it) stays
        // whole on one thread.
        let mut pull_halves: Vec<Option<Box<dyn Element>>> = Vec::with_capacity(n);
        for (i, node) in graph.nodes.iter_mut().enumerate() {
            let apart = find(&mut parent, i) != find(&mut parent, n + i);
            pull_halves.push(if apart {
                node.element.split_off_pull_side()
            } else {
                None
            });
        }
        let mut groups: Vec<usize> = Vec::new();
        let mut runners: Vec<(Runner, Vec<usize>)> = Vec::new();
        let out_base = Arc::new(out_base);
        let in_base = Arc::new(in_base);
        let push_to = Arc::new(push_to);
        let pull_from = Arc::new(pull_from);
        let noutputs = Arc::new(noutputs);
        let mut group_of = |root: usize, runners: &mut Vec<(Runner, Vec<usize>)>| -> usize {
            if let Some(g) = groups.iter().position(|&r| r == root) {
                return g;
            }
            groups.push(root);
            runners.push((
                Runner {
                    slots: (0..n).map(|_| None).collect(),
                    out_base: out_base.clone(),
                    push_to: push_to.clone(),
                    in_base: in_base.clone(),
                    pull_from: pull_from.clone(),
                    noutputs: noutputs.clone(),
                    shared: shared.clone(),
                },
                Vec::new(),
            ));
            groups.len() - 1
        };
        for (i, (node, half)) in graph.nodes.into_iter().zip(pull_halves).enumerate() {
            let g = group_of(find(&mut parent, i), &mut runners);
            runners[g].0.slots[i] = Some(node.element);
            if node.is_task {
                runners[g].1.push(i);
            }
            if let Some(half) = half {
                let g = group_of(find(&mut parent, n + i), &mut runners);
                runners[g].0.slots[i] = Some(half);
            }
        }

        let (exited_tx, exited) = crossbeam_channel::unbounded();
        let mut threads = Vec::new();
        let mut idle: Slots = (0..n).map(|_| None).collect();
        for (k, (runner, tasks)) in runners.into_iter().enumerate() {
            if tasks.is_empty() {
                // Nothing would ever run here; kept only for a reload to
                // take its state. Queue sides are dropped, closing them.
                for (i, slot) in runner.slots.into_iter().enumerate() {
                    if let Some(e) = slot.filter(|e| !e.is_thread_boundary()) {
                        idle[i] = Some(e);
                    }
                }
                continue;
            }
            let tx: Sender<()> = exited_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("switchyard-{k}"))
                .spawn(move || {
                    let slots = run_thread(runner, tasks);
                    let _ = tx.send(());
                    slots
                })
                .expect("spawn router thread");
            shared
                .threads
                .lock()
                .expect("threads lock")
                .push(handle.thread().clone());
            threads.push(handle);
        }
        tracing::info!(threads = threads.len(), elements = n, "router started");
        Router {
            handlers,
            shared,
            running: threads.len(),
            idle,
            threads,
            exited,
            started: Instant::now(),
        }
    }

    pub fn handlers(&self) -> &Arc<HandlerTable> {
        &self.handlers
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.shared.clone())
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits up to `timeout` for every thread to finish; true once they
    /// have (or, with no threads at all, once a stop was requested).
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.running > 0 {
            match self.exited.recv_deadline(deadline) {
                Ok(()) => self.running -= 1,
                Err(_) => return false,
            }
        }
        if self.threads.is_empty() && !self.shared.stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            return self.shared.stop.load(Ordering::SeqCst);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        true
    }

    /// Requests a stop and waits for the threads to deliver what is in
    /// flight and exit.
    pub fn stop_and_wait(self) {
        drop(self.stop_and_collect());
    }

    /// Stops as [`stop_and_wait`](Self::stop_and_wait) does and returns the
    /// elements, by index, for a reload to take their state (a Queue,
    /// drained, comes back as its pulling side or not at all).
    pub fn stop_and_collect(mut self) -> Slots {
        self.shared.request_stop();
        while self.running > 0 {
            if self.exited.recv().is_ok() {
                self.running -= 1;
            } else {
                break;
            }
        }
        let mut all = std::mem::take(&mut self.idle);
        for t in self.threads.drain(..) {
            if let Ok(slots) = t.join() {
                for (i, slot) in slots.into_iter().enumerate() {
                    // Each element comes back from one thread (a Queue's
                    // pushing side was dropped when its thread ended).
                    if slot.is_some() {
                        all[i] = slot;
                    }
                }
            }
        }
        all
    }
}

fn run_thread(mut runner: Runner, tasks: Vec<usize>) -> Slots {
    let waker = Waker::current();
    for e in runner.slots.iter_mut().flatten() {
        e.attach_thread(&waker);
    }
    let mut done = vec![false; tasks.len()];
    loop {
        let stopping = runner.shared.stop.load(Ordering::SeqCst);
        let mut busy = false;
        let mut wake_at: Option<Instant> = None;
        for (k, &t) in tasks.iter().enumerate() {
            if done[k] {
                continue;
            }
            match runner.run(t) {
                Work::Busy => busy = true,
                Work::Idle => {}
                Work::SleepUntil(at) => wake_at = Some(wake_at.map_or(at, |w| w.min(at))),
                Work::Done => done[k] = true,
            }
        }
        if busy {
            continue;
        }
        if stopping && runner.all(|e| e.is_finished() && !e.has_pending()) {
            break;
        }
        // Nothing to do: sleep until woken by a Queue, a stop, or a timer.
        // The flag is raised before the last look, so a wake-up between
        // the look and the park is not lost (park returns at once).
        waker.0.sleeping.store(true, Ordering::SeqCst);
        if runner.all(|e| !e.has_pending()) && stopping == runner.shared.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let limit = wake_at.map_or(MAX_SLEEP, |at| at.saturating_duration_since(now).min(MAX_SLEEP));
            if !limit.is_zero() {
                std::thread::park_timeout(limit);
            }
        }
        waker.0.sleeping.store(false, Ordering::SeqCst);
    }
    // Queue sides that push into other threads are dropped here, which
    // tells consumers that nothing more will come; the rest go back to the
    // router for a reload.
    let mut slots = std::mem::take(&mut runner.slots);
    for s in slots.iter_mut() {
        if s.as_ref().is_some_and(|e| e.is_thread_boundary()) {
            *s = None;
        }
    }
    slots
}

/// One element alone, wired to collecting sinks: for unit tests and
/// micro-benchmarks of an element, standard or user-written, without a
/// configuration or threads.
pub struct Harness {
    runner: Runner,
    sinks: Vec<Arc<Mutex<Vec<Batch>>>>,
}

struct Collector(Arc<Mutex<Vec<Batch>>>);

impl Element for Collector {
    fn push(&mut self, _port: usize, batch: Batch, _cx: &mut Context<'_>) {
        self.0.lock().expect("collector").push(batch);
    }
}

impl Harness {
    /// Wires `element`'s `outputs` push outputs to collectors. Call
    /// [`Element::initialize`] first if the element needs it.
    pub fn new(element: Box<dyn Element>, inputs: usize, outputs: usize) -> Harness {
        struct NoControl;
        impl ControlPlane for NoControl {
            fn read(&self, h: &str) -> Result<String, String> {
                Err(format!("no router: cannot read {h}"))
            }
            fn write_as(&self, h: &str, _: &str, _: &str, _: &str) -> Result<(), String> {
                Err(format!("no router: cannot write {h}"))
            }
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            control: Arc::new(NoControl),
        });
        let sinks: Vec<_> = (0..outputs).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
        let mut slots: Vec<Option<Box<dyn Element>>> = vec![Some(element)];
        slots.extend(
            sinks
                .iter()
                .map(|s| Some(Box::new(Collector(s.clone())) as Box<dyn Element>)),
        );
        let n = slots.len();
        let mut out_base = vec![0u32; n];
        for (i, b) in out_base.iter_mut().enumerate().skip(1) {
            *b = (outputs + i - 1) as u32;
        }
        let mut push_to: Vec<(u32, u32)> = (0..outputs).map(|o| (o as u32 + 1, 0)).collect();
        push_to.extend((0..n).map(|_| (NONE, NONE)));
        let runner = Runner {
            slots,
            out_base: Arc::new(out_base),
            push_to: Arc::new(push_to),
            in_base: Arc::new(vec![0; n]),
            pull_from: Arc::new(vec![(NONE, NONE); inputs.max(1)]),
            noutputs: Arc::new((0..n).map(|i| if i == 0 { outputs as u32 } else { 0 }).collect()),
            shared,
        };
        Harness { runner, sinks }
    }

    /// Pushes `batch` into input `port` of the element.
    pub fn push(&mut self, port: usize, batch: Batch) {
        self.runner.push(0, port, batch);
    }

    /// Takes what reached output `port` so far.
    pub fn take(&mut self, port: usize) -> Vec<Batch> {
        std::mem::take(&mut *self.sinks[port].lock().expect("collector"))
    }

    /// Packets that reached output `port` so far, dropping them.
    pub fn count(&mut self, port: usize) -> usize {
        self.take(port).iter().map(Batch::len).sum()
    }
}
