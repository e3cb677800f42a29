//! Every MQTT 5 reason code the router sends, provoked over raw v5
//! connections and checked on the wire; malformed properties are refused
//! connection by connection.

mod common;

use common::*;
use weft::mqtt::v5::{self, reason, Packet, Properties};

fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    v5::encode(p, &mut out).unwrap();
    out
}

fn connect(id: &str, props: Properties<'static>) -> Vec<u8> {
    encode(&Packet::Connect(v5::Connect {
        clean_start: true,
        keep_alive_s: 30,
        properties: props,
        client_id: id,
        will: None,
        username: None,
        password: None,
    }))
}

/// The reason code of the next packet (CONNACK, acks, DISCONNECT).
async fn next_code(raw: &mut Raw) -> (v5::PacketType, Vec<u8>) {
    let bytes = raw.read_packet().await;
    let (p, _) = v5::decode(&bytes, &v5::DecodeLimits::default())
        .unwrap()
        .unwrap();
    match p {
        Packet::ConnAck(a) => (v5::PacketType::ConnAck, vec![a.reason_code]),
        Packet::PubAck(r) => (v5::PacketType::PubAck, vec![r.reason_code]),
        Packet::PubRec(r) => (v5::PacketType::PubRec, vec![r.reason_code]),
        Packet::PubRel(r) => (v5::PacketType::PubRel, vec![r.reason_code]),
        Packet::PubComp(r) => (v5::PacketType::PubComp, vec![r.reason_code]),
        Packet::SubAck(a) => (v5::PacketType::SubAck, a.reason_codes.to_vec()),
        Packet::UnsubAck(a) => (v5::PacketType::UnsubAck, a.reason_codes.to_vec()),
        Packet::Disconnect(d) => (v5::PacketType::Disconnect, vec![d.reason_code]),
        other => panic!("unexpected {other:?}"),
    }
}

async fn session(addr: std::net::SocketAddr, id: &str) -> Raw {
    let mut raw = Raw::open(addr).await;
    raw.send(&connect(id, Properties::default())).await;
    assert_eq!(
        next_code(&mut raw).await,
        (v5::PacketType::ConnAck, vec![reason::SUCCESS])
    );
    raw
}

fn publish(
    topic: &str,
    qos: u8,
    id: u16,
    props: Properties<'static>,
    payload: &'static [u8],
) -> Vec<u8> {
    encode(&Packet::Publish(v5::Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        packet_id: id,
        properties: props,
        payload,
    }))
}

