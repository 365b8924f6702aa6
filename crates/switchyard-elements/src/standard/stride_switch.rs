use super::scatter::{Scatter, DROP};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, FromArg, Handler, PortCount};

documented! {
    /// Sends packets to outputs in proportion to their tickets, by stride
    /// scheduling (Click's StrideSwitch): output I gets TICKETS_I shares,
    /// spread evenly rather than in bursts. An output with 0 tickets gets
    /// nothing; when every output has 0, packets are dropped.
    ///
    /// The schedule is Click's, tie-breaking included: each output's pass
    /// advances by 65536 / TICKETS per packet sent, the lowest pass goes
    /// next, and an output whose pass ties another's goes first after it
    /// is rescheduled. Tickets above 32768 are reduced to 32768 (Click
    /// warns; Switchyard has no configuration warnings, so it says so here).
    ///
    /// # Ports
    /// One input, one output per ticket argument; push.
    ///
    /// # Arguments
    /// - `TICKETS0, ..., TICKETSN-1` (positional, at least one): the
    ///   tickets of each output, non-negative integers.
    ///
    /// # Handlers
    /// - `tickets0` ... `ticketsN-1` (read/write, persistent): an output's
    ///   tickets; a negative or non-integer value is refused. Applies from
    ///   the next batch. Switchyard keeps them across reloads and restarts,
    ///   as it keeps switch positions; Click does not.
    ///
    /// # Example
    /// ```text
    /// ss :: StrideSwitch(3, 1); ss[0] -> old; ss[1] -> new;
    /// ```
    pub struct StrideSwitch {
        shared: Arc<Tickets>,
        applied_generation: u64,
        sched: Stride,
        scatter: Scatter,
    }
}

/// The tickets as handlers last set them, read by the data path once per
/// batch.
struct Tickets {
    values: Vec<AtomicU32>,
    generation: AtomicU64,
}

const STRIDE1: u32 = 1 << 16;
const MAX_TICKETS: u32 = 1 << 15;

/// Pass comparison that survives wrap-around, as Click's.
#[inline]
fn pass_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A stride scheduler over outputs: `list` holds the outputs with tickets,
/// ordered by pass.
struct Stride {
    tickets: Vec<u32>,
    stride: Vec<u32>,
    pass: Vec<u32>,
    list: Vec<usize>,
}

impl Stride {
    fn new(tickets: &[u32]) -> Stride {
        let stride: Vec<u32> = tickets.iter().map(|&t| stride_of(t)).collect();
        let mut s = Stride {
            tickets: tickets.to_vec(),
            pass: stride.clone(),
            stride,
            list: Vec::with_capacity(tickets.len()),
        };
        // Inserted last to first so that outputs tied at the start run in
        // order.
        for i in (0..tickets.len()).rev() {
            if tickets[i] != 0 {
                s.insert(i);
            }
        }
        s
    }

    /// Puts `i` before the first output whose pass is not lower than its.
    fn insert(&mut self, i: usize) {
        let pass = self.pass[i];
        let at = self
            .list
            .iter()
            .position(|&j| !pass_gt(pass, self.pass[j]))
            .unwrap_or(self.list.len());
        self.list.insert(at, i);
    }

    fn next(&mut self) -> usize {
        if self.list.is_empty() {
            return DROP;
        }
        let i = self.list.remove(0);
        self.pass[i] = self.pass[i].wrapping_add(self.stride[i]);
        self.insert(i);
        i
    }

    /// Changes an output's tickets: an output leaving 0 joins one stride
    /// behind the head of the schedule, as in Click.
    fn set(&mut self, i: usize, tickets: u32) {
        let old = self.tickets[i];
        self.tickets[i] = tickets;
        self.stride[i] = stride_of(tickets);
        if tickets == 0 && old != 0 {
            self.list.retain(|&j| j != i);
        } else if tickets != 0 && old == 0 {
            self.pass[i] = self
                .list
                .first()
                .map_or(0, |&head| self.pass[head].wrapping_add(self.stride[i]));
            self.insert(i);
        }
    }
}

fn stride_of(tickets: u32) -> u32 {
    STRIDE1.checked_div(tickets).unwrap_or(0)
}

/// Parses a tickets value: a non-negative integer, reduced to the maximum.
fn parse_tickets(text: &str) -> Result<u32, String> {
    match i64::from_arg(text.trim()) {
        Some(t) if t < 0 => Err("number of tickets must be >= 0".to_string()),
        Some(t) => Ok(t.min(i64::from(MAX_TICKETS)) as u32),
        None => Err(format!(
            "expected a number of tickets (integer), found '{}'",
            text.trim()
        )),
    }
}

impl StrideSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "StrideSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: StrideSwitch::DOC,
        factory: StrideSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let raw = args.rest_positional();
        if raw.is_empty() {
            args.error(None, "expected one TICKETS argument per output");
            return None;
        }
        let mut tickets = Vec::with_capacity(raw.len());
        for (i, (text, span)) in raw.iter().enumerate() {
            match parse_tickets(text) {
                Ok(t) => tickets.push(t),
                Err(e) => args.error(Some(*span), format!("argument {i}: {e}")),
            }
        }
        if args.has_errors() {
            return None;
        }
        Some(Box::new(StrideSwitch {
            shared: Arc::new(Tickets {
                values: tickets.iter().map(|&t| AtomicU32::new(t)).collect(),
                generation: AtomicU64::new(0),
            }),
            applied_generation: 0,
            sched: Stride::new(&tickets),
            scatter: Scatter::new(),
        }))
    }

    /// Applies tickets written through handlers since the last batch.
    fn refresh(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.applied_generation {
            return;
        }
        self.applied_generation = generation;
        for (i, v) in self.shared.values.iter().enumerate() {
            let t = v.load(Ordering::Relaxed);
            if t != self.sched.tickets[i] {
                self.sched.set(i, t);
            }
        }
    }
}

