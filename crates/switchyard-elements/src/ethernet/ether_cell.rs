//! An Ethernet address that a handler may change while the data path
//! reads it: six bytes packed in one atomic, so a reader never sees half
//! an old address and half a new one. Shared by the elements that write
//! or compare a configured address (EtherEncap, EtherRewrite,
//! HostEtherFilter).

use crate::wire::EtherAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use switchyard_core::Handler;

pub struct EtherCell(AtomicU64);

impl EtherCell {
    pub fn new(a: EtherAddr) -> Arc<EtherCell> {
        Arc::new(EtherCell(AtomicU64::new(pack(a))))
    }

    #[inline]
    pub fn get(&self) -> EtherAddr {
        let b = self.0.load(Relaxed).to_be_bytes();
        EtherAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    pub fn set(&self, a: EtherAddr) {
        self.0.store(pack(a), Relaxed);
    }

    /// A read/write handler: reads as Click prints an address
    /// (`00-1A-2B-3C-4D-5E`), accepts the colon or dash form.
    pub fn handler(self: &Arc<Self>, name: &str) -> Handler {
        let (r, w) = (self.clone(), self.clone());
        Handler::read_write(
            name,
            move || r.get().unparse(),
            move |v| {
                let a = EtherAddr::parse(v.trim())
                    .ok_or_else(|| format!("expected Ethernet address, found '{}'", v.trim()))?;
                w.set(a);
                Ok(())
            },
        )
    }
}

fn pack(EtherAddr(a): EtherAddr) -> u64 {
    u64::from_be_bytes([0, 0, a[0], a[1], a[2], a[3], a[4], a[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_like_click() {
        let c = EtherCell::new(EtherAddr::parse("00:1a:2b:3c:4d:5e").unwrap());
        assert_eq!(c.get(), EtherAddr([0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]));
        let h = c.handler("src");
        assert_eq!((h.read.as_ref().unwrap())(), "00-1A-2B-3C-4D-5E");
        (h.write.as_ref().unwrap())("ff-ff-ff-ff-ff-fe").unwrap();
        assert_eq!(c.get(), EtherAddr([0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]));
        assert!((h.write.as_ref().unwrap())("1:2:3").is_err());
    }
}
