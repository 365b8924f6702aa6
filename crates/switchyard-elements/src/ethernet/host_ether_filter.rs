use super::ether_cell::EtherCell;
use crate::util::Drops;
use crate::wire::{EtherAddr, ETHER_HEADER_LEN};
use std::sync::Arc;
use switchyard_core::{
    documented, downcast, Annotations, Args, Batch, Context, Element, ElementClass, Handler, Packet,
};

documented! {
    /// Acts as the Ethernet input hardware of a host with address ETHER
    /// (Click's HostEtherFilter): sets each frame's packet type annotation
    /// from its destination, HOST (ETHER), BROADCAST (ff:ff:ff:ff:ff:ff),
    /// MULTICAST (any other group address) or OTHERHOST, and filters:
    /// - with DROP_OWN, frames whose source is ETHER (our own, looped back);
    /// - with DROP_OTHER, frames for other hosts (OTHERHOST).
    ///
    /// Filtered frames go to output 1 if there is one, else are dropped.
    /// A frame too short for an Ethernet header (at OFFSET) is filtered the
    /// same way and its annotation left alone, where Click would read past
    /// it.
    ///
    /// # Ports
    /// One input; one or two outputs. Input and output 0 agnostic, output
    /// 1 push.
    ///
    /// # Arguments
    /// - `ETHER` (positional, mandatory): this host's Ethernet address.
    /// - `DROP_OWN` (positional or keyword): filter frames sent by ETHER;
    ///   default false.
    /// - `DROP_OTHER` (positional or keyword): filter frames for other
    ///   hosts; default true.
    /// - `OFFSET`: where the Ethernet header starts in the packet; default 0.
    ///
    /// # Handlers
    /// - `ether` (read/write): ETHER, read as Click prints it
    ///   (`00-1A-2B-3C-4D-5E`); a write applies from the next batch.
    /// - `drops` (read): frames filtered, to output 1 or dropped (Switchyard's).
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0) -> HostEtherFilter(00:1a:2b:3c:4d:5e, DROP_OWN true) -> c :: Classifier(...);
    /// ```
    pub struct HostEtherFilter {
        ether: Arc<EtherCell>,
        drop_own: bool,
        drop_other: bool,
        offset: usize,
        drops: Drops,
    }
}

impl HostEtherFilter {
    pub const CLASS: ElementClass = ElementClass {
        name: "HostEtherFilter",
        ports: "1/1-2",
        processing: "a/ah",
        doc: HostEtherFilter::DOC,
        factory: HostEtherFilter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let ether = args.read_mp::<EtherAddr>("ETHER");
        let drop_own = args.read_p::<bool>("DROP_OWN").unwrap_or(false);
        let drop_other = args.read_p::<bool>("DROP_OTHER").unwrap_or(true);
        let offset = args.read::<usize>("OFFSET").unwrap_or(0);
        Some(Box::new(HostEtherFilter {
            ether: EtherCell::new(ether?),
            drop_own,
            drop_other,
            offset,
            drops: Drops::default(),
        }))
    }

    /// Annotates every frame and removes the filtered ones from `batch`:
    /// returned when `keep_rejects`, else dropped.
    fn filter(&mut self, batch: &mut Batch, keep_rejects: bool) -> Option<Batch> {
        let me = self.ether.get();
        let (drop_own, drop_other, offset) = (self.drop_own, self.drop_other, self.offset);
        let classify = |p: &mut Packet| -> bool {
            let Some((dst, src)) = addresses(p.data(), offset) else {
                return false;
            };
            if drop_own && src == me {
                return false;
            }
            p.anno.pkt_type = if dst == me {
                Annotations::HOST
            } else if dst == EtherAddr::BROADCAST {
                Annotations::BROADCAST
            } else if dst.is_group() {
                Annotations::MULTICAST
            } else {
                Annotations::OTHERHOST
            };
            !(drop_other && p.anno.pkt_type == Annotations::OTHERHOST)
        };
        let mut rejects: Option<Batch> = None;
        if keep_rejects {
            // Frames for this host are the common case: the batch stays
            // as it is up to the first reject, and only what follows moves.
            let first = batch.packets_mut().iter_mut().position(|p| !classify(p));
            if let Some(i) = first {
                let mut tail = batch.split_off(i);
                let mut it = tail.drain();
                let out = rejects.insert(Batch::new());
                out.extend(it.next());
                for mut p in it {
                    if classify(&mut p) {
                        batch.push(p);
                    } else {
                        out.push(p);
                    }
                }
            }
            self.drops.add(rejects.as_ref().map_or(0, Batch::len));
        } else {
            self.drops.retain(batch, classify);
        }
        rejects
    }
}

/// The destination and source of the Ethernet header at `offset`; None if
/// the packet is too short for one.
fn addresses(data: &[u8], offset: usize) -> Option<(EtherAddr, EtherAddr)> {
    let eh = data.get(offset..)?.first_chunk::<ETHER_HEADER_LEN>()?;
    let (dst, rest) = eh.split_first_chunk::<6>()?;
    let src = rest.first_chunk::<6>()?;
    Some((EtherAddr(*dst), EtherAddr(*src)))
}

