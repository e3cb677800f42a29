//! AMQP 1.0 message sections ⇄ events, `weft::amqp::message`.
//!
//! Input: the bytes of a bare message (the sections a transfer carries).
//!
//! Properties:
//! - `to_event` never panics and never reads past the input: on a named
//!   link and on an anonymous one (where `properties.to` names the topic);
//! - a message it reads is written back (`write_message`) in exactly
//!   `message_len` bytes, and those bytes read back (on an anonymous link:
//!   the written `to` names the same topic) to the same topic and payload;
//! - writing is a fixed point after one round: the message read from
//!   weft's own bytes writes the same bytes again (but for the header's
//!   ttl, which the clock moves).

use weft::amqp::message::{message_len, to_event, write_message};
use weft::event::{Event, Origin};
use weft::topic::TopicLimits;

const LIMITS: TopicLimits = TopicLimits {
    topic_bytes_max: 256,
    topic_levels_max: 16,
};

fn written(event: &Event, qos: u8, delivery_count: u32) -> Vec<u8> {
    let mut out = Vec::new();
    write_message(event, qos, delivery_count, &mut out);
    assert_eq!(out.len(), message_len(event, qos, delivery_count));
    out
}

pub fn check(data: &[u8]) {
    let _ = to_event(data, None, 0, Origin::ROUTER, &LIMITS);
    let Ok(event) = to_event(data, Some("fuzz/t"), 1, Origin::ROUTER, &LIMITS) else {
        return;
    };
    let first = written(&event, 1, 2);
    let again = to_event(&first, None, 1, Origin::ROUTER, &LIMITS)
        .unwrap_or_else(|e| panic!("weft's own message refused: {e}: {first:02x?}"));
    assert_eq!(again.topic(), "fuzz/t");
    let second = written(&again, 1, 2);
    if event.meta.as_ref().is_some_and(|m| m.expires_ns.is_some()) {
        assert_eq!(first.len(), second.len());
    } else {
        assert_eq!(first, second, "not a fixed point");
        assert_eq!(again.payload(), event.payload());
    }
}

/// Messages as clients write them (bytes from fe2o3-amqp-types' encoder,
/// copied in), and weft's own.
pub fn seeds() -> Vec<Vec<u8>> {
    let data = |payload: &[u8]| {
        let mut s = vec![0x00, 0x53, 0x75, 0xa0, payload.len() as u8];
        s.extend_from_slice(payload);
        s
    };
    let mut rich = vec![
        // header: durable, priority 4, ttl 60000
        0x00, 0x53, 0x70, 0xc0, 0x09, 0x03, 0x41, 0x50, 0x04, 0x70, 0x00, 0x00, 0xea, 0x60,
        // properties: message-id "m1", user-id null, to "a.b", subject "s",
        // reply-to "r/1", correlation-id ulong 7, content-type text/plain
        0x00, 0x53, 0x73, 0xc0, 0x21, 0x07, 0xa1, 0x02, b'm', b'1', 0x40, 0xa1, 0x03, b'a',
        b'.', b'b', 0xa1, 0x01, b's', 0xa1, 0x03, b'r', b'/', b'1', 0x53, 0x07, 0xa3, 0x0a,
        b't', b'e', b'x', b't', b'/', b'p', b'l', b'a', b'i', b'n',
        // application-properties: "k" -> "v", "cloudEvents:id" -> int 3
        0x00, 0x53, 0x74, 0xc1, 0x19, 0x04, 0xa1, 0x01, b'k', 0xa1, 0x01, b'v', 0xa1, 0x0e,
        b'c', b'l', b'o', b'u', b'd', b'E', b'v', b'e', b'n', b't', b's', b':', b'i', b'd',
        0x54, 0x03,
    ];
    rich.extend(data(b"hello"));
    let mut seeds = vec![
        data(b"plain"),
        rich,
        // amqp-value string, amqp-value list, two amqp-sequence sections
        vec![0x00, 0x53, 0x77, 0xa1, 0x02, b'h', b'i'],
        vec![0x00, 0x53, 0x77, 0xc0, 0x03, 0x02, 0x41, 0x40],
        vec![0x00, 0x53, 0x76, 0x45, 0x00, 0x53, 0x76, 0xc0, 0x02, 0x01, 0x43],
        // message-annotations, data, footer
        [
            &[0x00, 0x53, 0x72, 0xc1, 0x01, 0x00][..],
            &data(b"x"),
            &[0x00, 0x53, 0x78, 0xc1, 0x01, 0x00],
        ]
        .concat(),
    ];
    let event = weft::event::Event::new("a/b", b"payload", 1, false);
    seeds.push(written(&event, 1, 0));
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are messages weft reads, not refusals: the fuzzer starts
    /// from the paths past the scan.
    #[test]
    fn seeds_are_read() {
        for seed in seeds() {
            let r = to_event(&seed, Some("t"), 0, Origin::ROUTER, &LIMITS);
            assert!(r.is_ok(), "{r:?}: {seed:02x?}");
        }
    }
}
