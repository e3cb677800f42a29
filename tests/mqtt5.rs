//! MQTT 5.0 against the running binary with rumqttc's v5 client and raw
//! v5 packets (weft's own v5 codec as the client's encoder).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet as P5, PubAckReason, PublishProperties, RetainForwardRule,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event as E5, MqttOptions};
use tokio::sync::mpsc;
use weft::mqtt::v5 as wv5;

struct Client5 {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<P5>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect5(
    addr: std::net::SocketAddr,
    id: &str,
    setup: impl FnOnce(&mut MqttOptions),
) -> (Client5, P5) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    setup(&mut opts);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(E5::Incoming(p)) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // rumqttc reports a server DISCONNECT as an error: hand it
                // on as the packet it was.
                Err(rumqttc::v5::ConnectionError::MqttState(
                    rumqttc::v5::StateError::ServerDisconnect { reason_code, .. },
                )) => {
                    let d = rumqttc::v5::mqttbytes::v5::Disconnect {
                        reason_code,
                        properties: None,
                    };
                    let _ = tx.send(P5::Disconnect(d));
                    return;
                }
                Err(_) => return,
            }
        }
    });
    let ack = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ack, P5::ConnAck(_)), "{ack:?}");
    (Client5 { client, rx, task }, ack)
}

impl Client5 {
    async fn next(&mut self) -> P5 {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("in time")
            .expect("open")
    }

    async fn subscribe(&mut self, filter: Filter) {
        self.client.subscribe_many(vec![filter]).await.unwrap();
        loop {
            if let P5::SubAck(_) = self.next().await {
                return;
            }
        }
    }

    async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        loop {
            if let P5::Publish(p) = self.next().await {
                return p;
            }
        }
    }
}

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

fn v5_connect(
    id: &str,
    props: wv5::Properties<'static>,
    will: Option<Box<wv5::Will<'static>>>,
    clean: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    wv5::encode(
        &wv5::Packet::Connect(wv5::Connect {
            clean_start: clean,
            keep_alive_s: 30,
            properties: props,
            client_id: id,
            will,
            username: None,
            password: None,
        }),
        &mut out,
    )
    .unwrap();
    out
}

fn decoded(bytes: &[u8]) -> wv5::Packet<'_> {
    wv5::decode(bytes, &Default::default()).unwrap().unwrap().0
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

/// The Will Delay Interval: a reconnection within the delay cancels the
/// will; otherwise it is published once the delay has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_delay_interval() {
    let weft = Weft::start(2, "");
    let (mut watcher, _) = connect5(weft.shard_addrs[1], "will-watcher", |_| {}).await;
    watcher
        .subscribe(Filter::new("wd/#", QoS::AtMostOnce))
        .await;
    let session = || wv5::Properties {
        session_expiry_interval: Some(60),
        ..Default::default()
    };
    let will = |topic: &'static str, delay: u32| {
        Some(Box::new(wv5::Will {
            properties: wv5::Properties {
                will_delay_interval: Some(delay),
                ..Default::default()
            },
            topic,
            payload: b"gone",
            qos: 0,
            retain: false,
        }))
    };
    // Drops, comes back within its 2 s delay: no will.
    let mut back_soon = Raw::open(weft.shard_addrs[0]).await;
    back_soon
        .send(&v5_connect("wd-soon", session(), will("wd/soon", 2), true))
        .await;
    back_soon.read_packet().await;
    drop(back_soon);
    let mut again = Raw::open(weft.shard_addrs[1]).await;
    again
        .send(&v5_connect("wd-soon", session(), None, false))
        .await;
    again.read_packet().await;
    // Drops for good with a 1 s delay: the will comes.
    let mut gone = Raw::open(weft.shard_addrs[0]).await;
    gone.send(&v5_connect("wd-gone", session(), will("wd/gone", 1), true))
        .await;
    gone.read_packet().await;
    drop(gone);
    // wd/gone arrives after ~1 s; wd/soon (due at ~2 s) was cancelled, so
    // waiting past it, the sentinel is what follows.
    let p = watcher.next_publish().await;
    assert_eq!(&p.topic[..], b"wd/gone");
    // Not a synchronisation: a will that must not come can only be shown
    // by waiting past its 2 s delay (counted from before wd/gone's 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    watcher
        .client
        .publish("wd/end", QoS::AtMostOnce, false, "end")
        .await
        .unwrap();
    assert_eq!(
        &watcher.next_publish().await.topic[..],
        b"wd/end",
        "the cancelled will never came"
    );
}

