//! Command-line arguments.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A Click-style modular packet router built for zero-downtime rollback"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a configuration (the built-in rollback demo if none is given).
    Run {
        /// Configuration file; default: the built-in configs/rollback.click.
        file: Option<PathBuf>,
        /// NAME=VALUE definitions, overriding the file's define($NAME ...).
        #[arg(value_name = "NAME=VALUE")]
        defines: Vec<String>,
        /// Configuration text instead of a file.
        #[arg(short = 'e', long = "expression", value_name = "CONFIG")]
        expression: Option<String>,
        /// Print ELEMENT.HANDLER's value when the router stops (repeatable).
        #[arg(long = "handler", short = 'H', value_name = "ELEMENT.HANDLER")]
        handlers: Vec<String>,
        /// Print a line of counters every second while running (on by
        /// default for the built-in configuration).
        #[arg(long)]
        stats: bool,
        /// No counter lines, not even the final one.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check a configuration and report every error; exit 3 if any.
    Check {
        file: PathBuf,
        #[arg(value_name = "NAME=VALUE")]
        defines: Vec<String>,
    },
    /// Print the flattened graph in Graphviz DOT, the active switch path bold.
    Graph {
        file: PathBuf,
        #[arg(value_name = "NAME=VALUE")]
        defines: Vec<String>,
    },
    /// Print the element reference (all classes, or one in full).
    Elements { class: Option<String> },
}
