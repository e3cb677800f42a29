//! AMQP 1.0 on the connection driver: registers the connection, runs the
//! AMQP machine (`amqp::session`) on the shared driver, and carries its
//! requests to the shard: SASL credentials to `Security` (as NATS CONNECT
//! does), publishes (an unsettled one answered `accepted` once routed, and
//! past the durable point with persistence on: `durable_ack`), receiver
//! links as subscriptions (with the barrier that makes them visible to
//! every shard), and the client's flows and dispositions to the delivery
//! side (`amqp::outbound`, held by the mailbox).
//!
//! Accounts (`security::accounts`): a connection outside the default
//! account has a `Space`; its topics (publish, receiver filters) are
//! mapped into it here, as `driver_nats` does.
//!
//! Owns: the glue between `amqp::session::Request` and `ShardCtx`. Must
//! not touch: AMQP rules (the machine decides), credit and windows (the
//! outbound).
//!
//! Durable receivers (`Subscribe::durable`): a link that goes without
//! closing is kept by the shard (`ctx::amqp`, held in the directory); an
//! attach of its name takes what was kept, once subscribed, and sends it
//! first.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::net::TcpStream;

use super::admission;
use super::ctx::{Handoff, ShardCtx};
use super::driver::{self, Connection, Glue};
use super::durable_ack;
use super::mailbox::Protocol;
use super::stats::Counters;
use super::transport::{self, Transport};
use crate::amqp::outbound::Outcome as OutboundOutcome;
use crate::amqp::session::{Ack, AmqpLimits, AmqpSession, Outcome, Request, Settings, Subscribed};
use crate::event::Event;
use crate::security::accounts::Space;
use crate::security::{Credentials, Peer};
use crate::session::Actions;

/// Serves one accepted TCP connection to its end (with `amqp.tls` on,
/// `tls_accept::serve_amqp` serves it instead). The caller has counted it
/// against `connections_max`; this releases that count.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    transport::configure(&stream, &ctx.config().socket);
    serve_on(ctx, Rc::new(std::cell::RefCell::new(stream))).await;
}

/// Serves an AMQP client over any transport.
pub async fn serve_on<T: Transport>(ctx: Rc<ShardCtx>, transport: Rc<T>) {
    let (_, client_id) = ctx.assign_client_number();
    let mailbox = ctx.register(Protocol::Amqp, client_id);
    let peer = transport.peer_addr();
    mailbox.peer.set(peer);
    let config = ctx.config();
    let a = &config.amqp;
    let settings = Settings {
        limits: AmqpLimits {
            max_frame_size: a.max_frame_size,
            message_bytes_max: a.message_bytes_max,
            channel_max: a.channel_max,
            handles_max: a.handles_max,
            idle_timeout_ms: a.idle_timeout_ms.min(u64::from(u32::MAX)) as u32,
            sender_credit: a.sender_credit,
            connect_timeout_ms: config.limits.connect_timeout_ms.min(u64::from(u32::MAX)) as u32,
        },
        topic_limits: ctx.topic_limits.get(),
        anonymous: ctx.security().anonymous_accepted(transport.local_addr()),
        container_id: ctx.global.server_id.clone().into(),
        origin: ctx.origin(&mailbox),
        durable_supported: true,
    };
    let mut machine = AmqpSession::new(settings, Instant::now());
    let mut conn = Connection::new(ctx.clone(), transport);
    // A frame up to weft's max-frame-size is read whole.
    conn.read_max = conn.read_max.max(a.max_frame_size as usize + 8);
    drop(config);
    conn.attach(mailbox.clone());
    let mut glue = AmqpGlue::default();
    let reason = driver::run(&mut conn, &mut machine, &mut glue).await;
    driver::wrap_up(&ctx, &mailbox, peer, reason, machine.error(), "AMQP");
}

/// Carries AMQP requests to the shard.
#[derive(Default)]
pub struct AmqpGlue {
    pending: Option<Pending>,
    /// This connection's place under `connections_per_user_max`.
    user_permit: Option<admission::UserPermit>,
    /// The connection's account's topic space; None in the default one.
    space: Option<Arc<Space>>,
}

/// What a request left for `wait`. One per connection, kept in its glue.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Authenticate(Box<Credentials>),
    /// A receiver link subscribed: answer once every shard saw it; a
    /// durable one (its name) then takes what its name kept.
    Subscribed(crate::amqp::session::LinkRef, Option<Box<str>>),
    /// A publish to other shards that waits for room; `ack`: answer after.
    Publish(Handoff, Option<Ack>),
    /// A publish in an account's space that goes to importing accounts
    /// too: each event published in turn.
    Spread(smallvec::SmallVec<[Event; 2]>, Option<Ack>),
    /// Routed: the acknowledgement waits for the durable point.
    Durable(Ack),
}

