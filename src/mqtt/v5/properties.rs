//! MQTT 5.0 properties (§2.2.2): identifiers, their data types, where each
//! may appear, and the typed [`Properties`] block every packet carries.
//!
//! Decoding borrows strings and binary data from the packet buffer; only
//! user properties and subscription identifiers (which may repeat) collect
//! into a `Vec`, and an absent list allocates nothing.
//!
//! Validation and the reason code each failure maps to (§2.2.2.2, §3.x,
//! §4.13):
//! - unknown identifier, or an identifier not valid for the packet (or the
//!   Will): 0x81 Malformed Packet — §2.2.2.2 says "A Control Packet which
//!   contains an Identifier which is not valid for its packet type ... is a
//!   Malformed Packet";
//! - property length longer than the packet, a value cut short, a bad
//!   variable byte integer, invalid UTF-8 or U+0000 in a string: 0x81;
//! - a property present twice (except User Property anywhere and
//!   Subscription Identifier in PUBLISH): 0x82 Protocol Error;
//! - Receive Maximum 0, Maximum Packet Size 0, Topic Alias 0, Subscription
//!   Identifier 0, a byte flag (Payload Format Indicator, Request Problem /
//!   Response Information, Maximum QoS, the *Available flags) other than 0
//!   or 1: 0x82;
//! - Authentication Data without Authentication Method: 0x82;
//! - a property block longer than [`DecodeLimits::properties_bytes_max`]:
//!   0x97 Quota exceeded (an implementation limit, not a spec rule).
//!
//! Not checked here (the session knows the context): Topic Alias above the
//! negotiated maximum (0x94), Session Expiry Interval in a server's
//! DISCONNECT, wildcards in Response Topic, payload UTF-8 validity under
//! Payload Format Indicator 1 (0x99).

use super::error::{DecodeError, EncodeError};
pub use super::kind::Context;
use super::reader::{DecodeLimits, Reader, VARINT_MAX};

/// Property identifiers (§2.2.2.2, table 2-4).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// The data type of a property value (§1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    Byte,
    TwoByteInteger,
    FourByteInteger,
    VariableByteInteger,
    Utf8String,
    BinaryData,
    Utf8StringPair,
}

const CONNECT: u16 = Context::Connect.bit();
const WILL: u16 = Context::Will.bit();
const CONNACK: u16 = Context::ConnAck.bit();
const PUBLISH: u16 = Context::Publish.bit();
const ACKS: u16 = Context::PubAck.bit()
    | Context::PubRec.bit()
    | Context::PubRel.bit()
    | Context::PubComp.bit()
    | Context::SubAck.bit()
    | Context::UnsubAck.bit();
const SUBSCRIBE: u16 = Context::Subscribe.bit();
const DISCONNECT: u16 = Context::Disconnect.bit();
const AUTH: u16 = Context::Auth.bit();
const EVERYWHERE: u16 = (1 << 14) - 1;

