//! The publisher and subscriber threads of `weft bench --amqp`: the same
//! shape, gates, counters and results as the MQTT/NATS ones
//! (`publisher`, `subscriber`), over one AMQP link each ([`Link`]).
//!
//! * Publisher, as fast as possible: pre-encoded transfer frames
//!   (`--batch` bytes of them) whose delivery ids and tags are patched in
//!   place, written as far as the link credit and the broker's session
//!   window allow; unsettled (`--qos 1`) also within `--window`
//!   unaccepted deliveries, counting `accepted` dispositions as
//!   acknowledgements (ack latency from the write).
//! * Publisher at `--rate`: each transfer at its intended time, the time
//!   in the payload's first 8 bytes, as the other modes.
//! * Subscriber: a receiver link with credit it tops up; unsettled
//!   deliveries are accepted after each read with one ranged disposition
//!   per contiguous run of delivery ids.
//!
//! No probe phase: `--sub-server` elsewhere is refused for AMQP (args).
//!
//! Owns: the AMQP load loops and their results. Must not touch: framing
//! (`amqp`), other threads' state beyond the shared counters.

use std::io;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use fe2o3_amqp_types::definitions::Role;
use hdrhistogram::Histogram;

use super::amqp::{self, Credentials, Event, Link, LinkSpec, Settle};
use super::report::{PubResult, SubResult};
use super::schedule::Schedule;
use super::{
    new_histogram, pin, tighten_timer_slack, Gates, Interval, Plan, Shared, SETUP_TIMEOUT,
};

/// As `subscriber`: after a small read in throughput mode, let data pile
/// up for a moment.
const COALESCE_BYTES: usize = 16 * 1024;
const COALESCE_PAUSE: Duration = Duration::from_micros(200);

fn open(plan: &Plan, addr: &str, name: &str, role: Role) -> io::Result<Link> {
    Link::open(
        addr,
        plan.tls.as_ref(),
        LinkSpec {
            name,
            address: &plan.subject,
            role,
            settle: Settle::from_qos(plan.qos),
        },
        &Credentials {
            user: plan.user.clone(),
            password: plan.password.clone(),
        },
        SETUP_TIMEOUT,
    )
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
    let link = open(
        plan,
        &plan.server,
        &format!("weft-bench-{run_id}-pub-{n}"),
        Role::Sender,
    );
    if link.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    ready.wait();
    probed.wait();
    go.wait();
    let mut result = PubResult::default();
    match link {
        Ok(link) if !shared.abort.load(Ordering::Acquire) => {
            let mut p = Publisher {
                shared,
                plan,
                n,
                link,
                sent: 0,
                acked: 0,
                lag: (plan.rate > 0).then(new_histogram),
                sent_ns: if plan.acked() {
                    vec![0; 1 << 16]
                } else {
                    Vec::new()
                },
                ack_latency: plan.acked().then(new_histogram),
            };
            let t0 = shared.clock.now_ns();
            if let Err(e) = p.run() {
                result.error = Some(format!("publisher {n}: {e}"));
            }
            result.elapsed_s = (shared.clock.now_ns() - t0) as f64 / 1e9;
            result.sent = p.sent;
            result.acked = p.acked;
            result.send_lag = p.lag;
            result.ack_latency = p.ack_latency;
            p.link.close();
        }
        Ok(link) => link.close(),
        Err(e) => result.error = Some(format!("publisher {n}: setup: {e}")),
    }
    let now = shared.clock.now_ns();
    shared.total_sent.fetch_add(result.sent, Ordering::AcqRel);
    shared.pubs_done_ns.fetch_max(now, Ordering::AcqRel);
    shared.pubs_done.fetch_add(1, Ordering::AcqRel);
    result
}

struct Publisher<'a> {
    shared: &'a Shared,
    plan: &'a Plan,
    n: usize,
    link: Link,
    sent: u64,
    acked: u64,
    lag: Option<Histogram<u64>>,
    /// Unsettled: when each delivery id in flight (mod 65,536; the window
    /// is at most 65,535) was due or written, in ns.
    sent_ns: Vec<u64>,
    ack_latency: Option<Histogram<u64>>,
}

