//! An event as a Server-Sent Event (the HTML "event stream" format), or
//! as a WebSocket text message ([`write_ws`]), written into the writer's
//! batch like `mqtt::deliver` and `nats::deliver`.
//!
//! The form (the README's "HTTP edge" section):
//!
//! ```text
//! id: 1733500000123456789
//! event: sensors/a/temp
//! data: 21.5
//!
//! ```
//!
//! - `id`: the router's wall clock in nanoseconds: a replayed retained
//!   message's stamp, a live event's time of writing. `Last-Event-ID`
//!   resumes from it (`shard::driver_http`).
//! - `event`: the topic as its client sees it (MQTT form; a CR or LF in it
//!   is written `%0D` / `%0A`, since a line cannot hold them).
//! - `data`: the payload as is when it is UTF-8 with no CR (one `data:`
//!   line per line); otherwise `base64:` and the payload in standard
//!   base64. A UTF-8 payload that itself begins with `base64:` is written
//!   base64 too, so the marker is never ambiguous.
//!
//! - a CloudEvent (an event with CloudEvents attributes, from any
//!   protocol): `data:` is its structured JSON form
//!   (`cloudevents::structured_json`, one line), attributes and data.
//!
//! (An empty payload gives an empty `data:` line, which a browser's
//! `EventSource` does not dispatch; other readers see the event.)
//!
//! Over WebSocket (a subscribe upgraded, `http::ws`) each event is one
//! unfragmented text message holding one JSON object:
//!
//! ```text
//! {"topic":"sensors/a/temp","payload":"21.5","qos":1,"retain":false,"id":1733500000123456789}
//! ```
//!
//! An event with W3C trace context (`trace`) has `"traceparent"` and
//! `"tracestate"` members too (after `id`).
//!
//! `payload` is the payload as a JSON string when it is UTF-8 with no
//! control character other than tab and line feed; otherwise it is in
//! standard base64 and `"payload_encoding":"base64"` says so. `qos` is the
//! QoS it was published with, `retain` true for a retained message
//! replayed when the stream opened, `id` as the event stream's. A
//! CloudEvent's message is its structured JSON form instead.
//!
//! Owns: the bytes of one event and of a heartbeat. Must not touch: the
//! queue (the mailbox). Cost: one pass over the payload (UTF-8 check) per
//! event, no allocation (over WebSocket: one more pass, the escapes, and
//! a move of the message behind its frame header once its length is
//! known).

use std::io::Write;

use base64::Engine;

use crate::event::Event;
use crate::topic::client_topic;

/// The marker of a base64 payload.
pub const BASE64_MARKER: &[u8] = b"base64:";

/// A comment line that keeps a quiet stream open through proxies.
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// The queue's size of an event, from the event alone so that push and
/// pop count the same: an upper bound of what `write` writes for a plain
/// event (a CloudEvent's JSON adds its attributes, not counted).
pub fn wire_len(event: &Event, ws: bool) -> usize {
    let topic = event.topic().len();
    let payload = event.payload().len();
    if ws {
        // Frame header, field names, id, `qos`, `retain`, the encoding;
        // a topic's escapes (6 bytes a control character), a text
        // payload's (2 bytes a character at worst), base64 below that.
        // (Trace context members are not counted, as a CloudEvent's
        // attributes are not.)
        return 16 + 96 + 6 * topic + 2 * payload + 4;
    }
    // id (up to 20 digits), field names, newlines; base64 at worst.
    48 + 3 * topic + BASE64_MARKER.len() + payload.div_ceil(3) * 4 + payload / 2
}

