//! Authorization in the MQTT machine: the session's [`Grants`] (handed
//! over by the glue once CONNECT is authenticated) asked for each
//! PUBLISH, each SUBSCRIBE filter and the will, on topics as the client
//! wrote them (before any account mapping in the glue), and the answers
//! each version gives a denial:
//! - SUBSCRIBE: SUBACK 0x80 (3.1.1) or 0x87 Not authorized (5);
//! - PUBLISH: MQTT 5 PUBACK/PUBREC 0x87 (QoS 1/2); MQTT 3.1.1 has no code,
//!   so the publish is dropped and still acknowledged (PUBACK, or PUBREC
//!   then PUBCOMP), as mosquitto does, so that the client does not resend
//!   it forever; QoS 0 is dropped in both;
//! - a will whose topic may not be published refuses the CONNECT (3.1.1
//!   0x05, 5 0x87), as mosquitto 2 does: dropping it silently would leave
//!   the client believing it has one.
//!
//! Every denial is counted (`Request::Denied`). Must not touch: the rules
//! themselves (`security::permissions`).

use std::sync::Arc;

use super::connect::CONNACK_NOT_AUTHORIZED;
use super::frames::{self, Ack};
use super::{Actions, MqttSession, Phase, Request, Version};
use crate::mqtt::v5::reason;
use crate::security::{Denied, Grants, Subscription, Substitution};

impl MqttSession {
    /// The session's rights, after `on_authenticated` and before
    /// `on_established`. False: the CONNECT was refused (its will may not
    /// be published): the glue registers nothing.
    pub fn on_authorized(&mut self, grants: Arc<Grants>, out: &mut Actions<Request>) -> bool {
        if self.phase != Phase::Establishing {
            return false;
        }
        if let Some(will) = &self.will {
            if !grants.may_publish(will.event.topic()) {
                let why = format!("will topic {:?} may not be published", will.event.topic());
                out.request(Request::Denied(Denied::Publish));
                self.refuse_not_authorized(&why, out);
                return false;
            }
        }
        self.grants = (!grants.is_allow_all()).then_some(grants);
        true
    }

    /// A `%u` or `%c` substitution would widen a rule: refused as not
    /// authorized.
    pub fn on_unauthorized(&mut self, why: &Substitution, out: &mut Actions<Request>) {
        if self.phase == Phase::Establishing {
            self.refuse_not_authorized(&why.to_string(), out);
        }
    }

    fn refuse_not_authorized(&mut self, why: &str, out: &mut Actions<Request>) {
        match self.version {
            Version::V5 => self.refuse_v5(reason::NOT_AUTHORIZED, why, out),
            Version::V31 | Version::V311 => self.refuse_v311(CONNACK_NOT_AUTHORIZED, why, out),
        }
    }

    /// The rights in force (None: no rules).
    pub fn grants(&self) -> Option<&Arc<Grants>> {
        self.grants.as_ref()
    }

    /// Whether the client may publish to `topic`: one branch for a
    /// session without rules.
    #[inline]
    pub(super) fn may_publish(&self, topic: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.may_publish(topic))
    }

    /// A PUBLISH the client may not make: counted, then answered (see the
    /// module doc).
    pub(super) fn publish_denied(&mut self, qos: u8, packet_id: u16, out: &mut Actions<Request>) {
        out.request(Request::Denied(Denied::Publish));
        let kind = match qos {
            0 => return,
            1 => Ack::Publish,
            _ => Ack::Received,
        };
        // 3.1.1: the ack carries no code (the client cannot tell); a QoS 2
        // id is not kept awaiting release, its PUBREL gets PUBCOMP anyway.
        frames::ack(self.version, kind, packet_id, reason::NOT_AUTHORIZED, out);
    }

    /// What a subscription to `filter` (validated; `$share/{group}/`
    /// prefix allowed) may have.
    pub(super) fn subscription(&self, filter: &str) -> Subscription {
        let Some(grants) = &self.grants else {
            return Subscription::Granted;
        };
        let plain = filter
            .strip_prefix("$share/")
            .and_then(|rest| rest.split_once('/'))
            .map_or(filter, |(_, f)| f);
        grants.subscription(plain)
    }
}
