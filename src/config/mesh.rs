//! The `[mesh]` section: this router's identity, its links, the per-link
//! policy and TLS paths, and the checks that turn it into [`MeshResolved`].
//!
//! Owns: the mesh's configuration and the router-id rule (the link
//! protocol uses the same one). Must not depend on `crate::mesh`: the mesh
//! reads its configuration from here, never the other way round.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{
    at_least, invalid, listen_addr, parse_cpu_list, split_host_port, Config, ConfigError, MeshTls,
};

/// Longest router id, in bytes (in a hello, a log line, a metrics label).
pub const ROUTER_ID_MAX: usize = 64;

/// A router id is 1 to [`ROUTER_ID_MAX`] printable ASCII characters without
/// spaces: it appears in logs, metrics labels and every event's origin.
pub fn valid_router_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= ROUTER_ID_MAX && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The mesh: this router's identity, its links to other routers, and what
/// may cross them. On when `listen` is set or `links` is not empty.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// This router's id in the mesh (1 to 64 printable ASCII characters, no
    /// spaces); empty = the host name.
    pub router_id: String,
    /// The mesh's name: links to routers of another mesh are refused.
    pub name: String,
    /// Where peers connect (IP:port; port 0 picks a free port); empty =
    /// accept no links.
    pub listen: String,
    /// Peers to dial (IP:port), redialled with backoff when a link drops.
    pub links: Vec<String>,
    /// Core of the bridge executor that runs the links; empty = the first
    /// shard's core. One bridge executor in this version.
    pub bridge_cores: String,
    /// When the bridge's core is the first shard's (the default), run the
    /// bridge as tasks of that shard's executor instead of a thread of its
    /// own: no thread hand-off (wake-up, context switch) between that
    /// shard and the links. false = always a separate executor.
    pub bridge_in_shard: bool,
    /// A PING on every link this often (its PONG gives the round-trip time).
    pub keepalive_ms: u64,
    /// A link silent this long is dropped (and redialled if dialled).
    pub link_timeout_ms: u64,
    /// After a link drops, routers reachable only through it stay
    /// reachable this long: their QoS 1 events wait (up to `unacked_max`)
    /// for the peer's return. 0 = forget them at once.
    pub link_hold_ms: u64,
    /// A QoS 1 copy that came over a link is acknowledged there once its
    /// onward copies are acknowledged by their next hops; after this long
    /// waiting for them it is acknowledged all the same, its onward
    /// copies staying in this router's resend stores (custody). Without
    /// it, copies that cross two links in opposite orders while routes
    /// reconverge wait on each other's cumulative acknowledgements and a
    /// link's acks stop for good (found by the mesh simulation). The
    /// price: a `kill -9` of this router after custody loses those
    /// copies. 0 = never (acks may stall).
    pub custody_ms: u64,
    /// While routes reconverge after a failure, a neighbour may withdraw
    /// its route to a subscriber for a moment; a QoS 1 event published
    /// then would have no destination. Withdrawn interest stays a
    /// destination this long: such copies are parked (up to
    /// `link_hold_ms`) and sent when a route is back, or dropped and
    /// counted in `no_route` if it is not (found by the mesh simulation,
    /// seeds 8325 and 9941). 0 = off.
    pub interest_hold_down_ms: u64,
    /// Longest wait for a TCP connection and the peer's hello.
    pub connect_timeout_ms: u64,
    /// Redial backoff: first wait, doubled after each failure up to the max.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Encoded frames waiting for one link's socket; past it, QoS 0 events
    /// for that link are dropped and counted (interest is never dropped).
    pub outbound_bytes_max: usize,
    /// QoS 1 events sent to one peer and not yet acknowledged, kept for
    /// resending after a reconnection; past it the oldest are dropped and
    /// counted.
    pub unacked_max: usize,
    /// Largest link frame accepted (an event and its metadata).
    pub frame_bytes_max: usize,
    /// Distinct (filter, origin router) interest entries held.
    pub interest_entries_max: usize,
    /// Event ids remembered per origin router to drop duplicates.
    pub dedup_window: usize,
    /// Links up or connecting at once (dialled and accepted); also the
    /// most links a router's topology record may list.
    pub links_max: usize,
    /// Each router floods a record of its links (`GET /topology`): at once
    /// when a link's state changes, and this often anyway.
    pub topology_refresh_ms: u64,
    /// A router's record not refreshed for this long is dropped (it fell
    /// silent or is cut off); at least twice `topology_refresh_ms`.
    pub topology_expiry_ms: u64,
    /// Routers' records held, this router's own included; a new router's
    /// record beyond it is refused (and logged).
    pub topology_routers_max: usize,
    /// Route explain (`GET /explain`, `weft explain`): how long a request
    /// waits for the routers beyond this one; each hop gives the next
    /// three quarters of its own time, so the farther ones answer first.
    pub explain_timeout_ms: u64,
    /// Explain requests in progress at once on this router (started here
    /// or passing through); a further one is answered `busy`.
    pub explains_max: usize,
    /// Largest explain reply (JSON, this router's report and those beyond
    /// it); reports past it are left out and named `reply_too_large`.
    pub explain_reply_bytes_max: usize,
    /// Per-peer link policy; see [`PolicyConfig`].
    pub policy: Vec<PolicyConfig>,
    /// TLS on every link; see [`MeshTlsConfig`].
    pub tls: MeshTlsConfig,
}

