//! The rollback family: canaries, the shadow comparison, sequence checks
//! and the automatic gate, which work with the hub and the selector.

pub mod canary_switch;
pub mod seq_check;
pub mod shadow_compare;
pub mod watchdog;
