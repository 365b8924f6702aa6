//! Flows pinned to the branch that took their first packet: the table a
//! FlowTable keeps before the hubs and its pinned selectors share.
//!
//! A stateful release (a NAT, connection tracking) breaks every
//! established connection when a flip moves it to a branch that holds no
//! state for it. So the decision is made per flow, once per packet, before
//! the hub: FlowTable looks the packet's 5-tuple up, stamps the branch its
//! flow is pinned to (or, for a new flow, the branch the selector's
//! position names, and pins it there) in the `branch` annotation, and the
//! hub copies the stamp to both branches. A pinned selector forwards a
//! packet only from the input its stamp names, so each packet leaves
//! production exactly once, whatever the branches' latencies, and a flip
//! only changes what new flows are stamped with.
//!
//! Replies must reach the branch that handled the flow, though it may have
//! rewritten addresses and ports. The selector learns the reply key from
//! what the pinned branch actually emitted: the forward packet's 5-tuple
//! as it left the branch, reversed, linked to the flow's slot (the `flow`
//! annotation). The FlowTable input on the reply path finds the pin by
//! that key. A flow ends when a FIN has been seen each way or an RST
//! either way (then it lingers DONE_TIMEOUT, so its last ACKs and
//! retransmitted FINs take the same branch), or when it idles out.
//!
//! The table is shared by the FlowTable and its selectors, which run on
//! one thread (they are joined by push paths), behind a mutex taken once
//! per batch; handlers take it to count. Nothing is allocated per packet:
//! slots are reused, and the index is sized for the capacity.

use crate::rollback::canary_switch::{choose, Weights};
use crate::standard::flow_hash::mix;
use crate::util::{sort_out, SwitchPosition, Verdict};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use switchyard_core::packet::MAX_BATCH;
use switchyard_core::{
    documented, downcast, handler::parse_in_range, Args, Batch, Context, Element, ElementClass, Export, Handler,
    Packet, PortInfo, Scope, Seconds,
};

documented! {
    /// Pins each flow to the branch that took its first packet, for
    /// selectors in pinned mode (`InputSwitch(K, PIN NAME)`): a flip then
    /// moves new flows only, and established connections through a
    /// stateful release (a NAT) survive it and its rollback.
    ///
    /// Put it before the hub of each direction: input i goes out on output
    /// i, every packet stamped with its flow's branch. A flow is the IPv4
    /// 5-tuple (addresses, protocol, TCP/UDP/SCTP ports; fragments after
    /// the first are keyed by addresses and protocol), read at the network
    /// header annotation (CheckIPHeader) or, without one, in an Ethernet
    /// frame (one VLAN tag skipped). A known flow's packets get its branch;
    /// a new flow gets the branch the selectors' position names and is
    /// pinned there. Replies are found by the key the selectors learn from
    /// what the pinned branch sent out (the forward 5-tuple after the
    /// branch, reversed), so a branch may rewrite addresses and ports.
    /// Other packets (ARP, IPv6) are not pinned: they get the position (or,
    /// under a CanarySwitch's weights, one fixed branch).
    ///
    /// A TCP flow ends when a FIN has been seen each way or an RST either
    /// way; it is forgotten DONE_TIMEOUT later (its last ACKs and
    /// retransmitted FINs stay on its branch), and a SYN on an ended flow
    /// starts a new one. A TCP flow first seen mid-stream (not by a SYN: a
    /// connection older than the table, or a stray retransmission to one a
    /// forced flip broke) is pinned too, but forgotten DONE_TIMEOUT after
    /// its last packet, and a SYN re-pins it. Until a packet of a flow comes
    /// in on another input of the table (its replies), it lives at most
    /// UNREPLIED_TIMEOUT past its last packet, so a scan or a flood of
    /// one-way flows cannot hold the table. Flows idle for TCP_TIMEOUT (TCP) or TIMEOUT
    /// (other) are forgotten. When CAPACITY flows are pinned, a new flow
    /// follows the position unpinned, and is counted in `overflow`. A
    /// selector's forced write (`force`) forgets every pin at once.
    /// A hot reload that keeps the element keeps its pins. The table and its
    /// selectors belong on one thread (no Queue inside the branches): then
    /// a reload replaces them together. A selector running on another
    /// thread is reported once.
    ///
    /// Differs from anything in Click, which has no pinned flips.
    ///
    /// # Ports
    /// One or more inputs, as many outputs; push. Input i leaves on
    /// output i.
    ///
    /// # Arguments
    /// - `CAPACITY`: the most flows pinned; default 100000, at most
    ///   4194304.
    /// - `TIMEOUT`: idle timeout of non-TCP flows; default 300s.
    /// - `TCP_TIMEOUT`: idle timeout of TCP flows; default 86400s (Click's
    ///   IPRewriter TCP_TIMEOUT).
    /// - `DONE_TIMEOUT`: how long an ended TCP flow stays pinned; default
    ///   5s.
    /// - `UNREPLIED_TIMEOUT`: idle timeout of a flow whose replies have not
    ///   been seen; default 30s. Timeouts are 1ms to 365 days.
    ///
    /// # Handlers
    /// - `count` (read): flows pinned.
    /// - `pinned` (read): flows pinned per branch (selector input),
    ///   space-separated; with a parameter K, branch K's count.
    /// - `capacity` (read): CAPACITY.
    /// - `overflow` (read): new flows left unpinned because the table was
    ///   full.
    /// - `forced` (read): pins forgotten by forced writes.
    ///
    /// # Example
    /// ```text
    /// flows :: FlowTable(CAPACITY 100000);
    /// src -> [0]flows[0] -> hub :: Tee(2);
    /// hub[0] -> oldnat[0] -> [0]sel :: InputSwitch(0, PIN flows);
    /// hub[1] -> newnat[0] -> [1]sel;
    /// ```
    pub struct FlowTable {
        shared: Arc<FlowShared>,
        force_seen: u64,
        /// Per batch, per packet: what `stamp` parsed.
        scratch: Box<Scratch>,
        /// A CanarySwitch's weights, as of generation `weights_seen`.
        weights: Vec<f64>,
        weights_seen: u64,
    }
}

/// What decides a new flow's branch.
pub enum Steering {
    /// An InputSwitch's position: every new flow.
    Position(SwitchPosition),
    /// A CanarySwitch's weights: flow by flow.
    Weights(Arc<Weights>),
}

