//! What StaticIPLookup, LinearIPLookup, RadixIPLookup and DirectIPLookup
//! share (Click's IPRouteTable): the route syntax, the route set their
//! handlers edit, the lookup structures compiled from it, the batch loop,
//! and how a handler write reaches the data path.
//!
//! Routes enter as text (configuration arguments, handler writes) and are
//! validated into a [`RouteSet`]. Each accepted change compiles a new,
//! immutable lookup structure ([`Lookup`]) on the writer's thread and
//! publishes it behind an `Arc`; the data path keeps its own `Arc` and
//! compares a generation counter once per batch, taking a short lock only
//! when it changed. A lookup never locks or allocates.

use crate::standard::scatter::{self, Scatter};
use crate::util::parse_value;
use crate::wire::{parse_ip, prefix_mask, IpAddr, IpPrefix};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use switchyard_core::{Args, Batch, Context, Handler};

/// The route syntax, for error messages.
const SYNTAX: &str = "ADDR/MASK [GATEWAY] OUTPUT";

/// One route: packets whose destination is in `addr/len` leave on output
/// `port`, with their destination annotation replaced by `gw` unless it
/// is 0 (no gateway). `addr` has no bits beyond the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub addr: u32,
    pub len: u8,
    pub gw: u32,
    pub port: u32,
}

impl Route {
    pub fn mask(&self) -> u32 {
        prefix_mask(u32::from(self.len))
    }

    pub fn contains(&self, a: u32) -> bool {
        a & self.mask() == self.addr
    }

    fn prefix(&self) -> String {
        format!("{}/{}", IpAddr(self.addr), self.len)
    }

    /// The line the `table` handler prints, laid out as Click's: columns
    /// separated by a tab, and by a second one after a short column, so
    /// that the table lines up; `-` for no gateway. The route syntax reads
    /// it back, so a saved table is also a valid `table` write.
    pub fn table_line(&self) -> String {
        let mut s = self.prefix();
        s.push('\t');
        if s.len() < 17 {
            s.push('\t');
        }
        let gw_at = s.len();
        if self.gw == 0 {
            s.push('-');
        } else {
            s.push_str(&IpAddr(self.gw).to_string());
        }
        s.push('\t');
        if s.len() < gw_at + 9 {
            s.push('\t');
        }
        s.push_str(&self.port.to_string());
        s
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gw = if self.gw == 0 {
            "-".to_string()
        } else {
            IpAddr(self.gw).to_string()
        };
        write!(f, "{} {} {}", self.prefix(), gw, self.port)
    }
}

/// A route as written: the output may be absent (a `remove` request) or
/// negative (refused later, with the output range in the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Spec {
    addr: u32,
    len: u8,
    gw: u32,
    port: Option<i64>,
}

/// Parses `ADDR/MASK`, `ADDR/LEN`, a short `10/8`, or a bare address (a
/// /32), as Click's IPPrefixArg; bits beyond the prefix are cleared.
fn parse_prefix(word: &str) -> Result<(u32, u8), String> {
    if let Some(p) = IpPrefix::parse(word) {
        return Ok((p.addr & p.mask, p.len() as u8));
    }
    match word.split_once('/') {
        Some((_, m)) if m.contains('.') && parse_ip(m).is_some() => Err(format!("mask {m} is not contiguous")),
        Some((_, m)) if !m.is_empty() && m.bytes().all(|c| c.is_ascii_digit()) && m.len() <= 3 => {
            if m.parse::<u32>().is_ok_and(|l| l > 32) {
                Err(format!("prefix length {m} is over 32"))
            } else {
                Err(format!("bad address '{word}'"))
            }
        }
        Some((_, m)) => Err(format!("bad mask '{m}'")),
        None => Err(format!("bad address '{word}'")),
    }
}

/// Parses one route, Click's way: the gateway may be left out or written
/// `-`; with `remove`, the output may be left out too.
fn parse_spec(text: &str, remove: bool) -> Result<Spec, String> {
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return Err(format!("empty route (expected {SYNTAX})"));
    };
    let (addr, len) = parse_prefix(first)?;
    let mut gw = 0;
    let mut word = words.next();
    if let Some(w) = word {
        if w == "-" {
            word = words.next();
        } else if let Some(g) = parse_ip(w) {
            gw = g;
            word = words.next();
        }
    }
    let port = match word {
        None if remove => None,
        None => return Err(format!("missing OUTPUT (expected {SYNTAX})")),
        Some(w) => match w.parse::<i64>() {
            Ok(p) => Some(p),
            Err(_) if gw == 0 && w.contains('.') => return Err(format!("bad GATEWAY '{w}'")),
            Err(_) => return Err(format!("bad OUTPUT '{w}'")),
        },
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected '{extra}' after OUTPUT (expected {SYNTAX})"));
    }
    Ok(Spec { addr, len, gw, port })
}

/// Checks an output against the element's output count.
fn check_port(port: i64, noutputs: usize) -> Result<u32, String> {
    if port >= 0 && (port as u64) < noutputs as u64 {
        return Ok(port as u32);
    }
    Err(match noutputs {
        0 => format!("bad OUTPUT {port}: the element has no outputs"),
        n => format!("bad OUTPUT {port}: expected 0 to {}", n - 1),
    })
}

/// Parses a route to add, its output checked against `noutputs`.
pub fn parse_route(text: &str, noutputs: usize) -> Result<Route, String> {
    let s = parse_spec(text, false)?;
    let port = check_port(s.port.unwrap_or(-1), noutputs)?;
    Ok(Route {
        addr: s.addr,
        len: s.len,
        gw: s.gw,
        port,
    })
}

/// The refusal of a set of `n` routes over `max`.
fn check_count(n: usize, max: usize) -> Result<(), String> {
    if n > max {
        return Err(format!("too many routes: {n}, at most {max}"));
    }
    Ok(())
}

/// The routes of one element, in the order they were added: the order
/// `table` prints them in. At most one route per prefix.
///
/// An index by prefix makes each edit O(1), so that a `ctrl` write of
/// many lines costs what it says; a removal leaves a hole in the order,
/// closed once holes are half the slots (amortised O(1) as well).
#[derive(Clone, Debug, Default)]
pub struct RouteSet {
    /// The routes in the order added; None where one was removed.
    slots: Vec<Option<Route>>,
    /// Where each prefix's route is in `slots`.
    index: HashMap<(u32, u8), usize>,
}

impl PartialEq for RouteSet {
    fn eq(&self, other: &RouteSet) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for RouteSet {}

impl RouteSet {
    /// A set from routes given as a whole (configuration, `table` write):
    /// a prefix given twice is refused unless both say the same, which
    /// is harmless (make-ip-conf.pl repeats a /32 for a /32 interface).
    /// `names` says how errors name route `i` (argument or line number).
    pub fn from_routes(routes: &[Route], names: impl Fn(usize) -> String) -> Result<RouteSet, String> {
        let mut set = RouteSet::default();
        // The input position of each slot (a repeat takes none).
        let mut origin = Vec::with_capacity(routes.len());
        for (i, r) in routes.iter().enumerate() {
            match set.insert_new(*r) {
                Ok(true) => origin.push(i),
                Ok(false) => {}
                Err(slot) => {
                    let j = origin[slot];
                    return Err(format!(
                        "{}: route '{r}' conflicts with {} ('{}')",
                        names(i),
                        names(j),
                        routes[j]
                    ));
                }
            }
        }
        Ok(set)
    }

    /// Adds `route` to a set being built whole: Ok(true) if added,
    /// Ok(false) if the same route is there, or the slot of the route it
    /// conflicts with.
    fn insert_new(&mut self, route: Route) -> Result<bool, usize> {
        match self.index.get(&(route.addr, route.len)) {
            Some(&i) if self.slots[i] == Some(route) => Ok(false),
            Some(&i) => Err(i),
            None => {
                self.push(route);
                Ok(true)
            }
        }
    }

    fn push(&mut self, route: Route) {
        self.index.insert((route.addr, route.len), self.slots.len());
        self.slots.push(Some(route));
    }

    /// The number of routes.
    fn len(&self) -> usize {
        self.index.len()
    }

    /// The routes, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Route> + '_ {
        self.slots.iter().flatten()
    }

