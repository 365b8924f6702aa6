//! From a flat configuration to a checked graph of configured elements.
//!
//! Checks, Click's way, collecting every error: arguments (by each class's
//! factory), port numbers against port counts, unused ports, push/pull
//! agreement (agnostic ports take the processing of their neighbours, push
//! by default), and reuse of a push output or a pull input.

use crate::args::Args;
use crate::element::{processing_of, Element, ElementClass, PortCount, PortInfo, Processing};
use crate::handler::Handler;
use switchyard_lang::{nearest, Diagnostic, FlatConfig, PortRef, Span};

/// The element classes a router can instantiate, sorted by name.
#[derive(Clone, Default)]
pub struct Registry {
    classes: Vec<ElementClass>,
}

impl Registry {
    pub fn new(classes: impl IntoIterator<Item = ElementClass>) -> Registry {
        let mut r = Registry::default();
        for c in classes {
            r.add(c);
        }
        r
    }

    /// Adds (or replaces) a class: how user code registers its own
    /// elements next to the standard ones.
    pub fn add(&mut self, class: ElementClass) {
        match self.classes.binary_search_by(|c| c.name.cmp(class.name)) {
            Ok(i) => self.classes[i] = class,
            Err(i) => self.classes.insert(i, class),
        }
    }

    pub fn with(mut self, class: ElementClass) -> Registry {
        self.add(class);
        self
    }

    pub fn get(&self, name: &str) -> Option<&ElementClass> {
        self.classes
            .binary_search_by(|c| c.name.cmp(name))
            .ok()
            .map(|i| &self.classes[i])
    }

    pub fn classes(&self) -> &[ElementClass] {
        &self.classes
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.classes.iter().map(|c| c.name).collect()
    }

    /// The class name nearest to `name`, for suggestions.
    pub fn suggest(&self, name: &str) -> Option<&'static str> {
        nearest(name, self.names())
    }
}

/// One configured element of a checked graph.
pub struct Node {
    pub name: String,
    pub class: &'static str,
    pub config: String,
    pub span: Span,
    pub element: Box<dyn Element>,
    pub ports: PortInfo,
    pub is_task: bool,
    pub handlers: Vec<Handler>,
}

/// A checked graph, ready to run.
pub struct Graph {
    pub nodes: Vec<Node>,
    pub connections: Vec<(PortRef, PortRef)>,
}

impl Graph {
    pub fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// `name :: Class(config);` lines and connections, Click's `flatconfig`.
    pub fn flat_config(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&format!("{} :: {}({});\n", n.name, n.class, n.config));
        }
        for (f, t) in &self.connections {
            s.push_str(&format!(
                "{} [{}] -> [{}] {};\n",
                self.nodes[f.element].name, f.port, t.port, self.nodes[t.element].name
            ));
        }
        s
    }
}

fn label(name: &str, class: &str) -> String {
    format!("{name} :: {class}")
}

