//! The `weft` command line: `weft run` (the default: `weft --mqtt-listen …`
//! is `weft run --mqtt-listen …`) starts the router, `weft check-config
//! FILE` validates a configuration without starting, `weft wait` blocks
//! until routers serve, `weft passwd` prints a password's hash, `weft pub` / `weft
//! sub` publish and subscribe (src/cli/). Bad flags or configuration print one line naming
//! the flag or key and exit with status 2.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use weft::config::{Config, Overrides};
use weft::shard::numa;

#[global_allocator]
static GLOBAL: Allocator = Allocator;

/// The router's allocator: mimalloc, or the C library's malloc when the
/// process starts with `WEFT_ALLOCATOR=system`, so that heap profilers
/// which interpose malloc (heaptrack, valgrind's massif and dhat) see
/// every allocation: `WEFT_ALLOCATOR=system heaptrack weft run …`
/// (perf/results/2026-12-07-memory-conn.md). Chosen once, at the first
/// allocation (before any block exists, so no block changes allocator);
/// afterwards one relaxed load per call.
struct Allocator;

/// 0: not chosen yet; 1: mimalloc; 2: the system's.
static CHOSEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl Allocator {
    #[inline]
    fn system() -> bool {
        match CHOSEN.load(std::sync::atomic::Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => Self::choose(),
        }
    }

    #[cold]
    fn choose() -> bool {
        // SAFETY: getenv reads the environment the C runtime set up before
        // any Rust code ran; it does not allocate. Threads racing here all
        // read the same value.
        let system = unsafe {
            let v = libc::getenv(c"WEFT_ALLOCATOR".as_ptr());
            !v.is_null() && std::ffi::CStr::from_ptr(v) == c"system"
        };
        CHOSEN.store(
            if system { 2 } else { 1 },
            std::sync::atomic::Ordering::Relaxed,
        );
        system
    }
}

