//! The AMQP 1.0 session machine: one client connection's inbound protocol
//! state and rules, with no socket, no executor and no clock (time comes
//! in as `now`). It takes frames decoded by [`frame`] and returns actions:
//! frames to write, requests to the router ([`Request`]), a typed close.
//!
//! Owns everything inbound: the protocol headers (SASL, then AMQP; a bare
//! AMQP header only where anonymous access is allowed), SASL PLAIN and
//! ANONYMOUS, `open` (max-frame-size, channel-max, idle-time-out both
//! ways), `begin`/`end` and the channel map (weft's outgoing channel is
//! the client's channel), `attach`/`detach` for both roles and the handle
//! map (weft's handle is the client's handle), the credit weft grants a
//! client's sender link (a transfer is checked against what weft's last
//! flow told; a new flow when half is used), multi-frame
//! transfer assembly (bounded by `message_bytes_max`), the client's `flow`
//! and `disposition` (handed on as requests), `close` with its error
//! condition, heartbeats and the idle timeout. Must not touch: sockets,
//! the shard, the delivery side (weft's transfers, next-outgoing-id, the
//! unsettled map: `amqp::outbound`), message sections (`amqp::message`).
//!
//! Errors: a connection error (bad framing, a bad performative, an unknown
//! channel or handle) is the connection's last words: `close` with its
//! condition, then `CloseReason::ProtocolError`. A link error (a transfer
//! beyond credit: `amqp:link:transfer-limit-exceeded`; a message over
//! `message_bytes_max`: `amqp:link:message-size-exceeded`) detaches that
//! link only (closed) and the connection stays, as the contract says; the
//! link's frames still in flight are dropped until the client's `detach`.
//!
//! Hot path: a transfer frame is decoded by hand (`frame::decode_transfer`,
//! borrowing), a single-frame message goes to `message::to_event` straight
//! from the read buffer, and the only allocation per message is the
//! `Event`; a flow (credit) is written once per `sender_credit / 2`
//! messages (a read's worth of frames gets one flow, after the last).
//! Multi-frame messages are assembled in the link's buffer, freed once
//! the message is taken (the connection's bytes in assembly are bounded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{Error as AmqpErrorList, ErrorCondition};
use fe2o3_amqp_types::performatives::{Attach, Close, Performative};
use serde_amqp::primitives::Symbol;

use super::frame::{self, FrameError, Packet, TYPE_AMQP, TYPE_SASL};
use crate::event::{Event, Origin};
use crate::security::{Credentials, Denied, Grants, Identity};
use crate::session::{Actions, CloseReason, Deadline, Machine};
use crate::topic::TopicLimits;

mod channels;
mod handshake;
mod links;

/// The `[amqp]` limits a connection is held to (filled from the
/// configuration by the glue; defaults as the contract's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmqpLimits {
    /// The largest frame weft accepts (announced in its `open`).
    pub max_frame_size: u32,
    /// The largest message (all frames of a transfer) weft takes.
    pub message_bytes_max: usize,
    /// The highest channel a client may begin a session on.
    pub channel_max: u16,
    /// Links per session.
    pub handles_max: u32,
    /// weft closes a connection silent this long (0: never); announced as
    /// its idle-time-out.
    pub idle_timeout_ms: u32,
    /// The credit weft grants a client's sender link.
    pub sender_credit: u32,
    /// Until its `open`, a connection is bounded by this
    /// (`limits.connect_timeout_ms`, as NATS's CONNECT and MQTT's
    /// CONNECT are), whatever `idle_timeout_ms` says; 0: never.
    pub connect_timeout_ms: u32,
}

impl Default for AmqpLimits {
    fn default() -> Self {
        AmqpLimits {
            max_frame_size: 65536,
            message_bytes_max: 1 << 20,
            channel_max: 255,
            handles_max: 64,
            idle_timeout_ms: 60_000,
            sender_credit: 1000,
            connect_timeout_ms: 10_000,
        }
    }
}

