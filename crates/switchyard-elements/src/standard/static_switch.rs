use crate::util::check_position;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, PortInfo};

documented! {
    /// Sends every packet to one output fixed by the configuration.
    ///
    /// # Ports
    /// One input, any number of outputs; push.
    ///
    /// # Arguments
    /// - `K` (positional, mandatory): the output; -1 drops everything.
    ///   `OUTPUT` is Click's keyword for it.
    ///
    /// # Handlers
    /// None (use Switch for a position that changes at run time).
    ///
    /// # Example
    /// ```text
    /// src -> s :: StaticSwitch(1); s[0] -> Discard; s[1] -> Counter -> Discard;
    /// ```
    pub struct StaticSwitch {
        k: i64,
    }
}

impl StaticSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "StaticSwitch",
        ports: "1/-",
        processing: "h/h",
        doc: StaticSwitch::DOC,
        factory: StaticSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let k = crate::standard::switch::read_output(args, true)?;
        Some(Box::new(StaticSwitch { k }))
    }
}

impl Element for StaticSwitch {
    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        check_position(self.k, ports.outputs.len())?;
        Ok(false)
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        if self.k >= 0 {
            cx.push(self.k as usize, batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;

    #[test]
    fn output_is_positional_or_clicks_output_keyword() {
        for config in ["1", "K 1", "OUTPUT 1"] {
            assert!(
                configure("s :: StaticSwitch", StaticSwitch::CLASS, config).is_ok(),
                "{config}"
            );
        }
        let err = configure("s :: StaticSwitch", StaticSwitch::CLASS, "").err();
        assert!(err.is_some_and(|e| e.contains("missing mandatory argument K")));
    }
}
