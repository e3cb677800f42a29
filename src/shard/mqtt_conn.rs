//! One MQTT connection (3.1, 3.1.1 or 5: the CONNECT decides): the socket
//! loop that feeds the session machine (`mqtt::session`) and carries its
//! actions out against this shard — the only MQTT code that touches a
//! socket or the shard context.
//!
//! Owns: the glue between the machine's requests and `ShardCtx` (register
//! and take over, publish with backpressure, subscribe with barriers,
//! park, wills), the writer task of the connection, and the log line of a
//! refusal or protocol error. Must not touch: MQTT rules (the machine
//! decides; this file only does what it is asked). The read buffer starts
//! at `io::READ_BUFFER_INITIAL` (256 B) and grows on demand up to
//! `read_buffer_bytes_max`, or to the size of one packet if that is
//! larger; every complete packet of one read is handled before the next
//! read, and the writer gathers everything queued into one write syscall.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::ctx::ShardCtx;
use super::io::{
    last_words, read_more, read_some, reset_on_close, write_loop, Fairness, Read, ReadBuffer,
    Stream, READ_BUFFER_INITIAL,
};
use super::session::{CloseReason, Protocol, Session};
use super::stats::Counters;
use crate::mqtt::session::{
    Action, Actions, Deadline, Established, Machine, Problem, Request, Settings, SubscribeOutcome,
    Version,
};

/// Serves one accepted connection to its end. The caller has counted it
/// against `connections_max`; this releases that count.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    super::io::configure(&stream, &ctx.config().socket);
    let stream = Rc::new(RefCell::new(stream));
    let mut conn = Conn {
        machine: Machine::new(Settings::from_config(&ctx.config()), Instant::now()),
        out: Actions::default(),
        reply: Actions::default(),
        peer,
        client_id: None,
    };
    let reason = conn.run(&ctx, &stream).await;
    match reason {
        CloseReason::ProtocolError => Counters::add(&ctx.counters.protocol_errors, 1),
        CloseReason::KeepAliveTimeout => Counters::add(&ctx.counters.keep_alive_timeouts, 1),
        _ => {}
    }
    tracing::debug!(
        shard = ctx.id,
        ?peer,
        client_id = conn.client_id.as_deref(),
        reason = reason.label(),
        "connection closed"
    );
    ctx.global_connections()
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    Counters::sub(&ctx.counters.connections, 1);
}

struct Conn {
    machine: Machine,
    /// Actions of the packet being handled, then of the answers to its
    /// requests; both reused for the connection's life.
    out: Actions<Request>,
    reply: Actions<Request>,
    peer: Option<std::net::SocketAddr>,
    client_id: Option<Box<str>>,
}

impl Conn {
    async fn run(&mut self, ctx: &Rc<ShardCtx>, stream: &Rc<Stream>) -> CloseReason {
        let mut rb = ReadBuffer {
            data: vec![0; READ_BUFFER_INITIAL],
            ..ReadBuffer::default()
        };
        let session = match self.handshake(ctx, stream, &mut rb).await {
            Ok(session) => session,
            Err(reason) => return reason,
        };
        let writer = glommio::spawn_local(write_loop(ctx.clone(), session.clone(), stream.clone()));
        let reason = self.session_loop(ctx, &session, stream, &mut rb).await;
        self.finish(ctx, &session, stream, writer, reason).await
    }

    /// Until the session is established (CONNACK queued) or refused.
    async fn handshake(
        &mut self,
        ctx: &Rc<ShardCtx>,
        stream: &Stream,
        rb: &mut ReadBuffer,
    ) -> Result<Rc<Session>, CloseReason> {
        let read_max = ctx.limits().read_buffer_bytes_max;
        loop {
            self.out.clear();
            let used = self
                .machine
                .feed(rb.filled(), Instant::now(), &mut self.out);
            rb.start += used.min(rb.end - rb.start);
            if let Some(reason) = self.out.closed() {
                self.log_problem(ctx);
                let words = self.last_words_before_close();
                if !words.is_empty() {
                    // Boxed: rare, and its state would weigh on every
                    // connection's future.
                    Box::pin(last_words(stream, &words)).await;
                }
                return Err(reason);
            }
            if let Some(Action::Request(Request::Establish(_))) = self.out.list.last() {
                let Some(Action::Request(Request::Establish(e))) = self.out.list.pop() else {
                    unreachable!()
                };
                return self.establish(ctx, stream, *e).await;
            }
            if ctx.stopping.get() {
                return Err(CloseReason::ServerShutdown);
            }
            // The connect timeout bounds each wait for CONNECT bytes.
            let now = Instant::now();
            let left = self
                .machine
                .next_deadline()
                .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
            let _ = stream
                .borrow()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let spare = rb.spare(read_max, Machine::pending_len(rb.filled()));
            match read_some(stream, spare, None).await {
                Read::Data(n) => rb.end += n,
                Read::Closed(CloseReason::KeepAliveTimeout) => {
                    self.out.clear();
                    self.machine
                        .handle_timeout(Instant::now().max(self.deadline_or_now()), &mut self.out);
                    return Err(self.out.closed().unwrap_or(CloseReason::ConnectTimeout));
                }
                Read::Closed(r) => return Err(r),
            }
        }
    }

