//! The writer: an event as the sections of an AMQP message, by hand (the
//! hot path: once per delivery to an AMQP receiver, and `message_len` for
//! the queue's accounting; `cargo bench --bench amqp_message` before
//! changing it). One code path writes and counts (`Sink`), so the length
//! is the written length by construction; numbers are fixed-width so that
//! the length does not depend on the clock (the ttl).

use super::{
    value_len, AMQP_SEQUENCE, AMQP_VALUE, APPLICATION_PROPERTIES, BODY_PROPERTY,
    CLOUDEVENTS_PREFIX, DATA, HEADER, MESSAGE_ANNOTATIONS, MESSAGE_ID_PROPERTY, PROPERTIES,
    SUBJECT_PROPERTY,
};
use crate::amqp::address;
use crate::event::{now_ns, Event, EventMeta};

/// Where the writer puts bytes: the output buffer, or a counter (so that
/// `message_len` runs the writer's own code).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

struct Count(usize);

impl Sink for Count {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// The sections of an event as an AMQP message: header (durable when
/// qos 1, delivery-count), properties, application-properties, body.
/// Appends to `out`; no allocation but `out`'s growth (and, for a NATS
/// request, its reply subject converted to a topic: one `String`).
pub fn write_message(event: &Event, qos: u8, delivery_count: u32, out: &mut Vec<u8>) {
    let ttl_ms = event.meta.as_deref().and_then(|m| m.expires_ns).map(|at| {
        at.saturating_sub(now_ns())
            .div_ceil(1_000_000)
            .clamp(1, u64::from(u32::MAX)) as u32
    });
    write_sections(event, qos, delivery_count, ttl_ms, out);
}

/// Bytes `write_message` appends for these arguments.
pub fn message_len(event: &Event, qos: u8, delivery_count: u32) -> usize {
    let ttl_ms = event.meta.as_deref().and_then(|m| m.expires_ns).map(|_| 0);
    let mut count = Count(0);
    write_sections(event, qos, delivery_count, ttl_ms, &mut count);
    count.0
}

fn write_sections<S: Sink>(
    event: &Event,
    qos: u8,
    delivery_count: u32,
    ttl_ms: Option<u32>,
    out: &mut S,
) {
    write_header(qos >= 1, ttl_ms, delivery_count, out);
    let meta = event.meta.as_deref();
    if let Some(m) = meta {
        write_trace_annotations(m, out);
    }
    // Cold: only a NATS request's reply subject needs converting.
    let nats_reply = meta
        .filter(|m| m.response_topic.is_none())
        .and_then(|m| m.reply.as_deref())
        .and_then(|r| crate::topic::subject::to_internal(r, false, usize::MAX).ok());
    let reply = meta
        .and_then(|m| m.response_topic.as_deref())
        .or(nats_reply.as_deref());
    write_properties(event, meta, reply, out);
    if let Some(m) = meta {
        write_application_properties(m, out);
    }
    write_body(event.payload(), meta, out);
}

/// The header section, only when a field differs from its default.
/// Numbers are fixed-width (uint, 0x70) so that the length does not
/// depend on the value (the ttl is read from the clock once per write).
fn write_header<S: Sink>(durable: bool, ttl_ms: Option<u32>, delivery_count: u32, out: &mut S) {
    if !durable && ttl_ms.is_none() && delivery_count == 0 {
        return;
    }
    // durable, priority, ttl, first-acquirer, delivery-count; trailing
    // defaults left out.
    let count: u8 = if delivery_count > 0 {
        5
    } else if ttl_ms.is_some() {
        3
    } else {
        1
    };
    let size = 1 + match count {
        5 => 1 + 1 + ttl_ms.map_or(1, |_| 5) + 1 + 5,
        3 => 1 + 1 + 5,
        _ => 1,
    };
    out.put(&[0x00, 0x53, HEADER as u8, 0xc0, size, count]);
    out.put(&[if durable { 0x41 } else { 0x42 }]);
    if count >= 3 {
        out.put(&[0x40]);
        match ttl_ms {
            Some(ms) => {
                out.put(&[0x70]);
                out.put(&ms.to_be_bytes());
            }
            None => out.put(&[0x40]),
        }
    }
    if count == 5 {
        out.put(&[0x40, 0x70]);
        out.put(&delivery_count.to_be_bytes());
    }
}

/// The trace context as the W3C AMQP draft wants it from an intermediary
/// (weft sets a new parent id at every router, `trace`): in the
/// message-annotations section, `traceparent` and `tracestate` (symbol
/// keys, string values), which readers look at before the
/// application-properties (where the same values are too, as user
/// properties). Nothing for an event without a `traceparent`.
fn write_trace_annotations<S: Sink>(meta: &EventMeta, out: &mut S) {
    use crate::trace::hop::{TRACEPARENT, TRACESTATE};
    // A CloudEvent's `traceparent` attribute is the extension's (the
    // starting trace, `cloudEvents:traceparent`), not this hop's.
    let props =
        crate::trace::hop::w3c_props(meta.user_properties.iter().map(|(k, v)| (&**k, &**v)));
    let find = |name: &str| {
        props
            .clone()
            .chain(header_lines(meta.headers.as_deref().unwrap_or_default()))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let Some(traceparent) = find(TRACEPARENT) else {
        return;
    };
    let tracestate = find(TRACESTATE);
    let count = if tracestate.is_some() { 4 } else { 2 };
    put_compound(MESSAGE_ANNOTATIONS, true, count, out, |o| {
        put_variable(SYM, TRACEPARENT.as_bytes(), o);
        put_variable(STR, traceparent.as_bytes(), o);
        if let Some(ts) = tracestate {
            put_variable(SYM, TRACESTATE.as_bytes(), o);
            put_variable(STR, ts.as_bytes(), o);
        }
    });
}

/// str8/str32 (0xa1/0xb1), vbin8/vbin32 (0xa0/0xb0), sym8/sym32
/// (0xa3/0xb3): the 8-bit form when the length fits a byte.
fn put_variable<S: Sink + ?Sized>(code8: u8, bytes: &[u8], out: &mut S) {
    match u8::try_from(bytes.len()) {
        Ok(len) => out.put(&[code8, len]),
        Err(_) => {
            out.put(&[code8 + 0x10]);
            out.put(&(bytes.len() as u32).to_be_bytes());
        }
    }
    out.put(bytes);
}

const STR: u8 = 0xa1;
const VBIN: u8 = 0xa0;
const SYM: u8 = 0xa3;

/// A list or map section: the descriptor, the list8/map8 (or 32) head
/// with `count` items, then `items` (written twice when counting first:
/// once to size the head).
fn put_compound<S: Sink>(
    code: u64,
    map: bool,
    count: usize,
    out: &mut S,
    items: impl Fn(&mut dyn Sink),
) {
    let mut size = Count(0);
    items(&mut size);
    out.put(&[0x00, 0x53, code as u8]);
    let (c8, c32) = if map { (0xc1, 0xd1) } else { (0xc0, 0xd0) };
    match (u8::try_from(size.0 + 1), u8::try_from(count)) {
        (Ok(size), Ok(count)) => out.put(&[c8, size, count]),
        _ => {
            out.put(&[c32]);
            out.put(&((size.0 + 4) as u32).to_be_bytes());
            out.put(&(count as u32).to_be_bytes());
        }
    }
    items(out);
}

fn user_property<'a>(meta: Option<&'a EventMeta>, name: &str) -> Option<&'a str> {
    meta?
        .user_properties
        .iter()
        .find(|(k, _)| &**k == name)
        .map(|(_, v)| &**v)
}

