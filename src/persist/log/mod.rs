//! The per-shard durable log: an append-only sequence of CRC-checked
//! records in segment files, written by one task on the shard's own
//! executor through io_uring, read back at start-up.
//!
//! On disk: `<dir>/gen-<N>/shard-<n>/<20-digit seq>.log` (the generation:
//! `persist::start`); a run never appends to a
//! segment an earlier run wrote (each `Log::open` starts a new one), and a
//! segment is closed past `persistence.segment_bytes`. A record is framed
//! `u32 len | u32 crc32c | u8 kind | body`, little endian, `len` and the
//! CRC covering `kind + body` ([`frame`]). Kinds 0..=3 are the log's own:
//! `SNAP_BEGIN` (0) first in a segment and `SNAP_END` (1) later in it make
//! that segment a complete snapshot, which supersedes every older segment;
//! callers use kinds >= 16.
//!
//! Sync policies (`persistence.sync`), i.e. when `durable()` covers a
//! position:
//! - `always`: written and fdatasync'ed; one fdatasync covers every record
//!   appended before it (group commit), the writer loops write → fdatasync
//!   as fast as the disk allows;
//! - `batch`: fdatasync at most every `sync_interval_us`, or once
//!   `sync_bytes` were written since the last one; durable after the
//!   fdatasync that covers it;
//! - `none`: durable once written to the kernel (survives `kill -9`, not a
//!   power loss); no fdatasync.
//!
//! Start-up ([`read`], std::fs, before the executors run): from the last
//! complete snapshot on (or the first segment); a torn tail (a short frame,
//! a length of 0, over 64 MiB or past the end of the file) ends its
//! segment and is truncated away; a frame with a plausible length and a
//! bad CRC is skipped and counted.
//!
//! Files: [`frame`] framing and CRC, [`read`] start-up reading,
//! [`write`] the runtime writer (glommio) and `wait.rs` its durability
//! waiters, [`snapshot`] offline snapshots
//! and removal of superseded segments (std::fs).

pub mod frame;
pub mod read;
pub mod snapshot;
pub mod stats;
mod wait;
pub mod write;

pub use read::{read_shard, shard_dirs, Replay};
pub use snapshot::{remove_before, remove_shard_dir, write_snapshot};
pub use write::{Log, LogError};

#[cfg(test)]
mod tests;
