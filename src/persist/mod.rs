//! Durability: what the router keeps on disk so that an acknowledged event,
//! a retained message or a persistent session survives `kill -9` (and a
//! power loss, under the sync policy the operator chose).
//!
//! Owns: the per-shard durable log ([`log`]: framing, segment files, the
//! runtime writer with its sync policies, start-up reading, snapshots).
//! Must not touch: sockets, other shards' logs (each shard owns its
//! directory `<persistence.dir>/gen-<N>/shard-<n>/`; nothing is shared between
//! threads but the metrics). What a record means is the callers' concern:
//! to the log a record is `(kind, body)`. That meaning is [`records`] (the
//! record vocabulary), [`recover`] (records folded into state, sans-IO)
//! and [`start`] (the start-up generations and the dealing of recovered
//! state to this run's shards); what each shard writes is
//! `shard::ctx::persist` and the mailbox's journal.

pub mod log;
pub mod records;
pub mod recover;
pub mod start;

pub use log::{
    read_shard, remove_before, remove_shard_dir, shard_dirs, write_snapshot, Log, LogError, Replay,
};
