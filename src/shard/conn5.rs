//! One MQTT 5.0 connection (same listener as 3.1.1; the CONNECT's protocol
//! level picks this path): properties, reason codes on every ack and on
//! server DISCONNECT, topic aliases from the client, receive maximum and
//! maximum packet size both ways, subscription options, session expiry.
//!
//! Owns: the MQTT 5 session rules of one connection. The wire format is
//! `mqtt::v5`; routing, sessions and retained messages are the shard's
//! (`ctx`), shared with MQTT 3.1.1. Not yet: enhanced authentication
//! (AUTH).

use std::rc::Rc;
use std::time::Duration;

use smallvec::SmallVec;

use super::ctx::ShardCtx;
use super::io::{last_words, read_more, write_loop, ReadBuffer, Stream};
use super::mailbox::{CloseReason, Mailbox as Session, Protocol};
use crate::event::{now_ns, Event, EventMeta};
use crate::mqtt::v5::{self, reason, Packet, Properties};
use crate::topic;
use crate::topic::trie::{NO_LOCAL, RETAIN_AS_PUBLISHED};

/// Why a v5 connection ends: the close reason and the DISCONNECT reason
/// code to send first (None: close without one).
type End = (CloseReason, Option<u8>);

fn v5_limits(ctx: &ShardCtx) -> v5::DecodeLimits {
    let l = ctx.limits();
    v5::DecodeLimits {
        packet_bytes_max: l.packet_bytes_max,
        properties_bytes_max: l.packet_bytes_max,
        filters_per_packet_max: l.filters_per_packet_max,
    }
}

fn encode(session: &Session, packet: &Packet<'_>) {
    let mut frame = Vec::new();
    if v5::encode(packet, &mut frame).is_ok() {
        session.send_frame(frame);
    }
}

