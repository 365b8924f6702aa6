use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct GetIPAddress {}
}

impl GetIPAddress {
    pub const CLASS: ElementClass = ElementClass {
        name: "GetIPAddress",
        ports: "1/1",
        processing: "a/a",
        doc: GetIPAddress::DOC,
        factory: GetIPAddress::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "GetIPAddress: not implemented yet");
        None
    }
}

impl Element for GetIPAddress {}
