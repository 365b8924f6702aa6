use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::{documented, downcast, Args, Context, Element, ElementClass, Handler, PortInfo, Seconds, Work};

documented! {
    /// The automatic rollback gate: every INTERVAL it evaluates a condition
    /// over read handlers, and when it has held for FOR, it performs its
    /// writes (moving traffic back to the old branch) and latches until
    /// reset by hand.
    ///
    /// Its writes go through the router's control plane, so with `--audit`
    /// they are logged as written by the gate, with the reason, and with
    /// `--state` they persist. A gate can only move traffic back towards
    /// the old branch (input or output 0): a `switch` handler may only be
    /// set to 0 and a `weights` handler only to weights on output 0, so a
    /// faulty gate cannot promote a bad release.
    ///
    /// # Ports
    /// None (its own task).
    ///
    /// # Arguments
    /// - `CONDITION` (positional, mandatory): `A OP B`, where OP is one of
    ///   `>`, `>=`, `<`, `<=`, `==`, `!=` and each side is a number, a read
    ///   handler (`cmp.divergence_rate`; `true` and `false` read as 1 and
    ///   0) or `NUMBER * HANDLER`; quoted:
    ///   `CONDITION "new.rate < 0.5 * old.rate"`.
    /// - `WRITE` (repeatable, mandatory): `HANDLER VALUE`, e.g.
    ///   `WRITE "sel.switch 0", WRITE "canary.weights 100 0"`.
    /// - `FOR`: how long the condition must hold; default 0 (one check).
    /// - `INTERVAL`: time between checks; default 100ms.
    ///
    /// # Handlers
    /// - `tripped` (read): whether the gate has acted.
    /// - `reason` (read): why it acted (the condition and its values).
    /// - `checks` (read): evaluations so far.
    /// - `tripped_at_check` (read): the evaluation at which it acted.
    /// - `reset` (write): re-arms the gate (traffic stays where it is).
    ///
    /// # Example
    /// ```text
    /// Watchdog(CONDITION "cmp.divergence_rate > 0.01", FOR 200ms,
    ///          WRITE "sel.switch 0", WRITE "canary.weights 100 0");
    /// ```
    pub struct Watchdog {
        condition: Condition,
        text: String,
        writes: Vec<(String, String)>,
        hold: Duration,
        interval: Duration,
        holding_since: Option<Instant>,
        next: Instant,
        state: Arc<GateState>,
    }
}

