//! `weft bench --transport shm`: the publisher and subscriber threads as
//! `weft-shm` clients of the router's shared-memory listener (`--server`
//! is its Unix socket path), in the plan's dialect (`--protocol mqtt`,
//! QoS 0, or `nats`). Same gates, counters, schedule and histograms as the
//! TCP threads (`publisher`, `subscriber`), so the report is the same:
//! throughput as fast as the rings take it (`--rate 0`), or open-loop
//! latency (`--rate R`: the intended send time in the payload's first 8
//! bytes, `receive - intended` recorded per second of the run).
//!
//! Owns: the shm clients' loops and their results. Must not touch: the
//! segment or the protocols (the `weft-shm` crate owns both), other
//! threads' state beyond the shared counters.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam::channel::Sender;
use weft_shm::{Client, Dialect, Options};

use super::report::{PubResult, SubResult};
use super::schedule::Schedule;
use super::subscriber::{got_all_or_quiet, sent_ns, Intervals};
use super::{new_histogram, pin, tighten_timer_slack, Gates, Interval, Plan, Protocol, Shared};

pub(super) fn connect(plan: &Plan, server: &str, client_id: String) -> Result<Client, String> {
    let dialect = match plan.proto {
        Protocol::Nats => Dialect::Nats,
        Protocol::Mqtt => Dialect::Mqtt,
        Protocol::Amqp => return Err("AMQP over shared memory is not supported".into()),
    };
    Client::connect(
        server,
        Options {
            dialect,
            client_id,
            spin_us: plan.spin_us,
            user: plan.user.clone(),
            password: plan.password.clone(),
        },
    )
    .map_err(|e| format!("{server}: {e}"))
}

pub(super) fn publisher(
    shared: &Shared,
    n: usize,
    run_id: u32,
    [ready, probed, go]: &Gates,
) -> PubResult {
    let plan = &shared.plan;
    pin(plan, plan.subs + n);
    if plan.rate > 0 {
        tighten_timer_slack();
    }
    let client = connect(plan, &plan.server, format!("weft-bench-{run_id}-pub-{n}"));
    if client.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    ready.wait();
    probed.wait();
    go.wait();
    let mut result = PubResult::default();
    match client {
        Ok(c) if !shared.abort.load(Ordering::Acquire) => {
            let start_ns = shared.start_ns.load(Ordering::Acquire);
            shared.clock.sleep_until(start_ns);
            let t0 = shared.clock.now_ns();
            let mut lag = (plan.rate > 0).then(new_histogram);
            let r = if plan.rate == 0 {
                unthrottled(shared, n, &c, start_ns, &mut result.sent)
            } else {
                at_rate(shared, n, &c, start_ns, &mut result.sent, lag.as_mut())
            };
            let r = r.and_then(|()| c.flush().map_err(|e| e.to_string()));
            if let Err(e) = r {
                result.error = Some(format!("publisher {n}: {e}"));
            }
            result.elapsed_s = (shared.clock.now_ns() - t0) as f64 / 1e9;
            result.send_lag = lag;
        }
        Ok(_) => {}
        Err(e) => result.error = Some(format!("publisher {n}: setup: {e}")),
    }
    publisher_done(shared, result.sent);
    result
}

/// A publisher is done after `sent` messages: what the subscribers wait
/// for (`got_all_or_quiet`).
pub(super) fn publisher_done(shared: &Shared, sent: u64) {
    let now = shared.clock.now_ns();
    shared.total_sent.fetch_add(sent, Ordering::AcqRel);
    shared.pubs_done_ns.fetch_max(now, Ordering::AcqRel);
    shared.pubs_done.fetch_add(1, Ordering::AcqRel);
}

/// Subscribes `client` to the plan's subject.
pub(super) fn subscribe(plan: &Plan, client: Client) -> Result<Client, String> {
    client
        .subscribe(&plan.subject)
        .map_err(|e| format!("subscribe {}: {e}", plan.subject))?;
    Ok(client)
}

fn unthrottled(
    shared: &Shared,
    n: usize,
    c: &Client,
    start_ns: u64,
    sent: &mut u64,
) -> Result<(), String> {
    let plan = &shared.plan;
    let payload = vec![0xa5u8; plan.size];
    let end_ns = plan.duration_ns.map(|d| start_ns + d);
    let limit = plan.msgs.unwrap_or(u64::MAX);
    while *sent < limit {
        c.publish(&plan.subject, &payload)
            .map_err(|e| e.to_string())?;
        *sent += 1;
        if (*sent).is_multiple_of(1024) {
            shared.sent[n].store(*sent, Ordering::Relaxed);
            if end_ns.is_some_and(|e| shared.clock.now_ns() >= e)
                || shared.abort.load(Ordering::Relaxed)
            {
                break;
            }
        }
    }
    shared.sent[n].store(*sent, Ordering::Relaxed);
    Ok(())
}

