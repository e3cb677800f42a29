//! Configuration: every limit and knob of the router in one place, with its
//! default, loaded from an optional TOML file and overridden by CLI flags.
//!
//! Owns: parsing and validation. Must not touch: sockets, executors. Every
//! error names the offending key (`limits.queued_bytes_max`) or flag, so the
//! CLI can print it on one line and exit 2. Defaults are pinned by a test;
//! the README's configuration reference lists the same keys.
//!
//! Files: this one loads, applies flags, resolves and names the errors;
//! [`limits`] holds every bound, [`sections`] the protocol, runtime, socket,
//! log and admin sections, [`mesh`] the mesh section and its checks,
//! [`persistence`] the durable log's section and its checks, [`tls`] loads
//! the mesh's TLS material (the config refuses bad files at load, so
//! `check-config` and `run` refuse the same ones).

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

/// `[security]` is compiled by `crate::security` (its own error names the
/// key, as every other check here does).
impl From<crate::security::InvalidConfig> for ConfigError {
    fn from(e: crate::security::InvalidConfig) -> ConfigError {
        ConfigError::Invalid {
            key: e.key,
            reason: e.reason,
        }
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

mod amqp;
mod http;
mod limits;
mod mesh;
mod persistence;
mod sections;
mod shm;
mod tls;
mod trace;
mod ws;

pub use crate::security::config::{
    AccountConfig, GroupConfig, ImportConfig, RulesConfig, SecurityConfig, UserConfig,
};
pub use amqp::{AmqpConfig, AMQP_FRAME_SIZE_MIN};
pub use http::HttpConfig;
pub use limits::{Limits, SlowConsumerPolicy, MQTT_PACKET_BYTES_MAX};
pub use mesh::{
    valid_router_id, MeshConfig, MeshResolved, MeshTlsConfig, PolicyConfig, ROUTER_ID_MAX,
};
pub use persistence::{Persistence, SyncPolicy, RECORD_BYTES_MAX};
pub use sections::{AdminConfig, LogConfig, MqttConfig, NatsConfig, RuntimeConfig, SocketConfig};
pub use sections::{ClientAuth, HandshakeFirst, MqttTlsConfig, NatsTlsConfig, TlsIdentity};
pub use shm::{ShmConfig, SHM_SPIN_US_MAX};
pub use tls::{ClientTls, MeshTls};
pub use trace::TraceConfig;
pub use ws::{MqttWsConfig, NatsWsConfig, WsConfig, WsSide};

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
    pub security: SecurityConfig,
    pub persistence: Persistence,
    pub http: HttpConfig,
    pub amqp: AmqpConfig,
    pub trace: TraceConfig,
    pub shm: ShmConfig,
}

/// Lowest `admin.console_interval_ms`: rates are counter deltas over the
/// interval, and the counters are published on a 50 ms tick: shorter
/// windows would jitter by half their length.
pub const CONSOLE_INTERVAL_MS_MIN: usize = 100;
/// Highest `admin.console_topics_max`.
pub const CONSOLE_TOPICS_MAX: usize = 256;

/// Sections whose keys a SIGHUP reload applies; the others need a restart.
/// (`mqtt.tls.listen` needs a restart too: the reload skips it.)
pub const RELOADABLE_SECTIONS: &[&str] = &["limits", "log", "security", "mqtt.tls", "nats.tls"];

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
            // A key set only in the new file (an Option such as
            // runtime.numa_node, unset before).
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                });
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
    pub mqtt_tls_listen: Option<String>,
    pub nats_listen: Option<String>,
    /// `--http-listen`: `http.listen`.
    pub http_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub shards: Option<usize>,
    pub cores: Option<String>,
    /// `--numa-node`: `runtime.numa_node`.
    pub numa_node: Option<usize>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    pub router_id: Option<String>,
    pub mesh_name: Option<String>,
    pub mesh_listen: Option<String>,
    /// Added to `mesh.links`.
    pub links: Vec<String>,
    pub bridge_cores: Option<String>,
    /// `--persistence-dir`: `persistence.dir`.
    pub persistence_dir: Option<String>,
    /// `--mqtt-ws-listen`: `mqtt.ws.listen`.
    pub mqtt_ws_listen: Option<String>,
    /// `--nats-ws-listen`: `nats.ws.listen`.
    pub nats_ws_listen: Option<String>,
    /// `--amqp-listen`: `amqp.listen`.
    pub amqp_listen: Option<String>,
    /// `--shm-listen`: `shm.listen`.
    pub shm_listen: Option<String>,
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
    /// The HTTP edge's listener; None when `http.listen` is empty.
    pub http_listen: Option<SocketAddr>,
    /// Core of each shard, by shard index.
    pub shard_cores: Vec<usize>,
    /// None when the mesh is off.
    pub mesh: Option<MeshResolved>,
    /// The client listeners' TLS (`[mqtt.tls]`, `[nats.tls]`): None = off.
    pub tls: ClientTlsResolved,
    /// The MQTT over WebSocket listener (`mqtt.ws.listen`), when set.
    pub mqtt_ws_listen: Option<SocketAddr>,
    /// The NATS over WebSocket listener (`nats.ws.listen`), when set.
    pub nats_ws_listen: Option<SocketAddr>,
    /// The AMQP 1.0 listener (`amqp.listen`), when set.
    pub amqp_listen: Option<SocketAddr>,
}

