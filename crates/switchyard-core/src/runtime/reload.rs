//! Hot reload: which running threads a new graph keeps, pausing the
//! others between batches, and handing each new element its
//! predecessor's state.

use super::layout::{layout, GroupLayout, NodeName};
use super::{Router, Running, Stripped};
use crate::element::Element;
use crate::graph::Graph;
use crate::table::HandlerTable;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An element (or one half of a thread boundary) off a stopped thread or
/// an idle group, for its successor to take state from.
pub(super) struct Part {
    pub(super) name: NodeName,
    pub(super) element: Box<dyn Element>,
}

/// Parts by (name, class).
type Parts = std::collections::HashMap<(String, &'static str), Vec<Box<dyn Element>>>;

pub(super) fn add_part(parts: &mut Parts, name: &NodeName, element: Box<dyn Element>) {
    parts.entry((name.name.clone(), name.class)).or_default().push(element);
}

/// For each element of `new`, the element of `old` whose state it takes:
/// the one of the same name and class; else, for an unnamed element
/// (Click names them by position, `Class@N`, so one added earlier renames
/// the later ones), the one unnamed element of `old` left over with the
/// same class and arguments, when it is also the only one of its kind in
/// `new` (an unnamed `ToDevice(eth1)` keeps its open ring).
fn predecessors(old: &[NodeName], new: &[NodeName]) -> Vec<Option<usize>> {
    use std::collections::HashMap;
    // Linear: a reload plans this while nothing is paused, but it must not
    // grow with the square of the elements either way.
    let mut by_name: HashMap<(&str, &'static str), usize> = HashMap::with_capacity(old.len());
    for (o, n) in old.iter().enumerate() {
        by_name.entry((n.name.as_str(), n.class)).or_insert(o);
    }
    let mut pred: Vec<Option<usize>> = new
        .iter()
        .map(|n| by_name.get(&(n.name.as_str(), n.class)).copied())
        .collect();
    let mut has_successor = vec![false; old.len()];
    for o in pred.iter().flatten() {
        has_successor[*o] = true;
    }
    // Unnamed leftovers by kind (class and arguments, and which copy of
    // the pipeline they are in): the olds of that kind, and how many news.
    let copy = |name: &str| crate::copies::split(name).map(|(_, k)| k);
    type Kind<'a> = (&'static str, &'a str, Option<u32>);
    let mut kinds: HashMap<Kind, (Vec<usize>, usize)> = HashMap::new();
    for (o, n) in old.iter().enumerate() {
        if n.name.contains('@') && !has_successor[o] {
            kinds
                .entry((n.class, n.config.as_str(), copy(&n.name)))
                .or_default()
                .0
                .push(o);
        }
    }
    for (i, n) in new.iter().enumerate() {
        if pred[i].is_none() && n.name.contains('@') {
            kinds.entry((n.class, n.config.as_str(), copy(&n.name))).or_default().1 += 1;
        }
    }
    for (i, n) in new.iter().enumerate() {
        if pred[i].is_none() && n.name.contains('@') {
            if let Some((olds, 1)) = kinds.get(&(n.class, n.config.as_str(), copy(&n.name))) {
                if let [o] = olds.as_slice() {
                    pred[i] = Some(*o);
                }
            }
        }
    }
    pred
}

/// Pairs each group of `new` that has work with a running thread of the
/// same signature, each thread at most once: `Some(thread)` per group.
fn match_threads<'a>(running: impl Iterator<Item = &'a [String]>, groups: &[GroupLayout]) -> Vec<Option<usize>> {
    let mut free: std::collections::HashMap<&[String], Vec<usize>> = Default::default();
    for (k, sig) in running.enumerate() {
        free.entry(sig).or_default().push(k);
    }
    for ks in free.values_mut() {
        ks.reverse();
    }
    groups
        .iter()
        .map(|g| {
            if g.tasks.is_empty() {
                return None;
            }
            free.get_mut(g.signature.as_slice()).and_then(Vec::pop)
        })
        .collect()
}

/// What a hot reload did.
#[derive(Clone, Debug, Default)]
pub struct ReloadReport {
    /// Threads whose elements and wiring did not change: never paused.
    pub threads_kept: usize,
    /// Threads paused between batches and replaced.
    pub threads_replaced: usize,
    pub threads_started: usize,
    /// Elements that took state from their predecessor.
    pub carried: usize,
    /// Elements whose state went with a removed element (or one whose
    /// class changed) while it still held packets.
    pub dropped_holding: Vec<String>,
    /// From the first pause request until the new threads run.
    pub pause: Duration,
}

impl Router {
    /// Hot reload: replaces the running graph with `graph` (checked and
    /// initialized). Threads whose elements, configurations and wiring are
    /// all unchanged keep running untouched. The others are paused between
    /// batches (each finishes the batch it is moving, nothing is drained
    /// or dropped) and hand their elements back; every element of `graph`
    /// with a predecessor of the same name and class takes its state
    /// ([`Element::take_state`]: counts, positions, held packets, open
    /// devices), `table` collects the handlers, and new threads start.
    pub fn reload(
        &mut self,
        mut graph: Graph,
        table: impl FnOnce(&Graph) -> HandlerTable,
        install: impl FnOnce(&Arc<HandlerTable>),
    ) -> Result<ReloadReport, String> {
        if self.shared.stop.load(Ordering::SeqCst) {
            return Err("the router is stopping".into());
        }
        self.check_copies(&graph)?;
        if graph.chain > self.chain_capacity {
            return Err(format!(
                "a call chain of {} elements is longer than this router's threads have stack for ({}; restart with a higher --limit chain=N)",
                graph.chain, self.chain_capacity
            ));
        }
        let mut report = ReloadReport::default();
        let layout = layout(&graph);
        let mut keep = vec![false; layout.groups.len()];
        let mut kept_workers = vec![false; self.workers.len()];
        let matched = match_threads(self.workers.iter().map(|w| w.signature.as_slice()), &layout.groups);
        for (g, w) in matched.into_iter().enumerate() {
            if let Some(w) = w {
                keep[g] = true;
                kept_workers[w] = true;
            }
        }
        // Everything that does not need a paused thread's elements is done
        // before the pause: the plan, the state of elements that were not
        // running (idle groups), the handler table. The pause then grows
        // with the part that changes, not with the graph.
        let pred = predecessors(&self.current, &layout.names);
        let mut on_paused: std::collections::HashSet<(&str, &'static str)> = Default::default();
        for (w, running) in self.workers.iter().enumerate() {
            if !kept_workers[w] {
                for &i in &running.slot_elems {
                    on_paused.insert((running.names[i].name.as_str(), running.names[i].class));
                }
            }
        }
        let key_of = |i: usize| pred[i].map(|o| (self.current[o].name.clone(), self.current[o].class));
        let waits_for_pause: Vec<bool> = (0..graph.nodes.len())
            .map(|i| {
                pred[i].is_some_and(|o| on_paused.contains(&(self.current[o].name.as_str(), self.current[o].class)))
            })
            .collect();
        drop(on_paused);
        let after_pause: Vec<usize> = (0..waits_for_pause.len()).filter(|&i| waits_for_pause[i]).collect();
        let mut parts = Parts::default();
        for p in std::mem::take(&mut self.idle) {
            add_part(&mut parts, &p.name, p.element);
        }
        // Which elements live on only in kept threads.
        let mut whole_kept = vec![true; graph.nodes.len()];
        for (g, group) in layout.groups.iter().enumerate() {
            if !keep[g] {
                for &(i, _) in &group.members {
                    whole_kept[i] = false;
                }
            }
        }
        for (i, node) in graph.nodes.iter_mut().enumerate() {
            if waits_for_pause[i] {
                continue;
            }
            if let Some(old) = key_of(i).and_then(|k| parts.remove(&k)) {
                for o in old {
                    node.element.take_state(o);
                }
                node.handlers = node.element.handlers();
                report.carried += 1;
            } else if whole_kept[i] {
                if let Some(h) = self.own_handlers.get(&node.name) {
                    node.handlers = h.clone();
                }
            }
        }
        let mut new_table = table(&graph);
        // The count of packets lost to push cycles goes on across reloads.
        new_table.share_link(self.shared.link.clone());
        let mut graph = Stripped::new(graph);

        let paused = Instant::now();
        for (w, worker) in self.workers.iter().enumerate() {
            if !kept_workers[w] {
                worker.yield_req.store(true, Ordering::SeqCst);
                worker.worker.thread.unpark();
            }
        }
        let workers = std::mem::take(&mut self.workers);
        for (running, kept) in workers.into_iter().zip(kept_workers) {
            if kept {
                self.workers.push(running);
                report.threads_kept += 1;
                continue;
            }
            report.threads_replaced += 1;
            let Running {
                worker,
                names,
                slot_elems,
                ..
            } = running;
            let slots = match worker.handback.recv() {
                Ok(slots) => {
                    self.running -= 1;
                    self.spare.push(worker);
                    slots
                }
                // It ended on its own before the request (its exit is
                // counted through `exited`), or it panicked.
                Err(_) => match worker.handle.join() {
                    Ok(slots) => slots,
                    Err(_) => {
                        self.running -= 1;
                        tracing::error!("a router thread had panicked; its elements start afresh");
                        Vec::new()
                    }
                },
            };
            for (slot, &i) in slots.into_iter().zip(&slot_elems) {
                if let Some(e) = slot {
                    add_part(&mut parts, &names[i], e);
                }
            }
        }
        for &i in &after_pause {
            let Some(element) = graph.elements[i].as_mut() else {
                continue;
            };
            if let Some(old) = key_of(i).and_then(|k| parts.remove(&k)) {
                for o in old {
                    element.take_state(o);
                }
                graph.handlers[i] = element.handlers();
                new_table.refresh(i, &graph.handlers[i]);
                report.carried += 1;
            }
        }
        new_table.merge_refreshed();
        let new_table = Arc::new(new_table);
        install(&new_table);
        let old_table = std::mem::replace(&mut self.handlers, new_table);
        let (started, running_at) = self.launch(graph, layout, &keep);
        report.threads_started = started;
        if report.threads_replaced > 0 {
            report.pause = running_at.duration_since(paused);
        }
        // Off the pause: what no new element took, and the old table.
        std::thread::spawn(move || drop(old_table));
        let mut removed = Vec::new();
        for ((name, _), old) in parts {
            if old.iter().any(|e| e.holds_packets()) {
                report.dropped_holding.push(name);
            }
            removed.extend(old);
        }
        if !removed.is_empty() {
            std::thread::spawn(move || drop(removed));
        }
        Ok(report)
    }
}

impl Router {
    /// A reload must keep the number of copies of the pipeline.
    pub fn check_copies(&self, graph: &Graph) -> Result<(), String> {
        if graph.copies == self.shared.copies {
            return Ok(());
        }
        Err(format!(
            "the configuration runs {} cop{} of its pipeline and the router {}: a reload cannot change the number of copies (restart the router)",
            graph.copies,
            if graph.copies == 1 { "y" } else { "ies" },
            self.shared.copies
        ))
    }
}

/// What a reload from `old` to `new` would do, without doing it: which
/// threads keep running, which are paused and replaced, and which
/// elements carry state, are new, or go. For `ctl reload --check`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// The elements of each thread that keeps running.
    pub kept: Vec<Vec<String>>,
    /// The elements of each running thread that would be paused.
    pub replaced: Vec<Vec<String>>,
    /// The elements of each thread that would start.
    pub started: Vec<Vec<String>>,
    /// Elements replaced by one of the same name and class (state carried).
    pub carried: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Plans a reload from the graph `old` to `new` by the rule
/// [`Router::reload`] applies, as if `old` were running.
pub fn plan_reload(old: &Graph, new: &Graph) -> ReloadPlan {
    let lo = layout(old);
    let running: Vec<(Vec<String>, &[String])> = lo
        .groups
        .iter()
        .filter(|g| !g.tasks.is_empty())
        .map(|g| (members(g, &lo.names), g.signature.as_slice()))
        .collect();
    plan(&lo.names, &running, new)
}

impl Router {
    /// What [`reload`](Self::reload) would do with `new`, against the
    /// threads running now. Changes nothing.
    pub fn plan(&self, new: &Graph) -> ReloadPlan {
        let running: Vec<(Vec<String>, &[String])> = self
            .workers
            .iter()
            .map(|w| (w.members.clone(), w.signature.as_slice()))
            .collect();
        plan(&self.current, &running, new)
    }
}

/// The names of a group's elements (a Queue's half counted once).
pub(super) fn members(g: &GroupLayout, names: &[NodeName]) -> Vec<String> {
    let mut m: Vec<String> = g.members.iter().map(|&(i, _)| names[i].name.clone()).collect();
    m.dedup();
    m
}

/// The rule: same group signatures keep their thread; same names and
/// classes carry state; an unnamed element renamed by an insertion is
/// matched by its kind (the only one of its class and arguments on each
/// side).
fn plan(old: &[NodeName], running: &[(Vec<String>, &[String])], new: &Graph) -> ReloadPlan {
    let ln = layout(new);
    let mut matched = vec![false; running.len()];
    let mut plan = ReloadPlan::default();
    let mut kept_names: std::collections::HashSet<String> = Default::default();
    let pairs = match_threads(running.iter().map(|r| r.1), &ln.groups);
    for (g, k) in ln.groups.iter().zip(pairs) {
        if g.tasks.is_empty() {
            continue;
        }
        match k {
            Some(k) => {
                matched[k] = true;
                let m = members(g, &ln.names);
                kept_names.extend(m.iter().cloned());
                plan.kept.push(m);
            }
            None => plan.started.push(members(g, &ln.names)),
        }
    }
    let started_names: std::collections::HashSet<String> = plan.started.iter().flatten().cloned().collect();
    for (k, (m, _)) in running.iter().enumerate() {
        if !matched[k] {
            plan.replaced.push(m.clone());
        }
    }
    let pred = predecessors(old, &ln.names);
    for (i, n) in ln.names.iter().enumerate() {
        match pred[i] {
            Some(_) => {
                if !kept_names.contains(&n.name) || started_names.contains(&n.name) {
                    plan.carried.push(n.name.clone());
                }
            }
            None => plan.added.push(n.name.clone()),
        }
    }
    let mut has_successor = vec![false; old.len()];
    for o in pred.iter().flatten() {
        has_successor[*o] = true;
    }
    for (o, n) in old.iter().enumerate() {
        if !has_successor[o] {
            plan.removed.push(n.name.clone());
        }
    }
    plan
}
