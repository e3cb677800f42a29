//! After CONNECT: every packet a client may send, in either version, and
//! the answers to the requests they make. The rules are written once; a
//! refusal is a reason code in MQTT 5 and a close (or 0x80) in 3.1.1.

use std::time::Instant;

use smallvec::SmallVec;

use super::connect::event_v5;
use super::frames::{self, Ack};
use super::{
    Actions, CloseReason, MqttSession, Phase, PublishAck, Request, SubscribeFilter,
    SubscribeOutcome, SubscribeRequest, UnsubscribeRequest, Version,
};
use crate::event::Event;
use crate::mqtt::codec::Packet as P3;
use crate::mqtt::v5::{self, reason, Packet as P5, RetainHandling};
use crate::security::{Denied, Subscription};
use crate::topic::trie::{CHECKED, NO_LOCAL, RETAIN_AS_PUBLISHED};
use crate::topic::{self, TopicError};

/// 3.1.1 SUBACK failure (§3.9.3).
const SUBACK_FAILURE: u8 = 0x80;

/// A filter the spec forbids outright, not merely one weft refuses:
/// MQTT-4.7.3-1, every topic filter is at least one character (also as
/// the filter of a shared subscription). In 3.1.1 that is a protocol
/// violation, which closes the connection (§4.8).
fn empty_filter(filter: &str) -> bool {
    filter.is_empty()
        || filter
            .strip_prefix("$share/")
            .is_some_and(|r| r.ends_with('/'))
}

impl MqttSession {
    /// A protocol violation: MQTT 5 says why (DISCONNECT `code`), 3.1.1
    /// closes.
    pub(super) fn violation(
        &mut self,
        code: u8,
        why: impl std::fmt::Display,
        out: &mut Actions<Request>,
    ) {
        self.problem(false, Some(code), why);
        self.end(CloseReason::ProtocolError, Some(code), out);
    }

    /// One decoded MQTT 3.1 / 3.1.1 packet after CONNECT.
    #[inline]
    pub fn handle_v311(&mut self, packet: P3<'_>, now: Instant, out: &mut Actions<Request>) {
        if self.phase != Phase::Connected {
            return;
        }
        self.touch(now);
        match packet {
            P3::Publish(p) => {
                if let Err(e) = topic::validate_name(p.topic, &self.settings.topic) {
                    return self.violation(
                        reason::TOPIC_NAME_INVALID,
                        format_args!("PUBLISH topic {:?}: {e}", p.topic),
                        out,
                    );
                }
                self.publish(p.topic, p.qos, p.packet_id, p.retain, out, |t| {
                    Event::new(t, p.payload, p.qos, p.retain)
                });
            }
            P3::PubAck(id) | P3::PubComp(id) => out.request(Request::Acknowledge(id)),
            P3::PubRec(id) => out.request(Request::Received(id)),
            P3::PubRel(id) => self.release(id, out),
            P3::Subscribe { packet_id, filters } => {
                let mut request = SubscribeRequest {
                    packet_id,
                    identifier: None,
                    filters: SmallVec::new(),
                };
                for (filter, qos) in filters {
                    let granted = qos.min(2);
                    if !self.subscribe_filter(
                        &mut request,
                        filter,
                        granted,
                        granted,
                        RetainHandling::SendAtSubscribe,
                    ) {
                        return self.violation(
                            reason::PROTOCOL_ERROR,
                            format_args!(
                                "SUBSCRIBE with an empty topic filter {filter:?} (MQTT-4.7.3-1)"
                            ),
                            out,
                        );
                    }
                }
                out.request(Request::Subscribe(Box::new(request)));
            }
            P3::Unsubscribe { packet_id, filters } => {
                if let Some(f) = filters.iter().find(|f| empty_filter(f)) {
                    return self.violation(
                        reason::PROTOCOL_ERROR,
                        format_args!("UNSUBSCRIBE with an empty topic filter {f:?} (MQTT-4.7.3-1)"),
                        out,
                    );
                }
                self.unsubscribe(packet_id, filters.iter().copied(), out);
            }
            P3::PingReq => frames::ping_response(self.version, out),
            P3::Disconnect => self.end(CloseReason::ClientDisconnect, None, out),
            // MQTT-3.1.0-2: a second CONNECT; the rest are server packets.
            P3::Connect(_) => self.violation(reason::PROTOCOL_ERROR, "second CONNECT", out),
            other @ (P3::ConnAck { .. } | P3::SubAck { .. } | P3::UnsubAck(_) | P3::PingResp) => {
                self.violation(
                    reason::PROTOCOL_ERROR,
                    format_args!("server-only packet from a client: {other:?}"),
                    out,
                )
            }
        }
    }

