use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler};

documented! {
    /// Compares what the old and the new branch make of the same input
    /// packets: does the new release do what the old one did?
    ///
    /// Put it between the branches and the selector: input 0 takes the
    /// old branch, input 1 the new one, and each input passes through to
    /// the output of the same number unchanged. Packets are paired by the
    /// hub's sequence number, so the branches may run at different
    /// latencies and reorder a little (up to REORDER numbers). A packet
    /// seen on one side only is counted as dropped by the other once that
    /// side has moved REORDER numbers past it, or once more than REORDER
    /// packets from earlier batches still wait when this side delivers
    /// again (the other may have stopped altogether). A hub hands each
    /// branch a whole batch in turn, so one side is always a batch ahead:
    /// the packets of the batch being delivered never count against
    /// REORDER, whatever the batch size.
    ///
    /// # Ports
    /// Two inputs, two outputs (input N passes to output N); push.
    ///
    /// # Arguments
    /// - `MASK`: byte ranges ignored when comparing, as `OFFSET/LENGTH`
    ///   separated by spaces (fields that legitimately differ: a timestamp,
    ///   a checksum): `MASK 22/1 24/2` ignores the IPv4 TTL and checksum.
    /// - `WINDOW`: packets over which `divergence_rate` is computed;
    ///   default 10000, at most 1000000.
    /// - `HISTORY`: differences kept for `differences`; default 10, at
    ///   most 1000.
    /// - `REORDER`: how far apart (in packets) the branches may deliver;
    ///   set it above the lag of a slow branch; default 4096.
    ///
    /// # Handlers
    /// - `identical`, `different` (read): pairs compared, by outcome.
    /// - `dropped_by_old`, `dropped_by_new` (read): packets only one
    ///   branch let through.
    /// - `divergence_rate` (read): the share of the last WINDOW outcomes
    ///   that were not identical (0 to 1).
    /// - `differences` (read): the last HISTORY differences, one per line:
    ///   sequence number, offset of the first differing byte, both frames
    ///   in hex.
    /// - `pending` (read): packets waiting for their pair.
    /// - `reset` (write): zeroes all counts.
    ///
    /// # Example
    /// ```text
    /// hub[0] -> old -> [0]cmp :: ShadowCompare(MASK 24/2);
    /// hub[1] -> new -> [1]cmp;
    /// cmp[0] -> [0]sel; cmp[1] -> [1]sel;
    /// ```
    pub struct ShadowCompare {
        masks: Vec<(usize, usize)>,
        window: usize,
        history: usize,
        reorder: u64,
        /// Per side, packets waiting for their pair, sorted by sequence
        /// number (in order arrival appends; pairing pops the front): the
        /// sequence number and where its bytes are in that side's arena.
        waiting: [VecDeque<(u64, usize, usize)>; 2],
        /// Copies of the waiting packets' bytes: a copy costs less than
        /// holding a shared packet (two atomic operations).
        arena: [Vec<u8>; 2],
        high: [u64; 2],
        /// Outcomes of the last WINDOW pairs (1 = diverged), as a ring.
        recent: Vec<u8>,
        recent_at: usize,
        recent_len: usize,
        diverged_in_window: usize,
        /// Counts of this batch, published once per batch.
        tally: Tally,
        /// This batch's differences (the last HISTORY of them), published
        /// with the counts; `spare` holds buffers for reuse, so a branch
        /// that changes every packet costs a copy, not an allocation.
        batch_diffs: VecDeque<Diff>,
        spare: Vec<Diff>,
        stats: Arc<Stats>,
    }
}

/// One difference: the pair's sequence number, the first differing
/// offset, and both frames.
#[derive(Default)]
struct Diff {
    seq: u64,
    at: usize,
    old: Vec<u8>,
    new: Vec<u8>,
}

#[derive(Default)]
struct Tally {
    identical: u64,
    different: u64,
    dropped_by_old: u64,
    dropped_by_new: u64,
}

#[derive(Default)]
struct Stats {
    identical: AtomicU64,
    different: AtomicU64,
    dropped_by_old: AtomicU64,
    dropped_by_new: AtomicU64,
    pending: AtomicU64,
    rate_bits: AtomicU64,
    differences: Mutex<VecDeque<Diff>>,
}

