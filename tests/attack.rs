//! The attack test (issue 12): one router with users, rules and a TLS
//! listener that requires client certificates takes hundreds of hostile
//! attempts across protocols — wrong passwords (MQTT 3.1.1), unknown users
//! (MQTT 5), bad NATS logins, forbidden publishes and subscriptions, wide
//! subscriptions (`#`, `sensors.>`, `>`) under a denied prefix, TLS
//! without a client certificate — each refused with its exact answer,
//! while legitimate clients connected before the attack keep getting every
//! event they may read and nothing else.
//!
//! The failed logins come from raw sockets (the exact bytes of each
//! refusal are asserted, and they are fast); the legitimate clients are
//! rumqttc (plain and TLS) and async-nats.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::pki::{mqtt_tls, tls_addr, Ca, Pair, Pki};
use common::*;
use rumqttc::{QoS, SubscribeReasonCode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Batches of attacks; each batch also carries one legitimate event from
/// alice and one secret event from root.
const BATCHES: usize = 120;
/// Every how many batches the slower attacks (TLS handshakes, forbidden
/// subscriptions) run.
const SLOW_EVERY: usize = 4;

fn config(server: &Pair, ca: &Ca) -> String {
    let argon = weft::security::auth::hash_password(b"wonderland").unwrap();
    format!(
        r#"
[mqtt.tls]
listen = "127.0.0.1:0"
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
client_auth = "required"
identity = "cn"

[security]
# The default auth_failures_max (10 per shard), in a window that outlasts
# the test however slow the machine: the count of checked guesses is known.
auth_failure_window_ms = 600000

[[security.users]]
name = "alice"
password = "{argon}"
certificate = true
publish = {{ allow = ["sensors/#"], deny = ["sensors/secret/#"] }}
subscribe = {{ allow = ["sensors/#"], deny = ["sensors/secret/#"] }}

[[security.users]]
name = "root"
token = "tok-root"
"#,
        cert = server.cert,
        key = server.key,
        ca = ca.path,
    )
}

// --- MQTT 5 on a raw socket (the codec in weft speaks 3.1.1 only) ---

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            return;
        }
    }
}

fn field(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// MQTT 5 CONNECT, clean start, with user name and password.
fn v5_connect(id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut b = Vec::new();
    field(b"MQTT", &mut b);
    b.extend_from_slice(&[5, 0xC2, 0, 120, 0]);
    field(id.as_bytes(), &mut b);
    field(user.as_bytes(), &mut b);
    field(password.as_bytes(), &mut b);
    packet(0x10, &b)
}

fn v5_publish_q1(topic: &str, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    field(topic.as_bytes(), &mut b);
    b.extend_from_slice(&id.to_be_bytes());
    b.push(0); // no properties
    b.extend_from_slice(payload);
    packet(0x32, &b)
}

fn v5_subscribe(id: u16, filter: &str) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.push(0);
    field(filter.as_bytes(), &mut b);
    b.push(1); // QoS 1
    packet(0x82, &b)
}

/// The reason code of an MQTT 5 CONNACK, PUBACK or SUBACK (its first one)
/// read from `raw`, after checking the packet type (and packet id).
async fn v5_reason(raw: &mut Raw, kind: u8, id: Option<u16>) -> u8 {
    let p = raw.read_packet().await;
    assert_eq!(p[0], kind, "packet {p:?}");
    // One-byte remaining length: these answers are short.
    assert!(p[1] < 0x80, "{p:?}");
    match kind {
        // CONNACK: flags, reason.
        0x20 => p[3],
        // PUBACK: id, then the reason (absent: success).
        0x40 => {
            assert_eq!(Some(u16::from_be_bytes([p[2], p[3]])), id, "{p:?}");
            p.get(4).copied().unwrap_or(0)
        }
        // SUBACK: id, properties (length, then them), reasons.
        0x90 => {
            assert_eq!(Some(u16::from_be_bytes([p[2], p[3]])), id, "{p:?}");
            assert!(p[4] < 0x80, "{p:?}");
            p[5 + usize::from(p[4])]
        }
        _ => unreachable!(),
    }
}

