//! Durability across a mesh link (issue 13, acceptance 1, "across a mesh
//! link"): a router killed with `kill -9` while it holds QoS 1 copies for a
//! peer (in its resend store: sent or waiting for the peer's link, not yet
//! acknowledged by the peer) must not lose any event its publisher got a
//! PUBACK for.
//!
//! Two routers, one shard each, each with its own persistence directory:
//! A (the publisher's) dials B (the persistent subscriber's). Each is
//! restarted on the same ports (MQTT, admin, mesh) with the same directory.
//!
//! - B is killed first, so A holds its copies for B (the link is held,
//!   `mesh.link_hold_ms` large: B is expected back); A acknowledges N
//!   events, then is killed too; both come back, and the subscriber
//!   (session present = 1) gets every acknowledged number.
//! - B stays up; A is killed right after its publisher got every PUBACK,
//!   before B acknowledged the copies (B is frozen with SIGSTOP from before
//!   the first publish until A is dead, so that none is acknowledged: a B
//!   left running might acknowledge them all first and test nothing; the
//!   payloads are large enough that most copies have not left A either);
//!   every acknowledged number still reaches B's subscriber.
//!
//! At least once: a copy B got before the kill may come again. Nothing here
//! asserts a time; every wait is bounded by `common::WAIT`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::durable::*;
use common::*;
use rumqttc::QoS;

/// Quick redials, a link that drops is held far longer than a test runs
/// (B is expected back: QoS 1 copies for it wait in A's resend store).
const MESH_TOML: &str = "[mesh]
keepalive_ms = 200
link_timeout_ms = 2000
link_hold_ms = 120000
reconnect_min_ms = 50
reconnect_max_ms = 100
";

/// Events the publisher on A gets acknowledged per test.
const N: u64 = 200;

/// Payload bytes after the number when B is frozen: N of them (3.2 MB)
/// are more than the socket buffers of a link whose reader stopped take.
const PAD: usize = 16 * 1024;

/// The two routers of a test, B listening for links and A dialing it.
struct Pair {
    a: Durable,
    b: Durable,
    _dirs: (TempDir, TempDir),
}

impl Pair {
    async fn start(tag: &str) -> Pair {
        let (dir_a, dir_b) = (
            TempDir::new(&format!("{tag}-a")),
            TempDir::new(&format!("{tag}-b")),
        );
        let b = Durable::start_mesh("B", MESH_TOML, &dir_b.path, true, &[]);
        let b_mesh = b.mesh().expect("B's mesh listener");
        let a = Durable::start_mesh("A", MESH_TOML, &dir_a.path, false, &[b_mesh]);
        let pair = Pair {
            a,
            b,
            _dirs: (dir_a, dir_b),
        };
        pair.links_up("A and B linked").await;
        pair
    }

