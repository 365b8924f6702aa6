//! Small pieces several elements share.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::handler::parse_in_range;
use switchyard_core::{Batch, Context, FromArg, Handler, Packet};

/// A packets-per-second estimate: an exponentially weighted average of
/// the rate over 100 ms windows, updated by the data path (one clock read
/// per batch) and read by a handler from another thread.
pub struct RateMeter {
    window_start: Instant,
    window_count: u64,
    shared: Arc<SharedRate>,
}

pub struct SharedRate {
    bits: AtomicU64,
    updated_ns: AtomicU64,
    epoch: Instant,
}

const WINDOW_NS: u64 = 100_000_000;

impl RateMeter {
    pub fn new() -> RateMeter {
        let now = switchyard_core::clock::now();
        RateMeter {
            window_start: now,
            window_count: 0,
            shared: Arc::new(SharedRate {
                bits: AtomicU64::new(0),
                updated_ns: AtomicU64::new(0),
                epoch: now,
            }),
        }
    }

    #[inline]
    pub fn add(&mut self, n: u64) {
        self.window_count += n;
        let now = switchyard_core::clock::now();
        let dt = now.duration_since(self.window_start).as_nanos() as u64;
        if dt >= WINDOW_NS {
            let inst = self.window_count as f64 * 1e9 / dt as f64;
            let old = f64::from_bits(self.shared.bits.load(Relaxed));
            let ewma = if old == 0.0 { inst } else { 0.6 * old + 0.4 * inst };
            self.shared.bits.store(ewma.to_bits(), Relaxed);
            self.shared
                .updated_ns
                .store(now.duration_since(self.shared.epoch).as_nanos() as u64, Relaxed);
            self.window_start = now;
            self.window_count = 0;
        }
    }

    pub fn shared(&self) -> Arc<SharedRate> {
        self.shared.clone()
    }
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter::new()
    }
}

impl SharedRate {
    /// The rate, or 0 when no packet passed for a second.
    pub fn read(&self) -> f64 {
        let age = (self.epoch.elapsed().as_nanos() as u64).saturating_sub(self.updated_ns.load(Relaxed));
        if age > 1_000_000_000 {
            0.0
        } else {
            f64::from_bits(self.bits.load(Relaxed))
        }
    }
}

/// A switch position shared between the data path and a `switch`
/// handler: an atomic read per batch, a validated write from anywhere.
/// Every accepted write bumps a generation, so the data path can tell a
/// new write (even of the same value) from none.
#[derive(Clone)]
pub struct SwitchPosition(Arc<PositionInner>);

struct PositionInner {
    value: std::sync::atomic::AtomicI64,
    generation: AtomicU64,
}

impl SwitchPosition {
    pub fn new(v: i64) -> SwitchPosition {
        SwitchPosition(Arc::new(PositionInner {
            value: std::sync::atomic::AtomicI64::new(v),
            generation: AtomicU64::new(0),
        }))
    }

    #[inline]
    pub fn get(&self) -> i64 {
        self.0.value.load(Relaxed)
    }

    /// Incremented by every accepted write; read once per batch.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.0.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set(&self, v: i64) {
        self.0.value.store(v, Relaxed);
        self.0.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// The persistent `switch` handler, accepting -1 (drop everything) to
    /// `ports - 1`.
    pub fn handler(&self, ports: usize) -> Handler {
        let (r, w) = (self.clone(), self.clone());
        let max = ports as i64 - 1;
        Handler::read_write(
            "switch",
            move || r.get().to_string(),
            move |v| {
                w.set(parse_in_range(v, -1..=max)?);
                Ok(())
            },
        )
        .persistent()
        .checked(move |v| parse_in_range(v, -1..=max).map(drop))
    }
}

/// Checks a configured switch position against the port count.
pub fn check_position(v: i64, ports: usize) -> Result<(), String> {
    if v < -1 || v >= ports as i64 {
        return Err(format!(
            "switch position {v} out of range: expected -1 to {}",
            ports as i64 - 1
        ));
    }
    Ok(())
}

/// Packets an element dropped as malformed, shared with its `drops` read
/// handler and moved to the new element on a reload.
#[derive(Clone, Default)]
pub struct Drops(Arc<AtomicU64>);