    fn deadline_or_now(&self) -> Instant {
        self.machine.next_deadline().unwrap_or_else(Instant::now)
    }

    /// Registers the session, ends any other connection of its client id
    /// (on any shard) and resumes its state; then CONNACK and the backlog.
    async fn establish(
        &mut self,
        ctx: &Rc<ShardCtx>,
        stream: &Stream,
        e: crate::mqtt::session::Establish,
    ) -> Result<Rc<Session>, CloseReason> {
        let client_id = e.client_id.unwrap_or_else(|| ctx.assign_client_id());
        let session = ctx.register(Protocol::Mqtt, client_id);
        self.client_id = Some(session.client_id.clone());
        session.peer.set(stream.borrow().peer_addr().ok());
        session.persistent.set(e.persistent);
        if e.version == Version::V5 {
            session.version.set(5);
            session.receive_max.set(e.receive_max);
            session.max_packet.set(e.max_packet);
            session.client_alias_max.set(e.client_alias_max);
            session.expiry_s.set(e.expiry_s);
        }
        let state = ctx.establish(&session, e.resume).await;
        if let Some(reason) = session.close_reason() {
            // Taken over by a newer connection during the handshake.
            ctx.unregister(&session);
            return Err(reason);
        }
        let present = state.is_some();
        let backlog = match state {
            Some(state) => Some(ctx.install(&session, state).await),
            None => None,
        };
        self.reply.clear();
        self.machine.on_established(
            Established {
                client_id: &session.client_id,
                present,
            },
            Instant::now(),
            &mut self.reply,
        );
        queue_writes(&session, &self.reply);
        if let Some(backlog) = backlog {
            session.restore_backlog(backlog);
        }
        let timeout = self.machine.keep_alive_window();
        let _ = stream.borrow().set_read_timeout(timeout);
        Ok(session)
    }

    async fn session_loop(
        &mut self,
        ctx: &Rc<ShardCtx>,
        session: &Rc<Session>,
        stream: &Stream,
        rb: &mut ReadBuffer,
    ) -> CloseReason {
        let read_max = ctx.limits().read_buffer_bytes_max;
        let mut congested: Vec<Rc<Session>> = Vec::new();
        let mut fairness = Fairness::default();
        loop {
            loop {
                self.out.clear();
                let used = self
                    .machine
                    .feed(rb.filled(), Instant::now(), &mut self.out);
                if used == 0 && self.out.list.is_empty() {
                    break;
                }
                rb.start += used.min(rb.end - rb.start);
                if let Some(reason) = self.carry(ctx, session, &mut congested).await {
                    return reason;
                }
            }
            let pending = Machine::pending_len(rb.filled());
            if let Err(r) = read_more(
                ctx,
                stream,
                rb,
                session,
                &mut congested,
                &mut fairness,
                read_max,
                pending,
            )
            .await
            {
                // The socket's read timeout is the keep-alive window: the
                // machine ends it (and says why, in MQTT 5).
                self.out.clear();
                self.machine.close(r, &mut self.out);
                return self.out.closed().unwrap_or(r);
            }
        }
    }

