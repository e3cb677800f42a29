//! The link session: one connection to a peer router as a sans-IO state
//! machine (DESIGN.md "Seams": a session decides, never does IO).
//!
//! Inputs: the link frames the driver decoded ([`LinkSession::on_frame`]),
//! the events the routing core sends over the link (their QoS 1 copies
//! numbered and kept by the peer's [`Outbox`], which outlives its links),
//! and the current time (`now`, virtual in tests). Outputs: [`Actions`] in
//! order — frames to write (built by [`super::link`]), [`Request`]s for the
//! driver and the routing core, and a close with a typed
//! [`LinkCloseReason`]; [`Deadline`] says when to call
//! [`LinkSession::handle_timeout`] next.
//!
//! The rules it owns: the hello exchange and its refusals (version, mesh
//! name, a link to itself, no hello in time), the PING after the interest
//! table that tells the peer the table is in, keepalive PINGs and the
//! silence that drops a link, the round trip, the cumulative hop-by-hop
//! acknowledgement of QoS 1 copies (held back while copies made of them
//! are owed to next hops: [`LinkSession::oblige`]), and the close.
//!
//! Must not touch: sockets, executors, timers, TLS, the shard context, the
//! routing core (the driver carries its requests out: `shard::bridge`).
//! Nothing here allocates per event: an acknowledgement is one frame
//! written into the driver's reused buffer.

pub mod outbox;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::link::{self, Frame, Hello, HelloError, LinkError, LINK_VERSION};
pub use crate::session::{Action, Deadline};
pub use outbox::Outbox;

/// Why a link closed: exactly one per link end, and the `reason` label of
/// `weft_mesh_link_closes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkCloseReason {
    /// The peer sent CLOSE (its shutdown, or its refusal of this router).
    PeerClosed,
    /// This router is shutting down.
    Shutdown,
    /// The TCP connection ended without a CLOSE.
    ConnectionLost,
    ReadError,
    WriteError,
    /// Nothing heard from the peer for `mesh.link_timeout_ms`.
    Silent,
    /// No hello within `mesh.connect_timeout_ms`.
    HelloTimeout,
    /// The peer's first frame was no hello, or its router id is invalid.
    BadHello,
    VersionMismatch,
    MeshMismatch,
    /// The peer claims this router's own id.
    SelfLink,
    /// TLS: the handshake failed, one side speaks it and the other not, or
    /// the certificate does not name the router id of the hello.
    TlsRefused,
    /// `mesh.links_max` links are up already.
    LinksMax,
    /// An undecodable frame, or a second hello.
    ProtocolError,
}

impl LinkCloseReason {
    pub const ALL: [LinkCloseReason; 14] = [
        LinkCloseReason::PeerClosed,
        LinkCloseReason::Shutdown,
        LinkCloseReason::ConnectionLost,
        LinkCloseReason::ReadError,
        LinkCloseReason::WriteError,
        LinkCloseReason::Silent,
        LinkCloseReason::HelloTimeout,
        LinkCloseReason::BadHello,
        LinkCloseReason::VersionMismatch,
        LinkCloseReason::MeshMismatch,
        LinkCloseReason::SelfLink,
        LinkCloseReason::TlsRefused,
        LinkCloseReason::LinksMax,
        LinkCloseReason::ProtocolError,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LinkCloseReason::PeerClosed => "peer_closed",
            LinkCloseReason::Shutdown => "shutdown",
            LinkCloseReason::ConnectionLost => "connection_lost",
            LinkCloseReason::ReadError => "read_error",
            LinkCloseReason::WriteError => "write_error",
            LinkCloseReason::Silent => "silent",
            LinkCloseReason::HelloTimeout => "hello_timeout",
            LinkCloseReason::BadHello => "bad_hello",
            LinkCloseReason::VersionMismatch => "version_mismatch",
            LinkCloseReason::MeshMismatch => "mesh_mismatch",
            LinkCloseReason::SelfLink => "self_link",
            LinkCloseReason::TlsRefused => "tls_refused",
            LinkCloseReason::LinksMax => "links_max",
            LinkCloseReason::ProtocolError => "protocol_error",
        }
    }

    /// An orderly end (logged at info, not as a link failure).
    pub fn graceful(self) -> bool {
        matches!(
            self,
            LinkCloseReason::PeerClosed | LinkCloseReason::Shutdown
        )
    }

    /// The link never came up: refused at hello (or before it).
    pub fn refused(self) -> bool {
        matches!(
            self,
            LinkCloseReason::HelloTimeout
                | LinkCloseReason::BadHello
                | LinkCloseReason::VersionMismatch
                | LinkCloseReason::MeshMismatch
                | LinkCloseReason::SelfLink
                | LinkCloseReason::TlsRefused
                | LinkCloseReason::LinksMax
        )
    }
}

