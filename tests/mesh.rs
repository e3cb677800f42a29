//! The mesh across real processes: several `weft` routers on 127.0.0.1,
//! linked with `--link`, checked end to end with real clients (rumqttc,
//! async-nats) and through the admin `GET /links` counters
//! (briefs/mesh-contract.md).
//!
//! Interest travels asynchronously, so every test fences: it publishes
//! probes until they arrive, and only then the counted events, then waits
//! for them all. To catch duplicates and stray copies it then settles
//! without sleeping: it waits until no copy is in flight on any link
//! (`common::wait_links_quiet`) and fences once more, from another router,
//! so that every copy a router will deliver has been delivered. Nothing here
//! asserts a time; every wait is bounded by `common::WAIT`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, QoS};

/// Fast keepalive and reconnects, so cuts are noticed and healed quickly.
const MESH_TOML: &str = "[mesh]
keepalive_ms = 200
link_timeout_ms = 2000
reconnect_min_ms = 50
reconnect_max_ms = 200
";

/// Routers of one test; on a failing test their logs are printed.
struct Routers {
    ids: Vec<String>,
    wefts: Vec<Weft>,
}

impl Routers {
    fn new() -> Routers {
        Routers {
            ids: Vec::new(),
            wefts: Vec::new(),
        }
    }

    /// Starts router `id` (one shard; routers alternate between cores 0
    /// and 1), listening for links on 127.0.0.1:0 and dialing `links`.
    fn start(&mut self, id: &str, extra_toml: &str, links: &[SocketAddr]) -> usize {
        let i = self.wefts.len();
        let mut launch = Launch::new(1, &format!("{MESH_TOML}{extra_toml}"));
        launch.cores = (i % 2).to_string();
        launch.capture_stderr = true;
        launch.log_level = Some("info".into());
        launch.args = ["--router-id", id, "--mesh-listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        for l in links {
            launch.args.push("--link".into());
            launch.args.push(l.to_string());
        }
        let weft = Weft::launch_with(launch);
        assert!(weft.mesh.is_some(), "{id}: mesh listener line");
        self.ids.push(id.to_string());
        self.wefts.push(weft);
        i
    }

    fn mesh_addr(&self, i: usize) -> SocketAddr {
        self.wefts[i].mesh.unwrap()
    }

    /// Starts `ids` in order, linked by `edges` (index pairs; of each edge
    /// the router started later dials the earlier one), and waits until
    /// every router has all its links up.
    async fn topology(
        ids: &[&str],
        edges: &[(usize, usize)],
        toml: impl Fn(usize) -> String,
    ) -> Routers {
        let mut routers = Routers::new();
        for (i, id) in ids.iter().enumerate() {
            let dial: Vec<SocketAddr> = edges
                .iter()
                .filter_map(|&(a, b)| match (a.max(b) == i, a.min(b)) {
                    (true, other) => Some(routers.mesh_addr(other)),
                    _ => None,
                })
                .collect();
            routers.start(id, &toml(i), &dial);
        }
        for i in 0..ids.len() {
            let degree = edges.iter().filter(|&&(a, b)| a == i || b == i).count();
            let view = wait_links_up(&routers.wefts[i], degree).await;
            assert_eq!(view.router_id.as_deref(), Some(ids[i]), "/links router_id");
            let mut peers: Vec<_> = view.links.iter().filter_map(|l| l.peer.clone()).collect();
            peers.sort();
            let mut want: Vec<String> = edges
                .iter()
                .filter_map(|&(a, b)| match (a == i, b == i) {
                    (true, _) => Some(ids[b].to_string()),
                    (_, true) => Some(ids[a].to_string()),
                    _ => None,
                })
                .collect();
            want.sort();
            assert_eq!(peers, want, "{}: peers in /links", ids[i]);
        }
        routers
    }
}

/// Waits until no event copy is in flight between the routers (see
/// `common::wait_links_quiet`): a fence published after it, from another
/// router than its subscribers', arrives after every earlier copy.
async fn quiet(r: &Routers) {
    let admins: Vec<SocketAddr> = r.wefts.iter().map(|w| w.admin).collect();
    wait_links_quiet(&admins).await;
}

