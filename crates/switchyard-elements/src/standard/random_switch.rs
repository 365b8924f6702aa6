use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct RandomSwitch {}
}

impl RandomSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "RandomSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: RandomSwitch::DOC,
        factory: RandomSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "RandomSwitch: not implemented yet");
        None
    }
}

impl Element for RandomSwitch {}