    /// Carries out `self.out` up to a `Close` (returned; the actions from
    /// there on are the connection's end, for `finish`).
    async fn carry(
        &mut self,
        ctx: &Rc<ShardCtx>,
        session: &Rc<Session>,
        congested: &mut Vec<Rc<Session>>,
    ) -> Option<CloseReason> {
        if let Some(reason) = self.out.closed() {
            return Some(reason);
        }
        let list = std::mem::take(&mut self.out.list);
        for action in list {
            match action {
                Action::Write { from, to } => queue(session, &self.out.bytes[from..to]),
                Action::Close(reason) => return Some(reason),
                Action::Request(request) => {
                    self.reply.clear();
                    self.request(ctx, session, request, congested).await;
                    // Answers: writes and simple requests only.
                    let replies = std::mem::take(&mut self.reply.list);
                    for action in replies {
                        match action {
                            Action::Write { from, to } => {
                                queue(session, &self.reply.bytes[from..to])
                            }
                            Action::Request(r) => self.request(ctx, session, r, congested).await,
                            Action::Close(reason) => return Some(reason),
                        }
                    }
                }
            }
        }
        None
    }

    async fn request(
        &mut self,
        ctx: &Rc<ShardCtx>,
        session: &Rc<Session>,
        request: Request,
        congested: &mut Vec<Rc<Session>>,
    ) {
        match request {
            Request::Publish { event, retain, ack } => {
                let event = event.with_origin(ctx.origin(session));
                if retain {
                    ctx.retain(&event);
                }
                let matched = ctx.publish(event, congested).await;
                if let Some(ack) = ack {
                    self.machine.on_published(ack, matched, &mut self.reply);
                }
            }
            Request::Barrier => ctx.barrier().await,
            Request::Subscribe(mut sub) => {
                let max = ctx.limits().subscriptions_per_session_max;
                for f in sub.filters.iter_mut() {
                    if f.outcome != SubscribeOutcome::Pending {
                        continue;
                    }
                    let subs = session.subscriptions.borrow();
                    let existed = subs.contains_key(&*f.filter);
                    let full = !existed && subs.len() >= max;
                    drop(subs);
                    if full {
                        f.outcome = SubscribeOutcome::Full;
                        continue;
                    }
                    ctx.subscribe(session, &f.filter, f.flags);
                    // The identifier replaces the previous one (MQTT 5).
                    if session.version.get() == 5 {
                        let mut ids = session.sub_identifiers.borrow_mut();
                        match sub.identifier {
                            Some(id) => {
                                ids.insert(f.filter.clone(), id);
                            }
                            None => {
                                ids.remove(&*f.filter);
                            }
                        }
                    }
                    f.outcome = SubscribeOutcome::Granted { existed };
                }
                ctx.barrier().await;
                self.machine.on_subscribed(*sub, &mut self.reply);
            }
            Request::Unsubscribe(mut unsub) => {
                for (filter, outcome) in unsub.filters.iter_mut() {
                    if outcome.is_some() {
                        *outcome = Some(ctx.unsubscribe(session, filter));
                    }
                }
                self.machine.on_unsubscribed(*unsub, &mut self.reply);
            }
            Request::SendRetained { filter, qos } => ctx.send_retained(session, &filter, qos),
            Request::Acknowledge(id) => {
                if !session.acknowledge(id) {
                    tracing::debug!(
                        shard = ctx.id,
                        id,
                        "PUBACK/PUBCOMP for no delivery in flight"
                    );
                }
            }
            Request::Received(id) => {
                let known = session.received(id);
                if !known {
                    tracing::debug!(shard = ctx.id, id, "PUBREC for no QoS 2 delivery in flight");
                }
                self.machine.on_received(id, known, &mut self.reply);
            }
            Request::Forget(id) => session.forget(id),
            // Only at the handshake, and at the end (`finish`).
            Request::Establish(_) | Request::End { .. } | Request::Will { .. } => {}
        }
    }

    /// The writes that go right before a `Close`: the last words.
    fn last_words_before_close(&self) -> Vec<u8> {
        let mut words = Vec::new();
        for action in &self.out.list {
            match action {
                Action::Write { from, to } => words.extend_from_slice(&self.out.bytes[*from..*to]),
                Action::Close(_) => break,
                Action::Request(_) => words.clear(),
            }
        }
        words
    }

