//! The routing core's event half: an event entering the mesh here
//! (`publish*`, retained, groups, retries) and a copy arriving over a link
//! (`on_event`: duplicates, loops, next hops, plans, the actions emitted).
//! Split from `route.rs` by concern (a move); the state is `Router`'s.

use super::*;

impl Router {
    /// An event entered the mesh here.
    pub fn publish(&mut self, topic: &str, event_id: u64, out: &mut Vec<Action>) {
        self.publish_as(topic, event_id, true, &[], 0, out)
    }

    /// An event entered the mesh here. `deliver_local`: false when this
    /// router's plain subscribers already have it (the runtime delivered
    /// it). `groups`: queue groups with no member on this router, each to
    /// be delivered at one other router that has members, chosen by `pick`
    /// (a random number from the runtime) among them.
    pub fn publish_as(
        &mut self,
        topic: &str,
        event_id: u64,
        deliver_local: bool,
        groups: &[&str],
        pick: u64,
        out: &mut Vec<Action>,
    ) {
        let plan = self.cached_plan(topic);
        if deliver_local && plan.deliver_local {
            out.push(Action::Deliver {
                topic: topic.to_owned(),
                id: event_id,
                plain: true,
                groups: Vec::new(),
            });
        }
        let origin = self.id.clone();
        if groups.is_empty() {
            self.emit(&origin, event_id, 0, topic, &plan, None, out);
        } else {
            let dests = plan
                .copies
                .iter()
                .flat_map(|(_, d, _)| d.iter().cloned())
                .collect();
            let group_dests = self.pick_groups(topic, groups, pick);
            self.forward(
                &origin,
                event_id,
                0,
                topic,
                dests,
                group_dests,
                None,
                false,
                out,
            );
        }
    }

    /// The plan of an event entering the mesh here on `topic`, cached
    /// (see `Router::plans`).
    pub(super) fn cached_plan(&mut self, topic: &str) -> Rc<Plan> {
        if let Some(p) = self.plans.get(topic) {
            return p.clone();
        }
        let p = Rc::new(self.plan_publish(topic));
        if self.plans.len() >= PLANS_MAX {
            self.plans.clear();
        }
        self.plans.insert(topic.to_owned(), p.clone());
        p
    }

    /// The plan of an event entering the mesh here on `topic`.
    pub(super) fn plan_publish(&self, topic: &str) -> Plan {
        let dests: BTreeSet<&str> = self
            .learned
            .keys()
            .chain(self.withdrawn.keys())
            .filter(|(f, o)| *o != self.id && key_matches(f, None, topic))
            .map(|(_, o)| o.as_str())
            .collect();
        let dests = dests.into_iter().map(str::to_owned).collect();
        let mut plan = self.plan(topic, dests, Vec::new(), None, false, false);
        plan.deliver_local = self.local.keys().any(|f| key_matches(f, None, topic));
        plan
    }

    /// A retained message entered the mesh here (this router's shards have
    /// stored and delivered it): to every router that stores retained
    /// messages and every router whose interest matches.
    pub fn publish_retained(&mut self, topic: &str, event_id: u64, out: &mut Vec<Action>) {
        let dests: BTreeSet<&str> = self
            .learned
            .keys()
            .chain(self.withdrawn.keys())
            .filter(|(f, o)| *o != self.id && (f == RETAINED_KEY || key_matches(f, None, topic)))
            .map(|(_, o)| o.as_str())
            .collect();
        let dests = dests.into_iter().map(str::to_owned).collect();
        let plan = self.plan(topic, dests, Vec::new(), None, false, true);
        let origin = self.id.clone();
        self.emit(&origin, event_id, 0, topic, &plan, None, out);
    }

