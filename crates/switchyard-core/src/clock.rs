//! The router's clock: real time, or (`click --simtime`) a simulated
//! clock that starts at a chosen second and jumps to the next timer when
//! nothing else is left to do, as Click's simulation clock does. Timing
//! then depends on nothing but the configuration: a RatedSource at 10
//! packets/s stamps its packets exactly 0.1 s apart, in no wall time.
//!
//! Simulation is chosen once per process, before a router starts; it
//! runs the whole graph on one thread (Click's single driver), so "no
//! task has work" is one thread's decision and the jump is exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Sim {
    /// The real instant the simulation started at: simulated instants are
    /// this plus the simulated time elapsed.
    base: Instant,
    /// Simulated seconds since the Unix epoch at `base`, in nanoseconds.
    epoch_ns: u64,
    /// Simulated time elapsed, in nanoseconds.
    elapsed_ns: AtomicU64,
}

static SIM: OnceLock<Sim> = OnceLock::new();

/// The latest start a simulation may have (in the year 2286).
pub const MAX_START_SECS: f64 = 1e10;

/// Switches this process to simulated time starting at `start_secs`
/// seconds since the epoch. False if simulation was already chosen.
pub fn simulate(start_secs: f64) -> bool {
    // Bounded so that centuries of simulated time still fit in u64 ns.
    let epoch_ns = (start_secs.clamp(0.0, MAX_START_SECS) * 1e9) as u64;
    SIM.set(Sim {
        base: Instant::now(),
        epoch_ns,
        elapsed_ns: AtomicU64::new(0),
    })
    .is_ok()
}

/// True in simulated time.
pub fn simulated() -> bool {
    SIM.get().is_some()
}

/// Now, as timers and rates see it.
pub fn now() -> Instant {
    match SIM.get() {
        Some(s) => s.base + Duration::from_nanos(s.elapsed_ns.load(Ordering::SeqCst)),
        None => Instant::now(),
    }
}

/// Nanoseconds since the Unix epoch, for packet timestamps.
pub fn now_ns() -> u64 {
    match SIM.get() {
        Some(s) => s.epoch_ns.saturating_add(s.elapsed_ns.load(Ordering::SeqCst)),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

/// In simulated time, moves the clock forward to `to` (never back): the
/// runtime's jump to the next timer. True if the clock moved.
pub(crate) fn advance_to(to: Instant) -> bool {
    let Some(s) = SIM.get() else { return false };
    let target = to.saturating_duration_since(s.base).as_nanos().min(u64::MAX as u128) as u64;
    s.elapsed_ns.fetch_max(target, Ordering::SeqCst) < target
}
