//! Mesh features beyond topology, against real `weft` processes linked on
//! 127.0.0.1: queue groups across routers, link policy (export allow list,
//! import prefix), protocol metadata carried over a link, a hello refused
//! for a mesh-name mismatch, a stalled subscriber and bad link input, the
//! two placements of the bridge. Retained messages across the mesh are in
//! tests/mesh_retained.rs, QoS 1 copies across link faults in
//! tests/mesh_qos1.rs; the helpers they share in tests/support/mesh_pair.rs.

mod common;
#[path = "support/mesh_pair.rs"]
mod mesh_pair;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use mesh_pair::{collect_once, drain, fence, fence_as, linked, pair};

/// NATS queue groups and MQTT shared subscriptions across routers: one
/// delivery per group in the whole mesh, local members first, and the far
/// router's members once the near ones are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_deliver_once_across_routers() {
    let (a, b) = pair("", "");
    linked(&a, &b).await;
    let na = nats(a.nats).await;
    let nb = nats(b.nats).await;
    // Group "w": one NATS member on each router and an MQTT $share member
    // on B (the same group: one mechanism). A plain subscriber on B too.
    let mut member_a = na.queue_subscribe("jobs.>", "w".into()).await.unwrap();
    let mut member_b = nb.queue_subscribe("jobs.>", "w".into()).await.unwrap();
    let mut shared_b = connect(b.addr, "shared-b").await;
    shared_b
        .subscribe("$share/w/jobs/#", rumqttc::QoS::AtMostOnce)
        .await;
    let mut plain_b = nb.subscribe("jobs.>").await.unwrap();
    nats_sync(&na).await;
    nats_sync(&nb).await;
    // B's plain interest reaching A also means B's group interest did (one
    // ordered stream of announcements).
    fence(&na, "jobs.probe", &mut plain_b).await;

    const N: usize = 100;
    for i in 0..N {
        na.publish("jobs.run", format!("{i}").into()).await.unwrap();
    }
    na.flush().await.unwrap();
    let plain = drain(&mut plain_b, Duration::from_millis(500)).await;
    let at_a = drain(&mut member_a, Duration::from_millis(300)).await;
    let at_b = drain(&mut member_b, Duration::from_millis(100)).await;
    let mut shared = Vec::new();
    while let Ok(p) =
        tokio::time::timeout(Duration::from_millis(100), shared_b.next_publish()).await
    {
        shared.push(p);
    }
    let data = |ms: &[async_nats::Message]| {
        ms.iter()
            .filter(|m| m.subject.as_str() == "jobs.run")
            .count()
    };
    assert_eq!(data(&plain), N, "the plain subscriber gets every event");
    // A has a member: every event goes to it, none crosses for the group.
    assert_eq!(data(&at_a), N, "local member preferred");
    assert_eq!(data(&at_b), 0);
    assert!(shared.iter().all(|p| p.topic != "jobs/run"));

    // A's member leaves: the group's members are all on B now.
    member_a.unsubscribe().await.unwrap();
    nats_sync(&na).await;
    for i in 0..N {
        na.publish("jobs.run", format!("{i}").into()).await.unwrap();
    }
    na.flush().await.unwrap();
    let plain = drain(&mut plain_b, Duration::from_millis(500)).await;
    let at_b = drain(&mut member_b, Duration::from_millis(300)).await;
    let mut shared = Vec::new();
    while let Ok(p) =
        tokio::time::timeout(Duration::from_millis(300), shared_b.next_publish()).await
    {
        shared.push(p);
    }
    assert_eq!(data(&plain), N);
    // Each event once in the group, across NATS and MQTT members on B.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in at_b.iter().filter(|m| m.subject.as_str() == "jobs.run") {
        *seen
            .entry(String::from_utf8_lossy(&m.payload).into_owned())
            .or_default() += 1;
    }
    for p in shared.iter().filter(|p| p.topic == "jobs/run") {
        *seen
            .entry(String::from_utf8_lossy(&p.payload).into_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), N, "every event reached the group");
    assert!(seen.values().all(|&n| n == 1), "once each: {seen:?}");
}

