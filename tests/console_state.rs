//! The web console's data (`GET /console/state`, `GET /console/events`)
//! from a real router with real MQTT (rumqttc) and NATS (async-nats)
//! clients publishing: the state shows the connections and the busiest
//! topic, the stream delivers successive `state` events, `/metrics`
//! answers while the streams allowed are open (and one more is refused),
//! and the token is required, as a header or as `access_token`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rumqttc::QoS;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TOKEN: &str = "tok-c0n/s+le";
/// The token as a query value (form-encoded).
const TOKEN_QUERY: &str = "tok-c0n%2Fs%2Ble";

/// GET with an optional `Authorization` value: (status, body).
async fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: weft\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer in time"))
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn state(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = get(addr, "/console/state", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A `/console/events` stream read as a browser's EventSource would.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    /// Opens a stream (token in the query); Err(status) if refused.
    async fn open(addr: SocketAddr) -> Result<Events, u16> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "GET /console/events?access_token={TOKEN_QUERY} HTTP/1.1\r\nHost: weft\r\n\
                 Accept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, reader.read_line(&mut line))
                .await
                .expect("stream head in time")
                .unwrap();
            assert!(n > 0, "stream closed in its head: {head:?}");
            if line == "\r\n" {
                break;
            }
            head.push(line);
        }
        let status: u16 = head[0].split_whitespace().nth(1).unwrap().parse().unwrap();
        if status != 200 {
            return Err(status);
        }
        assert!(
            head.iter()
                .any(|l| l.eq_ignore_ascii_case("content-type: text/event-stream\r\n")),
            "{head:?}"
        );
        Ok(Events { reader })
    }

    /// The next event (comments skipped): (name, data).
    async fn next(&mut self) -> (String, String) {
        let (mut name, mut data) = (String::from("message"), Vec::new());
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("an event in time")
                .unwrap();
            assert!(n > 0, "the stream ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if !data.is_empty() {
                    return (name, data.join("\n"));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v.to_string());
            }
        }
    }

    async fn next_state(&mut self) -> serde_json::Value {
        let (name, data) = self.next().await;
        assert_eq!(name, "state");
        serde_json::from_str(&data).unwrap_or_else(|e| panic!("not JSON ({e}): {data}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_clients_topics_and_streams() {
    // Small queues and socket buffers: a subscriber that does not read
    // is a slow consumer soon.
    let weft = Weft::start(
        2,
        &format!(
            "[admin]\ntoken = \"{TOKEN}\"\nconsole_interval_ms = 100\n\
             [limits]\nqueued_messages_max = 50\n[socket]\nsend_buffer_bytes = 4096\n"
        ),
    );
    // The token: header or access_token, nothing else.
    for path in ["/console/state", "/console/events"] {
        assert_eq!(get(weft.admin, path, None).await.0, 401, "{path}");
        assert_eq!(
            get(weft.admin, &format!("{path}?access_token=tok-c0n"), None)
                .await
                .0,
            401,
            "{path}"
        );
        assert_eq!(
            get(weft.admin, path, Some("Bearer tok-c0n/s+lf")).await.0,
            401,
            "{path}"
        );
    }
    let (status, _) = get(
        weft.admin,
        &format!("/console/state?access_token={TOKEN_QUERY}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = get(
        weft.admin,
        &format!("/connections?limit=5&access_token={TOKEN_QUERY}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "access_token on every guarded path");

    // An MQTT subscriber on shard 0, an MQTT and a NATS publisher.
    let mut sub = connect(weft.shard_addrs[0], "console-sub").await;
    sub.subscribe("c/#", QoS::AtMostOnce).await;
    let mqtt_pub = connect(weft.shard_addrs[1], "console-pub").await;
    let nats = nats(weft.nats_shards[1]).await;
    // A subscriber that never reads after its SUBACK.
    let mut stalled = Raw::connected(weft.shard_addrs[0], "console-slow", 0).await;
    stalled
        .send_packet(&weft::mqtt::codec::Packet::Subscribe {
            packet_id: 1,
            filters: vec![("c/#", 0)],
        })
        .await;
    assert_eq!(stalled.read_exact(5).await, vec![0x90, 3, 0, 1, 0]);
    socket2::SockRef::from(&stalled.stream)
        .set_recv_buffer_size(4096)
        .unwrap();

    // The state shows the four connections (counters: on the tick).
    wait_until("4 connections in the console state", WAIT, || async {
        let s = state(weft.admin).await;
        let shards = s["shards"].as_array().cloned().unwrap_or_default();
        let total: u64 = shards
            .iter()
            .map(|r| r["connections"].as_u64().unwrap())
            .sum();
        if total == 4 && shards.len() == 2 {
            Ok(())
        } else {
            Err(format!("{s}"))
        }
    })
    .await;

    let mut events = Events::open(weft.admin).await.expect("a stream");
    let first = events.next_state().await;
    for key in [
        "router_id",
        "time_ms",
        "interval_ms",
        "mesh",
        "shards",
        "slow_consumers",
        "topics",
    ] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
    assert_eq!(first["interval_ms"], 100);
    assert!(first["mesh"].is_null(), "the mesh is off: {first}");
    let row = &first["shards"][0];
    for key in [
        "shard",
        "connections",
        "publishes_per_s",
        "deliveries_per_s",
        "queued_messages",
        "queued_bytes",
        "ring_waits",
    ] {
        assert!(row[key].is_number(), "{key} in {row}");
    }
    for q in ["p50", "p99", "p999"] {
        assert!(row["latency_us"][q].is_number(), "{q} in {row}");
    }

    // Publishing until the console shows it: c/hot four times as often as
    // c/warm (NATS: c.hot is the topic c/hot).
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = {
        let stop = stop.clone();
        let nats = nats.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..4 {
                    nats.publish("c.hot", "x".into()).await.unwrap();
                }
                mqtt_pub
                    .publish("c/warm", QoS::AtMostOnce, vec![b'y'; 512])
                    .await;
                nats.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let drain = tokio::spawn(async move {
        loop {
            sub.next_publish().await;
        }
    });
    let mut states = vec![first];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = events.next_state().await;
        let rate_of = |topic: &str| {
            s["topics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["topic"] == topic)
                .and_then(|t| t["events_per_s"].as_f64())
        };
        let hot_first = s["topics"][0]["topic"] == "c/hot"
            && rate_of("c/hot").is_some_and(|r| r > 0.0)
            && rate_of("c/warm").is_some_and(|r| r > 0.0);
        let slow = s["slow_consumers"].as_array().unwrap().iter().any(|c| {
            c["client_id"] == "console-slow"
                && c["protocol"] == "mqtt"
                && c["shard"] == 0
                && (c["queued_messages"].as_u64().unwrap() > 0
                    || c["dropped"].as_u64().unwrap() > 0)
        });
        let publishes: f64 = s["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["publishes_per_s"].as_f64().unwrap())
            .sum();
        states.push(s);
        if hot_first && slow && publishes > 0.0 && states.len() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "c/hot never the busiest topic with publishes counted and \
             console-slow a slow consumer; last: {}",
            states.last().unwrap()
        );
    }
    let times: Vec<u64> = states
        .iter()
        .map(|s| s["time_ms"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "successive states, strictly later: {times:?}"
    );
    let last = states.last().unwrap();
    let rate_of = |topic: &str| {
        last["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == topic)
            .and_then(|t| t["events_per_s"].as_f64())
            .unwrap_or_else(|| panic!("{topic} in {last}"))
    };
    assert!(
        rate_of("c/hot") > rate_of("c/warm"),
        "c/hot is published four times as often as c/warm: {last}"
    );

    // The streams allowed (8 by default) open at once; /metrics answers
    // meanwhile, and a ninth stream is refused.
    let mut more = Vec::new();
    for _ in 0..7 {
        more.push(Events::open(weft.admin).await.expect("streams 2..8"));
    }
    let (status, metrics) = get(weft.admin, "/metrics", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("weft_messages_in_total"));
    assert!(
        metrics.contains("\nweft_admin_console_streams 8\n"),
        "{metrics}"
    );
    assert_eq!(Events::open(weft.admin).await.err(), Some(503));
    for e in &mut more {
        e.next_state().await;
    }
    events.next_state().await;
    // A stream closed makes room for another.
    drop(more.pop());
    wait_until("room for a stream again", WAIT, || async {
        match Events::open(weft.admin).await {
            Ok(e) => Ok(e),
            Err(status) => Err(format!("status {status}")),
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    publishing.await.unwrap();
    drain.abort();
    drop(stalled);
}

/// With the mesh on, the state's `mesh` shows this router and its link
/// to a peer, in the topology's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_mesh_shows_the_links() {
    let a = mesh_router("con-a", "", "warn", "127.0.0.1:0", &[]);
    let b = mesh_router("con-b", "", "warn", "127.0.0.1:0", &[a.mesh.unwrap()]);
    for (weft, me, peer) in [(&a, "con-a", "con-b"), (&b, "con-b", "con-a")] {
        wait_until(
            &format!("{me}: the link to {peer} in the console"),
            WAIT,
            || async {
                let (status, body) = get(weft.admin, "/console/state", None).await;
                let s: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("{status} {e}"))?;
                let mesh = &s["mesh"];
                let me_listed = mesh["routers"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["id"] == me && r["self"] == true));
                let edge = mesh["edges"].as_array().is_some_and(|e| {
                    e.iter().any(|e| {
                        e["from"] == me
                            && e["to"] == peer
                            && e["state"] == "up"
                            && e["tls"] == false
                            && e["events_out"].is_number()
                    })
                });
                if s["router_id"] == me && mesh["router_id"] == me && me_listed && edge {
                    Ok(())
                } else {
                    Err(body)
                }
            },
        )
        .await;
    }
}
