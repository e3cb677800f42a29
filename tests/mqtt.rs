//! MQTT 3.1.1 against the running `weft` binary, with rumqttc and raw
//! sockets. Each test starts its own router on a free port.

mod common;

use std::collections::BTreeSet;

use common::*;
use rumqttc::{QoS, SubscribeReasonCode};
use weft::mqtt::codec::{self, Packet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_across_four_shards() {
    let weft = Weft::start(4, "");
    let s = &weft.shard_addrs;
    // Subscribers on shards 1, 2, 3 and one beside the publisher on shard 0.
    let mut subs = [
        (connect(s[1], "sub-1").await, "t/+/x", QoS::AtLeastOnce),
        (connect(s[2], "sub-2").await, "t/#", QoS::AtMostOnce),
        (connect(s[3], "sub-3").await, "t/a/x", QoS::AtLeastOnce),
        (connect(s[0], "sub-0").await, "+/a/+", QoS::AtLeastOnce),
    ];
    for (c, filter, qos) in subs.iter_mut() {
        assert_eq!(
            c.subscribe(filter, *qos).await,
            vec![SubscribeReasonCode::Success(*qos)]
        );
    }
    let mut publisher = connect(s[0], "pub-0").await;
    for i in 0..100 {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        publisher.publish("t/a/x", qos, format!("m{i}")).await;
    }
    publisher.pubacks(50).await;
    for (c, _, sub_qos) in subs.iter_mut() {
        for i in 0..100 {
            let p = c.next_publish().await;
            assert_eq!(p.topic, "t/a/x");
            // One publisher, one ring per shard pair: order is kept.
            assert_eq!(&p.payload[..], format!("m{i}").as_bytes(), "{}", c.id);
            let published = if i % 2 == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            let lower = if *sub_qos == QoS::AtMostOnce {
                QoS::AtMostOnce
            } else {
                published
            };
            assert_eq!(p.qos, lower, "delivered QoS is the lower one");
        }
    }
}

/// The wildcard examples of MQTT 3.1.1 §4.7, each filter held by its own
/// client, spread over two shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_matching_table() {
    let weft = Weft::start(2, "");
    let topics = [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport",
        "sport/",
        "/finance",
        "$SYS/monitor/Clients",
        "$SYS",
        "other",
    ];
    let table: &[(&str, &[&str])] = &[
        ("sport/tennis/player1/#", &topics[0..3]),
        (
            "sport/#",
            &[
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
                "sport",
                "sport/",
            ],
        ),
        ("sport/tennis/+", &["sport/tennis/player1"]),
        ("sport/+", &["sport/"]),
        ("+/+", &["sport/", "/finance"]),
        ("/+", &["/finance"]),
        ("+", &["sport", "other"]),
        (
            "#",
            &[
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
                "sport",
                "sport/",
                "/finance",
                "other",
            ],
        ),
        ("+/monitor/Clients", &[]),
        ("$SYS/#", &["$SYS/monitor/Clients", "$SYS"]),
        ("$SYS/monitor/+", &["$SYS/monitor/Clients"]),
    ];
    let mut clients = Vec::new();
    for (i, (filter, _)) in table.iter().enumerate() {
        let mut c = connect(weft.shard_addrs[i % 2], &format!("w{i}")).await;
        c.subscribe(filter, QoS::AtMostOnce).await;
        c.subscribe("end/sentinel", QoS::AtMostOnce).await;
        clients.push(c);
    }
    let publisher = connect(weft.shard_addrs[1], "publisher").await;
    for t in topics {
        publisher.publish(t, QoS::AtMostOnce, "x").await;
    }
    publisher
        .publish("end/sentinel", QoS::AtMostOnce, "end")
        .await;
    for ((filter, want), c) in table.iter().zip(clients.iter_mut()) {
        let got: BTreeSet<String> = c.topics_until("end/sentinel").await.into_iter().collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "filter {filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_acknowledged_and_delivered() {
    let weft = Weft::start(2, "[limits]\ninflight_max = 16\n");
    let mut sub = connect(weft.shard_addrs[1], "q-sub").await;
    sub.subscribe("q/1", QoS::AtLeastOnce).await;
    let mut publisher = connect(weft.shard_addrs[0], "q-pub").await;
    for i in 0..20 {
        publisher
            .publish("q/1", QoS::AtLeastOnce, vec![i as u8; 10])
            .await;
    }
    let mut acked = publisher.pubacks(20).await;
    acked.sort();
    acked.dedup();
    assert_eq!(acked.len(), 20, "one PUBACK per publish");
    for i in 0..20 {
        let p = sub.next_publish().await;
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert_ne!(p.pkid, 0);
        assert_eq!(&p.payload[..], &vec![i as u8; 10][..]);
    }
    // rumqttc acknowledged each of them: the in-flight window (16) was
    // released, or these further 100 could not all arrive.
    for i in 0..100 {
        publisher
            .publish("q/1", QoS::AtLeastOnce, vec![i as u8])
            .await;
    }
    for i in 0..100 {
        assert_eq!(&sub.next_publish().await.payload[..], &[i as u8]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let weft = Weft::start(2, "");
    let mut sub = connect(weft.shard_addrs[0], "u-sub").await;
    sub.subscribe("u/1", QoS::AtMostOnce).await;
    sub.subscribe("u/sentinel", QoS::AtMostOnce).await;
    let publisher = connect(weft.shard_addrs[1], "u-pub").await;
    publisher.publish("u/1", QoS::AtMostOnce, "before").await;
    assert_eq!(sub.next_publish().await.topic, "u/1");
    sub.unsubscribe("u/1").await;
    publisher.publish("u/1", QoS::AtMostOnce, "after").await;
    publisher
        .publish("u/sentinel", QoS::AtMostOnce, "end")
        .await;
    // Same publisher, same ring: had "after" been routed, it came first.
    assert_eq!(sub.next_publish().await.topic, "u/sentinel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_clients() {
    raise_nofile();
    let weft = Weft::start(4, "");
    let mut clients = Vec::new();
    for batch in 0..10 {
        let mut joins = Vec::new();
        for j in 0..100 {
            let i = batch * 100 + j;
            let addr = weft.addr;
            joins.push(tokio::spawn(async move {
                let mut c = connect(addr, &format!("k{i}")).await;
                c.subscribe(&format!("k/{i}"), QoS::AtMostOnce).await;
                c.subscribe("k/all", QoS::AtMostOnce).await;
                c
            }));
        }
        for j in joins {
            clients.push(j.await.unwrap());
        }
    }
    let publisher = connect(weft.addr, "k-pub").await;
    for i in 0..1000 {
        publisher
            .publish(&format!("k/{i}"), QoS::AtMostOnce, format!("{i}"))
            .await;
    }
    publisher.publish("k/all", QoS::AtMostOnce, "all").await;
    let mut joins = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        joins.push(tokio::spawn(async move {
            let own = c.next_publish().await;
            assert_eq!(own.topic, format!("k/{i}"));
            assert_eq!(&own.payload[..], format!("{i}").as_bytes());
            assert_eq!(c.next_publish().await.topic, "k/all");
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
}

fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// A subscriber that never reads: its queue fills and drops (QoS 0) while a
/// healthy subscriber of the same events receives every one, and the
/// router's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_hold_others() {
    let weft = Weft::start(
        2,
        "[limits]\nqueued_messages_max = 1000\nqueued_bytes_max = 262144\nqos1_queued_bytes_max = 524288\n[runtime]\nring_capacity = 256\n",
    );
    let mut stalled = Raw::connected(weft.shard_addrs[0], "stalled", 0).await;
    stalled.send(&subscribe_packet("s/#", 0)).await;
    assert_eq!(stalled.read_exact(5).await, vec![0x90, 3, 0, 1, 0]);
    // Shrink its receive buffer so that the router's queue is what fills.
    socket2::SockRef::from(&stalled.stream)
        .set_recv_buffer_size(4096)
        .unwrap();

    let mut healthy = connect(weft.shard_addrs[0], "healthy").await;
    healthy.subscribe("s/#", QoS::AtLeastOnce).await;
    let mut publisher = connect(weft.shard_addrs[1], "s-pub").await;
    let rss_before = weft.rss_bytes();
    let payload = vec![7u8; 4096];
    // 48 MB pass through; what the router may hold is bounded by its
    // configuration: queues (256 KiB + 512 KiB), the ring (256 events of
    // 4 KiB), the write buffer pool (32 x 128 KiB): about 6 MiB.
    let n = 12_000;
    let consumer = tokio::spawn(async move {
        for i in 0..n {
            let p = healthy.next_publish().await;
            assert_eq!(p.topic, format!("s/{}", i % 7), "message {i}");
        }
        healthy
    });
    for i in 0..n {
        publisher
            .publish(&format!("s/{}", i % 7), QoS::AtLeastOnce, payload.clone())
            .await;
    }
    publisher.pubacks(n).await;
    let _healthy = consumer.await.unwrap();
    let grown = weft.rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < 24 << 20,
        "router grew by {grown} bytes for a stalled subscriber"
    );
    // The stalled connection is still open (policy: drop), and what it gets
    // when it finally reads starts with valid PUBLISH packets.
    let first = stalled.read_exact(2).await;
    assert_eq!(first[0] & 0xf0, 0x30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_disconnected_by_policy() {
    let weft = Weft::start(
        1,
        "[limits]\nqueued_messages_max = 100\nqueued_bytes_max = 65536\nslow_consumer_policy = \"disconnect\"\n",
    );
    let mut stalled = Raw::connected(weft.addr, "stalled", 0).await;
    stalled.send(&subscribe_packet("d/#", 0)).await;
    assert_eq!(stalled.read_exact(5).await, vec![0x90, 3, 0, 1, 0]);
    socket2::SockRef::from(&stalled.stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut publisher = connect(weft.addr, "d-pub").await;
    for _ in 0..2000 {
        publisher
            .publish("d/x", QoS::AtMostOnce, vec![1u8; 2048])
            .await;
    }
    assert!(stalled.closed_by_server().await);
    // The publisher is unaffected.
    publisher.subscribe("d/back", QoS::AtMostOnce).await;
    publisher.publish("d/back", QoS::AtMostOnce, "ok").await;
    assert_eq!(publisher.next_publish().await.topic, "d/back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_its_connection() {
    let weft = Weft::start(2, "");
    let mut sub = connect(weft.shard_addrs[0], "m-sub").await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let publisher = connect(weft.shard_addrs[0], "m-pub").await;
    publisher.publish("m/1", QoS::AtLeastOnce, "one").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"one");

    // Garbage instead of CONNECT.
    let mut garbage = Raw::open(weft.shard_addrs[0]).await;
    garbage
        .send(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02])
        .await;
    assert!(garbage.closed_by_server().await);
    // Garbage after a good CONNECT.
    let mut garbage2 = Raw::connected(weft.shard_addrs[0], "g2", 30).await;
    garbage2.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(garbage2.closed_by_server().await);
    // A PUBLISH whose topic length runs past the packet's end.
    let mut truncated = Raw::connected(weft.shard_addrs[0], "t1", 30).await;
    truncated
        .send(&[0x30, 0x05, 0x00, 0x64, b'm', b'/', b'x'])
        .await;
    assert!(truncated.closed_by_server().await);
    // A PUBLISH cut off by the client closing its side mid-packet.
    let mut cut = Raw::connected(weft.shard_addrs[0], "t2", 30).await;
    cut.send(&[0x30, 0x40, 0x00, 0x03, b'm', b'/', b'x', 1, 2])
        .await;
    tokio::io::AsyncWriteExt::shutdown(&mut cut.stream)
        .await
        .unwrap_or(());
    assert!(cut.closed_by_server().await);
    // A second CONNECT.
    let mut twice = Raw::connected(weft.shard_addrs[0], "twice", 30).await;
    twice.send(&connect_packet("twice", 30, 4, true)).await;
    assert!(twice.closed_by_server().await);
    // An oversize packet, refused from its header alone.
    let mut big = Raw::connected(weft.shard_addrs[0], "big", 30).await;
    let mut header = vec![0x30];
    codec::put_remaining_length(&mut header, 50 << 20);
    big.send(&header).await;
    assert!(big.closed_by_server().await);
    // A wildcard in a PUBLISH topic.
    let mut wild = Raw::connected(weft.shard_addrs[0], "wild", 30).await;
    let mut p = Vec::new();
    codec::put_publish(&mut p, false, 0, false, b"m/+", 0, b"x");
    wild.send(&p).await;
    assert!(wild.closed_by_server().await);

    // Everyone else carries on, and the half-sent "m/x" was never routed.
    publisher.publish("m/2", QoS::AtLeastOnce, "two").await;
    let p = sub.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("m/2", &b"two"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rules() {
    let weft = Weft::start(1, "");
    // Protocol level 3 under the name MQTT: CONNACK 0x01, then close.
    let mut old = Raw::open(weft.addr).await;
    old.send(&connect_packet("old", 30, 3, true)).await;
    assert_eq!(old.read_exact(4).await, vec![0x20, 2, 0, 1]);
    assert!(old.closed_by_server().await);
    // Empty client id without clean session: CONNACK 0x02.
    let mut anon = Raw::open(weft.addr).await;
    anon.send(&connect_packet("", 30, 4, false)).await;
    assert_eq!(anon.read_exact(4).await, vec![0x20, 2, 0, 2]);
    assert!(anon.closed_by_server().await);
    // Empty client id with clean session: accepted, an id is assigned.
    let mut assigned = Raw::open(weft.addr).await;
    assigned.send(&connect_packet("", 30, 4, true)).await;
    assert_eq!(assigned.read_exact(4).await, vec![0x20, 2, 0, 0]);
    // Anything but CONNECT first.
    let mut early = Raw::open(weft.addr).await;
    early.send(&[0xc0, 0x00]).await;
    assert!(early.closed_by_server().await);
    // PINGREQ answered with PINGRESP.
    assigned.send(&[0xc0, 0x00]).await;
    assert_eq!(assigned.read_exact(2).await, vec![0xd0, 0]);
    // A refused filter gets 0x80 beside a granted one (QoS 2 granted).
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 9,
            filters: vec![("a/#/b", 0), ("a/b", 2)],
        },
        &mut out,
    );
    assigned.send(&out).await;
    assert_eq!(assigned.read_exact(6).await, vec![0x90, 4, 0, 9, 0x80, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_expiry_closes_the_connection() {
    let weft = Weft::start(1, "");
    let mut quiet = Raw::connected(weft.addr, "quiet", 1).await;
    let mut chatty = Raw::connected(weft.addr, "chatty", 1).await;
    // chatty pings every 400 ms and must outlive quiet.
    let pinger = tokio::spawn(async move {
        for _ in 0..10 {
            chatty.send(&[0xc0, 0x00]).await;
            assert_eq!(chatty.read_exact(2).await, vec![0xd0, 0]);
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
    });
    assert!(quiet.closed_by_server().await);
    pinger.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_published_on_abnormal_close_only() {
    let weft = Weft::start(2, "");
    let mut watcher = connect(weft.shard_addrs[1], "watcher").await;
    watcher.subscribe("will/#", QoS::AtMostOnce).await;
    let with_will = |id: &str| {
        let will = codec::Will {
            topic: "will/gone",
            payload: id.as_bytes(),
            qos: 0,
            retain: false,
        };
        connect_packet_with_will(id, 30, will)
    };
    let mut polite = Raw::open(weft.shard_addrs[0]).await;
    polite.send(&with_will("polite")).await;
    polite.read_exact(4).await;
    polite.send(&[0xe0, 0x00]).await;
    assert!(polite.closed_by_server().await);
    let mut rude = Raw::open(weft.shard_addrs[0]).await;
    rude.send(&with_will("rude")).await;
    rude.read_exact(4).await;
    drop(rude);
    let p = watcher.next_publish().await;
    assert_eq!(
        &p.payload[..],
        b"rude",
        "only the abnormal close publishes its will"
    );
}

/// Retained messages: set, replace, delete with an empty payload, delivered
/// on (wildcard) subscribe with the retain flag, from a shard other than the
/// one that stored them; live deliveries carry retain 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_across_shards() {
    let weft = Weft::start(3, "");
    let mut live = connect(weft.shard_addrs[2], "live").await;
    live.subscribe("r/#", QoS::AtMostOnce).await;
    let mut publisher = connect(weft.shard_addrs[0], "retainer").await;
    publisher
        .publish_retained("r/1", QoS::AtLeastOnce, "one")
        .await;
    publisher
        .publish_retained("r/2", QoS::AtLeastOnce, "two")
        .await;
    publisher
        .publish_retained("r/deep/3", QoS::AtLeastOnce, "three")
        .await;
    publisher.pubacks(3).await;
    let p = live.next_publish().await;
    assert!(!p.retain, "live delivery has retain 0 (MQTT-3.3.1-9)");

    let mut late = connect(weft.shard_addrs[1], "late").await;
    late.subscribe("r/+", QoS::AtLeastOnce).await;
    let mut got: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for _ in 0..2 {
        let p = late.next_publish().await;
        got.push((p.topic.clone(), p.payload.to_vec(), p.retain));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("r/1".into(), b"one".to_vec(), true),
            ("r/2".into(), b"two".to_vec(), true)
        ]
    );

    // Replace one, delete another.
    publisher
        .publish_retained("r/1", QoS::AtLeastOnce, "uno")
        .await;
    publisher
        .publish_retained("r/2", QoS::AtLeastOnce, "")
        .await;
    publisher.pubacks(2).await;
    let mut later = connect(weft.shard_addrs[2], "later").await;
    later.subscribe("r/#", QoS::AtMostOnce).await;
    later.subscribe("end", QoS::AtMostOnce).await;
    publisher.publish("end", QoS::AtMostOnce, "").await;
    let mut topics = later.topics_until("end").await;
    topics.sort();
    // r/# matched r/1 (replaced) and r/deep/3 (retained), and the live
    // publishes to r/1 and r/2 that followed its subscription: none.
    assert_eq!(topics, vec!["r/1", "r/deep/3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_retain_is_honoured() {
    let weft = Weft::start(2, "");
    let will = codec::Will {
        topic: "status/mortal",
        payload: b"offline",
        qos: 1,
        retain: true,
    };
    let out = connect_packet_with_will("mortal", 30, will);
    let mut mortal = Raw::open(weft.shard_addrs[0]).await;
    mortal.send(&out).await;
    mortal.read_exact(4).await;
    drop(mortal);
    // The will is stored once the connection is gone; poll with fresh
    // subscribers (bounded by WAIT).
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let mut c = connect(weft.shard_addrs[1], &format!("watcher{n}")).await;
        c.subscribe("status/+", QoS::AtLeastOnce).await;
        c.subscribe("probe", QoS::AtMostOnce).await;
        c.publish("probe", QoS::AtMostOnce, "").await;
        let p = c.next_publish().await;
        if p.topic == "status/mortal" {
            assert!(p.retain);
            assert_eq!(&p.payload[..], b"offline");
            assert_eq!(p.qos, QoS::AtLeastOnce);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retained will never appeared"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_published_on_keep_alive_timeout() {
    let weft = Weft::start(2, "");
    let mut watcher = connect(weft.shard_addrs[1], "ka-watcher").await;
    watcher.subscribe("ka/#", QoS::AtMostOnce).await;
    let will = codec::Will {
        topic: "ka/sleeper",
        payload: b"timed out",
        qos: 0,
        retain: false,
    };
    let out = connect_packet_with_will("sleeper", 1, will);
    let mut sleeper = Raw::open(weft.shard_addrs[0]).await;
    sleeper.send(&out).await;
    sleeper.read_exact(4).await;
    // Silent past 1.5 x keep-alive: closed, and the will goes out.
    assert!(sleeper.closed_by_server().await);
    let p = watcher.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("ka/sleeper", &b"timed out"[..])
    );
}

/// An MQTT 3.1 CONNECT (protocol name `MQIsdp`, level 3), as old clients and
/// `mosquitto_sub -V mqttv31` send it.
fn connect_31(id: &str, clean: bool) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(
        &Packet::Connect(codec::Connect {
            protocol_name: codec::PROTOCOL_NAME_31,
            level: codec::PROTOCOL_LEVEL_31,
            clean_session: clean,
            keep_alive_s: 30,
            client_id: id,
            will: None,
            username: None,
            password: None,
        }),
        &mut out,
    );
    assert_eq!(&out[2..10], b"\0\x06MQIsdp");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_31_clients_are_served() {
    let weft = Weft::launch(2, "", Some("info"), true);
    let publisher = connect(weft.shard_addrs[1], "v311-pub").await;

    // A 3.1 subscriber: CONNACK 0, SUBSCRIBE, and a PUBLISH from a 3.1.1
    // client on the other shard reaches it.
    let mut old = Raw::open(weft.shard_addrs[0]).await;
    old.send(&connect_31("mqtt31-sub", true)).await;
    assert_eq!(old.read_exact(4).await, vec![0x20, 2, 0, 0]);
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 1,
            filters: vec![("old/#", 1)],
        },
        &mut out,
    );
    old.send(&out).await;
    assert_eq!(old.read_exact(5).await, vec![0x90, 3, 0, 1, 1]);
    publisher.publish("old/x", QoS::AtMostOnce, "hi").await;
    let mut p = Vec::new();
    codec::put_publish(&mut p, false, 0, false, b"old/x", 0, b"hi");
    assert_eq!(old.read_exact(p.len()).await, p);

    // 3.1 limits the client id to 23 characters: 23 is accepted…
    let mut at_limit = Raw::open(weft.addr).await;
    at_limit.send(&connect_31(&"a".repeat(23), true)).await;
    assert_eq!(at_limit.read_exact(4).await, vec![0x20, 2, 0, 0]);
    // …24 is refused with CONNACK 2, and the log says why.
    let mut long = Raw::open(weft.addr).await;
    long.send(&connect_31(&"b".repeat(24), true)).await;
    assert_eq!(long.read_exact(4).await, vec![0x20, 2, 0, 2]);
    assert!(long.closed_by_server().await);
    let line = weft.wait_for_log("CONNECT refused");
    assert!(line.contains(&"b".repeat(24)), "{line}");
    assert!(line.contains("23 bytes"), "{line}");
    assert!(line.contains("peer=Some(127.0.0.1:"), "{line}");
    // An empty client id is refused too (3.1 wants 1 to 23 characters).
    let mut empty = Raw::open(weft.addr).await;
    empty.send(&connect_31("", true)).await;
    assert_eq!(empty.read_exact(4).await, vec![0x20, 2, 0, 2]);
    // A name and a level that do not belong together: CONNACK 1.
    let mut mixed = connect_31("mixed", true);
    mixed[10] = codec::PROTOCOL_LEVEL_311;
    let mut wrong = Raw::open(weft.addr).await;
    wrong.send(&mixed).await;
    assert_eq!(wrong.read_exact(4).await, vec![0x20, 2, 0, 1]);
    assert!(wrong.closed_by_server().await);
}

/// Every CONNECT refusal and protocol-error close logs one line with the
/// peer, the client id when known, and the reason in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_protocol_errors_are_logged_in_words() {
    use weft::mqtt::v5::{self, Properties};
    let weft = Weft::launch(1, "", Some("info"), true);
    let v5_encode = |p: &v5::Packet<'_>| {
        let mut out = Vec::new();
        v5::encode(p, &mut out).unwrap();
        out
    };
    let v5_connect = |id: &str| {
        v5_encode(&v5::Packet::Connect(v5::Connect {
            clean_start: true,
            keep_alive_s: 30,
            properties: Properties::default(),
            client_id: id,
            will: None,
            username: None,
            password: None,
        }))
    };
    let line_with = |needle: &str| {
        let line = weft.wait_for_log(needle);
        assert!(line.contains("peer=Some(127.0.0.1:"), "{line}");
        line
    };

    // MQTT 3.1.1: an empty client id without clean session (CONNACK 2).
    let mut anon = Raw::open(weft.addr).await;
    anon.send(&connect_packet("", 30, 4, false)).await;
    assert_eq!(anon.read_exact(4).await, vec![0x20, 2, 0, 2]);
    let line = line_with("empty client id without clean session");
    assert!(line.contains("CONNECT refused"), "{line}");

    // MQTT 5: a client id over limits.client_id_bytes_max (CONNACK 0x85).
    let long = "L".repeat(300);
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&v5_connect(&long)).await;
    assert!(raw.closed_by_server().await);
    let line = line_with("MQTT 5 CONNECT refused");
    assert!(line.contains(&long), "{line}");
    assert!(line.contains("Client Identifier not valid"), "{line}");
    assert!(line.contains("client_id_bytes_max"), "{line}");

    // MQTT 5: a PUBLISH to a wildcard topic (DISCONNECT 0x90).
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&v5_connect("bad-topic")).await;
    let _connack = raw.read_packet().await;
    raw.send(&v5_encode(&v5::Packet::Publish(v5::Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: "a/+",
        packet_id: 0,
        properties: Properties::default(),
        payload: b"x",
    })))
    .await;
    assert_eq!(raw.read_packet().await, vec![0xe0, 1, 0x90]);
    let line = line_with("closing MQTT 5 connection: protocol error");
    assert!(line.contains("bad-topic"), "{line}");
    assert!(line.contains("0x90 Topic Name invalid"), "{line}");

    // MQTT 3.1.1: a second CONNECT closes the connection, logged with the
    // client id.
    let mut twice = Raw::connected(weft.addr, "twice", 30).await;
    twice.send(&connect_packet("twice", 30, 4, true)).await;
    assert!(twice.closed_by_server().await);
    let line = line_with("second CONNECT");
    assert!(line.contains("twice"), "{line}");
}

/// MQTT-4.7.3-1: every topic filter is at least one character; in 3.1.1
/// an empty one is a protocol violation, which closes the connection
/// (§4.8), in SUBSCRIBE as in UNSUBSCRIBE. A merely invalid filter still
/// gets SUBACK 0x80 and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_topic_filter_closes_a_311_connection() {
    let weft = Weft::start(1, "");
    let mut raw = Raw::connected(weft.addr, "bad-wildcard", 30).await;
    raw.send_packet(&codec::Packet::Subscribe {
        packet_id: 1,
        filters: vec![("a/#/b", 0)],
    })
    .await;
    assert_eq!(raw.read_exact(5).await, vec![0x90, 3, 0, 1, 0x80]);
    raw.send(&[0xc0, 0]).await;
    assert_eq!(raw.read_exact(2).await, vec![0xd0, 0], "still served");
    let mut raw = Raw::connected(weft.addr, "empty-sub", 30).await;
    raw.send_packet(&codec::Packet::Subscribe {
        packet_id: 1,
        filters: vec![("ok/#", 0), ("", 0)],
    })
    .await;
    assert!(raw.closed_by_server().await);
    let mut raw = Raw::connected(weft.addr, "empty-unsub", 30).await;
    raw.send_packet(&codec::Packet::Unsubscribe {
        packet_id: 1,
        filters: vec![""],
    })
    .await;
    assert!(raw.closed_by_server().await);
}
