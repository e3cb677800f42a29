//! Mesh helpers for the tests: a one-shard mesh router, the `/links`
//! view, and waits for links to be up, quiet and acknowledged.

use super::*;

/// A one-shard mesh router on core 0 with `toml`, its stderr captured at
/// `log_level`, listening for links on `mesh_listen` and dialing `links`.
pub fn mesh_router(
    id: &str,
    toml: &str,
    log_level: &str,
    mesh_listen: &str,
    links: &[SocketAddr],
) -> Weft {
    let mut launch = Launch::new(1, toml);
    launch.cores = "0".into();
    launch.capture_stderr = true;
    launch.log_level = Some(log_level.into());
    launch.args = ["--router-id", id, "--mesh-listen", mesh_listen]
        .map(String::from)
        .to_vec();
    for l in links {
        launch.args.push("--link".into());
        launch.args.push(l.to_string());
    }
    Weft::launch_with(launch)
}

/// One entry of the admin `GET /links` view (the mesh contract).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct LinkView {
    pub peer: Option<String>,
    pub remote: Option<String>,
    pub direction: String,
    pub state: String,
    pub events_in: u64,
    pub events_out: u64,
    pub denied_export: u64,
    pub denied_import: u64,
    pub interest_in: u64,
    pub interest_out: u64,
    pub reconnects: u64,
    pub rtt_us: Option<u64>,
    pub dropped: u64,
    /// QoS 1 copies sent and not yet acknowledged by the peer.
    #[serde(default)]
    pub unacked: u64,
    /// Why the last dial or connection failed or ended.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The admin `GET /links` view. `router_id` is null until the mesh's
/// bridge has published its first view (or when the mesh is off).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct LinksView {
    pub router_id: Option<String>,
    pub total: u64,
    pub links: Vec<LinkView>,
    /// Beyond the contract (weft's own additions), when present.
    #[serde(default)]
    pub duplicates_dropped: Option<u64>,
    #[serde(default)]
    pub no_route: Option<u64>,
    #[serde(default)]
    pub hops_exceeded: Option<u64>,
    /// Peers whose links are held (down, expected back).
    #[serde(default)]
    pub held_peers: Vec<String>,
    /// QoS 1 copies waiting for a route.
    #[serde(default)]
    pub parked: Option<u64>,
}

impl LinksView {
    /// Links that are up, with the peer's hello received.
    pub fn up(&self) -> usize {
        self.links
            .iter()
            .filter(|l| l.state == "up" && l.peer.is_some())
            .count()
    }

    /// The link(s) to `peer`: the one that is up if any, else the first.
    pub fn to(&self, peer: &str) -> Option<&LinkView> {
        let all: Vec<&LinkView> = self
            .links
            .iter()
            .filter(|l| l.peer.as_deref() == Some(peer))
            .collect();
        all.iter()
            .find(|l| l.state == "up")
            .or(all.first())
            .copied()
    }

    /// `field` summed over every link to `peer` (an inbound link may get a
    /// new entry per connection).
    pub fn sum_to(&self, peer: &str, field: impl Fn(&LinkView) -> u64) -> u64 {
        self.links
            .iter()
            .filter(|l| l.peer.as_deref() == Some(peer))
            .map(field)
            .sum()
    }

    /// `field` summed over every link.
    pub fn sum(&self, field: impl Fn(&LinkView) -> u64) -> u64 {
        self.links.iter().map(field).sum()
    }
}

/// `GET /links`, parsed; panics on anything but 200 and the contract's JSON.
pub async fn links(admin: SocketAddr) -> LinksView {
    let (status, body) = admin_get(admin, "/links").await;
    assert_eq!(status, 200, "GET /links: {body}");
    let view: LinksView = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET /links is not the contract's JSON ({e}): {body}"));
    assert_eq!(
        view.total,
        view.links.len() as u64,
        "total counts the links: {body}"
    );
    view
}

