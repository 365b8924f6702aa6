use super::script_expr::{self, ExprEnv};
use super::script_program::{Ending, Exec, Flow, Host, Kind, Program};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use switchyard_core::{
    documented, Args, Batch, Context, ControlPlane, Element, ElementClass, Handler, PortInfo, StopEvents, Waker, Work,
};

documented! {
    /// Click's scripting language, inside the router: set variables, read
    /// and write handlers, wait, loop, and stop the router. It is how a
    /// rollback procedure lives next to the switch it steers ("raise the
    /// canary 1% a minute while divergence stays low, else roll back"):
    /// every write goes through the router's control plane, so it is
    /// validated, audited (actor `script`) and persisted like an
    /// operator's.
    ///
    /// # Ports
    /// None, except for TYPE PACKET: any number of agnostic inputs and
    /// outputs.
    ///
    /// # Arguments
    /// - `INSTRUCTION` (positional, any number): one instruction each,
    ///   Click's: `set VAR TEXT`, `setq`, `init VAR TEXT`, `initq`,
    ///   `export VAR [TEXT]`, `exportq`, `print [>FILE | >>FILE] TEXT |
    ///   HANDLER [ARGS]`, `printq`, `printn`, `printnq`, `save TEXT
    ///   [FILE]`, `append TEXT [FILE]`, `read HANDLER [ARGS]`, `readq`,
    ///   `write HANDLER [VALUE]`, `writeq`, `pause [N]` (`wait_step`,
    ///   `wait_stop`), `wait TIME` (`wait_time`, `wait_for`), `label L`,
    ///   `goto L [CONDITION]` (L may be `begin`, `loop`, `end`, `exit`,
    ///   `stop`, `error`), `loop`, `end`, `exit`, `stop`, `return
    ///   [VALUE]`, `returnq`, `error [MESSAGE]`, `errorq`. Text is
    ///   expanded: `$VAR`, `${VAR}`, `$(HANDLER ARGS)` (nested; a name
    ///   without an element is this script's own handler, else a global
    ///   one), `$?` (the last write's status), `$#`, `$1`..., `$args`,
    ///   `$0`, `$write`, `$input`. An undefined variable stays as written.
    /// - `TYPE`: `ACTIVE` (runs when the router starts; the default without
    ///   ports), `PASSIVE` (runs when its `run` handler is called),
    ///   `PACKET` (runs per packet; `$input` is the input port, `return N`
    ///   sends it to output N, `end` to output 0, `exit` drops it; the
    ///   default with ports), `DRIVER` (decides when the router stops:
    ///   see DriverManager), `SIGNAL SIG...` (runs as `run` when the
    ///   router process gets one of the signals: HUP, INT, QUIT, ABRT,
    ///   USR1, USR2, PIPE, ALRM, TERM, TSTP, IO; a script taking INT or
    ///   TERM replaces the stop they would make), `PROXY` (runs for any
    ///   handler name the script has no handler of its own for: `$0` is
    ///   the name, `$args` the value or parameter, `$write` whether it
    ///   was written; a read returns what `return` gave).
    ///
    /// # Handlers
    /// - `run` (read with parameters, write): runs the script from the
    ///   top with `$args` set; a read returns what `return` gave.
    /// - `signals` (read, TYPE SIGNAL only): the signal numbers it takes.
    /// - `step` (write): passes N (default 1) blocking instructions.
    /// - `goto` (write): jumps to a label and runs from there.
    /// - `get VAR` (read with parameter), `set` (write `VAR VALUE`),
    ///   `shift [VAR]` (read: removes and returns VAR's first word).
    /// - one read handler per `export`ed variable.
    /// - Click's expression handlers, read with parameters: `add`, `sub`,
    ///   `mul`, `div`, `idiv`, `mod`, `rem`, `neg`, `abs`, `min`, `max`,
    ///   `eq`, `ne`, `lt`, `gt`, `le`, `ge`, `not`, `and`, `or`, `nand`,
    ///   `nor`, `if`, `in`, `first`, `length`, `unquote`, `sprintf`,
    ///   `random`, `now`, `htons`, `ntohs`, `htonl`, `ntohl`, `cat`,
    ///   `catq` (`$(add $x 1)`; `ctl read s.add 1 2` prints 3).
    ///
    /// # Example
    /// ```text
    /// // Raise the canary 10 points a minute while the shadow comparison
    /// // stays clean; at the first divergence, roll back.
    /// Script(set w 0,
    ///        label up,
    ///        goto back $(gt $(shadow.diverged) 0),
    ///        set w $(min 100 $(add $w 10)),
    ///        write canary.weights $(sub 100 $w) $w,
    ///        wait 60s,
    ///        goto up $(lt $w 100),
    ///        exit,
    ///        label back,
    ///        write canary.weights 100 0);
    /// ```
    pub struct Script {
        shared: Arc<ScriptShared>,
        /// TYPE as written; decided at initialize when not given.
        kind: Option<Kind>,
        default_driver: bool,
    }
}

