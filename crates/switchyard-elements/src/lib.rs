//! The standard element library, one file per element. Each element's doc
//! comment is its reference (ports, arguments, handlers, an example);
//! `switchyard elements` prints the same text from [`CLASSES`].
#![forbid(unsafe_code)]

mod canary_switch;
mod classifier;
mod counter;
mod delay_unqueue;
mod discard;
mod flow_hash;
mod idle;
mod infinite_source;
mod input_switch;
mod paint;
mod paint_switch;
mod print;
mod queue;
mod rated_source;
mod seq_check;
mod shadow_compare;
mod source;
mod static_switch;
mod store_data;
mod switch;
mod tee;
mod unqueue;
pub mod util;
mod watchdog;

pub use canary_switch::CanarySwitch;
pub use classifier::Classifier;
pub use counter::Counter;
pub use delay_unqueue::DelayUnqueue;
pub use discard::Discard;
pub use flow_hash::FlowHash;
pub use idle::Idle;
pub use infinite_source::InfiniteSource;
pub use input_switch::InputSwitch;
pub use paint::Paint;
pub use paint_switch::PaintSwitch;
pub use print::Print;
pub use queue::Queue;
pub use rated_source::RatedSource;
pub use seq_check::SeqCheck;
pub use shadow_compare::ShadowCompare;
pub use source::default_frame;
pub use static_switch::StaticSwitch;
pub use store_data::StoreData;
pub use switch::Switch;
pub use tee::Tee;
pub use unqueue::Unqueue;
pub use watchdog::Watchdog;

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
