//! The MQTT session machine: one connection's protocol rules, for MQTT
//! 3.1, 3.1.1 and 5 alike, with no socket, no executor and no clock. The
//! connection driver (`shard::driver`, with MQTT's glue in
//! `shard::driver_mqtt`) runs it through `session::Machine`.
//!
//! Inputs: the packets the client sent ([`MqttSession::decode`] with the
//! version's codec — before CONNECT, the codec of the level it announces —
//! then [`MqttSession::handle`]), the answers to the machine's own
//! requests (`on_established`, `on_published`, `on_subscribed`, …), a
//! close decided elsewhere ([`MqttSession::closing`]: peer gone, takeover,
//! shutdown, slow consumer) and the current time `now`, which the caller
//! passes (tests pass a virtual one). Outputs: [`Actions`] in order —
//! frames built by the codecs, [`Request`]s to the shard, a typed close
//! with its last words (MQTT 5 CONNACK or DISCONNECT reason codes) — and
//! one deadline ([`Deadline`]): the connect timeout, then keep-alive (1.5
//! times the value in force, MQTT-3.1.2-24; `mqtt.keep_alive_max_s` caps
//! it). Once the connection is closed, [`MqttSession::finish`] says what
//! becomes of the session (kept for how long, or released) and of its
//! will (now, or after a delay cut short by the session's expiry).
//!
//! One machine, because the rules are the same: version differences are
//! data ([`Version`]) — which codec frames an acknowledgement, whether a
//! refusal is a reason code or a close, whether the server may say why
//! it disconnects (DISCONNECT exists only in 5).
//!
//! Owns: the state of one MQTT connection (awaiting QoS 2 releases, topic
//! aliases the client set, the will and its delay, the session expiry the
//! client asked for, keep-alive). Must not touch: sockets, timers, the
//! shard context (`shard::driver_mqtt` carries the requests out), the
//! outbound queue and in-flight window of deliveries (`shard::mailbox` and
//! `mqtt::outbound`: the machine only forwards the client's
//! acknowledgements of them).
//!
//! Costs: a PUBLISH allocates only its event (the one payload copy; an
//! MQTT 5 PUBLISH without properties no metadata); acks are written into
//! the driver's reused [`Actions`] buffer. Tests: `session/tests.rs`, in
//! virtual time.

mod authz;
mod connect;
pub mod expiry;
mod frames;
mod packets;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::event::Event;
use crate::mqtt::{codec, v5};
use crate::security::{Credentials, Denied, Grants, Identity};
pub use crate::session::{Action, Actions, CloseReason, Deadline};
use crate::topic::TopicLimits;

/// Which MQTT the client speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1 (`MQIsdp`, level 3): 3.1.1's rules, client ids of 1 to 23
    /// characters.
    V31,
    V311,
    V5,
}