impl std::ops::Index<usize> for Routers {
    type Output = Weft;
    fn index(&self, i: usize) -> &Weft {
        &self.wefts[i]
    }
}

impl Drop for Routers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, weft) in self.ids.iter().zip(&self.wefts) {
                eprintln!("----- router {id}: stderr -----");
                for line in weft.stderr_lines() {
                    eprintln!("{id}| {line}");
                }
            }
        }
    }
}

/// An MQTT subscriber on `addr`, subscribed (QoS 1) to `filters`, whose
/// deliveries are collected.
async fn subscriber(addr: SocketAddr, id: &str, filters: &[&str]) -> (AsyncClient, Inbox) {
    let mut client = connect(addr, id).await;
    for f in filters {
        let codes = client.subscribe(f, QoS::AtLeastOnce).await;
        assert!(
            matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
            "{id}: SUBACK for {f}: {codes:?}"
        );
    }
    Inbox::mqtt(client)
}

/// An MQTT publisher on `addr`; its acks are collected (and ignored).
async fn publisher(addr: SocketAddr, id: &str) -> (AsyncClient, Inbox) {
    Inbox::mqtt(connect(addr, id).await)
}

async fn publish(client: &AsyncClient, topic: &str, payload: impl Into<Vec<u8>>) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.into())
        .await
        .unwrap();
}

