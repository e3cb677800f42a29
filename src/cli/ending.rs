//! When a `weft sub` run ends, and with which status: `--count` reached
//! (0), `--timeout` passed (0 if messages came, as many as `--count` asks
//! when given; else 1), or stdout closed by its reader (0, quietly).
//!
//! Owns: those rules, shared by the MQTT and the NATS runs. Must not
//! touch: the network.

use tokio::time::Instant;

use super::args::SubArgs;
use super::error::CliError;

/// Sleeps until `deadline`, or forever without one.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The end of `--timeout`: fine if messages came (as many as `--count`
/// asks, when given).
pub fn timed_out(args: &SubArgs, received: u64) -> Result<(), CliError> {
    let s = args.timeout.unwrap_or_default();
    match args.count {
        _ if received == 0 => Err(CliError::runtime(format!("no message within {s} s"))),
        Some(count) if received < count => Err(CliError::runtime(format!(
            "timed out after {s} s: {received} of {count} messages"
        ))),
        _ => Ok(()),
    }
}

/// A reader that went away (`weft sub | head -1`) ends the run quietly.
pub fn stdout_closed(e: std::io::Error) -> Result<(), CliError> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(CliError::runtime(format!("stdout: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: SubArgs,
    }

    fn sub(a: &[&str]) -> SubArgs {
        Cli::try_parse_from(["t", "-t", "x"].iter().chain(a))
            .unwrap()
            .s
    }

    #[test]
    fn timeout_outcomes() {
        let plain = sub(&["--timeout", "2"]);
        assert!(
            matches!(timed_out(&plain, 0), Err(CliError::Runtime(m)) if m == "no message within 2 s")
        );
        assert!(timed_out(&plain, 3).is_ok());
        let counted = sub(&["-W", "2", "-c", "3"]);
        assert!(
            matches!(timed_out(&counted, 2), Err(CliError::Runtime(m)) if m == "timed out after 2 s: 2 of 3 messages")
        );
        assert!(timed_out(&counted, 3).is_ok());
        assert!(
            matches!(timed_out(&counted, 0), Err(CliError::Runtime(m)) if m == "no message within 2 s")
        );
    }

    #[test]
    fn a_closed_pipe_is_a_quiet_end() {
        assert!(stdout_closed(std::io::ErrorKind::BrokenPipe.into()).is_ok());
        assert!(stdout_closed(std::io::ErrorKind::Other.into()).is_err());
    }
}
