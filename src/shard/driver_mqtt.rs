//! MQTT on the connection driver: runs the MQTT session machine
//! (`mqtt::session`, every version) on the driver and carries its
//! requests to the shard — register the client id and take over its other
//! connection, publish with backpressure, subscribe with the barrier that
//! makes a subscription visible to every shard, then, once the connection
//! is closed, keep the session offline or release it and publish (or
//! delay) the will.
//!
//! Authentication and authorization happen at establish: the identity
//! and the grants `Security` gives are handed to the machine (which
//! answers denials) and kept on the mailbox (for the delivery check of
//! checked subscriptions).
//!
//! Owns: the glue between `mqtt::session::Request` and `ShardCtx`, and the
//! one log line of a refused CONNECT or a protocol-error close. Must not
//! touch: MQTT rules (the machine decides; this only calls the router and
//! hands the answers back).
//!
//! Accounts (`security::accounts`): a session outside the default account
//! has a `Space`, and its topics, filters (`$share`'s too), retained
//! lookups and wills are mapped into it here, where the machine's
//! requests meet the router; a session of the default account has none
//! and nothing is mapped.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::net::TcpStream;

use super::admission;
use super::ctx::{Handoff, ShardCtx};
use super::driver::{self, Connection, Glue};
use super::mailbox::{Backlog, Mailbox, Protocol};
use super::transport::{self, Transport};
use crate::event::Event;
use crate::mqtt::session::{
    Action, Actions, Establish, Established, MqttSession, Problem, PublishAck, Request, Settings,
    SubscribeOutcome, SubscribeRequest, Version,
};
use crate::security::accounts::{client_topic, Space, ACCOUNT_PREFIX};
use crate::security::{Peer, Refusal};
use crate::session::CloseReason;

/// Serves one accepted TCP connection to its end. The caller has counted
/// it against `connections_max`; this releases that count.
///
/// Not an `async fn`: it would keep its `TcpStream` argument beside the
/// future it awaits for the connection's life (rust-lang/rust#62958).
pub fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) -> impl std::future::Future<Output = ()> {
    transport::configure(&stream, &ctx.config().socket);
    serve_on(ctx, Rc::new(std::cell::RefCell::new(stream)))
}

/// Serves an MQTT client over any transport.
pub async fn serve_on<T: Transport>(ctx: Rc<ShardCtx>, transport: Rc<T>) {
    let peer = transport.peer_addr();
    let mut machine = MqttSession::new(Settings::from_config(&ctx.config()), Instant::now());
    let mut conn = Connection::new(ctx.clone(), transport);
    let mut glue = MqttGlue::default();
    let reason = driver::run(&mut conn, &mut machine, &mut glue).await;
    let space = glue.space.take();
    let mailbox = conn.mailbox().cloned();
    if let Some(problem) = machine.take_problem() {
        log_problem(&ctx, peer, mailbox.as_deref(), machine.version(), problem);
    }
    if let Some(mailbox) = mailbox {
        // The first reason wins (closed from elsewhere before this one).
        let mut reason = mailbox.close_reason().unwrap_or(reason);
        if mailbox.detached.get()
            && !matches!(
                reason,
                CloseReason::TakenOver | CloseReason::TakenOverResumed
            )
        {
            // It closed on its own (peer gone, keep-alive), and a new
            // connection took its session over before it was parked: the
            // takeover decides the will (held back if the session goes
            // on, sent now if it ended), as if it had come first.
            reason = if mailbox.persistent.get() {
                CloseReason::TakenOverResumed
            } else {
                CloseReason::TakenOver
            };
        }
        let mut out = Actions::default();
        machine.finish(reason, &mut out);
        // Boxed: once per connection, at its end, and its state (the
        // will's publish) would otherwise be part of the connection's
        // future while it is idle.
        Box::pin(end_session(&ctx, &mailbox, space.as_deref(), out)).await;
        tracing::debug!(
            shard = ctx.id,
            ?peer,
            client_id = &*mailbox.client_id,
            reason = reason.label(),
            "connection closed"
        );
    }
    driver::release(&ctx);
}

