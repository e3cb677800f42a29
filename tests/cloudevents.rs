//! CloudEvents across protocols with real clients: an MQTT 5 publisher's
//! binary-mode CloudEvent (MQTT binding: user properties and Content Type)
//! reaches NATS subscribers in the NATS binding's binary mode (`ce-`
//! headers) and MQTT 3.1.1 subscribers as structured JSON; a NATS
//! publisher's `ce-` headers reach MQTT 5 as user properties and Content
//! Type; structured-mode and non-CloudEvents events pass unchanged.

mod common;

use common::*;
use futures::StreamExt;
use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use serde_json::{json, Value};

async fn next_nats(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
        .expect("open")
}

async fn next_v5(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<P5>,
) -> rumqttc::v5::mqttbytes::v5::Publish {
    loop {
        let p = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("in time")
            .expect("open");
        if let P5::Publish(p) = p {
            return p;
        }
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The attributes every direction must keep (spec.md's context
/// attributes, an extension, the distributed tracing extension).
const ATTRIBUTES: [(&str, &str); 10] = [
    ("specversion", "1.0"),
    ("id", "evt-1"),
    ("source", "/sensors/7"),
    ("type", "com.example.reading"),
    ("time", "2026-12-06T10:00:00.5Z"),
    ("subject", "room 1"),
    ("dataschema", "https://example.com/reading.json"),
    ("comexampleext", "Euro \u{20ac}"),
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
    ("tracestate", "rojo=00f067aa0ba902b7"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_cloudevent_reaches_nats_and_mqtt3() {
    let weft = Weft::start(2, "");
    let nats_client = nats(weft.nats_shards[1]).await;
    let mut nats_sub = nats_client.subscribe("ce.m2n").await.unwrap();
    nats_sync(&nats_client).await;
    let mut v3 = connect(weft.shard_addrs[1], "ce-v3").await;
    v3.subscribe("ce/m2n", QoS::AtLeastOnce).await;
    let (_v5_sub, mut v5_rx) = v5_client(
        weft.shard_addrs[0],
        "ce-v5-sub",
        Some(("ce/m2n", QoS5::AtLeastOnce)),
    )
    .await;
    let (publisher, _rx) = v5_client(weft.shard_addrs[0], "ce-v5-pub", None).await;
    let props = PublishProperties {
        content_type: Some("application/json".into()),
        user_properties: pairs(&ATTRIBUTES),
        ..Default::default()
    };
    publisher
        .publish_with_properties("ce/m2n", QoS5::AtLeastOnce, false, r#"{"temp":21}"#, props)
        .await
        .unwrap();

    // NATS: the binding's binary mode, values percent-encoded (3.1.3.2).
    let m = next_nats(&mut nats_sub).await;
    assert_eq!(m.payload, r#"{"temp":21}"#.as_bytes());
    let headers = m.headers.expect("ce- headers");
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(
        header("ce-datacontenttype").as_deref(),
        Some("application/json")
    );
    for (name, value) in ATTRIBUTES {
        let encoded = value.replace(' ', "%20").replace('\u{20ac}', "%E2%82%AC");
        assert_eq!(header(&format!("ce-{name}")), Some(encoded), "ce-{name}");
    }
    assert_eq!(header("specversion"), None, "no unprefixed attribute");

    // MQTT 3.1.1: structured JSON carrying the same attributes and data.
    let p = v3.next_publish().await;
    assert_eq!(p.topic, "ce/m2n");
    let structured: Value = serde_json::from_slice(&p.payload).expect("JSON");
    let mut want = serde_json::Map::new();
    for (name, value) in ATTRIBUTES {
        want.insert(name.into(), json!(value));
    }
    want.insert("datacontenttype".into(), json!("application/json"));
    want.insert("data".into(), json!({"temp": 21}));
    assert_eq!(structured, Value::Object(want));

    // MQTT 5: the event exactly as published.
    let p = next_v5(&mut v5_rx).await;
    let got = p.properties.expect("properties");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.user_properties, pairs(&ATTRIBUTES));
    assert_eq!(&p.payload[..], br#"{"temp":21}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cloudevent_reaches_mqtt5_and_mqtt3() {
    let weft = Weft::start(2, "");
    let (_v5_sub, mut v5_rx) = v5_client(
        weft.shard_addrs[1],
        "ce-v5-sub",
        Some(("ce/n2m", QoS5::AtMostOnce)),
    )
    .await;
    let mut v3 = connect(weft.shard_addrs[0], "ce-v3").await;
    v3.subscribe("ce/n2m", QoS::AtMostOnce).await;
    let client = nats(weft.nats_shards[0]).await;
    let mut nats_sub = client.subscribe("ce.n2m").await.unwrap();
    nats_sync(&client).await;
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in ATTRIBUTES {
        let encoded = value.replace(' ', "%20").replace('\u{20ac}', "%E2%82%AC");
        headers.insert(format!("ce-{name}").as_str(), encoded.as_str());
    }
    headers.insert("ce-datacontenttype", "text/plain");
    headers.insert("X-Request-Id", "r-9");
    client
        .publish_with_headers("ce.n2m", headers.clone(), "hello".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    // MQTT 5: the MQTT binding's binary mode, values decoded.
    let p = next_v5(&mut v5_rx).await;
    assert_eq!(&p.payload[..], b"hello");
    let got = p.properties.expect("properties");
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    let mut want = pairs(&ATTRIBUTES);
    want.push(("X-Request-Id".into(), "r-9".into()));
    let mut props = got.user_properties.clone();
    props.sort();
    want.sort();
    assert_eq!(props, want);

    // MQTT 3.1.1: structured JSON, the text data as a string.
    let p = v3.next_publish().await;
    let structured: Value = serde_json::from_slice(&p.payload).expect("JSON");
    assert_eq!(structured["data"], "hello");
    assert_eq!(structured["datacontenttype"], "text/plain");
    for (name, value) in ATTRIBUTES {
        assert_eq!(structured[name], value, "{name}");
    }
    assert!(structured.get("X-Request-Id").is_none(), "not an attribute");

    // NATS: the header block as published.
    let m = next_nats(&mut nats_sub).await;
    assert_eq!(m.payload, "hello".as_bytes());
    let got = m.headers.expect("headers");
    assert_eq!(got.get("ce-subject").map(|v| v.as_str()), Some("room%201"));
    assert_eq!(got.get("X-Request-Id").map(|v| v.as_str()), Some("r-9"));
}

/// Structured mode and events that are not CloudEvents pass unchanged,
/// whatever protocol reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_and_plain_events_pass_unchanged() {
    let weft = Weft::start(2, "");
    let client = nats(weft.nats_shards[1]).await;
    let mut nats_sub = client.subscribe("pass.>").await.unwrap();
    nats_sync(&client).await;
    let mut v3 = connect(weft.shard_addrs[1], "pass-v3").await;
    v3.subscribe("pass/#", QoS::AtMostOnce).await;
    let (v5, mut v5_rx) = v5_client(
        weft.shard_addrs[0],
        "pass-v5",
        Some(("pass/#", QoS5::AtMostOnce)),
    )
    .await;
    let structured = json!({"specversion": "1.0", "id": "s1", "source": "/s",
                            "type": "t", "data": {"k": 1}})
    .to_string();

    // MQTT 5 structured mode (MQTT binding 3.2).
    let props = PublishProperties {
        content_type: Some("application/cloudevents+json; charset=utf-8".into()),
        ..Default::default()
    };
    v5.publish_with_properties(
        "pass/s5",
        QoS5::AtMostOnce,
        false,
        structured.clone(),
        props,
    )
    .await
    .unwrap();
    let p = v3.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("pass/s5", structured.as_bytes())
    );
    let m = next_nats(&mut nats_sub).await;
    assert_eq!(m.payload, structured.as_bytes());
    let h = m
        .headers
        .expect("Content-Type marks structured mode (NATS binding 3)");
    assert_eq!(
        h.get("Content-Type").map(|v| v.as_str()),
        Some("application/cloudevents+json; charset=utf-8")
    );
    let p = next_v5(&mut v5_rx).await;
    assert_eq!(&p.payload[..], structured.as_bytes());

    // MQTT 3.1.1 structured mode: not parsed, passed as it is.
    v3.publish("pass/s3", QoS::AtMostOnce, structured.clone())
        .await;
    let m = next_nats(&mut nats_sub).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("pass.s3", structured.as_bytes())
    );
    assert!(m.headers.is_none());
    let p = next_v5(&mut v5_rx).await;
    assert_eq!(&p.payload[..], structured.as_bytes());
    assert_eq!(p.properties.and_then(|p| p.content_type), None);
    let p = v3.next_publish().await;
    assert_eq!(&p.payload[..], structured.as_bytes());

    // Not a CloudEvent (a required attribute missing): user properties and
    // headers map as for any event, the payload untouched.
    let props = PublishProperties {
        content_type: Some("text/plain".into()),
        user_properties: pairs(&ATTRIBUTES[..3]),
        ..Default::default()
    };
    v5.publish_with_properties("pass/p5", QoS5::AtMostOnce, false, "plain", props)
        .await
        .unwrap();
    let p = v3.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("pass/p5", &b"plain"[..])
    );
    let m = next_nats(&mut nats_sub).await;
    assert_eq!(m.payload, "plain".as_bytes());
    let h = m.headers.expect("user properties as headers");
    assert_eq!(h.get("id").map(|v| v.as_str()), Some("evt-1"));
    assert!(h.get("ce-id").is_none());
    let _ = next_v5(&mut v5_rx).await;

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-id", "1");
    headers.insert("k", "v");
    client
        .publish_with_headers("pass.pn", headers, "plain nats".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let p = v3.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("pass/pn", &b"plain nats"[..])
    );
    let p = next_v5(&mut v5_rx).await;
    let props = p.properties.expect("headers as user properties");
    assert_eq!(props.content_type, None);
    let mut got = props.user_properties;
    got.sort();
    assert_eq!(got, pairs(&[("ce-id", "1"), ("k", "v")]));
}

/// The CloudEvents Python SDK parses what MQTT 5, MQTT 3.1.1 and NATS
/// subscribers receive of its events published over MQTT 5 and NATS
/// (tests/py/cloudevents_check.py): the same attributes and data. The
/// interpreter comes from `WEFT_PYTHON` (scripts/test.sh's .venv).
#[test]
fn cloudevents_sdk_reads_every_binding() {
    let python = std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        panic!("WEFT_PYTHON is not set: run the tests with scripts/test.sh, which installs the CloudEvents SDK")
    });
    let weft = Weft::start(2, "");
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/cloudevents_check.py"
        ))
        .arg(weft.addr.ip().to_string())
        .arg(weft.addr.port().to_string())
        .arg(weft.nats.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "cloudevents check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}

/// The CloudEvents Python SDK posts binary, structured and batched events
/// to the HTTP edge and parses what MQTT 5 and NATS subscribers get: the
/// same events; refused ones (415, 422, 400) publish nothing
/// (tests/py/cloudevents_http.py). SSE is tests/http.rs's.
#[test]
fn cloudevents_sdk_posts_over_http_to_mqtt5_and_nats() {
    let python = std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        panic!("WEFT_PYTHON is not set: run the tests with scripts/test.sh, which installs the CloudEvents SDK")
    });
    let weft = Weft::start(2, "[http]\nlisten = \"127.0.0.1:0\"\n");
    let http = weft.http.expect("the router announced its HTTP listener");
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/cloudevents_http.py"
        ))
        .arg(http.to_string())
        .arg(weft.addr.ip().to_string())
        .arg(weft.addr.port().to_string())
        .arg(weft.nats.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "cloudevents_http.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}
