//! `switchyard`: the command line. Parses arguments, wires the library
//! crates together, maps failures to exit codes. The logic lives in the
//! crates: switchyard-lang (language), switchyard-core (graph, runtime),
//! switchyard-elements (the element library).

mod cli;
mod commands;
mod dot;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match commands::dispatch(cli.command, &cli.limits) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprint!("{}", e.message);
                if !e.message.ends_with('\n') {
                    eprintln!();
                }
            }
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only on a terminal: logs going to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .init();
}
