//! Shared-memory clients (`shm.listen`): shard 0 listens on the Unix
//! socket, admits each client (`limits.connections_max`, then the `shm`
//! listener's limit: `shm.connections_max` and `shm.segment_bytes_max`)
//! and hands it round-robin to a shard (the descriptors are process-wide);
//! that shard reads the hello, creates the segment and doorbells, sends
//! them (SCM_RIGHTS) and runs the NATS or MQTT driver over
//! `transport_shm`.
//!
//! Owns: the listener, the handshake's router side, the refusal line.
//! Must not touch: the rings' contents, sessions.
//! Bounds: the hello is at most `weft_shm::handshake::HELLO_BYTES_MAX`
//! bytes and must come whole within `shm.hello_timeout_ms`; admitted clients are
//! bounded by the listener's limit, so each shard's inbox is too.
//!
//! The listener goes through `glommio::net::TcpListener::from_raw_fd`:
//! glommio 0.9's own `UnixListener` yields streams without their
//! descriptor, which the handshake needs for `sendmsg`. Accept and recv
//! through io_uring are the same calls for an `AF_UNIX` socket; nothing
//! TCP-specific (addresses, `TCP_NODELAY`) is ever asked of these.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::admission::{self, ListenerKind};
use super::ctx::ShardCtx;
use super::shm_handoff::Handoff;
use super::spin_watch::{SpinSession, SpinWatch, SPIN_TURN};
use super::transport_shm::{ShmTransport, Spin};
use super::{driver, driver_mqtt, driver_nats, stats};
use crate::shm::{self as shm, Dialect, Offer, RouterRings};

/// Starts what `[shm]` needs on this shard: on every shard, the task that
/// serves the clients handed to it; on shard 0, the listener. A listener
/// that cannot be bound stops the router (logged with the path).
pub fn start(ctx: &Rc<ShardCtx>) {
    let config = ctx.config();
    if !config.shm.enabled() {
        return;
    }
    {
        let ctx = ctx.clone();
        glommio::spawn_local(async move { serve_inbox(ctx).await }).detach();
    }
    if ctx.id != 0 {
        return;
    }
    match bind(&config.shm.listen) {
        Ok(listener) => {
            tracing::info!(path = %config.shm.listen, ring_bytes = config.shm.ring_bytes, "shared-memory listener ready");
            let ctx = ctx.clone();
            glommio::spawn_local(async move { accept_loop(ctx, listener).await }).detach();
        }
        Err(e) => {
            tracing::error!(path = %config.shm.listen, error = %e, "shm.listen: cannot listen; stopping");
            ctx.global.shutdown.store(true, Ordering::Relaxed);
        }
    }
}

/// Binds the Unix socket, replacing a socket file an earlier run left (a
/// file that is not a socket, or a socket a live router answers on, is an
/// error).
fn bind(path: &str) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        // A live router answers on it: never take its socket away.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "a router is listening on it (stop it or choose another shm.listen)",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    // SAFETY: a listening socket we own, handed to glommio.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) })
}

