//! The mesh's routing core: a deterministic, sans-IO state machine that
//! decides where interest and events go between routers (DESIGN.md "Mesh").
//!
//! Owns: one [`Router`] per weft process, its links to neighbour routers
//! (by [`LinkId`]), the local interest counts, the interest table learned
//! from the links, per-link policy and counters, and the duplicate
//! suppression window. Inputs are method calls (`link_up`, `link_down`,
//! `local_subscribe`, `local_unsubscribe`, `publish`, `on_message`); outputs
//! are [`Action`]s pushed onto a caller's `Vec`: [`Action::Send`] of a
//! [`LinkMsg`] over a link, or [`Action::Deliver`] to this router's own
//! subscribers. There is no randomness, and time is an input
//! ([`Router::advance`], for hold-downs only): the same inputs give the
//! same actions in the same order (all maps are ordered).
//!
//! Model:
//! - *Local interest* is counted per filter (MQTT form: `/` levels, `+` and
//!   `#`); only 0→1 and 1→0 change anything outside the router.
//! - *Interest propagation* is a distance vector per (filter, origin
//!   router). A router advertises to every link its own filters at distance
//!   0 and, for every (filter, origin) learned from its links, the best one
//!   at distance + 1, with split horizon (never over the link the best entry
//!   was learned from). An advertisement is re-sent when its distance
//!   changes and withdrawn when the entry disappears or its best path moves
//!   onto that link. Distances above [`DISTANCE_MAX`] are unreachable, which
//!   bounds counting to infinity. A link that comes up gets the whole table
//!   (resync); a link that goes down takes everything learned over it,
//!   unless it is *held* (its peer is expected back): then its routes
//!   stay, counted at least [`HELD_DISTANCE`] links away, until the peer
//!   announces them again or the hold ends ([`Router::link_hold`]).
//!   A router ignores interest whose origin is itself. An entry whose
//!   last route went may be *held down* for a while
//!   ([`Router::set_interest_hold_down`]): a destination still, with no
//!   route, of this router's own events, which the runtime parks until the
//!   route is back (routes reconverging withdraw it for a moment).
//! - *Event forwarding* uses destination sets: the publishing router
//!   computes the routers with matching interest, groups them by next hop
//!   (the link with the smallest distance to that router for a matching
//!   filter; ties to the lowest [`LinkId`]) and sends one [`EventCopy`] per
//!   next hop. A receiver delivers locally if it is in `dests` and forwards
//!   the other dests by its own next hops (never back over the link the
//!   copy came in on), `hops` + 1, dropped above [`HOPS_MAX`]. Every
//!   destination is in exactly one copy at any time, so any topology gets
//!   each event at most once per router; a bounded per-origin window of
//!   recently delivered ids makes retransmits (at-least-once over a healed
//!   link) harmless.
//!   Copies of a router's own events follow a per-topic plan, cached until
//!   the tables change.
//! - *Queue groups*: a group's interest is its own key,
//!   `$share/{group}/{filter}`. The runtime hands the core only the groups
//!   that have no member on this router; [`Router::publish_as`] picks one
//!   router with members per group (at random, from the runtime's number)
//!   and the copy carries it as a (router, group) destination, forwarded
//!   like the others; duplicates are dropped per (origin, group).
//! - *Link policy*: export and import allow and deny filters per link (deny
//!   wins; an empty allow list allows all). A topic the export policy
//!   refuses is never sent over the link (the next hop choice skips that
//!   link, so another allowed path is used if one exists); one the import
//!   policy refuses is dropped when it arrives. Interest whose filter is
//!   entirely covered by a deny filter is neither learned (export) nor
//!   advertised (import). Counted per link. An import prefix is prepended
//!   to the topics arriving over the link, and stripped from the interest
//!   advertised to it.
//!
//! Payloads and protocol metadata do not pass through here: the runtime
//! keeps the event's buffer and attaches it to the copies this core asks it
//! to send. [`LinkMsg`] mirrors the link frames as owned values; mapping it
//! onto [`super::link::Frame`] is the link session's job.
//!
//! Limits: [`RouterConfig::interest_entries_max`] distinct (filter, origin)
//! entries (local ones included; learned ones beyond it are ignored and
//! counted), [`RouterConfig::dests_max`] destinations per copy (more are
//! split over several copies), a dedup window of
//! [`RouterConfig::dedup_window`] ids (a bitmap) for each of at most
//! [`RouterConfig::dedup_origins_max`] origins, `PLANS_MAX` cached plans.
//!
//! Must not touch: sockets, executors, timers, rings and the shard code, the
//! byte codec in [`super::link`], the client protocols and the trie.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A per-event cache keyed by topic (see `Router::plans`).
type TopicMap<V> = hashbrown::HashMap<String, V, crate::topic::trie::SeededState>;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::topic::{filter_matches, validate_filter, TopicLimits};

