use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::handler::parse_in_range;
use switchyard_core::{documented, Args, Batch, Element, ElementClass, FromArg, Handler};

documented! {
    /// Sets each packet's paint annotation, to mark which way it came.
    ///
    /// Click's `ANNO` (any one-byte annotation instead of paint) is
    /// accepted only when it names paint (`PAINT`, or 16, its offset in
    /// Click's annotation area): Switchyard packets carry named
    /// annotations, and paint is the one-byte colour.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `COLOR` (positional, mandatory): 0 to 255.
    /// - `ANNO` (positional): `PAINT` (the default), as above.
    ///
    /// # Handlers
    /// - `color` (read/write): COLOR.
    ///
    /// # Example
    /// ```text
    /// a -> Paint(1) -> [0]ps :: PaintSwitch;
    /// ```
    pub struct Paint {
        color: Arc<AtomicU8>,
    }
}

impl Paint {
    pub const CLASS: ElementClass = ElementClass {
        name: "Paint",
        ports: "1/1",
        processing: "a/a",
        doc: Paint::DOC,
        factory: Paint::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let color = args.read_mp::<u8>("COLOR");
        read_anno(args, true, Anno::PAINT);
        let color = color.filter(|_| !args.has_errors())?;
        Some(Box::new(Paint {
            color: Arc::new(AtomicU8::new(color)),
        }))
    }
}

/// An annotation Click configurations may name in an `ANNO` argument:
/// its name and its byte offset in Click's annotation area.
pub(crate) struct Anno {
    name: &'static str,
    offset: u32,
}

impl Anno {
    pub(crate) const PAINT: Anno = Anno {
        name: "PAINT",
        offset: 16,
    };
    pub(crate) const DST_IP: Anno = Anno {
        name: "DST_IP",
        offset: 0,
    };
}

/// Reads Click's `ANNO` argument (also the next positional one where
/// `positional`) for an element that works on one fixed annotation:
/// naming that annotation is fine, anything else is an error, since
/// Switchyard packets have no other byte annotations to point it at.
pub(crate) fn read_anno(args: &mut Args, positional: bool, anno: Anno) {
    let text = if positional {
        args.read_p::<String>("ANNO")
    } else {
        args.read::<String>("ANNO")
    };
    let Some(text) = text else {
        return;
    };
    if text != anno.name && u32::from_arg(&text) != Some(anno.offset) {
        let span = args.span_of("ANNO");
        args.error(
            Some(span),
            format!(
                "ANNO: only {} (offset {}) is supported, found '{text}'",
                anno.name, anno.offset
            ),
        );
    }
}

impl Element for Paint {
    fn simple_action(&mut self, batch: &mut Batch) {
        let c = self.color.load(Relaxed);
        for p in batch.packets_mut() {
            p.anno.paint = c;
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (r, w) = (self.color.clone(), self.color.clone());
        vec![Handler::read_write(
            "color",
            move || r.load(Relaxed).to_string(),
            move |v| {
                w.store(parse_in_range(v, 0..=255)? as u8, Relaxed);
                Ok(())
            },
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::configure;

    #[test]
    fn positional_arguments_are_clicks_color_anno() {
        for config in ["1", "1, PAINT", "1, 16", "COLOR 1, ANNO PAINT"] {
            let e = configure("p :: Paint", Paint::CLASS, config);
            assert!(e.is_ok(), "{config}: {:?}", e.err());
        }
        let err = configure("p :: Paint", Paint::CLASS, "1, DST_IP").err();
        assert!(err.is_some_and(|e| e.contains("ANNO: only PAINT")));
    }
}
