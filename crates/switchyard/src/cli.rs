//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
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
    /// Change a configuration limit, NAME=N (repeatable): nesting (64
    /// levels), elements (100000 after flattening), config_bytes (16 MiB of
    /// expanded arguments), library_bytes (4 MiB per library file), ports
    /// (4096 per element), chain (10000 elements called in a row on one
    /// thread; sets the threads' stack size). A running router checks
    /// reloads against its own.
    #[arg(long = "limit", value_name = "NAME=N", global = true)]
    pub limits: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The control socket and what goes with it.
#[derive(Args, Default)]
pub struct ControlOpts {
    /// Serve Click's ControlSocket protocol on this Unix socket.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Permissions of the control socket (octal).
    #[arg(long, value_name = "MODE", default_value = "0600")]
    pub control_mode: String,
    /// Group owning the control socket (with --control-mode 0660, lets
    /// that group drive the router).
    #[arg(long, value_name = "GROUP")]
    pub control_group: Option<String>,
    /// Also serve the protocol on this TCP port (127.0.0.1 only, unless
    /// --allow-remote).
    #[arg(long, value_name = "PORT")]
    pub control_tcp: Option<u16>,
    /// The token TCP control clients must send first (`AUTH TOKEN`): a
    /// file only the router's user can read (mode 0600), one word of at
    /// least 16 characters. Required for --control-tcp and ControlSocket(TCP, ...).
    #[arg(long, value_name = "FILE")]
    pub control_token: Option<PathBuf>,
    /// Let --control-tcp listen on every address, not just loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Close control connections silent for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub control_idle: u64,
    /// Close a control connection whose command (line and data) is not
    /// complete this many seconds after its first byte.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub control_command_timeout: u64,
    /// Most control connections at once; root and the router's own user
    /// have 4 more on the Unix socket, so a crowd cannot lock them out.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub control_max: usize,
    /// Append every control write, accepted or refused, to this file as a
    /// JSON line (fsync'd before the reply).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Keep persistent handlers (switch positions) in this file: restored
    /// at start; every accepted write is appended to FILE.journal and
    /// synced before the reply, and compacted into FILE now and then. Put
    /// it in a directory only the router's user can write, such as
    /// /var/lib/switchyard (links are never followed).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Start even if the --state file is damaged: it is moved aside to
    /// FILE.bad.SECONDS and the configuration's values apply.
    #[arg(long, requires = "state")]
    pub reset_state: bool,
    /// Serve Prometheus metrics (every numeric handler) at
    /// http://ADDR/metrics; ADDR is PORT or HOST:PORT, loopback unless
    /// --allow-remote.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Serve the JSON API (/api/v1) and /metrics at http://ADDR/; ADDR is
    /// PORT or HOST:PORT, loopback unless --allow-remote (which also needs
    /// --http-tokens).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Bearer tokens for --http, one `NAME read|write SECRET` per line, in
    /// a file only the router's user can read; with it every API call
    /// needs a token, without it reads are open (loopback) and nothing can
    /// write.
    #[arg(long, value_name = "FILE", requires = "http")]
    pub http_tokens: Option<PathBuf>,
    /// Roll back when Alertmanager posts a firing alert to
    /// /api/v1/alertmanager whose labels match: `LABEL=VALUE,... =>
    /// HANDLER VALUE; ...` (repeatable; the writes may only move traffic
    /// back, as a Watchdog's).
    #[arg(long = "alert-rule", value_name = "RULE", requires = "http")]
    pub alert_rules: Vec<String>,
    /// Alert rules from a file, one `--alert-rule` a line (`#` comments),
    /// besides those given with --alert-rule.
    #[arg(long = "alert-rules", value_name = "FILE", requires = "http")]
    pub alert_rules_file: Option<PathBuf>,
    /// Join a fleet coordinated through etcd:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX.
    /// The router registers under a lease, applies the fleet's desired
    /// values (checked first, audited as actor `fleet`), and acks; without
    /// etcd it keeps its state and never flips on its own.
    #[arg(long, value_name = "URL")]
    pub fleet: Option<String>,
    /// This router's name in the fleet [default: the host name].
    #[arg(long, value_name = "NAME", requires = "fleet")]
    pub fleet_name: Option<String>,
    /// What a gate (Watchdog) tripping here does to the fleet: `fleet`
    /// rolls every router back (a release that fails on one router is bad
    /// everywhere), `local` only this one (the fleet sees a divergence).
    #[arg(long, value_name = "POLICY", default_value = "fleet", requires = "fleet")]
    pub fleet_gate_policy: String,
    /// Set for the built-in demo: what it opens that was not asked for.
    #[arg(skip)]
    pub demo: Option<crate::commands::Demo>,
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
        #[command(flatten)]
        control: Box<ControlOpts>,
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
    /// Print the flattened configuration in Click's format (compounds
    /// expanded, variables substituted), as the `flatconfig` handler.
    Flatten {
        file: PathBuf,
        #[arg(value_name = "NAME=VALUE")]
        defines: Vec<String>,
    },
    /// Click's command line: `switchyard click [-f FILE | -e EXPR] [-h
    /// ELEMENT.HANDLER]... [-x HANDLER] [-q] [-o FILE] [-p PORT] [-u
    /// PATH] [NAME=VALUE]...`, with Click's output formats, messages and
    /// exit codes. A link named `click` to this binary runs it too.
    #[command(disable_help_flag = true)]
    Click {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Move a fleet of routers as one, through etcd: `status`, `set
    /// HANDLER VALUE` (two phases: every router checks, then every router
    /// applies; all or none), `rollback`, `watch`.
    Fleet {
        /// The fleet: etcd://HOST:PORT/PREFIX [env: SWITCHYARD_ETCD].
        #[arg(long, value_name = "URL")]
        etcd: Option<String>,
        #[command(subcommand)]
        action: FleetCmd,
    },
    /// Talk to a running router's control socket.
    Ctl {
        /// The router's Unix control socket [env: SWITCHYARD_SOCKET;
        /// default /run/switchyard.sock].
        #[arg(long, short, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Connect over TCP instead (HOST:PORT).
        #[arg(long, value_name = "ADDR", conflicts_with = "socket")]
        tcp: Option<String>,
        /// The router's TCP token file (--control-token) [env:
        /// SWITCHYARD_TOKEN_FILE].
        #[arg(long, value_name = "FILE", requires = "tcp")]
        token_file: Option<PathBuf>,
        /// Seconds to wait for each reply (reloads wait as long as they take).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
        #[command(subcommand)]
        action: Ctl,
    },
}

#[derive(Subcommand)]
pub enum FleetCmd {
    /// Each router: alive, the desired revision it applied, its values
    /// and generations, where it diverges, tripped gates.
    Status,
    /// Set a handler on every router: all routers check the value, then
    /// all apply it; if any cannot, none keeps it.
    Set {
        handler: String,
        /// The value; several words are joined with spaces.
        #[arg(required = true, allow_negative_numbers = true)]
        value: Vec<String>,
        /// Seconds to wait for every router's answer, in each phase.
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        timeout: f64,
        /// Keep what the routers that applied it did, even if others
        /// failed (default: put every router back).
        #[arg(long)]
        no_atomic: bool,
        /// Seconds to hold the prepared change before the commit.
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        pause: f64,
    },
    /// Go back to the values before the last change (a new revision).
    Rollback {
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        timeout: f64,
    },
    /// Print every change to the fleet's keys as it happens.
    Watch {
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Subcommand)]
pub enum Ctl {
    /// Print a handler's value (`sel.switch`, `out.count`, `list`...), or
    /// read it with a parameter (`rt.lookup 10.0.0.1`).
    Read {
        handler: String,
        /// The read's parameter; several words are joined with spaces.
        param: Vec<String>,
    },
    /// Write a value to a handler (`sel.switch 1`).
    Write {
        handler: String,
        /// The value; several words are joined with spaces.
        #[arg(allow_hyphen_values = true)]
        value: Vec<String>,
        /// Write only if the handler's generation is still N (read it with
        /// `ctl read HANDLER@gen`): two operators cannot undo each other.
        #[arg(long, value_name = "N")]
        if_generation: Option<u64>,
    },
    /// List the router's elements.
    List,
    /// List an element's handlers and whether they read or write.
    Handlers { element: String },
    /// Print a handler's value repeatedly.
    Watch {
        handler: String,
        /// Milliseconds between reads.
        #[arg(long, default_value_t = 1000)]
        interval: u64,
        /// Stop after this many reads (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send protocol command lines from standard input, print each reply;
    /// exit 1 if any reply was an error.
    Batch,
    /// Replace the running configuration with FILE (checked first; the
    /// errors come back and nothing changes if it has any).
    Reload {
        file: PathBuf,
        /// Only say what the reload would do (threads kept and paused,
        /// elements carried, added, removed); change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Go back to the configuration before the last reload.
    RollbackConfig,
    /// One screen: uptime, switch positions and canary weights, gates,
    /// rates, the last audited writes.
    Status,
    /// The running graph in Graphviz DOT with live counts on the nodes and
    /// the production path bold.
    Graph,
}
