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

fn is_map(value: &[u8]) -> bool {
    matches!(value[0], 0xc1 | 0xd1)
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
            HEADER => sections.header = Some(s),
            PROPERTIES => sections.properties = Some(s),
            APPLICATION_PROPERTIES => sections.application_properties = Some(s),
            DELIVERY_ANNOTATIONS | MESSAGE_ANNOTATIONS | FOOTER if !is_map(s.value) => {
                return Err(MessageError("annotations or footer are not a map"));
            }
            DATA if variable_bytes(s.value).is_none() || s.value[0] & 0x0f != 0 => {
                return Err(MessageError("a data section does not hold binary"));
            }
            AMQP_SEQUENCE if !matches!(s.value[0], 0x45 | 0xc0 | 0xd0) => {
                return Err(MessageError(
                    "an amqp-sequence section does not hold a list",
                ));
            }
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
    let event = Event::new(topic, &body, qos, false).with_origin(origin);
    Ok(event.with_meta(meta))
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
            meta.expires_ns = Some(now_ns() + left_ms.max(0) as u64 * 1_000_000);
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

// ---------------------------------------------------------------- writing

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
/// Appends to `out`; no allocation but `out`'s growth (an event with a
/// NATS reply subject or a CloudEvent from a NATS publisher converts it).
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
    std::str::from_utf8(block)
        .unwrap_or_default()
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty())
}

/// The application-properties section: user properties (but those
/// written as AMQP properties or the body) and a NATS publisher's header
/// fields, as string values. A name given twice is written once (the
/// first; AMQP maps have unique keys): quadratic in the number of
/// properties, which the publisher's packet bounds.
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
    let first = |i: usize, key: (&str, &str)| !entries().take(i).any(|(k, _)| k == key);
    let count = entries()
        .enumerate()
        .filter(|&(i, (k, _))| first(i, k))
        .count();
    if count == 0 {
        return;
    }
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
