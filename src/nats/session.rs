//! The NATS session machine: one client connection's protocol state and
//! rules, with no socket, no executor and no clock (time comes in as
//! `now`). It takes operations decoded by [`codec`], and returns actions:
//! frames to write, requests to the router ([`Request`]), and a typed close.
//!
//! Owns: INFO, the CONNECT options (verbose `+OK`, echo, headers,
//! no_responders), PING/PONG both ways, the server's ping interval and the
//! stale-connection rule (`pings_outstanding_max` PINGs unanswered), the
//! subject rules of PUB/HPUB/SUB, and the `-ERR` texts real clients
//! expect: fatal errors (bad input, stale connection, slow consumer) are
//! the connection's last words; others (an invalid subject) leave it open,
//! as nats-server does. Must not touch: sockets, the shard, other sessions
//! (the subscription table and the slow-consumer decision are the
//! router's; this machine only says the words).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::codec::{self, ClientOp, NatsError, NatsLimits};
use super::{publish, subject};
use crate::event::{Event, EventMeta};
use crate::security::{Credentials, Denied, Grants, Identity, Refusal, Subscription, Substitution};
use crate::session::{Actions, CloseReason, Deadline, Machine};
use crate::topic::{self, TopicLimits};

/// The nats-server protocol level weft implements, announced as INFO
/// `version`: clients read it as a nats-server version for their feature
/// checks (headers and no-responders need 2.2+); weft's own version goes
/// in `weft_version`.
pub const NATS_SERVER_VERSION: &str = "2.10.0";

/// The status header of a request that found no subscriber.
const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// The CONNECT options weft reads; others are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct ConnectOptions {
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
    // Credentials (see `crate::security`).
    user: Option<String>,
    pass: Option<String>,
    auth_token: Option<String>,
    nkey: Option<String>,
    sig: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: false,
            pedantic: false,
            echo: true,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
        }
    }
}

/// What a NATS session is held to; copied from the configuration when
/// the connection starts.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub limits: NatsLimits,
    pub topic_limits: TopicLimits,
    /// The server sends PING this often; zero: never (a shared-memory
    /// client, whose Unix socket tells the router at once when it dies).
    pub ping_interval: Duration,
    /// PINGs left unanswered when the next one is due: the connection is
    /// stale and closes.
    pub pings_outstanding_max: u32,
    /// Where authentication is required, the time a client has to send
    /// CONNECT (`limits.connect_timeout_ms`, nats-server's auth timeout):
    /// an unauthenticated connection cannot hold its slot longer.
    pub connect_timeout: Duration,
}

/// The fields of INFO that depend on the connection and the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server_id: String,
    pub host: String,
    pub port: u16,
    pub max_payload: usize,
    pub client_id: u64,
    pub client_ip: String,
    /// `[nats.tls]` on and required: the client must upgrade.
    pub tls_required: bool,
    /// `[nats.tls]` on, not required: the client may upgrade.
    pub tls_available: bool,
    /// Clients must CONNECT with credentials first (anything else before
    /// CONNECT is an `Authorization Violation`, as nats-server answers).
    pub auth_required: bool,
    /// This connection's nkey challenge, when some user has an nkey.
    pub nonce: Option<String>,
}

impl ServerInfo {
    /// The INFO line a client gets first.
    pub fn line(&self) -> Vec<u8> {
        let mut info = serde_json::json!({
            "server_id": self.server_id,
            "server_name": "weft",
            "version": NATS_SERVER_VERSION,
            "weft_version": env!("CARGO_PKG_VERSION"),
            "proto": 1,
            "go": "n/a (weft, Rust)",
            "host": self.host,
            "port": self.port,
            "headers": true,
            "max_payload": self.max_payload,
            "client_id": self.client_id,
            "client_ip": self.client_ip,
        });
        // As nats-server: each flag only when set.
        for (key, on) in [
            ("tls_required", self.tls_required),
            ("tls_available", self.tls_available),
        ] {
            if on {
                info[key] = true.into();
            }
        }
        if self.auth_required {
            info["auth_required"] = true.into();
        }
        if let Some(nonce) = &self.nonce {
            info["nonce"] = nonce.as_str().into();
        }
        format!("INFO {info}\r\n").into_bytes()
    }
}