impl Element for HostEtherFilter {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<HostEtherFilter>(old) {
            self.drops = old.drops;
        }
    }

    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let two = cx.noutputs() > 1;
        if let Some(rejects) = self.filter(&mut batch, two) {
            cx.push(1, rejects);
        }
        if !batch.is_empty() {
            cx.push(0, batch);
        }
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let two = cx.noutputs() > 1;
        if let Some(rejects) = self.filter(&mut batch, two) {
            cx.push(1, rejects);
        }
        Some(batch)
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.ether.handler("ether"), self.drops.handler()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::Harness;

    const ME: [u8; 6] = [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e];
    const OTHER: [u8; 6] = [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x99];

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Packet {
        let mut f = Vec::from(dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&crate::wire::tests::ipv4_packet(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            64,
            8,
        ));
        Packet::from_data(&f)
    }

    fn filter(config: &str, outputs: usize) -> (Harness, Vec<Handler>) {
        let mut args = Args::parse_str("f :: HostEtherFilter", config);
        let e = HostEtherFilter::make(&mut args).unwrap();
        args.complete().unwrap();
        let hs = e.handlers();
        (Harness::new(e, 1, outputs), hs)
    }

    fn types(batches: Vec<Batch>) -> Vec<u8> {
        batches.iter().flat_map(|b| b.iter().map(|p| p.anno.pkt_type)).collect()
    }

    #[test]
    fn annotates_and_filters_like_click() {
        let (mut h, hs) = filter("00:1a:2b:3c:4d:5e, true", 2);
        let mut b = Batch::new();
        b.push(frame(ME, OTHER));
        b.push(frame([0xff; 6], OTHER));
        b.push(frame([0x01, 0x00, 0x5e, 0, 0, 1], OTHER));
        b.push(frame(OTHER, ME)); // our own: filtered
        b.push(frame(OTHER, OTHER)); // for another host: filtered
        let mut own_looped = frame(ME, ME);
        own_looped.anno.pkt_type = Annotations::OUTGOING;
        b.push(own_looped);
        h.push(0, b);
        assert_eq!(
            types(h.take(0)),
            vec![Annotations::HOST, Annotations::BROADCAST, Annotations::MULTICAST]
        );
        // The own frame keeps its annotation; the other-host one is marked.
        assert_eq!(
            types(h.take(1)),
            vec![Annotations::HOST, Annotations::OTHERHOST, Annotations::OUTGOING]
        );
        assert_eq!((hs[1].read.as_ref().unwrap())(), "3");
        assert_eq!((hs[0].read.as_ref().unwrap())(), "00-1A-2B-3C-4D-5E");
    }

    #[test]
    fn defaults_keep_own_and_drop_other_without_a_second_output() {
        let (mut h, _) = filter("00:1a:2b:3c:4d:5e", 1);
        let mut b = Batch::new();
        b.push(frame([0xff; 6], ME)); // our own broadcast, kept by default
        b.push(frame(OTHER, OTHER));
        b.push(frame(ME, OTHER));
        h.push(0, b);
        assert_eq!(types(h.take(0)), vec![Annotations::BROADCAST, Annotations::HOST]);
        let (mut h, _) = filter("00:1a:2b:3c:4d:5e, DROP_OTHER false", 1);
        let mut b = Batch::new();
        b.push(frame(OTHER, OTHER));
        h.push(0, b);
        assert_eq!(types(h.take(0)), vec![Annotations::OTHERHOST]);
    }

    #[test]
    fn kept_and_filtered_frames_keep_their_order() {
        let (mut h, hs) = filter("00:1a:2b:3c:4d:5e", 2);
        let mut b = Batch::new();
        for (i, dst) in [ME, OTHER, ME, OTHER, [0xff; 6], ME].into_iter().enumerate() {
            let mut p = frame(dst, OTHER);
            p.anno.paint = i as u8;
            b.push(p);
        }
        h.push(0, b);
        let paints =
            |batches: Vec<Batch>| -> Vec<u8> { batches.iter().flat_map(|b| b.iter().map(|p| p.anno.paint)).collect() };
        assert_eq!(paints(h.take(0)), vec![0, 2, 4, 5]);
        assert_eq!(paints(h.take(1)), vec![1, 3]);
        assert_eq!((hs[1].read.as_ref().unwrap())(), "2");
        // Nothing filtered: the batch leaves whole, nothing on output 1.
        let mut b = Batch::new();
        b.push(frame(ME, OTHER));
        b.push(frame([0xff; 6], OTHER));
        h.push(0, b);
        assert_eq!(h.take(0).len(), 1);
        assert_eq!(h.count(1), 0);
    }

    #[test]
    fn offset_and_short_frames() {
        let (mut h, hs) = filter("00:1a:2b:3c:4d:5e, OFFSET 4", 2);
        let mut tagged = vec![0xaa; 4];
        tagged.extend_from_slice(frame(ME, OTHER).data());
        let mut b = Batch::new();
        b.push(Packet::from_data(&tagged));
        b.push(Packet::from_data(&tagged[..17]));
        b.push(Packet::from_data(&[]));
        h.push(0, b);
        assert_eq!(types(h.take(0)), vec![Annotations::HOST]);
        assert_eq!(h.count(1), 2);
        assert_eq!((hs[1].read.as_ref().unwrap())(), "2");
        // A write to `ether` applies from the next batch.
        (hs[0].write.as_ref().unwrap())("00:1a:2b:3c:4d:99").unwrap();
        let mut b = Batch::new();
        b.push(Packet::from_data(&tagged));
        h.push(0, b);
        assert_eq!(h.count(0), 0);
        assert_eq!(types(h.take(1)), vec![Annotations::OTHERHOST]);
    }
}
