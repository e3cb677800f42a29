//! Sans-IO MQTT 5.0 codec (OASIS MQTT Version 5.0): bytes in, packets out;
//! packets in, bytes out. Both directions: the same [`decode`] reads what a
//! client sends a server and what a server sends a client.
//!
//! Owns: the MQTT 5 wire format — variable byte integers, every property
//! ([`properties`]), every packet type including AUTH ([`Packet`],
//! [`decode`], [`encode`]), the reason-code table ([`reason`]) — and the
//! checks the spec attaches to the format itself, each mapped to the
//! reason code to close with ([`DecodeError::reason_code`]). Must not
//! touch: sockets, executors, shards, session state. Rules that need
//! connection state stay with the caller (`mqtt::session`): Topic Alias
//! above the negotiated maximum (0x94), Receive Maximum accounting (0x93),
//! packet order (CONNECT first, AUTH exchange), Maximum Packet Size of
//! the peer (check [`encoded_len`] before sending), topic
//! name / filter syntax (wildcards, empty filters: `crate::topic`), payload
//! UTF-8 under Payload Format Indicator 1 (0x99), Session Expiry Interval
//! in a server's DISCONNECT.
//!
//! Dispatch: the first CONNECT's protocol level picks the codec;
//! [`peek_connect_level`] reads it before the packet is complete. This
//! decoder refuses a level-4 CONNECT with
//! [`DecodeError::UnsupportedProtocolVersion`] (0x84).
//!
//! Zero-copy: packets borrow strings, binary data and payloads from the
//! caller's buffer. Allocation happens only for lists — topic filters,
//! user properties, subscription identifiers — and for a CONNECT's Will
//! (boxed). A property-free PUBLISH allocates nothing.
//!
//! Limits ([`DecodeLimits`]): whole packet size (refused from the fixed
//! header, 0x95), each property block's size (0x97), filters per
//! SUBSCRIBE/UNSUBSCRIBE (0x97). Protocol ceilings: remaining length and
//! variable byte integers ≤ [`VARINT_MAX`] (four bytes; a fifth is 0x81),
//! strings and binary data ≤ 65535 bytes.

mod decode;
mod encode;
mod error;
mod kind;
mod packet;
pub mod properties;
mod reader;
// Layers, each using only those above it (no import cycle): `kind`
// (packet types, property contexts), `reason`, `error`, `reader`,
// `properties`, `packet`, then `decode` and `encode`.
pub mod reason;

#[cfg(test)]
mod tests;

pub use decode::{check_first_byte, decode, fixed_header, peek_connect_level};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use kind::{Context, PacketType};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PubResp, Publish, ReasonOnly, RetainHandling,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will, PROTOCOL_LEVEL_5,
};
pub use properties::{Properties, PropertyType};
pub use reader::{DecodeLimits, VARINT_MAX};
