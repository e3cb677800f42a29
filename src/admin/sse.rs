//! Server-sent event streams of the admin endpoint (`GET /console/events`):
//! the framing of an event (`event:`/`data:` lines, `: comment` pings) and
//! the per-stream outbox the admin thread's poll loop writes from.
//!
//! Owns: each open stream's bytes not yet taken by its client, written
//! with non-blocking writes whenever poll says the socket has room (a
//! partial write keeps the rest for the next turn). Bounds: at most
//! `bytes_max` bytes waiting (`admin.console_stream_bytes_max`); an event
//! that would go beyond closes the stream ([`Overflow`]): a client that
//! does not read never holds more than that, nor slows the others.
//!
//! Why hand-written: the format is three line kinds (WHATWG HTML §9.2),
//! and the admin server is our own (see `http`).

use std::io::{self, Write};

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

    /// Queues `bytes`, unless the stream would then hold more than its
    /// bound.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let pending = self.pending() + bytes.len();
        if pending > self.bytes_max {
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
