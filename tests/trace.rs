//! W3C trace context across protocols and links, with real processes and
//! clients: routers a – b – c on 127.0.0.1, an MQTT 5 publisher (rumqttc
//! v5) on a that sends a `traceparent` user property, an async-nats
//! subscriber on c. The NATS message carries the same trace id with a
//! parent id that is c's span (not the publisher's), `tracestate` starts
//! `weft=c`; an OTLP collector stand-in (an HTTP server in this test,
//! decoding the protobuf requests with opentelemetry-proto) receives the
//! spans of all three routers, and their parents chain up to the
//! publisher's span. Nothing here asserts a time; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// The publisher's own span: the parent id the event arrives at a with.
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";

/// One span as the collector got it: which router sent it (the
/// resource's `service.instance.id`), its name and ids (hex).
#[derive(Debug, Clone)]
struct Got {
    router: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A collector stand-in: accepts `POST /v1/traces` (OTLP/HTTP protobuf),
/// one request per connection, answers 200 with an empty
/// `ExportTraceServiceResponse`, keeps every span.
fn collector() -> (SocketAddr, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
    let keep = spans.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            let (head_end, length) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                assert!(n > 0, "collector: request ended early");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    assert!(head.starts_with("post /v1/traces "), "collector: {head}");
                    assert!(
                        head.contains("content-type: application/x-protobuf"),
                        "{head}"
                    );
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .expect("content-length")
                        .trim()
                        .parse()
                        .unwrap();
                    break (end + 4, length);
                }
            };
            while buf.len() < head_end + length {
                let n = s.read(&mut chunk).unwrap_or(0);
                assert!(n > 0, "collector: body ended early");
                buf.extend_from_slice(&chunk[..n]);
            }
            let request = ExportTraceServiceRequest::decode(&buf[head_end..head_end + length])
                .expect("an OTLP ExportTraceServiceRequest");
            let mut got = keep.lock().unwrap();
            for rs in request.resource_spans {
                let router = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.instance.id")
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                s,
                            ),
                        ) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        got.push(Got {
                            router: router.clone(),
                            name: span.name,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_id: hex(&span.parent_span_id),
                        });
                    }
                }
            }
            drop(got);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (addr, spans)
}

/// Router `id`, linked to `links`, exporting to `collector`; its stderr
/// is printed if the test fails.
fn router(id: &str, collector: SocketAddr, links: &[SocketAddr]) -> Weft {
    let toml = format!(
        "[trace]\notlp_endpoint = \"http://{collector}/v1/traces\"\nexport_interval_ms = 50\n"
    );
    mesh_router(id, &toml, "info", "127.0.0.1:0", links)
}

struct Logs<'a>(&'a [(&'a str, &'a Weft)]);

