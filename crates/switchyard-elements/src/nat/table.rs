//! The mapping table of a rewriter: flows in a slab, a hash index from
//! each direction's key to its flow, and the order in which flows expire.
//!
//! A flow (Click's `IPRewriterFlow`) holds both directions: the key of the
//! packets that made it (direction 0, forward) and the key its replies
//! carry (direction 1, the rewritten flow reversed). It expires a timeout
//! after its last packet; the timeout depends on its class (TCP without
//! data both ways, with data both ways, finished; UDP, UDP streaming).
//! Within one class, expiry order is last-packet order, so each class is
//! a list in that order: a packet moves its flow to the tail, the head
//! expires first. Garbage collection pops expired heads, a bounded number
//! per batch; a lookup that finds an expired flow removes it, so a flow
//! past its timeout is never used, whatever the collector's progress.
//!
//! The table is bounded. Click's rule when it is full: make room by
//! destroying the flow that expires first among those out of their
//! guarantee (the few seconds after each packet during which a flow may
//! not be evicted); if every flow is guaranteed, refuse the new flow. The
//! heads of the class lists are exactly the candidates.
//!
//! Steady state allocates nothing: freed slots are reused, and the slab
//! and index are preallocated up to [`PREALLOCATE`] flows; beyond that
//! they grow, on insertion only.

use super::flow::{FlowHashState, FlowId, Key};
use std::collections::HashMap;

/// Flow classes, each with its own timeout.
pub const TCP_NODATA: u8 = 0;
pub const TCP_DATA: u8 = 1;
pub const TCP_DONE: u8 = 2;
pub const UDP: u8 = 3;
pub const UDP_STREAMING: u8 = 4;
pub const NCLASS: usize = 5;

/// Flows preallocated at most (slots and index entries).
pub const PREALLOCATE: usize = 1 << 16;

const NIL: u32 = u32::MAX;

/// Timeouts and guarantees by class, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub timeout: [u64; NCLASS],
    pub guarantee: [u64; NCLASS],
}

impl Timing {
    /// How long a flow of `class` lives after its last packet: its timeout,
    /// but never less than its guarantee.
    fn lifetime(&self, class: u8) -> u64 {
        let c = usize::from(class);
        self.timeout[c].max(self.guarantee[c])
    }
}

/// One mapping, both directions.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The key of each direction's packets: `keys[0]` the forward flow as
    /// it arrived, `keys[1]` the rewritten flow reversed (its replies).
    pub keys: [Key; 2],
    /// The output of each direction.
    pub outputs: [u16; 2],
    /// The input whose spec made the flow.
    pub input: u16,
    pub proto: u8,
    pub class: u8,
    /// Connection state: TCP FIN/data bits, or the UDP packet count.
    pub state: u8,
    /// The forward packet's paint, given to replies (REPLY_ANNO PAINT).
    pub reply_paint: u8,
    /// Checksum differences of the forward rewrite (see `flow::deltas`).
    pub ip_delta: u16,
    pub l4_delta: u16,
    /// The rewrite changes nothing (a `keep` mapping).
    pub identity: bool,
    /// Milliseconds, on the rewriter's clock.
    pub last_seen: u64,
    prev: u32,
    next: u32,
    live: bool,
}

impl Flow {
    /// A flow to insert: `orig` arrived (on `map`), `rewritten` is what it
    /// becomes.
    pub fn new(map: u8, orig: FlowId, rewritten: FlowId, outputs: [u16; 2], input: u16, proto: u8, class: u8) -> Flow {
        let (ip_delta, l4_delta) = super::flow::deltas(orig, rewritten);
        Flow {
            keys: [
                Key { map, flow: orig },
                Key {
                    map,
                    flow: rewritten.reverse(),
                },
            ],
            outputs,
            input,
            proto,
            class,
            state: 0,
            reply_paint: 0,
            ip_delta,
            l4_delta,
            identity: orig == rewritten,
            last_seen: 0,
            prev: NIL,
            next: NIL,
            live: false,
        }
    }

    /// What a packet travelling in direction `dir` becomes.
    pub fn rewritten(&self, dir: usize) -> FlowId {
        self.keys[1 - dir].flow.reverse()
    }
}

/// Why an insertion failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Every flow is within its guarantee (or the capacity is zero).
    AllGuaranteed,
}

pub struct Table {
    flows: Vec<Flow>,
    free: u32,
    index: HashMap<Key, u32, FlowHashState>,
    heads: [u32; NCLASS],
    tails: [u32; NCLASS],
    len: usize,
    capacity: usize,
    pub timing: Timing,
}

