//! Splitting a batch among an element's outputs: switches, classifiers,
//! route lookups and rewriters decide an output per packet; this module turns those decisions into at most one
//! batch per output, with scratch space allocated once and reused, and
//! passes a batch that goes one way entirely on as it is.

use switchyard_core::{Batch, Context, Packet};

/// An output number that drops the packet.
pub const DROP: usize = usize::MAX;

/// Reusable per-element scratch for splitting batches.
pub struct Scatter {
    choice: Vec<usize>,
    out: Vec<Option<Batch>>,
}

impl Scatter {
    /// Empty, allocating nothing: the scratch grows on first use and is
    /// kept, and a placeholder swapped in while the real one is borrowed
    /// (`std::mem::take`) costs nothing.
    pub fn new() -> Scatter {
        Scatter {
            choice: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Sends each packet of `batch` to the output `choose` names for it;
    /// [`DROP`] or a number past the last output drops it. `choose` is
    /// called once per packet, in order, so it may keep state (a
    /// round-robin position) and may change the packet (a route lookup
    /// replaces the destination annotation with the gateway).
    #[inline]
    pub fn send(&mut self, batch: Batch, cx: &mut Context<'_>, mut choose: impl FnMut(&mut Packet) -> usize) {
        self.send_with(batch, cx, |b, choice| {
            choice.extend(b.packets_mut().iter_mut().map(&mut choose));
        });
    }

    /// [`send`](Self::send) for a caller that chooses for the whole batch
    /// at once: `fill` pushes one output per packet, in order (a NAT
    /// looks its mappings up under one lock, released before anything is
    /// pushed on).
    #[inline]
    pub fn send_with(
        &mut self,
        mut batch: Batch,
        cx: &mut Context<'_>,
        fill: impl FnOnce(&mut Batch, &mut Vec<usize>),
    ) {
        let n = cx.noutputs();
        self.choice.clear();
        fill(&mut batch, &mut self.choice);
        debug_assert_eq!(self.choice.len(), batch.len(), "one choice per packet");
        let Some(&first) = self.choice.first() else {
            return;
        };
        if self.choice.iter().all(|&c| c == first) {
            if first < n {
                cx.push(first, batch);
            }
            return;
        }
        self.out.resize_with(n, || None);
        for (p, &c) in batch.drain().zip(&self.choice) {
            if let Some(slot) = self.out.get_mut(c) {
                slot.get_or_insert_with(Batch::new).push(p);
            }
        }
        drop(batch);
        for (port, slot) in self.out.iter_mut().enumerate() {
            if let Some(b) = slot.take() {
                cx.push(port, b);
            }
        }
    }
}

impl Default for Scatter {
    fn default() -> Scatter {
        Scatter::new()
    }
}
