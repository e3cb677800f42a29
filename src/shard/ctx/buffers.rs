//! The shard's pools of write and read buffers.
//!
//! Owns: the buffers not in use. Write buffers: at most
//! [`WRITE_BUFFERS_KEPT`]; writers blocked on a slow socket hold theirs, so
//! this is the pool for the ones writing right now. Read buffers: the
//! small ones (`io::READ_BUFFER_INITIAL`, the size the driver asks for) of
//! connections whose read waits
//! with nothing pending, at most `limits.read_buffers_spare_max`, so that
//! an idle connection holds none (`driver::read`). Touches nothing else.

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

/// Read buffers of one size (the driver's initial one; initialized: a
/// read takes `&mut [u8]`), lent to a connection from the moment its
/// socket has data until its read waits again with nothing pending.
#[derive(Default)]
pub(super) struct ReadBuffers {
    free: RefCell<Vec<Vec<u8>>>,
}

impl ReadBuffers {
    /// A buffer of `len` bytes (the pool holds only buffers of that size).
    pub(super) fn take(&self, len: usize) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_else(|| vec![0; len])
    }

    /// Keeps `buf` if it is `len` bytes long and fewer than `max` are
    /// kept; frees it otherwise.
    pub(super) fn give(&self, buf: Vec<u8>, len: usize, max: usize) {
        let mut pool = self.free.borrow_mut();
        if buf.len() == len && pool.len() < max {
            pool.push(buf);
        }
    }

    pub(super) fn spare(&self) -> usize {
        self.free.borrow().len()
    }

    /// Drops the spare buffers (before the heap goes back to the OS).
    pub(super) fn trim(&self) {
        *self.free.borrow_mut() = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = 256;

    #[test]
    fn read_buffers_are_initial_sized_and_bounded() {
        let pool = ReadBuffers::default();
        let lent: Vec<_> = (0..5).map(|_| pool.take(LEN)).collect();
        assert!(lent.iter().all(|b| b.len() == LEN));
        for b in lent {
            pool.give(b, LEN, 3);
        }
        assert_eq!(pool.spare(), 3, "kept up to the limit, the rest freed");
        // A grown buffer is freed, not kept: the pool lends small ones.
        pool.give(vec![0; 4 * LEN], LEN, 10);
        assert_eq!(pool.spare(), 3);
        assert_eq!(pool.take(LEN).len(), LEN);
        assert_eq!(pool.spare(), 2);
        pool.give(pool.take(LEN), LEN, 0);
        assert_eq!(pool.spare(), 1, "limit 0 keeps none");
        pool.trim();
        assert_eq!(pool.spare(), 0);
    }
}
