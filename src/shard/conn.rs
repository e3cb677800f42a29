//! One client connection: a reader task (this module's `serve`) that parses
//! MQTT packets from the socket and applies them to the shard, and a writer
//! task that drains the session's outbound queue into batched writes.
//!
//! Owns: the socket of one connection and its read buffer. The packet
//! formats live in `mqtt::codec`; routing lives in `ctx`. The read buffer
//! starts at 1 KiB (idle connections stay small) and grows on demand up to
//! `read_buffer_bytes_max`, or to the size of one packet if that is larger;
//! every complete packet of one read is handled before the next read, and
//! the writer gathers everything queued into one write syscall.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use smallvec::SmallVec;

use super::ctx::ShardCtx;
use super::io::{
    read_more, read_some, reset_on_close, write_all, write_loop, Read, ReadBuffer, Stream,
    READ_BUFFER_INITIAL,
};
use super::mailbox::{CloseReason, Mailbox as Session, Protocol};
use crate::event::Event;
use crate::mqtt::codec::{self, Connect, Packet};
use crate::shard::stats::Counters;
use crate::topic;

/// Size of the packet at the front of `buf`, from its fixed header (the
/// same in MQTT 3.1.1 and 5; the decoder has checked it against
/// `packet_bytes_max`).
pub(super) fn pending_len(buf: &[u8]) -> usize {
    match codec::fixed_header(buf) {
        Ok(Some((_, header, remaining))) => header + remaining,
        _ => 0,
    }
}

/// Serves one accepted connection to its end. The caller has counted it
/// against `connections_max`; this releases that count.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    super::io::configure(&stream, &ctx.config().socket);
    let stream = Rc::new(RefCell::new(stream));
    let mut rb = ReadBuffer::default();
    let reason = match connect(&ctx, &stream, &mut rb).await {
        // Boxed: the MQTT 5 path's state would otherwise enlarge every
        // connection's future, idle 3.1.1 ones included.
        Ok(Connected::V5) => Box::pin(super::conn5::run(&ctx, &stream, &mut rb)).await,
        Ok(Connected::V311(session, will)) => {
            let writer =
                glommio::spawn_local(write_loop(ctx.clone(), session.clone(), stream.clone()));
            let reason = session_loop(&ctx, &session, &stream, &mut rb).await;
            session.close(reason);
            writer.await;
            // A clean-session-0 session outlives its connection (unless
            // another connection took it over, which released it here).
            if session.persistent.get() && !session.detached.get() {
                ctx.park(&session);
            } else {
                ctx.unregister(&session);
            }
            if let Some(will) = will.filter(|_| reason.publishes_will()) {
                if will.retain {
                    ctx.retain(&will);
                }
                ctx.publish(will, &mut Vec::new()).await;
            }
            if reason == CloseReason::SlowConsumer {
                reset_on_close(&stream);
            }
            tracing::debug!(
                shard = ctx.id,
                ?peer,
                client_id = &*session.client_id,
                reason = reason.label(),
                "connection closed"
            );
            reason
        }
        Err(reason) => reason,
    };
    match reason {
        CloseReason::ProtocolError => Counters::add(&ctx.counters.protocol_errors, 1),
        CloseReason::KeepAliveTimeout => Counters::add(&ctx.counters.keep_alive_timeouts, 1),
        _ => {}
    }
    ctx.global_connections()
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    Counters::sub(&ctx.counters.connections, 1);
}

/// One line per protocol-error close: who (peer, client id once CONNECT
/// named one) and why, in words.
fn log_protocol_error(
    ctx: &ShardCtx,
    stream: &Stream,
    client_id: Option<&str>,
    what: &dyn std::fmt::Display,
) {
    if ctx.log_limiter.allow() {
        let peer = stream.borrow().peer_addr().ok();
        tracing::info!(shard = ctx.id, ?peer, client_id, error = %what, "closing connection: protocol error");
    }
}

/// Waits for CONNECT and answers it. Returns the registered session and its
/// will, or the reason the connection ends.
enum Connected {
    V311(Rc<Session>, Option<Event>),
    /// A whole MQTT 5 CONNECT is at the front of the read buffer.
    V5,
}

