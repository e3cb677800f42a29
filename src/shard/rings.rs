//! The rings between executors: one bounded glommio shared channel (a
//! lock-free SPSC ring) per ordered pair of peers, made in the main thread
//! and handed to each executor with its peer id fixed in advance.
//!
//! Written by hand instead of glommio 0.9's `channel_mesh` because the
//! mesh's rendezvous (`MeshBuilder::join`) loses a wake-up now and then at
//! start-up: under load about 1 start in 250 stalled for seconds or for
//! good with some executors asleep in io_uring and others spinning (a
//! ticker did not cure it). Here each executor only connects its own ends:
//! a connecting end polls for its peer on every turn of the reactor (no
//! notification to lose; a 1 ms ticker covers the reactor falling asleep
//! with that poll pending), and every connect is started before any is
//! awaited, so no pair can wait on each other.
//!
//! Owns: making and connecting the rings, sending to a peer by id. Must not
//! touch: what travels on them (`ShardMsg`, `ctx/msg.rs`).

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::GlommioError;

/// One executor's unconnected ends: `Send`, so made in the main thread.
pub struct RingEnds<T: Send + 'static> {
    id: usize,
    peers: usize,
    senders: Vec<Option<SharedSender<T>>>,
    receivers: Vec<Option<SharedReceiver<T>>>,
}

/// The ends of a full mesh of `peers` executors, indexed by peer id;
/// `capacity` messages per ring.
pub fn full<T: Send + 'static>(peers: usize, capacity: usize) -> Vec<RingEnds<T>> {
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
            let (s, r) = shared_channel::new_bounded(capacity);
            ends[from].senders[to] = Some(s);
            ends[to].receivers[from] = Some(r);
        }
    }
    ends
}

/// A connected executor's senders, by peer id.
pub struct Senders<T: Send + 'static> {
    id: usize,
    peers: usize,
    senders: Vec<Option<ConnectedSender<T>>>,
}

impl<T: Send + 'static> RingEnds<T> {
    pub fn id(&self) -> usize {
        self.id
    }

    /// Connects every end (on the executor that owns them); returns once
    /// every peer has connected its side. The receivers come with the id of
    /// the peer that sends on them.
    pub async fn connect(self) -> (Senders<T>, Vec<(usize, ConnectedReceiver<T>)>) {
        // A connecting end re-arms its waker on every turn of the reactor,
        // but glommio 0.9 can still put the executor to sleep in io_uring
        // with that waker pending (seen: every executor asleep, one end
        // unconnected, for good). A ticker bounds each such sleep to 1 ms
        // until every end is connected.
        let connecting = std::rc::Rc::new(std::cell::Cell::new(true));
        let ticker = {
            let connecting = connecting.clone();
            glommio::spawn_local(async move {
                while connecting.get() {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
            })
        };
        let ends = self.connect_all().await;
        connecting.set(false);
        ticker.await;
        ends
    }

    async fn connect_all(self) -> (Senders<T>, Vec<(usize, ConnectedReceiver<T>)>) {
        // Start every connect before awaiting any.
        let senders: Vec<_> = self
            .senders
            .into_iter()
            .map(|s| s.map(|s| glommio::spawn_local(s.connect())))
            .collect();
        let receivers: Vec<_> = self
            .receivers
            .into_iter()
            .enumerate()
            .filter_map(|(from, r)| r.map(|r| (from, glommio::spawn_local(r.connect()))))
            .collect();
        let mut connected = Vec::with_capacity(senders.len());
        for s in senders {
            connected.push(match s {
                Some(task) => Some(task.await),
                None => None,
            });
        }
        let mut incoming = Vec::with_capacity(receivers.len());
        for (from, task) in receivers {
            incoming.push((from, task.await));
        }
        (
            Senders {
                id: self.id,
                peers: self.peers,
                senders: connected,
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

    fn to(&self, peer: usize) -> &ConnectedSender<T> {
        self.senders[peer]
            .as_ref()
            .expect("a ring to another peer (never to itself)")
    }

    pub fn try_send_to(&self, peer: usize, msg: T) -> Result<(), GlommioError<T>> {
        self.to(peer).try_send(msg)
    }

    /// Waits for room; Err only when the peer is gone.
    pub async fn send_to(&self, peer: usize, msg: T) -> Result<(), GlommioError<T>> {
        self.to(peer).send(msg).await
    }
}
