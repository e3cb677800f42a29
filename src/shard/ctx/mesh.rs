//! The seam between a shard context and the mesh: what the executor that
//! stands for other routers (the bridge) takes instead of local delivery.
//!
//! Owns: the trait only. The router side names no bridge type: the bridge
//! implements [`MeshPeer`] and sets itself on its executor's context
//! (`ShardCtx::set_mesh`), so `ctx` does not import `bridge` and the
//! bridge's own state (links, resend stores, the mesh router) stays on the
//! bridge side (`bridge/shards.rs` holds what the bridge does to the
//! shards).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Interest;
use crate::event::Event;

/// What the mesh executor's context hands to the mesh.
pub trait MeshPeer {
    /// An event from a shard, for other routers' plain subscribers (if
    /// `plain`) and the named queue groups.
    fn on_event(&self, event: Event, plain: bool, groups: &[Arc<str>]);
    /// A retained publish (or deletion) with its stamp, for every router.
    fn on_retain(&self, event: &Event, stamp: u64);
    /// A shard's first (`add`) or last subscriber of a filter.
    fn on_interest(&self, interest: &Interest, add: bool);
    /// True when the mesh may be short of room for more events (rare);
    /// then [`MeshPeer::wait_room`] says when it has some.
    fn room_short(&self) -> bool;
    fn wait_room(&self) -> Pin<Box<dyn Future<Output = ()> + '_>>;
    /// What the mesh keeps in this executor's log (its resend stores), as
    /// records for a compaction (persistence).
    fn persist_records(&self) -> Vec<(u8, Vec<u8>)>;
}
