//! The ring between two executors on two threads: order and count over
//! millions of messages, a seeded sleep/wake stress that a lost wake-up
//! would hang (every wait is bounded, so it fails instead), closing, and
//! values left in the ring dropped once.

use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use super::{channel, TrySendError};

/// A wait this long means a lost wake-up (the test fails, never asserts
/// a speed).
const STALL: Duration = Duration::from_secs(30);

fn executor<R: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = R>>> + Send + 'static,
) -> glommio::ExecutorJoinHandle<R> {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(64 * 1024)
        .spawn(work)
        .expect("an executor")
}

/// xorshift64*: a seeded, reproducible schedule of bursts and pauses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

async fn recv_bounded<T: Send>(rx: &super::Receiver<T>) -> Option<T> {
    glommio::timer::timeout(STALL, async { Ok(rx.recv().await) })
        .await
        .expect("a lost wake-up: the consumer slept with messages in the ring")
}

async fn send_bounded<T: Send>(tx: &super::Sender<T>, value: T) {
    let sent = glommio::timer::timeout(STALL, async { Ok(tx.send(value).await.is_ok()) })
        .await
        .expect("a lost wake-up: the producer waited for room that was freed");
    assert!(sent, "consumer gone early");
}

#[test]
fn millions_of_messages_arrive_in_order_and_count() {
    const N: u64 = 2_000_000;
    let (tx, rx) = channel::<u64>(1024).expect("ring");
    let consumer = executor("spsc-consumer", move || {
        Box::pin(async move {
            let mut expected = 0u64;
            while let Some(v) = recv_bounded(&rx).await {
                assert_eq!(v, expected, "out of order");
                expected += 1;
            }
            expected
        })
    });
    let producer = executor("spsc-producer", move || {
        Box::pin(async move {
            for v in 0..N {
                if let Err(TrySendError::Full(v)) = tx.try_send(v) {
                    send_bounded(&tx, v).await;
                }
            }
            // Dropping the sender ends the consumer's loop.
        })
    });
    producer.join().expect("producer");
    assert_eq!(consumer.join().expect("consumer"), N);
}

/// Both sides pause at seeded random points (a blocking sleep: the
/// executor cannot run), so the consumer parks on an empty ring and the
/// producer waits on a full one over and over, at every interleaving
/// the schedule happens to hit.
#[test]
fn seeded_sleep_and_wake_stress_loses_no_wake_up() {
    for seed in [0x9e37_79b9_7f4a_7c15u64, 42, 0xdead_beef] {
        const N: u64 = 30_000;
        // Capacity 2: full and empty alternate constantly.
        let (tx, rx) = channel::<u64>(2).expect("ring");
        let consumer = executor("spsc-stress-consumer", move || {
            Box::pin(async move {
                let mut rng = Rng(seed ^ 0x5555);
                let mut expected = 0u64;
                while let Some(v) = recv_bounded(&rx).await {
                    assert_eq!(v, expected, "seed {seed:#x}: out of order");
                    expected += 1;
                    match rng.next() % 64 {
                        0 => std::thread::sleep(Duration::from_micros(rng.next() % 200)),
                        1..=3 => std::thread::yield_now(),
                        _ => {}
                    }
                }
                expected
            })
        });
        let producer = executor("spsc-stress-producer", move || {
            Box::pin(async move {
                let mut rng = Rng(seed);
                for v in 0..N {
                    match rng.next() % 64 {
                        0 => std::thread::sleep(Duration::from_micros(rng.next() % 200)),
                        1..=3 => std::thread::yield_now(),
                        _ => {}
                    }
                    // Half the time through `send` directly: its sleep path
                    // is taken whenever the ring is full.
                    if rng.next().is_multiple_of(2) {
                        send_bounded(&tx, v).await;
                    } else if let Err(TrySendError::Full(v)) = tx.try_send(v) {
                        send_bounded(&tx, v).await;
                    }
                }
            })
        });
        producer.join().expect("producer");
        assert_eq!(consumer.join().expect("consumer"), N, "seed {seed:#x}");
    }
}

#[test]
fn a_dropped_sender_ends_the_receiver_after_the_last_value() {
    let (tx, rx) = channel::<u32>(8).expect("ring");
    tx.try_send(1).expect("room");
    tx.try_send(2).expect("room");
    drop(tx);
    let got = executor("spsc-close", move || {
        Box::pin(async move {
            let mut got = Vec::new();
            while let Some(v) = recv_bounded(&rx).await {
                got.push(v);
            }
            got
        })
    })
    .join()
    .expect("consumer");
    assert_eq!(got, [1, 2]);
}

#[test]
fn a_dropped_receiver_fails_the_sender_and_wakes_a_waiting_one() {
    let (tx, rx) = channel::<u32>(1).expect("ring");
    let (waits, waiting_now) = std::sync::mpsc::channel();
    let waiting = executor("spsc-waiting", move || {
        Box::pin(async move {
            tx.try_send(1).expect("room");
            assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
            waits.send(()).expect("test thread");
            // Parks on the full ring until the receiver goes.
            glommio::timer::timeout(STALL, async { Ok(tx.send(3).await) })
                .await
                .expect("the receiver's drop wakes the waiting sender")
        })
    });
    // The receiver goes from another thread, as the sender waits (or
    // just before: either way the send fails instead of hanging).
    waiting_now.recv().expect("the sender runs");
    drop(rx);
    assert_eq!(waiting.join().expect("sender"), Err(3));
}

#[test]
fn values_left_in_the_ring_are_dropped_once() {
    let value = Arc::new(());
    let (tx, rx) = channel::<Arc<()>>(4).expect("ring");
    for _ in 0..3 {
        tx.try_send(value.clone()).expect("room");
    }
    let _ = executor("spsc-drop", move || {
        Box::pin(async move { drop(recv_bounded(&rx).await) })
    })
    .join();
    assert_eq!(Arc::strong_count(&value), 3);
    drop(tx);
    assert_eq!(Arc::strong_count(&value), 1);
}

#[test]
fn a_capacity_of_zero_is_one_slot() {
    let (tx, _rx) = channel::<u8>(0).expect("ring");
    assert_eq!(tx.capacity(), 1);
    tx.try_send(1).expect("one slot");
    assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
}

/// Every connection of a shard sends on the same ring: several tasks wait
/// for room on one sender at once, and each gets it (one eventfd read
/// would wake only one of them).
#[test]
fn several_tasks_waiting_for_room_on_one_sender_all_get_it() {
    const TASKS: u64 = 8;
    const EACH: u64 = 2_000;
    let (tx, rx) = channel::<u64>(2).expect("ring");
    let consumer = executor("spsc-many-consumer", move || {
        Box::pin(async move {
            let mut n = 0u64;
            while recv_bounded(&rx).await.is_some() {
                n += 1;
                if n.is_multiple_of(97) {
                    // The producers all find the ring full meanwhile.
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            n
        })
    });
    let producer = executor("spsc-many-producer", move || {
        Box::pin(async move {
            let tx = std::rc::Rc::new(tx);
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let tx = tx.clone();
                    glommio::spawn_local(async move {
                        for i in 0..EACH {
                            send_bounded(&tx, t * EACH + i).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
        })
    });
    producer.join().expect("producer");
    assert_eq!(consumer.join().expect("consumer"), TASKS * EACH);
}
