use super::arp::{Arp, OP_REPLY, OP_REQUEST};
use crate::util::{push_rejects, push_sorted, sort_out, Drops, Verdict};
use crate::wire::{EtherAddr, IpPrefix};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use switchyard_core::{
    documented, downcast, Annotations, Args, Batch, Context, Element, ElementClass, Handler, Packet,
};

documented! {
    /// Answers ARP requests for configured addresses and prefixes (its own
    /// addresses, or proxy ARP for whole networks).
    ///
    /// For an Ethernet/IPv4 ARP request whose target address matches an
    /// entry, the request becomes the reply: sent to the requester's
    /// hardware address, from the entry's Ethernet address, claiming the
    /// requested address. When several entries match, the most specific
    /// prefix answers. Anything else (requests for other addresses, ARP
    /// replies, frames that are not Ethernet/IPv4 ARP, truncated frames)
    /// goes to output 1 if it exists and is dropped and counted otherwise.
    ///
    /// Differences from Click: a frame whose ARP address lengths are not 6
    /// and 4 is never answered (Click reads the fields at the fixed offsets
    /// anyway); the reply is built in the request's buffer and keeps no
    /// annotation of it (Switchyard has no device annotation to copy);
    /// AddressInfo names are not supported, write the addresses; the table
    /// holds at most 4096 entries. `drops` is a Switchyard addition.
    ///
    /// # Ports
    /// One input (Ethernet frames carrying ARP requests). Output 0: the
    /// replies, agnostic. Output 1 (optional, push): every frame not
    /// answered.
    ///
    /// # Arguments
    /// Each argument is one or more addresses or prefixes followed by (or
    /// preceded by) one Ethernet address: `IP/PREFIX [IP/PREFIX...] ETH`.
    /// A bare address is a /32; masks may be written `10.0.0.0/255.0.0.0`.
    /// A prefix given twice keeps the later Ethernet address. At most 4096
    /// entries, from the configuration and `add` together: a request is
    /// compared with the entries one by one, and the bound keeps that
    /// short.
    ///
    /// # Handlers
    /// - `table` (read): the entries, one `ADDR/LEN ETH` per line, most
    ///   specific first.
    /// - `lookup` (read with parameter `IP`): the Ethernet address that
    ///   answers for `IP`, or nothing.
    /// - `add` (write): adds entries, `IP/PREFIX [IP/PREFIX...] ETH`; an
    ///   error, changing nothing, if the table would hold more than 4096.
    /// - `remove` (write): removes the entry for exactly `IP/PREFIX`; an
    ///   error if there is none.
    /// - `drops` (read): frames dropped unanswered (only without output 1).
    ///
    /// # Example
    /// ```text
    /// c :: Classifier(12/0806 20/0001, 12/0806 20/0002, 12/0800, -);
    /// c[0] -> ARPResponder(10.0.0.1 00:11:22:33:44:55,
    ///                      192.168.7.0/24 00:11:22:33:44:55)  // proxy ARP
    ///      -> Queue -> ToDevice(eth0);
    /// ```
    pub struct ARPResponder {
        shared: Arc<Shared>,
        /// The data path's table, taken again when `version` moves.
        local: Arc<Vec<Entry>>,
        seen: u64,
        drops: Drops,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// The prefix's address, masked.
    addr: u32,
    mask: u32,
    eth: EtherAddr,
}

/// The most entries a table holds.
const MAX_ENTRIES: usize = 4096;

/// What the data path and the handlers share. A table, once published,
/// is never changed: a write builds the next one from it without holding
/// `table`, and only swaps the `Arc` under it, so the data path never
/// waits for a write's work (nor frees a table while holding the lock).
#[derive(Default)]
struct Shared {
    /// The current table.
    table: Mutex<Arc<Vec<Entry>>>,
    /// Held by a write from reading the table to publishing the next, so
    /// that two writes do not build from the same table and lose one.
    writing: Mutex<()>,
    version: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Whoever panicked holding it left a whole table or nothing.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn current(&self) -> Arc<Vec<Entry>> {
        lock(&self.table).clone()
    }

    /// Builds the next table from the current one with `change`, and
    /// publishes it if `change` accepts.
    fn write(&self, change: impl FnOnce(&[Entry]) -> Result<Vec<Entry>, String>) -> Result<(), String> {
        let _writing = lock(&self.writing);
        let next = Arc::new(change(&self.current())?);
        let old = std::mem::replace(&mut *lock(&self.table), next);
        self.version.fetch_add(1, Relaxed);
        drop(old);
        Ok(())
    }
}

/// Parses one argument (or an `add` write): `IP/PREFIX [IP/PREFIX...] ETH`.
fn parse_entries(text: &str) -> Result<Vec<Entry>, String> {
    let mut prefixes = Vec::new();
    let mut eth = None;
    for w in text.split_whitespace() {
        if let Some(p) = IpPrefix::parse(w) {
            prefixes.push(p);
        } else if let Some(e) = EtherAddr::parse(w) {
            if eth.replace(e).is_some() {
                return Err(format!("'{text}': more than one ETH"));
            }
        } else {
            return Err(format!("'{w}': expected IP/PREFIX ETH"));
        }
    }
    let eth = eth.ok_or_else(|| format!("'{text}': missing ETH"))?;
    if prefixes.is_empty() {
        return Err(format!("'{text}': missing IP/PREFIX"));
    }
    Ok(prefixes
        .into_iter()
        .map(|p| Entry {
            addr: p.addr & p.mask,
            mask: p.mask,
            eth,
        })
        .collect())
}

/// `table` with `new` added: a prefix already there takes the new
/// address, and the table stays ordered most specific first (in the
/// order added within a length), so that the first match is the longest.
/// An error if it would hold more than [`MAX_ENTRIES`].
fn merged(table: &[Entry], new: &[Entry]) -> Result<Vec<Entry>, String> {
    let mut next = table.to_vec();
    let mut index: HashMap<(u32, u32), usize> = next.iter().enumerate().map(|(i, e)| ((e.addr, e.mask), i)).collect();
    for e in new {
        match index.get(&(e.addr, e.mask)) {
            Some(&i) => next[i].eth = e.eth,
            None if next.len() == MAX_ENTRIES => {
                return Err(format!("too many entries: at most {MAX_ENTRIES}"));
            }
            None => {
                index.insert((e.addr, e.mask), next.len());
                next.push(*e);
            }
        }
    }
    next.sort_by_key(|e| std::cmp::Reverse(e.mask.leading_ones()));
    Ok(next)
}

fn lookup(table: &[Entry], ip: u32) -> Option<EtherAddr> {
    table.iter().find(|e| ip & e.mask == e.addr).map(|e| e.eth)
}

impl ARPResponder {
    pub const CLASS: ElementClass = ElementClass {
        name: "ARPResponder",
        ports: "1/1-2",
        processing: "a/ah",
        doc: ARPResponder::DOC,
        factory: ARPResponder::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let mut entries = Vec::new();
        for (text, span) in args.rest_positional() {
            match parse_entries(&text) {
                Ok(v) => entries.extend(v),
                Err(e) => args.error(Some(span), e),
            }
        }
        if args.has_errors() {
            return None;
        }
        let table = match merged(&[], &entries) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                args.error(None, e);
                return None;
            }
        };
        Some(Box::new(ARPResponder {
            shared: Arc::new(Shared {
                table: Mutex::new(table.clone()),
                ..Shared::default()
            }),
            local: table,
            seen: 0,
            drops: Drops::default(),
        }))
    }

    /// Takes the published table if a write moved it: one `Arc` clone
    /// under the lock, whatever the table's size.
    fn refresh(&mut self) {
        let v = self.shared.version.load(Relaxed);
        if v != self.seen {
            self.local = self.shared.current();
            self.seen = v;
        }
    }

    /// Turns `p` into the reply if it is a request we answer.
    fn answer(&self, p: &mut Packet) -> bool {
        let Ok(req) = Arp::parse(p.data()) else {
            return false;
        };
        if req.op != OP_REQUEST {
            return false;
        }
        let Some(ours) = lookup(&self.local, req.tpa) else {
            return false;
        };
        let reply = Arp {
            op: OP_REPLY,
            sha: ours,
            spa: req.tpa,
            tha: req.sha,
            tpa: req.spa,
        };
        let padding = p.len() - super::arp::FRAME_LEN;
        p.take(padding);
        reply.emit(req.sha, ours, p.data_mut());
        p.anno = Annotations::default();
        true
    }

    /// Answers what it can in `batch`, in place; what is left unanswered
    /// is `refused` (for output 1, or dropped and counted).
    fn process(&mut self, batch: &mut Batch, refused: Verdict) -> Option<Batch> {
        self.refresh();
        let mut dropped = 0;
        let rejects = sort_out(batch, |p| {
            if self.answer(p) {
                return Verdict::Pass;
            }
            dropped += usize::from(refused == Verdict::Drop);
            refused
        });
        self.drops.add(dropped);
        rejects
    }
}

