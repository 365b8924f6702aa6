use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct IPPrint {}
}

impl IPPrint {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPPrint",
        ports: "1/1",
        processing: "a/a",
        doc: IPPrint::DOC,
        factory: IPPrint::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "IPPrint: not implemented yet");
        None
    }
}

impl Element for IPPrint {}
