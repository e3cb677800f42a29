//! Random meshes under faults, one seed each; and the restart scenario of
//! `tests/mesh_restart.rs` in virtual time.
//!
//! `cargo test` runs seeds `0..SEEDS` split over [`SHARDS`] tests (the
//! harness runs them in parallel), then [`REGRESSIONS`].
//! `WEFT_SIM_SEEDS=n` runs n seeds instead; `WEFT_SIM_SEED=s` replays one
//! (`WEFT_SIM_TRACE=1` tells its story); `WEFT_SIM_KEEP_GOING=1` lists
//! every failing seed with its reason before failing. A failing seed
//! prints itself and the command that replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;
use crate::mesh::route::RETAINED_KEY;
use crate::topic::filter_matches;

/// Seeds run by `cargo test`: all of 0..10000 pass. About 18 ms of CPU a
/// seed in a debug build.
const SEEDS: u64 = 4000;

/// The seed range is split over this many `#[test]`s.
const SHARDS: u64 = 8;

/// Seeds that found a fault, fixed since (each replays as a regression).
/// 3: split horizon by link let a held link's routes be told back to the
/// same peer over its new link (`route::Router::wanted`).
/// 45, 87, 89, 129, 180, 257 (and 17 first): a QoS 1 copy that went round a routing
/// loop (a distance vector reconverging after a partition) was dropped
/// at its origin or past `HOPS_MAX` and acknowledged: lost.
/// 34, 119, 277: keeping it instead, with its upstream obligation, made
/// the cumulative acknowledgements round the loop wait on each other;
/// the router that finds the loop takes the copy over.
/// 65: a live route through a router that itself held its route replaced
/// a held one, and both withdrew (held routes compete by distance).
/// 17: in a partition the live routes that took over from held links
/// went through the same failure (held links keep their routes, at
/// `route::HELD_DISTANCE` at least); 25: two held links in a path.
/// 177: a stale held route through a returned peer outranked a real one
/// (`route::RETURNED_DISTANCE`); 3505: the returned peer's longer,
/// second-hand route replaced a held one and went; 3609: a restarted
/// router's silence must not end the routes held through it.
/// 843: a looped copy taken over still waited behind earlier copies of
/// its link (`LinkSession::take_over`); 1028: a copy sent back to the
/// router it came from over a held link bounced; 1366, 1375, 4460, 4497:
/// copies that crossed two links in opposite orders waited on each
/// other's cumulative acknowledgement for good (custody,
/// `LinkSession::set_custody_after`).
/// 1922, 2090, 2586, 9767: a retained copy (QoS 0) with no route yet,
/// for a held link, or lost in flight, was gone for good and stores never
/// converged (retained copies travel as QoS 1 copies do). 2583: a copy parked after the tables had settled waited
/// for a change that never came (parked copies are tried again on a
/// timer too).
/// 8325, 9941: while routes reconverged, every neighbour withdrew its
/// route to a subscriber's router for a moment; a QoS 1 event published
/// then had no destination and was lost (withdrawn interest is held down:
/// `route::Router::set_interest_hold_down`).
const REGRESSIONS: [u64; 30] = [
    3, 17, 25, 34, 45, 65, 87, 89, 119, 129, 177, 180, 257, 277, 843, 1028, 1366, 1375, 1922, 2090,
    2583, 2586, 3505, 3609, 4434, 4460, 4497, 8325, 9767, 9941,
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: every seed, 0 included, gives a good stream.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

const TOPOLOGIES: [&str; 5] = ["line", "star", "ring", "full", "random"];

fn edges(kind: &str, n: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut e = BTreeSet::new();
    match kind {
        "line" => (1..n).for_each(|i| {
            e.insert((i - 1, i));
        }),
        "star" => (1..n).for_each(|i| {
            e.insert((0, i));
        }),
        "ring" => (0..n).for_each(|i| {
            let j = (i + 1) % n;
            if i != j {
                e.insert((i.min(j), i.max(j)));
            }
        }),
        "full" => (0..n).for_each(|i| {
            (i + 1..n).for_each(|j| {
                e.insert((i, j));
            })
        }),
        _ => {
            // A random spanning tree, plus some edges.
            for i in 1..n {
                let j = rng.below(i as u64) as usize;
                e.insert((j, i));
            }
            for _ in 0..rng.below(n as u64) {
                let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
                if a != b {
                    e.insert((a.min(b), a.max(b)));
                }
            }
        }
    }
    e.into_iter().collect()
}

/// What one seed did, for the checks and the failure message.
struct Run {
    sim: Sim,
    stable: Vec<(usize, String)>,
    /// QoS 1 events of the publishers (which never restart).
    qos1: Vec<(String, u64, String)>,
    /// Past incarnations' deliveries (checked for duplicates too).
    past: Vec<(usize, Vec<node::Delivered>)>,
    /// The newest retained message per topic: (stamp, origin, id).
    retained: BTreeMap<String, (u64, String, u64)>,
    summary: String,
}

fn run_seed(seed: u64) -> Run {
    let mut rng = Rng(seed);
    let n = 2 + rng.below(5) as usize;
    let kind = TOPOLOGIES[rng.below(5) as usize];
    let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut sim = Sim::new(&refs);
    let edges = edges(kind, n, &mut rng);
    for &(a, b) in &edges {
        let latency = rng.ms(1, 20);
        sim.wire(a, b, latency);
    }
    // Roles: publishers and stable subscribers never restart.
    let publishers: Vec<usize> = (0..1 + rng.below(2))
        .map(|_| rng.below(n as u64) as usize)
        .collect();
    let mut stable = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let r = rng.below(n as u64) as usize;
        let filter = match rng.below(3) {
            0 => "t/#".to_owned(),
            1 => "t/+".to_owned(),
            _ => format!("t/{}", rng.below(3)),
        };
        sim.nodes[r].subscribe(&filter);
        stable.push((r, filter));
    }
    let fixed: BTreeSet<usize> = publishers
        .iter()
        .copied()
        .chain(stable.iter().map(|s| s.0))
        .collect();
    let restartable: Vec<usize> = (0..n).filter(|r| !fixed.contains(r)).collect();
    let faults = rng.chance(80);
    let summary = format!(
        "{n} routers, {kind} {edges:?}, publishers {publishers:?}, stable {stable:?}, faults {faults}"
    );
    assert!(
        sim.settle(Duration::from_secs(5)),
        "setup never settled: {summary}"
    );
    let mut run = Run {
        sim,
        stable,
        qos1: Vec::new(),
        past: Vec::new(),
        retained: BTreeMap::new(),
        summary,
    };
    let sim = &mut run.sim;
    let mut id = 0u64;
    let mut stamp = 0u64;
    let mut heals: Vec<(Instant, usize)> = Vec::new();
    let end = sim.now + Duration::from_millis(1500);
    while sim.now < end {
        let step = rng.ms(5, 60);
        sim.run_for(step);
        let due: Vec<usize> = heals
            .iter()
            .filter(|(t, _)| *t <= sim.now)
            .map(|h| h.1)
            .collect();
        heals.retain(|(t, _)| *t > sim.now);
        for w in due {
            sim.heal(w);
        }
        id += 1;
        match rng.below(10) {
            0..=3 => {
                let p = publishers[rng.below(publishers.len() as u64) as usize];
                let topic = format!("t/{}", rng.below(3));
                sim.nodes[p].publish(&topic, id, 1, false, 0);
                run.qos1.push((names[p].clone(), id, topic));
            }
            4 | 5 => {
                let p = rng.below(n as u64) as usize;
                let topic = format!("t/{}", rng.below(3));
                sim.nodes[p].publish(&topic, id, 0, false, 0);
            }
            6 => {
                let p = publishers[rng.below(publishers.len() as u64) as usize];
                let topic = format!("r/{}", rng.below(3));
                stamp += 1;
                let qos = rng.below(2) as u8;
                sim.nodes[p].publish(&topic, id, qos, true, stamp);
                run.retained.insert(topic, (stamp, names[p].clone(), id));
            }
            7 => {
                let r = rng.below(n as u64) as usize;
                let filter = format!("c/{}", rng.below(3));
                if rng.chance(50) {
                    sim.nodes[r].subscribe(&filter);
                } else {
                    sim.nodes[r].unsubscribe(&filter);
                }
            }
            _ if faults => match rng.below(4) {
                0 | 1 => {
                    let w = rng.below(sim.wires.len() as u64) as usize;
                    sim.cut(w);
                    heals.push((sim.now + rng.ms(20, 600), w));
                }
                2 => {
                    let side: BTreeSet<usize> = (0..n).filter(|_| rng.chance(50)).collect();
                    let until = sim.now + rng.ms(50, 800);
                    for w in 0..sim.wires.len() {
                        if side.contains(&sim.wires[w].a) != side.contains(&sim.wires[w].b) {
                            sim.cut(w);
                            heals.push((until, w));
                        }
                    }
                }
                _ => {
                    if !restartable.is_empty() && rng.chance(50) {
                        let r = restartable[rng.below(restartable.len() as u64) as usize];
                        let gone = std::mem::take(&mut sim.nodes[r].delivered);
                        run.past.push((r, gone));
                        sim.restart(r);
                    } else {
                        let w = rng.below(sim.wires.len() as u64) as usize;
                        sim.silence(w);
                    }
                }
            },
            _ => {}
        }
    }
    for (_, w) in heals.drain(..) {
        sim.heal(w);
    }
    run
}