    /// The routes, in the order they were added, as the lookup
    /// structures take them.
    pub fn to_vec(&self) -> Vec<Route> {
        self.iter().copied().collect()
    }

    fn find(&self, addr: u32, len: u8) -> Option<(usize, Route)> {
        let &i = self.index.get(&(addr, len))?;
        self.slots[i].map(|r| (i, r))
    }

    /// Adds a route; with `replace`, a route for the same prefix is
    /// replaced where it stands, otherwise it is an error.
    pub fn add(&mut self, route: Route, replace: bool) -> Result<(), String> {
        match self.find(route.addr, route.len) {
            Some((i, _)) if replace => self.slots[i] = Some(route),
            Some((_, old)) => return Err(format!("conflict with existing route '{old}'")),
            None => self.push(route),
        }
        Ok(())
    }

    /// Removes the route for `addr/len`; with `exact`, only if its gateway
    /// and output are those.
    pub fn remove(&mut self, addr: u32, len: u8, exact: Option<(u32, u32)>) -> Result<Route, String> {
        let found = self.find(addr, len).filter(|(_, r)| match exact {
            Some((gw, port)) => r.gw == gw && r.port == port,
            None => true,
        });
        let Some((i, r)) = found else {
            let what = match exact {
                Some((gw, port)) => Route { addr, len, gw, port }.to_string(),
                None => format!("{}/{}", IpAddr(addr), len),
            };
            return Err(format!("route '{what}' not found"));
        };
        self.slots[i] = None;
        self.index.remove(&(addr, len));
        if self.slots.len() > 2 * self.index.len() + 16 {
            self.compact();
        }
        Ok(r)
    }

    /// Closes the holes removals left, keeping the order.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        for (i, r) in self.slots.iter().flatten().enumerate() {
            self.index.insert((r.addr, r.len), i);
        }
    }

    /// Longest-prefix match by looking at every route: the reference the
    /// compiled structures are tested against.
    pub fn lookup(&self, a: u32) -> Option<&Route> {
        self.iter().filter(|r| r.contains(a)).max_by_key(|r| r.len)
    }

    /// The `table` handler's text: one [`Route::table_line`] per route.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for r in self.iter() {
            s.push_str(&r.table_line());
            s.push('\n');
        }
        s
    }

    /// Applies one `add`, `set` or `remove` request.
    fn command(&mut self, verb: &str, text: &str, noutputs: usize) -> Result<(), String> {
        match verb {
            "add" | "set" => self.add(parse_route(text, noutputs)?, verb == "set"),
            "remove" => {
                let s = parse_spec(text, true)?;
                let exact = match s.port {
                    None | Some(-1) => None,
                    Some(p) => Some((s.gw, check_port(p, noutputs)?)),
                };
                self.remove(s.addr, s.len, exact).map(|_| ())
            }
            other => Err(format!("bad command '{other}' (expected add, set or remove)")),
        }
    }
}

/// Splits handler text into its items: lines (or comma-separated items,
/// so that a one-line `WRITE` can carry several), without `//` comments
/// and blank items; each with its 1-based line number.
fn items(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .flat_map(|(i, line)| {
            let line = line.split_once("//").map_or(line, |(l, _)| l);
            line.split(',').map(move |item| (i + 1, item.trim()))
        })
        .filter(|(_, item)| !item.is_empty())
}

/// Parses a whole table (a `table` write): the routes one per line, as
/// `table` prints them, or separated by commas. More than `max` distinct
/// routes is an error at the first one over, before the rest is read.
pub fn parse_table(text: &str, noutputs: usize, max: usize) -> Result<RouteSet, String> {
    let mut set = RouteSet::default();
    // The line of each slot.
    let mut lines = Vec::new();
    for (line, item) in items(text) {
        let r = parse_route(item, noutputs).map_err(|e| format!("line {line}: {e}"))?;
        match set.insert_new(r) {
            Ok(true) if set.len() > max => return Err(format!("line {line}: too many routes, at most {max}")),
            Ok(true) => lines.push(line),
            Ok(false) => {}
            Err(slot) => {
                let old = set.slots[slot].map_or_else(String::new, |o| o.to_string());
                return Err(format!(
                    "line {line}: route '{r}' conflicts with line {} ('{old}')",
                    lines[slot]
                ));
            }
        }
    }
    Ok(set)
}

/// A route's result: the output, and the gateway (0 for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NextHop {
    pub port: u32,
    pub gw: u32,
}

/// A lookup structure compiled from a route set; immutable once built.
pub trait Lookup: Send + Sync + Sized + 'static {
    /// The most routes the element takes, from its configuration and from
    /// every write: a bound on a lookup's cost (for a linear scan) and on
    /// the time and memory a write spends building the structure.
    const MAX_ROUTES: usize;

    /// Refuses route sets the structure cannot hold, without building it
    /// (cheap: run on every write and at configuration), beyond
    /// [`MAX_ROUTES`](Lookup::MAX_ROUTES), which [`admit`] checks first.
    fn check(routes: &[Route]) -> Result<(), String> {
        let _ = routes;
        Ok(())
    }

    /// Builds the structure; `routes` passed [`check`](Lookup::check).
    fn build(routes: &[Route]) -> Self;

    /// The longest-prefix match for `addr`.
    fn lookup(&self, addr: u32) -> Option<NextHop>;

    /// True if consecutive packets to one address should reuse the last
    /// answer (worth it only for a slow lookup).
    const CACHE_LAST: bool = false;
}

/// Whether structure `T` takes `routes`: the route count, then the
/// structure's own limits.
fn admit<T: Lookup>(routes: &[Route]) -> Result<(), String> {
    check_count(routes.len(), T::MAX_ROUTES)?;
    T::check(routes)
}

/// A linear scan, most specific routes first (LinearIPLookup's). Cost
/// grows with the table; for small tables only.
pub struct Linear {
    routes: Vec<Route>,
}

impl Lookup for Linear {
    /// A packet may be compared with every route: 4096 bounds that to a
    /// few microseconds, which is generous for the interface routes of
    /// make-ip-conf.pl; larger tables belong in RadixIPLookup.
    const MAX_ROUTES: usize = 4096;

    fn build(routes: &[Route]) -> Linear {
        let mut routes = routes.to_vec();
        routes.sort_by_key(|r| std::cmp::Reverse(r.len));
        Linear { routes }
    }

    fn lookup(&self, addr: u32) -> Option<NextHop> {
        self.routes
            .iter()
            .find(|r| r.contains(addr))
            .map(|r| NextHop { port: r.port, gw: r.gw })
    }

    const CACHE_LAST: bool = true;
}

/// A slot of a multibit trie: a next-hop index (0 for no route), or,
/// with the `PTR` bit set, the number of a chunk of the next level.
trait Slot: Copy + Send + Sync + 'static {
    const PTR: u32;
    fn pack(v: u32) -> Self;
    fn unpack(self) -> u32;
}

impl Slot for u16 {
    const PTR: u32 = 0x8000;
    fn pack(v: u32) -> u16 {
        v as u16
    }
    fn unpack(self) -> u32 {
        u32::from(self)
    }
}

impl Slot for u32 {
    const PTR: u32 = 0x8000_0000;
    fn pack(v: u32) -> u32 {
        v
    }
    fn unpack(self) -> u32 {
        self
    }
}

/// Next hops by index; index 0 means no route.
fn next_hop_index(routes: &[Route]) -> (Vec<NextHop>, HashMap<NextHop, u32>) {
    let mut hops = vec![NextHop { port: u32::MAX, gw: 0 }];
    let mut index = HashMap::new();
    for r in routes {
        let h = NextHop { port: r.port, gw: r.gw };
        index.entry(h).or_insert_with(|| {
            hops.push(h);
            hops.len() as u32 - 1
        });
    }
    (hops, index)
}

