use super::ip_summary::{self as fmt, Field, FieldList};
use super::summary::Summary;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{
    documented, downcast, Args, Batch, Context, Element, ElementClass, Handler, PortInfo, Processing, Work,
};

/// Click's default fields.
const DEFAULT_FIELDS: &str = "timestamp ip_src";

documented! {
    /// Writes one line of text per packet, a summary of its IP headers
    /// (Click's ToIPSummaryDump): an IP summary dump, which
    /// FromIPSummaryDump reads back.
    ///
    /// The file starts with `!IPSummaryDump 1.3`, then `!creator "BANNER"`
    /// when BANNER is given, `!host` and `!runtime` lines with VERBOSE,
    /// and `!data` with the field names. Each packet's line has its fields
    /// in that order, separated by a space; a field that does not apply
    /// (ports of an ICMP packet, a TCP field of a header cut short, any IP
    /// field of a packet without a marked network header) is `-`.
    ///
    /// The fields, with the names Click also accepts for them, and what
    /// they look like:
    ///
    /// | field | also | example |
    /// |---|---|---|
    /// | `timestamp` | `ts`, `utimestamp` | `996033261.451094` (nine digits when not whole microseconds) |
    /// | `ntimestamp` | | as `timestamp` (written `timestamp` in `!data`) |
    /// | `ts_sec` | `sec` | `996033261` |
    /// | `ts_usec` | `usec` | `451094` |
    /// | `ts_usec1` | `usec1` | `996033261451094` |
    /// | `ip_src`, `ip_dst` | `src`, `dst` | `10.0.0.1` |
    /// | `ip_proto` | `proto`, `ip_p` | `T`, `U`, `I` for TCP, UDP, ICMP, else `47` |
    /// | `ip_len` | `len`, `length` | `132` |
    /// | `ip_id` | `id` | `48759` |
    /// | `ip_ttl`, `ip_tos` | `ttl`, `tos` | `64` |
    /// | `ip_dscp` | `dscp` | `46` |
    /// | `ip_ecn` | `ecn` | `no`, `ect1`, `ect2`, `ce` |
    /// | `ip_frag` | `frag` | `F` first fragment, `f` later one, `!` DF, `.` none |
    /// | `ip_fragoff` | `fragoff` | `0`, `1480+` (MF), `0!` (DF): offset in bytes |
    /// | `ip_hl` | `hl` | `20` (bytes) |
    /// | `ip_sum` | `sum` | `43812` |
    /// | `ip_capture_len` | | `34`: bytes of the IP packet present |
    /// | `sport`, `dport` | | `22` (TCP, UDP, DCCP, UDP-Lite) |
    /// | `tcp_seq`, `tcp_ack` | `tcp_seqno`, `tcp_ackno` | `93167339` |
    /// | `tcp_flags` | | `S`, `SA`, `PA`, `FA`, `.` (letters `FSRPAUECN`) |
    /// | `tcp_off` | | `20` (bytes) |
    /// | `tcp_window` | `tcp_win` | `480` |
    /// | `tcp_urp` | | `0` |
    /// | `tcp_opt` | | `mss1460;sackok;ts1:0;wscale7`, `.` none, `?` malformed |
    /// | `tcp_ntopt`, `tcp_sack` | | as `tcp_opt`, without timestamps / SACK ones only |
    /// | `udp_len` | | `34` |
    /// | `payload_len` | `payload_length` | `34`: from the IP length |
    /// | `payload` | | `"GET / HTTP/1.0\r\n"`: quoted, `\\ \" \$ \t \r \n` and `\ooo` escapes |
    /// | `count` | `pkt_count`, `packet_count` | `1` (no extra-packets annotation) |
    /// | `direction` | | the paint annotation: `>` for 0, `<` for 1, else the number |
    /// | `link`, `paint` | | the paint annotation as a number |
    /// | `wire_len` | `wire_length` | `54`: the packet's length from its data start |
    ///
    /// Names are case-sensitive; a name without an underscore gets `ip_`
    /// before it, and a space may stand for the underscore (`"tcp seq"`).
    /// Click's `ip_opt`, `icmp_*`, `payload_md5*`, `eth_*`,
    /// `first_timestamp` and `aggregate` are not supported.
    ///
    /// Lines go to the file at the end of each batch.
    ///
    /// # Ports
    /// One input, agnostic (on a pull path it pulls as a task); zero or
    /// one push output, which gets every packet after it is written (so
    /// it can sit in a path).
    ///
    /// # Arguments
    /// - `FILENAME` (positional, mandatory): the file, created or truncated
    ///   when the router starts; `-` is standard output. A hot reload that
    ///   keeps the element with the same file and fields goes on appending.
    /// - `CONTENTS` (positional, or keyword; also `FIELDS`, and `DATA` as
    ///   Click's old name): the fields; default `timestamp ip_src`, as
    ///   Click's code (its documentation says `ip_src ip_dst`).
    /// - `HEADER`: write the `!` lines at the start; default true.
    /// - `VERBOSE`: also `!host` and `!runtime` lines (the time in UTC);
    ///   default false.
    /// - `BANNER`: the `!creator` line's text.
    /// - `BAD_PACKETS`: write a `!bad` line (`!bad IP version 6`, `!bad
    ///   truncated TCP header`) before the line of a packet with a broken
    ///   header; default false.
    /// - `CAREFUL_TRUNC`: with BAD_PACKETS, a packet shorter than its IP
    ///   length gets `!bad truncated IP missing N`; default true. Without
    ///   Click's extra-length annotation, that includes the short packets
    ///   FromIPSummaryDump makes without CHECKSUM.
    /// - `MULTIPACKET`, `EXTRA_LENGTH`: accepted; they act on Click
    ///   annotations Switchyard does not have.
    /// - `BINARY`: false only; binary dumps are not written.
    ///
    /// # Handlers
    /// - `flush` (write): accepted for Click's sake; the lines of each
    ///   batch are already in the file when the batch leaves.
    /// - `count` (read): packets written.
    ///
    /// # Example
    /// ```text
    /// FromDevice(eth0) -> Strip(14) -> CheckIPHeader
    ///     -> ToIPSummaryDump(trace.txt, CONTENTS timestamp src sport dst dport proto len tcp_flags)
    ///     -> Discard;
    /// ```
    pub struct ToIPSummaryDump {
        filename: String,
        summary: Summary,
        header: bool,
        verbose: bool,
        banner: Option<String>,
        bad_packets: bool,
        out: Option<Box<dyn Write + Send>>,
        line: Vec<u8>,
        bad: Vec<u8>,
        count: Arc<AtomicU64>,
        failed: bool,
    }
}

