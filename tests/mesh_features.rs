//! Mesh features beyond topology, against real `weft` processes linked on
//! 127.0.0.1: queue groups across routers, link policy (export allow list,
//! import prefix), protocol metadata carried over a link, retained messages,
//! and a hello refused for a mesh-name mismatch.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::StreamExt;

/// Router A listening for links, router B dialling it; both links up.
fn pair(toml_a: &str, toml_b: &str) -> (Weft, Weft) {
    let a = Weft::launch_args(
        1,
        toml_a,
        &["--router-id", "A", "--mesh-listen", "127.0.0.1:0"],
    );
    let link = a.mesh.expect("A's mesh listener").to_string();
    let b = Weft::launch_args(1, toml_b, &["--router-id", "B", "--link", &link]);
    (a, b)
}

async fn linked(a: &Weft, b: &Weft) {
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
async fn fence(
    publisher: &async_nats::Client,
    subject: &str,
    sub: &mut async_nats::Subscriber,
) -> Vec<async_nats::Message> {
    fence_as(publisher, subject, subject, sub).await
}

/// `fence`, for a probe that arrives as `arrives` (an import prefix).
async fn fence_as(
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
async fn drain(sub: &mut async_nats::Subscriber, quiet: Duration) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(quiet, sub.next()).await {
        got.push(m);
    }
    got
}

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

/// B listening, A dialling it through a [`Proxy`] (so the test can cut or
/// silence the network), with fast keepalive, timeout and redial; plus
/// `extra` [mesh] keys. An MQTT subscriber on B for `{prefix}/#` (QoS 1)
/// and a publisher on A, fenced: B's interest has reached A.
async fn proxied_pair(prefix: &str, extra: &str) -> (Weft, Weft, Proxy, Client, Client) {
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
async fn collect_once(
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
async fn retained_at(addr: std::net::SocketAddr, filter: &str) -> Vec<(String, String)> {
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
async fn wait_retained(
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
