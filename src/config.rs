//! Configuration: every limit and knob of the router in one place, with its
//! default, loaded from an optional TOML file and overridden by CLI flags.
//!
//! Owns: parsing and validation. Must not touch: sockets, executors. Every
//! error names the offending key (`limits.queued_bytes_max`) or flag, so the
//! CLI can print it on one line and exit 2. Defaults are pinned by a test;
//! the README's configuration reference lists the same keys.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// What happens to an at-most-once (QoS 0) event when a subscriber's queue
/// is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Drop the event for that subscriber and count it.
    Drop,
    /// Disconnect the subscriber.
    Disconnect,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mqtt: MqttConfig,
    pub nats: NatsConfig,
    pub runtime: RuntimeConfig,
    pub limits: Limits,
    pub socket: SocketConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub mesh: MeshConfig,
}

/// The mesh: this router's identity, its links to other routers, and what
/// may cross them. On when `listen` is set or `links` is not empty.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// This router's id in the mesh (1 to 64 printable ASCII characters, no
    /// spaces); empty = the host name.
    pub router_id: String,
    /// The mesh's name: links to routers of another mesh are refused.
    pub name: String,
    /// Where peers connect (IP:port; port 0 picks a free port); empty =
    /// accept no links.
    pub listen: String,
    /// Peers to dial (IP:port), redialled with backoff when a link drops.
    pub links: Vec<String>,
    /// Core of the bridge executor that runs the links; empty = the first
    /// shard's core. One bridge executor in this version.
    pub bridge_cores: String,
    /// When the bridge's core is the first shard's (the default), run the
    /// bridge as tasks of that shard's executor instead of a thread of its
    /// own: no thread hand-off (wake-up, context switch) between that
    /// shard and the links. false = always a separate executor.
    pub bridge_in_shard: bool,
    /// A PING on every link this often (its PONG gives the round-trip time).
    pub keepalive_ms: u64,
    /// A link silent this long is dropped (and redialled if dialled).
    pub link_timeout_ms: u64,
    /// After a link drops, routers reachable only through it stay
    /// reachable this long: their QoS 1 events wait (up to `unacked_max`)
    /// for the peer's return. 0 = forget them at once.
    pub link_hold_ms: u64,
    /// Longest wait for a TCP connection and the peer's hello.
    pub connect_timeout_ms: u64,
    /// Redial backoff: first wait, doubled after each failure up to the max.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Encoded frames waiting for one link's socket; past it, QoS 0 events
    /// for that link are dropped and counted (interest is never dropped).
    pub outbound_bytes_max: usize,
    /// QoS 1 events sent to one peer and not yet acknowledged, kept for
    /// resending after a reconnection; past it the oldest are dropped and
    /// counted.
    pub unacked_max: usize,
    /// Largest link frame accepted (an event and its metadata).
    pub frame_bytes_max: usize,
    /// Distinct (filter, origin router) interest entries held.
    pub interest_entries_max: usize,
    /// Event ids remembered per origin router to drop duplicates.
    pub dedup_window: usize,
    /// Links up or connecting at once (dialled and accepted).
    pub links_max: usize,
    /// Per-peer link policy; see [`PolicyConfig`].
    pub policy: Vec<PolicyConfig>,
    /// TLS on every link; see [`MeshTlsConfig`].
    pub tls: MeshTlsConfig,
}

/// `[mesh.tls]`: with `cert`, `key` and `ca` set, every link is TLS with
/// mutual authentication against `ca` (see `mesh::tls`). Paths are PEM
/// files, relative to the working directory.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshTlsConfig {
    /// This router's certificate chain, leaf first.
    pub cert: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// The CA certificates that sign every router's certificate.
    pub ca: String,
    /// The name a dialled peer's certificate must carry (a DNS name or IP);
    /// empty = the IP address dialled.
    pub server_name: String,
    /// Each end requires the peer's certificate to name the router id of
    /// its hello (as a DNS subject alternative name).
    pub router_id_in_cert: bool,
}

