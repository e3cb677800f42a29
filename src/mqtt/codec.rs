//! Sans-IO MQTT 3.1.1 codec: bytes in, packets out; packets in, bytes out.
//! MQTT 3.1 (protocol name `MQIsdp`, level 3) has the same packets; its
//! CONNECT decodes here too and the session applies its client-id rule.
//!
//! `decode` borrows from the caller's buffer and allocates nothing for
//! PUBLISH, so the connection loop can parse a whole read batch in place and
//! copy a payload exactly once, into the event it routes. "Need more bytes"
//! is `Ok(None)`; malformed input is a [`DecodeError`]. An oversize packet is
//! refused from its fixed header, before the body is buffered.
//!
//! Bench: `cargo bench --bench mqtt_codec`.

use thiserror::Error;

pub const PROTOCOL_LEVEL_311: u8 = 4;
/// MQTT 3.1, the predecessor mosquitto and old clients still speak.
pub const PROTOCOL_LEVEL_31: u8 = 3;
pub const PROTOCOL_NAME: &str = "MQTT";
pub const PROTOCOL_NAME_31: &str = "MQIsdp";
/// MQTT 3.1 §3.1: a client identifier is 1 to 23 characters.
pub const CLIENT_ID_BYTES_MAX_31: usize = 23;

/// Largest value the variable-length "remaining length" can carry.
pub const REMAINING_LENGTH_MAX: usize = 268_435_455;
const _: () = assert!(REMAINING_LENGTH_MAX + 5 == crate::config::MQTT_PACKET_BYTES_MAX);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("malformed remaining length")]
    BadRemainingLength,
    #[error("packet of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("reserved packet type {0}")]
    ReservedType(u8),
    #[error("invalid fixed-header flags {flags:#x} for packet type {kind}")]
    BadFlags { kind: u8, flags: u8 },
    #[error("packet body shorter than its fields")]
    Truncated,
    #[error("packet body longer than its fields")]
    TrailingBytes,
    #[error("string is not valid UTF-8")]
    BadUtf8,
    #[error("invalid QoS 3")]
    BadQos,
    #[error("protocol name is neither MQTT nor MQIsdp")]
    BadProtocolName,
    #[error("reserved CONNECT flag set")]
    BadConnectFlags,
    #[error("packet identifier 0")]
    ZeroPacketId,
    #[error("SUBSCRIBE or UNSUBSCRIBE without any topic filter")]
    NoFilters,
    #[error("too many topic filters in one packet (limit {0})")]
    TooManyFilters(usize),
    #[error("invalid subscription options byte {0:#x}")]
    BadSubscriptionOptions(u8),
    #[error("reserved CONNACK acknowledge flags {0:#x}")]
    BadConnAckFlags(u8),
}

#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest whole packet (fixed header included) accepted.
    pub packet_bytes_max: usize,
    /// Most filters in one SUBSCRIBE/UNSUBSCRIBE.
    pub filters_per_packet_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            packet_bytes_max: 1024 * 1024,
            filters_per_packet_max: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: u8,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// [`PROTOCOL_NAME`] or [`PROTOCOL_NAME_31`], as sent.
    pub protocol_name: &'a str,
    /// The protocol level byte as sent; the session decides what it accepts
    /// (a name and a level that do not belong together included).
    pub level: u8,
    pub clean_session: bool,
    pub keep_alive_s: u16,
    pub client_id: &'a str,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: &'a str,
    /// Zero for QoS 0.
    pub packet_id: u16,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish(Publish<'a>),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        packet_id: u16,
        filters: Vec<(&'a str, u8)>,
    },
    SubAck {
        packet_id: u16,
        codes: Vec<u8>,
    },
    Unsubscribe {
        packet_id: u16,
        filters: Vec<&'a str>,
    },
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

/// Reads the fixed header: `Ok(None)` until it is complete, then
/// `(first byte, header length, remaining length)`.
pub fn fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // Non-minimal encodings (0x80 0x00) are malformed too.
            if i > 0 && byte == 0 {
                return Err(DecodeError::BadRemainingLength);
            }
            return Ok(Some((first, 2 + i, value)));
        }
    }
    Err(DecodeError::BadRemainingLength)
}

