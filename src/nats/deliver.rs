//! How an event is written as a NATS MSG/HMSG for one subscription (MQTT 5
//! user properties → headers, Response Topic → reply subject), and how
//! many bytes that takes (for the mailbox's queue accounting).
//!
//! Owns: the NATS form of a delivery. Must not touch: queues, sockets.
//! Hot path: `frame` runs once per event and shard that has NATS
//! subscribers (the router's delivery loop), its `MsgFrame::put` once per
//! delivery, straight into the session's queue; an event from a NATS or
//! plain MQTT publisher costs no allocation. `write` is the same bytes for
//! one delivery. Rerun `weft bench` (NATS) and `cargo bench --bench
//! nats_deliver` after changing it.
//!
//! CloudEvents (`cloudevents`): an MQTT 5 or HTTP publisher's CloudEvent
//! (attributes as user properties) reaches a NATS subscriber in the NATS
//! binding's binary mode (`ce-` headers, 1.0.3 draft 3.1.3), a structured
//! one with its `Content-Type` header; a NATS publisher's headers pass as
//! they are. Only events with metadata get there.

use crate::event::{header_safe, Event};
use crate::nats::frame::MsgFrame;
use crate::nats::{codec, subject};
use crate::topic::client_topic;

/// The NATS subject of the event's topic (see `nats::subject`) as its
/// client wrote it (an account's prefix removed, `security::accounts`):
/// converted once per event and shard, shared by its NATS subscribers.
pub fn subject(event: &Event) -> Vec<u8> {
    let topic = client_topic(event.topic());
    let mut out = Vec::with_capacity(subject::nats_len(topic));
    subject::write_nats(topic, &mut out);
    out
}

/// Bytes `event` takes as a NATS MSG/HMSG for subscription `sid`, with a
/// subject of `subject_len` bytes.
pub fn wire_len(event: &Event, subject_len: usize, sid: &str) -> usize {
    if let Some(m) = event.meta.as_deref() {
        if let Some(block) = cloudevent_headers(m) {
            return codec::msg_len(
                subject_len,
                sid,
                event.reply(),
                Some(&block),
                event.payload().len(),
            ) + m.response_topic.as_ref().map_or(0, |r| r.len() + 1);
        }
    }
    let converted = event.meta.as_deref().map_or(0, |m| {
        m.response_topic.as_ref().map_or(0, |r| r.len() + 1)
            + m.user_properties
                .iter()
                .filter(|(k, v)| header_safe(k, v))
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + if m.user_properties.is_empty() {
                0
            } else {
                12 + 10
            }
    });
    codec::msg_len(
        subject_len,
        sid,
        event.reply(),
        event.headers(),
        event.payload().len(),
    ) + converted
}

/// The event's MSG/HMSG on `subject` for all its NATS subscriptions of
/// one delivery round: built once, then `put` per sid (the bytes `write`
/// writes; exactly its `len(sid)` long).
pub fn frame(event: &Event, subject: &[u8]) -> MsgFrame {
    let payload_len = event.payload().len();
    if event.meta.is_none() {
        return MsgFrame::new(subject, None, None, payload_len);
    }
    let (reply, headers) = reply_and_headers(event);
    MsgFrame::new(
        subject,
        reply.as_deref().or(event.reply()),
        headers.as_deref().or(event.headers()),
        payload_len,
    )
}

/// Appends the NATS MSG/HMSG for subscription `sid`.
pub fn write(event: &Event, out: &mut Vec<u8>, subject: &[u8], sid: &str) {
    let (reply, headers) = reply_and_headers(event);
    codec::put_msg(
        out,
        |o| o.extend_from_slice(subject),
        sid,
        reply.as_deref().or(event.reply()),
        headers.as_deref().or(event.headers()),
        event.payload(),
    );
}

