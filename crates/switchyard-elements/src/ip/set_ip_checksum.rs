use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct SetIPChecksum {}
}

impl SetIPChecksum {
    pub const CLASS: ElementClass = ElementClass {
        name: "SetIPChecksum",
        ports: "1/1",
        processing: "a/a",
        doc: SetIPChecksum::DOC,
        factory: SetIPChecksum::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "SetIPChecksum: not implemented yet");
        None
    }
}

impl Element for SetIPChecksum {}
