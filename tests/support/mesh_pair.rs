//! The helpers tests/mesh_features.rs, tests/mesh_retained.rs and
//! tests/mesh_qos1.rs share: a linked pair of routers (direct or through a
//! proxy), fences on a NATS subscription, collecting deliveries once, and
//! the retained messages a router holds.

#![allow(dead_code)] // each test file uses its part

use std::collections::BTreeMap;
use std::time::Duration;

use super::common::*;
use futures::StreamExt;

/// Router A listening for links, router B dialling it; both links up.
pub fn pair(toml_a: &str, toml_b: &str) -> (Weft, Weft) {
    let a = Weft::launch_args(
        1,
        toml_a,
        &["--router-id", "A", "--mesh-listen", "127.0.0.1:0"],
    );
    let link = a.mesh.expect("A's mesh listener").to_string();
    let b = Weft::launch_args(1, toml_b, &["--router-id", "B", "--link", &link]);
    (a, b)
}

pub async fn linked(a: &Weft, b: &Weft) {
    wait_links(a.admin, "A sees B", |v| {
        v.to("B").is_some_and(|l| l.state == "up")
    })
    .await;
    wait_links(b.admin, "B sees A", |v| {
        v.to("A").is_some_and(|l| l.state == "up")
    })
    .await;
}

/// Publishes a probe on `subject` every 20 ms until `sub` yields a message
/// on it (interest travels between routers asynchronously); returns what
/// `sub` yielded before, the probes excluded.
pub async fn fence(
    publisher: &async_nats::Client,
    subject: &str,
    sub: &mut async_nats::Subscriber,
) -> Vec<async_nats::Message> {
    fence_as(publisher, subject, subject, sub).await
}

/// `fence`, for a probe that arrives as `arrives` (an import prefix).
pub async fn fence_as(
    publisher: &async_nats::Client,
    subject: &str,
    arrives: &str,
    sub: &mut async_nats::Subscriber,
) -> Vec<async_nats::Message> {
    let mut other = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        publisher
            .publish(subject.to_string(), "probe".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let wait = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                m = sub.next() => {
                    let m = m.expect("subscription open");
                    if m.subject.as_str() == arrives {
                        return other;
                    }
                    other.push(m);
                }
                _ = &mut wait => break,
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no probe on {subject} arrived in time"
        );
    }
}

/// Messages `sub` yields until it has been quiet for `quiet`.
pub async fn drain(sub: &mut async_nats::Subscriber, quiet: Duration) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, sub.next()).await {
        got.push(m);
    }
    got
}

/// B listening, A dialling it through a [`Proxy`] (so the test can cut or
/// silence the network), with fast keepalive, timeout and redial; plus
/// `extra` [mesh] keys. An MQTT subscriber on B for `{prefix}/#` (QoS 1)
/// and a publisher on A, fenced: B's interest has reached A.
pub async fn proxied_pair(prefix: &str, extra: &str) -> (Weft, Weft, Proxy, Client, Client) {
    let toml = format!(
        "[mesh]\nkeepalive_ms = 100\nlink_timeout_ms = 600\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n{extra}"
    );
    let b = Weft::launch_args(
        1,
        &toml,
        &["--router-id", "B", "--mesh-listen", "127.0.0.1:0"],
    );
    let proxy = Proxy::start(b.mesh.unwrap()).await;
    let a = Weft::launch_args(
        1,
        &toml,
        &["--router-id", "A", "--link", &proxy.addr.to_string()],
    );
    linked(&a, &b).await;
    let mut sub = connect(b.addr, &format!("{prefix}-sub")).await;
    sub.subscribe(&format!("{prefix}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let publisher = connect(a.addr, &format!("{prefix}-pub")).await;
    let probe = format!("{prefix}/probe");
    loop {
        publisher
            .publish(&probe, rumqttc::QoS::AtMostOnce, "p")
            .await;
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(50), sub.next_publish()).await {
            if p.topic == probe {
                break;
            }
        }
    }
    (a, b, proxy, sub, publisher)
}

/// Payload → how many times `sub` got it on `topic`: until `n` distinct
/// payloads arrived, then until a quiet 300 ms (to catch duplicates).
/// Also counts what arrived on `other`.
pub async fn collect_once(
    sub: &mut Client,
    topic: &str,
    other: &str,
    n: usize,
) -> (BTreeMap<String, usize>, usize) {
    let mut seen = BTreeMap::new();
    let mut others = 0;
    loop {
        let p = if seen.len() < n {
            sub.next_publish().await
        } else {
            match tokio::time::timeout(Duration::from_millis(300), sub.next_publish()).await {
                Ok(p) => p,
                Err(_) => break,
            }
        };
        if p.topic == topic {
            *seen
                .entry(String::from_utf8_lossy(&p.payload).into_owned())
                .or_insert(0usize) += 1;
        } else if p.topic == other {
            others += 1;
        }
    }
    (seen, others)
}

/// The retained messages a fresh subscription at `addr` gets for
/// `filter`, as sorted (topic, payload) pairs: everything flagged retained
/// that arrives until 150 ms pass without another.
pub async fn retained_at(addr: std::net::SocketAddr, filter: &str) -> Vec<(String, String)> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!(
        "look-{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut c = connect(addr, &id).await;
    c.subscribe(filter, rumqttc::QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    while let Ok(p) = tokio::time::timeout(Duration::from_millis(150), c.next_publish()).await {
        if !p.retain {
            continue; // a live publish, still on its way when we subscribed
        }
        got.push((
            p.topic.clone(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        ));
    }
    got.sort();
    got
}

/// Polls `retained_at` until it gives `want` (stores converge
/// asynchronously).
pub async fn wait_retained(
    name: &str,
    addr: std::net::SocketAddr,
    filter: &str,
    want: &[(&str, &str)],
) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = retained_at(addr, filter).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: {} retained, the first {:?}, want {want:?}",
            got.len(),
            &got[..got.len().min(8)]
        );
    }
}
