//! `[persistence]`: where each shard keeps its durable log, what a sync
//! policy promises, and the log's bounds (disk budget, segment size, the
//! bytes a shard may hold appended but not yet written), with defaults
//! pinned by `defaults_are_pinned`.
//!
//! Owns: the values and their checks ([`Persistence::check`], called by
//! `Config::resolve`). Must not touch: the log itself (`crate::persist`
//! reads these values; config depends on no other weft folder).

use serde::{Deserialize, Serialize};

use super::{at_least, invalid, ConfigError};

/// When a position of the log counts as durable (and so when an
/// acknowledgement that waits for it may leave).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// Written and fdatasync'ed: one fdatasync covers every record
    /// appended before it (group commit), as often as the disk allows.
    Always,
    /// fdatasync at most every `sync_interval_us`, or once `sync_bytes`
    /// were written since the last one; durable after the fdatasync that
    /// covers it.
    Batch,
    /// Durable once written to the kernel: survives `kill -9`, not a power
    /// loss; no fdatasync.
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Persistence {
    /// Directory of the log, one `shard-<n>` folder per shard; empty =
    /// persistence off (nothing written, nothing on the hot path).
    pub dir: String,
    pub sync: SyncPolicy,
    /// `batch`: longest time written records wait for their fdatasync.
    pub sync_interval_us: u64,
    /// `batch`: bytes written since the last fdatasync that start one now.
    pub sync_bytes: u64,
    /// Disk budget of the whole directory (every shard's segments); each
    /// shard gets an equal share. Past it appends fail until compaction
    /// frees room.
    pub bytes_max: u64,
    /// A segment file is closed and a new one started past this size (and
    /// past a quarter of the shard's share of `bytes_max`).
    pub segment_bytes: u64,
    /// Bytes a shard holds appended but not yet written to the kernel;
    /// past it an append fails (full) and the caller refuses the work.
    pub buffer_bytes_max: u64,
}

impl Default for Persistence {
    fn default() -> Self {
        Persistence {
            dir: String::new(),
            sync: SyncPolicy::Batch,
            sync_interval_us: 1000,
            sync_bytes: 1024 * 1024,
            bytes_max: 1024 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            buffer_bytes_max: 8 * 1024 * 1024,
        }
    }
}

/// Largest record body the log frames (a length past it reads as a torn
/// tail); `limits.packet_bytes_max` must leave room for a record's own
/// header when persistence is on.
pub const RECORD_BYTES_MAX: u64 = 64 * 1024 * 1024;

impl Persistence {
    /// True when a directory is set.
    pub fn is_on(&self) -> bool {
        !self.dir.is_empty()
    }

    /// The values one of `shards` logs runs with: its share of the disk
    /// budget (the directory's budget split evenly), the rest unchanged.
    pub fn per_shard(&self, shards: usize) -> Persistence {
        Persistence {
            bytes_max: self.bytes_max / shards.max(1) as u64,
            ..self.clone()
        }
    }

    /// Checks the section; `packet_bytes_max` is `limits.packet_bytes_max`
    /// (a record holds at most one packet's payload plus its metadata).
    pub fn check(&self, packet_bytes_max: usize) -> Result<(), ConfigError> {
        if !self.is_on() {
            return Ok(());
        }
        at_least("persistence.sync_interval_us", self.sync_interval_us, 1)?;
        at_least("persistence.sync_bytes", self.sync_bytes, 1)?;
        at_least("persistence.segment_bytes", self.segment_bytes, 4096)?;
        at_least("persistence.buffer_bytes_max", self.buffer_bytes_max, 4096)?;
        if self.segment_bytes >= self.bytes_max {
            return Err(invalid(
                "persistence.segment_bytes",
                format!(
                    "{} must be below persistence.bytes_max ({})",
                    self.segment_bytes, self.bytes_max
                ),
            ));
        }
        // Room for a record's own fields (topic, properties, stamps) past
        // the largest payload.
        let record_room = RECORD_BYTES_MAX - 64 * 1024;
        if packet_bytes_max as u64 > record_room {
            return Err(invalid(
                "limits.packet_bytes_max",
                format!(
                    "{packet_bytes_max} exceeds the {record_room} bytes a persisted record can \
                     hold (persistence.dir is set)"
                ),
            ));
        }
        Ok(())
    }
}
