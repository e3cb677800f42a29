//! The HTTP edge on the connection driver: runs the HTTP machine
//! (`http::session`) and carries its requests to the shard — authenticate
//! the request's credentials (cached per connection), check its rights,
//! publish with backpressure and the durable point, or open an event
//! stream: a session with a mailbox, subscribed as an MQTT session is,
//! retained messages first.
//!
//! Answers (`http::session::Answer`):
//! - a publish is answered `202` once routed (QoS 1 with persistence on:
//!   once durable, `durable_ack`, where a PUBACK would go); `429` with
//!   `Retry-After`, before routing, while a subscriber of the topic that
//!   HTTP publishes congested (over its queue's soft limit) on this shard
//!   has not drained: the HTTP form of MQTT's pause, without holding the
//!   socket (the publish that congested it was accepted); `503` with `Retry-After`
//!   when the log cannot take the event; `401` for bad credentials, `403`
//!   for a topic the user may not publish to;
//! - an event stream is a mailbox (`Protocol::Http`): its filters are
//!   subscribed at QoS 1 (QoS 1 publishers pause for it as for any
//!   subscriber; the slow-consumer policy bounds it), the matching
//!   retained messages are queued right after (no await between, so they
//!   come before any live event), each with its stamp as its event id;
//!   with `Last-Event-ID: N` only those stamped after N. The stream's
//!   head (`200`, or `101` to a WebSocket upgrade) is written once every shard sees the subscriptions (a
//!   publish after it, from anywhere, reaches the stream), then the rest.
//!
//! Publishers have no mailbox (their answers go straight to the stream, in
//! order): their events carry `Origin::ROUTER`, so holds that other shards
//! put on a congesting publisher do not reach them; the local congestion
//! above does.
//!
//! Owns: the glue between `http::session::Request` and `ShardCtx`. Must
//! not touch: HTTP rules (the machine), the event stream's bytes
//! (`http::deliver`, written by the mailbox).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use glommio::net::TcpStream;

use super::ctx::{Handoff, ShardCtx};
use super::driver::{self, Connection, Glue};
use super::mailbox::{DeliverAs, Delivery, Mailbox, Protocol};
use super::transport::{self, Transport};
use super::{durable_ack, stats::Counters};
use crate::event::{Event, Origin};
use crate::http::response::Problem;
use crate::http::session::{Answer, HttpSession, Publish, Request, Subscribe};
use crate::http::HttpLimits;
use crate::security::accounts::Space;
use crate::security::permissions::{Denied, Subscription};
use crate::security::{Credentials, Grants, Peer};
use crate::session::{Action, Actions};
use crate::topic::trie::CHECKED;
use smallvec::SmallVec;

/// Congested subscribers a shard remembers for the 429 test; more are
/// forgotten (a later publish finds them again).
const CONGESTED_MAX: usize = 16;

/// `Retry-After` of a 429 or 503, in seconds.
const RETRY_AFTER_S: u32 = 1;

thread_local! {
    /// This shard's subscribers that HTTP publishes found over their
    /// queue's soft limit, until they drain (at most `CONGESTED_MAX`): an
    /// HTTP publish to a topic one of them subscribes to is answered 429
    /// (one list per shard thread, as the shard's own state is).
    static CONGESTED: std::cell::RefCell<Vec<Rc<Mailbox>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether a subscriber of `topic` (internal form) on this shard is still
/// congested by HTTP publishes (the ones that drained or closed are
/// forgotten on the way).
fn congested_for(topic: &str, limits: &crate::config::Limits) -> bool {
    CONGESTED.with_borrow_mut(|list| {
        if list.is_empty() {
            return false;
        }
        list.retain(|m| m.close_reason().is_none() && m.over_soft(limits));
        list.iter().any(|m| {
            m.subscriptions
                .borrow()
                .keys()
                .any(|f| crate::topic::filter_matches(crate::topic::split_share(f).1, topic))
        })
    })
}

/// Takes the subscribers a publish congested from the connection (the
/// driver would pause its reads for them; HTTP answers 429 instead).
fn note_congested<T: Transport>(conn: &mut Connection<T>) {
    if conn.congested.is_empty() {
        return;
    }
    CONGESTED.with_borrow_mut(|list| {
        for m in conn.congested.drain(..) {
            if list.len() < CONGESTED_MAX && !list.iter().any(|c| Rc::ptr_eq(c, &m)) {
                list.push(m);
            }
        }
    });
}

/// Serves one accepted TCP connection to its end. The caller has counted
/// it against `connections_max`; this releases that count.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    transport::configure(&stream, &ctx.config().socket);
    serve_on(ctx, Rc::new(std::cell::RefCell::new(stream))).await;
}

