//! Control socket servers: Unix (the usual way) and TCP (loopback unless
//! explicitly allowed). One thread accepts; each connection has a thread,
//! up to a limit. Nothing here touches the data path: handlers are
//! atomics, so a slow, silent or malicious client costs only its thread.

use crate::control::{Control, Peer};
use crate::protocol::{code, parse_line, Reply, Request, GREETING, MAX_DATA, MAX_LINE};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Unix {
        path: PathBuf,
        mode: u32,
        group: Option<String>,
    },
    /// TCP has no peer credentials: every connection must first send
    /// `AUTH TOKEN` with the owner's token.
    Tcp {
        addr: SocketAddr,
        allow_remote: bool,
        /// Required: [`serve`] refuses TCP without one.
        token: Option<Token>,
    },
}

/// The secret a TCP client must present, read from a file only the
/// router's owner can read.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads a token file: a regular file (not a link) owned by this
    /// process's user, readable by nobody else, holding at least 16
    /// characters. Errors never show what the file holds.
    pub fn from_file(path: &Path) -> io::Result<Token> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let why = if !meta.file_type().is_file() {
            Some("not a regular file".to_string())
        } else if meta.uid() != nix::unistd::geteuid().as_raw() {
            Some(format!("owned by uid {}, not by this router's user", meta.uid()))
        } else if meta.mode() & 0o077 != 0 {
            Some(format!(
                "mode {:04o}: others can read it (chmod 600)",
                meta.mode() & 0o7777
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: {why}", path.display()),
            ));
        }
        let text = std::fs::read(path)?;
        let token = String::from_utf8(text)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| t.len() >= 16 && !t.contains(char::is_whitespace))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: a token is one word of at least 16 characters", path.display()),
                )
            })?;
        Ok(Token(token.into()))
    }

    pub fn new(token: &str) -> Token {
        Token(token.into())
    }

    /// Compares in time that does not depend on where they differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
        }
        diff == 0
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections at once; more are told so and closed.
    pub max_connections: usize,
    /// Connections kept for the socket's owner (root or the router's
    /// user) beyond `max_connections`: whoever holds the other slots, the
    /// owner can still reach the rollback.
    pub reserved_for_owner: usize,
    /// A connection silent this long between commands is closed.
    pub idle_timeout: Duration,
    /// A command (its line and any payload) must arrive whole this soon
    /// after its first byte; a client that trickles is closed.
    pub command_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 32,
            reserved_for_owner: 4,
            idle_timeout: Duration::from_secs(300),
            command_timeout: Duration::from_secs(10),
        }
    }
}

/// A running server; dropping it stops accepting and removes the socket
/// file.
pub struct Server {
    stop: Arc<AtomicBool>,
    path: Option<PathBuf>,
    local: String,
}

impl Server {
    /// `unix:PATH` or `tcp:ADDR`, for logs and tests.
    pub fn local(&self) -> &str {
        &self.local
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds a Unix socket: a stale socket file is replaced, a live one
/// (another router) is an error, anything else at the path is left alone.
/// The socket is created with `mode` (umask set around bind, so it is
/// never briefly more open), and handed to `group` if given.
fn bind_unix(path: &Path, mode: u32, group: Option<&str>) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another router is listening on this socket", path.display()),
                ))
            }
            Err(_) => {
                tracing::warn!(path = %path.display(), "replacing stale control socket");
                std::fs::remove_file(path)?;
            }
        }
    }
    let old = umask(Mode::from_bits_truncate(0o777 & !mode));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(g) = group {
        let gid = nix::unistd::Group::from_name(g)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no group named '{g}'")))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::other)?;
    }
    Ok(listener)
}

