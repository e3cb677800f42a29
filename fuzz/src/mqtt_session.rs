//! The MQTT session machine, `weft::mqtt::session`, fed a script (see
//! [`crate::script`]): the client's bytes, decoded and handled as the
//! connection driver does (decode from the read buffer, handle each
//! packet, keep the rest; bytes that do not decode go to `malformed`),
//! virtual time passing (`handle_timeout` once `next_deadline` has come),
//! and closes decided by the driver (`closing`, then `finish`). Every
//! request that needs an answer is answered as the glue
//! (`shard::driver_mqtt`) does, right after the call, with an outcome the
//! script chooses (matched or not, granted / existed / full, known or
//! not, session present or not).
//!
//! Properties, after every call:
//! - every frame written decodes, whole, with the MQTT codec of the
//!   connection's version (the client's side of the protocol reading it);
//! - a `Close` is the last action of its call, and there is at most one;
//! - once closed, no call yields any action, except `finish` (once, right
//!   after the close): requests only (`End`, `Will`), and nothing again;
//! - after `handle_timeout(now)`, `next_deadline` is None or after `now`;
//! - QoS 2 publishes awaiting release never exceed `inflight_max`;
//! - no panic (overflow checks and debug assertions are on).

use std::time::{Duration, Instant};

use weft::mqtt::codec::{self, Packet as P3};
use weft::mqtt::session::{
    Action, Actions, CloseReason, Deadline, Established, MqttSession, Request, Settings,
    SubscribeOutcome, Version,
};
use weft::mqtt::v5::{self, Packet as P5, Properties};

use crate::script::{Script, Seed, Step};

/// Small limits, so the fuzzer reaches them.
fn settings() -> Settings {
    let mut s = Settings {
        inflight_max: 3,
        packet_bytes_max: 4096,
        filters_per_packet_max: 4,
        topic_alias_maximum: 3,
        connect_timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    s.topic.topic_levels_max = 8;
    s.topic.topic_bytes_max = 64;
    s
}

/// Reading the server's frames: nothing the server writes is refused.
const V311_LOOSE: codec::DecodeLimits = codec::DecodeLimits {
    packet_bytes_max: 1 << 20,
    filters_per_packet_max: 1 << 16,
};
const V5_LOOSE: v5::DecodeLimits = v5::DecodeLimits {
    packet_bytes_max: 1 << 20,
    properties_bytes_max: 1 << 20,
    filters_per_packet_max: 1 << 16,
};

const DRIVER_CLOSES: [CloseReason; 7] = [
    CloseReason::PeerClosed,
    CloseReason::ReadError,
    CloseReason::WriteError,
    CloseReason::SlowConsumer,
    CloseReason::ServerShutdown,
    CloseReason::TakenOver,
    CloseReason::KeepAliveTimeout,
];

struct Run<'a> {
    m: MqttSession,
    script: Script<'a>,
    inflight_max: usize,
    now: Instant,
    /// The close, once one was decided (by the machine or the driver).
    closed: Option<CloseReason>,
}

