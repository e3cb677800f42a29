//! Start-up reading of a shard's log (std::fs, before the executors run):
//! which segments still matter, their records in order, and the repair of
//! a torn tail.
//!
//! Owns: segment naming and listing, snapshot selection, torn-tail
//! truncation, bad-CRC skipping. Must not touch: what a record means (the
//! caller replays `(kind, body)` pairs).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::frame::{self, Decoded, KIND_RESERVED_BELOW, SNAP_BEGIN, SNAP_END};

/// What a shard's log holds, in append order.
#[derive(Debug, Default)]
pub struct Replay {
    /// The callers' records (kinds >= 4), oldest first.
    pub records: Vec<(u8, Vec<u8>)>,
    /// Segments whose torn tail was truncated.
    pub torn_truncated: u64,
    /// Records skipped for a bad checksum.
    pub bad_crc_skipped: u64,
    /// Bytes of the segments read.
    pub bytes: u64,
    /// Segments read.
    pub segments: usize,
    /// Bytes dropped by the truncations.
    pub torn_bytes: u64,
}

/// `<20-digit seq>.log`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

pub fn segment_path(shard_dir: &Path, seq: u64) -> PathBuf {
    shard_dir.join(segment_name(seq))
}

/// The segments of a shard directory, by sequence number (files that are
/// not segments are left alone).
pub fn list_segments(shard_dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(shard_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name.strip_suffix(".log") else {
            continue;
        };
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(seq) = digits.parse() {
            out.push((seq, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// `<dir>/shard-<n>` folders, by shard number.
pub fn shard_dirs(dir: &Path) -> io::Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("shard-")) else {
            continue;
        };
        if let (Ok(n), true) = (n.parse(), entry.file_type()?.is_dir()) {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// One segment's records after repair.
struct Segment {
    records: Vec<(u8, Vec<u8>)>,
    /// Its first record is SNAP_BEGIN.
    begins_snapshot: bool,
    /// It holds a SNAP_END (after its SNAP_BEGIN).
    ends_snapshot: bool,
    bytes: u64,
    torn: bool,
    torn_bytes: u64,
    bad_crc: u64,
}

/// Reads one segment, truncating a torn tail in place.
fn read_segment(path: &Path) -> io::Result<Segment> {
    let mut data = Vec::new();
    fs::File::open(path)?.read_to_end(&mut data)?;
    let mut seg = Segment {
        records: Vec::new(),
        begins_snapshot: false,
        ends_snapshot: false,
        bytes: data.len() as u64,
        torn: false,
        torn_bytes: 0,
        bad_crc: 0,
    };
    let mut at = 0;
    let mut first = true;
    loop {
        match frame::decode(&data[at..]) {
            Decoded::End => break,
            Decoded::Record { kind, body, bytes } => {
                if first && kind == SNAP_BEGIN {
                    seg.begins_snapshot = true;
                } else if kind == SNAP_END && seg.begins_snapshot {
                    seg.ends_snapshot = true;
                } else if kind >= KIND_RESERVED_BELOW {
                    seg.records.push((kind, body.to_vec()));
                }
                at += bytes;
            }
            Decoded::BadCrc { bytes } => {
                tracing::warn!(
                    path = %path.display(),
                    offset = at,
                    bytes,
                    "log record with a bad checksum skipped"
                );
                seg.bad_crc += 1;
                at += bytes;
            }
            Decoded::Torn => {
                let dropped = data.len() - at;
                tracing::warn!(
                    path = %path.display(),
                    offset = at,
                    dropped_bytes = dropped,
                    "torn log tail truncated"
                );
                let file = fs::OpenOptions::new().write(true).open(path)?;
                file.set_len(at as u64)?;
                file.sync_data()?;
                seg.torn = true;
                seg.torn_bytes = dropped as u64;
                seg.bytes = at as u64;
                break;
            }
        }
        first = false;
    }
    Ok(seg)
}

/// Reads a shard's log: from the last segment that holds a complete
/// snapshot (SNAP_BEGIN first, SNAP_END later) on, or from the first
/// segment when none does. A later segment that begins an incomplete
/// snapshot (the writer stopped mid-compaction) is skipped: a snapshot
/// restates what the segments before it already hold.
pub fn read_shard(dir: &Path) -> io::Result<Replay> {
    let segments = list_segments(dir)?;
    let mut read: Vec<Segment> = Vec::new();
    for (_, path) in segments.iter().rev() {
        let seg = read_segment(path)?;
        let complete = seg.begins_snapshot && seg.ends_snapshot;
        read.push(seg);
        if complete {
            break;
        }
    }
    let mut replay = Replay::default();
    let start_is_snapshot = read
        .last()
        .is_some_and(|s| s.begins_snapshot && s.ends_snapshot);
    let count = read.len();
    for (i, seg) in read.into_iter().rev().enumerate() {
        replay.segments += 1;
        replay.bytes += seg.bytes;
        replay.bad_crc_skipped += seg.bad_crc;
        replay.torn_truncated += u64::from(seg.torn);
        replay.torn_bytes += seg.torn_bytes;
        let is_start_snapshot = i == 0 && start_is_snapshot;
        if seg.begins_snapshot && !is_start_snapshot {
            tracing::warn!(
                segment = i,
                of = count,
                "log segment with an incomplete snapshot skipped"
            );
            continue;
        }
        replay.records.extend(seg.records);
    }
    Ok(replay)
}
