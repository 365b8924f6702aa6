//! The element API: what every element, standard or user-written,
//! implements, and the metadata the registry keeps about its class.

use crate::args::Args;
use crate::handler::Handler;
use crate::packet::Batch;
use crate::runtime::Context;
use std::time::Instant;

/// How a port moves packets (Click's processing codes `h`, `l`, `a`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processing {
    /// The upstream element calls `push`.
    Push,
    /// The downstream element calls `pull`.
    Pull,
    /// Either; resolved from the neighbours, push by default.
    Agnostic,
}

/// What a task did in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Moved packets; run again soon.
    Busy,
    /// Nothing to do now; wake on new input.
    Idle,
    /// Nothing to do before this instant (rate limiting).
    SleepUntil(Instant),
    /// Finished for good (a source past its LIMIT).
    Done,
}

/// A configured element. Elements in one thread call each other directly
/// through the [`Context`]: `push` receives a batch and passes batches on
/// with [`Context::push`]; `pull` returns a batch, pulling upstream with
/// [`Context::pull`]. State that handlers touch lives in atomics shared
/// with the [`Handler`] closures, so a handler never blocks the data path.
pub trait Element: std::any::Any + Send + 'static {
    /// A batch arrives on push input `port`. The default treats the
    /// element as a one-in one-out filter built on [`simple_action`].
    ///
    /// [`simple_action`]: Element::simple_action
    fn push(&mut self, port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let _ = port;
        self.simple_action(&mut batch);
        if !batch.is_empty() {
            cx.push(0, batch);
        }
    }

    /// The downstream element pulls on output `port`. The default pulls
    /// input 0 and applies [`simple_action`](Element::simple_action).
    fn pull(&mut self, port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let _ = port;
        let mut batch = cx.pull(0)?;
        self.simple_action(&mut batch);
        Some(batch)
    }

    /// Processes a batch in place (Click's `simple_action`): count it,
    /// modify packets, drop some with `retain`.
    fn simple_action(&mut self, batch: &mut Batch) {
        let _ = batch;
    }

    /// Called once the graph is checked, with the resolved processing of
    /// every port. Return true if the element is a task (a source, or a
    /// sink that pulls) and wants [`run`](Element::run) called.
    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        let _ = ports;
        Ok(false)
    }

    /// One run of a task: move up to a batch or so of packets.
    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        let _ = cx;
        Work::Done
    }

    /// A port count narrower than the class's, decided by the
    /// configuration (`Tee(2)` has exactly two outputs).
    fn port_count(&self) -> Option<PortCount> {
        None
    }

    /// What this element lends to others of the same configuration by
    /// name (Click's name scope): IPRewriterPatterns' named patterns.
    /// Collected once every element is configured; two elements lending
    /// one name is a configuration error.
    fn exports(&self) -> Vec<(String, Export)> {
        Vec::new()
    }

    /// A resource this element needs for itself when the pipeline runs as
    /// several copies (`Copies(N)`): what it would do (`"receive every
    /// frame of 'eth0'"`) and how to share it instead (`"give it FANOUT"`).
    /// Two copies asking for the same resource is a configuration error.
    /// A FromDevice without FANOUT would hand every copy every frame; a
    /// ToDump without `$COPY` in its file name would write one file twice.
    fn exclusive(&self) -> Option<(String, String)> {
        None
    }

    /// What this element lends under its own name, to elements that name
    /// it in their arguments (a FlowTable to its pinned selectors).
    fn lends(&self) -> Option<Export> {
        None
    }

    /// Looks up what other elements of the same configuration lent
    /// ([`exports`](Element::exports)), after every element is configured
    /// and before [`initialize`](Element::initialize). An error is a
    /// configuration error at this element.
    fn resolve(&mut self, scope: &Scope) -> Result<(), String> {
        let _ = scope;
        Ok(())
    }

    /// The element's handlers (besides the generic `name`, `class`,
    /// `config`, `ports`, `handlers` every element has).
    fn handlers(&self) -> Vec<Handler> {
        Vec::new()
    }

    /// True for a thread boundary (Queue): its input side and its output
    /// side may run on different threads.
    fn is_thread_boundary(&self) -> bool {
        false
    }

    /// For a thread boundary whose sides do land on different threads: the
    /// half that lives on the pulling side. The original keeps the pushing
    /// side.
    fn split_off_pull_side(&mut self) -> Option<Box<dyn Element>> {
        None
    }

    /// Hot reload (Click's `take_state`): `old` is the element of the same
    /// name and class in the configuration being replaced, paused between
    /// batches, not drained. Take what should survive (counts, positions,
    /// weights, an open device, and packets it holds: what is not taken is
    /// dropped): downcast it with [`downcast`](crate::downcast). A thread
    /// boundary whose two sides ran on different threads is handed over
    /// side by side (one call per side). Called before the handlers are
    /// collected and the new threads start; an element on a thread the
    /// reload keeps running is not replaced at all.
    fn take_state(&mut self, old: Box<dyn Element>) {
        let _ = old;
    }

    /// Called once the element is about to run, after any
    /// [`take_state`](Element::take_state): acquire what was not inherited
    /// (open a device). [`initialize`](Element::initialize) only checks
    /// that it could, since `switchyard check` and a reload's check must
    /// not open anything. An error at start stops the router from
    /// starting; after a reload it is logged.
    fn activate(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Called once before the element runs, with the router's control
    /// plane: for an element whose handlers read or write others (a
    /// passive Script's `run`), outside any thread of the router. Keep it
    /// weakly (the control plane holds the handlers that hold it).
    fn attach_control(&mut self, control: &std::sync::Weak<dyn crate::runtime::ControlPlane>) {
        let _ = control;
    }

    /// Called on the element's own thread before it runs, with a handle
    /// that wakes this thread when it sleeps.
    fn attach_thread(&mut self, waker: &crate::runtime::Waker) {
        let _ = waker;
    }

    /// True while packets wait inside this element for its own thread to
    /// take them (a Queue's pull side): the thread must not sleep.
    fn has_pending(&self) -> bool {
        false
    }

    /// True while the element holds packets it has yet to pass on (a
    /// Queue's contents, a delayed batch): a reload that removes it
    /// reports them dropped. Defaults to [`has_pending`](Element::has_pending).
    fn holds_packets(&self) -> bool {
        self.has_pending()
    }

    /// False while more packets may still arrive from another thread (a
    /// Queue whose producer runs): on a stop, the thread waits for them.
    fn is_finished(&self) -> bool {
        true
    }

    /// For an element that stores packets (a Queue's pushing side): how
    /// many more it can take now without dropping. Sources upstream of it
    /// produce no more than that and wait while it is 0 (Click's full
    /// notifier, see [`Context::room`]). `None` for every other element.
    fn room(&self) -> Option<usize> {
        None
    }

    /// For a driver script (DriverManager): where the router posts the
    /// stop requests it takes instead of stopping. At most one element of
    /// a configuration returns one.
    fn stop_events(&self) -> Option<std::sync::Arc<crate::runtime::StopEvents>> {
        None
    }
}