fn check(run: &mut Run, seed: u64) {
    let fail = |what: String| -> ! {
        panic!(
            "mesh sim seed {seed} failed: {what}\n  ({})\n  replay: WEFT_SIM_SEED={seed} cargo test --lib mesh::sim",
            run.summary
        )
    };
    if !run.sim.settle(Duration::from_secs(20)) {
        let mut pending: Vec<String> = run.sim.nodes.iter().map(|n| n.pending_detail()).collect();
        pending.push(format!(
            "wires {:?}",
            run.sim
                .wires
                .iter()
                .map(|w| (w.a, w.b, w.conn, w.cut, w.redial_at.is_some()))
                .collect::<Vec<_>>()
        ));
        fail(format!(
            "never quiet after the faults (pending {pending:?})"
        ));
    }
    // Holds of peers that came back without some of their routes (a
    // restarted router) end after the hold time: then the tables agree.
    run.sim.run_for(node::HOLD + Duration::from_millis(500));
    if !run.sim.settle(Duration::from_secs(5)) {
        fail("never quiet after the holds ended".into());
    }
    // Exactly once per router (and per incarnation).
    let mut all: Vec<(usize, u32, &node::Delivered)> = Vec::new();
    for (i, (r, gone)) in run.past.iter().enumerate() {
        all.extend(gone.iter().map(|d| (*r, i as u32, d)));
    }
    for (r, n) in run.sim.nodes.iter().enumerate() {
        all.extend(n.delivered.iter().map(|d| (r, u32::MAX, d)));
    }
    let mut seen = BTreeSet::new();
    for (r, inc, d) in &all {
        if !seen.insert((*r, *inc, d.origin.clone(), d.id)) {
            fail(format!(
                "r{r} got {}#{} ({}) twice",
                d.origin, d.id, d.topic
            ));
        }
    }
    // No QoS 1 event lost for a stable subscriber.
    for (r, filter) in &run.stable {
        for (origin, id, topic) in &run.qos1 {
            if filter_matches(filter, topic) && !seen.contains(&(*r, u32::MAX, origin.clone(), *id))
            {
                fail(format!(
                    "QoS 1 {origin}#{id} ({topic}) lost for r{r} ({filter})"
                ));
            }
        }
    }
    // Interest converged: every router knows every other's filters.
    let nodes = &run.sim.nodes;
    let pairs: usize = nodes.iter().map(|n| n.subs.len() + 1).sum();
    for (r, n) in nodes.iter().enumerate() {
        if n.router.interest_entries() != pairs {
            fail(format!(
                "r{r} has {} interest entries, the mesh {pairs}",
                n.router.interest_entries()
            ));
        }
        for o in nodes.iter().filter(|o| o.name != n.name) {
            for f in o.subs.keys().map(String::as_str).chain([RETAINED_KEY]) {
                if n.router.best_route(f, &o.name).is_none() {
                    fail(format!("r{r} has no route to {} for {f}", o.name));
                }
            }
        }
    }
    // Retained stores converged on the newest of each topic.
    // (By stamp and id: an exchanged copy names the router that sent it.)
    let stamps = |m: &BTreeMap<String, (u64, String, u64)>| -> BTreeMap<String, (u64, u64)> {
        m.iter().map(|(t, v)| (t.clone(), (v.0, v.2))).collect()
    };
    for (r, n) in nodes.iter().enumerate() {
        if stamps(&n.retained) != stamps(&run.retained) {
            fail(format!(
                "r{r}'s retained store {:?} is not {:?}",
                n.retained, run.retained
            ));
        }
    }
    // With the links holding: exactly once, to exactly the routers whose
    // subscriptions match.
    let first_calm = 1_000_000;
    let sim = &mut run.sim;
    let n = sim.nodes.len();
    for p in 0..n {
        for (k, qos) in [(0u64, 0u8), (1, 1)] {
            let id = first_calm + (p as u64) * 10 + k;
            sim.nodes[p].publish(&format!("t/{k}"), id, qos, false, 0);
        }
    }
    if !sim.settle(Duration::from_secs(5)) {
        fail("never quiet after the calm round".into());
    }
    for p in 0..n {
        for k in 0..2u64 {
            let id = first_calm + (p as u64) * 10 + k;
            let topic = format!("t/{k}");
            for r in 0..n {
                let want = usize::from(sim.nodes[r].subs.keys().any(|f| filter_matches(f, &topic)));
                let got = sim.nodes[r]
                    .delivered
                    .iter()
                    .filter(|d| d.id == id && d.origin == sim.nodes[p].name)
                    .count();
                if got != want {
                    fail(format!(
                        "calm r{p}#{id} ({topic}) reached r{r} {got} times, not {want}"
                    ));
                }
            }
        }
    }
}

