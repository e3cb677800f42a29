//! What the bridge does to this router's shards on behalf of other
//! routers, and the seam the shard context reaches the bridge through.
//!
//! Owns: nothing of its own; the bridge-only operations on its executor's
//! context that used to live in `ShardCtx` (`mesh_interest`,
//! `publish_from_mesh`, `retain_from_mesh`): other routers' interest as
//! the bridge's subscriptions under one trie key ([`MESH_KEY`]), their
//! events routed to the shards (never back to the mesh), their retained
//! messages stored on every shard. And `impl MeshPeer for Bridge`: what
//! the context hands the bridge instead of local delivery. Uses the
//! context's routing, groups, control and retained parts through their
//! crate-visible operations; must not touch links or frames.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use smallvec::SmallVec;

use super::Bridge;
use crate::event::Event;
use crate::shard::ctx::{nth_bit, Interest, MeshPeer, ShardCtx};
use crate::shard::stats::Counters;
use crate::topic::trie::SessionKey;

/// The trie key of the bridge's subscriptions (other routers' interest).
const MESH_KEY: SessionKey = SessionKey::MAX - 1;

/// Other routers now have (or no longer have) interest in `key`: the
/// shards learn it as the bridge's interest. `key` is a filter or
/// `$share/{group}/{filter}` (a queue group).
pub(super) fn interest(ctx: &ShardCtx, key: &str, present: bool) {
    let (group, filter) = crate::mesh::route::key_parts(key);
    if present {
        if ctx.routing.add_local(filter, group, MESH_KEY, 0) {
            ctx.announce(true, Arc::from(filter), group.map(Arc::from));
        }
    } else if ctx.routing.remove_local(filter, group, MESH_KEY) == Some(true) {
        ctx.announce(false, Arc::from(filter), group.map(Arc::from));
    }
}

/// An event from another router, to this router's plain subscribers (if
/// `plain`) and one member of each of `groups`, all on the shards (never
/// back to the mesh).
pub(super) async fn publish(ctx: &ShardCtx, mut event: Event, plain: bool, groups: &[String]) {
    Counters::add(&ctx.counters.messages_in, 1);
    if event.born_ns == 0 {
        event.born_ns = crate::event::now_ns();
    }
    let matched = ctx.routing.matches(event.topic());
    let mut remote_groups: SmallVec<[(usize, Arc<str>); 2]> = SmallVec::new();
    for name in groups {
        match matched.groups.iter().find(|g| &*g.name == name.as_str()) {
            Some(g) if g.remote != 0 => {
                let pick = ctx.groups.below(g.remote.count_ones() as usize);
                remote_groups.push((nth_bit(g.remote, pick), g.name.clone()));
            }
            // The members left while the event was on its way.
            _ => Counters::add(&ctx.counters.dropped_group_gone, 1),
        }
    }
    let plain_mask = if plain { matched.remote } else { 0 };
    ctx.send_to_shards(&event, plain_mask, &remote_groups).await;
}

/// A retained message (or deletion) from another router, stamped at its
/// origin. Stored here and on every shard if it is newer than what this
/// router knows of its topic; true if it was.
pub(super) fn retain(ctx: &ShardCtx, event: &Event, stamp: u64) -> bool {
    if !ctx.store_retained(event, stamp).changed() {
        return false;
    }
    ctx.retain_everywhere(event, stamp);
    true
}

impl MeshPeer for Bridge {
    fn on_event(&self, event: Event, plain: bool, groups: &[Arc<str>]) {
        self.on_local_event(event, plain, groups)
    }

    fn persist_records(&self) -> Vec<(u8, Vec<u8>)> {
        self.outbox_records()
    }

    fn on_retain(&self, event: &Event, stamp: u64) {
        self.on_local_retain(event, stamp)
    }

    fn on_interest(&self, interest: &Interest, add: bool) {
        self.on_local_interest(interest, add)
    }

    fn room_short(&self) -> bool {
        // `room` returns at once unless a store reached its threshold.
        self.store_filled.get()
    }

    fn wait_room(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(self.room())
    }
}
