//! Server-sent event streams of the admin endpoint (`GET /console/events`):
//! the framing of an event (`event:`/`data:` lines, `: comment` pings) and
//! the per-stream outbox the admin thread's poll loop writes from.
//!
//! Owns: each open stream's socket ([`Stream`]) and its bytes not yet
//! taken by its client, written with non-blocking writes whenever poll
//! says the socket has room (a partial write keeps the rest for the next
//! turn). An SSE client sends nothing after its request: a byte from it
//! closes its stream (reading and dropping would keep poll's POLLIN set
//! and spin the admin thread for as long as the client sends). Bounds: at
//! most `bytes_max` bytes of backlog (`admin.console_stream_bytes_max`):
//! an event that would go beyond closes the stream ([`Overflow`]), so a
//! client that does not read never holds more than that, nor slows the
//! others; an event into an empty outbox is always taken (one state may
//! be larger than the bound, and must not close every stream).
//!
//! Why hand-written: the format is three line kinds (WHATWG HTML §9.2),
//! and the admin server is our own (see `http`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};

/// The first bytes of every stream: the client's reconnect delay, and a
/// comment so that it sees the stream open at once.
pub const PREAMBLE: &[u8] = b"retry: 2000\n: ping\n\n";
/// A keep-alive comment.
pub const PING: &[u8] = b": ping\n\n";

/// Frames one event. `data` is split into one `data:` line per line (the
/// client joins them back with `\n`); a trailing CR is dropped.
pub fn event(name: &str, data: &str) -> Vec<u8> {
    debug_assert!(!name.contains(['\n', '\r']));
    let mut out = Vec::with_capacity(data.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The stream's client does not take its bytes: over the bound.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow {
    pub pending: usize,
}

/// Bytes waiting for one stream's socket.
#[derive(Debug)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    bytes_max: usize,
}

impl Outbox {
    pub fn new(bytes_max: usize) -> Self {
        Outbox {
            buf: Vec::new(),
            sent: 0,
            bytes_max,
        }
    }