/// What an AMQP connection is held to; made by the glue per connection.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: AmqpLimits,
    pub topic_limits: TopicLimits,
    /// `[security]` allows anonymous access: SASL ANONYMOUS is offered,
    /// and a client may skip SASL (send the AMQP header first).
    pub anonymous: bool,
    /// weft's container-id in its `open`.
    pub container_id: Box<str>,
    /// Stamped on published events.
    pub origin: Origin,
    /// Durable receiver links are kept (set by the glue where they are):
    /// only then does weft's attach reply echo a source's `durable` and
    /// `expiry-policy` (see `links::reply_source`).
    pub durable_supported: bool,
}

/// weft's outgoing channel and weft's handle for a link (the client's
/// channel and the client's handle: weft mirrors them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkRef {
    pub channel: u16,
    pub handle: u32,
}

/// A disposition's outcome (part 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Released,
    Rejected,
    Modified {
        delivery_failed: bool,
        undeliverable_here: bool,
    },
}

/// The link part of a client's flow for one of its receiver links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFlow {
    pub handle: u32,
    pub delivery_count: Option<u32>,
    pub link_credit: u32,
    pub drain: bool,
    pub echo: bool,
}

/// An unsettled message to answer with `accepted` or `rejected`.
/// (`handle` is an addition to the contract: the answer gives the
/// message's credit back to its link.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub channel: u16,
    pub delivery_id: u32,
    pub handle: u32,
}

/// The router's answer to a `Subscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    Yes,
    /// The session holds its maximum of subscriptions already.
    TooMany,
    Refused,
}

/// What the machine asks of the router, in order. (See the contract,
/// `amqp-contract.md`; each variant's doc says who answers it.)
#[derive(Debug)]
pub enum Request {
    /// SASL PLAIN, ANONYMOUS (no user) or a bare AMQP header where
    /// anonymous access is allowed (no user): answered by
    /// [`AmqpSession::authenticated`] or [`AmqpSession::refused`].
    Authenticate {
        credentials: Box<Credentials>,
    },
    /// A complete message from a client's sender link; `ack: Some` for an
    /// unsettled one, answered by [`AmqpSession::accepted`] or
    /// [`AmqpSession::rejected`].
    Publish {
        event: Event,
        ack: Option<Ack>,
    },
    /// A client's receiver link attached; answered by
    /// [`AmqpSession::subscribed`] (the last action of its call).
    Subscribe {
        link: LinkRef,
        filter: String,
        queue: Option<Box<str>>,
        qos: u8,
        checked: bool,
        durable: Option<Box<str>>,
    },
    /// A receiver link detached (`closed` as its detach said) or its
    /// session ended (`closed: false`).
    Unsubscribe {
        link: LinkRef,
        closed: bool,
    },
    /// The client's flow: the session part always, the link part for a
    /// handle of one of its receiver links.
    Flow {
        channel: u16,
        next_incoming_id: Option<u32>,
        incoming_window: u32,
        link: Option<LinkFlow>,
    },
    /// The client's disposition (role receiver) of deliveries weft sent.
    Settle {
        channel: u16,
        first: u32,
        last: u32,
        settled: bool,
        outcome: Option<Outcome>,
    },
    /// A session began: the client's incoming window, and
    /// `next_incoming_id`, what the client expects as weft's first
    /// transfer-id (weft's `begin` says next-outgoing-id 0).
    Begin {
        channel: u16,
        incoming_window: u32,
        next_incoming_id: u32,
    },
    End {
        channel: u16,
    },
    /// An attach or transfer the client's rights refused (answered).
    Denied(Denied),
}