#[derive(Default)]
struct GateState {
    tripped: AtomicBool,
    checks: AtomicU64,
    tripped_at: AtomicU64,
    reason: Mutex<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Term {
    Number(f64),
    Handler { scale: f64, name: String },
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    left: Term,
    op: String,
    right: Term,
}

fn parse_term(tokens: &[&str]) -> Result<Term, String> {
    let handler = |t: &str| {
        t.contains('.')
            .then(|| t.to_string())
            .filter(|_| t.parse::<f64>().is_err())
    };
    match tokens {
        [t] => match t.parse::<f64>() {
            Ok(v) => Ok(Term::Number(v)),
            Err(_) => handler(t)
                .map(|name| Term::Handler { scale: 1.0, name })
                .ok_or(format!("'{t}' is neither a number nor ELEMENT.HANDLER")),
        },
        [a, "*", b] => {
            let (num, h) = if let Ok(v) = a.parse::<f64>() {
                (v, *b)
            } else {
                (
                    b.parse::<f64>()
                        .map_err(|_| format!("'{a} * {b}': one side must be a number"))?,
                    *a,
                )
            };
            handler(h)
                .map(|name| Term::Handler { scale: num, name })
                .ok_or(format!("'{h}' is not ELEMENT.HANDLER"))
        }
        _ => Err(format!(
            "cannot read '{}': expected NUMBER, HANDLER or NUMBER * HANDLER",
            tokens.join(" ")
        )),
    }
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let ops = [">=", "<=", "==", "!=", ">", "<"];
    let at = tokens
        .iter()
        .position(|t| ops.contains(t))
        .ok_or("no comparison (>, >=, <, <=, ==, !=)")?;
    Ok(Condition {
        left: parse_term(&tokens[..at])?,
        op: tokens[at].to_string(),
        right: parse_term(&tokens[at + 1..])?,
    })
}

/// A write a gate may make: only towards the old branch.
fn check_write(handler: &str, value: &str) -> Result<(), String> {
    if switchyard_core::handler::moves_traffic_back(handler, value) {
        Ok(())
    } else {
        Err(format!(
            "WRITE '{handler} {value}': a gate may only move traffic back to the old branch (`X.switch 0`, `X.weights N 0 ...`)"
        ))
    }
}

impl Watchdog {
    pub const CLASS: ElementClass = ElementClass {
        name: "Watchdog",
        ports: "0/0",
        processing: "a/a",
        doc: Watchdog::DOC,
        factory: Watchdog::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let text = args.read_mp::<String>("CONDITION")?;
        let writes: Vec<String> = args.read_all::<String>("WRITE");
        let hold = args.read::<Seconds>("FOR").unwrap_or(Seconds(0.0));
        let interval = args.read::<Seconds>("INTERVAL").unwrap_or(Seconds(0.1));
        let condition = match parse_condition(&text) {
            Ok(c) => c,
            Err(e) => {
                args.error(None, format!("CONDITION: {e}"));
                return None;
            }
        };
        if writes.is_empty() {
            args.error(
                None,
                "missing mandatory argument WRITE (what to do when the condition holds)",
            );
            return None;
        }
        let mut pairs = Vec::new();
        for w in &writes {
            let (h, v) = w.trim().split_once(char::is_whitespace).unwrap_or((w.trim(), ""));
            if let Err(e) = check_write(h, v) {
                args.error(Some(args.span_of("WRITE")), e);
                return None;
            }
            pairs.push((h.to_string(), v.trim().to_string()));
        }
        if interval.0 <= 0.0 {
            args.error(Some(args.span_of("INTERVAL")), "INTERVAL must be above 0");
            return None;
        }
        Some(Box::new(Watchdog {
            condition,
            text,
            writes: pairs,
            hold: Duration::from_secs_f64(hold.0),
            interval: Duration::from_secs_f64(interval.0),
            holding_since: None,
            next: switchyard_core::clock::now(),
            state: Arc::default(),
        }))
    }

    fn value(&self, t: &Term, cx: &Context<'_>) -> Result<f64, String> {
        match t {
            Term::Number(v) => Ok(*v),
            Term::Handler { scale, name } => {
                let s = cx.control().read(name, "")?;
                // Click's booleans count as 1 and 0 (`fsel.drained == 1`).
                let v: f64 = match s.trim() {
                    "true" => 1.0,
                    "false" => 0.0,
                    t => t.parse().map_err(|_| format!("{name} is not a number: '{t}'"))?,
                };
                Ok(scale * v)
            }
        }
    }

    /// Evaluates the condition; its two values for the reason text.
    fn holds(&self, cx: &Context<'_>) -> Result<(bool, f64, f64), String> {
        let (a, b) = (
            self.value(&self.condition.left, cx)?,
            self.value(&self.condition.right, cx)?,
        );
        let r = match self.condition.op.as_str() {
            ">" => a > b,
            ">=" => a >= b,
            "<" => a < b,
            "<=" => a <= b,
            "==" => a == b,
            _ => a != b,
        };
        Ok((r, a, b))
    }
}

impl Element for Watchdog {
    fn take_state(&mut self, old: Box<dyn Element>) {
        // A tripped gate stays tripped until someone resets it.
        if let Some(old) = downcast::<Watchdog>(old) {
            self.state = old.state;
        }
    }