/// Serves HTTP over any transport.
pub async fn serve_on<T: Transport>(ctx: Rc<ShardCtx>, transport: Rc<T>) {
    let config = ctx.config();
    let limits = HttpLimits::from_config(&config);
    let mut machine = HttpSession::new(limits, ctx.topic_limits.get(), Instant::now());
    let mut conn = Connection::new(ctx.clone(), transport);
    // A request (head and body) is one packet.
    conn.read_max = conn
        .read_max
        .max(limits.head_bytes_max + limits.body_bytes_max);
    let mut glue = HttpGlue::default();
    let reason = driver::run(&mut conn, &mut machine, &mut glue).await;
    if let Some(mailbox) = conn.mailbox() {
        ctx.unregister(mailbox);
    }
    tracing::debug!(
        shard = ctx.id,
        peer = ?conn.transport.peer_addr(),
        reason = reason.label(),
        "HTTP connection closed"
    );
    driver::release(&ctx);
}

/// Who the connection's last credentials named, and what they may do.
struct Authorized {
    /// The `Authorization` header it was decided for (None: anonymous).
    header: Option<Box<[u8]>>,
    identity: crate::security::Identity,
    grants: Arc<Grants>,
    space: Option<Arc<Space>>,
}

/// Carries HTTP requests to the shard.
#[derive(Default)]
pub struct HttpGlue {
    pending: Option<Pending>,
    authorized: Option<Authorized>,
}

/// One per connection, kept in its glue: not boxed (as MQTT's).
#[allow(clippy::large_enum_variant)]
enum Pending {
    /// Not yet authenticated (or other credentials than the cached ones).
    Publish(Publish),
    /// Routed up to a ring with no room; `durable`, and the events after
    /// it (a batch's, an account's spread), routed once it is through.
    Handoff(Handoff, bool, Vec<Event>),
    /// Routed; answered once durable.
    Durable,
    Subscribe(Subscribe),
}

impl Glue<HttpSession> for HttpGlue {
    fn request<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut HttpSession,
        request: Request,
        out: &mut Actions<Request>,
    ) -> bool {
        match request {
            Request::Publish(p) if self.cached(p.authorization.as_deref()) => {
                match self.publish(conn, machine, p.events, out) {
                    Some(pending) => self.pending = Some(pending),
                    None => return true,
                }
            }
            Request::Publish(p) => self.pending = Some(Pending::Publish(p)),
            Request::Subscribe(s) => self.pending = Some(Pending::Subscribe(s)),
        }
        false
    }

    async fn wait<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut HttpSession,
        out: &mut Actions<Request>,
    ) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let mut pending = match pending {
            Pending::Publish(p) => {
                if let Err(problem) = self.authorize(conn, p.authorization).await {
                    return machine.answer(Answer::Problem(problem), Instant::now(), out);
                }
                match self.publish(conn, machine, p.events, out) {
                    Some(pending) => pending,
                    None => return,
                }
            }
            Pending::Subscribe(s) => {
                return Box::pin(self.subscribe(conn, machine, s, out)).await;
            }
            pending => pending,
        };
        if let Pending::Handoff(handoff, durable, rest) = pending {
            let (ctx, _, congested) = conn.parts();
            ctx.publish_handoff(handoff, congested).await;
            for event in rest {
                if event.retain {
                    ctx.retain(&event);
                }
                ctx.publish(event, congested).await;
            }
            note_congested(conn);
            if !durable {
                return machine.answer(Answer::Accepted, Instant::now(), out);
            }
            pending = Pending::Durable;
        }
        debug_assert!(matches!(pending, Pending::Durable));
        let answer = match durable_ack::reached(&conn.ctx).await {
            true => Answer::Accepted,
            false => Answer::Problem(storage_failing()),
        };
        machine.answer(answer, Instant::now(), out);
    }
}

