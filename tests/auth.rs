//! Authentication against the real binary with real clients: rumqttc
//! (MQTT 3.1.1 and 5) and async-nats with passwords (argon2id, bcrypt),
//! tokens and nkeys; every refusal with its exact code or error text; the
//! NATS rule that nothing precedes CONNECT; the failed-attempt limit per
//! source address and its lifting; the safe default that refuses to start
//! an open non-loopback listener; `weft passwd`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

static IDS: AtomicUsize = AtomicUsize::new(0);

fn id(prefix: &str) -> String {
    format!("{prefix}-{}", IDS.fetch_add(1, Ordering::Relaxed))
}

/// One line of TOML for a user.
fn user(name: &str, key: &str, value: &str) -> String {
    format!("[[security.users]]\nname = \"{name}\"\n{key} = \"{value}\"\n")
}

/// alice: argon2id "wonderland"; bob: bcrypt "builder"; svc: token
/// "tok-123"; edge: the nkey of `seed` (if any).
fn users(nkey: Option<&str>) -> String {
    let argon = weft::security::auth::hash_password(b"wonderland").unwrap();
    let bcrypt = bcrypt::hash("builder", 4).unwrap();
    let mut toml = user("alice", "password", &argon)
        + &user("bob", "password", &bcrypt)
        + &user("svc", "token", "tok-123");
    if let Some(public) = nkey {
        toml += &user("edge", "nkey", public);
    }
    toml
}

/// An MQTT 3.1.1 CONNECT's answer: Ok, or the refusal's return code.
async fn v4(
    addr: SocketAddr,
    credentials: Option<(&str, &str)>,
) -> Result<(), rumqttc::ConnectReturnCode> {
    use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet};
    let mut opts = MqttOptions::new(id("v4"), addr.ip().to_string(), addr.port());
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p);
    }
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("an answer to CONNECT in time")
        {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return match ack.code {
                    rumqttc::ConnectReturnCode::Success => Ok(()),
                    code => Err(code),
                }
            }
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("MQTT 3.1.1 connect: {e:?}"),
        }
    }
}

type V5Code = rumqttc::v5::mqttbytes::v5::ConnectReturnCode;

