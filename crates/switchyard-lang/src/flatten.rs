//! Flattening: from the AST to a flat list of named elements and
//! port-to-port connections, as Click's lexer does before it builds a router.
//!
//! `define` variables are substituted into configuration arguments;
//! `elementclass` compounds are expanded with `outer/inner` names, their
//! `input`/`output` pseudo-elements spliced out; anonymous elements get
//! Click's `Class@N` names. Element declarations are visible in the whole
//! scope, in any order; element classes only after their definition, so a
//! redefinition changes the class for the uses after it.
//!
//! Each scope is read in two passes. The first makes its connections
//! between placeholders; the second gives each placeholder its class, now
//! that the ports it connects are known: an overloaded compound (`{ ... ||
//! ... }`) is chosen by its arguments and by those ports, as Click chooses.
//! A compound's contents come after the elements of the scope that uses
//! it, in Click's order. Errors are collected, not returned on first sight.

use crate::ast::*;
use crate::config::{split_args, substitute_within};
use crate::diag::{Diagnostic, Note};
use crate::limits::{Exceeded, Limits};
use crate::span::Span;
use crate::suggest::nearest;
use std::collections::HashMap;

/// One argument of an element's configuration after variable substitution,
/// with the span of its text as written.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatArg {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FlatElement {
    /// Full name, `outer/inner` inside compounds, `Class@N` if anonymous.
    pub name: String,
    pub class: String,
    /// False when the class was unknown; that error is already reported.
    pub class_known: bool,
    pub args: Vec<FlatArg>,
    /// Where the element was declared (its name, or its class if anonymous).
    pub span: Span,
    /// The span of the configuration text, or of the class name if none.
    pub config_span: Span,
}

impl FlatElement {
    /// The configuration string after substitution, as Click's `config`
    /// handler shows it.
    pub fn config(&self) -> String {
        self.args.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRef {
    pub element: usize,
    pub port: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FlatConnection {
    pub from: PortRef,
    pub to: PortRef,
    pub span: Span,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlatConfig {
    pub elements: Vec<FlatElement>,
    pub connections: Vec<FlatConnection>,
    /// A limit stopped the expansion: the lists are cut short, and their
    /// own checks would only add errors that are not the author's.
    pub truncated: bool,
}

impl FlatConfig {
    pub fn find(&self, name: &str) -> Option<usize> {
        self.elements.iter().position(|e| e.name == name)
    }
}

/// What the flattener needs to know of the world: primitive class names,
/// provided requirements and command-line definitions (which win over the
/// file's `define`s).
pub struct Environment<'a> {
    pub classes: &'a [&'a str],
    pub provides: &'a [&'a str],
    pub defines: &'a [(String, String)],
    /// Classes whose arguments are a script with variables of its own
    /// (Click's Script): an undefined `$x` there stays as written, as
    /// Click keeps it everywhere. Elsewhere it is reported, as the typo
    /// it usually is.
    pub scripts: &'a [&'a str],
    /// Depth, element count and argument size bounds.
    pub limits: Limits,
}

/// Flattens a parsed file. The diagnostics are every error found; the
/// configuration is usable only when there are none.
pub fn flatten(stmts: &[Stmt], env: &Environment) -> (FlatConfig, Vec<Diagnostic>) {
    let mut f = Flattener {
        env,
        nodes: Vec::new(),
        edges: Vec::new(),
        diags: Vec::new(),
        depth: 0,
        too_big: false,
        elements: 0,
        arg_bytes: 0,
        suggestions: 0,
        provided: Vec::new(),
        class_scopes: Vec::new(),
        defs: Vec::new(),
        body_scopes: HashMap::new(),
        signatures: HashMap::new(),
        scopes: 0,
    };
    let globals: HashMap<String, String> = env.defines.iter().cloned().collect();
    f.scope(stmts, "", &globals, None, None);
    let mut config = f.finish();
    config.truncated = f.too_big;
    let mut diags = f.diags;
    diags.sort_by_key(|d| (d.span.file, d.span.start));
    (config, diags)
}

/// The element classes visible at one point of the text: the first `seen`
/// definitions of class scope `scope`, then what its parent saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ClassEnv {
    scope: usize,
    seen: usize,
}

/// The element class definitions of one scope (the file or a compound
/// body; groups share their enclosing scope's), in text order.
struct ClassScope {
    /// Each name's definitions: (how many definitions of the scope come
    /// before it, index in `Flattener::defs`).
    by_name: HashMap<String, Vec<(usize, usize)>>,
    /// Where the scope's compound was defined.
    parent: Option<ClassEnv>,
}

/// What a class name means at one point of the text.
#[derive(Clone, Debug, PartialEq)]
enum Class {
    /// A primitive class, known to the environment or not (that error is
    /// reported where an element is made of it).
    Primitive(String),
    /// A compound definition (an index in `Flattener::defs`).
    Compound(usize),
}

struct Def<'s> {
    name: &'s Ident,
    kind: DefKind<'s>,
}

enum DefKind<'s> {
    /// `elementclass A B;`: what `B` meant there.
    Synonym(Class),
    /// `elementclass A { ... || ... }`: its versions in order, then, for a
    /// last `...`, what `A` meant before (Click's extension), and the
    /// classes its bodies see.
    Compound {
        alternatives: &'s [Compound],
        next: Option<Class>,
        env: ClassEnv,
    },
}

/// How one element of a scope becomes real once its ports are known.
enum Choice<'s> {
    Primitive(String),
    Compound {
        body: &'s Compound,
        env: ClassEnv,
        class: String,
        report_args: bool,
    },
    /// A class whose definition was already reported broken: a quiet
    /// placeholder.
    Broken,
}

/// An element of a scope whose class is chosen once the scope's
/// connections are known.
struct Pending<'s> {
    node: usize,
    name: String,
    span: Span,
    /// The class as written, its configuration, and for `{ ... }` written
    /// in place, that body.
    class: &'s Ident,
    config: Option<&'s ConfigText>,
    inline: Option<&'s Compound>,
    /// The classes visible where the element is written.
    env: ClassEnv,
}

/// One scope being flattened: the file or a compound body (groups share
/// their enclosing scope).
struct Scope<'a, 's> {
    prefix: &'a str,
    vars: &'a HashMap<String, String>,
    classes: usize,
    names: HashMap<String, Handle>,
    pending: Vec<Pending<'s>>,
    /// Anonymous elements are numbered by their position among the
    /// scope's elements, as Click numbers them.
    position: usize,
    /// Element class definitions passed so far in the text.
    seen: usize,
    /// The scope's number in expansion order, and each element's position
    /// in it: the flat configuration lists elements in that order.
    serial: usize,
    positions: HashMap<usize, usize>,
}

impl Scope<'_, '_> {
    fn here(&self) -> ClassEnv {
        ClassEnv {
            scope: self.classes,
            seen: self.seen,
        }
    }
}

/// The handle of `input` or `output` inside a compound or group: a tunnel
/// usable on one side only (`usize::MAX` on the other).
fn pseudo(as_source: usize, as_dest: usize) -> Handle {
    Handle {
        as_source,
        as_dest,
        span: Span::default(),
    }
}

/// An element of a connection, resolved: its handle, its syntax, and
/// for a group the ports its inside uses (inputs, outputs).
type Resolved<'s> = (Option<Handle>, &'s ElementRef, Option<(u32, u32)>);

/// Where an element comes in the flat configuration: the scope (in the
/// order scopes are expanded) and its position there.
type Order = (usize, usize);

/// A node of the graph under construction: a real element, a tunnel (a
/// compound's `input` or `output`, spliced out at the end), or an element
/// whose class is not chosen yet.
enum Node {
    Element(FlatElement, Order),
    Tunnel { owner: String, input: bool, span: Span },
    Pending,
}

/// What a name in a scope refers to: one node for sources and one for
/// destinations (different for a group: its output and input tunnels).
#[derive(Clone, Copy)]
struct Handle {
    as_source: usize,
    as_dest: usize,
    span: Span,
}

struct Flattener<'e, 's> {
    env: &'e Environment<'e>,
    nodes: Vec<Node>,
    edges: Vec<FlatConnection>,
    diags: Vec<Diagnostic>,
    depth: usize,
    /// Set once a limit was hit: later expansions stop quietly.
    too_big: bool,
    /// Elements made so far, and bytes of their substituted arguments.
    elements: usize,
    arg_bytes: usize,
    /// "Did you mean" searches over the names in scope made so far.
    suggestions: usize,
    /// Requirements the configuration provides itself (`provide(...)`).
    provided: Vec<String>,
    class_scopes: Vec<ClassScope>,
    defs: Vec<Def<'s>>,
    /// A body's class scope depends only on the body and where its class
    /// was defined: made once, however many times the body is expanded
    /// (and its definition errors reported once).
    body_scopes: HashMap<(usize, Option<ClassEnv>), usize>,
    /// Ports each compound version's inside uses, by the version's address.
    signatures: HashMap<usize, (u32, u32)>,
    /// Scopes started so far.
    scopes: usize,
}

/// Undeclared names that get a "did you mean" searched among the names
/// in scope (each search is linear in them).
const MAX_SUGGESTIONS: usize = 100;

/// Versions of one compound tried for one element (with `...`, each
/// redefinition adds the versions before it).
const MAX_VERSIONS: usize = 100;

/// Versions listed in a "no match" error.
const MAX_CANDIDATES_SHOWN: usize = 16;

impl<'e, 's> Flattener<'e, 's> {
    /// Expands the statements of one scope (the file, or a compound body
    /// with `tunnels` = its input and output nodes, its classes seeing
    /// `parent`).
    fn scope(
        &mut self,
        stmts: &'s [Stmt],
        prefix: &str,
        outer_vars: &HashMap<String, String>,
        parent: Option<ClassEnv>,
        tunnels: Option<(usize, usize)>,
    ) {
        // Definitions apply to the whole scope; the command line wins over
        // the file at top level.
        let mut vars = outer_vars.clone();
        for stmt in stmts {
            if let Stmt::Define(defs) = stmt {
                for d in defs {
                    let overridden = prefix.is_empty() && self.env.defines.iter().any(|(n, _)| *n == d.name.name);
                    if !overridden {
                        let budget = self.env.limits.config_bytes.saturating_sub(self.arg_bytes);
                        let lookup = |n: &str| outer_vars.get(n).map(String::as_str);
                        match substitute_within(&d.value, lookup, budget) {
                            Some((v, _)) => {
                                self.arg_bytes += v.len();
                                vars.insert(d.name.name.clone(), v);
                            }
                            None => self.bytes_exceeded(d.name.span),
                        }
                    }
                }
            }
        }
        for stmt in stmts {
            if let Stmt::Provide(p) = stmt {
                self.provided.extend(p.iter().map(|r| r.name.clone()));
            }
        }
        for stmt in stmts {
            if let Stmt::Require(reqs) = stmt {
                self.require(reqs);
            }
        }
        let classes = self.class_scope(stmts, parent);

        let mut sc = Scope {
            prefix,
            vars: &vars,
            classes,
            names: HashMap::new(),
            pending: Vec::new(),
            position: 0,
            seen: 0,
            serial: self.scopes,
            positions: HashMap::new(),
        };
        self.scopes += 1;
        if let Some((input, output)) = tunnels {
            sc.names.insert("input".into(), pseudo(input, usize::MAX));
            sc.names.insert("output".into(), pseudo(usize::MAX, output));
        }
        // Declarations first, so that connections may name an element
        // declared further down.
        self.declare(stmts, &mut sc);
        sc.seen = 0;
        let first_edge = self.edges.len();
        self.connections(stmts, &mut sc);
        self.resolve(&sc, first_edge);
    }

