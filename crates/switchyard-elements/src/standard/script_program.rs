//! Script's language: instructions parsed once at configure time, the
//! interpreter state, Click's text expansion (`$x`, `${x}`, `$(h args)`)
//! and the interpreter loop. Handlers are reached through the router's
//! control plane ([`Host`]), so this module never touches the graph.

use super::script_expr::{self, quote, truth, unquote, ExprEnv};
use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};
use switchyard_core::args::{FromArg, Seconds};
use switchyard_core::{ControlPlane, StopEvents};
use switchyard_lang::Span;

/// Click's Script TYPEs that Switchyard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Active,
    Passive,
    Packet,
    Driver,
    /// Runs, as `run`, when the process gets one of its signals.
    Signal,
    /// Runs for any handler name the element does not have: `$0` is the
    /// name, `$write` whether it was written.
    Proxy,
}

/// The signals a SIGNAL script may name (Click's list; Linux numbers).
const SIGNALS: [(&str, i32); 11] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ABRT", 6),
    ("USR1", 10),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("TSTP", 20),
    ("IO", 29),
];

impl Kind {
    /// A TYPE and, for SIGNAL, the signal numbers it names.
    pub(super) fn parse(t: &str) -> Result<(Kind, Vec<i32>), String> {
        let mut words = t.split_whitespace();
        let kind = match words.next().unwrap_or("") {
            "ACTIVE" => Kind::Active,
            "PASSIVE" => Kind::Passive,
            "PACKET" | "PUSH" => Kind::Packet,
            "DRIVER" => Kind::Driver,
            "SIGNAL" => {
                let signals: Vec<i32> = words
                    .map(|w| {
                        let w = w.strip_prefix("SIG").unwrap_or(w);
                        SIGNALS
                            .iter()
                            .find(|(n, _)| *n == w)
                            .map(|&(_, n)| n)
                            .ok_or("bad signal number")
                    })
                    .collect::<Result<_, _>>()?;
                if signals.is_empty() {
                    return Err("bad signal number".into());
                }
                return Ok((Kind::Signal, signals));
            }
            "PROXY" => Kind::Proxy,
            _ => return Err("bad TYPE".into()),
        };
        match words.next() {
            Some(_) => Err("bad TYPE".into()),
            None => Ok((kind, Vec::new())),
        }
    }
}

/// Where a `goto` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Insn(usize),
    End,
    Exit,
    Stop,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Set {
        q: bool,
    },
    Init {
        q: bool,
    },
    Export {
        q: bool,
    },
    Print {
        q: bool,
        newline: bool,
    },
    /// `save` / `append`: TEXT [FILE].
    Save {
        append: bool,
    },
    Read {
        q: bool,
    },
    Write {
        q: bool,
    },
    Pause(u32),
    Wait,
    Label,
    Goto(Target),
    End,
    Exit,
    Stop,
    Return {
        q: bool,
    },
    Error {
        q: bool,
    },
}

struct Insn {
    op: Op,
    /// The operand, unexpanded (for `goto`, the condition).
    text: String,
}

/// A parsed script.
pub(super) struct Program {
    insns: Vec<Insn>,
    labels: HashMap<String, usize>,
}

/// How a script ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    End,
    Exit,
    Stop,
    Return(String),
    Error,
}

/// What one execution came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// At `pause` (None) or `wait` (until then, or a step).
    Blocked(Option<Instant>),
    Ended(Ending),
}

/// Taken gotos without blocking before the script is disabled (Click's).
const MAX_JUMPS: u32 = 1000;
/// Longest text an expansion makes.
const MAX_TEXT: usize = 1 << 20;

fn first_word(text: &str) -> (&str, &str) {
    let t = text.trim_start();
    match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], t[i..].trim_start()),
        None => (t, ""),
    }
}

