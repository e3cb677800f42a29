//! One mesh hop's per-event work in the bridge, without sockets: the link
//! codec (`weft::mesh::link`) together with the routing core
//! (`weft::mesh::route`), as the bridge executor runs them per event.
//!
//! Setup: router "A" with one link to "B", which has announced interest in
//! `bench/#`; router "B" with the link to "A" and a local subscriber of
//! `bench/#`. Events on `bench/x`, 64-byte payloads, QoS 0.
//!
//! Measures (each in two forms: `borrowed`, the bridge's path, and
//! `owned`, the general path it takes for other events, as it ran for every
//! event before):
//! - `send`: an event entering the mesh at A: routed (cached plan), its
//!   copy encoded as an EVENT frame into the link's buffer (reused);
//! - `receive`: an EVENT frame at B: decoded, routed (duplicate window,
//!   local match), and the event rebuilt for the shards (`Event::new`,
//!   which copies the payload).
//!
//! Before the timings it prints the heap allocations per event of each
//! path, counted by a counting global allocator (this file's).
//!
//! Run: `cargo bench --bench link_codec`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::event::Event;
use weft::mesh::link::{self, Frame, LinkLimits, LinkMeta, Pairs, Strs};
use weft::mesh::route::{
    Action, Arrival, CopyRef, EventCopy, LinkId, LinkMsg, Router, RouterConfig,
};

/// Counts allocations (and reallocations) made through it.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TOPIC: &str = "bench/x";
const PAYLOAD: [u8; 64] = [7; 64];
const LINK: LinkId = LinkId(1);
/// The link buffer is emptied (as the writer does) every this many frames.
const BATCH: usize = 256;

fn sender() -> Router {
    let mut a = Router::new("A", RouterConfig::default());
    let mut out = Vec::new();
    a.link_up(LINK, "B", &mut out);
    let msg = LinkMsg::InterestAdd {
        filter: "bench/#".into(),
        origin: "B".into(),
        distance: 0,
    };
    a.on_message(LINK, msg, &mut out);
    a
}

fn receiver() -> Router {
    let mut b = Router::new("B", RouterConfig::default());
    let mut out = Vec::new();
    b.link_up(LINK, "A", &mut out);
    b.local_subscribe("bench/#", &mut out).unwrap();
    b
}

fn frame<'a>(copy: &CopyRef<'a>, dests: Strs<'a>, groups: Pairs<'a>) -> Frame<'a> {
    Frame::Event(link::Event {
        id: copy.id,
        seq: 0,
        origin: copy.origin,
        hops: copy.hops,
        dests,
        groups,
        topic: copy.topic,
        qos: 0,
        retain: false,
        stamp: 0,
        sync: false,
        payload: &PAYLOAD,
        meta: LinkMeta::default(),
    })
}

/// The bridge's send path: copies borrowed from the cached plan.
fn send_borrowed(a: &mut Router, id: u64, buf: &mut Vec<u8>) {
    let mut out = Vec::new();
    let plan = a.publish_planned(TOPIC, id, &mut out);
    for (_, dests, groups) in plan.copies() {
        let copy = CopyRef {
            origin: "A",
            id,
            hops: 0,
            dests,
            groups,
            topic: TOPIC,
            retain: plan.retain(),
        };
        let f = frame(&copy, Strs::Strings(dests), Pairs::Strings(groups));
        link::encode(&f, buf).unwrap();
    }
}

/// The general path: an owned copy per next hop, lists collected.
fn send_owned(a: &mut Router, id: u64, buf: &mut Vec<u8>) {
    let mut out = Vec::new();
    a.publish_as(TOPIC, id, false, &[], 0, &mut out);
    for action in &out {
        if let Action::Send {
            msg: LinkMsg::Event(c),
            ..
        } = action
        {
            let dests: Vec<&str> = c.dests.iter().map(String::as_str).collect();
            let groups: Vec<(&str, &str)> = c
                .groups
                .iter()
                .map(|(d, g)| (d.as_str(), g.as_str()))
                .collect();
            let f = frame(&c.borrowed(), dests.into(), groups.into());
            link::encode(&f, buf).unwrap();
        }
    }
}

