//! Sans-IO codec of the router-to-router link protocol: bytes in, frames
//! out; frames in, bytes out.
//!
//! Every frame is a 4-byte big-endian length (of what follows), a 1-byte
//! frame type, then the frame's fields. Integers are big-endian; a string
//! is a u16 length and UTF-8 bytes; binary is a u32 length and bytes; a list
//! is a u16 count then its items. Optional fields are announced by a flags
//! byte, so absent fields cost nothing on the wire.
//!
//! `decode` borrows from the caller's buffer (an event's destination lists
//! are views of its bytes, `link/lists.rs`; only a non-empty user-property
//! list, and an explain request's destinations, allocate), so a bridge can
//! parse a whole read batch in place without an allocation per event. "Need more bytes" is `Ok(None)`;
//! malformed input is a [`LinkError`]. An oversize frame, or an unknown
//! frame type, is refused from the first five bytes, before its body is
//! buffered. `encode` appends to the caller's `Vec`, so any number of frames
//! can be batched into one write; a frame that cannot be encoded leaves the
//! `Vec` as it was.
//!
//! The encoding is canonical: every frame has exactly one byte form, and
//! `encode(decode(bytes)) == bytes` for any accepted input.
//!
//! The [`Hello`] layout (frame type 1: version, router id, mesh) is frozen
//! across protocol versions, so that any two versions can read each other's
//! hello and refuse the link with a clear reason ([`check_hello`]). Anything
//! a later version wants to exchange at start-up goes in later frames.
//!
//! Since version 3 a TOPOLOGY frame (type 9) carries one router's
//! link-state record for `mesh::topology`; its layout is in
//! `link/topology.rs`, with its own byte bound, checked from the header.
//!
//! The codec checks framing, UTF-8 and the limits in [`LinkLimits`]; what
//! the strings mean (topic filter syntax, whether a router id is known) is
//! for the link session to judge.

use thiserror::Error;

/// The link protocol version this router speaks.
pub const LINK_VERSION: u16 = 3;

/// Longest router id accepted in a hello, and the router-id rule: one
/// rule with the configuration's (defined there: `config` must not depend
/// on `mesh`).
pub use crate::config::{valid_router_id, ROUTER_ID_MAX};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Frame type bytes. 0 is reserved, never sent.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const INTEREST_ADD: u8 = 2;
    pub const INTEREST_REMOVE: u8 = 3;
    pub const EVENT: u8 = 4;
    pub const ACK: u8 = 5;
    pub const PING: u8 = 6;
    pub const PONG: u8 = 7;
    pub const CLOSE: u8 = 8;
    /// Since version 3: a router's link-state record (`link/topology.rs`).
    pub const TOPOLOGY: u8 = 9;
    pub const EXPLAIN: u8 = 10;
    pub const EXPLAIN_REPLY: u8 = 11;

    /// The frame types this version decodes.
    pub fn known(kind: u8) -> bool {
        (HELLO..=EXPLAIN_REPLY).contains(&kind)
    }
}

// Interest flags byte.
const INTEREST_GROUP: u8 = 0b0000_0001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LinkError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("frame of length 0 (no frame type)")]
    EmptyFrame,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("frame body shorter than its fields")]
    Truncated,
    #[error("frame body longer than its fields")]
    TrailingBytes,
    #[error("string is not valid UTF-8")]
    BadUtf8,
    #[error("reserved flag bits {flags:#x} set in frame type {kind}")]
    BadFlags { kind: u8, flags: u8 },
    #[error("invalid QoS {0}")]
    BadQos(u8),
    #[error("event has travelled {hops} hops, more than the limit of {limit}")]
    TooManyHops { hops: u8, limit: u8 },
    #[error("event names {count} destination routers, more than the limit of {limit}")]
    TooManyDests { count: usize, limit: usize },
    #[error("user-property list flagged present but empty")]
    EmptyUserProperties,
    #[error("stamp flagged present but 0 (the value for none)")]
    ZeroStamp,
    #[error("topology frame of {size} bytes exceeds the limit of {limit} bytes")]
    TopologyTooLarge { size: usize, limit: usize },
    #[error("topology record lists {count} links, more than the limit of {limit}")]
    TooManyLinks { count: usize, limit: usize },
    #[error("invalid link state {0} in a topology record (0 up, 1 held, 2 down, 3 connecting)")]
    BadLinkState(u8),
    #[error("explain reply of {size} bytes exceeds the limit of {limit} bytes")]
    ExplainReplyTooLarge { size: usize, limit: usize },
}

