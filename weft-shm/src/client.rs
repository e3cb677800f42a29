//! The blocking client: one publisher thread and one receiver thread (or
//! one thread doing both) over the two rings of a segment. This file: the
//! client's state, connecting and the public calls; `send` what goes
//! into the client -> router ring, `recv` what comes out of the other,
//! `wait` the spin-then-sleep on the doorbell.
//!
//! Owns: the session's bytes (CONNECT, SUB, PUB, PING replies), the
//! received messages until `recv` takes them, and the client's half of the
//! wake protocol. Bounds: at most [`PENDING_MAX`] decoded messages are
//! held (past that the bytes stay in the ring and the router's
//! slow-consumer policy applies, as over TCP); control replies owed to the
//! router (PONG, PUBACK) at most [`OWED_BYTES_MAX`].
//!
//! Waiting: the client has one doorbell (`to_client`) for two reasons
//! (data in r2c, room in c2r) and up to two threads that may wait on it.
//! Only one thread at a time polls the eventfd (and drains it); it then
//! wakes every other waiter through a condvar, so a drain never steals
//! another thread's wake-up. Each waiter re-checks its condition after
//! setting its flag (see `ring.rs` for why no wake is lost). The poll also
//! watches the Unix socket: the router's close (or crash) ends the client.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ring::{Consumer, Producer, RingView};
use crate::segment::Segment;
use crate::{doorbell, handshake, mqtt, nats, Dialect, Error, Message, Options};

mod recv;
mod send;
mod wait;

use wait::{Bell, Why};

/// Decoded messages held for `recv` at most.
pub const PENDING_MAX: usize = 4096;
/// Control replies owed to the router at most.
pub const OWED_BYTES_MAX: usize = 64 << 10;
/// How long a client waits for the router's CONNECT reply or an ack.
pub const ACK_WAIT_MAX: Duration = Duration::from_secs(10);
/// `publish`/`try_publish` look at the Unix socket (one non-blocking
/// `recv(MSG_PEEK)`) every this many calls, `flush` on every call: a
/// router that closed is reported (`Error::Closed`) within this many
/// publishes instead of messages vanishing.
pub const CLOSED_CHECK_EVERY: u32 = 64;

struct Tx {
    prod: Producer,
    buf: Vec<u8>,
    /// NATS sids / MQTT packet ids.
    next_id: u64,
    subs: HashMap<String, u64>,
    pings: u64,
}

struct Rx {
    cons: Consumer,
    buf: Vec<u8>,
    start: usize,
    pending: VecDeque<Message>,
    pongs: u64,
    errors: u64,
    last_error: Option<String>,
    connack: Option<u8>,
    acks: HashMap<u16, Vec<u8>>,
}

pub struct Client {
    dialect: Dialect,
    spin: Duration,
    sock: UnixStream,
    to_router: OwnedFd,
    to_client: OwnedFd,
    c2r: RingView,
    r2c: RingView,
    tx: Mutex<Tx>,
    rx: Mutex<Rx>,
    owed: Mutex<Vec<u8>>,
    has_owed: AtomicBool,
    bell: Mutex<Bell>,
    woken: Condvar,
    closed: AtomicBool,
    /// Publishes since the last look at the socket.
    since_check: AtomicU32,
    /// Times a sleep slice ran out while the awaited condition was
    /// already true (a missed wake-up); for tests.
    missed_wakes: AtomicU64,
    /// Last: the views above point into it.
    segment: Segment,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// Connects to the router's Unix socket at `path`, maps the segment it
    /// hands over and opens the session (CONNECT; waits for the router's
    /// answer).
    pub fn connect(path: impl AsRef<Path>, options: Options) -> Result<Client, Error> {
        let sock = UnixStream::connect(path.as_ref()).map_err(Error::Io)?;
        // A router that refuses at once (a limit reached) writes its `ERR`
        // line and closes without reading the hello: the hello may then
        // meet a closed socket (EPIPE, never SIGPIPE: a C program linking
        // this library keeps its default signal handling), and the reason
        // is in the reply all the same.
        let (ring_bytes, handed) = match handshake::send_hello(&sock, options.dialect) {
            Ok(()) => handshake::recv_reply(&sock)?,
            Err(e) if handshake::peer_gone(&e) => match handshake::recv_reply(&sock) {
                Err(Error::Refused(why)) => return Err(Error::Refused(why)),
                _ => return Err(Error::Io(e)),
            },
            Err(e) => return Err(Error::Io(e)),
        };
        let segment = Segment::open(&handed.memfd, ring_bytes)
            .map_err(|e| Error::Handshake(e.to_string()))?;
        drop(handed.memfd);
        let (c2r, r2c) = (segment.c2r(), segment.r2c());
        let client = Client {
            dialect: options.dialect,
            spin: Duration::from_micros(u64::from(options.spin_us)),
            sock,
            to_router: handed.to_router,
            to_client: handed.to_client,
            c2r,
            r2c,
            tx: Mutex::new(Tx {
                prod: Producer::new(c2r),
                buf: Vec::with_capacity(1024),
                next_id: 1,
                subs: HashMap::new(),
                pings: 0,
            }),
            rx: Mutex::new(Rx {
                cons: Consumer::new(r2c),
                buf: Vec::with_capacity(64 << 10),
                start: 0,
                pending: VecDeque::new(),
                pongs: 0,
                errors: 0,
                last_error: None,
                connack: None,
                acks: HashMap::new(),
            }),
            owed: Mutex::new(Vec::new()),
            has_owed: AtomicBool::new(false),
            bell: Mutex::new(Bell::default()),
            woken: Condvar::new(),
            closed: AtomicBool::new(false),
            since_check: AtomicU32::new(0),
            missed_wakes: AtomicU64::new(0),
            segment,
        };
        let deadline = Instant::now() + ACK_WAIT_MAX;
        let (user, pass) = (options.user.as_deref(), options.password.as_deref());
        match client.dialect {
            Dialect::Nats => {
                client.send_with(|buf| nats::connect(buf, &options.client_id, user, pass))?;
                client.nats_roundtrip(deadline)?;
            }
            Dialect::Mqtt => {
                client.send_with(|buf| mqtt::connect(buf, &options.client_id, user, pass))?;
                let code = client.wait_rx(Some(deadline), |rx| Ok(rx.connack))?;
                match code {
                    Some(0) => {}
                    Some(code) => {
                        return Err(Error::Refused(format!("CONNACK return code {code}")))
                    }
                    None => return Err(Error::Timeout),
                }
            }
        }
        Ok(client)
    }

