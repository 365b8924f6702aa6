//! The configuration language end to end (parse, flatten, check) on
//! arbitrary text: never panics; errors always render.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let registry = switchyard_elements::standard();
    let _ = switchyard_core::load_text("fuzz.click", &text, &registry, &[]);
});
