//! TLS on the client listeners (`[mqtt.tls]`, `[nats.tls]`) against a real
//! `weft` with certificates made by the test (rcgen): rumqttc (3.1.1 and 5)
//! and async-nats over TLS with and without client certificates, a client
//! without one refused where it is required (and counted), NATS INFO
//! flags, TLS first, plain text refused where TLS is required, served
//! where it is only available, a SIGHUP that swaps the certificate under
//! an established connection, and nats-py / paho-mqtt over TLS.

mod common;

use common::pki::{mqtt_tls, tls_addr, Ca, Pair, Pki};

use std::time::Duration;

use common::*;
use futures::StreamExt;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

/// `[mqtt.tls]` and `[nats.tls]` for `server`, with client certificates
/// from `ca` asked as `client_auth`, plus `nats_extra` keys.
fn tls_toml(server: &Pair, ca: &Ca, client_auth: &str, nats_extra: &str) -> String {
    format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{c}\"\nkey = \"{k}\"\nclient_ca = \"{ca}\"\n\
         client_auth = \"{client_auth}\"\n\
         [nats.tls]\ncert = \"{c}\"\nkey = \"{k}\"\nclient_ca = \"{ca}\"\nclient_auth = \"{client_auth}\"\n{nats_extra}",
        c = server.cert,
        k = server.key,
        ca = ca.path,
    )
}

fn start(toml: &str) -> (Weft, std::net::SocketAddr) {
    start_with(toml, &[])
}

fn start_with(toml: &str, args: &[&str]) -> (Weft, std::net::SocketAddr) {
    let mut l = Launch::new(2, toml);
    l.args = args.iter().map(|a| a.to_string()).collect();
    l.capture_stderr = true;
    l.log_level = Some("info".into());
    let weft = Weft::launch_with(l);
    let addr = tls_addr(&weft);
    (weft, addr)
}

/// Polls `eventloop` until the CONNACK (Ok) or a connection error (Err).
async fn connack(eventloop: &mut rumqttc::EventLoop) -> Result<(), String> {
    tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("an answer in time")
}

/// Subscribes with `client`, publishes from it until its own event comes
/// back: the session runs over the transport both ways.
async fn round_trip_v4(client: AsyncClient, mut eventloop: rumqttc::EventLoop, topic: &str) {
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    client
        .publish(topic, QoS::AtLeastOnce, false, "over tls")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Incoming(Incoming::Publish(p)) = eventloop.poll().await.unwrap() {
                assert_eq!(&p.payload[..], b"over tls");
                return;
            }
        }
    })
    .await
    .expect("own publish back over TLS");
}