    /// The class scope of `stmts` seen from `parent`: every element class
    /// they define, in text order (groups included), each resolving what
    /// it refers to (a synonym's class, the class a `...` extends) where
    /// it is written.
    fn class_scope(&mut self, stmts: &'s [Stmt], parent: Option<ClassEnv>) -> usize {
        let key = (stmts.as_ptr() as usize, parent);
        if let Some(&id) = self.body_scopes.get(&key) {
            return id;
        }
        let id = self.class_scopes.len();
        self.class_scopes.push(ClassScope {
            by_name: HashMap::new(),
            parent,
        });
        let mut seen = 0;
        self.define_classes(stmts, id, &mut seen);
        self.body_scopes.insert(key, id);
        id
    }

    fn define_classes(&mut self, stmts: &'s [Stmt], scope: usize, seen: &mut usize) {
        for stmt in stmts {
            match stmt {
                Stmt::ElementClass(ec) => {
                    let here = ClassEnv { scope, seen: *seen };
                    let kind = match &ec.body {
                        ClassBody::Synonym(target) => DefKind::Synonym(
                            self.lookup(here, &target.name)
                                .unwrap_or_else(|| Class::Primitive(target.name.clone())),
                        ),
                        ClassBody::Compound { alternatives, extends } => {
                            let next = extends.and_then(|at| {
                                let before = self.lookup(here, &ec.name.name);
                                if before.is_none() {
                                    self.diags.push(
                                        Diagnostic::error(
                                            at,
                                            format!("cannot extend unknown element class '{}'", ec.name.name),
                                        )
                                        .with_help(format!(
                                            "'...' stands for the class '{}' as defined before this point \
                                             (a built-in class or an earlier elementclass); there is none",
                                            ec.name.name
                                        )),
                                    );
                                }
                                before
                            });
                            DefKind::Compound {
                                alternatives,
                                next,
                                env: here,
                            }
                        }
                    };
                    self.defs.push(Def { name: &ec.name, kind });
                    let def = self.defs.len() - 1;
                    self.class_scopes[scope]
                        .by_name
                        .entry(ec.name.name.clone())
                        .or_default()
                        .push((*seen, def));
                    *seen += 1;
                }
                Stmt::Connection(c) => {
                    for item in c.sections.iter().flatten() {
                        if let Target::Group(g) = &item.target {
                            self.define_classes(&g.stmts, scope, seen);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// What `name` means as a class at `env`: the last definition before
    /// that point, in this scope or the ones around it, else a primitive.
    fn lookup(&self, env: ClassEnv, name: &str) -> Option<Class> {
        let mut at = Some(env);
        while let Some(e) = at {
            let scope = &self.class_scopes[e.scope];
            if let Some(list) = scope.by_name.get(name) {
                let k = list.partition_point(|&(seq, _)| seq < e.seen);
                if k > 0 {
                    let def = list[k - 1].1;
                    return Some(match &self.defs[def].kind {
                        DefKind::Synonym(c) => c.clone(),
                        DefKind::Compound { .. } => Class::Compound(def),
                    });
                }
            }
            at = scope.parent;
        }
        self.env
            .classes
            .contains(&name)
            .then(|| Class::Primitive(name.to_string()))
    }

    /// Why `name` is no class at `env` although a definition exists: a
    /// note and a help, when it is defined further down (too late), or
    /// when `env` is inside that very definition.
    fn too_late(&self, env: ClassEnv, name: &str) -> Option<(Note, String)> {
        let mut at = Some(env);
        let mut outer = false;
        while let Some(e) = at {
            let scope = &self.class_scopes[e.scope];
            let later = scope
                .by_name
                .get(name)
                .and_then(|l| l.iter().find(|&&(seq, _)| seq >= e.seen));
            if let Some(&(seq, def)) = later {
                let span = Some(self.defs[def].name.span);
                // A body sees its parent scope up to its own definition.
                return Some(if outer && seq == e.seen {
                    (
                        Note {
                            span,
                            message: format!("element class '{name}' is being defined here"),
                        },
                        format!(
                            "inside its own definition '{name}' means the class defined before it (there is \
                             none): a compound cannot contain itself"
                        ),
                    )
                } else {
                    (
                        Note {
                            span,
                            message: format!("element class '{name}' is defined here, after its use"),
                        },
                        "an element class can be used only after its definition, as in Click".to_string(),
                    )
                });
            }
            at = scope.parent;
            outer = true;
        }
        None
    }

    /// Element class names visible anywhere around `env`, for "did you
    /// mean".
    fn class_names(&self, env: ClassEnv) -> Vec<&str> {
        let mut names: Vec<&str> = self.env.classes.to_vec();
        let mut at = Some(env);
        while let Some(e) = at {
            let scope = &self.class_scopes[e.scope];
            names.extend(scope.by_name.keys().map(String::as_str));
            at = scope.parent;
        }
        names
    }

    /// A placeholder for element `name` of class `class` (as written at
    /// the scope's current point), chosen and made by [`Self::resolve`].
    #[allow(clippy::too_many_arguments)]
    fn pend(
        &mut self,
        sc: &mut Scope<'_, 's>,
        name: String,
        span: Span,
        class: &'s Ident,
        config: Option<&'s ConfigText>,
        inline: Option<&'s Compound>,
    ) -> Handle {
        self.nodes.push(Node::Pending);
        let node = self.nodes.len() - 1;
        sc.pending.push(Pending {
            node,
            name,
            span,
            class,
            config,
            inline,
            env: sc.here(),
        });
        Handle {
            as_source: node,
            as_dest: node,
            span,
        }
    }

    /// Instantiates the declarations (`x :: Class`) of `stmts`, also those
    /// inside groups (which share the scope), so that connections may name
    /// an element declared further down.
    fn declare(&mut self, stmts: &'s [Stmt], sc: &mut Scope<'_, 's>) {
        for stmt in stmts {
            let c = match stmt {
                Stmt::Connection(c) => c,
                Stmt::ElementClass(_) => {
                    sc.seen += 1;
                    continue;
                }
                _ => continue,
            };
            for item in c.sections.iter().flatten() {
                let (decl, class) = match &item.target {
                    Target::Declare { names: decl, class } => (decl, class),
                    Target::Group(g) => {
                        self.declare(&g.stmts, sc);
                        continue;
                    }
                    _ => continue,
                };
                for id in decl {
                    if let Some(prev) = sc.names.get(&id.name) {
                        let mut d = Diagnostic::error(id.span, format!("redeclaration of element '{}'", id.name));
                        if prev.span != Span::default() {
                            d = d.with_note(
                                Some(prev.span),
                                format!("element '{}' previously declared here", id.name),
                            );
                        }
                        self.diags.push(d);
                        continue;
                    }
                    let full = format!("{}{}", sc.prefix, id.name);
                    let inline = class.inline.as_deref();
                    let h = self.pend(sc, full, id.span, &class.class, class.config.as_ref(), inline);
                    sc.names.insert(id.name.clone(), h);
                }
            }
        }
    }

    /// Makes the connections of `stmts`, with anonymous elements numbered
    /// as Click numbers them: by their position among the scope's elements
    /// (shared with the groups inside).
    fn connections(&mut self, stmts: &'s [Stmt], sc: &mut Scope<'_, 's>) {
        for stmt in stmts {
            let c = match stmt {
                Stmt::Connection(c) => c,
                Stmt::ElementClass(_) => {
                    sc.seen += 1;
                    continue;
                }
                _ => continue,
            };
            let mut sections: Vec<Vec<Resolved>> = Vec::new();
            for section in &c.sections {
                let mut resolved = Vec::new();
                for item in section {
                    let mut implied = None;
                    let h = match &item.target {
                        Target::Group(g) => {
                            // Click counts a group as three elements: the
                            // group and its two tunnels.
                            sc.position += 3;
                            let (h, ports) = self.group(g, item.span, sc);
                            implied = Some(ports);
                            Some(h)
                        }
                        Target::Declare { names: decl, .. } => {
                            for id in decl {
                                sc.position += 1;
                                if let Some(h) = sc.names.get(&id.name) {
                                    sc.positions.entry(h.as_dest).or_insert(sc.position);
                                }
                            }
                            sc.names.get(&decl[0].name).copied()
                        }
                        Target::Anonymous(class) => {
                            sc.position += 1;
                            let local = format!("{}@{}", class.class.name, sc.position);
                            let full = format!("{}{local}", sc.prefix);
                            let inline = class.inline.as_deref();
                            let h = self.pend(sc, full, class.class.span, &class.class, class.config.as_ref(), inline);
                            sc.positions.insert(h.as_dest, sc.position);
                            sc.names.insert(local, h);
                            Some(h)
                        }
                        Target::Name(id) => Some(self.name(id, sc)),
                    };
                    resolved.push((h, item, implied));
                }
                sections.push(resolved);
            }
            if let Some(first) = sections.first() {
                if c.sections.len() > 1 {
                    if let Some((_, item, _)) = first.iter().find(|(_, i, _)| i.input.is_some()) {
                        self.diags.push(Diagnostic::error(
                            item.input.as_ref().unwrap().span,
                            "input port ignored at start of chain",
                        ));
                    }
                }
            }
            if let Some(last) = sections.last() {
                if c.sections.len() > 1 {
                    if let Some((_, item, _)) = last.iter().find(|(_, i, _)| i.output.is_some()) {
                        self.diags.push(Diagnostic::error(
                            item.output.as_ref().unwrap().span,
                            "output port ignored at end of chain",
                        ));
                    }
                }
            }
            for (k, (kind, arrow)) in c.arrows.iter().enumerate() {
                self.connect(&sections[k], &sections[k + 1], *kind, *arrow);
            }
        }
    }

    /// A bare name in a connection: a declared element, else a class used
    /// anonymously (`-> Discard ->`), else an error.
    fn name(&mut self, id: &'s Ident, sc: &mut Scope<'_, 's>) -> Handle {
        if let Some(h) = sc.names.get(&id.name) {
            return *h;
        }
        if self.lookup(sc.here(), &id.name).is_some() {
            sc.position += 1;
            let local = format!("{}@{}", id.name, sc.position);
            let full = format!("{}{local}", sc.prefix);
            let h = self.pend(sc, full, id.span, id, None, None);
            sc.positions.insert(h.as_dest, sc.position);
            sc.names.insert(local, h);
            return h;
        }
        let mut d = Diagnostic::error(id.span, format!("undeclared element '{}'", id.name));
        if let Some((note, help)) = self.too_late(sc.here(), &id.name) {
            d.notes.push(note);
            d = d.with_help(help);
        } else if self.suggestions < MAX_SUGGESTIONS {
            // Each search scans every name in scope: the first ones get a
            // suggestion, so that thousands of typos stay linear.
            self.suggestions += 1;
            let candidates = sc
                .names
                .keys()
                .map(String::as_str)
                .chain(self.env.classes.iter().copied());
            if let Some(n) = nearest(&id.name, candidates) {
                d = d.with_help(format!("did you mean '{n}'?"));
            }
        }
        self.diags.push(d);
        // A placeholder, so that the name's other uses and its neighbours'
        // ports raise no further errors.
        self.nodes.push(Node::Element(
            FlatElement {
                name: format!("{}{}", sc.prefix, id.name),
                class: String::new(),
                class_known: false,
                args: Vec::new(),
                span: id.span,
                config_span: id.span,
            },
            (sc.serial, sc.position),
        ));
        let h = Handle {
            as_source: self.nodes.len() - 1,
            as_dest: self.nodes.len() - 1,
            span: id.span,
        };
        sc.names.insert(id.name.clone(), h);
        h
    }

    /// Makes a group's connections, in the enclosing scope, with `input`
    /// and `output` meaning the group's own ports while they are read.
    /// Returns its handle and how many input and output ports its inside
    /// uses.
    fn group(&mut self, g: &'s Group, span: Span, sc: &mut Scope<'_, 's>) -> (Handle, (u32, u32)) {
        let (input, output) = self.tunnels(&format!("{}group@{}", sc.prefix, sc.position - 2), span);
        let first_edge = self.edges.len();
        let outer_in = sc.names.insert("input".into(), pseudo(input, usize::MAX));
        let outer_out = sc.names.insert("output".into(), pseudo(usize::MAX, output));
        self.connections(&g.stmts, sc);
        for (name, outer) in [("input", outer_in), ("output", outer_out)] {
            match outer {
                Some(h) => sc.names.insert(name.into(), h),
                None => sc.names.remove(name),
            };
        }
        // Only the group's own connections use its tunnels from inside.
        let inside = &self.edges[first_edge..];
        let used = |f: &dyn Fn(&FlatConnection) -> Option<u32>| inside.iter().filter_map(f).max().map_or(0, |p| p + 1);
        let n_in = used(&|e| (e.from.element == input).then_some(e.from.port));
        let n_out = used(&|e| (e.to.element == output).then_some(e.to.port));
        let h = Handle {
            as_source: output,
            as_dest: input,
            span,
        };
        (h, (n_in, n_out))
    }

    /// The input and output tunnels of a group `owner`.
    fn tunnels(&mut self, owner: &str, span: Span) -> (usize, usize) {
        for input in [true, false] {
            self.nodes.push(Node::Tunnel {
                owner: owner.to_string(),
                input,
                span,
            });
        }
        (self.nodes.len() - 2, self.nodes.len() - 1)
    }

    fn require(&mut self, reqs: &[Requirement]) {
        for r in reqs.iter().filter(|r| !r.library) {
            if !self.env.provides.contains(&r.name.as_str()) && !self.provided.contains(&r.name) {
                let mut d = Diagnostic::error(r.span, format!("requirement '{}' is not available", r.name));
                d = d.with_note(None, format!("Switchyard provides: {}", self.env.provides.join(", ")));
                self.diags.push(d);
            }
        }
    }

    /// Gives every placeholder of scope `sc` its class, in order, now that
    /// the scope's connections (`self.edges[first_edge..]`) say how many
    /// ports each one connects; expands the compounds among them.
    fn resolve(&mut self, sc: &Scope<'_, 's>, first_edge: usize) {
        let last_edge = self.edges.len();
        // Click's count: one more than the highest port connected.
        let mut used: HashMap<usize, (u32, u32)> = HashMap::new();
        for e in &self.edges[first_edge..last_edge] {
            let to = used.entry(e.to.element).or_default();
            to.0 = to.0.max(e.to.port.saturating_add(1));
            let from = used.entry(e.from.element).or_default();
            from.1 = from.1.max(e.from.port.saturating_add(1));
        }
        // A compound's placeholder becomes its input tunnel; the scope's
        // edges out of it move to its output tunnel.
        let mut moved: HashMap<usize, usize> = HashMap::new();
        for p in &sc.pending {
            let ports = used.get(&p.node).copied().unwrap_or_default();
            let order = (sc.serial, sc.positions.get(&p.node).copied().unwrap_or(usize::MAX));
            let class = match p.inline {
                Some(_) => None,
                None => self.lookup(p.env, &p.class.name),
            };
            let script = [Some(p.class.name.as_str()), class_name(&class)]
                .into_iter()
                .flatten()
                .any(|n| self.env.scripts.contains(&n));
            let args = self.args(p.config, script, sc.vars);
            match self.choose(p, class, ports, &args) {
                Choice::Compound {
                    body,
                    env,
                    class,
                    report_args,
                } => {
                    self.nodes.push(Node::Tunnel {
                        owner: p.name.clone(),
                        input: false,
                        span: p.span,
                    });
                    let output = self.nodes.len() - 1;
                    self.nodes[p.node] = Node::Tunnel {
                        owner: p.name.clone(),
                        input: true,
                        span: p.span,
                    };
                    moved.insert(p.node, output);
                    let compound = Instance {
                        name: &p.name,
                        span: p.span,
                        class: &class,
                        tunnels: (p.node, output),
                    };
                    self.expand(compound, body, env, args, report_args, sc.vars);
                }
                Choice::Primitive(class) => self.element(p, class, args, order),
                Choice::Broken => {
                    self.nodes[p.node] = Node::Element(
                        FlatElement {
                            name: p.name.clone(),
                            class: p.class.name.clone(),
                            class_known: false,
                            args,
                            span: p.span,
                            config_span: p.config.map_or(p.class.span, |c| c.span),
                        },
                        order,
                    );
                }
            }
        }
        if !moved.is_empty() {
            for e in &mut self.edges[first_edge..last_edge] {
                if let Some(&output) = moved.get(&e.from.element) {
                    e.from.element = output;
                }
            }
        }
    }

    /// Click's choice of a class for one element (`Lexer::Compound::
    /// resolve`): a primitive is itself; a compound's versions are tried
    /// in order, then, past a `...`, the versions of the class it extends,
    /// and so on. The first version whose ports equal those the element
    /// connects and whose parameters take its arguments wins; reaching a
    /// primitive at the end of the chain takes it, whatever the arguments.
    /// A lone version that takes the arguments is used whatever its ports
    /// (their errors say what is wrong); otherwise no match is an error.
    fn choose(&mut self, p: &Pending<'s>, class: Option<Class>, ports: (u32, u32), args: &[FlatArg]) -> Choice<'s> {
        if let Some(body) = p.inline {
            return Choice::Compound {
                body,
                env: p.env,
                class: "Compound".into(),
                report_args: true,
            };
        }
        let first = match class {
            None => return Choice::Primitive(p.class.name.clone()),
            Some(Class::Primitive(name)) => return Choice::Primitive(name),
            Some(Class::Compound(def)) => def,
        };
        let name = self.defs[first].name.name.clone();
        let mut candidates: Vec<(&'s Compound, ClassEnv)> = Vec::new();
        let mut closest = None;
        let mut at = Some(first);
        'chain: while let Some(def) = at {
            let DefKind::Compound {
                alternatives,
                next,
                env,
            } = &self.defs[def].kind
            else {
                break;
            };
            let (alternatives, next, env) = (*alternatives, next.clone(), *env);
            for alt in alternatives {
                if candidates.len() == MAX_VERSIONS {
                    break 'chain;
                }
                candidates.push((alt, env));
                let binds = bind(&alt.formals, args.to_vec()).1.is_none();
                if binds && self.signature(alt) == ports {
                    return Choice::Compound {
                        body: alt,
                        env,
                        class: name,
                        report_args: true,
                    };
                }
                if binds {
                    closest = Some((alt, env));
                }
            }
            at = match next {
                Some(Class::Compound(def)) => Some(def),
                Some(Class::Primitive(primitive)) => return Choice::Primitive(primitive),
                None => None,
            };
        }
        if candidates.is_empty() {
            return Choice::Broken;
        }
        if candidates.len() > 1 {
            self.no_match(p, &name, &candidates, ports, args.len());
        }
        let (body, env) = if candidates.len() == 1 {
            candidates[0]
        } else {
            closest.unwrap_or(candidates[0])
        };
        Choice::Compound {
            body,
            env,
            class: name,
            // A lone version's own argument error says why it does not
            // fit; after a "no match" the version is expanded quietly, so
            // that its ports exist.
            report_args: candidates.len() == 1,
        }
    }

    /// Click's "no match" error, listing the versions tried.
    fn no_match(
        &mut self,
        p: &Pending<'s>,
        name: &str,
        candidates: &[(&'s Compound, ClassEnv)],
        ports: (u32, u32),
        nargs: usize,
    ) {
        let mut d = Diagnostic::error(
            p.span,
            format!("no match for '{}'", signature(name, None, nargs, ports)),
        )
        .with_note(None, "candidates are:");
        for (alt, _) in candidates.iter().take(MAX_CANDIDATES_SHOWN) {
            let sig = self.signature(alt);
            d = d.with_note(
                Some(alt.span),
                format!("  {}", signature(name, Some(&alt.formals), 0, sig)),
            );
        }
        if candidates.len() > MAX_CANDIDATES_SHOWN {
            d = d.with_note(None, format!("  and {} more", candidates.len() - MAX_CANDIDATES_SHOWN));
        }
        let (ins, outs) = ports;
        self.diags.push(d.with_help(format!(
            "a version is chosen by its parameters and by its ports: '{}' connects {ins} input(s) and {outs} \
             output(s) here",
            p.name
        )));
    }

    /// How many ports a compound version's inside uses, cached.
    fn signature(&mut self, alt: &'s Compound) -> (u32, u32) {
        let key = alt as *const Compound as usize;
        *self.signatures.entry(key).or_insert_with(|| ports_used(&alt.stmts))
    }

    /// Makes placeholder `p` the primitive element `class`.
    fn element(&mut self, p: &Pending<'s>, class: String, args: Vec<FlatArg>, order: Order) {
        let known = self.env.classes.contains(&class.as_str());
        if !known {
            let mut d = Diagnostic::error(p.class.span, format!("unknown element class '{class}'"));
            if let Some((note, help)) = self.too_late(p.env, &class) {
                d.notes.push(note);
                d = d.with_help(help);
            } else if let Some(n) = nearest(&class, self.class_names(p.env)) {
                d = d.with_help(format!("did you mean '{n}'?"));
            }
            self.diags.push(d);
        }
        let config_span = p.config.map_or(p.class.span, |c| c.span);
        self.count_element(p.span);
        self.nodes[p.node] = Node::Element(
            FlatElement {
                name: p.name.clone(),
                class,
                class_known: known,
                args,
                span: p.span,
                config_span,
            },
            order,
        );
    }

    /// Arguments and definitions passed `config_bytes`: one error, and
    /// the expansion stops.
    fn bytes_exceeded(&mut self, span: Span) {
        if self.too_big {
            return;
        }
        self.too_big = true;
        let limit = self.env.limits.config_bytes;
        self.diags.push(Diagnostic::error(
            span,
            format!(
                "element arguments expand to more than {limit} bytes {}",
                Exceeded("config_bytes", limit as u64)
            ),
        ));
    }

    /// Counts one more element (or compound instance) against the
    /// `elements` limit; false, with one error, once it is passed.
    fn count_element(&mut self, span: Span) -> bool {
        self.elements += 1;
        if self.elements <= self.env.limits.elements {
            return true;
        }
        if !self.too_big {
            self.too_big = true;
            let limit = self.env.limits.elements;
            self.diags.push(Diagnostic::error(
                span,
                format!(
                    "the configuration expands to more than {limit} elements {}",
                    Exceeded("elements", limit as u64)
                ),
            ));
        }
        false
    }

    /// The arguments of a configuration, variables substituted. `script`:
    /// the element's own `$x` are its business, not undefined variables.
    fn args(&mut self, config: Option<&ConfigText>, script: bool, vars: &HashMap<String, String>) -> Vec<FlatArg> {
        let Some(config) = config else {
            return Vec::new();
        };
        let base = config.span.start as usize;
        split_args(&config.text)
            .into_iter()
            .flat_map(|a| {
                let span = Span::new(config.span.file, base + a.start, base + a.end);
                if self.too_big {
                    // A limit was hit: stop growing (a compound that
                    // doubles its argument would otherwise keep going).
                    return vec![FlatArg {
                        text: String::new(),
                        span,
                    }];
                }
                let budget = self.env.limits.config_bytes.saturating_sub(self.arg_bytes);
                let Some((text, undefined)) = substitute_within(a.text, |n| vars.get(n).map(String::as_str), budget)
                else {
                    self.bytes_exceeded(span);
                    return vec![FlatArg {
                        text: String::new(),
                        span,
                    }];
                };
                self.arg_bytes += text.len();
                for u in undefined.into_iter().filter(|_| !script) {
                    let mut d = Diagnostic::error(span, format!("undefined variable '${}'", u.name));
                    if let Some(n) = nearest(&u.name, vars.keys().map(String::as_str)) {
                        d = d.with_help(format!("did you mean '${n}'?"));
                    } else if u.braced {
                        d = d.with_help(format!(
                            "define it with define(${0} VALUE) or on the command line as {0}=VALUE, \
                             or give a default: ${{{0}-VALUE}}",
                            u.name
                        ));
                    } else {
                        d = d.with_help(format!(
                            "define it with define(${0} VALUE) or on the command line as {0}=VALUE",
                            u.name
                        ));
                    }
                    self.diags.push(d);
                }
                // Click substitutes into the text and then splits it, so a
                // value with commas (a compound's `__REST__`) is several
                // arguments, and an empty one none.
                if a.text.contains('$') {
                    let pieces: Vec<FlatArg> = split_args(&text)
                        .into_iter()
                        .map(|p| FlatArg {
                            text: p.text.to_string(),
                            span,
                        })
                        .collect();
                    return pieces;
                }
                vec![FlatArg { text, span }]
            })
            .collect()
    }

    /// Expands one version of a compound for one element.
    fn expand(
        &mut self,
        at: Instance<'_>,
        body: &'s Compound,
        env: ClassEnv,
        args: Vec<FlatArg>,
        report_args: bool,
        vars: &HashMap<String, String>,
    ) {
        let Instance {
            name,
            span,
            class: class_name,
            tunnels,
        } = at;
        let limits = self.env.limits;
        // A compound instance counts as an element: compounds that make
        // no element of their own must not expand without bound either.
        if !self.too_big && self.depth < limits.nesting {
            self.count_element(span);
        }
        if self.too_big || self.depth >= limits.nesting {
            if !self.too_big {
                self.too_big = true;
                self.diags.push(Diagnostic::error(
                    span,
                    format!(
                        "compound element class '{class_name}' nested more than {} deep {}",
                        limits.nesting,
                        Exceeded("nesting", limits.nesting as u64)
                    ),
                ));
            }
            return;
        }
        let mut inner_vars = vars.clone();
        let (values, problem) = bind(&body.formals, args);
        if let Some(why) = problem.filter(|_| report_args) {
            self.diags
                .push(Diagnostic::error(span, format!("'{name} :: {class_name}' {why}")));
        }
        inner_vars.extend(values);
        self.depth += 1;
        self.scope(&body.stmts, &format!("{name}/"), &inner_vars, Some(env), Some(tunnels));
        self.depth -= 1;
    }

    fn connect(&mut self, left: &[Resolved], right: &[Resolved], kind: ArrowKind, arrow: Span) {
        let sides = [
            left.iter()
                .map(|(_, item, implied)| port_spec(item, *implied, true))
                .collect(),
            right
                .iter()
                .map(|(_, item, implied)| port_spec(item, *implied, false))
                .collect(),
        ];
        let pairs = match pair_ports(sides, kind) {
            Ok(pairs) => pairs,
            Err(e) => {
                let d = match e {
                    PairError::TwoExpandable => {
                        Diagnostic::error(arrow, "at most one expandable port list ('[]', '[n, ]') per connection")
                    }
                    PairError::NeedsDoubleArrow => Diagnostic::error(arrow, "many-to-many connections require '=>'")
                        .with_help("use '=>' to connect the lists element by element"),
                    PairError::Mismatch(m) => Diagnostic::error(arrow, format!("connection mismatch: {m}")),
                };
                self.diags.push(d);
                return;
            }
        };
        for (l, fp, r, tp) in pairs {
            let (Some(lh), Some(rh)) = (left[l].0, right[r].0) else {
                continue;
            };
            let (from, to) = (lh.as_source, rh.as_dest);
            if from == usize::MAX || to == usize::MAX {
                self.diags.push(Diagnostic::error(
                    arrow,
                    "'input' can only be used as a source and 'output' as a destination",
                ));
                continue;
            }
            self.edges.push(FlatConnection {
                from: PortRef {
                    element: from,
                    port: fp,
                },
                to: PortRef { element: to, port: tp },
                span: arrow,
            });
        }
    }

    /// Splices out tunnels and renumbers the real elements. Edges are
    /// indexed by endpoint, so the work is proportional to the edges each
    /// tunnel touches.
    fn finish(&mut self) -> FlatConfig {
        let mut edges: Vec<Option<FlatConnection>> = std::mem::take(&mut self.edges).into_iter().map(Some).collect();
        let mut into: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut out_of: HashMap<usize, Vec<usize>> = HashMap::new();
        for (k, e) in edges.iter().enumerate() {
            let e = e.as_ref().expect("all present");
            into.entry(e.to.element).or_default().push(k);
            out_of.entry(e.from.element).or_default().push(k);
        }
        for t in 0..self.nodes.len() {
            let Node::Tunnel { owner, input, span } = &self.nodes[t] else {
                continue;
            };
            let ins: Vec<FlatConnection> = into
                .remove(&t)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|k| edges[k].take())
                .collect();
            let outs: Vec<FlatConnection> = out_of
                .remove(&t)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|k| edges[k].take())
                .collect();
            if !*input {
                // Used as a source from outside, but nothing inside leads
                // to that port.
                for o in outs.iter().filter(|o| !ins.iter().any(|i| i.to.port == o.from.port)) {
                    self.diags.push(
                        Diagnostic::error(o.span, format!("'{owner}' has no output {}", o.from.port))
                            .with_note(Some(*span), format!("'{owner}' declared here")),
                    );
                }
            }
            for i in &ins {
                let mut through = outs.iter().filter(|o| o.from.port == i.to.port).peekable();
                if through.peek().is_none() {
                    let side = if *input { "input" } else { "output" };
                    self.diags.push(
                        Diagnostic::error(i.span, format!("'{owner}' has no {side} {}", i.to.port))
                            .with_note(Some(*span), format!("'{owner}' declared here")),
                    );
                }
                for o in through {
                    let k = edges.len();
                    edges.push(Some(FlatConnection {
                        from: i.from,
                        to: o.to,
                        span: i.span,
                    }));
                    into.entry(o.to.element).or_default().push(k);
                    out_of.entry(i.from.element).or_default().push(k);
                }
            }
        }
        let edges: Vec<FlatConnection> = edges.into_iter().flatten().collect();
        // Click's order: each scope's elements as written, the scopes in
        // the order they were expanded.
        let mut index = vec![usize::MAX; self.nodes.len()];
        let mut real: Vec<(Order, usize, FlatElement)> = std::mem::take(&mut self.nodes)
            .into_iter()
            .enumerate()
            .filter_map(|(i, node)| match node {
                Node::Element(e, order) => Some((order, i, e)),
                _ => None,
            })
            .collect();
        real.sort_by_key(|&(order, i, _)| (order, i));
        let mut elements = Vec::with_capacity(real.len());
        for (_, i, e) in real {
            index[i] = elements.len();
            elements.push(e);
        }
        let mut connections: Vec<FlatConnection> = edges
            .into_iter()
            .map(|e| FlatConnection {
                from: PortRef {
                    element: index[e.from.element],
                    port: e.from.port,
                },
                to: PortRef {
                    element: index[e.to.element],
                    port: e.to.port,
                },
                span: e.span,
            })
            .collect();
        connections.dedup_by(|a, b| a.from == b.from && a.to == b.to);
        FlatConfig {
            elements,
            connections,
            truncated: false,
        }
    }
}

/// A compound element being expanded: its full name and span, its class
/// name, and its input and output tunnels.
struct Instance<'a> {
    name: &'a str,
    span: Span,
    class: &'a str,
    tunnels: (usize, usize),
}

/// A primitive class's name.
fn class_name(class: &Option<Class>) -> Option<&str> {
    match class {
        Some(Class::Primitive(n)) => Some(n),
        _ => None,
    }
}

/// The ports written at one end of a connection for one element: none
/// (port 0; for a group, every port its inside uses), a list, or an
/// expandable list (`[]`, `[n, ]`).
struct PortSpec {
    numbers: Vec<u32>,
    expandable: bool,
}

/// Why the two sides of a connection cannot be paired port by port.
enum PairError {
    TwoExpandable,
    NeedsDoubleArrow,
    Mismatch(String),
}

fn port_spec(item: &ElementRef, implied: Option<(u32, u32)>, output: bool) -> PortSpec {
    let p = if output { &item.output } else { &item.input };
    // A group without ports on this side has them all: as if written
    // [0, 1, ..., n - 1].
    let all = implied.map_or(0, |(i, o)| if output { o } else { i });
    PortSpec {
        numbers: p.as_ref().map_or_else(|| (0..all).collect(), |p| p.numbers.clone()),
        expandable: p.as_ref().is_some_and(|p| p.expandable),
    }
}

/// Pairs the outputs of the elements of `sides[0]` with the inputs of
/// those of `sides[1]`, Click's rule: a side with more than one port in
/// all (or an expandable list) steps through them while the other stays;
/// both stepping needs '=>' and equal counts. Returns (left element,
/// output port, right element, input port) for each connection.
fn pair_ports(mut sides: [Vec<PortSpec>; 2], kind: ArrowKind) -> Result<Vec<(usize, u32, usize, u32)>, PairError> {
    let analyze = |s: &[PortSpec]| {
        let min: usize = s.iter().map(|x| x.numbers.len().max(1)).sum();
        (min, s.iter().filter(|x| x.expandable).count())
    };
    let (mut min, mut exp) = ([0; 2], [0; 2]);
    for k in 0..2 {
        (min[k], exp[k]) = analyze(&sides[k]);
    }
    if exp[0] + exp[1] > 1 {
        return Err(PairError::TwoExpandable);
    }
    if kind == ArrowKind::Double {
        // A lone element without ports expands port by port
        // (`t => a, b` is t[0] -> a, t[1] -> b).
        for k in 0..2 {
            if min[k] == 1 && min[1 - k] > 1 {
                if let Some(s) = sides[k].first_mut().filter(|s| s.numbers.is_empty()) {
                    s.numbers.push(0);
                    s.expandable = true;
                    exp[k] = 1;
                }
            }
        }
    }
    let mut step = [min[0] > 1 || exp[0] > 0, min[1] > 1 || exp[1] > 0];
    let mut extra = [0usize; 2];
    for k in 0..2 {
        if exp[k] > 0 {
            extra[k] = min[1 - k].saturating_sub(min[k]);
        }
    }
    if step[0] && step[1] {
        if kind == ArrowKind::Single {
            return Err(PairError::NeedsDoubleArrow);
        }
        let (outs, ins) = (min[0], min[1]);
        let mismatch = match (exp[0] > 0, exp[1] > 0) {
            (false, false) if outs != ins => Some(format!("{outs} outputs connected to {ins} inputs")),
            (true, false) if ins < outs => Some(format!("{outs} or more outputs connected to {ins} inputs")),
            (false, true) if outs < ins => Some(format!("{outs} outputs connected to {ins} or more inputs")),
            _ => None,
        };
        if let Some(m) = mismatch {
            return Err(PairError::Mismatch(m));
        }
    } else if !step[0] && !step[1] {
        step[1] = true;
    }
    let port_at = |s: &PortSpec, pos: usize| -> u32 {
        match s.numbers.len() {
            0 => 0,
            n if pos < n => s.numbers[pos],
            n => s.numbers[n - 1].saturating_add((pos - (n - 1)) as u32),
        }
    };
    let mut pairs = Vec::new();
    let (mut at, mut pos) = ([0usize; 2], [0usize; 2]);
    while at[0] < sides[0].len() && at[1] < sides[1].len() {
        let (l, r) = (&sides[0][at[0]], &sides[1][at[1]]);
        pairs.push((at[0], port_at(l, pos[0]), at[1], port_at(r, pos[1])));
        for k in 0..2 {
            if !step[k] {
                continue;
            }
            let s = &sides[k][at[k]];
            pos[k] += 1;
            if pos[k] < s.numbers.len() {
                continue;
            }
            if s.expandable && extra[k] > 0 {
                extra[k] -= 1;
                continue;
            }
            at[k] += 1;
            pos[k] = 0;
        }
    }
    Ok(pairs)
}

fn is_named(item: &ElementRef, name: &str) -> bool {
    matches!(&item.target, Target::Name(id) if id.name == name)
}

/// An element of a connection and, for a group, the ports its inside
/// uses (inputs, outputs).
type Implied<'a> = (&'a ElementRef, Option<(u32, u32)>);

/// How many ports the inside of a compound version (or group) uses of its
/// own `input` as a source and of its own `output` as a destination, one
/// more than the highest: Click's `[N inputs, M outputs]` signature, by
/// which versions are chosen. Read from the text, as Click does, without
/// expanding anything.
fn ports_used(stmts: &[Stmt]) -> (u32, u32) {
    let mut used = (0u32, 0u32);
    for stmt in stmts {
        let Stmt::Connection(c) = stmt else { continue };
        // Each element with, for a group, the ports it implies.
        let sections: Vec<Vec<Implied>> = c
            .sections
            .iter()
            .map(|s| {
                s.iter()
                    .map(|item| {
                        let implied = match &item.target {
                            Target::Group(g) => Some(ports_used(&g.stmts)),
                            _ => None,
                        };
                        (item, implied)
                    })
                    .collect()
            })
            .collect();
        for (k, (kind, _)) in c.arrows.iter().enumerate() {
            let (left, right) = (&sections[k], &sections[k + 1]);
            let sides = [
                left.iter().map(|(i, imp)| port_spec(i, *imp, true)).collect(),
                right.iter().map(|(i, imp)| port_spec(i, *imp, false)).collect(),
            ];
            let Ok(pairs) = pair_ports(sides, *kind) else {
                continue;
            };
            for (l, lp, r, rp) in pairs {
                if is_named(left[l].0, "input") {
                    used.0 = used.0.max(lp.saturating_add(1));
                }
                if is_named(right[r].0, "output") {
                    used.1 = used.1.max(rp.saturating_add(1));
                }
            }
        }
    }
    used
}

/// Click's signature of a compound version (with `formals`) or of an
/// element looking for one (with `nargs` arguments):
/// `G(<arg>, LIMIT, ...)[1 input, 2 outputs]`,
/// `G[2 arguments, 1 input, 1 output]`.
fn signature(name: &str, formals: Option<&[Formal]>, nargs: usize, (ins, outs): (u32, u32)) -> String {
    let count = |n: u64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    let mut s = name.to_string();
    if let Some(f) = formals.filter(|f| !f.is_empty()) {
        let parts: Vec<&str> = f
            .iter()
            .map(|f| match &f.keyword {
                None => "<arg>",
                Some(k) if k.name == "__REST__" => "...",
                Some(k) => k.name.as_str(),
            })
            .collect();
        s.push('(');
        s.push_str(&parts.join(", "));
        s.push(')');
    }
    s.push('[');
    if formals.is_none() && nargs > 0 {
        s.push_str(&count(nargs as u64, "argument"));
        s.push_str(", ");
    }
    s.push_str(&count(u64::from(ins), "input"));
    s.push_str(", ");
    s.push_str(&count(u64::from(outs), "output"));
    s.push(']');
    s
}

/// Binds a compound's arguments to its parameters, Click's way:
/// positional arguments first, filling the positional parameters in
/// order; an argument `KEYWORD value` fills the parameter `KEYWORD $var`
/// (every keyword parameter is required); `__REST__ $var` takes what is
/// left, joined with ", ". Returns the (variable, value) pairs it could
/// bind (missing ones empty), and the first problem if any.
fn bind(formals: &[Formal], args: Vec<FlatArg>) -> (Vec<(String, String)>, Option<String>) {
    let positional: Vec<&Formal> = formals.iter().filter(|f| f.keyword.is_none()).collect();
    let is_rest = |f: &Formal| f.keyword.as_ref().is_some_and(|k| k.name == "__REST__");
    let keyword = |k: &str| {
        formals
            .iter()
            .find(|f| !is_rest(f) && f.keyword.as_ref().is_some_and(|kw| kw.name == k))
    };
    let mut problem: Option<String> = None;
    if formals.iter().all(|f| f.keyword.is_none()) && args.len() != formals.len() {
        problem = Some(format!("takes {} argument(s), {} given", formals.len(), args.len()));
    }
    let mut values: Vec<(String, String)> = Vec::new();
    let mut next_positional = 0;
    let mut keywords_seen = false;
    let mut left: Vec<String> = Vec::new();
    for a in args {
        let text = a.text.trim();
        let (word, value) = text
            .split_once(char::is_whitespace)
            .map_or((text, ""), |(w, v)| (w, v.trim_start()));
        if let Some(f) = keyword(word) {
            if values.iter().any(|(v, _)| *v == f.var.name) {
                problem.get_or_insert(format!("keyword {word} given twice"));
            }
            values.push((f.var.name.clone(), value.to_string()));
            keywords_seen = true;
        } else if next_positional < positional.len() {
            if keywords_seen {
                problem.get_or_insert(format!("positional argument '{text}' after keyword arguments"));
            }
            values.push((positional[next_positional].var.name.clone(), text.to_string()));
            next_positional += 1;
        } else {
            left.push(text.to_string());
        }
    }
    if next_positional < positional.len() {
        let missing: Vec<String> = positional[next_positional..]
            .iter()
            .map(|f| format!("${}", f.var.name))
            .collect();
        problem.get_or_insert(format!("missing argument(s) {}", missing.join(", ")));
    }
    let missing: Vec<&str> = formals
        .iter()
        .filter(|f| !is_rest(f) && f.keyword.is_some() && !values.iter().any(|(n, _)| *n == f.var.name))
        .filter_map(|f| f.keyword.as_ref().map(|k| k.name.as_str()))
        .collect();
    if !missing.is_empty() {
        problem.get_or_insert(format!("missing keyword argument(s) {}", missing.join(", ")));
    }
    match formals.iter().find(|f| is_rest(f)) {
        Some(r) => values.push((r.var.name.clone(), left.join(", "))),
        None if !left.is_empty() => {
            let keywords: Vec<&str> = formals
                .iter()
                .filter_map(|f| f.keyword.as_ref())
                .map(|k| k.name.as_str())
                .collect();
            let keywords = if keywords.is_empty() {
                "none".to_string()
            } else {
                keywords.join(", ")
            };
            problem.get_or_insert(format!("has no parameter for '{}' (keywords: {keywords})", left[0]));
        }
        None => {}
    }
    // Missing ones are defined empty, so the body adds no errors of its own
    // about undefined variables.
    for f in formals {
        if !values.iter().any(|(n, _)| *n == f.var.name) {
            values.push((f.var.name.clone(), String::new()));
        }
    }
    (values, problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SourceMap;

    const CLASSES: &[&str] = &[
        "Counter",
        "Discard",
        "Idle",
        "InfiniteSource",
        "Print",
        "Queue",
        "Script",
        "Tee",
    ];

    fn run(text: &str, defines: &[(&str, &str)]) -> (FlatConfig, Vec<Diagnostic>) {
        let mut map = SourceMap::new();
        let f = map.add("t.click", text);
        let (stmts, mut diags) = crate::parse(&map, f);
        let defines: Vec<(String, String)> = defines.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let env = Environment {
            classes: CLASSES,
            provides: &["switchyard"],
            defines: &defines,
            scripts: &["Script"],
            limits: Limits::default(),
        };
        let (flat, more) = flatten(&stmts, &env);
        diags.extend(more);
        (flat, diags)
    }

    fn ok(text: &str) -> FlatConfig {
        let (flat, diags) = run(text, &[]);
        assert!(diags.is_empty(), "{diags:?}");
        flat
    }

    fn edges(flat: &FlatConfig) -> Vec<String> {
        flat.connections
            .iter()
            .map(|c| {
                format!(
                    "{}[{}]->[{}]{}",
                    flat.elements[c.from.element].name, c.from.port, c.to.port, flat.elements[c.to.element].name
                )
            })
            .collect()
    }

    #[test]
    fn keyword_parameters_bind_by_keyword_and_rest_takes_the_remainder() {
        let flat = ok(
            "elementclass Src { $len, LIMIT $n, __REST__ $more | input -> c :: Counter($len, $n, $more) -> output; }
                       Idle -> s :: Src(64, a, LIMIT 5, b c) -> Discard;
                       Idle -> t :: Src(60, LIMIT 7) -> Discard;",
        );
        let args = |name: &str| {
            let e = &flat.elements[flat.find(name).unwrap()];
            e.args.iter().map(|a| a.text.clone()).collect::<Vec<_>>().join(" | ")
        };
        // `a` and `b c` are left over for __REST__; LIMIT binds by name.
        // Substituted, they are two arguments again (Click splits after
        // substituting), and no rest is no argument.
        assert_eq!(args("s/c"), "64 | 5 | a | b c");
        assert_eq!(args("t/c"), "60 | 7");
        let (_, diags) = run(
            "elementclass Src { $len, LIMIT $n | input -> Counter($len, $n) -> output; }
             Idle -> Src(64) -> Discard; Idle -> Src(64, LIMIT 1, LIMIT 2) -> Discard;
             Idle -> Src(64, LIMIT 1, BURST 2) -> Discard; Idle -> Src(LIMIT 1) -> Discard;",
            &[],
        );
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "'Src@2 :: Src' missing keyword argument(s) LIMIT",
                "'Src@5 :: Src' keyword LIMIT given twice",
                "'Src@8 :: Src' has no parameter for 'BURST 2' (keywords: LIMIT)",
                "'Src@11 :: Src' missing argument(s) $len",
            ]
        );
        let (_, diags) = run("elementclass X { LIMIT $n, $len | input -> output; }", &[]);
        assert_eq!(diags[0].message, "positional parameter after keyword parameters");
    }

    #[test]
    fn inline_compounds_expand_in_place() {
        let flat = ok("Idle -> { input -> c :: Counter -> output } -> Discard;
                       x :: { $v | input -> Print($v) -> output }(hello);
                       Idle -> x -> Discard;");
        let mut e = edges(&flat);
        e.sort();
        // `x` is the 4th element of the file: the next ones are @5, @6.
        assert_eq!(
            e,
            [
                "Compound@2/c[0]->[0]Discard@3",
                "Idle@1[0]->[0]Compound@2/c",
                "Idle@5[0]->[0]x/Print@1",
                "x/Print@1[0]->[0]Discard@6",
            ]
        );
        let print = &flat.elements[flat.find("x/Print@1").unwrap()];
        assert_eq!(print.args[0].text, "hello");
        let (_, diags) = run("Idle -> { input -> Counter -> output -> Discard;", &[]);
        assert!(!diags.is_empty(), "an unclosed inline compound is an error");
    }

    #[test]
    fn port_lists_and_expandable_ports_connect_as_click_does() {
        let flat = ok("t :: Tee(3); s :: Tee(2); m :: Tee;
                       t[0, 2] => [1, 0]s;
                       s[] => a :: Discard, b :: Discard;
                       t[1] -> [0] m;
                       m, Idle, Idle => [1, ]q :: Counter;");
        let mut e = edges(&flat);
        e.sort();
        assert_eq!(
            e,
            [
                "Idle@6[0]->[2]q",
                "Idle@7[0]->[3]q",
                "m[0]->[1]q",
                "s[0]->[0]a",
                "s[1]->[0]b",
                "t[0]->[1]s",
                "t[1]->[0]m",
                "t[2]->[0]s",
            ]
        );
        let (_, diags) = run(
            "t :: Tee(2); t[] => [1, ]Discard; t[0, 1] -> a :: Discard, b :: Discard;",
            &[],
        );
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "at most one expandable port list ('[]', '[n, ]') per connection",
                "many-to-many connections require '=>'",
            ]
        );
        let (_, diags) = run("t :: Tee(3); t[0, 1, 2] => a :: Discard, b :: Discard;", &[]);
        assert_eq!(diags[0].message, "connection mismatch: 3 outputs connected to 2 inputs");
        let (_, diags) = run("t :: Tee(2); t[0 1] -> Discard;", &[]);
        assert!(diags[0].message.contains("',' or ']' in a port list"), "{:?}", diags[0]);
    }

    #[test]
    fn groups_share_the_scope_and_imply_their_ports() {
        let flat = ok("src :: Idle;
                       src -> ( input -> a :: Counter -> output; input -> b :: Counter -> output ) -> d :: Discard;
                       t :: Tee(2);
                       t => ( input[0] -> x :: Counter -> output; input[1] -> y :: Counter -> [1]output ) => e :: Discard, f :: Discard;
                       Idle -> [1]x;");
        let mut e = edges(&flat);
        e.sort();
        assert_eq!(
            e,
            [
                "Idle@16[0]->[1]x",
                "a[0]->[0]d",
                "b[0]->[0]d",
                "src[0]->[0]a",
                "src[0]->[0]b",
                "t[0]->[0]x",
                "t[1]->[0]y",
                "x[0]->[0]e",
                "y[0]->[0]f",
            ],
            "a group's elements are the scope's: x is named from outside; a group counts as three elements"
        );
        let (_, diags) = run("Idle -> ( input -> Discard; ) -> Discard;", &[]);
        assert!(diags.iter().any(|d| d.message.contains("has no output 0")), "{diags:?}");
        let (_, diags) = run("Idle -> ( input -> Discard;", &[]);
        assert!(
            diags
                .iter()
                .any(|d| d.message.contains("unterminated group: missing ')'")),
            "{diags:?}"
        );
    }

    #[test]
    fn overloaded_compounds_pick_the_version_that_takes_the_arguments() {
        let flat = ok(
            "elementclass Q { input -> q1 :: Queue -> output || $n | input -> q2 :: Queue($n) -> output }
                       elementclass Tee { $a, $b, $c | input -> Counter -> output || ... }
                       Idle -> a :: Q -> Discard; Idle -> b :: Q(5) -> Discard;
                       Idle -> t :: Tee(2) -> Discard; Idle -> u :: Tee(1, 2, 3) -> Discard;",
        );
        let names: Vec<&str> = flat.elements.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"a/q1") && names.contains(&"b/q2"), "{names:?}");
        // `...`: Tee(2) matches no version, so it is the built-in Tee.
        let t = &flat.elements[flat.find("t").unwrap()];
        assert_eq!((t.class.as_str(), t.args[0].text.as_str()), ("Tee", "2"));
        assert!(names.contains(&"u/Counter@1"), "{names:?}");
        let (_, diags) = run(
            "elementclass Q { input -> output || $n | input -> output }
                              Idle -> Q(1, 2) -> Discard;",
            &[],
        );
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["no match for 'Q[2 arguments, 1 input, 1 output]'"]);
        let (_, diags) = run("elementclass Q { ... }", &[]);
        assert_eq!(diags[0].message, "'...' should occur last, after one or more compounds");
    }

    #[test]
    fn provide_satisfies_require() {
        ok("require(fastclick); provide(fastclick); Idle -> Discard;");
        let (_, diags) = run("require(package fastclick); Idle -> Discard;", &[]);
        assert_eq!(diags[0].message, "requirement 'fastclick' is not available");
    }

    #[test]
    fn anonymous_elements_get_click_names() {
        let flat = ok("src :: InfiniteSource; src -> Tee(2) -> Discard; Tee@2[1] -> Discard;");
        let names: Vec<_> = flat.elements.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["src", "Tee@2", "Discard@3", "Discard@4"]);
        assert_eq!(
            edges(&flat),
            ["src[0]->[0]Tee@2", "Tee@2[0]->[0]Discard@3", "Tee@2[1]->[0]Discard@4"]
        );
    }

    #[test]
    fn declaration_inside_a_connection_and_forward_reference() {
        let flat = ok("a -> t :: Tee(2); a :: InfiniteSource; t[1] -> Discard; t -> Discard;");
        assert_eq!(flat.elements[flat.find("t").unwrap()].class, "Tee");
        assert_eq!(flat.connections.len(), 3);
    }

    #[test]
    fn element_lists_fan_in_and_out() {
        let flat = ok("a, b :: Idle; c :: Idle; a, b -> c; c -> a, b;");
        assert_eq!(edges(&flat), ["a[0]->[0]c", "b[0]->[0]c", "c[0]->[0]a", "c[0]->[0]b"]);
    }

    #[test]
    fn double_arrow_expands_ports() {
        let flat = ok("t :: Tee; x, y :: Idle; t => x, y; x, y => [0]t;");
        assert_eq!(edges(&flat)[..2], ["t[0]->[0]x".to_string(), "t[1]->[0]y".to_string()]);
        assert_eq!(edges(&flat)[2..], ["x[0]->[0]t".to_string(), "y[0]->[0]t".to_string()]);
        let (_, diags) = run("a, b :: Idle; c, d, e :: Idle; a, b => c, d, e;", &[]);
        assert!(diags[0]
            .message
            .contains("connection mismatch: 2 outputs connected to 3 inputs"));
    }

    #[test]
    fn compounds_flatten_with_slash_names_and_parameters() {
        let flat = ok(
            "elementclass Branch { $label | input -> c :: Counter -> Print($label) -> output; }
             src :: InfiniteSource; src -> b :: Branch(old) -> Discard;",
        );
        let names: Vec<_> = flat.elements.iter().map(|e| e.name.as_str()).collect();
        // A compound's elements come after the scope's, in Click's order.
        assert_eq!(names, ["src", "Discard@3", "b/c", "b/Print@2"]);
        assert_eq!(flat.elements[3].args[0].text, "old");
        assert_eq!(
            edges(&flat),
            ["b/c[0]->[0]b/Print@2", "src[0]->[0]b/c", "b/Print@2[0]->[0]Discard@3"]
        );
    }

    #[test]
    fn nested_compounds_and_passthrough() {
        let flat = ok("elementclass Wire { input -> output; }
             elementclass Pair { input -> w :: Wire -> c :: Counter -> output; }
             s :: InfiniteSource; s -> p :: Pair -> Discard;");
        assert_eq!(edges(&flat), ["p/c[0]->[0]Discard@3", "s[0]->[0]p/c"]);
    }

    #[test]
    fn defines_substitute_and_command_line_wins() {
        let text = "define($N 5, $L 64); s :: InfiniteSource(LIMIT $N, LENGTH $L);";
        let (flat, _) = run(text, &[("N", "100")]);
        assert_eq!(flat.elements[0].config(), "LIMIT 100, LENGTH 64");
        let (_, diags) = run("s :: InfiniteSource(LIMIT $NN); define($N 1);", &[]);
        assert_eq!(diags[0].message, "undefined variable '$NN'");
        assert_eq!(diags[0].help.as_deref(), Some("did you mean '$N'?"));
        // A script's own variables are its business, as in Click; defines
        // still reach into it.
        let (flat, diags) = run("define($N 5); Script(set x $N, print $x $(add $x 1), print ${y});", &[]);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(flat.elements[0].config(), "set x 5, print $x $(add $x 1), print ${y}");
    }

    #[test]
    fn errors_name_the_problem() {
        let (_, diags) = run("a :: Countr; a :: Idle; x -> Discard; require(fastclick);", &[]);
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "unknown element class 'Countr'",
                "redeclaration of element 'a'",
                "undeclared element 'x'",
                "requirement 'fastclick' is not available"
            ]
        );
        assert_eq!(diags[0].help.as_deref(), Some("did you mean 'Counter'?"));
        assert!(diags[1].notes[0].message.contains("previously declared"));
    }

