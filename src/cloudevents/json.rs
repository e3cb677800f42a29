//! The JSON event format (json-format.md 1.0.2): a structured CloudEvent
//! read into weft's form (attributes as user properties, the data as the
//! payload), and weft's forms written back as one JSON object.
//!
//! Owns: the JSON mapping of attributes and `data` / `data_base64`. Must
//! not touch: which protocol a form came from (`binding` reads those).

use base64::Engine;
use serde_json::{Map, Value};

use super::{binding, check_required, check_value, is_json_content_type, valid_name, CeError};
use super::{Incoming, REQUIRED};
use crate::event::{Event, EventMeta};

/// Reads a structured-mode body (`application/cloudevents+json`).
pub(crate) fn read_structured(body: &[u8]) -> Result<Incoming, CeError> {
    match parse(body)? {
        Value::Object(object) => read_object(object),
        _ => Err(CeError::NotAnObject),
    }
}

/// Reads a batched-mode body (`application/cloudevents-batch+json`, JSON
/// format 4): an array of JSON-format events. The HTTP binding (3.3.2)
/// allows an empty batch; weft refuses one since a publish of nothing is
/// more likely a client's mistake than its wish.
pub(crate) fn read_batch(body: &[u8]) -> Result<Vec<Incoming>, CeError> {
    let Value::Array(items) = parse(body)? else {
        return Err(CeError::NotAnArray);
    };
    if items.is_empty() {
        return Err(CeError::EmptyBatch);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let in_batch = |error| CeError::InBatch {
                index,
                error: Box::new(error),
            };
            match item {
                Value::Object(object) => read_object(object).map_err(in_batch),
                _ => Err(in_batch(CeError::NotAnObject)),
            }
        })
        .collect()
}

fn parse(body: &[u8]) -> Result<Value, CeError> {
    serde_json::from_slice(body).map_err(|e| CeError::BadJson(e.to_string()))
}

/// One JSON object as an event: every member but `data` / `data_base64`
/// is an attribute (JSON format 2: extensions are top-level members).
fn read_object(mut object: Map<String, Value>) -> Result<Incoming, CeError> {
    let data = object.remove("data");
    let data_base64 = object.remove("data_base64");
    let mut meta = EventMeta::default();
    // The required attributes first, the rest in the map's (sorted) order.
    let mut names: Vec<String> = REQUIRED
        .iter()
        .filter(|n| object.contains_key(**n))
        .map(|n| n.to_string())
        .collect();
    names.extend(
        object
            .keys()
            .filter(|k| !REQUIRED.contains(&k.as_str()))
            .cloned(),
    );
    for name in names {
        let value = object.remove(&name).unwrap_or(Value::Null);
        if !valid_name(&name) {
            return Err(CeError::BadAttributeName(name));
        }
        let Some(text) = canonical(&name, value)? else {
            continue;
        };
        check_value(&name, &text)?;
        if name == "datacontenttype" {
            meta.content_type = Some(text.into());
        } else {
            meta.user_properties.push((name.into(), text.into()));
        }
    }
    check_required(&meta)?;
    let data = data.filter(|d| !d.is_null());
    let payload = match (data, data_base64.filter(|b| !b.is_null())) {
        (Some(_), Some(_)) => return Err(CeError::DataAndDataBase64),
        (None, Some(Value::String(b))) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| CeError::BadBase64(e.to_string()))?,
        (None, Some(_)) => {
            return Err(CeError::WrongType {
                name: "data_base64".into(),
                expected: "a base64 string",
            })
        }
        (Some(value), None) => data_payload(&mut meta, value)?,
        (None, None) => Vec::new(),
    };
    Ok(Incoming {
        payload,
        meta: Some(meta),
    })
}

