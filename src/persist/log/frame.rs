//! Record framing: `u32 len | u32 crc32c | u8 kind | body`, little endian,
//! where `len` counts `kind + body` and the CRC covers the same bytes.
//!
//! Owns: encoding into a caller's buffer and a borrowing decoder that
//! tells a whole record, a bad checksum (skip `len` and go on) and a torn
//! tail (stop: the rest of the file is not a record) apart. No IO. The
//! writer's hot path is [`encode`]: no allocation, one CRC pass over the
//! body (bench: `cargo bench --bench persist`).

pub use crate::config::RECORD_BYTES_MAX;

/// Bytes before the kind: `len` and `crc`.
pub const HEADER_BYTES: usize = 8;

/// Kinds 0..=3 belong to the log; callers' records use kinds >= 16.
pub const SNAP_BEGIN: u8 = 0;
pub const SNAP_END: u8 = 1;
/// Kinds below this are the log's own and never reach a replay.
pub const KIND_RESERVED_BELOW: u8 = 4;

/// Bytes a record of `body_len` takes on disk.
pub fn frame_bytes(body_len: usize) -> usize {
    HEADER_BYTES + 1 + body_len
}

/// Appends one framed record to `out`. The body must be shorter than
/// [`RECORD_BYTES_MAX`] (the caller checks; a longer one is a bug).
pub fn encode(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    debug_assert!((body.len() as u64) < RECORD_BYTES_MAX);
    let len = 1 + body.len() as u32;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), body);
    out.reserve(frame_bytes(body.len()));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record whose checksum matches; `bytes` = frame length.
    Record {
        kind: u8,
        body: &'a [u8],
        bytes: usize,
    },
    /// A frame of plausible length whose checksum does not match: skip
    /// `bytes` and go on.
    BadCrc { bytes: usize },
    /// Not a whole record: a short header, a length of zero, past
    /// [`RECORD_BYTES_MAX`] or past the end of the buffer. At a file's
    /// end this is a torn write: everything from here is dropped.
    Torn,
    /// The buffer is empty: a clean end.
    End,
}

/// Decodes the frame at the start of `buf` (the rest of a segment file).
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.is_empty() {
        return Decoded::End;
    }
    if buf.len() < HEADER_BYTES + 1 {
        return Decoded::Torn;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as u64;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    // A zero length is what a file extended but never written reads as
    // (zeros after a power loss): not a record.
    if len == 0 || len > RECORD_BYTES_MAX || len > (buf.len() - HEADER_BYTES) as u64 {
        return Decoded::Torn;
    }
    let bytes = HEADER_BYTES + len as usize;
    let payload = &buf[HEADER_BYTES..bytes];
    if crc32c::crc32c(payload) != crc {
        return Decoded::BadCrc { bytes };
    }
    Decoded::Record {
        kind: payload[0],
        body: &payload[1..],
        bytes,
    }
}
