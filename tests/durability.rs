//! Durability across `kill -9` (issue 13): a router with a persistence
//! directory is killed with SIGKILL at a random moment under QoS 1/2 load
//! and restarted straight away on the same ports with the same directory.
//! What its acknowledgements promised must still hold afterwards:
//!
//! - every QoS 1 event whose PUBACK reached its publisher reaches the
//!   persistent subscriber (at least once; a copy it got before carries
//!   DUP), the retained message set before the first kill is still there,
//!   the session resumes with session present = 1;
//! - an MQTT 5 QoS 2 flow delivers each event whose PUBREC reached the
//!   publisher exactly once to the application;
//! - sessions (with their subscriptions) and retained messages (and their
//!   deletions) come back when the shard count changes between runs;
//! - a restart right after `kill -9` binds its ports and serves.
//!
//! Random kill moments come from a seed the test prints (`WEFT_SEED=N`
//! replays one). Nothing here asserts a time; every wait is bounded by
//! `common::WAIT`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::durable::*;
use common::*;
use rumqttc::QoS;

/// Waits until a QoS 1 probe on `topic`, published again every 50 ms by
/// `publisher`, reaches `sub`: its subscription is then in force on every
/// shard (interest travels between shards asynchronously).
async fn fence_recorder(publisher: &Client, topic: &str, sub: &Recorder) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0u64;
    loop {
        publisher
            .publish(topic, QoS::AtLeastOnce, n.to_string())
            .await;
        n += 1;
        for _ in 0..10 {
            if !sub.on(topic).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe {topic} never reached {}",
            sub.id
        );
    }
}

/// Publishes one QoS 1 message (retained or not) on a fresh clean client
/// and waits for its PUBACK.
async fn publish_acked(
    addr: std::net::SocketAddr,
    id: &str,
    topic: &str,
    retain: bool,
    payload: &str,
) {
    let mut c = connect(addr, id).await;
    if retain {
        c.publish_retained(topic, QoS::AtLeastOnce, payload).await;
    } else {
        c.publish(topic, QoS::AtLeastOnce, payload).await;
    }
    c.pubacks(1).await;
}

