//! SIGHUP reloads `[security]` in place: sessions whose rights the new
//! rules changed are ended with each protocol's answer (MQTT 5 DISCONNECT
//! 0x87, NATS `-ERR 'Authorization Violation'`), the others go on; a kept
//! session resumed under the new rules loses the subscriptions they deny;
//! a configuration that does not validate changes nothing.

mod common;

use common::*;
use futures::StreamExt;
use std::io::{BufRead, BufReader, Write};
use weft::mqtt::v5::{self, reason, Packet, Properties};

fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    v5::encode(p, &mut out).unwrap();
    out
}

/// An MQTT 5 session (CONNACK read), kept for `expiry_s` after it ends.
async fn v5_session(addr: std::net::SocketAddr, id: &str, clean: bool, expiry_s: u32) -> Raw {
    let mut raw = Raw::open(addr).await;
    raw.send(&encode(&Packet::Connect(v5::Connect {
        clean_start: clean,
        keep_alive_s: 30,
        properties: Properties {
            session_expiry_interval: (expiry_s > 0).then_some(expiry_s),
            ..Properties::default()
        },
        client_id: id,
        will: None,
        username: None,
        password: None,
    })))
    .await;
    let bytes = raw.read_packet().await;
    let Packet::ConnAck(a) = v5::decode(&bytes, &Default::default()).unwrap().unwrap().0 else {
        panic!("CONNACK expected: {bytes:?}");
    };
    assert_eq!(a.reason_code, reason::SUCCESS);
    raw
}

async fn next_v5(raw: &mut Raw) -> Vec<u8> {
    raw.read_packet().await
}

/// An MQTT 3.1.1 login with `user` and `password`: Ok, or the CONNACK's
/// refusal.
async fn login(
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
) -> Result<(), rumqttc::ConnectReturnCode> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("login-probe-{n}");
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_credentials(user, password);
    let (_client, mut events) = rumqttc::AsyncClient::new(o, 4);
    loop {
        match tokio::time::timeout(WAIT, events.poll())
            .await
            .expect("an answer")
        {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return Ok(()),
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("login: {e}"),
            Ok(_) => {}
        }
    }
}

/// A fresh MQTT 3.1.1 connection (its own client id) subscribes to
/// `filter` once: the SUBACK's code, or why there was none (a connection
/// the reload ended while it was being set up is closed: a try again).
async fn subscribe_once(
    addr: std::net::SocketAddr,
    filter: &str,
) -> Result<rumqttc::SubscribeReasonCode, String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let o = rumqttc::MqttOptions::new(format!("probe-{n}"), addr.ip().to_string(), addr.port());
    let (client, mut events) = rumqttc::AsyncClient::new(o, 4);
    client
        .subscribe(filter, rumqttc::QoS::AtMostOnce)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)))) => {
                return a.return_codes.first().copied().ok_or("empty SUBACK".into())
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no SUBACK in time".into()),
        }
    }
}

fn config(deny: &str) -> String {
    // (The anonymous rules hold for publishing and reading alike.)
    format!("[security]\nallow_anonymous = true\n[security.anonymous]\ndeny = [\"{deny}\"]\n")
}

