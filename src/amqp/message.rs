//! AMQP 1.0 messages ⇄ weft's events: the sections of a bare message
//! (AMQP 1.0 part 3.2) read into an `Event`, and an event written as those
//! sections for a receiver.
//!
//! Owns: the mapping between AMQP's header, properties,
//! application-properties and body and `Event`/`EventMeta` (the README's
//! "AMQP 1.0" table), the section order rules, the bounds of the reader.
//! Must not touch: transfers, links, settlement (`amqp::session`,
//! `amqp::outbound`), the meaning of the topic (`amqp::address`).
//!
//! In: one pass over the sections (`scan`: descriptor and length of each,
//! every length checked against the bytes left) that checks their order
//! (header, delivery-annotations, message-annotations, properties,
//! application-properties, body, footer; each at most once, the body one
//! kind), then the sections weft maps are decoded with `serde_amqp` /
//! `fe2o3-amqp-types` (header, properties, application-properties); a
//! `data` body is taken as it lies (no copy but the event's one). The
//! annotations and the footer are checked to be maps and dropped (they
//! are for intermediaries and for the link they came on).
//!
//! Out: hand-written (the hot path: once per delivery to an AMQP
//! receiver, `cargo bench --bench amqp_message`), no allocation for an
//! event without metadata: `write_message` appends, `message_len` counts
//! the same code with a counting sink, so the two agree by construction.
//! An event without metadata is the minimum: a header only when needed
//! (qos 1: durable; a redelivery: delivery-count), properties with `to`,
//! one `data` section.
//!
//! Bodies: `data` sections are the payload (several: concatenated); an
//! `amqp-value` holding a string or binary is the payload (a string also
//! sets the payload format to UTF-8), holding null an empty payload, as
//! no body section at all (proton sends that, PROTON-2574); any other `amqp-value`, and
//! `amqp-sequence` sections, keep their AMQP encoding as the payload with
//! the user property `amqp-body` (`value` / `sequence`), so that an AMQP
//! receiver gets the same body section back (checked to be well-formed
//! before it is written so: an MQTT publisher may set the property too).

use std::borrow::Cow;

use fe2o3_amqp_types::messaging::{ApplicationProperties, Header, MessageId, Properties};
use fe2o3_amqp_types::primitives::SimpleValue;

use crate::amqp::address;
use crate::event::{now_ns, wall_ns, Event, EventMeta, Origin};
use crate::topic::TopicLimits;

#[cfg(test)]
mod tests;
mod write;

pub use write::{message_len, write_message};

/// Why a message was refused; the text is the `amqp:decode-error`
/// description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageError(pub &'static str);

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MessageError {}

/// User properties that carry AMQP properties with no slot in `EventMeta`.
pub const MESSAGE_ID_PROPERTY: &str = "amqp-message-id";
pub const SUBJECT_PROPERTY: &str = "amqp-subject";
/// `value` or `sequence`: the payload is the AMQP encoding of that body.
pub const BODY_PROPERTY: &str = "amqp-body";
/// The CloudEvents AMQP binding's application-property prefixes (3.1.3.1;
/// `cloudEvents_` for JMS-bound clients). Read both, write the first.
pub const CLOUDEVENTS_PREFIX: &str = "cloudEvents:";
const CLOUDEVENTS_PREFIX_JMS: &str = "cloudEvents_";

// Section descriptors (part 3.2), as ulong codes and as symbols.
const HEADER: u64 = 0x70;
const DELIVERY_ANNOTATIONS: u64 = 0x71;
const MESSAGE_ANNOTATIONS: u64 = 0x72;
const PROPERTIES: u64 = 0x73;
const APPLICATION_PROPERTIES: u64 = 0x74;
const DATA: u64 = 0x75;
const AMQP_SEQUENCE: u64 = 0x76;
const AMQP_VALUE: u64 = 0x77;
const FOOTER: u64 = 0x78;
const SECTION_NAMES: [(&str, u64); 9] = [
    ("amqp:header:list", HEADER),
    ("amqp:delivery-annotations:map", DELIVERY_ANNOTATIONS),
    ("amqp:message-annotations:map", MESSAGE_ANNOTATIONS),
    ("amqp:properties:list", PROPERTIES),
    ("amqp:application-properties:map", APPLICATION_PROPERTIES),
    ("amqp:data:binary", DATA),
    ("amqp:amqp-sequence:list", AMQP_SEQUENCE),
    ("amqp:amqp-value:*", AMQP_VALUE),
    ("amqp:footer:map", FOOTER),
];