impl Version {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Version::V31 => 3,
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// The limits and options the machine applies, read once per connection
/// from the configuration (no per-packet lookups).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cap on keep-alive (`mqtt.keep_alive_max_s`); 0 = no cap.
    pub keep_alive_max_s: u16,
    pub connect_timeout: Duration,
    pub client_id_bytes_max: usize,
    /// QoS 2 publishes awaiting release, and the Receive Maximum announced.
    pub inflight_max: usize,
    pub packet_bytes_max: usize,
    pub filters_per_packet_max: usize,
    pub topic: TopicLimits,
    /// MQTT 5 Topic Alias Maximum announced to clients.
    pub topic_alias_maximum: u16,
    /// How long a kept session lives offline at most.
    pub offline_session_expiry_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(&crate::config::Config::default())
    }
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        let l = &config.limits;
        Settings {
            keep_alive_max_s: config.mqtt.keep_alive_max_s,
            connect_timeout: Duration::from_millis(l.connect_timeout_ms),
            client_id_bytes_max: l.client_id_bytes_max,
            inflight_max: l.inflight_max,
            packet_bytes_max: l.packet_bytes_max,
            filters_per_packet_max: l.filters_per_packet_max,
            topic: TopicLimits {
                topic_bytes_max: l.topic_bytes_max,
                topic_levels_max: l.topic_levels_max,
            },
            topic_alias_maximum: config.mqtt.topic_alias_maximum,
            offline_session_expiry_s: l.offline_session_expiry_s,
        }
    }

    fn v311_limits(&self) -> crate::mqtt::codec::DecodeLimits {
        crate::mqtt::codec::DecodeLimits {
            packet_bytes_max: self.packet_bytes_max,
            filters_per_packet_max: self.filters_per_packet_max,
        }
    }

    fn v5_limits(&self) -> crate::mqtt::v5::DecodeLimits {
        crate::mqtt::v5::DecodeLimits {
            packet_bytes_max: self.packet_bytes_max,
            properties_bytes_max: self.packet_bytes_max,
            filters_per_packet_max: self.filters_per_packet_max,
        }
    }

    /// How long a session the client asked to keep for `asked_s` is kept
    /// (the configured maximum caps it).
    pub fn session_expiry(&self, asked_s: u32) -> Duration {
        Duration::from_secs(u64::from(asked_s).min(self.offline_session_expiry_s))
    }
}

/// What the machine asks of the shard. Carried out in order; the ones
/// that need an answer are answered by the matching `on_…` call before
/// the next packet is fed.
#[derive(Debug)]
pub enum Request {
    /// Register the client id, end any other connection of it (takeover,
    /// MQTT-3.1.4-2), and resume its kept state when `resume`. Answer:
    /// [`MqttSession::on_established`].
    Establish(Box<Establish>),
    /// After the CONNACK of a resumed session (session present): queue
    /// what it carried from its last connection (resends, then what was
    /// never sent).
    Resume,
    /// Route an event (and store it first when `retain`). Answer, when
    /// `ack` is set: [`MqttSession::on_published`] with whether it matched.
    Publish {
        event: Event,
        retain: bool,
        ack: Option<PublishAck>,
    },
    /// Wait until every shard applied what this one sent (subscriptions,
    /// retained messages) — before an acknowledgement that promises it.
    Barrier,
    /// Apply the valid filters; fill in each outcome, then call
    /// [`MqttSession::on_subscribed`] (after a barrier) with the request.
    Subscribe(Box<SubscribeRequest>),
    /// Remove the filters; fill in each outcome, then call
    /// [`MqttSession::on_unsubscribed`].
    Unsubscribe(Box<UnsubscribeRequest>),
    /// Send the retained messages matching a new subscription
    /// (MQTT-3.3.1-6), after its SUBACK.
    SendRetained { filter: Box<str>, qos: u8 },
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) of a delivery to the client:
    /// its packet id is free.
    Acknowledge(u16),
    /// PUBREC of a QoS 2 delivery: answer PUBREL. Answer:
    /// [`MqttSession::on_received`] with whether it was in flight.
    Received(u16),
    /// MQTT 5 PUBREC with an error: the delivery ends there.
    Forget(u16),
    /// PUBREL of an inbound QoS 2 publish awaiting it: its id is free
    /// (journaled with persistence on).
    Released(u16),
    /// The connection ended: keep the session offline for `keep` (MQTT
    /// 3.1.1 clean session 0, MQTT 5 session expiry above 0), or release
    /// it.
    End { keep: Option<Duration> },
    /// Publish the will: now (`delay` None), or once `delay` passed while
    /// the session is still kept (MQTT-3.1.3-9); a reconnection cancels
    /// it, the session's end publishes it early.
    Will {
        event: Event,
        delay: Option<Duration>,
    },
    /// A PUBLISH, a SUBSCRIBE filter or a will the client's rights refused
    /// (already answered): count it.
    Denied(Denied),
}

