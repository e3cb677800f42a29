//! WebSocket on a client connection: [`Ws`] wraps another [`Transport`]
//! (plain TCP, or TLS for wss) and is one itself, so the MQTT and NATS
//! sessions and the driver run over it unchanged. The codec is
//! `crate::ws` (sans-IO); this file only moves bytes through it.
//!
//! Reading: frames are decoded from the transport's own read buffer; the
//! payload bytes of data frames are copied to the driver's buffer as they
//! arrive (a packet may span frames and messages, a message may hold
//! several packets: the driver sees one byte stream). Control frames are
//! handled here: a ping queues its pong (only the latest, as §5.5.3
//! allows), a close is answered with the same code and ends the stream, a
//! protocol error queues the close frame with its code (1002, 1003, 1007,
//! 1009) and fails the read, which closes the connection as any read error
//! does.
//!
//! Writing: each write becomes one binary frame (at most
//! `write_frame_bytes_max` of the batch; server frames are unmasked),
//! encoded with its header into one buffer so that a batch is one write
//! to the socket. That buffer only ever holds whole frames, and a pong or
//! close is appended only once it is drained: a control frame never lands
//! inside a half-written data frame, whichever of the reader and writer
//! tasks (both share the transport by `&self`) queued it.
//!
//! Owns: framing on one connection. Must not touch: what the bytes mean
//! (sessions), the handshake's rules (`ws::handshake`), accept
//! (`ws_accept`). Costs: a read buffer of `read_buffer_bytes` per
//! connection and a write buffer that grows to the largest frame written
//! (≤ `write_frame_bytes_max` + 14 + a control frame); one copy of every
//! byte each way, no allocation per event once the buffers have grown.
//! Hot path: rerun `weft bench --ws` after changing it.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::task::{Context, Poll, Waker};

use super::transport::Transport;
use crate::ws::frame::{self, CloseCode, Decoded, Decoder, Item, Opcode, Role};

/// The limits of one WebSocket connection (from `[mqtt.ws]` / `[nats.ws]`).
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub frame: frame::Limits,
    pub read_buffer_bytes: usize,
    pub write_frame_bytes_max: usize,
}

/// Control frames one read handles before it yields (a peer that sends
/// only pings must not hold the shard).
const CONTROL_FRAMES_PER_READ_MAX: usize = 64;

/// One WebSocket connection over `T` (see the module comment).
pub struct Ws<T: Transport> {
    inner: T,
    read: RefCell<ReadSide>,
    write: RefCell<WriteSide>,
    /// The writer task holds bytes in `write` that it will push out itself
    /// (it is between its writes and its flush, or waits on the socket):
    /// the reader must not poll the socket's write side then, which would
    /// take the writer's place as the one woken (glommio keeps one write
    /// waiter per socket).
    writer_owes: Cell<bool>,
    write_frame_bytes_max: usize,
}

struct ReadSide {
    decoder: Decoder,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Decoded payload bytes in `buf` not yet handed to the reader.
    data: Range<usize>,
    state: ReadState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// The peer's close came (answered), or the stream ended.
    Ended,
    /// The peer broke the protocol: the close frame is queued.
    Failed(frame::DecodeError),
}

struct WriteSide {
    /// Whole frames waiting for the inner transport, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// A control frame waiting for `out` to drain.
    control: Option<Control>,
    /// A close frame was queued: nothing is written after it.
    closing: bool,
}

#[derive(Clone, Copy)]
enum Control {
    Pong {
        payload: [u8; frame::CONTROL_PAYLOAD_BYTES_MAX],
        len: u8,
    },
    Close(CloseCode),
}

impl WriteSide {
    fn pending(&self) -> bool {
        self.sent < self.out.len() || self.control.is_some()
    }

