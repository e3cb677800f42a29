//! The bench client's WebSocket (`weft bench --ws`): the upgrade, masked
//! binary frames out (one per write), server frames decoded in, over a
//! blocking TCP socket, with the codec of `crate::ws`. It lets the same
//! load tool measure MQTT or NATS over WebSocket against weft and against
//! another broker's WebSocket listener (mosquitto's `listener 8080` +
//! `protocol websockets`).
//!
//! Owns: the client side of one WebSocket connection. Must not touch:
//! protocol parsing (`wire`). Costs per write: one frame header and a
//! masked copy of the bytes, into a reused buffer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::time::Duration;

use base64::Engine as _;

use crate::ws::frame::{self, Decoder, Item, Opcode, Role};
use crate::ws::handshake::accept_key;

/// The largest response head to the upgrade accepted.
const RESPONSE_HEAD_BYTES_MAX: usize = 16 * 1024;

pub struct WsStream {
    tcp: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Decoded payload bytes in `buf` not yet read.
    data: Range<usize>,
    out: Vec<u8>,
    /// xorshift state for the masks (RFC 6455 wants them unpredictable to
    /// the network; a bench needs only that they vary).
    mask_state: u32,
    closed: bool,
}

impl WsStream {
    /// Connects to `url` (`HOST:PORT/PATH`, the part after `ws://`) and
    /// upgrades, offering the `mqtt` subprotocol when `mqtt`.
    pub fn connect(url: &str, mqtt: bool, timeout: Duration) -> io::Result<WsStream> {
        let (host, path) = match url.find('/') {
            Some(i) => (&url[..i], &url[i..]),
            None => (url, "/"),
        };
        let mut tcp = TcpStream::connect(host)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).map_err(io::Error::other)?;
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let protocol = if mqtt {
            "Sec-WebSocket-Protocol: mqtt\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        );
        tcp.write_all(request.as_bytes())?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut end = 0;
        let head_len = loop {
            if let Some(at) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if end >= RESPONSE_HEAD_BYTES_MAX {
                return Err(io::Error::other(
                    "WebSocket upgrade: response head too long",
                ));
            }
            let n = tcp.read(&mut buf[end..RESPONSE_HEAD_BYTES_MAX])?;
            if n == 0 {
                return Err(io::Error::other(
                    "WebSocket upgrade: closed before a response",
                ));
            }
            end += n;
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            let body = String::from_utf8_lossy(&buf[head_len..end]);
            return Err(io::Error::other(format!(
                "WebSocket upgrade refused: {status} {}",
                body.trim()
            )));
        }
        let accept = accept_key(key.as_bytes());
        let accepted = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("sec-websocket-accept")
                    && value.trim().as_bytes() == accept
            })
        });
        if !accepted {
            return Err(io::Error::other(
                "WebSocket upgrade: wrong Sec-WebSocket-Accept",
            ));
        }
        let limits = frame::Limits {
            frame_bytes_max: u64::MAX >> 1,
            message_bytes_max: u64::MAX >> 1,
            text_allowed: true,
        };
        Ok(WsStream {
            tcp,
            decoder: Decoder::new(Role::Client, limits),
            buf,
            start: head_len,
            end,
            data: 0..0,
            out: Vec::with_capacity(64 * 1024),
            mask_state: u32::from_ne_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]) | 1,
            closed: false,
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Decodes what is buffered, without reading: whether data is ready.
    pub fn ready(&mut self) -> io::Result<bool> {
        while self.data.is_empty() && !self.closed {
            if !self.step()? {
                return Ok(false);
            }
        }
        Ok(!self.data.is_empty() || self.closed)
    }

    /// One decode step over the buffered bytes; false when more are needed.
    fn step(&mut self) -> io::Result<bool> {
        let step = self
            .decoder
            .decode(&mut self.buf[self.start..self.end])
            .map_err(io::Error::other)?;
        if step.consumed == 0 && step.item.is_none() {
            return Ok(false);
        }
        let base = self.start;
        self.start += step.consumed;
        match step.item {
            Some(Item::Data { range, .. }) => self.data = base + range.start..base + range.end,
            Some(Item::Ping(range)) => {
                let payload = self.buf[base + range.start..base + range.end].to_vec();
                self.send(Opcode::Pong, &payload)?;
            }
            Some(Item::Close { .. }) => self.closed = true,
            Some(Item::Pong(_)) | None => {}
        }
        Ok(true)
    }

    /// Reads into `out`: every payload byte already buffered (across as
    /// many frames as are decoded), else one read of the socket (not
    /// waiting when `now`), as a plain socket's read returns all it holds.
    /// Returning one frame per call instead made the subscriber's
    /// coalescing pause (it sleeps after a small read) run once per frame
    /// while the buffer held many: the client idled with data in hand,
    /// the server's socket filled, and the broker dropped QoS 0 messages.
    fn fill(&mut self, out: &mut [u8], now: bool) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.take_buffered(out)?;
            if n > 0 || self.closed {
                return Ok(n);
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 && self.buf.len() - self.end < self.buf.len() / 2 {
                // Only a partial frame is left here: move it to the front
                // so that the next read gets a large room, not a sliver.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = if now {
                self.tcp.set_nonblocking(true)?;
                let r = self.tcp.read(&mut self.buf[self.end..]);
                self.tcp.set_nonblocking(false)?;
                r?
            } else {
                self.tcp.read(&mut self.buf[self.end..])?
            };
            if n == 0 {
                return Ok(0);
            }
            self.end += n;
        }
    }

    /// Copies the decoded payload bytes in the buffer to `out`, decoding
    /// frame after frame until `out` is full or only a partial header is
    /// left; no socket read.
    fn take_buffered(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.data.is_empty() {
                if self.closed || !self.step()? {
                    break;
                }
                continue;
            }
            let k = self.data.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&self.buf[self.data.start..self.data.start + k]);
            self.data.start += k;
            n += k;
        }
        Ok(n)
    }

    /// A read that does not wait: `WouldBlock` when nothing is there.
    pub fn read_now(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.fill(out, true)
    }

    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_ne_bytes()
    }

    fn send(&mut self, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
        let mask = self.next_mask();
        self.out.clear();
        frame::encode_frame(&mut self.out, true, opcode, payload, Some(mask));
        self.tcp.write_all(&self.out)
    }
}

