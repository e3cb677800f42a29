//! MQTT 5.0 against the running binary with rumqttc's v5 client and raw
//! v5 packets (weft's own v5 codec as the client's encoder): properties,
//! no-local and retain handling, topic aliases, session and message
//! expiry, subscription identifiers. Wills and flow control are in
//! tests/mqtt5_will.rs.

mod common;

#[path = "support/mqtt5.rs"]
mod mqtt5;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use mqtt5::*;
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet as P5, PubAckReason, PublishProperties, RetainForwardRule,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::MqttOptions;
use weft::mqtt::v5 as wv5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_round_trip_across_shards() {
    let weft = Weft::start(2, "");
    let (mut sub, _) = connect5(weft.shard_addrs[1], "v5-sub", |_| {}).await;
    sub.subscribe(Filter::new("p5/#", QoS::AtLeastOnce)).await;
    let (mut publisher, _) = connect5(weft.shard_addrs[0], "v5-pub", |_| {}).await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("p5/replies".into()),
        correlation_data: Some(Bytes::from_static(b"corr-1")),
        user_properties: vec![
            ("x-request-id".into(), "00-abc-def-01".into()),
            ("k".into(), "v".into()),
        ],
        message_expiry_interval: Some(3600),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("p5/x", QoS::AtLeastOnce, false, "{}", props)
        .await
        .unwrap();
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"p5/x");
    let got = p.properties.expect("properties delivered");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.response_topic.as_deref(), Some("p5/replies"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"corr-1"[..]));
    assert_eq!(got.payload_format_indicator, Some(1));
    assert_eq!(
        got.user_properties,
        vec![
            ("x-request-id".to_string(), "00-abc-def-01".to_string()),
            ("k".to_string(), "v".to_string())
        ]
    );
    let left = got
        .message_expiry_interval
        .expect("remaining expiry forwarded");
    assert!((3590..=3600).contains(&left), "{left}");
    // PUBACK carries "no matching subscribers" when nobody listens.
    publisher
        .client
        .publish("nobody/home", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    loop {
        if let P5::PubAck(a) = publisher.next().await {
            assert_eq!(
                a.reason,
                PubAckReason::Success,
                "the first publish had a subscriber"
            );
            break;
        }
    }
    loop {
        if let P5::PubAck(a) = publisher.next().await {
            assert_eq!(a.reason, PubAckReason::NoMatchingSubscribers);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_and_retain_handling() {
    let weft = Weft::start(2, "");
    let (mut me, _) = connect5(weft.shard_addrs[0], "v5-me", |_| {}).await;
    let mut own = Filter::new("nl/1", QoS::AtMostOnce);
    own.nolocal = true;
    me.subscribe(own).await;
    me.subscribe(Filter::new("nl/end", QoS::AtMostOnce)).await;
    me.client
        .publish("nl/1", QoS::AtMostOnce, false, "mine")
        .await
        .unwrap();
    me.client
        .publish("nl/end", QoS::AtMostOnce, false, "end")
        .await
        .unwrap();
    assert_eq!(
        &me.next_publish().await.topic[..],
        b"nl/end",
        "own nl/1 not delivered"
    );
    let (other, _) = connect5(weft.shard_addrs[1], "v5-other", |_| {}).await;
    other
        .client
        .publish("nl/1", QoS::AtMostOnce, false, "theirs")
        .await
        .unwrap();
    let p = me.next_publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"nl/1"[..], &b"theirs"[..])
    );

    // Retain handling 2: no retained messages on subscribe.
    other
        .client
        .publish("rh/1", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    // Fence: the retained message is there for a subscriber on shard 0
    // before `never` subscribes there (else it would miss it anyway).
    // `publish().await` only queues the PUBLISH: a first subscriber may
    // get it live (retain 0) if it subscribed before it was routed; the
    // live copy comes once, so a second subscriber must get it retained.
    let mut fenced = false;
    for attempt in 0..2 {
        let id = format!("v5-stored-{attempt}");
        let (mut stored, _) = connect5(weft.shard_addrs[0], &id, |_| {}).await;
        stored.subscribe(Filter::new("rh/#", QoS::AtMostOnce)).await;
        let p = stored.next_publish().await;
        assert_eq!(&p.payload[..], b"kept", "{p:?}");
        if p.retain {
            fenced = true;
            break;
        }
    }
    assert!(fenced, "no subscriber on shard 0 got rh/1 as retained");
    let (mut never, _) = connect5(weft.shard_addrs[0], "v5-never", |_| {}).await;
    let mut f = Filter::new("rh/#", QoS::AtMostOnce);
    f.retain_forward_rule = RetainForwardRule::Never;
    never.subscribe(f).await;
    let mut f = Filter::new("rh/#", QoS::AtMostOnce);
    f.retain_forward_rule = RetainForwardRule::OnEverySubscribe;
    let (mut always, _) = connect5(weft.shard_addrs[1], "v5-always", |_| {}).await;
    always.subscribe(f).await;
    let p = always.next_publish().await;
    assert!(p.retain && &p.payload[..] == b"kept");
    never
        .subscribe(Filter::new("rh/end", QoS::AtMostOnce))
        .await;
    other
        .client
        .publish("rh/end", QoS::AtMostOnce, false, "end")
        .await
        .unwrap();
    assert_eq!(
        &never.next_publish().await.topic[..],
        b"rh/end",
        "retain handling 2 sent nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_and_assigned_client_id() {
    let weft = Weft::start(1, "");
    let (mut sub, _) = connect5(weft.addr, "v5-alias-sub", |_| {}).await;
    sub.subscribe(Filter::new("alias/#", QoS::AtMostOnce)).await;
    // Raw v5 client: CONNECT with an empty client id, then PUBLISH that
    // sets alias 1 and one that uses it.
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&v5_connect("", Default::default(), None, true))
        .await;
    let connack = raw.read_packet().await;
    let wv5::Packet::ConnAck(ack) = wv5::decode(&connack, &Default::default())
        .unwrap()
        .unwrap()
        .0
    else {
        panic!("CONNACK expected");
    };
    assert_eq!(ack.reason_code, 0);
    assert!(ack
        .properties
        .assigned_client_identifier
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(ack.properties.topic_alias_maximum, Some(64));
    for (topic, alias) in [("alias/long/topic/name", 1u16), ("", 1)] {
        let mut out = Vec::new();
        let props = wv5::Properties {
            topic_alias: Some(alias),
            ..Default::default()
        };
        wv5::encode(
            &wv5::Packet::Publish(wv5::Publish {
                dup: false,
                qos: 0,
                retain: false,
                topic,
                packet_id: 0,
                properties: props,
                payload: b"x",
            }),
            &mut out,
        )
        .unwrap();
        raw.send(&out).await;
    }
    for _ in 0..2 {
        assert_eq!(
            &sub.next_publish().await.topic[..],
            b"alias/long/topic/name"
        );
    }
    // An alias above the maximum: DISCONNECT 0x94 (Topic Alias invalid).
    let mut out = Vec::new();
    let props = wv5::Properties {
        topic_alias: Some(65),
        ..Default::default()
    };
    wv5::encode(
        &wv5::Packet::Publish(wv5::Publish {
            dup: false,
            qos: 0,
            retain: false,
            topic: "alias/x",
            packet_id: 0,
            properties: props,
            payload: b"x",
        }),
        &mut out,
    )
    .unwrap();
    raw.send(&out).await;
    let disconnect = raw.read_packet().await;
    let wv5::Packet::Disconnect(d) = wv5::decode(&disconnect, &Default::default())
        .unwrap()
        .unwrap()
        .0
    else {
        panic!("DISCONNECT expected");
    };
    assert_eq!(d.reason_code, wv5::reason::TOPIC_ALIAS_INVALID);
    assert!(raw.closed_by_server().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_message_expiry_and_takeover() {
    let weft = Weft::start(2, "");
    let keep = |o: &mut MqttOptions| {
        o.set_clean_start(false);
        let props = rumqttc::v5::mqttbytes::v5::ConnectProperties {
            session_expiry_interval: Some(600),
            ..Default::default()
        };
        o.set_connect_properties(props);
    };
    // A raw first connection (to read exactly what the server sends it).
    let raw_connect = || {
        let props = wv5::Properties {
            session_expiry_interval: Some(600),
            ..Default::default()
        };
        v5_connect("v5-keeper", props, None, false)
    };
    let mut first = Raw::open(weft.shard_addrs[0]).await;
    first.send(&raw_connect()).await;
    first.read_packet().await;
    let mut out = Vec::new();
    let sub = wv5::Packet::Subscribe(wv5::Subscribe {
        packet_id: 1,
        properties: Default::default(),
        filters: vec![(
            "ex/#",
            wv5::SubscriptionOptions {
                qos: 1,
                ..Default::default()
            },
        )],
    });
    wv5::encode(&sub, &mut out).unwrap();
    first.send(&out).await;
    first.read_packet().await; // SUBACK
                               // A second connection with the same id takes the session over: the
                               // first gets DISCONNECT 0x8E (Session taken over), then EOF.
    let (second, ack) = connect5(weft.shard_addrs[1], "v5-keeper", keep).await;
    let P5::ConnAck(ack) = ack else {
        unreachable!()
    };
    assert!(ack.session_present);
    let d = first.read_packet().await;
    let wv5::Packet::Disconnect(d) = wv5::decode(&d, &Default::default()).unwrap().unwrap().0
    else {
        panic!("DISCONNECT expected");
    };
    assert_eq!(d.reason_code, wv5::reason::SESSION_TAKEN_OVER);
    assert!(first.closed_by_server().await);
    // Away: one message that expires, one that does not.
    second.client.disconnect().await.unwrap();
    wait_parked(weft.admin, "v5-keeper").await;
    drop(second);
    let (publisher, _) = connect5(weft.shard_addrs[0], "v5-pub2", |_| {}).await;
    let short = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    publisher
        .client
        .publish_with_properties("ex/1", QoS::AtLeastOnce, false, "short", short)
        .await
        .unwrap();
    publisher
        .client
        .publish("ex/2", QoS::AtLeastOnce, false, "lasting")
        .await
        .unwrap();
    let mut publisher = publisher;
    for _ in 0..2 {
        while !matches!(publisher.next().await, P5::PubAck(_)) {}
    }
    // Not a synchronisation: the 1 s expiry must pass while the session is
    // away (whole seconds, so wait past 2).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut back, ack) = connect5(weft.shard_addrs[1], "v5-keeper", keep).await;
    let P5::ConnAck(ack) = ack else {
        unreachable!()
    };
    assert!(ack.session_present);
    let p = back.next_publish().await;
    assert_eq!(
        &p.payload[..],
        b"lasting",
        "the expired message was not delivered"
    );
}

/// Subscription identifiers ride on each delivery; the server sets topic
/// aliases towards a client that allows them (both directions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifiers_and_server_topic_aliases() {
    let weft = Weft::start(2, "");
    let mut sub = Raw::open(weft.shard_addrs[0]).await;
    let props = wv5::Properties {
        topic_alias_maximum: Some(4),
        ..Default::default()
    };
    sub.send(&v5_connect("ids", props, None, true)).await;
    let ack = sub.read_packet().await;
    let wv5::Packet::ConnAck(ack) = decoded(&ack) else {
        panic!()
    };
    assert_eq!(ack.properties.subscription_identifier_available, Some(true));
    for (filter, id) in [("ids/#", 7u32), ("ids/+/x", 9)] {
        let mut out = Vec::new();
        wv5::encode(
            &wv5::Packet::Subscribe(wv5::Subscribe {
                packet_id: 1,
                properties: wv5::Properties {
                    subscription_identifiers: vec![id],
                    ..Default::default()
                },
                filters: vec![(filter, wv5::SubscriptionOptions::default())],
            }),
            &mut out,
        )
        .unwrap();
        sub.send(&out).await;
        sub.read_packet().await; // SUBACK
    }
    let (publisher, _) = connect5(weft.shard_addrs[1], "ids-pub", |_| {}).await;
    for _ in 0..2 {
        publisher
            .client
            .publish("ids/a/x", QoS::AtMostOnce, false, "p")
            .await
            .unwrap();
    }
    let first = sub.read_packet().await;
    let wv5::Packet::Publish(p) = decoded(&first) else {
        panic!()
    };
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, vec![7, 9], "both matching subscriptions' identifiers");
    assert_eq!(
        (p.topic, p.properties.topic_alias),
        ("ids/a/x", Some(1)),
        "alias set"
    );
    let second = sub.read_packet().await;
    let wv5::Packet::Publish(p) = decoded(&second) else {
        panic!()
    };
    assert_eq!(
        (p.topic, p.properties.topic_alias),
        ("", Some(1)),
        "alias used, topic omitted"
    );
}