    /// Pushes `out` to `inner`, then the waiting control frame.
    fn drain<T: Transport>(&mut self, inner: &T, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while self.sent < self.out.len() {
                match inner.poll_write(cx, &self.out[self.sent..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => self.sent += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.out.clear();
            self.sent = 0;
            match self.control.take() {
                Some(Control::Pong { payload, len }) => {
                    frame::encode(&mut self.out, Opcode::Pong, &payload[..len as usize])
                }
                Some(Control::Close(code)) => {
                    frame::encode_close(&mut self.out, code, close_reason(code))
                }
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// The reason a close frame of ours gives (one short phrase per code).
fn close_reason(code: CloseCode) -> &'static str {
    match code {
        CloseCode::PROTOCOL_ERROR => "protocol error",
        CloseCode::UNSUPPORTED_DATA => "binary frames only",
        CloseCode::INVALID_PAYLOAD => "text not UTF-8",
        CloseCode::MESSAGE_TOO_BIG => "frame or message too big",
        _ => "",
    }
}

impl<T: Transport> Ws<T> {
    /// A WebSocket connection over `inner`, after the handshake; `early`
    /// holds what the client sent after its request head (its first
    /// frames; the buffer is made to hold them all).
    pub fn new(inner: T, limits: WsLimits, early: &[u8]) -> Ws<T> {
        // Room for a whole control frame after a partial header, always.
        let floor = 2 * (frame::HEADER_BYTES_MAX + frame::CONTROL_PAYLOAD_BYTES_MAX);
        let size = limits.read_buffer_bytes.max(early.len()).max(floor);
        let mut buf = vec![0u8; size].into_boxed_slice();
        buf[..early.len()].copy_from_slice(early);
        Ws {
            inner,
            read: RefCell::new(ReadSide {
                decoder: Decoder::new(Role::Server, limits.frame),
                buf,
                start: 0,
                end: early.len(),
                data: 0..0,
                state: ReadState::Open,
            }),
            write: RefCell::new(WriteSide {
                out: Vec::new(),
                sent: 0,
                control: None,
                closing: false,
            }),
            writer_owes: Cell::new(false),
            write_frame_bytes_max: limits.write_frame_bytes_max,
        }
    }

    /// Queues a control frame: a close replaces a waiting pong and ends
    /// the writes; a pong replaces an older one.
    fn queue_control(&self, control: Control) {
        let mut w = self.write.borrow_mut();
        if w.closing {
            return;
        }
        if let Control::Close(_) = control {
            w.closing = true;
        }
        w.control = Some(control);
    }

    /// Pushes queued control frames from the reader's side, unless the
    /// writer owes the push (see `writer_owes`). A socket that takes
    /// nothing now wakes the reader, which tries again.
    fn push_control(&self, cx: &mut Context<'_>) {
        if self.writer_owes.get() {
            return;
        }
        let mut w = self.write.borrow_mut();
        if !w.pending() {
            return;
        }
        // An error here surfaces on the next read or write.
        if let Poll::Ready(Ok(())) = w.drain(&self.inner, cx) {
            let _ = self.inner.poll_flush(cx);
        }
    }

    /// The best effort at a close frame when the connection ends without
    /// one: what the socket takes now, without waiting.
    fn last_push(&self) {
        self.queue_control(Control::Close(CloseCode::NORMAL));
        let mut cx = Context::from_waker(Waker::noop());
        let mut w = self.write.borrow_mut();
        if let Poll::Ready(Ok(())) = w.drain(&self.inner, &mut cx) {
            let _ = self.inner.poll_flush(&mut cx);
        }
    }
}

impl<T: Transport> Transport for Ws<T> {
    fn poll_read(&self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        self.push_control(cx);
        let mut r = self.read.borrow_mut();
        let r = &mut *r;
        let mut controls = 0;
        loop {
            if !r.data.is_empty() {
                let n = r.data.len().min(out.len());
                out[..n].copy_from_slice(&r.buf[r.data.start..r.data.start + n]);
                r.data.start += n;
                return Poll::Ready(Ok(n));
            }
            match r.state {
                ReadState::Open => {}
                ReadState::Ended => return Poll::Ready(Ok(0)),
                ReadState::Failed(e) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                }
            }
            match r.decoder.decode(&mut r.buf[r.start..r.end]) {
                Err(e) => {
                    r.state = ReadState::Failed(e);
                    self.queue_control(Control::Close(e.close_code()));
                    self.push_control(cx);
                }
                Ok(Decoded {
                    consumed: 0,
                    item: None,
                }) => {
                    if r.start == r.end {
                        r.start = 0;
                        r.end = 0;
                    } else if r.end == r.buf.len() {
                        r.buf.copy_within(r.start..r.end, 0);
                        r.end -= r.start;
                        r.start = 0;
                    }
                    debug_assert!(r.end < r.buf.len(), "a frame header or control frame fits");
                    match self.inner.poll_read(cx, &mut r.buf[r.end..]) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(0)) => {
                            // A truncated frame then the end: just the end.
                            r.state = ReadState::Ended;
                        }
                        Poll::Ready(Ok(n)) => r.end += n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    }
                }
                Ok(Decoded { consumed, item }) => {
                    let base = r.start;
                    r.start += consumed;
                    match item {
                        None => {}
                        Some(Item::Data { range, .. }) => {
                            r.data = base + range.start..base + range.end;
                        }
                        Some(Item::Pong(_)) => controls += 1,
                        Some(Item::Ping(range)) => {
                            controls += 1;
                            let mut payload = [0u8; frame::CONTROL_PAYLOAD_BYTES_MAX];
                            let len = range.len();
                            payload[..len]
                                .copy_from_slice(&r.buf[base + range.start..base + range.end]);
                            self.queue_control(Control::Pong {
                                payload,
                                len: len as u8,
                            });
                            self.push_control(cx);
                        }
                        Some(Item::Close { code, .. }) => {
                            // Answered with the peer's code (§5.5.1); an
                            // empty close is answered 1000.
                            self.queue_control(Control::Close(code.unwrap_or(CloseCode::NORMAL)));
                            self.push_control(cx);
                            r.state = ReadState::Ended;
                        }
                    }
                    if controls >= CONTROL_FRAMES_PER_READ_MAX && r.data.is_empty() {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.writer_owes.set(true);
        let mut w = self.write.borrow_mut();
        match w.drain(&self.inner, cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if w.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(self.write_frame_bytes_max);
        frame::encode(&mut w.out, Opcode::Binary, &buf[..n]);
        // Out at once, as a plain socket would; what the socket does not
        // take now goes with the next write or the flush.
        if let Poll::Ready(Err(e)) = w.drain(&self.inner, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer_owes.set(true);
        match self.write.borrow_mut().drain(&self.inner, cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match self.inner.poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.writer_owes.set(false);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn shutdown_write(&self) {
        // The close frame before the TCP (or TLS) half-close.
        self.last_push();
        self.inner.shutdown_write();
    }

    fn reset_on_close(&self) {
        self.inner.reset_on_close();
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }

    fn peer_identity(&self) -> Option<std::rc::Rc<str>> {
        self.inner.peer_identity()
    }
}

impl<T: Transport> Drop for Ws<T> {
    /// A connection closed by the server (keep-alive, takeover, shutdown)
    /// tells a browser why with a close frame, not a bare TCP close
    /// (1006 there): best effort, never waiting.
    fn drop(&mut self) {
        self.last_push();
    }
}
