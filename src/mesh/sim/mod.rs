//! The mesh in one thread: N routers ([`node::Node`]: the real routing
//! core, link sessions and resend stores) joined by connections that carry
//! the link protocol's bytes with a latency each, in virtual time. Faults:
//! a connection cut (its bytes in flight lost; the dialling side redials),
//! partitions, silent links (bytes lost without a close: the sessions'
//! keepalive finds them), and router restarts (a fresh router with no
//! memory, as after `kill -9`; its peers resend what it never
//! acknowledged). Deterministic: a seed chooses topology, traffic and
//! faults, and the same seed replays the same run (`tests.rs`).
//!
//! The runtime around the core (`node.rs`, `node/actions.rs`) does what
//! `shard::bridge` does, rules the sim found included (each said at its
//! place, and done by the bridge too): retained copies travel as QoS 1
//! copies do whatever their QoS, parked copies are tried again on a timer,
//! a looped copy taken over releases the copies before it
//! (`LinkSession::take_over`), copies owed too long are acknowledged
//! (`LinkSession::set_custody_after`, `mesh.custody_ms`), and the routing
//! core holds withdrawn interest down (`Router::set_interest_hold_down`,
//! `mesh.interest_hold_down_ms`; the clock by `Router::advance`: here
//! before every input, in the bridge once per 50 ms tick).
//!
//! Test-only. Must not touch: sockets, executors, the shard code.

pub mod node;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::mesh::route::LinkId;
use node::{trace, tracing, Node};

/// One TCP connection between two routers.
pub struct Conn {
    /// (router, its link id) at each end; index 0 dialled.
    pub ends: [(usize, LinkId); 2],
    pub latency: Duration,
    /// Bytes vanish (no close): the keepalive must find it.
    pub silent: bool,
    pub open: bool,
}

/// A wire between two routers: the connection on it now, if any.
pub struct Wire {
    pub a: usize,
    pub b: usize,
    pub latency: Duration,
    pub conn: Option<usize>,
    /// Cut by a fault: no connection until healed.
    pub cut: bool,
    /// Redial when (after a drop).
    pub redial_at: Option<Instant>,
}

/// (arrival, order sent, connection, to end, bytes).
type InFlight = (Instant, u64, usize, usize, Vec<u8>);

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub wires: Vec<Wire>,
    pub conns: Vec<Conn>,
    /// (arrival, order, conn, to end, bytes).
    inflight: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    pub redial: Duration,
    /// Incarnation of each router (restarts).
    pub incarnation: Vec<u32>,
}

impl Sim {
    pub fn new(names: &[&str]) -> Sim {
        let start = Instant::now();
        Sim {
            start,
            now: start,
            nodes: names.iter().map(|n| Node::new(n)).collect(),
            wires: Vec::new(),
            conns: Vec::new(),
            inflight: BinaryHeap::new(),
            order: 0,
            redial: Duration::from_millis(50),
            incarnation: vec![0; names.len()],
        }
    }

    /// Virtual milliseconds since the start.
    pub fn ms(&self) -> u128 {
        (self.now - self.start).as_millis()
    }

    /// A wire a–b (a dials), connected now.
    pub fn wire(&mut self, a: usize, b: usize, latency: Duration) -> usize {
        self.wires.push(Wire {
            a,
            b,
            latency,
            conn: None,
            cut: false,
            redial_at: None,
        });
        let w = self.wires.len() - 1;
        self.dial(w);
        w
    }

    fn dial(&mut self, w: usize) {
        let c = self.conns.len();
        let (a, b, latency) = (self.wires[w].a, self.wires[w].b, self.wires[w].latency);
        let la = self.nodes[a].connect(c, self.now);
        let lb = self.nodes[b].connect(c, self.now);
        self.conns.push(Conn {
            ends: [(a, la), (b, lb)],
            latency,
            silent: false,
            open: true,
        });
        self.wires[w].conn = Some(c);
        self.wires[w].redial_at = None;
        trace!(
            "@{} dial r{a}-r{b} conn {c} links {} {}",
            self.ms(),
            la.0,
            lb.0
        );
        self.flush();
    }

    /// Moves what the routers wrote onto the connections.
    fn flush(&mut self) {
        for r in 0..self.nodes.len() {
            for (c, bytes) in std::mem::take(&mut self.nodes[r].outgoing) {
                let conn = &self.conns[c];
                if !conn.open || conn.silent {
                    continue;
                }
                let to = if conn.ends[0].0 == r { 1 } else { 0 };
                self.order += 1;
                let at = self.now + conn.latency;
                self.inflight.push(Reverse((at, self.order, c, to, bytes)));
            }
        }
    }

    /// Closes connection `c` at both ends (a close, a cut, a restart).
    pub fn drop_conn(&mut self, c: usize) {
        if !std::mem::replace(&mut self.conns[c].open, false) {
            return;
        }
        trace!("@{} drop conn {c}", self.ms());
        for (r, l) in self.conns[c].ends {
            self.nodes[r].disconnect(l, self.now);
        }
        for w in &mut self.wires {
            if w.conn == Some(c) {
                w.conn = None;
                w.redial_at = Some(self.now + self.redial);
            }
        }
        self.flush();
    }

