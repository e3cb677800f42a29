//! The machine in virtual time: no socket, no executor; `t(ms)` is an
//! instant a test chooses.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::expiry::ExpiryQueue;
use super::*;
use crate::mqtt::codec::{self, Packet as P3};
use crate::mqtt::v5::{self, reason, Packet as P5, Properties};

mod authz;
mod durable;
mod will_expiry;

fn t(ms: u64) -> Instant {
    static ZERO: OnceLock<Instant> = OnceLock::new();
    *ZERO.get_or_init(Instant::now) + Duration::from_millis(ms)
}

fn settings() -> Settings {
    Settings {
        inflight_max: 4,
        ..Settings::default()
    }
}

fn v311_bytes(p: &P3<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(p, &mut out);
    out
}

fn v5_bytes(p: &P5<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    v5::encode(p, &mut out).unwrap();
    out
}

fn connect_v311(id: &str, keep_alive_s: u16, clean: bool) -> Vec<u8> {
    v311_bytes(&P3::Connect(codec::Connect {
        protocol_name: codec::PROTOCOL_NAME,
        level: 4,
        clean_session: clean,
        keep_alive_s,
        client_id: id,
        will: Some(codec::Will {
            topic: "will/t",
            payload: b"bye",
            qos: 0,
            retain: false,
        }),
        username: None,
        password: None,
    }))
}

fn connect_v5(
    id: &str,
    keep_alive_s: u16,
    clean: bool,
    expiry_s: u32,
    will_delay_s: Option<u32>,
) -> Vec<u8> {
    v5_bytes(&P5::Connect(v5::Connect {
        clean_start: clean,
        keep_alive_s,
        properties: Properties {
            session_expiry_interval: (expiry_s > 0).then_some(expiry_s),
            ..Default::default()
        },
        client_id: id,
        will: will_delay_s.map(|d| {
            Box::new(v5::Will {
                properties: Properties {
                    will_delay_interval: (d > 0).then_some(d),
                    ..Default::default()
                },
                topic: "will/t",
                payload: b"bye",
                qos: 0,
                retain: false,
            })
        }),
        username: None,
        password: None,
    }))
}

/// The frames written, one `Vec` per `Write`, and the other actions.
fn frames(out: &Actions<Request>) -> Vec<Vec<u8>> {
    out.list
        .iter()
        .filter_map(|a| match a {
            Action::Write { from, to } => Some(out.bytes[*from..*to].to_vec()),
            _ => None,
        })
        .collect()
}

