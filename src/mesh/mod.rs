//! The mesh of routers (DESIGN.md "Mesh").
//!
//! Owns today: the wire format of the router-to-router link protocol,
//! a sans-IO codec in [`link`] (frames in, bytes out; bytes in, frames
//! out), and the hello check a link runs before anything else crosses it;
//! and the sans-IO routing core in [`route`] (interest propagation,
//! destination-set forwarding, link policy), tested in an in-memory
//! multi-router simulation.
//! Nothing here opens a socket, runs on an executor, or is wired into the
//! shards yet.
//!
//! Next, each in its own change:
//! - bridge executors: links on dedicated bridge core(s), joined to the
//!   shards by the same SPSC rings, with keepalive and graceful close over
//!   [`link::Frame::Ping`] / [`link::Frame::Close`];
//! - interest propagation: per (filter, group, origin router) interest sent
//!   as add/remove, with distance-vector path choice and a resync when a link
//!   returns;
//! - loop-free forwarding: an event carries its destination routers, so a
//!   router forwards a copy only towards routers it is the next hop for and
//!   each subscriber sees it exactly once in any topology;
//! - link policy: per-link export/import filters and topic rewrite.
//!
//! Must not touch: sockets, executors, timers and rings (those stay in
//! `shard/`, the runtime seam), the client protocols' codecs and sessions,
//! and the trie. The mesh consumes them through their public APIs.

pub mod link;
pub mod route;
