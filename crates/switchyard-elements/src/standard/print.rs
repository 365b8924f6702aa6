use std::io::Write;
use switchyard_core::{documented, Args, Batch, Element, ElementClass};

documented! {
    /// Prints a line per packet to standard error: the label, the length
    /// and the first bytes in hex. For debugging; it costs a write per
    /// packet.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `LABEL` (positional): text at the start of each line; default none.
    /// - `MAXLENGTH` (positional): most bytes shown; default 24, -1 for
    ///   all.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// src -> Print(new) -> Discard;
    /// ```
    pub struct Print {
        label: String,
        max: usize,
    }
}

impl Print {
    pub const CLASS: ElementClass = ElementClass {
        name: "Print",
        ports: "1/1",
        processing: "a/a",
        doc: Print::DOC,
        factory: Print::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let label = args.read_p::<String>("LABEL").unwrap_or_default();
        let max = args.read_p::<i64>("MAXLENGTH").unwrap_or(24);
        Some(Box::new(Print {
            label,
            max: if max < 0 { usize::MAX } else { max as usize },
        }))
    }

    /// One line: `label: len | 01020304 05060708 ...`.
    pub fn format(&self, data: &[u8]) -> String {
        let shown = &data[..data.len().min(self.max)];
        let hex: Vec<String> = shown
            .chunks(4)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let prefix = if self.label.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.label)
        };
        format!("{prefix}{:4} | {}", data.len(), hex.join(" "))
    }
}

impl Element for Print {
    fn simple_action(&mut self, batch: &mut Batch) {
        let mut err = std::io::stderr().lock();
        for p in batch.iter() {
            let _ = writeln!(err, "{}", self.format(p.data()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_click() {
        let p = Print {
            label: "new".into(),
            max: 6,
        };
        assert_eq!(p.format(&[1, 2, 3, 4, 5, 6, 7]), "new:    7 | 01020304 0506");
    }

    #[test]
    fn label_and_maxlength_are_positional_as_in_click() {
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "label, 200").is_ok());
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "label, MAXLENGTH 200").is_ok());
    }
}
