//! MQTT 5.0 packets: types, [`decode`], [`encode`].
//!
//! Same contract as the 3.1.1 codec: `decode` borrows from the caller's
//! buffer, `Ok(None)` means "need more bytes", an oversize packet is refused
//! from its fixed header, and a bad first byte is refused before its body
//! arrives. Every [`DecodeError`] names the reason code to send in the
//! CONNACK (before CONNECT succeeded) or DISCONNECT (after) that closes the
//! connection (§4.13).
//!
//! Encoders are canonical: properties in ascending identifier order and the
//! shortest form a packet allows (PUBACK..PUBCOMP without reason code and
//! properties when they are Success and empty, and so on). Decoding bytes
//! from another encoder and re-encoding may therefore differ in form, never
//! in meaning.

use thiserror::Error;

use super::properties::{put_varint, varint_len, Context, Properties};
use super::reason;

pub const PROTOCOL_LEVEL_5: u8 = 5;

/// Largest value a variable byte integer can carry (§1.5.5), so also the
/// largest remaining length.
pub const VARINT_MAX: usize = 268_435_455;

/// Control packet types (§2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    pub fn from_u8(kind: u8) -> Option<Self> {
        use PacketType::*;
        Some(match kind {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }
}

/// Why a packet was refused. [`DecodeError::reason_code`] is the MQTT 5
/// reason code to close the connection with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    // ---- 0x81 Malformed Packet
    #[error("malformed variable byte integer")]
    BadVarint,
    #[error("reserved packet type {0}")]
    ReservedType(u8),
    #[error("invalid fixed-header flags {flags:#x} for packet type {kind}")]
    BadFlags { kind: u8, flags: u8 },
    #[error("invalid QoS 3")]
    BadQos,
    #[error("packet body shorter than its fields")]
    Truncated,
    #[error("packet body longer than its fields")]
    TrailingBytes,
    #[error("string is not valid UTF-8 or contains U+0000")]
    BadUtf8,
    #[error("reserved or inconsistent CONNECT flags")]
    BadConnectFlags,
    #[error("reserved CONNACK acknowledge flags {0:#x}")]
    BadConnAckFlags(u8),
    #[error("unknown property identifier {0:#x}")]
    UnknownProperty(u32),
    #[error("property {id:#x} not allowed in {ctx:?}")]
    PropertyNotAllowed { id: u8, ctx: Context },
    #[error("reserved subscription option bits set in {0:#x}")]
    BadSubscriptionOptions(u8),
    // ---- 0x82 Protocol Error
    #[error("property {0:#x} included more than once")]
    DuplicateProperty(u8),
    #[error("property {id:#x} has invalid value {value}")]
    BadPropertyValue { id: u8, value: u32 },
    #[error("Authentication Data without Authentication Method")]
    AuthDataWithoutMethod,
    #[error("packet identifier 0")]
    ZeroPacketId,
    #[error("reason code {code:#x} not valid in {kind:?}")]
    BadReasonCode { kind: PacketType, code: u8 },
    #[error("CONNACK with session present and an error reason code")]
    SessionPresentOnError,
    #[error("PUBLISH with an empty topic name and no topic alias")]
    EmptyTopicWithoutAlias,
    #[error("SUBSCRIBE or UNSUBSCRIBE without any topic filter")]
    NoFilters,
    #[error("SUBACK or UNSUBACK without any reason code")]
    NoReasonCodes,
    #[error("subscription options {0:#x}: QoS 3 or Retain Handling 3")]
    BadSubscriptionOption(u8),
    #[error("No Local set on a shared subscription")]
    NoLocalOnShared,
    #[error("expected CONNECT, got packet type {0}")]
    NotConnect(u8),
    // ---- 0x84 Unsupported Protocol Version
    #[error("protocol name is not MQTT")]
    BadProtocolName,
    #[error("protocol level {0}, not 5")]
    UnsupportedProtocolVersion(u8),
    // ---- 0x95 Packet too large
    #[error("packet of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    // ---- 0x97 Quota exceeded
    #[error("property block of {size} bytes exceeds the limit of {limit} bytes")]
    PropertiesTooLarge { size: usize, limit: usize },
    #[error("too many topic filters in one packet (limit {0})")]
    TooManyFilters(usize),
}

