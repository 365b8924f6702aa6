use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Not implemented yet.
    ///
    /// # Ports
    /// # Arguments
    /// # Handlers
    /// # Example
    pub struct DropBroadcasts {}
}

impl DropBroadcasts {
    pub const CLASS: ElementClass = ElementClass {
        name: "DropBroadcasts",
        ports: "1/1",
        processing: "a/a",
        doc: DropBroadcasts::DOC,
        factory: DropBroadcasts::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        args.error(None, "DropBroadcasts: not implemented yet");
        None
    }
}

impl Element for DropBroadcasts {}
