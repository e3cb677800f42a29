//! The shared-memory transport end to end: the real router with
//! `--shm-listen` (a socket in a fresh temp folder), `weft-shm` clients
//! of both dialects next to rumqttc and async-nats clients.
//!
//! * events cross between shm (NATS and MQTT dialect), MQTT and NATS
//!   clients, both ways, and between shm clients (in order, ring wrap);
//! * a shm client process (`weft bench --transport shm`) killed with
//!   `kill -9` mid-stream: its connections go (`/metrics`), a healthy pair
//!   keeps exchanging, the router keeps running;
//! * a shm client that stops reading: the slow-consumer policy applies to
//!   it only (drop: counted, queues bounded by their limits; disconnect:
//!   it alone is disconnected), the others get everything;
//! * a segment scribbled on by its client (garbage indices, garbage
//!   bytes): that connection ends (with a log line for the indices), the
//!   others are unaffected;
//! * `shm.connections_max` and `shm.segment_bytes_max` refuse with errors
//!   that name them.
//!
//! Bounded waits only (`common::WAIT`); nothing asserts a time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use rumqttc::QoS;
use weft_shm::{Client as Shm, Dialect, Options};

/// A router with `--shm-listen DIR/shm.sock`; the folder goes with it.
struct ShmWeft {
    weft: Weft,
    sock: PathBuf,
    dir: PathBuf,
}

impl Drop for ShmWeft {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(shards: usize, toml: &str, capture_stderr: bool) -> ShmWeft {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weft-shm-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("shm.sock");
    let mut launch = Launch::new(shards, toml);
    launch.args = vec!["--shm-listen".into(), sock.display().to_string()];
    launch.log_level = Some("warn".into());
    launch.capture_stderr = capture_stderr;
    let weft = Weft::launch_with(launch);
    ShmWeft { weft, sock, dir }
}

fn options(dialect: Dialect, id: &str) -> Options {
    Options {
        dialect,
        client_id: id.to_string(),
        spin_us: 0,
        user: None,
        password: None,
    }
}

/// Connects, retrying (bounded) while the listener is not up yet.
fn shm(sock: &Path, dialect: Dialect, id: &str) -> Shm {
    let deadline = Instant::now() + WAIT;
    loop {
        match Shm::connect(sock, options(dialect, id)) {
            Ok(c) => return c,
            Err(weft_shm::Error::Io(e)) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{id}: shm connect to {}: {e}", sock.display()),
        }
    }
}

/// Receives (bounded) until a message on `topic`, skipping others.
fn recv_on(c: &Shm, who: &str, topic: &str) -> Msg {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_timeout(left) {
            Ok(Some(m)) if m.topic == topic => {
                return Msg {
                    topic: m.topic,
                    payload: m.payload,
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("{who}: nothing on {topic} in time"),
            Err(e) => panic!("{who}: waiting for {topic}: {e}"),
        }
    }
}

/// A shm client drained by a thread into a list, as `common::Inbox` does
/// for rumqttc and async-nats.
struct ShmInbox {
    name: String,
    msgs: Arc<Mutex<Vec<Msg>>>,
    /// The error that ended the receiving thread (the connection closed).
    ended: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShmInbox {
    fn new(name: &str, client: Arc<Shm>) -> ShmInbox {
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, e, s) = (msgs.clone(), ended.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match client.recv_timeout(Duration::from_millis(50)) {
                    Ok(Some(msg)) => m.lock().unwrap().push(Msg {
                        topic: msg.topic,
                        payload: msg.payload,
                    }),
                    Ok(None) => {}
                    Err(err) => {
                        *e.lock().unwrap() = Some(err.to_string());
                        return;
                    }
                }
            }
        });
        ShmInbox {
            name: name.to_string(),
            msgs,
            ended,
            stop,
            thread: Some(thread),
        }
    }

    fn len(&self) -> usize {
        self.msgs.lock().unwrap().len()
    }

