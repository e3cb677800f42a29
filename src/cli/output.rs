//! How `weft sub` prints a message: `raw` (the payload and a newline),
//! `topic` (topic, space, payload: mosquitto_sub -v) or `json` (one
//! object a line, for jq and scripts).
//!
//! Owns: the JSON shape — `topic`, `payload` (when the payload is UTF-8)
//! or `payload_base64`, `qos`, `retain`, and `properties` (MQTT 5: the
//! user properties as [key, value] pairs in order, content type, response
//! topic, message expiry) or `headers` (NATS: name to list of values) and
//! `reply`. Must not touch: the network.

use std::io::{self, Write};

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::args::Format;

/// A message as received, whatever the protocol.
#[derive(Debug, Default)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5's properties (`"properties"`) or NATS headers (`"headers"`).
    pub meta: Option<(&'static str, Value)>,
    /// NATS reply subject.
    pub reply: Option<String>,
}

/// Writes `message` in `format`, then flushes: a reader of a pipe sees
/// each message as it arrives.
pub fn write(out: &mut impl Write, format: Format, message: &Received) -> io::Result<()> {
    match format {
        Format::Raw => {
            out.write_all(&message.payload)?;
            out.write_all(b"\n")?;
        }
        Format::Topic => {
            out.write_all(message.topic.as_bytes())?;
            out.write_all(b" ")?;
            out.write_all(&message.payload)?;
            out.write_all(b"\n")?;
        }
        Format::Json => {
            serde_json::to_writer(&mut *out, &to_json(message))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

fn to_json(m: &Received) -> Value {
    let mut o = Map::new();
    o.insert("topic".into(), json!(m.topic));
    match std::str::from_utf8(&m.payload) {
        Ok(text) => o.insert("payload".into(), json!(text)),
        Err(_) => o.insert(
            "payload_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&m.payload)),
        ),
    };
    o.insert("qos".into(), json!(m.qos));
    o.insert("retain".into(), json!(m.retain));
    if let Some((key, value)) = &m.meta {
        o.insert((*key).into(), value.clone());
    }
    if let Some(reply) = &m.reply {
        o.insert("reply".into(), json!(reply));
    }
    Value::Object(o)
}

/// MQTT 5 properties as `"properties"` (only those present).
pub fn mqtt5_properties(
    user: &[(String, String)],
    content_type: Option<&str>,
    response_topic: Option<&str>,
    message_expiry_interval_s: Option<u32>,
) -> Value {
    let mut o = Map::new();
    o.insert(
        "user_properties".into(),
        Value::Array(user.iter().map(|(k, v)| json!([k, v])).collect()),
    );
    if let Some(t) = content_type {
        o.insert("content_type".into(), json!(t));
    }
    if let Some(t) = response_topic {
        o.insert("response_topic".into(), json!(t));
    }
    if let Some(s) = message_expiry_interval_s {
        o.insert("message_expiry_interval".into(), json!(s));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(format: Format, m: &Received) -> String {
        let mut buf = Vec::new();
        write(&mut buf, format, m).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[test]
    fn raw_and_topic_lines() {
        let m = Received {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"21.5"),
            ..Default::default()
        };
        assert_eq!(out(Format::Raw, &m), "21.5\n");
        assert_eq!(out(Format::Topic, &m), "a/b 21.5\n");
    }

    #[test]
    fn json_carries_utf8_or_base64_and_the_metadata() {
        let m = Received {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"\xff\x00"),
            qos: 1,
            retain: true,
            meta: Some((
                "properties",
                mqtt5_properties(&[("k".into(), "v".into())], Some("text/plain"), None, None),
            )),
            reply: None,
        };
        let v: Value = serde_json::from_str(out(Format::Json, &m).trim_end()).unwrap();
        assert_eq!(
            v,
            json!({"topic": "a/b", "payload_base64": "/wA=", "qos": 1, "retain": true,
                   "properties": {"user_properties": [["k", "v"]], "content_type": "text/plain"}})
        );
        let text = Received {
            topic: "s".into(),
            payload: Bytes::from_static("é\n".as_bytes()),
            reply: Some("_INBOX.1".into()),
            ..Default::default()
        };
        let line = out(Format::Json, &text);
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["payload"], "é\n");
        assert_eq!(v["reply"], "_INBOX.1");
    }
}
