//! The NATS client protocol against the running `weft` binary, with
//! async-nats (a real third-party client) and raw sockets.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_with_wildcards_across_four_shards() {
    let weft = Weft::start(4, "");
    let publisher = nats(weft.nats_shards[0]).await;
    let table: [(&str, &[&str]); 4] = [
        ("a.*.c", &["a.b.c", "a.x.c"]),
        ("a.>", &["a.b.c", "a.x.c", "a.b.c.d", "a.b"]),
        ("a.b.c", &["a.b.c"]),
        ("*", &["a", "end"]),
    ];
    let mut subs = Vec::new();
    for (i, (filter, _)) in table.iter().enumerate() {
        let client = nats(weft.nats_shards[(i + 1) % 4]).await;
        let sub = client.subscribe(filter.to_string()).await.unwrap();
        let end = client.subscribe("end").await.unwrap();
        nats_sync(&client).await;
        subs.push((client, sub, end));
    }
    for subject in ["a.b.c", "a.x.c", "a.b.c.d", "a.b", "a", "b.c"] {
        publisher.publish(subject, "x".into()).await.unwrap();
    }
    publisher.publish("end", "".into()).await.unwrap();
    publisher.flush().await.unwrap();
    for ((filter, want), (_client, sub, end)) in table.iter().zip(subs.iter_mut()) {
        // async-nats hands messages to subscriptions in socket order: once
        // "end" is here, everything before it is in `sub`'s buffer.
        tokio::time::timeout(WAIT, end.next())
            .await
            .unwrap()
            .unwrap();
        let mut got = BTreeSet::new();
        while let Some(Some(m)) = futures::FutureExt::now_or_never(sub.next()) {
            assert!(
                got.insert(m.subject.to_string()),
                "{filter}: duplicate {}",
                m.subject
            );
        }
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "filter {filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_delivers_once_per_group_across_shards() {
    let weft = Weft::start(4, "");
    let mut members = Vec::new();
    for i in 0..4 {
        let c = nats(weft.nats_shards[i]).await;
        let s = c.queue_subscribe("jobs.*", "workers".into()).await.unwrap();
        // A plain subscription on the member's own connection, for the
        // fence at the end.
        let fence = c.subscribe(format!("fence.{i}")).await.unwrap();
        nats_sync(&c).await;
        members.push((c, s, fence));
    }
    let plain_client = nats(weft.nats_shards[1]).await;
    let mut plain = plain_client.subscribe("jobs.>").await.unwrap();
    nats_sync(&plain_client).await;
    let publisher = nats(weft.nats_shards[0]).await;
    let n = 400;
    for i in 0..n {
        publisher
            .publish("jobs.run", format!("{i}").into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    // The plain subscriber gets every event.
    for i in 0..n {
        let m = tokio::time::timeout(WAIT, plain.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.payload, format!("{i}").as_bytes());
    }
    // The group gets each event exactly once, spread over its members.
    let mut fences = Vec::new();
    let mut group =
        futures::stream::select_all(members.into_iter().enumerate().map(|(i, (c, s, fence))| {
            fences.push((c, fence));
            s.map(move |m| (i, String::from_utf8(m.payload.to_vec()).unwrap()))
        }));
    let mut seen = BTreeSet::new();
    let mut per_member = [0usize; 4];
    for _ in 0..n {
        let (member, payload) = tokio::time::timeout(WAIT, group.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            seen.insert(payload.clone()),
            "{payload} delivered twice in the group"
        );
        per_member[member] += 1;
    }
    // Nothing more arrives: a fence published after the events reaches
    // each member's shard through the same ring as its group copies (or
    // directly on the publisher's shard) and each member's connection
    // after them; once every member has its fence, any extra copy would
    // already be waiting in the group stream.
    for i in 0..4 {
        publisher
            .publish(format!("fence.{i}"), "fence".into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for (i, (_c, fence)) in fences.iter_mut().enumerate() {
        tokio::time::timeout(WAIT, fence.next())
            .await
            .unwrap_or_else(|_| panic!("fence.{i} in time"))
            .expect("subscription open");
    }
    let extra = futures::FutureExt::now_or_never(group.next());
    assert!(extra.is_none(), "an extra delivery in the group: {extra:?}");
    assert_eq!(seen.len(), n);
    for (i, count) in per_member.iter().enumerate() {
        assert!(
            *count > 0,
            "member on shard listener {i} got nothing: {per_member:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_timeout_and_no_responders() {
    let weft = Weft::start(2, "");
    let responder = nats(weft.nats_shards[1]).await;
    let mut service = responder.subscribe("svc.echo").await.unwrap();
    let _silent = responder.subscribe("svc.silent").await.unwrap();
    nats_sync(&responder).await;
    let replier = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            let reply = m.reply.unwrap();
            replier.publish(reply, m.payload).await.unwrap();
        }
    });
    let requester = nats(weft.nats_shards[0]).await;
    let answer = requester.request("svc.echo", "ping".into()).await.unwrap();
    assert_eq!(answer.payload, "ping".as_bytes());

    let err = requester
        .request("svc.nobody", "x".into())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "{err:?}"
    );

    let err = requester
        .send_request(
            "svc.silent",
            async_nats::Request::new()
                .payload("x".into())
                .timeout(Some(Duration::from_millis(300))),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::TimedOut,
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_round_trip() {
    let weft = Weft::start(2, "");
    let sub_client = nats(weft.nats_shards[1]).await;
    let mut sub = sub_client.subscribe("h.>").await.unwrap();
    nats_sync(&sub_client).await;
    let publisher = nats(weft.nats_shards[0]).await;
    let mut headers = async_nats::HeaderMap::new();
    // (Not `traceparent`, which each router rewrites: `tests/trace.rs`.)
    headers.insert(
        "X-Request-Id",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    headers.insert("X-Multi", "one");
    headers.append("X-Multi", "two");
    publisher
        .publish_with_headers("h.1", headers.clone(), "body".into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "body".as_bytes());
    let got = m.headers.expect("headers delivered");
    assert_eq!(
        got.get("X-Request-Id").map(|v| v.as_str()),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    let multi: Vec<&str> = got.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, vec!["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsub_with_max_messages() {
    let weft = Weft::start(2, "");
    let client = nats(weft.nats_shards[1]).await;
    let mut sub = client.subscribe("u.1").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    nats_sync(&client).await;
    let publisher = nats(weft.nats_shards[0]).await;
    for i in 0..10 {
        publisher
            .publish("u.1", format!("{i}").into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(WAIT, sub.next()).await {
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    assert_eq!(got, vec!["0", "1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_echo_skips_own_messages() {
    let weft = Weft::start(1, "");
    let mut quiet = RawNats::open(weft.nats).await;
    quiet
        .send("CONNECT {\"echo\":false}\r\nSUB e.1 1\r\nPUB e.1 4\r\nmine\r\nPING\r\n")
        .await;
    // Had "mine" been delivered, its MSG would precede the PONG.
    assert_eq!(quiet.line().await, "PONG\r\n");
    let other = nats(weft.nats).await;
    other.publish("e.1", "theirs".into()).await.unwrap();
    other.flush().await.unwrap();
    assert_eq!(quiet.line().await, "MSG e.1 1 6\r\n");
    assert_eq!(quiet.line().await, "theirs\r\n");
}

/// A raw NATS connection, reading lines.
struct RawNats {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawNats {
    async fn open(addr: std::net::SocketAddr) -> RawNats {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut raw = RawNats {
            reader: BufReader::new(r),
            writer: w,
        };
        assert!(raw.line().await.starts_with("INFO {"));
        raw
    }

    async fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).await.unwrap();
    }

    /// Next line, or "" at EOF.
    async fn line(&mut self) -> String {
        let mut l = String::new();
        tokio::time::timeout(WAIT, self.reader.read_line(&mut l))
            .await
            .unwrap()
            .unwrap_or(0);
        l
    }

    async fn expect_closed(&mut self) {
        loop {
            let l = self.line().await;
            if l.is_empty() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_precise_and_local() {
    let weft = Weft::start(1, "[nats]\npayload_bytes_max = 1024\n");
    let bystander = nats(weft.nats).await;
    let mut watch = bystander.subscribe("ok.1").await.unwrap();
    nats_sync(&bystander).await;

    let mut verbose = RawNats::open(weft.nats).await;
    verbose.send("CONNECT {\"verbose\":true}\r\n").await;
    assert_eq!(verbose.line().await, "+OK\r\n");
    verbose.send("SUB a..b 1\r\n").await;
    assert_eq!(verbose.line().await, "-ERR 'Invalid Subject'\r\n");
    verbose.send("SUB v.1 1\r\nPUB v.1 2\r\nhi\r\n").await;
    assert_eq!(verbose.line().await, "+OK\r\n");
    assert_eq!(verbose.line().await, "+OK\r\n");
    assert_eq!(verbose.line().await, "MSG v.1 1 2\r\n");
    assert_eq!(verbose.line().await, "hi\r\n");
    verbose.send("PUB a.b/c 0\r\n\r\n").await;
    assert_eq!(verbose.line().await, "-ERR 'Invalid Publish Subject'\r\n");
    verbose.send("PING\r\n").await;
    assert_eq!(
        verbose.line().await,
        "PONG\r\n",
        "still open after a subject error"
    );

    let mut big = RawNats::open(weft.nats).await;
    big.send("PUB a 2000\r\n").await;
    assert_eq!(big.line().await, "-ERR 'Maximum Payload Violation'\r\n");
    big.expect_closed().await;

    let mut unknown = RawNats::open(weft.nats).await;
    unknown.send("FOO bar\r\n").await;
    assert_eq!(
        unknown.line().await,
        "-ERR 'Unknown Protocol Operation'\r\n"
    );
    unknown.expect_closed().await;

    bystander
        .publish("ok.1", "still here".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "still here".as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_pings_close_the_connection() {
    let weft = Weft::start(
        1,
        "[nats]\nping_interval_ms = 100\npings_outstanding_max = 2\n",
    );
    let mut silent = RawNats::open(weft.nats).await;
    silent.send("CONNECT {}\r\n").await;
    let mut answering = RawNats::open(weft.nats).await;
    answering.send("CONNECT {}\r\n").await;
    let keeper = tokio::spawn(async move {
        for _ in 0..8 {
            assert_eq!(answering.line().await, "PING\r\n");
            answering.send("PONG\r\n").await;
        }
        answering
    });
    assert_eq!(silent.line().await, "PING\r\n");
    assert_eq!(silent.line().await, "PING\r\n");
    assert_eq!(silent.line().await, "-ERR 'Stale Connection'\r\n");
    silent.expect_closed().await;
    let mut answering = keeper.await.unwrap();
    answering.send("PING\r\n").await;
    loop {
        let l = answering.line().await;
        assert!(!l.is_empty(), "the answering client was closed");
        if l == "PONG\r\n" {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_nats_consumer_gets_the_error() {
    let weft = Weft::start(
        1,
        "[limits]\nqueued_messages_max = 50\nqueued_bytes_max = 16384\nslow_consumer_policy = \"disconnect\"\n[socket]\nsend_buffer_bytes = 8192\n",
    );
    let mut slow = RawNats::open(weft.nats).await;
    slow.send("SUB s.1 1\r\nPING\r\n").await;
    assert_eq!(slow.line().await, "PONG\r\n");
    // A consumer that reads, but slower than the publisher sends.
    let reader = tokio::spawn(async move {
        let mut last = String::new();
        let mut n = 0u64;
        loop {
            let l = slow.line().await;
            if l.is_empty() {
                return last;
            }
            n += 1;
            if n.is_multiple_of(50) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            last = l;
        }
    });
    let publisher = nats(weft.nats).await;
    let payload = vec![b'x'; 1000];
    for _ in 0..3000 {
        publisher
            .publish("s.1", payload.clone().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    // What was queued arrives whole, then the error, then EOF.
    assert_eq!(reader.await.unwrap(), "-ERR 'Slow Consumer'\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_names_the_client_and_the_nats_server_level() {
    let weft = Weft::start(2, "");
    let mut seen = BTreeSet::new();
    for _ in 0..2 {
        let stream = TcpStream::connect(weft.nats).await.unwrap();
        let local = stream.local_addr().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        tokio::time::timeout(WAIT, reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        let json = line
            .strip_prefix("INFO ")
            .and_then(|l| l.strip_suffix("\r\n"))
            .unwrap_or_else(|| panic!("an INFO line: {line:?}"));
        let info: serde_json::Value = serde_json::from_str(json).unwrap();
        // Clients parse `version` as a nats-server version (major 2 for
        // headers and no-responders); weft's own version has its field.
        let version = info["version"].as_str().unwrap();
        let major: u32 = version.split('.').next().unwrap().parse().unwrap();
        assert!(major >= 2, "version {version}");
        assert_eq!(info["weft_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(info["client_ip"], local.ip().to_string());
        let id = info["client_id"].as_u64().expect("a numeric client_id");
        assert!(seen.insert(id), "client ids are distinct: {id} twice");
    }
}
