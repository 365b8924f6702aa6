use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct HashSwitch {}
}

impl HashSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "HashSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: HashSwitch::DOC,
        factory: HashSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "HashSwitch: not implemented yet");
        None
    }
}

impl Element for HashSwitch {}