/// Carries MQTT requests to the shard.
#[derive(Default)]
pub struct MqttGlue {
    /// What a resumed session carried from its last connection, queued
    /// after the CONNACK (`Request::Resume`).
    backlog: Option<Backlog>,
    /// A request `request` left for `wait`.
    pending: Option<Box<Pending>>,
    /// This connection's place under `connections_per_user_max`, held
    /// until the connection ends (see `admission`).
    user_permit: Option<admission::UserPermit>,
    /// The session's account's topic space; None in the default account
    /// (when it exports nothing).
    space: Option<Arc<Space>>,
}

/// The requests that wait: once per connection (establish), per
/// SUBSCRIBE, per retained QoS 1 publish (barrier), and a publish to
/// other shards when a ring is full. Boxed in the glue: a publish's
/// handoff is ~270 B, which every connection's future would otherwise
/// carry, idle ones included; a request that waits allocates anyway (the
/// driver boxes its wait).
#[allow(clippy::large_enum_variant)]
enum Pending {
    Establish(Box<Establish>),
    Publish(Handoff, Option<PublishAck>),
    /// A publish in an account's space that goes to importing accounts
    /// too: each event published in turn.
    Spread(smallvec::SmallVec<[Event; 2]>, Option<PublishAck>),
    Barrier,
    Subscribe(Box<SubscribeRequest>),
    /// Routed; its acknowledgement waits for the log (persistence).
    Durable(PublishAck, bool),
}

impl Glue<MqttSession> for MqttGlue {
    fn request<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut MqttSession,
        request: Request,
        out: &mut Actions<Request>,
    ) -> bool {
        // Borrowed, not cloned: this runs per PUBLISH.
        let (ctx, mailbox, congested) = conn.parts();
        let pending = match request {
            // Also before the session is registered (a refused will).
            Request::Denied(denied) => {
                ctx.count_denied(Protocol::Mqtt, denied);
                return true;
            }
            Request::Publish { event, retain, ack } => {
                let Some(mailbox) = mailbox else {
                    debug_assert!(false, "PUBLISH follows CONNECT");
                    return true;
                };
                // Persistence: the acknowledgement waits until the event is
                // durable; a log that cannot take it refuses the publish.
                let durable = ack.is_some() && ctx.persisting();
                if durable && !admit_durable(ctx, mailbox, machine, ack, out) {
                    return true;
                }
                let mut event = event.with_origin(ctx.origin(mailbox));
                if let Some(space) = &self.space {
                    let mut events = space.spread(event);
                    if events.len() != 1 {
                        if retain {
                            events.iter().for_each(|e| ctx.retain(e));
                        }
                        self.pending = Some(Box::new(Pending::Spread(events, ack)));
                        return false;
                    }
                    event = events.pop().expect("one event");
                }
                if retain {
                    ctx.retain(&event);
                }
                match ctx.publish_now(event, congested) {
                    Ok(matched) => {
                        let Some(ack) = ack else { return true };
                        if !durable {
                            machine.on_published(ack, matched, out);
                            return true;
                        }
                        if ack.qos == 2 || ack.barrier {
                            Pending::Durable(ack, matched)
                        } else {
                            // Pipelined: the next PUBLISH is read at once;
                            // the writer holds the batch with this
                            // acknowledgement until it is durable.
                            gated_ack(mailbox, machine, ack, matched, out);
                            return true;
                        }
                    }
                    Err(handoff) => Pending::Publish(handoff, ack),
                }
            }
            Request::Establish(e) => Pending::Establish(e),
            Request::Barrier => Pending::Barrier,
            Request::Subscribe(sub) => Pending::Subscribe(sub),
            request => {
                match mailbox {
                    Some(mailbox) => now(
                        ctx,
                        mailbox,
                        self.space.as_deref(),
                        machine,
                        request,
                        &mut self.backlog,
                        out,
                    ),
                    None => debug_assert!(false, "MQTT requests follow CONNECT: {request:?}"),
                }
                return true;
            }
        };
        self.pending = Some(Box::new(pending));
        false
    }

    async fn wait<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut MqttSession,
        out: &mut Actions<Request>,
    ) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match *pending {
            // Boxed, as SUBSCRIBE below: rare, and their state (directory
            // round trips, barriers) would otherwise weigh on this future.
            Pending::Establish(e) => Box::pin(self.establish(conn, machine, *e, out)).await,
            Pending::Publish(handoff, ack) => {
                let (ctx, _, congested) = conn.parts();
                let matched = ctx.publish_handoff(handoff, congested).await;
                if let Some(ack) = ack {
                    acknowledge(ctx, machine, ack, matched, out).await;
                }
            }
            Pending::Spread(events, ack) => {
                let (ctx, _, congested) = conn.parts();
                let mut matched = false;
                for event in events {
                    matched |= ctx.publish(event, congested).await;
                }
                if let Some(ack) = ack {
                    acknowledge(ctx, machine, ack, matched, out).await;
                }
            }
            Pending::Durable(ack, matched) => {
                acknowledge(&conn.ctx, machine, ack, matched, out).await
            }
            Pending::Barrier => conn.ctx.barrier().await,
            Pending::Subscribe(sub) => {
                let (ctx, mailbox, _) = conn.parts();
                let Some(mailbox) = mailbox else {
                    debug_assert!(false, "SUBSCRIBE follows CONNECT");
                    return;
                };
                let space = self.space.as_deref();
                Box::pin(subscribe(ctx, mailbox, space, machine, *sub, out)).await
            }
        }
    }
}

