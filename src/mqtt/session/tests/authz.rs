//! Authorization in the machine: each version's answer to a denied
//! SUBSCRIBE, PUBLISH and will, and the checked mark of a wide filter.

use std::sync::Arc;

use super::*;
use crate::config::{RulesConfig, SecurityConfig};
use crate::security::{Denied, Grants, Permissions};
use crate::topic::trie::CHECKED;

/// Anonymous grants denying `deny` (both directions), for client `c`.
fn grants(deny: &[&str]) -> Arc<Grants> {
    let c = SecurityConfig {
        anonymous: RulesConfig {
            allow: Vec::new(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        },
        ..SecurityConfig::default()
    };
    Permissions::from_config(&c)
        .unwrap()
        .grants(None, "c")
        .unwrap()
}

/// A machine past CONNECT, authorized with `grants`, then CONNACK.
fn authorized(connect: &[u8], grants: Arc<Grants>) -> MqttSession {
    let mut m = MqttSession::new(settings(), t(0));
    feed(&mut m, connect, t(0));
    let mut out = Actions::default();
    assert!(m.on_authorized(grants, &mut out));
    assert!(out.list.is_empty());
    m.on_established(
        Established {
            client_id: "c",
            present: false,
        },
        t(0),
        &mut out,
    );
    m
}

fn denied(out: &Actions<Request>) -> Vec<Denied> {
    requests(out)
        .into_iter()
        .filter_map(|r| match r {
            Request::Denied(d) => Some(*d),
            _ => None,
        })
        .collect()
}

fn publish(version_5: bool, topic: &'static str, qos: u8, id: u16) -> Vec<u8> {
    if version_5 {
        v5_bytes(&P5::Publish(v5::Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: id,
            properties: Properties::default(),
            payload: b"x",
        }))
    } else {
        v311_bytes(&P3::Publish(codec::Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: id,
            payload: b"x",
        }))
    }
}

/// The outcome and flags of each filter of the Subscribe request in `out`.
fn subscribe_request(out: &mut Actions<Request>) -> SubscribeRequest {
    let i = out
        .list
        .iter()
        .position(|a| matches!(a, Action::Request(Request::Subscribe(_))))
        .expect("a Subscribe request");
    match out.list.remove(i) {
        Action::Request(Request::Subscribe(s)) => *s,
        _ => unreachable!(),
    }
}

/// Grants what is pending, as the glue would, and returns the SUBACK's
/// codes and the denials counted.
fn suback(m: &mut MqttSession, mut request: SubscribeRequest) -> (Vec<u8>, Vec<Denied>) {
    for f in request.filters.iter_mut() {
        if f.outcome == SubscribeOutcome::Pending {
            f.outcome = SubscribeOutcome::Granted { existed: false };
        }
    }
    let mut out = Actions::default();
    m.on_subscribed(request, &mut out);
    let frame = frames(&out).remove(0);
    (frame, denied(&out))
}

#[test]
fn subscribe_denied_checked_or_granted_in_both_versions() {
    let g = grants(&["secret/#"]);
    // 3.1.1: SUBACK 0x80 for the denied filter.
    let mut m = authorized(&connect_v311("c", 30, true), g.clone());
    let sub = v311_bytes(&P3::Subscribe {
        packet_id: 1,
        filters: vec![
            ("secret/x", 1),
            ("#", 1),
            ("public/#", 1),
            ("$share/g/secret/#", 0),
        ],
    });
    let mut out = feed(&mut m, &sub, t(1));
    let request = subscribe_request(&mut out);
    let marks: Vec<_> = request
        .filters
        .iter()
        .map(|f| (f.outcome, f.flags & CHECKED != 0))
        .collect();
    assert_eq!(
        marks,
        vec![
            (SubscribeOutcome::Denied, false),
            (SubscribeOutcome::Pending, true),
            (SubscribeOutcome::Pending, false),
            (SubscribeOutcome::Denied, false),
        ]
    );
    let (frame, counted) = suback(&mut m, request);
    assert_eq!(frame, vec![0x90, 6, 0, 1, 0x80, 1, 1, 0x80]);
    assert_eq!(counted, vec![Denied::Subscribe; 2]);

    // 5: 0x87 Not authorized.
    let mut m = authorized(&connect_v5("c", 30, true, 0, None), g);
    let mut out = feed(&mut m, &subscribe_v5(&["secret/#", "public/x"]), t(1));
    let request = subscribe_request(&mut out);
    let (frame, counted) = suback(&mut m, request);
    assert_eq!(&frame[frame.len() - 2..], [reason::NOT_AUTHORIZED, 0]);
    assert_eq!(counted, vec![Denied::Subscribe]);
}