/// (distance, next hop).
type Route = (u16, LinkId);

/// The interest every router announces so that retained messages reach
/// every router's store: a retained event goes to the routers with this
/// key as well as to those whose interest matches its topic. A `$` topic:
/// no wildcard filter matches it.
pub const RETAINED_KEY: &str = "$weft/retained";

/// Interest farther than this many links is unreachable.
pub const DISTANCE_MAX: u16 = 16;

/// The distance a held link's routes (see [`Router::link_hold`]) count
/// as, at least: a live path up to this many links long is taken instead
/// (a ring fails over), and a held route is announced on at this distance
/// or more, so that the routers that learn it compare it as they would a
/// path (see `route_rank`). A floor, not a cost added per held link: a
/// path through two held links (two cuts in a line) stays in reach.
pub const HELD_DISTANCE: u16 = 8;

/// The same floor, for a held link whose peer is back on another link: its
/// routes are what the peer has not announced again (a restarted router
/// that has not heard from its own links yet), a last resort behind any
/// route the peer's return brings. At [`HELD_DISTANCE`] such a stale route
/// outranked a real one and, by split horizon, kept the returned peer
/// from learning it (found by the mesh sim, seed 177).
pub const RETURNED_DISTANCE: u16 = 12;

/// An event copy that has crossed more links than this is dropped.
pub const HOPS_MAX: u8 = 16;

/// A link to a neighbour router, numbered by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u32);

/// One copy of an event on its way to `dests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCopy {
    /// The router the event entered the mesh at.
    pub origin: String,
    /// Unique per origin router.
    pub id: u64,
    /// Links crossed before the one this copy is sent over.
    pub hops: u8,
    /// The routers this copy must reach; never empty.
    pub dests: Vec<String>,
    /// (router, queue group): one member of that group there gets it.
    pub groups: Vec<(String, String)>,
    /// Internal (MQTT-form) topic.
    pub topic: String,
    /// A retained message: it also goes to the routers announcing
    /// [`RETAINED_KEY`], which store it.
    pub retain: bool,
}

/// What crosses a link, as owned values (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMsg {
    /// `origin` has subscribers for `filter`, `distance` links away from the
    /// sender. Also an update when the distance changes.
    InterestAdd {
        filter: String,
        origin: String,
        distance: u16,
    },
    InterestRemove {
        filter: String,
        origin: String,
    },
    Event(EventCopy),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        link: LinkId,
        msg: LinkMsg,
    },
    /// Hand the event to this router's own subscribers. `topic` is the
    /// topic to deliver under (rewritten by an import prefix, if any).
    Deliver {
        topic: String,
        id: u64,
        /// To the plain subscribers.
        plain: bool,
        /// To one member of each of these queue groups.
        groups: Vec<String>,
    },
    /// Some other router now has (`present`) or no longer has interest in
    /// `filter`: events of this router matching it must (no longer) reach
    /// the core through [`Router::publish`].
    RemoteInterest {
        filter: String,
        present: bool,
    },
    /// The destinations of `copy` (and its groups) to which no link leads
    /// now (not even a denied one): the router they name is unknown here,
    /// or known only over `from`, the link the copy came in on (a router
    /// that just restarted, whose other links are not back yet). The
    /// runtime either keeps the copy and hands it to [`Router::retry`]
    /// once the table has grown (at-least-once copies: see the module
    /// comment), or drops it and says so with [`Router::count_no_route`].
    /// Not counted in `no_route` by the core.
    /// `looped`: the copy went round a routing loop (see
    /// `Router::unroutable_loop`); the runtime that keeps it takes it over
    /// (acknowledges the copy it came from at once): waiting for the
    /// acknowledgement of a copy sent round the same loop would wait on
    /// itself (cumulative acknowledgements; found by the mesh sim, seed 34).
    Unroutable {
        copy: EventCopy,
        from: Option<LinkId>,
        looped: bool,
    },
}

