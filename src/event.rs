//! The event: one published message, as it travels between shards and sits
//! in subscribers' queues.
//!
//! The payload is copied exactly once, on the way in, into `frame`, an
//! encoded MQTT QoS 0 PUBLISH (retain 0) held in a reference-counted
//! [`Bytes`]. Every subscriber on every shard shares that one buffer: a QoS 0
//! delivery writes `frame` as is; a QoS 1 delivery writes a new fixed header
//! and packet id around the shared topic and payload slices.

use std::sync::Arc;

use bytes::Bytes;

use crate::mqtt::codec;
use crate::nats;

/// Who published an event: for NATS `echo: false` (and MQTT 5 no-local).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub shard: u16,
    pub session: u32,
}

impl Origin {
    /// Events the router makes itself (wills, no-responders replies).
    pub const ROUTER: Origin = Origin {
        shard: u16::MAX,
        session: u32::MAX,
    };
}

/// What some events carry beyond topic and payload; allocated only when
/// present, so plain events stay one buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// Reply subject of a NATS request (NATS form). MQTT 5 subscribers get
    /// it as the Response Topic.
    pub reply: Option<Box<str>>,
    /// NATS header block (`NATS/1.0\r\n...\r\n\r\n`). MQTT 5
    /// subscribers get its fields as user properties.
    pub headers: Option<Box<[u8]>>,
    /// MQTT 5 Response Topic (MQTT form); NATS subscribers get it as the
    /// reply subject.
    pub response_topic: Option<Box<str>>,
    pub correlation_data: Option<Box<[u8]>>,
    pub content_type: Option<Box<str>>,
    pub payload_format: Option<u8>,
    /// MQTT 5 user properties; NATS subscribers get them as headers.
    pub user_properties: Vec<(Box<str>, Box<str>)>,
    /// Message Expiry: not delivered after this (`now_ns` time).
    pub expires_ns: Option<u64>,
}

impl EventMeta {
    /// True when there is nothing to carry (checked per publish: field by
    /// field, no default value built).
    pub fn is_empty(&self) -> bool {
        self.reply.is_none()
            && self.headers.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.content_type.is_none()
            && self.payload_format.is_none()
            && self.user_properties.is_empty()
            && self.expires_ns.is_none()
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    frame: Bytes,
    topic_at: u32,
    topic_len: u16,
    payload_at: u32,
    /// QoS the publisher used; the delivered QoS is the lower of this and
    /// the subscription's.
    pub qos: u8,
    pub retain: bool,
    pub origin: Origin,
    pub meta: Option<Arc<EventMeta>>,
    /// When the router read it, in [`now_ns`] time: the start of the
    /// router-internal latency measured at hand-off to a socket.
    pub born_ns: u64,
}

/// The `born_ns` of an event replayed from a store (a retained message, a
/// persistent session's backlog): its age is not routing latency, so the
/// shard counts it (`replays_out`) instead of recording it.
pub const REPLAY_NS: u64 = 0;

/// Nanoseconds since the Unix epoch (the wall clock; never 0): the stamp
/// of a retained publish, compared across routers.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        .max(1)
}

/// Nanoseconds on a process-wide monotonic clock (one `Instant` read).
pub fn now_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

impl Event {
    /// Builds the event from a validated topic and a payload (the one copy).
    pub fn new(topic: &str, payload: &[u8], qos: u8, retain: bool) -> Event {
        let mut frame = Vec::with_capacity(codec::publish_len(topic.len(), 0, payload.len()));
        codec::put_publish(&mut frame, false, 0, false, topic.as_bytes(), 0, payload);
        let payload_at = frame.len() - payload.len();
        let topic_at = payload_at - topic.len();
        Event {
            frame: Bytes::from(frame),
            topic_at: topic_at as u32,
            topic_len: topic.len() as u16,
            payload_at: payload_at as u32,
            qos,
            retain,
            origin: Origin::ROUTER,
            meta: None,
            born_ns: 0,
        }
    }

    pub fn with_origin(mut self, origin: Origin) -> Event {
        self.origin = origin;
        self
    }

    pub fn with_meta(mut self, meta: EventMeta) -> Event {
        if !meta.is_empty() {
            self.meta = Some(Arc::new(meta));
        }
        self
    }

    pub fn reply(&self) -> Option<&str> {
        self.meta.as_ref()?.reply.as_deref()
    }

    pub fn headers(&self) -> Option<&[u8]> {
        self.meta.as_ref()?.headers.as_deref()
    }

