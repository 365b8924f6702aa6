//! Click's ControlSocket protocol, version 1.3, as pure functions: a
//! command line in, a [`Request`]; a [`Reply`] in, bytes out. No I/O, so
//! it is unit-tested and fuzzed directly (fuzz/).
//!
//! Lines end in CRLF (a bare LF is accepted). Replies are `CODE text`, a
//! multi-line reply uses `CODE-text` for all lines but the last, and a read
//! result follows as `DATA n` and exactly n bytes.

/// The greeting sent on connect.
pub const GREETING: &str = "Click::ControlSocket/1.3";

/// Longest command line accepted (bytes, terminator included).
pub const MAX_LINE: usize = 64 * 1024;

/// Largest WRITEDATA/READDATA payload accepted.
pub const MAX_DATA: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Read {
        handler: String,
        param: String,
    },
    /// READDATA: `len` bytes of parameter follow the line.
    ReadData {
        handler: String,
        len: usize,
    },
    /// READUNTIL: parameter lines follow, up to a line equal to `terminator`.
    ReadUntil {
        handler: String,
        terminator: String,
    },
    Write {
        handler: String,
        value: String,
    },
    /// WRITEDATA: `len` bytes of value follow the line.
    WriteData {
        handler: String,
        len: usize,
    },
    /// WRITEUNTIL: value lines follow, up to a line equal to `terminator`.
    WriteUntil {
        handler: String,
        terminator: String,
    },
    CheckRead(String),
    CheckWrite(String),
    Llrpc,
    Help,
    Quit,
    /// A blank line: ignored, as Click does.
    Empty,
}

/// Click's reply codes.
pub mod code {
    pub const OK: u16 = 200;
    pub const OK_WARN: u16 = 220;
    pub const SYNTAX: u16 = 500;
    pub const UNIMPLEMENTED: u16 = 501;
    pub const NO_ELEMENT: u16 = 510;
    pub const NO_HANDLER: u16 = 511;
    pub const HANDLER_ERROR: u16 = 520;
    pub const DATA_TOO_BIG: u16 = 521;
    pub const PERMISSION: u16 = 530;
    pub const NO_ROUTER: u16 = 540;
}

/// A reply: a code, one or more text lines, and for reads the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
    pub data: Option<Vec<u8>>,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
            data: None,
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            lines,
            data: None,
        }
    }

    pub fn with_data(mut self, data: Vec<u8>) -> Reply {
        self.data = Some(data);
        self
    }

    pub fn is_ok(&self) -> bool {
        self.code < 300
    }

    /// The bytes sent on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let sep = if i + 1 < n { '-' } else { ' ' };
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, sanitize(text)).as_bytes());
        }
        if let Some(d) = &self.data {
            out.extend_from_slice(format!("DATA {}\r\n", d.len()).as_bytes());
            out.extend_from_slice(d);
        }
        out
    }

    /// The text of all lines, joined by newlines (a client shows this).
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A reply line must stay one line.
fn sanitize(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The first word and the rest after one run of whitespace.
fn split_first(line: &str) -> (&str, &str) {
    let line = line.trim_start();
    let end = line.find(|c: char| c.is_ascii_whitespace()).unwrap_or(line.len());
    let rest = &line[end..];
    let rest = rest.strip_prefix(|c: char| c.is_ascii_whitespace()).unwrap_or(rest);
    (&line[..end], rest)
}

/// The command word, upper-cased, and the rest.
fn words(line: &str) -> (String, &str) {
    let (w, rest) = split_first(line);
    (w.to_ascii_uppercase(), rest.trim_start())
}

fn one_arg(rest: &str) -> Result<String, Reply> {
    let mut it = rest.split_ascii_whitespace();
    match (it.next(), it.next()) {
        (Some(h), None) => Ok(h.to_string()),
        _ => Err(Reply::new(code::SYNTAX, "Wrong number of arguments")),
    }
}

fn two_args(rest: &str) -> Result<(String, String), Reply> {
    let mut it = rest.split_ascii_whitespace();
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
        _ => Err(Reply::new(code::SYNTAX, "Wrong number of arguments")),
    }
}

fn length(s: &str) -> Result<usize, Reply> {
    let n: usize = s.parse().map_err(|_| Reply::new(code::SYNTAX, "Bad command syntax"))?;
    if n > MAX_DATA {
        return Err(Reply::new(
            code::DATA_TOO_BIG,
            format!("Data too big ({n} bytes, at most {MAX_DATA})"),
        ));
    }
    Ok(n)
}

