//! The subcommands.

use crate::cli::{Command, ControlOpts, Ctl};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_control::client::{Client, ClientError};
use switchyard_control::server::{serve, Limits, Listen, Server, Token};
use switchyard_control::{Control, ControlSocket};
use switchyard_core::{load_text_limited, Args, Graph, HandlerTable, Registry, Router};

/// Bounds on what a configuration may ask for (`--limit NAME=N`).
type ConfigLimits = switchyard_core::Limits;

/// The built-in default configuration.
const DEFAULT_CONFIG: &str = include_str!("../../../configs/rollback.click");
const DEFAULT_NAME: &str = "configs/rollback.click";

/// A failure and its exit status: 1 runtime, 2 usage, 3 configuration.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn config_error(message: String) -> Failure {
    Failure { code: 3, message }
}

/// The standard elements, devices and dumps, and ControlSocket.
pub fn registry() -> Registry {
    let mut r = switchyard_elements::standard().with(ControlSocket::CLASS);
    for c in switchyard_io::CLASSES {
        r.add(*c);
    }
    r
}

pub fn dispatch(cmd: Command, limit_settings: &[String]) -> Result<(), Failure> {
    let registry = registry();
    let mut limits = ConfigLimits::default();
    for l in limit_settings {
        limits.set(l).map_err(|e| usage(format!("--limit {e}")))?;
    }
    let limits = &limits;
    match cmd {
        Command::Ctl {
            socket,
            tcp,
            token_file,
            timeout,
            action,
        } => ctl(socket, tcp, token_file, timeout, action),
        Command::Run {
            file,
            mut defines,
            expression,
            handlers,
            stats,
            quiet,
            mut control,
        } => {
            let file = split_define_like_file(file, &mut defines);
            let (name, text, builtin) = match (&expression, &file) {
                (Some(_), Some(f)) => {
                    return Err(usage(format!(
                        "give a FILE or -e CONFIG, not both (FILE was '{}')",
                        f.display()
                    )))
                }
                (Some(e), None) => ("<expression>".to_string(), e.clone(), false),
                (None, Some(f)) => (f.display().to_string(), read(f)?, false),
                (None, None) => (DEFAULT_NAME.to_string(), DEFAULT_CONFIG.to_string(), true),
            };
            if builtin {
                Demo::fill(&mut control);
            }
            let job = Job {
                name: &name,
                text: &text,
                handlers: &handlers,
                stats: (stats || builtin) && !quiet,
                quiet,
                limits,
            };
            run(&registry, &job, &parse_defines(&defines)?, &control)
        }
        Command::Check { file, defines } => {
            load_file(&file, &defines, &registry, limits)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Graph { file, defines } => {
            let (graph, table) = load_file(&file, &defines, &registry, limits)?;
            print!("{}", dot(&graph, &table));
            Ok(())
        }
        Command::Elements { class } => elements(&registry, class.as_deref()),
        Command::Flatten { file, defines } => {
            // click-flatten's output, and its error format too.
            let text = read(&file)?;
            let name = file.display().to_string();
            let (graph, _) =
                switchyard_core::load_text_click(&name, &text, &registry, &parse_defines(&defines)?, limits)
                    .map_err(|(errors, _)| config_error(errors))?;
            print!("{}", graph.flat_config());
            Ok(())
        }
        Command::Fleet { etcd, action } => fleet(etcd, action),
        Command::Click { args } => match crate::click::main(&args)? {
            0 => Ok(()),
            code => Err(Failure {
                code,
                message: String::new(),
            }),
        },
    }
}

/// Reads and checks a configuration file, as `check` and `graph` do.
fn load_file(
    file: &Path,
    defines: &[String],
    registry: &Registry,
    limits: &ConfigLimits,
) -> Result<(Graph, HandlerTable), Failure> {
    let text = read(file)?;
    let name = file.display().to_string();
    load_text_limited(&name, &text, registry, &parse_defines(defines)?, limits).map_err(config_error)
}

/// `switchyard run RATE=5` has no file: clap took the definition for one.
fn split_define_like_file(file: Option<PathBuf>, defines: &mut Vec<String>) -> Option<PathBuf> {
    match file {
        Some(f) if !f.exists() && f.to_string_lossy().contains('=') => {
            defines.insert(0, f.to_string_lossy().into_owned());
            None
        }
        other => other,
    }
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure {
        code: 1,
        message: format!("{}: {e}", path.display()),
    })
}

fn parse_defines(defines: &[String]) -> Result<Vec<(String, String)>, Failure> {
    defines
        .iter()
        .map(|d| match d.split_once('=') {
            Some((n, v)) if !n.is_empty() => Ok((n.trim_start_matches('$').to_string(), v.to_string())),
            _ => Err(usage(format!("bad definition '{d}': expected NAME=VALUE"))),
        })
        .collect()
}

pub(crate) struct Job<'a> {
    pub(crate) name: &'a str,
    pub(crate) text: &'a str,
    pub(crate) handlers: &'a [String],
    pub(crate) stats: bool,
    pub(crate) quiet: bool,
    pub(crate) limits: &'a ConfigLimits,
}

