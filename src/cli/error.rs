//! The two ways `weft pub` / `weft sub` fail, each with its exit status.
//!
//! Owns: the split between a command line that is wrong (status 2, as
//! clap's own errors) and a run that failed (status 1: the broker refused,
//! the connection broke, a publish was denied, nothing arrived in time).
//! Scripts branch on the status; a person reads the one line on stderr.

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The flags cannot work together or a value is malformed: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The run failed (connection, refusal, denial, timeout): exit 1.
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError::Usage(msg.into())
    }

    pub fn runtime(msg: impl Into<String>) -> CliError {
        CliError::Runtime(msg.into())
    }

    /// Prints the one line and gives the status (1 or 2).
    pub fn report(&self, command: &str) -> ExitCode {
        say(&format!("weft {command}: error: {self}"));
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Runtime(_) => ExitCode::from(1),
        }
    }
}

/// One line on stderr in one write: lines of processes sharing the
/// stream (a script's, a router's) never interleave within it.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}
