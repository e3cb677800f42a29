//! MQTT 3.1.1 sessions across connections and shards: clean session 0
//! kept offline and resumed on another shard (queued QoS 1 delivered,
//! unacknowledged ones resent with DUP and their packet ids), clean session
//! 1 discarding, and a client id taken over by a new connection.

mod common;

use common::*;
use rumqttc::{MqttOptions, QoS};
use weft::mqtt::codec::{self, Packet};

fn connect_packet(id: &str, clean: bool) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(
        &Packet::Connect(codec::Connect {
            protocol_name: codec::PROTOCOL_NAME,
            level: 4,
            clean_session: clean,
            keep_alive_s: 60,
            client_id: id,
            will: None,
            username: None,
            password: None,
        }),
        &mut out,
    );
    out
}

/// Opens a raw connection and returns it with CONNACK's session present.
async fn raw_connect(addr: std::net::SocketAddr, id: &str, clean: bool) -> (Raw, bool) {
    let mut raw = Raw::open(addr).await;
    raw.send(&connect_packet(id, clean)).await;
    let ack = raw.read_exact(4).await;
    assert_eq!(&ack[..2], &[0x20, 2]);
    assert_eq!(ack[3], 0, "CONNACK accepted");
    (raw, ack[2] == 1)
}

fn publish_of(bytes: &[u8]) -> (bool, u8, String, u16, Vec<u8>) {
    match codec::decode(bytes, &codec::DecodeLimits::default())
        .unwrap()
        .unwrap()
        .0
    {
        Packet::Publish(p) => (
            p.dup,
            p.qos,
            p.topic.to_string(),
            p.packet_id,
            p.payload.to_vec(),
        ),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_resumes_on_another_shard() {
    let weft = Weft::start(3, "");
    let (mut sub, present) = raw_connect(weft.shard_addrs[0], "keeper", false).await;
    assert!(!present, "a new session is not present");
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 1,
            filters: vec![("p/#", 1)],
        },
        &mut out,
    );
    sub.send(&out).await;
    assert_eq!(sub.read_exact(5).await, vec![0x90, 3, 0, 1, 1]);
    sub.send(&[0xe0, 0]).await; // DISCONNECT: the session stays
    assert!(sub.closed_by_server().await);

    let mut publisher = connect(weft.shard_addrs[1], "pub").await;
    for i in 0..5 {
        publisher
            .publish("p/x", QoS::AtLeastOnce, format!("q1-{i}"))
            .await;
        publisher
            .publish("p/x", QoS::AtMostOnce, format!("q0-{i}"))
            .await;
    }
    publisher.pubacks(5).await;

    // Back, on another shard: session present, the QoS 1 events queued
    // while away arrive in order (QoS 0 ones are not kept).
    let (mut back, present) = raw_connect(weft.shard_addrs[2], "keeper", false).await;
    assert!(present, "session present after resuming");
    for i in 0..5 {
        let (dup, qos, topic, id, payload) = publish_of(&back.read_packet().await);
        assert_eq!((dup, qos, topic.as_str()), (false, 1, "p/x"));
        assert_eq!(payload, format!("q1-{i}").into_bytes());
        let id = id.to_be_bytes();
        back.send(&[0x40, 2, id[0], id[1]]).await;
    }
    // The subscription itself came along.
    publisher.publish("p/y", QoS::AtLeastOnce, "live").await;
    let (_, _, topic, _, payload) = publish_of(&back.read_packet().await);
    assert_eq!((topic.as_str(), payload.as_slice()), ("p/y", &b"live"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_deliveries_are_resent_with_dup() {
    let weft = Weft::start(2, "");
    let (mut sub, _) = raw_connect(weft.shard_addrs[0], "forgetful", false).await;
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 1,
            filters: vec![("d/1", 1)],
        },
        &mut out,
    );
    sub.send(&out).await;
    sub.read_exact(5).await;
    let publisher = connect(weft.shard_addrs[1], "pub").await;
    publisher.publish("d/1", QoS::AtLeastOnce, "first").await;
    let (dup, _, _, first_id, payload) = publish_of(&sub.read_packet().await);
    assert!(!dup);
    assert_eq!(payload, b"first");
    drop(sub); // gone without PUBACK

    let (mut back, present) = raw_connect(weft.shard_addrs[1], "forgetful", false).await;
    assert!(present);
    let (dup, qos, topic, id, payload) = publish_of(&back.read_packet().await);
    assert!(dup, "resent with DUP (MQTT-4.4.0-1)");
    assert_eq!(
        (qos, topic.as_str(), id, payload.as_slice()),
        (1, "d/1", first_id, &b"first"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_discards_and_client_id_is_taken_over() {
    let weft = Weft::start(2, "");
    let (mut first, _) = raw_connect(weft.shard_addrs[0], "same-id", false).await;
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 1,
            filters: vec![("c/#", 1)],
        },
        &mut out,
    );
    first.send(&out).await;
    first.read_exact(5).await;
    // A second connection with the same id, on the other shard: the first
    // is disconnected (MQTT-3.1.4-2) and the session resumes.
    let (second, present) = raw_connect(weft.shard_addrs[1], "same-id", false).await;
    assert!(present);
    assert!(first.closed_by_server().await);
    // Clean session 1 discards the kept state.
    drop(second.stream);
    let (third, present) = raw_connect(weft.shard_addrs[0], "same-id", true).await;
    assert!(!present, "clean session starts empty");
    drop(third);
    // ... and leaves nothing behind when it ends.
    let (_fourth, present) = raw_connect(weft.shard_addrs[1], "same-id", false).await;
    assert!(!present, "nothing kept after a clean session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_persistent_session() {
    let weft = Weft::start(2, "");
    let mut opts = MqttOptions::new(
        "rumq-keeper",
        weft.shard_addrs[0].ip().to_string(),
        weft.shard_addrs[0].port(),
    );
    opts.set_clean_session(false);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    client.subscribe("k/1", QoS::AtLeastOnce).await.unwrap();
    loop {
        if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) =
            eventloop.poll().await.unwrap()
        {
            break;
        }
    }
    client.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}
    let publisher = connect(weft.shard_addrs[1], "rumq-pub").await;
    publisher
        .publish("k/1", QoS::AtLeastOnce, "while away")
        .await;
    let mut opts = MqttOptions::new(
        "rumq-keeper",
        weft.shard_addrs[1].ip().to_string(),
        weft.shard_addrs[1].port(),
    );
    opts.set_clean_session(false);
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut session_present = None;
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .unwrap()
            .unwrap();
        match event {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => {
                session_present = Some(ack.session_present)
            }
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                assert_eq!(session_present, Some(true));
                assert_eq!(&p.payload[..], b"while away");
                break;
            }
            _ => {}
        }
    }
}

