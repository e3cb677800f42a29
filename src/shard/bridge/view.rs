//! What the bridge shows the admin endpoint (`GET /links`, the
//! `weft_mesh_*` metrics): one entry per link slot and the router-wide
//! counters, built on the bridge's tick from its state (never on the
//! admin thread).

use serde::Serialize;

use super::connection::add_counters;
use super::*;

/// One link as the admin endpoint shows it (`GET /links`).
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    pub peer: Option<String>,
    pub remote: Option<String>,
    pub direction: &'static str,
    pub state: &'static str,
    pub events_in: u64,
    pub events_out: u64,
    pub denied_export: u64,
    pub denied_import: u64,
    pub interest_in: u64,
    pub interest_out: u64,
    pub reconnects: u64,
    pub rtt_us: Option<u64>,
    pub dropped: u64,
    pub unacked: u64,
    pub unacked_evicted: u64,
    /// Copies this router acknowledged to the peer by custody
    /// (`mesh.custody_ms`), this slot's earlier connections included.
    pub custody: u64,
    /// Why the last dial or connection of this slot failed or ended (None
    /// while up, or before anything went wrong).
    pub last_error: Option<String>,
}

/// What the bridge publishes for the admin thread on every tick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeshView {
    pub router_id: String,
    pub links: Vec<LinkInfo>,
    pub interest_entries: u64,
    pub duplicates: u64,
    pub no_route: u64,
    pub hops_exceeded: u64,
    /// Links down but held, and copies dropped for them (QoS 0) or past
    /// the resend store's bound.
    pub held_links: u64,
    pub held_dropped: u64,
    /// Copies acknowledged upstream by custody (`mesh.custody_ms`), summed
    /// over links, ended ones included.
    pub custody: u64,
    /// Every link is TLS (`[mesh.tls]`).
    pub tls: bool,
    /// Retained-store exchange: entries sent to peers, and entries from
    /// peers that were newer here (stored and passed on).
    pub retained_sent: u64,
    pub retained_accepted: u64,
    /// Event copies that arrived with this router's id as their origin:
    /// another router uses the same id.
    pub own_origin: u64,
    /// The peers whose links are held (down, expected back).
    pub held_peers: Vec<String>,
    /// QoS 1 copies waiting here for a route to their routers.
    pub parked: u64,
    /// Times this router's publishers waited for room in a link's resend
    /// store (see `Bridge::room`).
    pub resend_store_waits: u64,
    /// Link ends (refusals at hello included) by reason: the label of
    /// each [`crate::mesh::session::LinkCloseReason`], every one present.
    pub link_closes: BTreeMap<&'static str, u64>,
    /// The mesh as a graph (`GET /topology`), shared with the bridge until
    /// its database changes.
    #[serde(skip)]
    pub topology: Option<Arc<crate::mesh::topology::Snapshot>>,
    /// Events each link policy rule refused (`weft_mesh_policy_denied_total`).
    pub policy_denied: Vec<PolicyDenied>,
}

/// One link policy rule's refusals, by peer and direction.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyDenied {
    pub peer: String,
    /// `export` or `import`.
    pub direction: &'static str,
    /// The deny filter as configured, or `(not allowed)` for an allow
    /// list's miss.
    pub rule: String,
    pub events: u64,
}

impl Bridge {
    // ------------------------------------------------------- admin view

    /// Builds the view (with the topology's tick) and hands it to the
    /// admin thread's slot: built outside the lock, so a scrape never
    /// waits for the build.
    pub(super) fn publish_view(&self, slot: &std::sync::Mutex<Option<MeshView>>) {
        let mut view = self.view();
        self.topology_tick(&mut view);
        if let Ok(mut v) = slot.lock() {
            *v = Some(view);
        }
    }

    pub(super) fn view(&self) -> MeshView {
        let router = self.router.borrow();
        let c = router.counters();
        let mut held: Vec<String> = self.held.borrow().values().cloned().collect();
        held.sort();
        held.dedup();
        let links = self
            .slots
            .borrow()
            .iter()
            .filter(|s| {
                !s.gone.get()
                    || s.link.borrow().is_some()
                    || s.peer.borrow().as_ref().is_some_and(|p| held.contains(p))
            })
            .map(|s| {
                let link = s.link.borrow().clone();
                let (current, interest) = match &link {
                    Some(l) => (
                        router.link_counters(l.id).unwrap_or_default(),
                        router.link_interest(l.id),
                    ),
                    None => (LinkCounters::default(), (0, 0)),
                };
                let total = add_counters(s.base.get(), current);
                let custody = s.custody.get()
                    + link
                        .as_ref()
                        .map_or(0, |l| l.session.borrow().custody_taken());
                let peer = s.peer.borrow().clone();
                let state = match (&link, &peer) {
                    (Some(_), _) => "up",
                    (None, Some(p)) if held.contains(p) => "held",
                    (None, _) => "connecting",
                };
                let unacked = peer
                    .as_ref()
                    .and_then(|p| self.outboxes.borrow().get(p).map(|o| o.len()))
                    .unwrap_or(0);
                LinkInfo {
                    peer,
                    remote: s.remote.get().map(|a| a.to_string()),
                    direction: if s.dialled { "out" } else { "in" },
                    state,
                    events_in: total.events_in,
                    events_out: total.events_out.saturating_sub(s.unsent.get()),
                    denied_export: total.denied_export,
                    denied_import: total.denied_import,
                    interest_in: interest.0 as u64,
                    interest_out: interest.1 as u64,
                    reconnects: s.reconnects.get(),
                    rtt_us: s.rtt_us.get(),
                    dropped: s.dropped.get() + s.unsent.get(),
                    unacked: unacked as u64,
                    unacked_evicted: s.evicted.get(),
                    custody,
                    last_error: s.last_error.borrow().clone(),
                }
            })
            .collect();
        let policy_denied = router
            .policy_denied()
            .map(|(peer, refusal, events)| PolicyDenied {
                peer: peer.to_owned(),
                direction: refusal.direction.label(),
                rule: refusal.rule.clone(),
                events,
            })
            .collect();
        MeshView {
            policy_denied,
            router_id: self.router_id.clone(),
            links,
            interest_entries: router.interest_entries() as u64,
            duplicates: c.duplicates,
            no_route: c.no_route,
            hops_exceeded: c.hops_exceeded,
            own_origin: c.own_origin,
            held_links: self.held.borrow().len() as u64,
            held_dropped: self.held_dropped.get(),
            custody: self.custody_ended.get()
                + self
                    .links
                    .borrow()
                    .values()
                    .map(|l| l.session.borrow().custody_taken())
                    .sum::<u64>(),
            tls: self.tls.is_some(),
            retained_sent: self.retained_sent.get(),
            retained_accepted: self.retained_accepted.get(),
            held_peers: held,
            parked: self.parked.borrow().len() as u64,
            resend_store_waits: self.room_waits.get(),
            link_closes: LinkCloseReason::ALL
                .iter()
                .zip(self.closes.borrow().iter())
                .map(|(r, n)| (r.label(), *n))
                .collect(),
            topology: None,
        }
    }
}
