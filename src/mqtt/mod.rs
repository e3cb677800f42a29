//! MQTT: the sans-IO codec ([`codec`]) and the per-connection protocol state
//! machine ([`session`]).
//!
//! Owns: packet formats and the MQTT 3.1.1 rules a session enforces. Must
//! not touch: sockets, executors, other shards. The shard's connection loop
//! feeds bytes in and carries the resulting actions out.

pub mod codec;
pub mod deliver;
pub mod outbound;
pub mod v5;
