//! Keeps a shard whose shared-memory sessions spin (`shm.spin_us`) from
//! parking with work queued: a heartbeat task on the shard, and a watchdog
//! thread that wakes it from outside when it stopped beating.
//!
//! Why: a lost wake-up in glommio 0.9's executor loop, found by
//! `perf/shm-spin-stress.sh` (HOG=1 hangs within minutes without this).
//! The loop arms its preemption timer (`SPIN_TURN` while the spin queue is
//! runnable), then runs the task queues. When the thread is descheduled
//! for longer than the timer in between, the timer has fired before the
//! run starts: no queue runs, the turn reports that nothing ran, the
//! executor reaps the timer (it wakes no task) and parks in
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
//! Only *awake* spinning sessions count: one asleep on its doorbell
//! (`transport_shm`) lets the shard park as usual. With none awake the
//! heartbeat waits without a timer and the watchdog thread parks, so an
//! idle shard costs nothing; the first session to wake starts both again
//! (the heartbeat's waker is known from its start, so a rescue is possible
//! from that moment).
//!
//! Owns: the heartbeat task and the watchdog thread of one shard, both
//! started with its first spinning session and ended with the shard's
//! shared-memory service. Costs, only while a session is awake and spins
//! (the shard spins then anyway): a timer per `SPIN_TURN`, a thread waking
//! every `WATCH_EVERY`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
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
    /// A spinning session is awake (the watchdog looks only then).
    spinning: AtomicBool,
    /// The shard's shared-memory service ended: the watchdog returns.
    closed: AtomicBool,
    /// The heartbeat task's waker while it lives.
    heart: Mutex<Option<Waker>>,
    /// Wakes the watchdog gave (moved into the shard's counter by the
    /// heartbeat).
    rescues: AtomicU64,
}

/// One shard's spinning sessions, heartbeat and watchdog.
pub struct SpinWatch {
    ctx: Rc<ShardCtx>,
    shared: Arc<Shared>,
    /// Spinning sessions not asleep on their doorbells.
    awake: Cell<usize>,
    /// The heartbeat, waiting for a session to wake.
    idle: RefCell<Option<Waker>>,
    /// The watchdog thread (to unpark), once started.
    watchdog: RefCell<Option<std::thread::Thread>>,
    started: Cell<bool>,
}

impl SpinWatch {
    pub fn new(ctx: Rc<ShardCtx>) -> Rc<SpinWatch> {
        Rc::new(SpinWatch {
            ctx,
            shared: Arc::default(),
            awake: Cell::new(0),
            idle: RefCell::new(None),
            watchdog: RefCell::new(None),
            started: Cell::new(false),
        })
    }

    /// A spinning session starts, awake (call on the shard, outside the
    /// spin queue: the heartbeat is spawned into the caller's queue).
    pub fn session(self: &Rc<Self>) -> SpinSession {
        if !self.started.replace(true) {
            self.spawn_watchdog();
            // Runs at once up to its first wait: its waker is stored
            // before this returns.
            glommio::spawn_local(heartbeat(Rc::downgrade(self), self.shared.clone())).detach();
        }
        self.woke();
        SpinSession {
            watch: self.clone(),
            awake: Cell::new(true),
        }
    }

    fn woke(&self) {
        self.awake.set(self.awake.get() + 1);
        if self.awake.get() == 1 {
            self.shared.spinning.store(true, Ordering::Relaxed);
            if let Some(t) = self.watchdog.borrow().as_ref() {
                t.unpark();
            }
            if let Some(w) = self.idle.borrow_mut().take() {
                w.wake();
            }
        }
    }

    fn slept(&self) {
        self.awake.set(self.awake.get() - 1);
        if self.awake.get() == 0 {
            self.shared.spinning.store(false, Ordering::Relaxed);
        }
    }

    /// The watchdog: parks while no session is awake, returns once the
    /// shard's service closed.
    fn spawn_watchdog(&self) {
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("weft-spinwatch-{}", self.ctx.id))
            .spawn(move || {
                let mut last = None;
                while !shared.closed.load(Ordering::Relaxed) {
                    if !shared.spinning.load(Ordering::Relaxed) {
                        last = None;
                        // Unparked by the first session to wake, or at
                        // the close.
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(WATCH_EVERY);
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
        match spawned {
            Ok(handle) => *self.watchdog.borrow_mut() = Some(handle.thread().clone()),
            // Spinning still works; only the bound on a lost wake-up is
            // gone (logged once per shard).
            Err(e) => {
                tracing::warn!(shard = self.ctx.id, error = %e, "shm: cannot start the spin watchdog thread")
            }
        }
    }
}

impl Drop for SpinWatch {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(t) = self.watchdog.get_mut().take() {
            t.unpark();
        }
        // The heartbeat finds the watch gone and ends.
        if let Some(w) = self.idle.get_mut().take() {
            w.wake();
        }
    }
}

/// Beats every `SPIN_TURN` while a spinning session is awake; waits
/// without a timer while none is; ends with the watch.
async fn heartbeat(watch: Weak<SpinWatch>, shared: Arc<Shared>) {
    /// Takes the waker back on the shard's thread, however the task ends
    /// (a glommio waker is best dropped where its task lives).
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
    std::future::poll_fn(|cx| {
        *shared.heart.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        Poll::Ready(())
    })
    .await;
    let _clear = Clear(&shared);
    loop {
        let beat = std::future::poll_fn(|cx| match watch.upgrade() {
            None => Poll::Ready(None),
            Some(w) if w.awake.get() > 0 => Poll::Ready(Some(w.ctx.clone())),
            Some(w) => {
                *w.idle.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let Some(ctx) = beat else { return };
        shared.beats.fetch_add(1, Ordering::Relaxed);
        let rescues = shared.rescues.swap(0, Ordering::Relaxed);
        if rescues > 0 {
            Counters::add(&ctx.counters.shm_spin_rescues, rescues);
        }
        drop(ctx);
        glommio::timer::sleep(SPIN_TURN).await;
    }
}

/// One spinning session: awake (counted) until its reader sleeps on the
/// doorbell, again when it wakes; uncounted when dropped.
pub struct SpinSession {
    watch: Rc<SpinWatch>,
    awake: Cell<bool>,
}

impl SpinSession {
    /// The session's reader sleeps on its doorbell.
    pub fn asleep(&self) {
        if self.awake.replace(false) {
            self.watch.slept();
        }
    }

    /// The session's reader is polled again.
    pub fn awake(&self) {
        if !self.awake.replace(true) {
            self.watch.woke();
        }
    }
}

impl Drop for SpinSession {
    fn drop(&mut self) {
        self.asleep();
    }
}
