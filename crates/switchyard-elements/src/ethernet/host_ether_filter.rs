use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct HostEtherFilter {}
}

impl HostEtherFilter {
    pub const CLASS: ElementClass = ElementClass {
        name: "HostEtherFilter",
        ports: "1/1-2",
        processing: "a/ah",
        doc: HostEtherFilter::DOC,
        factory: HostEtherFilter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "HostEtherFilter: not implemented yet");
        None
    }
}

impl Element for HostEtherFilter {}
