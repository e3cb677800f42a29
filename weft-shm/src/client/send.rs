//! The client's sending half: checks, encoding into the client -> router
//! ring (waiting for room), the control replies owed to the router, and
//! the round trips that wait for its answer.
//!
//! Owns: `Tx` (under its lock) and the owed replies. Bounds: the owed
//! replies at most `OWED_BYTES_MAX`.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{corrupt, lock, socket_ended, Client, Tx, Why, CLOSED_CHECK_EVERY, OWED_BYTES_MAX};
use crate::{doorbell, mqtt, nats, Dialect, Error};

impl Client {
    pub(super) fn check_topic(&self, topic: &str, filter: bool) -> Result<(), Error> {
        match self.dialect {
            Dialect::Nats => nats::check_subject(topic),
            Dialect::Mqtt => mqtt::check_topic(topic, filter),
        }
        .map_err(Error::Invalid)
    }

    pub(super) fn check_open(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// `check_open`, then a look at the Unix socket (never blocks).
    pub(super) fn check_open_now(&self) -> Result<(), Error> {
        self.check_open()?;
        self.since_check.store(0, Ordering::Relaxed);
        if socket_ended(&self.sock) {
            self.closed.store(true, Ordering::Relaxed);
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// `check_open`, and every [`CLOSED_CHECK_EVERY`] calls
    /// `check_open_now`.
    pub(super) fn check_open_sometimes(&self) -> Result<(), Error> {
        if self.since_check.fetch_add(1, Ordering::Relaxed) + 1 >= CLOSED_CHECK_EVERY {
            return self.check_open_now();
        }
        self.check_open()
    }

    pub(super) fn encode_publish(&self, buf: &mut Vec<u8>, topic: &str, payload: &[u8]) {
        match self.dialect {
            Dialect::Nats => nats::publish(buf, topic, payload),
            Dialect::Mqtt => mqtt::publish(buf, topic, payload),
        }
    }

    pub(super) fn send_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        self.send_with_tx(|tx| encode(&mut tx.buf))
    }

    pub(super) fn send_with_tx<R>(&self, encode: impl FnOnce(&mut Tx) -> R) -> Result<R, Error> {
        let mut tx = lock(&self.tx);
        tx.buf.clear();
        let r = encode(&mut tx);
        self.push_blocking(&mut tx)?;
        Ok(r)
    }

    /// Writes `tx.buf` into the ring, waiting for room as needed (a
    /// message larger than the ring goes in pieces).
    pub(super) fn push_blocking(&self, tx: &mut Tx) -> Result<(), Error> {
        self.check_open()?;
        let Tx { buf, prod, .. } = tx;
        let mut off = 0;
        while off < buf.len() {
            let n = prod.write(&buf[off..]).map_err(corrupt)?;
            off += n;
            if prod.publish() {
                doorbell::ring(self.to_router.as_fd());
            }
            if off < buf.len() && n == 0 {
                self.wait(Why::Room, None, &mut || {
                    Ok(prod.free().map_err(corrupt)? > 0)
                })?;
            }
        }
        Ok(())
    }

    /// Sends the control replies owed (PONG, PUBACK) if the ring takes
    /// them now; never waits.
    pub(super) fn flush_owed(&self) {
        if !self.has_owed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut tx) = self.tx.try_lock() else {
            return;
        };
        let mut owed = lock(&self.owed);
        if tx.prod.write_all_or_none(&owed).unwrap_or(false) {
            owed.clear();
            self.has_owed.store(false, Ordering::Relaxed);
            if tx.prod.publish() {
                doorbell::ring(self.to_router.as_fd());
            }
        }
    }

    pub(super) fn owe(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        let mut owed = lock(&self.owed);
        encode(&mut owed);
        if owed.len() > OWED_BYTES_MAX {
            return Err(Error::Protocol(
                "the router asks for more replies than the ring takes".into(),
            ));
        }
        self.has_owed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// NATS: PING, then wait for the PONG that answers it (the router
    /// answers in order, so everything sent before is processed).
    pub(super) fn nats_roundtrip(&self, deadline: Instant) -> Result<(), Error> {
        let (errors_before, target) = {
            let errors = lock(&self.rx).errors;
            let target = self.send_with_tx(|tx| {
                nats::ping(&mut tx.buf);
                tx.pings += 1;
                tx.pings
            })?;
            (errors, target)
        };
        let done = self.wait_rx(Some(deadline), |rx| Ok((rx.pongs >= target).then_some(())));
        // A refused CONNECT is an -ERR and then the router's close.
        let done = match done {
            Err(Error::Closed) => None,
            other => other?,
        };
        if done.is_none() {
            let rx = lock(&self.rx);
            if rx.errors > errors_before {
                return Err(Error::Refused(rx.last_error.clone().unwrap_or_default()));
            }
            self.check_open()?;
            return Err(Error::Timeout);
        }
        Ok(())
    }

    pub(super) fn wait_ack(&self, pid: u16, deadline: Instant) -> Result<Vec<u8>, Error> {
        self.wait_rx(Some(deadline), |rx| Ok(rx.acks.remove(&pid)))?
            .ok_or(Error::Timeout)
    }
}