/// What may cross the links to one peer (`peer` = its router id, or `*` for
/// every peer without an entry of its own). Deny wins over allow; an empty
/// allow list allows everything not denied.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub peer: String,
    pub export_allow: Vec<String>,
    pub export_deny: Vec<String>,
    pub import_allow: Vec<String>,
    pub import_deny: Vec<String>,
    /// Prepended to the topic of every event arriving from the peer
    /// (ends with '/', no wildcard); empty = none.
    pub import_prefix: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            router_id: String::new(),
            name: "weft".into(),
            listen: String::new(),
            links: Vec::new(),
            bridge_cores: String::new(),
            bridge_in_shard: true,
            keepalive_ms: 1000,
            link_timeout_ms: 5000,
            link_hold_ms: 10_000,
            connect_timeout_ms: 2000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 2000,
            outbound_bytes_max: 16 * 1024 * 1024,
            unacked_max: 65_536,
            frame_bytes_max: 4 * 1024 * 1024,
            interest_entries_max: 100_000,
            dedup_window: 65_536,
            links_max: 64,
            policy: Vec::new(),
            tls: MeshTlsConfig::default(),
        }
    }
}

/// The mesh part of a checked configuration.
#[derive(Debug, Clone)]
pub struct MeshResolved {
    pub router_id: String,
    pub listen: Option<SocketAddr>,
    /// Peers to dial: IP:PORT, or HOST:PORT resolved again at every dial.
    pub links: Vec<String>,
    pub bridge_core: Option<usize>,
    /// None = plain TCP links.
    pub tls: Option<crate::mesh::tls::MeshTls>,
}

impl MeshConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty() || !self.links.is_empty()
    }

    /// The policy for links to `peer`: its own entry, else `*`'s, else none.
    pub fn policy_for(&self, peer: &str) -> Option<&PolicyConfig> {
        self.policy
            .iter()
            .find(|p| p.peer == peer)
            .or_else(|| self.policy.iter().find(|p| p.peer == "*"))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| crate::mesh::link::valid_router_id(h))
        .unwrap_or_else(|| "weft".into())
}

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
    /// Busy-poll this long before an idle shard sleeps (0 = never spin):
    /// lower wake-up latency for a core's worth of CPU.
    pub spin_before_park_us: u64,
    /// How long a listener's bind is retried while its address is in use
    /// (0 = once): a process killed with SIGKILL leaves its io_uring-held
    /// sockets listening for a few milliseconds, and a supervisor's
    /// immediate restart must not fail on them.
    pub bind_retry_ms: u64,
    /// A shard whose connections fell by an eighth (or more) of their peak
    /// returns freed memory to the OS, at most this often; 0 = never.
    pub memory_trim_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections across all shards; more are accepted and closed.
    pub connections_max: usize,
    /// Largest MQTT packet accepted, fixed header included.
    pub packet_bytes_max: usize,
    /// Topic filters in one SUBSCRIBE / UNSUBSCRIBE.
    pub filters_per_packet_max: usize,
    /// Subscriptions one session may hold.
    pub subscriptions_per_session_max: usize,
    pub topic_bytes_max: usize,
    pub topic_levels_max: usize,
    pub client_id_bytes_max: usize,
    /// Outbound queue of a session: beyond these, QoS 0 events meet the
    /// slow-consumer policy and QoS 1 events pause their publisher.
    pub queued_messages_max: usize,
    pub queued_bytes_max: usize,
    /// Hard cap for QoS 1 events queued while their publishers are paused;
    /// beyond it the subscriber is disconnected as a slow consumer.
    pub qos1_queued_messages_max: usize,
    pub qos1_queued_bytes_max: usize,
    /// Longest a QoS 1 publisher is paused for one slow subscriber.
    pub backpressure_pause_ms_max: u64,
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// Unacknowledged QoS 1 (and QoS 2 inbound) messages per session.
    pub inflight_max: usize,
    /// Time allowed between TCP accept and CONNECT.
    pub connect_timeout_ms: u64,
    /// Largest read buffer of one connection (grows from 1 KiB on demand).
    pub read_buffer_bytes_max: usize,
    /// Bytes gathered into one write syscall.
    pub write_batch_bytes_max: usize,
    /// How long a persistent (clean session 0) session is kept without a
    /// connection.
    pub offline_session_expiry_s: u64,
    /// Retained messages kept (topics); past it a new topic is refused.
    pub retained_messages_max: usize,
    /// Payload bytes of all retained messages.
    pub retained_bytes_max: usize,
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
        }
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
            spin_before_park_us: 0,
            bind_retry_ms: 5000,
            memory_trim_ms: 1000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 100_000,
            packet_bytes_max: 1024 * 1024,
            filters_per_packet_max: 64,
            subscriptions_per_session_max: 100_000,
            topic_bytes_max: 1024,
            topic_levels_max: 32,
            client_id_bytes_max: 256,
            queued_messages_max: 100_000,
            queued_bytes_max: 16 * 1024 * 1024,
            qos1_queued_messages_max: 200_000,
            qos1_queued_bytes_max: 32 * 1024 * 1024,
            backpressure_pause_ms_max: 5000,
            slow_consumer_policy: SlowConsumerPolicy::Drop,
            inflight_max: 1024,
            connect_timeout_ms: 10_000,
            read_buffer_bytes_max: 64 * 1024,
            write_batch_bytes_max: 64 * 1024,
            offline_session_expiry_s: 3600,
            retained_messages_max: 100_000,
            retained_bytes_max: 64 * 1024 * 1024,
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

