use super::arp::{is_special_ip, Arp, OP_REPLY};
use crate::wire::{ether_header, parse_ip, EtherAddr, IpAddr, IpPrefix, ETHERTYPE_IP, ETHER_HEADER_LEN};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use switchyard_core::packet::MAX_BATCH;
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, Packet, PortInfo, Seconds, Work,
};

documented! {
    /// Resolves next hops with ARP and puts IP packets in Ethernet headers.
    ///
    /// Packets on input 0 are IP packets (no Ethernet header) whose next
    /// hop is in the destination IP annotation (set by CheckIPHeader,
    /// GetIPAddress or a route lookup's gateway). When the table knows the
    /// next hop's Ethernet address, the packet gets an Ethernet header (to
    /// the neighbour, from ETH, type 0x0800) and leaves on output 0.
    /// Otherwise it waits in the table and an ARP request (broadcast, from
    /// IP and ETH) goes out. ARP replies arriving on input 1 (with their
    /// Ethernet header) teach the table and release the packets waiting
    /// for that address, encapsulated, in arrival order.
    ///
    /// As in Click:
    /// - Packets for 255.255.255.255 and for the BROADCAST address go to
    ///   ff:ff:ff:ff:ff:ff, multicast packets to 01:00:5e plus the low 23
    ///   bits of the group (RFC 1112), both without a query. Packets whose
    ///   annotation is 0.0.0.0 are dropped (a missing annotation: a warning
    ///   is logged once).
    /// - Queries for one address go out at most every 100 ms, and every
    ///   2 s once 10 went unanswered; each packet for an unresolved
    ///   address may trigger one.
    /// - An entry expires TIMEOUT after it was last confirmed; packets for
    ///   an expired address trigger a new query. Once an entry is
    ///   POLL_TIMEOUT old, packets still use it and also send a poll,
    ///   unicast to the known address (broadcast with BROADCAST_POLL).
    /// - Packets waiting for an address that stays unresolved for TIMEOUT
    ///   are dropped with its entry. Over ENTRY_PACKET_CAPACITY for one
    ///   address, the new packet is dropped; over CAPACITY in all, the
    ///   oldest entries' packets are dropped until the table holds
    ///   CAPACITY - CAPACITY/CAPACITY_SLIM_FACTOR. Over ENTRY_CAPACITY
    ///   entries, the least recently confirmed entry is evicted. Every
    ///   dropped packet counts in `drops`.
    /// - ARP replies teach the table, asked for or not; requests do not.
    ///
    /// Differences from Click, and why:
    /// - While packets wait, the element re-sends the query by itself,
    ///   every second (2 s after 10 unanswered), so a lost query does not
    ///   strand a lone packet until the next one arrives (Click queries
    ///   only when a packet arrives). It is a task for this, on the thread
    ///   of its inputs; while nothing waits, a run is one atomic load.
    /// - The table never grows without bound: `ENTRY_CAPACITY 0` and
    ///   `CAPACITY 0` (Click's "unlimited") mean 65536 entries and 16384
    ///   packets, and larger values are refused. A CAPACITY_SLIM_FACTOR
    ///   over CAPACITY, which would make every packet over capacity slim
    ///   the table again, is refused too.
    /// - A reply not addressed to IP (a gratuitous one, or one for another
    ///   interface that a Tee copied here, as in `configs/ip-router.click`)
    ///   only refreshes an existing entry, as Linux does; Click learns it.
    ///   So a host on one link cannot plant entries in another link's
    ///   table, nor fill it. Replies claiming 0.0.0.0, a broadcast,
    ///   multicast or class E address, our own address, or a group
    ///   Ethernet address teach nothing (Click refuses only the group
    ///   Ethernet address). Frames whose ARP address lengths are not 6
    ///   and 4 are ignored.
    /// - `responses` counts the replies that taught the table (Click counts
    ///   every frame on input 1 long enough to hold one); `drops` counts
    ///   every packet dropped, the table's drops included.
    /// - `insert` releases the packets waiting for the address; `delete`
    ///   removes the entry, dropping its waiting packets, and refuses an
    ///   address not in the table (Click marks the entry invalid).
    /// - Not supported: TABLE (shared ARPTable elements), the one-argument
    ///   AddressInfo form, writes to `ipaddr` and `broadcast` (reload
    ///   the configuration instead), `table_xml`.
    ///
    /// # Ports
    /// Input 0: IP packets; input 1: ARP replies with their Ethernet
    /// header. Output 0: Ethernet frames (IP packets, and ARP queries when
    /// there is one output); output 1 (optional): ARP queries. Push.
    ///
    /// # Arguments
    /// - `IP` (mandatory): this interface's address, optionally with its
    ///   prefix (`10.0.0.1/24`), which gives the default BROADCAST.
    /// - `ETH` (mandatory): this interface's Ethernet address.
    /// - `CAPACITY`: packets waiting in all; default 2048.
    /// - `ENTRY_CAPACITY`: entries; default 0 (65536).
    /// - `ENTRY_PACKET_CAPACITY`: packets waiting for one address; default 0
    ///   (only CAPACITY limits).
    /// - `CAPACITY_SLIM_FACTOR`: over CAPACITY, drop down to CAPACITY -
    ///   CAPACITY/factor; default 2 (1 when CAPACITY is 1); at most
    ///   CAPACITY.
    /// - `TIMEOUT`: entry lifetime; default 300s; 0 never expires.
    /// - `POLL_TIMEOUT`: entry age from which packets also poll; default
    ///   60s; 0 never polls.
    /// - `BROADCAST`: the local broadcast address; default from IP's
    ///   prefix, else 255.255.255.255.
    /// - `BROADCAST_POLL`: poll by broadcast; default false.
    ///
    /// # Handlers
    /// - `table` (read): one entry per line, oldest first: `IP OK ETH AGE`,
    ///   OK 1 for a usable entry and 0 otherwise, ETH as `00-1A-2B-3C-4D-5E`,
    ///   AGE the seconds since the entry was last confirmed.
    /// - `count` (read): entries. `length` (read): packets waiting.
    /// - `queries`, `responses`, `drops` (read): queries sent, replies
    ///   learned, packets dropped. `stats` (read): drops and queries, in
    ///   Click's words.
    /// - `ipaddr`, `broadcast` (read): IP and BROADCAST.
    /// - `insert` (write `IP ETH`): adds or replaces an entry.
    /// - `delete` (write `IP`): removes an entry.
    /// - `clear` (write): empties the table and zeroes the counts.
    ///
    /// A reload keeps the table and the counts when IP, ETH and BROADCAST
    /// are unchanged.
    ///
    /// # Example
    /// ```text
    /// c :: Classifier(12/0806 20/0002, 12/0800, -);
    /// arpq :: ARPQuerier(10.0.0.1/24, 00:11:22:33:44:55);
    /// c[0] -> [1]arpq;
    /// rt[1] -> DecIPTTL -> [0]arpq -> Queue -> ToDevice(eth0);
    /// ```
    pub struct ARPQuerier {
        me: Me,
        limits: Limits,
        shared: Arc<Shared>,
        zero_warned: bool,
    }
}

/// Click's rate limit on queries for one address.
const POLL_GAP: Duration = Duration::from_millis(100);
const SLOW_POLL_GAP: Duration = Duration::from_secs(2);
const SLOW_AFTER: u8 = 10;
/// How long waiting packets wait before the element re-sends a query on
/// its own (Linux's default retransmission time).
const RETRY: Duration = Duration::from_secs(1);
/// How often expired entries are swept out.
const SWEEP: Duration = Duration::from_secs(1);
/// What Click's "0 = unlimited" means here.
const MAX_ENTRIES: usize = 65536;
const MAX_PACKETS: usize = 16384;

/// This interface, as configured.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Me {
    ip: u32,
    eth: EtherAddr,
    bcast: u32,
    poll_timeout: Option<Duration>,
    broadcast_poll: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Limits {
    capacity: usize,
    entry_capacity: usize,
    /// 0: no limit per address.
    entry_packet_capacity: usize,
    slim_factor: usize,
    /// None: entries never expire.
    timeout: Option<Duration>,
}

struct Entry {
    eth: EtherAddr,
    /// A reply or an `insert` gave the address (it may have expired since).
    known: bool,
    /// When the address was last confirmed (or the entry made).
    live_at: Instant,
    polled_at: Option<Instant>,
    polls: u8,
    /// Position in the age order (see [`Table::age`]).
    stamp: u64,
    waiting: VecDeque<Packet>,
}

