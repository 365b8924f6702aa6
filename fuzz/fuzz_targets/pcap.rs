//! The pcap reader on arbitrary bytes: a header and records of any
//! lengths, either byte order, microsecond or nanosecond stamps. Never
//! panics; every record it returns is within the captured length it read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input: Box<dyn std::io::Read + Send> = Box::new(std::io::Cursor::new(data.to_vec()));
    let Ok(mut reader) = switchyard_io::pcap::Reader::from_reader(std::path::Path::new("fuzz.pcap"), input) else {
        return;
    };
    let mut total = 0usize;
    while let Ok(Some(record)) = reader.next_record() {
        total += record.data.len();
        assert!(total <= data.len(), "records longer than the input");
    }
});
