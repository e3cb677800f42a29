//! Ring handoff benchmark: what one event costs to cross from one shard to
//! another, weft's own rings (`weft::shard::rings`, an `spsc` ring per
//! ordered pair, eventfd doorbells rung only for a sleeper) against
//! glommio 0.9's bounded `shared_channel` (what weft used before).
//!
//! Two glommio executors pinned to cores 0 and 1 (512 KiB io_memory each)
//! carry weft's own message type, `weft::shard::ctx::ShardMsg::Event` (an
//! `Event` holds a `bytes::Bytes` of a 64 B-payload PUBLISH; the clone is
//! one atomic increment, as when weft fans an event out). No spinning:
//! the executors park in io_uring when idle, as a weft shard does by
//! default.
//!
//! - `stream/*`: one producer → one consumer as fast as possible, the way
//!   a shard sends (`try_send`, and `send(..).await` only when full); the
//!   consumer drains with `recv().await`. Time from the first send to the
//!   last receive, per message. Capacities 4096 (`runtime.ring_capacity`'s
//!   default) and 256.
//! - `ping_pong/*`: one message out, one back, then the next: the round
//!   trip when each side is asleep when its message comes (the wake-up
//!   path of a mesh hop at low rates). Per round trip.
//!
//! `iter_custom`: each sample starts the executors (not timed).
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench ring`

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use weft::event::Event;
use weft::shard::ctx::ShardMsg;
use weft::shard::spsc;

const IO_MEMORY: usize = 512 * 1024;

fn message(event: &Event) -> ShardMsg {
    ShardMsg::Event {
        event: event.clone(),
        plain: true,
        groups: Default::default(),
        handed: 0,
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Ours,
    Glommio,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One direction of a ring, either kind, unconnected (`Send`).
enum Tx {
    Ours(spsc::Sender<ShardMsg>),
    Glommio(shared_channel::SharedSender<ShardMsg>),
}
enum Rx {
    Ours(spsc::Receiver<ShardMsg>),
    Glommio(shared_channel::SharedReceiver<ShardMsg>),
}

/// Connected ends, on their executor.
enum CTx {
    Ours(spsc::Sender<ShardMsg>),
    Glommio(shared_channel::ConnectedSender<ShardMsg>),
}
enum CRx {
    Ours(spsc::Receiver<ShardMsg>),
    Glommio(shared_channel::ConnectedReceiver<ShardMsg>),
}

fn ring(kind: Kind, capacity: usize) -> (Tx, Rx) {
    match kind {
        Kind::Ours => {
            let (s, r) = spsc::channel(capacity).expect("ring");
            (Tx::Ours(s), Rx::Ours(r))
        }
        Kind::Glommio => {
            let (s, r) = shared_channel::new_bounded(capacity);
            (Tx::Glommio(s), Rx::Glommio(r))
        }
    }
}

impl Tx {
    async fn connect(self) -> CTx {
        match self {
            Tx::Ours(s) => CTx::Ours(s),
            Tx::Glommio(s) => CTx::Glommio(s.connect().await),
        }
    }
}
impl Rx {
    async fn connect(self) -> CRx {
        match self {
            Rx::Ours(r) => CRx::Ours(r),
            Rx::Glommio(r) => CRx::Glommio(r.connect().await),
        }
    }
}
impl CTx {
    /// As a shard sends: wait for room only when full.
    fn send<'a>(&'a self, msg: ShardMsg) -> Boxed<'a, ()> {
        match self {
            CTx::Ours(s) => match s.try_send(msg) {
                Ok(()) => Box::pin(async {}),
                Err(spsc::TrySendError::Full(msg)) => Box::pin(async move {
                    s.send(msg).await.ok().expect("consumer gone");
                }),
                Err(_) => panic!("consumer gone"),
            },
            CTx::Glommio(s) => match s.try_send(msg) {
                Ok(()) => Box::pin(async {}),
                Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) => {
                    Box::pin(async move {
                        if s.send(msg).await.is_err() {
                            panic!("consumer gone")
                        }
                    })
                }
                Err(_) => panic!("consumer gone"),
            },
        }
    }
}
impl CRx {
    async fn recv(&self) -> Option<ShardMsg> {
        match self {
            CRx::Ours(r) => r.recv().await,
            CRx::Glommio(r) => r.recv().await,
        }
    }
}

fn executor<T: Send + 'static>(
    core: usize,
    name: &str,
    work: impl FnOnce() -> Boxed<'static, T> + Send + 'static,
) -> glommio::ExecutorJoinHandle<T> {
    LocalExecutorBuilder::new(Placement::Fixed(core))
        .name(name)
        .io_memory(IO_MEMORY)
        .spawn(work)
        .expect("executor")
}

fn stream(kind: Kind, messages: u64, capacity: usize) -> Duration {
    let (tx, rx) = ring(kind, capacity);
    let start: Arc<Mutex<Option<Instant>>> = Arc::default();
    let event = Event::new("site/42/dev/17/temp", &[0x5a; 64], 0, false);
    let consumer = executor(1, "ring-consumer", move || {
        Box::pin(async move {
            let rx = rx.connect().await;
            for _ in 0..messages {
                drop(std::hint::black_box(
                    rx.recv().await.expect("ring closed early"),
                ));
            }
            Instant::now()
        })
    });
    let producer = {
        let start = start.clone();
        executor(0, "ring-producer", move || {
            Box::pin(async move {
                let tx = tx.connect().await;
                *start.lock().unwrap() = Some(Instant::now());
                for _ in 0..messages {
                    tx.send(message(&event)).await;
                }
                // What is buffered stays readable after the sender goes.
            })
        })
    };
    let end = consumer.join().expect("consumer");
    producer.join().expect("producer");
    let begun = start.lock().unwrap().expect("producer started");
    end - begun
}

fn ping_pong(kind: Kind, rounds: u64) -> Duration {
    let (out_tx, out_rx) = ring(kind, 64);
    let (back_tx, back_rx) = ring(kind, 64);
    let event = Event::new("site/42/dev/17/temp", &[0x5a; 64], 0, false);
    let echo = executor(1, "ring-echo", move || {
        Box::pin(async move {
            let (rx, tx) = (out_rx.connect().await, back_tx.connect().await);
            for _ in 0..rounds {
                let msg = rx.recv().await.expect("ping");
                tx.send(msg).await;
            }
        })
    });
    let pinger = executor(0, "ring-ping", move || {
        Box::pin(async move {
            let (tx, rx) = (out_tx.connect().await, back_rx.connect().await);
            let begun = Instant::now();
            for _ in 0..rounds {
                tx.send(message(&event)).await;
                drop(rx.recv().await.expect("pong"));
            }
            begun.elapsed()
        })
    });
    let took = pinger.join().expect("pinger");
    echo.join().expect("echo");
    took
}

fn bench(c: &mut Criterion) {
    let kinds = [(Kind::Ours, "ours"), (Kind::Glommio, "glommio")];
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(6));
    for capacity in [4096usize, 256] {
        for (kind, name) in kinds {
            g.bench_function(format!("stream/{name}/capacity_{capacity}"), |b| {
                b.iter_custom(|iters| stream(kind, iters.max(1), capacity))
            });
        }
    }
    for (kind, name) in kinds {
        g.bench_function(format!("ping_pong/{name}"), |b| {
            b.iter_custom(|iters| ping_pong(kind, iters.max(1)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