/// Export allow list on A's side of the link, import prefix on B's: only
/// allowed topics leave A, counted when refused, and they arrive at B under
/// the prefix; B's interest is advertised to A without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_allow_list_and_import_prefix() {
    let (a, b) = pair(
        r#"
[[mesh.policy]]
peer = "B"
export_allow = ["pub/#"]
export_deny = ["pub/secret/#"]
"#,
        r#"
[[mesh.policy]]
peer = "A"
import_prefix = "from-a/"
"#,
    );
    linked(&a, &b).await;
    let na = nats(a.nats).await;
    let nb = nats(b.nats).await;
    let mut at_b = nb.subscribe("from-a.>").await.unwrap();
    // Something B wants without the prefix can never come from A.
    let mut unprefixed = nb.subscribe("pub.>").await.unwrap();
    nats_sync(&nb).await;
    fence_as(&na, "pub.probe", "from-a.pub.probe", &mut at_b).await;
    for subject in ["pub.x", "priv.x", "pub.secret.x", "pub.y"] {
        na.publish(subject, subject.into()).await.unwrap();
    }
    na.flush().await.unwrap();
    let got = drain(&mut at_b, Duration::from_millis(500)).await;
    let subjects: Vec<&str> = got
        .iter()
        .map(|m| m.subject.as_str())
        .filter(|s| *s != "from-a.pub.probe")
        .collect();
    assert_eq!(subjects, vec!["from-a.pub.x", "from-a.pub.y"]);
    let stray = drain(&mut unprefixed, Duration::from_millis(100)).await;
    assert!(stray.is_empty(), "{} unprefixed", stray.len());
    // B wants "from-a/#" = everything of A's: priv.x and pub.secret.x were
    // kept off the link by policy, and counted.
    let view = wait_links(a.admin, "A counts refused exports", |v| {
        v.to("B").is_some_and(|l| l.denied_export >= 2)
    })
    .await;
    assert_eq!(view.to("B").unwrap().denied_export, 2);
    // The same in Prometheus form (a parseable exposition).
    let (status, text) = admin_get(a.admin, "/metrics").await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let denied: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "weft_mesh_events_denied_total"
                && s.labels.get("peer") == Some("B")
                && s.labels.get("policy") == Some("export")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(denied, 2.0, "{text}");
    let b_view = links(b.admin).await;
    assert_eq!(b_view.to("A").unwrap().denied_import, 0);
}

/// What the publisher attached (NATS headers and reply subject, MQTT 5
/// properties) reaches a subscriber on another router as it would on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_metadata_crosses_links() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
    let (a, b) = pair("", "");
    linked(&a, &b).await;
    let na = nats(a.nats).await;
    let nb = nats(b.nats).await;
    let mut sub = nb.subscribe("meta.>").await.unwrap();
    nats_sync(&nb).await;
    fence(&na, "meta.probe", &mut sub).await;

    // NATS → NATS over the link: headers and reply subject.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("x-request-id", "00-abc-01");
    na.publish_with_reply_and_headers("meta.n", "inbox.1", headers, "hello".into())
        .await
        .unwrap();
    na.flush().await.unwrap();
    let m = loop {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        if m.subject.as_str() == "meta.n" {
            break m;
        }
    };
    assert_eq!(m.payload, "hello".as_bytes());
    assert_eq!(m.reply.as_deref(), Some("inbox.1"));
    let h = m.headers.expect("headers crossed the link");
    assert_eq!(h.get("x-request-id").map(|v| v.as_str()), Some("00-abc-01"));

    // MQTT 5 at A → MQTT 5 at B: properties.
    let qos1 = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    let (_v5b, mut rx) = v5_client(b.addr, "v5-sub", Some(("meta/#", qos1))).await;
    let (v5a, _) = v5_client(a.addr, "v5-pub", None).await;
    let props = PublishProperties {
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        response_topic: Some("answers/1".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x01\x02")),
        content_type: Some("application/json".into()),
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(600),
        ..Default::default()
    };
    v5a.publish_with_properties(
        "meta/m",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        "{}",
        props,
    )
    .await
    .unwrap();
    let p = loop {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            P5::Publish(p) if &p.topic[..] == b"meta/m" => break p,
            _ => {}
        }
    };
    assert_eq!(&p.payload[..], b"{}");
    let props = p.properties.expect("properties crossed the link");
    assert_eq!(
        props.user_properties,
        vec![
            ("k".to_string(), "v".to_string()),
            ("k".to_string(), "w".to_string())
        ]
    );
    assert_eq!(props.response_topic.as_deref(), Some("answers/1"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.payload_format_indicator, Some(1));
    let expiry = props.message_expiry_interval.expect("expiry forwarded");
    assert!((590..=600).contains(&expiry), "remaining expiry {expiry}");
}

