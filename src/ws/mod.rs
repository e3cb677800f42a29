//! WebSocket (RFC 6455), sans-IO: the opening handshake ([`handshake`])
//! and the frame codec ([`frame`]), over byte buffers, with no socket, no
//! executor and no clock. The transport (`shard/transport_ws.rs`) moves
//! the bytes; the HTTP edge reuses both halves for its WebSocket subscribe.
//!
//! Owns: the HTTP/1.1 Upgrade request's checks and the 101 answer (or the
//! precise refusal), frame headers, masking, fragmentation, control
//! frames, close codes, and the frame and message size limits. Must not
//! touch: what the messages carry (MQTT packets, NATS lines, events),
//! sockets, timers.
//!
//! Server role only: a client's frames must be masked (an unmasked one is
//! a protocol error, close 1002), the server's are not. MQTT over
//! WebSocket is a byte stream: one MQTT packet may span frames and
//! messages and one message may hold several packets, so the decoder
//! hands out payload bytes as they arrive, never a whole message; memory
//! per connection is the transport's read buffer, not the message size.
//!
//! permessage-deflate (RFC 7692) is not offered: the request's
//! `Sec-WebSocket-Extensions` is ignored and the answer names none, which
//! every client accepts. Offering it would cost a zlib context each way per
//! connection (~300 KiB with the default window, the reason mosquitto and
//! nats-server leave it off by default) and a copy and a compression of
//! every event, where MQTT and NATS payloads are mostly small or already
//! compressed; the size win does not pay for the latency and memory here.

pub mod frame;
pub mod handshake;