impl Program {
    /// Parses one instruction per argument; errors name the argument.
    pub(super) fn parse(args: &[(String, Span)]) -> Result<Program, (Span, String)> {
        let mut insns = Vec::new();
        let mut labels = HashMap::new();
        let mut gotos = Vec::new();
        for (text, span) in args {
            let (name, rest) = first_word(text);
            if name.is_empty() {
                continue;
            }
            let err = |m: String| (*span, m);
            let none = |op: Op| {
                if rest.is_empty() {
                    Ok(op)
                } else {
                    Err(err(format!("syntax error at '{name}'")))
                }
            };
            let op = match name {
                "set" | "setq" | "init" | "initq" | "export" | "exportq" => {
                    let (var, value) = first_word(rest);
                    let needs_value = !name.starts_with("export");
                    if var.is_empty() || (needs_value && value.is_empty() && name.starts_with("set")) {
                        return Err(err(format!("syntax error at '{name}'")));
                    }
                    let q = name.ends_with('q');
                    match &name[..3] {
                        "set" => Op::Set { q },
                        "ini" => Op::Init { q },
                        _ => Op::Export { q },
                    }
                }
                "print" | "printq" | "printn" | "printnq" => Op::Print {
                    q: name.ends_with('q'),
                    newline: !name.starts_with("printn"),
                },
                "save" => Op::Save { append: false },
                "append" => Op::Save { append: true },
                "read" | "readq" => Op::Read { q: name == "readq" },
                "write" | "writeq" => Op::Write { q: name == "writeq" },
                "pause" | "wait_step" | "wait_stop" => {
                    let n = if rest.is_empty() {
                        1
                    } else {
                        rest.parse::<u32>()
                            .map_err(|_| err(format!("syntax error at '{name}'")))?
                    };
                    Op::Pause(n)
                }
                "wait" | "wait_time" | "wait_for" if rest.is_empty() => Op::Pause(1),
                "wait" | "wait_time" | "wait_for" => Op::Wait,
                "label" => {
                    let (label, more) = first_word(rest);
                    if label.is_empty() || !more.is_empty() {
                        return Err(err(format!("syntax error at '{name}'")));
                    }
                    labels.insert(label.to_string(), insns.len());
                    Op::Label
                }
                "goto" => {
                    let (label, _) = first_word(rest);
                    if label.is_empty() {
                        return Err(err(format!("syntax error at '{name}'")));
                    }
                    gotos.push((insns.len(), label.to_string(), *span));
                    Op::Goto(Target::End)
                }
                "loop" => none(Op::Goto(Target::Insn(0)))?,
                "end" => none(Op::End)?,
                "exit" => none(Op::Exit)?,
                "stop" => none(Op::Stop)?,
                "return" | "returnq" => Op::Return { q: name == "returnq" },
                "error" | "errorq" => Op::Error { q: name == "errorq" },
                _ => return Err(err(format!("syntax error at '{name}'"))),
            };
            let text = match op {
                Op::Goto(_) => first_word(rest).1.to_string(),
                _ => rest.to_string(),
            };
            insns.push(Insn { op, text });
        }
        // Labels may come after their gotos; a label named like a
        // built-in target wins over it, as in Click.
        for (at, label, span) in gotos {
            let target = match (labels.get(&label), label.as_str()) {
                (Some(&i), _) => Target::Insn(i),
                (None, "begin" | "loop") => Target::Insn(0),
                (None, "end") => Target::End,
                (None, "exit") => Target::Exit,
                (None, "stop") => Target::Stop,
                (None, "error" | "errorq") => Target::Error,
                (None, _) => return Err((span, format!("no such label '{label}'"))),
            };
            insns[at].op = Op::Goto(target);
        }
        Ok(Program { insns, labels })
    }

    /// The variables `export` makes readable as handlers.
    pub(super) fn exports(&self) -> Vec<String> {
        self.insns
            .iter()
            .filter(|i| matches!(i.op, Op::Export { .. }))
            .map(|i| first_word(&i.text).0.to_string())
            .collect()
    }
}

/// Where a script reads and writes handlers, and reports errors.
pub(super) struct Host<'a> {
    pub(super) name: &'a str,
    pub(super) control: &'a dyn ControlPlane,
    pub(super) steps: &'a StopEvents,
    pub(super) kind: Kind,
    /// Variables `export` made handlers: `$(x)` reads the script's own.
    pub(super) exports: &'a [String],
    /// When a PACKET script last reported an error (ms since the epoch):
    /// per packet, errors are said at most once a second.
    pub(super) last_error: &'a std::sync::atomic::AtomicU64,
}

impl Host<'_> {
    /// Click reports a running script's errors on standard error.
    pub(super) fn error(&self, message: &str) {
        if self.kind == Kind::Packet {
            use std::sync::atomic::Ordering::Relaxed;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let last = self.last_error.load(Relaxed);
            if now.saturating_sub(last) < 1000 || self.last_error.swap(now, Relaxed) != last {
                return;
            }
        }
        eprintln!("While executing '{} :: Script':\n  {message}", self.name);
    }
}

