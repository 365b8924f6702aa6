use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct RoundRobinSwitch {}
}

impl RoundRobinSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "RoundRobinSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: RoundRobinSwitch::DOC,
        factory: RoundRobinSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "RoundRobinSwitch: not implemented yet");
        None
    }
}

impl Element for RoundRobinSwitch {}
