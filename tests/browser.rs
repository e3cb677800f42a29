//! Browsers on the web edge (issue 14, acceptance 1): MQTT.js (the `mqtt`
//! npm package) and nats.ws in headless Chromium reach weft over its
//! WebSocket listeners (`--mqtt-ws-listen`, path `/mqtt`, subprotocol
//! `mqtt`; `--nats-ws-listen`), and events cross both ways between them
//! and TCP clients (rumqttc, async-nats) — and between the two browser
//! clients themselves, MQTT.js ⇄ nats.ws through weft; events larger than
//! a frame, with every byte value; and wss, where the browser trusts the
//! test's certificate (pinned by its key) and refuses it unpinned.
//!
//! The browser is Debian's chromium driven by puppeteer-core from
//! `tests/browser/run.mjs` (node), which this test feeds one JSON operation
//! a line and reads JSON events from (see that file).
//! `scripts/browser-setup.sh` (called by scripts/test.sh) installs the
//! browser and the npm packages. Where they are missing the test skips
//! visibly: it says so on stderr and appends a line to the file named by
//! `WEFT_SKIP_REPORT` (scripts/test.sh prints it at the end); with
//! `WEFT_BROWSER_REQUIRED=1` (scripts/test.sh sets it in CI) it fails
//! instead. A screenshot of the page is left in cargo's target tmp dir
//! (`browser-page.png`), for a person to look at; it is not asserted.

mod common;

use std::net::SocketAddr;
use std::path::Path;

#[path = "support/browser.rs"]
mod browser;

use browser::*;
use common::*;
use rumqttc::QoS;
use serde_json::json;

/// The TCP clients: subscribers to what the browser publishes (on shard
/// 0), publishers to the browser (on shard 1).
struct Tcp {
    mqtt_inbox: Inbox,
    _mqtt_sub: rumqttc::AsyncClient,
    nats_inbox: Inbox,
    _nats_sub: async_nats::Client,
    mqtt_pub: Client,
    nats_pub: async_nats::Client,
}

impl Tcp {
    /// Subscribed (in force on every shard) to `filter` over MQTT and to
    /// `subject` over NATS.
    async fn start(weft: &Weft, filter: &str, subject: &str) -> Tcp {
        let mut mqtt_sub = connect(weft.shard_addrs[0], "tcp-mqtt-sub").await;
        mqtt_sub.subscribe(filter, QoS::AtLeastOnce).await;
        let (_mqtt_sub, mqtt_inbox) = Inbox::mqtt(mqtt_sub);
        let nats_sub = nats(weft.nats_shards[0]).await;
        let nats_inbox = Inbox::nats(
            "tcp-nats-sub",
            nats_sub.subscribe(subject.to_string()).await.unwrap(),
        );
        nats_sync(&nats_sub).await;
        Tcp {
            mqtt_inbox,
            _mqtt_sub,
            nats_inbox,
            _nats_sub: nats_sub,
            mqtt_pub: connect(weft.shard_addrs[1], "tcp-mqtt-pub").await,
            nats_pub: nats(weft.nats_shards[1]).await,
        }
    }

    /// Until both subscribers have `n` messages (bounded).
    async fn wait(&self, n: usize) {
        for inbox in [&self.mqtt_inbox, &self.nats_inbox] {
            inbox
                .wait_until("the browser's events", |m| m.len() >= n)
                .await;
        }
    }

    /// Both subscribers received exactly `want` (MQTT topics; the NATS
    /// subscriber sees them as subjects), in any order.
    fn assert_received(&self, want: &[(&str, &[u8])]) {
        let sorted = |inbox: &Inbox| {
            let mut got: Vec<(String, Vec<u8>)> = inbox
                .msgs()
                .into_iter()
                .map(|m| (m.topic, m.payload))
                .collect();
            got.sort();
            got
        };
        let mut want_mqtt: Vec<(String, Vec<u8>)> = want
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_vec()))
            .collect();
        want_mqtt.sort();
        let want_nats: Vec<(String, Vec<u8>)> = want_mqtt
            .iter()
            .map(|(t, p)| (t.replace('/', "."), p.clone()))
            .collect();
        let got = sorted(&self.mqtt_inbox);
        assert!(
            got == want_mqtt,
            "MQTT subscriber got {}; want {}",
            describe(&got),
            describe(&want_mqtt)
        );
        let got = sorted(&self.nats_inbox);
        assert!(
            got == want_nats,
            "NATS subscriber got {}; want {}",
            describe(&got),
            describe(&want_nats)
        );
    }
}

/// Messages for a failure message, payloads shortened.
fn describe(messages: &[(String, Vec<u8>)]) -> String {
    let shown: Vec<String> = messages
        .iter()
        .map(|(t, p)| format!("{t}: {}", shorten(p)))
        .collect();
    shown.join("; ")
}

