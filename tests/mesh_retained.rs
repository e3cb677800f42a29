//! Retained messages across the mesh, against real `weft` processes linked
//! on 127.0.0.1: every router stores them, the stores resynchronise when a
//! router joins or returns, the exchange stops at an import prefix and ends
//! when tombstones overflow, and a retained QoS 0 message published while
//! a link is held still reaches the peer.

mod common;
#[path = "support/mesh_pair.rs"]
mod mesh_pair;

use std::time::Duration;

use common::*;
use mesh_pair::{fence, linked, pair, proxied_pair, wait_retained};

/// Every router keeps every retained message: a subscriber that arrives
/// later at a router that had no interest when it was published still gets
/// it, from that router's own store; a deletion travels the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_reach_every_router() {
    let (a, b) = pair("", "");
    linked(&a, &b).await;
    // B has no subscriber at all. Fence: a plain probe subscriber on a
    // topic of its own shows that A already knows B (and B's interest in
    // retained messages, announced when its bridge started).
    let na = nats(a.nats).await;
    let nb = nats(b.nats).await;
    let mut fence_sub = nb.subscribe("fence.>").await.unwrap();
    nats_sync(&nb).await;
    fence(&na, "fence.probe", &mut fence_sub).await;
    drop(fence_sub);
    let publisher = connect(a.addr, "retainer").await;
    publisher
        .publish_retained("state/door", rumqttc::QoS::AtLeastOnce, "open")
        .await;
    // Stored at B: fresh subscriptions there get it, flagged retained.
    wait_retained("B", b.addr, "state/#", &[("state/door", "open")]).await;
    // An empty retained publish deletes it everywhere.
    publisher
        .publish_retained("state/door", rumqttc::QoS::AtLeastOnce, "")
        .await;
    wait_retained("B after the deletion", b.addr, "state/#", &[]).await;
}

/// `GET /links` sampled until `field` summed over all links stops moving
/// for 600 ms (the retained exchange has ended); panics if it never does.
async fn settles(name: &str, admin: std::net::SocketAddr) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = links(admin).await.sum(|l| l.events_out);
    loop {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let now = links(admin).await.sum(|l| l.events_out);
        if now == last {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: copies out still growing ({last} -> {now}): the exchange never ends"
        );
        last = now;
    }
}

