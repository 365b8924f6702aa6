//! IPv4: header checks and rewrites, route lookup, classification
//! (Click's `elements/ip`).

pub mod check_ip_header;
pub mod dec_ip_ttl;
pub mod direct_ip_lookup;
pub mod drop_broadcasts;
pub mod fix_ip_src;
pub mod get_ip_address;
pub mod ip_classifier;
pub mod ip_filter;
pub mod ip_fragmenter;
pub mod ip_gw_options;
pub mod ip_options;
pub mod ip_pattern;
pub mod ip_print;
pub mod linear_ip_lookup;
pub mod mark_ip_header;
pub mod radix_ip_lookup;
pub mod route_table;
pub mod set_ip_address;
pub mod set_ip_checksum;
pub mod set_ip_dscp;
pub mod static_ip_lookup;
