//! Test harness: starts the real `weft` binary on 127.0.0.1 port 0, and
//! wraps rumqttc (a real third-party MQTT client) and raw TCP sockets.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use weft::mqtt::codec;

/// Upper bound for anything a test waits for; never a speed assertion.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Weft {
    child: Child,
    pub addr: SocketAddr,
    /// Each shard's own listener (with `shard_listeners = true`).
    pub shard_addrs: Vec<SocketAddr>,
    pub nats: SocketAddr,
    pub nats_shards: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// The mesh listener (`weft: mesh listening on ADDR`), when
    /// `--mesh-listen` / `mesh.listen` is set.
    pub mesh: Option<SocketAddr>,
    /// The WebSocket listeners (`weft: mqtt ws listening on ADDR`, `weft:
    /// nats ws listening on ADDR`), when `mqtt.ws.listen` / `nats.ws.listen`
    /// or `--mqtt-ws-listen` / `--nats-ws-listen` is set.
    pub mqtt_ws: Option<SocketAddr>,
    pub nats_ws: Option<SocketAddr>,
    /// The HTTP edge (`weft: http listening on ADDR`), when `http.listen`
    /// or `--http-listen` is set: with port 0, the port it got.
    pub http: Option<SocketAddr>,
    /// The AMQP 1.0 listener (`weft: amqp listening on ADDR`), when
    /// `amqp.listen` or `--amqp-listen` is set: with port 0, the port it got.
    pub amqp: Option<SocketAddr>,
    /// The router's stderr lines, when captured.
    pub stderr: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    /// Set by the stderr reader at the end of the stream (when captured).
    stderr_ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub config_path: std::path::PathBuf,
    _config: Option<tempfile_path::TempPath>,
}

pub mod durable;
mod inbox;
mod mesh;
pub mod pki;
pub mod ports;
mod proxy;
mod raw;
pub mod shm;

#[allow(unused_imports)]
pub use inbox::*;
#[allow(unused_imports)]
pub use mesh::*;
#[allow(unused_imports)]
pub use proxy::*;
#[allow(unused_imports)]
pub use raw::*;

mod tempfile_path {
    /// A file removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

pub fn weft_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

pub fn write_config(toml: &str) -> tempfile_path::TempPath {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "weft-test-{}-{}.toml",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, toml).unwrap();
    tempfile_path::TempPath(path)
}

/// How to start one router; [`Launch::new`] gives what [`Weft::start`]
/// uses (127.0.0.1 port 0 everywhere, cores 0,1, log level from the file).
#[derive(Clone, Debug)]
pub struct Launch {
    pub shards: usize,
    /// Extra TOML; the harness adds shard listeners and 127.0.0.1:0 NATS and
    /// admin listeners unless the TOML sets them.
    pub toml: String,
    /// Extra `weft run` flags, after the harness's own.
    pub args: Vec<String>,
    pub mqtt_listen: String,
    pub cores: String,
    /// A command the router runs under, e.g. `ip netns exec NS` (it must
    /// exec the router, so that the child is the router itself).
    pub prefix: Vec<String>,
    pub log_level: Option<String>,
    pub capture_stderr: bool,
}

impl Launch {
    pub fn new(shards: usize, extra_toml: &str) -> Launch {
        Launch {
            shards,
            toml: extra_toml.to_string(),
            args: Vec::new(),
            mqtt_listen: "127.0.0.1:0".into(),
            cores: "0,1".into(),
            prefix: Vec::new(),
            log_level: None,
            capture_stderr: false,
        }
    }
}

impl Weft {
    /// Starts weft with `shards` shards on cores 0,1, each shard with its own
    /// listener too, plus extra TOML.
    pub fn start(shards: usize, extra_toml: &str) -> Weft {
        Weft::launch(shards, extra_toml, Some("warn"), false)
    }