/// Decodes one packet from the front of `buf`. On success returns the packet
/// and the number of bytes it occupied.
pub fn decode<'a>(
    buf: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Option<(Packet<'a>, usize)>, DecodeError> {
    let Some((first, header_len, remaining)) = fixed_header(buf)? else {
        return Ok(None);
    };
    // The first byte alone tells a packet type we refuse: reject before
    // waiting for a body that may never come.
    check_first_byte(first)?;
    let size = header_len + remaining;
    if size > limits.packet_bytes_max {
        return Err(DecodeError::TooLarge {
            size,
            limit: limits.packet_bytes_max,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let body = &buf[header_len..size];
    let packet = decode_body(first, body, limits)?;
    Ok(Some((packet, size)))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        if self.buf.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let raw = self.bytes()?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::BadUtf8)?;
        // MQTT-1.5.3-2: no U+0000 in any UTF-8 string.
        if raw.contains(&0) {
            return Err(DecodeError::BadUtf8);
        }
        Ok(s)
    }
    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }
    fn done(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Packet type and fixed-header flags (MQTT 3.1.1 §2.2.2).
fn check_first_byte(first: u8) -> Result<(), DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0f;
    let want = match kind {
        0 | 15 => return Err(DecodeError::ReservedType(kind)),
        3 => {
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return Err(DecodeError::BadQos);
            }
            // MQTT-3.3.1-2: DUP must be 0 for QoS 0.
            if qos == 0 && flags & 8 != 0 {
                return Err(DecodeError::BadFlags { kind, flags });
            }
            return Ok(());
        }
        6 | 8 | 10 => 2,
        _ => 0,
    };
    if flags == want {
        Ok(())
    } else {
        Err(DecodeError::BadFlags { kind, flags })
    }
}

fn decode_body<'a>(
    first: u8,
    body: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Packet<'a>, DecodeError> {
    debug_assert_eq!(check_first_byte(first), Ok(()));
    let kind = first >> 4;
    let flags = first & 0x0f;
    let mut r = Reader { buf: body };
    let packet = match kind {
        1 => Packet::Connect(decode_connect(&mut r)?),
        2 => {
            let ack = r.u8()?;
            // MQTT-3.2.2.1: bits 7-1 are reserved and 0 (and the encoding
            // stays canonical: one byte form per packet).
            if ack & 0xfe != 0 {
                return Err(DecodeError::BadConnAckFlags(ack));
            }
            let code = r.u8()?;
            Packet::ConnAck {
                session_present: ack == 1,
                code,
            }
        }
        3 => {
            let qos = (flags >> 1) & 3;
            let dup = flags & 8 != 0;
            let topic = r.str()?;
            let packet_id = if qos > 0 { r.packet_id()? } else { 0 };
            let payload = r.buf;
            r.buf = &[];
            Packet::Publish(Publish {
                dup,
                qos,
                retain: flags & 1 != 0,
                topic,
                packet_id,
                payload,
            })
        }
        4 | 5 | 7 => {
            let id = r.packet_id()?;
            match kind {
                4 => Packet::PubAck(id),
                5 => Packet::PubRec(id),
                _ => Packet::PubComp(id),
            }
        }
        6 => Packet::PubRel(r.packet_id()?),
        8 => {
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while !r.buf.is_empty() {
                if filters.len() == limits.filters_per_packet_max {
                    return Err(DecodeError::TooManyFilters(limits.filters_per_packet_max));
                }
                let filter = r.str()?;
                let options = r.u8()?;
                // MQTT-3-8.3-4: the upper six bits are reserved in 3.1.1.
                if options > 2 {
                    return Err(DecodeError::BadSubscriptionOptions(options));
                }
                filters.push((filter, options));
            }
            if filters.is_empty() {
                return Err(DecodeError::NoFilters);
            }
            Packet::Subscribe { packet_id, filters }
        }
        9 => {
            let packet_id = r.packet_id()?;
            let codes = r.buf.to_vec();
            r.buf = &[];
            Packet::SubAck { packet_id, codes }
        }
        10 => {
            let packet_id = r.packet_id()?;
            let mut filters = Vec::new();
            while !r.buf.is_empty() {
                if filters.len() == limits.filters_per_packet_max {
                    return Err(DecodeError::TooManyFilters(limits.filters_per_packet_max));
                }
                filters.push(r.str()?);
            }
            if filters.is_empty() {
                return Err(DecodeError::NoFilters);
            }
            Packet::Unsubscribe { packet_id, filters }
        }
        11 => Packet::UnsubAck(r.packet_id()?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect,
        _ => unreachable!("checked by check_first_byte"),
    };
    r.done()?;
    Ok(packet)
}

