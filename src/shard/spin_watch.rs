//! Keeps a shard whose shared-memory sessions spin (`shm.spin_us`) from
//! parking with work queued: a heartbeat task on the shard, and a watchdog
//! thread that wakes it from outside when it stopped beating.
//!
//! Why: a lost wake-up in glommio 0.9's executor loop, found by
//! `perf/shm-spin-stress.sh` (HOG=1 hangs within minutes without this).
//! The loop arms its preemption timer (`SPIN_TURN` while the
//! spin queue is runnable), then runs the task queues. When the thread is
//! descheduled for longer than the timer in between, the timer has fired
//! before the run starts: no queue runs, the turn reports that nothing
//! ran, the executor reaps the timer (it wakes no task) and parks in
//! `io_uring_enter` with every session still queued. Only new I/O wakes it
//! then, and clients that wait for the router make none: the router slept
//! with a full ring while its client waited for room.
//!
//! A timer of ours does not bound that park: spinning, the shard turns
//! every `SPIN_TURN`, so the heartbeat's timer fires at nearly every turn,
//! and at the unlucky turn the heartbeat task is itself queued, not yet
//! re-armed: the executor parks with no timer at all. A wake from another
//! thread does bound it: glommio re-arms its own notifier (an eventfd read
//! in the latency ring) before every run, and a foreign wake writes that
//! eventfd when the executor sleeps. So the watchdog looks every
//! [`WATCH_EVERY`]; if the heartbeat did not run since its last look, it
//! wakes the heartbeat's task, and the executor's next turn runs every
//! queued task (`weft_shm_spin_rescues_total` counts those wakes; some are
//! merely a shard descheduled for a while, which the wake does not harm).
//!
//! Owns: the heartbeat task and the watchdog thread of one shard, both
//! started with its first spinning session; the heartbeat stops with the
//! last one, the thread with the shard. Costs, only while a session spins
//! (the shard spins then anyway): a timer per `SPIN_TURN`, a thread waking
//! every `WATCH_EVERY`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use super::ctx::ShardCtx;
use super::stats::Counters;

/// How often, at least, a shard whose shared-memory sessions spin
/// (`shm.spin_us > 0`) reaps io_uring completions and fires its timers:
/// the latency bound of the task queue those sessions run in, which
/// glommio turns into its preemption timer while the queue is runnable.
/// A spinning session is always runnable; without the bound the shard's
/// sockets and timers would wait for glommio's default 100 ms timer.
pub const SPIN_TURN: Duration = Duration::from_micros(100);

/// How often the watchdog looks at the heartbeat.
pub const WATCH_EVERY: Duration = Duration::from_millis(1);

/// What the shard and its watchdog thread share.
#[derive(Default)]
struct Shared {
    /// Times the heartbeat ran.
    beats: AtomicU64,
    /// A session spins (the watchdog looks only then).
    spinning: AtomicBool,
    /// The heartbeat task's waker while it runs.
    heart: Mutex<Option<Waker>>,
    /// Wakes the watchdog gave (moved into the shard's counter by the
    /// heartbeat).
    rescues: AtomicU64,
}

/// One shard's spinning sessions, heartbeat and watchdog.
pub struct SpinWatch {
    shard: usize,
    shared: Arc<Shared>,
    live: Cell<usize>,
    beating: Cell<bool>,
    watching: Cell<bool>,
    /// For `weft_shm_spin_rescues_total`.
    ctx: Rc<ShardCtx>,
}

impl SpinWatch {
    pub fn new(ctx: Rc<ShardCtx>) -> Rc<SpinWatch> {
        Rc::new(SpinWatch {
            shard: ctx.id,
            shared: Arc::default(),
            live: Cell::new(0),
            beating: Cell::new(false),
            watching: Cell::new(false),
            ctx,
        })
    }

    /// A spinning session starts (call on the shard, outside the spin
    /// queue): the heartbeat runs until the last guard is dropped (with its
    /// session's future, however that ends).
    pub fn start(self: &Rc<Self>) -> SpinGuard {
        self.live.set(self.live.get() + 1);
        self.shared.spinning.store(true, Ordering::Relaxed);
        if !self.watching.replace(true) {
            self.spawn_watchdog();
        }
        if !self.beating.replace(true) {
            let me = self.clone();
            glommio::spawn_local(async move { me.heartbeat().await }).detach();
        }
        SpinGuard(self.clone())
    }

    async fn heartbeat(self: Rc<Self>) {
        /// Takes the waker back on the shard's thread, however the task
        /// ends (a glommio waker is best dropped where its task lives).
        struct Clear<'a>(&'a Shared);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0
                    .heart
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
            }
        }
        let shared = &self.shared;
        std::future::poll_fn(|cx| {
            *shared.heart.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            std::task::Poll::Ready(())
        })
        .await;
        let _clear = Clear(shared);
        while self.live.get() > 0 {
            shared.beats.fetch_add(1, Ordering::Relaxed);
            let rescues = shared.rescues.swap(0, Ordering::Relaxed);
            if rescues > 0 {
                Counters::add(&self.ctx.counters.shm_spin_rescues, rescues);
            }
            glommio::timer::sleep(SPIN_TURN).await;
        }
        self.beating.set(false);
    }

    /// The watchdog: ends once the shard dropped its side.
    fn spawn_watchdog(&self) {
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("weft-spinwatch-{}", self.shard))
            .spawn(move || {
                let mut last = None;
                while Arc::strong_count(&shared) > 1 {
                    std::thread::sleep(WATCH_EVERY);
                    if !shared.spinning.load(Ordering::Relaxed) {
                        last = None;
                        continue;
                    }
                    let beats = shared.beats.load(Ordering::Relaxed);
                    if last == Some(beats) {
                        let heart = shared.heart.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(waker) = heart.as_ref() {
                            waker.wake_by_ref();
                            shared.rescues.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    last = Some(beats);
                }
            });
        if let Err(e) = spawned {
            // Spinning still works; only the bound on a lost wake-up is
            // gone (logged once per shard).
            tracing::warn!(shard = self.shard, error = %e, "shm: cannot start the spin watchdog thread");
        }
    }
}

/// One spinning session, counted while it lives.
pub struct SpinGuard(Rc<SpinWatch>);

impl Drop for SpinGuard {
    fn drop(&mut self) {
        let watch = &self.0;
        watch.live.set(watch.live.get() - 1);
        if watch.live.get() == 0 {
            watch.shared.spinning.store(false, Ordering::Relaxed);
        }
    }
}
