//! The rollback family: canaries, the shadow comparison, sequence checks,
//! the automatic gate and the flow table of pinned flips, which work with
//! the hub and the selector.

pub mod canary_switch;
pub mod flow_table;
pub mod seq_check;
pub mod shadow_compare;
pub mod watchdog;
