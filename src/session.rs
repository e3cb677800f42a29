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

use smallvec::SmallVec;

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
    /// Another connection took over this client id.
    TakenOver,
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
        }
    }

    /// MQTT-3.1.2-8: the will is published unless the client said
    /// DISCONNECT. On shutdown weft does not publish wills: the other
    /// shards may already be gone, and the clients are not at fault.
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
    pub list: SmallVec<[Action<R, C>; 4]>,
}

impl<R, C> Default for Actions<R, C> {
    fn default() -> Self {
        Actions {
            bytes: Vec::new(),
            list: SmallVec::new(),
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
