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
    /// The router's stderr lines, when captured.
    pub stderr: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    pub config_path: std::path::PathBuf,
    _config: Option<tempfile_path::TempPath>,
}

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
        let mut table: toml::Table = extra_toml.parse().expect("test TOML");
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
        let toml = table.to_string();
        let config = write_config(&toml);
        let mut command = Command::new(weft_bin());
        command
            .args(["run", "--config"])
            .arg(&config.0)
            .args(["--mqtt-listen", "127.0.0.1:0", "--cores", "0,1"])
            .args(["--shards", &shards.to_string()])
            .stdout(Stdio::piped())
            .stderr(if capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if let Some(level) = log_level {
            command.args(["--log-level", level]);
        }
        let mut child = command.spawn().expect("spawn weft");
        let stderr = if capture_stderr {
            let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = lines.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            Some(lines)
        } else {
            None
        };
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || lines.next().expect("listener line").unwrap();
        let addr = parse_addr(&next(), "mqtt listening on ");
        let shard_addrs: Vec<_> = (0..shards)
            .map(|_| parse_addr(&next(), "listening on "))
            .collect();
        let nats = parse_addr(&next(), "nats listening on ");
        let nats_shards: Vec<_> = (0..shards)
            .map(|_| parse_addr(&next(), "listening on "))
            .collect();
        let admin = parse_addr(&next(), "admin listening on ");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Weft {
            child,
            addr,
            shard_addrs,
            nats,
            nats_shards,
            admin,
            stderr,
            config_path: config.0.clone(),
            _config: Some(config),
        }
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
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(100);
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

/// A raw MQTT connection for what no well-behaved client does.
pub struct Raw {
    pub stream: TcpStream,
}

pub fn connect_packet(id: &str, keep_alive_s: u16, level: u8, clean: bool) -> Vec<u8> {
    connect_full(id, keep_alive_s, level, clean, None)
}

/// An MQTT 3.1.1 CONNECT with a will.
pub fn connect_packet_with_will(id: &str, keep_alive_s: u16, will: codec::Will<'_>) -> Vec<u8> {
    connect_full(id, keep_alive_s, 4, true, Some(will))
}

fn connect_full(
    id: &str,
    keep_alive_s: u16,
    level: u8,
    clean: bool,
    will: Option<codec::Will<'_>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(
        &codec::Packet::Connect(codec::Connect {
            level,
            clean_session: clean,
            keep_alive_s,
            client_id: id,
            will,
            username: None,
            password: None,
        }),
        &mut out,
    );
    out
}

impl Raw {
    pub async fn open(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Opens and completes CONNECT/CONNACK.
    pub async fn connected(addr: SocketAddr, id: &str, keep_alive_s: u16) -> Raw {
        let mut raw = Raw::open(addr).await;
        raw.send(&connect_packet(id, keep_alive_s, 4, true)).await;
        assert_eq!(raw.read_exact(4).await, vec![0x20, 2, 0, 0]);
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send_packet(&mut self, p: &codec::Packet<'_>) {
        let mut out = Vec::new();
        codec::encode(p, &mut out);
        self.send(&out).await;
    }

    /// Reads one whole MQTT packet (3.1.1 or 5: same fixed header).
    pub async fn read_packet(&mut self) -> Vec<u8> {
        let mut head = self.read_exact(2).await;
        let mut len = usize::from(head[1] & 0x7f);
        let mut shift = 7;
        let mut byte = head[1];
        while byte & 0x80 != 0 {
            byte = self.read_exact(1).await[0];
            head.push(byte);
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
        }
        let body = self.read_exact(len).await;
        head.extend_from_slice(&body);
        head
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut buf))
            .await
            .expect("bytes in time")
            .expect("read");
        buf
    }

    /// True once the server has closed the connection (EOF or reset),
    /// discarding whatever it sent before; panics if it stays open for
    /// longer than `WAIT`.
    pub async fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => panic!("server kept the connection open"),
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}
