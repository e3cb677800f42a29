//! The exporter thread: drains the span queue every
//! `trace.export_interval_ms` (at most `trace.export_batch_max` spans a
//! request) and sends the spans with `opentelemetry-otlp`'s OTLP/HTTP
//! protobuf exporter.
//!
//! Why this shape: the SDK's `BatchSpanProcessor` would need span objects
//! built on the shard threads (through its `Tracer`), with ids it draws
//! itself; here a shard pushes a plain [`SpanRecord`] whose ids are the
//! ones already written into the event, and this thread alone builds
//! `SpanData`. The HTTP client is ours ([`BlockingHttp`]: one plain
//! HTTP/1.1 POST per batch over `std::net`, `Connection: close`), on this
//! thread, so the router runs no tokio runtime and pulls in no
//! reqwest/hyper for 60 lines of client; `opentelemetry-otlp`'s export
//! future is driven by `futures_lite::future::block_on`. https is not
//! supported (`trace.otlp_endpoint` is checked to be `http://`).
//!
//! Bounds: the queue (`trace.queue_max`, the shards' side), one batch in
//! memory, one request in flight with `trace.export_timeout_ms` for
//! connect, write and read each, an answer read up to 64 KiB. A failed
//! request's spans are counted (`weft_trace_spans_failed_total`) and not
//! sent again. Ends with a last drain when the router stops (cut short by
//! the first failed request then).

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam::queue::ArrayQueue;
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};

use super::{SpanKind, SpanRecord, TraceCounters};
use crate::config::TraceConfig;

/// Bytes of an answer read at most (the collector's reply is small).
const ANSWER_BYTES_MAX: u64 = 64 * 1024;

/// The running exporter: stop it with [`Exporter::stop`] (last drain).
pub struct Exporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Starts the thread for `queue`; Err: the exporter could not be
    /// built (a bad endpoint).
    pub fn start(
        config: &TraceConfig,
        router_id: &str,
        queue: Arc<ArrayQueue<SpanRecord>>,
        counters: Arc<TraceCounters>,
    ) -> Result<Exporter, String> {
        let timeout = Duration::from_millis(config.export_timeout_ms);
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.otlp_endpoint.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(timeout)
            .with_http_client(BlockingHttp { timeout })
            .build()
            .map_err(|e| e.to_string())?;
        exporter.set_resource(
            &opentelemetry_sdk::Resource::builder_empty()
                .with_service_name("weft")
                .with_attribute(KeyValue::new("service.instance.id", router_id.to_owned()))
                .build(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let batch_max = config.export_batch_max;
        let interval = Duration::from_millis(config.export_interval_ms);
        let scope = InstrumentationScope::builder("weft")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weft-trace".into())
            .spawn(move || {
                let mut last = false;
                loop {
                    let mut batch = Vec::new();
                    while batch.len() < batch_max {
                        let Some(span) = queue.pop() else { break };
                        batch.push(span_data(span, &scope));
                    }
                    if batch.is_empty() {
                        if last {
                            return;
                        }
                        if stopping.load(Relaxed) {
                            last = true;
                            continue;
                        }
                        std::thread::park_timeout(interval);
                        continue;
                    }
                    let n = batch.len() as u64;
                    match futures_lite::future::block_on(exporter.export(batch)) {
                        Ok(()) => {
                            counters.spans_exported.fetch_add(n, Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, spans = n, "trace: OTLP export failed");
                            counters.spans_failed.fetch_add(n, Relaxed);
                            // Stopping: one failed request ends the drain
                            // (a collector that is down would hold the
                            // router's exit for a timeout per batch).
                            if stopping.load(Relaxed) {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Exporter {
            stop,
            thread: Some(thread),
        })
    }

    /// Sends what is queued, then ends the thread (as dropping does).
    pub fn stop(self) {}
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn system_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The OpenTelemetry form of a record (on the exporter thread only).
fn span_data(s: SpanRecord, scope: &InstrumentationScope) -> SpanData {
    use opentelemetry::trace::SpanKind as Kind;
    let kind = match s.kind {
        SpanKind::Ingress | SpanKind::LinkIn => Kind::Consumer,
        SpanKind::LinkOut | SpanKind::Deliver => Kind::Producer,
    };
    let detail_key = match s.kind {
        SpanKind::Ingress => "weft.protocol",
        SpanKind::LinkIn | SpanKind::LinkOut => "weft.peer",
        SpanKind::Deliver => "weft.subscribers",
    };
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.trace_id),
            SpanId::from_bytes(s.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from_bytes(s.parent_id),
        parent_span_is_remote: matches!(s.kind, SpanKind::Ingress | SpanKind::LinkIn),
        span_kind: kind,
        name: Cow::Borrowed(s.kind.name()),
        start_time: system_time(s.start_ns),
        end_time: system_time(s.end_ns.max(s.start_ns)),
        attributes: vec![
            KeyValue::new("messaging.system", "weft"),
            KeyValue::new("messaging.destination.name", String::from(s.topic)),
            KeyValue::new(detail_key, String::from(s.detail)),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

/// A blocking HTTP/1.1 client for the exporter's POSTs (see the module
/// doc): `http://host[:port]/path` only.
#[derive(Debug)]
pub struct BlockingHttp {
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl HttpClient for BlockingHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        post(&request, self.timeout)
    }
}

fn post(request: &Request<Bytes>, timeout: Duration) -> Result<Response<Bytes>, HttpError> {
    let uri = request.uri();
    if uri.scheme_str() != Some("http") {
        return Err(format!("{uri}: only http:// is supported").into());
    }
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.method(),
        request.body().len()
    );
    for (name, value) in request.headers() {
        if name == "host" || name == "content-length" || name == "connection" {
            continue;
        }
        if let Ok(v) = value.to_str() {
            head.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(request.body())?;
    let mut answer = Vec::new();
    stream.take(ANSWER_BYTES_MAX).read_to_end(&mut answer)?;
    let (status, body) = parse_answer(&answer).ok_or("malformed HTTP answer")?;
    Ok(Response::builder()
        .status(status)
        .body(Bytes::copy_from_slice(body))?)
}

/// The status and body of an HTTP/1.1 answer read to its end.
fn parse_answer(answer: &[u8]) -> Option<(u16, &[u8])> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, &answer[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Some((200, &b"ok"[..]))
        );
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse_answer(b"garbage\r\n\r\n"), None);
    }

    #[test]
    fn record_to_span_data() {
        let scope = InstrumentationScope::builder("weft").build();
        let d = span_data(
            SpanRecord {
                kind: SpanKind::LinkOut,
                trace_id: [1; 16],
                span_id: [2; 8],
                parent_id: [3; 8],
                start_ns: 10,
                end_ns: 5,
                topic: "t".into(),
                detail: "b".into(),
            },
            &scope,
        );
        assert_eq!(d.span_context.trace_id(), TraceId::from_bytes([1; 16]));
        assert_eq!(d.parent_span_id, SpanId::from_bytes([3; 8]));
        assert_eq!(d.name, "weft link out");
        assert!(d.end_time >= d.start_time);
    }
}