/// SASL: who the client is; the machine answers the outcome.
async fn authenticate<T: Transport>(
    glue: &mut AmqpGlue,
    conn: &mut Connection<T>,
    machine: &mut AmqpSession,
    credentials: &Credentials,
    out: &mut Actions<Request>,
) {
    let now = Instant::now();
    let peer = Peer {
        addr: conn.transport.peer_addr(),
        local: conn.transport.local_addr(),
        certificate: conn.transport.peer_identity().map(|n| Arc::from(&*n)),
        nonce: None,
    };
    let verdict = conn
        .ctx
        .authenticate(Protocol::Amqp, credentials, &peer)
        .await;
    let mailbox = conn.mailbox().expect("AMQP registers first").clone();
    let security = conn.ctx.security();
    let Ok(identity) = verdict else {
        machine.refused(now, out);
        return;
    };
    glue.space = security.space(&identity.account);
    let source = peer.addr.map(|a| a.ip());
    match conn
        .ctx
        .admit_user(&identity, admission::ListenerKind::Amqp, source)
    {
        Ok(permit) => glue.user_permit = permit,
        Err(_) => {
            machine.refused(now, out);
            return;
        }
    }
    let grants = match security.grants(&identity, &mailbox.client_id) {
        Ok(grants) => grants,
        Err(_) => {
            machine.refused(now, out);
            return;
        }
    };
    if !grants.is_allow_all() {
        *mailbox.grants.borrow_mut() = Some(grants.clone());
    }
    *mailbox.identity.borrow_mut() = Some(identity.clone());
    machine.authenticated(identity, grants, now, out);
}

/// The outbound's name for a disposition's outcome.
fn outcome(o: Outcome) -> OutboundOutcome {
    match o {
        Outcome::Accepted => OutboundOutcome::Accepted,
        Outcome::Released => OutboundOutcome::Released,
        Outcome::Rejected => OutboundOutcome::Rejected,
        Outcome::Modified {
            delivery_failed,
            undeliverable_here,
        } => OutboundOutcome::Modified {
            delivery_failed,
            undeliverable_here,
        },
    }
}

/// The condition an unsettled publish is refused with when the log cannot
/// take it.
const STORAGE_FAILED: &str = "amqp:resource-limit-exceeded";

impl Glue<AmqpSession> for AmqpGlue {
    /// Review 2.3: weft's next-outgoing-id moves with every transfer the
    /// writer sends; the machine's credit flows must carry the current one
    /// (fe2o3-amqp takes its next-incoming-id from them), not the one of
    /// the client's last flow.
    fn before_feed<T: Transport>(&mut self, conn: &Connection<T>, machine: &mut AmqpSession) {
        if let Some(mailbox) = conn.mailbox() {
            mailbox
                .amqp_each_outgoing(|channel, next| machine.set_outgoing(channel, next, u32::MAX));
        }
    }

