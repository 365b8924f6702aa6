use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct IPFragmenter {}
}

impl IPFragmenter {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPFragmenter",
        ports: "1/1-2",
        processing: "h/h",
        doc: IPFragmenter::DOC,
        factory: IPFragmenter::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "IPFragmenter: not implemented yet");
        None
    }
}

impl Element for IPFragmenter {}
