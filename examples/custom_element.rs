//! A user-written element on the new branch of the hub.
//!
//!     cargo run --example custom_element
//!
//! `SetTTL` is the kind of "new release" a team rolls out: it rewrites the
//! IPv4 TTL (fixing the header checksum incrementally). It is defined with
//! the same API the standard elements use, registered next to them, and
//! put on the new branch; production follows the new branch once
//! `sel.switch` is 1.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, run_text, Args, Batch, Element, ElementClass, Handler};

documented! {
    /// Sets the TTL of IPv4 packets in Ethernet frames.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `TTL` (positional, mandatory): the new TTL, 0 to 255.
    ///
    /// # Handlers
    /// - `skipped` (read): frames left alone (not IPv4, or too short).
    ///
    /// # Example
    /// ```text
    /// hub[1] -> SetTTL(7) -> [1]sel;
    /// ```
    pub struct SetTTL {
        ttl: u8,
        skipped: Arc<AtomicU64>,
    }
}

impl SetTTL {
    pub const CLASS: ElementClass = ElementClass {
        name: "SetTTL",
        ports: "1/1",
        processing: "a/a",
        doc: SetTTL::DOC,
        factory: SetTTL::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let ttl = args.read_mp::<u8>("TTL")?;
        Some(Box::new(SetTTL {
            ttl,
            skipped: Arc::new(AtomicU64::new(0)),
        }))
    }
}

impl Element for SetTTL {
    fn simple_action(&mut self, batch: &mut Batch) {
        for p in batch.packets_mut() {
            let d = p.data();
            // Check lengths before touching bytes: a runt never panics.
            if d.len() < 34 || d[12..14] != [0x08, 0x00] || d[14] >> 4 != 4 {
                self.skipped.fetch_add(1, Relaxed);
                continue;
            }
            let old = u16::from_be_bytes([d[22], d[23]]);
            let d = p.data_mut(); // copies first if Tee shares the buffer
            d[22] = self.ttl;
            let new = u16::from_be_bytes([d[22], d[23]]);
            // RFC 1624 incremental update: HC' = ~(~HC + ~m + m').
            let hc = u16::from_be_bytes([d[24], d[25]]);
            let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            d[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let s = self.skipped.clone();
        vec![Handler::read_only("skipped", move || s.load(Relaxed).to_string())]
    }
}

/// The hub/switch graph with SetTTL on the new branch, production on it,
/// and a Classifier on the way out that counts frames by TTL.
const CONFIG: &str = "
    src :: InfiniteSource(LIMIT 10000, STOP true) -> hub :: Tee(2);
    hub[0] -> old :: Counter -> [0]sel :: InputSwitch(1);
    hub[1] -> SetTTL(7) -> new :: Counter -> [1]sel;
    sel -> by_ttl :: Classifier(22/07, 22/40, -);
    by_ttl[0] -> ttl7 :: Counter -> Discard;
    by_ttl[1] -> ttl64 :: Counter -> Discard;
    by_ttl[2] -> other :: Counter -> Discard;
";

/// Runs the graph; returns (frames with TTL 7, with TTL 64) in production.
fn run() -> (u64, u64) {
    let registry = switchyard_elements::standard().with(SetTTL::CLASS);
    let handlers = run_text(CONFIG, &registry).unwrap_or_else(|e| panic!("{e}"));
    let read = |h: &str| handlers.read(h).unwrap().trim().parse::<u64>().unwrap();
    (read("ttl7.count"), read("ttl64.count"))
}

fn main() {
    let (ttl7, ttl64) = run();
    println!("production saw {ttl7} frames rewritten by the new branch (TTL 7), {ttl64} from the old (TTL 64)");
}

#[test]
fn new_branch_element_reaches_production_and_old_branch_is_untouched() {
    // All 10000 frames come from the new branch; the old branch's copies,
    // sharing the same buffers, were not modified (copy on write).
    assert_eq!(run(), (10_000, 0));
}

#[test]
fn checksum_stays_valid() {
    let mut b = Batch::new();
    b.push(switchyard_core::Packet::from_data(&switchyard_elements::default_frame(
        64,
    )));
    let mut e = SetTTL {
        ttl: 7,
        skipped: Arc::new(AtomicU64::new(0)),
    };
    e.simple_action(&mut b);
    let ip = &b.packets()[0].data()[14..34];
    let sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff, "header checksum must verify");
    assert_eq!(ip[8], 7);
}
