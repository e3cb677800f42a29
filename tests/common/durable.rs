//! Harness for the durability tests (issue 13): a router with a persistence
//! directory that a test kills with SIGKILL and restarts on the same ports
//! with the same directory; temporary directories and a size-limited tmpfs
//! removed on drop; a seeded random source the failing run prints (replay
//! with `WEFT_SEED`); MQTT clients that record what a crash test needs to
//! judge (DUP and retain flags, the connection a copy arrived on, which
//! publishes were acknowledged).
//!
//! Nothing here asserts a time: every wait is bounded by `WAIT`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::mqtt::v5 as wv5;

use super::{Launch, Weft, WAIT};

/// A directory under the system's temp dir, removed (with its content) on
/// drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "weft-durable-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A tmpfs of a fixed size mounted on a fresh directory (a small disk that
/// can fill up), unmounted and removed on drop. Mounting needs root (the
/// test VM and CI run as root): a test that cannot mount fails and says
/// so; it never skips silently.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: TempDir,
}

impl Tmpfs {
    /// `size`: tmpfs's `size=` option, e.g. `4m`.
    pub fn mount(size: &str) -> Tmpfs {
        let dir = TempDir::new("tmpfs");
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir.path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount(8) for a size-limited tmpfs: {e}"));
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs on {} (this test needs root: the test VM and CI run \
             as root; {}): {}",
            dir.path.display(),
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| s
                    .lines()
                    .find(|l| l.starts_with("Uid:"))
                    .map(str::to_string))
                .unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            path: dir.path.clone(),
            _dir: dir,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            // Still busy (a process not yet reaped): detach it now, the
            // kernel frees it when the last user goes.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

/// The seed of a randomised test: `WEFT_SEED` when set (to replay a run),
/// else from the clock; printed either way, so a failing run names it.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("WEFT_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WEFT_SEED={s:?}: not a decimal u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("{test}: seed {seed} (replay with WEFT_SEED={seed})");
    seed
}

/// splitmix64: a small deterministic generator (no dependency), enough to
/// pick kill moments.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo);
        lo + self.next_u64() % (hi - lo)
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// A router with persistence on: started on fixed free ports (below the
/// ephemeral range), then restarted on the same ports, with the same
/// directory, after a SIGKILL. Its stderr is captured; the lines of every
/// run so far are printed by [`Durable::dump`].
pub struct Durable {
    pub weft: Weft,
    launch: Launch,
    past_logs: Vec<Vec<String>>,
    runs: usize,
    /// The mesh listener of the first run (pinned), if any.
    mesh_pinned: Option<SocketAddr>,
}

impl Durable {
    /// `args`: the persistence flags (e.g. `--persistence-dir DIR`); `toml`:
    /// extra configuration (e.g. a `[persistence]` section).
    pub fn start(shards: usize, toml: &str, args: &[String]) -> Durable {
        let mut launch = Launch::new(shards, toml);
        launch.args = args.to_vec();
        launch.log_level = Some("warn".into());
        Durable::start_launch(launch)
    }

    /// A one-shard mesh router on core 0 (as `mesh_router` starts one)
    /// with persistence in `dir`: router id `id`, `toml` (its `[mesh]`
    /// section), a mesh listener when `listen` (on a fixed free port, the same for
    /// every restart, so that the peers that dial it find it again), and a
    /// link dialed to each of `links`. Logs at info (the links' ups and
    /// downs, for [`Durable::dump`]).
    pub fn start_mesh(
        id: &str,
        toml: &str,
        dir: &Path,
        listen: bool,
        links: &[SocketAddr],
    ) -> Durable {
        let mut launch = Launch::new(1, toml);
        launch.cores = "0".into();
        launch.log_level = Some("info".into());
        launch.args = vec!["--router-id".into(), id.into()];
        if listen {
            launch.args.push("--mesh-listen".into());
            launch.args.push("127.0.0.1:0".into());
        }
        for l in links {
            launch.args.push("--link".into());
            launch.args.push(l.to_string());
        }
        launch.args.extend(persistence_args(dir));
        Durable::start_launch(launch)
    }

