//! The event: one published message, as it travels between shards and sits
//! in subscribers' queues.
//!
//! How an event is written for a subscriber is each protocol's own:
//! `mqtt::deliver` (PUBLISH, 3.1.1 and 5) and `nats::deliver` (MSG/HMSG).
//!
//! The payload is copied exactly once, on the way in, into `frame`, an
//! encoded MQTT QoS 0 PUBLISH (retain 0) held in a reference-counted
//! [`Bytes`]. Every subscriber on every shard shares that one buffer: a QoS 0
//! delivery writes `frame` as is; a QoS 1 delivery writes a new fixed header
//! and packet id around the shared topic and payload slices.

use std::sync::Arc;

use bytes::Bytes;

use crate::mqtt::codec;

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
}
