use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct EtherEncap {}
}

impl EtherEncap {
    pub const CLASS: ElementClass = ElementClass {
        name: "EtherEncap",
        ports: "1/1",
        processing: "a/a",
        doc: EtherEncap::DOC,
        factory: EtherEncap::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "EtherEncap: not implemented yet");
        None
    }
}

impl Element for EtherEncap {}
