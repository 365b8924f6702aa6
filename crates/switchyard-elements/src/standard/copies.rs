use switchyard_core::{copies, documented, Args, Element, ElementClass, Handler};

documented! {
    /// Runs the whole pipeline as N copies, each on a thread of its own,
    /// behind one logical switch: the configuration says it once.
    ///
    /// Every element with connections runs in every copy, named `name#k`
    /// (k from 0 to N-1); an element without connections (a Script, a
    /// Watchdog) runs once. Where the copies must differ, `$COPY` is the
    /// copy's number: `FromDevice(eth0, METHOD xdp, QUEUE $COPY)`.
    /// Sources in memory simply run N times. A resource only one copy can
    /// hold is refused: a ring or pnet FromDevice without FANOUT (every
    /// copy would get every frame), two copies on one xdp queue
    /// (FromDevice or ToDevice), a ToDump or ToIPSummaryDump whose file
    /// name lacks `$COPY`. NAT (IPRewriter, TCPRewriter, UDPRewriter) is
    /// refused in copies for now: a reply may reach the copy without its
    /// mapping.
    ///
    /// To the operator the copies are one element under its plain name:
    /// - a write (`WRITE sel.switch 1`) is checked against every copy,
    ///   then made in each, and answered once every thread running copies
    ///   has begun a round after it (a thread blocked for 2 s makes the
    ///   reply 220 with a warning; a write from a router thread itself
    ///   does not wait): each copy flips at its own sequence boundary (its
    ///   hub numbers its own packets), so with flows spread by flow hash
    ///   every flow still leaves production exactly once;
    /// - a read gives the copies' sum for counts (`count`, `drops`), the
    ///   common value for settings (`switch`, weights), the highest for
    ///   high-water marks; where copies differ and cannot combine (a
    ///   setting configured with `$COPY`), one line per copy, `#k value`;
    /// - `name#k.handler` reads one copy; a copy's handlers are read only;
    /// - the state file, hot reload, the audit log, metrics and the
    ///   dashboard see the plain names.
    ///
    /// A source's `STOP true` stops the router once every copy of it has
    /// finished; other stop requests act as without copies. A hot reload
    /// keeps the copies' threads where their part is unchanged; a reload
    /// to another number of copies is refused (restart the router
    /// instead).
    ///
    /// # Ports
    /// None.
    ///
    /// # Arguments
    /// - `N` (positional, mandatory): the number of copies, 1 to 64.
    ///
    /// # Handlers
    /// - `copies` (read): N.
    ///
    /// # Example
    /// ```text
    /// Copies(2);
    /// FromDevice(eth0, METHOD xdp, QUEUE $COPY) -> hub :: Tee(2);
    /// ```
    pub struct Copies {
        n: usize,
    }
}

impl Copies {
    pub const CLASS: ElementClass = ElementClass {
        name: copies::CLASS,
        ports: "0/0",
        processing: "a/a",
        doc: Copies::DOC,
        factory: Copies::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let n = args.read_mp::<usize>("N")?;
        if !(1..=copies::MAX).contains(&n) {
            args.error(Some(args.span_of("N")), format!("N must be 1 to {}", copies::MAX));
            return None;
        }
        Some(Box::new(Copies { n }))
    }
}

impl Element for Copies {
    fn handlers(&self) -> Vec<Handler> {
        let n = self.n;
        vec![Handler::read_only("copies", move || n.to_string())]
    }
}