/// Expects DISCONNECT with `code`, then the end of the connection.
async fn disconnected(raw: &mut Raw, code: u8) {
    assert_eq!(
        next_code(raw).await,
        (v5::PacketType::Disconnect, vec![code]),
        "DISCONNECT {code:#x}"
    );
    assert!(raw.closed_by_server().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reason_code_the_router_sends() {
    let weft = Weft::start(
        1,
        "[limits]\nsubscriptions_per_session_max = 2\ninflight_max = 2\npacket_bytes_max = 4096\n",
    );
    let addr = weft.addr;
    let mut bystander = connect_v311_watch(addr).await;

    // CONNACK 0x85: client identifier not valid (too long).
    let mut raw = Raw::open(addr).await;
    raw.send(&connect(&"x".repeat(300), Properties::default()))
        .await;
    assert_eq!(
        next_code(&mut raw).await,
        (
            v5::PacketType::ConnAck,
            vec![reason::CLIENT_IDENTIFIER_NOT_VALID]
        )
    );
    // CONNACK 0x90: will topic with a wildcard.
    let mut raw = Raw::open(addr).await;
    raw.send(&encode(&Packet::Connect(v5::Connect {
        clean_start: true,
        keep_alive_s: 30,
        properties: Properties::default(),
        client_id: "bad-will",
        will: Some(Box::new(v5::Will {
            properties: Properties::default(),
            topic: "w/#",
            payload: b"x",
            qos: 0,
            retain: false,
        })),
        username: None,
        password: None,
    })))
    .await;
    assert_eq!(
        next_code(&mut raw).await,
        (v5::PacketType::ConnAck, vec![reason::TOPIC_NAME_INVALID])
    );
    // CONNACK 0x81: a malformed CONNECT (duplicate property).
    let mut raw = Raw::open(addr).await;
    let mut bytes = connect(
        "dup-prop",
        Properties {
            receive_maximum: Some(5),
            ..Default::default()
        },
    );
    // Duplicate the Receive Maximum property (id 0x21, 2 bytes) in place.
    let at = bytes.windows(3).position(|w| w == [0x21, 0, 5]).unwrap();
    bytes.splice(at..at, [0x21, 0, 5]);
    bytes[1] += 3; // remaining length
    bytes[at - 1] += 3; // property length
    raw.send(&bytes).await;
    assert_eq!(
        next_code(&mut raw).await,
        (v5::PacketType::ConnAck, vec![reason::PROTOCOL_ERROR])
    );

    // CONNACK 0x95: a CONNECT larger than packet_bytes_max, refused from
    // its header (only the first bytes are sent).
    let mut raw = Raw::open(addr).await;
    let big = connect(&"y".repeat(5000), Properties::default());
    raw.send(&big[..16]).await;
    assert_eq!(
        next_code(&mut raw).await,
        (v5::PacketType::ConnAck, vec![reason::PACKET_TOO_LARGE])
    );
    // CONNACK 0x81: a malformed CONNECT (reserved flag bit set).
    let mut raw = Raw::open(addr).await;
    let mut bad = connect("reserved-flag", Properties::default());
    let flags_at = bad.iter().position(|&b| b == 5).unwrap() + 1; // after the level byte
    bad[flags_at] |= 1;
    raw.send(&bad).await;
    assert_eq!(
        next_code(&mut raw).await,
        (v5::PacketType::ConnAck, vec![reason::MALFORMED_PACKET])
    );

    let mut s = session(addr, "codes").await;
    // SUBACK: granted 0, 1, 2; 0x8F invalid filter; 0x97 over the quota.
    s.send(&encode(&Packet::Subscribe(v5::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![
            (
                "c/0",
                v5::SubscriptionOptions {
                    qos: 0,
                    ..Default::default()
                },
            ),
            (
                "c/#/x",
                v5::SubscriptionOptions {
                    qos: 1,
                    ..Default::default()
                },
            ),
            (
                "c/2",
                v5::SubscriptionOptions {
                    qos: 2,
                    ..Default::default()
                },
            ),
            (
                "c/3",
                v5::SubscriptionOptions {
                    qos: 1,
                    ..Default::default()
                },
            ),
        ],
    })))
    .await;
    assert_eq!(
        next_code(&mut s).await,
        (
            v5::PacketType::SubAck,
            vec![0, reason::TOPIC_FILTER_INVALID, 2, reason::QUOTA_EXCEEDED]
        )
    );
    // UNSUBACK: 0x00 and 0x11 (no subscription existed).
    s.send(&encode(&Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: 2,
        properties: Properties::default(),
        filters: vec!["c/0", "never"],
    })))
    .await;
    assert_eq!(
        next_code(&mut s).await,
        (
            v5::PacketType::UnsubAck,
            vec![0, reason::NO_SUBSCRIPTION_EXISTED]
        )
    );
    // PUBACK 0x00 (c/2 has a subscriber), 0x10 (no subscribers), 0x99.
    s.send(&publish("c/2", 1, 3, Properties::default(), b"x"))
        .await;
    let own = s.read_packet().await; // routed first: c/2 comes back (no no-local)
    assert_eq!(own[0] & 0xf0, 0x30);
    assert_eq!(
        next_code(&mut s).await,
        (v5::PacketType::PubAck, vec![reason::SUCCESS])
    );
    s.send(&publish("nobody", 1, 4, Properties::default(), b"x"))
        .await;
    assert_eq!(
        next_code(&mut s).await,
        (
            v5::PacketType::PubAck,
            vec![reason::NO_MATCHING_SUBSCRIBERS]
        )
    );
    let utf8 = Properties {
        payload_format_indicator: Some(1),
        ..Default::default()
    };
    s.send(&publish("nobody", 1, 5, utf8, b"\xff\xfe")).await;
    assert_eq!(
        next_code(&mut s).await,
        (v5::PacketType::PubAck, vec![reason::PAYLOAD_FORMAT_INVALID])
    );
    // PUBREC 0x10; PUBCOMP 0x00 and 0x92; PUBREL 0x92.
    s.send(&publish("nobody", 2, 6, Properties::default(), b"x"))
        .await;
    assert_eq!(
        next_code(&mut s).await,
        (
            v5::PacketType::PubRec,
            vec![reason::NO_MATCHING_SUBSCRIBERS]
        )
    );
    let rel = |id| encode(&Packet::PubRel(v5::PubResp::ok(id)));
    s.send(&rel(6)).await;
    assert_eq!(
        next_code(&mut s).await,
        (v5::PacketType::PubComp, vec![reason::SUCCESS])
    );
    s.send(&rel(99)).await;
    assert_eq!(
        next_code(&mut s).await,
        (
            v5::PacketType::PubComp,
            vec![reason::PACKET_IDENTIFIER_NOT_FOUND]
        )
    );
    s.send(&encode(&Packet::PubRec(v5::PubResp::ok(77)))).await;
    assert_eq!(
        next_code(&mut s).await,
        (
            v5::PacketType::PubRel,
            vec![reason::PACKET_IDENTIFIER_NOT_FOUND]
        )
    );

    // Server DISCONNECTs, each on its own connection.
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        (
            "second-connect",
            connect("again", Properties::default()),
            reason::PROTOCOL_ERROR,
        ),
        (
            "wildcard-topic",
            publish("a/+", 0, 0, Properties::default(), b"x"),
            reason::TOPIC_NAME_INVALID,
        ),
        (
            "alias-zero",
            publish(
                "a",
                0,
                0,
                Properties {
                    topic_alias: Some(0),
                    ..Default::default()
                },
                b"x",
            ),
            reason::PROTOCOL_ERROR,
        ),
        (
            "bad-utf8-qos0",
            publish(
                "a",
                0,
                0,
                Properties {
                    payload_format_indicator: Some(1),
                    ..Default::default()
                },
                b"\xff",
            ),
            reason::PAYLOAD_FORMAT_INVALID,
        ),
        (
            "auth",
            encode(&Packet::Auth(v5::ReasonOnly::new(0x18))),
            reason::PROTOCOL_ERROR,
        ),
        (
            "too-large",
            publish("a", 0, 0, Properties::default(), &[0u8; 5000]),
            reason::PACKET_TOO_LARGE,
        ),
        (
            "malformed",
            vec![0x30, 0x04, 0x00, 0x02, 0xff, 0xfe],
            reason::MALFORMED_PACKET,
        ),
    ];
    for (id, bytes, code) in cases {
        let mut c = session(addr, id).await;
        c.send(&bytes).await;
        disconnected(&mut c, code).await;
    }
    // 0x93: QoS 2 publishes beyond the receive maximum (inflight_max = 2).
    let mut c = session(addr, "greedy").await;
    for id in 1..=3u16 {
        c.send(&publish("nobody", 2, id, Properties::default(), b"x"))
            .await;
    }
    // (The PUBRECs of the first two may or may not get out before the
    // connection ends: they were queued in the same read batch.)
    let code = loop {
        match next_code(&mut c).await {
            (v5::PacketType::PubRec, _) => continue,
            (v5::PacketType::Disconnect, code) => break code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, vec![reason::RECEIVE_MAXIMUM_EXCEEDED]);
    assert!(c.closed_by_server().await);
    // 0x8D: keep alive expired.
    let mut c = Raw::open(addr).await;
    c.send(&encode(&Packet::Connect(v5::Connect {
        clean_start: true,
        keep_alive_s: 1,
        properties: Properties::default(),
        client_id: "sleepy",
        will: None,
        username: None,
        password: None,
    })))
    .await;
    assert_eq!(next_code(&mut c).await.1, vec![0]);
    disconnected(&mut c, reason::KEEP_ALIVE_TIMEOUT).await;

    // The bystander (another connection) saw none of this.
    bystander
        .publish("watch/ok", rumqttc::QoS::AtMostOnce, "fine")
        .await;
    assert_eq!(bystander.next_publish().await.topic, "watch/ok");
}