/// `seq offset oldhex newhex`, formatted only when someone reads them.
fn diff_line(d: &Diff, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(out, "{} {} ", d.seq, d.at);
    for (k, bytes) in [&d.old, &d.new].into_iter().enumerate() {
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        out.push(if k == 0 { ' ' } else { '\n' });
    }
}

const MAX_WINDOW: usize = 1_000_000;
const MAX_HISTORY: usize = 1000;

impl ShadowCompare {
    pub const CLASS: ElementClass = ElementClass {
        name: "ShadowCompare",
        ports: "2/2",
        processing: "h/h",
        doc: ShadowCompare::DOC,
        factory: ShadowCompare::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let mask = args.read::<String>("MASK").unwrap_or_default();
        let window = args.read::<usize>("WINDOW").unwrap_or(10_000).max(1);
        let history = args.read::<usize>("HISTORY").unwrap_or(10);
        // WINDOW is allocated up front; HISTORY copies of whole frames are
        // kept: bounded, so an argument cannot ask for gigabytes.
        if window > MAX_WINDOW {
            args.error(
                Some(args.span_of("WINDOW")),
                format!("WINDOW must be at most {MAX_WINDOW}"),
            );
            return None;
        }
        if history > MAX_HISTORY {
            args.error(
                Some(args.span_of("HISTORY")),
                format!("HISTORY must be at most {MAX_HISTORY}"),
            );
            return None;
        }
        let reorder = args.read::<u64>("REORDER").unwrap_or(4096).max(1);
        let mut masks = Vec::new();
        for m in mask.split_whitespace() {
            let parsed = m
                .split_once('/')
                .and_then(|(o, l)| Some((o.parse().ok()?, l.parse().ok()?)));
            match parsed {
                Some(p) => masks.push(p),
                None => {
                    args.error(
                        Some(args.span_of("MASK")),
                        format!("MASK '{m}': expected OFFSET/LENGTH"),
                    );
                    return None;
                }
            }
        }
        masks.sort_unstable();
        Some(Box::new(ShadowCompare {
            masks,
            window,
            history,
            reorder,
            waiting: [VecDeque::new(), VecDeque::new()],
            arena: [Vec::new(), Vec::new()],
            high: [0; 2],
            recent: vec![0; window],
            recent_at: 0,
            recent_len: 0,
            diverged_in_window: 0,
            tally: Tally::default(),
            batch_diffs: VecDeque::new(),
            spare: Vec::new(),
            stats: Arc::default(),
        }))
    }

    /// The first differing offset outside the masks, if any. Equal frames
    /// (the common case) cost one memcmp; frames that differ only inside
    /// the masks, one memcmp per stretch between masks (masks are sorted).
    fn first_difference(&self, a: &[u8], b: &[u8]) -> Option<usize> {
        if a == b {
            return None;
        }
        fn part(f: &[u8], start: usize, end: usize) -> Option<&[u8]> {
            f.get(start.min(f.len())..end.min(f.len()))
        }
        let n = a.len().max(b.len());
        let mut start = 0;
        for &(offset, len) in self.masks.iter().chain([(n, 0)].iter()) {
            let end = offset.min(n);
            if start < end && part(a, start, end) != part(b, start, end) {
                return (start..end).find(|&i| a.get(i) != b.get(i));
            }
            start = start.max(offset.saturating_add(len));
        }
        None
    }

    fn record(&mut self, diverged: bool) {
        let d = u8::from(diverged);
        if self.recent_len == self.window {
            self.diverged_in_window -= usize::from(self.recent[self.recent_at]);
        } else {
            self.recent_len += 1;
        }
        self.recent[self.recent_at] = d;
        self.diverged_in_window += usize::from(d);
        self.recent_at += 1;
        if self.recent_at == self.window {
            self.recent_at = 0;
        }
    }

    /// Publishes this batch's counts (one atomic add each per batch).
    fn publish(&mut self) {
        let t = std::mem::take(&mut self.tally);
        let s = &self.stats;
        for (c, v) in [
            (&s.identical, t.identical),
            (&s.different, t.different),
            (&s.dropped_by_old, t.dropped_by_old),
            (&s.dropped_by_new, t.dropped_by_new),
        ] {
            if v > 0 {
                c.fetch_add(v, Relaxed);
            }
        }
        let rate = if self.recent_len == 0 {
            0.0
        } else {
            self.diverged_in_window as f64 / self.recent_len as f64
        };
        s.rate_bits.store(rate.to_bits(), Relaxed);
        s.pending
            .store((self.waiting[0].len() + self.waiting[1].len()) as u64, Relaxed);
        if !self.batch_diffs.is_empty() {
            let mut shared = s.differences.lock().expect("differences");
            for d in self.batch_diffs.drain(..) {
                while shared.len() >= self.history {
                    self.spare.extend(shared.pop_front());
                }
                shared.push_back(d);
            }
        }
    }

