//! Network address and port translation: Click's IPRewriter family
//! (Click's `elements/tcpudp` rewriters and the `elements/ip` pieces they
//! share). The three rewriters are one core ([`rewriter`]) over one
//! mapping table ([`table`]); input specs and patterns, named ones
//! included, live in [`pattern`]; flow identifiers and checksum deltas in
//! [`flow`].

pub mod flow;
pub mod ip_rewriter;
pub mod ip_rewriter_patterns;
pub mod pattern;
pub mod rewriter;
pub mod table;
pub mod tcp_rewriter;
pub mod udp_rewriter;
