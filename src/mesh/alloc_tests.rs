//! Tests only: the mesh's per-event path allocates nothing. A counting
//! global allocator (the lib's test binary's; the router's binary keeps
//! mimalloc) counts each thread's allocations, and the test runs the
//! bridge's path for a thousand events on one link: routed at the sender
//! (`Router::publish_planned`), encoded into the link's buffer, decoded at
//! the receiver and routed there (`Router::on_event_for_me`). The event
//! rebuilt for the shards (`Event::new`, one allocation) is the shards',
//! not measured here; `benches/link_codec.rs` reports both.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::link::{self, Frame, LinkLimits, LinkMeta, Pairs, Strs};
use super::route::{Action, Arrival, CopyRef, LinkId, LinkMsg, Router, RouterConfig};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread (as requested,
    /// before the allocator's rounding): what the thread's code holds.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn count() {
    // No destructor, so never gone while the thread allocates.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn live(delta: i64) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

/// Bytes this thread allocated and has not freed (for the shard's
/// per-connection memory test, `driver_mqtt::tests`).
pub(crate) fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}

// SAFETY: every call is forwarded to `System` as received.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        live(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        live(layout.size() as i64);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        live(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

const LINK: LinkId = LinkId(1);

/// One event from A over the link to B: true if B delivers it.
fn hop(a: &mut Router, b: &mut Router, id: u64, buf: &mut Vec<u8>, limits: &LinkLimits) -> bool {
    let mut out = Vec::new();
    let plan = a.publish_planned("t/x", id, &mut out);
    assert!(out.is_empty());
    let start = buf.len();
    for (_, dests, groups) in plan.copies() {
        let copy = CopyRef {
            origin: a.router_id(),
            id,
            hops: 0,
            dests,
            groups,
            topic: "t/x",
            retain: plan.retain(),
        };
        let frame = Frame::Event(link::Event {
            id: copy.id,
            seq: 0,
            origin: copy.origin,
            hops: copy.hops,
            dests: Strs::Strings(copy.dests),
            groups: Pairs::Strings(copy.groups),
            topic: copy.topic,
            qos: 0,
            retain: false,
            stamp: 0,
            sync: false,
            payload: &[7; 64],
            meta: LinkMeta::default(),
        });
        link::encode(&frame, buf).unwrap();
    }
    let Some((Frame::Event(e), _)) = link::decode(&buf[start..], limits).unwrap() else {
        panic!("an event frame");
    };
    let dest = e.dests.only().expect("one destination");
    assert!(e.groups.is_empty());
    let arrival = b.on_event_for_me(LINK, e.origin, e.id, dest, e.topic, e.retain);
    arrival == Arrival::Deliver { plain: true }
}

#[test]
fn an_event_crosses_a_link_without_an_allocation() {
    let mut a = Router::new("A", RouterConfig::default());
    let mut b = Router::new("B", RouterConfig::default());
    let mut out = Vec::new();
    a.link_up(LINK, "B", &mut out);
    b.link_up(LINK, "A", &mut out);
    b.local_subscribe("t/#", &mut out).unwrap();
    let interest = LinkMsg::InterestAdd {
        filter: "t/#".into(),
        origin: "B".into(),
        distance: 0,
    };
    a.on_message(LINK, interest, &mut Vec::<Action>::new());
    let limits = LinkLimits::default();
    // The link's buffer, as the writer reuses it; room for every frame.
    let mut buf = Vec::with_capacity(1 << 20);
    // Warm-up: the plan cached, the origin's duplicate window made.
    for id in 1..=10 {
        assert!(hop(&mut a, &mut b, id, &mut buf, &limits));
    }
    let before = allocations();
    for id in 11..=1010 {
        assert!(hop(&mut a, &mut b, id, &mut buf, &limits));
    }
    assert_eq!(allocations() - before, 0, "allocations for 1000 events");
    // Sent and delivered once each, counted as the general path counts.
    assert_eq!(a.link_counters(LINK).unwrap().events_out, 1010);
    assert_eq!(b.link_counters(LINK).unwrap().events_in, 1010);
    assert!(!hop(&mut a, &mut b, 1010, &mut buf, &limits), "a duplicate");
}
