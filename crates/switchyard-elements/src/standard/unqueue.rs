use crate::util::{count_handlers, flag_handler};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Context, Element, ElementClass, Handler, PortInfo, Work};

documented! {
    /// Pulls packets from its input and pushes them out: drains a Queue on
    /// the Queue's consumer thread.
    ///
    /// # Ports
    /// One pull input, one push output.
    ///
    /// # Arguments
    /// - `BURST` (positional): most packets moved per run; default 256.
    /// - `ACTIVE`: whether it moves packets; default true.
    ///
    /// # Handlers
    /// - `count` (read): packets moved.
    /// - `reset` (write): zeroes the count.
    /// - `active` (read/write): ACTIVE.
    ///
    /// # Example
    /// ```text
    /// src -> Queue -> Unqueue -> Counter -> Discard;
    /// ```
    pub struct Unqueue {
        burst: usize,
        count: Arc<AtomicU64>,
        active: Arc<AtomicBool>,
    }
}

impl Unqueue {
    pub const CLASS: ElementClass = ElementClass {
        name: "Unqueue",
        ports: "1/1",
        processing: "l/h",
        doc: Unqueue::DOC,
        factory: Unqueue::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let burst = args.read_p::<usize>("BURST").unwrap_or(256);
        let active = args.read::<bool>("ACTIVE").unwrap_or(true);
        if burst == 0 {
            args.error(Some(args.span_of("BURST")), "BURST must be at least 1");
            return None;
        }
        Some(Box::new(Unqueue {
            burst,
            count: Arc::new(AtomicU64::new(0)),
            active: Arc::new(AtomicBool::new(active)),
        }))
    }
}

impl Element for Unqueue {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<Unqueue>(old) {
            self.count = old.count;
        }
    }

    fn initialize(&mut self, _ports: &PortInfo) -> Result<bool, String> {
        Ok(true)
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if !self.active.load(Relaxed) {
            return Work::Idle;
        }
        let mut moved = 0;
        while moved < self.burst {
            let Some(b) = cx.pull(0) else { break };
            moved += b.len();
            cx.push(0, b);
        }
        self.count.fetch_add(moved as u64, Relaxed);
        if moved > 0 {
            Work::Busy
        } else {
            Work::Idle
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let [count, reset] = count_handlers(&self.count, "reset");
        vec![count, reset, flag_handler("active", &self.active)]
    }
}