/// Where a batch's new flows go.
enum Fresh<'a> {
    /// One branch (None: drop, the selectors' -1).
    At(Option<u8>),
    /// By weighted rendezvous on the flow's hash.
    Weighted(&'a [f64]),
}

impl Fresh<'_> {
    #[inline]
    fn branch(&self, hash: u64) -> Option<u8> {
        match self {
            Fresh::At(b) => *b,
            Fresh::Weighted(w) => Some(choose(w, hash) as u8),
        }
    }

    /// For an InputSwitch position (-1 stamps nothing: the selectors drop).
    fn at(position: i64) -> Fresh<'static> {
        Fresh::At(u8::try_from(position).ok().filter(|&b| b < u8::MAX))
    }
}

/// A batch's keys, hashes and TCP flags, parsed once (arrays, not
/// vectors: the loops over them stay small).
struct Scratch {
    keys: [Key; MAX_BATCH],
    hashes: [u64; MAX_BATCH],
    /// [`NO_KEY`], [`NOT_TCP`], or `TCP | flags`.
    meta: [u16; MAX_BATCH],
}

const NO_KEY: u16 = 0;
const NOT_TCP: u16 = 1;
const TCP_FLAGS: u16 = 0x100;

/// A flow's key: its IPv4 5-tuple as a packet carries it, never 0.
pub type Key = u128;

/// What a FlowTable lends its selectors.
pub struct FlowShared {
    pins: Mutex<Pins>,
    /// What new flows follow, shared by every selector that pins with this
    /// table (the first to resolve sets it).
    steering: OnceLock<Steering>,
    /// Bumped by a forced write: the table forgets every pin.
    force: AtomicU64,
    /// The inputs of the selectors pinning with this table (0 until one
    /// is initialized).
    branches: AtomicUsize,
    /// The thread the table runs on, and whether a selector running on
    /// another was reported.
    thread: OnceLock<std::thread::ThreadId>,
    warned: AtomicBool,
}

impl FlowShared {
    /// The table, even if a panicking thread poisoned the lock (its state
    /// is consistent between statements that hold it).
    pub fn pins(&self) -> MutexGuard<'_, Pins> {
        self.pins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The position an InputSwitch with `ports` inputs shares: the first
    /// selector's; a second must agree on where they start.
    pub fn attach_position(&self, position: &SwitchPosition, ports: usize) -> Result<SwitchPosition, String> {
        self.check_branches(ports)?;
        match self.steering.get_or_init(|| Steering::Position(position.clone())) {
            Steering::Position(p) if p.get() == position.get() => Ok(p.clone()),
            Steering::Position(p) => Err(format!(
                "starts at {}, but a selector pinning with the same table starts at {}",
                position.get(),
                p.get()
            )),
            Steering::Weights(_) => Err("the table is steered by a CanarySwitch's weights".into()),
        }
    }

    /// The weights a CanarySwitch with `ports` inputs shares: the first
    /// selector's; a second must start with the same.
    pub fn attach_weights(&self, weights: &Arc<Weights>, ports: usize) -> Result<Arc<Weights>, String> {
        self.check_branches(ports)?;
        match self.steering.get_or_init(|| Steering::Weights(weights.clone())) {
            // (The same Arc when a selector attaches again: one lock.)
            Steering::Weights(w) if Arc::ptr_eq(w, weights) || *w.values() == weights.values().clone() => Ok(w.clone()),
            Steering::Weights(_) => Err("a selector pinning with the same table starts with other weights".into()),
            Steering::Position(_) => Err("the table is steered by an InputSwitch's position".into()),
        }
    }

    /// Every selector pinning with one table has the same inputs (0: not
    /// known yet), at most 254 (a stamp is a byte).
    fn check_branches(&self, ports: usize) -> Result<(), String> {
        if ports == 0 {
            return Ok(());
        }
        if ports > usize::from(u8::MAX) - 1 {
            return Err(format!("PIN: {ports} inputs; at most 254 can be pinned"));
        }
        match self
            .branches
            .compare_exchange(0, ports, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(n) if n == ports => Ok(()),
            Err(n) => Err(format!(
                "has {ports} inputs, but a selector pinning with the same table has {n}"
            )),
        }
    }

    /// A forced write: every pin is forgotten before the next batch.
    pub fn force(&self) {
        self.force.fetch_add(1, Ordering::Release);
    }

    /// Pinned flows per branch, for `branches` branches (the selectors'
    /// inputs), after forgetting expired ones.
    pub fn pinned(&self) -> Vec<u64> {
        let pins = self.swept();
        let n = self.branches.load(Ordering::Relaxed).max(1);
        pins.pinned[..n.min(pins.pinned.len())].to_vec()
    }

    /// The table after forgetting expired flows, swept a few thousand
    /// slots per hold of the lock, so a handler read never stalls the
    /// packets for long.
    fn swept(&self) -> MutexGuard<'_, Pins> {
        let mut start = 0;
        loop {
            let mut pins = self.pins();
            let now = pins.now();
            let end = (start + 4096).min(pins.flows.len());
            pins.expire_range(now, start..end);
            if end >= pins.flows.len() {
                return pins;
            }
            start = end;
        }
    }

    /// The `pinned` handler: per-branch counts, or one branch's.
    pub fn pinned_handler(self: &Arc<Self>) -> Handler {
        let (r, p) = (self.clone(), self.clone());
        let mut h = Handler::read_only("pinned", move || {
            r.pinned().iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
        });
        h.read_param = Some(Arc::new(move |k: &str| {
            let counts = p.pinned();
            let k = parse_in_range(k, 0..=counts.len() as i64 - 1)?;
            Ok(counts[k as usize].to_string())
        }));
        h
    }
}

/// Per-flow state, in a reused slot: what every packet reads and writes,
/// 16 bytes, so 100k flows fit in a megabyte and a half of cache. The
/// keys, needed only to learn, to end and to forget, live apart.
#[derive(Clone, Copy, Default)]
struct Flow {
    /// Milliseconds since the table's base when it is forgotten.
    deadline: u64,
    branch: u8,
    /// FIN seen in the direction of its first key (bit 0) and of its reply
    /// key (bit 1); DONE once both, or after an RST.
    fin: u8,
    tcp: bool,
    live: bool,
    /// Its reply key is known.
    learned: bool,
    /// Counts the flows this slot has held, so a packet stamped for an
    /// earlier one (still on its way) is told apart.
    generation: u8,
    /// The table input its first packet came in on.
    origin: u8,
    /// A packet came in on another input (its replies).
    replied: bool,
}

