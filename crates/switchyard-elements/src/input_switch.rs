use crate::util::{check_position, SwitchPosition};
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, PortInfo};

documented! {
    /// Forwards packets from one input only and drops the others: the
    /// rollback selector. With a Tee feeding both branches, the branch on
    /// the selected input reaches production; flipping `switch` goes live
    /// or rolls back.
    ///
    /// # Ports
    /// Any number of inputs, one output; push.
    ///
    /// # Arguments
    /// - `K` (positional): the input to forward at start; -1 forwards none.
    ///   Default 0.
    ///
    /// # Handlers
    /// - `switch` (read/write, persistent): the input forwarded. A value
    ///   outside -1 to (inputs - 1) is refused (Click would silently set
    ///   -1 and drop all traffic); an accepted write applies from the next
    ///   batch without stopping traffic.
    ///
    /// # Example
    /// ```text
    /// hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
    /// hub[1] -> new :: Counter -> [1]sel;
    /// sel -> out :: Counter -> Discard;
    /// ```
    pub struct InputSwitch {
        position: SwitchPosition,
        ports: usize,
    }
}

impl InputSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "InputSwitch",
        ports: "-/1",
        processing: "h/h",
        doc: InputSwitch::DOC,
        factory: InputSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let k = args.read_p::<i64>("K").unwrap_or(0);
        Some(Box::new(InputSwitch {
            position: SwitchPosition::new(k),
            ports: 0,
        }))
    }
}

impl Element for InputSwitch {
    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        self.ports = ports.inputs.len();
        check_position(self.position.get(), self.ports)?;
        Ok(false)
    }

    fn push(&mut self, port: usize, batch: Batch, cx: &mut Context<'_>) {
        if self.position.get() == port as i64 {
            cx.push(0, batch);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.position.handler(self.ports)]
    }
}
