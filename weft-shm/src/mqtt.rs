//! MQTT 3.1.1, the little the client speaks: CONNECT, PUBLISH (QoS 0),
//! SUBSCRIBE, UNSUBSCRIBE, PUBACK, PINGREQ, DISCONNECT out; CONNACK,
//! PUBLISH (QoS 0 or 1), SUBACK, UNSUBACK, PINGRESP in.
//!
//! Owns: bytes <-> packets, sans IO. Bounds: a packet is at most
//! [`PACKET_BYTES_MAX`] (checked from the fixed header, before the body
//! arrives). Hand-written for the same reason as `nats.rs`: the crate
//! depends on nix and libc only.

/// The largest packet accepted (the remaining length's own limit).
pub const PACKET_BYTES_MAX: usize = 268_435_455;

#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    ConnAck {
        code: u8,
    },
    Publish {
        topic: &'a str,
        payload: &'a [u8],
        qos: u8,
        pid: u16,
    },
    SubAck {
        pid: u16,
        codes: &'a [u8],
    },
    UnsubAck {
        pid: u16,
    },
    PingResp,
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

fn push_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Checks what a string field can hold (65535 bytes) and, for a topic
/// name, no wildcards.
pub fn check_topic(topic: &str, filter: bool) -> Result<(), String> {
    if topic.is_empty() || topic.len() > u16::MAX as usize || topic.contains('\0') {
        return Err(format!("invalid MQTT topic {topic:?}"));
    }
    if !filter && topic.contains(['+', '#']) {
        return Err(format!("MQTT topic name {topic:?} holds a wildcard"));
    }
    Ok(())
}

/// CONNECT, protocol level 4, clean session, keep-alive 0 (the Unix
/// socket tells the router when the client dies).
pub fn connect(out: &mut Vec<u8>, client_id: &str, user: Option<&str>, pass: Option<&str>) {
    let mut body = Vec::with_capacity(32 + client_id.len());
    push_str(&mut body, b"MQTT");
    body.push(4);
    let mut flags = 0x02u8;
    if user.is_some() {
        flags |= 0x80;
    }
    if pass.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&0u16.to_be_bytes());
    push_str(&mut body, client_id.as_bytes());
    if let Some(user) = user {
        push_str(&mut body, user.as_bytes());
    }
    if let Some(pass) = pass {
        push_str(&mut body, pass.as_bytes());
    }
    out.push(0x10);
    push_len(out, body.len());
    out.extend_from_slice(&body);
}

/// A QoS 0 PUBLISH.
pub fn publish(out: &mut Vec<u8>, topic: &str, payload: &[u8]) {
    out.push(0x30);
    push_len(out, 2 + topic.len() + payload.len());
    push_str(out, topic.as_bytes());
    out.extend_from_slice(payload);
}

pub fn subscribe(out: &mut Vec<u8>, pid: u16, filter: &str) {
    out.push(0x82);
    push_len(out, 2 + 2 + filter.len() + 1);
    out.extend_from_slice(&pid.to_be_bytes());
    push_str(out, filter.as_bytes());
    out.push(0);
}

pub fn unsubscribe(out: &mut Vec<u8>, pid: u16, filter: &str) {
    out.push(0xA2);
    push_len(out, 2 + 2 + filter.len());
    out.extend_from_slice(&pid.to_be_bytes());
    push_str(out, filter.as_bytes());
}

pub fn puback(out: &mut Vec<u8>, pid: u16) {
    out.extend_from_slice(&[0x40, 2]);
    out.extend_from_slice(&pid.to_be_bytes());
}

pub fn pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xC0, 0]);
}

pub fn disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xE0, 0]);
}

fn bad(what: &str) -> DecodeError {
    DecodeError(what.to_string())
}

