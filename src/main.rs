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

fn run(args: RunArgs) -> ExitCode {
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        None => Config::default(),
    };
    config.apply(&Overrides {
        mqtt_listen: args.mqtt_listen,
        nats_listen: args.nats_listen,
        shards: args.shards,
        cores: args.cores,
        log_level: args.log_level,
    });
    let resolved = match config.resolve(&online_cores()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "weft={}",
            resolved.config.log.level
        )))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    // Signals are taken before the shards start, so that none is lost.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
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
    let _ = std::io::stdout().flush();

    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
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
