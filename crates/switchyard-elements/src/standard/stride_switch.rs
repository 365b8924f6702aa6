use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct StrideSwitch {}
}

impl StrideSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "StrideSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: StrideSwitch::DOC,
        factory: StrideSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "StrideSwitch: not implemented yet");
        None
    }
}

impl Element for StrideSwitch {}