/// An MQTT 3.1.1 login on a raw socket: the CONNACK return code.
async fn v4_login(addr: SocketAddr, id: &str, user: &str, password: &str) -> u8 {
    let mut raw = Raw::open(addr).await;
    raw.send_packet(&weft::mqtt::codec::Packet::Connect(
        weft::mqtt::codec::Connect {
            protocol_name: weft::mqtt::codec::PROTOCOL_NAME,
            level: 4,
            clean_session: true,
            keep_alive_s: 30,
            client_id: id,
            will: None,
            username: Some(user),
            password: Some(password.as_bytes()),
        },
    ))
    .await;
    let ack = raw.read_packet().await;
    assert_eq!(&ack[..3], &[0x20, 2, 0], "{ack:?}");
    let code = ack[3];
    if code != 0 {
        assert!(raw.closed_by_server().await);
    }
    code
}

/// An MQTT 5 login on a raw socket: the CONNACK reason code.
async fn v5_login(addr: SocketAddr, id: &str, user: &str, password: &str) -> u8 {
    let mut raw = Raw::open(addr).await;
    raw.send(&v5_connect(id, user, password)).await;
    let code = v5_reason(&mut raw, 0x20, None).await;
    if code != 0 {
        assert!(raw.closed_by_server().await);
    }
    code
}

/// A NATS login on a raw socket with `connect` (the CONNECT's JSON): the
/// lines the server sends before it closes.
async fn nats_login(addr: SocketAddr, connect: &str) -> Vec<String> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let info = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("INFO in time")
        .unwrap()
        .unwrap();
    assert!(info.starts_with("INFO "), "{info}");
    w.write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the server answers and closes")
    {
        answer.push(line);
    }
    answer
}

/// The sum of `name`'s per-shard lines that carry every one of `labels`.
fn metric(body: &str, name: &str, labels: &[&str]) -> u64 {
    let values: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(!values.is_empty(), "no {name} {labels:?} in /metrics");
    values.iter().sum()
}

