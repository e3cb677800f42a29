//! CONNECT: which version, whether it is accepted (and if not, the
//! refusal each version can express), the keep-alive in force, the will,
//! and the CONNACK once the shard established the session.

use std::time::{Duration, Instant};

use super::frames;
use super::{
    Actions, CloseReason, Establish, Established, MqttSession, Phase, Request, Version, Will,
};
use crate::event::{now_ns, Event, EventMeta};
use crate::mqtt::codec;
use crate::mqtt::v5::{self, reason, Properties};
use crate::security::{Credentials, Identity, Refusal};
use crate::topic;

/// CONNACK return codes of MQTT 3.1.1 §3.2.2.3.
pub(super) const CONNACK_BAD_PROTOCOL: u8 = 0x01;
pub(super) const CONNACK_BAD_CLIENT_ID: u8 = 0x02;
pub(super) const CONNACK_BAD_CREDENTIALS: u8 = 0x04;
pub(super) const CONNACK_NOT_AUTHORIZED: u8 = 0x05;

/// The keep-alive in force for a client that asked for `asked_s`, under
/// the cap `max_s` (0 = none): (seconds in force, whether the client must
/// be told — an MQTT 5 Server Keep Alive). Asking for 0 (no keep-alive)
/// or for more than the cap gets the cap.
pub fn keep_alive(asked_s: u16, max_s: u16) -> (u16, bool) {
    if max_s > 0 && (asked_s == 0 || asked_s > max_s) {
        (max_s, true)
    } else {
        (asked_s, false)
    }
}

/// The event of an MQTT 5 PUBLISH or Will, its properties as metadata.
pub(super) fn event_v5(
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    p: &Properties<'_>,
) -> Event {
    let event = Event::new(topic, payload, qos, retain);
    if p.response_topic.is_none()
        && p.correlation_data.is_none()
        && p.content_type.is_none()
        && p.payload_format_indicator.is_none()
        && p.user_properties.is_empty()
        && p.message_expiry_interval.is_none()
    {
        // The common case: no metadata, nothing more to allocate.
        return event;
    }
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
        // Message expiry is measured on the events' own clock.
        expires_ns: p
            .message_expiry_interval
            .map(|s| now_ns() + u64::from(s) * 1_000_000_000),
        ..Default::default()
    };
    event.with_meta(meta)
}