    /// One decoded MQTT 5 packet after CONNECT.
    pub fn handle_v5(&mut self, packet: P5<'_>, now: Instant, out: &mut Actions<Request>) {
        if self.phase != Phase::Connected {
            return;
        }
        self.touch(now);
        match packet {
            P5::Publish(p) => self.publish_v5(&p, out),
            P5::PubAck(r) | P5::PubComp(r) => out.request(Request::Acknowledge(r.packet_id)),
            P5::PubRec(r) if r.reason_code >= 0x80 => {
                // The client refused it: the delivery ends here.
                out.request(Request::Forget(r.packet_id));
            }
            P5::PubRec(r) => out.request(Request::Received(r.packet_id)),
            P5::PubRel(r) => self.release(r.packet_id, out),
            P5::Subscribe(s) => {
                let mut request = SubscribeRequest {
                    packet_id: s.packet_id,
                    // MQTT-3.8.2.1.2: one identifier for the whole packet.
                    identifier: s.properties.subscription_identifiers.first().copied(),
                    filters: SmallVec::new(),
                };
                for (filter, o) in &s.filters {
                    let flags = o.qos
                        | if o.no_local { NO_LOCAL } else { 0 }
                        | if o.retain_as_published {
                            RETAIN_AS_PUBLISHED
                        } else {
                            0
                        };
                    self.subscribe_filter(&mut request, filter, o.qos, flags, o.retain_handling);
                }
                out.request(Request::Subscribe(Box::new(request)));
            }
            P5::Unsubscribe(u) => self.unsubscribe(u.packet_id, u.filters.iter().copied(), out),
            P5::PingReq => frames::ping_response(self.version, out),
            P5::Disconnect(d) => {
                // 0x04: disconnect with will; anything else discards it.
                self.will_wanted = d.reason_code == reason::DISCONNECT_WITH_WILL_MESSAGE;
                match d.properties.session_expiry_interval {
                    Some(0) => self.persistent = false,
                    // MQTT-3.14.2-2: not from 0 to non-zero.
                    Some(_) if !self.persistent => return self.violation(
                        reason::PROTOCOL_ERROR,
                        "DISCONNECT sets a session expiry after CONNECT set none (MQTT-3.14.2-2)",
                        out,
                    ),
                    // The DISCONNECT's interval replaces CONNECT's (§3.14.2.2.2).
                    Some(s) => self.expiry_s = s,
                    None => {}
                }
                self.end(CloseReason::ClientDisconnect, None, out);
            }
            // Enhanced authentication is not offered (CONNACK carries no
            // method), so any AUTH is out of place (MQTT-4.12.0-1); a
            // second CONNECT and server packets are protocol errors.
            other => self.violation(
                reason::PROTOCOL_ERROR,
                format_args!("on a {:?} packet", other.packet_type()),
                out,
            ),
        }
    }

    fn publish_v5(&mut self, p: &v5::Publish<'_>, out: &mut Actions<Request>) {
        // Topic alias (MQTT-3.3.2-7..12): set or use. The topic is borrowed
        // from the packet or the alias table: no copy per PUBLISH.
        let mut aliases = std::mem::take(&mut self.aliases);
        if let Some(alias) = p.properties.topic_alias {
            // The decoder refused alias 0; above the maximum is refused below.
            let at = usize::from(alias);
            if at <= usize::from(self.settings.topic_alias_maximum) && at > aliases.len() {
                aliases.resize(at, None);
            }
        }
        let topic: &str = match p.properties.topic_alias {
            Some(alias) => match aliases.get_mut(usize::from(alias) - 1) {
                None => {
                    self.aliases = aliases;
                    return self.violation(
                        reason::TOPIC_ALIAS_INVALID,
                        format_args!("topic alias {alias} over the maximum"),
                        out,
                    );
                }
                Some(slot) if p.topic.is_empty() => match slot {
                    Some(t) => t,
                    None => {
                        self.aliases = aliases;
                        return self.violation(
                            reason::PROTOCOL_ERROR,
                            format_args!("topic alias {alias} used before it was set"),
                            out,
                        );
                    }
                },
                Some(slot) => {
                    // Setting an alias allocates only when it changes.
                    if slot.as_deref() != Some(p.topic) {
                        *slot = Some(p.topic.into());
                    }
                    p.topic
                }
            },
            None => p.topic,
        };
        if let Err(e) = topic::validate_name(topic, &self.settings.topic) {
            let why = format!("PUBLISH topic {topic:?}: {e}");
            self.aliases = aliases;
            return self.violation(reason::TOPIC_NAME_INVALID, why, out);
        }
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(p.payload).is_err()
        {
            self.aliases = aliases;
            if p.qos == 0 {
                return self.violation(
                    reason::PAYLOAD_FORMAT_INVALID,
                    "payload is not UTF-8 under Payload Format Indicator 1",
                    out,
                );
            }
            let kind = Ack::of_publish(p.qos);
            frames::ack(
                self.version,
                kind,
                p.packet_id,
                reason::PAYLOAD_FORMAT_INVALID,
                out,
            );
            return;
        }
        let props = &p.properties;
        self.publish(topic, p.qos, p.packet_id, p.retain, out, |t| {
            event_v5(t, p.payload, p.qos, p.retain, props)
        });
        self.aliases = aliases;
    }