/// Why a frame could not be encoded. The output `Vec` is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("{field} of {len} bytes does not fit its length field")]
    FieldTooLong { field: &'static str, len: usize },
    #[error("{field} has {count} items, more than a list can hold (65535)")]
    TooManyItems { field: &'static str, count: usize },
    #[error("frame of {size} bytes does not fit the 32-bit length prefix")]
    FrameTooLarge { size: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Largest whole frame (length prefix included) accepted.
    pub frame_bytes_max: usize,
    /// Largest hop count accepted on an event.
    pub hops_max: u8,
    /// Most destination routers accepted on one event (and one explain
    /// request).
    pub dests_max: usize,
    /// Largest TOPOLOGY frame accepted (refused from its header).
    pub topology_bytes_max: usize,
    /// Most links accepted in one topology record.
    pub topology_links_max: usize,
    /// Largest explain reply body accepted (`mesh.explain_reply_bytes_max`).
    pub explain_reply_bytes_max: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            frame_bytes_max: 4 * 1024 * 1024,
            hops_max: 16,
            dests_max: 64,
            topology_bytes_max: 64 * 1024,
            topology_links_max: 512,
            explain_reply_bytes_max: 65_536,
        }
    }
}

/// The first frame each side sends. Its layout never changes (see the
/// module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    pub version: u16,
    pub router_id: &'a str,
    pub mesh: &'a str,
}

/// The original protocol metadata of an event, carried so that the far
/// side delivers it faithfully: MQTT 5 properties and NATS reply subject and
/// headers. `Default` is "no metadata" (MQTT 3.1.1, plain NATS PUB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkMeta<'a> {
    /// NATS reply subject.
    pub reply: Option<&'a str>,
    /// NATS header block (`NATS/1.0\r\n...`), as received.
    pub headers: Option<&'a [u8]>,
    pub response_topic: Option<&'a str>,
    pub correlation_data: Option<&'a [u8]>,
    pub content_type: Option<&'a str>,
    pub payload_format: Option<u8>,
    /// In order; an empty list is "none".
    pub user_properties: Vec<(&'a str, &'a str)>,
    /// Remaining message expiry, in milliseconds.
    pub expiry_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// Unique per origin router.
    pub id: u64,
    /// The sender's sequence number of a QoS >= 1 copy on this link, for
    /// [`Frame::Ack`]; 0 for QoS 0.
    pub seq: u64,
    /// The router the event entered the mesh at.
    pub origin: &'a str,
    /// Links crossed so far.
    pub hops: u8,
    /// The routers this copy must reach.
    pub dests: Strs<'a>,
    /// (router, queue group): deliver to one member of that group there.
    pub groups: Pairs<'a>,
    /// Internal (MQTT-form) topic.
    pub topic: &'a str,
    pub qos: u8,
    pub retain: bool,
    /// A retained message's stamp (the wall clock of its publish at its
    /// origin, ns; see `topic::retained`); 0 = none.
    pub stamp: u64,
    /// Part of a retained-store exchange between routers: stored where it
    /// is newer, never delivered to subscribers.
    pub sync: bool,
    pub payload: &'a [u8],
    pub meta: LinkMeta<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello(Hello<'a>),
    /// `origin` has subscribers for (`filter`, `group`), `distance` links
    /// away from the sender.
    InterestAdd {
        filter: &'a str,
        /// Shared-subscription / queue group.
        group: Option<&'a str>,
        origin: &'a str,
        distance: u16,
    },
    InterestRemove {
        filter: &'a str,
        group: Option<&'a str>,
        origin: &'a str,
    },
    Event(Event<'a>),
    /// Hop-by-hop acknowledgement: every QoS >= 1 copy up to `seq` was
    /// handed to this router's subscribers and onward links (cumulative).
    Ack {
        seq: u64,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Graceful close: the sender sends nothing after it.
    Close {
        reason: &'a str,
    },
    /// A router's link-state record, flooded over the mesh.
    Topology(TopologyRecord<'a>),
    /// Route explain (see `mesh::explain`): where an event on `topic`
    /// would go, asked by `origin` as its request `request`; no event is
    /// sent. With `seek`, on its way (flooded) to the router it names,
    /// which explains as if the event were published there; without, it
    /// follows the path an event's copy for `dests` would take.
    Explain(Explain<'a>),
    /// The answer to an [`Frame::Explain`] received over this link: what
    /// the receiver and the routers beyond it found, as JSON
    /// (`mesh::explain::ReplyBody`).
    ExplainReply {
        origin: &'a str,
        request: u64,
        body: &'a [u8],
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explain<'a> {
    pub origin: &'a str,
    pub request: u64,
    pub seek: Option<&'a str>,
    /// Links crossed before this one (as an event's `hops`).
    pub hops: u8,
    /// What is left of the asker's time: the receiver answers within it.
    pub budget_ms: u32,
    pub topic: &'a str,
    pub dests: Vec<&'a str>,
}

impl Frame<'_> {
    /// The frame type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Frame::Hello(_) => kind::HELLO,
            Frame::InterestAdd { .. } => kind::INTEREST_ADD,
            Frame::InterestRemove { .. } => kind::INTEREST_REMOVE,
            Frame::Event(_) => kind::EVENT,
            Frame::Ack { .. } => kind::ACK,
            Frame::Ping { .. } => kind::PING,
            Frame::Pong { .. } => kind::PONG,
            Frame::Close { .. } => kind::CLOSE,
            Frame::Topology(_) => kind::TOPOLOGY,
            Frame::Explain(_) => kind::EXPLAIN,
            Frame::ExplainReply { .. } => kind::EXPLAIN_REPLY,
        }
    }

    /// A name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "hello",
            Frame::InterestAdd { .. } => "interest add",
            Frame::InterestRemove { .. } => "interest remove",
            Frame::Event(_) => "event",
            Frame::Ack { .. } => "ack",
            Frame::Ping { .. } => "ping",
            Frame::Pong { .. } => "pong",
            Frame::Close { .. } => "close",
            Frame::Topology(_) => "topology",
            Frame::Explain(_) => "explain",
            Frame::ExplainReply { .. } => "explain reply",
        }
    }
}