fn runtime(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

/// The servers a router runs besides its threads; dropping them stops
/// them (and removes the control socket files).
struct Servers {
    _control: Vec<Server>,
    _http: Vec<switchyard_http::HttpServer>,
    _fleet: Option<switchyard_fleet::agent::Agent>,
}

/// Opens the audit log and state file, restores persistent handlers, and
/// starts the control servers asked for on the command line and by
/// ControlSocket elements; reload requests go to `reloads`.
fn start_control(
    graph: &Graph,
    table: &Arc<HandlerTable>,
    opts: &ControlOpts,
    reloads: crossbeam_channel::Sender<switchyard_control::ReloadRequest>,
) -> Result<(Arc<Control>, Servers), Failure> {
    let audit = match &opts.audit {
        Some(p) => Some(
            switchyard_control::audit::AuditLog::open(p)
                .map_err(|e| runtime(format!("--audit {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let state = opts.state.as_deref().map(switchyard_control::state::StateFile::new);
    let control = Arc::new(Control::new(table.clone(), audit, state));
    control.accept_reloads(reloads);
    let notes = match control.restore() {
        Ok(notes) => notes,
        Err(e) if opts.reset_state => {
            let moved = control
                .state_file()
                .map(|s| s.set_aside())
                .transpose()
                .map_err(|m| runtime(format!("--state: {e}; and it could not be moved aside: {m}")))?
                .unwrap_or_default();
            let moved: Vec<String> = moved.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "switchyard: warning: --reset-state: {e}; moved aside to {}; starting from the configuration's values",
                moved.join(", ")
            );
            control.restore().map_err(|e| runtime(format!("--state: {e}")))?
        }
        Err(e) => {
            return Err(runtime(format!(
                "--state: {e}\n(refusing to start with a damaged state: that would silently undo a rollback; \
                 fix or remove the file, or start with --reset-state to set it aside)"
            )))
        }
    };
    for note in notes {
        tracing::warn!("{note}");
        eprintln!("switchyard: warning: {note}");
    }
    let address = |flag: &str, m: &str| -> Result<std::net::SocketAddr, Failure> {
        match m.parse::<u16>() {
            Ok(port) => Ok((std::net::Ipv4Addr::LOCALHOST, port).into()),
            Err(_) => m
                .parse()
                .map_err(|_| usage(format!("{flag} '{m}': expected PORT or HOST:PORT"))),
        }
    };
    let mut metrics = Vec::new();
    if let Some(m) = &opts.metrics {
        let server = switchyard_http::serve_metrics(address("--metrics", m)?, control.clone(), opts.allow_remote)
            .map_err(|e| runtime(format!("--metrics: {e}")))?;
        eprintln!("switchyard: metrics on http://{}/metrics", server.local);
        metrics.push(server);
    }
    let mut dashboard = None;
    if let Some(h) = &opts.http {
        let alert_rules: Vec<switchyard_http::alerts::Rule> = opts
            .alert_rules
            .iter()
            .map(|r| switchyard_http::alerts::Rule::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage(format!("--alert-rule: {e}")))?
            .into_iter()
            .chain(match &opts.alert_rules_file {
                Some(f) => switchyard_http::alerts::rules_file(f).map_err(|e| usage(format!("--alert-rules {e}")))?,
                None => Vec::new(),
            })
            .collect();
        let options = || -> Result<switchyard_http::Options, Failure> {
            let tokens = match (&opts.http_tokens, opts.demo.as_ref().and_then(|d| d.token.as_ref())) {
                (Some(p), _) => Some(
                    switchyard_http::tokens::Tokens::from_file(p).map_err(|e| runtime(format!("--http-tokens {e}")))?,
                ),
                (None, Some(t)) => Some(
                    switchyard_http::tokens::Tokens::parse(&format!("demo write {t}")).expect("a well-formed token"),
                ),
                (None, None) => None,
            };
            Ok(switchyard_http::Options {
                api: true,
                tokens,
                allow_remote: opts.allow_remote,
                alert_rules: alert_rules.clone(),
                ..switchyard_http::Options::default()
            })
        };
        let addr = address("--http", h)?;
        let server = match switchyard_http::serve(addr, control.clone(), options()?) {
            // The demo's own port is taken (another demo): any port will
            // do. An address the user gave is theirs: an error.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && opts.demo.as_ref().is_some_and(|d| d.chose_http) => {
                switchyard_http::serve((addr.ip(), 0).into(), control.clone(), options()?)
            }
            r => r,
        }
        .map_err(|e| runtime(format!("--http: {e}")))?;
        eprintln!("switchyard: HTTP API on http://{}/api/v1/", server.local);
        eprintln!("switchyard: dashboard on http://{}/", server.local);
        dashboard = Some(server.local);
        metrics.push(server);
    }
    // --control last: its "listening" line means every socket is ready.
    let mut listens = Vec::new();
    if let Some(port) = opts.control_tcp {
        let ip = if opts.allow_remote {
            std::net::Ipv4Addr::UNSPECIFIED
        } else {
            std::net::Ipv4Addr::LOCALHOST
        };
        listens.push(Listen::Tcp {
            addr: (ip, port).into(),
            allow_remote: opts.allow_remote,
            token: None,
        });
    }
    for node in graph.nodes.iter().filter(|n| n.class == ControlSocket::CLASS.name) {
        let mut args = Args::parse_str(&node.name, &node.config);
        if let Some(l) = ControlSocket::parse(&mut args) {
            listens.push(l);
        }
    }
    if let Some(path) = &opts.control {
        let mode = u32::from_str_radix(opts.control_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                usage(format!(
                    "--control-mode '{}' is not an octal mode like 0660",
                    opts.control_mode
                ))
            })?;
        listens.push(Listen::Unix {
            path: path.clone(),
            mode,
            group: opts.control_group.clone(),
        });
    }
    let token = match &opts.control_token {
        Some(p) => Some(Token::from_file(p).map_err(|e| runtime(format!("--control-token: {e}")))?),
        None => None,
    };
    for l in &mut listens {
        if let Listen::Tcp { token: t, .. } = l {
            *t = token.clone();
        }
    }
    let limits = Limits {
        max_connections: opts.control_max,
        idle_timeout: Duration::from_secs(opts.control_idle.max(1)),
        command_timeout: Duration::from_secs(opts.control_command_timeout.max(1)),
        ..Limits::default()
    };
    let mut servers = Vec::new();
    for l in &listens {
        let server = match serve(l, control.clone(), limits) {
            // The demo's own socket is another demo's: one of its own. A
            // path the user gave is theirs: an error.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && opts.demo.as_ref().is_some_and(|d| d.has_socket) => {
                let Listen::Unix { mode, group, .. } = l else {
                    return Err(runtime(format!("control socket: {e}")));
                };
                let path = Demo::own_socket();
                let unix = Listen::Unix {
                    path: path.clone(),
                    mode: *mode,
                    group: group.clone(),
                };
                if let Some(d) = &opts.demo {
                    *d.socket.lock().expect("demo socket") = path;
                }
                serve(&unix, control.clone(), limits)
            }
            r => r,
        }
        .map_err(|e| runtime(format!("control socket: {e}")))?;
        servers.push(server);
    }
    if let Some(demo) = &opts.demo {
        demo.explain(dashboard);
    }
    for server in &servers {
        eprintln!("switchyard: control socket listening on {}", server.local());
    }
    // The fleet last: a router that acks must already be reachable.
    let fleet = match &opts.fleet {
        Some(url) => {
            let url = switchyard_fleet::FleetUrl::parse(url).map_err(|e| usage(format!("--fleet {e}")))?;
            let name = match &opts.fleet_name {
                Some(n) => n.clone(),
                None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default(),
            };
            switchyard_fleet::check_name(&name).map_err(|e| usage(format!("--fleet-name: {e}")))?;
            let gate_policy = switchyard_fleet::agent::GatePolicy::parse(&opts.fleet_gate_policy)
                .map_err(|e| usage(format!("--fleet-gate-policy: {e}")))?;
            let options = switchyard_fleet::agent::Options { url, name, gate_policy };
            Some(
                switchyard_fleet::agent::start(control.clone(), options)
                    .map_err(|e| runtime(format!("--fleet: {e}")))?,
            )
        }
        None => None,
    };
    Ok((
        control,
        Servers {
            _control: servers,
            _http: metrics,
            _fleet: fleet,
        },
    ))
}

fn run(registry: &Registry, job: &Job, defines: &[(String, String)], control: &ControlOpts) -> Result<(), Failure> {
    let (mut graph, table) =
        load_text_limited(job.name, job.text, registry, defines, job.limits).map_err(config_error)?;
    // Open devices and files now: an error stops the start, and the first
    // frame after "listening" finds the device open.
    switchyard_core::activate(&mut graph).map_err(|e| config_error(format!("{}: {e}", job.name)))?;
    // Check --handler names before starting, so a typo is not found only
    // at the end of a long run.
    for h in job.handlers {
        table.find(h).map_err(|e| usage(format!("--handler {h}: {e}")))?;
    }
    let (handlers, uptime) = serve_router(registry, job, defines, control, graph, table)?;
    if !job.quiet {
        eprintln!(
            "switchyard: stopped after {:.3}s: {}",
            uptime.as_secs_f64(),
            counters(&handlers)
        );
    }
    for h in job.handlers {
        let value = handlers.read(h).map_err(|e| runtime(format!("{h}: {e}")))?;
        print!("{h}:\n{value}");
        if !value.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}

/// Starts a loaded, activated router with its control sockets and serves
/// it until it stops: signals, reloads, the stats lines. Returns the
/// handler table it ended with, and how long it ran.
pub(crate) fn serve_router(
    registry: &Registry,
    job: &Job,
    defines: &[(String, String)],
    control: &ControlOpts,
    graph: Graph,
    table: HandlerTable,
) -> Result<(Arc<HandlerTable>, Duration), Failure> {
    let table = Arc::new(table);
    // Restore switch positions before the first packet moves.
    // Reloads are accepted before any socket listens: a client that
    // connects as soon as it can must find `hotconfig` writable.
    let (reload_tx, reloads) = crossbeam_channel::unbounded();
    // Signals are watched before any socket listens: once a client can
    // connect, a SIGNAL script's signal reaches it.
    let extra: Vec<i32> = script_signals(&table).into_iter().flat_map(|(_, s)| s).collect();
    let signals = watch_signals(&extra)?;
    let (control, servers) = start_control(&graph, &table, control, reload_tx)?;
    tracing::info!(config = job.name, elements = graph.nodes.len(), "configuration loaded");
    let mut router = Router::start_with(graph, table, control.clone());
    // The graph runs and every socket listens: ready, for systemd.
    crate::notify::notify("READY=1");

    if job.stats {
        eprintln!("switchyard: running {}; Ctrl-C stops", job.name);
    }
    let mut tick = 0u64;
    let mut next_tick = std::time::Instant::now() + Duration::from_secs(1);
    let mut stopping = false;
    loop {
        if router.wait_timeout(Duration::from_millis(20)) {
            break;
        }
        while let Ok(sig) = signals.try_recv() {
            // A SIGNAL script that takes the signal replaces its default.
            let number = match sig {
                Signal::Stop(n) | Signal::Other(n) => n,
                Signal::Reload => signal_hook::consts::SIGHUP,
            };
            if deliver_signal(&control, number) {
                continue;
            }
            match sig {
                Signal::Other(n) => {
                    // Its script is gone (a reload removed it): ignored.
                    tracing::warn!(signal = n, "signal no SIGNAL script takes now; ignored");
                }
                Signal::Stop(_) if stopping => {
                    eprintln!("switchyard: second signal, exiting now");
                    std::process::exit(130);
                }
                Signal::Stop(_) => {
                    stopping = true;
                    crate::notify::notify("STOPPING=1");
                    router.stopper().stop();
                }
                Signal::Reload => {
                    // SIGHUP: read the file given at start again, off this
                    // thread (the one that runs reloads and stops), as a
                    // bounded regular file: a FIFO there must not block it.
                    let peer = switchyard_control::Peer {
                        addr: Some("SIGHUP".into()),
                        ..Default::default()
                    };
                    let c = control.clone();
                    let file = job.name.to_string();
                    let max = job.limits.library_bytes.max(job.limits.config_bytes as u64);
                    std::thread::spawn(move || {
                        let text = match switchyard_core::read_config_file(Path::new(&file), max) {
                            Ok(t) => t,
                            Err(e) => {
                                eprintln!("switchyard: SIGHUP: {file}: {e}");
                                return;
                            }
                        };
                        if let Err(e) = c.reload_named(&file, &text, &peer) {
                            eprintln!("switchyard: SIGHUP reload refused:\n{e}");
                        }
                    });
                }
            }
        }
        while let Ok(req) = reloads.try_recv() {
            reload(&mut router, req, registry, job, defines, &control);
        }
        if std::time::Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            tick += 1;
            if job.stats {
                eprintln!("[{tick:>4}s] {}", counters(&control.table()));
            }
        }
    }
    let handlers = control.table();
    drop(servers);
    Ok((handlers, router.uptime()))
}

/// Replaces the running graph with one built from the request's text:
/// checked first (refused without touching anything), then swapped in by
/// [`Router::reload`]: unchanged threads keep running, the others pause
/// between batches and their elements hand state to their successors.
fn reload(
    router: &mut Router,
    req: switchyard_control::ReloadRequest,
    registry: &Registry,
    job: &Job,
    defines: &[(String, String)],
    control: &Arc<Control>,
) {
    if !req.start() {
        tracing::info!("reload cancelled by its requester before it started");
        return;
    }
    let name = job.name;
    let (graph, _) = match switchyard_core::load_text_for_client(&req.name, &req.text, registry, defines, job.limits) {
        Ok(g) => g,
        Err(e) => {
            let _ = req.reply.send(Err(e));
            return;
        }
    };
    if req.check {
        let plan = router.check_copies(&graph).map(|()| plan_text(&router.plan(&graph)));
        let _ = req.reply.send(plan);
        return;
    }
    // Control sockets are opened at start, outside the graph's threads.
    let old = router.handlers();
    let before: Vec<String> = old
        .elements()
        .iter()
        .filter(|e| e.class == ControlSocket::CLASS.name)
        .map(|e| old.read(&format!("{}.config", e.name)).unwrap_or_default())
        .collect();
    let after: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| n.class == ControlSocket::CLASS.name)
        .map(|n| n.config.clone())
        .collect();
    if before != after {
        tracing::warn!("ControlSocket elements changed: the open sockets stay as they are until a restart");
    }
    let result = router.reload(
        graph,
        |g| HandlerTable::named(g, registry, &req.text, name),
        |table| control.set_table(table.clone()),
    );
    match result {
        Ok(r) => {
            tracing::info!(
                threads_kept = r.threads_kept,
                threads_replaced = r.threads_replaced,
                threads_started = r.threads_started,
                carried = r.carried,
                pause_us = r.pause.as_micros() as u64,
                "configuration reloaded"
            );
            if !r.dropped_holding.is_empty() {
                tracing::warn!(elements = ?r.dropped_holding, "removed elements still held packets");
            }
            control.record_reload(&r);
            let _ = req.reply.send(Ok(String::new()));
        }
        Err(e) => {
            let _ = req.reply.send(Err(e));
        }
    }
}

fn connect(socket: Option<PathBuf>, tcp: Option<String>, token_file: Option<PathBuf>) -> Result<Client, Failure> {
    let r = match tcp {
        Some(addr) => {
            let file = token_file.or_else(|| std::env::var_os("SWITCHYARD_TOKEN_FILE").map(PathBuf::from));
            let token = match file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| runtime(format!("switchyard ctl: --token-file {}: {e}", f.display())))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            Client::tcp(&addr, token.as_deref())
        }
        None => {
            let path = socket
                .or_else(|| std::env::var_os("SWITCHYARD_SOCKET").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/run/switchyard.sock"));
            Client::unix(&path)
        }
    };
    r.map_err(|e| runtime(format!("switchyard ctl: cannot connect: {e}")))
}

fn ctl_error(e: ClientError) -> Failure {
    runtime(format!("switchyard ctl: {e}"))
}

fn println_value(v: &str) {
    print!("{v}");
    if !v.ends_with('\n') {
        println!();
    }
}

/// What the reload just accepted did (threads kept and replaced, pause),
/// for the operator who asked for it. A router without `last_reload`
/// (an older one) prints nothing.
fn print_reload(c: &mut Client) {
    if let Ok(line) = c.read("last_reload") {
        if !line.trim().is_empty() {
            println!("reloaded: {}", line.trim());
        }
    }
}

/// A reload plan for people: one line each for the threads kept, paused
/// and started (with their elements), and the elements carried, added and
/// removed.
fn plan_text(plan: &switchyard_core::ReloadPlan) -> String {
    use std::fmt::Write as _;
    let threads = |groups: &[Vec<String>]| -> String {
        let list: Vec<String> = groups.iter().map(|g| format!("({})", g.join(", "))).collect();
        format!("{} thread(s) {}", groups.len(), list.join(" "))
    };
    let names = |n: &[String]| if n.is_empty() { "none".to_string() } else { n.join(", ") };
    let mut out = String::new();
    let _ = writeln!(out, "keeps running: {}", threads(&plan.kept));
    let _ = writeln!(out, "pauses and replaces: {}", threads(&plan.replaced));
    let _ = writeln!(out, "starts: {}", threads(&plan.started));
    let _ = writeln!(out, "carries state: {}", names(&plan.carried));
    let _ = writeln!(out, "adds: {}", names(&plan.added));
    let _ = writeln!(out, "removes: {}", names(&plan.removed));
    out
}

fn ctl(
    socket: Option<PathBuf>,
    tcp: Option<String>,
    token_file: Option<PathBuf>,
    timeout: u64,
    action: Ctl,
) -> Result<(), Failure> {
    switchyard_io::default_sigpipe();
    let mut c = connect(socket, tcp, token_file)?;
    c.set_reply_timeout(Some(Duration::from_secs(timeout.max(1))))
        .map_err(|e| runtime(format!("switchyard ctl: {e}")))?;
    if matches!(action, Ctl::Reload { .. } | Ctl::RollbackConfig) {
        // A reload that started is reported as it ended, however long it
        // takes; the router cancels one that cannot start within 60 s.
        c.set_reply_timeout(None)
            .map_err(|e| runtime(format!("switchyard ctl: {e}")))?;
    }
    match action {
        Ctl::Read { handler, param } => println_value(&c.read_param(&handler, &param.join(" ")).map_err(ctl_error)?),
        Ctl::Write {
            handler,
            value,
            if_generation,
        } => {
            let name = match if_generation {
                Some(g) => format!("{handler}@{g}"),
                None => handler,
            };
            c.write(&name, &value.join(" ")).map_err(ctl_error)?;
        }
        Ctl::List => {
            let list = c.read("list").map_err(ctl_error)?;
            for name in list.lines().skip(1) {
                println!("{name}");
            }
        }
        Ctl::Handlers { element } => println_value(&c.read(&format!("{element}.handlers")).map_err(ctl_error)?),
        Ctl::Watch {
            handler,
            interval,
            count,
        } => {
            let mut n = 0;
            loop {
                println_value(c.read(&handler).map_err(ctl_error)?.trim_end());
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(interval));
            }
        }
        Ctl::Reload { file, check: true } => {
            // The router checks the text and plans against its running
            // threads, in its own namespace and with its own defines.
            c.write("hotconfig_check", &read(&file)?).map_err(ctl_error)?;
            print!("{}", c.read("last_check").map_err(ctl_error)?);
        }
        Ctl::Reload { file, check: false } => {
            c.write("hotconfig", &read(&file)?).map_err(ctl_error)?;
            print_reload(&mut c);
        }
        Ctl::RollbackConfig => {
            c.write("rollback_config", "").map_err(ctl_error)?;
            print_reload(&mut c);
        }
        Ctl::Status => print!("{}", status(&mut c).map_err(ctl_error)?),
        Ctl::Graph => print!("{}", live_graph(&mut c).map_err(ctl_error)?),
        Ctl::Batch => {
            use std::io::BufRead;
            let mut failed = 0;
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(|e| runtime(e.to_string()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let r = c.command(&line).map_err(|e| runtime(format!("switchyard ctl: {e}")))?;
                for (i, l) in r.lines.iter().enumerate() {
                    println!("{}{}{l}", r.code, if i + 1 < r.lines.len() { '-' } else { ' ' });
                }
                if let Some(d) = &r.data {
                    println_value(&String::from_utf8_lossy(d));
                }
                if !r.is_ok() {
                    failed += 1;
                }
            }
            if failed > 0 {
                return Err(runtime(format!("switchyard ctl: {failed} command(s) failed")));
            }
        }
    }
    Ok(())
}

/// Element names and classes of a running router.
fn elements_of(c: &mut Client) -> Result<Vec<(String, String)>, ClientError> {
    let list = c.read("list")?;
    list.lines()
        .skip(1)
        .map(|n| Ok((n.to_string(), c.read(&format!("{n}.class"))?)))
        .collect()
}

fn status(c: &mut Client) -> Result<String, ClientError> {
    use std::fmt::Write as _;
    let els = elements_of(c)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "switchyard {}, up {}s, {} elements, config {}",
        c.read("version")?,
        c.read("uptime")?,
        els.len(),
        c.read("config_name")?
    );
    let mut section = |title: &str, rows: Vec<String>| {
        if !rows.is_empty() {
            let _ = writeln!(out, "{title}:");
            for r in rows {
                let _ = writeln!(out, "  {r}");
            }
        }
    };
    let mut switches = Vec::new();
    let mut gates = Vec::new();
    let mut rates = Vec::new();
    for (name, class) in &els {
        match class.as_str() {
            "InputSwitch" | "Switch" => switches.push(format!(
                "{name:<16} {class:<13} switch={}",
                c.read(&format!("{name}.switch"))?
            )),
            "CanarySwitch" => switches.push(format!(
                "{name:<16} {class:<13} weights={}",
                c.read(&format!("{name}.weights"))?
            )),
            "Watchdog" => {
                let tripped = c.read(&format!("{name}.tripped"))?;
                let why = c.read(&format!("{name}.reason"))?;
                gates.push(format!("{name:<16} tripped={tripped} {why}"));
            }
            "Counter" => rates.push(format!("{name:<16} {:>12} packets/s", c.read(&format!("{name}.rate"))?)),
            _ => {}
        }
    }
    section("switches", switches);
    section("gates", gates);
    section("rates", rates);
    let reload = c.read("last_reload")?;
    section("last reload", reload.lines().map(str::to_string).collect());
    let audit = c.read("audit_tail")?;
    section("last writes", audit.lines().map(str::to_string).collect());
    Ok(out)
}