impl Table {
    pub fn new(capacity: usize, timing: Timing) -> Table {
        let pre = capacity.min(PREALLOCATE);
        Table {
            flows: Vec::with_capacity(pre),
            free: NIL,
            index: HashMap::with_capacity_and_hasher(2 * pre, FlowHashState::random()),
            heads: [NIL; NCLASS],
            tails: [NIL; NCLASS],
            len: 0,
            capacity,
            timing,
        }
    }

    /// Live flows (each counts once, for both directions).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Live flows not expired at `now`, without removing the expired ones
    /// (a handler's count, under the lock the data path takes): a class
    /// list expires from its head, so only its expired flows are walked.
    pub fn live_len(&self, now: u64) -> usize {
        let mut expired = 0;
        for &head in &self.heads {
            let mut i = head;
            while i != NIL && self.expired(i, now) {
                expired += 1;
                i = self.flows[i as usize].next;
            }
        }
        self.len() - expired
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn flow(&self, idx: u32) -> &Flow {
        &self.flows[idx as usize]
    }

    pub fn flow_mut(&mut self, idx: u32) -> &mut Flow {
        &mut self.flows[idx as usize]
    }

    pub fn expiry(&self, idx: u32) -> u64 {
        let f = &self.flows[idx as usize];
        f.last_seen.saturating_add(self.timing.lifetime(f.class))
    }

    fn expired(&self, idx: u32, now: u64) -> bool {
        now >= self.expiry(idx)
    }

    fn guaranteed(&self, idx: u32, now: u64) -> bool {
        let f = &self.flows[idx as usize];
        now < f.last_seen.saturating_add(self.timing.guarantee[usize::from(f.class)])
    }

    /// The live flow and direction `key` belongs to. An expired flow found
    /// on the way is removed.
    #[inline]
    pub fn lookup(&mut self, key: &Key, now: u64) -> Option<(u32, usize)> {
        let v = *self.index.get(key)?;
        let idx = v >> 1;
        if self.expired(idx, now) {
            self.remove(idx);
            return None;
        }
        Some((idx, (v & 1) as usize))
    }

    /// True if a live flow has `key` in either direction.
    pub fn is_taken(&self, key: &Key, now: u64) -> bool {
        self.index.get(key).is_some_and(|&v| !self.expired(v >> 1, now))
    }

    /// Records a packet of flow `idx` at `now`: it moves to the tail of
    /// its (possibly new) class.
    #[inline]
    pub fn touch(&mut self, idx: u32, now: u64, class: u8) {
        self.unlink(idx);
        let f = &mut self.flows[idx as usize];
        f.last_seen = now;
        f.class = class;
        self.link_tail(idx);
    }

    /// Inserts `flow`, last seen `now`. A flow that already holds one of
    /// its keys is destroyed first (as Click does when a fixed pattern
    /// maps two flows onto one reply). When the table is full, room is
    /// made by Click's rule, or the new flow is refused.
    pub fn insert(&mut self, mut flow: Flow, now: u64) -> Result<u32, Full> {
        for d in 0..2 {
            if let Some(&v) = self.index.get(&flow.keys[d]) {
                self.remove(v >> 1);
            }
        }
        flow.last_seen = now;
        if self.len >= self.capacity && !self.make_room(&flow, now) {
            return Err(Full::AllGuaranteed);
        }
        flow.live = true;
        flow.prev = NIL;
        flow.next = NIL;
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.flows[idx as usize].next;
            self.flows[idx as usize] = flow;
            idx
        } else {
            self.flows.push(flow);
            (self.flows.len() - 1) as u32
        };
        let keys = self.flows[idx as usize].keys;
        // A flow whose two keys are equal (a flow to itself) is found by
        // its reply key, as in Click.
        self.index.insert(keys[0], idx << 1);
        self.index.insert(keys[1], idx << 1 | 1);
        self.link_tail(idx);
        self.len += 1;
        Ok(idx)
    }

    /// Destroys the flow that expires first among those out of their
    /// guarantee, unless that is the new flow itself. False if nothing
    /// may go.
    fn make_room(&mut self, new: &Flow, now: u64) -> bool {
        let Some((victim, expiry)) = self.evictable(now, false) else {
            return false;
        };
        let c = usize::from(new.class);
        let new_guaranteed = self.timing.guarantee[c] > 0;
        if !new_guaranteed && now.saturating_add(self.timing.lifetime(new.class)) < expiry {
            return false;
        }
        self.remove(victim);
        true
    }