    /// Starts `launch` (its stderr captured) and pins the ports the run got
    /// (MQTT, NATS, admin, and the mesh listener set by `--mesh-listen`, if
    /// any) for every restart.
    pub fn start_launch(mut launch: Launch) -> Durable {
        launch.capture_stderr = true;
        if launch.prefix.is_empty() {
            super::ports::fix_listeners(&mut launch);
        }
        let weft = Weft::launch_with(launch.clone());
        // Pin the ports this run got, for every restart.
        launch.mqtt_listen = weft.addr.to_string();
        if let Some(mesh) = weft.mesh {
            for i in 0..launch.args.len() {
                if launch.args[i] == "--mesh-listen" && i + 1 < launch.args.len() {
                    launch.args[i + 1] = mesh.to_string();
                } else if launch.args[i].starts_with("--mesh-listen=") {
                    launch.args[i] = format!("--mesh-listen={mesh}");
                }
            }
        }
        let mut table: toml::Table = launch.toml.parse().expect("test TOML");
        for (section, addr) in [("nats", weft.nats), ("admin", weft.admin)] {
            let t = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()));
            t.as_table_mut()
                .unwrap()
                .insert("listen".into(), toml::Value::String(addr.to_string()));
        }
        launch.toml = table.to_string();
        let mesh_pinned = weft.mesh;
        Durable {
            weft,
            launch,
            past_logs: Vec::new(),
            runs: 1,
            mesh_pinned,
        }
    }

    /// `kill -9`, then reaps the process (its files and sockets closed by
    /// the kernel, nothing flushed by the router).
    pub fn kill9(&mut self) {
        if self.weft.is_running() {
            self.weft.signal(nix::sys::signal::Signal::SIGKILL);
        }
        let deadline = std::time::Instant::now() + WAIT;
        while self.weft.is_running() {
            assert!(
                std::time::Instant::now() < deadline,
                "weft survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.weft.wait_stderr_end();
    }

    /// Kills the running router (SIGKILL) if it still runs and starts it
    /// again straight away: same ports, same directory, same shard count.
    pub fn restart(&mut self) {
        self.restart_with_shards(self.launch.shards);
    }

    /// [`Durable::restart`] with another shard count.
    pub fn restart_with_shards(&mut self, shards: usize) {
        self.kill9();
        self.past_logs.push(self.weft.stderr_lines());
        self.launch.shards = shards;
        self.weft = Weft::launch_with(self.launch.clone());
        self.runs += 1;
        assert_eq!(self.weft.addr, self.addr_pinned(), "restarted on its port");
        if let Some(mesh) = self.mesh_pinned {
            assert_eq!(self.weft.mesh, Some(mesh), "restarted on its mesh port");
        }
    }

    /// The mesh listener every run shares (`None` without one).
    pub fn mesh(&self) -> Option<SocketAddr> {
        self.weft.mesh
    }

    fn addr_pinned(&self) -> SocketAddr {
        self.launch.mqtt_listen.parse().unwrap()
    }

    /// The MQTT listener every run shares.
    pub fn addr(&self) -> SocketAddr {
        self.weft.addr
    }

    /// Prints the stderr of every run so far (for a failing test).
    pub fn dump(&self) {
        let current = self.weft.stderr_lines();
        for (run, lines) in self.past_logs.iter().chain([&current]).enumerate() {
            eprintln!("----- weft run {run}: stderr -----");
            for line in lines {
                eprintln!("run {run}| {line}");
            }
        }
    }
}

/// `--persistence-dir DIR`.
pub fn persistence_args(dir: &Path) -> Vec<String> {
    vec![
        "--persistence-dir".into(),
        dir.to_str().expect("UTF-8 temp path").into(),
    ]
}

/// One PUBLISH a [`Recorder`] received.
#[derive(Clone, Debug)]
pub struct Got {
    pub topic: String,
    pub payload: Vec<u8>,
    pub dup: bool,
    pub retain: bool,
    pub qos: u8,
    /// Which of the recorder's connections it arrived on (0 = the first).
    pub connection: usize,
}

impl Got {
    /// The payload as a decimal number.
    pub fn number(&self) -> u64 {
        std::str::from_utf8(&self.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("payload {:?} on {}", self.payload, self.topic))
    }
}

#[derive(Default)]
struct RecorderState {
    got: Vec<Got>,
    subacks: Vec<Vec<rumqttc::SubscribeReasonCode>>,
    ended: bool,
}

/// An MQTT 3.1.1 client (rumqttc) that reconnects on demand under one
/// client id and records every PUBLISH with its flags and the connection
/// it came on; it acknowledges each QoS 1 delivery once recorded.
pub struct Recorder {
    pub id: String,
    state: Arc<Mutex<RecorderState>>,
    connections: usize,
    current: Option<(AsyncClient, tokio::task::JoinHandle<()>)>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some((_, task)) = self.current.take() {
            task.abort();
        }
    }
}

