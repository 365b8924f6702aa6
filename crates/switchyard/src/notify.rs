//! systemd's readiness protocol (`Type=notify`): a datagram to the socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace) once the graph runs and every socket listens, and when the
//! router reloads or stops. Without the variable, nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`...) to systemd.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = target.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
            None => sock.send_to(state.as_bytes(), &target),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "systemd notification not sent");
    }
}
