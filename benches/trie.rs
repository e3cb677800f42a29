//! Topic trie benchmark: `weft::topic::trie::Trie` holding 1,000,000
//! subscriptions of mixed shapes, the way an ingress shard sees them.
//!
//! Filters (session key = subscription index), over 1000 sites × 1000
//! devices:
//! - 94.0% literal `site/{a}/dev/{b}/temp`;
//! - 3.0% `site/{a}/dev/{b}/+`, 2.0% `site/{a}/+/{b}/temp`;
//! - 0.4% `site/{a}/dev/#` (≈4 per site), 0.4% `site/+/dev/{b}/temp`
//!   (≈4 per device), 0.2% `site/{a}/dev/{b}/#`.
//!
//! A hit topic `site/{a}/dev/{b}/temp` matches ≈9 sessions; the miss topic
//! `site/{a'}/dev/{b'}/temp` (a', b' outside the ranges) walks the same
//! levels, `+` branches included, and matches nothing.
//!
//! Measures: `match_uncached` (hit, miss, root miss), `matches` through the
//! cache (hot set of 1024 topics, inside the default 4096-entry cache), and
//! the cost of `add_local` + `remove_local` of a fresh literal filter (new
//! nodes created then pruned) and of a second session on an existing filter.
//! Also prints the build time and the bytes per subscription: exact heap
//! bytes asked of the allocator (a counting allocator wraps the system's
//! in this bench), and the VmRSS delta (process-wide, so only indicative);
//! and the same for perf/memory.sh's shape (200,000
//! `site/{i/1000}/dev/{i%1000}/temp` over 16 sessions), trie and the
//! sessions' filter sets (`topic::filter_set`) apart. The `insert` and
//! `remove` benches time a whole path created then pruned (edge split and
//! merge in the path-compressed trie) on the 1M trie.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench trie`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weft::topic::filter_set::FilterSet;
use weft::topic::trie::Trie;

/// Counts the live heap bytes asked for (not the allocator's rounding).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// perf/memory.sh's subscriptions, counted: heap bytes per subscription
/// in the trie and in the sessions' filter sets.
fn memory_shape() {
    const N: u64 = 200_000;
    const SESSIONS: u64 = 16;
    let h0 = live();
    let mut trie = Trie::new(4096);
    let mut sets: Vec<FilterSet> = (0..SESSIONS).map(|_| FilterSet::new()).collect();
    let per = N.div_ceil(SESSIONS);
    let mut h_trie = 0;
    for i in 0..N {
        let f = format!("site/{}/dev/{}/temp", i / 1000, i % 1000);
        let s = (i / per) as u32;
        let before = live();
        trie.add_local(&f, s, 0);
        h_trie += live() - before;
        sets[s as usize].insert(&f, 0);
    }
    let total = live() - h0;
    eprintln!(
        "memory.sh shape: {N} filters over {SESSIONS} sessions: {:.0} B/subscription on the heap \
         (trie {:.0}, filter sets {:.0}); {} trie nodes",
        total as f64 / N as f64,
        h_trie as f64 / N as f64,
        (total - h_trie) as f64 / N as f64,
        trie.counts().nodes
    );
}

const SITES: u64 = 1000;
const DEVICES: u64 = 1000;
const SUBSCRIPTIONS: u64 = 1_000_000;

/// splitmix64: deterministic, well spread.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn filter(i: u64) -> String {
    let r = mix(i);
    let a = r % SITES;
    let b = (r >> 20) % DEVICES;
    match (r >> 40) % 1000 {
        0..=939 => format!("site/{a}/dev/{b}/temp"),
        940..=969 => format!("site/{a}/dev/{b}/+"),
        970..=989 => format!("site/{a}/+/{b}/temp"),
        990..=993 => format!("site/{a}/dev/#"),
        994..=997 => format!("site/+/dev/{b}/temp"),
        _ => format!("site/{a}/dev/{b}/#"),
    }
}