    /// One entry of this router's retained store for the peer of `link`
    /// alone (the exchange when a link comes up), within the link's export
    /// policy. False if it may not go (or the link is not up).
    pub fn sync_retained(
        &mut self,
        link: LinkId,
        topic: &str,
        event_id: u64,
        out: &mut Vec<Action>,
    ) -> bool {
        let id = self.id.clone();
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        if l.held {
            return false;
        }
        if let Err(refusal) = l.policy.export_verdict(topic) {
            self.count_refusal(link, refusal);
            return false;
        }
        let l = self.links.get_mut(&link).expect("looked up above");
        l.counters.events_out += 1;
        out.push(Action::Send {
            link,
            msg: LinkMsg::Event(EventCopy {
                origin: id,
                id: event_id,
                hops: 0,
                dests: vec![l.peer.clone()],
                groups: Vec::new(),
                topic: topic.to_owned(),
                retain: true,
            }),
        });
        true
    }

    /// An event entered the mesh here for queue groups only (its plain
    /// subscribers, if any, are served otherwise).
    pub fn publish_groups(
        &mut self,
        topic: &str,
        event_id: u64,
        groups: &[&str],
        pick: u64,
        out: &mut Vec<Action>,
    ) {
        let group_dests = self.pick_groups(topic, groups, pick);
        let origin = self.id.clone();
        self.forward(
            &origin,
            event_id,
            0,
            topic,
            Vec::new(),
            group_dests,
            None,
            false,
            out,
        );
    }

    /// For each group, one other router with members for `topic`.
    pub(super) fn pick_groups(
        &mut self,
        topic: &str,
        groups: &[&str],
        pick: u64,
    ) -> Vec<(String, String)> {
        let mut group_dests = Vec::new();
        for (i, &g) in groups.iter().enumerate() {
            let members: BTreeSet<&str> = self
                .learned
                .keys()
                .filter(|(f, o)| *o != self.id && key_matches(f, Some(g), topic))
                .map(|(_, o)| o.as_str())
                .collect();
            if members.is_empty() {
                self.counters.no_route += 1;
                continue;
            }
            let at = (pick.wrapping_add(i as u64) % members.len() as u64) as usize;
            let router = members.iter().nth(at).expect("in range");
            group_dests.push(((*router).to_owned(), g.to_owned()));
        }
        group_dests
    }

    /// Sends on a copy that came back as [`Action::Unroutable`] (its
    /// `hops` already counts the link it came in on), by the table as it
    /// is now; what still has no route comes back as `Unroutable` again.
    /// No local delivery and no duplicate check: an unroutable copy never
    /// names this router.
    /// A copy of this router's own event (`from` None) parked for a
    /// held-down entry ([`Router::set_interest_hold_down`]) drops the
    /// destinations that no longer want it (the hold-down ended without
    /// the interest coming back), counted in `no_route`.
    pub fn retry(&mut self, mut copy: EventCopy, from: Option<LinkId>, out: &mut Vec<Action>) {
        if from.is_none() {
            let before = copy.dests.len();
            let (topic, retain) = (&copy.topic, copy.retain);
            copy.dests.retain(|d| self.wants_topic(d, topic, retain));
            self.counters.no_route += (before - copy.dests.len()) as u64;
            if copy.dests.is_empty() && copy.groups.is_empty() {
                return;
            }
        }
        // Back where it came from, too, if that is the way now: the
        // tables changed since it was parked (seed 177: it waited for a
        // route that led nowhere else, and was lost).
        let plan = self.plan(
            &copy.topic,
            copy.dests,
            copy.groups,
            None,
            false,
            copy.retain,
        );
        self.emit(
            &copy.origin,
            copy.id,
            copy.hops,
            &copy.topic,
            &plan,
            from,
            out,
        );
    }

    /// The runtime dropped `n` destinations of [`Action::Unroutable`]
    /// copies: counted in `no_route`.
    pub fn count_no_route(&mut self, n: u64) {
        self.counters.no_route += n;
    }