/// PUBACK / PUBREC of a routed publish: with persistence on, once the
/// event is durable (every shard's log holds what it wrote of it), or the
/// refusal if it cannot be.
async fn acknowledge(
    ctx: &ShardCtx,
    machine: &mut MqttSession,
    ack: PublishAck,
    matched: bool,
    out: &mut Actions<Request>,
) {
    if super::durable_ack::reached(ctx).await {
        machine.on_published(ack, matched, out)
    } else {
        machine.on_publish_refused(ack, out)
    }
}

/// PUBACK / PUBREC of a routed publish with persistence on, queued as a
/// gated acknowledgement: the writer sends the batch holding it once every
/// shard's log holds what was routed before (`Mailbox::send_gated`).
fn gated_ack(
    mailbox: &Mailbox,
    machine: &mut MqttSession,
    ack: PublishAck,
    matched: bool,
    out: &mut Actions<Request>,
) {
    let mark = out.list.len();
    machine.on_published(ack, matched, out);
    // The machine answered with the acknowledgement's frame alone (a
    // retained QoS 1 publish, which also asks for a barrier, waits
    // instead): moved from the actions into the mailbox, gated.
    if let [Action::Write { from, to }] = &out.list[mark..] {
        mailbox.send_gated(&out.bytes[*from..*to]);
        out.list.truncate(mark);
    }
}

/// Persistence on, before a QoS 1/2 publish is routed: refused at once
/// if the log cannot take new work; a QoS 2 id journaled as awaiting
/// PUBREL. False: refused (answered). Off the path of a router without
/// persistence.
#[cold]
#[inline(never)]
fn admit_durable(
    ctx: &ShardCtx,
    mailbox: &Mailbox,
    machine: &mut MqttSession,
    ack: Option<PublishAck>,
    out: &mut Actions<Request>,
) -> bool {
    let Some(ack) = ack else { return true };
    if !super::durable_ack::admits(ctx) {
        machine.on_publish_refused(ack, out);
        return false;
    }
    if ack.qos == 2 {
        journal_qos2(mailbox, ack.packet_id);
    }
    true
}

/// Journals an inbound QoS 2 id now awaiting PUBREL.
fn journal_qos2(mailbox: &Mailbox, pid: u16) {
    let journal = mailbox.journal.borrow();
    if let Some(j) = journal.as_ref() {
        j.awaiting_release.borrow_mut().push(pid);
        j.write(crate::persist::records::Record::InQos2 { sn: j.sn, pid });
    }
}