#[test]
fn denied_publish_in_311_is_dropped_and_still_acknowledged() {
    let mut m = authorized(&connect_v311("c", 30, true), grants(&["secret/#"]));
    // QoS 0: dropped, counted, nothing said.
    let out = feed(&mut m, &publish(false, "secret/a", 0, 0), t(1));
    assert!(frames(&out).is_empty());
    assert_eq!(denied(&out), vec![Denied::Publish]);
    assert_eq!(requests(&out).len(), 1, "not routed: {:?}", out.list);
    // QoS 1: PUBACK, not routed.
    let out = feed(&mut m, &publish(false, "secret/a", 1, 7), t(1));
    assert_eq!(frames(&out), vec![vec![0x40, 2, 0, 7]]);
    assert_eq!(denied(&out), vec![Denied::Publish]);
    assert_eq!(requests(&out).len(), 1);
    // QoS 2: PUBREC, then PUBCOMP for its PUBREL; not routed.
    let out = feed(&mut m, &publish(false, "secret/a", 2, 8), t(1));
    assert_eq!(frames(&out), vec![vec![0x50, 2, 0, 8]]);
    assert_eq!(m.awaiting_release(), 0);
    let out = feed(&mut m, &v311_bytes(&P3::PubRel(8)), t(1));
    assert_eq!(frames(&out), vec![vec![0x70, 2, 0, 8]]);
    // Allowed: routed as before.
    let out = feed(&mut m, &publish(false, "public/a", 1, 9), t(1));
    assert!(matches!(requests(&out)[..], [Request::Publish { .. }]));
}

#[test]
fn denied_publish_in_5_gets_0x87() {
    let mut m = authorized(&connect_v5("c", 30, true, 0, None), grants(&["secret/#"]));
    let out = feed(&mut m, &publish(true, "secret/a", 1, 7), t(1));
    let f = frames(&out);
    assert_eq!((f[0][0], f[0][4]), (0x40, reason::NOT_AUTHORIZED));
    let out = feed(&mut m, &publish(true, "secret/a", 2, 8), t(1));
    let f = frames(&out);
    assert_eq!((f[0][0], f[0][4]), (0x50, reason::NOT_AUTHORIZED));
    assert_eq!(denied(&out), vec![Denied::Publish]);
    let out = feed(&mut m, &publish(true, "secret/a", 0, 0), t(1));
    assert!(frames(&out).is_empty());
    assert_eq!(denied(&out), vec![Denied::Publish]);
}

#[test]
fn a_will_that_may_not_be_published_refuses_connect() {
    for (connect, code) in [
        (connect_v311("c", 30, true), None),
        (
            connect_v5("c", 30, true, 0, Some(0)),
            Some(reason::NOT_AUTHORIZED),
        ),
    ] {
        let mut m = MqttSession::new(settings(), t(0));
        feed(&mut m, &connect, t(0));
        let mut out = Actions::default();
        assert!(!m.on_authorized(grants(&["will/#"]), &mut out));
        assert_eq!(out.closed(), Some(CloseReason::ConnectRefused));
        assert_eq!(denied(&out), vec![Denied::Publish]);
        let f = frames(&out);
        match code {
            None => assert_eq!(f, vec![vec![0x20, 2, 0, 0x05]]),
            Some(code) => assert_eq!(f[0][3], code),
        }
    }
    // Rules that let it publish its will: accepted.
    let mut m = MqttSession::new(settings(), t(0));
    feed(&mut m, &connect_v311("c", 30, true), t(0));
    let mut out = Actions::default();
    assert!(m.on_authorized(grants(&["other/#"]), &mut out));
    assert!(out.list.is_empty());
}

#[test]
fn no_rules_keep_no_grants() {
    let mut m = MqttSession::new(settings(), t(0));
    feed(&mut m, &connect_v311("c", 30, true), t(0));
    let mut out = Actions::default();
    assert!(m.on_authorized(Arc::new(Grants::allow_all()), &mut out));
    assert!(m.grants().is_none(), "nothing to check per event");
}
