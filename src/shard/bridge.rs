//! The bridge executor: this router's links to other routers (DESIGN.md
//! "Mesh", "Bridges are shards too").
//!
//! Owns: the mesh listener, the dialled and accepted link sockets, one
//! [`route::Router`] (the sans-IO routing core), per-link outbound buffers,
//! the QoS 1 copies not yet acknowledged by each peer, and the link view the
//! admin endpoint shows. It runs on its own executor, which joins the shards'
//! channel mesh as one more peer (the last): shards announce their interest
//! to it and send it their events exactly as they do to each other, so no
//! client shard ever waits on a link; the bridge announces the interest of
//! other routers to the shards as its own (so they send it what matches)
//! and publishes what arrives from links into the shards like a client
//! would, except that it never hands an event back to the mesh.
//!
//! Link lifecycle: TCP connect (or accept), both sides send a hello, each
//! checks the other's ([`link::check_hello`]: version, mesh name, not
//! itself), then the routing core resynchronises interest over the link and
//! QoS 1 copies the peer never acknowledged are sent again. A PING every
//! `mesh.keepalive_ms` measures the round trip; a link silent for
//! `mesh.link_timeout_ms` is dropped. Dialled links redial with exponential
//! backoff (`mesh.reconnect_min_ms` … `mesh.reconnect_max_ms`, jittered).
//!
//! Slow links never stall shards: what a link's socket cannot take waits
//! in that link's buffer up to `mesh.outbound_bytes_max`; past it events
//! for that link are dropped and counted (interest messages always go, and
//! are bounded by the interest table). QoS 1 copies are also kept, up to
//! `mesh.unacked_max` per peer, until the peer acknowledges them (cumulative
//! per-peer sequence numbers); after a reconnection they are sent again and
//! the far side drops the duplicates by (origin, event id). A copy that came
//! over a link is acknowledged there only once the copies made of it are
//! acknowledged by their next hops (`oblige`/`release`), so a router killed
//! mid-path leaves its unforwarded copies with the previous hop. Copies for
//! routers no link leads to yet (this router just restarted) are parked for
//! `mesh.link_hold_ms` and sent on when their interest arrives (`park`).
//!
//! Written by hand: no crate speaks this link protocol; the codec and the
//! routing core it drives are in `mesh/`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use serde::Serialize;

use super::ctx::{Interest, ShardCtx};
use super::io::{write_all, ReadBuffer};
use crate::config::{Config, MeshConfig, MeshResolved};
use crate::event::{now_ns, Event, EventMeta, Origin};
use crate::mesh::link::{self, Frame, LinkLimits, LinkMeta};
use crate::mesh::route::{
    self, Action, EventCopy, LinkCounters, LinkId, LinkMsg, LinkPolicy, RouterConfig,
};
use crate::mesh::session::{
    self as link_session, Deadline, LinkCloseReason, LinkSession, LinkTimers, Outbox, Request,
};
use crate::mesh::tls::{self, MeshTls};

mod delivery;
mod shards;
mod view;

pub use view::{LinkInfo, MeshView};

/// How often the bridge refreshes the admin view and checks for shutdown.
const TICK: Duration = Duration::from_millis(50);

/// A link that keeps failing to dial is logged at warn this often (and
/// whenever the reason changes); each attempt at debug.
const DIAL_WARN_EVERY: Duration = Duration::from_secs(30);

/// Largest hello accepted (its fields are two short strings).
const HELLO_BYTES_MAX: usize = 1024;

/// A link's read buffer (a larger frame grows it to its size, up to
/// `mesh.frame_bytes_max`).
const READ_BUFFER: usize = 256 * 1024;

/// A link's place in the admin view: for a dialled link, the same across
/// its reconnections; for an accepted one, one connection.
struct Slot {
    remote: Cell<Option<SocketAddr>>,
    dialled: bool,
    peer: RefCell<Option<String>>,
    /// The connection running now, if up.
    link: RefCell<Option<Rc<Link>>>,
    /// Counters of this slot's earlier connections.
    base: Cell<LinkCounters>,
    reconnects: Cell<u64>,
    dropped: Cell<u64>,
    /// QoS 0 copies not sent: the link's buffer was full.
    unsent: Cell<u64>,
    /// QoS 1 copies sent but dropped from the resend store before their
    /// ack (more than `mesh.unacked_max` outstanding).
    evicted: Cell<u64>,
    rtt_us: Cell<Option<u64>>,
    /// An accepted slot is shown while its connection lives (or while its
    /// peer's link is held).
    gone: Cell<bool>,
    /// See [`LinkInfo::last_error`].
    last_error: RefCell<Option<String>>,
    /// When a dial failure was last logged (they repeat every backoff).
    dial_warned: Cell<Option<Instant>>,
}

impl Slot {
    /// A dial (or the resolution before it) failed. Every backoff repeats
    /// it: warned at the first failure, when the reason changes, and every
    /// DIAL_WARN_EVERY; each retry at debug. `/links` shows the last one.
    fn dial_failed(&self, target: &str, error: String) {
        let changed = self.last_error.borrow().as_deref() != Some(&error);
        let due = self
            .dial_warned
            .get()
            .is_none_or(|t| t.elapsed() >= DIAL_WARN_EVERY);
        if changed || due {
            tracing::warn!(
                link = target,
                error,
                retries = self.reconnects.get(),
                "mesh: dial failed (retrying with backoff)"
            );
            self.dial_warned.set(Some(Instant::now()));
        } else {
            tracing::debug!(link = target, error, "mesh: dial failed");
        }
        *self.last_error.borrow_mut() = Some(error);
    }
}

/// One connection to a peer router, from hello to close.
struct Link {
    id: LinkId,
    peer: String,
    slot: Rc<Slot>,
    out: RefCell<Vec<u8>>,
    writer: Cell<Option<Waker>>,
    reader: Cell<Option<Waker>>,
    /// The session closed (mirrors `session.closed()`, read without a
    /// borrow by the tasks that wait on it).
    closed: Cell<bool>,
    /// The link protocol's state (hello, keepalive, acknowledgements):
    /// this file carries out what it decides.
    session: RefCell<LinkSession>,
    /// This router's retained store, still to be sent to the peer (the
    /// exchange that follows the interest table; see `feed_sync`).
    sync: RefCell<VecDeque<(Event, u64)>>,
}

impl Link {
    fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Carries out the session's writes and close (its requests are the
    /// read loop's: see `Bridge::on_request`).
    fn carry_out(&self, out: &mut link_session::Actions<'_>) {
        for action in out.list.drain(..) {
            match action {
                link_session::Action::Write { from, to } => {
                    if !self.closed.get() {
                        self.out
                            .borrow_mut()
                            .extend_from_slice(&out.bytes[from..to]);
                        self.wake_writer();
                    }
                }
                link_session::Action::Close(_) => self.mark_closed(),
                link_session::Action::Request(r) => {
                    debug_assert!(false, "request {r:?} outside the read loop")
                }
            }
        }
        out.bytes.clear();
    }

