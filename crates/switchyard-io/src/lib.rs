//! Switchyard's I/O: Linux interfaces (FromDevice/ToDevice) and pcap
//! files (FromDump/ToDump). The only crate with `unsafe` (the AF_PACKET
//! ring backend), each block with a `// SAFETY:` comment.

mod from_dump;
pub mod pcap;
mod to_dump;

pub use from_dump::FromDump;
pub use to_dump::ToDump;

use switchyard_core::ElementClass;

/// The I/O element classes, sorted by name.
pub const CLASSES: &[ElementClass] = &[FromDump::CLASS, ToDump::CLASS];