/// `[mesh.tls]`: with `cert`, `key` and `ca` set, every link is TLS with
/// mutual authentication against `ca` (see `mesh::tls`). Paths are PEM
/// files, relative to the working directory.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshTlsConfig {
    /// This router's certificate chain, leaf first.
    pub cert: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// The CA certificates that sign every router's certificate.
    pub ca: String,
    /// The name a dialled peer's certificate must carry (a DNS name or IP);
    /// empty = the IP address dialled.
    pub server_name: String,
    /// Each end requires the peer's certificate to name the router id of
    /// its hello (as a DNS subject alternative name).
    pub router_id_in_cert: bool,
}

/// What may cross the links to one peer (`peer` = its router id, or `*` for
/// every peer without an entry of its own). Deny wins over allow; an empty
/// allow list allows everything not denied.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub peer: String,
    pub export_allow: Vec<String>,
    pub export_deny: Vec<String>,
    pub import_allow: Vec<String>,
    pub import_deny: Vec<String>,
    /// Prepended to the topic of every event arriving from the peer
    /// (ends with '/', no wildcard); empty = none.
    pub import_prefix: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            router_id: String::new(),
            name: "weft".into(),
            listen: String::new(),
            links: Vec::new(),
            bridge_cores: String::new(),
            bridge_in_shard: true,
            keepalive_ms: 1000,
            link_timeout_ms: 5000,
            link_hold_ms: 10_000,
            custody_ms: 20_000,
            interest_hold_down_ms: 500,
            connect_timeout_ms: 2000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 2000,
            outbound_bytes_max: 16 * 1024 * 1024,
            unacked_max: 65_536,
            frame_bytes_max: 4 * 1024 * 1024,
            interest_entries_max: 100_000,
            dedup_window: 65_536,
            links_max: 64,
            topology_refresh_ms: 2000,
            topology_expiry_ms: 6000,
            topology_routers_max: 256,
            explain_timeout_ms: 2000,
            explains_max: 16,
            explain_reply_bytes_max: 65_536,
            policy: Vec::new(),
            tls: MeshTlsConfig::default(),
        }
    }
}

/// The mesh part of a checked configuration.
#[derive(Debug, Clone)]
pub struct MeshResolved {
    pub router_id: String,
    pub listen: Option<SocketAddr>,
    /// Peers to dial: IP:PORT, or HOST:PORT resolved again at every dial.
    pub links: Vec<String>,
    pub bridge_core: Option<usize>,
    /// None = plain TCP links.
    pub tls: Option<MeshTls>,
}

impl MeshConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty() || !self.links.is_empty()
    }

    /// The policy for links to `peer`: its own entry, else `*`'s, else none.
    pub fn policy_for(&self, peer: &str) -> Option<&PolicyConfig> {
        self.policy
            .iter()
            .find(|p| p.peer == peer)
            .or_else(|| self.policy.iter().find(|p| p.peer == "*"))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| valid_router_id(h))
        .unwrap_or_else(|| "weft".into())
}

