//! From a flat configuration to a checked graph of configured elements.
//!
//! Checks, Click's way, collecting every error: arguments (by each class's
//! factory), port numbers against port counts, unused ports, push/pull
//! agreement (agnostic ports take the processing of their neighbours, push
//! by default), and reuse of a push output or a pull input.

use crate::args::Args;
use crate::element::{processing_of, Element, ElementClass, PortCount, PortInfo, Processing, Scope};
use crate::handler::Handler;
use switchyard_lang::{nearest, Diagnostic, Exceeded, FlatConfig, Limits, PortRef, Span};

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
    /// Which copy of the pipeline this element belongs to, when the
    /// configuration runs as several (`Copies(N)`): its name is then
    /// `name#k`. None for an element of a single pipeline, or one kept
    /// once (an element with no connections: a Script, a Watchdog).
    pub copy: Option<u32>,
}

/// A checked graph, ready to run.
pub struct Graph {
    pub nodes: Vec<Node>,
    pub connections: Vec<(PortRef, PortRef)>,
    /// The most elements one batch passes through by direct calls on one
    /// thread (the longest push or pull call path): how deep a router
    /// thread's stack must be.
    pub chain: usize,
    /// The limits it was checked against; a router sizes its threads'
    /// stacks for `limits.chain`.
    pub limits: Limits,
    /// How many copies of the pipeline run (`Copies(N)`), 1 without.
    pub copies: usize,
    /// With copies: copy 0's arguments as written (`$COPY` where the
    /// copies differ), by element index, for [`flat_config`](Self::flat_config).
    pub written: Vec<String>,
}

