//! One publisher thread of `weft bench`: connects, waits at the gates,
//! sends its probes (with `--sub-server`), then publishes: pre-encoded
//! batches as fast as the socket takes them (throughput), or each message
//! at its intended time (`--rate`), with a bounded window of unacknowledged
//! QoS 1 PUBLISHes (or NATS `--js` publishes, each answered on the
//! publisher's reply inbox). Acknowledged messages also measure their ack
//! latency: from the intended send time (`--rate`) or the write (as fast
//! as possible) to the acknowledgement, per message id.
//!
//! Owns: the publisher's write loop and its result. Must not touch: other
//! threads' state beyond the shared counters.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::probe::send_probes;
use super::report::PubResult;
use super::schedule::Schedule;
use super::wire::{self, Conn, Inbound};
use super::{
    new_histogram, pin, tighten_timer_slack, Gates, Plan, Protocol, Shared, SETUP_TIMEOUT,
};

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
    let mut conn = Conn::open(
        plan.proto,
        &plan.server,
        &format!("weft-bench-{run_id}-pub-{n}"),
        SETUP_TIMEOUT,
        plan.tls.as_ref(),
    );
    let inbox = format!("_INBOX.weftbench.{run_id}.{n}.");
    if plan.js {
        if let Ok(c) = &mut conn {
            if let Err(e) = c.subscribe_replies(&inbox) {
                conn = Err(io::Error::new(e.kind(), format!("reply inbox: {e}")));
            }
        }
    }
    if conn.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    ready.wait();
    if plan.probe_timeout.is_some() {
        if let Ok(c) = &mut conn {
            if let Err(e) = send_probes(shared, n, c) {
                shared.abort.store(true, Ordering::Release);
                conn = Err(io::Error::new(e.kind(), format!("probe: {e}")));
            }
        }
    }
    probed.wait();
    go.wait();
    let mut result = PubResult::default();
    match conn {
        Ok(c) if !shared.abort.load(Ordering::Acquire) => {
            let mut p = Publisher::new(shared, n, c, plan.js.then_some(inbox.as_str()));
            if let Err(e) = p.run() {
                result.error = Some(format!("publisher {n}: {e}"));
            }
            result.sent = p.sent;
            result.acked = p.acked;
            result.elapsed_s = p.elapsed_ns as f64 / 1e9;
            result.send_lag = p.lag;
            result.ack_latency = p.ack_latency;
            p.conn.close();
        }
        Ok(c) => c.close(),
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
    conn: Conn,
    sent: u64,
    acked: u64,
    next_id: u16,
    elapsed_ns: u64,
    /// Rate mode: how late each message was written, in ns.
    lag: Option<Histogram<u64>>,
    /// NATS `--js`: the reply subject before the id digits.
    reply_prefix: Option<&'a str>,
    /// Acknowledged modes: when each message id in flight was due (rate
    /// mode) or written, in ns; 65,536 slots, as many as ids.
    sent_ns: Vec<u64>,
    /// Acknowledged modes: acknowledgement time minus `sent_ns`, in ns.
    ack_latency: Option<Histogram<u64>>,
}