/// The client's Receive Maximum caps what is in flight to it (control
/// packets still pass), its Maximum Packet Size drops larger deliveries;
/// Server Keep Alive and Response Information come back in CONNACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_flow_control_and_connack_properties() {
    let weft = Weft::start(1, "[mqtt]\nkeep_alive_max_s = 20\n");
    let mut sub = Raw::open(weft.addr).await;
    let props = wv5::Properties {
        receive_maximum: Some(1),
        maximum_packet_size: Some(100),
        request_response_information: Some(true),
        ..Default::default()
    };
    sub.send(&v5_connect("narrow", props, None, true)).await;
    let ack = sub.read_packet().await;
    let wv5::Packet::ConnAck(ack) = decoded(&ack) else {
        panic!()
    };
    assert_eq!(ack.properties.server_keep_alive, Some(20));
    assert_eq!(
        ack.properties.response_information,
        Some("weft/response/narrow")
    );
    let mut out = Vec::new();
    wv5::encode(
        &wv5::Packet::Subscribe(wv5::Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![(
                "fc/#",
                wv5::SubscriptionOptions {
                    qos: 1,
                    ..Default::default()
                },
            )],
        }),
        &mut out,
    )
    .unwrap();
    sub.send(&out).await;
    sub.read_packet().await; // SUBACK
                             // Same shard: each delivery is queued before its PUBACK goes out.
    let (mut publisher, _) = connect5(weft.addr, "fc-pub", |_| {}).await;
    publisher
        .client
        .publish("fc/1", QoS::AtLeastOnce, false, "one")
        .await
        .unwrap();
    publisher
        .client
        .publish("fc/big", QoS::AtLeastOnce, false, vec![0u8; 200])
        .await
        .unwrap();
    publisher
        .client
        .publish("fc/2", QoS::AtLeastOnce, false, "two")
        .await
        .unwrap();
    let mut acked = 0;
    while acked < 3 {
        if let P5::PubAck(_) = publisher.next().await {
            acked += 1;
        }
    }
    let first = sub.read_packet().await;
    let wv5::Packet::Publish(p) = decoded(&first) else {
        panic!()
    };
    assert_eq!(p.topic, "fc/1");
    let id = p.packet_id;
    // Window of one: the PINGREQ's answer overtakes the waiting fc/2.
    sub.send(&[0xc0, 0]).await;
    assert_eq!(sub.read_packet().await, vec![0xd0, 0]);
    let id = id.to_be_bytes();
    sub.send(&[0x40, 2, id[0], id[1]]).await;
    // fc/big (over 100 bytes) was discarded; fc/2 follows.
    let next = sub.read_packet().await;
    let wv5::Packet::Publish(p) = decoded(&next) else {
        panic!()
    };
    assert_eq!(p.topic, "fc/2");
}

/// Session expiry ends a session and publishes its delayed will at the
/// session's end, whichever of the two comes first (MQTT-3.1.3-9), also
/// with older sessions of longer expiry parked before it. `wx-short` (2 s
/// expiry, 8 s delay) must have its will out before `wx-sentinel` (long
/// expiry, 5 s delay), and its session must be gone once its will came.
/// Times are printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_comes_at_session_end_when_expiry_is_shorter_than_delay() {
    let weft = Weft::start(1, "");
    let (mut watcher, _) = connect5(weft.addr, "wx-watcher", |_| {}).await;
    watcher
        .subscribe(Filter::new("wx/#", QoS::AtMostOnce))
        .await;
    let expiry = |s: u32| wv5::Properties {
        session_expiry_interval: Some(s),
        ..Default::default()
    };
    let will = |topic: &'static str, delay: u32| {
        Some(Box::new(wv5::Will {
            properties: wv5::Properties {
                will_delay_interval: Some(delay),
                ..Default::default()
            },
            topic,
            payload: b"gone",
            qos: 0,
            retain: false,
        }))
    };
    // Kept for an hour, parked first.
    let mut long = Raw::open(weft.addr).await;
    long.send(&v5_connect("wx-long", expiry(3600), None, true))
        .await;
    long.read_packet().await;
    drop(long);
    let mut short = Raw::open(weft.addr).await;
    short
        .send(&v5_connect(
            "wx-short",
            expiry(2),
            will("wx/short", 8),
            true,
        ))
        .await;
    short.read_packet().await;
    let mut sentinel = Raw::open(weft.addr).await;
    sentinel
        .send(&v5_connect(
            "wx-sentinel",
            expiry(3600),
            will("wx/sentinel", 5),
            true,
        ))
        .await;
    sentinel.read_packet().await;
    let started = std::time::Instant::now();
    drop(short);
    drop(sentinel);
    let first = watcher.next_publish().await;
    eprintln!("first will {:?} after {:?}", first.topic, started.elapsed());
    assert_eq!(&first.topic[..], b"wx/short", "the session end came first");
    let (_, connections) = admin_get(weft.admin, "/connections").await;
    assert!(
        !connections.contains("\"wx-short\""),
        "the session ended with its will: {connections}"
    );
    assert!(connections.contains("\"wx-long\""), "{connections}");
    let second = watcher.next_publish().await;
    eprintln!(
        "second will {:?} after {:?}",
        second.topic,
        started.elapsed()
    );
    assert_eq!(&second.topic[..], b"wx/sentinel");
}