fn storage_failing() -> Problem {
    Problem::new(
        503,
        "the router cannot make the event durable now (its log is failing)",
    )
    .retry_after(RETRY_AFTER_S)
}

impl HttpGlue {
    /// Whether `header` is the one the cached decision was made for.
    fn cached(&self, header: Option<&[u8]>) -> bool {
        self.authorized
            .as_ref()
            .is_some_and(|a| a.header.as_deref() == header)
    }

    /// Authenticates `header`'s credentials (Basic: user and password;
    /// Bearer: a token; none: anonymous) as MQTT and NATS clients are, and
    /// caches who they name and their rights for the next requests.
    async fn authorize<T: Transport>(
        &mut self,
        conn: &Connection<T>,
        header: Option<Box<[u8]>>,
    ) -> Result<(), Problem> {
        if self.cached(header.as_deref()) {
            return Ok(());
        }
        self.authorized = None;
        let credentials = credentials(header.as_deref())?;
        let ctx = &conn.ctx;
        let peer = Peer {
            addr: conn.transport.peer_addr(),
            local: conn.transport.local_addr(),
            certificate: conn.transport.peer_identity().map(|n| Arc::from(&*n)),
            nonce: None,
        };
        let identity = ctx
            .authenticate(Protocol::Http, &credentials, &peer)
            .await
            .map_err(|_| Problem::new(401, "the credentials were refused"))?;
        let security = ctx.security();
        // `%c` in rules: an HTTP client has no client id.
        let grants = security
            .grants(&identity, "")
            .map_err(|why| Problem::new(403, format!("no rights: {why}")))?;
        self.authorized = Some(Authorized {
            header,
            space: security.space(&identity.account),
            identity,
            grants,
        });
        Ok(())
    }