/// Starts a server for `control`.
pub fn serve(listen: &Listen, control: Arc<Control>, limits: Limits) -> io::Result<Server> {
    let stop = Arc::new(AtomicBool::new(false));
    match listen {
        Listen::Unix { path, mode, group } => {
            let listener = bind_unix(path, *mode, group.as_deref())?;
            spawn_accept(listener, stop.clone(), control, limits, None)?;
            tracing::info!(path = %path.display(), "control socket listening");
            Ok(Server {
                stop,
                path: Some(path.clone()),
                local: format!("unix:{}", path.display()),
            })
        }
        Listen::Tcp {
            addr,
            allow_remote,
            token,
        } => {
            if !addr.ip().is_loopback() && !allow_remote {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("refusing to listen on {addr}: not a loopback address (allow it explicitly with --allow-remote)"),
                ));
            }
            let Some(token) = token else {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("refusing TCP control on {addr} without a token: anyone who can connect could flip production (give --control-token FILE)"),
                ));
            };
            let listener = TcpListener::bind(addr)?;
            let local = listener.local_addr()?;
            spawn_accept(listener, stop.clone(), control, limits, Some(token.clone()))?;
            tracing::info!(addr = %local, "control socket listening");
            Ok(Server {
                stop,
                path: None,
                local: format!("tcp:{local}"),
            })
        }
    }
}

/// Both listener kinds, for one accept loop.
trait Accept: Send + 'static {
    type Stream: Conn;
    fn accept_one(&self) -> io::Result<Self::Stream>;
}

impl Accept for UnixListener {
    type Stream = UnixStream;
    fn accept_one(&self) -> io::Result<UnixStream> {
        self.accept().map(|(s, _)| s)
    }
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    fn accept_one(&self) -> io::Result<TcpStream> {
        self.accept().map(|(s, _)| s)
    }
}

/// Connections open now: in the general pool, and in the owner's.
#[derive(Default)]
struct Slots {
    general: AtomicUsize,
    owner: AtomicUsize,
}

/// Takes a slot in `pool` if fewer than `max` are taken.
fn take_slot(pool: &AtomicUsize, max: usize) -> bool {
    pool.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
        .is_ok()
}

fn spawn_accept<L: Accept>(
    listener: L,
    stop: Arc<AtomicBool>,
    control: Arc<Control>,
    limits: Limits,
    token: Option<Token>,
) -> io::Result<()> {
    let slots = Arc::new(Slots::default());
    std::thread::Builder::new()
        .name("control-accept".into())
        .spawn(move || loop {
            let conn = listener.accept_one();
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(stream) = conn {
                let peer = stream.peer();
                spawn_connection(stream, peer, control.clone(), limits, &slots, token.clone());
            }
        })?;
    Ok(())
}

/// Root, or the user the router runs as: who may always get in.
fn is_owner(peer: &Peer) -> bool {
    peer.uid.is_some_and(|u| u == 0 || u == nix::unistd::geteuid().as_raw())
}

/// A stream a connection can use: both socket kinds.
trait Conn: Read + Write + Send + 'static {
    fn set_idle(&self, d: Duration) -> io::Result<()>;
    /// A reply not taken by the client within this is abandoned (the
    /// connection closed), so a client that never reads cannot hold a
    /// thread and a slot.
    fn set_send_timeout(&self, d: Duration) -> io::Result<()>;
    fn split(&self) -> io::Result<Box<dyn Write + Send>>;
    /// Who is on the other end: uid and pid (SO_PEERCRED) or the address.
    fn peer(&self) -> Peer;
}

impl Conn for UnixStream {
    fn set_idle(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn set_send_timeout(&self, d: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(d))
    }
    fn peer(&self) -> Peer {
        getsockopt(self, PeerCredentials)
            .map(|c| Peer {
                uid: Some(c.uid()),
                pid: Some(c.pid()),
                addr: None,
            })
            .unwrap_or_default()
    }
    fn split(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.try_clone()?))
    }
}

impl Conn for TcpStream {
    fn set_idle(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn set_send_timeout(&self, d: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(d))
    }
    fn peer(&self) -> Peer {
        Peer {
            addr: self.peer_addr().ok().map(|a| a.to_string()),
            ..Peer::default()
        }
    }
    fn split(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.try_clone()?))
    }
}