impl Graph {
    pub fn find(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The flattened configuration as Click prints it (its `flatconfig`
    /// handler, `click -o`, `switchyard flatten`): `name :: Class(config);`
    /// per element (no parentheses for an empty configuration), a blank
    /// line, then the connections as chains (`a -> b\n    -> c;`), ports
    /// written only when not 0 (`a [1] -> [2] b`). With copies, the
    /// pipeline once, under plain names, with `$COPY` where it was
    /// written: a configuration that loads again to the same copies.
    pub fn flat_config(&self) -> String {
        let mut s = String::new();
        let in_copy_0 = |i: usize| self.nodes[i].copy.is_none_or(|k| k == 0);
        let name = |e: usize| crate::copies::logical_name_of(&self.nodes[e].name, self.nodes[e].copy.is_some());
        for (i, n) in self.nodes.iter().enumerate().filter(|&(i, _)| in_copy_0(i)) {
            // Copy 0's nodes come first, in configuration order.
            let config = self.written.get(i).unwrap_or(&n.config);
            if config.is_empty() {
                s.push_str(&format!("{} :: {};\n", name(i), n.class));
            } else {
                s.push_str(&format!("{} :: {}({config});\n", name(i), n.class));
            }
        }
        if !self.nodes.is_empty() {
            s.push('\n');
        }
        let conns: Vec<(PortRef, PortRef)> = self
            .connections
            .iter()
            .filter(|(f, t)| in_copy_0(f.element) && in_copy_0(t.element))
            .copied()
            .collect();
        for chain in chains(&conns) {
            let (f, t) = conns[chain[0]];
            s.push_str(name(f.element));
            if f.port != 0 {
                s.push_str(&format!(" [{}]", f.port));
            }
            for (k, &c) in chain.iter().enumerate() {
                let t = if k == 0 { t } else { conns[c].1 };
                s.push_str(if k == 0 { " -> " } else { "\n    -> " });
                if t.port != 0 {
                    s.push_str(&format!("[{}] ", t.port));
                }
                s.push_str(name(t.element));
            }
            s.push_str(";\n");
        }
        s
    }
}

/// Click's way of printing connections as chains: sorted by (to, from);
/// a connection into port 0 continues with the first connection out of
/// that element's port 0 that also goes into a port 0 (else the last one
/// out of its port 0). Chains start at connections that continue none;
/// what is left (cycles) starts chains of its own. Indices into `conns`.
fn chains(conns: &[(PortRef, PortRef)]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..conns.len()).collect();
    let key = |&i: &usize| {
        let (f, t) = conns[i];
        (t.element, t.port, f.element, f.port)
    };
    order.sort_by_key(key);
    // Connections out of each element's port 0, in sorted order: one
    // index, so the chains cost O(n log n) even at the element limit.
    let mut out_of_zero: std::collections::HashMap<usize, Vec<usize>> = Default::default();
    for &i in &order {
        if conns[i].0.port == 0 {
            out_of_zero.entry(conns[i].0.element).or_default().push(i);
        }
    }
    let mut next = vec![None; conns.len()];
    let mut is_next = vec![false; conns.len()];
    for &c in &order {
        let t = conns[c].1;
        if t.port != 0 {
            continue;
        }
        let Some(outs) = out_of_zero.get(&t.element) else {
            continue;
        };
        let succ = outs.iter().find(|&&i| conns[i].1.port == 0).or(outs.last());
        if let Some(&s) = succ.filter(|&&s| s != c) {
            next[c] = Some(s);
            is_next[s] = true;
        }
    }
    let mut used = vec![false; conns.len()];
    let mut out = Vec::new();
    for pass in [false, true] {
        for &c in &order {
            if used[c] || (is_next[c] && !pass) {
                continue;
            }
            let mut chain = vec![c];
            used[c] = true;
            let mut at = c;
            while let Some(s) = next[at].filter(|&s| !used[s]) {
                used[s] = true;
                chain.push(s);
                at = s;
            }
            out.push(chain);
        }
    }
    out
}

fn label(name: &str, class: &str) -> String {
    format!("{name} :: {class}")
}

/// Configures and checks every element of `flat`. Either a graph or every
/// error found.
pub fn build(flat: &FlatConfig, registry: &Registry) -> Result<Graph, Vec<Diagnostic>> {
    build_limited(flat, registry, &Limits::default())
}

/// [`build`], checked against `limits` (ports per element, call chain).
pub fn build_limited(flat: &FlatConfig, registry: &Registry, limits: &Limits) -> Result<Graph, Vec<Diagnostic>> {
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
        let mut count = class.map(|c| {
            element.as_ref().and_then(|e| e.port_count()).unwrap_or_else(|| {
                PortCount::parse(c.ports).unwrap_or_else(|| panic!("class {}: bad port count '{}'", c.name, c.ports))
            })
        });
        if let Some(pc) = count {
            let wanted = pc.inputs.min.max(pc.outputs.min) as usize;
            if wanted > limits.ports {
                errors.push(Diagnostic::error(
                    fe.config_span,
                    format!(
                        "'{}' asks for {wanted} ports, more than {} {}",
                        label(&fe.name, &fe.class),
                        limits.ports,
                        Exceeded("ports", limits.ports as u64)
                    ),
                ));
                // Checked no further: nothing is allocated per port.
                count = None;
                element = None;
            }
        }
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
            if pr.port as usize >= limits.ports && pr.port < range.max {
                errors.push(Diagnostic::error(
                    c.span,
                    format!(
                        "'{}' port {} is past the port limit {}",
                        name_of(pr.element),
                        pr.port,
                        Exceeded("ports", limits.ports as u64)
                    ),
                ));
                ok = false;
            } else if pr.port < range.max {
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
    let mut touches_unknown = vec![false; n];
    for c in &flat.connections {
        if counts[c.to.element].is_none() {
            touches_unknown[c.from.element] = true;
        }
        if counts[c.from.element].is_none() {
            touches_unknown[c.to.element] = true;
        }
    }
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
        if touches_unknown[i] {
            continue;
        }
        for (side, nn, used) in [("input", ni, &used_in[i]), ("output", no, &used_out[i])] {
            let mut connected = vec![false; nn as usize];
            for &p in used {
                connected[p as usize] = true;
            }
            for p in 0..nn {
                if !connected[p as usize] {
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

    // Each push is a call into the next element, each pull a call into the
    // previous one: the longest such path is the stack a thread needs.
    let calls: Vec<(usize, usize)> = valid
        .iter()
        .filter_map(
            |&(from, to, _)| match infos[from.element].outputs.get(from.port as usize) {
                Some(Processing::Push) => Some((from.element, to.element)),
                Some(Processing::Pull) => Some((to.element, from.element)),
                _ => None,
            },
        )
        .collect();
    let (chain, head) = longest_chain(n, &calls);
    if chain > limits.chain {
        errors.push(
            Diagnostic::error(
                flat.elements[head].span,
                format!(
                    "a call chain of {chain} elements starts at '{}': more than {} {}",
                    name_of(head),
                    limits.chain,
                    Exceeded("chain", limits.chain as u64)
                ),
            )
            .with_help("a Queue ends a chain: the elements after it run on their own thread"),
        );
    }

    // Unknown classes were reported by the flattener; elements whose
    // arguments failed were reported above. Either way, nothing to run.
    let incomplete = classes.iter().any(Option::is_none) || elements.iter().any(Option::is_none);
    if !errors.is_empty() || incomplete {
        errors.sort_by_key(|d| (d.span.file, d.span.start));
        return Err(errors);
    }

    // Click's name scope: what elements lend each other by name, for this
    // configuration alone.
    let mut scope = Scope::default();
    for (i, e) in elements.iter().enumerate() {
        if let Some(value) = e.as_ref().and_then(|e| e.lends()) {
            scope.lend(flat.elements[i].name.clone(), value);
        }
        for (name, value) in e.as_ref().map(|e| e.exports()).unwrap_or_default() {
            if let Err(first) = scope.insert(name.clone(), &name_of(i), value) {
                errors.push(Diagnostic::error(
                    flat.elements[i].span,
                    format!("'{}': '{name}' is already defined by '{first}'", name_of(i)),
                ));
            }
        }
    }
    let mut nodes = Vec::with_capacity(n);
    for (i, (element, ports)) in elements.into_iter().zip(infos).enumerate() {
        let fe = &flat.elements[i];
        let class = classes[i].expect("no errors means every class is known");
        let mut element = element.expect("no errors means every element configured");
        if let Err(msg) = element.resolve(&scope) {
            errors.push(Diagnostic::error(fe.span, format!("'{}': {msg}", name_of(i))));
        }
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
            copy: None,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Graph {
        nodes,
        connections: valid.into_iter().map(|(f, t, _)| (f, t)).collect(),
        chain,
        limits: *limits,
        copies: 1,
        written: Vec::new(),
    })
}

/// The most elements on one call stack: the longest path through the call
/// edges `(caller, callee)`, an element of a cycle counted once (the
/// runtime never re-enters an element already on the stack, so a cycle
/// costs each of its members one frame at most). Returns the length and
/// the element the longest path starts at. Linear and without recursion:
/// strongly connected components by an iterative Tarjan, whose completion
/// order is a reverse topological order of the components.
fn longest_chain(n: usize, calls: &[(usize, usize)]) -> (usize, usize) {
    if n == 0 {
        return (0, 0);
    }
    let mut start = vec![0usize; n + 1];
    for &(a, _) in calls {
        start[a + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut adj = vec![0usize; calls.len()];
    let mut fill = start.clone();
    for &(a, b) in calls {
        adj[fill[a]] = b;
        fill[a] += 1;
    }
    const NONE: usize = usize::MAX;
    let mut index = vec![NONE; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![NONE; n];
    let mut stack = Vec::new();
    // Per component: its depth (members + deepest callee component) and
    // the member a longest path starts at.
    let mut depth: Vec<usize> = Vec::new();
    let mut best = (0usize, 0usize);
    let mut next_index = 0;
    let mut frames: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        frames.push((root, start[root]));
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut edge)) = frames.last_mut() {
            if *edge < start[v + 1] {
                let w = adj[*edge];
                *edge += 1;
                if index[w] == NONE {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    frames.push((w, start[w]));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] != index[v] {
                continue;
            }
            // v roots a component: pop it, then its depth from the
            // components it calls (all complete already).
            let c = depth.len();
            let mut members = Vec::new();
            loop {
                let w = stack.pop().expect("v is on the stack");
                on_stack[w] = false;
                comp[w] = c;
                members.push(w);
                if w == v {
                    break;
                }
            }
            let deepest = members
                .iter()
                .flat_map(|&m| adj[start[m]..start[m + 1]].iter())
                .filter(|&&w| comp[w] != c)
                .map(|&w| depth[comp[w]])
                .max()
                .unwrap_or(0);
            let d = members.len() + deepest;
            depth.push(d);
            if d > best.0 {
                best = (d, v);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::longest_chain;

    #[test]
    fn longest_chain_counts_paths_and_cycles_once() {
        assert_eq!(longest_chain(3, &[(0, 1), (1, 2)]), (3, 0));
        // A fan-out counts its longest branch, not the sum.
        assert_eq!(longest_chain(5, &[(0, 1), (0, 2), (2, 3), (3, 4)]).0, 4);
        // A cycle 1 -> 2 -> 3 -> 1 after 0, then 4: 0, the cycle, 4.
        assert_eq!(longest_chain(5, &[(0, 1), (1, 2), (2, 3), (3, 1), (3, 4)]).0, 5);
        assert_eq!(longest_chain(2, &[]).0, 1);
        // A long chain does not recurse.
        let n = 1_000_000;
        let calls: Vec<(usize, usize)> = (0..n - 1).map(|i| (i, i + 1)).collect();
        assert_eq!(longest_chain(n, &calls), (n, 0));
    }
}