fn one(seed: u64) {
    let outcome = std::panic::catch_unwind(|| {
        let mut run = run_seed(seed);
        check(&mut run, seed);
    });
    if let Err(e) = outcome {
        eprintln!(
            "mesh sim seed {seed} failed; replay: WEFT_SIM_SEED={seed} cargo test --lib mesh::sim"
        );
        std::panic::resume_unwind(e);
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("{name} is a number")))
}

/// Runs shard `k` of the seed range (see the module comment).
fn shard(k: u64) {
    if let Some(seed) = env_number("WEFT_SIM_SEED") {
        if k == 0 {
            one(seed);
        }
        return;
    }
    let seeds = env_number("WEFT_SIM_SEEDS").unwrap_or(SEEDS);
    let range = seeds * k / SHARDS..seeds * (k + 1) / SHARDS;
    let started = std::time::Instant::now();
    if std::env::var_os("WEFT_SIM_KEEP_GOING").is_some() {
        // Survey: every failing seed listed, then one failure.
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
        let failed: Vec<u64> = range
            .filter(|&s| match std::panic::catch_unwind(|| one(s)) {
                Ok(()) => false,
                Err(e) => {
                    let why = e
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| e.downcast_ref::<&str>().copied())
                        .unwrap_or("?");
                    eprintln!("seed {s}: {}", why.lines().next().unwrap_or(""));
                    true
                }
            })
            .collect();
        assert!(failed.is_empty(), "failing seeds: {failed:?}");
        return;
    }
    let regressions = REGRESSIONS.iter().copied().filter(|s| *s >= seeds);
    let regressions = regressions.filter(|s| s % SHARDS == k);
    for seed in range.clone().chain(regressions) {
        one(seed);
    }
    eprintln!(
        "mesh sim: seeds {range:?} and regressions in {:?}",
        started.elapsed()
    );
}