    fn compare(&mut self, seq: u64, old: &[u8], new: &[u8]) {
        match self.first_difference(old, new) {
            None => {
                self.tally.identical += 1;
                self.record(false);
            }
            Some(at) => {
                self.tally.different += 1;
                self.record(true);
                if self.history > 0 {
                    let mut d = if self.batch_diffs.len() >= self.history {
                        self.batch_diffs.pop_front().unwrap_or_default()
                    } else {
                        self.spare.pop().unwrap_or_default()
                    };
                    d.seq = seq;
                    d.at = at;
                    d.old.clear();
                    d.old.extend_from_slice(old);
                    d.new.clear();
                    d.new.extend_from_slice(new);
                    self.batch_diffs.push_back(d);
                }
            }
        }
    }

    /// Packets on `side` that the other side has moved well past: dropped
    /// by the other branch.
    /// Counts as dropped what waits on `side` past the other side's
    /// horizon, and, with `cap`, what waits beyond `cap` packets (a
    /// branch that drops everything never moves its horizon).
    fn expire(&mut self, side: usize, cap: Option<u64>) {
        let other = 1 - side;
        let horizon = self.high[other].saturating_sub(self.reorder);
        let cap = cap.unwrap_or(u64::MAX);
        while self.waiting[side].front().is_some_and(|&(s, _, _)| s < horizon) || self.waiting[side].len() as u64 > cap
        {
            self.waiting[side].pop_front();
            if side == 0 {
                self.tally.dropped_by_new += 1;
            } else {
                self.tally.dropped_by_old += 1;
            }
            self.record(true);
        }
    }

    /// Finds and removes the packet numbered `seq` waiting on `side`;
    /// returns where its bytes are in that side's arena.
    fn take(&mut self, side: usize, seq: u64) -> Option<(usize, usize)> {
        let q = &mut self.waiting[side];
        if q.front().is_some_and(|&(s, _, _)| s == seq) {
            return q.pop_front().map(|(_, at, len)| (at, len));
        }
        let i = q.binary_search_by_key(&seq, |&(s, _, _)| s).ok()?;
        q.remove(i).map(|(_, at, len)| (at, len))
    }

    /// Queues a packet to wait for its pair; false if that number
    /// already waits (a duplicate).
    fn wait(&mut self, side: usize, seq: u64, data: &[u8]) -> bool {
        let at = self.arena[side].len();
        let q = &mut self.waiting[side];
        if q.back().is_none_or(|&(s, _, _)| s < seq) {
            q.push_back((seq, at, data.len()));
        } else if let Err(i) = q.binary_search_by_key(&seq, |&(s, _, _)| s) {
            q.insert(i, (seq, at, data.len()));
        } else {
            return false;
        }
        self.arena[side].extend_from_slice(data);
        true
    }

    /// Frees arena space no waiting packet uses.
    fn compact(&mut self, side: usize) {
        let q = &mut self.waiting[side];
        let arena = &mut self.arena[side];
        match q.iter().map(|&(_, at, _)| at).min() {
            None => arena.clear(),
            Some(first) if first > (1 << 20) => {
                arena.drain(..first);
                for e in q.iter_mut() {
                    e.1 -= first;
                }
            }
            Some(_) => {}
        }
    }
}

