use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct Strip {}
}

impl Strip {
    pub const CLASS: ElementClass = ElementClass {
        name: "Strip",
        ports: "1/1",
        processing: "a/a",
        doc: Strip::DOC,
        factory: Strip::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "Strip: not implemented yet");
        None
    }
}

impl Element for Strip {}
