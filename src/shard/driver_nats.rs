//! NATS on the connection driver: registers the session, builds its INFO,
//! runs the NATS machine (`nats::session`) on the driver, and carries its
//! requests to the shard (publish with its backpressure, subscriptions
//! with the barrier that makes them visible to every shard).
//!
//! At CONNECT the identity and the grants `Security` gives are handed to
//! the machine (which answers denials) and kept on the mailbox (for the
//! delivery check of checked subscriptions).
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

use super::admission;
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

/// Serves a shared-memory client: as `serve_on`, without server PINGs
/// (its Unix socket tells the router at once when it dies, and a client
/// that only publishes answers PINGs only when it reads).
pub async fn serve_on_shm<T: Transport>(ctx: Rc<ShardCtx>, transport: Rc<T>) {
    let prepared = Prepared::build(&ctx, None, None, false, false);
    prepared.run(ctx, transport).await;
}

/// A NATS session registered and built, before it runs: what the TLS
/// upgrade (`tls_accept`) needs between the INFO and the session.
pub struct Prepared {
    mailbox: Rc<super::mailbox::Mailbox>,
    machine: NatsSession,
    peer: Option<std::net::SocketAddr>,
    /// The nkey challenge its INFO carries.
    nonce: Option<String>,
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
        Prepared::build(ctx, peer, local, tls_required, true)
    }

    /// `server_pings` false: the session never PINGs (`serve_on_shm`).
    fn build(
        ctx: &Rc<ShardCtx>,
        peer: Option<std::net::SocketAddr>,
        local: Option<std::net::SocketAddr>,
        tls_required: bool,
        server_pings: bool,
    ) -> Prepared {
        let (number, client_id) = ctx.assign_client_number();
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
            ping_interval: match server_pings {
                true => Duration::from_millis(n.ping_interval_ms),
                false => Duration::ZERO,
            },
            pings_outstanding_max: n.pings_outstanding_max,
            connect_timeout: Duration::from_millis(config.limits.connect_timeout_ms),
        };
        let tls_on = ctx.global.client_tls_nats().is_some();
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
            // Never reused while the process runs (as nats-server's); a
            // session slot's key is reused once the client leaves.
            client_id: (ctx.id as u64) << 32 | (number & 0xffff_ffff),
            client_ip: peer.map(|a| a.ip().to_string()).unwrap_or_default(),
            tls_required: tls_on && tls_required,
            tls_available: tls_on && !tls_required,
            auth_required: security.auth_required(),
            nonce: nonce.clone(),
        };
        let machine = NatsSession::new(settings, info, Instant::now());
        Prepared {
            mailbox,
            machine,
            peer,
            nonce,
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
            nonce,
        } = self;
        let config = ctx.config();
        let n = &config.nats;
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
        driver::wrap_up(&ctx, &mailbox, peer, reason, machine.error(), "NATS");
    }
}

/// Carries NATS requests to the shard.
#[derive(Default)]
pub struct NatsGlue {
    /// A request `request` left for `wait`.
    pending: Option<Pending>,
    /// This connection's place under `connections_per_user_max`, held
    /// until the connection ends (see `admission`).
    user_permit: Option<admission::UserPermit>,
    /// The nonce this connection's INFO carried (nkey challenge).
    nonce: Option<Box<str>>,
    /// The session's account's topic space; None in the default account
    /// (when it exports nothing).
    space: Option<Arc<Space>>,
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
    /// A publish in an account's space that goes to importing accounts
    /// too: each event published in turn.
    Spread(smallvec::SmallVec<[Event; 2]>, Option<Event>),
}

/// CONNECT: who the client is (the machine answers `+OK` in verbose mode,
/// or `-ERR 'Authorization Violation'` and closes).
async fn connect<T: Transport>(
    glue: &mut NatsGlue,
    conn: &mut Connection<T>,
    machine: &mut NatsSession,
    echo: bool,
    credentials: &Credentials,
    out: &mut Actions<Request>,
) {
    let peer = Peer {
        addr: conn.transport.peer_addr(),
        local: conn.transport.local_addr(),
        certificate: conn.transport.peer_identity().map(|n| Arc::from(&*n)),
        nonce: glue.nonce.clone(),
    };
    let verdict = conn
        .ctx
        .authenticate(Protocol::Nats, credentials, &peer)
        .await;
    let mailbox = conn.mailbox().expect("NATS registers first");
    mailbox.echo.set(echo);
    let security = conn.ctx.security();
    match verdict {
        Ok(identity) => {
            glue.space = security.space(&identity.account);
            let source = peer.addr.map(|a| a.ip());
            let nats = admission::ListenerKind::Nats;
            match conn.ctx.admit_user(&identity, nats, source) {
                Ok(permit) => glue.user_permit = permit,
                Err(refusal) => {
                    machine.refused(refusal, out);
                    return;
                }
            }
            // `%c`: the CONNECT's `name`, else the id the router assigned.
            let client_id = match &*credentials.client_id {
                "" => &*mailbox.client_id,
                name => name,
            };
            let grants = match security.grants(&identity, client_id) {
                Ok(grants) => grants,
                Err(why) => {
                    machine.unauthorized(&why, out);
                    return;
                }
            };
            if !grants.is_allow_all() {
                *mailbox.grants.borrow_mut() = Some(grants.clone());
            }
            machine.authorized(grants);
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
            Request::Subscribe {
                sid,
                filter,
                queue,
                checked,
            } => {
                if mailbox.nats_subs.borrow().len() >= ctx.limits().subscriptions_per_session_max {
                    machine.subscribed(Subscribed::TooMany, out);
                    return true;
                }
                let filter = match &self.space {
                    Some(space) => space.topic(&filter).into_owned(),
                    None => filter,
                };
                ctx.nats_subscribe_checked(mailbox, &sid, filter, queue.as_deref(), checked);
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
            Request::Denied(denied) => {
                ctx.count_denied(Protocol::Nats, denied);
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
                Box::pin(connect(self, conn, machine, echo, &credentials, out)).await
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
