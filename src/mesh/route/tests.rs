//! The routing core's tests, with `Sim`: routers joined by message queues
//! (no sessions, no clock). The link-level simulation is `mesh::sim`.
//! This file holds `Sim` and the helpers the tests share; the tests, one
//! concern a file: `delivery.rs`, `interest.rs`, `policy.rs`, `holds.rs`.

use super::*;
use std::collections::{BTreeMap, VecDeque};

mod delivery;
mod holds;
mod interest;
mod policy;

/// In-memory mesh: N routers, a FIFO queue per directed link, no
/// sockets, no clock.
pub(super) struct Sim {
    pub(super) routers: Vec<Router>,
    /// (router, its link) → (peer router, the peer's link id).
    pub(super) wires: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    /// Messages sent by (router, over link), not yet received.
    queues: BTreeMap<(usize, LinkId), VecDeque<LinkMsg>>,
    next_link: Vec<u32>,
    /// (router, topic, id) in delivery order.
    delivered: Vec<(usize, String, u64)>,
    sends: u64,
    event_sends: u64,
    /// Every event copy that crossed (from router, to router).
    pub(super) crossings: Vec<(usize, usize, String)>,
}

impl Sim {
    pub(super) fn new(n: usize) -> Sim {
        Sim {
            routers: (0..n)
                .map(|i| Router::new(format!("r{i}"), RouterConfig::default()))
                .collect(),
            wires: BTreeMap::new(),
            queues: BTreeMap::new(),
            next_link: vec![1; n],
            delivered: Vec::new(),
            sends: 0,
            event_sends: 0,
            crossings: Vec::new(),
        }
    }

