//! MQTT 5.0 packets as values: what [`decode`](super::decode) returns and
//! [`encode`](super::encode) takes. Strings, binary data and payloads
//! borrow from the caller's buffer.

use super::error::DecodeError;
pub use super::kind::PacketType;
use super::properties::Properties;
use super::reason;

pub const PROTOCOL_LEVEL_5: u8 = 5;

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