    /// The rules of an incoming PUBLISH shared by both versions: QoS 2
    /// exactly once (a PUBLISH resent with an id awaiting release is not
    /// routed again, MQTT-4.3.3-2), bounded by `inflight_max`.
    #[inline]
    fn publish(
        &mut self,
        topic: &str,
        qos: u8,
        packet_id: u16,
        retain: bool,
        out: &mut Actions<Request>,
        event: impl FnOnce(&str) -> Event,
    ) {
        if !self.may_publish(topic) {
            return self.publish_denied(qos, packet_id, out);
        }
        if qos == 2 {
            if self.awaiting_release.contains(&packet_id) {
                frames::ack(self.version, Ack::Received, packet_id, frames::SUCCESS, out);
                return;
            }
            if self.awaiting_release.len() >= self.settings.inflight_max {
                return self.violation(
                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                    "too many unreleased QoS 2 publishes",
                    out,
                );
            }
            self.awaiting_release.push(packet_id);
        }
        let ack = (qos > 0).then_some(PublishAck {
            qos,
            packet_id,
            barrier: qos == 1 && retain,
        });
        out.request(Request::Publish {
            event: event(topic),
            retain,
            ack,
        });
    }

    /// The answer to a `Publish` with an ack: the event was routed
    /// (`matched`: some subscriber took it). PUBACK or PUBREC follows,
    /// after a barrier for a retained QoS 1 publish.
    pub fn on_published(&mut self, ack: PublishAck, matched: bool, out: &mut Actions<Request>) {
        if self.phase != Phase::Connected {
            return;
        }
        if ack.barrier {
            out.request(Request::Barrier);
        }
        let code = if matched {
            reason::SUCCESS
        } else {
            reason::NO_MATCHING_SUBSCRIBERS
        };
        let kind = Ack::of_publish(ack.qos);
        frames::ack(self.version, kind, ack.packet_id, code, out);
    }

    /// The answer to a `Publish` whose acknowledgement could not be made
    /// durable (persistence: disk full, IO error): MQTT 5 answers 0x97
    /// (Quota exceeded) and forgets a QoS 2 id; 3.1.1 has no refusal, so
    /// the connection is closed (the client resends after reconnecting).
    pub fn on_publish_refused(&mut self, ack: PublishAck, out: &mut Actions<Request>) {
        if self.phase != Phase::Connected {
            return;
        }
        if ack.qos == 2 {
            self.awaiting_release.retain(|x| *x != ack.packet_id);
        }
        if self.version != Version::V5 {
            return self.close(CloseReason::StorageFailed, out);
        }
        let kind = Ack::of_publish(ack.qos);
        frames::ack(
            self.version,
            kind,
            ack.packet_id,
            reason::QUOTA_EXCEEDED,
            out,
        );
    }

    /// PUBREL: the QoS 2 publish is released; PUBCOMP (MQTT 5: 0x92 for an
    /// id not awaiting release).
    fn release(&mut self, packet_id: u16, out: &mut Actions<Request>) {
        let known = self.awaiting_release.contains(&packet_id);
        self.awaiting_release.retain(|x| *x != packet_id);
        if known {
            out.request(Request::Released(packet_id));
        }
        let code = if known {
            reason::SUCCESS
        } else {
            reason::PACKET_IDENTIFIER_NOT_FOUND
        };
        frames::ack(self.version, Ack::Complete, packet_id, code, out);
    }