impl Entry {
    fn expired(&self, now: Instant, timeout: Option<Duration>) -> bool {
        timeout.is_some_and(|t| now.saturating_duration_since(self.live_at) > t)
    }

    fn usable(&self, now: Instant, timeout: Option<Duration>) -> bool {
        self.known && !self.expired(now, timeout)
    }

    fn poll_gap(&self) -> Duration {
        if self.polls >= SLOW_AFTER {
            SLOW_POLL_GAP
        } else {
            POLL_GAP
        }
    }

    fn allow_poll(&self, now: Instant) -> bool {
        self.polled_at
            .is_none_or(|t| now.saturating_duration_since(t) >= self.poll_gap())
    }

    fn mark_poll(&mut self, now: Instant) {
        self.polled_at = Some(now);
        self.polls = self.polls.saturating_add(1);
    }
}

/// The ARP table: entries, the packets waiting in them, and the counts.
/// Handlers and the data path share it behind a mutex that the data path
/// takes once per batch.
struct Table {
    limits: Limits,
    entries: HashMap<u32, Entry>,
    /// Entries from least to most recently confirmed, as (stamp, address);
    /// a pair whose stamp is no longer its entry's is stale and skipped,
    /// so confirming an entry is a push, not a search.
    age: VecDeque<(u64, u32)>,
    /// The entries with waiting packets, by stamp (so in age order): what
    /// slimming and the timer visit, without walking past the many
    /// entries that hold nothing.
    waiters: BTreeMap<u64, u32>,
    stamp: u64,
    packets: usize,
    next_sweep: Option<Instant>,
    /// When the timer next has something to do for waiting packets.
    next_retry: Option<Instant>,
    queries: u64,
    responses: u64,
    drops: u64,
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Table {
    fn new(limits: Limits) -> Table {
        Table {
            limits,
            entries: HashMap::new(),
            age: VecDeque::new(),
            waiters: BTreeMap::new(),
            stamp: 0,
            packets: 0,
            next_sweep: None,
            next_retry: None,
            queries: 0,
            responses: 0,
            drops: 0,
        }
    }

    fn is_current(&self, stamp: u64, ip: u32) -> bool {
        self.entries.get(&ip).is_some_and(|e| e.stamp == stamp)
    }

    /// Removes an entry, counting its waiting packets as dropped; returns
    /// it, so that a handler can free the packets after the lock.
    fn remove(&mut self, ip: u32) -> Option<Entry> {
        let e = self.entries.remove(&ip)?;
        if !e.waiting.is_empty() {
            self.waiters.remove(&e.stamp);
        }
        self.packets -= e.waiting.len();
        self.drops += e.waiting.len() as u64;
        Some(e)
    }

    fn evict_oldest(&mut self) {
        while let Some((stamp, ip)) = self.age.pop_front() {
            if self.is_current(stamp, ip) {
                self.remove(ip);
                return;
            }
        }
    }

    /// Drops stale pairs once they outnumber the entries.
    fn compact(&mut self) {
        if self.age.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.age
                .retain(|(s, ip)| entries.get(ip).is_some_and(|e| e.stamp == *s));
        }
    }

    /// Gives `ip`'s entry (made if absent) the newest place in the age order.
    fn touch(&mut self, ip: u32, now: Instant) -> &mut Entry {
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.limits.entry_capacity {
            self.evict_oldest();
        }
        self.stamp += 1;
        let stamp = self.stamp;
        let e = self.entries.entry(ip).or_insert_with(|| Entry {
            eth: EtherAddr::BROADCAST,
            known: false,
            live_at: now,
            polled_at: None,
            polls: 0,
            stamp,
            waiting: VecDeque::new(),
        });
        if !e.waiting.is_empty() {
            self.waiters.remove(&e.stamp);
            self.waiters.insert(stamp, ip);
        }
        e.stamp = stamp;
        self.age.push_back((stamp, ip));
        // After the insertion, so that the new pair is not taken for stale.
        self.compact();
        self.entries.get_mut(&ip).expect("entry inserted above")
    }

    /// Records `ip` at `eth`; returns the packets that waited for it.
    fn learn(&mut self, ip: u32, eth: EtherAddr, now: Instant) -> VecDeque<Packet> {
        let e = self.touch(ip, now);
        e.eth = eth;
        e.known = true;
        e.live_at = now;
        e.polled_at = None;
        e.polls = 0;
        let waiting = std::mem::take(&mut e.waiting);
        if !waiting.is_empty() {
            let stamp = e.stamp;
            self.waiters.remove(&stamp);
        }
        self.packets -= waiting.len();
        waiting
    }

    /// Puts packets back in `ip`'s entry (an `insert` resolved them, and
    /// only the data path's thread may send them).
    fn put_back(&mut self, ip: u32, mut packets: VecDeque<Packet>) {
        let Some(e) = self.entries.get_mut(&ip) else {
            return;
        };
        if packets.is_empty() {
            return;
        }
        if e.waiting.is_empty() {
            self.waiters.insert(e.stamp, ip);
        }
        self.packets += packets.len();
        e.waiting.append(&mut packets);
    }

    /// Queues `p` for unresolved `ip`. Returns None if it was dropped, or
    /// whether a query may go out now.
    fn append(&mut self, ip: u32, p: Packet, now: Instant) -> Option<bool> {
        let timeout = self.limits.timeout;
        // An expired entry starts over: whatever waited in it has waited
        // a whole TIMEOUT.
        if self.entries.get(&ip).is_some_and(|e| e.expired(now, timeout)) {
            self.remove(ip);
        }
        if !self.entries.contains_key(&ip) {
            self.touch(ip, now);
        }
        let epc = self.limits.entry_packet_capacity;
        if epc > 0 && self.entries.get(&ip).is_some_and(|e| e.waiting.len() >= epc) {
            self.drops += 1;
            return None;
        }
        self.packets += 1;
        if self.packets > self.limits.capacity {
            // At least one below capacity, so that the next slimming is
            // at least one packet away, and a whole factor's worth away
            // in general: slimming is amortised over the packets queued.
            let c = self.limits.capacity;
            self.slim(c - (c / self.limits.slim_factor).max(1));
        }
        let Some(e) = self.entries.get_mut(&ip) else {
            // Not reachable: the entry was made above and slimming drops
            // packets, not entries.
            self.packets -= 1;
            self.drops += 1;
            return None;
        };
        if e.waiting.is_empty() {
            self.waiters.insert(e.stamp, ip);
        }
        e.waiting.push_back(p);
        let query = e.allow_poll(now);
        if query {
            e.mark_poll(now);
        }
        self.next_retry = min_instant(self.next_retry, now.checked_add(RETRY));
        Some(query)
    }

    /// Drops waiting packets, oldest entries first, down to `target` (the
    /// packet being queued, counted but not yet in an entry, is spared).
    /// Visits only entries with packets, each emptied one leaving the
    /// index: the cost is the packets dropped.
    fn slim(&mut self, target: usize) {
        while self.packets > target {
            let Some(w) = self.waiters.first_entry() else {
                break;
            };
            let ip = *w.get();
            if let Some(e) = self.entries.get_mut(&ip) {
                while self.packets > target && e.waiting.pop_front().is_some() {
                    self.packets -= 1;
                    self.drops += 1;
                }
                if !e.waiting.is_empty() {
                    continue;
                }
            }
            w.remove();
        }
    }

    /// Removes expired entries (at most once per [`SWEEP`]).
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = now.checked_add(SWEEP);
        let Some(timeout) = self.limits.timeout else {
            return;
        };
        while let Some(&(stamp, ip)) = self.age.front() {
            if let Some(e) = self.entries.get(&ip).filter(|e| e.stamp == stamp) {
                if !e.expired(now, Some(timeout)) {
                    break;
                }
                self.remove(ip);
            }
            self.age.pop_front();
        }
    }

    /// Applies (possibly smaller) limits to an inherited table.
    fn enforce(&mut self) {
        while self.entries.len() > self.limits.entry_capacity {
            self.evict_oldest();
        }
        let epc = self.limits.entry_packet_capacity;
        if epc > 0 {
            for e in self.entries.values_mut() {
                while e.waiting.len() > epc && e.waiting.pop_front().is_some() {
                    self.packets -= 1;
                    self.drops += 1;
                }
            }
        }
        self.slim(self.limits.capacity);
    }

    /// Empties the table; returns the entries, so that a handler can free
    /// their packets after the lock.
    fn clear(&mut self) -> HashMap<u32, Entry> {
        let entries = std::mem::take(&mut self.entries);
        self.age.clear();
        self.waiters.clear();
        self.packets = 0;
        self.next_retry = None;
        self.queries = 0;
        self.responses = 0;
        self.drops = 0;
        entries
    }
}

