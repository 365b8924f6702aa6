//! The standard element library, one file per element. Each element's doc
//! comment is its reference (ports, arguments, handlers, an example);
//! `switchyard elements` prints the same text from [`CLASSES`].
#![forbid(unsafe_code)]

mod rollback;
mod standard;
pub mod util;

pub use rollback::canary_switch::CanarySwitch;
pub use rollback::seq_check::SeqCheck;
pub use rollback::shadow_compare::ShadowCompare;
pub use rollback::watchdog::Watchdog;
pub use standard::classifier::Classifier;
pub use standard::counter::Counter;
pub use standard::delay_unqueue::DelayUnqueue;
pub use standard::discard::Discard;
pub use standard::flow_hash::FlowHash;
pub use standard::idle::Idle;
pub use standard::infinite_source::InfiniteSource;
pub use standard::input_switch::InputSwitch;
pub use standard::paint::Paint;
pub use standard::paint_switch::PaintSwitch;
pub use standard::print::Print;
pub use standard::queue::Queue;
pub use standard::rated_source::RatedSource;
pub use standard::source::default_frame;
pub use standard::static_switch::StaticSwitch;
pub use standard::store_data::StoreData;
pub use standard::switch::Switch;
pub use standard::tee::Tee;
pub use standard::unqueue::Unqueue;

use switchyard_core::{ElementClass, Registry};

/// Every standard class, sorted by name. Adding an element is one file
/// and one line here.
pub const CLASSES: &[ElementClass] = &[
    CanarySwitch::CLASS,
    Classifier::CLASS,
    Counter::CLASS,
    DelayUnqueue::CLASS,
    Discard::CLASS,
    FlowHash::CLASS,
    Idle::CLASS,
    InfiniteSource::CLASS,
    InputSwitch::CLASS,
    Paint::CLASS,
    PaintSwitch::CLASS,
    Print::CLASS,
    Queue::CLASS,
    RatedSource::CLASS,
    SeqCheck::CLASS,
    ShadowCompare::CLASS,
    StaticSwitch::CLASS,
    StoreData::CLASS,
    Switch::CLASS,
    Tee::CLASS,
    Unqueue::CLASS,
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
