//! NATS on the connection driver: registers the session, builds its INFO,
//! runs the NATS machine (`nats::session`) on the driver, and carries its
//! requests to the shard (publish with its backpressure, subscriptions
//! with the barrier that makes them visible to every shard).
//!
//! Owns: the glue between `nats::session::Request` and `ShardCtx`. Must
//! not touch: NATS rules (the machine decides; this only calls the router
//! and hands the answers back).
//!
//! Accounts (`security::accounts`): a session outside the default account
//! has a `Space`; its subjects (publish, SUB with or without a queue
//! group, a no-responders reply) are mapped into it here. A session of the
//! default account has none and nothing is mapped.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::ctx::{Handoff, ShardCtx};
use super::driver::{self, Connection, Glue};
use super::mailbox::Protocol;
use super::transport::{self, Transport};
use crate::event::Event;
use crate::nats::codec::NatsLimits;
use crate::nats::session::{NatsSession, Request, ServerInfo, Settings, Subscribed};
use crate::security::accounts::Space;
use crate::security::{Credentials, Peer};
use crate::session::Actions;

/// Serves one accepted TCP connection to its end. The caller has counted
/// it against `connections_max`; this releases that count.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    transport::configure(&stream, &ctx.config().socket);
    serve_on(ctx, Rc::new(std::cell::RefCell::new(stream))).await;
}

/// Serves a NATS client over any transport.
pub async fn serve_on<T: Transport>(ctx: Rc<ShardCtx>, transport: Rc<T>) {
    let peer = transport.peer_addr();
    let local = transport.local_addr();
    let client_id = ctx.assign_client_id();
    let mailbox = ctx.register(Protocol::Nats, client_id);
    mailbox.peer.set(peer);
    let config = ctx.config();
    let n = &config.nats;
    let settings = Settings {
        limits: NatsLimits {
            control_line_bytes_max: n.control_line_bytes_max,
            payload_bytes_max: n.payload_bytes_max,
        },
        topic_limits: ctx.topic_limits.get(),
        ping_interval: Duration::from_millis(n.ping_interval_ms),
        pings_outstanding_max: n.pings_outstanding_max,
    };
    let info = ServerInfo {
        server_id: ctx.global.server_id.clone(),
        host: local.map(|a| a.ip().to_string()).unwrap_or_default(),
        port: local.map(|a| a.port()).unwrap_or_default(),
        max_payload: n.payload_bytes_max,
        client_id: (ctx.id as u64) << 32 | u64::from(mailbox.key),
        client_ip: peer.map(|a| a.ip().to_string()).unwrap_or_default(),
    };
    let mut machine = NatsSession::new(settings, info, Instant::now());
    let mut conn = Connection::new(ctx.clone(), transport);
    // A PUB's payload can exceed the read buffer's usual ceiling.
    conn.read_max = conn
        .read_max
        .max(n.payload_bytes_max + n.control_line_bytes_max + 4);
    conn.attach(mailbox.clone());
    let reason = driver::run(&mut conn, &mut machine, &mut NatsGlue::default()).await;
    ctx.unregister(&mailbox);
    if let Some(error) = machine.error() {
        if ctx.log_limiter.allow() {
            tracing::info!(
                shard = ctx.id,
                ?peer,
                reason = reason.label(),
                error,
                "NATS connection closed"
            );
        }
    }
    tracing::debug!(
        shard = ctx.id,
        ?peer,
        reason = reason.label(),
        "NATS connection closed"
    );
    driver::release(&ctx);
}

/// Carries NATS requests to the shard.
#[derive(Default)]
pub struct NatsGlue {
    /// A request `request` left for `wait`.
    pending: Option<Pending>,
    /// The session's account's topic space; None in the default account
    /// (when it exports nothing).
    space: Option<Arc<Space>>,
}

/// The requests that wait: a SUB's barrier, a publish to other shards
/// (a ring may be full). One per connection, kept in its glue: not boxed.
#[allow(clippy::large_enum_variant)]
enum Pending {
    /// The subscription is applied; answer once every shard saw it.
    Subscribed,
    /// `kept`: the event, for a no-responders answer if nobody took it.
    Publish(Handoff, Option<Event>),
    /// A publish in an account's space that goes to importing accounts
    /// too: each event published in turn.
    Spread(smallvec::SmallVec<[Event; 2]>, Option<Event>),
}

