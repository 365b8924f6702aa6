use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct CheckIPHeader {}
}

impl CheckIPHeader {
    pub const CLASS: ElementClass = ElementClass {
        name: "CheckIPHeader",
        ports: "1/1-2",
        processing: "a/ah",
        doc: CheckIPHeader::DOC,
        factory: CheckIPHeader::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "CheckIPHeader: not implemented yet");
        None
    }
}

impl Element for CheckIPHeader {}
