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
//! - a link session that maps [`route::LinkMsg`] onto [`link`] frames and
//!   feeds the [`route::Router`] (interest propagation, destination-set
//!   forwarding and deny policy are in [`route`] already);
//! - shared-subscription groups in interest, and per-link topic rewrite.
//!
//! Must not touch: sockets, executors, timers and rings (those stay in
//! `shard/`, the runtime seam), the client protocols' codecs and sessions,
//! and the trie. The mesh consumes them through their public APIs.

pub mod link;
pub mod route;
