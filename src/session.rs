//! The seam between a protocol's session machine and the shard that runs it.
//!
//! A session machine (`mqtt::session`, `nats::session`, `mesh::session`)
//! holds one connection's protocol state and decides; it never does IO.
//! Its inputs are decoded packets, replies to its requests, and the current
//! time (`now`, an `Instant` the caller passes: tests pass a virtual one);
//! its outputs are [`Action`]s, in the order they must take effect:
//! bytes to write (built by the protocol's codec), requests to the router,
//! and a typed close. The connection driver in `shard/` reads, decodes,
//! feeds the machine, and carries the actions out — the same driver for
//! every protocol.
//!
//! Owns: the vocabulary shared by every machine and the driver. Must not
//! touch: sockets, executors, timers or the shard context; nothing here
//! allocates per packet (the action list and its byte buffer are reused).
//!
//! This file is the contract of issue #11; helpers refine it where the code
//! shows a better shape, and say so in their commits.

use std::time::Instant;

/// Why a connection closed: exactly one per disconnect, and the label of
/// its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    ClientDisconnect,
    /// The client closed the TCP connection without DISCONNECT.
    PeerClosed,
    ReadError,
    WriteError,
    KeepAliveTimeout,
    ConnectTimeout,
    /// Malformed packet or a rule of the protocol broken.
    ProtocolError,
    /// CONNECT refused with a non-zero CONNACK code.
    ConnectRefused,
    SlowConsumer,
    ServerShutdown,
    /// NATS: too many PINGs left unanswered.
    StaleConnection,
    /// Another connection took over this client id and started clean
    /// (or the session was not kept): the session ended with this
    /// connection.
    TakenOver,
    /// Another connection took over this client id and goes on with its
    /// session (MQTT Clean Start 0 on a kept session): the session did not
    /// end, so an MQTT 5 will is not sent (MQTT-3.1.3-9).
    TakenOverResumed,
    /// A configuration reload removed the session's user (or no longer
    /// lets it connect): MQTT 5 DISCONNECT 0x87, NATS `-ERR
    /// 'Authorization Violation'`.
    Revoked,
    /// Persistence: the log could not make an acknowledged event durable
    /// (disk full, IO error) and the protocol has no other answer (MQTT
    /// 3.1.1: the connection is closed).
    StorageFailed,
}

impl CloseReason {
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientDisconnect => "client_disconnect",
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::ReadError => "read_error",
            CloseReason::WriteError => "write_error",
            CloseReason::KeepAliveTimeout => "keep_alive_timeout",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::ConnectRefused => "connect_refused",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::StaleConnection => "stale_connection",
            CloseReason::TakenOver => "session_taken_over",
            CloseReason::TakenOverResumed => "session_taken_over_resumed",
            CloseReason::Revoked => "revoked",
            CloseReason::StorageFailed => "storage_failed",
        }
    }

    /// MQTT-3.1.2-8: the will is published unless the client said
    /// DISCONNECT. On shutdown weft does not publish wills: the other
    /// shards may already be gone, and the clients are not at fault. (A
    /// takeover that resumes the session keeps an MQTT 5 will back: the
    /// MQTT machine's rule, `mqtt::session::MqttSession::finish`.)
    pub fn publishes_will(self) -> bool {
        !matches!(
            self,
            CloseReason::ClientDisconnect | CloseReason::ServerShutdown
        )
    }

    /// Whether the writer flushes what is queued before closing.
    pub fn flushes(self) -> bool {
        matches!(self, CloseReason::ServerShutdown)
    }
}

/// Requests to the router are each protocol's own enum (`R` below:
/// `mqtt::session::Request`, `nats::session::Request`, …), defined in its
/// folder, so that this module depends on no protocol. The driver carries
/// requests out in order; one that needs an answer is answered by a later
/// call into the machine (e.g. `on_subscribed`), never by a return value,
/// so that the machine stays a pure function of its inputs. Typical
/// requests: publish an event (QoS 1: completed, backpressure included,
/// before the actions after it), store a retained message, a barrier
/// (every shard applied what this one sent) before an acknowledgement.
/// One step for the driver, in order.
///
/// `C`, the close reason, is a client's [`CloseReason`] by default; a link
/// session closes with its own (`mesh::session::LinkCloseReason`).
#[derive(Debug)]
pub enum Action<R, C = CloseReason> {
    /// Write `Actions::bytes[from..to]` to the client, queued behind the
    /// deliveries already queued (so acks and deliveries keep their order).
    Write {
        from: usize,
        to: usize,
    },
    Request(R),
    /// End the connection; the bytes written before it are its last words.
    Close(C),
}

/// The output of one machine call: actions in order, and the bytes their
/// writes refer to. Reused across calls by the driver (`clear`), so a
/// PUBACK costs no allocation.
#[derive(Debug)]
pub struct Actions<R, C = CloseReason> {
    pub bytes: Vec<u8>,
    /// A `Vec`, not a `SmallVec`: reused by the driver for the whole
    /// connection, it allocates once, and its per-packet pushes and reads
    /// skip the inline-or-heap branch.
    pub list: Vec<Action<R, C>>,
}