    /// `log_level`: the `--log-level` flag, if any (it overrides the file).
    pub fn launch(
        shards: usize,
        extra_toml: &str,
        log_level: Option<&str>,
        capture_stderr: bool,
    ) -> Weft {
        let mut launch = Launch::new(shards, extra_toml);
        launch.log_level = log_level.map(str::to_string);
        launch.capture_stderr = capture_stderr;
        Weft::launch_with(launch)
    }

    /// Like [`Weft::start`], with extra `weft run` flags (e.g. the mesh's
    /// `--router-id`, `--mesh-listen`, `--link`). The mesh listener line is
    /// read into [`Weft::mesh`] when `--mesh-listen` or `mesh.listen` is set.
    pub fn launch_args(shards: usize, extra_toml: &str, extra_args: &[&str]) -> Weft {
        let mut launch = Launch::new(shards, extra_toml);
        launch.args = extra_args.iter().map(|a| a.to_string()).collect();
        Weft::launch_with(launch)
    }

    pub fn launch_with(launch: Launch) -> Weft {
        let shards = launch.shards;
        let mut table: toml::Table = launch.toml.parse().expect("test TOML");
        for (section, key, value) in [
            ("mqtt", "shard_listeners", toml::Value::Boolean(true)),
            ("nats", "shard_listeners", toml::Value::Boolean(true)),
            ("nats", "listen", toml::Value::String("127.0.0.1:0".into())),
            ("admin", "listen", toml::Value::String("127.0.0.1:0".into())),
        ] {
            let t = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()));
            t.as_table_mut().unwrap().entry(key).or_insert(value);
        }
        let mesh_in_toml = table
            .get("mesh")
            .and_then(|m| m.get("listen"))
            .and_then(|l| l.as_str())
            .is_some_and(|l| !l.is_empty());
        let mesh_in_args = launch.args.iter().enumerate().any(|(i, a)| {
            (a == "--mesh-listen" && launch.args.get(i + 1).is_some_and(|v| !v.is_empty()))
                || a.strip_prefix("--mesh-listen=")
                    .is_some_and(|v| !v.is_empty())
        });
        let expects_mesh = mesh_in_toml || mesh_in_args;
        let expects_ws = |section: &str, flag: &str| {
            let in_toml = table
                .get(section)
                .and_then(|s| s.get("ws"))
                .and_then(|w| w.get("listen"))
                .and_then(|l| l.as_str())
                .is_some_and(|l| !l.is_empty());
            in_toml || launch.args.iter().any(|a| a == flag)
        };
        let expects_mqtt_ws = expects_ws("mqtt", "--mqtt-ws-listen");
        let expects_nats_ws = expects_ws("nats", "--nats-ws-listen");
        let expects_http = table
            .get("http")
            .and_then(|h| h.get("listen"))
            .and_then(|l| l.as_str())
            .is_some_and(|l| !l.is_empty())
            || launch.args.iter().any(|a| a.starts_with("--http-listen"));
        let expects_amqp = table
            .get("amqp")
            .and_then(|h| h.get("listen"))
            .and_then(|l| l.as_str())
            .is_some_and(|l| !l.is_empty())
            || launch.args.iter().any(|a| a.starts_with("--amqp-listen"));
        let toml = table.to_string();
        let config = write_config(&toml);
        let mut command = match launch.prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(weft_bin());
                c
            }
            None => Command::new(weft_bin()),
        };
        command
            .args(["run", "--config"])
            .arg(&config.0)
            .args([
                "--mqtt-listen",
                &launch.mqtt_listen,
                "--cores",
                &launch.cores,
            ])
            .args(["--shards", &shards.to_string()])
            .args(&launch.args)
            .stdout(Stdio::piped())
            .stderr(if launch.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if let Some(level) = &launch.log_level {
            command.args(["--log-level", level]);
        }
        let mut child = command.spawn().expect("spawn weft");
        let stderr_ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stderr = if launch.capture_stderr {
            let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = lines.clone();
            let pipe = child.stderr.take().unwrap();
            let ended = stderr_ended.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
                ended.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            Some(lines)
        } else {
            None
        };
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || match lines.next() {
            Some(line) => line.unwrap(),
            None => {
                // The process is ending: let the stderr reader collect the
                // reason (bounded: a child of the router may hold the pipe).
                if stderr.is_some() {
                    wait_flag(&stderr_ended, Duration::from_secs(2));
                }
                let why = stderr
                    .as_ref()
                    .map(|l| l.lock().unwrap().join("\n"))
                    .unwrap_or_default();
                panic!("weft ended its stdout before all listener lines: {why}")
            }
        };
        let addr = parse_addr(&next(), "mqtt listening on ");
        let shard_addrs: Vec<_> = (0..shards)
            .map(|_| parse_addr(&next(), "listening on "))
            .collect();
        let nats = parse_addr(&next(), "nats listening on ");
        let nats_shards: Vec<_> = (0..shards)
            .map(|_| parse_addr(&next(), "listening on "))
            .collect();
        let admin = parse_addr(&next(), "admin listening on ");
        if let Some(token) = table
            .get("admin")
            .and_then(|a| a.get("token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
        {
            admin_tokens()
                .lock()
                .unwrap()
                .insert(admin, token.to_string());
        }
        let mesh = expects_mesh.then(|| parse_addr(&next(), "mesh listening on "));
        // The WebSocket lines come after the optional MQTT TLS line.
        let mut ws_line = |marker: &str| loop {
            let line = next();
            if line.contains(marker) {
                return parse_addr(&line, marker);
            }
        };
        let mqtt_ws = expects_mqtt_ws.then(|| ws_line("mqtt ws listening on "));
        let nats_ws = expects_nats_ws.then(|| ws_line("nats ws listening on "));
        // The HTTP line comes after the WebSocket ones.
        let http = expects_http.then(|| ws_line("http listening on "));
        // The AMQP line comes after the HTTP one.
        let amqp = expects_amqp.then(|| ws_line("amqp listening on "));
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Weft {
            child,
            addr,
            shard_addrs,
            nats,
            nats_shards,
            admin,
            mesh,
            mqtt_ws,
            nats_ws,
            http,
            amqp,
            stderr,
            stderr_ended,
            config_path: config.0.clone(),
            _config: Some(config),
        }
    }

    /// The captured stderr lines (empty when not captured).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .as_ref()
            .map(|l| l.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// After the router exited: waits (bounded by `WAIT`) until the captured
    /// stderr has been read to its end, so that `stderr_lines` holds all.
    pub fn wait_stderr_end(&self) {
        assert!(self.stderr.is_some(), "stderr captured");
        assert!(
            wait_flag(&self.stderr_ended, WAIT),
            "the router's stderr never ended"
        );
    }

    /// Sends a signal to the router.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits (bounded) until a captured stderr line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let lines = self.stderr.as_ref().expect("stderr captured");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {needle:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        let lines = self.stderr.as_ref().expect("stderr captured");
        let found = lines.lock().unwrap().iter().any(|l| l.contains(needle));
        found
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the router, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status (waits up to `WAIT`).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "weft did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_addr(line: &str, marker: &str) -> SocketAddr {
    let at = line
        .find(marker)
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let rest = &line[at + marker.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// A rumqttc client whose event loop runs in a task and forwards every
/// incoming packet.
pub struct Client {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Packet>,
    pub id: String,
    task: tokio::task::JoinHandle<()>,
    /// Packets received while waiting for an ack, kept for `next`.
    pending: std::collections::VecDeque<Packet>,
}

impl Drop for Client {
    /// Dropping the client drops its TCP connection, without DISCONNECT.
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn connect(addr: SocketAddr, id: &str) -> Client {
    connect_session(addr, id, true).await
}

/// [`connect`] with the clean-session flag given (false: a persistent
/// session).
pub async fn connect_session(addr: SocketAddr, id: &str, clean: bool) -> Client {
    connect_options(options(addr, id, clean), id).await
}

/// [`connect`] with a user name and password.
pub async fn connect_user(addr: SocketAddr, id: &str, user: &str, password: &str) -> Client {
    let mut opts = options(addr, id, true);
    opts.set_credentials(user, password);
    connect_options(opts, id).await
}

fn options(addr: SocketAddr, id: &str, clean: bool) -> MqttOptions {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_clean_session(clean);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(100);
    opts
}

/// A [`Client`] from `opts` (TLS, credentials, ...): CONNACK received.
pub async fn connect_options(opts: MqttOptions, id: &str) -> Client {
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let ack = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("CONNACK in time")
        .expect("event loop alive");
    assert!(matches!(ack, Packet::ConnAck(_)), "first packet {ack:?}");
    Client {
        client,
        rx,
        id: id.to_string(),
        task,
        pending: Default::default(),
    }
}

impl Client {
    /// Next incoming packet other than the ones `skip` says to ignore.
    pub async fn next(&mut self) -> Packet {
        if let Some(p) = self.pending.pop_front() {
            return p;
        }
        self.receive().await
    }

    /// Next incoming packet, waiting as long as it takes; `None` once the
    /// connection has ended.
    pub async fn recv_any(&mut self) -> Option<Packet> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        self.rx.recv().await
    }

    async fn receive(&mut self) -> Packet {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: nothing received in time", self.id))
            .unwrap_or_else(|| panic!("{}: connection ended", self.id))
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        loop {
            match self.receive().await {
                Packet::SubAck(ack) => return ack.return_codes,
                other => self.pending.push_back(other),
            }
        }
    }

    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).await.unwrap();
        loop {
            match self.receive().await {
                Packet::UnsubAck(_) => return,
                other => self.pending.push_back(other),
            }
        }
    }

    pub async fn publish(&self, topic: &str, qos: QoS, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos, false, payload.into())
            .await
            .unwrap();
    }

    pub async fn publish_retained(&self, topic: &str, qos: QoS, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos, true, payload.into())
            .await
            .unwrap();
    }

    /// Next PUBLISH, skipping acks.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        loop {
            match self.next().await {
                Packet::Publish(p) => return p,
                Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)
                | Packet::PingResp
                | Packet::SubAck(_)
                | Packet::UnsubAck(_) => {}
                other => panic!("{}: unexpected {other:?}", self.id),
            }
        }
    }

    /// Waits for the PUBACKs of `n` QoS 1 publishes.
    pub async fn pubacks(&mut self, n: usize) -> Vec<u16> {
        let mut ids = Vec::new();
        while ids.len() < n {
            if let Packet::PubAck(a) = self.next().await {
                ids.push(a.pkid);
            }
        }
        ids
    }

    /// PUBLISH topics received until one on `sentinel` arrives (exclusive).
    pub async fn topics_until(&mut self, sentinel: &str) -> Vec<String> {
        let mut topics = Vec::new();
        loop {
            let p = self.next_publish().await;
            if p.topic == sentinel {
                return topics;
            }
            topics.push(p.topic);
        }
    }
}