impl From<&HelloError> for LinkCloseReason {
    fn from(e: &HelloError) -> Self {
        match e {
            HelloError::NotHello(_) | HelloError::BadRouterId(_) => LinkCloseReason::BadHello,
            HelloError::VersionMismatch { .. } => LinkCloseReason::VersionMismatch,
            HelloError::MeshMismatch { .. } => LinkCloseReason::MeshMismatch,
            HelloError::SameRouterId(_) => LinkCloseReason::SelfLink,
        }
    }
}

/// What the session asks of its driver (and, through it, of the routing
/// core), in order with its writes. Borrows the frame it came from: the
/// driver carries it out before it reads on.
// The frame is moved through, never stored: boxing it would allocate per
// event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'f> {
    /// The peer's hello is accepted ([`LinkSession::peer`]): the driver
    /// checks what only it can (TLS names, `mesh.links_max`), brings the
    /// link up in the routing core (the whole interest table, the resend
    /// store rewound, the retained-store exchange), then calls
    /// [`LinkSession::table_sent`].
    Up,
    /// Interest or an event copy for the routing core, or a topology
    /// record for the link-state database. After an event with
    /// `seq > 0` has been handled the driver calls
    /// [`LinkSession::processed`].
    Route(Frame<'f>),
    /// The peer acknowledged every QoS 1 copy up to this sequence number
    /// (the peer's [`Outbox::acked`]).
    Acked(u64),
    /// The peer's first PING or PONG: everything it sent before, its
    /// interest table included, has been applied.
    TableReceived,
    /// A PONG answered this session's last PING after this long.
    RoundTrip(Duration),
}

/// The output of one session call (see `crate::session`).
pub type Actions<'f> = crate::session::Actions<Request<'f>, LinkCloseReason>;

/// The session's clocks (from `[mesh]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTimers {
    /// `mesh.keepalive_ms`: a PING this often.
    pub keepalive: Duration,
    /// `mesh.link_timeout_ms`: a link silent this long is dropped.
    pub link_timeout: Duration,
    /// `mesh.connect_timeout_ms`: the peer's hello must come within it.
    pub hello_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Our hello is sent; the peer's is awaited.
    Hello,
    /// Hello accepted; the driver is bringing the link up.
    Accepted,
    /// The table is sent; frames flow.
    Up,
    Closed(LinkCloseReason),
}

/// Copies made of one copy of this link, owed to next hops.
#[derive(Debug)]
struct Owed {
    copies: u32,
    /// First seen owed by a timeout check (custody counts from there).
    since: Option<Instant>,
}

