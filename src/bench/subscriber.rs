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
    let mut interval = latency.then(new_histogram);
    let mut index = 0u64;
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
                    let h = &mut interval;
                    conn.drain(|ev| {
                        if let Inbound::Msg(p) = ev {
                            if p.starts_with(PROBE_MARKER) {
                                return; // a late probe
                            }
                            got += 1;
                            if let (Some(h), Some(ts)) = (h.as_mut(), p.get(..8)) {
                                let ts = u64::from_le_bytes(ts.try_into().unwrap());
                                h.saturating_record(now.saturating_sub(ts).max(1));
                            }
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
            if let Some(h) = interval.as_mut() {
                let i = now.saturating_sub(start_ns) / 1_000_000_000;
                if i != index {
                    let full = std::mem::replace(h, new_histogram());
                    let _ = tx.send(Interval {
                        sub: n,
                        index,
                        hist: full,
                    });
                    index = i;
                }
            }
            if shared.pubs_done.load(Ordering::Acquire) == plan.pubs {
                let total = shared.total_sent.load(Ordering::Acquire);
                if received >= total {
                    return Ok(());
                }
                let since = last_ns.max(shared.pubs_done_ns.load(Ordering::Acquire));
                if now.saturating_sub(since) > plan.quiet_ns {
                    result.quiet_timeout = true;
                    return Ok(());
                }
            }
        }
    };
    if let Err(e) = run(&mut result) {
        result.error = Some(format!("subscriber {n}: {e}"));
    }
    if let Some(h) = interval.take() {
        let _ = tx.send(Interval {
            sub: n,
            index,
            hist: h,
        });
    }
    result.received = received;
    result.elapsed_s = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    conn.close();
    result
}
