//! The admin endpoint of the running binary: Prometheus metrics (parsed by
//! a real parser crate), health, JSON views, and SIGHUP reload.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use rumqttc::QoS;

/// GET over HTTP/1.0: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    admin_get(addr, path).await
}

fn scrape_total(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move() {
    let weft = Weft::start(2, "");
    let before = scrape(weft.admin).await;
    assert_eq!(scrape_total(&before, "weft_messages_in_total"), 0.0);
    for family in [
        "weft_connections",
        "weft_subscriptions",
        "weft_dropped_total",
        "weft_latency_seconds",
    ] {
        assert!(before.docs.contains_key(family), "{family} documented");
    }
    let mut sub = connect(weft.shard_addrs[1], "m-sub").await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let publisher = connect(weft.shard_addrs[0], "m-pub").await;
    for i in 0..10 {
        publisher
            .publish(&format!("m/{i}"), QoS::AtMostOnce, "x")
            .await;
    }
    for _ in 0..10 {
        sub.next_publish().await;
    }
    // Counters are published on the shards' 50 ms tick: poll, bounded.
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let s = scrape(weft.admin).await;
        if scrape_total(&s, "weft_messages_out_total") >= 10.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "counters did not move");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(scrape_total(&after, "weft_messages_in_total"), 10.0);
    assert_eq!(scrape_total(&after, "weft_connections"), 2.0);
    assert_eq!(scrape_total(&after, "weft_subscriptions"), 1.0);
    assert!(
        scrape_total(&after, "weft_ring_events_out_total") >= 10.0,
        "publisher and subscriber on different shards"
    );
    let (_, text) = get(weft.admin, "/metrics").await;
    let count: u64 = text
        .lines()
        .filter(|l| l.starts_with("weft_latency_seconds_count"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(count >= 10, "latency recorded for each delivery: {count}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_json_views() {
    let weft = Weft::start(2, "");
    assert_eq!(get(weft.admin, "/healthz").await.0, 200);
    let deadline = Instant::now() + WAIT;
    while get(weft.admin, "/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut mqtt = connect(weft.shard_addrs[0], "view-client").await;
    mqtt.subscribe("v/#", QoS::AtLeastOnce).await;
    let nats = async_nats::connect(weft.nats_shards[1].to_string())
        .await
        .unwrap();
    let mut q = nats.queue_subscribe("n.*", "workers".into()).await.unwrap();
    // Round trip so the SUB is in force before the view is taken.
    nats.publish("n.1", "x".into()).await.unwrap();
    tokio::time::timeout(WAIT, q.next()).await.unwrap().unwrap();

    let (status, body) = get(weft.admin, "/connections").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 2);
    let conns = v["connections"].as_array().unwrap();
    assert!(conns.iter().any(|c| c["client_id"] == "view-client"
        && c["protocol"] == "mqtt"
        && c["shard"].is_number()));
    assert!(conns
        .iter()
        .any(|c| c["protocol"] == "nats" && c["subscriptions"] == 1));

    let (_, body) = get(weft.admin, "/subscriptions").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let subs = v["subscriptions"].as_array().unwrap();
    assert!(subs
        .iter()
        .any(|s| s["filter"] == "v/#" && s["qos"] == 1 && s["client_id"] == "view-client"));
    assert!(subs
        .iter()
        .any(|s| s["filter"] == "n.*" && s["queue_group"] == "workers" && s["protocol"] == "nats"));

    let (_, body) = get(weft.admin, "/subscriptions?limit=1&offset=1").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            v["total"].as_u64(),
            v["offset"].as_u64(),
            v["limit"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );

    assert_eq!(get(weft.admin, "/connections?limit=0").await.0, 400);
    assert_eq!(get(weft.admin, "/connections?limit=5000").await.0, 400);
    assert_eq!(get(weft.admin, "/connections?bogus=1").await.0, 400);
    assert_eq!(get(weft.admin, "/nothing").await.0, 404);
    // The mesh is off: no links.
    let (status, body) = get(weft.admin, "/links").await;
    let links: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(links["total"], 0);
    assert_eq!(links["links"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_log_level() {
    let weft = Weft::launch(1, "[log]\nlevel = \"warn\"\n", None, true);
    // At warn, a closed connection logs nothing.
    let c = connect(weft.addr, "quiet-before").await;
    c.client.disconnect().await.unwrap();
    // Fence: the router has handled the close (the clean session is gone)
    // before the log level changes.
    wait_until("quiet-before: session gone", WAIT, || async {
        match sessions_of(weft.admin, "quiet-before").await[..] {
            [] => Ok(()),
            ref listed => Err(format!("still listed (online: {listed:?})")),
        }
    })
    .await;
    drop(c);
    let mut text = std::fs::read_to_string(&weft.config_path).unwrap();
    text = text.replace("level = \"warn\"", "level = \"debug\"");
    std::fs::write(&weft.config_path, text).unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    let line = weft.wait_for_log("SIGHUP: configuration reloaded");
    assert!(line.contains("log.level"), "names the key: {line}");
    assert!(!weft.log_contains("quiet-before"), "nothing logged at warn");
    let c = connect(weft.addr, "loud-after").await;
    c.client.disconnect().await.unwrap();
    weft.wait_for_log("loud-after");
    // A key that needs a restart is named and not applied.
    let text = std::fs::read_to_string(&weft.config_path).unwrap();
    std::fs::write(
        &weft.config_path,
        format!("{text}\n[runtime]\nring_capacity = 64\n"),
    )
    .unwrap();
    weft.signal(nix::sys::signal::Signal::SIGHUP);
    let line = weft.wait_for_log("need a restart");
    assert!(line.contains("runtime.ring_capacity"), "{line}");
}

/// Replays are not routing latency: a retained message sent to a new
/// subscriber and a persistent session's backlog, both seconds old, stay
/// out of `weft_latency_seconds` (counted in `weft_replays_out_total`);
/// live events still go in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_stay_out_of_the_latency_summary() {
    use weft::mqtt::codec::{self, Packet};
    let weft = Weft::start(2, "");
    let publisher = connect(weft.shard_addrs[0], "r-pub").await;
    // A persistent session on shard 1 subscribes, then goes away.
    let mut away = Raw::open(weft.shard_addrs[1]).await;
    away.send(&connect_packet("r-away", 30, 4, false)).await;
    assert_eq!(away.read_exact(4).await[..2], [0x20, 2]);
    away.send_packet(&Packet::Subscribe {
        packet_id: 1,
        filters: vec![("o/#", 1)],
    })
    .await;
    assert_eq!(away.read_exact(5).await, vec![0x90, 3, 0, 1, 1]);
    drop(away);
    let deadline = Instant::now() + WAIT;
    while scrape_total(&scrape(weft.admin).await, "weft_offline_sessions") < 1.0 {
        assert!(Instant::now() < deadline, "the session never went offline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A retained message, and one the offline session keeps; both age.
    publisher
        .publish_retained("r/kept", QoS::AtLeastOnce, "old")
        .await;
    publisher.publish("o/kept", QoS::AtLeastOnce, "old").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The replays, then a live event behind each on the same socket.
    let mut late = connect(weft.shard_addrs[0], "r-late").await;
    late.subscribe("r/#", QoS::AtLeastOnce).await;
    let p = late.next_publish().await;
    assert!(p.retain && p.topic == "r/kept", "{p:?}");
    let mut back = Raw::open(weft.shard_addrs[1]).await;
    back.send(&connect_packet("r-away", 30, 4, false)).await;
    assert_eq!(back.read_exact(4).await, vec![0x20, 2, 1, 0]);
    let bytes = back.read_packet().await;
    let Ok(Some((Packet::Publish(p), _))) = codec::decode(&bytes, &Default::default()) else {
        panic!("expected the kept PUBLISH, got {bytes:x?}");
    };
    assert_eq!((p.topic, p.payload), ("o/kept", &b"old"[..]));
    back.send_packet(&Packet::PubAck(p.packet_id)).await;
    publisher.publish("r/live", QoS::AtMostOnce, "new").await;
    publisher.publish("o/live", QoS::AtMostOnce, "new").await;
    assert_eq!(late.next_publish().await.topic, "r/live");
    let bytes = back.read_packet().await;
    let Ok(Some((Packet::Publish(p), _))) = codec::decode(&bytes, &Default::default()) else {
        panic!("expected the live PUBLISH, got {bytes:x?}");
    };
    assert_eq!(p.topic, "o/live");

    // Each shard records a socket's writes in order and publishes them
    // together: once both live events are counted, so would the replays be.
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = scrape(weft.admin).await;
        if scrape_total(&s, "weft_latency_seconds_count") >= 2.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "live events never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        scrape_total(&s, "weft_latency_seconds_count"),
        2.0,
        "only the two live events are routing latency"
    );
    assert_eq!(scrape_total(&s, "weft_replays_out_total"), 2.0);
}

/// `$SYS` broker statistics as mosquitto publishes them, off by default
/// and on with `mqtt.sys_interval_s`, seen by a real client on `$SYS/#`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_for_a_real_client() {
    // Off by default: shard 0 would publish on its first tick, before the
    // tick that counts this client's connection; nothing is retained.
    let off = Weft::start(2, "");
    let _watcher = connect(off.addr, "sys-off").await;
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = scrape(off.admin).await;
        if scrape_total(&s, "weft_connections") >= 1.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "connection never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(scrape_total(&s, "weft_retained_messages"), 0.0);

    let weft = Weft::start(2, "[mqtt]\nsys_interval_s = 1\n");
    let publisher = connect(weft.shard_addrs[1], "sys-pub").await;
    for i in 0..3 {
        publisher
            .publish(&format!("s/{i}"), QoS::AtLeastOnce, "x")
            .await;
    }
    let mut sub = connect(weft.shard_addrs[1], "sys-sub").await;
    sub.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    // Until the counts include the three publishes and both clients.
    loop {
        let p = sub.next_publish().await;
        seen.insert(
            p.topic.clone(),
            String::from_utf8(p.payload.to_vec()).unwrap(),
        );
        let num = |t: &str| seen.get(t).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if num("$SYS/broker/messages/received") >= 3
            && num("$SYS/broker/clients/connected") >= 2
            && num("$SYS/broker/bytes/received") > 0
            && num("$SYS/broker/bytes/sent") > 0
            && seen.len() >= 10
        {
            break;
        }
        assert!(Instant::now() < deadline, "$SYS never caught up: {seen:?}");
    }
    assert!(seen["$SYS/broker/version"].starts_with("weft version "));
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    for topic in [
        "$SYS/broker/messages/sent",
        "$SYS/broker/clients/total",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/retained messages/count",
    ] {
        assert!(seen.contains_key(topic), "{topic} in {seen:?}");
    }
    // `#` alone does not match `$` topics (MQTT-4.7.2-1).
    let mut all = connect(weft.shard_addrs[0], "sys-hash").await;
    all.subscribe("#", QoS::AtMostOnce).await;
    publisher.publish("fence", QoS::AtMostOnce, "f").await;
    assert_eq!(all.next_publish().await.topic, "fence");
    // The counters are not moved by the $SYS publications themselves (ten
    // a second, published since before the first one was seen).
    let deadline = Instant::now() + WAIT;
    let received = loop {
        let n = scrape_total(&scrape(weft.admin).await, "weft_messages_in_total");
        if n >= 4.0 {
            break n;
        }
        assert!(Instant::now() < deadline, "publishes never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(received, 4.0);
}

/// GET with an optional `Authorization` header: (status, head, body).
async fn get_with(
    addr: std::net::SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let header = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: weft\r\n{header}\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// With `admin.token`, every path but the health probes needs it: 401 with
/// `WWW-Authenticate: Bearer` without it or with a wrong one, 200 with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_is_required() {
    let weft = Weft::start(1, "[admin]\ntoken = \"tok-3f9a\"\n");
    for path in ["/metrics", "/connections", "/subscriptions", "/links"] {
        for wrong in [
            None,
            Some("Bearer tok-3f9"),
            Some("Bearer tok-3f9ab"),
            Some("Basic tok-3f9a"),
        ] {
            let (status, head, body) = get_with(weft.admin, path, wrong).await;
            assert_eq!(status, 401, "{path} {wrong:?}: {head}");
            assert!(
                head.lines()
                    .any(|l| l.starts_with("WWW-Authenticate: Bearer")),
                "{head}"
            );
            assert!(!body.contains("weft_"), "nothing leaks: {body}");
        }
        let (status, _, _) = get_with(weft.admin, path, Some("Bearer tok-3f9a")).await;
        assert_eq!(status, 200, "{path}");
    }
    // The probes stay open (documented in the README).
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = get_with(weft.admin, path, None).await;
        assert!(status == 200 || status == 503, "{path}: {status}");
        assert_ne!(status, 401, "{path}");
    }
}

/// An admin endpoint off loopback with no token: the start is refused with
/// one line naming `admin.token`, exit status 2.
#[test]
fn an_open_admin_endpoint_refuses_to_start() {
    let config = write_config("[admin]\nlisten = \"0.0.0.0:0\"\n");
    let out = std::process::Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&config.0)
        .args([
            "--mqtt-listen",
            "127.0.0.1:0",
            "--nats-listen",
            "127.0.0.1:0",
        ])
        .args(["--shards", "1", "--cores", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("weft: error: admin.token"), "{stderr}");
    // The same from the flag, and from check-config.
    let out = std::process::Command::new(weft_bin())
        .args(["check-config"])
        .arg(&config.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin.token"), "{stderr}");
}

/// `/connections` names each connection's user (null: anonymous) and
/// account, over both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_show_user_and_account() {
    let weft = Weft::start(1, "[security]\ndefault_account = \"acme\"\n");
    let _mqtt = connect(weft.addr, "who-mqtt").await;
    let nats = nats(weft.nats).await;
    nats_sync(&nats).await;
    let (status, body) = get(weft.admin, "/connections").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{body}");
    for c in conns {
        assert!(c.get("user").is_some_and(|u| u.is_null()), "{c}");
        assert_eq!(c["account"], "acme", "{c}");
    }
    assert!(conns.iter().any(|c| c["client_id"] == "who-mqtt"));
}