const DONE: u8 = 4;
/// First seen mid-stream (not by a SYN): kept only DONE_TIMEOUT past its
/// last packet, so a stray segment (a retransmission to a connection a
/// forced flip broke) does not hold a pin for a day.
const MIDSTREAM: u8 = 8;
const TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Flows examined for expiry per batch, so the table frees slots without
/// a pause.
const SWEEP: usize = 8;

/// The longest timeout: a year.
const MAX_TIMEOUT_S: f64 = 365.0 * 86_400.0;

/// The most flows a table may pin.
pub const MAX_CAPACITY: usize = 1 << 22;

/// An open-addressing index from key to slot: linear probing at most
/// seven eighths full, deletion by backward shift (no tombstones).
///
/// An entry holds the key's 64-bit hash, not the key: 16 bytes, four to a
/// cache line, so 200k keys take 4 MiB and a lookup reads one line and no
/// key. Two keys of one hash would share a pin: the hash is keyed with a
/// random seed per table, so that takes about 2^64 tries, not a
/// computation. A std HashMap
/// would do otherwise, but this one also lets a batch load every packet's
/// entry before it uses any (see `FlowTable::stamp`): at 100k flows those
/// loads are most of the cost.
struct KeyIndex {
    entries: Vec<Entry>,
    len: usize,
    /// Per table, at random: nobody can compute colliding keys offline.
    seed: u64,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    /// The key's hash; 0 is empty ([`KeyIndex::hash`] is never 0).
    hash: u64,
    slot: u32,
}

impl KeyIndex {
    fn new(keys: usize) -> KeyIndex {
        KeyIndex {
            entries: vec![Entry::default(); (keys + keys / 4).next_power_of_two().max(16)],
            len: 0,
            seed: crate::rng::Rng::new().next_u64(),
        }
    }

    /// The hash of `key`'s conversation: both directions of a flow hash
    /// alike, so a branch that rewrites nothing needs no second entry.
    #[inline]
    fn hash(&self, key: Key) -> u64 {
        // The two ends (address and port, 48 bits each) in order, so both
        // directions agree, then mixed in two steps (mix is a bijection):
        // no structure in addresses and ports makes two keys collide.
        let a = ((key >> 96) as u64) << 16 | u64::from((key >> 48) as u16);
        let b = u64::from((key >> 64) as u32) << 16 | u64::from((key >> 32) as u16);
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        let proto = u64::from((key >> 8) as u8);
        mix(y ^ mix((x | proto << 48) ^ self.seed)).max(1)
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.entries.len() - 1)
    }

    /// The slot at a hash's home entry, loaded early: a hint only.
    #[inline]
    fn touch(&self, hash: u64) -> u32 {
        self.entries[self.home(hash)].slot
    }

    /// Where `hash` is, or the empty entry where it would go.
    #[inline]
    fn position(&self, hash: u64) -> (usize, bool) {
        let mask = self.entries.len() - 1;
        let mut i = self.home(hash);
        loop {
            match self.entries[i].hash {
                h if h == hash => return (i, true),
                0 => return (i, false),
                _ => i = (i + 1) & mask,
            }
        }
    }

    #[inline]
    fn get(&self, hash: u64) -> Option<u32> {
        match self.position(hash) {
            (i, true) => Some(self.entries[i].slot),
            _ => None,
        }
    }

    /// Sets `hash` to `slot`; the slot it had, if any.
    fn insert(&mut self, hash: u64, slot: u32) -> Option<u32> {
        if 8 * (self.len + 1) > 7 * self.entries.len() {
            self.grow();
        }
        let (i, found) = self.position(hash);
        let e = &mut self.entries[i];
        if found {
            return Some(std::mem::replace(&mut e.slot, slot));
        }
        *e = Entry { hash, slot };
        self.len += 1;
        None
    }

    fn remove(&mut self, hash: u64) -> Option<u32> {
        let (mut i, found) = self.position(hash);
        if !found {
            return None;
        }
        let slot = self.entries[i].slot;
        let mask = self.entries.len() - 1;
        // Backward shift: pull later entries of the run into the hole when
        // their home is not between the hole and them.
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e.hash == 0 {
                break;
            }
            if (j.wrapping_sub(self.home(e.hash)) & mask) >= (j.wrapping_sub(i) & mask) {
                self.entries[i] = e;
                i = j;
            }
        }
        self.entries[i] = Entry::default();
        self.len -= 1;
        Some(slot)
    }

    fn grow(&mut self) {
        let bigger = vec![Entry::default(); 2 * self.entries.len()];
        let old = std::mem::replace(&mut self.entries, bigger);
        self.len = 0;
        for e in old.into_iter().filter(|e| e.hash != 0) {
            self.insert(e.hash, e.slot);
        }
    }

    fn clear(&mut self) {
        self.entries.fill(Entry::default());
        self.len = 0;
    }
}

/// The pin table: slots, a free list, and an index from key to slot.
pub struct Pins {
    base: Instant,
    flows: Vec<Flow>,
    /// Per slot: the key the flow was created by, and its reply key.
    keys: Vec<[Key; 2]>,
    free: Vec<u32>,
    index: KeyIndex,
    /// Pinned flows per branch.
    pinned: Vec<u64>,
    capacity: usize,
    /// Idle timeouts (other, TCP), the linger of an ended TCP flow, and
    /// the idle timeout of a flow no reply has been seen for, ms.
    timeouts: [u64; 4],
    hand: usize,
    overflow: u64,
    forced: u64,
}

impl Pins {
    fn new(capacity: usize, timeouts: [u64; 4]) -> Pins {
        // Two keys per flow; past 64k flows the index grows as flows come
        // (amortised, never in steady state) rather than up front.
        let reserve = (2 * capacity).min(1 << 17);
        Pins {
            base: switchyard_core::clock::now(),
            flows: Vec::with_capacity(capacity.min(1 << 16)),
            keys: Vec::with_capacity(capacity.min(1 << 16)),
            free: Vec::new(),
            index: KeyIndex::new(reserve),
            pinned: vec![0; 256],
            capacity,
            timeouts,
            hand: 0,
            overflow: 0,
            forced: 0,
        }
    }

