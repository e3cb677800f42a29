//! AMQP 1.0 framing, `weft::amqp::frame`, and the session machine
//! (`weft::amqp::session`) reading what it decodes.
//!
//! Properties:
//! - the frame decoder keeps the decoder contract (see the crate comment);
//! - a transfer decoded by hand hands out a payload that is the end of its
//!   frame's body; performatives decode or fail, never panic;
//! - the machine, fed the input after a protocol header (the first input
//!   byte picks SASL or the bare AMQP header, anonymous access, and
//!   whether the glue says yes), answered as the glue answers: a `Close`
//!   is the last action of its call and comes once; a `Subscribe` is the
//!   last action of its call; once closed, no call yields any action;
//!   after `handle_timeout(now)`, `next_deadline` is None or after `now`;
//!   no panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Begin, Close, Performative, Transfer};
use serde_amqp::primitives::Binary;
use weft::amqp::frame::{self, Packet, TYPE_AMQP};
use weft::amqp::session::{AmqpLimits, AmqpSession, Request, Settings, Subscribed};
use weft::event::Origin;
use weft::security::{Grants, Identity};
use weft::session::{Action, Actions, Deadline, Machine};
use weft::topic::TopicLimits;

/// Small limits, so the fuzzer reaches them.
const LIMITS: AmqpLimits = AmqpLimits {
    max_frame_size: 1024,
    message_bytes_max: 2048,
    channel_max: 3,
    handles_max: 4,
    idle_timeout_ms: 1000,
    sender_credit: 4,
    connect_timeout_ms: 1000,
};

fn frames(wire: &[u8]) {
    let decided = crate::decoder_contract(wire, |b| frame::decode_frame(b, LIMITS.max_frame_size));
    let Ok(Some((Packet::Frame { kind, body, .. }, _))) = decided else {
        return;
    };
    if kind != TYPE_AMQP || body.is_empty() {
        return;
    }
    if frame::is_transfer(body) {
        if let Ok(t) = frame::decode_transfer(body) {
            assert!(body.ends_with(t.payload), "the payload ends the body");
        }
    } else {
        let _ = frame::decode_performative(body);
    }
}

struct Run {
    m: AmqpSession,
    closed: bool,
    yes: bool,
    now: Instant,
}

impl Run {
    /// Checks one call's actions, then answers its requests as the glue
    /// would (appending to the same actions, checked again).
    fn after(&mut self, out: &mut Actions<Request>) {
        if self.closed {
            assert!(
                out.list.is_empty(),
                "actions after the close: {:?}",
                out.list
            );
            return;
        }
        let closes = out
            .list
            .iter()
            .filter(|a| matches!(a, Action::Close(_)))
            .count();
        assert!(closes <= 1, "{:?}", out.list);
        if closes == 1 {
            assert!(
                matches!(out.list.last(), Some(Action::Close(_))),
                "{:?}",
                out.list
            );
            self.closed = true;
            return;
        }
        let last = out.list.len();
        let list = std::mem::take(&mut out.list);
        for (i, action) in list.iter().enumerate() {
            match action {
                Action::Request(Request::Subscribe { link, .. }) => {
                    assert_eq!(i + 1, last, "a Subscribe is last");
                    let answer = if self.yes {
                        Subscribed::Yes
                    } else {
                        Subscribed::TooMany
                    };
                    let mut answer_out = Actions::default();
                    self.m.subscribed(*link, answer, self.now, &mut answer_out);
                }
                Action::Request(Request::Authenticate { .. }) => {
                    let mut answer_out = Actions::default();
                    if self.yes {
                        let identity = Identity {
                            user: None,
                            account: "default".into(),
                        };
                        let grants = Arc::new(Grants::allow_all());
                        self.m
                            .authenticated(identity, grants, self.now, &mut answer_out);
                    } else {
                        self.m.refused(self.now, &mut answer_out);
                        self.closed = true;
                    }
                }
                Action::Request(Request::Publish { ack: Some(ack), .. }) => {
                    let mut answer_out = Actions::default();
                    self.m.accepted(*ack, self.now, &mut answer_out);
                }
                _ => {}
            }
        }
    }
}

