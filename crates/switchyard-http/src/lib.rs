//! Switchyard's HTTP side: today the Prometheus endpoint (`GET /metrics`).
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

use http_body_util::Full;
use hyper::body::Bytes;
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
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to serve metrics on {addr}: not a loopback address (allow it with --allow-remote)"),
        ));
    }
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    std::thread::Builder::new().name("http".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "metrics endpoint could not start");
                    return;
                }
            };
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            tokio::select! {
                () = accept_loop(listener, control, started, slots) => {}
                _ = stopped => {}
            }
        });
    })?;
    tracing::info!(addr = %local, "metrics endpoint listening");
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
) {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let control = control.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let control = control.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &control, started)) }
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

fn answer<B>(req: &Request<B>, control: &Control, started: Instant) -> Response<Full<Bytes>> {
    let (status, body, kind) = if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            switchyard_control::metrics::render(control, started),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "try GET /metrics\n".to_string(),
            "text/plain; charset=utf-8",
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    resp
}