    fn apply(&mut self, r: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { link, msg } => {
                    self.sends += 1;
                    if matches!(msg, LinkMsg::Event(_)) {
                        self.event_sends += 1;
                    }
                    assert!(self.wires.contains_key(&(r, link)), "send on a down link");
                    self.queues.entry((r, link)).or_default().push_back(msg);
                }
                Action::Deliver {
                    topic,
                    id,
                    plain,
                    groups,
                } => {
                    if plain {
                        self.delivered.push((r, topic.clone(), id));
                    } else if groups.is_empty() {
                        // A retained copy to store, for no subscriber.
                        self.delivered.push((r, format!("stored:{topic}"), id));
                    }
                    for g in groups {
                        self.delivered.push((r, format!("{g}:{topic}"), id));
                    }
                }
                Action::RemoteInterest { .. } => {}
                // This runtime keeps nothing: it drops and counts.
                Action::Unroutable { copy, .. } => {
                    let n = copy.dests.len() + copy.groups.len();
                    self.routers[r].count_no_route(n as u64);
                }
            }
        }
    }

    pub(super) fn connect_with(
        &mut self,
        a: usize,
        b: usize,
        pa: LinkPolicy,
        pb: LinkPolicy,
    ) -> (LinkId, LinkId) {
        let la = LinkId(self.next_link[a]);
        self.next_link[a] += 1;
        let lb = LinkId(self.next_link[b]);
        self.next_link[b] += 1;
        self.wires.insert((a, la), (b, lb));
        self.wires.insert((b, lb), (a, la));
        let (ida, idb) = (self.routers[a].id.clone(), self.routers[b].id.clone());
        let mut out = Vec::new();
        self.routers[a].link_up_with_policy(la, &idb, pa, &mut out);
        self.apply(a, out);
        let mut out = Vec::new();
        self.routers[b].link_up_with_policy(lb, &ida, pb, &mut out);
        self.apply(b, out);
        (la, lb)
    }

    pub(super) fn connect(&mut self, a: usize, b: usize) -> (LinkId, LinkId) {
        self.connect_with(a, b, LinkPolicy::default(), LinkPolicy::default())
    }

    pub(super) fn link_between(&self, a: usize, b: usize) -> LinkId {
        self.wires
            .iter()
            .find(|(&(r, _), &(p, _))| r == a && p == b)
            .map(|(&(_, l), _)| l)
            .expect("linked")
    }

    /// Cuts the a-b link; messages in flight on it are lost.
    fn cut(&mut self, a: usize, b: usize) {
        let la = self.link_between(a, b);
        let (_, lb) = self.wires[&(a, la)];
        for (r, l) in [(a, la), (b, lb)] {
            self.wires.remove(&(r, l));
            self.queues.remove(&(r, l));
            let mut out = Vec::new();
            self.routers[r].link_down(l, &mut out);
            self.apply(r, out);
        }
    }

    /// The a-b connection is lost and both ends hold the link (see
    /// `Router::link_hold`); messages in flight on it are lost.
    fn hold(&mut self, a: usize, b: usize) {
        let la = self.link_between(a, b);
        let (_, lb) = self.wires[&(a, la)];
        for (r, l) in [(a, la), (b, lb)] {
            self.wires.remove(&(r, l));
            self.queues.remove(&(r, l));
            let mut out = Vec::new();
            self.routers[r].link_hold(l, &mut out);
            self.apply(r, out);
        }
    }

    pub(super) fn subscribe(&mut self, r: usize, filter: &str) {
        let mut out = Vec::new();
        self.routers[r].local_subscribe(filter, &mut out).unwrap();
        self.apply(r, out);
    }

    fn unsubscribe(&mut self, r: usize, filter: &str) {
        let mut out = Vec::new();
        self.routers[r].local_unsubscribe(filter, &mut out);
        self.apply(r, out);
    }

    pub(super) fn publish(&mut self, r: usize, topic: &str, id: u64) {
        let mut out = Vec::new();
        self.routers[r].publish(topic, id, &mut out);
        self.apply(r, out);
    }

    /// Delivers queued messages round-robin until none is left;
    /// returns the number delivered. Panics past `max_steps`.
    pub(super) fn run_until_idle(&mut self, max_steps: usize) -> usize {
        let mut steps = 0;
        loop {
            let keys: Vec<(usize, LinkId)> = self
                .queues
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, _)| *k)
                .collect();
            if keys.is_empty() {
                return steps;
            }
            for (r, l) in keys {
                let msg = self.queues.get_mut(&(r, l)).unwrap().pop_front().unwrap();
                let (p, pl) = self.wires[&(r, l)];
                if let LinkMsg::Event(e) = &msg {
                    self.crossings.push((r, p, e.topic.clone()));
                }
                let mut out = Vec::new();
                self.routers[p].on_message(pl, msg, &mut out);
                self.apply(p, out);
                steps += 1;
                assert!(steps <= max_steps, "no quiescence after {max_steps} steps");
            }
        }
    }

    /// (router, topic, id) of every plain delivery so far.
    pub(super) fn delivered_events(&self) -> Vec<(usize, String, u64)> {
        self.delivered.clone()
    }

    pub(super) fn deliveries(&self, topic: &str, id: u64) -> BTreeMap<usize, usize> {
        let mut m = BTreeMap::new();
        for (r, t, i) in &self.delivered {
            if t == topic && *i == id {
                *m.entry(*r).or_default() += 1;
            }
        }
        m
    }

    /// Publishes from every router in turn and checks that exactly
    /// `subs` get each event, once, with a bounded number of sends.
    fn check_everyone_publishes(&mut self, topic: &str, subs: &[usize], first_id: u64) {
        for p in 0..self.routers.len() {
            let id = first_id + p as u64;
            let before = self.event_sends;
            self.publish(p, topic, id);
            self.run_until_idle(10_000);
            let want: BTreeMap<usize, usize> = subs.iter().map(|&s| (s, 1)).collect();
            assert_eq!(self.deliveries(topic, id), want, "publisher r{p}");
            // A copy per link of a spanning tree at most.
            assert!(self.event_sends - before < self.routers.len() as u64);
        }
    }
}

fn ring(n: usize) -> Sim {
    let mut sim = Sim::new(n);
    for i in 0..n {
        sim.connect(i, (i + 1) % n);
    }
    sim
}

fn sends(out: &mut Vec<Action>) -> Vec<(u32, String)> {
    out.drain(..)
        .filter(|a| !matches!(a, Action::RemoteInterest { .. }))
        .map(|a| match a {
            Action::Send {
                link,
                msg:
                    LinkMsg::InterestAdd {
                        origin, distance, ..
                    },
            } => (link.0, format!("add {origin} {distance}")),
            Action::Send {
                link,
                msg: LinkMsg::InterestRemove { origin, .. },
            } => (link.0, format!("remove {origin}")),
            other => panic!("{other:?}"),
        })
        .collect()
}
