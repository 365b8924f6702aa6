use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, PortCount};

documented! {
    /// Sends every packet to every output: the hub that feeds both the old
    /// and the new branch. Outputs share the packet data (no copy); an
    /// element that writes to a packet gets its own copy first.
    ///
    /// A packet not yet numbered gets the next hub sequence number (1, 2,
    /// ...) in its `seq` annotation; InputSwitch uses it to cut over between
    /// branches exactly once. Tees further down the branches keep the
    /// hub's numbers.
    ///
    /// # Ports
    /// One input, one or more outputs (exactly N if N is given); push.
    ///
    /// # Arguments
    /// - `N` (positional): number of outputs; default: as many as connected.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// src -> hub :: Tee(2); hub[0] -> old; hub[1] -> new;
    /// ```
    pub struct Tee {
        n: Option<u32>,
        next_seq: u64,
    }
}

impl Tee {
    pub const CLASS: ElementClass = ElementClass {
        name: "Tee",
        ports: "1/1-",
        processing: "h/h",
        doc: Tee::DOC,
        factory: Tee::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let n = args.read_p::<u32>("N");
        if n == Some(0) {
            args.error(None, "N must be at least 1");
            return None;
        }
        Some(Box::new(Tee { n, next_seq: 1 }))
    }
}

impl Element for Tee {
    fn take_state(&mut self, old: Box<dyn Element>) {
        // Numbering goes on where it was: sequence numbers stay unique.
        if let Some(old) = downcast::<Tee>(old) {
            self.next_seq = old.next_seq;
        }
    }

    fn port_count(&self) -> Option<PortCount> {
        self.n.map(|n| PortCount::exactly(1, n))
    }

    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        if batch.packets().first().is_some_and(|p| p.anno.seq == 0) {
            for p in batch.packets_mut() {
                p.anno.seq = self.next_seq;
                self.next_seq += 1;
            }
        }
        // Outputs in order, as Click's Tee; the last gets the original.
        let n = cx.noutputs();
        for out in 0..n.saturating_sub(1) {
            cx.push(out, batch.share());
        }
        cx.push(n - 1, batch);
    }
}
