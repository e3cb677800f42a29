//! The blocking client: one publisher thread and one receiver thread (or
//! one thread doing both) over the two rings of a segment.
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
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ring::{Consumer, Producer, RingView};
use crate::segment::Segment;
use crate::{doorbell, handshake, mqtt, nats, Dialect, Error, Message, Options};

/// Decoded messages held for `recv` at most.
pub const PENDING_MAX: usize = 4096;
/// Control replies owed to the router at most.
pub const OWED_BYTES_MAX: usize = 64 << 10;
/// How long a client waits for the router's CONNECT reply or an ack.
pub const ACK_WAIT_MAX: Duration = Duration::from_secs(10);
/// The longest single poll: bounds how late a closed socket is noticed if
/// its wake were ever missed.
const POLL_SLICE: Duration = Duration::from_millis(200);
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

#[derive(Default)]
struct Bell {
    polling: bool,
    epoch: u64,
    rx_waiters: u32,
    tx_waiters: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Data,
    Room,
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
        let mut sock = UnixStream::connect(path.as_ref()).map_err(Error::Io)?;
        sock.write_all(handshake::hello(options.dialect).as_bytes())
            .map_err(Error::Io)?;
        let (ring_bytes, handed) = handshake::recv_reply(&sock)?;
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
        let mut rx = lock(&self.rx);
        self.take_msg(&mut rx, &mut |topic: &str, payload: &[u8]| Message {
            topic: topic.to_string(),
            payload: payload.to_vec(),
        })
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

    // ---- sending ----

