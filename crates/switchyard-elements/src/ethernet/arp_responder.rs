use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct ARPResponder {}
}

impl ARPResponder {
    pub const CLASS: ElementClass = ElementClass {
        name: "ARPResponder",
        ports: "1/1-2",
        processing: "a/ah",
        doc: ARPResponder::DOC,
        factory: ARPResponder::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "ARPResponder: not implemented yet");
        None
    }
}

impl Element for ARPResponder {}