    fn initialize(&mut self, _ports: &PortInfo) -> Result<bool, String> {
        Ok(true)
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        if cx.stopping() {
            return Work::Done;
        }
        let now = switchyard_core::clock::now();
        if now < self.next {
            return Work::SleepUntil(self.next);
        }
        self.next = now + self.interval;
        if self.state.tripped.load(Relaxed) {
            self.holding_since = None;
            return Work::SleepUntil(self.next);
        }
        let check = self.state.checks.fetch_add(1, Relaxed) + 1;
        match self.holds(cx) {
            Ok((true, a, b)) => {
                let since = *self.holding_since.get_or_insert(now);
                if now.duration_since(since) >= self.hold {
                    let reason = format!("{} held for {:?} ({a} vs {b})", self.text, now.duration_since(since));
                    tracing::error!(gate = %self.text, %reason, "rollback gate tripped: moving traffic back to the old branch");
                    for (h, v) in &self.writes {
                        if let Err(e) = cx.control().write_as(h, v, "gate", &reason) {
                            tracing::error!(handler = %h, error = %e, "rollback gate: write failed");
                        }
                    }
                    *self.state.reason.lock().expect("reason") = reason;
                    self.state.tripped_at.store(check, Relaxed);
                    self.state.tripped.store(true, Relaxed);
                }
            }
            Ok((false, ..)) => self.holding_since = None,
            Err(e) => {
                // A handler that cannot be read is not evidence of a bad
                // release: keep the traffic where it is, say so.
                tracing::warn!(gate = %self.text, error = %e, "rollback gate: condition not evaluated");
                self.holding_since = None;
            }
        }
        Work::SleepUntil(self.next)
    }

    fn handlers(&self) -> Vec<Handler> {
        let (t, r, c, a, z) = (
            self.state.clone(),
            self.state.clone(),
            self.state.clone(),
            self.state.clone(),
            self.state.clone(),
        );
        vec![
            Handler::read_only("tripped", move || t.tripped.load(Relaxed).to_string()),
            Handler::read_only("reason", move || r.reason.lock().expect("reason").clone()),
            Handler::read_only("checks", move || c.checks.load(Relaxed).to_string()),
            Handler::read_only("tripped_at_check", move || a.tripped_at.load(Relaxed).to_string()),
            Handler::write_only("reset", move |_| {
                z.tripped.store(false, Relaxed);
                z.reason.lock().expect("reason").clear();
                Ok(())
            }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse() {
        assert_eq!(
            parse_condition("new.rate < 0.5 * old.rate").unwrap(),
            Condition {
                left: Term::Handler {
                    scale: 1.0,
                    name: "new.rate".into()
                },
                op: "<".into(),
                right: Term::Handler {
                    scale: 0.5,
                    name: "old.rate".into()
                }
            }
        );
        assert_eq!(
            parse_condition("cmp.divergence_rate > 0.01").unwrap().right,
            Term::Number(0.01)
        );
        assert!(parse_condition("a.b").is_err());
        assert!(parse_condition("a.b > c * d").is_err());
        assert!(parse_condition("x > 1").unwrap_err().contains("'x'"));
    }

    #[test]
    fn gates_only_move_traffic_back() {
        assert!(check_write("sel.switch", "0").is_ok());
        assert!(check_write("canary.weights", "100 0").is_ok());
        assert!(check_write("canary.weights", "100 0 0").is_ok());
        assert!(check_write("sel.switch", "1").is_err(), "promoting is not a gate's job");
        assert!(check_write("canary.weights", "50 50").is_err());
        assert!(check_write("canary.weights", "0 100").is_err());
        assert!(check_write("src.active", "false").is_err());
        let mut args = Args::parse_str("wd :: Watchdog", "CONDITION \"a.b > 1\", WRITE \"sel.switch 1\"");
        assert!(Watchdog::make(&mut args).is_none());
        assert!(args.complete().unwrap_err()[0]
            .message
            .contains("only move traffic back"));
    }
}