async fn connect_v311_watch(addr: std::net::SocketAddr) -> Client {
    let mut c = common::connect(addr, "bystander").await;
    c.subscribe("watch/#", rumqttc::QoS::AtMostOnce).await;
    c
}

/// 0x97 (slow consumer, quota exceeded) and 0x8B (server shutting down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_shutdown_disconnects() {
    let mut weft = Weft::start(
        1,
        "[limits]\nqueued_messages_max = 20\nqueued_bytes_max = 4096\nslow_consumer_policy = \"disconnect\"\n[socket]\nsend_buffer_bytes = 4096\n",
    );
    let addr = weft.addr;
    let mut slow = session(addr, "slow").await;
    slow.send(&encode(&Packet::Subscribe(v5::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![("q/#", v5::SubscriptionOptions::default())],
    })))
    .await;
    assert_eq!(next_code(&mut slow).await.0, v5::PacketType::SubAck);
    let mut publisher = session(addr, "flood").await;
    for _ in 0..2000 {
        publisher
            .send(&publish("q/x", 0, 0, Properties::default(), &[7u8; 1000]))
            .await;
    }
    // Read what was queued until the DISCONNECT 0x97.
    let code = loop {
        let bytes = slow.read_packet().await;
        if bytes[0] == 0xe0 {
            break bytes[2];
        }
    };
    assert_eq!(code, reason::QUOTA_EXCEEDED);
    let mut stay = session(addr, "stay").await;
    let status = weft.terminate();
    assert_eq!(status.code(), Some(0));
    disconnected(&mut stay, reason::SERVER_SHUTTING_DOWN).await;
}

