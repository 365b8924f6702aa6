use super::rewriter::{RewriterCore, Variant};
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortCount, PortInfo,
};

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
    /// - `DST_ANNO`: default true. `REPLY_ANNO PAINT`. `REAP_INTERVAL`:
    ///   accepted, ignored.
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

impl UDPRewriter {
    pub const CLASS: ElementClass = ElementClass {
        name: "UDPRewriter",
        ports: "1-/1-",
        processing: "h/h",
        doc: UDPRewriter::DOC,
        factory: UDPRewriter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let core = RewriterCore::configure(Variant::Udp, args)?;
        Some(Box::new(UDPRewriter { core }))
    }

    /// The shared core (tests drive its clock).
    #[cfg(test)]
    pub(crate) fn core(&self) -> &RewriterCore {
        &self.core
    }
}

impl Element for UDPRewriter {
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
        if let Some(old) = downcast::<UDPRewriter>(old) {
            self.core.take_state(&old.core);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        self.core.handlers(&[("table", None), ("mappings", None)], &[])
    }
}
