use super::route_table::{route_element, Linear, RouteCore};
use switchyard_core::documented;

documented! {
    /// Simple IPv4 route lookup by a linear scan of its routes. Looks up
    /// each packet's destination IP annotation (set by GetIPAddress or
    /// CheckIPHeader), longest prefix first, replaces the annotation with
    /// the route's gateway if it has one, and sends the packet to the
    /// route's output. A packet without a route is dropped (the first five
    /// with a warning).
    ///
    /// A lookup may look at every route, so this suits small tables: at
    /// most 4096 routes, from the configuration and from every write (a
    /// write over is refused, changing nothing); RadixIPLookup is the
    /// element for large ones. As in Click, a run of
    /// packets to one address reuses the last answer. A handler write
    /// builds a new table on the control thread and the data path
    /// switches to it at its next batch; lookups take no lock.
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
    ///
    /// Each accepted write of `add`, `set`, `remove` and `ctrl` changes
    /// `table`'s persistent value. Every write is checked first: a bad
    /// route, or an output the element does not have, is an error and
    /// changes nothing. As in Click, there is no `flush`.
    ///
    /// Differences from Click: `table` is writable and persistent; masks
    /// must be contiguous (Click's LinearIPLookup also takes others); a
    /// prefix given twice in the configuration with different gateways or
    /// outputs is an error (Click keeps the first and warns that it was
    /// replaced), while an exact repeat is accepted; at a reload whose
    /// configuration gives the same routes, the running table, handler
    /// changes included, carries over.
    ///
    /// # Example
    /// ```text
    /// rt :: LinearIPLookup(18.26.4.24/32 0,
    ///                      18.26.4.255/32 0,
    ///                      18.26.4.0/32 0,
    ///                      18.26.4/24 1,
    ///                      0/0 18.26.4.1 1);
    /// ... -> GetIPAddress(16) -> rt;
    /// rt[0] -> host; rt[1] -> out;
    /// ```
    pub struct LinearIPLookup {
        core: RouteCore<Linear>,
    }
}

route_element!(LinearIPLookup, flush: false);

#[cfg(test)]
mod tests {
    use super::super::route_table::tests::dst_batch;
    use super::*;
    use crate::testutil::{make, read_param, write};
    use switchyard_core::Harness;

    const CLICK_EXAMPLE: &str = "18.26.4.24/32 0, 18.26.4.255/32 0, 18.26.4.0/32 0, 18.26.4/24 1, 0/0 18.26.4.1 1";

    #[test]
    fn clicks_example_table() {
        let (e, hs) = make(LinearIPLookup::CLASS, CLICK_EXAMPLE, 2);
        assert_eq!(read_param(&hs, "lookup", "18.26.4.24").unwrap(), "0");
        assert_eq!(read_param(&hs, "lookup", "18.26.4.9").unwrap(), "1");
        assert_eq!(read_param(&hs, "lookup", "1.2.3.4").unwrap(), "1 18.26.4.1");
        let mut h = Harness::new(e, 1, 2);
        // A run to one address, then others: the last-answer cache must
        // not leak one packet's route to the next.
        h.push(
            0,
            dst_batch(&[
                [18, 26, 4, 24],
                [18, 26, 4, 24],
                [1, 2, 3, 4],
                [1, 2, 3, 4],
                [18, 26, 4, 9],
            ]),
        );
        assert_eq!(h.count(0), 2);
        let out1: Vec<u32> = h.take(1).iter().flat_map(|b| b.iter().map(|p| p.anno.dst_ip)).collect();
        assert_eq!(out1, vec![0x121a_0401, 0x121a_0401, 0x121a_0409]);
    }

    #[test]
    fn has_no_flush_as_in_click() {
        let (_e, hs) = make(LinearIPLookup::CLASS, CLICK_EXAMPLE, 2);
        let names: Vec<&str> = hs.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["table", "lookup", "add", "set", "remove", "ctrl"]);
    }

    #[test]
    fn ctrl_write_reaches_the_data_path_atomically() {
        let (e, hs) = make(LinearIPLookup::CLASS, "10.0.0.0/8 0", 2);
        let mut h = Harness::new(e, 1, 2);
        let err = write(&hs, "ctrl", "add 11.0.0.0/8 1\nremove 12.0.0.0/8").unwrap_err();
        assert_eq!(err, "line 2: route '12.0.0.0/8' not found");
        h.push(0, dst_batch(&[[11, 0, 0, 1]]));
        assert_eq!((h.count(0), h.count(1)), (0, 0));
        write(&hs, "ctrl", "add 11.0.0.0/8 1\nset 10.0.0.0/8 1").unwrap();
        h.push(0, dst_batch(&[[11, 0, 0, 1], [10, 0, 0, 1]]));
        assert_eq!((h.count(0), h.count(1)), (0, 2));
    }
}
