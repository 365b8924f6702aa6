use super::ip_pattern::{self, packet_windows};
use crate::standard::classification::{Expr, Listing, Program};
use crate::standard::scatter::Scatter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass, Handler, Packet, PortCount};

documented! {
    /// Classifies IP packets with tcpdump-like patterns: each packet goes
    /// to the output of the first pattern it matches, and is dropped if it
    /// matches none.
    ///
    /// The IP header is found at the network-header annotation (set by
    /// CheckIPHeader or MarkIPHeader), or at the start of the data when
    /// the annotation is unset; the transport header follows it (IHL
    /// words on). The patterns are compiled once into one decision
    /// program: tests shared by several patterns are made once, and
    /// patterns comparing the same field against different values are
    /// dispatched in one table lookup, so the cost per packet does not
    /// grow with the number of patterns that share fields.
    ///
    /// Primitives, as in Click (SRCORDST is `src`, `dst`, `src or dst`,
    /// `src and dst`; `src or dst` when left out):
    /// - `ip proto PROTO`, or just `tcp`, `udp`, `icmp`, `igmp`, `ipip`,
    ///   `gre`, `sctp`, `dccp`, or a number;
    /// - `[SRCORDST] host ADDR`, `[SRCORDST] net ADDR/LEN` (or
    ///   `ADDR mask MASK`; a bare address or prefix means host or net);
    /// - `[SRCORDST] [tcp|udp] port PORT`: a number or a name (`www`,
    ///   `http`, `https`, `ssh`, `telnet`, `ftp`, `smtp`, `dns`,
    ///   `domain`, `ntp`, `snmp`...; a bare name means the port); TCP or
    ///   UDP when no protocol is given;
    /// - `tcp opt syn|fin|ack|rst|psh|urg` (or just `syn`...): the flag is
    ///   set; `tcp win N`;
    /// - `icmp type TYPE`: a number or `echo`, `echo-reply`,
    ///   `unreachable`, `sourcequench`, `redirect`, `routeradvert`,
    ///   `routersolicit`, `timeexceeded`, `parameterproblem`,
    ///   `timestamp`, `timestamp-reply`, `inforeq`, `inforeq-reply`,
    ///   `maskreq`, `maskreq-reply`;
    /// - `ip vers`, `ip hl`, `ip tos`, `ip dscp`, `ip ttl`, `ip id`,
    ///   `ip len` with a value; `ip ect`, `ip ce`, `ip frag`,
    ///   `ip unfrag` (or just `frag`...);
    /// - `ip[POS:LEN] VALUE` (`ip[POS]` for one byte; the field must lie
    ///   within one aligned 4-byte word), `transp[POS:LEN]`, and
    ///   `tcp[...]`, `udp[...]`, `icmp[...]` which also require the
    ///   protocol;
    /// - `true`, `false`; a whole pattern `-`, `any` or `all` matches
    ///   everything.
    ///
    /// Primitives combine with `and`, `or`, `not` (`&&`, `||`, `!`;
    /// juxtaposition is `and`), parentheses and `C ? A : B` (which tests
    /// C both ways: a pattern whose nested conditions would expand past
    /// 10000 copied tests is refused as too complex). Values take
    /// an operator `==` (implied), `!=`, `<`, `>`, `<=`, `>=`, and a mask
    /// before it: `src tcp port & 0xff00 == 0x1200`. A test without
    /// qualifiers borrows those of the test before it: `src port 80 or
    /// 443`. Port, ICMP type and TCP tests only match the first fragment.
    ///
    /// A primitive on bytes the packet does not have is false, whatever
    /// its operator (`port != 80` does not match a truncated header), and
    /// `not` of it is true, as with Click's short packets. A packet that
    /// is not a plausible IPv4 header (version not 4, IHL below 5, shorter
    /// than its header: IPv6, garbage) has no fields at all, so it
    /// matches only patterns that test none (`-`, `true`, `not tcp`).
    ///
    /// Differences from Click: the header may be found without the
    /// annotation (Click requires it), and a non-IPv4 packet has no fields
    /// (Click reads whatever bytes are there); a value with bits outside
    /// its mask is an error (Click ignores those bits); `ether host` and
    /// AddressInfo names are not supported; port names are a fixed list
    /// (Click also reads `/etc/services`); unreachable outputs are not
    /// warned about.
    ///
    /// # Ports
    /// One input; one output per pattern; push.
    ///
    /// # Arguments
    /// - `PATTERN...` (positional): one pattern per output.
    ///
    /// # Handlers
    /// - `program` (read): the compiled decision program in Click's
    ///   format: one step per line, `N OFFSET/VALUE%MASK  yes->J  no->J`
    ///   over 32-bit words, offsets counting the IP header from 256 and
    ///   the transport header from 512 as Click's; J is `step N`, an
    ///   output `[N]` or `[X]` (drop); `short->J` where a packet lacking
    ///   the bytes goes elsewhere than `no`. A dispatch step lists its
    ///   values and their destinations joined by `|`. Then `safe length`
    ///   and `alignment offset`.
    /// - `pattern0`, `pattern1`... (read/write): one pattern each; a write
    ///   replaces it and recompiles the program, which the next batch
    ///   uses (packets go on through the old program while the new one
    ///   compiles). A bad pattern is refused.
    ///
    /// # Example
    /// ```text
    /// IPClassifier(10.0.0.0/24 and syn, dst tcp port 8000 or 8080, icmp type echo, -);
    /// ```
    pub struct IPClassifier {
        shared: Arc<Shared>,
        program: Arc<Program>,
        seen: u64,
        outputs: usize,
        scatter: Scatter,
    }
}

