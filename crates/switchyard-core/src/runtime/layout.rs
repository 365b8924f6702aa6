//! How a checked graph runs: the wiring tables every thread shares, and
//! the partition into threads (union-find over element halves, split at
//! thread boundaries), with each group's signature for hot reload.

use super::NONE;
use crate::element::Processing;
use crate::graph::Graph;
use std::sync::Arc;

/// Which side of an element a thread holds: a thread boundary (Queue)
/// whose sides land on different threads is held as two halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Half {
    Whole,
    Push,
    Pull,
}

/// One thread's share of a graph.
pub(super) struct GroupLayout {
    /// Its elements (or halves); a member's position here is its slot in
    /// the thread's runner.
    pub(super) members: Vec<(usize, Half)>,
    /// Elements to run: (index in the graph, slot).
    pub(super) tasks: Vec<(usize, usize)>,
    /// What the group runs, by names: its members (name, class, half,
    /// configuration, ports) and the connections inside it, sorted. Two
    /// groups with the same signature run the same code on the same
    /// wiring, so a reload keeps the running one.
    pub(super) signature: Vec<String>,
}

/// Where a push or pull call goes: the element (its index in the graph),
/// its slot in the calling thread's runner, and the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Peer {
    pub(super) elem: u32,
    pub(super) slot: u32,
    pub(super) port: u32,
}

impl Peer {
    pub(super) const NONE: Peer = Peer {
        elem: NONE,
        slot: NONE,
        port: NONE,
    };
}

/// How a graph runs: wiring tables and the partition into threads. A
/// thread's runner holds only its own group's elements, in slots numbered
/// by the group's member list; a push or pull never leaves its thread, so
/// the wiring can name the callee's slot directly.
pub(super) struct Layout {
    pub(super) out_base: Arc<Vec<u32>>,
    pub(super) push_to: Arc<Vec<Peer>>,
    pub(super) in_base: Arc<Vec<u32>>,
    pub(super) pull_from: Arc<Vec<Peer>>,
    pub(super) noutputs: Arc<Vec<u32>>,
    /// For each task, the slots of the storing elements its pushes reach
    /// first (Queues): its room is theirs (see [`Element::room`]).
    ///
    /// [`Element::room`]: crate::element::Element::room
    pub(super) watch: Arc<Vec<Box<[u32]>>>,
    pub(super) names: Arc<Vec<NodeName>>,
    pub(super) groups: Vec<GroupLayout>,
}