/// Publishes over TCP MQTT (QoS 0 probes).
async fn mqtt_probe(client: &Client, topic: &str, n: usize) {
    client.publish(topic, QoS::AtMostOnce, n.to_string()).await;
}

async fn nats_probe(client: &async_nats::Client, subject: &str, n: usize) {
    client
        .publish(subject.to_string(), n.to_string().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_clients_cross_with_tcp_clients() {
    if skipped("browser_clients_cross_with_tcp_clients") {
        return;
    }
    let (weft, mqtt_ws, nats_ws) = start_weft();
    let mqtt_url = format!("ws://{mqtt_ws}/mqtt");
    let nats_url = format!("ws://{nats_ws}");

    let tcp = Tcp::start(&weft, "from-browser/#", "from-browser.>").await;
    let (tcp_mqtt_pub, tcp_nats_pub) = (&tcp.mqtt_pub, &tcp.nats_pub);

    // The browser: MQTT.js speaking MQTT 3.1.1 ("m") and MQTT 5 ("m5"),
    // nats.ws ("n").
    let mut runner = Runner::start().await;
    runner
        .connect("m", "mqtt", &mqtt_url, json!({"protocol_version": 4}))
        .await;
    runner
        .connect("m5", "mqtt", &mqtt_url, json!({"protocol_version": 5}))
        .await;
    runner.connect("n", "nats", &nats_url, json!({})).await;
    // A SUBACK follows a barrier through every shard (README): MQTT
    // subscriptions are in force everywhere once subscribe returns.
    runner.subscribe("m", "to-browser/mqtt/#", 1).await;
    runner.subscribe("m", "n2m/#", 1).await;
    runner.subscribe("m5", "to-browser/mqtt5/#", 1).await;
    // NATS interest travels on its own: probes from each publisher.
    runner.subscribe("n", "to-browser.nats.>", 0).await;
    runner.subscribe("n", "m2n.>", 0).await;
    fence_browser(&runner, "n", "to-browser.nats.probe", |i| {
        mqtt_probe(tcp_mqtt_pub, "to-browser/nats/probe", i)
    })
    .await;
    fence_browser(&runner, "n", "to-browser.nats.probe", |i| {
        nats_probe(tcp_nats_pub, "to-browser.nats.probe", i)
    })
    .await;
    fence_in_browser(&mut runner, "m", "m2n/probe", "n", "m2n.probe").await;

    // TCP → browser, MQTT and NATS publishers to each browser client.
    tcp_mqtt_pub
        .publish("to-browser/mqtt/1", QoS::AtLeastOnce, "tcp mqtt → MQTT.js")
        .await;
    tcp_mqtt_pub
        .publish(
            "to-browser/mqtt5/1",
            QoS::AtLeastOnce,
            "tcp mqtt → MQTT.js v5",
        )
        .await;
    tcp_mqtt_pub
        .publish("to-browser/nats/1", QoS::AtLeastOnce, "tcp mqtt → nats.ws")
        .await;
    for (subject, payload) in [
        ("to-browser.mqtt.2", "tcp nats → MQTT.js"),
        ("to-browser.mqtt5.2", "tcp nats → MQTT.js v5"),
        ("to-browser.nats.2", "tcp nats → nats.ws"),
    ] {
        tcp_nats_pub
            .publish(subject, payload.as_bytes().to_vec().into())
            .await
            .unwrap();
    }
    tcp_nats_pub.flush().await.unwrap();

    // Browser → TCP, and MQTT.js ⇄ nats.ws inside the browser.
    runner
        .publish("m", "from-browser/mqtt", "MQTT.js → tcp ✓", 1)
        .await;
    runner
        .publish("m5", "from-browser/mqtt5", "MQTT.js v5 → tcp ✓", 1)
        .await;
    runner
        .publish("n", "from-browser.nats", "nats.ws → tcp ✓", 0)
        .await;
    runner.publish("m", "m2n/1", "MQTT.js → nats.ws", 1).await;
    runner.publish("n", "n2m.1", "nats.ws → MQTT.js", 0).await;

    let mut want = vec![
        received("m", "to-browser/mqtt/1", "tcp mqtt → MQTT.js"),
        received("m", "to-browser/mqtt/2", "tcp nats → MQTT.js"),
        received("m", "n2m/1", "nats.ws → MQTT.js"),
        received("m5", "to-browser/mqtt5/1", "tcp mqtt → MQTT.js v5"),
        received("m5", "to-browser/mqtt5/2", "tcp nats → MQTT.js v5"),
        received("n", "to-browser.nats.1", "tcp mqtt → nats.ws"),
        received("n", "to-browser.nats.2", "tcp nats → nats.ws"),
        received("n", "m2n.1", "MQTT.js → nats.ws"),
    ];
    want.sort();
    runner
        .wait_messages("every event to the browser", |got| {
            got.iter().filter(|m| !m.topic.contains("probe")).count() >= want.len()
        })
        .await;
    let from_browser = [
        ("from-browser/mqtt", "MQTT.js → tcp ✓"),
        ("from-browser/mqtt5", "MQTT.js v5 → tcp ✓"),
        ("from-browser/nats", "nats.ws → tcp ✓"),
    ];
    tcp.wait(from_browser.len()).await;
    runner
        .op(json!({"op": "screenshot", "path": screenshot_path()}))
        .await;

    assert_eq!(real_messages(&runner), want, "{}", runner.transcript());
    // QoS 1 publish, QoS 1 subscription: delivered at QoS 1 over WebSocket.
    let event = runner.message_event("m", "to-browser/mqtt/1").unwrap();
    assert_eq!(event["qos"], 1, "{event}");
    let want: Vec<(&str, &[u8])> = from_browser
        .iter()
        .map(|(t, p)| (*t, p.as_bytes()))
        .collect();
    tcp.assert_received(&want);
    runner.close().await;
    drop(weft);
}

/// `len` bytes in which every byte value occurs and whose order matters
/// (an odd step through 0..=255 from `seed`).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(37)) ^ (i >> 8) as u8)
        .collect()
}

/// Events larger than one WebSocket frame weft writes
/// (`write_frame_bytes_max`, 64 KiB) and than its read buffer
/// (`read_buffer_bytes`, 16 KiB), with every byte value, both ways: a
/// packet that spans frames reaches MQTT.js and nats.ws whole, and one the
/// browser sends in one large frame reaches the TCP clients whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_binary_events_cross_in_several_frames() {
    if skipped("large_binary_events_cross_in_several_frames") {
        return;
    }
    const LEN: usize = 200_000;
    let (weft, mqtt_ws, nats_ws) = start_weft();
    let tcp = Tcp::start(&weft, "big-from-browser/#", "big-from-browser.>").await;
    let mut runner = Runner::start().await;
    runner
        .connect("m", "mqtt", &format!("ws://{mqtt_ws}/mqtt"), json!({}))
        .await;
    runner
        .connect("n", "nats", &format!("ws://{nats_ws}"), json!({}))
        .await;
    runner.subscribe("m", "big-to-browser/#", 1).await;
    runner.subscribe("n", "big-to-browser.>", 0).await;
    fence_browser(&runner, "n", "big-to-browser.probe", |i| {
        mqtt_probe(&tcp.mqtt_pub, "big-to-browser/probe", i)
    })
    .await;
    fence_browser(&runner, "n", "big-to-browser.probe", |i| {
        nats_probe(&tcp.nats_pub, "big-to-browser.probe", i)
    })
    .await;

    let (from_mqtt, from_nats) = (pattern(LEN, 1), pattern(LEN, 2));
    let (from_mqtt_js, from_nats_ws) = (pattern(LEN, 3), pattern(LEN, 4));
    tcp.mqtt_pub
        .publish("big-to-browser/mqtt", QoS::AtLeastOnce, from_mqtt.clone())
        .await;
    tcp.nats_pub
        .publish("big-to-browser.nats", from_nats.clone().into())
        .await
        .unwrap();
    tcp.nats_pub.flush().await.unwrap();
    runner
        .publish_bytes("m", "big-from-browser/mqtt", &from_mqtt_js, 1)
        .await;
    runner
        .publish_bytes("n", "big-from-browser.nats", &from_nats_ws, 0)
        .await;

    let bytes = |client: &str, topic: &str, payload: &[u8]| Received {
        client: client.into(),
        topic: topic.into(),
        payload: payload.to_vec(),
    };
    let mut want = vec![
        bytes("m", "big-to-browser/mqtt", &from_mqtt),
        bytes("m", "big-to-browser/nats", &from_nats),
        bytes("n", "big-to-browser.mqtt", &from_mqtt),
        bytes("n", "big-to-browser.nats", &from_nats),
    ];
    want.sort();
    runner
        .wait_messages("the large events in the browser", |got| {
            got.iter().filter(|m| !m.topic.contains("probe")).count() >= want.len()
        })
        .await;
    tcp.wait(2).await;
    assert_eq!(real_messages(&runner), want, "{}", runner.transcript());
    tcp.assert_received(&[
        ("big-from-browser/mqtt", &from_mqtt_js),
        ("big-from-browser/nats", &from_nats_ws),
    ]);
    runner.close().await;
    drop(weft);
}

