//! NATS: the client protocol codec ([`codec`]), the session machine
//! ([`session`]), how an event is written as MSG/HMSG ([`deliver`]) with
//! the pieces of its frame built once for all its subscriptions
//! ([`frame`]), the subject rules and mapping to internal topics ([`subject`]), and
//! a PUB's event built in one pass ([`publish`]).
//!
//! Owns: NATS formats and rules. Must not touch: sockets, shards. The
//! connection driver (`shard::driver`) runs the machine; its glue to the
//! router is `shard::driver_nats`.

pub mod codec;
pub mod deliver;
pub mod frame;
pub mod publish;
pub mod session;
// The subject rules live beside the topic rules (`topic::subject`), so that
// `security` reads rules in the NATS dialect without depending on `nats`.
pub use crate::topic::subject;