// SAFETY: every call goes, unchanged, to one allocator, the same for the
// whole process (chosen before the first block).
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::system() {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::system() {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::system() {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::system() {
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: a thread-per-core event mesh router (MQTT 3.1, 3.1.1 and 5.0, NATS; routers link into a mesh)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `weft [run flags]`: the flags of `weft run`, without the word.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router (the default when no command is given).
    Run(RunArgs),
    /// Load generator for MQTT and NATS brokers (weft or any other).
    Bench(weft::bench::BenchArgs),
    /// Validate a configuration file and exit (0 = valid, 2 = invalid).
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
    /// Wait until routers serve (exit 0), or give up (exit 1, naming what was not ready).
    Wait(weft::wait::WaitArgs),
    /// Publish to an MQTT or NATS broker (weft or any other), as mosquitto_pub / nats pub.
    ///
    /// Exit status: 0 done, 1 the run failed (one line on stderr), 2 bad flags.
    Pub(weft::cli::PubArgs),
    /// Subscribe and print what arrives, as mosquitto_sub / nats sub.
    ///
    /// Exit status: 0 done, 1 the run failed (one line on stderr), 2 bad flags.
    Sub(weft::cli::SubArgs),
    /// Where an event on TOPIC would go in the mesh, and which rule stops
    /// it where (asks a router's admin endpoint, GET /explain; no event is sent).
    ///
    /// Exit status: 0 answered, 1 the request failed (one line on stderr), 2 bad flags.
    Explain(weft::cli::explain::ExplainArgs),
    /// Print the argon2id hash of a password (asked on the terminal, or one
    /// line of stdin when it is not a terminal) for security.users' password.
    Passwd,
}

#[derive(Args, Default)]
struct RunArgs {
    /// TOML configuration file; flags below override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the MQTT listener (config: mqtt.listen). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    mqtt_listen: Option<String>,
    /// Address of the MQTT TLS listener (config: mqtt.tls.listen; needs
    /// mqtt.tls.cert and mqtt.tls.key).
    #[arg(long, value_name = "ADDR")]
    mqtt_tls_listen: Option<String>,
    /// Address of the NATS listener (config: nats.listen).
    #[arg(long, value_name = "ADDR")]
    nats_listen: Option<String>,
    /// Address of the HTTP edge's listener (config: http.listen; off by
    /// default): publish with POST, subscribe with Server-Sent Events.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// Address of the MQTT over WebSocket listener, path /mqtt (config:
    /// mqtt.ws.listen; off by default).
    #[arg(long, value_name = "ADDR")]
    mqtt_ws_listen: Option<String>,
    /// Address of the NATS over WebSocket listener, path / (config:
    /// nats.ws.listen; off by default).
    #[arg(long, value_name = "ADDR")]
    nats_ws_listen: Option<String>,
    /// Address of the AMQP 1.0 listener (config: amqp.listen; off by
    /// default; conventionally 5672).
    #[arg(long, value_name = "ADDR")]
    amqp_listen: Option<String>,
    /// Path of the Unix socket shared-memory clients (weft-shm) connect to
    /// (config: shm.listen; off by default).
    #[arg(long, value_name = "PATH")]
    shm_listen: Option<String>,
    /// Address of the admin HTTP endpoint (config: admin.listen).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Number of shards (config: runtime.shards); 0 = one per core.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Cores to pin shards to, e.g. 0,1 or 0-3 (config: runtime.cores).
    /// Shards beyond the list share cores round-robin.
    #[arg(long, value_name = "LIST")]
    cores: Option<String>,
    /// Run the shards on this NUMA node's cores (within --cores) and
    /// prefer its memory (config: runtime.numa_node).
    #[arg(long, value_name = "N")]
    numa_node: Option<usize>,
    /// error, warn, info, debug or trace (config: log.level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// text or json: the log lines on stderr (config: log.format).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Written (with this process's id) once every listener is bound and
    /// every shard serves; removed at exit.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// This router's id in the mesh (config: mesh.router_id); default: the host name.
    #[arg(long, value_name = "NAME")]
    router_id: Option<String>,
    /// The mesh's name; links to routers of another mesh are refused (config: mesh.name).
    #[arg(long, value_name = "NAME")]
    mesh_name: Option<String>,
    /// Where peer routers connect (config: mesh.listen). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    mesh_listen: Option<String>,
    /// Dial this peer router and keep the link up (repeatable; added to mesh.links).
    #[arg(long = "link", value_name = "ADDR")]
    links: Vec<String>,
    /// Core of the bridge executor that runs the links (config: mesh.bridge_cores).
    #[arg(long, value_name = "LIST")]
    bridge_cores: Option<String>,
    /// Directory of the durable log (config: persistence.dir); unset or
    /// empty = persistence off.
    #[arg(long, value_name = "DIR")]
    persistence_dir: Option<String>,
}

fn online_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("weft: error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            let checked = Config::load(&file)
                .and_then(|c| c.resolve(&online_cores()))
                .map_err(|e| e.to_string())
                .and_then(|mut r| numa::apply(&mut r).map_err(|e| e.to_string()));
            match checked {
                Ok(_) => {
                    println!("weft: {} is valid", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Some(Command::Run(args)) => run(args),
        Some(Command::Bench(args)) => weft::bench::run(args),
        Some(Command::Wait(args)) => weft::wait::run(args),
        Some(Command::Pub(args)) => weft::cli::run_pub(args),
        Some(Command::Sub(args)) => weft::cli::run_sub(args),
        Some(Command::Explain(args)) => weft::cli::explain::run(args),
        Some(Command::Passwd) => match weft::security::passwd::run() {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        None => run(cli.run),
    }
}

fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!("weft={level}"))
}

type LogReload =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// SIGHUP: reads the file again, applies what can change safely (log
/// level, limits) and logs every key that changed, or why nothing did.
fn reload(
    path: &Option<PathBuf>,
    overrides: &Overrides,
    current: &mut Config,
    router: &weft::Router,
    log: &LogReload,
) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no --config file to reload");
        return;
    };
    let mut next = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: configuration not reloaded");
            return;
        }
    };
    next.apply(overrides);
    let next = match next.resolve(&online_cores()) {
        Ok(r) => {
            // Certificate files may change under unchanged paths: the
            // material is loaded again on every SIGHUP.
            if r.tls.mqtt.is_some() || r.tls.nats.is_some() {
                router.reload_tls(r.tls);
                tracing::info!("SIGHUP: TLS certificates and keys reloaded");
            }
            r.config
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: configuration not reloaded");
            return;
        }
    };
    let changed = weft::config::changed_keys(current, &next);
    if changed.is_empty() {
        tracing::info!("SIGHUP: configuration unchanged");
        return;
    }
    // The log format is fixed when the subscriber is built.
    let (applied, restart): (Vec<_>, Vec<_>) = changed.into_iter().partition(|key| {
        key != "log.format"
            && key != "mqtt.tls.listen"
            && weft::config::RELOADABLE_SECTIONS
                .iter()
                .any(|s| key.starts_with(&format!("{s}.")))
    });
    if !restart.is_empty() {
        tracing::warn!(keys = ?restart, "SIGHUP: these keys need a restart and were not applied");
    }
    if applied.is_empty() {
        return;
    }
    // Keep the non-reloadable sections as they run.
    let mut effective = current.clone();
    effective.limits = next.limits.clone();
    effective.security = next.security.clone();
    effective.log.level = next.log.level.clone();
    effective.mqtt.tls = weft::config::MqttTlsConfig {
        listen: effective.mqtt.tls.listen.clone(),
        ..next.mqtt.tls.clone()
    };
    effective.nats.tls = next.nats.tls.clone();
    if let Err(e) = log.modify(|f| *f = log_filter(&effective.log.level)) {
        tracing::error!(error = %e, "SIGHUP: log level not changed");
    }
    router.reload(effective.clone());
    *current = effective;
    tracing::info!(keys = ?applied, "SIGHUP: configuration reloaded");
}

