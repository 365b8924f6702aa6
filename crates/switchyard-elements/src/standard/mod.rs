//! Click's standard elements: sources, sinks, queues, switches, tees,
//! counters and the generic classifier (Click's `elements/standard`).

pub mod classifier;
pub mod counter;
pub mod delay_unqueue;
pub mod discard;
pub mod flow_hash;
pub mod idle;
pub mod infinite_source;
pub mod input_switch;
pub mod paint;
pub mod paint_switch;
pub mod print;
pub mod queue;
pub mod rated_source;
pub mod source;
pub mod static_switch;
pub mod store_data;
pub mod switch;
pub mod tee;
pub mod unqueue;
