//! The event: one published message, as it travels between shards and sits
//! in subscribers' queues.
//!
//! The payload is copied exactly once, on the way in, into `frame`, an
//! encoded MQTT QoS 0 PUBLISH (retain 0) held in a reference-counted
//! [`Bytes`]. Every subscriber on every shard shares that one buffer: a QoS 0
//! delivery writes `frame` as is; a QoS 1 delivery writes a new fixed header
//! and packet id around the shared topic and payload slices.

use bytes::Bytes;

use crate::mqtt::codec;

#[derive(Clone, Debug)]
pub struct Event {
    frame: Bytes,
    topic_at: u32,
    topic_len: u16,
    payload_at: u32,
    /// QoS the publisher used; the delivered QoS is the lower of this and
    /// the subscription's.
    pub qos: u8,
    pub retain: bool,
}

impl Event {
    /// Builds the event from a validated topic and a payload (the one copy).
    pub fn new(topic: &str, payload: &[u8], qos: u8, retain: bool) -> Event {
        let mut frame = Vec::with_capacity(codec::publish_len(topic.len(), 0, payload.len()));
        codec::put_publish(&mut frame, false, 0, false, topic.as_bytes(), 0, payload);
        let payload_at = frame.len() - payload.len();
        let topic_at = payload_at - topic.len();
        Event {
            frame: Bytes::from(frame),
            topic_at: topic_at as u32,
            topic_len: topic.len() as u16,
            payload_at: payload_at as u32,
            qos,
            retain,
        }
    }

    pub fn topic(&self) -> &str {
        let raw = &self.frame[self.topic_at as usize..][..usize::from(self.topic_len)];
        // Built from a &str in `new`.
        std::str::from_utf8(raw).expect("topic is UTF-8 by construction")
    }

    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload_at as usize..]
    }

    /// The encoded QoS 0 PUBLISH.
    pub fn qos0_frame(&self) -> &[u8] {
        &self.frame
    }

    /// Bytes this event takes when delivered at `qos`.
    pub fn wire_len(&self, qos: u8) -> usize {
        if qos == 0 {
            self.frame.len()
        } else {
            codec::publish_len(usize::from(self.topic_len), qos, self.payload().len())
        }
    }

    /// Appends the PUBLISH for one subscriber.
    pub fn write_to(&self, out: &mut Vec<u8>, qos: u8, packet_id: u16, dup: bool) {
        if qos == 0 {
            out.extend_from_slice(&self.frame);
        } else {
            codec::put_publish(
                out,
                dup,
                qos,
                false,
                &self.frame[self.topic_at as usize..self.payload_at as usize],
                packet_id,
                self.payload(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::{decode, DecodeLimits, Packet, Publish};

    #[test]
    fn frames_decode_back() {
        let e = Event::new("a/b", b"hello", 1, true);
        assert_eq!(e.topic(), "a/b");
        assert_eq!(e.payload(), b"hello");
        let limits = DecodeLimits::default();
        for (qos, id) in [(0u8, 0u16), (1, 77)] {
            let mut out = Vec::new();
            e.write_to(&mut out, qos, id, false);
            assert_eq!(out.len(), e.wire_len(qos));
            let (p, _) = decode(&out, &limits).unwrap().unwrap();
            assert_eq!(
                p,
                Packet::Publish(Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: "a/b",
                    packet_id: id,
                    payload: b"hello",
                })
            );
        }
    }
}