impl Recorder {
    pub fn new(id: &str) -> Recorder {
        Recorder {
            id: id.to_string(),
            state: Default::default(),
            connections: 0,
            current: None,
        }
    }

    /// Connects (the previous connection, if any, dropped first); returns
    /// the CONNACK's session-present flag.
    pub async fn connect(&mut self, addr: SocketAddr, clean: bool) -> bool {
        self.drop_connection();
        let mut opts = MqttOptions::new(&self.id, addr.ip().to_string(), addr.port());
        opts.set_clean_session(clean);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_inflight(100);
        // Manual acks: a PUBACK leaves only after the copy is recorded, so a
        // dropped connection never takes an acknowledged copy with it
        // (rumqttc's automatic acks go out for a whole read batch before the
        // application has seen each PUBLISH of it).
        opts.set_manual_acks(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let acker = client.clone();
        let connection = self.connections;
        self.connections += 1;
        let state = self.state.clone();
        state.lock().unwrap().ended = false;
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ack_tx = Some(ack_tx);
            // Acks the request channel had no room for yet (bounded by the
            // client's in-flight window).
            let mut unsent: VecDeque<rumqttc::Publish> = VecDeque::new();
            loop {
                while let Some(p) = unsent.front() {
                    if acker.try_ack(p).is_err() {
                        break;
                    }
                    unsent.pop_front();
                }
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        if let Some(tx) = ack_tx.take() {
                            let _ = tx.send(a);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        state.lock().unwrap().got.push(Got {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            dup: p.dup,
                            retain: p.retain,
                            qos: p.qos as u8,
                            connection,
                        });
                        unsent.push_back(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(a))) => {
                        state.lock().unwrap().subacks.push(a.return_codes)
                    }
                    Ok(_) => {}
                    Err(_) => {
                        state.lock().unwrap().ended = true;
                        return;
                    }
                }
            }
        });
        let ack = tokio::time::timeout(WAIT, ack_rx)
            .await
            .unwrap_or_else(|_| panic!("{}: no CONNACK in time", self.id))
            .unwrap_or_else(|_| panic!("{}: connection ended before CONNACK", self.id));
        assert_eq!(
            ack.code,
            rumqttc::ConnectReturnCode::Success,
            "{}: CONNACK",
            self.id
        );
        self.current = Some((client, task));
        ack.session_present
    }

    /// Subscribes and waits for the SUBACK (which must grant it).
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let before = self.state.lock().unwrap().subacks.len();
        let (client, _) = self.current.as_ref().expect("connected");
        client.subscribe(filter, qos).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(codes) = self.state.lock().unwrap().subacks.get(before) {
                assert!(
                    matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
                    "{}: SUBACK for {filter}: {codes:?}",
                    self.id
                );
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no SUBACK for {filter}",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Closes the TCP connection without DISCONNECT (as a crash of the
    /// client would): in-flight deliveries stay unacknowledged.
    pub fn drop_connection(&mut self) {
        if let Some((_, task)) = self.current.take() {
            task.abort();
        }
    }

    /// Sends DISCONNECT, then drops the connection.
    pub async fn disconnect(&mut self) {
        if let Some((client, task)) = self.current.take() {
            let _ = client.disconnect().await;
            // Let the event loop write it; it ends on its own after that.
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.current.is_some() && !self.state.lock().unwrap().ended
    }

    pub fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    /// What arrived on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.topic == topic)
            .collect()
    }

    /// Waits (bounded by `WAIT`) until `ok` holds over what arrived;
    /// whether it did.
    pub async fn reached(&self, ok: impl Fn(&[Got]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if ok(&self.got()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`Recorder::reached`], or a panic naming `what`.
    pub async fn wait_until(&self, what: &str, ok: impl Fn(&[Got]) -> bool) {
        if !self.reached(ok).await {
            let got = self.got();
            let tail: Vec<_> = got.iter().rev().take(5).collect();
            panic!(
                "{}: {what}: not reached in time ({} PUBLISH received; last: {tail:?})",
                self.id,
                got.len()
            );
        }
    }
}

/// What a [`Pump`] knows about its publishes: each number published, the
/// packet id it went out with, and the numbers whose acknowledgement
/// (PUBACK, or PUBREC for QoS 2: the router holds the message from then
/// on) reached it.
#[derive(Default)]
struct PumpState {
    /// Numbers handed to the client, not yet seen going out.
    queued: VecDeque<u64>,
    /// Packet id → number, sent and not yet acknowledged.
    in_flight: HashMap<u16, u64>,
    acked: BTreeSet<u64>,
}

/// Publishes numbered payloads (`start`, `start + 1`, …) on one topic with
/// a rumqttc client (3.1.1 or 5), as fast as its in-flight window lets it
/// (with `pause` between publishes), until stopped or until its connection
/// ends (a killed router); records which numbers were acknowledged. rumqttc
/// gives each publish its packet id in the order they were handed to it and
/// reports it (`Outgoing::Publish(pkid)`), which maps acks to numbers.
pub struct Pump {
    state: Arc<Mutex<PumpState>>,
    stop: Arc<AtomicBool>,
    publisher: tokio::task::JoinHandle<u64>,
    eventloop: tokio::task::JoinHandle<()>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.publisher.abort();
        self.eventloop.abort();
    }
}

/// The MQTT version and QoS a [`Pump`] publishes with.
#[derive(Clone, Copy, Debug)]
pub enum PumpKind {
    V4Qos1,
    V5Qos2,
}

impl Pump {
    pub async fn start(
        addr: SocketAddr,
        id: &str,
        topic: &str,
        kind: PumpKind,
        start: u64,
        pause: Duration,
    ) -> Pump {
        let state: Arc<Mutex<PumpState>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (connack_tx, connack_rx) = tokio::sync::oneshot::channel::<()>();
        let (publish, eventloop): (PublishFn, _) = match kind {
            PumpKind::V4Qos1 => {
                let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
                opts.set_keep_alive(Duration::from_secs(30));
                opts.set_inflight(20);
                let (client, eventloop) = AsyncClient::new(opts, 10);
                let state = state.clone();
                let task = tokio::spawn(v4_events(eventloop, state, connack_tx));
                let topic = topic.to_string();
                let publish: PublishFn = Box::new(move |n| {
                    let client = client.clone();
                    let topic = topic.clone();
                    Box::pin(async move {
                        client
                            .publish(topic, QoS::AtLeastOnce, false, n.to_string())
                            .await
                            .is_ok()
                    })
                });
                (publish, task)
            }
            PumpKind::V5Qos2 => {
                let qos = rumqttc::v5::mqttbytes::QoS::ExactlyOnce;
                let mut opts =
                    rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
                opts.set_keep_alive(Duration::from_secs(30));
                opts.set_outgoing_inflight_upper_limit(20);
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(opts, 10);
                let state = state.clone();
                let task = tokio::spawn(v5_events(eventloop, state, connack_tx));
                let topic = topic.to_string();
                let publish: PublishFn = Box::new(move |n| {
                    let client = client.clone();
                    let topic = topic.clone();
                    Box::pin(async move {
                        client
                            .publish(topic, qos, false, n.to_string())
                            .await
                            .is_ok()
                    })
                });
                (publish, task)
            }
        };
        tokio::time::timeout(WAIT, connack_rx)
            .await
            .unwrap_or_else(|_| panic!("{id}: no CONNACK in time"))
            .unwrap_or_else(|_| panic!("{id}: connection ended before CONNACK"));
        let publisher = {
            let state = state.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = start;
                while !stop.load(Ordering::SeqCst) {
                    state.lock().unwrap().queued.push_back(n);
                    if !publish(n).await {
                        break;
                    }
                    n += 1;
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                n
            })
        };
        Pump {
            state,
            stop,
            publisher,
            eventloop,
        }
    }

    /// Stops publishing; returns the next number it would have used (every
    /// number it used is below it).
    pub async fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        // A publish blocked on a full window returns once its connection
        // ends or an ack frees room; a killed router ends the connection.
        match tokio::time::timeout(WAIT, &mut self.publisher).await {
            Ok(n) => n.expect("publisher task"),
            Err(_) => panic!("publisher did not stop in time"),
        }
    }

    /// Waits (bounded) until nothing handed to the client is left without
    /// its acknowledgement (on a live router).
    pub async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let s = self.state.lock().unwrap();
                if s.queued.is_empty() && s.in_flight.is_empty() {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "acks missing: {} queued, {} in flight",
                    s.queued.len(),
                    s.in_flight.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The numbers whose acknowledgement arrived.
    pub fn acked(&self) -> BTreeSet<u64> {
        self.state.lock().unwrap().acked.clone()
    }

    /// Whether the client's connection has ended.
    pub fn ended(&self) -> bool {
        self.eventloop.is_finished()
    }
}