/// One link connection's protocol state, from hello to close.
#[derive(Debug)]
pub struct LinkSession {
    router_id: String,
    mesh: String,
    timers: LinkTimers,
    state: State,
    peer: Option<String>,
    hello_deadline: Instant,
    last_heard: Instant,
    next_ping: Instant,
    ping_nonce: u64,
    ping_sent: Instant,
    /// Highest QoS 1 sequence number processed (acknowledged once nothing
    /// up to it is `owed`).
    ack_processed: u64,
    ack_sent: u64,
    /// Sequence numbers of this link's QoS 1 copies → copies made of them
    /// not yet acknowledged by their next hop (or parked): see `oblige`.
    owed: BTreeMap<u64, Owed>,
    /// See [`LinkSession::set_custody_after`]; None: never.
    custody_after: Option<Duration>,
    /// Copies acknowledged by custody (see `set_custody_after`).
    custody_taken: u64,
    synced: bool,
    /// The words of the close (the refusal, the peer's CLOSE text, the
    /// decode error), for the log and the admin view.
    detail: String,
}

impl LinkSession {
    /// A session for a new connection (TCP, and TLS if any, established).
    pub fn new(router_id: &str, mesh: &str, timers: LinkTimers, now: Instant) -> LinkSession {
        LinkSession {
            router_id: router_id.to_owned(),
            mesh: mesh.to_owned(),
            timers,
            state: State::Hello,
            peer: None,
            hello_deadline: now + timers.hello_timeout,
            last_heard: now,
            next_ping: now + timers.keepalive,
            ping_nonce: 0,
            ping_sent: now,
            ack_processed: 0,
            ack_sent: 0,
            owed: BTreeMap::new(),
            custody_after: None,
            custody_taken: 0,
            synced: false,
            detail: String::new(),
        }
    }