    /// True once the MQTT 5 Message Expiry Interval has passed (reads the
    /// clock only for events that have one).
    pub fn expired(&self) -> bool {
        self.meta
            .as_ref()
            .and_then(|m| m.expires_ns)
            .is_some_and(|at| now_ns() >= at)
    }

    /// Appends an MQTT 5 PUBLISH: the metadata becomes properties (NATS
    /// headers → user properties, NATS reply → Response Topic) and the
    /// remaining expiry interval is forwarded (MQTT-3.3.2-6).
    /// `sub_ids`: identifiers of the matching subscriptions; `alias`: a
    /// topic alias, with `true` when the topic goes along to set it.
    #[allow(clippy::too_many_arguments)]
    pub fn write_v5(
        &self,
        out: &mut Vec<u8>,
        qos: u8,
        packet_id: u16,
        dup: bool,
        retain: bool,
        sub_ids: &[u32],
        alias: Option<(u16, bool)>,
    ) {
        use crate::mqtt::v5;
        let mut props = v5::Properties {
            subscription_identifiers: sub_ids.to_vec(),
            topic_alias: alias.map(|(a, _)| a),
            ..Default::default()
        };
        let nats_reply_topic;
        let header_pairs;
        if let Some(m) = self.meta.as_deref() {
            props.payload_format_indicator = m.payload_format;
            props.content_type = m.content_type.as_deref();
            props.correlation_data = m.correlation_data.as_deref();
            props.response_topic = m.response_topic.as_deref();
            if props.response_topic.is_none() {
                if let Some(reply) = &m.reply {
                    nats_reply_topic =
                        crate::nats::subject::to_internal(reply, false, usize::MAX).ok();
                    props.response_topic = nats_reply_topic.as_deref();
                }
            }
            props.user_properties = m
                .user_properties
                .iter()
                .map(|(k, v)| (&**k, &**v))
                .collect();
            if let Some(h) = &m.headers {
                header_pairs = crate::nats::codec::header_fields(h);
                props
                    .user_properties
                    .extend(header_pairs.iter().map(|(k, v)| (*k, *v)));
            }
            if let Some(at) = m.expires_ns {
                let left = at.saturating_sub(now_ns());
                props.message_expiry_interval = Some(left.div_ceil(1_000_000_000).max(1) as u32);
            }
        }
        let packet = v5::Packet::Publish(v5::Publish {
            dup,
            qos,
            retain,
            topic: match alias {
                Some((_, false)) => "",
                _ => self.topic(),
            },
            packet_id: if qos > 0 { packet_id } else { 0 },
            properties: props,
            payload: self.payload(),
        });
        // Only fails on an internal inconsistency (e.g. a 64 KiB string):
        // the event was validated on the way in.
        let _ = v5::encode(&packet, out);
    }

