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

/// The W3C fields of an MQTT 5 PUBLISH (its user properties).
fn mqtt5_trace(p: &rumqttc::v5::mqttbytes::v5::Publish) -> (String, String) {
    let props = p.properties.as_ref().expect("properties");
    let get = |name: &str| {
        let all: Vec<&String> = props
            .user_properties
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(all.len(), 1, "one {name}: {:?}", props.user_properties);
        all[0].clone()
    };
    (get("traceparent"), get("tracestate"))
}

/// `traceparent` of the hop: same trace id as `sent`, another parent.
fn assert_next_hop(sent: &str, got: &str, what: &str) {
    let (s, g): (Vec<&str>, Vec<&str>) = (sent.split('-').collect(), got.split('-').collect());
    assert_eq!(g.len(), 4, "{what}: {got}");
    assert_eq!(
        (g[0], g[1], g[3]),
        ("00", s[1], s[3]),
        "{what}: same trace: {got}"
    );
    assert_ne!(g[2], s[2], "{what}: the router's span is the parent: {got}");
}

/// One router, no collector: the trace context crosses from the HTTP edge
/// and from NATS to NATS, MQTT 5 and AMQP subscribers in each one's form
/// (AMQP: message-annotations, the W3C AMQP draft's place for an
/// intermediary), with this router as the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_protocol_gets_the_hop_in_its_own_form() {
    use fe2o3_amqp::types::messaging::annotations::OwnedKey;
    use fe2o3_amqp::types::messaging::Body;
    use fe2o3_amqp::types::primitives::Value;
    let mut launch = Launch::new(1, "");
    launch.args = [
        "--router-id",
        "solo",
        "--http-listen",
        "127.0.0.1:0",
        "--amqp-listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    let weft = Weft::launch_with(launch);

    let nats_client = nats(weft.nats).await;
    let mut nats_sub = nats_client.subscribe("tp.>").await.unwrap();
    nats_sync(&nats_client).await;

    let o = rumqttc::v5::MqttOptions::new("tp-sub", weft.addr.ip().to_string(), weft.addr.port());
    let (mqtt, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 64);
    let (tx, mut mqtt_in) = tokio::sync::mpsc::unbounded_channel();
    let (subacked_tx, subacked) = tokio::sync::oneshot::channel();
    let mut subacked_tx = Some(subacked_tx);
    tokio::spawn(async move {
        use rumqttc::v5::mqttbytes::v5::Packet;
        while let Ok(ev) = eventloop.poll().await {
            match ev {
                rumqttc::v5::Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                rumqttc::v5::Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(t) = subacked_tx.take() {
                        let _ = t.send(());
                    }
                }
                _ => {}
            }
        }
    });
    mqtt.subscribe("tp/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, subacked)
        .await
        .expect("SUBACK")
        .unwrap();

    let url = format!("amqp://{}", weft.amqp.expect("amqp listener"));
    let mut connection = tokio::time::timeout(WAIT, fe2o3_amqp::Connection::open("tp", &url[..]))
        .await
        .expect("open in time")
        .expect("open");
    let mut session = fe2o3_amqp::Session::begin(&mut connection).await.unwrap();
    let mut receiver = fe2o3_amqp::Receiver::attach(&mut session, "rx", "tp/#")
        .await
        .expect("receiver attached");

    // HTTP edge: the W3C headers of a publish.
    let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let http = weft.http.expect("http listener");
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let request = format!(
        "POST /v1/topics/tp/http HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\
         traceparent: {sent}\r\ntracestate: congo=t61rcWkgMzE\r\n\r\nhi"
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut answer),
    )
    .await
    .expect("answer in time")
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let m = tokio::time::timeout(WAIT, nats_sub.next())
        .await
        .expect("NATS in time")
        .unwrap();
    let h = m.headers.as_ref().expect("headers");
    let nats_tp = h
        .get("traceparent")
        .expect("traceparent")
        .as_str()
        .to_owned();
    assert_next_hop(sent, &nats_tp, "HTTP → NATS");
    assert_eq!(
        h.get("tracestate").unwrap().as_str(),
        "weft=solo,congo=t61rcWkgMzE"
    );

    let p = tokio::time::timeout(WAIT, mqtt_in.recv())
        .await
        .expect("MQTT in time")
        .unwrap();
    let (tp, ts) = mqtt5_trace(&p);
    assert_eq!(tp, nats_tp, "one hop, one context for every subscriber");
    assert_eq!(ts, "weft=solo,congo=t61rcWkgMzE");

    let d = tokio::time::timeout(WAIT, receiver.recv::<Body<Value>>())
        .await
        .expect("AMQP in time")
        .unwrap();
    let annotations: Vec<(String, Value)> = d
        .message()
        .message_annotations
        .clone()
        .expect("message-annotations")
        .0
        .into_iter()
        .filter_map(|(k, v)| match k {
            OwnedKey::Symbol(s) => Some((s.0, v)),
            _ => None,
        })
        .collect();
    assert_eq!(
        annotations,
        [
            ("traceparent".to_string(), Value::String(nats_tp.clone())),
            (
                "tracestate".to_string(),
                Value::String("weft=solo,congo=t61rcWkgMzE".into())
            ),
        ]
    );
    receiver.accept(&d).await.unwrap();

    // NATS headers in, MQTT 5 user properties out; an invalid one restarts.
    for (sent, restart) in [(sent, false), ("00-zz-bad", true)] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", sent);
        headers.insert("tracestate", "vendor=1");
        nats_client
            .publish_with_headers("tp.nats", headers, "n".into())
            .await
            .unwrap();
        nats_client.flush().await.unwrap();
        let p = tokio::time::timeout(WAIT, mqtt_in.recv())
            .await
            .expect("MQTT in time")
            .unwrap();
        let (tp, ts) = mqtt5_trace(&p);
        if restart {
            let f: Vec<&str> = tp.split('-').collect();
            assert_eq!(
                (f.len(), f[0], f[3]),
                (4, "00", "00"),
                "a new, unsampled trace: {tp}"
            );
            assert_eq!(ts, "weft=solo", "the old tracestate is not parsed");
        } else {
            assert_next_hop(sent, &tp, "NATS → MQTT 5");
            assert_eq!(ts, "weft=solo,vendor=1");
        }
        // The NATS subscriber gets the same hop (HTTP's event came first).
        let m = tokio::time::timeout(WAIT, nats_sub.next())
            .await
            .expect("NATS in time")
            .unwrap();
        assert_eq!(m.headers.unwrap().get("traceparent").unwrap().as_str(), tp);
    }

    // The counters: three traced events, one restarted.
    let (_, metrics) = admin_get(weft.admin, "/metrics").await;
    assert!(metrics.contains("\nweft_trace_hops_total 3\n"), "{metrics}");
    assert!(
        metrics.contains("\nweft_trace_restarted_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nweft_trace_spans_queued_total 0\n"),
        "no endpoint, no spans"
    );
}
