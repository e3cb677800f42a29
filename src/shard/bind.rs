//! Binding every listener weft opens (MQTT and NATS, plain and TLS, shared
//! and per shard, the mesh listener, the admin endpoint), with a bounded
//! retry while the address is in use.
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
use std::os::fd::{IntoRawFd, RawFd};
use std::time::{Duration, Instant};

use super::mailbox::Protocol as SessionProtocol;
use super::StartError;

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

/// The listeners of one protocol: the shared address and each shard's own.
pub(super) struct Bound {
    pub(super) addr: SocketAddr,
    pub(super) own_addrs: Vec<SocketAddr>,
}

/// What a listener serves: a protocol, over TCP or (`[mqtt.tls]`) TLS.
/// (NATS TLS is an upgrade on the NATS listener, not a listener.) `ws`:
/// over WebSocket (`[mqtt.ws]`, `[nats.ws]`; `tls` then means wss).
#[derive(Clone, Copy)]
pub(super) struct Listener {
    pub(super) protocol: SessionProtocol,
    pub(super) tls: bool,
    pub(super) ws: bool,
}

/// Listen backlog of the client and mesh listeners: connections the kernel
/// completes while a shard is busy (or out of descriptors) wait here.
pub(super) const LISTEN_BACKLOG: i32 = 1024;

/// A listener for `protocol` on `addr`, its bind retried while the address
/// is in use (see [`bind`]).
pub(super) fn bind_listener(
    protocol: &'static str,
    addr: SocketAddr,
    reuse_port: bool,
    backlog: i32,
    retry: Duration,
) -> Result<std::net::TcpListener, StartError> {
    with_retry(&format!("{protocol} listener"), addr, retry, || {
        listener(addr, reuse_port, backlog)
    })
    .and_then(|l| l.local_addr().map(|_| l))
    .map_err(|e| StartError::Bind {
        protocol,
        addr,
        reason: e.to_string(),
    })
}

/// Binds one protocol's listeners: `shards` SO_REUSEPORT sockets on one
/// address (port 0 resolved by the first), plus one own socket per shard
/// when asked. Appends each shard's raw fds to `per_shard`. Every bind is
/// retried for `retry` while its address is in use.
pub(super) fn bind_protocol(
    kind: Listener,
    listen: SocketAddr,
    own: bool,
    port_base: u16,
    per_shard: &mut [Vec<(Listener, RawFd)>],
    retry: Duration,
) -> Result<Bound, StartError> {
    let name = match (kind.protocol, kind.tls, kind.ws) {
        (SessionProtocol::Mqtt, _, true) => "MQTT WebSocket",
        (SessionProtocol::Nats, _, true) => "NATS WebSocket",
        (SessionProtocol::Mqtt, false, false) => "MQTT",
        (SessionProtocol::Mqtt, true, false) => "MQTT TLS",
        (SessionProtocol::Nats, _, false) => "NATS",
        (SessionProtocol::Http, _, _) => "HTTP",
        (SessionProtocol::Amqp, false, _) => "AMQP",
        (SessionProtocol::Amqp, true, _) => "AMQP TLS",
    };
    let bind_err = |addr, e: std::io::Error| StartError::Bind {
        protocol: name,
        addr,
        reason: e.to_string(),
    };
    if listen.port() != 0 {
        // SO_REUSEPORT would let this router silently share a port that
        // another process (another weft) listens on: refuse instead. A
        // killed predecessor's lingering listener is such a process: the
        // probe waits it out.
        with_retry(&format!("{name} listener"), listen, retry, || {
            probe_free(listen)
        })
        .map_err(|e| bind_err(listen, e))?;
    }
    let first = bind_listener(name, listen, true, LISTEN_BACKLOG, retry)?;
    let addr = first.local_addr().map_err(|e| bind_err(listen, e))?;
    let mut shared = vec![first];
    for _ in 1..per_shard.len() {
        shared.push(bind_listener(name, addr, true, LISTEN_BACKLOG, retry)?);
    }
    let mut own_addrs = Vec::new();
    for (i, (fds, listener)) in per_shard.iter_mut().zip(shared).enumerate() {
        fds.push((kind, listener.into_raw_fd()));
        if own {
            let port = match port_base {
                0 => 0,
                base => base.checked_add(i as u16).ok_or_else(|| {
                    bind_err(addr, std::io::Error::other("shard port beyond 65535"))
                })?,
            };
            let own_addr = SocketAddr::new(addr.ip(), port);
            let l = bind_listener(name, own_addr, false, LISTEN_BACKLOG, retry)?;
            own_addrs.push(l.local_addr().map_err(|e| bind_err(own_addr, e))?);
            fds.push((kind, l.into_raw_fd()));
        }
    }
    Ok(Bound { addr, own_addrs })
}

