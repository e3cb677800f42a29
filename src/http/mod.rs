//! The HTTP edge, sans-IO: HTTP/1.1 requests in, responses and Server-Sent
//! Events out, as one more session machine on the shards' connection
//! driver (`shard::driver_http` is its glue).
//!
//! What it serves (the README's "HTTP edge" section is the user's view):
//! - `POST /v1/topics/{topic}` publishes the body as one event (QoS 0 or
//!   1, retained or not); `202 Accepted` is answered only once the router
//!   took responsibility for it (with persistence on, once it is durable:
//!   where an MQTT PUBACK would go);
//! - `GET /v1/subscribe?filter=F` (or `?subject=S`, NATS form) streams the
//!   matching events as Server-Sent Events, retained messages first; with
//!   a WebSocket upgrade, as WebSocket text messages instead ([`ws`]).
//!
//! Requests: the head is parsed by `httparse`, bounded by
//! `http.head_bytes_max` and `http.headers_max` (431 past either); a body
//! must come with `Content-Length` (bounded by `http.body_bytes_max`: 413
//! from the header, before the body is read); a chunked body is refused
//! with 411 (a publish is one bounded event: its length is known before it
//! is sent). Keep-alive is HTTP/1.1's default; pipelined requests are
//! answered in order (the driver finishes one request's actions before it
//! decodes the next). Every error is an RFC 9457 problem (`application/
//! problem+json`, `type`/`title`/`status`/`detail`).
//!
//! Owns: the request codec ([`request`]), responses and problems
//! ([`response`]), the event-stream rendering ([`deliver`]) and the
//! per-connection rules ([`session`]). Must not touch: sockets, the
//! router, security (the glue authenticates and authorizes, and answers
//! through the machine).

pub mod deliver;
pub mod percent;
pub mod request;
pub mod response;
pub mod session;
pub mod ws;

/// The limits one HTTP connection runs under (`[http]` and `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub head_bytes_max: usize,
    pub body_bytes_max: usize,
    pub headers_max: usize,
    pub keep_alive_idle_ms: u64,
    pub sse_heartbeat_ms: u64,
    /// Filters of one event stream at most (`limits.subscriptions_per_session_max`).
    pub filters_max: usize,
}

/// Headers one request may have at most whatever the configuration says:
/// the parser's header array lives on the stack.
pub const HEADERS_HARD_MAX: usize = 128;

impl HttpLimits {
    pub fn from_config(config: &crate::config::Config) -> HttpLimits {
        let h = &config.http;
        HttpLimits {
            head_bytes_max: h.head_bytes_max,
            body_bytes_max: h.body_bytes_max,
            headers_max: h.headers_max.min(HEADERS_HARD_MAX),
            keep_alive_idle_ms: h.keep_alive_idle_ms,
            sse_heartbeat_ms: h.sse_heartbeat_ms,
            filters_max: config.limits.subscriptions_per_session_max,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from_config(&crate::config::Config::default())
    }
}
