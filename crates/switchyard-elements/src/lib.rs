//! The standard element library, one file per element. Each element's doc
//! comment is its reference (ports, arguments, handlers, an example);
//! `switchyard elements` prints the same text from [`CLASSES`].
#![forbid(unsafe_code)]

mod ethernet;
mod icmp;
mod ip;
mod nat;
mod rng;
mod rollback;
mod standard;
#[cfg(test)]
mod testutil;
mod trace;
pub mod util;
pub mod wire;

pub use ethernet::arp_querier::ARPQuerier;
pub use ethernet::arp_responder::ARPResponder;
pub use ethernet::ether_encap::EtherEncap;
pub use ethernet::ether_rewrite::EtherRewrite;
pub use ethernet::host_ether_filter::HostEtherFilter;
pub use icmp::icmp_error::ICMPError;
pub use icmp::icmp_ping_responder::ICMPPingResponder;
pub use ip::check_ip_header::CheckIPHeader;
pub use ip::dec_ip_ttl::DecIPTTL;
pub use ip::direct_ip_lookup::DirectIPLookup;
pub use ip::drop_broadcasts::DropBroadcasts;
pub use ip::fix_ip_src::FixIPSrc;
pub use ip::get_ip_address::GetIPAddress;
pub use ip::ip_classifier::IPClassifier;
pub use ip::ip_filter::IPFilter;
pub use ip::ip_fragmenter::IPFragmenter;
pub use ip::ip_gw_options::IPGWOptions;
pub use ip::ip_print::IPPrint;
pub use ip::linear_ip_lookup::LinearIPLookup;
pub use ip::mark_ip_header::MarkIPHeader;
pub use ip::radix_ip_lookup::RadixIPLookup;
pub use ip::set_ip_address::SetIPAddress;
pub use ip::set_ip_checksum::SetIPChecksum;
pub use ip::set_ip_dscp::SetIPDSCP;
pub use ip::static_ip_lookup::StaticIPLookup;
pub use nat::ip_rewriter::IPRewriter;
pub use nat::ip_rewriter_patterns::IPRewriterPatterns;
pub use nat::tcp_rewriter::TCPRewriter;
pub use nat::udp_rewriter::UDPRewriter;
pub use rollback::canary_switch::CanarySwitch;
pub use rollback::flow_table::FlowTable;
pub use rollback::seq_check::SeqCheck;
pub use rollback::shadow_compare::ShadowCompare;
pub use rollback::watchdog::Watchdog;
pub use standard::classifier::Classifier;
pub use standard::copies::Copies;
pub use standard::counter::Counter;
pub use standard::delay_unqueue::DelayUnqueue;
pub use standard::discard::Discard;
pub use standard::flow_hash::FlowHash;
pub use standard::hash_switch::HashSwitch;
pub use standard::idle::Idle;
pub use standard::infinite_source::InfiniteSource;
pub use standard::input_switch::InputSwitch;
pub use standard::paint::Paint;
pub use standard::paint_switch::PaintSwitch;
pub use standard::paint_tee::PaintTee;
pub use standard::print::Print;
pub use standard::queue::Queue;
pub use standard::random_switch::RandomSwitch;
pub use standard::rated_source::RatedSource;
pub use standard::round_robin_switch::RoundRobinSwitch;
pub use standard::script::{DriverManager, Script};
pub use standard::script_expr::truth as script_truth;
pub use standard::source::default_frame;
pub use standard::static_switch::StaticSwitch;
pub use standard::store_data::StoreData;
pub use standard::stride_switch::StrideSwitch;
pub use standard::strip::Strip;
pub use standard::switch::Switch;
pub use standard::tee::Tee;
pub use standard::unqueue::Unqueue;
pub use standard::unstrip::Unstrip;
pub use trace::from_ip_summary_dump::FromIPSummaryDump;
pub use trace::to_ip_summary_dump::ToIPSummaryDump;

use switchyard_core::{ElementClass, Registry};

/// Click's names for a Queue: without notifiers (SimpleQueue) or with
/// them (NotifierQueue, FullNoteQueue); Switchyard's Queue is all three.
const fn queue_named(name: &'static str) -> ElementClass {
    ElementClass { name, ..Queue::CLASS }
}

/// Every standard class, sorted by name. Adding an element is one file
/// and one line here.
pub const CLASSES: &[ElementClass] = &[
    ARPQuerier::CLASS,
    ARPResponder::CLASS,
    CanarySwitch::CLASS,
    CheckIPHeader::CLASS,
    Classifier::CLASS,
    Copies::CLASS,
    Counter::CLASS,
    DecIPTTL::CLASS,
    DelayUnqueue::CLASS,
    DirectIPLookup::CLASS,
    Discard::CLASS,
    DriverManager::CLASS,
    DropBroadcasts::CLASS,
    EtherEncap::CLASS,
    EtherRewrite::CLASS,
    FixIPSrc::CLASS,
    FlowHash::CLASS,
    FlowTable::CLASS,
    FromIPSummaryDump::CLASS,
    queue_named("FullNoteQueue"),
    GetIPAddress::CLASS,
    HashSwitch::CLASS,
    HostEtherFilter::CLASS,
    ICMPError::CLASS,
    ICMPPingResponder::CLASS,
    IPClassifier::CLASS,
    IPFilter::CLASS,
    IPFragmenter::CLASS,
    IPGWOptions::CLASS,
    IPPrint::CLASS,
    IPRewriter::CLASS,
    IPRewriterPatterns::CLASS,
    Idle::CLASS,
    InfiniteSource::CLASS,
    InputSwitch::CLASS,
    LinearIPLookup::CLASS,
    MarkIPHeader::CLASS,
    queue_named("NotifierQueue"),
    Paint::CLASS,
    PaintSwitch::CLASS,
    PaintTee::CLASS,
    Print::CLASS,
    Queue::CLASS,
    RadixIPLookup::CLASS,
    RandomSwitch::CLASS,
    RatedSource::CLASS,
    RoundRobinSwitch::CLASS,
    Script::CLASS,
    SeqCheck::CLASS,
    SetIPAddress::CLASS,
    SetIPChecksum::CLASS,
    SetIPDSCP::CLASS,
    ShadowCompare::CLASS,
    queue_named("SimpleQueue"),
    StaticIPLookup::CLASS,
    StaticSwitch::CLASS,
    StoreData::CLASS,
    StrideSwitch::CLASS,
    Strip::CLASS,
    Switch::CLASS,
    TCPRewriter::CLASS,
    Tee::CLASS,
    ToIPSummaryDump::CLASS,
    UDPRewriter::CLASS,
    Unqueue::CLASS,
    Unstrip::CLASS,
    Watchdog::CLASS,
];

/// A registry of the standard classes, to which user code may add its own.
pub fn standard() -> Registry {
    Registry::new(CLASSES.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::PortCount;

    #[test]
    fn registry_is_sorted_unique_and_documented() {
        for w in CLASSES.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for c in CLASSES {
            for section in ["# Ports", "# Arguments", "# Handlers", "# Example"] {
                assert!(c.doc.contains(section), "{} lacks '{section}'", c.name);
            }
            assert!(PortCount::parse(c.ports).is_some(), "{}: bad port count", c.name);
        }
    }
}
