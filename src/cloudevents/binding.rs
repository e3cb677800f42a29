//! The bindings' binary forms of an event's attributes: read from weft's
//! form (MQTT 5 user properties) or a NATS publisher's `ce-` headers, and
//! written for the other protocol; the header values' percent-encoding
//! (HTTP binding 3.1.3.2, the NATS draft's 3.1.3.2: the same rule).
//!
//! Owns: telling a CloudEvent from another event by its metadata (never
//! by its payload), and the header / property names of each binding.
//! Must not touch: the event path of an event without metadata (callers
//! test `event.meta` first).

use std::borrow::Cow;

use super::{is_structured_content_type, valid_name, CeError, REQUIRED, SPECVERSION};
use crate::event::{header_safe, EventMeta};

use crate::event::header_fields;

/// The binary-mode prefix of an attribute's header (HTTP binding
/// 3.1.3.1, NATS draft 3.1.3.1).
pub(crate) const HEADER_PREFIX: &str = "ce-";

/// How an event carries a CloudEvent, told from its metadata.
pub(crate) enum Form<'a> {
    /// The payload is the JSON event format: pass it as it is.
    Structured,
    /// Attributes beside the payload (the data).
    Binary(Attributes<'a>),
}

/// A binary-mode event's attributes as canonical strings, `datacontenttype`
/// apart (the content type in MQTT 5 and HTTP).
pub(crate) struct Attributes<'a> {
    pub list: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub content_type: Option<Cow<'a, str>>,
}

/// The CloudEvent `meta` carries, if any. A binary-mode event has every
/// required attribute (MQTT binding 3: "it's probably a CloudEvent" when
/// it has all the mandatory attributes as properties; likewise headers).
pub(crate) fn form(meta: &EventMeta) -> Option<Form<'_>> {
    if meta
        .content_type
        .as_deref()
        .is_some_and(is_structured_content_type)
    {
        return Some(Form::Structured);
    }
    if let Some(block) = &meta.headers {
        return nats_form(block);
    }
    let has = |name: &str| meta.user_properties.iter().any(|(k, _)| &**k == name);
    if !REQUIRED.iter().all(|n| has(n)) {
        return None;
    }
    Some(Form::Binary(Attributes {
        list: meta
            .user_properties
            .iter()
            .filter(|(k, _)| valid_name(k) && &**k != "datacontenttype")
            .map(|(k, v)| (Cow::Borrowed(&**k), Cow::Borrowed(&**v)))
            .collect(),
        content_type: meta.content_type.as_deref().map(Cow::Borrowed),
    }))
}

/// A NATS header block's CloudEvent (NATS binding 1.0.3 draft, 3): a
/// `Content-Type` of `application/cloudevents` marks structured mode, else
/// the `ce-` headers are the attributes (`ce-datacontenttype` too, 3.1.3.1).
/// A value that does not decode makes the block not a valid CloudEvent.
fn nats_form(block: &[u8]) -> Option<Form<'static>> {
    let fields = header_fields(block);
    if fields
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && is_structured_content_type(v))
    {
        return Some(Form::Structured);
    }
    let mut attributes = Attributes {
        list: Vec::new(),
        content_type: None,
    };
    for (key, value) in fields {
        let Some(name) = attribute_of_header(key) else {
            continue;
        };
        let value = decode_value(value.as_bytes()).ok()?;
        if name == "datacontenttype" {
            attributes.content_type = Some(value.into());
        } else {
            attributes.list.push((name.into(), value.into()));
        }
    }
    let has = |n: &str| attributes.list.iter().any(|(k, _)| k == n);
    REQUIRED
        .iter()
        .all(|n| has(n))
        .then_some(Form::Binary(attributes))
}

/// The attribute a `ce-` header carries (names are case-insensitive:
/// HTTP binding 3.1.3.1, NATS ADR-4), if the name is a valid attribute's.
pub(crate) fn attribute_of_header(key: &str) -> Option<String> {
    let prefix = key.get(..HEADER_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(HEADER_PREFIX) {
        return None;
    }
    let name = key[HEADER_PREFIX.len()..].to_ascii_lowercase();
    valid_name(&name).then_some(name)
}

/// The header block a NATS subscriber gets for an event whose metadata
/// has no NATS headers of its own, when it is a CloudEvent: the NATS
/// draft's binary mode (each attribute a `ce-` header, percent-encoded,
/// 3.1.3) or, for structured mode, `Content-Type` (3). User properties
/// that are not attributes go as headers of their own name, as for any
/// MQTT 5 event. None when the event is not a CloudEvent.
pub fn nats_headers(meta: &EventMeta) -> Option<Vec<u8>> {
    if meta.headers.is_some() {
        return None;
    }
    let mut block = b"NATS/1.0\r\n".to_vec();
    let mut field = |name: &[&str], value: &str| {
        for part in name {
            block.extend_from_slice(part.as_bytes());
        }
        block.extend_from_slice(b": ");
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    };
    match form(meta)? {
        Form::Structured => {
            let content_type = meta.content_type.as_deref().unwrap_or_default();
            // A header line ends at CR LF: a content type holding control
            // characters is not written as one (the event goes as before).
            if content_type.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return None;
            }
            field(&["Content-Type"], content_type);
            for (k, v) in &meta.user_properties {
                if header_safe(k, v) {
                    field(&[k], v);
                }
            }
        }
        Form::Binary(attributes) => {
            for (k, v) in &meta.user_properties {
                if valid_name(k) {
                    field(&[HEADER_PREFIX, k], &encode_value(v));
                    // The distributed-tracing extension's rule: the
                    // protocol's own tracing header carries the same
                    // context (W3C `traceparent` / `tracestate` headers,
                    // the ones `trace` rewrites at each router).
                    if is_trace_field(k) && header_safe(k, v) {
                        field(&[k], v);
                    }
                } else if header_safe(k, v) {
                    field(&[k], v);
                }
            }
            if let Some(ct) = attributes.content_type {
                field(&[HEADER_PREFIX, "datacontenttype"], &encode_value(&ct));
            }
        }
    }
    block.extend_from_slice(b"\r\n");
    Some(block)
}

