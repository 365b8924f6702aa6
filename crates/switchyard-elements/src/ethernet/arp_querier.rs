use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct ARPQuerier {}
}

impl ARPQuerier {
    pub const CLASS: ElementClass = ElementClass {
        name: "ARPQuerier",
        ports: "2/1-2",
        processing: "h/h",
        doc: ARPQuerier::DOC,
        factory: ARPQuerier::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "ARPQuerier: not implemented yet");
        None
    }
}

impl Element for ARPQuerier {}
