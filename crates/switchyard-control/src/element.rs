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
    /// - `TYPE` (positional, mandatory): `unix` or `TCP`, in any case.
    /// - `ADDRESS` (positional, mandatory): the socket path, or the TCP port.
    ///   Click's keywords for it, `FILENAME` (unix) and `PORT` (TCP), are
    ///   accepted too.
    /// - `MODE`: permissions of a Unix socket, octal; default 0600.
    /// - `GROUP`: group owning a Unix socket.
    /// - `LOCALHOST`: TCP only: listen on 127.0.0.1 only; default true
    ///   (Click's default is false: here a TCP socket is reachable from
    ///   elsewhere only when asked). `false` listens on every address.
    /// - `READONLY`: Click's read-only socket. Only `false` is accepted:
    ///   a socket here allows what its owner may do, and refusing writes
    ///   is not implemented, so `true` is an error rather than a socket
    ///   that writes anyway.
    /// - `VERBOSE`: accepted for Click's configurations; connections are
    ///   logged anyway.
    ///
    /// Click's `SOCKET` type, `PROXY`, `RETRIES`, `RETRY_WARNINGS` and the
    /// `PORT+` form (the first free port from PORT on) are not supported.
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
        let address = args.read_p::<String>("ADDRESS");
        // Click names the second argument after the type.
        let click_name = match kind.to_ascii_lowercase().as_str() {
            "tcp" => args.read::<String>("PORT"),
            "unix" => args.read::<String>("FILENAME"),
            _ => None,
        };
        let address = click_name.or(address);
        let mode = args.read::<String>("MODE");
        let group = args.read::<String>("GROUP");
        let localhost = args.read::<bool>("LOCALHOST").unwrap_or(true);
        if args.read::<bool>("READONLY") == Some(true) {
            let span = args.span_of("READONLY");
            args.error(
                Some(span),
                "READONLY true is not supported: use a Unix socket whose MODE and GROUP admit only those who may write",
            );
        }
        let _verbose: Option<bool> = args.read("VERBOSE");
        let Some(address) = address else {
            if !args.has_errors() {
                args.error(None, "missing mandatory argument ADDRESS");
            }
            return None;
        };
        if args.has_errors() {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(config: &str) -> Result<Listen, String> {
        let mut args = Args::parse_str("c :: ControlSocket", config);
        let listen = ControlSocket::parse(&mut args);
        match args.complete() {
            Ok(()) => Ok(listen.expect("parsed when no errors")),
            Err(e) => Err(e.into_iter().map(|d| d.message).collect::<Vec<_>>().join("\n")),
        }
    }

    #[test]
    fn positional_arguments_are_clicks_type_and_port_or_filename() {
        for config in [
            "tcp, 7777",
            "\"TCP\", 12345",
            "TCP, PORT 7777",
            "TYPE tcp, PORT 7777, VERBOSE true, READONLY false",
            "unix, /tmp/s.sock",
            "UNIX, FILENAME /tmp/s.sock",
            "unix, ADDRESS /tmp/s.sock",
        ] {
            assert!(parse(config).is_ok(), "{config}: {:?}", parse(config).err());
        }
        assert!(matches!(parse("tcp, PORT 7777"), Ok(Listen::Tcp { addr, .. }) if addr.port() == 7777));
        assert!(
            matches!(parse("unix, FILENAME /tmp/s.sock"), Ok(Listen::Unix { path, .. }) if path.to_str() == Some("/tmp/s.sock"))
        );
        assert!(parse("tcp, FILENAME /tmp/s").is_err(), "FILENAME is the unix keyword");
        assert!(parse("tcp").unwrap_err().contains("missing mandatory argument ADDRESS"));
        assert!(parse("tcp, 7777, READONLY true")
            .unwrap_err()
            .contains("READONLY true is not supported"));
        assert!(parse("tcp, 7777, 8").unwrap_err().contains("too many arguments"));
    }
}
