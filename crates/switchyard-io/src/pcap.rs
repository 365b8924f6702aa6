//! Classic pcap files (the format tcpdump and Wireshark read and write):
//! a 24-byte file header, then a 16-byte header per record.
//!
//! Written here rather than taken from a crate because the reader must
//! report the byte offset of a truncated or corrupt record and carry on
//! with what came before, and the whole format is two fixed headers.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Link type Ethernet (DLT_EN10MB).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IPv4/IPv6 packets, no link header (Click's ENCAP IP).
pub const LINKTYPE_RAW: u32 = 101;
const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Records larger than this are corrupt, not packets.
const MAX_RECORD: u32 = 256 * 1024;

/// A pcap record: capture time and the captured bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub timestamp_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// A problem in a file, with where it is.
#[derive(Debug)]
pub struct PcapError {
    pub path: PathBuf,
    pub offset: u64,
    pub message: String,
}

impl std::fmt::Display for PcapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} at byte offset {}",
            self.path.display(),
            self.message,
            self.offset
        )
    }
}

impl std::error::Error for PcapError {}

pub struct Reader {
    input: BufReader<Box<dyn Read + Send>>,
    path: PathBuf,
    offset: u64,
    swapped: bool,
    nanos: bool,
    pub snaplen: u32,
    pub linktype: u32,
}

impl Reader {
    /// Opens a file and checks its header.
    pub fn open(path: &Path) -> Result<Reader, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Reader::from_reader(path, Box::new(file))
    }

    /// Reads a capture from any byte stream (`path` names it in errors):
    /// for tests and the fuzzer, without a file.
    pub fn from_reader(path: &Path, input: Box<dyn Read + Send>) -> Result<Reader, String> {
        let mut input = BufReader::with_capacity(1 << 16, input);
        let mut h = [0u8; 24];
        input
            .read_exact(&mut h)
            .map_err(|_| format!("{}: not a pcap file (shorter than its 24-byte header)", path.display()))?;
        let le = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let (swapped, nanos) = match le {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            m if m.swap_bytes() == MAGIC_US => (true, false),
            m if m.swap_bytes() == MAGIC_NS => (true, true),
            m => return Err(format!("{}: not a pcap file (magic 0x{m:08x})", path.display())),
        };
        let word = |b: &[u8]| {
            let v = u32::from_le_bytes(b.try_into().expect("4 bytes"));
            if swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        Ok(Reader {
            input,
            path: path.to_path_buf(),
            offset: 24,
            swapped,
            nanos,
            snaplen: word(&h[16..20]),
            linktype: word(&h[20..24]),
        })
    }

    fn word(&self, b: &[u8]) -> u32 {
        let v = u32::from_le_bytes(b.try_into().expect("4 bytes"));
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    fn error(&self, offset: u64, message: impl Into<String>) -> PcapError {
        PcapError {
            path: self.path.clone(),
            offset,
            message: message.into(),
        }
    }

    /// The next record; `Ok(None)` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, PcapError> {
        let start = self.offset;
        let mut h = [0u8; 16];
        let got = read_full(&mut self.input, &mut h).map_err(|e| self.error(start, e.to_string()))?;
        if got == 0 {
            return Ok(None);
        }
        if got < 16 {
            return Err(self.error(start, format!("truncated record header ({got} of 16 bytes)")));
        }
        let (sec, frac, incl, orig) = (
            self.word(&h[0..4]),
            self.word(&h[4..8]),
            self.word(&h[8..12]),
            self.word(&h[12..16]),
        );
        if incl > MAX_RECORD {
            return Err(self.error(start, format!("corrupt record: captured length {incl}")));
        }
        let mut data = vec![0u8; incl as usize];
        let got = read_full(&mut self.input, &mut data).map_err(|e| self.error(start, e.to_string()))?;
        if got < data.len() {
            return Err(self.error(start, format!("truncated record ({got} of {incl} bytes)")));
        }
        self.offset += 16 + u64::from(incl);
        let ns = if self.nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        Ok(Some(Record {
            timestamp_ns: u64::from(sec) * 1_000_000_000 + ns,
            orig_len: orig,
            data,
        }))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub struct Writer {
    out: BufWriter<File>,
    snaplen: u32,
}

impl Writer {
    /// Creates (truncates) a microsecond-resolution pcap file of
    /// `linktype` frames.
    pub fn create(path: &Path, snaplen: u32, linktype: u32) -> io::Result<Writer> {
        let file = File::create(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_US.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&linktype.to_le_bytes());
        out.write_all(&h)?;
        Ok(Writer { out, snaplen })
    }

    pub fn write(&mut self, timestamp_ns: u64, data: &[u8]) -> io::Result<()> {
        let incl = data.len().min(self.snaplen as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((timestamp_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((timestamp_ns % 1_000_000_000 / 1000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&data[..incl])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sy-pcap-{}-{name}", std::process::id()))
    }

    #[test]
    fn write_then_read_back() {
        let p = tmp("rt.pcap");
        let mut w = Writer::create(&p, 65535, LINKTYPE_ETHERNET).unwrap();
        w.write(1_700_000_000_123_456_000, &[1, 2, 3]).unwrap();
        w.write(1_700_000_001_000_000_000, &[9; 60]).unwrap();
        w.flush().unwrap();
        drop(w);
        let mut r = Reader::open(&p).unwrap();
        assert_eq!(r.linktype, LINKTYPE_ETHERNET);
        let a = r.next_record().unwrap().unwrap();
        assert_eq!(
            (a.timestamp_ns, a.data.as_slice()),
            (1_700_000_000_123_456_000, &[1u8, 2, 3][..])
        );
        assert_eq!(r.next_record().unwrap().unwrap().data.len(), 60);
        assert!(r.next_record().unwrap().is_none());
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn truncation_is_reported_with_its_offset() {
        let p = tmp("trunc.pcap");
        let mut w = Writer::create(&p, 65535, LINKTYPE_ETHERNET).unwrap();
        w.write(0, &[1; 10]).unwrap();
        w.write(0, &[2; 10]).unwrap();
        w.flush().unwrap();
        drop(w);
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 4).unwrap();
        let mut r = Reader::open(&p).unwrap();
        assert_eq!(r.next_record().unwrap().unwrap().data, vec![1; 10]);
        let e = r.next_record().unwrap_err();
        assert_eq!(e.offset, 24 + 16 + 10);
        assert!(
            e.to_string()
                .ends_with("truncated record (6 of 10 bytes) at byte offset 50"),
            "{e}"
        );
        std::fs::write(&p, b"hello").unwrap();
        assert!(Reader::open(&p).err().unwrap().contains("not a pcap file"));
        std::fs::remove_file(p).unwrap();
    }
}