    fn hello(&self) -> Hello<'_> {
        Hello {
            version: LINK_VERSION,
            router_id: &self.router_id,
            mesh: &self.mesh,
        }
    }

    /// The first words on a connection: this router's hello.
    pub fn start(&mut self, out: &mut Actions<'_>) {
        let hello = Frame::Hello(self.hello());
        out.write(|b| link::encode(&hello, b).expect("a hello encodes"));
    }

    /// The peer's router id, once its hello is accepted.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Accepted | State::Up)
    }

    pub fn closed(&self) -> Option<LinkCloseReason> {
        match self.state {
            State::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// The words of the close (empty while open).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Bytes arrived from the peer (one clock read per socket read, not
    /// per frame).
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// One decoded frame.
    pub fn on_frame<'f>(&mut self, frame: Frame<'f>, now: Instant, out: &mut Actions<'f>) {
        match self.state {
            State::Closed(_) => {}
            State::Hello => match link::check_hello(&self.hello(), &frame) {
                Ok(()) => {
                    if let Frame::Hello(h) = frame {
                        self.peer = Some(h.router_id.to_owned());
                    }
                    self.state = State::Accepted;
                    self.last_heard = now;
                    out.request(Request::Up);
                }
                Err(e) => {
                    let reason = LinkCloseReason::from(&e);
                    self.close_with(reason, e.to_string(), true, out);
                }
            },
            State::Accepted | State::Up => self.on_link_frame(frame, now, out),
        }
    }

    /// Whether `on_frame` would do nothing with `frame` but pass it on to
    /// the router (`Request::Route`, its only action): an event or
    /// interest on a link past its hello. The runtime may then route it
    /// without an action list (a frame is large, and an event's frame
    /// would otherwise be moved through the list per event).
    pub fn passes_on(&self, frame: &Frame<'_>) -> bool {
        matches!(self.state, State::Accepted | State::Up)
            && matches!(
                frame,
                Frame::InterestAdd { .. }
                    | Frame::InterestRemove { .. }
                    | Frame::Event(_)
                    | Frame::Topology(_)
                    | Frame::Explain(_)
                    | Frame::ExplainReply { .. }
            )
    }

    fn on_link_frame<'f>(&mut self, frame: Frame<'f>, now: Instant, out: &mut Actions<'f>) {
        match frame {
            Frame::InterestAdd { .. }
            | Frame::InterestRemove { .. }
            | Frame::Event(_)
            | Frame::Topology(_)
            | Frame::Explain(_)
            | Frame::ExplainReply { .. } => {
                out.request(Request::Route(frame));
            }
            Frame::Ack { seq } => out.request(Request::Acked(seq)),
            Frame::Ping { nonce } => {
                self.table_received(out);
                out.write(|b| link::encode(&Frame::Pong { nonce }, b).expect("a pong encodes"));
            }
            Frame::Pong { nonce } => {
                self.table_received(out);
                if nonce == self.ping_nonce {
                    out.request(Request::RoundTrip(
                        now.saturating_duration_since(self.ping_sent),
                    ));
                }
            }
            Frame::Close { reason } => {
                let detail = format!("peer closed the link: {reason}");
                self.close_with(LinkCloseReason::PeerClosed, detail, false, out);
            }
            Frame::Hello(_) => {
                let detail = "protocol error: a second hello".to_owned();
                self.close_with(LinkCloseReason::ProtocolError, detail, false, out);
            }
        }
    }

    fn table_received(&mut self, out: &mut Actions<'_>) {
        if !self.synced {
            self.synced = true;
            out.request(Request::TableReceived);
        }
    }

    /// The driver has written the whole interest table (and what the
    /// resend store held): a PING marks its end for the peer, whose first
    /// PING or PONG does the same for us.
    pub fn table_sent(&mut self, now: Instant, out: &mut Actions<'_>) {
        if self.state != State::Accepted {
            return;
        }
        self.state = State::Up;
        self.ping(now, out);
    }

    fn ping(&mut self, now: Instant, out: &mut Actions<'_>) {
        self.ping_nonce += 1;
        self.ping_sent = now;
        self.next_ping = now + self.timers.keepalive;
        let nonce = self.ping_nonce;
        out.write(|b| link::encode(&Frame::Ping { nonce }, b).expect("a ping encodes"));
    }

    /// Time passed: the hello's deadline, silence, the next PING.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Actions<'_>) {
        match self.state {
            State::Closed(_) => {}
            State::Hello | State::Accepted => {
                if self.state == State::Hello && now >= self.hello_deadline {
                    let detail = "link refused: no hello within mesh.connect_timeout_ms";
                    self.close_with(LinkCloseReason::HelloTimeout, detail.into(), true, out);
                }
            }
            State::Up => {
                if now >= self.last_heard + self.timers.link_timeout {
                    let detail = "silent past mesh.link_timeout_ms".to_owned();
                    self.close_with(LinkCloseReason::Silent, detail, false, out);
                } else if now >= self.next_ping {
                    self.take_custody(now, out);
                    self.ping(now, out);
                }
            }
        }
    }

    /// A frame did not decode: the peer hears why, and the link ends.
    pub fn on_decode_error(&mut self, error: &LinkError, out: &mut Actions<'_>) {
        let (reason, detail) = match self.state {
            State::Hello => (
                LinkCloseReason::BadHello,
                format!("link refused: bad hello: {error}"),
            ),
            _ => (
                LinkCloseReason::ProtocolError,
                format!("protocol error: {error}"),
            ),
        };
        self.close_with(reason, detail, true, out);
    }

    /// The driver ends the link (`reason`, with its words for the log);
    /// with `tell`, the peer gets a CLOSE with them first.
    pub fn close(
        &mut self,
        reason: LinkCloseReason,
        detail: String,
        tell: bool,
        out: &mut Actions<'_>,
    ) {
        self.close_with(reason, detail, tell, out);
    }

    fn close_with(
        &mut self,
        reason: LinkCloseReason,
        detail: String,
        tell: bool,
        out: &mut Actions<'_>,
    ) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        self.state = State::Closed(reason);
        if tell {
            let frame = Frame::Close { reason: &detail };
            // A CLOSE too long to encode is left out; the close stands.
            out.write(|b| {
                let _ = link::encode(&frame, b);
            });
        }
        self.detail = detail;
        out.close(reason);
    }

    // --------------------------------------------- hop-by-hop acknowledgement

    /// The QoS 1 copy `seq` of this link has been handled (delivered here
    /// and handed to the next hops).
    pub fn processed(&mut self, seq: u64) {
        debug_assert!(seq > 0);
        self.ack_processed = self.ack_processed.max(seq);
    }

    /// A copy made of this link's copy `seq` is kept for a next hop: `seq`
    /// is not acknowledged before [`Self::release`]. Hop by hop this is
    /// what a publisher's PUBACK promises: a router killed with copies its
    /// next hops have not acknowledged has not acknowledged them either.
    pub fn oblige(&mut self, seq: u64) {
        self.owed
            .entry(seq)
            .or_insert(Owed {
                copies: 0,
                since: None,
            })
            .copies += 1;
    }

    /// One copy obliged for `seq` was acknowledged or dropped for good;
    /// true when `seq` owes nothing more (an acknowledgement may be due).
    pub fn release(&mut self, seq: u64) -> bool {
        match self.owed.get_mut(&seq) {
            Some(o) if o.copies > 1 => {
                o.copies -= 1;
                false
            }
            Some(_) => {
                self.owed.remove(&seq);
                true
            }
            None => false,
        }
    }

    /// The copy `seq` of this link went round a routing loop and this
    /// router takes it over (see `route::Action::Unroutable`): it and every
    /// earlier copy of this link owe nothing more here, their onward copies
    /// stay in this router's resend stores. Acknowledgements are
    /// cumulative: taking over the looped copy alone still waited for an
    /// earlier copy whose next hop waited, through the loop, for this very
    /// acknowledgement (found by the mesh sim, seed 843).
    pub fn take_over(&mut self, seq: u64) {
        self.owed.retain(|&owed, _| owed > seq);
    }

    /// A copy whose onward copies have waited this long for their next
    /// hops is acknowledged all the same (custody: this router's resend
    /// stores keep them; a `kill -9` of this router after that loses
    /// them). Cumulative acknowledgements make obligations wait on each
    /// other: two copies that crossed two links in opposite orders (routes
    /// that disagreed while the mesh reconverged) each waited, through the
    /// other link, for the other's acknowledgement, and the link's acks
    /// stopped for good (found by the mesh sim, seeds 1366 and 1375); so
    /// did every copy behind one owed to a peer that never came back.
    /// Checked on the session's timeouts (at least every keepalive).
    pub fn set_custody_after(&mut self, after: Option<Duration>) {
        self.custody_after = after;
    }

    /// Copies acknowledged by custody so far (see `set_custody_after`).
    pub fn custody_taken(&self) -> u64 {
        self.custody_taken
    }

    fn take_custody(&mut self, now: Instant, out: &mut Actions<'_>) {
        let Some(after) = self.custody_after else {
            return;
        };
        let before = self.owed.len();
        self.owed.retain(|_, o| {
            let since = *o.since.get_or_insert(now);
            now.saturating_duration_since(since) < after
        });
        let taken = before - self.owed.len();
        if taken > 0 {
            self.custody_taken += taken as u64;
            self.ack_if_due(out);
        }
    }

    /// Acknowledges what the peer sent up to the first copy still owed.
    pub fn ack_if_due(&mut self, out: &mut Actions<'_>) {
        if !matches!(self.state, State::Accepted | State::Up) {
            return;
        }
        let due = match self.owed.keys().next() {
            Some(&first) => self.ack_processed.min(first - 1),
            None => self.ack_processed,
        };
        if due > self.ack_sent {
            self.ack_sent = due;
            out.write(|b| link::encode(&Frame::Ack { seq: due }, b).expect("an ack encodes"));
        }
    }
}

impl Deadline for LinkSession {
    fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Hello => Some(self.hello_deadline),
            State::Accepted | State::Closed(_) => None,
            State::Up => Some(
                self.next_ping
                    .min(self.last_heard + self.timers.link_timeout),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