/// The client listeners' loaded TLS material.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsResolved {
    /// The MQTT TLS listener's address and material, when `mqtt.tls.listen`
    /// is set.
    pub mqtt: Option<(SocketAddr, ClientTls)>,
    pub nats: Option<ClientTls>,
    /// `[mqtt.tls]`'s material for wss on the MQTT WebSocket listener
    /// (`mqtt.ws.tls`), which needs no MQTT TLS listener.
    pub mqtt_ws: Option<ClientTls>,
    /// `[mqtt.tls]`'s material for the AMQP listener (`amqp.tls`).
    pub amqp: Option<ClientTls>,
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
        if let Some(v) = &o.mqtt_tls_listen {
            self.mqtt.tls.listen = v.clone();
        }
        if let Some(v) = &o.admin_listen {
            self.admin.listen = v.clone();
        }
        if let Some(v) = &o.nats_listen {
            self.nats.listen = v.clone();
        }
        if let Some(v) = &o.http_listen {
            self.http.listen = v.clone();
        }
        if let Some(v) = o.shards {
            self.runtime.shards = v;
        }
        if let Some(v) = &o.cores {
            self.runtime.cores = v.clone();
        }
        if let Some(v) = o.numa_node {
            self.runtime.numa_node = Some(v);
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
        if let Some(v) = &o.persistence_dir {
            self.persistence.dir = v.clone();
        }
        if let Some(v) = &o.mqtt_ws_listen {
            self.mqtt.ws.listen = v.clone();
        }
        if let Some(v) = &o.nats_ws_listen {
            self.nats.ws.listen = v.clone();
        }
        if let Some(v) = &o.amqp_listen {
            self.amqp.listen = v.clone();
        }
        if let Some(v) = &o.shm_listen {
            self.shm.listen = v.clone();
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
        let http_listen = if self.http.enabled() {
            self.http.check()?;
            Some(listen_addr("http.listen", &self.http.listen)?)
        } else {
            None
        };
        self.amqp.check()?;
        self.trace.check()?;
        self.shm.check()?;
        let amqp_listen = if self.amqp.enabled() {
            Some(listen_addr("amqp.listen", &self.amqp.listen)?)
        } else {
            None
        };
        let admin_listen = if self.admin.enabled {
            Some(listen_addr("admin.listen", &self.admin.listen)?)
        } else {
            None
        };
        if let Some(addr) = admin_listen {
            // The views name every client and its address: off loopback,
            // only for whoever holds the token.
            if !addr.ip().is_loopback() && self.admin.token.is_empty() {
                return Err(invalid(
                    "admin.token",
                    format!(
                        "must be set: the admin endpoint listens on {addr}, not a loopback address"
                    ),
                ));
            }
        }
        let cores = if self.runtime.cores.trim().is_empty() {
            if online.is_empty() {
                vec![0]
            } else {
                online.to_vec()
            }
        } else {
            parse_cpu_list(&self.runtime.cores).map_err(|r| invalid("runtime.cores", r))?
        };
        // Whether the node exists is the start's question (shard::numa reads
        // the machine's topology); 1024 is the kernel's largest node count.
        if let Some(node) = self.runtime.numa_node.filter(|n| *n >= 1024) {
            return Err(invalid(
                "runtime.numa_node",
                format!("{node} is out of range (nodes are numbered below 1024)"),
            ));
        }
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
        if l.packet_bytes_max > MQTT_PACKET_BYTES_MAX {
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
        for (key, us) in [
            ("runtime.spin_us", self.runtime.spin_us),
            (
                "runtime.spin_before_park_us",
                self.runtime.spin_before_park_us,
            ),
        ] {
            if us > 1_000_000 {
                return Err(invalid(key, "exceeds 1000000 (1 s)"));
            }
        }
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
        at_least(
            "admin.console_interval_ms",
            self.admin.console_interval_ms as usize,
            CONSOLE_INTERVAL_MS_MIN,
        )?;
        at_least(
            "admin.console_streams_max",
            self.admin.console_streams_max,
            1,
        )?;
        // Room for a few states of a large mesh.
        at_least(
            "admin.console_stream_bytes_max",
            self.admin.console_stream_bytes_max,
            16 * 1024,
        )?;
        at_least("admin.console_topics_max", self.admin.console_topics_max, 1)?;
        // Bounds the state's size (each topic at most
        // `admin::console::TEXT_BYTES_MAX` bytes) and each shard's scan.
        if self.admin.console_topics_max > CONSOLE_TOPICS_MAX {
            return Err(invalid(
                "admin.console_topics_max",
                format!(
                    "{} exceeds the maximum of {CONSOLE_TOPICS_MAX}",
                    self.admin.console_topics_max
                ),
            ));
        }
        let sec = &self.security;
        at_least("security.password_checks_max", sec.password_checks_max, 1)?;
        at_least("security.auth_sources_max", sec.auth_sources_max, 1)?;
        at_least(
            "security.auth_failure_window_ms",
            sec.auth_failure_window_ms as usize,
            1,
        )?;
        crate::security::Security::from_config(&self.security)?;
        self.persistence.check(l.packet_bytes_max)?;
        let mqtt_ws_listen = self.mqtt.ws.resolve()?;
        let nats_ws_listen = self.nats.ws.resolve()?;
        if nats_ws_listen.is_some() && !self.nats.enabled {
            return Err(invalid(
                "nats.ws.listen",
                "NATS is disabled (nats.enabled = false)",
            ));
        }
        self.refuse_open_listeners(
            mqtt_listen,
            nats_listen,
            http_listen,
            mqtt_ws_listen,
            nats_ws_listen,
            amqp_listen,
        )?;
        let mesh = self.resolve_mesh()?;
        let tls = self.resolve_client_tls()?;
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
            http_listen,
            shard_cores,
            mesh,
            tls,
            mqtt_ws_listen,
            nats_ws_listen,
            amqp_listen,
        })
    }

    /// Loads `[mqtt.tls]` and `[nats.tls]` (files read and checked now).
    pub fn resolve_client_tls(&self) -> Result<ClientTlsResolved, ConfigError> {
        let m = &self.mqtt.tls;
        let mqtt = ClientTls::load(&tls::ClientTlsKeys {
            section: "mqtt.tls",
            cert: ("mqtt.tls.cert", &m.cert),
            key: ("mqtt.tls.key", &m.key),
            client_ca: ("mqtt.tls.client_ca", &m.client_ca),
            client_auth: ("mqtt.tls.client_auth", m.client_auth),
            identity: ("mqtt.tls.identity", m.identity),
        })?;
        let mqtt_ws = match (self.mqtt.ws.tls, &mqtt) {
            (true, None) => {
                return Err(invalid(
                    "mqtt.ws.tls",
                    "needs mqtt.tls.cert and mqtt.tls.key",
                ))
            }
            (true, Some(t)) => Some(t.clone()),
            (false, _) => None,
        };
        let amqp = match (self.amqp.tls, &mqtt) {
            (true, None) => {
                return Err(invalid("amqp.tls", "needs mqtt.tls.cert and mqtt.tls.key"))
            }
            (true, Some(t)) => Some(t.clone()),
            (false, _) => None,
        };
        let mqtt = match (m.listen.is_empty(), mqtt) {
            (true, None) => None,
            (true, Some(_)) if mqtt_ws.is_some() || amqp.is_some() => None,
            (false, Some(t)) => Some((listen_addr("mqtt.tls.listen", &m.listen)?, t)),
            (true, Some(_)) => {
                return Err(invalid(
                    "mqtt.tls.listen",
                    "mqtt.tls.cert is set but no TLS listener (e.g. 0.0.0.0:8883)",
                ))
            }
            (false, None) => {
                return Err(invalid(
                    "mqtt.tls.cert",
                    "a TLS listener (mqtt.tls.listen) needs mqtt.tls.cert and mqtt.tls.key",
                ))
            }
        };
        let n = &self.nats.tls;
        let nats = ClientTls::load(&tls::ClientTlsKeys {
            section: "nats.tls",
            cert: ("nats.tls.cert", &n.cert),
            key: ("nats.tls.key", &n.key),
            client_ca: ("nats.tls.client_ca", &n.client_ca),
            client_auth: ("nats.tls.client_auth", n.client_auth),
            identity: ("nats.tls.identity", n.identity),
        })?;
        if nats.is_none() && (n.required || n.handshake_first != HandshakeFirst::Flag(false)) {
            return Err(invalid(
                if n.required {
                    "nats.tls.required"
                } else {
                    "nats.tls.handshake_first"
                },
                "needs nats.tls.cert and nats.tls.key",
            ));
        }
        if self.nats.ws.tls && nats.is_none() {
            return Err(invalid(
                "nats.ws.tls",
                "needs nats.tls.cert and nats.tls.key",
            ));
        }
        Ok(ClientTlsResolved {
            mqtt,
            nats,
            mqtt_ws,
            amqp,
        })
    }
}