/// async-nats connected to `addr`.
pub async fn nats(addr: SocketAddr) -> async_nats::Client {
    async_nats::connect(addr.to_string())
        .await
        .expect("connect")
}

/// A round trip through the router on this NATS connection: once it
/// returns, every SUB sent before it is in force on every shard
/// (async-nats's `flush` only empties the client's socket buffer).
pub async fn nats_sync(client: &async_nats::Client) {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(WAIT, probe.next())
        .await
        .expect("round trip")
        .unwrap();
}

/// Waits (blocking, polling every 5 ms) until `flag` is set, for at most
/// `deadline`; whether it was.
fn wait_flag(flag: &std::sync::atomic::AtomicBool, deadline: Duration) -> bool {
    let end = std::time::Instant::now() + deadline;
    while !flag.load(std::sync::atomic::Ordering::SeqCst) {
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The `admin.token` of each router this test started (by admin address),
/// which [`admin_get`] sends.
fn admin_tokens() -> &'static std::sync::Mutex<std::collections::HashMap<SocketAddr, String>> {
    static TOKENS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<SocketAddr, String>>,
    > = std::sync::OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// GET over HTTP/1.0 with a blocking-free tokio socket: (status, body).
/// Sends the router's `admin.token` when its TOML set one.
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let token = admin_tokens().lock().unwrap().get(&addr).cloned();
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("admin {addr} did not accept in time"))
        .unwrap_or_else(|e| panic!("admin {addr}: {e}"));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: weft\r\n{authorization}\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("admin {addr}{path}: no answer in time"))
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// `online` of each session `GET /connections` lists for `client_id` (a
/// parked session is listed offline; first page of 100 entries).
pub async fn sessions_of(admin: SocketAddr, client_id: &str) -> Vec<bool> {
    let (status, body) = admin_get(admin, "/connections").await;
    assert_eq!(status, 200, "GET /connections: {body}");
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET /connections is not JSON ({e}): {body}"));
    v["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /connections: no list: {body}"))
        .iter()
        .filter(|c| c["client_id"] == client_id)
        .map(|c| c["online"].as_bool().expect("online is a bool"))
        .collect()
}

