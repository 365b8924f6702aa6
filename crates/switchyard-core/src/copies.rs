//! Several copies of one pipeline on several threads (`Copies(N)`): the
//! configuration says once that it runs N times, and `$COPY` (0 to N-1)
//! tells the copies apart where they must differ (a device queue, a file
//! name).
//!
//! The text is flattened and built once per copy, each with its own name
//! scope, so a selector pinning with a FlowTable finds its own copy's.
//! The graphs are then joined: an element with connections runs in every
//! copy, named `name#k`; one without (a Script, a Watchdog, `Copies`
//! itself) is kept once, from copy 0. Copies share no element, so the
//! layout gives each its own thread. The handler table then shows each
//! group of copies as one element under its plain name (see
//! [`crate::table`]).

use crate::graph::{build_limited, Graph, Registry};
use crate::handler::{Handler, Merge, ParamReadFn, ReadFn, WriteFn};
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_lang::{Diagnostic, FlatConfig, Limits, PortRef};

/// The class that sets the number of copies.
pub const CLASS: &str = "Copies";
/// The variable that holds a copy's number.
pub const VARIABLE: &str = "COPY";
/// The most copies a configuration may ask for.
pub const MAX: usize = 64;

/// The number of copies `flat` asks for: its `Copies(N)`, 1 without one.
/// A malformed count is 1 here; the element's own configure reports it.
/// Two `Copies` elements are an error at the second.
pub(crate) fn requested(flat: &FlatConfig) -> Result<usize, Diagnostic> {
    let mut found = flat.elements.iter().filter(|e| e.class == CLASS && e.class_known);
    let Some(first) = found.next() else { return Ok(1) };
    if let Some(second) = found.next() {
        return Err(Diagnostic::error(
            second.span,
            format!(
                "'{} :: {CLASS}': a configuration has one {CLASS} element ('{}' is the first)",
                second.name, first.name
            ),
        ));
    }
    let n = first
        .args
        .first()
        .map(|a| a.text.trim())
        // `N 3` as a keyword, as the element's own reading takes it.
        .map(|t| {
            t.strip_prefix('N')
                .filter(|rest| rest.starts_with(char::is_whitespace))
                .map_or(t, str::trim)
        })
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|n| (1..=MAX).contains(n));
    Ok(n.unwrap_or(1))
}

/// `defines` with `COPY` set to `value`: a copy's number (the router
/// sets it; a definition of its own is replaced), or `$COPY` itself for
/// the text as written ([`crate::Graph::flat_config`]).
pub(crate) fn defines_for(defines: &[(String, String)], value: &str) -> Vec<(String, String)> {
    defines
        .iter()
        .filter(|(name, _)| name != VARIABLE)
        .cloned()
        .chain([(VARIABLE.to_string(), value.to_string())])
        .collect()
}

/// The plain name of element `name`: without its copy suffix `#k`.
pub fn logical_name(name: &str) -> &str {
    name.rsplit_once('#').map_or(name, |(plain, _)| plain)
}

/// A copy's plain name and number (`sel#1`: `sel`, 1); None for a name
/// without a copy suffix.
pub(crate) fn split(name: &str) -> Option<(String, u32)> {
    let (plain, k) = name.rsplit_once('#')?;
    Some((plain.to_string(), k.parse().ok()?))
}

/// The plain name of an element named `name`, `copied` if it is a copy.
pub fn logical_name_of(name: &str, copied: bool) -> &str {
    if copied {
        logical_name(name)
    } else {
        name
    }
}

