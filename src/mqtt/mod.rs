//! MQTT: the sans-IO codecs ([`codec`] for 3.1 and 3.1.1, [`v5`] for 5)
//! and the per-connection protocol state machine ([`session`]) shared by
//! every version.
//!
//! Owns: packet formats and the MQTT rules a session enforces. Must not
//! touch: sockets, executors, other shards. The shard's connection driver
//! feeds bytes in and carries the resulting actions out.

pub mod codec;
pub mod deliver;
pub mod outbound;
pub mod session;
pub mod v5;