    /// The head that expires first among the class lists, skipping
    /// guaranteed ones unless `any`.
    fn evictable(&self, now: u64, any: bool) -> Option<(u32, u64)> {
        self.heads
            .iter()
            .filter(|&&h| h != NIL && (any || !self.guaranteed(h, now)))
            .map(|&h| (h, self.expiry(h)))
            .min_by_key(|&(_, e)| e)
    }

    /// Removes flow `idx`, both directions.
    pub fn remove(&mut self, idx: u32) {
        if !self.flows[idx as usize].live {
            return;
        }
        self.unlink(idx);
        let keys = self.flows[idx as usize].keys;
        for (d, k) in keys.iter().enumerate() {
            if self.index.get(k) == Some(&(idx << 1 | d as u32)) {
                self.index.remove(k);
            }
        }
        let f = &mut self.flows[idx as usize];
        f.live = false;
        f.next = self.free;
        self.free = idx;
        self.len -= 1;
    }

    /// Removes up to `budget` expired flows, oldest first in each class.
    pub fn collect(&mut self, now: u64, mut budget: usize) -> usize {
        let mut removed = 0;
        for c in 0..NCLASS {
            while budget > 0 {
                let h = self.heads[c];
                if h == NIL || !self.expired(h, now) {
                    break;
                }
                self.remove(h);
                budget -= 1;
                removed += 1;
            }
        }
        removed
    }

    /// Sets the capacity and evicts down to it: expired flows first, then
    /// those that expire first, guaranteed ones last (Click's `capacity`
    /// write).
    pub fn set_capacity(&mut self, capacity: usize, now: u64) {
        self.capacity = capacity;
        self.collect(now, usize::MAX);
        while self.len > self.capacity {
            let Some((victim, _)) = self.evictable(now, false).or_else(|| self.evictable(now, true)) else {
                break;
            };
            self.remove(victim);
        }
    }

    /// Removes every flow.
    pub fn clear(&mut self) {
        let live: Vec<u32> = self.live_indices().collect();
        for idx in live {
            self.remove(idx);
        }
    }