    /// Cuts wire `w` until [`Self::heal`].
    pub fn cut(&mut self, w: usize) {
        trace!("@{} cut wire {w}", self.ms());
        self.wires[w].cut = true;
        if let Some(c) = self.wires[w].conn {
            self.drop_conn(c);
        }
    }

    pub fn heal(&mut self, w: usize) {
        trace!("@{} heal wire {w}", self.ms());
        self.wires[w].cut = false;
        if self.wires[w].conn.is_none() {
            self.wires[w].redial_at = Some(self.now);
        }
    }

    /// The connection on `w` loses its bytes silently from now on.
    pub fn silence(&mut self, w: usize) {
        if let Some(c) = self.wires[w].conn {
            trace!("@{} silence wire {w} conn {c}", self.ms());
            self.conns[c].silent = true;
        }
    }

    /// Router `r` dies and comes back empty (its links redial).
    pub fn restart(&mut self, r: usize) {
        trace!("@{} restart r{r}", self.ms());
        let open: Vec<usize> = (0..self.conns.len())
            .filter(|&c| self.conns[c].open && self.conns[c].ends.iter().any(|e| e.0 == r))
            .collect();
        for c in open {
            // Its end is gone without a word: only the peer's end closes.
            self.conns[c].open = false;
            for (n, l) in self.conns[c].ends {
                if n != r {
                    self.nodes[n].disconnect(l, self.now);
                }
            }
            for w in &mut self.wires {
                if w.conn == Some(c) {
                    w.conn = None;
                    w.redial_at = Some(self.now + self.redial);
                }
            }
        }
        let name = self.nodes[r].name.clone();
        self.nodes[r] = Node::new(&name);
        self.incarnation[r] += 1;
        self.flush();
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 5_000_000, "no progress at {} ms", self.ms());
            let next_wire = self.inflight.peek().map(|Reverse(x)| x.0);
            let next_timer = self.nodes.iter().filter_map(|n| n.next_deadline()).min();
            let next_dial = self
                .wires
                .iter()
                .filter(|w| !w.cut && w.conn.is_none())
                .filter_map(|w| w.redial_at)
                .min();
            let next = [next_wire, next_timer, next_dial]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until.max(self.now);
                return;
            };
            self.now = self.now.max(next);
            trace!("@{}", self.ms());
            if next_wire == Some(next) {
                let Reverse((_, _, c, to, bytes)) = self.inflight.pop().expect("peeked");
                if self.conns[c].open && !self.conns[c].silent {
                    let (r, l) = self.conns[c].ends[to];
                    if self.nodes[r].receive(l, &bytes, self.now) {
                        self.flush();
                        self.drop_conn(c);
                    }
                }
            } else if next_timer == Some(next) {
                for r in 0..self.nodes.len() {
                    for l in self.nodes[r].tick(self.now) {
                        let c = self.nodes[r].links[&l].conn;
                        self.flush();
                        self.drop_conn(c);
                    }
                }
            } else {
                let w = (0..self.wires.len())
                    .find(|&w| {
                        let w = &self.wires[w];
                        !w.cut && w.conn.is_none() && w.redial_at == Some(next)
                    })
                    .expect("a wire to dial");
                self.dial(w);
            }
            self.flush();
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Every wire has a live link (both sessions up) and nothing is in
    /// flight or unacknowledged.
    pub fn quiet(&self) -> bool {
        // Keepalive PINGs and PONGs are always on their way.
        let keepalive_only = |bytes: &[u8]| {
            let mut at = 0;
            while let Ok(Some((f, n))) =
                crate::mesh::link::decode(&bytes[at..], &Default::default())
            {
                if !matches!(
                    f,
                    crate::mesh::link::Frame::Ping { .. } | crate::mesh::link::Frame::Pong { .. }
                ) {
                    return false;
                }
                at += n;
            }
            true
        };
        self.inflight.iter().all(|Reverse(x)| keepalive_only(&x.4))
            && self.nodes.iter().all(|n| n.pending() == 0)
            && self.wires.iter().all(|w| {
                w.conn.is_some_and(|c| {
                    self.conns[c].open
                        && self.conns[c]
                            .ends
                            .iter()
                            .all(|(r, l)| self.nodes[*r].links[l].session.is_up())
                })
            })
    }

    /// Runs until [`Self::quiet`] (checked every 50 ms of virtual time),
    /// for at most `max`; false if it never got quiet.
    pub fn settle(&mut self, max: Duration) -> bool {
        let end = self.now + max;
        while self.now < end {
            self.run_for(Duration::from_millis(50));
            if self.quiet() {
                // A last round: PINGs and acks in flight land.
                self.run_for(Duration::from_millis(300));
                return true;
            }
        }
        false
    }
}