/// A value an element lends to the others of its configuration.
pub type Export = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// The names the elements of one configuration lent each other: built
/// per configuration (a reload builds its own), so nothing leaks between
/// a running router and the configuration replacing it.
#[derive(Default)]
pub struct Scope {
    names: std::collections::HashMap<String, (String, Export)>,
    elements: std::collections::HashMap<String, Export>,
}

impl Scope {
    /// Adds `name`, lent by `element`; on a clash, the element that lent
    /// it first.
    pub fn insert(&mut self, name: String, element: &str, value: Export) -> Result<(), String> {
        match self.names.entry(name) {
            std::collections::hash_map::Entry::Occupied(e) => Err(e.get().0.clone()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((element.to_string(), value));
                Ok(())
            }
        }
    }

    /// Records what the element `name` lends ([`Element::lends`]).
    pub fn lend(&mut self, name: String, value: Export) {
        self.elements.insert(name, value);
    }

    /// What the element `name` lends, if it is a `T`.
    pub fn element<T: std::any::Any + Send + Sync>(&self, name: &str) -> Option<std::sync::Arc<T>> {
        self.elements.get(name).and_then(|v| v.clone().downcast::<T>().ok())
    }

    /// The value lent under `name`, if it is a `T`.
    pub fn get<T: std::any::Any + Send + Sync>(&self, name: &str) -> Option<std::sync::Arc<T>> {
        self.names.get(name).and_then(|(_, v)| v.clone().downcast::<T>().ok())
    }
}

/// The resolved shape of one element: port counts and processing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub inputs: Vec<Processing>,
    pub outputs: Vec<Processing>,
}

/// A factory: reads arguments and returns the element, or records errors
/// in `args` and returns `None`.
pub type Factory = fn(&mut Args) -> Option<Box<dyn Element>>;

/// Everything the registry knows about a class. One source of truth for
/// the graph checker and for `switchyard elements`.
#[derive(Clone, Copy)]
pub struct ElementClass {
    /// Click's class name.
    pub name: &'static str,
    /// Click port count string: `"1/1"`, `"1/-"`, `"-/1"`, `"0/1"`, `"1/1-"`.
    pub ports: &'static str,
    /// Click processing string: `"a/a"`, `"h/h"`, `"h/l"`, `"l/h"`, `"/h"`.
    pub processing: &'static str,
    /// The element reference: the doc comment of the element's type.
    pub doc: &'static str,
    pub factory: Factory,
}

