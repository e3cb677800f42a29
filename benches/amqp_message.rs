//! AMQP message mapping benchmark: the per-delivery and per-publish work
//! of `weft::amqp::message`.
//!
//! Measures `write_message` of a 64 B event (topic `site/42/dev/17/temp`)
//! with no metadata at QoS 0 and 1 (header, properties with `to`, one
//! data section) and with metadata (reply-to, correlation-id,
//! content-type, two user properties), `message_len` of both, and
//! `to_event` of the two messages `write_message` wrote (the inbound side:
//! the section scan, the serde decode of properties and
//! application-properties, the event's one copy).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench amqp_message`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::amqp::message::{message_len, to_event, write_message};
use weft::event::{Event, EventMeta, Origin};
use weft::topic::TopicLimits;

const TOPIC: &str = "site/42/dev/17/temp";

fn bench(c: &mut Criterion) {
    let payload = vec![0x5au8; 64];
    let plain = Event::new(TOPIC, &payload, 1, false);
    let rich = Event::new(TOPIC, &payload, 1, false).with_meta(EventMeta {
        response_topic: Some("replies/client-7".into()),
        correlation_data: Some(b"request-0042".to_vec().into()),
        content_type: Some("application/json".into()),
        user_properties: vec![
            ("unit".into(), "celsius".into()),
            ("amqp-message-id".into(), "m-0042".into()),
        ],
        ..EventMeta::default()
    });
    let mut g = c.benchmark_group("amqp_message");
    g.throughput(Throughput::Elements(1));
    for (name, event) in [("plain", &plain), ("meta", &rich)] {
        for qos in [0u8, 1] {
            let mut out = Vec::with_capacity(64 * 1024);
            g.bench_function(format!("write_message/{name}_qos{qos}_64B"), |b| {
                b.iter(|| {
                    if out.len() > 60 * 1024 {
                        out.clear();
                    }
                    write_message(black_box(event), qos, 0, &mut out);
                })
            });
        }
        g.bench_function(format!("message_len/{name}_64B"), |b| {
            b.iter(|| black_box(message_len(black_box(event), 1, 0)))
        });
    }
    let limits = TopicLimits::default();
    for (name, event) in [("plain", &plain), ("meta", &rich)] {
        let mut bytes = Vec::new();
        write_message(event, 1, 0, &mut bytes);
        g.bench_function(format!("to_event/{name}_64B"), |b| {
            b.iter(|| {
                black_box(
                    to_event(black_box(&bytes), Some(TOPIC), 1, Origin::ROUTER, &limits).unwrap(),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
