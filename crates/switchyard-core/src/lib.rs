//! Switchyard's core: packets and batches, the element API, argument
//! reading, handlers, the graph checker and the batched runtime.
//!
//! A configuration becomes a running router in four steps, each with a
//! typed result: [`load`] parses and flattens the text (switchyard-lang),
//! [`build`] configures each element from the [`Registry`] and checks the
//! graph, [`HandlerTable::new`] collects the handlers, and
//! [`Router::start`] splits the graph into threads and runs it.
#![forbid(unsafe_code)]

pub mod args;
pub mod checksum;
pub mod clock;
pub mod copies;
pub mod element;
pub mod graph;
pub mod handler;
pub mod packet;
pub mod runtime;
pub mod table;

pub use args::{Args, Data, FromArg, HandlerCall, Seconds};
pub use element::{Element, ElementClass, Export, PortCount, PortInfo, Processing, Scope, Work};
pub use graph::{build, build_limited, Graph, Registry};
pub use handler::{Handler, HandlerError, Merge};
pub use packet::{Annotations, Batch, Packet};
pub use runtime::{
    plan_reload, Context, ControlPlane, Harness, ReloadPlan, ReloadReport, Router, StopEvents, Stopper, Waker,
    WakerCache, WakerSlot,
};
pub use switchyard_lang::Limits;
pub use table::{HandlerTable, RouterLink, Wire};

use switchyard_lang::{Diagnostic, Environment, FileId, SourceMap};

/// Classes whose arguments are a script with its own variables: an
/// undefined `$x` in them is the script's, kept as written.
const SCRIPTS: &[&str] = &["Script", "DriverManager"];

/// What `require(...)` may name.
pub const PROVIDES: &[&str] = &["switchyard", "userlevel", "int64", "linux", "compact_config"];

/// Parses, flattens and checks file `file` of `map`. `defines` are
/// command-line `NAME=value` definitions. Every diagnostic of every stage
/// is returned together, in source order.
pub fn load(
    map: &mut SourceMap,
    file: FileId,
    registry: &Registry,
    defines: &[(String, String)],
) -> Result<Graph, Vec<Diagnostic>> {
    load_limited(map, file, registry, defines, &Limits::default())
}

/// [`load`], against `limits` instead of the defaults.
pub fn load_limited(
    map: &mut SourceMap,
    file: FileId,
    registry: &Registry,
    defines: &[(String, String)],
    limits: &Limits,
) -> Result<Graph, Vec<Diagnostic>> {
    load_staged(map, file, registry, defines, limits).map_err(|(diags, _)| diags)
}

/// Where loading a configuration failed: reading it (syntax, names,
/// classes, variables) or building a router from it (ports, push and
/// pull, arguments). Click closes the second kind of report with
/// "Router could not be initialized!".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Read,
    Router,
}

/// [`load_limited`], saying which [`Stage`] failed.
pub fn load_staged(
    map: &mut SourceMap,
    file: FileId,
    registry: &Registry,
    defines: &[(String, String)],
    limits: &Limits,
) -> Result<Graph, (Vec<Diagnostic>, Stage)> {
    let mut read = |path: &str, from: &str| read_library(path, from, limits.library_bytes);
    let (stmts, mut diags) = switchyard_lang::parse_with_libraries(map, file, &mut read, limits);
    let names = registry.names();
    let flatten = |copy: &str| {
        let defines = copies::defines_for(defines, copy);
        let env = Environment {
            classes: &names,
            provides: PROVIDES,
            defines: &defines,
            scripts: SCRIPTS,
            limits: *limits,
        };
        switchyard_lang::flatten(&stmts, &env)
    };
    let (flat, more) = flatten("0");
    diags.extend(more);
    if flat.truncated {
        return Err((diags, Stage::Read));
    }
    let copies = match copies::requested(&flat) {
        Ok(n) => n,
        Err(d) => {
            diags.push(d);
            1
        }
    };
    // Graph checks need a well-formed configuration; syntax and naming
    // errors come first, but all of them are reported at once.
    let read_errors = !diags.is_empty();
    let built = if copies > 1 && !read_errors {
        // Each copy flattened with its own `$COPY`; the text read without
        // errors once, so it does again.
        let mut flats = vec![flat];
        flats.extend((1..copies).map(|k| flatten(&k.to_string()).0));
        // The arguments as written, `$COPY` kept, for `flatconfig`.
        let written: Vec<String> = flatten("$COPY").0.elements.iter().map(|e| e.config()).collect();
        copies::build(&flats, registry, limits).map(|mut g| {
            g.written = written;
            g
        })
    } else {
        build_limited(&flat, registry, limits)
    };
    match built {
        Ok(graph) if diags.is_empty() => Ok(graph),
        Ok(_) => Err((diags, Stage::Read)),
        Err(mut errs) => {
            diags.append(&mut errs);
            diags.sort_by_key(|d| (d.span.file, d.span.start));
            Err((diags, if read_errors { Stage::Read } else { Stage::Router }))
        }
    }
}

