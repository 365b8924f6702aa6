//! Ethernet and ARP: encapsulation, address filters, ARP's two halves
//! (Click's `elements/ethernet`).

pub mod arp;
pub mod arp_querier;
pub mod arp_responder;
pub mod ether_cell;
pub mod ether_encap;
pub mod ether_rewrite;
pub mod host_ether_filter;
