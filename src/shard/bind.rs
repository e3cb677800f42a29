//! Binding every listener weft opens (MQTT and NATS, shared and per shard,
//! the mesh listener, the admin endpoint), with a bounded retry while the
//! address is in use.
//!
//! Why the retry: a router killed with SIGKILL does not release its
//! listening sockets at once. io_uring holds references to them and its
//! teardown runs after the process is gone, so for ~15 ms the old
//! listeners still exist; an immediate restart by a supervisor failed with
//! EADDRINUSE in 14 to 19 of 20 tries (tests/hardening.rs). The bind is
//! retried for `runtime.bind_retry_ms`, and only for "address in use": a
//! bad address or a missing permission fails at once. One line is logged
//! when the wait ends, naming the address and how long it took.
//!
//! The cost: a port truly held by another process is refused only after
//! the retry time, not at once.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// Pause between two attempts: the lingering sockets go within ~15 ms.
const BIND_RETRY_PAUSE: Duration = Duration::from_millis(5);

/// A listening TCP socket on `addr` with SO_REUSEADDR (a restart binds
/// over its predecessor's TIME_WAIT connections) and, when asked,
/// SO_REUSEPORT (every shard listens on one address).
pub fn listener(addr: SocketAddr, reuse_port: bool, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Fails with "address in use" if any socket listens on `addr`, with or
/// without SO_REUSEPORT.
pub fn probe_free(addr: SocketAddr) -> io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Runs `bind` until it succeeds, fails with anything but "address in
/// use", or `retry` has passed since the first attempt. `what` names the
/// listener in the log line and the error ("MQTT listener").
pub fn with_retry<T>(
    what: &str,
    addr: SocketAddr,
    retry: Duration,
    mut bind: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match bind() {
            Ok(bound) => {
                if attempts > 1 {
                    tracing::info!(
                        attempts,
                        "{what} {addr} was in use (a previous process's sockets?); bound after {} ms",
                        started.elapsed().as_millis()
                    );
                }
                return Ok(bound);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let waited = started.elapsed();
                if waited >= retry {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "{e} (still in use after {} ms of retrying, runtime.bind_retry_ms)",
                            waited.as_millis()
                        ),
                    ));
                }
                std::thread::sleep(BIND_RETRY_PAUSE.min(retry - waited));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken() -> (TcpListener, SocketAddr) {
        let l = listener("127.0.0.1:0".parse().unwrap(), false, 8).unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    #[test]
    fn in_use_fails_after_the_retry_time_and_says_so() {
        let (_held, addr) = taken();
        let e = with_retry("test listener", addr, Duration::ZERO, || {
            listener(addr, false, 8)
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("runtime.bind_retry_ms"), "{e}");
        let e = with_retry("test listener", addr, Duration::from_millis(30), || {
            probe_free(addr)
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn binds_once_the_address_is_released() {
        let (held, addr) = taken();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        let mut attempts = 0;
        let bound = with_retry("test listener", addr, Duration::from_secs(20), || {
            attempts += 1;
            listener(addr, false, 8)
        })
        .unwrap();
        assert_eq!(bound.local_addr().unwrap(), addr);
        assert!(attempts > 1, "the address was in use at first");
        release.join().unwrap();
    }

    #[test]
    fn other_errors_are_not_retried() {
        // Not an address of this host: refused at once, whatever the bound.
        let addr: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let mut attempts = 0;
        let e = with_retry("test listener", addr, Duration::from_secs(20), || {
            attempts += 1;
            listener(addr, false, 8)
        })
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
        assert_eq!(attempts, 1);
    }
}