documented! {
    /// Click's DriverManager: a Script of TYPE DRIVER, which decides when
    /// the router stops. A stop request (a source's `STOP true`, a write
    /// to the global `stop`, a Script's `stop`) is a step for it instead
    /// of a stop: `pause` (`wait_stop`) waits for one, `wait TIME` ends
    /// early at one. The router stops when the script reaches `stop` or
    /// its end. At most one driver script per configuration.
    ///
    /// # Ports
    /// None.
    ///
    /// # Arguments
    /// - `INSTRUCTION` (positional, any number): Script's instructions;
    ///   with none, it waits for one stop request and stops.
    ///
    /// # Handlers
    /// Script's.
    ///
    /// # Example
    /// ```text
    /// // Two sources with STOP true: print between them, stop after both.
    /// DriverManager(wait_stop, print "first done", wait_stop, stop);
    /// ```
    pub struct DriverManager;
}

/// What the element, its task and its handlers share.
pub(super) struct ScriptShared {
    name: String,
    program: Program,
    kind: OnceLock<Kind>,
    exec: Mutex<Exec>,
    /// Steps from the `step` handler and, for a driver, stop requests.
    steps: Arc<StopEvents>,
    control: OnceLock<Weak<dyn ControlPlane>>,
    exports: Vec<String>,
    /// For TYPE SIGNAL: the signals that run it.
    signals: Vec<i32>,
    /// See [`Host::last_error`].
    last_error: std::sync::atomic::AtomicU64,
    /// Blocked at `pause` or `wait`: a posted step is work for its thread.
    awaiting: std::sync::atomic::AtomicBool,
}

impl Script {
    pub const CLASS: ElementClass = ElementClass {
        name: "Script",
        ports: "-/-",
        processing: "a/a",
        doc: Script::DOC,
        factory: Script::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        Script::configure(args, false)
    }

    fn configure(args: &mut Args, default_driver: bool) -> Option<Box<dyn Element>> {
        let kind = args.read::<String>("TYPE").map(|t| (Kind::parse(&t), t));
        let instructions = args.rest_positional();
        let mut signals = Vec::new();
        let kind = match kind {
            Some((Ok((k, s)), _)) => {
                signals = s;
                Some(k)
            }
            Some((Err(e), t)) => {
                args.error(Some(args.span_of("TYPE")), format!("TYPE {t}: {e}"));
                None
            }
            None => default_driver.then_some(Kind::Driver),
        };
        // An empty DriverManager waits for one stop request, as Click's.
        let instructions = if instructions.is_empty() && kind == Some(Kind::Driver) {
            vec![("pause".to_string(), args.span_of("TYPE"))]
        } else {
            instructions
        };
        let program = match Program::parse(&instructions) {
            Ok(p) => p,
            Err((span, e)) => {
                args.error(Some(span), e);
                return None;
            }
        };
        // An exported variable is a handler: it may not take the name of
        // one the script has (`signals` would even steer the process).
        const OWN: [&str; 7] = ["run", "step", "goto", "get", "set", "shift", "signals"];
        for var in program.exports() {
            if OWN.contains(&var.as_str()) || script_expr::NAMES.contains(&var.as_str()) {
                args.error(None, format!("export {var}: Script has a handler of that name"));
            }
        }
        if args.has_errors() {
            return None;
        }
        let shared = Arc::new(ScriptShared {
            name: args.name().to_string(),
            exec: Mutex::new(Exec::new(&program, ExprEnv::new())),
            exports: program.exports(),
            signals,
            last_error: Default::default(),
            awaiting: Default::default(),
            program,
            kind: OnceLock::new(),
            steps: Arc::default(),
            control: OnceLock::new(),
        });
        Some(Box::new(Script {
            shared,
            kind,
            default_driver,
        }))
    }
}