    fn msgs(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    async fn wait_len(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.len() < n {
            if let Some(e) = self.ended.lock().unwrap().clone() {
                panic!(
                    "{}: ended ({e}) with {} of {n} messages",
                    self.name,
                    self.len()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} of {n} messages in time",
                self.name,
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ShmInbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sum over shards of one metric family's samples whose labels contain
/// `label` (e.g. `reason="queue_full"`; "" for all).
async fn metric_sum(admin: std::net::SocketAddr, name: &str, label: &str) -> f64 {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (bounded) until the router counts `n` connections in all.
async fn wait_connections(admin: std::net::SocketAddr, n: f64) {
    wait_until(&format!("{n} connections"), WAIT, || async move {
        let c = metric_sum(admin, "weft_connections", "").await;
        if c == n {
            Ok(())
        } else {
            Err(format!("{c} connections"))
        }
    })
    .await;
}

fn seq_payload(i: u64) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.resize(64, 0x5a);
    p
}

fn seq_of(m: &Msg) -> u64 {
    u64::from_le_bytes(m.payload[..8].try_into().unwrap())
}

async fn next_nats(ns: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, ns.next())
        .await
        .expect("NATS message in time")
        .expect("open")
}

/// Every pair of client kinds, both ways: shm NATS dialect, shm MQTT
/// dialect, rumqttc, async-nats; wildcards of each dialect; on two shards
/// (shm clients are handed round-robin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_clients_exchange_with_mqtt_nats_and_each_other() {
    let w = start(2, "", false);
    let sn = shm(&w.sock, Dialect::Nats, "shm-nats");
    sn.subscribe("x.*.>").unwrap();
    let sm = shm(&w.sock, Dialect::Mqtt, "shm-mqtt");
    sm.subscribe("x/+/#").unwrap();
    let mut mq = connect(w.weft.addr, "tcp-mqtt").await;
    mq.subscribe("x/#", QoS::AtMostOnce).await;
    let nc = nats(w.weft.nats).await;
    let mut ns = nc.subscribe("x.>").await.unwrap();
    nats_sync(&nc).await;

    // shm NATS dialect -> everyone.
    sn.publish("x.shmnats.a", b"from shm nats").unwrap();
    sn.flush().unwrap();
    let p = mq.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("x/shmnats/a", &b"from shm nats"[..])
    );
    let m = next_nats(&mut ns).await;
    assert_eq!(m.subject.as_str(), "x.shmnats.a");
    assert_eq!(
        recv_on(&sm, "shm-mqtt", "x/shmnats/a").payload,
        b"from shm nats"
    );

    // shm MQTT dialect -> everyone.
    sm.publish("x/shmmqtt/b", b"from shm mqtt").unwrap();
    sm.flush().unwrap();
    let p = mq.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("x/shmmqtt/b", &b"from shm mqtt"[..])
    );
    let m = next_nats(&mut ns).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("x.shmmqtt.b", &b"from shm mqtt"[..])
    );
    assert_eq!(
        recv_on(&sn, "shm-nats", "x.shmmqtt.b").payload,
        b"from shm mqtt"
    );

    // rumqttc and async-nats -> both shm clients.
    mq.publish("x/tcpmqtt/c", QoS::AtMostOnce, "from mqtt")
        .await;
    assert_eq!(
        recv_on(&sn, "shm-nats", "x.tcpmqtt.c").payload,
        b"from mqtt"
    );
    assert_eq!(
        recv_on(&sm, "shm-mqtt", "x/tcpmqtt/c").payload,
        b"from mqtt"
    );
    nc.publish("x.tcpnats.d", "from nats".into()).await.unwrap();
    nc.flush().await.unwrap();
    assert_eq!(
        recv_on(&sn, "shm-nats", "x.tcpnats.d").payload,
        b"from nats"
    );
    assert_eq!(
        recv_on(&sm, "shm-mqtt", "x/tcpnats/d").payload,
        b"from nats"
    );

