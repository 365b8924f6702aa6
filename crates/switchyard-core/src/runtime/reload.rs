//! Hot reload: which running threads a new graph keeps, pausing the
//! others between batches, and handing each new element its
//! predecessor's state.

use super::layout::{layout, GroupLayout, NodeName};
use super::{Router, Running};
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
    let mut pred: Vec<Option<usize>> = new
        .iter()
        .map(|n| old.iter().position(|o| o.name == n.name && o.class == n.class))
        .collect();
    fn kind(n: &NodeName) -> (&'static str, &str) {
        (n.class, n.config.as_str())
    }
    let left_old: Vec<usize> = (0..old.len())
        .filter(|o| old[*o].name.contains('@') && !pred.contains(&Some(*o)))
        .collect();
    let left_new: Vec<usize> = (0..new.len())
        .filter(|&i| pred[i].is_none() && new[i].name.contains('@'))
        .collect();
    for &i in &left_new {
        let k = kind(&new[i]);
        let olds: Vec<usize> = left_old.iter().copied().filter(|&o| kind(&old[o]) == k).collect();
        let news = left_new.iter().filter(|&&j| kind(&new[j]) == k).count();
        if let ([o], 1) = (olds.as_slice(), news) {
            pred[i] = Some(*o);
        }
    }
    pred
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
        table: impl FnOnce(&Graph) -> Arc<HandlerTable>,
    ) -> Result<ReloadReport, String> {
        if self.shared.stop.load(Ordering::SeqCst) {
            return Err("the router is stopping".into());
        }
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
        for (g, group) in layout.groups.iter().enumerate() {
            if group.tasks.is_empty() {
                continue;
            }
            if let Some(w) =
                (0..self.workers.len()).find(|&w| !kept_workers[w] && self.workers[w].signature == group.signature)
            {
                keep[g] = true;
                kept_workers[w] = true;
            }
        }
        let paused = Instant::now();
        for (w, worker) in self.workers.iter().enumerate() {
            if !kept_workers[w] {
                worker.yield_req.store(true, Ordering::SeqCst);
                worker.worker.thread.unpark();
            }
        }
        let mut parts = Parts::default();
        for p in std::mem::take(&mut self.idle) {
            add_part(&mut parts, &p.name, p.element);
        }
        let workers = std::mem::take(&mut self.workers);
        for (running, kept) in workers.into_iter().zip(kept_workers) {
            if kept {
                self.workers.push(running);
                report.threads_kept += 1;
                continue;
            }
            report.threads_replaced += 1;
            let Running { worker, names, .. } = running;
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
            for (i, slot) in slots.into_iter().enumerate() {
                if let Some(e) = slot {
                    add_part(&mut parts, &names[i], e);
                }
            }
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
        let pred = predecessors(&self.current, &layout.names);
        for (i, node) in graph.nodes.iter_mut().enumerate() {
            let key = pred[i].map(|o| (self.current[o].name.clone(), self.current[o].class));
            if let Some(old) = key.and_then(|k| parts.remove(&k)) {
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
        self.own_handlers.clear();
        self.handlers = table(&graph);
        report.threads_started = self.launch(graph, layout, &keep);
        if report.threads_replaced > 0 {
            report.pause = paused.elapsed();
        }
        Ok(report)
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
    let mut kept_names: Vec<String> = Vec::new();
    for g in ln.groups.iter().filter(|g| !g.tasks.is_empty()) {
        match (0..running.len()).find(|&k| !matched[k] && running[k].1 == g.signature.as_slice()) {
            Some(k) => {
                matched[k] = true;
                let m = members(g, &ln.names);
                kept_names.extend(m.iter().cloned());
                plan.kept.push(m);
            }
            None => plan.started.push(members(g, &ln.names)),
        }
    }
    for (k, (m, _)) in running.iter().enumerate() {
        if !matched[k] {
            plan.replaced.push(m.clone());
        }
    }
    let pred = predecessors(old, &ln.names);
    for (i, n) in ln.names.iter().enumerate() {
        match pred[i] {
            Some(_) => {
                let started = plan.started.iter().flatten().any(|s| *s == n.name);
                if !kept_names.contains(&n.name) || started {
                    plan.carried.push(n.name.clone());
                }
            }
            None => plan.added.push(n.name.clone()),
        }
    }
    for (o, n) in old.iter().enumerate() {
        if !pred.contains(&Some(o)) {
            plan.removed.push(n.name.clone());
        }
    }
    plan
}
