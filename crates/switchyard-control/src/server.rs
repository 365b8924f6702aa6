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
use std::time::Duration;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Unix {
        path: PathBuf,
        mode: u32,
        group: Option<String>,
    },
    Tcp {
        addr: SocketAddr,
        allow_remote: bool,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections at once; more are told so and closed.
    pub max_connections: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 32,
            idle_timeout: Duration::from_secs(300),
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
            spawn_accept(listener, stop.clone(), control, limits)?;
            tracing::info!(path = %path.display(), "control socket listening");
            Ok(Server {
                stop,
                path: Some(path.clone()),
                local: format!("unix:{}", path.display()),
            })
        }
        Listen::Tcp { addr, allow_remote } => {
            if !addr.ip().is_loopback() && !allow_remote {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("refusing to listen on {addr}: not a loopback address (allow it explicitly with --allow-remote)"),
                ));
            }
            let listener = TcpListener::bind(addr)?;
            let local = listener.local_addr()?;
            spawn_accept(listener, stop.clone(), control, limits)?;
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

fn spawn_accept<L: Accept>(
    listener: L,
    stop: Arc<AtomicBool>,
    control: Arc<Control>,
    limits: Limits,
) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control-accept".into())
        .spawn(move || loop {
            let conn = listener.accept_one();
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(stream) = conn {
                let peer = stream.peer();
                spawn_connection(stream, peer, control.clone(), limits, &active);
            }
        })?;
    Ok(())
}

/// A stream a connection can use: both socket kinds.
trait Conn: Read + Write + Send + 'static {
    fn set_idle(&self, d: Duration) -> io::Result<()>;
    fn split(&self) -> io::Result<Box<dyn Write + Send>>;
    /// Who is on the other end: uid and pid (SO_PEERCRED) or the address.
    fn peer(&self) -> Peer;
}

impl Conn for UnixStream {
    fn set_idle(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
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
    active: &Arc<AtomicUsize>,
) {
    if active.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
        active.fetch_sub(1, Ordering::SeqCst);
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
    }
    let active = active.clone();
    let spawned = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
        tracing::info!(?peer, "control client connected");
        if let Err(e) = connection(stream, &peer, &control, limits) {
            tracing::debug!(?peer, error = %e, "control connection ended");
        }
        active.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        tracing::warn!("control connection dropped: cannot spawn a thread");
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
fn read_line(r: &mut impl BufRead) -> io::Result<Line> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            // A signal (SIGHUP for a reload) must not end the connection.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Text(String::from_utf8_lossy(&buf).into_owned())
            });
        }
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

fn connection<S: Conn>(stream: S, peer: &Peer, control: &Control, limits: Limits) -> io::Result<()> {
    stream.set_idle(limits.idle_timeout)?;
    let mut out = stream.split()?;
    let mut input = BufReader::new(stream);
    out.write_all(format!("{GREETING}\r\n").as_bytes())?;
    loop {
        let line = match read_line(&mut input) {
            Ok(Line::Text(l)) => l,
            Ok(Line::TooLong) => {
                out.write_all(&Reply::new(code::SYNTAX, format!("Line too long (at most {MAX_LINE} bytes)")).encode())?;
                continue;
            }
            Ok(Line::Eof) => return Ok(()),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let _ = out.write_all(&Reply::new(code::SYNTAX, "Idle timeout; closing").encode());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let req = match parse_line(&line) {
            Ok(Request::Empty) => continue,
            Ok(r) => r,
            Err(reply) => {
                out.write_all(&reply.encode())?;
                continue;
            }
        };
        let payload = match &req {
            Request::WriteData { len, .. } | Request::ReadData { len, .. } => {
                let mut data = vec![0u8; (*len).min(MAX_DATA)];
                input.read_exact(&mut data)?;
                String::from_utf8_lossy(&data).into_owned()
            }
            Request::WriteUntil { terminator, .. } | Request::ReadUntil { terminator, .. } => {
                let mut lines = Vec::new();
                let mut total = 0;
                loop {
                    match read_line(&mut input)? {
                        Line::Text(l) if l.trim_end_matches('\r') == terminator => break,
                        Line::Text(l) => {
                            total += l.len();
                            if total > MAX_DATA {
                                out.write_all(&Reply::new(code::DATA_TOO_BIG, "Data too big").encode())?;
                                return Ok(());
                            }
                            lines.push(l.trim_end_matches('\r').to_string());
                        }
                        Line::TooLong => {
                            out.write_all(&Reply::new(code::DATA_TOO_BIG, "Data too big").encode())?;
                            return Ok(());
                        }
                        Line::Eof => return Ok(()),
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
