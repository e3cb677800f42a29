//! CloudEvents 1.0.2 across weft's protocols: reading the HTTP binding's
//! three content modes, and the renderers that give each subscriber the
//! binding of its own protocol.
//!
//! Owns: the CloudEvents rules (attribute names, types and required
//! attributes; the JSON event format; the HTTP, MQTT and NATS bindings'
//! header and property names; percent-encoding). Must not touch:
//! sockets, queues, sessions: this module is sans-IO, its callers are the
//! HTTP edge (`from_http`), the SSE writer (`structured_json`) and the
//! MQTT and NATS delivery writers (`mqtt::deliver`, `nats::deliver`).
//!
//! The form a CloudEvent takes inside weft is the MQTT 5 binding's binary
//! mode (mqtt-protocol-binding.md 3.1): `datacontenttype` in
//! `EventMeta::content_type`, every other attribute a user property named
//! as the attribute with its canonical string value, the data as the
//! payload. An MQTT 5 subscriber gets a valid binary-mode CloudEvent as it
//! is, with no work. A NATS publisher's CloudEvent keeps its header block
//! raw (`EventMeta::headers`, the NATS binding's `ce-` headers) so a NATS
//! subscriber gets it byte for byte; the renderers read either form.
//!
//! Which bindings: the HTTP binding 1.0.2, the MQTT binding 1.0.2 (binary
//! for MQTT 5, structured only for MQTT 3.1.1, its section 1.3) and the
//! NATS binding in its 1.0.3 working draft: 1.0.2 predates NATS headers and
//! allows only structured mode, the draft adds binary mode with `ce-`
//! headers (NATS 2.2 and later; weft speaks headers). A structured-mode
//! event (content type `application/cloudevents+json`) passes unchanged
//! everywhere: it is a valid CloudEvent already.
//!
//! Cost: nothing on the event path for an event without metadata (the
//! writers test `event.meta` once, as before); the renderers run in cold
//! functions and allocate, once per delivery of a CloudEvent to a
//! protocol whose binding differs from the form it was published in.
//!
//! Limits: an extension's type is not kept in the binary forms (its
//! canonical string is), so an Integer or Boolean extension read from
//! structured JSON comes back as a JSON string in rendered JSON; an event
//! published over MQTT 3.1.1 is not parsed (a structured payload is a
//! CloudEvent already, and parsing every 3.1.1 payload is not paid for).

mod binding;
mod http;
mod json;
#[cfg(test)]
mod tests;

pub use binding::{mqtt5_from_nats_headers, nats_headers, Mqtt5Form};
pub use http::from_http;
pub use json::{structured_for_v3, structured_json};

use crate::event::EventMeta;

/// One event read from an HTTP request: the payload to publish and its
/// metadata (a CloudEvent's attributes in the MQTT 5 binding's form, or a
/// plain body's content type).
#[derive(Debug, PartialEq, Eq)]
pub struct Incoming {
    pub payload: Vec<u8>,
    pub meta: Option<EventMeta>,
}

