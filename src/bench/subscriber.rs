//! One subscriber thread of `weft bench`: connects, subscribes, waits at
//! the gates, then reads until it got every message or the publishers are
//! done and nothing arrived for `--quiet-ms`; counts and (latency mode)
//! records `receive time - intended send time` per second of the run.
//!
//! Owns: the subscriber's read loop and its result. Must not touch: other
//! threads' state beyond the shared counters.

use std::io;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use crossbeam::channel::Sender;

use super::probe::{await_probe, PROBE_MARKER};
use super::report::SubResult;
use super::wire::{self, Conn, Inbound};
use super::{new_histogram, pin, Gates, Interval, Shared, SETUP_TIMEOUT};

/// Latency mode's per-second histograms of one subscriber (TCP here, and
/// the shared-memory subscriber's, `shm.rs`): a receive is recorded into
/// the current second's, which goes to the collector when the second ends,
/// the last one at the end.
pub(super) struct Intervals<'a> {
    tx: &'a Sender<Interval>,
    sub: usize,
    start_ns: u64,
    index: u64,
    /// None in throughput mode: nothing is recorded.
    hist: Option<hdrhistogram::Histogram<u64>>,
}

impl<'a> Intervals<'a> {
    pub(super) fn new(tx: &'a Sender<Interval>, sub: usize, start_ns: u64, latency: bool) -> Self {
        Intervals {
            tx,
            sub,
            start_ns,
            index: 0,
            hist: latency.then(new_histogram),
        }
    }

    /// Records `now - sent` for a payload that starts with its intended
    /// send time (latency mode; a payload shorter than 8 bytes is not
    /// recorded).
    pub(super) fn record(&mut self, now: u64, payload: &[u8]) {
        if self.hist.is_some() {
            if let Some(sent) = sent_ns(payload) {
                self.record_ns(now, sent);
            }
        }
    }

    /// Records `now - sent` (latency mode).
    pub(super) fn record_ns(&mut self, now: u64, sent: u64) {
        if let Some(h) = self.hist.as_mut() {
            h.saturating_record(now.saturating_sub(sent).max(1));
        }
    }

    /// Sends the histogram once `now` is past its second.
    pub(super) fn roll(&mut self, now: u64) {
        if let Some(h) = self.hist.as_mut() {
            let i = now.saturating_sub(self.start_ns) / 1_000_000_000;
            if i != self.index {
                let full = std::mem::replace(h, new_histogram());
                let _ = self.tx.send(Interval {
                    sub: self.sub,
                    index: self.index,
                    hist: full,
                });
                self.index = i;
            }
        }
    }

    /// Sends the last histogram.
    pub(super) fn finish(mut self) {
        if let Some(h) = self.hist.take() {
            let _ = self.tx.send(Interval {
                sub: self.sub,
                index: self.index,
                hist: h,
            });
        }
    }
}

/// The intended send time a payload starts with (little-endian ns).
pub(super) fn sent_ns(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// After every publisher finished: true when this subscriber has all they
/// sent, or nothing came for `--quiet-ms` (marked in `result`).
pub(super) fn got_all_or_quiet(
    shared: &Shared,
    received: u64,
    last_ns: u64,
    now: u64,
    result: &mut SubResult,
) -> bool {
    let plan = &shared.plan;
    if shared.pubs_done.load(Ordering::Acquire) != plan.pubs {
        return false;
    }
    if received >= shared.total_sent.load(Ordering::Acquire) {
        return true;
    }
    let since = last_ns.max(shared.pubs_done_ns.load(Ordering::Acquire));
    if now.saturating_sub(since) > plan.quiet_ns {
        result.quiet_timeout = true;
        return true;
    }
    false
}

/// Throughput mode: a subscriber read smaller than this is followed by a
/// pause of [`COALESCE_PAUSE`] (at most that much delay on the last message).
const COALESCE_BYTES: usize = 16 * 1024;
const COALESCE_PAUSE: Duration = Duration::from_micros(200);

pub(super) fn subscriber(
    shared: &Shared,
    n: usize,
    run_id: u32,
    [ready, probed, go]: &Gates,
    tx: &Sender<Interval>,
) -> SubResult {
    let plan = &shared.plan;
    pin(plan, n);
    let setup = || -> io::Result<Conn> {
        let mut c = Conn::open_session(
            plan.proto,
            &plan.sub_server,
            &format!("weft-bench-{run_id}-sub-{n}"),
            SETUP_TIMEOUT,
            plan.tls.as_ref(),
            !plan.persistent,
        )?;
        c.subscribe(&plan.subject, plan.qos)?;
        Ok(c)
    };
    let mut conn = setup();
    if conn.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    // Everyone meets here, even after an error, so that nobody waits forever.
    ready.wait();
    if plan.probe_timeout.is_some() {
        if let Ok(c) = &mut conn {
            if let Err(e) = await_probe(shared, c) {
                shared.abort.store(true, Ordering::Release);
                conn = Err(io::Error::new(e.kind(), format!("probe: {e}")));
            }
        }
    }
    probed.wait();
    go.wait();
    let mut result = SubResult::default();
    let mut conn = match conn {
        Ok(c) if !shared.abort.load(Ordering::Acquire) => c,
        Ok(c) => {
            c.close();
            return result;
        }
        Err(e) => {
            result.error = Some(format!("subscriber {n}: setup: {e}"));
            return result;
        }
    };
    let start_ns = shared.start_ns.load(Ordering::Acquire);
    let latency = plan.rate > 0;
    let expected = plan.msgs.map(|m| m * plan.pubs as u64);
    let mut intervals = Intervals::new(tx, n, start_ns, latency);
    let mut received = 0u64;
    let mut last_ns = start_ns;
    let mut run = |result: &mut SubResult| -> io::Result<()> {
        conn.stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        loop {
            if expected.is_some_and(|e| received >= e) || shared.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let r = conn.fill();
            let now = shared.clock.now_ns();
            match r {
                Ok(bytes) => {
                    // Throughput mode: after a small read, let data pile up
                    // for a moment, so that the tool spends its CPU on
                    // messages rather than on read syscalls (latency mode
                    // reads as soon as anything arrives).
                    if !latency && bytes < COALESCE_BYTES {
                        thread::sleep(COALESCE_PAUSE);
                    }
                    let mut got = 0u64;
                    let intervals = &mut intervals;
                    conn.drain(|ev| {
                        if let Inbound::Msg(p) = ev {
                            if p.starts_with(PROBE_MARKER) {
                                return; // a late probe
                            }
                            got += 1;
                            intervals.record(now, p);
                        }
                    })?;
                    conn.flush_replies()?;
                    if got > 0 {
                        received += got;
                        last_ns = now;
                        shared.received[n].store(received, Ordering::Relaxed);
                    }
                }
                Err(e) if wire::is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
            intervals.roll(now);
            if got_all_or_quiet(shared, received, last_ns, now, result) {
                return Ok(());
            }
        }
    };
    if let Err(e) = run(&mut result) {
        result.error = Some(format!("subscriber {n}: {e}"));
    }
    intervals.finish();
    result.received = received;
    result.elapsed_s = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    conn.close();
    result
}