async fn connect(
    ctx: &Rc<ShardCtx>,
    stream: &Stream,
    rb: &mut ReadBuffer,
) -> Result<Connected, CloseReason> {
    let limits = ctx.limits();
    let _ = stream
        .borrow()
        .set_read_timeout(Some(Duration::from_millis(limits.connect_timeout_ms)));
    rb.data = vec![0; READ_BUFFER_INITIAL];
    loop {
        // The protocol level picks the codec (MQTT 5 §3.1.2.2).
        if let Ok(Some(crate::mqtt::v5::PROTOCOL_LEVEL_5)) =
            crate::mqtt::v5::peek_connect_level(rb.filled())
        {
            let size = match codec::fixed_header(rb.filled()) {
                Ok(Some((_, header, remaining))) => header + remaining,
                _ => usize::MAX,
            };
            // Refused from the header, before the body is buffered.
            if size > ctx.limits().packet_bytes_max {
                // Boxed: rare, and its state would weigh on every
                // connection's future.
                Box::pin(super::io::last_words(
                    stream,
                    &[0x20, 3, 0, crate::mqtt::v5::reason::PACKET_TOO_LARGE, 0],
                ))
                .await;
                return Err(CloseReason::ProtocolError);
            }
            if rb.filled().len() >= size {
                return Ok(Connected::V5);
            }
        } else {
            match codec::decode(rb.filled(), &ctx.decode_limits.get()) {
                Ok(Some((Packet::Connect(c), used))) => {
                    let (session, will, keep_alive_s) = accept_connect(ctx, stream, &c).await?;
                    rb.start += used;
                    let timeout = (keep_alive_s > 0)
                        .then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500));
                    let _ = stream.borrow().set_read_timeout(timeout);
                    return Ok(Connected::V311(session, will));
                }
                Ok(Some((other, _))) => {
                    log_protocol_error(
                        ctx,
                        stream,
                        None,
                        &format_args!("first packet is not CONNECT: {other:?}"),
                    );
                    return Err(CloseReason::ProtocolError);
                }
                Ok(None) => {}
                Err(e) => {
                    log_protocol_error(ctx, stream, None, &e);
                    return Err(CloseReason::ProtocolError);
                }
            }
        }
        if ctx.stopping.get() {
            return Err(CloseReason::ServerShutdown);
        }
        let spare = rb.spare(limits.read_buffer_bytes_max, pending_len(rb.filled()));
        match read_some(stream, spare, None).await {
            Read::Data(n) => rb.end += n,
            Read::Closed(CloseReason::KeepAliveTimeout) => return Err(CloseReason::ConnectTimeout),
            Read::Closed(r) => return Err(r),
        }
    }
}

/// CONNACK return codes of MQTT 3.1.1 §3.2.2.3.
const CONNACK_BAD_PROTOCOL: u8 = 0x01;
const CONNACK_BAD_CLIENT_ID: u8 = 0x02;