    /// The answer to `Received`: PUBREL went out when the delivery was in
    /// flight; MQTT 5 answers an unknown id with PUBREL 0x92.
    pub fn on_received(&mut self, packet_id: u16, known: bool, out: &mut Actions<Request>) {
        if !known && self.version == Version::V5 && self.phase == Phase::Connected {
            frames::ack(
                self.version,
                Ack::Release,
                packet_id,
                reason::PACKET_IDENTIFIER_NOT_FOUND,
                out,
            );
        }
    }

    /// Adds one filter to a SUBSCRIBE request; false for a filter the spec
    /// forbids in 3.1.1 (close).
    fn subscribe_filter(
        &self,
        request: &mut SubscribeRequest,
        filter: &str,
        qos: u8,
        flags: u8,
        retain_handling: RetainHandling,
    ) -> bool {
        let mut flags = flags;
        let outcome = match topic::validate_subscription(filter, &self.settings.topic) {
            Ok(()) => match self.subscription(filter) {
                Subscription::Denied => SubscribeOutcome::Denied,
                Subscription::Checked => {
                    // Each delivery to it is tested (`shard::ctx::routing`).
                    flags |= CHECKED;
                    SubscribeOutcome::Pending
                }
                Subscription::Granted => SubscribeOutcome::Pending,
            },
            Err(TopicError::Empty | TopicError::BadShare)
                if empty_filter(filter) && self.version != Version::V5 =>
            {
                return false;
            }
            Err(_) => SubscribeOutcome::Invalid,
        };
        request.filters.push(SubscribeFilter {
            filter: filter.into(),
            qos,
            flags,
            retain_handling,
            outcome,
        });
        true
    }

    /// The answer to `Subscribe`, outcomes filled in and every shard told:
    /// SUBACK, then the retained messages of each new subscription.
    pub fn on_subscribed(&mut self, request: SubscribeRequest, out: &mut Actions<Request>) {
        if self.phase != Phase::Connected {
            return;
        }
        let v5 = self.version == Version::V5;
        let codes: SmallVec<[u8; 8]> = request
            .filters
            .iter()
            .map(|f| match f.outcome {
                SubscribeOutcome::Granted { .. } => f.qos,
                SubscribeOutcome::Invalid if v5 => reason::TOPIC_FILTER_INVALID,
                SubscribeOutcome::Full if v5 => reason::QUOTA_EXCEEDED,
                SubscribeOutcome::Denied if v5 => reason::NOT_AUTHORIZED,
                SubscribeOutcome::Invalid
                | SubscribeOutcome::Full
                | SubscribeOutcome::Denied
                | SubscribeOutcome::Pending => {
                    if v5 {
                        reason::UNSPECIFIED_ERROR
                    } else {
                        SUBACK_FAILURE
                    }
                }
            })
            .collect();
        frames::sub_ack(self.version, false, request.packet_id, &codes, out);
        for f in &request.filters {
            if f.outcome == SubscribeOutcome::Denied {
                out.request(Request::Denied(Denied::Subscribe));
            }
        }
        for f in request.filters {
            let SubscribeOutcome::Granted { existed } = f.outcome else {
                continue;
            };
            let send = match f.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            if send {
                out.request(Request::SendRetained {
                    filter: f.filter,
                    qos: f.qos,
                });
            }
        }
    }

    fn unsubscribe<'a>(
        &mut self,
        packet_id: u16,
        filters: impl Iterator<Item = &'a str>,
        out: &mut Actions<Request>,
    ) {
        let filters = filters
            .map(|f| {
                let valid = topic::validate_subscription(f, &self.settings.topic).is_ok();
                // 3.1.1 has no code to refuse one: it removes what exists.
                let outcome = (valid || self.version != Version::V5).then_some(false);
                (Box::<str>::from(f), outcome)
            })
            .collect();
        out.request(Request::Unsubscribe(Box::new(UnsubscribeRequest {
            packet_id,
            filters,
        })));
    }

    /// The answer to `Unsubscribe`: UNSUBACK.
    pub fn on_unsubscribed(&mut self, request: UnsubscribeRequest, out: &mut Actions<Request>) {
        if self.phase != Phase::Connected {
            return;
        }
        let codes: SmallVec<[u8; 8]> = request
            .filters
            .iter()
            .map(|(_, outcome)| match outcome {
                None => reason::TOPIC_FILTER_INVALID,
                Some(true) => reason::SUCCESS,
                Some(false) => reason::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        frames::sub_ack(self.version, true, request.packet_id, &codes, out);
    }
}
