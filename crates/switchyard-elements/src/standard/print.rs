use crate::ip::ip_print::{push_timestamp, Dump};
use crate::util::flag_handler;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, Args, Batch, Element, ElementClass, Handler, Packet};

documented! {
    /// Prints a line per packet to standard error, in Click's format: the
    /// label, the timestamp if asked, the length and the first bytes in
    /// hex (`label:   64 | 01020304 05060708`). For debugging; it costs a
    /// write per packet.
    ///
    /// Click's `PRINTANNO` (its raw annotation bytes) and `HEADROOM`
    /// (buffer headroom and tailroom) are not supported: Switchyard packets
    /// have named annotations and no exposed headroom.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `LABEL` (positional): text at the start of each line; default none.
    /// - `MAXLENGTH` (positional): most bytes shown; default 24, -1 for
    ///   all. `LENGTH` and `NBYTES` are Click's old names for it.
    /// - `CONTENTS`: `HEX` (default), `ASCII` (printable characters, `.`
    ///   for others, a space every 8) or `NONE`; true means HEX, false NONE.
    /// - `TIMESTAMP`: print the timestamp annotation (seconds since 1970)
    ///   after the label; default false.
    /// - `ACTIVE`: print at all; default true.
    ///
    /// # Handlers
    /// - `active` (read/write): ACTIVE.
    ///
    /// # Example
    /// ```text
    /// src -> Print(new) -> Discard;
    /// ```
    pub struct Print {
        label: String,
        max: usize,
        contents: Dump,
        timestamp: bool,
        active: Arc<AtomicBool>,
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
        // Click reads MAXLENGTH, then the old names LENGTH and NBYTES into
        // the same place: the last given wins.
        let mut max = args.read_p::<i64>("MAXLENGTH").unwrap_or(24);
        for old in ["LENGTH", "NBYTES"] {
            if let Some(v) = args.read::<i64>(old) {
                max = v;
            }
        }
        let contents = match args.read::<String>("CONTENTS") {
            None => Dump::Hex,
            Some(c) => Dump::parse(&c).unwrap_or_else(|| {
                let span = args.span_of("CONTENTS");
                args.error(
                    Some(span),
                    format!("CONTENTS: expected NONE, HEX or ASCII, found '{c}'"),
                );
                Dump::None
            }),
        };
        let timestamp = args.read::<bool>("TIMESTAMP").unwrap_or(false);
        let active = args.read::<bool>("ACTIVE").unwrap_or(true);
        if args.has_errors() {
            return None;
        }
        Some(Box::new(Print {
            label,
            max: if max < 0 { usize::MAX } else { max as usize },
            contents,
            timestamp,
            active: Arc::new(AtomicBool::new(active)),
        }))
    }

    /// One line: `label: [timestamp: ]len | 01020304 05060708 ...`; no
    /// ` | ` when no bytes are shown, as in Click.
    pub fn format(&self, p: &Packet) -> String {
        let data = p.data();
        let mut out = String::new();
        let mut sep = "";
        if !self.label.is_empty() {
            out.push_str(&self.label);
            sep = ": ";
        }
        if self.timestamp {
            out.push_str(sep);
            push_timestamp(&mut out, p.anno.timestamp_ns);
            sep = ": ";
        }
        out.push_str(&format!("{sep}{:4}", data.len()));
        let shown = match self.contents {
            Dump::None => &[][..],
            _ => &data[..data.len().min(self.max)],
        };
        if shown.is_empty() {
            return out;
        }
        out.push_str(" | ");
        for (i, &b) in shown.iter().enumerate() {
            match self.contents {
                Dump::Ascii => {
                    if i % 8 == 0 {
                        out.push(' ');
                    }
                    out.push(if (32..=126).contains(&b) { char::from(b) } else { '.' });
                }
                _ => {
                    if i > 0 && i % 4 == 0 {
                        out.push(' ');
                    }
                    out.push_str(&format!("{b:02x}"));
                }
            }
        }
        out
    }
}

impl Element for Print {
    fn simple_action(&mut self, batch: &mut Batch) {
        if !self.active.load(Relaxed) {
            return;
        }
        let mut err = std::io::stderr().lock();
        for p in batch.iter() {
            let _ = writeln!(err, "{}", self.format(p));
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        vec![flag_handler("active", &self.active)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printer(config: &str) -> Print {
        *switchyard_core::downcast::<Print>(crate::testutil::element(Print::CLASS, config)).unwrap()
    }

    #[test]
    fn formats_like_click() {
        let p = Packet::from_data(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(printer("new, 6").format(&p), "new:    7 | 01020304 0506");
        let mut p = Packet::from_data(&[1, 2, 3, 4, 5]);
        p.anno.timestamp_ns = 1_796_024_626_806_500_170;
        assert_eq!(
            printer("a, TIMESTAMP true").format(&p),
            "a: 1796024626.806500170:    5 | 01020304 05"
        );
        assert_eq!(
            printer("TIMESTAMP true").format(&p),
            "1796024626.806500170:    5 | 01020304 05"
        );
        assert_eq!(printer("b, CONTENTS ASCII").format(&p), "b:    5 |  .....");
        assert_eq!(printer("c, CONTENTS NONE").format(&p), "c:    5");
        assert_eq!(printer("d, 0").format(&p), "d:    5");
        assert_eq!(printer("e, CONTENTS false").format(&p), "e:    5");
        assert_eq!(printer("f, CONTENTS true, NBYTES 2").format(&p), "f:    5 | 0102");
        assert_eq!(printer("").format(&p), "   5 | 01020304 05");
        let text = Packet::from_data(b"hello, world\n");
        assert_eq!(printer("CONTENTS ASCII").format(&text), "  13 |  hello, w orld.");
    }

    #[test]
    fn active_false_prints_nothing_and_the_handler_turns_it_on() {
        let e = crate::testutil::element(Print::CLASS, "x, ACTIVE false");
        assert_eq!(crate::testutil::read(&e.handlers(), "active"), "false");
        crate::testutil::write(&e.handlers(), "active", "true").unwrap();
    }

    #[test]
    fn label_and_maxlength_are_positional_as_in_click() {
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "label, 200").is_ok());
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "label, MAXLENGTH 200").is_ok());
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "label, LENGTH 200").is_ok());
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "label, 200, TIMESTAMP true").is_ok());
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "label, 200, 3").is_err());
        assert!(crate::testutil::configure("p :: Print", Print::CLASS, "CONTENTS BINARY").is_err());
    }
}
