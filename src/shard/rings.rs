//! The rings between executors: one bounded SPSC ring of our own
//! (`spsc`) per ordered pair of peers, made in the main thread and handed
//! to each executor with its peer id fixed in advance.
//!
//! Until 2026-12 these were glommio 0.9 shared channels, whose connect was
//! a rendezvous (and `channel_mesh`'s `MeshBuilder::join` lost a wake-up
//! now and then at start-up: about 1 start in 250 stalled). An `spsc` ring
//! and its doorbells exist before any executor starts, so there is nothing
//! to connect and nothing to lose: a peer may send before its consumer
//! runs (the messages wait in the ring), and a consumer that went to sleep
//! first has said so before the producer looks (see `spsc`). Our rings
//! also do not wake the sender on every receive, as glommio's did.
//!
//! Owns: making the rings, sending to a peer by id. Must not touch: what
//! travels on them (`ShardMsg`, `ctx/msg.rs`).

use glommio::{GlommioError, ResourceType};

use super::spsc::{self, TrySendError};

pub use super::spsc::Receiver;

/// Descriptors each ring may hold: two eventfds, and a glommio copy of
/// each for the side waiting on it.
pub const DESCRIPTORS_PER_RING: u64 = 4;

/// One executor's ends: `Send`, so made in the main thread.
pub struct RingEnds<T: Send + 'static> {
    id: usize,
    peers: usize,
    senders: Vec<Option<spsc::Sender<T>>>,
    receivers: Vec<Option<spsc::Receiver<T>>>,
}

/// The ends of a full mesh of `peers` executors, indexed by peer id;
/// `capacity` messages per ring. Err: out of descriptors (eventfds).
pub fn full<T: Send + 'static>(peers: usize, capacity: usize) -> std::io::Result<Vec<RingEnds<T>>> {
    let mut ends: Vec<RingEnds<T>> = (0..peers)
        .map(|id| RingEnds {
            id,
            peers,
            senders: (0..peers).map(|_| None).collect(),
            receivers: (0..peers).map(|_| None).collect(),
        })
        .collect();
    for from in 0..peers {
        for to in (0..peers).filter(|&to| to != from) {
            let (s, r) = spsc::channel(capacity)?;
            ends[from].senders[to] = Some(s);
            ends[to].receivers[from] = Some(r);
        }
    }
    Ok(ends)
}

/// Rings (ordered pairs) of a full mesh of `peers`.
pub fn rings_of(peers: usize) -> u64 {
    let peers = peers as u64;
    peers * peers.saturating_sub(1)
}

/// A connected executor's senders, by peer id.
pub struct Senders<T: Send + 'static> {
    id: usize,
    peers: usize,
    senders: Vec<Option<spsc::Sender<T>>>,
}

impl<T: Send + 'static> RingEnds<T> {
    pub fn id(&self) -> usize {
        self.id
    }

    /// Takes the ends on the executor that owns them from now on. The
    /// receivers come with the id of the peer that sends on them. Nothing
    /// to wait for (kept async for the callers' sake).
    pub async fn connect(self) -> (Senders<T>, Vec<(usize, Receiver<T>)>) {
        let incoming = self
            .receivers
            .into_iter()
            .enumerate()
            .filter_map(|(from, r)| r.map(|r| (from, r)))
            .collect();
        (
            Senders {
                id: self.id,
                peers: self.peers,
                senders: self.senders,
            },
            incoming,
        )
    }
}

impl<T: Send + 'static> Senders<T> {
    pub fn peer_id(&self) -> usize {
        self.id
    }

    /// Peers in the mesh, this one included.
    pub fn nr_consumers(&self) -> usize {
        self.peers
    }

    fn to(&self, peer: usize) -> &spsc::Sender<T> {
        self.senders[peer]
            .as_ref()
            .expect("a ring to another peer (never to itself)")
    }

    /// True when `peer` has taken everything sent to it so far.
    pub fn drained_to(&self, peer: usize) -> bool {
        self.to(peer).is_empty()
    }

    /// `WouldBlock` when the ring is full, `Closed` when the peer is gone;
    /// either way the message comes back.
    pub fn try_send_to(&self, peer: usize, msg: T) -> Result<(), GlommioError<T>> {
        self.to(peer).try_send(msg).map_err(|e| match e {
            TrySendError::Full(msg) => GlommioError::WouldBlock(ResourceType::Channel(msg)),
            TrySendError::Closed(msg) => GlommioError::Closed(ResourceType::Channel(msg)),
        })
    }

    /// Waits for room; Err only when the peer is gone.
    pub async fn send_to(&self, peer: usize, msg: T) -> Result<(), GlommioError<T>> {
        self.to(peer)
            .send(msg)
            .await
            .map_err(|msg| GlommioError::Closed(ResourceType::Channel(msg)))
    }
}