    fn mark_closed(&self) {
        if !self.closed.replace(true) {
            self.wake_writer();
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
    }

    /// Ends the link from this side (`tell`: with a CLOSE to the peer).
    fn end(&self, reason: LinkCloseReason, detail: impl Into<String>, tell: bool) {
        let mut out = link_session::Actions::default();
        self.session
            .borrow_mut()
            .close(reason, detail.into(), tell, &mut out);
        self.carry_out(&mut out);
    }
}

/// A QoS 1 copy that came over a link (its sequence number there): this
/// router acknowledges it only once every copy it made of it is
/// acknowledged by the next hop, dropped for good, or delivered here (see
/// `oblige`).
type Upstream = (LinkId, u64);

/// A QoS 1 copy kept for destinations that no link leads to yet.
struct Parked {
    copy: EventCopy,
    /// The link it came in on (never sent back there).
    from: Option<LinkId>,
    upstream: Option<Upstream>,
    event: Event,
    stamp: u64,
    until: Instant,
}

/// The part of an event a copy carries besides the routing fields.
struct Body<'a> {
    qos: u8,
    retain: bool,
    /// A retained message's stamp (`topic::retained`); 0 = none.
    stamp: u64,
    /// A retained-store exchange: stored where newer, never delivered,
    /// never in the resend store (a new link exchanges stores again).
    sync: bool,
    payload: &'a [u8],
    meta: LinkMeta<'a>,
}

impl<'a> Body<'a> {
    fn of_event(e: &'a Event) -> Body<'a> {
        let meta = match &e.meta {
            None => LinkMeta::default(),
            Some(m) => LinkMeta {
                reply: m.reply.as_deref(),
                headers: m.headers.as_deref(),
                response_topic: m.response_topic.as_deref(),
                correlation_data: m.correlation_data.as_deref(),
                content_type: m.content_type.as_deref(),
                payload_format: m.payload_format,
                user_properties: m
                    .user_properties
                    .iter()
                    .map(|(k, v)| (&**k, &**v))
                    .collect(),
                expiry_ms: m.expires_ns.map(|at| {
                    let left = at.saturating_sub(now_ns());
                    u32::try_from(left.div_ceil(1_000_000)).unwrap_or(u32::MAX)
                }),
            },
        };
        Body {
            qos: e.qos,
            retain: e.retain,
            stamp: 0,
            sync: false,
            payload: e.payload(),
            meta,
        }
    }

    fn of_frame(e: &link::Event<'a>) -> Body<'a> {
        Body {
            qos: e.qos,
            retain: e.retain,
            stamp: e.stamp,
            sync: e.sync,
            payload: e.payload,
            meta: e.meta.clone(),
        }
    }

    /// A retained message stamped `stamp`; `sync`: see the field.
    fn stamped(mut self, stamp: u64, sync: bool) -> Body<'a> {
        self.stamp = stamp;
        self.sync = sync;
        self
    }

    /// The event to hand to this router's subscribers.
    fn to_event(&self, topic: &str, origin: Origin) -> Event {
        let m = &self.meta;
        let meta = EventMeta {
            reply: m.reply.map(Into::into),
            headers: m.headers.map(Into::into),
            response_topic: m.response_topic.map(Into::into),
            correlation_data: m.correlation_data.map(Into::into),
            content_type: m.content_type.map(Into::into),
            payload_format: m.payload_format,
            user_properties: m
                .user_properties
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            expires_ns: m.expiry_ms.map(|ms| now_ns() + u64::from(ms) * 1_000_000),
        };
        let mut event = Event::new(topic, self.payload, self.qos, self.retain)
            .with_origin(origin)
            .with_meta(meta);
        event.born_ns = now_ns();
        event
    }
}

pub struct Bridge {
    ctx: Rc<ShardCtx>,
    config: Arc<Config>,
    router_id: String,
    router: RefCell<route::Router>,
    limits: LinkLimits,
    slots: RefCell<Vec<Rc<Slot>>>,
    /// Links up now, by id.
    links: RefCell<BTreeMap<LinkId, Rc<Link>>>,
    next_link: Cell<u32>,
    /// Ids of events entering the mesh here: they start at the wall clock
    /// in ns, so that a restarted router never reuses an id its peers still
    /// remember (that would make them drop its new events as duplicates).
    next_event: Cell<u64>,
    /// Shards with local interest, per filter (this router's interest).
    local: RefCell<HashMap<Arc<str>, u32>>,
    /// Each peer's QoS 1 resend store (outlives its links).
    outboxes: RefCell<HashMap<String, Outbox<Upstream>>>,
    /// Links down but held (mesh.link_hold_ms), by id: their peer.
    held: RefCell<HashMap<LinkId, String>>,
    /// QoS 0 copies for held links, and QoS 1 copies past unacked_max.
    held_dropped: Cell<u64>,
    /// QoS 1 copies (already acknowledged to the link they came over) for
    /// routers no link leads to yet, oldest first: they go on when a route
    /// appears, or are dropped after `mesh.link_hold_ms` (see `park`).
    parked: RefCell<VecDeque<Parked>>,
    /// Interest arrived since the parked copies were last retried.
    parked_dirty: Cell<bool>,
    /// While `retry_parked` runs: the deadline the re-parked copies keep.
    reparking: Cell<Option<Instant>>,
    /// While a QoS 1 copy from a link is routed: where it came from, so
    /// that the copies made of it hold back its acknowledgement.
    upstream: Cell<Option<Upstream>>,
    /// Links whose acknowledgement may have moved (see `flush_acks`).
    acks_due: RefCell<Vec<LinkId>>,
    /// Publishers' paths waiting for room in a live link's resend store
    /// (see `room`), and how often one waited.
    room_waiters: RefCell<Vec<Waker>>,
    room_waits: Cell<u64>,
    /// A resend store reached the `room` threshold since `room` last
    /// found none full: the per-event check is one read of this flag.
    store_filled: Cell<bool>,
    origin: Origin,
    /// xorshift state for queue-group picks among routers.
    rng: Cell<u64>,
    /// `[mesh.tls]`: None = plain TCP links.
    tls: Option<MeshTls>,
    retained_sent: Cell<u64>,
    retained_accepted: Cell<u64>,
    /// Link ends by reason (`LinkCloseReason::ALL` order).
    closes: RefCell<[u64; LinkCloseReason::ALL.len()]>,
}

/// A link's byte stream: plain TCP, or TLS over it (`[mesh.tls]`). The
/// reader and the writer task share it through a `RefCell`, borrowed only
/// inside one poll.
enum LinkStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

type LinkIo = RefCell<LinkStream>;

impl LinkStream {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            LinkStream::Plain(s) => s.as_raw_fd(),
            LinkStream::Tls(s) => s.get_ref().0.as_raw_fd(),
        }
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_flush(cx),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_close(cx),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}

/// A TLS record's first bytes (content type 20–23, version 3.x): a peer
/// with `[mesh.tls]` talking to one without.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17, 0x03, ..])
}

/// Pushes out what TLS still holds of the last writes (nothing to do for
/// plain TCP).
async fn flush(stream: &LinkIo) -> std::io::Result<()> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_flush(cx)).await
}

fn policy_of(mesh: &MeshConfig, peer: &str) -> LinkPolicy {
    match mesh.policy_for(peer) {
        None => LinkPolicy::default(),
        Some(p) => LinkPolicy {
            export_deny: p.export_deny.clone(),
            export_allow: p.export_allow.clone(),
            import_deny: p.import_deny.clone(),
            import_allow: p.import_allow.clone(),
            import_prefix: p.import_prefix.clone(),
        },
    }
}

fn add_counters(a: LinkCounters, b: LinkCounters) -> LinkCounters {
    LinkCounters {
        events_out: a.events_out + b.events_out,
        events_in: a.events_in + b.events_in,
        denied_export: a.denied_export + b.denied_export,
        denied_import: a.denied_import + b.denied_import,
    }
}

