//! Switchyard's HTTP side: the Prometheus endpoint (`GET /metrics`) and
//! the JSON API (`/api/v1/...`, see [`api`]), with bearer tokens
//! ([`tokens`]).
//!
//! hyper's HTTP/1 server runs on a current-thread tokio runtime in a
//! thread of its own, never on the data path. Every connection is its own
//! task, so a client that trickles its request holds only itself: the
//! other scrapes are answered meanwhile. A request's header must arrive
//! within [`HEADER_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served
//! at once (more wait in the kernel's accept queue). The page itself is
//! rendered by `switchyard_control::metrics::render`, from the same
//! control plane every other door uses.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod dashboard;
pub mod tokens;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Frame};
use hyper::{Request, Response, StatusCode};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_control::Control;

/// How long a client may take to send a request's header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// The largest request body read (a configuration for a reload).
pub const MAX_BODY: usize = 16 << 20;

/// How often the event stream pushes a snapshot to the dashboard.
pub const EVENT_INTERVAL: Duration = Duration::from_millis(500);
/// Event streams served at once: dashboards must leave connections for
/// scrapes and webhooks.
pub const MAX_STREAMS: usize = 16;
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, std::convert::Infallible>;

/// A response body fed by a channel: the event stream, one frame per
/// message, ending when the sender does. hyper drops it when the client
/// goes away, which ends the sender's loop.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// What an HTTP server serves besides `/metrics`.
#[derive(Default)]
pub struct Options {
    /// Serve `/api/v1`.
    pub api: bool,
    /// Bearer tokens; with them every API call needs one.
    pub tokens: Option<tokens::Tokens>,
    /// Listen on an address other than loopback.
    pub allow_remote: bool,
    /// Rules for `POST /api/v1/alertmanager`.
    pub alert_rules: Vec<alerts::Rule>,
    /// Alerts already acted on.
    pub alerts_seen: std::sync::Mutex<alerts::Seen>,
    /// The dashboard's last snapshot, shared by every event stream.
    pub snapshot: std::sync::Mutex<Option<(Instant, Bytes)>>,
    /// Event streams open now (at most [`MAX_STREAMS`]).
    pub streams: std::sync::atomic::AtomicUsize,
}

/// A running HTTP server; dropping it stops it.
pub type HttpServer = MetricsServer;

/// A running metrics endpoint; dropping it stops the server.
pub struct MetricsServer {
    pub local: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serves `GET /metrics` on `addr` (loopback unless `allow_remote`).
pub fn serve_metrics(addr: SocketAddr, control: Arc<Control>, allow_remote: bool) -> io::Result<MetricsServer> {
    serve(
        addr,
        control,
        Options {
            allow_remote,
            ..Options::default()
        },
    )
}

/// Serves `/metrics` and, with `options.api`, the JSON API on `addr`.
/// A non-loopback address needs `allow_remote`, and for the API a token
/// file too: an open API on the network would let anyone read it.
pub fn serve(addr: SocketAddr, control: Arc<Control>, options: Options) -> io::Result<MetricsServer> {
    if !addr.ip().is_loopback() && !options.allow_remote {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to serve HTTP on {addr}: not a loopback address (allow it with --allow-remote)"),
        ));
    }
    if !addr.ip().is_loopback() && options.api && options.tokens.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to serve the API on {addr} without a token file (--http-tokens)"),
        ));
    }
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let options = Arc::new(options);
    std::thread::Builder::new().name("http".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "HTTP server could not start");
                    return;
                }
            };
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            tokio::select! {
                () = accept_loop(listener, control, started, slots, options) => {}
                _ = stopped => {}
            }
        });
    })?;
    tracing::info!(addr = %local, "HTTP server listening");
    Ok(MetricsServer {
        local,
        stop: Some(stop),
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    control: Arc<Control>,
    started: Instant,
    slots: Arc<tokio::sync::Semaphore>,
    options: Arc<Options>,
) {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let control = control.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let control = control.clone();
                let options = options.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(req, control, started, options, peer).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended");
            }
            drop(permit);
        });
    }
}

