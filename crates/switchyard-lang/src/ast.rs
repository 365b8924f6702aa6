//! The syntax tree of one configuration file. Every node keeps its span so
//! that later stages can point at the text.

use crate::span::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// The raw text between an element's parentheses, with the span of that
/// text (not of the parentheses).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigText {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// A chain `a -> b -> c`; a lone declaration is a chain of one section.
    Connection(Connection),
    ElementClass(ElementClass),
    Define(Vec<Definition>),
    Require(Vec<Requirement>),
    /// `provide(NAME, ...)`: this configuration provides these
    /// requirements itself.
    Provide(Vec<Requirement>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrowKind {
    /// `->`
    Single,
    /// `=>`: many-to-many, port by port.
    Double,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// Element lists between arrows: `a, b -> c` has two sections.
    pub sections: Vec<Vec<ElementRef>>,
    /// `arrows[i]` joins `sections[i]` and `sections[i + 1]`.
    pub arrows: Vec<(ArrowKind, Span)>,
}

/// A port specification: `[1]`, a port list `[0, 2]`, or an expandable
/// one, `[]` (from 0) or `[1, ]` (from the last listed on), which takes as
/// many consecutive ports as the other side of the connection needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    /// At least one.
    pub numbers: Vec<u32>,
    pub expandable: bool,
    pub span: Span,
}

/// `[in]target[out]` in a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ElementRef {
    pub input: Option<Port>,
    pub target: Target,
    pub output: Option<Port>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A bare word: a declared element, or a class used anonymously
    /// (`-> Discard;`); flattening decides which.
    Name(Ident),
    /// `a, b :: Class(config)`.
    Declare { names: Vec<Ident>, class: ClassUse },
    /// `Class(config)` inline.
    Anonymous(ClassUse),
    /// `( stmts )`: Click's anonymous group, statements in the enclosing
    /// scope whose `input`/`output` are the group's own ports.
    Group(Group),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClassUse {
    /// The class name; for an inline compound, `Compound` at the `{`.
    pub class: Ident,
    pub config: Option<ConfigText>,
    /// An anonymous compound written in place of a class name:
    /// `-> { input -> c :: Counter -> output } ->`, `x :: { ... }`.
    pub inline: Option<Box<Compound>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ElementClass {
    pub name: Ident,
    pub body: ClassBody,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClassBody {
    /// One compound, or several (`{ $a | ... || $a, $b | ... }`,
    /// Click's overloading: the first whose parameters take the arguments
    /// and whose ports match the element's connections is used); `extends`
    /// (the span of a last `|| ...`) falls back to the class of the same
    /// name defined before this one (a built-in or an earlier compound).
    Compound {
        alternatives: Vec<Compound>,
        extends: Option<Span>,
    },
    /// `elementclass MyQueue Queue;`
    Synonym(Ident),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Compound {
    /// `$a, KEYWORD $b |` parameters.
    pub formals: Vec<Formal>,
    pub stmts: Vec<Stmt>,
    /// From the `{` of an inline compound, or from the first token of a
    /// version of an `elementclass`, to its `}` or `||`.
    pub span: Span,
}

/// One compound parameter: `$var` (positional) or `KEYWORD $var`, given
/// as `KEYWORD value`; `__REST__ $var` takes every argument left over.
#[derive(Clone, Debug, PartialEq)]
pub struct Formal {
    pub keyword: Option<Ident>,
    /// The variable, without the `$`.
    pub var: Ident,
}

/// `$NAME value` inside `define(...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub name: Ident,
    pub value: String,
}

/// One item of `require(...)`: a package (`require(switchyard)`,
/// `require(package switchyard)`) or a library of declarations
/// (`require(library common.click)`, read by [`crate::parse_with_libraries`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    pub name: String,
    pub span: Span,
    pub library: bool,
}
