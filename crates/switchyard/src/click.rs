//! `switchyard click`: Click's userlevel command line, so scripts and
//! test suites written for `click` run unchanged (link the binary as
//! `click`, or call `switchyard click ...`). Options, output formats,
//! messages and exit codes are Click's; the router underneath is
//! Switchyard's, with its control plane.

use crate::cli::ControlOpts;
use crate::commands::{registry, serve_router, Failure, Job};
use std::io::{Read as _, Write as _};
use switchyard_core::{load_text_click, HandlerTable, Stage};
use switchyard_lang::Limits as ConfigLimits;

const USAGE: &str = "Usage: click [OPTION]... [ROUTERFILE]\nTry 'click --help' for more information.";

const HELP: &str = "'click' runs a Click router configuration at user level (Switchyard's router).

Usage: click [OPTION]... [ROUTERFILE] [PARAM=VALUE]...

Options:
  -f, --file FILE               Read router configuration from FILE.
  -e, --expression EXPR         Use EXPR as router configuration.
  -p, --port PORT               Listen for control connections on TCP port
                                (loopback; the token file in
                                SWITCHYARD_TOKEN_FILE is required).
  -u, --unix-socket FILE        Listen for control connections on Unix socket.
  -R, --allow-reconfigure       Provide a writable 'hotconfig' handler
                                (Switchyard always does).
  -h, --handler ELEMENT.H       Call ELEMENT's read handler H after running
                                driver and print result to standard output.
  -x, --exit-handler ELEMENT.H  Use handler ELEMENT.H value for exit status.
  -o, --output FILE             Write flat configuration to FILE.
  -q, --quit                    Do not run driver.
  -j, --threads N               Accepted; Switchyard runs a thread per task
                                group.
  -w, --no-warnings             Do not print warnings.
      --simtime[=SECS]          Simulated time from SECS (default 1000000000):
                                the clock jumps to the next timer when no
                                task has work, on one thread.
      --help                    Print this message and exit.
  -v, --version                 Print version number and exit.
";

/// What the command line asked for.
#[derive(Default)]
struct Options {
    config: Option<Source>,
    defines: Vec<(String, String)>,
    handlers: Vec<String>,
    exit_handler: Option<String>,
    output: Option<String>,
    quit: bool,
    no_warnings: bool,
    unix: Option<String>,
    port: Option<u16>,
    /// `--simtime[=SECS]`: simulated time from SECS since the epoch.
    simtime: Option<f64>,
}

enum Source {
    File(String),
    Expr(String),
}