/// What CONNECT asked for, for the shard's session record.
#[derive(Debug)]
pub struct Establish {
    /// None: the client sent an empty id, assign one.
    pub client_id: Option<Box<str>>,
    pub resume: bool,
    pub persistent: bool,
    pub version: Version,
    /// MQTT 5 Session Expiry Interval (None: 3.1.1, or 0).
    pub expiry_s: Option<u32>,
    /// MQTT 5: the client's Receive Maximum, Maximum Packet Size (0: none)
    /// and Topic Alias Maximum.
    pub receive_max: u16,
    pub max_packet: u32,
    pub client_alias_max: u16,
    /// What CONNECT presented: the glue authenticates it (with what the
    /// transport knows) before the session is registered, and answers a
    /// refusal with [`MqttSession::on_refused`].
    pub credentials: Credentials,
}

/// The answer to [`Request::Establish`].
#[derive(Debug, Clone, Copy)]
pub struct Established<'a> {
    /// The client id in use (the assigned one for an empty id).
    pub client_id: &'a str,
    /// A kept session was resumed (MQTT-3.2.2-2).
    pub present: bool,
}

/// The acknowledgement owed once a QoS 1 or 2 publish is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    pub qos: u8,
    pub packet_id: u16,
    /// QoS 1 retained: acknowledged means stored on every shard.
    pub barrier: bool,
}

/// One filter of a SUBSCRIBE.
#[derive(Debug)]
pub struct SubscribeFilter {
    pub filter: Box<str>,
    /// Granted QoS.
    pub qos: u8,
    /// QoS plus the trie's option bits (No Local, Retain As Published).
    pub flags: u8,
    pub retain_handling: crate::mqtt::v5::RetainHandling,
    pub outcome: SubscribeOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// Refused by the machine (not a valid filter): not applied.
    Invalid,
    /// To be applied by the shard.
    Pending,
    /// Applied; `existed`: replaced a subscription of the same filter.
    Granted { existed: bool },
    /// The session holds `subscriptions_per_session_max` already.
    Full,
    /// The client may read nothing this filter matches: not applied.
    Denied,
}

#[derive(Debug)]
pub struct SubscribeRequest {
    pub packet_id: u16,
    /// MQTT 5 Subscription Identifier (None removes a previous one).
    pub identifier: Option<u32>,
    pub filters: SmallVec<[SubscribeFilter; 4]>,
}

#[derive(Debug)]
pub struct UnsubscribeRequest {
    pub packet_id: u16,
    /// Filter, and its outcome: None = invalid (not applied), Some(true)
    /// = a subscription existed and was removed.
    pub filters: SmallVec<[(Box<str>, Option<bool>); 4]>,
}

/// Why the machine refused a CONNECT or closed for a protocol error, in
/// words, for the one log line the shard writes (allocated only then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A CONNECT refused (else: a protocol error after, or instead of,
    /// CONNECT).
    pub refused: bool,
    /// The CONNACK or DISCONNECT code sent (MQTT 5; 3.1.1 CONNACK codes).
    pub code: Option<u8>,
    pub what: String,
    /// The client id CONNECT named, for a refusal.
    pub client_id: Option<Box<str>>,
}

/// A decoded packet of either version.
// Lives on the stack for one call; boxing the larger MQTT 5 packet would
// cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Packet<'a> {
    V311(codec::Packet<'a>),
    V5(v5::Packet<'a>),
}

/// Bytes that do not decode, as the version's codec says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    V311(codec::DecodeError),
    V5(v5::DecodeError),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::V311(e) => e.fmt(f),
            Malformed::V5(e) => e.fmt(f),
        }
    }
}

/// The will of a connection, as CONNECT gave it.
#[derive(Debug, Clone)]
struct Will {
    event: Event,
    delay_s: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for CONNECT until the deadline.
    Connecting,
    /// CONNECT accepted, waiting for `on_established`.
    Establishing,
    Connected,
    Closed,
}

