//! The connection driver: runs any session machine ([`Machine`]) over any
//! byte stream ([`Transport`]), the same loop for every protocol.
//!
//! One turn: read into the bounded read buffer (lent by the shard's pool
//! while data moves and given back when the read waits with nothing
//! pending, so an idle connection holds none; grown to the packet begun,
//! capped at the connection's `read_max`), decode every complete packet,
//! feed each to the machine with `now`, and carry its actions out in
//! order: writes go into the session's mailbox (so acknowledgements keep
//! their place among deliveries), requests go to the protocol's [`Glue`]
//! (which calls the shard context: synchronously when nothing has to wait,
//! as a publish to this shard's subscribers; through `Glue::wait` when
//! something does, as a barrier or a full ring), a close ends the loop. Between two reads: pause for
//! subscribers this connection's publishes overfilled (`congested`, held
//! publishers), yield after a read budget (`Fairness`), and race the read
//! against the session closed from elsewhere and the machine's next
//! deadline (keep-alive, ping interval), which fires `handle_timeout`.
//! The writer task (`io::write_loop`) drains the mailbox into one write
//! per batch.
//!
//! Closing, for every protocol: the close's reason is the first one
//! (the machine's, or the mailbox's when closed elsewhere: slow consumer,
//! takeover, shutdown); the writer finishes the packet it began (bounded),
//! then the machine's last words (`-ERR`, DISCONNECT with a reason) are
//! written and the stream half-closed and drained (`io::last_words`); a
//! slow consumer with no last words is reset instead of drained.
//!
//! Owns: the loop and the order of effects. Must not touch: protocol rules
//! (the machines), routing (the glue calls `ctx`). Hot path: one machine
//! call and one action list per packet, no allocation of its own; rerun
//! `weft bench` after changing it.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::ctx::ShardCtx;
use super::io::{self, Fairness, ReadBuffer, READ_BUFFER_INITIAL};
use super::mailbox::Mailbox;
use super::stats::Counters;
use super::transport::Transport;
use crate::session::{Action, Actions, CloseReason, Machine};

/// A protocol's way to the router: carries out one request of its machine.
/// An answer is given by calling the machine (e.g. NATS `subscribed`),
/// whose actions are appended to `out` and carried out next.
///
/// Two halves, so that the per-packet path builds no future: `request`
/// does what needs no waiting and says whether it finished; when it did
/// not (a barrier, a ring with no room, a takeover), it kept what is left
/// in the glue and the driver awaits `wait`, which finishes it before the
/// next action.
#[allow(async_fn_in_trait)] // one executor per thread: no `Send` needed
pub trait Glue<M: Machine> {
    /// Carries out `request` now; false when the rest is left for `wait`.
    fn request<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut M,
        request: M::Request,
        out: &mut Actions<M::Request>,
    ) -> bool;

    /// Before each feed: tells the machine what the shard's side changed
    /// since (AMQP: weft's next-outgoing-id per session, which the
    /// machine's flows carry). Nothing by default.
    fn before_feed<T: Transport>(&mut self, _conn: &Connection<T>, _machine: &mut M) {}

    /// Finishes the request `request` left unfinished.
    async fn wait<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut M,
        out: &mut Actions<M::Request>,
    );
}

/// One connection as the driver runs it: the stream, the session's
/// mailbox once it has one (MQTT registers at CONNECT; until then writes
/// go straight to the stream), and its writer task.
pub struct Connection<T: Transport> {
    pub ctx: Rc<ShardCtx>,
    pub transport: Rc<T>,
    mailbox: Option<Rc<Mailbox>>,
    /// Subscribers this connection's publishes overfilled: it pauses for
    /// them before its next read (`ctx.pause_for`).
    pub congested: Vec<Rc<Mailbox>>,
    writer: Option<glommio::Task<bool>>,
    /// The read buffer's ceiling for this connection (at least one packet).
    pub read_max: usize,
}

impl<T: Transport> Connection<T> {
    pub fn new(ctx: Rc<ShardCtx>, transport: Rc<T>) -> Connection<T> {
        let read_max = ctx.limits().read_buffer_bytes_max;
        Connection {
            ctx,
            transport,
            mailbox: None,
            congested: Vec::new(),
            writer: None,
            read_max,
        }
    }