macro_rules! shards {
    ($($name:ident = $k:literal),*) => {
        $(
            #[test]
            fn $name() {
                shard($k);
            }
        )*
        // One test per shard.
        const _: () = assert!(SHARDS == [$($k),*].len() as u64);
    };
}

shards!(
    random_meshes_under_faults_0 = 0,
    random_meshes_under_faults_1 = 1,
    random_meshes_under_faults_2 = 2,
    random_meshes_under_faults_3 = 3,
    random_meshes_under_faults_4 = 4,
    random_meshes_under_faults_5 = 5,
    random_meshes_under_faults_6 = 6,
    random_meshes_under_faults_7 = 7
);

/// `tests/mesh_restart.rs` in virtual time: A–B–C, a subscriber on C,
/// QoS 1 publishes from A while B dies and comes back empty: none lost,
/// none twice.
#[test]
fn line_with_the_middle_router_restarting_loses_no_qos1_event() {
    let mut sim = Sim::new(&["A", "B", "C"]);
    let ms = Duration::from_millis;
    sim.wire(0, 1, ms(3));
    sim.wire(2, 1, ms(5));
    sim.nodes[2].subscribe("h/#");
    assert!(sim.settle(Duration::from_secs(5)));
    let mut id = 0;
    for round in 0..3 {
        for _ in 0..20 {
            id += 1;
            sim.nodes[0].publish("h/x", id, 1, false, 0);
            sim.run_for(ms(2));
        }
        sim.restart(1);
        for _ in 0..20 {
            id += 1;
            sim.nodes[0].publish("h/x", id, 1, false, 0);
            sim.run_for(ms(7));
        }
        assert!(sim.settle(Duration::from_secs(10)), "round {round}");
    }
    let got: Vec<u64> = sim.nodes[2].delivered.iter().map(|d| d.id).collect();
    let want: Vec<u64> = (1..=id).collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want, "every event once");
}