/// A router that joins later gets the retained messages published before
/// (not the deleted ones); after a partition in which each side changed
/// its store (QoS 0: no copy waits for the link), both converge on the
/// last writer of each topic, deletions included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_stores_resync_when_a_router_joins_or_returns() {
    let toml = "[mesh]\nkeepalive_ms = 100\nlink_timeout_ms = 600\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n";
    let a = Weft::launch_args(
        1,
        toml,
        &["--router-id", "A", "--mesh-listen", "127.0.0.1:0"],
    );
    let at_a = connect(a.addr, "at-a").await;
    for (t, p) in [("r/1", "a1"), ("r/2", "a2"), ("r/3", "gone soon")] {
        at_a.publish_retained(t, rumqttc::QoS::AtLeastOnce, p).await;
    }
    at_a.publish_retained("r/3", rumqttc::QoS::AtLeastOnce, "")
        .await;
    wait_retained("A", a.addr, "r/#", &[("r/1", "a1"), ("r/2", "a2")]).await;

    // B joins: it gets A's store, not the deleted message.
    let proxy = Proxy::start(a.mesh.unwrap()).await;
    let b = Weft::launch_args(
        1,
        toml,
        &["--router-id", "B", "--link", &proxy.addr.to_string()],
    );
    wait_retained(
        "B after joining",
        b.addr,
        "r/#",
        &[("r/1", "a1"), ("r/2", "a2")],
    )
    .await;
    let (_, body) = admin_get(b.admin, "/links").await;
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    // r/1, r/2 and r/3's tombstone came in the exchange.
    assert!(view["retained_accepted"].as_u64() >= Some(3), "{view}");
    let (_, body) = admin_get(a.admin, "/links").await;
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(view["retained_sent"].as_u64() >= Some(3), "{view}");

    // Apart, each side changes its store.
    proxy.cut();
    wait_links(a.admin, "A lost B", |v| v.up() == 0).await;
    wait_links(b.admin, "B lost A", |v| v.up() == 0).await;
    let at_b = connect(b.addr, "at-b").await;
    at_a.publish_retained("r/1", rumqttc::QoS::AtMostOnce, "a1-new")
        .await;
    at_b.publish_retained("r/2", rumqttc::QoS::AtMostOnce, "")
        .await;
    at_b.publish_retained("r/4", rumqttc::QoS::AtMostOnce, "b4")
        .await;
    wait_retained(
        "A apart",
        a.addr,
        "r/#",
        &[("r/1", "a1-new"), ("r/2", "a2")],
    )
    .await;
    wait_retained("B apart", b.addr, "r/#", &[("r/1", "a1"), ("r/4", "b4")]).await;

    // Together again: the last writer of each topic wins on both sides.
    proxy.restore();
    let merged = [("r/1", "a1-new"), ("r/4", "b4")];
    wait_retained("A after the heal", a.addr, "r/#", &merged).await;
    wait_retained("B after the heal", b.addr, "r/#", &merged).await;
    let (_, body) = admin_get(a.admin, "/links").await;
    assert!(body.contains(r#""state":"up""#), "{body}");
}

/// The retained exchange across an import prefix: B links to A (whose
/// events it imports under `a/`) and to C. C's store reaches B and, through
/// B, A; A's store does not cross the prefixed link (its copies would
/// arrive as `a/...` topics and travel on as topics of their own), and
/// nothing echoes into `a/...` topics anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retained_exchange_stops_at_an_import_prefix() {
    let listen = ["--mesh-listen", "127.0.0.1:0"];
    let a = Weft::launch_args(1, "", &["--router-id", "A", listen[0], listen[1]]);
    let c = Weft::launch_args(1, "", &["--router-id", "C", listen[0], listen[1]]);
    let at_a = connect(a.addr, "at-a").await;
    at_a.publish_retained("t1", rumqttc::QoS::AtLeastOnce, "from A")
        .await;
    let at_c = connect(c.addr, "at-c").await;
    at_c.publish_retained("x", rumqttc::QoS::AtLeastOnce, "from C")
        .await;
    wait_retained("A alone", a.addr, "#", &[("t1", "from A")]).await;
    wait_retained("C alone", c.addr, "#", &[("x", "from C")]).await;
    let b = Weft::launch_args(
        1,
        "[[mesh.policy]]\npeer = \"A\"\nimport_prefix = \"a/\"\n",
        &[
            "--router-id",
            "B",
            "--link",
            &a.mesh.unwrap().to_string(),
            "--link",
            &c.mesh.unwrap().to_string(),
        ],
    );
    wait_links_up(&b, 2).await;
    let c_x = ("x", "from C");
    wait_retained("A", a.addr, "#", &[("t1", "from A"), c_x]).await;
    wait_retained("B", b.addr, "#", &[c_x]).await;
    for (name, w) in [("A", &a), ("B", &b), ("C", &c)] {
        settles(name, w.admin).await;
    }
    wait_retained("A at rest", a.addr, "#", &[("t1", "from A"), c_x]).await;
    wait_retained("B at rest", b.addr, "#", &[c_x]).await;
    wait_retained("C at rest", c.addr, "#", &[c_x]).await;
}

/// Three routers in a triangle, each with deletions of its own made while
/// apart, more than the tombstones any of them keeps
/// (`retained_messages_max` = 2): once the links come up the exchange ends
/// (a deletion no newer than a forgotten one is not taken back and passed
/// round again) and the stores agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retained_exchange_ends_when_tombstones_overflow() {
    let toml = "[limits]\nretained_messages_max = 2\n[mesh]\nkeepalive_ms = 100\nlink_timeout_ms = 600\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n";
    let listen = ["--mesh-listen", "127.0.0.1:0"];
    let a = Weft::launch_args(1, toml, &["--router-id", "A", listen[0], listen[1]]);
    let b_to_a = Proxy::start(a.mesh.unwrap()).await;
    let c_to_a = Proxy::start(a.mesh.unwrap()).await;
    b_to_a.cut();
    c_to_a.cut();
    let b = Weft::launch_args(
        1,
        toml,
        &[
            "--router-id",
            "B",
            listen[0],
            listen[1],
            "--link",
            &b_to_a.addr.to_string(),
        ],
    );
    let c_to_b = Proxy::start(b.mesh.unwrap()).await;
    c_to_b.cut();
    let c = Weft::launch_args(
        1,
        toml,
        &[
            "--router-id",
            "C",
            "--link",
            &c_to_a.addr.to_string(),
            "--link",
            &c_to_b.addr.to_string(),
        ],
    );
    for (name, w) in [("a", &a), ("b", &b), ("c", &c)] {
        let client = connect(w.addr, &format!("at-{name}")).await;
        for i in 0..3 {
            client
                .publish_retained(&format!("d{name}{i}"), rumqttc::QoS::AtMostOnce, "")
                .await;
        }
        if name == "a" {
            client
                .publish_retained("keep", rumqttc::QoS::AtLeastOnce, "k")
                .await;
            wait_retained(name, w.addr, "#", &[("keep", "k")]).await;
        }
    }
    for p in [&b_to_a, &c_to_a, &c_to_b] {
        p.restore();
    }
    wait_links_up(&a, 2).await;
    wait_links_up(&b, 2).await;
    wait_links_up(&c, 2).await;
    for (name, w) in [("A", &a), ("B", &b), ("C", &c)] {
        settles(name, w.admin).await;
        wait_retained(name, w.addr, "#", &[("keep", "k")]).await;
    }
}

