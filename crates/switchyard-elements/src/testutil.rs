//! Test helpers the element tests share: building an element from a
//! config string, pushing frames through a Harness, reading handlers.

use crate::wire::{be32, ip};
use switchyard_core::{Args, Batch, Element, ElementClass, Handler, Harness, Packet, PortInfo, Processing};

/// An element of `class` configured from `config`; panics with the first
/// configuration error.
pub fn element(class: ElementClass, config: &str) -> Box<dyn Element> {
    let mut args = Args::parse_str(&format!("e :: {}", class.name), config);
    let e = (class.factory)(&mut args);
    if let Err(errs) = args.complete() {
        panic!("{config}: {}", errs[0].message);
    }
    e.expect("configured")
}

/// An element of `class` named as `label` (`f :: IPFilter`) in error
/// messages, configured from `config`, or every error, one per line.
pub fn configure(label: &str, class: ElementClass, config: &str) -> Result<Box<dyn Element>, String> {
    let mut args = Args::parse_str(label, config);
    let made = (class.factory)(&mut args);
    match args.complete() {
        Ok(()) => Ok(made.expect("made when no errors")),
        Err(e) => Err(e.into_iter().map(|d| d.message).collect::<Vec<_>>().join("\n")),
    }
}

/// [`element`], initialized as the graph would with one push input and
/// `outputs` push outputs, and its handlers.
pub fn make(class: ElementClass, config: &str, outputs: usize) -> (Box<dyn Element>, Vec<Handler>) {
    let mut e = element(class, config);
    e.initialize(&PortInfo {
        inputs: vec![Processing::Push],
        outputs: vec![Processing::Push; outputs],
    })
    .expect("initialized");
    let hs = e.handlers();
    (e, hs)
}

pub fn handler<'a>(hs: &'a [Handler], name: &str) -> &'a Handler {
    hs.iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no handler {name}"))
}

/// Reads a plain read handler.
pub fn read(hs: &[Handler], name: &str) -> String {
    (handler(hs, name)
        .read
        .as_ref()
        .unwrap_or_else(|| panic!("{name} is not readable")))()
}

/// Reads a handler that takes a parameter.
pub fn read_param(hs: &[Handler], name: &str, param: &str) -> Result<String, String> {
    (handler(hs, name)
        .read_param
        .as_ref()
        .unwrap_or_else(|| panic!("{name} takes no parameter")))(param)
}

pub fn write(hs: &[Handler], name: &str, value: &str) -> Result<(), String> {
    (handler(hs, name)
        .write
        .as_ref()
        .unwrap_or_else(|| panic!("{name} is not writable")))(value)
}

/// One batch of `packets`.
pub fn batch(packets: impl IntoIterator<Item = Packet>) -> Batch {
    let mut b = Batch::new();
    b.extend(packets);
    b
}

/// One batch of packets holding copies of `frames`.
pub fn frames(frames: &[Vec<u8>]) -> Batch {
    batch(frames.iter().map(|f| Packet::from_data(f)))
}

/// The packets of `batches`, in order (what a Harness output received).
pub fn packets(batches: Vec<Batch>) -> Vec<Packet> {
    batches
        .into_iter()
        .flat_map(|mut b| b.drain().collect::<Vec<_>>())
        .collect()
}

/// Pushes `packets`, one batch, into `e` wired to `outputs` outputs, and
/// returns what each output received.
pub fn push_through(e: Box<dyn Element>, outputs: usize, packets: Vec<Packet>) -> Vec<Vec<Packet>> {
    let mut h = Harness::new(e, 1, outputs);
    h.push(0, batch(packets));
    (0..outputs).map(|o| self::packets(h.take(o))).collect()
}

/// A packet of `bytes`, an IPv4 header at the start, as CheckIPHeader
/// leaves it: the header marked, the destination annotation set.
pub fn marked(bytes: &[u8]) -> Packet {
    let mut p = Packet::from_data(bytes);
    let hl = bytes.first().map_or(ip::MIN_LEN, |b| usize::from(b & 0xf) * 4);
    p.set_network_header(0, hl);
    if bytes.len() >= ip::MIN_LEN {
        p.anno.dst_ip = be32(bytes, ip::DST);
    }
    p
}