/// The distinct topics of `inbox` under `prefix`, checking none came twice.
fn topics_under(inbox: &Inbox, prefix: &str) -> BTreeSet<String> {
    let all: Vec<String> = inbox
        .msgs()
        .into_iter()
        .map(|m| m.topic)
        .filter(|t| t.starts_with(prefix))
        .collect();
    let set: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(
        set.len(),
        all.len(),
        "{}: a duplicate under {prefix}",
        inbox.name
    );
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_attacks_are_refused_and_legitimate_clients_are_unaffected() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let alice_cert = pki.signed(&ca, "alice", "alice");
    let mut launch = Launch::new(2, &config(&server, &ca));
    launch.capture_stderr = true;
    launch.log_level = Some("info".into());
    let weft = Weft::launch_with(launch);
    let tls = tls_addr(&weft);
    let (mqtt, nats_addr) = (weft.addr, weft.nats);

    // --- The legitimate clients, connected before the attack. ---
    let mut alice_sub = connect_user(mqtt, "alice-sub", "alice", "wonderland").await;
    assert_eq!(
        alice_sub.subscribe("sensors/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // `#` overlaps the denied sensors/secret/#: granted, and checked.
    let mut alice_wide = connect_user(mqtt, "alice-wide", "alice", "wonderland").await;
    assert_eq!(
        alice_wide.subscribe("#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut root_all = connect_user(mqtt, "root-all", "root", "tok-root").await;
    assert_eq!(
        root_all.subscribe("#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    // alice over TLS with her certificate (no password: the certificate
    // names her).
    let mut alice_tls = connect_options(
        mqtt_tls("alice-tls", tls.port(), &ca, Some(&alice_cert)),
        "alice-tls",
    )
    .await;
    assert_eq!(
        alice_tls.subscribe("sensors/#", QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let alice_pub = connect_user(mqtt, "alice-pub", "alice", "wonderland").await;
    let root_pub = connect_user(mqtt, "root-pub", "root", "tok-root").await;
    // alice over NATS: wide subscriptions, and the forbidden attempts
    // (whose -ERR lines the callback collects).
    let (err_tx, mut nats_errors) = tokio::sync::mpsc::unbounded_channel();
    let alice_nats = async_nats::ConnectOptions::new()
        .user_and_password("alice".into(), "wonderland".into())
        .name("alice-nats")
        .event_callback(move |event| {
            let tx = err_tx.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(e)) = event {
                    let _ = tx.send(e);
                }
            }
        })
        .connect(nats_addr.to_string())
        .await
        .expect("alice over NATS");
    let nats_sensors = Inbox::nats(
        "alice-nats-sensors",
        alice_nats.subscribe("sensors.>").await.unwrap(),
    );
    let nats_all = Inbox::nats("alice-nats-all", alice_nats.subscribe(">").await.unwrap());
    // alice over MQTT 5 (raw): the forbidden publishes and subscriptions.
    let mut alice5 = Raw::open(mqtt).await;
    alice5
        .send(&v5_connect("alice-5", "alice", "wonderland"))
        .await;
    assert_eq!(v5_reason(&mut alice5, 0x20, None).await, 0);

    let (_, alice_sub) = Inbox::mqtt(alice_sub);
    let (_, alice_wide) = Inbox::mqtt(alice_wide);
    let (_, root_all) = Inbox::mqtt(root_all);
    let (_, alice_tls) = Inbox::mqtt(alice_tls);
    // Every subscription in force before the first event counted.
    let publisher = mqtt_publisher(&alice_pub.client);
    fence(
        &publisher,
        "sensors/fence",
        &[&alice_sub, &alice_wide, &root_all, &alice_tls],
    )
    .await;
    fence_as(
        &publisher,
        "sensors/fence",
        "sensors.fence",
        &[&nats_sensors, &nats_all],
    )
    .await;
    assert!(nats_errors.try_recv().is_err(), "no -ERR yet");

    // --- The attack. ---
    let mut v4_codes = Vec::new();
    let mut v5_codes = Vec::new();
    let mut nats_refused = 0usize;
    let (mut mqtt_pub_denied, mut nats_pub_denied) = (0usize, 0usize);
    let (mut mqtt_sub_denied, mut nats_sub_denied) = (0usize, 0usize);
    let mut tls_refused = 0usize;
    let mut denied_subs = Vec::new(); // kept: dropping one would UNSUB
    for b in 0..BATCHES {
        // Legitimate traffic goes on throughout.
        alice_pub
            .publish(&format!("sensors/t/{b}"), QoS::AtLeastOnce, b.to_string())
            .await;
        // root may write the secret prefix; alice's wide filters must
        // never deliver it.
        root_pub
            .publish(
                &format!("sensors/secret/root/{b}"),
                QoS::AtLeastOnce,
                "secret",
            )
            .await;

        // MQTT 3.1.1, wrong passwords: bad credentials, or not authorized
        // once this address is over the failure limit.
        let (user, password) = match b % 3 {
            0 => ("alice", format!("guess-{b}")),
            1 => ("root", format!("tok-{b}")),
            _ => ("alice", "Wonderland".to_string()),
        };
        let code = v4_login(mqtt, &format!("v4-{b}"), user, &password).await;
        assert!(
            code == 0x04 || code == 0x05,
            "3.1.1 {user}/{password}: {code:#x}"
        );
        v4_codes.push(code);

        // MQTT 5, unknown users: 0x86, or 0x87 over the limit.
        let code = v5_login(
            mqtt,
            &format!("v5-{b}"),
            &format!("mallory{b}"),
            "wonderland",
        )
        .await;
        assert!(code == 0x86 || code == 0x87, "5 mallory{b}: {code:#x}");
        v5_codes.push(code);

        // NATS: wrong password, unknown user, wrong token.
        let connect = match b % 3 {
            0 => format!(r#"{{"verbose":false,"user":"alice","pass":"guess-{b}"}}"#),
            1 => format!(r#"{{"verbose":false,"user":"eve{b}","pass":"wonderland"}}"#),
            _ => format!(r#"{{"verbose":false,"auth_token":"tok-{b}"}}"#),
        };
        assert_eq!(
            nats_login(nats_addr, &connect).await,
            ["-ERR 'Authorization Violation'"],
            "{connect}"
        );
        nats_refused += 1;

        // alice publishes under the denied prefix: MQTT 5 PUBACK 0x87,
        // NATS -ERR; neither is routed.
        let id = b as u16 + 1;
        alice5
            .send(&v5_publish_q1(
                &format!("sensors/secret/alice/{b}"),
                id,
                b"stolen",
            ))
            .await;
        assert_eq!(v5_reason(&mut alice5, 0x40, Some(id)).await, 0x87);
        mqtt_pub_denied += 1;
        let subject = format!("sensors.secret.alice.n{b}");
        alice_nats
            .publish(subject.clone(), "stolen".into())
            .await
            .unwrap();
        assert_eq!(
            tokio::time::timeout(WAIT, nats_errors.recv())
                .await
                .expect("-ERR in time")
                .unwrap(),
            format!("Permissions Violation for Publish to \"{subject}\"")
        );
        nats_pub_denied += 1;

        if b % SLOW_EVERY == 0 {
            // Subscriptions wholly inside the denied prefix.
            let id = 1000 + b as u16;
            alice5.send(&v5_subscribe(id, "sensors/secret/#")).await;
            assert_eq!(v5_reason(&mut alice5, 0x90, Some(id)).await, 0x87);
            mqtt_sub_denied += 1;
            denied_subs.push(alice_nats.subscribe("sensors.secret.>").await.unwrap());
            assert_eq!(
                tokio::time::timeout(WAIT, nats_errors.recv())
                    .await
                    .expect("-ERR in time")
                    .unwrap(),
                "Permissions Violation for Subscription to \"sensors.secret.>\""
            );
            nats_sub_denied += 1;

            // TLS without a client certificate: the handshake is refused.
            let (_c, mut eventloop) = rumqttc::AsyncClient::new(
                mqtt_tls(&format!("nocert-{b}"), tls.port(), &ca, None),
                10,
            );
            let refused = tokio::time::timeout(WAIT, async {
                loop {
                    match eventloop.poll().await {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                            return Err(format!("served: {a:?}"))
                        }
                        Ok(_) => {}
                        Err(e) => return Ok(e.to_string()),
                    }
                }
            })
            .await
            .expect("an answer in time");
            let e = refused.unwrap_or_else(|served| panic!("no certificate: {served}"));
            assert!(e.contains("CertificateRequired"), "{e}");
            tls_refused += 1;
        }
    }

    // --- Fences: a last allowed event from every attacking connection and
    // from root, after everything it sent before. ---
    alice5
        .send(&v5_publish_q1("sensors/zz/alice5-end", 9999, b"end"))
        .await;
    assert_eq!(v5_reason(&mut alice5, 0x40, Some(9999)).await, 0);
    alice_nats
        .publish("sensors.zz.nats-end", "end".into())
        .await
        .unwrap();
    alice_nats.flush().await.unwrap();
    root_pub
        .publish("sensors/zz/root-end", QoS::AtLeastOnce, "end")
        .await;
    let legit: BTreeSet<String> = (0..BATCHES).map(|b| format!("sensors/t/{b}")).collect();
    let legit_nats: BTreeSet<String> = (0..BATCHES).map(|b| format!("sensors.t.{b}")).collect();
    for inbox in [&alice_sub, &alice_wide, &alice_tls, &root_all] {
        inbox
            .wait_until("every legitimate event and root's last", |m| {
                m.iter()
                    .filter(|m| m.topic.starts_with("sensors/t/"))
                    .count()
                    >= BATCHES
                    && m.iter().any(|m| m.topic == "sensors/zz/root-end")
            })
            .await;
        assert_eq!(topics_under(inbox, "sensors/t/"), legit, "{}", inbox.name);
    }
    for inbox in [&nats_sensors, &nats_all] {
        inbox
            .wait_until("every legitimate event and root's last", |m| {
                m.iter()
                    .filter(|m| m.topic.starts_with("sensors.t."))
                    .count()
                    >= BATCHES
                    && m.iter().any(|m| m.topic == "sensors.zz.root-end")
            })
            .await;
        assert_eq!(
            topics_under(inbox, "sensors.t."),
            legit_nats,
            "{}",
            inbox.name
        );
    }
    root_all
        .wait_until("alice's last allowed events", |m| {
            ["sensors/zz/alice5-end", "sensors/zz/nats-end"]
                .iter()
                .all(|t| m.iter().any(|m| m.topic == *t))
        })
        .await;
    // Nothing alice may not read reached her, on any protocol.
    for inbox in [&alice_sub, &alice_wide, &alice_tls] {
        assert_eq!(inbox.count_prefix("sensors/secret/"), 0, "{}", inbox.name);
    }
    for inbox in [&nats_sensors, &nats_all] {
        assert_eq!(inbox.count_prefix("sensors.secret."), 0, "{}", inbox.name);
    }
    // root read every secret event (they were routed: alice's filters
    // skipped them), and none that alice tried to write.
    assert_eq!(
        topics_under(&root_all, "sensors/secret/root/").len(),
        BATCHES
    );
    assert_eq!(root_all.count_prefix("sensors/secret/alice/"), 0);
    assert!(nats_errors.try_recv().is_err(), "no other -ERR");
    drop(denied_subs);

    // --- The counts. ---
    let first_v4 = v4_codes[0];
    assert_eq!(first_v4, 0x04, "the first guess is checked");
    let (v4_checked, v5_checked) = (
        v4_codes.iter().filter(|c| **c == 0x04).count(),
        v5_codes.iter().filter(|c| **c == 0x86).count(),
    );
    eprintln!(
        "attack: MQTT 3.1.1 logins {} ({v4_checked} 0x04, the rest 0x05), MQTT 5 logins {} \
         ({v5_checked} 0x86, the rest 0x87), NATS logins {nats_refused}, forbidden publishes \
         MQTT 5 {mqtt_pub_denied} NATS {nats_pub_denied}, forbidden subscriptions MQTT 5 \
         {mqtt_sub_denied} NATS {nats_sub_denied}, TLS without certificate {tls_refused}; \
         legitimate events {BATCHES} to each of 6 subscriptions, secret events {BATCHES}",
        v4_codes.len(),
        v5_codes.len(),
    );
    assert!(v4_codes.len() >= 100 && v5_codes.len() >= 50 && nats_refused >= 50);
    // The per-address limit (auth_failures_max, default 10, per shard)
    // kicked in: at most 10 guesses per shard were checked, MQTT and NATS
    // together; the rest were refused unchecked as not authorized.
    assert!(
        v4_checked + v5_checked <= 2 * 10,
        "{v4_checked} + {v5_checked}"
    );
    assert!(v4_codes.contains(&0x05) && v5_codes.contains(&0x87));
    assert!(mqtt_pub_denied >= 50 && nats_pub_denied >= 50 && tls_refused >= 20);
    let admin = weft.admin;
    let mqtt_logins = (v4_codes.len() + v5_codes.len()) as u64;
    let (nats_logins, tls_n) = (nats_refused as u64, tls_refused as u64);
    let expect = [
        (
            "weft_auth_failures_total",
            vec!["protocol=\"mqtt\""],
            mqtt_logins,
        ),
        (
            "weft_auth_failures_total",
            vec!["protocol=\"nats\""],
            nats_logins,
        ),
        (
            "weft_authz_denied_total",
            vec!["protocol=\"mqtt\"", "action=\"publish\""],
            mqtt_pub_denied as u64,
        ),
        (
            "weft_authz_denied_total",
            vec!["protocol=\"nats\"", "action=\"publish\""],
            nats_pub_denied as u64,
        ),
        (
            "weft_authz_denied_total",
            vec!["protocol=\"mqtt\"", "action=\"subscribe\""],
            mqtt_sub_denied as u64,
        ),
        (
            "weft_authz_denied_total",
            vec!["protocol=\"nats\"", "action=\"subscribe\""],
            nats_sub_denied as u64,
        ),
        // Each secret event skipped by each of alice's checked MQTT
        // subscriptions (three) and NATS ones (two).
        (
            "weft_authz_denied_total",
            vec!["protocol=\"mqtt\"", "action=\"deliver\""],
            3 * BATCHES as u64,
        ),
        (
            "weft_authz_denied_total",
            vec!["protocol=\"nats\"", "action=\"deliver\""],
            2 * BATCHES as u64,
        ),
        ("weft_tls_handshake_failures_total", vec![], tls_n),
    ];
    wait_until("every attempt counted", WAIT, || async {
        let (status, body) = admin_get(admin, "/metrics").await;
        assert_eq!(status, 200);
        for (name, labels, at_least) in &expect {
            let n = metric(&body, name, labels);
            if n < *at_least {
                return Err(format!("{name}{labels:?} = {n} < {at_least}"));
            }
        }
        Ok(())
    })
    .await;
    // And no more: every denial and refusal above, counted once.
    let (_, body) = admin_get(admin, "/metrics").await;
    for (name, labels, exactly) in &expect {
        assert_eq!(metric(&body, name, labels), *exactly, "{name}{labels:?}");
    }
}