impl Bridge {
    pub fn new(ctx: Rc<ShardCtx>, config: Arc<Config>, mesh: &MeshResolved) -> Rc<Bridge> {
        let m = &config.mesh;
        let router = route::Router::new(
            mesh.router_id.clone(),
            RouterConfig {
                interest_entries_max: m.interest_entries_max,
                dests_max: LinkLimits::default().dests_max,
                dedup_window: m.dedup_window,
                dedup_origins_max: 1024,
                topic_limits: ctx.topic_limits.get(),
            },
        );
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let origin = Origin {
            shard: ctx.id as u16,
            session: u32::MAX,
        };
        Rc::new(Bridge {
            limits: LinkLimits {
                frame_bytes_max: m.frame_bytes_max,
                ..LinkLimits::default()
            },
            router_id: mesh.router_id.clone(),
            router: RefCell::new(router),
            config: config.clone(),
            ctx,
            slots: RefCell::default(),
            links: RefCell::default(),
            next_link: Cell::new(1),
            next_event: Cell::new(wall),
            local: RefCell::default(),
            outboxes: RefCell::default(),
            held: RefCell::default(),
            held_dropped: Cell::new(0),
            parked: RefCell::default(),
            parked_dirty: Cell::new(false),
            reparking: Cell::new(None),
            upstream: Cell::new(None),
            acks_due: RefCell::default(),
            room_waiters: RefCell::default(),
            room_waits: Cell::new(0),
            store_filled: Cell::new(false),
            origin,
            rng: Cell::new(wall | 1),
            tls: mesh.tls.clone(),
            retained_sent: Cell::new(0),
            retained_accepted: Cell::new(0),
            closes: RefCell::new([0; LinkCloseReason::ALL.len()]),
        })
    }

    // ----------------------------------------------- from this router's shards

    /// A shard's event for other routers: their plain subscribers (if
    /// `plain`) and one member of each of `groups` (which have no member
    /// on this router).
    pub fn on_local_event(&self, event: Event, plain: bool, groups: &[Arc<str>]) {
        if event.expired() || event.retain {
            // Retained events enter the mesh through `on_local_retain`
            // (every router stores them), not by interest alone.
            return;
        }
        let id = self.next_event.get();
        self.next_event.set(id + 1);
        let mut out = Vec::new();
        let groups: Vec<&str> = groups.iter().map(|g| &**g).collect();
        let mut pick = self.rng.get();
        pick ^= pick << 13;
        pick ^= pick >> 7;
        pick ^= pick << 17;
        self.rng.set(pick);
        let mut router = self.router.borrow_mut();
        if plain {
            router.publish_as(event.topic(), id, false, &groups, pick, &mut out);
        } else {
            // Only the groups: no plain destinations.
            router.publish_groups(event.topic(), id, &groups, pick, &mut out);
        }
        drop(router);
        let body = Body::of_event(&event);
        self.apply(out, Some(&body));
    }

    /// A retained publish on one of this router's shards (stored there and
    /// delivered to its subscribers already): to every router.
    pub fn on_local_retain(&self, event: &Event, stamp: u64) {
        if event.expired() {
            return;
        }
        let id = self.next_event.get();
        self.next_event.set(id + 1);
        let mut out = Vec::new();
        self.router
            .borrow_mut()
            .publish_retained(event.topic(), id, &mut out);
        let body = Body::of_event(event).stamped(stamp, false);
        self.apply(out, Some(&body));
    }

    /// True for a topic under one of this router's import prefixes: that
    /// link's view of another router's topic, not exchanged with others
    /// (the prefixed copy would travel on as a topic of its own).
    fn imported(&self, topic: &str) -> bool {
        self.config
            .mesh
            .policy
            .iter()
            .any(|p| !p.import_prefix.is_empty() && topic.starts_with(&p.import_prefix))
    }

    /// Queues a retained-store entry for the exchange on `link`; the queue
    /// is bounded (twice `limits.retained_messages_max`), past which the
    /// entry waits for the next time the link comes up (counted in the
    /// link's `dropped`).
    fn queue_sync(&self, link: &Link, event: Event, stamp: u64) {
        let max = 2 * self.config.limits.retained_messages_max.max(1);
        let mut queue = link.sync.borrow_mut();
        if queue.len() >= max {
            link.slot.dropped.set(link.slot.dropped.get() + 1);
            return;
        }
        queue.push_back((event, stamp));
        drop(queue);
        link.wake_writer();
    }

    /// Sends the next entries of the retained-store exchange queued for
    /// `link`, while its buffer is under half of `mesh.outbound_bytes_max`
    /// (the rest follows as it drains).
    fn feed_sync(&self, link: &Link) {
        let budget = self.config.mesh.outbound_bytes_max / 2;
        while !link.closed.get() && link.out.borrow().len() < budget {
            let Some((event, stamp)) = link.sync.borrow_mut().pop_front() else {
                return;
            };
            if event.expired() {
                continue;
            }
            let id = self.next_event.get();
            self.next_event.set(id + 1);
            let mut out = Vec::new();
            if self
                .router
                .borrow_mut()
                .sync_retained(link.id, event.topic(), id, &mut out)
            {
                self.retained_sent.set(self.retained_sent.get() + 1);
            }
            let body = Body::of_event(&event).stamped(stamp, true);
            self.apply(out, Some(&body));
        }
    }