/// Runs the connection whose first bytes (in `rb`) are an MQTT 5 CONNECT.
pub async fn run(ctx: &Rc<ShardCtx>, stream: &Rc<Stream>, rb: &mut ReadBuffer) -> CloseReason {
    let limits = v5_limits(ctx);
    let (packet, used) = match v5::decode(rb.filled(), &limits) {
        Ok(Some(p)) => p,
        Ok(None) => return CloseReason::ProtocolError, // caller ensures a whole packet
        Err(e) => {
            refuse(ctx, stream, None, e.reason_code(), &e).await;
            return CloseReason::ProtocolError;
        }
    };
    let Packet::Connect(c) = packet else {
        return CloseReason::ProtocolError;
    };
    let config = ctx.config();
    // Client identifier (MQTT-3.1.3-6/7): empty means "assign one".
    let assigned = c.client_id.is_empty();
    if c.client_id.len() > config.limits.client_id_bytes_max {
        refuse(
            ctx,
            stream,
            Some(c.client_id),
            reason::CLIENT_IDENTIFIER_NOT_VALID,
            &format_args!(
                "client id of {} bytes, over limits.client_id_bytes_max ({})",
                c.client_id.len(),
                config.limits.client_id_bytes_max
            ),
        )
        .await;
        return CloseReason::ConnectRefused;
    }
    let client_id: Box<str> = if assigned {
        ctx.assign_client_id()
    } else {
        c.client_id.into()
    };
    let will = match c.will.as_deref() {
        Some(w) => {
            if topic::validate_name(w.topic, &ctx.topic_limits.get()).is_err() {
                refuse(
                    ctx,
                    stream,
                    Some(c.client_id),
                    reason::TOPIC_NAME_INVALID,
                    &format_args!("will topic {:?} is not a valid topic name", w.topic),
                )
                .await;
                return CloseReason::ConnectRefused;
            }
            Some(event_of(w.topic, w.payload, w.qos, w.retain, &w.properties))
        }
        None => None,
    };
    let will_delay_s = c
        .will
        .as_deref()
        .and_then(|w| w.properties.will_delay_interval)
        .unwrap_or(0);
    let expiry_s = c.properties.session_expiry_interval.unwrap_or(0);
    // MQTT-3.2.2-21: the Server Keep Alive, when set, replaces the client's.
    let keep_alive_s = match config.mqtt.server_keep_alive_s {
        0 => c.keep_alive_s,
        imposed => imposed,
    };
    let wants_response_info = c.properties.request_response_information == Some(true);
    let clean_start = c.clean_start;
    let session = ctx.register(Protocol::Mqtt, client_id);
    session.set_mqtt5(
        c.properties.receive_maximum,
        c.properties.maximum_packet_size,
        c.properties.topic_alias_maximum.unwrap_or(0),
    );
    session.peer.set(stream.borrow().peer_addr().ok());
    session.persistent.set(expiry_s > 0);
    if expiry_s > 0 {
        session.expiry_s.set(Some(expiry_s));
    }
    rb.start += used;
    // Clean Start 0 resumes a kept session (MQTT-3.1.2-5).
    let state = ctx.establish(&session, !clean_start).await;
    if let Some(reason) = session.close_reason() {
        ctx.unregister(&session);
        return reason;
    }
    let present = state.is_some();
    let backlog = match state {
        Some(state) => Some(ctx.install(&session, state).await),
        None => None,
    };
    let server_alias_max = config.mqtt.topic_alias_maximum;
    let response_info = wants_response_info.then(|| format!("weft/response/{}", session.client_id));
    let props = Properties {
        receive_maximum: Some(config.limits.inflight_max.min(65_535) as u16),
        topic_alias_maximum: Some(server_alias_max),
        maximum_packet_size: Some(config.limits.packet_bytes_max.min(u32::MAX as usize) as u32),
        retain_available: Some(true),
        wildcard_subscription_available: Some(true),
        shared_subscription_available: Some(true),
        subscription_identifier_available: Some(true),
        assigned_client_identifier: assigned.then_some(&*session.client_id),
        server_keep_alive: (config.mqtt.server_keep_alive_s > 0).then_some(keep_alive_s),
        // Request/response (MQTT 5 §4.10): a base for the client's response
        // topics, private to its client id.
        response_information: response_info.as_deref(),
        session_expiry_interval: (expiry_s > 0).then(|| {
            expiry_s.min(
                config
                    .limits
                    .offline_session_expiry_s
                    .min(u64::from(u32::MAX)) as u32,
            )
        }),
        ..Properties::default()
    };
    encode(
        &session,
        &Packet::ConnAck(v5::ConnAck {
            session_present: present,
            reason_code: reason::SUCCESS,
            properties: props,
        }),
    );
    if let Some(backlog) = backlog {
        session.restore_backlog(backlog);
    }
    let timeout = (keep_alive_s > 0).then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500));
    let _ = stream.borrow().set_read_timeout(timeout);
    let mut will = will;

    let writer = glommio::spawn_local(write_loop(ctx.clone(), session.clone(), stream.clone()));
    let mut state = Connection {
        aliases: vec![None; usize::from(server_alias_max)],
        awaiting_release: SmallVec::new(),
        will_wanted: true,
    };
    let (reason, code) = session_loop(ctx, &session, stream, rb, &mut state).await;
    session.close(reason);
    let between_packets = writer.await;
    // Server-initiated DISCONNECT with its reason code (MQTT-3.14.2), best
    // effort and bounded: the client may not be reading.
    let code = code.or(match reason {
        CloseReason::KeepAliveTimeout => Some(reason::KEEP_ALIVE_TIMEOUT),
        CloseReason::TakenOver => Some(reason::SESSION_TAKEN_OVER),
        CloseReason::ServerShutdown => Some(reason::SERVER_SHUTTING_DOWN),
        CloseReason::SlowConsumer => Some(reason::QUOTA_EXCEEDED),
        _ => None,
    });
    if let (Some(code), true) = (code, between_packets) {
        let mut frame = Vec::new();
        if v5::encode(&Packet::Disconnect(v5::ReasonOnly::new(code)), &mut frame).is_ok() {
            last_words(stream, &frame).await;
        }
    }
    let kept = if session.persistent.get() && !session.detached.get() {
        Some(ctx.park(&session))
    } else {
        ctx.unregister(&session);
        None
    };
    // DISCONNECT 0x04 keeps the will (MQTT-3.14.4-3); any other DISCONNECT
    // discards it; abnormal ends publish it.
    let publish_will = match reason {
        CloseReason::ClientDisconnect => state.will_wanted,
        other => other.publishes_will(),
    };
    let will = will.take().filter(|_| publish_will);
    if let (Some(will), Some(kept), true) = (&will, &kept, will_delay_s > 0) {
        // Will Delay (MQTT-3.1.3-9): held while the session lives; a
        // reconnection before the delay cancels it, the session's end
        // (expiry) publishes it early.
        *kept.pending_will.borrow_mut() = Some(will.clone());
        let (ctx, kept) = (ctx.clone(), kept.clone());
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_secs(u64::from(will_delay_s))).await;
            let due = kept.pending_will.borrow_mut().take();
            if let Some(will) = due.filter(|_| !kept.detached.get()) {
                if will.retain {
                    ctx.retain(&will);
                }
                ctx.publish(will, &mut Vec::new()).await;
            }
        })
        .detach();
        return reason;
    }
    if let Some(will) = will {
        if will.retain {
            ctx.retain(&will);
        }
        ctx.publish(will, &mut Vec::new()).await;
    }
    reason
}