/// How deep described values may nest inside a section's value that the
/// scanner skips (a descriptor that is itself described, ...): bounds the
/// recursion on hostile input.
const DESCRIBED_DEPTH_MAX: u8 = 16;

// ---------------------------------------------------------------- reading

/// One top-level section: its descriptor code, the section's bytes
/// (descriptor included: what serde decodes) and its value's bytes.
#[derive(Clone, Copy)]
struct Section<'a> {
    code: u64,
    whole: &'a [u8],
    value: &'a [u8],
}

/// The section at the start of `bytes`.
fn section(bytes: &[u8]) -> Result<Section<'_>, MessageError> {
    if bytes[0] != 0x00 {
        return Err(MessageError("a message section is not a described type"));
    }
    let descriptor = &bytes[1..];
    let descriptor_len = value_len(descriptor, 0)?;
    let code = match descriptor[0] {
        0x44 => 0,
        0x53 => u64::from(descriptor[1]),
        0x80 => u64::from_be_bytes(descriptor[1..9].try_into().expect("checked")),
        0xa3 | 0xb3 => {
            let name = &descriptor[if descriptor[0] == 0xa3 { 2 } else { 5 }..descriptor_len];
            SECTION_NAMES
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .map_or(0, |&(_, code)| code)
        }
        _ => {
            return Err(MessageError(
                "a section descriptor is not a ulong or symbol",
            ))
        }
    };
    let value_at = 1 + descriptor_len;
    if value_at >= bytes.len() {
        return Err(MessageError("a message section ends before its value"));
    }
    let end = value_at + value_len(&bytes[value_at..], 0)?;
    Ok(Section {
        code,
        whole: &bytes[..end],
        value: &bytes[value_at..end],
    })
}

/// Bytes of the AMQP value encoded at the start of `bytes` (part 1.6),
/// checked against `bytes.len()`. Compound values are skipped by their
/// size; only described values recurse (bounded).
fn value_len(bytes: &[u8], depth: u8) -> Result<usize, MessageError> {
    const TRUNCATED: MessageError = MessageError("a value runs past the end of the message");
    let Some(&code) = bytes.first() else {
        return Err(TRUNCATED);
    };
    let sized = |width: usize| -> Result<usize, MessageError> {
        let size = match width {
            1 => bytes.get(1).map(|&b| usize::from(b)),
            _ => bytes
                .get(1..5)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize),
        }
        .ok_or(TRUNCATED)?;
        let len = (1 + width).checked_add(size).ok_or(TRUNCATED)?;
        Ok(len)
    };
    let len = match code {
        0x00 => {
            if depth >= DESCRIBED_DEPTH_MAX {
                return Err(MessageError("described values nest too deep"));
            }
            let descriptor = value_len(&bytes[1..], depth + 1)?;
            let value = bytes
                .get(1 + descriptor..)
                .filter(|rest| !rest.is_empty())
                .ok_or(TRUNCATED)?;
            1 + descriptor + value_len(value, depth + 1)?
        }
        0x40..=0x45 => 1,
        0x50..=0x56 => 2,
        0x60 | 0x61 => 3,
        0x70..=0x74 => 5,
        0x80..=0x84 => 9,
        0x94 | 0x98 => 17,
        0xa0 | 0xa1 | 0xa3 | 0xc0 | 0xc1 | 0xe0 => sized(1)?,
        0xb0 | 0xb1 | 0xb3 | 0xd0 | 0xd1 | 0xf0 => sized(4)?,
        _ => return Err(MessageError("unknown AMQP type constructor")),
    };
    if len > bytes.len() {
        return Err(TRUNCATED);
    }
    Ok(len)
}

/// The bytes of a binary (vbin8/vbin32) or string (str8/str32) value.
fn variable_bytes(value: &[u8]) -> Option<&[u8]> {
    match value[0] {
        0xa0 | 0xa1 => Some(&value[2..]),
        0xb0 | 0xb1 => Some(&value[5..]),
        _ => None,
    }
}

/// A map8/map32 whose count is even (keys and values alike are counted):
/// `serde_amqp` 0.18 subtracts 2 from the count per entry unchecked, so an
/// odd count overflows there (a panic in debug builds; found by the
/// `amqp_message` fuzz target).
fn is_map(value: &[u8]) -> bool {
    let count = match value[0] {
        0xc1 => value.get(2).map(|&c| u32::from(c)),
        0xd1 => value
            .get(5..9)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes"))),
        _ => None,
    };
    count.is_some_and(|c| c % 2 == 0)
}

