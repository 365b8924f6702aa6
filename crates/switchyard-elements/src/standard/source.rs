//! What InfiniteSource and RatedSource share: the packet template, the
//! LIMIT/ACTIVE/STOP bookkeeping and the handlers over it.

use crate::util::{count_handlers, flag_handler};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::packet::{now_ns, MAX_BATCH};
use switchyard_core::{Annotations, Args, Batch, Context, Data, Handler};

/// Source ports a FLOWS source cycles through (1024 to 65535).
const PORTS: u64 = 65536 - 1024;

/// A 64-byte Ethernet/IPv4/UDP frame (10.0.0.1:1234 -> 10.0.0.2:5678),
/// resized to `len` bytes (at least 42, the headers).
pub fn default_frame(len: usize) -> Vec<u8> {
    let len = len.max(42);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let sum = crate::wire::checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&5678u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

pub struct SourceCore {
    data: Vec<u8>,
    /// Packets still allowed by LIMIT (u64::MAX: no limit).
    limit: Arc<AtomicU64>,
    count: Arc<AtomicU64>,
    active: Arc<AtomicBool>,
    stop: bool,
    /// With FLOWS N > 1, the UDP ports cycle through N values.
    flows: u64,
    pub burst: usize,
    /// Stamp packets with the time (InfiniteSource's TIMESTAMP).
    timestamp: bool,
    /// InfiniteSource's END_CALL: the handler written, and the value,
    /// when LIMIT is reached.
    end_call: Option<switchyard_core::HandlerCall>,
}

/// Which source is being configured: their positional arguments and
/// keywords differ a little, as in Click.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SourceClass {
    /// DATA, LIMIT, BURST, ACTIVE; TIMESTAMP and END_CALL.
    Infinite,
    /// DATA, RATE, LIMIT, ACTIVE; BURST a keyword.
    Rated,
}

impl SourceCore {
    /// Reads DATA (positional first), then the keywords both sources
    /// share; `extra` reads the class's own arguments in between, in
    /// Click's positional order. BURST is positional (after LIMIT) for
    /// InfiniteSource, as in Click; RatedSource's fourth positional
    /// argument is ACTIVE.
    pub fn configure(args: &mut Args, class: SourceClass, extra: impl FnOnce(&mut Args)) -> Option<SourceCore> {
        let infinite = class == SourceClass::Infinite;
        let data = args.read_p::<Data>("DATA");
        extra(args);
        let limit = args.read_p::<i64>("LIMIT");
        let burst = if infinite {
            args.read_p::<usize>("BURST")
        } else {
            args.read::<usize>("BURST")
        };
        let active = args.read_p::<bool>("ACTIVE").unwrap_or(true);
        let stop = args.read::<bool>("STOP").unwrap_or(false);
        let (timestamp, end_call) = if infinite {
            let timestamp = args.read::<bool>("TIMESTAMP").unwrap_or(true);
            (timestamp, args.read::<switchyard_core::HandlerCall>("END_CALL"))
        } else {
            (true, None)
        };
        if end_call.is_some() && stop {
            args.error(
                Some(args.span_of("END_CALL")),
                "END_CALL and STOP are mutually exclusive",
            );
        }
        // DATASIZE is Click's old name for LENGTH (the later one wins, as
        // Click reads them in that order). Bounded before anything is
        // built from it: LENGTH 6455555555555 (found by fuzzing) asked for
        // a 6 TB template.
        let length = args.read::<usize>("LENGTH").map(|len| ("LENGTH", len));
        let length = args.read::<usize>("DATASIZE").map(|len| ("DATASIZE", len)).or(length);
        let length = length.map(|(name, len)| {
            if len > 65535 {
                args.error(
                    Some(args.span_of(name)),
                    format!("{name} {len} too large (at most 65535)"),
                );
            }
            len.min(65535)
        });
        let flows = args.read::<u64>("FLOWS").unwrap_or(1).clamp(1, PORTS * PORTS);
        let mut data = match data {
            Some(Data(d)) => d,
            None => default_frame(length.unwrap_or(64)),
        };
        if let Some(len) = length {
            data.resize(len, 0);
        }
        let burst = burst.unwrap_or(128);
        if burst == 0 || burst > MAX_BATCH {
            args.error(Some(args.span_of("BURST")), format!("BURST must be 1 to {MAX_BATCH}"));
        }
        let limit = match limit {
            None | Some(-1) => u64::MAX,
            Some(n) if n >= 0 => n as u64,
            Some(n) => {
                args.error(
                    Some(args.span_of("LIMIT")),
                    format!("LIMIT {n} invalid: expected -1 (none) or a count"),
                );
                0
            }
        };
        if args.has_errors() {
            return None;
        }
        Some(SourceCore {
            data,
            limit: Arc::new(AtomicU64::new(limit)),
            count: Arc::new(AtomicU64::new(0)),
            active: Arc::new(AtomicBool::new(active)),
            stop,
            flows,
            burst: burst.clamp(1, MAX_BATCH),
            timestamp,
            end_call,
        })
    }