/// What the session asks of the router, in order.
#[derive(Debug)]
pub enum Request {
    /// CONNECT: `echo` false = never deliver this client's own publishes.
    /// The glue authenticates `credentials` and answers with
    /// [`NatsSession::authenticated`] or [`NatsSession::refused`].
    Connect {
        echo: bool,
        credentials: Box<Credentials>,
    },
    /// PUB/HPUB. `answer_undelivered`: a request whose client wants to
    /// know when no one listens; if no subscriber got it, the glue calls
    /// [`NatsSession::undelivered`].
    Publish {
        event: Event,
        answer_undelivered: bool,
    },
    /// SUB with its internal filter; answered by
    /// [`NatsSession::subscribed`] (the last action of its call).
    Subscribe {
        sid: Box<str>,
        filter: String,
        queue: Option<Box<str>>,
        /// The filter reaches subjects the client may not read: each
        /// delivery is tested (`security::permissions`).
        checked: bool,
    },
    /// UNSUB: now, or after `max` deliveries in all.
    Unsubscribe { sid: Box<str>, max: Option<u64> },
    /// An event the router makes itself (a no-responders status): routed
    /// as from no client, so `echo: false` does not hold it back.
    RouterPublish(Event),
    /// A PUB or SUB the client's rights refused (already answered with
    /// `-ERR`): count it.
    Denied(Denied),
}

/// The router's answer to a SUB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    Yes,
    /// The session holds `subscriptions_per_session_max` already.
    TooMany,
}

pub struct NatsSession {
    settings: Settings,
    options: ConnectOptions,
    info: Option<ServerInfo>,
    /// Server PINGs not yet answered by a PONG.
    pings_outstanding: u32,
    next_ping: Instant,
    closed: bool,
    /// What broke the rules, for the close's log line.
    error: Option<String>,
    identity: Option<Identity>,
    /// What it may publish and read; None: no rules, nothing checked.
    grants: Option<Arc<Grants>>,
    /// From INFO: nothing but CONNECT is accepted before CONNECT.
    auth_required: bool,
    connect_seen: bool,
    /// Where authentication is required: CONNECT is due by then.
    connect_deadline: Option<Instant>,
}

fn err(out: &mut Actions<Request>, message: &str) {
    out.write(|b| {
        b.extend_from_slice(b"-ERR '");
        b.extend_from_slice(message.as_bytes());
        b.extend_from_slice(b"'\r\n");
    });
}

impl NatsSession {
    /// A session that starts (INFO, ping timer) at `start`'s `now`.
    pub fn new(settings: Settings, info: ServerInfo, now: Instant) -> NatsSession {
        NatsSession {
            auth_required: info.auth_required,
            connect_seen: false,
            connect_deadline: info.auth_required.then(|| now + settings.connect_timeout),
            settings,
            options: ConnectOptions::default(),
            info: Some(info),
            pings_outstanding: 0,
            next_ping: now + settings.ping_interval,
            closed: false,
            error: None,
            identity: None,
            grants: None,
        }
    }