    /// Publishes an authorized request's events (one, or a CloudEvents
    /// batch's, all on one topic); what is left to wait for, if anything
    /// (else the machine has answered).
    fn publish<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut HttpSession,
        events: SmallVec<[Event; 1]>,
        out: &mut Actions<Request>,
    ) -> Option<Pending> {
        let now = Instant::now();
        let authorized = self.authorized.as_ref().expect("authorized first");
        let ctx = conn.ctx.clone();
        let Some(first) = events.first() else {
            debug_assert!(false, "a publish has an event");
            return None;
        };
        let topic = first.topic();
        if !authorized.grants.may_publish(topic) {
            ctx.count_denied(Protocol::Http, Denied::Publish);
            let detail = format!("may not publish to {topic:?}");
            machine.answer(Answer::Problem(Problem::new(403, detail)), now, out);
            return None;
        }
        if congested_for(topic, &ctx.limits()) {
            let problem = Problem::new(
                429,
                "a subscriber of this topic is over its queue's limit: retry once it drained",
            )
            .retry_after(RETRY_AFTER_S);
            machine.answer(Answer::Problem(problem), now, out);
            return None;
        }
        let durable = first.qos > 0 && ctx.persisting();
        if durable && !durable_ack::admits(&ctx) {
            machine.answer(Answer::Problem(storage_failing()), now, out);
            return None;
        }
        let mut routed = events.into_iter().flat_map(|mut event| {
            event.origin = Origin::ROUTER;
            match &authorized.space {
                Some(space) => space.spread(event),
                None => smallvec::smallvec![event],
            }
        });
        let mut left = None;
        for event in routed.by_ref() {
            if event.retain {
                ctx.retain(&event);
            }
            let (ctx, _, congested) = conn.parts();
            if let Err(handoff) = ctx.publish_now(event, congested) {
                left = Some(handoff);
                break;
            }
        }
        let rest: Vec<Event> = match left {
            Some(_) => routed.collect(),
            None => Vec::new(),
        };
        note_congested(conn);
        match (left, durable) {
            (Some(handoff), _) => Some(Pending::Handoff(handoff, durable, rest)),
            (None, true) => Some(Pending::Durable),
            (None, false) => {
                machine.answer(Answer::Accepted, now, out);
                None
            }
        }
    }

    /// Opens an event stream: authorizes every filter, registers the
    /// session, writes the stream's head, subscribes, queues the retained
    /// messages, and waits until every shard sees the subscriptions.
    async fn subscribe<T: Transport>(
        &mut self,
        conn: &mut Connection<T>,
        machine: &mut HttpSession,
        s: Subscribe,
        out: &mut Actions<Request>,
    ) {
        let now = Instant::now();
        if let Err(problem) = self.authorize(conn, s.authorization).await {
            return machine.answer(Answer::Problem(problem), now, out);
        }
        let authorized = self.authorized.as_ref().expect("authorized above");
        let ctx = conn.ctx.clone();
        let mut filters = Vec::with_capacity(s.filters.len());
        for filter in &s.filters {
            let internal: Box<str> = match &authorized.space {
                Some(space) => space.filter(filter).into(),
                None => filter.clone(),
            };
            let (_, plain) = crate::topic::split_share(&internal);
            let flags = match authorized.grants.subscription(plain) {
                Subscription::Denied => {
                    ctx.count_denied(Protocol::Http, Denied::Subscribe);
                    let detail = format!("may not subscribe to {filter:?}");
                    return machine.answer(Answer::Problem(Problem::new(403, detail)), now, out);
                }
                Subscription::Granted => 1,
                Subscription::Checked => 1 | CHECKED,
            };
            filters.push((internal, flags));
        }
        let (_, client_id) = ctx.assign_client_number();
        let mailbox = ctx.register(Protocol::Http, client_id);
        mailbox.http_ws.set(s.websocket);
        mailbox.peer.set(conn.transport.peer_addr());
        *mailbox.identity.borrow_mut() = Some(authorized.identity.clone());
        let grants = authorized.grants.clone();
        if !grants.is_allow_all() {
            *mailbox.grants.borrow_mut() = Some(grants.clone());
        }
        // Nothing is written before the stream's head, which goes once
        // every shard sees the subscriptions (as a SUBACK would).
        mailbox.await_greeting();
        conn.attach(mailbox.clone());
        let limits = ctx.limits();
        for (filter, flags) in &filters {
            ctx.subscribe(&mailbox, filter, *flags);
        }
        for (filter, _) in &filters {
            for (mut event, stamp) in ctx.retained_stamped(filter) {
                if s.after.is_some_and(|after| stamp <= after) {
                    continue;
                }
                if !grants.may_read(event.topic()) {
                    ctx.count_denied(Protocol::Http, Denied::Deliver);
                    continue;
                }
                event.born_ns = crate::event::REPLAY_NS;
                let id = stamp.max(1);
                if mailbox.deliver(event, DeliverAs::Http { id }, &limits) == Delivery::Dropped {
                    Counters::add(&ctx.counters.dropped_queue_full, 1);
                }
            }
        }
        ctx.barrier().await;
        // The head goes to the front of the queue, before the retained
        // messages and what was delivered during the barrier.
        let mark = out.list.len();
        machine.answer(Answer::Stream, Instant::now(), out);
        for action in out.list.drain(mark..) {
            if let Action::Write { from, to } = action {
                mailbox.send(&out.bytes[from..to]);
            }
        }
    }
}

/// The credentials an `Authorization` header carries.
fn credentials(header: Option<&[u8]>) -> Result<Credentials, Problem> {
    let Some(header) = header else {
        return Ok(Credentials::default());
    };
    let bad = || {
        Problem::new(
            401,
            "Authorization: Basic (user:password in base64) or Bearer (a token)",
        )
    };
    let header = std::str::from_utf8(header).map_err(|_| bad())?.trim();
    let (scheme, value) = header.split_once(' ').ok_or_else(bad)?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = text.split_once(':').ok_or_else(bad)?;
        Ok(Credentials {
            username: Some(user.into()),
            password: Some(password.as_bytes().into()),
            ..Credentials::default()
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials {
            token: Some(value.into()),
            ..Credentials::default()
        })
    } else {
        Err(bad())
    }
}