    /// A shard's first (`add`) or last subscriber of a filter.
    pub fn on_local_interest(&self, interest: &Interest, add: bool) {
        // A queue group's interest is its own key, `$share/{group}/{filter}`.
        let key: Arc<str> = match &interest.group {
            Some(g) => Arc::from(route::group_key(Some(g), &interest.filter)),
            None => interest.filter.clone(),
        };
        let mut out = Vec::new();
        {
            let mut local = self.local.borrow_mut();
            let mut router = self.router.borrow_mut();
            if add {
                let n = local.entry(key.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    if let Err(e) = router.local_subscribe(&key, &mut out) {
                        tracing::warn!(filter = &*key, error = %e, "mesh: interest not announced");
                    }
                }
            } else if let Some(n) = local.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    local.remove(&key);
                    router.local_unsubscribe(&key, &mut out);
                }
            }
        }
        self.apply(out, None);
    }

    // ------------------------------------------------------------ actions

    /// Carries out the routing core's actions; returns what to deliver to
    /// this router's subscribers (for `body`): (topic, plain, groups).
    fn apply(&self, actions: Vec<Action>, body: Option<&Body<'_>>) -> Vec<Delivery> {
        let mut deliver = Vec::new();
        for action in actions {
            match action {
                Action::Send { link, msg } => {
                    let Some(l) = self.links.borrow().get(&link).cloned() else {
                        // A held link: events go to its peer's new link if
                        // it is back (the routes it did not announce again
                        // stay on the held one), else wait for its peer.
                        let held = self.held.borrow().get(&link).cloned();
                        if let (Some(peer), LinkMsg::Event(copy), Some(body)) = (held, &msg, body) {
                            match self.live_link_to(&peer) {
                                Some(live) => self.push_event(&live, copy, body),
                                None => self.hold_event(&peer, copy, body),
                            }
                        }
                        continue;
                    };
                    match msg {
                        LinkMsg::InterestAdd {
                            filter,
                            origin,
                            distance,
                        } => self.push_frame(
                            &l,
                            &Frame::InterestAdd {
                                filter: &filter,
                                group: None,
                                origin: &origin,
                                distance,
                            },
                        ),
                        LinkMsg::InterestRemove { filter, origin } => self.push_frame(
                            &l,
                            &Frame::InterestRemove {
                                filter: &filter,
                                group: None,
                                origin: &origin,
                            },
                        ),
                        LinkMsg::Event(copy) => {
                            if let Some(body) = body {
                                self.push_event(&l, &copy, body);
                            }
                        }
                    }
                }
                Action::Deliver {
                    topic,
                    plain,
                    groups,
                    ..
                } => deliver.push((topic, plain, groups)),
                Action::Unroutable { copy, from, looped } => {
                    if looped {
                        // Taken over here: see `route::Action::Unroutable`.
                        let upstream = self.upstream.take();
                        self.park(copy, from, body);
                        self.upstream.set(upstream);
                    } else {
                        self.park(copy, from, body)
                    }
                }
                // The retained key is no topic the shards could publish on.
                Action::RemoteInterest { filter, .. } if filter == route::RETAINED_KEY => {}
                Action::RemoteInterest { filter, present } => {
                    shards::interest(&self.ctx, &filter, present)
                }
            }
        }
        deliver
    }

    fn push_frame(&self, link: &Link, frame: &Frame<'_>) {
        if link.closed.get() {
            return;
        }
        if let Err(e) = link::encode(frame, &mut link.out.borrow_mut()) {
            tracing::warn!(peer = link.peer, error = %e, frame = frame.name(), "mesh: frame not sent");
            return;
        }
        link.wake_writer();
    }

    fn push_event(&self, link: &Link, copy: &EventCopy, body: &Body<'_>) {
        if link.closed.get() {
            // Going down: a QoS 1 copy waits for the peer's return.
            self.hold_event(&link.peer, copy, body);
            return;
        }
        let slot = &link.slot;
        let full = link.out.borrow().len() >= self.config.mesh.outbound_bytes_max;
        let reliable = body.qos > 0 && !body.sync;
        if full && !reliable {
            slot.unsent.set(slot.unsent.get() + 1);
            return;
        }
        if !reliable {
            let frame = copy_frame(copy, 0, body);
            if let Err(e) = link::encode(&frame, &mut link.out.borrow_mut()) {
                tracing::warn!(peer = link.peer, error = %e, "mesh: event not sent");
                return;
            }
            link.wake_writer();
            return;
        }
        let mut outboxes = self.outboxes.borrow_mut();
        let ob = outboxes.entry(link.peer.clone()).or_default();
        let frame = copy_frame(copy, ob.next_seq(), body);
        let mut encoded = Vec::with_capacity(link::encoded_len(&frame));
        if let Err(e) = link::encode(&frame, &mut encoded) {
            tracing::warn!(peer = link.peer, error = %e, "mesh: event not sent");
            return;
        }
        let upstream = self.oblige();
        let mut out = link.out.borrow_mut();
        let room = (!full).then_some(&mut *out);
        let evicted = ob.keep(encoded, upstream, room, self.config.mesh.unacked_max);
        drop(out);
        if ob.len() >= self.store_threshold() {
            self.store_filled.set(true);
        }
        drop(outboxes);
        if let Some(old) = evicted {
            self.release(old.upstream);
            if old.unsent {
                // Never sent: lost.
                slot.dropped.set(slot.dropped.get() + 1);
            } else {
                // Sent, but no longer resent if the link drops.
                slot.evicted.set(slot.evicted.get() + 1);
            }
        }
        link.wake_writer();
    }

    /// A copy for a held link (down, its peer expected back): QoS 1 waits
    /// in the peer's resend store, sent when the peer returns; QoS 0 is
    /// dropped and counted.
    fn hold_event(&self, peer: &str, copy: &EventCopy, body: &Body<'_>) {
        // A store-exchange copy is never kept: the next link-up exchanges
        // the stores again.
        if body.qos == 0 || body.sync {
            self.held_dropped.set(self.held_dropped.get() + 1);
            return;
        }
        let mut outboxes = self.outboxes.borrow_mut();
        let ob = outboxes.entry(peer.to_owned()).or_default();
        let frame = copy_frame(copy, ob.next_seq(), body);
        let mut encoded = Vec::with_capacity(link::encoded_len(&frame));
        if let Err(e) = link::encode(&frame, &mut encoded) {
            tracing::warn!(peer, error = %e, "mesh: event not kept");
            return;
        }
        let upstream = self.oblige();
        let evicted = ob.keep(encoded, upstream, None, self.config.mesh.unacked_max);
        if ob.len() >= self.store_threshold() {
            self.store_filled.set(true);
        }
        drop(outboxes);
        if let Some(old) = evicted {
            self.release(old.upstream);
            self.held_dropped.set(self.held_dropped.get() + 1);
        }
    }

    /// Moves QoS 1 copies waiting for room into the link's buffer.
    fn refill(&self, link: &Link) {
        self.refill_outbox(link);
        self.feed_sync(link);
    }

    fn refill_outbox(&self, link: &Link) {
        if let Some(ob) = self.outboxes.borrow_mut().get_mut(&link.peer) {
            let max = self.config.mesh.outbound_bytes_max;
            ob.refill(&mut link.out.borrow_mut(), max);
        }
    }

    // ------------------------------------------------------------- links

    fn timers(&self) -> LinkTimers {
        let m = &self.config.mesh;
        LinkTimers {
            keepalive: Duration::from_millis(m.keepalive_ms),
            link_timeout: Duration::from_millis(m.link_timeout_ms),
            hello_timeout: Duration::from_millis(m.connect_timeout_ms),
        }
    }

    /// Counts a link's end by reason (`weft_mesh_link_closes_total`).
    fn count_close(&self, reason: LinkCloseReason) {
        let i = LinkCloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL");
        self.closes.borrow_mut()[i] += 1;
    }

    /// The link's stream: the TCP connection itself, or (with
    /// `[mesh.tls]`) TLS over it once the handshake (bounded by
    /// `mesh.connect_timeout_ms`) has verified the peer's certificate.
    async fn secure(
        &self,
        slot: &Slot,
        tcp: TcpStream,
        remote: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<LinkStream, String> {
        let Some(tls) = &self.tls else {
            return Ok(LinkStream::Plain(tcp));
        };
        let handshake = async {
            if slot.dialled {
                let ip = remote
                    .or(slot.remote.get())
                    .map(|a| a.ip())
                    .ok_or("no peer address")?;
                let connector = futures_rustls::TlsConnector::from(tls.client.clone());
                connector
                    .connect(tls.name_for(ip), tcp)
                    .await
                    .map(futures_rustls::TlsStream::Client)
            } else {
                let acceptor = futures_rustls::TlsAcceptor::from(tls.server.clone());
                acceptor
                    .accept(tcp)
                    .await
                    .map(futures_rustls::TlsStream::Server)
            }
            .map_err(|e| {
                let hint = match e.to_string() {
                    m if m.contains("InvalidContentType") => " (is the peer without [mesh.tls]?)",
                    _ => "",
                };
                format!("TLS handshake failed: {e}{hint}")
            })
        };
        let stream = futures_lite::future::or(handshake, async {
            glommio::timer::sleep(timeout).await;
            Err("no TLS handshake within mesh.connect_timeout_ms".to_string())
        })
        .await?;
        Ok(LinkStream::Tls(Box::new(stream)))
    }

    /// With `mesh.tls.router_id_in_cert`: the peer's certificate must name
    /// the router id its hello claimed.
    fn check_cert(&self, stream: &LinkStream, peer: &str) -> Result<(), String> {
        let (Some(t), LinkStream::Tls(s)) = (&self.tls, stream) else {
            return Ok(());
        };
        if !t.router_id_in_cert {
            return Ok(());
        }
        let cert = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("the peer presented no certificate")?;
        tls::check_router_id(cert, peer)
    }

    /// Runs one connection: hello, then frames until it ends.
    async fn run_link(self: &Rc<Self>, slot: &Rc<Slot>, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let remote = tcp.peer_addr().ok();
        slot.remote.set(remote.or(slot.remote.get()));
        let timeout = Duration::from_millis(self.config.mesh.connect_timeout_ms);
        let stream = match self.secure(slot, tcp, remote, timeout).await {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!(remote = ?remote, "mesh: link refused: {reason}");
                *slot.last_error.borrow_mut() = Some(format!("link refused: {reason}"));
                return;
            }
        };
        let stream: Rc<LinkIo> = Rc::new(RefCell::new(stream));
        let mut session = LinkSession::new(
            &self.router_id,
            &self.config.mesh.name,
            self.timers(),
            Instant::now(),
        );
        // Small until the peer proved itself with a hello.
        let mut rb = ReadBuffer::default();
        let result = self.handshake(&mut session, &stream, &mut rb).await;
        let peer = match result {
            Ok(peer) => peer,
            Err((reason, detail, last_words)) => {
                self.count_close(reason);
                tracing::warn!(remote = ?remote, reason = reason.label(), "mesh: {detail}");
                *slot.last_error.borrow_mut() = Some(detail);
                if !last_words.is_empty() && write_all(&stream, &last_words).await.is_ok() {
                    let _ = flush(&stream).await;
                }
                return;
            }
        };
        if self.links.borrow().len() >= self.config.mesh.links_max {
            self.count_close(LinkCloseReason::LinksMax);
            tracing::warn!(peer, remote = ?remote, max = self.config.mesh.links_max, "mesh: link refused: mesh.links_max reached");
            return;
        }
        let id = LinkId(self.next_link.get());
        self.next_link.set(id.0 + 1);
        let link = Rc::new(Link {
            id,
            peer: peer.clone(),
            slot: slot.clone(),
            out: RefCell::default(),
            writer: Cell::new(None),
            reader: Cell::new(None),
            closed: Cell::new(false),
            session: RefCell::new(session),
            sync: RefCell::default(),
        });
        *slot.peer.borrow_mut() = Some(peer.clone());
        if !slot.dialled {
            self.adopt_history(slot, &peer);
        }
        *slot.link.borrow_mut() = Some(link.clone());
        self.links.borrow_mut().insert(id, link.clone());
        tracing::info!(peer, remote = ?remote, link = id.0, "mesh: link up");
        *slot.last_error.borrow_mut() = None;
        slot.dial_warned.set(None);
        // Interest first (the whole table), then what the peer never
        // acknowledged.
        let mut out = Vec::new();
        self.router.borrow_mut().link_up_with_policy(
            id,
            &peer,
            policy_of(&self.config.mesh, &peer),
            &mut out,
        );
        self.apply(out, None);
        if let Some(ob) = self.outboxes.borrow_mut().get_mut(&peer) {
            // Resend what the peer never acknowledged.
            ob.rewind();
        }
        // Then this router's retained store, so that a router that joins
        // or returns learns what was retained (or deleted) meanwhile.
        *link.sync.borrow_mut() = self
            .ctx
            .retained_snapshot()
            .into_iter()
            .filter(|(e, _)| !self.imported(e.topic()))
            .collect();
        self.refill(&link);
        // A PING right after the table: the peer's first PING or PONG tells
        // it our whole table is in (see `table_received`).
        let mut out = link_session::Actions::default();
        link.session
            .borrow_mut()
            .table_sent(Instant::now(), &mut out);
        link.carry_out(&mut out);
        let writer = glommio::spawn_local(write_loop(self.clone(), link.clone(), stream.clone()));
        let keepalive = glommio::spawn_local(keepalive(link.clone()));
        // Links are few and busy: one buffer of a fixed size from now on,
        // grown only for a frame larger than it.
        if rb.data.len() < READ_BUFFER {
            rb.data.resize(READ_BUFFER, 0);
        }
        self.read_loop(&link, slot, &stream, rb).await;
        // Ended by the session (or from elsewhere); a loop that ended
        // otherwise lost its connection.
        link.end(LinkCloseReason::ConnectionLost, "read loop ended", false);
        keepalive.cancel().await;
        writer.await;
        let mut out = Vec::new();
        let hold_ms = self.config.mesh.link_hold_ms;
        let held = {
            let mut router = self.router.borrow_mut();
            if let Some(c) = router.link_counters(id) {
                slot.base.set(add_counters(slot.base.get(), c));
            }
            if hold_ms > 0 && !self.ctx.stopping.get() {
                router.link_hold(id, &mut out)
            } else {
                router.link_down(id, &mut out);
                false
            }
        };
        self.links.borrow_mut().remove(&id);
        *slot.link.borrow_mut() = None;
        if held {
            // Routers reachable only through this peer stay reachable for
            // mesh.link_hold_ms: their QoS 1 events wait for the peer.
            self.held.borrow_mut().insert(id, peer.clone());
            let bridge = self.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(hold_ms)).await;
                bridge.held.borrow_mut().remove(&id);
                if bridge.router.borrow().is_held(id) {
                    let mut out = Vec::new();
                    bridge.router.borrow_mut().link_down(id, &mut out);
                    bridge.apply(out, None);
                }
            })
            .detach();
        }
        self.apply(out, None);
        if self
            .outboxes
            .borrow()
            .get(&peer)
            .is_some_and(|o| o.is_empty())
        {
            self.outboxes.borrow_mut().remove(&peer);
        }
        let (reason, detail) = {
            let session = link.session.borrow();
            let reason = session.closed().expect("ended above");
            (reason, session.detail().to_owned())
        };
        self.count_close(reason);
        if self.ctx.stopping.get() || reason.graceful() {
            tracing::info!(peer, remote = ?remote, reason = detail, "mesh: link closed");
        } else {
            tracing::warn!(peer, remote = ?remote, reason = detail, "mesh: link down");
            *slot.last_error.borrow_mut() = Some(format!("link down: {detail}"));
        }
    }

    /// Sends this router's hello and reads the peer's, within
    /// `mesh.connect_timeout_ms`: the peer's router id, or why not (and
    /// the last words to write: a CLOSE that tells the peer).
    async fn handshake(
        &self,
        session: &mut LinkSession,
        stream: &LinkIo,
        rb: &mut ReadBuffer,
    ) -> Result<String, (LinkCloseReason, String, Vec<u8>)> {
        let mut out = link_session::Actions::default();
        session.start(&mut out);
        let io = |e: std::io::Error| {
            (
                LinkCloseReason::ConnectionLost,
                format!("link closed before its hello: {e}"),
                Vec::new(),
            )
        };
        write_all(stream, &out.bytes).await.map_err(io)?;
        flush(stream).await.map_err(io)?;
        let deadline = session.next_deadline().expect("a hello has its deadline");
        loop {
            if self.tls.is_none() && looks_like_tls(rb.filled()) {
                let detail = "link refused: the peer speaks TLS: set [mesh.tls] here too";
                return Err((LinkCloseReason::TlsRefused, detail.into(), Vec::new()));
            }
            let mut out = link_session::Actions::default();
            let decoded = link::decode(rb.filled(), &self.limits);
            let decoded = match decoded {
                Ok(Some((frame, n))) => {
                    session.on_frame(frame, Instant::now(), &mut out);
                    // The hello's requests (Up) are read from the session.
                    out.list
                        .retain(|a| !matches!(a, link_session::Action::Request(_)));
                    Some(n)
                }
                Ok(None) => None,
                Err(e) => {
                    session.on_decode_error(&e, &mut out);
                    Some(0)
                }
            };
            let closed = out.closed();
            let last_words = std::mem::take(&mut out.bytes);
            drop(out);
            if let Some(reason) = closed {
                return Err((reason, session.detail().to_owned(), last_words));
            }
            match decoded {
                Some(n) => rb.start += n,
                None => {
                    let pending = pending_len(rb.filled());
                    if pending > HELLO_BYTES_MAX {
                        let detail =
                            format!("link refused: first frame of {pending} bytes is no hello");
                        return Err((LinkCloseReason::BadHello, detail, Vec::new()));
                    }
                    let spare = rb.spare(HELLO_BYTES_MAX, pending);
                    let read = futures_lite::future::or(
                        async { Some(read_once(stream, spare, None).await) },
                        async {
                            glommio::timer::sleep(
                                deadline.saturating_duration_since(Instant::now()),
                            )
                            .await;
                            None
                        },
                    )
                    .await;
                    match read {
                        Some(Ok(n)) => rb.end += n,
                        Some(Err((_, e))) => {
                            let detail = format!("link closed before its hello: {e}");
                            return Err((LinkCloseReason::ConnectionLost, detail, Vec::new()));
                        }
                        None => {
                            let mut out = link_session::Actions::default();
                            session.handle_timeout(Instant::now().max(deadline), &mut out);
                            if let Some(reason) = out.closed() {
                                let detail = session.detail().to_owned();
                                return Err((reason, detail, out.bytes));
                            }
                        }
                    }
                }
            }
            if session.is_up() {
                let peer = session.peer().expect("accepted").to_owned();
                if let Err(e) = self.check_cert(&stream.borrow(), &peer) {
                    let mut out = link_session::Actions::default();
                    let detail = format!("link refused: {e}");
                    session.close(LinkCloseReason::TlsRefused, detail, true, &mut out);
                    return Err((
                        LinkCloseReason::TlsRefused,
                        session.detail().into(),
                        out.bytes,
                    ));
                }
                return Ok(peer);
            }
        }
    }

    /// Reads and applies frames until the link ends (the session knows
    /// why).
    async fn read_loop(
        self: &Rc<Self>,
        link: &Rc<Link>,
        slot: &Slot,
        stream: &LinkIo,
        mut rb: ReadBuffer,
    ) {
        // glommio hands back a read at once while data waits, so a peer
        // that floods would keep this task running: after this much read
        // without a break it yields, and the executor's other tasks (the
        // links' writers, other links, and shard 0's clients when the
        // bridge runs in its executor) get their turn.
        const YIELD_BYTES: usize = 256 * 1024;
        let mut since_yield = 0;
        // Heard from the peer: one clock read per read, not per frame.
        let mut now = Instant::now();
        loop {
            loop {
                let mut out = link_session::Actions::default();
                let decoded = link::decode(rb.filled(), &self.limits);
                let (frame, n) = match decoded {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => {
                        link.session.borrow_mut().on_decode_error(&e, &mut out);
                        link.carry_out(&mut out);
                        return;
                    }
                };
                link.session.borrow_mut().on_frame(frame, now, &mut out);
                let list = std::mem::take(&mut out.list);
                for action in list {
                    match action {
                        link_session::Action::Write { from, to } => {
                            link.out
                                .borrow_mut()
                                .extend_from_slice(&out.bytes[from..to]);
                            link.wake_writer();
                            continue;
                        }
                        link_session::Action::Request(r) => {
                            if !self.on_request(link, slot, r).await {
                                return; // closed while delivering
                            }
                        }
                        link_session::Action::Close(_) => {
                            link.mark_closed();
                            return;
                        }
                    }
                }
                drop(out);
                rb.start += n;
            }
            self.ack_if_due(link);
            let pending = pending_len(rb.filled());
            let spare = rb.spare(READ_BUFFER, pending);
            if since_yield >= YIELD_BYTES {
                since_yield = 0;
                futures_lite::future::yield_now().await;
            }
            match read_once(stream, spare, Some(link)).await {
                Ok(n) => {
                    rb.end += n;
                    since_yield += n;
                    now = Instant::now();
                    link.session.borrow_mut().heard(now);
                }
                Err((reason, detail)) => {
                    link.end(reason, detail, false);
                    return;
                }
            }
        }
    }

    /// Carries out one request of the session; false when the link was
    /// closed (from elsewhere) while an event waited for a shard's ring.
    async fn on_request(&self, link: &Link, slot: &Slot, request: Request<'_>) -> bool {
        match request {
            Request::Route(Frame::Event(e)) => return self.on_event(link, e).await,
            Request::Route(frame) => self.on_interest(link, frame),
            Request::Acked(seq) => {
                let mut done = Vec::new();
                if let Some(ob) = self.outboxes.borrow_mut().get_mut(&link.peer) {
                    ob.acked(seq, &mut done);
                }
                for upstream in done {
                    self.release(Some(upstream));
                }
                self.flush_acks();
                self.wake_room();
            }
            Request::TableReceived => self.table_received(link),
            Request::RoundTrip(rtt) => slot.rtt_us.set(Some(rtt.as_micros() as u64)),
            // Only at hello (see `handshake`).
            Request::Up => debug_assert!(false, "a second Up"),
        }
        true
    }

    /// An event copy from the link: routed, delivered here, passed on.
    async fn on_event(&self, link: &Link, e: link::Event<'_>) -> bool {
        let copy = EventCopy {
            origin: e.origin.to_owned(),
            id: e.id,
            hops: e.hops,
            dests: e.dests.iter().map(|d| (*d).to_owned()).collect(),
            groups: e
                .groups
                .iter()
                .map(|(d, g)| ((*d).to_owned(), (*g).to_owned()))
                .collect(),
            topic: e.topic.to_owned(),
            retain: e.retain,
        };
        let mut out = Vec::new();
        self.router
            .borrow_mut()
            .on_message(link.id, LinkMsg::Event(copy), &mut out);
        let body = Body::of_frame(&e);
        if e.seq > 0 {
            self.upstream.set(Some((link.id, e.seq)));
        }
        let deliveries = self.apply(out, Some(&body));
        self.upstream.set(None);
        for (topic, plain, groups) in deliveries {
            let event = body.to_event(&topic, self.origin);
            if body.sync {
                // A peer's retained store: what is newer here is
                // stored and passed on, one link at a time, to the
                // other peers (each of which passes on what is news
                // to it: the exchange ends where nothing is newer).
                // Not over a link that rewrites topics: the
                // prefixed copies would echo back and forth.
                let prefixed = self
                    .config
                    .mesh
                    .policy_for(&link.peer)
                    .is_some_and(|p| !p.import_prefix.is_empty());
                if event.retain && !prefixed && shards::retain(&self.ctx, &event, body.stamp) {
                    self.retained_accepted.set(self.retained_accepted.get() + 1);
                    let others: Vec<Rc<Link>> = self
                        .links
                        .borrow()
                        .values()
                        .filter(|l| l.id != link.id)
                        .cloned()
                        .collect();
                    for other in others {
                        self.queue_sync(&other, event.clone(), body.stamp);
                    }
                }
                continue;
            }
            if event.retain {
                // Every router keeps every retained message (the
                // newest, by stamp).
                shards::retain(&self.ctx, &event, body.stamp);
            }
            if !plain && groups.is_empty() {
                continue;
            }
            // A full ring to a shard holds this link's reader (the
            // backpressure reaches the peer through TCP), but never
            // past the link's end: a link closed meanwhile (silent
            // past its timeout, shutdown) ends here, and the peer
            // resends the QoS 1 copies it has no ack for.
            let delivered = futures_lite::future::or(
                async {
                    shards::publish(&self.ctx, event, plain, &groups).await;
                    true
                },
                async {
                    until_closed(link).await;
                    false
                },
            )
            .await;
            if !delivered {
                return false;
            }
        }
        if e.seq > 0 {
            link.session.borrow_mut().processed(e.seq);
        }
        true
    }

    /// Interest from the link, for the routing core.
    fn on_interest(&self, link: &Link, frame: Frame<'_>) {
        let msg = match frame {
            Frame::InterestAdd {
                filter,
                origin,
                distance,
                ..
            } => LinkMsg::InterestAdd {
                filter: filter.to_owned(),
                origin: origin.to_owned(),
                distance,
            },
            Frame::InterestRemove { filter, origin, .. } => LinkMsg::InterestRemove {
                filter: filter.to_owned(),
                origin: origin.to_owned(),
            },
            other => {
                debug_assert!(false, "{} is no interest", other.name());
                return;
            }
        };
        if matches!(msg, LinkMsg::InterestAdd { .. }) && !self.parked.borrow().is_empty() {
            self.parked_dirty.set(true);
        }
        let mut out = Vec::new();
        self.router.borrow_mut().on_message(link.id, msg, &mut out);
        self.apply(out, None);
    }

    /// The peer's first PING or PONG on a link: everything it sent before,
    /// its whole interest table included, has been applied. A held link of
    /// the same peer ends now, not at hello: its routes never lapse.
    fn table_received(&self, link: &Link) {
        let had = self.held.borrow().values().any(|p| *p == link.peer);
        if had {
            let mut out = Vec::new();
            let ended = self.router.borrow_mut().release_held(&link.peer, &mut out);
            for id in ended {
                self.held.borrow_mut().remove(&id);
            }
            self.apply(out, None);
        }
        // The peer's table may lead to routers that copies wait for.
        self.retry_parked();
    }

    /// An accepted link from `peer`: its earlier connections' counters
    /// (ended accepted slots of the same peer) carry on in this one, so
    /// that the view keeps one entry per peer and direction.
    fn adopt_history(&self, slot: &Rc<Slot>, peer: &str) {
        let mut slots = self.slots.borrow_mut();
        let mut adopted = Vec::new();
        slots.retain(|s| {
            let same = !Rc::ptr_eq(s, slot)
                && !s.dialled
                && s.gone.get()
                && s.link.borrow().is_none()
                && s.peer.borrow().as_deref() == Some(peer);
            if same {
                adopted.push(s.clone());
            }
            !same
        });
        for old in adopted {
            slot.base.set(add_counters(slot.base.get(), old.base.get()));
            slot.reconnects
                .set(slot.reconnects.get() + old.reconnects.get() + 1);
            slot.dropped.set(slot.dropped.get() + old.dropped.get());
            slot.unsent.set(slot.unsent.get() + old.unsent.get());
            slot.evicted.set(slot.evicted.get() + old.evicted.get());
        }
    }

    fn new_slot(&self, remote: Option<SocketAddr>, dialled: bool) -> Rc<Slot> {
        let slot = Rc::new(Slot {
            remote: Cell::new(remote),
            dialled,
            peer: RefCell::new(None),
            link: RefCell::new(None),
            base: Cell::new(LinkCounters::default()),
            reconnects: Cell::new(0),
            dropped: Cell::new(0),
            unsent: Cell::new(0),
            evicted: Cell::new(0),
            rtt_us: Cell::new(None),
            gone: Cell::new(false),
            last_error: RefCell::new(None),
            dial_warned: Cell::new(None),
        });
        let mut slots = self.slots.borrow_mut();
        // Ended accepted links stay (hidden) until their peer returns, for
        // their counters; at most links_max of them.
        let ended = slots.iter().filter(|s| s.gone.get()).count();
        if ended >= self.config.mesh.links_max {
            if let Some(i) = slots.iter().position(|s| s.gone.get()) {
                slots.remove(i);
            }
        }
        slots.push(slot.clone());
        slot
    }

    /// Sends a graceful close on every link (shutdown).
    fn close_all(&self, reason: &str) {
        let links: Vec<Rc<Link>> = self.links.borrow().values().cloned().collect();
        for l in links {
            l.end(LinkCloseReason::Shutdown, reason, true);
        }
    }
}

