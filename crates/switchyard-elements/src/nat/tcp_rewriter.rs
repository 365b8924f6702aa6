use super::rewriter::{RewriterCore, Variant, MAP_TCP};
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortCount, PortInfo,
};

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
    /// - `TCP_GUARANTEE` (also `GUARANTEE`): default 5 seconds.
    /// - `MAPPING_CAPACITY` (also `CAPACITY`): default 65536.
    /// - `DST_ANNO`: default true. `REPLY_ANNO PAINT`. `REAP_INTERVAL`:
    ///   accepted, ignored.
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

impl TCPRewriter {
    pub const CLASS: ElementClass = ElementClass {
        name: "TCPRewriter",
        ports: "1-/1-",
        processing: "h/h",
        doc: TCPRewriter::DOC,
        factory: TCPRewriter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let core = RewriterCore::configure(Variant::Tcp, args)?;
        Some(Box::new(TCPRewriter { core }))
    }

    /// The shared core (tests drive its clock).
    #[cfg(test)]
    pub(crate) fn core(&self) -> &RewriterCore {
        &self.core
    }
}

impl Element for TCPRewriter {
    fn port_count(&self) -> Option<PortCount> {
        Some(self.core.port_count())
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        self.core.initialize(ports)?;
        Ok(false)
    }

    fn push(&mut self, port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.core.push(port, batch, cx);
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<TCPRewriter>(old) {
            self.core.take_state(&old.core);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        self.core
            .handlers(&[("table", None), ("mappings", None)], &[("lookup", MAP_TCP)])
    }
}
