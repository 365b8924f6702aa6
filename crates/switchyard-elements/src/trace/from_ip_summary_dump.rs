use super::ip_summary::FieldList;
use super::parse::{FlowId, Line, Parser};
use crate::rng::Rng;
use crate::util::flag_handler;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work,
};

/// The most packets one batch carries.
const BATCH: usize = 128;
/// The most lines one run reads without finding a packet (comments, bad
/// lines), so that a run stays short whatever the file holds.
const LINES_PER_RUN: usize = 1024;
/// The longest line read: a packet of the largest size whose every
/// payload byte is escaped (four characters), plus its other fields.
/// A longer line is skipped and counted, never held in memory whole.
pub const MAX_LINE: usize = 4 * 65536 + 4096;
/// SAMPLE probabilities are fixed-point numbers with this many
/// fraction bits, as in Click (whose `sampling_prob` shows the rounding).
const SAMPLE_SHIFT: u32 = 28;
const SAMPLE_ONE: u32 = 1 << SAMPLE_SHIFT;

documented! {
    /// Reads IPv4 packets from an IP summary dump (Click's FromIPSummaryDump):
    /// the text format ToIPSummaryDump and Click's `ipsumdump` write, one
    /// packet per line.
    ///
    /// A dump starts with `!IPSummaryDump 1.3`, may say who made it
    /// (`!creator "..."`), and names its columns in a `!data` line
    /// (`!contents` is the old name), which may change mid-file; `#`
    /// lines are comments. `!proto P` sets the protocol of packets whose
    /// line gives none, `!flowid SRC SPORT DST DPORT [PROTO]` their
    /// addresses and ports. The fields are ToIPSummaryDump's; a field in
    /// `!data` that is unknown or not supported here is a column skipped,
    /// with a warning. A column holding `-`, or missing at the end of a
    /// line, is not set.
    ///
    /// Each packet starts at its IPv4 header (the network header
    /// annotation marks it), with the timestamp and paint annotations
    /// from the line and the destination address annotation set. Bytes no
    /// field sets are zero; the IP header has protocol TCP (PROTO) and TTL
    /// 100 unless the line says otherwise, and a TCP, UDP or ICMP header
    /// when the protocol has one. The IP length comes from `ip_len`
    /// (else `wire_len`, else the payload, else the headers' size); a
    /// longer IP length than the known contents is not filled in unless
    /// CHECKSUM is true, so such packets are shorter than their IP length
    /// says (Switchyard has no extra-length annotation to carry the
    /// difference). The IP header checksum is always set, except that a
    /// line's `ip_sum` is kept when CHECKSUM is false.
    ///
    /// A packet line whose fields do not parse is skipped and counted
    /// (`bad_lines`), with a warning for the first one; so is a line over
    /// 260 KiB (room for a 64 KiB payload with every byte escaped).
    /// Switchyard is stricter than Click here, which keeps a line if any
    /// one of its fields parses. A `!binary` dump is refused
    /// (reading stops with an error): only text dumps are read. Gzip and
    /// bzip2 files are not uncompressed.
    ///
    /// # Ports
    /// No inputs, one output; push (its own task) or pull. In push, it
    /// sends no more than the Queues downstream can take.
    ///
    /// # Arguments
    /// - `FILENAME` (positional): the dump; `-` is standard input. A
    ///   missing file is a configuration error naming it.
    /// - `DATA`: the dump's text itself, instead of FILENAME.
    /// - `STOP`: stop the router at the end of the dump; default false.
    /// - `ACTIVE`: send packets; default true.
    /// - `ZERO`: bytes no field sets are zero; default true. False leaves
    ///   whatever earlier packets left there.
    /// - `TIMING`: send packets at the pace of their timestamps (the first
    ///   at once); default false.
    /// - `CHECKSUM`: pad each packet to its IP length and set its TCP, UDP
    ///   or ICMP checksum (and the IP checksum even over a given
    ///   `ip_sum`); default false.
    /// - `SAMPLE`: send each packet with this probability (0 to 1, in
    ///   steps of 2^-28); default 1.
    /// - `PROTO`: the IP protocol of packets whose line has none; default 6.
    /// - `MULTIPACKET`: a line's `count` field makes that many packets,
    ///   which share its IP length (the last takes the remainder); default
    ///   false, when each line is one packet whatever its count (there is
    ///   no extra-packets annotation to carry it).
    /// - `CONTENTS`, `FIELDS`, `DEFAULT_CONTENTS`, `DEFAULT_FIELDS`: the
    ///   fields of a dump that has no `!data` line (until one comes). An
    ///   unknown field here is a configuration error.
    /// - `FLOWID`, `DEFAULT_FLOWID`: `SRC SPORT DST DPORT [PROTO]`, as a
    ///   `!flowid` line.
    /// - `ALLOW_NONEXISTENT`: a missing file is an empty dump; default
    ///   false.
    ///
    /// A hot reload that keeps the element with the same dump and settings
    /// goes on from where it was.
    ///
    /// # Handlers
    /// - `active` (read/write): ACTIVE.
    /// - `stop` (write): stops sending and stops the router.
    /// - `encap` (read): `IP`.
    /// - `sampling_prob` (read): SAMPLE as used (after rounding).
    /// - `filename` (read): the file (`-` for standard input).
    /// - `filesize` (read): the file's size in bytes, `-` if unknown.
    /// - `filepos` (read): bytes read so far.
    /// - `count` (read): packets sent.
    /// - `bad_lines` (read): lines skipped for not parsing.
    ///
    /// # Example
    /// ```text
    /// FromIPSummaryDump(trace.txt, STOP true, CHECKSUM true)
    ///     -> CheckIPHeader -> ToIPSummaryDump(out.txt, CONTENTS ip_src ip_dst ip_len);
    /// ```
    pub struct FromIPSummaryDump {
        label: String,
        /// What a reload must keep to go on where this one is.
        key: String,
        trace: Option<Trace>,
        stop: bool,
        timing: bool,
        checksum: bool,
        multipacket: bool,
        sample: u32,
        rng: Rng,
        /// Timestamp of the first packet sent with TIMING, and when.
        origin: Option<(u64, Instant)>,
        finished: bool,
        warned_bad: bool,
        warned_count: bool,
        active: Arc<AtomicBool>,
        stop_req: Arc<AtomicBool>,
        count: Arc<AtomicU64>,
        bad: Arc<AtomicU64>,
        filepos: Arc<AtomicU64>,
        filesize: Option<u64>,
    }
}