/// An interest key: a plain filter, or `$share/{group}/{filter}` for a
/// queue group (MQTT shared subscription or NATS queue group) → (group,
/// filter).
pub fn key_parts(key: &str) -> (Option<&str>, &str) {
    match key
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((group, filter)) => (Some(group), filter),
        None => (None, key),
    }
}

/// The interest key of `filter` within `group` (or plain).
pub fn group_key(group: Option<&str>, filter: &str) -> String {
    match group {
        Some(g) => format!("$share/{g}/{filter}"),
        None => filter.to_owned(),
    }
}

fn key_matches(key: &str, group: Option<&str>, topic: &str) -> bool {
    let (g, f) = key_parts(key);
    g == group && filter_matches(f, topic)
}

/// `strip_prefix_filter` for an interest key (the group stays).
fn strip_prefix_key(prefix: &str, key: &str) -> Option<String> {
    if key == RETAINED_KEY {
        return Some(key.to_owned());
    }
    let (g, f) = key_parts(key);
    strip_prefix_filter(prefix, f).map(|f| group_key(g, &f))
}

/// The filter, in the peer's topic space, that matches exactly the topics
/// `filter` matches under `prefix`; None if it matches none of them.
fn strip_prefix_filter(prefix: &str, filter: &str) -> Option<String> {
    if prefix.is_empty() {
        return Some(filter.to_owned());
    }
    let mut levels = filter.split('/');
    for p in prefix.trim_end_matches('/').split('/') {
        match levels.next()? {
            "#" => return Some("#".to_owned()),
            "+" => {}
            l if l == p => {}
            _ => return None,
        }
    }
    let rest: Vec<&str> = levels.collect();
    (!rest.is_empty()).then(|| rest.join("/"))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub events_out: u64,
    pub events_in: u64,
    pub denied_export: u64,
    pub denied_import: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterCounters {
    /// Copies dropped because they would exceed [`HOPS_MAX`].
    pub hops_exceeded: u64,
    /// Destinations dropped for lack of a (permitted) route.
    pub no_route: u64,
    /// Local deliveries suppressed as duplicates.
    pub duplicates: u64,
    /// Learned entries ignored because the table was full.
    pub interest_rejected: u64,
    /// Interest messages with an invalid filter or router id.
    pub bad_interest: u64,
    /// Messages received on a link that is not up.
    pub unknown_link: u64,
    /// Event copies that arrived with this router's own id as their origin
    /// (dropped): another router in the mesh uses the same id, since an
    /// event never travels back to where it entered.
    pub own_origin: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    pub interest_entries_max: usize,
    pub dests_max: usize,
    pub dedup_window: usize,
    pub dedup_origins_max: usize,
    pub topic_limits: TopicLimits,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            interest_entries_max: 100_000,
            // Matches the link codec's default `dests_max`.
            dests_max: 64,
            dedup_window: 4096,
            dedup_origins_max: 1024,
            topic_limits: TopicLimits::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid topic filter {0:?}")]
    BadFilter(String),
    #[error("interest table full ({0} entries)")]
    TableFull(usize),
}

/// (filter, origin router).
type Key = (String, String);

struct Link {
    peer: String,
    /// Down, with its routes kept at a higher cost (see
    /// [`Router::link_hold`]).
    held: bool,
    policy: LinkPolicy,
    counters: LinkCounters,
    /// What this router has told the link: entry → advertised distance.
    advertised: BTreeMap<Key, u16>,
}

/// The ids seen from one origin: the highest, and a bitmap of the
/// `window` ids below it. Ids of one origin are consecutive (a counter), so
/// this is exact for the last `window` events and costs window/8 bytes; an
/// id older than the window counts as seen (dropped), never delivered twice.
struct DedupWindow {
    /// The highest id seen (None before the first).
    high: Option<u64>,
    bits: Box<[u64]>,
    last_used: u64,
}

impl DedupWindow {
    fn new(window: usize) -> DedupWindow {
        DedupWindow {
            high: None,
            bits: vec![0; window.div_ceil(64).max(1)].into_boxed_slice(),
            last_used: 0,
        }
    }

    fn span(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn bit(&self, id: u64) -> (usize, u64) {
        let i = id % self.span();
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Records `id`; false if it was seen (or is older than the window).
    fn first(&mut self, id: u64) -> bool {
        let span = self.span();
        match self.high {
            Some(high) if id <= high => {
                if high - id >= span {
                    return false;
                }
            }
            Some(high) if id - high < span => {
                for gone in high + 1..=id {
                    let (w, b) = self.bit(gone);
                    self.bits[w] &= !b;
                }
                self.high = Some(id);
            }
            _ => {
                self.bits.fill(0);
                self.high = Some(id);
            }
        }
        let (w, b) = self.bit(id);
        let seen = self.bits[w] & b != 0;
        self.bits[w] |= b;
        !seen
    }
}

pub struct Router {
    id: String,
    config: RouterConfig,
    links: BTreeMap<LinkId, Link>,
    local: BTreeMap<String, u64>,
    /// Entry → (link it was learned over → the neighbour's distance).
    learned: BTreeMap<Key, BTreeMap<LinkId, u16>>,
    /// Learned entries per filter (any origin): what this router's own
    /// publishers must hand to the core.
    remote_filters: BTreeMap<String, usize>,
    /// The learned filters of each origin router (an index of `learned`
    /// for next-hop lookups).
    by_origin: HashMap<String, BTreeSet<String>>,
    dedup: BTreeMap<String, DedupWindow>,
    /// Where this router's own events on a topic go, while the tables
    /// stay as they are (the topics an interest change matches are
    /// forgotten, see `invalidate`; all of them when a link comes or goes;
    /// at most PLANS_MAX). Looked up per event: foldhash, seeded per
    /// process as the trie's caches are (topics come from clients), not
    /// SipHash.
    plans: TopicMap<Rc<Plan>>,
    /// Whether this router's plain interest matches a topic (events from
    /// links), cleared when that interest changes; at most PLANS_MAX.
    local_wants: TopicMap<bool>,
    tick: u64,
    counters: RouterCounters,
    /// A held link lost a route since the last [`Router::end_empty_holds`].
    holds_touched: bool,
    /// How long a withdrawn entry is held down (zero: not at all; see
    /// [`Router::set_interest_hold_down`]).
    hold_down: Duration,
    /// The runtime's clock, as of its last [`Router::advance`].
    now: Option<Instant>,
    /// Entries whose last route went, held down until then (at most
    /// `interest_entries_max`): still counted in `remote_filters`, and
    /// still destinations of this router's own events (see
    /// `Router::held_down`).
    withdrawn: BTreeMap<Key, Instant>,
    /// Events each link policy rule refused: (peer, refusal) → count, at
    /// most [`POLICY_AUDIT_ENTRIES_MAX`] entries (rules come from the
    /// configuration, peers are at most `mesh.links_max` at a time).
    policy_denied: BTreeMap<(String, Refusal), u64>,
}

/// Audit entries kept (see `Router::policy_denied`): refusals of a rule
/// not yet counted are counted in the link's `denied_*` only beyond it.
pub const POLICY_AUDIT_ENTRIES_MAX: usize = 4096;

/// Topics whose forwarding plan is cached.
const PLANS_MAX: usize = 4096;

/// One copy: its next hop, plain destinations, (router, group) ones.
type PlannedCopy = (LinkId, Vec<String>, Vec<(String, String)>);

/// Forwarding decided for one topic: copies per next hop, links whose
/// policy kept it off, destinations without a route, local delivery.
#[derive(Default)]
pub struct Plan {
    deliver_local: bool,
    retain: bool,
    copies: Vec<PlannedCopy>,
    denied: Vec<LinkId>,
    /// Destinations whose only paths the link policy refuses.
    no_route: u64,
    /// Destinations (plain, groups) no link leads to at all.
    unrouted: (Vec<String>, Vec<(String, String)>),
}

/// Whether every topic `filter` matches is also matched by `deny`.
/// Conservative: `false` means "not known to be covered".
fn filter_covers(deny: &str, filter: &str) -> bool {
    if filter.starts_with('$') && (deny.starts_with('+') || deny.starts_with('#')) {
        return false;
    }
    let mut d = deny.split('/');
    let mut f = filter.split('/');
    loop {
        match (d.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(fl)) if fl != "#" => {}
            (Some(dl), Some(fl)) if dl == fl && dl != "+" && dl != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn any_matches(filters: &[String], topic: &str) -> bool {
    filters.iter().any(|f| filter_matches(f, topic))
}

fn any_covers(filters: &[String], filter: &str) -> bool {
    filters.iter().any(|d| filter_covers(d, filter))
}

impl Router {
    pub fn new(router_id: impl Into<String>, config: RouterConfig) -> Router {
        Router {
            id: router_id.into(),
            config,
            links: BTreeMap::new(),
            local: BTreeMap::new(),
            learned: BTreeMap::new(),
            remote_filters: BTreeMap::new(),
            by_origin: HashMap::new(),
            dedup: BTreeMap::new(),
            plans: TopicMap::default(),
            local_wants: TopicMap::default(),
            tick: 0,
            counters: RouterCounters::default(),
            holds_touched: false,
            hold_down: Duration::ZERO,
            now: None,
            withdrawn: BTreeMap::new(),
            policy_denied: BTreeMap::new(),
        }
    }

    /// Events each link policy rule refused, by peer: (peer, refusal,
    /// events), ordered.
    pub fn policy_denied(&self) -> impl Iterator<Item = (&str, &Refusal, u64)> {
        self.policy_denied
            .iter()
            .map(|((peer, refusal), &n)| (peer.as_str(), refusal, n))
    }

    /// Counts one event `refusal` kept off `link` (its `denied_*` counter
    /// and the rule's audit entry).
    pub(super) fn count_refusal(&mut self, link: LinkId, refusal: Refusal) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        match refusal.direction {
            Direction::Export => l.counters.denied_export += 1,
            Direction::Import => l.counters.denied_import += 1,
        }
        let key = (l.peer.clone(), refusal);
        let full = self.policy_denied.len() >= POLICY_AUDIT_ENTRIES_MAX;
        match self.policy_denied.get_mut(&key) {
            Some(n) => *n += 1,
            None if !full => {
                self.policy_denied.insert(key, 1);
            }
            None => {}
        }
    }

    pub fn router_id(&self) -> &str {
        &self.id
    }

    pub fn counters(&self) -> RouterCounters {
        self.counters
    }

    pub fn link_counters(&self, link: LinkId) -> Option<LinkCounters> {
        self.links.get(&link).map(|l| l.counters)
    }

    /// The neighbour's router id, while the link is up.
    pub fn link_peer(&self, link: LinkId) -> Option<&str> {
        self.links.get(&link).map(|l| l.peer.as_str())
    }

    /// (entries learned over the link, entries advertised to it).
    pub fn link_interest(&self, link: LinkId) -> (usize, usize) {
        let learned = self
            .learned
            .values()
            .filter(|routes| routes.contains_key(&link))
            .count();
        let advertised = self.links.get(&link).map_or(0, |l| l.advertised.len());
        (learned, advertised)
    }

    /// Distinct (filter, origin) entries held, local ones included.
    pub fn interest_entries(&self) -> usize {
        self.local.len() + self.learned.len()
    }

    /// The best (distance from this router, link) towards `origin`'s
    /// interest in `filter`, if any.
    pub fn best_route(&self, filter: &str, origin: &str) -> Option<(u16, LinkId)> {
        self.learned
            .get(&(filter.to_owned(), origin.to_owned()))
            .and_then(|routes| best_of(routes, &self.links))
    }

    /// A link came up with the default (allow everything) policy.
    pub fn link_up(&mut self, link: LinkId, peer_id: &str, out: &mut Vec<Action>) {
        self.link_up_with_policy(link, peer_id, LinkPolicy::default(), out)
    }

    /// A link came up: sends it the whole current table. A link id already
    /// up is taken down first.
    pub fn link_up_with_policy(
        &mut self,
        link: LinkId,
        peer_id: &str,
        policy: LinkPolicy,
        out: &mut Vec<Action>,
    ) {
        if self.links.contains_key(&link) {
            self.link_down(link, out);
        }
        self.plans.clear();
        self.links.insert(
            link,
            Link {
                peer: peer_id.to_owned(),
                held: false,
                policy,
                counters: LinkCounters::default(),
                advertised: BTreeMap::new(),
            },
        );
        let keys: Vec<Key> = self
            .local
            .keys()
            .map(|f| (f.clone(), self.id.clone()))
            .chain(self.learned.keys().cloned())
            .collect();
        for key in keys {
            self.sync_link(&key, link, out);
        }
        // The peer is back: what its held links keep ranks lower now.
        self.resync_held_of(peer_id, out);
    }

    /// A link went down: forgets what was learned over it and updates the
    /// other links.
    pub fn link_down(&mut self, link: LinkId, out: &mut Vec<Action>) {
        let Some(gone_link) = self.links.remove(&link) else {
            return;
        };
        self.plans.clear();
        let mut affected = Vec::new();
        let mut gone = Vec::new();
        self.learned.retain(|key, routes| {
            if routes.remove(&link).is_some() {
                affected.push(key.clone());
                if routes.is_empty() {
                    gone.push(key.clone());
                }
            }
            !routes.is_empty()
        });
        for key in gone {
            self.unindex(&key);
            if !self.held_down(&key) {
                self.forget_filter(&key.0, out);
            }
        }
        for key in affected {
            self.sync_all(&key, out);
        }
        if !gone_link.held {
            self.resync_held_of(&gone_link.peer, out);
        }
    }

    /// One more local subscriber of `filter`.
    pub fn local_subscribe(
        &mut self,
        filter: &str,
        out: &mut Vec<Action>,
    ) -> Result<(), RouteError> {
        validate_filter(filter, &self.config.topic_limits)
            .map_err(|_| RouteError::BadFilter(filter.to_owned()))?;
        if let Some(count) = self.local.get_mut(filter) {
            *count += 1;
            return Ok(());
        }
        if self.interest_entries() >= self.config.interest_entries_max {
            return Err(RouteError::TableFull(self.config.interest_entries_max));
        }
        self.local.insert(filter.to_owned(), 1);
        self.sync_all(&(filter.to_owned(), self.id.clone()), out);
        Ok(())
    }

    /// One local subscriber of `filter` fewer. Unknown filters are ignored.
    pub fn local_unsubscribe(&mut self, filter: &str, out: &mut Vec<Action>) {
        let Some(count) = self.local.get_mut(filter) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.local.remove(filter);
            self.sync_all(&(filter.to_owned(), self.id.clone()), out);
        }
    }

    /// A message arrived over `link`.
    pub fn on_message(&mut self, link: LinkId, msg: LinkMsg, out: &mut Vec<Action>) {
        if self.links.get(&link).is_none_or(|l| l.held) {
            self.counters.unknown_link += 1;
            return;
        }
        match msg {
            LinkMsg::InterestAdd {
                filter,
                origin,
                distance,
            } => self.on_interest_add(link, filter, origin, distance, out),
            LinkMsg::InterestRemove { filter, origin } => {
                self.unlearn(&(filter, origin), link, out);
            }
            LinkMsg::Event(copy) => self.on_event(link, copy, out),
        }
    }
}

/// Best (distance from us, link) among a learned entry's routes (see
/// [`route_rank`]); a held route counts at least [`HELD_DISTANCE`].
fn best_of(
    routes: &BTreeMap<LinkId, u16>,
    links: &BTreeMap<LinkId, Link>,
) -> Option<(u16, LinkId)> {
    routes
        .iter()
        .map(|(&l, &d)| route_rank(d.saturating_add(1), l, links))
        .filter(|&(d, _, _)| d <= DISTANCE_MAX)
        .min()
        .map(|(d, _, l)| (d, l))
}

/// How routes compare: by distance (a held link's at least
/// [`HELD_DISTANCE`]), then live before held, then link id.
/// Held routes are neither deleted by a live one nor simply ranked below
/// every live one: two routers that each held a route learnt the other's
/// (itself resting on a held link), withdrew their own by split horizon
/// and were left with none; restored, they would oscillate (found by the
/// mesh sim, seed 65). A held link as a long path, announced on as such,
/// is a metric every router computes alike (monotone: a longer path never
/// counts as shorter), which a distance vector converges on; and a router
/// whose live paths to a router all went (a partition) still has the held
/// one (seed 17).
fn route_rank(distance: u16, link: LinkId, links: &BTreeMap<LinkId, Link>) -> (u16, bool, LinkId) {
    let Some(l) = links.get(&link).filter(|l| l.held) else {
        return (distance, false, link);
    };
    // Held links are few and short-lived: this scan costs only then.
    let back = links.values().any(|o| !o.held && o.peer == l.peer);
    let floor = if back {
        RETURNED_DISTANCE
    } else {
        HELD_DISTANCE
    };
    (distance.max(floor), true, link)
}

mod events;
pub mod explain;
mod fast;
pub use fast::{Arrival, CopyRef};
mod holds;
mod policy;
pub use policy::{Direction, LinkPolicy, Refusal, NOT_ALLOWED};
mod interest;
#[cfg(test)]
mod tests;
