use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct ICMPError {}
}

impl ICMPError {
    pub const CLASS: ElementClass = ElementClass {
        name: "ICMPError",
        ports: "1/1",
        processing: "a/a",
        doc: ICMPError::DOC,
        factory: ICMPError::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "ICMPError: not implemented yet");
        None
    }
}

impl Element for ICMPError {}