/// The properties section: message-id, user-id, to, subject, reply-to,
/// correlation-id, content-type; trailing nulls left out (`to` is always
/// there).
fn write_properties<S: Sink>(
    event: &Event,
    meta: Option<&EventMeta>,
    reply: Option<&str>,
    out: &mut S,
) {
    let message_id = user_property(meta, MESSAGE_ID_PROPERTY);
    let subject = user_property(meta, SUBJECT_PROPERTY);
    let correlation = meta.and_then(|m| m.correlation_data.as_deref());
    // A symbol is ASCII (part 1.6.20): another content type is not sent.
    let content_type = meta
        .and_then(|m| m.content_type.as_deref())
        .filter(|c| c.is_ascii());
    let to = address::render(event.topic());
    let reply = reply.map(address::render);
    let count = if content_type.is_some() {
        7
    } else if correlation.is_some() {
        6
    } else if reply.is_some() {
        5
    } else if subject.is_some() {
        4
    } else {
        3
    };
    let string_or_null = |s: Option<&str>, o: &mut dyn Sink| match s {
        Some(s) => put_variable(STR, s.as_bytes(), o),
        None => o.put(&[0x40]),
    };
    put_compound(PROPERTIES, false, count, out, |o| {
        string_or_null(message_id, o);
        o.put(&[0x40]); // user-id: weft's identity is not the publisher's claim
        put_variable(STR, to.as_bytes(), o);
        if count >= 4 {
            string_or_null(subject, o);
        }
        if count >= 5 {
            string_or_null(reply.as_deref(), o);
        }
        if count >= 6 {
            // A correlation id that is text goes as a string (clients
            // compare it with the string id they sent), other bytes as
            // binary.
            match correlation {
                Some(c) => match std::str::from_utf8(c) {
                    Ok(text) => put_variable(STR, text.as_bytes(), o),
                    Err(_) => put_variable(VBIN, c, o),
                },
                None => o.put(&[0x40]),
            }
        }
        if count >= 7 {
            put_variable(SYM, content_type.unwrap_or_default().as_bytes(), o);
        }
    });
}