    // shm -> shm, many messages through the 1 MiB rings (they wrap), in
    // order and once each, and one payload of 512 KiB.
    let sub = Arc::new(shm(&w.sock, Dialect::Nats, "shm-seq-sub"));
    sub.subscribe("seq.>").unwrap();
    let inbox = ShmInbox::new("shm-seq-sub", sub.clone());
    let publisher = shm(&w.sock, Dialect::Mqtt, "shm-seq-pub");
    const N: u64 = 30_000;
    for i in 0..N {
        publisher.publish("seq/n", &seq_payload(i)).unwrap();
    }
    let big: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
    publisher.publish("seq/big", &big).unwrap();
    publisher.flush().unwrap();
    inbox.wait_len(N as usize + 1).await;
    let got = inbox.msgs();
    let seqs: Vec<u64> = got
        .iter()
        .filter(|m| m.topic == "seq.n")
        .map(seq_of)
        .collect();
    assert_eq!(
        seqs,
        (0..N).collect::<Vec<_>>(),
        "every message once, in order"
    );
    let last = got.last().unwrap();
    assert_eq!(last.topic, "seq.big");
    assert!(last.payload == big, "the 512 KiB payload arrived intact");
    // The shm clients unsubscribe like any session: after it, the next
    // message sm gets is the fence published after the unsubscribed one.
    sm.subscribe("fence/#").unwrap();
    sm.unsubscribe("x/+/#").unwrap();
    sn.publish("x.after.unsub", b"-").unwrap();
    sn.publish("fence.end", b"-").unwrap();
    sn.flush().unwrap();
    while next_nats(&mut ns).await.subject.as_str() != "x.after.unsub" {}
    let m = sm.recv_timeout(WAIT).unwrap().expect("the fence in time");
    assert_eq!(m.topic, "fence/end", "nothing on x/ after the unsubscribe");
}