/// A retained message published with QoS 0 on A while the link to B is
/// cut (and held: B's interest kept) reaches B's store once the link is
/// back: a new subscriber at B gets it. (The store exchange after the
/// heal would bring it too; that A kept the copy for the held link is
/// what `held_dropped` shows.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_qos0_message_published_while_a_link_is_held_reaches_the_peer() {
    let (a, b, proxy, _sub, publisher) = proxied_pair("rh", "link_hold_ms = 20000\n").await;
    proxy.cut();
    wait_links(a.admin, "A holds the link", |v| {
        v.to("B").is_some_and(|l| l.state == "held")
    })
    .await;
    publisher
        .publish_retained("rh/door", rumqttc::QoS::AtMostOnce, "shut")
        .await;
    wait_retained("A apart", a.addr, "rh/door", &[("rh/door", "shut")]).await;
    proxy.restore();
    wait_retained(
        "B after the heal",
        b.addr,
        "rh/door",
        &[("rh/door", "shut")],
    )
    .await;
    // It came as the copy A kept for the held link (not only through the
    // store exchange that follows the heal): A dropped none.
    let (_, body) = admin_get(a.admin, "/links").await;
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["held_dropped"], 0, "{view}");
}

/// The same across an import prefix, where the retained-store exchange
/// that follows a link coming up does not carry A's store (see
/// `the_retained_exchange_stops_at_an_import_prefix`): only the copy A
/// kept for the held link brings the message to B, as `a/...`. Before
/// retained copies were kept whatever their QoS (commit 138d158) it was
/// dropped at A and B never had it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_qos0_message_held_for_a_prefixed_link_reaches_the_peer() {
    let toml = "[mesh]\nkeepalive_ms = 100\nlink_timeout_ms = 600\nreconnect_min_ms = 50\nreconnect_max_ms = 200\nlink_hold_ms = 20000\n";
    let b = Weft::launch_args(
        1,
        &format!("{toml}[[mesh.policy]]\npeer = \"A\"\nimport_prefix = \"a/\"\n"),
        &["--router-id", "B", "--mesh-listen", "127.0.0.1:0"],
    );
    let proxy = Proxy::start(b.mesh.unwrap()).await;
    let a = Weft::launch_args(
        1,
        toml,
        &["--router-id", "A", "--link", &proxy.addr.to_string()],
    );
    linked(&a, &b).await;
    let publisher = connect(a.addr, "rp-pub").await;
    // A live retained copy crosses the prefixed link (and shows that A
    // knows B).
    publisher
        .publish_retained("rp/before", rumqttc::QoS::AtMostOnce, "1")
        .await;
    wait_retained("B", b.addr, "a/rp/#", &[("a/rp/before", "1")]).await;
    proxy.cut();
    wait_links(a.admin, "A holds the link", |v| {
        v.to("B").is_some_and(|l| l.state == "held")
    })
    .await;
    publisher
        .publish_retained("rp/during", rumqttc::QoS::AtMostOnce, "2")
        .await;
    wait_retained(
        "A apart",
        a.addr,
        "rp/#",
        &[("rp/before", "1"), ("rp/during", "2")],
    )
    .await;
    proxy.restore();
    wait_retained(
        "B after the heal",
        b.addr,
        "a/rp/#",
        &[("a/rp/before", "1"), ("a/rp/during", "2")],
    )
    .await;
}