    /// The connection ends: stop the writer, say the last words if the
    /// writer stopped between two packets, then keep or release the
    /// session and publish (or delay) the will.
    async fn finish(
        &mut self,
        ctx: &Rc<ShardCtx>,
        session: &Rc<Session>,
        stream: &Stream,
        writer: glommio::Task<bool>,
        reason: CloseReason,
    ) -> CloseReason {
        self.log_problem(ctx);
        session.close(reason);
        // The first reason wins (closed from elsewhere before this one).
        let reason = session.close_reason().unwrap_or(reason);
        let between_packets = writer.await;
        let words = self.last_words_before_close();
        if between_packets && !words.is_empty() {
            // Best effort and bounded: the client may not be reading.
            last_words(stream, &words).await;
        }
        self.out.clear();
        self.machine.finish(reason, &mut self.out);
        let mut end = None;
        let mut will = None;
        for action in std::mem::take(&mut self.out.list) {
            match action {
                Action::Request(Request::End { keep }) => end = Some(keep),
                Action::Request(Request::Will { event, delay }) => will = Some((event, delay)),
                _ => {}
            }
        }
        let keep = end.flatten();
        session.persistent.set(keep.is_some());
        if session.version.get() == 5 {
            // The expiry in force, DISCONNECT's included (whole seconds).
            session
                .expiry_s
                .set(keep.map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32));
        }
        // A kept session outlives its connection (unless another
        // connection took it over, which released it here).
        let kept = if keep.is_some() && !session.detached.get() {
            Some(ctx.park(session))
        } else {
            ctx.unregister(session);
            None
        };
        match (will, kept) {
            (Some((will, Some(delay))), Some(kept)) => {
                // Will Delay (MQTT-3.1.3-9): held while the session lives;
                // a reconnection cancels it, the session's end (expiry)
                // publishes it, whichever comes first.
                *kept.pending_will.borrow_mut() = Some(will);
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    glommio::timer::sleep(delay).await;
                    let due = kept.pending_will.borrow_mut().take();
                    if let Some(will) = due.filter(|_| !kept.detached.get()) {
                        if will.retain {
                            ctx.retain(&will);
                        }
                        ctx.publish(will, &mut Vec::new()).await;
                    }
                })
                .detach();
            }
            (Some((will, _)), _) => {
                if will.retain {
                    ctx.retain(&will);
                }
                ctx.publish(will, &mut Vec::new()).await;
            }
            (None, _) => {}
        }
        if reason == CloseReason::SlowConsumer {
            reset_on_close(stream);
        }
        reason
    }

    /// One line per refusal or protocol-error close: who (peer, client id
    /// once known) and why, in words.
    fn log_problem(&mut self, ctx: &ShardCtx) {
        let Some(Problem {
            refused,
            code,
            what,
            client_id: named,
        }) = self.machine.take_problem()
        else {
            return;
        };
        if !ctx.log_limiter.allow() {
            return;
        }
        let peer = self.peer;
        let client_id = self.client_id.as_deref().or(named.as_deref());
        let v5 = self.machine.version() == Version::V5;
        let words = |code: u8| crate::mqtt::v5::reason::name(code).unwrap_or("?");
        match (refused, v5, code) {
            (true, true, Some(code)) => tracing::info!(
                shard = ctx.id,
                ?peer,
                client_id,
                code = %format_args!("{code:#04x} {}", words(code)),
                reason = %what,
                "MQTT 5 CONNECT refused"
            ),
            (true, _, code) => tracing::info!(
                shard = ctx.id,
                ?peer,
                client_id,
                code,
                reason = %what,
                "CONNECT refused"
            ),
            (false, true, Some(code)) => tracing::info!(
                shard = ctx.id,
                ?peer,
                client_id,
                code = %format_args!("{code:#04x} {}", words(code)),
                reason = %what,
                "closing MQTT 5 connection: protocol error"
            ),
            (false, _, _) => tracing::info!(
                shard = ctx.id,
                ?peer,
                client_id,
                error = %what,
                "closing connection: protocol error"
            ),
        }
    }
}

/// Queues the machine's writes behind the session's deliveries (so acks
/// and deliveries keep their order).
fn queue_writes(session: &Session, out: &Actions<Request>) {
    for action in &out.list {
        if let Action::Write { from, to } = action {
            queue(session, &out.bytes[*from..*to]);
        }
    }
}

fn queue(session: &Session, frame: &[u8]) {
    if frame.len() <= 4 {
        // Acks, PINGRESP: no allocation.
        session.send_short(frame);
    } else {
        session.send_frame(frame.to_vec());
    }
}
