//! A mesh router killed (`kill -9`) and restarted in the middle of a line,
//! with QoS 1 traffic flowing through it: no event that the publisher's
//! router acknowledged may be lost (issue 10, defect 1).
//!
//! Line A – B – C, one shard each; A and C dial B, C redials more slowly
//! than A (so the restarted B meets A's resent copies before C is back:
//! the order in which the loss showed). A persistent QoS 1 subscriber on C,
//! a QoS 1 publisher on A, one event every 5 ms. B is killed, restarted on
//! the same mesh port ~2 s later, and again for a second round. Every
//! event A acknowledged must reach C, and only once (the far side drops
//! resent copies by (origin, event id)).
//!
//! Nothing here asserts a time; every wait is bounded by `common::WAIT`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, QoS};

const MESH_TOML: &str = "[mesh]
keepalive_ms = 200
link_timeout_ms = 2000
link_hold_ms = 15000
";

/// A and B redial quickly; C slowly (it comes back after A).
const FAST_REDIAL: &str = "reconnect_min_ms = 50\nreconnect_max_ms = 100\n";
const SLOW_REDIAL: &str = "reconnect_min_ms = 700\nreconnect_max_ms = 900\n";

fn router(id: &str, mesh_listen: &str, links: &[SocketAddr], redial: &str) -> Weft {
    mesh_router(
        id,
        &format!("{MESH_TOML}{redial}"),
        "info",
        mesh_listen,
        links,
    )
}

fn dump(name: &str, weft: &Weft) {
    eprintln!("----- router {name}: stderr -----");
    for line in weft.stderr_lines() {
        eprintln!("{name}| {line}");
    }
}

/// A persistent (clean session 0) QoS 1 subscriber.
async fn persistent_subscriber(addr: SocketAddr, id: &str, filter: &str) -> (AsyncClient, Inbox) {
    let mut client = connect_session(addr, id, false).await;
    let codes = client.subscribe(filter, QoS::AtLeastOnce).await;
    assert!(
        matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
        "{id}: SUBACK for {filter}: {codes:?}"
    );
    Inbox::mqtt(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_qos1_survives_a_mesh_router_restart() {
    // B's mesh port outlives B: a fixed one, outside the ephemeral range.
    let b_listen = format!("127.0.0.1:{}", common::ports::free_port_block(1));
    let mut b = router("B", &b_listen, &[], FAST_REDIAL);
    let b_mesh = b.mesh.unwrap();
    let a = router("A", "127.0.0.1:0", &[b_mesh], FAST_REDIAL);
    let c = router("C", "127.0.0.1:0", &[b_mesh], SLOW_REDIAL);
    wait_links_up(&b, 2).await;
    wait_links_up(&a, 1).await;
    wait_links_up(&c, 1).await;

    let (_sub, inbox) = persistent_subscriber(c.addr, "sub-c", "p/#").await;
    let (publisher, mut acks) = {
        let client = connect(a.addr, "pub-a").await;
        let handle = client.client.clone();
        (handle, client)
    };
    // Interest has travelled C → B → A when a probe arrives.
    let probes = fence(mqtt_publisher(&publisher), "p/probe", &[&inbox]).await;

    // Publishes every 5 ms in the background, counting as it goes.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pump = {
        let publisher = publisher.clone();
        let sent = sent.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                publisher
                    .publish("p/data", QoS::AtLeastOnce, false, n.to_string())
                    .await
                    .unwrap();
                n += 1;
                sent.store(n, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    const ROUNDS: usize = 2;
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(700)).await;
        // kill -9 (the harness's drop is SIGKILL), then 2 s down.
        drop(b);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Same mesh port (the bind waits out the killed process's sockets).
        b = router("B", &b_mesh.to_string(), &[], FAST_REDIAL);
        let up = tokio::time::timeout(WAIT, async {
            loop {
                let view = links(b.admin).await;
                if view.up() >= 2 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if up.is_err() {
            dump("A", &a);
            dump("B", &b);
            dump("C", &c);
            panic!("round {round}: B's links did not come back");
        }
    }
    // Some traffic after the last return, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pump.await.unwrap();
    let n = sent.load(std::sync::atomic::Ordering::Relaxed);
    // A acknowledged every one of them (and the probes).
    acks.pubacks(n as usize + probes).await;

    let complete = tokio::time::timeout(WAIT, async {
        loop {
            let counts = seq_counts(&inbox, "p/data");
            if (0..n).all(|i| counts.contains_key(&i)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let counts = seq_counts(&inbox, "p/data");
    let missing: Vec<u64> = (0..n).filter(|i| !counts.contains_key(i)).collect();
    let dups: Vec<_> = counts.iter().filter(|(_, &k)| k > 1).collect();
    if complete.is_err() || !dups.is_empty() {
        for (name, w) in [("A", &a), ("B", &b), ("C", &c)] {
            let (_, body) = admin_get(w.admin, "/links").await;
            eprintln!("{name} /links: {body}");
        }
        dump("B", &b);
    }
    assert!(
        missing.is_empty(),
        "{} of {n} acknowledged events never reached C: {:?}…",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(dups.is_empty(), "duplicates at C (seq, times): {dups:?}");
    // Nothing was given up for lack of a route on the way.
    for (name, w) in [("A", &a), ("B", &b), ("C", &c)] {
        let view = links(w.admin).await;
        assert_eq!(view.no_route, Some(0), "{name}: destinations dropped");
    }
}

/// An operator sees why a link is not up: a dial to an address where
/// nothing listens is logged at warn (the default level shows it) and
/// `/links` gives the reason; a peer whose link dropped stays in the list,
/// as held, with the reason it went down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_say_why_they_are_down() {
    // A port where nothing listens.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = mesh_router("A", MESH_TOML, "warn", "127.0.0.1:0", &[nowhere]);
    let line = a.wait_for_log("mesh: dial failed");
    assert!(
        line.contains("WARN") && line.contains(&nowhere.to_string()),
        "{line}"
    );
    let view = wait_links(a.admin, "the dial's error in /links", |v| {
        v.links
            .iter()
            .any(|l| l.last_error.as_deref().is_some_and(|e| e.contains("dial")))
    })
    .await;
    let slot = &view.links[0];
    assert_eq!(slot.state, "connecting");
    assert_eq!(slot.remote.as_deref(), Some(&*nowhere.to_string()));
    assert!(
        slot.last_error.as_deref().unwrap().contains("refused"),
        "{slot:?}"
    );

    // B dials A and has a subscriber: A holds B's link when B dies, and
    // keeps showing it (an accepted link, gone) as held, with the reason.
    let b = router("B", "127.0.0.1:0", &[a.mesh.unwrap()], FAST_REDIAL);
    wait_links_up(&b, 1).await;
    let (_sub, inbox) = persistent_subscriber(b.addr, "sub-b", "h/#").await;
    let (publisher, _acks) = {
        let client = connect(a.addr, "pub-a").await;
        (client.client.clone(), client)
    };
    fence(mqtt_publisher(&publisher), "h/probe", &[&inbox]).await;
    drop(b);
    let view = wait_links(a.admin, "B's link held", |v| {
        v.held_peers == ["B"] && v.to("B").is_some_and(|l| l.state == "held")
    })
    .await;
    let held = view.to("B").unwrap();
    assert_eq!(held.direction, "in");
    assert!(
        held.last_error
            .as_deref()
            .is_some_and(|e| e.contains("link down")),
        "{held:?}"
    );
}