impl Publisher<'_> {
    fn run(&mut self) -> io::Result<()> {
        let start_ns = self.shared.start_ns.load(Ordering::Acquire);
        self.link.stream.set_read_timeout(Some(SETUP_TIMEOUT))?;
        self.shared.clock.sleep_until(start_ns);
        if self.plan.rate == 0 {
            self.run_unthrottled(start_ns)?;
        } else {
            self.run_at_rate(start_ns)?;
        }
        while self.acked < self.sent && self.plan.acked() {
            self.poll(true)?;
        }
        Ok(())
    }

    /// Reads flows and dispositions: what is waiting, or (`block`) at
    /// least one read.
    fn poll(&mut self, block: bool) -> io::Result<()> {
        if block {
            match self.link.fill() {
                Ok(_) => {}
                Err(e) if super::wire::is_timeout(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no credit or acceptance for {} s ({} unaccepted, room {})",
                            SETUP_TIMEOUT.as_secs(),
                            self.sent - self.acked,
                            self.link.credit.room()
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        } else if self.link.try_fill()? == 0 {
            return Ok(());
        }
        let now = self.shared.clock.now_ns();
        let (sent_ns, hist) = (&self.sent_ns, &mut self.ack_latency);
        let mut acks = 0u64;
        self.link.drain(|ev| {
            if let Event::Accepted { first, last } = ev {
                let mut id = first;
                loop {
                    acks += 1;
                    if let (Some(h), Some(&t)) = (hist.as_mut(), sent_ns.get(id as u16 as usize)) {
                        h.saturating_record(now.saturating_sub(t).max(1));
                    }
                    if id == last {
                        break;
                    }
                    id = id.wrapping_add(1);
                }
            }
        })?;
        self.acked += acks;
        Ok(())
    }

    /// How many transfers may go now (at most `want`), blocking until at
    /// least `min(want, at_least)` may: credit, session window, and for
    /// unsettled ones the `--window`.
    fn room(&mut self, want: u64, at_least: u64) -> io::Result<u64> {
        let need = want.min(at_least).max(1);
        loop {
            let mut room = self.link.credit.room() as u64;
            if self.plan.acked() {
                room = room.min(self.plan.window.saturating_sub(self.sent - self.acked));
            }
            if room >= need {
                return Ok(want.min(room));
            }
            self.poll(true)?;
        }
    }

    fn run_unthrottled(&mut self, start_ns: u64) -> io::Result<()> {
        let plan = self.plan;
        let settled = !plan.acked();
        let payload = vec![0xa5u8; plan.size];
        let one = amqp::transfer_len(plan.size);
        let per_batch = (plan.batch / one).max(1);
        let mut batch = Vec::with_capacity(per_batch * one);
        for _ in 0..per_batch {
            amqp::put_transfer(&mut batch, 0, settled, &payload);
        }
        let end_ns = plan.duration_ns.map(|d| start_ns + d);
        let limit = plan.msgs.unwrap_or(u64::MAX);
        while self.sent < limit {
            self.poll(false)?;
            let want = (limit - self.sent).min(per_batch as u64);
            // Waiting for a quarter of a batch (or of the window) keeps
            // writes large without idling on the last credits.
            let at_least = (per_batch as u64 / 4).min(plan.window / 2).max(1);
            let k = self.room(want, at_least)? as usize;
            let now = self.shared.clock.now_ns();
            for frame in batch[..k * one].chunks_exact_mut(one) {
                let id = self.link.credit.next;
                amqp::patch_delivery(frame, id);
                if !settled {
                    self.sent_ns[id as u16 as usize] = now;
                }
                self.link.credit.next = id.wrapping_add(1);
            }
            self.link.write_all(&batch[..k * one])?;
            self.sent += k as u64;
            self.shared.sent[self.n].store(self.sent, Ordering::Relaxed);
            if end_ns.is_some_and(|e| self.shared.clock.now_ns() >= e) {
                break;
            }
        }
        Ok(())
    }

    fn run_at_rate(&mut self, start_ns: u64) -> io::Result<()> {
        let plan = self.plan;
        let clock = self.shared.clock;
        let settled = !plan.acked();
        let sched = Schedule::staggered(start_ns, plan.rate, self.n, plan.pubs);
        let limit = plan.sends(&sched, start_ns);
        let one = amqp::transfer_len(plan.size);
        let per_batch = (plan.batch / one).max(1) as u64;
        let mut payload = vec![0xa5u8; plan.size];
        let mut out = Vec::with_capacity(plan.batch.max(one));
        let mut last_poll = 0u64;
        while self.sent < limit {
            let now = clock.now_ns();
            if now.saturating_sub(last_poll) >= 1_000_000 {
                self.poll(false)?;
                last_poll = now;
            }
            let due = sched.due_at(now).min(limit);
            if due <= self.sent {
                let next_ns = sched.intended_ns(self.sent);
                if plan.acked() && self.acked < self.sent {
                    let wait = Duration::from_nanos(next_ns.saturating_sub(clock.now_ns()));
                    if self.link.stream.wait_readable(wait)? {
                        self.poll(false)?;
                    }
                } else {
                    clock.sleep_until(next_ns);
                }
                continue;
            }
            let k = self.room((due - self.sent).min(per_batch), 1)?;
            out.clear();
            let now = clock.now_ns();
            for i in self.sent..self.sent + k {
                let t = sched.intended_ns(i);
                payload[..8].copy_from_slice(&t.to_le_bytes());
                let id = self.link.credit.next;
                amqp::put_transfer(&mut out, id, settled, &payload);
                if !settled {
                    self.sent_ns[id as u16 as usize] = t;
                }
                self.link.credit.next = id.wrapping_add(1);
                if let Some(h) = self.lag.as_mut() {
                    h.saturating_record(now.saturating_sub(t).max(1));
                }
            }
            self.link.write_all(&out)?;
            self.sent += k;
            self.shared.sent[self.n].store(self.sent, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Adds unsettled delivery `id` to `runs`, contiguous runs of delivery
/// ids, each accepted with one ranged disposition.
fn add_to_runs(runs: &mut Vec<(u32, u32)>, id: u32) {
    match runs.last_mut() {
        Some((_, last)) if last.wrapping_add(1) == id => *last = id,
        _ => runs.push((id, id)),
    }
}

pub(super) fn subscriber(
    shared: &Shared,
    n: usize,
    run_id: u32,
    [ready, probed, go]: &Gates,
    tx: &crossbeam::channel::Sender<Interval>,
) -> SubResult {
    let plan = &shared.plan;
    pin(plan, n);
    let link = open(
        plan,
        &plan.sub_server,
        &format!("weft-bench-{run_id}-sub-{n}"),
        Role::Receiver,
    );
    if link.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    ready.wait();
    probed.wait();
    go.wait();
    let mut result = SubResult::default();
    let mut link = match link {
        Ok(l) if !shared.abort.load(Ordering::Acquire) => l,
        Ok(l) => {
            l.close();
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
    let mut last_write_ns = start_ns;
    let heartbeat_ns = link
        .peer_idle_timeout
        .map(|t| t.as_nanos() as u64 / 2)
        .unwrap_or(u64::MAX);
    // Reused for every read (a read holds at most a few thousand).
    let mut runs: Vec<(u32, u32)> = Vec::with_capacity(64);
    let mut run = |result: &mut SubResult, link: &mut Link| -> io::Result<()> {
        link.stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        loop {
            if expected.is_some_and(|e| received >= e) || shared.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let r = link.fill();
            let now = shared.clock.now_ns();
            match r {
                Ok(bytes) => {
                    if !latency && bytes < COALESCE_BYTES {
                        thread::sleep(COALESCE_PAUSE);
                        link.try_fill()?;
                    }
                    let mut got = 0u64;
                    let h = &mut interval;
                    runs.clear();
                    link.drain(|ev| {
                        if let Event::Message { payload, unsettled } = ev {
                            got += 1;
                            if let (Some(h), Some(ts)) = (h.as_mut(), payload.get(..8)) {
                                let ts = u64::from_le_bytes(ts.try_into().unwrap());
                                h.saturating_record(now.saturating_sub(ts).max(1));
                            }
                            if let Some(id) = unsettled {
                                add_to_runs(&mut runs, id);
                            }
                        }
                    })?;
                    for &(first, last) in &runs {
                        link.accept(first, last)?;
                    }
                    if link.flush()? {
                        last_write_ns = now;
                    }
                    if got > 0 {
                        received += got;
                        last_ns = now;
                        shared.received[n].store(received, Ordering::Relaxed);
                    }
                }
                Err(e) if super::wire::is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
            if now.saturating_sub(last_write_ns) >= heartbeat_ns {
                link.heartbeat()?;
                last_write_ns = now;
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
    if let Err(e) = run(&mut result, &mut link) {
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
    link.close();
    result
}

#[cfg(test)]
mod tests {
    use super::add_to_runs;

    #[test]
    fn unsettled_ids_group_into_contiguous_runs_across_the_wrap() {
        let mut runs = Vec::new();
        for id in [u32::MAX - 1, u32::MAX, 0, 1, 5, 6, 2] {
            add_to_runs(&mut runs, id);
        }
        assert_eq!(runs, vec![(u32::MAX - 1, 1), (5, 6), (2, 2)]);
    }
}
