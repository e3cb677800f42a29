//! An in-memory transport: two bounded pipes, one each way, for running a
//! connection driver with no socket (its tests; later, an in-process
//! client). Writes block (Pending) while the peer's pipe is full, as a TCP
//! send buffer would, so backpressure and slow consumers behave as on a
//! socket.
//!
//! Owns: the two pipes of one pair. Must not touch: protocols, sessions.
//! Single-threaded (`Rc`): both ends live on one executor.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::transport::Transport;

struct Pipe {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// The writing end is gone or half-closed: the reader sees the end of
    /// the stream once the bytes are drained.
    write_closed: bool,
    /// The reading end is gone: writes fail.
    read_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Pipe {
    fn new(capacity: usize) -> Rc<RefCell<Pipe>> {
        Rc::new(RefCell::new(Pipe {
            bytes: VecDeque::with_capacity(capacity),
            capacity,
            write_closed: false,
            read_closed: false,
            reader: None,
            writer: None,
        }))
    }
}

/// One end of an in-memory connection.
pub struct MemoryEnd {
    incoming: Rc<RefCell<Pipe>>,
    outgoing: Rc<RefCell<Pipe>>,
    /// `reset_on_close` was called (observable by tests).
    pub reset: Cell<bool>,
}

/// Two connected ends; each pipe holds at most `capacity` bytes.
pub fn pair(capacity: usize) -> (MemoryEnd, MemoryEnd) {
    let (a, b) = (Pipe::new(capacity), Pipe::new(capacity));
    (
        MemoryEnd {
            incoming: a.clone(),
            outgoing: b.clone(),
            reset: Cell::new(false),
        },
        MemoryEnd {
            incoming: b,
            outgoing: a,
            reset: Cell::new(false),
        },
    )
}

impl MemoryEnd {
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = poll_fn(|cx| self.poll_write(cx, buf)).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Bytes waiting to be read at this end.
    pub fn readable(&self) -> usize {
        self.incoming.borrow().bytes.len()
    }
}

impl Transport for MemoryEnd {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut pipe = self.incoming.borrow_mut();
        if pipe.bytes.is_empty() {
            if pipe.write_closed {
                return Poll::Ready(Ok(0));
            }
            pipe.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(pipe.bytes.len());
        for (to, from) in buf[..n].iter_mut().zip(pipe.bytes.drain(..n)) {
            *to = from;
        }
        if let Some(w) = pipe.writer.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut pipe = self.outgoing.borrow_mut();
        if pipe.read_closed || pipe.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = pipe.capacity - pipe.bytes.len();
        if room == 0 {
            pipe.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        pipe.bytes.extend(&buf[..n]);
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn shutdown_write(&self) {
        let mut pipe = self.outgoing.borrow_mut();
        pipe.write_closed = true;
        if let Some(w) = pipe.reader.take() {
            w.wake();
        }
    }

    fn reset_on_close(&self) {
        self.reset.set(true);
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}

impl Drop for MemoryEnd {
    fn drop(&mut self) {
        self.shutdown_write();
        let mut pipe = self.incoming.borrow_mut();
        pipe.read_closed = true;
        if let Some(w) = pipe.writer.take() {
            w.wake();
        }
    }
}
