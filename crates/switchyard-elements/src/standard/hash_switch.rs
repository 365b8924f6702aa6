use super::scatter::Scatter;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass};

documented! {
    /// Sends each packet to an output chosen by a hash of LENGTH bytes at
    /// OFFSET (Click's HashSwitch): packets with equal bytes there always
    /// take the same output. `HashSwitch(16, 4)` on IP packets splits by
    /// destination address. A packet too short to hold the bytes goes to
    /// output 0, as in Click.
    ///
    /// The hash is Click's, so a packet takes the same output number as
    /// under Click: the bytes' sum, folded by `sum ^ (sum >> 4)` for 2, 4
    /// or 8 outputs and taken modulo the output count otherwise. It is a
    /// weak hash (addresses that differ by a permutation of their bytes
    /// collide); FlowHash with CanarySwitch spreads flows better.
    ///
    /// # Ports
    /// One input, one or more outputs; push.
    ///
    /// # Arguments
    /// - `OFFSET` (positional, mandatory): where the hashed bytes start.
    /// - `LENGTH` (positional, mandatory): how many bytes, at least 1.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// hs :: HashSwitch(16, 4); hs[0] -> q0; hs[1] -> q1;
    /// ```
    pub struct HashSwitch {
        offset: usize,
        length: usize,
        scatter: Scatter,
    }
}

impl HashSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "HashSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: HashSwitch::DOC,
        factory: HashSwitch::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let offset = args.read_mp::<usize>("OFFSET");
        let length = args.read_mp::<usize>("LENGTH");
        let (offset, length) = (offset?, length?);
        if length == 0 {
            args.error(Some(args.span_of("LENGTH")), "LENGTH must be > 0");
            return None;
        }
        Some(Box::new(HashSwitch {
            offset,
            length,
            scatter: Scatter::new(),
        }))
    }
}

/// The output for `data` among `n` outputs.
fn choose(data: &[u8], offset: usize, length: usize, n: usize) -> usize {
    let Some(bytes) = offset.checked_add(length).and_then(|end| data.get(offset..end)) else {
        return 0;
    };
    let sum = bytes.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b))) as usize;
    match n {
        2 | 4 | 8 => (sum ^ (sum >> 4)) & (n - 1),
        _ => sum % n.max(1),
    }
}

impl Element for HashSwitch {
    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        let n = cx.noutputs();
        let (offset, length) = (self.offset, self.length);
        self.scatter.send(batch, cx, |p| choose(p.data(), offset, length, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet};

    fn harness(config: &str, outputs: usize) -> Harness {
        let mut args = Args::parse_str("hs :: HashSwitch", config);
        let e = HashSwitch::make(&mut args).unwrap();
        args.complete().unwrap();
        Harness::new(e, 1, outputs)
    }

    fn to_dst(last: u8) -> Packet {
        Packet::from_data(&crate::wire::tests::ipv4_packet(
            [10, 0, 0, 1],
            [10, 1, 2, last],
            17,
            64,
            8,
        ))
    }

    #[test]
    fn same_bytes_same_output_and_click_values() {
        // 10.1.2.x sums to 13 + x.
        assert_eq!(choose(&[10, 1, 2, 3], 0, 4, 3), 16 % 3);
        assert_eq!(choose(&[10, 1, 2, 3], 0, 4, 4), (16 ^ 1) & 3);
        let mut h = harness("16, 4", 3);
        for round in 0..2 {
            let mut b = Batch::new();
            for last in 0..30 {
                b.push(to_dst(last));
            }
            h.push(0, b);
            for o in 0..3 {
                for b in h.take(o) {
                    for p in b.iter() {
                        let sum: usize = p.data()[16..20].iter().map(|&x| x as usize).sum();
                        assert_eq!(sum % 3, o, "round {round}");
                    }
                }
            }
        }
    }

    #[test]
    fn destinations_spread_over_outputs() {
        for outputs in [2, 3, 4, 5, 8] {
            let mut h = harness("OFFSET 16, LENGTH 4", outputs);
            let mut b = Batch::new();
            for last in 0..=255 {
                b.push(to_dst(last));
            }
            h.push(0, b);
            let counts: Vec<usize> = (0..outputs).map(|o| h.count(o)).collect();
            assert_eq!(counts.iter().sum::<usize>(), 256);
            let fair = 256 / outputs;
            for c in &counts {
                assert!(c.abs_diff(fair) <= fair / 4 + 1, "{outputs} outputs: {counts:?}");
            }
        }
    }

    #[test]
    fn short_packets_go_to_output_0() {
        let mut h = harness("16, 4", 4);
        let mut b = Batch::new();
        b.push(Packet::from_data(&[0xff; 19]));
        b.push(Packet::from_data(&[]));
        h.push(0, b);
        assert_eq!(h.count(0), 2);
        assert_eq!(choose(&[1, 2], usize::MAX, 4, 4), 0);
    }

    #[test]
    fn zero_length_is_refused() {
        let mut args = Args::parse_str("hs :: HashSwitch", "16, 0");
        assert!(HashSwitch::make(&mut args).is_none());
        assert!(args.complete().unwrap_err()[0].message.contains("LENGTH must be > 0"));
    }
}
