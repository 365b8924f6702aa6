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
//!
//! Hot reload ([`Router::reload`]): each thread's group has a signature
//! (its members' names, classes, arguments and ports, and its internal
//! connections). A group of the new graph with the signature of a running
//! one is that thread, kept running untouched. Every other thread is asked
//! to pause at the top of its loop, i.e. between batches, and hands its
//! elements back over a channel; the new elements take their state, and
//! the new groups start on the freed threads (then on new ones).

use crate::element::{Element, Work};
use crate::graph::Graph;
use crate::packet::Batch;
use crate::table::HandlerTable;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

mod layout;
mod reload;

use layout::{layout, Half, Layout, NodeName};
use reload::Part;
pub use reload::{plan_reload, ReloadPlan, ReloadReport};

/// The longest a thread sleeps without being woken; bounds the cost of a
/// missed wake-up.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// How long a stopping thread goes on delivering what is in flight: a
/// graph that circulates packets forever (a Tee feeding its own Queue)
/// would otherwise never stop, whoever asks.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// The longest a write to copies waits for every thread to take it.
pub(crate) const AWAIT_LIMIT: Duration = Duration::from_secs(2);

/// How many times a router thread has gone round its loop (between
/// batches), when the router runs copies: a write to the copies waits
/// until every thread has started a round after it, so every copy has
/// taken it. On a cache line of its own, written by its thread only.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Round(AtomicU64);

/// A thread's round once it has handed its elements back or ended.
const RETIRED: u64 = u64::MAX;

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

/// Where the other side of a Queue finds the thread to wake: set by
/// [`Element::attach_thread`], and set again when a reload moves that side
/// to a new thread. The waking side keeps a [`WakerCache`]: one atomic
/// load per wake while the slot is unchanged, no lock on the data path.
#[derive(Default)]
pub struct WakerSlot {
    version: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

/// The waking side's copy of a [`WakerSlot`]'s waker.
#[derive(Default)]
pub struct WakerCache {
    version: u64,
    waker: Option<Waker>,
}

impl WakerSlot {
    pub fn set(&self, waker: &Waker) {
        *self.waker.lock().expect("waker slot") = Some(waker.clone());
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// The waker now in the slot, through `cache`.
    pub fn get<'a>(&self, cache: &'a mut WakerCache) -> Option<&'a Waker> {
        let v = self.version.load(Ordering::SeqCst);
        if v != cache.version {
            cache.waker = self.waker.lock().expect("waker slot").clone();
            cache.version = v;
        }
        cache.waker.as_ref()
    }

    /// Wakes the thread in the slot, if any, if it sleeps.
    pub fn wake(&self, cache: &mut WakerCache) {
        if let Some(w) = self.get(cache) {
            w.wake();
        }
    }
}

/// How elements that steer the router (an automatic rollback gate) read
/// and write handlers: through the same path as operators, so their
/// writes are validated, persisted and audited with who and why.
pub trait ControlPlane: Send + Sync {
    /// Reads `handler`, with `param` for a read that takes one (empty
    /// for none: `rt.lookup` with `10.0.0.1`).
    fn read(&self, handler: &str, param: &str) -> Result<String, String>;
    /// Writes on behalf of `actor`, recording `reason`.
    fn write_as(&self, handler: &str, value: &str, actor: &str, reason: &str) -> Result<(), String>;
    /// True if `handler` exists and can be read (or, with `write`,
    /// written): Click's `readable` and `writable` script handlers.
    fn can(&self, handler: &str, write: bool) -> bool {
        let _ = (handler, write);
        false
    }
}

/// The plain handler table as a control plane (no audit, no state file):
/// what a router has when nothing better is given.
impl ControlPlane for HandlerTable {
    fn read(&self, handler: &str, param: &str) -> Result<String, String> {
        HandlerTable::read_with(self, handler, param).map_err(|e| e.to_string())
    }

    fn can(&self, handler: &str, write: bool) -> bool {
        self.find(handler)
            .is_ok_and(|h| if write { h.write.is_some() } else { h.readable() })
    }

    fn write_as(&self, handler: &str, value: &str, actor: &str, reason: &str) -> Result<(), String> {
        tracing::warn!(handler, value, actor, reason, "handler written by an element");
        HandlerTable::write(self, handler, value).map_err(|e| e.to_string())
    }
}

/// State shared by every thread of a router and its handle.
pub(crate) struct Shared {
    stop: AtomicBool,
    /// Click's run count: stop requests lower it, the router stops at 0.
    runcount: Mutex<i64>,
    /// The configuration's driver script, if it has one.
    driver: Mutex<Option<Arc<StopEvents>>>,
    threads: Mutex<Vec<Thread>>,
    /// With copies, each running thread's [`Round`].
    rounds: Mutex<Vec<Arc<Round>>>,
    /// How many copies of the pipeline the router runs.
    pub(crate) copies: usize,
    /// With copies: which copies of each copied element (by plain name)
    /// have asked to stop. A source's STOP stops the router once every
    /// copy of it has asked, as the one source would alone; kept across
    /// reloads, as names are.
    copy_stops: Mutex<std::collections::HashMap<String, std::collections::HashSet<u32>>>,
    control: Arc<dyn ControlPlane>,
    /// Packets lost to push cycles, all threads together, which the
    /// global `cycle_drops` handler reads, and the way back here for the
    /// global `stop` (see [`HandlerTable::link`]).
    link: Arc<crate::table::RouterLink>,
}

