use crate::wire::{self, ip, IpAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, Annotations, Args, Batch, Element, ElementClass, Handler, Packet};

documented! {
    /// Rewrites the IP source address of packets that carry the
    /// fix-IP-source annotation, then clears the annotation.
    ///
    /// ICMPError sets the annotation on the errors it makes: RFC 1812 wants
    /// an error's source to be the address of the interface it leaves by,
    /// which is only known after the route lookup. Put FixIPSrc on each
    /// interface's output path with that interface's address. The header
    /// checksum is updated incrementally. Packets without the annotation
    /// pass untouched; an annotated packet without a readable IPv4 header
    /// passes untouched with the annotation cleared.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `IPADDR` (positional, required): the interface's address.
    ///
    /// # Handlers
    /// - `count` (read): packets rewritten.
    ///
    /// # Example
    /// ```text
    /// ... -> DropBroadcasts -> PaintTee(1) -> IPGWOptions(10.0.0.1) -> FixIPSrc(10.0.0.1) -> DecIPTTL -> ...
    /// ```
    pub struct FixIPSrc {
        addr: u32,
        count: Arc<AtomicU64>,
    }
}

impl FixIPSrc {
    pub const CLASS: ElementClass = ElementClass {
        name: "FixIPSrc",
        ports: "1/1",
        processing: "a/a",
        doc: FixIPSrc::DOC,
        factory: FixIPSrc::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let addr: IpAddr = args.read_mp("IPADDR")?;
        Some(Box::new(FixIPSrc {
            addr: addr.0,
            count: Arc::default(),
        }))
    }

    #[inline]
    fn fix(&self, p: &mut Packet) -> bool {
        if p.anno.flags & Annotations::FIX_IP_SRC == 0 {
            return false;
        }
        p.anno.flags &= !Annotations::FIX_IP_SRC;
        let off = wire::ip_offset(p);
        match p.data().get(off..off + ip::MIN_LEN) {
            Some(h) if h[0] >> 4 == 4 => {}
            _ => return false,
        }
        let h = &mut p.data_mut()[off..off + ip::MIN_LEN];
        let old = wire::be32(h, ip::SRC);
        wire::put32(h, ip::SRC, self.addr);
        let sum = wire::update32(wire::be16(h, ip::SUM), old, self.addr);
        wire::put16(h, ip::SUM, sum);
        true
    }
}

impl Element for FixIPSrc {
    fn simple_action(&mut self, batch: &mut Batch) {
        let mut n = 0;
        for p in batch.packets_mut() {
            n += self.fix(p) as u64;
        }
        if n > 0 {
            self.count.fetch_add(n, Relaxed);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let c = self.count.clone();
        vec![Handler::read_only("count", move || c.load(Relaxed).to_string())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::ipv4_packet;
    use crate::wire::Ipv4;

    fn element() -> Box<dyn Element> {
        crate::testutil::element(FixIPSrc::CLASS, "192.168.7.1")
    }

    #[test]
    fn rewrites_only_annotated_packets_and_clears_the_annotation() {
        let mut e = element();
        let mut b = Batch::new();
        let d = ipv4_packet([10, 0, 0, 9], [10, 0, 1, 1], 1, 255, 8);
        let mut marked = Packet::from_data(&d);
        marked.anno.flags |= Annotations::FIX_IP_SRC;
        b.push(marked);
        b.push(Packet::from_data(&d));
        let mut broken = Packet::from_data(&[0x45, 0]);
        broken.anno.flags |= Annotations::FIX_IP_SRC;
        b.push(broken);
        e.simple_action(&mut b);
        let ps = b.packets();
        assert_eq!(&ps[0].data()[ip::SRC..ip::SRC + 4], &[192, 168, 7, 1]);
        assert!(Ipv4::new_checked(ps[0].data()).unwrap().checksum_ok());
        assert_eq!(ps[0].anno.flags & Annotations::FIX_IP_SRC, 0);
        assert_eq!(&ps[1].data()[ip::SRC..ip::SRC + 4], &[10, 0, 0, 9]);
        assert_eq!(ps[2].data(), &[0x45, 0]);
        assert_eq!(ps[2].anno.flags, 0);
        assert_eq!(crate::testutil::read(&e.handlers(), "count"), "1");
    }

    #[test]
    fn address_is_required() {
        let mut args = Args::parse_str("f :: FixIPSrc", "");
        assert!(FixIPSrc::make(&mut args).is_none() || args.has_errors());
        let mut args = Args::parse_str("f :: FixIPSrc", "10.0.0");
        assert!(FixIPSrc::make(&mut args).is_none());
    }

    proptest::proptest! {
        #[test]
        fn checksum_equals_full_recomputation(
            src in proptest::array::uniform4(0u8..=255),
            dst in proptest::array::uniform4(0u8..=255),
            ttl in 0u8..=255,
        ) {
            let mut e = element();
            let mut p = Packet::from_data(&ipv4_packet(src, dst, 17, ttl, 5));
            p.anno.flags |= Annotations::FIX_IP_SRC;
            let mut b = Batch::new();
            b.push(p);
            e.simple_action(&mut b);
            let mut expect = b.packets()[0].data().to_vec();
            wire::set_ip_checksum(&mut expect);
            proptest::prop_assert_eq!(b.packets()[0].data(), &expect[..]);
        }
    }
}