fn usage_error(message: &str) -> Failure {
    Failure {
        code: 1,
        message: format!("click: {message}\n{USAGE}"),
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

/// Click's option syntax (getopt-like): short options may be bundled
/// (`-qo-`), long ones take `--opt=VALUE` or `--opt VALUE`; a bare
/// `NAME=value` is a definition, any other bare word the file.
fn parse(args: &[String]) -> Result<Result<Options, String>, Failure> {
    let mut o = Options::default();
    let mut i = 0;
    let set_config = |o: &mut Options, s: Source| {
        if o.config.is_some() {
            return Err(usage_error("router configuration specified twice"));
        }
        o.config = Some(s);
        Ok(())
    };
    while i < args.len() {
        let a = &args[i];
        i += 1;
        // Each option as (name, value if it takes one).
        let mut opts: Vec<(String, Option<String>)> = Vec::new();
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let short = match name {
                "file" => "f",
                "expression" => "e",
                "handler" => "h",
                "exit-handler" => "x",
                "output" => "o",
                "quit" => "q",
                "port" => "p",
                "unix-socket" => "u",
                "allow-reconfigure" => "R",
                "threads" => "j",
                "no-warnings" => "w",
                "version" => "v",
                "help" => return Ok(Err(HELP.to_string())),
                "simtime" => {
                    let secs = match &inline {
                        None => 1_000_000_000.0,
                        Some(v) => v
                            .parse::<f64>()
                            .ok()
                            .filter(|s| (0.0..=switchyard_core::clock::MAX_START_SECS).contains(s))
                            .ok_or_else(|| usage_error(&format!("'--simtime' expects a time in seconds, not '{v}'")))?,
                    };
                    o.simtime = Some(secs);
                    continue;
                }
                _ => return Err(usage_error(&format!("unrecognized option '--{name}'"))),
            };
            let takes = "fehxopuj".contains(short);
            let value = match (takes, inline) {
                (true, Some(v)) => Some(v),
                (true, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => return Err(usage_error(&format!("'--{name}' requires an argument"))),
                },
                (false, Some(_)) => return Err(usage_error(&format!("'--{name}' takes no argument"))),
                (false, None) => None,
            };
            opts.push((short.to_string(), value));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                k += 1;
                if !"fehxopujqRwvtC".contains(c) {
                    return Err(usage_error(&format!("invalid option -- '{c}'")));
                }
                if "fehxopujC".contains(c) {
                    let rest: String = chars[k..].iter().collect();
                    let value = if !rest.is_empty() {
                        rest
                    } else {
                        match args.get(i) {
                            Some(v) => {
                                i += 1;
                                v.clone()
                            }
                            None => return Err(usage_error(&format!("'-{c}' requires an argument"))),
                        }
                    };
                    opts.push((c.to_string(), Some(value)));
                    break;
                }
                opts.push((c.to_string(), None));
            }
        } else if let Some((name, value)) = a
            .split_once('=')
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            if o.defines.iter().any(|(n, _)| n == name) {
                eprintln!("parameter '{name}' multiply defined");
            } else {
                o.defines.push((name.to_string(), value.to_string()));
            }
            continue;
        } else {
            set_config(&mut o, Source::File(a.clone()))?;
            continue;
        }
        for (name, value) in opts {
            let value = value.unwrap_or_default();
            match name.as_str() {
                "f" => set_config(&mut o, Source::File(value))?,
                "e" => set_config(&mut o, Source::Expr(value))?,
                "h" => o.handlers.push(value),
                "x" if o.exit_handler.is_some() => return Err(usage_error("--exit-handler specified twice")),
                "x" => o.exit_handler = Some(value),
                "o" if o.output.is_some() => return Err(usage_error("output file specified twice")),
                "o" => o.output = Some(value),
                "q" => o.quit = true,
                "w" => o.no_warnings = true,
                "u" => o.unix = Some(value),
                "p" => {
                    let port = value
                        .trim_end_matches('+')
                        .parse::<u16>()
                        .map_err(|_| usage_error(&format!("'-p' expects a TCP port number, not '{value}'")))?;
                    o.port = Some(port);
                }
                "v" => return Ok(Err(format!("click (Switchyard) {}\n", env!("CARGO_PKG_VERSION")))),
                // -R (hotconfig is always there), -j (threads follow the
                // graph), -t, -C: accepted.
                _ => {}
            }
        }
    }
    Ok(Ok(o))
}