/// The requests that never wait.
#[allow(clippy::too_many_arguments)]
fn now(
    ctx: &ShardCtx,
    mailbox: &Rc<Mailbox>,
    space: Option<&Space>,
    machine: &mut MqttSession,
    request: Request,
    backlog: &mut Option<Backlog>,
    out: &mut Actions<Request>,
) {
    match request {
        Request::Resume => {
            if let Some(backlog) = backlog.take() {
                mailbox.restore_backlog(backlog);
                let journal = mailbox.journal.borrow();
                if let Some(j) = journal.as_ref() {
                    // Numbered as its journal's snapshot numbered them.
                    j.seq.set(mailbox.renumber_journaled());
                }
            }
        }
        Request::Unsubscribe(mut unsub) => {
            for (filter, outcome) in unsub.filters.iter_mut() {
                if outcome.is_some() {
                    let filter = internal(space, filter);
                    let removed = ctx.unsubscribe(mailbox, &filter);
                    if removed {
                        mailbox.journal_write(|sn| crate::persist::records::Record::Unsub {
                            sn,
                            filter: filter.as_ref().into(),
                        });
                    }
                    *outcome = Some(removed);
                }
            }
            machine.on_unsubscribed(*unsub, out);
        }
        Request::SendRetained { filter, qos } => {
            ctx.send_retained(mailbox, &internal(space, &filter), qos)
        }
        Request::Acknowledge(id) => {
            if !mailbox.acknowledge(id) {
                tracing::debug!(
                    shard = ctx.id,
                    id,
                    "PUBACK/PUBCOMP for no delivery in flight"
                );
            }
        }
        Request::Received(id) => {
            let known = mailbox.received(id);
            if !known {
                tracing::debug!(shard = ctx.id, id, "PUBREC for no QoS 2 delivery in flight");
            }
            machine.on_received(id, known, out);
        }
        Request::Forget(id) => mailbox.forget(id),
        Request::Released(pid) => {
            let journal = mailbox.journal.borrow();
            if let Some(j) = journal.as_ref() {
                j.awaiting_release.borrow_mut().retain(|p| *p != pid);
                j.write(crate::persist::records::Record::InRel { sn: j.sn, pid });
            }
        }
        // After the connection: `end_session`.
        Request::End { .. } | Request::Will { .. } => {}
        Request::Establish(_)
        | Request::Denied(_)
        | Request::Publish { .. }
        | Request::Barrier
        | Request::Subscribe(_) => unreachable!("handled by `request`"),
    }
}