async fn metric(admin: std::net::SocketAddr, name: &str) -> u64 {
    let (_, body) = admin_get(admin, "/metrics").await;
    // Summed over the shards' `{shard="i"}` lines.
    let values: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix("{shard=\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    assert!(!values.is_empty(), "no {name} in /metrics");
    values.iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_311_and_5_over_tls_with_and_without_a_client_certificate() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let alice = pki.signed(&ca, "alice", "alice");
    // The listener from the flag (the file's `listen` is overridden).
    let (weft, tls) = start_with(
        &tls_toml(&server, &ca, "optional", "").replace("127.0.0.1:0", "192.0.2.1:1"),
        &["--mqtt-tls-listen", "127.0.0.1:0"],
    );
    let plain_port = weft.addr.port();

    // 3.1.1 without a client certificate (optional).
    let (client, mut eventloop) = AsyncClient::new(mqtt_tls("v4-anon", tls.port(), &ca, None), 10);
    connack(&mut eventloop).await.unwrap();
    round_trip_v4(client, eventloop, "tls/v4").await;

    // 3.1.1 with one.
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_tls("v4-alice", tls.port(), &ca, Some(&alice)), 10);
    connack(&mut eventloop).await.unwrap();
    round_trip_v4(client, eventloop, "tls/v4/alice").await;

    // 5, with a client certificate, reading what a plain client publishes.
    let mut o = rumqttc::v5::MqttOptions::new("v5-alice", "localhost", tls.port());
    o.set_transport(rumqttc::Transport::tls(
        std::fs::read(&ca.path).unwrap(),
        Some((
            alice.cert_pem.clone().into_bytes(),
            alice.key_pem.clone().into_bytes(),
        )),
        None,
    ));
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 10);
    client
        .subscribe("tls/v5", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = tokio::spawn(async move {
        use rumqttc::v5::{mqttbytes::v5::Packet, Event as E5};
        loop {
            match eventloop.poll().await.unwrap() {
                E5::Incoming(Packet::Publish(p)) => return p.payload.to_vec(),
                E5::Incoming(Packet::SubAck(_)) => {
                    // Subscribed: a plain 3.1.1 client publishes.
                    let (plain, mut el) = AsyncClient::new(
                        MqttOptions::new("plain-pub", "127.0.0.1", plain_port),
                        10,
                    );
                    plain
                        .publish("tls/v5", QoS::AtLeastOnce, false, "from plain")
                        .await
                        .unwrap();
                    tokio::spawn(async move { while el.poll().await.is_ok() {} });
                }
                _ => {}
            }
        }
    });
    let payload = tokio::time::timeout(WAIT, got).await.unwrap().unwrap();
    assert_eq!(payload, b"from plain");
    assert_eq!(
        metric(weft.admin, "weft_tls_handshake_failures_total").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused_where_one_is_required() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let alice = pki.signed(&ca, "alice", "alice");
    // A certificate from another CA is no certificate.
    let rogue_ca = pki.ca("rogue");
    let mallory = pki.signed(&rogue_ca, "mallory", "mallory");
    let (weft, tls) = start(&tls_toml(&server, &ca, "required", "required = true"));

    let (_c, mut eventloop) = AsyncClient::new(mqtt_tls("anon", tls.port(), &ca, None), 10);
    assert!(
        connack(&mut eventloop).await.is_err(),
        "served without a certificate"
    );
    let (_c, mut eventloop) =
        AsyncClient::new(mqtt_tls("mallory", tls.port(), &ca, Some(&mallory)), 10);
    assert!(
        connack(&mut eventloop).await.is_err(),
        "served with a rogue certificate"
    );
    let (client, mut eventloop) =
        AsyncClient::new(mqtt_tls("alice", tls.port(), &ca, Some(&alice)), 10);
    connack(&mut eventloop).await.unwrap();
    round_trip_v4(client, eventloop, "tls/required").await;

    // NATS: without a certificate refused, with one served.
    let refused = async {
        let nc = async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(ca.path.clone().into())
            .connect(weft.nats.to_string())
            .await?;
        // TLS 1.3: the client may finish its side before the server's
        // refusal arrives; the first round trip cannot succeed.
        nc.flush().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let refused = tokio::time::timeout(Duration::from_secs(5), refused).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "NATS served without a certificate"
    );
    let nc = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.path.clone().into())
        .add_client_certificate(alice.cert.clone().into(), alice.key.clone().into())
        .connect(weft.nats.to_string())
        .await
        .unwrap();
    let mut sub = nc.subscribe("tls.nats").await.unwrap();
    nc.publish("tls.nats", "hi".into()).await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"hi");

    // Each refusal counted and logged with the peer's address.
    let admin = weft.admin;
    wait_until("handshake failures counted", WAIT, || async move {
        match metric(admin, "weft_tls_handshake_failures_total").await {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} failures")),
        }
    })
    .await;
    let line = weft.wait_for_log("TLS handshake failed");
    assert!(line.contains("127.0.0.1:"), "{line}");
}