/// Builds a multibit trie with the given strides (summing to 32) by
/// controlled prefix expansion: routes go in from the shortest prefix to
/// the longest, so each fills its range over what less specific routes
/// left, and a new chunk starts as a copy of the slot it hangs from. The
/// caller has checked that next hops and chunks fit in a slot.
fn expand<S: Slot>(routes: &[Route], strides: &[u32], index: &HashMap<NextHop, u32>) -> Vec<Vec<S>> {
    let mut levels: Vec<Vec<S>> = strides.iter().map(|_| Vec::new()).collect();
    levels[0] = vec![S::pack(0); 1 << strides[0]];
    let mut order: Vec<&Route> = routes.iter().collect();
    order.sort_by_key(|r| r.len);
    for r in order {
        let h = index[&NextHop { port: r.port, gw: r.gw }];
        let len = u32::from(r.len);
        let (mut level, mut base, mut consumed) = (0usize, 0usize, 0u32);
        loop {
            let stride = strides[level];
            let end = consumed + stride;
            let idx = ((r.addr << consumed) >> (32 - stride)) as usize;
            if len <= end {
                let span = 1usize << (end - len);
                let start = base + (idx & !(span - 1));
                levels[level][start..start + span].fill(S::pack(h));
                break;
            }
            let slot = base + idx;
            let e = levels[level][slot].unpack();
            let next = strides[level + 1];
            let chunk = if e & S::PTR != 0 {
                e & !S::PTR
            } else {
                let below = &mut levels[level + 1];
                let c = (below.len() >> next) as u32;
                below.resize(below.len() + (1 << next), S::pack(e));
                levels[level][slot] = S::pack(S::PTR | c);
                c
            };
            base = (chunk as usize) << next;
            consumed = end;
            level += 1;
        }
    }
    levels
}

