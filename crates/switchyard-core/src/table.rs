//! The router's handler table: every element's handlers by name, plus
//! Click's generic ones (`name`, `class`, `config`, `ports`, `handlers` per
//! element; `version`, `list`, `classes`, `config`, `flatconfig` global),
//! and the router's own `cycle_drops` and `stop`.
//! This is the one in-process interface the control socket and the CLI's
//! `--handler` use.

use crate::element::Processing;
use crate::graph::{Graph, Registry};
use crate::handler::{Handler, HandlerError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct ElementEntry {
    pub name: String,
    pub class: &'static str,
    pub handlers: Vec<Handler>,
    /// How many input and output ports it has.
    pub inputs: usize,
    pub outputs: usize,
    /// How many copies of it run (`Copies(N)`): 1 for an element of a
    /// single pipeline. An entry with more stands for its copies
    /// `name#0`... (see [`crate::copies`]), each also found by its name.
    pub copies: usize,
}

/// One connection of the running graph, by element index and port
/// (`from[from_port] -> [to_port]to`), for pictures of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Wire {
    pub from: usize,
    pub from_port: u32,
    pub to: usize,
    pub to_port: u32,
}

pub struct HandlerTable {
    /// The elements as the operator sees them: one entry per element,
    /// one for all the copies of a copied one.
    elements: Vec<ElementEntry>,
    /// Each copy of a copied element (`sel#1`), whole: what the group's
    /// entry is made from.
    copies: Vec<ElementEntry>,
    /// The same, as found by name: read only (a write goes to every copy
    /// through the group, so that the copies, the audit log and the
    /// state file agree).
    copy_views: Vec<ElementEntry>,
    /// The group of each copy.
    copy_group: Vec<usize>,
    /// Groups with a copy refreshed since they were last merged.
    refreshed: Vec<bool>,
    globals: Vec<Handler>,
    /// Element index by name: lookups stay constant-time however large
    /// the configuration (status pages and metrics look up every element).
    index: std::collections::HashMap<String, Slot>,
    /// Where each element of the graph is, by graph index.
    nodes: Vec<Slot>,
    /// For each entry of `elements` that stands for copies, the copies.
    groups: Vec<(usize, Vec<usize>)>,
    link: Arc<RouterLink>,
    wires: Vec<Wire>,
}

/// Where an element's entry is: among the visible elements or the copies.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Element(usize),
    Copy(usize),
}

/// What the global handlers know of the router running the table: the
/// packets it lost to push cycles and how to stop it. A reload's table
/// goes on with the running router's link.
#[derive(Default)]
pub struct RouterLink {
    pub(crate) cycle_drops: AtomicU64,
    pub(crate) router: std::sync::OnceLock<std::sync::Weak<crate::runtime::Shared>>,
}

impl RouterLink {
    /// Waits until every thread running copies has taken the writes the
    /// caller just made to them (a round begun after them), see
    /// [`Shared::await_rounds`](crate::runtime); true at once without a
    /// running router (a state file restored before the start). False if
    /// some thread did not in time.
    fn await_threads(&self) -> bool {
        match self.router.get().and_then(std::sync::Weak::upgrade) {
            Some(shared) => shared.await_rounds(crate::runtime::AWAIT_LIMIT),
            None => true,
        }
    }

    /// Asks the running router to stop (the global `stop` handler):
    /// lowers its run count by `value`, 1 if it is not a number, as Click.
    fn request_stop(&self, value: &str) -> Result<(), String> {
        let shared = self.router.get().and_then(std::sync::Weak::upgrade);
        let shared = shared.ok_or("no router is running this configuration")?;
        shared.request_stop(value.trim().parse().unwrap_or(1));
        Ok(())
    }
}

fn fixed(name: &str, value: String) -> Handler {
    Handler::read_only(name, move || value.clone())
}