/// DOT of the running graph, rebuilt from each element's `ports` handler
/// (which names its peers), with counts and the selected switch path.
fn live_graph(c: &mut Client) -> Result<String, ClientError> {
    let els = elements_of(c)?;
    let class_of: std::collections::HashMap<&str, &str> = els.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
    let mut position = std::collections::HashMap::new();
    let mut nodes = Vec::new();
    for (name, class) in &els {
        let mut label = vec![name.clone(), class.clone()];
        if let Ok(v) = c.read(&format!("{name}.count")) {
            label.push(format!("{} packets", v.trim()));
        }
        nodes.push((name.clone(), label));
        if class == "InputSwitch" || class == "Switch" {
            if let Ok(p) = c.read(&format!("{name}.switch")) {
                position.insert(name.clone(), p.trim().parse::<i64>().unwrap_or(-1));
            }
        }
    }
    let mut edges = Vec::new();
    for (name, class) in &els {
        let ports = c.read(&format!("{name}.ports"))?;
        // "N outputs" is followed by one line per output: processing, '-',
        // then the connected "[port]name" peers.
        let Some((_, outputs)) = ports.split_once(" outputs\n").or_else(|| ports.split_once(" output\n")) else {
            continue;
        };
        for (out_port, line) in outputs.lines().enumerate() {
            let peers = line.split('\t').nth(2).unwrap_or("");
            for peer in peers.split(", ").filter(|p| !p.is_empty()) {
                let Some((in_port, target)) = peer.strip_prefix('[').and_then(|p| p.split_once(']')) else {
                    continue;
                };
                let in_port = in_port.parse().unwrap_or(0);
                let to_class = class_of.get(target).copied().unwrap_or("");
                let selected = crate::dot::selected(
                    class,
                    to_class,
                    out_port,
                    in_port,
                    position.get(name).copied(),
                    position.get(target).copied(),
                );
                edges.push(crate::dot::Edge {
                    from: name.clone(),
                    out_port,
                    to: target.to_string(),
                    in_port,
                    selected,
                });
            }
        }
    }
    Ok(crate::dot::render(&nodes, &edges))
}

