use crate::util::parse_value;
use crate::wire::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, Args, Batch, Element, ElementClass, Handler};

documented! {
    /// Sets every packet's destination IP address annotation to IPADDR
    /// (Click's SetIPAddress): the next hop ARPQuerier resolves, for a
    /// path with a single gateway. Click's `ANNO` argument (another
    /// annotation) is accepted only when it names the destination address
    /// annotation (`DST_IP`, or 0, its offset in Click's annotation area):
    /// Switchyard has no other.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `IPADDR` (positional, mandatory): the address.
    /// - `ANNO`: `DST_IP` (the default), as above.
    ///
    /// # Handlers
    /// - `addr` (read/write): IPADDR; a write applies from the next batch.
    ///
    /// # Example
    /// ```text
    /// ... -> SetIPAddress(10.0.0.1) -> [0]arpq;
    /// ```
    pub struct SetIPAddress {
        addr: Arc<AtomicU32>,
    }
}

impl SetIPAddress {
    pub const CLASS: ElementClass = ElementClass {
        name: "SetIPAddress",
        ports: "1/1",
        processing: "a/a",
        doc: SetIPAddress::DOC,
        factory: SetIPAddress::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let addr = args.read_mp::<IpAddr>("IPADDR");
        crate::standard::paint::read_anno(args, false, crate::standard::paint::Anno::DST_IP);
        let addr = addr.filter(|_| !args.has_errors())?;
        Some(Box::new(SetIPAddress {
            addr: Arc::new(AtomicU32::new(addr.0)),
        }))
    }
}

impl Element for SetIPAddress {
    fn simple_action(&mut self, batch: &mut Batch) {
        let addr = self.addr.load(Relaxed);
        for p in batch.packets_mut() {
            p.anno.dst_ip = addr;
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (r, w) = (self.addr.clone(), self.addr.clone());
        vec![Handler::read_write(
            "addr",
            move || IpAddr(r.load(Relaxed)).to_string(),
            move |v| {
                w.store(parse_value::<IpAddr>(v)?.0, Relaxed);
                Ok(())
            },
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{element, read, write};
    use switchyard_core::{Harness, Packet};

    #[test]
    fn sets_the_annotation_and_the_handler_changes_it() {
        let e = element(SetIPAddress::CLASS, "10.0.0.1");
        let hs = e.handlers();
        let mut h = Harness::new(e, 1, 1);
        let mut b = Batch::new();
        b.push(Packet::from_data(&[]));
        b.push(Packet::from_data(&[1, 2, 3]));
        h.push(0, b);
        assert!(h.take(0)[0].iter().all(|p| p.anno.dst_ip == 0x0a00_0001));
        assert_eq!(read(&hs, "addr"), "10.0.0.1");
        write(&hs, "addr", "192.168.1.254").unwrap();
        assert_eq!(
            write(&hs, "addr", "192.168.1").unwrap_err(),
            "expected an IP address, found '192.168.1'"
        );
        let mut b = Batch::new();
        b.push(Packet::from_data(&[0; 20]));
        h.push(0, b);
        assert_eq!(h.take(0)[0].packets()[0].anno.dst_ip, 0xc0a8_01fe);
    }

    #[test]
    fn positional_argument_is_clicks_ipaddr_and_anno_a_keyword() {
        for config in ["10.0.0.1", "10.0.0.1, ANNO DST_IP", "IPADDR 10.0.0.1, ANNO 0"] {
            let e = crate::testutil::configure("s :: SetIPAddress", SetIPAddress::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        for config in ["10.0.0.1, DST_IP", "10.0.0.1, ANNO PAINT"] {
            assert!(crate::testutil::configure("s :: SetIPAddress", SetIPAddress::CLASS, config).is_err());
        }
    }

    #[test]
    fn address_is_mandatory_and_checked() {
        for config in ["", "10.0.0.256", "IPADDR x"] {
            let mut args = Args::parse_str("s :: SetIPAddress", config);
            assert!(SetIPAddress::make(&mut args).is_none(), "{config}");
            assert!(args.complete().is_err());
        }
    }
}