/// Reads the INFO line a raw client gets.
fn raw_info(stream: &mut std::net::TcpStream) -> serde_json::Value {
    use std::io::BufRead;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(line.strip_prefix("INFO ").expect("INFO first").trim_end()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_plain_text_is_refused_where_tls_is_required_and_served_where_available() {
    use std::io::{Read, Write};
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");

    let (weft, _) = start(&tls_toml(&server, &ca, "none", "required = true"));
    let mut raw = std::net::TcpStream::connect(weft.nats).unwrap();
    let info = raw_info(&mut raw);
    assert_eq!(info["tls_required"], true);
    raw.write_all(b"CONNECT {}\r\nPING\r\n").unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "-ERR 'Secure Connection - TLS Required'\r\n");
    // async-nats upgrades after the plain INFO.
    let nc = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.path.clone().into())
        .connect(weft.nats.to_string())
        .await
        .unwrap();
    let mut sub = nc.subscribe("after.info").await.unwrap();
    nc.publish("after.info", "up".into()).await.unwrap();
    assert_eq!(
        &tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .payload[..],
        b"up"
    );
    drop(weft);

    let (weft, _) = start(&tls_toml(&server, &ca, "none", "required = false"));
    let mut raw = std::net::TcpStream::connect(weft.nats).unwrap();
    let info = raw_info(&mut raw);
    assert_eq!(info["tls_available"], true);
    assert!(info.get("tls_required").is_none());
    // A plain client is served, and so is one that upgrades.
    let plain = async_nats::connect(weft.nats.to_string()).await.unwrap();
    let tls = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.path.clone().into())
        .connect(weft.nats.to_string())
        .await
        .unwrap();
    let mut sub = tls.subscribe("mixed").await.unwrap();
    // In force on every shard (async-nats's flush is no round trip).
    nats_sync(&tls).await;
    plain.publish("mixed", "plain to tls".into()).await.unwrap();
    plain.flush().await.unwrap();
    assert_eq!(
        &tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .payload[..],
        b"plain to tls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_tls_first_with_and_without_fallback() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    for handshake_first in ["true", "300"] {
        let (weft, _) = start(&tls_toml(
            &server,
            &ca,
            "none",
            &format!("handshake_first = {handshake_first}"),
        ));
        let nc = async_nats::ConnectOptions::new()
            .add_root_certificates(ca.path.clone().into())
            .tls_first()
            .connect(weft.nats.to_string())
            .await
            .unwrap_or_else(|e| panic!("handshake_first = {handshake_first}: {e}"));
        let mut sub = nc.subscribe("first").await.unwrap();
        nc.publish("first", "tls first".into()).await.unwrap();
        assert_eq!(
            &tokio::time::timeout(WAIT, sub.next())
                .await
                .unwrap()
                .unwrap()
                .payload[..],
            b"tls first"
        );
        if handshake_first == "300" {
            // The fallback: a client that waits for the INFO gets it (in
            // plain text, TLS required) and upgrades after it.
            let mut raw = std::net::TcpStream::connect(weft.nats).unwrap();
            assert_eq!(raw_info(&mut raw)["tls_required"], true);
            let nc = async_nats::ConnectOptions::new()
                .add_root_certificates(ca.path.clone().into())
                .connect(weft.nats.to_string())
                .await
                .unwrap();
            nc.flush().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_and_keeps_established_connections() {
    let pki = Pki::new();
    let old_ca = pki.ca("old-ca");
    let new_ca = pki.ca("new-ca");
    let server = pki.signed(&old_ca, "server", "localhost");
    let (weft, tls) = start(&tls_toml(&server, &old_ca, "none", ""));
    let nats = |ca: &Ca| {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(ca.path.clone().into())
            .connect(weft.nats.to_string())
    };
    let established = nats(&old_ca).await.unwrap();
    let mut sub = established.subscribe("swap").await.unwrap();
    established.flush().await.unwrap();
    let (mqtt, mut eventloop) = AsyncClient::new(mqtt_tls("kept", tls.port(), &old_ca, None), 10);
    connack(&mut eventloop).await.unwrap();

    // The same paths get a certificate from another CA.
    let next = pki.signed(&new_ca, "server", "localhost");
    assert_eq!(next.cert, server.cert);
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    weft.wait_for_log("TLS certificates and keys reloaded");

    // Established connections go on, over the old session keys.
    established
        .publish("swap", "still here".into())
        .await
        .unwrap();
    assert_eq!(
        &tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .payload[..],
        b"still here"
    );
    round_trip_v4(mqtt, eventloop, "swap/mqtt").await;
    // New ones see the new certificate: the old CA no longer verifies it.
    assert!(nats(&old_ca).await.is_err(), "old certificate still served");
    let fresh = nats(&new_ca).await.unwrap();
    fresh.flush().await.unwrap();
    let (_c, mut eventloop) = AsyncClient::new(mqtt_tls("new", tls.port(), &new_ca, None), 10);
    connack(&mut eventloop).await.unwrap();

    // A key that does not fit keeps the material in force, one line naming
    // the key.
    let other = pki.signed(&new_ca, "other", "localhost");
    std::fs::copy(&other.key, &next.key).unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    let line = weft.wait_for_log("configuration not reloaded");
    assert!(line.contains("mqtt.tls.key"), "{line}");
    let again = nats(&new_ca).await.unwrap();
    again.flush().await.unwrap();
}

fn python() -> String {
    std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        panic!("WEFT_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python clients")
    })
}