/// Stop requests as a driver script sees them (Click's DriverManager,
/// `Script(TYPE DRIVER)`): with one in the router, a request that brings
/// the run count to 0 is posted here as steps for the script to consume
/// (its `pause`, `wait_stop`) instead of stopping the router. The script
/// stops the router itself, with `stop` or by ending; once it has ended,
/// the next request stops the router. Its `step` handler posts here too.
#[derive(Default)]
pub struct StopEvents {
    /// Steps from the script's `step` handler.
    steps: AtomicU64,
    /// Stop requests the router posted.
    requests: AtomicU64,
    ended: AtomicBool,
    waker: WakerSlot,
}

impl StopEvents {
    /// Adds `n` steps (the `step` handler) and wakes the script's thread.
    pub fn post(&self, n: u64) {
        self.steps.fetch_add(n, Ordering::SeqCst);
        self.waker.wake(&mut WakerCache::default());
    }

    /// Adds `n` stop requests of the router, each a step.
    fn post_requests(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::SeqCst);
        self.waker.wake(&mut WakerCache::default());
    }

    /// Takes one step if there is one: `Some(true)` for a stop request of
    /// the router (a driver that ends on one stops the router, as
    /// Click's), `Some(false)` for a `step`.
    pub fn take(&self) -> Option<bool> {
        let take = |c: &AtomicU64| {
            c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        if take(&self.requests) {
            Some(true)
        } else if take(&self.steps) {
            Some(false)
        } else {
            None
        }
    }

    /// Stop requests posted and not yet taken.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// True while a step of either kind waits to be taken.
    pub fn any(&self) -> bool {
        self.requests() > 0 || self.steps.load(Ordering::SeqCst) > 0
    }

    /// Marks the script ended: stop requests stop the router again.
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    /// The script's thread, woken by [`post`](Self::post).
    pub fn attach(&self, waker: &Waker) {
        self.waker.set(waker);
    }
}

impl Shared {
    /// Lowers the run count by `n` (Click's `please_stop_driver`: a
    /// source's STOP, a write to the global `stop`, a Script's `stop`);
    /// at 0 the router stops, unless a driver script takes the request as
    /// steps.
    pub(crate) fn request_stop(&self, n: i64) {
        let mut count = self.runcount.lock().expect("runcount lock");
        *count = count.saturating_sub(n);
        if *count > 0 {
            return;
        }
        let driver = self.driver.lock().expect("driver lock").clone();
        if let Some(driver) = driver.filter(|d| !d.ended.load(Ordering::SeqCst)) {
            driver.post_requests((1 - *count).unsigned_abs());
            *count = 1;
            return;
        }
        drop(count);
        self.force_stop();
    }

    /// A stop request from copy `k` of element `name`: the router's once
    /// every copy of it has asked (once).
    fn copy_requests_stop(&self, name: &str, k: u32) {
        let mut asked = self.copy_stops.lock().expect("copy stops lock");
        let copies = asked.entry(name.to_string()).or_default();
        if copies.insert(k) && copies.len() == self.copies {
            drop(asked);
            self.request_stop(1);
        }
    }