fn session(first: u8, wire: &[u8]) {
    let settings = Settings {
        limits: LIMITS,
        topic_limits: TopicLimits {
            topic_bytes_max: 64,
            topic_levels_max: 8,
        },
        anonymous: first & 2 != 0,
        container_id: "weft-fuzz".into(),
        origin: Origin::ROUTER,
        durable_supported: false,
    };
    let start = Instant::now();
    let mut run = Run {
        m: AmqpSession::new(settings, start),
        closed: false,
        yes: first & 4 == 0,
        now: start,
    };
    let header: &[u8] = if first & 1 == 0 {
        &frame::AMQP_HEADER
    } else {
        &frame::SASL_HEADER
    };
    let mut input = header.to_vec();
    input.extend_from_slice(wire);
    let mut at = 0;
    let mut out = Actions::default();
    // Pieces of 64 bytes, each 300 ms after the last.
    while at < input.len() && !run.closed {
        let end = (at + 64).min(input.len());
        let mut fed = at;
        loop {
            out.clear();
            let step = run.m.feed(&input[fed..end], run.now, &mut out);
            match step {
                Ok(Some(used)) => {
                    assert!(used > 0 && fed + used <= end);
                    fed += used;
                    run.after(&mut out);
                    if run.closed {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    run.m.malformed(&e, run.now, &mut out);
                    run.after(&mut out);
                    assert!(run.closed, "malformed input closes");
                    break;
                }
            }
        }
        // What a piece did not complete waits for the next: the driver
        // keeps it (here: the next piece starts where decoding stopped).
        at = if fed == at {
            end.max(at + 1).min(input.len())
        } else {
            fed
        };
        if run.closed {
            break;
        }
        run.now += Duration::from_millis(300);
        if run.m.next_deadline().is_some_and(|d| d <= run.now) {
            out.clear();
            run.m.handle_timeout(run.now, &mut out);
            run.after(&mut out);
            if let Some(d) = run.m.next_deadline() {
                assert!(d > run.now, "a timer re-armed in the past");
            }
        }
    }
}

pub fn check(data: &[u8]) {
    let Some((&first, wire)) = data.split_first() else {
        return;
    };
    frames(wire);
    session(first, wire);
}

/// One AMQP frame on channel 0.
fn amqp(p: Performative) -> Vec<u8> {
    let mut b = Vec::new();
    frame::write_frame(&mut b, TYPE_AMQP, 0, &p);
    b
}

pub fn seeds() -> Vec<Vec<u8>> {
    // A bare AMQP session: open (as literal bytes: container "client"),
    // begin on channel 0, attach a sender to "a", a pre-settled transfer
    // of one data section, an empty frame, a receiver link, close.
    let open = b"\x00\x00\x00\x16\x02\x00\x00\x00\x00\x53\x10\xc0\x09\x01\xa1\x06client";
    let begin = amqp(Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 100,
        outgoing_window: 100,
        handle_max: Handle(u32::MAX),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }));
    let attach = |handle: u32, role: Role| {
        amqp(Performative::Attach(Attach {
            name: format!("link-{handle}"),
            handle: Handle(handle),
            role,
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Box::new(Source {
                address: Some("a".into()),
                ..Source::default()
            })),
            target: Some(Box::new(TargetArchetype::Target(Target {
                address: Some("a".into()),
                ..Target::default()
            }))),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }))
    };
    let mut transfer = amqp(Performative::Transfer(Transfer {
        handle: Handle(0),
        delivery_id: Some(0),
        delivery_tag: Some(Binary::from(vec![0])),
        message_format: Some(0),
        settled: Some(true),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    }));
    transfer.extend_from_slice(b"\x00\x53\x75\xa0\x02hi");
    let size = transfer.len() as u32;
    transfer[..4].copy_from_slice(&size.to_be_bytes());
    let close = amqp(Performative::Close(Close { error: None }));
    let mut bare = vec![2u8];
    for part in [
        &open[..],
        &begin,
        &attach(0, Role::Sender),
        &transfer,
        &frame::HEARTBEAT,
        &attach(1, Role::Receiver),
        &close,
    ] {
        bare.extend_from_slice(part);
    }
    // SASL: a sasl-init PLAIN, then the AMQP header and the same session.
    let mut with_sasl = vec![1u8];
    with_sasl.extend_from_slice(
        b"\x00\x00\x00\x23\x02\x01\x00\x00\x00\x53\x41\xc0\x16\x02\xa3\x05PLAIN\xa0\x0c\x00guest\x00guest",
    );
    with_sasl.extend_from_slice(&frame::AMQP_HEADER);
    with_sasl.extend_from_slice(&bare[1..]);
    // Bad input: a frame over max-frame-size, and a cut performative.
    let oversize = vec![2u8, 0, 0, 8, 0, 2, 0, 0, 0];
    let mut cut = vec![2u8];
    cut.extend_from_slice(open);
    cut.extend_from_slice(b"\x00\x00\x00\x0e\x02\x00\x00\x00\x00\x53\x11\xc0\x05\x04");
    vec![bare, with_sasl, oversize, cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach the machine's depths: the bare session publishes
    /// its transfer, subscribes its receiver and ends with the client's
    /// close (so the fuzzer starts from inputs past the handshake).
    #[test]
    fn bare_seed_reaches_publish_subscribe_and_close() {
        let seed = &seeds()[0];
        let settings = Settings {
            limits: LIMITS,
            topic_limits: TopicLimits {
                topic_bytes_max: 64,
                topic_levels_max: 8,
            },
            anonymous: true,
            container_id: "weft-fuzz".into(),
            origin: Origin::ROUTER,
            durable_supported: false,
        };
        let now = Instant::now();
        let mut m = AmqpSession::new(settings, now);
        let mut input = frame::AMQP_HEADER.to_vec();
        input.extend_from_slice(&seed[1..]);
        let (mut at, mut seen) = (0, Vec::new());
        let mut out = Actions::default();
        while let Ok(Some(used)) = m.feed(&input[at..], now, &mut out) {
            at += used;
            for action in std::mem::take(&mut out.list) {
                match action {
                    Action::Request(Request::Authenticate { .. }) => {
                        let identity = Identity {
                            user: None,
                            account: "default".into(),
                        };
                        m.authenticated(identity, Arc::new(Grants::allow_all()), now, &mut out);
                        seen.push("authenticate");
                    }
                    Action::Request(Request::Publish { .. }) => seen.push("publish"),
                    Action::Request(Request::Subscribe { .. }) => seen.push("subscribe"),
                    Action::Close(_) => seen.push("close"),
                    _ => {}
                }
            }
        }
        assert_eq!(seen, ["authenticate", "publish", "subscribe", "close"]);
        assert_eq!(at, input.len());
    }
}