    /// Milliseconds since the table was made (it survives reloads).
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    pub fn count(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    /// The slot of `key`'s flow, forgetting it if it expired.
    fn lookup(&mut self, hash: u64, now: u64) -> Option<u32> {
        let slot = self.index.get(hash)?;
        if self.flows[slot as usize].deadline <= now {
            self.remove(slot);
            return None;
        }
        Some(slot)
    }

    /// Pins a new flow (`flags`: a TCP packet's); None when the table is
    /// full.
    fn insert(&mut self, key: Key, branch: u8, flags: Option<u8>, origin: u8, now: u64) -> Option<u32> {
        if self.count() >= self.capacity {
            self.expire(now, 4 * SWEEP);
            if self.count() >= self.capacity {
                self.overflow += 1;
                return None;
            }
        }
        let tcp = flags.is_some();
        let opening = flags.is_some_and(|f| f & (SYN | ACK) == SYN);
        let fin = if tcp && !opening { MIDSTREAM } else { 0 };
        let mut flow = Flow {
            deadline: 0,
            branch,
            fin,
            tcp,
            live: true,
            learned: false,
            generation: 0,
            origin,
            replied: false,
        };
        flow.deadline = now.saturating_add(self.timeout(&flow));
        let slot = match self.free.pop() {
            Some(s) => {
                flow.generation = self.flows[s as usize].generation.wrapping_add(1);
                self.flows[s as usize] = flow;
                self.keys[s as usize] = [key, 0];
                s
            }
            None => {
                self.flows.push(flow);
                self.keys.push([key, 0]);
                (self.flows.len() - 1) as u32
            }
        };
        if let Some(other) = self.index.insert(self.index.hash(key), slot) {
            // Only an expired flow can still hold the key (lookup forgot
            // it otherwise); it loses it.
            self.drop_key(other, key);
        }
        self.pinned[usize::from(branch)] += 1;
        Some(slot)
    }

    /// How long `f` lives past its last packet.
    #[inline]
    fn timeout(&self, f: &Flow) -> u64 {
        let t = &self.timeouts;
        let by_state = if f.fin & (DONE | MIDSTREAM) != 0 {
            t[2]
        } else {
            t[usize::from(f.tcp)]
        };
        if f.replied {
            by_state
        } else {
            by_state.min(t[3])
        }
    }

    /// A packet of the flow in `slot`, arriving with `key` on table input
    /// `port`: tracks replies, FINs and RSTs and refreshes the deadline.
    /// False if a SYN reopened an ended flow: the caller pins it anew.
    #[inline]
    fn touch(&mut self, slot: u32, key: Key, flags: Option<u8>, port: u8, now: u64) -> bool {
        let f = &mut self.flows[slot as usize];
        f.replied |= port != f.origin;
        if let Some(flags) = flags.filter(|f| f & (FIN | SYN | RST) != 0) {
            if f.fin & (DONE | MIDSTREAM) != 0 && flags & (SYN | ACK) == SYN {
                self.remove(slot);
                return false;
            }
            if flags & RST != 0 {
                f.fin |= DONE;
            } else if flags & FIN != 0 {
                // Direction 1 is the reply's: the reversed first key, or
                // the learned reply key.
                let first = self.keys[slot as usize][0];
                f.fin |= 1 << u8::from(first != key);
                if f.fin & 3 == 3 {
                    f.fin |= DONE;
                }
            }
        }
        let f = self.flows[slot as usize];
        self.flows[slot as usize].deadline = now.saturating_add(self.timeout(&f));
        true
    }

    /// Whether the flow a packet was stamped for (its `flow` annotation)
    /// is still in its slot and still needs its reply key; the slot.
    #[inline]
    fn unlearned(&self, flow: u32) -> Option<u32> {
        let (slot, generation) = ((flow & 0xff_ffff).wrapping_sub(1), (flow >> 24) as u8);
        let f = self.flows.get(slot as usize)?;
        (f.live && !f.learned && f.generation == generation).then_some(slot)
    }

    /// The `flow` annotation of the flow in `slot`.
    #[inline]
    fn stamp_of(&self, slot: u32) -> u32 {
        (slot + 1) | u32::from(self.flows[slot as usize].generation) << 24
    }

    /// Links the reply key `rk` to the flow a packet was stamped for: what
    /// its branch sent out, reversed.
    fn learn(&mut self, flow: u32, rk: Key) {
        let Some(slot) = self.unlearned(flow) else { return };
        self.flows[slot as usize].learned = true;
        let keys = &mut self.keys[slot as usize];
        if canonical(keys[0]) == canonical(rk) {
            // The branch rewrote nothing: the flow's entry finds replies.
            return;
        }
        keys[1] = rk;
        if let Some(other) = self.index.insert(self.index.hash(rk), slot) {
            if other != slot {
                self.drop_key(other, rk);
            }
        }
    }

    fn drop_key(&mut self, slot: u32, key: Key) {
        if let Some(keys) = self.keys.get_mut(slot as usize) {
            for k in keys.iter_mut() {
                if *k != 0 && canonical(*k) == canonical(key) {
                    *k = 0;
                }
            }
        }
    }

    fn remove(&mut self, slot: u32) {
        let f = &mut self.flows[slot as usize];
        if !f.live {
            return;
        }
        f.live = false;
        let branch = f.branch;
        for k in self.keys[slot as usize] {
            let h = self.index.hash(k);
            if k != 0 && self.index.get(h) == Some(slot) {
                self.index.remove(h);
            }
        }
        self.pinned[usize::from(branch)] -= 1;
        self.free.push(slot);
    }

    /// Forgets expired flows among the next `n` slots.
    fn expire(&mut self, now: u64, n: usize) {
        let len = self.flows.len();
        if len == 0 {
            return;
        }
        for _ in 0..n.min(len) {
            self.hand = (self.hand + 1) % len;
            let f = &self.flows[self.hand];
            if f.live && f.deadline <= now {
                self.remove(self.hand as u32);
            }
        }
    }

    /// Forgets expired flows in slots `range`.
    fn expire_range(&mut self, now: u64, range: std::ops::Range<usize>) {
        for slot in range {
            let f = &self.flows[slot];
            if f.live && f.deadline <= now {
                self.remove(slot as u32);
            }
        }
    }

    #[cfg(test)]
    fn expire_all(&mut self, now: u64) {
        self.expire_range(now, 0..self.flows.len());
    }

    /// Forgets every pin (a forced write). Slots keep their generations,
    /// so packets stamped before are told apart.
    fn clear(&mut self) {
        self.forced += self.count() as u64;
        self.free.clear();
        for (slot, f) in self.flows.iter_mut().enumerate().rev() {
            f.live = false;
            self.free.push(slot as u32);
        }
        self.index.clear();
        self.pinned.fill(0);
        self.hand = 0;
    }
}

/// Where the IPv4 header starts: the network header annotation, else an
/// Ethernet frame's payload (one VLAN tag skipped).
#[inline(always)]
fn ip_header(p: &Packet) -> Option<&[u8]> {
    if let Some(h) = p.network_header() {
        return Some(h);
    }
    let d = p.data();
    let off = match d.get(12..18)? {
        [0x08, 0x00, ..] => 14,
        [0x81, 0x00, _, _, 0x08, 0x00] => 18,
        _ => return None,
    };
    d.get(off..)
}

/// The packet's flow key and, for TCP, its flags.
#[inline(always)]
pub fn key_of(p: &Packet) -> Option<(Key, Option<u8>)> {
    let h = ip_header(p)?;
    let ip: &[u8; 20] = h.get(..20)?.try_into().ok()?;
    if ip[0] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(ip[0] & 0xf) * 4;
    let proto = ip[9];
    let first_fragment = ip[6] & 0x1f == 0 && ip[7] == 0;
    let (mut ports, mut flags) = (0u32, None);
    if first_fragment && hl >= 20 && matches!(proto, 6 | 17 | 132) {
        if let Some(&[a, b, c, d]) = h.get(hl..hl + 4) {
            ports = u32::from_be_bytes([a, b, c, d]);
        }
        if proto == TCP {
            flags = h.get(hl + 13).copied();
        }
    }
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let key =
        (u128::from(src) << 96) | (u128::from(dst) << 64) | (u128::from(ports) << 32) | (u128::from(proto) << 8) | 1;
    Some((key, flags))
}

/// One key for both directions of a conversation.
#[inline]
fn canonical(k: Key) -> Key {
    k.min(reverse(k))
}

/// The key of the flow's other direction.
pub fn reverse(k: Key) -> Key {
    let (src, dst) = ((k >> 96) as u32, (k >> 64) as u32);
    let (sport, dport) = ((k >> 48) as u16, (k >> 32) as u16);
    (u128::from(dst) << 96)
        | (u128::from(src) << 64)
        | (u128::from(dport) << 48)
        | (u128::from(sport) << 32)
        | (k & 0xffff_ffff)
}

/// The table a selector's `PIN` argument names, if it has one.
pub fn named(scope: &Scope, pin: Option<&str>) -> Result<Option<Arc<FlowShared>>, String> {
    let Some(name) = pin else { return Ok(None) };
    match scope.element::<FlowShared>(name) {
        Some(flows) => Ok(Some(flows)),
        None => Err(format!("PIN: no FlowTable named '{name}'")),
    }
}

/// A pinned selector's input `port`: forwards, learning their reply keys,
/// the packets of `batch` stamped for this input, drops those stamped for
/// another, and returns the unstamped ones (if any) for the selector's own
/// rule.
pub fn select(flows: &FlowShared, port: usize, mut batch: Batch, cx: &mut Context<'_>) -> Option<Batch> {
    if flows.thread.get().is_some_and(|t| *t != std::thread::current().id())
        && !flows.warned.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "a pinned selector runs on another thread than its FlowTable (a Queue in a branch): \
             packets stay exact, but reply keys are learned late, and a reload must replace both"
        );
    }
    // Inputs are at most 254 (checked at initialize); a stamp past this
    // selector's inputs (a table shared after a reload) counts as none.
    let me = port as u8 + 1;
    let known = flows.branches.load(Ordering::Relaxed) as u8;
    // The other branch's copy of a batch, all stamped for another input,
    // is dropped whole, as an unpinned selector drops it.
    let elsewhere = |b: u8| b != me && b != 0 && b <= known;
    if batch.iter().all(|p| elsewhere(p.anno.branch)) {
        return None;
    }
    let rest = sort_out(&mut batch, |p| match p.anno.branch {
        b if b == me => Verdict::Pass,
        b if b == 0 || b > known => Verdict::Reject,
        _ => Verdict::Drop,
    });
    if !batch.is_empty() {
        learn(flows, &batch);
        cx.push(0, batch);
    }
    rest
}

