//! The frames the machine writes, each built by its version's codec into
//! the caller's reused buffer (no allocation for an acknowledgement).
//! Version differences live here: MQTT 5 acks carry a reason code (the
//! codec drops it when it is Success), 3.1.1 acks do not.

use super::{Actions, Request, Version};
use crate::mqtt::codec::{self, Packet as P3};
use crate::mqtt::v5::{self, reason, Packet as P5, PubResp, ReasonOnly};

fn v5_frame(packet: &P5<'_>, out: &mut Actions<Request>) {
    out.write(|bytes| {
        // Only frames of valid fields are built here: an error would be a
        // bug, and writes nothing.
        let written = v5::encode(packet, bytes);
        debug_assert!(written.is_ok(), "{packet:?}: {written:?}");
    });
}

fn v311_frame(packet: &P3<'_>, out: &mut Actions<Request>) {
    out.write(|bytes| codec::encode(packet, bytes));
}

/// Which acknowledgement of the PUBLISH flow: PUBACK (`Publish`),
/// PUBREC, PUBREL, PUBCOMP.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ack {
    Publish,
    Received,
    Release,
    Complete,
}

impl Ack {
    /// What answers a PUBLISH at `qos` (1: PUBACK, 2: PUBREC).
    pub(super) fn of_publish(qos: u8) -> Ack {
        if qos == 1 {
            Ack::Publish
        } else {
            Ack::Received
        }
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP with `code` (MQTT 5; 3.1.1 has none).
pub(super) fn ack(
    version: Version,
    kind: Ack,
    packet_id: u16,
    code: u8,
    out: &mut Actions<Request>,
) {
    match version {
        Version::V5 => {
            let resp = PubResp {
                reason_code: code,
                ..PubResp::ok(packet_id)
            };
            v5_frame(
                &match kind {
                    Ack::Publish => P5::PubAck(resp),
                    Ack::Received => P5::PubRec(resp),
                    Ack::Release => P5::PubRel(resp),
                    Ack::Complete => P5::PubComp(resp),
                },
                out,
            );
        }
        Version::V31 | Version::V311 => v311_frame(
            &match kind {
                Ack::Publish => P3::PubAck(packet_id),
                Ack::Received => P3::PubRec(packet_id),
                Ack::Release => P3::PubRel(packet_id),
                Ack::Complete => P3::PubComp(packet_id),
            },
            out,
        ),
    }
}

pub(super) fn ping_response(version: Version, out: &mut Actions<Request>) {
    match version {
        Version::V5 => v5_frame(&P5::PingResp, out),
        Version::V31 | Version::V311 => v311_frame(&P3::PingResp, out),
    }
}

/// SUBACK or UNSUBACK (`unsubscribe`); 3.1.1's UNSUBACK has no codes.
pub(super) fn sub_ack(
    version: Version,
    unsubscribe: bool,
    packet_id: u16,
    codes: &[u8],
    out: &mut Actions<Request>,
) {
    match version {
        Version::V5 => {
            let ack = v5::SubAck {
                packet_id,
                properties: Default::default(),
                reason_codes: codes,
            };
            v5_frame(
                &if unsubscribe {
                    P5::UnsubAck(ack)
                } else {
                    P5::SubAck(ack)
                },
                out,
            );
        }
        Version::V31 | Version::V311 if unsubscribe => {
            v311_frame(&P3::UnsubAck(packet_id), out);
        }
        Version::V31 | Version::V311 => {
            // The 3.1.1 packet owns its codes; SUBACK is not per-publish.
            v311_frame(
                &P3::SubAck {
                    packet_id,
                    codes: codes.to_vec(),
                },
                out,
            );
        }
    }
}

/// A 3.1.1 CONNACK (return codes of §3.2.2.3).
pub(super) fn connack_v311(session_present: bool, code: u8, out: &mut Actions<Request>) {
    v311_frame(
        &P3::ConnAck {
            session_present,
            code,
        },
        out,
    );
}

/// An MQTT 5 CONNACK.
pub(super) fn connack_v5(ack: &v5::ConnAck<'_>, out: &mut Actions<Request>) {
    v5_frame(&P5::ConnAck(ack.clone()), out);
}

/// An MQTT 5 CONNACK refusing with `code`.
pub(super) fn refuse_v5(code: u8, out: &mut Actions<Request>) {
    connack_v5(
        &v5::ConnAck {
            session_present: false,
            reason_code: code,
            properties: Default::default(),
        },
        out,
    );
}

/// The server's MQTT 5 DISCONNECT (MQTT-3.14.2).
pub(super) fn disconnect(code: u8, out: &mut Actions<Request>) {
    v5_frame(&P5::Disconnect(ReasonOnly::new(code)), out);
}

/// MQTT 5 acks answer success with the short form.
pub(super) const SUCCESS: u8 = reason::SUCCESS;
