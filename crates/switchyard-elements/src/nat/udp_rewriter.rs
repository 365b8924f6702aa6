use super::rewriter::{rewriter_element, RewriterCore, Variant};
use switchyard_core::documented;

documented! {
    /// Rewrites the addresses and ports of UDP (and TCP) packets, and
    /// their checksums: Click's UDPRewriter.
    ///
    /// As in Click, UDPRewriter rewrites TCP as well as UDP, in one table
    /// and with UDP's timeouts (no TCP connection tracking). Input specs,
    /// patterns, the capacity rule, ICMP error translation, hot reload and
    /// the differences from Click are IPRewriter's (see there).
    ///
    /// # Ports
    /// One input per input spec; one or more outputs. Push.
    ///
    /// # Arguments
    /// - `INPUTSPEC` (positional, one per input): as IPRewriter's.
    /// - `TIMEOUT` (also `UDP_TIMEOUT`): default 300 seconds.
    /// - `STREAMING_TIMEOUT` (also `UDP_STREAMING_TIMEOUT`): for mappings
    ///   that saw three packets, one of them a reply. Default TIMEOUT.
    /// - `GUARANTEE` (also `UDP_GUARANTEE`): default 5 seconds.
    /// - `MAPPING_CAPACITY` (also `CAPACITY`): default 65536.
    /// - `DST_ANNO`: default true. `REPLY_ANNO PAINT`. `REAP_INTERVAL`
    ///   (also Click's old `REAP_TIME`): accepted, ignored.
    ///
    /// # Handlers
    /// - `table` (read), also `mappings`: the mappings, as IPRewriter's.
    /// - `table_size`, `nmappings`, `size`, `mapping_failures`, `capacity`
    ///   (read/write), `clear`, `patterns`, `patternN`, `drops`,
    ///   `drop_details`: as IPRewriter's.
    ///
    /// # Example
    /// ```text
    /// dns :: UDPRewriter(pattern - - 10.0.0.53 53 0 1, drop, TIMEOUT 30);
    /// ```
    pub struct UDPRewriter {
        core: RewriterCore,
    }
}

rewriter_element!(UDPRewriter, Variant::Udp, tables: &[("table", None), ("mappings", None)], lookups: &[]);