impl Config {
    pub(super) fn resolve_mesh(&mut self) -> Result<Option<MeshResolved>, ConfigError> {
        let m = &mut self.mesh;
        if m.router_id.is_empty() {
            m.router_id = host_name();
        }
        if !valid_router_id(&m.router_id) {
            return Err(invalid(
                "mesh.router_id",
                format!(
                    "'{}' is not 1 to {} printable ASCII characters without spaces",
                    m.router_id, ROUTER_ID_MAX
                ),
            ));
        }
        if m.name.is_empty() || m.name.len() > 256 {
            return Err(invalid("mesh.name", "must be 1 to 256 bytes"));
        }
        at_least("mesh.keepalive_ms", m.keepalive_ms, 10)?;
        at_least(
            "mesh.link_timeout_ms",
            m.link_timeout_ms,
            2 * m.keepalive_ms,
        )?;
        at_least("mesh.connect_timeout_ms", m.connect_timeout_ms, 10)?;
        at_least("mesh.reconnect_min_ms", m.reconnect_min_ms, 1)?;
        at_least(
            "mesh.reconnect_max_ms",
            m.reconnect_max_ms,
            m.reconnect_min_ms,
        )?;
        at_least(
            "mesh.outbound_bytes_max",
            m.outbound_bytes_max as u64,
            64 * 1024,
        )?;
        at_least("mesh.unacked_max", m.unacked_max as u64, 1)?;
        at_least("mesh.frame_bytes_max", m.frame_bytes_max as u64, 1024)?;
        at_least(
            "mesh.interest_entries_max",
            m.interest_entries_max as u64,
            1,
        )?;
        at_least("mesh.dedup_window", m.dedup_window as u64, 1)?;
        at_least("mesh.links_max", m.links_max as u64, 1)?;
        at_least("mesh.topology_refresh_ms", m.topology_refresh_ms, 10)?;
        if m.topology_expiry_ms < 2 * m.topology_refresh_ms {
            // One lost refresh must not drop a live router from the graph.
            return Err(invalid(
                "mesh.topology_expiry_ms",
                format!(
                    "{} is below twice mesh.topology_refresh_ms ({})",
                    m.topology_expiry_ms, m.topology_refresh_ms
                ),
            ));
        }
        at_least(
            "mesh.topology_routers_max",
            m.topology_routers_max as u64,
            1,
        )?;
        at_least("mesh.explain_timeout_ms", m.explain_timeout_ms, 1)?;
        at_least("mesh.explains_max", m.explains_max as u64, 1)?;
        // Room for one router's report and the envelope (see
        // `mesh::explain::add_report`).
        at_least(
            "mesh.explain_reply_bytes_max",
            m.explain_reply_bytes_max as u64,
            4096,
        )?;
        if m.explain_timeout_ms > u64::from(u32::MAX) {
            return Err(invalid(
                "mesh.explain_timeout_ms",
                format!(
                    "{} is above the maximum of {}",
                    m.explain_timeout_ms,
                    u32::MAX
                ),
            ));
        }
        let topic_limits = crate::topic::TopicLimits {
            topic_bytes_max: self.limits.topic_bytes_max,
            topic_levels_max: self.limits.topic_levels_max,
        };
        let m = &self.mesh;
        let mut peers = std::collections::HashSet::new();
        for p in &m.policy {
            if p.peer.is_empty() {
                return Err(invalid(
                    "mesh.policy.peer",
                    "every [[mesh.policy]] names a peer router id (or \"*\")",
                ));
            }
            if !peers.insert(p.peer.as_str()) {
                return Err(invalid(
                    "mesh.policy.peer",
                    format!("'{}' has two [[mesh.policy]] entries", p.peer),
                ));
            }
            for (key, list) in [
                ("mesh.policy.export_allow", &p.export_allow),
                ("mesh.policy.export_deny", &p.export_deny),
                ("mesh.policy.import_allow", &p.import_allow),
                ("mesh.policy.import_deny", &p.import_deny),
            ] {
                for f in list {
                    if crate::topic::validate_filter(f, &topic_limits).is_err() {
                        return Err(invalid(
                            key,
                            format!("'{f}' (peer '{}') is not a valid topic filter", p.peer),
                        ));
                    }
                }
            }
            let prefix = &p.import_prefix;
            if !prefix.is_empty()
                && (!prefix.ends_with('/')
                    || prefix.contains(['+', '#'])
                    || crate::topic::validate_name(prefix.trim_end_matches('/'), &topic_limits)
                        .is_err())
            {
                return Err(invalid(
                    "mesh.policy.import_prefix",
                    format!(
                        "'{prefix}' (peer '{}') must be topic levels ending with '/', without wildcards",
                        p.peer
                    ),
                ));
            }
        }
        // Checked even when the mesh is off in the file (flags may turn
        // it on): `check-config` and `run` refuse the same files.
        let tls = MeshTls::load(&m.tls)?;
        if !m.enabled() {
            return Ok(None);
        }
        let listen = if m.listen.trim().is_empty() {
            None
        } else {
            Some(listen_addr("mesh.listen", &m.listen)?)
        };
        let mut links = Vec::new();
        for l in &m.links {
            if l.parse::<SocketAddr>().is_err() && split_host_port(l).is_none() {
                return Err(invalid(
                    "mesh.links",
                    format!("'{l}' is not a HOST:PORT address"),
                ));
            }
            links.push(l.clone());
        }
        let bridge_core = if m.bridge_cores.trim().is_empty() {
            None
        } else {
            let cores =
                parse_cpu_list(&m.bridge_cores).map_err(|r| invalid("mesh.bridge_cores", r))?;
            if cores.len() != 1 {
                return Err(invalid(
                    "mesh.bridge_cores",
                    format!(
                        "'{}' names {} cores; this version runs one bridge executor",
                        m.bridge_cores,
                        cores.len()
                    ),
                ));
            }
            Some(cores[0])
        };
        Ok(Some(MeshResolved {
            router_id: m.router_id.clone(),
            listen,
            links,
            bridge_core,
            tls,
        }))
    }
}