/// A WebSocket listener (`[mqtt.ws]` / `[nats.ws]`), shared by every
/// shard, when `listen` is set.
pub(super) fn bind_ws(
    protocol: SessionProtocol,
    listen: Option<SocketAddr>,
    tls: bool,
    per_shard: &mut [Vec<(Listener, RawFd)>],
    retry: Duration,
) -> Result<Option<Bound>, StartError> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let kind = Listener {
        protocol,
        tls,
        ws: true,
    };
    bind_protocol(kind, listen, false, 0, per_shard, retry).map(Some)
}

/// Where the client listeners listen (resolved from the configuration):
/// MQTT always, the others when configured.
pub(super) struct ClientAddrs {
    pub(super) mqtt: SocketAddr,
    pub(super) nats: Option<SocketAddr>,
    pub(super) mqtt_tls: Option<SocketAddr>,
    pub(super) http: Option<SocketAddr>,
    pub(super) mqtt_ws: Option<SocketAddr>,
    pub(super) nats_ws: Option<SocketAddr>,
    /// The AMQP 1.0 listener (`amqp.listen`; TLS with `amqp.tls`).
    pub(super) amqp: Option<SocketAddr>,
}

/// The client listeners once bound: their addresses (port 0 resolved).
pub(super) struct ClientListeners {
    pub(super) mqtt: Bound,
    /// The MQTT TLS listener (`mqtt.tls.listen`).
    pub(super) mqtt_tls: Option<Bound>,
    pub(super) nats: Option<Bound>,
    /// The HTTP edge's listener (`http.listen`).
    pub(super) http: Option<Bound>,
    /// The WebSocket listeners (`mqtt.ws.listen`, `nats.ws.listen`).
    pub(super) mqtt_ws: Option<Bound>,
    pub(super) nats_ws: Option<Bound>,
    pub(super) amqp: Option<Bound>,
}

/// Binds every client listener (see [`bind_protocol`], [`bind_ws`]) and
/// appends each shard's descriptors to `per_shard`.
pub(super) fn bind_clients(
    config: &crate::config::Config,
    addrs: ClientAddrs,
    per_shard: &mut [Vec<(Listener, RawFd)>],
    retry: Duration,
) -> Result<ClientListeners, StartError> {
    let plain = |protocol| Listener {
        protocol,
        tls: false,
        ws: false,
    };
    let mqtt = bind_protocol(
        plain(SessionProtocol::Mqtt),
        addrs.mqtt,
        config.mqtt.shard_listeners,
        config.mqtt.shard_port_base,
        per_shard,
        retry,
    )?;
    let nats = match addrs.nats {
        Some(listen) => Some(bind_protocol(
            plain(SessionProtocol::Nats),
            listen,
            config.nats.shard_listeners,
            config.nats.shard_port_base,
            per_shard,
            retry,
        )?),
        None => None,
    };
    let mqtt_tls = match addrs.mqtt_tls {
        Some(listen) => {
            let kind = Listener {
                protocol: SessionProtocol::Mqtt,
                tls: true,
                ws: false,
            };
            Some(bind_protocol(kind, listen, false, 0, per_shard, retry)?)
        }
        None => None,
    };
    let http = match addrs.http {
        Some(listen) => Some(bind_protocol(
            plain(SessionProtocol::Http),
            listen,
            false,
            0,
            per_shard,
            retry,
        )?),
        None => None,
    };
    let mqtt_ws = bind_ws(
        SessionProtocol::Mqtt,
        addrs.mqtt_ws,
        config.mqtt.ws.tls,
        per_shard,
        retry,
    )?;
    let nats_ws = bind_ws(
        SessionProtocol::Nats,
        addrs.nats_ws,
        config.nats.ws.tls,
        per_shard,
        retry,
    )?;
    let amqp = match addrs.amqp {
        Some(listen) => {
            let kind = Listener {
                protocol: SessionProtocol::Amqp,
                tls: config.amqp.tls,
                ws: false,
            };
            Some(bind_protocol(kind, listen, false, 0, per_shard, retry)?)
        }
        None => None,
    };
    Ok(ClientListeners {
        amqp,
        mqtt,
        mqtt_tls,
        nats,
        http,
        mqtt_ws,
        nats_ws,
    })
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
