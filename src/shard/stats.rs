//! Per-shard counters. The owning shard counts in plain `Cell`s on the event
//! path and publishes them to these atomics on its housekeeping tick, so
//! readers on other threads (the CLI, tests, later the admin endpoint) never
//! touch the event path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Shard-local counters, written by the shard only.
        #[derive(Default)]
        pub struct Counters { $(#[doc = $doc] pub $name: Cell<u64>,)* }

        /// The published copy, readable from any thread.
        #[derive(Default, Debug)]
        pub struct ShardStats { $(#[doc = $doc] pub $name: AtomicU64,)* }

        /// A plain snapshot, summed over shards or for one shard.
        #[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Snapshot { $(#[doc = $doc] pub $name: u64,)* }

        impl Counters {
            pub fn publish(&self, to: &ShardStats) {
                $(to.$name.store(self.$name.get(), Ordering::Relaxed);)*
            }
        }

        impl ShardStats {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl std::ops::AddAssign for Snapshot {
            fn add_assign(&mut self, o: Snapshot) { $(self.$name += o.$name;)* }
        }
    };
}

counters! {
    connections: "Open connections.",
    connections_accepted: "Connections accepted since start.",
    connections_refused: "Connections closed at accept: over `connections_max`.",
    messages_in: "PUBLISH packets received from clients.",
    messages_out: "Deliveries queued to subscribers.",
    dropped_queue_full: "QoS 0 deliveries dropped because the subscriber's queue was full.",
    dropped_group_gone: "Queue-group events whose chosen shard had no member left.",
    slow_consumer_disconnects: "Subscribers disconnected as slow consumers.",
    publisher_pauses: "Times a QoS 1 publisher was paused for a full subscriber queue.",
    protocol_errors: "Connections closed for a malformed packet or a protocol violation.",
    keep_alive_timeouts: "Connections closed because the keep-alive expired.",
    ring_events_out: "Events handed to other shards.",
    ring_full_waits: "Sends that found a ring full and waited.",
    subscriptions: "Subscriptions held by this shard's sessions.",
    trie_nodes: "Nodes of the shard's trie.",
    remote_interest_entries: "Filters other shards told this shard about.",
    sessions: "Sessions registered on the shard.",
}

impl Counters {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    pub fn sub(cell: &Cell<u64>, n: u64) {
        debug_assert!(cell.get() >= n, "gauge below zero");
        cell.set(cell.get().saturating_sub(n));
    }
}
