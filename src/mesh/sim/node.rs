//! One simulated router: the real routing core ([`Router`]), the real
//! link sessions ([`LinkSession`]) and resend stores ([`Outbox`]), and a
//! small runtime around them that does what `shard::bridge` does with
//! their actions — hop-by-hop acknowledgement obligations, holding the
//! links of peers expected back, parking copies with no route yet, the
//! retained-store exchange — with bytes instead of sockets.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::mesh::link::{self, Frame, LinkLimits, LinkMeta};
use crate::mesh::route::{
    Action, Arrival, CopyRef, EventCopy, LinkId, LinkMsg, LinkPolicy, Router, RouterConfig,
    RETAINED_KEY,
};
use crate::mesh::session::{Action as Step, Actions, LinkSession, LinkTimers, Outbox, Request};

mod actions;

/// (link, sequence number there) of a QoS 1 copy that came over a link.
type Upstream = (LinkId, u64);

/// The part of an event the routing core does not carry.
#[derive(Debug, Clone, Copy)]
pub struct Body {
    pub qos: u8,
    pub retain: bool,
    pub stamp: u64,
    pub sync: bool,
}

/// A delivery to this router's subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub topic: String,
    pub origin: String,
    pub id: u64,
    pub qos: u8,
}

pub struct SimLink {
    pub session: LinkSession,
    /// The connection it runs on (the harness's index).
    pub conn: usize,
}

struct Parked {
    copy: EventCopy,
    from: Option<LinkId>,
    upstream: Option<Upstream>,
    body: Body,
}

pub struct Node {
    pub name: String,
    pub router: Router,
    pub links: BTreeMap<LinkId, SimLink>,
    next_link: u32,
    outboxes: BTreeMap<String, Outbox<Upstream>>,
    /// Held links (down, peer expected back) → peer, and when the hold
    /// ends (`mesh.link_hold_ms`).
    held: BTreeMap<LinkId, String>,
    held_until: BTreeMap<LinkId, Instant>,
    parked: VecDeque<Parked>,
    /// When the parked copies are tried again, table change or not.
    parked_retry_at: Option<Instant>,
    upstream: Option<Upstream>,
    acks_due: Vec<LinkId>,
    /// topic → (stamp, origin, id): the retained store.
    pub retained: BTreeMap<String, (u64, String, u64)>,
    /// Local subscriptions (filter → count).
    pub subs: BTreeMap<String, u32>,
    pub delivered: Vec<Delivered>,
    /// Bytes to write, per connection, in order.
    pub outgoing: Vec<(usize, Vec<u8>)>,
    pub unacked_max: usize,
}

/// `WEFT_SIM_TRACE=1`: every router's steps on stderr (to read a failing
/// seed's story).
pub fn tracing() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEFT_SIM_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use trace;

/// How often parked copies are tried again without a table change.
pub const PARK_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// `mesh.link_hold_ms` in the sim.
pub const HOLD: std::time::Duration = std::time::Duration::from_secs(2);

/// A copy owed to next hops this long is acknowledged all the same
/// ([`LinkSession::set_custody_after`]): longer than a hold, so that a
/// held peer's return is waited for, and later than the last restart
/// (the traffic phase is shorter), so the sim cannot see it lose a copy.
pub const CUSTODY: std::time::Duration = std::time::Duration::from_secs(4);

/// How long a router keeps a withdrawn entry as a destination of its own
/// events ([`Router::set_interest_hold_down`]): longer than the sim's
/// reconvergence after a fault (tens of ms), shorter than a hold. The
/// bridge does not hold down (yet): see the routing core.
pub const INTEREST_HOLD_DOWN: std::time::Duration = std::time::Duration::from_millis(500);

pub const TIMERS: LinkTimers = LinkTimers {
    keepalive: std::time::Duration::from_millis(100),
    link_timeout: std::time::Duration::from_millis(350),
    hello_timeout: std::time::Duration::from_millis(300),
};

