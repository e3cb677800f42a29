//! The admin HTTP endpoint: Prometheus `/metrics`, `/healthz`, `/readyz`,
//! paginated JSON views `/connections`, `/subscriptions`, `/links`, the
//! mesh as a graph `/topology` ([`topology`]), route explain `/explain`
//! ([`explain`]), and the web console: its page at `/` ([`page`]) and its
//! data `/console/state`, `/console/events` ([`console`], streamed as
//! server-sent events: [`sse`]).
//!
//! Owns: one std thread with a small HTTP server of its own ([`http`]: why
//! not a crate is said there), off the event path: it reads the shards'
//! published atomics and histograms, and asks the shards for views through
//! a flag they answer on their housekeeping tick (every 50 ms), so a scrape
//! never runs code on a shard's event loop beyond that tick. Must not
//! touch: sessions or the trie directly. Must never end the process: an
//! error here ends one request, not the router.
//!
//! Bounds: views hold at most `admin.view_entries_max` entries per shard,
//! pages at most `admin.page_size_max`; request heads at most
//! `admin.request_bytes_max`, within `admin.request_timeout_ms`; request
//! bodies are never read; console streams at most
//! `admin.console_streams_max`, each with at most
//! `admin.console_stream_bytes_max` waiting.

pub mod console;
pub mod explain;
pub mod http;
pub mod metrics;
pub mod page;
pub mod sse;
pub mod topology;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shard::ctx::Global;
use crate::shard::stats::{ShardStats, ShardView};

/// What the admin thread reads.
pub struct AdminState {
    pub stats: Vec<Arc<ShardStats>>,
    pub global: Arc<Global>,
    /// The bridge's link view, refreshed on its tick (None: mesh off).
    pub mesh_view: crate::shard::MeshViewSlot,
    pub page_size_max: usize,
    pub http: http::Limits,
    /// `admin.token`: empty = every request is served.
    pub token: String,
    /// `mesh.explain_timeout_ms` (`GET /explain` waits for the mesh).
    pub explain_timeout: Duration,
    /// `security.default_account` (its topics carry no prefix).
    pub default_account: String,
    /// This router's id (`mesh.router_id`, the host name by default).
    pub router_id: String,
    /// `admin.console_interval_ms`.
    pub console_interval: Duration,
    /// `admin.console_topics_max`.
    pub console_topics_max: usize,
    /// Console streams open, and closed for a client too slow
    /// (`weft_admin_console_streams*` in /metrics).
    pub console_streams: std::sync::atomic::AtomicUsize,
    pub console_streams_slow: std::sync::atomic::AtomicU64,
}

/// The endpoint as the server runs it: the routes, and the console's
/// state on the admin thread.
struct Service {
    state: Arc<AdminState>,
    console: console::Console,
}

impl http::Service for Service {
    fn handle(&mut self, request: &http::Request<'_>) -> http::Reply {
        let path = request.target.split('?').next().unwrap_or("");
        let full = |(status, content_type, body)| {
            http::Reply::Full(http::Response {
                status,
                content_type,
                body,
            })
        };
        if !authorized(&self.state.token, request) || request.method != "GET" {
            return full(route(&self.state, request));
        }
        match path {
            // The console is armed once the stream is added (after the
            // room check: a refused stream turns nothing on).
            "/console/events" => http::Reply::Stream {
                content_type: "text/event-stream",
                first: sse::PREAMBLE.to_vec(),
            },
            "/console/state" => full((200, JSON, self.console.state_now(&self.state))),
            _ => full(route(&self.state, request)),
        }
    }

    fn tick(&mut self, now: std::time::Instant, streams: usize) -> Option<Vec<u8>> {
        self.state.console_streams.store(streams, Ordering::Relaxed);
        self.console.tick(&self.state, now, streams)
    }

