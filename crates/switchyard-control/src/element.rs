//! The `ControlSocket` element: Click's way to ask for a control socket in
//! the configuration itself.

use crate::server::Listen;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use switchyard_core::{documented, Args, Element, ElementClass};

documented! {
    /// Opens a control socket speaking Click's ControlSocket 1.3 protocol,
    /// through which scripts read and write handlers (`switchyard ctl`).
    /// The same as `switchyard run --control PATH`.
    ///
    /// # Ports
    /// None.
    ///
    /// # Arguments
    /// - `TYPE` (positional, mandatory): `unix` or `TCP`.
    /// - `ADDRESS` (positional, mandatory): the socket path, or the TCP port.
    /// - `MODE`: permissions of a Unix socket, octal; default 0600.
    /// - `GROUP`: group owning a Unix socket.
    /// - `LOCALHOST`: TCP only: listen on 127.0.0.1 only; default true.
    ///   `false` listens on every address.
    ///
    /// A TCP socket needs `switchyard run --control-token FILE`: every
    /// connection must send `AUTH TOKEN` first (Switchyard's addition to
    /// the protocol; TCP has no peer credentials).
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// ControlSocket(unix, /run/switchyard.sock);
    /// ```
    pub struct ControlSocket {
        pub listen: Listen,
    }
}

impl ControlSocket {
    pub const CLASS: ElementClass = ElementClass {
        name: "ControlSocket",
        ports: "0/0",
        processing: "a/a",
        doc: ControlSocket::DOC,
        factory: ControlSocket::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(ControlSocket {
            listen: ControlSocket::parse(args)?,
        }))
    }

    /// Reads the arguments into where to listen.
    pub fn parse(args: &mut Args) -> Option<Listen> {
        let kind = args.read_mp::<String>("TYPE")?;
        let address = args.read_mp::<String>("ADDRESS")?;
        let mode = args.read::<String>("MODE");
        let group = args.read::<String>("GROUP");
        let localhost = args.read::<bool>("LOCALHOST").unwrap_or(true);
        match kind.to_ascii_lowercase().as_str() {
            "unix" => {
                let mode = match mode {
                    None => 0o600,
                    Some(m) => match u32::from_str_radix(&m, 8) {
                        Ok(v) if v <= 0o777 => v,
                        _ => {
                            args.error(
                                Some(args.span_of("MODE")),
                                format!("MODE '{m}' is not an octal mode like 0660"),
                            );
                            return None;
                        }
                    },
                };
                Some(Listen::Unix {
                    path: address.into(),
                    mode,
                    group,
                })
            }
            "tcp" => {
                let Ok(port) = address.parse::<u16>() else {
                    args.error(None, format!("ADDRESS '{address}' is not a TCP port"));
                    return None;
                };
                let ip = if localhost {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                };
                Some(Listen::Tcp {
                    addr: SocketAddr::new(ip, port),
                    allow_remote: !localhost,
                    token: None,
                })
            }
            other => {
                args.error(None, format!("TYPE '{other}' unknown: expected unix or TCP"));
                None
            }
        }
    }
}

impl Element for ControlSocket {}
