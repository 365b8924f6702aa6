use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct EtherRewrite {}
}

impl EtherRewrite {
    pub const CLASS: ElementClass = ElementClass {
        name: "EtherRewrite",
        ports: "1/1",
        processing: "a/a",
        doc: EtherRewrite::DOC,
        factory: EtherRewrite::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "EtherRewrite: not implemented yet");
        None
    }
}

impl Element for EtherRewrite {}
