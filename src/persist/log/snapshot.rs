//! Offline snapshots (std::fs, outside the executors): a whole shard's
//! state written as one new segment `SNAP_BEGIN, records.., SNAP_END`,
//! made durable (file and directory fdatasync'ed) before it returns, and
//! the removal of what it supersedes.
//!
//! Owns: writing a snapshot segment and deleting superseded segments or a
//! whole shard directory (used when the shard count changed: the lead
//! writes every new shard's snapshot, then removes the old ones). Must not
//! touch: the runtime writer (`write.rs` compacts on its own shard).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::frame::{self, RECORD_BYTES_MAX, SNAP_BEGIN, SNAP_END};
use super::read::{list_segments, segment_path};

/// Writes `records` as a snapshot in a new segment of `shard_dir` (created
/// if missing) and returns the segment's sequence number. Once this
/// returns, a read of the directory starts at this segment.
pub fn write_snapshot(
    shard_dir: &Path,
    records: impl Iterator<Item = (u8, Vec<u8>)>,
) -> io::Result<u64> {
    fs::create_dir_all(shard_dir)?;
    let seq = list_segments(shard_dir)?.last().map_or(1, |(s, _)| s + 1);
    let path = segment_path(shard_dir, seq);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let mut out = io::BufWriter::with_capacity(1 << 20, &file);
    let mut frame_buf = Vec::with_capacity(4096);
    frame::encode(SNAP_BEGIN, &[], &mut frame_buf);
    for (kind, body) in records {
        if body.len() as u64 >= RECORD_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot record of {} bytes: over the record maximum",
                    body.len()
                ),
            ));
        }
        frame::encode(kind, &body, &mut frame_buf);
        if frame_buf.len() >= 1 << 16 {
            out.write_all(&frame_buf)?;
            frame_buf.clear();
        }
    }
    frame::encode(SNAP_END, &[], &mut frame_buf);
    out.write_all(&frame_buf)?;
    out.flush()?;
    drop(out);
    file.sync_data()?;
    sync_dir(shard_dir)?;
    Ok(seq)
}

/// Removes the segments of `shard_dir` numbered below `seq` (superseded by
/// the snapshot in `seq`); returns how many.
pub fn remove_before(shard_dir: &Path, seq: u64) -> io::Result<usize> {
    let mut removed = 0;
    for (s, path) in list_segments(shard_dir)? {
        if s < seq {
            fs::remove_file(path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(shard_dir)?;
    }
    Ok(removed)
}

/// Removes a shard directory and everything in it.
pub fn remove_shard_dir(path: &Path) -> io::Result<()> {
    fs::remove_dir_all(path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Makes a directory's entries (created or removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