    /// Bytes waiting.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Queues `bytes`, unless a backlog is waiting and the stream would
    /// then hold more than its bound (into an empty outbox, always).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let pending = self.pending() + bytes.len();
        if pending > self.bytes_max && self.pending() > 0 {
            return Err(Overflow { pending });
        }
        if self.sent > 0 && self.sent >= self.buf.len() / 2 {
            // Compact before growing: the written head is dead.
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes what the socket takes without blocking (`to` must be
    /// non-blocking); Ok once it would block or all is written.
    pub fn flush(&mut self, to: &mut impl Write) -> io::Result<()> {
        while self.sent < self.buf.len() {
            match to.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            if self.buf.capacity() > 64 * 1024 {
                // A burst is over; do not keep its buffer per stream.
                self.buf.shrink_to(64 * 1024);
            }
        }
        Ok(())
    }
}

/// An open stream: its socket (non-blocking) and what waits for it.
pub struct Stream {
    socket: TcpStream,
    out: Outbox,
}

impl Stream {
    /// `socket` must be non-blocking.
    pub fn new(socket: TcpStream, bytes_max: usize) -> Self {
        Stream {
            socket,
            out: Outbox::new(bytes_max),
        }
    }

    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// The stream's turn after poll: writes what its socket takes. None:
    /// the stream is over (the client went, sent something, or an error).
    pub fn turn(mut self, flags: nix::poll::PollFlags) -> Option<Stream> {
        use nix::poll::PollFlags;
        if flags.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return None;
        }
        if flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            let mut scratch = [0u8; 1];
            match self.socket.read(&mut scratch) {
                Ok(0) => return None,
                Ok(_) => {
                    tracing::debug!(
                        "admin: stream closed: its client sent bytes after its request"
                    );
                    return None;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
        if flags.contains(PollFlags::POLLOUT) {
            if let Err(e) = self.out.flush(&mut self.socket) {
                tracing::debug!(error = %e, "admin: stream ended");
                return None;
            }
        }
        Some(self)
    }

    /// Queues `bytes` and writes what the socket takes; Err when the
    /// stream must end.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Ended> {
        if let Err(over) = self.out.push(bytes) {
            tracing::debug!(
                pending = over.pending,
                "admin: stream closed: its client does not read \
                 (admin.console_stream_bytes_max)"
            );
            return Err(Ended::Slow);
        }
        self.out.flush(&mut self.socket).map_err(|_| Ended::Error)
    }
}

/// Why a stream ended on a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Over `admin.console_stream_bytes_max` waiting.
    Slow,
    /// The socket failed (the client went).
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `room` bytes per call, and `budget` in
    /// all before it would block.
    struct Slow {
        got: Vec<u8>,
        room: usize,
        budget: usize,
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.room).min(self.budget);
            self.budget -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn framing() {
        assert_eq!(
            event("state", "{\"a\":1}"),
            b"event: state\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(event("x", "a\r\nb"), b"event: x\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn partial_writes_keep_order_and_resume() {
        let mut out = Outbox::new(1000);
        let mut sock = Slow {
            got: Vec::new(),
            room: 3,
            budget: 7,
        };
        out.push(b"0123456789").unwrap();
        out.flush(&mut sock).unwrap();
        assert_eq!(sock.got, b"0123456");
        assert_eq!(out.pending(), 3);
        out.push(b"abc").unwrap();
        sock.budget = 100;
        out.flush(&mut sock).unwrap();
        assert_eq!(sock.got, b"0123456789abc");
        assert_eq!(out.pending(), 0);
        // Compaction keeps what is pending.
        sock.budget = 2;
        out.push(b"xyz").unwrap();
        out.flush(&mut sock).unwrap();
        out.push(b"12").unwrap();
        sock.budget = 100;
        out.flush(&mut sock).unwrap();
        assert_eq!(sock.got, b"0123456789abcxyz12");
    }

    #[test]
    fn bounded_by_what_waits() {
        let mut out = Outbox::new(10);
        out.push(b"12345678").unwrap();
        assert_eq!(out.push(b"abc"), Err(Overflow { pending: 11 }));
        assert_eq!(out.pending(), 8, "a refused push queues nothing");
        let mut sock = Slow {
            got: Vec::new(),
            room: 100,
            budget: 5,
        };
        out.flush(&mut sock).unwrap();
        out.push(b"abcdefg").unwrap();
        assert_eq!(out.pending(), 10);
    }

    /// One event larger than the bound still goes out on an idle stream
    /// (a state grows with the mesh and the topics); the bound applies to
    /// a backlog.
    #[test]
    fn an_empty_outbox_takes_one_event_of_any_size() {
        let mut out = Outbox::new(10);
        out.push(&[b'x'; 25]).unwrap();
        assert_eq!(out.pending(), 25);
        assert_eq!(out.push(b"y"), Err(Overflow { pending: 26 }));
        let mut sock = Slow {
            got: Vec::new(),
            room: 100,
            budget: 100,
        };
        out.flush(&mut sock).unwrap();
        out.push(&[b'z'; 40]).unwrap();
    }

    /// A client that sends after its request is closed at once (its bytes
    /// would keep POLLIN set and the admin loop turning without a pause).
    #[test]
    fn a_stream_whose_client_sends_is_closed() {
        use nix::poll::PollFlags;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let s = Stream::new(server, 1024);
        // Nothing sent: the stream goes on.
        let s = s.turn(PollFlags::POLLIN).expect("no byte yet: open");
        client.write_all(b"x").unwrap();
        // A bounded number of turns (the byte may take a moment to arrive
        // on loopback), not a clock.
        let mut s = Some(s);
        for _ in 0..2000 {
            let Some(open) = s.take() else { break };
            s = open.turn(PollFlags::POLLIN);
            if s.is_some() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        assert!(s.is_none(), "not closed after 2000 turns");
        // The server's end is closed: the client reads its end.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        assert!(client.read_to_end(&mut rest).is_ok());
    }

    #[test]
    fn errors_other_than_would_block_end_the_stream() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Outbox::new(10);
        out.push(b"a").unwrap();
        assert!(out.flush(&mut Broken).is_err());
    }
}