/// Distinct `bits`-bit prefixes among routes longer than `bits`: the
/// chunks a level below `bits` needs.
fn chunks_below(routes: &[Route], bits: u32) -> usize {
    let mut v: Vec<u32> = routes
        .iter()
        .filter(|r| u32::from(r.len) > bits)
        .map(|r| r.addr >> (32 - bits))
        .collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// RadixIPLookup's structure: a 16-8-8 multibit trie. A 2^16-slot first
/// level (256 KiB) covers the routes up to /16; a route longer than that
/// hangs a 256-slot chunk (1 KiB) under its /16, and one longer than /24 a
/// further chunk under its /24. A lookup is one to three dependent loads,
/// and a table of a thousand routes stays within the CPU caches.
pub struct Stride16x8x8 {
    l0: Vec<u32>,
    l1: Vec<u32>,
    l2: Vec<u32>,
    hops: Vec<NextHop>,
}

/// Chunks the 16-8-8 trie allows under /24s: 65536 chunks of 256 4-byte
/// slots, 64 MiB, a bound on memory and build time for tables of host
/// routes spread over many /24s. (The middle level needs no such bound:
/// there are only 65536 /16s, so it too stays within 64 MiB.) A write
/// builds the new trie while the data path may still hold the old one,
/// so the peak is twice that.
const MAX_L2_CHUNKS: usize = 1 << 16;

/// The most routes RadixIPLookup and DirectIPLookup take: a full
/// Internet table is about a million routes, and a write builds from the
/// whole set (tens of MiB for the set, on the writer's thread).
const MAX_BIG_TABLE_ROUTES: usize = 1_000_000;

impl Lookup for Stride16x8x8 {
    const MAX_ROUTES: usize = MAX_BIG_TABLE_ROUTES;

    fn check(routes: &[Route]) -> Result<(), String> {
        let n = chunks_below(routes, 24);
        if n > MAX_L2_CHUNKS {
            return Err(format!(
                "too many /24 networks hold longer routes: {n}, at most {MAX_L2_CHUNKS}"
            ));
        }
        Ok(())
    }

    fn build(routes: &[Route]) -> Stride16x8x8 {
        let (hops, index) = next_hop_index(routes);
        let mut levels = expand::<u32>(routes, &[16, 8, 8], &index).into_iter();
        let (l0, l1, l2) = (
            levels.next().unwrap_or_default(),
            levels.next().unwrap_or_default(),
            levels.next().unwrap_or_default(),
        );
        Stride16x8x8 { l0, l1, l2, hops }
    }

    #[inline]
    fn lookup(&self, a: u32) -> Option<NextHop> {
        const PTR: u32 = <u32 as Slot>::PTR;
        let mut e = self.l0[(a >> 16) as usize];
        if e & PTR != 0 {
            e = self.l1[(((e & !PTR) as usize) << 8) | ((a >> 8) & 0xff) as usize];
            if e & PTR != 0 {
                e = self.l2[(((e & !PTR) as usize) << 8) | (a & 0xff) as usize];
            }
        }
        (e != 0).then(|| self.hops[e as usize])
    }
}

/// DirectIPLookup's structure: DIR-24-8-BASIC (Gupta, Lin and McKeown),
/// as Click's. A 2^24-slot first level of 16-bit entries (32 MiB of
/// address space, zero-filled by the OS on first touch, so pages no route
/// covers cost nothing) and 256-slot chunks for /24s with longer routes.
/// A lookup is one or two loads. As in Click, at most 32767 distinct next
/// hops and 32768 such /24s.
pub struct Dir24x8 {
    l0: Vec<u16>,
    l1: Vec<u16>,
    hops: Vec<NextHop>,
}

impl Lookup for Dir24x8 {
    const MAX_ROUTES: usize = MAX_BIG_TABLE_ROUTES;

    fn check(routes: &[Route]) -> Result<(), String> {
        let (hops, _) = next_hop_index(routes);
        let max = <u16 as Slot>::PTR as usize;
        if hops.len() > max {
            return Err(format!(
                "too many distinct gateway and output pairs: {}, at most {}",
                hops.len() - 1,
                max - 1
            ));
        }
        let n = chunks_below(routes, 24);
        if n > max {
            return Err(format!("too many /24 networks hold longer routes: {n}, at most {max}"));
        }
        Ok(())
    }

    fn build(routes: &[Route]) -> Dir24x8 {
        let (hops, index) = next_hop_index(routes);
        let mut levels = expand::<u16>(routes, &[24, 8], &index).into_iter();
        let (l0, l1) = (levels.next().unwrap_or_default(), levels.next().unwrap_or_default());
        Dir24x8 { l0, l1, hops }
    }

    #[inline]
    fn lookup(&self, a: u32) -> Option<NextHop> {
        let mut e = self.l0[(a >> 8) as usize];
        if e & 0x8000 != 0 {
            e = self.l1[((usize::from(e) & 0x7fff) << 8) | (a & 0xff) as usize];
        }
        (e != 0).then(|| self.hops[usize::from(e)])
    }
}

/// What writers edit, under one lock: writes are serialised, and each
/// builds from the last accepted set.
struct Edit<T> {
    routes: RouteSet,
    /// The element's outputs; unlimited until `initialize` says.
    noutputs: usize,
    /// Tables replaced but perhaps still held by the data path: dropped
    /// here, by a writer, once nobody else holds them, so that the data
    /// path never frees a large table.
    retired: Vec<Arc<T>>,
}

/// A route table shared by an element's data path and its handlers.
pub struct Shared<T: Lookup> {
    edit: Mutex<Edit<T>>,
    /// The compiled table the data path should use; None until the first
    /// need (a DirectIPLookup checked by `switchyard check` never builds).
    live: Mutex<Option<Arc<T>>>,
    /// Bumped after each publication; the data path reads it per batch.
    generation: AtomicU64,
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    // A panicking writer leaves consistent data (it only swaps whole
    // values), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Lookup> Shared<T> {
    fn new(routes: RouteSet) -> Shared<T> {
        Shared {
            edit: Mutex::new(Edit {
                routes,
                noutputs: usize::MAX,
                retired: Vec::new(),
            }),
            live: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// The accepted routes.
    pub fn routes(&self) -> RouteSet {
        lock(&self.edit).routes.clone()
    }

    /// The compiled table, built now if nothing built it yet.
    pub fn current(&self) -> Arc<T> {
        if let Some(t) = lock(&self.live).as_ref() {
            return t.clone();
        }
        let edit = lock(&self.edit);
        let mut live = lock(&self.live);
        live.get_or_insert_with(|| Arc::new(T::build(&edit.routes.to_vec())))
            .clone()
    }

    /// Applies `change` to a copy of the routes and, if it and the
    /// structure accept the result, publishes it: all or nothing.
    pub fn edit(&self, change: impl FnOnce(&mut RouteSet, usize) -> Result<(), String>) -> Result<(), String> {
        let mut edit = lock(&self.edit);
        let mut next = edit.routes.clone();
        change(&mut next, edit.noutputs)?;
        let list = next.to_vec();
        admit::<T>(&list)?;
        // Tables the data path has let go of go before the new one is
        // built, not after: the peak is the live table and the new one.
        edit.retired.retain(|t| Arc::strong_count(t) > 1);
        // Built before the switch, outside the data path's lock; not at
        // all before the first need.
        let active = lock(&self.live).is_some();
        let built = active.then(|| Arc::new(T::build(&list)));
        drop(list);
        edit.routes = next;
        let old = std::mem::replace(&mut *lock(&self.live), built);
        edit.retired.extend(old);
        edit.retired.retain(|t| Arc::strong_count(t) > 1);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Takes over another table's routes and compiled structure (a reload).
    fn adopt(&self, other: &Shared<T>) {
        let routes = other.routes();
        let compiled = lock(&other.live).clone();
        let mut edit = lock(&self.edit);
        edit.routes = routes;
        let old = std::mem::replace(&mut *lock(&self.live), compiled);
        edit.retired.extend(old);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// What the data path would do with `addr`.
    pub fn lookup(&self, addr: u32) -> Option<NextHop> {
        let live = lock(&self.live).clone();
        if let Some(t) = live {
            return t.lookup(addr);
        }
        lock(&self.edit)
            .routes
            .lookup(addr)
            .map(|r| NextHop { port: r.port, gw: r.gw })
    }
}

/// The part of every route lookup element that does the work: the shared
/// table, the data path's view of it, and batch scratch.
pub struct RouteCore<T: Lookup> {
    class: &'static str,
    shared: Arc<Shared<T>>,
    /// The configured routes with their argument numbers (1-based).
    configured: Vec<(usize, Route)>,
    table: Option<Arc<T>>,
    seen: u64,
    scatter: Scatter,
    complaints: u32,
}

impl<T: Lookup> RouteCore<T> {
    /// Reads the routes, one per positional argument. Outputs are checked
    /// in [`initialize`](Self::initialize), once the output count is known.
    pub fn configure(class: &'static str, args: &mut Args) -> Option<RouteCore<T>> {
        let mut configured = Vec::new();
        for (i, (text, span)) in args.rest_positional().into_iter().enumerate() {
            match parse_spec(&text, false) {
                Ok(s) => match s.port.and_then(|p| u32::try_from(p).ok()) {
                    Some(port) => configured.push((
                        i + 1,
                        Route {
                            addr: s.addr,
                            len: s.len,
                            gw: s.gw,
                            port,
                        },
                    )),
                    None => args.error(
                        Some(span),
                        format!("argument {} '{text}': bad OUTPUT: outputs are numbered from 0", i + 1),
                    ),
                },
                Err(e) => args.error(Some(span), format!("argument {} '{text}': {e}", i + 1)),
            }
        }
        if args.has_errors() {
            return None;
        }
        let routes: Vec<Route> = configured.iter().map(|&(_, r)| r).collect();
        let set = RouteSet::from_routes(&routes, |i| format!("argument {}", configured[i].0))
            .and_then(|set| admit::<T>(&set.to_vec()).map(|()| set));
        match set {
            Ok(set) => Some(RouteCore {
                class,
                shared: Arc::new(Shared::new(set)),
                configured,
                table: None,
                seen: u64::MAX,
                scatter: Scatter::new(),
                complaints: 0,
            }),
            Err(e) => {
                args.error(None, e);
                None
            }
        }
    }

    /// Checks every configured route's output against the element's
    /// outputs, and bounds later writes by them.
    pub fn initialize(&mut self, noutputs: usize) -> Result<(), String> {
        for &(arg, r) in &self.configured {
            check_port(i64::from(r.port), noutputs).map_err(|e| format!("argument {arg} '{r}': {e}"))?;
        }
        lock(&self.shared.edit).noutputs = noutputs;
        Ok(())
    }

    /// Builds the table before traffic, off the data path.
    pub fn activate(&mut self) {
        self.shared.current();
    }

    /// Hot reload: when the configuration gives the same routes as the
    /// one being replaced, the running table (with its handler changes)
    /// carries over, if its outputs still exist; a configuration with
    /// other routes is a new table, and wins.
    pub fn take_state(&mut self, old: &RouteCore<T>) {
        let same = self
            .configured
            .iter()
            .map(|c| c.1)
            .eq(old.configured.iter().map(|c| c.1));
        let noutputs = lock(&self.shared.edit).noutputs;
        let fits = old.shared.routes().iter().all(|r| (r.port as usize) < noutputs);
        if same && fits {
            self.shared.adopt(&old.shared);
        }
    }

    /// Routes a batch: each packet goes to its route's output with its
    /// destination annotation replaced by the route's gateway, if any; a
    /// packet without a route is dropped. A batch that goes to one output
    /// whole is passed on as it is.
    pub fn push(&mut self, batch: Batch, cx: &mut Context<'_>) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen || self.table.is_none() {
            self.seen = g;
            self.table = Some(self.shared.current());
        }
        let Some(table) = self.table.as_deref() else {
            return;
        };
        let n = cx.noutputs();
        let (class, complaints) = (self.class, &mut self.complaints);
        let mut last: Option<(u32, Option<NextHop>)> = None;
        self.scatter.send(batch, cx, |p| {
            let a = p.anno.dst_ip;
            let hop = match last {
                Some((la, h)) if T::CACHE_LAST && la == a => h,
                _ => {
                    let h = table.lookup(a);
                    if T::CACHE_LAST {
                        last = Some((a, h));
                    }
                    h
                }
            };
            match hop {
                Some(h) if (h.port as usize) < n => {
                    if h.gw != 0 {
                        p.anno.dst_ip = h.gw;
                    }
                    h.port as usize
                }
                _ => {
                    // The first few packets without a route are logged,
                    // as Click does.
                    if *complaints < 5 {
                        *complaints += 1;
                        tracing::warn!(class, dst = %IpAddr(a), "no route");
                    }
                    scatter::DROP
                }
            }
        });
    }

    /// The handlers: `table` (read/write, persistent) and `lookup`; `add`,
    /// `set`, `remove` and `ctrl` edit the table; with `flush`, `flush`
    /// empties it.
    pub fn handlers(&self, flush: bool) -> Vec<Handler> {
        let s = self.shared.clone();
        let dump = move || s.routes().dump();
        let s = self.shared.clone();
        let lookup = Handler::read_with_param("lookup", move |param| {
            let a = parse_value::<IpAddr>(param)?.0;
            Ok(match s.lookup(a) {
                Some(h) if h.gw != 0 => format!("{} {}", h.port, IpAddr(h.gw)),
                Some(h) => h.port.to_string(),
                None => "-1".to_string(),
            })
        })
        .merged(switchyard_core::Merge::Same);
        let s = self.shared.clone();
        let table = Handler::read_write("table", dump, move |text| {
            s.edit(|routes, n| {
                *routes = parse_table(text, n, T::MAX_ROUTES)?;
                Ok(())
            })
        })
        .persistent()
        .checked({
            let s = self.shared.clone();
            move |text| {
                let n = lock(&s.edit).noutputs;
                let routes = parse_table(text, n, T::MAX_ROUTES)?;
                admit::<T>(&routes.to_vec())
            }
        });
        let command = |verb: &'static str| {
            let s = self.shared.clone();
            Handler::write_only(verb, move |text| {
                s.edit(|routes, n| routes.command(verb, text.trim(), n))
            })
            .persists_as("table")
        };
        let s = self.shared.clone();
        let ctrl = Handler::write_only("ctrl", move |text| {
            s.edit(|routes, n| {
                for (line, item) in items(text) {
                    let (verb, rest) = item.split_once(char::is_whitespace).unwrap_or((item, ""));
                    // Counted as it goes: a write far over the limit
                    // stops at the first route over.
                    routes
                        .command(verb, rest.trim(), n)
                        .and_then(|()| check_count(routes.len(), T::MAX_ROUTES))
                        .map_err(|e| format!("line {line}: {e}"))?;
                }
                Ok(())
            })
        })
        .persists_as("table");
        let mut hs = vec![table, lookup, command("add"), command("set"), command("remove"), ctrl];
        if flush {
            let s = self.shared.clone();
            hs.push(
                Handler::write_only("flush", move |_| {
                    s.edit(|routes, _| {
                        *routes = RouteSet::default();
                        Ok(())
                    })
                })
                .persists_as("table"),
            );
        }
        hs
    }
}

/// The class, factory and [`Element`](switchyard_core::Element) impl of a
/// route lookup element: a struct `{ core: RouteCore<_> }` whose four
/// classes differ only in their lookup structure, their doc, and whether
/// they have Click's `flush`.
macro_rules! route_element {
    ($ty:ident, flush: $flush:expr) => {
        impl $ty {
            pub const CLASS: switchyard_core::ElementClass = switchyard_core::ElementClass {
                name: stringify!($ty),
                ports: "1/-",
                processing: "h/h",
                doc: $ty::DOC,
                factory: $ty::make,
            };

            fn make(args: &mut switchyard_core::Args) -> Option<Box<dyn switchyard_core::Element>> {
                let core = $crate::ip::route_table::RouteCore::configure(stringify!($ty), args)?;
                Some(Box::new($ty { core }))
            }
        }

        impl switchyard_core::Element for $ty {
            fn initialize(&mut self, ports: &switchyard_core::PortInfo) -> Result<bool, String> {
                self.core.initialize(ports.outputs.len())?;
                Ok(false)
            }

            fn activate(&mut self) -> Result<(), String> {
                self.core.activate();
                Ok(())
            }

            fn take_state(&mut self, old: Box<dyn switchyard_core::Element>) {
                if let Some(old) = switchyard_core::downcast::<$ty>(old) {
                    self.core.take_state(&old.core);
                }
            }

            fn push(&mut self, _port: usize, batch: switchyard_core::Batch, cx: &mut switchyard_core::Context<'_>) {
                self.core.push(batch, cx);
            }

            fn handlers(&self) -> Vec<switchyard_core::Handler> {
                self.core.handlers($flush)
            }
        }
    };
}
pub(crate) use route_element;

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::testutil::{handler, make, read, read_param, write};
    use crate::wire::tests::ipv4_packet;
    use proptest::prelude::*;
    use switchyard_core::{ElementClass, Harness, Packet, PortInfo, Processing};

    /// The configuration errors of `config` (including `initialize`'s).
    pub fn config_error(class: ElementClass, config: &str, outputs: usize) -> String {
        let mut args = Args::parse_str(&format!("rt :: {}", class.name), config);
        let e = (class.factory)(&mut args);
        if let Err(errs) = args.complete() {
            return errs[0].message.clone();
        }
        let mut e = e.expect("configured");
        e.initialize(&PortInfo {
            inputs: vec![Processing::Push],
            outputs: vec![Processing::Push; outputs],
        })
        .expect_err("expected an error")
    }

    /// A batch of UDP packets to `dsts`, their destination annotation set
    /// as GetIPAddress sets it.
    pub fn dst_batch(dsts: &[[u8; 4]]) -> Batch {
        let mut b = Batch::new();
        for d in dsts {
            let mut p = Packet::from_data(&ipv4_packet([192, 168, 0, 1], *d, 17, 64, 8));
            p.anno.dst_ip = u32::from_be_bytes(*d);
            b.push(p);
        }
        b
    }

    fn routes(text: &str) -> RouteSet {
        parse_table(text, 16, 4096).unwrap()
    }

    const RADIX: ElementClass = crate::ip::radix_ip_lookup::RadixIPLookup::CLASS;
    const LINEAR: ElementClass = crate::ip::linear_ip_lookup::LinearIPLookup::CLASS;

    #[test]
    fn route_syntax_as_click() {
        let r = |t| parse_route(t, 4);
        let route = |addr, len, gw, port| Route { addr, len, gw, port };
        assert_eq!(r("10.0.0.0/8 1"), Ok(route(0x0a00_0000, 8, 0, 1)));
        assert_eq!(
            r("10.0.0.0/255.0.0.0 10.0.0.1 3"),
            Ok(route(0x0a00_0000, 8, 0x0a00_0001, 3))
        );
        assert_eq!(r("10/8 - 1"), Ok(route(0x0a00_0000, 8, 0, 1)));
        assert_eq!(r("18.26.4/24 1"), Ok(route(0x121a_0400, 24, 0, 1)));
        assert_eq!(r("10.1.2.3 2"), Ok(route(0x0a01_0203, 32, 0, 2)));
        assert_eq!(r("10.1.2.3/8 0"), Ok(route(0x0a00_0000, 8, 0, 0)));
        assert_eq!(r("0.0.0.0/0 0.0.0.0 0"), Ok(route(0, 0, 0, 0)));
        assert_eq!(r("  0/0\t1.2.3.4   2 "), Ok(route(0, 0, 0x0102_0304, 2)));
    }

    #[test]
    fn route_syntax_errors_say_what_is_wrong() {
        let r = |t| parse_route(t, 2).unwrap_err();
        assert_eq!(r("300.0.0.0/8 1"), "bad address '300.0.0.0/8'");
        assert_eq!(r("10.0.0.0/255.0.255.0 1"), "mask 255.0.255.0 is not contiguous");
        assert_eq!(r("10.0.0.0/33 1"), "prefix length 33 is over 32");
        assert_eq!(r("10.0.0.0/x 1"), "bad mask 'x'");
        assert_eq!(r("10.0.0.0/8"), "missing OUTPUT (expected ADDR/MASK [GATEWAY] OUTPUT)");
        assert_eq!(
            r("10.0.0.0/8 10.0.0.1"),
            "missing OUTPUT (expected ADDR/MASK [GATEWAY] OUTPUT)"
        );
        assert_eq!(r("10.0.0.0/8 10.0.0.300 1"), "bad GATEWAY '10.0.0.300'");
        assert_eq!(r("10.0.0.0/8 foo"), "bad OUTPUT 'foo'");
        assert_eq!(
            r("10.0.0.0/8 1 2"),
            "unexpected '2' after OUTPUT (expected ADDR/MASK [GATEWAY] OUTPUT)"
        );
        assert_eq!(r("10.0.0.0/8 2"), "bad OUTPUT 2: expected 0 to 1");
        assert_eq!(r("10.0.0.0/8 -1"), "bad OUTPUT -1: expected 0 to 1");
        assert_eq!(
            parse_route("0/0 0", 0).unwrap_err(),
            "bad OUTPUT 0: the element has no outputs"
        );
        assert_eq!(r(""), "empty route (expected ADDR/MASK [GATEWAY] OUTPUT)");
    }

    #[test]
    fn table_lines_line_up_as_clicks_and_read_back() {
        let set = routes("18.26.4.0/24 1\n0/0 18.26.4.1 1\n255.255.255.255/32 0\n10.0.0.1/32 10.0.0.254 12");
        let dump = set.dump();
        assert_eq!(
            dump,
            "18.26.4.0/24\t\t-\t\t1\n\
             0.0.0.0/0\t\t18.26.4.1\t1\n\
             255.255.255.255/32\t-\t\t0\n\
             10.0.0.1/32\t\t10.0.0.254\t12\n"
        );
        assert_eq!(parse_table(&dump, 16, 4096).unwrap(), set);
        assert_eq!(parse_table("", 4, 4096).unwrap(), RouteSet::default());
    }

    #[test]
    fn table_text_takes_commas_comments_and_refuses_conflicts() {
        let set = routes("10/8 1, 11/8 2 // two nets\n\n// nothing\n0/0 0");
        assert_eq!(set.len(), 3);
        assert_eq!(
            parse_table("10/8 1\n11/8 2\n10.0.0.0/8 2", 4, 4096).unwrap_err(),
            "line 3: route '10.0.0.0/8 - 2' conflicts with line 1 ('10.0.0.0/8 - 1')"
        );
        assert_eq!(parse_table("10/8 1\n10.0.0.0/8 1", 4, 4096).unwrap().len(), 1);
        assert_eq!(
            parse_table("10/8 1\nfoo", 4, 4096).unwrap_err(),
            "line 2: bad address 'foo'"
        );
    }

    #[test]
    fn route_set_add_set_remove() {
        let mut s = routes("10/8 1, 11/8 2");
        let r = parse_route("10/8 3", 4).unwrap();
        assert_eq!(
            s.add(r, false).unwrap_err(),
            "conflict with existing route '10.0.0.0/8 - 1'"
        );
        s.add(r, true).unwrap();
        assert_eq!(s.to_vec()[0], r, "set replaces where the route stands");
        assert_eq!(
            s.remove(0x0b00_0000, 8, Some((0, 1))).unwrap_err(),
            "route '11.0.0.0/8 - 1' not found"
        );
        s.remove(0x0b00_0000, 8, Some((0, 2))).unwrap();
        assert_eq!(
            s.remove(0x0b00_0000, 8, None).unwrap_err(),
            "route '11.0.0.0/8' not found"
        );
        assert_eq!(s.to_vec(), [r]);
    }

    #[test]
    fn longest_prefix_default_and_host_routes() {
        let s = routes("0/0 9.9.9.9 0, 10/8 1, 10.1/16 2, 10.1.2/24 3, 10.1.2.3/32 10.1.2.254 4, 10.1.2.3/31 5");
        let all = |a: u32| {
            let reference = s.lookup(a).map(|r| NextHop { port: r.port, gw: r.gw });
            let answers = [
                Linear::build(&s.to_vec()).lookup(a),
                Stride16x8x8::build(&s.to_vec()).lookup(a),
                Dir24x8::build(&s.to_vec()).lookup(a),
            ];
            assert!(
                answers.iter().all(|x| *x == reference),
                "{a:08x}: {answers:?} vs {reference:?}"
            );
            reference
        };
        assert_eq!(
            all(0x0a01_0203),
            Some(NextHop {
                port: 4,
                gw: 0x0a01_02fe
            })
        );
        assert_eq!(all(0x0a01_0202), Some(NextHop { port: 5, gw: 0 }));
        assert_eq!(all(0x0a01_0201), Some(NextHop { port: 3, gw: 0 }));
        assert_eq!(all(0x0a01_0301), Some(NextHop { port: 2, gw: 0 }));
        assert_eq!(all(0x0a02_0000), Some(NextHop { port: 1, gw: 0 }));
        assert_eq!(
            all(0x0b00_0000),
            Some(NextHop {
                port: 0,
                gw: 0x0909_0909
            })
        );
        assert_eq!(
            all(u32::MAX),
            Some(NextHop {
                port: 0,
                gw: 0x0909_0909
            })
        );
        let empty = RouteSet::default();
        assert_eq!(Stride16x8x8::build(&empty.to_vec()).lookup(1), None);
        assert_eq!(Linear::build(&empty.to_vec()).lookup(1), None);
    }

    /// Routes that nest and overlap: prefixes of a few base addresses.
    fn arb_routes() -> impl Strategy<Value = Vec<Route>> {
        let base = prop_oneof![Just(0x0a00_0000u32), Just(0x0a01_0200), Just(0xc0a8_0000), any::<u32>()];
        let len = prop_oneof![0u8..=32, 8u8..=32, 20u8..=32];
        prop::collection::vec((base, any::<u32>(), len, 0u32..4, 0u32..3), 0..48).prop_map(|v| {
            let rs: Vec<Route> = v
                .into_iter()
                .map(|(base, noise, len, port, gw)| {
                    // Mostly the base, with a few low bits of noise below the
                    // prefix so that siblings and nested prefixes appear.
                    let addr = (base ^ (noise & 0x0000_0f0f)) & prefix_mask(u32::from(len));
                    Route {
                        addr,
                        len,
                        gw: gw * 0x0101_0101,
                        port,
                    }
                })
                .collect();
            // One route per prefix, the first given.
            let mut seen = std::collections::HashSet::new();
            rs.into_iter().filter(|r| seen.insert((r.addr, r.len))).collect()
        })
    }

    fn probes(routes: &[Route], extra: &[u32]) -> Vec<u32> {
        let mut v: Vec<u32> = extra.to_vec();
        for r in routes {
            v.push(r.addr);
            v.push(r.addr | !r.mask());
            v.push(r.addr.wrapping_sub(1));
            v.push(r.addr | (!r.mask() & 0x5a5a_5a5a));
        }
        v
    }

    fn reference(set: &RouteSet, a: u32) -> Option<NextHop> {
        set.lookup(a).map(|r| NextHop { port: r.port, gw: r.gw })
    }

    proptest! {
        #[test]
        fn linear_and_16_8_8_match_the_naive_lookup(rs in arb_routes(), extra in prop::collection::vec(any::<u32>(), 32)) {
            let set = RouteSet::from_routes(&rs, |i| i.to_string()).unwrap();
            let linear = Linear::build(&set.to_vec());
            let trie = Stride16x8x8::build(&set.to_vec());
            for a in probes(&rs, &extra) {
                let want = reference(&set, a);
                prop_assert_eq!(linear.lookup(a), want, "linear {:08x}", a);
                prop_assert_eq!(trie.lookup(a), want, "16-8-8 {:08x}", a);
            }
        }
    }

    proptest! {
        // Each case builds a 32 MiB first level: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn dir_24_8_matches_the_naive_lookup(rs in arb_routes(), extra in prop::collection::vec(any::<u32>(), 32)) {
            let set = RouteSet::from_routes(&rs, |i| i.to_string()).unwrap();
            prop_assert!(Dir24x8::check(&set.to_vec()).is_ok());
            let dir = Dir24x8::build(&set.to_vec());
            for a in probes(&rs, &extra) {
                prop_assert_eq!(dir.lookup(a), reference(&set, a), "DIR-24-8 {:08x}", a);
            }
        }
    }

    proptest! {
        /// The index by prefix agrees with the order kept: whatever the
        /// edits, the set is what a plain list edited by searching says,
        /// holes and their closing included.
        #[test]
        fn route_set_edits_match_a_plain_list(ops in prop::collection::vec((0u8..3, 0u32..24, 0u32..3), 0..300)) {
            let mut set = RouteSet::default();
            let mut model: Vec<Route> = Vec::new();
            for (verb, which, port) in ops {
                let route = Route { addr: (which % 8) << 24, len: 8 + (which / 8) as u8, gw: 0, port };
                let at = model.iter().position(|r| (r.addr, r.len) == (route.addr, route.len));
                match verb {
                    0 | 1 => {
                        let replace = verb == 1;
                        prop_assert_eq!(set.add(route, replace).is_ok(), at.is_none() || replace);
                        match at {
                            Some(i) if replace => model[i] = route,
                            Some(_) => {}
                            None => model.push(route),
                        }
                    }
                    _ => {
                        let removed = set.remove(route.addr, route.len, None);
                        prop_assert_eq!(removed.ok(), at.map(|i| model.remove(i)));
                    }
                }
                prop_assert_eq!(set.to_vec(), model.clone());
                prop_assert_eq!(set.len(), model.len());
                for r in &model {
                    prop_assert_eq!(set.find(r.addr, r.len).map(|(_, x)| x), Some(*r));
                }
                prop_assert!(set.slots.len() <= 2 * set.len() + 17, "holes are closed");
            }
        }
    }

    #[test]
    fn a_ctrl_of_many_lines_keeps_order_and_applies_each_once() {
        let (_e, hs) = make(RADIX, "", 2);
        let host = |i: u32| format!("{}", IpAddr(0x0a00_0000 + i));
        let adds: String = (0..20_000).map(|i| format!("add {} {}\n", host(i), i % 2)).collect();
        write(&hs, "ctrl", &adds).unwrap();
        // Removing from the front of the order, where a shifting list
        // moves everything behind.
        let removes: String = (0..15_000).map(|i| format!("remove {}\n", host(i))).collect();
        write(&hs, "ctrl", &removes).unwrap();
        write(&hs, "set", &format!("{} 0", host(19_999))).unwrap();
        let table = read(&hs, "table");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5_000);
        assert_eq!(lines[0], "10.0.58.152/32\t\t-\t\t0");
        assert_eq!(lines[4_999], "10.0.78.31/32\t\t-\t\t0", "set keeps the place");
        assert_eq!(read_param(&hs, "lookup", "10.0.78.30").unwrap(), "0");
        assert_eq!(read_param(&hs, "lookup", "10.0.78.29").unwrap(), "1");
        assert_eq!(read_param(&hs, "lookup", "10.0.0.1").unwrap(), "-1");
    }

    /// Linear with a limit of three routes, to try every way in.
    struct Tiny(Linear);

    impl Lookup for Tiny {
        const MAX_ROUTES: usize = 3;

        fn build(routes: &[Route]) -> Tiny {
            Tiny(Linear::build(routes))
        }

        fn lookup(&self, addr: u32) -> Option<NextHop> {
            self.0.lookup(addr)
        }
    }

    fn tiny(config: &str) -> Result<Vec<Handler>, String> {
        let mut args = Args::parse_str("rt :: Tiny", config);
        let core = RouteCore::<Tiny>::configure("Tiny", &mut args);
        if let Err(errs) = args.complete() {
            return Err(errs[0].message.clone());
        }
        let mut core = core.expect("configured");
        core.initialize(2)?;
        Ok(core.handlers(true))
    }

    #[test]
    fn the_route_limit_holds_on_every_way_in() {
        assert_eq!(
            tiny("1/8 0, 2/8 0, 3/8 0, 4/8 0").unwrap_err(),
            "'rt :: Tiny': too many routes: 4, at most 3"
        );
        // A repeat is one route.
        let hs = tiny("1/8 0, 2/8 0, 3/8 0, 3/8 0").unwrap();
        assert_eq!(write(&hs, "add", "4/8 1").unwrap_err(), "too many routes: 4, at most 3");
        write(&hs, "set", "3/8 1").unwrap();
        assert_eq!(
            write(&hs, "table", "1/8 0\n2/8 0\n1/8 0\n3/8 0\n4/8 0\n5/8 0\n6/8 bad").unwrap_err(),
            "line 5: too many routes, at most 3",
            "stops at the first over, before reading on"
        );
        assert_eq!(
            write(&hs, "ctrl", "remove 1/8\nadd 5/8 0\nadd 6/8 0\nadd 7/8 0").unwrap_err(),
            "line 3: too many routes: 4, at most 3"
        );
        assert_eq!(read(&hs, "table").lines().count(), 3, "nothing changed");
        write(&hs, "ctrl", "remove 1/8\nadd 5/8 0").unwrap();
        write(&hs, "table", "1/8 0, 2/8 0, 3/8 0").unwrap();
        write(&hs, "flush", "").unwrap();
        write(&hs, "ctrl", "add 1/8 0, add 2/8 0, add 3/8 0").unwrap();
    }

    #[test]
    fn linear_lookups_take_at_most_4096_routes() {
        assert_eq!(Linear::MAX_ROUTES, 4096);
        let hosts = |n: u32| -> Vec<String> { (0..n).map(|i| format!("{} 0", IpAddr(0x0a00_0000 + i))).collect() };
        let (_e, hs) = make(LINEAR, "", 1);
        assert_eq!(
            write(&hs, "table", &hosts(4097).join("\n")).unwrap_err(),
            "line 4097: too many routes, at most 4096"
        );
        write(&hs, "table", &hosts(4096).join("\n")).unwrap();
        assert_eq!(
            write(&hs, "add", "11/8 0").unwrap_err(),
            "too many routes: 4097, at most 4096"
        );
        const STATIC: ElementClass = crate::ip::static_ip_lookup::StaticIPLookup::CLASS;
        assert_eq!(
            config_error(STATIC, &hosts(4097).join(", "), 1),
            "'rt :: StaticIPLookup': too many routes: 4097, at most 4096"
        );
    }

    #[test]
    fn host_routes_in_too_many_slash24s_are_refused_before_a_build() {
        assert_eq!(Stride16x8x8::MAX_ROUTES, 1_000_000);
        assert_eq!(Dir24x8::MAX_ROUTES, 1_000_000);
        // One /32 in each of 65537 /24s: a third-level chunk each.
        let spread: Vec<Route> = (0..=MAX_L2_CHUNKS as u32)
            .map(|i| Route {
                addr: (i << 8) | 1,
                len: 32,
                gw: 0,
                port: 0,
            })
            .collect();
        assert_eq!(
            admit::<Stride16x8x8>(&spread).unwrap_err(),
            "too many /24 networks hold longer routes: 65537, at most 65536"
        );
        assert!(admit::<Stride16x8x8>(&spread[..MAX_L2_CHUNKS]).is_ok());
        assert_eq!(
            admit::<Dir24x8>(&spread).unwrap_err(),
            "too many /24 networks hold longer routes: 65537, at most 32768"
        );
        // Through a handler, on a running table: refused, the old one stays.
        let (mut e, hs) = make(RADIX, "10/8 1", 2);
        e.activate().unwrap();
        let text: String = spread.iter().map(|r| format!("{}/32 0\n", IpAddr(r.addr))).collect();
        assert_eq!(
            write(&hs, "table", &text).unwrap_err(),
            "too many /24 networks hold longer routes: 65537, at most 65536"
        );
        assert_eq!(read_param(&hs, "lookup", "10.0.0.1").unwrap(), "1");
    }

    #[test]
    fn shared_edits_are_all_or_nothing_and_bump_the_generation() {
        let shared: Shared<Stride16x8x8> = Shared::new(routes("10/8 1"));
        lock(&shared.edit).noutputs = 2;
        let before = shared.current();
        assert_eq!(before.lookup(0x0a00_0001), Some(NextHop { port: 1, gw: 0 }));
        let g = shared.generation.load(Ordering::Acquire);
        let err = shared.edit(|r, n| {
            r.command("add", "11/8 0", n)?;
            r.command("add", "12/8 2", n)
        });
        assert_eq!(err.unwrap_err(), "bad OUTPUT 2: expected 0 to 1");
        assert_eq!(shared.generation.load(Ordering::Acquire), g);
        assert_eq!(shared.routes(), routes("10/8 1"));
        shared.edit(|r, n| r.command("add", "11/8 0", n)).unwrap();
        assert_eq!(shared.generation.load(Ordering::Acquire), g + 1);
        let after = shared.current();
        assert_eq!(after.lookup(0x0b00_0001), Some(NextHop { port: 0, gw: 0 }));
        // The data path still holds the old table: kept for the writer to
        // drop, never freed on the data path.
        assert_eq!(lock(&shared.edit).retired.len(), 1);
        drop(before);
        shared.edit(|r, n| r.command("remove", "11/8", n)).unwrap();
        assert_eq!(
            lock(&shared.edit).retired.len(),
            1,
            "the unheld one went, the held one stays"
        );
    }

    #[test]
    fn nothing_is_built_before_the_first_need() {
        let shared: Shared<Dir24x8> = Shared::new(routes("10/8 1"));
        shared.edit(|r, n| r.command("set", "10/8 2", n)).unwrap();
        assert!(lock(&shared.live).is_none());
        assert_eq!(shared.lookup(0x0a00_0001), Some(NextHop { port: 2, gw: 0 }));
        assert_eq!(shared.current().lookup(0x0a00_0001), Some(NextHop { port: 2, gw: 0 }));
    }

    #[test]
    fn handler_semantics_and_messages() {
        let (_e, hs) = make(RADIX, "10.0.0.0/8 1, 0/0 10.0.0.1 0", 3);
        assert_eq!(
            write(&hs, "add", "10/8 2").unwrap_err(),
            "conflict with existing route '10.0.0.0/8 - 1'"
        );
        write(&hs, "add", "10.1/16 10.1.0.1 2").unwrap();
        assert_eq!(read_param(&hs, "lookup", "10.1.2.3").unwrap(), "2 10.1.0.1");
        write(&hs, "set", "10.1/16 1").unwrap();
        assert_eq!(read_param(&hs, "lookup", "10.1.2.3").unwrap(), "1");
        assert_eq!(
            write(&hs, "set", "10.1/16 3").unwrap_err(),
            "bad OUTPUT 3: expected 0 to 2"
        );
        assert_eq!(
            write(&hs, "add", "10.2/16").unwrap_err(),
            "missing OUTPUT (expected ADDR/MASK [GATEWAY] OUTPUT)"
        );
        assert_eq!(
            write(&hs, "remove", "10.2/16").unwrap_err(),
            "route '10.2.0.0/16' not found"
        );
        assert_eq!(
            write(&hs, "remove", "10.1/16 - 2").unwrap_err(),
            "route '10.1.0.0/16 - 2' not found"
        );
        write(&hs, "remove", "10.1/16 - 1").unwrap();
        write(&hs, "remove", "0/0").unwrap();
        assert_eq!(read_param(&hs, "lookup", "11.0.0.1").unwrap(), "-1");
        assert_eq!(
            read_param(&hs, "lookup", "11.0.0").unwrap_err(),
            "expected an IP address, found '11.0.0'"
        );
        assert_eq!(
            read_param(&hs, "lookup", "").unwrap_err(),
            "expected an IP address, found ''"
        );
        assert_eq!(read(&hs, "table"), "10.0.0.0/8\t\t-\t\t1\n");
        assert_eq!(
            write(&hs, "ctrl", "frob 1/8 1").unwrap_err(),
            "line 1: bad command 'frob' (expected add, set or remove)"
        );
        write(&hs, "ctrl", "add 11/8 2\n\nset 10/8 0\nremove 11/8\nadd 12/8 1").unwrap();
        assert_eq!(read(&hs, "table"), "10.0.0.0/8\t\t-\t\t0\n12.0.0.0/8\t\t-\t\t1\n");
        write(&hs, "ctrl", "").unwrap();
    }

    #[test]
    fn table_is_persistent_and_edits_persist_as_table() {
        let (_e, hs) = make(LINEAR, "10.0.0.0/8 1", 2);
        let table = handler(&hs, "table");
        assert!(table.persistent && table.write.is_some() && table.persists_as.is_none());
        for name in ["add", "set", "remove", "ctrl"] {
            let h = handler(&hs, name);
            assert_eq!(h.persists_as.as_deref(), Some("table"), "{name}");
            assert!(!h.persistent && h.read.is_none());
        }
        assert_eq!(handler(&hs, "lookup").mode(), "r");
        // A saved value written back restores the table exactly.
        let saved = read(&hs, "table");
        write(&hs, "ctrl", "add 11/8 0\nset 10/8 0").unwrap();
        assert_ne!(read(&hs, "table"), saved);
        write(&hs, "table", &saved).unwrap();
        assert_eq!(read(&hs, "table"), saved);
        // A bad table changes nothing.
        assert_eq!(
            write(&hs, "table", "11/8 0\n12/8 5").unwrap_err(),
            "line 2: bad OUTPUT 5: expected 0 to 1"
        );
        assert_eq!(read(&hs, "table"), saved);
    }

    #[test]
    fn configuration_errors() {
        assert_eq!(
            config_error(RADIX, "300.0.0.0/8 1", 2),
            "'rt :: RadixIPLookup': argument 1 '300.0.0.0/8 1': bad address '300.0.0.0/8'"
        );
        assert_eq!(
            config_error(RADIX, "10/8 1, 10.0.0.0/255.0.255.0 1", 2),
            "'rt :: RadixIPLookup': argument 2 '10.0.0.0/255.0.255.0 1': mask 255.0.255.0 is not contiguous"
        );
        assert_eq!(
            config_error(RADIX, "10/8 -1", 2),
            "'rt :: RadixIPLookup': argument 1 '10/8 -1': bad OUTPUT: outputs are numbered from 0"
        );
        assert_eq!(
            config_error(RADIX, "10/8 1, 0/0 2", 2),
            "argument 2 '0.0.0.0/0 - 2': bad OUTPUT 2: expected 0 to 1"
        );
        assert_eq!(
            config_error(RADIX, "10/8 1, 11/8 0, 10.0.0.0/8 0", 2),
            "'rt :: RadixIPLookup': argument 3: route '10.0.0.0/8 - 0' conflicts with argument 1 ('10.0.0.0/8 - 1')"
        );
        assert_eq!(
            config_error(RADIX, "10/8 1, KEY 3", 2),
            "'rt :: RadixIPLookup': unknown argument 'KEY'"
        );
        // No routes is an empty table; a repeated identical route is one.
        let (_e, hs) = make(RADIX, "", 0);
        assert_eq!(read(&hs, "table"), "");
        let (_e, hs) = make(RADIX, "1.0.0.1/32 0, 1.0.0.1/32 0", 1);
        assert_eq!(read(&hs, "table").lines().count(), 1);
    }

    #[test]
    fn a_batch_to_one_output_passes_whole_and_a_mixed_one_splits() {
        let (e, _hs) = make(RADIX, "10/8 1, 11/8 0, 12/8 1", 2);
        let mut h = Harness::new(e, 1, 2);
        h.push(0, dst_batch(&[[10, 0, 0, 1], [12, 0, 0, 1], [10, 9, 9, 9]]));
        let out = h.take(1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), 3);
        h.push(
            0,
            dst_batch(&[[10, 0, 0, 1], [11, 0, 0, 1], [13, 0, 0, 1], [12, 0, 0, 1]]),
        );
        let dsts = |bs: Vec<Batch>| -> Vec<u32> { bs.iter().flat_map(|b| b.iter().map(|p| p.anno.dst_ip)).collect() };
        assert_eq!(dsts(h.take(0)), vec![0x0b00_0001]);
        assert_eq!(
            dsts(h.take(1)),
            vec![0x0a00_0001, 0x0c00_0001],
            "order kept, no route dropped"
        );
        // All without a route: nothing leaves.
        h.push(0, dst_batch(&[[13, 0, 0, 1], [14, 0, 0, 1]]));
        assert_eq!((h.count(0), h.count(1)), (0, 0));
    }

    #[test]
    fn packet_bytes_do_not_matter_only_the_annotation() {
        // The lookup reads the annotation, never the packet: empty,
        // truncated or non-IP packets route by it without a read.
        let (e, _hs) = make(RADIX, "10/8 1, 0/0 0", 2);
        let mut h = Harness::new(e, 1, 2);
        let mut b = Batch::new();
        for data in [&[][..], &[0x45, 0x00][..], &[0x60; 40][..]] {
            let mut p = Packet::from_data(data);
            p.anno.dst_ip = 0x0a00_0001;
            b.push(p);
        }
        h.push(0, b);
        assert_eq!(h.count(1), 3);
    }

    #[test]
    fn writes_from_another_thread_switch_whole_batches() {
        let (mut e, hs) = make(RADIX, "10/8 0", 2);
        e.activate().unwrap();
        let set = handler(&hs, "set").clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        // The batches below start only once the writer has written, so
        // that some of them race with its writes whatever the scheduler
        // does.
        let started = Arc::new(std::sync::Barrier::new(2));
        let go = started.clone();
        let writer = std::thread::spawn(move || {
            let w = set.write.as_ref().expect("writable");
            let mut writes = 0u32;
            loop {
                w(if writes & 1 == 0 { "10/8 1" } else { "10/8 0" }).unwrap();
                writes += 1;
                if writes == 1 {
                    go.wait();
                }
                if flag.load(Ordering::Relaxed) {
                    return writes;
                }
            }
        });
        started.wait();
        let mut h = Harness::new(e, 1, 2);
        let dsts: Vec<[u8; 4]> = (0..32).map(|i| [10, 0, 0, i]).collect();
        for _ in 0..200 {
            h.push(0, dst_batch(&dsts));
            // Each batch saw one table: it left whole, on one output.
            let (a, b) = (h.take(0), h.take(1));
            assert_eq!(a.len() + b.len(), 1);
            assert!(a.iter().chain(&b).all(|batch| batch.len() == 32));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
    }

    #[test]
    fn reload_with_the_same_routes_keeps_handler_changes() {
        let (mut old, hs) = make(RADIX, "10/8 1", 2);
        write(&hs, "add", "11/8 0").unwrap();
        old.activate().unwrap();
        let (mut same, hs2) = make(RADIX, "10/8 1", 2);
        same.take_state(old);
        assert_eq!(read_param(&hs2, "lookup", "11.0.0.1").unwrap(), "0");
        let (old, hs) = make(RADIX, "10/8 1", 2);
        write(&hs, "add", "11/8 0").unwrap();
        let (mut other, hs3) = make(RADIX, "10/8 0", 2);
        other.take_state(old);
        assert_eq!(read_param(&hs3, "lookup", "11.0.0.1").unwrap(), "-1");
        // Routes to outputs the new configuration lacks: not carried.
        let (old, hs) = make(RADIX, "10/8 0", 3);
        write(&hs, "add", "11/8 2").unwrap();
        let (mut fewer, hs4) = make(RADIX, "10/8 0", 2);
        fewer.take_state(old);
        assert_eq!(read_param(&hs4, "lookup", "11.0.0.1").unwrap(), "-1");
    }
}
