//! Connection plumbing shared by every protocol, over any [`Transport`]:
//! the growing read buffer, the read budget (`Fairness`), a read that also
//! ends when the session is closed from elsewhere, the bounded last words,
//! and the writer task that turns a mailbox's queue into batched writes.
//!
//! Owns: the reads and writes of a connection. Must not touch: protocol
//! formats (the machines and their codecs), routing (`ctx`). The read
//! buffer starts at `READ_BUFFER_INITIAL` (256 B, lent by the shard's pool
//! while data moves: an idle connection holds none, `driver::read`) and
//! grows on demand up to `read_buffer_bytes_max`, or to the size of one
//! packet if that is larger; the writer gathers everything queued, up to
//! `write_batch_bytes_max`, into one write.
//! Hot path: the writer loop; rerun `weft bench` (README "bench") after
//! changing it.

use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::Poll;

use super::ctx::ShardCtx;
use super::mailbox::{CloseReason, Mailbox};
pub use super::transport::configure;
use super::transport::Transport;

/// The read buffer a connection is lent when its socket has data (idle
/// connections hold none); CONNECT and most control packets fit.
pub const READ_BUFFER_INITIAL: usize = 256;

#[derive(Default)]
pub struct ReadBuffer {
    pub data: Vec<u8>,
    pub start: usize,
    pub end: usize,
}

impl ReadBuffer {
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Room for the next read, compacting or growing as needed.
    /// `pending_len` is the size of the packet at the front when the
    /// protocol knows it (MQTT's fixed header), else 0: the buffer then
    /// doubles, up to `read_max`.
    pub fn spare(&mut self, read_max: usize, pending_len: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // A packet larger than the buffer is pending; its size was
                // already checked against the protocol's limit by the
                // decoder.
                let grown = (self.data.len() * 2)
                    .max(READ_BUFFER_INITIAL)
                    .min(read_max)
                    .max(pending_len);
                self.data.resize(grown.max(self.data.len() + 1), 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// After a read of `n` bytes into `room` bytes of space: a read that
    /// filled its room means more is waiting, so the buffer doubles (up to
    /// `read_max`) and the next read takes more per syscall; a small read
    /// on a grown buffer shrinks it back, so idle connections stay small.
    pub fn settle(&mut self, n: usize, room: usize, read_max: usize) {
        let pending = self.end - self.start;
        if n == room && self.data.len() < read_max {
            let grown = (self.data.len() * 2).min(read_max);
            self.data.resize(grown, 0);
        } else if n < READ_BUFFER_INITIAL / 2
            && self.data.len() > READ_BUFFER_INITIAL
            && pending <= READ_BUFFER_INITIAL
        {
            let mut small = vec![0; READ_BUFFER_INITIAL];
            small[..pending].copy_from_slice(&self.data[self.start..self.end]);
            self.data = small;
            self.start = 0;
            self.end = pending;
        }
    }
}

/// Keeps one busy reader from starving its shard: glommio's read returns at
/// once while data waits, so a publisher whose socket never runs dry would
/// keep its task running. The reader yields after `YIELD_BYTES` read in
/// full buffers; a read that drains the socket needs no yield (the next one
/// waits and lets the others run), which keeps batches large.
#[derive(Default)]
pub struct Fairness {
    since_yield: usize,
    pressed: bool,
}

const YIELD_BYTES: usize = 256 * 1024;

impl Fairness {
    pub fn read(&mut self, n: usize, room: usize) {
        self.since_yield += n;
        self.pressed = n == room;
    }

    pub async fn after_batch(&mut self) {
        if self.pressed && self.since_yield >= YIELD_BYTES {
            self.since_yield = 0;
            futures_lite::future::yield_now().await;
        }
    }
}

pub enum Read {
    Data(usize),
    Closed(CloseReason),
}

/// Reads into `buf`, or returns when the session is closed from elsewhere
/// (slow consumer, shutdown, write error).
pub async fn read_some<T: Transport>(
    stream: &T,
    buf: &mut [u8],
    session: Option<&Mailbox>,
) -> Read {
    poll_fn(|cx| {
        if let Some(s) = session {
            if let Poll::Ready(r) = s.poll_closed(cx) {
                return Poll::Ready(Read::Closed(r));
            }
        }
        match stream.poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(Read::Closed(CloseReason::PeerClosed)),
            Poll::Ready(Ok(n)) => Poll::Ready(Read::Data(n)),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                Poll::Ready(Read::Closed(CloseReason::KeepAliveTimeout))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Read::Closed(CloseReason::ReadError)),
        }
    })
    .await
}

/// Sends `last` (a final DISCONNECT or `-ERR` line) and closes gently:
/// half-close, then read and discard what the client still sends, for at
/// most 100 ms and 64 KiB. Closing with unread input would make the kernel
/// reset the connection, and the client could lose the last words.
pub async fn last_words<T: Transport>(stream: &T, last: &[u8]) {
    let bounded = async {
        if send_all(stream, last).await.is_err() {
            return;
        }
        stream.shutdown_write();
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match read_some(stream, &mut sink, None).await {
                Read::Data(n) => left = left.saturating_sub(n),
                Read::Closed(_) => break,
            }
        }
    };
    futures_lite::future::or(
        bounded,
        glommio::timer::sleep(std::time::Duration::from_millis(100)),
    )
    .await;
}