/// An MQTT 5 CONNECT's answer; `method`: an Authentication Method.
async fn v5(
    addr: SocketAddr,
    credentials: Option<(&str, &str)>,
    method: Option<&str>,
) -> Result<(), V5Code> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
    let mut opts = MqttOptions::new(id("v5"), addr.ip().to_string(), addr.port());
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p);
    }
    if let Some(m) = method {
        opts.set_authentication_method(Some(m.into()));
    }
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("an answer to CONNECT in time")
        {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return match ack.code {
                    V5Code::Success => Ok(()),
                    code => Err(code),
                }
            }
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("MQTT 5 connect: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_311_passwords_tokens_and_refusal_codes() {
    use rumqttc::ConnectReturnCode::{BadUserNamePassword, NotAuthorized};
    let weft = Weft::start(2, &users(None));
    let a = weft.addr;
    assert_eq!(v4(a, Some(("alice", "wonderland"))).await, Ok(()));
    assert_eq!(v4(a, Some(("bob", "builder"))).await, Ok(()));
    // A token as the password of its user's name. (A password alone is
    // MQTT 5's: 3.1.1 has no password without a user name, MQTT-3.1.2-22.)
    assert_eq!(v4(a, Some(("svc", "tok-123"))).await, Ok(()));
    // 0x04: wrong password, unknown user, wrong token.
    for (u, p) in [
        ("alice", "wonder"),
        ("alice", "builder"),
        ("mallory", "wonderland"),
        ("svc", "tok-124"),
    ] {
        assert_eq!(
            v4(a, Some((u, p))).await,
            Err(BadUserNamePassword),
            "{u}/{p}"
        );
    }
    // 0x05: anonymous, users configured and allow_anonymous unset.
    assert_eq!(v4(a, None).await, Err(NotAuthorized));
    // An accepted client works as before.
    let mut opts = rumqttc::MqttOptions::new("alice-works", a.ip().to_string(), a.port());
    opts.set_credentials("alice", "wonderland");
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10);
    client
        .subscribe("auth/t", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let mut subscribed = false;
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .unwrap()
            .unwrap()
        {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                subscribed = true;
                client
                    .publish("auth/t", rumqttc::QoS::AtMostOnce, false, "hi")
                    .await
                    .unwrap();
            }
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                assert!(subscribed);
                assert_eq!(&p.payload[..], b"hi");
                break;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_refusal_codes_and_enhanced_authentication() {
    let weft = Weft::start(2, &users(None));
    let a = weft.addr;
    assert_eq!(v5(a, Some(("alice", "wonderland")), None).await, Ok(()));
    assert_eq!(v5(a, Some(("svc", "tok-123")), None).await, Ok(()));
    // The token alone as the password (rumqttc sends no user name for an
    // empty one), as EMQX's JWT-style logins do.
    assert_eq!(v5(a, Some(("", "tok-123")), None).await, Ok(()));
    assert_eq!(
        v5(a, Some(("", "tok-12")), None).await,
        Err(V5Code::BadUserNamePassword)
    );
    assert_eq!(
        v5(a, Some(("alice", "nope")), None).await,
        Err(V5Code::BadUserNamePassword)
    );
    assert_eq!(v5(a, None, None).await, Err(V5Code::NotAuthorized));
    // Enhanced authentication is not offered: 0x8C, even with a good
    // password.
    assert_eq!(
        v5(a, Some(("alice", "wonderland")), Some("SCRAM-SHA-256")).await,
        Err(V5Code::BadAuthenticationMethod)
    );
}

/// async-nats with `options`; the connect error's kind and text.
async fn nats_with(
    addr: SocketAddr,
    options: async_nats::ConnectOptions,
) -> Result<async_nats::Client, (async_nats::ConnectErrorKind, String)> {
    tokio::time::timeout(WAIT, options.connect(addr.to_string()))
        .await
        .expect("an answer to CONNECT in time")
        .map_err(|e| (e.kind(), e.to_string()))
}

fn violation(r: Result<async_nats::Client, (async_nats::ConnectErrorKind, String)>, what: &str) {
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err((kind, text)) => {
            assert_eq!(
                kind,
                async_nats::ConnectErrorKind::AuthorizationViolation,
                "{what}: {text}"
            );
            assert!(text.contains("authorization violation"), "{what}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_user_password_token_and_nkey() {
    use async_nats::ConnectOptions as O;
    let key = nkeys::KeyPair::new_user();
    let seed = key.seed().unwrap();
    let weft = Weft::start(2, &users(Some(&key.public_key())));
    let n = weft.nats;
    let alice = nats_with(
        n,
        O::new().user_and_password("alice".into(), "wonderland".into()),
    )
    .await
    .expect("alice");
    let svc = nats_with(n, O::with_token("tok-123".into()))
        .await
        .expect("token");
    let edge = nats_with(n, O::with_nkey(seed)).await.expect("nkey");
    // They work: a request from one, answered by another.
    use futures::StreamExt;
    let mut sub = edge.subscribe("auth.echo").await.unwrap();
    nats_sync(&edge).await;
    alice.publish("auth.echo", "x".into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"x");
    drop(svc);

    violation(
        nats_with(
            n,
            O::new().user_and_password("alice".into(), "wrong".into()),
        )
        .await,
        "wrong password",
    );
    violation(
        nats_with(n, O::new().user_and_password("nobody".into(), "x".into())).await,
        "unknown user",
    );
    violation(
        nats_with(n, O::with_token("tok-999".into())).await,
        "wrong token",
    );
    let stranger = nkeys::KeyPair::new_user();
    violation(
        nats_with(n, O::with_nkey(stranger.seed().unwrap())).await,
        "unknown nkey",
    );
    violation(nats_with(n, O::new()).await, "anonymous");
}

/// The INFO line and the answer to `first` on a raw NATS connection.
async fn raw_nats(addr: SocketAddr, first: &[u8]) -> (serde_json::Value, Vec<String>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let info = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let info = serde_json::from_str(info.strip_prefix("INFO ").unwrap()).unwrap();
    w.write_all(first).await.unwrap();
    let mut answer = Vec::new();
    // Until the server closes.
    while let Some(line) = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the server answers and closes")
        .unwrap()
    {
        answer.push(line);
    }
    (info, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_info_and_nothing_before_connect() {
    let key = nkeys::KeyPair::new_user();
    let weft = Weft::start(1, &users(Some(&key.public_key())));
    let (info, answer) = raw_nats(weft.nats, b"PING\r\n").await;
    assert_eq!(info["auth_required"], true);
    let nonce = info["nonce"].as_str().expect("a nonce").to_string();
    assert!(nonce.len() >= 16, "{nonce}");
    assert_eq!(answer, ["-ERR 'Authorization Violation'"]);
    let (info2, answer) = raw_nats(weft.nats, b"SUB x 1\r\n").await;
    assert_ne!(info2["nonce"], nonce.as_str(), "a nonce per connection");
    assert_eq!(answer, ["-ERR 'Authorization Violation'"]);
    // A signature of another connection's nonce is refused.
    let sig = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.sign(nonce.as_bytes()).unwrap())
    };
    let connect = format!(
        "CONNECT {{\"verbose\":false,\"nkey\":\"{}\",\"sig\":\"{sig}\"}}\r\nPING\r\n",
        key.public_key()
    );
    let (_, answer) = raw_nats(weft.nats, connect.as_bytes()).await;
    assert_eq!(answer, ["-ERR 'Authorization Violation'"]);

    // Without users on loopback: no auth_required, no nonce, PING first
    // answered (as before).
    let open = Weft::start(1, "");
    let stream = tokio::net::TcpStream::connect(open.nats).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let info = lines.next_line().await.unwrap().unwrap();
    assert!(
        !info.contains("auth_required") && !info.contains("nonce"),
        "{info}"
    );
    w.write_all(b"PING\r\n").await.unwrap();
    let pong = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pong.as_deref(), Some("PONG"));
}

/// `weft_auth_failures_total{protocol=…}` summed over shards.
async fn failures_metric(admin: SocketAddr, protocol: &str) -> u64 {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let label = format!("protocol=\"{protocol}\"}} ");
    body.lines()
        .filter(|l| l.starts_with("weft_auth_failures_total{") && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_limited_per_source_logged_and_counted() {
    use rumqttc::ConnectReturnCode::{BadUserNamePassword, NotAuthorized};
    let toml = users(None) + "[security]\nauth_failures_max = 3\nauth_failure_window_ms = 1500\n";
    let mut launch = Launch::new(1, &toml);
    launch.capture_stderr = true;
    launch.log_level = Some("warn".into());
    let weft = Weft::launch_with(launch);
    let a = weft.addr;
    for _ in 0..3 {
        assert_eq!(
            v4(a, Some(("alice", "guess"))).await,
            Err(BadUserNamePassword)
        );
    }
    // Over the limit: refused without a check, right password or not, on
    // either protocol (the same shard, the same address).
    assert_eq!(
        v4(a, Some(("alice", "wonderland"))).await,
        Err(NotAuthorized)
    );
    violation(
        nats_with(
            weft.nats,
            async_nats::ConnectOptions::with_token("tok-123".into()),
        )
        .await,
        "NATS from a blocked address",
    );
    let line = weft.wait_for_log("authentication failed");
    assert!(line.contains("127.0.0.1"), "peer address: {line}");
    assert!(line.contains("alice"), "user: {line}");
    assert!(line.contains("mqtt"), "protocol: {line}");
    assert!(failures_metric(weft.admin, "mqtt").await >= 4);
    assert!(failures_metric(weft.admin, "nats").await >= 1);
    // The window passes: the right password works again.
    wait_until("the block lifts", WAIT, || async {
        match v4(a, Some(("alice", "wonderland"))).await {
            Ok(()) => Ok(()),
            Err(code) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(format!("{code:?}"))
            }
        }
    })
    .await;
}

#[test]
fn an_open_non_loopback_listener_refuses_to_start() {
    let out = Command::new(weft_bin())
        .args([
            "run",
            "--mqtt-listen",
            "0.0.0.0:0",
            "--nats-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--cores",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("weft: error: security.allow_anonymous: mqtt.listen = 0.0.0.0:0"),
        "{stderr}"
    );
    // check-config refuses the same file the same way.
    let config = write_config("[nats]\nlisten = \"0.0.0.0:0\"\n");
    let out = Command::new(weft_bin())
        .args(["check-config", config.0.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("weft: error: security.allow_anonymous: nats.listen = 0.0.0.0:0"),
        "{stderr}"
    );
    // With users, or anonymous explicitly allowed, the file is valid.
    for extra in [
        "[security]\nallow_anonymous = true\n".to_string(),
        user("svc", "token", "t"),
    ] {
        let config = write_config(&format!("[nats]\nlisten = \"0.0.0.0:0\"\n{extra}"));
        let out = Command::new(weft_bin())
            .args(["check-config", config.0.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{extra}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_from_stdin_prints_a_hash_a_config_accepts() {
    let mut child = Command::new(weft_bin())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim_end();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_eq!(hash.lines().count(), 1);
    let weft = Weft::start(1, &user("carol", "password", hash));
    assert_eq!(
        v4(weft.addr, Some(("carol", "correct horse"))).await,
        Ok(())
    );
    assert_eq!(
        v4(weft.addr, Some(("carol", "correct horse\n"))).await,
        Err(rumqttc::ConnectReturnCode::BadUserNamePassword)
    );
    // An empty password is refused, with one line.
    let out = Command::new(weft_bin())
        .arg("passwd")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "weft: error: the password is empty"
    );
}

/// Where authentication is required, a NATS client that never sends
/// CONNECT is closed after `limits.connect_timeout_ms` with nats-server's
/// `-ERR 'Authentication Timeout'` (it cannot hold its slot longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nats_client_is_closed_when_authentication_is_due() {
    let weft = Weft::start(
        1,
        &("[limits]\nconnect_timeout_ms = 300\n".to_string() + &users(None)),
    );
    let stream = tokio::net::TcpStream::connect(weft.nats).await.unwrap();
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    lines.read_line(&mut line).await.unwrap();
    assert!(line.contains("\"auth_required\":true"), "{line}");
    line.clear();
    tokio::time::timeout(WAIT, lines.read_line(&mut line))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(line, "-ERR 'Authentication Timeout'\r\n");
    line.clear();
    let n = tokio::time::timeout(WAIT, lines.read_line(&mut line))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(n, 0, "then closed: {line:?}");
}
