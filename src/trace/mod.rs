//! Trace context across protocols and links (W3C Trace Context Level 1),
//! and the spans of each hop, exported over OTLP/HTTP.
//!
//! An event that carries a `traceparent` (an MQTT 5 user property, a NATS
//! header, an HTTP header at the HTTP edge, an AMQP application property or
//! message annotation; a CloudEvent's distributed-tracing attribute is the
//! starting trace and is left alone, `hop::cloudevent`) takes part
//! in its trace at every router it crosses, once per router (never per
//! subscriber): on arrival from a client (`ShardCtx::publish_now`) or from
//! a link (the bridge's `on_event`) the router draws a span id, and the
//! event goes on (to every subscriber, every link) with `traceparent` =
//! same trace id, parent id = that span, and `tracestate` =
//! `weft=<router-id>` moved to the front. Each protocol's writer then gives
//! the fields in its own form (the README's "Trace context" table): they
//! ride in `EventMeta` as user properties or NATS header fields, as they
//! already crossed protocols and links.
//!
//! Spans (when `trace.otlp_endpoint` is set and the sampled flag is on):
//! the hop's own span (`ingress` from a client, `link in` from a link,
//! whose id is the parent id the event carries on), and its children
//! `link out` (one per link the event is sent on) and `deliver` (one per
//! shard that hands it to subscribers). A span is a small record
//! ([`SpanRecord`]) pushed into one bounded queue (`trace.queue_max`,
//! lock-free); the exporter thread ([`export`]) turns batches into
//! OpenTelemetry `SpanData` and sends them. A full queue drops the span
//! and counts it (`weft_trace_spans_dropped_total`); the shards never
//! wait. Without an endpoint no record is built.
//!
//! Owns: the text forms ([`context`]), the hop rewrite ([`hop`]), the ids,
//! the span queue and its counters ([`Tracer`]), the exporter thread.
//! Must not touch: sockets of the shards, the routing.
//!
//! Cost: an event without metadata pays nothing here (the callers test
//! `event.meta` first, as they did); one with metadata but no
//! `traceparent`, a scan of its property names ([`hop::find`]).

pub mod context;
pub mod export;
pub mod hop;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

pub use context::TraceParent;
pub use hop::{Hop, Incoming};

use crate::config::TraceConfig;
use crate::event::{now_ns, wall_ns, EventMeta};

/// The `tracestate` key of weft's member.
pub const STATE_KEY: &str = "weft";

/// What a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The event arrived from a client: this router's span.
    Ingress,
    /// The event arrived over a link: this router's span.
    LinkIn,
    /// The event was sent on a link (a child of the router's span).
    LinkOut,
    /// The event was handed to this shard's subscribers (a child).
    Deliver,
}

impl SpanKind {
    pub fn name(self) -> &'static str {
        match self {
            SpanKind::Ingress => "weft ingress",
            SpanKind::LinkIn => "weft link in",
            SpanKind::LinkOut => "weft link out",
            SpanKind::Deliver => "weft deliver",
        }
    }
}

/// One finished span, as the shards hand it to the exporter (no
/// OpenTelemetry type is built on a shard thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    pub kind: SpanKind,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero: a root (a restarted trace's router span).
    pub parent_id: [u8; 8],
    /// Wall clock, ns since the epoch.
    pub start_ns: u64,
    pub end_ns: u64,
    pub topic: Box<str>,
    /// The peer router (link spans), the protocol (ingress) or the
    /// subscriber count (deliver).
    pub detail: Box<str>,
}

/// Trace counters (all shards), for /metrics.
#[derive(Debug, Default)]
pub struct TraceCounters {
    /// Router spans begun (events that carried a `traceparent`).
    pub hops: AtomicU64,
    /// Of those, with an invalid `traceparent`: the trace restarted here.
    pub restarted: AtomicU64,
    pub spans_queued: AtomicU64,
    /// Spans dropped because the queue was full (`trace.queue_max`).
    pub spans_dropped: AtomicU64,
    pub spans_exported: AtomicU64,
    /// Spans in export requests that failed (not sent again).
    pub spans_failed: AtomicU64,
}

/// The process's trace context state: one, shared by the shards and the
/// bridge (`Global::trace`).
pub struct Tracer {
    propagate: bool,
    state_value: String,
    queue: Option<Arc<ArrayQueue<SpanRecord>>>,
    pub counters: Arc<TraceCounters>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("propagate", &self.propagate)
            .field("exporting", &self.queue.is_some())
            .finish()
    }
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer::disabled()
    }
}

