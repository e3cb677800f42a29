//! The `weft` command line: `weft run` (the default) starts the router,
//! `weft check-config FILE` validates a configuration without starting.
//! Bad flags or configuration print one line naming the flag or key and
//! exit with status 2.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use weft::config::{Config, Overrides};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: a thread-per-core event mesh router (MQTT 3.1.1, NATS)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
}

#[derive(Args, Default)]
struct RunArgs {
    /// TOML configuration file; flags below override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the MQTT listener (config: mqtt.listen). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    mqtt_listen: Option<String>,
    /// Address of the NATS listener (config: nats.listen).
    #[arg(long, value_name = "ADDR")]
    nats_listen: Option<String>,
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
    /// error, warn, info, debug or trace (config: log.level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
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
            match Config::load(&file).and_then(|c| c.resolve(&online_cores())) {
                Ok(_) => {
                    println!("weft: {} is valid", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Some(Command::Run(args)) => run(args),
        Some(Command::Bench(args)) => weft::bench::run(args),
        None => run(RunArgs::default()),
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
        Ok(r) => r.config,
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
    let (applied, restart): (Vec<_>, Vec<_>) = changed.into_iter().partition(|key| {
        weft::config::RELOADABLE_SECTIONS
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
    effective.log = next.log.clone();
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
        nats_listen: args.nats_listen,
        admin_listen: args.admin_listen,
        shards: args.shards,
        cores: args.cores,
        log_level: args.log_level,
        router_id: args.router_id,
        mesh_name: args.mesh_name,
        mesh_listen: args.mesh_listen,
        links: args.links,
        bridge_cores: args.bridge_cores,
    };
    config.apply(&overrides);
    let resolved = match config.resolve(&online_cores()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    use tracing_subscriber::prelude::*;
    let (filter, log_reload) =
        tracing_subscriber::reload::Layer::new(log_filter(&resolved.config.log.level));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
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
    println!(
        "weft: mqtt listening on {} (shards: {}, cores: {})",
        router.mqtt_addr(),
        router.shard_count(),
        cores.join(",")
    );
    for (i, addr) in router.shard_addrs().iter().enumerate() {
        println!("weft: mqtt shard {i} listening on {addr}");
    }
    if let Some(addr) = router.nats_addr() {
        println!("weft: nats listening on {addr}");
    }
    for (i, addr) in router.nats_shard_addrs().iter().enumerate() {
        println!("weft: nats shard {i} listening on {addr}");
    }
    if let Some(addr) = router.admin_addr() {
        println!("weft: admin listening on {addr}");
    }
    if let Some(addr) = router.mesh_addr() {
        println!(
            "weft: mesh listening on {addr} (router id: {})",
            current.mesh.router_id
        );
    }
    let _ = std::io::stdout().flush();

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
    println!("weft: stopped");
    ExitCode::SUCCESS
}
