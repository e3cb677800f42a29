//! `weft pub` and `weft sub`: one command line client for weft's
//! protocols and for any MQTT or NATS broker, with the ergonomics of
//! `mosquitto_pub` / `mosquitto_sub` and `nats pub` / `nats sub`.
//!
//! Owns: the two subcommands, from flags to exit status: 0 done, 1 the run
//! failed (one line on stderr: refused, lost, denied, timed out), 2 the
//! command line is wrong (clap's errors and `check.rs`). One file per
//! concern: `args` (flags), `check` (flags that do not fit), `target`
//! (URLs), `payload` (what to publish), `output` (how to print), `ending`
//! (when a subscription run ends), `tls`, `mqtt_client` (rumqttc for
//! 3.1.1 and 5), `mqtt` and `nats` (the runs).
//!
//! Must not touch: the router. The clients are rumqttc and async-nats on
//! a tokio runtime made here, on the calling thread only: the router's
//! glommio executors never run tokio.

mod args;
mod check;
mod ending;
mod error;
pub mod explain;
mod mqtt;
mod mqtt_client;
mod nats;
mod output;
mod payload;
mod target;
mod tls;

use std::process::ExitCode;

pub use args::{ConnectArgs, Format, MqttVersion, PubArgs, SubArgs};
pub use error::CliError;

use target::Protocol;

/// Runs `future` on a single-threaded tokio runtime.
fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the runtime: {e}")))?
        .block_on(future)
}

fn status(command: &str, result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(command),
    }
}

/// `weft pub`.
pub fn run_pub(args: PubArgs) -> ExitCode {
    status("pub", block_on(publish(&args)))
}

async fn publish(args: &PubArgs) -> Result<(), CliError> {
    let conn = check::connection(&args.connect, "pub")?;
    check::mqtt_only(&conn, args.qos, args.retain)?;
    let pairs = check::properties(&conn, &args.properties, &args.headers)?;
    if args.content_type.is_some()
        && (conn.target.protocol == Protocol::Nats || conn.version == MqttVersion::V311)
    {
        return Err(CliError::usage(
            "--content-type is an MQTT 5 property (NATS: -H Content-Type:TYPE)",
        ));
    }
    let payloads = payload::Payloads::from_args(args).await?;
    match conn.target.protocol {
        Protocol::Mqtt => {
            let properties = mqtt_client::PublishProperties {
                user: pairs,
                content_type: args.content_type.clone(),
            };
            mqtt::publish(&conn, args, properties, payloads).await
        }
        Protocol::Nats => nats::publish(&conn, args, &pairs, payloads).await,
    }
}

/// `weft sub`.
pub fn run_sub(args: SubArgs) -> ExitCode {
    status("sub", block_on(subscribe(&args)))
}

async fn subscribe(args: &SubArgs) -> Result<(), CliError> {
    let conn = check::connection(&args.connect, "sub")?;
    check::mqtt_only(&conn, args.qos, false)?;
    let format = if args.verbose {
        Format::Topic
    } else {
        args.format
    };
    match conn.target.protocol {
        Protocol::Mqtt => mqtt::subscribe(&conn, args, format).await,
        Protocol::Nats => nats::subscribe(&conn, args, format).await,
    }
}
