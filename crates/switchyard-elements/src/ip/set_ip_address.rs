use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct SetIPAddress {}
}

impl SetIPAddress {
    pub const CLASS: ElementClass = ElementClass {
        name: "SetIPAddress",
        ports: "1/1",
        processing: "a/a",
        doc: SetIPAddress::DOC,
        factory: SetIPAddress::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "SetIPAddress: not implemented yet");
        None
    }
}

impl Element for SetIPAddress {}