/// A script's state between runs.
pub(super) struct Exec {
    ip: usize,
    vars: HashMap<String, String>,
    /// Steps each `pause` has taken.
    paused: Vec<u32>,
    /// The deadline of the `wait` at `ip`.
    wait_until: Option<Instant>,
    initialized: bool,
    finished: bool,
    /// `$?`: the last write's status.
    status: i64,
    args: String,
    handler: String,
    write: bool,
    input: Option<usize>,
    /// This execution took a stop request of the router.
    pub(super) router_step: bool,
    pub(super) env: ExprEnv,
}

impl Exec {
    pub(super) fn new(program: &Program, env: ExprEnv) -> Exec {
        Exec {
            ip: 0,
            vars: HashMap::new(),
            paused: vec![0; program.insns.len()],
            wait_until: None,
            initialized: false,
            finished: false,
            status: 0,
            args: String::new(),
            handler: String::new(),
            write: false,
            input: None,
            router_step: false,
            env,
        }
    }

    /// Back to the top for a `run` (or a packet).
    pub(super) fn restart(&mut self, args: &str, handler: &str, write: bool) {
        self.ip = 0;
        self.wait_until = None;
        self.finished = false;
        self.args = args.to_string();
        self.handler = handler.to_string();
        self.write = write;
    }

    pub(super) fn set_input(&mut self, port: usize) {
        self.input = Some(port);
    }

    /// Not ended (an active script's task has something to do).
    pub(super) fn is_runnable(&self) -> bool {
        !self.finished
    }

    pub(super) fn is_blocked(&self) -> bool {
        !self.finished && self.initialized
    }

    pub(super) fn get(&self, var: &str) -> Option<String> {
        self.vars
            .get(var)
            .cloned()
            .or_else(|| (var == "args").then(|| self.args.clone()))
    }

    pub(super) fn set(&mut self, var: &str, value: &str) {
        self.vars.insert(var.to_string(), value.to_string());
    }

    pub(super) fn shift(&mut self, var: &str) -> Result<String, String> {
        let value = self.get(var).ok_or_else(|| format!("undefined variable '{var}'"))?;
        // Click's spacevec: a quoted word is one word, quotes kept.
        let trimmed = value.trim_start();
        let first = script_expr::words(trimmed).into_iter().next().unwrap_or_default();
        let rest = trimmed.get(first.len()..).unwrap_or("").trim_start().to_string();
        if var == "args" && !self.vars.contains_key("args") {
            self.args = rest;
        } else {
            self.vars.insert(var.to_string(), rest);
        }
        Ok(first)
    }

    pub(super) fn jump_to_label(&mut self, program: &Program, label: &str) -> Result<(), String> {
        let &i = program
            .labels
            .get(label)
            .ok_or_else(|| "jump to nonexistent label".to_string())?;
        for p in &mut self.paused[i..] {
            *p = 0;
        }
        self.ip = i;
        self.wait_until = None;
        self.finished = false;
        Ok(())
    }

    /// A variable's value for expansion: the script's own variables
    /// first, then the special ones. `None` leaves `$name` as written.
    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        let words = || script_expr::words(&self.args);
        match name {
            "?" => Some(self.status.to_string()),
            "#" => Some(words().len().to_string()),
            "$" => Some(std::process::id().to_string()),
            "args" => Some(self.args.clone()),
            "0" => Some(self.handler.clone()),
            "write" => Some(self.write.to_string()),
            "input" => self.input.map(|i| i.to_string()),
            n if n.bytes().all(|b| b.is_ascii_digit()) => {
                let i: usize = n.parse().ok()?;
                Some(words().get(i.checked_sub(1)?).cloned().unwrap_or_default())
            }
            _ => None,
        }
    }
}

