use crate::util::Drops;
use crate::util::{self, Verdict};
use switchyard_core::{documented, downcast, Annotations, Args, Batch, Context, Element, ElementClass, Handler};

documented! {
    /// Drops packets that arrived as link-level broadcast or multicast
    /// (Click's DropBroadcasts): a router must not forward them. It reads
    /// the packet type annotation that FromDevice or HostEtherFilter set;
    /// packets of type BROADCAST or MULTICAST go to output 1 if there is
    /// one, else are dropped.
    ///
    /// # Ports
    /// One input; one or two outputs. Input and output 0 agnostic, output
    /// 1 push.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// - `drops` (read): packets dropped (or sent to output 1).
    ///
    /// # Example
    /// ```text
    /// rt[1] -> DropBroadcasts -> PaintTee(1) -> IPGWOptions(10.0.0.1) -> ...;
    /// ```
    pub struct DropBroadcasts {
        drops: Drops,
    }
}

impl DropBroadcasts {
    pub const CLASS: ElementClass = ElementClass {
        name: "DropBroadcasts",
        ports: "1/1-2",
        processing: "a/ah",
        doc: DropBroadcasts::DOC,
        factory: DropBroadcasts::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(DropBroadcasts {
            drops: Drops::default(),
        }))
    }

    /// Takes the broadcasts out of `batch`; returns them when `refused`
    /// says to keep them for output 1.
    fn filter(&mut self, batch: &mut Batch, refused: Verdict) -> Option<Batch> {
        let mut n = 0u64;
        let rejects = util::sort_out(batch, |p| {
            if p.anno.pkt_type == Annotations::BROADCAST || p.anno.pkt_type == Annotations::MULTICAST {
                n += 1;
                refused
            } else {
                Verdict::Pass
            }
        });
        if n > 0 {
            self.drops.add(n as usize);
        }
        rejects
    }
}

impl Element for DropBroadcasts {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<DropBroadcasts>(old) {
            self.drops = old.drops;
        }
    }

    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let rejects = self.filter(&mut batch, Verdict::refused(cx));
        util::push_sorted(cx, batch, rejects);
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let rejects = self.filter(&mut batch, Verdict::refused(cx));
        util::push_rejects(cx, rejects);
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.drops.handler()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{element, read};
    use switchyard_core::{Harness, Packet};

    fn batch(types: &[u8]) -> Batch {
        let mut b = Batch::new();
        for (i, &t) in types.iter().enumerate() {
            let mut p = Packet::from_data(&[i as u8]);
            p.anno.pkt_type = t;
            b.push(p);
        }
        b
    }

    fn ids(batches: Vec<Batch>) -> Vec<u8> {
        batches.iter().flat_map(|b| b.iter().map(|p| p.data()[0])).collect()
    }

    const TYPES: [u8; 5] = [
        Annotations::HOST,
        Annotations::BROADCAST,
        Annotations::OTHERHOST,
        Annotations::MULTICAST,
        Annotations::OUTGOING,
    ];

    #[test]
    fn drops_link_broadcasts_and_counts_them() {
        let e = element(DropBroadcasts::CLASS, "");
        let hs = e.handlers();
        let mut h = Harness::new(e, 1, 1);
        h.push(0, batch(&TYPES));
        assert_eq!(ids(h.take(0)), vec![0, 2, 4]);
        h.push(0, batch(&[Annotations::HOST; 3]));
        assert_eq!(h.count(0), 3);
        assert_eq!(read(&hs, "drops"), "2");
    }

    #[test]
    fn second_output_gets_the_broadcasts() {
        let mut h = Harness::new(element(DropBroadcasts::CLASS, ""), 1, 2);
        h.push(0, batch(&TYPES));
        assert_eq!(ids(h.take(0)), vec![0, 2, 4]);
        assert_eq!(ids(h.take(1)), vec![1, 3]);
        h.push(0, batch(&[Annotations::BROADCAST]));
        assert!(h.take(0).is_empty());
        assert_eq!(h.count(1), 1);
    }
}
