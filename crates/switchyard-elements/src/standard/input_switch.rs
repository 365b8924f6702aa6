use crate::rollback::flow_table::{self, FlowShared};
use crate::util::{check_position, SwitchPosition};
use std::collections::VecDeque;
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Scope};

documented! {
    /// Forwards packets from one input only and drops the others: the
    /// rollback selector. With a Tee feeding both branches, the branch on
    /// the selected input reaches production; flipping `switch` goes live
    /// or rolls back.
    ///
    /// The flip is exact: with packets numbered by the hub (Tee), a write
    /// takes effect at a sequence boundary S = (highest number seen on any
    /// input) + 1. The previous input stays accepted for numbers below S,
    /// the new one for S and above, so every packet leaves production
    /// exactly once even when the branches run with different latencies
    /// (one behind a Queue), provided each branch keeps its packets in
    /// order. Flipping away from a lagging branch lets its packets below S
    /// through after the other branch's first packets: reordering is
    /// bounded by that branch's lag. Packets no hub numbered switch at once,
    /// from the next batch.
    ///
    /// Pinned mode (`PIN NAME`, after a `FlowTable` named NAME before the
    /// hub): a flip applies to new flows only. Each flow stays on the
    /// branch that took its first packet until it ends (FINs both ways or
    /// an RST, then DONE_TIMEOUT; or an idle timeout), in both directions:
    /// the FlowTable stamps every packet with its flow's branch before the
    /// hub, and the selector forwards a packet only from the input its
    /// stamp names, so each packet still leaves production exactly once.
    /// The selector learns each flow's reply key from what its branch sent
    /// out (the 5-tuple after the branch, reversed), so a reply path's
    /// FlowTable input finds the pin even when the branch rewrote
    /// addresses and ports (a NAT). Every selector pinning with one table
    /// shares one position: a write to either moves both directions.
    /// Packets the table did not stamp follow the position, as above.
    ///
    /// # Ports
    /// Any number of inputs, one output; push.
    ///
    /// # Arguments
    /// - `K` (positional): the input to forward at start; -1 forwards none.
    ///   Default 0. `OUTPUT` is Click's keyword for it (Click's code reads
    ///   OUTPUT, though its documentation says INPUT).
    /// - `PIN`: the FlowTable that pins flows (pinned mode).
    ///
    /// # Handlers
    /// - `switch` (read/write, persistent): the input forwarded. A value
    ///   outside -1 to (inputs - 1) is refused (Click would silently set
    ///   -1 and drop all traffic); an accepted write applies from the next
    ///   batch without stopping traffic.
    /// - `boundary` (read): the sequence number at which the last flip took
    ///   effect (0 before any).
    /// - Pinned mode only:
    ///   - `switch` moves new flows only;
    ///   - `force` (write): moves every flow at once, for an emergency:
    ///     the table forgets its pins. Persisted as `switch`.
    ///   - `pinned` (read): flows pinned per input, space-separated
    ///     (`50 20`); with a parameter K, input K's count.
    ///   - `drained` (read): `true` when no flow is pinned to an input other
    ///     than the current one (the old branch may be removed); with a
    ///     parameter K, when none is pinned to input K.
    ///
    /// # Example
    /// ```text
    /// hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
    /// hub[1] -> new :: Counter -> [1]sel;
    /// sel -> out :: Counter -> Discard;
    /// ```
    pub struct InputSwitch {
        position: SwitchPosition,
        ports: usize,
        generation: u64,
        /// `(first sequence number, input)`, sorted: packet `s` from input
        /// `k` passes if the last segment starting at or below `s` is `k`'s.
        segments: VecDeque<(u64, i64)>,
        max_seen: u64,
        /// Highest sequence number seen per input (for forgetting segments).
        last_seen: Vec<u64>,
        boundary: std::sync::Arc<std::sync::atomic::AtomicU64>,
        /// Pinned mode: the FlowTable's name, then what it lent.
        pin: Option<String>,
        flows: Option<Arc<FlowShared>>,
    }
}