    /// Gives the connection its session's mailbox and starts its writer.
    pub fn attach(&mut self, mailbox: Rc<Mailbox>) {
        debug_assert!(self.mailbox.is_none(), "one mailbox per connection");
        self.writer = Some(glommio::spawn_local(io::write_loop(
            self.ctx.clone(),
            mailbox.clone(),
            self.transport.clone(),
        )));
        self.mailbox = Some(mailbox);
    }

    pub fn mailbox(&self) -> Option<&Rc<Mailbox>> {
        self.mailbox.as_ref()
    }

    /// The shard, the mailbox and the congested list at once, for a glue
    /// that publishes (no reference-count traffic per request).
    pub fn parts(&mut self) -> (&Rc<ShardCtx>, Option<&Rc<Mailbox>>, &mut Vec<Rc<Mailbox>>) {
        (&self.ctx, self.mailbox.as_ref(), &mut self.congested)
    }

    /// Writes `bytes` now, before the connection has a mailbox.
    async fn write_direct(&self, bytes: &[u8]) -> Result<(), CloseReason> {
        io::send_all(&*self.transport, bytes)
            .await
            .map_err(|_| CloseReason::WriteError)
    }
}

/// The machine's next deadline as a glommio timer, re-armed only when the
/// deadline comes earlier than the armed one (a later one is picked up
/// when the armed timer fires and the machine finds nothing due), so a
/// deadline that moves with every packet costs no timer per packet.
#[derive(Default)]
struct Alarm {
    armed: Option<(Instant, glommio::timer::Timer)>,
}

impl Alarm {
    fn arm(&mut self, deadline: Option<Instant>, now: Instant) {
        match (deadline, &self.armed) {
            (None, _) => self.armed = None,
            (Some(at), Some((armed_at, _))) if *armed_at <= at => {}
            (Some(at), _) => {
                let wait = at.saturating_duration_since(now);
                self.armed = Some((at, glommio::timer::Timer::new(wait)));
            }
        }
    }

