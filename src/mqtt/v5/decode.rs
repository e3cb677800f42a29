//! MQTT 5.0 decoding: [`decode`] and the checks of the fixed header.
//!
//! Same contract as the 3.1.1 codec: `decode` borrows from the caller's
//! buffer, `Ok(None)` means "need more bytes", an oversize packet is refused
//! from its fixed header, and a bad first byte is refused before its body
//! arrives. Every [`DecodeError`] names the reason code to send in the
//! CONNACK (before CONNECT succeeded) or DISCONNECT (after) that closes the
//! connection (§4.13).

use super::error::DecodeError;
use super::kind::{context, Context, PacketType};
use super::packet::*;
use super::properties::Properties;
use super::reader::{DecodeLimits, Reader};
use super::reason;

/// Reads the fixed header: `Ok(None)` until it is complete, then
/// `(first byte, header length, remaining length)`.
pub fn fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    // The fixed header is the same in MQTT 3.1.1 and 5.0.
    crate::mqtt::codec::fixed_header(buf).map_err(|_| DecodeError::BadVarint)
}

/// Packet type and fixed-header flags (§2.1.3): reserved flags are
/// malformed, as is PUBLISH QoS 3 (MQTT-3.3.1-4) or DUP with QoS 0.
pub fn check_first_byte(first: u8) -> Result<PacketType, DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0f;
    let Some(t) = PacketType::from_u8(kind) else {
        return Err(DecodeError::ReservedType(kind));
    };
    let want = match t {
        PacketType::Publish => {
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return Err(DecodeError::BadQos);
            }
            if qos == 0 && flags & 8 != 0 {
                return Err(DecodeError::BadFlags { kind, flags });
            }
            return Ok(t);
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 2,
        _ => 0,
    };
    if flags == want {
        Ok(t)
    } else {
        Err(DecodeError::BadFlags { kind, flags })
    }
}

/// The protocol level of the CONNECT at the front of `buf`, once enough of
/// it has arrived: the first packet's level says which codec (3.1.1 or 5)
/// handles the connection. Does not check the protocol name.
pub fn peek_connect_level(buf: &[u8]) -> Result<Option<u8>, DecodeError> {
    let Some((first, header_len, remaining)) = fixed_header(buf)? else {
        return Ok(None);
    };
    if first >> 4 != PacketType::Connect as u8 {
        return Err(DecodeError::NotConnect(first >> 4));
    }
    let body = &buf[header_len..];
    let (Some(&hi), Some(&lo)) = (body.first(), body.get(1)) else {
        return Ok(None);
    };
    let at = 2 + usize::from(u16::from_be_bytes([hi, lo]));
    if at >= remaining {
        return Err(DecodeError::Truncated);
    }
    Ok(body.get(at).copied())
}

/// Decodes one packet (either direction) from the front of `buf`. On
/// success returns the packet and the number of bytes it occupied.
pub fn decode<'a>(
    buf: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Option<(Packet<'a>, usize)>, DecodeError> {
    let Some((first, header_len, remaining)) = fixed_header(buf)? else {
        return Ok(None);
    };
    let kind = check_first_byte(first)?;
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
    let packet = decode_body(kind, first & 0x0f, body, limits)?;
    Ok(Some((packet, size)))
}