/// Strips Rust's " (os error N)" so file errors read as Click's.
fn io_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Runs `click ARGS...`; the exit status.
pub fn main(args: &[String]) -> Result<u8, Failure> {
    let o = match parse(args)? {
        Ok(o) => o,
        Err(text) => {
            print!("{text}");
            return Ok(0);
        }
    };
    let (name, text) = match &o.config {
        Some(Source::Expr(e)) => ("config".to_string(), e.clone()),
        Some(Source::File(f)) if f != "-" => {
            let text = std::fs::read_to_string(f).map_err(|e| fail(format!("{f}: {}", io_message(&e))))?;
            (f.clone(), text)
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| fail(format!("<stdin>: {}", io_message(&e))))?;
            ("<stdin>".to_string(), text)
        }
    };
    if let Some(secs) = o.simtime {
        switchyard_core::clock::simulate(secs);
    }
    let registry = registry();
    let limits = ConfigLimits::default();
    let (mut graph, table) = match load_text_click(&name, &text, &registry, &o.defines, &limits) {
        Ok(loaded) => loaded,
        Err((errors, stage)) => {
            let trailer = if stage == Stage::Router {
                "Router could not be initialized!\n"
            } else {
                ""
            };
            return Err(fail(format!("{errors}{trailer}")));
        }
    };
    if let Err(e) = switchyard_core::activate(&mut graph) {
        let mut message = String::new();
        for line in e.lines() {
            match line.strip_prefix('\'').and_then(|l| l.split_once("': ")) {
                Some((who, why)) => message.push_str(&format!("{name}: While initializing '{who}':\n  {why}\n")),
                None => message.push_str(&format!("{line}\n")),
            }
        }
        message.push_str("Router could not be initialized!");
        return Err(fail(message));
    }
    let mut status = 0u8;
    if let Some(out) = &o.output {
        let flat = graph.flat_config();
        let written = if out == "-" {
            std::io::stdout().write_all(flat.as_bytes())
        } else {
            std::fs::write(out, flat)
        };
        if let Err(e) = written {
            eprintln!("{out}: {}", io_message(&e));
            status = 1;
        }
    }
    let empty = graph.nodes.is_empty();
    // Kept until the handlers are read: without a run, a passive Script's
    // `run` reads and writes through the table itself.
    let mut idle: Option<(
        switchyard_core::Graph,
        std::sync::Arc<dyn switchyard_core::ControlPlane>,
    )> = None;
    let table = if o.quit || empty {
        if empty && !o.quit && !o.no_warnings {
            eprintln!("warning: {name}: configuration has no elements, exiting");
        }
        let table = std::sync::Arc::new(table);
        let plane: std::sync::Arc<dyn switchyard_core::ControlPlane> = table.clone();
        let weak = std::sync::Arc::downgrade(&plane);
        for n in &mut graph.nodes {
            n.element.attach_control(&weak);
        }
        idle = Some((graph, plane));
        table
    } else {
        let control = ControlOpts {
            control: o.unix.as_ref().map(Into::into),
            control_tcp: o.port,
            control_token: o.port.and(std::env::var_os("SWITCHYARD_TOKEN_FILE").map(Into::into)),
            control_mode: "0600".into(),
            control_idle: 300,
            control_command_timeout: 10,
            control_max: 32,
            ..ControlOpts::default()
        };
        let job = Job {
            name: &name,
            text: &text,
            handlers: &[],
            stats: false,
            quiet: true,
            limits: &limits,
        };
        serve_router(&registry, &job, &o.defines, &control, graph, table)?.0
    };
    if !print_handlers(&table, &o.handlers) {
        status = 1;
    }
    if let Some(h) = &o.exit_handler {
        status = exit_status(&table, h);
    }
    drop(idle);
    Ok(status)
}

/// The handlers one `-h` names: an element's, every element's whose name
/// matches a glob, or every element's of a class (then named in the
/// output); a global handler without a dot.
fn resolve(table: &HandlerTable, spec: &str) -> Result<(Vec<String>, bool), String> {
    let Some((element, handler)) = spec.split_once('.') else {
        return match table.find(spec) {
            Ok(h) if h.readable() => Ok((vec![spec.to_string()], false)),
            Ok(_) => Err(format!("'{spec}' is a write handler")),
            Err(_) => Err(format!("no '{spec}' handler")),
        };
    };
    let elements = table.elements();
    // An element by name, or one copy of a copied one (`out#1`).
    if table.element(element).is_some_and(|e| e.name == element) {
        return match table.find(spec) {
            Ok(h) if h.readable() => Ok((vec![spec.to_string()], false)),
            Ok(_) => Err(format!("'{spec}' is a write handler")),
            Err(_) => Err(format!("no '{spec}' handler")),
        };
    }
    let glob = element.contains(['*', '?', '[']);
    let matched: Vec<&str> = elements
        .iter()
        .filter(|e| {
            if glob {
                glob_match(element, &e.name)
            } else {
                e.class == element
            }
        })
        .map(|e| e.name.as_str())
        .collect();
    if matched.is_empty() {
        return Err(if glob {
            format!("no element matching '{element}'")
        } else {
            format!("no element '{element}'")
        });
    }
    // Elements without that readable handler are passed over, as Click.
    let handlers = matched
        .into_iter()
        .map(|e| format!("{e}.{handler}"))
        .filter(|full| table.find(full).is_ok_and(|h| h.readable()))
        .collect();
    Ok((handlers, true))
}

/// Prints the `-h` handlers as Click does; false if any failed.
fn print_handlers(table: &HandlerTable, specs: &[String]) -> bool {
    let mut ok = true;
    let mut resolved = Vec::new();
    for spec in specs {
        match resolve(table, spec) {
            Ok(r) => resolved.push(r),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    let named = specs.len() > 1 || resolved.iter().any(|(_, many)| *many);
    let mut out = std::io::stdout().lock();
    for (handlers, _) in resolved {
        for h in handlers {
            let mut value = match table.read(&h) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{e}");
                    ok = false;
                    continue;
                }
            };
            if !value.ends_with('\n') {
                value.push('\n');
            }
            let _ = if named {
                write!(out, "{h}:\n{value}\n")
            } else {
                write!(out, "{value}")
            };
        }
    }
    let _ = out.flush();
    ok
}