/// Sections whose keys a SIGHUP reload applies; the others need a restart.
pub const RELOADABLE_SECTIONS: &[&str] = &["limits", "log"];

/// The dotted keys whose values differ between two configurations.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        return vec!["<unserializable>".into()];
    };
    let mut out = Vec::new();
    diff("", &a, &b, &mut out);
    out
}

fn diff(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            for (k, va) in x {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match y.get(k) {
                    Some(vb) => diff(&key, va, vb, out),
                    None => out.push(key),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Command-line values that override the file, by the flag's name.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub mqtt_listen: Option<String>,
    pub nats_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub shards: Option<usize>,
    pub cores: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub router_id: Option<String>,
    pub mesh_name: Option<String>,
    pub mesh_listen: Option<String>,
    /// Added to `mesh.links`.
    pub links: Vec<String>,
    pub bridge_cores: Option<String>,
}

/// A checked configuration with everything derived that the runtime needs.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub mqtt_listen: SocketAddr,
    /// None when NATS is disabled.
    pub nats_listen: Option<SocketAddr>,
    /// None when the admin endpoint is disabled.
    pub admin_listen: Option<SocketAddr>,
    /// Core of each shard, by shard index.
    pub shard_cores: Vec<usize>,
    /// None when the mesh is off.
    pub mesh: Option<MeshResolved>,
}

impl Config {
    pub fn from_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            // toml's message spans lines (a caret under the key); the CLI
            // prints one line.
            reason: one_line(&e.to_string()),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, &shown)
    }

    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.mqtt_listen {
            self.mqtt.listen = v.clone();
        }
        if let Some(v) = &o.admin_listen {
            self.admin.listen = v.clone();
        }
        if let Some(v) = &o.nats_listen {
            self.nats.listen = v.clone();
        }
        if let Some(v) = o.shards {
            self.runtime.shards = v;
        }
        if let Some(v) = &o.cores {
            self.runtime.cores = v.clone();
        }
        if let Some(v) = &o.log_level {
            self.log.level = v.clone();
        }
        if let Some(v) = &o.log_format {
            self.log.format = v.clone();
        }
        if let Some(v) = &o.router_id {
            self.mesh.router_id = v.clone();
        }
        if let Some(v) = &o.mesh_name {
            self.mesh.name = v.clone();
        }
        if let Some(v) = &o.mesh_listen {
            self.mesh.listen = v.clone();
        }
        for l in &o.links {
            if !self.mesh.links.contains(l) {
                self.mesh.links.push(l.clone());
            }
        }
        if let Some(v) = &o.bridge_cores {
            self.mesh.bridge_cores = v.clone();
        }
    }

    /// Validates every key and derives the shard placement. `online` is the
    /// list of cores this process may use (for the empty `cores` default).
    pub fn resolve(mut self, online: &[usize]) -> Result<Resolved, ConfigError> {
        let mqtt_listen = listen_addr("mqtt.listen", &self.mqtt.listen)?;
        let nats_listen = if self.nats.enabled {
            Some(listen_addr("nats.listen", &self.nats.listen)?)
        } else {
            None
        };
        let admin_listen = if self.admin.enabled {
            Some(listen_addr("admin.listen", &self.admin.listen)?)
        } else {
            None
        };
        let cores = if self.runtime.cores.trim().is_empty() {
            if online.is_empty() {
                vec![0]
            } else {
                online.to_vec()
            }
        } else {
            parse_cpu_list(&self.runtime.cores).map_err(|r| invalid("runtime.cores", r))?
        };
        let shards = if self.runtime.shards == 0 {
            cores.len()
        } else {
            self.runtime.shards
        };
        if shards > crate::topic::trie::SHARDS_MAX {
            return Err(invalid(
                "runtime.shards",
                format!(
                    "{shards} exceeds the maximum of {}",
                    crate::topic::trie::SHARDS_MAX
                ),
            ));
        }
        let shard_cores = (0..shards).map(|i| cores[i % cores.len()]).collect();
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(invalid(
                "log.level",
                format!(
                    "'{}' is not one of error, warn, info, debug, trace",
                    self.log.level
                ),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!("'{}' is not one of text, json", self.log.format),
            ));
        }
        if self.mqtt.server_keep_alive_s.is_some() {
            return Err(invalid(
                "mqtt.server_keep_alive_s",
                "replaced by mqtt.keep_alive_max_s, a cap on the keep-alive clients ask for \
                 (one imposed on every MQTT 5 client held short keep-alives long)",
            ));
        }
        let l = &self.limits;
        let at_least = |key, value: usize, min: usize| at_least(key, value as u64, min as u64);
        at_least("limits.connections_max", l.connections_max, 1)?;
        at_least("limits.packet_bytes_max", l.packet_bytes_max, 64)?;
        if l.packet_bytes_max > crate::mqtt::codec::REMAINING_LENGTH_MAX + 5 {
            return Err(invalid(
                "limits.packet_bytes_max",
                "exceeds MQTT's 256 MiB maximum",
            ));
        }
        at_least("limits.filters_per_packet_max", l.filters_per_packet_max, 1)?;
        at_least(
            "limits.subscriptions_per_session_max",
            l.subscriptions_per_session_max,
            1,
        )?;
        at_least("limits.topic_bytes_max", l.topic_bytes_max, 1)?;
        if l.topic_bytes_max > 65_535 {
            return Err(invalid(
                "limits.topic_bytes_max",
                "exceeds MQTT's 65535-byte string maximum",
            ));
        }
        at_least("limits.topic_levels_max", l.topic_levels_max, 1)?;
        at_least("limits.client_id_bytes_max", l.client_id_bytes_max, 23)?;
        at_least("limits.queued_messages_max", l.queued_messages_max, 1)?;
        at_least("limits.queued_bytes_max", l.queued_bytes_max, 1024)?;
        at_least(
            "limits.qos1_queued_messages_max",
            l.qos1_queued_messages_max,
            l.queued_messages_max,
        )?;
        at_least(
            "limits.qos1_queued_bytes_max",
            l.qos1_queued_bytes_max,
            l.queued_bytes_max,
        )?;
        at_least("limits.inflight_max", l.inflight_max, 1)?;
        if l.inflight_max > 65_535 {
            return Err(invalid("limits.inflight_max", "exceeds 65535 packet ids"));
        }
        at_least(
            "limits.read_buffer_bytes_max",
            l.read_buffer_bytes_max,
            1024,
        )?;
        at_least(
            "limits.write_batch_bytes_max",
            l.write_batch_bytes_max,
            1024,
        )?;
        at_least("runtime.ring_capacity", self.runtime.ring_capacity, 2)?;
        at_least(
            "runtime.io_memory_bytes",
            self.runtime.io_memory_bytes,
            64 * 1024,
        )?;
        let n = &self.nats;
        at_least("nats.ping_interval_ms", n.ping_interval_ms as usize, 10)?;
        at_least(
            "nats.pings_outstanding_max",
            n.pings_outstanding_max as usize,
            1,
        )?;
        at_least("nats.control_line_bytes_max", n.control_line_bytes_max, 256)?;
        at_least("nats.payload_bytes_max", n.payload_bytes_max, 1)?;
        at_least("admin.view_entries_max", self.admin.view_entries_max, 1)?;
        at_least("admin.page_size_max", self.admin.page_size_max, 1)?;
        // Room for a request line with a view's query and a few headers.
        at_least("admin.request_bytes_max", self.admin.request_bytes_max, 256)?;
        at_least(
            "admin.request_timeout_ms",
            self.admin.request_timeout_ms as usize,
            1,
        )?;
        let mesh = self.resolve_mesh()?;
        if mesh.is_some() && shards >= crate::topic::trie::SHARDS_MAX {
            return Err(invalid(
                "runtime.shards",
                format!(
                    "{shards} leaves no room for the mesh's bridge executor (at most {} shards with the mesh on)",
                    crate::topic::trie::SHARDS_MAX - 1
                ),
            ));
        }
        Ok(Resolved {
            config: self,
            mqtt_listen,
            nats_listen,
            admin_listen,
            shard_cores,
            mesh,
        })
    }

    fn resolve_mesh(&mut self) -> Result<Option<MeshResolved>, ConfigError> {
        let m = &mut self.mesh;
        if m.router_id.is_empty() {
            m.router_id = host_name();
        }
        if !crate::mesh::link::valid_router_id(&m.router_id) {
            return Err(invalid(
                "mesh.router_id",
                format!(
                    "'{}' is not 1 to {} printable ASCII characters without spaces",
                    m.router_id,
                    crate::mesh::link::ROUTER_ID_MAX
                ),
            ));
        }
        if m.name.is_empty() || m.name.len() > 256 {
            return Err(invalid("mesh.name", "must be 1 to 256 bytes"));
        }
        at_least("mesh.keepalive_ms", m.keepalive_ms, 10)?;
        at_least(
            "mesh.link_timeout_ms",
            m.link_timeout_ms,
            2 * m.keepalive_ms,
        )?;
        at_least("mesh.connect_timeout_ms", m.connect_timeout_ms, 10)?;
        at_least("mesh.reconnect_min_ms", m.reconnect_min_ms, 1)?;
        at_least(
            "mesh.reconnect_max_ms",
            m.reconnect_max_ms,
            m.reconnect_min_ms,
        )?;
        at_least(
            "mesh.outbound_bytes_max",
            m.outbound_bytes_max as u64,
            64 * 1024,
        )?;
        at_least("mesh.unacked_max", m.unacked_max as u64, 1)?;
        at_least("mesh.frame_bytes_max", m.frame_bytes_max as u64, 1024)?;
        at_least(
            "mesh.interest_entries_max",
            m.interest_entries_max as u64,
            1,
        )?;
        at_least("mesh.dedup_window", m.dedup_window as u64, 1)?;
        at_least("mesh.links_max", m.links_max as u64, 1)?;
        let topic_limits = crate::topic::TopicLimits {
            topic_bytes_max: self.limits.topic_bytes_max,
            topic_levels_max: self.limits.topic_levels_max,
        };
        let m = &self.mesh;
        let mut peers = std::collections::HashSet::new();
        for p in &m.policy {
            if p.peer.is_empty() {
                return Err(invalid(
                    "mesh.policy.peer",
                    "every [[mesh.policy]] names a peer router id (or \"*\")",
                ));
            }
            if !peers.insert(p.peer.as_str()) {
                return Err(invalid(
                    "mesh.policy.peer",
                    format!("'{}' has two [[mesh.policy]] entries", p.peer),
                ));
            }
            for (key, list) in [
                ("mesh.policy.export_allow", &p.export_allow),
                ("mesh.policy.export_deny", &p.export_deny),
                ("mesh.policy.import_allow", &p.import_allow),
                ("mesh.policy.import_deny", &p.import_deny),
            ] {
                for f in list {
                    if crate::topic::validate_filter(f, &topic_limits).is_err() {
                        return Err(invalid(
                            key,
                            format!("'{f}' (peer '{}') is not a valid topic filter", p.peer),
                        ));
                    }
                }
            }
            let prefix = &p.import_prefix;
            if !prefix.is_empty()
                && (!prefix.ends_with('/')
                    || prefix.contains(['+', '#'])
                    || crate::topic::validate_name(prefix.trim_end_matches('/'), &topic_limits)
                        .is_err())
            {
                return Err(invalid(
                    "mesh.policy.import_prefix",
                    format!(
                        "'{prefix}' (peer '{}') must be topic levels ending with '/', without wildcards",
                        p.peer
                    ),
                ));
            }
        }
        // Checked even when the mesh is off in the file (flags may turn
        // it on): `check-config` and `run` refuse the same files.
        let tls = crate::mesh::tls::MeshTls::load(&m.tls)?;
        if !m.enabled() {
            return Ok(None);
        }
        let listen = if m.listen.trim().is_empty() {
            None
        } else {
            Some(listen_addr("mesh.listen", &m.listen)?)
        };
        let mut links = Vec::new();
        for l in &m.links {
            if l.parse::<SocketAddr>().is_err() && split_host_port(l).is_none() {
                return Err(invalid(
                    "mesh.links",
                    format!("'{l}' is not a HOST:PORT address"),
                ));
            }
            links.push(l.clone());
        }
        let bridge_core = if m.bridge_cores.trim().is_empty() {
            None
        } else {
            let cores =
                parse_cpu_list(&m.bridge_cores).map_err(|r| invalid("mesh.bridge_cores", r))?;
            if cores.len() != 1 {
                return Err(invalid(
                    "mesh.bridge_cores",
                    format!(
                        "'{}' names {} cores; this version runs one bridge executor",
                        m.bridge_cores,
                        cores.len()
                    ),
                ));
            }
            Some(cores[0])
        };
        Ok(Some(MeshResolved {
            router_id: m.router_id.clone(),
            listen,
            links,
            bridge_core,
            tls,
        }))
    }
}