fn spawn_connection<S: Conn>(
    mut stream: S,
    peer: Peer,
    control: Arc<Control>,
    limits: Limits,
    slots: &Arc<Slots>,
    token: Option<Token>,
) {
    let pool = if take_slot(&slots.general, limits.max_connections) {
        Some(false)
    } else if is_owner(&peer) && take_slot(&slots.owner, limits.reserved_for_owner) {
        Some(true)
    } else {
        None
    };
    let Some(owner_pool) = pool else {
        let _ = stream.write_all(
            format!(
                "{} Too many control connections (at most {})\r\n",
                code::NO_ROUTER,
                limits.max_connections
            )
            .as_bytes(),
        );
        tracing::warn!(?peer, "control connection refused: too many");
        return;
    };
    let slots = slots.clone();
    let release = move || {
        let pool = if owner_pool { &slots.owner } else { &slots.general };
        pool.fetch_sub(1, Ordering::SeqCst);
    };
    let release_here = release.clone();
    let spawned = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
        tracing::info!(?peer, owner_pool, "control client connected");
        if let Err(e) = connection(stream, &peer, &control, limits, token) {
            tracing::debug!(?peer, error = %e, "control connection ended");
        }
        release();
    });
    if spawned.is_err() {
        release_here();
        tracing::warn!("control connection dropped: cannot spawn a thread");
    }
}

/// When the connection's reads must be done: between commands, the idle
/// timeout; once a command's first byte came, its deadline.
struct Clock {
    idle: Duration,
    per_command: Duration,
    started: Option<Instant>,
}

impl Clock {
    /// A command's first byte came: its deadline starts (once).
    fn begin(&mut self) {
        self.started.get_or_insert_with(Instant::now);
    }

    /// Sets the stream's read timeout for the next read; an error once a
    /// command's deadline has passed.
    fn arm<S: Conn>(&self, stream: &S) -> io::Result<()> {
        let wait = match self.started {
            None => self.idle,
            Some(t) => {
                let left = self.per_command.saturating_sub(t.elapsed());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "command deadline"));
                }
                left
            }
        };
        stream.set_idle(wait)
    }

    fn command_done(&mut self) {
        self.started = None;
    }
}

/// How reading one line ended.
enum Line {
    Text(String),
    TooLong,
    Eof,
}

/// Reads one line of at most `MAX_LINE` bytes; a longer one is consumed
/// and reported, so the connection stays in step.
/// The buffered bytes, reading more if there are none, for no longer
/// than `clock` allows; empty at the end of the stream.
fn fill<'r, S: Conn>(r: &'r mut BufReader<S>, clock: &Clock) -> io::Result<&'r [u8]> {
    loop {
        if r.buffer().is_empty() {
            clock.arm(r.get_ref())?;
        }
        match r.fill_buf() {
            Ok(_) => return Ok(r.buffer()),
            // A signal (SIGHUP for a reload) must not end the connection.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn read_line<S: Conn>(r: &mut BufReader<S>, clock: &mut Clock) -> io::Result<Line> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = fill(r, clock)?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
        clock.begin();
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            buf.extend_from_slice(&chunk[..take]);
            if buf.len() > MAX_LINE {
                too_long = true;
                buf = Vec::new();
            }
        }
        r.consume(take);
        if done {
            if too_long {
                return Ok(Line::TooLong);
            }
            buf.pop();
            return Ok(Line::Text(String::from_utf8_lossy(&buf).into_owned()));
        }
    }
}

/// Reads exactly `n` payload bytes within the command's deadline.
fn read_payload<S: Conn>(r: &mut BufReader<S>, n: usize, clock: &mut Clock) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(n);
    clock.begin();
    while data.len() < n {
        let chunk = fill(r, clock)?;
        if chunk.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let take = chunk.len().min(n - data.len());
        data.extend_from_slice(&chunk[..take]);
        r.consume(take);
    }
    Ok(data)
}