/// What the pattern handlers change, and the program the data path takes
/// from here (checked once per batch) when the generation moves.
///
/// Two locks, so that a compile never holds up packets: a write holds
/// `patterns` for its whole compile (writes apply in order, and the
/// program always matches the texts), while `program` is held only to
/// clone or replace an `Arc`. The data path takes only `program`, and
/// only with `try_lock`.
struct Shared {
    generation: AtomicU64,
    patterns: Mutex<Patterns>,
    program: Mutex<Arc<Program>>,
}

struct Patterns {
    texts: Vec<String>,
    /// Pattern `i` lowered, with its output `i`.
    rules: Vec<(Expr, Option<u32>)>,
}

/// The program slot. An `Arc` replaced whole is never half-written, so a
/// poisoned lock is still good to use.
fn slot(shared: &Shared) -> MutexGuard<'_, Arc<Program>> {
    shared.program.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pattern's text, parsed and lowered to engine tests.
fn rule(text: &str) -> Result<Expr, String> {
    ip_pattern::parse_pattern(text)?.lower()
}

impl IPClassifier {
    pub const CLASS: ElementClass = ElementClass {
        name: "IPClassifier",
        ports: "1/-",
        processing: "h/h",
        doc: IPClassifier::DOC,
        factory: IPClassifier::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let raw = args.rest_positional();
        if raw.is_empty() {
            args.error(None, "at least one pattern is required");
            return None;
        }
        let mut rules = Vec::new();
        for (i, (text, span)) in raw.iter().enumerate() {
            match rule(text) {
                Ok(e) => rules.push(e),
                Err(e) => args.error(Some(*span), format!("pattern {i} '{}': {e}", text.trim())),
            }
        }
        if args.has_errors() {
            return None;
        }
        let texts = raw.into_iter().map(|(t, _)| t.trim().to_string()).collect();
        Some(Box::new(IPClassifier::from_rules(texts, rules)))
    }

    fn from_rules(texts: Vec<String>, rules: Vec<Expr>) -> IPClassifier {
        let rules: Vec<(Expr, Option<u32>)> = rules.into_iter().zip(0..).map(|(e, i)| (e, Some(i))).collect();
        let program = Arc::new(Program::compile(&rules, Listing::Ip));
        let outputs = rules.len();
        IPClassifier {
            shared: Arc::new(Shared {
                generation: AtomicU64::new(0),
                patterns: Mutex::new(Patterns { texts, rules }),
                program: Mutex::new(program.clone()),
            }),
            program,
            seen: 0,
            outputs,
            scatter: Scatter::new(),
        }
    }

    /// An IPClassifier from pattern texts (for benchmarks and fuzzing);
    /// the error names the first bad pattern.
    pub fn from_patterns(patterns: &[&str]) -> Result<IPClassifier, String> {
        let rules = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| rule(p).map_err(|e| format!("pattern {i} '{p}': {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IPClassifier::from_rules(
            patterns.iter().map(|s| s.to_string()).collect(),
            rules,
        ))
    }

    /// The output for a packet, or `None` if it matches no pattern.
    #[inline]
    pub fn classify(&self, p: &Packet) -> Option<usize> {
        self.program.run(p.data(), &packet_windows(p))
    }

    /// The compiled program, as the `program` handler prints it.
    pub fn program(&self) -> String {
        self.program.unparse()
    }

