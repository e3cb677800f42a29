//! The mesh of routers (DESIGN.md "Mesh").
//!
//! Owns the two sans-IO halves of federation:
//! - [`link`]: the wire format of the router-to-router link protocol (frames
//!   in, bytes out; bytes in, frames out) and the hello check a link runs
//!   before anything else crosses it;
//! - [`route`]: the routing core (interest propagation per (filter, origin
//!   router) with split horizon, forwarding by destination sets so that any
//!   topology delivers each event exactly once, queue groups across routers,
//!   duplicate suppression, per-link policy and prefix rewrite), tested in
//!   an in-memory multi-router simulation;
//! - [`session`]: the link session, one connection as a sans-IO machine
//!   (hello, keepalive, acknowledgements, typed close reasons), and each
//!   peer's resend store ([`session::outbox`]);
//! - `sim` (tests only): routers with the real core and sessions over
//!   in-memory connections, under seeded faults;
//! - [`topology`]: the mesh as a graph, a link-state record per router
//!   flooded over the links (bounded, refreshed, expired), for the admin
//!   endpoint's `/topology`;
//! - [`explain`]: route explain across the mesh (requests along an
//!   event's path, replies gathered hop by hop), on the core's own plan
//!   code (`route::explain`);
//! - [`tls`]: the links' TLS configuration (mutual authentication against
//!   the mesh's CA) and the certificate-names-router-id check.
//!
//! The runtime that drives them, the bridge executor with its sockets,
//! timers and rings, is `shard::bridge` (the runtime seam): it carries out
//! the link sessions' actions, maps
//! [`route::LinkMsg`] onto [`link::Frame`]s and back, and hands the events
//! the core delivers to the shards.
//!
//! Must not touch: sockets, executors, timers and rings (those stay in
//! `shard/`), the client protocols' codecs and sessions, and the trie.

#[cfg(test)]
pub(crate) mod alloc_tests;
pub mod explain;
pub mod link;
pub mod route;
pub mod session;
#[cfg(test)]
mod sim;
pub mod tls;
pub mod topology;