/// Reads a handler as a script names it: its own handlers by bare name
/// (or `NAME.h`), globals by bare name or `.h`, others as `element.h`.
fn call_read(ex: &mut Exec, host: &Host<'_>, name: &str, args: &str) -> Result<String, String> {
    if let Some(global) = name.strip_prefix('.') {
        return host.control.read(global, args);
    }
    let own = match name.split_once('.') {
        None => Some(name),
        Some((element, h)) if element == host.name => Some(h),
        Some(_) => None,
    };
    if let Some(h) = own {
        if let Some(r) = script_expr::call(h, args, &mut ex.env) {
            return r;
        }
        match h {
            "get" => {
                return ex
                    .get(args.trim())
                    .ok_or_else(|| format!("undefined variable '{}'", args.trim()))
            }
            "shift" => return ex.shift(if args.trim().is_empty() { "args" } else { args.trim() }),
            "run" | "step" | "goto" | "set" => {
                return Err(format!("'{}.{h}': a script cannot call itself", host.name));
            }
            // True if every named handler exists and can be read (written).
            "readable" | "writable" => {
                let write = h == "writable";
                let all = script_expr::words(args).iter().all(|w| {
                    let w = unquote(w);
                    let bare = match w.split_once('.') {
                        None => w.as_str(),
                        Some((element, h)) if element == host.name => h,
                        Some(_) => "",
                    };
                    let own = script_expr::NAMES.contains(&bare) || bare == "run";
                    own && !write || host.control.can(w.strip_prefix('.').unwrap_or(&w), write)
                });
                return Ok(all.to_string());
            }
            _ => {}
        }
        if host.exports.iter().any(|e| e == h) {
            return Ok(ex.vars.get(h).cloned().unwrap_or_default());
        }
        if !name.contains('.') {
            return host.control.read(name, args);
        }
    }
    host.control.read(name, args)
}

/// Click's cp_expand: `$name`, `${name}`, `$(handler args)` (nested,
/// expanded first), `$?`, `$#`, `$$`. Nothing is expanded in single
/// quotes; in double quotes a value is quoted so it reads back as itself,
/// and with `quote_values` a value outside quotes is quoted too (`print`'s
/// text form). An undefined variable, or a handler that does not exist,
/// stays as written.
pub(super) fn expand(ex: &mut Exec, host: &Host<'_>, text: &str, quote_values: bool) -> String {
    expand_at(ex, host, text, quote_values, 0)
}

/// Nesting of `$(...)` and `${...}` expanded at most: deeper text is an
/// error, not a stack overflow.
const MAX_NESTING: u32 = 64;

fn expand_at(ex: &mut Exec, host: &Host<'_>, text: &str, quote_values: bool, depth: u32) -> String {
    if depth > MAX_NESTING {
        host.error("expansion nested too deep");
        return String::new();
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_double = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' && !in_double {
            let end = text[i + 1..].find('\'').map_or(b.len(), |j| i + 1 + j + 1);
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        if c == b'\\' && in_double && i + 1 < b.len() {
            let n = 1 + text[i + 1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&text[i..i + n]);
            i += n;
            continue;
        }
        if c == b'"' {
            in_double = !in_double;
            out.push('"');
            i += 1;
            continue;
        }
        if c != b'$' || i + 1 >= b.len() {
            let n = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + n]);
            i += n;
            continue;
        }
        let (value, end) = match b[i + 1] {
            b'(' => match matching(b, i + 1, b'(', b')') {
                Some(close) => {
                    let inner = expand_at(ex, host, &text[i + 2..close], false, depth + 1);
                    let (h, args) = first_word(&inner);
                    match call_read(ex, host, h, args) {
                        Ok(v) => (Some(v), close + 1),
                        Err(e) => {
                            host.error(&e);
                            let exists = !e.contains("No element") && !e.contains("No handler");
                            (exists.then(String::new), close + 1)
                        }
                    }
                }
                None => (None, i + 1),
            },
            b'{' => match matching(b, i + 1, b'{', b'}') {
                Some(close) => {
                    let name = expand_at(ex, host, &text[i + 2..close], false, depth + 1);
                    (ex.lookup(&name), close + 1)
                }
                None => (None, i + 1),
            },
            b'?' | b'#' | b'$' => (ex.lookup(&text[i + 1..i + 2]), i + 2),
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let end = b[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map_or(b.len(), |j| i + 1 + j);
                (ex.lookup(&text[i + 1..end]), end)
            }
            _ => (None, i + 1),
        };
        match value {
            Some(v) if in_double => {
                let q = quote(&v);
                out.push_str(q.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or(&q));
            }
            Some(v) if quote_values => out.push_str(&quote(&v)),
            Some(v) => out.push_str(&v),
            None => out.push_str(&text[i..end]),
        }
        if out.len() > MAX_TEXT {
            host.error("expansion too long");
            let mut cut = MAX_TEXT;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            return out;
        }
        i = end;
    }
    out
}

