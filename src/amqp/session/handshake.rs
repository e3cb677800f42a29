//! The handshake of the AMQP session machine: the protocol headers,
//! SASL (PLAIN, ANONYMOUS; the glue's answer to `Authenticate`), and
//! `open` (max-frame-size, channel-max, idle-time-out). Split from
//! `session.rs` to keep each file to one concern; the state is the
//! machine's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fe2o3_amqp_types::performatives::{ChannelMax, MaxFrameSize, Open, Performative};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use serde_amqp::primitives::{Array, Symbol};

use super::{AmqpSession, Phase, Request, HEARTBEAT_MIN};
use crate::amqp::frame::{self, ProtocolHeader, TYPE_SASL};
use crate::security::{Credentials, Grants, Identity};
use crate::session::{Actions, CloseReason};

impl AmqpSession {
    pub(super) fn write_open(&mut self, out: &mut Actions<Request>) {
        let limits = &self.settings.limits;
        let open = Open {
            container_id: self.settings.container_id.to_string(),
            hostname: None,
            max_frame_size: MaxFrameSize(limits.max_frame_size),
            channel_max: ChannelMax(self.channel_max),
            idle_time_out: (limits.idle_timeout_ms > 0).then_some(limits.idle_timeout_ms),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        Self::write_performative(out, 0, Performative::Open(open));
        self.open_sent = true;
    }

    fn sasl_outcome(out: &mut Actions<Request>, code: SaslCode) {
        let outcome = SaslOutcome {
            code,
            additional_data: None,
        };
        out.write(|b| frame::write_frame(b, TYPE_SASL, 0, &outcome));
    }

    /// The client's credentials were accepted (with its rights).
    pub fn authenticated(
        &mut self,
        identity: Identity,
        grants: Arc<Grants>,
        _now: Instant,
        out: &mut Actions<Request>,
    ) {
        let Phase::Authenticating { bare, header } = self.phase else {
            return;
        };
        self.identity = Some(identity);
        self.grants = (!grants.is_allow_all()).then_some(grants);
        if !bare {
            Self::sasl_outcome(out, SaslCode::Ok);
        }
        if bare || header {
            out.write(|b| b.extend_from_slice(&frame::AMQP_HEADER));
            self.phase = Phase::Open;
        } else {
            self.phase = Phase::AmqpHeader;
        }
    }

    /// The client's credentials were refused: sasl-outcome `auth` (or,
    /// after a bare AMQP header, the SASL header: SASL is required), then
    /// close.
    pub fn refused(&mut self, _now: Instant, out: &mut Actions<Request>) {
        let Phase::Authenticating { bare, .. } = self.phase else {
            return;
        };
        if bare {
            out.write(|b| b.extend_from_slice(&frame::SASL_HEADER));
        } else {
            Self::sasl_outcome(out, SaslCode::Auth);
        }
        self.error = Some("authentication failed".into());
        self.phase = Phase::Closed;
        out.close(CloseReason::ConnectRefused);
    }

    pub(super) fn on_header(&mut self, header: ProtocolHeader, out: &mut Actions<Request>) {
        match (self.phase, header) {
            (Phase::Header, ProtocolHeader::Sasl) => {
                let mut names = vec![Symbol::from("PLAIN")];
                if self.settings.anonymous {
                    names.push(Symbol::from("ANONYMOUS"));
                }
                let mechanisms = SaslMechanisms {
                    sasl_server_mechanisms: Array(names),
                };
                out.write(|b| {
                    b.extend_from_slice(&frame::SASL_HEADER);
                    frame::write_frame(b, TYPE_SASL, 0, &mechanisms);
                });
                self.phase = Phase::SaslInit;
            }
            (Phase::Header, ProtocolHeader::Amqp) if self.settings.anonymous => {
                self.phase = Phase::Authenticating {
                    bare: true,
                    header: true,
                };
                out.request(Request::Authenticate {
                    credentials: Box::default(),
                });
            }
            (
                Phase::Authenticating {
                    bare: false,
                    header: false,
                },
                ProtocolHeader::Amqp,
            ) => {
                self.phase = Phase::Authenticating {
                    bare: false,
                    header: true,
                };
            }
            (Phase::AmqpHeader, ProtocolHeader::Amqp) => {
                out.write(|b| b.extend_from_slice(&frame::AMQP_HEADER));
                self.phase = Phase::Open;
            }
            (phase, header) => {
                // Part 2.2: answer with the header weft would take here,
                // then close the socket.
                let ours = if phase == Phase::AmqpHeader {
                    frame::AMQP_HEADER
                } else {
                    frame::SASL_HEADER
                };
                out.write(|b| b.extend_from_slice(&ours));
                self.error = Some(format!("protocol header {header:?} refused"));
                self.phase = Phase::Closed;
                out.close(CloseReason::ProtocolError);
            }
        }
    }

    pub(super) fn on_sasl(&mut self, body: &[u8], out: &mut Actions<Request>) {
        let init = match frame::decode_sasl::<SaslInit>(body) {
            Ok(init) => init,
            Err(e) => {
                Self::sasl_outcome(out, SaslCode::Sys);
                self.error = Some(format!("bad sasl-init: {e}"));
                self.phase = Phase::Closed;
                out.close(CloseReason::ProtocolError);
                return;
            }
        };
        let credentials = match init.mechanism.as_str() {
            "PLAIN" => {
                // RFC 4616: [authzid] NUL authcid NUL passwd.
                let response = init.initial_response.as_ref().map_or(&[][..], |r| &r[..]);
                let mut parts = response.splitn(3, |&b| b == 0);
                let (_authzid, user, pass) = (parts.next(), parts.next(), parts.next());
                match (user.map(std::str::from_utf8), pass) {
                    (Some(Ok(user)), Some(pass)) => Credentials {
                        username: Some(user.into()),
                        password: Some(pass.into()),
                        ..Credentials::default()
                    },
                    _ => {
                        Self::sasl_outcome(out, SaslCode::Auth);
                        self.error = Some("malformed SASL PLAIN response".into());
                        self.phase = Phase::Closed;
                        out.close(CloseReason::ConnectRefused);
                        return;
                    }
                }
            }
            "ANONYMOUS" if self.settings.anonymous => Credentials::default(),
            other => {
                Self::sasl_outcome(out, SaslCode::Auth);
                self.error = Some(format!("SASL mechanism {other:?} not offered"));
                self.phase = Phase::Closed;
                out.close(CloseReason::ConnectRefused);
                return;
            }
        };
        self.phase = Phase::Authenticating {
            bare: false,
            header: false,
        };
        out.request(Request::Authenticate {
            credentials: Box::new(credentials),
        });
    }

    pub(super) fn on_open(&mut self, open: Open, out: &mut Actions<Request>) {
        if open.max_frame_size.0 < frame::MIN_MAX_FRAME_SIZE {
            let description = format!("max-frame-size {} under 512", open.max_frame_size.0);
            self.fail("amqp:frame-size-too-small", description, out);
            return;
        }
        self.max_frame_size_out = open
            .max_frame_size
            .0
            .min(self.settings.limits.max_frame_size);
        self.channel_max = open.channel_max.0.min(self.settings.limits.channel_max);
        self.client_container = open.container_id.into();
        self.heartbeat = open
            .idle_time_out
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(u64::from(ms) / 2).max(HEARTBEAT_MIN));
        self.write_open(out);
        self.phase = Phase::Opened;
    }
}