/// The bridge's receive path: decoded in place, routed borrowed.
fn receive_borrowed(b: &mut Router, bytes: &[u8], limits: &LinkLimits) -> Option<Event> {
    let (Frame::Event(e), _) = link::decode(bytes, limits).unwrap()? else {
        return None;
    };
    let dest = e.dests.only()?;
    match b.on_event_for_me(LINK, e.origin, e.id, dest, e.topic, e.retain) {
        Arrival::Deliver { .. } => Some(Event::new(e.topic, e.payload, e.qos, e.retain)),
        _ => None,
    }
}

/// The general path: an owned copy, actions.
fn receive_owned(b: &mut Router, bytes: &[u8], limits: &LinkLimits) -> Option<Event> {
    let (Frame::Event(e), _) = link::decode(bytes, limits).unwrap()? else {
        return None;
    };
    let copy = EventCopy::from_frame(&e);
    let mut out = Vec::new();
    b.on_message(LINK, LinkMsg::Event(copy), &mut out);
    match out.pop()? {
        Action::Deliver { topic, .. } => Some(Event::new(&topic, e.payload, e.qos, e.retain)),
        _ => None,
    }
}

/// An encoded EVENT frame from A to B with event id `id`.
fn encoded(id: u64) -> Vec<u8> {
    let dests = ["B".to_owned()];
    let copy = CopyRef {
        origin: "A",
        id,
        hops: 0,
        dests: &dests,
        groups: &[],
        topic: TOPIC,
        retain: false,
    };
    let mut buf = Vec::new();
    link::encode(
        &frame(&copy, Strs::Strings(&dests), Pairs::default()),
        &mut buf,
    )
    .unwrap();
    buf
}

/// Heap allocations per event of `f`, over `n` events (after a warm-up).
fn allocs_per_event(n: u64, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..1000 {
        f(i);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 1000..1000 + n {
        f(i);
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn report_allocations() {
    const N: u64 = 100_000;
    let limits = LinkLimits::default();
    let mut a = sender();
    let mut buf = Vec::with_capacity(BATCH * 128);
    let send = |owned: bool, a: &mut Router, buf: &mut Vec<u8>, id: u64| {
        if id.is_multiple_of(BATCH as u64) {
            buf.clear();
        }
        if owned {
            send_owned(a, id, buf)
        } else {
            send_borrowed(a, id, buf)
        }
    };
    let borrowed = allocs_per_event(N, |id| send(false, &mut a, &mut buf, id));
    let owned = allocs_per_event(N, |id| send(true, &mut a, &mut buf, id + 10_000_000));
    println!(
        "link_codec allocations per event: send borrowed {borrowed:.2}, send owned {owned:.2}"
    );
    let frames: Vec<Vec<u8>> = (0..1000 + N).map(encoded).collect();
    let mut b = receiver();
    let borrowed = allocs_per_event(N, |id| {
        black_box(receive_borrowed(&mut b, &frames[id as usize], &limits));
    });
    let mut b = receiver();
    let owned = allocs_per_event(N, |id| {
        black_box(receive_owned(&mut b, &frames[id as usize], &limits));
    });
    println!(
        "link_codec allocations per event: receive borrowed {borrowed:.2}, receive owned {owned:.2} \
         (each includes the 1 of Event::new, the event for the shards)"
    );
}

fn bench(c: &mut Criterion) {
    report_allocations();
    let limits = LinkLimits::default();
    let mut g = c.benchmark_group("link_codec");
    g.throughput(Throughput::Elements(1));
    for owned in [false, true] {
        let name = if owned { "send_owned" } else { "send_borrowed" };
        let mut a = sender();
        let mut buf = Vec::with_capacity(BATCH * 128);
        let mut id = 0u64;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                id += 1;
                if id.is_multiple_of(BATCH as u64) {
                    buf.clear();
                }
                if owned {
                    send_owned(&mut a, id, &mut buf)
                } else {
                    send_borrowed(&mut a, id, &mut buf)
                }
            })
        });
    }
    // Ids advance, so that every frame is a first delivery (as on a live
    // link): the frame is re-encoded with the next id in place.
    for owned in [false, true] {
        let name = if owned {
            "receive_owned"
        } else {
            "receive_borrowed"
        };
        let mut b = receiver();
        let mut bytes = encoded(0);
        let mut id = 0u64;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                id += 1;
                // The id is the frame's first field, after prefix and type.
                bytes[5..13].copy_from_slice(&id.to_be_bytes());
                let e = if owned {
                    receive_owned(&mut b, &bytes, &limits)
                } else {
                    receive_borrowed(&mut b, &bytes, &limits)
                };
                black_box(e)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
