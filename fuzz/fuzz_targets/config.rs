//! The configuration language end to end (parse, flatten, check, render
//! every error) on arbitrary text, without starting a router: never
//! panics, never overflows a stack, never runs away. Limits tighter than
//! the defaults keep each execution short, and are themselves fuzzed: a
//! text past one must get an error, not an allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn registry() -> &'static switchyard_core::Registry {
    static R: OnceLock<switchyard_core::Registry> = OnceLock::new();
    R.get_or_init(|| {
        // Devices and dumps are left out: checking them touches the
        // system (interfaces, files), which is not the parser's business.
        switchyard_elements::standard()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let limits = switchyard_core::Limits {
        elements: 2_000,
        config_bytes: 256 << 10,
        ports: 256,
        chain: 2_000,
        ..Default::default()
    };
    // Errors render with carets under multi-byte text: that must not
    // panic either. Odd-length inputs take the reload path, which renders
    // errors in other files by location only.
    if text.len() % 2 == 0 {
        let _ = switchyard_core::load_text_limited("fuzz.click", &text, registry(), &[], &limits);
    } else {
        let _ = switchyard_core::load_text_for_client("<hotconfig>", &text, registry(), &[], &limits);
    }
});
