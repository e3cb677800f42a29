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

    /// Starts `launch` (its stderr captured) on fixed ports (MQTT, NATS,
    /// admin, and the mesh listener set by `--mesh-listen`, if any:
    /// `ports::fix_listeners`), the ones every restart binds again.
    pub fn start_launch(mut launch: Launch) -> Durable {
        launch.capture_stderr = true;
        // The ports every restart binds again: fixed before the first run.
        super::ports::fix_listeners(&mut launch);
        let weft = Weft::launch_with(launch.clone());
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

mod exactly_once;
mod pump;
mod recorder;

#[allow(unused_imports)]
pub use exactly_once::*;
#[allow(unused_imports)]
pub use pump::*;
#[allow(unused_imports)]
pub use recorder::*;