fn vm_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn build() -> Trie {
    memory_shape();
    let rss0 = vm_rss_bytes();
    let h0 = live();
    let t0 = Instant::now();
    let mut trie = Trie::new(4096);
    for i in 0..SUBSCRIPTIONS {
        trie.add_local(&filter(i), i as u32, (i % 2) as u8);
    }
    let took = t0.elapsed();
    let rss1 = vm_rss_bytes();
    let heap = live() - h0;
    let c = trie.counts();
    eprintln!(
        "trie: {} subscriptions, {} nodes built in {:.2} s ({:.0} ns/insert); heap {:.0} B/subscription; RSS +{} MiB = {:.0} B/subscription",
        c.local_subscriptions,
        c.nodes,
        took.as_secs_f64(),
        took.as_nanos() as f64 / SUBSCRIPTIONS as f64,
        heap as f64 / SUBSCRIPTIONS as f64,
        (rss1 - rss0) >> 20,
        (rss1 - rss0) as f64 / SUBSCRIPTIONS as f64
    );
    trie
}

fn topics(n: u64, seed: u64, f: impl Fn(u64, u64) -> String) -> Vec<String> {
    (0..n)
        .map(|i| {
            let r = mix(seed ^ i);
            f(r % SITES, (r >> 20) % DEVICES)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut trie = build();
    let hits = topics(4096, 1, |a, b| format!("site/{a}/dev/{b}/temp"));
    let misses = topics(4096, 2, |a, b| {
        format!("site/{}/dev/{}/temp", a + SITES, b + DEVICES)
    });
    let root_misses = topics(4096, 3, |a, b| format!("other/{a}/dev/{b}/temp"));
    let hot = topics(1024, 4, |a, b| format!("site/{a}/dev/{b}/temp"));
    let matched: usize = hits
        .iter()
        .map(|t| trie.match_uncached(t).local.len())
        .sum();
    eprintln!(
        "trie: a hit topic matches {:.1} sessions on average",
        matched as f64 / hits.len() as f64
    );
    assert!(misses
        .iter()
        .all(|t| trie.match_uncached(t).local.is_empty()));

    let mut g = c.benchmark_group("trie_1M");
    g.throughput(Throughput::Elements(1));
    for (name, set) in [
        ("match_uncached/hit", &hits),
        ("match_uncached/miss", &misses),
        ("match_uncached/root_miss", &root_misses),
    ] {
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(trie.match_uncached(black_box(&set[i])))
            })
        });
    }
    for t in &hot {
        trie.matches(t);
    }
    let mut i = 0;
    g.bench_function("matches_cached/hit", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(trie.matches(black_box(&hot[i])))
        })
    });
    let fresh: Vec<String> = (0..4096)
        .map(|i| format!("site/{i}/newdev/{i}/temp"))
        .collect();
    let mut i = 0;
    g.bench_function("add_remove/new_filter", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(trie.add_local(black_box(&fresh[i]), 7_000_000, 0));
            black_box(trie.remove_local(&fresh[i], 7_000_000))
        })
    });
    let mut i = 0;
    g.bench_function("add_remove/existing_filter", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let f = &hits[i];
            black_box(trie.add_local(black_box(f), 7_000_000, 1));
            black_box(trie.remove_local(f, 7_000_000))
        })
    });
    // A whole new path (a new device under an existing site: the edge to
    // the site's devices gains a leaf edge; a new site: a split of no
    // edge, one leaf edge at the root's site node), then pruned again.
    let mut i = 0;
    g.bench_function("insert/new_device", |b| {
        b.iter_batched(
            || {
                i = (i + 1) & 4095;
                format!("site/{}/dev/{}/temp", i % SITES, DEVICES + i)
            },
            |f| {
                black_box(trie.add_local(&f, 7_000_001, 0));
                f
            },
            BatchSize::SmallInput,
        )
    });
    for i in 0..4096u64 {
        trie.remove_local(
            &format!("site/{}/dev/{}/temp", i % SITES, DEVICES + i),
            7_000_001,
        );
    }
    let added: Vec<String> = (0..4096u64)
        .map(|i| format!("site/{}/dev/{}/hum", i % SITES, i % DEVICES))
        .collect();
    let mut i = 0;
    g.bench_function("add_remove/split_and_merge", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            // `site/a/dev/b/hum` next to `.../temp`: the leaf edge `b/temp`
            // split at `b`; its removal merges it again.
            black_box(trie.add_local(&added[i], 7_000_002, 0));
            black_box(trie.remove_local(&added[i], 7_000_002))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