    fn due(&self, now: Instant) -> bool {
        matches!(self.armed, Some((at, _)) if at <= now)
    }

    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if let Some((_, timer)) = &mut self.armed {
            if std::pin::Pin::new(timer).poll(cx).is_ready() {
                self.armed = None;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

use std::future::Future;

enum Woke {
    Data,
    Timeout,
    Closed(CloseReason),
}

/// Runs `machine` on `conn` until the connection ends; returns why. The
/// caller registered the session (and attached its mailbox) before, and
/// releases it after.
pub async fn run<T, M, G>(conn: &mut Connection<T>, machine: &mut M, glue: &mut G) -> CloseReason
where
    T: Transport,
    M: Machine,
    G: Glue<M>,
{
    let mut out = Actions::default();
    let mut last = Vec::new();
    // No buffer yet: the shard lends one when the socket has data (`read`).
    let mut rb = ReadBuffer::default();
    let mut fairness = Fairness::default();
    let mut alarm = Alarm::default();
    machine.start(Instant::now(), &mut out);
    // The reason, and whether the machine decided it (its last words are
    // then in `last`) or it came from elsewhere (the stream, the mailbox).
    let mut end: Option<(CloseReason, bool)> = carry_out(conn, machine, glue, &mut out, &mut last)
        .await
        .err()
        .map(|r| (r, true));
    'turns: while end.is_none() {
        // One clock read per read: every packet of it arrived by then.
        let now = Instant::now();
        let attached = conn.mailbox.is_some();
        if alarm.due(now) {
            // A connection whose reads never wait still meets its timers.
            if let Err(r) = fire(conn, machine, glue, &mut out, &mut last, &mut alarm).await {
                end = Some((r, true));
                break 'turns;
            }
        }
        loop {
            out.clear();
            glue.before_feed(conn, machine);
            match machine.feed(rb.filled(), now, &mut out) {
                Ok(Some(used)) => rb.start += used,
                Ok(None) => break,
                Err(e) => {
                    log_protocol_error::<T, M>(conn, &e);
                    machine.malformed(&e, now, &mut out);
                    if out.closed().is_none() {
                        out.close(CloseReason::ProtocolError);
                    }
                }
            }
            // `carry_out`, inline: the per-packet path awaits the glue
            // directly.
            let mut cursor = Cursor::new(&out);
            loop {
                match step(conn, &out, &mut cursor, &mut last) {
                    Step::Done => break,
                    Step::Close(r) => {
                        end = Some((r, true));
                        break 'turns;
                    }
                    Step::Direct { from, to } => {
                        if let Err(r) = conn.write_direct(&out.bytes[from..to]).await {
                            end = Some((r, false));
                            break 'turns;
                        }
                    }
                    Step::Request => {
                        let request = cursor.take(&mut out);
                        let before = out.list.len();
                        if !glue.request(conn, machine, request, &mut out) {
                            // Boxed (see `carry_out`).
                            Box::pin(glue.wait(conn, machine, &mut out)).await;
                        }
                        cursor.answered(&out, before);
                    }
                }
            }
        }
        if !attached && conn.mailbox.is_some() {
            // The handshake's turn (the session registered): its actions
            // (four slots of ~80 B) are not kept for a connection that may
            // stay idle from here; its next packet allocates them again.
            out = Actions::default();
        }
        alarm.arm(machine.next_deadline(), now);
        let pending = machine.packet_len(rb.filled());
        match read(conn, &mut rb, &mut fairness, &mut alarm, pending).await {
            Woke::Data => {}
            Woke::Timeout => {
                if let Err(r) = fire(conn, machine, glue, &mut out, &mut last, &mut alarm).await {
                    end = Some((r, true));
                }
            }
            Woke::Closed(r) => end = Some((r, false)),
        }
    }
    let (mut reason, decided_here) = end.expect("the loop ends with a reason");
    finish(conn, machine, &mut reason, decided_here, &mut out, last).await;
    reason
}

/// What carrying out an action list stopped at: something to await.
enum Step {
    /// The action before the cursor is a request: `Cursor::take` it.
    Request,
    /// A write before the connection has a mailbox: straight to the stream.
    Direct {
        from: usize,
        to: usize,
    },
    Close(CloseReason),
    Done,
}

/// Where a carry-out of an action list stands.
struct Cursor {
    at: usize,
    /// A close is in the list: its writes are the last words.
    closing: bool,
}

impl Cursor {
    fn new<R>(out: &Actions<R>) -> Cursor {
        Cursor {
            at: 0,
            closing: out.closed().is_some(),
        }
    }

    /// The request `step` stopped at, moved out of the list. What is left
    /// in its place is a write no new write merges into
    /// (`Actions::write` extends a last write ending where the new one
    /// starts), never carried out: the list is neither copied nor
    /// reallocated per packet, and the glue's answers are appended after.
    fn take<R>(&self, out: &mut Actions<R>) -> R {
        let done = Action::Write {
            from: usize::MAX,
            to: usize::MAX,
        };
        match std::mem::replace(&mut out.list[self.at - 1], done) {
            Action::Request(request) => request,
            _ => unreachable!("`Step::Request` names a request"),
        }
    }

    /// After the glue answered a request: the answer's actions were
    /// appended after it.
    fn answered<R>(&mut self, out: &Actions<R>, before: usize) {
        if out.list.len() != before {
            self.closing = out.list[self.at..]
                .iter()
                .any(|a| matches!(a, Action::Close(_)));
        }
    }
}

/// Carries out the actions that need no waiting (writes into the mailbox,
/// last words) up to the next one that does, by index and by reference:
/// only a request is moved out of the list (`Cursor::take`), once.
#[inline(always)]
fn step<T: Transport, R>(
    conn: &Connection<T>,
    out: &Actions<R>,
    cursor: &mut Cursor,
    last: &mut Vec<u8>,
) -> Step {
    while let Some(action) = out.list.get(cursor.at) {
        cursor.at += 1;
        match *action {
            Action::Write { from, to } if cursor.closing => {
                last.extend_from_slice(&out.bytes[from..to]);
            }
            Action::Write { from, to } => match &conn.mailbox {
                Some(m) => m.send(&out.bytes[from..to]),
                None => return Step::Direct { from, to },
            },
            Action::Request(_) => return Step::Request,
            Action::Close(reason) => return Step::Close(reason),
        }
    }
    Step::Done
}

/// Carries out `out`'s actions in order. Writes followed by a close in the
/// same list are kept in `last` (the last words) instead of queued.
/// (The per-packet loop in `run` does the same inline, one future less.)
async fn carry_out<T, M, G>(
    conn: &mut Connection<T>,
    machine: &mut M,
    glue: &mut G,
    out: &mut Actions<M::Request>,
    last: &mut Vec<u8>,
) -> Result<(), CloseReason>
where
    T: Transport,
    M: Machine,
    G: Glue<M>,
{
    let mut cursor = Cursor::new(out);
    loop {
        match step(conn, out, &mut cursor, last) {
            Step::Done => return Ok(()),
            Step::Close(reason) => return Err(reason),
            Step::Direct { from, to } => conn.write_direct(&out.bytes[from..to]).await?,
            Step::Request => {
                let request = cursor.take(out);
                let before = out.list.len();
                if !glue.request(conn, machine, request, out) {
                    // Boxed: a request that waits (a barrier, a full ring,
                    // the log) is the rare path, and its state (the
                    // glue's round trips, a publish to other shards:
                    // ~1.5 KiB) would otherwise be part of every
                    // connection's future, idle ones included
                    // (`driver_mqtt::tests::idle_connection_future_is_small`).
                    Box::pin(glue.wait(conn, machine, out)).await;
                }
                cursor.answered(out, before);
            }
        }
    }
}

/// A deadline of the machine came: `handle_timeout`, its actions, and the
/// timer re-armed at the next deadline.
async fn fire<T, M, G>(
    conn: &mut Connection<T>,
    machine: &mut M,
    glue: &mut G,
    out: &mut Actions<M::Request>,
    last: &mut Vec<u8>,
    alarm: &mut Alarm,
) -> Result<(), CloseReason>
where
    T: Transport,
    M: Machine,
    G: Glue<M>,
{
    let now = Instant::now();
    out.clear();
    machine.handle_timeout(now, out);
    let outcome = carry_out(conn, machine, glue, out, last).await;
    let next = machine.next_deadline();
    debug_assert!(
        next.is_none_or(|at| at > now),
        "a timer re-armed in the past"
    );
    alarm.armed = None;
    alarm.arm(next.map(|at| at.max(now + Duration::from_millis(1))), now);
    outcome
}

/// Between two parses: the pauses, the fairness yield, then a read raced
/// against the session closed elsewhere and the machine's timer.
async fn read<T: Transport>(
    conn: &mut Connection<T>,
    rb: &mut ReadBuffer,
    fairness: &mut Fairness,
    alarm: &mut Alarm,
    pending: usize,
) -> Woke {
    let ctx = &conn.ctx;
    let mut paused = false;
    if !conn.congested.is_empty() {
        paused = true;
        ctx.pause_for(&mut conn.congested).await;
    }
    if let Some(m) = &conn.mailbox {
        if m.hold.is_held() {
            // Its events overfilled a subscriber on another shard (`hold`).
            paused = true;
            ctx.wait_held(m).await;
        }
    }
    if !paused {
        fairness.after_batch().await;
    }
    let read_max = conn.read_max;
    let mailbox = conn.mailbox.as_deref();
    let transport = &*conn.transport;
    let woke = poll_fn(|cx| {
        if let Some(m) = mailbox {
            if let Poll::Ready(r) = m.poll_closed(cx) {
                return Poll::Ready(Err(Woke::Closed(r)));
            }
        }
        // The buffer is lent by the shard only while data moves: taken for
        // the read (a read fills it within the call: no transport keeps
        // it past `poll_read`), given back when the read waits with
        // nothing pending, so an idle connection holds none.
        if rb.data.is_empty() {
            rb.data = ctx.take_read_buffer(READ_BUFFER_INITIAL);
        }
        let spare = rb.spare(read_max, pending);
        let room = spare.len();
        match transport.poll_read(cx, spare) {
            // The timer is registered only when the read waits (its poll
            // costs a reactor insert); a busy reader meets its deadlines
            // through `Alarm::due` at the top of each turn.
            Poll::Pending => {
                if rb.start == rb.end && rb.data.len() == READ_BUFFER_INITIAL {
                    ctx.give_read_buffer(std::mem::take(&mut rb.data), READ_BUFFER_INITIAL);
                    (rb.start, rb.end) = (0, 0);
                }
                if alarm.poll(cx).is_ready() {
                    Poll::Ready(Err(Woke::Timeout))
                } else {
                    Poll::Pending
                }
            }
            Poll::Ready(Ok(0)) => Poll::Ready(Err(Woke::Closed(CloseReason::PeerClosed))),
            Poll::Ready(Ok(n)) => Poll::Ready(Ok((n, room))),
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                Poll::Ready(Err(Woke::Closed(CloseReason::KeepAliveTimeout)))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(Woke::Closed(CloseReason::ReadError))),
        }
    })
    .await;
    match woke {
        Ok((n, room)) => {
            ctx.received_ns.set(crate::event::now_ns());
            Counters::add(&ctx.counters.bytes_in, n as u64);
            fairness.read(n, room);
            rb.end += n;
            rb.settle(n, room, read_max);
            Woke::Data
        }
        Err(w) => w,
    }
}

/// The close, the same for every protocol: first reason wins; the writer
/// stops (finishing the packet begun, bounded); the last words go out if
/// the writer stopped between two packets; a slow consumer that gets no
/// last words is reset rather than drained.
async fn finish<T: Transport, M: Machine>(
    conn: &mut Connection<T>,
    machine: &mut M,
    reason: &mut CloseReason,
    decided_here: bool,
    out: &mut Actions<M::Request>,
    mut last: Vec<u8>,
) {
    if let Some(m) = &conn.mailbox {
        m.close(*reason);
        *reason = m.close_reason().unwrap_or(*reason);
    }
    if !decided_here {
        // Closed from elsewhere or by the stream: the machine's words for it.
        out.clear();
        machine.closing(*reason, out);
        for action in &out.list {
            if let Action::Write { from, to } = action {
                last.extend_from_slice(&out.bytes[*from..*to]);
            }
        }
    }
    let between_packets = match conn.writer.take() {
        Some(writer) => writer.await,
        None => true,
    };
    if last.is_empty() {
        if *reason == CloseReason::SlowConsumer {
            io::reset_on_close(&*conn.transport);
        }
    } else if between_packets {
        // Best effort, bounded: the client may not be reading at all.
        // Boxed: rare, and its state (a 4 KiB drain buffer) would
        // otherwise be part of every connection's future, idle ones
        // included (`driver_mqtt::tests::idle_connection_sizes`).
        Box::pin(io::last_words(&*conn.transport, &last)).await;
    }
    match *reason {
        CloseReason::ProtocolError => Counters::add(&conn.ctx.counters.protocol_errors, 1),
        CloseReason::KeepAliveTimeout => Counters::add(&conn.ctx.counters.keep_alive_timeouts, 1),
        _ => {}
    }
}

fn log_protocol_error<T: Transport, M: Machine>(conn: &Connection<T>, error: &M::Malformed) {
    let ctx = &conn.ctx;
    if ctx.log_limiter.allow() {
        let peer = conn.transport.peer_addr();
        let client_id = conn.mailbox.as_ref().map(|m| &*m.client_id);
        tracing::info!(shard = ctx.id, ?peer, client_id, protocol = M::NAME, error = %error, "closing connection: protocol error");
    }
}

/// The end every glue with a mailbox shares (NATS, AMQP): the session
/// leaves the shard, its close is logged (at info with the protocol's own
/// error, rate-limited; at debug always), and its accept-time count is
/// released.
pub fn wrap_up(
    ctx: &ShardCtx,
    mailbox: &Rc<Mailbox>,
    peer: Option<std::net::SocketAddr>,
    reason: CloseReason,
    error: Option<&str>,
    protocol: &'static str,
) {
    ctx.unregister(mailbox);
    if let Some(error) = error {
        if ctx.log_limiter.allow() {
            tracing::info!(
                shard = ctx.id,
                ?peer,
                reason = reason.label(),
                error,
                "{protocol} connection closed"
            );
        }
    }
    tracing::debug!(
        shard = ctx.id,
        ?peer,
        reason = reason.label(),
        "{protocol} connection closed"
    );
    release(ctx);
}

/// Releases the accept-time count of a connection that ended.
pub fn release(ctx: &ShardCtx) {
    ctx.global_connections()
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    Counters::sub(&ctx.counters.connections, 1);
}

#[cfg(test)]
mod tests;
