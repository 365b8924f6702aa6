//! Small pieces several elements share.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use switchyard_core::handler::parse_in_range;
use switchyard_core::Handler;

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
        let now = Instant::now();
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
        let now = Instant::now();
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

    fn set(&self, v: i64) {
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