/// The dump being read: its lines and the packet of the current one.
struct Trace {
    reader: LineReader,
    parser: Parser,
    /// Packets the current line still stands for.
    left: u32,
    /// IP lengths of a line's packets under MULTIPACKET: `each` for all
    /// but the last, which has `last`.
    each: u16,
    last: u16,
}

/// Lines of a dump, bounded in length.
struct LineReader {
    src: Box<dyn BufRead + Send>,
    pos: u64,
    line_no: u64,
    buf: Vec<u8>,
}

/// Where reading lines got to.
enum Next {
    /// A packet line, now in the parser.
    Packet,
    /// Only lines without packets so far; more next time.
    Later,
    End,
}

enum Read {
    Line,
    TooLong,
    Eof,
    Failed(std::io::Error),
}

impl LineReader {
    fn new(src: Box<dyn BufRead + Send>) -> LineReader {
        LineReader {
            src,
            pos: 0,
            line_no: 0,
            buf: Vec::new(),
        }
    }

    /// The next line into `buf`, without its newline.
    fn next(&mut self) -> Read {
        self.buf.clear();
        let (mut too_long, mut any) = (false, false);
        loop {
            let avail = match self.src.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Read::Failed(e),
            };
            if avail.is_empty() {
                if !any {
                    return Read::Eof;
                }
                break;
            }
            any = true;
            let (take, used, end) = match avail.iter().position(|&c| c == b'\n') {
                Some(i) => (i, i + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > MAX_LINE {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&avail[..take]);
                }
            }
            self.src.consume(used);
            self.pos += used as u64;
            if end {
                break;
            }
        }
        self.line_no += 1;
        if too_long {
            Read::TooLong
        } else {
            Read::Line
        }
    }
}

