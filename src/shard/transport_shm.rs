//! The shared-memory transport: [`Transport`] over the two rings of a
//! `weft-shm` client's segment, so that `driver_nats::serve_on` and
//! `driver_mqtt::serve_on` serve it like any socket.
//!
//! Owns: one connection's router ends of the rings (`crate::shm`), its
//! doorbells and its Unix socket (held only to notice the client's end).
//! Must not touch: protocols, sessions.
//!
//! Reading: bytes in the client -> router ring are copied out (into the
//! driver's buffer) and the room given back. On an empty ring, within
//! `shm.spin_us` (default 0) of the last time bytes came, the reader
//! spins *cooperatively*: it wakes its own task and returns `Pending`, so
//! the shard runs every other task (the publisher's session on the same
//! shard included) and polls this ring again on its next turn; a spinning
//! session keeps its task runnable, so the executor never parks under it
//! (`runtime.spin_us`, glommio's spin before park, only starts once no
//! task is runnable). Past the window it sets `consumer_sleeping` and
//! parks the reader until the client rings `to_router` (counted in
//! `weft_shm_sleeps_total`; `weft_shm_sleeping` is the sessions parked
//! so), so an idle shard goes back to sleep.
//! Spinning sessions run in a task queue of their own whose latency bound
//! keeps glommio's preemption timer short while they spin
//! (`spin_watch::SPIN_TURN`): the shard reaps io_uring completions and
//! fires timers at least that often, so sockets and timers of the
//! shard's other sessions are not held up by a task that is always
//! runnable.
//! The session counts as awake in the shard's spin watch (`spin_watch`)
//! from the doorbell's ring until its reader sleeps again.
//!
//! Writing: bytes go into the router -> client ring, `tail` is published and the client's
//! eventfd written only if it sleeps; on a full ring the writer sets
//! `producer_waiting` and parks. So while both sides are busy no event
//! costs a system call.
//!
//! Waiting for the doorbell without blocking the shard: one task per
//! connection reads the `to_router` eventfd through io_uring
//! (`glommio::io::BufferedFile::from_raw_fd` + `read_at(0, 8)`) and wakes
//! the parked reader and writer. Chosen by experiment (glommio 0.9, this
//! kernel): the read completes when the eventfd is written (with
//! `EFD_NONBLOCK` too: io_uring arms a poll for it instead of returning
//! EAGAIN), timers on the shard fire while it is pending, and it costs
//! one submission per sleep, none per event. The other option, the Unix
//! socket as the doorbell (the client writes a byte when the router
//! sleeps), would put a socket write in the client's hot path where an
//! eventfd write is cheaper, and would change the contract's handshake
//! (three descriptors). A second task reads the Unix socket: it carries
//! nothing after the handshake, so its end (EOF or error; the client died,
//! `kill -9` included) closes the connection at once.
//!
//! Distrust: every index the client writes is validated (see
//! `weft_shm::ring`); a violation ends this connection with a warning
//! naming the client (pid, uid) and nothing else. Dropping the transport
//! cancels both tasks, unmaps the segment and closes every descriptor.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;

use super::ctx::ShardCtx;
use super::spin_watch::SpinSession;
use super::stats;
use super::transport::Transport;
use crate::shm::RouterRings;

/// What the two tasks and the transport share.
#[derive(Default)]
struct Shared {
    /// The Unix socket ended (or the doorbell failed): the client is gone.
    closed: Cell<bool>,
    reader: RefCell<Option<Waker>>,
    writer: RefCell<Option<Waker>>,
    /// This session's share of the shard's spin watch (`spin_watch`):
    /// awake from the doorbell's ring (before the reader runs, so that a
    /// lost wake-up of the executor right then is watched too) until the
    /// reader sleeps again.
    spinning: Option<SpinSession>,
}

impl Shared {
    fn wake_both(&self) {
        if let Some(w) = self.reader.borrow_mut().take() {
            w.wake();
        }
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }
}

