use super::scatter::Scatter;
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass};

documented! {
    /// Sends each packet to the next output in turn (Click's
    /// RoundRobinSwitch): output 0, 1, ..., N-1, 0, ... packet by packet,
    /// not batch by batch.
    ///
    /// # Ports
    /// One input, one or more outputs; push.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// rr :: RoundRobinSwitch; rr[0] -> q0; rr[1] -> q1;
    /// ```
    pub struct RoundRobinSwitch {
        next: usize,
        scatter: Scatter,
    }
}

impl RoundRobinSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "RoundRobinSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: RoundRobinSwitch::DOC,
        factory: RoundRobinSwitch::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(RoundRobinSwitch {
            next: 0,
            scatter: Scatter::new(),
        }))
    }
}

impl Element for RoundRobinSwitch {
    fn take_state(&mut self, old: Box<dyn Element>) {
        // The rotation goes on where it was rather than favouring output 0.
        if let Some(old) = downcast::<RoundRobinSwitch>(old) {
            self.next = old.next;
        }
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        let n = cx.noutputs().max(1);
        let next = &mut self.next;
        self.scatter.send(batch, cx, |_| {
            let out = if *next >= n { 0 } else { *next };
            *next = out + 1;
            out
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet};

    fn batch(first: u8, n: u8) -> Batch {
        let mut b = Batch::new();
        for i in first..first + n {
            b.push(Packet::from_data(&[i]));
        }
        b
    }

    #[test]
    fn rotates_packet_by_packet_across_batches() {
        let mut args = Args::parse_str("rr :: RoundRobinSwitch", "");
        let e = RoundRobinSwitch::make(&mut args).unwrap();
        args.complete().unwrap();
        let mut h = Harness::new(e, 1, 3);
        h.push(0, batch(0, 7));
        h.push(0, batch(7, 5));
        for o in 0..3 {
            let got: Vec<u8> = h.take(o).iter().flat_map(|b| b.iter().map(|p| p.data()[0])).collect();
            let want: Vec<u8> = (0..12).filter(|i| i % 3 == o as u8).collect();
            assert_eq!(got, want, "output {o}");
        }
    }

    #[test]
    fn equal_shares_over_many_packets() {
        let mut h = Harness::new(RoundRobinSwitch::make(&mut Args::parse_str("rr", "")).unwrap(), 1, 4);
        for _ in 0..100 {
            h.push(0, batch(0, 250));
        }
        let counts: Vec<usize> = (0..4).map(|o| h.count(o)).collect();
        assert_eq!(counts, vec![6250; 4]);
    }

    #[test]
    fn one_output_gets_the_batch_as_it_is() {
        let mut h = Harness::new(RoundRobinSwitch::make(&mut Args::parse_str("rr", "")).unwrap(), 1, 1);
        h.push(0, batch(0, 10));
        let out = h.take(0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), 10);
    }
}