/// `HOST` and `PORT` of `HOST:PORT` (`[v6]:PORT` too), when the port is a
/// number and the host is not empty.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty() && !host.contains(char::is_whitespace)).then_some((host, port))
}

/// A listener's address: IP:PORT as is; a host name is resolved now (once,
/// at start) and its first address is bound.
fn listen_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    let (host, port) = split_host_port(value)
        .ok_or_else(|| invalid(key, format!("'{value}' is not a HOST:PORT address")))?;
    use std::net::ToSocketAddrs;
    match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(invalid(
            key,
            format!("host '{host}' resolves to no address"),
        )),
        Err(e) => Err(invalid(key, format!("cannot resolve host '{host}': {e}"))),
    }
}

/// `key`'s value must be at least `min`.
fn at_least(key: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        Err(invalid(
            key,
            format!("{value} is below the minimum of {min}"),
        ))
    } else {
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses "0-3", "0,2", "0-1,4" into a list of cores.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let number = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{t}' in '{s}' is not a core number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("range '{part}' is reversed"));
                }
                if b >= 4096 {
                    return Err(format!("core {b} is out of range"));
                }
                out.extend(a..=b);
            }
            None => {
                let n = number(part)?;
                if n >= 4096 {
                    return Err(format!("core {n} is out of range"));
                }
                out.push(n);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pinned() {
        let c = Config::default();
        assert_eq!(c.mqtt.listen, "127.0.0.1:1883");
        assert_eq!(c.runtime.shards, 0);
        assert_eq!(c.runtime.ring_capacity, 4096);
        assert_eq!(c.runtime.match_cache_entries_max, 4096);
        assert_eq!(c.limits.packet_bytes_max, 1 << 20);
        assert_eq!(c.limits.queued_messages_max, 100_000);
        assert_eq!(c.limits.queued_bytes_max, 16 << 20);
        assert_eq!(c.limits.inflight_max, 1024);
        assert_eq!(c.limits.slow_consumer_policy, SlowConsumerPolicy::Drop);
        assert!(c.socket.tcp_nodelay);
        assert_eq!(c.nats.listen, "127.0.0.1:4222");
        assert!(c.nats.enabled);
        assert_eq!(c.nats.ping_interval_ms, 120_000);
        assert_eq!(c.nats.pings_outstanding_max, 2);
        assert_eq!(c.nats.payload_bytes_max, 1 << 20);
        assert_eq!(c.admin.listen, "127.0.0.1:8222");
        assert_eq!(c.admin.page_size_max, 1000);
        assert_eq!(c.log.format, "text");
        assert_eq!(c.admin.request_bytes_max, 8192);
        assert_eq!(c.admin.request_timeout_ms, 2000);
        assert_eq!(c.runtime.bind_retry_ms, 5000);
        assert_eq!(c.runtime.memory_trim_ms, 1000);
        assert_eq!(c.mqtt.sys_interval_s, 0);
        assert_eq!(c.mqtt.keep_alive_max_s, 0);
        assert_eq!(c.mqtt.server_keep_alive_s, None);
        // An empty file is the defaults.
        assert_eq!(Config::from_toml("", "x").unwrap(), c);
    }

    #[test]
    fn changed_keys_are_named() {
        let a = Config::default();
        let mut b = a.clone();
        b.limits.inflight_max = 7;
        b.log.level = "debug".into();
        assert_eq!(
            changed_keys(&a, &b),
            vec!["limits.inflight_max", "log.level"]
        );
        assert!(changed_keys(&a, &a).is_empty());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_cpu_list("0,2").unwrap(), vec![0, 2]);
        assert_eq!(parse_cpu_list("0-1,4").unwrap(), vec![0, 1, 4]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn shards_share_cores() {
        let mut c = Config::default();
        c.apply(&Overrides {
            shards: Some(4),
            cores: Some("0,1".into()),
            ..Default::default()
        });
        assert_eq!(c.resolve(&[0, 1]).unwrap().shard_cores, vec![0, 1, 0, 1]);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml("[limits]\nqueued_bytes_maxx = 3\n", "f.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("queued_bytes_maxx"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        let e = Config::from_toml("[limits]\nqueued_bytes_max = \"x\"\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("queued_bytes_max"), "{e}");
        let c = Config::from_toml("[limits]\nqueued_bytes_max = 3\n", "f.toml").unwrap();
        let e = c.resolve(&[0]).unwrap_err();
        assert!(e.to_string().starts_with("limits.queued_bytes_max"), "{e}");
        let c = Config::from_toml("[mqtt]\nlisten = \"nowhere\"\n", "f.toml").unwrap();
        assert!(c
            .resolve(&[0])
            .unwrap_err()
            .to_string()
            .starts_with("mqtt.listen"));
    }
}