struct Shared {
    table: Mutex<Table>,
    /// Packets waiting, readable without the lock: the task's "anything
    /// to do?" check.
    waiting: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one batch or timer run sends: frames on output 0, queries on the
/// last output. It fills under the table's lock and is sent after it.
/// One reply may release thousands of waiting packets and one timer run
/// send thousands of queries, so batches are cut at [`MAX_BATCH`], as
/// everywhere in the graph: a larger one would keep its vector's size in
/// the batch pool.
struct Out {
    frames: Batch,
    queries: Option<Batch>,
    /// Full batches, with their output, in the order they filled.
    full: Vec<(usize, Batch)>,
}

impl Out {
    fn new(two_outputs: bool) -> Out {
        Out {
            frames: Batch::new(),
            queries: two_outputs.then(Batch::new),
            full: Vec::new(),
        }
    }

    fn frame(&mut self, p: Packet) {
        self.frames.push(p);
        if self.frames.len() >= MAX_BATCH {
            self.full.push((0, std::mem::take(&mut self.frames)));
        }
    }

    fn query(&mut self, q: Packet) {
        match &mut self.queries {
            Some(b) => {
                b.push(q);
                if b.len() >= MAX_BATCH {
                    self.full.push((1, std::mem::take(b)));
                }
            }
            None => self.frame(q),
        }
    }

    /// The batches to send, each output's in order.
    fn into_batches(self) -> impl Iterator<Item = (usize, Batch)> {
        let rest = std::iter::once((0, self.frames)).chain(self.queries.map(|q| (1, q)));
        self.full.into_iter().chain(rest).filter(|(_, b)| !b.is_empty())
    }

    fn send(self, cx: &mut Context<'_>) {
        for (port, b) in self.into_batches() {
            cx.push(port, b);
        }
    }
}

impl Me {
    /// Prepends the Ethernet header to an IP packet.
    fn encap(&self, mut p: Packet, dst: EtherAddr) -> Packet {
        if let Some(h) = p.push_front_mut(ETHER_HEADER_LEN).first_chunk_mut::<ETHER_HEADER_LEN>() {
            // A fixed-size copy of a header built in registers.
            *h = ether_header(dst, self.eth, ETHERTYPE_IP);
        }
        p
    }

    /// A query for `target`: broadcast, or a unicast poll to `known`.
    fn query(&self, target: u32, known: Option<EtherAddr>, timestamp_ns: u64) -> Packet {
        let dst = match known {
            Some(e) if !self.broadcast_poll => e,
            _ => EtherAddr::BROADCAST,
        };
        let mut q = Arp::request(self.eth, self.ip, target).packet(dst, self.eth);
        q.anno.timestamp_ns = timestamp_ns;
        q
    }

    /// One IP packet from input 0. `last` caches the previous packet's
    /// next hop within the batch (most batches go to one neighbour).
    fn handle_ip(&self, t: &mut Table, p: Packet, now: Instant, out: &mut Out, last: &mut Option<(u32, EtherAddr)>) {
        let dst = p.anno.dst_ip;
        if let Some((ip, eth)) = *last {
            if ip == dst {
                out.frame(self.encap(p, eth));
                return;
            }
        }
        if dst == u32::MAX || dst == self.bcast {
            out.frame(self.encap(p, EtherAddr::BROADCAST));
            return;
        }
        if dst >> 28 == 0xe {
            let [_, b, c, d] = dst.to_be_bytes();
            out.frame(self.encap(p, EtherAddr([0x01, 0x00, 0x5e, b & 0x7f, c, d])));
            return;
        }
        let timeout = t.limits.timeout;
        if let Some(e) = t.entries.get_mut(&dst).filter(|e| e.usable(now, timeout)) {
            let eth = e.eth;
            // Packets an `insert` resolved go first, in order.
            if !e.waiting.is_empty() {
                t.waiters.remove(&e.stamp);
                t.packets -= e.waiting.len();
                for w in e.waiting.drain(..) {
                    out.frame(self.encap(w, eth));
                }
            }
            let poll = self
                .poll_timeout
                .is_some_and(|pt| now.saturating_duration_since(e.live_at) >= pt)
                && e.allow_poll(now);
            if poll {
                e.mark_poll(now);
                t.queries += 1;
                out.query(self.query(dst, Some(eth), p.anno.timestamp_ns));
            } else {
                *last = Some((dst, eth));
            }
            out.frame(self.encap(p, eth));
            return;
        }
        let ts = p.anno.timestamp_ns;
        if t.append(dst, p, now) == Some(true) {
            t.queries += 1;
            out.query(self.query(dst, None, ts));
        }
    }

    /// One frame from input 1: a reply teaches the table.
    fn handle_arp(&self, t: &mut Table, frame: &[u8], now: Instant, out: &mut Out) {
        let Ok(a) = Arp::parse(frame) else {
            return;
        };
        if a.op != OP_REPLY || a.sha.is_group() || is_special_ip(a.spa) || a.spa == self.bcast || a.spa == self.ip {
            return;
        }
        // A reply addressed to another host (another interface's, through
        // a Tee) may refresh what we know, never add to it.
        if a.tpa != self.ip && !t.entries.contains_key(&a.spa) {
            return;
        }
        t.responses += 1;
        for p in t.learn(a.spa, a.sha, now) {
            out.frame(self.encap(p, a.sha));
        }
    }

    /// The timer: releases packets an `insert` resolved, re-sends queries
    /// for packets still waiting, drops those that waited TIMEOUT.
    /// Returns when it next has work.
    fn tick(&self, t: &mut Table, now: Instant, out: &mut Out) -> Option<Instant> {
        t.sweep(now);
        if t.packets == 0 {
            t.next_retry = None;
            return None;
        }
        if t.next_retry.is_some_and(|at| now < at) {
            return t.next_retry;
        }
        let timeout = t.limits.timeout;
        let mut next = None;
        let mut sent = 0;
        let (entries, packets) = (&mut t.entries, &mut t.packets);
        // Oldest first; an entry whose packets leave leaves the index.
        t.waiters.retain(|_, &mut ip| {
            let Some(e) = entries.get_mut(&ip) else {
                return false;
            };
            if e.usable(now, timeout) {
                *packets -= e.waiting.len();
                for p in e.waiting.drain(..) {
                    out.frame(self.encap(p, e.eth));
                }
                return false;
            }
            let gap = RETRY.max(e.poll_gap());
            if e.polled_at.is_none_or(|at| now.saturating_duration_since(at) >= gap) {
                let ts = e.waiting.front().map_or(0, |p| p.anno.timestamp_ns);
                e.mark_poll(now);
                sent += 1;
                out.query(self.query(ip, None, ts));
            }
            let retry = e.polled_at.and_then(|at| at.checked_add(RETRY.max(e.poll_gap())));
            let expiry = timeout.and_then(|d| e.live_at.checked_add(d + SWEEP));
            next = min_instant(next, min_instant(retry, expiry));
            true
        });
        t.queries += sent;
        t.next_retry = next;
        next
    }
}

/// A time argument as a lifetime: 0 (or beyond a century) means never.
fn lifetime(s: Seconds) -> Option<Duration> {
    (s.0 > 0.0 && s.0 < 3.2e9).then(|| Duration::from_secs_f64(s.0))
}

impl ARPQuerier {
    pub const CLASS: ElementClass = ElementClass {
        name: "ARPQuerier",
        ports: "2/1-2",
        processing: "h/h",
        doc: ARPQuerier::DOC,
        factory: ARPQuerier::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        ARPQuerier::configure(args).map(|q| Box::new(q) as Box<dyn Element>)
    }