impl Run<'_> {
    /// The checks on the actions of one call, then the glue's answers to
    /// its requests (each a call of its own, checked the same way).
    fn after(&mut self, out: Actions<Request>) {
        if self.closed.is_some() {
            assert!(
                out.list.is_empty(),
                "actions after the close: {:?}",
                out.list
            );
            return;
        }
        let version = self.m.version();
        for (i, action) in out.list.iter().enumerate() {
            match action {
                Action::Write { from, to } => frames_decode(version, &out.bytes[*from..*to]),
                Action::Close(_) => {
                    assert_eq!(i + 1, out.list.len(), "a close is last: {:?}", out.list)
                }
                Action::Request(_) => {}
            }
        }
        assert!(self.m.awaiting_release() <= self.inflight_max);
        let close = out.closed();
        let mut list = out.list;
        for action in list.drain(..) {
            let Action::Request(request) = action else {
                continue;
            };
            let mut answer = Actions::default();
            match request {
                Request::Establish(e) => {
                    let present = e.resume && self.script.outcome() % 2 == 1;
                    let id = e.client_id.as_deref().unwrap_or("assigned-1").to_owned();
                    let established = Established {
                        client_id: &id,
                        present,
                    };
                    self.m.on_established(established, self.now, &mut answer);
                }
                Request::Publish { ack: Some(ack), .. } => {
                    let matched = self.script.outcome().is_multiple_of(2);
                    self.m.on_published(ack, matched, &mut answer);
                }
                Request::Subscribe(mut sub) => {
                    for f in sub.filters.iter_mut() {
                        if f.outcome == SubscribeOutcome::Pending {
                            f.outcome = match self.script.outcome() % 4 {
                                1 => SubscribeOutcome::Granted { existed: true },
                                2 => SubscribeOutcome::Full,
                                _ => SubscribeOutcome::Granted { existed: false },
                            };
                        }
                    }
                    self.m.on_subscribed(*sub, &mut answer);
                }
                Request::Unsubscribe(mut unsub) => {
                    for (_, outcome) in unsub.filters.iter_mut() {
                        if outcome.is_some() {
                            *outcome = Some(self.script.outcome().is_multiple_of(2));
                        }
                    }
                    self.m.on_unsubscribed(*unsub, &mut answer);
                }
                Request::Received(id) => {
                    let known = self.script.outcome().is_multiple_of(2);
                    self.m.on_received(id, known, &mut answer);
                }
                _ => continue,
            }
            self.after(answer);
        }
        if let Some(reason) = close {
            assert!(self.m.is_closed(), "closed by {reason:?} but not closed");
            self.finish(reason);
        }
    }

    /// The shard ends the session once the connection closed: `End` and
    /// `Will` only, once.
    fn finish(&mut self, reason: CloseReason) {
        self.closed = Some(reason);
        let mut out = Actions::default();
        self.m.finish(reason, &mut out);
        for action in &out.list {
            assert!(
                matches!(
                    action,
                    Action::Request(Request::End { .. } | Request::Will { .. })
                ),
                "finish: {:?}",
                out.list
            );
        }
        let mut again = Actions::default();
        self.m.finish(reason, &mut again);
        assert!(again.list.is_empty(), "a second finish: {:?}", again.list);
    }

    /// One read: decode and handle every whole packet, keep the rest.
    fn feed(&mut self, buf: &mut Vec<u8>, bytes: &[u8]) {
        if self.closed.is_some() {
            return; // the driver reads no more
        }
        buf.extend_from_slice(bytes);
        let mut at = 0;
        while self.closed.is_none() {
            let mut out = Actions::default();
            match self.m.decode(&buf[at..]) {
                Ok(Some((packet, used))) => {
                    assert!(used > 0 && at + used <= buf.len());
                    at += used;
                    self.m.handle(packet, self.now, &mut out);
                }
                Ok(None) => break,
                Err(e) => {
                    self.m.malformed(&e, self.now, &mut out);
                    assert!(out.closed().is_some(), "malformed bytes close: {e}");
                }
            }
            self.after(out);
        }
        buf.drain(..at);
    }
}

/// Every frame in `bytes` decodes whole with the codec of `version`.
fn frames_decode(version: Version, mut bytes: &[u8]) {
    assert!(!bytes.is_empty(), "an empty write");
    while !bytes.is_empty() {
        let used = match version {
            Version::V5 => match v5::decode(bytes, &V5_LOOSE) {
                Ok(Some((_, used))) => used,
                other => panic!("MQTT 5 frame {bytes:x?}: {other:?}"),
            },
            Version::V31 | Version::V311 => match codec::decode(bytes, &V311_LOOSE) {
                Ok(Some((_, used))) => used,
                other => panic!("MQTT 3.1.1 frame {bytes:x?}: {other:?}"),
            },
        };
        bytes = &bytes[used..];
    }
}

pub fn check(data: &[u8]) {
    let settings = settings();
    let t0 = Instant::now();
    let mut run = Run {
        inflight_max: settings.inflight_max,
        m: MqttSession::new(settings, t0),
        script: Script::new(data),
        now: t0,
        closed: None,
    };
    let mut buf = Vec::new();
    while let Some(step) = run.script.step() {
        match step {
            Step::Feed(bytes) => run.feed(&mut buf, bytes),
            Step::Wait(d) => {
                run.now += d;
                if run.m.next_deadline().is_some_and(|at| at <= run.now) {
                    let mut out = Actions::default();
                    run.m.handle_timeout(run.now, &mut out);
                    if let Some(at) = run.m.next_deadline() {
                        assert!(at > run.now, "deadline {at:?} not after {:?}", run.now);
                    }
                    run.after(out);
                }
            }
            Step::Close(which) => {
                let reason = DRIVER_CLOSES[usize::from(which) % DRIVER_CLOSES.len()];
                let mut out = Actions::default();
                run.m.closing(reason, &mut out);
                assert!(
                    out.list.iter().all(|a| matches!(a, Action::Write { .. })),
                    "closing writes only: {:?}",
                    out.list
                );
                if run.closed.is_none() {
                    out.close(reason);
                }
                run.after(out);
            }
            Step::Other(_) => {}
        }
    }
}

fn v311(p: &P3<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(p, &mut out);
    out
}

fn v5(p: &P5<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    v5::encode(p, &mut out).expect("a seed packet encodes");
    out
}