impl Drop for Logs<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, w) in self.0 {
                for line in w.stderr_lines() {
                    eprintln!("{id}| {line}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_traceparent_reaches_nats_two_routers_away_with_spans() {
    let (collector_addr, spans) = collector();
    let a = router("a", collector_addr, &[]);
    let b = router("b", collector_addr, &[a.mesh.unwrap()]);
    let c = router("c", collector_addr, &[b.mesh.unwrap()]);
    let routers = [("a", &a), ("b", &b), ("c", &c)];
    let _logs = Logs(&routers);
    wait_links_up(&a, 1).await;
    wait_links_up(&b, 2).await;
    wait_links_up(&c, 1).await;

    let nats_c = nats(c.nats).await;
    let mut sub = nats_c.subscribe("traced.x").await.unwrap();
    nats_sync(&nats_c).await;

    let mut o = rumqttc::v5::MqttOptions::new("traced-pub", a.addr.ip().to_string(), a.addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 64);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    // Interest crosses c → b → a asynchronously: publish (each attempt
    // its own trace id) until one arrives, bounded by WAIT.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut attempt = 0u32;
    let message = loop {
        attempt += 1;
        let trace_id = format!("4bf92f3577b34da6a3ce929d{attempt:08x}");
        let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
            user_properties: vec![
                (
                    "traceparent".into(),
                    format!("00-{trace_id}-{PUBLISHER_SPAN}-01"),
                ),
                ("tracestate".into(), "vendor=1".into()),
            ],
            ..Default::default()
        };
        publisher
            .publish_with_properties(
                "traced/x",
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                format!("attempt {attempt}"),
                props,
            )
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            Ok(Some(m)) => break m,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "no traced event reached the NATS subscriber on c"
            ),
        }
    };
    let headers = message
        .headers
        .as_ref()
        .expect("the NATS message has headers");
    let traceparent = headers
        .get("traceparent")
        .expect("traceparent header")
        .as_str();
    let tracestate = headers
        .get("tracestate")
        .expect("tracestate header")
        .as_str();
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    let (trace_id, parent_id) = (fields[1].to_owned(), fields[2].to_owned());
    assert!(
        trace_id.starts_with("4bf92f3577b34da6a3ce929d"),
        "same trace: {traceparent}"
    );
    assert_eq!(fields[0], "00");
    assert_eq!(fields[3], "01", "sampled, as published");
    assert_ne!(
        parent_id, PUBLISHER_SPAN,
        "the parent is the last hop, not the publisher"
    );
    assert!(
        tracestate.starts_with("weft=c"),
        "c's member first: {tracestate}"
    );
    assert!(
        tracestate.ends_with(",vendor=1"),
        "the publisher's member kept: {tracestate}"
    );
    assert_eq!(
        tracestate.matches("weft=").count(),
        1,
        "one weft member, moved to the front at each hop: {tracestate}"
    );

    // The spans of this trace, from all three routers.
    let want = [
        ("a", "weft ingress"),
        ("a", "weft link out"),
        ("b", "weft link in"),
        ("b", "weft link out"),
        ("c", "weft link in"),
        ("c", "weft deliver"),
    ];
    let trace: Vec<Got> = wait_until("the spans of all three routers", WAIT, || {
        let spans = spans.clone();
        let trace_id = trace_id.clone();
        async move {
            let got: Vec<Got> = spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            let missing: Vec<_> = want
                .iter()
                .filter(|(r, n)| !got.iter().any(|s| s.router == *r && s.name == *n))
                .collect();
            if missing.is_empty() {
                Ok(got)
            } else {
                Err(format!("missing {missing:?}; got {got:#?}"))
            }
        }
    })
    .await;
    let one = |router: &str, name: &str| -> Got {
        let found: Vec<&Got> = trace
            .iter()
            .filter(|s| s.router == router && s.name == name)
            .collect();
        assert_eq!(found.len(), 1, "{router} {name}: {trace:#?}");
        found[0].clone()
    };
    let a_in = one("a", "weft ingress");
    let a_out = one("a", "weft link out");
    let b_in = one("b", "weft link in");
    let b_out = one("b", "weft link out");
    let c_in = one("c", "weft link in");
    let c_deliver = one("c", "weft deliver");
    assert_eq!(
        a_in.parent_id, PUBLISHER_SPAN,
        "a's span is the publisher's child"
    );
    assert_eq!(a_out.parent_id, a_in.span_id);
    assert_eq!(b_in.parent_id, a_in.span_id, "b's span is a's child");
    assert_eq!(b_out.parent_id, b_in.span_id);
    assert_eq!(c_in.parent_id, b_in.span_id, "c's span is b's child");
    assert_eq!(c_deliver.parent_id, c_in.span_id);
    assert_eq!(
        parent_id, c_in.span_id,
        "the NATS message's parent is c's span: the last hop"
    );

    // The exporter's counters in /metrics.
    let (status, metrics) = admin_get(c.admin, "/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in /metrics"))
            .parse()
            .unwrap()
    };
    assert!(value("weft_trace_hops_total") >= 1);
    assert!(value("weft_trace_spans_exported_total") >= 2);
    assert_eq!(value("weft_trace_spans_dropped_total"), 0);
}