/// Finds `require(library PATH)`'s file: PATH as written if absolute,
/// else beside the file that requires it, else in the working directory
/// (a configuration given as text, `<hotconfig>` or `-e`, has no
/// directory of its own). Only a regular file of at most `max` bytes is
/// read: a FIFO, a device or a directory is refused without blocking.
fn read_library(path: &str, from: &str, max: u64) -> Result<(String, String), String> {
    let path = std::path::Path::new(path);
    let beside = std::path::Path::new(from)
        .parent()
        .filter(|d| !from.starts_with('<') && !d.as_os_str().is_empty())
        .map(|d| d.join(path));
    let candidates: Vec<std::path::PathBuf> = beside.into_iter().chain([path.to_path_buf()]).collect();
    for c in &candidates {
        match read_config_file(c, max) {
            // Named by its real path: one file, one name, however the
            // path to it was written (`x`, `./x`, `.//x`), so it is read once.
            Ok(text) => {
                let name = std::fs::canonicalize(c).unwrap_or_else(|_| c.clone());
                return Ok((name.display().to_string(), text));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("library '{}': {e}", c.display())),
        }
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(format!(
        "library '{}' not found (looked for {})",
        path.display(),
        looked.join(", ")
    ))
}

/// Reads a configuration or library file: a regular file (checked on the
/// open descriptor, after an open that does not wait for a FIFO's writer)
/// of at most `max` bytes, in UTF-8. The errors say why, never what the
/// file holds.
pub fn read_config_file(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let too_big = || {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "larger than {max} bytes {}",
                switchyard_lang::Exceeded("library_bytes", max)
            ),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// A configuration text made ready to run: its checked graph and its
/// handler table. Errors come back rendered (`file:line:column: error:
/// ...`, the line, a caret), all of them.
pub fn load_text(
    file_name: &str,
    text: &str,
    registry: &Registry,
    defines: &[(String, String)],
) -> Result<(Graph, HandlerTable), String> {
    load_text_limited(file_name, text, registry, defines, &Limits::default())
}

/// [`load_text`], against `limits`.
pub fn load_text_limited(
    file_name: &str,
    text: &str,
    registry: &Registry,
    defines: &[(String, String)],
    limits: &Limits,
) -> Result<(Graph, HandlerTable), String> {
    load_text_as(file_name, text, registry, defines, limits, false)
}

/// [`load_text_limited`] for a text sent by a client (a reload): errors
/// in files the router read for it (libraries) give their location only,
/// so a reload cannot be used to read a file through its error messages.
/// The full errors go to the router's log.
pub fn load_text_for_client(
    file_name: &str,
    text: &str,
    registry: &Registry,
    defines: &[(String, String)],
    limits: &Limits,
) -> Result<(Graph, HandlerTable), String> {
    load_text_as(file_name, text, registry, defines, limits, true)
}

fn load_text_as(
    file_name: &str,
    text: &str,
    registry: &Registry,
    defines: &[(String, String)],
    limits: &Limits,
    redact: bool,
) -> Result<(Graph, HandlerTable), String> {
    load_text_rendered(file_name, text, registry, defines, limits, |diags, map, file, _| {
        if redact {
            let full = switchyard_lang::render_all(diags, map);
            tracing::warn!(errors = %full, "configuration refused");
            switchyard_lang::render_redacted(diags, map, file)
        } else {
            switchyard_lang::render_all(diags, map)
        }
    })
}

/// [`load_text_limited`] with errors in Click's format
/// ([`switchyard_lang::render_click`]), for `switchyard click`.
pub fn load_text_click(
    file_name: &str,
    text: &str,
    registry: &Registry,
    defines: &[(String, String)],
    limits: &Limits,
) -> Result<(Graph, HandlerTable), (String, Stage)> {
    load_text_rendered(file_name, text, registry, defines, limits, |diags, map, _, stage| {
        (switchyard_lang::render_click(diags, map), stage)
    })
}

/// Loads `text` as the file `file_name`, its errors rendered by `render`.
fn load_text_rendered<E>(
    file_name: &str,
    text: &str,
    registry: &Registry,
    defines: &[(String, String)],
    limits: &Limits,
    render: impl FnOnce(&[Diagnostic], &SourceMap, FileId, Stage) -> E,
) -> Result<(Graph, HandlerTable), E> {
    let mut map = SourceMap::new();
    let file = map.add(file_name, text);
    match load_staged(&mut map, file, registry, defines, limits) {
        Ok(graph) => {
            let table = HandlerTable::named(&graph, registry, text, file_name);
            Ok((graph, table))
        }
        Err((diags, stage)) => Err(render(&diags, &map, file, stage)),
    }
}

/// Runs a configuration until it stops by itself (a source's `STOP true`)
/// and returns its handler table for reading results. For tests, examples
/// and benchmarks; the CLI adds signals and periodic output.
pub fn run_text(text: &str, registry: &Registry) -> Result<std::sync::Arc<HandlerTable>, String> {
    let (graph, table) = load_text("<config>", text, registry, &[])?;
    let mut router = Router::start(graph, std::sync::Arc::new(table));
    let handlers = router.handlers().clone();
    while !router.wait_timeout(std::time::Duration::from_secs(1)) {}
    Ok(handlers)
}

/// Activates every element of a checked graph before its first start
/// ([`Element::activate`]: opens devices), with every error, each naming
/// its element.
pub fn activate(graph: &mut Graph) -> Result<(), String> {
    let errors: Vec<String> = graph
        .nodes
        .iter_mut()
        .filter_map(|n| {
            n.element
                .activate()
                .err()
                .map(|e| format!("'{} :: {}': {e}", n.name, n.class))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// The predecessor of an element as its own type, if it is one (for
/// [`Element::take_state`]).
pub fn downcast<T: Element>(old: Box<dyn Element>) -> Option<Box<T>> {
    let any: Box<dyn std::any::Any> = old;
    any.downcast::<T>().ok()
}
