use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct RadixIPLookup {}
}

impl RadixIPLookup {
    pub const CLASS: ElementClass = ElementClass {
        name: "RadixIPLookup",
        ports: "1/-",
        processing: "h/h",
        doc: RadixIPLookup::DOC,
        factory: RadixIPLookup::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "RadixIPLookup: not implemented yet");
        None
    }
}

impl Element for RadixIPLookup {}
