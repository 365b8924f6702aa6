//! Packet traces as text (Click's `elements/analysis`): IP summary dumps,
//! one line per packet. ToIPSummaryDump writes a packet's header fields
//! as a line; FromIPSummaryDump makes an IPv4 packet from each line. The
//! format itself (field names, value syntax) lives in `ip_summary`, the
//! writing side in `summary`, the reading side in `parse`.

pub mod from_ip_summary_dump;
pub mod ip_summary;
mod parse;
mod summary;
pub mod to_ip_summary_dump;

#[cfg(test)]
mod tests;