struct Connection {
    /// Topic aliases the client set (index = alias - 1).
    aliases: Vec<Option<Box<str>>>,
    awaiting_release: SmallVec<[u16; 4]>,
    /// False after DISCONNECT 0x00 (no will); DISCONNECT 0x04 keeps it.
    will_wanted: bool,
}

/// CONNACK with an error reason code, then close (MQTT-3.2.2-7).
async fn refuse(
    ctx: &ShardCtx,
    stream: &Stream,
    client_id: Option<&str>,
    code: u8,
    why: &dyn std::fmt::Display,
) {
    // The peer first: the address is gone once the last words close.
    let peer = stream.borrow().peer_addr().ok();
    let mut frame = Vec::new();
    let ack = Packet::ConnAck(v5::ConnAck {
        session_present: false,
        reason_code: code,
        properties: Properties::default(),
    });
    if v5::encode(&ack, &mut frame).is_ok() {
        last_words(stream, &frame).await;
    }
    if ctx.log_limiter.allow() {
        let words = reason::name(code).unwrap_or("?");
        tracing::info!(shard = ctx.id, ?peer, client_id, code = %format_args!("{code:#04x} {words}"), reason = %why, "MQTT 5 CONNECT refused");
    }
}

/// One line per connection closed for a protocol error: who, the
/// DISCONNECT reason code and what broke the rules, in words.
fn log_protocol_close(
    ctx: &ShardCtx,
    stream: &Stream,
    session: &Session,
    code: u8,
    why: &dyn std::fmt::Display,
) {
    if ctx.log_limiter.allow() {
        let peer = stream.borrow().peer_addr().ok();
        let words = reason::name(code).unwrap_or("?");
        tracing::info!(
            shard = ctx.id,
            ?peer,
            client_id = &*session.client_id,
            code = %format_args!("{code:#04x} {words}"),
            reason = %why,
            "closing MQTT 5 connection: protocol error"
        );
    }
}

/// The event of a v5 PUBLISH or Will, with its properties as metadata.
fn event_of(topic: &str, payload: &[u8], qos: u8, retain: bool, p: &Properties<'_>) -> Event {
    let meta = EventMeta {
        response_topic: p.response_topic.map(Into::into),
        correlation_data: p.correlation_data.map(Into::into),
        content_type: p.content_type.map(Into::into),
        payload_format: p.payload_format_indicator,
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        expires_ns: p
            .message_expiry_interval
            .map(|s| now_ns() + u64::from(s) * 1_000_000_000),
        ..Default::default()
    };
    Event::new(topic, payload, qos, retain).with_meta(meta)
}

async fn session_loop(
    ctx: &Rc<ShardCtx>,
    session: &Rc<Session>,
    stream: &Stream,
    rb: &mut ReadBuffer,
    conn: &mut Connection,
) -> End {
    let limits = v5_limits(ctx);
    let read_max = ctx.limits().read_buffer_bytes_max;
    let mut congested = Vec::new();
    let mut fairness = super::io::Fairness::default();
    loop {
        loop {
            let (packet, used) = match v5::decode(rb.filled(), &limits) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    log_protocol_close(ctx, stream, session, e.reason_code(), &e);
                    return (CloseReason::ProtocolError, Some(e.reason_code()));
                }
            };
            let kind = packet.packet_type();
            let outcome = handle(ctx, session, packet, conn, &mut congested).await;
            rb.start += used;
            if let Err(end) = outcome {
                if let (CloseReason::ProtocolError, Some(code)) = end {
                    log_protocol_close(
                        ctx,
                        stream,
                        session,
                        code,
                        &format_args!("on a {kind:?} packet"),
                    );
                }
                return end;
            }
        }
        let pending = super::conn::pending_len(rb.filled());
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
            return (r, None);
        }
    }
}

