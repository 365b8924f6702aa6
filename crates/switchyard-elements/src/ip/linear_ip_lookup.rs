use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct LinearIPLookup {}
}

impl LinearIPLookup {
    pub const CLASS: ElementClass = ElementClass {
        name: "LinearIPLookup",
        ports: "1/-",
        processing: "h/h",
        doc: LinearIPLookup::DOC,
        factory: LinearIPLookup::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "LinearIPLookup: not implemented yet");
        None
    }
}

impl Element for LinearIPLookup {}