    fn check_topic(&self, topic: &str, filter: bool) -> Result<(), Error> {
        match self.dialect {
            Dialect::Nats => nats::check_subject(topic),
            Dialect::Mqtt => mqtt::check_topic(topic, filter),
        }
        .map_err(Error::Invalid)
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// `check_open`, then a look at the Unix socket (never blocks).
    fn check_open_now(&self) -> Result<(), Error> {
        self.check_open()?;
        self.since_check.store(0, Ordering::Relaxed);
        if socket_ended(&self.sock) {
            self.closed.store(true, Ordering::Relaxed);
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// `check_open`, and every [`CLOSED_CHECK_EVERY`] calls
    /// `check_open_now`.
    fn check_open_sometimes(&self) -> Result<(), Error> {
        if self.since_check.fetch_add(1, Ordering::Relaxed) + 1 >= CLOSED_CHECK_EVERY {
            return self.check_open_now();
        }
        self.check_open()
    }

    fn encode_publish(&self, buf: &mut Vec<u8>, topic: &str, payload: &[u8]) {
        match self.dialect {
            Dialect::Nats => nats::publish(buf, topic, payload),
            Dialect::Mqtt => mqtt::publish(buf, topic, payload),
        }
    }

    fn send_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        self.send_with_tx(|tx| encode(&mut tx.buf))
    }

    fn send_with_tx<R>(&self, encode: impl FnOnce(&mut Tx) -> R) -> Result<R, Error> {
        let mut tx = lock(&self.tx);
        tx.buf.clear();
        let r = encode(&mut tx);
        self.push_blocking(&mut tx)?;
        Ok(r)
    }

    /// Writes `tx.buf` into the ring, waiting for room as needed (a
    /// message larger than the ring goes in pieces).
    fn push_blocking(&self, tx: &mut Tx) -> Result<(), Error> {
        self.check_open()?;
        let Tx { buf, prod, .. } = tx;
        let mut off = 0;
        while off < buf.len() {
            let n = prod.write(&buf[off..]).map_err(corrupt)?;
            off += n;
            if prod.publish() {
                doorbell::ring(self.to_router.as_fd());
            }
            if off < buf.len() && n == 0 {
                self.wait(Why::Room, None, &mut || {
                    Ok(prod.free().map_err(corrupt)? > 0)
                })?;
            }
        }
        Ok(())
    }

    /// Sends the control replies owed (PONG, PUBACK) if the ring takes
    /// them now; never waits.
    fn flush_owed(&self) {
        if !self.has_owed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut tx) = self.tx.try_lock() else {
            return;
        };
        let mut owed = lock(&self.owed);
        if tx.prod.write_all_or_none(&owed).unwrap_or(false) {
            owed.clear();
            self.has_owed.store(false, Ordering::Relaxed);
            if tx.prod.publish() {
                doorbell::ring(self.to_router.as_fd());
            }
        }
    }

    fn owe(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        let mut owed = lock(&self.owed);
        encode(&mut owed);
        if owed.len() > OWED_BYTES_MAX {
            return Err(Error::Protocol(
                "the router asks for more replies than the ring takes".into(),
            ));
        }
        self.has_owed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// NATS: PING, then wait for the PONG that answers it (the router
    /// answers in order, so everything sent before is processed).
    fn nats_roundtrip(&self, deadline: Instant) -> Result<(), Error> {
        let (errors_before, target) = {
            let errors = lock(&self.rx).errors;
            let target = self.send_with_tx(|tx| {
                nats::ping(&mut tx.buf);
                tx.pings += 1;
                tx.pings
            })?;
            (errors, target)
        };
        let done = self.wait_rx(Some(deadline), |rx| Ok((rx.pongs >= target).then_some(())));
        // A refused CONNECT is an -ERR and then the router's close.
        let done = match done {
            Err(Error::Closed) => None,
            other => other?,
        };
        if done.is_none() {
            let rx = lock(&self.rx);
            if rx.errors > errors_before {
                return Err(Error::Refused(rx.last_error.clone().unwrap_or_default()));
            }
            self.check_open()?;
            return Err(Error::Timeout);
        }
        Ok(())
    }

    fn wait_ack(&self, pid: u16, deadline: Instant) -> Result<Vec<u8>, Error> {
        self.wait_rx(Some(deadline), |rx| Ok(rx.acks.remove(&pid)))?
            .ok_or(Error::Timeout)
    }

    // ---- receiving ----

    fn recv_with_deadline<R>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&str, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        let mut out = None;
        let got = self.wait_rx(deadline, |rx| {
            out = self.take_msg(rx, &mut f)?;
            Ok(out.is_some().then_some(()))
        })?;
        Ok(got.and(out))
    }

    /// Takes the next held or decoded message, reading the ring as needed.
    fn take_msg<R>(
        &self,
        rx: &mut Rx,
        f: &mut impl FnMut(&str, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        if let Some(m) = rx.pending.pop_front() {
            return Ok(Some(f(&m.topic, &m.payload)));
        }
        loop {
            match self.decode_one(rx, Some(&mut *f))? {
                Some(Some(r)) => return Ok(Some(r)),
                // A control operation (PING, PONG, +OK, SUBACK): a
                // message may follow it in the buffer.
                Some(None) => continue,
                None => {
                    if !self.fill(rx)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads the ring into the buffer; true if bytes came.
    fn fill(&self, rx: &mut Rx) -> Result<bool, Error> {
        if rx.start > 0 && rx.start * 2 >= rx.buf.len() {
            rx.buf.drain(..rx.start);
            rx.start = 0;
        }
        let ready = rx.cons.available().map_err(corrupt)? as usize;
        if ready == 0 {
            return Ok(false);
        }
        let old = rx.buf.len();
        let take = ready.min(1 << 20);
        rx.buf.resize(old + take, 0);
        let n = rx.cons.read(&mut rx.buf[old..]).map_err(corrupt)?;
        rx.buf.truncate(old + n);
        if rx.cons.release() {
            doorbell::ring(self.to_router.as_fd());
        }
        Ok(n > 0)
    }

    /// Decodes one unit from the buffer: control operations are handled
    /// (Some(None) returned to go on); a message goes to `f` if given, else
    /// to `pending`. None: more bytes needed.
    #[allow(clippy::type_complexity)]
    fn decode_one<R>(
        &self,
        rx: &mut Rx,
        f: Option<&mut impl FnMut(&str, &[u8]) -> R>,
    ) -> Result<Option<Option<R>>, Error> {
        let Rx {
            buf,
            start,
            pending,
            pongs,
            errors,
            last_error,
            connack,
            acks,
            ..
        } = rx;
        let bytes = &buf[*start..];
        match self.dialect {
            Dialect::Nats => {
                let Some((op, used)) = nats::decode(bytes).map_err(|e| Error::Protocol(e.0))?
                else {
                    return Ok(None);
                };
                let mut out = None;
                match op {
                    nats::ServerOp::Msg {
                        subject, payload, ..
                    } => match f {
                        Some(f) => out = Some(f(subject, payload)),
                        None => pending.push_back(Message {
                            topic: subject.to_string(),
                            payload: payload.to_vec(),
                        }),
                    },
                    nats::ServerOp::Ping => self.owe(nats::pong)?,
                    nats::ServerOp::Pong => *pongs += 1,
                    nats::ServerOp::Err(e) => {
                        *errors += 1;
                        *last_error = Some(e.to_string());
                    }
                    nats::ServerOp::Info | nats::ServerOp::Ok => {}
                }
                *start += used;
                self.flush_owed();
                Ok(Some(out))
            }
            Dialect::Mqtt => {
                let Some((packet, used)) = mqtt::decode(bytes).map_err(|e| Error::Protocol(e.0))?
                else {
                    return Ok(None);
                };
                let mut out = None;
                match packet {
                    mqtt::Packet::Publish {
                        topic,
                        payload,
                        qos,
                        pid,
                    } => {
                        if qos == 1 {
                            self.owe(|b| mqtt::puback(b, pid))?;
                        }
                        match f {
                            Some(f) => out = Some(f(topic, payload)),
                            None => pending.push_back(Message {
                                topic: topic.to_string(),
                                payload: payload.to_vec(),
                            }),
                        }
                    }
                    mqtt::Packet::ConnAck { code } => *connack = Some(code),
                    mqtt::Packet::SubAck { pid, codes } => {
                        acks.insert(pid, codes.to_vec());
                    }
                    mqtt::Packet::UnsubAck { pid } => {
                        acks.insert(pid, Vec::new());
                    }
                    mqtt::Packet::PingResp => {}
                }
                *start += used;
                self.flush_owed();
                Ok(Some(out))
            }
        }
    }

    /// Reads and decodes what is there, holding messages in `pending` (up
    /// to PENDING_MAX), so that acks behind messages are seen.
    fn pump(&self, rx: &mut Rx) -> Result<(), Error> {
        loop {
            while rx.pending.len() < PENDING_MAX {
                match self.decode_one::<()>(rx, None::<&mut fn(&str, &[u8])>)? {
                    Some(_) => continue,
                    None => break,
                }
            }
            if rx.pending.len() >= PENDING_MAX || !self.fill(rx)? {
                return Ok(());
            }
        }
    }

    /// Waits until `ready` (under the rx lock, after a pump) gives Some,
    /// or the deadline passes (None).
    fn wait_rx<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Rx) -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        let mut out = None;
        let mut check = || -> Result<bool, Error> {
            let mut rx = lock(&self.rx);
            if let Some(v) = ready(&mut rx)? {
                out = Some(v);
                return Ok(true);
            }
            self.pump(&mut rx)?;
            if let Some(v) = ready(&mut rx)? {
                out = Some(v);
                return Ok(true);
            }
            Ok(false)
        };
        let got = self.wait(Why::Data, deadline, &mut check)?;
        Ok(if got { out } else { None })
    }

    // ---- waiting ----

    /// Spins `spin_us`, then sleeps on the doorbell until `ready`; false
    /// if the deadline passed first.
    fn wait(
        &self,
        why: Why,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut() -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        if ready()? {
            return Ok(true);
        }
        let spin_end = Instant::now() + self.spin;
        while Instant::now() < spin_end {
            std::hint::spin_loop();
            if ready()? {
                return Ok(true);
            }
        }
        self.enter(why);
        let result = self.sleep_until(deadline, ready);
        self.leave(why);
        result
    }

    fn enter(&self, why: Why) {
        let mut bell = lock(&self.bell);
        match why {
            Why::Data => {
                bell.rx_waiters += 1;
                self.r2c.set_consumer_sleeping(true);
            }
            Why::Room => {
                bell.tx_waiters += 1;
                self.c2r.set_producer_waiting(true);
            }
        }
    }

    fn leave(&self, why: Why) {
        let mut bell = lock(&self.bell);
        match why {
            Why::Data => {
                bell.rx_waiters -= 1;
                if bell.rx_waiters == 0 {
                    self.r2c.set_consumer_sleeping(false);
                }
            }
            Why::Room => {
                bell.tx_waiters -= 1;
                if bell.tx_waiters == 0 {
                    self.c2r.set_producer_waiting(false);
                }
            }
        }
    }

    fn sleep_until(
        &self,
        deadline: Option<Instant>,
        ready: &mut dyn FnMut() -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        let mut ran_out = false;
        loop {
            // The epoch before the check: a poller that drains the bell
            // after this check moves it, so a wake-up meant for this
            // thread is never slept through (the check is redone).
            let seen = lock(&self.bell).epoch;
            // The flag is set (and fenced): a check now either sees the
            // router's bytes or the router sees the flag and rings.
            if ready()? {
                if ran_out {
                    self.missed_wakes.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(true);
            }
            ran_out = false;
            self.check_open()?;
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return Ok(false),
                Some(d) => (d - now).min(POLL_SLICE),
                None => POLL_SLICE,
            };
            let mut bell = lock(&self.bell);
            if bell.epoch != seen {
                continue;
            }
            if !bell.polling {
                bell.polling = true;
                drop(bell);
                let woken =
                    doorbell::wait(self.to_client.as_fd(), Some(self.sock.as_fd()), Some(slice));
                let mut bell = lock(&self.bell);
                bell.polling = false;
                bell.epoch += 1;
                self.woken.notify_all();
                drop(bell);
                let woken = woken.map_err(Error::Io)?;
                if woken.other {
                    // The socket carries nothing after the handshake:
                    // readable means the router closed it.
                    self.closed.store(true, Ordering::Relaxed);
                }
                ran_out =
                    !woken.rung && !woken.other && deadline.is_none_or(|d| Instant::now() < d);
            } else {
                let (_bell, timeout) = self
                    .woken
                    .wait_timeout_while(bell, slice, |b| b.polling && b.epoch == seen)
                    .unwrap_or_else(|e| e.into_inner());
                ran_out = timeout.timed_out() && deadline.is_none_or(|d| Instant::now() < d);
            }
        }
    }

    /// Times a sleep slice ran out while the awaited condition was
    /// already true: a missed wake-up (0 when the wake protocol holds).
    #[doc(hidden)]
    pub fn missed_wakes_for_tests(&self) -> u64 {
        self.missed_wakes.load(Ordering::Relaxed)
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