/// Routers of different meshes refuse each other with a log line naming
/// both meshes; no link comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_name_mismatch_is_refused() {
    let mut la = Launch::new(1, "");
    la.args = [
        "--router-id",
        "A",
        "--mesh-name",
        "eu",
        "--mesh-listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    la.capture_stderr = true;
    let a = Weft::launch_with(la);
    let mut lb = Launch::new(1, "");
    let link = a.mesh.unwrap().to_string();
    lb.args = ["--router-id", "B", "--mesh-name", "us", "--link", &link]
        .map(String::from)
        .to_vec();
    lb.capture_stderr = true;
    let b = Weft::launch_with(lb);
    let line = b.wait_for_log("link refused");
    assert!(
        line.contains(r#"peer router "A" is in mesh "eu", this router is in mesh "us""#),
        "{line}"
    );
    a.wait_for_log("link refused");
    // And it stays refused: B redials and is refused again, never up.
    wait_until("B refused a second time", WAIT, || async {
        match b
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("link refused"))
            .count()
        {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} refusals logged")),
        }
    })
    .await;
    assert_eq!(links(a.admin).await.up(), 0);
    assert_eq!(links(b.admin).await.up(), 0);
    // Each side counts the refusal under its typed reason (the view is
    // refreshed on the bridge's tick: wait for it).
    for admin in [a.admin, b.admin] {
        let sample = r#"weft_mesh_link_closes_total{reason="mesh_mismatch"}"#;
        wait_until(&format!("{sample} counted"), WAIT, || async {
            let (_, body) = admin_get(admin, "/metrics").await;
            let n: f64 = body
                .lines()
                .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {sample} in /metrics"));
            if n >= 1.0 {
                Ok(())
            } else {
                Err(format!("{sample} {n}"))
            }
        })
        .await;
    }
}

/// A QoS 1 subscriber that stopped reading, on the far router: the events
/// for it come from the mesh, so they hold no publisher (`shard/hold.rs`)
/// and queue up to its hard limit; a healthy subscriber there keeps
/// receiving everything and the link stays up. (Once, every further event
/// paused the shard's ring from the bridge again: the link's reader was
/// stuck behind it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_wedge_the_link() {
    let (a, b) = pair(
        "",
        "[limits]\nqueued_messages_max = 100\nqueued_bytes_max = 65536\nbackpressure_pause_ms_max = 500\n[socket]\nsend_buffer_bytes = 16384\n[runtime]\nring_capacity = 64\n",
    );
    linked(&a, &b).await;
    let mut stalled = Raw::connected(b.addr, "stalled", 0).await;
    let mut subscribe = Vec::new();
    weft::mqtt::codec::encode(
        &weft::mqtt::codec::Packet::Subscribe {
            packet_id: 1,
            filters: vec![("flood/#", 1)],
        },
        &mut subscribe,
    );
    stalled.send(&subscribe).await;
    assert_eq!(stalled.read_exact(5).await, vec![0x90, 3, 0, 1, 1]);
    socket2::SockRef::from(&stalled.stream)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut healthy = connect(b.addr, "healthy").await;
    healthy
        .subscribe("flood/#", rumqttc::QoS::AtLeastOnce)
        .await;
    let mut publisher = connect(a.addr, "flooder").await;
    // Fence: B's interest has reached A.
    loop {
        publisher
            .publish("flood/probe", rumqttc::QoS::AtMostOnce, "p")
            .await;
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(50), healthy.next_publish()).await
        {
            if p.topic == "flood/probe" {
                break;
            }
        }
    }
    const N: usize = 3000;
    let consumer = tokio::spawn(async move {
        let mut got = 0;
        while got < N {
            let p = healthy.next_publish().await;
            if p.topic == "flood/data" {
                got += 1;
            }
        }
        healthy
    });
    // Every event reaches the healthy subscriber within WAIT (3000 pauses
    // of 500 ms would not).
    tokio::time::timeout(WAIT, async {
        for _ in 0..N {
            publisher
                .publish("flood/data", rumqttc::QoS::AtLeastOnce, vec![5u8; 2048])
                .await;
        }
        publisher.pubacks(N).await;
        consumer.await.unwrap()
    })
    .await
    .expect("every event published and delivered in time");
    let view = links(b.admin).await;
    let to_a = view.to("A").expect("link to A");
    assert_eq!((to_a.state.as_str(), to_a.reconnects), ("up", 0));
}

