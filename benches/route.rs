//! The mesh's routing core (`weft::mesh::route::Router`) on the event path:
//! what the bridge executor spends per event, without sockets.
//!
//! Setup: a router "r0" with 4 links (to "r1".."r4"), each neighbour
//! advertising `FILTERS` filters of its own (`site/{i}/dev/+/temp`) and a
//! `#`-free catch-all per origin (`site/{i}/#` for i < 10), so that the
//! learned table holds ≈ 4 × FILTERS entries.
//!
//! Measures:
//! - `publish_cached`: an event entering the mesh at r0 on a hot topic (the
//!   forwarding plan is cached per topic): the actions for 1 or 2 next hops;
//! - `publish_uncached`: the same right after an interest change that
//!   matches the topic (its plan is forgotten), i.e. the scan of the
//!   learned table, plus the change itself;
//! - `publish_after_other_change`: the same after an interest change that
//!   matches other topics only (the plan stays cached), with 1,000 other
//!   hot topics cached: the change's cost, plus a cached publish;
//! - `receive_deliver`: an event copy from a link for r0 (destination r0,
//!   local interest matches): duplicate window + local match (cached) +
//!   the Deliver action.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench route`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::mesh::route::{Action, EventCopy, LinkId, LinkMsg, Router, RouterConfig};

const FILTERS: usize = 1000;

fn router() -> Router {
    let mut r = Router::new("r0", RouterConfig::default());
    let mut out = Vec::new();
    for l in 1..=4u32 {
        r.link_up(LinkId(l), &format!("r{l}"), &mut out);
    }
    for l in 1..=4u32 {
        for i in 0..FILTERS {
            let filter = if i < 10 {
                format!("site/{i}/#")
            } else {
                format!("site/{i}/dev/+/temp")
            };
            r.on_message(
                LinkId(l),
                LinkMsg::InterestAdd {
                    filter,
                    origin: format!("r{l}"),
                    distance: 0,
                },
                &mut out,
            );
        }
    }
    r.local_subscribe("site/+/dev/+/temp", &mut out).unwrap();
    r
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    let mut r = router();
    let mut out: Vec<Action> = Vec::with_capacity(16);
    let mut id = 1u64;
    g.bench_function("publish_cached", |b| {
        b.iter(|| {
            id += 1;
            r.publish_as(black_box("site/5/dev/7/temp"), id, false, &[], 0, &mut out);
            out.clear();
        })
    });
    g.bench_function("publish_uncached", |b| {
        b.iter(|| {
            id += 1;
            // A local subscribe/unsubscribe pair of a filter that matches
            // the topic: its cached plan is forgotten.
            r.local_subscribe("site/5/#", &mut out).unwrap();
            r.local_unsubscribe("site/5/#", &mut out);
            out.clear();
            r.publish_as(black_box("site/5/dev/7/temp"), id, false, &[], 0, &mut out);
            out.clear();
        })
    });
    for i in 0..1000 {
        id += 1;
        r.publish_as(&format!("site/{i}/dev/1/temp"), id, false, &[], 0, &mut out);
        out.clear();
    }
    g.bench_function("publish_after_other_change", |b| {
        b.iter(|| {
            id += 1;
            r.local_subscribe("bench/+", &mut out).unwrap();
            r.local_unsubscribe("bench/+", &mut out);
            out.clear();
            r.publish_as(black_box("site/5/dev/7/temp"), id, false, &[], 0, &mut out);
            out.clear();
        })
    });
    let mut seq = 1u64;
    g.bench_function("receive_deliver", |b| {
        b.iter(|| {
            seq += 1;
            let copy = EventCopy {
                origin: "r1".into(),
                id: seq,
                hops: 0,
                dests: vec!["r0".into()],
                groups: vec![],
                topic: "site/42/dev/7/temp".into(),
                retain: false,
            };
            r.on_message(LinkId(1), LinkMsg::Event(copy), &mut out);
            out.clear();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
