//! The TOPOLOGY frame (type 9, link protocol version 3): one router's
//! link-state record as it crosses a link — its origin, its sequence
//! number, its age, and its links (peer, state, TLS, round trip and
//! counters). Split from `link.rs` (the frame codec) as its own concern;
//! what a record means (flooding, dedup, expiry) is `mesh::topology`'s.
//!
//! Layout after the frame type: origin (string), seq (u64), age_ms (u32:
//! how old the record was when sent, so that a copy passed round after
//! its origin fell silent still expires on time), then a u16 count of
//! links, each: peer (string), state (u8: 0 up, 1 held, 2 down, 3
//! connecting), flags (u8: bit 0 TLS, bit 1 a round trip follows), the
//! round trip in µs (u64, if flagged), events in, events out, dropped
//! (u64 each).
//!
//! Bounds: the whole frame at most [`LinkLimits::topology_bytes_max`],
//! refused from its first five bytes; at most
//! [`LinkLimits::topology_links_max`] links, refused from the count.

use super::*;

/// The state of one link as its router reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkState {
    Up,
    /// Down, and its peer's routes held (`mesh.link_hold_ms`).
    Held,
    /// Down: its last connection failed or ended, waiting to redial.
    Down,
    /// A dialled link being (re)dialled.
    Connecting,
}

impl LinkState {
    pub const ALL: [LinkState; 4] = [
        LinkState::Up,
        LinkState::Held,
        LinkState::Down,
        LinkState::Connecting,
    ];

    /// The name in `/topology` (`state`).
    pub fn label(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Held => "held",
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
        }
    }

    fn byte(self) -> u8 {
        match self {
            LinkState::Up => 0,
            LinkState::Held => 1,
            LinkState::Down => 2,
            LinkState::Connecting => 3,
        }
    }

    fn from_byte(b: u8) -> Result<LinkState, LinkError> {
        LinkState::ALL
            .get(usize::from(b))
            .copied()
            .ok_or(LinkError::BadLinkState(b))
    }
}

/// One link of a [`TopologyRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyLink<'a> {
    pub peer: &'a str,
    pub state: LinkState,
    pub tls: bool,
    pub rtt_us: Option<u64>,
    pub events_in: u64,
    pub events_out: u64,
    pub dropped: u64,
}

/// One router's link-state record ([`Frame::Topology`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyRecord<'a> {
    pub origin: &'a str,
    /// Higher is newer (a restarted router starts higher: see
    /// `mesh::topology`).
    pub seq: u64,
    pub age_ms: u32,
    pub links: Vec<TopologyLink<'a>>,
}

const LINK_TLS: u8 = 0b01;
const LINK_RTT: u8 = 0b10;

/// Bytes of one link on the wire, its peer's id aside.
const LINK_FIXED_BYTES: usize = 2 + 1 + 1 + 8 + 8 + 8;

/// Encoded size of the body (after the type byte).
pub(super) fn body_len(t: &TopologyRecord<'_>) -> usize {
    2 + t.origin.len()
        + 8
        + 4
        + 2
        + t.links
            .iter()
            .map(|l| LINK_FIXED_BYTES + l.peer.len() + if l.rtt_us.is_some() { 8 } else { 0 })
            .sum::<usize>()
}

/// Largest TOPOLOGY frame a record of `links` links with router ids of
/// at most [`ROUTER_ID_MAX`] bytes can take (length prefix included).
pub fn topology_frame_bytes(links: usize) -> usize {
    PREFIX_LEN + 1 + 2 + ROUTER_ID_MAX + 8 + 4 + 2 + links * (LINK_FIXED_BYTES + ROUTER_ID_MAX + 8)
}

pub(super) fn decode_body<'a>(
    r: &mut Reader<'a>,
    limits: &LinkLimits,
) -> Result<TopologyRecord<'a>, LinkError> {
    let origin = r.str()?;
    let seq = r.u64()?;
    let age_ms = r.u32()?;
    let count = usize::from(r.u16()?);
    if count > limits.topology_links_max {
        return Err(LinkError::TooManyLinks {
            count,
            limit: limits.topology_links_max,
        });
    }
    let mut links = Vec::with_capacity(r.list_capacity(count, LINK_FIXED_BYTES));
    for _ in 0..count {
        let peer = r.str()?;
        let state = LinkState::from_byte(r.u8()?)?;
        let flags = r.u8()?;
        if flags & !(LINK_TLS | LINK_RTT) != 0 {
            return Err(LinkError::BadFlags {
                kind: kind::TOPOLOGY,
                flags,
            });
        }
        let rtt_us = if flags & LINK_RTT != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        links.push(TopologyLink {
            peer,
            state,
            tls: flags & LINK_TLS != 0,
            rtt_us,
            events_in: r.u64()?,
            events_out: r.u64()?,
            dropped: r.u64()?,
        });
    }
    Ok(TopologyRecord {
        origin,
        seq,
        age_ms,
        links,
    })
}

pub(super) fn encode_body(out: &mut Vec<u8>, t: &TopologyRecord<'_>) -> Result<(), EncodeError> {
    put_str(out, "origin", t.origin)?;
    out.extend_from_slice(&t.seq.to_be_bytes());
    out.extend_from_slice(&t.age_ms.to_be_bytes());
    put_count(out, "links", t.links.len())?;
    for l in &t.links {
        put_str(out, "peer", l.peer)?;
        out.push(l.state.byte());
        let mut flags = 0;
        if l.tls {
            flags |= LINK_TLS;
        }
        if l.rtt_us.is_some() {
            flags |= LINK_RTT;
        }
        out.push(flags);
        if let Some(rtt) = l.rtt_us {
            out.extend_from_slice(&rtt.to_be_bytes());
        }
        for n in [l.events_in, l.events_out, l.dropped] {
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    Ok(())
}
