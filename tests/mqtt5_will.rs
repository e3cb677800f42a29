//! MQTT 5.0 wills and flow control against the running binary (rumqttc's
//! v5 client and raw v5 packets): the Will Delay Interval, the will at a
//! session's end, takeover with Clean Start, the client's Receive Maximum
//! and Maximum Packet Size, CONNACK properties.

mod common;

#[path = "support/mqtt5.rs"]
mod mqtt5;

use std::time::Duration;

use common::*;
use mqtt5::*;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet as P5};
use rumqttc::v5::mqttbytes::QoS;
use weft::mqtt::v5 as wv5;

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