/// weft's `begin` next-outgoing-id: the outbound starts there.
pub const FIRST_OUTGOING_ID: u32 = 0;
/// weft's incoming window per session: the link credit is the bound that
/// matters, so the window is wide and refreshed when half is used.
const INCOMING_WINDOW: u32 = i32::MAX as u32;
/// Messages' worth of bytes (`message_bytes_max` each) a connection may
/// hold in assembly at once, across its links: without it, every link of
/// every session could hold a message's worth.
const ASSEMBLY_MESSAGES_MAX: usize = 4;
/// The shortest heartbeat interval weft keeps, whatever the client's
/// idle-time-out asks (a tiny one would make weft write empty frames in a
/// loop).
const HEARTBEAT_MIN: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first protocol header is due.
    Header,
    /// SASL header exchanged: sasl-init is due.
    SaslInit,
    /// An `Authenticate` awaits its answer (SASL, or `bare` AMQP header).
    /// `header`: the client sent the AMQP header already, before the
    /// sasl-outcome (it pipelines, as some clients do). The glue answers
    /// before the next frame is fed (as for NATS CONNECT).
    Authenticating {
        bare: bool,
        header: bool,
    },
    /// SASL done: the AMQP header is due.
    AmqpHeader,
    /// AMQP header exchanged: `open` is due.
    Open,
    Opened,
    Closed,
}

/// A link the client attached, under its handle.
#[derive(Debug)]
struct Link {
    state: LinkState,
}

#[derive(Debug)]
enum LinkState {
    /// The client's sender: weft receives.
    Incoming(Box<Incoming>),
    /// The client's receiver: weft sends. `reply` is weft's attach, kept
    /// while the `Subscribe` awaits its answer.
    Outgoing { reply: Option<Box<Attach>> },
    /// weft detached it with an error: its frames are dropped until the
    /// client's detach.
    Detached,
}

#[derive(Debug)]
struct Incoming {
    /// The internal topic, or None on an anonymous link.
    topic: Option<String>,
    /// Credit left of what weft last told the client: the link-credit
    /// of weft's last flow less the deliveries since (its delivery-count
    /// plus link-credit is the limit a transfer is checked against), and the
    /// sender's delivery-count as weft counted it. Only a flow written
    /// raises it: credit is never replenished behind the client's back.
    credit: u32,
    delivery_count: u32,
    /// Unsettled deliveries not answered yet: each holds its credit until
    /// the glue answers it, so credit is a QoS 1 publisher's window (a
    /// new flow grants `sender_credit - held`).
    held: u32,
    /// A flow is due at the end of the frames read together (see
    /// `AmqpSession::feed`); the link is in `credit_due` once.
    pending: bool,
    /// The delivery being assembled from several frames.
    partial: Option<Partial>,
    /// Its bytes; freed after each message (so `assembly_bytes` counts
    /// all a connection holds).
    buffer: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Partial {
    delivery_id: u32,
    settled: bool,
}

#[derive(Debug)]
struct Session {
    /// The client's next transfer-id, and weft's window left.
    next_incoming_id: u32,
    incoming_window: u32,
    /// weft's outgoing side, as the glue last said it
    /// ([`AmqpSession::set_outgoing`]): written in weft's flows.
    next_outgoing_id: u32,
    outgoing_window: u32,
    /// Indexed by handle (< `handles_max`), grown as used.
    links: Vec<Option<Link>>,
}

pub struct AmqpSession {
    settings: Settings,
    phase: Phase,
    /// weft's `open` went out (a close before it sends one first).
    open_sent: bool,
    identity: Option<Identity>,
    grants: Option<Arc<Grants>>,
    /// The client's container-id (durable subscriptions are named by it).
    client_container: Box<str>,
    /// The largest frame weft may send: min(ours, the client's).
    max_frame_size_out: u32,
    channel_max: u16,
    /// Half the client's idle-time-out: weft writes something this often.
    heartbeat: Option<Duration>,
    next_heartbeat: Option<Instant>,
    /// When the client's silence closes the connection.
    idle_deadline: Option<Instant>,
    /// Indexed by channel (<= channel_max), grown as used.
    sessions: Vec<Option<Session>>,
    /// Bytes held in the links' assembly buffers (bounded by
    /// `ASSEMBLY_MESSAGES_MAX` messages).
    assembly_bytes: usize,
    /// What broke the rules, for the close's log line.
    error: Option<String>,
    /// Another whole frame follows the one being handled in the bytes
    /// read: credit flows wait for the last one (see `feed`).
    in_batch: bool,
    /// Links with a credit flow due at the end of the batch (each once:
    /// bounded by the links there are).
    credit_due: Vec<LinkRef>,
    /// Channels weft ended with a session error, awaiting the client's
    /// `end`: their frames are dropped until it (at most one per channel).
    ending: Vec<u16>,
}

/// An AMQP error list with a condition given by name.
fn error(condition: &'static str, description: impl Into<String>) -> AmqpErrorList {
    AmqpErrorList {
        condition: ErrorCondition::Custom(Symbol::from(condition)),
        description: Some(description.into()),
        info: None,
    }
}

impl AmqpSession {
    pub fn new(settings: Settings, now: Instant) -> AmqpSession {
        let mut session = AmqpSession {
            max_frame_size_out: frame::MIN_MAX_FRAME_SIZE,
            channel_max: settings.limits.channel_max,
            settings,
            phase: Phase::Header,
            open_sent: false,
            identity: None,
            grants: None,
            client_container: "".into(),
            heartbeat: None,
            next_heartbeat: None,
            idle_deadline: None,
            sessions: Vec::new(),
            assembly_bytes: 0,
            error: None,
            in_batch: false,
            credit_due: Vec::new(),
            ending: Vec::new(),
        };
        let connect = session.settings.limits.connect_timeout_ms;
        session.idle_deadline =
            (connect > 0).then(|| now + Duration::from_millis(u64::from(connect)));
        session
    }

