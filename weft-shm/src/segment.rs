//! The shared segment: its layout, its creation (router side: a sealed
//! memfd) and its mapping (both sides).
//!
//! Layout (little-endian, each field on its own 128 bytes, [`Line`]: two
//! 64-byte cache lines, as the adjacent-line prefetcher pairs them, so
//! that the producer's and the consumer's writes never share a line; the
//! same on every target, since the layout is a contract between two
//! processes; offsets pinned by const assertions below):
//!
//! ```text
//! 0                         info: magic "WEFTSHM1", version 1, ring_bytes
//! 128  c2r.tail             u64, written by the producer only
//! 256  c2r.head             u64, written by the consumer only
//! 384  c2r.consumer_sleeping u32, written by the consumer only
//! 512  c2r.producer_waiting u32, written by the producer only
//! 640  r2c.tail, 768 r2c.head, 896 r2c.consumer_sleeping,
//! 1024 r2c.producer_waiting (as above; header ends at 1152)
//! HEADER_BYTES (4096)       c2r data, ring_bytes
//! HEADER_BYTES + ring_bytes r2c data, ring_bytes
//! ```
//!
//! Indices are free-running byte counts; a byte's position is
//! `index % ring_bytes` (a power of two, [`RING_BYTES_MIN`] ..
//! [`RING_BYTES_MAX`]).
//!
//! The memfd is sealed against growing and shrinking before it is handed
//! over, so a client cannot truncate it under the router's mapping (a
//! SIGBUS in the router otherwise).
//!
//! Hand-written: the layout is the wire contract between two processes;
//! no crate on crates.io has this one.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::ring::RingView;

pub const MAGIC: [u8; 8] = *b"WEFTSHM1";
pub const VERSION: u32 = 1;
/// Smallest ring: one page.
pub const RING_BYTES_MIN: u64 = 4096;
/// Largest ring: 64 MiB.
pub const RING_BYTES_MAX: u64 = 64 << 20;
/// The default ring (`shm.ring_bytes`): 1 MiB.
pub const RING_BYTES_DEFAULT: u64 = 1 << 20;
/// Where the first ring's data begins (the header fits a page).
pub const HEADER_BYTES: usize = 4096;

/// The first cache line: what the segment is.
#[repr(C)]
pub struct Info {
    pub magic: [u8; 8],
    pub version: u32,
    pub _pad: u32,
    pub ring_bytes: u64,
}

/// One field on its own 128 bytes, on every target.
#[repr(C, align(128))]
pub struct Line<T>(pub T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One ring's indices and flags.
#[repr(C)]
pub struct RingHeader {
    pub tail: Line<AtomicU64>,
    pub head: Line<AtomicU64>,
    pub consumer_sleeping: Line<AtomicU32>,
    pub producer_waiting: Line<AtomicU32>,
}

#[repr(C)]
pub struct Header {
    pub info: Line<Info>,
    pub c2r: RingHeader,
    pub r2c: RingHeader,
}

// The wire layout (see the module comment).
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(Header, info) == 0);
    assert!(offset_of!(Header, c2r) == 128);
    assert!(offset_of!(Header, r2c) == 640);
    assert!(offset_of!(RingHeader, tail) == 0);
    assert!(offset_of!(RingHeader, head) == 128);
    assert!(offset_of!(RingHeader, consumer_sleeping) == 256);
    assert!(offset_of!(RingHeader, producer_waiting) == 384);
    assert!(size_of::<RingHeader>() == 512);
    assert!(size_of::<Header>() == 1152);
    assert!(size_of::<Header>() <= HEADER_BYTES);
};

/// Checks a ring size: a power of two within the bounds.
pub fn check_ring_bytes(ring_bytes: u64) -> Result<(), String> {
    if !ring_bytes.is_power_of_two() || !(RING_BYTES_MIN..=RING_BYTES_MAX).contains(&ring_bytes) {
        return Err(format!(
            "{ring_bytes} is not a power of two between {RING_BYTES_MIN} and {RING_BYTES_MAX}"
        ));
    }
    Ok(())
}