    /// What broke the protocol's rules, when the session closed for it.
    /// The INFO line, if not sent yet; the session then starts without
    /// it (the driver sent it before a TLS upgrade).
    pub fn take_info_line(&mut self) -> Option<Vec<u8>> {
        self.info.take().map(|info| info.line())
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn pings_outstanding(&self) -> u32 {
        self.pings_outstanding
    }

    fn ok(&self, out: &mut Actions<Request>) {
        if self.options.verbose {
            out.write(|b| b.extend_from_slice(codec::OK));
        }
    }

    fn close(&mut self, out: &mut Actions<Request>, reason: CloseReason, message: &str) {
        err(out, message);
        out.close(reason);
        self.closed = true;
    }

    /// The CONNECT's credentials were accepted: `+OK` in verbose mode.
    pub fn authenticated(&mut self, identity: Identity, out: &mut Actions<Request>) {
        self.identity = Some(identity);
        self.ok(out);
    }

    /// The CONNECT's credentials were refused: nats-server's answer to
    /// either refusal, then close.
    pub fn refused(&mut self, refusal: Refusal, out: &mut Actions<Request>) {
        self.error = Some(
            match refusal {
                Refusal::BadCredentials => "authentication failed",
                Refusal::NotAuthorized => "not authorized to connect",
            }
            .into(),
        );
        self.close(out, CloseReason::ConnectRefused, "Authorization Violation");
    }

    /// The client's rights, handed over before `authenticated`. Denials
    /// are answered as nats-server does, and the connection kept:
    /// `-ERR 'Permissions Violation for Publish to "<subject>"'`, `…
    /// for Subscription to "<subject>"` (`… using queue "<queue>"`).
    pub fn authorized(&mut self, grants: Arc<Grants>) {
        self.grants = (!grants.is_allow_all()).then_some(grants);
    }

    /// A `%u`/`%c` substitution would widen a rule: refused as not
    /// authorized, then close.
    pub fn unauthorized(&mut self, why: &Substitution, out: &mut Actions<Request>) {
        self.error = Some(why.to_string());
        self.close(out, CloseReason::ConnectRefused, "Authorization Violation");
    }

    /// Who the client is, once its CONNECT was accepted.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The router's answer to the last `Subscribe`.
    pub fn subscribed(&mut self, answer: Subscribed, out: &mut Actions<Request>) {
        match answer {
            Subscribed::Yes => self.ok(out),
            Subscribed::TooMany => err(out, "Maximum Subscriptions Exceeded"),
        }
    }

    /// A publish with `answer_undelivered` reached no subscriber: the
    /// requester gets a 503 status message on its reply subject.
    pub fn undelivered(&mut self, event: &Event, out: &mut Actions<Request>) {
        let Some(reply) = event.reply() else {
            return;
        };
        let Ok(topic) =
            subject::to_internal(reply, false, self.settings.topic_limits.topic_bytes_max)
        else {
            return;
        };
        let event = Event::new(&topic, b"", 0, false).with_meta(EventMeta {
            headers: Some(NO_RESPONDERS.into()),
            ..Default::default()
        });
        out.request(Request::RouterPublish(event));
    }

    fn publish(
        &mut self,
        subj: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
        out: &mut Actions<Request>,
    ) {
        // The subject checked and mapped into the event's buffer in one
        // pass (`nats::publish`): no string of its own per PUB.
        let Some(mut event) = publish::event(subj, payload, &self.settings.topic_limits) else {
            err(out, "Invalid Publish Subject");
            return;
        };
        if let Some(grants) = &self.grants {
            if !grants.may_publish(event.topic()) {
                out.request(Request::Denied(Denied::Publish));
                err(
                    out,
                    &format!("Permissions Violation for Publish to {subj:?}"),
                );
                return;
            }
        }
        // As nats-server: +OK acknowledges the PUB before any delivery.
        self.ok(out);
        // A plain PUB builds no metadata at all: an empty one costs a drop
        // per publish where the compiler outlines `EventMeta`'s drop
        // (perf/callgrind.sh nats: +33 instructions/msg).
        if reply.is_some() || headers.is_some() {
            event = event.with_meta(EventMeta {
                reply: reply.map(Into::into),
                headers: headers.map(Into::into),
                ..Default::default()
            });
        }
        let answer_undelivered =
            reply.is_some() && self.options.headers && self.options.no_responders;
        out.request(Request::Publish {
            event,
            answer_undelivered,
        });
    }
}

impl Deadline for NatsSession {
    fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        if self.settings.ping_interval.is_zero() {
            return self.connect_deadline;
        }
        Some(match self.connect_deadline {
            Some(connect) => connect.min(self.next_ping),
            None => self.next_ping,
        })
    }
}

impl Machine for NatsSession {
    type Request = Request;
    type Packet<'a> = ClientOp<'a>;
    type Malformed = NatsError;
    const NAME: &'static str = "NATS";

    fn start(&mut self, now: Instant, out: &mut Actions<Request>) {
        if let Some(info) = self.info.take() {
            out.write(|b| b.extend_from_slice(&info.line()));
        }
        self.next_ping = now + self.settings.ping_interval;
        if self.connect_deadline.is_some() {
            self.connect_deadline = Some(now + self.settings.connect_timeout);
        }
    }

    fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(ClientOp<'a>, usize)>, NatsError> {
        codec::decode(buf, &self.settings.limits)
    }

