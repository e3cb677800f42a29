//! The log's statistics, shared with the admin thread (atomics, one
//! histogram): each shard's log updates its own, the admin endpoint
//! renders them as `weft_persist_*`. Here, not in `shard::stats`, so that
//! `persist` depends on no other folder of weft but `config` and `event`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The durable log's numbers for one shard (`crate::persist::log`): the
/// shard's writer task stores them as it goes (one thread writes, any
/// reads; per write batch or fsync, never per record except the appended
/// count), the admin endpoint renders them as `weft_persist_*`.
#[derive(Debug)]
pub struct PersistStats {
    /// True once the shard opened its log (persistence on).
    pub on: std::sync::atomic::AtomicBool,
    /// Bytes of the shard's segment files on disk.
    pub bytes: AtomicU64,
    /// Segment files of the shard.
    pub segments: AtomicU64,
    pub appended_records: AtomicU64,
    /// Write or fdatasync failures (ENOSPC, EIO), each retry counted.
    pub errors: AtomicU64,
    pub bad_crc: AtomicU64,
    pub torn_tails: AtomicU64,
    /// Start-up replay, set by whoever replays the log.
    pub recovery_ns: AtomicU64,
    pub replayed_records: AtomicU64,
    /// fdatasync latency, in ns, since start.
    pub fsync: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for PersistStats {
    fn default() -> Self {
        PersistStats {
            on: std::sync::atomic::AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            appended_records: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bad_crc: AtomicU64::new(0),
            torn_tails: AtomicU64::new(0),
            recovery_ns: AtomicU64::new(0),
            replayed_records: AtomicU64::new(0),
            fsync: std::sync::Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3)
                    .expect("valid bounds"),
            ),
        }
    }
}

impl PersistStats {
    /// Adds one to a counter (single writer: a load and a store, no
    /// read-modify-write bus lock).
    pub fn bump(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// What the start-up replay found and cost (the lead's recovery sets it).
    pub fn set_recovery(
        &self,
        took: std::time::Duration,
        replayed_records: u64,
        bad_crc: u64,
        torn_tails: u64,
    ) {
        self.on.store(true, Ordering::Relaxed);
        self.recovery_ns
            .store(took.as_nanos() as u64, Ordering::Relaxed);
        self.replayed_records
            .store(replayed_records, Ordering::Relaxed);
        Self::bump(&self.bad_crc, bad_crc);
        Self::bump(&self.torn_tails, torn_tails);
    }

    pub fn record_fsync(&self, took: std::time::Duration) {
        if let Ok(mut h) = self.fsync.lock() {
            let _ = h.record((took.as_nanos() as u64).max(1));
        }
    }
}
