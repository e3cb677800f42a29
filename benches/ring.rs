//! Ring handoff benchmark: what one event costs to cross from one shard to
//! another, the way weft moves it.
//!
//! Two glommio executors pinned to cores 0 and 1 (512 KiB io_memory each,
//! RLIMIT_MEMLOCK here is 8 MiB) join a `channel_mesh::MeshBuilder::full`
//! mesh of weft's own message type, `weft::shard::ctx::ShardMsg`, and the
//! producer sends `ShardMsg::Event { event: event.clone(), .. }` (an `Event` holds a
//! `bytes::Bytes` of a 64 B-payload PUBLISH; the clone is one atomic
//! increment, as when weft fans an event out) with `send_to(..).await`; the
//! consumer drains with `recv_from(..).await` and drops each message (one
//! atomic decrement). One producer → one consumer; the consumer parks when
//! the ring is empty, as a weft shard does by default (no spinning).
//!
//! `iter_custom`: each sample starts the executors, joins the mesh (not
//! timed), then times `iters` messages from the producer's first send to the
//! consumer's last receive. Reported time is per message. Capacities: 4096
//! (weft's `runtime.ring_capacity` default) and 256.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench ring`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use weft::event::Event;
use weft::shard::ctx::ShardMsg;

const IO_MEMORY: usize = 512 * 1024;

fn run(messages: u64, capacity: usize) -> Duration {
    let mesh = MeshBuilder::<ShardMsg, _>::full(2, capacity);
    let start: Arc<Mutex<Option<Instant>>> = Arc::default();
    let event = Event::new("site/42/dev/17/temp", &[0x5a; 64], 0, false);
    let consumer = {
        let mesh = mesh.clone();
        LocalExecutorBuilder::new(Placement::Fixed(1))
            .name("ring-consumer")
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                let (senders, receivers) = mesh.join().await.expect("join");
                let from = 1 - senders.peer_id();
                let mut n = 0u64;
                while n < messages {
                    match receivers.recv_from(from).await {
                        Ok(Some(msg)) => {
                            drop(std::hint::black_box(msg));
                            n += 1;
                        }
                        _ => panic!("ring closed early"),
                    }
                }
                Instant::now()
            })
            .expect("consumer executor")
    };
    let producer = {
        let start = start.clone();
        LocalExecutorBuilder::new(Placement::Fixed(0))
            .name("ring-producer")
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                let (senders, _receivers) = mesh.join().await.expect("join");
                let to = 1 - senders.peer_id();
                *start.lock().unwrap() = Some(Instant::now());
                for _ in 0..messages {
                    if senders
                        .send_to(
                            to,
                            ShardMsg::Event {
                                event: event.clone(),
                                plain: true,
                                groups: Default::default(),
                                handed: 0,
                            },
                        )
                        .await
                        .is_err()
                    {
                        panic!("send failed");
                    }
                }
                // Stay in the mesh until the consumer has everything.
                glommio::timer::sleep(Duration::from_millis(1)).await;
            })
            .expect("producer executor")
    };
    let end = consumer.join().expect("consumer");
    producer.join().expect("producer");
    let begun = start.lock().unwrap().expect("producer started");
    end - begun
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_1to1");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(8));
    for capacity in [4096usize, 256] {
        g.bench_function(format!("event_64B/capacity_{capacity}"), |b| {
            b.iter_custom(|iters| run(iters.max(1), capacity))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