/// Configures and checks every element of `flat`. Either a graph or every
/// error found.
pub fn build(flat: &FlatConfig, registry: &Registry) -> Result<Graph, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let n = flat.elements.len();
    let mut classes: Vec<Option<&ElementClass>> = Vec::with_capacity(n);
    let mut elements: Vec<Option<Box<dyn Element>>> = Vec::with_capacity(n);
    let mut counts: Vec<Option<PortCount>> = Vec::with_capacity(n);
    for fe in &flat.elements {
        let class = if fe.class_known { registry.get(&fe.class) } else { None };
        let mut element = None;
        if let Some(c) = class {
            let mut args = Args::new(label(&fe.name, c.name), &fe.args, fe.config_span);
            let made = (c.factory)(&mut args);
            match args.complete() {
                Ok(()) => element = made,
                Err(e) => errors.extend(e),
            }
        }
        let count = class.map(|c| {
            element.as_ref().and_then(|e| e.port_count()).unwrap_or_else(|| {
                PortCount::parse(c.ports).unwrap_or_else(|| panic!("class {}: bad port count '{}'", c.name, c.ports))
            })
        });
        classes.push(class);
        elements.push(element);
        counts.push(count);
    }
    let name_of = |i: usize| {
        label(
            &flat.elements[i].name,
            classes[i].map_or(&flat.elements[i].class, |c| c.name),
        )
    };

    // Port numbers against port counts.
    let mut used_in: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut used_out: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut valid = Vec::new();
    for c in &flat.connections {
        let mut ok = true;
        for (pr, output) in [(c.from, true), (c.to, false)] {
            let Some(count) = counts[pr.element] else {
                ok = false;
                continue;
            };
            let range = if output { count.outputs } else { count.inputs };
            if pr.port < range.max {
                // This end is fine even if the other is not: no second
                // error saying it is unused.
                if output {
                    used_out[pr.element].push(pr.port);
                } else {
                    used_in[pr.element].push(pr.port);
                }
            } else {
                let side = if output { "output" } else { "input" };
                let plural = if output { "outputs" } else { "inputs" };
                let msg = if range.max == 0 {
                    format!("'{}' has no {plural}", name_of(pr.element))
                } else {
                    format!("'{}' has no {side} {}", name_of(pr.element), pr.port)
                };
                errors.push(Diagnostic::error(c.span, msg).with_note(
                    Some(flat.elements[pr.element].span),
                    format!("it has {} {plural}", range.describe()),
                ));
                ok = false;
            }
        }
        if ok {
            valid.push((c.from, c.to, c.span));
        }
    }

    // Unused ports: every port up to the count must be connected.
    let mut nports = vec![(0u32, 0u32); n];
    for i in 0..n {
        let Some(count) = counts[i] else { continue };
        let ni = used_in[i]
            .iter()
            .map(|p| p + 1)
            .max()
            .unwrap_or(0)
            .max(count.inputs.min);
        let no = used_out[i]
            .iter()
            .map(|p| p + 1)
            .max()
            .unwrap_or(0)
            .max(count.outputs.min);
        nports[i] = (ni, no);
        let touches_unknown = flat.connections.iter().any(|c| {
            (c.from.element == i && counts[c.to.element].is_none())
                || (c.to.element == i && counts[c.from.element].is_none())
        });
        if touches_unknown {
            continue;
        }
        for (side, nn, used) in [("input", ni, &used_in[i]), ("output", no, &used_out[i])] {
            for p in 0..nn {
                if !used.contains(&p) {
                    errors.push(Diagnostic::error(
                        flat.elements[i].span,
                        format!("'{}' {side} {p} unused", name_of(i)),
                    ));
                }
            }
        }
    }

    // Push/pull: union-find over {push, pull, one agnostic group per element}.
    const PUSH: usize = 0;
    const PULL: usize = 1;
    let mut parent: Vec<usize> = (0..n + 2).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let port_node = |i: usize, output: bool, p: u32| -> Option<usize> {
        let c = classes[i]?;
        Some(match processing_of(c.processing, output, p as usize) {
            Processing::Push => PUSH,
            Processing::Pull => PULL,
            Processing::Agnostic => 2 + i,
        })
    };
    let word = |x: usize| if x == PULL { "pull" } else { "push" };
    for &(from, to, span) in &valid {
        let (Some(a), Some(b)) = (
            port_node(from.element, true, from.port),
            port_node(to.element, false, to.port),
        ) else {
            continue;
        };
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra == rb {
            continue;
        }
        if ra < 2 && rb < 2 {
            errors.push(
                Diagnostic::error(
                    span,
                    format!(
                        "push/pull mismatch: '{}' {} output {} connected to '{}' {} input {}",
                        name_of(from.element),
                        word(ra),
                        from.port,
                        name_of(to.element),
                        word(rb),
                        to.port
                    ),
                )
                .with_help("a Queue turns push into pull; an Unqueue turns pull into push"),
            );
            continue;
        }
        // Keep a fixed processing at the root.
        if ra < 2 {
            parent[rb] = ra;
        } else {
            parent[ra] = rb;
        }
    }
    let mut resolve = |node: Option<usize>| match node.map(|x| find(&mut parent, x)) {
        Some(PULL) => Processing::Pull,
        _ => Processing::Push,
    };
    let mut infos: Vec<PortInfo> = Vec::with_capacity(n);
    for (i, &(ni, no)) in nports.iter().enumerate() {
        infos.push(PortInfo {
            inputs: (0..ni).map(|p| resolve(port_node(i, false, p))).collect(),
            outputs: (0..no).map(|p| resolve(port_node(i, true, p))).collect(),
        });
    }

    // A push output goes to one place; a pull input comes from one place.
    let mut seen_out: std::collections::HashMap<PortRef, Span> = Default::default();
    let mut seen_in: std::collections::HashMap<PortRef, Span> = Default::default();
    for &(from, to, span) in &valid {
        if infos[from.element].outputs.get(from.port as usize) == Some(&Processing::Push) {
            if let Some(prev) = seen_out.insert(from, span) {
                errors.push(
                    Diagnostic::error(
                        span,
                        format!("illegal reuse of '{}' push output {}", name_of(from.element), from.port),
                    )
                    .with_note(Some(prev), "first connected here")
                    .with_help("use a Tee to send packets to several places"),
                );
            }
        }
        if infos[to.element].inputs.get(to.port as usize) == Some(&Processing::Pull) {
            if let Some(prev) = seen_in.insert(to, span) {
                errors.push(
                    Diagnostic::error(
                        span,
                        format!("illegal reuse of '{}' pull input {}", name_of(to.element), to.port),
                    )
                    .with_note(Some(prev), "first connected here"),
                );
            }
        }
    }

    // Unknown classes were reported by the flattener; elements whose
    // arguments failed were reported above. Either way, nothing to run.
    let incomplete = classes.iter().any(Option::is_none) || elements.iter().any(Option::is_none);
    if !errors.is_empty() || incomplete {
        errors.sort_by_key(|d| (d.span.file, d.span.start));
        return Err(errors);
    }

    let mut nodes = Vec::with_capacity(n);
    for (i, (element, ports)) in elements.into_iter().zip(infos).enumerate() {
        let fe = &flat.elements[i];
        let class = classes[i].expect("no errors means every class is known");
        let mut element = element.expect("no errors means every element configured");
        let is_task = match element.initialize(&ports) {
            Ok(t) => t,
            Err(msg) => {
                errors.push(Diagnostic::error(fe.span, format!("'{}': {msg}", name_of(i))));
                false
            }
        };
        let handlers = element.handlers();
        nodes.push(Node {
            name: fe.name.clone(),
            class: class.name,
            config: fe.config(),
            span: fe.span,
            element,
            ports,
            is_task,
            handlers,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Graph {
        nodes,
        connections: valid.into_iter().map(|(f, t, _)| (f, t)).collect(),
    })
}
