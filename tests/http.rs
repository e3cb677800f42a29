//! The HTTP edge against the running binary: publish with curl and
//! Python `requests`, subscribe with Server-Sent Events (a raw TCP reader,
//! which really stops reading when a test needs a slow consumer), and MQTT
//! (rumqttc) and NATS (async-nats) clients on the other side; subscribe
//! over WebSocket with `tungstenite`'s client (and a raw one for what a
//! client library never sends).

mod common;
#[path = "support/http.rs"]
mod http_clients;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

use common::*;
use futures::StreamExt;
use http_clients::*;
use rumqttc::QoS;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A router with the HTTP edge on (port 0: the harness reads the port it
/// got from its `http listening on` line); `http`: extra `[http]` keys;
/// `toml`: other sections.
fn start(shards: usize, http: &str, toml: &str) -> (Weft, SocketAddr) {
    let toml = format!("[http]\nlisten = \"127.0.0.1:0\"\n{http}\n{toml}");
    let weft = Weft::start(shards, &toml);
    let addr = weft.http.expect("the http listening line");
    (weft, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_over_http_reaches_mqtt_and_nats_subscribers() {
    let (weft, http) = start(2, "", "");
    let mut mqtt = connect(weft.addr, "m").await;
    mqtt.subscribe("edge/#", QoS::AtLeastOnce).await;
    let nats = nats(weft.nats).await;
    let mut sub = nats.subscribe("edge.>").await.unwrap();
    nats_sync(&nats).await;
    let r = post(
        http,
        "/v1/topics/edge%2Fa",
        b"hello",
        &["-H", "Content-Type: text/plain"],
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let p = mqtt.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("edge/a", &b"hello"[..])
    );
    assert_eq!(p.qos, QoS::AtLeastOnce, "QoS 1 by default");
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("edge.a", &b"hello"[..])
    );
    // QoS 0 by query, a literal `/` in the path, keep-alive: two requests
    // on one connection (curl reuses it for two URLs).
    let url = format!("http://{http}/v1/topics/edge/b?qos=0");
    let r = curl(
        &[
            "-X",
            "POST",
            "--data-binary",
            "@-",
            &url,
            "--next",
            "-X",
            "POST",
            "-d",
            "again",
            &url,
        ],
        b"zero",
    );
    assert_eq!(r.status, 202);
    let p = mqtt.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("edge/b", &b"zero"[..], QoS::AtMostOnce)
    );
    let p = mqtt.next_publish().await;
    assert_eq!(&p.payload[..], b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_and_nats_publishes_reach_an_event_stream() {
    let (weft, http) = start(2, "", "");
    let (status, mut stream) = open(http, "/v1/subscribe?filter=s%2F%23", "").await;
    assert_eq!(status, 200);
    let (status, mut by_subject) = open(http, "/v1/subscribe?subject=s.nats", "").await;
    assert_eq!(status, 200);
    // (A 200 is written once every shard sees the subscription.)
    let mqtt = connect(weft.addr, "p").await;
    mqtt.publish("s/text", QoS::AtLeastOnce, "line one\nline two")
        .await;
    mqtt.publish("s/bin", QoS::AtMostOnce, vec![0xff, 0, 1])
        .await;
    let nats = nats(weft.nats).await;
    nats.publish("s.nats", "from nats".into()).await.unwrap();
    nats.flush().await.unwrap();
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("s/text", "line one\nline two")
    );
    assert!(e.id.is_some());
    let e = stream.next().await;
    assert_eq!(
        (e.event.as_str(), e.data.as_str()),
        ("s/bin", "base64:/wAB")
    );
    let e = stream.next().await;
    assert_eq!((e.event.as_str(), e.data.as_str()), ("s/nats", "from nats"));
    assert_eq!(by_subject.next().await.data, "from nats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_nats_and_cloudevents_reach_a_websocket_subscriber() {
    let (weft, http) = start(2, "", "");
    let mqtt = connect(weft.addr, "p").await;
    assert_eq!(
        post(http, "/v1/topics/s%2Fkept?retain=true", b"kept", &[]).status,
        202
    );
    let mut ws = tokio::task::block_in_place(|| ws_open(http, "filter=s%2F%23"));
    let mut by_subject = tokio::task::block_in_place(|| ws_open(http, "subject=s.nats"));
    // Retained first, flagged; then live events (the 101 came once every
    // shard saw the subscription).
    let kept = ws_next(&mut ws);
    assert_eq!(
        (&kept["topic"], &kept["payload"]),
        (&"s/kept".into(), &"kept".into())
    );
    assert_eq!((&kept["retain"], &kept["qos"]), (&true.into(), &1.into()));
    mqtt.publish("s/text", QoS::AtLeastOnce, "line one\nline two")
        .await;
    mqtt.publish("s/bin", QoS::AtMostOnce, vec![0xff, 0, 1])
        .await;
    let nats = nats(weft.nats).await;
    nats.publish("s.nats", "from nats".into()).await.unwrap();
    nats.flush().await.unwrap();
    let e = ws_next(&mut ws);
    assert_eq!(
        (&e["topic"], &e["payload"], &e["qos"], &e["retain"]),
        (
            &"s/text".into(),
            &"line one\nline two".into(),
            &1.into(),
            &false.into()
        )
    );
    assert!(
        e["id"].as_u64().unwrap() > kept["id"].as_u64().unwrap(),
        "{e}"
    );
    assert!(e.get("payload_encoding").is_none(), "{e}");
    let e = ws_next(&mut ws);
    assert_eq!(
        (&e["topic"], &e["payload"], &e["payload_encoding"]),
        (&"s/bin".into(), &"/wAB".into(), &"base64".into())
    );
    let e = ws_next(&mut ws);
    assert_eq!(
        (&e["topic"], &e["payload"]),
        (&"s/nats".into(), &"from nats".into())
    );
    assert_eq!(ws_next(&mut by_subject)["payload"], "from nats");
    // A CloudEvent (binary mode over HTTP): its structured JSON.
    let got = post(
        http,
        "/v1/topics/s%2Fce",
        br#"{"t":21.5}"#,
        &[
            "-H",
            "ce-specversion: 1.0",
            "-H",
            "ce-id: e-1",
            "-H",
            "ce-source: /sensors",
            "-H",
            "ce-type: org.example.reading",
            "-H",
            "content-type: application/json",
        ],
    );
    assert_eq!(got.status, 202, "{}", got.body);
    let e = ws_next(&mut ws);
    assert_eq!(e["specversion"], "1.0", "{e}");
    assert_eq!(
        (&e["id"], &e["source"]),
        (&"e-1".into(), &"/sensors".into())
    );
    assert_eq!(e["type"], "org.example.reading");
    assert_eq!(e["data"]["t"], 21.5, "{e}");
    // The client's close is answered with 1000.
    tokio::task::block_in_place(|| {
        ws.close(None).unwrap();
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    assert_eq!(u16::from(frame.expect("a code").code), 1000);
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("{e}"),
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_upgrades_and_frames_close_only_their_connection() {
    let (weft, http) = start(2, "", "");
    let path = "/v1/subscribe?filter=w";
    let (status, _) = open(
        http,
        path,
        &format!("{UPGRADE}Sec-WebSocket-Version: 8\r\n"),
    )
    .await;
    assert_eq!(status, 426);
    let no_key = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    assert_eq!(open(http, path, no_key).await.0, 400);
    let (status, _) = open(
        http,
        "/v1/subscribe",
        &format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n"),
    )
    .await;
    assert_eq!(status, 400, "no filter");
    let mut good = tokio::task::block_in_place(|| ws_open(http, "filter=w"));
    // A raw client's unmasked frame: close 1002, then the end.
    let (status, raw) = open(
        http,
        path,
        &format!("{UPGRADE}Sec-WebSocket-Version: 13\r\n"),
    )
    .await;
    assert_eq!(status, 101);
    let mut raw = raw.reader;
    raw.get_mut().write_all(&[0x89, 0x00]).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(
        &rest[..4],
        [0x88, rest[1], 0x03, 0xea],
        "close 1002: {rest:?}"
    );
    // The other subscriber goes on.
    let mqtt = connect(weft.addr, "p").await;
    mqtt.publish("w", QoS::AtLeastOnce, "still here").await;
    assert_eq!(ws_next(&mut good)["payload"], "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_first_and_resume_from_the_last_event_id() {
    let (weft, http) = start(2, "", "");
    let mqtt = connect(weft.addr, "r").await;
    mqtt.publish_retained("r/a", QoS::AtLeastOnce, "1").await;
    // Over HTTP too: retained by query.
    assert_eq!(
        post(http, "/v1/topics/r%2Fb?retain=true", b"2", &[]).status,
        202
    );
    let (status, mut stream) = open(http, "/v1/subscribe?filter=r%2F%2B", "").await;
    assert_eq!(status, 200);
    let mut first = [stream.next().await, stream.next().await];
    first.sort_by(|a, b| a.event.cmp(&b.event));
    assert_eq!(
        first
            .iter()
            .map(|e| (e.event.as_str(), e.data.as_str()))
            .collect::<Vec<_>>(),
        [("r/a", "1"), ("r/b", "2")]
    );
    let last = first.iter().map(|e| e.id.unwrap()).max().unwrap();
    // A retained update after those, then a resume from the last id seen.
    assert_eq!(
        post(http, "/v1/topics/r%2Fc?retain=1", b"3", &[]).status,
        202
    );
    assert_eq!(stream.next().await.data, "3", "live on the open stream");
    drop(stream);
    let (status, mut resumed) = open(
        http,
        "/v1/subscribe?filter=r%2F%2B",
        &format!("Last-Event-ID: {last}\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    mqtt.publish("r/end", QoS::AtLeastOnce, "live").await;
    let got = until(&mut resumed, "r/end").await;
    let replayed: Vec<_> = got
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        replayed,
        [("r/c", "3"), ("r/end", "live")],
        "only what came after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_gets_heartbeats() {
    let (_weft, http) = start(1, "sse_heartbeat_ms = 20", "");
    let (status, mut stream) = open(http, "/v1/subscribe?filter=quiet", "").await;
    assert_eq!(status, 200);
    let mut line = String::new();
    tokio::time::timeout(WAIT, stream.reader.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, ": heartbeat\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_problem_and_others_go_on() {
    let (weft, http) = start(2, "body_bytes_max = 64\nhead_bytes_max = 1024", "");
    let mut mqtt = connect(weft.addr, "w").await;
    mqtt.subscribe("ok/#", QoS::AtLeastOnce).await;
    let mut n = 0;
    let mut still_fine = || {
        n += 1;
        let body = format!("{n}");
        let r = post(http, "/v1/topics/ok%2Fx", body.as_bytes(), &[]);
        assert_eq!(r.status, 202);
        body
    };
    post(http, "/v1/topics/a", &[b'x'; 65], &[]).assert_problem(413);
    still_fine();
    post(http, "/v1/topics/a%2F%2B", b"x", &[]).assert_problem(400);
    post(http, "/v1/topics/a?qos=7", b"x", &[]).assert_problem(400);
    post(http, "/v1/topics/%ZZ", b"x", &[]).assert_problem(400);
    post(http, "/v1/nowhere", b"x", &[]).assert_problem(404);
    curl(&[&format!("http://{http}/v1/topics/a")], b"").assert_problem(405);
    curl(
        &[
            "-X",
            "DELETE",
            &format!("http://{http}/v1/subscribe?filter=a"),
        ],
        b"",
    )
    .assert_problem(405);
    curl(&[&format!("http://{http}/v1/subscribe")], b"").assert_problem(400);
    curl(
        &[
            "-H",
            "Accept: application/json",
            &format!("http://{http}/v1/subscribe?filter=a"),
        ],
        b"",
    )
    .assert_problem(406);
    let chunked = post(
        http,
        "/v1/topics/a",
        b"x",
        &["-H", "Transfer-Encoding: chunked"],
    );
    chunked.assert_problem(411);
    let long = format!("X-Long: {}", "y".repeat(2000));
    post(http, "/v1/topics/a", b"x", &["-H", &long]).assert_problem(431);
    // A request cut short, then the connection gone: nothing answered,
    // nothing harmed.
    let mut cut = TcpStream::connect(http).await.unwrap();
    cut.write_all(b"POST /v1/topics/ok%2Fcut HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    cut.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, cut.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // Garbage: 400 and the connection closed.
    let mut junk = TcpStream::connect(http).await.unwrap();
    junk.write_all(b"\x01\x02\x03 nonsense\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, junk.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    let last = still_fine();
    // The subscriber got exactly the good publishes.
    let mut got = Vec::new();
    loop {
        let p = mqtt.next_publish().await;
        assert_eq!(p.topic, "ok/x", "nothing of the bad requests got through");
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
        if got.last() == Some(&last) {
            break;
        }
    }
    assert_eq!(got, ["1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (weft, http) = start(2, "", "");
    let mut mqtt = connect(weft.addr, "pipe").await;
    mqtt.subscribe("pipe/#", QoS::AtLeastOnce).await;
    let mut s = TcpStream::connect(http).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..5 {
        write!(
            batch,
            "POST /v1/topics/pipe%2F{i} HTTP/1.1\r\nContent-Length: 1\r\n\r\n{i}"
        )
        .unwrap();
    }
    batch.extend_from_slice(b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n");
    s.write_all(&batch).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let statuses: Vec<_> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(
        statuses,
        ["202", "202", "202", "202", "202", "404"],
        "{answer}"
    );
    for i in 0..5 {
        assert_eq!(mqtt.next_publish().await.topic, format!("pipe/{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_rights_decide() {
    let argon = weft::security::auth::hash_password(b"wonderland").unwrap();
    let toml = format!(
        "[security]\nallow_anonymous = false\n\
         [[security.users]]\nname = \"alice\"\npassword = \"{argon}\"\n\
         publish = {{ allow = [\"open/#\"] }}\nsubscribe = {{ allow = [\"open/#\"] }}\n\
         [[security.users]]\nname = \"svc\"\ntoken = \"tok-123\"\n"
    );
    let (weft, http) = start(2, "", &toml);
    let _ = &weft;
    let alice = ["-u", "alice:wonderland"];
    assert_eq!(post(http, "/v1/topics/open%2Fa", b"x", &alice).status, 202);
    post(http, "/v1/topics/secret%2Fa", b"x", &alice).assert_problem(403);
    let r = post(http, "/v1/topics/open%2Fa", b"x", &["-u", "alice:wrong"]);
    r.assert_problem(401);
    assert!(r.header("www-authenticate").is_some());
    post(http, "/v1/topics/open%2Fa", b"x", &[]).assert_problem(401);
    let bearer = ["-H", "Authorization: Bearer tok-123"];
    assert_eq!(
        post(http, "/v1/topics/secret%2Fa", b"x", &bearer).status,
        202
    );
    let (status, _) = open(
        http,
        "/v1/subscribe?filter=secret%2F%23",
        "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\n",
    )
    .await;
    assert_eq!(status, 403);
    let (status, mut stream) = open(
        http,
        "/v1/subscribe?filter=open%2F%23",
        "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        post(http, "/v1/topics/open%2Fready", b"r", &bearer).status,
        202
    );
    assert_eq!(
        until(&mut stream, "open/ready").await.last().unwrap().data,
        "r"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_congested_subscriber_gets_publishers_a_429() {
    // One shard: the publisher and the stalled stream meet there. A tiny
    // queue and send buffer: the stream congests within a few events.
    let toml = "[limits]\nqueued_messages_max = 2\nqos1_queued_messages_max = 100000\n\
                qos1_queued_bytes_max = 1073741824\n[socket]\nsend_buffer_bytes = 4096\n";
    let (weft, http) = start(1, "body_bytes_max = 65536", toml);
    // The stalled reader: asks for the stream, reads its head, then stops.
    let (status, stalled) = open(http, "/v1/subscribe?filter=bp%2F%23", "").await;
    assert_eq!(status, 200);
    let mut watcher = connect(weft.addr, "bp-watch").await;
    watcher.subscribe("bp/#", QoS::AtMostOnce).await;
    let payload = vec![b'p'; 60_000];
    let mut refused = None;
    for _ in 0..2000 {
        let r = post(http, "/v1/topics/bp%2Fx", &payload, &[]);
        if r.status != 202 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a 429 once the stream is congested");
    r.assert_problem(429);
    assert_eq!(r.header("retry-after"), Some("1"));
    // Another topic's publishers are not refused.
    assert_eq!(post(http, "/v1/topics/other", b"x", &[]).status, 202);
    drop(stalled);
    let _ = watcher.next_publish().await;
}

/// With persistence on, a 202 for a QoS 1 publish means the event is
/// durable: a persistent MQTT session gets every accepted event after a
/// `kill -9` right after the last 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_means_durable_with_persistence_on() {
    let dir = common::durable::TempDir::new("http-durable");
    let toml = "[http]\nlisten = \"127.0.0.1:0\"\n";
    let mut d =
        common::durable::Durable::start(2, toml, &common::durable::persistence_args(&dir.path));
    let http = d.weft.http.expect("the http listening line");
    let mut sub = connect_session(d.addr(), "keeper", false).await;
    sub.subscribe("dur/#", QoS::AtLeastOnce).await;
    sub.client.disconnect().await.unwrap();
    drop(sub);
    wait_parked(d.weft.admin, "keeper").await;
    for i in 0..30 {
        let r = post(http, "/v1/topics/dur%2Fe", format!("{i}").as_bytes(), &[]);
        assert_eq!(r.status, 202, "{}", r.body);
    }
    d.restart();
    let mut sub = connect_session(d.addr(), "keeper", false).await;
    for i in 0..30 {
        let p = sub.next_publish().await;
        assert_eq!(&p.payload[..], format!("{i}").as_bytes());
    }
}

/// Python `requests` (tests/py/http_requests.py): a publish, a problem,
/// and an event stream read with `stream=True`.
#[test]
fn python_requests_publishes_and_streams() {
    let (_weft, http) = start(2, "", "");
    let python = std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        panic!("WEFT_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python clients")
    });
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/http_requests.py"
        ))
        .arg(http.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "http_requests.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}

/// The CloudEvents Python SDK over HTTP (tests/py/http_cloudevents.py):
/// binary, structured and batched posts come back the same from an event
/// stream and from NATS; bad ones get 400 / 415 / 422 problems.
#[test]
fn cloudevents_sdk_over_http() {
    let (weft, http) = start(2, "", "");
    let python = std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        panic!("WEFT_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python clients")
    });
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/http_cloudevents.py"
        ))
        .arg(http.to_string())
        .arg(weft.nats.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "http_cloudevents.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}
