//! The bridge's part in the mesh graph: it reports this router's links to
//! the link-state database (`mesh::topology`) on every tick, sends the
//! records the database hands out (at a link's start: the whole database;
//! on a change and every `mesh.topology_refresh_ms`: this router's own;
//! passed on: the others'), gives it the records that arrive, and puts
//! the database's snapshot in the admin view (`GET /topology`).
//!
//! Owns: the mapping from the admin view's link slots to link reports
//! (a dialled link that is down is reported, so a cut link shows from its
//! dialler; one that never came up names no router and is left out), and
//! the warning for refused records (at most one per
//! [`REFUSED_WARN_EVERY`]). Must not decide what to flood (the database
//! does).

use std::sync::Arc;

use super::view::MeshView;
use super::*;
use crate::mesh::link::{LinkState, TopologyRecord};
use crate::mesh::topology::{self, LinkReport, TopologyDb, TopologyLimits};

/// Refused records are logged at warn at most this often (with the count
/// of those not logged).
pub(super) const REFUSED_WARN_EVERY: Duration = Duration::from_secs(10);

/// The database of a new bridge: sequence numbers from the start time in
/// ms, shifted (see `mesh::topology`).
pub(super) fn database(config: &Config, router_id: &str, now: Instant) -> TopologyDb {
    let m = &config.mesh;
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    TopologyDb::new(
        router_id,
        start_ms << 16,
        TopologyLimits {
            refresh: Duration::from_millis(m.topology_refresh_ms),
            expiry: Duration::from_millis(m.topology_expiry_ms),
            routers_max: m.topology_routers_max,
            // A record must fit what every peer's codec takes.
            links_max: m.links_max.min(LinkLimits::default().topology_links_max),
        },
        now,
    )
}

/// This router's links as the admin view shows them.
fn own_links(view: &MeshView) -> Vec<LinkReport> {
    view.links
        .iter()
        .filter_map(|l| {
            let peer = l.peer.clone()?;
            let state = match l.state {
                "up" => LinkState::Up,
                "held" => LinkState::Held,
                // A dialled link whose last dial or connection failed is
                // down (between redials); before any failure, connecting.
                _ if l.last_error.is_some() => LinkState::Down,
                _ => LinkState::Connecting,
            };
            Some(LinkReport {
                peer,
                state,
                tls: view.tls,
                rtt_us: l.rtt_us,
                events_in: l.events_in,
                events_out: l.events_out,
                dropped: l.dropped,
            })
        })
        .collect()
}

impl Bridge {
    /// Sends what the database handed out.
    fn send_topology(&self, sends: Vec<topology::Send>) {
        if sends.is_empty() {
            return;
        }
        let now = Instant::now();
        let links = self.links.borrow();
        for s in sends {
            let Some(link) = links.get(&s.link) else {
                continue;
            };
            // A link whose buffer is full skips a record: the next
            // refresh brings a newer one (records are never owed).
            if link.out.borrow().len() >= self.config.mesh.outbound_bytes_max {
                continue;
            }
            self.push_frame(link, &s.record.frame(now));
        }
    }

    /// A link is up: it gets the whole database.
    pub(super) fn topology_link_up(&self, link: &Link) {
        let mut sends = Vec::new();
        self.topology
            .borrow_mut()
            .link_up(link.id, Instant::now(), &mut sends);
        self.send_topology(sends);
    }

    pub(super) fn topology_link_down(&self, id: LinkId) {
        self.topology.borrow_mut().link_down(id);
    }

    /// A record from the link.
    pub(super) fn on_topology(&self, link: &Link, record: &TopologyRecord<'_>) {
        let mut sends = Vec::new();
        let result =
            self.topology
                .borrow_mut()
                .on_record(link.id, record, Instant::now(), &mut sends);
        if let Err(e) = result {
            let due = self
                .topology_warned
                .get()
                .is_none_or(|t| t.elapsed() >= REFUSED_WARN_EVERY);
            if due {
                let suppressed = self.topology_suppressed.replace(0);
                tracing::warn!(peer = link.peer, suppressed, "mesh: {e}");
                self.topology_warned.set(Some(Instant::now()));
            } else {
                self.topology_suppressed
                    .set(self.topology_suppressed.get() + 1);
            }
        }
        self.send_topology(sends);
    }

    /// The tick: this router's links reported, the refresh and expiry
    /// run, and the snapshot put in `view` (rebuilt only when it changed).
    pub(super) fn topology_tick(&self, view: &mut MeshView) {
        let now = Instant::now();
        let mut sends = Vec::new();
        {
            let mut db = self.topology.borrow_mut();
            db.set_own_links(own_links(view), now, &mut sends);
            db.handle_timeout(now, &mut sends);
        }
        self.send_topology(sends);
        let db = self.topology.borrow();
        let mut cached = self.topology_view.borrow_mut();
        if cached.as_ref().is_none_or(|(g, _)| *g != db.generation()) {
            *cached = Some((db.generation(), Arc::new(db.snapshot())));
        }
        view.topology = cached.as_ref().map(|(_, s)| s.clone());
    }
}