fn decode_body<'a>(
    kind: PacketType,
    flags: u8,
    body: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Packet<'a>, DecodeError> {
    let mut r = Reader::new(body);
    let props = |r: &mut Reader<'a>| Properties::decode(r, context(kind), limits);
    let packet = match kind {
        PacketType::Connect => Packet::Connect(decode_connect(&mut r, limits)?),
        PacketType::ConnAck => {
            let ack = r.u8()?;
            // MQTT-3.2.2-1: bits 7-1 reserved.
            if ack & 0xfe != 0 {
                return Err(DecodeError::BadConnAckFlags(ack));
            }
            let reason_code = r.reason_code(kind)?;
            let session_present = ack == 1;
            // MQTT-3.2.2-6.
            if session_present && reason::is_error(reason_code) {
                return Err(DecodeError::SessionPresentOnError);
            }
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties: props(&mut r)?,
            })
        }
        PacketType::Publish => {
            let qos = (flags >> 1) & 3;
            let topic = r.str()?;
            let packet_id = if qos > 0 { r.packet_id()? } else { 0 };
            let properties = props(&mut r)?;
            // §3.3.2.3.4: a zero-length topic needs an alias.
            if topic.is_empty() && properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            Packet::Publish(Publish {
                dup: flags & 8 != 0,
                qos,
                retain: flags & 1 != 0,
                topic,
                packet_id,
                properties,
                payload: r.rest(),
            })
        }
        PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp => {
            let packet_id = r.packet_id()?;
            // §3.4.2.1: remaining length 2 means Success and no properties;
            // §3.4.2.2.1: shorter than 4 means no properties.
            let mut resp = PubResp::ok(packet_id);
            if !r.is_empty() {
                resp.reason_code = r.reason_code(kind)?;
                if !r.is_empty() {
                    resp.properties = props(&mut r)?;
                }
            }
            match kind {
                PacketType::PubAck => Packet::PubAck(resp),
                PacketType::PubRec => Packet::PubRec(resp),
                PacketType::PubRel => Packet::PubRel(resp),
                _ => Packet::PubComp(resp),
            }
        }
        PacketType::Subscribe => {
            let packet_id = r.packet_id()?;
            let properties = props(&mut r)?;
            let mut filters = Vec::new();
            while !r.is_empty() {
                if filters.len() == limits.filters_per_packet_max {
                    return Err(DecodeError::TooManyFilters(limits.filters_per_packet_max));
                }
                let filter = r.str()?;
                let options = SubscriptionOptions::from_byte(r.u8()?)?;
                // MQTT-3.8.3-4.
                if options.no_local && filter.starts_with("$share/") {
                    return Err(DecodeError::NoLocalOnShared);
                }
                filters.push((filter, options));
            }
            // §3.8.3: a SUBSCRIBE with no payload is a Protocol Error.
            if filters.is_empty() {
                return Err(DecodeError::NoFilters);
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        }
        PacketType::SubAck | PacketType::UnsubAck => {
            let packet_id = r.packet_id()?;
            let properties = props(&mut r)?;
            let reason_codes = r.rest();
            if reason_codes.is_empty() {
                return Err(DecodeError::NoReasonCodes);
            }
            if let Some(&code) = reason_codes.iter().find(|&&c| !reason::valid_for(kind, c)) {
                return Err(DecodeError::BadReasonCode { kind, code });
            }
            let ack = SubAck {
                packet_id,
                properties,
                reason_codes,
            };
            if kind == PacketType::SubAck {
                Packet::SubAck(ack)
            } else {
                Packet::UnsubAck(ack)
            }
        }
        PacketType::Unsubscribe => {
            let packet_id = r.packet_id()?;
            let properties = props(&mut r)?;
            let mut filters = Vec::new();
            while !r.is_empty() {
                if filters.len() == limits.filters_per_packet_max {
                    return Err(DecodeError::TooManyFilters(limits.filters_per_packet_max));
                }
                filters.push(r.str()?);
            }
            // §3.10.3: an UNSUBSCRIBE with no payload is a Protocol Error.
            if filters.is_empty() {
                return Err(DecodeError::NoFilters);
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        }
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect | PacketType::Auth => {
            // §3.14.2.1 / §3.15.2.1: remaining length 0 means Success and
            // no properties; §3.14.2.2.1: below 2 means no properties (we
            // accept the same one-byte form for AUTH).
            let mut p = ReasonOnly::new(reason::SUCCESS);
            if !r.is_empty() {
                p.reason_code = r.reason_code(kind)?;
                if !r.is_empty() {
                    p.properties = props(&mut r)?;
                }
            }
            if kind == PacketType::Disconnect {
                Packet::Disconnect(p)
            } else {
                Packet::Auth(p)
            }
        }
    };
    r.done()?;
    Ok(packet)
}

fn decode_connect<'a>(
    r: &mut Reader<'a>,
    limits: &DecodeLimits,
) -> Result<Connect<'a>, DecodeError> {
    // §3.1.2.1-2: anything but "MQTT" level 5 is not for this codec; a
    // caller dispatches on `peek_connect_level` first.
    if r.bytes()? != b"MQTT" {
        return Err(DecodeError::BadProtocolName);
    }
    let level = r.u8()?;
    if level != PROTOCOL_LEVEL_5 {
        return Err(DecodeError::UnsupportedProtocolVersion(level));
    }
    let flags = r.u8()?;
    // MQTT-3.1.2-3: the reserved flag is 0.
    if flags & 1 != 0 {
        return Err(DecodeError::BadConnectFlags);
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 3;
    let will_retain = flags & 0x20 != 0;
    // MQTT-3.1.2-11, -13: no Will QoS or Retain without a Will.
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::BadConnectFlags);
    }
    // MQTT-3.1.2-12: Will QoS 3 is malformed.
    if will_qos == 3 {
        return Err(DecodeError::BadQos);
    }
    let keep_alive_s = r.u16()?;
    let properties = Properties::decode(r, Context::Connect, limits)?;
    let client_id = r.str()?;
    let will = if will_flag {
        let properties = Properties::decode(r, Context::Will, limits)?;
        Some(Box::new(Will {
            properties,
            topic: r.str()?,
            payload: r.bytes()?,
            qos: will_qos,
            retain: will_retain,
        }))
    } else {
        None
    };
    let username = if flags & 0x80 != 0 {
        Some(r.str()?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(r.bytes()?)
    } else {
        None
    };
    Ok(Connect {
        clean_start: flags & 0x02 != 0,
        keep_alive_s,
        properties,
        client_id,
        will,
        username,
        password,
    })
}