impl FromIPSummaryDump {
    pub const CLASS: ElementClass = ElementClass {
        name: "FromIPSummaryDump",
        ports: "0/1",
        processing: "a/a",
        doc: FromIPSummaryDump::DOC,
        factory: FromIPSummaryDump::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let filename = args.read_p::<String>("FILENAME");
        let stop = args.read::<bool>("STOP").unwrap_or(false);
        let active = args.read::<bool>("ACTIVE").unwrap_or(true);
        let zero = args.read::<bool>("ZERO").unwrap_or(true);
        let timing = args.read::<bool>("TIMING").unwrap_or(false);
        let checksum = args.read::<bool>("CHECKSUM").unwrap_or(false);
        let sample = args.read::<f64>("SAMPLE");
        let proto = args.read::<u8>("PROTO").unwrap_or(crate::wire::IP_PROTO_TCP);
        let multipacket = args.read::<bool>("MULTIPACKET").unwrap_or(false);
        // Click reads each of these names, a later one replacing an
        // earlier one; every one is read so none is left as unknown.
        let mut last = |names: &[&'static str]| {
            let given: Vec<_> = names
                .iter()
                .filter_map(|&k| args.read::<FieldList>(k).map(|v| (k, v)))
                .collect();
            given.into_iter().next_back()
        };
        let contents = last(&["DEFAULT_CONTENTS", "DEFAULT_FIELDS", "CONTENTS", "FIELDS"]);
        let flowid = last(&["DEFAULT_FLOWID", "FLOWID"]);
        let allow_nonexistent = args.read::<bool>("ALLOW_NONEXISTENT").unwrap_or(false);
        let data = args.read::<String>("DATA");

        let sample = match sample {
            None => SAMPLE_ONE,
            Some(p) if p < 0.0 => {
                args.error(
                    Some(args.span_of("SAMPLE")),
                    "SAMPLE: expected a probability from 0 to 1",
                );
                return None;
            }
            Some(p) if p > 1.0 => {
                tracing::warn!("FromIPSummaryDump: SAMPLE probability reduced to 1");
                SAMPLE_ONE
            }
            Some(p) => {
                if p == 0.0 {
                    tracing::warn!("FromIPSummaryDump: SAMPLE probability is 0; emitting no packets");
                }
                (p * f64::from(SAMPLE_ONE)).round() as u32
            }
        };
        let mut parser = Parser::default();
        parser.default_proto = proto;
        parser.zero = zero;
        if let Some((kw, list)) = &contents {
            if let Err(e) = list.resolve() {
                args.error(Some(args.span_of(kw)), format!("{kw}: {e}"));
                return None;
            }
            parser.set_fields(&list.words());
        }
        if let Some((kw, list)) = &flowid {
            match FlowId::parse(&list.words()) {
                Some((flow, p)) => {
                    parser.flowid = Some(flow);
                    if let Some(p) = p {
                        parser.default_proto = p;
                    }
                }
                None => {
                    args.error(
                        Some(args.span_of(kw)),
                        format!("{kw}: expected 'SRC SPORT DST DPORT [PROTO]', found '{}'", list.0),
                    );
                    return None;
                }
            }
        }

        let (label, src, filesize): (String, Option<Box<dyn BufRead + Send>>, Option<u64>) = match (filename, data) {
            (Some(_), Some(_)) => {
                args.error(None, "FILENAME and DATA conflict");
                return None;
            }
            (None, None) => {
                args.error(None, "missing mandatory argument FILENAME");
                return None;
            }
            (None, Some(text)) => (
                "<data>".into(),
                Some(Box::new(std::io::Cursor::new(text.into_bytes()))),
                None,
            ),
            (Some(f), None) if f == "-" => ("-".into(), Some(Box::new(BufReader::new(std::io::stdin()))), None),
            (Some(f), None) => {
                let path = PathBuf::from(&f);
                match std::fs::File::open(&path) {
                    Ok(file) => {
                        let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
                        (f, Some(Box::new(BufReader::with_capacity(1 << 16, file))), size)
                    }
                    Err(e) if allow_nonexistent && e.kind() == std::io::ErrorKind::NotFound => (f, None, None),
                    Err(e) => {
                        args.error(None, format!("{}: {e}", path.display()));
                        return None;
                    }
                }
            }
        };
        let key = format!(
            "{label}|{:?}|{:?}|{proto}|{zero}",
            contents.map(|c| c.1 .0),
            flowid.map(|f| f.1 .0)
        );
        Some(Box::new(FromIPSummaryDump {
            finished: src.is_none(),
            trace: src.map(|src| Trace {
                reader: LineReader::new(src),
                parser,
                left: 0,
                each: 0,
                last: 0,
            }),
            label,
            key,
            stop,
            timing,
            checksum,
            multipacket,
            sample,
            rng: Rng::new(),
            origin: None,
            warned_bad: false,
            warned_count: false,
            active: Arc::new(AtomicBool::new(active)),
            stop_req: Arc::default(),
            count: Arc::default(),
            bad: Arc::default(),
            filepos: Arc::default(),
            filesize,
        }))
    }

