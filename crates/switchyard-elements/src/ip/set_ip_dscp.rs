use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct SetIPDSCP {}
}

impl SetIPDSCP {
    pub const CLASS: ElementClass = ElementClass {
        name: "SetIPDSCP",
        ports: "1/1",
        processing: "a/a",
        doc: SetIPDSCP::DOC,
        factory: SetIPDSCP::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "SetIPDSCP: not implemented yet");
        None
    }
}

impl Element for SetIPDSCP {}