fn connection<S: Conn>(
    stream: S,
    peer: &Peer,
    control: &Control,
    limits: Limits,
    token: Option<Token>,
) -> io::Result<()> {
    let mut clock = Clock {
        idle: limits.idle_timeout,
        per_command: limits.command_timeout,
        started: None,
    };
    stream.set_send_timeout(limits.command_timeout)?;
    let mut out = stream.split()?;
    let mut input = BufReader::new(stream);
    out.write_all(format!("{GREETING}\r\n").as_bytes())?;
    let mut authenticated = token.is_none();
    // Before AUTH, the deadline runs from the connection itself: an
    // unauthenticated client holds its slot for one command time at most.
    if !authenticated {
        clock.begin();
    }
    let timed_out = |e: &io::Error| matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut);
    loop {
        if authenticated {
            clock.command_done();
        }
        let line = match read_line(&mut input, &mut clock) {
            Ok(Line::Text(l)) => l,
            Ok(Line::TooLong) => {
                out.write_all(&Reply::new(code::SYNTAX, format!("Line too long (at most {MAX_LINE} bytes)")).encode())?;
                continue;
            }
            Ok(Line::Eof) => return Ok(()),
            Err(e) if timed_out(&e) => {
                let why = if clock.started.is_some() {
                    format!(
                        "Command not complete within {} s; closing",
                        limits.command_timeout.as_secs_f64()
                    )
                } else {
                    "Idle timeout; closing".to_string()
                };
                let _ = out.write_all(&Reply::new(code::SYNTAX, why).encode());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if !authenticated {
            let (word, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            if !word.eq_ignore_ascii_case("AUTH") {
                out.write_all(
                    &Reply::new(code::PERMISSION, "Authentication required: send AUTH TOKEN first").encode(),
                )?;
                continue;
            }
            if token.as_ref().is_some_and(|t| t.matches(rest.trim())) {
                authenticated = true;
                out.write_all(&Reply::new(code::OK, "Authenticated").encode())?;
                continue;
            }
            tracing::warn!(?peer, "control connection: wrong token");
            out.write_all(&Reply::new(code::PERMISSION, "Bad token; closing").encode())?;
            return Ok(());
        }
        let req = match parse_line(&line) {
            Ok(Request::Empty) => continue,
            Ok(r) => r,
            Err(reply) => {
                out.write_all(&reply.encode())?;
                if reply.code == code::DATA_TOO_BIG {
                    // Its payload would follow and be read as commands:
                    // the conversation cannot be resumed.
                    return Ok(());
                }
                continue;
            }
        };
        let payload = match &req {
            Request::WriteData { len, .. } | Request::ReadData { len, .. } => {
                match read_payload(&mut input, (*len).min(MAX_DATA), &mut clock) {
                    Ok(data) => String::from_utf8_lossy(&data).into_owned(),
                    Err(e) if timed_out(&e) => {
                        let why = format!(
                            "Data not complete within {} s; closing",
                            limits.command_timeout.as_secs_f64()
                        );
                        let _ = out.write_all(&Reply::new(code::SYNTAX, why).encode());
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
            Request::WriteUntil { terminator, .. } | Request::ReadUntil { terminator, .. } => {
                let mut lines = Vec::new();
                let mut total = 0;
                loop {
                    match read_line(&mut input, &mut clock) {
                        Ok(Line::Text(l)) if l.trim_end_matches('\r') == terminator => break,
                        Ok(Line::Text(l)) => {
                            total += l.len();
                            if total > MAX_DATA {
                                out.write_all(&Reply::new(code::DATA_TOO_BIG, "Data too big").encode())?;
                                return Ok(());
                            }
                            lines.push(l.trim_end_matches('\r').to_string());
                        }
                        Ok(Line::TooLong) => {
                            out.write_all(&Reply::new(code::DATA_TOO_BIG, "Data too big").encode())?;
                            return Ok(());
                        }
                        Ok(Line::Eof) => return Ok(()),
                        Err(e) if timed_out(&e) => {
                            let _ =
                                out.write_all(&Reply::new(code::SYNTAX, "Data not complete in time; closing").encode());
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                lines.join("\n")
            }
            _ => String::new(),
        };
        let reply = control.execute(&req, &payload, peer);
        out.write_all(&reply.encode())?;
        if req == Request::Quit {
            return Ok(());
        }
    }
}
