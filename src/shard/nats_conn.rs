//! One NATS client connection: INFO on connect, then the client's
//! operations parsed by `nats::codec` and applied to the shard; PINGs from
//! the server on a timer, with a bound on unanswered ones.
//!
//! Owns: the NATS session state of one connection (verbose, headers, …).
//! Errors end in `-ERR '<message>'` with the texts real clients expect;
//! fatal ones then close the connection, others (an invalid subject) leave
//! it open, as nats-server does.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use serde::Deserialize;

use super::ctx::ShardCtx;
use super::io::{read_more, write_loop, ReadBuffer, Stream, READ_BUFFER_INITIAL};
use super::session::{CloseReason, Protocol, Session};
use crate::event::{Event, EventMeta};
use crate::nats::codec::{self, ClientOp, NatsLimits};
use crate::nats::subject;
use crate::shard::stats::Counters;
use crate::topic;

/// The CONNECT options weft reads; others are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct ConnectOptions {
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: false,
            pedantic: false,
            echo: true,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
        }
    }
}

/// The status header of a request that found no subscriber.
const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    super::io::configure(&stream, &ctx.config().socket);
    let peer = stream.peer_addr().ok();
    let local = stream.local_addr().ok();
    let stream = Rc::new(RefCell::new(stream));
    let client_id = ctx.assign_client_id();
    let session = ctx.register(Protocol::Nats, client_id);
    session.peer.set(peer);
    session.send_frame(info_line(&ctx, &session, peer, local));
    let writer = glommio::spawn_local(write_loop(ctx.clone(), session.clone(), stream.clone()));
    let pinger = glommio::spawn_local(ping_loop(ctx.clone(), session.clone()));
    let (reason, error) = session_loop(&ctx, &session, &stream).await;
    session.close(reason);
    ctx.unregister(&session);
    drop(pinger);
    let between_packets = writer.await;
    let error = error.or(match reason {
        CloseReason::SlowConsumer => Some("Slow Consumer"),
        CloseReason::StaleConnection => Some("Stale Connection"),
        _ => None,
    });
    if let (Some(message), true) = (error, between_packets) {
        // Best effort, bounded: the client may not be reading at all.
        super::io::last_words(&stream, &codec::err_line(message)).await;
    }
    if reason == CloseReason::ProtocolError {
        Counters::add(&ctx.counters.protocol_errors, 1);
    }
    tracing::debug!(
        shard = ctx.id,
        ?peer,
        reason = reason.label(),
        "NATS connection closed"
    );
    ctx.global_connections()
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    Counters::sub(&ctx.counters.connections, 1);
}

fn info_line(
    ctx: &ShardCtx,
    session: &Session,
    peer: Option<std::net::SocketAddr>,
    local: Option<std::net::SocketAddr>,
) -> Vec<u8> {
    let config = ctx.config();
    let n = &config.nats;
    let info = serde_json::json!({
        "server_id": ctx.global.server_id,
        "server_name": "weft",
        "version": env!("CARGO_PKG_VERSION"),
        "proto": 1,
        "go": "n/a (weft, Rust)",
        "host": local.map(|a| a.ip().to_string()).unwrap_or_default(),
        "port": local.map(|a| a.port()).unwrap_or_default(),
        "headers": true,
        "max_payload": n.payload_bytes_max,
        "client_id": (ctx.id as u64) << 32 | u64::from(session.key),
        "client_ip": peer.map(|a| a.ip().to_string()).unwrap_or_default(),
    });
    format!("INFO {info}\r\n").into_bytes()
}

async fn ping_loop(ctx: Rc<ShardCtx>, session: Rc<Session>) {
    let config = ctx.config();
    let n = &config.nats;
    loop {
        glommio::timer::sleep(Duration::from_millis(n.ping_interval_ms)).await;
        if session.close_reason().is_some() {
            return;
        }
        if session.pings_outstanding.get() >= n.pings_outstanding_max {
            if ctx.log_limiter.allow() {
                tracing::info!(
                    shard = ctx.id,
                    client_id = &*session.client_id,
                    "closing stale NATS connection: PINGs unanswered"
                );
            }
            session.close(CloseReason::StaleConnection);
            return;
        }
        session
            .pings_outstanding
            .set(session.pings_outstanding.get() + 1);
        session.send_static(codec::PING);
    }
}

struct State {
    options: ConnectOptions,
    limits: NatsLimits,
}

