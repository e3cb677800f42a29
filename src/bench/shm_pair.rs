//! `weft bench --transport shm --one-thread`: publisher 0 and subscriber 0
//! as two `weft-shm` clients (two sessions of the router) driven by one
//! thread. The thread sends each message when it is due (open loop, the
//! intended send time in the payload, as `shm::publisher` does) and polls
//! the subscription in between, never sleeping.
//!
//! Why: the latency goal for a spinning router (issue 16) is a few µs, and
//! on a machine whose clients share one core a spinning subscriber thread
//! and a publisher thread take that core from each other for whole
//! scheduler slices (the two-thread rows measure that, not the router).
//! One thread that never blocks measures the router and the rings alone;
//! it is how a co-located trading application polls its feed.
//!
//! Owns: that thread's loop. Must not touch: the segment or the protocols
//! (`weft-shm` owns both); the shared counters are updated as the two
//! threads of `shm` would.

use std::sync::atomic::Ordering;

use crossbeam::channel::Sender;

use super::report::{PubResult, SubResult};
use super::schedule::Schedule;
use super::shm::{connect, publisher_done, subscribe};
use super::subscriber::{got_all_or_quiet, sent_ns, Intervals};
use super::{new_histogram, pin, tighten_timer_slack, Gates, Interval, Shared};

pub(super) fn pair(
    shared: &Shared,
    run_id: u32,
    [ready, probed, go]: &Gates,
    tx: &Sender<Interval>,
) -> (PubResult, SubResult) {
    let plan = &shared.plan;
    pin(plan, 0);
    tighten_timer_slack();
    let sub = connect(plan, &plan.sub_server, format!("weft-bench-{run_id}-sub-0"))
        .and_then(|c| subscribe(plan, c));
    let publ = connect(plan, &plan.server, format!("weft-bench-{run_id}-pub-0"));
    if sub.is_err() || publ.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    ready.wait();
    probed.wait();
    go.wait();
    let mut p = PubResult::default();
    let mut s = SubResult::default();
    let (sub, publ) = match (sub, publ) {
        (Ok(sub), Ok(publ)) if !shared.abort.load(Ordering::Acquire) => (sub, publ),
        (sub, publ) => {
            if let Err(e) = sub {
                s.error = Some(format!("subscriber 0: setup: {e}"));
            }
            if let Err(e) = publ {
                p.error = Some(format!("publisher 0: setup: {e}"));
            }
            publisher_done(shared, 0);
            return (p, s);
        }
    };
    let clock = shared.clock;
    let start_ns = shared.start_ns.load(Ordering::Acquire);
    clock.sleep_until(start_ns);
    let sched = Schedule::staggered(start_ns, plan.rate, 0, 1);
    let limit = match (plan.msgs, plan.duration_ns) {
        (Some(m), _) => m,
        (None, Some(d)) => sched.count_before(start_ns + d),
        (None, None) => unreachable!("a count or a duration"),
    };
    let mut lag = new_histogram();
    let mut intervals = Intervals::new(tx, 0, start_ns, true);
    let mut payload = vec![0xa5u8; plan.size];
    let (mut sent, mut received, mut last_ns) = (0u64, 0u64, start_ns);
    let mut publishing = true;
    let mut run = || -> Result<(), String> {
        loop {
            let now = clock.now_ns();
            if publishing {
                let due = sched.due_at(now).min(limit);
                for i in sent..due {
                    let t = sched.intended_ns(i);
                    payload[..8].copy_from_slice(&t.to_le_bytes());
                    publ.publish(&plan.subject, &payload)
                        .map_err(|e| format!("publisher 0: {e}"))?;
                    lag.saturating_record(clock.now_ns().saturating_sub(t).max(1));
                }
                if due > sent {
                    sent = due;
                    shared.sent[0].store(sent, Ordering::Relaxed);
                }
                if sent >= limit || shared.abort.load(Ordering::Relaxed) {
                    publ.flush().map_err(|e| format!("publisher 0: {e}"))?;
                    p.elapsed_s = (clock.now_ns() - start_ns) as f64 / 1e9;
                    publishing = false;
                    publisher_done(shared, sent);
                }
            }
            let got = sub
                .try_recv_with(|_topic, payload| sent_ns(payload))
                .map_err(|e| format!("subscriber 0: {e}"))?;
            let now = clock.now_ns();
            match got {
                Some(stamp) => {
                    if let Some(t) = stamp {
                        intervals.record_ns(now, t);
                    }
                    received += 1;
                    last_ns = now;
                    if received.is_multiple_of(256) {
                        shared.received[0].store(received, Ordering::Relaxed);
                    }
                }
                None => std::hint::spin_loop(),
            }
            intervals.roll(now);
            if !publishing && got_all_or_quiet(shared, received, last_ns, now, &mut s) {
                return Ok(());
            }
        }
    };
    if let Err(e) = run() {
        // The message names its side ("publisher 0: …" or "subscriber 0: …").
        match e.starts_with("publisher") {
            true => p.error = Some(e),
            false => s.error = Some(e),
        }
        if publishing {
            p.elapsed_s = (clock.now_ns() - start_ns) as f64 / 1e9;
            publisher_done(shared, sent);
        }
    }
    p.sent = sent;
    p.send_lag = Some(lag);
    shared.received[0].store(received, Ordering::Relaxed);
    intervals.finish();
    s.received = received;
    s.elapsed_s = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    (p, s)
}