/// Name, data type and allowed contexts of property `id` (a mask with bit
/// `1 << ctx as u16` set for each [`Context`] it may appear in; see
/// [`allowed_in`]), or `None` for an identifier MQTT 5.0 does not define.
pub fn property_info(id: u8) -> Option<(&'static str, PropertyType, u16)> {
    use PropertyType::*;
    Some(match id {
        id::PAYLOAD_FORMAT_INDICATOR => ("Payload Format Indicator", Byte, PUBLISH | WILL),
        id::MESSAGE_EXPIRY_INTERVAL => ("Message Expiry Interval", FourByteInteger, PUBLISH | WILL),
        id::CONTENT_TYPE => ("Content Type", Utf8String, PUBLISH | WILL),
        id::RESPONSE_TOPIC => ("Response Topic", Utf8String, PUBLISH | WILL),
        id::CORRELATION_DATA => ("Correlation Data", BinaryData, PUBLISH | WILL),
        id::SUBSCRIPTION_IDENTIFIER => (
            "Subscription Identifier",
            VariableByteInteger,
            PUBLISH | SUBSCRIBE,
        ),
        id::SESSION_EXPIRY_INTERVAL => (
            "Session Expiry Interval",
            FourByteInteger,
            CONNECT | CONNACK | DISCONNECT,
        ),
        id::ASSIGNED_CLIENT_IDENTIFIER => ("Assigned Client Identifier", Utf8String, CONNACK),
        id::SERVER_KEEP_ALIVE => ("Server Keep Alive", TwoByteInteger, CONNACK),
        id::AUTHENTICATION_METHOD => (
            "Authentication Method",
            Utf8String,
            CONNECT | CONNACK | AUTH,
        ),
        id::AUTHENTICATION_DATA => ("Authentication Data", BinaryData, CONNECT | CONNACK | AUTH),
        id::REQUEST_PROBLEM_INFORMATION => ("Request Problem Information", Byte, CONNECT),
        id::WILL_DELAY_INTERVAL => ("Will Delay Interval", FourByteInteger, WILL),
        id::REQUEST_RESPONSE_INFORMATION => ("Request Response Information", Byte, CONNECT),
        id::RESPONSE_INFORMATION => ("Response Information", Utf8String, CONNACK),
        id::SERVER_REFERENCE => ("Server Reference", Utf8String, CONNACK | DISCONNECT),
        id::REASON_STRING => (
            "Reason String",
            Utf8String,
            CONNACK | ACKS | DISCONNECT | AUTH,
        ),
        id::RECEIVE_MAXIMUM => ("Receive Maximum", TwoByteInteger, CONNECT | CONNACK),
        id::TOPIC_ALIAS_MAXIMUM => ("Topic Alias Maximum", TwoByteInteger, CONNECT | CONNACK),
        id::TOPIC_ALIAS => ("Topic Alias", TwoByteInteger, PUBLISH),
        id::MAXIMUM_QOS => ("Maximum QoS", Byte, CONNACK),
        id::RETAIN_AVAILABLE => ("Retain Available", Byte, CONNACK),
        id::USER_PROPERTY => ("User Property", Utf8StringPair, EVERYWHERE),
        id::MAXIMUM_PACKET_SIZE => ("Maximum Packet Size", FourByteInteger, CONNECT | CONNACK),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => ("Wildcard Subscription Available", Byte, CONNACK),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            ("Subscription Identifier Available", Byte, CONNACK)
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => ("Shared Subscription Available", Byte, CONNACK),
        _ => return None,
    })
}

/// Whether property `id` may appear in `ctx`.
pub fn allowed_in(id: u8, ctx: Context) -> bool {
    property_info(id).is_some_and(|(_, _, mask)| mask & ctx.bit() != 0)
}

/// One property block, typed. `None` / empty means absent. Flags the spec
/// encodes as a byte 0/1 are `bool`; Payload Format Indicator and Maximum
/// QoS keep their byte value (0 or 1 once decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties<'a> {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<&'a str>,
    pub response_topic: Option<&'a str>,
    pub correlation_data: Option<&'a [u8]>,
    /// PUBLISH (server to client) may carry several; SUBSCRIBE at most one.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<&'a str>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<&'a str>,
    pub authentication_data: Option<&'a [u8]>,
    pub request_problem_information: Option<bool>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<bool>,
    pub response_information: Option<&'a str>,
    pub server_reference: Option<&'a str>,
    pub reason_string: Option<&'a str>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<bool>,
    /// In wire order; names may repeat.
    pub user_properties: Vec<(&'a str, &'a str)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

/// One property value, as the encoder walks a block.
enum Value<'a> {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    fn len(&self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::Two(_) => 2,
            Value::Four(_) => 4,
            Value::Var(v) => varint_len(*v as usize),
            Value::Str(s) => 2 + s.len(),
            Value::Bin(b) => 2 + b.len(),
            Value::Pair(k, v) => 4 + k.len() + v.len(),
        }
    }
}

