use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct StaticIPLookup {}
}

impl StaticIPLookup {
    pub const CLASS: ElementClass = ElementClass {
        name: "StaticIPLookup",
        ports: "1/-",
        processing: "h/h",
        doc: StaticIPLookup::DOC,
        factory: StaticIPLookup::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "StaticIPLookup: not implemented yet");
        None
    }
}

impl Element for StaticIPLookup {}
