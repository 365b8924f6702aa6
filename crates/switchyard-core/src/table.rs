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
}

/// One connection of the running graph, by element index and port
/// (`from[from_port] -> [to_port]to`), for pictures of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wire {
    pub from: usize,
    pub from_port: u32,
    pub to: usize,
    pub to_port: u32,
}

pub struct HandlerTable {
    elements: Vec<ElementEntry>,
    globals: Vec<Handler>,
    /// Element index by name: lookups stay constant-time however large
    /// the configuration (status pages and metrics look up every element).
    index: std::collections::HashMap<String, usize>,
    link: Arc<RouterLink>,
    wires: Vec<Wire>,
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
        let mut elements = Vec::with_capacity(graph.nodes.len());
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
            let mut handlers = vec![
                fixed("name", node.name.clone()),
                fixed("class", node.class.to_string()),
                fixed("config", node.config.clone()),
                fixed("ports", ports),
            ];
            handlers.extend(node.handlers.iter().cloned());
            let mut listing: String = handlers
                .iter()
                .filter(|h| !h.proxy)
                .map(|h| format!("{}\t{}\n", h.name, h.mode()))
                .collect();
            listing.push_str("handlers\tr\n");
            handlers.push(fixed("handlers", listing));
            elements.push(ElementEntry {
                name: node.name.clone(),
                class: node.class,
                handlers,
                inputs: node.ports.inputs.len(),
                outputs: node.ports.outputs.len(),
            });
        }
        let mut list = format!("{}\n", graph.nodes.len());
        for n in &graph.nodes {
            list.push_str(&n.name);
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
        let index = elements.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        let wires = graph
            .connections
            .iter()
            .map(|(f, t)| Wire {
                from: f.element,
                from_port: f.port,
                to: t.element,
                to_port: t.port,
            })
            .collect();
        HandlerTable {
            elements,
            globals,
            index,
            link,
            wires,
        }
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
        let Some(e) = self.elements.get_mut(i) else { return };
        // Layout: name, class, config, ports, own handlers..., handlers.
        let n = e.handlers.len();
        if n < 5 {
            return;
        }
        let listing = e.handlers.pop().expect("n >= 5");
        e.handlers.truncate(4);
        e.handlers.extend(own.iter().cloned());
        e.handlers.push(listing);
    }

    pub fn elements(&self) -> &[ElementEntry] {
        &self.elements
    }

    pub fn globals(&self) -> &[Handler] {
        &self.globals
    }

    /// Finds an element by name, or by its index in the configuration
    /// (`3.class`), as Click allows.
    pub fn element(&self, name: &str) -> Option<&ElementEntry> {
        self.index
            .get(name)
            .and_then(|&i| self.elements.get(i))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.elements.get(i)))
    }

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

    pub fn write(&self, full: &str, value: &str) -> Result<(), HandlerError> {
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
