//! One shard's state, composed of parts a newcomer finds by name:
//!
//! - [`routing`]: the trie, subscribe/unsubscribe, publish and delivery
//!   over the rings (and loop prevention);
//! - [`directory`]: client ids, takeover, install, park, offline expiry;
//! - [`groups`]: queue-group / `$share` member choice;
//! - [`control`]: the ordered control queue, interest announcements,
//!   barriers, replies awaited from other shards;
//! - [`retained`]: this shard's copy of the retained store;
//! - [`table`]: session keys → sessions and NATS subscriptions;
//! - [`backpressure`]: QoS 1 pauses and publisher holds;
//! - [`auth`]: logins (`ctx.authenticate`): the failed-attempt limiter and
//!   password checks off the event loop;
//! - small ones: [`buffers`] (write-buffer pool), [`telemetry`] (latency,
//!   log limiter), [`stop`] (shutdown), [`mesh`] (the seam the bridge
//!   plugs into), [`msg`] (what shards tell each other).
//!
//! Each part owns its state (fields private to its file); the flows that
//! need several parts are methods of [`ShardCtx`] in the file of the part
//! that leads them, so the operations the connections call keep one name:
//! `ctx.register`, `ctx.establish`, `ctx.publish`, `ctx.subscribe`,
//! `ctx.retain`, `ctx.barrier`, … This file holds the composition, the
//! configuration in force, and the dispatch of ring messages to the parts.
//!
//! Owns: everything of one shard; it is `Rc`, never crosses a thread, and
//! is borrowed only between awaits (no `RefCell` borrow is held across an
//! `.await`). Talks to other shards only through [`ShardMsg`] on the rings.
//! Must not touch: bridge state (the bridge is a [`MeshPeer`] behind a
//! trait) or sockets.

mod admit;
mod amqp;
mod auth;
mod backpressure;
mod buffers;
mod console;
mod control;
mod directory;
mod explain;
mod groups;
mod mesh;
mod msg;
mod persist;
mod retained;
mod routing;
mod stop;
mod table;
mod telemetry;

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::mailbox::{CloseReason, Mailbox as Session, Protocol};
use super::rings::Senders;
use super::stats::{self, Counters, ShardStats};
use crate::config::Config;
use crate::event::{Event, Origin};
use crate::mqtt::codec::DecodeLimits;
use crate::security::Security;
use crate::topic::TopicLimits;

pub use crate::topic::split_share;
pub(crate) use groups::{nth_bit, Groups};
pub use mesh::MeshPeer;
pub use msg::{Interest, SessionState, ShardMsg};
pub use routing::Handoff;
pub(crate) use routing::Routing;
pub use stop::Stop;
pub use table::NatsSub;
pub use telemetry::LogLimiter;

/// Process-wide state shared by the shards: atomics and a few locks, none
/// of it on the event path.
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
    /// Client shards that installed their recovered state (persistence).
    pub persist_started: AtomicUsize,
    /// The configuration in force after a SIGHUP reload, and its number;
    /// shards pick it up on their housekeeping tick.
    pub reloaded: std::sync::Mutex<Option<Arc<Config>>>,
    pub config_generation: std::sync::atomic::AtomicU64,
    /// Client shards (mesh peers 0..client_shards); a bridge executor, when
    /// the mesh is on, is the peer after them.
    pub client_shards: usize,
    /// The client listeners' TLS material (`[mqtt.tls]`, `[nats.tls]`),
    /// read at each accept, replaced by a SIGHUP reload: established
    /// connections keep the material they started with.
    pub client_tls: std::sync::RwLock<crate::config::ClientTlsResolved>,
    /// Connections per listener, source address and user (touched at
    /// accept, CONNECT and close only; see `shard::admission`).
    pub admission: Arc<super::admission::Admission>,
    /// Set by the admin thread while a web console stream is open (or the
    /// console state was asked for lately): the shards then feed their
    /// busiest-topics sketch (`console`). Read on every publish: on a
    /// cache line of its own, so that connection counting's writes to the
    /// fields beside it do not invalidate it on every shard.
    pub console_active: crossbeam::utils::CachePadded<AtomicBool>,
    /// Trace context and the span queue (`crate::trace`), one per process.
    pub trace: Arc<crate::trace::Tracer>,
    /// Route explain's questions to the shards and the bridge.
    pub explain: super::explain_board::Board,
}