impl DriverManager {
    pub const CLASS: ElementClass = ElementClass {
        name: "DriverManager",
        ports: "0/0",
        processing: "",
        doc: DriverManager::DOC,
        factory: DriverManager::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        Script::configure(args, true)
    }
}

thread_local! {
    /// The scripts this thread is executing: a script whose handler is
    /// called from inside its own run (directly or through another
    /// script) gets an error, not a deadlock on its own state.
    static RUNNING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ScriptShared {
    fn kind(&self) -> Kind {
        self.kind.get().copied().unwrap_or(Kind::Active)
    }

    fn host(&self) -> Result<Arc<dyn ControlPlane>, String> {
        self.control
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| "no router is running this script".to_string())
    }

    /// Runs `f` on the script's state, unless this thread is already
    /// inside this script; called from inside another script, only if the
    /// state is free at once (two scripts on two threads calling each
    /// other would otherwise wait for each other forever).
    fn with_exec<R>(self: &Arc<Self>, f: impl FnOnce(&mut Exec) -> R) -> Result<R, String> {
        struct Running(usize);
        impl Drop for Running {
            fn drop(&mut self) {
                RUNNING.with(|r| r.borrow_mut().retain(|&p| p != self.0));
            }
        }
        let me = Arc::as_ptr(self) as usize;
        let nested = RUNNING.with(|r| {
            let r = r.borrow();
            (r.contains(&me), !r.is_empty())
        });
        if nested.0 {
            return Err(format!("'{}' is running: a script cannot call itself", self.name));
        }
        let mut guard = if nested.1 {
            match self.exec.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Err(format!("'{}' is busy", self.name)),
            }
        } else {
            self.exec.lock().unwrap_or_else(|p| p.into_inner())
        };
        RUNNING.with(|r| r.borrow_mut().push(me));
        let _running = Running(me);
        Ok(f(&mut guard))
    }

    /// Executes from where the script stands until it blocks or ends,
    /// and does what its ending asks (stop the router, mark a driver
    /// ended).
    fn execute(self: &Arc<Self>, ex: &mut Exec, control: &dyn ControlPlane) -> Flow {
        let host = Host {
            name: &self.name,
            control,
            steps: &self.steps,
            kind: self.kind(),
            exports: &self.exports,
            last_error: &self.last_error,
        };
        let flow = self.program.execute(ex, &host);
        self.awaiting
            .store(matches!(flow, Flow::Blocked(_)), std::sync::atomic::Ordering::SeqCst);
        if let Flow::Ended(end) = &flow {
            let driver = self.kind() == Kind::Driver;
            if driver {
                // Once it ended, stop requests stop the router again.
                self.steps.end();
            }
            // A driver that ends on a stop request (or with one waiting)
            // lets it stop the router, as Click's driver does.
            let driver_stops = driver && (ex.router_step || self.steps.requests() > 0);
            if matches!(end, Ending::Stop) || driver_stops {
                let reason = format!("{} :: Script: stop", self.name);
                if let Err(e) = control.write_as("stop", "1", "script", &reason) {
                    host.error(&e);
                }
            }
        }
        flow
    }

    /// The `run` handler: from the top, with `args`; the return value.
    fn run(self: &Arc<Self>, args: &str, write: bool) -> Result<String, String> {
        self.run_as("run", args, write)
    }

    /// Runs from the top as handler `handler` (`$0`) with `args`.
    fn run_as(self: &Arc<Self>, handler: &str, args: &str, write: bool) -> Result<String, String> {
        let control = self.host()?;
        self.with_exec(|ex| {
            ex.restart(args, handler, write);
            match self.execute(ex, control.as_ref()) {
                Flow::Ended(Ending::Return(v)) => Ok(v),
                Flow::Ended(Ending::Error) if write => Err("the script ended with an error".to_string()),
                _ => Ok(String::new()),
            }
        })?
    }

    /// Steps a script that no task runs (PASSIVE) on the caller's thread.
    fn continue_passive(self: &Arc<Self>) -> Result<(), String> {
        if !matches!(self.kind(), Kind::Passive | Kind::Signal | Kind::Proxy) {
            return Ok(());
        }
        let control = self.host()?;
        self.with_exec(|ex| {
            if ex.is_blocked() {
                self.execute(ex, control.as_ref());
            }
        })
    }

    fn handlers(self: &Arc<Self>, proxy: bool) -> Vec<Handler> {
        let mut h = Vec::new();
        if proxy {
            // Click's handler proxy: every name the script has no handler
            // of its own for runs it, `$0` the name.
            let (a, b) = (self.clone(), self.clone());
            let split = |v: &str| -> (String, String) {
                let (name, rest) = v.trim_start().split_once(' ').unwrap_or((v.trim(), ""));
                (name.to_string(), rest.to_string())
            };
            h.push(Handler::proxy(
                move |v| {
                    let (name, args) = split(v);
                    a.run_as(&name, &args, false)
                },
                move |v| {
                    let (name, value) = split(v);
                    b.run_as(&name, &value, true).map(drop)
                },
            ));
        }
        let (a, b) = (self.clone(), self.clone());
        h.push(Handler {
            write: Some(Arc::new(move |v: &str| b.run(v, true).map(drop))),
            ..Handler::read_with_param("run", move |p| a.run(p, false))
        });
        let s = self.clone();
        h.push(Handler::write_only("step", move |v| {
            let n = match v.trim() {
                "" | "router" => 1,
                t => t.parse::<u64>().map_err(|_| "syntax error".to_string())?,
            };
            s.steps.post(n);
            s.continue_passive()
        }));
        let s = self.clone();
        h.push(Handler::write_only("goto", move |v| {
            let control = s.host()?;
            s.with_exec(|ex| {
                ex.jump_to_label(&s.program, v.trim())?;
                s.execute(ex, control.as_ref());
                Ok(())
            })?
        }));
        if !self.signals.is_empty() {
            // What the process must deliver here (as a `run` write).
            let list = self.signals.iter().map(i32::to_string).collect::<Vec<_>>().join(" ");
            h.push(Handler::read_only("signals", move || list.clone()));
        }
        let s = self.clone();
        h.push(Handler::read_with_param("get", move |v| {
            s.with_exec(|ex| {
                ex.get(v.trim())
                    .ok_or_else(|| format!("undefined variable '{}'", v.trim()))
            })?
        }));
        let s = self.clone();
        h.push(Handler::write_only("set", move |v| {
            let (var, value) = v.trim().split_once(char::is_whitespace).unwrap_or((v.trim(), ""));
            s.with_exec(|ex| ex.set(var, value.trim_start()))
        }));
        let s = self.clone();
        h.push(Handler::read_with_param("shift", move |v| {
            s.with_exec(|ex| ex.shift(if v.trim().is_empty() { "args" } else { v.trim() }))?
        }));
        for var in self.program.exports() {
            let s = self.clone();
            let name = var.clone();
            h.push(Handler::read_only(&var, move || {
                s.with_exec(|ex| ex.get(&name).unwrap_or_default()).unwrap_or_default()
            }));
        }
        for name in script_expr::NAMES {
            let s = self.clone();
            h.push(Handler::read_with_param(name, move |args| {
                s.with_exec(|ex| script_expr::call(name, args, &mut ex.env))?
                    .unwrap_or_else(|| Err(format!("no handler '{name}'")))
            }));
        }
        h
    }
}

