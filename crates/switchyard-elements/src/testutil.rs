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
    class.configure(label, config)
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

/// A FlowTable before a two-copy "hub" and a pinned two-input selector,
/// driven by hand: each packet is stamped once, copied to both inputs
/// (painted with the input it came through), and the output is read.
pub struct Pinned {
    table: Harness,
    sel: Harness,
    pub hs: Vec<Handler>,
    next: u64,
}

/// A one-input FlowTable, and a scope where it is lent as `flows`.
pub fn flow_table() -> (Box<dyn Element>, switchyard_core::Scope) {
    let mut table = element(crate::FlowTable::CLASS, "CAPACITY 1000");
    table
        .initialize(&PortInfo {
            inputs: vec![Processing::Push],
            outputs: vec![Processing::Push],
        })
        .unwrap();
    let mut scope = switchyard_core::Scope::default();
    scope.lend("flows".into(), table.lends().unwrap());
    (table, scope)
}

impl Pinned {
    pub fn new(selector: ElementClass, config: &str) -> Pinned {
        let (table, scope) = flow_table();
        let mut sel = element(selector, config);
        sel.resolve(&scope).unwrap();
        sel.initialize(&PortInfo {
            inputs: vec![Processing::Push; 2],
            outputs: vec![Processing::Push],
        })
        .unwrap();
        let hs = sel.handlers();
        Pinned {
            table: Harness::new(table, 1, 1),
            sel: Harness::new(sel, 2, 1),
            hs,
            next: 1,
        }
    }

    /// One packet of each flow (a UDP source port); the branch each
    /// left production from, in order.
    pub fn send(&mut self, flows: &[u16]) -> Vec<u8> {
        let mut b = Batch::new();
        for &port in flows {
            let mut f = crate::default_frame(64);
            f[34..36].copy_from_slice(&port.to_be_bytes());
            let mut p = switchyard_core::Packet::from_data(&f);
            p.anno.seq = self.next;
            self.next += 1;
            b.push(p);
        }
        self.table.push(0, b);
        for stamped in self.table.take(0) {
            for input in 0..2 {
                let mut copy = Batch::new();
                for p in stamped.iter() {
                    let mut c = p.clone();
                    c.anno.paint = input as u8;
                    copy.push(c);
                }
                self.sel.push(input, copy);
            }
        }
        let out: Vec<(u64, u8)> = self
            .sel
            .take(0)
            .iter()
            .flat_map(|b| b.iter().map(|p| (p.anno.seq, p.anno.paint)).collect::<Vec<_>>())
            .collect();
        let mut seqs: Vec<u64> = out.iter().map(|o| o.0).collect();
        seqs.sort_unstable();
        let first = self.next - flows.len() as u64;
        assert_eq!(seqs, (first..self.next).collect::<Vec<_>>(), "each packet leaves once");
        let mut by_seq = out;
        by_seq.sort_unstable();
        by_seq.into_iter().map(|o| o.1).collect()
    }
}