fn connect_with(id: &str, clean_start: bool, keep_alive_s: u16) -> Vec<u8> {
    encode(&Packet::Connect(v5::Connect {
        clean_start,
        keep_alive_s,
        properties: Properties::default(),
        client_id: id,
        will: None,
        username: None,
        password: None,
    }))
}

/// MQTT-4.7.3-1: every topic filter is at least one character. An empty
/// filter in SUBSCRIBE gets 0x8F (Topic Filter invalid) beside the valid
/// ones, and in UNSUBSCRIBE too; the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_topic_filters_are_refused() {
    let weft = Weft::start(1, "");
    let mut raw = session(weft.addr, "empty-filter").await;
    let options = v5::SubscriptionOptions::default();
    raw.send(&encode(&Packet::Subscribe(v5::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![("", options), ("ef/#", options), ("$share/g/", options)],
    })))
    .await;
    assert_eq!(
        next_code(&mut raw).await,
        (
            v5::PacketType::SubAck,
            vec![
                reason::TOPIC_FILTER_INVALID,
                reason::GRANTED_QOS_0,
                reason::TOPIC_FILTER_INVALID
            ]
        )
    );
    raw.send(&encode(&Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: 2,
        properties: Properties::default(),
        filters: vec!["", "ef/#"],
    })))
    .await;
    assert_eq!(
        next_code(&mut raw).await,
        (
            v5::PacketType::UnsubAck,
            vec![reason::TOPIC_FILTER_INVALID, reason::SUCCESS]
        )
    );
    // Still served.
    raw.send(&[0xc0, 0]).await;
    assert_eq!(raw.read_packet().await, vec![0xd0, 0]);
}

