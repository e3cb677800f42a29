//! Events cross between MQTT and NATS: rumqttc on one side, async-nats on
//! the other, on different shards, with wildcards on both sides and the
//! documented character mapping (README, `nats::subject`).

mod common;

use common::*;
use futures::StreamExt;
use rumqttc::QoS;

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publisher_to_nats_subscribers() {
    let weft = Weft::start(3, "");
    let client = nats(weft.nats_shards[1]).await;
    let mut exact = client.subscribe("a.b.c").await.unwrap();
    let mut star = client.subscribe("a.*.c").await.unwrap();
    let mut tail = client.subscribe("a.>").await.unwrap();
    let mut dotted = client.subscribe("m.x//y").await.unwrap();
    let mut empty_levels = client.subscribe("/.lead./").await.unwrap();
    nats_sync(&client).await;
    let publisher = connect(weft.shard_addrs[2], "mqtt-pub").await;
    publisher.publish("a/b/c", QoS::AtLeastOnce, "hello").await;
    for sub in [&mut exact, &mut star, &mut tail] {
        let m = next(sub).await;
        assert_eq!(m.subject.as_str(), "a.b.c");
        assert_eq!(m.payload, "hello".as_bytes());
    }
    // A '.' inside an MQTT level is '//' in NATS; empty levels are '/'.
    publisher.publish("m/x.y", QoS::AtMostOnce, "dot").await;
    assert_eq!(next(&mut dotted).await.subject.as_str(), "m.x//y");
    publisher.publish("/lead/", QoS::AtMostOnce, "edges").await;
    assert_eq!(next(&mut empty_levels).await.subject.as_str(), "/.lead./");
    publisher.publish("a/end", QoS::AtMostOnce, "end").await;
    let m = next(&mut tail).await;
    assert_eq!(
        m.subject.as_str(),
        "a.end",
        "m/x.y and /lead/ did not leak into a.>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_publisher_to_mqtt_subscribers() {
    let weft = Weft::start(3, "");
    let mut subs = Vec::new();
    for (i, filter) in ["a/b/c", "a/+/c", "a/#", "n/p.q", "e/"]
        .into_iter()
        .enumerate()
    {
        let mut c = connect(weft.shard_addrs[i % 3], &format!("mqtt-{i}")).await;
        c.subscribe(filter, QoS::AtMostOnce).await;
        c.subscribe("end", QoS::AtMostOnce).await;
        subs.push((filter, c));
    }
    let publisher = nats(weft.nats_shards[0]).await;
    for subject in ["a.b.c", "n.p//q", "e./", "a.x.y"] {
        publisher.publish(subject, subject.into()).await.unwrap();
    }
    publisher.publish("end", "".into()).await.unwrap();
    publisher.flush().await.unwrap();
    let want: [(&str, &[&str]); 5] = [
        ("a/b/c", &["a/b/c"]),
        ("a/+/c", &["a/b/c"]),
        ("a/#", &["a/b/c", "a/x/y"]),
        ("n/p.q", &["n/p.q"]),
        ("e/", &["e/"]),
    ];
    for ((filter, c), (_, topics)) in subs.iter_mut().zip(want) {
        let got = c.topics_until("end").await;
        assert_eq!(got, topics, "MQTT filter {filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_request_reaches_mqtt_subscribers_too() {
    // A NATS request's reply subject is metadata MQTT 3.1.1 cannot carry;
    // the event itself reaches MQTT subscribers, and a NATS responder on
    // the same subject still answers.
    let weft = Weft::start(2, "");
    let mut mqtt = connect(weft.shard_addrs[1], "mqtt-listener").await;
    mqtt.subscribe("svc/x", QoS::AtMostOnce).await;
    let responder = nats(weft.nats_shards[1]).await;
    let mut service = responder.subscribe("svc.x").await.unwrap();
    nats_sync(&responder).await;
    let r2 = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            r2.publish(m.reply.unwrap(), "pong".into()).await.unwrap();
        }
    });
    let requester = nats(weft.nats_shards[0]).await;
    let answer = requester.request("svc.x", "ping".into()).await.unwrap();
    assert_eq!(answer.payload, "pong".as_bytes());
    let p = mqtt.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("svc/x", &b"ping"[..]));
}

/// NATS headers and reply subjects map onto MQTT 5 user properties and
/// Response Topic, and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_user_properties_map_onto_each_other() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
    let weft = Weft::start(2, "");
    // An MQTT 5 subscriber and publisher.
    let (v5, mut rx) = v5_client(
        weft.shard_addrs[0],
        "v5-bridge",
        Some(("hdr/#", rumqttc::v5::mqttbytes::QoS::AtMostOnce)),
    )
    .await;
    // NATS → MQTT 5: headers become user properties, reply the Response Topic.
    let client = nats(weft.nats_shards[1]).await;
    let mut headers = async_nats::HeaderMap::new();
    // (Not `traceparent`: the router takes part in a trace, `tests/trace.rs`.)
    headers.insert("x-request-id", "00-1-2-01");
    client
        .publish_with_reply_and_headers("hdr.n2m", "reply.here", headers, "from nats".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let p = loop {
        if let P5::Publish(p) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            break p;
        }
    };
    assert_eq!(&p.topic[..], b"hdr/n2m");
    let props = p.properties.expect("properties");
    assert_eq!(
        props.user_properties,
        vec![("x-request-id".to_string(), "00-1-2-01".to_string())]
    );
    assert_eq!(props.response_topic.as_deref(), Some("reply/here"));

    // MQTT 5 → NATS: user properties become headers, Response Topic the reply.
    let mut sub = client.subscribe("hdr.m2n").await.unwrap();
    nats_sync(&client).await;
    let props = PublishProperties {
        user_properties: vec![("k".into(), "v".into())],
        response_topic: Some("answers/1".into()),
        ..Default::default()
    };
    v5.publish_with_properties(
        "hdr/m2n",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        false,
        "from mqtt",
        props,
    )
    .await
    .unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "from mqtt".as_bytes());
    assert_eq!(m.reply.as_deref(), Some("answers.1"));
    let h = m.headers.expect("headers");
    assert_eq!(h.get("k").map(|v| v.as_str()), Some("v"));
}
