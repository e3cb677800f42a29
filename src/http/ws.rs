//! WebSocket subscribe on the HTTP edge: the upgrade's checks for
//! `GET /v1/subscribe` and what the connection does after its 101, as a
//! mode of the HTTP machine (`session`), sans-IO.
//!
//! After the upgrade the connection only writes: each event is one text
//! message (`deliver::write_ws`, rendered by the mailbox), and a ping
//! every `http.sse_heartbeat_ms` keeps proxies from closing a quiet
//! stream. What the client sends is decoded with `ws::frame` (a server's
//! decoder: unmasked frames are refused, close 1002): a ping is answered
//! with a pong, a pong is ignored, a close is answered with a close 1000
//! and the connection ends, and a data message (text or binary) is refused
//! with close 1003: a subscribe stream takes nothing from its client, so
//! no message is ever buffered and no message size limit applies (memory
//! per connection is one control frame, copied to the stack to unmask it).
//!
//! Owns: the upgrade's validation (through `ws::handshake`) and the
//! client-frame rules of an upgraded stream. Must not touch: the router
//! and security (the glue's), the events' bytes (`deliver`).

use smallvec::SmallVec;

use super::request;
use crate::session::{Actions, CloseReason};
use crate::ws::frame::{
    self, CloseCode, Decoder, Item, Opcode, Role, CONTROL_PAYLOAD_BYTES_MAX, HEADER_BYTES_MAX,
};
use crate::ws::handshake::{self, Expect, Refusal, Upgrade};

/// Whether a request asks for a WebSocket (`Upgrade: websocket`).
pub fn asks_upgrade(req: &request::Request<'_>) -> bool {
    req.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("upgrade")
            && value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// Checks an upgrade request as the WebSocket listeners do
/// (`ws::handshake::validate`: Connection, version 13 — else 426 —, the
/// key); no subprotocol is spoken.
pub fn upgrade(req: &request::Request<'_>, head_bytes_max: usize) -> Result<Upgrade, Refusal> {
    let mut headers: SmallVec<[httparse::Header<'_>; 16]> = req
        .headers
        .iter()
        .map(|(name, value)| httparse::Header { name, value })
        .collect();
    let parsed = httparse::Request {
        method: Some(req.method),
        path: Some(req.path),
        version: Some(req.minor_version),
        headers: &mut headers,
    };
    let expect = Expect {
        path: None,
        subprotocols: &[],
        subprotocol_required: false,
        head_bytes_max,
    };
    handshake::validate(&parsed, 0, &expect)
}

/// An upgraded stream's reading side.
#[derive(Debug)]
pub struct WsStream {
    decoder: Decoder,
    /// A close frame went out: nothing more is read or written.
    closed: bool,
}

/// A client's data is refused at its first frame header, so the
/// decoder's size limits never apply (see the module comment).
const NO_DATA: frame::Limits = frame::Limits {
    frame_bytes_max: u64::MAX >> 1,
    message_bytes_max: u64::MAX >> 1,
    text_allowed: false,
};

/// The largest frame the stream reads whole: a control frame.
const CONTROL_FRAME_MAX: usize = HEADER_BYTES_MAX + CONTROL_PAYLOAD_BYTES_MAX;

impl Default for WsStream {
    fn default() -> Self {
        WsStream {
            decoder: Decoder::new(Role::Server, NO_DATA),
            closed: false,
        }
    }
}

// Generic over the session's request type: this mode only writes and
// closes, and naming `session::Request` would make an import cycle
// (`session` drives this module).
impl WsStream {
    /// Reads the client's next frame from `buf`: the bytes used, or None
    /// when more are needed.
    pub fn feed<R>(&mut self, buf: &[u8], out: &mut Actions<R>) -> Option<usize> {
        if self.closed {
            return (!buf.is_empty()).then_some(buf.len());
        }
        // Unmasked in place: a copy, at most one control frame (the
        // first data frame header ends the stream).
        let mut frame = [0u8; CONTROL_FRAME_MAX];
        let n = buf.len().min(CONTROL_FRAME_MAX);
        frame[..n].copy_from_slice(&buf[..n]);
        let step = match self.decoder.decode(&mut frame[..n]) {
            Ok(step) => step,
            Err(e) => {
                self.close(out, e.close_code(), &e.to_string());
                out.close(CloseReason::ProtocolError);
                return Some(buf.len());
            }
        };
        match step.item {
            Some(Item::Data { .. }) => {}
            None if step.consumed == 0 => return None,
            None if self.decoder.between_frames() => return Some(step.consumed),
            None => {}
            Some(Item::Ping(range)) => {
                out.write(|b| frame::encode(b, Opcode::Pong, &frame[range]));
                return Some(step.consumed);
            }
            Some(Item::Pong(_)) => return Some(step.consumed),
            Some(Item::Close { .. }) => {
                self.close(out, CloseCode::NORMAL, "");
                out.close(CloseReason::ClientDisconnect);
                return Some(buf.len());
            }
        }
        // A data frame began (its payload, or only its header, is here).
        self.close(
            out,
            CloseCode::UNSUPPORTED_DATA,
            "a subscribe stream takes no messages",
        );
        out.close(CloseReason::ProtocolError);
        Some(buf.len())
    }

    /// A quiet stream's keep-alive.
    pub fn heartbeat<R>(&self, out: &mut Actions<R>) {
        if !self.closed {
            out.write(|b| frame::encode(b, Opcode::Ping, b""));
        }
    }

    /// The connection ends for `reason`, decided elsewhere (shutdown, a
    /// slow consumer, a revoked user): a close frame says so, unless one
    /// went out already or the socket is gone.
    pub fn closing<R>(&mut self, reason: CloseReason, out: &mut Actions<R>) {
        let code = match reason {
            CloseReason::PeerClosed | CloseReason::ReadError | CloseReason::WriteError => return,
            CloseReason::ServerShutdown => CloseCode::GOING_AWAY,
            // A slow consumer, a revoked user, a takeover.
            _ => CloseCode::POLICY_VIOLATION,
        };
        if !self.closed {
            self.close(out, code, reason.label());
        }
    }

    fn close<R>(&mut self, out: &mut Actions<R>, code: CloseCode, reason: &str) {
        self.closed = true;
        out.write(|b| frame::encode_close(b, code, reason));
    }
}