/// The link frame of one copy (`seq` 0 for QoS 0).
fn copy_frame<'a>(copy: &'a EventCopy, seq: u64, body: &'a Body<'a>) -> Frame<'a> {
    Frame::Event(link::Event {
        id: copy.id,
        seq,
        origin: &copy.origin,
        hops: copy.hops,
        dests: copy.dests.iter().map(String::as_str).collect(),
        groups: copy
            .groups
            .iter()
            .map(|(d, g)| (d.as_str(), g.as_str()))
            .collect(),
        topic: &copy.topic,
        qos: body.qos,
        retain: body.retain,
        stamp: body.stamp,
        sync: body.sync,
        payload: body.payload,
        meta: body.meta.clone(),
    })
}

/// Length of the frame at the front of `buf`, if its prefix is there.
fn pending_len(buf: &[u8]) -> usize {
    buf.first_chunk::<4>()
        .map_or(0, |p| u32::from_be_bytes(*p) as usize + 4)
}

/// Returns once the link is closed (from elsewhere).
async fn until_closed(link: &Link) {
    poll_fn(|cx| {
        if link.closed.get() {
            Poll::Ready(())
        } else {
            link.reader.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    })
    .await
}

/// One read; ends early when the link is closed from elsewhere (with the
/// session's reason).
async fn read_once(
    stream: &LinkIo,
    buf: &mut [u8],
    link: Option<&Link>,
) -> Result<usize, (LinkCloseReason, String)> {
    poll_fn(|cx| {
        if let Some(l) = link {
            if l.closed.get() {
                let s = l.session.borrow();
                let reason = s.closed().unwrap_or(LinkCloseReason::ConnectionLost);
                return Poll::Ready(Err((reason, s.detail().to_owned())));
            }
            l.reader.set(Some(cx.waker().clone()));
        }
        match Pin::new(&mut *stream.borrow_mut()).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(Err((
                LinkCloseReason::ConnectionLost,
                "peer closed the connection".into(),
            ))),
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err((
                LinkCloseReason::ReadError,
                format!("read error: {e}"),
            ))),
        }
    })
    .await
}

