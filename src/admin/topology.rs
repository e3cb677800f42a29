//! `GET /topology`: the mesh as a graph, from this router's link-state
//! database (`mesh::topology`), which the bridge publishes with its view
//! on every tick.
//!
//! Owns: the JSON shape (routers, and one edge per ordered pair as
//! reported by the `from` router; a page merges the two directions).
//! Costs one pass over the snapshot per request (at most
//! `mesh.topology_routers_max` routers × `mesh.links_max` links), on the
//! admin thread; the snapshot is shared, not copied, with the bridge.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::AdminState;
use crate::mesh::topology::Snapshot;

/// The mesh as this router sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topology {
    pub router_id: String,
    /// This router first, then the others by id.
    pub routers: Vec<RouterNode>,
    /// Sorted by (from, to).
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterNode {
    pub id: String,
    #[serde(rename = "self")]
    pub is_self: bool,
    /// How old its record is (0 for this router); null for a router
    /// known only as another's peer (no record of its own here: not yet
    /// arrived, expired, or refused by `mesh.topology_routers_max`).
    pub age_ms: Option<u64>,
    /// Links its record lists (0 without a record).
    pub links: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `up`, `held`, `down` or `connecting`.
    pub state: &'static str,
    pub tls: bool,
    pub rtt_us: Option<u64>,
    pub events_out: u64,
    pub events_in: u64,
    pub dropped: u64,
}

/// None when the mesh is off (or its bridge has not ticked yet).
pub fn topology(state: &AdminState) -> Option<Topology> {
    let snapshot = state
        .mesh_view
        .lock()
        .ok()
        .and_then(|v| v.as_ref().and_then(|v| v.topology.clone()))?;
    Some(from_snapshot(&snapshot, Instant::now()))
}

/// The graph of `snapshot` at `now`.
pub fn from_snapshot(snapshot: &Snapshot, now: Instant) -> Topology {
    let mut routers: BTreeMap<String, RouterNode> = BTreeMap::new();
    let mut edges = Vec::new();
    for (record, is_self) in
        std::iter::once((&snapshot.own, true)).chain(snapshot.others.iter().map(|r| (r, false)))
    {
        routers.insert(
            record.origin.clone(),
            RouterNode {
                id: record.origin.clone(),
                is_self,
                age_ms: Some(if is_self {
                    0
                } else {
                    record.age(now).as_millis() as u64
                }),
                links: record.links.len(),
            },
        );
        for l in &record.links {
            edges.push(Edge {
                from: record.origin.clone(),
                to: l.peer.clone(),
                state: l.state.label(),
                tls: l.tls,
                rtt_us: l.rtt_us,
                events_out: l.events_out,
                events_in: l.events_in,
                dropped: l.dropped,
            });
        }
    }
    for e in &edges {
        routers.entry(e.to.clone()).or_insert_with(|| RouterNode {
            id: e.to.clone(),
            is_self: false,
            age_ms: None,
            links: 0,
        });
    }
    edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    let mut routers: Vec<RouterNode> = routers.into_values().collect();
    routers.sort_by_key(|r| !r.is_self);
    Topology {
        router_id: snapshot.router_id.clone(),
        routers,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::mesh::link::LinkState;
    use crate::mesh::topology::{LinkReport, Record};

    fn record(origin: &str, at: Instant, links: &[(&str, LinkState)]) -> Arc<Record> {
        Arc::new(Record {
            origin: origin.into(),
            seq: 1,
            originated: at,
            links: links
                .iter()
                .map(|(p, s)| LinkReport {
                    peer: (*p).into(),
                    state: *s,
                    tls: false,
                    rtt_us: Some(140),
                    events_in: 45,
                    events_out: 123,
                    dropped: 0,
                })
                .collect(),
        })
    }

    #[test]
    fn the_json_shape() {
        let now = Instant::now();
        let earlier = now.checked_sub(Duration::from_millis(1500)).unwrap();
        let snapshot = Snapshot {
            router_id: "b".into(),
            own: record("b", now, &[("a", LinkState::Up)]),
            others: vec![record(
                "a",
                earlier,
                &[("b", LinkState::Up), ("c", LinkState::Held)],
            )],
        };
        let json = serde_json::to_value(from_snapshot(&snapshot, now)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "router_id": "b",
                "routers": [
                    {"id": "b", "self": true, "age_ms": 0, "links": 1},
                    {"id": "a", "self": false, "age_ms": 1500, "links": 2},
                    {"id": "c", "self": false, "age_ms": null, "links": 0},
                ],
                "edges": [
                    {"from": "a", "to": "b", "state": "up", "tls": false, "rtt_us": 140,
                     "events_out": 123, "events_in": 45, "dropped": 0},
                    {"from": "a", "to": "c", "state": "held", "tls": false, "rtt_us": 140,
                     "events_out": 123, "events_in": 45, "dropped": 0},
                    {"from": "b", "to": "a", "state": "up", "tls": false, "rtt_us": 140,
                     "events_out": 123, "events_in": 45, "dropped": 0},
                ],
            })
        );
    }
}