pub(super) fn layout(graph: &Graph) -> Layout {
    let n = graph.nodes.len();
    // Wiring tables, shared by every thread.
    let mut out_base = Vec::with_capacity(n);
    let mut in_base = Vec::with_capacity(n);
    let (mut nout, mut nin) = (0u32, 0u32);
    for node in &graph.nodes {
        out_base.push(nout);
        in_base.push(nin);
        nout += node.ports.outputs.len() as u32;
        nin += node.ports.inputs.len() as u32;
    }
    let noutputs: Vec<u32> = graph.nodes.iter().map(|n| n.ports.outputs.len() as u32).collect();

    // Threads: union-find over element halves; a thread boundary keeps
    // its input half (i) apart from its output half (n + i).
    let mut parent: Vec<usize> = (0..2 * n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    fn union(p: &mut [usize], a: usize, b: usize) {
        let (ra, rb) = (find(p, a), find(p, b));
        p[ra] = rb;
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        if !node.element.is_thread_boundary() {
            union(&mut parent, i, n + i);
        }
    }
    for (f, t) in &graph.connections {
        union(&mut parent, n + f.element, t.element);
    }
    if crate::clock::simulated() {
        // Simulated time runs every task on one thread, as Click's single
        // driver does: only then is "nothing left to do" exact.
        for x in 1..2 * n {
            union(&mut parent, 0, x);
        }
    }
    // Group of each union-find root, in order of first sight.
    let mut group_of_root = vec![usize::MAX; 2 * n];
    let mut groups: Vec<GroupLayout> = Vec::new();
    let mut group_of = |root: usize, groups: &mut Vec<GroupLayout>| -> usize {
        if group_of_root[root] == usize::MAX {
            group_of_root[root] = groups.len();
            groups.push(GroupLayout {
                members: Vec::new(),
                tasks: Vec::new(),
                signature: Vec::new(),
            });
        }
        group_of_root[root]
    };
    // Each element's slot for calls into it (its input side: a push, or
    // running it) and for calls out of it (its output side: a pull).
    let mut slot_in = vec![NONE; n];
    let mut slot_out = vec![NONE; n];
    for (i, node) in graph.nodes.iter().enumerate() {
        let (inside, outside) = (find(&mut parent, i), find(&mut parent, n + i));
        // A boundary whose two sides still meet (a loop through it) stays
        // whole on one thread.
        let halves: &[(usize, Half)] = if inside == outside {
            &[(inside, Half::Whole)]
        } else {
            &[(inside, Half::Push), (outside, Half::Pull)]
        };
        for &(root, half) in halves {
            let g = group_of(root, &mut groups);
            let slot = groups[g].members.len();
            groups[g].members.push((i, half));
            if half != Half::Pull {
                slot_in[i] = slot as u32;
            }
            if half != Half::Push {
                slot_out[i] = slot as u32;
            }
            if node.is_task && half != Half::Pull {
                groups[g].tasks.push((i, slot));
            }
            groups[g].signature.push(format!(
                "{}\t{}\t{half:?}\t{}\t{:?}",
                node.name, node.class, node.config, node.ports
            ));
        }
    }
    for (f, t) in &graph.connections {
        let g = group_of(find(&mut parent, n + f.element), &mut groups);
        groups[g].signature.push(format!(
            "{}[{}] -> [{}]{}",
            graph.nodes[f.element].name, f.port, t.port, graph.nodes[t.element].name
        ));
    }
    for g in &mut groups {
        g.signature.sort_unstable();
    }
    let mut push_to = vec![Peer::NONE; nout as usize];
    let mut pull_from = vec![Peer::NONE; nin as usize];
    for (f, t) in &graph.connections {
        let fe = f.element;
        if graph.nodes[fe].ports.outputs[f.port as usize] == Processing::Push {
            push_to[(out_base[fe] + f.port) as usize] = Peer {
                elem: t.element as u32,
                slot: slot_in[t.element],
                port: t.port,
            };
        } else {
            pull_from[(in_base[t.element] + t.port) as usize] = Peer {
                elem: fe as u32,
                slot: slot_out[fe],
                port: f.port,
            };
        }
    }
    let watch = watch_lists(graph, &slot_in);
    Layout {
        watch: Arc::new(watch),
        out_base: Arc::new(out_base),
        push_to: Arc::new(push_to),
        in_base: Arc::new(in_base),
        pull_from: Arc::new(pull_from),
        noutputs: Arc::new(noutputs),
        names: Arc::new(
            graph
                .nodes
                .iter()
                .map(|n| NodeName {
                    name: n.name.clone(),
                    class: n.class,
                    config: n.config.clone(),
                })
                .collect(),
        ),
        groups,
    }
}

/// For each task, the storing elements (those with a [`room`]) reached
/// from it through push connections without passing another: Click's
/// downstream full-notifier search. A push never leaves its thread, so
/// each is named by its slot in the task's own runner.
///
/// [`room`]: crate::element::Element::room
fn watch_lists(graph: &Graph, slot_in: &[u32]) -> Vec<Box<[u32]>> {
    let n = graph.nodes.len();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (f, t) in &graph.connections {
        if graph.nodes[f.element].ports.outputs[f.port as usize] == Processing::Push {
            downstream[f.element].push(t.element);
        }
    }
    let mut seen = vec![usize::MAX; n];
    graph
        .nodes
        .iter()
        .enumerate()
        .map(|(task, node)| {
            let mut found = Vec::new();
            if !node.is_task {
                return found.into_boxed_slice();
            }
            let mut stack = downstream[task].clone();
            while let Some(e) = stack.pop() {
                if seen[e] == task {
                    continue;
                }
                seen[e] = task;
                if graph.nodes[e].element.room().is_some() {
                    found.push(slot_in[e]);
                } else {
                    stack.extend_from_slice(&downstream[e]);
                }
            }
            found.into_boxed_slice()
        })
        .collect()
}

/// Who an element of a started graph is.
#[derive(Clone)]
pub(super) struct NodeName {
    pub(super) name: String,
    pub(super) class: &'static str,
    pub(super) config: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{Element, ElementClass, PortInfo};
    use crate::graph::Registry;
    use std::collections::HashMap;
    use switchyard_lang::SourceMap;

    struct Src;
    impl Element for Src {
        fn initialize(&mut self, _: &PortInfo) -> Result<bool, String> {
            Ok(true)
        }
    }
    struct Pass;
    impl Element for Pass {}
    /// A thread boundary whose pulling side is a plain element.
    struct Q;
    impl Element for Q {
        fn is_thread_boundary(&self) -> bool {
            true
        }
        fn split_off_pull_side(&mut self) -> Option<Box<dyn Element>> {
            Some(Box::new(Pass))
        }
    }
    struct Pull;
    impl Element for Pull {
        fn initialize(&mut self, _: &PortInfo) -> Result<bool, String> {
            Ok(true)
        }
    }

    fn registry() -> Registry {
        let class = |name, ports, processing, factory| ElementClass {
            name,
            ports,
            processing,
            doc: "",
            factory,
        };
        Registry::new([
            class("Src", "0/1", "/h", |_| Some(Box::new(Src))),
            class("Pass", "1/1", "a/a", |_| Some(Box::new(Pass))),
            class("Q", "1/1", "h/l", |_| Some(Box::new(Q))),
            class("Pull", "1/0", "l/", |_| Some(Box::new(Pull))),
        ])
    }

    fn graph(text: &str) -> Graph {
        let mut map = SourceMap::new();
        let file = map.add("t.click", text);
        crate::load(&mut map, file, &registry(), &[]).unwrap_or_else(|d| panic!("{d:?}"))
    }

    /// Each group's signature, by one member's name.
    fn signatures(text: &str) -> HashMap<String, Vec<String>> {
        let graph = graph(text);
        let l = layout(&graph);
        let mut by_name = HashMap::new();
        for g in l.groups {
            for &(i, _) in &g.members {
                by_name.insert(graph.nodes[i].name.clone(), g.signature.clone());
            }
        }
        by_name
    }

    #[test]
    fn a_change_behind_a_queue_changes_only_the_consumer_group() {
        let a = signatures("s :: Src -> p :: Pass -> q :: Q -> k :: Pull;");
        let b = signatures("s :: Src -> p :: Pass -> q :: Q -> x :: Pass -> k :: Pull;");
        assert_eq!(a["s"], b["s"], "the producer's thread would be kept");
        assert_ne!(a["k"], b["k"], "the consumer's thread would be replaced");
        // A change on the producer side leaves the consumer's signature.
        let c = signatures("s :: Src -> p2 :: Pass -> q :: Q -> k :: Pull;");
        assert_ne!(a["s"], c["s"]);
        assert_eq!(a["k"], c["k"]);
        assert_eq!(a, signatures("s :: Src -> p :: Pass -> q :: Q -> k :: Pull;"));
    }

    #[test]
    fn a_plan_names_what_a_reload_keeps_pauses_and_carries() {
        let a = graph("s :: Src -> p :: Pass -> q :: Q -> k :: Pull;");
        let b = graph("s :: Src -> p :: Pass -> q :: Q -> x :: Pass -> k :: Pull;");
        let plan = crate::plan_reload(&a, &b);
        assert_eq!((plan.kept.len(), plan.replaced.len(), plan.started.len()), (1, 1, 1));
        assert!(plan.kept[0].contains(&"s".to_string()));
        assert_eq!(plan.added, ["x"]);
        assert!(plan.removed.is_empty());
        assert!(plan.carried.contains(&"k".to_string()) && plan.carried.contains(&"q".to_string()));
        assert!(
            !plan.carried.contains(&"s".to_string()),
            "s keeps running, nothing to carry"
        );
    }
}
