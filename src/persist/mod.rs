//! Persistence (issue 13): the per-shard durable log and what it holds.
pub mod records;
pub mod recover;
pub mod log;
