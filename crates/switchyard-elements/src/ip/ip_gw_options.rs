use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct IPGWOptions {}
}

impl IPGWOptions {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPGWOptions",
        ports: "1/1-2",
        processing: "a/ah",
        doc: IPGWOptions::DOC,
        factory: IPGWOptions::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "IPGWOptions: not implemented yet");
        None
    }
}

impl Element for IPGWOptions {}
