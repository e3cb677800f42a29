//! Unsubscribing and disconnecting release everything: after all clients
//! leave, every shard's trie, interest entries and session table are empty.
//! Runs the router in-process to read its internal counts, with real
//! sockets and rumqttc clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rumqttc::QoS;
use weft::config::{Config, Overrides};

fn start(shards: usize) -> weft::Router {
    let mut config = Config::default();
    config.mqtt.shard_listeners = true;
    config.apply(&Overrides {
        mqtt_listen: Some("127.0.0.1:0".into()),
        nats_listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        cores: Some("0,1".into()),
        ..Default::default()
    });
    weft::Router::start(config.resolve(&[0, 1]).unwrap()).unwrap()
}

/// Waits (bounded) until `check` holds on the published counters.
fn eventually(
    router: &weft::Router,
    what: &str,
    check: impl Fn(&weft::shard::stats::Snapshot) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = router.stats();
        if check(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: counters stuck at {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_released_after_clients_leave() {
    let router = start(4);
    let shards = router.shard_addrs().to_vec();
    let filters = [
        "a/b/c",
        "a/+/c",
        "a/#",
        "#",
        "+/+/+",
        "$SYS/x",
        "a//c",
        "deep/1/2/3/4/5",
    ];
    let mut clients = Vec::new();
    for (i, addr) in shards.iter().enumerate() {
        for j in 0..3 {
            let mut c = connect(*addr, &format!("r{i}-{j}")).await;
            for f in filters {
                c.subscribe(f, QoS::AtLeastOnce).await;
            }
            clients.push(c);
        }
    }
    let n = clients.len() as u64;
    // The counts move: 12 sessions × 8 filters, and every shard knows the
    // other three want each filter.
    eventually(&router, "subscribed", |s| {
        s.sessions == n && s.subscriptions == n * 8 && s.remote_interest_entries == 4 * 3 * 8
    });
    // Some leave by UNSUBSCRIBE, some by DISCONNECT, some by dropping TCP.
    for (k, c) in clients.iter_mut().enumerate() {
        if k % 3 == 0 {
            for f in filters {
                c.unsubscribe(f).await;
            }
        }
    }
    eventually(&router, "unsubscribed", |s| s.subscriptions == (n - 4) * 8);
    for (k, mut c) in clients.into_iter().enumerate() {
        if k % 2 == 0 {
            c.client.disconnect().await.unwrap();
            // Fence: the router closes the connection once it has the
            // DISCONNECT, and the client's event loop ends.
            tokio::time::timeout(WAIT, async { while c.recv_any().await.is_some() {} })
                .await
                .unwrap_or_else(|_| panic!("{}: connection not closed after DISCONNECT", c.id));
        }
        drop(c);
    }
    eventually(&router, "released", |s| {
        s.sessions == 0
            && s.connections == 0
            && s.subscriptions == 0
            && s.trie_nodes == 0
            && s.remote_interest_entries == 0
    });
    router.shutdown();
    router.join();
}