impl Node {
    pub fn new(name: &str) -> Node {
        let mut node = Node {
            name: name.to_owned(),
            router: Router::new(name, RouterConfig::default()),
            links: BTreeMap::new(),
            next_link: 1,
            outboxes: BTreeMap::new(),
            held: BTreeMap::new(),
            held_until: BTreeMap::new(),
            parked: VecDeque::new(),
            parked_retry_at: None,
            upstream: None,
            acks_due: Vec::new(),
            retained: BTreeMap::new(),
            subs: BTreeMap::new(),
            delivered: Vec::new(),
            outgoing: Vec::new(),
            unacked_max: 10_000,
        };
        node.router.set_interest_hold_down(INTEREST_HOLD_DOWN);
        let mut out = Vec::new();
        node.router
            .local_subscribe(RETAINED_KEY, &mut out)
            .expect("valid");
        node.apply(out, None);
        node
    }

    // ------------------------------------------------------- connections

    /// A new connection: the session says hello.
    /// The routing core's clock (its hold-downs), before each input.
    fn clock(&mut self, now: Instant) {
        let mut out = Vec::new();
        self.router.advance(now, &mut out);
        self.apply(out, None);
    }

    pub fn connect(&mut self, conn: usize, now: Instant) -> LinkId {
        self.clock(now);
        let id = LinkId(self.next_link);
        self.next_link += 1;
        let mut session = LinkSession::new(&self.name, "sim", TIMERS, now);
        session.set_custody_after(Some(CUSTODY));
        let mut out = Actions::default();
        session.start(&mut out);
        self.outgoing.push((conn, out.bytes.clone()));
        self.links.insert(id, SimLink { session, conn });
        id
    }

    /// The connection under `id` is gone (either side's close, a cut).
    pub fn disconnect(&mut self, id: LinkId, now: Instant) {
        self.clock(now);
        let Some(l) = self.links.remove(&id) else {
            return;
        };
        let Some(peer) = l.session.peer().map(str::to_owned) else {
            return; // never up
        };
        let mut out = Vec::new();
        let held = self.router.link_hold(id, &mut out);
        trace!("  {} link {} to {peer} down (held {held})", self.name, id.0);
        if held {
            self.held.insert(id, peer);
            self.held_until.insert(id, now + HOLD);
        }
        self.apply(out, None);
    }

    fn live_link_to(&self, peer: &str) -> Option<LinkId> {
        self.links
            .iter()
            .find(|(_, l)| l.session.peer() == Some(peer) && l.session.closed().is_none())
            .map(|(id, _)| *id)
    }

    fn write(&mut self, id: LinkId, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(l) = self.links.get(&id) {
            if l.session.closed().is_none() {
                self.outgoing.push((l.conn, bytes.to_vec()));
            }
        }
    }

    /// Carries out writes; returns whether the session closed.
    fn carry_out(&mut self, id: LinkId, out: &Actions<'_>) -> bool {
        let mut closed = false;
        for a in &out.list {
            match a {
                Step::Write { from, to } => {
                    let bytes = out.bytes[*from..*to].to_vec();
                    self.write(id, &bytes);
                }
                Step::Close(_) => closed = true,
                Step::Request(_) => {}
            }
        }
        closed
    }

    /// Bytes arrived on link `id`; returns true when the link closed.
    pub fn receive(&mut self, id: LinkId, bytes: &[u8], now: Instant) -> bool {
        self.clock(now);
        let Some(l) = self.links.get_mut(&id) else {
            return false;
        };
        l.session.heard(now);
        let mut at = 0;
        while at < bytes.len() {
            let (frame, n) = match link::decode(&bytes[at..], &LinkLimits::default()) {
                Ok(Some(x)) => x,
                other => panic!("{}: undecodable bytes from the wire: {other:?}", self.name),
            };
            at += n;
            let mut out = Actions::default();
            self.links
                .get_mut(&id)
                .expect("live")
                .session
                .on_frame(frame, now, &mut out);
            let mut closed = false;
            for a in std::mem::take(&mut out.list) {
                match a {
                    Step::Write { from, to } => {
                        let b = out.bytes[from..to].to_vec();
                        self.write(id, &b);
                    }
                    Step::Close(_) => closed = true,
                    Step::Request(r) => self.on_request(id, r, now),
                }
            }
            if closed {
                return true;
            }
        }
        self.ack_if_due(id);
        self.flush_acks();
        false
    }