/// Writes `event` with id `id` (0: the wall clock now): as one SSE
/// event, or as one WebSocket text message when `ws`.
pub fn write(event: &Event, id: u64, ws: bool, out: &mut Vec<u8>) {
    // Only a replayed retained message comes stamped (`DeliverAs::Http`).
    let retained = id != 0;
    let id = if id == 0 { crate::event::wall_ns() } else { id };
    if ws {
        return write_ws(event, id, retained, out);
    }
    // (Formatting into a `Vec` does not allocate beyond its growth.)
    let _ = write!(out, "id: {id}\nevent: ");
    for &b in client_topic(event.topic()).as_bytes() {
        match b {
            b'\r' => out.extend_from_slice(b"%0D"),
            b'\n' => out.extend_from_slice(b"%0A"),
            b => out.push(b),
        }
    }
    out.push(b'\n');
    if event.meta.is_some() && write_cloud_event(event, out) {
        return;
    }
    let payload = event.payload();
    let text = std::str::from_utf8(payload).is_ok()
        && !payload.contains(&b'\r')
        && !payload.starts_with(BASE64_MARKER);
    if text {
        for line in payload.split(|b| *b == b'\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    } else {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(BASE64_MARKER);
        let at = out.len();
        out.resize(at + payload.len().div_ceil(3) * 4, 0);
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(payload, &mut out[at..])
            .expect("sized for the encoding");
        out.truncate(at + n);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// A CloudEvent's `data:`: its structured JSON form (one line), the
/// event's attributes with it; false when the event is not a CloudEvent.
#[cold]
#[inline(never)]
fn write_cloud_event(event: &Event, out: &mut Vec<u8>) -> bool {
    let Some(json) = crate::cloudevents::structured_json(event) else {
        return false;
    };
    for line in json.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    true
}

/// The frame header's room: a text message's header is 2, 4 or 10 bytes
/// (§5.2), known once the JSON is written behind it.
const WS_HEADER_ROOM: usize = 10;

/// Writes `event` as one WebSocket text message (see the module comment);
/// `retained`: replayed when the stream opened.
pub fn write_ws(event: &Event, id: u64, retained: bool, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + WS_HEADER_ROOM, 0);
    let body = out.len();
    if event.meta.is_none() || !write_ws_cloud_event(event, out) {
        out.extend_from_slice(b"{\"topic\":");
        super::response::json_string(out, client_topic(event.topic()));
        out.extend_from_slice(b",\"payload\":");
        let payload = event.payload();
        match std::str::from_utf8(payload) {
            Ok(text) if !text.bytes().any(|b| b < 0x20 && b != b'\n' && b != b'\t') => {
                super::response::json_string(out, text);
            }
            _ => {
                out.push(b'"');
                let at = out.len();
                out.resize(at + payload.len().div_ceil(3) * 4, 0);
                let n = base64::engine::general_purpose::STANDARD
                    .encode_slice(payload, &mut out[at..])
                    .expect("sized for the encoding");
                out.truncate(at + n);
                out.extend_from_slice(b"\",\"payload_encoding\":\"base64\"");
            }
        }
        let _ = write!(
            out,
            ",\"qos\":{},\"retain\":{retained},\"id\":{id}",
            event.qos
        );
        if event.meta.is_some() {
            write_ws_trace(event, out);
        }
        out.push(b'}');
    }
    let len = (out.len() - body) as u64;
    let mut header = [0u8; crate::ws::frame::HEADER_BYTES_MAX];
    let n = crate::ws::frame::encode_header(
        &mut header,
        true,
        crate::ws::frame::Opcode::Text,
        len,
        None,
    );
    // The header right before the message: the message moves up by
    // what the header did not need of its room.
    out.copy_within(body.., start + n);
    out[start..start + n].copy_from_slice(&header[..n]);
    out.truncate(out.len() - (WS_HEADER_ROOM - n));
}

/// The W3C trace context (`trace`) as two more members, `traceparent`
/// and `tracestate`, when the event carries one.
#[cold]
#[inline(never)]
fn write_ws_trace(event: &Event, out: &mut Vec<u8>) {
    let Some(found) = event
        .meta
        .as_deref()
        .and_then(crate::trace::hop::find_in_meta)
    else {
        return;
    };
    if let [traceparent] = found.parents[..] {
        out.extend_from_slice(b",\"traceparent\":");
        super::response::json_string(out, traceparent);
        if !found.states.is_empty() {
            out.extend_from_slice(b",\"tracestate\":");
            super::response::json_string(out, &found.states.join(","));
        }
    }
}

/// A CloudEvent's message: its structured JSON form; false when the event
/// is not a CloudEvent.
#[cold]
#[inline(never)]
fn write_ws_cloud_event(event: &Event, out: &mut Vec<u8>) -> bool {
    let Some(json) = crate::cloudevents::structured_json(event) else {
        return false;
    };
    out.extend_from_slice(&json);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(topic: &str, payload: &[u8], id: u64) -> String {
        let e = Event::new(topic, payload, 0, false);
        let mut out = Vec::new();
        write(&e, id, false, &mut out);
        assert!(
            out.len() <= wire_len(&e, false),
            "wire_len bounds the rendering"
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_payloads_as_is_one_data_line_each() {
        assert_eq!(
            render("a/b", b"21.5", 7),
            "id: 7\nevent: a/b\ndata: 21.5\n\n"
        );
        assert_eq!(
            render("a", b"one\ntwo", 8),
            "id: 8\nevent: a\ndata: one\ndata: two\n\n"
        );
    }

    #[test]
    fn binary_and_ambiguous_payloads_in_base64() {
        assert_eq!(
            render("a", &[0xff, 0x00, 0x01], 1),
            "id: 1\nevent: a\ndata: base64:/wAB\n\n"
        );
        assert_eq!(
            render("a", b"base64:x", 1),
            "id: 1\nevent: a\ndata: base64:YmFzZTY0Ong=\n\n"
        );
        assert_eq!(
            render("a", b"cr\r\n", 1),
            "id: 1\nevent: a\ndata: base64:Y3INCg==\n\n"
        );
    }

    #[test]
    fn live_events_get_the_wall_clock_and_topics_no_line_breaks() {
        let text = render("a\nb", b"", 0);
        let id: u64 = text[4..text.find('\n').unwrap()].parse().unwrap();
        assert!(id > 1_600_000_000_000_000_000, "{id}");
        assert!(text.contains("event: a%0Ab\n"), "{text}");
    }

    /// A message's JSON, its frame header checked.
    fn render_ws(event: &Event, id: u64) -> serde_json::Value {
        let mut out = b"before".to_vec();
        write(event, id, true, &mut out);
        let frame = &out[6..];
        assert!(frame.len() <= wire_len(event, true), "wire_len bounds it");
        assert_eq!(frame[0], 0x81, "one text frame");
        let (len, at) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            n => (usize::from(n), 2),
        };
        assert_eq!(frame.len(), at + len);
        serde_json::from_slice(&frame[at..]).unwrap()
    }

    #[test]
    fn websocket_messages_carry_trace_context() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let traced = Event::new("a", b"x", 0, false).with_meta(crate::event::EventMeta {
            user_properties: vec![
                ("traceparent".into(), tp.into()),
                ("tracestate".into(), "weft=a".into()),
            ],
            ..Default::default()
        });
        let mut out = Vec::new();
        write(&traced, 1, true, &mut out);
        let at = if out[1] == 126 { 4 } else { 2 };
        let v: serde_json::Value = serde_json::from_slice(&out[at..]).unwrap();
        assert_eq!(
            (v["traceparent"].as_str(), v["tracestate"].as_str()),
            (Some(tp), Some("weft=a"))
        );
        assert_eq!(v["payload"], "x");
        let plain = render_ws(&Event::new("a", b"x", 0, false), 1);
        assert!(plain.get("traceparent").is_none());
    }

    #[test]
    fn websocket_messages_are_json_text_frames() {
        let live = Event::new("a/b", b"21.5 \"q\"\n", 1, false);
        let v = render_ws(&live, 0);
        assert_eq!(v["topic"], "a/b");
        assert_eq!(v["payload"], "21.5 \"q\"\n");
        assert_eq!(v["qos"], 1);
        assert_eq!(v["retain"], false);
        assert!(v["id"].as_u64().unwrap() > 1_600_000_000_000_000_000);
        assert!(v.get("payload_encoding").is_none());
        let binary = Event::new("a", &[0xff, 0, 1], 0, true);
        let v = render_ws(&binary, 7);
        assert_eq!(v["payload"], "/wAB");
        assert_eq!(v["payload_encoding"], "base64");
        assert_eq!(
            (v["retain"].clone(), v["id"].clone()),
            (true.into(), 7.into())
        );
        // Control characters other than tab and LF: base64 too.
        assert_eq!(
            render_ws(&Event::new("a", b"cr\r", 0, false), 1)["payload_encoding"],
            "base64"
        );
        // A 2-byte length, and a large payload's 8-byte one.
        let big = Event::new("a", &[b'x'; 300], 0, false);
        assert_eq!(render_ws(&big, 1)["payload"].as_str().unwrap().len(), 300);
        let huge = Event::new("a", &vec![b'y'; 70_000], 0, false);
        let mut out = Vec::new();
        write(&huge, 1, true, &mut out);
        assert_eq!(out[1], 127);
        let len = u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize;
        assert_eq!(out.len(), 10 + len);
        let v: serde_json::Value = serde_json::from_slice(&out[10..]).unwrap();
        assert_eq!(v["payload"].as_str().unwrap().len(), 70_000);
    }
}