    /// Removes the flows for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Flow) -> bool) {
        let gone: Vec<u32> = self
            .live_indices()
            .filter(|&i| !keep(&self.flows[i as usize]))
            .collect();
        for idx in gone {
            self.remove(idx);
        }
    }

    /// Live flows by index, in slot order.
    pub fn live_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.live)
            .map(|(i, _)| i as u32)
    }

    /// Takes over `old`'s flows (a hot reload), keeping this table's
    /// timing and capacity.
    pub fn adopt(&mut self, old: &mut Table, now: u64) {
        let (timing, capacity) = (self.timing, self.capacity);
        std::mem::swap(self, old);
        self.timing = timing;
        self.set_capacity(capacity, now);
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, class) = {
            let f = &self.flows[idx as usize];
            (f.prev, f.next, usize::from(f.class))
        };
        if prev == NIL {
            if self.heads[class] == idx {
                self.heads[class] = next;
            }
        } else {
            self.flows[prev as usize].next = next;
        }
        if next == NIL {
            if self.tails[class] == idx {
                self.tails[class] = prev;
            }
        } else {
            self.flows[next as usize].prev = prev;
        }
        let f = &mut self.flows[idx as usize];
        f.prev = NIL;
        f.next = NIL;
    }

    fn link_tail(&mut self, idx: u32) {
        let class = usize::from(self.flows[idx as usize].class);
        let tail = self.tails[class];
        {
            let f = &mut self.flows[idx as usize];
            f.prev = tail;
            f.next = NIL;
        }
        if tail == NIL {
            self.heads[class] = idx;
        } else {
            self.flows[tail as usize].next = idx;
        }
        self.tails[class] = idx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(timeout: u64, guarantee: u64) -> Timing {
        Timing {
            timeout: [timeout; NCLASS],
            guarantee: [guarantee; NCLASS],
        }
    }

    fn flow(n: u16) -> Flow {
        let orig = FlowId::new(0x0a00_0002, n, 0x0808_0808, 53);
        let rw = FlowId::new(0xc633_6401, 1000 + n, 0x0808_0808, 53);
        Flow::new(0, orig, rw, [0, 1], 0, 17, UDP)
    }

    #[test]
    fn both_directions_find_the_flow_and_removal_frees_both() {
        let mut t = Table::new(8, timing(1000, 0));
        let f = flow(1);
        let keys = f.keys;
        let idx = t.insert(f, 0).unwrap();
        assert_eq!(t.lookup(&keys[0], 10), Some((idx, 0)));
        assert_eq!(t.lookup(&keys[1], 10), Some((idx, 1)));
        assert_eq!(t.flow(idx).rewritten(0).sport, 1001);
        assert_eq!(t.flow(idx).rewritten(1), keys[0].flow.reverse());
        t.remove(idx);
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup(&keys[0], 10), None);
        assert_eq!(t.lookup(&keys[1], 10), None);
        // The slot is reused.
        assert_eq!(t.insert(flow(2), 0).unwrap(), idx);
    }

    #[test]
    fn expired_flows_are_never_found_and_collection_is_bounded() {
        let mut t = Table::new(100, timing(1000, 0));
        let keys: Vec<Key> = (0..10).map(|i| flow(i).keys[0]).collect();
        for i in 0..10 {
            t.insert(flow(i), u64::from(i) * 10).unwrap();
        }
        assert_eq!(t.collect(1045, 3), 3);
        assert_eq!(t.len(), 7);
        assert_eq!(t.collect(1045, 100), 2);
        assert_eq!(t.lookup(&keys[5], 1049), Some((5, 0)));
        // Touched: lives on.
        t.touch(5, 1049, UDP);
        assert_eq!(t.lookup(&keys[6], 1060), None, "expired on lookup");
        assert_eq!(t.lookup(&keys[5], 2048), Some((5, 0)));
        assert_eq!(t.lookup(&keys[5], 2049), None);
    }

    #[test]
    fn live_len_counts_without_collecting() {
        let mut t = Table::new(100, timing(1000, 0));
        for i in 0..10 {
            t.insert(flow(i), u64::from(i) * 10).unwrap();
        }
        // Flow 0 seen again, in another class: the one alive longest.
        t.touch(0, 95, TCP_NODATA);
        assert_eq!(t.live_len(1000), 10);
        assert_eq!(t.live_len(1045), 6, "flows seen at 10 to 40 expired");
        assert_eq!(t.live_len(1094), 1);
        assert_eq!(t.live_len(1095), 0);
        assert_eq!(t.len(), 10, "nothing removed");
    }

    #[test]
    fn full_table_evicts_the_first_to_expire_unless_all_are_guaranteed() {
        let mut t = Table::new(2, timing(1000, 100));
        let a = flow(1);
        let ka = a.keys[0];
        t.insert(a, 0).unwrap();
        t.insert(flow(2), 10).unwrap();
        // Both within their guarantee: refused.
        assert_eq!(t.insert(flow(3), 50), Err(Full::AllGuaranteed));
        assert_eq!(t.len(), 2);
        // Past the guarantee of the first: it goes.
        let k3 = flow(3).keys[0];
        t.insert(flow(3), 105).unwrap();
        assert_eq!(t.lookup(&ka, 105), None);
        assert!(t.lookup(&k3, 105).is_some());
        assert_eq!(t.len(), 2);
        // Capacity zero refuses everything.
        t.set_capacity(0, 106);
        assert_eq!(t.len(), 0);
        assert_eq!(t.insert(flow(4), 107), Err(Full::AllGuaranteed));
    }

    #[test]
    fn without_guarantee_a_new_flow_that_would_expire_first_is_refused() {
        let mut t = Table::new(1, timing(1000, 0));
        t.timing.timeout[TCP_DATA as usize] = 100_000;
        let mut a = flow(1);
        a.class = TCP_DATA;
        t.insert(a, 0).unwrap();
        // The new flow (UDP, 1 s) would expire before the old (100 s).
        assert!(t.insert(flow(2), 10).is_err());
        let mut b = flow(3);
        b.class = TCP_DATA;
        assert!(t.insert(b, 10).is_ok());
    }

    #[test]
    fn a_flow_holding_the_new_reply_key_is_replaced() {
        let mut t = Table::new(8, timing(1000, 0));
        let a = flow(1);
        let mut b = flow(2);
        b.keys[1] = a.keys[1];
        let ka = a.keys[0];
        t.insert(a, 0).unwrap();
        let ib = t.insert(b, 1).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(&ka, 2), None);
        let kb = t.flow(ib).keys[1];
        assert_eq!(t.lookup(&kb, 2), Some((ib, 1)));
    }

    #[test]
    fn adopt_keeps_the_new_limits() {
        let mut old = Table::new(8, timing(1000, 0));
        for i in 0..5 {
            old.insert(flow(i), u64::from(i)).unwrap();
        }
        let mut new = Table::new(3, timing(50, 0));
        new.adopt(&mut old, 10);
        assert_eq!(new.len(), 3);
        assert_eq!(new.timing.timeout[0], 50);
        // The oldest went; the newest stay, with the new timeout.
        assert!(new.lookup(&flow(4).keys[0], 53).is_some());
        assert!(new.lookup(&flow(4).keys[0], 54).is_none());
    }
}