/// Writes what the link buffers, in batches, until the link closes (then
/// what is left, bounded by a short time, for a final CLOSE).
async fn write_loop(bridge: Rc<Bridge>, link: Rc<Link>, stream: Rc<LinkIo>) {
    let mut spare = Vec::new();
    loop {
        let batch = poll_fn(|cx| {
            bridge.refill(&link);
            let mut out = link.out.borrow_mut();
            if !out.is_empty() {
                return Poll::Ready(Some(std::mem::replace(
                    &mut *out,
                    std::mem::take(&mut spare),
                )));
            }
            if link.closed.get() {
                return Poll::Ready(None);
            }
            link.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        let Some(mut batch) = batch else {
            break;
        };
        let write = async {
            write_all(&stream, &batch).await?;
            flush(&stream).await
        };
        let ok = if link.closed.get() {
            // Last words (CLOSE) get a short, bounded chance.
            futures_lite::future::or(async { write.await.is_ok() }, async {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                false
            })
            .await
        } else {
            write.await.is_ok()
        };
        if !ok {
            link.end(LinkCloseReason::WriteError, "write failed", false);
            break;
        }
        batch.clear();
        spare = batch;
    }
    use std::os::fd::BorrowedFd;
    let fd = stream.borrow().raw_fd();
    // SAFETY: the fd stays open while `stream` lives (it is ours).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Both);
}

/// Wakes the session at its deadlines: keepalive PINGs, and the drop of a
/// link silent past `mesh.link_timeout_ms`.
async fn keepalive(link: Rc<Link>) {
    let mut out = link_session::Actions::default();
    loop {
        let Some(deadline) = link.session.borrow().next_deadline() else {
            return;
        };
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        if link.closed.get() {
            return;
        }
        out.clear();
        let now = Instant::now().max(deadline);
        link.session.borrow_mut().handle_timeout(now, &mut out);
        if out.closed() == Some(LinkCloseReason::Silent) {
            tracing::warn!(
                peer = link.peer,
                "mesh: link silent past mesh.link_timeout_ms"
            );
        }
        link.carry_out(&mut out);
    }
}

/// Dials `target` for the life of the router, redialling with backoff.
/// `target` is IP:PORT, or HOST:PORT resolved again before every dial
/// (off the executor: resolving may block), so a peer that moves is found.
async fn dial_loop(bridge: Rc<Bridge>, target: String) {
    let slot = bridge.new_slot(target.parse().ok(), true);
    let m = bridge.config.mesh.clone();
    let mut backoff = m.reconnect_min_ms;
    let mut first = true;
    let mut rng = now_ns() | 1;
    loop {
        if bridge.ctx.stopping.get() {
            return;
        }
        if !first {
            slot.reconnects.set(slot.reconnects.get() + 1);
        }
        first = false;
        let started = Instant::now();
        match resolve_link(&target).await {
            // Each address the name resolves to, in order, until one connects.
            Ok(addrs) => {
                for addr in addrs {
                    slot.remote.set(Some(addr));
                    let timeout = Duration::from_millis(m.connect_timeout_ms);
                    match TcpStream::connect_timeout(addr, timeout).await {
                        Ok(stream) => {
                            bridge.run_link(&slot, stream).await;
                            break;
                        }
                        Err(e) => slot.dial_failed(&target, format!("dial {addr}: {e}")),
                    }
                }
            }
            Err(e) => slot.dial_failed(
                &target,
                format!("cannot resolve link address {target}: {e}"),
            ),
        }
        if bridge.ctx.stopping.get() {
            return;
        }
        if started.elapsed() > Duration::from_millis(m.reconnect_max_ms) {
            backoff = m.reconnect_min_ms; // it was up a while: start over
        }
        // Jitter: 50–100 % of the backoff, so that routers that lost each
        // other at once do not redial in lockstep.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = backoff / 2 + rng % (backoff / 2 + 1);
        glommio::timer::sleep(Duration::from_millis(wait)).await;
        backoff = (backoff * 2).min(m.reconnect_max_ms);
    }
}

/// The addresses of a link's `target`: an IP:PORT as is, a HOST:PORT
/// through the system's resolver on glommio's blocking-thread pool.
async fn resolve_link(target: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = target.parse() {
        return Ok(vec![addr]);
    }
    let name = target.to_owned();
    glommio::executor()
        .spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            let addrs: Vec<SocketAddr> =
                name.to_socket_addrs().map_err(|e| e.to_string())?.collect();
            if addrs.is_empty() {
                return Err("resolves to no address".to_string());
            }
            Ok(addrs)
        })
        .await
}

