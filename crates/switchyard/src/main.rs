//! `switchyard`: the command line. Parses arguments, wires the library
//! crates together, maps failures to exit codes. The logic lives in the
//! crates: switchyard-lang (language), switchyard-core (graph, runtime),
//! switchyard-elements (the element library).

mod cli;
mod click;
mod commands;
mod dot;
mod notify;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Click's command line, as `switchyard click ...` or through a link
    // named `click`: its options (`-h` is a handler there) are not clap's.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as_click = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "click");
    if invoked_as_click || args.get(1).is_some_and(|a| a == "click") {
        init_logging(0);
        let skip = if invoked_as_click { 1 } else { 2 };
        let args: Vec<String> = args[skip..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
        return match click::main(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(e),
        };
    }
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match commands::dispatch(cli.command, &cli.limits) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(e: commands::Failure) -> ExitCode {
    if !e.message.is_empty() {
        eprint!("{}", e.message);
        if !e.message.ends_with('\n') {
            eprintln!();
        }
    }
    ExitCode::from(e.code)
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