/// One MQTT connection's protocol state. See the module doc.
pub struct MqttSession {
    settings: Settings,
    phase: Phase,
    version: Version,
    /// Connect timeout, then keep-alive.
    deadline: Option<Instant>,
    /// 1.5 times the keep-alive in use; None: keep-alive off.
    keep_alive_window: Option<Duration>,
    /// The Server Keep Alive to announce (MQTT 5, when capped).
    server_keep_alive_s: Option<u16>,
    client_id_assigned: bool,
    wants_response_info: bool,
    /// QoS 2 packet ids received and not yet released (exactly once
    /// inbound), bounded by `inflight_max`.
    awaiting_release: SmallVec<[u16; 4]>,
    /// Topic aliases the client set (index = alias - 1), MQTT 5; grown
    /// to the highest alias used, at most `topic_alias_maximum` (an idle
    /// connection holds none).
    aliases: Vec<Option<Box<str>>>,
    will: Option<Will>,
    /// MQTT 5: false after DISCONNECT other than 0x04.
    will_wanted: bool,
    /// Kept after the connection (3.1.1 clean session 0, 5 expiry > 0).
    persistent: bool,
    /// MQTT 5 Session Expiry Interval in force.
    expiry_s: u32,
    problem: Option<Problem>,
    /// The shard holds a session for this connection (Establish sent).
    registered: bool,
    /// CONNACK went out.
    connected_once: bool,
    /// `finish` ran.
    ended: bool,
    /// Who the client is, once authenticated.
    identity: Option<Identity>,
    /// What it may publish and read (`authz`); None: no rules, nothing
    /// checked.
    grants: Option<Arc<Grants>>,
}

impl MqttSession {
    /// A machine for a connection accepted at `now`.
    pub fn new(settings: Settings, now: Instant) -> MqttSession {
        MqttSession {
            deadline: Some(now + settings.connect_timeout),
            settings,
            phase: Phase::Connecting,
            version: Version::V311,
            keep_alive_window: None,
            server_keep_alive_s: None,
            client_id_assigned: false,
            wants_response_info: false,
            awaiting_release: SmallVec::new(),
            aliases: Vec::new(),
            will: None,
            will_wanted: true,
            persistent: false,
            expiry_s: 0,
            problem: None,
            registered: false,
            connected_once: false,
            ended: false,
            identity: None,
            grants: None,
        }
    }

    /// Why the connection was refused or closed for a protocol error.
    /// The connection's will and its Will Delay Interval (persistence
    /// keeps it with the session).
    pub fn will(&self) -> Option<(Event, u32)> {
        self.will.as_ref().map(|w| (w.event.clone(), w.delay_s))
    }

    pub fn take_problem(&mut self) -> Option<Problem> {
        self.problem.take()
    }