    /// What broke the protocol's rules, when the session closed for it.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The largest frame weft may send (the outbound splits transfers to
    /// it): min(weft's, the client's max-frame-size).
    pub fn max_frame_size_out(&self) -> u32 {
        self.max_frame_size_out
    }

    /// weft's incoming side of a session (next-incoming-id, incoming
    /// window), for the flows the outbound writes.
    pub fn incoming(&self, channel: u16) -> Option<(u32, u32)> {
        self.session(channel)
            .map(|s| (s.next_incoming_id, s.incoming_window))
    }

    /// weft's outgoing side of a session, as the outbound keeps it: the
    /// glue says it before feeding frames, so that the flows this machine
    /// writes (credit) carry it (a client such as fe2o3-amqp takes its
    /// next-incoming-id from them).
    pub fn set_outgoing(&mut self, channel: u16, next_outgoing_id: u32, outgoing_window: u32) {
        if let Some(s) = self.session_mut(channel) {
            s.next_outgoing_id = next_outgoing_id;
            s.outgoing_window = outgoing_window;
        }
    }

    fn session(&self, channel: u16) -> Option<&Session> {
        self.sessions.get(usize::from(channel))?.as_ref()
    }

    fn session_mut(&mut self, channel: u16) -> Option<&mut Session> {
        self.sessions.get_mut(usize::from(channel))?.as_mut()
    }

    /// A frame came: the client is alive.
    fn heard(&mut self, now: Instant) {
        // Before open, the handshake's bound, from the connection's start
        // (set in `new`, not moved by handshake frames): a client that
        // never opens must not hold a connection for ever, whatever
        // idle_timeout_ms says (0: none).
        if self.phase != Phase::Opened {
            return;
        }
        let idle = self.settings.limits.idle_timeout_ms;
        self.idle_deadline = (idle > 0).then(|| now + Duration::from_millis(u64::from(idle)));
    }

    fn write_amqp<T: serde::Serialize>(out: &mut Actions<Request>, channel: u16, value: &T) {
        out.write(|b| frame::write_frame(b, TYPE_AMQP, channel, value));
    }

    fn write_performative(out: &mut Actions<Request>, channel: u16, p: Performative) {
        Self::write_amqp(out, channel, &p);
    }

    /// A connection error: `close` with `condition` (after weft's `open`
    /// if it was not sent), then the socket closes.
    fn fail(&mut self, condition: &'static str, description: String, out: &mut Actions<Request>) {
        self.fail_for(CloseReason::ProtocolError, condition, description, out);
    }

