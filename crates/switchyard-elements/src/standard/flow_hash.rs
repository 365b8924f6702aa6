use switchyard_core::{documented, Args, Batch, Element, ElementClass};

documented! {
    /// Stamps each packet's `flow_hash` annotation from its headers (the
    /// IPv4/IPv6 5-tuple, else the MAC pair), so that elements further on
    /// (CanarySwitch) key flows by what the packet was when it arrived,
    /// even after a branch rewrote addresses or ports. Put it before the
    /// hub.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0) -> FlowHash -> hub :: Tee(2);
    /// ```
    pub struct FlowHash;
}

impl FlowHash {
    pub const CLASS: ElementClass = ElementClass {
        name: "FlowHash",
        ports: "1/1",
        processing: "a/a",
        doc: FlowHash::DOC,
        factory: FlowHash::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(FlowHash))
    }
}

impl Element for FlowHash {
    fn simple_action(&mut self, batch: &mut Batch) {
        for p in batch.packets_mut() {
            // Folded to 32 bits; 0 means "not stamped", so never 0.
            let h = crate::rollback::canary_switch::flow_hash(p.data());
            p.anno.flow_hash = ((h ^ (h >> 32)) as u32).max(1);
        }
    }
}
