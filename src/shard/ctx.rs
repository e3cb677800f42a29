//! One shard's state and its routing: the trie, the session table, the rings
//! to the other shards, and the rules for moving an event from the
//! publisher's shard to every subscriber.
//!
//! Owns: everything of one shard; it is `Rc`, never crosses a thread, and
//! is borrowed only between awaits (no `RefCell` borrow is held across an
//! `.await`). Talks to other shards only through [`ShardMsg`] on the rings.
//! Loop prevention lives here, in one place: an event that arrived from a
//! ring is delivered locally and never forwarded again.
//!
//! Interest changes and barriers leave through one ordered control queue
//! (`control`), drained by one task: per peer they arrive in the order they
//! happened, whichever connection caused them, and a barrier follows the
//! interest it covers. Events go straight onto the rings.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::rings::Senders;
use glommio::{GlommioError, ResourceType};
use smallvec::SmallVec;

use super::mailbox::{Backlog, CloseReason, DeliverAs, Delivery, Mailbox as Session, Protocol};
use super::stats::{self, Counters, ShardStats};
use crate::config::Config;
use crate::event::{Event, Origin};
use crate::mqtt::codec::DecodeLimits;
use crate::mqtt::session::expiry::ExpiryQueue;
use crate::topic::retained::{RetainedStore, Stored};
use crate::topic::trie::{
    GroupMatch, LocalSub, Matched, SessionKey, Trie, NO_LOCAL, RETAIN_AS_PUBLISHED,
};
use crate::topic::TopicLimits;

/// How often a queue-group event is handed on to other members when the
/// ones it was sent to left on its way (a few times covers members leaving
/// on several shards at once; more would only pass it round while their
/// withdrawals are on their way).
const HAND_ON_MAX: u8 = 4;

/// Where one queue-group member was picked.
enum Member {
    Here(LocalSub),
    Shard(usize),
}

/// What shards tell each other.
#[derive(Clone)]
pub enum ShardMsg {
    /// An event for this shard's plain subscribers (`plain`) and for one
    /// member of each named queue group this shard was chosen for.
    Event {
        event: Event,
        plain: bool,
        groups: SmallVec<[Arc<str>; 1]>,
        /// Times a queue-group event was handed on because the members it
        /// was sent to had left (bounded by `HAND_ON_MAX`).
        handed: u8,
    },
    /// The sender's first local subscriber of this filter (in this queue
    /// group, if any) appeared.
    InterestAdd(Interest),
    /// The sender's last local subscriber of this filter (group) left.
    InterestRemove(Interest),
    /// Answer with `BarrierAck` once everything sent before it is applied.
    Barrier(u64),
    BarrierAck(u64),
    /// A retained publish (empty payload: delete) for every shard's copy
    /// of the retained store.
    /// With its stamp (see `topic::retained`).
    Retain(Event, u64),
    /// To the client id's directory shard: the sender now hosts this
    /// client id; answer with the shard that hosted it before.
    Claim {
        client_id: Arc<str>,
        token: u64,
    },
    ClaimReply {
        token: u64,
        previous: Option<u16>,
    },
    /// To the previous host: end that session (and hand over its state
    /// if `want_state`).
    Takeover {
        client_id: Arc<str>,
        token: u64,
        want_state: bool,
    },
    TakeoverReply {
        token: u64,
        state: Option<Box<SessionState>>,
    },
    /// To the directory shard: the sender no longer hosts this client id.
    Release {
        client_id: Arc<str>,
    },
    /// To a publisher's shard: one of the sender's subscribers is over its
    /// soft limit with this publisher's events; stop reading it (see
    /// `hold`). Always followed by `FreePublisher` for the same key.
    HoldPublisher(SessionKey),
    FreePublisher(SessionKey),
}

/// A persistent MQTT session on its way from one shard to another.
#[derive(Debug, Default, Clone)]
pub struct SessionState {
    pub subscriptions: Vec<(Box<str>, u8)>,
    /// MQTT 5 Subscription Identifiers of those subscriptions.
    pub identifiers: Vec<(Box<str>, u32)>,
    pub backlog: Backlog,
}

enum Reply {
    Claimed(Option<u16>),
    State(Option<Box<SessionState>>),
}

#[derive(Default)]
struct Pending {
    waker: Option<Waker>,
    reply: Option<Reply>,
}

/// A filter, plain or within a queue group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interest {
    pub filter: Arc<str>,
    pub group: Option<Arc<str>>,
}

/// Process-wide state shared by the shards: only atomics, none of it on
/// the event path.
#[derive(Default)]
pub struct Global {
    pub connections: AtomicUsize,
    /// Connections the descriptor limit holds (see `rlimits::check_nofile`);
    /// 0 = not known (no cap beyond `limits.connections_max`).
    pub descriptor_connections_max: AtomicUsize,
    pub shutdown: AtomicBool,
    /// This process's id in NATS INFO.
    pub server_id: String,
    /// Shards that joined the mesh and are accepting.
    pub ready_shards: AtomicUsize,
    /// Executors (shards and bridge) that joined the rings.
    pub joined: AtomicUsize,
    /// The configuration in force after a SIGHUP reload, and its number;
    /// shards pick it up on their housekeeping tick.
    pub reloaded: std::sync::Mutex<Option<Arc<Config>>>,
    pub config_generation: std::sync::atomic::AtomicU64,
    /// Client shards (mesh peers 0..client_shards); a bridge executor, when
    /// the mesh is on, is the peer after them.
    pub client_shards: usize,
    /// The bridge's link view for the admin endpoint, refreshed each tick.
    pub mesh_view: Arc<std::sync::Mutex<Option<super::bridge::MeshView>>>,
}

/// A NATS subscription (one SUB): its own key in the trie, since NATS
/// delivers once per subscription.
pub struct NatsSub {
    pub session: Rc<Session>,
    pub sid: Rc<str>,
    pub filter: Box<str>,
    pub group: Option<Arc<str>>,
    /// UNSUB with a maximum: deliveries left before it unsubscribes.
    pub max: Cell<Option<u64>>,
    pub delivered: Cell<u64>,
}

/// What a key of the shard's table (and of the trie) names.
enum Slot {
    /// An MQTT session: its connection and its one subscriber key.
    Mqtt(Rc<Session>),
    /// A NATS connection (its key is the origin of its publishes).
    NatsConn(Rc<Session>),
    NatsSub(Rc<NatsSub>),
}

#[derive(Default)]
struct Slots {
    slots: Vec<Option<Slot>>,
    free: Vec<SessionKey>,
    sessions: usize,
}

impl Slots {
    fn insert(&mut self, make: impl FnOnce(SessionKey) -> Slot) -> SessionKey {
        let key = match self.free.pop() {
            Some(k) => k,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as SessionKey
            }
        };
        self.slots[key as usize] = Some(make(key));
        key
    }

    fn remove(&mut self, key: SessionKey) -> Option<Slot> {
        let slot = self.slots.get_mut(key as usize)?.take();
        if slot.is_some() {
            self.free.push(key);
        }
        slot
    }
}

/// Splits `$share/{group}/{filter}` (MQTT shared subscription) into its
/// group and filter; other filters have no group.
pub fn split_share(full: &str) -> (Option<&str>, &str) {
    match full
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((group, filter)) => (Some(group), filter),
        None => (None, full),
    }
}

