use crate::util::Drops;
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler};

documented! {
    /// Marks each packet's network header: it starts OFFSET bytes into the
    /// packet and its length is the header length field (IHL) times four
    /// (Click's MarkIPHeader). Checks nothing else: no version, no total
    /// length, no checksum, and it does not set the destination address
    /// annotation; CheckIPHeader does all that.
    ///
    /// Where Click would read or point past the packet, Switchyard does
    /// not: a packet with no byte at OFFSET is dropped and counted, and a
    /// header length running past the end is cut to the bytes there are,
    /// so later elements never see a header beyond the data. An IHL below
    /// 5 is marked as it is (a short, invalid header, for CheckIPHeader to
    /// refuse).
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `OFFSET` (positional): where the IP header starts; default 0.
    ///
    /// # Handlers
    /// - `drops` (read): packets too short to hold a byte at OFFSET
    ///   (Switchyard's).
    ///
    /// # Example
    /// ```text
    /// c[2] -> MarkIPHeader(14) -> GetIPAddress(IP dst) -> ...;
    /// ```
    pub struct MarkIPHeader {
        offset: usize,
        drops: Drops,
    }
}

impl MarkIPHeader {
    pub const CLASS: ElementClass = ElementClass {
        name: "MarkIPHeader",
        ports: "1/1",
        processing: "a/a",
        doc: MarkIPHeader::DOC,
        factory: MarkIPHeader::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let offset = args.read_p::<usize>("OFFSET").unwrap_or(0);
        Some(Box::new(MarkIPHeader {
            offset,
            drops: Drops::default(),
        }))
    }
}

impl Element for MarkIPHeader {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<MarkIPHeader>(old) {
            self.drops = old.drops;
        }
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        let offset = self.offset;
        self.drops.retain(batch, |p| {
            let Some(&first) = p.data().get(offset) else {
                return false;
            };
            let header_len = usize::from(first & 0xf) * 4;
            let room = p.len() - offset;
            p.set_network_header(offset, header_len.min(room));
            true
        });
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.drops.handler()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{element, push_through, read};
    use crate::wire::tests::ipv4_packet;
    use switchyard_core::Packet;

    fn run(config: &str, packets: Vec<Vec<u8>>) -> (Vec<Packet>, String) {
        let e = element(MarkIPHeader::CLASS, config);
        let hs = e.handlers();
        let out = push_through(e, 1, packets.iter().map(|d| Packet::from_data(d)).collect()).remove(0);
        (out, read(&hs, "drops"))
    }

    #[test]
    fn marks_the_header_after_ethernet() {
        let mut frame = vec![0u8; 14];
        let mut ip = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 20);
        ip[0] = 0x46; // one option word
        frame.extend_from_slice(&ip);
        let (out, drops) = run("14", vec![frame]);
        assert_eq!(out[0].network_offset(), Some(14));
        assert_eq!(out[0].anno.net_len, 24);
        assert_eq!(out[0].network_header().unwrap()[0], 0x46);
        assert_eq!(drops, "0");
    }

    #[test]
    fn garbage_is_clamped_and_short_packets_dropped() {
        let ip = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], 6, 64, 0);
        let mut small_ihl = ip.clone();
        small_ihl[0] = 0x43;
        let mut big_ihl = ip.clone();
        big_ihl[0] = 0x4f; // 60 bytes claimed, 20 present
        let (out, drops) = run("", vec![small_ihl, big_ihl, vec![0x45], vec![], vec![0x45; 3]]);
        let lens: Vec<u16> = out.iter().map(|p| p.anno.net_len).collect();
        assert_eq!(lens, vec![12, 20, 1, 3]);
        assert!(out.iter().all(|p| p.network_offset() == Some(0)));
        assert_eq!(drops, "1");
        let (out, drops) = run("OFFSET 14", vec![vec![0; 14], vec![0; 13]]);
        assert!(out.is_empty());
        assert_eq!(drops, "2");
    }
}