/// Number → the copies of it (in arrival order) received on `topic`.
fn copies<'a>(got: &'a [Got], topic: &str) -> BTreeMap<u64, Vec<&'a Got>> {
    let mut m: BTreeMap<u64, Vec<&Got>> = BTreeMap::new();
    for g in got.iter().filter(|g| g.topic == topic) {
        m.entry(g.number()).or_default().push(g);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_acked_events_survive_kill9_rounds() {
    const ROUNDS: usize = 3;
    const PUBLISHERS: usize = 2;
    let mut rng = Rng::new(seed("qos1_acked_events_survive_kill9_rounds"));
    let dir = TempDir::new("qos1");
    let mut weft = Durable::start(
        2,
        "[persistence]\nsync = \"batch\"\n",
        &persistence_args(&dir.path),
    );

    let mut sub = Recorder::new("dur-sub");
    assert!(
        !sub.connect(weft.addr(), false).await,
        "a new session: session present = 0"
    );
    sub.subscribe("dur/#", QoS::AtLeastOnce).await;
    {
        let probe = connect(weft.addr(), "dur-probe").await;
        fence_recorder(&probe, "dur/probe", &sub).await;
    }
    publish_acked(weft.addr(), "dur-retainer", "dur/retained", true, "kept").await;

    let mut next = [0u64; PUBLISHERS];
    let mut acked: [BTreeSet<u64>; PUBLISHERS] = Default::default();
    for round in 0..ROUNDS {
        let mut pumps = Vec::new();
        for (p, start) in next.iter().enumerate() {
            pumps.push(
                Pump::start(
                    weft.addr(),
                    &format!("dur-pub{p}"),
                    &format!("dur/p{p}"),
                    PumpKind::V4Qos1,
                    *start,
                    Duration::from_millis(1),
                )
                .await,
            );
        }
        // The subscriber goes away for part of the round (maybe across the
        // kill); the kill comes at a random moment of the load.
        let kill_at = rng.millis(300, 1500);
        let away_at = rng.millis(0, kill_at.as_millis() as u64);
        let back_at = away_at + rng.millis(100, 900);
        eprintln!(
            "round {round}: subscriber away {away_at:?}..{back_at:?}, kill -9 at {kill_at:?}"
        );
        let began = tokio::time::Instant::now();
        tokio::time::sleep_until(began + away_at).await;
        sub.drop_connection();
        if back_at < kill_at {
            tokio::time::sleep_until(began + back_at).await;
            assert!(
                sub.connect(weft.addr(), false).await,
                "round {round}: back before the kill: session present = 1"
            );
        }
        tokio::time::sleep_until(began + kill_at).await;
        weft.kill9();
        for (p, pump) in pumps.iter_mut().enumerate() {
            let from = next[p];
            next[p] = pump.stop().await;
            let got = pump.acked();
            eprintln!(
                "round {round}: publisher {p}: {from}..{} published, {} acknowledged",
                next[p],
                got.len()
            );
            acked[p].extend(got);
        }
        drop(pumps);
        weft.restart();
        let present = sub.connect(weft.addr(), false).await;
        if !present {
            weft.dump();
        }
        assert!(present, "round {round}: after kill -9: session present = 1");
    }
    let total: usize = acked.iter().map(BTreeSet::len).sum();
    assert!(
        total > 0,
        "no publish was acknowledged: the test tested nothing"
    );

    // A sentinel after everything: the session's queue is in order, so once
    // it arrives every redelivery queued before it has arrived too.
    publish_acked(weft.addr(), "dur-end", "dur/end", false, "0").await;
    let complete = sub
        .reached(|got| {
            let sentinel = got.iter().any(|g| g.topic == "dur/end");
            sentinel
                && (0..PUBLISHERS).all(|p| {
                    let have = copies(got, &format!("dur/p{p}"));
                    acked[p].iter().all(|n| have.contains_key(n))
                })
        })
        .await;
    let got = sub.got();
    let mut report = Vec::new();
    for (p, acked) in acked.iter().enumerate() {
        let have = copies(&got, &format!("dur/p{p}"));
        let missing: Vec<_> = acked.iter().filter(|n| !have.contains_key(n)).collect();
        // Every copy after the first of a number is a redelivery: DUP set.
        let unflagged: Vec<_> = have
            .iter()
            .filter(|(_, c)| c[1..].iter().any(|g| !g.dup))
            .map(|(n, c)| {
                (
                    *n,
                    c.iter().map(|g| (g.connection, g.dup)).collect::<Vec<_>>(),
                )
            })
            .collect();
        let redelivered = have.values().filter(|c| c.len() > 1).count();
        let wrong_qos: Vec<_> = have
            .iter()
            .filter(|(_, c)| c.iter().any(|g| g.qos != 1))
            .map(|(n, _)| *n)
            .collect();
        eprintln!(
            "publisher {p}: {} acknowledged, {} distinct received, {redelivered} redelivered",
            acked.len(),
            have.len()
        );
        if !missing.is_empty() {
            report.push(format!(
                "publisher {p}: {} acknowledged events never delivered: {:?}",
                missing.len(),
                &missing[..missing.len().min(20)]
            ));
        }
        if !unflagged.is_empty() {
            report.push(format!(
                "publisher {p}: redeliveries without DUP (number, [(connection, dup)]): {:?}",
                &unflagged[..unflagged.len().min(10)]
            ));
        }
        if !wrong_qos.is_empty() {
            report.push(format!(
                "publisher {p}: not delivered at QoS 1: {wrong_qos:?}"
            ));
        }
    }
    if !complete || !report.is_empty() {
        weft.dump();
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    assert!(complete, "the sentinel after the last round never arrived");

    // The retained message set before the first kill.
    let mut fresh = Recorder::new("dur-fresh");
    fresh.connect(weft.addr(), true).await;
    fresh.subscribe("dur/retained", QoS::AtLeastOnce).await;
    fresh
        .wait_until("the retained message", |got| !got.is_empty())
        .await;
    let r = &fresh.got()[0];
    assert_eq!(
        (r.topic.as_str(), &r.payload[..], r.retain),
        ("dur/retained", &b"kept"[..], true),
        "the retained message after {ROUNDS} kills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_qos2_exactly_once_across_kill9() {
    const ROUNDS: usize = 2;
    let mut rng = Rng::new(seed("mqtt5_qos2_exactly_once_across_kill9"));
    let dir = TempDir::new("qos2");
    let mut weft = Durable::start(
        2,
        "[persistence]\nsync = \"always\"\n",
        &persistence_args(&dir.path),
    );
    let mut sub = ExactlyOnce::new("x2-sub");
    assert!(
        !sub.connect(weft.addr(), 600, Some("x2/#")).await,
        "a new session: session present = 0"
    );
    // Interest in force on every shard before the load.
    {
        let probe = connect(weft.addr(), "x2-probe").await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !sub.delivered().iter().any(|d| d.topic == "x2/probe") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "probe never delivered"
            );
            probe.publish("x2/probe", QoS::AtLeastOnce, "p").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let mut next = 0u64;
    let mut acked = BTreeSet::new();
    for round in 0..ROUNDS {
        let mut pump = Pump::start(
            weft.addr(),
            "x2-pub",
            "x2/data",
            PumpKind::V5Qos2,
            next,
            Duration::from_millis(1),
        )
        .await;
        let kill_at = rng.millis(300, 1500);
        eprintln!("round {round}: kill -9 at {kill_at:?}");
        tokio::time::sleep(kill_at).await;
        weft.kill9();
        let from = next;
        next = pump.stop().await;
        let got = pump.acked();
        eprintln!(
            "round {round}: {from}..{next} published, {} acknowledged (PUBREC)",
            got.len()
        );
        acked.extend(got);
        drop(pump);
        weft.restart();
        let present = sub.connect(weft.addr(), 600, None).await;
        if !present {
            weft.dump();
        }
        assert!(present, "round {round}: after kill -9: session present = 1");
    }
    assert!(
        !acked.is_empty(),
        "no publish was acknowledged: the test tested nothing"
    );

    // A sentinel after everything (the session's queue is in order), then
    // every QoS 2 flow completed: no packet id awaits its PUBREL.
    let (end, _) = v5_client(weft.addr(), "x2-end", None).await;
    end.publish(
        "x2/end",
        rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
        false,
        "0",
    )
    .await
    .unwrap();
    let complete = sub
        .reached(|d| {
            d.iter().any(|d| d.topic == "x2/end")
                && acked.iter().all(|n| {
                    d.iter()
                        .any(|d| d.topic == "x2/data" && d.payload == n.to_string().as_bytes())
                })
        })
        .await;
    let released = {
        let deadline = tokio::time::Instant::now() + WAIT;
        while sub.awaiting_pubrel() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sub.awaiting_pubrel() == 0
    };
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for d in sub.delivered().iter().filter(|d| d.topic == "x2/data") {
        let n: u64 = std::str::from_utf8(&d.payload).unwrap().parse().unwrap();
        *counts.entry(n).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|n| !counts.contains_key(n)).collect();
    let twice: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    eprintln!(
        "{} acknowledged, {} delivered, {} resent PUBLISH recognised by packet id",
        acked.len(),
        counts.len(),
        sub.resent_seen()
    );
    if !missing.is_empty() || !twice.is_empty() || !complete || !released {
        weft.dump();
        // What the receiver saw around each suspect number: its packets
        // and those of the same packet ids.
        let trace = sub.trace();
        let suspects: BTreeSet<String> = missing
            .iter()
            .map(|n| n.to_string())
            .chain(twice.iter().map(|(n, _)| n.to_string()))
            .collect();
        let ids: BTreeSet<u16> = trace
            .iter()
            .filter_map(|t| match t {
                Trace::Publish(_, id, _, payload, _) if suspects.contains(payload) => Some(*id),
                _ => None,
            })
            .collect();
        for (i, t) in trace.iter().enumerate() {
            let near = trace[i.saturating_sub(3)..(i + 4).min(trace.len())]
                .iter()
                .any(|t| matches!(t, Trace::Publish(_, _, _, p, _) if suspects.contains(p)));
            let same_id = match t {
                Trace::Publish(_, id, ..) | Trace::PubRel(_, id, _) => ids.contains(id),
            };
            if near || same_id {
                eprintln!("trace {i}: {t:?}");
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged QoS 2 events never delivered: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        twice.is_empty(),
        "QoS 2 events delivered more than once (number, times): {twice:?}"
    );
    assert!(complete, "the sentinel after the last round never arrived");
    assert!(
        released,
        "{} QoS 2 packet ids never released (PUBREL) after the restarts",
        sub.awaiting_pubrel()
    );
}

/// 20 persistent sessions (one subscription each), 50 retained messages
/// (10 of them deleted, one replaced) on 2 shards; `kill -9`; back on 1
/// shard, then on 3: every session resumes (session present = 1) and gets
/// what is published on its topic without subscribing again; the retained
/// store is exactly what it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_and_sessions_back_after_restart_with_other_shard_count() {
    const SESSIONS: usize = 20;
    const RETAINED: usize = 50;
    const DELETED: usize = 10;
    let dir = TempDir::new("shards");
    let mut weft = Durable::start(
        2,
        "[persistence]\nsync = \"batch\"\n",
        &persistence_args(&dir.path),
    );
    // Sessions spread over both shards (each shard's own listener).
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let mut s = Recorder::new(&format!("sh-{i}"));
        let addr = weft.weft.shard_addrs[i % 2];
        assert!(!s.connect(addr, false).await, "sh-{i}: a new session");
        s.subscribe(&format!("sh/{i}"), QoS::AtLeastOnce).await;
        sessions.push(s);
    }
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    {
        let mut retainer = connect(weft.addr(), "sh-retainer").await;
        for i in 0..RETAINED {
            retainer
                .publish_retained(&format!("rt/{i}"), QoS::AtLeastOnce, format!("v{i}"))
                .await;
            expected.insert(format!("rt/{i}"), format!("v{i}"));
        }
        for i in 0..DELETED {
            retainer
                .publish_retained(&format!("rt/{i}"), QoS::AtLeastOnce, "")
                .await;
            expected.remove(&format!("rt/{i}"));
        }
        retainer
            .publish_retained(&format!("rt/{DELETED}"), QoS::AtLeastOnce, "replaced")
            .await;
        expected.insert(format!("rt/{DELETED}"), "replaced".into());
        retainer.pubacks(RETAINED + DELETED + 1).await;
    }
    // A PUBACK on each shard after its sessions subscribed: what the shard
    // logged before it is as durable as that event (the log is in order).
    for (k, addr) in weft.weft.shard_addrs.clone().into_iter().enumerate() {
        publish_acked(addr, &format!("sh-barrier-{k}"), "sh/barrier", false, "b").await;
    }
    // Half of the sessions parked (DISCONNECT), half online at the kill.
    for s in sessions.iter_mut().step_by(2) {
        s.disconnect().await;
    }
    for s in sessions.iter().step_by(2) {
        wait_parked(weft.weft.admin, &s.id).await;
    }

    for (round, shards) in [1usize, 3].into_iter().enumerate() {
        weft.restart_with_shards(shards);
        for s in sessions.iter_mut() {
            let present = s.connect(weft.addr(), false).await;
            if !present {
                weft.dump();
            }
            assert!(
                present,
                "{} on {shards} shard(s): session present = 1",
                s.id
            );
        }
        {
            let mut publisher = connect(weft.addr(), &format!("sh-pub-{round}")).await;
            for i in 0..SESSIONS {
                publisher
                    .publish(&format!("sh/{i}"), QoS::AtLeastOnce, format!("{round}-{i}"))
                    .await;
            }
            publisher.pubacks(SESSIONS).await;
        }
        for (i, s) in sessions.iter().enumerate() {
            let want = format!("{round}-{i}");
            let topic = format!("sh/{i}");
            if !s
                .reached(|got| {
                    got.iter()
                        .any(|g| g.topic == topic && g.payload == want.as_bytes())
                })
                .await
            {
                weft.dump();
                panic!(
                    "{} on {shards} shard(s): nothing on its subscription {topic}",
                    s.id
                );
            }
        }
        // The retained store: exactly what it held, deletions included. The
        // replay to a new subscription comes before what is published after
        // it (a sentinel, not retained).
        let mut check = Recorder::new(&format!("sh-check-{round}"));
        check.connect(weft.addr(), true).await;
        check.subscribe("rt/#", QoS::AtLeastOnce).await;
        publish_acked(
            weft.addr(),
            &format!("sh-end-{round}"),
            "rt/end",
            false,
            "end",
        )
        .await;
        check
            .wait_until("the sentinel after the retained replay", |got| {
                got.iter().any(|g| g.topic == "rt/end")
            })
            .await;
        let got: BTreeMap<String, String> = check
            .got()
            .into_iter()
            .filter(|g| g.retain)
            .map(|g| (g.topic, String::from_utf8(g.payload).unwrap()))
            .collect();
        if got != expected {
            weft.dump();
        }
        assert_eq!(
            got, expected,
            "the retained store on {shards} shard(s) after kill -9"
        );
    }
}

/// Five `kill -9` and immediate restarts on the same ports, with live
/// connections at each kill: the router comes up every time (its bind
/// retries while the killed process's sockets linger) and serves its
/// persistent session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_right_after_kill9_binds() {
    const CYCLES: usize = 5;
    let dir = TempDir::new("rebind");
    let mut weft = Durable::start(2, "", &persistence_args(&dir.path));
    let mut sub = Recorder::new("rb-sub");
    for cycle in 0..=CYCLES {
        let present = sub.connect(weft.addr(), false).await;
        assert_eq!(present, cycle > 0, "cycle {cycle}: session present");
        if cycle == 0 {
            sub.subscribe("rb/#", QoS::AtLeastOnce).await;
            let probe = connect(weft.addr(), "rb-probe").await;
            fence_recorder(&probe, "rb/probe", &sub).await;
        }
        let topic = format!("rb/{cycle}");
        // Connected, not yet acknowledged: the kill comes with both a
        // publisher and a subscriber on the listener.
        publish_acked(weft.addr(), "rb-pub", &topic, false, "x").await;
        sub.wait_until(&format!("cycle {cycle}: {topic}"), |got| {
            got.iter().any(|g| g.topic == topic)
        })
        .await;
        if cycle < CYCLES {
            // `launch_with` panics with the router's stderr if it exits
            // (e.g. "cannot bind MQTT listener …: Address already in use").
            weft.restart();
        }
    }
}
