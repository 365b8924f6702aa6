use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct ICMPPingResponder {}
}

impl ICMPPingResponder {
    pub const CLASS: ElementClass = ElementClass {
        name: "ICMPPingResponder",
        ports: "1/1-2",
        processing: "a/ah",
        doc: ICMPPingResponder::DOC,
        factory: ICMPPingResponder::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "ICMPPingResponder: not implemented yet");
        None
    }
}

impl Element for ICMPPingResponder {}
