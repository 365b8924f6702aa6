use super::route_table::{route_element, Linear, RouteCore};
use switchyard_core::documented;

documented! {
    /// An IPv4 route table for the small tables of a router's own
    /// interfaces (make-ip-conf.pl's), built like LinearIPLookup. Looks up each packet's destination
    /// IP annotation (set by GetIPAddress or CheckIPHeader), longest prefix
    /// first, replaces the annotation with the route's gateway if it has
    /// one, and sends the packet to the route's output. A packet without a
    /// route is dropped (the first five with a warning).
    ///
    /// A lookup may look at every route, so this suits the small tables of
    /// a router's own interfaces (make-ip-conf.pl's), and takes at most
    /// 4096 routes; a run of packets to one address reuses the last answer.
    /// For large tables, use RadixIPLookup.
    ///
    /// Switchyard addition: Click's StaticIPLookup cannot change at run
    /// time; here its routes are handlers like LinearIPLookup's, so that a
    /// route release on the canonical IP router config is a control write
    /// (validated, audited, persistent, reversible) rather than a reload.
    ///
    /// # Ports
    /// One input, any number of outputs; push. A route to an output the
    /// element does not have is a configuration error.
    ///
    /// # Arguments
    /// - `ROUTE` (positional, any number): `ADDR/MASK [GATEWAY] OUTPUT`.
    ///   The prefix is `ADDR/LEN`, `ADDR/MASK` (a contiguous mask), a short
    ///   form such as `10/8`, or a bare address (a /32); address bits beyond
    ///   the prefix are ignored. `GATEWAY` is an address, or `-`; absent or
    ///   `0.0.0.0` means none. `0.0.0.0/0` is the default route.
    ///
    /// # Handlers
    /// - `table` (read/write, persistent): the routes, one per line as
    ///   `ADDR/LEN GATEWAY OUTPUT` in tab-aligned columns (`-` for no
    ///   gateway); a write replaces them all, validated first.
    /// - `lookup` (read, with an address): `OUTPUT GATEWAY`, or `OUTPUT`
    ///   for a route without a gateway, or `-1` if no route matches.
    /// - `add`, `set`, `remove`, `ctrl` (write): as LinearIPLookup's; each
    ///   is kept in the state file through `table`.
    ///
    /// Differences from Click: masks must be contiguous; a prefix given
    /// twice with different gateways or outputs is an error (Click keeps
    /// the first and warns that it was replaced), while an exact repeat is
    /// accepted.
    ///
    /// # Example
    /// ```text
    /// rt :: StaticIPLookup(1.0.0.1/32 0, 1.0.0.255/32 0,
    ///                      1.0.0.0/255.255.255.0 1,
    ///                      2.0.0.0/255.255.255.0 2,
    ///                      255.255.255.255/32 0.0.0.0 0,
    ///                      0.0.0.0/0 2.0.0.254 2);
    /// ... -> CheckIPHeader -> rt;
    /// ```
    pub struct StaticIPLookup {
        core: RouteCore<Linear>,
    }
}

route_element!(StaticIPLookup, flush: false);

#[cfg(test)]
mod tests {
    use super::super::route_table::tests::dst_batch;
    use super::*;
    use crate::testutil::{make, read, read_param, write};
    use switchyard_core::Harness;

    /// Routes as make-ip-conf.pl writes them for two interfaces.
    const IP_CONF: &str = "1.0.0.1/32 0, 1.0.0.255/32 0, 1.0.0.0/32 0, 2.0.0.1/32 0, 2.0.0.255/32 0, \
        2.0.0.0/32 0, 1.0.0.0/255.255.255.0 1, 2.0.0.0/255.255.255.0 2, 255.255.255.255/32 0.0.0.0 0, \
        0.0.0.0/32 0";

    #[test]
    fn make_ip_conf_routes_configure_and_route() {
        let (e, hs) = make(StaticIPLookup::CLASS, IP_CONF, 3);
        assert_eq!(read_param(&hs, "lookup", "1.0.0.7").unwrap(), "1");
        assert_eq!(read_param(&hs, "lookup", "2.0.0.255").unwrap(), "0");
        assert_eq!(read_param(&hs, "lookup", "3.0.0.1").unwrap(), "-1");
        let mut h = Harness::new(e, 1, 3);
        h.push(0, dst_batch(&[[1, 0, 0, 7], [2, 0, 0, 9], [2, 0, 0, 1], [3, 0, 0, 1]]));
        assert_eq!((h.count(0), h.count(1), h.count(2)), (1, 1, 1));
    }

    #[test]
    fn routes_are_handlers_and_table_is_persistent() {
        let (_e, hs) = make(StaticIPLookup::CLASS, IP_CONF, 3);
        let names: Vec<&str> = hs.iter().map(|h| h.name.as_str()).collect();
        for n in ["table", "lookup", "add", "set", "remove", "ctrl"] {
            assert!(names.contains(&n), "{n} missing: {names:?}");
        }
        assert!(
            !names.contains(&"flush"),
            "flush is RadixIPLookup's and DirectIPLookup's"
        );
        let t = hs.iter().find(|h| h.name == "table").unwrap();
        assert!(t.write.is_some() && t.persistent);
        write(&hs, "set", "3.0.0.0/8 2").unwrap();
        assert_eq!(read_param(&hs, "lookup", "3.0.0.1").unwrap(), "2");
        write(&hs, "remove", "3.0.0.0/8").unwrap();
        assert_eq!(read_param(&hs, "lookup", "3.0.0.1").unwrap(), "-1");
        assert!(write(&hs, "add", "4.0.0.0/8 9").is_err(), "output out of range");
        let table = read(&hs, "table");
        assert_eq!(table.lines().count(), 10);
        assert_eq!(table.lines().nth(6), Some("1.0.0.0/24\t\t-\t\t1"));
        assert_eq!(table.lines().nth(8), Some("255.255.255.255/32\t-\t\t0"));
    }
}