    pub(super) fn on_event(&mut self, link: LinkId, mut copy: EventCopy, out: &mut Vec<Action>) {
        let l = self.links.get_mut(&link).expect("checked by caller");
        l.counters.events_in += 1;
        if copy.origin == self.id {
            // Another router with this id, or this router's own event back
            // through a routing loop while routes reconverge (found by the
            // mesh sim, seed 17): the runtime keeps an at-least-once copy
            // for a route (see `Self::unroutable_loop`).
            self.counters.own_origin += 1;
            let me = self.id.clone();
            copy.dests.retain(|d| *d != me);
            copy.groups.retain(|(d, _)| *d != me);
            self.unroutable_loop(copy, link, out);
            return;
        }
        match self.arrival(link, &copy.topic) {
            Ok(Some(topic)) => copy.topic = topic,
            Ok(None) => {}
            Err(refusal) => {
                self.count_refusal(link, refusal);
                return;
            }
        }
        let mut rest = Vec::with_capacity(copy.dests.len());
        let mut for_me = false;
        for d in copy.dests {
            if d == self.id {
                for_me = true;
            } else {
                rest.push(d);
            }
        }
        let mut rest_groups = Vec::new();
        let mut my_groups = Vec::new();
        for (d, g) in copy.groups {
            if d == self.id {
                my_groups.push(g);
            } else {
                rest_groups.push((d, g));
            }
        }
        let first = for_me && self.first_delivery(&copy.origin, copy.id);
        let plain = first && self.wants_locally(&copy.topic);
        let mut groups = Vec::new();
        for g in my_groups {
            // Its own duplicate window: a group copy may travel apart from
            // the plain one while routes reconverge.
            let tag = format!("{}\u{0}{g}", copy.origin);
            if self.first_delivery(&tag, copy.id)
                && self
                    .local
                    .keys()
                    .any(|f| key_matches(f, Some(&g), &copy.topic))
            {
                groups.push(g);
            }
        }
        // A retained copy for this router is delivered to be stored, even
        // without a subscriber here.
        if plain || !groups.is_empty() || (first && copy.retain) {
            out.push(Action::Deliver {
                topic: copy.topic.clone(),
                id: copy.id,
                plain,
                groups,
            });
        }
        if rest.is_empty() && rest_groups.is_empty() {
            return;
        }
        if copy.hops >= HOPS_MAX {
            self.counters.hops_exceeded += 1;
            copy.dests = rest;
            copy.groups = rest_groups;
            self.unroutable_loop(copy, link, out);
            return;
        }
        rest.sort();
        rest.dedup();
        self.forward(
            &copy.origin,
            copy.id,
            copy.hops + 1,
            &copy.topic,
            rest,
            rest_groups,
            Some(link),
            copy.retain,
            out,
        );
    }

    /// What becomes of a topic arriving over `link` (as the peer sent
    /// it): refused by the link's import policy, or accepted, with the
    /// topic it goes on under when the link has an import prefix
    /// (`Some`). The one place the import rules are applied (events and
    /// route explain).
    pub(super) fn arrival(&self, link: LinkId, topic: &str) -> Result<Option<String>, Refusal> {
        let Some(l) = self.links.get(&link) else {
            return Ok(None);
        };
        l.policy.import_verdict(topic)?;
        Ok((!l.policy.import_prefix.is_empty())
            .then(|| format!("{}{topic}", l.policy.import_prefix)))
    }

    /// A copy that went round a loop (transient in a distance vector while
    /// routes reconverge after a failure): handed back as
    /// [`Action::Unroutable`], so that the runtime parks an at-least-once
    /// copy until the table changes (as for a copy with no route) instead
    /// of acknowledging a copy that reached no one. Its hop count starts
    /// again: a parked copy moves only when the table changed, which a
    /// converging table does a bounded number of times.
    pub(super) fn unroutable_loop(
        &mut self,
        mut copy: EventCopy,
        link: LinkId,
        out: &mut Vec<Action>,
    ) {
        if copy.dests.is_empty() && copy.groups.is_empty() {
            return;
        }
        copy.hops = 0;
        out.push(Action::Unroutable {
            copy,
            from: Some(link),
            looped: true,
        });
    }