/// Waits (bounded by `WAIT`) until the router holds `client_id`'s session
/// parked: listed once, offline (its connection closed and handled).
pub async fn wait_parked(admin: SocketAddr, client_id: &str) {
    wait_until(&format!("{client_id}: session parked"), WAIT, || async {
        match sessions_of(admin, client_id).await[..] {
            [false] => Ok(()),
            ref other => Err(format!("online flags listed: {other:?}")),
        }
    })
    .await
}

/// Polls `check` until it returns `Ok` (every 20 ms, for at most
/// `deadline`); panics with `what` and the last `Err` otherwise. For a test
/// that must wait for a state it can observe (instead of sleeping).
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= end {
            panic!("{what}: not reached within {deadline:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A rumqttc MQTT 5 client whose event loop runs in a task and forwards
/// every incoming packet; with `filter`, subscribed (SUBACK received).
pub async fn v5_client(
    addr: SocketAddr,
    id: &str,
    filter: Option<(&str, rumqttc::v5::mqttbytes::QoS)>,
) -> (
    rumqttc::v5::AsyncClient,
    mpsc::UnboundedReceiver<rumqttc::v5::mqttbytes::v5::Packet>,
) {
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet as P5};
    use rumqttc::v5::{AsyncClient, Event as E5, MqttOptions};
    let opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let E5::Incoming(p) = event {
                let _ = tx.send(p);
            }
        }
    });
    if let Some((filter, qos)) = filter {
        client
            .subscribe_many(vec![Filter::new(filter, qos)])
            .await
            .unwrap();
        loop {
            let p = tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("SUBACK in time")
                .expect("event loop alive");
            if let P5::SubAck(_) = p {
                break;
            }
        }
    }
    (client, rx)
}

/// A test that cannot run on this machine: with `required` (why this
/// machine must run it) it fails; otherwise it says so on stderr and
/// appends `line` to the file `WEFT_SKIP_REPORT` names (scripts/test.sh
/// prints those after cargo's summary), so a skip never reads as a pass.
pub fn report_skip(line: &str, required: Option<&str>) {
    if let Some(why) = required {
        panic!("{line} ({why})");
    }
    eprintln!("SKIPPED: {line}");
    if let Some(path) = std::env::var_os("WEFT_SKIP_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("WEFT_SKIP_REPORT {path:?}: {e}"));
        writeln!(f, "{line}").expect("write the skip report");
    }
}

/// Whether the environment variable `name` is set to something other than
/// empty or "0" (WEFT_NETNS_REQUIRED, WEFT_BROWSER_REQUIRED).
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}