/// An element's entry: the generic handlers (`name`, `class`, `config`,
/// `ports`), its own, and `handlers` listing them all.
fn entry(name: &str, node: &crate::graph::Node, ports: String, own: Vec<Handler>) -> ElementEntry {
    let mut e = entry_shell(name, node, ports);
    e.handlers.extend(own);
    e.handlers.push(listing(&e.handlers));
    e
}

/// An entry with the generic handlers only.
fn entry_shell(name: &str, node: &crate::graph::Node, ports: String) -> ElementEntry {
    ElementEntry {
        name: name.to_string(),
        class: node.class,
        handlers: vec![
            fixed("name", name.to_string()),
            fixed("class", node.class.to_string()),
            fixed("config", node.config.clone()),
            fixed("ports", ports),
        ],
        inputs: node.ports.inputs.len(),
        outputs: node.ports.outputs.len(),
        copies: 1,
    }
}

/// Click's `handlers` handler: one `name<TAB>mode` line per handler.
fn listing(handlers: &[Handler]) -> Handler {
    let mut text: String = handlers
        .iter()
        .filter(|h| !h.proxy)
        .map(|h| format!("{}\t{}\n", h.name, h.mode()))
        .collect();
    text.push_str("handlers\tr\n");
    fixed("handlers", text)
}

/// An entry's own handlers: after the four generic ones, before the
/// listing.
fn own_handlers(e: &ElementEntry) -> &[Handler] {
    let n = e.handlers.len();
    if n < 5 {
        return &[];
    }
    &e.handlers[4..n - 1]
}

/// `text` with the copy suffixes (`#k`) of the names in it removed.
fn without_copy_suffixes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '#' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.next_if(char::is_ascii_digit).is_some() {}
            continue;
        }
        out.push(c);
    }
    out
}

/// The globals that read or steer the running router: `cycle_drops`,
/// and `stop` (Click's: a write of N, default 1, lowers the run count by
/// N, as N sources' STOP; at 0 the router stops).
fn router_handlers(link: &Arc<RouterLink>) -> [Handler; 2] {
    let (a, b) = (link.clone(), link.clone());
    [
        Handler::read_only("cycle_drops", move || a.cycle_drops.load(Ordering::Relaxed).to_string()),
        Handler::write_only("stop", move |v| b.request_stop(v)),
    ]
}

impl HandlerTable {
    /// Collects the handlers of `graph` before it starts running.
    pub fn new(graph: &Graph, registry: &Registry, config_text: &str) -> HandlerTable {
        HandlerTable::named(graph, registry, config_text, "")
    }

