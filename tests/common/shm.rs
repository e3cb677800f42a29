//! Shared-memory clients for the tests that start a router with
//! `--shm-listen`: a socket path of the test's own, and a connect that
//! waits (a bounded number of tries) for the listener.

use std::path::PathBuf;
use std::time::Duration;

/// A Unix socket path unique to this test process, `prefix` and `name`.
pub fn socket_path(prefix: &str, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "weft-shm-{prefix}-{}-{name}.sock",
        std::process::id()
    ))
}

/// Connects once the router's listener is up: one try every 20 ms, for
/// at most `wait`.
pub fn connect(path: &PathBuf, options: weft_shm::Options, wait: Duration) -> weft_shm::Client {
    let mut tries = wait.as_millis() / 20;
    loop {
        match weft_shm::Client::connect(path, options.clone()) {
            Ok(c) => return c,
            Err(_) if tries > 0 => {
                tries -= 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("shm connect: {e}"),
        }
    }
}