impl Global {
    /// The MQTT TLS listener's material in force.
    pub fn client_tls_mqtt(&self) -> Option<crate::config::ClientTls> {
        let tls = self.client_tls.read().ok()?;
        tls.mqtt.as_ref().map(|(_, t)| t.clone())
    }

    /// The AMQP listener's TLS material (`amqp.tls`).
    pub fn client_tls_amqp(&self) -> Option<crate::config::ClientTls> {
        self.client_tls.read().ok()?.amqp.clone()
    }

    /// The MQTT WebSocket listener's wss material (`mqtt.ws.tls`).
    pub fn client_tls_mqtt_ws(&self) -> Option<crate::config::ClientTls> {
        self.client_tls.read().ok()?.mqtt_ws.clone()
    }

    /// The NATS listener's TLS material in force; None = plain NATS.
    pub fn client_tls_nats(&self) -> Option<crate::config::ClientTls> {
        self.client_tls.read().ok()?.nats.clone()
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

/// `Config::resolve` compiled the same section before this configuration
/// was accepted, so it compiles here too.
fn compile_security(config: &Config) -> Arc<Security> {
    Arc::new(
        Security::from_config(&config.security)
            .expect("[security] was checked when the configuration was resolved"),
    )
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
    /// The compiled `[security]` of the configuration in force (replaced
    /// with it); read through `security()`.
    security: RefCell<Arc<Security>>,
    pub decode_limits: Cell<DecodeLimits>,
    pub topic_limits: Cell<TopicLimits>,
    pub stats: Arc<ShardStats>,
    pub counters: Counters,
    pub global: Arc<Global>,
    pub log_limiter: LogLimiter,
    /// Failed-login limiter and password-check permits (`auth`).
    pub auth: auth::ShardAuth,
    /// When the current batch of client bytes was read (`now_ns`).
    pub received_ns: Cell<u64>,
    pub stopping: Stop,
    pub(crate) routing: Routing,
    pub(crate) groups: Groups,
    control: control::Control,
    table: table::Table,
    directory: directory::Directory,
    retained: retained::Retained,
    /// This shard's log, when persistence is on (`persist`).
    durability: persist::Durability,
    /// Publishers held for this shard's congested QoS 1 subscribers.
    holding: super::hold::Holding,
    write_buffers: buffers::WriteBuffers,
    read_buffers: buffers::ReadBuffers,
    latency: telemetry::Latency,
    /// The web console's busiest-topics sketch (`console`).
    console: console::Console,
    /// Set on the mesh executor's context only (see `mesh`).
    mesh: OnceCell<Rc<dyn MeshPeer>>,
    /// The mesh executor's context when it runs on this executor
    /// (`mesh.bridge_in_shard`): events for it are handed over by a
    /// call instead of through the ring.
    /// Set once, at start; the inner cell is filled when the bridge has
    /// joined the rings.
    pub direct_bridge: OnceCell<Rc<OnceCell<Rc<ShardCtx>>>>,
    /// The other way, on the mesh executor's context when it runs inside
    /// shard 0's executor: that shard's context (weak: the shard's holds
    /// this one), to which events from other routers are handed by a call
    /// whenever nothing sent to it before still waits (see
    /// `hand_to_shards`). Set once, at start; filled when the shard runs.
    pub direct_shard: OnceCell<Rc<OnceCell<std::rc::Weak<ShardCtx>>>>,
    /// Shared-memory clients handed to this shard by shard 0, until its
    /// `shm_accept` task takes them.
    pub shm_inbox: super::shm_handoff::Inbox,
}

impl ShardCtx {
    pub fn new(
        senders: Senders<ShardMsg>,
        config: Arc<Config>,
        stats: Arc<ShardStats>,
        global: Arc<Global>,
    ) -> ShardCtx {
        let id = senders.peer_id();
        let (decode_limits, topic_limits) = derived_limits(&config);
        ShardCtx {
            id,
            shards: senders.nr_consumers(),
            decode_limits: Cell::new(decode_limits),
            topic_limits: Cell::new(topic_limits),
            routing: Routing::new(config.runtime.match_cache_entries_max),
            retained: retained::Retained::new(&config),
            durability: Default::default(),
            security: RefCell::new(compile_security(&config)),
            auth: auth::ShardAuth::new(&config),
            config: RefCell::new(config),
            config_generation: Cell::new(0),
            control: control::Control::new(senders),
            stats,
            counters: Counters::default(),
            global,
            log_limiter: LogLimiter::new(20),
            received_ns: Cell::new(0),
            stopping: Stop::default(),
            groups: Groups::new(id),
            table: Default::default(),
            directory: Default::default(),
            holding: Default::default(),
            write_buffers: Default::default(),
            read_buffers: Default::default(),
            latency: Default::default(),
            console: console::Console::new(id),
            mesh: OnceCell::new(),
            direct_bridge: OnceCell::new(),
            direct_shard: OnceCell::new(),
            shm_inbox: Default::default(),
        }
    }

    /// Hands a shared-memory client accepted on shard 0 to `peer`
    /// (`shm_accept`), in order with the control queue.
    pub fn hand_shm_client(&self, peer: usize, handoff: super::shm_handoff::Handoff) {
        self.control.push(Some(peer), ShardMsg::ShmClient(handoff));
    }

    /// Makes this context the mesh executor's (see `mesh`); once.
    pub fn set_mesh(&self, mesh: Rc<dyn MeshPeer>) -> Result<(), Rc<dyn MeshPeer>> {
        self.mesh.set(mesh)
    }

    /// When this executor runs the mesh: waits for room in it (its live
    /// links' resend stores); at once otherwise.
    /// Whether `mesh_room` would wait.
    pub fn mesh_room_short(&self) -> bool {
        self.mesh.get().is_some_and(|mesh| mesh.room_short())
    }

    pub async fn mesh_room(&self) {
        if let Some(mesh) = self.mesh.get() {
            if mesh.room_short() {
                mesh.wait_room().await;
            }
        }
    }

    pub fn limits(&self) -> LimitsRef {
        LimitsRef(self.config.borrow().clone())
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Users, accounts and permissions in force.
    pub fn security(&self) -> Arc<Security> {
        self.security.borrow().clone()
    }

    /// Takes a reloaded configuration (only its reloadable parts matter:
    /// limits; listeners and shards need a restart).
    pub fn reload_config(&self, generation: u64, config: Arc<Config>) {
        if generation == self.config_generation.get() {
            return;
        }
        let (decode_limits, topic_limits) = derived_limits(&config);
        self.retained.set_limits(&config);
        self.decode_limits.set(decode_limits);
        self.topic_limits.set(topic_limits);
        let security = compile_security(&config);
        self.revoke(&security);
        *self.security.borrow_mut() = security;
        *self.config.borrow_mut() = config;
        self.config_generation.set(generation);
    }

    /// Ends the sessions whose user `security` (a reloaded generation) no
    /// longer admits, or whose rules it changed (MQTT 5 DISCONNECT 0x87,
    /// NATS `-ERR 'Authorization Violation'`), with one log line each. A
    /// kept session's subscriptions its new rights deny are dropped when it
    /// resumes (`install`).
    fn revoke(&self, security: &Security) {
        let old = self.security();
        for session in self.table.all_sessions() {
            let verdict = session.identity.borrow().as_ref().and_then(|identity| {
                let why = if !security.still_admits(identity) {
                    "reload: user removed (or moved to another account); its connection is closed"
                } else if security.rights_changed(&old, identity) {
                    "reload: the rules of its rights changed; its connection is closed (the client reconnects under the new rules)"
                } else {
                    return None;
                };
                Some((identity.user.clone(), why))
            });
            if let Some((user, why)) = verdict {
                tracing::info!(
                    shard = self.id,
                    client_id = &*session.client_id,
                    user = user.as_deref().unwrap_or(""),
                    "{why}"
                );
                session.close(CloseReason::Revoked);
            }
        }
    }

    // ------------------------------------------------------------ sessions

    pub fn register(&self, protocol: Protocol, client_id: Box<str>) -> Rc<Session> {
        self.table.register(protocol, client_id)
    }

    /// Releases the session's subscriptions (telling other shards where a
    /// filter lost its last local subscriber) and its slot.
    pub fn unregister(&self, session: &Rc<Session>) {
        if session.detached.replace(true) {
            return; // taken over: its state lives elsewhere now
        }
        self.end_journal(session);
        self.drop_amqp_links(session);
        if !matches!(session.protocol, Protocol::Nats | Protocol::Amqp) {
            self.leave_home(session);
            let redirect = groups::shared_backlog(session);
            self.drop_mqtt_subscriptions(session);
            for (event, group) in redirect {
                self.deliver_to_group(event, &group, 0);
            }
        }
        let sids: Vec<_> = session
            .nats_subs
            .borrow_mut()
            .drain()
            .map(|(_, k)| k)
            .collect();
        for key in sids {
            self.remove_nats_sub(key);
        }
        self.table.remove_session(session.key);
    }

    pub fn live_sessions(&self) -> usize {
        self.table.live_sessions()
    }

    pub fn all_sessions(&self) -> Vec<Rc<Session>> {
        self.table.all_sessions()
    }

    /// Offline persistent sessions kept here.
    pub fn offline_sessions(&self) -> usize {
        self.directory.offline_sessions()
    }

    pub fn origin(&self, session: &Session) -> Origin {
        Origin {
            shard: self.id as u16,
            session: session.key,
        }
    }

    // ------------------------------------------------------------- control

    /// Waits until every other shard has applied all that this shard sent
    /// before: after it, a SUBACK is safe to send, since a publish on any
    /// shard will see the new interest.
    pub async fn barrier(&self) {
        self.control.barrier(&self.stopping).await
    }

    /// Tells every other peer that this shard's first (`add`) or last
    /// subscriber of (filter, group) came or went.
    pub(crate) fn announce(&self, add: bool, filter: Arc<str>, group: Option<Arc<str>>) {
        self.control.announce(add, filter, group)
    }

    /// Drains the control queue in order, for the life of the shard.
    pub async fn control_task(&self) {
        self.control.run(&self.counters).await
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
        if let Some(mesh) = self.mesh.get() {
            match msg {
                ShardMsg::Event {
                    event,
                    plain,
                    groups,
                    ..
                } => {
                    Counters::add(&self.counters.ring_events_in, 1);
                    mesh.on_event(event, plain, &groups);
                    return;
                }
                ShardMsg::Retain(event, stamp) => {
                    self.store_retained(&event, stamp);
                    mesh.on_retain(&event, stamp);
                    return;
                }
                ShardMsg::InterestAdd(ref i) => mesh.on_interest(i, true),
                ShardMsg::InterestRemove(ref i) => mesh.on_interest(i, false),
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
                let publisher = event.origin;
                self.on_ring_event(event, plain, &groups, handed, congested);
                congested.retain(|subscriber| self.hold_for(subscriber, publisher));
            }
            ShardMsg::Retain(event, stamp) => {
                self.store_retained(&event, stamp);
            }
            msg @ (ShardMsg::Claim { .. }
            | ShardMsg::ClaimReply { .. }
            | ShardMsg::Takeover { .. }
            | ShardMsg::Prepare { .. }
            | ShardMsg::TakeoverReply { .. }
            | ShardMsg::Release { .. }) => self.on_ring_directory(from, msg),
            ShardMsg::HoldPublisher(key) => self.hold_publisher(key, true),
            ShardMsg::FreePublisher(key) => self.hold_publisher(key, false),
            ShardMsg::InterestAdd(i) => {
                self.on_ring_interest(from, &i.filter, i.group.as_deref(), true)
            }
            ShardMsg::InterestRemove(i) => {
                self.on_ring_interest(from, &i.filter, i.group.as_deref(), false)
            }
            ShardMsg::Barrier(id) => self.control.on_barrier(from, id),
            ShardMsg::BarrierAck(id) => self.control.on_barrier_ack(id),
            ShardMsg::DurableBarrier(id) => self.on_durable_barrier(from, id),
            ShardMsg::BarrierFailed(id) => self.control.on_barrier_nack(id),
            ShardMsg::ShmClient(handoff) => self.shm_inbox.push(handoff),
        }
    }

    // -------------------------------------------------------- housekeeping

    /// Off-path chores of the tick: answer an admin view request, take a
    /// reloaded configuration.
    /// Returns wills to publish (their sessions expired).
    pub fn housekeeping(&self) -> Vec<Event> {
        let wills = self.expire_offline();
        self.compact_log();
        self.answer_explains();
        if self.stats.view_requested.swap(false, Ordering::AcqRel) {
            let view = self.view(self.config().admin.view_entries_max);
            if let Ok(mut slot) = self.stats.view.lock() {
                *slot = Some(view);
            }
        }
        self.console_tick();
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
        self.table.view(self.id, max)
    }

    pub fn take_write_buffer(&self) -> Vec<u8> {
        self.write_buffers.take()
    }

    pub fn give_write_buffer(&self, buf: Vec<u8>) {
        self.write_buffers
            .give(buf, self.limits().write_batch_bytes_max);
    }

    /// A read buffer for a connection whose socket has data (idle
    /// connections hold none: `driver::read`).
    pub fn take_read_buffer(&self, len: usize) -> Vec<u8> {
        self.read_buffers.take(len)
    }

    /// Back from a connection whose read waits with nothing pending: kept
    /// (up to `limits.read_buffers_spare_max`) or freed.
    pub fn give_read_buffer(&self, buf: Vec<u8>, len: usize) {
        self.read_buffers
            .give(buf, len, self.limits().read_buffers_spare_max);
    }

    /// Read buffers kept for reuse (tests).
    pub fn spare_read_buffers(&self) -> usize {
        self.read_buffers.spare()
    }

    /// Drops what the shard keeps for reuse beyond what its sessions hold
    /// (spare write buffers, table capacity left by sessions gone), before
    /// the heap is returned to the OS (`memory::return_to_os`).
    pub fn trim(&self) {
        self.write_buffers.trim();
        self.read_buffers.trim();
        self.directory.trim();
    }

    /// Records the router-internal latency of events just handed to a
    /// socket (see `telemetry`).
    pub fn record_latency(&self, born: &[u64]) {
        self.latency.record(born, &self.counters);
    }

    /// Publishes the counters and the trie's sizes for other threads.
    pub fn publish_stats(&self) {
        self.latency.publish(&self.stats);
        let t = self.routing.counts();
        let c = &self.counters;
        c.subscriptions.set(t.local_subscriptions as u64);
        c.trie_nodes.set(t.nodes as u64);
        c.remote_interest_entries.set(t.remote_entries as u64);
        c.sessions.set(self.live_sessions() as u64);
        c.retained_messages.set(self.retained.len() as u64);
        c.offline_sessions.set(self.offline_sessions() as u64);
        c.publish(&self.stats);
    }

    // -------------------------------------------------------------- shutdown

    pub fn request_stop(&self) {
        if !self.stopping.request() {
            return;
        }
        for s in self.all_sessions() {
            s.close(CloseReason::ServerShutdown);
        }
        self.control.wake_barriers();
    }

    pub async fn stopped(&self) {
        self.stopping.stopped().await
    }

    pub fn global_connections(&self) -> &AtomicUsize {
        &self.global.connections
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