/// The whole segment's size for a ring size.
pub fn segment_bytes(ring_bytes: u64) -> usize {
    HEADER_BYTES + 2 * ring_bytes as usize
}

/// A mapped segment; unmapped on drop.
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    ring_bytes: u64,
}

// SAFETY: the mapping is plain shared memory; all access to the shared
// fields is through atomics, the ring bytes through the ring protocol.
unsafe impl Send for Segment {}
unsafe impl Sync for Segment {}

impl Segment {
    /// Router side: a fresh sealed memfd of the right size, mapped, its
    /// info line written.
    pub fn create(ring_bytes: u64) -> std::io::Result<(OwnedFd, Segment)> {
        check_ring_bytes(ring_bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
        let fd = memfd_create(
            c"weft-shm",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )?;
        let len = segment_bytes(ring_bytes);
        nix::unistd::ftruncate(&fd, len as libc::off_t)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: a plain fcntl on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let segment = Segment::map_len(&fd, len, ring_bytes)?;
        // SAFETY: freshly mapped, nobody else has the fd yet.
        unsafe {
            let info = segment.ptr.as_ptr() as *mut Info;
            (*info).magic = MAGIC;
            (*info).version = VERSION;
            (*info).ring_bytes = ring_bytes.to_le();
        }
        Ok((fd, segment))
    }

    /// Client side: maps what the router handed over and checks that it is
    /// what the router said (size, magic, version, ring size).
    pub fn open(fd: &OwnedFd, ring_bytes: u64) -> std::io::Result<Segment> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        check_ring_bytes(ring_bytes).map_err(|e| bad(&e))?;
        let len = segment_bytes(ring_bytes);
        let stat = nix::sys::stat::fstat(fd.as_raw_fd())?;
        if stat.st_size as usize != len {
            return Err(bad("segment size differs from the ring size announced"));
        }
        let segment = Segment::map_len(fd, len, ring_bytes)?;
        let info = segment.info();
        if info.magic != MAGIC
            || info.version != VERSION
            || u64::from_le(info.ring_bytes) != ring_bytes
        {
            return Err(bad(
                "segment header is not WEFTSHM1 version 1 with the announced ring size",
            ));
        }
        Ok(segment)
    }

    fn map_len(fd: &OwnedFd, len: usize, ring_bytes: u64) -> std::io::Result<Segment> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        // SAFETY: a fresh shared mapping of a file we hold; unmapped on drop.
        let ptr = unsafe {
            mmap(
                None,
                std::num::NonZeroUsize::new(len).expect("segment is not empty"),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )?
        };
        Ok(Segment {
            ptr: ptr.cast(),
            len,
            ring_bytes,
        })
    }

    pub fn ring_bytes(&self) -> u64 {
        self.ring_bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_BYTES, page aligned.
        unsafe { &*(self.ptr.as_ptr() as *const Header) }
    }

    fn info(&self) -> &Info {
        &self.header().info
    }

    /// The client -> router ring.
    pub fn c2r(&self) -> RingView {
        // SAFETY: the data lies within the mapping (segment_bytes).
        unsafe {
            RingView::new(
                &self.header().c2r,
                self.ptr.as_ptr().add(HEADER_BYTES),
                self.ring_bytes,
            )
        }
    }

    /// The router -> client ring.
    pub fn r2c(&self) -> RingView {
        // SAFETY: as above.
        unsafe {
            RingView::new(
                &self.header().r2c,
                self.ptr
                    .as_ptr()
                    .add(HEADER_BYTES + self.ring_bytes as usize),
                self.ring_bytes,
            )
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no RingView outlives the Segment (their
        // owners hold the Segment next to them and drop it last).
        unsafe {
            let _ = nix::sys::mman::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// An anonymous segment for the ring's unit tests (no memfd).
#[cfg(test)]
pub(crate) fn for_tests(ring_bytes: u64) -> Segment {
    let (_fd, segment) = Segment::create(ring_bytes).expect("memfd");
    segment
}
