//! The `[http]` section: the HTTP edge on the shards (publish over
//! `POST`, subscribe with Server-Sent Events), off unless `listen` is set.
//!
//! Owns: the section's keys and defaults (pinned by `defaults_are_pinned`)
//! and their checks. Must not touch: the HTTP machine (`crate::http`),
//! which reads these through `crate::http::HttpLimits`.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP listener (SO_REUSEPORT across shards); empty =
    /// off (`--http-listen`).
    pub listen: String,
    /// Largest request head (request line and headers); a longer one is
    /// answered 431 and the connection closed.
    pub head_bytes_max: usize,
    /// Largest request body (a publish's payload, or a CloudEvents batch);
    /// a larger `Content-Length` is answered 413 before the body is read.
    pub body_bytes_max: usize,
    /// Headers in one request at most (431 past it).
    pub headers_max: usize,
    /// Connections at once on the HTTP listener (all shards; 0 = only
    /// `limits.connections_max`).
    pub connections_max: usize,
    /// A keep-alive connection with no request for this long is closed
    /// (an event stream is not: its heartbeats keep it).
    pub keep_alive_idle_ms: u64,
    /// Interval of the comment lines (`: heartbeat`) on an event stream,
    /// which keep proxies from closing a quiet stream.
    pub sse_heartbeat_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: String::new(),
            head_bytes_max: 8192,
            body_bytes_max: 1024 * 1024,
            headers_max: 64,
            connections_max: 0,
            keep_alive_idle_ms: 60_000,
            sse_heartbeat_ms: 15_000,
        }
    }
}

impl HttpConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The checks of the section's bounds (the listener's address is
    /// resolved with the others).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.head_bytes_max < 256 {
            return Err(invalid("http.head_bytes_max", "must be at least 256"));
        }
        if self.headers_max == 0 {
            return Err(invalid("http.headers_max", "must be at least 1"));
        }
        if self.keep_alive_idle_ms == 0 {
            return Err(invalid("http.keep_alive_idle_ms", "must be at least 1"));
        }
        if self.sse_heartbeat_ms == 0 {
            return Err(invalid("http.sse_heartbeat_ms", "must be at least 1"));
        }
        Ok(())
    }
}