fn protocol_error(code: u8) -> Result<(), End> {
    Err((CloseReason::ProtocolError, Some(code)))
}

async fn handle(
    ctx: &Rc<ShardCtx>,
    session: &Rc<Session>,
    packet: Packet<'_>,
    conn: &mut Connection,
    congested: &mut Vec<Rc<Session>>,
) -> Result<(), End> {
    let limits = ctx.limits();
    match packet {
        Packet::Publish(p) => {
            // Topic alias (MQTT-3.3.2-7..12): set or use.
            let topic: Box<str> = match p.properties.topic_alias {
                Some(alias) => {
                    let Some(slot) = conn.aliases.get_mut(usize::from(alias) - 1) else {
                        return protocol_error(reason::TOPIC_ALIAS_INVALID);
                    };
                    if p.topic.is_empty() {
                        match slot {
                            Some(t) => t.clone(),
                            None => return protocol_error(reason::PROTOCOL_ERROR),
                        }
                    } else {
                        *slot = Some(p.topic.into());
                        p.topic.into()
                    }
                }
                None => p.topic.into(),
            };
            if topic::validate_name(&topic, &ctx.topic_limits.get()).is_err() {
                return protocol_error(reason::TOPIC_NAME_INVALID);
            }
            if p.properties.payload_format_indicator == Some(1)
                && std::str::from_utf8(p.payload).is_err()
            {
                if p.qos == 0 {
                    return protocol_error(reason::PAYLOAD_FORMAT_INVALID);
                }
                ack(session, p.qos, p.packet_id, reason::PAYLOAD_FORMAT_INVALID);
                return Ok(());
            }
            if p.qos == 2 && conn.awaiting_release.contains(&p.packet_id) {
                ack(session, 2, p.packet_id, reason::SUCCESS); // resent: already routed
                return Ok(());
            }
            if p.qos == 2 {
                if conn.awaiting_release.len() >= limits.inflight_max {
                    return protocol_error(reason::RECEIVE_MAXIMUM_EXCEEDED);
                }
                conn.awaiting_release.push(p.packet_id);
            }
            let event = event_of(&topic, p.payload, p.qos, p.retain, &p.properties)
                .with_origin(ctx.origin(session));
            if p.retain {
                ctx.retain(&event);
            }
            let matched = ctx.publish(event, congested).await;
            if p.qos > 0 {
                if p.qos == 1 && p.retain {
                    ctx.barrier().await;
                }
                let code = if matched {
                    reason::SUCCESS
                } else {
                    reason::NO_MATCHING_SUBSCRIBERS
                };
                ack(session, p.qos, p.packet_id, code);
            }
        }
        Packet::PubAck(r) => {
            session.acknowledge(r.packet_id);
        }
        Packet::PubRel(r) => {
            let known = conn.awaiting_release.contains(&r.packet_id);
            conn.awaiting_release.retain(|x| *x != r.packet_id);
            let code = if known {
                reason::SUCCESS
            } else {
                reason::PACKET_IDENTIFIER_NOT_FOUND
            };
            encode(
                session,
                &Packet::PubComp(v5::PubResp {
                    packet_id: r.packet_id,
                    reason_code: code,
                    properties: Properties::default(),
                }),
            );
        }
        Packet::PubRec(r) => {
            if r.reason_code >= 0x80 {
                // The client refused it: the delivery ends here.
                session.forget(r.packet_id);
            } else if !session.received(r.packet_id) {
                encode(
                    session,
                    &Packet::PubRel(v5::PubResp {
                        packet_id: r.packet_id,
                        reason_code: reason::PACKET_IDENTIFIER_NOT_FOUND,
                        properties: Properties::default(),
                    }),
                );
            }
        }
        Packet::PubComp(r) => {
            session.acknowledge(r.packet_id);
        }
        Packet::Subscribe(s) => {
            let identifier = s.properties.subscription_identifiers.first().copied();
            let mut codes: SmallVec<[u8; 8]> = SmallVec::new();
            let mut retained: SmallVec<[(&str, u8); 8]> = SmallVec::new();
            for (filter, opts) in &s.filters {
                if topic::validate_subscription(filter, &ctx.topic_limits.get()).is_err() {
                    codes.push(reason::TOPIC_FILTER_INVALID);
                    continue;
                }
                let existed = session.subscriptions.borrow().contains_key(*filter);
                if !existed
                    && session.subscriptions.borrow().len() >= limits.subscriptions_per_session_max
                {
                    codes.push(reason::QUOTA_EXCEEDED);
                    continue;
                }
                let granted = opts.qos;
                let flags = granted
                    | if opts.no_local { NO_LOCAL } else { 0 }
                    | if opts.retain_as_published {
                        RETAIN_AS_PUBLISHED
                    } else {
                        0
                    };
                ctx.subscribe(session, filter, flags);
                // MQTT-3.8.4-... the identifier replaces the previous one.
                match identifier {
                    Some(id) => {
                        session
                            .sub_identifiers
                            .borrow_mut()
                            .insert((*filter).into(), id);
                    }
                    None => {
                        session.sub_identifiers.borrow_mut().remove(*filter);
                    }
                }
                codes.push(granted);
                let send = match opts.retain_handling {
                    v5::RetainHandling::SendAtSubscribe => true,
                    v5::RetainHandling::SendIfNew => !existed,
                    v5::RetainHandling::DoNotSend => false,
                };
                if send {
                    retained.push((filter, granted));
                }
            }
            ctx.barrier().await;
            encode(
                session,
                &Packet::SubAck(v5::SubAck {
                    packet_id: s.packet_id,
                    properties: Properties::default(),
                    reason_codes: &codes,
                }),
            );
            for (filter, granted) in retained {
                ctx.send_retained(session, filter, granted);
            }
        }
        Packet::Unsubscribe(u) => {
            let codes: SmallVec<[u8; 8]> = u
                .filters
                .iter()
                .map(|f| {
                    if ctx.unsubscribe(session, f) {
                        reason::SUCCESS
                    } else {
                        reason::NO_SUBSCRIPTION_EXISTED
                    }
                })
                .collect();
            encode(
                session,
                &Packet::UnsubAck(v5::SubAck {
                    packet_id: u.packet_id,
                    properties: Properties::default(),
                    reason_codes: &codes,
                }),
            );
        }
        Packet::PingReq => session.send_short(&[0xd0, 0]),
        Packet::Disconnect(d) => {
            // 0x04: disconnect with will; anything else discards it.
            conn.will_wanted = d.reason_code == reason::DISCONNECT_WITH_WILL_MESSAGE;
            if let Some(0) = d.properties.session_expiry_interval {
                session.persistent.set(false);
            } else if let Some(s) = d.properties.session_expiry_interval {
                if !session.persistent.get() && s > 0 {
                    // MQTT-3.14.2-2: cannot go from 0 to non-zero.
                    return protocol_error(reason::PROTOCOL_ERROR);
                }
            }
            return Err((CloseReason::ClientDisconnect, None));
        }
        Packet::Connect(_) => return protocol_error(reason::PROTOCOL_ERROR),
        // Enhanced authentication is not offered (CONNACK carries no
        // method), so any AUTH is out of place (MQTT-4.12.0-1).
        Packet::Auth(_) => return protocol_error(reason::PROTOCOL_ERROR),
        _ => return protocol_error(reason::PROTOCOL_ERROR),
    }
    Ok(())
}

/// PUBACK (QoS 1) or PUBREC (QoS 2) with a reason code; short form for
/// plain success.
fn ack(session: &Session, qos: u8, packet_id: u16, code: u8) {
    let resp = v5::PubResp {
        packet_id,
        reason_code: code,
        properties: Properties::default(),
    };
    encode(
        session,
        &if qos == 1 {
            Packet::PubAck(resp)
        } else {
            Packet::PubRec(resp)
        },
    );
}
