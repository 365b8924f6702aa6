use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct PaintTee {}
}

impl PaintTee {
    pub const CLASS: ElementClass = ElementClass {
        name: "PaintTee",
        ports: "1/2",
        processing: "h/h",
        doc: PaintTee::DOC,
        factory: PaintTee::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "PaintTee: not implemented yet");
        None
    }
}

impl Element for PaintTee {}
