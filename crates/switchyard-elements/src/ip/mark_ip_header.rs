use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct MarkIPHeader {}
}

impl MarkIPHeader {
    pub const CLASS: ElementClass = ElementClass {
        name: "MarkIPHeader",
        ports: "1/1",
        processing: "a/a",
        doc: MarkIPHeader::DOC,
        factory: MarkIPHeader::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "MarkIPHeader: not implemented yet");
        None
    }
}

impl Element for MarkIPHeader {}
