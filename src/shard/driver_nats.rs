//! NATS on the connection driver: registers the session, builds its INFO,
//! runs the NATS machine (`nats::session`) on the driver, and carries its
//! requests to the shard (publish with its backpressure, subscriptions
//! with the barrier that makes them visible to every shard).
//!
//! Owns: the glue between `nats::session::Request` and `ShardCtx`. Must
//! not touch: NATS rules (the machine decides; this only calls the router
//! and hands the answers back).

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::ctx::{Handoff, ShardCtx};
use super::driver::{self, Connection, Glue};
use super::mailbox::Protocol;
use super::transport::{self, Transport};
use crate::event::Event;
use crate::nats::codec::NatsLimits;
use crate::nats::session::{NatsSession, Request, ServerInfo, Settings, Subscribed};
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
    let security = ctx.security();
    // Per connection, unpredictable: a signature cannot be replayed.
    let nonce = security
        .wants_nonce()
        .then(crate::security::auth::new_nonce);
    let info = ServerInfo {
        server_id: ctx.global.server_id.clone(),
        host: local.map(|a| a.ip().to_string()).unwrap_or_default(),
        port: local.map(|a| a.port()).unwrap_or_default(),
        max_payload: n.payload_bytes_max,
        client_id: (ctx.id as u64) << 32 | u64::from(mailbox.key),
        client_ip: peer.map(|a| a.ip().to_string()).unwrap_or_default(),
        auth_required: security.auth_required(),
        nonce: nonce.clone(),
    };
    drop(security);
    let mut machine = NatsSession::new(settings, info, Instant::now());
    let mut conn = Connection::new(ctx.clone(), transport);
    // A PUB's payload can exceed the read buffer's usual ceiling.
    conn.read_max = conn
        .read_max
        .max(n.payload_bytes_max + n.control_line_bytes_max + 4);
    conn.attach(mailbox.clone());
    let mut glue = NatsGlue {
        nonce: nonce.map(Into::into),
        ..NatsGlue::default()
    };
    let reason = driver::run(&mut conn, &mut machine, &mut glue).await;
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
    /// The nonce this connection's INFO carried (nkey challenge).
    nonce: Option<Box<str>>,
}

/// The requests that wait: a SUB's barrier, a publish to other shards
/// (a ring may be full). One per connection, kept in its glue: not boxed.
#[allow(clippy::large_enum_variant)]
enum Pending {
    /// CONNECT: authenticated off the machine's turn (a password check
    /// waits for the shard's blocking thread).
    Connect {
        echo: bool,
        credentials: Box<Credentials>,
    },
    /// The subscription is applied; answer once every shard saw it.
    Subscribed,
    /// `kept`: the event, for a no-responders answer if nobody took it.
    Publish(Handoff, Option<Event>),
}

/// CONNECT: who the client is (the machine answers `+OK` in verbose mode,
/// or `-ERR 'Authorization Violation'` and closes).
async fn connect<T: Transport>(
    conn: &mut Connection<T>,
    machine: &mut NatsSession,
    echo: bool,
    credentials: &Credentials,
    nonce: Option<Box<str>>,
    out: &mut Actions<Request>,
) {
    let peer = Peer {
        addr: conn.transport.peer_addr(),
        local: conn.transport.local_addr(),
        nonce,
        ..Peer::default()
    };
    let verdict = conn
        .ctx
        .authenticate(Protocol::Nats, credentials, &peer)
        .await;
    let mailbox = conn.mailbox().expect("NATS registers first");
    mailbox.echo.set(echo);
    match verdict {
        Ok(identity) => {
            *mailbox.identity.borrow_mut() = Some(identity.clone());
            machine.authenticated(identity, out);
        }
        Err(refusal) => machine.refused(refusal, out),
    }
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
            self.pending = Some(Pending::Connect { echo, credentials });
            return false;
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
                let kept = answer_undelivered.then(|| event.clone());
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
                ctx.nats_subscribe(mailbox, &sid, filter, queue.as_deref());
                Pending::Subscribed
            }
            Request::RouterPublish(event) => match ctx.publish_now(event, congested) {
                Ok(_) => return true,
                Err(handoff) => Pending::Publish(handoff, None),
            },
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
            Some(Pending::Connect { echo, credentials }) => {
                // Once per connection: boxed, so that its state does not
                // weigh on this future for every publish.
                let nonce = self.nonce.clone();
                Box::pin(connect(conn, machine, echo, &credentials, nonce, out)).await
            }
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
            None => {}
        }
    }
}