impl Element for StrideSwitch {
    fn port_count(&self) -> Option<PortCount> {
        Some(PortCount::exactly(1, self.sched.tickets.len() as u32))
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.refresh();
        let sched = &mut self.sched;
        self.scatter.send(batch, cx, |_| sched.next());
    }

    fn handlers(&self) -> Vec<Handler> {
        (0..self.shared.values.len())
            .map(|i| {
                let (r, w) = (self.shared.clone(), self.shared.clone());
                Handler::read_write(
                    &format!("tickets{i}"),
                    move || r.values[i].load(Ordering::Relaxed).to_string(),
                    move |v| {
                        w.values[i].store(parse_tickets(v)?, Ordering::Relaxed);
                        w.generation.fetch_add(1, Ordering::Release);
                        Ok(())
                    },
                )
                .persistent()
                .checked(|v| parse_tickets(v).map(drop))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet};

    fn make(config: &str) -> Box<dyn Element> {
        let mut args = Args::parse_str("ss :: StrideSwitch", config);
        let e = StrideSwitch::make(&mut args).unwrap();
        args.complete().unwrap();
        e
    }

    fn sequence(tickets: &[u32], n: usize) -> Vec<usize> {
        let mut s = Stride::new(tickets);
        (0..n).map(|_| s.next()).collect()
    }

    fn push_numbered(h: &mut Harness, n: usize) {
        let mut b = Batch::new();
        for i in 0..n {
            b.push(Packet::from_data(&(i as u32).to_be_bytes()));
        }
        h.push(0, b);
    }

    #[test]
    fn proportions_are_exact_over_a_cycle() {
        // Strides 65536, 32768, 16384: a cycle is 7 packets.
        let mut h = Harness::new(make("1, 2, 4"), 1, 3);
        for _ in 0..10 {
            push_numbered(&mut h, 7 * 20);
        }
        let counts: Vec<usize> = (0..3).map(|o| h.count(o)).collect();
        assert_eq!(counts, vec![200, 400, 800]);
        // Spread, not bursts: output 2 never waits more than 2 packets.
        let seq = sequence(&[1, 2, 4], 70);
        for w in seq.windows(3) {
            assert!(w.contains(&2), "{seq:?}");
        }
    }

    #[test]
    fn uneven_tickets_within_one_packet() {
        let seq = sequence(&[3, 1], 4000);
        let zeros = seq.iter().filter(|&&o| o == 0).count();
        assert!(zeros.abs_diff(3000) <= 1, "{zeros}");
    }

    #[test]
    fn ties_follow_click_order() {
        // Equal tickets: Click's list puts a rescheduled output before an
        // equal one, so the pattern is 0 1 1 0 0 1 1 0.
        assert_eq!(sequence(&[1, 1], 8), vec![0, 1, 1, 0, 0, 1, 1, 0]);
    }

    #[test]
    fn zero_tickets_get_nothing_and_all_zero_drops() {
        assert!(sequence(&[0, 5], 50).iter().all(|&o| o == 1));
        let mut h = Harness::new(make("0, 0"), 1, 2);
        push_numbered(&mut h, 10);
        assert_eq!(h.count(0) + h.count(1), 0);
    }

    #[test]
    fn handlers_change_tickets_at_the_next_batch() {
        let e = make("1, 0");
        let hs = e.handlers();
        assert_eq!(hs.len(), 2);
        assert!(hs[1].persistent);
        let mut h = Harness::new(e, 1, 2);
        push_numbered(&mut h, 8);
        assert_eq!((h.count(0), h.count(1)), (8, 0));
        let write = hs[1].write.clone().unwrap();
        write("1").unwrap();
        assert_eq!((hs[1].read.as_ref().unwrap())(), "1");
        push_numbered(&mut h, 8);
        assert_eq!((h.count(0), h.count(1)), (4, 4));
        (hs[0].write.as_ref().unwrap())("0").unwrap();
        push_numbered(&mut h, 8);
        assert_eq!((h.count(0), h.count(1)), (0, 8));
        assert!(write("-1").is_err());
        assert!(write("x").is_err());
        write("100000").unwrap();
        assert_eq!((hs[1].read.as_ref().unwrap())(), "32768");
    }

    #[test]
    fn bad_arguments_are_config_errors() {
        let mut args = Args::parse_str("ss :: StrideSwitch", "1, -2, x");
        assert!(StrideSwitch::make(&mut args).is_none());
        let errs = args.complete().unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].message.contains("argument 1: number of tickets must be >= 0"));
        let mut args = Args::parse_str("ss :: StrideSwitch", "");
        assert!(StrideSwitch::make(&mut args).is_none());
    }
}