    fn configure(args: &mut Args) -> Option<ARPQuerier> {
        let ip = args.read_mp::<IpPrefix>("IP");
        let eth = args.read_mp::<EtherAddr>("ETH");
        let table = args.read::<String>("TABLE");
        let capacity = |args: &mut Args, name: &'static str, default: usize, max: usize| {
            let v = args.read::<usize>(name).unwrap_or(default);
            if v > max {
                args.error(Some(args.span_of(name)), format!("{name}: at most {max}"));
            }
            if v == 0 {
                max
            } else {
                v
            }
        };
        let packets = capacity(args, "CAPACITY", 2048, MAX_PACKETS);
        let entries = capacity(args, "ENTRY_CAPACITY", 0, MAX_ENTRIES);
        let per_entry = args.read::<usize>("ENTRY_PACKET_CAPACITY").unwrap_or(0);
        let slim_factor = args.read::<usize>("CAPACITY_SLIM_FACTOR");
        let timeout = args.read::<Seconds>("TIMEOUT").unwrap_or(Seconds(300.0));
        let poll_timeout = args.read::<Seconds>("POLL_TIMEOUT").unwrap_or(Seconds(60.0));
        let bcast = args.read::<IpAddr>("BROADCAST");
        let broadcast_poll = args.read::<bool>("BROADCAST_POLL").unwrap_or(false);
        if table.is_some() {
            args.error(
                Some(args.span_of("TABLE")),
                "TABLE: shared ARPTable elements are not supported; each ARPQuerier keeps its own table",
            );
        }
        // Over CAPACITY, slimming drops CAPACITY/factor packets: a factor
        // over CAPACITY would drop none, and CAPACITY 1 with the default
        // factor means dropping the one.
        let slim_factor = match slim_factor {
            None => 2.min(packets),
            Some(0) => {
                args.error(
                    Some(args.span_of("CAPACITY_SLIM_FACTOR")),
                    "CAPACITY_SLIM_FACTOR cannot be zero",
                );
                1
            }
            Some(f) if f > packets => {
                args.error(
                    Some(args.span_of("CAPACITY_SLIM_FACTOR")),
                    format!("CAPACITY_SLIM_FACTOR {f}: at most CAPACITY ({packets})"),
                );
                1
            }
            Some(f) => f,
        };
        let (ip, eth) = (ip?, eth?);
        if args.has_errors() {
            return None;
        }
        let bcast = bcast.map_or_else(
            || match ip.addr | !ip.mask {
                b if b == ip.addr => u32::MAX,
                b => b,
            },
            |b| b.0,
        );
        let limits = Limits {
            capacity: packets,
            entry_capacity: entries,
            entry_packet_capacity: per_entry,
            slim_factor,
            timeout: lifetime(timeout),
        };
        Some(ARPQuerier {
            me: Me {
                ip: ip.addr,
                eth,
                bcast,
                poll_timeout: lifetime(poll_timeout),
                broadcast_poll,
            },
            limits,
            shared: Arc::new(Shared {
                table: Mutex::new(Table::new(limits)),
                waiting: AtomicUsize::new(0),
            }),
            zero_warned: false,
        })
    }

    /// A batch on `port` at time `now` (the data path reads the clock
    /// once per batch; tests choose it).
    fn push_at(&mut self, port: usize, mut batch: Batch, now: Instant, out: &mut Out) {
        let me = self.me;
        let mut t = self.shared.lock();
        t.sweep(now);
        if port == 0 {
            let mut last = None;
            for p in batch.drain() {
                if p.anno.dst_ip == 0 {
                    t.drops += 1;
                    if !self.zero_warned {
                        self.zero_warned = true;
                        tracing::warn!(ip = %IpAddr(me.ip), "ARPQuerier: would query for 0.0.0.0; missing destination IP annotation?");
                    }
                    continue;
                }
                me.handle_ip(&mut t, p, now, out, &mut last);
            }
        } else {
            for p in batch.iter() {
                me.handle_arp(&mut t, p.data(), now, out);
            }
        }
        self.shared.waiting.store(t.packets, Relaxed);
    }

    fn tick_at(&mut self, now: Instant, out: &mut Out) -> Option<Instant> {
        let mut t = self.shared.lock();
        let next = self.me.tick(&mut t, now, out);
        self.shared.waiting.store(t.packets, Relaxed);
        next
    }
}

impl Element for ARPQuerier {
    fn initialize(&mut self, _ports: &PortInfo) -> Result<bool, String> {
        // A task only for the timer: run() costs one atomic load while
        // nothing waits.
        Ok(true)
    }

    fn push(&mut self, port: usize, batch: Batch, cx: &mut Context<'_>) {
        let mut out = Out::new(cx.noutputs() > 1);
        self.push_at(port, batch, switchyard_core::clock::now(), &mut out);
        out.send(cx);
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if cx.stopping() {
            return Work::Done;
        }
        if self.shared.waiting.load(Relaxed) == 0 {
            return Work::Idle;
        }
        let mut out = Out::new(cx.noutputs() > 1);
        let next = self.tick_at(switchyard_core::clock::now(), &mut out);
        out.send(cx);
        next.map_or(Work::Idle, Work::SleepUntil)
    }

    fn holds_packets(&self) -> bool {
        self.shared.waiting.load(Relaxed) > 0
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        let Some(old) = downcast::<ARPQuerier>(old) else {
            return;
        };
        if (old.me.ip, old.me.eth, old.me.bcast) != (self.me.ip, self.me.eth, self.me.bcast) {
            return;
        }
        let mut mine = self.shared.lock();
        let mut theirs = old.shared.lock();
        std::mem::swap(&mut *mine, &mut *theirs);
        mine.limits = self.limits;
        mine.enforce();
        mine.next_retry = Some(switchyard_core::clock::now());
        self.shared.waiting.store(mine.packets, Relaxed);
    }

    fn handlers(&self) -> Vec<Handler> {
        let me = self.me;
        let s = &self.shared;
        let count = |name: &str, f: fn(&Table) -> u64| {
            let s = s.clone();
            Handler::read_only(name, move || f(&s.lock()).to_string())
        };
        let (s1, s2, s3, s4, s5) = (s.clone(), s.clone(), s.clone(), s.clone(), s.clone());
        vec![
            Handler::read_only("table", move || {
                // Copied out under the lock, which the data path takes
                // every batch; written out after it.
                let now = switchyard_core::clock::now();
                let rows: Vec<(u32, bool, EtherAddr, Duration)> = {
                    let t = s1.lock();
                    let timeout = t.limits.timeout;
                    t.age
                        .iter()
                        .filter_map(|&(stamp, ip)| {
                            let e = t.entries.get(&ip).filter(|e| e.stamp == stamp)?;
                            Some((
                                ip,
                                e.usable(now, timeout),
                                e.eth,
                                now.saturating_duration_since(e.live_at),
                            ))
                        })
                        .collect()
                };
                let mut text = String::with_capacity(rows.len() * 48);
                for (ip, usable, eth, age) in rows {
                    let _ = writeln!(
                        text,
                        "{} {} {} {}.{:06}",
                        IpAddr(ip),
                        u8::from(usable),
                        eth.unparse(),
                        age.as_secs(),
                        age.subsec_micros()
                    );
                }
                text
            })
            .merged(switchyard_core::Merge::List),
            // Entries inserted reach every copy: the largest table.
            count("count", |t| t.entries.len() as u64).merged(switchyard_core::Merge::Max),
            count("length", |t| t.packets as u64),
            count("queries", |t| t.queries),
            count("responses", |t| t.responses),
            count("drops", |t| t.drops),
            Handler::read_only("stats", move || {
                let t = s2.lock();
                format!("{} packets killed\n{} ARP queries sent\n", t.drops, t.queries)
            }),
            Handler::read_only("ipaddr", move || IpAddr(me.ip).to_string()),
            Handler::read_only("broadcast", move || IpAddr(me.bcast).to_string()),
            Handler::write_only("insert", move |v| {
                let (ip, eth) = parse_insert(v)?;
                let now = switchyard_core::clock::now();
                let mut t = s3.lock();
                let waiting = t.learn(ip, eth, now);
                if !waiting.is_empty() {
                    // Only the data path's thread may send them: put them
                    // back, now releasable, and let the timer run.
                    t.put_back(ip, waiting);
                    t.next_retry = Some(now);
                }
                s3.waiting.store(t.packets, Relaxed);
                Ok(())
            }),
            Handler::write_only("delete", move |v| {
                let ip = parse_ip(v.trim()).ok_or_else(|| format!("'{}': expected IP address", v.trim()))?;
                let mut t = s4.lock();
                let Some(gone) = t.remove(ip) else {
                    return Err(format!("{} is not in the table", IpAddr(ip)));
                };
                s4.waiting.store(t.packets, Relaxed);
                drop(t);
                drop(gone);
                Ok(())
            }),
            Handler::write_only("clear", move |_| {
                let mut t = s5.lock();
                let gone = t.clear();
                s5.waiting.store(0, Relaxed);
                drop(t);
                drop(gone);
                Ok(())
            }),
        ]
    }
}