impl<'a> Publisher<'a> {
    fn new(shared: &'a Shared, n: usize, conn: Conn, reply_prefix: Option<&'a str>) -> Self {
        let acked = shared.plan.acked();
        Publisher {
            shared,
            plan: &shared.plan,
            n,
            conn,
            sent: 0,
            acked: 0,
            next_id: 1,
            elapsed_ns: 0,
            lag: (shared.plan.rate > 0).then(new_histogram),
            reply_prefix,
            sent_ns: if acked { vec![0; 1 << 16] } else { Vec::new() },
            ack_latency: acked.then(new_histogram),
        }
    }

    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = if id == u16::MAX { 1 } else { id + 1 };
        id
    }

    /// Numbers the messages of `batch` whose ids sit at `id_at` with fresh
    /// ids, sent (or due) at `at_ns`.
    fn number(&mut self, batch: &mut [u8], id_at: &[usize], at_ns: u64) {
        for &at in id_at {
            let id = self.take_id();
            wire::patch_id(self.plan.proto, batch, at, id);
            self.sent_ns[id as usize] = at_ns;
        }
    }

    /// Reads whatever is waiting (PUBACKs, PINGs) without blocking, or
    /// blocks for at least one read if `block`.
    fn poll(&mut self, block: bool) -> io::Result<()> {
        if block {
            match self.conn.fill() {
                Ok(_) => {}
                Err(e) if wire::is_timeout(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no acknowledgement for {} s ({} unacknowledged)",
                            SETUP_TIMEOUT.as_secs(),
                            self.sent - self.acked
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        } else if self.conn.try_fill()? == 0 {
            return Ok(());
        }
        let mut acks = 0;
        let now = self.shared.clock.now_ns();
        let (sent_ns, hist) = (&self.sent_ns, &mut self.ack_latency);
        self.conn.drain(|ev| {
            if let Inbound::PubAck(id) = ev {
                acks += 1;
                if let (Some(h), Some(&t)) = (hist.as_mut(), sent_ns.get(id as usize)) {
                    h.saturating_record(now.saturating_sub(t).max(1));
                }
            }
        })?;
        self.acked += acks;
        self.conn.flush_replies()
    }

    /// QoS 1: how many more messages the window allows, blocking until at
    /// least `min(want, at_least)` are allowed (waiting for a larger room
    /// keeps writes large when publishing as fast as possible).
    fn window_room(&mut self, want: u64, at_least: u64) -> io::Result<u64> {
        if !self.plan.acked() {
            return Ok(want);
        }
        let need = want.min(at_least).max(1);
        loop {
            let in_flight = self.sent - self.acked;
            let room = self.plan.window.saturating_sub(in_flight);
            if room >= need {
                return Ok(want.min(room));
            }
            self.poll(true)?;
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let start_ns = self.shared.start_ns.load(Ordering::Acquire);
        self.conn.stream.set_read_timeout(Some(SETUP_TIMEOUT))?;
        self.shared.clock.sleep_until(start_ns);
        let t0 = self.shared.clock.now_ns();
        let r = if self.plan.rate == 0 {
            self.run_unthrottled(start_ns)
        } else {
            self.run_at_rate(start_ns)
        };
        let r = r.and_then(|()| self.finish());
        self.elapsed_ns = self.shared.clock.now_ns() - t0;
        r
    }

    fn run_unthrottled(&mut self, start_ns: u64) -> io::Result<()> {
        let plan = self.plan;
        let payload = vec![0xa5u8; plan.size];
        let one = wire::message_len(
            plan.proto,
            &plan.subject,
            plan.qos,
            self.reply_prefix,
            plan.size,
        );
        let per_batch = (plan.batch / one).max(1);
        let mut batch = Vec::with_capacity(per_batch * one);
        let mut id_at = Vec::with_capacity(per_batch);
        for _ in 0..per_batch {
            let (id, _) = wire::put_message(
                plan.proto,
                &mut batch,
                &plan.subject,
                plan.qos,
                self.reply_prefix,
                &payload,
            );
            id_at.push(id);
        }
        let end_ns = plan.duration_ns.map(|d| start_ns + d);
        let limit = plan.msgs.unwrap_or(u64::MAX);
        let mut polls = 0u32;
        while self.sent < limit {
            let mut k = (limit - self.sent).min(per_batch as u64);
            if plan.acked() {
                // Acknowledgements are read as they come, so that the
                // window rarely closes.
                self.poll(false)?;
                k = self.window_room(k, plan.window / 2)?;
                let now = self.shared.clock.now_ns();
                self.number(&mut batch, &id_at[..k as usize], now);
            } else if plan.proto == Protocol::Nats {
                // Answer server PINGs and notice -ERR now and then.
                polls += 1;
                if polls.is_multiple_of(16) {
                    self.poll(false)?;
                }
            }
            self.conn.write_all(&batch[..k as usize * one])?;
            self.sent += k;
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
        let sched = Schedule::staggered(start_ns, plan.rate, self.n, plan.pubs);
        let limit = match (plan.msgs, plan.duration_ns) {
            (Some(m), _) => m,
            (None, Some(d)) => sched.count_before(start_ns + d),
            (None, None) => unreachable!("a count or a duration"),
        };
        let one = wire::message_len(
            plan.proto,
            &plan.subject,
            plan.qos,
            self.reply_prefix,
            plan.size,
        );
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
                    // Read acknowledgements while waiting for the next
                    // send, so that their latency is not rounded up to
                    // the send interval.
                    let wait = Duration::from_nanos(next_ns.saturating_sub(clock.now_ns()));
                    if self.conn.stream.wait_readable(wait)? {
                        self.poll(false)?;
                    }
                } else {
                    clock.sleep_until(next_ns);
                }
                continue;
            }
            let k = self.window_room((due - self.sent).min(per_batch), 1)?;
            out.clear();
            let now = clock.now_ns();
            for i in self.sent..self.sent + k {
                let t = sched.intended_ns(i);
                payload[..8].copy_from_slice(&t.to_le_bytes());
                let (id_at, _) = wire::put_message(
                    plan.proto,
                    &mut out,
                    &plan.subject,
                    plan.qos,
                    self.reply_prefix,
                    &payload,
                );
                if plan.acked() {
                    self.number(&mut out, &[id_at], t);
                }
                if let Some(h) = self.lag.as_mut() {
                    h.saturating_record(now.saturating_sub(t).max(1));
                }
            }
            self.conn.write_all(&out)?;
            self.sent += k;
            self.shared.sent[self.n].store(self.sent, Ordering::Relaxed);
        }
        Ok(())
    }

    /// QoS 1 / `--js`: waits for every acknowledgement. NATS: a PING/PONG
    /// round trip, so that the server has read everything when the
    /// publisher reports done.
    fn finish(&mut self) -> io::Result<()> {
        if self.plan.acked() {
            while self.acked < self.sent {
                self.poll(true)?;
            }
        }
        if self.plan.proto == Protocol::Nats {
            self.conn.write_all(b"PING\r\n")?;
            let mut pong = false;
            while !pong {
                match self.conn.fill() {
                    Ok(_) => {}
                    Err(e) if wire::is_timeout(&e) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no PONG after publishing",
                        ))
                    }
                    Err(e) => return Err(e),
                }
                self.conn.drain(|ev| pong |= matches!(ev, Inbound::Pong))?;
                self.conn.flush_replies()?;
            }
        }
        Ok(())
    }
}