    /// Reads lines up to the next packet line, which the parser then
    /// holds.
    fn next_line(&mut self) -> Next {
        let Some(t) = self.trace.as_mut() else {
            return Next::End;
        };
        let mut seen = 0;
        loop {
            if seen == LINES_PER_RUN {
                return Next::Later;
            }
            seen += 1;
            let read = t.reader.next();
            self.filepos.store(t.reader.pos, Relaxed);
            let line_no = t.reader.line_no;
            let outcome = match read {
                Read::Eof => None,
                Read::Failed(e) => {
                    tracing::error!(file = %self.label, line = line_no + 1, error = %e, "FromIPSummaryDump: read failed; the packets before it were sent");
                    None
                }
                Read::TooLong => Some(Line::Bad(format!("line longer than {MAX_LINE} bytes"))),
                Read::Line => Some(t.parser.line(&t.reader.buf)),
            };
            for w in t.parser.warnings.drain(..) {
                tracing::warn!(file = %self.label, line = line_no, "FromIPSummaryDump: {w}");
            }
            match outcome {
                None => break,
                Some(Line::Packet) => {
                    let b = &t.parser.builder;
                    let count = if self.multipacket { b.count.max(1) } else { 1 };
                    if !self.multipacket && b.count > 1 && !self.warned_count {
                        self.warned_count = true;
                        tracing::warn!(file = %self.label, line = line_no, "FromIPSummaryDump: the count field makes one packet without MULTIPACKET");
                    }
                    t.left = count;
                    // One line, several packets: they share its IP length
                    // (each at least as long as the line's packet).
                    let len = b.data().len().min(usize::from(u16::MAX)) as u64;
                    let total = u64::from(b.ip_len()).max(len);
                    let each = total / u64::from(count);
                    let (each, last) = if each < len {
                        (len, len)
                    } else {
                        (each, total - each * u64::from(count - 1))
                    };
                    t.each = each.min(0xffff) as u16;
                    t.last = last.min(0xffff) as u16;
                    return Next::Packet;
                }
                Some(Line::Skip) => {}
                Some(Line::Bad(why)) => {
                    let n = self.bad.fetch_add(1, Relaxed) + 1;
                    if !self.warned_bad {
                        self.warned_bad = true;
                        tracing::warn!(file = %self.label, line = line_no, "FromIPSummaryDump: {why}; line skipped (bad_lines counts them)");
                    } else {
                        tracing::debug!(file = %self.label, line = line_no, skipped = n, "FromIPSummaryDump: {why}");
                    }
                }
                Some(Line::Binary) => {
                    tracing::error!(file = %self.label, line = line_no, "FromIPSummaryDump: binary IP summary dumps are not supported; stopped reading");
                    break;
                }
            }
        }
        let bad = self.bad.load(Relaxed);
        if bad > 0 {
            tracing::warn!(file = %self.label, skipped = bad, "FromIPSummaryDump: lines skipped for not parsing");
        }
        self.trace = None;
        Next::End
    }

    /// Up to `limit` packets due now (fewer when some are sampled out or
    /// lines are skipped); `Err(when)` if the next is not due.
    fn fill(&mut self, limit: usize) -> Result<Batch, Option<Instant>> {
        let mut b = Batch::new();
        for _ in 0..limit {
            let Some(t) = self.trace.as_mut() else { break };
            if t.left == 0 {
                match self.next_line() {
                    Next::Packet => {}
                    Next::Later | Next::End => break,
                }
            }
            let Some(t) = self.trace.as_mut() else { break };
            if self.timing {
                let ts = t.parser.builder.timestamp_ns;
                let (t0, start) = *self.origin.get_or_insert((ts, switchyard_core::clock::now()));
                let due = start + Duration::from_nanos(ts.saturating_sub(t0));
                if due > switchyard_core::clock::now() {
                    if b.is_empty() {
                        return Err(Some(due));
                    }
                    break;
                }
            }
            let count = if self.multipacket {
                t.parser.builder.count.max(1)
            } else {
                1
            };
            let share = match (count, t.left) {
                (1, _) => None,
                (_, 1) => Some(t.last),
                _ => Some(t.each),
            };
            t.left -= 1;
            if self.sample < SAMPLE_ONE && self.rng.next_u32() & (SAMPLE_ONE - 1) >= self.sample {
                continue;
            }
            b.push(t.parser.builder.emit(share, self.checksum));
        }
        self.count.fetch_add(b.len() as u64, Relaxed);
        Ok(b)
    }