/// The application property name of a user property: CloudEvents
/// attributes get the AMQP binding's prefix when the event is a
/// binary-mode CloudEvent (it has the required attributes).
fn application_property_name(name: &str, cloudevent: bool) -> (&'static str, &str) {
    if cloudevent && crate::cloudevents::valid_name(name) {
        (CLOUDEVENTS_PREFIX, name)
    } else {
        ("", name)
    }
}

/// The `name: value` fields of a NATS header block, as
/// `event::header_fields` reads them, without collecting them.
fn header_lines(block: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    crate::trace::hop::block_fields(block)
}

/// Up to this many application properties, a repeated name is found by
/// scanning those before it (no allocation, the common case); past it, by
/// one hash set per write (review 1.5: the scan was quadratic, 20k
/// properties took minutes).
const DEDUP_SCAN_MAX: usize = 16;

/// The application-properties section: user properties (but those
/// written as AMQP properties or the body) and a NATS publisher's header
/// fields, as string values. A name given twice is written once (the
/// first; AMQP maps have unique keys).
fn write_application_properties<S: Sink>(meta: &EventMeta, out: &mut S) {
    let cloudevent = crate::cloudevents::REQUIRED
        .iter()
        .all(|r| meta.user_properties.iter().any(|(k, _)| &**k == *r));
    let entries = || {
        meta.user_properties
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .filter(|(k, _)| ![MESSAGE_ID_PROPERTY, SUBJECT_PROPERTY, BODY_PROPERTY].contains(k))
            .map(move |(k, v)| (application_property_name(k, cloudevent), v))
            .chain(
                header_lines(meta.headers.as_deref().unwrap_or_default())
                    .map(|(k, v)| (("", k), v)),
            )
    };
    let n = entries().count();
    if n == 0 {
        return;
    }
    // Many: which entries are the first of their name, found once.
    let firsts: Option<Vec<bool>> = (n > DEDUP_SCAN_MAX).then(|| {
        let mut seen = std::collections::HashSet::with_capacity(n);
        entries().map(|(k, _)| seen.insert(k)).collect()
    });
    let first = |i: usize, key: (&str, &str)| match &firsts {
        Some(firsts) => firsts[i],
        None => !entries().take(i).any(|(k, _)| k == key),
    };
    let count = match &firsts {
        Some(firsts) => firsts.iter().filter(|f| **f).count(),
        None => entries()
            .enumerate()
            .filter(|&(i, (k, _))| first(i, k))
            .count(),
    };
    put_compound(APPLICATION_PROPERTIES, true, count * 2, out, |o| {
        for (i, ((prefix, name), value)) in entries().enumerate() {
            if !first(i, (prefix, name)) {
                continue;
            }
            let key_len = prefix.len() + name.len();
            match u8::try_from(key_len) {
                Ok(len) => o.put(&[STR, len]),
                Err(_) => {
                    o.put(&[STR + 0x10]);
                    o.put(&(key_len as u32).to_be_bytes());
                }
            }
            o.put(prefix.as_bytes());
            o.put(name.as_bytes());
            put_variable(STR, value.as_bytes(), o);
        }
    });
}

/// The body: one `data` section holding the payload, or the payload as
/// the `amqp-value` / `amqp-sequence` sections it was read from.
fn write_body<S: Sink>(payload: &[u8], meta: Option<&EventMeta>, out: &mut S) {
    match user_property(meta, BODY_PROPERTY) {
        Some("value") if value_len(payload, 0).ok() == Some(payload.len()) => {
            out.put(&[0x00, 0x53, AMQP_VALUE as u8]);
            out.put(payload);
            return;
        }
        Some("sequence") if is_list_sequence(payload) => {
            let mut at = 0;
            while at < payload.len() {
                let len = value_len(&payload[at..], 0).expect("checked");
                out.put(&[0x00, 0x53, AMQP_SEQUENCE as u8]);
                out.put(&payload[at..at + len]);
                at += len;
            }
            return;
        }
        _ => {}
    }
    out.put(&[0x00, 0x53, DATA as u8]);
    put_variable(VBIN, payload, out);
}

/// Whether `payload` is one or more AMQP lists back to back.
fn is_list_sequence(payload: &[u8]) -> bool {
    let mut at = 0;
    while at < payload.len() {
        if !matches!(payload[at], 0x45 | 0xc0 | 0xd0) {
            return false;
        }
        match value_len(&payload[at..], 0) {
            Ok(len) => at += len,
            Err(_) => return false,
        }
    }
    !payload.is_empty()
}