/// wss from the browser: MQTT.js and nats.ws over TLS to listeners with
/// `tls = true` (the browser trusts the test's server certificate, pinned
/// by its key), events crossing to and from a TCP client; and without the
/// pin the browser refuses the certificate, so the TLS is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_clients_over_wss() {
    if skipped("browser_clients_over_wss") {
        return;
    }
    use common::pki::Pki;
    let pki = Pki::new();
    let ca = pki.ca("browser");
    let server = pki.signed(&ca, "server", "localhost");
    let toml = format!(
        "[mqtt.ws]\nlisten = \"127.0.0.1:0\"\ntls = true\n\
         [mqtt.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n\
         [nats.ws]\nlisten = \"127.0.0.1:0\"\ntls = true\n\
         [nats.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n",
        c = server.cert,
        k = server.key
    );
    let weft = Weft::start(2, &toml);
    let mqtt_url = format!("wss://127.0.0.1:{}/mqtt", weft.mqtt_ws.unwrap().port());
    let nats_url = format!("wss://127.0.0.1:{}", weft.nats_ws.unwrap().port());

    // A runner ends at its first failure: one for each client.
    for (kind, url) in [("mqtt", &mqtt_url), ("nats", &nats_url)] {
        let mut untrusting = Runner::start().await;
        let op = json!({"op": "connect", "client": kind, "kind": kind, "url": url});
        untrusting.send(&op);
        let answer = untrusting.any_answer(&op.to_string(), OP_TIMEOUT_MS).await;
        assert_eq!(
            answer["event"], "failed",
            "{kind} over wss without the pin: {answer}"
        );
        let status = untrusting.exit().await;
        let transcript = untrusting.transcript();
        assert!(!status.success(), "{kind}: runner {status}\n{transcript}");
        assert!(
            transcript.contains("ERR_CERT_AUTHORITY_INVALID"),
            "{kind}: refused for the certificate\n{transcript}"
        );
    }

    let mut mqtt_sub = connect(weft.shard_addrs[0], "tcp-mqtt-sub").await;
    mqtt_sub
        .subscribe("wss-from-browser/#", QoS::AtLeastOnce)
        .await;
    let (_mqtt_sub, inbox) = Inbox::mqtt(mqtt_sub);
    let publisher = connect(weft.shard_addrs[1], "tcp-mqtt-pub").await;
    let mut runner = Runner::start_trusting(&[&server.cert]).await;
    runner.connect("m", "mqtt", &mqtt_url, json!({})).await;
    runner.connect("n", "nats", &nats_url, json!({})).await;
    runner.subscribe("m", "wss-to-browser/#", 1).await;
    runner.subscribe("n", "wss-to-browser.>", 0).await;
    fence_browser(&runner, "n", "wss-to-browser.probe", |i| {
        mqtt_probe(&publisher, "wss-to-browser/probe", i)
    })
    .await;
    publisher
        .publish("wss-to-browser/t", QoS::AtLeastOnce, "over wss ✓")
        .await;
    runner
        .publish("m", "wss-from-browser/mqtt", "MQTT.js over wss", 1)
        .await;
    runner
        .publish("n", "wss-from-browser.nats", "nats.ws over wss", 0)
        .await;
    let mut want = vec![
        received("m", "wss-to-browser/t", "over wss ✓"),
        received("n", "wss-to-browser.t", "over wss ✓"),
    ];
    want.sort();
    runner
        .wait_messages("the event over wss", |got| {
            got.iter().filter(|m| !m.topic.contains("probe")).count() >= want.len()
        })
        .await;
    inbox
        .wait_until("the browser's events over wss", |m| m.len() >= 2)
        .await;
    assert_eq!(real_messages(&runner), want, "{}", runner.transcript());
    let mut got: Vec<(String, Vec<u8>)> = inbox
        .msgs()
        .into_iter()
        .map(|m| (m.topic, m.payload))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "wss-from-browser/mqtt".to_string(),
                b"MQTT.js over wss".to_vec()
            ),
            (
                "wss-from-browser/nats".to_string(),
                b"nats.ws over wss".to_vec()
            ),
        ]
    );
    runner.close().await;
    drop(weft);
}

/// Where the page's screenshot goes: cargo's tmp dir under target/.
fn screenshot_path() -> String {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser-page.png")
        .display()
        .to_string()
}

/// weft (two shards) with both WebSocket listeners on 127.0.0.1 port 0.
fn start_weft() -> (Weft, SocketAddr, SocketAddr) {
    let mut launch = Launch::new(2, "");
    launch.args = [
        "--mqtt-ws-listen",
        "127.0.0.1:0",
        "--nats-ws-listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    launch.log_level = Some("warn".into());
    let weft = Weft::launch_with(launch);
    let mqtt_ws = weft.mqtt_ws.expect("the mqtt ws listener line");
    let nats_ws = weft.nats_ws.expect("the nats ws listener line");
    (weft, mqtt_ws, nats_ws)
}
