//! Ring handoff benchmark: what one event costs to cross from one shard to
//! another, the way weft moves it.
//!
//! Two glommio executors pinned to cores 0 and 1 (512 KiB io_memory each,
//! RLIMIT_MEMLOCK here is 8 MiB) connect their ends of the router's own
//! rings (`weft::shard::rings::full`, one bounded SPSC `shared_channel` per
//! ordered pair, made in the main thread) carrying weft's own message type,
//! `weft::shard::ctx::ShardMsg`. The producer sends `ShardMsg::Event {
//! event: event.clone(), .. }` (an `Event` holds a `bytes::Bytes` of a 64
//! B-payload PUBLISH; the clone is one atomic increment, as when weft fans
//! an event out) as a shard does: `try_send_to`, and `send_to(..).await`
//! only when the ring is full. The consumer drains with `recv().await`, as
//! the shard's ring task does, and drops each message (one atomic
//! decrement). One producer → one consumer; the consumer parks when the
//! ring is empty, as a weft shard does by default (no spinning).
//!
//! `iter_custom`: each sample starts the executors and connects the rings
//! (not timed), then times `iters` messages from the producer's first send
//! to the consumer's last receive. Reported time is per message.
//! Capacities: 4096 (weft's `runtime.ring_capacity` default) and 256.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench ring`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{GlommioError, LocalExecutorBuilder, Placement, ResourceType};
use weft::event::Event;
use weft::shard::ctx::ShardMsg;
use weft::shard::rings;

const IO_MEMORY: usize = 512 * 1024;

fn message(event: &Event) -> ShardMsg {
    ShardMsg::Event {
        event: event.clone(),
        plain: true,
        groups: Default::default(),
        handed: 0,
    }
}

fn run(messages: u64, capacity: usize) -> Duration {
    let mut ends = rings::full::<ShardMsg>(2, capacity);
    let (consumer_ends, producer_ends) = (ends.pop().unwrap(), ends.pop().unwrap());
    let start: Arc<Mutex<Option<Instant>>> = Arc::default();
    let event = Event::new("site/42/dev/17/temp", &[0x5a; 64], 0, false);
    let consumer = LocalExecutorBuilder::new(Placement::Fixed(1))
        .name("ring-consumer")
        .io_memory(IO_MEMORY)
        .spawn(move || async move {
            let (_senders, receivers) = consumer_ends.connect().await;
            let (_, receiver) = receivers
                .into_iter()
                .next()
                .expect("a ring from the producer");
            let mut n = 0u64;
            while n < messages {
                match receiver.recv().await {
                    Some(msg) => {
                        drop(std::hint::black_box(msg));
                        n += 1;
                    }
                    None => panic!("ring closed early"),
                }
            }
            Instant::now()
        })
        .expect("consumer executor");
    let producer = {
        let start = start.clone();
        LocalExecutorBuilder::new(Placement::Fixed(0))
            .name("ring-producer")
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                let (senders, _receivers) = producer_ends.connect().await;
                let to = 1 - senders.peer_id();
                *start.lock().unwrap() = Some(Instant::now());
                for _ in 0..messages {
                    // As the shard's `send`: wait for room only when full.
                    match senders.try_send_to(to, message(&event)) {
                        Ok(()) => {}
                        Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => {
                            if senders.send_to(to, msg).await.is_err() {
                                panic!("send failed");
                            }
                        }
                        Err(_) => panic!("send failed"),
                    }
                }
                // Buffered messages stay readable after the sender is
                // dropped: the consumer drains them all.
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
