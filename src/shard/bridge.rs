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
//! Written by hand: no crate speaks this link protocol; the codec, the
//! link session and the routing core it drives are in `mesh/`.
//!
//! This file holds the bridge's state, what comes from this router's
//! shards (events, retained messages, interest), the carrying out of the
//! routing core's actions (`apply`) and the executor's tick. The rest, one
//! concern a file: `dial.rs` (dialling, accepting, slots), `connection.rs`
//! (one link's life: hello, up, held or down), `stream.rs` (plain TCP or
//! TLS), `reader.rs` and `writer.rs` (a link's two sides), `body.rs` (an
//! event's content on a link), `delivery.rs` (QoS 1 beyond one link:
//! acknowledgements held back, parked copies, publishers' flow control),
//! `shards.rs` (what the bridge does to the shards), `topology.rs` (the
//! mesh graph's records in and out), `view.rs` (the admin view).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, TcpStream};

use super::ctx::{Interest, ShardCtx};
use super::io::{write_all, ReadBuffer};
use crate::config::{Config, MeshResolved};
use crate::event::{now_ns, Event, Origin};
use crate::mesh::link::{self, Frame, LinkLimits};
use crate::mesh::route::{
    self, Action, CopyRef, EventCopy, LinkCounters, LinkId, LinkMsg, RouterConfig,
};
use crate::mesh::session::{self as link_session, Deadline, LinkCloseReason, Outbox, Request};
use crate::mesh::tls::MeshTls;

mod body;
mod connection;
mod delivery;
mod dial;
mod explain;
mod reader;
mod shards;
mod stream;
mod topology;
mod view;
mod writer;

use body::Body;
use connection::{Link, Slot};
use delivery::{Parked, Upstream};
use dial::{accept_loop, dial_loop};
pub use view::{LinkInfo, MeshView};