/// A pinned selector's `force`, `pinned` and `drained` handlers, for
/// `ports` inputs. `force` is the selector's own persistent write `own`
/// (`switch`, `weights`), then the table forgets every pin; `current` says
/// which inputs new flows may take (`drained` without a parameter asks
/// about the others).
pub fn pinned_handlers(
    flows: &Arc<FlowShared>,
    ports: usize,
    own: &Handler,
    current: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> Vec<Handler> {
    let (f, write) = (
        flows.clone(),
        own.write.clone().expect("a selector's position is writable"),
    );
    let force = Handler::write_only("force", move |v| {
        write(v)?;
        f.force();
        Ok(())
    })
    .persists_as(&own.name);
    let (d, dp) = (flows.clone(), flows.clone());
    let mut drained = Handler::read_only("drained", move || {
        let counts = d.pinned();
        let stale = counts.iter().enumerate().filter(|&(i, _)| !current(i));
        (stale.map(|(_, &c)| c).sum::<u64>() == 0).to_string()
    })
    .merged(switchyard_core::Merge::All);
    let max = ports as i64 - 1;
    drained.read_param = Some(Arc::new(move |k: &str| {
        let k = parse_in_range(k, 0..=max)?;
        Ok((dp.pinned().get(k as usize).copied().unwrap_or(0) == 0).to_string())
    }));
    vec![force, flows.pinned_handler(), drained]
}

/// Links the reply keys of `batch`, which left a pinned selector, to
/// their flows: what the branch sent out, reversed.
pub fn learn(shared: &FlowShared, batch: &Batch) {
    let mut pins = shared.pins();
    for p in batch.iter() {
        if p.anno.flow == 0 || pins.unlearned(p.anno.flow).is_none() {
            continue;
        }
        if let Some((key, _)) = key_of(p) {
            pins.learn(p.anno.flow, reverse(key));
        }
    }
}

impl FlowTable {
    pub const CLASS: ElementClass = ElementClass {
        name: "FlowTable",
        ports: "1-/1-",
        processing: "h/h",
        doc: FlowTable::DOC,
        factory: FlowTable::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let capacity = args.read::<u64>("CAPACITY").unwrap_or(100_000);
        let mut ms = |name: &'static str, default: u64| match args.read::<Seconds>(name) {
            None => Some(default),
            Some(s) if s.0 > 0.0 && s.0 <= MAX_TIMEOUT_S => Some((s.0 * 1000.0).round().max(1.0) as u64),
            Some(s) => {
                let span = args.span_of(name);
                args.error(
                    Some(span),
                    format!("{name}: expected 1ms to {MAX_TIMEOUT_S}s, found {}s", s.0),
                );
                None
            }
        };
        let timeout = ms("TIMEOUT", 300_000);
        let tcp = ms("TCP_TIMEOUT", 86_400_000);
        let done = ms("DONE_TIMEOUT", 5_000);
        let unreplied = ms("UNREPLIED_TIMEOUT", 30_000);
        let (Some(timeout), Some(tcp), Some(done), Some(unreplied)) = (timeout, tcp, done, unreplied) else {
            return None;
        };
        if capacity == 0 || capacity > MAX_CAPACITY as u64 {
            args.error(
                Some(args.span_of("CAPACITY")),
                format!("CAPACITY: expected 1 to {MAX_CAPACITY}, found {capacity}"),
            );
            return None;
        }
        Some(Box::new(FlowTable {
            shared: Arc::new(FlowShared {
                pins: Mutex::new(Pins::new(capacity as usize, [timeout, tcp, done, unreplied])),
                steering: OnceLock::new(),
                force: AtomicU64::new(0),
                branches: AtomicUsize::new(0),
                thread: OnceLock::new(),
                warned: AtomicBool::new(false),
            }),
            force_seen: 0,
            weights: Vec::new(),
            weights_seen: 0,
            scratch: Box::new(Scratch {
                keys: [0; MAX_BATCH],
                hashes: [0; MAX_BATCH],
                meta: [0; MAX_BATCH],
            }),
        }))
    }

    /// Stamps and pins `batch` at `now` (ms since the table's base), new
    /// flows where `fresh` says.
    fn stamp(&mut self, pins: &mut Pins, batch: &mut Batch, fresh: &Fresh, port: u8, now: u64) {
        let force = self.shared.force.load(Ordering::Acquire);
        if force != self.force_seen {
            self.force_seen = force;
            pins.clear();
        }
        pins.expire(now, SWEEP);
        for chunk in batch.packets_mut().chunks_mut(MAX_BATCH) {
            self.stamp_chunk(pins, chunk, fresh, port, now);
        }
    }

    /// [`stamp`](FlowTable::stamp) for at most MAX_BATCH packets. First
    /// every packet's key, then a load of its index entry, then of its
    /// flow: independent loads the processor overlaps, where one lookup
    /// after another would wait for each miss in turn. Small loops, so
    /// that many loads are in flight at once.
    fn stamp_chunk(&mut self, pins: &mut Pins, chunk: &mut [Packet], fresh: &Fresh, port: u8, now: u64) {
        let sc = &mut *self.scratch;
        let n = chunk.len();
        for (i, p) in chunk.iter().enumerate() {
            match key_of(p) {
                Some((key, flags)) => {
                    sc.keys[i] = key;
                    sc.hashes[i] = pins.index.hash(key);
                    sc.meta[i] = flags.map_or(NOT_TCP, |f| TCP_FLAGS | u16::from(f));
                }
                None => {
                    sc.hashes[i] = 0;
                    sc.meta[i] = NO_KEY;
                }
            }
        }
        let mut slots = [0u32; MAX_BATCH];
        for (s, &h) in slots.iter_mut().zip(&sc.hashes[..n]) {
            *s = pins.index.touch(h);
        }
        let mut hint = 0u32;
        for &s in &slots[..n] {
            hint ^= pins.flows.get(s as usize).map_or(0, |f| f.deadline as u32);
        }
        std::hint::black_box(hint);
        for (i, p) in chunk.iter_mut().enumerate() {
            let (key, hash, meta) = (sc.keys[i], sc.hashes[i], sc.meta[i]);
            let flags = (meta & TCP_FLAGS != 0).then_some(meta as u8);
            let (branch, flow) = if meta == NO_KEY {
                (fresh.branch(0), None)
            } else {
                let known = pins.lookup(hash, now).filter(|&s| pins.touch(s, key, flags, port, now));
                match known {
                    Some(s) => (Some(pins.flows[s as usize].branch), Some(s)),
                    None => match fresh.branch(hash) {
                        Some(b) => (Some(b), pins.insert(key, b, flags, port, now)),
                        None => (None, None),
                    },
                }
            };
            p.anno.branch = branch.map_or(0, |b| b + 1);
            p.anno.flow = flow.map_or(0, |s| pins.stamp_of(s));
        }
    }
}

