//! QoS 1 copies across link faults, against real `weft` processes linked
//! on 127.0.0.1 through a proxy the test cuts or silences: copies lost in
//! the network are resent, copies published while a link is down wait for
//! it, and custody acknowledges upstream (counted in /metrics).

mod common;
#[path = "support/mesh_pair.rs"]
mod mesh_pair;

use std::time::Duration;

use common::*;
use mesh_pair::{collect_once, proxied_pair};

/// QoS 1 hop by hop: copies sent into a network that silently loses them
/// are kept until acknowledged, and resent when the link is back; the far
/// subscriber gets every one exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_copies_lost_in_the_network_are_resent() {
    let (a, _b, proxy, mut sub, mut publisher) = proxied_pair("q", "").await;
    // The network goes silent: what A sends now is lost on the way.
    proxy.blackhole();
    const N: usize = 50;
    for i in 0..N {
        publisher
            .publish("q/data", rumqttc::QoS::AtLeastOnce, format!("{i}"))
            .await;
    }
    // A acknowledged them to the publisher (they are A's responsibility now).
    publisher.pubacks(N).await;
    let held = wait_links(a.admin, "A holds unacknowledged copies", |v| {
        v.to("B").is_some_and(|l| l.unacked >= N as u64)
    })
    .await;
    assert_eq!(held.to("B").unwrap().unacked, N as u64);
    // A notices the silence and drops the link; the network comes back.
    wait_links(a.admin, "A dropped the silent link", |v| {
        v.to("B").is_some_and(|l| l.state != "up")
    })
    .await;
    proxy.restore();
    let (seen, _) = collect_once(&mut sub, "q/data", "", N).await;
    assert_eq!(seen.len(), N);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    wait_links(a.admin, "A's copies acknowledged", |v| {
        v.to("B").is_some_and(|l| l.state == "up" && l.unacked == 0)
    })
    .await;
}

/// A link that drops (the network between A and B cut, B's subscriber
/// reachable only through it): A keeps B's interest for mesh.link_hold_ms,
/// the QoS 1 events published meanwhile wait at A and reach B once the
/// link is back; QoS 0 ones are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_published_while_a_link_is_down_waits_for_it() {
    let (a, _b, proxy, mut sub, mut publisher) = proxied_pair("h", "link_hold_ms = 20000\n").await;
    proxy.cut();
    wait_links(a.admin, "A lost the link", |v| {
        v.to("B").is_some_and(|l| l.state != "up")
    })
    .await;
    const N: usize = 40;
    for i in 0..N {
        publisher
            .publish("h/data", rumqttc::QoS::AtLeastOnce, format!("{i}"))
            .await;
        publisher
            .publish("h/lossy", rumqttc::QoS::AtMostOnce, format!("{i}"))
            .await;
    }
    publisher.pubacks(N).await;
    proxy.restore();
    let (seen, lossy) = collect_once(&mut sub, "h/data", "h/lossy", N).await;
    assert_eq!(seen.len(), N);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert_eq!(lossy, 0, "QoS 0 events are not kept for a held link");
    let (_, body) = admin_get(a.admin, "/links").await;
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["held_dropped"], N as u64, "{view}");
    assert_eq!(
        view["held_links"], 0,
        "the hold ended with the peer's return"
    );
}

/// `weft_mesh_custody_total` on `admin`'s /metrics.
async fn custody_metric(admin: std::net::SocketAddr) -> u64 {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| {
            l.strip_prefix("weft_mesh_custody_total ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no weft_mesh_custody_total in /metrics:\n{body}"))
}

/// Custody (`mesh.custody_ms`): A → B → C, C frozen (SIGSTOP) so that it
/// never acknowledges B's copies. B acknowledges A's QoS 1 copies all the
/// same after custody_ms (counted in `weft_mesh_custody_total` and in
/// /links on the link to A), keeping its own copies for C; C, thawed,
/// still gets every one. A router with custody off (B in the first run)
/// counts none and A's copies stay unacknowledged while C is frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custody_acknowledges_upstream_and_is_counted() {
    for custody_ms in [0u64, 300] {
        let toml = format!(
            "[mesh]\nkeepalive_ms = 100\nlink_timeout_ms = 15000\ncustody_ms = {custody_ms}\n"
        );
        let b = Weft::launch_args(
            1,
            &toml,
            &["--router-id", "B", "--mesh-listen", "127.0.0.1:0"],
        );
        let at_b = b.mesh.unwrap().to_string();
        let a = Weft::launch_args(1, &toml, &["--router-id", "A", "--link", &at_b]);
        let c = Weft::launch_args(1, &toml, &["--router-id", "C", "--link", &at_b]);
        wait_links_up(&b, 2).await;
        assert_eq!(custody_metric(b.admin).await, 0);
        let mut sub = connect(c.addr, &format!("cu-sub-{custody_ms}")).await;
        sub.subscribe("cu/#", rumqttc::QoS::AtLeastOnce).await;
        let mut publisher = connect(a.addr, &format!("cu-pub-{custody_ms}")).await;
        // Fence: C's interest reached A (through B).
        loop {
            publisher
                .publish("cu/probe", rumqttc::QoS::AtMostOnce, "p")
                .await;
            if let Ok(p) = tokio::time::timeout(Duration::from_millis(50), sub.next_publish()).await
            {
                if p.topic == "cu/probe" {
                    break;
                }
            }
        }
        c.signal(nix::sys::signal::Signal::SIGSTOP);
        const N: usize = 5;
        for i in 0..N {
            publisher
                .publish("cu/data", rumqttc::QoS::AtLeastOnce, format!("{i}"))
                .await;
        }
        publisher.pubacks(N).await;
        if custody_ms > 0 {
            wait_links(a.admin, "B acknowledged A's copies by custody", |v| {
                v.to("B").is_some_and(|l| l.unacked == 0)
            })
            .await;
            // B's view is refreshed on its own tick: wait for it.
            wait_until("B counts its custody", WAIT, || async {
                let n = custody_metric(b.admin).await;
                if n >= N as u64 {
                    Ok(())
                } else {
                    Err(format!("weft_mesh_custody_total {n}"))
                }
            })
            .await;
            let (_, body) = admin_get(b.admin, "/links").await;
            let view: serde_json::Value = serde_json::from_str(&body).unwrap();
            let to_a = view["links"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["peer"] == "A")
                .expect("B's link to A");
            assert!(to_a["custody"].as_u64() >= Some(N as u64), "{view}");
            // B still owes C its copies.
            assert!(links(b.admin).await.to("C").unwrap().unacked >= N as u64);
        } else {
            // Give custody a chance it does not have: B's copies for C are
            // out and unacknowledged; A's stay owed.
            wait_links(b.admin, "B's copies for C are out", |v| {
                v.to("C").is_some_and(|l| l.unacked >= N as u64)
            })
            .await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            assert_eq!(links(a.admin).await.to("B").unwrap().unacked, N as u64);
            assert_eq!(custody_metric(b.admin).await, 0);
        }
        c.signal(nix::sys::signal::Signal::SIGCONT);
        let (seen, _) = collect_once(&mut sub, "cu/data", "", N).await;
        assert_eq!(seen.len(), N, "{seen:?}");
        wait_links(a.admin, "A's copies acknowledged", |v| {
            v.to("B").is_some_and(|l| l.unacked == 0)
        })
        .await;
    }
}
