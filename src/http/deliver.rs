//! An event as a Server-Sent Event (the HTML "event stream" format),
//! written into the writer's batch like `mqtt::deliver` and
//! `nats::deliver`.
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
//! Owns: the bytes of one event and of a heartbeat. Must not touch: the
//! queue (the mailbox). Cost: one pass over the payload (UTF-8 check) per
//! event, no allocation.

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
pub fn wire_len(event: &Event) -> usize {
    let topic = event.topic().len();
    let payload = event.payload().len();
    // id (up to 20 digits), field names, newlines; base64 at worst.
    48 + 3 * topic + BASE64_MARKER.len() + payload.div_ceil(3) * 4 + payload / 2
}

/// Writes `event` as one SSE event with id `id` (0: the wall clock now).
pub fn write(event: &Event, id: u64, out: &mut Vec<u8>) {
    let id = if id == 0 { crate::event::wall_ns() } else { id };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn render(topic: &str, payload: &[u8], id: u64) -> String {
        let e = Event::new(topic, payload, 0, false);
        let mut out = Vec::new();
        write(&e, id, &mut out);
        assert!(out.len() <= wire_len(&e), "wire_len bounds the rendering");
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
}
