//! ICMP: errors and echo replies raised by the router itself
//! (Click's `elements/icmp`).

pub mod icmp_error;
pub mod icmp_ping_responder;
pub mod names;