impl Element for ShadowCompare {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<ShadowCompare>(old) {
            self.stats = old.stats;
            self.waiting = old.waiting;
            self.arena = old.arena;
            self.high = old.high;
        }
    }

    fn push(&mut self, port: usize, batch: Batch, cx: &mut Context<'_>) {
        let side = port.min(1);
        let other = 1 - side;
        let mut queued = 0u64;
        for p in batch.iter() {
            let seq = p.anno.seq;
            if seq == 0 {
                continue; // not numbered by a hub: nothing to pair it with
            }
            self.high[side] = self.high[side].max(seq);
            match self.take(other, seq) {
                Some((at, len)) => {
                    let arena = std::mem::take(&mut self.arena[other]);
                    let theirs = &arena[at..at + len];
                    let (old, new) = if side == 0 {
                        (p.data(), theirs)
                    } else {
                        (theirs, p.data())
                    };
                    self.compare(seq, old, new);
                    self.arena[other] = arena;
                }
                None => queued += u64::from(self.wait(side, seq, p.data())),
            }
        }
        self.expire(other, None);
        // This batch's own packets have not met the other side's turn yet.
        self.expire(side, Some(self.reorder.saturating_add(queued)));
        self.compact(0);
        self.compact(1);
        self.publish();
        cx.push(port, batch);
    }

    fn handlers(&self) -> Vec<Handler> {
        let counter = |name: &str, f: fn(&Stats) -> &AtomicU64| {
            let s = self.stats.clone();
            Handler::read_only(name, move || f(&s).load(Relaxed).to_string())
        };
        let (r, d, z) = (self.stats.clone(), self.stats.clone(), self.stats.clone());
        vec![
            counter("identical", |s| &s.identical),
            counter("different", |s| &s.different),
            counter("dropped_by_old", |s| &s.dropped_by_old),
            counter("dropped_by_new", |s| &s.dropped_by_new),
            counter("pending", |s| &s.pending),
            // The worst copy's: a gate on it trips as soon as one does.
            Handler::read_only("divergence_rate", move || {
                format!("{:.6}", f64::from_bits(r.rate_bits.load(Relaxed)))
            })
            .merged(switchyard_core::Merge::Max),
            Handler::read_only("differences", move || {
                let mut out = String::new();
                for diff in d.differences.lock().expect("differences").iter() {
                    diff_line(diff, &mut out);
                }
                out
            })
            .merged(switchyard_core::Merge::List),
            Handler::write_only("reset", move |_| {
                for c in [
                    &z.identical,
                    &z.different,
                    &z.dropped_by_old,
                    &z.dropped_by_new,
                    &z.rate_bits,
                ] {
                    c.store(0, Relaxed);
                }
                z.differences.lock().expect("differences").clear();
                Ok(())
            }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet, PortInfo, Processing};

    fn frame(seq: u64, ttl: u8) -> Packet {
        let mut f = crate::default_frame(64);
        f[22] = ttl;
        f[40..48].copy_from_slice(&seq.to_be_bytes());
        let mut p = Packet::from_data(&f);
        p.anno.seq = seq;
        p
    }

    fn harness(config: &str) -> (Harness, Vec<Handler>) {
        let mut args = Args::parse_str("cmp :: ShadowCompare", config);
        let mut e = ShadowCompare::make(&mut args).unwrap();
        args.complete().unwrap();
        e.initialize(&PortInfo {
            inputs: vec![Processing::Push; 2],
            outputs: vec![Processing::Push; 2],
        })
        .unwrap();
        let h = e.handlers();
        (Harness::new(e, 2, 2), h)
    }

    fn read(h: &[Handler], name: &str) -> String {
        (h.iter().find(|x| x.name == name).unwrap().read.as_ref().unwrap())()
    }

    #[test]
    fn a_ttl_change_on_one_percent_is_reported_exactly() {
        let (mut hs, h) = harness("HISTORY 200");
        // The new branch lags by 3 batches and rewrites TTL on every 100th.
        let batch = |range: std::ops::Range<u64>, new: bool| {
            let mut b = Batch::new();
            for s in range {
                b.push(frame(s, if new && s % 100 == 0 { 5 } else { 64 }));
            }
            b
        };
        for i in 0..100u64 {
            hs.push(0, batch(i * 100 + 1..i * 100 + 101, false));
            if i >= 3 {
                hs.push(1, batch((i - 3) * 100 + 1..(i - 3) * 100 + 101, true));
            }
        }
        for i in 97..100u64 {
            hs.push(1, batch(i * 100 + 1..i * 100 + 101, true));
        }
        assert_eq!(read(&h, "different"), "100");
        assert_eq!(read(&h, "identical"), "9900");
        assert_eq!(read(&h, "dropped_by_new"), "0");
        assert_eq!(read(&h, "pending"), "0");
        let diffs = read(&h, "differences");
        let seqs: Vec<u64> = diffs
            .lines()
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(seqs, (1..=100).map(|k| k * 100).collect::<Vec<_>>());
        assert!(
            diffs.lines().all(|l| l.split(' ').nth(1) == Some("22")),
            "first differing byte is the TTL"
        );
        assert_eq!(read(&h, "divergence_rate"), "0.010000");
        assert_eq!(hs.count(0), 10_000, "old passes through");
        assert_eq!(hs.count(1), 10_000, "new passes through");
    }

    #[test]
    fn first_difference_skips_masks_in_any_order_and_sees_length() {
        let mut args = Args::parse_str("cmp :: ShadowCompare", "MASK 30/2 20/1 29/3");
        let e = downcast::<ShadowCompare>(ShadowCompare::make(&mut args).unwrap()).unwrap();
        let a = vec![0u8; 64];
        let at = |changes: &[usize], len: usize| {
            let mut b = a.clone();
            b.resize(len, 0);
            for &i in changes {
                b[i] = 1;
            }
            e.first_difference(&a, &b)
        };
        assert_eq!(at(&[20, 29, 31], 64), None, "only masked bytes differ");
        assert_eq!(at(&[20, 21], 64), Some(21), "the first byte after a mask");
        assert_eq!(at(&[5, 20], 64), Some(5));
        assert_eq!(at(&[63], 64), Some(63), "after the last mask");
        assert_eq!(at(&[], 60), Some(60), "a shorter frame differs where it ends");
        assert_eq!(at(&[], 70), Some(64), "a longer one too");
    }

    #[test]
    fn masks_hide_legitimate_differences_and_drops_are_counted() {
        let (mut hs, h) = harness("MASK 22/1, REORDER 20");
        for chunk in 0..10u64 {
            let (mut old, mut new) = (Batch::new(), Batch::new());
            for s in chunk * 10 + 1..=chunk * 10 + 10 {
                old.push(frame(s, 64));
                if s % 10 != 0 {
                    new.push(frame(s, 63)); // TTL differs everywhere: masked
                }
            }
            hs.push(0, old);
            hs.push(1, new);
        }
        assert_eq!(read(&h, "different"), "0");
        assert_eq!(read(&h, "identical"), "90");
        // 10..=70 are more than REORDER behind the new branch's 99: dropped.
        assert_eq!(read(&h, "dropped_by_new"), "7");
        assert_eq!(read(&h, "pending"), "3");
    }

    #[test]
    fn a_branch_that_stops_altogether_is_counted_as_dropping() {
        let (mut hs, h) = harness("REORDER 50");
        let mut old = Batch::new();
        for s in 1..=200u64 {
            old.push(frame(s, 64));
        }
        hs.push(0, old);
        // One batch ahead is normal; the next batch shows the silence.
        assert_eq!(read(&h, "dropped_by_new"), "0");
        let mut more = Batch::new();
        for s in 201..=400u64 {
            more.push(frame(s, 64));
        }
        hs.push(0, more);
        assert_eq!(read(&h, "dropped_by_new"), "150");
        assert_eq!(read(&h, "divergence_rate"), "1.000000");
    }

    /// A hub hands each branch a whole batch in turn: with REORDER below
    /// the batch size, identical branches must still pair every packet.
    #[test]
    fn identical_branches_fed_a_batch_at_a_time_pair_every_packet() {
        for (reorder, burst) in [(4u64, 32u64), (1, 256), (100, 7)] {
            let (mut hs, h) = harness(&format!("REORDER {reorder}"));
            let batch = |first: u64, n: u64| {
                let mut b = Batch::new();
                for s in first..(first + n).min(1001) {
                    b.push(frame(s, 64));
                }
                b
            };
            for first in (1..=1000u64).step_by(burst as usize) {
                hs.push(0, batch(first, burst));
                // The other side in two halves: it lags within a turn.
                hs.push(1, batch(first, burst / 2));
                hs.push(1, batch(first + burst / 2, burst - burst / 2));
            }
            assert_eq!(read(&h, "identical"), "1000", "REORDER {reorder}, batches of {burst}");
            assert_eq!(read(&h, "dropped_by_old"), "0");
            assert_eq!(read(&h, "dropped_by_new"), "0");
            assert_eq!(read(&h, "pending"), "0");
        }
    }
}
