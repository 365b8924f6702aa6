use crate::rollback::flow_table::{self, FlowShared};
use crate::standard::flow_hash::{flow_hash, mix};
use crate::standard::scatter::Scatter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Scope};

documented! {
    /// Splits traffic between outputs by weight, flow by flow: every packet
    /// of a flow goes to the same output. The canary: `WEIGHTS 99 1` sends
    /// 1% of flows to the new branch.
    ///
    /// A flow is the IPv4 or IPv6 5-tuple (addresses, protocol, TCP/UDP
    /// ports; one VLAN tag is skipped); other frames are keyed by their MAC
    /// address pair; frames too short for a header by their length. Outputs
    /// are chosen by weighted rendezvous hashing: raising one output's
    /// weight only moves flows *to* it, never between the others or back
    /// and forth, and moves about as few as the new weights require.
    ///
    /// Two modes, by how it is connected:
    /// - splitter (one input, N outputs): each flow goes to one output;
    /// - selector (N inputs, one output), after a hub: each input is a
    ///   branch's copy of all traffic, and a flow's packets are forwarded
    ///   from the input its weight picks, the others dropped. So shadow
    ///   comparison (both branches see everything) and canary combine.
    ///   Put a `FlowHash` before the hub so both copies of a packet are
    ///   keyed alike even when a branch rewrites addresses or ports. A
    ///   weight change takes effect at a sequence boundary, as an
    ///   InputSwitch flip does: packets the hub numbered before it keep the
    ///   old weights, so a flow that moves leaves production exactly once
    ///   per packet even when the branches differ in latency.
    ///
    /// A packet whose `flow_hash` annotation is set (by FlowHash) is keyed
    /// by it; otherwise its headers are parsed.
    ///
    /// Pinned mode (`PIN NAME`, selector only, with a `FlowTable` named
    /// NAME before the hub): a weight change applies to new flows only;
    /// each flow stays on the branch that took its first packet until it
    /// ends, in both directions, as InputSwitch's pinned mode describes.
    /// The table draws new flows' branches by these weights (keyed by its
    /// own flow hash). Every selector pinning with one table shares its
    /// weights.
    ///
    /// # Ports
    /// Splitter: one input, two or more outputs. Selector: two or more
    /// inputs, one output. Push.
    ///
    /// # Arguments
    /// - `WEIGHTS` (positional, mandatory): one non-negative integer per
    ///   output (splitter) or input (selector), space-separated, not all
    ///   zero: `WEIGHTS 95 5`.
    /// - `PIN`: the FlowTable that pins flows (pinned mode).
    ///
    /// # Handlers
    /// - `weights` (read/write, persistent): the weights, as in the
    ///   argument; a write with the wrong count, a negative or all-zero
    ///   weights is refused. Applies from the next batch; in pinned mode,
    ///   to new flows only.
    /// - Pinned mode only:
    ///   - `force` (write): sets the weights and moves every flow at once,
    ///     for an emergency (the table forgets its pins). Persisted as
    ///     `weights`.
    ///   - `pinned` (read): flows pinned per input, space-separated; with a
    ///     parameter K, input K's count.
    ///   - `drained` (read): `true` when no flow is pinned to an input of
    ///     weight 0; with a parameter K, when none is pinned to input K.
    ///
    /// # Example
    /// ```text
    /// src -> canary :: CanarySwitch(WEIGHTS 95 5);
    /// canary[0] -> old; canary[1] -> new;
    /// ```
    pub struct CanarySwitch {
        shared: Arc<Weights>,
        /// The newest weights (splitter, and selector for unnumbered
        /// packets).
        weights: Vec<f64>,
        /// Selector: `(first sequence number, weights)` in force from it on.
        segments: std::collections::VecDeque<(u64, Vec<f64>)>,
        max_seen: u64,
        last_seen: Vec<u64>,
        generation: u64,
        cache: Vec<(u64, u8)>,
        scatter: Scatter,
        selector: bool,
        /// Pinned mode: the FlowTable's name, then what it lent.
        pin: Option<String>,
        flows: Option<Arc<FlowShared>>,
    }
}

/// A CanarySwitch's weights, shared with its handler (and, pinned, with
/// its FlowTable).
pub struct Weights {
    values: Mutex<Vec<u32>>,
    generation: AtomicU64,
}

