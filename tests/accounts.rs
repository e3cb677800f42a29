//! Accounts (issue 12, item 4) with real clients on real routers: each
//! account is its own topic space for MQTT and NATS, events cross only
//! where one account exports and another imports, retained messages are
//! per account, no client reaches another account by writing the
//! reserved prefix, and across a mesh an event keeps its account.
//!
//! Fences: every router here has one shard, so a publish is delivered to
//! every local subscriber before the next packet is read. An event that
//! leaked into another account would be queued at that account's
//! subscriber before a fence published there afterwards; so once the
//! fence arrives, what is not in the inbox never came.

mod common;

use std::net::SocketAddr;

use common::*;
use rumqttc::{QoS, SubscribeReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft::mqtt::v5::{self, reason, Packet, Properties};

/// Users by account; a user's token is its name with `-token`.
const USERS: &str = r#"
[security]
allow_anonymous = true

[[security.users]]
name = "alice"
token = "alice-token"
account = "A"

[[security.users]]
name = "bob"
token = "bob-token"
account = "B"

[[security.users]]
name = "dave"
token = "dave-token"
"#;

fn accounts_toml(extra: &str) -> String {
    format!(
        "{USERS}
[[security.accounts]]
name = \"A\"
{extra}
[[security.accounts]]
name = \"B\"
"
    )
}

/// Two accounts and the default one, nothing exported.
fn separate() -> String {
    accounts_toml("")
}

async fn mqtt_as(addr: SocketAddr, id: &str, user: &str) -> Client {
    connect_user(addr, id, user, &format!("{user}-token")).await
}

async fn nats_as(addr: SocketAddr, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_token(format!("{user}-token"))
        .connect(addr.to_string())
        .await
        .expect("NATS connect")
}

/// An MQTT subscriber of `user` on `filters`, collected.
async fn mqtt_inbox(addr: SocketAddr, id: &str, user: &str, filters: &[&str]) -> Inbox {
    let mut c = mqtt_as(addr, id, user).await;
    for f in filters {
        assert_eq!(
            c.subscribe(f, QoS::AtLeastOnce).await,
            [SubscribeReasonCode::Success(QoS::AtLeastOnce)],
            "{id} SUBSCRIBE {f}"
        );
    }
    Inbox::mqtt(c).1
}

async fn nats_inbox(client: &async_nats::Client, name: &str, subject: &str) -> Inbox {
    let sub = client.subscribe(subject.to_string()).await.unwrap();
    nats_sync(client).await;
    Inbox::nats(name, sub)
}

fn payloads(inbox: &Inbox) -> Vec<String> {
    let mut p: Vec<String> = inbox
        .msgs()
        .iter()
        // Not the fences, nor `nats_sync`'s round trips.
        .filter(|m| !m.topic.starts_with("fence") && !m.topic.starts_with("_INBOX"))
        .map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload)))
        .collect();
    p.sort();
    p
}

async fn fenced(inbox: &Inbox, n: usize) {
    inbox
        .wait_until("fence", |m| {
            m.iter().filter(|m| m.topic.starts_with("fence")).count() >= n
        })
        .await;
}

