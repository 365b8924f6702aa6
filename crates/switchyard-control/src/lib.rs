//! Switchyard's control socket: Click's ControlSocket 1.3 protocol over a
//! Unix (or loopback TCP) socket, exposing the router's handlers.
//!
//! [`protocol`] is pure (lines in, requests out; replies in, bytes out).
//! [`Control`] applies requests to the handler table, and around every
//! write keeps the audit log ([`audit`]), the state file of persistent
//! handlers ([`state`]) and their generations (compare-and-set writes).
//! [`server`] owns sockets and connections; [`client`] is what
//! `switchyard ctl` uses.
#![forbid(unsafe_code)]

pub mod audit;
pub mod client;
mod control;
pub mod element;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod state;
pub mod time;

pub use control::{config_hash, Control, Peer, ReloadRequest};
pub use element::ControlSocket;
pub use time::rfc3339;
