use super::route_table::{route_element, Dir24x8, RouteCore};
use switchyard_core::documented;

documented! {
    /// IPv4 route lookup in direct-indexed tables (DIR-24-8-BASIC, Gupta,
    /// Lin and McKeown, Infocom 1998), as Click's. Looks up each packet's
    /// destination IP annotation (set by GetIPAddress or CheckIPHeader),
    /// longest prefix first, replaces the annotation with the route's
    /// gateway if it has one, and sends the packet to the route's output.
    /// A packet without a route is dropped (the first five with a warning).
    ///
    /// A 2^24-entry first level of 16-bit entries, indexed by the top 24
    /// bits of the address, and 256-entry chunks for the /24s that hold
    /// longer routes: a lookup is one or two loads whatever the table's
    /// size. The first level is 32 MiB of address space, allocated when the
    /// router starts (not by `switchyard check`) and zero-filled by the
    /// operating system on first touch, so only the parts routes cover
    /// take memory (a default route covers all of it). As in Click, at most
    /// 32767 distinct gateway and output pairs and 32768 /24s with longer
    /// routes, and at most 1,000,000 routes; a write beyond that is
    /// refused. A handler write rebuilds the
    /// table on the control thread (milliseconds) and the data path
    /// switches to it at its next batch; lookups take no lock. RadixIPLookup
    /// is as fast on tables of thousands of routes, in far less memory.
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
    /// Differences from Click: `table` is writable and persistent, and
    /// lists routes in the order they were added; masks must be contiguous;
    /// a prefix given twice in the configuration with different gateways
    /// or outputs is an error (Click's documentation forbids it), while an
    /// exact repeat is accepted; at a reload whose configuration gives the
    /// same routes, the running table, handler changes included, carries
    /// over.
    ///
    /// # Example
    /// ```text
    /// rt :: DirectIPLookup(10.0.0.0/8 1, 10.1.2.128/25 10.1.2.129 2, 0/0 0);
    /// ... -> GetIPAddress(16) -> rt;
    /// ```
    pub struct DirectIPLookup {
        core: RouteCore<Dir24x8>,
    }
}

route_element!(DirectIPLookup, flush: true);

#[cfg(test)]
mod tests {
    use super::super::route_table::tests::dst_batch;
    use super::*;
    use crate::testutil::{make, read_param, write};
    use switchyard_core::Args;
    use switchyard_core::Harness;

    #[test]
    fn routes_through_both_levels() {
        let (mut e, hs) = make(
            DirectIPLookup::CLASS,
            "10.0.0.0/8 1, 10.1.2.128/25 10.1.2.129 2, 10.1.2.7/32 0, 0/0 0",
            3,
        );
        e.activate().unwrap();
        assert_eq!(read_param(&hs, "lookup", "10.1.2.200").unwrap(), "2 10.1.2.129");
        assert_eq!(read_param(&hs, "lookup", "10.1.2.7").unwrap(), "0");
        assert_eq!(read_param(&hs, "lookup", "10.1.2.8").unwrap(), "1");
        assert_eq!(read_param(&hs, "lookup", "11.0.0.1").unwrap(), "0");
        let mut h = Harness::new(e, 1, 3);
        h.push(
            0,
            dst_batch(&[[10, 1, 2, 200], [10, 1, 2, 7], [10, 1, 2, 8], [11, 0, 0, 1]]),
        );
        assert_eq!((h.count(0), h.count(1), h.count(2)), (2, 1, 1));
    }

    #[test]
    fn remove_then_flush_reach_the_data_path() {
        let (e, hs) = make(DirectIPLookup::CLASS, "10.0.0.0/8 1, 10.1.2.128/25 2", 3);
        let mut h = Harness::new(e, 1, 3);
        h.push(0, dst_batch(&[[10, 1, 2, 200]]));
        assert_eq!(h.count(2), 1);
        write(&hs, "remove", "10.1.2.128/25").unwrap();
        h.push(0, dst_batch(&[[10, 1, 2, 200]]));
        assert_eq!(h.count(1), 1);
        write(&hs, "flush", "").unwrap();
        h.push(0, dst_batch(&[[10, 1, 2, 200]]));
        assert_eq!((h.count(0), h.count(1), h.count(2)), (0, 0, 0));
    }

    #[test]
    fn more_than_32767_next_hops_is_refused() {
        // Each route its own gateway: one next hop each.
        let routes: Vec<String> = (0..32768u32)
            .map(|i| format!("11.{}.{}.0/24 10.{}.{}.1 0", i >> 8, i & 0xff, i >> 8, i & 0xff))
            .collect();
        let mut args = Args::parse_str("rt :: DirectIPLookup", &routes.join(", "));
        assert!(DirectIPLookup::make(&mut args).is_none());
        let errs = args.complete().unwrap_err();
        assert_eq!(
            errs[0].message,
            "'rt :: DirectIPLookup': too many distinct gateway and output pairs: 32768, at most 32767"
        );
    }
}