/// Index of the `n`-th set bit of `mask` (n counted from 0).
fn nth_bit(mut mask: u64, n: usize) -> usize {
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

/// A cheap per-shard random source (xorshift) for queue-group picks.
struct Rng(Cell<u64>);

impl Rng {
    fn below(&self, n: usize) -> usize {
        let mut x = self.0.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.set(x);
        (x % n as u64) as usize
    }
}

struct BarrierWait {
    remaining: usize,
    waker: Option<Waker>,
}

/// Lets through at most `per_second` log lines of one kind, counts the rest.
pub struct LogLimiter {
    window: Cell<Option<Instant>>,
    count: Cell<u32>,
    suppressed: Cell<u64>,
    per_second: u32,
}

impl LogLimiter {
    pub fn new(per_second: u32) -> Self {
        LogLimiter {
            window: Cell::new(None),
            count: Cell::new(0),
            suppressed: Cell::new(0),
            per_second,
        }
    }

    /// True if a line may be logged now; otherwise counts it as suppressed.
    pub fn allow(&self) -> bool {
        let now = Instant::now();
        match self.window.get() {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                let suppressed = self.suppressed.replace(0);
                if suppressed > 0 {
                    tracing::warn!(suppressed, "log lines suppressed by rate limit");
                }
                self.window.set(Some(now));
                self.count.set(0);
            }
        }
        if self.count.get() < self.per_second {
            self.count.set(self.count.get() + 1);
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }
}

/// The limits of the configuration in force (keeps it alive while used).
pub struct LimitsRef(Arc<Config>);

impl std::ops::Deref for LimitsRef {
    type Target = crate::config::Limits;
    fn deref(&self) -> &Self::Target {
        &self.0.limits
    }
}

fn derived_limits(config: &Config) -> (DecodeLimits, TopicLimits) {
    let l = &config.limits;
    (
        DecodeLimits {
            packet_bytes_max: l.packet_bytes_max,
            filters_per_packet_max: l.filters_per_packet_max,
        },
        TopicLimits {
            topic_bytes_max: l.topic_bytes_max,
            topic_levels_max: l.topic_levels_max,
        },
    )
}

pub struct ShardCtx {
    pub id: usize,
    pub shards: usize,
    /// Replaced on SIGHUP reload (see `reload_config`); read through
    /// `config()` / `limits()`, never borrowed across an await.
    config: RefCell<Arc<Config>>,
    config_generation: Cell<u64>,
    pub decode_limits: Cell<DecodeLimits>,
    pub topic_limits: Cell<TopicLimits>,
    pub senders: Senders<ShardMsg>,
    pub stats: Arc<ShardStats>,
    pub counters: Counters,
    pub global: Arc<Global>,
    pub log_limiter: LogLimiter,
    trie: RefCell<Trie>,
    slots: RefCell<Slots>,
    barriers: RefCell<hashbrown::HashMap<u64, BarrierWait>>,
    next_barrier: Cell<u64>,
    next_client_number: Cell<u64>,
    rng: Rng,
    pub stopping: Cell<bool>,
    /// The accept loops waiting for `stopped`.
    stop_wakers: RefCell<Vec<Waker>>,
    /// Ordered control messages: (peer, message), `None` = every peer.
    /// Bounded by the connections: each has at most one SUBSCRIBE/SUB in
    /// flight, and that one waits for its barrier to drain the queue; and
    /// by the publisher holds (see `hold`: at most two per event queued
    /// past a soft limit).
    control: RefCell<VecDeque<(Option<usize>, ShardMsg)>>,
    control_waker: Cell<Option<Waker>>,
    /// When the current batch of client bytes was read (`now_ns`).
    pub received_ns: Cell<u64>,
    /// Receive → hand-off to the socket, in ns; merged into the shared
    /// histogram on the housekeeping tick.
    latency: RefCell<hdrhistogram::Histogram<u64>>,
    /// Write buffers not in use (at most `WRITE_BUFFERS_KEPT`).
    write_buffers: RefCell<Vec<Vec<u8>>>,
    retained: RefCell<RetainedStore>,
    /// MQTT sessions hosted here by client id (online or kept offline),
    /// and those still in their CONNECT handshake.
    homes: RefCell<hashbrown::HashMap<Box<str>, Rc<Session>>>,
    connecting: RefCell<hashbrown::HashMap<Box<str>, Rc<Session>>>,
    /// For the client ids whose directory is this shard: their host shard.
    directory: RefCell<hashbrown::HashMap<Box<str>, u16>>,
    /// Offline persistent sessions by expiry, earliest first (their
    /// expiries differ, so the first parked is not the first due).
    offline: RefCell<ExpiryQueue<Rc<Session>>>,
    offline_count: Cell<usize>,
    pending: RefCell<hashbrown::HashMap<u64, Pending>>,
    next_token: Cell<u64>,
    /// Publishers held for this shard's congested QoS 1 subscribers.
    holding: super::hold::Holding,
    /// Set on the bridge executor's context only.
    bridge: super::bridge::BridgeCell,
    /// The bridge's context when it runs on this executor
    /// (`mesh.bridge_in_shard`): events for it are handed over by a
    /// call instead of through the ring.
    /// Set once, at start; the inner cell is filled when the bridge has
    /// joined the rings.
    pub direct_bridge: std::cell::OnceCell<Rc<std::cell::OnceCell<Rc<ShardCtx>>>>,
}

/// The trie key of the bridge's subscriptions (other routers' interest).
const MESH_KEY: SessionKey = SessionKey::MAX - 1;

/// Write buffers a shard keeps for reuse; writers blocked on a slow socket
/// hold theirs, so this is the pool for the ones writing right now.
const WRITE_BUFFERS_KEPT: usize = 32;

impl ShardCtx {
    pub fn new(
        senders: Senders<ShardMsg>,
        config: Arc<Config>,
        stats: Arc<ShardStats>,
        global: Arc<Global>,
    ) -> ShardCtx {
        let id = senders.peer_id();
        let (decode_limits, topic_limits) = derived_limits(&config);
        // Tombstones only matter when stores are compared across routers.
        let tombstones = if config.mesh.enabled() {
            config.limits.retained_messages_max
        } else {
            0
        };
        let retained = RetainedStore::new(
            config.limits.retained_messages_max,
            config.limits.retained_bytes_max,
        )
        .with_tombstones(tombstones);
        ShardCtx {
            id,
            shards: senders.nr_consumers(),
            decode_limits: Cell::new(decode_limits),
            topic_limits: Cell::new(topic_limits),
            trie: RefCell::new(Trie::new(config.runtime.match_cache_entries_max)),
            config: RefCell::new(config),
            config_generation: Cell::new(0),
            senders,
            stats,
            counters: Counters::default(),
            global,
            log_limiter: LogLimiter::new(20),
            slots: RefCell::default(),
            barriers: RefCell::default(),
            next_barrier: Cell::new(0),
            next_client_number: Cell::new(0),
            rng: Rng(Cell::new(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1))),
            stopping: Cell::new(false),
            stop_wakers: RefCell::default(),
            control: RefCell::default(),
            control_waker: Cell::new(None),
            received_ns: Cell::new(0),
            latency: RefCell::new(stats::latency_histogram()),
            write_buffers: RefCell::default(),
            retained: RefCell::new(retained),
            homes: RefCell::default(),
            connecting: RefCell::default(),
            directory: RefCell::default(),
            offline: RefCell::default(),
            offline_count: Cell::new(0),
            pending: RefCell::default(),
            next_token: Cell::new(0),
            holding: Default::default(),
            bridge: Default::default(),
            direct_bridge: Default::default(),
        }
    }

    /// Makes this context the bridge executor's (see `bridge.rs`).
    pub fn set_bridge(
        &self,
        bridge: Rc<super::bridge::Bridge>,
    ) -> Result<(), Rc<super::bridge::Bridge>> {
        self.bridge.set(bridge)
    }

    fn is_bridge(&self) -> bool {
        self.bridge.get().is_some()
    }

    /// On the bridge: other routers now have (or no longer have) interest
    /// in `filter`; the shards learn it as this peer's interest.
    /// `key` is a filter or `$share/{group}/{filter}` (a queue group).
    pub fn mesh_interest(&self, key: &str, present: bool) {
        let (group, filter) = crate::mesh::route::key_parts(key);
        let mut trie = self.trie.borrow_mut();
        if present {
            if trie.add_local_in(filter, group, MESH_KEY, 0).first_local {
                drop(trie);
                self.announce(true, Arc::from(filter), group.map(Arc::from));
            }
        } else if trie
            .remove_local_in(filter, group, MESH_KEY)
            .is_some_and(|r| r.last_local)
        {
            drop(trie);
            self.announce(false, Arc::from(filter), group.map(Arc::from));
        }
    }

    /// The bridge's bit in the shard masks (0 when the mesh is off).
    fn bridge_bit(&self) -> u64 {
        match self.global.client_shards {
            n if n > 0 && n < self.shards => 1 << n,
            _ => 0,
        }
    }

    /// On the bridge: an event from another router, to this router's plain
    /// subscribers (if `plain`) and one member of each of `groups`, all on
    /// the shards (never back to the mesh).
    pub async fn publish_from_mesh(&self, mut event: Event, plain: bool, groups: &[String]) {
        Counters::add(&self.counters.messages_in, 1);
        if event.born_ns == 0 {
            event.born_ns = crate::event::now_ns();
        }
        let matched = self.trie.borrow_mut().matches(event.topic());
        let mut remote_groups: SmallVec<[(usize, Arc<str>); 2]> = SmallVec::new();
        for name in groups {
            match matched.groups.iter().find(|g| &*g.name == name.as_str()) {
                Some(g) if g.remote != 0 => {
                    let pick = self.rng.below(g.remote.count_ones() as usize);
                    remote_groups.push((nth_bit(g.remote, pick), g.name.clone()));
                }
                // The members left while the event was on its way.
                _ => Counters::add(&self.counters.dropped_group_gone, 1),
            }
        }
        let plain_mask = if plain { matched.remote } else { 0 };
        self.send_to_shards(&event, plain_mask, &remote_groups)
            .await;
    }

    /// Hands `event` to the shards in `plain` and to the one chosen for
    /// each queue group in `groups`.
    async fn send_to_shards(&self, event: &Event, plain: u64, groups: &[(usize, Arc<str>)]) {
        let mut targets = plain;
        for (shard, _) in groups {
            targets |= 1 << shard;
        }
        while targets != 0 {
            let peer = targets.trailing_zeros() as usize;
            targets &= targets - 1;
            let groups = groups
                .iter()
                .filter(|(s, _)| *s == peer)
                .map(|(_, g)| g.clone())
                .collect();
            Counters::add(&self.counters.ring_events_out, 1);
            let msg = ShardMsg::Event {
                event: event.clone(),
                plain: plain & (1 << peer) != 0,
                groups,
                handed: 0,
            };
            match self.bridge_here(peer) {
                // Every event for the bridge takes this path once it is
                // set (before, the bridge had no links), so they stay in
                // order; on_local_event is synchronous and bounded by the
                // links' buffers.
                Some(bridge) => {
                    bridge.on_ring(self.id, msg, &mut Vec::new());
                    bridge.bridge_room().await;
                }
                None => self.send(peer, msg).await,
            }
        }
    }

    /// The bridge's context, if `peer` is the bridge and it runs on this
    /// executor (`mesh.bridge_in_shard`).
    fn bridge_here(&self, peer: usize) -> Option<Rc<ShardCtx>> {
        if peer + 1 != self.shards {
            return None; // the bridge is the last peer
        }
        let bridge = self.direct_bridge.get()?.get()?;
        (bridge.id == peer).then(|| bridge.clone())
    }

    pub fn limits(&self) -> LimitsRef {
        LimitsRef(self.config.borrow().clone())
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Takes a reloaded configuration (only its reloadable parts matter:
    /// limits; listeners and shards need a restart).
    pub fn reload_config(&self, generation: u64, config: Arc<Config>) {
        if generation == self.config_generation.get() {
            return;
        }
        let (decode_limits, topic_limits) = derived_limits(&config);
        self.retained.borrow_mut().set_limits(
            config.limits.retained_messages_max,
            config.limits.retained_bytes_max,
        );
        self.decode_limits.set(decode_limits);
        self.topic_limits.set(topic_limits);
        *self.config.borrow_mut() = config;
        self.config_generation.set(generation);
    }

    // ------------------------------------------------------------ sessions

    pub fn register(&self, protocol: Protocol, client_id: Box<str>) -> Rc<Session> {
        let mut slots = self.slots.borrow_mut();
        let mut session = None;
        slots.insert(|key| {
            let s = Rc::new(Session::new(key, protocol, client_id));
            session = Some(s.clone());
            match protocol {
                Protocol::Mqtt => Slot::Mqtt(s),
                Protocol::Nats => Slot::NatsConn(s),
            }
        });
        slots.sessions += 1;
        session.expect("made by insert")
    }

    /// Releases the session's subscriptions (telling other shards where a
    /// filter lost its last local subscriber) and its slot.
    pub fn unregister(&self, session: &Rc<Session>) {
        if session.detached.replace(true) {
            return; // taken over: its state lives elsewhere now
        }
        if session.protocol == Protocol::Mqtt {
            self.leave_home(session);
            let redirect = self.shared_backlog(session);
            self.drop_mqtt_subscriptions(session);
            for (event, group) in redirect {
                self.deliver_to_group(event, &group, 0);
            }
        }
        let sids: Vec<SessionKey> = session
            .nats_subs
            .borrow_mut()
            .drain()
            .map(|(_, k)| k)
            .collect();
        for key in sids {
            self.remove_nats_sub(key);
        }
        let mut slots = self.slots.borrow_mut();
        slots.remove(session.key);
        slots.sessions -= 1;
    }

    pub fn live_sessions(&self) -> usize {
        self.slots.borrow().sessions
    }

    pub fn all_sessions(&self) -> Vec<Rc<Session>> {
        self.slots
            .borrow()
            .slots
            .iter()
            .filter_map(|s| match s {
                Some(Slot::Mqtt(s)) | Some(Slot::NatsConn(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn assign_client_id(&self) -> Box<str> {
        let n = self.next_client_number.get();
        self.next_client_number.set(n + 1);
        format!("weft-{}-{n}", self.id).into()
    }

    pub fn origin(&self, session: &Session) -> Origin {
        Origin {
            shard: self.id as u16,
            session: session.key,
        }
    }

    // ------------------------------------------------------- subscriptions

    /// A retained publish from a client of this shard: stored here and in
    /// every other shard's copy (through the ordered control queue).
    pub fn retain(&self, event: &Event) {
        let stamp = self
            .retained
            .borrow()
            .next_stamp(event.topic(), crate::event::wall_ns());
        self.store_retained(event, stamp);
        if self.shards > 1 {
            self.push_control(None, ShardMsg::Retain(event.clone(), stamp));
        }
    }

    /// A `$SYS` statistics event of this router (`shard::sys`): retained on
    /// every shard and delivered to this router's plain subscribers only.
    /// Not sent over the mesh (each router has its own `$SYS`), not counted
    /// as received, and not in the latency histogram.
    pub async fn publish_sys(&self, mut event: Event) {
        event.born_ns = crate::event::REPLAY_NS;
        let stamp = self
            .retained
            .borrow()
            .next_stamp(event.topic(), crate::event::wall_ns());
        self.store_retained(&event, stamp);
        for peer in (0..self.global.client_shards).filter(|&p| p != self.id) {
            self.push_control(Some(peer), ShardMsg::Retain(event.clone(), stamp));
        }
        let matched = self.trie.borrow_mut().matches(event.topic());
        let shards = matched.remote & !self.bridge_bit();
        self.send_to_shards(&event, shards, &[]).await;
        self.deliver_local(&matched.local, event, None);
    }

    /// On the bridge: a retained message (or deletion) from another router,
    /// stamped at its origin. Stored here and on every shard if it is newer
    /// than what this router knows of its topic; true if it was.
    pub fn retain_from_mesh(&self, event: &Event, stamp: u64) -> bool {
        if !self.store_retained(event, stamp).changed() {
            return false;
        }
        if self.shards > 1 {
            self.push_control(None, ShardMsg::Retain(event.clone(), stamp));
        }
        true
    }

    /// This router's retained messages and tombstones, for a peer router.
    pub fn retained_snapshot(&self) -> Vec<(Event, u64)> {
        self.retained.borrow().snapshot()
    }

    fn store_retained(&self, event: &Event, stamp: u64) -> Stored {
        let stored = self.retained.borrow_mut().apply_stamped(event, stamp);
        if stored == Stored::Refused {
            Counters::add(&self.counters.retained_refused, 1);
            if self.log_limiter.allow() {
                tracing::warn!(
                    shard = self.id,
                    topic = event.topic(),
                    "retained message refused: store full"
                );
            }
        }
        stored
    }

    /// Sends the retained messages matching a new subscription.
    pub fn send_retained(&self, session: &Session, filter: &str, granted: u8) {
        if split_share(filter).0.is_some() {
            return; // not for shared subscriptions (MQTT 5 §4.8.2)
        }
        let mut matches = Vec::new();
        self.retained.borrow().matching(filter, &mut matches);
        let limits = self.limits();
        for mut event in matches {
            // A replay, not routing: kept out of the latency histogram.
            event.born_ns = crate::event::REPLAY_NS;
            let qos = event.qos.min(granted & 3);
            if session.deliver(event, DeliverAs::Mqtt { qos, retain: true }, &limits)
                == Delivery::Dropped
            {
                Counters::add(&self.counters.dropped_queue_full, 1);
            }
        }
    }

    // ------------------------------------------------- MQTT session homes

    /// Which shard keeps the directory entry of a client id.
    fn directory_shard(&self, client_id: &str) -> usize {
        // FNV-1a: stable across shards and runs, no seed to share.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in client_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let shards = match self.global.client_shards {
            0 => self.shards,
            n => n,
        };
        (h % shards as u64) as usize
    }

    fn token(&self) -> u64 {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    async fn wait_reply(&self, token: u64) -> Option<Reply> {
        poll_fn(|cx| {
            let mut pending = self.pending.borrow_mut();
            let p = pending.entry(token).or_default();
            if let Some(reply) = p.reply.take() {
                pending.remove(&token);
                return Poll::Ready(Some(reply));
            }
            if self.stopping.get() {
                pending.remove(&token);
                return Poll::Ready(None);
            }
            p.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn answer(&self, token: u64, reply: Reply) {
        let mut pending = self.pending.borrow_mut();
        let p = pending.entry(token).or_default();
        p.reply = Some(reply);
        if let Some(w) = p.waker.take() {
            w.wake();
        }
    }

    /// CONNECT of an MQTT client id on this shard: ends any other session
    /// of that id, wherever it lives (MQTT-3.1.4-2), and returns its state
    /// when `want_state` (clean session 0) and it was persistent.
    pub async fn establish(&self, session: &Rc<Session>, want_state: bool) -> Option<SessionState> {
        let id: Arc<str> = Arc::from(&*session.client_id);
        // Visible to takeovers while the handshake runs.
        if let Some(other) = self
            .connecting
            .borrow_mut()
            .insert(id.as_ref().into(), session.clone())
        {
            other.close(CloseReason::TakenOver);
        }
        let directory = self.directory_shard(&id);
        let previous = if directory == self.id {
            self.directory
                .borrow_mut()
                .insert(id.as_ref().into(), self.id as u16)
        } else {
            let token = self.token();
            self.push_control(
                Some(directory),
                ShardMsg::Claim {
                    client_id: id.clone(),
                    token,
                },
            );
            match self.wait_reply(token).await {
                Some(Reply::Claimed(previous)) => previous,
                _ => None,
            }
        };
        // The host we may not know of is ourselves: check locally too.
        let mut state = self.take_over(&id, want_state, session);
        if let Some(home) = previous.map(usize::from).filter(|&h| h != self.id) {
            let token = self.token();
            self.push_control(
                Some(home),
                ShardMsg::Takeover {
                    client_id: id.clone(),
                    token,
                    want_state,
                },
            );
            if let Some(Reply::State(s)) = self.wait_reply(token).await {
                state = state.or(s.map(|b| *b));
            }
        }
        tracing::debug!(
            shard = self.id,
            client_id = &*id,
            ?previous,
            resumed = state.is_some(),
            inflight = state.as_ref().map_or(0, |s| s.backlog.inflight.len()),
            queued = state.as_ref().map_or(0, |s| s.backlog.queued.len()),
            "session established"
        );
        let mut connecting = self.connecting.borrow_mut();
        if connecting.get(&*id).is_some_and(|s| Rc::ptr_eq(s, session)) {
            connecting.remove(&*id);
        }
        drop(connecting);
        if session.close_reason().is_none() {
            self.homes
                .borrow_mut()
                .insert(id.as_ref().into(), session.clone());
        }
        state
    }

    /// Ends this shard's session of `client_id` other than `except`;
    /// returns its state if wanted and it was persistent.
    fn take_over(
        &self,
        client_id: &str,
        want_state: bool,
        except: &Rc<Session>,
    ) -> Option<SessionState> {
        let connecting = self.connecting.borrow_mut().remove(client_id);
        if let Some(c) = connecting {
            if Rc::ptr_eq(&c, except) {
                self.connecting.borrow_mut().insert(client_id.into(), c);
            } else {
                c.close(CloseReason::TakenOver);
            }
        }
        let old = self.homes.borrow_mut().remove(client_id)?;
        if Rc::ptr_eq(&old, except) {
            self.homes.borrow_mut().insert(client_id.into(), old);
            return None;
        }
        old.close(CloseReason::TakenOver);
        if old.offline.get() && !old.detached.get() {
            self.offline_count.set(self.offline_count.get() - 1);
        }
        let keep = want_state && old.persistent.get();
        let subscriptions: Vec<(Box<str>, u8)> = if keep {
            old.subscriptions
                .borrow()
                .iter()
                .map(|(f, q)| (f.clone(), *q))
                .collect()
        } else {
            Vec::new()
        };
        let identifiers: Vec<(Box<str>, u32)> = if keep {
            old.sub_identifiers
                .borrow()
                .iter()
                .map(|(f, i)| (f.clone(), *i))
                .collect()
        } else {
            Vec::new()
        };
        // A will waiting for its delay is not published: the session goes on.
        old.pending_will.borrow_mut().take();
        let backlog = old.take_backlog();
        // Release everything of the old session here (its connection, if
        // any, sees `detached` and leaves it alone).
        self.release_session(&old);
        keep.then_some(SessionState {
            subscriptions,
            identifiers,
            backlog,
        })
    }

    fn take_over_remote(&self, client_id: &str, want_state: bool) -> Option<SessionState> {
        let placeholder = Rc::new(Session::new(SessionKey::MAX, Protocol::Mqtt, "".into()));
        self.take_over(client_id, want_state, &placeholder)
    }

    /// Removes a session's subscriptions and slot, once.
    fn release_session(&self, session: &Rc<Session>) {
        if session.detached.get() {
            return;
        }
        // Not via `unregister`: the directory keeps pointing at the new
        // host, which claimed the id.
        self.drop_mqtt_subscriptions(session);
        session.detached.set(true);
        let mut slots = self.slots.borrow_mut();
        slots.remove(session.key);
        slots.sessions -= 1;
    }

    /// Installs a session state handed over from a previous connection.
    /// Re-subscribes a resumed session and returns its backlog, once every
    /// shard knows the subscriptions (so a publish after the CONNACK, on
    /// any shard, reaches it). Queue the CONNACK, then the backlog.
    pub async fn install(&self, session: &Rc<Session>, state: SessionState) -> Backlog {
        for (filter, qos) in &state.subscriptions {
            self.subscribe(session, filter, *qos);
        }
        session
            .sub_identifiers
            .borrow_mut()
            .extend(state.identifiers);
        if !state.subscriptions.is_empty() {
            self.barrier().await;
        }
        state.backlog
    }

    /// The connection of a persistent session ended: keep the session,
    /// offline, in the same slot (its subscriptions stay in the trie), until
    /// a reconnection takes it or `offline_session_expiry_s` passes.
    pub fn park(&self, session: &Rc<Session>) -> Rc<Session> {
        let kept = Rc::new(Session::new(
            session.key,
            Protocol::Mqtt,
            session.client_id.clone(),
        ));
        kept.persistent.set(true);
        kept.offline.set(true);
        *kept.subscriptions.borrow_mut() = std::mem::take(&mut *session.subscriptions.borrow_mut());
        kept.restore_backlog(session.take_backlog());
        *kept.sub_identifiers.borrow_mut() =
            std::mem::take(&mut *session.sub_identifiers.borrow_mut());
        kept.expiry_s.set(session.expiry_s.get());
        session.detached.set(true);
        self.slots.borrow_mut().slots[session.key as usize] = Some(Slot::Mqtt(kept.clone()));
        let mut homes = self.homes.borrow_mut();
        if homes
            .get(&*session.client_id)
            .is_some_and(|h| Rc::ptr_eq(h, session))
        {
            homes.insert(session.client_id.clone(), kept.clone());
        }
        drop(homes);
        let configured = self.limits().offline_session_expiry_s;
        let expiry = Duration::from_secs(
            session
                .expiry_s
                .get()
                .map_or(configured, |s| u64::from(s).min(configured)),
        );
        self.offline_count.set(self.offline_count.get() + 1);
        let mut offline = self.offline.borrow_mut();
        offline.push(Instant::now() + expiry, kept.clone());
        // Entries of sessions resumed since stay until compacted: keep the
        // queue within twice the live ones (amortised O(log n)).
        if offline.len() > 2 * self.offline_count.get() + 1024 {
            offline.retain(|s| s.offline.get() && !s.detached.get());
        }
        kept
    }

    /// Drops the home entry of a session that ends for good, and its
    /// directory entry.
    fn leave_home(&self, session: &Rc<Session>) {
        let mut homes = self.homes.borrow_mut();
        if !homes
            .get(&*session.client_id)
            .is_some_and(|h| Rc::ptr_eq(h, session))
        {
            return;
        }
        homes.remove(&*session.client_id);
        drop(homes);
        let id: Arc<str> = Arc::from(&*session.client_id);
        let directory = self.directory_shard(&id);
        if directory == self.id {
            self.release_directory(&id, self.id);
        } else {
            self.push_control(Some(directory), ShardMsg::Release { client_id: id });
        }
    }

    fn release_directory(&self, client_id: &str, host: usize) {
        let mut dir = self.directory.borrow_mut();
        if dir.get(client_id) == Some(&(host as u16)) {
            dir.remove(client_id);
        }
    }

    /// Ends offline sessions whose expiry passed; returns the wills still
    /// waiting for their delay, due now that their session ended.
    fn expire_offline(&self) -> Vec<Event> {
        let mut wills = Vec::new();
        let now = Instant::now();
        loop {
            let next = self.offline.borrow_mut().pop_due(now);
            let Some(session) = next else {
                return wills;
            };
            if session.offline.get() && !session.detached.get() {
                self.offline_count.set(self.offline_count.get() - 1);
                wills.extend(session.pending_will.borrow_mut().take());
                tracing::debug!(
                    shard = self.id,
                    client_id = &*session.client_id,
                    "offline session expired"
                );
                self.unregister(&session);
            }
        }
    }

    /// Offline persistent sessions kept here.
    pub fn offline_sessions(&self) -> usize {
        self.offline_count.get()
    }

    /// Queues an interest change for every other shard.
    fn announce(&self, add: bool, filter: Arc<str>, group: Option<Arc<str>>) {
        if self.shards < 2 {
            return;
        }
        let interest = Interest { filter, group };
        let msg = if add {
            ShardMsg::InterestAdd(interest)
        } else {
            ShardMsg::InterestRemove(interest)
        };
        self.push_control(None, msg);
    }

    /// Adds an MQTT subscription (replacing the QoS of an existing one).
    /// `$share/{group}/{filter}` joins the queue group `group`.
    pub fn subscribe(&self, session: &Session, full_filter: &str, qos: u8) {
        let (group, filter) = split_share(full_filter);
        let added = self
            .trie
            .borrow_mut()
            .add_local_in(filter, group, session.key, qos);
        session
            .subscriptions
            .borrow_mut()
            .insert(full_filter.into(), qos);
        if added.first_local {
            self.announce(true, Arc::from(filter), group.map(Arc::from));
        }
    }

    /// Removes an MQTT subscription; false if the session had none.
    pub fn unsubscribe(&self, session: &Session, full_filter: &str) -> bool {
        if session
            .subscriptions
            .borrow_mut()
            .remove(full_filter)
            .is_none()
        {
            return false;
        }
        self.remove_mqtt_subscription(session, full_filter);
        true
    }

    fn remove_mqtt_subscription(&self, session: &Session, full_filter: &str) {
        let (group, filter) = split_share(full_filter);
        let removed = self
            .trie
            .borrow_mut()
            .remove_local_in(filter, group, session.key);
        debug_assert!(removed.is_some(), "session and trie agree");
        if removed.is_some_and(|r| r.last_local) {
            self.announce(false, Arc::from(filter), group.map(Arc::from));
        }
    }

    /// Removes all of a session's MQTT subscriptions.
    fn drop_mqtt_subscriptions(&self, session: &Session) {
        let filters: Vec<Box<str>> = session
            .subscriptions
            .borrow_mut()
            .drain()
            .map(|(f, _)| f)
            .collect();
        for f in &filters {
            self.remove_mqtt_subscription(session, f);
        }
    }

    /// The QoS >= 1 events a leaving session got through a shared
    /// subscription only, with its group: another member gets them
    /// (MQTT 5 §4.8.2: a terminated session's messages go to the group).
    fn shared_backlog(&self, session: &Session) -> Vec<(Event, Arc<str>)> {
        let subs = session.subscriptions.borrow();
        let shared: Vec<(&str, &str)> = subs
            .keys()
            .filter_map(|f| match split_share(f) {
                (Some(group), filter) => Some((group, filter)),
                _ => None,
            })
            .collect();
        if shared.is_empty() {
            return Vec::new();
        }
        let plain: Vec<&str> = subs
            .keys()
            .filter(|f| split_share(f).0.is_none())
            .map(|f| &**f)
            .collect();
        let backlog = session.take_backlog();
        let events = backlog
            .inflight
            .into_iter()
            .map(|f| f.event)
            .chain(backlog.queued.into_iter().map(|(e, _)| e));
        let mut out = Vec::new();
        for event in events {
            let topic = event.topic();
            if plain.iter().any(|f| crate::topic::filter_matches(f, topic)) {
                continue; // also a plain delivery of its own: not redirected
            }
            if let Some((group, _)) = shared
                .iter()
                .find(|(_, f)| crate::topic::filter_matches(f, topic))
            {
                out.push((event, Arc::from(*group)));
            }
        }
        out
    }

    /// Gives an event to one member of `group` (here or on another shard).
    /// `handed`: how often the event was handed on already (members gone
    /// on its way); past `HAND_ON_MAX` it is dropped and counted, so that
    /// shards whose members are all leaving cannot pass it round for long.
    fn deliver_to_group(&self, event: Event, group: &str, handed: u8) {
        let matched = self.trie.borrow_mut().matches(event.topic());
        let Some(g) = matched.groups.iter().find(|g| &*g.name == group) else {
            Counters::add(&self.counters.dropped_group_gone, 1);
            return;
        };
        match self.pick_member(g) {
            Some(Member::Here(sub)) => self.deliver_local(&[sub], event, None),
            Some(Member::Shard(peer)) => {
                let groups = std::iter::once(g.name.clone()).collect();
                self.push_control(
                    Some(peer),
                    ShardMsg::Event {
                        event,
                        plain: false,
                        groups,
                        handed,
                    },
                );
            }
            None => Counters::add(&self.counters.dropped_group_gone, 1),
        }
    }

    /// One member of a queue group, chosen uniformly among this process's
    /// members (this shard's and the shards that have members); only when
    /// it has none, the bridge (another router's members).
    fn pick_member(&self, g: &GroupMatch) -> Option<Member> {
        let bridge = self.bridge_bit();
        let here = g.remote & !bridge;
        let members = g.local.len() + here.count_ones() as usize;
        let pick = if members == 0 {
            0
        } else {
            self.rng.below(members)
        };
        if pick < g.local.len() {
            if let Some(sub) = self.live_member(&g.local, pick) {
                return Some(Member::Here(sub));
            }
        }
        let shards = here.count_ones() as usize;
        if shards > 0 {
            let n = pick.saturating_sub(g.local.len()).min(shards - 1);
            return Some(Member::Shard(nth_bit(here, n)));
        }
        (g.remote & bridge != 0).then(|| Member::Shard(bridge.trailing_zeros() as usize))
    }

    /// A member of `local` whose session still takes deliveries, trying
    /// `start` first: a member whose connection is closing has left the
    /// group already, though its subscriptions go only once it is gone.
    fn live_member(&self, local: &[LocalSub], start: usize) -> Option<LocalSub> {
        let slots = self.slots.borrow();
        let leaving = |key: SessionKey| match slots.slots.get(key as usize) {
            Some(Some(Slot::Mqtt(s))) | Some(Some(Slot::NatsConn(s))) => s.leaving(),
            Some(Some(Slot::NatsSub(ns))) => ns.session.leaving(),
            _ => true,
        };
        (0..local.len())
            .map(|i| local[(start + i) % local.len()])
            .find(|sub| !leaving(sub.session))
    }

    /// Adds a NATS subscription `sid` with its internal filter. False if
    /// the session already has that sid.
    pub fn nats_subscribe(
        &self,
        session: &Rc<Session>,
        sid: &str,
        filter: String,
        group: Option<&str>,
    ) -> bool {
        if session.nats_subs.borrow().contains_key(sid) {
            return false;
        }
        let group: Option<Arc<str>> = group.map(Arc::from);
        let sub = Rc::new(NatsSub {
            session: session.clone(),
            sid: Rc::from(sid),
            filter: filter.into(),
            group: group.clone(),
            max: Cell::new(None),
            delivered: Cell::new(0),
        });
        let key = self
            .slots
            .borrow_mut()
            .insert(|_| Slot::NatsSub(sub.clone()));
        session.nats_subs.borrow_mut().insert(sid.into(), key);
        let added = self
            .trie
            .borrow_mut()
            .add_local_in(&sub.filter, group.as_deref(), key, 0);
        if added.first_local {
            self.announce(true, Arc::from(&*sub.filter), group);
        }
        true
    }

    /// UNSUB: now, or after `max` deliveries in all. False if unknown sid.
    pub fn nats_unsubscribe(&self, session: &Session, sid: &str, max: Option<u64>) -> bool {
        let Some(key) = session.nats_subs.borrow().get(sid).copied() else {
            return false;
        };
        if let Some(max) = max {
            if let Some(Some(Slot::NatsSub(sub))) = self.slots.borrow().slots.get(key as usize) {
                if sub.delivered.get() < max {
                    sub.max.set(Some(max));
                    return true;
                }
            }
        }
        session.nats_subs.borrow_mut().remove(sid);
        self.remove_nats_sub(key);
        true
    }

    fn remove_nats_sub(&self, key: SessionKey) {
        let Some(Slot::NatsSub(sub)) = self.slots.borrow_mut().remove(key) else {
            debug_assert!(false, "key {key} is not a NATS subscription");
            return;
        };
        let removed =
            self.trie
                .borrow_mut()
                .remove_local_in(&sub.filter, sub.group.as_deref(), key);
        debug_assert!(removed.is_some(), "subscription and trie agree");
        if removed.is_some_and(|r| r.last_local) {
            self.announce(false, Arc::from(&*sub.filter), sub.group.clone());
        }
    }

    fn push_control(&self, peer: Option<usize>, msg: ShardMsg) {
        self.control.borrow_mut().push_back((peer, msg));
        if let Some(w) = self.control_waker.take() {
            w.wake();
        }
    }

    /// Drains the control queue in order, for the life of the shard.
    pub async fn control_task(&self) {
        loop {
            let next = poll_fn(|cx| match self.control.borrow_mut().pop_front() {
                Some(item) => Poll::Ready(item),
                None => {
                    self.control_waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            match next {
                (Some(peer), msg) => self.send(peer, msg).await,
                (None, msg) => {
                    for peer in (0..self.shards).filter(|&p| p != self.id) {
                        self.send(peer, msg.clone()).await;
                    }
                }
            }
        }
    }

    async fn send(&self, peer: usize, msg: ShardMsg) {
        if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) =
            self.senders.try_send_to(peer, msg)
        {
            Counters::add(&self.counters.ring_full_waits, 1);
            // Err only when the peer has shut down: nothing left to tell.
            let _ = self.senders.send_to(peer, msg).await;
        }
    }

    /// Waits until every other shard has applied all that this shard sent
    /// before: after it, a SUBACK is safe to send, since a publish on any
    /// shard will see the new interest.
    pub async fn barrier(&self) {
        if self.shards < 2 {
            return;
        }
        let id = self.next_barrier.get();
        self.next_barrier.set(id + 1);
        self.barriers.borrow_mut().insert(
            id,
            BarrierWait {
                remaining: self.shards - 1,
                waker: None,
            },
        );
        self.push_control(None, ShardMsg::Barrier(id));
        poll_fn(|cx| {
            let mut barriers = self.barriers.borrow_mut();
            let wait = barriers.get_mut(&id).expect("registered above");
            if wait.remaining == 0 || self.stopping.get() {
                barriers.remove(&id);
                Poll::Ready(())
            } else {
                wait.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    // --------------------------------------------------------------- events

    /// Routes an event published by a client of this shard: to the other
    /// shards with interest (and to the one chosen for each queue group),
    /// then to local subscribers. QoS 1 deliveries that overflow a local
    /// subscriber's soft limit add it to `congested` so that the publisher
    /// can pause. Returns false if nobody anywhere subscribes.
    pub async fn publish(&self, mut event: Event, congested: &mut Vec<Rc<Session>>) -> bool {
        Counters::add(&self.counters.messages_in, 1);
        if event.born_ns == 0 {
            event.born_ns = self.received_ns.get();
        }
        let matched = self.trie.borrow_mut().matches(event.topic());
        if matched.is_empty() {
            return false;
        }
        // Queue groups: one member in the whole mesh, chosen uniformly
        // among this process's members (local ones and the shards that have
        // members); only when it has none does the bridge (other routers'
        // members) get the event for that group.
        let mut local_picks: SmallVec<[LocalSub; 2]> = SmallVec::new();
        let mut remote_groups: SmallVec<[(usize, Arc<str>); 2]> = SmallVec::new();
        for g in matched.groups.iter() {
            match self.pick_member(g) {
                Some(Member::Here(sub)) => local_picks.push(sub),
                Some(Member::Shard(peer)) => remote_groups.push((peer, g.name.clone())),
                None => {}
            }
        }
        self.send_to_shards(&event, matched.remote, &remote_groups)
            .await;
        if self.is_bridge() {
            // The bridge's own subscriptions are other routers' interest:
            // an event from the mesh never goes back to it from here.
            return true;
        }
        self.deliver_local(&local_picks, event.clone(), Some(congested));
        self.deliver_local(&matched.local, event, Some(congested));
        true
    }

    fn deliver_local(
        &self,
        subs: &[LocalSub],
        event: Event,
        mut congested: Option<&mut Vec<Rc<Session>>>,
    ) {
        if subs.is_empty() {
            return;
        }
        let limits = self.limits();
        let mut expired: SmallVec<[(Rc<Session>, Rc<str>); 1]> = SmallVec::new();
        {
            let slots = self.slots.borrow();
            // Converted once for all the NATS subscribers of this event.
            let mut nats_subject: Option<Rc<[u8]>> = None;
            let mut event = Some(event);
            for (i, sub) in subs.iter().enumerate() {
                // Move the event into the last delivery: one refcount less.
                let e = if i + 1 == subs.len() {
                    event.take().expect("taken once")
                } else {
                    event.clone().expect("present until the last")
                };
                let (session, how) = match slots.slots.get(sub.session as usize) {
                    Some(Some(Slot::Mqtt(session))) => {
                        let own =
                            e.origin.shard as usize == self.id && e.origin.session == session.key;
                        if own && sub.qos & NO_LOCAL != 0 {
                            continue;
                        }
                        (
                            session,
                            DeliverAs::Mqtt {
                                qos: e.qos.min(sub.qos & 3),
                                retain: e.retain && sub.qos & RETAIN_AS_PUBLISHED != 0,
                            },
                        )
                    }
                    Some(Some(Slot::NatsSub(ns))) => {
                        let own = e.origin.shard as usize == self.id
                            && e.origin.session == ns.session.key;
                        if own && !ns.session.echo.get() {
                            continue;
                        }
                        if let Some(max) = ns.max.get() {
                            if ns.delivered.get() >= max {
                                continue;
                            }
                        }
                        ns.delivered.set(ns.delivered.get() + 1);
                        if Some(ns.delivered.get()) == ns.max.get() {
                            expired.push((ns.session.clone(), ns.sid.clone()));
                        }
                        let subject = nats_subject
                            .get_or_insert_with(|| Rc::from(crate::nats::deliver::subject(&e)))
                            .clone();
                        (
                            &ns.session,
                            DeliverAs::Nats {
                                sid: ns.sid.clone(),
                                subject,
                            },
                        )
                    }
                    _ => {
                        debug_assert!(false, "trie names a key that is gone");
                        continue;
                    }
                };
                match session.deliver(e, how, &limits) {
                    Delivery::Queued => Counters::add(&self.counters.messages_out, 1),
                    Delivery::Congested => {
                        Counters::add(&self.counters.messages_out, 1);
                        if let Some(c) = congested.as_deref_mut() {
                            if !c.iter().any(|s| Rc::ptr_eq(s, session)) {
                                c.push(session.clone());
                            }
                        }
                    }
                    Delivery::Dropped => Counters::add(&self.counters.dropped_queue_full, 1),
                    Delivery::SlowConsumer => {
                        Counters::add(&self.counters.slow_consumer_disconnects, 1);
                        if self.log_limiter.allow() {
                            tracing::warn!(
                                shard = self.id,
                                client_id = &*session.client_id,
                                "disconnecting slow consumer: outbound queue full"
                            );
                        }
                        session.close(CloseReason::SlowConsumer);
                    }
                }
            }
        }
        // UNSUB with a maximum reached it: the subscription goes now.
        for (session, sid) in expired {
            self.nats_unsubscribe(&session, &sid, None);
        }
    }

    /// Applies one message from another shard's ring. Never awaits: a ring
    /// reader that waited on another ring could deadlock two shards; and
    /// one that paused for every full subscriber would stop every delivery
    /// from that shard. A QoS 1 delivery that overfills a subscriber is
    /// queued (up to the hard limit) and holds its publisher alone (see
    /// `hold`). Left in `congested`: subscribers whose pause is on and who
    /// have no room left; the ring reader waits for their watches to end
    /// ([`Self::wait_watches`], the ring as the last resort).
    pub fn on_ring(self: &Rc<Self>, from: usize, msg: ShardMsg, congested: &mut Vec<Rc<Session>>) {
        if let Some(bridge) = self.bridge.get() {
            match msg {
                ShardMsg::Event {
                    event,
                    plain,
                    groups,
                    ..
                } => {
                    Counters::add(&self.counters.ring_events_in, 1);
                    bridge.on_local_event(event, plain, &groups);
                    return;
                }
                ShardMsg::Retain(event, stamp) => {
                    self.store_retained(&event, stamp);
                    bridge.on_local_retain(&event, stamp);
                    return;
                }
                ShardMsg::InterestAdd(ref i) => bridge.on_local_interest(i, true),
                ShardMsg::InterestRemove(ref i) => bridge.on_local_interest(i, false),
                _ => {}
            }
        }
        match msg {
            ShardMsg::Event {
                event,
                plain,
                groups,
                handed,
            } => {
                Counters::add(&self.counters.ring_events_in, 1);
                let publisher = event.origin;
                let matched: Rc<Matched> = self.trie.borrow_mut().matches(event.topic());
                // Delivered here only: never forwarded from a ring.
                for name in &groups {
                    let members = matched
                        .groups
                        .iter()
                        .find(|g: &&GroupMatch| g.name == *name);
                    let live = members.and_then(|g| {
                        let start = self.rng.below(g.local.len().max(1));
                        self.live_member(&g.local, start)
                    });
                    match live {
                        Some(pick) => self.deliver_local(&[pick], event.clone(), Some(congested)),
                        // The members here left while the event was on its
                        // way: another member of the group gets it (the
                        // publisher may hold a PUBACK for it), back where
                        // it came from included; at most HAND_ON_MAX times,
                        // then it is dropped and counted.
                        None if handed < HAND_ON_MAX => {
                            self.deliver_to_group(event.clone(), name, handed + 1)
                        }
                        None => Counters::add(&self.counters.dropped_group_gone, 1),
                    }
                }
                if plain {
                    self.deliver_local(&matched.local, event, Some(congested));
                }
                congested.retain(|subscriber| self.hold_for(subscriber, publisher));
            }
            ShardMsg::Retain(event, stamp) => {
                self.store_retained(&event, stamp);
            }
            ShardMsg::Claim { client_id, token } => {
                let previous = self
                    .directory
                    .borrow_mut()
                    .insert(client_id.as_ref().into(), from as u16);
                self.push_control(Some(from), ShardMsg::ClaimReply { token, previous });
            }
            ShardMsg::ClaimReply { token, previous } => {
                self.answer(token, Reply::Claimed(previous))
            }
            ShardMsg::Takeover {
                client_id,
                token,
                want_state,
            } => {
                // First let every event already on its way here arrive (a
                // barrier: each peer answers after what it sent before), so
                // that what was acknowledged to publishers before this
                // reconnection travels with the session. Then hand it over.
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    ctx.barrier().await;
                    // No session of ours is excluded: the claimant is elsewhere.
                    let state = ctx.take_over_remote(&client_id, want_state);
                    ctx.push_control(
                        Some(from),
                        ShardMsg::TakeoverReply {
                            token,
                            state: state.map(Box::new),
                        },
                    );
                })
                .detach();
            }
            ShardMsg::TakeoverReply { token, state } => self.answer(token, Reply::State(state)),
            ShardMsg::Release { client_id } => self.release_directory(&client_id, from),
            ShardMsg::HoldPublisher(key) => self.hold_publisher(key, true),
            ShardMsg::FreePublisher(key) => self.hold_publisher(key, false),
            ShardMsg::InterestAdd(i) => {
                self.trie
                    .borrow_mut()
                    .add_remote_in(&i.filter, i.group.as_deref(), from);
            }
            ShardMsg::InterestRemove(i) => {
                self.trie
                    .borrow_mut()
                    .remove_remote_in(&i.filter, i.group.as_deref(), from);
            }
            ShardMsg::Barrier(id) => {
                if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) =
                    self.senders.try_send_to(from, ShardMsg::BarrierAck(id))
                {
                    // The ring back is full: the control task waits for
                    // room, so this reader never blocks.
                    self.push_control(Some(from), msg);
                }
            }
            ShardMsg::BarrierAck(id) => {
                let mut barriers = self.barriers.borrow_mut();
                if let Some(wait) = barriers.get_mut(&id) {
                    wait.remaining -= 1;
                    if wait.remaining == 0 {
                        if let Some(w) = wait.waker.take() {
                            w.wake();
                        }
                    }
                }
            }
        }
    }

    /// QoS 1 backpressure: returns once the subscribers in `congested`
    /// drained under their soft limit, or after `backpressure_pause_ms_max`
    /// (then further QoS 1 events queue up to the hard limit, beyond which
    /// the subscriber is disconnected as a slow consumer).
    pub async fn pause_for(&self, congested: &mut Vec<Rc<Session>>) {
        Counters::add(&self.counters.publisher_pauses, 1);
        self.wait_drained(congested).await;
        congested.clear();
    }

    /// Waits until `congested` drained under their soft limits, or for
    /// `backpressure_pause_ms_max`; those still full then had their pause.
    async fn wait_drained(&self, congested: &[Rc<Session>]) {
        let limits = self.limits();
        let all_drained = async {
            for s in congested.iter() {
                poll_fn(|cx| s.poll_drained(cx, &limits)).await;
            }
        };
        let timeout = async {
            glommio::timer::sleep(Duration::from_millis(limits.backpressure_pause_ms_max)).await;
        };
        futures_lite::future::or(all_drained, timeout).await;
        // Those still full had their pause: no second one until they drain
        // (they queue to the hard limit, then meet the slow-consumer rule).
        for session in congested.iter() {
            if session.over_soft(&limits) {
                session.pause_spent.set(true);
            }
        }
    }

    /// An event of `publisher` (on another shard, or handed back here)
    /// was queued past `subscriber`'s soft limit: hold that publisher
    /// until the subscriber drained or its pause ran out (see `hold`).
    /// True if the subscriber has no room left.
    fn hold_for(self: &Rc<Self>, subscriber: &Rc<Session>, publisher: Origin) -> bool {
        let step = self.holding.note(subscriber, publisher);
        if step.hold {
            self.tell_publisher(publisher, true);
        }
        if step.watch {
            let ctx = self.clone();
            let subscriber = subscriber.clone();
            glommio::spawn_local(async move {
                ctx.wait_drained(std::slice::from_ref(&subscriber)).await;
                for publisher in ctx.holding.end(&subscriber) {
                    ctx.tell_publisher(publisher, false);
                }
            })
            .detach();
        }
        subscriber.no_room(&self.limits())
    }

    /// A ring reader's last resort (see `hold`): waits until the watches
    /// of `full` ended (drained, closed or paused long enough).
    pub async fn wait_watches(&self, full: &mut Vec<Rc<Session>>) {
        Counters::add(&self.counters.publisher_pauses, 1);
        for subscriber in full.iter() {
            poll_fn(|cx| self.holding.poll_ended(subscriber, cx)).await;
        }
        full.clear();
    }

    fn tell_publisher(&self, publisher: Origin, hold: bool) {
        let shard = usize::from(publisher.shard);
        if shard == self.id {
            self.hold_publisher(publisher.session, hold);
        } else if shard < self.shards {
            let msg = if hold {
                ShardMsg::HoldPublisher(publisher.session)
            } else {
                ShardMsg::FreePublisher(publisher.session)
            };
            self.push_control(Some(shard), msg);
        }
    }

    /// Puts a hold on (or takes one off) a publisher of this shard; a key
    /// whose session left is ignored.
    fn hold_publisher(&self, key: SessionKey, hold: bool) {
        let slots = self.slots.borrow();
        if let Some(Some(Slot::Mqtt(s) | Slot::NatsConn(s))) = slots.slots.get(key as usize) {
            if hold {
                s.hold.hold();
            } else {
                s.hold.free();
            }
        }
    }

    /// A publisher of this shard held by subscribers elsewhere: returns
    /// when every hold ended, the session closed, or after
    /// `backpressure_pause_ms_max` by this shard's clock (then the holds
    /// left are forgotten: a pause never lasts longer).
    pub async fn wait_held(&self, session: &Session) {
        Counters::add(&self.counters.publisher_pauses, 1);
        let pause = Duration::from_millis(self.limits().backpressure_pause_ms_max);
        let freed = futures_lite::future::or(poll_fn(|cx| session.hold.poll_free(cx)), async {
            poll_fn(|cx| session.poll_closed(cx)).await;
        });
        futures_lite::future::or(freed, glommio::timer::sleep(pause)).await;
        session.hold.expire();
    }

    /// Off-path chores of the tick: answer an admin view request, take a
    /// reloaded configuration.
    /// Returns wills to publish (their sessions expired).
    pub fn housekeeping(&self) -> Vec<Event> {
        let wills = self.expire_offline();
        if self.stats.view_requested.swap(false, Ordering::AcqRel) {
            let view = self.view(self.config().admin.view_entries_max);
            if let Ok(mut slot) = self.stats.view.lock() {
                *slot = Some(view);
            }
        }
        let generation = self.global.config_generation.load(Ordering::Acquire);
        if generation != self.config_generation.get() {
            let reloaded = self.global.reloaded.lock().ok().and_then(|c| c.clone());
            if let Some(config) = reloaded {
                self.reload_config(generation, config);
                tracing::debug!(shard = self.id, generation, "configuration reloaded");
            }
        }
        wills
    }

    /// Builds this shard's admin view, bounded to `max` entries a list.
    pub fn view(&self, max: usize) -> stats::ShardView {
        let mut v = stats::ShardView {
            shard: self.id,
            ..Default::default()
        };
        let slots = self.slots.borrow();
        for slot in slots.slots.iter().flatten() {
            match slot {
                Slot::Mqtt(s) | Slot::NatsConn(s) => {
                    let (queued_messages, queued_bytes) = s.queued();
                    v.queued_messages += queued_messages as u64;
                    v.queued_bytes += queued_bytes as u64;
                    let protocol = match s.protocol {
                        Protocol::Mqtt => "mqtt",
                        Protocol::Nats => "nats",
                    };
                    if v.connections.len() == max {
                        v.truncated = true;
                    } else {
                        v.connections.push(stats::ConnectionInfo {
                            shard: self.id,
                            protocol,
                            client_id: s.client_id.to_string(),
                            peer: s.peer.get().map(|a| a.to_string()),
                            online: !s.offline.get(),
                            subscriptions: s.subscriptions.borrow().len()
                                + s.nats_subs.borrow().len(),
                            queued_messages,
                            queued_bytes,
                            dropped: s.dropped.get(),
                        });
                    }
                    if s.protocol == Protocol::Mqtt {
                        for (filter, qos) in s.subscriptions.borrow().iter() {
                            if v.subscriptions.len() == max {
                                v.truncated = true;
                                break;
                            }
                            v.subscriptions.push(stats::SubscriptionInfo {
                                shard: self.id,
                                protocol,
                                client_id: s.client_id.to_string(),
                                filter: filter.to_string(),
                                qos: *qos,
                                sid: None,
                                queue_group: None,
                            });
                        }
                    }
                }
                Slot::NatsSub(sub) => {
                    if v.subscriptions.len() == max {
                        v.truncated = true;
                        continue;
                    }
                    v.subscriptions.push(stats::SubscriptionInfo {
                        shard: self.id,
                        protocol: "nats",
                        client_id: sub.session.client_id.to_string(),
                        filter: crate::nats::subject::filter_to_nats(&sub.filter),
                        qos: 0,
                        sid: Some(sub.sid.to_string()),
                        queue_group: sub.group.as_ref().map(|g| g.to_string()),
                    });
                }
            }
        }
        v
    }

    pub fn take_write_buffer(&self) -> Vec<u8> {
        self.write_buffers.borrow_mut().pop().unwrap_or_default()
    }

    pub fn give_write_buffer(&self, mut buf: Vec<u8>) {
        let mut pool = self.write_buffers.borrow_mut();
        // A batch is at most write_batch_bytes_max plus one packet; keep
        // only buffers of ordinary size.
        if pool.len() < WRITE_BUFFERS_KEPT
            && buf.capacity() <= 2 * self.limits().write_batch_bytes_max
        {
            buf.clear();
            pool.push(buf);
        }
    }

    /// Drops what the shard keeps for reuse beyond what its sessions hold
    /// (spare write buffers, table capacity left by sessions gone), before
    /// the heap is returned to the OS (`memory::return_to_os`).
    pub fn trim(&self) {
        *self.write_buffers.borrow_mut() = Vec::new();
        self.homes.borrow_mut().shrink_to_fit();
        self.connecting.borrow_mut().shrink_to_fit();
        self.directory.borrow_mut().shrink_to_fit();
    }

    /// Records the router-internal latency of events just handed to a
    /// socket; replays (`event::REPLAY_NS`: retained messages, a stored session's
    /// backlog) are only counted, since their age is not routing time.
    pub fn record_latency(&self, born: &[u64]) {
        if born.is_empty() {
            return;
        }
        let now = crate::event::now_ns();
        let mut h = self.latency.borrow_mut();
        let mut replays = 0;
        for &b in born {
            if b == crate::event::REPLAY_NS {
                replays += 1;
            } else {
                h.saturating_record(now.saturating_sub(b).max(1));
            }
        }
        Counters::add(&self.counters.replays_out, replays);
    }

    /// Publishes the counters and the trie's sizes for other threads.
    pub fn publish_stats(&self) {
        {
            let mut local = self.latency.borrow_mut();
            if !local.is_empty() {
                if let Ok(mut shared) = self.stats.latency.lock() {
                    let _ = shared.add(&*local);
                }
                local.reset();
            }
        }
        let t = self.trie.borrow().counts();
        let c = &self.counters;
        c.subscriptions.set(t.local_subscriptions as u64);
        c.trie_nodes.set(t.nodes as u64);
        c.remote_interest_entries.set(t.remote_entries as u64);
        c.sessions.set(self.live_sessions() as u64);
        c.retained_messages.set(self.retained.borrow().len() as u64);
        c.offline_sessions.set(self.offline_sessions() as u64);
        c.publish(&self.stats);
    }

    // -------------------------------------------------------------- shutdown

    pub fn request_stop(&self) {
        if self.stopping.replace(true) {
            return;
        }
        for w in self.stop_wakers.borrow_mut().drain(..) {
            w.wake();
        }
        for s in self.all_sessions() {
            s.close(CloseReason::ServerShutdown);
        }
        let mut barriers = self.barriers.borrow_mut();
        for wait in barriers.values_mut() {
            if let Some(w) = wait.waker.take() {
                w.wake();
            }
        }
    }

    pub async fn stopped(&self) {
        poll_fn(|cx| {
            if self.stopping.get() {
                Poll::Ready(())
            } else {
                let mut wakers = self.stop_wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    pub fn global_connections(&self) -> &AtomicUsize {
        &self.global.connections
    }

    /// When this executor runs the mesh bridge: waits for room in its live
    /// links' resend stores ([`super::bridge::Bridge::room`]); at once
    /// otherwise.
    pub async fn bridge_room(&self) {
        if let Some(bridge) = self.bridge.get() {
            bridge.room().await;
        }
    }

    /// See [`Global::descriptor_connections_max`].
    pub fn descriptor_connections_max(&self) -> usize {
        self.global
            .descriptor_connections_max
            .load(Ordering::Relaxed)
    }

    pub fn shutdown_requested(&self) -> bool {
        self.global.shutdown.load(Ordering::Relaxed)
    }
}
