//! Wills and session expiry in virtual time: when a will is published
//! (or not) at a disconnect, session expiry cutting a will delay short,
//! and the shard's expiry queue ordering by deadline.

use super::*;

#[test]
fn will_rules_on_disconnect() {
    let disconnect = |code: u8| v5_bytes(&P5::Disconnect(v5::ReasonOnly::new(code)));
    // DISCONNECT 0x00: no will.
    let mut m = connected(&connect_v5("c", 0, true, 0, Some(0)));
    let out = finished(feed(&mut m, &disconnect(reason::SUCCESS), t(1)), &mut m);
    assert_eq!(out.closed(), Some(CloseReason::ClientDisconnect));
    assert!(wills(&out).is_empty());
    // DISCONNECT 0x04: the will, now.
    let mut m = connected(&connect_v5("c", 0, true, 0, Some(0)));
    let out = feed(
        &mut m,
        &disconnect(reason::DISCONNECT_WITH_WILL_MESSAGE),
        t(1),
    );
    let out = finished(out, &mut m);
    assert_eq!(wills(&out), vec![None]);
    // Abnormal end: the will.
    let mut m = connected(&connect_v5("c", 0, true, 0, Some(0)));
    let mut out = Actions::default();
    m.close(CloseReason::PeerClosed, &mut out);
    let out = finished(out, &mut m);
    assert_eq!(wills(&out), vec![None]);
    // Shutdown: no will (other shards may be gone).
    let mut m = connected(&connect_v5("c", 0, true, 0, Some(0)));
    let mut out = Actions::default();
    m.close(CloseReason::ServerShutdown, &mut out);
    let out = finished(out, &mut m);
    assert!(wills(&out).is_empty());
    assert_eq!(
        frames(&out),
        vec![vec![0xe0, 1, reason::SERVER_SHUTTING_DOWN]]
    );
    // 3.1.1 DISCONNECT: no will.
    let mut m = connected(&connect_v311("c", 0, true));
    let out = finished(feed(&mut m, &[0xe0, 0], t(1)), &mut m);
    assert!(wills(&out).is_empty());
    assert!(matches!(requests(&out)[..], [Request::End { keep: None }]));
}

#[test]
fn disconnect_session_expiry_rules() {
    let with_expiry = |s: u32| {
        v5_bytes(&P5::Disconnect(v5::ReasonOnly {
            reason_code: 0,
            properties: Properties {
                session_expiry_interval: Some(s),
                ..Default::default()
            },
        }))
    };
    // From 0 to non-zero: a protocol error (MQTT-3.14.2-2).
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    let out = feed(&mut m, &with_expiry(10), t(1));
    assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
    // 60 s → 0: not kept.
    let mut m = connected(&connect_v5("c", 0, true, 60, None));
    let out = finished(feed(&mut m, &with_expiry(0), t(1)), &mut m);
    assert!(matches!(requests(&out)[..], [Request::End { keep: None }]));
    // 60 s → 5 s: kept 5 s.
    let mut m = connected(&connect_v5("c", 0, true, 60, None));
    let out = finished(feed(&mut m, &with_expiry(5), t(1)), &mut m);
    assert!(matches!(
        requests(&out)[..],
        [Request::End { keep: Some(d) }] if *d == Duration::from_secs(5)
    ));
}

#[test]
fn will_delay_is_cut_short_by_session_expiry() {
    let s = Duration::from_secs;
    // The earlier of delay and expiry; no delay or no kept session: now.
    assert_eq!(will_delay(5, Some(s(2))), Some(s(2)), "expiry first");
    assert_eq!(will_delay(5, Some(s(5))), Some(s(5)), "at the same time");
    assert_eq!(will_delay(5, Some(s(6))), Some(s(5)), "delay first");
    assert_eq!(will_delay(0, Some(s(6))), None);
    assert_eq!(
        will_delay(5, None),
        None,
        "session ends with the connection"
    );
    // Through the machine: a 5 s delay, a 2 s expiry, dropped at once.
    let mut m = connected(&connect_v5("c", 0, true, 2, Some(5)));
    let mut out = Actions::default();
    m.close(CloseReason::PeerClosed, &mut out);
    let out = finished(out, &mut m);
    assert_eq!(wills(&out), vec![Some(s(2))]);
    // Expiry capped by the configuration: offline_session_expiry_s = 1.
    let mut m = MqttSession::new(
        Settings {
            offline_session_expiry_s: 1,
            ..settings()
        },
        t(0),
    );
    feed(&mut m, &connect_v5("c", 0, true, 60, Some(5)), t(0));
    let mut out = Actions::default();
    m.on_established(
        Established {
            client_id: "c",
            present: false,
        },
        t(0),
        &mut out,
    );
    let mut out = Actions::default();
    m.close(CloseReason::PeerClosed, &mut out);
    let out = finished(out, &mut m);
    assert_eq!(wills(&out), vec![Some(s(1))]);
}

/// The shard's park queue in virtual time: a short expiry parked after a
/// long one is due on time, exactly at its deadline, not before.
#[test]
fn expiry_queue_orders_by_deadline_not_by_parking() {
    let mut q = ExpiryQueue::default();
    q.push(t(3_600_000), "long");
    q.push(t(5_000), "five");
    q.push(t(2_000), "two");
    q.push(t(5_000), "five-again");
    assert_eq!(q.next_deadline(), Some(t(2_000)));
    assert_eq!(q.pop_due(t(1_999)), None, "before");
    assert_eq!(q.pop_due(t(2_000)), Some("two"), "at");
    assert_eq!(q.pop_due(t(4_999)), None);
    // After: both due, in parking order.
    assert_eq!(q.pop_due(t(5_001)), Some("five"));
    assert_eq!(q.pop_due(t(5_001)), Some("five-again"));
    assert_eq!(q.pop_due(t(6_000)), None, "the hour-long one waits");
    q.retain(|s| *s != "long");
    assert!(q.is_empty());
}

/// Reconnects in between: a session parked at 0 with 5 s, resumed at 3 s
/// and parked again at 4 s, ends at 9 s, not 5 s (the stale entry is
/// skipped by the owner, which sees the session online or re-parked).
#[test]
fn expiry_with_a_reconnect_in_between() {
    let mut q = ExpiryQueue::default();
    let mut generation = 1; // the shard's "is this parking still current"
    q.push(t(5_000), 1);
    // Resumed at 3 s, dropped again at 4 s: parked anew.
    generation += 1;
    q.push(t(9_000), generation);
    let current = |g: u32| g == generation;
    let due = |q: &mut ExpiryQueue<u32>, now| {
        std::iter::from_fn(|| q.pop_due(now))
            .filter(|g| current(*g))
            .collect::<Vec<_>>()
    };
    assert!(
        due(&mut q, t(5_000)).is_empty(),
        "the old deadline is stale"
    );
    assert!(due(&mut q, t(8_999)).is_empty());
    assert_eq!(due(&mut q, t(9_000)), vec![2]);
}