impl Element for FlowTable {
    fn lends(&self) -> Option<Export> {
        Some(self.shared.clone())
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        if ports.inputs.len() != ports.outputs.len() {
            return Err(format!(
                "has {} inputs and {} outputs: input i leaves on output i",
                ports.inputs.len(),
                ports.outputs.len()
            ));
        }
        Ok(false)
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<FlowTable>(old) {
            let mut mine = self.shared.pins();
            let (capacity, timeouts) = (mine.capacity, mine.timeouts);
            *mine = std::mem::replace(&mut *old.shared.pins(), Pins::new(1, [0; 4]));
            // The new text's limits apply; flows already pinned over a
            // smaller capacity stay until they end.
            mine.capacity = capacity;
            mine.timeouts = timeouts;
        }
    }

    fn push(&mut self, port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let shared = self.shared.clone();
        shared.thread.get_or_init(|| std::thread::current().id());
        let mut weights = std::mem::take(&mut self.weights);
        let fresh = match shared.steering.get() {
            None => Fresh::at(0),
            Some(Steering::Position(p)) => Fresh::at(p.get()),
            Some(Steering::Weights(w)) => {
                let g = w.generation();
                if g != self.weights_seen || weights.is_empty() {
                    self.weights_seen = g;
                    weights = w.values().iter().map(|&x| f64::from(x)).collect();
                }
                Fresh::Weighted(&weights)
            }
        };
        let mut pins = shared.pins();
        let now = pins.now();
        self.stamp(&mut pins, &mut batch, &fresh, port as u8, now);
        drop(pins);
        self.weights = weights;
        cx.push(port, batch);
    }

