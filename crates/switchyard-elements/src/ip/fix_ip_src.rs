use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct FixIPSrc {}
}

impl FixIPSrc {
    pub const CLASS: ElementClass = ElementClass {
        name: "FixIPSrc",
        ports: "1/1",
        processing: "a/a",
        doc: FixIPSrc::DOC,
        factory: FixIPSrc::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "FixIPSrc: not implemented yet");
        None
    }
}

impl Element for FixIPSrc {}