impl Config {
    /// The safe default (mosquitto 2's): with `security.allow_anonymous`
    /// unset and no user configured, anonymous clients are accepted on
    /// loopback listeners only, so a client listener on any other address
    /// would be open to anyone or to no one: refuse to start, naming the
    /// key that decides. (Shard listeners share their protocol's address.)
    fn refuse_open_listeners(
        &self,
        mqtt: SocketAddr,
        nats: Option<SocketAddr>,
        http: Option<SocketAddr>,
        mqtt_ws: Option<SocketAddr>,
        nats_ws: Option<SocketAddr>,
        amqp: Option<SocketAddr>,
    ) -> Result<(), ConfigError> {
        let s = &self.security;
        if s.allow_anonymous.is_some() || !s.users.is_empty() {
            return Ok(());
        }
        let listeners = [
            ("mqtt.listen", Some(mqtt)),
            ("nats.listen", nats),
            ("http.listen", http),
            ("mqtt.ws.listen", mqtt_ws),
            ("nats.ws.listen", nats_ws),
            ("amqp.listen", amqp),
        ];
        for (key, addr) in listeners {
            if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                return Err(invalid(
                    "security.allow_anonymous",
                    format!(
                        "{key} = {addr} is not a loopback address and no [[security.users]] \
                         are configured: set security.allow_anonymous = true to accept \
                         anonymous clients there, or configure users"
                    ),
                ));
            }
        }
        Ok(())
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
mod tests;
