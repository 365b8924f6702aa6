use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct DecIPTTL {}
}

impl DecIPTTL {
    pub const CLASS: ElementClass = ElementClass {
        name: "DecIPTTL",
        ports: "1/1-2",
        processing: "a/ah",
        doc: DecIPTTL::DOC,
        factory: DecIPTTL::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "DecIPTTL: not implemented yet");
        None
    }
}

impl Element for DecIPTTL {}