    /// Waits (bounded) until A's link to B is up on both ends.
    async fn links_up(&self, what: &str) {
        for (name, r) in [("A", &self.a), ("B", &self.b)] {
            let peer = if name == "A" { "B" } else { "A" };
            let up = tokio::time::timeout(WAIT, async {
                loop {
                    let view = links(r.weft.admin).await;
                    if view.to(peer).is_some_and(|l| l.state == "up") {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            if up.is_err() {
                self.dump();
                panic!("{what}: {name}'s link to {peer} not up in time");
            }
        }
    }

    fn dump(&self) {
        eprintln!("===== router A =====");
        self.a.dump();
        eprintln!("===== router B =====");
        self.b.dump();
    }
}

/// A persistent QoS 1 subscriber on B to `mesh/#`, with the interest known
/// to A: a QoS 1 probe published on A (again every 50 ms) has reached it.
async fn subscribe_across(pair: &Pair, id: &str) -> Recorder {
    let mut sub = Recorder::new(id);
    assert!(
        !sub.connect(pair.b.addr(), false).await,
        "{id}: a new session: session present = 0"
    );
    sub.subscribe("mesh/#", QoS::AtLeastOnce).await;
    let probe = connect(pair.a.addr(), &format!("{id}-probe")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0u64;
    loop {
        probe
            .publish("mesh/probe", QoS::AtLeastOnce, n.to_string())
            .await;
        n += 1;
        for _ in 0..10 {
            if !sub.on("mesh/probe").is_empty() {
                return sub;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if tokio::time::Instant::now() >= deadline {
            pair.dump();
            panic!("a probe published on A never reached {id} on B");
        }
    }
}

/// Publishes `0..N` on `mesh/data` at QoS 1 from a client of A, each
/// number followed by a space and `pad` bytes, and waits for every PUBACK
/// (A stays up meanwhile, so each one comes); returns the numbers
/// acknowledged.
async fn publish_acked(pair: &Pair, id: &str, pad: usize) -> BTreeSet<u64> {
    let mut publisher = connect(pair.a.addr(), id).await;
    let padding = " ".to_string() + &"x".repeat(pad);
    for n in 0..N {
        publisher
            .publish("mesh/data", QoS::AtLeastOnce, format!("{n}{padding}"))
            .await;
    }
    // rumqttc reuses packet ids past its in-flight window: count them.
    let acks = publisher.pubacks(N as usize).await.len();
    assert_eq!(acks, N as usize, "{id}: a PUBACK for each of {N} publishes");
    // Every publish was acknowledged: 0..N.
    (0..N).collect()
}

/// The number a payload of [`publish_acked`] starts with.
fn number(g: &Got) -> u64 {
    let digits = g.payload.split(|&b| b == b' ').next().unwrap_or_default();
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("payload on {} starts with no number", g.topic))
}

/// Waits (bounded) until every number in `acked` has reached `sub` on
/// `mesh/data`; on failure prints both routers' logs and A's `/links`, and
/// names the missing numbers.
async fn expect_all(pair: &Pair, sub: &Recorder, acked: &BTreeSet<u64>) {
    let complete = sub
        .reached(|got| {
            let have: BTreeSet<u64> = got
                .iter()
                .filter(|g| g.topic == "mesh/data")
                .map(number)
                .collect();
            acked.is_subset(&have)
        })
        .await;
    let got = sub.on("mesh/data");
    let have: BTreeSet<u64> = got.iter().map(number).collect();
    let missing: Vec<u64> = acked.difference(&have).copied().collect();
    eprintln!(
        "{}: {} acknowledged, {} distinct received, {} copies in all",
        sub.id,
        acked.len(),
        have.len(),
        got.len()
    );
    if !complete {
        for (name, r) in [("A", &pair.a), ("B", &pair.b)] {
            let (_, body) = admin_get(r.weft.admin, "/links").await;
            eprintln!("{name} /links: {body}");
            // Where an event can end up short of a subscriber.
            let (_, metrics) = admin_get(r.weft.admin, "/metrics").await;
            for line in metrics.lines().filter(|l| {
                !l.starts_with('#')
                    && [
                        "dropped",
                        "messages_",
                        "queued",
                        "sessions",
                        "subscriptions",
                        "replays",
                        "no_route",
                        "parked",
                    ]
                    .iter()
                    .any(|k| l.contains(k))
            }) {
                eprintln!("{name} /metrics: {line}");
            }
        }
        pair.dump();
    }
    assert!(
        missing.is_empty(),
        "{}: {} of {} events acknowledged by A never reached the subscriber on B: {:?}",
        sub.id,
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        got.iter().all(|g| g.qos == 1),
        "{}: every copy delivered at QoS 1",
        sub.id
    );
}

/// A's link to B is down and held (B is expected back).
async fn wait_b_held(pair: &Pair) {
    let held = tokio::time::timeout(WAIT, async {
        loop {
            let view = links(pair.a.weft.admin).await;
            if view.held_peers.iter().any(|p| p == "B") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if held.is_err() {
        pair.dump();
        panic!("A never held its link to the killed B");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_qos1_survives_kill9_of_the_router_holding_copies_for_a_peer() {
    let mut pair = Pair::start("held").await;
    let mut sub = subscribe_across(&pair, "mesh-held-sub").await;

    // B goes: A holds its link, and the QoS 1 copies it makes for B wait in
    // its resend store.
    pair.b.kill9();
    sub.drop_connection();
    wait_b_held(&pair).await;
    let acked = publish_acked(&pair, "mesh-held-pub", 0).await;
    let unacked = links(pair.a.weft.admin).await.sum_to("B", |l| l.unacked);
    eprintln!(
        "A acknowledged {} events; /links unacked to B: {unacked}",
        acked.len()
    );

    // A goes too, holding them; then both come back, A first.
    pair.a.kill9();
    pair.a.restart();
    pair.b.restart();
    pair.links_up("after both restarts").await;
    let present = sub.connect(pair.b.addr(), false).await;
    if !present {
        pair.dump();
    }
    assert!(present, "after kill -9 of B: session present = 1");
    expect_all(&pair, &sub, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_qos1_survives_kill9_of_the_publishers_router_right_after_the_pubacks() {
    let mut pair = Pair::start("live").await;
    let sub = subscribe_across(&pair, "mesh-live-sub").await;

    // B stays up but is frozen (SIGSTOP) while A takes the events and dies:
    // B acknowledges none of the copies before A is gone (a B left running
    // might acknowledge them all first, and the test would test nothing).
    // Its link stays up on A's side (a moment, shorter than the link
    // timeout), and with B not reading, the socket buffers between them
    // (a B that does not read grows no receive window) take only the first
    // copies: the rest are in A's resend store alone when A dies.
    pair.b.weft.signal(nix::sys::signal::Signal::SIGSTOP);
    let acked = publish_acked(&pair, "mesh-live-pub", PAD).await;
    let unacked = links(pair.a.weft.admin).await.sum_to("B", |l| l.unacked);
    eprintln!(
        "A acknowledged {} events; /links unacked to B: {unacked}",
        acked.len()
    );
    pair.a.kill9();
    pair.b.weft.signal(nix::sys::signal::Signal::SIGCONT);
    pair.a.restart();
    pair.links_up("after A's restart").await;
    assert!(sub.is_connected(), "the subscriber on B stayed connected");
    expect_all(&pair, &sub, &acked).await;
}