impl<R, C> Default for Actions<R, C> {
    fn default() -> Self {
        Actions {
            bytes: Vec::new(),
            list: Vec::new(),
        }
    }
}

impl<R, C: Copy> Actions<R, C> {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.list.clear();
    }

    /// Appends a frame: `encode` writes it at the end of `bytes`.
    pub fn write(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let from = self.bytes.len();
        encode(&mut self.bytes);
        let to = self.bytes.len();
        if to > from {
            // Consecutive writes merge into one.
            if let Some(Action::Write { to: end, .. }) = self.list.last_mut() {
                if *end == from {
                    *end = to;
                    return;
                }
            }
            self.list.push(Action::Write { from, to });
        }
    }

    pub fn request(&mut self, request: R) {
        self.list.push(Action::Request(request));
    }

    pub fn close(&mut self, reason: C) {
        self.list.push(Action::Close(reason));
    }

    /// The close this call decided, if any.
    pub fn closed(&self) -> Option<C> {
        self.list.iter().find_map(|a| match a {
            Action::Close(r) => Some(*r),
            _ => None,
        })
    }
}

/// Timers a machine wants: the driver calls the machine's `handle_timeout`
/// at the earliest deadline (within its timer resolution), never before.
pub trait Deadline {
    fn next_deadline(&self) -> Option<Instant>;
}

/// A protocol's session machine, as the connection driver (`shard::driver`)
/// runs it: bytes are decoded by the machine's codec, each packet is fed
/// in with the current time, and the actions come out in `out` (cleared
/// by the driver before each call). Every call is a pure function of the
/// machine's state and its arguments, so a test drives a machine with a
/// virtual clock and no socket.
///
/// Rules the driver relies on:
/// - writes followed by a `Close` in the same call are the connection's
///   last words: written after the packet the writer had begun, then the
///   connection closes (queued deliveries are dropped);
/// - a request answered by a later call (e.g. NATS `subscribed`) is the
///   last action of its call, so that the answer's actions (appended to
///   the same `out` by the protocol's glue) come right after it;
/// - after `handle_timeout(now)`, `next_deadline` is later than `now` (or
///   None): a timer is re-armed, never spun.
pub trait Machine: Deadline {
    /// Requests to the router, this protocol's own enum.
    type Request;
    /// A decoded packet, borrowing from the read buffer.
    type Packet<'a>;
    /// What makes bytes malformed (shown in the close's log line).
    type Malformed: std::fmt::Display;
    /// The protocol's name in log lines ("NATS", "MQTT").
    const NAME: &'static str;

    /// The first actions of a connection (NATS INFO); none by default.
    fn start(&mut self, _now: Instant, _out: &mut Actions<Self::Request>) {}

    /// One packet from the front of `buf` and the bytes it used; None when
    /// more bytes are needed. Refuses oversize packets from their header.
    #[allow(clippy::type_complexity)]
    fn decode<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<Option<(Self::Packet<'a>, usize)>, Self::Malformed>;

    /// The size of the packet begun at the front of `buf` when its header
    /// tells it (MQTT), else 0: the driver grows its read buffer to it.
    fn packet_len(&self, _buf: &[u8]) -> usize {
        0
    }

    fn handle(&mut self, packet: Self::Packet<'_>, now: Instant, out: &mut Actions<Self::Request>);

    /// Decodes one packet from the front of `buf` and handles it: the
    /// bytes it used, or None when more bytes are needed. What the driver
    /// calls per packet. A machine may override it to decode and handle in
    /// one place, so that a packet is matched where it was decoded instead
    /// of moved between calls (hundreds of bytes for MQTT 5's packets).
    #[inline]
    fn feed(
        &mut self,
        buf: &[u8],
        now: Instant,
        out: &mut Actions<Self::Request>,
    ) -> Result<Option<usize>, Self::Malformed> {
        match self.decode(buf)? {
            Some((packet, used)) => {
                self.handle(packet, now, out);
                Ok(Some(used))
            }
            None => Ok(None),
        }
    }

    /// Bytes that do not decode: the machine writes its last words (if the
    /// protocol has them) and closes with `ProtocolError`.
    fn malformed(
        &mut self,
        error: &Self::Malformed,
        now: Instant,
        out: &mut Actions<Self::Request>,
    );

    /// A deadline from `next_deadline` has come.
    fn handle_timeout(&mut self, now: Instant, out: &mut Actions<Self::Request>);

    /// The connection is closing for a reason decided outside the machine
    /// (slow consumer, takeover, shutdown, the peer gone): the machine
    /// writes its last words for it, if any (NATS `-ERR`, MQTT 5
    /// DISCONNECT); writes only.
    fn closing(&mut self, reason: CloseReason, out: &mut Actions<Self::Request>);
}