async fn accept_loop(ctx: Rc<ShardCtx>, listener: glommio::net::TcpListener) {
    let mut next = 0usize;
    loop {
        let accepted =
            futures_lite::future::or(async { Some(listener.shared_accept().await) }, async {
                ctx.stopped().await;
                None
            })
            .await;
        match accepted {
            None => break,
            Some(Ok(socket)) => admit(&ctx, socket, &mut next),
            Some(Err(e)) => {
                if ctx.log_limiter.allow() {
                    tracing::warn!(shard = ctx.id, "shm accept failed: {e}");
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let _ = std::fs::remove_file(&ctx.config().shm.listen);
}

/// Admits a client (or refuses it with an `ERR` line) and hands it to the
/// next shard.
fn admit(ctx: &Rc<ShardCtx>, socket: glommio::net::AcceptedTcpStream, next: &mut usize) {
    let config = ctx.config();
    let max = config.limits.connections_max;
    if ctx.global_connections().fetch_add(1, Ordering::Relaxed) >= max {
        stats::Counters::add(&ctx.counters.connections_refused, 1);
        if ctx.log_limiter.allow() {
            tracing::warn!(
                shard = ctx.id,
                max,
                "shm connection refused: connections_max reached"
            );
        }
        glommio::spawn_local(refuse(
            ctx.clone(),
            socket,
            "limits.connections_max reached",
        ))
        .detach();
        return;
    }
    let permit = ctx.global.admission.admit(
        ListenerKind::Shm,
        shm::clients_max(&config.shm),
        None,
        config.security.connections_per_source_max,
    );
    let permit = match permit {
        Ok(permit) => permit,
        Err(why) => {
            ctx.count_refused(why, ListenerKind::Shm, None);
            glommio::spawn_local(refuse(ctx.clone(), socket, refusal_reason(why))).detach();
            return;
        }
    };
    let shards = match ctx.global.client_shards {
        0 => ctx.shards,
        n => n,
    };
    let target = *next % shards.max(1);
    *next = next.wrapping_add(1);
    let handoff = Handoff::new(socket, permit);
    if target == ctx.id {
        ctx.shm_inbox.push(handoff);
    } else {
        ctx.hand_shm_client(target, handoff);
    }
}

/// The refusal's reason: the key that would admit more.
fn refusal_reason(why: admission::Refused) -> &'static str {
    match why {
        admission::Refused::Listener => "shm.connections_max or shm.segment_bytes_max reached",
        admission::Refused::Source => "security.connections_per_source_max reached",
        admission::Refused::User => "security.connections_per_user_max reached",
        admission::Refused::Rate => "security.accept_rate_per_s reached",
    }
}

/// Writes `ERR {reason}` and closes; gives back the connection's place
/// under `limits.connections_max`.
async fn refuse(ctx: Rc<ShardCtx>, socket: glommio::net::AcceptedTcpStream, reason: &'static str) {
    let mut stream = socket.bind_to_executor();
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(shm::err_line(reason).as_bytes()).await;
    let _ = stream.close().await;
    ctx.global_connections().fetch_sub(1, Ordering::Relaxed);
}

/// Serves the clients handed to this shard, each under its permit.
async fn serve_inbox(ctx: Rc<ShardCtx>) {
    // Created on the first spinning client, then reused: spinning
    // sessions share one queue (see `SPIN_TURN`).
    let mut spin_queue = None;
    // Their heartbeat and watchdog (see `spin_watch`).
    let spinners = SpinWatch::new(ctx.clone());
    loop {
        let handoff = futures_lite::future::or(async { Some(ctx.shm_inbox.next().await) }, async {
            ctx.stopped().await;
            None
        })
        .await;
        let Some(handoff) = handoff else { return };
        let Some((socket, permit)) = handoff.take() else {
            continue;
        };
        // Counted on the shard that serves it (the session's end takes it
        // off this shard's gauge).
        stats::Counters::add(&ctx.counters.connections_accepted, 1);
        stats::Counters::add(&ctx.counters.connections, 1);
        let spins = ctx.config().shm.spin_us > 0;
        let session = {
            let ctx = ctx.clone();
            // Started here, in the shard's default queue: so is the
            // heartbeat (`spin_watch`).
            let spinning = spins.then(|| spinners.session());
            async move {
                serve(ctx, socket, spinning).await;
                drop(permit);
            }
        };
        let queue = spins.then(|| {
            *spin_queue.get_or_insert_with(|| {
                glommio::executor().create_task_queue(
                    glommio::Shares::default(),
                    glommio::Latency::Matters(SPIN_TURN),
                    "shm-spin",
                )
            })
        });
        match queue {
            Some(queue) => match glommio::spawn_local_into(session, queue) {
                Ok(task) => drop(task.detach()),
                Err(e) => {
                    // Only if the queue were gone (it never is): the
                    // client is closed (its permit dropped with the
                    // future), its place given back.
                    tracing::error!(shard = ctx.id, error = %e, "shm: cannot start the session");
                    driver::release(&ctx);
                }
            },
            None => drop(glommio::spawn_local(session).detach()),
        }
    }
}

/// The handshake, then the session.
/// `spinning`: the session's share of the shard's spin watch (with
/// `shm.spin_us`), handed to its transport.
async fn serve(
    ctx: Rc<ShardCtx>,
    socket: glommio::net::AcceptedTcpStream,
    spinning: Option<SpinSession>,
) {
    let mut stream = socket.bind_to_executor();
    let fd = stream.as_raw_fd();
    let name = client_name(fd);
    let limit = Duration::from_millis(ctx.config().shm.hello_timeout_ms);
    let hello = futures_lite::future::or(read_hello(&mut stream), async {
        glommio::timer::sleep(limit).await;
        Err("no hello within shm.hello_timeout_ms".to_string())
    })
    .await;
    let dialect = match hello {
        Ok(dialect) => dialect,
        Err(reason) => {
            tracing::debug!(shard = ctx.id, client = %name, %reason, "shm handshake refused");
            let _ = stream.write_all(shm::err_line(&reason).as_bytes()).await;
            let _ = stream.close().await;
            return driver::release(&ctx);
        }
    };
    let config = ctx.config();
    let offer = match Offer::new(config.shm.ring_bytes) {
        Ok(offer) => offer,
        Err(e) => {
            tracing::warn!(shard = ctx.id, client = %name, error = %e, "shm: cannot create a segment");
            let _ = stream
                .write_all(shm::err_line("cannot create the segment").as_bytes())
                .await;
            let _ = stream.close().await;
            return driver::release(&ctx);
        }
    };
    let fds = [
        offer.memfd.as_raw_fd(),
        offer.to_router.as_raw_fd(),
        offer.to_client.as_raw_fd(),
    ];
    if let Err(e) = shm::send_ok(fd, config.shm.ring_bytes, fds) {
        tracing::debug!(shard = ctx.id, client = %name, error = %e, "shm handshake failed");
        return driver::release(&ctx);
    }
    // The client holds its own copy of the memfd; the router keeps only
    // its mapping.
    drop(offer.memfd);
    let transport = match ShmTransport::new(
        stream,
        RouterRings::new(offer.segment),
        offer.to_router,
        offer.to_client,
        Spin {
            window_us: config.shm.spin_us,
            session: spinning,
        },
        name.clone(),
        ctx.clone(),
    ) {
        Ok(t) => Rc::new(t),
        Err(e) => {
            tracing::warn!(shard = ctx.id, client = %name, error = %e, "shm: cannot start the transport");
            return driver::release(&ctx);
        }
    };
    tracing::debug!(shard = ctx.id, client = %name, dialect = dialect.name(), "shm client connected");
    stats::Counters::add(&ctx.counters.shm_connections, 1);
    match dialect {
        Dialect::Nats => driver_nats::serve_on_shm(ctx.clone(), transport.clone()).await,
        Dialect::Mqtt => driver_mqtt::serve_on(ctx.clone(), transport.clone()).await,
    }
    stats::Counters::sub(&ctx.counters.shm_connections, 1);
    if transport.corrupt() {
        stats::Counters::add(&ctx.counters.shm_corrupt_closes, 1);
    }
}

/// Reads the hello line (bounded in bytes; the caller bounds the time of
/// the whole line).
async fn read_hello(stream: &mut glommio::net::TcpStream) -> Result<Dialect, String> {
    let mut line = Vec::with_capacity(shm::HELLO_BYTES_MAX);
    let mut byte = [0u8; 1];
    // One byte at a time: the client sends nothing after the line, and
    // this runs once per connection.
    while !line.ends_with(b"\n") {
        if line.len() >= shm::HELLO_BYTES_MAX {
            return Err("hello line too long".into());
        }
        match stream.read(&mut byte).await {
            Ok(1) => line.push(byte[0]),
            Ok(_) => return Err("closed before the hello".into()),
            Err(e) => return Err(format!("no hello: {e}")),
        }
    }
    shm::parse_hello(&line)
}

/// `pid 123 uid 1000` from the socket's peer credentials.
fn client_name(fd: i32) -> String {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    // SAFETY: the stream owns `fd` for this call's duration.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match getsockopt(&borrowed, PeerCredentials) {
        Ok(c) => format!("shm client pid {} uid {}", c.pid(), c.uid()),
        Err(_) => "shm client".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bind_refuses_a_socket_a_live_router_answers_on() {
        let dir = std::env::temp_dir().join(format!("weft-shm-bind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("live.sock");
        let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let Err(err) = super::bind(path.to_str().unwrap()) else {
            panic!("bound over a live socket");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        assert!(path.exists(), "the live socket stays");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