/// Line A - B - C. C wants `want/#`, B wants `bee/#`, nobody wants
/// `nobody/#`; everything is published at A. C gets exactly its events, and
/// the link counters show that B forwards to C only what C wants and that
/// A sends B nothing nobody wants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_forwards_only_wanted_topics() {
    let r = Routers::topology(&["A", "B", "C"], &[(0, 1), (1, 2)], |_| String::new()).await;
    let (_c_sub, at_c) = subscriber(r[2].addr, "c-sub", &["want/#"]).await;
    let (_b_sub, at_b) = subscriber(r[1].addr, "b-sub", &["bee/#"]).await;
    let (a_pub, _acks) = publisher(r[0].addr, "a-pub").await;
    fence(mqtt_publisher(&a_pub), "want/probe", &[&at_c]).await;
    fence(mqtt_publisher(&a_pub), "bee/probe", &[&at_b]).await;
    const N: u64 = 20;
    for i in 0..N {
        publish(&a_pub, "nobody/d", i.to_string()).await;
        publish(&a_pub, "want/d", i.to_string()).await;
        publish(&a_pub, "bee/d", i.to_string()).await;
        publish(&a_pub, "want-not/d", i.to_string()).await;
    }
    at_c.wait_until("all want/d", |m| {
        m.iter().filter(|m| m.topic == "want/d").count() >= N as usize
    })
    .await;
    at_b.wait_until("all bee/d", |m| {
        m.iter().filter(|m| m.topic == "bee/d").count() >= N as usize
    })
    .await;
    quiet(&r).await;
    fence(mqtt_publisher(&a_pub), "want/settle", &[&at_c]).await;
    fence(mqtt_publisher(&a_pub), "bee/settle", &[&at_b]).await;
    assert_once(&at_c, "want/d", 0..N);
    assert_once(&at_b, "bee/d", 0..N);
    assert!(
        at_c.msgs().iter().all(|m| m.topic.starts_with("want/")),
        "C got only what it wants: {:?}",
        at_c.msgs()
    );
    assert!(
        at_b.msgs().iter().all(|m| m.topic.starts_with("bee/")),
        "B got only what it wants"
    );
    // Every copy over a link is accounted for by a delivery (probes
    // included): what reached C crossed A->B and B->C, what reached B
    // crossed A->B only; `nobody/d` and `want-not/d` crossed nothing.
    let expect_a = |to_c: u64, to_b: u64| {
        move |v: &LinksView| {
            v.to("B")
                .is_some_and(|l| l.events_out == to_c + to_b && l.events_in == 0)
        }
    };
    let expect_b = |to_c: u64, to_b: u64| {
        move |v: &LinksView| {
            v.to("A").is_some_and(|l| l.events_in == to_c + to_b)
                && v.to("C")
                    .is_some_and(|l| l.events_out == to_c && l.events_in == 0)
        }
    };
    let expect_c = |to_c: u64| move |v: &LinksView| v.to("B").is_some_and(|l| l.events_in == to_c);
    let (to_c, to_b) = (at_c.len() as u64, at_b.len() as u64);
    wait_links(
        r[0].admin,
        "A: events_out to B = deliveries at B and C",
        expect_a(to_c, to_b),
    )
    .await;
    wait_links(
        r[1].admin,
        "B: forwards to C only what C wants",
        expect_b(to_c, to_b),
    )
    .await;
    wait_links(
        r[2].admin,
        "C: events_in from B = deliveries at C",
        expect_c(to_c),
    )
    .await;
    // Nothing more once settled: after one more probe to each subscriber,
    // the counters account for exactly the deliveries (a stray copy would
    // keep them above).
    quiet(&r).await;
    fence(mqtt_publisher(&a_pub), "want/settle2", &[&at_c]).await;
    fence(mqtt_publisher(&a_pub), "bee/settle2", &[&at_b]).await;
    let (to_c, to_b) = (at_c.len() as u64, at_b.len() as u64);
    let a = wait_links(
        r[0].admin,
        "A: link counters = deliveries once settled",
        expect_a(to_c, to_b),
    )
    .await;
    let b = wait_links(
        r[1].admin,
        "B: link counters = deliveries once settled",
        expect_b(to_c, to_b),
    )
    .await;
    let c = wait_links(
        r[2].admin,
        "C: link counters = deliveries once settled",
        expect_c(to_c),
    )
    .await;
    // Interest: A learned want/# (C) and bee/# (B) from B; B learned want/#
    // from C and advertised its own bee/# to C; nothing was denied. Every
    // router also announces the retained-message key (its own entry): A
    // learned B's and C's from B, B learned C's from C.
    let ab = a.to("B").unwrap();
    assert_eq!(ab.interest_in, 2 + 2, "A learned 4 entries from B: {a:#?}");
    assert_eq!(
        b.to("C").unwrap().interest_in,
        1 + 1,
        "B learned 2 entries from C: {b:#?}"
    );
    assert_eq!(
        b.to("A").unwrap().interest_out,
        2 + 2,
        "B advertised 4 entries to A: {b:#?}"
    );
    assert_eq!(
        c.to("B").unwrap().interest_out,
        1 + 1,
        "C advertised want/# and its retained key to B: {c:#?}"
    );
    for v in [&a, &b, &c] {
        for l in &v.links {
            assert_eq!((l.denied_export, l.denied_import), (0, 0), "{v:#?}");
            assert_eq!(l.state, "up");
            assert!(l.direction == "in" || l.direction == "out", "{l:?}");
            assert!(
                l.remote
                    .as_deref()
                    .is_some_and(|r| r.parse::<SocketAddr>().is_ok()),
                "remote {:?}",
                l.remote
            );
        }
    }
    // The dialer of each edge (the later router) has it "out", the other "in".
    assert_eq!(ab.direction, "in");
    assert_eq!(b.to("A").unwrap().direction, "out");
    assert_eq!(b.to("C").unwrap().direction, "in");
    assert_eq!(c.to("B").unwrap().direction, "out");
}

