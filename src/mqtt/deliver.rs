//! How an event is written as an MQTT PUBLISH for one subscriber, in 3.1.1
//! and in 5 (its metadata as properties), and how many bytes that takes
//! (for the mailbox's queue accounting).
//!
//! Owns: the MQTT forms of a delivery. Must not touch: queues, sockets.
//! Hot path: `write` runs once per delivery into the writer's batch; a
//! QoS 0 delivery writes a fixed header and copies the event's shared
//! buffer (length-prefixed topic, payload) whole, with no allocation.
//! Rerun `weft bench` (MQTT QoS 0 and 1) after changing it.
//!
//! An event of another account than the default one has an internal
//! topic (`security::accounts`, `topic::client_topic`): the frame carries the client's topic, a
//! slice of it, so such a QoS 0 delivery takes the topic and payload
//! slices instead of the shared buffer whole.
//!
//! CloudEvents (`cloudevents`): an MQTT 3.1.1 subscriber gets a binary-mode
//! CloudEvent as structured JSON (the MQTT binding 1.3 allows 3.1.1 only
//! structured mode), an MQTT 5 subscriber a NATS publisher's `ce-`
//! headers as the MQTT binding's user properties and Content Type. Both
//! run in cold functions behind the one `event.meta` test an event
//! without metadata already paid.

use crate::cloudevents;
use crate::event::{now_ns, Event};
use crate::mqtt::codec;
use crate::topic::client_topic;

/// Bytes at the front of the event's topic that its client does not see
/// (an account's prefix): 0 for topics outside `$`, told from one byte
/// inline; the rest out of line, so that the hot callers stay as small
/// as they were (`perf/callgrind.sh`: ~+130 instructions per QoS 0
/// message when the check went through `Event::topic`).
/// The byte is read from the shared buffer (after the topic's length),
/// not through `Event::topic`, whose UTF-8 debug assertion the measured
/// builds keep.
#[inline(always)]
fn hidden(event: &Event) -> usize {
    if event.prefixed_topic_and_payload().get(2) != Some(&b'$') {
        return 0;
    }
    hidden_slow(event)
}

#[cold]
#[inline(never)]
fn hidden_slow(event: &Event) -> usize {
    let topic = event.topic();
    topic.len() - client_topic(topic).len()
}

/// Bytes `event` takes when delivered at `qos` (MQTT 3.1.1).
#[inline]
pub fn wire_len(event: &Event, qos: u8) -> usize {
    if event.meta.is_some() {
        if let Some(len) = cloudevent_wire_len(event, qos) {
            return len;
        }
    }
    plain_wire_len(event, qos)
}

/// The 3.1.1 PUBLISH of `event` with its own payload.
#[inline(always)]
fn plain_wire_len(event: &Event, qos: u8) -> usize {
    // `codec::publish_len`, from the one length the event has at hand,
    // less the account prefix the client does not see.
    let remaining =
        event.prefixed_topic_and_payload().len() - hidden(event) + if qos > 0 { 2 } else { 0 };
    1 + codec::remaining_length_len(remaining) + remaining
}

/// Appends the PUBLISH for one subscriber.
/// `retain` is set only for retained messages sent on subscribe
/// (MQTT-3.3.1-8/9).
pub fn write(event: &Event, out: &mut Vec<u8>, qos: u8, packet_id: u16, dup: bool, retain: bool) {
    if event.meta.is_some() && write_cloudevent(event, out, qos, packet_id, dup, retain) {
        return;
    }
    let hidden = hidden(event);
    if qos == 0 && hidden == 0 {
        codec::put_publish_prefixed(out, retain, event.prefixed_topic_and_payload());
    } else {
        codec::put_publish(
            out,
            dup,
            qos,
            retain,
            &event.topic().as_bytes()[hidden..],
            packet_id,
            event.payload(),
        );
    }
}

/// A binary-mode CloudEvent for a 3.1.1 subscriber: its structured JSON
/// as the payload (false: not one, the caller writes the event as it is).
#[cold]
#[inline(never)]
fn write_cloudevent(
    event: &Event,
    out: &mut Vec<u8>,
    qos: u8,
    packet_id: u16,
    dup: bool,
    retain: bool,
) -> bool {
    let Some(json) = cloudevents::structured_for_v3(event) else {
        return false;
    };
    let topic = &event.topic().as_bytes()[hidden(event)..];
    codec::put_publish(out, dup, qos, retain, topic, packet_id, &json);
    true
}

/// The length `write_cloudevent` writes (the JSON rendered to count it:
/// a cold path, paid by CloudEvents to 3.1.1 subscribers only).
#[cold]
#[inline(never)]
fn cloudevent_wire_len(event: &Event, qos: u8) -> Option<usize> {
    let json = cloudevents::structured_for_v3(event)?;
    let topic_len = event.topic().len() - hidden(event);
    let remaining = 2 + topic_len + if qos > 0 { 2 } else { 0 } + json.len();
    Some(1 + codec::remaining_length_len(remaining) + remaining)
}

