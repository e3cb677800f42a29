//! The sections of the configuration besides limits and mesh: MQTT, NATS,
//! runtime (shards, cores, rings), sockets, logging and the admin endpoint,
//! with their defaults (pinned by `defaults_are_pinned`).
//!
//! Owns: the values only; checks live in `Config::resolve`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin HTTP endpoint (metrics, health, JSON views).
    pub enabled: bool,
    /// Its address; port 0 picks a free port (printed at start).
    pub listen: String,
    /// Entries per shard in the /connections and /subscriptions views.
    pub view_entries_max: usize,
    /// Largest page of a JSON view (`?limit=`).
    pub page_size_max: usize,
    /// Longest request head (request line and headers) read; a longer one
    /// is answered 431.
    pub request_bytes_max: usize,
    /// Time a client has to send its request head, and to take the
    /// answer; requests are served one at a time, so this bounds how long
    /// a slow client can hold the endpoint.
    pub request_timeout_ms: u64,
    /// Bearer token every request but `/healthz` and `/readyz` must carry
    /// (`Authorization: Bearer <token>`, or `?access_token=<token>`);
    /// empty = none, allowed only on a loopback address.
    pub token: String,
    /// The web console's state is sent to each open `/console/events`
    /// stream every this many milliseconds (at least 100: rates over a
    /// shorter window jitter with the shards' 50 ms publishing tick).
    pub console_interval_ms: u64,
    /// `/console/events` streams open at once; more are answered 503.
    pub console_streams_max: usize,
    /// Bytes a console stream may have waiting for its client to read;
    /// a stream beyond is closed (its client reads too slowly).
    pub console_stream_bytes_max: usize,
    /// Entries of each shard's busiest-topics sketch (and topics the
    /// console shows); 1 to 256.
    pub console_topics_max: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: "127.0.0.1:8222".into(),
            view_entries_max: 10_000,
            page_size_max: 1000,
            request_bytes_max: 8192,
            request_timeout_ms: 2000,
            token: String::new(),
            console_interval_ms: 1000,
            console_streams_max: 8,
            console_stream_bytes_max: 256 * 1024,
            console_topics_max: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Address of the MQTT listener; port 0 picks a free port. Every shard
    /// listens on it (SO_REUSEPORT) and the kernel spreads connections.
    pub listen: String,
    /// Also give each shard a listener of its own, so that a client can
    /// choose its shard (locality, tests, debugging).
    pub shard_listeners: bool,
    /// Port of shard 0's own listener, shard i on `shard_port_base + i`;
    /// 0 lets the system pick free ports (printed at start).
    pub shard_port_base: u16,
    /// MQTT 5: topic aliases a client may set (Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Cap on the keep-alive a client may ask for, as mosquitto's
    /// `max_keepalive`; 0 = no cap. An MQTT 5 client asking for more (or
    /// for none) is told the cap (Server Keep Alive), one asking for less
    /// keeps its own; an MQTT 3.1.1 client asking for more (or for none)
    /// is refused (CONNACK 0x02), having no way to be told.
    pub keep_alive_max_s: u16,
    /// Replaced by `keep_alive_max_s` (it imposed one keep-alive on every
    /// MQTT 5 client); refused with a line naming the new key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_keep_alive_s: Option<u16>,
    /// Publish broker statistics as retained `$SYS/broker/...` topics (as
    /// mosquitto does) every this many seconds; 0 = off.
    pub sys_interval_s: u64,
    /// MQTT over TLS on its own listener; see [`MqttTlsConfig`].
    pub tls: MqttTlsConfig,
    /// Connections at once on the MQTT listener (all shards; 0 = only
    /// `limits.connections_max`); more are closed at accept and counted.
    pub connections_max: usize,
    /// MQTT over WebSocket on its own listener; see [`super::ws::WsConfig`].
    pub ws: super::ws::MqttWsConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Serve the NATS client protocol.
    pub enabled: bool,
    /// Address of the NATS listener (SO_REUSEPORT across shards).
    pub listen: String,
    pub shard_listeners: bool,
    pub shard_port_base: u16,
    /// Interval of the server's PINGs.
    pub ping_interval_ms: u64,
    /// Unanswered PINGs before the connection is closed as stale.
    pub pings_outstanding_max: u32,
    pub control_line_bytes_max: usize,
    /// Largest PUB payload, announced in INFO as max_payload.
    pub payload_bytes_max: usize,
    /// TLS on the NATS listener; see [`NatsTlsConfig`].
    pub tls: NatsTlsConfig,
    /// Connections at once on the NATS listener (all shards; 0 = only
    /// `limits.connections_max`); more read `-ERR 'maximum connections
    /// exceeded'` and are closed.
    pub connections_max: usize,
    /// NATS over WebSocket on its own listener; see [`super::ws::WsConfig`].
    pub ws: super::ws::NatsWsConfig,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            enabled: true,
            listen: "127.0.0.1:4222".into(),
            shard_listeners: false,
            shard_port_base: 0,
            ping_interval_ms: 120_000,
            pings_outstanding_max: 2,
            control_line_bytes_max: 4096,
            payload_bytes_max: 1024 * 1024,
            tls: NatsTlsConfig::default(),
            connections_max: 0,
            ws: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Number of shards (executors); 0 = one per core in `cores`.
    pub shards: usize,
    /// CPU list the shards are pinned to, e.g. "0-3" or "0,2"; empty = all
    /// cores this process may run on. Shards beyond the list share cores
    /// round-robin.
    pub cores: String,
    /// Bytes of io_uring-registered memory per shard (counts against
    /// RLIMIT_MEMLOCK, which weft raises when it may).
    pub io_memory_bytes: usize,
    /// Capacity, in events, of each ring between two shards.
    pub ring_capacity: usize,
    /// Entries of each shard's topic match cache (0 disables it).
    pub match_cache_entries_max: usize,
    /// Longest wait for sessions to flush on SIGINT/SIGTERM.
    pub shutdown_flush_ms_max: u64,
    /// Busy polling: an executor (shard or mesh bridge) with nothing to do
    /// spins this long, reaping io_uring completions (sockets, and the
    /// doorbells of the rings between shards) without a system call,
    /// before it parks in io_uring (0 = park at once). Lower wake-up
    /// latency and fewer syscalls per event, for a core's worth of CPU
    /// while traffic flows. At most 1 s.
    pub spin_us: u64,
    /// The former name of `spin_us` (still read; the larger one wins).
    pub spin_before_park_us: u64,
    /// How long a listener's bind is retried while its address is in use
    /// (0 = once): a process killed with SIGKILL leaves its io_uring-held
    /// sockets listening for a few milliseconds, and a supervisor's
    /// immediate restart must not fail on them.
    pub bind_retry_ms: u64,
    /// A shard whose connections fell by an eighth (or more) of their peak
    /// returns freed memory to the OS, at most this often; 0 = never.
    pub memory_trim_ms: u64,
    /// Run the shards on this NUMA node's cores (within `cores` when set)
    /// and prefer its memory (`src/shard/numa.rs`); unset = no placement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    pub tcp_nodelay: bool,
    /// SO_SNDBUF of client connections; 0 keeps the kernel's autotuning.
    /// Bounds the bytes a slow client leaves in the kernel (and the time a
    /// final NATS error takes to reach it).
    pub send_buffer_bytes: usize,
    /// SO_RCVBUF of client connections; 0 keeps the kernel's autotuning.
    pub recv_buffer_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
    /// "text" (human-readable lines) or "json" (one object a line); both
    /// on stderr. A change needs a restart.
    pub format: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: "127.0.0.1:1883".into(),
            shard_listeners: false,
            shard_port_base: 0,
            topic_alias_maximum: 64,
            keep_alive_max_s: 0,
            server_keep_alive_s: None,
            sys_interval_s: 0,
            tls: MqttTlsConfig::default(),
            connections_max: 0,
            ws: Default::default(),
        }
    }
}