/// A subscriber to `t/#` and a publisher on every router; every router
/// publishes `N` events; each subscriber gets each event exactly once and
/// nothing more after a settle time; the links carry no loop.
async fn each_event_exactly_once(ids: &[&str], edges: &[(usize, usize)]) {
    const N: u64 = 40;
    let n = ids.len();
    let r = Routers::topology(ids, edges, |_| String::new()).await;
    let mut inboxes = Vec::new();
    let mut subs = Vec::new();
    let mut pubs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (sub, inbox) = subscriber(r[i].addr, &format!("sub-{id}"), &["t/#"]).await;
        subs.push(sub);
        inboxes.push(inbox);
        pubs.push(publisher(r[i].addr, &format!("pub-{id}")).await);
    }
    let all: Vec<&Inbox> = inboxes.iter().collect();
    let mut probes = 0;
    for (i, id) in ids.iter().enumerate() {
        probes += fence(mqtt_publisher(&pubs[i].0), &format!("t/probe/{id}"), &all).await;
    }
    for seq in 0..N {
        for (i, id) in ids.iter().enumerate() {
            publish(&pubs[i].0, &format!("t/data/{id}"), seq.to_string()).await;
        }
    }
    let data = |m: &[Msg]| m.iter().filter(|m| m.topic.starts_with("t/data/")).count();
    for inbox in &inboxes {
        inbox
            .wait_until("every event", |m| data(m) >= n * N as usize)
            .await;
    }
    quiet(&r).await;
    for (i, id) in ids.iter().enumerate() {
        probes += fence(
            mqtt_publisher(&pubs[i].0),
            &format!("t/probe/{id}/end"),
            &all,
        )
        .await;
    }
    for inbox in &inboxes {
        for id in ids {
            assert_once(inbox, &format!("t/data/{id}"), 0..N);
        }
        assert_eq!(
            data(&inbox.msgs()),
            n * N as usize,
            "{}: exactly the events published",
            inbox.name
        );
        let unexpected: Vec<_> = inbox
            .msgs()
            .into_iter()
            .filter(|m| !m.topic.starts_with("t/data/") && !m.topic.starts_with("t/probe/"))
            .collect();
        assert!(unexpected.is_empty(), "{}: {unexpected:?}", inbox.name);
        for id in ids {
            let p = inbox.on(&format!("t/probe/{id}")).len();
            let mut payloads: Vec<_> = inbox
                .on(&format!("t/probe/{id}"))
                .into_iter()
                .map(|m| m.payload)
                .collect();
            payloads.sort();
            payloads.dedup();
            assert_eq!(payloads.len(), p, "{}: a probe from {id} twice", inbox.name);
        }
    }
    // No loop: with every router a destination, an event needs at least
    // n-1 link crossings, and follows one tree (n-1 crossings) once interest
    // has converged; probes sent while it converged may take longer paths
    // (at most n-1 hops per destination). A loop would multiply copies.
    let data_events = (n as u64) * N;
    let (lo, hi) = (
        (n as u64 - 1) * data_events,
        (n as u64 - 1) * data_events + (n as u64 - 1).pow(2) * probes as u64,
    );
    let mut last = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        last.clear();
        for i in 0..n {
            last.push(links(r[i].admin).await);
        }
        let out: u64 = last.iter().map(|v| v.sum(|l| l.events_out)).sum();
        let inn: u64 = last.iter().map(|v| v.sum(|l| l.events_in)).sum();
        if out >= lo && out == inn {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "link counters: events_out {out} (at least {lo}), events_in {inn}: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out: u64 = last.iter().map(|v| v.sum(|l| l.events_out)).sum();
    assert!(
        out <= hi,
        "{out} link crossings for {data_events} events and {probes} probes over {n} routers \
         (at most {hi} without a loop): {last:#?}"
    );
    for v in &last {
        assert_eq!(v.up(), v.links.len(), "every link still up: {v:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triangle_each_event_exactly_once() {
    each_event_exactly_once(&["A", "B", "C"], &[(0, 1), (1, 2), (0, 2)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_four_each_event_exactly_once() {
    each_event_exactly_once(&["A", "B", "C", "D"], &[(0, 1), (1, 2), (2, 3), (0, 3)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_of_five_each_event_exactly_once() {
    let mut edges = Vec::new();
    for a in 0..5 {
        for b in a + 1..5 {
            edges.push((a, b));
        }
    }
    each_event_exactly_once(&["A", "B", "C", "D", "E"], &edges).await;
}

/// A dials B through a proxy; the link is cut and restored. Interest that
/// changed on either side while cut is resynchronised (new filters work,
/// dropped ones are no longer served), delivery resumes in both
/// directions, nothing is delivered twice, and A's link entry (dialed)
/// keeps its counters and counts the reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_cut_and_restored_resyncs_interest() {
    let mut r = Routers::new();
    let b = r.start("B", "", &[]);
    let proxy = Proxy::start(r.mesh_addr(b)).await;
    let a = r.start("A", "", &[proxy.addr]);
    wait_links_up(&r[a], 1).await;
    wait_links_up(&r[b], 1).await;

    let (b_sub, at_b) = subscriber(r[b].addr, "b-sub", &["k/#", "gone/#", "gone2/#"]).await;
    let (_a_sub, at_a) = subscriber(r[a].addr, "a-sub", &["r/#"]).await;
    let (a_pub, _a_acks) = publisher(r[a].addr, "a-pub").await;
    let (b_pub, _b_acks) = publisher(r[b].addr, "b-pub").await;
    fence(mqtt_publisher(&a_pub), "k/probe1", &[&at_b]).await;
    fence(mqtt_publisher(&b_pub), "r/probe1", &[&at_a]).await;
    const N: u64 = 20;
    for i in 0..N {
        publish(&a_pub, "k/d", i.to_string()).await;
        publish(&b_pub, "r/d", i.to_string()).await;
    }
    at_b.wait_until("k/d before the cut", |m| {
        m.iter().filter(|m| m.topic == "k/d").count() >= N as usize
    })
    .await;
    at_a.wait_until("r/d before the cut", |m| {
        m.iter().filter(|m| m.topic == "r/d").count() >= N as usize
    })
    .await;
    // `n` filters, plus the retained-message key every router announces.
    let learned = |peer: &'static str, n: u64| {
        move |v: &LinksView| {
            v.to(peer)
                .is_some_and(|l| l.state == "up" && l.interest_in == n + 1)
        }
    };
    wait_links(
        r[a].admin,
        "A learned k/#, gone/#, gone2/# from B",
        learned("B", 3),
    )
    .await;
    wait_links(r[b].admin, "B learned r/# from A", learned("A", 1)).await;
    // Every copy acknowledged before the cut: none is resent after it
    // (a resend counts at the receiver, not at the sender), so the link
    // counters balance again once the link is back.
    quiet(&r).await;

    proxy.cut();
    wait_links(r[a].admin, "A sees its link down", |v| v.up() == 0).await;
    wait_links(r[b].admin, "B sees its link down", |v| v.up() == 0).await;
    // While cut: B drops two filters and gains one, A gains one.
    b_sub.unsubscribe("gone/#").await.unwrap();
    b_sub.unsubscribe("gone2/#").await.unwrap();
    at_b.wait_acks(0, 2).await;
    let (_b_sub2, at_b2) = subscriber(r[b].addr, "b-sub2", &["k2/#"]).await;
    let (_a_sub2, at_a2) = subscriber(r[a].addr, "a-sub2", &["r2/#"]).await;
    proxy.restore();

    let view = wait_links_up(&r[a], 1).await;
    wait_links_up(&r[b], 1).await;
    assert_eq!(
        view.links.len(),
        1,
        "one entry for the dialed link: {view:#?}"
    );
    let l = &view.links[0];
    assert_eq!(
        (l.direction.as_str(), l.peer.as_deref()),
        ("out", Some("B"))
    );
    assert_eq!(
        l.remote.as_deref(),
        Some(&*proxy.addr.to_string()),
        "keyed by the dialed address"
    );
    assert!(l.reconnects >= 1, "the reconnection is counted: {l:?}");
    // The accepting side keeps one entry for A too, its counters carried
    // over from the connection before the cut.
    let b_view = links(r[b].admin).await;
    assert_eq!(b_view.links.len(), 1, "one entry for A at B: {b_view:#?}");
    let from_a = &b_view.links[0];
    assert_eq!(
        (from_a.direction.as_str(), from_a.peer.as_deref()),
        ("in", Some("A"))
    );
    assert!(from_a.reconnects >= 1, "{from_a:?}");
    assert!(
        from_a.events_in > 0,
        "earlier events still counted: {from_a:?}"
    );
    // New interest on both sides crosses the restored link...
    fence(mqtt_publisher(&a_pub), "k2/probe", &[&at_b2]).await;
    fence(mqtt_publisher(&b_pub), "r2/probe", &[&at_a2]).await;
    // ... and old interest still does.
    fence(mqtt_publisher(&a_pub), "k/probe2", &[&at_b]).await;
    fence(mqtt_publisher(&b_pub), "r/probe2", &[&at_a]).await;
    wait_links(
        r[a].admin,
        "A learned exactly k/#, k2/# after the resync",
        learned("B", 2),
    )
    .await;
    wait_links(
        r[b].admin,
        "B learned exactly r/#, r2/# after the resync",
        learned("A", 2),
    )
    .await;
    for i in N..2 * N {
        publish(&a_pub, "gone/d", i.to_string()).await;
        publish(&a_pub, "gone2/d", i.to_string()).await;
        publish(&a_pub, "k/d", i.to_string()).await;
        publish(&a_pub, "k2/d", i.to_string()).await;
        publish(&b_pub, "r/d", i.to_string()).await;
        publish(&b_pub, "r2/d", i.to_string()).await;
    }
    let all_of = |topic: &'static str| {
        move |m: &[Msg]| m.iter().filter(|m| m.topic == topic).count() >= N as usize
    };
    at_b.wait_until("k/d after the restore", |m| {
        m.iter().filter(|m| m.topic == "k/d").count() >= 2 * N as usize
    })
    .await;
    at_a.wait_until("r/d after the restore", |m| {
        m.iter().filter(|m| m.topic == "r/d").count() >= 2 * N as usize
    })
    .await;
    at_b2.wait_until("k2/d", all_of("k2/d")).await;
    at_a2.wait_until("r2/d", all_of("r2/d")).await;
    // What B received from A is what A counts as sent to B: the gone/d
    // and gone2/d copies included, which A's held link (its routes that B
    // did not announce again) still draws until the hold ends, and which
    // go out on the live link.
    quiet(&r).await;
    let k_probes = fence(mqtt_publisher(&a_pub), "k/settle", &[&at_b]).await;
    let k2_probes = fence(mqtt_publisher(&a_pub), "k2/settle", &[&at_b2]).await;
    fence(mqtt_publisher(&b_pub), "r/settle", &[&at_a]).await;
    fence(mqtt_publisher(&b_pub), "r2/settle", &[&at_a2]).await;
    assert_once(&at_b, "k/d", 0..2 * N);
    assert_once(&at_a, "r/d", 0..2 * N);
    assert_once(&at_b2, "k2/d", N..2 * N);
    assert_once(&at_a2, "r2/d", N..2 * N);
    assert_eq!(
        at_b.count_prefix("gone"),
        0,
        "unsubscribed before the restore"
    );
    // A's dialed entry kept its counters across the reconnection: every
    // copy it sent B was delivered there, but for the gone/d and gone2/d
    // copies that its held link (routes B did not announce again) drew
    // until the hold ended: at most 2 N, none delivered (above), and
    // counted at both ends (`quiet` above).
    let at_b_all = [&at_b, &at_b2];
    let surplus = surplus_to(
        &r,
        a,
        "B",
        &at_b_all,
        &[
            (&at_b, "k/settle", k_probes),
            (&at_b2, "k2/settle", k2_probes),
        ],
    )
    .await;
    assert!(
        (0..=2 * N as i64).contains(&surplus),
        "A's events_out to B = deliveries at B + at most 2 N copies for withdrawn \
         filters, not {surplus} more"
    );
    // Once settled, one more probe: the surplus stays (a stray copy would
    // grow it), and the counters still balance.
    let probes = fence(mqtt_publisher(&a_pub), "k/settle2", &[&at_b]).await;
    assert_eq!(
        surplus_to(&r, a, "B", &at_b_all, &[(&at_b, "k/settle2", probes)]).await,
        surplus,
        "A's events_out to B beyond the deliveries at B, once settled"
    );
}

/// Router `from`'s `events_out` to `peer` minus the deliveries in
/// `inboxes`, read settled: first every probe the last fences published
/// has arrived (`probes`: inbox, topic, how many; a fence returns on the
/// first, and may leave later ones in flight), then the links are quiet,
/// so the admin view (rebuilt on the bridge's 50 ms tick) counts every
/// copy those deliveries came from. Read any earlier, the view may lag the
/// deliveries by a copy, or a probe counted sent may not be delivered yet.
async fn surplus_to(
    r: &Routers,
    from: usize,
    peer: &str,
    inboxes: &[&Inbox],
    probes: &[(&Inbox, &str, usize)],
) -> i64 {
    for &(inbox, topic, n) in probes {
        inbox
            .wait_until(&format!("all {n} probes on {topic}"), |m| {
                m.iter().filter(|m| m.topic == topic).count() >= n
            })
            .await;
    }
    quiet(r).await;
    let out = links(r[from].admin)
        .await
        .to(peer)
        .map_or(0, |l| l.events_out) as i64;
    out - inboxes.iter().map(|i| i.len() as i64).sum::<i64>()
}

/// Line A - B - C; B never exports `t/secret/#` to C, C never imports
/// `t/imp/#` from B. Published at A, neither is delivered at C (which
/// subscribes to `t/#` and to the denied filters themselves); B's own
/// subscriber still gets the secret events; both counters move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_topics_never_cross() {
    let policy = |i: usize| match i {
        1 => "[[mesh.policy]]\npeer = \"C\"\nexport_deny = [\"t/secret/#\"]\n".to_string(),
        2 => "[[mesh.policy]]\npeer = \"B\"\nimport_deny = [\"t/imp/#\"]\n".to_string(),
        _ => String::new(),
    };
    let r = Routers::topology(&["A", "B", "C"], &[(0, 1), (1, 2)], policy).await;
    let (_c, at_c) = subscriber(r[2].addr, "c-sub", &["t/#", "t/secret/#", "t/imp/+"]).await;
    let (_b, at_b) = subscriber(r[1].addr, "b-sub", &["t/secret/#"]).await;
    let (a_pub, _acks) = publisher(r[0].addr, "a-pub").await;
    fence(mqtt_publisher(&a_pub), "t/probe", &[&at_c]).await;
    fence(mqtt_publisher(&a_pub), "t/secret/probe", &[&at_b]).await;
    const N: u64 = 10;
    for i in 0..N {
        publish(&a_pub, "t/secret/x", i.to_string()).await;
        publish(&a_pub, "t/imp/x", i.to_string()).await;
        publish(&a_pub, "t/ok", i.to_string()).await;
    }
    publish(&a_pub, "t/end", "").await;
    at_c.wait_until("t/end", |m| m.iter().any(|m| m.topic == "t/end"))
        .await;
    at_b.wait_until("all t/secret/x at B", |m| {
        m.iter().filter(|m| m.topic == "t/secret/x").count() >= N as usize
    })
    .await;
    quiet(&r).await;
    fence(mqtt_publisher(&a_pub), "t/settle", &[&at_c]).await;
    fence(mqtt_publisher(&a_pub), "t/secret/settle", &[&at_b]).await;
    assert_once(&at_c, "t/ok", 0..N);
    let leaked: Vec<_> = at_c
        .msgs()
        .into_iter()
        .filter(|m| m.topic.starts_with("t/secret/") || m.topic.starts_with("t/imp/"))
        .collect();
    assert!(
        leaked.is_empty(),
        "denied topics delivered at C: {leaked:?}"
    );
    assert_once(&at_b, "t/secret/x", 0..N);
    let b_view = wait_links(r[1].admin, "B counts denied exports to C", |v| {
        v.to("C").is_some_and(|l| l.denied_export > 0)
    })
    .await;
    let c_view = wait_links(r[2].admin, "C counts denied imports from B", |v| {
        v.to("B").is_some_and(|l| l.denied_import > 0)
    })
    .await;
    assert_eq!(b_view.to("C").unwrap().denied_import, 0, "{b_view:#?}");
    assert_eq!(c_view.to("B").unwrap().denied_export, 0, "{c_view:#?}");
}

/// MQTT publisher on A, NATS subscribers on B (and the other way round):
/// the topic/subject mapping holds across routers as it does in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_on_one_router_nats_on_another() {
    let r = Routers::topology(&["A", "B"], &[(0, 1)], |_| String::new()).await;
    let nats_b = nats(r[1].nats).await;
    let tail = Inbox::nats("nats-b x.>", nats_b.subscribe("x.>").await.unwrap());
    let star = Inbox::nats("nats-b x.*.c", nats_b.subscribe("x.*.c").await.unwrap());
    nats_sync(&nats_b).await;
    let (a_pub, _acks) = publisher(r[0].addr, "a-mqtt-pub").await;
    fence_as(mqtt_publisher(&a_pub), "x/probe", "x.probe", &[&tail]).await;
    fence_as(mqtt_publisher(&a_pub), "x/p/c", "x.p.c", &[&star]).await;
    for i in 0..10 {
        publish(&a_pub, "x/b/c", format!("m{i}")).await;
    }
    publish(&a_pub, "x/m.n", "dot").await;
    publish(&a_pub, "x/end", "").await;
    tail.wait_until("x.end", |m| m.iter().any(|m| m.topic == "x.end"))
        .await;
    star.wait_until("ten x.b.c", |m| {
        m.iter().filter(|m| m.topic == "x.b.c").count() >= 10
    })
    .await;
    quiet(&r).await;
    fence_as(mqtt_publisher(&a_pub), "x/settle", "x.settle", &[&tail]).await;
    fence_as(mqtt_publisher(&a_pub), "x/s/c", "x.s.c", &[&star]).await;
    for inbox in [&tail, &star] {
        let mut got: Vec<_> = inbox
            .on("x.b.c")
            .into_iter()
            .map(|m| String::from_utf8(m.payload).unwrap())
            .collect();
        got.sort();
        let mut want: Vec<_> = (0..10).map(|i| format!("m{i}")).collect();
        want.sort();
        assert_eq!(got, want, "{}: each event once", inbox.name);
    }
    assert_eq!(
        tail.on("x.m//n").len(),
        1,
        "a '.' in an MQTT level is '//' in NATS"
    );
    assert!(star.on("x.m//n").is_empty() && star.on("x.end").is_empty());

    // NATS publisher on B, MQTT subscriber on A.
    let (_a_sub, at_a) = subscriber(r[0].addr, "a-mqtt-sub", &["y/#"]).await;
    let nats_pub = nats_b.clone();
    let publish_nats = move |subject: String, payload: Vec<u8>| {
        let c = nats_pub.clone();
        async move {
            c.publish(subject, payload.into()).await.unwrap();
            c.flush().await.unwrap();
        }
    };
    fence_as(&publish_nats, "y.probe", "y/probe", &[&at_a]).await;
    for i in 0..10 {
        publish_nats("y.n".into(), format!("n{i}").into_bytes()).await;
    }
    publish_nats("y.p//q".into(), b"dot".to_vec()).await;
    at_a.wait_until("y/p.q", |m| m.iter().any(|m| m.topic == "y/p.q"))
        .await;
    quiet(&r).await;
    fence_as(&publish_nats, "y.settle", "y/settle", &[&at_a]).await;
    let mut got: Vec<_> = at_a
        .on("y/n")
        .into_iter()
        .map(|m| String::from_utf8(m.payload).unwrap())
        .collect();
    got.sort();
    let mut want: Vec<_> = (0..10).map(|i| format!("n{i}")).collect();
    want.sort();
    assert_eq!(got, want, "NATS events at the MQTT subscriber, each once");
    assert_eq!(at_a.on("y/p.q").len(), 1);
}