/// A takeover and the Will Delay Interval (MQTT 5 §3.1.2.5, §3.1.4,
/// MQTT-3.1.3-9; mosquitto 2.0 agrees on the resumed case and drops the
/// delayed will of the clean-start ones): a new connection that resumes
/// the session (Clean Start 0) comes before the delay passed, so the old
/// connection's will is never sent; a new connection with Clean Start 1
/// ends the session, so the will goes at once, delay or not — also for a
/// session already offline and waiting out its delay. The delays (60 s)
/// are longer than the test may wait: a will seen came from the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_and_will_delay() {
    let weft = Weft::start(1, "");
    let (mut watcher, _) = connect5(weft.addr, "tw-watcher", |_| {}).await;
    watcher
        .subscribe(Filter::new("tw/#", QoS::AtMostOnce))
        .await;
    let kept = || wv5::Properties {
        session_expiry_interval: Some(600),
        ..Default::default()
    };
    let will = |topic: &'static str| {
        Some(Box::new(wv5::Will {
            properties: wv5::Properties {
                will_delay_interval: Some(60),
                ..Default::default()
            },
            topic,
            payload: b"gone",
            qos: 0,
            retain: false,
        }))
    };
    // Resumed by a new connection: DISCONNECT 0x8E to the old one, no will.
    let mut old = Raw::open(weft.addr).await;
    old.send(&v5_connect("tw-resumed", kept(), will("tw/resumed"), true))
        .await;
    old.read_packet().await;
    let mut new = Raw::open(weft.addr).await;
    new.send(&v5_connect("tw-resumed", kept(), None, false))
        .await;
    new.read_packet().await;
    assert_eq!(old.read_packet().await, vec![0xe0, 1, 0x8e]);
    assert!(old.closed_by_server().await);
    // Taken over by a clean start: the session ends, its will goes now.
    let mut old = Raw::open(weft.addr).await;
    old.send(&v5_connect("tw-ended", kept(), will("tw/ended"), true))
        .await;
    old.read_packet().await;
    let mut new_clean = Raw::open(weft.addr).await;
    new_clean
        .send(&v5_connect("tw-ended", kept(), None, true))
        .await;
    new_clean.read_packet().await;
    assert_eq!(old.read_packet().await, vec![0xe0, 1, 0x8e]);
    assert_eq!(
        &watcher.next_publish().await.topic[..],
        b"tw/ended",
        "the resumed session's will never comes; the ended one's at once"
    );
    // Offline in its delay, then a clean start: the will goes now.
    let mut gone = Raw::open(weft.addr).await;
    gone.send(&v5_connect("tw-offline", kept(), will("tw/offline"), true))
        .await;
    gone.read_packet().await;
    drop(gone);
    wait_parked(weft.admin, "tw-offline").await;
    let mut back_clean = Raw::open(weft.addr).await;
    back_clean
        .send(&v5_connect("tw-offline", kept(), None, true))
        .await;
    back_clean.read_packet().await;
    assert_eq!(&watcher.next_publish().await.topic[..], b"tw/offline");
    // A fence: everything published before it has reached the watcher.
    watcher
        .client
        .publish("tw/end", QoS::AtMostOnce, false, "end")
        .await
        .unwrap();
    assert_eq!(&watcher.next_publish().await.topic[..], b"tw/end");
}