// ---------------------------------------------------------------- decoding

/// Decodes one frame from the front of `buf`. On success returns the frame
/// and the number of bytes it occupied.
pub fn decode<'a>(
    buf: &'a [u8],
    limits: &LinkLimits,
) -> Result<Option<(Frame<'a>, usize)>, LinkError> {
    let Some(prefix) = buf.first_chunk::<PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    let size = PREFIX_LEN.saturating_add(len);
    if size > limits.frame_bytes_max {
        return Err(LinkError::TooLarge {
            size,
            limit: limits.frame_bytes_max,
        });
    }
    if len == 0 {
        return Err(LinkError::EmptyFrame);
    }
    let Some(&kind) = buf.get(PREFIX_LEN) else {
        return Ok(None);
    };
    // Refuse a type we do not know before waiting for its body.
    if !kind::known(kind) {
        return Err(LinkError::UnknownType(kind));
    }
    // A record far smaller than an event: its own bound, before its body.
    if kind == kind::TOPOLOGY && size > limits.topology_bytes_max {
        return Err(LinkError::TopologyTooLarge {
            size,
            limit: limits.topology_bytes_max,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut r = Reader {
        buf: &buf[PREFIX_LEN + 1..size],
    };
    let frame = decode_body(kind, &mut r, limits)?;
    r.done()?;
    Ok(Some((frame, size)))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LinkError> {
        if self.buf.len() < n {
            return Err(LinkError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], LinkError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(LinkError::Truncated)?;
        self.buf = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, LinkError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, LinkError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, LinkError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, LinkError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<&'a str, LinkError> {
        let len = usize::from(self.u16()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| LinkError::BadUtf8)
    }
    fn bin(&mut self) -> Result<&'a [u8], LinkError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// A hop count, refused above `limits.hops_max`.
    fn hops(&mut self, limits: &LinkLimits) -> Result<u8, LinkError> {
        let hops = self.u8()?;
        if hops > limits.hops_max {
            return Err(LinkError::TooManyHops {
                hops,
                limit: limits.hops_max,
            });
        }
        Ok(hops)
    }
    /// A list count, refused above `limits.dests_max`.
    fn dests_count(&mut self, limits: &LinkLimits) -> Result<usize, LinkError> {
        let count = usize::from(self.u16()?);
        if count > limits.dests_max {
            return Err(LinkError::TooManyDests {
                count,
                limit: limits.dests_max,
            });
        }
        Ok(count)
    }
    /// `items` strings in a row, checked (length, UTF-8) and returned as
    /// their bytes (for a [`Strs`] or [`Pairs`] view).
    fn str_list(&mut self, items: usize) -> Result<&'a [u8], LinkError> {
        let start = self.buf;
        for _ in 0..items {
            self.str()?;
        }
        Ok(&start[..start.len() - self.buf.len()])
    }
    /// A counted list of destination router ids, at most
    /// `limits.dests_max`.
    fn dests(&mut self, limits: &LinkLimits) -> Result<Vec<&'a str>, LinkError> {
        let count = self.dests_count(limits)?;
        let mut dests = Vec::with_capacity(self.list_capacity(count, 2));
        for _ in 0..count {
            dests.push(self.str()?);
        }
        Ok(dests)
    }
    /// Capacity for a list of `count` items of at least `item_min` bytes,
    /// bounded by what the body can hold (a count is not trusted).
    fn list_capacity(&self, count: usize, item_min: usize) -> usize {
        count.min(self.buf.len() / item_min)
    }
    fn done(&self) -> Result<(), LinkError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(LinkError::TrailingBytes)
        }
    }
}

