//! The runtime seam: executors, listeners, rings, timers and signals.
//!
//! Everything that touches glommio lives under `shard/` so that another
//! thread-per-core runtime (monoio, compio) could replace it without
//! touching the protocols or the trie. One `LocalExecutor` per shard, pinned
//! to its core; each shard has its own SO_REUSEPORT listener on the same
//! address (the kernel spreads connections), owns its sessions, and talks to
//! the other shards only through bounded lock-free SPSC rings, one per
//! ordered pair of executors (glommio shared channels, see [`rings`]).
//!
//! Costs to know: each shard registers `runtime.io_memory_bytes` of locked
//! memory with io_uring (weft raises RLIMIT_MEMLOCK when it may); each ring
//! holds `runtime.ring_capacity` events.

pub mod accept;
pub mod admission;
pub mod bind;
pub mod bridge;
pub mod ctx;
pub mod driver;
pub mod driver_amqp;
pub mod driver_http;
pub mod driver_mqtt;
pub mod driver_nats;
pub mod durable_ack;
pub mod explain_board;
pub mod hold;
pub mod io;
pub mod mailbox;
pub mod memory;
pub mod numa;
pub mod publisher_hold;
pub mod rings;
pub mod rlimits;
pub mod shm_accept;
pub mod shm_handoff;
mod spin_watch;
pub mod spsc;
pub mod stats;
pub mod sys;
pub mod tls_accept;
pub mod topk;
pub mod transport;
pub mod transport_mem;
pub mod transport_shm;
pub mod transport_tls;
pub mod transport_ws;
pub mod ws_accept;

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::io::FromRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;

use crate::config::Resolved;
use bind::{bind_listener, Listener, LISTEN_BACKLOG};
use ctx::{Global, ShardCtx, ShardMsg};
use stats::{ShardStats, Snapshot};

#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot bind {protocol} listener {addr}: {reason}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("persistence: {0}")]
    Persistence(String),
    #[error("trace: the OTLP exporter: {0}")]
    Trace(String),
    #[error("executors did not start: {0}")]
    NotJoined(String),
    #[error("cannot start shard {shard} on core {core}: {reason}")]
    Executor {
        shard: usize,
        core: usize,
        reason: String,
    },
}

/// Longest wait for every executor to start and join the rings.
const EXECUTORS_START_MAX: Duration = Duration::from_secs(30);

/// How often a shard publishes its counters and checks for shutdown.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(50);

/// A running router: its shards' threads and what they share.
pub struct Router {
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    /// The client listeners' addresses.
    listeners: bind::ClientListeners,
    stats: Vec<Arc<ShardStats>>,
    global: Arc<Global>,
    admin: Option<(SocketAddr, std::thread::JoinHandle<()>)>,
    mesh_addr: Option<SocketAddr>,
    /// The span exporter thread (`trace.otlp_endpoint` set).
    trace_exporter: Option<crate::trace::export::Exporter>,
    /// Descriptors held besides connections, and the connections_max
    /// last checked against the descriptor limit (again on reload).
    headroom: rlimits::Headroom,
    connections_max_checked: std::sync::atomic::AtomicUsize,
}

/// What the admin endpoint reads, handed to the function that starts it.
/// The admin module sits above the shards (it reads their stats and shared
/// state), so the router's start calls it through [`StartAdmin`] and no
/// shard code names it.
pub struct AdminParts<'a> {
    pub config: &'a crate::config::Config,
    pub stats: Vec<Arc<ShardStats>>,
    pub global: Arc<ctx::Global>,
    pub mesh_view: MeshViewSlot,
}

/// Starts the admin endpoint on `addr` (binding retried for the given
/// time): its address and its thread.
pub type StartAdmin = fn(
    SocketAddr,
    Duration,
    AdminParts<'_>,
) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)>;