fn at_rate(
    shared: &Shared,
    n: usize,
    c: &Client,
    start_ns: u64,
    sent: &mut u64,
    mut lag: Option<&mut hdrhistogram::Histogram<u64>>,
) -> Result<(), String> {
    let plan = &shared.plan;
    let clock = shared.clock;
    let sched = Schedule::staggered(start_ns, plan.rate, n, plan.pubs);
    let limit = plan.sends(&sched, start_ns);
    // A client that spins (`--spin-us`) also spins for its next send time
    // when it is that close, rather than sleeping past it.
    let spin_ns = u64::from(plan.spin_us) * 1000;
    let mut payload = vec![0xa5u8; plan.size];
    while *sent < limit {
        let now = clock.now_ns();
        let due = sched.due_at(now).min(limit);
        if due <= *sent {
            let next_ns = sched.intended_ns(*sent);
            if next_ns.saturating_sub(now) > spin_ns {
                clock.sleep_until(next_ns - spin_ns);
            } else {
                std::hint::spin_loop();
            }
            if shared.abort.load(Ordering::Relaxed) {
                break;
            }
            continue;
        }
        send_due(
            shared,
            c,
            &sched,
            *sent..due,
            &mut payload,
            lag.as_deref_mut(),
        )?;
        *sent = due;
        shared.sent[n].store(*sent, Ordering::Relaxed);
    }
    Ok(())
}

/// Sends messages `due` of `sched`, each stamped with its intended send
/// time (the payload's first 8 bytes), recording how late each went out.
pub(super) fn send_due(
    shared: &Shared,
    c: &Client,
    sched: &Schedule,
    due: std::ops::Range<u64>,
    payload: &mut [u8],
    mut lag: Option<&mut hdrhistogram::Histogram<u64>>,
) -> Result<(), String> {
    for i in due {
        let t = sched.intended_ns(i);
        payload[..8].copy_from_slice(&t.to_le_bytes());
        c.publish(&shared.plan.subject, payload)
            .map_err(|e| e.to_string())?;
        if let Some(h) = lag.as_deref_mut() {
            h.saturating_record(shared.clock.now_ns().saturating_sub(t).max(1));
        }
    }
    Ok(())
}

/// What a subscriber counted: messages and when the last came.
pub(super) struct Tally {
    pub received: u64,
    pub last_ns: u64,
}

impl Tally {
    pub fn new(start_ns: u64) -> Tally {
        Tally {
            received: 0,
            last_ns: start_ns,
        }
    }

    /// A message came at `now`, stamped `sent` (latency mode).
    pub fn got(
        &mut self,
        shared: &Shared,
        n: usize,
        intervals: &mut Intervals,
        now: u64,
        sent: Option<u64>,
    ) {
        if let Some(ts) = sent {
            intervals.record_ns(now, ts);
        }
        self.received += 1;
        self.last_ns = now;
        if self.received.is_multiple_of(256) {
            shared.received[n].store(self.received, Ordering::Relaxed);
        }
    }

    /// The run ended: the counts into `result`, the last histogram sent.
    pub fn finish(
        self,
        shared: &Shared,
        n: usize,
        intervals: Intervals,
        start_ns: u64,
        result: &mut SubResult,
    ) {
        shared.received[n].store(self.received, Ordering::Relaxed);
        intervals.finish();
        result.received = self.received;
        result.elapsed_s = self.last_ns.saturating_sub(start_ns) as f64 / 1e9;
    }
}

pub(super) fn subscriber(
    shared: &Shared,
    n: usize,
    run_id: u32,
    [ready, probed, go]: &Gates,
    tx: &Sender<Interval>,
) -> SubResult {
    let plan = &shared.plan;
    pin(plan, n);
    let client = connect(
        plan,
        &plan.sub_server,
        format!("weft-bench-{run_id}-sub-{n}"),
    )
    .and_then(|c| subscribe(plan, c));
    if client.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    ready.wait();
    probed.wait();
    go.wait();
    let mut result = SubResult::default();
    let client = match client {
        Ok(c) if !shared.abort.load(Ordering::Acquire) => c,
        Ok(_) => return result,
        Err(e) => {
            result.error = Some(format!("subscriber {n}: setup: {e}"));
            return result;
        }
    };
    let start_ns = shared.start_ns.load(Ordering::Acquire);
    let latency = plan.rate > 0;
    let expected = plan.msgs.map(|m| m * plan.pubs as u64);
    let mut intervals = Intervals::new(tx, n, start_ns, latency);
    let mut tally = Tally::new(start_ns);
    let mut run = |result: &mut SubResult| -> Result<(), String> {
        loop {
            if expected.is_some_and(|e| tally.received >= e) || shared.abort.load(Ordering::Relaxed)
            {
                return Ok(());
            }
            // Borrowed: no allocation per message.
            let got = client
                .recv_with_timeout(Duration::from_millis(100), |_topic, payload| {
                    sent_ns(payload)
                })
                .map_err(|e| e.to_string())?;
            let now = shared.clock.now_ns();
            if let Some(sent) = got {
                tally.got(shared, n, &mut intervals, now, sent);
            }
            intervals.roll(now);
            if got_all_or_quiet(shared, tally.received, tally.last_ns, now, result) {
                return Ok(());
            }
        }
    };
    if let Err(e) = run(&mut result) {
        result.error = Some(format!("subscriber {n}: {e}"));
    }
    tally.finish(shared, n, intervals, start_ns, &mut result);
    result
}