impl Read for WsStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.fill(out, false)
    }
}

impl Write for WsStream {
    /// One binary frame per write: the caller's batch stays one frame and
    /// one syscall, as over TCP.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(Opcode::Binary, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A client stream whose buffer already holds `wire` (as bytes read
    /// with the upgrade's response would), over a connected loopback
    /// socket that stays silent.
    fn client_holding(wire: &[u8]) -> (WsStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        buf[..wire.len()].copy_from_slice(wire);
        let limits = frame::Limits {
            frame_bytes_max: 1 << 20,
            message_bytes_max: 1 << 20,
            text_allowed: true,
        };
        let ws = WsStream {
            tcp,
            decoder: Decoder::new(Role::Client, limits),
            buf,
            start: 0,
            end: wire.len(),
            data: 0..0,
            out: Vec::new(),
            mask_state: 1,
            closed: false,
        };
        (ws, server)
    }

    /// Several frames already buffered come back in one read, as a plain
    /// socket's read returns all it holds: one frame per read made the
    /// subscriber pause after each (issue 14's 1 KiB WebSocket stall).
    #[test]
    fn one_read_returns_every_buffered_frame() {
        let mut wire = Vec::new();
        let payloads: [&[u8]; 3] = [b"first ", b"second ", b"third"];
        for p in payloads {
            frame::encode(&mut wire, Opcode::Binary, p);
        }
        // A partial header of a fourth frame: not data yet.
        wire.push(0x82);
        let (mut ws, _server) = client_holding(&wire);
        let mut out = [0u8; 64];
        let n = ws.read_now(&mut out).unwrap();
        assert_eq!(&out[..n], b"first second third");
        // Nothing more is buffered and the socket is silent.
        let e = ws.read_now(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    /// A read stops where `out` is full; the rest follows.
    #[test]
    fn a_short_read_leaves_the_rest_buffered() {
        let mut wire = Vec::new();
        frame::encode(&mut wire, Opcode::Binary, b"abcd");
        frame::encode(&mut wire, Opcode::Binary, b"efgh");
        let (mut ws, _server) = client_holding(&wire);
        let mut out = [0u8; 6];
        let n = ws.read_now(&mut out).unwrap();
        assert_eq!(&out[..n], b"abcdef");
        let n = ws.read_now(&mut out).unwrap();
        assert_eq!(&out[..n], b"gh");
    }
}