/// Makes the coming close reset the connection instead of draining it:
/// for a slow consumer the unsent bytes in the kernel's buffer (up to
/// tcp_wmem's maximum, megabytes) would otherwise trickle out for minutes
/// to a client that does not read.
pub fn reset_on_close<T: Transport>(stream: &T) {
    stream.reset_on_close();
}

/// `write_all` that records how far it got, for a caller that may drop it.
async fn write_counted<T: Transport>(
    stream: &T,
    buf: &[u8],
    written: &mut usize,
) -> io::Result<()> {
    while *written < buf.len() {
        let n = poll_fn(|cx| stream.poll_write(cx, &buf[*written..])).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += n;
    }
    poll_fn(|cx| stream.poll_flush(cx)).await
}

/// Writes all of `buf` to a transport.
pub async fn send_all<T: Transport>(stream: &T, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| stream.poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    poll_fn(|cx| stream.poll_flush(cx)).await
}

/// Writes all of `buf` to a stream that is not (yet) a [`Transport`]
/// (the bridge's links).
pub async fn write_all<S: futures_lite::AsyncWrite + Unpin>(
    stream: &std::cell::RefCell<S>,
    mut buf: &[u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        let n =
            poll_fn(|cx| std::pin::Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Drains the session's queue into batched writes until the session is
/// closed. Returns true if it stopped between two packets (so that a final
/// error line can still be written), false if it abandoned a write.
pub async fn write_loop<T: Transport>(
    ctx: Rc<ShardCtx>,
    session: Rc<Mailbox>,
    stream: Rc<T>,
) -> bool {
    let limits = ctx.limits();
    let mut born = Vec::new();
    loop {
        // Batches are gathered in a buffer from the shard's pool: no fresh
        // pages per batch, and idle connections hold none.
        // Gated acknowledgements (persistence: QoS 1 PUBACKs) queued so
        // far leave only once what was routed before them is durable; the
        // batch sends them as refusals if it cannot be.
        if let Some(upto) = session.gate_due() {
            let ok = ctx.durable().await.is_ok();
            session.set_gate(upto, ok);
        }
        let mut buf = ctx.take_write_buffer();
        let more = poll_fn(|cx| session.poll_batch(cx, &mut buf, &limits, &mut born)).await;
        if !more {
            ctx.give_write_buffer(buf);
            break;
        }
        if session.take_gate_refused() {
            // MQTT 3.1.1 has no refusal: the client resends what it has
            // no acknowledgement for after reconnecting.
            session.close(CloseReason::StorageFailed);
            ctx.give_write_buffer(buf);
            return true;
        }
        if buf.is_empty() {
            // Stopped at an acknowledgement the gate does not cover yet.
            ctx.give_write_buffer(buf);
            continue;
        }
        ctx.record_latency(&born);
        born.clear();
        // A journaled session: the packet ids this batch gave, and the
        // PUBRELs it owes, are in the log before the client sees them, so
        // that a restart resends each PUBLISH with its id and DUP, never
        // under a new id (QoS 2 exactly once across a crash).
        let log = session
            .is_journaled()
            .then(|| session.journal.borrow().as_ref().map(|j| j.log.clone()))
            .flatten();
        if let Some(log) = log {
            let at = log.appended();
            if log.durable() < at {
                // A failing log costs that promise only: deliver anyway.
                let _ = log.wait_durable(at).await;
            }
        }
        // A client that stopped reading must not hold the writer once its
        // session is closed (slow consumer, protocol error, …).
        let mut written = 0;
        let write = async { Some(write_counted(&*stream, &buf, &mut written).await) };
        let abandon = async {
            poll_fn(|cx| session.poll_abandon(cx)).await;
            None
        };
        let mut outcome = futures_lite::future::or(write, abandon).await;
        super::stats::Counters::add(&ctx.counters.bytes_out, written as u64);
        if outcome.is_none() && written == 0 {
            // Abandoned before a byte of this batch left: still between
            // two packets.
            ctx.give_write_buffer(buf);
            return true;
        }
        if outcome.is_none()
            && session.sends_last_words()
            && session.close_reason() == Some(CloseReason::SlowConsumer)
        {
            // The client is owed its last words ('-ERR Slow Consumer',
            // DISCONNECT 0x97) after a whole packet: give the batch begun a
            // short, bounded chance.
            let rest = async { Some(send_all(&*stream, &buf[written..]).await) };
            let bound = async {
                glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
                None
            };
            if let Some(Ok(())) = futures_lite::future::or(rest, bound).await {
                ctx.give_write_buffer(buf);
                return true;
            }
            outcome = None;
        }
        match outcome {
            Some(Ok(())) => {}
            Some(Err(_)) => {
                session.close(CloseReason::WriteError);
                ctx.give_write_buffer(buf);
                return false;
            }
            None => {
                ctx.give_write_buffer(buf);
                return false;
            }
        }
        ctx.give_write_buffer(buf);
    }
    true
}
