use crate::util::Drops;
use crate::wire::{be32, ip};
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler};

documented! {
    /// Sets the destination IP address annotation from packet bytes
    /// (Click's GetIPAddress): the 4 bytes at OFFSET (16 for the
    /// destination of an IP packet at the data start), or, with `IP src`
    /// or `IP dst`, the source or destination of the marked network
    /// header. Route lookups and ARPQuerier read the annotation.
    ///
    /// A packet too short for the 4 bytes, or with no marked network
    /// header (or one shorter than 20 bytes) for `IP`, is dropped and
    /// counted, where Click would read past it. Click's `ANNO` argument
    /// (another annotation) is accepted only when it names the
    /// destination address annotation (`DST_IP`, or 0, its offset in
    /// Click's annotation area): Switchyard has no other.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `OFFSET` (positional): where the address starts in the packet.
    /// - `ANNO` (positional): `DST_IP` (the default), as above.
    /// - `IP`: `src` or `dst`, instead of OFFSET.
    ///
    /// Exactly one of OFFSET and IP must be given.
    ///
    /// # Handlers
    /// - `drops` (read): packets dropped as too short (Switchyard's).
    ///
    /// # Example
    /// ```text
    /// Strip(14) -> GetIPAddress(16) -> rt :: StaticIPLookup(...);
    /// CheckIPHeader -> GetIPAddress(IP dst) -> ...;
    /// ```
    pub struct GetIPAddress {
        from: Source,
        drops: Drops,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    Offset(usize),
    /// A field offset within the network header.
    Header(usize),
}

impl GetIPAddress {
    pub const CLASS: ElementClass = ElementClass {
        name: "GetIPAddress",
        ports: "1/1",
        processing: "a/a",
        doc: GetIPAddress::DOC,
        factory: GetIPAddress::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let offset = args.read_p::<usize>("OFFSET");
        crate::standard::paint::read_anno(args, true, crate::standard::paint::Anno::DST_IP);
        let word = args.read::<String>("IP");
        if args.has_errors() {
            return None;
        }
        let from = match (offset, word.as_deref()) {
            (Some(o), None) => Source::Offset(o),
            (None, Some("src")) => Source::Header(ip::SRC),
            (None, Some("dst")) => Source::Header(ip::DST),
            (None, Some(other)) => {
                args.error(
                    Some(args.span_of("IP")),
                    format!("IP: expected 'src' or 'dst', found '{other}'"),
                );
                return None;
            }
            _ => {
                args.error(None, "set one of OFFSET, IP");
                return None;
            }
        };
        Some(Box::new(GetIPAddress {
            from,
            drops: Drops::default(),
        }))
    }
}

/// Sets the destination annotation from the packet; false if the bytes
/// are not there.
#[inline(always)]
fn annotate(from: Source, p: &mut switchyard_core::Packet) -> bool {
    let bytes = match from {
        Source::Offset(o) => o.checked_add(4).and_then(|end| p.data().get(o..end)),
        Source::Header(field) => p
            .network_header()
            .filter(|h| h.len() >= ip::MIN_LEN)
            .map(|h| &h[field..field + 4]),
    };
    match bytes {
        Some(b) => {
            p.anno.dst_ip = be32(b, 0);
            true
        }
        None => false,
    }
}

impl Element for GetIPAddress {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<GetIPAddress>(old) {
            self.drops = old.drops;
        }
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        let from = self.from;
        // retain moves nothing before the first packet it drops.
        self.drops.retain(batch, |p| annotate(from, p));
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

    fn run(config: &str, packets: Vec<Packet>) -> (Vec<Packet>, String) {
        let e = element(GetIPAddress::CLASS, config);
        let hs = e.handlers();
        let out = push_through(e, 1, packets).remove(0);
        (out, read(&hs, "drops"))
    }

    fn ip() -> Vec<u8> {
        ipv4_packet([10, 0, 0, 1], [192, 168, 7, 9], 17, 64, 8)
    }

    #[test]
    fn copies_the_address_at_offset_in_host_order() {
        let (out, drops) = run("16", vec![Packet::from_data(&ip())]);
        assert_eq!(out[0].anno.dst_ip, 0xc0a8_0709);
        assert_eq!(drops, "0");
        let (out, _) = run("OFFSET 12", vec![Packet::from_data(&ip())]);
        assert_eq!(out[0].anno.dst_ip, 0x0a00_0001);
    }

    #[test]
    fn ip_src_and_dst_read_the_network_header() {
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(&ip());
        let mut p = Packet::from_data(&frame);
        p.set_network_header(14, 20);
        let (out, _) = run("IP dst", vec![p]);
        assert_eq!(out[0].anno.dst_ip, 0xc0a8_0709);
        let mut p = Packet::from_data(&frame);
        p.set_network_header(14, 20);
        let (out, _) = run("IP src", vec![p]);
        assert_eq!(out[0].anno.dst_ip, 0x0a00_0001);
    }

    #[test]
    fn short_packets_and_missing_headers_are_dropped() {
        let (out, drops) = run(
            "16",
            vec![
                Packet::from_data(&ip()[..19]),
                Packet::from_data(&[1, 2, 3]),
                Packet::from_data(&[]),
            ],
        );
        assert!(out.is_empty());
        assert_eq!(drops, "3");
        let (out, drops) = run("0", vec![Packet::from_data(&[1, 2, 3])]);
        assert!(out.is_empty());
        assert_eq!(drops, "1");
        let mut marked_short = Packet::from_data(&ip()[..19]);
        marked_short.set_network_header(0, 19);
        let (out, drops) = run("IP dst", vec![Packet::from_data(&ip()), marked_short]);
        assert!(out.is_empty());
        assert_eq!(drops, "2");
    }

    #[test]
    fn positional_arguments_are_clicks_offset_anno() {
        for config in [
            "16",
            "16, DST_IP",
            "16, 0",
            "OFFSET 16, ANNO DST_IP",
            "ANNO DST_IP, IP dst",
        ] {
            let e = crate::testutil::configure("g :: GetIPAddress", GetIPAddress::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        let err = crate::testutil::configure("g :: GetIPAddress", GetIPAddress::CLASS, "16, PAINT").err();
        assert!(err.is_some_and(|e| e.contains("ANNO: only DST_IP")));
    }

    #[test]
    fn exactly_one_of_offset_and_ip() {
        for config in ["", "16, IP dst", "IP both"] {
            let mut args = Args::parse_str("g :: GetIPAddress", config);
            assert!(GetIPAddress::make(&mut args).is_none(), "{config}");
            assert!(args.complete().is_err());
        }
    }
}
