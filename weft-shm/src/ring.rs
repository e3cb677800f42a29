//! One single-producer single-consumer byte ring in the shared segment,
//! and the wake protocol that lets either side sleep without a syscall per
//! event while both are busy.
//!
//! Owns: copying bytes in and out, the free-running indices, the
//! validation of every index the other side wrote, the sleeping/waiting
//! flags. Must not touch: file descriptors (the caller rings the doorbell
//! when a method says so), protocols.
//!
//! # Memory ordering
//!
//! *Data.* The producer copies bytes in, then `tail.store(Release)`; the
//! consumer `tail.load(Acquire)`, then copies those bytes out: the copy in
//! happens before the copy out. *Room.* The consumer copies bytes out,
//! then `head.store(Release)`; the producer `head.load(Acquire)` before it
//! overwrites them: the copy out happens before the overwrite.
//!
//! *Waking (Dekker).* The producer publishes (S1: `tail.store`), then
//! `fence(SeqCst)`, then loads `consumer_sleeping` (L1) and rings the
//! doorbell if it is set. The consumer about to sleep stores
//! `consumer_sleeping = 1` (S2), then `fence(SeqCst)`, then loads `tail`
//! (L2) and sleeps only if the ring is still empty. SeqCst fences are
//! totally ordered: if the producer's fence comes first, S1 is visible to
//! L2 and the consumer sees the data and does not sleep; if the
//! consumer's comes first, S2 is visible to L1 and the producer rings.
//! Either way no wake-up is lost; at worst one is spurious (both saw each
//! other). The doorbell is an eventfd whose counter persists, so a ring
//! between the consumer's check and its wait still wakes it. A producer
//! waiting on a full ring is the mirror image: `producer_waiting` and
//! `head` in place of `consumer_sleeping` and `tail`. The protocol needs
//! no read-modify-write on shared memory.
//!
//! *Distrust.* Each side keeps its own index privately and only ever
//! reads the other side's. An index read from the segment is validated
//! against what this side knows (monotonic; `tail - head <= ring_bytes`);
//! a violation is [`Corrupt`], which ends the connection. Flags are
//! advisory: a scribbled flag costs at most spurious doorbells. The bytes
//! themselves go to the normal protocol parser, which rejects garbage.
//!
//! Bench to rerun before changing the hot path: `weft bench --transport
//! shm` (1 -> 1, 64 B).

use std::sync::atomic::{fence, Ordering};

use crate::segment::RingHeader;

/// The other side wrote an impossible index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    pub what: &'static str,
    pub seen: u64,
    pub expected_min: u64,
    pub expected_max: u64,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ring {} index {} outside {}..={}",
            self.what, self.seen, self.expected_min, self.expected_max
        )
    }
}

/// Pointers to one ring in a mapped segment. Valid while the segment
/// stays mapped: its owner holds the `Segment` beside it.
#[derive(Clone, Copy)]
pub struct RingView {
    hdr: *const RingHeader,
    data: *mut u8,
    size: u64,
}

// SAFETY: plain pointers into shared memory; the SPSC protocol decides who
// writes what.
unsafe impl Send for RingView {}
unsafe impl Sync for RingView {}

impl RingView {
    /// # Safety
    /// `hdr` and `data .. data + size` stay mapped while the view is used.
    pub unsafe fn new(hdr: &RingHeader, data: *mut u8, size: u64) -> RingView {
        debug_assert!(size.is_power_of_two());
        RingView { hdr, data, size }
    }

    fn hdr(&self) -> &RingHeader {
        // SAFETY: see `new`.
        unsafe { &*self.hdr }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Sets or clears `consumer_sleeping` from outside the [`Consumer`]
    /// (a client with two threads that may both wait for data); setting
    /// is followed by the SeqCst fence of the wake protocol.
    pub fn set_consumer_sleeping(&self, on: bool) {
        self.hdr()
            .consumer_sleeping
            .store(u32::from(on), Ordering::Relaxed);
        if on {
            fence(Ordering::SeqCst);
        }
    }

    /// Sets or clears `producer_waiting` (as above, for room).
    pub fn set_producer_waiting(&self, on: bool) {
        self.hdr()
            .producer_waiting
            .store(u32::from(on), Ordering::Relaxed);
        if on {
            fence(Ordering::SeqCst);
        }
    }

    /// Whether the consumer said it sleeps (advisory).
    pub fn consumer_sleeping(&self) -> bool {
        self.hdr().consumer_sleeping.load(Ordering::Relaxed) != 0
    }

    /// Copies `src` in at free-running index `at` (wrapping).
    fn copy_in(&self, at: u64, src: &[u8]) {
        let pos = (at & (self.size - 1)) as usize;
        let first = src.len().min(self.size as usize - pos);
        // SAFETY: both pieces lie within data .. data + size; the
        // protocol gives these bytes to the producer alone.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.data.add(pos), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.data, src.len() - first);
        }
    }

    /// Copies out into `dst` from free-running index `at` (wrapping).
    fn copy_out(&self, at: u64, dst: &mut [u8]) {
        let pos = (at & (self.size - 1)) as usize;
        let first = dst.len().min(self.size as usize - pos);
        // SAFETY: as `copy_in`, for the consumer. A misbehaving peer may
        // write these bytes meanwhile; they are only bytes to the parser.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(pos), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(
                self.data,
                dst.as_mut_ptr().add(first),
                dst.len() - first,
            );
        }
    }
}

