//! The routing core's holds: a link down whose peer is expected back keeps
//! its routes (`link_hold`) until the peer announces them again
//! (`release_held`, `end_empty_holds`) or the hold expires (the runtime's
//! `link_down`); how held routes rank is `route_rank` in `route.rs`.
//! And hold-downs: an entry whose last route went stays a destination of
//! this router's own events for a while (`set_interest_hold_down`,
//! `advance`), so that an event published while routes reconverge is
//! parked rather than sent to no one.
//! Split from `route.rs` by concern (a move); the state is `Router`'s.

use super::*;

impl Router {
    /// The keys `peer`'s held links have routes for, synced again (their
    /// rank depends on whether the peer is back: see `route_rank`).
    pub(super) fn resync_held_of(&mut self, peer: &str, out: &mut Vec<Action>) {
        let held: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.held && l.peer == peer)
            .map(|(&id, _)| id)
            .collect();
        if held.is_empty() {
            return;
        }
        self.plans.clear();
        let keys: Vec<Key> = self
            .learned
            .iter()
            .filter(|(_, routes)| held.iter().any(|h| routes.contains_key(h)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.sync_all(&key, out);
        }
    }

    /// A link went down, to be held: its routes stay, each counted at
    /// least [`HELD_DISTANCE`] links away, so that a shorter live path
    /// takes over at once (a ring fails over) while routers
    /// reachable only through this link stay reachable: events for them
    /// are still sent to it (the runtime keeps QoS 1 copies for the
    /// peer's return) and other routers still send them here. When the
    /// live path is withdrawn later (it went through the same failure, as
    /// in a partition), the held route is there again. The peer's own
    /// announcements on its new link replace the routes it had here
    /// ([`Router::on_message`]); [`Router::link_down`] (on expiry) or the
    /// peer's return ([`Router::release_held`], once the new link has
    /// carried its table) ends the hold.
    /// False if nothing was held (the link is then down for good).
    pub fn link_hold(&mut self, link: LinkId, out: &mut Vec<Action>) -> bool {
        if !self.links.contains_key(&link) {
            return false;
        }
        self.plans.clear();
        let kept: Vec<Key> = self
            .learned
            .iter()
            .filter(|(_, routes)| routes.contains_key(&link))
            .map(|(key, _)| key.clone())
            .collect();
        if kept.is_empty() {
            self.link_down(link, out);
            return false;
        }
        let l = self.links.get_mut(&link).expect("checked above");
        l.held = true;
        l.advertised.clear();
        let peer = l.peer.clone();
        // Their distances (or their best link) changed; and the peer's
        // older held links, if any, no longer have it back.
        for key in kept {
            self.sync_all(&key, out);
        }
        self.resync_held_of(&peer, out);
        true
    }

    /// `peer` is back on a new link and has sent its whole table there:
    /// its held links whose routes it has all announced again there (see
    /// [`Router::on_message`]: the peer's word replaces its held routes)
    /// end; returns them. A held link that still has routes its peer did
    /// not announce again stays held
    /// until [`Router::link_down`] (the hold's expiry): a router that just
    /// restarted has not heard from its own links yet, and the routers
    /// behind it may come back through them (their events wait meanwhile,
    /// here or at the peer).
    pub fn release_held(&mut self, peer: &str, out: &mut Vec<Action>) -> Vec<LinkId> {
        self.end_holds(Some(peer), out)
    }

    pub(super) fn end_holds(&mut self, peer: Option<&str>, out: &mut Vec<Action>) -> Vec<LinkId> {
        let held: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.held && peer.is_none_or(|p| l.peer == p))
            .map(|(&id, _)| id)
            .collect();
        let mut ended = Vec::new();
        for old in held {
            if !self
                .learned
                .values()
                .any(|routes| routes.contains_key(&old))
            {
                self.link_down(old, out);
                ended.push(old);
            }
        }
        ended
    }

    /// Held links (of any peer) with no route left: ended, and returned
    /// (see [`Router::release_held`]).
    pub fn end_empty_holds(&mut self, out: &mut Vec<Action>) -> Vec<LinkId> {
        if !std::mem::take(&mut self.holds_touched) {
            return Vec::new();
        }
        self.end_holds(None, out)
    }

    /// Whether `link` is held (down, its routes kept).
    pub fn is_held(&self, link: LinkId) -> bool {
        self.links.get(&link).is_some_and(|l| l.held)
    }

    /// Holds down withdrawn interest for `hold` (zero, the default: not
    /// at all). While routes reconverge after a failure, every neighbour
    /// may withdraw its route to a router for a moment, though that
    /// router's subscribers are still there; an at-least-once event
    /// published here at that moment would have no destination and be
    /// lost (found by the mesh sim, seeds 8325 and 9941). Held down, the
    /// entry's router stays a destination of this router's own events
    /// (with no route: [`Action::Unroutable`], which the runtime parks
    /// and hands to [`Router::retry`]) and its filter stays in the
    /// remote interest ([`Action::RemoteInterest`] says `present: false`
    /// only at the end), until the entry is learned again or the hold-down
    /// ends ([`Router::advance`]). Needs the runtime's clock: without
    /// [`Router::advance`] nothing is held down.
    pub fn set_interest_hold_down(&mut self, hold: Duration) {
        self.hold_down = hold;
    }

    /// The runtime's clock: call it before the inputs of that moment.
    /// Ends the hold-downs due by `now` (their filters may go from the
    /// remote interest: [`Action::RemoteInterest`]).
    pub fn advance(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.now = Some(now);
        if self.withdrawn.first_key_value().is_none() {
            return;
        }
        let due: Vec<Key> = self
            .withdrawn
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            self.withdrawn.remove(&key);
            self.invalidate(&key.0);
            self.forget_filter(&key.0, out);
        }
    }

    /// `key`'s last route went: held down, if hold-downs are on and there
    /// is room (then its filter stays counted in the remote interest).
    pub(super) fn held_down(&mut self, key: &Key) -> bool {
        let Some(now) = self.now.filter(|_| !self.hold_down.is_zero()) else {
            return false;
        };
        if self.withdrawn.len() >= self.config.interest_entries_max {
            return false;
        }
        self.withdrawn.insert(key.clone(), now + self.hold_down);
        true
    }

    /// Whether `dest` has interest in `topic` here, learned or held down
    /// (`retain`: or stores retained messages).
    pub(super) fn wants_topic(&self, dest: &str, topic: &str, retain: bool) -> bool {
        let wanted = |f: &str| key_matches(f, None, topic) || (retain && f == RETAINED_KEY);
        self.by_origin
            .get(dest)
            .is_some_and(|filters| filters.iter().any(|f| wanted(f)))
            || self.withdrawn.keys().any(|(f, o)| o == dest && wanted(f))
    }
}
