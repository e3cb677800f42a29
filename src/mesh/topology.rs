//! The mesh as a graph: a link-state database, one record per router,
//! flooded over the links (sans-IO: links, records and `now` in, records
//! to send out).
//!
//! Each router originates a record of its own links (peer, state, TLS,
//! round trip, counters; [`LinkReport`]): at once when a link's state
//! changes (but at most once per [`ORIGINATE_INTERVAL_MIN`]), and every
//! `mesh.topology_refresh_ms` anyway. A record received that is newer
//! (by sequence number) than the one held from its origin is stored and
//! sent on every other link; one that is not newer goes no further, so
//! flooding ends however the links form loops: each (origin, seq) crosses
//! each link at most once in each direction. A link that comes up gets
//! the whole database at once.
//!
//! Sequence numbers: the runtime starts them at its start time in ms
//! shifted left 16 bits, so that a restarted router's records are newer
//! than those of its former life that peers still hold (it would take
//! 65,536 originations per ms of uptime to catch up). Should a router
//! meet its own record with a higher number (its clock went back), it
//! re-originates above it.
//!
//! Records carry their age; a record is dropped once it is
//! `mesh.topology_expiry_ms` old (counted from its origination, so a
//! copy passed on at a link-up does not live longer): a router that
//! falls silent or is cut off leaves the graph within that time.
//!
//! Bounds: at most `mesh.topology_routers_max` records (this router's
//! own included; a new router's record beyond it is refused, counted and
//! its origin not flooded on), at most `mesh.links_max` links per record
//! (a record with more is refused; this router's own is cut to the up
//! links first). Cost: a record is about 100 bytes a link; every router
//! floods its own every refresh, so each link carries about (routers ×
//! record size) per refresh in each direction.
//!
//! Written by hand: the records and their flooding are this link
//! protocol's (OSPF's idea, none of its packet formats). Must not touch:
//! sockets, timers, the routing core; `shard::bridge` runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::link::{valid_router_id, Frame, LinkState, TopologyLink, TopologyRecord};
use super::route::LinkId;

/// Two originations are at least this far apart: a link that flaps
/// cannot flood the mesh faster.
pub const ORIGINATE_INTERVAL_MIN: Duration = Duration::from_millis(50);

/// From `[mesh]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopologyLimits {
    /// `mesh.topology_refresh_ms`.
    pub refresh: Duration,
    /// `mesh.topology_expiry_ms`.
    pub expiry: Duration,
    /// `mesh.topology_routers_max`.
    pub routers_max: usize,
    /// `mesh.links_max`.
    pub links_max: usize,
}

/// One link of a router, as that router reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub peer: String,
    pub state: LinkState,
    pub tls: bool,
    pub rtt_us: Option<u64>,
    pub events_in: u64,
    pub events_out: u64,
    pub dropped: u64,
}

impl LinkReport {
    /// What a change of originates a record at once (counters wait for
    /// the refresh).
    fn shape(&self) -> (&str, LinkState, bool) {
        (&self.peer, self.state, self.tls)
    }
}

/// One router's record, as held here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub origin: String,
    pub seq: u64,
    /// When its origin made it (by this router's clock: now less the age
    /// it arrived with).
    pub originated: Instant,
    /// Sorted by peer, each peer once.
    pub links: Vec<LinkReport>,
}

impl Record {
    /// The record as a TOPOLOGY frame sent at `now`.
    pub fn frame(&self, now: Instant) -> Frame<'_> {
        let age = now.saturating_duration_since(self.originated).as_millis();
        Frame::Topology(TopologyRecord {
            origin: &self.origin,
            seq: self.seq,
            age_ms: u32::try_from(age).unwrap_or(u32::MAX),
            links: self
                .links
                .iter()
                .map(|l| TopologyLink {
                    peer: &l.peer,
                    state: l.state,
                    tls: l.tls,
                    rtt_us: l.rtt_us,
                    events_in: l.events_in,
                    events_out: l.events_out,
                    dropped: l.dropped,
                })
                .collect(),
        })
    }

    /// Age at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.originated)
    }
}

/// Why a received record was refused (the link stays; the record goes no
/// further). The `Display` form is the log line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopologyError {
    #[error("topology record refused: invalid origin router id {0:?}")]
    BadOrigin(String),
    #[error("topology record of {origin:?} refused: invalid peer router id {peer:?}")]
    BadPeer { origin: String, peer: String },
    #[error("topology record of {origin:?} refused: it lists a link to itself")]
    SelfLink { origin: String },
    #[error(
        "topology record of {origin:?} refused: links not sorted by peer, or a peer listed twice"
    )]
    NotCanonical { origin: String },
    #[error(
        "topology record of {origin:?} refused: {count} links, more than mesh.links_max ({limit})"
    )]
    TooManyLinks {
        origin: String,
        count: usize,
        limit: usize,
    },
    #[error(
        "topology record of new router {origin:?} refused: mesh.topology_routers_max ({limit}) \
         records held"
    )]
    RoutersMax { origin: String, limit: usize },
}