/// Parses one command line (without its terminator). An error is the reply
/// to send; the connection stays usable either way.
pub fn parse_line(line: &str) -> Result<Request, Reply> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(Request::Empty);
    }
    let (cmd, rest) = words(line);
    match cmd.as_str() {
        "READ" | "GET" => {
            let (handler, param) = split_first(rest);
            if handler.is_empty() {
                return Err(Reply::new(code::SYNTAX, "Wrong number of arguments"));
            }
            Ok(Request::Read {
                handler: handler.to_string(),
                param: param.to_string(),
            })
        }
        "READDATA" => {
            let (handler, n) = two_args(rest)?;
            Ok(Request::ReadData {
                handler,
                len: length(&n)?,
            })
        }
        "READUNTIL" => {
            let (handler, terminator) = two_args(rest)?;
            Ok(Request::ReadUntil { handler, terminator })
        }
        "WRITE" | "SET" => {
            let (handler, value) = split_first(rest);
            if handler.is_empty() {
                return Err(Reply::new(code::SYNTAX, "Wrong number of arguments"));
            }
            Ok(Request::Write {
                handler: handler.to_string(),
                value: value.to_string(),
            })
        }
        "WRITEDATA" | "SETDATA" => {
            let (handler, n) = two_args(rest)?;
            Ok(Request::WriteData {
                handler,
                len: length(&n)?,
            })
        }
        "WRITEUNTIL" => {
            let (handler, terminator) = two_args(rest)?;
            Ok(Request::WriteUntil { handler, terminator })
        }
        "CHECKREAD" => Ok(Request::CheckRead(one_arg(rest)?)),
        "CHECKWRITE" => Ok(Request::CheckWrite(one_arg(rest)?)),
        "LLRPC" => Ok(Request::Llrpc),
        "HELP" => Ok(Request::Help),
        "QUIT" | "CLOSE" => Ok(Request::Quit),
        _ => {
            let shown: String = line
                .split_ascii_whitespace()
                .next()
                .unwrap_or("")
                .chars()
                .take(64)
                .collect();
            Err(Reply::new(
                code::UNIMPLEMENTED,
                format!("Command '{shown}' unimplemented"),
            ))
        }
    }
}

