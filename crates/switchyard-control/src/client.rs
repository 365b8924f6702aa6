//! A ControlSocket client, as `switchyard ctl` and the tests use it.

use crate::protocol::{parse_reply_line, Reply, ReplyLine, GREETING};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub struct Client {
    input: BufReader<Box<dyn Read + Send>>,
    output: Box<dyn Write + Send>,
    /// `unix:PATH` or `tcp:ADDR`, for errors.
    peer: String,
    timeout: Option<Duration>,
    set_timeout: Box<dyn Fn(Option<Duration>) -> io::Result<()> + Send>,
}

/// How long a client waits for a reply by default.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A reply other than 2xx, or a broken connection.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    Reply(Reply),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            // Reload errors are rendered diagnostics: keep their lines.
            ClientError::Reply(r) if r.lines.len() > 2 => write!(f, "{} {}", r.code, r.text()),
            ClientError::Reply(r) => write!(f, "{} {}", r.code, r.text().replace('\n', " ")),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    pub fn unix(path: &Path) -> io::Result<Client> {
        let s = UnixStream::connect(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let t = s.try_clone()?;
        Client::start(
            Box::new(s.try_clone()?),
            Box::new(s),
            format!("unix:{}", path.display()),
            Box::new(move |d| t.set_read_timeout(d)),
        )
    }

    /// A TCP connection; `token` is sent first (`AUTH token`), as a router
    /// serving TCP requires.
    pub fn tcp(addr: &str, token: Option<&str>) -> io::Result<Client> {
        let s = TcpStream::connect(addr).map_err(|e| io::Error::new(e.kind(), format!("tcp:{addr}: {e}")))?;
        let t = s.try_clone()?;
        let mut c = Client::start(
            Box::new(s.try_clone()?),
            Box::new(s),
            format!("tcp:{addr}"),
            Box::new(move |d| t.set_read_timeout(d)),
        )?;
        if let Some(token) = token {
            let r = c.command(&format!("AUTH {token}"))?;
            if !r.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("tcp:{addr}: {} {}", r.code, r.text()),
                ));
            }
        }
        Ok(c)
    }

    /// How long to wait for each reply (`None`: as long as it takes).
    pub fn set_reply_timeout(&mut self, d: Option<Duration>) -> io::Result<()> {
        (self.set_timeout)(d)?;
        self.timeout = d;
        Ok(())
    }

    fn start(
        input: Box<dyn Read + Send>,
        output: Box<dyn Write + Send>,
        peer: String,
        set_timeout: Box<dyn Fn(Option<Duration>) -> io::Result<()> + Send>,
    ) -> io::Result<Client> {
        set_timeout(Some(REPLY_TIMEOUT))?;
        let mut c = Client {
            input: BufReader::new(input),
            output,
            peer,
            timeout: Some(REPLY_TIMEOUT),
            set_timeout,
        };
        let mut greeting = String::new();
        c.input.read_line(&mut greeting).map_err(|e| c.timed_out(e))?;
        if greeting.trim_end() != GREETING {
            // A refusal (too many connections) comes instead of the greeting.
            return Err(bad(format!("unexpected greeting: {}", greeting.trim_end())));
        }
        Ok(c)
    }

    /// Sends raw bytes (a command line with its terminator, or payload).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.output.write_all(bytes)?;
        self.output.flush()
    }

    /// A read timeout (EAGAIN) said as what it is, naming the socket.
    fn timed_out(&self, e: io::Error) -> io::Error {
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            let after = self
                .timeout
                .map_or("waiting".to_string(), |d| format!("{} s", d.as_secs()));
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {after}: no reply from {}", self.peer),
            )
        } else {
            e
        }
    }

    /// Reads one complete reply; `read` says whether the command was a
    /// read (READ, GET, READDATA, READUNTIL), whose success carries DATA.
    pub fn reply(&mut self, read: bool) -> io::Result<Reply> {
        self.reply_inner(read).map_err(|e| self.timed_out(e))
    }

    fn reply_inner(&mut self, read: bool) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.input.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            match parse_reply_line(line.trim_end_matches('\n')) {
                Some(ReplyLine::More(_, t)) => lines.push(t),
                Some(ReplyLine::Last(code, t)) => {
                    lines.push(t);
                    let mut reply = Reply::multi(code, lines);
                    if read && code < 300 {
                        let mut data_line = String::new();
                        self.input.read_line(&mut data_line)?;
                        match parse_reply_line(data_line.trim_end_matches('\n')) {
                            Some(ReplyLine::Data(n)) => {
                                let mut data = vec![0; n];
                                self.input.read_exact(&mut data)?;
                                reply.data = Some(data);
                            }
                            _ => return Err(bad(format!("expected DATA, got {}", data_line.trim_end()))),
                        }
                    }
                    return Ok(reply);
                }
                _ => return Err(bad(format!("bad reply line: {}", line.trim_end()))),
            }
        }
    }

    /// Sends one command line and returns the reply, whatever its code.
    pub fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.send_raw(format!("{line}\r\n").as_bytes())?;
        let word = line.split_ascii_whitespace().next().unwrap_or("").to_ascii_uppercase();
        self.reply(matches!(word.as_str(), "READ" | "GET" | "READDATA" | "READUNTIL"))
    }

    /// An error reply as an error.
    fn checked(r: Reply) -> Result<Reply, ClientError> {
        if r.is_ok() {
            Ok(r)
        } else {
            Err(ClientError::Reply(r))
        }
    }

    /// A read reply's data as text.
    fn text(r: Reply) -> String {
        String::from_utf8_lossy(&r.data.unwrap_or_default()).into_owned()
    }

    pub fn read(&mut self, handler: &str) -> Result<String, ClientError> {
        let r = self.command(&format!("READ {handler}"))?;
        Ok(Self::text(Self::checked(r)?))
    }

    /// Reads with a parameter, sent with READDATA so that any text goes as is.
    pub fn read_param(&mut self, handler: &str, param: &str) -> Result<String, ClientError> {
        if param.is_empty() {
            return self.read(handler);
        }
        self.send_raw(format!("READDATA {handler} {}\r\n", param.len()).as_bytes())?;
        self.send_raw(param.as_bytes())?;
        let r = self.reply(true)?;
        Ok(Self::text(Self::checked(r)?))
    }

    /// Writes with WRITEDATA, so any value (newlines included) goes as is.
    pub fn write(&mut self, handler: &str, value: &str) -> Result<(), ClientError> {
        self.send_raw(format!("WRITEDATA {handler} {}\r\n", value.len()).as_bytes())?;
        self.send_raw(value.as_bytes())?;
        Self::checked(self.reply(false)?)?;
        Ok(())
    }
}