impl ElementClass {
    /// An element of this class configured from `config` outside any
    /// graph (unit tests, tools), named `label` (`f :: FromDump`) in its
    /// errors; every error, one per line.
    pub fn configure(&self, label: &str, config: &str) -> Result<Box<dyn Element>, String> {
        let mut args = Args::parse_str(label, config);
        let made = (self.factory)(&mut args);
        match args.complete() {
            Ok(()) => made.ok_or_else(|| format!("{label}: not configured")),
            Err(e) => Err(e.into_iter().map(|d| d.message).collect::<Vec<_>>().join("\n")),
        }
    }
}

impl std::fmt::Debug for ElementClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElementClass").field("name", &self.name).finish()
    }
}

/// Allowed number of ports on one side: `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub min: u32,
    pub max: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortCount {
    pub inputs: PortRange,
    pub outputs: PortRange,
}

impl PortCount {
    /// Parses a Click port count string. `-` is any number, `N-` at least
    /// N, `N-M` a range.
    pub fn parse(spec: &str) -> Option<PortCount> {
        let (i, o) = spec.split_once('/').unwrap_or((spec, spec));
        Some(PortCount {
            inputs: PortRange::parse(i)?,
            outputs: PortRange::parse(o)?,
        })
    }

    pub fn exactly(inputs: u32, outputs: u32) -> PortCount {
        PortCount {
            inputs: PortRange {
                min: inputs,
                max: inputs,
            },
            outputs: PortRange {
                min: outputs,
                max: outputs,
            },
        }
    }
}

impl PortRange {
    fn parse(s: &str) -> Option<PortRange> {
        const ANY: u32 = u32::MAX;
        if s == "-" {
            return Some(PortRange { min: 0, max: ANY });
        }
        match s.split_once('-') {
            Some((a, "")) => Some(PortRange {
                min: a.parse().ok()?,
                max: ANY,
            }),
            Some((a, b)) => Some(PortRange {
                min: a.parse().ok()?,
                max: b.parse().ok()?,
            }),
            None => {
                let n = s.parse().ok()?;
                Some(PortRange { min: n, max: n })
            }
        }
    }

    pub fn describe(&self) -> String {
        match (self.min, self.max) {
            (a, b) if a == b => a.to_string(),
            (a, u32::MAX) => format!("{a} or more"),
            (a, b) => format!("{a} to {b}"),
        }
    }
}

/// The processing of port `index` on one side of a Click processing string
/// (`"h/l"`, `"a/ah"`): one letter per port, the last repeating.
pub fn processing_of(spec: &str, output: bool, index: usize) -> Processing {
    let (i, o) = spec.split_once('/').unwrap_or((spec, spec));
    let side = if output { o } else { i };
    let letter = side.chars().nth(index).or_else(|| side.chars().last()).unwrap_or('a');
    match letter {
        'h' => Processing::Push,
        'l' => Processing::Pull,
        _ => Processing::Agnostic,
    }
}

/// Defines a struct whose doc comment is also available at run time as
/// `Type::DOC`, so that `switchyard elements` prints exactly the rustdoc
/// text: one source of truth for the element reference.
#[macro_export]
macro_rules! documented {
    ($(#[doc = $doc:literal])* $vis:vis struct $name:ident $($body:tt)*) => {
        $(#[doc = $doc])*
        $vis struct $name $($body)*
        impl $name {
            /// The reference text of this element, as in its doc comment.
            pub const DOC: &'static str = concat!($($doc, "\n"),*);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_counts_parse_click_strings() {
        let p = PortCount::parse("1/1-").unwrap();
        assert_eq!(
            (p.inputs.min, p.inputs.max, p.outputs.min, p.outputs.max),
            (1, 1, 1, u32::MAX)
        );
        let p = PortCount::parse("-/1").unwrap();
        assert_eq!((p.inputs.min, p.inputs.max), (0, u32::MAX));
        let p = PortCount::parse("0-2/0").unwrap();
        assert_eq!(p.inputs.max, 2);
        assert!(PortCount::parse("x/1").is_none());
    }

    #[test]
    fn a_scope_lends_each_name_once_and_by_type() {
        let mut scope = Scope::default();
        scope.insert("nat".into(), "a", std::sync::Arc::new(7u32)).unwrap();
        assert_eq!(
            scope.insert("nat".into(), "b", std::sync::Arc::new(8u32)),
            Err("a".to_string())
        );
        assert_eq!(scope.get::<u32>("nat").as_deref(), Some(&7));
        assert!(
            scope.get::<String>("nat").is_none(),
            "a value of another type is not found"
        );
        assert!(scope.get::<u32>("other").is_none());
    }

    #[test]
    fn processing_letters_repeat() {
        assert_eq!(processing_of("h/l", false, 0), Processing::Push);
        assert_eq!(processing_of("h/l", true, 3), Processing::Pull);
        assert_eq!(processing_of("a/ah", true, 0), Processing::Agnostic);
        assert_eq!(processing_of("a/ah", true, 5), Processing::Push);
    }
}