impl Weights {
    pub fn values(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Incremented by every accepted write; read once per batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn set(&self, w: Vec<u32>) {
        *self.values() = w;
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Direct-mapped cache of flow -> output, cleared when weights change.
const CACHE: usize = 16384;

fn parse_weights(text: &str, outputs: Option<usize>) -> Result<Vec<u32>, String> {
    let w: Vec<u32> = text
        .split_whitespace()
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| format!("weight '{t}' is not a non-negative integer"))
        })
        .collect::<Result<_, _>>()?;
    if w.len() < 2 {
        return Err("give at least two weights, one per output".into());
    }
    if let Some(n) = outputs {
        if w.len() != n {
            return Err(format!("{} weights for {n} outputs", w.len()));
        }
    }
    if w.iter().all(|&x| x == 0) {
        return Err("weights are all zero: every packet would be dropped".into());
    }
    Ok(w)
}

/// The output for a flow under `weights`: highest weighted rendezvous
/// score.
pub fn choose(weights: &[f64], flow: u64) -> usize {
    let mut best = (f64::NEG_INFINITY, 0);
    for (i, &w) in weights.iter().enumerate() {
        if w == 0.0 {
            continue;
        }
        let h = mix(flow ^ mix(i as u64 + 1));
        // u in (0, 1); score w / -ln(u) is the weighted HRW score.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = w / -u.ln();
        if score > best.0 {
            best = (score, i);
        }
    }
    best.1
}

impl CanarySwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "CanarySwitch",
        ports: "1-/1-",
        processing: "h/h",
        doc: CanarySwitch::DOC,
        factory: CanarySwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let pin = args.read::<String>("PIN");
        let text = args.read_mp::<String>("WEIGHTS")?;
        let w = match parse_weights(&text, None) {
            Ok(w) => w,
            Err(e) => {
                args.error(Some(args.span_of("WEIGHTS")), format!("WEIGHTS: {e}"));
                return None;
            }
        };
        let weights: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
        Some(Box::new(CanarySwitch {
            segments: std::collections::VecDeque::from([(0, weights.clone())]),
            max_seen: 0,
            last_seen: Vec::new(),
            weights,
            shared: Arc::new(Weights {
                values: Mutex::new(w),
                generation: AtomicU64::new(0),
            }),
            generation: 0,
            cache: vec![(u64::MAX, 0); CACHE],
            scatter: Scatter::new(),
            selector: false,
            pin,
            flows: None,
        }))
    }

    /// The output for a packet under the newest weights (cached per flow),
    /// or under `older` weights for a packet numbered before a change.
    fn output(&mut self, p: &switchyard_core::Packet, older: Option<usize>) -> usize {
        let flow = match p.anno.flow_hash {
            0 => flow_hash(p.data()),
            h => mix(u64::from(h)),
        };
        if let Some(i) = older {
            return choose(&self.segments[i].1, flow);
        }
        let slot = (flow as usize) % CACHE;
        if self.cache[slot].0 == flow {
            return self.cache[slot].1 as usize;
        }
        let out = choose(&self.weights, flow);
        self.cache[slot] = (flow, out as u8);
        out
    }

    /// Selector: which weights a packet numbered `seq` falls under; None
    /// for the newest.
    fn segment_of(&self, seq: u64) -> Option<usize> {
        if seq == 0 {
            return None;
        }
        let i = self.segments.iter().rposition(|&(start, _)| start <= seq).unwrap_or(0);
        (i + 1 < self.segments.len()).then_some(i)
    }

    /// Forgets weights no input can still deliver packets for.
    fn forget_old_segments(&mut self) {
        while self.segments.len() > 1 && self.last_seen.iter().all(|&s| s + 1 >= self.segments[1].0) {
            self.segments.pop_front();
        }
        while self.segments.len() > 1024 {
            self.segments.pop_front();
        }
    }

    fn take_weights(&mut self) {
        let g = self.shared.generation();
        if g != self.generation {
            self.generation = g;
            self.weights = self.shared.values().iter().map(|&x| f64::from(x)).collect();
            self.cache.fill((u64::MAX, 0));
            if self.selector {
                // In force from the next number the hub hands out, as an
                // InputSwitch flip; a change no packet saw yet replaces the
                // previous one.
                let start = self.max_seen + 1;
                while self.segments.len() > 1 && self.segments.back().is_some_and(|&(s, _)| s >= start) {
                    self.segments.pop_back();
                }
                self.segments.push_back((start, self.weights.clone()));
            } else {
                self.segments = std::collections::VecDeque::from([(0, self.weights.clone())]);
            }
        }
    }
}