impl MqttGlue {
    /// Registers the session, ends any other connection of its client id
    /// (on any shard) and resumes its state; the machine answers with
    /// CONNACK (and `Resume` for a resumed session).
    async fn establish<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut MqttSession,
        e: Establish,
        out: &mut Actions<Request>,
    ) {
        let ctx = conn.ctx.clone();
        let peer = Peer {
            addr: conn.transport.peer_addr(),
            local: conn.transport.local_addr(),
            // The user a verified TLS client certificate names.
            certificate: conn
                .transport
                .peer_identity()
                .map(|n| std::sync::Arc::from(&*n)),
            ..Peer::default()
        };
        let identity = match ctx
            .authenticate(Protocol::Mqtt, &e.credentials, &peer)
            .await
        {
            Ok(identity) => identity,
            Err(refusal) => return machine.on_refused(refusal, out),
        };
        let source = peer.addr.map(|a| a.ip());
        match ctx.admit_user(&identity, admission::ListenerKind::Mqtt, source) {
            Ok(permit) => self.user_permit = permit,
            Err(refusal) => return machine.on_refused(refusal, out),
        }
        let security = ctx.security();
        self.space = security.space(&identity.account);
        let client_id = e.client_id.unwrap_or_else(|| ctx.assign_client_id());
        // What it may publish and read, with `%c` the id the client uses; a
        // refusal (a will it may not publish, a value that would widen a
        // rule) registers nothing.
        let grants = match security.grants(&identity, &client_id) {
            Ok(grants) => grants,
            Err(why) => return machine.on_unauthorized(&why, out),
        };
        if !machine.on_authorized(grants.clone(), out) {
            return;
        }
        // Client ids are per account too (a takeover, a resumed session):
        // outside the default account the directory knows the id under
        // the account's prefix, which a default account's client may not
        // write.
        let prefix = self.space.as_deref().map_or("", Space::prefix);
        let client_id = if !prefix.is_empty() {
            format!("{prefix}{client_id}").into()
        } else if client_id.starts_with(ACCOUNT_PREFIX) {
            return machine.on_refused(Refusal::NotAuthorized, out);
        } else {
            client_id
        };
        let mailbox = ctx.register(Protocol::Mqtt, client_id);
        *mailbox.identity.borrow_mut() = Some(identity.clone());
        if !grants.is_allow_all() {
            *mailbox.grants.borrow_mut() = Some(grants);
        }
        machine.on_authenticated(identity);
        mailbox.peer.set(conn.transport.peer_addr());
        mailbox.persistent.set(e.persistent);
        if e.version == Version::V5 {
            mailbox.set_mqtt5(
                Some(e.receive_max),
                (e.max_packet > 0).then_some(e.max_packet),
                e.client_alias_max,
            );
            mailbox.expiry_s.set(e.expiry_s);
        }
        // Nothing is written before the CONNACK (a resumed session's
        // subscriptions may deliver while it is installed).
        mailbox.await_greeting();
        conn.attach(mailbox.clone());
        let state = ctx.establish(&mailbox, e.resume).await;
        if let Some(reason) = mailbox.close_reason() {
            // Taken over by a newer connection during the handshake.
            machine.close(reason, out);
            return;
        }
        let present = state.is_some();
        let mut awaiting_release = Vec::new();
        if let Some(mut state) = state {
            awaiting_release = std::mem::take(&mut state.awaiting_release);
            self.backlog = Some(ctx.install(&mailbox, state).await);
        }
        if e.persistent && ctx.persisting() {
            // Journaled from here, under a new generation: the CONNACK
            // promises the session is kept (a failing log only costs the
            // promise across a crash; the session works on).
            let empty = Backlog::default();
            let backlog = self.backlog.as_ref().unwrap_or(&empty);
            ctx.open_journal(&mailbox, awaiting_release.clone(), None, backlog);
            // Its will, in the session's own space (as `end_session`
            // publishes it): sent after a restart if the connection
            // was lost with it.
            let will = machine.will().and_then(|(event, delay_s)| {
                let event = match self.space.as_deref() {
                    Some(space) => space.own(event)?,
                    None => event,
                };
                Some((event, (delay_s > 0).then_some(delay_s)))
            });
            if let Some((event, delay_s)) = will {
                if let Some(j) = mailbox.journal.borrow().as_ref() {
                    j.set_will(Some((delay_s, event)));
                }
            }
            let _ = ctx.durable().await;
        }
        machine.restore_awaiting_release(&awaiting_release);
        machine.on_established(
            Established {
                client_id: client_topic(&mailbox.client_id),
                present,
            },
            Instant::now(),
            out,
        );
    }
}