    /// Publishes one message; blocks (spins `spin_us`, then sleeps) while
    /// the ring is full.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        self.check_topic(topic, false)?;
        self.check_open_sometimes()?;
        self.flush_owed();
        let mut tx = lock(&self.tx);
        tx.buf.clear();
        let Tx { buf, .. } = &mut *tx;
        self.encode_publish(buf, topic, payload);
        self.push_blocking(&mut tx)
    }

    /// Publishes if the whole message fits now; false when the ring is
    /// full. A message larger than the ring never fits: `Error::TooLarge`.
    pub fn try_publish(&self, topic: &str, payload: &[u8]) -> Result<bool, Error> {
        self.check_topic(topic, false)?;
        self.check_open_sometimes()?;
        self.flush_owed();
        let mut tx = lock(&self.tx);
        tx.buf.clear();
        let Tx { buf, prod, .. } = &mut *tx;
        self.encode_publish(buf, topic, payload);
        if buf.len() as u64 > self.c2r.size() {
            return Err(Error::TooLarge);
        }
        if !prod.write_all_or_none(buf).map_err(corrupt)? {
            return Ok(false);
        }
        if prod.publish() {
            doorbell::ring(self.to_router.as_fd());
        }
        Ok(true)
    }

    /// Subscribes to a filter in the client's dialect; returns once the
    /// router has taken it (or refused it: `Error::Refused`).
    pub fn subscribe(&self, filter: &str) -> Result<(), Error> {
        self.check_topic(filter, true)?;
        let deadline = Instant::now() + ACK_WAIT_MAX;
        match self.dialect {
            Dialect::Nats => {
                if lock(&self.tx).subs.contains_key(filter) {
                    // A second SUB would orphan the first sid (its
                    // messages twice, and no UNSUB for it).
                    return Ok(());
                }
                let errors_before = lock(&self.rx).errors;
                self.send_with_tx(|tx| {
                    let sid = tx.next_id;
                    tx.next_id += 1;
                    tx.subs.insert(filter.to_string(), sid);
                    nats::subscribe(&mut tx.buf, filter, sid);
                })?;
                self.nats_roundtrip(deadline)?;
                let rx = lock(&self.rx);
                if rx.errors > errors_before {
                    drop(rx);
                    lock(&self.tx).subs.remove(filter);
                    let rx = lock(&self.rx);
                    return Err(Error::Refused(rx.last_error.clone().unwrap_or_default()));
                }
                Ok(())
            }
            Dialect::Mqtt => {
                let pid = self.send_with_tx(|tx| {
                    let pid = next_pid(tx);
                    mqtt::subscribe(&mut tx.buf, pid, filter);
                    pid
                })?;
                let codes = self.wait_ack(pid, deadline)?;
                if codes.iter().any(|c| *c >= 0x80) {
                    return Err(Error::Refused(format!("SUBACK refused {filter:?}")));
                }
                Ok(())
            }
        }
    }

    /// Unsubscribes from a filter subscribed before; returns once the
    /// router has taken it.
    pub fn unsubscribe(&self, filter: &str) -> Result<(), Error> {
        self.check_topic(filter, true)?;
        let deadline = Instant::now() + ACK_WAIT_MAX;
        match self.dialect {
            Dialect::Nats => {
                let sent = self.send_with_tx(|tx| match tx.subs.remove(filter) {
                    Some(sid) => {
                        nats::unsubscribe(&mut tx.buf, sid);
                        true
                    }
                    None => false,
                })?;
                if !sent {
                    return Err(Error::Invalid(format!("not subscribed to {filter:?}")));
                }
                self.nats_roundtrip(deadline)
            }
            Dialect::Mqtt => {
                let pid = self.send_with_tx(|tx| {
                    let pid = next_pid(tx);
                    mqtt::unsubscribe(&mut tx.buf, pid, filter);
                    pid
                })?;
                self.wait_ack(pid, deadline).map(drop)
            }
        }
    }

    /// The next message; spins `spin_us`, then sleeps on the doorbell.
    pub fn recv(&self) -> Result<Message, Error> {
        loop {
            if let Some(m) = self.recv_timeout(Duration::from_secs(3600))? {
                return Ok(m);
            }
        }
    }

    /// The next message, or None after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Message>, Error> {
        let deadline = Instant::now() + timeout;
        self.recv_with_deadline(Some(deadline), |topic, payload| Message {
            topic: topic.to_string(),
            payload: payload.to_vec(),
        })
    }

    /// The next message, borrowed (as `recv_with`), or None after
    /// `timeout`.
    pub fn recv_with_timeout<R>(
        &self,
        timeout: Duration,
        f: impl FnMut(&str, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        self.recv_with_deadline(Some(Instant::now() + timeout), f)
    }

    /// The next message if one is there now.
    pub fn try_recv(&self) -> Result<Option<Message>, Error> {
        self.try_recv_with(|topic, payload| Message {
            topic: topic.to_string(),
            payload: payload.to_vec(),
        })
    }

    /// The next message if one is there now, borrowed (as `recv_with`);
    /// never spins nor sleeps: for a thread that polls several clients.
    pub fn try_recv_with<R>(
        &self,
        mut f: impl FnMut(&str, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        let mut rx = lock(&self.rx);
        self.take_msg(&mut rx, &mut f)
    }

    /// The next message, borrowed: `f` sees the topic and payload in the
    /// client's buffer (no allocation when nothing was held back).
    pub fn recv_with<R>(&self, mut f: impl FnMut(&str, &[u8]) -> R) -> Result<R, Error> {
        loop {
            if let Some(r) =
                self.recv_with_deadline(Some(Instant::now() + Duration::from_secs(3600)), &mut f)?
            {
                return Ok(r);
            }
        }
    }

    /// Everything published so far is in the ring and the router woken if
    /// it sleeps.
    pub fn flush(&self) -> Result<(), Error> {
        self.check_open_now()?;
        self.flush_owed();
        let mut tx = lock(&self.tx);
        if tx.prod.publish() || self.c2r.consumer_sleeping() {
            doorbell::ring(self.to_router.as_fd());
        }
        Ok(())
    }

    /// The mapped segment, for a test that scribbles on it.
    ///
    /// # Safety
    /// Writing to it breaks this client's session (that is the point).
    #[doc(hidden)]
    pub unsafe fn segment_for_tests(&self) -> (*mut u8, usize) {
        (self.segment.as_ptr(), self.segment.len())
    }
}

/// Whether the Unix socket ended: EOF or an error. It carries nothing
/// after the handshake, so readable bytes are the router breaking the
/// contract: treated as its end too (as `sleep_until` does). One
/// non-blocking `recv(MSG_PEEK)`.
fn socket_ended(sock: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a 1-byte peek into a local from a socket we hold.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            &mut byte as *mut u8 as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error().raw_os_error();
        return !matches!(e, Some(libc::EAGAIN) | Some(libc::EINTR));
    }
    true
}

fn next_pid(tx: &mut Tx) -> u16 {
    let pid = (tx.next_id % 65535 + 1) as u16;
    tx.next_id += 1;
    pid
}

fn corrupt(c: crate::ring::Corrupt) -> Error {
    Error::Corrupt(c.to_string())
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.dialect == Dialect::Mqtt && !self.closed.load(Ordering::Relaxed) {
            if let Ok(mut tx) = self.tx.lock() {
                let mut bytes = Vec::new();
                mqtt::disconnect(&mut bytes);
                if tx.prod.write_all_or_none(&bytes).unwrap_or(false) && tx.prod.publish() {
                    doorbell::ring(self.to_router.as_fd());
                }
            }
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}