fn run_python(script: &str, args: &[String]) {
    let out = std::process::Command::new(python())
        .arg(format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("pass"),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nats_py_and_paho_mqtt_over_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let alice = pki.signed(&ca, "alice", "alice");
    let (weft, tls) = start(&tls_toml(&server, &ca, "required", "required = true"));
    let files = [ca.path.clone(), alice.cert.clone(), alice.key.clone()];
    run_python(
        "nats_tls.py",
        &[
            &[format!("tls://localhost:{}", weft.nats.port())][..],
            &files,
        ]
        .concat(),
    );
    run_python(
        "paho_tls.py",
        &[
            &["localhost".to_string(), tls.port().to_string()][..],
            &files,
        ]
        .concat(),
    );
}

/// `weft check-config` (and so `run`) refuses bad TLS files with exit
/// status 2 and one line naming the key.
#[test]
fn check_config_names_the_key_of_a_bad_tls_file() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let other = pki.signed(&ca, "other", "localhost");
    let missing = pki.dir.join("missing.pem").display().to_string();
    let mqtt = |cert: &str, key: &str, extra: &str| {
        format!("[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"{key}\"\n{extra}")
    };
    let nats = |cert: &str, key: &str, extra: &str| {
        format!("[nats.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n{extra}")
    };
    let cases = [
        (
            "a key that does not fit",
            mqtt(&server.cert, &other.key, ""),
            "mqtt.tls.key",
        ),
        (
            "an unreadable certificate",
            mqtt(&missing, &server.key, ""),
            "mqtt.tls.cert",
        ),
        (
            "an unreadable key",
            nats(&server.cert, &missing, ""),
            "nats.tls.key",
        ),
        (
            "an unreadable client CA",
            nats(
                &server.cert,
                &server.key,
                &format!("client_ca = \"{missing}\""),
            ),
            "nats.tls.client_ca",
        ),
        (
            "an unreadable client CA that is not used",
            nats(
                &server.cert,
                &server.key,
                &format!("client_ca = \"{missing}\"\nclient_auth = \"none\""),
            ),
            "nats.tls.client_ca",
        ),
        (
            "a key where the certificate goes",
            nats(&server.key, &server.cert, ""),
            "nats.tls.cert",
        ),
        (
            "an identity with no client certificates",
            nats(&server.cert, &server.key, "identity = \"cn\""),
            "nats.tls.identity",
        ),
        (
            "an unknown client_auth",
            nats(&server.cert, &server.key, "client_auth = \"maybe\""),
            "",
        ),
        (
            "a TLS listener without a certificate",
            "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\n".to_string(),
            "mqtt.tls.cert",
        ),
        (
            "required without a certificate",
            "[nats.tls]\nrequired = true\n".to_string(),
            "nats.tls.required",
        ),
    ];
    for (what, toml, key) in cases {
        let file = write_config(&toml);
        let out = std::process::Command::new(weft_bin())
            .args(["check-config", &file.0.display().to_string()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        let named = if key.is_empty() {
            // A parse error names the file and the key's value.
            stderr.contains("maybe")
        } else {
            stderr.starts_with(&format!("weft: error: {key}"))
        };
        assert!(named, "{what}: should name {key:?}: {stderr}");
    }
    let good = write_config(&format!(
        "{}{}",
        mqtt(&server.cert, &server.key, ""),
        nats(
            &server.cert,
            &server.key,
            "required = true\nhandshake_first = 50"
        )
    ));
    let out = std::process::Command::new(weft_bin())
        .args(["check-config", &good.0.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The load tool speaks TLS too (`weft bench --tls-ca`, as
/// perf/tls-compare.sh uses it): every message arrives, MQTT and NATS.
#[test]
fn weft_bench_runs_over_tls() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let (weft, tls) = start(&tls_toml(&server, &ca, "none", "required = true"));
    for (protocol, addr) in [("mqtt", tls), ("nats", weft.nats)] {
        let json = pki.dir.join(format!("{protocol}.json"));
        let out = std::process::Command::new(weft_bin())
            .args(["bench", "--protocol", protocol, "--server"])
            .arg(addr.to_string())
            .args([
                "--msgs",
                "2000",
                "--size",
                "64",
                "--no-progress",
                "--tls-ca",
                &ca.path,
            ])
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{protocol}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(summary["totals"]["received"], 2000, "{protocol}: {summary}");
        assert_eq!(summary["totals"]["lost"], 0, "{protocol}");
    }
}

/// Authentication over TLS: async-nats with a password, a token and an
/// nkey on a listener that requires TLS; a wrong password over TLS is
/// refused with the same error as in plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_over_tls_with_password_token_and_nkey() {
    use async_nats::ConnectOptions as O;
    let pki = Pki::new();
    let ca = pki.ca("auth");
    let server = pki.signed(&ca, "server", "localhost");
    let key = nkeys::KeyPair::new_user();
    let hash = weft::security::auth::hash_password(b"wonderland").unwrap();
    let toml = format!(
        "{}[[security.users]]\nname = \"alice\"\npassword = \"{hash}\"\n\
         [[security.users]]\nname = \"svc\"\ntoken = \"tok-1\"\n\
         [[security.users]]\nname = \"edge\"\nnkey = \"{}\"\n",
        tls_toml(&server, &ca, "none", "required = true\n"),
        key.public_key()
    );
    let (weft, _) = start(&toml);
    let tls = |o: O| {
        o.require_tls(true)
            .add_root_certificates(ca.path.clone().into())
    };
    let addr = weft.nats.to_string();
    let alice = tls(O::with_user_and_password(
        "alice".into(),
        "wonderland".into(),
    ))
    .connect(&addr)
    .await
    .expect("password over TLS");
    let svc = tls(O::with_token("tok-1".into()))
        .connect(&addr)
        .await
        .expect("token over TLS");
    let edge = tls(O::with_nkey(key.seed().unwrap()))
        .connect(&addr)
        .await
        .expect("nkey over TLS");
    let mut sub = alice.subscribe("over.tls").await.unwrap();
    nats_sync(&alice).await;
    for (i, c) in [&svc, &edge].into_iter().enumerate() {
        c.publish("over.tls", format!("{i}").into()).await.unwrap();
        c.flush().await.unwrap();
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.payload, format!("{i}").into_bytes());
    }
    let wrong = tls(O::with_user_and_password("alice".into(), "guess".into()))
        .connect(&addr)
        .await;
    assert!(
        wrong.as_ref().is_err_and(|e| e
            .to_string()
            .to_lowercase()
            .contains("authorization violation")),
        "{:?}",
        wrong.map(|_| ())
    );
}

/// nats-py authenticates over TLS too: tests/py/nats_auth.py (password,
/// token, nkey, right and wrong) with the CA, on a listener that requires
/// TLS.
#[test]
fn nats_py_authenticates_over_tls() {
    let pki = Pki::new();
    let ca = pki.ca("py-auth");
    let server = pki.signed(&ca, "server", "localhost");
    let key = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let hash = weft::security::auth::hash_password(b"wonderland").unwrap();
    let toml = format!(
        "{}[[security.users]]\nname = \"alice\"\npassword = \"{hash}\"\n\
         [[security.users]]\nname = \"svc\"\ntoken = \"tok-123\"\n\
         [[security.users]]\nname = \"edge\"\nnkey = \"{}\"\n",
        tls_toml(&server, &ca, "none", "required = true\n"),
        key.public_key()
    );
    let (weft, _) = start(&toml);
    run_python(
        "nats_auth.py",
        &[
            format!("localhost:{}", weft.nats.port()),
            key.seed().unwrap(),
            stranger.seed().unwrap(),
            ca.path.clone(),
        ],
    );
}
