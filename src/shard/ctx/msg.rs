//! What shards tell each other over the rings, and the values those
//! messages carry.
//!
//! Owns: the message types only (no state, no behaviour). Every part of
//! the context that talks to another shard says it with one of these, and
//! [`super::ShardCtx::on_ring`] hands each kind to the part that owns it.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::event::Event;
use crate::shard::mailbox::Backlog;
use crate::topic::trie::SessionKey;

/// What shards tell each other.
#[derive(Clone)]
pub enum ShardMsg {
    /// An event for this shard's plain subscribers (`plain`) and for one
    /// member of each named queue group this shard was chosen for.
    Event {
        event: Event,
        plain: bool,
        groups: SmallVec<[Arc<str>; 1]>,
        /// Times a queue-group event was handed on because the members it
        /// was sent to had left (bounded by `groups::HAND_ON_MAX`).
        handed: u8,
    },
    /// The sender's first local subscriber of this filter (in this queue
    /// group, if any) appeared.
    InterestAdd(Interest),
    /// The sender's last local subscriber of this filter (group) left.
    InterestRemove(Interest),
    /// Answer with `BarrierAck` once everything sent before it is applied.
    Barrier(u64),
    BarrierAck(u64),
    /// A barrier answered (`BarrierAck`) only once the receiver's log
    /// holds what it appended before it (persistence, `ctx::persist`);
    /// `BarrierFailed` if its log failed.
    DurableBarrier(u64),
    BarrierFailed(u64),
    /// A retained publish (empty payload: delete) for every shard's copy
    /// of the retained store.
    /// With its stamp (see `topic::retained`).
    Retain(Event, u64),
    /// To the client id's directory shard: the sender now hosts this
    /// client id; answer with the shard that hosted it before.
    Claim {
        client_id: Arc<str>,
        token: u64,
    },
    ClaimReply {
        token: u64,
        previous: Option<u16>,
    },
    /// To the previous host: end that session (and hand over its state
    /// if `want_state`).
    Takeover {
        client_id: Arc<str>,
        token: u64,
        want_state: bool,
    },
    /// Phase 1 of a takeover (see `directory::establish`): answer with
    /// the kept session's filters (`TakeoverReply`, no backlog) and end its
    /// connection; it stays, collecting, until the `Takeover`.
    Prepare {
        client_id: Arc<str>,
        token: u64,
    },
    TakeoverReply {
        token: u64,
        state: Option<Box<SessionState>>,
    },
    /// To the directory shard: the sender no longer hosts this client id.
    Release {
        client_id: Arc<str>,
    },
    /// To a publisher's shard: one of the sender's subscribers is over its
    /// soft limit with this publisher's events; stop reading it (see
    /// `hold`). Always followed by `FreePublisher` for the same key.
    HoldPublisher(SessionKey),
    FreePublisher(SessionKey),
    /// From shard 0: a shared-memory client accepted on `shm.listen`, for
    /// the receiver to serve (round-robin over the shards).
    ShmClient(crate::shard::shm_handoff::Handoff),
}

/// A persistent MQTT session on its way from one shard to another.
#[derive(Debug, Default, Clone)]
pub struct SessionState {
    pub subscriptions: Vec<(Box<str>, u8)>,
    /// MQTT 5 Subscription Identifiers of those subscriptions.
    pub identifiers: Vec<(Box<str>, u32)>,
    pub backlog: Backlog,
    /// Inbound QoS 2 packet ids awaiting PUBREL (journaled sessions).
    pub awaiting_release: Vec<u16>,
}

/// A filter, plain or within a queue group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interest {
    pub filter: Arc<str>,
    pub group: Option<Arc<str>>,
}