/// How often the bridge refreshes the admin view and checks for shutdown.
const TICK: Duration = Duration::from_millis(50);
/// Parked copies are retried every this many ticks (200 ms), as in the
/// mesh simulation (`mesh::sim::node::PARK_RETRY`).
const PARK_RETRY_TICKS: u32 = 4;

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
    /// Persistence is on (`persistence.dir`): the stores are journaled and
    /// acknowledgements wait for the logs.
    persisting: bool,
    /// Links down but held (mesh.link_hold_ms), by id: their peer.
    held: RefCell<HashMap<LinkId, String>>,
    /// QoS 0 copies for held links, and QoS 1 copies past unacked_max.
    held_dropped: Cell<u64>,
    /// Copies acknowledged upstream by custody (`mesh.custody_ms`) on
    /// links that have ended; live links count in their sessions.
    custody_ended: Cell<u64>,
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
    /// The mesh as a graph: every router's link-state record (`topology.rs`).
    topology: RefCell<crate::mesh::topology::TopologyDb>,
    /// Its last snapshot for the admin view, by database generation.
    topology_view: RefCell<Option<(u64, Arc<crate::mesh::topology::Snapshot>)>>,
    /// Refused records: when one was last logged, and how many since.
    topology_warned: Cell<Option<Instant>>,
    topology_suppressed: Cell<u64>,
    /// Route explain across the mesh (`explain.rs`).
    explainer: RefCell<crate::mesh::explain::Explainer>,
    /// The explain machine's questions to the shards: (its key, the
    /// board's id).
    explain_asks: RefCell<Vec<(u64, u64)>>,
    /// Ids of explain requests started here (from the wall clock, as
    /// event ids: unique across restarts).
    next_explain: Cell<u64>,
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
        let mut router = router;
        // Withdrawn interest stays a destination this long (its QoS 1
        // copies park instead of being dropped): see `route/holds.rs`.
        router.set_interest_hold_down(Duration::from_millis(m.interest_hold_down_ms));
        router.advance(Instant::now(), &mut Vec::new());
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
                explain_reply_bytes_max: m.explain_reply_bytes_max,
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
            persisting: config.persistence.is_on(),
            held: RefCell::default(),
            held_dropped: Cell::new(0),
            custody_ended: Cell::new(0),
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
            topology: RefCell::new(topology::database(&config, &mesh.router_id, Instant::now())),
            topology_view: RefCell::default(),
            topology_warned: Cell::new(None),
            topology_suppressed: Cell::new(0),
            explainer: RefCell::new(crate::mesh::explain::Explainer::new(
                mesh.router_id.clone(),
                crate::mesh::explain::ExplainConfig {
                    timeout: Duration::from_millis(m.explain_timeout_ms),
                    explains_max: m.explains_max,
                    reply_bytes_max: m.explain_reply_bytes_max,
                },
            )),
            explain_asks: RefCell::default(),
            next_explain: Cell::new(wall),
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
        if plain && groups.is_empty() {
            // The common event: its copies are sent from the routing
            // core's cached plan, borrowed (no allocation per event).
            let plan = router.publish_planned(event.topic(), id, &mut out);
            drop(router);
            let body = Body::of_event(&event);
            self.apply(out, Some(&body));
            for (link, dests, groups) in plan.copies() {
                let copy = CopyRef {
                    origin: &self.router_id,
                    id,
                    hops: 0,
                    dests,
                    groups,
                    topic: event.topic(),
                    retain: plan.retain(),
                };
                self.send_copy(link, &copy, &body);
            }
            return;
        }
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
                Action::Send {
                    link,
                    msg: LinkMsg::Event(copy),
                } => {
                    if let Some(body) = body {
                        self.send_copy(link, &copy.borrowed(), body);
                    }
                }
                Action::Send { link, msg } => {
                    let Some(l) = self.links.borrow().get(&link).cloned() else {
                        continue; // held: interest waits for the peer's return
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
                        LinkMsg::Event(_) => unreachable!("matched above"),
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
                        // It and the copies before it on its link owe
                        // nothing more (acknowledgements are cumulative;
                        // `LinkSession::take_over`).
                        let upstream = self.upstream.take();
                        self.park(copy, from, body);
                        self.upstream.set(upstream);
                        if let Some((id, seq)) = upstream {
                            if let Some(l) = self.links.borrow().get(&id) {
                                l.session.borrow_mut().take_over(seq);
                                self.acks_due.borrow_mut().push(id);
                            }
                        }
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

    /// Sends an event copy over `link`; a held link's copy goes to its
    /// peer's new link if it is back (the routes it did not announce
    /// again stay on the held one), else waits for its peer.
    fn send_copy(&self, link: LinkId, copy: &CopyRef<'_>, body: &Body<'_>) {
        let live = self.links.borrow().get(&link).cloned();
        if let Some(l) = live {
            self.push_event(&l, copy, body);
            return;
        }
        let Some(peer) = self.held.borrow().get(&link).cloned() else {
            return;
        };
        match self.live_link_to(&peer) {
            Some(live) => {
                // The routing core counted the copy against the held
                // link, whose counters end with it: the link that carries
                // it counts it (else the peer's `events_in` runs ahead of
                // this `events_out`).
                let slot = &live.slot;
                let mut base = slot.base.get();
                base.events_out += 1;
                slot.base.set(base);
                self.push_event(&live, copy, body)
            }
            None => self.hold_event(&peer, copy, body),
        }
    }

    /// Sends a graceful close on every link (shutdown).
    fn close_all(&self, reason: &str) {
        let links: Vec<Rc<Link>> = self.links.borrow().values().cloned().collect();
        for l in links {
            l.end(LinkCloseReason::Shutdown, reason, true);
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
    persist: Option<crate::persist::start::BridgeStart>,
) {
    let bridge = Bridge::new(ctx.clone(), config, &mesh);
    if ctx.set_mesh(bridge.clone()).is_err() {
        tracing::error!("mesh: bridge installed twice");
        return;
    }
    // Persistence: the resend stores of the last run, before any event
    // reaches the bridge (the shards wait for this).
    let mut log_task = None;
    if let Some(start) = persist {
        match ctx.start_bridge_persistence(&start.dir) {
            Ok((_, task)) => {
                bridge.restore_outboxes(start.outboxes);
                log_task = Some(task);
            }
            Err(e) => tracing::error!(
                dir = %start.dir.display(),
                error = %e,
                "persistence: the bridge cannot open its log; its resend stores are not kept"
            ),
        }
        ctx.bridge_persistence_started();
        // No link before every shard has its recovered subscribers back
        // (their interest reached this bridge before they counted
        // themselves): a copy arriving earlier would find no interest
        // here, be acknowledged, and be lost.
        ctx.persistence_started().await;
    }
    // This router stores retained messages: every router sends it theirs.
    let mut out = Vec::new();
    let _ = bridge
        .router
        .borrow_mut()
        .local_subscribe(route::RETAINED_KEY, &mut out);
    bridge.apply(out, None);
    bridge.publish_view(&view);
    if let Some(l) = listener {
        glommio::spawn_local(accept_loop(bridge.clone(), l)).detach();
    }
    for target in &mesh.links {
        glommio::spawn_local(dial_loop(bridge.clone(), target.clone())).detach();
    }
    let mut own_origin = 0;
    let mut ticks: u32 = 0;
    loop {
        glommio::timer::sleep(TICK).await;
        ctx.publish_stats();
        let _ = ctx.housekeeping();
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(PARK_RETRY_TICKS) {
            // Parked copies are tried again on a clock too, not only when
            // a table changes: a route that came back without news for
            // this router's parked copies would leave them waiting until
            // they expire (found by the mesh simulation, seed 2583).
            bridge.parked_dirty.set(true);
        }
        // The routing core's clock, once per tick: a withdrawn interest is
        // stamped with the last tick's time (at most one tick early) and
        // its hold-down ends within a tick of its deadline.
        let mut out = Vec::new();
        bridge.router.borrow_mut().advance(Instant::now(), &mut out);
        if !out.is_empty() {
            bridge.apply(out, None);
        }
        bridge.explain_tick();
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
        bridge.publish_view(&view);
        if ctx.shutdown_requested() {
            ctx.request_stop();
            bridge.close_all("router shutting down");
            // Give the CLOSE frames their moment.
            glommio::timer::sleep(Duration::from_millis(100)).await;
            if let (Some(log), Some(task)) = (ctx.log(), log_task) {
                log.close();
                task.await;
            }
            return;
        }
    }
}

/// What to deliver here: (topic, to the plain subscribers, to one member
/// of each of these groups).
type Delivery = (String, bool, Vec<String>);