impl Element for ARPResponder {
    fn push(&mut self, _port: usize, mut batch: Batch, cx: &mut Context<'_>) {
        let rejects = self.process(&mut batch, Verdict::refused(cx));
        push_sorted(cx, batch, rejects);
    }

    fn pull(&mut self, _port: usize, cx: &mut Context<'_>) -> Option<Batch> {
        let mut batch = cx.pull(0)?;
        let rejects = self.process(&mut batch, Verdict::refused(cx));
        push_rejects(cx, rejects);
        Some(batch)
    }

    fn take_state(&mut self, old: Box<dyn Element>) {
        // Entries added or removed by hand outlive a reload only if the
        // configuration says so; the drop count carries over.
        if let Some(old) = downcast::<ARPResponder>(old) {
            self.drops = old.drops;
        }
    }

    fn handlers(&self) -> Vec<Handler> {
        let (s1, s2, s3, s4) = (
            self.shared.clone(),
            self.shared.clone(),
            self.shared.clone(),
            self.shared.clone(),
        );
        vec![
            Handler::read_only("table", move || {
                s1.current()
                    .iter()
                    .map(|e| {
                        let p = IpPrefix {
                            addr: e.addr,
                            mask: e.mask,
                        };
                        format!("{p} {}\n", e.eth.unparse())
                    })
                    .collect()
            })
            .merged(switchyard_core::Merge::Same),
            Handler::read_with_param("lookup", move |arg| {
                let ip = crate::wire::parse_ip(arg.trim())
                    .ok_or_else(|| format!("'{}': expected IP address", arg.trim()))?;
                Ok(lookup(&s2.current(), ip).map(|e| e.unparse()).unwrap_or_default())
            })
            .merged(switchyard_core::Merge::Same),
            Handler::write_only("add", move |v| {
                let new = parse_entries(v)?;
                s3.write(|t| merged(t, &new))
            }),
            Handler::write_only("remove", move |v| {
                let p = IpPrefix::parse(v.trim()).ok_or_else(|| format!("'{}': expected IP/PREFIX", v.trim()))?;
                let (addr, mask) = (p.addr & p.mask, p.mask);
                s4.write(|t| {
                    let at = t
                        .iter()
                        .position(|e| e.addr == addr && e.mask == mask)
                        .ok_or_else(|| format!("{} not found", IpPrefix { addr, mask }))?;
                    let mut next = t.to_vec();
                    next.remove(at);
                    Ok(next)
                })
            }),
            self.drops.handler(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::arp::tests::{frame, REQUEST};
    use super::super::arp::FRAME_LEN;
    use super::*;
    use switchyard_core::runtime::Harness;

    const OURS: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
    const PROXY: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x66];
    const HOST: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

    fn element(config: &str) -> Box<dyn Element> {
        let mut args = Args::parse_str("ar :: ARPResponder", config);
        let e = ARPResponder::make(&mut args);
        args.complete().expect("valid config");
        e.expect("element")
    }

    fn handler(e: &dyn Element, name: &str) -> Handler {
        e.handlers().into_iter().find(|h| h.name == name).unwrap()
    }

    fn run(e: Box<dyn Element>, outputs: usize, frames: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut h = Harness::new(e, 1, outputs);
        let mut b = Batch::new();
        for f in frames {
            b.push(Packet::from_data(f));
        }
        h.push(0, b);
        let bytes = |v: Vec<Batch>| v.iter().flat_map(|b| b.iter().map(|p| p.data().to_vec())).collect();
        let out0 = bytes(h.take(0));
        let out1 = if outputs > 1 { bytes(h.take(1)) } else { Vec::new() };
        (out0, out1)
    }

    #[test]
    fn answers_a_request_byte_for_byte() {
        let (out, rest) = run(element("10.0.0.1 00:11:22:33:44:55"), 2, &[&REQUEST]);
        assert!(rest.is_empty());
        let reply: [u8; FRAME_LEN] = [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06, // Ethernet
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // Ethernet/IPv4, reply
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x0a, 0x00, 0x00, 0x01, // sender: us
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x02, // target: the requester
        ];
        assert_eq!(out, vec![reply.to_vec()]);
    }

    #[test]
    fn the_most_specific_entry_answers() {
        let e = element("10.0.0.0/8 00-11-22-33-44-66, 10.0.0.1 10.0.0.9 00:11:22:33:44:55");
        let ask = |tpa: [u8; 4]| frame(OP_REQUEST, HOST, [10, 0, 0, 2], [0; 6], tpa, [0xff; 6]);
        let (out, rest) = run(e, 2, &[&ask([10, 0, 0, 1]), &ask([10, 9, 9, 9]), &ask([10, 0, 0, 9])]);
        assert!(rest.is_empty());
        let senders: Vec<&[u8]> = out.iter().map(|f| &f[22..28]).collect();
        assert_eq!(senders, [&OURS[..], &PROXY[..], &OURS[..]]);
        // The reply claims the address that was asked for.
        assert_eq!(&out[1][28..32], &[10, 9, 9, 9]);
    }

    #[test]
    fn unanswered_frames_go_to_output_1_or_are_counted() {
        let other = frame(OP_REQUEST, HOST, [10, 0, 0, 2], [0; 6], [10, 0, 0, 7], [0xff; 6]);
        let reply = frame(OP_REPLY, HOST, [10, 0, 0, 2], OURS, [10, 0, 0, 1], OURS);
        let mut ipv4 = REQUEST;
        ipv4[13] = 0x00;
        let mut wide = REQUEST;
        wide[18] = 8;
        let frames: [&[u8]; 6] = [&other, &reply, &ipv4, &wide, &REQUEST[..41], &[]];
        let (out, rest) = run(element("10.0.0.1 00:11:22:33:44:55"), 2, &frames);
        assert!(out.is_empty());
        assert_eq!(rest.len(), 6);
        assert_eq!(rest[0], other, "unanswered frames leave unchanged");

        let e = element("10.0.0.1 00:11:22:33:44:55");
        let drops = handler(e.as_ref(), "drops").read.unwrap();
        let mut h = Harness::new(e, 1, 1);
        let mut b = Batch::new();
        for f in frames.iter().chain([&&REQUEST[..]]) {
            b.push(Packet::from_data(f));
        }
        h.push(0, b);
        assert_eq!(h.count(0), 1);
        assert_eq!(drops(), "6");
    }

    #[test]
    fn a_shared_request_is_left_intact() {
        let e = element("10.0.0.1 00:11:22:33:44:55");
        let mut h = Harness::new(e, 1, 1);
        let original = Packet::from_data(&REQUEST);
        let mut b = Batch::new();
        b.push(original.clone());
        h.push(0, b);
        assert_eq!(h.count(0), 1);
        assert_eq!(original.data(), &REQUEST[..]);
    }

    #[test]
    fn handlers_read_and_change_the_table() {
        let e = element("10.0.0.1 00:11:22:33:44:55");
        let table = handler(e.as_ref(), "table").read.unwrap();
        let lookup = handler(e.as_ref(), "lookup").read_param.unwrap();
        let add = handler(e.as_ref(), "add").write.unwrap();
        let remove = handler(e.as_ref(), "remove").write.unwrap();
        assert_eq!(table(), "10.0.0.1/32 00-11-22-33-44-55\n");
        assert_eq!(lookup("10.0.0.1").unwrap(), "00-11-22-33-44-55");
        assert_eq!(lookup("10.0.0.2").unwrap(), "");
        assert!(lookup("ten").is_err());

        add("10.0.1.0/24 10.0.2.0/255.255.255.0 00:11:22:33:44:66").unwrap();
        assert_eq!(
            table(),
            "10.0.0.1/32 00-11-22-33-44-55\n10.0.1.0/24 00-11-22-33-44-66\n10.0.2.0/24 00-11-22-33-44-66\n"
        );
        assert!(add("10.0.3.0/24").is_err());
        assert!(add("00:11:22:33:44:66 00:11:22:33:44:55 10.0.0.0/8").is_err());
        assert_eq!(lookup("10.0.1.77").unwrap(), "00-11-22-33-44-66");
        // The data path sees the write at its next batch.
        let mut h = Harness::new(e, 1, 2);
        let ask = frame(OP_REQUEST, HOST, [10, 0, 0, 2], [0; 6], [10, 0, 1, 77], [0xff; 6]);
        let mut b = Batch::new();
        b.push(Packet::from_data(&ask));
        h.push(0, b);
        assert_eq!(h.count(0), 1);

        assert_eq!(remove("10.0.0.1/24").unwrap_err(), "10.0.0.0/24 not found");
        remove("10.0.1.5/24").unwrap();
        assert_eq!(lookup("10.0.1.77").unwrap(), "");
        let mut b = Batch::new();
        b.push(Packet::from_data(&ask));
        h.push(0, b);
        assert_eq!((h.count(0), h.count(1)), (0, 1));
    }

    #[test]
    fn configuration_errors() {
        for bad in [
            "10.0.0.1",
            "00:11:22:33:44:55",
            "10.0.0.1 00:11:22:33:44:55 00:11:22:33:44:66",
            "10.0.0.1 eth0",
            "10.0.0.0/33 00:11:22:33:44:55",
        ] {
            let mut args = Args::parse_str("ar :: ARPResponder", bad);
            assert!(ARPResponder::make(&mut args).is_none(), "{bad}");
            assert!(args.complete().is_err());
        }
        // A repeated prefix keeps the later address.
        let e = element("10.0.0.1 00:11:22:33:44:55, 10.0.0.1/32 00:11:22:33:44:66");
        assert_eq!(
            handler(e.as_ref(), "table").read.unwrap()(),
            "10.0.0.1/32 00-11-22-33-44-66\n"
        );
    }

    /// `n` /32 entries in 10.0.0.0/8 at one address, as one argument.
    fn hosts(n: u32) -> String {
        let mut s: String = (0..n)
            .map(|i| format!("{} ", crate::wire::IpAddr(0x0a00_0000 + i)))
            .collect();
        s.push_str("00:11:22:33:44:55");
        s
    }

    #[test]
    fn the_table_holds_at_most_4096_entries() {
        let mut args = Args::parse_str("ar :: ARPResponder", &hosts(4097));
        assert!(ARPResponder::make(&mut args).is_none());
        assert_eq!(
            args.complete().unwrap_err()[0].message,
            "'ar :: ARPResponder': too many entries: at most 4096"
        );
        let e = element(&hosts(4095));
        let table = handler(e.as_ref(), "table").read.unwrap();
        let add = handler(e.as_ref(), "add").write.unwrap();
        let remove = handler(e.as_ref(), "remove").write.unwrap();
        add("11.0.0.1 00:11:22:33:44:66").unwrap();
        assert_eq!(
            add("11.0.0.2 11.0.0.3 00:11:22:33:44:66").unwrap_err(),
            "too many entries: at most 4096"
        );
        assert_eq!(table().lines().count(), 4096, "a refused write changes nothing");
        // A full table still takes new addresses for its prefixes.
        add("10.0.0.7 00:11:22:33:44:77").unwrap();
        assert_eq!(table().lines().count(), 4096);
        remove("11.0.0.1").unwrap();
        add("11.0.0.2 00:11:22:33:44:66").unwrap();
        assert_eq!(
            handler(e.as_ref(), "lookup").read_param.unwrap()("10.0.0.7").unwrap(),
            "00-11-22-33-44-77"
        );
    }

    #[test]
    fn a_write_being_built_does_not_hold_up_the_data_path() {
        let e = downcast::<ARPResponder>(element("10.0.0.1 00:11:22:33:44:55")).unwrap();
        let shared = e.shared.clone();
        let add = handler(e.as_ref(), "add").write.unwrap();
        add("10.0.0.9 00:11:22:33:44:66").unwrap();
        // A writer is between reading the table and publishing the next:
        // the data path answers from the published table meanwhile. With
        // a lock held across the build it would wait for the writer, so it
        // runs on its own thread and the test gives up on it after a while.
        let writing = lock(&shared.writing);
        let (done, answered) = std::sync::mpsc::channel();
        let data_path = std::thread::spawn(move || {
            let mut h = Harness::new(e, 1, 2);
            let ask = frame(OP_REQUEST, HOST, [10, 0, 0, 2], [0; 6], [10, 0, 0, 9], [0xff; 6]);
            let mut b = Batch::new();
            b.push(Packet::from_data(&ask));
            h.push(0, b);
            let _ = done.send(h.count(0));
            // The element, and the table it holds, outlive the check below.
            h
        });
        let got = answered.recv_timeout(std::time::Duration::from_secs(10));
        drop(writing);
        assert_eq!(got, Ok(1), "the data path waited for a write being built");
        let _h = data_path.join().unwrap();
        // A published table is shared, not copied, with the data path.
        let published = shared.current();
        assert!(Arc::strong_count(&published) >= 3, "published, data path, here");
    }

    proptest::proptest! {
        /// Whatever arrives, nothing panics, and every frame leaves on
        /// exactly one output; what leaves on output 0 is a well-formed
        /// reply from our address.
        #[test]
        fn hostile_frames(frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), 0..16),
                          keep_arp in proptest::prelude::any::<bool>()) {
            let e = element("0.0.0.0/0 00:11:22:33:44:55");
            let frames: Vec<Vec<u8>> = frames.into_iter().map(|mut f| {
                if keep_arp && f.len() >= FRAME_LEN {
                    f[12..20].copy_from_slice(&REQUEST[12..20]);
                }
                f
            }).collect();
            let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
            let (out, rest) = run(e, 2, &refs);
            proptest::prop_assert_eq!(out.len() + rest.len(), frames.len());
            for r in &out {
                let a = Arp::parse(r).unwrap();
                proptest::prop_assert_eq!(a.op, OP_REPLY);
                proptest::prop_assert_eq!(a.sha, EtherAddr(OURS));
                proptest::prop_assert_eq!(r.len(), FRAME_LEN);
            }
        }
    }
}