/// The W3C trace context's two fields, which the CloudEvents
/// distributed-tracing extension names the same.
fn is_trace_field(name: &str) -> bool {
    name == "traceparent" || name == "tracestate"
}

/// What an MQTT 5 subscriber gets for a NATS publisher's CloudEvent: the
/// MQTT binding's binary mode (3.1: each attribute a user property named
/// as the attribute, decoded; `datacontenttype` the Content Type) or, for
/// structured mode, the Content Type from the `Content-Type` header (3.2.1).
/// Headers that are not attributes stay user properties of their name.
/// None when the block is not a CloudEvent (the caller maps it as before).
pub fn mqtt5_from_nats_headers(block: &[u8]) -> Option<Mqtt5Form> {
    let form = nats_form(block)?;
    // A W3C `traceparent` header beside `ce-traceparent`: in MQTT 5 both
    // are the user property `traceparent`, and the extension's (the
    // starting trace, which a CloudEvent keeps) is the one kept.
    let extension = header_fields(block)
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("ce-traceparent"));
    let mut properties = Vec::new();
    let mut content_type = None;
    for (key, value) in header_fields(block) {
        match &form {
            Form::Structured if key.eq_ignore_ascii_case("content-type") => {
                content_type = Some(value.to_string());
            }
            Form::Binary(_) => match attribute_of_header(key) {
                None if extension && is_trace_field(&key.to_ascii_lowercase()) => {}
                Some(name) => {
                    // nats_form decoded every value already.
                    let value = decode_value(value.as_bytes()).unwrap_or_default();
                    if name == "datacontenttype" {
                        content_type = Some(value);
                    } else {
                        properties.push((name, value));
                    }
                }
                None => properties.push((key.to_string(), value.to_string())),
            },
            Form::Structured => properties.push((key.to_string(), value.to_string())),
        }
    }
    Some(Mqtt5Form {
        user_properties: properties,
        content_type,
    })
}

/// A CloudEvent's MQTT 5 properties, owned (built per delivery).
#[derive(Debug, PartialEq, Eq)]
pub struct Mqtt5Form {
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

/// Percent-encodes a header value (HTTP binding 3.1.3.2): space, `"`,
/// `%` and every byte outside printable ASCII (U+0021-U+007E, each byte
/// of a character's UTF-8 form), upper-case hex.
pub(crate) fn encode_value(value: &str) -> Cow<'_, str> {
    let plain = |b: u8| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%';
    if value.bytes().all(plain) {
        return Cow::Borrowed(value);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Cow::Owned(out)
}

/// Decodes a header value (HTTP binding 3.1.3.2): surrounding whitespace
/// dropped, a double-quoted string unescaped (RFC 7230 3.2.6), then one
/// round of percent-decoding (either case of hex) whose bytes must be
/// UTF-8 (an overlong form such as `%C0%A0` is refused).
pub(crate) fn decode_value(raw: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| "not ASCII")?
        .trim_matches([' ', '\t']);
    let unquoted: Cow<str> = match text.strip_prefix('"') {
        None => Cow::Borrowed(text),
        Some(rest) => {
            let mut out = String::with_capacity(rest.len());
            let mut chars = rest.chars();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => out.push(chars.next().ok_or("unterminated quoted string")?),
                    Some(c) => out.push(c),
                    None => return Err("unterminated quoted string"),
                }
            }
            if chars.next().is_some() {
                return Err("text after a quoted string");
            }
            Cow::Owned(out)
        }
    };
    if !unquoted.contains('%') {
        return Ok(unquoted.into_owned());
    }
    let bytes = unquoted.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes
                .get(at + 1..at + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent-encoding")?;
            out.push(hex);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoded bytes are not UTF-8")
}

/// Reads one binary-mode attribute header into `meta` (HTTP binding
/// 3.1.3): the name without its prefix, the value decoded and checked.
pub(crate) fn read_header(
    meta: &mut EventMeta,
    key: &str,
    name: String,
    raw: &[u8],
) -> Result<(), CeError> {
    if name == "datacontenttype" {
        return Err(CeError::DataContentTypeHeader);
    }
    let value = decode_value(raw).map_err(|reason| CeError::BadHeaderValue {
        name: key.to_string(),
        reason,
    })?;
    super::check_value(&name, &value)?;
    if meta.user_properties.iter().any(|(k, _)| **k == *name) {
        return Err(CeError::DuplicateAttribute(name));
    }
    meta.user_properties.push((name.into(), value.into()));
    Ok(())
}

/// Puts `specversion`, `id`, `source`, `type` first, in that order, as
/// the JSON reader does: the MQTT 5 subscriber sees one order whatever
/// the publisher's.
pub(crate) fn order_required(meta: &mut EventMeta) {
    meta.user_properties.sort_by_key(|(k, _)| {
        REQUIRED
            .iter()
            .position(|n| **k == **n)
            .unwrap_or(REQUIRED.len())
    });
    debug_assert!(meta
        .user_properties
        .first()
        .is_none_or(|(k, v)| &**k != "specversion" || &**v == SPECVERSION));
}