/// MQTT-3.1.3-7 leaves it to the server; a session with an assigned id can
/// never be resumed, so Clean Start 0 with an empty id is refused with
/// 0x85, as mosquitto does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_without_clean_start_is_refused() {
    let weft = Weft::start(1, "");
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&connect_with("", false, 30)).await;
    assert_eq!(
        next_code(&mut raw).await,
        (
            v5::PacketType::ConnAck,
            vec![reason::CLIENT_IDENTIFIER_NOT_VALID]
        )
    );
    assert!(raw.closed_by_server().await);
    // With Clean Start 1 an empty id is assigned one.
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&connect_with("", true, 30)).await;
    assert_eq!(
        next_code(&mut raw).await,
        (v5::PacketType::ConnAck, vec![reason::SUCCESS])
    );
}

async fn server_keep_alive(addr: std::net::SocketAddr, id: &str, asked_s: u16) -> Option<u16> {
    let mut raw = Raw::open(addr).await;
    raw.send(&connect_with(id, true, asked_s)).await;
    let bytes = raw.read_packet().await;
    let (p, _) = v5::decode(&bytes, &v5::DecodeLimits::default())
        .unwrap()
        .unwrap();
    let Packet::ConnAck(ack) = p else {
        panic!("expected CONNACK, got {p:?}")
    };
    assert_eq!(ack.reason_code, reason::SUCCESS);
    ack.properties.server_keep_alive
}

/// `mqtt.keep_alive_max_s` caps keep-alive: a v5 client asking for more
/// (or for 0, none) gets the cap as Server Keep Alive, one asking for less
/// keeps its own, and is held to it: silent for 1.5 times its 1 s, it is
/// closed with DISCONNECT 0x8D. A 3.1.1 client asking for more than the
/// cap cannot be told, so it is refused (CONNACK 0x02, as mosquitto does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_is_capped_not_imposed() {
    let weft = Weft::start(1, "[mqtt]\nkeep_alive_max_s = 60\n");
    assert_eq!(server_keep_alive(weft.addr, "ka-more", 600).await, Some(60));
    assert_eq!(server_keep_alive(weft.addr, "ka-none", 0).await, Some(60));
    assert_eq!(server_keep_alive(weft.addr, "ka-equal", 60).await, None);
    // Asks for 1 s, keeps it: closed after 1.5 s of silence.
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&connect_with("ka-less", true, 1)).await;
    let bytes = raw.read_packet().await;
    let (p, _) = v5::decode(&bytes, &v5::DecodeLimits::default())
        .unwrap()
        .unwrap();
    let Packet::ConnAck(ack) = p else { panic!() };
    assert_eq!(ack.properties.server_keep_alive, None, "its own kept");
    let started = std::time::Instant::now();
    disconnected(&mut raw, reason::KEEP_ALIVE_TIMEOUT).await;
    eprintln!("keep-alive 1 s: closed after {:?}", started.elapsed());
    // 3.1.1: more than the cap, or none, is refused; less is served.
    for (id, asked) in [("ka311-more", 61), ("ka311-none", 0)] {
        let mut raw = Raw::open(weft.addr).await;
        raw.send(&connect_packet(id, asked, 4, true)).await;
        assert_eq!(raw.read_exact(4).await, vec![0x20, 2, 0, 0x02], "{id}");
        assert!(raw.closed_by_server().await);
    }
    Raw::connected(weft.addr, "ka311-less", 60).await;
}

/// The replaced key is refused at start with a line naming its successor.
#[test]
fn server_keep_alive_s_names_its_replacement() {
    let path = write_config("[mqtt]\nserver_keep_alive_s = 20\n");
    let out = std::process::Command::new(weft_bin())
        .args(["check-config", &path.0.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("mqtt.keep_alive_max_s"), "{stderr}");
}