fn decode_body<'a>(
    kind: u8,
    r: &mut Reader<'a>,
    limits: &LinkLimits,
) -> Result<Frame<'a>, LinkError> {
    Ok(match kind {
        kind::HELLO => Frame::Hello(Hello {
            version: r.u16()?,
            router_id: r.str()?,
            mesh: r.str()?,
        }),
        kind::INTEREST_ADD | kind::INTEREST_REMOVE => {
            let flags = r.u8()?;
            if flags & !INTEREST_GROUP != 0 {
                return Err(LinkError::BadFlags { kind, flags });
            }
            let filter = r.str()?;
            let group = if flags & INTEREST_GROUP != 0 {
                Some(r.str()?)
            } else {
                None
            };
            let origin = r.str()?;
            if kind == kind::INTEREST_ADD {
                Frame::InterestAdd {
                    filter,
                    group,
                    origin,
                    distance: r.u16()?,
                }
            } else {
                Frame::InterestRemove {
                    filter,
                    group,
                    origin,
                }
            }
        }
        kind::EVENT => Frame::Event(event::decode(r, limits)?),
        kind::ACK => Frame::Ack { seq: r.u64()? },
        kind::PING => Frame::Ping { nonce: r.u64()? },
        kind::PONG => Frame::Pong { nonce: r.u64()? },
        kind::CLOSE => Frame::Close { reason: r.str()? },
        kind::TOPOLOGY => Frame::Topology(topology::decode_body(r, limits)?),
        kind::EXPLAIN => Frame::Explain(explain::decode(r, limits)?),
        kind::EXPLAIN_REPLY => explain::decode_reply(r, limits)?,
        _ => unreachable!("checked by decode"),
    })
}