    fn handle(&mut self, op: ClientOp<'_>, _now: Instant, out: &mut Actions<Request>) {
        if self.closed {
            return;
        }
        if self.auth_required && !self.connect_seen && !matches!(op, ClientOp::Connect(_)) {
            // nats-server's parser: with authentication set, the first
            // operation must be CONNECT (a PING too is refused).
            self.error =
                Some("an operation before CONNECT where authentication is required".into());
            self.close(out, CloseReason::ConnectRefused, "Authorization Violation");
            return;
        }
        match op {
            ClientOp::Connect(json) => match serde_json::from_str::<ConnectOptions>(json) {
                Ok(options) => {
                    tracing::debug!(name = ?options.name, lang = ?options.lang, version = ?options.version, pedantic = options.pedantic, "NATS CONNECT");
                    let credentials = Box::new(Credentials {
                        username: options.user.as_deref().map(Into::into),
                        password: options.pass.as_deref().map(|p| p.as_bytes().into()),
                        token: options.auth_token.as_deref().map(Into::into),
                        nkey: options.nkey.as_deref().map(Into::into),
                        signature: options.sig.as_deref().map(Into::into),
                        client_id: options.name.as_deref().unwrap_or_default().into(),
                    });
                    self.connect_seen = true;
                    self.connect_deadline = None;
                    out.request(Request::Connect {
                        echo: options.echo,
                        credentials,
                    });
                    self.options = options;
                }
                Err(e) => {
                    self.error = Some(format!("invalid CONNECT: {e}"));
                    self.close(out, CloseReason::ProtocolError, "Protocol Error");
                }
            },
            ClientOp::Pub {
                subject,
                reply,
                headers,
                payload,
            } => self.publish(subject, reply, headers, payload, out),
            ClientOp::Sub {
                subject: subj,
                queue,
                sid,
            } => {
                let limits = &self.settings.topic_limits;
                let Some(filter) = subject::to_internal(subj, true, limits.topic_bytes_max)
                    .ok()
                    .filter(|f| topic::validate_client_filter(f, limits).is_ok())
                else {
                    err(out, "Invalid Subject");
                    return;
                };
                let subscription = self
                    .grants
                    .as_ref()
                    .map_or(Subscription::Granted, |g| g.subscription(&filter));
                if subscription == Subscription::Denied {
                    out.request(Request::Denied(Denied::Subscribe));
                    let message = match queue {
                        None => format!("Permissions Violation for Subscription to {subj:?}"),
                        Some(q) => format!(
                            "Permissions Violation for Subscription to {subj:?} using queue {q:?}"
                        ),
                    };
                    err(out, &message);
                    return;
                }
                // A publish that follows, from any shard, sees this
                // interest: the glue waits for every shard before it
                // answers (`subscribed`).
                out.request(Request::Subscribe {
                    sid: sid.into(),
                    filter,
                    queue: queue.map(Into::into),
                    checked: subscription == Subscription::Checked,
                });
            }
            ClientOp::Unsub { sid, max } => {
                out.request(Request::Unsubscribe {
                    sid: sid.into(),
                    max,
                });
                self.ok(out);
            }
            ClientOp::Ping => out.write(|b| b.extend_from_slice(codec::PONG)),
            ClientOp::Pong => self.pings_outstanding = 0,
        }
    }

    fn malformed(&mut self, error: &NatsError, _now: Instant, out: &mut Actions<Request>) {
        // (The driver logs `error`.)
        self.close(out, CloseReason::ProtocolError, error.client_message());
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Actions<Request>) {
        if self.closed {
            return;
        }
        if self.connect_deadline.is_some_and(|d| now >= d) {
            // nats-server's answer to a client that does not authenticate
            // in time.
            self.error = Some("no CONNECT within limits.connect_timeout_ms".into());
            self.close(out, CloseReason::ConnectTimeout, "Authentication Timeout");
            return;
        }
        if self.settings.ping_interval.is_zero() || now < self.next_ping {
            return;
        }
        if self.pings_outstanding >= self.settings.pings_outstanding_max {
            self.error = Some("PINGs unanswered".into());
            self.close(out, CloseReason::StaleConnection, "Stale Connection");
            return;
        }
        self.pings_outstanding += 1;
        out.write(|b| b.extend_from_slice(codec::PING));
        self.next_ping = now + self.settings.ping_interval;
    }

    fn closing(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        if self.closed {
            return;
        }
        self.closed = true;
        match reason {
            CloseReason::SlowConsumer => err(out, "Slow Consumer"),
            CloseReason::StaleConnection => err(out, "Stale Connection"),
            CloseReason::Revoked => err(out, "Authorization Violation"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
