//! Why bytes do not decode ([`DecodeError`], each mapped to the reason
//! code to close with, §4.13) and why a packet cannot be encoded
//! ([`EncodeError`]).

use thiserror::Error;

use super::kind::{Context, PacketType};
use super::reason;

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
