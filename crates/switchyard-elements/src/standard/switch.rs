use crate::util::{check_position, SwitchPosition};
use switchyard_core::{documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo};

documented! {
    /// Sends every packet to one output, chosen at run time.
    ///
    /// # Ports
    /// One input, any number of outputs; push.
    ///
    /// # Arguments
    /// - `K` (positional): the output to use at start; -1 drops everything.
    ///   Default 0. `OUTPUT` is Click's keyword for it.
    ///
    /// # Handlers
    /// - `switch` (read/write, persistent): the output in use. A write of
    ///   a value outside -1 to (outputs - 1) is refused; an accepted write
    ///   applies from the next batch, without stopping traffic.
    ///
    /// # Example
    /// ```text
    /// src -> sw :: Switch(0); sw[0] -> old; sw[1] -> new;
    /// ```
    pub struct Switch {
        position: SwitchPosition,
        ports: usize,
    }
}

impl Switch {
    pub const CLASS: ElementClass = ElementClass {
        name: "Switch",
        ports: "1/-",
        processing: "h/h",
        doc: Switch::DOC,
        factory: Switch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let k = read_output(args, false).unwrap_or(0);
        Some(Box::new(Switch {
            position: SwitchPosition::new(k),
            ports: 0,
        }))
    }
}

/// The output (or input) to use: positional, or keyword `K` or Click's
/// `OUTPUT` (which wins over a positional value, as in Click). With
/// `mandatory`, an error when none is given.
pub(crate) fn read_output(args: &mut Args, mandatory: bool) -> Option<i64> {
    let k = args.read_p::<i64>("K");
    let output = args.read::<i64>("OUTPUT").or(k);
    if output.is_none() && mandatory && !args.has_errors() {
        args.error(None, "missing mandatory argument K");
    }
    output
}

impl Element for Switch {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<Switch>(old) {
            if old.position.get() < self.ports as i64 {
                self.position = old.position;
            }
        }
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        self.ports = ports.outputs.len();
        check_position(self.position.get(), self.ports)?;
        Ok(false)
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        let k = self.position.get();
        if k >= 0 {
            cx.push(k as usize, batch);
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![self.position.handler(self.ports)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;

    #[test]
    fn output_is_positional_or_clicks_output_keyword() {
        for config in ["1", "K 1", "OUTPUT 1", ""] {
            assert!(configure("sw :: Switch", Switch::CLASS, config).is_ok(), "{config}");
        }
        let err = configure("sw :: Switch", Switch::CLASS, "1, 2").err();
        assert!(err.is_some_and(|e| e.contains("too many")));
    }
}
