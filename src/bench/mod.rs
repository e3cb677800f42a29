//! `weft bench`: the load tool (work in progress, see issue 6).

use std::process::ExitCode;

/// Options of `weft bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Target address (host:port).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub server: String,
}

pub fn run(args: BenchArgs) -> ExitCode {
    eprintln!("weft bench: not implemented yet ({args:?})");
    ExitCode::from(2)
}