/// The same topic in three accounts (two configured, the default one),
/// over MQTT and NATS: every subscriber sees its own account's events and
/// nothing else, `#` and `>` included; the MQTT subscribers of A and B
/// share a client id without taking each other over.
#[tokio::test]
async fn accounts_are_separate_topic_spaces() {
    let weft = Weft::start(1, &separate());
    let (m, n) = (weft.addr, weft.nats);
    let a_mqtt = mqtt_inbox(m, "same-id", "alice", &["t/x", "#"]).await;
    let b_mqtt = mqtt_inbox(m, "same-id", "bob", &["t/x", "#"]).await;
    let d_mqtt = mqtt_inbox(m, "d-sub", "dave", &["#"]).await;
    let mut anon = connect(m, "anon-sub").await;
    anon.subscribe("#", QoS::AtLeastOnce).await;
    let anon = Inbox::mqtt(anon).1;
    let a_nats = nats_as(n, "alice").await;
    let b_nats = nats_as(n, "bob").await;
    let d_nats = nats(n).await;
    let a_nats_in = nats_inbox(&a_nats, "A nats", ">").await;
    let b_nats_in = nats_inbox(&b_nats, "B nats", ">").await;
    let d_nats_in = nats_inbox(&d_nats, "default nats", ">").await;

    let a_pub = mqtt_as(m, "a-pub", "alice").await;
    let b_pub = mqtt_as(m, "b-pub", "bob").await;
    let d_pub = mqtt_as(m, "d-pub", "dave").await;
    a_pub.publish("t/x", QoS::AtLeastOnce, "from A mqtt").await;
    a_nats.publish("t.x", "from A nats".into()).await.unwrap();
    b_pub.publish("t/x", QoS::AtLeastOnce, "from B mqtt").await;
    b_nats.publish("t.x", "from B nats".into()).await.unwrap();
    d_pub.publish("t/x", QoS::AtLeastOnce, "from default").await;
    for round in 1..=2 {
        // Each fence after everything above (see the module comment).
        a_pub.publish("fence/a", QoS::AtLeastOnce, "").await;
        b_pub.publish("fence/b", QoS::AtLeastOnce, "").await;
        d_pub.publish("fence/d", QoS::AtLeastOnce, "").await;
        b_nats.publish("fence.b", "".into()).await.unwrap();
        for inbox in [&a_mqtt, &d_mqtt, &anon, &a_nats_in, &d_nats_in] {
            fenced(inbox, round).await;
        }
        // B has two fences a round.
        fenced(&b_mqtt, 2 * round).await;
        fenced(&b_nats_in, 2 * round).await;
    }

    let both_a = ["t/x from A mqtt", "t/x from A nats"];
    let both_b = ["t/x from B mqtt", "t/x from B nats"];
    // `t/x` and `#` both match: two copies each (one per subscription),
    // or one where the router merges overlapping subscriptions.
    let mut a = payloads(&a_mqtt);
    a.dedup();
    assert_eq!(a, both_a, "A's MQTT subscriber");
    let mut b = payloads(&b_mqtt);
    b.dedup();
    assert_eq!(b, both_b, "B's MQTT subscriber");
    assert_eq!(payloads(&d_mqtt), ["t/x from default"], "default (user)");
    assert_eq!(payloads(&anon), ["t/x from default"], "default (anonymous)");
    assert_eq!(
        payloads(&a_nats_in),
        ["t.x from A mqtt", "t.x from A nats"],
        "A's NATS subscriber"
    );
    assert_eq!(
        payloads(&b_nats_in),
        ["t.x from B mqtt", "t.x from B nats"],
        "B's NATS subscriber"
    );
    assert_eq!(payloads(&d_nats_in), ["t.x from default"], "default NATS");
}

/// A exports `t.>` (NATS dialect), B imports `t/x` from it: B's
/// subscribers get A's `t/x` (MQTT and NATS), under the topic A's client
/// wrote; not A's `t/y`, and A gets nothing of B's `t/x`.
#[tokio::test]
async fn export_and_import_cross_one_way() {
    let toml = accounts_toml("exports = [\"t.>\"]").replace(
        "name = \"B\"\n",
        "name = \"B\"\nimports = [{ account = \"A\", filter = \"t/x\" }]\n",
    );
    let weft = Weft::start(1, &toml);
    let (m, n) = (weft.addr, weft.nats);
    let a_sub = mqtt_inbox(m, "a-sub", "alice", &["t/#", "fence/#"]).await;
    let b_sub = mqtt_inbox(m, "b-sub", "bob", &["t/#", "fence/#"]).await;
    let d_sub = mqtt_inbox(m, "d-sub", "dave", &["#"]).await;
    let b_nats = nats_as(n, "bob").await;
    let b_nats_in = nats_inbox(&b_nats, "B nats", ">").await;
    let a_pub = mqtt_as(m, "a-pub", "alice").await;
    let b_pub = mqtt_as(m, "b-pub", "bob").await;
    let d_pub = mqtt_as(m, "d-pub", "dave").await;
    a_pub.publish("t/x", QoS::AtLeastOnce, "A x").await;
    a_pub.publish("t/y", QoS::AtLeastOnce, "A y").await;
    b_pub.publish("t/x", QoS::AtLeastOnce, "B x").await;
    a_pub.publish("fence/a", QoS::AtLeastOnce, "").await;
    b_pub.publish("fence/b", QoS::AtLeastOnce, "").await;
    d_pub.publish("fence/d", QoS::AtLeastOnce, "").await;
    for inbox in [&a_sub, &b_sub, &d_sub, &b_nats_in] {
        fenced(inbox, 1).await;
    }
    assert_eq!(payloads(&a_sub), ["t/x A x", "t/y A y"], "A: its own only");
    assert_eq!(
        payloads(&b_sub),
        ["t/x A x", "t/x B x"],
        "B: its own and A's t/x"
    );
    assert_eq!(payloads(&b_nats_in), ["t.x A x", "t.x B x"], "B over NATS");
    assert!(payloads(&d_sub).is_empty(), "default: {:?}", d_sub.msgs());
}