    fn on_request(&mut self, id: LinkId, request: Request<'_>, now: Instant) {
        match request {
            Request::Up => self.up(id, now),
            Request::Route(Frame::Event(e)) => self.on_event(id, e),
            Request::Route(Frame::InterestAdd {
                filter,
                origin,
                distance,
                ..
            }) => {
                trace!(
                    "  {} link {} +{filter}@{origin} d{distance}",
                    self.name,
                    id.0
                );
                let msg = LinkMsg::InterestAdd {
                    filter: filter.into(),
                    origin: origin.into(),
                    distance,
                };
                let mut out = Vec::new();
                self.router.on_message(id, msg, &mut out);
                self.apply(out, None);
                self.retry_parked();
            }
            Request::Route(Frame::InterestRemove { filter, origin, .. }) => {
                trace!("  {} link {} -{filter}@{origin}", self.name, id.0);
                let msg = LinkMsg::InterestRemove {
                    filter: filter.into(),
                    origin: origin.into(),
                };
                let mut out = Vec::new();
                self.router.on_message(id, msg, &mut out);
                self.apply(out, None);
            }
            Request::Route(other) => panic!("not routed: {other:?}"),
            Request::Acked(seq) => {
                let peer = self.links[&id].session.peer().expect("up").to_owned();
                trace!("  {} acked by {peer} up to {seq}", self.name);
                let mut done = Vec::new();
                if let Some(ob) = self.outboxes.get_mut(&peer) {
                    ob.acked(seq, &mut done);
                }
                for u in done {
                    self.release(Some(u));
                }
            }
            Request::TableReceived => {
                let peer = self.links[&id].session.peer().expect("up").to_owned();
                let mut out = Vec::new();
                for ended in self.router.release_held(&peer, &mut out) {
                    self.held.remove(&ended);
                }
                self.apply(out, None);
                self.retry_parked();
            }
            Request::RoundTrip(_) => {}
        }
    }

    /// The bridge's link-up: the table, the resend store, the retained
    /// store, then the PING that marks the end of the table.
    fn up(&mut self, id: LinkId, now: Instant) {
        let peer = self.links[&id].session.peer().expect("up").to_owned();
        trace!("  {} link {} to {peer} up", self.name, id.0);
        let mut out = Vec::new();
        self.router
            .link_up_with_policy(id, &peer, LinkPolicy::default(), &mut out);
        self.apply(out, None);
        let mut resend = Vec::new();
        if let Some(ob) = self.outboxes.get_mut(&peer) {
            ob.rewind();
            ob.refill(&mut resend, usize::MAX);
        }
        self.write(id, &resend);
        let store: Vec<(String, (u64, String, u64))> = self
            .retained
            .iter()
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect();
        for (topic, (stamp, _, eid)) in store {
            let mut out = Vec::new();
            self.router.sync_retained(id, &topic, eid, &mut out);
            let body = Body {
                qos: 0,
                retain: true,
                stamp,
                sync: true,
            };
            self.apply(out, Some(body));
        }
        let mut out = Actions::default();
        let l = self.links.get_mut(&id).expect("live");
        l.session.table_sent(now, &mut out);
        self.carry_out(id, &out);
    }