enum Signal {
    Stop(i32),
    Reload,
    /// Another signal a SIGNAL script asked for.
    Other(i32),
}

/// The signals SIGNAL scripts of `table` take (their `signals` handler).
fn script_signals(table: &HandlerTable) -> Vec<(String, Vec<i32>)> {
    table
        .elements()
        .iter()
        .filter(|e| e.class == "Script" && e.handlers.iter().any(|h| h.name == "signals" && !h.proxy))
        .filter_map(|e| {
            let list = table.read(&format!("{}.signals", e.name)).ok()?;
            Some((
                e.name.clone(),
                list.split_whitespace().filter_map(|n| n.parse().ok()).collect(),
            ))
        })
        .collect()
}

/// Runs the SIGNAL scripts that take `sig` (writes their `run`, through
/// the control plane as actor `signal`); false if none does.
fn deliver_signal(control: &Control, sig: i32) -> bool {
    use switchyard_core::ControlPlane;
    let mut taken = false;
    for (name, signals) in script_signals(&control.table()) {
        if signals.contains(&sig) {
            taken = true;
            if let Err(e) =
                ControlPlane::write_as(control, &format!("{name}.run"), "", "signal", &format!("signal {sig}"))
            {
                eprintln!("switchyard: signal {sig}: {name}: {e}");
            }
        }
    }
    taken
}