    fn problem(&mut self, refused: bool, code: Option<u8>, what: impl std::fmt::Display) {
        self.problem = Some(Problem {
            refused,
            code,
            what: what.to_string(),
            client_id: None,
        });
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// QoS 2 publishes received and not yet released (at most
    /// `inflight_max`; the session fuzz target checks it).
    /// Inbound QoS 2 ids a resumed session carried (persistence): their
    /// resent PUBLISHes are not routed again, their PUBREL is known.
    pub fn restore_awaiting_release(&mut self, ids: &[u16]) {
        for id in ids {
            if !self.awaiting_release.contains(id) {
                self.awaiting_release.push(*id);
            }
        }
    }

    pub fn awaiting_release(&self) -> usize {
        self.awaiting_release.len()
    }

    /// The keep-alive window in force (1.5 times the negotiated value).
    pub fn keep_alive_window(&self) -> Option<Duration> {
        self.keep_alive_window
    }

    /// Size of the packet at the front of `buf` from its fixed header (the
    /// same in every version), 0 while unknown: how much the read buffer
    /// must hold.
    pub fn pending_len(buf: &[u8]) -> usize {
        match crate::mqtt::codec::fixed_header(buf) {
            Ok(Some((_, header, remaining))) => header + remaining,
            _ => 0,
        }
    }

    /// One packet from the front of `buf`, decoded by the codec of the
    /// connection's version (before CONNECT: of the level it announces,
    /// MQTT 5 §3.1.2.2), and the bytes it used; None while a whole packet
    /// has not arrived. An oversize packet is refused from its header.
    #[allow(clippy::type_complexity)]
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Packet<'a>, usize)>, Malformed> {
        let v5 = match self.phase {
            Phase::Connecting => {
                matches!(v5::peek_connect_level(buf), Ok(Some(v5::PROTOCOL_LEVEL_5)))
            }
            Phase::Connected => self.version == Version::V5,
            Phase::Establishing | Phase::Closed => return Ok(None),
        };
        if v5 {
            match v5::decode(buf, &self.settings.v5_limits()) {
                Ok(p) => Ok(p.map(|(p, used)| (Packet::V5(p), used))),
                Err(e) => Err(Malformed::V5(e)),
            }
        } else {
            match codec::decode(buf, &self.settings.v311_limits()) {
                Ok(p) => Ok(p.map(|(p, used)| (Packet::V311(p), used))),
                Err(e) => Err(Malformed::V311(e)),
            }
        }
    }

    /// One decoded packet.
    pub fn handle(&mut self, packet: Packet<'_>, now: Instant, out: &mut Actions<Request>) {
        match (self.phase, packet) {
            (Phase::Connecting, Packet::V5(v5::Packet::Connect(c))) => {
                self.version = Version::V5;
                self.connect_v5(&c, now, out);
                self.name_problem(c.client_id);
            }
            (Phase::Connecting, Packet::V311(codec::Packet::Connect(c))) => {
                self.connect_v311(&c, now, out);
                self.name_problem(c.client_id);
            }
            (Phase::Connecting, other) => {
                // MQTT-3.1.0-1: CONNECT first; close, nothing said.
                self.problem(
                    false,
                    None,
                    format_args!("first packet is not CONNECT: {other:?}"),
                );
                self.refused(CloseReason::ProtocolError, out);
            }
            (Phase::Connected, Packet::V311(p)) => self.handle_v311(p, now, out),
            (Phase::Connected, Packet::V5(p)) => self.handle_v5(p, now, out),
            (Phase::Establishing | Phase::Closed, _) => {}
        }
    }

    /// Bytes that do not decode: before CONNECT, an MQTT 5 CONNACK with
    /// the reason code (MQTT-3.2.2-7) or, for 3.1.1, a close; after, a
    /// protocol-error close (MQTT 5: DISCONNECT with the code first).
    pub fn malformed(&mut self, error: &Malformed, _now: Instant, out: &mut Actions<Request>) {
        match (self.phase, error) {
            // The driver logs the decode error: no `Problem` here.
            (Phase::Connecting, Malformed::V5(e)) => {
                self.version = Version::V5;
                frames::refuse_v5(e.reason_code(), out);
                self.refused(CloseReason::ProtocolError, out);
            }
            (Phase::Connecting, Malformed::V311(_)) => {
                self.refused(CloseReason::ProtocolError, out);
            }
            (Phase::Connected, Malformed::V5(e)) => {
                // A CONNACK-only code (0x84: a second CONNECT of another
                // level) is a Protocol Error on DISCONNECT.
                let code = Some(e.reason_code())
                    .filter(|&c| v5::reason::valid_for(v5::PacketType::Disconnect, c))
                    .unwrap_or(v5::reason::PROTOCOL_ERROR);
                self.end(CloseReason::ProtocolError, Some(code), out)
            }
            (Phase::Connected, Malformed::V311(_)) => {
                self.end(CloseReason::ProtocolError, None, out)
            }
            (Phase::Establishing | Phase::Closed, _) => {}
        }
    }

