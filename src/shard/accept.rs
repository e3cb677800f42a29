//! Accepting one connection: the admission checks in order (the shard's
//! accept rate, `limits.connections_max` and the descriptor limit, the
//! listener's and the source address's limits; see [`admission`]), then
//! the connection's task, holding its permit, or its refusal.
//!
//! Owns: the accept loop of a TCP listener on a shard (with its spare
//! descriptor for refusing past the descriptor limit), the decision at
//! accept and the refusal's last words (NATS).
//! Must not touch: sessions (the drivers serve the connection).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::admission;
use super::bind::Listener;
use super::ctx::ShardCtx;
use super::mailbox::Protocol as SessionProtocol;
use super::{
    driver, driver_amqp, driver_http, driver_mqtt, driver_nats, stats, tls_accept, ws_accept,
};

/// An accepted connection: served under a permit (counted before anything
/// is allocated for it), or refused past the shard's accept rate,
/// `limits.connections_max` or what the descriptor limit holds, its
/// listener's limit or its source address's (see [`admission`]).
pub(super) fn admit(
    ctx: &Rc<ShardCtx>,
    stream: glommio::net::TcpStream,
    kind: Listener,
    rate: &admission::AcceptRate,
) {
    let protocol = kind.protocol;
    let listener = match protocol {
        SessionProtocol::Mqtt => admission::ListenerKind::Mqtt,
        SessionProtocol::Nats => admission::ListenerKind::Nats,
        SessionProtocol::Http => admission::ListenerKind::Http,
        SessionProtocol::Amqp => admission::ListenerKind::Amqp,
    };
    let config = ctx.config();
    if !rate.allow(config.security.accept_rate_per_s, Instant::now()) {
        let peer = stream.peer_addr().ok().map(|a| a.ip());
        ctx.count_refused(admission::Refused::Rate, listener, peer);
        return;
    }
    let configured = config.limits.connections_max;
    let held = match ctx.descriptor_connections_max() {
        0 => usize::MAX,
        n => n,
    };
    let max = configured.min(held);
    if ctx.global_connections().fetch_add(1, Ordering::Relaxed) >= max {
        ctx.global_connections().fetch_sub(1, Ordering::Relaxed);
        stats::Counters::add(&ctx.counters.connections_refused, 1);
        if ctx.log_limiter.allow() {
            let why = if held < configured {
                "connection refused: the descriptor limit holds no more connections (see the descriptor limit line at start)"
            } else {
                "connection refused: connections_max reached"
            };
            tracing::warn!(shard = ctx.id, peer = ?stream.peer_addr().ok(), max, "{why}");
        }
        return;
    }
    let listener_max = match protocol {
        SessionProtocol::Mqtt => config.mqtt.connections_max,
        SessionProtocol::Nats => config.nats.connections_max,
        SessionProtocol::Http => config.http.connections_max,
        SessionProtocol::Amqp => config.amqp.connections_max,
    };
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let permit = ctx.global.admission.admit(
        listener,
        listener_max,
        peer,
        config.security.connections_per_source_max,
    );
    let permit = match permit {
        Ok(permit) => permit,
        Err(why) => {
            ctx.count_refused(why, listener, peer);
            if protocol == SessionProtocol::Nats {
                // As nats-server: the client reads why before the close.
                // Its descriptor stays counted in `connections_max` until
                // then, which bounds the refusals in flight.
                glommio::spawn_local(refuse_nats(ctx.clone(), stream)).detach();
            } else {
                ctx.global_connections().fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
    };
    stats::Counters::add(&ctx.counters.connections_accepted, 1);
    stats::Counters::add(&ctx.counters.connections, 1);
    if kind.ws {
        // The upgrade (after TLS for wss), then the same session.
        glommio::spawn_local(under_permit(
            permit,
            ws_accept::serve(ctx.clone(), stream, kind),
        ))
        .detach();
        return;
    }
    match (protocol, kind.tls) {
        (SessionProtocol::Mqtt, false) => {
            glommio::spawn_local(under_permit(
                permit,
                driver_mqtt::serve(ctx.clone(), stream),
            ))
            .detach();
        }
        (SessionProtocol::Mqtt, true) => match ctx.global.client_tls_mqtt() {
            Some(tls) => {
                glommio::spawn_local(under_permit(
                    permit,
                    tls_accept::serve_mqtt(ctx.clone(), stream, tls),
                ))
                .detach();
            }
            None => driver::release(ctx),
        },
        (SessionProtocol::Nats, _) => match ctx.global.client_tls_nats() {
            // `[nats.tls]`: INFO, then the upgrade (or TLS first).
            Some(tls) => {
                glommio::spawn_local(under_permit(
                    permit,
                    tls_accept::serve_nats(ctx.clone(), stream, tls),
                ))
                .detach();
            }
            None => {
                glommio::spawn_local(under_permit(
                    permit,
                    driver_nats::serve(ctx.clone(), stream),
                ))
                .detach();
            }
        },
        (SessionProtocol::Amqp, false) => {
            glommio::spawn_local(under_permit(
                permit,
                driver_amqp::serve(ctx.clone(), stream),
            ))
            .detach();
        }
        (SessionProtocol::Amqp, true) => match ctx.global.client_tls_amqp() {
            Some(tls) => {
                glommio::spawn_local(under_permit(
                    permit,
                    tls_accept::serve_amqp(ctx.clone(), stream, tls),
                ))
                .detach();
            }
            None => driver::release(ctx),
        },
        (SessionProtocol::Http, _) => {
            glommio::spawn_local(under_permit(
                permit,
                driver_http::serve(ctx.clone(), stream),
            ))
            .detach();
        }
    }
}

/// Runs `serve` holding the connection's admission permit, released when
/// the task ends (or is dropped at shutdown).
///
/// A plain future, not an `async fn`: an async fn keeps its argument
/// `serve` beside the copy it awaits (rust-lang/rust#62958), which made
/// every connection's task twice its future (3.4 KiB instead of 1.7 KiB
/// per idle MQTT connection, perf/results/2026-12-07-memory-conn.md).
pub(super) fn under_permit<F: std::future::Future<Output = ()>>(
    permit: admission::Permit,
    serve: F,
) -> UnderPermit<F> {
    UnderPermit {
        serve,
        _permit: permit,
    }
}

/// See [`under_permit`].
pub(super) struct UnderPermit<F> {
    serve: F,
    _permit: admission::Permit,
}

impl<F: std::future::Future<Output = ()>> std::future::Future for UnderPermit<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // SAFETY: `serve` is pinned structurally: it is never moved out of
        // `UnderPermit` (no method gives it out, there is no `Drop` impl,
        // and `UnderPermit` is `Unpin` only when `F` is).
        unsafe { self.map_unchecked_mut(|u| &mut u.serve) }.poll(cx)
    }
}