pub fn seeds() -> Vec<Vec<u8>> {
    let connect = |level: u8, clean: bool, keep_alive_s: u16| {
        v311(&P3::Connect(codec::Connect {
            protocol_name: if level == 3 {
                codec::PROTOCOL_NAME_31
            } else {
                codec::PROTOCOL_NAME
            },
            level,
            clean_session: clean,
            keep_alive_s,
            client_id: "c1",
            will: Some(codec::Will {
                topic: "will/t",
                payload: b"bye",
                qos: 1,
                retain: false,
            }),
            username: None,
            password: None,
        }))
    };
    let publish = |qos: u8, packet_id: u16| {
        v311(&P3::Publish(codec::Publish {
            dup: false,
            qos,
            retain: qos == 1,
            topic: "a/b",
            packet_id,
            payload: b"hi",
        }))
    };
    let subscribe = v311(&P3::Subscribe {
        packet_id: 1,
        filters: vec![("a/#", 2), ("+/b", 0), ("bad/#/x", 1)],
    });
    let unsubscribe = v311(&P3::Unsubscribe {
        packet_id: 2,
        filters: vec!["a/#", "x"],
    });
    let mut all = Vec::new();
    // 3.1.1: subscribe, QoS 0/1/2 with the release, ping, disconnect.
    let mut qos2 = Vec::new();
    for id in 10..14 {
        qos2.extend(publish(2, id));
    }
    all.push(
        Seed::default()
            .feed(&connect(4, true, 10))
            .feed(&subscribe)
            .feed(&publish(0, 0))
            .feed(&publish(1, 5))
            .feed(&publish(2, 6))
            .feed(&v311(&P3::PubRel(6)))
            .feed(&v311(&P3::PubRec(3)))
            .feed(&v311(&P3::PubAck(4)))
            .feed(&unsubscribe)
            .feed(&v311(&P3::PingReq))
            .feed(&v311(&P3::Disconnect))
            .0,
    );
    // 3.1, kept session; QoS 2 past inflight_max; keep-alive runs out.
    all.push(
        Seed::default()
            .feed(&connect(3, false, 2))
            .feed(&qos2)
            .wait(10)
            .wait(20)
            .0,
    );
    // No CONNECT in time; then a driver close after CONNECT.
    all.push(Seed::default().wait(20).0);
    all.push(
        Seed::default()
            .feed(&connect(4, false, 0))
            .feed(&publish(1, 1)[..3])
            .close(3)
            .0,
    );
    // MQTT 5: aliases, QoS 1/2, subscribe with options, DISCONNECT.
    let connect5 = v5(&P5::Connect(v5::Connect {
        clean_start: false,
        keep_alive_s: 30,
        properties: Properties {
            session_expiry_interval: Some(60),
            request_response_information: Some(true),
            ..Default::default()
        },
        client_id: "",
        will: Some(Box::new(v5::Will {
            properties: Properties {
                will_delay_interval: Some(5),
                ..Default::default()
            },
            topic: "will/t",
            payload: b"bye",
            qos: 0,
            retain: false,
        })),
        username: None,
        password: None,
    }));
    let publish5 = |qos: u8, packet_id: u16, topic: &str, alias: Option<u16>| {
        v5(&P5::Publish(v5::Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id,
            properties: Properties {
                topic_alias: alias,
                ..Default::default()
            },
            payload: b"hi",
        }))
    };
    let subscribe5 = v5(&P5::Subscribe(v5::Subscribe {
        packet_id: 1,
        properties: Properties {
            subscription_identifiers: vec![7],
            ..Default::default()
        },
        filters: vec![
            (
                "a/#",
                v5::SubscriptionOptions {
                    qos: 2,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: v5::RetainHandling::SendIfNew,
                },
            ),
            (
                "$share/g/x",
                v5::SubscriptionOptions {
                    qos: 1,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: v5::RetainHandling::SendAtSubscribe,
                },
            ),
        ],
    }));
    let pubrel5 = v5(&P5::PubRel(v5::PubResp::ok(9)));
    all.push(
        Seed::default()
            .feed(&connect5)
            .feed(&subscribe5)
            .feed(&publish5(1, 3, "a/b", Some(1)))
            .feed(&publish5(0, 0, "", Some(1)))
            .feed(&publish5(2, 9, "a/c", None))
            .feed(&pubrel5)
            .feed(&v5(&P5::PubRec(v5::PubResp::ok(4))))
            .feed(&[0xc0, 0x00])
            .wait(30)
            .feed(&[0xe0, 0x00])
            .0,
    );
    // MQTT 5: a malformed packet after CONNECT, and a bad CONNECT.
    all.push(
        Seed::default()
            .feed(&connect5)
            .feed(&[0x30, 0x02, 0x00, 0x09])
            .0,
    );
    all.push(
        Seed::default()
            .feed(&connect5[..connect5.len() - 1])
            .feed(&[0xff])
            .0,
    );
    all
}