/// Answers one request: `/metrics`, or an API call (its body read, at
/// most [`MAX_BODY`], and run off the runtime's thread: a reload or an
/// fsync'd write must not hold up the other connections).
async fn respond(
    req: Request<hyper::body::Incoming>,
    control: Arc<Control>,
    started: Instant,
    options: Arc<Options>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req.method() == hyper::Method::GET && options.api {
        if let Some((bytes, kind)) = dashboard::asset(&path) {
            return page(bytes, kind);
        }
    }
    if req.method() == hyper::Method::GET && path == "/metrics" {
        let body = switchyard_control::metrics::render(&control, started);
        return text(
            StatusCode::OK,
            body,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        );
    }
    if !(options.api && path.starts_with("/api/v1/")) {
        let hint = if options.api {
            "try GET / (the dashboard), /metrics or /api/v1/elements\n"
        } else {
            "try GET /metrics\n"
        };
        return text(StatusCode::NOT_FOUND, hint.to_string(), "text/plain; charset=utf-8");
    }
    let method = req.method().as_str().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let if_match = header(hyper::header::IF_MATCH);
    let bearer =
        header(hyper::header::AUTHORIZATION).and_then(|a| a.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
    let grant = match (&options.tokens, &bearer) {
        (Some(t), Some(secret)) => match t.check(secret) {
            Some(g) => Some(g),
            None => return json(api::error(401, None, "unknown token")),
        },
        (None, Some(_)) => return json(api::error(401, None, "this router has no tokens (--http-tokens)")),
        _ => None,
    };
    // Without tokens, reads are open on loopback: a page from elsewhere
    // must not reach them through a name that resolves to 127.0.0.1 (DNS
    // rebinding). The Host header must name loopback.
    if options.tokens.is_none() && !loopback_host(header(hyper::header::HOST).as_deref()) {
        return json(api::error(
            403,
            None,
            "this API answers only to a loopback Host (or use tokens)",
        ));
    }
    // Who may, before any body is read: a client without the right token
    // holds no buffer and no slot for long.
    let write = req.method() != hyper::Method::GET;
    if let Some(refused) = api::refuse(grant.as_ref(), write, options.tokens.is_some()) {
        return json(refused);
    }
    if req.method() == hyper::Method::GET && path == "/api/v1/events" {
        return events(control, started, options);
    }
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), MAX_BODY).collect()).await;
    let body = match collected {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return json(api::error(
                413,
                None,
                format!("the body is larger than {MAX_BODY} bytes"),
            ))
        }
        Err(_) => {
            return json(api::error(
                408,
                None,
                format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
            ))
        }
    };
    let options_ = options.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let options = options_;
        let call = api::Call {
            method: &method,
            path: &path,
            query: &query,
            if_match: if_match.as_deref(),
            body: &body,
            grant,
            peer: peer.to_string(),
            alerts: (&options.alert_rules, &options.alerts_seen),
        };
        api::answer(&call, &control, started)
    })
    .await
    .unwrap_or_else(|e| api::error(500, None, format!("the request failed: {e}")));
    json(answer)
}

/// `GET /api/v1/events`: a snapshot ([`dashboard::snapshot`]) every
/// [`EVENT_INTERVAL`] as Server-Sent Events, until the client leaves or
/// the server stops. Every stream sends the same snapshot, made at most
/// once an interval whatever the number of streams, off the runtime's
/// thread; a client that does not read holds only its own stream (the
/// channel is bounded), and at most [`MAX_STREAMS`] are open at once.
fn events(control: Arc<Control>, started: Instant, options: Arc<Options>) -> Response<Body> {
    use std::sync::atomic::Ordering::SeqCst;
    if options.streams.fetch_add(1, SeqCst) >= MAX_STREAMS {
        options.streams.fetch_sub(1, SeqCst);
        return json(api::error(
            503,
            None,
            format!("{MAX_STREAMS} dashboards are open already; close one"),
        ));
    }
    struct Open(Arc<Options>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.streams.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let open = Open(options);
        if tx.send(Bytes::from_static(b"retry: 1000\n\n")).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(EVENT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(frame) = shared_snapshot(&control, started, &open.0).await else {
                return;
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(ChannelBody(rx).boxed());
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The snapshot frame, made again only if the last is older than most of
/// an interval.
async fn shared_snapshot(control: &Arc<Control>, started: Instant, options: &Options) -> Option<Bytes> {
    let fresh = EVENT_INTERVAL * 4 / 5;
    if let Some((at, frame)) = options.snapshot.lock().expect("snapshot").as_ref() {
        if at.elapsed() < fresh {
            return Some(frame.clone());
        }
    }
    let c = control.clone();
    let snapshot = tokio::task::spawn_blocking(move || dashboard::snapshot(&c, started))
        .await
        .ok()?;
    let frame = Bytes::from(format!("event: state\ndata: {snapshot}\n\n"));
    *options.snapshot.lock().expect("snapshot") = Some((Instant::now(), frame.clone()));
    Some(frame)
}

/// Whether a Host header names loopback (`127.0.0.1:8080`, `localhost`,
/// `[::1]:80`); none at all (HTTP/1.0) is taken as loopback.
fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else { return true };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A file of the dashboard, with headers that keep it to itself: scripts
/// and data from this server only, never framed.
fn page(bytes: &'static [u8], kind: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(bytes)).boxed());
    let h = resp.headers_mut();
    let set = |h: &mut hyper::HeaderMap, k: hyper::header::HeaderName, v: &'static str| {
        h.insert(k, hyper::header::HeaderValue::from_static(v));
    };
    set(h, hyper::header::CONTENT_TYPE, kind);
    set(h, hyper::header::CACHE_CONTROL, "no-cache");
    set(
        h,
        hyper::header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    set(h, hyper::header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, hyper::header::REFERRER_POLICY, "no-referrer");
    resp
}

fn json(a: api::Answer) -> Response<Body> {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text(status, format!("{}\n", a.body), "application/json")
}

fn text(status: StatusCode, body: String, kind: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn only_loopback_hosts_pass() {
        for h in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:80", "127.1.2.3"] {
            assert!(loopback_host(Some(h)), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(Some(h)), "{h}");
        }
        assert!(loopback_host(None));
    }
}