    /// The length of the packets sent.
    pub fn packet_len(&self) -> usize {
        self.data.len()
    }

    /// Hot reload: the count (so LIMIT goes on where it was) and whether it
    /// was active.
    pub fn take_state(&mut self, old: SourceCore) {
        self.count = old.count;
        self.active = old.active;
    }

    /// How many packets may go now, at most `want`.
    pub fn allowance(&self, want: usize) -> usize {
        if !self.active.load(Relaxed) {
            return 0;
        }
        let left = self.limit.load(Relaxed).saturating_sub(self.count.load(Relaxed));
        want.min(left.min(usize::MAX as u64) as usize)
    }

    pub fn exhausted(&self) -> bool {
        self.count.load(Relaxed) >= self.limit.load(Relaxed)
    }

    /// A batch of `n` fresh packets, stamped with one timestamp.
    /// Flow f's source port is 1024 + f mod PORTS; past PORTS flows, the
    /// destination port is 1024 + f / PORTS.
    pub fn make_batch(&self, n: usize) -> Batch {
        let anno = Annotations {
            timestamp_ns: if self.timestamp { now_ns() } else { 0 },
            ..Annotations::default()
        };
        let first = self.count.fetch_add(n as u64, Relaxed);
        if self.flows > 1 && self.data.len() >= 36 {
            let flows = self.flows;
            return Batch::from_template_patched(&self.data, n, anno, |i, d| {
                let f = (first + i as u64) % flows;
                let port = 1024 + (f % PORTS) as u16;
                d[34..36].copy_from_slice(&port.to_be_bytes());
                if flows > PORTS {
                    let port = 1024 + (f / PORTS) as u16;
                    d[36..38].copy_from_slice(&port.to_be_bytes());
                }
            });
        }
        Batch::from_template(&self.data, n, anno)
    }

    /// Called when the limit is reached: with STOP, ask the router to
    /// stop; with END_CALL, write its handler.
    pub fn finish(&self, cx: &Context<'_>) {
        if self.stop {
            cx.request_stop();
        }
        if let Some(switchyard_core::HandlerCall { handler, value }) = &self.end_call {
            if let Err(e) = cx
                .control()
                .write_as(handler, value, "source", "END_CALL: LIMIT reached")
            {
                tracing::error!(%handler, error = %e, "END_CALL failed");
            }
        }
    }

    pub fn handlers(&self) -> Vec<Handler> {
        let [count, reset] = count_handlers(&self.count, "reset");
        let (l1, l2) = (self.limit.clone(), self.limit.clone());
        vec![
            count,
            reset,
            flag_handler("active", &self.active),
            Handler::read_write(
                "limit",
                move || match l1.load(Relaxed) {
                    u64::MAX => "-1".to_string(),
                    n => n.to_string(),
                },
                move |v| {
                    let n: i64 = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("expected an integer, found '{}'", v.trim()))?;
                    l2.store(if n < 0 { u64::MAX } else { n as u64 }, Relaxed);
                    Ok(())
                },
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frame_has_valid_ip_checksum() {
        let f = default_frame(64);
        assert_eq!(f.len(), 64);
        assert_eq!(crate::wire::checksum(&f[14..34]), 0);
        assert_eq!(default_frame(10).len(), 42);
    }
}