    /// A close of weft's, with its reason for the metrics.
    fn fail_for(
        &mut self,
        reason: CloseReason,
        condition: &'static str,
        description: String,
        out: &mut Actions<Request>,
    ) {
        if self.phase == Phase::Closed {
            return;
        }
        if matches!(self.phase, Phase::Open | Phase::Opened) {
            if !self.open_sent {
                self.write_open(out);
            }
            let close = Close {
                error: Some(error(condition, description.clone())),
            };
            Self::write_performative(out, 0, Performative::Close(close));
        }
        self.error = Some(format!("{condition}: {description}"));
        self.phase = Phase::Closed;
        out.close(reason);
    }

    fn on_close(&mut self, close: Close, out: &mut Actions<Request>) {
        if let Some(e) = close.error {
            tracing::debug!(condition = ?e.condition, description = ?e.description, "AMQP close from the client");
        }
        Self::write_performative(out, 0, Performative::Close(Close { error: None }));
        self.phase = Phase::Closed;
        out.close(CloseReason::ClientDisconnect);
    }

    fn on_frame(
        &mut self,
        kind: u8,
        channel: u16,
        body: &[u8],
        now: Instant,
        out: &mut Actions<Request>,
    ) {
        match (self.phase, kind) {
            (Phase::SaslInit, TYPE_SASL) => return self.on_sasl(body, out),
            (Phase::Open | Phase::Opened, TYPE_AMQP) => {}
            (phase, kind) => {
                // A frame where a header, a SASL frame or nothing (an
                // authentication pending) is due.
                let description = format!("frame of type {kind} in phase {phase:?}");
                return self.fail("amqp:not-allowed", description, out);
            }
        }
        if body.is_empty() {
            return; // a heartbeat: `heard` is all it does
        }
        if frame::is_transfer(body) {
            return self.on_transfer(channel, body, now, out);
        }
        let performative = match frame::decode_performative(body) {
            Ok(p) => p,
            Err(e) => return self.fail("amqp:decode-error", e.to_string(), out),
        };
        if self.phase == Phase::Open {
            return match performative {
                Performative::Open(open) => self.on_open(open, out),
                _ => self.fail("amqp:not-allowed", "a frame before open".into(), out),
            };
        }
        if let Performative::Close(close) = performative {
            return self.on_close(close, out);
        }
        let known = self.session(channel).is_some();
        if !known {
            if let Some(at) = self.ending.iter().position(|&c| c == channel) {
                // Ended by weft with an error: the client's `end` closes
                // it; anything before it is dropped.
                if matches!(performative, Performative::End(_)) {
                    self.ending.swap_remove(at);
                }
                return;
            }
        }
        match performative {
            Performative::Open(_) => self.fail("amqp:not-allowed", "a second open".into(), out),
            Performative::Begin(begin) => self.on_begin(channel, begin, out),
            _ if !known => {
                let description = format!("channel {channel} has no session");
                self.fail("amqp:not-found", description, out);
            }
            Performative::End(_) => self.on_end(channel, out),
            Performative::Attach(attach) => self.on_attach(channel, attach, out),
            Performative::Detach(detach) => self.on_detach(channel, detach, out),
            Performative::Flow(flow) => self.on_flow(channel, flow, out),
            Performative::Disposition(d) => self.on_disposition(channel, d, out),
            // `is_transfer` knows both descriptors and a close is handled
            // above; a decode-error rather than a panic if that changes.
            Performative::Transfer(_) | Performative::Close(_) => {
                self.fail("amqp:decode-error", "unexpected performative".into(), out)
            }
        }
    }
}

impl Deadline for AmqpSession {
    fn next_deadline(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        match (self.idle_deadline, self.next_heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Machine for AmqpSession {
    type Request = Request;
    type Packet<'a> = Packet<'a>;
    type Malformed = FrameError;
    const NAME: &'static str = "AMQP";

    /// Decodes and handles one packet, as the default does, knowing
    /// whether another whole frame follows it in the bytes read: credit
    /// flows due are written after the last one. So frames a client wrote
    /// together are checked against the credit weft had told it before
    /// they arrived (a flow weft writes among them, the client could not
    /// have read), and a busy sender gets one flow per read, not per
    /// message.
    fn feed(
        &mut self,
        buf: &[u8],
        now: Instant,
        out: &mut Actions<Request>,
    ) -> Result<Option<usize>, FrameError> {
        match self.decode(buf)? {
            Some((packet, used)) => {
                let rest = &buf[used..];
                let next = frame::frame_len(rest);
                self.in_batch = self.phase == Phase::Opened && next >= 8 && next <= rest.len();
                self.handle(packet, now, out);
                if !self.in_batch {
                    self.flush_credit(out);
                }
                Ok(Some(used))
            }
            None => Ok(None),
        }
    }

    fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Packet<'a>, usize)>, FrameError> {
        match self.phase {
            Phase::Header
            | Phase::AmqpHeader
            | Phase::Authenticating {
                bare: false,
                header: false,
            } => Ok(frame::decode_header(buf).map(|(h, used)| (Packet::Header(h), used))),
            _ => frame::decode_frame(buf, self.settings.limits.max_frame_size),
        }
    }

    fn packet_len(&self, buf: &[u8]) -> usize {
        match self.phase {
            Phase::Header
            | Phase::AmqpHeader
            | Phase::Authenticating {
                bare: false,
                header: false,
            } => 0,
            _ => frame::frame_len(buf),
        }
    }

    fn handle(&mut self, packet: Packet<'_>, now: Instant, out: &mut Actions<Request>) {
        if self.phase == Phase::Closed {
            return;
        }
        let opened = self.phase == Phase::Opened;
        self.heard(now);
        match packet {
            Packet::Header(header) => self.on_header(header, out),
            Packet::Frame {
                kind,
                channel,
                body,
            } => self.on_frame(kind, channel, body, now, out),
        }
        if !opened && self.phase == Phase::Opened {
            self.heard(now); // the idle time-out from open on
        }
        if self.phase == Phase::Opened && self.next_heartbeat.is_none() {
            self.next_heartbeat = self.heartbeat.map(|h| now + h);
        }
    }

    fn malformed(&mut self, error: &FrameError, _now: Instant, out: &mut Actions<Request>) {
        self.fail(error.condition(), error.to_string(), out);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Actions<Request>) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.idle_deadline.is_some_and(|d| now >= d) {
            // Silent past weft's idle-time-out: during the handshake, it
            // is the time a connection has to open.
            let reason = if self.phase == Phase::Opened {
                CloseReason::KeepAliveTimeout
            } else {
                CloseReason::ConnectTimeout
            };
            let description = "idle timeout".to_string();
            self.fail_for(reason, "amqp:resource-limit-exceeded", description, out);
            return;
        }
        if let (Some(due), Some(every)) = (self.next_heartbeat, self.heartbeat) {
            if now >= due {
                out.write(|b| b.extend_from_slice(&frame::HEARTBEAT));
                self.next_heartbeat = Some(now + every);
            }
        }
    }

    fn closing(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        if self.phase != Phase::Opened {
            self.phase = Phase::Closed;
            return;
        }
        let condition = match reason {
            CloseReason::SlowConsumer => Some(("amqp:resource-limit-exceeded", "slow consumer")),
            CloseReason::ServerShutdown => Some(("amqp:connection:forced", "server shutdown")),
            CloseReason::Revoked => Some(("amqp:unauthorized-access", "access revoked")),
            CloseReason::StorageFailed => Some(("amqp:internal-error", "storage failed")),
            CloseReason::TakenOver | CloseReason::TakenOverResumed => {
                Some(("amqp:connection:forced", "taken over"))
            }
            _ => None,
        };
        if let Some((condition, description)) = condition {
            let close = Close {
                error: Some(error(condition, description)),
            };
            Self::write_performative(out, 0, Performative::Close(close));
        }
        self.phase = Phase::Closed;
    }
}

#[cfg(test)]
mod tests;