type PublishFn =
    Box<dyn Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send>;

impl PumpState {
    fn sent(&mut self, pkid: u16) {
        if let Some(n) = self.queued.pop_front() {
            self.in_flight.insert(pkid, n);
        }
    }

    /// An acknowledgement with a success reason (rumqttc ends the
    /// connection on an error reason instead).
    fn acked(&mut self, pkid: u16) {
        if let Some(n) = self.in_flight.remove(&pkid) {
            self.acked.insert(n);
        }
    }
}

async fn v4_events(
    mut eventloop: rumqttc::EventLoop,
    state: Arc<Mutex<PumpState>>,
    connack: tokio::sync::oneshot::Sender<()>,
) {
    let mut connack = Some(connack);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(tx) = connack.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => state.lock().unwrap().sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(a))) => state.lock().unwrap().acked(a.pkid),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

async fn v5_events(
    mut eventloop: rumqttc::v5::EventLoop,
    state: Arc<Mutex<PumpState>>,
    connack: tokio::sync::oneshot::Sender<()>,
) {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::Event as E5;
    use rumqttc::Outgoing as O5;
    let mut connack = Some(connack);
    loop {
        match eventloop.poll().await {
            Ok(E5::Incoming(P5::ConnAck(_))) => {
                if let Some(tx) = connack.take() {
                    let _ = tx.send(());
                }
            }
            Ok(E5::Outgoing(O5::Publish(pkid))) => state.lock().unwrap().sent(pkid),
            Ok(E5::Incoming(P5::PubAck(a))) => state.lock().unwrap().acked(a.pkid),
            Ok(E5::Incoming(P5::PubRec(r))) => state.lock().unwrap().acked(r.pkid),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// One application-level delivery of an [`ExactlyOnce`] receiver.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub dup: bool,
    pub packet_id: u16,
    pub connection: usize,
}

#[derive(Default)]
struct ReceiverState {
    delivered: Vec<Delivered>,
    /// QoS 2 packet ids received and delivered, PUBREL not yet received:
    /// the receiver's half of the session state (kept across reconnects).
    awaiting_pubrel: HashSet<u16>,
    /// PUBLISH packets whose QoS 2 packet id was already awaiting PUBREL
    /// (resent by the server: acknowledged again, not delivered again).
    resent_seen: usize,
    pubrels: usize,
    ended: bool,
    /// Every QoS 2 packet seen, in order (for a failing test's report).
    trace: Vec<Trace>,
}

/// One QoS 2 packet an [`ExactlyOnce`] receiver saw.
#[derive(Clone, Debug)]
pub enum Trace {
    /// PUBLISH: connection, packet id, DUP, payload, delivered (false: a
    /// resend of an id awaiting PUBREL).
    Publish(usize, u16, bool, String, bool),
    /// PUBREL: connection, packet id, whether the id was awaiting it.
    PubRel(usize, u16, bool),
}

/// An MQTT 5 subscriber written with raw packets (weft's v5 codec as its
/// encoder and decoder) because rumqttc hands every QoS 2 PUBLISH to the
/// application, a resent one too: this one implements the receiver's side
/// of QoS 2 as MQTT 5 §4.3.3 says (method B): store the packet id and
/// deliver on PUBLISH, answer PUBREC; a PUBLISH with a stored id is not
/// delivered again; PUBREL discards the id and is answered with PUBCOMP.
/// The stored ids survive its reconnects (a persistent session).
pub struct ExactlyOnce {
    pub id: String,
    state: Arc<Mutex<ReceiverState>>,
    connections: usize,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ExactlyOnce {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl ExactlyOnce {
    pub fn new(id: &str) -> ExactlyOnce {
        ExactlyOnce {
            id: id.to_string(),
            state: Default::default(),
            connections: 0,
            task: None,
        }
    }

    /// Connects with Session Expiry Interval `expiry_s` (clean start only
    /// for the first connection); subscribes `filter` at QoS 2 when given.
    /// Returns the CONNACK's session-present flag.
    pub async fn connect(&mut self, addr: SocketAddr, expiry_s: u32, filter: Option<&str>) -> bool {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut out = Vec::new();
        wv5::encode(
            &wv5::Packet::Connect(wv5::Connect {
                clean_start: self.connections == 0,
                keep_alive_s: 60,
                properties: wv5::Properties {
                    session_expiry_interval: Some(expiry_s),
                    ..Default::default()
                },
                client_id: &self.id,
                will: None,
                username: None,
                password: None,
            }),
            &mut out,
        )
        .unwrap();
        if let Some(filter) = filter {
            wv5::encode(
                &wv5::Packet::Subscribe(wv5::Subscribe {
                    packet_id: 1,
                    properties: Default::default(),
                    filters: vec![(
                        filter,
                        wv5::SubscriptionOptions {
                            qos: 2,
                            ..Default::default()
                        },
                    )],
                }),
                &mut out,
            )
            .unwrap();
        }
        stream.write_all(&out).await.unwrap();
        let mut buf = Vec::with_capacity(64 * 1024);
        // CONNACK, then (when subscribing) the SUBACK; deliveries that
        // arrive in between are handled below.
        let session_present = match read_v5(&mut stream, &mut buf).await {
            Some(bytes) => match wv5::decode(&bytes, &Default::default()) {
                Ok(Some((wv5::Packet::ConnAck(a), _))) => {
                    assert_eq!(a.reason_code, 0, "{}: CONNACK {a:?}", self.id);
                    a.session_present
                }
                other => panic!("{}: CONNACK expected, got {other:?}", self.id),
            },
            None => panic!("{}: connection ended before CONNACK", self.id),
        };
        let connection = self.connections;
        self.connections += 1;
        let state = self.state.clone();
        state.lock().unwrap().ended = false;
        let (suback_tx, suback_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let name = self.id.clone();
        self.task = Some(tokio::spawn(async move {
            let mut suback_tx = Some(suback_tx);
            while let Some(bytes) = read_v5(&mut stream, &mut buf).await {
                let packet = match wv5::decode(&bytes, &Default::default()) {
                    Ok(Some((p, _))) => p,
                    other => panic!("{name}: undecodable packet {other:?}"),
                };
                let mut reply = Vec::new();
                match packet {
                    wv5::Packet::SubAck(a) => {
                        if let Some(tx) = suback_tx.take() {
                            let _ = tx.send(a.reason_codes.to_vec());
                        }
                    }
                    wv5::Packet::Publish(p) => {
                        let mut s = state.lock().unwrap();
                        let fresh = p.qos < 2 || s.awaiting_pubrel.insert(p.packet_id);
                        if p.qos == 2 {
                            s.trace.push(Trace::Publish(
                                connection,
                                p.packet_id,
                                p.dup,
                                String::from_utf8_lossy(p.payload).into_owned(),
                                fresh,
                            ));
                        }
                        if fresh {
                            s.delivered.push(Delivered {
                                topic: p.topic.to_string(),
                                payload: p.payload.to_vec(),
                                qos: p.qos,
                                dup: p.dup,
                                packet_id: p.packet_id,
                                connection,
                            });
                        } else {
                            s.resent_seen += 1;
                        }
                        let ack = wv5::PubResp::ok(p.packet_id);
                        match p.qos {
                            1 => wv5::encode(&wv5::Packet::PubAck(ack), &mut reply).unwrap(),
                            2 => wv5::encode(&wv5::Packet::PubRec(ack), &mut reply).unwrap(),
                            _ => 0,
                        };
                    }
                    wv5::Packet::PubRel(r) => {
                        let mut s = state.lock().unwrap();
                        let awaited = s.awaiting_pubrel.remove(&r.packet_id);
                        s.trace
                            .push(Trace::PubRel(connection, r.packet_id, awaited));
                        s.pubrels += 1;
                        wv5::encode(
                            &wv5::Packet::PubComp(wv5::PubResp::ok(r.packet_id)),
                            &mut reply,
                        )
                        .unwrap();
                    }
                    wv5::Packet::Disconnect(_) => break,
                    _ => {}
                }
                if !reply.is_empty() && stream.write_all(&reply).await.is_err() {
                    break;
                }
            }
            state.lock().unwrap().ended = true;
        }));
        if filter.is_some() {
            let codes = tokio::time::timeout(WAIT, suback_rx)
                .await
                .unwrap_or_else(|_| panic!("{}: no SUBACK in time", self.id))
                .unwrap_or_else(|_| panic!("{}: connection ended before SUBACK", self.id));
            assert_eq!(codes, vec![2], "{}: SUBACK grants QoS 2", self.id);
        }
        session_present
    }

    pub fn delivered(&self) -> Vec<Delivered> {
        self.state.lock().unwrap().delivered.clone()
    }

    /// QoS 2 PUBLISH packets received again for an id awaiting PUBREL.
    pub fn resent_seen(&self) -> usize {
        self.state.lock().unwrap().resent_seen
    }

    /// The QoS 2 packets seen, in order.
    pub fn trace(&self) -> Vec<Trace> {
        self.state.lock().unwrap().trace.clone()
    }

    /// Packet ids still awaiting their PUBREL.
    pub fn awaiting_pubrel(&self) -> usize {
        self.state.lock().unwrap().awaiting_pubrel.len()
    }

    /// Waits (bounded by `WAIT`) until `ok` holds over the deliveries;
    /// whether it did (false at once if the connection ended).
    pub async fn reached(&self, ok: impl Fn(&[Delivered]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (d, ended) = {
                let s = self.state.lock().unwrap();
                (s.delivered.clone(), s.ended)
            };
            if ok(&d) {
                return true;
            }
            if ended || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads one whole MQTT packet (any level: same fixed header) from
/// `stream`, with `buf` holding what was read past the previous one;
/// `None` at the end of the connection.
async fn read_v5(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Ok(Some((_, header, remaining))) = wv5::fixed_header(buf) {
            let total = header + remaining;
            if buf.len() >= total {
                let packet = buf[..total].to_vec();
                buf.drain(..total);
                return Some(packet);
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw MQTT 5 publisher (weft's v5 codec), to read exactly the reason
/// code of each acknowledgement (rumqttc ends its connection on an error
/// reason instead of reporting it).
pub struct RawV5 {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u16,
}

impl RawV5 {
    /// Connects with a clean start; the CONNACK must accept.
    pub async fn connect(addr: SocketAddr, id: &str) -> RawV5 {
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut out = Vec::new();
        wv5::encode(
            &wv5::Packet::Connect(wv5::Connect {
                clean_start: true,
                keep_alive_s: 60,
                properties: Default::default(),
                client_id: id,
                will: None,
                username: None,
                password: None,
            }),
            &mut out,
        )
        .unwrap();
        stream.write_all(&out).await.unwrap();
        let mut raw = RawV5 {
            stream,
            buf: Vec::new(),
            next_id: 1,
        };
        let bytes = raw.read().await.expect("CONNACK");
        match wv5::decode(&bytes, &Default::default()) {
            Ok(Some((wv5::Packet::ConnAck(a), _))) => {
                assert_eq!(a.reason_code, 0, "{id}: CONNACK {a:?}")
            }
            other => panic!("{id}: CONNACK expected, got {other:?}"),
        }
        raw
    }

    async fn read(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, read_v5(&mut self.stream, &mut self.buf))
            .await
            .expect("a packet in time")
    }

    /// Publishes; for QoS 1 returns the PUBACK's reason code, or `None` when
    /// the server closed the connection instead. QoS 0: `Some(0)` once sent.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: &[u8],
    ) -> Option<u8> {
        let packet_id = if qos == 0 { 0 } else { self.next_id };
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let mut out = Vec::new();
        wv5::encode(
            &wv5::Packet::Publish(wv5::Publish {
                dup: false,
                qos,
                retain,
                topic,
                packet_id,
                properties: Default::default(),
                payload,
            }),
            &mut out,
        )
        .unwrap();
        if self.stream.write_all(&out).await.is_err() {
            return None;
        }
        if qos == 0 {
            return Some(0);
        }
        loop {
            let bytes = self.read().await?;
            match wv5::decode(&bytes, &Default::default()) {
                Ok(Some((wv5::Packet::PubAck(a), _))) if a.packet_id == packet_id => {
                    return Some(a.reason_code)
                }
                Ok(Some((wv5::Packet::Disconnect(_), _))) => return None,
                Ok(Some(_)) => {}
                other => panic!("undecodable packet {other:?}"),
            }
        }
    }
}