async fn accept_connect(
    ctx: &Rc<ShardCtx>,
    stream: &Stream,
    c: &Connect<'_>,
) -> Result<(Rc<Session>, Option<Event>, u16), CloseReason> {
    let limits = ctx.limits();
    let refuse = |code: u8, why: &'static str| async move {
        // The peer first: the address is gone once the socket closes.
        let peer = stream.borrow().peer_addr().ok();
        let _ = write_all(stream, &[0x20, 2, 0, code]).await;
        if ctx.log_limiter.allow() {
            tracing::info!(
                shard = ctx.id,
                ?peer,
                client_id = c.client_id,
                code,
                reason = why,
                "CONNECT refused"
            );
        }
        Err(CloseReason::ConnectRefused)
    };
    // MQTT-3.1.2-2: unsupported level → CONNACK 0x01. MQTT 3.1 (`MQIsdp`,
    // level 3) is 3.1.1's session rules with a shorter client id; level 5
    // never reaches here (conn5).
    let v31 =
        match (c.protocol_name, c.level) {
            (codec::PROTOCOL_NAME, codec::PROTOCOL_LEVEL_311) => false,
            (codec::PROTOCOL_NAME_31, codec::PROTOCOL_LEVEL_31) => true,
            _ => return refuse(
                CONNACK_BAD_PROTOCOL,
                "unsupported protocol level for its name (MQTT 4, MQIsdp 3 and MQTT 5 are served)",
            )
            .await,
        };
    let id_max = if v31 {
        limits
            .client_id_bytes_max
            .min(codec::CLIENT_ID_BYTES_MAX_31)
    } else {
        limits.client_id_bytes_max
    };
    let client_id: Box<str> = if c.client_id.is_empty() {
        // MQTT 3.1 §3.1 wants 1 to 23 characters (mosquitto refuses an
        // empty one too).
        if v31 {
            return refuse(CONNACK_BAD_CLIENT_ID, "empty client id (MQTT 3.1)").await;
        }
        // MQTT-3.1.3-8: an empty id needs clean session.
        if !c.clean_session {
            return refuse(
                CONNACK_BAD_CLIENT_ID,
                "empty client id without clean session",
            )
            .await;
        }
        ctx.assign_client_id()
    } else if c.client_id.len() > id_max {
        return refuse(
            CONNACK_BAD_CLIENT_ID,
            if v31 {
                "client id longer than MQTT 3.1's 23 bytes"
            } else {
                "client id longer than limits.client_id_bytes_max"
            },
        )
        .await;
    } else {
        c.client_id.into()
    };
    let will = match &c.will {
        Some(w) => {
            if let Err(e) = topic::validate_name(w.topic, &ctx.topic_limits.get()) {
                log_protocol_error(
                    ctx,
                    stream,
                    Some(c.client_id),
                    &format_args!("will topic: {e}"),
                );
                return Err(CloseReason::ProtocolError);
            }
            Some(Event::new(w.topic, w.payload, w.qos, w.retain))
        }
        None => None,
    };
    let session = ctx.register(Protocol::Mqtt, client_id);
    session.peer.set(stream.borrow().peer_addr().ok());
    session.persistent.set(!c.clean_session);
    // Ends any other connection of this client id, on any shard, and brings
    // its state along for clean session 0.
    let state = ctx.establish(&session, !c.clean_session).await;
    if let Some(reason) = session.close_reason() {
        // Taken over by a newer connection during the handshake.
        ctx.unregister(&session);
        return Err(reason);
    }
    // MQTT-3.2.2-1/2: session present only for a resumed session.
    let present = state.is_some();
    let backlog = match state {
        Some(state) => Some(ctx.install(&session, state).await),
        None => None,
    };
    session.send_short(&[0x20, 2, u8::from(present), 0]);
    if let Some(backlog) = backlog {
        session.restore_backlog(backlog);
    }
    Ok((session, will, c.keep_alive_s))
}

async fn session_loop(
    ctx: &Rc<ShardCtx>,
    session: &Rc<Session>,
    stream: &Stream,
    rb: &mut ReadBuffer,
) -> CloseReason {
    let limits = ctx.limits();
    let mut congested: Vec<Rc<Session>> = Vec::new();
    let mut fairness = super::io::Fairness::default();
    // QoS 2 packet ids received and not yet released (exactly-once inbound).
    let mut awaiting_release: SmallVec<[u16; 4]> = SmallVec::new();
    loop {
        loop {
            let (packet, used) = match codec::decode(rb.filled(), &ctx.decode_limits.get()) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    log_protocol_error(ctx, stream, Some(&session.client_id), &e);
                    return CloseReason::ProtocolError;
                }
            };
            let outcome = handle(
                ctx,
                session,
                stream,
                packet,
                &mut congested,
                &mut awaiting_release,
            )
            .await;
            rb.start += used;
            if let Err(reason) = outcome {
                return reason;
            }
        }
        let read_max = limits.read_buffer_bytes_max;
        let pending = pending_len(rb.filled());
        if let Err(r) = read_more(
            ctx,
            stream,
            rb,
            session,
            &mut congested,
            &mut fairness,
            read_max,
            pending,
        )
        .await
        {
            return r;
        }
    }
}

