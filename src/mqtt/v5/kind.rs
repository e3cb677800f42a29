//! What a packet is: its type (§2.1.2) and, for property rules, the
//! context a property block sits in. The bottom of the v5 modules: it
//! depends on none of them.

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

/// Where a property block sits: a packet type, or the Will Properties of a
/// CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    pub(super) const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The property context of a packet type.
pub(super) fn context(kind: PacketType) -> Context {
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
