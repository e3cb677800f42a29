//! The event: one published message, as it travels between shards and sits
//! in subscribers' queues.
//!
//! How an event is written for a subscriber is each protocol's own:
//! `mqtt::deliver` (PUBLISH, 3.1.1 and 5) and `nats::deliver` (MSG/HMSG).
//! This file knows no protocol's frames, and imports no protocol: the
//! protocols, the topic tree and the mesh all build on `Event`.
//!
//! The payload is copied exactly once, on the way in, into `bytes`: the
//! topic's length (u16, big-endian), the topic, then the payload, held in
//! a reference-counted [`Bytes`]. Every subscriber on every shard shares
//! that one buffer. The layout is the one an MQTT PUBLISH has after its
//! fixed header at QoS 0, so an MQTT QoS 0 delivery is a fixed header and
//! this buffer copied whole (`mqtt::codec::put_publish_prefixed`); other
//! deliveries take the topic and payload slices.

use std::sync::Arc;

use bytes::Bytes;

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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
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
    /// Topic length (u16, big-endian), topic, payload.
    bytes: Bytes,
    topic_len: u16,
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
    /// The topic is validated before (`limits.topic_bytes_max`, itself at
    /// most 65,535 bytes, MQTT's string maximum, so its length fits the
    /// u16 prefix).
    pub fn new(topic: &str, payload: &[u8], qos: u8, retain: bool) -> Event {
        debug_assert!(topic.len() <= usize::from(u16::MAX));
        let topic_len = topic.len() as u16;
        let mut bytes = Vec::with_capacity(2 + topic.len() + payload.len());
        bytes.extend_from_slice(&topic_len.to_be_bytes());
        bytes.extend_from_slice(topic.as_bytes());
        bytes.extend_from_slice(payload);
        Event::from_buffer(bytes, topic_len, qos, retain)
    }

    /// As [`Event::new`], with every `from` byte of `topic` written as
    /// `to` on the way into the buffer (NATS `.` → internal `/`): a
    /// publish's topic mapped in its one copy, no string of its own. Both
    /// bytes are ASCII, so the topic stays UTF-8.
    pub fn new_translated(
        topic: &str,
        from: u8,
        to: u8,
        payload: &[u8],
        qos: u8,
        retain: bool,
    ) -> Event {
        assert!(from.is_ascii() && to.is_ascii(), "ASCII keeps UTF-8");
        debug_assert!(topic.len() <= usize::from(u16::MAX));
        let topic_len = topic.len() as u16;
        let mut bytes = Vec::with_capacity(2 + topic.len() + payload.len());
        bytes.extend_from_slice(&topic_len.to_be_bytes());
        bytes.extend_from_slice(topic.as_bytes());
        for b in &mut bytes[2..] {
            if *b == from {
                *b = to;
            }
        }
        bytes.extend_from_slice(payload);
        Event::from_buffer(bytes, topic_len, qos, retain)
    }

    /// The event over its one buffer (`[topic len u16][topic][payload]`),
    /// from this router, no metadata: what `new` and `new_translated` build.
    #[inline]
    fn from_buffer(bytes: Vec<u8>, topic_len: u16, qos: u8, retain: bool) -> Event {
        Event {
            bytes: Bytes::from(bytes),
            topic_len,
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

    /// The metadata, to change in place (`trace` rewrites its trace
    /// context once per router), beside the topic.
    pub fn meta_mut_and_topic(&mut self) -> (Option<&mut Arc<EventMeta>>, &str) {
        let raw = &self.bytes[2..][..usize::from(self.topic_len)];
        debug_assert!(std::str::from_utf8(raw).is_ok());
        // SAFETY: as in `topic`.
        let topic = unsafe { std::str::from_utf8_unchecked(raw) };
        (self.meta.as_mut(), topic)
    }

    pub fn topic(&self) -> &str {
        let raw = &self.bytes[2..][..usize::from(self.topic_len)];
        debug_assert!(std::str::from_utf8(raw).is_ok());
        // SAFETY: `new` copied these bytes from a `&str` and the buffer is
        // immutable (`Bytes`); this runs several times per delivery, so the
        // UTF-8 check is not repeated.
        unsafe { std::str::from_utf8_unchecked(raw) }
    }

    pub fn payload(&self) -> &[u8] {
        &self.bytes[2 + usize::from(self.topic_len)..]
    }

    /// The topic, prefixed by its length (u16, big-endian), then the
    /// payload: the one shared buffer, whole.
    pub fn prefixed_topic_and_payload(&self) -> &[u8] {
        &self.bytes
    }
}

/// Whether a name and value can be written as one NATS (or HTTP) header
/// line: the name a token (visible ASCII, no `:`), the value with no
/// control character but tab. MQTT 5 user properties and AMQP
/// application properties may hold anything; a pair that fails this is
/// not written as a header, so that a publisher cannot add lines (CR LF)
/// or split a name (`:`) in a NATS subscriber's header block.
pub fn header_safe(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The `name: value` fields of a NATS header block (`NATS/1.0...\r\n\r\n`,
/// as [`EventMeta::headers`] holds it), names and values trimmed; the
/// status line and lines without a colon are skipped. (Here, beside the
/// event, because NATS deliveries and the CloudEvents bindings both read
/// it and `nats` imports `cloudevents`.)
pub fn header_fields(block: &[u8]) -> Vec<(&str, &str)> {
    let Ok(text) = std::str::from_utf8(block) else {
        return Vec::new();
    };
    text.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}