    fn at_end(&mut self, cx: &Context<'_>) {
        if !self.finished {
            self.finished = true;
            tracing::info!(file = %self.label, packets = self.count.load(Relaxed), "end of IP summary dump");
            if self.stop {
                cx.request_stop();
            }
        }
    }

    /// A `stop` handler write: no more packets, and the router stops.
    fn take_stop(&mut self, cx: &Context<'_>) {
        if self.stop_req.swap(false, Relaxed) {
            self.active.store(false, Relaxed);
            cx.request_stop();
        }
    }
}

impl Element for FromIPSummaryDump {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(mut old) = downcast::<FromIPSummaryDump>(old) {
            if old.key == self.key {
                self.trace = old.trace.take();
                self.origin = old.origin;
                self.finished = old.finished;
                self.warned_bad = old.warned_bad;
                self.warned_count = old.warned_count;
                self.count = old.count.clone();
                self.bad = old.bad.clone();
                self.filepos = old.filepos.clone();
                self.filesize = old.filesize;
            }
        }
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        Ok(ports.outputs.first() == Some(&Processing::Push))
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        self.take_stop(cx);
        if cx.stopping() {
            return Work::Done;
        }
        if !self.active.load(Relaxed) {
            return Work::Idle;
        }
        // room: never more than the Queues downstream can take, as Click's
        // source waits on their full notifier; this is the one place the
        // batch size is decided.
        let limit = cx.room().min(BATCH);
        if limit == 0 {
            return Work::Idle;
        }
        match self.fill(limit) {
            Ok(b) if b.is_empty() => {
                if self.trace.is_none() {
                    self.at_end(cx);
                    return Work::Done;
                }
                // Lines skipped, or packets sampled out: more to read.
                Work::Busy
            }
            Ok(b) => {
                cx.push(0, b);
                Work::Busy
            }
            Err(Some(due)) => Work::SleepUntil(due),
            Err(None) => Work::Idle,
        }
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        self.take_stop(cx);
        if !self.active.load(Relaxed) {
            return None;
        }
        match self.fill(BATCH) {
            Ok(b) if b.is_empty() => {
                if self.trace.is_none() {
                    self.at_end(cx);
                }
                None
            }
            Ok(b) => Some(b),
            Err(_) => None,
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (c, bad, pos) = (self.count.clone(), self.bad.clone(), self.filepos.clone());
        let (stop, active) = (self.stop_req.clone(), self.active.clone());
        let name = self.label.clone();
        let size = self.filesize.map_or_else(|| "-".to_string(), |s| s.to_string());
        let prob = sampling_prob(self.sample);
        vec![
            flag_handler("active", &self.active),
            Handler::write_only("stop", move |_| {
                active.store(false, Relaxed);
                stop.store(true, Relaxed);
                Ok(())
            }),
            Handler::read_only("encap", || "IP".to_string()),
            Handler::read_only("sampling_prob", move || prob.clone()).merged(switchyard_core::Merge::Same),
            Handler::read_only("filename", move || name.clone()),
            Handler::read_only("filesize", move || size.clone()).merged(switchyard_core::Merge::Same),
            Handler::read_only("filepos", move || pos.load(Relaxed).to_string()).merged(switchyard_core::Merge::List),
            Handler::read_only("count", move || c.load(Relaxed).to_string()),
            Handler::read_only("bad_lines", move || bad.load(Relaxed).to_string()),
        ]
    }
}

/// A fixed-point probability as the shortest decimal that reads back to
/// it (`0.1` rather than the exact `0.100000001490116...`).
fn sampling_prob(fixed: u32) -> String {
    let exact = f64::from(fixed) / f64::from(SAMPLE_ONE);
    (0..=10)
        .map(|digits| format!("{exact:.digits$}"))
        .map(|s| {
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        })
        .find(|s| {
            s.parse::<f64>()
                .is_ok_and(|v| (v * f64::from(SAMPLE_ONE)).round() as u32 == fixed)
        })
        .unwrap_or_else(|| exact.to_string())
}
