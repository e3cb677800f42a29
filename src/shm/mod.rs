//! The router's half of the shared-memory transport (`weft-shm`): the
//! segment and doorbells it creates for each client, its ends of the two
//! rings.
//!
//! Owns: what one connection's segment is on the router side (created
//! here, sealed, unmapped and closed on drop) and the validation of every
//! index the client writes (through `weft_shm::ring`, which keeps the
//! router's own indices privately: a client can only make its own
//! connection fail). Must not touch: executors and sessions
//! (`shard::shm_accept` accepts, admits and hands clients to shards
//! (`shard::shm_handoff`), `shard::transport_shm` is the
//! `Transport` the protocol drivers run over).
//!
//! Bounds: `shm.ring_bytes` per ring, `shm.connections_max` clients and
//! `shm.segment_bytes_max` bytes of segments (see [`clients_max`]).

use std::os::fd::OwnedFd;

use weft_shm::ring::{Consumer, Producer};
use weft_shm::segment::Segment;

pub use weft_shm::handshake::{err_line, parse_hello, send_ok, HELLO_BYTES_MAX};
pub use weft_shm::Dialect;

/// How many shared-memory clients the configuration admits at once: the
/// smaller of `shm.connections_max` and what `shm.segment_bytes_max`
/// holds of segments this size (each connection's segment is the same
/// size, so the byte bound is a count).
pub fn clients_max(config: &crate::config::ShmConfig) -> usize {
    let per = config.segment_bytes().max(1);
    config
        .connections_max
        .min((config.segment_bytes_max / per) as usize)
}

/// A fresh connection's segment and doorbells, before they are handed
/// over.
pub struct Offer {
    pub memfd: OwnedFd,
    pub to_router: OwnedFd,
    pub to_client: OwnedFd,
    pub segment: Segment,
}

impl Offer {
    pub fn new(ring_bytes: u64) -> std::io::Result<Offer> {
        let (memfd, segment) = Segment::create(ring_bytes)?;
        Ok(Offer {
            memfd,
            to_router: weft_shm::doorbell::create()?,
            to_client: weft_shm::doorbell::create()?,
            segment,
        })
    }
}

/// The router's ends of a connection's rings: it consumes client ->
/// router and produces router -> client. Holds the segment (unmapped on
/// drop, after the ends).
pub struct RouterRings {
    pub inbound: Consumer,
    pub outbound: Producer,
    segment: Segment,
}

impl RouterRings {
    pub fn new(segment: Segment) -> RouterRings {
        RouterRings {
            inbound: Consumer::new(segment.c2r()),
            outbound: Producer::new(segment.r2c()),
            segment,
        }
    }

    pub fn segment_bytes(&self) -> usize {
        self.segment.len()
    }

    /// The client -> router and router -> client rings' views (for the
    /// doorbell task, which clears the router's flags when woken).
    pub fn views(&self) -> (weft_shm::ring::RingView, weft_shm::ring::RingView) {
        (self.segment.c2r(), self.segment.r2c())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_max_is_the_smaller_bound() {
        let mut c = crate::config::ShmConfig::default();
        // 1 GiB over (4 KiB + 2 MiB) segments: 511.
        assert_eq!(clients_max(&c), 511);
        c.ring_bytes = 4096;
        assert_eq!(clients_max(&c), 1024);
        c.segment_bytes_max = 3 * c.segment_bytes();
        assert_eq!(clients_max(&c), 3);
    }

    #[test]
    fn an_offer_is_a_sealed_segment_of_the_right_size() {
        let offer = Offer::new(4096).unwrap();
        assert_eq!(offer.segment.len(), 4096 * 3);
        // Sealed: the client can neither shrink nor grow it.
        let rc =
            unsafe { nix::libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&offer.memfd), 4096) };
        assert_eq!(rc, -1);
        let rings = RouterRings::new(offer.segment);
        assert_eq!(rings.segment_bytes(), 4096 * 3);
    }
}