/// For events from MQTT 5: the reply subject and header block NATS
/// subscribers get (None where the event has its own NATS forms).
fn reply_and_headers(event: &Event) -> (Option<String>, Option<Vec<u8>>) {
    let Some(m) = event.meta.as_deref() else {
        return (None, None);
    };
    let reply = match (&m.reply, &m.response_topic) {
        (None, Some(topic)) => Some(subject::to_nats(topic)),
        _ => None,
    };
    if let Some(block) = cloudevent_headers(m) {
        return (reply, Some(block));
    }
    let headers = (m.headers.is_none() && !m.user_properties.is_empty()).then(|| {
        let mut h = b"NATS/1.0\r\n".to_vec();
        for (k, v) in m.user_properties.iter().filter(|(k, v)| header_safe(k, v)) {
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

/// The NATS binding's header block of an MQTT 5 or HTTP publisher's
/// CloudEvent (None for other events and for NATS publishers' blocks).
#[cold]
#[inline(never)]
fn cloudevent_headers(meta: &crate::event::EventMeta) -> Option<Vec<u8>> {
    if meta.headers.is_some() || (meta.user_properties.is_empty() && meta.content_type.is_none()) {
        return None;
    }
    crate::cloudevents::nats_headers(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventMeta;

    #[test]
    fn nats_framing() {
        let e = Event::new("a/b.c", b"hi", 0, false).with_meta(EventMeta {
            reply: Some("_INBOX.1".into()),
            ..Default::default()
        });
        let mut out = Vec::new();
        let subject = subject(&e);
        write(&e, &mut out, &subject, "7");
        assert_eq!(out, b"MSG a.b//c 7 _INBOX.1 2\r\nhi\r\n");
        assert_eq!(out.len(), wire_len(&e, subject.len(), "7"));
        assert_same_as_write(&e);
        let plain = Event::new("a", b"", 0, false).with_meta(EventMeta::default());
        assert!(plain.meta.is_none(), "empty metadata costs nothing");
    }

    #[test]
    fn user_properties_cannot_add_header_lines() {
        let e = Event::new("a", b"hi", 0, false).with_meta(EventMeta {
            user_properties: vec![
                ("ok".into(), "fine".into()),
                ("evil\r\nInjected".into(), "1".into()),
                ("k".into(), "v\r\nInjected: yes".into()),
                ("split:name".into(), "x".into()),
            ],
            ..Default::default()
        });
        let mut out = Vec::new();
        let subject = subject(&e);
        write(&e, &mut out, &subject, "1");
        assert_eq!(
            out,
            b"HMSG a 1 22 24\r\nNATS/1.0\r\nok: fine\r\n\r\nhi\r\n".as_slice()
        );
        // The queue's byte count is an upper bound for HMSG (room for the
        // two lengths' digits), never less than what is written.
        assert!(out.len() <= wire_len(&e, subject.len(), "1"));
        assert_same_as_write(&e);
    }

    /// `frame(..).put` writes what `write` writes, and says how long.
    fn assert_same_as_write(e: &Event) {
        let subject = subject(e);
        let frame = frame(e, &subject);
        for sid in ["1", "42", "a-long-sid-0123456789"] {
            let mut want = Vec::new();
            write(e, &mut want, &subject, sid);
            let mut got = Vec::new();
            frame.put(&mut got, sid, e.payload());
            assert_eq!(got, want);
            assert_eq!(frame.len(sid), want.len());
        }
    }

    #[test]
    fn frame_writes_what_write_writes() {
        let plain = Event::new("a/b", b"payload", 0, false);
        assert_same_as_write(&plain);
        let empty = Event::new("x", b"", 0, false);
        assert_same_as_write(&empty);
        let nats_headers = Event::new("a", b"hi", 0, false).with_meta(EventMeta {
            reply: Some("_INBOX.9".into()),
            headers: Some(b"NATS/1.0\r\nk: v\r\n\r\n".to_vec().into()),
            ..Default::default()
        });
        assert_same_as_write(&nats_headers);
        let mqtt5 = Event::new("a/b", b"hi", 0, false).with_meta(EventMeta {
            response_topic: Some("resp/x".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        });
        assert_same_as_write(&mqtt5);
        let cloudevent = Event::new("a/b", b"{}", 0, false).with_meta(EventMeta {
            content_type: Some("application/json".into()),
            user_properties: vec![
                ("ce-specversion".into(), "1.0".into()),
                ("ce-type".into(), "t".into()),
                ("ce-source".into(), "s".into()),
                ("ce-id".into(), "1".into()),
            ],
            ..Default::default()
        });
        assert_same_as_write(&cloudevent);
    }

    #[test]
    fn account_prefix_is_not_written() {
        let e = Event::new("$weft/acct/A/a/b", b"hi", 0, false);
        assert_eq!(subject(&e), b"a.b");
    }
}
