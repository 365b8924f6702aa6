//! Flattening: from the AST to a flat list of named elements and
//! port-to-port connections, as Click's lexer does before it builds a router.
//!
//! `define` variables are substituted into configuration arguments;
//! `elementclass` compounds are expanded with `outer/inner` names, their
//! `input`/`output` pseudo-elements spliced out; anonymous elements get
//! Click's `Class@N` names. Declarations are visible in the whole scope, in
//! any order. Errors are collected, not returned on first sight.

use crate::ast::*;
use crate::config::{split_args, substitute_within};
use crate::diag::Diagnostic;
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
    };
    let globals: HashMap<String, String> = env.defines.iter().cloned().collect();
    f.scope(stmts, "", &globals, &Classes::default(), None);
    let mut config = f.finish();
    config.truncated = f.too_big;
    let mut diags = f.diags;
    diags.sort_by_key(|d| (d.span.file, d.span.start));
    (config, diags)
}

/// What the statements of one scope are read in: the prefix of its
/// elements' names, its variables and its classes.
#[derive(Clone, Copy)]
struct ScopeEnv<'a, 's> {
    prefix: &'a str,
    vars: &'a HashMap<String, String>,
    classes: &'a Classes<'s>,
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

/// A node of the graph under construction: a real element or a tunnel
/// (a compound's `input` or `output`, spliced out at the end).
enum Node {
    Element(FlatElement),
    Tunnel { owner: String, input: bool, span: Span },
}

#[derive(Clone, Default)]
struct Classes<'s> {
    compounds: HashMap<String, &'s ElementClass>,
}

/// What a name in a scope refers to: one node for sources and one for
/// destinations (different for a compound: its output and input tunnels).
#[derive(Clone, Copy)]
struct Handle {
    as_source: usize,
    as_dest: usize,
    span: Span,
}

struct Flattener<'e> {
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
}

/// Undeclared names that get a "did you mean" searched among the names
/// in scope (each search is linear in them).
const MAX_SUGGESTIONS: usize = 100;

/// Synonyms (`elementclass A B;`) are followed at most this many hops.
const MAX_SYNONYM_HOPS: usize = 64;

