use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct IPFilter {}
}

impl IPFilter {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPFilter",
        ports: "1/-",
        processing: "h/h",
        doc: IPFilter::DOC,
        factory: IPFilter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "IPFilter: not implemented yet");
        None
    }
}

impl Element for IPFilter {}