impl Drops {
    /// Keeps the packets `keep` accepts and counts the others.
    #[inline]
    pub fn retain(&self, batch: &mut switchyard_core::Batch, keep: impl FnMut(&mut switchyard_core::Packet) -> bool) {
        let before = batch.len();
        batch.retain(keep);
        self.add(before - batch.len());
    }

    #[inline]
    pub fn add(&self, n: usize) {
        if n > 0 {
            self.0.fetch_add(n as u64, Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// The `drops` read handler.
    pub fn handler(&self) -> Handler {
        let d = self.0.clone();
        Handler::read_only("drops", move || d.load(Relaxed).to_string())
    }
}

/// A read/write boolean handler (`active`): `true`/`false` (or 1/0,
/// yes/no); anything else is refused.
pub fn flag_handler(name: &str, flag: &Arc<std::sync::atomic::AtomicBool>) -> Handler {
    let (r, w) = (flag.clone(), flag.clone());
    Handler::read_write(
        name,
        move || r.load(Relaxed).to_string(),
        move |v| {
            let b = match v.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                other => return Err(format!("expected true or false, found '{other}'")),
            };
            w.store(b, Relaxed);
            Ok(())
        },
    )
}

/// A `count` read handler and a write handler named `reset` that zeroes it.
pub fn count_handlers(count: &Arc<AtomicU64>, reset: &str) -> [Handler; 2] {
    let (r, w) = (count.clone(), count.clone());
    [
        Handler::read_only("count", move || r.load(Relaxed).to_string()),
        Handler::write_only(reset, move |_| {
            w.store(0, Relaxed);
            Ok(())
        }),
    ]
}

/// A handler value of type `T` (an address, a prefix), with the message
/// every handler gives for one that does not parse.
pub fn parse_value<T: FromArg>(value: &str) -> Result<T, String> {
    let v = value.trim();
    T::from_arg(v).ok_or_else(|| format!("expected {}, found '{v}'", T::EXPECTED))
}

/// What a checking element does with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stays in the batch, for output 0.
    Pass,
    /// Leaves by output 1.
    Reject,
    /// Is freed.
    Drop,
}

impl Verdict {
    /// What a refused packet becomes: `Reject` when output 1 is connected,
    /// `Drop` otherwise (so no batch is gathered for nobody).
    pub fn refused(cx: &Context<'_>) -> Verdict {
        if cx.noutputs() > 1 {
            Verdict::Reject
        } else {
            Verdict::Drop
        }
    }
}

/// Applies `verdict` to every packet of `batch`, in order: passed packets
/// stay in `batch`, dropped ones are freed, and rejected ones are returned
/// (None when there are none). Refusals are rare: the batch is left as it
/// is up to the first packet that does not pass, and a batch for rejects
/// is taken from the pool only for a reject.
///
/// The verdict is called from one place on the fast path, where it is
/// inlined into the loop; the rest of a batch after a refusal is sorted
/// out of line.
#[inline]
pub fn sort_out(batch: &mut Batch, mut verdict: impl FnMut(&mut Packet) -> Verdict) -> Option<Batch> {
    let mut refused = None;
    for (i, p) in batch.packets_mut().iter_mut().enumerate() {
        let v = verdict(p);
        if v != Verdict::Pass {
            refused = Some((i, v));
            break;
        }
    }
    let (first, v) = refused?;
    sort_rest(batch, first, v, &mut verdict)
}

/// [`sort_out`] from the first packet that did not pass (`first`, with
/// verdict `v`) on.
#[inline(never)]
fn sort_rest(
    batch: &mut Batch,
    first: usize,
    v: Verdict,
    verdict: &mut impl FnMut(&mut Packet) -> Verdict,
) -> Option<Batch> {
    let mut rest = batch.split_off(first);
    let mut rejects: Option<Batch> = None;
    let mut it = rest.drain();
    let mut sort = |p: Packet, v: Verdict, batch: &mut Batch| match v {
        Verdict::Pass => batch.push(p),
        Verdict::Reject => rejects.get_or_insert_with(Batch::new).push(p),
        Verdict::Drop => {}
    };
    if let Some(p) = it.next() {
        sort(p, v, batch);
    }
    for mut p in it {
        let v = verdict(&mut p);
        sort(p, v, batch);
    }
    rejects
}

/// Sends what [`sort_out`] left, in push: `batch` on output 0 unless it
/// is empty, the rejects on output 1.
pub fn push_sorted(cx: &mut Context<'_>, batch: Batch, rejects: Option<Batch>) {
    if !batch.is_empty() {
        cx.push(0, batch);
    }
    push_rejects(cx, rejects);
}

/// Sends the rejects of [`sort_out`] on output 1 (in pull, where the batch
/// itself is returned to the puller). Without output 1 there are none:
/// [`Verdict::refused`] dropped them.
pub fn push_rejects(cx: &mut Context<'_>, rejects: Option<Batch>) {
    if let Some(r) = rejects.filter(|r| !r.is_empty()) {
        if cx.noutputs() > 1 {
            cx.push(1, r);
        }
    }
}

/// Warnings about refused packets, rate-limited to one a second: the first
/// an element sees, and with VERBOSE every one after it. Called once per
/// batch that refused something; the clock is read only when a warning
/// could be due.
#[derive(Debug, Default)]
pub struct Warnings {
    verbose: bool,
    seen: bool,
    last: Option<Instant>,
}

impl Warnings {
    pub fn new(verbose: bool) -> Warnings {
        Warnings {
            verbose,
            seen: false,
            last: None,
        }
    }

