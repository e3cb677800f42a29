//! The browser side of tests/browser.rs: where Chromium and the npm
//! packages are (or why the test skips), and [`Runner`], which drives
//! tests/browser/run.mjs one JSON operation a line and collects what the
//! page reports; tests/console.rs drives tests/console/run.mjs with the
//! same [`Runner`] ([`Runner::spawn`]). (A module of the tests, not a test
//! of its own.)
#![allow(dead_code)] // each test file uses its part

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

/// The page's deadline for one operation (run.mjs `--op-timeout-ms`);
/// [`WAIT`] bounds what this side waits for on top.
pub(crate) const OP_TIMEOUT_MS: u64 = 15_000;
/// The runner's deadline for the whole run (`--deadline-ms`).
pub(crate) const RUN_DEADLINE_MS: u64 = 150_000;

pub(crate) fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

pub(crate) fn chromium() -> PathBuf {
    std::env::var_os("WEFT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser test needs and this machine lacks, if anything.
pub(crate) fn missing() -> Option<String> {
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
pub(crate) fn skipped(test: &str) -> bool {
    let Some(what) = missing() else { return false };
    let line = format!("browser::{test}: missing {what}; scripts/browser-setup.sh installs them");
    let required = env_flag("WEFT_BROWSER_REQUIRED")
        .then_some("WEFT_BROWSER_REQUIRED is set: this machine must run it");
    report_skip(&line, required);
    true
}

/// One message a browser client received, as run.mjs reports it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Received {
    pub(crate) client: String,
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
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
pub(crate) fn shorten(payload: &[u8]) -> String {
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

pub(crate) fn received(client: &str, topic: &str, payload: &str) -> Received {
    Received {
        client: client.into(),
        topic: topic.into(),
        payload: payload.as_bytes().to_vec(),
    }
}

pub(crate) fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[derive(Default)]
pub(crate) struct RunnerState {
    /// Every event line, in order (for failure messages).
    pub(crate) events: Vec<Value>,
    /// How many of `events` were answers to operations already taken.
    pub(crate) answers_taken: usize,
    pub(crate) messages: Vec<(Received, Value)>,
    pub(crate) stdout_ended: bool,
    pub(crate) stderr: Vec<String>,
    pub(crate) stderr_ended: bool,
}

/// tests/browser/run.mjs with Chromium behind it.
pub(crate) struct Runner {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) state: Arc<Mutex<RunnerState>>,
}

impl Runner {
    /// Starts the runner and waits for its page to be up.
    pub(crate) async fn start() -> Runner {
        Runner::start_trusting(&[]).await
    }

    /// [`Runner::start`] with a browser that trusts these (PEM) server
    /// certificates for wss.
    pub(crate) async fn start_trusting(certs: &[&str]) -> Runner {
        let args: Vec<String> = certs
            .iter()
            .flat_map(|cert| ["--trust-cert".to_string(), cert.to_string()])
            .collect();
        Runner::spawn(&browser_dir().join("run.mjs"), &args).await
    }

    /// Starts the node runner `script` with `args` (and the deadlines and
    /// browser every runner takes) and waits for its `ready` event.
    pub(crate) async fn spawn(script: &Path, args: &[String]) -> Runner {
        let mut command = Command::new("node");
        command.arg(script).args(args);
        let mut child = command
            .args(["--op-timeout-ms", &OP_TIMEOUT_MS.to_string()])
            .args(["--deadline-ms", &RUN_DEADLINE_MS.to_string()])
            .arg("--chromium")
            .arg(chromium())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {}: {e}", script.display()));
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
    pub(crate) fn transcript(&self) -> String {
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
    pub(crate) async fn answer(&mut self, what: &str) -> Value {
        self.answer_within(what, OP_TIMEOUT_MS).await
    }

    /// [`Runner::answer`] for what the runner bounds by `runner_ms`.
    pub(crate) async fn answer_within(&mut self, what: &str, runner_ms: u64) -> Value {
        let event = self.any_answer(what, runner_ms).await;
        if event["event"] == "failed" || event["event"] == "closed" && what != "close" {
            panic!("{what}: the runner said {event}\n{}", self.transcript());
        }
        event
    }

    /// The next answer, a failure too.
    pub(crate) async fn any_answer(&mut self, what: &str, runner_ms: u64) -> Value {
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
    pub(crate) fn send(&mut self, op: &Value) {
        let line = format!("{op}\n");
        self.stdin
            .as_mut()
            .expect("runner stdin open")
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("write {op} to the runner: {e}"));
    }

    /// Runs one operation in the page; returns its result.
    pub(crate) async fn op(&mut self, op: Value) -> Value {
        self.send(&op);
        let answer = self.answer(&op.to_string()).await;
        assert_eq!(answer["event"], "ok", "{op}: {answer}");
        assert_eq!(answer["op"], op["op"], "{op}: {answer}");
        answer["result"].clone()
    }

    pub(crate) async fn connect(&mut self, client: &str, kind: &str, url: &str, extra: Value) {
        let mut op = json!({"op": "connect", "client": client, "kind": kind, "url": url});
        if let (Some(op), Some(extra)) = (op.as_object_mut(), extra.as_object()) {
            op.extend(extra.clone());
        }
        self.op(op).await;
    }

    pub(crate) async fn subscribe(&mut self, client: &str, topic: &str, qos: u8) {
        self.op(json!({"op": "subscribe", "client": client, "topic": topic, "qos": qos}))
            .await;
    }

    pub(crate) async fn publish(&mut self, client: &str, topic: &str, payload: &str, qos: u8) {
        self.op(json!({"op": "publish", "client": client, "topic": topic, "payload": payload, "qos": qos}))
            .await;
    }

    /// Publishes exact bytes (sent as hex to the page).
    pub(crate) async fn publish_bytes(
        &mut self,
        client: &str,
        topic: &str,
        payload: &[u8],
        qos: u8,
    ) {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let result = self
            .op(json!({"op": "publish", "client": client, "topic": topic, "payload_hex": hex, "qos": qos}))
            .await;
        assert_eq!(result["bytes"], payload.len(), "{result}");
    }

    /// The messages the browser clients received so far (probes too).
    pub(crate) fn messages(&self) -> Vec<Received> {
        let s = self.state.lock().unwrap();
        s.messages.iter().map(|(m, _)| m.clone()).collect()
    }

    /// The full event of the first message `client` received on `topic`.
    pub(crate) fn message_event(&self, client: &str, topic: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.messages
            .iter()
            .find(|(m, _)| m.client == client && m.topic == topic)
            .map(|(_, e)| e.clone())
    }

    /// Waits (bounded by `WAIT`) until `ok` holds over the messages.
    pub(crate) async fn wait_messages(&self, what: &str, ok: impl Fn(&[Received]) -> bool) {
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
    pub(crate) async fn close(mut self) {
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
    pub(crate) async fn exit(&mut self) -> std::process::ExitStatus {
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
    pub(crate) fn clients(&self) -> Vec<String> {
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
pub(crate) async fn fence_browser<F, Fut>(
    runner: &Runner,
    client: &str,
    received_as: &str,
    mut publish: F,
) where
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
pub(crate) fn real_messages(runner: &Runner) -> Vec<Received> {
    let mut all: Vec<Received> = runner
        .messages()
        .into_iter()
        .filter(|m| !m.topic.contains("probe"))
        .collect();
    all.sort();
    all
}

/// [`fence_browser`] with the probes published by another browser client.
pub(crate) async fn fence_in_browser(
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