/// CONNECT's credentials, owned for the glue.
fn credentials(client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> Credentials {
    Credentials {
        username: username.map(Into::into),
        password: password.map(Into::into),
        client_id: client_id.into(),
        ..Credentials::default()
    }
}

impl MqttSession {
    /// The client's credentials were refused: CONNACK with the version's
    /// code (MQTT 3.1.1 0x04 bad user name or password, 0x05 not
    /// authorized; MQTT 5 0x86, 0x87), then close.
    pub fn on_refused(&mut self, refusal: Refusal, out: &mut Actions<Request>) {
        if self.phase != Phase::Establishing {
            return;
        }
        let why = match refusal {
            Refusal::BadCredentials => "bad user name, password, token or certificate",
            Refusal::NotAuthorized => "not authorized to connect",
        };
        match (self.version, refusal) {
            (Version::V5, Refusal::BadCredentials) => {
                self.refuse_v5(reason::BAD_USER_NAME_OR_PASSWORD, why, out)
            }
            (Version::V5, Refusal::NotAuthorized) => {
                self.refuse_v5(reason::NOT_AUTHORIZED, why, out)
            }
            (_, Refusal::BadCredentials) => self.refuse_v311(CONNACK_BAD_CREDENTIALS, why, out),
            (_, Refusal::NotAuthorized) => self.refuse_v311(CONNACK_NOT_AUTHORIZED, why, out),
        }
    }

    /// The client was authenticated as `identity` (before `on_established`).
    pub fn on_authenticated(&mut self, identity: Identity) {
        self.identity = Some(identity);
    }

    /// Who the client is, once authenticated.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// A refusal's log line names the client id CONNECT gave.
    pub(super) fn name_problem(&mut self, client_id: &str) {
        if let Some(p) = &mut self.problem {
            p.client_id = Some(client_id.into());
        }
    }

    pub(super) fn refused(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        self.phase = Phase::Closed;
        self.deadline = None;
        out.close(reason);
    }

    pub(super) fn refuse_v311(&mut self, code: u8, why: &str, out: &mut Actions<Request>) {
        self.problem(true, Some(code), why);
        frames::connack_v311(false, code, out);
        self.refused(CloseReason::ConnectRefused, out);
    }

    pub(super) fn refuse_v5(
        &mut self,
        code: u8,
        why: impl std::fmt::Display,
        out: &mut Actions<Request>,
    ) {
        self.problem(true, Some(code), why);
        frames::refuse_v5(code, out);
        self.refused(CloseReason::ConnectRefused, out);
    }

    pub(super) fn connect_v311(
        &mut self,
        c: &codec::Connect<'_>,
        now: Instant,
        out: &mut Actions<Request>,
    ) {
        // MQTT-3.1.2-2: unsupported level → CONNACK 0x01. MQTT 3.1 is
        // 3.1.1's session rules with a shorter client id.
        self.version = match (c.protocol_name, c.level) {
            (codec::PROTOCOL_NAME, codec::PROTOCOL_LEVEL_311) => Version::V311,
            (codec::PROTOCOL_NAME_31, codec::PROTOCOL_LEVEL_31) => Version::V31,
            _ => return self.refuse_v311(
                CONNACK_BAD_PROTOCOL,
                "unsupported protocol level for its name (MQTT 4, MQIsdp 3 and MQTT 5 are served)",
                out,
            ),
        };
        let v31 = self.version == Version::V31;
        let id_max = if v31 {
            self.settings
                .client_id_bytes_max
                .min(codec::CLIENT_ID_BYTES_MAX_31)
        } else {
            self.settings.client_id_bytes_max
        };
        // MQTT 3.1 wants 1 to 23 characters (mosquitto refuses an empty
        // one too); MQTT-3.1.3-8: an empty id needs clean session.
        let bad_id = if c.client_id.is_empty() && v31 {
            Some("empty client id (MQTT 3.1)")
        } else if c.client_id.is_empty() && !c.clean_session {
            Some("empty client id without clean session")
        } else if c.client_id.len() > id_max && v31 {
            Some("client id longer than MQTT 3.1's 23 bytes")
        } else if c.client_id.len() > id_max {
            Some("client id longer than limits.client_id_bytes_max")
        } else {
            None
        };
        if let Some(why) = bad_id {
            return self.refuse_v311(CONNACK_BAD_CLIENT_ID, why, out);
        }
        // A 3.1.1 client cannot be told another keep-alive: one asking for
        // more than the cap (or none) is refused, as mosquitto does.
        let (keep_alive_s, capped) = keep_alive(c.keep_alive_s, self.settings.keep_alive_max_s);
        if capped {
            return self.refuse_v311(
                CONNACK_BAD_CLIENT_ID,
                "keep-alive over mqtt.keep_alive_max_s (or none under a cap)",
                out,
            );
        }
        if let Some(w) = &c.will {
            if let Err(e) = topic::validate_name(w.topic, &self.settings.topic) {
                // No CONNACK code for it in 3.1.1: a protocol violation.
                self.problem(false, None, format_args!("will topic: {e}"));
                return self.refused(CloseReason::ProtocolError, out);
            }
            self.will = Some(Will {
                event: Event::new(w.topic, w.payload, w.qos, w.retain),
                delay_s: 0,
            });
        }
        self.persistent = !c.clean_session;
        self.accepted(keep_alive_s, now);
        out.request(Request::Establish(Box::new(Establish {
            client_id: (!c.client_id.is_empty()).then(|| c.client_id.into()),
            resume: !c.clean_session,
            persistent: self.persistent,
            version: self.version,
            expiry_s: None,
            receive_max: u16::MAX,
            max_packet: 0,
            client_alias_max: 0,
            credentials: credentials(c.client_id, c.username, c.password),
        })));
    }

    pub(super) fn connect_v5(
        &mut self,
        c: &v5::Connect<'_>,
        now: Instant,
        out: &mut Actions<Request>,
    ) {
        let id_max = self.settings.client_id_bytes_max;
        if c.client_id.len() > id_max {
            return self.refuse_v5(
                reason::CLIENT_IDENTIFIER_NOT_VALID,
                format_args!(
                    "client id of {} bytes, over limits.client_id_bytes_max ({id_max})",
                    c.client_id.len(),
                ),
                out,
            );
        }
        // MQTT-3.1.3-7 leaves it to the server: a session under an assigned
        // id can never be resumed, so asking to resume one is refused (as
        // mosquitto does).
        if c.client_id.is_empty() && !c.clean_start {
            return self.refuse_v5(
                reason::CLIENT_IDENTIFIER_NOT_VALID,
                "empty client id with Clean Start 0 (an assigned id cannot be resumed)",
                out,
            );
        }
        // Enhanced authentication (§4.12) is not offered: a CONNECT that
        // asks for it is refused with the code §4.12 names for a method
        // the server does not support (as mosquitto does without a plugin
        // for it), rather than accepted as if it had not asked.
        if let Some(method) = c.properties.authentication_method {
            return self.refuse_v5(
                reason::BAD_AUTHENTICATION_METHOD,
                format_args!("enhanced authentication ({method:?}) is not supported"),
                out,
            );
        }
        if let Some(w) = c.will.as_deref() {
            if topic::validate_name(w.topic, &self.settings.topic).is_err() {
                return self.refuse_v5(
                    reason::TOPIC_NAME_INVALID,
                    format_args!("will topic {:?} is not a valid topic name", w.topic),
                    out,
                );
            }
            self.will = Some(Will {
                event: event_v5(w.topic, w.payload, w.qos, w.retain, &w.properties),
                delay_s: w.properties.will_delay_interval.unwrap_or(0),
            });
        }
        // MQTT-3.2.2-21: a Server Keep Alive replaces the client's.
        let (keep_alive_s, capped) = keep_alive(c.keep_alive_s, self.settings.keep_alive_max_s);
        self.server_keep_alive_s = capped.then_some(keep_alive_s);
        self.expiry_s = c.properties.session_expiry_interval.unwrap_or(0);
        self.persistent = self.expiry_s > 0;
        self.client_id_assigned = c.client_id.is_empty();
        self.wants_response_info = c.properties.request_response_information == Some(true);
        self.accepted(keep_alive_s, now);
        out.request(Request::Establish(Box::new(Establish {
            client_id: (!c.client_id.is_empty()).then(|| c.client_id.into()),
            // Clean Start 0 resumes a kept session (MQTT-3.1.2-5).
            resume: !c.clean_start,
            persistent: self.persistent,
            version: Version::V5,
            expiry_s: self.persistent.then_some(self.expiry_s),
            receive_max: c.properties.receive_maximum.unwrap_or(u16::MAX),
            max_packet: c.properties.maximum_packet_size.unwrap_or(0),
            client_alias_max: c.properties.topic_alias_maximum.unwrap_or(0),
            credentials: credentials(c.client_id, c.username, c.password),
        })));
    }

    /// CONNECT accepted: wait for the shard, then keep-alive applies.
    fn accepted(&mut self, keep_alive_s: u16, now: Instant) {
        self.phase = Phase::Establishing;
        // MQTT-3.1.2-24: 1.5 times the keep-alive.
        self.keep_alive_window =
            (keep_alive_s > 0).then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500));
        // The connect timeout still bounds the handshake.
        let _ = now;
    }

    /// The shard registered the session (and ended any other connection
    /// of its id): CONNACK, and keep-alive runs from `now`.
    pub fn on_established(
        &mut self,
        established: Established<'_>,
        now: Instant,
        out: &mut Actions<Request>,
    ) {
        if self.phase != Phase::Establishing {
            return;
        }
        self.phase = Phase::Connected;
        self.connected_once = true;
        self.deadline = self.keep_alive_window.map(|w| now + w);
        match self.version {
            Version::V31 | Version::V311 => {
                // MQTT-3.2.2-1/2: session present only for a resumed session.
                frames::connack_v311(established.present, 0, out);
            }
            Version::V5 => {
                let s = &self.settings;
                let response_info = self
                    .wants_response_info
                    .then(|| format!("weft/response/{}", established.client_id));
                let properties = Properties {
                    receive_maximum: Some(s.inflight_max.min(65_535) as u16),
                    topic_alias_maximum: Some(s.topic_alias_maximum),
                    maximum_packet_size: Some(s.packet_bytes_max.min(u32::MAX as usize) as u32),
                    retain_available: Some(true),
                    wildcard_subscription_available: Some(true),
                    shared_subscription_available: Some(true),
                    subscription_identifier_available: Some(true),
                    assigned_client_identifier: self
                        .client_id_assigned
                        .then_some(established.client_id),
                    server_keep_alive: self.server_keep_alive_s,
                    // Request/response (MQTT 5 §4.10): a base for the
                    // client's response topics, private to its client id.
                    response_information: response_info.as_deref(),
                    session_expiry_interval: self.persistent.then(|| {
                        self.expiry_s
                            .min(s.offline_session_expiry_s.min(u64::from(u32::MAX)) as u32)
                    }),
                    ..Properties::default()
                };
                frames::connack_v5(
                    &v5::ConnAck {
                        session_present: established.present,
                        reason_code: reason::SUCCESS,
                        properties,
                    },
                    out,
                );
            }
        }
        if established.present {
            out.request(Request::Resume);
        }
    }
}