/// The index of the bracket closing the one at `open`, skipping quotes.
fn matching(b: &[u8], open: usize, o: u8, c: u8) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<u8> = None;
    let mut i = open;
    while i < b.len() {
        let ch = b[i];
        match quote {
            Some(q) if ch == b'\\' && q == b'"' => i += 1,
            Some(q) if ch == q => quote = None,
            Some(_) => {}
            None if ch == b'"' || ch == b'\'' => quote = Some(ch),
            None if ch == o => depth += 1,
            None if ch == c => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            None => {}
        }
        i += 1;
    }
    None
}

/// Output for `print`: standard output, or a file (`>` truncates, `>>`
/// appends, `-` is standard output).
fn emit(host: &Host<'_>, file: Option<(&str, bool)>, text: &str) {
    let result = match file {
        None | Some(("-", _)) => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
        Some((path, append)) => std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes())),
    };
    if let Err(e) = result {
        let path = file.map_or("-", |f| f.0);
        host.error(&format!("{path}: {e}"));
    }
}

impl Program {
    /// Runs `ex` from its position until it blocks or ends.
    pub(super) fn execute(&self, ex: &mut Exec, host: &Host<'_>) -> Flow {
        if !ex.initialized {
            ex.initialized = true;
            for insn in &self.insns {
                if let Op::Init { q } | Op::Export { q } = insn.op {
                    let (var, text) = first_word(&insn.text);
                    let mut v = expand(ex, host, text, false);
                    if q {
                        v = unquote(&v);
                    }
                    ex.vars.insert(var.to_string(), v);
                }
            }
        }
        ex.finished = false;
        ex.router_step = false;
        let mut jumps = 0;
        let end = |ex: &mut Exec, e: Ending| {
            ex.finished = true;
            ex.ip = 0;
            ex.wait_until = None;
            Flow::Ended(e)
        };
        loop {
            let Some(insn) = self.insns.get(ex.ip) else {
                let implicit = if host.kind == Kind::Driver {
                    Ending::Stop
                } else {
                    Ending::End
                };
                return end(ex, implicit);
            };
            let mut next = ex.ip + 1;
            match &insn.op {
                Op::Set { q } => {
                    let (var, text) = first_word(&insn.text);
                    let mut v = expand(ex, host, text, false);
                    if *q {
                        v = unquote(&v);
                    }
                    ex.vars.insert(var.to_string(), v);
                }
                Op::Init { .. } | Op::Export { .. } | Op::Label => {}
                Op::Print { q, newline } => self.print(ex, host, &insn.text, *q, *newline),
                Op::Save { append } => {
                    // Click's `save TEXT FILE` is `print >FILE TEXT`.
                    let words = script_expr::words(&insn.text);
                    let text = words.first().cloned().unwrap_or_default();
                    let file = words.get(1).cloned().unwrap_or_else(|| "-".to_string());
                    let redirect = if *append { ">>" } else { ">" };
                    self.print(ex, host, &format!("{redirect}{file} {text}"), false, true);
                }
                Op::Read { q } => {
                    let text = expand(ex, host, &insn.text, false);
                    let (h, args) = first_word(&text);
                    let args = if *q { unquote(args) } else { args.to_string() };
                    match call_read(ex, host, h, &args) {
                        // The script's own handlers by their full name.
                        Ok(v) if !h.contains('.') && script_expr::NAMES.contains(&h) => {
                            eprintln!("{}.{h}:\n{v}", host.name)
                        }
                        Ok(v) => eprintln!("{h}:\n{v}"),
                        Err(e) => host.error(&e),
                    }
                }
                Op::Write { q } => {
                    let text = expand(ex, host, &insn.text, false);
                    let (h, value) = first_word(&text);
                    let value = if *q { unquote(value) } else { value.to_string() };
                    self.write(ex, host, h, &value);
                }
                Op::Pause(n) => {
                    while ex.paused[ex.ip] < *n {
                        match host.steps.take() {
                            None => return Flow::Blocked(None),
                            Some(router) => ex.router_step |= router,
                        }
                        ex.paused[ex.ip] += 1;
                    }
                    ex.paused[ex.ip] = 0;
                }
                Op::Wait => {
                    let deadline = match ex.wait_until {
                        Some(at) => Some(at),
                        None => {
                            let t = expand(ex, host, &insn.text, false);
                            match Seconds::from_arg(t.trim()) {
                                Some(Seconds(s)) if s < 1e9 => {
                                    Some(switchyard_core::clock::now() + Duration::from_secs_f64(s))
                                }
                                _ => {
                                    host.error("syntax error at 'wait'");
                                    None
                                }
                            }
                        }
                    };
                    ex.wait_until = deadline;
                    let due = deadline.is_some_and(|at| switchyard_core::clock::now() >= at);
                    if !due {
                        match host.steps.take() {
                            None => return Flow::Blocked(deadline),
                            Some(router) => ex.router_step |= router,
                        }
                    }
                    ex.wait_until = None;
                }
                Op::Goto(target) => {
                    if !insn.text.trim().is_empty() {
                        let cond = expand(ex, host, &insn.text, false);
                        match truth(cond.trim()) {
                            Some(true) => {}
                            Some(false) => {
                                ex.ip = next;
                                continue;
                            }
                            None => {
                                host.error(&format!("bad condition '{}'", cond.trim()));
                                ex.ip = next;
                                continue;
                            }
                        }
                    }
                    match *target {
                        Target::Insn(i) => {
                            jumps += 1;
                            if jumps >= MAX_JUMPS {
                                // Click says this one on its own line.
                                eprintln!("{} :: Script: too many jumps, giving up", host.name);
                                return end(ex, Ending::Exit);
                            }
                            let lo = i.min(ex.ip);
                            for p in &mut ex.paused[lo..=ex.ip] {
                                *p = 0;
                            }
                            next = i;
                        }
                        Target::End => return end(ex, Ending::End),
                        Target::Exit => return end(ex, Ending::Exit),
                        Target::Stop => return end(ex, Ending::Stop),
                        Target::Error => return end(ex, Ending::Error),
                    }
                }
                Op::End => return end(ex, Ending::End),
                Op::Exit => return end(ex, Ending::Exit),
                Op::Stop => return end(ex, Ending::Stop),
                Op::Return { q } => {
                    let mut v = expand(ex, host, &insn.text, false);
                    if *q {
                        v = unquote(&v);
                    }
                    return end(ex, Ending::Return(v));
                }
                Op::Error { q } => {
                    if !insn.text.trim().is_empty() {
                        let mut v = expand(ex, host, &insn.text, false);
                        if *q {
                            v = unquote(&v);
                        }
                        host.error(&v);
                    }
                    return end(ex, Ending::Error);
                }
            }
            ex.ip = next;
        }
    }

