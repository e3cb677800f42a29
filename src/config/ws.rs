//! `[mqtt.ws]` and `[nats.ws]`: MQTT and NATS over WebSocket, each on its
//! own listener (off by default), served by `shard::transport_ws`.
//!
//! Owns: the keys of one WebSocket listener and their checks. Must not
//! touch: the TLS material (`tls = true` serves wss with the protocol's
//! `[mqtt.tls]` / `[nats.tls]` certificate and key, loaded in `tls.rs`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[mqtt.ws]`.
pub type MqttWsConfig = WsConfig<MqttSide>;
/// `[nats.ws]`.
pub type NatsWsConfig = WsConfig<NatsSide>;

/// What tells the two sections apart: their default paths and the names
/// their errors give.
pub trait WsSide {
    const SECTION: &'static str;
    const PATH: &'static str;
    const KEYS: [&'static str; 7];
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MqttSide;
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NatsSide;

impl WsSide for MqttSide {
    const SECTION: &'static str = "mqtt.ws";
    /// As mosquitto and MQTT.js use.
    const PATH: &'static str = "/mqtt";
    const KEYS: [&'static str; 7] = MQTT_KEYS;
}

impl WsSide for NatsSide {
    const SECTION: &'static str = "nats.ws";
    /// Where nats.ws and the NATS clients connect for `ws://host:port`.
    const PATH: &'static str = "/";
    const KEYS: [&'static str; 7] = NATS_KEYS;
}

/// One WebSocket listener's keys.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default, bound = "S: WsSide")]
pub struct WsConfig<S: WsSide> {
    #[serde(skip)]
    side: std::marker::PhantomData<S>,
    /// Address of the listener (every shard listens, SO_REUSEPORT);
    /// empty = off.
    pub listen: String,
    /// The request path served; another path is answered 404.
    pub path: String,
    /// Serve wss: TLS with the protocol's `[mqtt.tls]` / `[nats.tls]`
    /// certificate and key, then WebSocket inside it.
    pub tls: bool,
    /// Largest upgrade request head (request line and headers), in bytes;
    /// a larger one is answered 431.
    pub handshake_bytes_max: usize,
    /// Largest payload of one frame a client sends; a larger one closes the
    /// connection with 1009 (checked from the frame header).
    pub frame_bytes_max: usize,
    /// Largest message (its frames together) a client sends; closes with
    /// 1009. The defaults sit above the largest packet
    /// (`limits.packet_bytes_max`, `nats.payload_bytes_max`) so that the
    /// protocol's own limit answers first.
    pub message_bytes_max: usize,
    /// Bytes of each connection's WebSocket read buffer (frames are
    /// decoded from it, payloads handed on in place).
    pub read_buffer_bytes: usize,
    /// Largest frame the server writes: a bigger write batch goes out as
    /// several frames. Bounds the transport's write buffer per connection.
    pub write_frame_bytes_max: usize,
}

impl<S: WsSide> Default for WsConfig<S> {
    /// Off; path `/mqtt` for MQTT, `/` for NATS.
    fn default() -> Self {
        WsConfig {
            side: std::marker::PhantomData,
            listen: String::new(),
            path: S::PATH.into(),
            tls: false,
            handshake_bytes_max: 8192,
            frame_bytes_max: 2 << 20,
            message_bytes_max: 2 << 20,
            read_buffer_bytes: 16 * 1024,
            write_frame_bytes_max: 64 * 1024,
        }
    }
}

impl<S: WsSide> WsConfig<S> {
    /// The listener's address, None when off; the keys checked.
    pub fn resolve(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let key = |name: &str| -> &'static str {
            S::KEYS
                .iter()
                .find(|k| k[S::SECTION.len() + 1..] == *name)
                .copied()
                .unwrap_or(S::SECTION)
        };
        if !self.path.starts_with('/') || self.path.contains(['?', '#', ' ']) {
            return Err(ConfigError::Invalid {
                key: key("path"),
                reason: format!("'{}' is not a path (it starts with '/')", self.path),
            });
        }
        // A request head holds at least the request line and the four
        // headers of an upgrade; a control frame (139 bytes) must fit the
        // read buffer whole.
        let floors = [
            ("handshake_bytes_max", self.handshake_bytes_max, 256),
            ("frame_bytes_max", self.frame_bytes_max, 1),
            ("message_bytes_max", self.message_bytes_max, 1),
            ("read_buffer_bytes", self.read_buffer_bytes, 256),
            ("write_frame_bytes_max", self.write_frame_bytes_max, 64),
        ];
        for (name, value, min) in floors {
            super::at_least(key(name), value as u64, min)?;
        }
        if self.listen.is_empty() {
            return Ok(None);
        }
        super::listen_addr(key("listen"), &self.listen).map(Some)
    }
}

/// The full names of each section's keys (errors name them).
const MQTT_KEYS: [&str; 7] = [
    "mqtt.ws.listen",
    "mqtt.ws.path",
    "mqtt.ws.handshake_bytes_max",
    "mqtt.ws.frame_bytes_max",
    "mqtt.ws.message_bytes_max",
    "mqtt.ws.read_buffer_bytes",
    "mqtt.ws.write_frame_bytes_max",
];
const NATS_KEYS: [&str; 7] = [
    "nats.ws.listen",
    "nats.ws.path",
    "nats.ws.handshake_bytes_max",
    "nats.ws.frame_bytes_max",
    "nats.ws.message_bytes_max",
    "nats.ws.read_buffer_bytes",
    "nats.ws.write_frame_bytes_max",
];
