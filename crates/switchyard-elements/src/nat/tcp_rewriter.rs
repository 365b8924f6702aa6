use super::rewriter::{rewriter_element, RewriterCore, Variant, MAP_TCP};
use switchyard_core::documented;

documented! {
    /// Rewrites the addresses and ports of TCP packets, and their
    /// checksums: Click's TCPRewriter, IPRewriter for TCP alone.
    ///
    /// Input specs, patterns, timeouts, the capacity rule, ICMP error
    /// translation, hot reload and the differences from Click are
    /// IPRewriter's (see there); this element has one table, for TCP.
    /// Non-TCP packets are sent out unchanged on a `pass` input and
    /// dropped on any other.
    ///
    /// Click's TCPRewriter can also shift sequence and acknowledgement
    /// numbers (and SACK blocks) per mapping, for elements such as
    /// FTPPortMapper that change payload lengths. A mapping starts with
    /// no shift, and no element here requests one, so sequence numbers
    /// pass unchanged and that machinery is left out.
    ///
    /// # Ports
    /// One input per input spec; one or more outputs. Push.
    ///
    /// # Arguments
    /// - `INPUTSPEC` (positional, one per input): as IPRewriter's.
    /// - `TCP_TIMEOUT` (also `TIMEOUT`): for mappings with data both ways.
    ///   Default 86400 seconds.
    /// - `TCP_NODATA_TIMEOUT`: for other open mappings. Default 300.
    /// - `TCP_DONE_TIMEOUT`: after a FIN each way or an RST. Default 240.
    /// - `TCP_GUARANTEE` (also `GUARANTEE`, which wins when both are
    ///   given, as in Click): default 5 seconds.
    /// - `MAPPING_CAPACITY` (also `CAPACITY`): default 65536.
    /// - `DST_ANNO`: default true. `REPLY_ANNO PAINT`. `REAP_INTERVAL`
    ///   (also Click's old `REAP_TIME`): accepted, ignored.
    ///
    /// # Handlers
    /// - `table` (read), also `mappings`: the mappings, as IPRewriter's.
    /// - `lookup` (read, with `SADDR SPORT DADDR DPORT`): the rewritten flow,
    ///   or nothing.
    /// - `table_size`, `nmappings`, `size`, `mapping_failures`, `capacity`
    ///   (read/write), `clear`, `patterns`, `patternN`, `drops`,
    ///   `drop_details`: as IPRewriter's.
    ///
    /// # Example
    /// ```text
    /// nat :: TCPRewriter(pattern 192.0.2.1 1024-65535# - - 0 1, drop,
    ///                    TCP_DONE_TIMEOUT 30);
    /// ```
    pub struct TCPRewriter {
        core: RewriterCore,
    }
}

rewriter_element!(TCPRewriter, Variant::Tcp, tables: &[("table", None), ("mappings", None)], lookups: &[("lookup", MAP_TCP)]);
