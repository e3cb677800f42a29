//! Authorization with real clients (rumqttc 3.1.1 and 5, async-nats, raw
//! MQTT): the codes of each denial, the connection kept, wide filters that
//! never deliver what their reader may not read, across protocols and
//! shards, retained messages included, and the denials counted.
//!
//! Every client here is anonymous (the rules are `security.anonymous`,
//! so these tests do not depend on how users authenticate): `%c`, the
//! client id, gives each client its own inbox that it may neither write
//! nor read, while the others may write it.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use rumqttc::{QoS, SubscribeReasonCode};

const RULES: &str = r#"
[security.anonymous]
deny = ["inbox/%c/#"]
"#;

/// Topics a subscriber got until `sentinel` (exclusive).
async fn topics_until(client: &mut Client, sentinel: &str) -> Vec<String> {
    client.topics_until(sentinel).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_denials_and_wide_filters() {
    let weft = Weft::start(2, RULES);
    let mut reader = connect(weft.shard_addrs[0], "r311").await;
    // Wholly its own inbox: refused (SUBACK 0x80); the wide filter is
    // granted (and checked).
    assert_eq!(
        reader.subscribe("inbox/r311/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Failure]
    );
    assert_eq!(
        reader.subscribe("inbox/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // A watcher that may read r311's inbox, on the other shard.
    let mut watcher = connect(weft.shard_addrs[1], "watcher").await;
    assert_eq!(
        watcher.subscribe("inbox/+/+", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    // r311 publishes into its own inbox: QoS 1 still acknowledged (3.1.1
    // has no code), QoS 0 dropped; neither is routed.
    reader
        .publish("inbox/r311/q1", QoS::AtLeastOnce, "denied")
        .await;
    assert_eq!(reader.pubacks(1).await.len(), 1);
    reader
        .publish("inbox/r311/q0", QoS::AtMostOnce, "denied")
        .await;
    reader
        .publish("inbox/zz/end", QoS::AtLeastOnce, "end")
        .await;
    assert_eq!(
        topics_until(&mut watcher, "inbox/zz/end").await,
        Vec::<String>::new()
    );

    // Another client writes r311's inbox (allowed for it): the wide
    // subscription of r311 does not deliver it, on either shard.
    let writer = connect(weft.shard_addrs[1], "w311").await;
    writer.publish("inbox/r311/x", QoS::AtLeastOnce, "no").await;
    writer.publish("inbox/zz/x", QoS::AtMostOnce, "yes").await;
    writer
        .publish("inbox/zz/end2", QoS::AtLeastOnce, "end")
        .await;
    let got = topics_until(&mut reader, "inbox/zz/end2").await;
    assert_eq!(
        got,
        vec!["inbox/zz/end".to_string(), "inbox/zz/x".to_string()]
    );
    // The watcher (whose filter does not reach its own inbox) got it all.
    assert_eq!(
        topics_until(&mut watcher, "inbox/zz/end2").await,
        vec!["inbox/r311/x".to_string(), "inbox/zz/x".to_string()]
    );
}

/// What an MQTT 5 rumqttc event loop reports: packets, and the refusals
/// it turns into errors (a SUBACK or PUBACK failure code).
#[derive(Debug)]
enum Seen5 {
    Packet(Box<rumqttc::v5::mqttbytes::v5::Packet>),
    Error(String),
}

/// The next packet other than CONNACK and PINGRESP, or the next error.
async fn next5(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen5>,
) -> Result<rumqttc::v5::mqttbytes::v5::Packet, String> {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    loop {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Seen5::Packet(p) => match *p {
                P5::ConnAck(_) | P5::PingResp(_) => {}
                p => return Ok(p),
            },
            Seen5::Error(e) => return Err(e),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_codes() {
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet as P5, PubAckReason, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
    let weft = Weft::start(2, RULES);
    let addr = weft.shard_addrs[0];
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new("m5", addr.ip().to_string(), addr.port()),
        10,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let seen = match eventloop.poll().await {
                Ok(Event::Incoming(p)) => Seen5::Packet(Box::new(p)),
                Ok(_) => continue,
                Err(ConnectionError::MqttState(StateError::SubFail { reason })) => {
                    assert_eq!(reason, SubscribeReasonCode::NotAuthorized);
                    Seen5::Error("SUBACK 0x87".into())
                }
                Err(ConnectionError::MqttState(StateError::PubAckFail { reason })) => {
                    assert_eq!(reason, PubAckReason::NotAuthorized);
                    Seen5::Error("PUBACK 0x87".into())
                }
                Err(e) => Seen5::Error(e.to_string()),
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    // The wide filter is granted (and checked).
    client
        .subscribe_many(vec![Filter::new("inbox/#", Q5::AtLeastOnce)])
        .await
        .unwrap();
    assert!(matches!(next5(&mut rx).await, Ok(P5::SubAck(_))));
    // QoS 0 into its own inbox: dropped (the allowed one after it comes
    // first).
    for topic in ["inbox/m5/y", "inbox/other/ok"] {
        client
            .publish(topic, Q5::AtMostOnce, false, "x")
            .await
            .unwrap();
    }
    match next5(&mut rx).await {
        Ok(P5::Publish(p)) => assert_eq!(&p.topic[..], b"inbox/other/ok"),
        other => panic!("{other:?}"),
    }
    // QoS 1 into its own inbox: PUBACK 0x87 (rumqttc reports it as an
    // error and reconnects).
    client
        .publish("inbox/m5/x", Q5::AtLeastOnce, false, "denied")
        .await
        .unwrap();
    match next5(&mut rx).await {
        Err(e) => assert_eq!(e, "PUBACK 0x87"),
        other => panic!("{other:?}"),
    }
    // Its own inbox: SUBACK 0x87.
    client
        .subscribe_many(vec![Filter::new("inbox/m5/#", Q5::AtLeastOnce)])
        .await
        .unwrap();
    match next5(&mut rx).await {
        Err(e) => assert_eq!(e, "SUBACK 0x87"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_that_may_not_be_published_refuses_connect() {
    let weft = Weft::start(1, RULES);
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&connect_packet_with_will(
        "wills",
        30,
        weft::mqtt::codec::Will {
            topic: "inbox/wills/gone",
            payload: b"x",
            qos: 0,
            retain: false,
        },
    ))
    .await;
    // CONNACK 0x05 (not authorized), then the close.
    assert_eq!(raw.read_packet().await, vec![0x20, 2, 0, 0x05]);
    assert!(raw.closed_by_server().await);
    // A will elsewhere is accepted.
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&connect_packet_with_will(
        "wills",
        30,
        weft::mqtt::codec::Will {
            topic: "inbox/other/gone",
            payload: b"x",
            qos: 0,
            retain: false,
        },
    ))
    .await;
    assert_eq!(raw.read_packet().await, vec![0x20, 2, 0, 0]);
}

/// async-nats named `name` (its `%c`), with the server's errors collected.
async fn nats_named(
    addr: std::net::SocketAddr,
    name: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(e)) = event {
                    let _ = tx.send(e);
                }
            }
        })
        .connect(addr.to_string())
        .await
        .expect("connect");
    (client, rx)
}

async fn server_error(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, errors.recv())
        .await
        .expect("an -ERR in time")
        .expect("client alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_denials_keep_the_connection() {
    let weft = Weft::start(2, RULES);
    // A watcher that may read nr's inbox, on nr's shard.
    let (watcher, _) = nats_named(weft.nats_shards[0], "nwatch").await;
    let mut watched = watcher.subscribe("inbox.>").await.unwrap();
    nats_sync(&watcher).await;
    let (client, mut errors) = nats_named(weft.nats_shards[0], "nr").await;
    let _denied = client.subscribe("inbox.nr.>").await.unwrap();
    assert_eq!(
        server_error(&mut errors).await,
        r#"Permissions Violation for Subscription to "inbox.nr.>""#
    );
    let _denied = client
        .queue_subscribe("inbox.nr.q", "workers".into())
        .await
        .unwrap();
    assert_eq!(
        server_error(&mut errors).await,
        r#"Permissions Violation for Subscription to "inbox.nr.q" using queue "workers""#
    );
    // The wide filter is granted, and checked.
    let mut wide = client.subscribe("inbox.>").await.unwrap();
    client.publish("inbox.nr.x", "denied".into()).await.unwrap();
    assert_eq!(
        server_error(&mut errors).await,
        r#"Permissions Violation for Publish to "inbox.nr.x""#
    );
    // The connection is kept: a round trip goes through (and the denied
    // PUB, before it, was handled).
    nats_sync(&client).await;

    // Cross-protocol, cross-shard: an MQTT client writes nr's inbox (and
    // another one); the NATS wide subscription gets only the other.
    let writer = connect(weft.shard_addrs[1], "wn").await;
    writer.publish("inbox/nr/x", QoS::AtLeastOnce, "no").await;
    writer.publish("inbox/zz/x", QoS::AtLeastOnce, "yes").await;
    let m = tokio::time::timeout(WAIT, wide.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.subject.as_str(), "inbox.zz.x");
    assert!(errors.try_recv().is_err(), "no other error");
    // The watcher got the writer's events, never nr's denied one.
    for (subject, payload) in [("inbox.nr.x", "no"), ("inbox.zz.x", "yes")] {
        let m = tokio::time::timeout(WAIT, watched.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.subject.as_str(), &m.payload[..]),
            (subject, payload.as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_publish_never_reaches_an_mqtt_reader_that_may_not_read_it() {
    let weft = Weft::start(2, RULES);
    let mut reader = connect(weft.shard_addrs[0], "mr").await;
    assert_eq!(
        reader.subscribe("#", QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    let (nats, _errors) = nats_named(weft.nats_shards[1], "nw").await;
    nats.publish("inbox.mr.secret", "no".into()).await.unwrap();
    nats.publish("inbox.other.fine", "yes".into())
        .await
        .unwrap();
    nats.publish("done", "".into()).await.unwrap();
    nats.flush().await.unwrap();
    assert_eq!(
        topics_until(&mut reader, "done").await,
        vec!["inbox/other/fine".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_filtered_by_read_rights() {
    let weft = Weft::start(2, RULES);
    let writer = connect(weft.shard_addrs[1], "rw").await;
    writer
        .publish_retained("inbox/rr/secret", QoS::AtLeastOnce, "no")
        .await;
    writer
        .publish_retained("inbox/zz/open", QoS::AtLeastOnce, "yes")
        .await;
    let mut writer = writer;
    assert_eq!(writer.pubacks(2).await.len(), 2);
    let mut reader = connect(weft.shard_addrs[0], "rr").await;
    reader.subscribe("inbox/#", QoS::AtLeastOnce).await;
    writer.publish("inbox/zz/end", QoS::AtLeastOnce, "").await;
    assert_eq!(
        topics_until(&mut reader, "inbox/zz/end").await,
        vec!["inbox/zz/open".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_counted_by_protocol_and_action() {
    let weft = Weft::start(1, RULES);
    let mut mqtt = connect(weft.addr, "cm").await;
    mqtt.subscribe("inbox/cm/#", QoS::AtMostOnce).await;
    mqtt.subscribe("inbox/#", QoS::AtMostOnce).await;
    mqtt.publish("inbox/cm/x", QoS::AtLeastOnce, "").await;
    assert_eq!(mqtt.pubacks(1).await.len(), 1);
    let (nats, mut errors) = nats_named(weft.nats, "cn").await;
    nats.publish("inbox.cn.x", "".into()).await.unwrap();
    server_error(&mut errors).await;
    // Delivered to nobody who may not read it: cm's wide filter skips it.
    nats.publish("inbox.cm.y", "".into()).await.unwrap();
    nats.publish("inbox.zz.end", "".into()).await.unwrap();
    assert_eq!(
        topics_until(&mut mqtt, "inbox/zz/end").await,
        Vec::<String>::new()
    );
    let line = |protocol: &str, action: &str| {
        format!(
            "weft_authz_denied_total{{shard=\"0\",protocol=\"{protocol}\",action=\"{action}\"}} 1"
        )
    };
    let expected = [
        line("mqtt", "subscribe"),
        line("mqtt", "publish"),
        line("mqtt", "deliver"),
        line("nats", "publish"),
    ];
    wait_until("denials counted", Duration::from_secs(20), || async {
        let (_, body) = admin_get(weft.admin, "/metrics").await;
        match expected.iter().find(|l| !body.contains(l.as_str())) {
            None => Ok(()),
            Some(missing) => Err(format!("no {missing}")),
        }
    })
    .await;
}