/// Applies a SUBSCRIBE's valid filters (within the session's limit), makes
/// them visible to every shard, then hands the outcomes to the machine.
async fn subscribe(
    ctx: &Rc<ShardCtx>,
    mailbox: &Rc<Mailbox>,
    space: Option<&Space>,
    machine: &mut MqttSession,
    mut sub: crate::mqtt::session::SubscribeRequest,
    out: &mut Actions<Request>,
) {
    let max = ctx.limits().subscriptions_per_session_max;
    for f in sub.filters.iter_mut() {
        if f.outcome != SubscribeOutcome::Pending {
            continue;
        }
        // The session's state keeps the internal filter; the machine
        // keeps the client's (SUBACK, retained lookup).
        let filter = internal(space, &f.filter);
        let subs = mailbox.subscriptions.borrow();
        let existed = subs.contains_key(&filter);
        let full = !existed && subs.len() >= max;
        drop(subs);
        if full {
            f.outcome = SubscribeOutcome::Full;
            continue;
        }
        ctx.subscribe(mailbox, &filter, f.flags);
        if mailbox.version() == 5 {
            // The identifier replaces the previous one.
            let mut ids = mailbox.sub_identifiers.borrow_mut();
            match sub.identifier {
                Some(id) => {
                    ids.insert(filter.as_ref().into(), id);
                }
                None => {
                    ids.remove(&*filter);
                }
            }
        }
        f.outcome = SubscribeOutcome::Granted { existed };
        if mailbox.journal.borrow().is_some() {
            use crate::persist::records::Record;
            let qos = f.flags;
            mailbox.journal_write(|sn| Record::Sub {
                sn,
                filter: filter.as_ref().into(),
                qos,
            });
            let id = sub.identifier.unwrap_or(0);
            if mailbox.version() == 5 {
                mailbox.journal_write(|sn| Record::SubId {
                    sn,
                    filter: filter.as_ref().into(),
                    id,
                });
            }
        }
    }
    // A publish that follows, from any shard, sees them.
    ctx.barrier().await;
    if mailbox.journal.borrow().is_some() {
        // The SUBACK promises a kept subscription.
        let _ = ctx.durable().await;
    }
    machine.on_subscribed(sub, out);
}

/// A client's filter in its account's space.
fn internal<'a>(space: Option<&Space>, filter: &'a str) -> std::borrow::Cow<'a, str> {
    match space {
        Some(space) => space.filter(filter),
        None => std::borrow::Cow::Borrowed(filter),
    }
}

/// After the connection: keep the session offline or release it, then
/// publish the will now or once its delay passed (in the session's
/// account).
async fn end_session(
    ctx: &Rc<ShardCtx>,
    mailbox: &Rc<Mailbox>,
    space: Option<&Space>,
    out: Actions<Request>,
) {
    let mut keep = None;
    let mut will = None;
    for action in out.list {
        match action {
            Action::Request(Request::End { keep: k }) => keep = k,
            Action::Request(Request::Will { event, delay }) => {
                // In the session's own space only: a delayed will waits in
                // the session (one event), so imports are not applied to
                // wills.
                will = match space {
                    Some(space) => space.own(event),
                    None => Some(event),
                }
                .map(|event| (event, delay));
            }
            _ => {}
        }
    }
    mailbox.persistent.set(keep.is_some());
    if mailbox.version() == 5 {
        // The expiry in force, DISCONNECT's included (whole seconds).
        mailbox
            .expiry_s
            .set(keep.map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32));
    }
    // A kept session outlives its connection (unless another connection
    // took it over, which released it here).
    let kept = if keep.is_some() && !mailbox.detached.get() {
        Some(ctx.park(mailbox))
    } else {
        ctx.unregister(mailbox);
        None
    };
    match (will, kept) {
        (Some((will, Some(delay))), Some(kept)) => {
            // Will Delay (MQTT-3.1.3-9): held while the session lives; a
            // reconnection cancels it, the session's end (expiry)
            // publishes it, whichever comes first.
            ctx.arm_will(kept, will, delay);
        }
        (Some((will, _)), _) => {
            if will.retain {
                ctx.retain(&will);
            }
            ctx.publish(will, &mut Vec::new()).await;
        }
        (None, _) => {}
    }
}

/// One line per refused CONNECT or protocol-error close: who (peer, client
/// id) and why, in words.
fn log_problem(
    ctx: &ShardCtx,
    peer: Option<std::net::SocketAddr>,
    mailbox: Option<&Mailbox>,
    version: Version,
    problem: Problem,
) {
    if !ctx.log_limiter.allow() {
        return;
    }
    let Problem {
        refused,
        code,
        what,
        client_id: named,
    } = problem;
    let client_id = mailbox.map(|m| &*m.client_id).or(named.as_deref());
    let words = |code: u8| crate::mqtt::v5::reason::name(code).unwrap_or("?");
    match (refused, version == Version::V5, code) {
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

#[cfg(test)]
mod tests;