/// SIGINT and SIGTERM stop the router cleanly (a second one exits at
/// once); SIGHUP reloads the configuration file; `extra` are the other
/// signals SIGNAL scripts take. Delivered to the main loop as [`Signal`]s.
fn watch_signals(extra: &[i32]) -> Result<crossbeam_channel::Receiver<Signal>, Failure> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut wanted = vec![SIGINT, SIGTERM, SIGHUP];
    wanted.extend(extra.iter().filter(|s| !signal_hook::consts::FORBIDDEN.contains(s)));
    wanted.sort_unstable();
    wanted.dedup();
    let mut signals = signal_hook::iterator::Signals::new(&wanted)
        .map_err(|e| runtime(format!("cannot install signal handlers: {e}")))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                tracing::info!(signal = sig, "signal");
                let s = match sig {
                    SIGHUP => Signal::Reload,
                    SIGINT | SIGTERM => Signal::Stop(sig),
                    other => Signal::Other(other),
                };
                if tx.send(s).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| runtime(e.to_string()))?;
    Ok(rx)
}

/// One line of every Counter's count and every switch's position.
fn counters(table: &Arc<HandlerTable>) -> String {
    let mut parts = Vec::new();
    for e in table.elements() {
        for h in ["count", "drops", "switch"] {
            if e.handlers.iter().any(|x| x.name == h && x.read.is_some()) {
                if let Ok(v) = table.read(&format!("{}.{h}", e.name)) {
                    parts.push(format!("{}.{h}={}", e.name, v.trim()));
                }
            }
        }
    }
    parts.join(" ")
}

