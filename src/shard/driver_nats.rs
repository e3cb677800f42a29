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
use crate::session::Actions;

/// Serves one accepted TCP connection to its end (with `[nats.tls]` on,
/// `tls_accept::serve_nats` serves it instead). The caller has counted it
/// against `connections_max`; this releases that count.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    transport::configure(&stream, &ctx.config().socket);
    serve_on(ctx, Rc::new(std::cell::RefCell::new(stream))).await;
}

/// Serves a NATS client over any transport.
pub async fn serve_on<T: Transport>(ctx: Rc<ShardCtx>, transport: Rc<T>) {
    let prepared = Prepared::new(&ctx, transport.peer_addr(), transport.local_addr(), false);
    prepared.run(ctx, transport).await;
}

/// A NATS session registered and built, before it runs: what the TLS
/// upgrade (`tls_accept`) needs between the INFO and the session.
pub struct Prepared {
    mailbox: Rc<super::mailbox::Mailbox>,
    machine: NatsSession,
    peer: Option<std::net::SocketAddr>,
}

impl Prepared {
    /// `tls_required`: with `[nats.tls]` on, the INFO says TLS is
    /// required (else available).
    pub fn new(
        ctx: &Rc<ShardCtx>,
        peer: Option<std::net::SocketAddr>,
        local: Option<std::net::SocketAddr>,
        tls_required: bool,
    ) -> Prepared {
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
        let tls_on = ctx.global.client_tls_nats().is_some();
        let info = ServerInfo {
            server_id: ctx.global.server_id.clone(),
            host: local.map(|a| a.ip().to_string()).unwrap_or_default(),
            port: local.map(|a| a.port()).unwrap_or_default(),
            max_payload: n.payload_bytes_max,
            client_id: (ctx.id as u64) << 32 | u64::from(mailbox.key),
            client_ip: peer.map(|a| a.ip().to_string()).unwrap_or_default(),
            tls_required: tls_on && tls_required,
            tls_available: tls_on && !tls_required,
        };
        let machine = NatsSession::new(settings, info, Instant::now());
        Prepared {
            mailbox,
            machine,
            peer,
        }
    }

    /// The INFO line, taken from the machine (which then starts without
    /// sending it): written in plain text before a TLS upgrade.
    pub fn take_info(&mut self) -> Option<Vec<u8>> {
        self.machine.take_info_line()
    }

    /// The session ends before it ran (refused, handshake failed).
    pub fn abandon(self, ctx: &Rc<ShardCtx>) {
        ctx.unregister(&self.mailbox);
        driver::release(ctx);
    }

    /// Runs the session over `transport` to its end.
    pub async fn run<T: Transport>(self, ctx: Rc<ShardCtx>, transport: Rc<T>) {
        let Prepared {
            mailbox,
            mut machine,
            peer,
        } = self;
        let config = ctx.config();
        let n = &config.nats;
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
}

/// Carries NATS requests to the shard.
#[derive(Default)]
pub struct NatsGlue {
    /// A request `request` left for `wait`.
    pending: Option<Pending>,
}

/// The requests that wait: a SUB's barrier, a publish to other shards
/// (a ring may be full). One per connection, kept in its glue: not boxed.
#[allow(clippy::large_enum_variant)]
enum Pending {
    /// The subscription is applied; answer once every shard saw it.
    Subscribed,
    /// `kept`: the event, for a no-responders answer if nobody took it.
    Publish(Handoff, Option<Event>),
}

impl Glue<NatsSession> for NatsGlue {
    fn request<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut NatsSession,
        request: Request,
        out: &mut Actions<Request>,
    ) -> bool {
        let (ctx, mailbox, congested) = conn.parts();
        let mailbox = mailbox.expect("NATS registers first");
        let pending = match request {
            Request::Connect { echo } => {
                mailbox.echo.set(echo);
                return true;
            }
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