    /// Whether this router's plain interest matches `topic` (cached).
    pub(super) fn wants_locally(&mut self, topic: &str) -> bool {
        if let Some(&w) = self.local_wants.get(topic) {
            return w;
        }
        let w = self.local.keys().any(|f| key_matches(f, None, topic));
        if self.local_wants.len() >= PLANS_MAX {
            self.local_wants.clear();
        }
        self.local_wants.insert(topic.to_owned(), w);
        w
    }

    /// Records a local delivery; false if it is a duplicate.
    pub(super) fn first_delivery(&mut self, origin: &str, id: u64) -> bool {
        self.tick += 1;
        // A known origin (nearly every event): one lookup.
        if let Some(w) = self.dedup.get_mut(origin) {
            w.last_used = self.tick;
            if !w.first(id) {
                self.counters.duplicates += 1;
                return false;
            }
            return true;
        }
        if !self.dedup.contains_key(origin) && self.dedup.len() >= self.config.dedup_origins_max {
            let oldest = self
                .dedup
                .iter()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(o, _)| o.clone());
            if let Some(o) = oldest {
                self.dedup.remove(&o);
            }
        }
        if !self.dedup.contains_key(origin) {
            let w = DedupWindow::new(self.config.dedup_window);
            self.dedup.insert(origin.to_owned(), w);
        }
        let w = self.dedup.get_mut(origin).expect("inserted above");
        w.last_used = self.tick;
        if !w.first(id) {
            self.counters.duplicates += 1;
            return false;
        }
        true
    }

    /// The next hop towards `dest`'s interest in `topic` (within `group`,
    /// if any): (best over every link, best over the links policy allows).
    pub(super) fn next_hop(
        &self,
        dest: &str,
        group: Option<&str>,
        topic: &str,
        from: Option<LinkId>,
        avoid_peer: bool,
        retain: bool,
    ) -> (Option<Route>, Option<Route>) {
        let mut best_any: Option<(u16, bool, LinkId)> = None;
        let mut best_ok: Option<(u16, bool, LinkId)> = None;
        let Some(filters) = self.by_origin.get(dest) else {
            return (None, None);
        };
        // With `avoid_peer`, never back to the router the copy came from,
        // over any of its links: a held link's copies go to the peer's new
        // link (found by the mesh sim, seed 1028: a copy sent back that
        // way bounced between two routers). A parked copy tried again may
        // go back: the tables changed since, and that may be the way now
        // (seed 177: it waited for a route that led nowhere else).
        let from_peer = from
            .filter(|_| avoid_peer)
            .and_then(|f| self.links.get(&f))
            .map(|l| l.peer.as_str());
        for filter in filters {
            let wanted = key_matches(filter, group, topic)
                || (retain && group.is_none() && filter == RETAINED_KEY);
            if !wanted {
                continue;
            }
            let Some(routes) = self.learned.get(&(filter.clone(), dest.to_owned())) else {
                continue;
            };
            for (&link, &d) in routes {
                if Some(link) == from || from_peer.is_some_and(|p| self.links[&link].peer == p) {
                    continue;
                }
                let c = route_rank(d.saturating_add(1), link, &self.links);
                if best_any.is_none_or(|b| c < b) {
                    best_any = Some(c);
                }
                if self.links[&link].policy.export_permitted(topic) && best_ok.is_none_or(|b| c < b)
                {
                    best_ok = Some(c);
                }
            }
        }
        // (distance from this router, link).
        let route = |(d, _, l): (u16, bool, LinkId)| (d, l);
        (best_any.map(route), best_ok.map(route))
    }

    /// Sends `dests` and `groups` on by their next hops, one copy per next
    /// hop (plain destinations split into chunks of `dests_max`; the group
    /// destinations ride in the first).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        origin: &str,
        id: u64,
        hops: u8,
        topic: &str,
        dests: Vec<String>,
        groups: Vec<(String, String)>,
        from: Option<LinkId>,
        retain: bool,
        out: &mut Vec<Action>,
    ) {
        let plan = self.plan(topic, dests, groups, from, true, retain);
        self.emit(origin, id, hops, topic, &plan, from, out);
    }

    /// Groups destinations by next hop (see `forward`).
    pub(super) fn plan(
        &self,
        topic: &str,
        dests: Vec<String>,
        groups: Vec<(String, String)>,
        from: Option<LinkId>,
        avoid_peer: bool,
        retain: bool,
    ) -> Plan {
        type Copies = (Vec<String>, Vec<(String, String)>);
        let mut by_hop: BTreeMap<LinkId, Copies> = BTreeMap::new();
        let mut denied: BTreeSet<LinkId> = BTreeSet::new();
        let mut plan = Plan {
            retain,
            ..Plan::default()
        };
        let targets = dests
            .into_iter()
            .map(|d| (d, None))
            .chain(groups.into_iter().map(|(d, g)| (d, Some(g))));
        for (dest, group) in targets {
            let (best_any, best_ok) =
                self.next_hop(&dest, group.as_deref(), topic, from, avoid_peer, retain);
            if let Some((_, l)) = best_any {
                if best_ok.map(|(_, k)| k) != Some(l) {
                    denied.insert(l);
                }
            }
            match (best_ok, group) {
                (Some((_, l)), None) => by_hop.entry(l).or_default().0.push(dest),
                (Some((_, l)), Some(g)) => by_hop.entry(l).or_default().1.push((dest, g)),
                (None, _) if best_any.is_some() => plan.no_route += 1,
                (None, None) => plan.unrouted.0.push(dest),
                (None, Some(g)) => plan.unrouted.1.push((dest, g)),
            }
        }
        plan.denied = denied.into_iter().collect();
        let chunk = self.config.dests_max.max(1);
        for (link, (dests, mut groups)) in by_hop {
            let mut parts: Vec<&[String]> = dests.chunks(chunk).collect();
            if parts.is_empty() {
                parts.push(&[]);
            }
            for part in parts {
                plan.copies
                    .push((link, part.to_vec(), std::mem::take(&mut groups)));
            }
        }
        plan
    }

    /// Counts and sends what `plan` says; what it could not route goes
    /// back to the runtime as [`Action::Unroutable`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
        &mut self,
        origin: &str,
        id: u64,
        hops: u8,
        topic: &str,
        plan: &Plan,
        from: Option<LinkId>,
        out: &mut Vec<Action>,
    ) {
        self.emit_counted(Some(origin), id, hops, topic, plan, from, out);
        for (link, dests, groups) in &plan.copies {
            out.push(Action::Send {
                link: *link,
                msg: LinkMsg::Event(EventCopy {
                    origin: origin.to_owned(),
                    id,
                    hops,
                    dests: dests.clone(),
                    groups: groups.clone(),
                    topic: topic.to_owned(),
                    retain: plan.retain,
                }),
            });
        }
    }

    /// What `emit` does but sending the copies: the counters (the
    /// copies' `events_out` included) and the unroutable destinations.
    /// `origin` None: this router.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit_counted(
        &mut self,
        origin: Option<&str>,
        id: u64,
        hops: u8,
        topic: &str,
        plan: &Plan,
        from: Option<LinkId>,
        out: &mut Vec<Action>,
    ) {
        self.counters.no_route += plan.no_route;
        if !plan.unrouted.0.is_empty() || !plan.unrouted.1.is_empty() {
            out.push(Action::Unroutable {
                looped: false,
                copy: EventCopy {
                    origin: origin.map_or_else(|| self.id.clone(), str::to_owned),
                    id,
                    hops,
                    dests: plan.unrouted.0.clone(),
                    groups: plan.unrouted.1.clone(),
                    topic: topic.to_owned(),
                    retain: plan.retain,
                },
                from,
            });
        }
        for l in &plan.denied {
            let refusal = self
                .links
                .get(l)
                .and_then(|l| l.policy.export_verdict(topic).err());
            if let Some(refusal) = refusal {
                self.count_refusal(*l, refusal);
            }
        }
        for (link, _, _) in &plan.copies {
            if let Some(l) = self.links.get_mut(link) {
                l.counters.events_out += 1;
            }
        }
    }
}
