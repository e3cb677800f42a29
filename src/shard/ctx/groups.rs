//! Queue groups (NATS queue subscriptions, MQTT `$share/{group}/…`): which
//! one member gets an event, and where a leaving member's events go.
//!
//! Owns: the shard's random source for picks and the rules: one member in
//! the whole mesh, chosen uniformly among this process's members (this
//! shard's and the shards that have members); only when it has none, the
//! mesh (another router's members). A member whose connection is closing
//! has left already; an event whose members left on its way is handed on,
//! at most [`HAND_ON_MAX`] times. Reads the trie's matches and the table
//! (who is leaving); must not change either: joining and leaving a group
//! is a subscription (`routing`).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use super::table::Table;
use super::{ShardCtx, ShardMsg};
use crate::event::Event;
use crate::shard::mailbox::Mailbox as Session;
use crate::shard::stats::Counters;
use crate::topic::split_share;
use crate::topic::trie::{GroupMatch, LocalSub, Matched};

/// How often a queue-group event is handed on to other members when the
/// ones it was sent to left on its way (a few times covers members leaving
/// on several shards at once; more would only pass it round while their
/// withdrawals are on their way).
pub(super) const HAND_ON_MAX: u8 = 4;

/// Where one queue-group member was picked.
pub(super) enum Member {
    Here(LocalSub),
    Shard(usize),
}

/// Index of the `n`-th set bit of `mask` (n counted from 0).
pub(crate) fn nth_bit(mut mask: u64, n: usize) -> usize {
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

/// The shard's picks: a cheap random source (xorshift).
pub(crate) struct Groups {
    rng: Cell<u64>,
}

impl Groups {
    pub(super) fn new(shard: usize) -> Groups {
        Groups {
            rng: Cell::new(0x9e37_79b9_7f4a_7c15 ^ (shard as u64 + 1)),
        }
    }

    /// A uniform pick in `0..n` (n > 0).
    pub(crate) fn below(&self, n: usize) -> usize {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        (x % n as u64) as usize
    }

    /// One member of a queue group, chosen uniformly among this process's
    /// members (this shard's and the shards that have members); only when
    /// it has none, the mesh (`mesh_bit`: another router's members).
    pub(super) fn pick(&self, g: &GroupMatch, table: &Table, mesh_bit: u64) -> Option<Member> {
        let here = g.remote & !mesh_bit;
        let members = g.local.len() + here.count_ones() as usize;
        let pick = if members == 0 { 0 } else { self.below(members) };
        if pick < g.local.len() {
            if let Some(sub) = table.live_member(&g.local, pick) {
                return Some(Member::Here(sub));
            }
        }
        let shards = here.count_ones() as usize;
        if shards > 0 {
            let n = pick.saturating_sub(g.local.len()).min(shards - 1);
            return Some(Member::Shard(nth_bit(here, n)));
        }
        (g.remote & mesh_bit != 0).then(|| Member::Shard(mesh_bit.trailing_zeros() as usize))
    }

    /// A live member of `group` on this shard, for an event sent here for
    /// that group.
    pub(super) fn pick_here(
        &self,
        matched: &Matched,
        group: &str,
        table: &Table,
    ) -> Option<LocalSub> {
        let g = matched.groups.iter().find(|g| &*g.name == group)?;
        let start = self.below(g.local.len().max(1));
        table.live_member(&g.local, start)
    }
}

/// The QoS >= 1 events a leaving session got through a shared
/// subscription only, with its group: another member gets them
/// (MQTT 5 §4.8.2: a terminated session's messages go to the group).
pub(super) fn shared_backlog(session: &Session) -> Vec<(Event, Arc<str>)> {
    let subs = session.subscriptions.borrow();
    let shared: Vec<(&str, &str)> = subs
        .keys()
        .filter_map(|f| match split_share(f) {
            (Some(group), filter) => Some((group, filter)),
            _ => None,
        })
        .collect();
    if shared.is_empty() {
        return Vec::new();
    }
    let plain: Vec<&str> = subs.keys().filter(|f| split_share(f).0.is_none()).collect();
    let backlog = session.take_backlog();
    let events = backlog
        .inflight
        .into_iter()
        .map(|f| f.event)
        .chain(backlog.queued.into_iter().map(|(e, _)| e));
    let mut out = Vec::new();
    for event in events {
        let topic = event.topic();
        if plain.iter().any(|f| crate::topic::filter_matches(f, topic)) {
            continue; // also a plain delivery of its own: not redirected
        }
        if let Some((group, _)) = shared
            .iter()
            .find(|(_, f)| crate::topic::filter_matches(f, topic))
        {
            out.push((event, Arc::from(*group)));
        }
    }
    out
}

impl ShardCtx {
    /// Gives an event to one member of `group` (here or on another shard).
    /// `handed`: how often the event was handed on already (members gone
    /// on its way); past `HAND_ON_MAX` it is dropped and counted, so that
    /// shards whose members are all leaving cannot pass it round for long.
    pub(super) fn deliver_to_group(&self, event: Event, group: &str, handed: u8) {
        let matched = self.routing.matches(event.topic());
        let Some(g) = matched.groups.iter().find(|g| &*g.name == group) else {
            Counters::add(&self.counters.dropped_group_gone, 1);
            return;
        };
        match self.groups.pick(g, &self.table, self.mesh_bit()) {
            Some(Member::Here(sub)) => self.deliver_local(&[sub], &matched.subject, event, None),
            Some(Member::Shard(peer)) => {
                let groups = std::iter::once(g.name.clone()).collect();
                self.control.push(
                    Some(peer),
                    ShardMsg::Event {
                        event,
                        plain: false,
                        groups,
                        handed,
                    },
                );
            }
            None => Counters::add(&self.counters.dropped_group_gone, 1),
        }
    }

    /// An event sent here for these queue groups: one live member of each
    /// gets it; where the members here left while it was on its way,
    /// another member of the group gets it (the publisher may hold a
    /// PUBACK for it), back where it came from included; at most
    /// `HAND_ON_MAX` times, then it is dropped and counted.
    pub(super) fn deliver_to_groups_here(
        &self,
        matched: &Rc<Matched>,
        event: &Event,
        groups: &[Arc<str>],
        handed: u8,
        congested: &mut Vec<Rc<Session>>,
    ) {
        for name in groups {
            match self.groups.pick_here(matched, name, &self.table) {
                Some(pick) => {
                    let subject = &matched.subject;
                    self.deliver_local(&[pick], subject, event.clone(), Some(congested))
                }
                None if handed < HAND_ON_MAX => {
                    self.deliver_to_group(event.clone(), name, handed + 1)
                }
                None => Counters::add(&self.counters.dropped_group_gone, 1),
            }
        }
    }
}