    /// Stops the router whatever the run count (an interrupt, the
    /// embedding program).
    pub(crate) fn force_stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            tracing::info!("router stopping");
        }
        for t in self.threads.lock().expect("threads lock").iter() {
            t.unpark();
        }
    }

    /// Waits until every thread running copies has started a round after
    /// the caller's writes (made before calling), waking the sleeping
    /// ones: then every copy has taken them. True once all have, false
    /// after `limit`. A router thread (a Script's, a Watchdog's) does not
    /// wait at all: it would wait for itself, or for a thread waiting on
    /// it.
    pub(crate) fn await_rounds(&self, limit: Duration) -> bool {
        let threads = self.threads.lock().expect("threads lock").clone();
        let me = std::thread::current().id();
        if threads.iter().any(|t| t.id() == me) {
            return true;
        }
        let rounds = self.rounds.lock().expect("rounds lock").clone();
        // Pairs with the fence after each thread's round count: either
        // the thread's next load sees the writes, or this load sees its
        // new round (and then the round after it sees them).
        std::sync::atomic::fence(Ordering::SeqCst);
        let marks: Vec<u64> = rounds.iter().map(|r| r.0.load(Ordering::Relaxed)).collect();
        for t in &threads {
            t.unpark();
        }
        let deadline = Instant::now() + limit;
        let mut spins = 0u32;
        loop {
            let taken = rounds.iter().zip(&marks).all(|(r, &mark)| {
                let now = r.0.load(Ordering::Acquire);
                // A round begun after the mark: every packet from then on
                // is handled with the writes seen.
                mark == RETIRED || now > mark
            });
            if taken {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if spins < 200 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
}

const NONE: u32 = u32::MAX;

/// The elements of one thread and the wiring between all elements.
struct Runner {
    /// This thread's elements only, by slot (see [`layout::Layout`]).
    slots: Vec<Option<Box<dyn Element>>>,
    /// Push output `p` of element `e` goes to `push_to[out_base[e] + p]`.
    out_base: Arc<Vec<u32>>,
    push_to: Arc<Vec<layout::Peer>>,
    /// Pull input `p` of element `e` comes from `pull_from[in_base[e] + p]`.
    in_base: Arc<Vec<u32>>,
    pull_from: Arc<Vec<layout::Peer>>,
    noutputs: Arc<Vec<u32>>,
    /// The slots of the Queues each task fills (see [`Context::room`]).
    watch: Arc<Vec<Box<[u32]>>>,
    /// Tasks that found no room downstream in this round: the thread
    /// looks again before it sleeps, so a Queue emptied meanwhile is not
    /// missed.
    room_waits: Vec<u32>,
    /// What elements see of a stop: set one round after the stop was
    /// requested, so every task runs once more (see [`run_thread`]).
    stopping: bool,
    shared: Arc<Shared>,
    /// Set when a reload wants this thread paused and its elements back.
    yield_req: Arc<AtomicBool>,
    /// With copies, for a thread that runs copied elements: where it
    /// counts its rounds.
    round: Option<Arc<Round>>,
    /// With copies: per graph index, a copied element's plain name and
    /// copy number (see [`Shared::copy_stops`]); empty without.
    copy_of: Arc<Vec<Option<(String, u32)>>>,
    /// Batches pushed to an element that is on the call stack (a push
    /// cycle), delivered when it returns; see [`Runner::push`].
    cycle: CycleState,
}

/// Push cycles, Click's way without re-entrance: an IP router sends ping
/// replies and ICMP errors back into the route lookup that produced them
/// (`rt -> ICMPPingResponder -> rt`). An element cannot be re-entered
/// (it is borrowed while it runs), so a batch pushed to it meanwhile waits
/// here and is pushed once the element returns, in arrival order, on the
/// same stack depth; this holds whether the element is on the stack for
/// a push, a pull or a task's run. A graph that cycles packets forever
/// would then spin rather than overflow the stack as Click does: after
/// [`CYCLE_LIMIT`] such deliveries within one outermost call, further ones
/// are dropped and counted (the global `cycle_drops` handler).
#[derive(Default)]
struct CycleState {
    /// (slot, port, batch) for elements on the call stack.
    waiting: Vec<(usize, usize, Batch)>,
    /// Elements on the call stack.
    depth: u32,
    /// Deliveries from `waiting` since the outermost call began.
    delivered: u32,
}

/// Deliveries through push cycles allowed per outermost call.
const CYCLE_LIMIT: u32 = 4096;
/// Batches that may wait for an element on the call stack at once.
const CYCLE_WAITING: usize = 1024;

impl Runner {
    /// Counts `batch` as lost to a push cycle (shared by the router's
    /// threads), warning once and then every 2^20 packets: never per packet.
    fn cycle_drop(&self, batch: Batch) {
        let n = batch.len() as u64;
        let before = self.shared.link.cycle_drops.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if before == 0 || (before ^ after) >> 20 != 0 {
            tracing::warn!(
                limit = CYCLE_LIMIT,
                dropped = after,
                "packets circling a push cycle dropped"
            );
        }
    }

    /// Calls the element in `slot` through `f` with the element off its
    /// slot, then delivers what a cycle pushed to it meanwhile. `None` if
    /// the element is already on the call stack.
    fn call_slot<R>(
        &mut self,
        elem: usize,
        slot: usize,
        f: impl FnOnce(&mut dyn Element, &mut Context<'_>) -> R,
    ) -> Option<R> {
        let mut e = self.slots[slot].take()?;
        self.cycle.depth += 1;
        let r = f(e.as_mut(), &mut Context { runner: self, elem });
        while let Some(i) = self.cycle.waiting.iter().position(|w| w.0 == slot) {
            let (_, port, batch) = self.cycle.waiting.remove(i);
            if self.cycle.delivered >= CYCLE_LIMIT {
                self.cycle_drop(batch);
                continue;
            }
            self.cycle.delivered += 1;
            e.push(port, batch, &mut Context { runner: self, elem });
        }
        self.slots[slot] = Some(e);
        self.cycle.depth -= 1;
        if self.cycle.depth == 0 {
            self.cycle.delivered = 0;
        }
        Some(r)
    }

    fn push(&mut self, elem: usize, slot: usize, port: usize, batch: Batch) {
        if self.slots[slot].is_none() {
            // The element is on the call stack: deliver after it returns,
            // within bounds (a graph can fan a cycle out, `rt -> Tee(1000)
            // -> rt`, faster than the limit on deliveries would notice).
            // (Every call raises the depth: at 0 no element is on the
            // stack, and nothing would ever deliver the batch.)
            if self.cycle.depth == 0 || self.cycle.delivered >= CYCLE_LIMIT || self.cycle.waiting.len() >= CYCLE_WAITING
            {
                self.cycle_drop(batch);
            } else {
                self.cycle.waiting.push((slot, port, batch));
            }
            return;
        }
        self.call_slot(elem, slot, |e, cx| e.push(port, batch, cx));
    }

    fn pull(&mut self, elem: usize, slot: usize, port: usize) -> Option<Batch> {
        // A pull cycle (the element already pulling) finds nothing.
        self.call_slot(elem, slot, |e, cx| e.pull(port, cx)).flatten()
    }

    fn run(&mut self, elem: usize, slot: usize) -> Work {
        self.call_slot(elem, slot, |e, cx| e.run(cx)).unwrap_or(Work::Done)
    }

    fn all(&self, f: impl Fn(&dyn Element) -> bool) -> bool {
        self.slots.iter().flatten().all(|e| f(e.as_ref()))
    }

    /// Room downstream of `elem`: the most any Queue it fills can take.
    /// Click ORs the Queues' full notifiers: a source behind a Tee into a
    /// live Queue and a stalled one keeps the live branch fed, and the
    /// stalled Queue drops at its tail.
    fn room(&self, elem: usize) -> usize {
        let Some(watch) = self.watch.get(elem) else {
            return usize::MAX;
        };
        watch
            .iter()
            .filter_map(|&slot| self.slots.get(slot as usize)?.as_ref()?.room())
            .max()
            .unwrap_or(usize::MAX)
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
        let to = r.push_to[r.out_base[self.elem] as usize + port];
        if to.elem != NONE {
            r.push(to.elem as usize, to.slot as usize, to.port as usize, batch);
        }
    }

    /// Pulls a batch from whatever pull input `port` is connected to.
    #[inline]
    pub fn pull(&mut self, port: usize) -> Option<Batch> {
        let r = &mut *self.runner;
        let from = r.pull_from[r.in_base[self.elem] as usize + port];
        if from.elem == NONE {
            return None;
        }
        r.pull(from.elem as usize, from.slot as usize, from.port as usize)
    }

    pub fn noutputs(&self) -> usize {
        self.runner.noutputs[self.elem] as usize
    }

    /// How many packets this task may push now: the most room among the
    /// Queues its pushes reach first (`usize::MAX` when they reach none;
    /// with several, one may still drop, as in Click). In-memory sources
    /// produce no more than this and return [`Work::Idle`] at 0; the
    /// Queue's consumer wakes them when it takes packets out (Click's
    /// full notifier, so `InfiniteSource(LIMIT 200000) -> Queue -> ...`
    /// delivers every packet however slow the consumer).
    pub fn room(&mut self) -> usize {
        let room = self.runner.room(self.elem);
        if room == 0 {
            self.runner.room_waits.push(self.elem as u32);
        }
        room
    }

    /// Asks the router to stop once in-flight packets are delivered
    /// (a source's `STOP true`).
    pub fn request_stop(&self) {
        match self.runner.copy_of.get(self.elem).and_then(Option::as_ref) {
            Some((name, k)) => self.runner.shared.copy_requests_stop(name, *k),
            None => self.runner.shared.request_stop(1),
        }
    }

    /// True once a stop was requested and every task of this thread has
    /// run once since: sources stop producing.
    pub fn stopping(&self) -> bool {
        self.runner.stopping
    }

    /// True once a reload asked this thread to pause: an element waiting
    /// inside a call (a full Queue with BLOCK) must return now, without
    /// losing what it holds.
    pub fn reloading(&self) -> bool {
        self.runner.yield_req.load(Ordering::Relaxed)
    }

    /// The router's control plane, for elements that read or steer other
    /// elements' handlers.
    pub fn control(&self) -> &Arc<dyn ControlPlane> {
        &self.runner.shared.control
    }
}

/// Elements by index, as a thread hands them back.
type Slots = Vec<Option<Box<dyn Element>>>;

/// An OS thread of the router. It runs one group at a time; a reload
/// takes the group back and may give it the next one, so a replaced
/// group's successor starts on a warm thread (no spawn, its packet pool
/// already filled, nothing freed in the pause).
struct Worker {
    handle: JoinHandle<Slots>,
    thread: Thread,
    assign: Sender<(Runner, Vec<(usize, usize)>)>,
    /// Where the thread hands its elements back when a reload pauses it.
    handback: Receiver<Slots>,
}

/// A worker running a group.
struct Running {
    worker: Worker,
    /// Names by index for the graph this group was started with.
    names: Arc<Vec<NodeName>>,
    /// The graph index of the element in each slot of the thread.
    slot_elems: Vec<usize>,
    /// The names of the group's own elements.
    members: Vec<String>,
    signature: Vec<String>,
    yield_req: Arc<AtomicBool>,
    round: Option<Arc<Round>>,
}

/// A running router: its threads and its handlers.
pub struct Router {
    handlers: Arc<HandlerTable>,
    shared: Arc<Shared>,
    workers: Vec<Running>,
    /// Threads a reload freed, for the next groups to start.
    spare: Vec<Worker>,
    /// Elements of groups that never got a thread (nothing to run).
    idle: Vec<Part>,
    /// Every element of the running graph.
    current: Arc<Vec<NodeName>>,
    /// Each element's own handlers, by name, for a reload that keeps it.
    own_handlers: std::collections::HashMap<String, Vec<crate::handler::Handler>>,
    exited_tx: Sender<()>,
    exited: Receiver<()>,
    running: usize,
    started: Instant,
    /// The longest call chain this router's threads have stack for (the
    /// `chain` limit of the graph it started with): a reload to a deeper
    /// graph is refused instead of overflowing a stack.
    chain_capacity: usize,
}

/// Stack a router thread needs besides its call chain.
const STACK_BASE: usize = 2 << 20;
/// Stack one element call may use (a push or pull frame with its batch,
/// in a debug build with headroom; a release build uses a fraction).
/// Large scratch space belongs in the element, not on the stack.
const STACK_PER_CALL: usize = 4096;

/// The stack a router thread gets for call chains of up to `chain`
/// elements. It is reserved address space; only what is used is backed.
fn stack_bytes(chain: usize) -> usize {
    STACK_BASE.saturating_add(chain.saturating_mul(STACK_PER_CALL))
}

/// A graph reduced to what running it needs, by element index: taken
/// apart before a reload's pause, so the pause frees nothing of it.
pub(super) struct Stripped {
    pub(super) elements: Vec<Option<Box<dyn Element>>>,
    pub(super) handlers: Vec<Vec<crate::handler::Handler>>,
    pub(super) names: Vec<String>,
}

impl Stripped {
    pub(super) fn new(graph: Graph) -> Stripped {
        let n = graph.nodes.len();
        let mut s = Stripped {
            elements: Vec::with_capacity(n),
            handlers: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
        };
        for node in graph.nodes {
            s.names.push(node.name);
            s.handlers.push(node.handlers);
            s.elements.push(Some(node.element));
        }
        s
    }
}

/// A cloneable way to stop a router from elsewhere (a signal handler
/// thread, a control connection).
#[derive(Clone)]
pub struct Stopper(Arc<Shared>);

impl Stopper {
    pub fn stop(&self) {
        self.0.force_stop();
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
    pub fn start_with(graph: Graph, handlers: Arc<HandlerTable>, control: Arc<dyn ControlPlane>) -> Router {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            runcount: Mutex::new(1),
            driver: Mutex::default(),
            threads: Mutex::new(Vec::new()),
            rounds: Mutex::default(),
            copies: graph.copies,
            copy_stops: Mutex::default(),
            control,
            link: handlers.link().clone(),
        });
        let _ = shared.link.router.set(Arc::downgrade(&shared));
        let (exited_tx, exited) = crossbeam_channel::unbounded();
        let mut router = Router {
            handlers,
            shared,
            workers: Vec::new(),
            spare: Vec::new(),
            idle: Vec::new(),
            current: Arc::default(),
            own_handlers: Default::default(),
            exited_tx,
            exited,
            running: 0,
            started: Instant::now(),
            chain_capacity: graph.limits.chain.max(graph.chain),
        };
        let n = graph.nodes.len();
        let layout = layout(&graph);
        let keep = vec![false; layout.groups.len()];
        let _ = router.launch(Stripped::new(graph), layout, &keep);
        tracing::info!(threads = router.workers.len(), elements = n, "router started");
        router
    }

    /// Starts threads for the groups of `layout` not marked in `keep`, and
    /// records the idle groups' elements and every element's handlers.
    /// The threads start first; what only bookkeeping needs (idle groups,
    /// handlers by name) comes after, so a reload's pause does not grow
    /// with the part of the graph that did not change. Returns the threads
    /// started and when they had all started.
    fn launch(&mut self, graph: Stripped, layout: Layout, keep: &[bool]) -> (usize, Instant) {
        let Stripped {
            mut elements,
            handlers,
            names,
        } = graph;

        let control = Arc::downgrade(&self.shared.control);
        // The driver script is the one that will run: a kept thread's
        // goes on (its copy here is dropped unused), else the new one's.
        let kept: std::collections::HashSet<usize> = (0..layout.groups.len())
            .filter(|&k| keep[k])
            .flat_map(|k| layout.groups[k].members.iter().map(|&(i, _)| i))
            .collect();
        let (mut driver, mut driver_kept) = (None, false);
        for (i, e) in elements.iter_mut().enumerate() {
            let Some(e) = e else { continue };
            e.attach_control(&control);
            if let Some(d) = e.stop_events() {
                if kept.contains(&i) {
                    driver_kept = true;
                } else {
                    driver = driver.or(Some(d));
                }
            }
        }
        if !driver_kept {
            *self.shared.driver.lock().expect("driver lock") = driver;
        }
        // The pulling sides of elements split between threads, split off
        // when the first of their two groups is taken (so a reload's pause
        // splits only what it starts).
        type Halves = std::collections::HashMap<usize, Box<dyn Element>>;
        let mut pull_halves: Halves = Halves::new();
        let mut split_done: std::collections::HashSet<usize> = Default::default();
        // The names of the graph that ran: freed after the threads start.
        let old_current = std::mem::replace(&mut self.current, layout.names.clone());
        let mut take =
            |g: &layout::GroupLayout, elements: &mut Vec<Option<Box<dyn Element>>>, pull: &mut Halves| -> Slots {
                for &(i, half) in &g.members {
                    if half != Half::Whole && split_done.insert(i) {
                        if let Some(p) = elements[i].as_mut().and_then(|e| e.split_off_pull_side()) {
                            pull.insert(i, p);
                        }
                    }
                }
                g.members
                    .iter()
                    .map(|&(i, half)| match half {
                        Half::Pull => pull.remove(&i),
                        _ => elements[i].take(),
                    })
                    .collect()
            };
        // With copies: each copied element's plain name and copy number.
        let copy_of: Arc<Vec<Option<(String, u32)>>> = if self.shared.copies > 1 {
            Arc::new(names.iter().map(|n| crate::copies::split(n)).collect())
        } else {
            Arc::default()
        };
        // Phase 1: the threads (and nothing that grows with the rest).
        let mut groups = layout.groups;
        let to_start: Vec<usize> = (0..groups.len())
            .filter(|&k| !keep[k] && !groups[k].tasks.is_empty())
            .collect();
        let mut started = 0;
        for &k in &to_start {
            let g = &mut groups[k];
            let mut slots = take(g, &mut elements, &mut pull_halves);
            for (slot, &(i, _)) in slots.iter_mut().zip(&g.members) {
                if let Some(e) = slot {
                    if let Err(err) = e.activate() {
                        tracing::error!(element = %names[i], error = %err, "element not activated");
                    }
                }
            }
            let slot_elems: Vec<usize> = g.members.iter().map(|&(i, _)| i).collect();
            let yield_req = Arc::new(AtomicBool::new(false));
            let runner = Runner {
                slots,
                out_base: layout.out_base.clone(),
                push_to: layout.push_to.clone(),
                in_base: layout.in_base.clone(),
                pull_from: layout.pull_from.clone(),
                noutputs: layout.noutputs.clone(),
                watch: layout.watch.clone(),
                room_waits: Vec::new(),
                stopping: false,
                shared: self.shared.clone(),
                yield_req: yield_req.clone(),
                round: (self.shared.copies > 1 && g.members.iter().any(|&(i, _)| copy_of[i].is_some()))
                    .then(Arc::default),
                copy_of: copy_of.clone(),
                cycle: CycleState::default(),
            };
            let round = runner.round.clone();
            let worker = self.spare.pop().unwrap_or_else(|| self.spawn_worker(k));
            let members = reload::members(g, &layout.names);
            worker
                .assign
                .send((runner, std::mem::take(&mut g.tasks)))
                .expect("a spare thread waits");
            self.workers.push(Running {
                round,
                worker,
                names: layout.names.clone(),
                slot_elems,
                members,
                signature: std::mem::take(&mut g.signature),
                yield_req,
            });
            self.running += 1;
            started += 1;
        }
        *self.shared.threads.lock().expect("threads lock") =
            self.workers.iter().map(|w| w.worker.thread.clone()).collect();
        *self.shared.rounds.lock().expect("rounds lock") =
            self.workers.iter().filter_map(|w| w.round.clone()).collect();
        let running_at = Instant::now();
        // Phase 2: bookkeeping.
        // Elements a kept thread already runs: dropped off this thread
        // (closing what they opened can take milliseconds).
        let mut unused: Vec<Box<dyn Element>> = Vec::new();
        let mut started_group = vec![false; groups.len()];
        for &k in &to_start {
            started_group[k] = true;
        }
        for (k, g) in groups.iter().enumerate() {
            if started_group[k] {
                continue;
            }
            let slots = take(g, &mut elements, &mut pull_halves);
            if keep[k] {
                // The running thread goes on with its own elements.
                unused.extend(slots.into_iter().flatten());
                continue;
            }
            // Nothing would ever run here; kept only for a reload to take
            // its state. Queue sides are dropped, closing them.
            for (slot, &(i, _)) in slots.into_iter().zip(&g.members) {
                if let Some(mut element) = slot.filter(|e| !e.is_thread_boundary()) {
                    if let Err(err) = element.activate() {
                        tracing::error!(element = %names[i], error = %err, "element not activated");
                    }
                    let name = layout.names[i].clone();
                    self.idle.push(Part { name, element });
                }
            }
        }
        self.own_handlers = names.into_iter().zip(handlers).collect();
        std::thread::spawn(move || drop((unused, old_current, groups)));
        (started, running_at)
    }

    fn spawn_worker(&self, k: usize) -> Worker {
        let (assign, jobs) = crossbeam_channel::bounded::<(Runner, Vec<(usize, usize)>)>(1);
        let (back, handback) = crossbeam_channel::bounded(1);
        let exited: Sender<()> = self.exited_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("switchyard-{k}"))
            .stack_size(stack_bytes(self.chain_capacity))
            .spawn(move || {
                // Ends when the router drops `assign` (no more groups).
                for (runner, tasks) in jobs.iter() {
                    let (slots, yielded) = run_thread(runner, tasks);
                    if !yielded {
                        let _ = exited.send(());
                        return slots;
                    }
                    if back.send(slots).is_err() {
                        break;
                    }
                }
                Vec::new()
            })
            .expect("spawn router thread");
        Worker {
            thread: handle.thread().clone(),
            handle,
            assign,
            handback,
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
        if self.workers.is_empty() && !self.shared.stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            return self.shared.stop.load(Ordering::SeqCst);
        }
        for w in self.workers.drain(..) {
            let _ = w.worker.handle.join();
        }
        self.end_spares();
        true
    }

    /// Lets the spare threads end (no group will come) and waits for them.
    fn end_spares(&mut self) {
        for w in self.spare.drain(..) {
            drop(w.assign);
            let _ = w.handle.join();
        }
    }

    /// Requests a stop and waits for the threads to deliver what is in
    /// flight and exit.
    pub fn stop_and_wait(mut self) {
        self.shared.force_stop();
        while self.running > 0 && self.exited.recv().is_ok() {
            self.running -= 1;
        }
        for w in self.workers.drain(..) {
            let _ = w.worker.handle.join();
        }
        self.end_spares();
    }
}

fn run_thread(mut runner: Runner, tasks: Vec<(usize, usize)>) -> (Slots, bool) {
    let waker = Waker::current();
    for e in runner.slots.iter_mut().flatten() {
        e.attach_thread(&waker);
    }
    let mut done = vec![false; tasks.len()];
    let mut stopped_at: Option<Instant> = None;
    let mut rounds = 0u64;
    // However the thread leaves (a reload, the end, a panic), writes to
    // the copies stop waiting for it.
    struct Retire(Option<Arc<Round>>);
    impl Drop for Retire {
        fn drop(&mut self) {
            if let Some(r) = &self.0 {
                r.0.store(RETIRED, Ordering::SeqCst);
            }
        }
    }
    let _retire = Retire(runner.round.clone());
    loop {
        // Between batches: the one place a reload pauses this thread.
        if runner.yield_req.load(Ordering::SeqCst) {
            return (std::mem::take(&mut runner.slots), true);
        }
        // With copies: a new round, after which every write to the copies
        // made before it is seen (the fence pairs with the writer's, see
        // [`Shared::await_rounds`]).
        if let Some(r) = &runner.round {
            rounds += 1;
            r.0.store(rounds, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        // A stop reaches the elements one round after it is requested, so
        // every task runs at least once after it (Click's driver gives
        // each task its turn too): a source on a thread that had not run
        // yet still sends what its LIMIT allows before the router stops.
        let requested = runner.shared.stop.load(Ordering::SeqCst);
        let stopping = runner.stopping;
        let mut busy = false;
        let mut wake_at: Option<Instant> = None;
        runner.room_waits.clear();
        for (k, &(elem, slot)) in tasks.iter().enumerate() {
            if done[k] {
                continue;
            }
            match runner.run(elem, slot) {
                Work::Busy => busy = true,
                Work::Idle => {}
                Work::SleepUntil(at) => wake_at = Some(wake_at.map_or(at, |w| w.min(at))),
                Work::Done => done[k] = true,
            }
        }
        if requested && !stopping {
            runner.stopping = true;
            stopped_at = Some(Instant::now());
            continue;
        }
        // Busy that long after a stop: packets going round a cycle, not a
        // drain (a DelayUnqueue waiting out its delay is not busy).
        if busy && stopped_at.is_some_and(|at| at.elapsed() > DRAIN_LIMIT) {
            tracing::warn!(limit = ?DRAIN_LIMIT, "stopping with packets still in flight (a cycle?)");
            break;
        }
        if busy {
            continue;
        }
        if stopping && runner.all(|e| e.is_finished() && !e.has_pending()) {
            break;
        }
        // Simulated time: nothing to do now, so the clock jumps to the
        // next timer instead of the thread sleeping until it.
        if let Some(at) = wake_at.filter(|_| runner.all(|e| !e.has_pending())) {
            // Only a real jump: a timer already in the simulated past (set
            // from the real clock) must not spin the thread.
            if crate::clock::advance_to(at) {
                continue;
            }
        }
        // Nothing to do: sleep until woken by a Queue, a stop, a reload or
        // a timer. The flag is raised before the last look, so a wake-up
        // between the look and the park is not lost (park returns at once).
        waker.0.sleeping.store(true, Ordering::SeqCst);
        if runner.all(|e| !e.has_pending())
            && requested == runner.shared.stop.load(Ordering::SeqCst)
            && !runner.yield_req.load(Ordering::SeqCst)
            && runner.room_waits.iter().all(|&e| runner.room(e as usize) == 0)
        {
            let now = Instant::now();
            let limit = wake_at.map_or(MAX_SLEEP, |at| at.saturating_duration_since(now).min(MAX_SLEEP));
            if !limit.is_zero() {
                std::thread::park_timeout(limit);
            }
        }
        waker.0.sleeping.store(false, Ordering::SeqCst);
    }
    // Queue sides that push into other threads are dropped here, which
    // tells consumers that nothing more will come.
    let mut slots = std::mem::take(&mut runner.slots);
    for s in slots.iter_mut() {
        if s.as_ref().is_some_and(|e| e.is_thread_boundary()) {
            *s = None;
        }
    }
    (slots, false)
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
            fn read(&self, h: &str, _: &str) -> Result<String, String> {
                Err(format!("no router: cannot read {h}"))
            }
            fn write_as(&self, h: &str, _: &str, _: &str, _: &str) -> Result<(), String> {
                Err(format!("no router: cannot write {h}"))
            }
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            runcount: Mutex::new(1),
            driver: Mutex::default(),
            threads: Mutex::new(Vec::new()),
            rounds: Mutex::default(),
            copies: 1,
            copy_stops: Mutex::default(),
            control: Arc::new(NoControl),
            link: Arc::default(),
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
        let mut push_to: Vec<layout::Peer> = (0..outputs)
            .map(|o| layout::Peer {
                elem: o as u32 + 1,
                slot: o as u32 + 1,
                port: 0,
            })
            .collect();
        push_to.extend((0..n).map(|_| layout::Peer::NONE));
        let runner = Runner {
            slots,
            out_base: Arc::new(out_base),
            push_to: Arc::new(push_to),
            in_base: Arc::new(vec![0; n]),
            pull_from: Arc::new(vec![layout::Peer::NONE; inputs.max(1)]),
            noutputs: Arc::new((0..n).map(|i| if i == 0 { outputs as u32 } else { 0 }).collect()),
            watch: Arc::default(),
            room_waits: Vec::new(),
            stopping: false,
            shared,
            yield_req: Arc::default(),
            round: None,
            copy_of: Arc::default(),
            cycle: CycleState::default(),
        };
        Harness { runner, sinks }
    }

    /// Pushes `batch` into input `port` of the element.
    pub fn push(&mut self, port: usize, batch: Batch) {
        self.runner.push(0, 0, port, batch);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{ElementClass, PortInfo};
    use crate::graph::Registry;
    use crate::handler::Handler;
    use crate::packet::Packet;

    const ROUNDS: u64 = 100;

    /// Counts shared with handlers: packets received, and those received
    /// out of turn (not before the element's next call).
    #[derive(Default, Clone)]
    struct Seen {
        received: Arc<AtomicU64>,
        late: Arc<AtomicU64>,
    }

    impl Seen {
        fn handlers(&self) -> Vec<Handler> {
            let (r, l) = (self.received.clone(), self.late.clone());
            vec![
                Handler::read_only("received", move || r.load(Ordering::Relaxed).to_string()),
                Handler::read_only("late", move || l.load(Ordering::Relaxed).to_string()),
            ]
        }

        /// `batch` should carry `expected`, the id last sent.
        fn saw(&self, batch: &Batch, expected: u64) {
            for p in batch.iter() {
                self.received.fetch_add(1, Ordering::Relaxed);
                if p.data().first() != Some(&(expected as u8)) {
                    self.late.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn one(id: u64) -> Batch {
        let mut b = Batch::new();
        b.push(Packet::from_data(&[id as u8]));
        b
    }

    /// A task that pushes one packet per run into its own input.
    #[derive(Default)]
    struct RunLoop {
        sent: u64,
        seen: Seen,
    }

    impl Element for RunLoop {
        fn initialize(&mut self, _: &PortInfo) -> Result<bool, String> {
            Ok(true)
        }
        fn run(&mut self, cx: &mut Context<'_>) -> Work {
            if self.sent == ROUNDS {
                cx.request_stop();
                return Work::Done;
            }
            self.sent += 1;
            cx.push(0, one(self.sent));
            Work::Busy
        }
        fn push(&mut self, _: usize, batch: Batch, _: &mut Context<'_>) {
            self.seen.saw(&batch, self.sent);
        }
        fn handlers(&self) -> Vec<Handler> {
            self.seen.handlers()
        }
    }

    /// Pulled on output 0; each pull also pushes a packet on output 1,
    /// which leads back to its own input.
    #[derive(Default)]
    struct PullLoop {
        sent: u64,
        seen: Seen,
    }

    impl Element for PullLoop {
        fn pull(&mut self, _: usize, cx: &mut Context<'_>) -> Option<Batch> {
            self.sent += 1;
            cx.push(1, one(self.sent));
            Some(one(self.sent))
        }
        fn push(&mut self, _: usize, batch: Batch, _: &mut Context<'_>) {
            self.seen.saw(&batch, self.sent);
        }
        fn handlers(&self) -> Vec<Handler> {
            self.seen.handlers()
        }
    }

    /// Pulls `ROUNDS` batches, then stops the router.
    #[derive(Default)]
    struct Sink {
        pulled: u64,
    }

    impl Element for Sink {
        fn initialize(&mut self, _: &PortInfo) -> Result<bool, String> {
            Ok(true)
        }
        fn run(&mut self, cx: &mut Context<'_>) -> Work {
            if self.pulled == ROUNDS {
                cx.request_stop();
                return Work::Done;
            }
            self.pulled += cx.pull(0).map_or(0, |b| b.len() as u64);
            Work::Busy
        }
    }

    fn run(text: &str) -> Arc<HandlerTable> {
        let class = |name, ports, processing, factory| ElementClass {
            name,
            ports,
            processing,
            doc: "",
            factory,
        };
        let registry = Registry::new([
            class("RunLoop", "1/1", "h/h", |_| Some(Box::<RunLoop>::default())),
            class("PullLoop", "1/2", "h/lh", |_| Some(Box::<PullLoop>::default())),
            class("Sink", "1/0", "l/", |_| Some(Box::<Sink>::default())),
        ]);
        let (graph, table) = crate::load_text("t.click", text, &registry, &[]).unwrap_or_else(|e| panic!("{e}"));
        let table = Arc::new(table);
        let mut router = Router::start(graph, table.clone());
        assert!(router.wait_timeout(Duration::from_secs(20)), "the router stops");
        table
    }

    fn read(t: &HandlerTable, h: &str) -> u64 {
        t.read(h).unwrap().parse().unwrap()
    }

    #[test]
    fn a_batch_cycling_into_a_running_task_arrives_when_its_run_returns() {
        let t = run("l :: RunLoop -> l;");
        assert_eq!(read(&t, "l.received"), ROUNDS);
        assert_eq!(read(&t, "l.late"), 0, "each before the next run");
        assert_eq!(read(&t, "cycle_drops"), 0);
    }

    #[test]
    fn a_batch_cycling_into_an_element_being_pulled_arrives_when_its_pull_returns() {
        let t = run("p :: PullLoop; p[0] -> Sink; p[1] -> p;");
        assert_eq!(read(&t, "p.received"), ROUNDS);
        assert_eq!(read(&t, "p.late"), 0, "each before the next pull");
        assert_eq!(read(&t, "cycle_drops"), 0);
    }
}