    fn handlers(&self) -> Vec<Handler> {
        let s = &self.shared;
        let (c, cap, o, f) = (s.clone(), s.clone(), s.clone(), s.clone());
        vec![
            Handler::read_only("count", move || c.swept().count().to_string()),
            s.pinned_handler(),
            Handler::read_only("capacity", move || cap.pins().capacity.to_string())
                .merged(switchyard_core::Merge::Same),
            Handler::read_only("overflow", move || o.pins().overflow.to_string()),
            Handler::read_only("forced", move || f.pins().forced.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::ipv4_packet;

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Packet {
        let mut d = ipv4_packet(src, dst, TCP, 64, 20);
        let l4 = &mut d[20..];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = flags;
        let mut p = Packet::from_data(&d);
        p.set_network_header(0, 20);
        p
    }

    fn table(capacity: usize) -> (FlowTable, Pins) {
        let mut args = Args::parse_str("flows :: FlowTable", &format!("CAPACITY {capacity}, DONE_TIMEOUT 2s"));
        let e = FlowTable::make(&mut args).unwrap();
        let t = downcast::<FlowTable>(e).unwrap();
        let pins = std::mem::replace(&mut *t.shared.pins(), Pins::new(1, [0; 4]));
        (*t, pins)
    }

    fn stamp(t: &mut FlowTable, pins: &mut Pins, p: Packet, position: i64, now: u64) -> (u8, u32) {
        let mut b = Batch::new();
        b.push(p);
        t.stamp(pins, &mut b, &Fresh::at(position), 0, now);
        let p = &b.packets()[0];
        (p.anno.branch, p.anno.flow)
    }

    const C: [u8; 4] = [10, 1, 0, 2];
    const S: [u8; 4] = [10, 2, 0, 2];
    const NAT: [u8; 4] = [10, 2, 0, 1];

    #[test]
    fn established_flows_keep_their_branch_and_new_ones_follow_the_position() {
        let (mut t, mut pins) = table(100);
        let (b, f) = stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 0, 0);
        assert_eq!((b, f), (1, 1));
        // Flip: the established flow stays, a new one follows.
        assert_eq!(stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, ACK), 1, 1).0, 1);
        assert_eq!(stamp(&mut t, &mut pins, tcp(C, 4001, S, 80, SYN), 1, 1).0, 2);
        assert_eq!(pins.pinned[..2], [1, 1]);
    }