impl Element for CanarySwitch {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<CanarySwitch>(old) {
            if self.flows.is_some() {
                // The weights are the table's, shared with the other
                // selectors: they take the old values, not the old object.
                if old.weights.len() == self.weights.len() {
                    self.shared.set(old.shared.values().clone());
                    self.max_seen = old.max_seen;
                }
                return;
            }
            if old.weights.len() == self.weights.len() {
                self.shared = old.shared;
                self.weights = old.weights.clone();
                self.max_seen = old.max_seen;
                if old.last_seen.len() == self.last_seen.len() {
                    // Same inputs: pending weight changes stay exact.
                    self.generation = old.generation;
                    self.segments = old.segments;
                    self.last_seen = old.last_seen;
                } else {
                    self.generation = self.shared.generation();
                    self.segments = std::collections::VecDeque::from([(0, old.weights)]);
                }
            }
        }
    }

    fn resolve(&mut self, scope: &Scope) -> Result<(), String> {
        let Some(flows) = flow_table::named(scope, self.pin.as_deref())? else {
            return Ok(());
        };
        self.shared = flows.attach_weights(&self.shared, 0)?;
        self.generation = self.shared.generation();
        self.flows = Some(flows);
        Ok(())
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        let n = self.weights.len();
        let (ins, outs) = (ports.inputs.len(), ports.outputs.len());
        self.selector = match (ins, outs) {
            (1, o) if o >= 2 => false,
            (i, 1) if i >= 2 => true,
            _ => return Err(format!("connect one input and {n} outputs (splitter) or {n} inputs and one output (selector), not {ins}/{outs}")),
        };
        self.last_seen = vec![0; ins];
        let branches = if self.selector { ins } else { outs };
        if branches != n {
            let what = if self.selector { "inputs" } else { "outputs" };
            return Err(format!("{n} weights for {branches} {what}"));
        }
        if let Some(flows) = &self.flows {
            if !self.selector {
                return Err("PIN works on a selector (inputs after a hub), not a splitter".into());
            }
            flows.attach_weights(&self.shared, ins)?;
        }
        Ok(false)
    }

    fn push(&mut self, port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        if let Some(flows) = &self.flows {
            // Stamped packets go by their stamp; the rest (if any) by the
            // weights, below.
            match flow_table::select(flows, port, batch, cx) {
                Some(rest) => batch = rest,
                None => return,
            }
        }
        self.take_weights();
        if self.selector {
            let hi = batch.iter().map(|p| p.anno.seq).max().unwrap_or(0);
            self.max_seen = self.max_seen.max(hi);
            if let Some(s) = self.last_seen.get_mut(port) {
                *s = (*s).max(hi);
            }
            batch.retain(|p| {
                let older = self.segment_of(p.anno.seq);
                self.output(p, older) == port
            });
            self.forget_old_segments();
            if !batch.is_empty() {
                cx.push(0, batch);
            }
            return;
        }
        let mut scatter = std::mem::take(&mut self.scatter);
        scatter.send(batch, cx, |p| self.output(p, None));
        self.scatter = scatter;
    }

    fn handlers(&self) -> Vec<Handler> {
        let (r, w) = (self.shared.clone(), self.shared.clone());
        let n = self.weights.len();
        let mut handlers = vec![Handler::read_write(
            "weights",
            move || r.values().iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
            move |v| {
                w.set(parse_weights(v, Some(n))?);
                Ok(())
            },
        )
        .persistent()
        .checked(move |v| parse_weights(v, Some(n)).map(drop))];
        if let Some(flows) = &self.flows {
            let c = self.shared.clone();
            let current = move |i: usize| c.values().get(i).is_some_and(|&w| w > 0);
            let pinned = flow_table::pinned_handlers(flows, n, &handlers[0], current);
            handlers.extend(pinned);
        }
        handlers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet, Processing};

    /// An IPv4/UDP frame of flow `i` (addresses and ports vary).
    fn flow_frame(i: u64) -> Vec<u8> {
        let mut f = crate::default_frame(64);
        let r = mix(i);
        f[26..30].copy_from_slice(&(r as u32).to_be_bytes());
        f[30..34].copy_from_slice(&((r >> 32) as u32).to_be_bytes());
        f[34..36].copy_from_slice(&((i as u16) ^ 0x5a5a).to_be_bytes());
        f
    }

    fn canary(weights: &str) -> (Harness, switchyard_core::handler::WriteFn) {
        let mut args = Args::parse_str("c :: CanarySwitch", &format!("WEIGHTS {weights}"));
        let mut e = CanarySwitch::make(&mut args).unwrap();
        args.complete().unwrap();
        let n = weights.split_whitespace().count();
        e.initialize(&PortInfo {
            inputs: vec![Processing::Push],
            outputs: vec![Processing::Push; n],
        })
        .unwrap();
        let w = e.handlers()[0].write.clone().unwrap();
        (Harness::new(e, 1, n), w)
    }

    /// The output each of `flows` goes to.
    fn route(h: &mut Harness, flows: std::ops::Range<u64>, outputs: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let ids: Vec<u64> = flows.collect();
        for chunk in ids.chunks(256) {
            let mut b = Batch::new();
            for &i in chunk {
                let mut p = Packet::from_data(&flow_frame(i));
                p.anno.seq = i + 1;
                b.push(p);
            }
            h.push(0, b);
            let mut got: Vec<(u64, usize)> = Vec::new();
            for o in 0..outputs {
                for b in h.take(o) {
                    got.extend(b.iter().map(|p| (p.anno.seq - 1, o)));
                }
            }
            got.sort_unstable();
            out.extend(got.into_iter().map(|(_, o)| o));
        }
        out
    }

    #[test]
    fn shares_match_weights_within_one_point_over_100k_flows() {
        for (weights, expect) in [
            ("95 5", [0.95, 0.05, 0.0]),
            ("50 50", [0.5, 0.5, 0.0]),
            ("70 20 10", [0.7, 0.2, 0.1]),
        ] {
            let n = weights.split_whitespace().count();
            let (mut h, _) = canary(weights);
            let outs = route(&mut h, 0..100_000, n);
            for (o, e) in expect.iter().enumerate().take(n) {
                let share = outs.iter().filter(|&&x| x == o).count() as f64 / outs.len() as f64;
                assert!(
                    (share - e).abs() < 0.01,
                    "{weights}: output {o} got {share:.4}, want {e}"
                );
            }
        }
    }

    #[test]
    fn flows_are_sticky_and_raising_the_canary_only_moves_flows_to_it() {
        let (mut h, write) = canary("95 5");
        let before = route(&mut h, 0..100_000, 2);
        assert_eq!(route(&mut h, 0..100_000, 2), before, "same flow, same output");
        write("90 10").unwrap();
        let after = route(&mut h, 0..100_000, 2);
        let moved: Vec<(usize, usize)> = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (*a, *b))
            .collect();
        assert!(moved.iter().all(|&m| m == (0, 1)), "flows only move old -> new");
        let fraction = moved.len() as f64 / before.len() as f64;
        // The ideal is 5% of flows (the new branch's share grows 5 -> 10).
        eprintln!("raising 5 -> 10: moved {:.3}% of flows (ideal 5%)", fraction * 100.0);
        assert!((fraction - 0.05).abs() < 0.01, "moved {fraction}");
    }

    #[test]
    fn selector_forwards_each_flow_from_one_branch_only() {
        let mut args = Args::parse_str("c :: CanarySwitch", "WEIGHTS 90 10");
        let mut e = CanarySwitch::make(&mut args).unwrap();
        e.initialize(&PortInfo {
            inputs: vec![Processing::Push; 2],
            outputs: vec![Processing::Push],
        })
        .unwrap();
        let mut h = Harness::new(e, 2, 1);
        // Both branches carry every flow (a hub in front); the new branch
        // rewrote the addresses, but FlowHash stamped the flows first.
        let mut fh = crate::FlowHash;
        let mut seen = std::collections::HashMap::new();
        for port in 0..2 {
            let mut b = Batch::new();
            for i in 0..10_000u64 {
                let mut p = Packet::from_data(&flow_frame(i));
                p.anno.seq = i + 1;
                b.push(p);
            }
            fh.simple_action(&mut b);
            if port == 1 {
                for p in b.packets_mut() {
                    p.data_mut()[26] ^= 0xff; // NAT on the new branch
                }
            }
            h.push(port, b);
            for out in h.take(0) {
                for p in out.iter() {
                    *seen.entry(p.anno.seq).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(seen.len(), 10_000, "every flow forwarded");
        assert!(seen.values().all(|&n| n == 1), "exactly once: from one branch");
        let (mut args, mut e2) = (Args::parse_str("c :: CanarySwitch", "WEIGHTS 90 10"), None);
        e2.get_or_insert(CanarySwitch::make(&mut args).unwrap());
        let err = e2.unwrap().initialize(&PortInfo {
            inputs: vec![Processing::Push; 2],
            outputs: vec![Processing::Push; 2],
        });
        assert!(err.unwrap_err().contains("splitter"));
    }

    #[test]
    fn selector_weight_changes_are_exact_with_a_lagging_branch() {
        let mut args = Args::parse_str("c :: CanarySwitch", "WEIGHTS 50 50");
        let mut e = CanarySwitch::make(&mut args).unwrap();
        e.initialize(&PortInfo {
            inputs: vec![Processing::Push; 2],
            outputs: vec![Processing::Push],
        })
        .unwrap();
        let write = e.handlers()[0].write.clone().unwrap();
        let mut h = Harness::new(e, 2, 1);
        let batch = |r: std::ops::Range<u64>| {
            let mut b = Batch::new();
            for i in r {
                let mut p = Packet::from_data(&flow_frame(i % 500));
                p.anno.seq = i + 1;
                b.push(p);
            }
            b
        };
        // Branch 1 lags branch 0 by 3 batches; the weights change often.
        let mut seen = std::collections::HashMap::new();
        let mut collect = |h: &mut Harness| {
            for b in h.take(0) {
                for p in b.iter() {
                    *seen.entry(p.anno.seq).or_insert(0u32) += 1;
                }
            }
        };
        let weights = ["90 10", "10 90", "50 50", "100 0", "0 100"];
        for i in 0..100u64 {
            h.push(0, batch(i * 50..i * 50 + 50));
            if i >= 3 {
                h.push(1, batch((i - 3) * 50..(i - 3) * 50 + 50));
            }
            write(weights[i as usize % weights.len()]).unwrap();
            collect(&mut h);
        }
        for i in 97..100u64 {
            h.push(1, batch(i * 50..i * 50 + 50));
            collect(&mut h);
        }
        let missing: Vec<u64> = (1..=5000).filter(|s| !seen.contains_key(s)).collect();
        assert!(
            missing.is_empty(),
            "missing {} e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
        assert!(seen.values().all(|&n| n == 1), "none twice");
    }

    #[test]
    fn bad_weights_are_refused() {
        let (_, write) = canary("95 5");
        assert!(write("1 2 3").unwrap_err().contains("3 weights for 2 outputs"));
        assert!(write("0 0").unwrap_err().contains("all zero"));
        assert!(write("-1 5").unwrap_err().contains("not a non-negative integer"));
        assert!(write("100 0").is_ok(), "full rollback to the old branch");
    }

    #[test]
    fn a_pinned_weight_change_moves_new_flows_only() {
        use crate::testutil::{read, read_param, write, Pinned};
        let mut t = Pinned::new(CanarySwitch::CLASS, "WEIGHTS 100 0, PIN flows");
        let old: Vec<u16> = (1..=20).collect();
        assert_eq!(t.send(&old), [0; 20]);
        write(&t.hs, "weights", "50 50").unwrap();
        // Established flows stay; new ones split by weight.
        assert_eq!(t.send(&old), [0; 20]);
        let new: Vec<u16> = (100..300).collect();
        let got = t.send(&new);
        let ones = got.iter().filter(|&&b| b == 1).count();
        assert!((60..140).contains(&ones), "about half of 200 new flows on 1: {ones}");
        assert_eq!(t.send(&new), got, "and they stay where they started");
        assert_eq!(read(&t.hs, "drained"), "true", "no input has weight 0");
        write(&t.hs, "weights", "0 100").unwrap();
        assert_eq!(read(&t.hs, "drained"), "false", "input 0 still holds flows");
        assert_eq!(read_param(&t.hs, "pinned", "1").unwrap(), ones.to_string());
        write(&t.hs, "force", "0 100").unwrap();
        assert_eq!(t.send(&old), [1; 20], "forced: everything at once");
        assert_eq!(read_param(&t.hs, "drained", "0").unwrap(), "true");
        assert!(write(&t.hs, "force", "0 0").is_err());
    }

    #[test]
    fn pin_needs_the_selector_form() {
        let (_table, scope) = crate::testutil::flow_table();
        let mut c = crate::testutil::element(CanarySwitch::CLASS, "WEIGHTS 1 1, PIN flows");
        c.resolve(&scope).unwrap();
        let err = c
            .initialize(&PortInfo {
                inputs: vec![Processing::Push],
                outputs: vec![Processing::Push; 2],
            })
            .unwrap_err();
        assert!(err.contains("selector"), "{err}");
    }
}