/// Longest a refused NATS client is given to take its error line (a fresh
/// socket's send buffer takes it at once; this bounds the odd case where
/// it does not).
const REFUSAL_WRITE_MAX: Duration = Duration::from_secs(1);

/// Writes nats-server's line to a client over a limit, closes, and gives
/// back its place under `connections_max`.
async fn refuse_nats(ctx: Rc<ShardCtx>, mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_MAX));
    let _ = stream.write_all(admission::NATS_TOO_MANY).await;
    let _ = stream.close().await;
    ctx.global_connections().fetch_sub(1, Ordering::Relaxed);
}

/// A listener's accept loop on one shard, until the shard stops: each
/// accepted connection to [`admit`]; out of descriptors, the reserve below
/// refuses one client at a time instead of leaving them in the backlog.
pub(super) async fn accept_loop(
    ctx: &Rc<ShardCtx>,
    listener: &glommio::net::TcpListener,
    protocol: Listener,
    rate: &admission::AcceptRate,
) {
    // A descriptor kept in reserve: out of descriptors (EMFILE), the
    // listener's next client is accepted on it and closed at once, so that
    // clients past the limit are refused (EOF) and counted instead of
    // waiting in the backlog for a slot that may never come.
    let mut spare = std::fs::File::open("/dev/null").ok();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            ctx.stopped().await;
            None
        })
        .await;
        let Some(accepted) = accepted else {
            return;
        };
        match accepted {
            Ok(stream) => admit(ctx, stream, protocol, rate),
            Err(e) => {
                let e = std::io::Error::from(e);
                let out_of_descriptors = matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE)
                );
                if out_of_descriptors && spare.is_none() {
                    // The last refusal's descriptor may have been closed
                    // (asynchronously) only now.
                    spare = std::fs::File::open("/dev/null").ok();
                }
                if out_of_descriptors && spare.take().is_some() {
                    // The reserve makes room for one accept.
                    if let Ok(stream) = listener.accept().await {
                        spare = std::fs::File::open("/dev/null").ok();
                        if spare.is_some() {
                            // Descriptors came back meanwhile: served.
                            admit(ctx, stream, protocol, rate);
                        } else {
                            stats::Counters::add(&ctx.counters.connections_refused, 1);
                            if ctx.log_limiter.allow() {
                                tracing::warn!(shard = ctx.id, peer = ?stream.peer_addr().ok(), "connection refused: out of file descriptors (RLIMIT_NOFILE; see the descriptor limit line at start)");
                            }
                            drop(stream);
                        }
                    }
                } else if ctx.log_limiter.allow() {
                    tracing::warn!(shard = ctx.id, "accept failed: {e}");
                }
                // Back off instead of spinning.
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