/// Appends an MQTT 5 PUBLISH: the metadata becomes properties (NATS
/// headers → user properties, NATS reply → Response Topic) and the
/// remaining expiry interval is forwarded (MQTT-3.3.2-6).
/// `sub_ids`: identifiers of the matching subscriptions; `alias`: a
/// topic alias, with `true` when the topic goes along to set it.
#[allow(clippy::too_many_arguments)]
pub fn write_v5(
    event: &Event,
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
    let cloudevent;
    if let Some(m) = event.meta.as_deref() {
        props.payload_format_indicator = m.payload_format;
        props.content_type = m.content_type.as_deref();
        props.correlation_data = m.correlation_data.as_deref();
        props.response_topic = m.response_topic.as_deref();
        if props.response_topic.is_none() {
            if let Some(reply) = &m.reply {
                nats_reply_topic = crate::nats::subject::to_internal(reply, false, usize::MAX).ok();
                props.response_topic = nats_reply_topic.as_deref();
            }
        }
        props.user_properties = m
            .user_properties
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .collect();
        if let Some(h) = &m.headers {
            // A NATS publisher's CloudEvent: the MQTT binding's form
            // (3.1.1 Content Type, 3.1.3 user properties); other header
            // blocks: every field a user property, as it is.
            if let Some(form) = cloudevents::mqtt5_from_nats_headers(h) {
                cloudevent = form;
                props.user_properties.extend(
                    cloudevent
                        .user_properties
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                );
                if props.content_type.is_none() {
                    props.content_type = cloudevent.content_type.as_deref();
                }
            } else {
                header_pairs = crate::nats::codec::header_fields(h);
                props
                    .user_properties
                    .extend(header_pairs.iter().map(|(k, v)| (*k, *v)));
            }
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
            _ => client_topic(event.topic()),
        },
        packet_id: if qos > 0 { packet_id } else { 0 },
        properties: props,
        payload: event.payload(),
    });
    // Only fails on an internal inconsistency (e.g. a 64 KiB string):
    // the event was validated on the way in.
    let _ = v5::encode(&packet, out);
}

/// Bytes of the MQTT 5 PUBLISH (estimated for metadata-rich events;
/// used for queue accounting).
pub fn wire_len_v5(event: &Event, qos: u8) -> usize {
    let extra = event.meta.as_deref().map_or(0, |m| {
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
    plain_wire_len(event, qos) + 4 + extra
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::{decode, DecodeLimits, Packet, Publish};

    /// Every size of remaining length (1 to 3 bytes) at QoS 0 and 1:
    /// `wire_len` is what `write` writes, and it decodes back.
    #[test]
    fn frames_decode_back() {
        let limits = DecodeLimits {
            packet_bytes_max: 1 << 20,
            ..DecodeLimits::default()
        };
        for size in [5, 120, 200, 20_000] {
            let payload = vec![7u8; size];
            let e = Event::new("a/b", &payload, 1, true);
            assert_eq!(e.topic(), "a/b");
            assert_eq!(e.payload(), &payload[..]);
            for (qos, id) in [(0u8, 0u16), (1, 77)] {
                let mut out = Vec::new();
                write(&e, &mut out, qos, id, false, false);
                assert_eq!(out.len(), wire_len(&e, qos), "{size} B at QoS {qos}");
                let (p, _) = decode(&out, &limits).unwrap().unwrap();
                assert_eq!(
                    p,
                    Packet::Publish(Publish {
                        dup: false,
                        qos,
                        retain: false,
                        topic: "a/b",
                        packet_id: id,
                        payload: &payload,
                    })
                );
            }
        }
    }

    /// An account's event is written with the client's topic, at every
    /// QoS and version, and `wire_len` stays exact.
    #[test]
    fn account_prefix_is_not_written() {
        let limits = DecodeLimits::default();
        let e = Event::new("$weft/acct/A/a/b", b"hi", 1, false);
        for (qos, id) in [(0u8, 0u16), (1, 9)] {
            let mut out = Vec::new();
            write(&e, &mut out, qos, id, false, false);
            assert_eq!(out.len(), wire_len(&e, qos));
            let (p, _) = decode(&out, &limits).unwrap().unwrap();
            let Packet::Publish(p) = p else {
                panic!("{p:?}")
            };
            assert_eq!((p.topic, p.payload, p.qos), ("a/b", &b"hi"[..], qos));
            let mut out = Vec::new();
            write_v5(&e, &mut out, qos, id, false, false, &[], None);
            let text = String::from_utf8_lossy(&out);
            assert!(text.contains("a/b") && !text.contains("$weft"), "{text}");
        }
    }
}