/// What became of a received record that was no error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Newer than the one held: stored and sent on.
    New,
    /// Held already, or older than the one held: dropped (this is where
    /// flooding ends).
    Duplicate,
    /// Past `mesh.topology_expiry_ms` already: dropped.
    Expired,
    /// This router's own, from a former life, numbered above its current
    /// one: this router re-originated above it.
    OwnNewer,
}

/// A record to send on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub link: LinkId,
    pub record: Arc<Record>,
}

/// Counts for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopologyCounters {
    pub originated: u64,
    pub received: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub expired: u64,
}

/// What the admin endpoint shows: this router's record (its links as last
/// reported, not only as last sent) first, then the others by id.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub router_id: String,
    pub own: Arc<Record>,
    pub others: Vec<Arc<Record>>,
}

/// This router's view of the mesh and its part in flooding it.
#[derive(Debug)]
pub struct TopologyDb {
    router_id: String,
    limits: TopologyLimits,
    seq: u64,
    /// As last originated (what the peers hold).
    own: Arc<Record>,
    /// As last reported (the admin view).
    own_latest: Arc<Record>,
    /// A link changed state since the last origination.
    change_pending: bool,
    next_refresh: Instant,
    /// Every other router's record, by origin.
    records: BTreeMap<String, Arc<Record>>,
    links: BTreeSet<LinkId>,
    /// Bumped on every change of what [`Self::snapshot`] shows.
    generation: u64,
    counters: TopologyCounters,
}

impl TopologyDb {
    /// `first_seq`: the start time in ms << 16 (see the module comment).
    pub fn new(router_id: &str, first_seq: u64, limits: TopologyLimits, now: Instant) -> Self {
        let own = Arc::new(Record {
            origin: router_id.to_owned(),
            seq: first_seq,
            originated: now,
            links: Vec::new(),
        });
        TopologyDb {
            router_id: router_id.to_owned(),
            limits,
            seq: first_seq,
            own_latest: own.clone(),
            own,
            change_pending: false,
            next_refresh: now + limits.refresh,
            records: BTreeMap::new(),
            links: BTreeSet::new(),
            generation: 0,
            counters: TopologyCounters::default(),
        }
    }

    pub fn counters(&self) -> TopologyCounters {
        self.counters
    }

    /// Changes with every change of [`Self::snapshot`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The sequence number of this router's last origination.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record held from `origin` (this router's own as last sent).
    pub fn record(&self, origin: &str) -> Option<&Arc<Record>> {
        if origin == self.router_id {
            Some(&self.own)
        } else {
            self.records.get(origin)
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            router_id: self.router_id.clone(),
            own: self.own_latest.clone(),
            others: self.records.values().cloned().collect(),
        }
    }

    /// A link came up: it gets the whole database.
    pub fn link_up(&mut self, link: LinkId, now: Instant, out: &mut Vec<Send>) {
        self.expire(now);
        self.links.insert(link);
        out.push(Send {
            link,
            record: self.own.clone(),
        });
        for record in self.records.values() {
            out.push(Send {
                link,
                record: record.clone(),
            });
        }
    }

    pub fn link_down(&mut self, link: LinkId) {
        self.links.remove(&link);
    }

    /// This router's links now (any order; a peer listed twice, as when
    /// both routers dial each other, is merged). A change of a link's
    /// state originates a record (see the module comment).
    pub fn set_own_links(&mut self, links: Vec<LinkReport>, now: Instant, out: &mut Vec<Send>) {
        let links = self.normalize(links);
        if links != self.own_latest.links {
            if links
                .iter()
                .map(LinkReport::shape)
                .ne(self.own.links.iter().map(LinkReport::shape))
            {
                self.change_pending = true;
            }
            self.own_latest = Arc::new(Record {
                links,
                ..(*self.own_latest).clone()
            });
            self.generation += 1;
        }
        self.originate_if_due(now, out);
    }

    /// Sorted by peer, each peer once (the best state wins, counters are
    /// summed), without itself or invalid ids, at most `links_max` (up
    /// links kept first).
    fn normalize(&self, mut links: Vec<LinkReport>) -> Vec<LinkReport> {
        links.retain(|l| l.peer != self.router_id && valid_router_id(&l.peer));
        links.sort_by(|a, b| (&a.peer, a.state).cmp(&(&b.peer, b.state)));
        let mut merged: Vec<LinkReport> = Vec::with_capacity(links.len());
        for l in links {
            match merged.last_mut() {
                Some(m) if m.peer == l.peer => {
                    m.events_in += l.events_in;
                    m.events_out += l.events_out;
                    m.dropped += l.dropped;
                }
                _ => merged.push(l),
            }
        }
        if merged.len() > self.limits.links_max {
            merged.sort_by_key(|l| l.state);
            merged.truncate(self.limits.links_max);
            merged.sort_by(|a, b| a.peer.cmp(&b.peer));
        }
        merged
    }

