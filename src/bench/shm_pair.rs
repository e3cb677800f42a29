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
use super::shm::{connect, publisher_done, send_due, subscribe, Tally};
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
    let limit = plan.sends(&sched, start_ns);
    let mut lag = new_histogram();
    let mut intervals = Intervals::new(tx, 0, start_ns, true);
    let mut payload = vec![0xa5u8; plan.size];
    let (mut sent, mut tally) = (0u64, Tally::new(start_ns));
    let mut publishing = true;
    let mut run = || -> Result<(), Failed> {
        loop {
            let now = clock.now_ns();
            if publishing {
                let due = sched.due_at(now).min(limit);
                if due > sent {
                    send_due(
                        shared,
                        &publ,
                        &sched,
                        sent..due,
                        &mut payload,
                        Some(&mut lag),
                    )
                    .map_err(Failed::Publisher)?;
                    sent = due;
                    shared.sent[0].store(sent, Ordering::Relaxed);
                }
                if sent >= limit || shared.abort.load(Ordering::Relaxed) {
                    publ.flush().map_err(|e| Failed::Publisher(e.to_string()))?;
                    p.elapsed_s = (clock.now_ns() - start_ns) as f64 / 1e9;
                    publishing = false;
                    publisher_done(shared, sent);
                }
            }
            let got = sub
                .try_recv_with(|_topic, payload| sent_ns(payload))
                .map_err(|e| Failed::Subscriber(e.to_string()))?;
            let now = clock.now_ns();
            match got {
                Some(stamp) => tally.got(shared, 0, &mut intervals, now, stamp),
                None => std::hint::spin_loop(),
            }
            intervals.roll(now);
            if !publishing && got_all_or_quiet(shared, tally.received, tally.last_ns, now, &mut s) {
                return Ok(());
            }
        }
    };
    match run() {
        Ok(()) => {}
        Err(Failed::Publisher(e)) => p.error = Some(format!("publisher 0: {e}")),
        Err(Failed::Subscriber(e)) => s.error = Some(format!("subscriber 0: {e}")),
    }
    if publishing {
        p.elapsed_s = (clock.now_ns() - start_ns) as f64 / 1e9;
        publisher_done(shared, sent);
    }
    p.sent = sent;
    p.send_lag = Some(lag);
    tally.finish(shared, 0, intervals, start_ns, &mut s);
    (p, s)
}

/// Which client of the pair failed, and why.
enum Failed {
    Publisher(String),
    Subscriber(String),
}