impl ToIPSummaryDump {
    pub const CLASS: ElementClass = ElementClass {
        name: "ToIPSummaryDump",
        ports: "1/0-1",
        processing: "a/h",
        doc: ToIPSummaryDump::DOC,
        factory: ToIPSummaryDump::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let filename = args.read_mp::<String>("FILENAME")?;
        let contents = args.read_p::<FieldList>("CONTENTS").map(|c| ("CONTENTS", c));
        let fields = args.read::<FieldList>("FIELDS").map(|c| ("FIELDS", c));
        let data = args.read::<FieldList>("DATA").map(|c| ("DATA", c));
        let verbose = args.read::<bool>("VERBOSE").unwrap_or(false);
        let header = args.read::<bool>("HEADER").unwrap_or(true);
        let banner = args.read::<String>("BANNER");
        let _multipacket = args.read::<bool>("MULTIPACKET");
        let bad_packets = args.read::<bool>("BAD_PACKETS").unwrap_or(false);
        let careful_trunc = args.read::<bool>("CAREFUL_TRUNC").unwrap_or(true);
        let _extra_length = args.read::<bool>("EXTRA_LENGTH");
        if args.read::<bool>("BINARY") == Some(true) {
            args.error(
                Some(args.span_of("BINARY")),
                "BINARY: binary IP summary dumps are not supported; only text",
            );
            return None;
        }
        let (kw, list) = data
            .or(contents)
            .or(fields)
            .unwrap_or(("CONTENTS", FieldList(DEFAULT_FIELDS.into())));
        let fields = match list.resolve() {
            Ok(f) => f,
            Err(e) => {
                args.error(Some(args.span_of(kw)), format!("{kw}: {e}"));
                return None;
            }
        };
        // Checked here, created (truncated) only by `activate`: checking a
        // configuration must not make or wipe a file.
        if filename != "-" {
            if let Err(e) = check_writable(Path::new(&filename)) {
                args.error(None, format!("{filename}: {e}"));
                return None;
            }
        }
        Some(Box::new(ToIPSummaryDump {
            filename,
            summary: Summary::new(fields, careful_trunc),
            header,
            verbose,
            banner,
            bad_packets,
            out: None,
            line: Vec::new(),
            bad: Vec::new(),
            count: Arc::default(),
            failed: false,
        }))
    }