    /// Like [`new`](Self::new), recording where the configuration came
    /// from (the global `config_name` handler).
    pub fn named(graph: &Graph, registry: &Registry, config_text: &str, source: &str) -> HandlerTable {
        // The name the operator knows each element by: copies by the
        // element they are copies of.
        let shown = |i: usize| {
            let node = &graph.nodes[i];
            crate::copies::logical_name_of(&node.name, node.copy.is_some())
        };
        // Each port's peers, from one pass over the connections (in
        // connection order, as they were listed before).
        let mut peers_out: std::collections::HashMap<(usize, u32), Vec<String>> = Default::default();
        let mut peers_in: std::collections::HashMap<(usize, u32), Vec<String>> = Default::default();
        for (f, t) in &graph.connections {
            peers_out
                .entry((f.element, f.port))
                .or_default()
                .push(format!("[{}]{}", t.port, graph.nodes[t.element].name));
            peers_in
                .entry((t.element, t.port))
                .or_default()
                .push(format!("{}[{}]", graph.nodes[f.element].name, f.port));
        }
        let mut elements = Vec::with_capacity(graph.nodes.len());
        let mut copies = Vec::new();
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        let mut group_of: std::collections::HashMap<&str, usize> = Default::default();
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut copy_group: Vec<usize> = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            let mut ports = String::new();
            for (side, list, output) in [
                ("input", &node.ports.inputs, false),
                ("output", &node.ports.outputs, true),
            ] {
                ports.push_str(&format!(
                    "{} {}{}\n",
                    list.len(),
                    side,
                    if list.len() == 1 { "" } else { "s" }
                ));
                for (p, proc_) in list.iter().enumerate() {
                    let word = if *proc_ == Processing::Pull { "pull" } else { "push" };
                    let peers = if output { &peers_out } else { &peers_in };
                    let peers = peers.get(&(i, p as u32)).map_or(String::new(), |v| v.join(", "));
                    ports.push_str(&format!("{word}\t-\t{peers}\n"));
                }
            }
            let entry = entry(&node.name, node, ports.clone(), node.handlers.clone());
            if node.copy.is_none() {
                nodes.push(Slot::Element(elements.len()));
                elements.push(entry);
                continue;
            }
            nodes.push(Slot::Copy(copies.len()));
            copies.push(entry);
            let logical = shown(i);
            let g = *group_of.entry(logical).or_insert_with(|| {
                // The group's entry, in place of its first copy; its own
                // handlers are made from the copies' below.
                elements.push(entry_shell(logical, node, without_copy_suffixes(&ports)));
                groups.push((elements.len() - 1, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(copies.len() - 1);
            copy_group.push(g);
        }
        let mut list = format!("{}\n", elements.len());
        for e in &elements {
            list.push_str(&e.name);
            list.push('\n');
        }
        let classes: String = registry.names().iter().map(|c| format!("{c}\n")).collect();
        let started = std::time::Instant::now();
        let link = Arc::new(RouterLink::default());
        let mut globals = vec![
            fixed("version", env!("CARGO_PKG_VERSION").to_string()),
            fixed("config_name", source.to_string()),
            Handler::read_only("uptime", move || format!("{:.3}", started.elapsed().as_secs_f64())),
            fixed("list", list),
            fixed("classes", classes),
            fixed("config", config_text.to_string()),
            fixed("flatconfig", graph.flat_config()),
        ];
        globals.extend(router_handlers(&link));
        let mut index: std::collections::HashMap<String, Slot> = elements
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), Slot::Element(i)))
            .collect();
        index.extend(copies.iter().enumerate().map(|(j, e)| (e.name.clone(), Slot::Copy(j))));
        // Connections between elements as shown: a copied element's wires
        // once, between the entries that stand for the copies.
        let at = |i: usize| match nodes[i] {
            Slot::Element(e) => e,
            Slot::Copy(j) => groups[copy_group[j]].0,
        };
        let mut seen = std::collections::HashSet::new();
        let wires = graph
            .connections
            .iter()
            .map(|(f, t)| Wire {
                from: at(f.element),
                from_port: f.port,
                to: at(t.element),
                to_port: t.port,
            })
            .filter(|w| seen.insert(*w))
            .collect();
        let copy_views = copies.iter().map(read_only_view).collect();
        let mut table = HandlerTable {
            elements,
            copies,
            copy_views,
            copy_group,
            refreshed: vec![false; groups.len()],
            globals,
            index,
            nodes,
            groups,
            link,
            wires,
        };
        for g in 0..table.groups.len() {
            table.merge_group(g);
        }
        table
    }

    /// Makes the handlers of group `g`'s entry from its copies' (again,
    /// after a copy's handlers changed: see [`merge_refreshed`](Self::merge_refreshed)).
    fn merge_group(&mut self, g: usize) {
        let (e, members) = &self.groups[g];
        let copies: Vec<&[Handler]> = members.iter().map(|&j| own_handlers(&self.copies[j])).collect();
        let merged = crate::copies::merge_handlers(&copies);
        let entry = &mut self.elements[*e];
        entry.copies = members.len();
        let generic: Vec<Handler> = entry.handlers.drain(..).take(4).collect();
        entry.handlers = generic;
        entry.handlers.extend(merged);
        entry.handlers.push(listing(&entry.handlers));
    }

    /// The graph's connections, in the order they were made.
    pub fn wires(&self) -> &[Wire] {
        &self.wires
    }