    /// `decode`, then `handle` (or `malformed`): at most one packet from
    /// the front of `buf`; returns the bytes used (0: a whole packet has
    /// not arrived, or the machine is closed or waiting for an answer).
    pub fn feed(&mut self, buf: &[u8], now: Instant, out: &mut Actions<Request>) -> usize {
        match self.decode(buf) {
            Ok(Some((packet, used))) => {
                self.handle(packet, now, out);
                used
            }
            Ok(None) => 0,
            Err(e) => {
                self.malformed(&e, now, out);
                buf.len()
            }
        }
    }

    /// Any packet from the client restarts the keep-alive window.
    fn touch(&mut self, now: Instant) {
        if self.phase == Phase::Connected {
            self.deadline = self.keep_alive_window.map(|w| now + w);
        }
    }

    /// Calls past the deadline: the connect timeout or keep-alive ran out
    /// (a packet received exactly at 1.5 times the keep-alive is late).
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Actions<Request>) {
        match self.deadline {
            Some(at) if now >= at => {}
            _ => return,
        }
        match self.phase {
            Phase::Connecting => {
                self.phase = Phase::Closed;
                self.deadline = None;
                out.close(CloseReason::ConnectTimeout);
            }
            Phase::Connected => self.close(CloseReason::KeepAliveTimeout, out),
            Phase::Establishing | Phase::Closed => {}
        }
    }

    /// The last words for a close decided outside the machine (peer gone,
    /// takeover, shutdown, slow consumer, keep-alive): an MQTT 5
    /// DISCONNECT with its reason code; writes only. The connection is
    /// over for the machine.
    pub fn closing(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        let code = match reason {
            CloseReason::KeepAliveTimeout => Some(crate::mqtt::v5::reason::KEEP_ALIVE_TIMEOUT),
            CloseReason::TakenOver | CloseReason::TakenOverResumed => {
                Some(crate::mqtt::v5::reason::SESSION_TAKEN_OVER)
            }
            CloseReason::ServerShutdown => Some(crate::mqtt::v5::reason::SERVER_SHUTTING_DOWN),
            CloseReason::SlowConsumer => Some(crate::mqtt::v5::reason::QUOTA_EXCEEDED),
            CloseReason::Revoked => Some(crate::mqtt::v5::reason::NOT_AUTHORIZED),
            CloseReason::StorageFailed => Some(crate::mqtt::v5::reason::QUOTA_EXCEEDED),
            _ => None,
        };
        self.last_words(code, out);
    }

    /// `closing`, then the close itself.
    pub fn close(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.closing(reason, out);
        out.close(reason);
    }

    /// Ends the connection from inside: the last words (MQTT 5 DISCONNECT
    /// `code`), then the close.
    fn end(&mut self, reason: CloseReason, code: Option<u8>, out: &mut Actions<Request>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.last_words(code, out);
        out.close(reason);
    }

    fn last_words(&mut self, code: Option<u8>, out: &mut Actions<Request>) {
        let connected = self.phase == Phase::Connected;
        if self.phase != Phase::Closed {
            self.registered = matches!(self.phase, Phase::Establishing | Phase::Connected);
        }
        self.phase = Phase::Closed;
        self.deadline = None;
        if let (true, Version::V5, Some(code)) = (connected, self.version, code) {
            frames::disconnect(code, out);
        }
    }

    /// After the connection closed for `reason` (the first reason, from
    /// wherever it came): the session's end — kept offline or released
    /// (`End`), and its will, now or delayed (`Will`). Once; nothing for a
    /// connection that never got past CONNECT.
    pub fn finish(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        if self.phase != Phase::Closed || !self.registered || self.ended {
            return;
        }
        self.ended = true;
        // Closed before CONNACK (taken over during the handshake): the
        // session was never established, nothing is kept or published.
        let connected = self.connected_once;
        let keep = (connected && self.persistent)
            .then(|| self.session_keep(self.settings.offline_session_expiry_s));
        out.request(Request::End { keep });
        let v5 = self.version == Version::V5;
        let publish = connected
            && match reason {
                CloseReason::ClientDisconnect => self.will_wanted && v5,
                // MQTT-3.1.3-9: a new connection to this session came
                // before the Will Delay Interval passed (it came before
                // this one even closed), so the will is not sent, whatever
                // its delay (mosquitto: the same). MQTT 3.1.1 has no such
                // rule: its will goes, as on any close the client did not
                // ask for.
                CloseReason::TakenOverResumed => !v5,
                other => other.publishes_will(),
            };
        if let Some(will) = self.will.take().filter(|_| publish) {
            let delay = match reason {
                // Taken over by a clean start: the session ends now, so
                // its will goes now (§3.1.2.5: "or the Session ends").
                CloseReason::TakenOver => None,
                _ => will_delay(will.delay_s, keep),
            };
            out.request(Request::Will {
                event: will.event,
                delay,
            });
        }
    }

    /// How long this session is kept offline.
    fn session_keep(&self, configured_s: u64) -> Duration {
        match self.version {
            Version::V5 => self.settings.session_expiry(self.expiry_s),
            Version::V31 | Version::V311 => Duration::from_secs(configured_s),
        }
    }
}