    fn on_event(&mut self, id: LinkId, e: link::Event<'_>) {
        let copy = EventCopy {
            origin: e.origin.into(),
            id: e.id,
            hops: e.hops,
            dests: e.dests.iter().map(Into::into).collect(),
            groups: Vec::new(),
            topic: e.topic.into(),
            retain: e.retain,
        };
        let body = Body {
            qos: e.qos,
            retain: e.retain,
            stamp: e.stamp,
            sync: e.sync,
        };
        trace!(
            "  {} event {}#{} seq {} from link {} dests {:?} qos {} sync {}",
            self.name,
            copy.origin,
            copy.id,
            e.seq,
            id.0,
            copy.dests,
            e.qos,
            e.sync
        );
        let mut out = Vec::new();
        let before = self.router.counters();
        // The bridge's path: the common copy through the core's borrowed
        // fast path (`route/fast.rs`), any other as an owned copy.
        let fast = match e.dests.only() {
            Some(dest) if e.groups.is_empty() => self
                .router
                .on_event_for_me(id, e.origin, e.id, dest, e.topic, e.retain),
            _ => Arrival::Other,
        };
        match fast {
            Arrival::Other => self
                .router
                .on_message(id, LinkMsg::Event(copy.clone()), &mut out),
            Arrival::Dropped => {}
            Arrival::Deliver { plain } => out.push(Action::Deliver {
                topic: copy.topic.clone(),
                id: copy.id,
                plain,
                groups: Vec::new(),
            }),
        }
        let after = self.router.counters();
        if after.own_origin > before.own_origin || after.hops_exceeded > before.hops_exceeded {
            trace!(
                "  {} LOOP drop {}#{} hops {}",
                self.name,
                copy.origin,
                copy.id,
                copy.hops
            );
        }
        if e.seq > 0 {
            self.upstream = Some((id, e.seq));
        }
        let delivered = self.apply_with(out, Some(body), &copy);
        self.upstream = None;
        if body.retain {
            for _ in 0..delivered {
                if self.store(&copy.topic, body.stamp, &copy.origin, copy.id) && body.sync {
                    // News here: passed on to the other peers.
                    let others: Vec<LinkId> =
                        self.links.keys().copied().filter(|l| *l != id).collect();
                    for other in others {
                        if self.links[&other].session.is_up() {
                            let mut out = Vec::new();
                            self.router
                                .sync_retained(other, &copy.topic, copy.id, &mut out);
                            self.apply(out, Some(body));
                        }
                    }
                }
            }
        }
        if e.seq > 0 {
            self.links
                .get_mut(&id)
                .expect("live")
                .session
                .processed(e.seq);
        }
    }

    /// Stores a retained message if it is newer; true if it was.
    fn store(&mut self, topic: &str, stamp: u64, origin: &str, id: u64) -> bool {
        match self.retained.get(topic) {
            Some((s, _, _)) if *s >= stamp => false,
            _ => {
                self.retained
                    .insert(topic.into(), (stamp, origin.into(), id));
                true
            }
        }
    }

    // ------------------------------------------------------------ local

    pub fn subscribe(&mut self, filter: &str) {
        let n = self.subs.entry(filter.into()).or_insert(0);
        *n += 1;
        if *n == 1 {
            let mut out = Vec::new();
            self.router
                .local_subscribe(filter, &mut out)
                .expect("valid");
            self.apply(out, None);
        }
    }