impl<'e> Flattener<'e> {
    /// Expands the statements of one scope (the file, or a compound body
    /// with `tunnels` = its input and output nodes).
    fn scope<'s>(
        &mut self,
        stmts: &'s [Stmt],
        prefix: &str,
        outer_vars: &HashMap<String, String>,
        outer_classes: &Classes<'s>,
        tunnels: Option<(usize, usize)>,
    ) {
        // Definitions and classes apply to the whole scope; the command line
        // wins over the file at top level.
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
        let mut classes = outer_classes.clone();
        for stmt in stmts {
            if let Stmt::Provide(p) = stmt {
                self.provided.extend(p.iter().map(|r| r.name.clone()));
            }
        }
        for stmt in stmts {
            match stmt {
                Stmt::ElementClass(ec) => {
                    classes.compounds.insert(ec.name.name.clone(), ec);
                }
                Stmt::Require(reqs) => self.require(reqs),
                _ => {}
            }
        }

        // Declarations first, so that connections may name an element
        // declared further down.
        let mut names: HashMap<String, Handle> = HashMap::new();
        if let Some((input, output)) = tunnels {
            names.insert("input".into(), pseudo(input, usize::MAX));
            names.insert("output".into(), pseudo(usize::MAX, output));
        }
        let env = ScopeEnv {
            prefix,
            vars: &vars,
            classes: &classes,
        };
        self.declare(stmts, env, &mut names);
        let mut position = 0usize;
        self.connections(stmts, env, &mut names, &mut position);
    }

    /// Instantiates the declarations (`x :: Class`) of `stmts`, also those
    /// inside groups (which share the scope), so that connections may name
    /// an element declared further down.
    fn declare<'s>(&mut self, stmts: &'s [Stmt], env: ScopeEnv<'_, 's>, names: &mut HashMap<String, Handle>) {
        let ScopeEnv { prefix, vars, classes } = env;
        for stmt in stmts {
            let Stmt::Connection(c) = stmt else { continue };
            for item in c.sections.iter().flatten() {
                let (decl, class) = match &item.target {
                    Target::Declare { names: decl, class } => (decl, class),
                    Target::Group(g) => {
                        self.declare(&g.stmts, env, names);
                        continue;
                    }
                    _ => continue,
                };
                for id in decl {
                    if let Some(prev) = names.get(&id.name) {
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
                    let full = format!("{prefix}{}", id.name);
                    let h = self.instantiate(&full, id.span, class, class.inline.as_deref(), vars, classes);
                    names.insert(id.name.clone(), h);
                }
            }
        }
    }

    /// Makes the connections of `stmts`, with anonymous elements numbered
    /// as Click numbers them: by their position among the scope's elements
    /// (`position`, shared with the groups inside).
    fn connections<'s>(
        &mut self,
        stmts: &'s [Stmt],
        env: ScopeEnv<'_, 's>,
        names: &mut HashMap<String, Handle>,
        position: &mut usize,
    ) {
        let ScopeEnv { prefix, vars, classes } = env;
        for stmt in stmts {
            let Stmt::Connection(c) = stmt else { continue };
            let mut sections: Vec<Vec<Resolved>> = Vec::new();
            for section in &c.sections {
                let mut resolved = Vec::new();
                for item in section {
                    let mut implied = None;
                    let h = match &item.target {
                        Target::Group(g) => {
                            *position += 1;
                            let (h, ports) = self.group(g, item.span, env, names, position);
                            implied = Some(ports);
                            Some(h)
                        }
                        Target::Declare { names: decl, .. } => {
                            *position += decl.len();
                            names.get(&decl[0].name).copied()
                        }
                        Target::Anonymous(class) => {
                            *position += 1;
                            let local = format!("{}@{}", class.class.name, position);
                            let full = format!("{prefix}{local}");
                            let inline = class.inline.as_deref();
                            let h = self.instantiate(&full, class.class.span, class, inline, vars, classes);
                            names.insert(local, h);
                            Some(h)
                        }
                        Target::Name(id) => match names.get(&id.name) {
                            Some(h) => Some(*h),
                            None if self.is_class(&id.name, classes) => {
                                *position += 1;
                                let local = format!("{}@{}", id.name, position);
                                let class = ClassUse {
                                    class: id.clone(),
                                    config: None,
                                    inline: None,
                                };
                                let full = format!("{prefix}{local}");
                                let h = self.instantiate(&full, id.span, &class, None, vars, classes);
                                names.insert(local, h);
                                Some(h)
                            }
                            None => {
                                let mut d = Diagnostic::error(id.span, format!("undeclared element '{}'", id.name));
                                // Each search scans every name in scope:
                                // the first ones get a suggestion, so that
                                // thousands of typos stay linear.
                                if self.suggestions < MAX_SUGGESTIONS {
                                    self.suggestions += 1;
                                    let candidates =
                                        names.keys().map(String::as_str).chain(self.env.classes.iter().copied());
                                    if let Some(n) = nearest(&id.name, candidates) {
                                        d = d.with_help(format!("did you mean '{n}'?"));
                                    }
                                }
                                self.diags.push(d);
                                // A placeholder, so that the name's other
                                // uses and its neighbours' ports raise no
                                // further errors.
                                self.nodes.push(Node::Element(FlatElement {
                                    name: format!("{prefix}{}", id.name),
                                    class: String::new(),
                                    class_known: false,
                                    args: Vec::new(),
                                    span: id.span,
                                    config_span: id.span,
                                }));
                                let h = Handle {
                                    as_source: self.nodes.len() - 1,
                                    as_dest: self.nodes.len() - 1,
                                    span: id.span,
                                };
                                names.insert(id.name.clone(), h);
                                Some(h)
                            }
                        },
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

    /// Makes a group's connections, in the enclosing scope, with `input`
    /// and `output` meaning the group's own ports while they are read.
    /// Returns its handle and how many input and output ports its inside
    /// uses.
    fn group<'s>(
        &mut self,
        g: &'s Group,
        span: Span,
        env: ScopeEnv<'_, 's>,
        names: &mut HashMap<String, Handle>,
        position: &mut usize,
    ) -> (Handle, (u32, u32)) {
        let (input, output) = self.tunnels(&format!("{}group@{position}", env.prefix), span);
        let outer_in = names.insert("input".into(), pseudo(input, usize::MAX));
        let outer_out = names.insert("output".into(), pseudo(usize::MAX, output));
        self.connections(&g.stmts, env, names, position);
        for (name, outer) in [("input", outer_in), ("output", outer_out)] {
            match outer {
                Some(h) => names.insert(name.into(), h),
                None => names.remove(name),
            };
        }
        let used =
            |f: &dyn Fn(&FlatConnection) -> Option<u32>| self.edges.iter().filter_map(f).max().map_or(0, |p| p + 1);
        let n_in = used(&|e| (e.from.element == input).then_some(e.from.port));
        let n_out = used(&|e| (e.to.element == output).then_some(e.to.port));
        let h = Handle {
            as_source: output,
            as_dest: input,
            span,
        };
        (h, (n_in, n_out))
    }

    /// The input and output tunnels of a compound or group `owner`.
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

    fn is_class(&self, name: &str, classes: &Classes) -> bool {
        classes.compounds.contains_key(name) || self.env.classes.contains(&name)
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

    /// Creates the element (or expands the compound) `name` of `class`
    /// (`inline`: its body, for an anonymous compound written in place).
    fn instantiate<'s>(
        &mut self,
        name: &str,
        span: Span,
        class: &ClassUse,
        inline: Option<&'s Compound>,
        vars: &HashMap<String, String>,
        classes: &Classes<'s>,
    ) -> Handle {
        let args = self.args(class, vars);
        if let Some(body) = inline {
            return self.expand(name, span, "Compound", body, args, true, vars, classes);
        }
        let mut class_name = class.class.name.clone();
        // Follow synonyms (`elementclass MyQueue Queue;`).
        let mut compound = None;
        let mut report_args = true;
        let mut hops = 0;
        while let Some(ec) = classes.compounds.get(&class_name) {
            match &ec.body {
                ClassBody::Synonym(target) if hops < MAX_SYNONYM_HOPS => {
                    class_name = target.name.clone();
                    hops += 1;
                }
                ClassBody::Synonym(_) => break,
                ClassBody::Compound { alternatives, extends } => {
                    // Overloading: the first version that takes these
                    // arguments; with one version, its own error says why.
                    let fits = |c: &&Compound| bind(&c.formals, args.clone()).1.is_none();
                    compound = match alternatives.iter().find(fits) {
                        Some(c) => Some(c),
                        None if *extends => None,
                        None if alternatives.len() == 1 => alternatives.first(),
                        None => {
                            self.diags.push(Diagnostic::error(
                                span,
                                format!(
                                    "'{name} :: {class_name}' no version of '{class_name}' takes these {} argument(s)",
                                    args.len()
                                ),
                            ));
                            // Expanded anyway (quietly), so its ports exist.
                            report_args = false;
                            alternatives.first()
                        }
                    };
                    break;
                }
            }
        }
        if let Some(body) = compound {
            return self.expand(name, span, &class_name, body, args, report_args, vars, classes);
        }
        let known = self.env.classes.contains(&class_name.as_str());
        if !known {
            let mut d = Diagnostic::error(class.class.span, format!("unknown element class '{}'", class_name));
            let candidates = self
                .env
                .classes
                .iter()
                .copied()
                .chain(classes.compounds.keys().map(String::as_str));
            if let Some(n) = nearest(&class_name, candidates) {
                d = d.with_help(format!("did you mean '{n}'?"));
            }
            self.diags.push(d);
        }
        let config_span = class.config.as_ref().map_or(class.class.span, |c| c.span);
        self.count_element(span);
        self.nodes.push(Node::Element(FlatElement {
            name: name.to_string(),
            class: class_name,
            class_known: known,
            args,
            span,
            config_span,
        }));
        let idx = self.nodes.len() - 1;
        Handle {
            as_source: idx,
            as_dest: idx,
            span,
        }
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

    fn args(&mut self, class: &ClassUse, vars: &HashMap<String, String>) -> Vec<FlatArg> {
        let Some(config) = &class.config else {
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
                let Some((text, unknown)) = substitute_within(a.text, |n| vars.get(n).map(String::as_str), budget)
                else {
                    self.bytes_exceeded(span);
                    return vec![FlatArg {
                        text: String::new(),
                        span,
                    }];
                };
                self.arg_bytes += text.len();
                let script = self.env.scripts.contains(&class.class.name.as_str());
                for u in unknown.into_iter().filter(|_| !script) {
                    let mut d = Diagnostic::error(span, format!("undefined variable '${u}'"));
                    if let Some(n) = nearest(&u, vars.keys().map(String::as_str)) {
                        d = d.with_help(format!("did you mean '${n}'?"));
                    } else {
                        d = d.with_help(format!(
                            "define it with define(${u} VALUE) or on the command line as {u}=VALUE"
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

    #[allow(clippy::too_many_arguments)]
    fn expand<'s>(
        &mut self,
        name: &str,
        span: Span,
        class_name: &str,
        body: &'s Compound,
        args: Vec<FlatArg>,
        report_args: bool,
        vars: &HashMap<String, String>,
        classes: &Classes<'s>,
    ) -> Handle {
        let (input, output) = self.tunnels(name, span);
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
                        "compound element class '{class_name}' nested more than {} deep (recursive?) {}",
                        limits.nesting,
                        Exceeded("nesting", limits.nesting as u64)
                    ),
                ));
            }
            return Handle {
                as_source: output,
                as_dest: input,
                span,
            };
        }
        let mut inner_vars = vars.clone();
        let (values, problem) = bind(&body.formals, args);
        if let Some(why) = problem.filter(|_| report_args) {
            self.diags
                .push(Diagnostic::error(span, format!("'{name} :: {class_name}' {why}")));
        }
        inner_vars.extend(values);
        self.depth += 1;
        self.scope(
            &body.stmts,
            &format!("{name}/"),
            &inner_vars,
            classes,
            Some((input, output)),
        );
        self.depth -= 1;
        Handle {
            as_source: output,
            as_dest: input,
            span,
        }
    }

    fn connect(&mut self, left: &[Resolved], right: &[Resolved], kind: ArrowKind, arrow: Span) {
        // Click's rule: each side is a list of (element, ports); a side with
        // more than one port in all (or an expandable list) steps through
        // them, the other stays; both stepping needs '=>' and equal counts.
        struct Side {
            handle: Option<Handle>,
            numbers: Vec<u32>,
            expandable: bool,
        }
        let side = |items: &[Resolved], output: bool| -> Vec<Side> {
            items
                .iter()
                .map(|(h, item, implied)| {
                    let p = if output { &item.output } else { &item.input };
                    // A group without ports on this side has them all:
                    // as if written [0, 1, ..., n - 1].
                    let all = implied.map_or(0, |(i, o)| if output { o } else { i });
                    Side {
                        handle: *h,
                        numbers: p.as_ref().map_or_else(|| (0..all).collect(), |p| p.numbers.clone()),
                        expandable: p.as_ref().is_some_and(|p| p.expandable),
                    }
                })
                .collect()
        };
        let mut sides = [side(left, true), side(right, false)];
        let analyze = |s: &[Side]| {
            let min: usize = s.iter().map(|x| x.numbers.len().max(1)).sum();
            (min, s.iter().filter(|x| x.expandable).count())
        };
        let (mut min, mut exp) = ([0; 2], [0; 2]);
        for k in 0..2 {
            (min[k], exp[k]) = analyze(&sides[k]);
        }
        if exp[0] + exp[1] > 1 {
            self.diags.push(Diagnostic::error(
                arrow,
                "at most one expandable port list ('[]', '[n, ]') per connection",
            ));
            return;
        }
        if kind == ArrowKind::Double {
            // A lone element without ports expands port by port
            // (`t => a, b` is t[0] -> a, t[1] -> b).
            for k in 0..2 {
                if min[k] == 1 && min[1 - k] > 1 && sides[k][0].numbers.is_empty() {
                    sides[k][0].numbers.push(0);
                    sides[k][0].expandable = true;
                    exp[k] = 1;
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
                self.diags.push(
                    Diagnostic::error(arrow, "many-to-many connections require '=>'")
                        .with_help("use '=>' to connect the lists element by element"),
                );
                return;
            }
            let (outs, ins) = (min[0], min[1]);
            let mismatch = match (exp[0] > 0, exp[1] > 0) {
                (false, false) if outs != ins => Some(format!("{outs} outputs connected to {ins} inputs")),
                (true, false) if ins < outs => Some(format!("{outs} or more outputs connected to {ins} inputs")),
                (false, true) if outs < ins => Some(format!("{outs} outputs connected to {ins} or more inputs")),
                _ => None,
            };
            if let Some(m) = mismatch {
                self.diags
                    .push(Diagnostic::error(arrow, format!("connection mismatch: {m}")));
                return;
            }
        } else if !step[0] && !step[1] {
            step[1] = true;
        }
        let port_at = |s: &Side, pos: usize| -> u32 {
            match s.numbers.len() {
                0 => 0,
                n if pos < n => s.numbers[pos],
                n => s.numbers[n - 1] + (pos - (n - 1)) as u32,
            }
        };
        let mut pairs: Vec<(usize, u32, usize, u32)> = Vec::new();
        let (mut at, mut pos) = ([0usize; 2], [0usize; 2]);
        while at[0] < sides[0].len() && at[1] < sides[1].len() {
            let (l, r) = (&sides[0][at[0]], &sides[1][at[1]]);
            if let (Some(lh), Some(rh)) = (l.handle, r.handle) {
                pairs.push((lh.as_source, port_at(l, pos[0]), rh.as_dest, port_at(r, pos[1])));
            }
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
        for (from, fp, to, tp) in pairs {
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
        let mut index = vec![usize::MAX; self.nodes.len()];
        let mut elements = Vec::new();
        for (i, node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if let Node::Element(e) = node {
                index[i] = elements.len();
                elements.push(e);
            }
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
                "Idle@12[0]->[1]x",
                "a[0]->[0]d",
                "b[0]->[0]d",
                "src[0]->[0]a",
                "src[0]->[0]b",
                "t[0]->[0]x",
                "t[1]->[0]y",
                "x[0]->[0]e",
                "y[0]->[0]f",
            ],
            "a group's elements are the scope's: x is named from outside"
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
        assert_eq!(msgs, ["'Q@2 :: Q' no version of 'Q' takes these 2 argument(s)"]);
        let (_, diags) = run("elementclass Q { ... }", &[]);
        assert!(diags[0].message.starts_with("'...' comes last"), "{diags:?}");
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
        assert_eq!(names, ["src", "b/c", "b/Print@2", "Discard@3"]);
        assert_eq!(flat.elements[2].args[0].text, "old");
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
    fn exponential_compounds_are_stopped() {
        let (_, diags) = run("elementclass A { input -> A -> A -> output; } Idle -> A -> Idle;", &[]);
        assert!(diags.iter().any(|d| d.message.contains("'A'")), "{diags:?}");
    }

    #[test]
    fn a_compound_that_doubles_its_argument_stops_at_the_byte_limit() {
        let (flat, diags) = run(
            "elementclass D { $a | input -> D($a$a$a$a) -> output; } Idle -> D(xxxxxxxxxxxxxxxx) -> Idle;",
            &[],
        );
        assert!(
            diags.iter().any(|d| d.message.contains("--limit config_bytes=N")),
            "{diags:?}"
        );
        let total: usize = flat.elements.iter().flat_map(|e| &e.args).map(|a| a.text.len()).sum();
        assert!(total <= 2 * Limits::default().config_bytes);
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
}
