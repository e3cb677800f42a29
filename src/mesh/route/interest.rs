//! The routing core's interest half: learning and forgetting what peers
//! want (`on_interest_add`, unlearn, forget) and telling each link what
//! this router wants (`sync_*`, split horizon in `wanted`).
//! Split from `route.rs` by concern (a move); the state is `Router`'s.

use super::*;

impl Router {
    pub(super) fn on_interest_add(
        &mut self,
        link: LinkId,
        filter: String,
        origin: String,
        distance: u16,
        out: &mut Vec<Action>,
    ) {
        if origin == self.id {
            return;
        }
        if origin.is_empty() || validate_filter(&filter, &self.config.topic_limits).is_err() {
            self.counters.bad_interest += 1;
            return;
        }
        let key = (filter, origin);
        let denied = any_covers(&self.links[&link].policy.export_deny, key_parts(&key.0).1);
        if denied || distance >= DISTANCE_MAX {
            // Unreachable (or unusable) over this link: same as a withdraw.
            self.unlearn(&key, link, out);
            return;
        }
        if !self.learned.contains_key(&key) {
            if self.interest_entries() >= self.config.interest_entries_max {
                self.counters.interest_rejected += 1;
                return;
            }
            self.learned.insert(key.clone(), BTreeMap::new());
            self.by_origin
                .entry(key.1.clone())
                .or_default()
                .insert(key.0.clone());
            // Back within its hold-down: `remote_filters` still counts it.
            if self.withdrawn.remove(&key).is_none() {
                let count = self.remote_filters.entry(key.0.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    out.push(Action::RemoteInterest {
                        filter: key.0.clone(),
                        present: true,
                    });
                }
            }
        }
        let routes = self.learned.get_mut(&key).expect("inserted above");
        let mut changed = routes.insert(link, distance) != Some(distance);
        // The peer's own word on a new link replaces what its held links
        // kept for this entry, when it is as short as before: the same
        // route, back. A longer one may rest on what the peer learnt since
        // from routers whose own routes rest on its held links (a restarted
        // peer), and go when they do: the held route then stays, as a last
        // resort (see `route_rank`; found by the mesh sim, seed 3505). Held
        // links of other peers keep theirs: they compete by distance.
        let links = &self.links;
        let peer = &links[&link].peer;
        let before = routes.len();
        routes.retain(|l, held_distance| {
            !links
                .get(l)
                .is_some_and(|l| l.held && l.peer == *peer && distance <= *held_distance)
        });
        if routes.len() != before {
            changed = true;
            self.holds_touched = true;
        }
        if changed {
            self.sync_all(&key, out);
        }
    }

    /// Drops a learned entry from the origin index.
    pub(super) fn unindex(&mut self, key: &Key) {
        if let Some(filters) = self.by_origin.get_mut(&key.1) {
            filters.remove(&key.0);
            if filters.is_empty() {
                self.by_origin.remove(&key.1);
            }
        }
    }

    /// Forgets the route to `key` over `link`, and the entry if that was
    /// its last route.
    pub(super) fn unlearn(&mut self, key: &Key, link: LinkId, out: &mut Vec<Action>) {
        let Some(routes) = self.learned.get_mut(key) else {
            return;
        };
        if routes.remove(&link).is_none() {
            return;
        }
        if routes.is_empty() {
            self.learned.remove(key);
            self.unindex(key);
            if !self.held_down(key) {
                self.forget_filter(&key.0, out);
            }
        }
        self.sync_all(key, out);
    }

    /// One learned entry of `filter` fewer.
    pub(super) fn forget_filter(&mut self, filter: &str, out: &mut Vec<Action>) {
        if let Some(count) = self.remote_filters.get_mut(filter) {
            *count -= 1;
            if *count == 0 {
                self.remote_filters.remove(filter);
                out.push(Action::RemoteInterest {
                    filter: filter.to_owned(),
                    present: false,
                });
            }
        }
    }

    pub(super) fn sync_all(&mut self, key: &Key, out: &mut Vec<Action>) {
        // The table changed for this key: the plans of the topics it
        // matches may have.
        self.invalidate(&key.0);
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| !l.held)
            .map(|(&id, _)| id)
            .collect();
        for link in links {
            self.sync_link(key, link, out);
        }
    }

    /// Forgets the cached plans (and local-interest answers) of the topics
    /// `key`'s filter matches: only those can change when its entry does.
    /// A filter without wildcards names its one topic; one with wildcards
    /// costs a scan of the caches (at most PLANS_MAX each), far less than
    /// re-planning every hot topic after every interest change.
    pub(super) fn invalidate(&mut self, key: &str) {
        let (_, filter) = key_parts(key);
        if filter.contains(['+', '#']) {
            self.plans.retain(|topic, _| !filter_matches(filter, topic));
            self.local_wants
                .retain(|topic, _| !filter_matches(filter, topic));
        } else {
            self.plans.remove(filter);
            self.local_wants.remove(filter);
        }
    }

    /// Brings what `link` has been told about `key` in line with the table.
    pub(super) fn sync_link(&mut self, key: &Key, link: LinkId, out: &mut Vec<Action>) {
        let want = self.wanted(key, link);
        let l = self.links.get_mut(&link).expect("link is up");
        let have = l.advertised.get(key).copied();
        if want == have {
            return;
        }
        // In the peer's topic space (an import prefix stripped); `wanted`
        // is None for filters that have no form there.
        let filter = strip_prefix_key(&l.policy.import_prefix, &key.0).unwrap_or_default();
        let msg = match want {
            Some(distance) => {
                l.advertised.insert(key.clone(), distance);
                LinkMsg::InterestAdd {
                    filter,
                    origin: key.1.clone(),
                    distance,
                }
            }
            None => {
                l.advertised.remove(key);
                LinkMsg::InterestRemove {
                    filter,
                    origin: key.1.clone(),
                }
            }
        };
        out.push(Action::Send { link, msg });
    }

    /// The distance `link` should be told for `key`, if any.
    pub(super) fn wanted(&self, key: &Key, link: LinkId) -> Option<u16> {
        let l = &self.links[&link];
        let theirs = strip_prefix_key(&l.policy.import_prefix, &key.0)?;
        if any_covers(&l.policy.import_deny, key_parts(&theirs).1) {
            return None;
        }
        if key.1 == self.id {
            return self.local.contains_key(&key.0).then_some(0);
        }
        let (d, via) = self
            .learned
            .get(key)
            .and_then(|routes| best_of(routes, &self.links))?;
        // Split horizon by peer, not by link: while a peer's held link
        // and its new link coexist, what was learned over the held one is
        // not told back over the new one (the peer would route through us
        // to routers only it leads to: found by the mesh sim, seed 3).
        let same_peer = self.links.get(&via).is_some_and(|v| v.peer == l.peer);
        (via != link && !same_peer && d <= DISTANCE_MAX).then_some(d)
    }
}