    /// The `!` lines that start the dump.
    fn header_text(&self) -> Vec<u8> {
        let mut h = Vec::new();
        let _ = writeln!(h, "!IPSummaryDump {}.{}", fmt::MAJOR_VERSION, fmt::MINOR_VERSION);
        if let Some(b) = &self.banner {
            h.extend_from_slice(b"!creator ");
            fmt::quote(b.as_bytes(), &mut h);
            h.push(b'\n');
        }
        if self.verbose {
            if let Some(host) = hostname() {
                let _ = writeln!(h, "!host {host}");
            }
            let now = switchyard_core::packet::now_ns();
            h.extend_from_slice(b"!runtime ");
            fmt::format_timestamp(now, &mut h);
            let _ = writeln!(h, " ({})", ctime_utc(now / 1_000_000_000));
        }
        h.extend_from_slice(b"!data");
        for f in self.summary.fields() {
            // In text, a nanosecond timestamp is a timestamp.
            let name = if *f == Field::NTimestamp { "timestamp" } else { f.name() };
            h.push(b' ');
            h.extend_from_slice(name.as_bytes());
        }
        h.push(b'\n');
        h
    }

    fn write(&mut self, batch: &Batch) {
        let Some(out) = self.out.as_mut().filter(|_| !self.failed) else {
            return;
        };
        let mut r = Ok(());
        for p in batch {
            self.line.clear();
            self.bad.clear();
            let bad = self.bad_packets.then_some(&mut self.bad);
            self.summary.write(p, &mut self.line, bad);
            r = out.write_all(&self.bad).and_then(|()| out.write_all(&self.line));
            if r.is_err() {
                break;
            }
        }
        // Flushed per batch: what was counted is in the file for readers.
        match r.and_then(|()| out.flush()) {
            Ok(()) => {
                self.count.fetch_add(batch.len() as u64, Relaxed);
            }
            Err(e) => {
                tracing::error!(file = %self.filename, error = %e, "ToIPSummaryDump: write failed; writing nothing more");
                self.failed = true;
            }
        }
    }
}

/// Whether `path` can be written without writing it: an existing file
/// opened for appending (nothing changes), or a directory to create it
/// in.
fn check_writable(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return std::fs::OpenOptions::new().append(true).open(path).map(drop);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no directory {}", dir.display()),
        ))
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
}

/// `secs` since the epoch as C's `ctime` writes it (`Tue Jul 24 17:53:30
/// 2001`), in UTC.
fn ctime_utc(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    // Days to a civil date (Howard Hinnant's algorithm), from 0000-03-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        year
    )
}

impl Element for ToIPSummaryDump {
    fn exclusive(&self) -> Option<(String, String)> {
        // Standard output is shared by lines, as Click's copies would.
        (self.filename != "-").then(|| {
            (
                format!("write '{}'", self.filename),
                "put $COPY in its file name".into(),
            )
        })
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(mut old) = downcast::<ToIPSummaryDump>(old) {
            if old.filename == self.filename && old.summary.fields() == self.summary.fields() {
                self.out = old.out.take();
                self.failed = old.failed;
            }
            self.count = old.count.clone();
        }
    }

    fn activate(&mut self) -> Result<(), String> {
        if self.out.is_some() {
            return Ok(());
        }
        let mut out: Box<dyn Write + Send> = if self.filename == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout()))
        } else {
            let f = std::fs::File::create(&self.filename).map_err(|e| format!("{}: {e}", self.filename))?;
            Box::new(std::io::BufWriter::with_capacity(1 << 16, f))
        };
        if self.header {
            out.write_all(&self.header_text())
                .and_then(|()| out.flush())
                .map_err(|e| format!("{}: {e}", self.filename))?;
        }
        self.out = Some(out);
        Ok(())
    }

    fn initialize(&mut self, ports: &PortInfo) -> Result<bool, String> {
        Ok(ports.inputs.first() == Some(&Processing::Pull))
    }

    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        self.write(&batch);
        if cx.noutputs() > 0 {
            cx.push(0, batch);
        }
    }

    fn run(&mut self, cx: &mut Context<'_>) -> Work {
        match cx.pull(0) {
            Some(b) => {
                self.write(&b);
                if cx.noutputs() > 0 {
                    cx.push(0, b);
                }
                Work::Busy
            }
            None => Work::Idle,
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let c = self.count.clone();
        vec![
            Handler::write_only("flush", |_| Ok(())),
            Handler::read_only("count", move || c.load(Relaxed).to_string()),
        ]
    }
}

impl Drop for ToIPSummaryDump {
    fn drop(&mut self) {
        if let Some(w) = self.out.as_mut() {
            let _ = w.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_c() {
        assert_eq!(ctime_utc(996_022_410), "Wed Jul 25 00:53:30 2001");
        assert_eq!(ctime_utc(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime_utc(951_782_400), "Tue Feb 29 00:00:00 2000");
    }
}