    fn print(&self, ex: &mut Exec, host: &Host<'_>, raw: &str, q: bool, newline: bool) {
        let mut text = raw.trim_start();
        let mut file = None;
        if let Some(rest) = text.strip_prefix('>') {
            let (append, rest) = match rest.strip_prefix('>') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let (f, rest) = first_word(rest);
            file = Some((f.to_string(), append));
            text = rest;
        }
        let starts_handler = text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '@' || c == '_');
        let mut out = if starts_handler {
            let expanded = expand(ex, host, text, false);
            let (h, args) = first_word(&expanded);
            let args = if q { unquote(args) } else { args.to_string() };
            match call_read(ex, host, h, &args) {
                Ok(v) => v,
                Err(e) => {
                    host.error(&e);
                    return;
                }
            }
        } else {
            unquote(&expand(ex, host, text, true))
        };
        if newline && !out.ends_with('\n') {
            out.push('\n');
        }
        let file = file.as_ref().map(|(f, a)| (f.as_str(), *a));
        emit(host, file, &out);
    }

    fn write(&self, ex: &mut Exec, host: &Host<'_>, h: &str, value: &str) {
        let own = match h.split_once('.') {
            None => Some(h),
            Some((element, rest)) if element == host.name => Some(rest),
            _ => None,
        };
        match own {
            Some("set") => {
                let (var, v) = first_word(value);
                ex.vars.insert(var.to_string(), v.to_string());
                ex.status = 0;
                return;
            }
            Some("step") => {
                host.steps.post(value.trim().parse().unwrap_or(1));
                ex.status = 0;
                return;
            }
            Some("run" | "goto") => {
                host.error(&format!(
                    "'{}.{}': a script cannot call itself",
                    host.name,
                    own.unwrap_or("")
                ));
                ex.status = -22;
                return;
            }
            _ => {}
        }
        let target = h.strip_prefix('.').unwrap_or(h);
        let reason = format!("{} :: Script", host.name);
        match host.control.write_as(target, value, "script", &reason) {
            Ok(()) => ex.status = 0,
            Err(e) => {
                host.error(&e);
                if !e.contains("No element") && !e.contains("No handler") {
                    ex.status = -22;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static LAST_ERROR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    struct Table(std::sync::Mutex<HashMap<String, String>>);
    impl ControlPlane for Table {
        fn read(&self, h: &str, args: &str) -> Result<String, String> {
            if h == "echo" {
                return Ok(args.to_string());
            }
            let t = self.0.lock().unwrap();
            t.get(h).cloned().ok_or_else(|| format!("No handler named '{h}'"))
        }
        fn write_as(&self, h: &str, v: &str, _: &str, _: &str) -> Result<(), String> {
            if h == "bad.h" {
                return Err("Write handler 'bad.h' error: refused".into());
            }
            self.0.lock().unwrap().insert(h.to_string(), v.to_string());
            Ok(())
        }
    }

    fn program(lines: &[&str]) -> Program {
        let args: Vec<(String, Span)> = lines.iter().map(|l| (l.to_string(), Span::default())).collect();
        Program::parse(&args).unwrap_or_else(|e| panic!("{}", e.1))
    }

    fn table(pairs: &[(&str, &str)]) -> Table {
        Table(std::sync::Mutex::new(
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        ))
    }

    /// A script's host for the tests: the table, its steps, its kind.
    fn host<'a>(t: &'a Table, steps: &'a StopEvents, kind: Kind) -> Host<'a> {
        Host {
            name: "s",
            control: t,
            steps,
            kind,
            exports: &[],
            last_error: &LAST_ERROR,
        }
    }

    fn run(p: &Program, t: &Table, kind: Kind) -> (Exec, Flow) {
        let steps = StopEvents::default();
        let mut ex = Exec::new(p, ExprEnv::new());
        let host = host(t, &steps, kind);
        let flow = p.execute(&mut ex, &host);
        (ex, flow)
    }

    #[test]
    fn expansion_follows_clicks_rules() {
        let t = table(&[("c.count", "0")]);
        let p = program(&[
            "set x $(c.count)",
            "set y \"$(c.count)\"",
            "setq z \"$(c.count)\"",
            "set n 1",
            "set a ${n}y",
            "set u $undefined",
            "set s '$n'",
            "set h $(add $(add 1 2) $n)",
            "set e $(echo a b)",
            "set m $(nosuch.h)",
        ]);
        let (ex, flow) = run(&p, &t, Kind::Active);
        assert_eq!(flow, Flow::Ended(Ending::End));
        let v = |k: &str| ex.vars[k].clone();
        assert_eq!(v("x"), "0");
        assert_eq!(v("y"), "\"0\"");
        assert_eq!(v("z"), "0");
        assert_eq!(v("a"), "1y");
        assert_eq!(v("u"), "$undefined", "an undefined variable stays as written");
        assert_eq!(v("s"), "'$n'", "nothing expands in single quotes");
        assert_eq!(v("h"), "4", "nested handler calls, own handlers by bare name");
        assert_eq!(v("e"), "a b", "a global handler with arguments");
        assert_eq!(v("m"), "$(nosuch.h)", "a handler that does not exist stays as written");
    }

    #[test]
    fn loops_labels_conditions_and_the_jump_guard() {
        let t = table(&[]);
        let p = program(&[
            "set x 0",
            "label top",
            "set x $(add $x 1)",
            "goto top $(lt $x 5)",
            "return $x",
        ]);
        assert_eq!(run(&p, &t, Kind::Passive).1, Flow::Ended(Ending::Return("5".into())));
        // A loop that never blocks is given up after 1000 jumps.
        let p = program(&["set x 0", "label l", "set x $(add $x 1)", "goto l"]);
        let (ex, flow) = run(&p, &t, Kind::Active);
        assert_eq!(flow, Flow::Ended(Ending::Exit));
        assert_eq!(ex.vars["x"], "1000");
        // A bad condition is reported and does not jump.
        let p = program(&["goto e maybe", "return no", "label e", "return yes"]);
        assert_eq!(run(&p, &t, Kind::Passive).1, Flow::Ended(Ending::Return("no".into())));
        assert!(Program::parse(&[("goto nowhere".into(), Span::default())]).is_err());
        assert!(Program::parse(&[("frobnicate".into(), Span::default())]).is_err());
        assert!(Program::parse(&[("end now".into(), Span::default())]).is_err());
    }

    #[test]
    fn writes_report_status_and_pause_waits_for_steps() {
        let t = table(&[]);
        let p = program(&[
            "write a.h 1 2",
            "set ok $?",
            "write bad.h 3",
            "set bad $?",
            "pause 2",
            "return done",
        ]);
        let steps = StopEvents::default();
        let mut ex = Exec::new(&p, ExprEnv::new());
        let host = host(&t, &steps, Kind::Active);
        assert_eq!(p.execute(&mut ex, &host), Flow::Blocked(None));
        assert_eq!(t.0.lock().unwrap()["a.h"], "1 2");
        assert_eq!((ex.vars["ok"].as_str(), ex.vars["bad"].as_str()), ("0", "-22"));
        steps.post(1);
        assert_eq!(p.execute(&mut ex, &host), Flow::Blocked(None), "one step of two");
        steps.post(1);
        assert_eq!(p.execute(&mut ex, &host), Flow::Ended(Ending::Return("done".into())));
        // A driver falls off its end into a stop.
        let p = program(&["set a 1"]);
        assert_eq!(run(&p, &t, Kind::Driver).1, Flow::Ended(Ending::Stop));
    }

    #[test]
    fn wait_blocks_until_its_time_or_a_step() {
        let t = table(&[]);
        let p = program(&["wait 1h", "return late"]);
        let steps = StopEvents::default();
        let mut ex = Exec::new(&p, ExprEnv::new());
        let host = host(&t, &steps, Kind::Active);
        let Flow::Blocked(Some(at)) = p.execute(&mut ex, &host) else {
            panic!("wait blocks with a deadline")
        };
        assert!(at > switchyard_core::clock::now() + Duration::from_secs(3000));
        steps.post(1);
        assert_eq!(p.execute(&mut ex, &host), Flow::Ended(Ending::Return("late".into())));
        let p = program(&["wait 0", "return now"]);
        assert_eq!(run(&p, &t, Kind::Active).1, Flow::Ended(Ending::Return("now".into())));
    }

    #[test]
    fn hostile_text_is_bounded_not_fatal() {
        let t = table(&[]);
        // Nesting far past the bound: the innermost levels are an error
        // (empty), not a stack overflow.
        let deep = format!("set x {}1{}", "$(add 1 ".repeat(10_000), ")".repeat(10_000));
        let p = program(&[deep.as_str(), "return $x"]);
        let Flow::Ended(Ending::Return(v)) = run(&p, &t, Kind::Passive).1 else {
            panic!("it ends")
        };
        assert!(v.parse::<u32>().is_ok_and(|n| n <= MAX_NESTING + 1), "{v}");
        // `$00` is no word, not a panic; a doubling loop stops at the bound
        // on a character boundary.
        let p = program(&["return [$00]"]);
        assert_eq!(
            run(&p, &t, Kind::Passive).1,
            Flow::Ended(Ending::Return("[$00]".into()))
        );
        let p = program(&[
            "set x é",
            "label l",
            "set x $x$x",
            "goto l $(lt $(length $x) 3000000)",
            "return done",
        ]);
        let (ex, _) = run(&p, &t, Kind::Passive);
        assert!(ex.vars["x"].len() <= MAX_TEXT);
        // shift takes a quoted word whole.
        let mut ex = Exec::new(&program(&[]), ExprEnv::new());
        ex.set("v", "\"a b\" c");
        assert_eq!(ex.shift("v").unwrap(), "\"a b\"");
        assert_eq!(ex.get("v").unwrap(), "c");
    }

    #[test]
    fn special_variables_of_a_run() {
        let t = table(&[]);
        let p = program(&["return \"[$0] [$1] [$2] [$#] [$args] [$write] [$input] [$?]\""]);
        let steps = StopEvents::default();
        let mut ex = Exec::new(&p, ExprEnv::new());
        ex.restart("a \"b c\" d", "run", true);
        let host = host(&t, &steps, Kind::Passive);
        let Flow::Ended(Ending::Return(v)) = p.execute(&mut ex, &host) else {
            panic!()
        };
        assert_eq!(v, r#""[run] [a] [\"b c\"] [3] [a \"b c\" d] [true] [$input] [0]""#);
    }
}