/// Decodes one packet from the front of `buf`: `Ok(None)` needs more
/// bytes; `Ok(Some((packet, used)))`.
pub fn decode(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut shift = 0;
    let mut at = 1;
    loop {
        let Some(&b) = buf.get(at) else {
            return Ok(None);
        };
        at += 1;
        len |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(bad("remaining length over four bytes"));
        }
    }
    if len > PACKET_BYTES_MAX {
        return Err(bad("packet too large"));
    }
    if buf.len() < at + len {
        return Ok(None);
    }
    let body = &buf[at..at + len];
    let used = at + len;
    let u16_at = |i: usize| -> Result<u16, DecodeError> {
        body.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("short packet"))
    };
    let packet = match first >> 4 {
        2 => {
            if len != 2 {
                return Err(bad("CONNACK length"));
            }
            Packet::ConnAck { code: body[1] }
        }
        3 => {
            let qos = (first >> 1) & 3;
            let tlen = usize::from(u16_at(0)?);
            let topic = body
                .get(2..2 + tlen)
                .ok_or_else(|| bad("PUBLISH topic past the packet"))?;
            let topic =
                std::str::from_utf8(topic).map_err(|_| bad("PUBLISH topic is not UTF-8"))?;
            let mut rest = 2 + tlen;
            let pid = match qos {
                0 => 0,
                1 | 2 => {
                    let pid = u16_at(rest)?;
                    rest += 2;
                    pid
                }
                _ => return Err(bad("PUBLISH QoS 3")),
            };
            Packet::Publish {
                topic,
                payload: &body[rest..],
                qos,
                pid,
            }
        }
        9 => Packet::SubAck {
            pid: u16_at(0)?,
            codes: &body[2..],
        },
        11 => Packet::UnsubAck { pid: u16_at(0)? },
        13 => Packet::PingResp,
        t => return Err(DecodeError(format!("unexpected packet type {t}"))),
    };
    Ok(Some((packet, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_connect_publish_subscribe() {
        let mut out = Vec::new();
        connect(&mut out, "c1", Some("u"), Some("p"));
        assert_eq!(
            out,
            b"\x10\x14\x00\x04MQTT\x04\xc2\x00\x00\x00\x02c1\x00\x01u\x00\x01p"
        );
        out.clear();
        publish(&mut out, "a/b", b"hi");
        assert_eq!(out, b"\x30\x07\x00\x03a/bhi");
        out.clear();
        subscribe(&mut out, 1, "a/+");
        assert_eq!(out, b"\x82\x08\x00\x01\x00\x03a/+\x00");
        out.clear();
        unsubscribe(&mut out, 2, "a/+");
        assert_eq!(out, b"\xa2\x07\x00\x02\x00\x03a/+");
        out.clear();
        // A payload past 127 bytes takes a two-byte remaining length.
        publish(&mut out, "t", &[0u8; 200]);
        assert_eq!(&out[..3], &[0x30, 0xCB, 0x01]);
    }

    #[test]
    fn decodes_in_pieces() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\x20\x02\x00\x00");
        publish(&mut stream, "x/y", &[9u8; 300]);
        stream.extend_from_slice(b"\x32\x08\x00\x01z\x00\x05abc");
        stream.extend_from_slice(b"\x90\x03\x00\x01\x80\xb0\x02\x00\x02\xd0\x00");
        let mut at = 0;
        let mut end = 0;
        let mut ops = Vec::new();
        while at < stream.len() {
            end = (end + 1).min(stream.len());
            if let Some((p, used)) = decode(&stream[at..end]).unwrap() {
                ops.push(match p {
                    Packet::Publish {
                        topic,
                        payload,
                        qos,
                        pid,
                    } => format!("pub {topic} {} {qos} {pid}", payload.len()),
                    other => format!("{other:?}"),
                });
                at += used;
            }
        }
        assert_eq!(
            ops,
            [
                "ConnAck { code: 0 }",
                "pub x/y 300 0 0",
                "pub z 3 1 5",
                "SubAck { pid: 1, codes: [128] }",
                "UnsubAck { pid: 2 }",
                "PingResp"
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"\x30\xff\xff\xff\xff\x01").is_err());
        assert!(decode(b"\x30\x03\x00\x05a").is_err());
        assert!(decode(b"\xf0\x00").is_err());
        assert!(decode(b"\x20\x03\x00\x00\x00").is_err());
        assert!(check_topic("a/+", false).is_err());
        assert!(check_topic("a/+", true).is_ok());
    }
}
