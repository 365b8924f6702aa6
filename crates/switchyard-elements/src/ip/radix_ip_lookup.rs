use super::route_table::{route_element, RouteCore, Stride16x8x8};
use switchyard_core::documented;

documented! {
    /// IPv4 route lookup for large tables. Looks up each packet's
    /// destination IP annotation (set by GetIPAddress or CheckIPHeader),
    /// longest prefix first, replaces the annotation with the route's
    /// gateway if it has one, and sends the packet to the route's output.
    /// A packet without a route is dropped (the first five with a warning).
    ///
    /// Click's RadixIPLookup walks a radix trie of up to seven levels. This
    /// one compiles its routes into a 16-8-8 multibit trie: a 2^16-slot
    /// first level (256 KiB), and 256-slot chunks for routes longer than
    /// /16 and /24, so a lookup is one to three loads and a table of a few
    /// thousand routes stays in the CPU caches. A handler write rebuilds
    /// the trie on the control thread (well under a millisecond for a
    /// thousand routes) and the data path switches to it at its next batch;
    /// lookups take no lock. At most 1,000,000 routes, and at most 65536
    /// /24 networks holding routes longer than /24 (the third level, 64 MiB;
    /// the second is 64 MiB at most too); a configuration or write beyond
    /// either is refused, changing nothing.
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
    ///   gateway), in the order they were added. Writing it replaces the
    ///   whole table with the routes given (one per line, or separated by
    ///   commas), validated first: a bad route changes nothing. The state
    ///   file keeps it, so route changes survive restarts and reloads, and
    ///   writing an earlier value back undoes them.
    /// - `lookup` (read, with an address): `OUTPUT GATEWAY`, or `OUTPUT`
    ///   for a route without a gateway, or `-1` if no route matches.
    /// - `add` (write): adds a route; an error if one for that prefix exists.
    /// - `set` (write): adds a route, or replaces the one for that prefix.
    /// - `remove` (write): `ADDR/MASK [GATEWAY OUTPUT]` removes the route
    ///   for that prefix (if gateway and output are given, only if they
    ///   match); an error if there is none.
    /// - `ctrl` (write): several `add ROUTE`, `set ROUTE` and
    ///   `remove ADDR/MASK` commands, one per line (or separated by
    ///   commas), applied together or not at all.
    /// - `flush` (write): removes every route.
    ///
    /// Each accepted write of `add`, `set`, `remove`, `ctrl` and `flush`
    /// changes `table`'s persistent value. Every write is checked first: a
    /// bad route, or an output the element does not have, is an error and
    /// changes nothing.
    ///
    /// Differences from Click: `table` is writable and persistent; `add`
    /// refuses an existing prefix (Click's RadixIPLookup documents that it
    /// should but does not); masks must be contiguous; a prefix given twice
    /// in the configuration with different gateways or outputs is an error
    /// (Click keeps the first and warns that it was replaced), while an
    /// exact repeat is accepted; at a reload whose configuration gives the
    /// same routes, the running table, handler changes included, carries
    /// over (a configuration with other routes replaces it).
    ///
    /// # Example
    /// ```text
    /// rt :: RadixIPLookup(18.26.4.24/32 0,
    ///                     18.26.4.0/24 1,
    ///                     0.0.0.0/0 18.26.4.1 1);
    /// ... -> GetIPAddress(16) -> rt;
    /// rt[0] -> host; rt[1] -> DecIPTTL -> out;
    /// ```
    pub struct RadixIPLookup {
        core: RouteCore<Stride16x8x8>,
    }
}

route_element!(RadixIPLookup, flush: true);

#[cfg(test)]
mod tests {
    use super::super::route_table::tests::dst_batch;
    use super::*;
    use crate::testutil::{handler, make, read, read_param, write};
    use switchyard_core::Harness;

    #[test]
    fn routes_by_longest_prefix_and_replaces_destination_with_gateway() {
        let (mut e, hs) = make(
            RadixIPLookup::CLASS,
            "10.0.0.0/8 1, 10.1.0.0/16 10.1.0.254 2, 10.1.2.3/32 0, 0.0.0.0/0 192.168.0.1 1",
            3,
        );
        e.activate().unwrap();
        let mut h = Harness::new(e, 1, 3);
        h.push(
            0,
            dst_batch(&[[10, 1, 2, 3], [10, 1, 9, 9], [10, 200, 0, 1], [8, 8, 8, 8]]),
        );
        let out0: Vec<u32> = h.take(0).iter().flat_map(|b| b.iter().map(|p| p.anno.dst_ip)).collect();
        let out1: Vec<u32> = h.take(1).iter().flat_map(|b| b.iter().map(|p| p.anno.dst_ip)).collect();
        let out2: Vec<u32> = h.take(2).iter().flat_map(|b| b.iter().map(|p| p.anno.dst_ip)).collect();
        assert_eq!(out0, vec![0x0a01_0203]);
        assert_eq!(out1, vec![0x0ac8_0001, 0xc0a8_0001]);
        assert_eq!(out2, vec![0x0a01_00fe]);
        assert_eq!(read_param(&hs, "lookup", "10.1.9.9").unwrap(), "2 10.1.0.254");
        assert_eq!(read_param(&hs, "lookup", "10.1.2.3").unwrap(), "0");
    }

    #[test]
    fn flush_empties_the_table_and_persists_as_table() {
        let (_e, hs) = make(RadixIPLookup::CLASS, "10.0.0.0/8 1, 0/0 0", 2);
        let f = handler(&hs, "flush");
        assert_eq!(f.persists_as.as_deref(), Some("table"));
        write(&hs, "flush", "").unwrap();
        assert_eq!(read(&hs, "table"), "");
        assert_eq!(read_param(&hs, "lookup", "10.0.0.1").unwrap(), "-1");
    }

    #[test]
    fn handler_write_moves_the_next_batch() {
        let (e, hs) = make(RadixIPLookup::CLASS, "10.0.0.0/8 0", 2);
        let mut h = Harness::new(e, 1, 2);
        h.push(0, dst_batch(&[[10, 0, 0, 1], [10, 0, 0, 2]]));
        assert_eq!((h.count(0), h.count(1)), (2, 0));
        write(&hs, "set", "10.0.0.0/8 1").unwrap();
        h.push(0, dst_batch(&[[10, 0, 0, 1], [10, 0, 0, 2]]));
        assert_eq!((h.count(0), h.count(1)), (0, 2));
        write(&hs, "table", "10.0.0.0/9 0\n10.128.0.0/9 1").unwrap();
        h.push(0, dst_batch(&[[10, 0, 0, 1], [10, 200, 0, 2], [11, 0, 0, 1]]));
        assert_eq!((h.count(0), h.count(1)), (1, 1));
    }
}