fn decode_connect<'a>(r: &mut Reader<'a>) -> Result<Connect<'a>, DecodeError> {
    // The level is checked by the session (it answers CONNACK 0x01), but a
    // wrong protocol name is plainly not MQTT: close without CONNACK.
    let protocol_name = match r.bytes()? {
        b"MQTT" => PROTOCOL_NAME,
        b"MQIsdp" => PROTOCOL_NAME_31,
        _ => return Err(DecodeError::BadProtocolName),
    };
    let level = r.u8()?;
    let flags = r.u8()?;
    if flags & 1 != 0 {
        return Err(DecodeError::BadConnectFlags);
    }
    let keep_alive_s = r.u16()?;
    let client_id = r.str()?;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 3;
    let will_retain = flags & 0x20 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::BadConnectFlags);
    }
    if will_qos == 3 {
        return Err(DecodeError::BadQos);
    }
    let will = if will_flag {
        Some(Will {
            topic: r.str()?,
            payload: r.bytes()?,
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let has_user = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    // MQTT-3.1.2-22: a password without a user name is malformed.
    if has_password && !has_user {
        return Err(DecodeError::BadConnectFlags);
    }
    let username = if has_user { Some(r.str()?) } else { None };
    let password = if has_password { Some(r.bytes()?) } else { None };
    Ok(Connect {
        protocol_name,
        level,
        clean_session: flags & 0x02 != 0,
        keep_alive_s,
        client_id,
        will,
        username,
        password,
    })
}

// ---------------------------------------------------------------- encoding

/// Bytes the remaining-length field takes for `len`.
pub fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    debug_assert!(len <= REMAINING_LENGTH_MAX);
    loop {
        let mut byte = (len & 0x7f) as u8;
        len >>= 7;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Size of the encoded PUBLISH packet.
pub fn publish_len(topic_len: usize, qos: u8, payload_len: usize) -> usize {
    let remaining = 2 + topic_len + if qos > 0 { 2 } else { 0 } + payload_len;
    1 + remaining_length_len(remaining) + remaining
}

/// Appends a PUBLISH packet.
pub fn put_publish(
    out: &mut Vec<u8>,
    dup: bool,
    qos: u8,
    retain: bool,
    topic: &[u8],
    packet_id: u16,
    payload: &[u8],
) {
    let remaining = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload.len();
    out.reserve(1 + remaining_length_len(remaining) + remaining);
    out.push(0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain));
    put_remaining_length(out, remaining);
    put_str(out, topic);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a QoS 0 PUBLISH (not a duplicate) whose topic and payload come
/// encoded: `prefixed` is the topic's length (u16, big-endian), the topic
/// and the payload, as an `Event` holds them, so one copy writes them.
/// Hot path (once per QoS 0 delivery): measured with callgrind against
/// the stored-frame copy it replaced (see the commit that added it).
#[inline]
pub fn put_publish_prefixed(out: &mut Vec<u8>, retain: bool, prefixed: &[u8]) {
    let len = prefixed.len();
    debug_assert!((2..=REMAINING_LENGTH_MAX).contains(&len));
    out.reserve(5 + len);
    let first = 0x30 | u8::from(retain);
    if len < 0x80 {
        // Small events (most): a two-byte header, no loop.
        out.extend_from_slice(&[first, len as u8]);
    } else {
        out.push(first);
        put_remaining_length(out, len);
    }
    out.extend_from_slice(prefixed);
}

/// Appends any packet; PUBLISH goes through [`put_publish`].
pub fn encode(packet: &Packet<'_>, out: &mut Vec<u8>) {
    let id_only = |out: &mut Vec<u8>, first: u8, id: u16| {
        out.extend_from_slice(&[first, 2]);
        out.extend_from_slice(&id.to_be_bytes());
    };
    match packet {
        Packet::Connect(c) => {
            let mut body = Vec::new();
            put_str(&mut body, c.protocol_name.as_bytes());
            body.push(c.level);
            let mut flags = u8::from(c.clean_session) << 1;
            if let Some(w) = &c.will {
                flags |= 0x04 | (w.qos << 3) | (u8::from(w.retain) << 5);
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            body.push(flags);
            body.extend_from_slice(&c.keep_alive_s.to_be_bytes());
            put_str(&mut body, c.client_id.as_bytes());
            if let Some(w) = &c.will {
                put_str(&mut body, w.topic.as_bytes());
                put_str(&mut body, w.payload);
            }
            if let Some(u) = c.username {
                put_str(&mut body, u.as_bytes());
            }
            if let Some(p) = c.password {
                put_str(&mut body, p);
            }
            out.push(0x10);
            put_remaining_length(out, body.len());
            out.extend_from_slice(&body);
        }
        Packet::ConnAck {
            session_present,
            code,
        } => out.extend_from_slice(&[0x20, 2, u8::from(*session_present), *code]),
        Packet::Publish(p) => put_publish(
            out,
            p.dup,
            p.qos,
            p.retain,
            p.topic.as_bytes(),
            p.packet_id,
            p.payload,
        ),
        Packet::PubAck(id) => id_only(out, 0x40, *id),
        Packet::PubRec(id) => id_only(out, 0x50, *id),
        Packet::PubRel(id) => id_only(out, 0x62, *id),
        Packet::PubComp(id) => id_only(out, 0x70, *id),
        Packet::Subscribe { packet_id, filters } => {
            let remaining = 2 + filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>();
            out.push(0x82);
            put_remaining_length(out, remaining);
            out.extend_from_slice(&packet_id.to_be_bytes());
            for (f, qos) in filters {
                put_str(out, f.as_bytes());
                out.push(*qos);
            }
        }
        Packet::SubAck { packet_id, codes } => {
            out.push(0x90);
            put_remaining_length(out, 2 + codes.len());
            out.extend_from_slice(&packet_id.to_be_bytes());
            out.extend_from_slice(codes);
        }
        Packet::Unsubscribe { packet_id, filters } => {
            let remaining = 2 + filters.iter().map(|f| 2 + f.len()).sum::<usize>();
            out.push(0xa2);
            put_remaining_length(out, remaining);
            out.extend_from_slice(&packet_id.to_be_bytes());
            for f in filters {
                put_str(out, f.as_bytes());
            }
        }
        Packet::UnsubAck(id) => id_only(out, 0xb0, *id),
        Packet::PingReq => out.extend_from_slice(&[0xc0, 0]),
        Packet::PingResp => out.extend_from_slice(&[0xd0, 0]),
        Packet::Disconnect => out.extend_from_slice(&[0xe0, 0]),
    }
}

#[cfg(test)]
mod tests;
