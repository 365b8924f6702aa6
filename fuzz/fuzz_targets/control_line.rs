//! The control protocol's line parser on arbitrary bytes: never panics,
//! and every error reply encodes to well-formed reply lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard_control::protocol::{parse_line, parse_reply_line};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Err(reply) = parse_line(&line) {
        let wire = String::from_utf8(reply.encode()).expect("replies are UTF-8");
        for l in wire.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(parse_reply_line(l).is_some(), "malformed reply line {l:?}");
        }
    }
});