    fn originate_if_due(&mut self, now: Instant, out: &mut Vec<Send>) {
        let change_due = self.change_pending && now >= self.own.originated + ORIGINATE_INTERVAL_MIN;
        if change_due || now >= self.next_refresh {
            self.originate(now, out);
        }
    }

    fn originate(&mut self, now: Instant, out: &mut Vec<Send>) {
        self.seq += 1;
        let record = Arc::new(Record {
            origin: self.router_id.clone(),
            seq: self.seq,
            originated: now,
            links: self.own_latest.links.clone(),
        });
        self.own = record.clone();
        self.own_latest = record.clone();
        self.change_pending = false;
        self.next_refresh = now + self.limits.refresh;
        self.generation += 1;
        self.counters.originated += 1;
        for &link in &self.links {
            out.push(Send {
                link,
                record: record.clone(),
            });
        }
    }

    /// A record arrived over `from`.
    pub fn on_record(
        &mut self,
        from: LinkId,
        frame: &TopologyRecord<'_>,
        now: Instant,
        out: &mut Vec<Send>,
    ) -> Result<Received, TopologyError> {
        self.counters.received += 1;
        let checked = self.check(frame);
        if checked.is_err() {
            self.counters.refused += 1;
        }
        checked?;
        let age = Duration::from_millis(u64::from(frame.age_ms));
        if age >= self.limits.expiry {
            self.counters.expired += 1;
            return Ok(Received::Expired);
        }
        if frame.origin == self.router_id {
            if frame.seq > self.seq {
                self.seq = frame.seq;
                self.originate(now, out);
                return Ok(Received::OwnNewer);
            }
            self.counters.duplicates += 1;
            return Ok(Received::Duplicate);
        }
        match self.records.get(frame.origin) {
            Some(held) if held.seq >= frame.seq => {
                self.counters.duplicates += 1;
                return Ok(Received::Duplicate);
            }
            Some(_) => {}
            None => {
                // This router's own record is one of them.
                if self.records.len() + 1 >= self.limits.routers_max {
                    self.counters.refused += 1;
                    return Err(TopologyError::RoutersMax {
                        origin: frame.origin.to_owned(),
                        limit: self.limits.routers_max,
                    });
                }
            }
        }
        let record = Arc::new(Record {
            origin: frame.origin.to_owned(),
            seq: frame.seq,
            originated: now.checked_sub(age).unwrap_or(now),
            links: frame
                .links
                .iter()
                .map(|l| LinkReport {
                    peer: l.peer.to_owned(),
                    state: l.state,
                    tls: l.tls,
                    rtt_us: l.rtt_us,
                    events_in: l.events_in,
                    events_out: l.events_out,
                    dropped: l.dropped,
                })
                .collect(),
        });
        self.records.insert(record.origin.clone(), record.clone());
        self.generation += 1;
        for &link in self.links.iter().filter(|&&l| l != from) {
            out.push(Send {
                link,
                record: record.clone(),
            });
        }
        Ok(Received::New)
    }

    fn check(&self, frame: &TopologyRecord<'_>) -> Result<(), TopologyError> {
        let origin = || frame.origin.to_owned();
        if !valid_router_id(frame.origin) {
            return Err(TopologyError::BadOrigin(origin()));
        }
        if frame.links.len() > self.limits.links_max {
            return Err(TopologyError::TooManyLinks {
                origin: origin(),
                count: frame.links.len(),
                limit: self.limits.links_max,
            });
        }
        for (i, l) in frame.links.iter().enumerate() {
            if !valid_router_id(l.peer) {
                return Err(TopologyError::BadPeer {
                    origin: origin(),
                    peer: l.peer.to_owned(),
                });
            }
            if l.peer == frame.origin {
                return Err(TopologyError::SelfLink { origin: origin() });
            }
            if i > 0 && frame.links[i - 1].peer >= l.peer {
                return Err(TopologyError::NotCanonical { origin: origin() });
            }
        }
        Ok(())
    }

    /// Time passed: the refresh, a change held back by
    /// [`ORIGINATE_INTERVAL_MIN`], records past their expiry.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Send>) {
        self.originate_if_due(now, out);
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        let expiry = self.limits.expiry;
        let before = self.records.len();
        self.records.retain(|_, r| r.age(now) < expiry);
        let expired = before - self.records.len();
        if expired > 0 {
            self.counters.expired += expired as u64;
            self.generation += 1;
        }
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn next_deadline(&self) -> Instant {
        let mut at = self.next_refresh;
        if self.change_pending {
            at = at.min(self.own.originated + ORIGINATE_INTERVAL_MIN);
        }
        if let Some(oldest) = self.records.values().map(|r| r.originated).min() {
            at = at.min(oldest + self.limits.expiry);
        }
        at
    }
}

#[cfg(test)]
mod tests;
