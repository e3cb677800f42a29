//! What an event carries over a link besides its routing fields (QoS,
//! retain flag and stamp, payload, MQTT 5 / NATS metadata), in both
//! directions: taken from a shard's [`Event`] for the frames this router
//! sends, and turned back into an [`Event`] for what arrives.
//!
//! Owns: the [`Body`] type and its conversions. Must not touch links,
//! buffers or the routing core: it borrows, so one event's body serves
//! every copy made of it without a copy of the payload.

use super::*;
use crate::event::EventMeta;
use crate::mesh::link::LinkMeta;

/// The part of an event a copy carries besides the routing fields.
pub(super) struct Body<'a> {
    pub(super) qos: u8,
    pub(super) retain: bool,
    /// A retained message's stamp (`topic::retained`); 0 = none.
    pub(super) stamp: u64,
    /// A retained-store exchange: stored where newer, never delivered,
    /// never in the resend store (a new link exchanges stores again).
    pub(super) sync: bool,
    pub(super) payload: &'a [u8],
    pub(super) meta: LinkMeta<'a>,
}

impl<'a> Body<'a> {
    pub(super) fn of_event(e: &'a Event) -> Body<'a> {
        let meta = match &e.meta {
            None => LinkMeta::default(),
            Some(m) => LinkMeta {
                reply: m.reply.as_deref(),
                headers: m.headers.as_deref(),
                response_topic: m.response_topic.as_deref(),
                correlation_data: m.correlation_data.as_deref(),
                content_type: m.content_type.as_deref(),
                payload_format: m.payload_format,
                user_properties: m
                    .user_properties
                    .iter()
                    .map(|(k, v)| (&**k, &**v))
                    .collect(),
                expiry_ms: m.expires_ns.map(|at| {
                    let left = at.saturating_sub(now_ns());
                    u32::try_from(left.div_ceil(1_000_000)).unwrap_or(u32::MAX)
                }),
            },
        };
        Body {
            qos: e.qos,
            retain: e.retain,
            stamp: 0,
            sync: false,
            payload: e.payload(),
            meta,
        }
    }

    pub(super) fn of_frame(e: &link::Event<'a>) -> Body<'a> {
        Body {
            qos: e.qos,
            retain: e.retain,
            stamp: e.stamp,
            sync: e.sync,
            payload: e.payload,
            meta: e.meta.clone(),
        }
    }

    /// A retained message stamped `stamp`; `sync`: see the field.
    pub(super) fn stamped(mut self, stamp: u64, sync: bool) -> Body<'a> {
        self.stamp = stamp;
        self.sync = sync;
        self
    }

    /// The event to hand to this router's subscribers, read (or made) at
    /// `born_ns` ([`now_ns`] time: one clock read per read, not per event).
    pub(super) fn to_event(&self, topic: &str, origin: Origin, born_ns: u64) -> Event {
        let mut event = Event::new(topic, self.payload, self.qos, self.retain).with_origin(origin);
        event.born_ns = born_ns;
        let m = &self.meta;
        if m.reply.is_none()
            && m.headers.is_none()
            && m.response_topic.is_none()
            && m.correlation_data.is_none()
            && m.content_type.is_none()
            && m.payload_format.is_none()
            && m.user_properties.is_empty()
            && m.expiry_ms.is_none()
        {
            // Nearly every event: no metadata to build (and drop).
            return event;
        }
        let meta = EventMeta {
            reply: m.reply.map(Into::into),
            headers: m.headers.map(Into::into),
            response_topic: m.response_topic.map(Into::into),
            correlation_data: m.correlation_data.map(Into::into),
            content_type: m.content_type.map(Into::into),
            payload_format: m.payload_format,
            user_properties: m
                .user_properties
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            expires_ns: m.expiry_ms.map(|ms| born_ns + u64::from(ms) * 1_000_000),
        };
        event.with_meta(meta)
    }
}