/// When a will with Will Delay Interval `delay_s` is due, for a session
/// kept `keep` (None: the session ends with the connection): at the
/// earlier of the delay and the session's end (MQTT-3.1.3-9); None = now.
pub fn will_delay(delay_s: u32, keep: Option<Duration>) -> Option<Duration> {
    let keep = keep?;
    if delay_s == 0 || keep.is_zero() {
        return None;
    }
    Some(Duration::from_secs(u64::from(delay_s)).min(keep))
}

impl Deadline for MqttSession {
    fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// The connection driver's view (`shard::driver`): the inherent methods
/// above, under the contract's names.
impl crate::session::Machine for MqttSession {
    type Request = Request;
    type Packet<'a> = Packet<'a>;
    type Malformed = Malformed;
    const NAME: &'static str = "MQTT";

    fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Packet<'a>, usize)>, Malformed> {
        MqttSession::decode(self, buf)
    }

    fn packet_len(&self, buf: &[u8]) -> usize {
        MqttSession::pending_len(buf)
    }

    fn handle(&mut self, packet: Packet<'_>, now: Instant, out: &mut Actions<Request>) {
        MqttSession::handle(self, packet, now, out)
    }

    /// After CONNECT, each version's packet is decoded and handled here,
    /// in place: the hot path never builds the two-version [`Packet`] (as
    /// large as MQTT 5's) nor moves it between calls.
    #[inline]
    fn feed(
        &mut self,
        buf: &[u8],
        now: Instant,
        out: &mut Actions<Request>,
    ) -> Result<Option<usize>, Malformed> {
        if self.phase != Phase::Connected {
            return match MqttSession::decode(self, buf)? {
                Some((packet, used)) => {
                    MqttSession::handle(self, packet, now, out);
                    Ok(Some(used))
                }
                None => Ok(None),
            };
        }
        if self.version == Version::V5 {
            match v5::decode(buf, &self.settings.v5_limits()) {
                Ok(Some((packet, used))) => {
                    self.handle_v5(packet, now, out);
                    Ok(Some(used))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(Malformed::V5(e)),
            }
        } else {
            match codec::decode(buf, &self.settings.v311_limits()) {
                Ok(Some((packet, used))) => {
                    self.handle_v311(packet, now, out);
                    Ok(Some(used))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(Malformed::V311(e)),
            }
        }
    }

    fn malformed(&mut self, error: &Malformed, now: Instant, out: &mut Actions<Request>) {
        MqttSession::malformed(self, error, now, out)
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Actions<Request>) {
        MqttSession::handle_timeout(self, now, out)
    }

    fn closing(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        MqttSession::closing(self, reason, out)
    }
}