/// JSON format 3.1.2: `data` is a JSON value when the content type
/// declares JSON (or is absent, implying `application/json`, which is then
/// set explicitly for the bindings that follow), else a string.
fn data_payload(meta: &mut EventMeta, value: Value) -> Result<Vec<u8>, CeError> {
    let json = meta
        .content_type
        .as_deref()
        .is_none_or(is_json_content_type);
    if json {
        if meta.content_type.is_none() {
            meta.content_type = Some("application/json".into());
        }
        return serde_json::to_vec(&value).map_err(|e| CeError::BadJson(e.to_string()));
    }
    match value {
        Value::String(text) => Ok(text.into_bytes()),
        _ => Err(CeError::WrongType {
            name: "data".into(),
            expected: "a string for a datacontenttype that is not JSON",
        }),
    }
}

/// An attribute's JSON value as its canonical string (JSON format 2.2;
/// `null` is unset). The context attributes of spec.md are all strings in
/// JSON; an extension may be a Boolean or an Integer (32-bit, spec.md
/// "Type System").
fn canonical(name: &str, value: Value) -> Result<Option<String>, CeError> {
    let wrong = |expected| CeError::WrongType {
        name: name.to_string(),
        expected,
    };
    const STRINGS: [&str; 8] = [
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
    ];
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ if STRINGS.contains(&name) => Err(wrong("a string")),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => n
            .as_i64()
            .filter(|i| i32::try_from(*i).is_ok())
            .map(|i| Some(i.to_string()))
            .ok_or_else(|| wrong("a 32-bit integer, a boolean or a string")),
        _ => Err(wrong("a string, a boolean or a 32-bit integer")),
    }
}

/// The event as one structured-mode JSON CloudEvent (JSON format 3), for
/// subscribers whose binding carries no attributes beside the payload
/// (MQTT 3.1.1, SSE): `data` as JSON when the content type declares JSON
/// and the payload parses, `data_base64` for bytes that are not text, a
/// string otherwise. None when the event is not a CloudEvent; a
/// structured-mode event is returned as it is.
pub fn structured_json(event: &Event) -> Option<Vec<u8>> {
    let meta = event.meta.as_deref()?;
    match binding::form(meta)? {
        binding::Form::Structured => Some(event.payload().to_vec()),
        binding::Form::Binary(attributes) => Some(render(&attributes, event.payload())),
    }
}

/// The payload an MQTT 3.1.1 subscriber gets for a binary-mode CloudEvent:
/// the structured JSON (MQTT binding 1.3: 3.1.1 carries only structured
/// mode). None for any other event, which passes as it is (a structured
/// one is a CloudEvent already).
pub fn structured_for_v3(event: &Event) -> Option<Vec<u8>> {
    match binding::form(event.meta.as_deref()?)? {
        binding::Form::Structured => None,
        binding::Form::Binary(attributes) => Some(render(&attributes, event.payload())),
    }
}

/// JSON format 3.1.1 applied to weft's forms.
fn render(attributes: &binding::Attributes, payload: &[u8]) -> Vec<u8> {
    let mut object = Map::new();
    for (name, value) in &attributes.list {
        object.insert(name.to_string(), Value::String(value.to_string()));
    }
    let content_type = attributes.content_type.as_deref();
    if let Some(ct) = content_type {
        object.insert("datacontenttype".into(), Value::String(ct.to_string()));
    }
    if !payload.is_empty() {
        // No content type implies JSON (3.1.1) for a reader: a payload
        // that is not JSON then goes as bytes, never as a string.
        let declares_json = content_type.is_none_or(is_json_content_type);
        let as_json = declares_json
            .then(|| serde_json::from_slice::<Value>(payload).ok())
            .flatten();
        let text = (!declares_json)
            .then(|| std::str::from_utf8(payload).ok())
            .flatten();
        match (as_json, text) {
            (Some(value), _) => {
                object.insert("data".into(), value);
            }
            (None, Some(text)) => {
                object.insert("data".into(), Value::String(text.to_string()));
            }
            (None, None) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
                object.insert("data_base64".into(), Value::String(encoded));
            }
        }
    }
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
}