/// Where a section may stand: sections come in this order, each once
/// (body sections of one kind may repeat, `data` and `amqp-sequence`).
fn rank(code: u64) -> Result<u8, MessageError> {
    Ok(match code {
        HEADER => 0,
        DELIVERY_ANNOTATIONS => 1,
        MESSAGE_ANNOTATIONS => 2,
        PROPERTIES => 3,
        APPLICATION_PROPERTIES => 4,
        DATA | AMQP_SEQUENCE | AMQP_VALUE => 5,
        FOOTER => 6,
        _ => return Err(MessageError("unknown message section descriptor")),
    })
}

/// The sections of one message, as slices of its bytes.
#[derive(Default)]
struct Sections<'a> {
    header: Option<Section<'a>>,
    /// Read only for the trace context (W3C AMQP draft).
    message_annotations: Option<Section<'a>>,
    properties: Option<Section<'a>>,
    application_properties: Option<Section<'a>>,
    /// The kind of the body sections and the bytes they span (all of
    /// them: they stand together).
    body: Option<(u64, &'a [u8])>,
    body_sections: usize,
}

/// The one pass over the sections: order, repetition, bounds.
fn scan(bytes: &[u8]) -> Result<Sections<'_>, MessageError> {
    if bytes.is_empty() {
        return Err(MessageError("empty message: no sections"));
    }
    let mut sections = Sections::default();
    let mut last: Option<u8> = None;
    let mut body_start = 0;
    let mut at = 0;
    while at < bytes.len() {
        let s = section(&bytes[at..])?;
        let r = rank(s.code)?;
        match last {
            Some(l) if r < l => return Err(MessageError("message sections out of order")),
            Some(5) if r == 5 => {
                let (kind, _) = sections.body.expect("a body section was seen");
                if kind != s.code {
                    return Err(MessageError("body sections of different kinds"));
                }
                if kind == AMQP_VALUE {
                    return Err(MessageError("more than one amqp-value section"));
                }
            }
            Some(l) if r == l => return Err(MessageError("a message section is repeated")),
            _ => {}
        }
        match s.code {
            DELIVERY_ANNOTATIONS | MESSAGE_ANNOTATIONS | FOOTER if !is_map(s.value) => {
                return Err(MessageError("annotations or footer are not a map"));
            }
            APPLICATION_PROPERTIES if !is_map(s.value) => {
                return Err(MessageError("application-properties are not a map"));
            }
            DATA if variable_bytes(s.value).is_none() || s.value[0] & 0x0f != 0 => {
                return Err(MessageError("a data section does not hold binary"));
            }
            AMQP_SEQUENCE if !matches!(s.value[0], 0x45 | 0xc0 | 0xd0) => {
                return Err(MessageError(
                    "an amqp-sequence section does not hold a list",
                ));
            }
            HEADER => sections.header = Some(s),
            MESSAGE_ANNOTATIONS => sections.message_annotations = Some(s),
            PROPERTIES => sections.properties = Some(s),
            APPLICATION_PROPERTIES => sections.application_properties = Some(s),
            _ => {}
        }
        if r == 5 {
            if sections.body.is_none() {
                body_start = at;
            }
            sections.body_sections += 1;
            sections.body = Some((s.code, &bytes[body_start..at + s.whole.len()]));
        }
        last = Some(r);
        at += s.whole.len();
    }
    Ok(sections)
}