    #[test]
    fn a_compound_that_doubles_its_argument_stops_at_the_byte_limit() {
        // A class is visible only after its definition: doubling takes a
        // chain of classes, each doubling what it passes on.
        let mut text = String::from("elementclass D0 { $a | input -> Idle($a) -> output; }\n");
        for k in 1..40 {
            text.push_str(&format!(
                "elementclass D{k} {{ $a | input -> D{}($a$a) -> output; }}\n",
                k - 1
            ));
        }
        text.push_str("Idle -> D39(xxxxxxxxxxxxxxxx) -> Idle;");
        let (flat, diags) = run(&text, &[]);
        assert!(
            diags.iter().any(|d| d.message.contains("--limit config_bytes=N")),
            "{diags:?}"
        );
        let total: usize = flat.elements.iter().flat_map(|e| &e.args).map(|a| a.text.len()).sum();
        assert!(total <= 2 * Limits::default().config_bytes);
    }

    #[test]
    fn a_compound_cannot_use_itself() {
        let (_, diags) = run(
            "elementclass D { $a | input -> D($a$a) -> output; } Idle -> D(x) -> Idle;",
            &[],
        );
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["unknown element class 'D'"]);
        assert_eq!(diags[0].notes[0].message, "element class 'D' is being defined here");
        let (_, diags) = run("elementclass A { input -> A -> A -> output; } Idle -> A -> Idle;", &[]);
        let msgs: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        // One error: the name's second use finds the placeholder.
        assert_eq!(msgs, ["undeclared element 'A'"]);
        assert!(
            diags[0].help.as_ref().unwrap().contains("cannot contain itself"),
            "{diags:?}"
        );
    }

    #[test]
    fn compounds_that_make_no_element_still_stop_at_the_element_limit() {
        let mut text = String::from("elementclass A0 { input -> output; }\n");
        for k in 1..60 {
            text.push_str(&format!(
                "elementclass A{k} {{ input -> A{} -> A{} -> output; }}\n",
                k - 1,
                k - 1
            ));
        }
        text.push_str("Idle -> A59 -> Idle;");
        let (_, diags) = run(&text, &[]);
        assert!(
            diags.iter().any(|d| d.message.contains("limit elements=100000")),
            "{diags:?}"
        );
    }

    #[test]
    fn one_substitution_cannot_build_a_huge_argument() {
        let text = format!(
            "define($a {}); elementclass D {{ $b | input -> Idle; Idle -> output; x :: Idle({}) }} Idle -> D(1) -> Idle;",
            "y".repeat(1 << 20),
            "$a".repeat(4000)
        );
        let (_, diags) = run(&text, &[]);
        assert!(
            diags.iter().any(|d| d.message.contains("limit config_bytes")),
            "{diags:?}"
        );
    }

    #[test]
    fn elements_past_the_limit_are_an_error_naming_it() {
        let text = "Idle;".repeat(100_001);
        let (_, diags) = run(&text, &[]);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0]
            .message
            .contains("more than 100000 elements (limit elements=100000"));
    }

    #[test]
    fn many_to_many_needs_double_arrow() {
        let (_, diags) = run("a, b :: Idle; c, d :: Idle; a, b -> c, d;", &[]);
        assert_eq!(diags[0].message, "many-to-many connections require '=>'");
    }

    fn messages(diags: &[Diagnostic]) -> Vec<&str> {
        diags.iter().map(|d| d.message.as_str()).collect()
    }

    fn names(flat: &FlatConfig) -> Vec<&str> {
        flat.elements.iter().map(|e| e.name.as_str()).collect()
    }

    /// Checked against Click 2.1: a redefinition changes the class for
    /// the uses after it only; a class is unknown before its definition,
    /// and inside a body only those defined before that body are seen.
    #[test]
    fn element_classes_are_positional_in_the_text() {
        let flat = ok("elementclass A { input -> c :: Counter -> output }
                       Idle -> a1 :: A -> Discard;
                       elementclass A { input -> q :: Queue -> output }
                       Idle -> a2 :: A -> Discard; Idle -> a3 :: A -> Discard;");
        assert_eq!(
            names(&flat),
            [
                "Idle@1",
                "Discard@3",
                "Idle@4",
                "Discard@6",
                "Idle@7",
                "Discard@9",
                "a1/c",
                "a2/q",
                "a3/q"
            ]
        );
        let (_, diags) = run(
            "Idle -> Foo -> Discard;\nelementclass Foo { input -> output }\nx :: Bar; elementclass Bar Idle;",
            &[],
        );
        assert_eq!(
            messages(&diags),
            ["undeclared element 'Foo'", "unknown element class 'Bar'"]
        );
        assert_eq!(
            diags[0].notes[0].message,
            "element class 'Foo' is defined here, after its use"
        );
        assert_eq!(diags[0].notes[0].span.map(|s| s.start), Some(37));
        let (_, diags) = run(
            "elementclass A { input -> B -> output } elementclass B { input -> output } Idle -> A -> Discard;",
            &[],
        );
        assert_eq!(messages(&diags), ["undeclared element 'B'"]);
        // A synonym means the class as it was where the synonym is written.
        let flat = ok("elementclass X { input -> c :: Counter -> output } elementclass Y X;
                       elementclass X { input -> q :: Queue -> output } Idle -> y :: Y -> Discard;");
        assert!(names(&flat).contains(&"y/c"), "{:?}", names(&flat));
    }

    /// `...` stands for the class of the same name defined before: a
    /// built-in, reached without checking its arguments, or an earlier
    /// compound whose versions are tried in turn (Click 2.1's choices).
    #[test]
    fn extensions_fall_back_to_the_class_defined_before() {
        let flat = ok("elementclass Tee { $a, $b | input -> c :: Counter -> output || ... }
                       Idle -> t1 :: Tee(1, 2) -> Discard; Idle -> t2 :: Tee(1) -> Discard;
                       Idle -> t3 :: Tee(1, 2) -> Discard; t3[1] -> Discard;");
        let class = |n: &str| flat.find(n).map(|i| flat.elements[i].class.as_str());
        assert_eq!(class("t1/c"), Some("Counter"));
        assert_eq!(class("t2"), Some("Tee"));
        // Two outputs connected: the compound's one output does not fit,
        // so the built-in Tee gets the arguments (and refuses them later).
        assert_eq!(class("t3"), Some("Tee"));
        assert_eq!(flat.elements[flat.find("t3").unwrap()].config(), "1, 2");
        let flat = ok("elementclass G { input -> c :: Counter -> output }
                       elementclass G { input -> t :: Tee(2) -> output; t[1] -> [1]output || ... }
                       Idle -> a :: G -> Discard; Idle -> b :: G -> Discard; b[1] -> Discard;");
        let mut e = edges(&flat);
        e.sort();
        assert_eq!(
            e,
            [
                "Idle@1[0]->[0]a/c",
                "Idle@4[0]->[0]b/t",
                "a/c[0]->[0]Discard@3",
                "b/t[0]->[0]Discard@6",
                "b/t[1]->[0]Discard@7"
            ]
        );
        let (_, diags) = run(
            "elementclass Baz { input -> output || ... }\nIdle -> Baz -> Discard;",
            &[],
        );
        assert_eq!(messages(&diags), ["cannot extend unknown element class 'Baz'"]);
        assert_eq!(diags[0].span.start, 38);
        let (_, diags) = run("elementclass Tee { input -> output || ... || input -> output }", &[]);
        assert_eq!(
            messages(&diags),
            ["'...' should occur last, after one or more compounds"]
        );
    }

    /// Each use takes the first version whose ports equal those it
    /// connects (counted over the whole scope, later statements too) and
    /// whose parameters take its arguments; Click 2.1's choices and
    /// messages.
    #[test]
    fn versions_are_chosen_by_arguments_and_ports() {
        let flat = ok("elementclass G { $a | input -> Print($a) -> output
                                      || $b | input -> t :: Tee(2) -> output; t[1] -> [1]output }
                       Idle -> g :: G(1) -> Discard; Idle -> h :: G(2) -> Discard; h[1] -> Discard;");
        let n = names(&flat);
        assert!(n.contains(&"g/Print@1") && n.contains(&"h/t"), "{n:?}");
        let (_, diags) = run(
            "elementclass G { $a | input -> Print($a) -> output
                             || $b | input -> t :: Tee(2) -> output; t[1] -> [1]output }
             Idle -> h :: G(2, 3) -> Discard;",
            &[],
        );
        assert_eq!(messages(&diags), ["no match for 'G[2 arguments, 1 input, 1 output]'"]);
        let notes: Vec<&str> = diags[0].notes.iter().map(|n| n.message.as_str()).collect();
        assert_eq!(
            notes,
            [
                "candidates are:",
                "  G(<arg>)[1 input, 1 output]",
                "  G(<arg>)[1 input, 2 outputs]"
            ]
        );
        // Keyword and rest parameters, and a version without parameters.
        let text = "elementclass G { $a, LIMIT $l, __REST__ $r | input -> Print($a) -> output ||\n \
                    input -> t :: Tee(2) -> output; t[1] -> [1]output;  }\nIdle -> G(1, 2) -> Discard;\n";
        let mut map = SourceMap::new();
        let f = map.add("config", text);
        let (stmts, _) = crate::parse(&map, f);
        let env = Environment {
            classes: CLASSES,
            provides: &[],
            defines: &[],
            scripts: &[],
            limits: Limits::default(),
        };
        let (_, diags) = flatten(&stmts, &env);
        assert_eq!(
            crate::render_click(&diags, &map),
            "config:3: no match for 'G[2 arguments, 1 input, 1 output]'\n\
             config:1: candidates are:\n\
             config:1:   G(<arg>, LIMIT, ...)[1 input, 1 output]\n\
             config:2:   G[1 input, 2 outputs]\n"
        );
        let rich = diags[0].render(&map);
        assert!(
            rich.starts_with("config:3:9: error: no match for 'G[2 arguments, 1 input, 1 output]'\n"),
            "{rich}"
        );
        assert!(rich.contains("config:2:2: note:   G[1 input, 2 outputs]\n"), "{rich}");
        // A lone version is used when its parameters take the arguments,
        // whatever its ports (their own errors follow); otherwise its own
        // argument error says why.
        let (_, diags) = run(
            "elementclass G { $a | input -> Print($a) -> output; }
             Idle -> G(1) -> [0]t :: Tee(2); t[1] -> Discard; Idle -> [1]G(3) -> Discard;",
            &[],
        );
        assert_eq!(messages(&diags), ["'G@6' has no input 1"]);
        let (_, diags) = run(
            "elementclass G { $a | input -> Print($a) -> output; } Idle -> G -> Discard;",
            &[],
        );
        assert_eq!(messages(&diags), ["'G@2 :: G' takes 1 argument(s), 0 given"]);
    }

    #[test]
    fn a_versions_ports_are_read_from_its_text() {
        let used = |body: &str| {
            let mut map = SourceMap::new();
            let f = map.add("t.click", format!("elementclass X {{ {body} }}"));
            let (stmts, diags) = crate::parse(&map, f);
            assert!(diags.is_empty(), "{diags:?}");
            let Stmt::ElementClass(ElementClass {
                body: ClassBody::Compound { alternatives, .. },
                ..
            }) = &stmts[0]
            else {
                panic!()
            };
            ports_used(&alternatives[0].stmts)
        };
        assert_eq!(used("input -> output"), (1, 1));
        assert_eq!(used("input[2] -> x :: Counter; x -> [1]output"), (3, 2));
        assert_eq!(used("input => a :: Counter, b :: Counter; a, b => output"), (2, 2));
        assert_eq!(used("input[] => a :: Counter, b :: Counter, c :: Counter"), (3, 0));
        assert_eq!(used("-> Counter -> [1]"), (1, 2));
        assert_eq!(used("input -> ( -> c :: Counter -> [1] ) => output"), (1, 2));
        // Inside a group, `input` and `output` are the group's.
        assert_eq!(used("( input -> output )"), (0, 0));
        assert_eq!(used(""), (0, 0));
    }

    /// Click 2.1's flat configurations of the same texts.
    #[test]
    fn groups_and_bodies_have_implicit_ports() {
        let flat = ok("Idle -> ( -> c :: Counter -> ) -> Discard;");
        assert_eq!(names(&flat), ["Idle@1", "c", "Discard@6"]);
        assert_eq!(edges(&flat), ["Idle@1[0]->[0]c", "c[0]->[0]Discard@6"]);
        let flat = ok("a :: Idle -> [0] ( [0] -> b :: Counter -> [0] ) [0] -> c :: Discard;");
        assert_eq!(edges(&flat), ["a[0]->[0]b", "b[0]->[0]c"]);
        let flat = ok("Idle -> ( -> Counter -> ) -> ( -> Counter -> ) -> Discard;");
        assert_eq!(names(&flat), ["Idle@1", "Counter@5", "Counter@9", "Discard@10"]);
        let flat = ok("Idle -> ( a :: Counter -> output; -> a ) -> Discard;");
        assert_eq!(edges(&flat), ["Idle@1[0]->[0]a", "a[0]->[0]Discard@6"]);
        for body in ["-> Counter ->", "[0] -> Counter -> [0];", "input -> Counter -> [0]"] {
            let flat = ok(&format!("elementclass X {{ {body} }} Idle -> X -> Discard;"));
            assert_eq!(
                edges(&flat),
                ["Idle@1[0]->[0]X@2/Counter@1", "X@2/Counter@1[0]->[0]Discard@3"],
                "{body}"
            );
        }
        let flat = ok(
            "elementclass Y { => ( [0] -> a :: Counter -> [0]; [1] -> b :: Counter -> [1] ) => }
                       t :: Tee(2); y :: Y; t[0] -> [0]y; t[1] -> [1]y; y[0] -> Discard; y[1] -> Discard;",
        );
        let mut e = edges(&flat);
        e.sort();
        assert_eq!(
            e,
            [
                "t[0]->[0]y/a",
                "t[1]->[0]y/b",
                "y/a[0]->[0]Discard@3",
                "y/b[0]->[0]Discard@4"
            ]
        );
        // Only inside a group or compound.
        for text in ["Idle -> Discard -> ;", "-> Discard;", "[0] -> Discard;"] {
            let (_, diags) = run(text, &[]);
            assert!(diags[0].message.starts_with("syntax error near"), "{text}: {diags:?}");
        }
        let (_, diags) = run("Idle -> ( -> c :: Counter -> [0], d :: Counter -> ) -> Discard;", &[]);
        assert_eq!(diags[0].message, "implicit ports used in the middle of a chain");
    }

    #[test]
    fn variables_expand_with_indexes_defaults_and_quotes() {
        let flat = ok("define($A a \"b c\" d, $N 3, $Q \"x y\", $R $S, $S 1);
                       p :: Print(${A[1]}, $(N), \"$Q\", ${B[0]-dflt}, x${A[7]}y, $R, '$N' /* $N */);
                       Script(print $(add 1 2) $(N));");
        let args = |i: usize| flat.elements[i].args.iter().map(|a| a.text.clone()).collect::<Vec<_>>();
        assert_eq!(args(0), ["\"b c\"", "3", "\"\\\"x y\\\"\"", "dflt", "xy", "1", "'$N'"]);
        assert_eq!(args(1), ["print $(add 1 2) 3"]);
        let (_, diags) = run("Print(${B[0]}, ${A[1]-x}, $(C), $D);\n", &[]);
        assert_eq!(
            messages(&diags),
            [
                "undefined variable '$B'",
                "undefined variable '$C'",
                "undefined variable '$D'"
            ]
        );
        assert_eq!(
            diags[0].help.as_deref(),
            Some("define it with define($B VALUE) or on the command line as B=VALUE, or give a default: ${B-VALUE}")
        );
        assert_eq!(
            diags[2].help.as_deref(),
            Some("define it with define($D VALUE) or on the command line as D=VALUE")
        );
    }

    /// Random edits of a configuration that uses every construct of this
    /// module: flattening never panics, and every diagnostic points inside
    /// the text.
    #[test]
    fn mutated_configs_never_panic() {
        let base = "define($A a \"b c\" d, $N 2);
            elementclass G { $a | input -> Print(${A[1]}) -> output
                          || $b, LIMIT $l | input -> t :: Tee($N) -> output; t[1] -> [1]output || ... }
            elementclass Tee { $x, $y | -> Counter -> || ... }
            Idle -> g :: G(1) -> ( -> c :: Counter -> [0]; [1] -> Counter -> [1] ) => Discard, Discard;
            Idle -> [1]g; Idle -> { [0] -> Counter -> } -> Tee(${B-1}, $(N)) -> Discard;";
        let tokens = [
            "->",
            "=>",
            "::",
            "(",
            ")",
            "{",
            "}",
            "[",
            "]",
            "[1]",
            "||",
            "...",
            ",",
            ";",
            "$",
            "${",
            "$(",
            "-",
            "\"",
            "'",
            "/*",
            "//",
            "elementclass",
            "input",
            "output",
            "G",
            "Tee",
        ];
        let mut seed: u64 = 0x5eed_1234_abcd_0001;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..400 {
            let mut text = base.to_string();
            for _ in 0..1 + next(4) {
                let mut at = next(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match next(3) {
                    0 => text.insert_str(at, tokens[next(tokens.len())]),
                    1 => {
                        let mut end = (at + 1 + next(8)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(at..end, "");
                    }
                    _ => text.insert(at, ' '),
                }
            }
            let (_, diags) = run(&text, &[]);
            for d in &diags {
                assert!(d.span.end as usize <= text.len(), "{text}\n{d:?}");
            }
        }
    }

    #[test]
    fn a_long_chain_of_extensions_is_cut_and_its_candidates_listed_briefly() {
        let mut text = String::from("elementclass G { $a | input -> output }\n");
        text.push_str(&"elementclass G { $a | input -> output || ... }\n".repeat(300));
        text.push_str("Idle -> G(1, 2) -> Discard; Idle -> g :: G(1) -> Discard;");
        let (flat, diags) = run(&text, &[]);
        assert_eq!(messages(&diags), ["no match for 'G[2 arguments, 1 input, 1 output]'"]);
        let notes = &diags[0].notes;
        assert_eq!(notes.len(), 1 + MAX_CANDIDATES_SHOWN + 1);
        assert_eq!(
            notes.last().unwrap().message,
            format!("  and {} more", MAX_VERSIONS - MAX_CANDIDATES_SHOWN)
        );
        // The first version that fits is the last one defined.
        assert!(
            edges(&flat).contains(&"Idle@4[0]->[0]Discard@6".to_string()),
            "{:?}",
            edges(&flat)
        );
    }
}