// ---------------------------------------------------------------- encoding

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: s.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_bin(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), EncodeError> {
    let len = u32::try_from(b.len()).map_err(|_| EncodeError::FieldTooLong {
        field,
        len: b.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn put_count(out: &mut Vec<u8>, field: &'static str, count: usize) -> Result<(), EncodeError> {
    let count = u16::try_from(count).map_err(|_| EncodeError::TooManyItems { field, count })?;
    out.extend_from_slice(&count.to_be_bytes());
    Ok(())
}

/// Size of `frame` once encoded, length prefix included (for sizing a
/// batch before writing it).
pub fn encoded_len(frame: &Frame<'_>) -> usize {
    let s = |s: &str| 2 + s.len();
    let opt_s = |o: Option<&str>| o.map_or(0, s);
    let body = match frame {
        Frame::Hello(h) => 2 + s(h.router_id) + s(h.mesh),
        Frame::InterestAdd {
            filter,
            group,
            origin,
            ..
        } => 1 + s(filter) + opt_s(*group) + s(origin) + 2,
        Frame::InterestRemove {
            filter,
            group,
            origin,
        } => 1 + s(filter) + opt_s(*group) + s(origin),
        Frame::Event(e) => {
            let m = &e.meta;
            let props: usize = m.user_properties.iter().map(|(k, v)| s(k) + s(v)).sum();
            8 + 8
                + s(e.origin)
                + 1
                + e.dests.wire_len()
                + e.groups.wire_len()
                + s(e.topic)
                + 1
                + if e.stamp != 0 { 8 } else { 0 }
                + 1
                + opt_s(m.reply)
                + m.headers.map_or(0, |h| 4 + h.len())
                + opt_s(m.response_topic)
                + m.correlation_data.map_or(0, |c| 4 + c.len())
                + opt_s(m.content_type)
                + usize::from(m.payload_format.is_some())
                + if m.user_properties.is_empty() {
                    0
                } else {
                    2 + props
                }
                + if m.expiry_ms.is_some() { 4 } else { 0 }
                + 4
                + e.payload.len()
        }
        Frame::Ack { .. } => 8,
        Frame::Ping { .. } | Frame::Pong { .. } => 8,
        Frame::Close { reason } => s(reason),
        Frame::Topology(t) => topology::body_len(t),
        Frame::Explain(x) => explain::len(x),
        Frame::ExplainReply { origin, body, .. } => s(origin) + 8 + 4 + body.len(),
    };
    PREFIX_LEN + 1 + body
}

/// Appends one frame to `out`. Call it for several frames in a row to batch
/// them into one write. On error `out` is left as it was.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.reserve(encoded_len(frame));
    out.extend_from_slice(&[0; PREFIX_LEN]);
    out.push(frame.kind());
    let written = encode_body(frame, out).and_then(|()| {
        let len = out.len() - start - PREFIX_LEN;
        u32::try_from(len).map_err(|_| EncodeError::FrameTooLarge {
            size: len + PREFIX_LEN,
        })
    });
    match written {
        Ok(len) => {
            out[start..start + PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn encode_body(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match frame {
        Frame::Hello(h) => {
            out.extend_from_slice(&h.version.to_be_bytes());
            put_str(out, "router id", h.router_id)?;
            put_str(out, "mesh name", h.mesh)?;
        }
        Frame::InterestAdd {
            filter,
            group,
            origin,
            distance,
        } => {
            put_interest(out, filter, *group, origin)?;
            out.extend_from_slice(&distance.to_be_bytes());
        }
        Frame::InterestRemove {
            filter,
            group,
            origin,
        } => put_interest(out, filter, *group, origin)?,
        Frame::Event(e) => event::put(out, e)?,
        Frame::Ack { seq } => out.extend_from_slice(&seq.to_be_bytes()),
        Frame::Ping { nonce } | Frame::Pong { nonce } => {
            out.extend_from_slice(&nonce.to_be_bytes());
        }
        Frame::Close { reason } => put_str(out, "close reason", reason)?,
        Frame::Topology(t) => topology::encode_body(out, t)?,
        Frame::Explain(x) => explain::put(out, x)?,
        Frame::ExplainReply {
            origin,
            request,
            body,
        } => {
            put_str(out, "origin", origin)?;
            out.extend_from_slice(&request.to_be_bytes());
            put_bin(out, "explain reply", body)?;
        }
    }
    Ok(())
}

fn put_interest(
    out: &mut Vec<u8>,
    filter: &str,
    group: Option<&str>,
    origin: &str,
) -> Result<(), EncodeError> {
    out.push(if group.is_some() { INTEREST_GROUP } else { 0 });
    put_str(out, "filter", filter)?;
    if let Some(group) = group {
        put_str(out, "group", group)?;
    }
    put_str(out, "origin", origin)
}

mod event;
mod explain;
mod hello;
mod lists;
#[cfg(test)]
mod tests;
mod topology;

#[cfg(test)]
use event::{EVENT_STAMP, META_HEADERS, META_REPLY, META_USER_PROPERTIES};

pub use hello::{check_hello, HelloError};
pub use lists::{Pairs, PairsIter, Strs, StrsIter};
pub use topology::{topology_frame_bytes, LinkState, TopologyLink, TopologyRecord};