    /// Bytes of the MQTT 5 PUBLISH (estimated for metadata-rich events;
    /// used for queue accounting).
    pub fn wire_len_v5(&self, qos: u8) -> usize {
        let extra = self.meta.as_deref().map_or(0, |m| {
            m.content_type.as_ref().map_or(0, |c| c.len() + 3)
                + m.correlation_data.as_ref().map_or(0, |c| c.len() + 3)
                + m.response_topic
                    .as_ref()
                    .or(m.reply.as_ref())
                    .map_or(0, |r| r.len() + 3)
                + m.user_properties
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 5)
                    .sum::<usize>()
                + m.headers.as_ref().map_or(0, |h| h.len())
                + 7
        });
        self.wire_len(qos) + 4 + extra
    }

    /// The NATS subject of this event's topic (see `nats::subject`).
    pub fn nats_subject(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(nats::subject::nats_len(self.topic()));
        nats::subject::write_nats(self.topic(), &mut out);
        out
    }

    /// Bytes this event takes as a NATS MSG/HMSG for subscription `sid`,
    /// with a subject of `subject_len` bytes.
    pub fn nats_wire_len(&self, subject_len: usize, sid: &str) -> usize {
        let converted = self.meta.as_deref().map_or(0, |m| {
            m.response_topic.as_ref().map_or(0, |r| r.len() + 1)
                + m.user_properties
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 4)
                    .sum::<usize>()
                + if m.user_properties.is_empty() {
                    0
                } else {
                    12 + 10
                }
        });
        nats::codec::msg_len(
            subject_len,
            sid,
            self.reply(),
            self.headers(),
            self.payload().len(),
        ) + converted
    }

    /// Appends the NATS MSG/HMSG for subscription `sid` (MQTT 5 user
    /// properties → headers, Response Topic → reply subject).
    pub fn write_nats(&self, out: &mut Vec<u8>, subject: &[u8], sid: &str) {
        let (reply, headers) = self.nats_reply_and_headers();
        nats::codec::put_msg(
            out,
            |o| o.extend_from_slice(subject),
            sid,
            reply.as_deref().or(self.reply()),
            headers.as_deref().or(self.headers()),
            self.payload(),
        );
    }

    /// For events from MQTT 5: the reply subject and header block NATS
    /// subscribers get (None where the event has its own NATS forms).
    fn nats_reply_and_headers(&self) -> (Option<String>, Option<Vec<u8>>) {
        let Some(m) = self.meta.as_deref() else {
            return (None, None);
        };
        let reply = match (&m.reply, &m.response_topic) {
            (None, Some(topic)) => Some(nats::subject::to_nats(topic)),
            _ => None,
        };
        let headers = (m.headers.is_none() && !m.user_properties.is_empty()).then(|| {
            let mut h = b"NATS/1.0\r\n".to_vec();
            for (k, v) in &m.user_properties {
                h.extend_from_slice(k.as_bytes());
                h.extend_from_slice(b": ");
                h.extend_from_slice(v.as_bytes());
                h.extend_from_slice(b"\r\n");
            }
            h.extend_from_slice(b"\r\n");
            h
        });
        (reply, headers)
    }

    pub fn topic(&self) -> &str {
        let raw = &self.frame[self.topic_at as usize..][..usize::from(self.topic_len)];
        debug_assert!(std::str::from_utf8(raw).is_ok());
        // SAFETY: `new` copied these bytes from a `&str` and the frame is
        // immutable (`Bytes`); this runs several times per delivery, so the
        // UTF-8 check is not repeated.
        unsafe { std::str::from_utf8_unchecked(raw) }
    }

    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload_at as usize..]
    }

    /// The encoded QoS 0 PUBLISH.
    pub fn qos0_frame(&self) -> &[u8] {
        &self.frame
    }

    /// Bytes this event takes when delivered at `qos`.
    pub fn wire_len(&self, qos: u8) -> usize {
        if qos == 0 {
            self.frame.len()
        } else {
            codec::publish_len(usize::from(self.topic_len), qos, self.payload().len())
        }
    }

    /// Appends the PUBLISH for one subscriber.
    /// `retain` is set only for retained messages sent on subscribe
    /// (MQTT-3.3.1-8/9).
    pub fn write_to(&self, out: &mut Vec<u8>, qos: u8, packet_id: u16, dup: bool, retain: bool) {
        if qos == 0 {
            let at = out.len();
            out.extend_from_slice(&self.frame);
            out[at] |= u8::from(retain);
        } else {
            codec::put_publish(
                out,
                dup,
                qos,
                retain,
                &self.frame[self.topic_at as usize..self.payload_at as usize],
                packet_id,
                self.payload(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::{decode, DecodeLimits, Packet, Publish};

    #[test]
    fn nats_framing() {
        let e = Event::new("a/b.c", b"hi", 0, false).with_meta(EventMeta {
            reply: Some("_INBOX.1".into()),
            ..Default::default()
        });
        let mut out = Vec::new();
        let subject = e.nats_subject();
        e.write_nats(&mut out, &subject, "7");
        assert_eq!(out, b"MSG a.b//c 7 _INBOX.1 2\r\nhi\r\n");
        assert_eq!(out.len(), e.nats_wire_len(subject.len(), "7"));
        let plain = Event::new("a", b"", 0, false).with_meta(EventMeta::default());
        assert!(plain.meta.is_none(), "empty metadata costs nothing");
    }

    #[test]
    fn frames_decode_back() {
        let e = Event::new("a/b", b"hello", 1, true);
        assert_eq!(e.topic(), "a/b");
        assert_eq!(e.payload(), b"hello");
        let limits = DecodeLimits::default();
        for (qos, id) in [(0u8, 0u16), (1, 77)] {
            let mut out = Vec::new();
            e.write_to(&mut out, qos, id, false, false);
            assert_eq!(out.len(), e.wire_len(qos));
            let (p, _) = decode(&out, &limits).unwrap().unwrap();
            assert_eq!(
                p,
                Packet::Publish(Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: "a/b",
                    packet_id: id,
                    payload: b"hello",
                })
            );
        }
    }
}