/// Polls `GET /links` until `ok` holds (bounded by `WAIT`); panics with
/// `what` and the last view otherwise.
pub async fn wait_links(
    admin: SocketAddr,
    what: &str,
    ok: impl Fn(&LinksView) -> bool,
) -> LinksView {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = links(admin).await;
        if ok(&view) {
            return view;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not reached in time; last /links of {admin}: {view:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per link of a `/links` view: (peer, events sent, events received,
/// QoS 1 copies unacknowledged).
type LinkCounts = Vec<(Option<String>, u64, u64, u64)>;

fn link_counts(v: &LinksView) -> LinkCounts {
    let mut c: Vec<_> = v
        .links
        .iter()
        .map(|l| (l.peer.clone(), l.events_out, l.events_in, l.unacked))
        .collect();
    c.sort();
    c
}

/// Waits (bounded by `WAIT`) until no event copy is in flight between the
/// routers whose admin endpoints are `admins` and none is being made: two
/// consecutive rounds of `GET /links` over every router show the same
/// counters, and for every link between two of them what one end sent
/// (`events_out`) is what the other end received (`events_in`). A copy a
/// router received has then been handed to its shards, in order, before
/// anything that reaches it over a link later: a probe that a subscriber
/// gets from another router after this (see [`fence`]) comes after every
/// copy, duplicates included, that router will ever deliver of what was
/// published before. Also: no QoS 1 copy unacknowledged or parked. The
/// mesh tests' stand-in for "wait a while for late copies". Returns the
/// last views.
pub async fn wait_links_quiet(admins: &[SocketAddr]) -> Vec<LinksView> {
    quiet_links(admins, true).await
}

/// [`wait_links_quiet`] for a mesh whose links were cut while events
/// crossed them: a copy lost in a cut keeps `events_out` above the peer's
/// `events_in` for good, so the balance is not asked; what remains is that
/// the counters are steady over two rounds and that every QoS 1 copy has
/// been acknowledged (`unacked` 0 on every link, nothing parked): nothing
/// is waiting to be resent.
pub async fn wait_links_acked(admins: &[SocketAddr]) -> Vec<LinksView> {
    quiet_links(admins, false).await
}

async fn quiet_links(admins: &[SocketAddr], balanced: bool) -> Vec<LinksView> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut before: Option<Vec<LinkCounts>> = None;
    loop {
        let mut views = Vec::with_capacity(admins.len());
        for a in admins {
            views.push(links(*a).await);
        }
        let counts: Vec<_> = views.iter().map(link_counts).collect();
        let mut unbalanced = Vec::new();
        for v in &views {
            let unacked = v.sum(|l| l.unacked);
            let parked = v.parked.unwrap_or(0);
            if unacked > 0 || parked > 0 {
                unbalanced.push(format!(
                    "{:?}: {unacked} unacknowledged, {parked} parked",
                    v.router_id
                ));
            }
        }
        for x in views.iter().filter(|_| balanced) {
            let Some(xid) = x.router_id.as_deref() else {
                unbalanced.push("a router without its id yet".to_string());
                continue;
            };
            for y in &views {
                let Some(yid) = y.router_id.as_deref() else {
                    continue;
                };
                if xid == yid || x.to(yid).is_none() {
                    continue;
                }
                let (sent, got) = (
                    x.sum_to(yid, |l| l.events_out),
                    y.sum_to(xid, |l| l.events_in),
                );
                if sent != got {
                    unbalanced.push(format!("{xid} sent {yid} {sent}, {yid} received {got}"));
                }
            }
        }
        let steady = before.as_ref() == Some(&counts);
        if unbalanced.is_empty() && steady {
            return views;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "links never quiet (copies in flight: {unbalanced:?}; counters steady: {steady}): \
                 {views:#?}"
            );
        }
        before = Some(counts);
        // Longer than the admin view's refresh (50 ms): two rounds are two
        // answers, not one answer read twice.
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
}

/// Waits (bounded) until at least `n` links of the router are up.
pub async fn wait_links_up(weft: &Weft, n: usize) -> LinksView {
    wait_links(weft.admin, &format!("{n} links up"), |v| {
        v.router_id.is_some() && v.up() >= n
    })
    .await
}