/// The bare message of a transfer (its sections) to an event. `topic`:
/// the link's target topic, or None for an anonymous link (then
/// `properties.to` names it). `qos` as published. `origin` as other
/// protocols pass it.
pub fn to_event(
    bytes: &[u8],
    topic: Option<&str>,
    qos: u8,
    origin: Origin,
    limits: &TopicLimits,
) -> Result<Event, MessageError> {
    let sections = scan(bytes)?;
    let header: Option<Header> = sections
        .header
        .map(|s| serde_amqp::from_slice(s.whole))
        .transpose()
        .map_err(|_| MessageError("malformed header section"))?;
    let properties: Option<Properties> = sections
        .properties
        .map(|s| serde_amqp::from_slice(s.whole))
        .transpose()
        .map_err(|_| MessageError("malformed properties section"))?;
    let application_properties: Option<ApplicationProperties> = sections
        .application_properties
        .map(|s| serde_amqp::from_slice(s.whole))
        .transpose()
        .map_err(|_| MessageError("malformed application-properties section"))?;

    let named;
    let topic = match topic {
        Some(topic) => topic,
        None => {
            let to = properties
                .as_ref()
                .and_then(|p| p.to.as_deref())
                .ok_or(MessageError(
                    "a message on an anonymous link needs properties.to",
                ))?;
            named = address::topic(to, limits)
                .map_err(|_| MessageError("properties.to is not a valid topic"))?;
            &named
        }
    };

    let mut meta = EventMeta::default();
    let body = body(&sections, &mut meta)?;
    if let Some(header) = &header {
        if let Some(ttl_ms) = header.ttl {
            meta.expires_ns = Some(now_ns() + u64::from(ttl_ms) * 1_000_000);
        }
    }
    if let Some(p) = properties {
        properties_to_meta(p, limits, &mut meta)?;
    }
    if let Some(ap) = application_properties {
        for (key, value) in ap.0.into_inner() {
            // The body section says what the body is, not a property.
            if key == BODY_PROPERTY {
                continue;
            }
            let key = match key
                .strip_prefix(CLOUDEVENTS_PREFIX)
                .or_else(|| key.strip_prefix(CLOUDEVENTS_PREFIX_JMS))
            {
                Some(attribute) => attribute.into(),
                None => key.into_boxed_str(),
            };
            meta.user_properties
                .push((key, simple_text(value)?.into_boxed_str()));
        }
    }
    if let Some(s) = sections.message_annotations {
        trace_from_annotations(s, &mut meta)?;
    }
    let event = Event::new(topic, &body, qos, false).with_origin(origin);
    Ok(event.with_meta(meta))
}

/// The W3C AMQP draft: an intermediary's trace context is in the
/// message-annotations (`traceparent`, `tracestate`), read before the
/// application-properties' (the publisher's): found there, it replaces
/// them among the user properties. Other annotations stay dropped.
fn trace_from_annotations(s: Section<'_>, meta: &mut EventMeta) -> Result<(), MessageError> {
    use crate::trace::hop::{TRACEPARENT, TRACESTATE};
    use fe2o3_amqp_types::messaging::annotations::OwnedKey;
    use fe2o3_amqp_types::messaging::MessageAnnotations;
    let annotations: MessageAnnotations = serde_amqp::from_slice(s.whole)
        .map_err(|_| MessageError("malformed message-annotations section"))?;
    let mut found: Vec<(Box<str>, Box<str>)> = Vec::new();
    for (key, value) in annotations.0 {
        let (OwnedKey::Symbol(key), serde_amqp::Value::String(value)) = (key, value) else {
            continue;
        };
        if let Some(name) = [TRACEPARENT, TRACESTATE].into_iter().find(|n| *n == key.0) {
            found.push((name.into(), value.into()));
        }
    }
    if found.iter().any(|(k, _)| &**k == TRACEPARENT) {
        meta.user_properties
            .retain(|(k, _)| &**k != TRACEPARENT && &**k != TRACESTATE);
        meta.user_properties.extend(found);
    }
    Ok(())
}

/// The values of the (scanned) sections in `bytes`.
fn section_values(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let s = section(bytes.get(at..).filter(|rest| !rest.is_empty())?).expect("scanned");
        at += s.whole.len();
        Some(s.value)
    })
}

/// The payload the body sections carry (see the module doc).
fn body<'a>(sections: &Sections<'a>, meta: &mut EventMeta) -> Result<Cow<'a, [u8]>, MessageError> {
    let Some((kind, bytes)) = sections.body else {
        return Ok(Cow::Borrowed(&[]));
    };
    let mut values = section_values(bytes);
    match kind {
        DATA if sections.body_sections == 1 => Ok(Cow::Borrowed(
            variable_bytes(values.next().expect("one section")).expect("scanned"),
        )),
        DATA => Ok(Cow::Owned(
            values
                .flat_map(|v| variable_bytes(v).expect("scanned").iter().copied())
                .collect(),
        )),
        AMQP_VALUE => {
            let value = values.next().expect("one section");
            match value[0] {
                // What fe2o3 writes for a message with no body.
                0x40 => Ok(Cow::Borrowed(&[])),
                0xa0 | 0xb0 => Ok(Cow::Borrowed(variable_bytes(value).expect("binary"))),
                0xa1 | 0xb1 => {
                    let text = variable_bytes(value).expect("string");
                    if std::str::from_utf8(text).is_err() {
                        return Err(MessageError("an amqp-value string is not UTF-8"));
                    }
                    meta.payload_format = Some(1);
                    Ok(Cow::Borrowed(text))
                }
                _ => {
                    meta.user_properties
                        .push((BODY_PROPERTY.into(), "value".into()));
                    Ok(Cow::Borrowed(value))
                }
            }
        }
        _ => {
            meta.user_properties
                .push((BODY_PROPERTY.into(), "sequence".into()));
            if sections.body_sections == 1 {
                return Ok(Cow::Borrowed(values.next().expect("one section")));
            }
            Ok(Cow::Owned(values.flatten().copied().collect()))
        }
    }
}

