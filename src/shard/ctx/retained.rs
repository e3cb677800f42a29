//! Retained messages on this shard: its copy of the store (every shard
//! keeps the whole store, so a SUBSCRIBE is answered locally), the stamps
//! that order copies across shards and routers, and the replay to a new
//! subscription.
//!
//! Owns: the [`RetainedStore`] copy. A retained publish is stored here and
//! sent to the other shards through the ordered control queue
//! (`ShardMsg::Retain`); the store never touches the trie or the table.
//! Bounded by `limits.retained_messages_max` and `limits.retained_bytes_max`.

use std::cell::RefCell;

use super::{split_share, ShardCtx, ShardMsg};
use crate::config::Config;
use crate::event::Event;
use crate::shard::mailbox::{DeliverAs, Delivery, Mailbox as Session, Protocol};
use crate::shard::stats::Counters;
use crate::topic::retained::{RetainedStore, Stored};

pub(super) struct Retained {
    store: RefCell<RetainedStore>,
}

impl Retained {
    pub(super) fn new(config: &Config) -> Retained {
        // Tombstones only matter when stores are compared across routers.
        let tombstones = if config.mesh.enabled() {
            config.limits.retained_messages_max
        } else {
            0
        };
        let store = RetainedStore::new(
            config.limits.retained_messages_max,
            config.limits.retained_bytes_max,
        )
        .with_tombstones(tombstones);
        Retained {
            store: RefCell::new(store),
        }
    }

    pub(super) fn set_limits(&self, config: &Config) {
        self.store.borrow_mut().set_limits(
            config.limits.retained_messages_max,
            config.limits.retained_bytes_max,
        );
    }

    /// The stamp of a retained publish on `topic` made here now.
    pub(super) fn next_stamp(&self, topic: &str) -> u64 {
        self.store
            .borrow()
            .next_stamp(topic, crate::event::wall_ns())
    }

    pub(super) fn len(&self) -> usize {
        self.store.borrow().len()
    }
}

impl ShardCtx {
    /// Stores a retained publish (or deletion) with its stamp; a refusal
    /// (store full) is counted and logged.
    pub(crate) fn store_retained(&self, event: &Event, stamp: u64) -> Stored {
        let stored = self.retained.store.borrow_mut().apply_stamped(event, stamp);
        if matches!(stored, Stored::Set | Stored::Replaced | Stored::Deleted) {
            self.journal_retained(event, stamp);
        }
        if stored == Stored::Refused {
            Counters::add(&self.counters.retained_refused, 1);
            if self.log_limiter.allow() {
                tracing::warn!(
                    shard = self.id,
                    topic = event.topic(),
                    "retained message refused: store full"
                );
            }
        }
        stored
    }

    /// A retained publish from a client of this shard: stored here and in
    /// every other shard's copy (through the ordered control queue).
    pub fn retain(&self, event: &Event) {
        let stamp = self.retained.next_stamp(event.topic());
        self.store_retained(event, stamp);
        self.retain_everywhere(event, stamp);
    }

    /// Sends a stored retained publish to every other peer's copy (through
    /// the ordered control queue).
    pub(crate) fn retain_everywhere(&self, event: &Event, stamp: u64) {
        if self.shards > 1 {
            self.control
                .push(None, ShardMsg::Retain(event.clone(), stamp));
        }
    }

    /// This router's retained messages and tombstones, for a peer router.
    pub fn retained_snapshot(&self) -> Vec<(Event, u64)> {
        self.retained.store.borrow().snapshot()
    }

    /// The retained messages matching `filter`, each with its stamp (the
    /// HTTP edge's replay: the stamp is its event id, and a resume sends
    /// only those stamped after the id it names).
    pub fn retained_stamped(&self, filter: &str) -> Vec<(Event, u64)> {
        let store = self.retained.store.borrow();
        let mut matches = Vec::new();
        store.matching(filter, &mut matches);
        matches
            .into_iter()
            .map(|e| {
                let stamp = store.stamp(e.topic()).unwrap_or(0);
                (e, stamp)
            })
            .collect()
    }

    /// Sends the retained messages matching a new subscription.
    pub fn send_retained(&self, session: &Session, filter: &str, granted: u8) {
        if split_share(filter).0.is_some() {
            return; // not for shared subscriptions (MQTT 5 §4.8.2)
        }
        let mut matches = Vec::new();
        self.retained.store.borrow().matching(filter, &mut matches);
        let limits = self.limits();
        // Not the hot path: every retained message is tested when the
        // session has rules (its subscription may be checked).
        let rules = session.grants.borrow().is_some();
        for mut event in matches {
            if rules && !self.readable(session, Protocol::Mqtt, &event) {
                continue;
            }
            // A replay, not routing: kept out of the latency histogram.
            event.born_ns = crate::event::REPLAY_NS;
            let qos = event.qos.min(granted & 3);
            if session.deliver(event, DeliverAs::Mqtt { qos, retain: true }, &limits)
                == Delivery::Dropped
            {
                Counters::add(&self.counters.dropped_queue_full, 1);
            }
        }
    }
}