impl DecodeError {
    /// The reason code to send in CONNACK or DISCONNECT (§4.13).
    pub fn reason_code(&self) -> u8 {
        use DecodeError::*;
        match self {
            BadVarint
            | ReservedType(_)
            | BadFlags { .. }
            | BadQos
            | Truncated
            | TrailingBytes
            | BadUtf8
            | BadConnectFlags
            | BadConnAckFlags(_)
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | BadSubscriptionOptions(_) => reason::MALFORMED_PACKET,
            DuplicateProperty(_)
            | BadPropertyValue { .. }
            | AuthDataWithoutMethod
            | ZeroPacketId
            | BadReasonCode { .. }
            | SessionPresentOnError
            | EmptyTopicWithoutAlias
            | NoFilters
            | NoReasonCodes
            | BadSubscriptionOption(_)
            | NoLocalOnShared
            | NotConnect(_) => reason::PROTOCOL_ERROR,
            BadProtocolName | UnsupportedProtocolVersion(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
            TooLarge { .. } => reason::PACKET_TOO_LARGE,
            PropertiesTooLarge { .. } | TooManyFilters(_) => reason::QUOTA_EXCEEDED,
        }
    }
}

/// Why a packet could not be encoded; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("property {id:#x} not allowed in {ctx:?}")]
    PropertyNotAllowed { id: u8, ctx: Context },
    #[error("property {id:#x}: value out of range or too long")]
    ValueOutOfRange { id: u8 },
    #[error("string or binary field longer than 65535 bytes")]
    FieldTooLong,
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
    #[error("packet longer than the largest remaining length")]
    TooLarge,
}

#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest whole packet (fixed header included) accepted; this is the
    /// Maximum Packet Size a server announces.
    pub packet_bytes_max: usize,
    /// Largest property block (each block of a packet separately: CONNECT
    /// has two).
    pub properties_bytes_max: usize,
    /// Most filters in one SUBSCRIBE/UNSUBSCRIBE.
    pub filters_per_packet_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            packet_bytes_max: 1024 * 1024,
            properties_bytes_max: 64 * 1024,
            filters_per_packet_max: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will<'a> {
    pub properties: Properties<'a>,
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: u8,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    pub clean_start: bool,
    pub keep_alive_s: u16,
    pub properties: Properties<'a>,
    pub client_id: &'a str,
    /// Boxed: a Will carries a second property block, and CONNECT comes
    /// once per connection.
    pub will: Option<Box<Will<'a>>>,
    pub username: Option<&'a str>,
    /// MQTT 5 allows a password without a user name (§3.1.2.9).
    pub password: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck<'a> {
    pub session_present: bool,
    pub reason_code: u8,
    pub properties: Properties<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    /// May be empty when `properties.topic_alias` is set (§3.3.2.3.4).
    pub topic: &'a str,
    /// Zero for QoS 0.
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub payload: &'a [u8],
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResp<'a> {
    pub packet_id: u16,
    pub reason_code: u8,
    pub properties: Properties<'a>,
}

impl PubResp<'_> {
    /// Success, no properties: the two-byte short form.
    pub fn ok(packet_id: u16) -> Self {
        PubResp {
            packet_id,
            reason_code: reason::SUCCESS,
            properties: Properties::default(),
        }
    }
}

/// Retain Handling subscription option (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Parses the options byte: reserved bits 6-7 set is malformed
    /// (MQTT-3.8.3-5, 0x81); QoS 3 or Retain Handling 3 is a Protocol Error
    /// (0x82).
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        if b & 0xc0 != 0 {
            return Err(DecodeError::BadSubscriptionOptions(b));
        }
        let retain_handling = match (b >> 4) & 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::BadSubscriptionOption(b)),
        };
        let qos = b & 3;
        if qos == 3 {
            return Err(DecodeError::BadSubscriptionOption(b));
        }
        Ok(SubscriptionOptions {
            qos,
            no_local: b & 0x04 != 0,
            retain_as_published: b & 0x08 != 0,
            retain_handling,
        })
    }

    pub fn to_byte(self) -> u8 {
        self.qos
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub filters: Vec<(&'a str, SubscriptionOptions)>,
}

/// SUBACK and UNSUBACK: one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub reason_codes: &'a [u8],
}