/// How a session spins: the window after its last bytes
/// (`shm.spin_us`, 0: never) and its share of the shard's spin watch.
pub struct Spin {
    pub window_us: u32,
    pub session: Option<SpinSession>,
}

pub struct ShmTransport {
    /// First: dropped (cancelled) before the segment their views point
    /// into.
    _tasks: [glommio::Task<()>; 2],
    rings: RefCell<RouterRings>,
    shared: Rc<Shared>,
    to_client: OwnedFd,
    spin: Duration,
    /// When bytes last came from the client (or the connection started):
    /// the reader spins until `spin` after it, across polls.
    last_data: Cell<Instant>,
    /// The shard, for `shm_sleeps` and `shm_sleeping`.
    ctx: Rc<ShardCtx>,
    /// The client as the logs name it: `shm client pid 123 uid 1000`.
    name: String,
    /// The reader set `consumer_sleeping` (cleared on its next poll).
    sleeping: Cell<bool>,
    waiting: Cell<bool>,
    /// The Unix socket's descriptor (owned by the socket task), for
    /// `shutdown_write`.
    socket_fd: i32,
    /// Set once a corrupt index was seen: every later call fails.
    corrupt: Cell<bool>,
}

impl ShmTransport {
    /// Takes over a connection after the handshake: `socket` is the Unix
    /// socket (as a glommio stream), `to_router` and `to_client` the
    /// doorbells, `rings` the mapped segment's router ends.
    pub fn new(
        socket: glommio::net::TcpStream,
        rings: RouterRings,
        to_router: OwnedFd,
        to_client: OwnedFd,
        spin: Spin,
        name: String,
        ctx: Rc<ShardCtx>,
    ) -> io::Result<ShmTransport> {
        let shared = Rc::new(Shared {
            spinning: spin.session,
            ..Shared::default()
        });
        let socket_fd = socket.as_raw_fd();
        let watch = {
            let shared = shared.clone();
            glommio::spawn_local(async move {
                let mut socket = socket;
                let mut byte = [0u8; 64];
                // Anything but the end is a client breaking the contract:
                // treated as its end too.
                let _ = socket.read(&mut byte).await;
                shared.closed.set(true);
                shared.wake_both();
                // Keeps the socket (and so `socket_fd`) until the
                // transport drops this task.
                futures_lite::future::pending::<()>().await;
            })
        };
        let (c2r, r2c) = rings.views();
        // The task owns a duplicate; `to_router` itself closes here.
        let bell_fd = to_router.try_clone()?;
        drop(to_router);
        let bell = {
            let shared = shared.clone();
            // SAFETY: a descriptor we own, handed to the file.
            let file = unsafe {
                glommio::io::BufferedFile::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(bell_fd))
            };
            glommio::spawn_local(async move {
                loop {
                    let rung = file.read_at(0, 8).await;
                    // Woken: the flags go down now, not on the parked
                    // side's next poll (a paused driver would leave them
                    // up, and every client publish would ring). A reader
                    // or writer that parks again sets them again first.
                    // SAFETY (views): the segment outlives this task
                    // (`_tasks` is dropped first).
                    c2r.set_consumer_sleeping(false);
                    r2c.set_producer_waiting(false);
                    if let Some(s) = &shared.spinning {
                        s.awake();
                    }
                    shared.wake_both();
                    if rung.is_err() {
                        shared.closed.set(true);
                        shared.wake_both();
                        futures_lite::future::pending::<()>().await;
                    }
                }
            })
        };
        Ok(ShmTransport {
            rings: RefCell::new(rings),
            shared,
            to_client,
            spin: Duration::from_micros(u64::from(spin.window_us)),
            last_data: Cell::new(Instant::now()),
            ctx,
            name,
            sleeping: Cell::new(false),
            waiting: Cell::new(false),
            socket_fd,
            corrupt: Cell::new(false),
            _tasks: [watch, bell],
        })
    }

    /// Whether the client wrote an impossible index (the reason this
    /// connection ended, then).
    pub fn corrupt(&self) -> bool {
        self.corrupt.get()
    }

    fn ring_client(&self) {
        weft_shm::doorbell::ring(self.to_client.as_fd());
    }

    fn corrupted(&self, c: weft_shm::ring::Corrupt) -> io::Error {
        if !self.corrupt.replace(true) {
            tracing::warn!(client = %self.name, "shm: closing the connection: the client wrote an impossible {c}");
        }
        io::Error::new(io::ErrorKind::InvalidData, format!("shm segment: {c}"))
    }

    fn check(&self) -> io::Result<()> {
        if self.corrupt.get() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shm segment corrupt",
            ));
        }
        Ok(())
    }
}

