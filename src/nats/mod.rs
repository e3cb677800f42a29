//! NATS: the client protocol codec ([`codec`]) and the subject rules and
//! mapping to internal topics ([`subject`]).
//!
//! Owns: NATS formats and naming rules. Must not touch: sockets, shards.
//! The connection loop lives in `shard::nats_conn`.

pub mod codec;
pub mod subject;
