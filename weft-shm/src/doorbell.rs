//! Doorbells: eventfds that one side writes when the other sleeps.
//!
//! Owns: creating, ringing, draining and waiting on one eventfd. Must not
//! touch: the rings (the callers decide when to ring).
//! Both eventfds are `EFD_NONBLOCK | EFD_CLOEXEC`: a ring never blocks (a
//! full counter, 2^64 - 2 rings unread, is already a pending wake), a
//! drain never blocks, and a waiter waits in `poll(2)`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// A fresh eventfd, counter 0.
pub fn create() -> std::io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
    Ok(OwnedFd::from(efd))
}

/// Rings: adds 1 to the counter. Never blocks; errors are ignored (a
/// full counter is a pending wake already; a closed peer is found by the
/// Unix socket).
pub fn ring(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: an 8-byte write from a local to an fd we hold.
    unsafe {
        libc::write(fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8);
    }
}

/// Drains the counter; true if it was rung since the last drain.
pub fn drain(fd: BorrowedFd<'_>) -> bool {
    let mut value: u64 = 0;
    // SAFETY: an 8-byte read into a local from an fd we hold.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut value as *mut u64 as *mut libc::c_void,
            8,
        )
    };
    n == 8
}

/// What a wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Woken {
    /// The doorbell was rung (and is drained now).
    pub rung: bool,
    /// The other fd (the Unix socket) is readable or hung up.
    pub other: bool,
}

/// Waits until `bell` is rung, `other` becomes readable (or hangs up), or
/// `timeout` passes (None: no timeout). Drains the bell.
pub fn wait(
    bell: BorrowedFd<'_>,
    other: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> std::io::Result<Woken> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = vec![PollFd::new(bell.as_fd(), PollFlags::POLLIN)];
    if let Some(other) = other {
        fds.push(PollFd::new(other, PollFlags::POLLIN));
    }
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(
            d.as_millis().min(i32::MAX as u128) as i32
                + i32::from(d.subsec_nanos() % 1_000_000 != 0),
        )
        .unwrap_or(PollTimeout::MAX),
    };
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    let other = fds
        .get(1)
        .and_then(|f| f.revents())
        .is_some_and(|r| !r.is_empty());
    Ok(Woken {
        rung: drain(bell),
        other,
    })
}
