use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct Unstrip {}
}

impl Unstrip {
    pub const CLASS: ElementClass = ElementClass {
        name: "Unstrip",
        ports: "1/1",
        processing: "a/a",
        doc: Unstrip::DOC,
        factory: Unstrip::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "Unstrip: not implemented yet");
        None
    }
}

impl Element for Unstrip {}