    fn stream_ended(&mut self, why: sse::Ended) {
        if why == sse::Ended::Slow {
            self.state
                .console_streams_slow
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn wake_at(&self, streams: usize) -> Option<std::time::Instant> {
        self.console.wake_at(streams)
    }

    fn stream_added(&mut self, now: std::time::Instant) {
        self.console.stream_opened(&self.state, now);
    }
}

impl AdminState {
    /// The admin thread's state, from the `[admin]` section (and the
    /// mesh's router id and explain timeout, the default account).
    pub fn new(
        config: &crate::config::Config,
        stats: Vec<Arc<ShardStats>>,
        global: Arc<Global>,
        mesh_view: crate::shard::MeshViewSlot,
    ) -> AdminState {
        let a = &config.admin;
        AdminState {
            stats,
            global,
            mesh_view,
            page_size_max: a.page_size_max,
            http: http::Limits {
                request_bytes_max: a.request_bytes_max,
                timeout: Duration::from_millis(a.request_timeout_ms),
                streams_max: a.console_streams_max,
                stream_bytes_max: a.console_stream_bytes_max,
            },
            token: a.token.clone(),
            router_id: config.mesh.router_id.clone(),
            console_interval: Duration::from_millis(a.console_interval_ms),
            console_topics_max: a.console_topics_max,
            console_streams: Default::default(),
            console_streams_slow: Default::default(),
            explain_timeout: Duration::from_millis(config.mesh.explain_timeout_ms),
            default_account: config.security.default_account.clone(),
        }
    }
}

/// Requests waiting to be accepted (they are answered one at a time).
const LISTEN_BACKLOG: i32 = 128;

/// [`crate::shard::StartAdmin`]: the state from the router's parts, then
/// [`start`].
pub fn start_for_router(
    addr: SocketAddr,
    bind_retry: Duration,
    parts: crate::shard::AdminParts<'_>,
) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let state = AdminState::new(parts.config, parts.stats, parts.global, parts.mesh_view);
    start(addr, bind_retry, Arc::new(state))
}

/// Starts the admin thread: it takes a descriptor table of its own (see
/// [`http::private_descriptor_table`]), binds `addr` in it (retried for
/// `bind_retry` while the address is in use) and serves. Returns the bound
/// address once the listener is up.
pub fn start(
    addr: SocketAddr,
    bind_retry: Duration,
    state: Arc<AdminState>,
) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    use crate::shard::bind;
    let (bound_tx, bound_rx) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name("weft-admin".into())
        .spawn(move || {
            if let Err(e) = http::private_descriptor_table() {
                tracing::warn!(
                    error = %e,
                    "admin: no descriptor table of its own; while the shards are out of \
                     descriptors, a scrape may wait"
                );
            }
            let listener = bind::with_retry("admin listener", addr, bind_retry, || {
                bind::listener(addr, false, LISTEN_BACKLOG)
            })
            .and_then(|l| l.local_addr().map(|bound| (l, bound)));
            let listener = match listener {
                Ok((listener, bound)) => {
                    let _ = bound_tx.send(Ok(bound));
                    listener
                }
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let service = Service {
                console: console::Console::new(state.console_interval, state.console_topics_max),
                state: state.clone(),
            };
            http::serve(
                listener,
                state.http,
                || state.global.shutdown.load(Ordering::Relaxed),
                service,
            )
        })?;
    match bound_rx.recv() {
        Ok(Ok(bound)) => Ok((bound, handle)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(std::io::Error::other(
                "the admin thread ended before binding",
            ))
        }
    }
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Paths served without the token: liveness and readiness say nothing
/// about clients, and probes (a kubelet, `weft wait`) should not need a
/// secret.
const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// Whether `request` may be served: no token configured, an open path,
/// `Authorization: Bearer <token>` with the configured token, or the token
/// as the `access_token` query parameter (RFC 6750 §2.3: a browser's
/// EventSource cannot set headers).
fn authorized(token: &str, request: &http::Request<'_>) -> bool {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target, ""));
    if token.is_empty() || OPEN_PATHS.contains(&path) {
        return true;
    }
    let presented = request.authorization.and_then(|value| {
        let (scheme, credentials) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(credentials.trim())
    });
    if presented.is_some_and(|p| same_secret(p.as_bytes(), token.as_bytes())) {
        return true;
    }
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix(ACCESS_TOKEN))
        .any(|value| {
            crate::http::percent::decode_form(value)
                .is_some_and(|v| same_secret(v.as_bytes(), token.as_bytes()))
        })
}

/// The query parameter that may carry the token (with its `=`).
const ACCESS_TOKEN: &str = "access_token=";

/// Compares a presented secret with the configured one in time that
/// depends only on the presented length (never on where they differ, nor
/// on the secret's length), so that timing tells an attacker nothing.
fn same_secret(presented: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    let mut diff = u8::from(presented.len() != secret.len());
    for (i, &b) in presented.iter().enumerate() {
        diff |= b ^ secret[i % secret.len()];
    }
    std::hint::black_box(diff) == 0
}

fn route(state: &AdminState, request: &http::Request<'_>) -> (u16, &'static str, Vec<u8>) {
    if !authorized(&state.token, request) {
        return (
            401,
            TEXT,
            b"a bearer token is required (admin.token)\n".to_vec(),
        );
    }
    if request.method != "GET" {
        return (405, TEXT, b"only GET\n".to_vec());
    }
    let url = request.target;
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match path {
        "/metrics" => {
            let views = collect_views(state);
            (200, "text/plain; version=0.0.4; charset=utf-8", {
                let mut text = metrics::render(&state.stats, &views);
                if let Some(v) = state.mesh_view.lock().ok().and_then(|v| v.clone()) {
                    metrics::render_mesh(&v, &mut text);
                }
                metrics::render_console(
                    state.console_streams.load(Ordering::Relaxed),
                    state.console_streams_slow.load(Ordering::Relaxed),
                    &mut text,
                );
                metrics::render_trace(&state.global.trace, &mut text);
                text.into_bytes()
            })
        }
        "/healthz" => (200, TEXT, b"ok\n".to_vec()),
        "/readyz" => {
            let ready = state.global.ready_shards.load(Ordering::Relaxed) == state.stats.len()
                && !state.global.shutdown.load(Ordering::Relaxed);
            if ready {
                (200, TEXT, b"ready\n".to_vec())
            } else {
                (503, TEXT, b"not ready\n".to_vec())
            }
        }
        "/connections" | "/subscriptions" => {
            let (offset, limit) = match page(query, state.page_size_max) {
                Ok(p) => p,
                Err(msg) => return (400, TEXT, format!("{msg}\n").into_bytes()),
            };
            let views = collect_views(state);
            let truncated = views.iter().any(|v| v.truncated);
            let body = if path == "/connections" {
                let all: Vec<_> = views.iter().flat_map(|v| v.connections.iter()).collect();
                page_json("connections", &all, offset, limit, truncated)
            } else {
                let all: Vec<_> = views.iter().flat_map(|v| v.subscriptions.iter()).collect();
                page_json("subscriptions", &all, offset, limit, truncated)
            };
            (200, JSON, body)
        }
        "/explain" => {
            let (status, body) = explain::serve(state, query);
            let kind = if status == 200 { JSON } else { TEXT };
            (status, kind, body.into_bytes())
        }
        "/links" => {
            let view = state.mesh_view.lock().ok().and_then(|v| v.clone());
            let body = match view {
                Some(v) => serde_json::json!({
                    "router_id": v.router_id,
                    "total": v.links.len(),
                    "links": v.links,
                    "interest_entries": v.interest_entries,
                    "duplicates_dropped": v.duplicates,
                    "no_route": v.no_route,
                    "hops_exceeded": v.hops_exceeded,
                    "held_links": v.held_links,
                    "held_peers": v.held_peers,
                    "parked": v.parked,
                    "resend_store_waits": v.resend_store_waits,
                    "held_dropped": v.held_dropped,
                    "tls": v.tls,
                    "retained_sent": v.retained_sent,
                    "retained_accepted": v.retained_accepted,
                    "own_origin_dropped": v.own_origin,
                }),
                // The mesh is off (or the bridge has not ticked yet).
                None => serde_json::json!({"router_id": null, "total": 0, "links": []}),
            };
            (200, JSON, body.to_string().into_bytes())
        }
        "/topology" => {
            let body = match topology::topology(state) {
                Some(t) => serde_json::to_vec(&t).unwrap_or_default(),
                // The mesh is off (or the bridge has not ticked yet).
                None => br#"{"router_id":null,"routers":[],"edges":[]}"#.to_vec(),
            };
            (200, JSON, body)
        }
        // The console's page and its assets (page.rs), else nothing.
        _ => match page::asset(path) {
            Some((content_type, body)) => (200, content_type, body.as_bytes().to_vec()),
            None => (404, TEXT, b"not found\n".to_vec()),
        },
    }
}

fn page(query: &str, max: usize) -> Result<(usize, usize), String> {
    let mut offset = 0;
    let mut limit = max.min(100);
    for pair in query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with(ACCESS_TOKEN))
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n: usize = v
            .parse()
            .map_err(|_| format!("query parameter {k}: '{v}' is not a number"))?;
        match k {
            "offset" => offset = n,
            "limit" => {
                if n == 0 || n > max {
                    return Err(format!("query parameter limit: must be 1..={max}"));
                }
                limit = n;
            }
            _ => return Err(format!("unknown query parameter '{k}'")),
        }
    }
    Ok((offset, limit))
}