/// An executor pinned to `core` with the runtime's settings.
fn executor(name: &str, core: usize, config: &crate::config::Config) -> LocalExecutorBuilder {
    let builder = LocalExecutorBuilder::new(Placement::Fixed(core))
        .name(name)
        .io_memory(config.runtime.io_memory_bytes);
    // Busy polling (`runtime.spin_us`): glommio's spin reaps completions
    // without a syscall, the ring doorbells' included (`spsc`).
    match config.runtime.spin() {
        Duration::ZERO => builder,
        spin => builder.spin_before_park(spin),
    }
}

impl Router {
    /// Binds the listeners (so that errors surface here, and port 0 resolves
    /// to one real port shared by every shard) and starts the shards, then
    /// the admin endpoint with `start_admin` (`crate::Router::start` passes
    /// `crate::admin`'s).
    pub fn start_with(resolved: Resolved, start_admin: StartAdmin) -> Result<Router, StartError> {
        let Resolved {
            config,
            mqtt_listen,
            nats_listen,
            admin_listen,
            http_listen,
            shard_cores,
            mesh,
            tls,
            mqtt_ws_listen,
            nats_ws_listen,
            amqp_listen,
        } = resolved;
        let shards = shard_cores.len();
        let seed = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        };
        crate::topic::trie::seed_hashes(seed);
        // Every executor (the shards, and the mesh's bridge) registers its
        // io_uring memory.
        let executors = shards as u64 + u64::from(mesh.is_some());
        rlimits::raise_memlock(
            (config.runtime.io_memory_bytes as u64 + (1 << 20)) * executors + (8 << 20),
        );
        // Each connection is a file descriptor; so is each listener, link
        // and executor ring.
        let per_protocol = |own: bool| shards as u64 * (1 + u64::from(own));
        let headroom = rlimits::Headroom {
            executors,
            listeners: per_protocol(config.mqtt.shard_listeners)
                + nats_listen.map_or(0, |_| per_protocol(config.nats.shard_listeners))
                + tls.mqtt.as_ref().map_or(0, |_| per_protocol(false))
                + http_listen.map_or(0, |_| per_protocol(false))
                + mqtt_ws_listen.map_or(0, |_| per_protocol(false))
                + nats_ws_listen.map_or(0, |_| per_protocol(false))
                + amqp_listen.map_or(0, |_| per_protocol(false))
                + u64::from(admin_listen.is_some())
                + u64::from(mesh.as_ref().is_some_and(|m| m.listen.is_some())),
            links: mesh
                .as_ref()
                .map_or(0, |m| config.mesh.links_max as u64 + m.links.len() as u64),
            rings: rings::rings_of(executors as usize),
        };
        let descriptor_connections_max =
            rlimits::check_nofile(config.limits.connections_max as u64, headroom);
        let retry = Duration::from_millis(config.runtime.bind_retry_ms);

        // Persistence: the last run's state, dealt out to this run's
        // shards, before anything is bound or served.
        let mut persisted = match config.persistence.is_on() {
            true => {
                let started =
                    crate::persist::start::prepare(&config.persistence, shards, mesh.is_some())
                        .map_err(StartError::Persistence)?;
                tracing::info!(
                    dir = %config.persistence.dir,
                    sync = ?config.persistence.sync,
                    records = started.records,
                    sessions = started.sessions,
                    retained = started.retained.len(),
                    bad_crc = started.bad_crc,
                    torn_tails = started.torn_tails,
                    took_ms = started.took.as_millis() as u64,
                    "persistence: recovered"
                );
                Some(started)
            }
            false => None,
        };
        let recovered_retained = Arc::new(
            persisted
                .as_mut()
                .map(|s| std::mem::take(&mut s.retained))
                .unwrap_or_default(),
        );
        let recovery = persisted
            .as_ref()
            .map(|s| (s.took, s.records, s.bad_crc, s.torn_tails));
        let mut bridge_start = persisted.as_mut().and_then(|s| s.bridge.take());
        let mut shard_starts = persisted.map(|s| s.shards.into_iter());