fn requests(out: &Actions<Request>) -> Vec<&Request> {
    out.list
        .iter()
        .filter_map(|a| match a {
            Action::Request(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Feeds one whole packet; asserts it was used.
fn feed(m: &mut MqttSession, bytes: &[u8], now: Instant) -> Actions<Request> {
    let mut out = Actions::default();
    assert_eq!(m.feed(bytes, now, &mut out), bytes.len());
    out
}

/// A machine past CONNECT/CONNACK at `t(0)`.
fn connected(connect: &[u8]) -> MqttSession {
    let mut m = MqttSession::new(settings(), t(0));
    let out = feed(&mut m, connect, t(0));
    assert!(
        matches!(requests(&out)[..], [Request::Establish(_)]),
        "{:?}",
        out.list
    );
    let mut out = Actions::default();
    m.on_established(
        Established {
            client_id: "c",
            present: false,
        },
        t(0),
        &mut out,
    );
    assert_eq!(frames(&out).len(), 1, "CONNACK");
    m
}

/// The session's end after the close in `out` (`finish`, as the shard
/// calls it once the connection is closed), appended to `out`.
fn finished(mut out: Actions<Request>, m: &mut MqttSession) -> Actions<Request> {
    let reason = out.closed().expect("closed");
    m.finish(reason, &mut out);
    out
}

fn wills(out: &Actions<Request>) -> Vec<Option<Duration>> {
    requests(out)
        .into_iter()
        .filter_map(|r| match r {
            Request::Will { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

fn timeout(m: &mut MqttSession, now: Instant) -> Actions<Request> {
    let mut out = Actions::default();
    m.handle_timeout(now, &mut out);
    out
}

#[test]
fn keep_alive_expires_at_one_and_a_half_times() {
    // 10 s keep-alive: the window is 15 s from the last packet.
    let mut m = connected(&connect_v311("c", 10, true));
    assert_eq!(m.next_deadline(), Some(t(15_000)));
    assert!(timeout(&mut m, t(14_999)).list.is_empty(), "just before");
    // A PINGREQ at 14.999 s restarts the window.
    let out = feed(&mut m, &[0xc0, 0], t(14_999));
    assert_eq!(frames(&out), vec![vec![0xd0, 0]]);
    assert_eq!(m.next_deadline(), Some(t(29_999)));
    let out = finished(timeout(&mut m, t(29_999)), &mut m);
    assert_eq!(out.closed(), Some(CloseReason::KeepAliveTimeout), "at 1.5x");
    assert!(frames(&out).is_empty(), "3.1.1 has no DISCONNECT to send");
    // The will goes out at once (no delay in 3.1.1).
    assert!(matches!(
        requests(&out)[..],
        [
            Request::End { keep: None },
            Request::Will { delay: None, .. }
        ]
    ));
    assert!(m.is_closed());
}

#[test]
fn keep_alive_expiry_after_the_window_says_why_in_v5() {
    let mut m = connected(&connect_v5("c", 2, true, 0, None));
    assert_eq!(m.next_deadline(), Some(t(3_000)));
    let out = timeout(&mut m, t(3_500));
    assert_eq!(
        frames(&out),
        vec![vec![0xe0, 1, reason::KEEP_ALIVE_TIMEOUT]],
        "DISCONNECT 0x8D"
    );
    assert_eq!(out.closed(), Some(CloseReason::KeepAliveTimeout));
}

#[test]
fn no_keep_alive_no_deadline_and_connect_timeout() {
    let m = connected(&connect_v311("c", 0, true));
    assert_eq!(m.next_deadline(), None);
    let mut m = MqttSession::new(settings(), t(0));
    let limit = settings().connect_timeout;
    assert_eq!(m.next_deadline(), Some(t(0) + limit));
    assert!(timeout(&mut m, t(0) + limit - Duration::from_millis(1))
        .list
        .is_empty());
    assert_eq!(
        timeout(&mut m, t(0) + limit).closed(),
        Some(CloseReason::ConnectTimeout)
    );
}

#[test]
fn keep_alive_cap() {
    use super::connect::keep_alive;
    assert_eq!(keep_alive(30, 0), (30, false), "no cap");
    assert_eq!(keep_alive(0, 0), (0, false));
    assert_eq!(keep_alive(2, 60), (2, false), "less keeps its own");
    assert_eq!(keep_alive(60, 60), (60, false));
    assert_eq!(keep_alive(61, 60), (60, true), "more gets the cap");
    assert_eq!(keep_alive(0, 60), (60, true), "none gets the cap");
    // v5: the cap is announced as Server Keep Alive and applies.
    let capped = Settings {
        keep_alive_max_s: 20,
        ..settings()
    };
    let mut m = MqttSession::new(capped.clone(), t(0));
    feed(&mut m, &connect_v5("c", 600, true, 0, None), t(0));
    let mut out = Actions::default();
    m.on_established(
        Established {
            client_id: "c",
            present: false,
        },
        t(0),
        &mut out,
    );
    let ack = frames(&out).remove(0);
    let Ok(Some((P5::ConnAck(ack), _))) = v5::decode(&ack, &Default::default()) else {
        panic!()
    };
    assert_eq!(ack.properties.server_keep_alive, Some(20));
    assert_eq!(m.next_deadline(), Some(t(30_000)));
    // 3.1.1: more than the cap is refused with 0x02.
    let mut m = MqttSession::new(capped, t(0));
    let out = feed(&mut m, &connect_v311("c", 21, true), t(0));
    assert_eq!(frames(&out), vec![vec![0x20, 2, 0, 0x02]]);
    assert_eq!(out.closed(), Some(CloseReason::ConnectRefused));
}

#[test]
fn connect_refusals() {
    let refused = |bytes: Vec<u8>| {
        let mut m = MqttSession::new(settings(), t(0));
        let out = feed(&mut m, &bytes, t(0));
        assert!(requests(&out).is_empty(), "nothing established");
        (frames(&out), out.closed())
    };
    // 3.1.1: empty id without clean session → 0x02.
    assert_eq!(
        refused(connect_v311("", 30, false)),
        (
            vec![vec![0x20, 2, 0, 0x02]],
            Some(CloseReason::ConnectRefused)
        )
    );
    // Unknown level for the name → 0x01.
    let mut bad_level = connect_v311("c", 30, true);
    bad_level[8] = 6;
    assert_eq!(
        refused(bad_level),
        (
            vec![vec![0x20, 2, 0, 0x01]],
            Some(CloseReason::ConnectRefused)
        )
    );
    // 5: empty id with Clean Start 0 → 0x85.
    let (f, closed) = refused(connect_v5("", 30, false, 0, None));
    assert_eq!(
        f,
        vec![vec![0x20, 3, 0, reason::CLIENT_IDENTIFIER_NOT_VALID, 0]]
    );
    assert_eq!(closed, Some(CloseReason::ConnectRefused));
    // 5: id over the limit → 0x85.
    let (f, _) = refused(connect_v5(&"x".repeat(300), 30, true, 0, None));
    assert_eq!(f[0][3], reason::CLIENT_IDENTIFIER_NOT_VALID);
    // First packet not CONNECT: close, nothing said.
    assert_eq!(
        refused(vec![0xc0, 0]),
        (vec![], Some(CloseReason::ProtocolError))
    );
    // Empty id with Clean Start 1 is assigned one.
    let mut m = MqttSession::new(settings(), t(0));
    let out = feed(&mut m, &connect_v5("", 30, true, 0, None), t(0));
    let [Request::Establish(e)] = &requests(&out)[..] else {
        panic!()
    };
    assert_eq!(e.client_id, None);
}

fn publish_v311(qos: u8, id: u16, retain: bool) -> Vec<u8> {
    v311_bytes(&P3::Publish(codec::Publish {
        dup: false,
        qos,
        retain,
        topic: "a/b",
        packet_id: id,
        payload: b"x",
    }))
}

#[test]
fn qos2_inbound_exactly_once_both_versions() {
    for connect in [
        connect_v311("c", 0, true),
        connect_v5("c", 0, true, 0, None),
    ] {
        let mut m = connected(&connect);
        let v5 = m.version() == Version::V5;
        let publish = if v5 {
            v5_bytes(&P5::Publish(v5::Publish {
                dup: false,
                qos: 2,
                retain: false,
                topic: "a/b",
                packet_id: 7,
                properties: Properties::default(),
                payload: b"x",
            }))
        } else {
            publish_v311(2, 7, false)
        };
        let out = feed(&mut m, &publish, t(1));
        let [Request::Publish { ack: Some(ack), .. }] = &requests(&out)[..] else {
            panic!("{:?}", out.list)
        };
        assert_eq!((ack.qos, ack.packet_id), (2, 7));
        let mut out = Actions::default();
        m.on_published(*ack, true, &mut out);
        assert_eq!(frames(&out), vec![vec![0x50, 2, 0, 7]], "PUBREC");
        // The same id again (DUP after a lost PUBREC): PUBREC, not routed.
        let out = feed(&mut m, &publish, t(2));
        assert!(requests(&out).is_empty());
        assert_eq!(frames(&out), vec![vec![0x50, 2, 0, 7]]);
        // PUBREL → PUBCOMP; then the id is free: routed again.
        let rel = [0x62, 2, 0, 7];
        assert_eq!(frames(&feed(&mut m, &rel, t(3))), vec![vec![0x70, 2, 0, 7]]);
        let out = feed(&mut m, &publish, t(4));
        assert_eq!(requests(&out).len(), 1, "a new publish with a reused id");
        // PUBREL for an unknown id: PUBCOMP 0x92 in 5, plain in 3.1.1.
        let out = feed(&mut m, &[0x62, 2, 0, 9], t(5));
        let want = if v5 {
            vec![0x70, 3, 0, 9, reason::PACKET_IDENTIFIER_NOT_FOUND]
        } else {
            vec![0x70, 2, 0, 9]
        };
        assert_eq!(frames(&out), vec![want]);
    }
}

#[test]
fn qos2_inbound_window_is_bounded() {
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    for id in 1..=4 {
        let p = v5_bytes(&P5::Publish(v5::Publish {
            dup: false,
            qos: 2,
            retain: false,
            topic: "a",
            packet_id: id,
            properties: Properties::default(),
            payload: b"",
        }));
        let out = feed(&mut m, &p, t(1));
        assert!(out.closed().is_none());
    }
    let p = v5_bytes(&P5::Publish(v5::Publish {
        dup: false,
        qos: 2,
        retain: false,
        topic: "a",
        packet_id: 5,
        properties: Properties::default(),
        payload: b"",
    }));
    let out = feed(&mut m, &p, t(2));
    assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
    assert_eq!(
        frames(&out),
        vec![vec![0xe0, 1, reason::RECEIVE_MAXIMUM_EXCEEDED]]
    );
}

#[test]
fn qos1_acks_code_and_retained_barrier() {
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    let p = v5_bytes(&P5::Publish(v5::Publish {
        dup: false,
        qos: 1,
        retain: true,
        topic: "a",
        packet_id: 3,
        properties: Properties::default(),
        payload: b"",
    }));
    let out = feed(&mut m, &p, t(1));
    let [Request::Publish {
        ack: Some(ack),
        retain: true,
        ..
    }] = &requests(&out)[..]
    else {
        panic!()
    };
    let mut out = Actions::default();
    m.on_published(*ack, false, &mut out);
    // The barrier comes before the PUBACK; nobody matched: 0x10.
    assert!(matches!(out.list[0], Action::Request(Request::Barrier)));
    assert_eq!(
        frames(&out),
        vec![vec![0x40, 3, 0, 3, reason::NO_MATCHING_SUBSCRIBERS]]
    );
    // 3.1.1 QoS 0: no ack asked.
    let mut m = connected(&connect_v311("c", 0, true));
    let out = feed(&mut m, &publish_v311(0, 0, false), t(1));
    assert!(matches!(
        requests(&out)[..],
        [Request::Publish { ack: None, .. }]
    ));
}

#[test]
fn outbound_acks_become_requests() {
    let mut m = connected(&connect_v311("c", 0, true));
    let out = feed(&mut m, &[0x40, 2, 0, 1], t(1));
    assert!(matches!(requests(&out)[..], [Request::Acknowledge(1)]));
    let out = feed(&mut m, &[0x50, 2, 0, 2], t(1));
    assert!(matches!(requests(&out)[..], [Request::Received(2)]));
    let mut out = Actions::default();
    m.on_received(2, false, &mut out);
    assert!(out.list.is_empty(), "3.1.1 has no code for an unknown id");
    let out = feed(&mut m, &[0x70, 2, 0, 2], t(1));
    assert!(matches!(requests(&out)[..], [Request::Acknowledge(2)]));
    // 5: PUBREC with an error ends the delivery; an unknown id gets 0x92.
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    let out = feed(&mut m, &[0x50, 3, 0, 4, reason::UNSPECIFIED_ERROR], t(1));
    assert!(matches!(requests(&out)[..], [Request::Forget(4)]));
    let mut out = Actions::default();
    m.on_received(5, false, &mut out);
    assert_eq!(
        frames(&out),
        vec![vec![0x62, 3, 0, 5, reason::PACKET_IDENTIFIER_NOT_FOUND]]
    );
}

fn subscribe_v5(filters: &[&'static str]) -> Vec<u8> {
    v5_bytes(&P5::Subscribe(v5::Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|f| (*f, v5::SubscriptionOptions::default()))
            .collect(),
    }))
}

#[test]
fn empty_filters_refused_as_each_version_says() {
    // 5: SUBACK 0x8F for the empty ones, the others applied.
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    let out = feed(&mut m, &subscribe_v5(&["", "a/#", "$share/g/"]), t(1));
    let mut out = out;
    let Some(Action::Request(Request::Subscribe(mut req))) = out.list.pop() else {
        panic!()
    };
    let outcomes: Vec<_> = req.filters.iter().map(|f| f.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            SubscribeOutcome::Invalid,
            SubscribeOutcome::Pending,
            SubscribeOutcome::Invalid
        ]
    );
    req.filters[1].outcome = SubscribeOutcome::Granted { existed: false };
    let mut out = Actions::default();
    m.on_subscribed(*req, &mut out);
    assert_eq!(frames(&out), vec![vec![0x90, 6, 0, 1, 0, 0x8f, 0, 0x8f]]);
    assert!(matches!(
        requests(&out)[..],
        [Request::SendRetained { qos: 0, .. }]
    ));
    // 3.1.1: a protocol violation, the connection closes.
    let mut m = connected(&connect_v311("c", 0, true));
    let sub = v311_bytes(&P3::Subscribe {
        packet_id: 1,
        filters: vec![("a/#", 1), ("", 0)],
    });
    let out = feed(&mut m, &sub, t(1));
    assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
    assert!(!requests(&out)
        .iter()
        .any(|r| matches!(r, Request::Subscribe(_))));
    // …while a merely invalid one gets 0x80.
    let mut m = connected(&connect_v311("c", 0, true));
    let sub = v311_bytes(&P3::Subscribe {
        packet_id: 1,
        filters: vec![("a/#/b", 1)],
    });
    let mut out = feed(&mut m, &sub, t(1));
    let Some(Action::Request(Request::Subscribe(req))) = out.list.pop() else {
        panic!()
    };
    let mut out = Actions::default();
    m.on_subscribed(*req, &mut out);
    assert_eq!(frames(&out), vec![vec![0x90, 3, 0, 1, 0x80]]);
}

#[test]
fn takeover_says_so_in_v5_and_closes_in_v311() {
    let mut m = connected(&connect_v5("c", 0, true, 60, Some(0)));
    let mut out = Actions::default();
    m.close(CloseReason::TakenOver, &mut out);
    let out = finished(out, &mut m);
    assert_eq!(
        frames(&out),
        vec![vec![0xe0, 1, reason::SESSION_TAKEN_OVER]]
    );
    assert_eq!(out.closed(), Some(CloseReason::TakenOver));
    // Taken over by a clean start: the will goes (takeover is not a
    // DISCONNECT; the shard has already released the session).
    assert!(matches!(
        requests(&out)[..],
        [
            Request::End { keep: Some(_) },
            Request::Will { delay: None, .. }
        ]
    ));
    let mut m = connected(&connect_v311("c", 0, false));
    let mut out = Actions::default();
    m.close(CloseReason::TakenOver, &mut out);
    assert!(frames(&out).is_empty());
    assert_eq!(out.closed(), Some(CloseReason::TakenOver));
    // Taken over during the handshake: no CONNACK, no session kept.
    let mut m = MqttSession::new(settings(), t(0));
    feed(&mut m, &connect_v311("c", 0, false), t(0));
    let mut out = Actions::default();
    m.close(CloseReason::TakenOver, &mut out);
    let out = finished(out, &mut m);
    assert!(frames(&out).is_empty());
    assert!(matches!(requests(&out)[..], [Request::End { keep: None }]));
    // A refused CONNECT has no session to end.
    let mut m = MqttSession::new(settings(), t(0));
    let out = finished(feed(&mut m, &connect_v311("", 0, false), t(0)), &mut m);
    assert!(requests(&out).is_empty());
}

#[test]
fn topic_aliases_set_used_and_bounded() {
    let publish = |topic: &'static str, alias: u16| {
        v5_bytes(&P5::Publish(v5::Publish {
            dup: false,
            qos: 0,
            retain: false,
            topic,
            packet_id: 0,
            properties: Properties {
                topic_alias: Some(alias),
                ..Default::default()
            },
            payload: b"x",
        }))
    };
    let topic_of = |out: &Actions<Request>| match &requests(out)[..] {
        [Request::Publish { event, .. }] => event.topic().to_string(),
        other => panic!("{other:?}"),
    };
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    // Set alias 3, then use it with an empty topic.
    assert_eq!(topic_of(&feed(&mut m, &publish("a/b", 3), t(1))), "a/b");
    assert_eq!(topic_of(&feed(&mut m, &publish("", 3), t(2))), "a/b");
    // Re-set to another topic.
    assert_eq!(topic_of(&feed(&mut m, &publish("c", 3), t(3))), "c");
    assert_eq!(topic_of(&feed(&mut m, &publish("", 3), t(4))), "c");
    // Used before it was set: 0x82.
    let out = feed(&mut m, &publish("", 2), t(5));
    assert_eq!(frames(&out), vec![vec![0xe0, 1, reason::PROTOCOL_ERROR]]);
    // Above the maximum announced (64 by default): 0x94.
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    let out = feed(&mut m, &publish("a", 65), t(1));
    assert_eq!(
        frames(&out),
        vec![vec![0xe0, 1, reason::TOPIC_ALIAS_INVALID]]
    );
    assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
}

/// Found by the `mqtt_session` fuzz target: a second CONNECT of an
/// unknown level on an MQTT 5 connection decodes to "unsupported protocol
/// version" (0x84), a CONNACK-only code; the DISCONNECT before the close
/// says Protocol Error (MQTT-3.1.0-2) instead of failing to encode.
#[test]
fn second_connect_of_a_bad_level_disconnects_with_protocol_error() {
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    let mut second = connect_v5("c", 0, true, 0, None);
    second[8] = 9; // the protocol level
    let mut out = Actions::default();
    assert_eq!(m.feed(&second, t(1), &mut out), second.len());
    assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
    let written = frames(&out);
    assert_eq!(written.len(), 1, "the DISCONNECT: {:?}", out.list);
    let (packet, _) = v5::decode(&written[0], &v5::DecodeLimits::default())
        .unwrap()
        .unwrap();
    let P5::Disconnect(d) = packet else {
        panic!("{packet:?}")
    };
    assert_eq!(d.reason_code, reason::PROTOCOL_ERROR);
}

/// A takeover by a connection that starts clean ends the session: the
/// will goes at once, its delay or the session's expiry notwithstanding
/// (MQTT 5 §3.1.2.5: "or the Session ends").
#[test]
fn takeover_that_ends_the_session_publishes_the_will_now() {
    let mut m = connected(&connect_v5("c", 0, true, 60, Some(5)));
    let mut out = Actions::default();
    m.close(CloseReason::TakenOver, &mut out);
    let out = finished(out, &mut m);
    assert_eq!(wills(&out), vec![None]);
}

/// A takeover by a connection that resumes the session (Clean Start 0)
/// comes before any Will Delay Interval passed: MQTT 5 sends no will
/// (MQTT-3.1.3-9), whatever the delay; MQTT 3.1.1, which has no delay,
/// sends it as on any close the client did not ask for.
#[test]
fn takeover_that_resumes_the_session_holds_the_v5_will_back() {
    for delay_s in [0, 5] {
        let mut m = connected(&connect_v5("c", 0, true, 60, Some(delay_s)));
        let mut out = Actions::default();
        m.close(CloseReason::TakenOverResumed, &mut out);
        let out = finished(out, &mut m);
        assert_eq!(
            frames(&out),
            vec![vec![0xe0, 1, reason::SESSION_TAKEN_OVER]]
        );
        assert!(wills(&out).is_empty(), "delay {delay_s} s: {:?}", out.list);
    }
    let mut m = connected(&connect_v311("c", 0, false));
    let mut out = Actions::default();
    m.close(CloseReason::TakenOverResumed, &mut out);
    let out = finished(out, &mut m);
    assert!(frames(&out).is_empty());
    assert_eq!(wills(&out), vec![None]);
}

#[test]
fn refused_credentials_get_each_versions_code() {
    use crate::security::Refusal;
    let refused = |bytes: Vec<u8>, refusal: Refusal| {
        let mut m = MqttSession::new(settings(), t(0));
        let out = feed(&mut m, &bytes, t(0));
        let [Request::Establish(_)] = &requests(&out)[..] else {
            panic!("establish first: {:?}", out.list)
        };
        let mut out = Actions::default();
        m.on_refused(refusal, &mut out);
        assert!(m.identity().is_none());
        // Too late once refused: nothing more is said.
        let mut late = Actions::default();
        m.on_established(
            Established {
                client_id: "c",
                present: false,
            },
            t(0),
            &mut late,
        );
        assert!(late.list.is_empty());
        (frames(&out), out.closed())
    };
    let closed = Some(CloseReason::ConnectRefused);
    // 3.1.1 §3.2.2.3: 0x04 bad user name or password, 0x05 not authorized.
    assert_eq!(
        refused(connect_v311("c", 30, true), Refusal::BadCredentials),
        (vec![vec![0x20, 2, 0, 0x04]], closed)
    );
    assert_eq!(
        refused(connect_v311("c", 30, true), Refusal::NotAuthorized),
        (vec![vec![0x20, 2, 0, 0x05]], closed)
    );
    // 5: 0x86 and 0x87.
    let (f, c) = refused(connect_v5("c", 30, true, 0, None), Refusal::BadCredentials);
    assert_eq!((f[0][3], c), (reason::BAD_USER_NAME_OR_PASSWORD, closed));
    let (f, c) = refused(connect_v5("c", 30, true, 0, None), Refusal::NotAuthorized);
    assert_eq!((f[0][3], c), (reason::NOT_AUTHORIZED, closed));
}
