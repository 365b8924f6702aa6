//! Click's standard elements: sources, sinks, queues, switches, tees,
//! counters and the generic classifier (Click's `elements/standard`).

pub mod classification;
pub mod classifier;
pub mod copies;
pub mod counter;
pub mod delay_unqueue;
pub mod discard;
pub mod flow_hash;
pub mod hash_switch;
pub mod idle;
pub mod infinite_source;
pub mod input_switch;
pub mod paint;
pub mod paint_switch;
pub mod paint_tee;
pub mod print;
pub mod queue;
pub mod random_switch;
pub mod rated_source;
pub mod round_robin_switch;
pub mod scatter;
pub mod script;
pub mod script_expr;
mod script_program;
pub mod source;
pub mod static_switch;
pub mod store_data;
pub mod stride_switch;
pub mod strip;
pub mod switch;
pub mod tee;
pub mod unqueue;
pub mod unstrip;
