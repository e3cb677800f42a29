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

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rumqttc::QoS;
use serde_json::{json, Value};

/// The page's deadline for one operation (run.mjs `--op-timeout-ms`);
/// [`WAIT`] bounds what this side waits for on top.
const OP_TIMEOUT_MS: u64 = 15_000;
/// The runner's deadline for the whole run (`--deadline-ms`).
const RUN_DEADLINE_MS: u64 = 150_000;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("WEFT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser test needs and this machine lacks, if anything.
fn missing() -> Option<String> {
    let mut missing = Vec::new();
    if !chromium().exists() {
        missing.push(format!(
            "{} (apt-get install chromium)",
            chromium().display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_string());
    }
    for package in ["puppeteer-core", "mqtt", "nats.ws"] {
        if !browser_dir().join("node_modules").join(package).exists() {
            missing.push(format!("tests/browser/node_modules/{package} (npm ci)"));
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// The browser cannot run here: fail where it is required, else report the
/// skip (stderr and `WEFT_SKIP_REPORT`). Returns true when skipped.
fn skipped(test: &str) -> bool {
    let Some(what) = missing() else { return false };
    let line = format!("browser::{test}: missing {what}; scripts/browser-setup.sh installs them");
    if std::env::var("WEFT_BROWSER_REQUIRED").is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{line} (WEFT_BROWSER_REQUIRED is set: this machine must run it)");
    }
    eprintln!("SKIPPED: {line}");
    if let Some(path) = std::env::var_os("WEFT_SKIP_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("WEFT_SKIP_REPORT {path:?}: {e}"));
        writeln!(f, "{line}").expect("write the skip report");
    }
    true
}

/// One message a browser client received, as run.mjs reports it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Received {
    client: String,
    topic: String,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Received {
    /// Large payloads shortened (a failure message stays readable).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.client,
            self.topic,
            shorten(&self.payload)
        )
    }
}

/// A payload for a failure message: its size, its head and a hash of all
/// of it (FNV-1a), so that two payloads that differ past the head differ
/// on the page too.
fn shorten(payload: &[u8]) -> String {
    let hash = payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let head = &payload[..payload.len().min(40)];
    format!(
        "{} bytes {:?} fnv {hash:016x}",
        payload.len(),
        String::from_utf8_lossy(head)
    )
}

fn received(client: &str, topic: &str, payload: &str) -> Received {
    Received {
        client: client.into(),
        topic: topic.into(),
        payload: payload.as_bytes().to_vec(),
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[derive(Default)]
struct RunnerState {
    /// Every event line, in order (for failure messages).
    events: Vec<Value>,
    /// How many of `events` were answers to operations already taken.
    answers_taken: usize,
    messages: Vec<(Received, Value)>,
    stdout_ended: bool,
    stderr: Vec<String>,
    stderr_ended: bool,
}

/// tests/browser/run.mjs with Chromium behind it.
struct Runner {
    child: Child,
    stdin: Option<ChildStdin>,
    state: Arc<Mutex<RunnerState>>,
}

impl Runner {
    /// Starts the runner and waits for its page to be up.
    async fn start() -> Runner {
        Runner::start_trusting(&[]).await
    }

    /// [`Runner::start`] with a browser that trusts these (PEM) server
    /// certificates for wss.
    async fn start_trusting(certs: &[&str]) -> Runner {
        let mut command = Command::new("node");
        command.arg(browser_dir().join("run.mjs"));
        for cert in certs {
            command.args(["--trust-cert", cert]);
        }
        let mut child = command
            .args(["--op-timeout-ms", &OP_TIMEOUT_MS.to_string()])
            .args(["--deadline-ms", &RUN_DEADLINE_MS.to_string()])
            .arg("--chromium")
            .arg(chromium())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/browser/run.mjs");
        let state = Arc::new(Mutex::new(RunnerState::default()));
        let stdout = child.stdout.take().unwrap();
        let sink = state.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event: Value = serde_json::from_str(&line).unwrap_or_else(
                    |e| json!({"event": "unparsed", "line": line, "error": e.to_string()}),
                );
                let mut s = sink.lock().unwrap();
                if event["event"] == "message" {
                    let message = Received {
                        client: event["client"].as_str().unwrap_or_default().into(),
                        topic: event["topic"].as_str().unwrap_or_default().into(),
                        payload: unhex(event["payload_hex"].as_str().unwrap_or_default()),
                    };
                    s.messages.push((message, event.clone()));
                }
                s.events.push(event);
            }
            sink.lock().unwrap().stdout_ended = true;
        });
        let stderr = child.stderr.take().unwrap();
        let sink = state.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().stderr.push(line);
            }
            sink.lock().unwrap().stderr_ended = true;
        });
        let mut runner = Runner {
            stdin: child.stdin.take(),
            child,
            state,
        };
        // The browser's start is bounded by 3 operations (run.mjs).
        let ready = runner
            .answer_within("the page to be ready", 3 * OP_TIMEOUT_MS)
            .await;
        assert_eq!(ready["event"], "ready", "{ready}");
        runner
    }

    /// Everything the runner said, for a failure message.
    fn transcript(&self) -> String {
        let s = self.state.lock().unwrap();
        // Lines shortened: a large payload is hundreds of KB of hex.
        let events: Vec<String> = s
            .events
            .iter()
            .map(|e| {
                let line = e.to_string();
                match line.char_indices().nth(400) {
                    Some((cut, _)) => format!("{}… ({} bytes)", &line[..cut], line.len()),
                    None => line,
                }
            })
            .collect();
        format!(
            "runner stdout:\n{}\nrunner stderr:\n{}",
            events.join("\n"),
            s.stderr.join("\n")
        )
    }

    /// The next event that is not a message (an operation's answer),
    /// bounded by the runner's own timeouts and [`WAIT`] beyond them.
    async fn answer(&mut self, what: &str) -> Value {
        self.answer_within(what, OP_TIMEOUT_MS).await
    }

    /// [`Runner::answer`] for what the runner bounds by `runner_ms`.
    async fn answer_within(&mut self, what: &str, runner_ms: u64) -> Value {
        let event = self.any_answer(what, runner_ms).await;
        if event["event"] == "failed" || event["event"] == "closed" && what != "close" {
            panic!("{what}: the runner said {event}\n{}", self.transcript());
        }
        event
    }

    /// The next answer, a failure too.
    async fn any_answer(&mut self, what: &str, runner_ms: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(runner_ms) + WAIT;
        loop {
            {
                let mut s = self.state.lock().unwrap();
                let taken = s.answers_taken;
                let next = s
                    .events
                    .iter()
                    .filter(|e| e["event"] != "message")
                    .nth(taken)
                    .cloned();
                if let Some(event) = next {
                    s.answers_taken += 1;
                    return event;
                }
                if s.stdout_ended {
                    drop(s);
                    panic!("{what}: the runner ended\n{}", self.transcript());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{what}: no answer from the runner\n{}", self.transcript());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Writes one operation line (its answer is read by the caller).
    fn send(&mut self, op: &Value) {
        let line = format!("{op}\n");
        self.stdin
            .as_mut()
            .expect("runner stdin open")
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("write {op} to the runner: {e}"));
    }

    /// Runs one operation in the page; returns its result.
    async fn op(&mut self, op: Value) -> Value {
        self.send(&op);
        let answer = self.answer(&op.to_string()).await;
        assert_eq!(answer["event"], "ok", "{op}: {answer}");
        assert_eq!(answer["op"], op["op"], "{op}: {answer}");
        answer["result"].clone()
    }

    async fn connect(&mut self, client: &str, kind: &str, url: &str, extra: Value) {
        let mut op = json!({"op": "connect", "client": client, "kind": kind, "url": url});
        if let (Some(op), Some(extra)) = (op.as_object_mut(), extra.as_object()) {
            op.extend(extra.clone());
        }
        self.op(op).await;
    }

    async fn subscribe(&mut self, client: &str, topic: &str, qos: u8) {
        self.op(json!({"op": "subscribe", "client": client, "topic": topic, "qos": qos}))
            .await;
    }

    async fn publish(&mut self, client: &str, topic: &str, payload: &str, qos: u8) {
        self.op(json!({"op": "publish", "client": client, "topic": topic, "payload": payload, "qos": qos}))
            .await;
    }

    /// Publishes exact bytes (sent as hex to the page).
    async fn publish_bytes(&mut self, client: &str, topic: &str, payload: &[u8], qos: u8) {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let result = self
            .op(json!({"op": "publish", "client": client, "topic": topic, "payload_hex": hex, "qos": qos}))
            .await;
        assert_eq!(result["bytes"], payload.len(), "{result}");
    }

    /// The messages the browser clients received so far (probes too).
    fn messages(&self) -> Vec<Received> {
        let s = self.state.lock().unwrap();
        s.messages.iter().map(|(m, _)| m.clone()).collect()
    }

    /// The full event of the first message `client` received on `topic`.
    fn message_event(&self, client: &str, topic: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.messages
            .iter()
            .find(|(m, _)| m.client == client && m.topic == topic)
            .map(|(_, e)| e.clone())
    }

    /// Waits (bounded by `WAIT`) until `ok` holds over the messages.
    async fn wait_messages(&self, what: &str, ok: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if ok(&self.messages()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("browser: {what}: not reached\n{}", self.transcript());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Ends the run: the page's clients disconnect, the browser closes,
    /// and the runner exits 0.
    async fn close(mut self) {
        for client in self.clients() {
            self.op(json!({"op": "disconnect", "client": client})).await;
        }
        let op = json!({"op": "close"});
        self.stdin
            .as_mut()
            .expect("runner stdin open")
            .write_all(format!("{op}\n").as_bytes())
            .expect("write close");
        let answer = self.answer("close").await;
        assert_eq!(answer["event"], "closed", "{answer}");
        let status = self.exit().await;
        assert!(status.success(), "runner: {status}\n{}", self.transcript());
    }

    /// Waits (bounded) for the runner to exit and its stderr to be read.
    async fn exit(&mut self) -> std::process::ExitStatus {
        self.stdin = None;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if self.state.lock().unwrap().stderr_ended {
                    return status;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the runner did not exit\n{}",
                self.transcript()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The clients the page connected (from the operations' answers).
    fn clients(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.events
            .iter()
            .filter(|e| e["event"] == "ok" && e["op"] == "connect")
            .filter_map(|e| e["client"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Runner {
    /// On a failed test: closing stdin makes the runner close the browser
    /// and exit; it is killed if it does not within a few seconds.
    fn drop(&mut self) {
        self.stdin = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes probes through `publish` (payload = a counter) until the
/// browser client `client` has received one on `received_as`: its
/// subscription is then in force where the publisher is. Bounded by `WAIT`.
async fn fence_browser<F, Fut>(runner: &Runner, client: &str, received_as: &str, mut publish: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    for sent in 0.. {
        publish(sent).await;
        let probe_end = tokio::time::Instant::now() + Duration::from_millis(50);
        while tokio::time::Instant::now() < probe_end {
            if runner
                .messages()
                .iter()
                .any(|m| m.client == client && m.topic == received_as)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe {received_as:?}: {sent} published, never reached {client}\n{}",
            runner.transcript()
        );
    }
}

/// The messages that are not probes, sorted.
fn real_messages(runner: &Runner) -> Vec<Received> {
    let mut all: Vec<Received> = runner
        .messages()
        .into_iter()
        .filter(|m| !m.topic.contains("probe"))
        .collect();
    all.sort();
    all
}

/// [`fence_browser`] with the probes published by another browser client.
async fn fence_in_browser(
    runner: &mut Runner,
    from: &str,
    topic: &str,
    to: &str,
    received_as: &str,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for sent in 0.. {
        runner.publish(from, topic, &sent.to_string(), 0).await;
        let probe_end = tokio::time::Instant::now() + Duration::from_millis(50);
        while tokio::time::Instant::now() < probe_end {
            if runner
                .messages()
                .iter()
                .any(|m| m.client == to && m.topic == received_as)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe {topic:?} from {from}: {sent} published, never reached {to} as {received_as:?}\n{}",
            runner.transcript()
        );
    }
}

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