/// A kept session without a connection ends after
/// `offline_session_expiry_s` (watched through the admin metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sessions_expire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let weft = Weft::start(2, "[limits]\noffline_session_expiry_s = 1\n");
    let offline = || async {
        let mut s = tokio::net::TcpStream::connect(weft.admin).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        body.lines()
            .filter(|l| l.starts_with("weft_offline_sessions{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    let (c, _) = raw_connect(weft.shard_addrs[0], "ephemeral", false).await;
    drop(c);
    let deadline = std::time::Instant::now() + WAIT;
    while offline().await != 1 {
        assert!(std::time::Instant::now() < deadline, "session never kept");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    while offline().await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "session never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_c, present) = raw_connect(weft.shard_addrs[1], "ephemeral", false).await;
    assert!(!present, "an expired session is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_exactly_once_to_a_qos2_subscriber() {
    let weft = Weft::start(2, "");
    let mut sub = connect(weft.shard_addrs[1], "q2-sub").await;
    sub.subscribe("q2/#", QoS::ExactlyOnce).await;
    let publisher = connect(weft.shard_addrs[0], "q2-pub").await;
    for i in 0..50 {
        publisher
            .publish("q2/x", QoS::ExactlyOnce, format!("{i}"))
            .await;
    }
    for i in 0..50 {
        let p = sub.next_publish().await;
        assert_eq!(p.qos, QoS::ExactlyOnce);
        assert_eq!(&p.payload[..], format!("{i}").as_bytes(), "in order, once");
    }
    publisher.publish("q2/end", QoS::AtMostOnce, "end").await;
    assert_eq!(
        sub.next_publish().await.topic,
        "q2/end",
        "no duplicate before the end marker"
    );
}

/// QoS 2 across a reconnection in the middle of the flow: a delivery not
/// yet PUBREC'd is resent (DUP), one PUBREC'd gets its PUBREL again, and
/// neither is delivered twice as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_survives_a_reconnect_mid_flow() {
    let weft = Weft::start(2, "");
    let (mut sub, _) = raw_connect(weft.shard_addrs[0], "q2-keeper", false).await;
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 1,
            filters: vec![("m2/#", 2)],
        },
        &mut out,
    );
    sub.send(&out).await;
    assert_eq!(sub.read_exact(5).await, vec![0x90, 3, 0, 1, 2]);
    let publisher = connect(weft.shard_addrs[1], "q2-pub").await;
    publisher.publish("m2/a", QoS::ExactlyOnce, "a").await;
    publisher.publish("m2/b", QoS::ExactlyOnce, "b").await;
    let (_, qos, _, id_a, payload) = publish_of(&sub.read_packet().await);
    assert_eq!((qos, payload.as_slice()), (2, &b"a"[..]));
    let (_, _, _, id_b, payload) = publish_of(&sub.read_packet().await);
    assert_eq!(payload, b"b");
    // PUBREC for a only, then the connection drops.
    let a = id_a.to_be_bytes();
    sub.send(&[0x50, 2, a[0], a[1]]).await;
    assert_eq!(
        sub.read_packet().await,
        vec![0x62, 2, a[0], a[1]],
        "PUBREL for a"
    );
    drop(sub);

    let (mut back, present) = raw_connect(weft.shard_addrs[1], "q2-keeper", false).await;
    assert!(present);
    // a: PUBREL again (not a new PUBLISH); b: PUBLISH again with DUP.
    assert_eq!(back.read_packet().await, vec![0x62, 2, a[0], a[1]]);
    let (dup, qos, topic, id, payload) = publish_of(&back.read_packet().await);
    assert_eq!(
        (dup, qos, topic.as_str(), id, payload.as_slice()),
        (true, 2, "m2/b", id_b, &b"b"[..])
    );
    // Complete both flows; nothing else follows.
    back.send(&[0x70, 2, a[0], a[1]]).await;
    let b = id_b.to_be_bytes();
    back.send(&[0x50, 2, b[0], b[1]]).await;
    assert_eq!(back.read_packet().await, vec![0x62, 2, b[0], b[1]]);
    back.send(&[0x70, 2, b[0], b[1]]).await;
    publisher.publish("m2/end", QoS::AtMostOnce, "end").await;
    let (_, _, topic, _, _) = publish_of(&back.read_packet().await);
    assert_eq!(topic, "m2/end");
}