/// Garbage on the mesh port, and a peer that breaks the protocol after a
/// valid hello: each connection is refused or closed alone with a log line;
/// the router's real link keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_link_input_fails_alone() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use weft::mesh::link::{self, Frame, Hello, LINK_VERSION};
    let mut la = Launch::new(1, "");
    la.args = ["--router-id", "A", "--mesh-listen", "127.0.0.1:0"]
        .map(String::from)
        .to_vec();
    la.capture_stderr = true;
    let a = Weft::launch_with(la);
    let mesh = a.mesh.unwrap();
    let b = Weft::launch_args(1, "", &["--router-id", "B", "--link", &mesh.to_string()]);
    linked(&a, &b).await;

    // Not a hello at all.
    let mut junk = tokio::net::TcpStream::connect(mesh).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    a.wait_for_log("link refused");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, junk.read_to_end(&mut sink)).await;

    // A valid hello, then a frame of an unknown type.
    let mut rogue = tokio::net::TcpStream::connect(mesh).await.unwrap();
    let mut hello = Vec::new();
    link::encode(
        &Frame::Hello(Hello {
            version: LINK_VERSION,
            router_id: "rogue",
            mesh: "weft",
        }),
        &mut hello,
    )
    .unwrap();
    rogue.write_all(&hello).await.unwrap();
    rogue.write_all(&[0, 0, 0, 1, 99]).await.unwrap();
    let line = a.wait_for_log("protocol error");
    assert!(line.contains("unknown frame type 99"), "{line}");
    // The rogue connection is closed (its reads end).
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, rogue.read_to_end(&mut rest))
        .await
        .expect("closed by A")
        .ok();

    // B's link is untouched and events still cross.
    let na = nats(a.nats).await;
    let nb = nats(b.nats).await;
    let mut sub = nb.subscribe("still.>").await.unwrap();
    nats_sync(&nb).await;
    fence(&na, "still.ok", &mut sub).await;
    let view = links(a.admin).await;
    let to_b = view.to("B").expect("link to B");
    assert_eq!((to_b.state.as_str(), to_b.reconnects), ("up", 0));
}

/// The names of a router's threads (from /proc).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Both placements of the bridge, linked: A (2 shards) runs it as an
/// executor of its own (`bridge_in_shard = false`), B (2 shards) inside
/// its first shard's executor (the default). QoS 1 events published on
/// both of A's shards reach subscribers on both of B's shards exactly
/// once, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_of_its_own_and_one_inside_a_shard_interoperate() {
    let a = Weft::launch_args(
        2,
        "[mesh]\nbridge_in_shard = false\n",
        &["--router-id", "A", "--mesh-listen", "127.0.0.1:0"],
    );
    let b = Weft::launch_args(
        2,
        "",
        &["--router-id", "B", "--link", &a.mesh.unwrap().to_string()],
    );
    linked(&a, &b).await;
    let a_threads = thread_names(a.pid());
    let b_threads = thread_names(b.pid());
    assert!(
        a_threads.iter().any(|t| t.starts_with("weft-bridge")),
        "{a_threads:?}"
    );
    assert!(
        !b_threads.iter().any(|t| t.starts_with("weft-bridge")),
        "{b_threads:?}"
    );
    const N: usize = 50;
    for (from, to, name) in [(&a, &b, "ab"), (&b, &a, "ba")] {
        let mut subs = Vec::new();
        for (i, addr) in to.shard_addrs.iter().enumerate() {
            let mut s = connect(*addr, &format!("{name}-sub{i}")).await;
            s.subscribe(&format!("{name}/#"), rumqttc::QoS::AtLeastOnce)
                .await;
            subs.push(s);
        }
        let mut pubs = Vec::new();
        for (i, addr) in from.shard_addrs.iter().enumerate() {
            pubs.push(connect(*addr, &format!("{name}-pub{i}")).await);
        }
        // Fence: every subscriber's interest has reached the publishers.
        let probe = format!("{name}/probe");
        for s in subs.iter_mut() {
            loop {
                pubs[0].publish(&probe, rumqttc::QoS::AtMostOnce, "p").await;
                if let Ok(p) =
                    tokio::time::timeout(Duration::from_millis(50), s.next_publish()).await
                {
                    if p.topic == probe {
                        break;
                    }
                }
            }
        }
        let data = format!("{name}/data");
        for (i, p) in pubs.iter().enumerate() {
            for k in 0..N {
                p.publish(&data, rumqttc::QoS::AtLeastOnce, format!("{i}-{k}"))
                    .await;
            }
        }
        for p in pubs.iter_mut() {
            p.pubacks(N).await;
        }
        for s in subs.iter_mut() {
            let (seen, _) = collect_once(s, &data, &probe, 2 * N).await;
            assert_eq!(seen.len(), 2 * N, "{name}: {seen:?}");
            assert!(seen.values().all(|&c| c == 1), "{name}: {seen:?}");
        }
    }
}
