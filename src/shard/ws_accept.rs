//! Accepting clients on the WebSocket listeners (`[mqtt.ws]`,
//! `[nats.ws]`): TLS first for wss (the protocol's `[mqtt.tls]` /
//! `[nats.tls]` material), then the HTTP/1.1 upgrade (`ws::handshake`),
//! then the usual MQTT or NATS session over [`Ws`]. NATS clients get the
//! INFO after the upgrade, as nats-server's WebSocket listener sends it.
//!
//! Owns: the steps between accept and the session. Must not touch:
//! protocol rules (the machines), framing (`transport_ws`). The TLS and
//! upgrade handshakes together are bounded by `limits.connect_timeout_ms`
//! (the CONNECT deadline) and the request head by `handshake_bytes_max`;
//! a refused request gets its HTTP status and one-line reason, is logged
//! (rate-limited) with the peer's address, and harms no other connection.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::bind::Listener;
use super::ctx::ShardCtx;
use super::mailbox::Protocol;
use super::transport::{self, Transport};
use super::transport_tls::Tls;
use super::transport_ws::{Ws, WsLimits};
use super::{driver, io};
use crate::config::{WsConfig, WsSide};
use crate::ws::frame;
use crate::ws::handshake::{self, Expect, Refusal};

/// MQTT's subprotocol names: `mqtt` (MQTT 3.1.1 and 5), and `mqttv3.1`,
/// which MQTT 3.1 clients send and mosquitto accepts.
const MQTT_SUBPROTOCOLS: &[&str] = &["mqtt", "mqttv3.1"];

/// One listener's settings, the same shape for both sections.
struct Settings {
    path: String,
    head_bytes_max: usize,
    limits: WsLimits,
}

fn settings<S: WsSide>(c: &WsConfig<S>, text_allowed: bool) -> Settings {
    Settings {
        path: c.path.clone(),
        head_bytes_max: c.handshake_bytes_max,
        limits: WsLimits {
            frame: frame::Limits {
                frame_bytes_max: c.frame_bytes_max as u64,
                message_bytes_max: c.message_bytes_max as u64,
                text_allowed,
            },
            read_buffer_bytes: c.read_buffer_bytes,
            write_frame_bytes_max: c.write_frame_bytes_max,
        },
    }
}

/// Why a connection did not get to its session.
enum Failed {
    TimedOut,
    Gone,
    Refused(Refusal),
}

fn log_failure(ctx: &ShardCtx, listener: &str, peer: Option<std::net::SocketAddr>, why: &str) {
    if ctx.log_limiter.allow() {
        tracing::info!(
            shard = ctx.id,
            ?peer,
            listener,
            "websocket handshake failed: {why}"
        );
    }
}

/// Serves one connection accepted on a WebSocket listener. The caller
/// counted the connection; this releases it.
pub(super) async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream, kind: Listener) {
    transport::configure(&stream, &ctx.config().socket);
    let started = Instant::now();
    let deadline = Duration::from_millis(ctx.limits().connect_timeout_ms);
    let config = ctx.config();
    let (name, settings) = match kind.protocol {
        // Binary frames only on MQTT (1003 for text), as mosquitto.
        Protocol::Mqtt => ("mqtt.ws", settings(&config.mqtt.ws, false)),
        // nats.ws sends binary; text is accepted (UTF-8 checked).
        Protocol::Nats => ("nats.ws", settings(&config.nats.ws, true)),
        // The HTTP edge has no WebSocket listener of its own.
        Protocol::Http | Protocol::Amqp => return driver::release(&ctx),
    };
    drop(config);
    let peer = stream.peer_addr().ok();
    if !kind.tls {
        let plain = std::cell::RefCell::new(stream);
        return upgrade(
            ctx,
            plain,
            kind.protocol,
            name,
            settings,
            started + deadline,
        )
        .await;
    }
    let material = match kind.protocol {
        Protocol::Mqtt => ctx.global.client_tls_mqtt_ws(),
        Protocol::Nats => ctx.global.client_tls_nats(),
        Protocol::Http | Protocol::Amqp => None,
    };
    let Some(material) = material else {
        return driver::release(&ctx);
    };
    match Tls::accept(stream, material.server, material.identity, deadline).await {
        Ok(tls) => upgrade(ctx, tls, kind.protocol, name, settings, started + deadline).await,
        Err(e) => {
            super::stats::Counters::add(&ctx.counters.tls_handshake_failures, 1);
            log_failure(&ctx, name, peer, &e.to_string());
            driver::release(&ctx);
        }
    }
}

/// The upgrade on `inner` by `until`, then the session over WebSocket.
async fn upgrade<T: Transport>(
    ctx: Rc<ShardCtx>,
    inner: T,
    protocol: Protocol,
    name: &str,
    settings: Settings,
    until: Instant,
) {
    let expect = Expect {
        path: Some(&settings.path),
        subprotocols: match protocol {
            Protocol::Mqtt => MQTT_SUBPROTOCOLS,
            Protocol::Nats | Protocol::Http | Protocol::Amqp => &[],
        },
        subprotocol_required: protocol == Protocol::Mqtt,
        head_bytes_max: settings.head_bytes_max,
    };
    let mut head = vec![0u8; settings.head_bytes_max];
    let read = read_request(&inner, &mut head, &expect);
    let timeout = async {
        glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
        Err(Failed::TimedOut)
    };
    let outcome = futures_lite::future::or(read, timeout).await;
    let peer = inner.peer_addr();
    match outcome {
        Ok((upgrade, filled)) => {
            let mut answer = Vec::with_capacity(256);
            handshake::accept_response(&upgrade, &mut answer);
            if io::send_all(&inner, &answer).await.is_err() {
                return driver::release(&ctx);
            }
            let ws = Ws::new(inner, settings.limits, &head[upgrade.head_len..filled]);
            drop(head);
            match protocol {
                Protocol::Mqtt => super::driver_mqtt::serve_on(ctx, Rc::new(ws)).await,
                Protocol::Nats => super::driver_nats::serve_on(ctx, Rc::new(ws)).await,
                Protocol::Http | Protocol::Amqp => driver::release(&ctx),
            }
        }
        Err(Failed::Refused(refusal)) => {
            log_failure(&ctx, name, peer, &refusal.to_string());
            let mut answer = Vec::new();
            handshake::refusal_response(&refusal, &mut answer);
            // Boxed: rare; its 4 KiB drain buffer stays out of the future.
            Box::pin(io::last_words(&inner, &answer)).await;
            driver::release(&ctx);
        }
        Err(Failed::TimedOut) => {
            log_failure(
                &ctx,
                name,
                peer,
                "no upgrade request within the CONNECT deadline",
            );
            inner.reset_on_close();
            driver::release(&ctx);
        }
        Err(Failed::Gone) => driver::release(&ctx),
    }
}

/// Reads until `head` holds a whole request head: the upgrade and the
/// bytes read (the head, and any frames sent after it).
async fn read_request<T: Transport>(
    inner: &T,
    head: &mut [u8],
    expect: &Expect<'_>,
) -> Result<(handshake::Upgrade, usize), Failed> {
    let mut filled = 0;
    loop {
        match io::read_some(inner, &mut head[filled..], None).await {
            io::Read::Data(n) => filled += n,
            io::Read::Closed(_) => return Err(Failed::Gone),
        }
        match handshake::parse_upgrade(&head[..filled], expect) {
            Ok(Some(upgrade)) => return Ok((upgrade, filled)),
            Ok(None) => {}
            Err(refusal) => return Err(Failed::Refused(refusal)),
        }
    }
}