/// An import of a filter A does not export is refused at start, naming
/// the key.
#[test]
fn import_outside_exports_is_refused() {
    let toml = accounts_toml("exports = [\"t/y\"]").replace(
        "name = \"B\"\n",
        "name = \"B\"\nimports = [{ account = \"A\", filter = \"t/#\" }]\n",
    );
    let path = write_config(&toml);
    let out = std::process::Command::new(weft_bin())
        .arg("check-config")
        .arg(&path.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("security.accounts.imports: accounts[1] ('B'): imports[0]"),
        "{stderr}"
    );
}

/// Retained messages are per account: the same topic holds one per
/// account, and a new subscriber gets its own account's only.
#[tokio::test]
async fn retained_per_account() {
    let weft = Weft::start(1, &separate());
    let m = weft.addr;
    for (user, body) in [("alice", "A"), ("bob", "B"), ("dave", "default")] {
        let mut p = mqtt_as(m, &format!("{user}-pub"), user).await;
        p.publish_retained("r/1", QoS::AtLeastOnce, body).await;
        p.pubacks(1).await;
    }
    for (user, body) in [("alice", "A"), ("bob", "B"), ("dave", "default")] {
        let inbox = mqtt_inbox(m, &format!("{user}-sub"), user, &["r/#", "fence/#"]).await;
        let p = mqtt_as(m, &format!("{user}-fence"), user).await;
        p.publish("fence/x", QoS::AtLeastOnce, "").await;
        fenced(&inbox, 1).await;
        assert_eq!(payloads(&inbox), [format!("r/1 {body}")], "{user}");
    }
}

/// Writing another account's internal prefix is refused as an invalid
/// topic or filter, with each protocol's answer: MQTT 3.1.1 SUBACK 0x80
/// and a PUBLISH closes the connection, MQTT 5 SUBACK 0x8F and DISCONNECT
/// 0x90, NATS `-ERR`; an MQTT client id under the prefix is refused. A's
/// subscriber gets nothing (and keeps its connection).
#[tokio::test]
async fn reserved_prefix_is_refused() {
    let weft = Weft::start(1, &separate());
    let (m, n) = (weft.addr, weft.nats);
    let a_sub = mqtt_inbox(m, "a-sub", "alice", &["#"]).await;

    let mut c = mqtt_as(m, "intruder", "bob").await;
    assert_eq!(
        c.subscribe("$weft/acct/A/#", QoS::AtMostOnce).await,
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(
        c.subscribe("$share/g/$weft/acct/A/t", QoS::AtMostOnce)
            .await,
        [SubscribeReasonCode::Failure]
    );
    c.publish("$weft/acct/A/t/x", QoS::AtMostOnce, "sneaky")
        .await;
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(p) = c.recv_any().await {
            assert!(!matches!(p, rumqttc::Packet::Publish(_)), "{p:?}");
        }
    })
    .await;
    assert!(ended.is_ok(), "3.1.1: the PUBLISH closes the connection");

    // MQTT 5, raw.
    let mut raw = Raw::open(m).await;
    raw.send(&encode(&Packet::Connect(v5::Connect {
        clean_start: true,
        keep_alive_s: 30,
        properties: Properties::default(),
        client_id: "intruder5",
        will: None,
        username: Some("bob"),
        password: Some(b"bob-token"),
    })))
    .await;
    assert_eq!(v5_code(&mut raw).await, reason::SUCCESS);
    raw.send(&encode(&Packet::Subscribe(v5::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![("$weft/acct/A/#", v5::SubscriptionOptions::default())],
    })))
    .await;
    assert_eq!(v5_code(&mut raw).await, reason::TOPIC_FILTER_INVALID);
    raw.send(&encode(&Packet::Publish(v5::Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: "$weft/acct/A/t/x",
        packet_id: 0,
        properties: Properties::default(),
        payload: b"sneaky",
    })))
    .await;
    assert_eq!(v5_code(&mut raw).await, reason::TOPIC_NAME_INVALID);
    assert!(raw.closed_by_server().await);

    // NATS, raw (the connection is kept).
    let mut s = tokio::net::TcpStream::connect(n).await.unwrap();
    let mut line = read_line(&mut s).await;
    assert!(line.starts_with("INFO "), "{line}");
    s.write_all(b"CONNECT {\"verbose\":false,\"auth_token\":\"bob-token\"}\r\nSUB $weft.acct.A.> 1\r\nPUB $weft.acct.A.t.x 6\r\nsneaky\r\nPING\r\n")
        .await
        .unwrap();
    line = read_line(&mut s).await;
    assert_eq!(line, "-ERR 'Invalid Subject'");
    line = read_line(&mut s).await;
    assert_eq!(line, "-ERR 'Invalid Publish Subject'");
    line = read_line(&mut s).await;
    assert_eq!(line, "PONG");

    // Nor another account's client id (its session, its takeover): a
    // default account's client may not use the prefix (CONNACK 0x05).
    let mut raw = Raw::open(m).await;
    raw.send(&connect_packet("$weft/acct/A/a-sub", 30, 4, true))
        .await;
    assert_eq!(raw.read_packet().await, [0x20, 2, 0, 5]);
    assert!(raw.closed_by_server().await);

    let a_pub = mqtt_as(m, "a-pub", "alice").await;
    a_pub.publish("fence/a", QoS::AtLeastOnce, "").await;
    fenced(&a_sub, 1).await;
    assert!(payloads(&a_sub).is_empty(), "{:?}", a_sub.msgs());
}

fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    v5::encode(p, &mut out).unwrap();
    out
}

/// The reason code of the next MQTT 5 packet (CONNACK, SUBACK,
/// DISCONNECT).
async fn v5_code(raw: &mut Raw) -> u8 {
    let bytes = raw.read_packet().await;
    let (p, _) = v5::decode(&bytes, &v5::DecodeLimits::default())
        .unwrap()
        .unwrap();
    match p {
        Packet::ConnAck(a) => a.reason_code,
        Packet::SubAck(a) => a.reason_codes[0],
        Packet::Disconnect(d) => d.reason_code,
        other => panic!("unexpected {other:?}"),
    }
}

async fn read_line(s: &mut tokio::net::TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte))
            .await
            .expect("a line in time")
            .unwrap();
        assert_eq!(n, 1, "connection ended after {line:?}");
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

/// Two routers linked: an account's event reaches the same account's
/// subscriber on the other router, not another account's (nor the
/// default account's `#`).
#[tokio::test]
async fn across_the_mesh_an_event_keeps_its_account() {
    let toml = separate();
    let one = mesh_router("one", &toml, "info", "127.0.0.1:0", &[]);
    let two = mesh_router(
        "two",
        &toml,
        "info",
        "127.0.0.1:0",
        &[one.mesh.expect("mesh listener")],
    );
    wait_links_up(&one, 1).await;
    let a_sub = mqtt_inbox(two.addr, "a-sub", "alice", &["t/x", "probe/#"]).await;
    let b_sub = mqtt_inbox(two.addr, "b-sub", "bob", &["t/x", "probe/#", "fence/#"]).await;
    let d_sub = mqtt_inbox(two.addr, "d-sub", "dave", &["#"]).await;
    let a_pub = mqtt_as(one.addr, "a-pub", "alice").await;
    let b_pub = mqtt_as(one.addr, "b-pub", "bob").await;
    let d_pub = mqtt_as(one.addr, "d-pub", "dave").await;
    // Interest travels asynchronously: probe each account until it
    // arrives on the other router.
    for (publisher, inbox) in [(&a_pub, &a_sub), (&b_pub, &b_sub), (&d_pub, &d_sub)] {
        wait_until("probe crosses the mesh", WAIT, || async {
            publisher.publish("probe/1", QoS::AtMostOnce, "").await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if inbox.count_prefix("probe/") > 0 {
                Ok(())
            } else {
                Err("no probe yet".to_string())
            }
        })
        .await;
    }
    a_pub
        .publish("t/x", QoS::AtLeastOnce, "A over the mesh")
        .await;
    a_sub
        .wait_until("A's event", |m| m.iter().any(|m| m.topic == "t/x"))
        .await;
    // Fences in B and the default account, after A's event was delivered
    // on router two (an event is delivered to all its local subscribers
    // at once there).
    b_pub.publish("fence/b", QoS::AtLeastOnce, "").await;
    d_pub.publish("fence/d", QoS::AtLeastOnce, "").await;
    fenced(&b_sub, 1).await;
    fenced(&d_sub, 1).await;
    let own = |inbox: &Inbox| -> Vec<String> {
        payloads(inbox)
            .into_iter()
            .filter(|p| !p.starts_with("probe/"))
            .collect()
    };
    assert_eq!(own(&a_sub), ["t/x A over the mesh"]);
    assert!(own(&b_sub).is_empty(), "B: {:?}", b_sub.msgs());
    assert!(own(&d_sub).is_empty(), "default: {:?}", d_sub.msgs());
}