thread_local! {
    /// xorshift64* state, seeded from the OS once per thread.
    static RNG: Cell<u64> = Cell::new({
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        u64::from_ne_bytes(seed) | 1
    });
}

fn random_u64() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A span id: random, never all zero (§3.2.2.4).
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = random_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A trace id: random, never all zero (§3.2.2.3).
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&new_span_id());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    id
}

/// A `now_ns` instant on the wall clock (for span times).
pub fn wall_of(mono_ns: u64) -> u64 {
    wall_ns().saturating_sub(now_ns().saturating_sub(mono_ns))
}

impl Tracer {
    /// The tracer of `config`, and the queue the exporter thread drains
    /// (None: no endpoint, no spans).
    pub fn new(config: &TraceConfig, router_id: &str) -> Tracer {
        let queue = config
            .exporting()
            .then(|| Arc::new(ArrayQueue::new(config.queue_max)));
        Tracer {
            propagate: config.propagate,
            state_value: context::state_value(router_id),
            queue,
            counters: Arc::default(),
        }
    }

    /// Starts the exporter thread when spans are exported
    /// (`trace.otlp_endpoint` set); None otherwise.
    pub fn start_exporter(
        &self,
        config: &crate::config::TraceConfig,
        router_id: &str,
    ) -> Result<Option<export::Exporter>, String> {
        match self.queue() {
            Some(queue) => {
                export::Exporter::start(config, router_id, queue, self.counters.clone()).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Off: no rewrite, no spans (`trace.propagate = false`).
    pub fn disabled() -> Tracer {
        Tracer {
            propagate: false,
            state_value: String::new(),
            queue: None,
            counters: Arc::default(),
        }
    }

    pub fn queue(&self) -> Option<Arc<ArrayQueue<SpanRecord>>> {
        self.queue.clone()
    }

    pub fn exporting(&self) -> bool {
        self.queue.is_some()
    }

    pub fn propagating(&self) -> bool {
        self.propagate
    }

    /// This router's hop for an event with trace context `incoming`: the
    /// new context, and (exporting, sampled) the router span, from
    /// `start` (a `now_ns`) to now.
    pub fn hop(
        &self,
        incoming: &Incoming<'_>,
        kind: SpanKind,
        start: u64,
        topic: &str,
        detail: &str,
    ) -> Option<Hop> {
        if !self.propagate {
            return None;
        }
        let hop = hop::next(
            incoming,
            new_span_id(),
            new_trace_id,
            STATE_KEY,
            &self.state_value,
        );
        self.counters.hops.fetch_add(1, Relaxed);
        if hop.received.is_none() {
            self.counters.restarted.fetch_add(1, Relaxed);
        }
        if self.queue.is_some() && hop.sent.sampled() {
            self.push(SpanRecord {
                kind,
                trace_id: hop.sent.trace_id,
                span_id: hop.sent.parent_id,
                parent_id: hop.received.map_or([0; 8], |r| r.parent_id),
                start_ns: wall_of(start),
                end_ns: wall_ns(),
                topic: topic.into(),
                detail: detail.into(),
            });
        }
        Some(hop)
    }

    /// Rewrites `meta` (an event arriving from a client) for this hop;
    /// returns whether it carried trace context. `meta` is copied only if
    /// it is shared and traced.
    pub fn on_ingress(
        &self,
        meta: &mut Arc<EventMeta>,
        start: u64,
        topic: &str,
        protocol: &str,
    ) -> bool {
        if !self.propagate {
            return false;
        }
        let Some(incoming) = hop::find_in_meta(meta) else {
            return false;
        };
        let Some(hop) = self.hop(&incoming, SpanKind::Ingress, start, topic, protocol) else {
            return false;
        };
        hop::apply_to_meta(Arc::make_mut(meta), &hop);
        true
    }

    /// A child span of the hop the event carries (`link out`, `deliver`),
    /// from `start` (a `now_ns`) to now. Nothing unless exporting and the
    /// event is traced and sampled.
    pub fn child(
        &self,
        meta: Option<&EventMeta>,
        kind: SpanKind,
        start: u64,
        topic: &str,
        detail: &str,
    ) {
        if self.queue.is_none() {
            return;
        }
        self.child_of(meta.and_then(hop::find_in_meta), kind, start, topic, detail)
    }

    /// [`Self::child`] for trace context found elsewhere (a link's copy).
    pub fn child_of(
        &self,
        incoming: Option<Incoming<'_>>,
        kind: SpanKind,
        start: u64,
        topic: &str,
        detail: &str,
    ) {
        if self.queue.is_none() {
            return;
        }
        let Some(parent) = incoming.and_then(|i| match i.parents[..] {
            [one] => TraceParent::parse(one).ok(),
            _ => None,
        }) else {
            return;
        };
        if !parent.sampled() {
            return;
        }
        self.push(SpanRecord {
            kind,
            trace_id: parent.trace_id,
            span_id: new_span_id(),
            parent_id: parent.parent_id,
            start_ns: wall_of(start),
            end_ns: wall_ns(),
            topic: topic.into(),
            detail: detail.into(),
        });
    }

    fn push(&self, span: SpanRecord) {
        let Some(q) = &self.queue else { return };
        if q.push(span).is_err() {
            self.counters.spans_dropped.fetch_add(1, Relaxed);
        } else {
            self.counters.spans_queued.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traced() -> Arc<EventMeta> {
        Arc::new(EventMeta {
            user_properties: vec![("traceparent".into(), TP.into())],
            ..Default::default()
        })
    }

    fn exporting(queue_max: usize) -> Tracer {
        Tracer::new(
            &TraceConfig {
                otlp_endpoint: "http://127.0.0.1:9/v1/traces".into(),
                queue_max,
                ..TraceConfig::default()
            },
            "a",
        )
    }

    #[test]
    fn ids_are_never_zero_and_differ() {
        let a = new_span_id();
        let b = new_span_id();
        assert_ne!(a, [0; 8]);
        assert_ne!(a, b);
        assert_ne!(new_trace_id(), [0; 16]);
    }

    #[test]
    fn no_endpoint_no_spans_but_rewrite() {
        let t = Tracer::new(&TraceConfig::default(), "a");
        assert!(!t.exporting());
        let mut meta = traced();
        assert!(t.on_ingress(&mut meta, now_ns(), "t", "mqtt"));
        let tp = &meta.user_properties[0].1;
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!tp.contains("00f067aa0ba902b7"));
        assert_eq!(&*meta.user_properties[1].1, "weft=a");
        assert_eq!(t.counters.spans_queued.load(Relaxed), 0);
    }

    #[test]
    fn propagate_off_leaves_events_alone() {
        let t = Tracer::disabled();
        let mut meta = traced();
        assert!(!t.on_ingress(&mut meta, now_ns(), "t", "mqtt"));
        assert_eq!(meta, traced());
    }

    #[test]
    fn spans_chain_and_full_queue_drops() {
        let t = exporting(2);
        let mut meta = traced();
        let shared = meta.clone();
        assert!(t.on_ingress(&mut meta, now_ns(), "t", "mqtt"));
        assert_eq!(&*shared, &*traced(), "a shared meta is copied, not changed");
        t.child(Some(&meta), SpanKind::LinkOut, now_ns(), "t", "b");
        t.child(Some(&meta), SpanKind::Deliver, now_ns(), "t", "1");
        let q = t.queue().unwrap();
        let hop = q.pop().unwrap();
        let out = q.pop().unwrap();
        assert_eq!(hop.kind, SpanKind::Ingress);
        assert_eq!(
            hop.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(out.parent_id, hop.span_id);
        assert_eq!(out.trace_id, hop.trace_id);
        assert!(hop.start_ns <= hop.end_ns);
        assert_eq!(t.counters.spans_queued.load(Relaxed), 2);
        assert_eq!(t.counters.spans_dropped.load(Relaxed), 1);
    }

    #[test]
    fn unsampled_traces_make_no_spans() {
        let t = exporting(8);
        let mut meta = Arc::new(EventMeta {
            user_properties: vec![("traceparent".into(), TP.replace("-01", "-00").into())],
            ..Default::default()
        });
        assert!(t.on_ingress(&mut meta, now_ns(), "t", "mqtt"));
        t.child(Some(&meta), SpanKind::Deliver, now_ns(), "t", "1");
        assert!(t.queue().unwrap().is_empty());
    }
}