impl Element for Script {
    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        let has_ports = !ports.inputs.is_empty() || !ports.outputs.is_empty();
        let kind = self.kind.unwrap_or(if has_ports && !self.default_driver {
            Kind::Packet
        } else {
            Kind::Active
        });
        let kind = if self.default_driver && self.kind.is_none() {
            Kind::Driver
        } else {
            kind
        };
        match kind {
            Kind::Packet if ports.inputs.is_empty() => return Err("PACKET script must have inputs".into()),
            Kind::Packet => {}
            _ if has_ports => return Err("ports allowed only on PACKET scripts".into()),
            _ => {}
        }
        let _ = self.shared.kind.set(kind);
        // A passive script is a task too, for the `wait`s it blocks on.
        Ok(matches!(
            kind,
            Kind::Active | Kind::Driver | Kind::Passive | Kind::Signal
        ))
    }

    fn exports(&self) -> Vec<(String, switchyard_core::Export)> {
        // Two driver scripts would each claim the router's stop requests.
        match self.kind.or(self.default_driver.then_some(Kind::Driver)) {
            Some(Kind::Driver) => vec![("driver script".to_string(), Arc::new(()) as switchyard_core::Export)],
            _ => Vec::new(),
        }
    }

    fn attach_control(&mut self, control: &Weak<dyn ControlPlane>) {
        let _ = self.shared.control.set(control.clone());
    }

    fn attach_thread(&mut self, waker: &Waker) {
        self.shared.steps.attach(waker);
    }

    fn has_pending(&self) -> bool {
        self.shared.awaiting.load(std::sync::atomic::Ordering::SeqCst) && self.shared.steps.any()
    }

    fn stop_events(&self) -> Option<Arc<StopEvents>> {
        (self.shared.kind() == Kind::Driver && self.shared.kind.get().is_some()).then(|| self.shared.steps.clone())
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if cx.stopping() {
            return Work::Done;
        }
        let control = cx.control().clone();
        let shared = self.shared.clone();
        let passive = matches!(shared.kind(), Kind::Passive | Kind::Signal | Kind::Proxy);
        let flow = shared.with_exec(|ex| {
            // A passive script runs when called; its task only resumes it.
            if !ex.is_runnable() || (passive && !ex.is_blocked()) {
                return None;
            }
            Some(shared.execute(ex, control.as_ref()))
        });
        match flow {
            Ok(Some(Flow::Blocked(Some(at)))) => Work::SleepUntil(at),
            // Ended or waiting for a step: a `run`, `goto` or step wakes it.
            _ => Work::Idle,
        }
    }

    fn push(&mut self, port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let control = cx.control().clone();
        let shared = self.shared.clone();
        let outputs = cx.noutputs();
        let mut out: Vec<Batch> = Vec::new();
        let routed = shared.with_exec(|ex| {
            for p in batch.drain() {
                ex.restart("", "", false);
                ex.set_input(port);
                let to = match shared.execute(ex, control.as_ref()) {
                    Flow::Ended(Ending::End) => Some(0),
                    Flow::Ended(Ending::Return(v)) => {
                        let v = v.trim();
                        <i64 as switchyard_core::FromArg>::from_arg(v.strip_prefix('+').unwrap_or(v))
                            .and_then(|n| usize::try_from(n).ok())
                    }
                    _ => None,
                };
                if let Some(to) = to.filter(|&o| o < outputs) {
                    if out.len() <= to {
                        out.resize_with(to + 1, Batch::new);
                    }
                    out[to].push(p);
                }
            }
        });
        if routed.is_ok() {
            for (i, b) in out.into_iter().enumerate() {
                if !b.is_empty() {
                    cx.push(i, b);
                }
            }
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        self.shared.handlers(self.kind == Some(Kind::Proxy))
    }
}