/// An `insert` value: `IP ETH`, for an address a neighbour may own.
fn parse_insert(v: &str) -> Result<(u32, EtherAddr), String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    let [ip, eth] = words[..] else {
        return Err(format!("'{}': expected IP ETH", v.trim()));
    };
    let ip = parse_ip(ip).ok_or_else(|| format!("'{ip}': expected IP address"))?;
    let eth = EtherAddr::parse(eth).ok_or_else(|| format!("'{eth}': expected Ethernet address"))?;
    if is_special_ip(ip) {
        return Err(format!("{}: not a unicast address", IpAddr(ip)));
    }
    if eth.is_group() {
        return Err(format!("{eth}: not a unicast Ethernet address"));
    }
    Ok((ip, eth))
}

#[cfg(test)]
mod tests {
    use super::super::arp::tests::frame;
    use super::super::arp::{FRAME_LEN, OP_REQUEST};
    use super::*;
    use crate::wire::tests::ipv4_packet;
    use switchyard_core::runtime::Harness;

    const MAC: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
    const HOST: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
    const OTHER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x03];
    const NEIGHBOUR: u32 = 0x0a000002;

    fn querier(config: &str) -> ARPQuerier {
        let mut args = Args::parse_str("q :: ARPQuerier", config);
        let q = ARPQuerier::configure(&mut args);
        args.complete().expect("valid config");
        q.expect("element")
    }

    /// An IP packet to a far host, routed via `next_hop`; `id` marks it.
    fn ip_via(next_hop: u32, id: u8) -> Packet {
        let mut b = ipv4_packet([192, 168, 1, 2], [172, 16, 0, 9], 17, 64, 8);
        b[27] = id;
        let mut p = Packet::from_data(&b);
        p.anno.dst_ip = next_hop;
        p
    }

    fn reply_from(spa: [u8; 4], sha: [u8; 6]) -> Vec<u8> {
        frame(OP_REPLY, sha, spa, MAC, [10, 0, 0, 1], MAC)
    }

    /// The query 10.0.0.1 at MAC sends for `target`, to `eth_dst`.
    fn query_for(target: [u8; 4], eth_dst: [u8; 6]) -> Vec<u8> {
        let mut q = frame(OP_REQUEST, MAC, [10, 0, 0, 1], [0; 6], target, eth_dst);
        assert_eq!(q.len(), FRAME_LEN);
        q.truncate(FRAME_LEN);
        q
    }

    /// `ip_via(_, id)` as it must leave, to `eth`.
    fn encapsulated(eth: [u8; 6], id: u8) -> Vec<u8> {
        let mut f = eth.to_vec();
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip_via(0, id).data());
        f
    }

    /// One querier with two outputs, driven at chosen times.
    struct Rig {
        q: ARPQuerier,
        t0: Instant,
    }

    type Sent = (Vec<Vec<u8>>, Vec<Vec<u8>>);

    /// What `out` sends on each output, checking that no batch is over
    /// MAX_BATCH.
    fn sent(out: Out) -> Sent {
        let mut sent: Sent = (Vec::new(), Vec::new());
        for (port, b) in out.into_batches() {
            assert!(b.len() <= MAX_BATCH, "a batch of {}", b.len());
            let to = if port == 0 { &mut sent.0 } else { &mut sent.1 };
            to.extend(b.iter().map(|p| p.data().to_vec()));
        }
        sent
    }

    impl Rig {
        fn new(config: &str) -> Rig {
            Rig {
                q: querier(config),
                t0: switchyard_core::clock::now(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn push(&mut self, port: usize, packets: Vec<Packet>, ms: u64) -> Sent {
            let mut b = Batch::new();
            b.extend(packets);
            let mut out = Out::new(true);
            self.q.push_at(port, b, self.at(ms), &mut out);
            sent(out)
        }

        fn ip(&mut self, next_hop: u32, ids: &[u8], ms: u64) -> Sent {
            self.push(0, ids.iter().map(|&i| ip_via(next_hop, i)).collect(), ms)
        }

        fn arp(&mut self, frames: &[Vec<u8>], ms: u64) -> Sent {
            self.push(1, frames.iter().map(|f| Packet::from_data(f)).collect(), ms)
        }

        fn tick(&mut self, ms: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Option<Duration>) {
            let mut out = Out::new(true);
            let next = self.q.tick_at(self.at(ms), &mut out);
            let next = next.map(|n| n.duration_since(self.t0));
            let (frames, queries) = sent(out);
            (frames, queries, next)
        }

        fn handler(&self, name: &str) -> Handler {
            self.q.handlers().into_iter().find(|h| h.name == name).unwrap()
        }

        fn read(&self, name: &str) -> String {
            (self.handler(name).read.unwrap())()
        }

        fn write(&self, name: &str, v: &str) -> Result<(), String> {
            (self.handler(name).write.unwrap())(v)
        }
    }

    #[test]
    fn unknown_next_hop_waits_for_the_reply_then_leaves_in_order() {
        let mut r = Rig::new("10.0.0.1/24, 00:11:22:33:44:55");
        let (frames, queries) = r.ip(NEIGHBOUR, &[1, 2, 3], 0);
        assert!(frames.is_empty());
        assert_eq!(queries, [query_for([10, 0, 0, 2], [0xff; 6])]);
        assert_eq!(
            (r.read("length"), r.read("count"), r.read("queries")),
            ("3".into(), "1".into(), "1".into())
        );
        assert!(r.q.holds_packets());
        assert!(r.read("table").starts_with("10.0.0.2 0 FF-FF-FF-FF-FF-FF "));

        let (frames, queries) = r.arp(&[reply_from([10, 0, 0, 2], HOST)], 5);
        assert!(queries.is_empty());
        assert_eq!(
            frames,
            [encapsulated(HOST, 1), encapsulated(HOST, 2), encapsulated(HOST, 3)]
        );
        assert_eq!((r.read("length"), r.read("responses")), ("0".into(), "1".into()));
        assert!(!r.q.holds_packets());

        // Known now: straight out, no query.
        let (frames, queries) = r.ip(NEIGHBOUR, &[4, 5], 10);
        assert_eq!(frames, [encapsulated(HOST, 4), encapsulated(HOST, 5)]);
        assert!(queries.is_empty());
        let table = r.read("table");
        assert!(table.starts_with("10.0.0.2 1 02-00-00-00-00-02 "), "{table}");
        assert_eq!(r.read("stats"), "0 packets killed\n1 ARP queries sent\n");
    }

    #[test]
    fn queries_leave_on_the_last_output() {
        for outputs in [1, 2] {
            let q = querier("10.0.0.1, 00:11:22:33:44:55");
            let mut h = Harness::new(Box::new(q), 2, outputs);
            let mut b = Batch::new();
            b.push(ip_via(NEIGHBOUR, 1));
            h.push(0, b);
            let query = h.take(outputs - 1);
            assert_eq!(query.iter().map(Batch::len).sum::<usize>(), 1, "{outputs} outputs");
            assert_eq!(query[0].packets()[0].data(), &query_for([10, 0, 0, 2], [0xff; 6])[..]);
            let mut b = Batch::new();
            b.push(Packet::from_data(&reply_from([10, 0, 0, 2], HOST)));
            h.push(1, b);
            let out = h.take(0);
            assert_eq!(out[0].packets()[0].data(), &encapsulated(HOST, 1)[..]);
        }
    }

    #[test]
    fn queries_are_rate_limited_and_retried_while_packets_wait() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55");
        assert_eq!(r.ip(NEIGHBOUR, &[1], 0).1.len(), 1);
        // Another packet within 100 ms waits without a query.
        assert_eq!(r.ip(NEIGHBOUR, &[2], 50).1.len(), 0);
        assert_eq!(r.ip(NEIGHBOUR, &[3], 150).1.len(), 1);
        // The timer has nothing to do before a second has passed.
        let (frames, queries, next) = r.tick(500);
        assert!(frames.is_empty() && queries.is_empty());
        assert_eq!(next, Some(Duration::from_millis(1000)));
        let (_, queries, next) = r.tick(1000);
        assert!(queries.is_empty());
        assert_eq!(next, Some(Duration::from_millis(1150)));
        let (_, queries, next) = r.tick(1150);
        assert_eq!(queries, [query_for([10, 0, 0, 2], [0xff; 6])]);
        assert_eq!(next, Some(Duration::from_millis(2150)));
        assert_eq!(r.read("queries"), "3");
        // Ten unanswered queries: from then on one per 2 s at most.
        for i in 0..7 {
            assert_eq!(r.tick(2150 + 1000 * i).1.len(), 1, "retry {i}");
        }
        assert_eq!(r.read("queries"), "10");
        assert_eq!(r.tick(9150).1.len(), 0);
        assert_eq!(r.ip(NEIGHBOUR, &[4], 9200).1.len(), 0);
        assert_eq!(r.tick(10150).1.len(), 1);
        assert_eq!(r.read("length"), "4");
        // A reply resets the count and releases everything.
        assert_eq!(r.arp(&[reply_from([10, 0, 0, 2], HOST)], 10200).0.len(), 4);
        assert_eq!(r.tick(10300), (vec![], vec![], None));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, ENTRY_PACKET_CAPACITY 2");
        r.ip(NEIGHBOUR, &[1, 2, 3, 4, 5], 0);
        assert_eq!((r.read("length"), r.read("drops")), ("2".into(), "3".into()));
        let (frames, _) = r.arp(&[reply_from([10, 0, 0, 2], HOST)], 1);
        assert_eq!(frames, [encapsulated(HOST, 1), encapsulated(HOST, 2)]);

        // Over CAPACITY, the oldest entry's packets go first, down to half.
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, CAPACITY 4");
        r.ip(NEIGHBOUR, &[1, 2, 3], 0);
        r.ip(0x0a000003, &[4], 1);
        assert_eq!(r.read("drops"), "0");
        r.ip(0x0a000003, &[5], 2);
        assert_eq!((r.read("length"), r.read("drops")), ("2".into(), "3".into()));
        let (frames, _) = r.arp(&[reply_from([10, 0, 0, 3], OTHER), reply_from([10, 0, 0, 2], HOST)], 3);
        assert_eq!(frames, [encapsulated(OTHER, 4), encapsulated(OTHER, 5)]);
        assert_eq!(r.read("stats"), "3 packets killed\n2 ARP queries sent\n");
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_confirmed_entry() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, ENTRY_CAPACITY 2");
        r.arp(&[reply_from([10, 0, 0, 2], HOST)], 0);
        r.ip(0x0a000003, &[1, 2], 1);
        // Confirming 10.0.0.2 again makes 10.0.0.3 (waiting) the oldest.
        r.arp(&[reply_from([10, 0, 0, 2], HOST)], 2);
        r.arp(&[reply_from([10, 0, 0, 4], OTHER)], 3);
        assert_eq!(
            (r.read("count"), r.read("drops"), r.read("length")),
            ("2".into(), "2".into(), "0".into())
        );
        let ips: Vec<String> = r
            .read("table")
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.2", "10.0.0.4"]);
        // Thousands of unsolicited replies: the table stays at its bound.
        let flood: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| reply_from((0x0b000000 + i).to_be_bytes(), OTHER))
            .collect();
        r.arp(&flood, 4);
        assert_eq!(r.read("count"), "2");
        assert!(r.q.shared.lock().age.len() <= 2 * 2 + 64 + 1);
    }

    #[test]
    fn an_expired_entry_is_queried_again() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, TIMEOUT 10, POLL_TIMEOUT 0");
        r.arp(&[reply_from([10, 0, 0, 2], HOST)], 0);
        assert_eq!(r.ip(NEIGHBOUR, &[1], 9_000), (vec![encapsulated(HOST, 1)], vec![]));
        let (frames, queries) = r.ip(NEIGHBOUR, &[2], 10_500);
        assert!(frames.is_empty());
        assert_eq!(queries, [query_for([10, 0, 0, 2], [0xff; 6])]);
        let (frames, _) = r.arp(&[reply_from([10, 0, 0, 2], OTHER)], 10_600);
        assert_eq!(frames, [encapsulated(OTHER, 2)]);
        // Unused, it is swept out.
        r.ip(0x0a000009, &[], 30_000);
        assert_eq!(r.read("count"), "0");
    }

    #[test]
    fn an_old_entry_is_polled_before_it_expires() {
        for (config, poll_dst) in [("", HOST), (", BROADCAST_POLL true", [0xff; 6])] {
            let mut r = Rig::new(&format!("10.0.0.1, 00:11:22:33:44:55, POLL_TIMEOUT 60{config}"));
            r.arp(&[reply_from([10, 0, 0, 2], HOST)], 0);
            assert_eq!(r.ip(NEIGHBOUR, &[1], 59_000).1.len(), 0);
            let (frames, queries) = r.ip(NEIGHBOUR, &[2, 3], 61_000);
            assert_eq!(frames, [encapsulated(HOST, 2), encapsulated(HOST, 3)]);
            assert_eq!(queries, [query_for([10, 0, 0, 2], poll_dst)]);
            // The answer renews the entry: no more polls.
            r.arp(&[reply_from([10, 0, 0, 2], HOST)], 61_001);
            assert_eq!(r.ip(NEIGHBOUR, &[4], 62_000).1.len(), 0);
        }
    }

    #[test]
    fn waiting_packets_are_dropped_after_timeout() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, TIMEOUT 5");
        r.ip(NEIGHBOUR, &[1, 2], 0);
        let (_, _, next) = r.tick(4_000);
        assert!(next.is_some());
        let (frames, _, next) = r.tick(6_100);
        assert!(frames.is_empty());
        assert_eq!(next, None);
        assert_eq!(
            (r.read("drops"), r.read("length"), r.read("count")),
            ("2".into(), "0".into(), "0".into())
        );
    }

    #[test]
    fn broadcast_and_multicast_need_no_query() {
        let mut r = Rig::new("10.0.0.1/24, 00:11:22:33:44:55");
        assert_eq!(r.read("broadcast"), "10.0.0.255");
        let (frames, queries) = r.ip(u32::MAX, &[1], 0);
        assert_eq!((frames, queries), (vec![encapsulated([0xff; 6], 1)], vec![]));
        assert_eq!(r.ip(0x0a0000ff, &[2], 0).0, [encapsulated([0xff; 6], 2)]);
        assert_eq!(
            r.ip(0xe00000fb, &[3], 0).0,
            [encapsulated([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb], 3)]
        );
        assert_eq!(
            r.ip(0xefc80102, &[4], 0).0,
            [encapsulated([0x01, 0x00, 0x5e, 0x48, 0x01, 0x02], 4)]
        );
        assert_eq!(r.read("count"), "0");

        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55");
        assert_eq!(r.read("broadcast"), "255.255.255.255");
        assert_eq!(r.ip(0x0a0000ff, &[2], 0).1.len(), 1);
        let mut r = Rig::new("10.0.0.1/24, 00:11:22:33:44:55, BROADCAST 10.0.0.127");
        assert_eq!(r.ip(0x0a00007f, &[2], 0).0.len(), 1);
    }

    #[test]
    fn a_missing_annotation_drops_the_packet() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55");
        assert_eq!(r.ip(0, &[1, 2], 0), (vec![], vec![]));
        assert_eq!((r.read("drops"), r.read("count")), ("2".into(), "0".into()));
    }

    #[test]
    fn handlers_insert_delete_and_clear() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55");
        r.ip(NEIGHBOUR, &[1], 0);
        r.write("insert", "10.0.0.2 02:00:00:00:00:02").unwrap();
        assert!(r.read("table").starts_with("10.0.0.2 1 02-00-00-00-00-02 0."));
        // The packet that waited leaves with the timer, before new ones.
        assert_eq!(r.q.shared.lock().next_retry.map(|_| ()), Some(()));
        let (frames, _) = r.ip(NEIGHBOUR, &[2], 10);
        assert_eq!(frames, [encapsulated(HOST, 1), encapsulated(HOST, 2)]);
        r.ip(0x0a000003, &[3], 20);
        r.write("insert", "10.0.0.3 02:00:00:00:00:03").unwrap();
        // (The handler read the real clock, which may be ahead of the
        // rig's.)
        let (frames, _, _) = r.tick(5_000);
        assert_eq!(frames, [encapsulated(OTHER, 3)]);

        for bad in [
            "10.0.0.2",
            "10.0.0.2 eth0",
            "x 02:00:00:00:00:02",
            "255.255.255.255 02:00:00:00:00:02",
            "10.0.0.2 ff:ff:ff:ff:ff:ff",
            "10.0.0.2 02:00:00:00:00:02 extra",
        ] {
            assert!(r.write("insert", bad).is_err(), "{bad}");
        }
        assert_eq!(
            r.write("delete", "10.0.0.9").unwrap_err(),
            "10.0.0.9 is not in the table"
        );
        assert!(r.write("delete", "ten").is_err());
        r.write("delete", "10.0.0.2").unwrap();
        assert_eq!(r.read("count"), "1");
        assert_eq!(r.ip(NEIGHBOUR, &[4], 5_010).1.len(), 1);
        r.write("clear", "").unwrap();
        assert_eq!(
            (r.read("count"), r.read("length"), r.read("queries"), r.read("table")),
            ("0".into(), "0".into(), "0".into(), String::new())
        );
        assert_eq!(r.read("ipaddr"), "10.0.0.1");
    }

    #[test]
    fn hostile_frames_on_input_1_teach_nothing() {
        let mut r = Rig::new("10.0.0.1/24, 00:11:22:33:44:55");
        let good = reply_from([10, 0, 0, 2], HOST);
        let mut wrong_hw = good.clone();
        wrong_hw[15] = 6;
        let mut wrong_len = good.clone();
        wrong_len[18] = 8;
        let mut not_arp = good.clone();
        not_arp[12] = 0x86;
        let bad = [
            good[..41].to_vec(),
            Vec::new(),
            wrong_hw,
            wrong_len,
            not_arp,
            frame(OP_REQUEST, HOST, [10, 0, 0, 2], [0; 6], [10, 0, 0, 1], [0xff; 6]),
            reply_from([10, 0, 0, 2], [0x01, 0x00, 0x5e, 0, 0, 1]),
            reply_from([255, 255, 255, 255], HOST),
            reply_from([10, 0, 0, 255], HOST),
            reply_from([0, 0, 0, 0], HOST),
            reply_from([224, 0, 0, 1], HOST),
            reply_from([10, 0, 0, 1], HOST),
            frame(7, HOST, [10, 0, 0, 2], MAC, [10, 0, 0, 1], MAC),
        ];
        assert_eq!(r.arp(&bad, 0), (vec![], vec![]));
        assert_eq!((r.read("count"), r.read("responses")), ("0".into(), "0".into()));
        // A gratuitous reply (for its own address, to broadcast), or one
        // for another interface, adds nothing...
        let gratuitous = |sha| frame(OP_REPLY, sha, [10, 0, 0, 2], [0xff; 6], [10, 0, 0, 2], [0xff; 6]);
        let elsewhere = frame(OP_REPLY, HOST, [10, 0, 0, 3], MAC, [10, 1, 0, 1], MAC);
        r.arp(&[gratuitous(HOST), elsewhere], 1);
        assert_eq!(r.read("count"), "0");
        // ... but refreshes what is known: the host moved.
        r.arp(&[reply_from([10, 0, 0, 2], HOST)], 2);
        r.arp(&[gratuitous(OTHER)], 3);
        assert_eq!(r.ip(NEIGHBOUR, &[1], 4).0, [encapsulated(OTHER, 1)]);
        assert_eq!(r.read("responses"), "2");
    }

    #[test]
    fn a_reload_keeps_the_table_of_the_same_interface() {
        let mut old = Rig::new("10.0.0.1/24, 00:11:22:33:44:55");
        old.arp(&[reply_from([10, 0, 0, 2], HOST)], 0);
        old.ip(0x0a000003, &[1, 2, 3], 1);
        let mut new = Rig::new("10.0.0.1/24, 00:11:22:33:44:55, ENTRY_PACKET_CAPACITY 2");
        new.t0 = old.t0;
        new.q.take_state(Box::new(old.q));
        assert_eq!(
            (new.read("count"), new.read("length"), new.read("queries")),
            ("2".into(), "2".into(), "1".into())
        );
        assert_eq!(new.read("drops"), "1");
        assert_eq!(new.ip(NEIGHBOUR, &[4], 2).0, [encapsulated(HOST, 4)]);
        let (frames, _) = new.arp(&[reply_from([10, 0, 0, 3], OTHER)], 3);
        assert_eq!(frames, [encapsulated(OTHER, 2), encapsulated(OTHER, 3)]);

        let mut other = Rig::new("10.0.0.5/24, 00:11:22:33:44:55");
        other.q.take_state(Box::new(new.q));
        assert_eq!(other.read("count"), "0");
        struct NotAQuerier;
        impl Element for NotAQuerier {}
        let mut fresh = Rig::new("10.0.0.1/24, 00:11:22:33:44:55");
        fresh.q.take_state(Box::new(NotAQuerier));
        assert_eq!(fresh.read("count"), "0");
    }

    #[test]
    fn configuration() {
        let q = querier("10.0.0.1, 00:11:22:33:44:55");
        assert_eq!(q.limits.capacity, 2048);
        assert_eq!(q.limits.entry_capacity, MAX_ENTRIES);
        assert_eq!(q.limits.timeout, Some(Duration::from_secs(300)));
        assert_eq!(q.me.poll_timeout, Some(Duration::from_secs(60)));
        let q = querier("IP 10.0.0.1, ETH 00:11:22:33:44:55, CAPACITY 0, TIMEOUT 0, POLL_TIMEOUT 500ms");
        assert_eq!((q.limits.capacity, q.limits.timeout), (MAX_PACKETS, None));
        assert_eq!(q.me.poll_timeout, Some(Duration::from_millis(500)));
        for bad in [
            "10.0.0.1",
            "00:11:22:33:44:55",
            "10.0.0.1, 00:11:22:33:44:55, TABLE arpt",
            "10.0.0.1, 00:11:22:33:44:55, CAPACITY 100000",
            "10.0.0.1, 00:11:22:33:44:55, ENTRY_CAPACITY 1000000",
            "10.0.0.1, 00:11:22:33:44:55, CAPACITY_SLIM_FACTOR 0",
            "10.0.0.1, 00:11:22:33:44:55, TIMEOUT soon",
        ] {
            let mut args = Args::parse_str("q :: ARPQuerier", bad);
            let q = ARPQuerier::configure(&mut args);
            assert!(q.is_none() || args.complete().is_err(), "{bad}");
        }
    }

    /// The index of entries with packets is exactly those entries.
    fn check_waiters(t: &Table) {
        let want: BTreeMap<u64, u32> = t
            .entries
            .iter()
            .filter(|(_, e)| !e.waiting.is_empty())
            .map(|(&ip, e)| (e.stamp, ip))
            .collect();
        assert_eq!(t.waiters, want);
    }

    #[test]
    fn slimming_frees_at_least_one_place_and_the_factor_is_checked() {
        // CAPACITY 1 (default factor 1): each packet over replaces the one
        // waiting, whoever it waited for.
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, CAPACITY 1");
        assert_eq!(r.q.limits.slim_factor, 1);
        r.ip(NEIGHBOUR, &[1], 0);
        r.ip(NEIGHBOUR, &[2], 1);
        r.ip(0x0a000003, &[3], 2);
        assert_eq!((r.read("length"), r.read("drops")), ("1".into(), "2".into()));
        check_waiters(&r.q.shared.lock());
        let (frames, _) = r.arp(&[reply_from([10, 0, 0, 2], HOST), reply_from([10, 0, 0, 3], OTHER)], 3);
        assert_eq!(frames, [encapsulated(OTHER, 3)]);

        // CAPACITY 4, factor 4: down to 3 with the new packet, oldest entry
        // first, which leaves room for one before the next slimming.
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, CAPACITY 4, CAPACITY_SLIM_FACTOR 4");
        r.ip(NEIGHBOUR, &[1, 2], 0);
        r.ip(0x0a000003, &[3, 4, 5], 1);
        assert_eq!((r.read("length"), r.read("drops")), ("3".into(), "2".into()));
        r.ip(0x0a000003, &[6], 2);
        assert_eq!((r.read("length"), r.read("drops")), ("4".into(), "2".into()));
        let (frames, _) = r.arp(&[reply_from([10, 0, 0, 3], OTHER), reply_from([10, 0, 0, 2], HOST)], 3);
        assert_eq!(
            frames,
            [
                encapsulated(OTHER, 3),
                encapsulated(OTHER, 4),
                encapsulated(OTHER, 5),
                encapsulated(OTHER, 6)
            ]
        );

        for (config, ok) in [
            ("CAPACITY 4, CAPACITY_SLIM_FACTOR 5", false),
            ("CAPACITY 4, CAPACITY_SLIM_FACTOR 4", true),
            ("CAPACITY 0, CAPACITY_SLIM_FACTOR 16384", true),
            ("CAPACITY 0, CAPACITY_SLIM_FACTOR 16385", false),
            ("CAPACITY_SLIM_FACTOR 4096", false),
        ] {
            let mut args = Args::parse_str("q :: ARPQuerier", &format!("10.0.0.1, 00:11:22:33:44:55, {config}"));
            let q = ARPQuerier::configure(&mut args);
            let errs = args.complete().err();
            assert_eq!(q.is_some() && errs.is_none(), ok, "{config}");
            if !ok {
                assert!(errs.unwrap()[0].message.contains("CAPACITY_SLIM_FACTOR"), "{config}");
            }
        }
    }

    /// Slimming visits the entries that hold packets, not the thousands
    /// of resolved ones older than them.
    #[test]
    fn slimming_past_many_resolved_entries() {
        let mut r = Rig::new("10.0.0.1, 00:11:22:33:44:55, CAPACITY 8, CAPACITY_SLIM_FACTOR 8");
        let learned: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| reply_from((0x0b00_0000 + i).to_be_bytes(), OTHER))
            .collect();
        r.arp(&learned, 0);
        assert_eq!(r.read("count"), "20000");
        for i in 0..5_000u32 {
            r.ip(0x0a00_0002 + i % 3, &[i as u8], 1);
        }
        assert_eq!((r.read("length"), r.read("drops")), ("8".into(), "4992".into()));
        let t = r.q.shared.lock();
        check_waiters(&t);
        assert_eq!(t.waiters.len(), 3);
    }

    #[test]
    fn a_reply_releases_thousands_in_batches_of_at_most_max_batch() {
        let q = querier("10.0.0.1, 00:11:22:33:44:55");
        let mut h = Harness::new(Box::new(q), 2, 2);
        for chunk in 0..4u32 {
            let mut b = Batch::new();
            for i in 0..250u32 {
                b.push(ip_via(NEIGHBOUR, ((chunk * 250 + i) % 256) as u8));
            }
            h.push(0, b);
        }
        assert_eq!(h.count(1), 1, "one query");
        let mut b = Batch::new();
        b.push(Packet::from_data(&reply_from([10, 0, 0, 2], HOST)));
        h.push(1, b);
        let out = h.take(0);
        assert!(
            out.iter().all(|b| b.len() <= MAX_BATCH),
            "{:?}",
            out.iter().map(Batch::len).collect::<Vec<_>>()
        );
        let ids: Vec<u8> = out.iter().flat_map(|b| b.iter().map(|p| p.data()[14 + 27])).collect();
        let want: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
        assert_eq!(ids, want, "all of them, in order");
    }

    #[test]
    fn the_timer_sends_thousands_of_queries_in_batches_of_at_most_max_batch() {
        for outputs in [2, 1] {
            let q = querier("10.0.0.1, 00:11:22:33:44:55");
            let mut r = Rig {
                q,
                t0: switchyard_core::clock::now(),
            };
            let hops: Vec<u32> = (0..1000).map(|i| 0x0a01_0000 + i).collect();
            for chunk in hops.chunks(200) {
                let (_, queries) = r.push(0, chunk.iter().map(|&h| ip_via(h, 0)).collect(), 0);
                assert_eq!(queries.len(), 200);
            }
            let mut out = Out::new(outputs > 1);
            r.q.tick_at(r.at(1_000), &mut out);
            let batches: Vec<(usize, Batch)> = out.into_batches().collect();
            assert!(batches.iter().all(|(port, b)| *port < outputs && b.len() <= MAX_BATCH));
            assert_eq!(batches.iter().map(|(_, b)| b.len()).sum::<usize>(), 1000);
        }
    }

    /// In a running router the element is a task: with one packet
    /// waiting and nothing else arriving, it re-sends the query by itself;
    /// an `insert` then releases the packet.
    #[test]
    fn the_timer_runs_in_a_router() {
        let ip = ipv4_packet([192, 168, 1, 2], [10, 0, 0, 2], 17, 64, 8);
        let hex: String = ip.iter().map(|b| format!("{b:02x}")).collect();
        let config = format!(
            "InfiniteSource(DATA \\<{hex}>, LIMIT 1) -> CheckIPHeader \
             -> q :: ARPQuerier(10.0.0.1, 00:11:22:33:44:55) -> c :: Counter -> Discard; \
             Idle -> [1]q;"
        );
        let (graph, table) = switchyard_core::load_text("t.click", &config, &crate::standard(), &[]).unwrap();
        let router = switchyard_core::Router::start(graph, Arc::new(table));
        let h = router.handlers().clone();
        let wait = |what: &str, ok: &dyn Fn() -> bool| {
            let deadline = switchyard_core::clock::now() + Duration::from_secs(20);
            while !ok() {
                assert!(switchyard_core::clock::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let num = |name: &str| h.read(name).unwrap().parse::<u64>().unwrap();
        // `queries` counts a query before it reaches the Counter: the two
        // are read together until they agree, and only queries have left.
        wait("a retry; only queries left so far", &|| {
            let c = num("c.count");
            c >= 2 && c == num("q.queries")
        });
        assert_eq!(num("q.length"), 1);
        h.write("q.insert", "10.0.0.2 02:00:00:00:00:02").unwrap();
        wait("the release", &|| num("q.length") == 0);
        wait("the packet", &|| num("c.count") == num("q.queries") + 1);
        router.stop_and_wait();
    }

    proptest::proptest! {
        /// Whatever arrives on either input, nothing panics, the counts
        /// add up, and every IP packet that leaves is the packet that came
        /// in behind a 14-byte IPv4 Ethernet header.
        #[test]
        fn hostile_input_never_panics(
            ops in proptest::collection::vec(
                (proptest::prelude::any::<bool>(), 0u32..6, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0u64..3000),
                1..40),
        ) {
            let mut r = Rig::new("10.0.0.1/29, 00:11:22:33:44:55, CAPACITY 8, ENTRY_CAPACITY 4, TIMEOUT 2, POLL_TIMEOUT 1");
            let mut now = 0;
            let (mut sent_in, mut out) = (0usize, 0usize);
            for (arp, host, mut bytes, dt) in ops {
                now += dt;
                let hop = if host == 5 { u32::MAX } else { 0x0a000000 + host };
                let sent = if arp {
                    if bytes.len() >= 8 {
                        let f = reply_from([10, 0, 0, host as u8], [2, 0, 0, 0, 0, host as u8]);
                        bytes = [&f[..f.len().min(bytes.len())], &bytes[f.len().min(bytes.len())..]].concat();
                    }
                    r.arp(&[bytes], now)
                } else {
                    sent_in += 1;
                    let mut p = Packet::from_data(&bytes);
                    p.anno.dst_ip = hop;
                    r.push(0, vec![p], now)
                };
                let (frames, _, _) = r.tick(now + 1);
                for f in sent.0.iter().chain(&frames) {
                    proptest::prop_assert!(f.len() >= 14);
                    proptest::prop_assert_eq!(&f[6..14], &[0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x00][..]);
                    out += 1;
                }
                let t = r.q.shared.lock();
                check_waiters(&t);
                let waiting: usize = t.entries.values().map(|e| e.waiting.len()).sum();
                proptest::prop_assert_eq!(waiting, t.packets);
                proptest::prop_assert!(t.entries.len() <= 4 && t.packets <= 8);
                proptest::prop_assert_eq!(sent_in, out + t.packets + t.drops as usize);
            }
        }
    }
}
