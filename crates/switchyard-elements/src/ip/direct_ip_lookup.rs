use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct DirectIPLookup {}
}

impl DirectIPLookup {
    pub const CLASS: ElementClass = ElementClass {
        name: "DirectIPLookup",
        ports: "1/-",
        processing: "h/h",
        doc: DirectIPLookup::DOC,
        factory: DirectIPLookup::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "DirectIPLookup: not implemented yet");
        None
    }
}

impl Element for DirectIPLookup {}