/// A raw NATS client past CONNECT (PONG read), reading lines.
fn nats_raw(addr: std::net::SocketAddr) -> (std::net::TcpStream, BufReader<std::net::TcpStream>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO "), "{line}");
    s.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "PONG\r\n");
    (s, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_rights_ends_those_sessions_in_place() {
    let weft = Weft::launch(2, &config("secret/#"), Some("info"), true);
    let mut mqtt = v5_session(weft.shard_addrs[0], "anon-5", true, 0).await;
    let (_nats, mut nats_lines) = nats_raw(weft.nats);

    // A rule that does not touch the anonymous rights: nothing ends.
    let text = std::fs::read_to_string(&weft.config_path).unwrap();
    std::fs::write(
        &weft.config_path,
        format!(
            "{text}[[security.users]]\nname = \"ops\"\ntoken = \"t0\"\n\
             subscribe = {{ deny = [\"x/#\"] }}\n"
        ),
    )
    .unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    let line = weft.wait_for_log("SIGHUP: configuration reloaded");
    assert!(line.contains("security.users"), "names the key: {line}");
    // Fence: every shard took the new generation (a wrong token for the
    // new user is refused; with no user configured, credentials were not
    // looked at).
    for shard in &weft.shard_addrs {
        wait_until("ops known on every shard", WAIT, || async {
            match login(*shard, "ops", "nope").await {
                Err(rumqttc::ConnectReturnCode::BadUserNamePassword) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    assert!(
        !weft.log_contains("its connection is closed"),
        "nobody's rights changed"
    );

    // The anonymous rules change: both sessions end, each as its protocol says.
    let text = std::fs::read_to_string(&weft.config_path).unwrap();
    std::fs::write(&weft.config_path, text.replace("secret/#", "private/#")).unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    let bytes = next_v5(&mut mqtt).await;
    let Packet::Disconnect(d) = v5::decode(&bytes, &Default::default()).unwrap().unwrap().0 else {
        panic!("DISCONNECT expected: {bytes:?}");
    };
    assert_eq!(d.reason_code, reason::NOT_AUTHORIZED);
    assert!(mqtt.closed_by_server().await);
    let mut line = String::new();
    nats_lines.read_line(&mut line).unwrap();
    assert_eq!(line, "-ERR 'Authorization Violation'\r\n");
    weft.wait_for_log("the rules of its rights changed");

    // New connections get the new rules, on every shard once it took the
    // new generation (each shard applies a reload on its next tick):
    // `private/#` is denied now.
    for shard in &weft.shard_addrs {
        wait_until("private/# denied", WAIT, || async {
            match subscribe_once(*shard, "private/x").await? {
                rumqttc::SubscribeReasonCode::Failure => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
    let mut fresh = v5_session(weft.addr, "anon-after", true, 0).await;
    fresh
        .send(&encode(&Packet::Subscribe(v5::Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![("private/x", v5::SubscriptionOptions::default())],
        })))
        .await;
    let bytes = next_v5(&mut fresh).await;
    let Packet::SubAck(a) = v5::decode(&bytes, &Default::default()).unwrap().unwrap().0 else {
        panic!("SUBACK expected: {bytes:?}");
    };
    assert_eq!(a.reason_codes, [reason::NOT_AUTHORIZED]);

    // A configuration that does not validate changes nothing.
    let text = std::fs::read_to_string(&weft.config_path).unwrap();
    std::fs::write(
        &weft.config_path,
        text.replace("private/#", "private/#/bad"),
    )
    .unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    weft.wait_for_log("configuration not reloaded");
    let _still = v5_session(weft.addr, "anon-still", true, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_session_resumed_under_new_rules_loses_what_they_deny() {
    let weft = Weft::launch(1, &config("nothing/#"), Some("info"), true);
    let mut kept = connect_session(weft.addr, "kept-r", false).await;
    assert_eq!(
        kept.subscribe("later-denied/#", rumqttc::QoS::AtLeastOnce)
            .await,
        vec![rumqttc::SubscribeReasonCode::Success(
            rumqttc::QoS::AtLeastOnce
        )]
    );
    kept.subscribe("open/#", rumqttc::QoS::AtLeastOnce).await;
    kept.client.disconnect().await.unwrap();
    drop(kept);
    wait_until("kept-r offline", WAIT, || async {
        match sessions_of(weft.admin, "kept-r").await[..] {
            [false] => Ok(()),
            ref listed => Err(format!("online flags {listed:?}")),
        }
    })
    .await;
    let text = std::fs::read_to_string(&weft.config_path).unwrap();
    std::fs::write(
        &weft.config_path,
        text.replace("nothing/#", "later-denied/#"),
    )
    .unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    weft.wait_for_log("SIGHUP: configuration reloaded");
    // Fence: the shard took the new rules.
    wait_until("later-denied/# denied", WAIT, || async {
        match subscribe_once(weft.addr, "later-denied/x").await? {
            rumqttc::SubscribeReasonCode::Failure => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let mut back = connect_session(weft.addr, "kept-r", false).await;
    let publisher = connect(weft.addr, "pub-r").await;
    publisher
        .publish("later-denied/a", rumqttc::QoS::AtLeastOnce, "no")
        .await;
    publisher
        .publish("open/a", rumqttc::QoS::AtLeastOnce, "yes")
        .await;
    let p = back.next_publish().await;
    assert_eq!((&p.topic[..], &p.payload[..]), ("open/a", &b"yes"[..]));
    // The denied subscription is gone, not merely filtered: the session
    // lists one.
    let (_, body) = admin_get(weft.admin, "/subscriptions").await;
    assert!(!body.contains("later-denied"), "{body}");
    assert!(body.contains("open/#"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_user_revokes_it_in_place() {
    let users = "[[security.users]]\nname = \"gone\"\ntoken = \"gone-token\"\n\
                 [[security.users]]\nname = \"stays\"\ntoken = \"stays-token\"\n";
    let weft = Weft::launch(1, users, Some("info"), true);
    let nats_as = |token: &'static str| {
        let addr = weft.nats;
        async move {
            async_nats::ConnectOptions::with_token(token.into())
                .connect(addr.to_string())
                .await
                .unwrap()
        }
    };
    let stays = nats_as("stays-token").await;
    let mut stays_sub = stays.subscribe("still.here").await.unwrap();
    nats_sync(&stays).await;
    // `gone` over raw NATS, to read the exact error line.
    let mut s = std::net::TcpStream::connect(weft.nats).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    s.write_all(b"CONNECT {\"auth_token\":\"gone-token\"}\r\nPING\r\n")
        .unwrap();
    line.clear();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "PONG\r\n");

    let text = std::fs::read_to_string(&weft.config_path).unwrap();
    let without = text.replace(
        "[[security.users]]\nname = \"gone\"\ntoken = \"gone-token\"\n",
        "",
    );
    assert_ne!(text, without, "the user is in the file");
    std::fs::write(&weft.config_path, without).unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    line.clear();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "-ERR 'Authorization Violation'\r\n");
    weft.wait_for_log("reload: user removed");
    // The other user's session goes on; the removed one cannot come back.
    stays.publish("still.here", "yes".into()).await.unwrap();
    let m = tokio::time::timeout(WAIT, stays_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"yes");
    // On every shard, once it took the new generation (each applies a
    // reload on its next tick), the removed user's token is refused.
    for shard in &weft.nats_shards {
        wait_until("gone-token refused", WAIT, || async {
            match async_nats::ConnectOptions::with_token("gone-token".into())
                .connect(shard.to_string())
                .await
            {
                Err(e)
                    if e.to_string()
                        .to_lowercase()
                        .contains("authorization violation") =>
                {
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
                Ok(_) => Err("still accepted".into()),
            }
        })
        .await;
    }
}
