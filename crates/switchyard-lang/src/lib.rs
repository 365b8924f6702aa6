//! The Click configuration language, as Switchyard reads it.
//!
//! Text goes in through [`SourceMap`]; [`parse`] turns one file into an AST
//! whose every node carries a [`Span`]; [`flatten`] expands `elementclass`
//! compounds, `define` variables and anonymous elements into a flat list of
//! named elements and port-to-port connections. Every problem found on the
//! way is a [`Diagnostic`] that renders as `file:line:column: error: ...`
//! with the source line and a caret. This crate knows no element class: the
//! caller says which class names exist.
#![forbid(unsafe_code)]

pub mod ast;
pub mod config;
mod diag;
mod flatten;
mod limits;
mod parse;
mod span;
mod suggest;

pub use diag::{render_all, render_click, render_redacted, Diagnostic, Note, Severity};
pub use flatten::{flatten, Environment, FlatArg, FlatConfig, FlatConnection, FlatElement, PortRef};
pub use limits::{Exceeded, Limits, LIMIT_NAMES};
pub use parse::{parse, parse_limited, parse_with_libraries, ReadLibrary};
pub use span::{FileId, SourceMap, Span};
pub use suggest::nearest;