    fn request<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut AmqpSession,
        request: Request,
        out: &mut Actions<Request>,
    ) -> bool {
        if let Request::Authenticate { credentials } = request {
            self.pending = Some(Pending::Authenticate(credentials));
            return false;
        }
        let (ctx, mailbox, congested) = conn.parts();
        let mailbox = mailbox.expect("AMQP registers first");
        let pending = match request {
            Request::Authenticate { .. } => unreachable!("handled above"),
            Request::Publish { mut event, ack } => {
                if let Some(ack) = ack.filter(|_| ctx.persisting() && !durable_ack::admits(ctx)) {
                    let why = "the log cannot make it durable";
                    machine.rejected(ack, STORAGE_FAILED, why, Instant::now(), out);
                    return true;
                }
                event.origin = ctx.origin(mailbox);
                if let Some(space) = &self.space {
                    let mut events = space.spread(event);
                    if events.len() != 1 {
                        self.pending = Some(Pending::Spread(events, ack));
                        return false;
                    }
                    event = events.pop().expect("one event");
                }
                match ctx.publish_now(event, congested) {
                    Ok(_) => match ack {
                        None => return true,
                        Some(ack) if ctx.persisting() => Pending::Durable(ack),
                        Some(ack) => {
                            machine.accepted(ack, Instant::now(), out);
                            return true;
                        }
                    },
                    Err(handoff) => Pending::Publish(handoff, ack),
                }
            }
            Request::Subscribe {
                link,
                filter,
                queue,
                qos,
                checked,
                durable,
            } => {
                if mailbox.amqp_links.borrow().len() >= ctx.limits().subscriptions_per_session_max {
                    machine.subscribed(link, Subscribed::TooMany, Instant::now(), out);
                    return true;
                }
                let filter = match &self.space {
                    Some(space) => space.topic(&filter).into_owned(),
                    None => filter,
                };
                let (channel, handle) = (link.channel, link.handle);
                if !ctx.amqp_subscribe(
                    mailbox,
                    channel,
                    handle,
                    filter,
                    queue.as_deref(),
                    qos,
                    checked,
                    durable.clone(),
                ) {
                    machine.subscribed(link, Subscribed::Refused, Instant::now(), out);
                    return true;
                }
                Pending::Subscribed(link, durable)
            }
            Request::Unsubscribe { link, closed } => {
                ctx.amqp_unsubscribe(mailbox, link.channel, link.handle, closed);
                return true;
            }
            Request::Flow {
                channel,
                next_incoming_id,
                incoming_window,
                link,
            } => {
                if let Some((id, window)) = machine.incoming(channel) {
                    mailbox.amqp_set_incoming(channel, id, window);
                }
                let link =
                    link.map(|l| (l.handle, l.delivery_count, l.link_credit, l.drain, l.echo));
                mailbox.amqp_flow(channel, next_incoming_id, incoming_window, link);
                if let Some(next) = mailbox.amqp_next_outgoing_id(channel) {
                    machine.set_outgoing(channel, next, u32::MAX);
                }
                return true;
            }
            Request::Settle {
                channel,
                first,
                last,
                settled,
                outcome: o,
            } => {
                let done = mailbox.amqp_settle(channel, first, last, settled, o.map(outcome));
                if done.rejected > 0 {
                    Counters::add(&ctx.counters.amqp_rejected, done.rejected as u64);
                }
                if !done.undeliverable.is_empty() {
                    ctx.amqp_undeliverable(mailbox, channel, done.undeliverable);
                }
                return true;
            }
            Request::Begin {
                channel,
                incoming_window,
                next_incoming_id,
            } => {
                mailbox.amqp_max_frame_size(machine.max_frame_size_out());
                mailbox.amqp_begin(channel, incoming_window, next_incoming_id);
                if let Some((id, window)) = machine.incoming(channel) {
                    mailbox.amqp_set_incoming(channel, id, window);
                }
                return true;
            }
            Request::End { channel } => {
                let left = mailbox.amqp_end(channel);
                Counters::add(&ctx.counters.amqp_dropped_unsettled, left.unsettled as u64);
                return true;
            }
            Request::Denied(denied) => {
                ctx.count_denied(Protocol::Amqp, denied);
                return true;
            }
        };
        self.pending = Some(pending);
        false
    }

    async fn wait<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut AmqpSession,
        out: &mut Actions<Request>,
    ) {
        let ack = match self.pending.take() {
            Some(Pending::Authenticate(credentials)) => {
                // Once per connection: boxed, so that its state does not
                // weigh on this future for every publish.
                Box::pin(authenticate(self, conn, machine, &credentials, out)).await;
                return;
            }
            Some(Pending::Subscribed(link, durable)) => {
                conn.ctx.barrier().await;
                if let Some(name) = durable {
                    if let Some(backlog) = conn.ctx.amqp_durable_take(&name).await {
                        if let Some(mailbox) = conn.mailbox() {
                            mailbox.amqp_resume(link.channel, link.handle, backlog);
                        }
                    }
                }
                machine.subscribed(link, Subscribed::Yes, Instant::now(), out);
                return;
            }
            Some(Pending::Publish(handoff, ack)) => {
                let (ctx, _, congested) = conn.parts();
                ctx.publish_handoff(handoff, congested).await;
                ack
            }
            Some(Pending::Spread(events, ack)) => {
                let (ctx, _, congested) = conn.parts();
                for event in events {
                    ctx.publish(event, congested).await;
                }
                ack
            }
            Some(Pending::Durable(ack)) => Some(ack),
            None => None,
        };
        let Some(ack) = ack else {
            return;
        };
        if conn.ctx.persisting() && !durable_ack::reached(&conn.ctx).await {
            let why = "the log cannot make it durable";
            machine.rejected(ack, STORAGE_FAILED, why, Instant::now(), out);
            return;
        }
        machine.accepted(ack, Instant::now(), out);
    }
}
