use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass};

documented! {
    /// Never sends a packet; drops whatever is pushed to it. A placeholder
    /// for ports that must be connected to something.
    ///
    /// # Ports
    /// Any number of inputs and outputs; agnostic.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// Idle -> [1]sel;
    /// ```
    pub struct Idle;
}

impl Idle {
    pub const CLASS: ElementClass = ElementClass {
        name: "Idle",
        ports: "-/-",
        processing: "a/a",
        doc: Idle::DOC,
        factory: Idle::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(Idle))
    }
}

impl Element for Idle {
    fn push(&mut self, _port: usize, _batch: Batch, _cx: &mut Context<'_>) {}

    fn pull(&mut self, _port: usize, _cx: &mut Context<'_>) -> Option<Batch> {
        None
    }
}