async fn handle(
    ctx: &Rc<ShardCtx>,
    session: &Rc<Session>,
    stream: &Stream,
    packet: Packet<'_>,
    congested: &mut Vec<Rc<Session>>,
    awaiting_release: &mut SmallVec<[u16; 4]>,
) -> Result<(), CloseReason> {
    let limits = ctx.limits();
    match packet {
        Packet::Publish(p) => {
            if let Err(e) = topic::validate_name(p.topic, &ctx.topic_limits.get()) {
                log_protocol_error(
                    ctx,
                    stream,
                    Some(&session.client_id),
                    &format_args!("PUBLISH topic {:?}: {e}", p.topic),
                );
                return Err(CloseReason::ProtocolError);
            }
            let id = p.packet_id.to_be_bytes();
            let event = |qos| {
                let e =
                    Event::new(p.topic, p.payload, qos, p.retain).with_origin(ctx.origin(session));
                if p.retain {
                    ctx.retain(&e);
                }
                e
            };
            match p.qos {
                0 => {
                    ctx.publish(event(0), congested).await;
                }
                1 => {
                    ctx.publish(event(1), congested).await;
                    if p.retain {
                        // Acknowledged means stored on every shard.
                        ctx.barrier().await;
                    }
                    session.send_short(&[0x40, 2, id[0], id[1]]);
                }
                _ => {
                    if !awaiting_release.contains(&p.packet_id) {
                        if awaiting_release.len() >= limits.inflight_max {
                            log_protocol_error(
                                ctx,
                                stream,
                                Some(&session.client_id),
                                &"too many unreleased QoS 2 publishes",
                            );
                            return Err(CloseReason::ProtocolError);
                        }
                        awaiting_release.push(p.packet_id);
                        ctx.publish(event(2), congested).await;
                    }
                    session.send_short(&[0x50, 2, id[0], id[1]]);
                }
            }
        }
        Packet::PubAck(id) => {
            if !session.acknowledge(id) {
                tracing::debug!(shard = ctx.id, id, "PUBACK for a packet id not in flight");
            }
        }
        Packet::PubRel(id) => {
            awaiting_release.retain(|x| *x != id);
            let id = id.to_be_bytes();
            session.send_short(&[0x70, 2, id[0], id[1]]);
        }
        Packet::PubRec(id) => {
            if !session.received(id) {
                tracing::debug!(shard = ctx.id, id, "PUBREC for no QoS 2 delivery in flight");
            }
        }
        Packet::PubComp(id) => {
            if !session.acknowledge(id) {
                tracing::debug!(shard = ctx.id, id, "PUBCOMP for no released QoS 2 delivery");
            }
        }
        Packet::Subscribe { packet_id, filters } => {
            let mut frame = Vec::with_capacity(4 + filters.len());
            let mut codes: SmallVec<[u8; 8]> = SmallVec::new();
            let mut granted_filters: SmallVec<[(&str, u8); 8]> = SmallVec::new();
            for (filter, qos) in filters {
                if let Err(e) = topic::validate_subscription(filter, &ctx.topic_limits.get()) {
                    tracing::debug!(shard = ctx.id, filter, error = %e, "subscription refused");
                    codes.push(0x80);
                    continue;
                }
                let subs = session.subscriptions.borrow();
                let full = subs.len() >= limits.subscriptions_per_session_max
                    && !subs.contains_key(filter);
                drop(subs);
                if full {
                    codes.push(0x80);
                    continue;
                }
                let granted = qos.min(2);
                ctx.subscribe(session, filter, granted);
                codes.push(granted);
                granted_filters.push((filter, granted));
            }
            ctx.barrier().await;
            codec::encode(
                &Packet::SubAck {
                    packet_id,
                    codes: codes.to_vec(),
                },
                &mut frame,
            );
            session.send_frame(frame);
            // MQTT-3.3.1-6: the retained messages matching each new
            // subscription follow the SUBACK, with the retain flag.
            for (filter, granted) in granted_filters {
                ctx.send_retained(session, filter, granted);
            }
        }
        Packet::Unsubscribe { packet_id, filters } => {
            for filter in filters {
                ctx.unsubscribe(session, filter);
            }
            let id = packet_id.to_be_bytes();
            session.send_short(&[0xb0, 2, id[0], id[1]]);
        }
        Packet::PingReq => session.send_short(&[0xd0, 0]),
        Packet::Disconnect => return Err(CloseReason::ClientDisconnect),
        Packet::Connect(_) => {
            log_protocol_error(ctx, stream, Some(&session.client_id), &"second CONNECT");
            return Err(CloseReason::ProtocolError);
        }
        other @ (Packet::ConnAck { .. }
        | Packet::SubAck { .. }
        | Packet::UnsubAck(_)
        | Packet::PingResp) => {
            log_protocol_error(
                ctx,
                stream,
                Some(&session.client_id),
                &format_args!("server-only packet from a client: {other:?}"),
            );
            return Err(CloseReason::ProtocolError);
        }
    }
    Ok(())
}
