//! Accepting clients over TLS: the MQTT TLS listener's handshake, and NATS
//! TLS as NATS clients expect it, before the usual session runs over the
//! TLS transport (`transport_tls`).
//!
//! NATS, as nats-server does it: the INFO goes out in plain text with
//! `tls_required` (or `tls_available` when `nats.tls.required` is off), the
//! client starts TLS (its first byte 0x16, a handshake record) and the
//! session goes on over TLS with no second INFO. A client that sends
//! anything else first is answered `-ERR 'Secure Connection - TLS
//! Required'` and closed when TLS is required, else served in plain text.
//! With `nats.tls.handshake_first` the client starts TLS before any INFO,
//! which then comes over TLS; with a fallback delay, a client that sent
//! nothing by then gets the plain INFO and upgrades after it. The first
//! byte is peeked (MSG_PEEK), never consumed, so the session reads the
//! stream from its start whatever the outcome.
//!
//! Owns: the steps between accept and the session. Must not touch:
//! protocol rules (the machines), authentication (the identity is only
//! offered, through `Transport::peer_identity`). Every wait here is
//! bounded by `limits.connect_timeout_ms`, the CONNECT deadline; a failed
//! or timed-out handshake is counted (`tls_handshake_failures`) and logged
//! (rate-limited) with the peer's address.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;

use super::ctx::ShardCtx;
use super::driver;
use super::driver_nats::Prepared;
use super::stats::Counters;
use super::transport::{self, Transport};
use super::transport_tls::{HandshakeError, Tls};
use crate::config::{ClientTls, HandshakeFirst};

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The NATS error for a plain-text client where TLS is required (the text
/// nats-server sends).
const TLS_REQUIRED_ERR: &[u8] = b"-ERR 'Secure Connection - TLS Required'\r\n";

fn connect_deadline(ctx: &ShardCtx) -> Duration {
    Duration::from_millis(ctx.limits().connect_timeout_ms)
}

fn handshake_failed(
    ctx: &ShardCtx,
    listener: &str,
    peer: Option<std::net::SocketAddr>,
    e: HandshakeError,
) {
    Counters::add(&ctx.counters.tls_handshake_failures, 1);
    if ctx.log_limiter.allow() {
        tracing::info!(shard = ctx.id, ?peer, listener, "{e}");
    }
}

/// Serves one connection accepted on the MQTT TLS listener: the handshake
/// within the CONNECT deadline, then MQTT over TLS. The caller counted the
/// connection; this releases it.
pub async fn serve_mqtt(ctx: Rc<ShardCtx>, stream: TcpStream, tls: ClientTls) {
    transport::configure(&stream, &ctx.config().socket);
    let peer = stream.peer_addr().ok();
    match Tls::accept(stream, tls.server, tls.identity, connect_deadline(&ctx)).await {
        Ok(tls) => super::driver_mqtt::serve_on(ctx, Rc::new(tls)).await,
        Err(e) => {
            handshake_failed(&ctx, "mqtt.tls", peer, e);
            driver::release(&ctx);
        }
    }
}

/// Serves one connection accepted on the AMQP listener with `amqp.tls`:
/// the handshake within the CONNECT deadline, then AMQP over TLS (AMQP's
/// own TLS upgrade, protocol id 2, is not offered: the listener is TLS
/// from the first byte, as brokers' 5671). The caller counted the
/// connection; this releases it.
pub async fn serve_amqp(ctx: Rc<ShardCtx>, stream: TcpStream, tls: ClientTls) {
    transport::configure(&stream, &ctx.config().socket);
    let peer = stream.peer_addr().ok();
    match Tls::accept(stream, tls.server, tls.identity, connect_deadline(&ctx)).await {
        Ok(tls) => super::driver_amqp::serve_on(ctx, Rc::new(tls)).await,
        Err(e) => {
            handshake_failed(&ctx, "amqp.tls", peer, e);
            driver::release(&ctx);
        }
    }
}

/// What the first byte a client sent says, peeked within `wait`.
enum First {
    Tls,
    Other,
    /// Nothing within the wait.
    Nothing,
    /// The peer closed or the socket failed.
    Gone,
}

async fn peek_first(stream: &TcpStream, wait: Duration) -> First {
    let peek = async {
        let mut byte = [0u8; 1];
        match stream.peek(&mut byte).await {
            Ok(0) | Err(_) => First::Gone,
            Ok(_) if byte[0] == TLS_HANDSHAKE_RECORD => First::Tls,
            Ok(_) => First::Other,
        }
    };
    futures_lite::future::or(peek, async {
        glommio::timer::sleep(wait).await;
        First::Nothing
    })
    .await
}

/// Serves one NATS connection with `[nats.tls]` on (see the module
/// comment). The caller counted the connection; this releases it.
pub async fn serve_nats(ctx: Rc<ShardCtx>, stream: TcpStream, tls: ClientTls) {
    transport::configure(&stream, &ctx.config().socket);
    let config = ctx.config();
    let t = &config.nats.tls;
    let deadline = connect_deadline(&ctx);
    let peer = stream.peer_addr().ok();
    let local = stream.local_addr().ok();
    let required = t.required || t.handshake_first != HandshakeFirst::Flag(false);
    let mut prepared = Prepared::new(&ctx, peer, local, required);
    let tls_first = match t.handshake_first {
        HandshakeFirst::Flag(first) => first,
        HandshakeFirst::FallbackMs(ms) => {
            match peek_first(&stream, Duration::from_millis(ms)).await {
                First::Tls => true,
                First::Other | First::Nothing => false,
                First::Gone => return prepared.abandon(&ctx),
            }
        }
    };
    if tls_first {
        // The INFO stays with the machine, which sends it over TLS.
        return match Tls::accept(stream, tls.server, tls.identity, deadline).await {
            Ok(tls) => prepared.run(ctx, Rc::new(tls)).await,
            Err(e) => {
                handshake_failed(&ctx, "nats.tls", peer, e);
                prepared.abandon(&ctx)
            }
        };
    }
    let plain = RefCell::new(stream);
    if let Some(info) = prepared.take_info() {
        if super::io::send_all(&plain, &info).await.is_err() {
            return prepared.abandon(&ctx);
        }
    }
    let stream = plain.into_inner();
    let first = peek_first(&stream, deadline).await;
    let plain = RefCell::new(stream);
    match first {
        First::Tls => {}
        First::Other if !required => return prepared.run(ctx, Rc::new(plain)).await,
        First::Other => {
            if ctx.log_limiter.allow() {
                tracing::info!(
                    shard = ctx.id,
                    ?peer,
                    "NATS client refused: plain text where nats.tls.required"
                );
            }
            // Boxed: rare; its 4 KiB drain buffer stays out of the future.
            Box::pin(super::io::last_words(&plain, TLS_REQUIRED_ERR)).await;
            return prepared.abandon(&ctx);
        }
        First::Nothing => {
            handshake_failed(&ctx, "nats.tls", peer, HandshakeError::TimedOut);
            plain.reset_on_close();
            return prepared.abandon(&ctx);
        }
        First::Gone => return prepared.abandon(&ctx),
    }
    let stream = plain.into_inner();
    match Tls::accept(stream, tls.server, tls.identity, deadline).await {
        Ok(tls) => prepared.run(ctx, Rc::new(tls)).await,
        Err(e) => {
            handshake_failed(&ctx, "nats.tls", peer, e);
            prepared.abandon(&ctx)
        }
    }
}