        let mut per_shard: Vec<Vec<(Listener, RawFd)>> = vec![Vec::new(); shards];
        let listeners = bind::bind_clients(
            &config,
            bind::ClientAddrs {
                mqtt: mqtt_listen,
                nats: nats_listen,
                mqtt_tls: tls.mqtt.as_ref().map(|(listen, _)| *listen),
                http: http_listen,
                mqtt_ws: mqtt_ws_listen,
                nats_ws: nats_ws_listen,
                amqp: amqp_listen,
            },
            &mut per_shard,
            retry,
        )?;

        let mesh_listener = match mesh.as_ref().and_then(|m| m.listen) {
            Some(addr) => {
                let l = bind_listener("mesh", addr, false, LISTEN_BACKLOG, retry)?;
                let bound = l.local_addr().map_err(|e| StartError::Bind {
                    protocol: "mesh",
                    addr,
                    reason: e.to_string(),
                })?;
                Some((bound, l.into_raw_fd()))
            }
            None => None,
        };
        let mesh_addr = mesh_listener.map(|(a, _)| a);

        let config = Arc::new(config);
        let global = Arc::new(Global {
            server_id: format!("NWEFT{seed:016X}"),
            client_shards: shards,
            descriptor_connections_max: (descriptor_connections_max as usize).into(),
            client_tls: tls.into(),
            trace: Arc::new(crate::trace::Tracer::new(
                &config.trace,
                &config.mesh.router_id,
            )),
            ..Global::default()
        });
        // Spans leave through one thread, off the shards (`trace::export`).
        let trace_exporter = global
            .trace
            .start_exporter(&config.trace, &config.mesh.router_id)
            .map_err(StartError::Trace)?;
        let stats: Vec<Arc<ShardStats>> = (0..shards).map(|_| Arc::default()).collect();
        // The bridge's link view for the admin endpoint, refreshed each tick.
        let mesh_view: MeshViewSlot = Arc::default();
        // The bridge executor, when the mesh is on, is the last peer.
        let peers = shards + usize::from(mesh.is_some());
        let bridge_core = mesh
            .as_ref()
            .map(|m| m.bridge_core.unwrap_or(shard_cores[0]));
        let mut all_rings = rings::full::<ShardMsg>(peers, config.runtime.ring_capacity)
            .map_err(|e| StartError::NotJoined(format!("the rings between executors: {e}")))?;
        // The bridge's ring ends, taken out when it runs inside shard 0.
        let in_shard = config.mesh.bridge_in_shard && bridge_core == Some(shard_cores[0]);
        let mut bridge_ends = match (&mesh, in_shard) {
            (Some(_), true) => all_rings.pop(),
            _ => None,
        };
        let mut rings = all_rings.into_iter();
        let mut threads = Vec::with_capacity(shards);
        let mut mesh = mesh;
        // Inherited by the shard threads spawned below (numa.rs).
        let numa_node = config.runtime.numa_node;
        let node_memory = numa_node.and_then(numa::prefer_node_memory);
        for (index, (fds, core)) in per_shard.into_iter().zip(shard_cores.clone()).enumerate() {
            let ring_ends = rings.next().expect("one per peer");
            let persist = shard_starts.as_mut().map(|starts| {
                let start = starts.next().expect("one per shard");
                let recovery = recovery.filter(|_| index == 0);
                (start, recovered_retained.clone(), recovery)
            });
            let config = config.clone();
            let global = global.clone();
            let stats = stats.clone();
            let mesh_view = mesh_view.clone();
            // Shard 0 may also run the bridge (mesh.bridge_in_shard).
            let colocated = bridge_ends.take().map(|ends| {
                (
                    ends,
                    mesh.take().expect("mesh on"),
                    mesh_listener.map(|(_, fd)| fd),
                    bridge_start.take(),
                )
            });
            let handle = executor(&format!("weft-shard-{index}"), core, &config)
                .spawn(move || async move {
                    numa::log_shard(index, core, numa_node);
                    let listeners = fds
                        .into_iter()
                        // SAFETY: each fd comes from a listening std socket
                        // whose ownership was released with into_raw_fd.
                        .map(|(p, fd)| (p, unsafe { glommio::net::TcpListener::from_raw_fd(fd) }))
                        .collect();
                    let direct: Option<Direct> = colocated.as_ref().map(|_| Default::default());
                    let bridge = colocated.map(|(ends, mesh, listener_fd, start)| {
                        let config = config.clone();
                        let global = global.clone();
                        let direct = direct.clone();
                        glommio::spawn_local(run_bridge(
                            ends,
                            config,
                            global,
                            mesh_view,
                            (mesh, start),
                            listener_fd,
                            direct,
                        ))
                    });
                    run_shard(ring_ends, listeners, config, stats, global, direct, persist).await;
                    if let Some(task) = bridge {
                        task.await;
                    }
                })
                .map_err(|e| StartError::Executor {
                    shard: index,
                    core,
                    reason: e.to_string(),
                })?;
            threads.push(handle);
        }
        drop(node_memory);
        if let (Some(mesh), Some(core)) = (mesh, bridge_core) {
            let channels = rings.next().expect("the bridge is the last peer");
            let config = config.clone();
            let global = global.clone();
            let mesh_view = mesh_view.clone();
            let listener_fd = mesh_listener.map(|(_, fd)| fd);
            let handle = executor("weft-bridge", core, &config)
                .spawn(move || async move {
                    let mesh = (mesh, bridge_start);
                    run_bridge(channels, config, global, mesh_view, mesh, listener_fd, None).await;
                })
                .map_err(|e| StartError::Executor {
                    shard: shards,
                    core,
                    reason: e.to_string(),
                })?;
            threads.push(handle);
        }
        // Every executor must join the rings before anything is served: one
        // that could not start (io_uring or memory limits: its thread ends
        // before our code runs) would leave the others waiting for it.
        let deadline = Instant::now() + EXECUTORS_START_MAX;
        while global.joined.load(Ordering::Acquire) < peers {
            if Instant::now() >= deadline {
                global.shutdown.store(true, Ordering::Relaxed);
                return Err(StartError::NotJoined(format!(
                    "only {} of {peers} joined the rings within {} s \
                     (one could not start: check io_uring and locked-memory limits)",
                    global.joined.load(Ordering::Acquire),
                    EXECUTORS_START_MAX.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let admin = match admin_listen {
            Some(addr) => {
                let parts = AdminParts {
                    config: &config,
                    stats: stats.clone(),
                    global: global.clone(),
                    mesh_view: mesh_view.clone(),
                };
                let started = start_admin(addr, retry, parts).map_err(|e| StartError::Bind {
                    protocol: "admin",
                    addr,
                    reason: e.to_string(),
                });
                match started {
                    Ok(a) => Some(a),
                    Err(e) => {
                        global.shutdown.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        Ok(Router {
            threads,
            listeners,
            stats,
            global,
            admin,
            mesh_addr,
            trace_exporter,
            headroom,
            connections_max_checked: config.limits.connections_max.into(),
        })
    }

    /// Where peer routers connect, when `mesh.listen` is set.
    pub fn mesh_addr(&self) -> Option<SocketAddr> {
        self.mesh_addr
    }

    pub fn mqtt_addr(&self) -> SocketAddr {
        self.listeners.mqtt.addr
    }

    /// Each executor's own MQTT listener, when `mqtt.shard_listeners` is on.
    pub fn shard_addrs(&self) -> &[SocketAddr] {
        &self.listeners.mqtt.own_addrs
    }

    /// The HTTP edge's listener, when `http.listen` is set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.listeners.http.as_ref().map(|b| b.addr)
    }

    /// The AMQP 1.0 listener, when `amqp.listen` is set.
    pub fn amqp_addr(&self) -> Option<SocketAddr> {
        self.listeners.amqp.as_ref().map(|b| b.addr)
    }

    /// The MQTT TLS listener, when `mqtt.tls.listen` is set.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.listeners.mqtt_tls.as_ref().map(|b| b.addr)
    }

    /// New TLS material for the client listeners (a SIGHUP reload, the
    /// files loaded and checked): new connections handshake with it,
    /// established ones keep theirs. A listener's TLS is switched on or
    /// off only by a restart (its listener, or `[nats.tls]` at start).
    pub fn reload_tls(&self, new: crate::config::ClientTlsResolved) {
        if let Ok(mut tls) = self.global.client_tls.write() {
            if let (Some((_, now)), Some((_, next))) = (&mut tls.mqtt, new.mqtt) {
                *now = next;
            }
            if let (Some(now), Some(next)) = (&mut tls.nats, new.nats) {
                *now = next;
            }
            if let (Some(now), Some(next)) = (&mut tls.mqtt_ws, new.mqtt_ws) {
                *now = next;
            }
            if let (Some(now), Some(next)) = (&mut tls.amqp, new.amqp) {
                *now = next;
            }
        }
    }

    /// The MQTT and NATS WebSocket listeners, when set.
    pub fn mqtt_ws_addr(&self) -> Option<SocketAddr> {
        self.listeners.mqtt_ws.as_ref().map(|b| b.addr)
    }

    pub fn nats_ws_addr(&self) -> Option<SocketAddr> {
        self.listeners.nats_ws.as_ref().map(|b| b.addr)
    }

    pub fn nats_addr(&self) -> Option<SocketAddr> {
        self.listeners.nats.as_ref().map(|b| b.addr)
    }

    /// Each executor's own NATS listener, when `nats.shard_listeners` is on.
    pub fn nats_shard_addrs(&self) -> &[SocketAddr] {
        self.listeners.nats.as_ref().map_or(&[], |b| &b.own_addrs)
    }

    /// The admin endpoint's address, when enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    /// Hands a reloaded configuration to the shards (they take its limits
    /// on their next tick; listeners and shard layout need a restart).
    pub fn reload(&self, config: crate::config::Config) {
        let max = config.limits.connections_max;
        if self.connections_max_checked.swap(max, Ordering::Relaxed) != max {
            let held = rlimits::check_nofile(max as u64, self.headroom);
            self.global
                .descriptor_connections_max
                .store(held as usize, Ordering::Relaxed);
        }
        if let Ok(mut slot) = self.global.reloaded.lock() {
            *slot = Some(Arc::new(config));
        }
        self.global.config_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Every shard serves its listeners (what `/readyz` reports).
    pub fn is_ready(&self) -> bool {
        self.global.ready_shards.load(Ordering::Relaxed) == self.stats.len()
    }

    pub fn shard_count(&self) -> usize {
        self.stats.len()
    }

    /// Counters of one shard; the shard index is its mesh peer id.
    pub fn shard_stats(&self, shard: usize) -> Snapshot {
        self.stats[shard].snapshot()
    }

    /// Counters summed over every shard (published every 50 ms).
    pub fn stats(&self) -> Snapshot {
        let mut total = Snapshot::default();
        for s in &self.stats {
            total += s.snapshot();
        }
        total
    }

    /// Asks every shard to stop: no new connections, sessions flush what
    /// they can within `runtime.shutdown_flush_ms_max`, then close.
    pub fn shutdown(&self) {
        self.global.shutdown.store(true, Ordering::Relaxed);
    }

    /// Waits for every shard to finish.
    pub fn join(self) {
        for t in self.threads {
            if let Err(e) = t.join() {
                tracing::error!(error = %e, "shard thread failed");
            }
        }
        if let Some((_, thread)) = self.admin {
            let _ = thread.join();
        }
        // The spans of the last events go out before the process ends.
        if let Some(exporter) = self.trace_exporter {
            exporter.stop();
        }
    }
}

/// Where the bridge leaves its admin view (`GET /links`, mesh metrics).
pub type MeshViewSlot = Arc<std::sync::Mutex<Option<bridge::MeshView>>>;

/// The mesh bridge: joins the rings as the last peer and runs the links.
async fn run_bridge(
    channels: Channels,
    config: Arc<crate::config::Config>,
    global: Arc<Global>,
    view: MeshViewSlot,
    (mesh, persist): (
        crate::config::MeshResolved,
        Option<crate::persist::start::BridgeStart>,
    ),
    listener_fd: Option<RawFd>,
    direct: Option<Direct>,
) {
    // The bridge is the peer after the client shards.
    let shards = global.client_shards;
    // SAFETY: the fd comes from a listening std socket whose ownership was
    // released with into_raw_fd.
    let listener = listener_fd.map(|fd| unsafe { glommio::net::TcpListener::from_raw_fd(fd) });
    let Some(ctx) = join_peer(channels, config.clone(), Arc::default(), global).await else {
        return;
    };
    if ctx.id != shards {
        tracing::error!(peer = ctx.id, "mesh: the bridge is not the last peer");
        return;
    }
    if let Some((bridge, shard)) = direct {
        let _ = bridge.set(ctx.clone());
        let _ = ctx.direct_shard.set(shard);
    }
    bridge::run(ctx, config, mesh, listener, view, persist).await;
}

async fn run_shard(
    mesh: Channels,
    listeners: Vec<(Listener, glommio::net::TcpListener)>,
    config: Arc<crate::config::Config>,
    stats: Vec<Arc<ShardStats>>,
    global: Arc<Global>,
    direct: Option<Direct>,
    persist: Option<PersistStart>,
) {
    let id_stats = stats.clone();
    let Some(ctx) =
        join_peer_with(mesh, config.clone(), move |id| id_stats[id].clone(), global).await
    else {
        return;
    };
    if let Some((bridge, shard)) = direct {
        let _ = ctx.direct_bridge.set(bridge);
        let _ = shard.set(Rc::downgrade(&ctx));
    }
    let id = ctx.id;
    tracing::debug!(shard = id, "shard started");
    let log_task = match persist {
        Some((start, retained, recovery)) => {
            match ctx.start_persistence(start, &retained, recovery).await {
                Ok(task) => Some(task),
                Err(e) => {
                    tracing::error!(shard = id, error = %e, "persistence: cannot open the log; stopping");
                    ctx.global.shutdown.store(true, Ordering::Relaxed);
                    None
                }
            }
        }
        None => None,
    };

    {
        let ctx = ctx.clone();
        let started = Instant::now();
        glommio::spawn_local(async move {
            let mut trimmer = memory::Trimmer::new(Instant::now());
            let mut sys_last: Option<Instant> = None;
            loop {
                glommio::timer::sleep(HOUSEKEEPING_INTERVAL).await;
                ctx.publish_stats();
                let trim_every = Duration::from_millis(ctx.config().runtime.memory_trim_ms);
                let connections = ctx.counters.connections.get();
                if trimmer.due(connections, Instant::now(), trim_every) {
                    let started = Instant::now();
                    ctx.trim();
                    memory::return_to_os();
                    tracing::debug!(
                        shard = ctx.id,
                        connections,
                        took_us = started.elapsed().as_micros() as u64,
                        "memory returned to the OS"
                    );
                }
                for will in ctx.housekeeping() {
                    if will.retain {
                        ctx.retain(&will);
                    }
                    ctx.publish(will, &mut Vec::new()).await;
                }
                // `$SYS` statistics (mqtt.sys_interval_s), from shard 0.
                let sys_every = Duration::from_secs(ctx.config().mqtt.sys_interval_s);
                let now = Instant::now();
                if id == 0
                    && !sys_every.is_zero()
                    && sys_last.is_none_or(|at| now.duration_since(at) >= sys_every)
                {
                    sys_last = Some(now);
                    let mut total = Snapshot::default();
                    for s in &stats {
                        total += s.snapshot();
                    }
                    let uptime_s = now.duration_since(started).as_secs();
                    for (topic, payload) in sys::topics(&total, uptime_s) {
                        let event = crate::event::Event::new(topic, payload.as_bytes(), 0, true);
                        ctx.publish_sys(event).await;
                    }
                }
                if ctx.shutdown_requested() {
                    ctx.request_stop();
                }
            }
        })
        .detach();
    }

    shm_accept::start(&ctx);
    ctx.global.ready_shards.fetch_add(1, Ordering::Relaxed);
    // One bucket for all of this shard's listeners (`accept_rate_per_s`).
    let rate = Rc::new(admission::AcceptRate::default());
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(protocol, listener)| {
            let ctx = ctx.clone();
            let rate = rate.clone();
            glommio::spawn_local(async move {
                accept::accept_loop(&ctx, &listener, protocol, &rate).await
            })
        })
        .collect();
    for task in accepting {
        task.await;
    }

    ctx.global.ready_shards.fetch_sub(1, Ordering::Relaxed);
    // Sessions were closed by request_stop; give their writers a bounded
    // time to flush, then leave (dropping the executor drops the rest).
    let deadline = Instant::now() + Duration::from_millis(config.runtime.shutdown_flush_ms_max);
    while ctx.live_sessions() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    ctx.publish_stats();
    if let (Some(log), Some(task)) = (ctx.log(), log_task) {
        // What was appended reaches the disk before the process exits.
        log.close();
        task.await;
    }
    tracing::debug!(shard = id, "shard stopped");
}

/// A shard's start with persistence on: its log directory and sessions,
/// every retained message, and (shard 0) what the recovery found.
type PersistStart = (
    crate::persist::start::ShardStart,
    Arc<Vec<(u64, crate::event::Event)>>,
    Option<(Duration, u64, u64, u64)>,
);

type Channels = rings::RingEnds<ShardMsg>;

/// Shard 0 and the bridge on one executor (`mesh.bridge_in_shard`): the
/// bridge's context, for the shard to hand events to by a call, and the
/// shard's, for the bridge to do the same the other way.
type Direct = (
    Rc<std::cell::OnceCell<Rc<ShardCtx>>>,
    Rc<std::cell::OnceCell<std::rc::Weak<ShardCtx>>>,
);

/// Joins the rings between executors and starts what every peer runs: a
/// reader per incoming ring and the ordered control queue.
async fn join_peer(
    channels: Channels,
    config: Arc<crate::config::Config>,
    stats: Arc<ShardStats>,
    global: Arc<Global>,
) -> Option<Rc<ShardCtx>> {
    join_peer_with(channels, config, move |_| stats, global).await
}

async fn join_peer_with(
    channels: Channels,
    config: Arc<crate::config::Config>,
    stats: impl FnOnce(usize) -> Arc<ShardStats>,
    global: Arc<Global>,
) -> Option<Rc<ShardCtx>> {
    let (senders, receivers) = channels.connect().await;
    let id = senders.peer_id();
    global.joined.fetch_add(1, Ordering::AcqRel);
    let ctx = Rc::new(ShardCtx::new(senders, config, stats(id), global));
    for (from, receiver) in receivers {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            // A full subscriber holds its publishers alone (`hold`), not
            // the ring every other delivery comes on; the ring waits only
            // for one that has no room left while its pause is on.
            let mut congested = Vec::new();
            while let Some(msg) = receiver.recv().await {
                ctx.on_ring(from, msg, &mut congested);
                if !congested.is_empty() {
                    ctx.wait_watches(&mut congested).await;
                }
                // The bridge's resend stores full: the ring fills and the
                // sending shard's publishers wait (bounded by the pause).
                ctx.mesh_room().await;
            }
        })
        .detach();
    }
    {
        let ctx = ctx.clone();
        glommio::spawn_local(async move { ctx.control_task().await }).detach();
    }
    Some(ctx)
}