type Outcome = Result<(), (CloseReason, Option<&'static str>)>;

async fn session_loop(
    ctx: &Rc<ShardCtx>,
    session: &Rc<Session>,
    stream: &Stream,
) -> (CloseReason, Option<&'static str>) {
    let config = ctx.config();
    let n = &config.nats;
    let mut state = State {
        options: ConnectOptions::default(),
        limits: NatsLimits {
            control_line_bytes_max: n.control_line_bytes_max,
            payload_bytes_max: n.payload_bytes_max,
        },
    };
    let mut rb = ReadBuffer {
        data: vec![0; READ_BUFFER_INITIAL],
        start: 0,
        end: 0,
    };
    let mut congested = Vec::new();
    let mut fairness = super::io::Fairness::default();
    // A PUB's payload can exceed the read buffer's usual ceiling.
    let read_max = ctx
        .limits()
        .read_buffer_bytes_max
        .max(n.payload_bytes_max + n.control_line_bytes_max + 4);
    loop {
        loop {
            let (op, used) = match codec::decode(rb.filled(), &state.limits) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    if ctx.log_limiter.allow() {
                        let peer = stream.borrow().peer_addr().ok();
                        tracing::info!(shard = ctx.id, ?peer, error = %e, "closing NATS connection: protocol error");
                    }
                    return (CloseReason::ProtocolError, Some(e.client_message()));
                }
            };
            let outcome = handle(ctx, session, &mut state, op, &mut congested).await;
            rb.start += used;
            if let Err(end) = outcome {
                return end;
            }
        }
        if let Err(r) = read_more(
            ctx,
            stream,
            &mut rb,
            session,
            &mut congested,
            &mut fairness,
            read_max,
            0,
        )
        .await
        {
            return (r, None);
        }
    }
}

fn ok(session: &Session, state: &State) {
    if state.options.verbose {
        session.send_static(codec::OK);
    }
}

async fn handle(
    ctx: &Rc<ShardCtx>,
    session: &Rc<Session>,
    state: &mut State,
    op: ClientOp<'_>,
    congested: &mut Vec<Rc<Session>>,
) -> Outcome {
    let topic_bytes_max = ctx.topic_limits.get().topic_bytes_max;
    match op {
        ClientOp::Connect(json) => {
            let options: ConnectOptions = serde_json::from_str(json).map_err(|e| {
                if ctx.log_limiter.allow() {
                    tracing::info!(shard = ctx.id, error = %e, "invalid NATS CONNECT");
                }
                (CloseReason::ProtocolError, Some("Protocol Error"))
            })?;
            tracing::debug!(shard = ctx.id, name = ?options.name, lang = ?options.lang, version = ?options.version, pedantic = options.pedantic, "NATS CONNECT");
            session.echo.set(options.echo);
            state.options = options;
            ok(session, state);
        }
        ClientOp::Pub {
            subject: subj,
            reply,
            headers,
            payload,
        } => {
            let internal = match subject::to_internal(subj, false, topic_bytes_max)
                .ok()
                .filter(|t| topic::validate_name(t, &ctx.topic_limits.get()).is_ok())
            {
                Some(t) => t,
                None => {
                    session.send_frame(codec::err_line("Invalid Publish Subject"));
                    return Ok(());
                }
            };
            // As nats-server: +OK acknowledges the PUB before any delivery.
            ok(session, state);
            let event = Event::new(&internal, payload, 0, false)
                .with_origin(ctx.origin(session))
                .with_meta(EventMeta {
                    reply: reply.map(Into::into),
                    headers: headers.map(Into::into),
                    ..Default::default()
                });
            let delivered = ctx.publish(event, congested).await;
            if !delivered && state.options.headers && state.options.no_responders {
                if let Some(reply) = reply {
                    no_responders(ctx, reply, congested).await;
                }
            }
        }
        ClientOp::Sub {
            subject: subj,
            queue,
            sid,
        } => {
            let filter = match subject::to_internal(subj, true, topic_bytes_max)
                .ok()
                .filter(|f| topic::validate_filter(f, &ctx.topic_limits.get()).is_ok())
            {
                Some(f) => f,
                None => {
                    session.send_frame(codec::err_line("Invalid Subject"));
                    return Ok(());
                }
            };
            if session.nats_subs.borrow().len() >= ctx.limits().subscriptions_per_session_max {
                session.send_frame(codec::err_line("Maximum Subscriptions Exceeded"));
                return Ok(());
            }
            ctx.nats_subscribe(session, sid, filter, queue);
            // A publish that follows, from any shard, sees this interest.
            ctx.barrier().await;
            ok(session, state);
        }
        ClientOp::Unsub { sid, max } => {
            ctx.nats_unsubscribe(session, sid, max);
            ok(session, state);
        }
        ClientOp::Ping => session.send_static(codec::PONG),
        ClientOp::Pong => session.pings_outstanding.set(0),
    }
    Ok(())
}

/// Answers a request that found no subscriber with a 503 status message on
/// its reply subject (the requester's inbox subscription).
async fn no_responders(ctx: &Rc<ShardCtx>, reply: &str, congested: &mut Vec<Rc<Session>>) {
    let Ok(topic) = subject::to_internal(reply, false, ctx.topic_limits.get().topic_bytes_max)
    else {
        return;
    };
    let event = Event::new(&topic, b"", 0, false).with_meta(EventMeta {
        reply: None,
        headers: Some(NO_RESPONDERS.into()),
        ..Default::default()
    });
    ctx.publish(event, congested).await;
}