fn properties_to_meta(
    p: Properties,
    limits: &TopicLimits,
    meta: &mut EventMeta,
) -> Result<(), MessageError> {
    if let Some(id) = p.message_id {
        meta.user_properties
            .push((MESSAGE_ID_PROPERTY.into(), message_id_text(id).into()));
    }
    if let Some(subject) = p.subject {
        meta.user_properties
            .push((SUBJECT_PROPERTY.into(), subject.into()));
    }
    if let Some(reply_to) = p.reply_to {
        let topic = address::topic(&reply_to, limits)
            .map_err(|_| MessageError("properties.reply-to is not a valid topic"))?;
        meta.response_topic = Some(topic.into());
    }
    if let Some(id) = p.correlation_id {
        meta.correlation_data = Some(match id {
            MessageId::Binary(b) => b.into_vec().into(),
            other => message_id_text(other).into_bytes().into(),
        });
    }
    if let Some(content_type) = p.content_type {
        meta.content_type = Some(content_type.0.into());
    }
    if meta.expires_ns.is_none() {
        if let Some(at) = p.absolute_expiry_time {
            // Wall clock (ms) to the events' monotonic clock.
            let left_ms = at
                .milliseconds()
                .saturating_sub((wall_ns() / 1_000_000) as i64);
            // Saturating: a far-future expiry (i64::MAX ms) is "never",
            // not an overflow.
            let left_ns = (left_ms.max(0) as u64).saturating_mul(1_000_000);
            meta.expires_ns = Some(now_ns().saturating_add(left_ns));
        }
    }
    Ok(())
}

/// A message-id or correlation-id as text: a string as it is, a ulong in
/// decimal, a uuid hyphenated, a binary in base64.
fn message_id_text(id: MessageId) -> String {
    match id {
        MessageId::String(s) => s,
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid_text(u.as_inner()),
        MessageId::Binary(b) => base64_text(&b[..]),
    }
}

/// An application property's value as text (MQTT 5 user properties and
/// NATS headers are text): strings and symbols as they are, numbers in
/// decimal, booleans `true`/`false`, null empty, a timestamp in RFC 3339
/// (UTC, milliseconds: CloudEvents' `time`), a uuid hyphenated, binary
/// in base64 (CloudEvents' canonical form of both), decimals as the hex
/// of their IEEE 754 bytes.
fn simple_text(value: SimpleValue) -> Result<String, MessageError> {
    use SimpleValue as V;
    Ok(match value {
        V::Null => String::new(),
        V::Bool(b) => b.to_string(),
        V::Ubyte(n) => n.to_string(),
        V::Ushort(n) => n.to_string(),
        V::Uint(n) => n.to_string(),
        V::Ulong(n) => n.to_string(),
        V::Byte(n) => n.to_string(),
        V::Short(n) => n.to_string(),
        V::Int(n) => n.to_string(),
        V::Long(n) => n.to_string(),
        V::Float(f) => f.to_string(),
        V::Double(f) => f.to_string(),
        V::Decimal32(d) => hex_text(d.as_inner()),
        V::Decimal64(d) => hex_text(d.as_inner()),
        V::Decimal128(d) => hex_text(d.as_inner()),
        V::Char(c) => c.to_string(),
        V::Timestamp(t) => rfc3339_ms(t.milliseconds()),
        V::Uuid(u) => uuid_text(u.as_inner()),
        V::Binary(b) => base64_text(&b[..]),
        V::String(s) => s,
        V::Symbol(s) => s.0,
        V::Described(_) => {
            return Err(MessageError(
                "an application property's value is described, not a simple type",
            ))
        }
    })
}

fn hex_text(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_text(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h = hex_text(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (proleptic
/// Gregorian; the days-to-civil algorithm of H. Hinnant's date library).
fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}