    /// The router link the global `cycle_drops` and `stop` handlers use.
    pub fn link(&self) -> &Arc<RouterLink> {
        &self.link
    }

    /// Makes the router globals use `link` (a reload's table goes on with
    /// the running router's).
    pub fn share_link(&mut self, link: Arc<RouterLink>) {
        for handler in router_handlers(&link) {
            if let Some(h) = self.globals.iter_mut().find(|h| h.name == handler.name) {
                *h = handler;
            }
        }
        self.link = link;
    }

    /// Puts element `i`'s own handlers (after it took its predecessor's
    /// state, which may have replaced what they point at) in place of the
    /// ones the table was built with; the generic handlers stay.
    pub fn refresh(&mut self, i: usize, own: &[Handler]) {
        let e = match self.nodes.get(i) {
            Some(&Slot::Element(e)) => self.elements.get_mut(e),
            Some(&Slot::Copy(j)) => {
                replace_own(&mut self.copies[j], own);
                self.copy_views[j] = read_only_view(&self.copies[j]);
                self.refreshed[self.copy_group[j]] = true;
                return;
            }
            None => None,
        };
        if let Some(e) = e {
            replace_own(e, own);
        }
    }

    pub fn elements(&self) -> &[ElementEntry] {
        &self.elements
    }

    /// After [`refresh`](Self::refresh)es of copies: makes each changed
    /// group's handlers from its copies' again, once per group.
    pub fn merge_refreshed(&mut self) {
        for g in 0..self.groups.len() {
            if std::mem::take(&mut self.refreshed[g]) {
                self.merge_group(g);
            }
        }
    }

    pub fn globals(&self) -> &[Handler] {
        &self.globals
    }

    /// Finds an element by name, or by its index in the configuration
    /// (`3.class`), as Click allows. A copy is found by its name
    /// (`sel#1`).
    pub fn element(&self, name: &str) -> Option<&ElementEntry> {
        match self.index.get(name) {
            Some(&Slot::Element(i)) => self.elements.get(i),
            Some(&Slot::Copy(j)) => self.copy_views.get(j),
            None => name.parse::<usize>().ok().and_then(|i| self.elements.get(i)),
        }
    }
}

/// A copy's entry as found by name: its handlers without their writes.
fn read_only_view(e: &ElementEntry) -> ElementEntry {
    let handlers: Vec<Handler> = e
        .handlers
        .iter()
        .filter(|h| h.readable())
        .map(|h| Handler {
            write: None,
            check: None,
            persistent: false,
            ..h.clone()
        })
        .collect();
    let mut view = ElementEntry {
        name: e.name.clone(),
        class: e.class,
        handlers,
        inputs: e.inputs,
        outputs: e.outputs,
        copies: 1,
    };
    // The listing says what the view has.
    view.handlers.retain(|h| h.name != "handlers");
    let listing = listing(&view.handlers);
    view.handlers.push(listing);
    view
}

/// Puts `own` in place of an entry's own handlers; the generic ones stay.
fn replace_own(e: &mut ElementEntry, own: &[Handler]) {
    // Layout: name, class, config, ports, own handlers..., handlers.
    if e.handlers.len() < 5 {
        return;
    }
    let listing = e.handlers.pop().expect("5 handlers at least");
    e.handlers.truncate(4);
    e.handlers.extend(own.iter().cloned());
    e.handlers.push(listing);
}

impl HandlerTable {
    /// Resolves `element.handler` or a global handler name.
    pub fn find(&self, full: &str) -> Result<&Handler, HandlerError> {
        // Element names never contain '.', so the first one splits.
        match full.split_once('.') {
            Some((element, handler)) => {
                let e = self
                    .element(element)
                    .ok_or_else(|| HandlerError::NoElement(element.to_string()))?;
                e.handlers
                    .iter()
                    .find(|h| h.name == handler && !h.proxy)
                    .or_else(|| {
                        let plain = !handler.is_empty() && !handler.contains(char::is_whitespace);
                        e.handlers.iter().find(|h| h.proxy).filter(|_| plain)
                    })
                    .ok_or_else(|| HandlerError::NoHandler(full.to_string()))
            }
            None => self
                .globals
                .iter()
                .find(|h| h.name == full)
                .ok_or_else(|| HandlerError::NoHandler(full.to_string())),
        }
    }

