//! MQTT codec benchmark: the per-message work on weft's hot path.
//!
//! Measures `weft::mqtt::codec::decode` of a QoS 0 PUBLISH with a 64 B and
//! a 1 KiB payload (topic `site/42/dev/17/temp`), of a QoS 1 PUBLISH, and of
//! a SUBSCRIBE with 1 and 64 filters; `put_publish` encoding (QoS 0, 64 B);
//! and the ingress/egress pair `weft::event::Event::new` (the one payload
//! copy) + `mqtt::deliver::write` at QoS 0 (a fixed header and a copy of the shared buffer) and QoS 1
//! (fresh header and packet id).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench mqtt_codec`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::event::Event;
use weft::mqtt::codec::{self, DecodeLimits, Packet};

const TOPIC: &str = "site/42/dev/17/temp";

fn publish(qos: u8, payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_publish(
        &mut out,
        false,
        qos,
        false,
        TOPIC.as_bytes(),
        1,
        &vec![0x5a; payload],
    );
    out
}

fn subscribe(filters: usize) -> Vec<u8> {
    let names: Vec<String> = (0..filters)
        .map(|i| format!("site/{i}/dev/+/temp"))
        .collect();
    let mut out = Vec::new();
    codec::encode(
        &Packet::Subscribe {
            packet_id: 9,
            filters: names.iter().map(|n| (n.as_str(), 1)).collect(),
        },
        &mut out,
    );
    out
}

fn bench(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let mut g = c.benchmark_group("mqtt_codec");
    g.throughput(Throughput::Elements(1));
    for (name, bytes) in [
        ("decode/publish_qos0_64B", publish(0, 64)),
        ("decode/publish_qos0_1KiB", publish(0, 1024)),
        ("decode/publish_qos1_64B", publish(1, 64)),
        ("decode/subscribe_1_filter", subscribe(1)),
        ("decode/subscribe_64_filters", subscribe(64)),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let (p, used) = codec::decode(black_box(&bytes), &limits).unwrap().unwrap();
                black_box((p, used))
            })
        });
    }
    let payload = vec![0x5au8; 64];
    let mut out = Vec::with_capacity(64 * 1024);
    g.bench_function("encode/put_publish_qos0_64B", |b| {
        b.iter(|| {
            if out.len() > 60 * 1024 {
                out.clear();
            }
            codec::put_publish(
                &mut out,
                false,
                0,
                false,
                black_box(TOPIC.as_bytes()),
                0,
                black_box(&payload),
            );
        })
    });
    for size in [64usize, 1024] {
        let payload = vec![0x5au8; size];
        g.bench_function(format!("event/new_{size}B"), |b| {
            b.iter(|| black_box(Event::new(black_box(TOPIC), black_box(&payload), 0, false)))
        });
    }
    let event = Event::new(TOPIC, &payload, 1, false);
    for qos in [0u8, 1] {
        let mut out = Vec::with_capacity(64 * 1024);
        g.bench_function(format!("event/write_to_qos{qos}_64B"), |b| {
            b.iter(|| {
                if out.len() > 60 * 1024 {
                    out.clear();
                }
                weft::mqtt::deliver::write(black_box(&event), &mut out, qos, 77, false, false);
            })
        });
    }
    g.bench_function("event/new_plus_write_to_qos0_64B", |b| {
        b.iter(|| {
            if out.len() > 60 * 1024 {
                out.clear();
            }
            let e = Event::new(black_box(TOPIC), black_box(&payload), 0, false);
            weft::mqtt::deliver::write(&e, &mut out, 0, 0, false, false);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
