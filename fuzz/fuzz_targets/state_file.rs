//! The state file and journal loaders on arbitrary text: a bad file is an
//! error (never a panic, never a generation beyond the maximum), replay
//! never lowers the floor, and what loads renders and loads back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchyard_control::state::{parse_state, render_state, replay_journal, MAX_GENERATION};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (file, journal) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let Ok(mut state) = parse_state(file) else { return };
    let floor = state.floor;
    let _ = replay_journal(journal, &mut state);
    assert!(state.floor >= floor && state.floor <= MAX_GENERATION);
    for saved in state.handlers.values() {
        assert!(saved.generation <= state.floor);
    }
    assert_eq!(parse_state(&render_state(&state)).expect("round trip"), state);
});