/// Bytes a variable byte integer takes for `v` (`v` ≤ [`VARINT_MAX`]).
pub fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `v` (≤ [`VARINT_MAX`]) as a variable byte integer (§1.5.5).
pub fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    debug_assert!(v <= VARINT_MAX);
    loop {
        let mut byte = (v & 0x7f) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if v == 0 {
            break;
        }
    }
}

fn put_bin(out: &mut Vec<u8>, b: &[u8]) {
    debug_assert!(b.len() <= usize::from(u16::MAX));
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

impl<'a> Properties<'a> {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Calls `f` for every present property in ascending identifier order
    /// (repeated ones in their stored order) — the order the encoder
    /// writes, so re-encoding a decoded block reproduces our own bytes.
    fn each(&self, mut f: impl FnMut(u8, Value<'_>)) {
        let flag = |b: bool| Value::Byte(u8::from(b));
        if let Some(v) = self.payload_format_indicator {
            f(id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(v));
        }
        if let Some(v) = self.message_expiry_interval {
            f(id::MESSAGE_EXPIRY_INTERVAL, Value::Four(v));
        }
        if let Some(v) = self.content_type {
            f(id::CONTENT_TYPE, Value::Str(v));
        }
        if let Some(v) = self.response_topic {
            f(id::RESPONSE_TOPIC, Value::Str(v));
        }
        if let Some(v) = self.correlation_data {
            f(id::CORRELATION_DATA, Value::Bin(v));
        }
        for &v in &self.subscription_identifiers {
            f(id::SUBSCRIPTION_IDENTIFIER, Value::Var(v));
        }
        if let Some(v) = self.session_expiry_interval {
            f(id::SESSION_EXPIRY_INTERVAL, Value::Four(v));
        }
        if let Some(v) = self.assigned_client_identifier {
            f(id::ASSIGNED_CLIENT_IDENTIFIER, Value::Str(v));
        }
        if let Some(v) = self.server_keep_alive {
            f(id::SERVER_KEEP_ALIVE, Value::Two(v));
        }
        if let Some(v) = self.authentication_method {
            f(id::AUTHENTICATION_METHOD, Value::Str(v));
        }
        if let Some(v) = self.authentication_data {
            f(id::AUTHENTICATION_DATA, Value::Bin(v));
        }
        if let Some(v) = self.request_problem_information {
            f(id::REQUEST_PROBLEM_INFORMATION, flag(v));
        }
        if let Some(v) = self.will_delay_interval {
            f(id::WILL_DELAY_INTERVAL, Value::Four(v));
        }
        if let Some(v) = self.request_response_information {
            f(id::REQUEST_RESPONSE_INFORMATION, flag(v));
        }
        if let Some(v) = self.response_information {
            f(id::RESPONSE_INFORMATION, Value::Str(v));
        }
        if let Some(v) = self.server_reference {
            f(id::SERVER_REFERENCE, Value::Str(v));
        }
        if let Some(v) = self.reason_string {
            f(id::REASON_STRING, Value::Str(v));
        }
        if let Some(v) = self.receive_maximum {
            f(id::RECEIVE_MAXIMUM, Value::Two(v));
        }
        if let Some(v) = self.topic_alias_maximum {
            f(id::TOPIC_ALIAS_MAXIMUM, Value::Two(v));
        }
        if let Some(v) = self.topic_alias {
            f(id::TOPIC_ALIAS, Value::Two(v));
        }
        if let Some(v) = self.maximum_qos {
            f(id::MAXIMUM_QOS, Value::Byte(v));
        }
        if let Some(v) = self.retain_available {
            f(id::RETAIN_AVAILABLE, flag(v));
        }
        for &(k, v) in &self.user_properties {
            f(id::USER_PROPERTY, Value::Pair(k, v));
        }
        if let Some(v) = self.maximum_packet_size {
            f(id::MAXIMUM_PACKET_SIZE, Value::Four(v));
        }
        if let Some(v) = self.wildcard_subscription_available {
            f(id::WILDCARD_SUBSCRIPTION_AVAILABLE, flag(v));
        }
        if let Some(v) = self.subscription_identifier_available {
            f(id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, flag(v));
        }
        if let Some(v) = self.shared_subscription_available {
            f(id::SHARED_SUBSCRIPTION_AVAILABLE, flag(v));
        }
    }

    /// Length of the property block's contents (without its own length
    /// prefix), after checking that every property may appear in `ctx`,
    /// that strings and binary data fit a two-byte length, and that
    /// subscription identifiers are 1..=[`VARINT_MAX`] (one at most outside
    /// PUBLISH).
    pub fn encoded_len(&self, ctx: Context) -> Result<usize, EncodeError> {
        let mut len = 0;
        let mut err = None;
        let max = usize::from(u16::MAX);
        self.each(|id, v| {
            if !allowed_in(id, ctx) {
                err.get_or_insert(EncodeError::PropertyNotAllowed { id, ctx });
            }
            let too_long = match v {
                Value::Str(s) => s.len() > max,
                Value::Bin(b) => b.len() > max,
                Value::Pair(k, v) => k.len() > max || v.len() > max,
                Value::Var(v) => v == 0 || v as usize > VARINT_MAX,
                _ => false,
            };
            if too_long {
                err.get_or_insert(EncodeError::ValueOutOfRange { id });
            }
            len += 1 + v.len();
        });
        if ctx != Context::Publish && self.subscription_identifiers.len() > 1 {
            err.get_or_insert(EncodeError::ValueOutOfRange {
                id: id::SUBSCRIPTION_IDENTIFIER,
            });
        }
        match err {
            Some(e) => Err(e),
            None if len > VARINT_MAX => Err(EncodeError::TooLarge),
            None => Ok(len),
        }
    }

    /// Appends the property length and the properties; `len` is what
    /// [`Properties::encoded_len`] returned.
    pub(crate) fn put(&self, out: &mut Vec<u8>, len: usize) {
        put_varint(out, len);
        let start = out.len();
        self.each(|id, v| {
            out.push(id);
            match v {
                Value::Byte(b) => out.push(b),
                Value::Two(n) => out.extend_from_slice(&n.to_be_bytes()),
                Value::Four(n) => out.extend_from_slice(&n.to_be_bytes()),
                Value::Var(n) => put_varint(out, n as usize),
                Value::Str(s) => put_bin(out, s.as_bytes()),
                Value::Bin(b) => put_bin(out, b),
                Value::Pair(k, v) => {
                    put_bin(out, k.as_bytes());
                    put_bin(out, v.as_bytes());
                }
            }
        });
        debug_assert_eq!(out.len() - start, len);
    }

    /// Reads a property length and that many bytes of properties valid in
    /// `ctx` (see the module comment for the checks and reason codes).
    pub(crate) fn decode(
        r: &mut Reader<'a>,
        ctx: Context,
        limits: &DecodeLimits,
    ) -> Result<Self, DecodeError> {
        let len = r.varint()? as usize;
        let mut r = r.take(len)?;
        if len > limits.properties_bytes_max {
            return Err(DecodeError::PropertiesTooLarge {
                size: len,
                limit: limits.properties_bytes_max,
            });
        }
        let mut p = Properties::default();
        while !r.is_empty() {
            // The identifier is a variable byte integer; every defined one
            // fits in one byte, so a longer one is simply unknown.
            let raw = r.varint()?;
            let id = u8::try_from(raw).map_err(|_| DecodeError::UnknownProperty(raw))?;
            let Some((_, _, mask)) = property_info(id) else {
                return Err(DecodeError::UnknownProperty(raw));
            };
            if mask & ctx.bit() == 0 {
                return Err(DecodeError::PropertyNotAllowed { id, ctx });
            }
            p.decode_one(id, &mut r, ctx)?;
        }
        // §3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.3.
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthDataWithoutMethod);
        }
        Ok(p)
    }

    fn decode_one(&mut self, id: u8, r: &mut Reader<'a>, ctx: Context) -> Result<(), DecodeError> {
        fn once<T>(slot: &mut Option<T>, id: u8, v: T) -> Result<(), DecodeError> {
            if slot.is_some() {
                return Err(DecodeError::DuplicateProperty(id));
            }
            *slot = Some(v);
            Ok(())
        }
        let bad = |value: u32| DecodeError::BadPropertyValue { id, value };
        let flag = |r: &mut Reader<'a>| match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(bad(u32::from(v))),
        };
        let nonzero_u16 = |r: &mut Reader<'a>| match r.u16()? {
            0 => Err(bad(0)),
            v => Ok(v),
        };
        match id {
            id::PAYLOAD_FORMAT_INDICATOR => {
                let v = r.u8()?;
                if v > 1 {
                    return Err(bad(u32::from(v)));
                }
                once(&mut self.payload_format_indicator, id, v)
            }
            id::MESSAGE_EXPIRY_INTERVAL => once(&mut self.message_expiry_interval, id, r.u32()?),
            id::CONTENT_TYPE => once(&mut self.content_type, id, r.str()?),
            id::RESPONSE_TOPIC => once(&mut self.response_topic, id, r.str()?),
            id::CORRELATION_DATA => once(&mut self.correlation_data, id, r.bytes()?),
            id::SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint()?;
                if v == 0 {
                    return Err(bad(0));
                }
                // §3.8.2.1.2: once in SUBSCRIBE; §3.3.2.3.8: PUBLISH may
                // carry one per matching subscription.
                if ctx != Context::Publish && !self.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty(id));
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            id::SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval, id, r.u32()?),
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                once(&mut self.assigned_client_identifier, id, r.str()?)
            }
            id::SERVER_KEEP_ALIVE => once(&mut self.server_keep_alive, id, r.u16()?),
            id::AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, r.str()?),
            id::AUTHENTICATION_DATA => once(&mut self.authentication_data, id, r.bytes()?),
            id::REQUEST_PROBLEM_INFORMATION => {
                once(&mut self.request_problem_information, id, flag(r)?)
            }
            id::WILL_DELAY_INTERVAL => once(&mut self.will_delay_interval, id, r.u32()?),
            id::REQUEST_RESPONSE_INFORMATION => {
                once(&mut self.request_response_information, id, flag(r)?)
            }
            id::RESPONSE_INFORMATION => once(&mut self.response_information, id, r.str()?),
            id::SERVER_REFERENCE => once(&mut self.server_reference, id, r.str()?),
            id::REASON_STRING => once(&mut self.reason_string, id, r.str()?),
            id::RECEIVE_MAXIMUM => once(&mut self.receive_maximum, id, nonzero_u16(r)?),
            id::TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, id, r.u16()?),
            id::TOPIC_ALIAS => once(&mut self.topic_alias, id, nonzero_u16(r)?),
            id::MAXIMUM_QOS => {
                let v = r.u8()?;
                if v > 1 {
                    return Err(bad(u32::from(v)));
                }
                once(&mut self.maximum_qos, id, v)
            }
            id::RETAIN_AVAILABLE => once(&mut self.retain_available, id, flag(r)?),
            id::USER_PROPERTY => {
                let pair = (r.str()?, r.str()?);
                self.user_properties.push(pair);
                Ok(())
            }
            id::MAXIMUM_PACKET_SIZE => match r.u32()? {
                0 => Err(bad(0)),
                v => once(&mut self.maximum_packet_size, id, v),
            },
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.wildcard_subscription_available, id, flag(r)?)
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                once(&mut self.subscription_identifier_available, id, flag(r)?)
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.shared_subscription_available, id, flag(r)?)
            }
            _ => unreachable!("checked by property_info"),
        }
    }
}