/// CONNECT: who the client is (the machine answers `+OK` in verbose mode,
/// or `-ERR 'Authorization Violation'` and closes).
fn connect<T: Transport>(
    conn: &mut Connection<T>,
    space: &mut Option<Arc<Space>>,
    machine: &mut NatsSession,
    echo: bool,
    credentials: &Credentials,
    out: &mut Actions<Request>,
) -> bool {
    let peer = Peer {
        addr: conn.transport.peer_addr(),
        local: conn.transport.local_addr(),
        ..Peer::default()
    };
    let mailbox = conn.mailbox().expect("NATS registers first");
    mailbox.echo.set(echo);
    let security = conn.ctx.security();
    match security.authenticate(credentials, &peer) {
        Ok(identity) => {
            *space = security.space(&identity.account);
            *mailbox.identity.borrow_mut() = Some(identity.clone());
            machine.authenticated(identity, out);
        }
        Err(refusal) => machine.refused(refusal, out),
    }
    true
}

impl Glue<NatsSession> for NatsGlue {
    fn request<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut NatsSession,
        request: Request,
        out: &mut Actions<Request>,
    ) -> bool {
        if let Request::Connect { echo, credentials } = request {
            return connect(conn, &mut self.space, machine, echo, &credentials, out);
        }
        let (ctx, mailbox, congested) = conn.parts();
        let mailbox = mailbox.expect("NATS registers first");
        let pending = match request {
            Request::Connect { .. } => unreachable!("handled above"),
            Request::Publish {
                mut event,
                answer_undelivered,
            } => {
                event.origin = ctx.origin(mailbox);
                // The client's form: a no-responders answer goes to its
                // reply subject, mapped again by `RouterPublish`.
                let kept = answer_undelivered.then(|| event.clone());
                if let Some(space) = &self.space {
                    let mut events = space.spread(event);
                    if events.len() != 1 {
                        self.pending = Some(Pending::Spread(events, kept));
                        return false;
                    }
                    event = events.pop().expect("one event");
                }
                match ctx.publish_now(event, congested) {
                    Ok(delivered) => {
                        if let (false, Some(event)) = (delivered, kept) {
                            machine.undelivered(&event, out);
                        }
                        return true;
                    }
                    Err(handoff) => Pending::Publish(handoff, kept),
                }
            }
            Request::Subscribe { sid, filter, queue } => {
                if mailbox.nats_subs.borrow().len() >= ctx.limits().subscriptions_per_session_max {
                    machine.subscribed(Subscribed::TooMany, out);
                    return true;
                }
                let filter = match &self.space {
                    Some(space) => space.topic(&filter).into_owned(),
                    None => filter,
                };
                ctx.nats_subscribe(mailbox, &sid, filter, queue.as_deref());
                Pending::Subscribed
            }
            Request::RouterPublish(mut event) => {
                if let Some(space) = &self.space {
                    match space.own(event) {
                        Some(own) => event = own,
                        None => return true,
                    }
                }
                match ctx.publish_now(event, congested) {
                    Ok(_) => return true,
                    Err(handoff) => Pending::Publish(handoff, None),
                }
            }
            Request::Unsubscribe { sid, max } => {
                ctx.nats_unsubscribe(mailbox, &sid, max);
                return true;
            }
        };
        self.pending = Some(pending);
        false
    }

    async fn wait<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut NatsSession,
        out: &mut Actions<Request>,
    ) {
        match self.pending.take() {
            Some(Pending::Subscribed) => {
                conn.ctx.barrier().await;
                machine.subscribed(Subscribed::Yes, out);
            }
            Some(Pending::Publish(handoff, kept)) => {
                let (ctx, _, congested) = conn.parts();
                let delivered = ctx.publish_handoff(handoff, congested).await;
                if let (false, Some(event)) = (delivered, kept) {
                    machine.undelivered(&event, out);
                }
            }
            Some(Pending::Spread(events, kept)) => {
                let (ctx, _, congested) = conn.parts();
                let mut delivered = false;
                for event in events {
                    delivered |= ctx.publish(event, congested).await;
                }
                if let (false, Some(event)) = (delivered, kept) {
                    machine.undelivered(&event, out);
                }
            }
            None => {}
        }
    }
}
