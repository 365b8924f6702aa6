//! The state file and journal loaders on arbitrary text: a bad file is an
//! error (never a panic, never a generation beyond the maximum), and what
//! loads saves and loads back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard_control::state::{parse_state, replay_journal, MAX_GENERATION};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (file, journal) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let Ok(mut state) = parse_state(file) else { return };
    let _ = replay_journal(journal, &mut state);
    for saved in state.values() {
        assert!(saved.generation <= MAX_GENERATION);
    }
    // What loaded writes back as a file that loads to the same.
    let map: serde_json::Map<String, serde_json::Value> = state
        .iter()
        .map(|(k, s)| (k.clone(), serde_json::json!({"value": s.value, "generation": s.generation})))
        .collect();
    let again = serde_json::json!({"version": 1, "handlers": map}).to_string();
    assert_eq!(parse_state(&again).expect("round trip"), state);
});
