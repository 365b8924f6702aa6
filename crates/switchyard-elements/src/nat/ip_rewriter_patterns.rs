use super::pattern::{self, Parsed, Pattern};
use std::sync::Arc;
use switchyard_core::{documented, Args, Element, ElementClass, Export};

documented! {
    /// Defines named rewrite patterns that IPRewriter, TCPRewriter and
    /// UDPRewriter input specs use by name (Click's IPRewriterPatterns).
    ///
    /// Each argument is `NAME SADDR SPORT DADDR DPORT` (or
    /// `NAME SADDR DADDR`), a name and a pattern as the rewriters' `pattern`
    /// spec writes it, ranges and `#`/`?` included. A rewriter input
    /// `pattern NAME FOUTPUT ROUTPUT` (or `NAME FOUTPUT ROUTPUT`) then uses
    /// it. Every input that names a pattern shares it, its turn for `#`
    /// ranges included, as in Click.
    ///
    /// How names are found, as in Click: this element lends its patterns
    /// to the configuration's name scope, and every rewriter of the same
    /// configuration looks its names up there once all elements are
    /// configured, so the order of the declarations does not matter. A
    /// name defined twice, by this element or by two of them, is an error,
    /// and so is a name no IPRewriterPatterns of the configuration defines
    /// (another configuration's, such as the running one a reload
    /// replaces, does not count). A rewriter keeps the patterns it
    /// resolved: reloading without this element changes nothing for
    /// established mappings.
    ///
    /// # Ports
    /// None.
    ///
    /// # Arguments
    /// - `NAME PATTERN` (positional, any number): as above. Names are
    ///   distinct within the element; a name starts with a letter or `_`.
    ///
    /// # Handlers
    /// None besides the generic ones.
    ///
    /// # Example
    /// ```text
    /// IPRewriterPatterns(to_world 192.0.2.1 1024-65535 - -);
    /// nat :: IPRewriter(pattern to_world 0 1, drop);
    /// ```
    pub struct IPRewriterPatterns {
        patterns: Vec<(String, Arc<Pattern>)>,
    }
}

impl IPRewriterPatterns {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPRewriterPatterns",
        ports: "0/0",
        processing: "a/a",
        doc: IPRewriterPatterns::DOC,
        factory: IPRewriterPatterns::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let mut patterns: Vec<(String, Arc<Pattern>)> = Vec::new();
        for (text, span) in args.rest_positional() {
            let words: Vec<&str> = text.split_whitespace().collect();
            let Some((&name, rest)) = words.split_first() else {
                continue;
            };
            if !pattern::is_name(name) {
                args.error(Some(span), format!("'{name}' is not a pattern name"));
                continue;
            }
            if patterns.iter().any(|(n, _)| n == name) {
                args.error(Some(span), format!("pattern '{name}' already defined"));
                continue;
            }
            match Pattern::parse(rest) {
                Ok(Parsed::Pattern(p)) => patterns.push((name.to_string(), Arc::new(p))),
                Ok(Parsed::Name(_)) => args.error(Some(span), format!("pattern '{name}': syntax error")),
                Err(e) => args.error(Some(span), format!("pattern '{name}': {e}")),
            }
        }
        if args.has_errors() {
            return None;
        }
        Some(Box::new(IPRewriterPatterns { patterns }))
    }
}

impl Element for IPRewriterPatterns {
    fn exports(&self) -> Vec<(String, Export)> {
        self.patterns
            .iter()
            .map(|(name, p)| (name.clone(), p.clone() as Export))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_its_patterns_by_name() {
        let mut args = Args::parse_str(
            "p :: IPRewriterPatterns",
            "pat_elem_a 1.0.0.1 1024-2047# - -, pat_elem_b - -",
        );
        let e = IPRewriterPatterns::make(&mut args);
        assert!(args.complete().is_ok());
        let lent = e.unwrap().exports();
        let names: Vec<&str> = lent.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pat_elem_a", "pat_elem_b"]);
        let a = lent[0].1.clone().downcast::<Pattern>().unwrap();
        assert_eq!(a.unparse(), "1.0.0.1 1024-2047# - -");
    }

    #[test]
    fn bad_definitions_are_errors() {
        for (config, want) in [
            ("pat_x 1.0.0.1 1-2 - -, pat_x - -", "pattern 'pat_x' already defined"),
            ("pat_y 1.0.0.1 99999 - -", "pattern 'pat_y': bad source port"),
            ("pat_z other", "pattern 'pat_z': syntax error"),
            ("9lives - -", "'9lives' is not a pattern name"),
        ] {
            let mut args = Args::parse_str("p :: IPRewriterPatterns", config);
            let made = IPRewriterPatterns::make(&mut args);
            let errs = args.complete().unwrap_err();
            assert_eq!(
                errs[0].message,
                format!("'p :: IPRewriterPatterns': {want}"),
                "{config}"
            );
            assert!(made.is_none(), "{config}");
        }
    }

    #[test]
    fn a_configuration_names_a_pattern_declared_after_its_rewriter() {
        use crate::nat::rewriter::tests::{udp, INSIDE, SERVER};
        let pkt = udp(INSIDE, 5000, SERVER, 53, b"query", true);
        let hex: Vec<String> = pkt.iter().map(|b| format!("{b:02x}")).collect();
        let config = format!(
            "InfiniteSource(\\<{}>, 5, STOP true) -> CheckIPHeader
                -> nat :: IPRewriter(pattern to_world 0 1, drop) -> c :: Counter -> Discard;
             Idle -> [1]nat; nat[1] -> Discard;
             IPRewriterPatterns(to_world 192.0.2.1 1024-65535# - -);",
            hex.join(" ")
        );
        let handlers = switchyard_core::run_text(&config, &crate::standard()).unwrap();
        assert_eq!(handlers.read("c.count").unwrap(), "5");
        assert_eq!(handlers.read("nat.table_size").unwrap(), "1");
        let table = handlers.read("nat.udp_table").unwrap();
        assert!(table.contains("=> (192.0.2.1, 1024, 198.51.100.7, 53)"), "{table}");
        let missing = config.replace("IPRewriterPatterns(to_world", "IPRewriterPatterns(elsewhere");
        // Built while a configuration that defines the name is alive (a
        // reload beside the running router): its names do not count.
        let running = switchyard_core::load_text("running.click", &config, &crate::standard(), &[]).unwrap();
        let err = switchyard_core::run_text(&missing, &crate::standard()).err().unwrap();
        assert!(err.contains("no such pattern 'to_world'"), "{err}");
        drop(running);
        let twice = format!("{config}\nIPRewriterPatterns(to_world 192.0.2.9 - - -);");
        let err = switchyard_core::run_text(&twice, &crate::standard()).err().unwrap();
        assert!(err.contains("'to_world' is already defined by"), "{err}");
    }
}