    pub fn read(&self, full: &str) -> Result<String, HandlerError> {
        self.read_with(full, "")
    }

    /// Reads `full` with `param` (empty for none). A handler that takes
    /// no parameter refuses one; one that needs a parameter gets it.
    pub fn read_with(&self, full: &str, param: &str) -> Result<String, HandlerError> {
        let h = self.find(full)?;
        let proxied;
        let param = match full.split_once('.') {
            Some((_, name)) if h.proxy => {
                proxied = format!("{name} {param}");
                proxied.as_str()
            }
            _ => param,
        };
        match h.read_with(param) {
            Some(Ok(v)) => Ok(v),
            Some(Err(message)) => Err(HandlerError::ReadFailed {
                handler: full.to_string(),
                message,
            }),
            None => Err(HandlerError::NotReadable(full.to_string())),
        }
    }

    /// The handler whose value keeps the effect of a write to `full`, and
    /// its full name: `full` itself, or the handler of the same element it
    /// names with [`Handler::persists_as`] (a route table's `add` is kept
    /// by its `table`). That one is read for an undo and saved.
    pub fn kept_by(&self, full: &str) -> Result<(String, &Handler), HandlerError> {
        let h = self.find(full)?;
        let Some(other) = &h.persists_as else {
            return Ok((full.to_string(), h));
        };
        let kept = match full.split_once('.') {
            Some((element, _)) => format!("{element}.{other}"),
            None => other.clone(),
        };
        let k = self.find(&kept)?;
        Ok((kept, k))
    }

    /// Writes `value` to `full`, and with copies waits until every copy's
    /// thread has taken it ([`settle`](Self::settle)); a wait that times
    /// out is logged.
    pub fn write(&self, full: &str, value: &str) -> Result<(), HandlerError> {
        self.write_unsettled(full, value)?;
        if let Err(why) = self.settle(full) {
            tracing::warn!(handler = full, "{why}");
        }
        Ok(())
    }

    /// After a write to `full`: when it names an element that runs as
    /// copies, waits until every thread running copies has begun a round
    /// after the write: from then on no copy handles a packet with the
    /// old value. At once otherwise, before the router starts, and when
    /// called from a router thread (a Watchdog's, a Script's: it would
    /// wait for itself). An error if some thread did not within 2 s
    /// (blocked); the write stays, and applies as it goes on.
    pub fn settle(&self, full: &str) -> Result<(), String> {
        let copied = full
            .split_once('.')
            .and_then(|(e, _)| self.element(e))
            .is_some_and(|e| e.copies > 1);
        if !copied || self.link.await_threads() {
            return Ok(());
        }
        Err(format!(
            "written, but not every copy's thread took it within {:?} (a thread blocked?): it applies as each goes on",
            crate::runtime::AWAIT_LIMIT
        ))
    }

    /// Writes `value` to `full` without waiting for copies' threads (see
    /// [`settle`](Self::settle)): for a writer that holds a lock and waits
    /// after releasing it.
    pub fn write_unsettled(&self, full: &str, value: &str) -> Result<(), HandlerError> {
        let h = self.find(full)?;
        let write = h
            .write
            .as_ref()
            .ok_or_else(|| HandlerError::NotWritable(full.to_string()))?;
        let proxied;
        let value = match full.split_once('.') {
            Some((_, name)) if h.proxy => {
                proxied = format!("{name} {value}");
                proxied.as_str()
            }
            _ => value,
        };
        write(value).map_err(|message| HandlerError::Refused {
            handler: full.to_string(),
            message,
        })?;
        tracing::info!(handler = full, value = value.trim(), "handler written");
        Ok(())
    }
}
