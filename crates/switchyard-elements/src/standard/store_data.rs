use switchyard_core::{documented, Args, Batch, Data, Element, ElementClass};

documented! {
    /// Overwrites packet bytes at an offset: the simplest "new release"
    /// that changes what leaves the router (a rewritten field).
    ///
    /// Only the bytes that fit are written: a packet shorter than OFFSET
    /// passes unchanged. A packet shared with another branch (Tee) is
    /// copied first, so the other branch is not affected.
    ///
    /// # Ports
    /// One input, one output; agnostic.
    ///
    /// # Arguments
    /// - `OFFSET` (positional, mandatory): byte offset.
    /// - `DATA` (positional, mandatory): the bytes, e.g. `\<40>`.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// hub[1] -> StoreData(22, \<05>) -> [1]sel;  // TTL 5 on the new branch
    /// ```
    pub struct StoreData {
        offset: usize,
        data: Vec<u8>,
    }
}

impl StoreData {
    pub const CLASS: ElementClass = ElementClass {
        name: "StoreData",
        ports: "1/1",
        processing: "a/a",
        doc: StoreData::DOC,
        factory: StoreData::make,
    };

    fn make(args: &mut Args) -> Option<Box<dyn Element>> {
        let offset = args.read_mp::<usize>("OFFSET")?;
        let Data(data) = args.read_mp::<Data>("DATA")?;
        Some(Box::new(StoreData { offset, data }))
    }
}

impl Element for StoreData {
    fn simple_action(&mut self, batch: &mut Batch) {
        for p in batch.packets_mut() {
            if p.len() <= self.offset {
                continue;
            }
            let n = self.data.len().min(p.len() - self.offset);
            p.data_mut()[self.offset..self.offset + n].copy_from_slice(&self.data[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::Packet;

    #[test]
    fn writes_what_fits_and_copies_shared_packets() {
        let mut args = Args::parse_str("s :: StoreData", "2, \\<aa bb cc>");
        let mut e = StoreData::make(&mut args).unwrap();
        let original = Packet::from_data(&[0, 1, 2, 3]);
        let mut b = Batch::new();
        b.push(original.clone());
        b.push(Packet::from_data(&[9]));
        e.simple_action(&mut b);
        assert_eq!(b.packets()[0].data(), &[0, 1, 0xaa, 0xbb]);
        assert_eq!(b.packets()[1].data(), &[9]);
        assert_eq!(original.data(), &[0, 1, 2, 3], "the other branch's copy is untouched");
    }
}