    /// Takes the program a pattern handler wrote, if any. Never waits: if
    /// a handler holds the slot this moment, the old program serves this
    /// batch and the next batch looks again.
    #[inline]
    fn refresh(&mut self) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen {
            let program = match self.shared.program.try_lock() {
                Ok(p) => p.clone(),
                Err(TryLockError::Poisoned(p)) => p.into_inner().clone(),
                Err(TryLockError::WouldBlock) => return,
            };
            // At least as new as generation `g`: the writer swaps, then
            // counts.
            self.program = program;
            self.seen = g;
        }
    }
}

impl Element for IPClassifier {
    fn port_count(&self) -> Option<PortCount> {
        Some(PortCount::exactly(1, self.outputs as u32))
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.refresh();
        self.program.push(&mut self.scatter, batch, cx, packet_windows);
    }

    fn handlers(&self) -> Vec<Handler> {
        let shared = self.shared.clone();
        let mut v = vec![Handler::read_only("program", move || {
            let program = slot(&shared).clone();
            program.unparse()
        })
        .merged(switchyard_core::Merge::Same)];
        for i in 0..self.outputs {
            let (r, w) = (self.shared.clone(), self.shared.clone());
            v.push(Handler::read_write(
                &format!("pattern{i}"),
                move || r.patterns.lock().map(|s| s.texts[i].clone()).unwrap_or_default(),
                move |text| {
                    let e = rule(text)?;
                    let mut pats = w.patterns.lock().map_err(|_| "pattern state poisoned".to_string())?;
                    pats.rules[i].0 = e;
                    pats.texts[i] = text.trim().to_string();
                    let program = Arc::new(Program::compile(&pats.rules, Listing::Ip));
                    *slot(&w) = program;
                    w.generation.fetch_add(1, Ordering::Release);
                    Ok(())
                },
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::ip_pattern::tests::{ip, tcp, udp};
    use super::*;
    use switchyard_core::Harness;

    fn make(config: &str) -> Result<Box<dyn Element>, String> {
        crate::testutil::configure("c :: IPClassifier", IPClassifier::CLASS, config)
    }

    use crate::testutil::frames as batch;

    const A: [u8; 4] = [10, 0, 0, 5];
    const B: [u8; 4] = [172, 16, 0, 1];

    #[test]
    fn classifies_real_packets_by_first_match() {
        let elem = make("10.0.0.0/24 and syn, 10.0.0.0/24 and fin ack, 10.0.0.0/24 and tcp, -").unwrap();
        assert_eq!(elem.port_count(), Some(PortCount::exactly(1, 4)));
        let mut h = Harness::new(elem, 1, 4);
        let finack = ip(6, A, B, &tcp(1, 2, 0x11));
        h.push(
            0,
            batch(&[
                ip(6, A, B, &tcp(1234, 80, 0x02)),
                finack,
                ip(6, B, A, &tcp(80, 1234, 0x10)),
                ip(17, A, B, &udp(53, 53)),
                ip(6, B, [172, 16, 0, 2], &tcp(1, 2, 0x02)),
                vec![0x60; 40],
                Vec::new(),
            ]),
        );
        assert_eq!((h.count(0), h.count(1), h.count(2), h.count(3)), (1, 1, 1, 4));
    }

    #[test]
    fn click_doc_examples() {
        let c = IPClassifier::from_patterns(&["dst tcp port 8000 or 8080", "dst tcp port > 1023", "tcp"]).unwrap();
        let pkt = |dport, proto| Packet::from_data(&ip(proto, A, B, &tcp(5555, dport, 0x10)));
        assert_eq!(c.classify(&pkt(8080, 6)), Some(0));
        assert_eq!(c.classify(&pkt(8000, 6)), Some(0));
        assert_eq!(c.classify(&pkt(2000, 6)), Some(1));
        assert_eq!(c.classify(&pkt(22, 6)), Some(2));
        assert_eq!(c.classify(&pkt(22, 17)), None);
        let c = IPClassifier::from_patterns(&["icmp echo-reply", "icmp type echo", "-"]).unwrap();
        let echo = Packet::from_data(&ip(1, A, B, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]));
        assert_eq!(c.classify(&echo), Some(1));
    }

    #[test]
    fn program_handler_shape() {
        let elem = make("tcp, udp, icmp, -").unwrap();
        let hs = elem.handlers();
        let program = (hs[0].read.as_ref().unwrap())();
        // One dispatch on the protocol byte, Click's offsets.
        assert_eq!(
            program,
            " 0 264/00010000|00060000|00110000%00ff0000  yes->[2]|[0]|[1]  no->[3]\n\
             safe length 266\nalignment offset 0\n"
        );
        let c = IPClassifier::from_patterns(&["src host 10.0.0.1", "-"]).unwrap();
        assert_eq!(
            c.program(),
            " 0 268/0a000001%ffffffff  yes->[0]  no->[1]\nsafe length 272\nalignment offset 0\n"
        );
        let names: Vec<String> = hs.iter().map(|h| format!("{}:{}", h.name, h.mode())).collect();
        assert_eq!(
            names,
            ["program:r", "pattern0:rw", "pattern1:rw", "pattern2:rw", "pattern3:rw"]
        );
    }

    #[test]
    fn pattern_handlers_recompile_and_refuse_bad_patterns() {
        let elem = make("tcp, -").unwrap();
        let hs = elem.handlers();
        let mut h = Harness::new(elem, 1, 2);
        let dns = ip(17, A, B, &udp(1000, 53));
        h.push(0, batch(std::slice::from_ref(&dns)));
        assert_eq!((h.count(0), h.count(1)), (0, 1));
        let p0 = &hs[1];
        assert_eq!((p0.read.as_ref().unwrap())(), "tcp");
        (p0.write.as_ref().unwrap())("udp port dns").unwrap();
        assert_eq!((p0.read.as_ref().unwrap())(), "udp port dns");
        h.push(0, batch(&[dns]));
        assert_eq!((h.count(0), h.count(1)), (1, 0));
        let e = (p0.write.as_ref().unwrap())("udp port").unwrap_err();
        assert!(e.contains("value missing"), "{e}");
        assert_eq!((p0.read.as_ref().unwrap())(), "udp port dns");
        assert!((hs[0].read.as_ref().unwrap())().contains("00000035%0000ffff"));
    }

    #[test]
    fn bad_patterns_are_config_errors_naming_the_pattern() {
        let e = make("tcp, src net 10.0.0.0/33, -").err().unwrap();
        assert_eq!(
            e,
            "'c :: IPClassifier': pattern 1 'src net 10.0.0.0/33': bad address or prefix '10.0.0.0/33'"
        );
        let e = make("tcp port").err().unwrap();
        assert_eq!(e, "'c :: IPClassifier': pattern 0 'tcp port': value missing");
        assert!(make("").is_err());
    }

    #[test]
    fn packets_do_not_wait_for_a_compile() {
        // A write in progress holds the patterns for its whole compile:
        // stand in for one, with a new program announced, and the data
        // path must go on without waiting.
        let mut c = IPClassifier::from_patterns(&["tcp", "-"]).unwrap();
        let shared = c.shared.clone();
        let compiling = shared.patterns.lock().unwrap();
        shared.generation.fetch_add(1, Ordering::Release);
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            c.refresh();
            let _ = tx.send(c.program());
        });
        // The event is the refresh returning; the deadline only turns a
        // regression (a refresh that waits on the compile) into a failure
        // instead of a hang.
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        drop(compiling);
        t.join().unwrap();
        assert!(got.is_ok(), "the data path waited for a compile");
        // While the slot itself is taken (a swap, an instant), the batch
        // keeps the old program and the next one picks the new up.
        let mut c = IPClassifier::from_patterns(&["tcp", "-"]).unwrap();
        let hs = c.handlers();
        let pkt = Packet::from_data(&ip(17, A, B, &udp(1, 53)));
        (hs[1].write.as_ref().unwrap())("udp").unwrap();
        let shared = c.shared.clone();
        let held = shared.program.lock().unwrap();
        c.refresh();
        assert_eq!(c.classify(&pkt), Some(1), "old program while the slot is held");
        drop(held);
        c.refresh();
        assert_eq!(c.classify(&pkt), Some(0));
    }

    #[test]
    fn too_complex_patterns_are_refused_in_config_and_writes() {
        let deep = ip_pattern::tests::nested_conditions(40, "true");
        let e = make(&format!("{deep}, -")).err().unwrap();
        assert!(
            e.starts_with("'c :: IPClassifier': pattern 0 '") && e.contains("pattern too complex"),
            "{e}"
        );
        let elem = make("tcp, -").unwrap();
        let hs = elem.handlers();
        let e = (hs[1].write.as_ref().unwrap())(&deep).unwrap_err();
        assert!(e.contains("pattern too complex"), "{e}");
        assert_eq!((hs[1].read.as_ref().unwrap())(), "tcp");
    }
}
