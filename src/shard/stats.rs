//! Per-shard counters. The owning shard counts in plain `Cell`s on the event
//! path and publishes them to these atomics on its housekeeping tick, so
//! readers on other threads (the CLI, tests, later the admin endpoint) never
//! touch the event path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Shard-local counters, written by the shard only.
        #[derive(Default)]
        pub struct Counters { $(#[doc = $doc] pub $name: Cell<u64>,)* }

        /// The published copy, readable from any thread.
        #[derive(Debug)]
        pub struct ShardStats {
            $(#[doc = $doc] pub $name: AtomicU64,)*
            /// Router-internal latency (receive → hand-off to the socket),
            /// in ns, since start; the shard merges into it every tick.
            pub latency: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
            /// The admin endpoint asks for a [`ShardView`] by setting this;
            /// the shard answers on its next tick in `view`.
            pub view_requested: std::sync::atomic::AtomicBool,
            pub view: std::sync::Mutex<Option<ShardView>>,
            /// The same for the web console's [`ConsoleView`].
            pub console_requested: std::sync::atomic::AtomicBool,
            pub console: std::sync::Mutex<Option<ConsoleView>>,
            /// The shard's durable log (`Log::open` takes this Arc).
            pub persist: std::sync::Arc<PersistStats>,
        }

        impl Default for ShardStats {
            fn default() -> Self {
                ShardStats {
                    $($name: AtomicU64::new(0),)*
                    latency: std::sync::Mutex::new(latency_histogram()),
                    view_requested: std::sync::atomic::AtomicBool::new(false),
                    view: std::sync::Mutex::new(None),
                    console_requested: std::sync::atomic::AtomicBool::new(false),
                    console: std::sync::Mutex::new(None),
                    persist: Default::default(),
                }
            }
        }

        /// A plain snapshot, summed over shards or for one shard.
        #[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Snapshot { $(#[doc = $doc] pub $name: u64,)* }

        impl Counters {
            pub fn publish(&self, to: &ShardStats) {
                $(to.$name.store(self.$name.get(), Ordering::Relaxed);)*
            }
        }

        impl ShardStats {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Snapshot {
            /// (metric name, type, help, value) of every counter; gauges
            /// keep their name, counters get `_total`.
            pub fn metrics() -> Vec<(String, &'static str, &'static str, fn(&Snapshot) -> u64)> {
                vec![$((
                    if GAUGES.contains(&stringify!($name)) {
                        stringify!($name).to_string()
                    } else {
                        format!("{}_total", stringify!($name))
                    },
                    if GAUGES.contains(&stringify!($name)) { "gauge" } else { "counter" },
                    $doc,
                    (|s: &Snapshot| s.$name) as fn(&Snapshot) -> u64,
                ),)*]
            }
        }

        impl std::ops::AddAssign for Snapshot {
            fn add_assign(&mut self, o: Snapshot) { $(self.$name += o.$name;)* }
        }
    };
}

counters! {
    connections: "Open connections.",
    connections_accepted: "Connections accepted since start.",
    connections_refused: "Connections closed at accept: over `connections_max`, or out of file descriptors.",
    messages_in: "PUBLISH packets received from clients.",
    messages_out: "Deliveries queued to subscribers.",
    dropped_queue_full: "QoS 0 deliveries dropped because the subscriber's queue was full.",
    dropped_group_gone: "Queue-group events whose chosen shard had no member left.",
    slow_consumer_disconnects: "Subscribers disconnected as slow consumers.",
    publisher_pauses: "Times a QoS 1 publisher was paused for a full subscriber queue.",
    protocol_errors: "Connections closed for a malformed packet or a protocol violation.",
    keep_alive_timeouts: "Connections closed because the keep-alive expired.",
    ring_events_out: "Events handed to other shards.",
    ring_full_waits: "Sends that found a ring full and waited.",
    subscriptions: "Subscriptions held by this shard's sessions.",
    trie_nodes: "Nodes of the shard's trie.",
    remote_interest_entries: "Filters other shards told this shard about.",
    sessions: "Sessions registered on the shard (connected, and persistent ones kept offline).",
    offline_sessions: "Persistent sessions kept without a connection.",
    retained_messages: "Retained messages held (every shard holds all).",
    retained_refused: "Retained messages refused: over retained_messages_max or retained_bytes_max.",
    ring_events_in: "Events received from other shards.",
    replays_out: "Retained messages and stored-session backlog written to clients (not in weft_latency_seconds).",
    bytes_in: "Bytes read from client connections after their CONNECT.",
    bytes_out: "Bytes written to client connections.",
    tls_handshake_failures: "Client TLS handshakes that failed or did not finish within the CONNECT deadline.",
    refused_listener: "Connections closed at accept: over their listener's `connections_max`.",
    refused_source: "Connections closed at accept: over `security.connections_per_source_max`.",
    refused_user: "CONNECTs refused: over `security.connections_per_user_max`.",
    refused_rate: "Connections closed at accept: over `security.accept_rate_per_s`.",
    authz_denied_mqtt_publish: "MQTT PUBLISH packets (and wills) the client's rights refused.",
    authz_denied_mqtt_subscribe: "MQTT SUBSCRIBE filters the client's rights refused.",
    authz_denied_mqtt_deliver: "Events (and retained messages) not delivered to an MQTT client's checked subscription it may not read.",
    authz_denied_nats_publish: "NATS PUB/HPUB the client's rights refused.",
    authz_denied_nats_subscribe: "NATS SUB the client's rights refused.",
    authz_denied_nats_deliver: "Events not delivered to a NATS client's checked subscription it may not read.",
    auth_failures_mqtt: "MQTT CONNECTs refused by authentication (also in weft_auth_failures_total).",
    auth_failures_nats: "NATS CONNECTs refused by authentication (also in weft_auth_failures_total).",
    authz_denied_http_publish: "HTTP publishes (POST) the client's rights refused.",
    authz_denied_http_subscribe: "HTTP subscriptions (event streams) the client's rights refused.",
    authz_denied_http_deliver: "Events not delivered to an HTTP subscriber's checked subscription it may not read.",
    auth_failures_http: "HTTP requests refused by authentication (also in weft_auth_failures_total).",
    authz_denied_amqp_publish: "AMQP transfers (and sender links) the client's rights refused.",
    authz_denied_amqp_subscribe: "AMQP receiver links the client's rights refused.",
    authz_denied_amqp_deliver: "Events not delivered to an AMQP receiver link's checked subscription it may not read.",
    auth_failures_amqp: "AMQP SASL exchanges refused by authentication (also in weft_auth_failures_total).",
    amqp_rejected: "AMQP deliveries a receiver settled as rejected.",
    amqp_dropped_unsettled: "Unsettled AMQP deliveries dropped: their link went away (not durable, no group member to hand them to) or modified undeliverable-here with no other member.",
    shm_connections: "Shared-memory (weft-shm) clients the shard serves.",
    shm_corrupt_closes: "Shared-memory connections closed because the client wrote an impossible ring index.",
    shm_sleeps: "Times a shared-memory session found its ring empty past shm.spin_us and slept on the client's doorbell.",
    shm_sleeping: "Shared-memory sessions whose reader sleeps on the client's doorbell now (idle past shm.spin_us).",
    shm_spin_rescues: "Times the spin watchdog woke a shard with spinning shared-memory sessions that had not turned for 1 ms (a lost wake-up of the runtime bounded, or the shard descheduled).",
}

/// Counters that go up and down.
const GAUGES: &[&str] = &[
    "connections",
    "shm_connections",
    "shm_sleeping",
    "subscriptions",
    "trie_nodes",
    "remote_interest_entries",
    "sessions",
    "retained_messages",
    "offline_sessions",
];

/// What one shard shows the admin endpoint: built on request, on the
/// shard's own thread, bounded to `admin.view_entries_max` entries a list.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardView {
    pub shard: usize,
    pub connections: Vec<ConnectionInfo>,
    pub subscriptions: Vec<SubscriptionInfo>,
    /// True if a list was cut at the bound.
    pub truncated: bool,
    pub queued_messages: u64,
    pub queued_bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionInfo {
    pub shard: usize,
    pub protocol: &'static str,
    pub client_id: String,
    pub peer: Option<String>,
    /// The authenticated user; null for an anonymous client (and before
    /// CONNECT).
    pub user: Option<String>,
    /// The account the session belongs to; null before CONNECT.
    pub account: Option<String>,
    /// False for a persistent session kept without a connection.
    pub online: bool,
    pub subscriptions: usize,
    pub queued_messages: usize,
    pub queued_bytes: usize,
    pub dropped: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionInfo {
    pub shard: usize,
    pub protocol: &'static str,
    pub client_id: String,
    /// MQTT filter, or NATS subject as the client sent it mapped back.
    pub filter: String,
    pub qos: u8,
    pub sid: Option<String>,
    pub queue_group: Option<String>,
}

/// Slowest consumers a shard reports to the console (and the console
/// shows, over all shards).
pub const SLOW_CONSUMERS_MAX: usize = 5;

/// What one shard shows the web console (`GET /console/state`): built on
/// request on the shard's tick, bounded (the few slowest consumers, the
/// topic sketch's entries).
#[derive(Debug, Clone, Default)]
pub struct ConsoleView {
    pub shard: usize,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    /// Sessions with messages queued or dropped, most queued first, at
    /// most [`SLOW_CONSUMERS_MAX`].
    pub slow_consumers: Vec<SlowConsumer>,
    /// The busiest topics published on this shard since its last answer,
    /// with their estimated rates (the sketch is sampled).
    pub topics: Vec<TopicRate>,
    /// The tick that answered, and the counters the shard published on
    /// it: the console's rates divide by the shard's own time.
    pub counters: Option<(std::time::Instant, Snapshot)>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlowConsumer {
    pub shard: usize,
    pub protocol: &'static str,
    pub client_id: String,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    pub dropped: u64,
    /// `client_id` was cut for the console (serialized only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopicRate {
    pub topic: String,
    pub events_per_s: f64,
    /// `topic` was cut for the console (serialized only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// 1 ns to 60 s at 3 significant digits.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

impl Counters {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    pub fn sub(cell: &Cell<u64>, n: u64) {
        debug_assert!(cell.get() >= n, "gauge below zero");
        cell.set(cell.get().saturating_sub(n));
    }
}

pub use crate::persist::log::stats::PersistStats;