/// The producer's end: writes bytes, publishes `tail`.
pub struct Producer {
    view: RingView,
    /// Our tail: everything before it is written (published or not).
    tail: u64,
    /// The last published tail.
    published: u64,
    /// The last validated head.
    head: u64,
}

impl Producer {
    /// A producer over a fresh ring (both indices 0).
    pub fn new(view: RingView) -> Producer {
        Producer {
            view,
            tail: 0,
            published: 0,
            head: 0,
        }
    }

    /// Reads and validates the consumer's head; returns the free bytes.
    pub fn free(&mut self) -> Result<u64, Corrupt> {
        let head = self.view.hdr().head.load(Ordering::Acquire);
        if head < self.head || head > self.published {
            return Err(Corrupt {
                what: "head",
                seen: head,
                expected_min: self.head,
                expected_max: self.published,
            });
        }
        self.head = head;
        Ok(self.view.size - (self.tail - head))
    }

    /// Free bytes as of the last `free()` (no shared read).
    pub fn free_cached(&self) -> u64 {
        self.view.size - (self.tail - self.head)
    }

    /// Copies in as much of `bytes` as fits; returns how much. Not visible
    /// to the consumer until [`Producer::publish`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, Corrupt> {
        let mut free = self.free_cached();
        if free < bytes.len() as u64 {
            free = self.free()?;
        }
        let n = (bytes.len() as u64).min(free) as usize;
        self.view.copy_in(self.tail, &bytes[..n]);
        self.tail += n as u64;
        Ok(n)
    }

    /// Writes all of `bytes` or nothing; false when they do not fit now.
    pub fn write_all_or_none(&mut self, bytes: &[u8]) -> Result<bool, Corrupt> {
        if self.free_cached() < bytes.len() as u64 && self.free()? < bytes.len() as u64 {
            return Ok(false);
        }
        self.view.copy_in(self.tail, bytes);
        self.tail += bytes.len() as u64;
        Ok(true)
    }

    /// Bytes written but not yet published.
    pub fn unpublished(&self) -> u64 {
        self.tail - self.published
    }

    /// Makes the written bytes visible. True: the consumer sleeps, ring
    /// its doorbell.
    pub fn publish(&mut self) -> bool {
        if self.tail == self.published {
            return false;
        }
        self.published = self.tail;
        let hdr = self.view.hdr();
        hdr.tail.store(self.tail, Ordering::Release);
        fence(Ordering::SeqCst);
        hdr.consumer_sleeping.load(Ordering::Relaxed) != 0
    }

    /// Before sleeping on a full ring: sets `producer_waiting`, fences,
    /// and re-reads the head. Returns the free bytes then; sleep only if
    /// they are still too few (and clear the flag with
    /// [`Producer::stop_waiting`] on wake).
    pub fn start_waiting(&mut self) -> Result<u64, Corrupt> {
        self.view.hdr().producer_waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.free()
    }

    pub fn stop_waiting(&self) {
        self.view.hdr().producer_waiting.store(0, Ordering::Relaxed);
    }
}

/// The consumer's end: reads bytes, publishes `head`.
pub struct Consumer {
    view: RingView,
    /// Our head: everything before it is consumed (released or not).
    head: u64,
    released: u64,
    /// The last validated tail.
    tail: u64,
}

impl Consumer {
    pub fn new(view: RingView) -> Consumer {
        Consumer {
            view,
            head: 0,
            released: 0,
            tail: 0,
        }
    }

    /// Reads and validates the producer's tail; returns the bytes ready.
    pub fn available(&mut self) -> Result<u64, Corrupt> {
        let tail = self.view.hdr().tail.load(Ordering::Acquire);
        let max = self.released + self.view.size;
        if tail < self.tail || tail > max {
            return Err(Corrupt {
                what: "tail",
                seen: tail,
                expected_min: self.tail,
                expected_max: max,
            });
        }
        self.tail = tail;
        Ok(tail - self.head)
    }

    /// Bytes ready as of the last `available()`.
    pub fn available_cached(&self) -> u64 {
        self.tail - self.head
    }

    /// Copies out up to `buf.len()` ready bytes; returns how many. The
    /// room is not given back until [`Consumer::release`].
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Corrupt> {
        let mut ready = self.available_cached();
        if ready < buf.len() as u64 {
            ready = self.available()?;
        }
        let n = (buf.len() as u64).min(ready) as usize;
        self.view.copy_out(self.head, &mut buf[..n]);
        self.head += n as u64;
        Ok(n)
    }

    /// Gives the consumed bytes back. True: the producer waits for room,
    /// ring its doorbell.
    pub fn release(&mut self) -> bool {
        if self.head == self.released {
            return false;
        }
        self.released = self.head;
        let hdr = self.view.hdr();
        hdr.head.store(self.head, Ordering::Release);
        fence(Ordering::SeqCst);
        hdr.producer_waiting.load(Ordering::Relaxed) != 0
    }

    /// Before sleeping on an empty ring: sets `consumer_sleeping`, fences,
    /// re-reads the tail. Sleep only if it returns 0; clear the flag with
    /// [`Consumer::stop_sleeping`] on wake.
    pub fn start_sleeping(&mut self) -> Result<u64, Corrupt> {
        self.view
            .hdr()
            .consumer_sleeping
            .store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.available()
    }

    pub fn stop_sleeping(&self) {
        self.view
            .hdr()
            .consumer_sleeping
            .store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