/// Builds each copy's flat configuration and joins them into one graph.
///
/// The copies are built on threads of their own, all alive at once, so
/// that the allocator (glibc gives each thread its own arena) puts the
/// state of each copy in a heap of its own: no cache line holds state
/// that two copies' threads write per batch (counters, a selector's
/// sequence segments), which would make the copies slow each other down.
pub(crate) fn build(flats: &[FlatConfig], registry: &Registry, limits: &Limits) -> Result<Graph, Vec<Diagnostic>> {
    let barrier = std::sync::Barrier::new(flats.len());
    let built: Vec<Result<Graph, Vec<Diagnostic>>> = std::thread::scope(|s| {
        let handles: Vec<_> = flats
            .iter()
            .map(|flat| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let graph = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        build_limited(flat, registry, limits)
                    }));
                    // Alive until every copy is built: an arena a finished
                    // thread leaves is the next thread's. Reached even if
                    // the build panicked, so the others are not left
                    // waiting.
                    barrier.wait();
                    graph.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut graphs = Vec::with_capacity(built.len());
    let mut errors: Vec<Diagnostic> = Vec::new();
    for result in built {
        match result {
            Ok(g) => graphs.push(g),
            // The copies differ only where `$COPY` is used: the same error
            // from several copies is reported once.
            Err(errs) => {
                for e in errs {
                    if !errors.iter().any(|d| d.span == e.span && d.message == e.message) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|d| (d.span.file, d.span.start));
        return Err(errors);
    }
    let graph = join(graphs);
    let errors = check_exclusive(&graph);
    if errors.is_empty() {
        Ok(graph)
    } else {
        Err(errors)
    }
}

/// Joins the copies' graphs: copy 0's elements first (in configuration
/// order, so an element's index is the same as without copies), then
/// copy 1's connected ones, and so on.
fn join(graphs: Vec<Graph>) -> Graph {
    let copies = graphs.len();
    let first = &graphs[0];
    let mut connected = vec![false; first.nodes.len()];
    for (f, t) in &first.connections {
        connected[f.element] = true;
        connected[t.element] = true;
    }
    let limits = first.limits;
    let chain = graphs.iter().map(|g| g.chain).max().unwrap_or(0);
    let mut nodes = Vec::with_capacity(first.nodes.len() * copies);
    let mut connections = Vec::with_capacity(first.connections.len() * copies);
    for (k, g) in graphs.into_iter().enumerate() {
        let mut at = vec![usize::MAX; g.nodes.len()];
        for (i, mut node) in g.nodes.into_iter().enumerate() {
            if !connected[i] {
                // Kept once: copy 0's; the others' are dropped unused.
                if k == 0 {
                    at[i] = nodes.len();
                    nodes.push(node);
                }
                continue;
            }
            node.name = format!("{}#{k}", node.name);
            node.copy = Some(k as u32);
            at[i] = nodes.len();
            nodes.push(node);
        }
        let moved = |p: PortRef| PortRef {
            element: at[p.element],
            port: p.port,
        };
        connections.extend(g.connections.into_iter().map(|(f, t)| (moved(f), moved(t))));
    }
    Graph {
        nodes,
        connections,
        chain,
        limits,
        copies,
        written: Vec::new(),
    }
}

/// Refuses two copies that would hold the same resource
/// ([`crate::Element::exclusive`]), once per element. Two elements of one
/// copy asking for it are not this check's business (as without copies).
fn check_exclusive(graph: &Graph) -> Vec<Diagnostic> {
    let mut holders: HashMap<String, u32> = HashMap::new();
    let mut errors: Vec<Diagnostic> = Vec::new();
    for node in graph.nodes.iter().filter(|n| n.copy.is_some()) {
        let Some((what, advice)) = node.element.exclusive() else {
            continue;
        };
        let copy = node.copy.unwrap_or(0);
        match holders.get(&what) {
            Some(&first) if first != copy && !errors.iter().any(|d| d.span == node.span) => {
                errors.push(Diagnostic::error(
                    node.span,
                    format!(
                        "'{} :: {}': copies {first} and {} would both {what}: {advice}",
                        logical_name(&node.name),
                        node.class,
                        copy
                    ),
                ))
            }
            Some(_) => {}
            None => {
                holders.insert(what, copy);
            }
        }
    }
    errors
}

/// The handlers of one element run as copies (`copies[k]` the handlers
/// of copy k), made one: a read combines the copies' values
/// ([`merge_values`]); a write is checked against every copy, then made
/// in each (the copies already written put back if one refuses). The
/// writer then waits until the copies' threads have taken it
/// ([`crate::HandlerTable::settle`]), outside any lock of its own.
pub(crate) fn merge_handlers(copies: &[&[Handler]]) -> Vec<Handler> {
    let mut merged = Vec::with_capacity(copies[0].len());
    for (i, first) in copies[0].iter().enumerate() {
        let same: Option<Vec<&Handler>> = copies
            .iter()
            .map(|c| {
                c.get(i)
                    .filter(|h| h.name == first.name)
                    .or_else(|| c.iter().find(|h| h.name == first.name))
            })
            .collect();
        let Some(same) = same else { continue };
        merged.push(merge_one(&same));
    }
    merged
}

fn merge_one(copies: &[&Handler]) -> Handler {
    let first = copies[0];
    let setting = first.persistent || first.write.is_some();
    let merge = first.merge;
    let reads: Option<Vec<ReadFn>> = copies.iter().map(|h| h.read.clone()).collect();
    let read = reads.map(|reads| {
        Arc::new(move || {
            let values: Vec<String> = reads.iter().map(|r| r()).collect();
            merge_values(merge, setting, &values)
        }) as ReadFn
    });
    let params: Option<Vec<ParamReadFn>> = copies.iter().map(|h| h.read_param.clone()).collect();
    let read_param = params.map(|reads| {
        Arc::new(move |param: &str| {
            let values = reads
                .iter()
                .map(|r| r(param))
                .collect::<Result<Vec<String>, String>>()?;
            Ok(merge_values(merge, setting, &values))
        }) as ParamReadFn
    });
    let writes: Option<Vec<WriteFn>> = copies.iter().map(|h| h.write.clone()).collect();
    let checks: Vec<Option<WriteFn>> = copies.iter().map(|h| h.check.clone()).collect();
    let undo: Option<Vec<ReadFn>> = copies
        .iter()
        .map(|h| h.read.clone().filter(|_| setting && h.persists_as.is_none()))
        .collect();
    let write = writes.map(|writes| {
        let checks = checks.clone();
        // One write at a time goes through the copies: two writers
        // interleaving copy by copy would leave them different.
        let one_at_a_time = std::sync::Mutex::new(());
        let name = first.name.clone();
        Arc::new(move |value: &str| {
            let _turn = one_at_a_time.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for check in checks.iter().flatten() {
                check(value)?;
            }
            let before: Option<Vec<String>> = undo.as_ref().map(|u| u.iter().map(|r| r()).collect());
            for (k, write) in writes.iter().enumerate() {
                if let Err(why) = write(value) {
                    if k == 0 {
                        return Err(why);
                    }
                    let Some(before) = &before else {
                        return Err(format!("copy {k} refused ({why}); copies 0 to {} took it", k - 1));
                    };
                    for (j, (w, old)) in writes[..k].iter().zip(before).enumerate() {
                        if let Err(e) = w(old) {
                            tracing::error!(handler = %name, copy = j, error = %e, "could not put a copy back");
                        }
                    }
                    return Err(format!("copy {k} refused ({why}); the copies before it were put back"));
                }
            }
            Ok(())
        }) as WriteFn
    });
    let check = (checks.iter().any(Option::is_some)).then(|| {
        Arc::new(move |value: &str| {
            for check in checks.iter().flatten() {
                check(value)?;
            }
            Ok(())
        }) as WriteFn
    });
    Handler {
        name: first.name.clone(),
        read,
        write,
        read_param,
        persistent: first.persistent,
        persists_as: first.persists_as.clone(),
        proxy: first.proxy,
        check,
        merge,
    }
}

/// The one value a read of `values` (copy 0's first) gives, combined by
/// `merge`; `setting` is true for a writable or persistent handler (what
/// [`Merge::Auto`] keeps as one common value).
pub fn merge_values(merge: Merge, setting: bool, values: &[String]) -> String {
    let Some(first) = values.first() else {
        return String::new();
    };
    let same = || values.iter().all(|v| v == first);
    // What does not combine is shown as it is, one line per copy: a
    // setting configured per copy (`$COPY`), words that do not line up.
    let each = || {
        let lines: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(k, v)| format!("#{k} {}", v.trim()))
            .collect();
        lines.join("\n")
    };
    let one = || if same() { first.clone() } else { each() };
    match merge {
        Merge::Same => one(),
        Merge::Auto if setting => one(),
        Merge::Auto | Merge::Sum => tokenwise(values, Sum::Add)
            .or_else(|| same().then(|| first.clone()))
            .unwrap_or_else(each),
        Merge::Max => tokenwise(values, Sum::Max).unwrap_or_else(each),
        Merge::All => (values.iter().all(|v| v.trim() == "true")).to_string(),
        Merge::First => values.iter().find(|v| !v.trim().is_empty()).unwrap_or(first).clone(),
        Merge::List => {
            let sep = if values.iter().any(|v| v.trim().contains(char::is_whitespace)) {
                "\n"
            } else {
                " "
            };
            values.iter().map(|v| v.trim()).collect::<Vec<_>>().join(sep)
        }
    }
}

#[derive(Clone, Copy)]
enum Sum {
    Add,
    Max,
}

/// Combines the values token by token, the blanks of the first kept:
/// numbers by `how`, other words only where every copy has the same.
/// None if the values do not line up (another count of words, a word that
/// differs, a number against a word).
fn tokenwise(values: &[String], how: Sum) -> Option<String> {
    let split: Vec<Vec<&str>> = values.iter().map(|v| v.split_whitespace().collect()).collect();
    let words = split[0].len();
    if split.iter().any(|s| s.len() != words) {
        return None;
    }
    let mut merged = Vec::with_capacity(words);
    for j in 0..words {
        let column: Vec<&str> = split.iter().map(|s| s[j]).collect();
        merged.push(combine(&column, how)?);
    }
    // Rebuilt over the first value's blanks.
    let mut out = String::with_capacity(values[0].len() + 8);
    let mut rest = values[0].as_str();
    for (word, new) in split[0].iter().zip(&merged) {
        let at = rest.find(word).expect("a word of this text");
        out.push_str(&rest[..at]);
        out.push_str(new);
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    Some(out)
}

fn combine(column: &[&str], how: Sum) -> Option<String> {
    if let Ok(ints) = column.iter().map(|w| w.parse::<i128>()).collect::<Result<Vec<_>, _>>() {
        let v = match how {
            Sum::Add => ints.iter().sum(),
            Sum::Max => *ints.iter().max().expect("one copy at least"),
        };
        return Some(v.to_string());
    }
    // Decimal numbers only (`0.25`, `-1.5`): not hex that parses as an
    // exponent (`1e05`).
    let is_number = |w: &&str| {
        let digits = w.strip_prefix('-').unwrap_or(w);
        digits.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        })
    };
    if column.iter().all(is_number) {
        if let Ok(floats) = column.iter().map(|w| w.parse::<f64>()).collect::<Result<Vec<_>, _>>() {
            let v = match how {
                Sum::Add => floats.iter().sum(),
                Sum::Max => floats.iter().copied().fold(f64::MIN, f64::max),
            };
            let decimals = column
                .iter()
                .map(|w| w.split_once('.').map_or(0, |(_, d)| d.len()))
                .max()
                .unwrap_or(0);
            return Some(format!("{v:.decimals$}"));
        }
    }
    column.iter().all(|w| w == &column[0]).then(|| column[0].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(m: Merge, setting: bool, values: &[&str]) -> String {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        merge_values(m, setting, &values)
    }

    #[test]
    fn counts_sum_and_settings_stay_one_value() {
        assert_eq!(merge(Merge::Auto, false, &["10", "32"]), "42");
        // Equal counts are still two copies' counts.
        assert_eq!(merge(Merge::Auto, false, &["5", "5"]), "10");
        assert_eq!(merge(Merge::Auto, true, &["1", "1"]), "1");
        // A setting configured per copy ($COPY): each copy's, shown.
        assert_eq!(merge(Merge::Auto, true, &["1", "0"]), "#0 1\n#1 0");
    }

    #[test]
    fn words_keep_their_place_and_blanks() {
        assert_eq!(merge(Merge::Sum, false, &["50 20\n", "5 2\n"]), "55 22\n");
        assert_eq!(
            merge(Merge::Auto, false, &["tcp 5\nudp 1.50", "tcp 1\nudp 0.25"]),
            "tcp 6\nudp 1.75"
        );
        assert_eq!(merge(Merge::Max, false, &["7", "19", "3"]), "19");
        assert_eq!(merge(Merge::Max, false, &["0.10", "0.5"]), "0.50");
        // Text that does not line up: one line per copy.
        assert_eq!(merge(Merge::Auto, false, &["a b", "c"]), "#0 a b\n#1 c");
        assert_eq!(merge(Merge::Auto, false, &["up", "up"]), "up");
        assert_eq!(merge(Merge::Max, false, &["a", "b"]), "#0 a\n#1 b");
        // Hex words are words, not numbers.
        assert_eq!(merge(Merge::Auto, false, &["1e05 1", "1e05 2"]), "1e05 3");
    }

    #[test]
    fn flags_and_lists() {
        assert_eq!(merge(Merge::All, false, &["true", "true"]), "true");
        assert_eq!(merge(Merge::All, false, &["true", "false"]), "false");
        assert_eq!(merge(Merge::List, false, &["17", "4"]), "17 4");
        assert_eq!(merge(Merge::First, false, &["", "1.2.3.4 5"]), "1.2.3.4 5");
        assert_eq!(merge(Merge::List, false, &["a b", "c"]), "a b\nc");
    }

    #[test]
    fn logical_names_drop_the_copy_suffix() {
        assert_eq!(logical_name("sel#3"), "sel");
        assert_eq!(logical_name("outer/sel#0"), "outer/sel");
        assert_eq!(logical_name("sel"), "sel");
    }

    #[test]
    fn the_router_sets_copy() {
        let d = defines_for(&[("COPY".into(), "9".into()), ("X".into(), "1".into())], "2");
        assert_eq!(d, vec![("X".into(), "1".into()), ("COPY".into(), "2".into())]);
    }
}