    /// True if a warning should be logged now.
    pub fn due(&mut self) -> bool {
        let first = !std::mem::replace(&mut self.seen, true);
        if !first && !self.verbose {
            return false;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpAddr;

    fn batch(ids: &[u8]) -> Batch {
        let mut b = Batch::new();
        for &i in ids {
            b.push(Packet::from_data(&[i]));
        }
        b
    }

    fn ids(b: &Batch) -> Vec<u8> {
        b.iter().map(|p| p.data()[0]).collect()
    }

    /// Even ids pass, multiples of 3 among the odd are dropped, the rest
    /// rejected.
    fn by_id(p: &mut Packet) -> Verdict {
        match p.data()[0] {
            i if i % 2 == 0 => Verdict::Pass,
            i if i % 3 == 0 => Verdict::Drop,
            _ => Verdict::Reject,
        }
    }

    #[test]
    fn sorting_out_keeps_order_and_touches_nothing_when_all_pass() {
        let mut b = batch(&[0, 2, 4]);
        let first = b.packets()[0].data().as_ptr();
        assert!(sort_out(&mut b, by_id).is_none());
        assert_eq!(ids(&b), [0, 2, 4]);
        assert_eq!(b.packets()[0].data().as_ptr(), first);

        let mut b = batch(&[0, 1, 2, 3, 4, 5, 6, 9, 7]);
        let rejects = sort_out(&mut b, by_id).expect("rejects");
        assert_eq!(ids(&b), [0, 2, 4, 6]);
        assert_eq!(ids(&rejects), [1, 5, 7]);
        // The first refusal may be a drop; only drops gather no batch.
        let mut b = batch(&[3, 2, 9]);
        assert!(sort_out(&mut b, by_id).is_none());
        assert_eq!(ids(&b), [2]);
        let mut b = Batch::new();
        assert!(sort_out(&mut b, by_id).is_none());
    }

    #[test]
    fn handler_values_say_what_was_expected() {
        assert_eq!(parse_value::<IpAddr>(" 10.0.0.1\n"), Ok(IpAddr(0x0a00_0001)));
        assert_eq!(
            parse_value::<IpAddr>("10.0.0"),
            Err("expected an IP address, found '10.0.0'".to_string())
        );
    }

    #[test]
    fn warnings_come_first_then_only_when_verbose_and_at_most_once_a_second() {
        let mut quiet = Warnings::new(false);
        assert!(quiet.due());
        assert!(!quiet.due());
        let mut verbose = Warnings::new(true);
        assert!(verbose.due());
        // Within the second: held back even when verbose.
        assert!(!verbose.due());
        verbose.last = Instant::now().checked_sub(Duration::from_secs(2));
        assert!(verbose.due());
    }
}