fn page_json<T: serde::Serialize>(
    name: &str,
    all: &[&T],
    offset: usize,
    limit: usize,
    truncated: bool,
) -> Vec<u8> {
    let items: Vec<&&T> = all.iter().skip(offset).take(limit).collect();
    let mut map = serde_json::Map::new();
    map.insert("total".into(), all.len().into());
    map.insert("offset".into(), offset.into());
    map.insert("limit".into(), limit.into());
    map.insert("truncated".into(), truncated.into());
    map.insert(name.into(), serde_json::to_value(items).unwrap_or_default());
    serde_json::to_vec_pretty(&serde_json::Value::Object(map)).unwrap_or_default()
}

/// Asks every shard for its view and waits (at most a second) for the
/// answers; a shard that does not answer (stopping) is left out.
fn collect_views(state: &AdminState) -> Vec<ShardView> {
    for s in &state.stats {
        if let Ok(mut v) = s.view.lock() {
            *v = None;
        }
        s.view_requested.store(true, Ordering::Release);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut views: Vec<Option<ShardView>> = vec![None; state.stats.len()];
    while Instant::now() < deadline && views.iter().any(Option::is_none) {
        for (slot, s) in views.iter_mut().zip(&state.stats) {
            if slot.is_none() {
                *slot = s.view.lock().ok().and_then(|mut v| v.take());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    views.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(target: &'a str, authorization: Option<&'a str>) -> http::Request<'a> {
        http::Request {
            method: "GET",
            target,
            authorization,
        }
    }

    #[test]
    fn the_token_guards_every_path_but_health() {
        let t = "s3cret";
        for path in [
            "/metrics",
            "/connections?limit=1",
            "/links",
            "/topology",
            "/nowhere",
        ] {
            assert!(!authorized(t, &request(path, None)), "{path}");
            assert!(
                !authorized(t, &request(path, Some("Bearer s3cre"))),
                "{path}"
            );
            assert!(
                !authorized(t, &request(path, Some("Bearer s3cret2"))),
                "{path}"
            );
            assert!(
                !authorized(t, &request(path, Some("Basic s3cret"))),
                "{path}"
            );
            assert!(!authorized(t, &request(path, Some("s3cret"))), "{path}");
            assert!(
                authorized(t, &request(path, Some("Bearer s3cret"))),
                "{path}"
            );
            assert!(
                authorized(t, &request(path, Some("bearer  s3cret"))),
                "{path}"
            );
            // No token configured: everything is served.
            assert!(authorized("", &request(path, None)), "{path}");
        }
        for path in ["/healthz", "/readyz?x"] {
            assert!(authorized(t, &request(path, None)), "{path}");
        }
    }

    #[test]
    fn the_token_may_come_as_access_token() {
        let t = "s3/cr et";
        for path in ["/console/events", "/console/state", "/metrics"] {
            for ok in ["?access_token=s3%2Fcr+et", "?x=1&access_token=s3/cr%20et"] {
                assert!(
                    authorized(t, &request(&format!("{path}{ok}"), None)),
                    "{ok}"
                );
            }
            for wrong in [
                "?access_token=s3%2Fcr",
                "?access_token=",
                "?access_token",
                "?token=s3%2Fcr+et",
                "?xaccess_token=s3%2Fcr+et",
                "?access_token=s3%2Fcr+et+",
            ] {
                assert!(
                    !authorized(t, &request(&format!("{path}{wrong}"), None)),
                    "{wrong}"
                );
            }
        }
        // A malformed escape matches nothing.
        assert!(!authorized(
            "a%2",
            &request("/metrics?access_token=a%2", None)
        ));
        // Pages ignore the token parameter.
        assert_eq!(page("limit=5&access_token=x", 10), Ok((0, 5)));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(
            !same_secret(b"abcabc", b"abc"),
            "a repeat is not the secret"
        );
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
        assert!(!same_secret(b"", b""), "an empty secret matches nothing");
        assert!(!same_secret(b"abd", b"abc"));
    }
}