/// The HELP text.
pub fn help() -> Reply {
    Reply::multi(
        code::OK,
        [
            "Click::ControlSocket/1.3 commands:",
            "READ handler [args]          GET is an alias",
            "READDATA handler length      then length bytes of arguments",
            "READUNTIL handler terminator then argument lines up to terminator",
            "WRITE handler [value]        SET is an alias",
            "WRITEDATA handler length     then length bytes of value (SETDATA)",
            "WRITEUNTIL handler terminator then value lines up to terminator",
            "CHECKREAD handler / CHECKWRITE handler",
            "HELP, QUIT (CLOSE)",
            "Switchyard: READ h@gen reads a persistent handler's generation;",
            "WRITE h@N value writes only if that generation is still N.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
}

/// Splits `element.handler@N` into the handler name and a generation.
pub fn split_generation(name: &str) -> (&str, Option<&str>) {
    let handler_part = name.find('.').map_or(0, |i| i + 1);
    match name[handler_part..].rfind('@') {
        Some(at) => (&name[..handler_part + at], Some(&name[handler_part + at + 1..])),
        None => (name, None),
    }
}

/// A parsed reply, on the client side.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyLine {
    /// `CODE-text`: more lines follow.
    More(u16, String),
    /// `CODE text`: the last line.
    Last(u16, String),
    /// `DATA n`.
    Data(usize),
}

/// Parses one reply line (client side).
pub fn parse_reply_line(line: &str) -> Option<ReplyLine> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(n) = line.strip_prefix("DATA ") {
        return n.trim().parse().ok().map(ReplyLine::Data);
    }
    let code: u16 = line.get(..3)?.parse().ok()?;
    let text = line.get(4..).unwrap_or("").to_string();
    match line.as_bytes().get(3) {
        Some(b'-') => Some(ReplyLine::More(code, text)),
        Some(b' ') | None => Some(ReplyLine::Last(code, text)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_case_insensitively() {
        assert_eq!(
            parse_line("read sel.switch"),
            Ok(Request::Read {
                handler: "sel.switch".into(),
                param: String::new()
            })
        );
        assert_eq!(
            parse_line("GET out.count\r"),
            Ok(Request::Read {
                handler: "out.count".into(),
                param: String::new()
            })
        );
        assert_eq!(
            parse_line("WRITE sel.switch 1"),
            Ok(Request::Write {
                handler: "sel.switch".into(),
                value: "1".into()
            })
        );
        assert_eq!(
            parse_line("set c.reset"),
            Ok(Request::Write {
                handler: "c.reset".into(),
                value: String::new()
            })
        );
        assert_eq!(
            parse_line("WRITE w.x a b  c"),
            Ok(Request::Write {
                handler: "w.x".into(),
                value: "a b  c".into()
            })
        );
        assert_eq!(
            parse_line("WRITEDATA h 5"),
            Ok(Request::WriteData {
                handler: "h".into(),
                len: 5
            })
        );
        assert_eq!(
            parse_line("SETDATA h 0"),
            Ok(Request::WriteData {
                handler: "h".into(),
                len: 0
            })
        );
        assert_eq!(
            parse_line("WRITEUNTIL h EOF"),
            Ok(Request::WriteUntil {
                handler: "h".into(),
                terminator: "EOF".into()
            })
        );
        assert_eq!(
            parse_line("READDATA h 3"),
            Ok(Request::ReadData {
                handler: "h".into(),
                len: 3
            })
        );
        assert_eq!(
            parse_line("READUNTIL h .").unwrap(),
            Request::ReadUntil {
                handler: "h".into(),
                terminator: ".".into()
            }
        );
        assert_eq!(parse_line("CHECKREAD a.b"), Ok(Request::CheckRead("a.b".into())));
        assert_eq!(parse_line("checkwrite a.b"), Ok(Request::CheckWrite("a.b".into())));
        assert_eq!(parse_line("LLRPC x"), Ok(Request::Llrpc));
        assert_eq!(parse_line("help"), Ok(Request::Help));
        assert_eq!(parse_line("QUIT"), Ok(Request::Quit));
        assert_eq!(parse_line("close"), Ok(Request::Quit));
        assert_eq!(parse_line("   "), Ok(Request::Empty));
    }

    #[test]
    fn bad_commands_get_click_replies() {
        assert_eq!(
            parse_line("FROB x").unwrap_err(),
            Reply::new(501, "Command 'FROB' unimplemented")
        );
        assert_eq!(
            parse_line("READ").unwrap_err(),
            Reply::new(500, "Wrong number of arguments")
        );
        assert_eq!(
            parse_line("CHECKREAD a b").unwrap_err(),
            Reply::new(500, "Wrong number of arguments")
        );
        assert_eq!(
            parse_line("WRITEDATA h x").unwrap_err(),
            Reply::new(500, "Bad command syntax")
        );
        assert_eq!(parse_line("WRITEDATA h 99999999").unwrap_err().code, 521);
    }

    #[test]
    fn encodes_single_multi_and_data_replies() {
        let r = Reply::new(200, "Read handler 'sel.switch' OK").with_data(b"0".to_vec());
        assert_eq!(r.encode(), b"200 Read handler 'sel.switch' OK\r\nDATA 1\r\n0".to_vec());
        let r = Reply::multi(
            520,
            vec!["Write handler 'sel.switch' error:".into(), "7 out of range".into()],
        );
        assert_eq!(
            r.encode(),
            b"520-Write handler 'sel.switch' error:\r\n520 7 out of range\r\n".to_vec()
        );
        assert_eq!(
            Reply::new(500, "a\r\nb").encode(),
            b"500 a  b\r\n".to_vec(),
            "no line injection"
        );
    }

    #[test]
    fn reply_lines_parse_back() {
        assert_eq!(parse_reply_line("200 OK\r"), Some(ReplyLine::Last(200, "OK".into())));
        assert_eq!(
            parse_reply_line("520-Write"),
            Some(ReplyLine::More(520, "Write".into()))
        );
        assert_eq!(parse_reply_line("DATA 12"), Some(ReplyLine::Data(12)));
        assert_eq!(parse_reply_line("xyz"), None);
    }

    /// A seeded stand-in for the fuzz target that runs on stable: lines
    /// made of protocol words, numbers, separators and raw bytes.
    #[test]
    fn random_lines_never_panic_and_errors_encode_cleanly() {
        let words = [
            "READ",
            "write",
            "WRITEDATA",
            "READUNTIL",
            "CHECKREAD",
            "QUIT",
            "LLRPC",
            "sel.switch",
            "a@",
            "@gen",
            "99999999999999999999",
            "-1",
            "0",
            " ",
            "\t",
            "\r",
            "\u{0}",
            "é",
            "\u{7f}",
            "\\",
            "EOF",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let n = next() % 8;
            let mut line = String::new();
            for _ in 0..n {
                let r = next();
                if r % 5 == 0 {
                    line.push(char::from_u32((r >> 8) as u32 % 0x3000).unwrap_or('?'));
                } else {
                    line.push_str(words[(r >> 8) as usize % words.len()]);
                }
            }
            if let Err(reply) = parse_line(&line) {
                let wire = String::from_utf8(reply.encode()).unwrap();
                for l in wire.split("\r\n").filter(|l| !l.is_empty()) {
                    assert!(parse_reply_line(l).is_some(), "{line:?} -> {l:?}");
                }
            }
        }
    }

    #[test]
    fn generation_suffix() {
        assert_eq!(split_generation("sel.switch@4"), ("sel.switch", Some("4")));
        assert_eq!(split_generation("Tee@2.count"), ("Tee@2.count", None));
        assert_eq!(split_generation("sel.switch@gen"), ("sel.switch", Some("gen")));
        assert_eq!(split_generation("version"), ("version", None));
    }
}