    #[test]
    fn replies_find_the_pin_by_what_the_branch_sent() {
        let (mut t, mut pins) = table(100);
        let (_, flow) = stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 0, 0);
        // The branch rewrote the source to NAT:10007; the selector learns.
        let mut out = tcp(NAT, 10007, S, 80, SYN);
        out.anno.flow = flow;
        let (key, _) = key_of(&out).unwrap();
        pins.learn(flow, reverse(key));
        // The server's reply to NAT:10007 arrives on the reply path.
        let (b, f) = stamp(&mut t, &mut pins, tcp(S, 80, NAT, 10007, SYN | ACK), 1, 5);
        assert_eq!((b, f), (1, flow), "the reply follows the pin, not the position");
    }

    #[test]
    fn a_flow_ends_after_fins_both_ways_and_its_linger() {
        let (mut t, mut pins) = table(100);
        let (_, flow) = stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 0, 0);
        pins.learn(flow, key_of(&tcp(S, 80, C, 4000, 0)).unwrap().0);
        stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, FIN | ACK), 1, 10);
        assert_eq!(pins.flows[0].fin & DONE, 0, "one FIN is not the end");
        stamp(&mut t, &mut pins, tcp(S, 80, C, 4000, FIN | ACK), 1, 20);
        assert_ne!(pins.flows[0].fin & DONE, 0);
        // The last ACK still takes the pinned branch, within the linger.
        assert_eq!(stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, ACK), 1, 30).0, 1);
        assert_eq!(pins.count(), 1);
        pins.expire_all(30 + 2000);
        assert_eq!(pins.count(), 0, "forgotten DONE_TIMEOUT after the end");
        assert_eq!(pins.pinned[0], 0);
    }

    #[test]
    fn a_reset_ends_a_flow_and_a_syn_reopens_it_at_the_position() {
        let (mut t, mut pins) = table(100);
        stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 0, 0);
        stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, RST), 0, 1);
        assert_ne!(pins.flows[0].fin & DONE, 0);
        assert_eq!(stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 1, 2).0, 2);
        assert_eq!(pins.pinned[..2], [0, 1]);
    }

    #[test]
    fn a_flow_first_seen_mid_stream_is_forgotten_after_the_linger() {
        let (mut t, mut pins) = table(100);
        stamp(&mut t, &mut pins, tcp(S, 80, NAT, 10007, ACK), 0, 0);
        assert_eq!(pins.pinned[0], 1);
        stamp(&mut t, &mut pins, tcp(S, 80, NAT, 10007, ACK), 0, 1500);
        pins.expire_all(1500 + 1999);
        assert_eq!(pins.count(), 1, "pinned while it is active");
        pins.expire_all(1500 + 2000);
        assert_eq!(pins.count(), 0, "forgotten DONE_TIMEOUT after its last packet");
        // A SYN-opened flow, answered, keeps the TCP timeout.
        stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 0, 5000);
        let mut b = Batch::new();
        b.push(tcp(S, 80, C, 4000, SYN | ACK));
        t.stamp(&mut pins, &mut b, &Fresh::at(0), 1, 5001);
        pins.expire_all(5001 + 3_600_000);
        assert_eq!(pins.count(), 1);
    }

    #[test]
    fn a_full_table_leaves_new_flows_unpinned_and_counts_them() {
        let (mut t, mut pins) = table(2);
        for port in 0..3 {
            stamp(&mut t, &mut pins, tcp(C, 4000 + port, S, 80, SYN), 0, 0);
        }
        assert_eq!(pins.count(), 2);
        assert_eq!(pins.overflow, 1);
        let (b, f) = stamp(&mut t, &mut pins, tcp(C, 4002, S, 80, ACK), 1, 1);
        assert_eq!((b, f), (2, 0), "the unpinned flow follows the position");
        // Once flows idle out, slots are reused: no growth.
        let idle = pins.timeouts[1];
        stamp(&mut t, &mut pins, tcp(C, 5000, S, 80, SYN), 1, idle + 1);
        assert_eq!(pins.count(), 1);
        assert!(pins.flows.len() <= 2);
    }

    #[test]
    fn a_forced_write_forgets_every_pin() {
        let (mut t, mut pins) = table(100);
        stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 0, 0);
        t.shared.force();
        assert_eq!(stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, ACK), 1, 1).0, 2);
        assert_eq!(pins.forced, 1);
        assert_eq!(pins.pinned[..2], [0, 1]);
    }

    #[test]
    fn non_ip_and_malformed_packets_follow_the_position_unpinned() {
        let (mut t, mut pins) = table(100);
        for len in 0..60 {
            let mut p = tcp(C, 1, S, 2, SYN);
            let data = p.data()[..len.min(p.len())].to_vec();
            p = Packet::from_data(&data);
            p.set_network_header(0, len.min(20));
            let (b, _) = stamp(&mut t, &mut pins, p, 1, 0);
            assert_eq!(b, 2);
        }
        assert_eq!(stamp(&mut t, &mut pins, Packet::from_data(&[0; 60]), 0, 0), (1, 0));
        assert_eq!(stamp(&mut t, &mut pins, Packet::from_data(&[0; 60]), -1, 0), (0, 0));
    }

    proptest::proptest! {
        /// The index agrees with a HashMap through inserts, removes and
        /// growth, whatever the collisions (keys from a small range, so
        /// runs form and deletions shift them).
        #[test]
        fn the_index_agrees_with_a_map(ops in proptest::collection::vec((0u8..3, 1u64..200, 0u32..1000), 1..400)) {
            let mut index = KeyIndex::new(4);
            let mut model = std::collections::HashMap::new();
            for (op, key, slot) in ops {
                // Hashes from a small range collide on their home entries.
                match op {
                    0 | 1 => proptest::prop_assert_eq!(index.insert(key, slot), model.insert(key, slot)),
                    _ => proptest::prop_assert_eq!(index.remove(key), model.remove(&key)),
                }
                proptest::prop_assert_eq!(index.len, model.len());
            }
            for key in 1..400u64 {
                proptest::prop_assert_eq!(index.get(key), model.get(&key).copied());
            }
        }
    }

    #[test]
    fn a_one_way_flow_lives_only_the_unreplied_timeout() {
        let (mut t, mut pins) = table(100);
        let mut b = Batch::new();
        b.push(tcp(C, 4000, S, 80, SYN));
        t.stamp(&mut pins, &mut b, &Fresh::at(0), 0, 0);
        pins.expire_all(30_000);
        assert_eq!(pins.count(), 0, "a SYN nobody answers does not hold a pin for a day");
        let mut b = Batch::new();
        b.push(tcp(C, 4001, S, 80, SYN));
        t.stamp(&mut pins, &mut b, &Fresh::at(0), 0, 40_000);
        // The reply comes in on the table's other input.
        let mut b = Batch::new();
        b.push(tcp(S, 80, C, 4001, SYN | ACK));
        t.stamp(&mut pins, &mut b, &Fresh::at(0), 1, 40_001);
        pins.expire_all(40_001 + 3_600_000);
        assert_eq!(pins.count(), 1, "answered: the TCP timeout");
    }

    #[test]
    fn a_packet_stamped_for_an_earlier_flow_teaches_nothing() {
        let (mut t, mut pins) = table(100);
        let (_, stale) = stamp(&mut t, &mut pins, tcp(C, 4000, S, 80, SYN), 0, 0);
        t.shared.force();
        let (_, fresh) = stamp(&mut t, &mut pins, tcp(C, 5000, S, 80, SYN), 0, 1);
        assert_eq!(stale & 0xff_ffff, fresh & 0xff_ffff, "the slot was reused");
        assert_ne!(stale, fresh);
        pins.learn(stale, key_of(&tcp(S, 80, NAT, 10007, 0)).unwrap().0);
        assert!(pins.unlearned(fresh).is_some(), "the new flow still learns its own key");
    }

    #[test]
    fn timeouts_are_bounded() {
        for bad in ["TIMEOUT 0", "TCP_TIMEOUT 1e300", "UNREPLIED_TIMEOUT 40000000"] {
            let err = crate::testutil::configure("f :: FlowTable", FlowTable::CLASS, bad).err();
            assert!(err.is_some_and(|e| e.contains("expected 1ms to")), "{bad}");
        }
        assert!(crate::testutil::configure("f :: FlowTable", FlowTable::CLASS, "DONE_TIMEOUT -1").is_err());
    }

    #[test]
    fn selectors_of_one_table_have_the_same_inputs() {
        let (t, _) = table(10);
        let p = SwitchPosition::new(0);
        assert!(t.shared.attach_position(&p, 2).is_ok());
        assert!(t
            .shared
            .attach_position(&p, 3)
            .err()
            .is_some_and(|e| e.contains("has 2")));
        let (t, _) = table(10);
        assert!(t
            .shared
            .attach_position(&p, 255)
            .err()
            .is_some_and(|e| e.contains("at most 254")));
    }

    #[test]
    fn reverse_swaps_addresses_and_ports() {
        let (k, _) = key_of(&tcp(C, 4000, S, 80, 0)).unwrap();
        let (r, _) = key_of(&tcp(S, 80, C, 4000, 0)).unwrap();
        assert_eq!(reverse(k), r);
        assert_eq!(reverse(r), k);
    }
}