/// UNSUBACK has SUBACK's shape (with its own reason codes).
pub type UnsubAck<'a> = SubAck<'a>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    pub packet_id: u16,
    pub properties: Properties<'a>,
    pub filters: Vec<&'a str>,
}

/// DISCONNECT and AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonOnly<'a> {
    pub reason_code: u8,
    pub properties: Properties<'a>,
}

pub type Disconnect<'a> = ReasonOnly<'a>;
pub type Auth<'a> = ReasonOnly<'a>;

impl ReasonOnly<'_> {
    pub fn new(reason_code: u8) -> Self {
        ReasonOnly {
            reason_code,
            properties: Properties::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck(ConnAck<'a>),
    Publish(Publish<'a>),
    PubAck(PubResp<'a>),
    PubRec(PubResp<'a>),
    PubRel(PubResp<'a>),
    PubComp(PubResp<'a>),
    Subscribe(Subscribe<'a>),
    SubAck(SubAck<'a>),
    Unsubscribe(Unsubscribe<'a>),
    UnsubAck(SubAck<'a>),
    PingReq,
    PingResp,
    Disconnect(ReasonOnly<'a>),
    Auth(ReasonOnly<'a>),
}

impl Packet<'_> {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

// ---------------------------------------------------------------- decoding

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

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let head = self.take_slice(N)?;
        Ok(head.try_into().expect("length checked"))
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A variable byte integer (§1.5.5): at most four bytes, minimal.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(DecodeError::BadVarint);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint)
    }
    fn take_slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }
    /// The next `len` bytes as their own reader.
    pub(crate) fn take(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        Ok(Reader {
            buf: self.take_slice(len)?,
        })
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    /// Binary data: two-byte length, then the bytes (§1.5.6).
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        self.take_slice(len)
    }
    /// UTF-8 encoded string (§1.5.4): valid UTF-8 (so no surrogates) and no
    /// U+0000 (MQTT-1.5.4-1, -2), else malformed.
    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let raw = self.bytes()?;
        if raw.contains(&0) {
            return Err(DecodeError::BadUtf8);
        }
        std::str::from_utf8(raw).map_err(|_| DecodeError::BadUtf8)
    }
    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }
    fn reason_code(&mut self, kind: PacketType) -> Result<u8, DecodeError> {
        let code = self.u8()?;
        if reason::valid_for(kind, code) {
            Ok(code)
        } else {
            Err(DecodeError::BadReasonCode { kind, code })
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

fn context(kind: PacketType) -> Context {
    match kind {
        PacketType::Connect => Context::Connect,
        PacketType::ConnAck => Context::ConnAck,
        PacketType::Publish => Context::Publish,
        PacketType::PubAck => Context::PubAck,
        PacketType::PubRec => Context::PubRec,
        PacketType::PubRel => Context::PubRel,
        PacketType::PubComp => Context::PubComp,
        PacketType::Subscribe => Context::Subscribe,
        PacketType::SubAck => Context::SubAck,
        PacketType::Unsubscribe => Context::Unsubscribe,
        PacketType::UnsubAck => Context::UnsubAck,
        PacketType::Disconnect => Context::Disconnect,
        PacketType::Auth => Context::Auth,
        PacketType::PingReq | PacketType::PingResp => {
            unreachable!("PINGREQ and PINGRESP carry no properties")
        }
    }
}

fn decode_body<'a>(
    kind: PacketType,
    flags: u8,
    body: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Packet<'a>, DecodeError> {
    let mut r = Reader { buf: body };
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

// ---------------------------------------------------------------- encoding

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