/// `weft bench --transport shm` (a publisher and a subscriber, NATS
/// dialect) is killed with SIGKILL while it streams: the router drops its
/// two connections, a healthy shm pair (both dialects) keeps exchanging,
/// an MQTT observer of the stream stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shm_client_killed_mid_stream_harms_only_itself() {
    let mut w = start(2, "", false);
    let pair_sub = Arc::new(shm(&w.sock, Dialect::Mqtt, "pair-sub"));
    pair_sub.subscribe("pair/#").unwrap();
    let inbox = ShmInbox::new("pair-sub", pair_sub.clone());
    let pair_pub = shm(&w.sock, Dialect::Nats, "pair-pub");
    let (_observer, observed) = Inbox::mqtt({
        let mut c = connect(w.weft.addr, "observer").await;
        c.subscribe("weft/bench", QoS::AtMostOnce).await;
        c
    });
    wait_connections(w.weft.admin, 3.0).await;

    let mut bench = std::process::Command::new(weft_bin())
        .args(["bench", "--transport", "shm", "--server"])
        .arg(&w.sock)
        .args([
            "--protocol",
            "nats",
            "--subject",
            "weft.bench",
            "--pubs",
            "1",
            "--subs",
            "1",
            "--size",
            "64",
            "--rate",
            "2000",
            "--duration",
            "600",
            "--no-progress",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn weft bench");
    // Mid-stream: the observer sees the bench's messages, and the router
    // counts its two connections.
    observed
        .wait_until("the bench streaming", |m| m.len() >= 200)
        .await;
    wait_connections(w.weft.admin, 5.0).await;
    bench.kill().expect("SIGKILL"); // Child::kill is SIGKILL
    bench.wait().unwrap();
    wait_connections(w.weft.admin, 3.0).await;
    assert_eq!(
        metric_sum(w.weft.admin, "weft_shm_connections", "").await,
        2.0,
        "the pair's shm connections stay, the bench's are gone"
    );

    for i in 0..500 {
        pair_pub.publish("pair.after", &seq_payload(i)).unwrap();
    }
    pair_pub.flush().unwrap();
    inbox.wait_len(500).await;
    let seqs: Vec<u64> = inbox.msgs().iter().map(seq_of).collect();
    assert_eq!(seqs, (0..500).collect::<Vec<_>>());
    assert!(w.weft.is_running(), "the router survived");
    // The observer is still connected: a message reaches it.
    pair_pub.publish("weft.bench", b"still here").unwrap();
    pair_pub.flush().unwrap();
    observed
        .wait_until("the observer still served", |m| {
            m.iter().any(|m| m.payload == b"still here")
        })
        .await;
}

/// A shm client subscribed to a stream that never reads: its 4 KiB ring
/// fills, then its session's queue (`limits.queued_*`), then the
/// slow-consumer policy applies to it alone. A healthy shm client and a
/// NATS client of the same stream get every message, in order.
async fn stalled_reader(policy: &str) {
    let toml = format!(
        "[limits]\nqueued_messages_max = 100\nqueued_bytes_max = 16384\n\
         slow_consumer_policy = \"{policy}\"\n[shm]\nring_bytes = 4096\n"
    );
    let w = start(2, &toml, false);
    let stalled = shm(&w.sock, Dialect::Nats, "stalled");
    stalled.subscribe("slow.>").unwrap();
    let healthy = Arc::new(shm(&w.sock, Dialect::Mqtt, "healthy"));
    healthy.subscribe("slow/#").unwrap();
    let inbox = ShmInbox::new("healthy", healthy.clone());
    let nc = nats(w.weft.nats).await;
    let nats_inbox = Inbox::nats("nats", nc.subscribe("slow.>").await.unwrap());
    nats_sync(&nc).await;
    let publisher = shm(&w.sock, Dialect::Nats, "flood");
    wait_connections(w.weft.admin, 4.0).await;

    // In batches smaller than the queue limit, each delivered to the
    // healthy subscribers before the next: only the stalled one overflows.
    const BATCH: u64 = 50;
    const BATCHES: u64 = 40;
    for b in 0..BATCHES {
        for i in b * BATCH..(b + 1) * BATCH {
            publisher.publish("slow.x", &seq_payload(i)).unwrap();
        }
        publisher.flush().unwrap();
        let n = ((b + 1) * BATCH) as usize;
        inbox.wait_len(n).await;
        nats_inbox.wait_until("the batch", |m| m.len() >= n).await;
    }
    let total = BATCH * BATCHES;
    let want: Vec<u64> = (0..total).collect();
    assert_eq!(inbox.msgs().iter().map(seq_of).collect::<Vec<_>>(), want);
    assert_eq!(
        nats_inbox.msgs().iter().map(seq_of).collect::<Vec<_>>(),
        want
    );

    let admin = w.weft.admin;
    if policy == "drop" {
        // Counted drops, and the queues stayed within their limits.
        let dropped = wait_until("drops counted", WAIT, || async move {
            let d = metric_sum(admin, "weft_dropped_total", "reason=\"queue_full\"").await;
            if d >= (total / 2) as f64 {
                Ok(d)
            } else {
                Err(format!("{d} dropped"))
            }
        })
        .await;
        let queued = metric_sum(admin, "weft_queued_messages", "").await;
        let queued_bytes = metric_sum(admin, "weft_queued_bytes", "").await;
        assert!(queued <= 100.0, "queued messages {queued} within the limit");
        assert!(
            queued_bytes <= 16384.0,
            "queued bytes {queued_bytes} within the limit"
        );
        println!("dropped {dropped} of {total} for the stalled client; {queued} queued");
        // Still connected: once it reads, it gets what its ring and queue
        // held, in order with gaps, then new messages again.
        assert_eq!(metric_sum(admin, "weft_connections", "").await, 4.0);
        let mut seqs = Vec::new();
        while let Some(m) = stalled.recv_timeout(Duration::from_millis(200)).unwrap() {
            seqs.push(u64::from_le_bytes(m.payload[..8].try_into().unwrap()));
        }
        assert!(
            !seqs.is_empty() && seqs.len() < total as usize,
            "{} kept",
            seqs.len()
        );
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        publisher.publish("slow.x", &seq_payload(total)).unwrap();
        publisher.flush().unwrap();
        let m = recv_on(&stalled, "stalled", "slow.x");
        assert_eq!(
            seq_of(&Msg {
                topic: m.topic,
                payload: m.payload
            }),
            total
        );
    } else {
        // Disconnected, it alone.
        wait_until("the slow consumer disconnected", WAIT, || async move {
            let d = metric_sum(admin, "weft_slow_consumer_disconnects_total", "").await;
            if d >= 1.0 {
                Ok(())
            } else {
                Err(format!("{d} disconnects"))
            }
        })
        .await;
        wait_connections(admin, 3.0).await;
        let deadline = Instant::now() + WAIT;
        loop {
            match stalled.recv_timeout(Duration::from_millis(100)) {
                Err(_) => break,
                Ok(_) => assert!(
                    Instant::now() < deadline,
                    "the stalled client never learnt it was closed"
                ),
            }
        }
        publisher.publish("slow.x", &seq_payload(total)).unwrap();
        publisher.flush().unwrap();
        inbox.wait_len(total as usize + 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shm_client_that_stops_reading_has_its_messages_dropped_alone() {
    stalled_reader("drop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shm_client_that_stops_reading_is_disconnected_alone() {
    stalled_reader("disconnect").await;
}

#[derive(Clone, Copy, Debug)]
enum Scribble {
    /// Impossible ring indices in the header.
    Indices,
    /// Garbage bytes in the client-to-router ring, with valid indices.
    Bytes,
}

/// What a buggy or hostile client could do to its own segment.
fn scribble(c: &Shm, how: Scribble) {
    use weft_shm::segment::{Header, HEADER_BYTES};
    // SAFETY: the mapping is the client's own, alive while `c` is; the
    // header fields are atomics; the bytes written lie within the ring.
    unsafe {
        let (ptr, len) = c.segment_for_tests();
        let hdr = &*(ptr as *const Header);
        let ring = u64::from_le(hdr.info.ring_bytes);
        assert_eq!(len, HEADER_BYTES + 2 * ring as usize);
        match how {
            Scribble::Indices => {
                let head = hdr.c2r.head.load(Ordering::Acquire);
                hdr.c2r.tail.store(head + 3 * ring + 17, Ordering::Release);
                hdr.r2c.head.store(u64::MAX - 5, Ordering::Release);
            }
            Scribble::Bytes => {
                let tail = hdr.c2r.tail.load(Ordering::Acquire);
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                for i in 0..300u64 {
                    // Starts with 0x00 (no MQTT packet type, no NATS op).
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let byte = if i == 0 { 0 } else { x as u8 };
                    *ptr.add(HEADER_BYTES + ((tail + i) % ring) as usize) = byte;
                }
                hdr.c2r.tail.store(tail + 300, Ordering::Release);
            }
        }
    }
}

/// Four victims in turn (both dialects, garbage indices and garbage
/// bytes): each one's connection ends, and a healthy shm pair and an
/// MQTT client go on as before each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scribbled_segment_ends_only_its_own_connection() {
    let mut w = start(2, "", true);
    let pair_sub = Arc::new(shm(&w.sock, Dialect::Mqtt, "pair-sub"));
    pair_sub.subscribe("ok/#").unwrap();
    let inbox = ShmInbox::new("pair-sub", pair_sub.clone());
    let pair_pub = shm(&w.sock, Dialect::Nats, "pair-pub");
    let (_observer, observed) = Inbox::mqtt({
        let mut c = connect(w.weft.addr, "observer").await;
        c.subscribe("victim/#", QoS::AtMostOnce).await;
        c
    });
    let admin = w.weft.admin;
    wait_connections(admin, 3.0).await;
    let protocol_errors = metric_sum(admin, "weft_protocol_errors_total", "").await;
    let victims = [
        (Dialect::Nats, Scribble::Indices),
        (Dialect::Mqtt, Scribble::Indices),
        (Dialect::Nats, Scribble::Bytes),
        (Dialect::Mqtt, Scribble::Bytes),
    ];
    for (k, (dialect, how)) in victims.into_iter().enumerate() {
        let id = format!("victim-{k}");
        let victim = shm(&w.sock, dialect, &id);
        victim
            .subscribe(match dialect {
                Dialect::Nats => "victim.>",
                Dialect::Mqtt => "victim/#",
            })
            .unwrap();
        wait_connections(admin, 4.0).await;
        scribble(&victim, how);
        let _ = victim.flush(); // rings the router if it sleeps
                                // The router also writes to the victim (its router-to-client
                                // ring's indices are read then).
        pair_pub
            .publish(&format!("victim.{k}"), b"to the victim")
            .unwrap();
        pair_pub.flush().unwrap();
        wait_connections(admin, 3.0).await;
        let deadline = Instant::now() + WAIT;
        loop {
            match victim.recv_timeout(Duration::from_millis(100)) {
                Err(_) => break,
                Ok(_) => assert!(
                    Instant::now() < deadline,
                    "{id} ({dialect:?}, {how:?}) never learnt its connection ended"
                ),
            }
        }
        // The others are unaffected.
        let before = inbox.len();
        for i in 0..100 {
            pair_pub
                .publish(&format!("ok.{k}"), &seq_payload(i))
                .unwrap();
        }
        pair_pub.flush().unwrap();
        inbox.wait_len(before + 100).await;
        let tail: Vec<u64> = inbox.msgs()[before..].iter().map(seq_of).collect();
        assert_eq!(tail, (0..100).collect::<Vec<_>>(), "after {id}");
        observed
            .wait_until("the observer still served", |m| {
                m.iter().any(|m| m.topic == format!("victim/{k}"))
            })
            .await;
    }
    // Impossible indices are logged, naming the connection; garbage
    // bytes are protocol errors like any malformed packet.
    let line = w.weft.wait_for_log("impossible");
    let pid = format!("pid {}", std::process::id());
    assert!(line.contains(&pid), "the line names the client: {line}");
    wait_until("corrupt closes counted", WAIT, || async move {
        let n = metric_sum(admin, "weft_shm_corrupt_closes_total", "").await;
        if n >= 2.0 {
            Ok(())
        } else {
            Err(format!("{n} corrupt closes"))
        }
    })
    .await;
    wait_until("protocol errors counted", WAIT, || async move {
        let e = metric_sum(admin, "weft_protocol_errors_total", "").await;
        if e >= protocol_errors + 2.0 {
            Ok(())
        } else {
            Err(format!("{e} protocol errors"))
        }
    })
    .await;
    assert!(w.weft.is_running());
}

/// `shm.connections_max` and `shm.segment_bytes_max` refuse a client at
/// the handshake with an error naming the key; a slot freed is taken
/// again; the admitted clients keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_limits_refuse_with_an_error_naming_them() {
    let w = start(1, "[shm]\nconnections_max = 2\n", false);
    let a = shm(&w.sock, Dialect::Nats, "a");
    let b = shm(&w.sock, Dialect::Mqtt, "b");
    let refused = Shm::connect(&w.sock, options(Dialect::Nats, "c"))
        .err()
        .expect("a third client refused");
    let text = refused.to_string();
    assert!(
        matches!(refused, weft_shm::Error::Refused(_)) && text.contains("connections_max"),
        "{text}"
    );
    let admin = w.weft.admin;
    wait_until("the refusal counted", WAIT, || async move {
        let r = metric_sum(
            admin,
            "weft_connections_refused_total",
            "reason=\"listener\"",
        )
        .await;
        if r >= 1.0 {
            Ok(())
        } else {
            Err(format!("{r} refused"))
        }
    })
    .await;
    drop(a);
    let deadline = Instant::now() + WAIT;
    let c = loop {
        match Shm::connect(&w.sock, options(Dialect::Nats, "c")) {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the freed slot never came back: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    b.subscribe("lim/#").unwrap();
    c.publish("lim.x", b"through").unwrap();
    c.flush().unwrap();
    assert_eq!(recv_on(&b, "b", "lim/x").payload, b"through");
    drop((b, c, w));

    // One 4 KiB-ring segment is 12 KiB: a budget of 16 KiB holds one.
    let w = start(
        1,
        "[shm]\nring_bytes = 4096\nsegment_bytes_max = 16384\n",
        false,
    );
    let _a = shm(&w.sock, Dialect::Mqtt, "a");
    let refused = Shm::connect(&w.sock, options(Dialect::Mqtt, "b"))
        .err()
        .expect("a second segment refused");
    assert!(
        refused.to_string().contains("segment_bytes_max"),
        "{refused}"
    );
}
