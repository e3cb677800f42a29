//! The shard's pool of write buffers.
//!
//! Owns: the buffers not in use, at most [`WRITE_BUFFERS_KEPT`]; writers
//! blocked on a slow socket hold theirs, so this is the pool for the ones
//! writing right now. Touches nothing else.

use std::cell::RefCell;

/// Write buffers a shard keeps for reuse.
const WRITE_BUFFERS_KEPT: usize = 32;

#[derive(Default)]
pub(super) struct WriteBuffers {
    free: RefCell<Vec<Vec<u8>>>,
}

impl WriteBuffers {
    pub(super) fn take(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_default()
    }

    /// Keeps `buf` for reuse if the pool has room and it is of ordinary
    /// size (a batch is at most `write_batch_bytes_max` plus one packet).
    pub(super) fn give(&self, mut buf: Vec<u8>, write_batch_bytes_max: usize) {
        let mut pool = self.free.borrow_mut();
        if pool.len() < WRITE_BUFFERS_KEPT && buf.capacity() <= 2 * write_batch_bytes_max {
            buf.clear();
            pool.push(buf);
        }
    }

    /// Drops the spare buffers (before the heap goes back to the OS).
    pub(super) fn trim(&self) {
        *self.free.borrow_mut() = Vec::new();
    }
}