fn elements(registry: &Registry, class: Option<&str>) -> Result<(), Failure> {
    let plain = |doc: &str| -> String {
        doc.lines()
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match class {
        None => {
            let width = registry.classes().iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in registry.classes() {
                let summary = summary(c.doc);
                println!("{:<width$} {:<6} {:<5} {summary}", c.name, c.ports, c.processing);
            }
            Ok(())
        }
        Some(name) => {
            let c = registry.get(name).ok_or_else(|| {
                let hint = registry
                    .suggest(name)
                    .map(|s| format!("; did you mean '{s}'?"))
                    .unwrap_or_default();
                usage(format!("unknown element class '{name}'{hint}"))
            })?;
            println!("{} (ports {}, processing {})\n", c.name, c.ports, c.processing);
            print!("{}", plain(c.doc));
            Ok(())
        }
    }
}

/// The first sentence of a doc comment's first paragraph.
fn summary(doc: &str) -> String {
    let para: Vec<&str> = doc.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
    let para = para.join(" ");
    match para.find(". ") {
        Some(i) => para[..i + 1].to_string(),
        None => para,
    }
}

/// The graph of a configuration file in DOT, with the path each switch
/// selects at start drawn bold.
fn dot(graph: &switchyard_core::Graph, table: &HandlerTable) -> String {
    let nodes: Vec<(String, Vec<String>)> = graph
        .nodes
        .iter()
        .map(|n| {
            let class = if n.config.is_empty() {
                n.class.to_string()
            } else {
                format!("{}({})", n.class, n.config)
            };
            (n.name.clone(), vec![n.name.clone(), class])
        })
        .collect();
    let position = |e: usize| -> Option<i64> {
        table
            .read(&format!("{}.switch", graph.nodes[e].name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let edges: Vec<crate::dot::Edge> = graph
        .connections
        .iter()
        .map(|(f, t)| crate::dot::Edge {
            from: graph.nodes[f.element].name.clone(),
            out_port: f.port as usize,
            to: graph.nodes[t.element].name.clone(),
            in_port: t.port as usize,
            selected: crate::dot::selected(
                graph.nodes[f.element].class,
                graph.nodes[t.element].class,
                f.port as usize,
                t.port as usize,
                position(f.element),
                position(t.element),
            ),
        })
        .collect();
    crate::dot::render(&nodes, &edges)
}

/// What the built-in demo opens when the command line does not say: a
/// control socket at a default path and the dashboard on a loopback port
/// with a fresh write token, so that a newcomer can go live and roll back
/// without restarting anything.
pub struct Demo {
    /// The dashboard's write token (None: the user gave --http-tokens).
    token: Option<String>,
    /// The control socket (None: the user gave --control or
    /// --control-tcp); another demo's socket makes it one of its own.
    socket: std::sync::Mutex<PathBuf>,
    has_socket: bool,
    /// The dashboard's address is the demo's (not --http's).
    chose_http: bool,
}

/// The demo's dashboard port, when free.
pub const DEMO_HTTP: &str = "127.0.0.1:8421";

impl Demo {
    fn fill(opts: &mut ControlOpts) {
        let has_socket = opts.control.is_none() && opts.control_tcp.is_none();
        let socket = Demo::default_socket();
        if has_socket {
            opts.control = Some(socket.clone());
        }
        // The dashboard, with a write token of its own, unless the user
        // chose an address (then the usual rules: --http-tokens or
        // read-only).
        let chose_http = opts.http.is_none();
        if chose_http {
            opts.http = Some(DEMO_HTTP.to_string());
        }
        opts.demo = Some(Demo {
            token: (chose_http && opts.http_tokens.is_none()).then(random_token).flatten(),
            socket: std::sync::Mutex::new(socket),
            has_socket,
            chose_http,
        });
    }

    /// `$XDG_RUNTIME_DIR/switchyard.sock`, else `./switchyard.sock`.
    fn default_socket() -> PathBuf {
        let dir = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        dir.join("switchyard.sock")
    }

    fn own_socket() -> PathBuf {
        Demo::default_socket().with_file_name(format!("switchyard-{}.sock", std::process::id()))
    }

    /// Prints where the dashboard is and the two lines that go live and
    /// roll back.
    fn explain(&self, dashboard: Option<std::net::SocketAddr>) {
        let me = std::env::args().next().unwrap_or_else(|| "switchyard".into());
        eprintln!("switchyard: the rollback demo: both branches see every packet; sel.switch picks which one reaches production (0 old, 1 new)");
        if let Some(addr) = dashboard {
            let token = self.token.as_ref().map(|t| format!("#token={t}")).unwrap_or_default();
            eprintln!("switchyard:   dashboard  http://{addr}/{token}");
        }
        if self.has_socket {
            let socket = self.socket.lock().expect("demo socket").display().to_string();
            eprintln!("switchyard:   go live    {me} ctl -s {socket} write sel.switch 1");
            eprintln!("switchyard:   roll back  {me} ctl -s {socket} write sel.switch 0");
        }
    }
}

/// 128 random bits, hex: the demo's write token.
/// None without /dev/urandom: then the demo's dashboard is read-only
/// rather than guarded by a guessable token.
fn random_token() -> Option<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if let Err(e) = filled {
        eprintln!("switchyard: warning: /dev/urandom: {e}; the demo's dashboard is read-only");
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `switchyard fleet ...`: the operator's side.
fn fleet(etcd: Option<String>, action: crate::cli::FleetCmd) -> Result<(), Failure> {
    use crate::cli::FleetCmd;
    use switchyard_fleet::operator::Action;
    let url = etcd
        .or_else(|| std::env::var("SWITCHYARD_ETCD").ok())
        .ok_or_else(|| usage("fleet: give --etcd etcd://HOST:PORT/PREFIX (or SWITCHYARD_ETCD)"))?;
    let url = switchyard_fleet::FleetUrl::parse(&url).map_err(|e| usage(format!("--etcd {e}")))?;
    let secs = |t: f64| {
        if t.is_finite() && t > 0.0 && t <= 3600.0 {
            Ok(Duration::from_secs_f64(t))
        } else {
            Err(usage(format!(
                "--timeout {t}: expected seconds, more than 0, at most 3600"
            )))
        }
    };
    let action = match action {
        FleetCmd::Status => Action::Status,
        FleetCmd::Set {
            handler,
            value,
            timeout,
            no_atomic,
            pause,
        } => Action::Set {
            values: vec![(handler, value.join(" "))],
            timeout: secs(timeout)?,
            atomic: !no_atomic,
            pause: if pause == 0.0 {
                Duration::ZERO
            } else {
                secs(pause).map_err(|_| usage(format!("--pause {pause}: expected seconds, at most 3600")))?
            },
        },
        FleetCmd::Rollback { timeout } => Action::Rollback {
            timeout: secs(timeout)?,
        },
        FleetCmd::Watch { count } => Action::Watch { count },
    };
    switchyard_fleet::operator::run(&url, action).map_err(|(code, message)| Failure {
        code: code as u8,
        message: format!("fleet: {message}"),
    })
}