/// Flips kept before the oldest is forgotten; only a flip storm faster
/// than a branch's lag could need more.
const MAX_SEGMENTS: usize = 1024;

impl InputSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "InputSwitch",
        ports: "-/1",
        processing: "h/h",
        doc: InputSwitch::DOC,
        factory: InputSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let k = crate::standard::switch::read_output(args, false).unwrap_or(0);
        let pin = args.read::<String>("PIN");
        let position = SwitchPosition::new(k);
        Some(Box::new(InputSwitch {
            generation: position.generation(),
            position,
            ports: 0,
            segments: VecDeque::from([(0, k)]),
            max_seen: 0,
            last_seen: Vec::new(),
            boundary: Default::default(),
            pin,
            flows: None,
        }))
    }

    /// Records a write made since the last batch as a new segment.
    fn take_write(&mut self) {
        let generation = self.position.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let target = self.position.get();
        if self.segments.back().is_some_and(|&(_, k)| k == target) {
            return;
        }
        let start = self.max_seen + 1;
        // A flip before any packet of the last segment arrived replaces it.
        while self.segments.len() > 1 && self.segments.back().is_some_and(|&(s, _)| s >= start) {
            self.segments.pop_back();
        }
        self.segments.push_back((start, target));
        if self.segments.len() > MAX_SEGMENTS {
            self.segments.pop_front();
        }
        self.boundary.store(start, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets segments no future packet can fall into: each input's
    /// packets arrive in order, so once an input is past a segment's end,
    /// nothing of it can still match.
    fn forget_old_segments(&mut self) {
        while self.segments.len() > 1 {
            let (_, k) = self.segments[0];
            let end = self.segments[1].0;
            let past = if k < 0 {
                self.last_seen.iter().all(|&s| s + 1 >= end)
            } else {
                self.last_seen.get(k as usize).is_some_and(|&s| s + 1 >= end)
            };
            if !past {
                return;
            }
            self.segments.pop_front();
        }
    }

    #[inline]
    fn owner(&self, seq: u64) -> Option<i64> {
        self.segments
            .iter()
            .rev()
            .find(|&&(start, _)| start <= seq)
            .map(|&(_, k)| k)
    }
}

impl Element for InputSwitch {
    fn take_state(&mut self, old: Box<dyn Element>) {
        // The position survives a reload (Click's hotconfig would reset it
        // to the new text's K and silently undo a rollback).
        // With the same inputs, the segments go on too: packets still on
        // their way (in a Queue, a late branch) that a reload did not stop
        // are counted exactly once.
        if let Some(old) = downcast::<InputSwitch>(old) {
            let k = old.position.get();
            if self.flows.is_some() {
                // The position is the table's, shared with the other
                // selectors: it takes the old value, not the old object.
                if k < self.ports as i64 {
                    self.position.set(k);
                    self.generation = self.position.generation();
                    self.segments = VecDeque::from([(0, k)]);
                    self.max_seen = old.max_seen;
                }
                self.boundary = old.boundary;
                return;
            }
            if old.ports == self.ports {
                self.position = old.position;
                self.generation = old.generation;
                self.segments = old.segments;
                self.max_seen = old.max_seen;
                self.last_seen = old.last_seen;
            } else if k < self.ports as i64 {
                self.position = old.position;
                self.generation = self.position.generation();
                self.segments = VecDeque::from([(0, k)]);
                self.max_seen = old.max_seen;
            }
            self.boundary = old.boundary;
        }
    }

    fn resolve(&mut self, scope: &Scope) -> Result<(), String> {
        let Some(flows) = flow_table::named(scope, self.pin.as_deref())? else {
            return Ok(());
        };
        self.position = flows.attach_position(&self.position, 0)?;
        self.generation = self.position.generation();
        self.flows = Some(flows);
        Ok(())
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        self.ports = ports.inputs.len();
        if let Some(flows) = &self.flows {
            flows.attach_position(&self.position, self.ports)?;
        }
        self.last_seen = vec![0; self.ports];
        check_position(self.position.get(), self.ports)?;
        Ok(false)
    }

    fn push(&mut self, port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        if let Some(flows) = &self.flows {
            // Stamped packets go by their stamp; the rest (if any) by the
            // position, below.
            match flow_table::select(flows, port, batch, cx) {
                Some(rest) => batch = rest,
                None => return,
            }
        }
        self.take_write();
        let (mut lo, mut hi) = (u64::MAX, 0);
        for p in batch.iter() {
            lo = lo.min(p.anno.seq);
            hi = hi.max(p.anno.seq);
        }
        if lo == 0 {
            // Not numbered by a hub: the position decides at once.
            if self.segments.back().is_some_and(|&(_, k)| k == port as i64) {
                cx.push(0, batch);
            }
            return;
        }
        self.max_seen = self.max_seen.max(hi);
        if let Some(s) = self.last_seen.get_mut(port) {
            *s = (*s).max(hi);
        }
        let me = port as i64;
        if self.segments.len() == 1 {
            let (start, k) = self.segments[0];
            if k != me {
                return;
            }
            if lo < start {
                batch.retain(|p| p.anno.seq >= start);
            }
        } else {
            batch.retain(|p| self.owner(p.anno.seq) == Some(me));
            self.forget_old_segments();
        }
        if !batch.is_empty() {
            cx.push(0, batch);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let b = self.boundary.clone();
        let mut handlers = vec![
            self.position.handler(self.ports),
            // Each copy flips at its own boundary.
            Handler::read_only("boundary", move || {
                b.load(std::sync::atomic::Ordering::Relaxed).to_string()
            })
            .merged(switchyard_core::Merge::List),
        ];
        if let Some(flows) = &self.flows {
            let c = self.position.clone();
            let current = move |i: usize| c.get() == i as i64;
            let pinned = flow_table::pinned_handlers(flows, self.ports, &handlers[0], current);
            handlers.extend(pinned);
        }
        handlers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Annotations, Harness, Processing};

    #[test]
    fn input_is_positional_or_clicks_output_keyword() {
        for config in ["1", "K 1", "OUTPUT 1", "1, PIN flows"] {
            let e = crate::testutil::configure("sel :: InputSwitch", InputSwitch::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
    }

    fn batch(seqs: std::ops::Range<u64>) -> Batch {
        let mut b = Batch::new();
        for s in seqs {
            let mut p = switchyard_core::Packet::from_data(&[0; 8]);
            p.anno = Annotations {
                seq: s,
                ..Default::default()
            };
            b.push(p);
        }
        b
    }

    /// A two-input InputSwitch at position `k`, alone in a harness, and
    /// its `switch` write handler.
    fn switch(k: i64) -> (Harness, switchyard_core::handler::WriteFn) {
        let mut args = Args::parse_str("sel :: InputSwitch", &k.to_string());
        let mut e = InputSwitch::make(&mut args).unwrap();
        e.initialize(&PortInfo {
            inputs: vec![Processing::Push; 2],
            outputs: vec![Processing::Push],
        })
        .unwrap();
        let write = e.handlers()[0].write.clone().unwrap();
        (Harness::new(e, 2, 1), write)
    }

    fn seqs(h: &mut Harness) -> Vec<u64> {
        h.take(0)
            .iter()
            .flat_map(|b| b.iter().map(|p| p.anno.seq).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn flip_towards_a_lagging_branch_is_exact() {
        let (mut h, write) = switch(0);
        // Branch 0 is ahead: 1..=20 arrived; branch 1 has delivered 1..=10.
        h.push(0, batch(1..21));
        h.push(1, batch(1..11));
        write("1").unwrap();
        h.push(0, batch(21..31)); // old branch past the boundary: dropped
        h.push(1, batch(11..31)); // new branch catches up: only 21.. pass
        let out = seqs(&mut h);
        assert_eq!(out, (1..31).collect::<Vec<_>>());
    }

    #[test]
    fn flip_away_from_a_lagging_branch_is_exact() {
        let (mut h, write) = switch(1);
        // Production is branch 1, which lags: 1..=10 delivered, branch 0 at 20.
        h.push(0, batch(1..21));
        h.push(1, batch(1..11));
        write("0").unwrap();
        h.push(0, batch(21..31)); // boundary 21: branch 0 from 21 on
        h.push(1, batch(11..31)); // branch 1 still owns 11..=20
        let mut out = seqs(&mut h);
        assert_eq!(out.len(), 30);
        out.sort_unstable();
        assert_eq!(out, (1..31).collect::<Vec<_>>(), "each exactly once");
    }

    #[test]
    fn many_flips_between_batches_never_duplicate_or_lose() {
        let (mut h, write) = switch(0);
        // Branch 1 lags branch 0 by 3 batches of 5; flip after every batch.
        let lag = 3;
        for i in 0..200u64 {
            h.push(0, batch(i * 5 + 1..i * 5 + 6));
            if i >= lag {
                let j = i - lag;
                h.push(1, batch(j * 5 + 1..j * 5 + 6));
            }
            write(if i % 2 == 0 { "1" } else { "0" }).unwrap();
        }
        for j in 200 - lag..200 {
            h.push(1, batch(j * 5 + 1..j * 5 + 6));
        }
        let mut out = seqs(&mut h);
        let n = out.len();
        out.sort_unstable();
        out.dedup();
        assert_eq!(out.len(), n, "no duplicates");
        // Everything up to the last flip's boundary is delivered; after it,
        // branch 0 owns the rest and delivered up to 1000.
        assert_eq!(out, (1..1001).collect::<Vec<_>>());
    }

    #[test]
    fn unnumbered_packets_switch_at_once() {
        let (mut h, write) = switch(0);
        h.push(0, batch(0..0));
        let mut b = Batch::new();
        b.push(switchyard_core::Packet::from_data(&[1]));
        h.push(1, b);
        assert_eq!(h.count(0), 0);
        write("1").unwrap();
        let mut b = Batch::new();
        b.push(switchyard_core::Packet::from_data(&[1]));
        h.push(1, b);
        assert_eq!(h.count(0), 1);
        assert!(write("2").is_err());
    }

    #[test]
    fn a_pinned_flip_moves_new_flows_only_and_force_moves_all() {
        use crate::testutil::{read, read_param, write, Pinned};
        let mut t = Pinned::new(InputSwitch::CLASS, "0, PIN flows");
        assert_eq!(t.send(&[1, 2, 3]), [0, 0, 0]);
        write(&t.hs, "switch", "1").unwrap();
        // Established flows stay on 0; new ones (4, 5) take 1.
        assert_eq!(t.send(&[1, 4, 2, 5, 3]), [0, 1, 0, 1, 0]);
        assert_eq!(read(&t.hs, "pinned"), "3 2");
        assert_eq!(read_param(&t.hs, "pinned", "1").unwrap(), "2");
        assert_eq!(read(&t.hs, "drained"), "false");
        assert_eq!(read_param(&t.hs, "drained", "0").unwrap(), "false");
        // Rolling back the same way: 4 and 5 stay on 1.
        write(&t.hs, "switch", "0").unwrap();
        assert_eq!(t.send(&[4, 6, 1]), [1, 0, 0]);
        assert!(write(&t.hs, "force", "2").is_err(), "out of range");
        write(&t.hs, "force", "1").unwrap();
        assert_eq!(t.send(&[1, 4, 6, 7]), [1, 1, 1, 1], "forced: everything at once");
        assert_eq!(read(&t.hs, "switch"), "1");
        assert_eq!(read(&t.hs, "pinned"), "0 4");
        assert_eq!(read(&t.hs, "drained"), "true");
        assert_eq!(read_param(&t.hs, "drained", "0").unwrap(), "true");
        assert!(read_param(&t.hs, "drained", "2").is_err());
    }

    #[test]
    fn a_pin_names_a_flow_table() {
        let mut sel = crate::testutil::element(InputSwitch::CLASS, "0, PIN nosuch");
        let err = sel.resolve(&switchyard_core::Scope::default()).unwrap_err();
        assert_eq!(err, "PIN: no FlowTable named 'nosuch'");
    }
}
