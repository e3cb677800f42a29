//! Waiting: spin `spin_us`, then sleep on the one doorbell (`to_client`)
//! that both reasons to wait share (data in r2c, room in c2r).
//!
//! Owns: the `Bell` (who polls the eventfd, the wake epoch, the waiters)
//! and the ring flags `consumer_sleeping` / `producer_waiting` of the
//! client's side. Only one thread at a time polls the eventfd; it then
//! wakes the others through the condvar, so a drain never steals another
//! thread's wake-up. Bounds: a single poll lasts at most `POLL_SLICE`.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{lock, Client};
use crate::{doorbell, Error};

/// The longest single poll: bounds how late a closed socket is noticed if
/// its wake were ever missed.
const POLL_SLICE: Duration = Duration::from_millis(200);

#[derive(Default)]
pub(super) struct Bell {
    polling: bool,
    epoch: u64,
    rx_waiters: u32,
    tx_waiters: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    Data,
    Room,
}

impl Client {
    /// Spins `spin_us`, then sleeps on the doorbell until `ready`; false
    /// if the deadline passed first.
    pub(super) fn wait(
        &self,
        why: Why,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut() -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        if ready()? {
            return Ok(true);
        }
        let spin_end = Instant::now() + self.spin;
        while Instant::now() < spin_end {
            std::hint::spin_loop();
            if ready()? {
                return Ok(true);
            }
        }
        self.enter(why);
        let result = self.sleep_until(deadline, ready);
        self.leave(why);
        result
    }

    pub(super) fn enter(&self, why: Why) {
        let mut bell = lock(&self.bell);
        match why {
            Why::Data => {
                bell.rx_waiters += 1;
                self.r2c.set_consumer_sleeping(true);
            }
            Why::Room => {
                bell.tx_waiters += 1;
                self.c2r.set_producer_waiting(true);
            }
        }
    }

    pub(super) fn leave(&self, why: Why) {
        let mut bell = lock(&self.bell);
        match why {
            Why::Data => {
                bell.rx_waiters -= 1;
                if bell.rx_waiters == 0 {
                    self.r2c.set_consumer_sleeping(false);
                }
            }
            Why::Room => {
                bell.tx_waiters -= 1;
                if bell.tx_waiters == 0 {
                    self.c2r.set_producer_waiting(false);
                }
            }
        }
    }

    pub(super) fn sleep_until(
        &self,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut() -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        let mut ran_out = false;
        loop {
            // The epoch before the check: a poller that drains the bell
            // after this check moves it, so a wake-up meant for this
            // thread is never slept through (the check is redone).
            let seen = lock(&self.bell).epoch;
            // The flag is set (and fenced): a check now either sees the
            // router's bytes or the router sees the flag and rings.
            if ready()? {
                if ran_out {
                    self.missed_wakes.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(true);
            }
            ran_out = false;
            self.check_open()?;
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return Ok(false),
                Some(d) => (d - now).min(POLL_SLICE),
                None => POLL_SLICE,
            };
            let mut bell = lock(&self.bell);
            if bell.epoch != seen {
                continue;
            }
            if !bell.polling {
                bell.polling = true;
                drop(bell);
                let woken =
                    doorbell::wait(self.to_client.as_fd(), Some(self.sock.as_fd()), Some(slice));
                let mut bell = lock(&self.bell);
                bell.polling = false;
                bell.epoch += 1;
                self.woken.notify_all();
                drop(bell);
                let woken = woken.map_err(Error::Io)?;
                if woken.other {
                    // The socket carries nothing after the handshake:
                    // readable means the router closed it.
                    self.closed.store(true, Ordering::Relaxed);
                }
                ran_out =
                    !woken.rung && !woken.other && deadline.is_none_or(|d| Instant::now() < d);
            } else {
                let (_bell, timeout) = self
                    .woken
                    .wait_timeout_while(bell, slice, |b| b.polling && b.epoch == seen)
                    .unwrap_or_else(|e| e.into_inner());
                ran_out = timeout.timed_out() && deadline.is_none_or(|d| Instant::now() < d);
            }
        }
    }

    /// Times a sleep slice ran out while the awaited condition was
    /// already true: a missed wake-up (0 when the wake protocol holds).
    #[doc(hidden)]
    pub fn missed_wakes_for_tests(&self) -> u64 {
        self.missed_wakes.load(Ordering::Relaxed)
    }
}
