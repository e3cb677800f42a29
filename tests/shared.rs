//! MQTT shared subscriptions (`$share/{group}/{filter}`): each event to one
//! member of the group across shards, and a member that leaves hands its
//! unacknowledged QoS 1 events to another member.

mod common;

use std::collections::BTreeSet;

use common::*;
use rumqttc::QoS;
use weft::mqtt::codec::{self, Packet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_balances_across_shards() {
    let weft = Weft::start(3, "");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..3 {
        let mut member = connect(weft.shard_addrs[i], &format!("member{i}")).await;
        member.subscribe("$share/g/s/#", QoS::AtLeastOnce).await;
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let p = member.next_publish().await;
                if tx
                    .send((i, String::from_utf8(p.payload.to_vec()).unwrap()))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    let mut plain = connect(weft.shard_addrs[1], "plain").await;
    plain.subscribe("s/#", QoS::AtMostOnce).await;
    let mut publisher = connect(weft.shard_addrs[0], "pub").await;
    let n = 300;
    for i in 0..n {
        publisher
            .publish("s/x", QoS::AtLeastOnce, format!("{i}"))
            .await;
    }
    publisher.pubacks(n).await;
    for _ in 0..n {
        plain.next_publish().await;
    }
    let mut seen = BTreeSet::new();
    let mut per_member = [0; 3];
    for _ in 0..n {
        let (member, payload) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            seen.insert(payload.clone()),
            "{payload} delivered twice in the group"
        );
        per_member[member] += 1;
    }
    assert!(
        per_member.iter().all(|&c| c > 0),
        "every member gets some: {per_member:?}"
    );
    // No retained messages for shared subscriptions, and no extra copies:
    // a round trip through the router later, nothing more is queued.
    publisher.subscribe("probe", QoS::AtMostOnce).await;
    assert!(rx.try_recv().is_err(), "an extra delivery in the group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_member_hands_its_unacknowledged_events_to_the_group() {
    let weft = Weft::start(2, "[limits]\ninflight_max = 8\n");
    // A member that reads but never acknowledges.
    let mut stingy = Raw::connected(weft.shard_addrs[0], "stingy", 0).await;
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 1,
            filters: vec![("$share/w/w/1", 1)],
        },
        &mut out,
    );
    stingy.send(&out).await;
    assert_eq!(stingy.read_exact(5).await, vec![0x90, 3, 0, 1, 1]);
    let mut good = connect(weft.shard_addrs[1], "good").await;
    good.subscribe("$share/w/w/1", QoS::AtLeastOnce).await;

    let mut publisher = connect(weft.shard_addrs[1], "pub").await;
    let n = 100;
    for i in 0..n {
        publisher
            .publish("w/1", QoS::AtLeastOnce, format!("{i}"))
            .await;
    }
    publisher.pubacks(n).await;
    // The stingy member got its first PUBLISH; now it leaves.
    assert_eq!(stingy.read_exact(1).await[0] & 0xf0, 0x30);
    drop(stingy);
    let mut got = Vec::new();
    let mut unique = BTreeSet::new();
    while unique.len() < n {
        let p = good.next_publish().await;
        let payload = String::from_utf8(p.payload.to_vec()).unwrap();
        unique.insert(payload.clone());
        got.push(payload);
    }
    assert_eq!(
        got.len(),
        n,
        "each event once: {} deliveries for {n}",
        got.len()
    );
}