async fn accept_loop(bridge: Rc<Bridge>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            bridge.ctx.stopped().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                // Links up and connections still in their hello, together,
                // stay within links_max.
                let open = bridge
                    .slots
                    .borrow()
                    .iter()
                    .filter(|s| !s.gone.get())
                    .count();
                if open >= bridge.config.mesh.links_max {
                    tracing::warn!(remote = ?stream.peer_addr().ok(), max = bridge.config.mesh.links_max, "mesh: connection refused: mesh.links_max reached");
                    continue;
                }
                let slot = bridge.new_slot(stream.peer_addr().ok(), false);
                let b = bridge.clone();
                glommio::spawn_local(async move {
                    b.run_link(&slot, stream).await;
                    slot.gone.set(true);
                })
                .detach();
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "mesh: accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The bridge executor's life: links, the admin view, shutdown.
pub async fn run(
    ctx: Rc<ShardCtx>,
    config: Arc<Config>,
    mesh: MeshResolved,
    listener: Option<TcpListener>,
    view: Arc<std::sync::Mutex<Option<MeshView>>>,
) {
    let bridge = Bridge::new(ctx.clone(), config, &mesh);
    if ctx.set_mesh(bridge.clone()).is_err() {
        tracing::error!("mesh: bridge installed twice");
        return;
    }
    // This router stores retained messages: every router sends it theirs.
    let mut out = Vec::new();
    let _ = bridge
        .router
        .borrow_mut()
        .local_subscribe(route::RETAINED_KEY, &mut out);
    bridge.apply(out, None);
    if let Ok(mut v) = view.lock() {
        *v = Some(bridge.view());
    }
    if let Some(l) = listener {
        glommio::spawn_local(accept_loop(bridge.clone(), l)).detach();
    }
    for target in &mesh.links {
        glommio::spawn_local(dial_loop(bridge.clone(), target.clone())).detach();
    }
    let mut own_origin = 0;
    loop {
        glommio::timer::sleep(TICK).await;
        ctx.publish_stats();
        let _ = ctx.housekeeping();
        bridge.retry_parked();
        bridge.expire_parked();
        bridge.end_empty_holds();
        bridge.flush_acks();
        // Links that went down no longer count as full (see `room`).
        bridge.wake_room();
        let seen = bridge.router.borrow().counters().own_origin;
        if seen > own_origin {
            tracing::error!(
                router_id = bridge.router_id,
                events = seen - own_origin,
                "mesh: events with this router's id as their origin arrived (not delivered): \
                 another router in the mesh uses the same router id, or (a few, after a \
                 link failure) a routing loop while routes reconverge"
            );
            own_origin = seen;
        }
        if let Ok(mut v) = view.lock() {
            *v = Some(bridge.view());
        }
        if ctx.shutdown_requested() {
            ctx.request_stop();
            bridge.close_all("router shutting down");
            // Give the CLOSE frames their moment.
            glommio::timer::sleep(Duration::from_millis(100)).await;
            return;
        }
    }
}

/// What to deliver here: (topic, to the plain subscribers, to one member
/// of each of these groups).
type Delivery = (String, bool, Vec<String>);
