//! Switchyard's I/O: Linux interfaces (FromDevice/ToDevice) and pcap
//! files (FromDump/ToDump). The only crate with `unsafe` (the AF_PACKET
//! ring backend in ring.rs, one libc call in device.rs, and the SIGPIPE
//! reset below), each block with a `// SAFETY:` comment.

pub mod device;
mod from_device;
mod from_dump;
pub mod offload;
pub mod pcap;
mod pnet_dev;
pub mod ring;
mod to_device;
mod to_dump;
#[cfg(feature = "xdp")]
pub mod xdp;

pub use from_device::FromDevice;
pub use from_dump::FromDump;
pub use to_device::ToDevice;
pub use to_dump::ToDump;

use switchyard_core::ElementClass;

/// The I/O element classes, sorted by name.
pub const CLASSES: &[ElementClass] = &[FromDevice::CLASS, FromDump::CLASS, ToDevice::CLASS, ToDump::CLASS];

/// Restores SIGPIPE's default action, for a command-line client whose
/// output may go to `head`: it then ends quietly when its reader goes away,
/// as `cat` does, instead of failing on EPIPE (Rust ignores SIGPIPE, so
/// every `println!` would panic). Never for the router itself: a control
/// client going away must not kill it.
pub fn default_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler code; it only
    // changes the disposition of SIGPIPE for this process, which is a
    // single-threaded CLI client at this point (called first in `ctl`).
    // Tested by `ctl_output_into_a_closed_pipe_ends_quietly`.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