impl RuntimeConfig {
    /// How long an idle executor spins before it parks.
    pub fn spin(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.spin_us.max(self.spin_before_park_us))
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: 0,
            cores: String::new(),
            io_memory_bytes: 512 * 1024,
            ring_capacity: 4096,
            match_cache_entries_max: 4096,
            shutdown_flush_ms_max: 2000,
            spin_us: 0,
            spin_before_park_us: 0,
            bind_retry_ms: 5000,
            memory_trim_ms: 1000,
            numa_node: None,
        }
    }
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            tcp_nodelay: true,
            send_buffer_bytes: 0,
            recv_buffer_bytes: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// How a client listener asks for client certificates (`client_auth`),
/// when `client_ca` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No certificate asked for (the CA is not used).
    None,
    /// Asked for; a client without one is served, one with a certificate
    /// the CA did not sign is refused.
    Optional,
    /// A client without a certificate signed by the CA is refused.
    #[default]
    Required,
}

/// What a verified client certificate names (`identity`): the user the
/// connection authenticates as, as mosquitto's `use_identity_as_username`
/// and nats-server's `verify_and_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsIdentity {
    /// The certificate names no one.
    #[default]
    None,
    /// The subject's common name.
    Cn,
    /// The first DNS name, else the first email address, of the subject
    /// alternative names.
    San,
}

/// `[mqtt.tls]`: MQTT over TLS on a listener of its own (`listen`), the
/// same sessions as the plain listener. Paths are PEM files.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttTlsConfig {
    /// Address of the TLS listener (conventionally 0.0.0.0:8883); empty =
    /// no TLS listener. SO_REUSEPORT across shards, as the plain one.
    pub listen: String,
    /// The server's certificate chain, leaf first.
    pub cert: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// CA certificates that sign client certificates; empty = no client
    /// certificate asked for.
    pub client_ca: String,
    pub client_auth: ClientAuth,
    pub identity: TlsIdentity,
}

/// `nats.tls.handshake_first`: false (INFO first, then the client
/// upgrades), true (the client must start TLS before anything is sent,
/// as nats-server's `handshake_first`), or a delay in ms: a client that
/// sent nothing by then gets the INFO and upgrades after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HandshakeFirst {
    Flag(bool),
    FallbackMs(u64),
}

impl Default for HandshakeFirst {
    fn default() -> Self {
        HandshakeFirst::Flag(false)
    }
}

/// `[nats.tls]`: TLS on the NATS listener, as NATS clients expect it (INFO
/// with `tls_required`, then the upgrade; or TLS first).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTlsConfig {
    pub cert: String,
    pub key: String,
    pub client_ca: String,
    pub client_auth: ClientAuth,
    pub identity: TlsIdentity,
    /// Every client must upgrade (INFO `tls_required`); false lets a
    /// client stay in plain text (INFO `tls_available`).
    pub required: bool,
    pub handshake_first: HandshakeFirst,
}
