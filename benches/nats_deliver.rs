//! The NATS delivery path per subscriber (issue #17): what a fan-out
//! costs after routing. Before: per delivery the event cloned into a
//! queue item, its MSG size computed, and the writer writing the MSG from
//! its pieces (`deliver::wire_len` + `deliver::write`). Now: the event's
//! frame built once (`deliver::frame`), each delivery `MsgFrame::put` of
//! its sid straight into the session's queue (`Mailbox::deliver_nats`,
//! frames of one session in one run), the writer taking the run whole
//! (`Mailbox::poll_batch`).
//!
//! Run: `cargo bench --bench nats_deliver`

use std::hint::black_box;
use std::task::{Context, Waker};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::config::Limits;
use weft::nats::{deliver, publish};
use weft::shard::mailbox::{Mailbox, Protocol};
use weft::topic::TopicLimits;

const SUBJECT: &str = "site.42.dev.17.temp";

fn bench(c: &mut Criterion) {
    let payload = [0x5a; 64];
    let event = publish::event(SUBJECT, &payload, &TopicLimits::default()).unwrap();
    let subject = deliver::subject(&event);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut g = c.benchmark_group("nats_deliver");
    for subs in [1usize, 4] {
        let sids: Vec<String> = (1..=subs).map(|i| i.to_string()).collect();
        g.throughput(Throughput::Elements(subs as u64));
        g.bench_function(format!("encode/write_per_delivery_{subs} (before)"), |b| {
            b.iter(|| {
                out.clear();
                for sid in &sids {
                    let len = deliver::wire_len(&event, subject.len(), sid);
                    out.reserve(len);
                    deliver::write(black_box(&event), &mut out, &subject, sid);
                }
                black_box(out.len())
            })
        });
        g.bench_function(format!("encode/frame_once_put_{subs}"), |b| {
            b.iter(|| {
                out.clear();
                let frame = deliver::frame(black_box(&event), &subject);
                for sid in &sids {
                    frame.put(&mut out, sid, event.payload());
                }
                black_box(out.len())
            })
        });
        // The mailbox path: each subscriber's session gets its frame, then
        // its writer takes the batch (one event per batch: the unloaded
        // case, where a run is one frame).
        let limits = Limits::default();
        let sessions: Vec<Mailbox> = (0..subs)
            .map(|i| Mailbox::new(i as u32, Protocol::Nats, format!("s{i}").into()))
            .collect();
        let mut cx = Context::from_waker(Waker::noop());
        let mut born = Vec::new();
        g.bench_function(format!("mailbox/deliver_nats_and_batch_{subs}"), |b| {
            b.iter(|| {
                let frame = deliver::frame(black_box(&event), &subject);
                for (session, sid) in sessions.iter().zip(&sids) {
                    session.deliver_nats(&event, &frame, sid, &limits);
                }
                for session in &sessions {
                    out.clear();
                    born.clear();
                    let _ = session.poll_batch(&mut cx, &mut out, &limits, &mut born);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
