//! MQTT 5.0 encoding: [`encode`] and [`encoded_len`].
//!
//! Encoders are canonical: properties in ascending identifier order and the
//! shortest form a packet allows (PUBACK..PUBCOMP without reason code and
//! properties when they are Success and empty, and so on). Decoding bytes
//! from another encoder and re-encoding may therefore differ in form, never
//! in meaning.

use super::error::EncodeError;
use super::kind::{context, Context, PacketType};
use super::packet::*;
use super::properties::{put_varint, varint_len, Properties};
use super::reader::VARINT_MAX;
use super::reason;

fn field_len(len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        Err(EncodeError::FieldTooLong)
    } else {
        Ok(2 + len)
    }
}

fn put_bin(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// A property block's full size (length prefix included) and content size.
fn props_len(p: &Properties<'_>, ctx: Context) -> Result<(usize, usize), EncodeError> {
    let len = p.encoded_len(ctx)?;
    Ok((varint_len(len) + len, len))
}

fn nonzero_id(id: u16) -> Result<(), EncodeError> {
    if id == 0 {
        Err(EncodeError::InvalidField("packet identifier 0"))
    } else {
        Ok(())
    }
}

fn check_qos(qos: u8) -> Result<(), EncodeError> {
    if qos > 2 {
        Err(EncodeError::InvalidField("QoS above 2"))
    } else {
        Ok(())
    }
}

/// The fixed header's first byte and the remaining length of `packet`,
/// after checking everything that would make the bytes invalid.
fn plan(packet: &Packet<'_>) -> Result<(u8, usize), EncodeError> {
    let kind = packet.packet_type();
    let first = match kind {
        PacketType::Publish => {
            let Packet::Publish(p) = packet else {
                unreachable!()
            };
            check_qos(p.qos)?;
            if p.qos == 0 && p.dup {
                return Err(EncodeError::InvalidField("DUP with QoS 0"));
            }
            0x30 | u8::from(p.dup) << 3 | p.qos << 1 | u8::from(p.retain)
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            (kind as u8) << 4 | 2
        }
        _ => (kind as u8) << 4,
    };
    let code = |code: u8| {
        if reason::valid_for(kind, code) {
            Ok(())
        } else {
            Err(EncodeError::InvalidField(
                "reason code not valid for packet",
            ))
        }
    };
    let ctx = || context(kind);
    let remaining = match packet {
        Packet::Connect(c) => {
            let mut n = field_len(4)? + 1 + 1 + 2;
            n += props_len(&c.properties, Context::Connect)?.0;
            n += field_len(c.client_id.len())?;
            if let Some(w) = &c.will {
                check_qos(w.qos)?;
                n += props_len(&w.properties, Context::Will)?.0;
                n += field_len(w.topic.len())? + field_len(w.payload.len())?;
            }
            if let Some(u) = c.username {
                n += field_len(u.len())?;
            }
            if let Some(p) = c.password {
                n += field_len(p.len())?;
            }
            n
        }
        Packet::ConnAck(c) => {
            code(c.reason_code)?;
            if c.session_present && reason::is_error(c.reason_code) {
                return Err(EncodeError::InvalidField("session present on error"));
            }
            2 + props_len(&c.properties, ctx())?.0
        }
        Packet::Publish(p) => {
            if p.qos > 0 {
                nonzero_id(p.packet_id)?;
            }
            if p.topic.is_empty() && p.properties.topic_alias.is_none() {
                return Err(EncodeError::InvalidField("empty topic without alias"));
            }
            field_len(p.topic.len())?
                + if p.qos > 0 { 2 } else { 0 }
                + props_len(&p.properties, ctx())?.0
                + p.payload.len()
        }
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            nonzero_id(p.packet_id)?;
            code(p.reason_code)?;
            if !p.properties.is_empty() {
                2 + 1 + props_len(&p.properties, ctx())?.0
            } else if p.reason_code != reason::SUCCESS {
                3
            } else {
                2
            }
        }
        Packet::Subscribe(s) => {
            nonzero_id(s.packet_id)?;
            if s.filters.is_empty() {
                return Err(EncodeError::InvalidField("no topic filters"));
            }
            let mut n = 2 + props_len(&s.properties, ctx())?.0;
            for (f, o) in &s.filters {
                check_qos(o.qos)?;
                n += field_len(f.len())? + 1;
            }
            n
        }
        Packet::SubAck(a) | Packet::UnsubAck(a) => {
            nonzero_id(a.packet_id)?;
            if a.reason_codes.is_empty() {
                return Err(EncodeError::InvalidField("no reason codes"));
            }
            for &c in a.reason_codes {
                code(c)?;
            }
            2 + props_len(&a.properties, ctx())?.0 + a.reason_codes.len()
        }
        Packet::Unsubscribe(u) => {
            nonzero_id(u.packet_id)?;
            if u.filters.is_empty() {
                return Err(EncodeError::InvalidField("no topic filters"));
            }
            let mut n = 2 + props_len(&u.properties, ctx())?.0;
            for f in &u.filters {
                n += field_len(f.len())?;
            }
            n
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) | Packet::Auth(d) => {
            code(d.reason_code)?;
            if !d.properties.is_empty() {
                1 + props_len(&d.properties, ctx())?.0
            } else if d.reason_code == reason::SUCCESS {
                0
            } else if kind == PacketType::Auth {
                // Only remaining length 0 is a blessed short form for AUTH.
                2
            } else {
                1
            }
        }
    };
    if remaining > VARINT_MAX {
        return Err(EncodeError::TooLarge);
    }
    Ok((first, remaining))
}

