//! NATS subject handling and MSG building: the per-message work of weft's
//! NATS path (issue #17).
//!
//! Ingress, per PUB: `codec::decode` of a 64 B PUB; the subject to event
//! step, the one-pass `nats::publish::event` beside what it replaced
//! (`subject::to_internal` + `topic::validate_name` + `Event::new`, an
//! intermediate string per PUB). Egress, per delivery: the event's
//! subject converted back (`deliver::subject`, what every event paid
//! before the per-topic memo) beside a memo hit (`SubjectMemo`, what a
//! cached match costs now), and `deliver::write` of a MSG for one and for
//! four subscribers of one event.
//!
//! Run: `cargo bench --bench nats_subject`

use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::event::Event;
use weft::nats::codec::{self, NatsLimits};
use weft::nats::{deliver, publish, subject};
use weft::topic::trie::SubjectMemo;
use weft::topic::{self, TopicLimits};

const SUBJECT: &str = "site.42.dev.17.temp";

fn bench(c: &mut Criterion) {
    let limits = TopicLimits::default();
    let payload = [0x5a; 64];
    let mut g = c.benchmark_group("nats_subject");
    g.throughput(Throughput::Elements(1));

    let mut pub_frame = format!("PUB {SUBJECT} 64\r\n").into_bytes();
    pub_frame.extend_from_slice(&payload);
    pub_frame.extend_from_slice(b"\r\n");
    let nats_limits = NatsLimits::default();
    g.bench_function("decode/pub_64B", |b| {
        b.iter(|| codec::decode(black_box(&pub_frame), &nats_limits).unwrap())
    });

    g.bench_function("ingress/publish_event_64B", |b| {
        b.iter(|| publish::event(black_box(SUBJECT), black_box(&payload), &limits).unwrap())
    });
    g.bench_function("ingress/to_internal_then_event_64B (before)", |b| {
        b.iter(|| {
            let internal =
                subject::to_internal(black_box(SUBJECT), false, limits.topic_bytes_max).unwrap();
            topic::validate_name(&internal, &limits).unwrap();
            Event::new(&internal, black_box(&payload), 0, false)
        })
    });

    let event = publish::event(SUBJECT, &payload, &limits).unwrap();
    g.bench_function("egress/subject_per_event (before)", |b| {
        b.iter(|| Rc::<[u8]>::from(deliver::subject(black_box(&event))))
    });
    let memo = SubjectMemo::default();
    g.bench_function("egress/subject_memo_hit", |b| {
        b.iter(|| {
            black_box(&memo)
                .get_or_init(|| Rc::from(deliver::subject(&event)))
                .clone()
        })
    });

    let subject: Rc<[u8]> = Rc::from(deliver::subject(&event));
    let mut out = Vec::with_capacity(64 * 1024);
    g.bench_function("egress/msg_64B", |b| {
        b.iter(|| {
            out.clear();
            deliver::write(black_box(&event), &mut out, &subject, "1");
            black_box(out.len())
        })
    });
    g.throughput(Throughput::Elements(4));
    let sids = ["1", "2", "3", "4"];
    g.bench_function("egress/msg_64B_4_subscribers", |b| {
        b.iter(|| {
            out.clear();
            for sid in sids {
                let len = deliver::wire_len(&event, subject.len(), sid);
                out.reserve(len);
                deliver::write(black_box(&event), &mut out, &subject, sid);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
