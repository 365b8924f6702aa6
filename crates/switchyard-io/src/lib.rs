//! Switchyard's I/O: Linux interfaces (FromDevice/ToDevice) and pcap
//! files (FromDump/ToDump). The only crate with `unsafe` (the AF_PACKET
//! ring backend in ring.rs, and one libc call in device.rs), each block
//! with a `// SAFETY:` comment.

pub mod device;
mod from_device;
mod from_dump;
pub mod pcap;
mod pnet_dev;
pub mod ring;
mod to_device;
mod to_dump;

pub use from_device::FromDevice;
pub use from_dump::FromDump;
pub use to_device::ToDevice;
pub use to_dump::ToDump;

use switchyard_core::ElementClass;

/// The I/O element classes, sorted by name.
pub const CLASSES: &[ElementClass] = &[FromDevice::CLASS, FromDump::CLASS, ToDevice::CLASS, ToDump::CLASS];