/// Why a request does not carry valid CloudEvents; `status` is the HTTP
/// answer (400 malformed, 415 unsupported format, 422 invalid event).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CeError {
    #[error("unsupported CloudEvents format {0:?}: weft reads application/cloudevents+json and application/cloudevents-batch+json")]
    UnsupportedFormat(String),
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error("a structured CloudEvent must be a JSON object")]
    NotAnObject,
    #[error("a CloudEvents batch must be a JSON array")]
    NotAnArray,
    #[error("the batch is empty: there is nothing to publish")]
    EmptyBatch,
    #[error("missing required attribute {0:?}")]
    MissingAttribute(&'static str),
    #[error("specversion {0:?} is not supported: weft reads CloudEvents 1.0")]
    BadSpecVersion(String),
    #[error("attribute {name:?} must be {expected}")]
    WrongType {
        name: String,
        expected: &'static str,
    },
    #[error("attribute name {0:?} is not lower-case letters and digits")]
    BadAttributeName(String),
    #[error("attribute {0:?} is given twice")]
    DuplicateAttribute(String),
    #[error("header {name:?}: {reason}")]
    BadHeaderValue { name: String, reason: &'static str },
    #[error("ce-datacontenttype must not be sent in binary mode: Content-Type carries it")]
    DataContentTypeHeader,
    #[error("data and data_base64 are both present")]
    DataAndDataBase64,
    #[error("data_base64 is not valid base64: {0}")]
    BadBase64(String),
    #[error("batch element {index}: {error}")]
    InBatch { index: usize, error: Box<CeError> },
}

impl CeError {
    /// The HTTP status for this error: 400 when the request is not
    /// well-formed (JSON, header encoding), 415 when its format is not
    /// one weft reads, 422 when it is well-formed but not a valid event.
    pub fn status(&self) -> u16 {
        use CeError::*;
        match self {
            UnsupportedFormat(_) => 415,
            BadJson(_)
            | NotAnObject
            | NotAnArray
            | DuplicateAttribute(_)
            | BadHeaderValue { .. }
            | DataContentTypeHeader
            | DataAndDataBase64
            | BadBase64(_) => 400,
            EmptyBatch
            | MissingAttribute(_)
            | BadSpecVersion(_)
            | WrongType { .. }
            | BadAttributeName(_) => 422,
            InBatch { error, .. } => error.status(),
        }
    }
}

/// The attributes a CloudEvent must have (spec.md 1.0.2, "REQUIRED
/// Attributes"), in the order weft writes them.
pub(crate) const REQUIRED: [&str; 4] = ["specversion", "id", "source", "type"];

/// The one specversion weft reads (spec.md, "specversion").
pub(crate) const SPECVERSION: &str = "1.0";

/// spec.md, "Attribute Naming Convention": names are lower-case ASCII
/// letters and digits, nothing else (and not empty).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Checks one attribute's canonical string value against its type's rules
/// (spec.md "Type System": a String has no control characters
/// U+0000-U+001F or U+007F-U+009F; "REQUIRED Attributes" and "OPTIONAL
/// Attributes": the constraints per attribute).
pub(crate) fn check_value(name: &str, value: &str) -> Result<(), CeError> {
    let wrong = |expected| {
        Err(CeError::WrongType {
            name: name.to_string(),
            expected,
        })
    };
    if value
        .chars()
        .any(|c| c <= '\u{1f}' || ('\u{7f}'..='\u{9f}').contains(&c))
    {
        return wrong("a string without control characters");
    }
    match name {
        "specversion" if value != SPECVERSION => Err(CeError::BadSpecVersion(value.to_string())),
        "id" | "type" | "subject" if value.is_empty() => wrong("a non-empty string"),
        "source" if value.is_empty() || value.contains(char::is_whitespace) => {
            wrong("a non-empty URI-reference")
        }
        "dataschema" if !absolute_uri(value) => wrong("an absolute URI"),
        "time" if !rfc3339(value) => wrong("an RFC 3339 timestamp"),
        "datacontenttype" if !media_type(value) => wrong("an RFC 2046 media type"),
        _ => Ok(()),
    }
}

/// Checks the required attributes are all there, after every attribute
/// was checked alone (spec.md, "REQUIRED Attributes").
pub(crate) fn check_required(meta: &EventMeta) -> Result<(), CeError> {
    for name in REQUIRED {
        if !meta.user_properties.iter().any(|(k, _)| &**k == name) {
            return Err(CeError::MissingAttribute(name));
        }
    }
    Ok(())
}

/// RFC 3986 section 3: a scheme (a letter, then letters, digits, `+`,
/// `-`, `.`), a colon, and no whitespace.
fn absolute_uri(value: &str) -> bool {
    let Some((scheme, _)) = value.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !value.contains(char::is_whitespace)
}

/// RFC 2046 / RFC 2045 section 5.1: `type/subtype` then optional
/// parameters; the type and subtype are not empty and have no spaces.
fn media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    essence
        .split_once('/')
        .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty() && !essence.contains(' '))
}

/// RFC 3339 section 5.6 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`,
/// `T` and `Z` in either case, each field in its range.
pub(crate) fn rfc3339(value: &str) -> bool {
    let b = value.as_bytes();
    let digits = |from: usize, n: usize| -> Option<u32> {
        let part = b.get(from..from + n)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let date_time = (|| {
        let (_year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
        let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
        let separators = b[4] == b'-'
            && b[7] == b'-'
            && matches!(b[10], b'T' | b't')
            && b[13] == b':'
            && b[16] == b':';
        Some(
            separators
                && (1..=12).contains(&month)
                && (1..=31).contains(&day)
                && hour <= 23
                && minute <= 59
                && second <= 60,
        )
    })();
    if date_time != Some(true) {
        return false;
    }
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return false;
        }
    }
    match b.get(at) {
        Some(b'Z' | b'z') => at + 1 == b.len(),
        Some(b'+' | b'-') => {
            at + 6 == b.len()
                && b[at + 3] == b':'
                && digits(at + 1, 2).is_some_and(|h| h <= 23)
                && digits(at + 4, 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

/// JSON format 3.1.1: a content type declares JSON data when its media
/// type, stripped of parameters, is `*/json` or `*/*+json`.
pub(crate) fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let subtype = essence.split_once('/').map_or("", |(_, s)| s);
    subtype.eq_ignore_ascii_case("json")
        || (subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// MQTT binding 3 / HTTP binding 3 / NATS binding (1.0.3 draft) 3: a
/// content type prefixed with `application/cloudevents` (case-insensitive)
/// marks structured mode.
pub(crate) fn is_structured_content_type(content_type: &str) -> bool {
    const PREFIX: &str = "application/cloudevents";
    content_type
        .trim_start()
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}