impl Drop for ShmTransport {
    fn drop(&mut self) {
        if self.sleeping.get() {
            stats::Counters::sub(&self.ctx.counters.shm_sleeping, 1);
        }
    }
}

impl Transport for ShmTransport {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.check()?;
        if buf.is_empty() {
            // Nothing fits: a read of nothing (never a park).
            return Poll::Ready(Ok(0));
        }
        let mut rings = self.rings.borrow_mut();
        if self.sleeping.replace(false) {
            rings.inbound.stop_sleeping();
            stats::Counters::sub(&self.ctx.counters.shm_sleeping, 1);
            if let Some(s) = &self.shared.spinning {
                s.awake();
            }
        }
        loop {
            let n = rings.inbound.read(buf).map_err(|c| self.corrupted(c))?;
            if n > 0 {
                if !self.spin.is_zero() {
                    self.last_data.set(Instant::now());
                }
                if rings.inbound.release() {
                    self.ring_client();
                }
                return Poll::Ready(Ok(n));
            }
            if self.shared.closed.get() {
                return Poll::Ready(Ok(0));
            }
            if !self.spin.is_zero() && self.last_data.get().elapsed() < self.spin {
                // Cooperative spin: back on the run queue behind every
                // other runnable task; the next poll looks again.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            *self.shared.reader.borrow_mut() = Some(cx.waker().clone());
            // Dekker (see weft_shm::ring): the flag, a fence, a re-check.
            let ready = rings
                .inbound
                .start_sleeping()
                .map_err(|c| self.corrupted(c))?;
            if ready == 0 {
                self.sleeping.set(true);
                if let Some(s) = &self.shared.spinning {
                    s.asleep();
                }
                stats::Counters::add(&self.ctx.counters.shm_sleeps, 1);
                stats::Counters::add(&self.ctx.counters.shm_sleeping, 1);
                return Poll::Pending;
            }
            rings.inbound.stop_sleeping();
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check()?;
        let mut rings = self.rings.borrow_mut();
        if self.waiting.replace(false) {
            rings.outbound.stop_waiting();
        }
        loop {
            if self.shared.closed.get() {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let n = rings.outbound.write(buf).map_err(|c| self.corrupted(c))?;
            if n > 0 || buf.is_empty() {
                if rings.outbound.publish() {
                    self.ring_client();
                }
                return Poll::Ready(Ok(n));
            }
            *self.shared.writer.borrow_mut() = Some(cx.waker().clone());
            let free = rings
                .outbound
                .start_waiting()
                .map_err(|c| self.corrupted(c))?;
            if free == 0 {
                self.waiting.set(true);
                return Poll::Pending;
            }
            rings.outbound.stop_waiting();
        }
    }

    fn shutdown_write(&self) {
        // The client reads what the ring holds, then sees the socket end.
        // SAFETY: the socket task keeps the descriptor open while the
        // transport lives.
        unsafe {
            nix::libc::shutdown(self.socket_fd, nix::libc::SHUT_WR);
        }
    }

    fn reset_on_close(&self) {}

    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}
