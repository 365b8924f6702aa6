use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::{documented, downcast, Args, Batch, Element, ElementClass, Handler, Merge};

documented! {
    /// Checks the hub's sequence numbers of the packets passing through:
    /// put it on the production path to prove that every packet left
    /// exactly once across switch flips.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `MAX`: highest sequence number tracked; default 67108864 (an
    ///   8 MiB bitmap, allocated as numbers arrive); at most 2^30 (128 MiB),
    ///   so packets cannot grow it past that.
    ///
    /// # Handlers
    /// - `count` (read): packets seen.
    /// - `unique` (read): distinct sequence numbers seen.
    /// - `duplicates` (read): packets whose number was already seen.
    /// - `max_seq` (read): highest number seen.
    /// - `missing` (read): numbers between 1 and `max_seq` not seen.
    /// - `reordered` (read): packets arriving after a higher number.
    /// - `max_reorder` (read): the furthest a packet arrived behind the
    ///   highest number seen before it.
    /// - `unnumbered` (read): packets with no sequence number (or beyond MAX).
    ///
    /// # Example
    /// ```text
    /// sel -> check :: SeqCheck -> Discard;
    /// ```
    pub struct SeqCheck {
        max: u64,
        bits: Vec<u64>,
        stats: Arc<[AtomicU64; 7]>,
        high: u64,
    }
}

const COUNT: usize = 0;
const UNIQUE: usize = 1;
const DUPLICATES: usize = 2;
const MAX_SEQ: usize = 3;
const REORDERED: usize = 4;
const MAX_REORDER: usize = 5;
const UNNUMBERED: usize = 6;

impl SeqCheck {
    pub const CLASS: ElementClass = ElementClass {
        name: "SeqCheck",
        ports: "1/1",
        processing: "a/a",
        doc: SeqCheck::DOC,
        factory: SeqCheck::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let max = args.read::<u64>("MAX").unwrap_or(1 << 26);
        if max > 1 << 30 {
            args.error(Some(args.span_of("MAX")), "MAX must be at most 1073741824");
            return None;
        }
        Some(Box::new(SeqCheck {
            max,
            bits: Vec::new(),
            stats: Arc::new(Default::default()),
            high: 0,
        }))
    }
}

impl Element for SeqCheck {
    fn take_state(&mut self, old: Box<dyn Element>) {
        if let Some(old) = downcast::<SeqCheck>(old) {
            self.bits = old.bits;
            self.stats = old.stats;
            self.high = old.high;
        }
    }

    fn simple_action(&mut self, batch: &mut Batch) {
        let s = &self.stats;
        let (mut unique, mut dup, mut reordered, mut unnumbered) = (0, 0, 0, 0);
        let mut max_reorder = s[MAX_REORDER].load(Relaxed);
        for p in batch.iter() {
            let seq = p.anno.seq;
            if seq == 0 || seq > self.max {
                unnumbered += 1;
                continue;
            }
            let (word, bit) = ((seq / 64) as usize, seq % 64);
            if word >= self.bits.len() {
                self.bits.resize((word + 1).next_power_of_two(), 0);
            }
            if self.bits[word] & (1 << bit) != 0 {
                dup += 1;
            } else {
                self.bits[word] |= 1 << bit;
                unique += 1;
            }
            if seq < self.high {
                reordered += 1;
                max_reorder = max_reorder.max(self.high - seq);
            } else {
                self.high = seq;
            }
        }
        s[COUNT].fetch_add(batch.len() as u64, Relaxed);
        s[UNIQUE].fetch_add(unique, Relaxed);
        s[DUPLICATES].fetch_add(dup, Relaxed);
        s[REORDERED].fetch_add(reordered, Relaxed);
        s[UNNUMBERED].fetch_add(unnumbered, Relaxed);
        s[MAX_REORDER].store(max_reorder, Relaxed);
        s[MAX_SEQ].store(self.high, Relaxed);
    }

    fn handlers(&self) -> Vec<Handler> {
        let read = |name: &str, i: usize| {
            let s = self.stats.clone();
            Handler::read_only(name, move || s[i].load(Relaxed).to_string())
        };
        let s = self.stats.clone();
        vec![
            read("count", COUNT),
            read("unique", UNIQUE),
            read("duplicates", DUPLICATES),
            read("max_seq", MAX_SEQ).merged(Merge::Max),
            Handler::read_only("missing", move || {
                (s[MAX_SEQ].load(Relaxed).saturating_sub(s[UNIQUE].load(Relaxed))).to_string()
            }),
            read("reordered", REORDERED),
            read("max_reorder", MAX_REORDER).merged(Merge::Max),
            read("unnumbered", UNNUMBERED),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Annotations, Packet};

    #[test]
    fn counts_duplicates_gaps_and_reordering() {
        let mut args = Args::parse_str("c :: SeqCheck", "");
        let mut e = SeqCheck::make(&mut args).unwrap();
        let mut b = Batch::new();
        for seq in [1, 2, 4, 3, 4, 0, 9] {
            let mut p = Packet::from_data(&[0]);
            p.anno = Annotations {
                seq,
                ..Default::default()
            };
            b.push(p);
        }
        e.simple_action(&mut b);
        let h = e.handlers();
        let get = |n: &str| (h.iter().find(|x| x.name == n).unwrap().read.as_ref().unwrap())();
        assert_eq!(get("count"), "7");
        assert_eq!(get("unique"), "5");
        assert_eq!(get("duplicates"), "1");
        assert_eq!(get("max_seq"), "9");
        assert_eq!(get("missing"), "4");
        assert_eq!(get("reordered"), "1");
        assert_eq!(get("max_reorder"), "1");
        assert_eq!(get("unnumbered"), "1");
    }
}
