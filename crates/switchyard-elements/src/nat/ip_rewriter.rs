use super::rewriter::{rewriter_element, RewriterCore, Variant, MAP_TCP, MAP_UDP};
use switchyard_core::documented;

documented! {
    /// Rewrites the addresses and ports of TCP and UDP packets, and their
    /// checksums: a network address and port translator (NAPT), Click's
    /// IPRewriter.
    ///
    /// The element keeps a mapping table indexed by flow (source address
    /// and port, destination address and port; TCP and UDP in separate
    /// tables). A mapping `(SA, SP, DA, DP) => (SA', SP', DA', DP')`
    /// holds both directions: packets of the flow are rewritten to the new
    /// flow and leave on the mapping's forward output; packets of the
    /// reply flow `(DA', DP', SA', SP')` are rewritten back to
    /// `(DA, DP, SA, SP)` and leave on its reply output. A packet of no
    /// mapping is handled by the spec of the input it arrived on:
    ///
    /// - `drop` or `discard`: dropped.
    /// - `pass OUTPUT` (also `passthrough`, `nochange`; OUTPUT defaults to
    ///   0): sent to OUTPUT unchanged; no mapping.
    /// - `keep FOUTPUT ROUTPUT`: a mapping that changes nothing, so the
    ///   flow goes to FOUTPUT and its replies to ROUTPUT.
    /// - `pattern SADDR SPORT DADDR DPORT FOUTPUT ROUTPUT`: a mapping by
    ///   the pattern. Each field is a value or `-` (unchanged). SPORT may
    ///   be a range `L-H`: the packet's own source port if it is in the
    ///   range and free, else a random free one; with a `#` suffix
    ///   (`1024-65535#`) ports go in turn, with `?` at random without
    ///   preferring the packet's own. "Free" means that no live mapping
    ///   has the resulting reply flow. If none is free the packet is
    ///   dropped and counted in `mapping_failures`. The form
    ///   `pattern SADDR DADDR FOUTPUT ROUTPUT` rewrites addresses only, and
    ///   its SADDR may be a range `A-B` or a prefix `A/LEN` (its network
    ///   and broadcast addresses left out), chosen in the same way. In the
    ///   four-word form SADDR may be a range when SPORT is not.
    /// - `pattern NAME FOUTPUT ROUTPUT`, or `NAME FOUTPUT ROUTPUT`: the
    ///   pattern NAME of an IPRewriterPatterns element of the same
    ///   configuration. A NAME in capitals reads as a keyword argument:
    ///   write those with `pattern`.
    ///
    /// Packets need their IP header annotation (CheckIPHeader or
    /// MarkIPHeader before; without one the IP header is taken to start
    /// the data). Packets with a malformed IP header are dropped; non-TCP
    /// and non-UDP packets, fragments after the first, and packets whose
    /// TCP (20 bytes, with a valid data offset) or UDP (8 bytes) header is
    /// truncated are sent out unchanged on a `pass` input and dropped on
    /// any other, all counted. First fragments are rewritten like whole
    /// packets (their TCP or UDP checksum covers the whole datagram, and
    /// the update is the same).
    ///
    /// Checksums are updated incrementally (RFC 1624), by a difference
    /// computed once per mapping: the IP header checksum, and the TCP or
    /// UDP checksum including the pseudo-header; a UDP checksum of zero
    /// (none) stays zero.
    ///
    /// Mappings expire a timeout after their last packet. TCP mappings
    /// have three timeouts, by connection state: TCP_NODATA_TIMEOUT until
    /// data has been seen both ways, then TCP_TIMEOUT; TCP_DONE_TIMEOUT
    /// once a FIN has been seen each way, or an RST either way (a SYN or
    /// data after a FIN reopens that direction). UDP mappings have
    /// UDP_TIMEOUT, or UDP_STREAMING_TIMEOUT after three packets one of
    /// which was a reply. After each packet a mapping is guaranteed for
    /// TCP_GUARANTEE or UDP_GUARANTEE: it cannot be evicted, and it lives
    /// at least that long. The table holds at most MAPPING_CAPACITY
    /// mappings; when it is full, a new flow evicts the mapping that
    /// expires first among those out of their guarantee, and if every
    /// mapping is guaranteed the new flow's packet is dropped and counted
    /// in `mapping_failures` (Click's rule).
    ///
    /// ICMP errors (destination unreachable, source quench, redirect, time
    /// exceeded, parameter problem) about a mapped TCP or UDP flow are
    /// translated as Click's ICMPRewriter does and sent to the output of
    /// the direction they travel: the quoted header becomes what the other
    /// side of the mapping sent (addresses, ports, its IP checksum, its TCP
    /// or UDP checksum when present), the outer destination follows when it
    /// is the quoted packet's source, and the ICMP checksum is updated.
    /// Other ICMP packets follow the rule for non-TCP/UDP packets; ICMP
    /// errors about no mapping are counted as such.
    ///
    /// Differences from Click:
    /// - ICMP errors are translated here; Click needs an ICMPRewriter
    ///   beside the rewriter. The outer source is rewritten too when it is
    ///   the quoted packet's destination (an error from the flow's own
    ///   endpoint), so an inside address does not leak.
    /// - A mapping past its timeout is never used: expired mappings are
    ///   removed as packets arrive (a bounded number each batch, and any
    ///   a lookup meets), with one clock read per batch. Click reaps every
    ///   REAP_INTERVAL, and uses an expired mapping until then. No timer
    ///   thread; REAP_INTERVAL is accepted and ignored.
    /// - MAPPING_CAPACITY defaults to 65536 (Click: unlimited) and must be
    ///   a number: sharing another rewriter's capacity by naming it is not
    ///   supported. Up to 65536 mappings are preallocated; a larger table
    ///   grows as mappings are made.
    /// - A `table` handler lists both tables; the `patternN` handlers are
    ///   read-only; `drops` and `drop_details` are added. Mapper elements
    ///   (`ELEMENTNAME` specs, RoundRobinIPMapper) are not supported.
    /// - REPLY_ANNO takes only `PAINT`: the forward packet's paint is
    ///   given to the mapping's replies.
    ///
    /// At a hot reload, an IPRewriter of the same name takes its
    /// predecessor's mappings (and counts), so established flows keep
    /// their translation: every mapping whose input and both outputs exist
    /// in the new element, whatever the new specs say, with the new
    /// timeouts applied from each mapping's last packet, and the new
    /// capacity (the mappings that expire first go when it is smaller).
    ///
    /// # Ports
    /// One input per input spec; one or more outputs. Push.
    ///
    /// # Arguments
    /// - `INPUTSPEC` (positional, one per input): as above.
    /// - `TCP_TIMEOUT` (also `TIMEOUT`): for TCP mappings with data both
    ///   ways. Default 86400 seconds (24 hours).
    /// - `TCP_NODATA_TIMEOUT`: for other open TCP mappings. Default 300.
    /// - `TCP_DONE_TIMEOUT`: for finished TCP mappings. Default 240.
    /// - `TCP_GUARANTEE` (also `GUARANTEE`, which wins when both are
    ///   given, as in Click): default 5 seconds.
    /// - `UDP_TIMEOUT`: default 300. `UDP_STREAMING_TIMEOUT`: default
    ///   UDP_TIMEOUT. `UDP_GUARANTEE`: default 5.
    /// - `MAPPING_CAPACITY` (also `CAPACITY`): the most mappings (flows, each
    ///   both ways). Default 65536.
    /// - `DST_ANNO`: set the destination IP annotation to the rewritten
    ///   destination. Default true.
    /// - `REPLY_ANNO PAINT`: see above.
    /// - `REAP_INTERVAL` (also Click's old `REAP_TIME`): accepted, ignored.
    ///
    /// Times are seconds (`300`, `0.5`, `200ms`).
    ///
    /// # Handlers
    /// - `table` (read): every mapping, both tables, TCP first, one line
    ///   per direction: `(SA, SP, DA, DP) => (SA', SP', DA', DP') [*F R]
    ///   iINPUT expSECONDS`, the output of the line's direction starred.
    /// - `tcp_table`, `udp_table` (read): one table each (`tcp_mappings`,
    ///   `udp_mappings`: the same, Click's old names).
    /// - `tcp_lookup` (read, with `SADDR SPORT DADDR DPORT`): the rewritten
    ///   flow in the same form, or nothing.
    /// - `table_size`, `nmappings`, `size` (read): live mappings.
    /// - `mapping_failures` (read): new flows dropped for want of a free
    ///   port or of room.
    /// - `capacity` (read/write): MAPPING_CAPACITY; a smaller value evicts
    ///   at once.
    /// - `clear` (write): removes every mapping.
    /// - `patterns` (read): each input's spec (`<drop>`, `<nochange>`,
    ///   `<keep>` or the pattern) and, in brackets, its live mappings;
    ///   `pattern0`, `pattern1`, ... (read): one input's.
    /// - `drops` (read): packets dropped; `drop_details` (read): by reason,
    ///   `COUNT<TAB>REASON` lines.
    ///
    /// # Example
    /// ```text
    /// // Inside hosts share 192.0.2.1; outside replies come back.
    /// nat :: IPRewriter(pattern 192.0.2.1 1024-65535 - - 0 1, drop);
    /// inside -> CheckIPHeader -> [0]nat;
    /// outside -> CheckIPHeader -> [1]nat;
    /// nat[0] -> to_outside;
    /// nat[1] -> to_inside;
    /// ```
    pub struct IPRewriter {
        core: RewriterCore,
    }
}

rewriter_element!(IPRewriter, Variant::Ip, tables: &[
        ("table", None),
        ("tcp_table", Some(MAP_TCP)),
        ("udp_table", Some(MAP_UDP)),
        ("tcp_mappings", Some(MAP_TCP)),
        ("udp_mappings", Some(MAP_UDP)),
    ], lookups: &[("tcp_lookup", MAP_TCP)]);

#[cfg(test)]
impl IPRewriter {
    pub(crate) fn core_mut(&mut self) -> &mut RewriterCore {
        &mut self.core
    }
}