/// Size of `packet` once encoded, fixed header included: what to compare
/// against the peer's Maximum Packet Size before sending (MQTT-3.1.2-24).
pub fn encoded_len(packet: &Packet<'_>) -> Result<usize, EncodeError> {
    let (_, remaining) = plan(packet)?;
    Ok(1 + varint_len(remaining) + remaining)
}

fn put_props(out: &mut Vec<u8>, p: &Properties<'_>, ctx: Context) {
    let len = p.encoded_len(ctx).expect("checked by plan");
    p.put(out, len);
}

/// Appends `packet` to `out` and returns the bytes written; on error
/// nothing is written.
pub fn encode(packet: &Packet<'_>, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let (first, remaining) = plan(packet)?;
    let total = 1 + varint_len(remaining) + remaining;
    let start = out.len();
    out.reserve(total);
    out.push(first);
    put_varint(out, remaining);
    let kind = packet.packet_type();
    match packet {
        Packet::Connect(c) => {
            put_bin(out, b"MQTT");
            out.push(PROTOCOL_LEVEL_5);
            let mut flags = u8::from(c.clean_start) << 1;
            if let Some(w) = &c.will {
                flags |= 0x04 | w.qos << 3 | u8::from(w.retain) << 5;
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            out.push(flags);
            out.extend_from_slice(&c.keep_alive_s.to_be_bytes());
            put_props(out, &c.properties, Context::Connect);
            put_bin(out, c.client_id.as_bytes());
            if let Some(w) = &c.will {
                put_props(out, &w.properties, Context::Will);
                put_bin(out, w.topic.as_bytes());
                put_bin(out, w.payload);
            }
            if let Some(u) = c.username {
                put_bin(out, u.as_bytes());
            }
            if let Some(p) = c.password {
                put_bin(out, p);
            }
        }
        Packet::ConnAck(c) => {
            out.push(u8::from(c.session_present));
            out.push(c.reason_code);
            put_props(out, &c.properties, Context::ConnAck);
        }
        Packet::Publish(p) => {
            put_bin(out, p.topic.as_bytes());
            if p.qos > 0 {
                out.extend_from_slice(&p.packet_id.to_be_bytes());
            }
            put_props(out, &p.properties, Context::Publish);
            out.extend_from_slice(p.payload);
        }
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            out.extend_from_slice(&p.packet_id.to_be_bytes());
            if remaining > 2 {
                out.push(p.reason_code);
            }
            if remaining > 3 {
                put_props(out, &p.properties, context(kind));
            }
        }
        Packet::Subscribe(s) => {
            out.extend_from_slice(&s.packet_id.to_be_bytes());
            put_props(out, &s.properties, Context::Subscribe);
            for (f, o) in &s.filters {
                put_bin(out, f.as_bytes());
                out.push(o.to_byte());
            }
        }
        Packet::SubAck(a) | Packet::UnsubAck(a) => {
            out.extend_from_slice(&a.packet_id.to_be_bytes());
            put_props(out, &a.properties, context(kind));
            out.extend_from_slice(a.reason_codes);
        }
        Packet::Unsubscribe(u) => {
            out.extend_from_slice(&u.packet_id.to_be_bytes());
            put_props(out, &u.properties, Context::Unsubscribe);
            for f in &u.filters {
                put_bin(out, f.as_bytes());
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) | Packet::Auth(d) => {
            if remaining > 0 {
                out.push(d.reason_code);
            }
            if remaining > 1 {
                put_props(out, &d.properties, context(kind));
            }
        }
    }
    debug_assert_eq!(out.len() - start, total);
    Ok(total)
}
