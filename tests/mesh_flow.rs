//! QoS 1 flow control across the mesh: a publisher that outruns the
//! links waits (its router stops reading it) instead of the resend store
//! pushing out copies it never sent. A line A – B – C with a store of a few
//! dozen copies (`mesh.unacked_max`); B stops (SIGSTOP) for a moment while
//! A's publisher sends far more than the socket buffers hold: every event
//! A acknowledged reaches C once B goes on.

mod common;

use std::net::SocketAddr;

use common::*;
use rumqttc::QoS;

/// A tiny resend store, so that a burst fills it at once.
const MESH_TOML: &str = "[mesh]
keepalive_ms = 200
link_timeout_ms = 6000
reconnect_min_ms = 50
reconnect_max_ms = 100
unacked_max = 32
outbound_bytes_max = 65536
";

fn router(id: &str, links: &[SocketAddr]) -> Weft {
    mesh_router(id, MESH_TOML, "warn", "127.0.0.1:0", links)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resend_store_holds_the_publisher_and_loses_nothing() {
    let a = router("A", &[]);
    let b = router("B", &[a.mesh.unwrap()]);
    let c = router("C", &[b.mesh.unwrap()]);
    wait_links_up(&b, 2).await;
    let mut sub = connect(c.addr, "sub-c").await;
    sub.subscribe("f/#", QoS::AtLeastOnce).await;
    let (_sub, inbox) = Inbox::mqtt(sub);
    let mut publisher = connect(a.addr, "pub-a").await;
    let probes = {
        let handle = publisher.client.clone();
        fence(mqtt_publisher(&handle), "f/probe", &[&inbox]).await
    };
    // B stops reading; a burst far larger than the store, the link's
    // buffer and the sockets' buffers together (16 MiB).
    b.signal(nix::sys::signal::Signal::SIGSTOP);
    const N: u64 = 1000;
    let payload = |i: u64| {
        let mut p = i.to_string().into_bytes();
        p.resize(16 * 1024, b' ');
        p
    };
    let burst = {
        let handle = publisher.client.clone();
        tokio::spawn(async move {
            for i in 0..N {
                handle
                    .publish("f/data", QoS::AtLeastOnce, false, payload(i))
                    .await
                    .unwrap();
            }
        })
    };
    // Less than the pause (limits.backpressure_pause_ms_max, 5 s).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    b.signal(nix::sys::signal::Signal::SIGCONT);
    burst.await.unwrap();
    publisher.pubacks(N as usize + probes).await;
    let trimmed = |msgs: &[Msg]| -> Vec<Msg> {
        msgs.iter()
            .map(|m| Msg {
                topic: m.topic.clone(),
                payload: String::from_utf8_lossy(&m.payload)
                    .trim()
                    .as_bytes()
                    .to_vec(),
            })
            .collect()
    };
    let complete = tokio::time::timeout(WAIT, async {
        loop {
            let got = seq_counts_in(&trimmed(&inbox.msgs()), "f/data").unwrap();
            if got.len() as u64 == N {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let got = seq_counts_in(&trimmed(&inbox.msgs()), "f/data").unwrap();
    let missing: Vec<u64> = (0..N).filter(|i| !got.contains_key(i)).collect();
    assert!(
        complete.is_ok() && missing.is_empty(),
        "{} of {N} acknowledged events never reached C: {:?}…; A's /links: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        links(a.admin).await
    );
    assert!(got.values().all(|&n| n == 1), "duplicates at C");
    let view = links(a.admin).await;
    let to_b = view.to("B").unwrap();
    assert_eq!(to_b.dropped, 0, "copies pushed out unsent: {to_b:?}");
    let (_, body) = admin_get(a.admin, "/links").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["resend_store_waits"].as_u64().unwrap() > 0,
        "the publisher waited for room: {json}"
    );
}