    pub fn unsubscribe(&mut self, filter: &str) {
        let Some(n) = self.subs.get_mut(filter) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.subs.remove(filter);
            let mut out = Vec::new();
            self.router.local_unsubscribe(filter, &mut out);
            self.apply(out, None);
        }
    }

    /// A client's publish here: delivered to this router's own
    /// subscribers and handed to the mesh.
    pub fn publish(&mut self, topic: &str, id: u64, qos: u8, retain: bool, stamp: u64) {
        let copy = EventCopy {
            origin: self.name.clone(),
            id,
            hops: 0,
            dests: Vec::new(),
            groups: Vec::new(),
            topic: topic.into(),
            retain,
        };
        if self
            .subs
            .keys()
            .any(|f| crate::topic::filter_matches(f, topic))
        {
            self.delivered.push(Delivered {
                topic: topic.into(),
                origin: self.name.clone(),
                id,
                qos,
            });
        }
        trace!(
            "  {} publish {id} {topic} qos {qos} retain {retain}",
            self.name
        );
        let mut out = Vec::new();
        let body = Body {
            qos,
            retain,
            stamp,
            sync: false,
        };
        if retain {
            self.store(topic, stamp, &self.name.clone(), id);
            self.router.publish_retained(topic, id, &mut out);
        } else {
            // Local subscribers got it above, as a shard delivers them.
            // The bridge's path: the copies of the core's cached plan
            // (`route/fast.rs`), owned here for the simulated links.
            let plan = self.router.publish_planned(topic, id, &mut out);
            for (link, dests, groups) in plan.copies() {
                let copy = CopyRef {
                    origin: &self.name,
                    id,
                    hops: 0,
                    dests,
                    groups,
                    topic,
                    retain: plan.retain(),
                };
                out.push(Action::Send {
                    link,
                    msg: LinkMsg::Event(copy.to_copy()),
                });
            }
        }
        if out.is_empty() {
            trace!("  {} nothing to do for {id}", self.name);
        }
        self.apply_with(out, Some(body), &copy);
    }

    /// Time passed: every session's deadlines. Returns the links closed.
    pub fn tick(&mut self, now: Instant) -> Vec<LinkId> {
        self.clock(now);
        // Parked copies are tried again after a table change, and also
        // every PARK_RETRY: a copy that came back round a loop after the
        // tables had settled waited for a change that never came (seed
        // 2583; the bridge would drop it at the hold's end).
        if self.parked_retry_at.is_some_and(|t| t <= now) {
            self.parked_retry_at = None;
            self.retry_parked();
        }
        if !self.parked.is_empty() && self.parked_retry_at.is_none() {
            self.parked_retry_at = Some(now + PARK_RETRY);
        }
        // As the bridge's tick: holds whose routes all moved end.
        let mut out = Vec::new();
        for ended in self.router.end_empty_holds(&mut out) {
            self.held.remove(&ended);
        }
        let expired: Vec<LinkId> = self
            .held_until
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.held_until.remove(&id);
            if self.held.remove(&id).is_some() && self.router.is_held(id) {
                self.router.link_down(id, &mut out);
            }
        }
        self.apply(out, None);
        let mut closed = Vec::new();
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            let mut out = Actions::default();
            let l = self.links.get_mut(&id).expect("listed");
            while let Some(d) = crate::session::Deadline::next_deadline(&l.session) {
                if d > now {
                    break;
                }
                l.session.handle_timeout(now, &mut out);
            }
            if self.carry_out(id, &out) {
                closed.push(id);
            }
        }
        closed
    }

    /// The earliest session deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.links
            .values()
            .filter_map(|l| crate::session::Deadline::next_deadline(&l.session))
            .chain(self.held_until.values().copied())
            .chain(self.parked_retry_at)
            .min()
    }

    /// What is pending, for a failure message.
    pub fn pending_detail(&self) -> String {
        let stores: Vec<String> = self
            .outboxes
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(p, o)| format!("to {p}: {:?}", o.seqs().collect::<Vec<_>>()))
            .collect();
        let links: Vec<String> = self
            .links
            .iter()
            .map(|(id, l)| format!("{}={:?}/{:?}", id.0, l.session.peer(), l.session.closed()))
            .collect();
        format!(
            "{}: stores {stores:?}, parked {:?}, links {links:?}, held {:?}",
            self.name,
            self.parked
                .iter()
                .map(|p| (&p.copy, p.from, p.body.qos, p.body.retain))
                .collect::<Vec<_>>(),
            self.held
        )
    }

    /// Copies not yet acknowledged by next hops, or parked.
    pub fn pending(&self) -> usize {
        self.outboxes.values().map(|o| o.len()).sum::<usize>() + self.parked.len()
    }
}