/// `-x`: an integer value is the status (its low 8 bits), `true` 0,
/// `false` 1, anything else 255 with Click's message.
fn exit_status(table: &HandlerTable, spec: &str) -> u8 {
    let (name, param) = spec.split_once(' ').unwrap_or((spec, ""));
    let value = match table.read_with(name, param) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return 255;
        }
    };
    // Click's IntArg, then BoolArg.
    let v = value.trim();
    if let Some(n) = <i64 as switchyard_core::FromArg>::from_arg(v.strip_prefix('+').unwrap_or(v)) {
        return n as u8;
    }
    match switchyard_elements::script_truth(v) {
        Some(true) => 0,
        Some(false) => 1,
        None => {
            eprintln!("exit handler value should be integer");
            255
        }
    }
}

/// Shell-style glob: `*`, `?` and `[...]` classes. Iterative, keeping
/// only the last `*` to retry from: linear in each, whatever the pattern.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // One pattern item at p[i]: its length, or None for a `*`.
    let item = |i: usize, c: char| -> (usize, bool) {
        match p[i] {
            '?' => (1, true),
            '[' => match p[i + 1..].iter().position(|&x| x == ']').map(|k| i + 1 + k) {
                Some(close) if close > i + 1 => {
                    let set = &p[i + 1..close];
                    let (negate, set) = match set.first() {
                        Some('!' | '^') => (true, &set[1..]),
                        _ => (false, set),
                    };
                    let mut hit = false;
                    let mut k = 0;
                    while k < set.len() {
                        if k + 2 < set.len() && set[k + 1] == '-' {
                            hit |= set[k] <= c && c <= set[k + 2];
                            k += 3;
                        } else {
                            hit |= set[k] == c;
                            k += 1;
                        }
                    }
                    (close + 1 - i, hit != negate)
                }
                _ => (1, c == '['),
            },
            x => (1, x == c),
        }
    };
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i + 1, j));
            i += 1;
            continue;
        }
        if i < p.len() {
            let (len, ok) = item(i, n[j]);
            if ok {
                i += len;
                j += 1;
                continue;
            }
        }
        match star {
            Some((si, sj)) => {
                i = si;
                j = sj + 1;
                star = Some((si, sj + 1));
            }
            None => return false,
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args) {
            Ok(Ok(o)) => o,
            _ => panic!("{args:?} refused"),
        }
    }

    #[test]
    fn options_parse_clicks_way() {
        let o = opts(&["-qo-", "-h", "c.count", "--handler=list", "conf.click", "N=3", "X="]);
        assert!(o.quit);
        assert_eq!(o.output.as_deref(), Some("-"));
        assert_eq!(o.handlers, ["c.count", "list"]);
        assert!(matches!(o.config, Some(Source::File(ref f)) if f == "conf.click"));
        assert_eq!(o.defines, [("N".into(), "3".into()), ("X".into(), String::new())]);
        let twice: Vec<String> = ["-e", "a", "-f", "b"].iter().map(|s| s.to_string()).collect();
        let Err(f) = parse(&twice) else { panic!() };
        assert!(f
            .message
            .starts_with("click: router configuration specified twice\nUsage: click"));
        let bad: Vec<String> = vec!["--bogus".into()];
        let Err(f) = parse(&bad) else { panic!() };
        assert!(f.message.starts_with("click: unrecognized option '--bogus'"));
        let missing: Vec<String> = vec!["-h".into()];
        let Err(f) = parse(&missing) else { panic!() };
        assert!(f.message.starts_with("click: '-h' requires an argument"));
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*", "Discard@3"));
        assert!(glob_match("c?", "c2"));
        assert!(!glob_match("c?", "c"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("s/*", "s/t"));
        assert!(glob_match("*a*b", "xaxxb"));
        assert!(
            !glob_match("*a*a*a*a*a*a*a*a*b", &"a".repeat(4000)),
            "linear, not exponential"
        );
    }
}
