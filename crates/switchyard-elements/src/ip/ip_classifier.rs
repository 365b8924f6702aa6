use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct IPClassifier {}
}

impl IPClassifier {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPClassifier",
        ports: "1/-",
        processing: "h/h",
        doc: IPClassifier::DOC,
        factory: IPClassifier::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "IPClassifier: not implemented yet");
        None
    }
}

impl Element for IPClassifier {}