fn run(args: RunArgs) -> ExitCode {
    let args_config = args.config.clone();
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        None => Config::default(),
    };
    let overrides = Overrides {
        mqtt_listen: args.mqtt_listen,
        mqtt_tls_listen: args.mqtt_tls_listen,
        nats_listen: args.nats_listen,
        http_listen: args.http_listen,
        admin_listen: args.admin_listen,
        shards: args.shards,
        cores: args.cores,
        numa_node: args.numa_node,
        log_level: args.log_level,
        log_format: args.log_format,
        router_id: args.router_id,
        mesh_name: args.mesh_name,
        mesh_listen: args.mesh_listen,
        links: args.links,
        bridge_cores: args.bridge_cores,
        persistence_dir: args.persistence_dir,
        mqtt_ws_listen: args.mqtt_ws_listen,
        nats_ws_listen: args.nats_ws_listen,
        amqp_listen: args.amqp_listen,
        shm_listen: args.shm_listen,
    };
    config.apply(&overrides);
    let mut resolved = match config.resolve(&online_cores()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let placement = match numa::apply(&mut resolved) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    // A ready file left by an earlier run (killed) must not announce this one.
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    use tracing_subscriber::prelude::*;
    let (filter, log_reload) =
        tracing_subscriber::reload::Layer::new(log_filter(&resolved.config.log.level));
    // One stream, stderr, in one format: text (coloured on a terminal) or
    // one JSON object a line.
    let json = resolved.config.log.format == "json";
    tracing_subscriber::registry()
        .with(filter)
        .with((!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        }))
        .with(json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr)
        }))
        .init();
    if let Some(p) = &placement {
        let cores: Vec<String> = p.shard_cores.iter().map(|c| c.to_string()).collect();
        tracing::info!(
            node = p.node,
            "numa: {} shards on node {} (cores {}), memory preferred from node {}",
            p.shard_cores.len(),
            p.node,
            cores.join(","),
            p.node
        );
    }
    let mut current = resolved.config.clone();

    // Signals are taken before the shards start, so that none is lost.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot install signal handlers: {e}")),
    };
    let shard_cores = resolved.shard_cores.clone();
    let router = match weft::Router::start(resolved) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let cores: Vec<String> = shard_cores.iter().map(|c| c.to_string()).collect();
    // The listener lines on stdout are the machine-readable start-up
    // contract (scripts and tests read the bound ports from them); each is
    // logged too, so that the log stream alone is complete and in order,
    // except in text where stdout is stderr's file (a terminal, `2>&1`):
    // there the line would show twice.
    let log_too = json || !same_file(&std::io::stdout(), &std::io::stderr());
    let announce = |line: String| {
        println!("weft: {line}");
        if log_too {
            tracing::info!("{line}");
        }
    };
    announce(format!(
        "mqtt listening on {} (shards: {}, cores: {})",
        router.mqtt_addr(),
        router.shard_count(),
        cores.join(",")
    ));
    for (i, addr) in router.shard_addrs().iter().enumerate() {
        announce(format!("mqtt shard {i} listening on {addr}"));
    }
    if let Some(addr) = router.nats_addr() {
        announce(format!("nats listening on {addr}"));
    }
    for (i, addr) in router.nats_shard_addrs().iter().enumerate() {
        announce(format!("nats shard {i} listening on {addr}"));
    }
    if let Some(addr) = router.admin_addr() {
        announce(format!("admin listening on {addr}"));
    }
    if let Some(addr) = router.mesh_addr() {
        announce(format!(
            "mesh listening on {addr} (router id: {})",
            current.mesh.router_id
        ));
    }
    // Last, so that the lines before keep their order for their readers.
    if let Some(addr) = router.mqtt_tls_addr() {
        announce(format!("mqtt tls listening on {addr}"));
    }
    if let Some(addr) = router.mqtt_ws_addr() {
        announce(format!("mqtt ws listening on {addr}"));
    }
    if let Some(addr) = router.nats_ws_addr() {
        announce(format!("nats ws listening on {addr}"));
    }
    if let Some(addr) = router.http_addr() {
        announce(format!("http listening on {addr}"));
    }
    if let Some(addr) = router.amqp_addr() {
        announce(format!("amqp listening on {addr}"));
    }
    let _ = std::io::stdout().flush();
    let ready_file = match &args.ready_file {
        Some(path) => match write_ready_file(path, &router) {
            Ok(()) => Some(path.clone()),
            Err(e) => {
                router.shutdown();
                router.join();
                return fail(format!("--ready-file: {e}"));
            }
        },
        None => None,
    };

    for signal in signals.forever() {
        if signal == SIGHUP {
            reload(&args_config, &overrides, &mut current, &router, &log_reload);
            continue;
        }
        tracing::info!(signal, "shutting down");
        break;
    }
    router.shutdown();
    // A second signal while flushing ends the process at once.
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            std::process::exit(1);
        }
    });
    router.join();
    if let Some(path) = ready_file {
        let _ = std::fs::remove_file(path);
    }
    println!("weft: stopped");
    if log_too {
        tracing::info!("stopped");
    }
    ExitCode::SUCCESS
}

/// Both descriptors write to the same file (or terminal).
fn same_file(a: &impl std::os::fd::AsFd, b: &impl std::os::fd::AsFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    let meta = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .and_then(|fd| std::fs::File::from(fd).metadata())
            .ok()
    };
    match (meta(a.as_fd()), meta(b.as_fd())) {
        (Some(x), Some(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Waits (bounded) until every shard serves, then writes `path` with this
/// process's id: through a temporary file and a rename, so that whoever
/// sees the file sees it whole.
fn write_ready_file(path: &std::path::Path, router: &weft::Router) -> Result<(), String> {
    let deadline = std::time::Instant::now() + READY_WAIT_MAX;
    while !router.is_ready() {
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "the shards did not all serve within {} s",
                READY_WAIT_MAX.as_secs()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Longest wait for the shards to serve before the ready file is written
/// (they have joined the rings by then; this is their first scheduling).
const READY_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);
