//! The machine's side of persistence: a publish the log could not make
//! durable is refused as each version can, a PUBREL asks for its id to be
//! journaled free, and a resumed session's inbound QoS 2 ids (from the
//! log) keep a resent PUBLISH from being routed twice.

use super::*;

fn publish_v5(qos: u8, id: u16) -> Vec<u8> {
    v5_bytes(&P5::Publish(v5::Publish {
        dup: false,
        qos,
        retain: false,
        topic: "a/b",
        packet_id: id,
        properties: Properties::default(),
        payload: b"x",
    }))
}

/// The ack a publish asked for.
fn ack_of(out: &Actions<Request>) -> PublishAck {
    match &requests(out)[..] {
        [Request::Publish { ack: Some(ack), .. }] => *ack,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_publish_the_log_refused_gets_0x97_in_v5_and_a_close_in_v311() {
    let mut m = connected(&connect_v5("c", 0, true, 0, None));
    let ack = ack_of(&feed(&mut m, &publish_v5(1, 3), t(1)));
    let mut out = Actions::default();
    m.on_publish_refused(ack, &mut out);
    assert_eq!(frames(&out), vec![vec![0x40, 3, 0, 3, 0x97]], "PUBACK 0x97");
    // QoS 2: PUBREC 0x97, and the id is free again (a resend is routed).
    let ack = ack_of(&feed(&mut m, &publish_v5(2, 4), t(2)));
    let mut out = Actions::default();
    m.on_publish_refused(ack, &mut out);
    assert_eq!(frames(&out), vec![vec![0x50, 3, 0, 4, 0x97]], "PUBREC 0x97");
    assert_eq!(m.awaiting_release(), 0);
    let out = feed(&mut m, &publish_v5(2, 4), t(3));
    assert_eq!(requests(&out).len(), 1, "routed again");

    let mut m = connected(&connect_v311("c", 0, true));
    let ack = ack_of(&feed(&mut m, &publish_v311(1, 3, false), t(1)));
    let mut out = Actions::default();
    m.on_publish_refused(ack, &mut out);
    assert!(frames(&out).is_empty(), "3.1.1 has no refusal");
    assert!(
        matches!(
            out.list.last(),
            Some(Action::Close(CloseReason::StorageFailed))
        ),
        "{:?}",
        out.list
    );
}

#[test]
fn pubrel_of_a_known_id_asks_for_its_release_and_restored_ids_hold() {
    let mut m = connected(&connect_v5("c", 0, false, 60, None));
    // Resumed with id 9 awaiting PUBREL (the log kept it).
    m.restore_awaiting_release(&[9]);
    assert_eq!(m.awaiting_release(), 1);
    // The client resends the PUBLISH: PUBREC, not routed again.
    let out = feed(&mut m, &publish_v5(2, 9), t(1));
    assert!(requests(&out).is_empty(), "{:?}", out.list);
    assert_eq!(frames(&out), vec![vec![0x50, 2, 0, 9]]);
    // PUBREL: journaled free (`Released`), PUBCOMP.
    let out = feed(&mut m, &[0x62, 2, 0, 9], t(2));
    assert!(
        matches!(requests(&out)[..], [Request::Released(9)]),
        "{:?}",
        out.list
    );
    assert_eq!(frames(&out), vec![vec![0x70, 2, 0, 9]]);
    // An unknown id: no release asked.
    let out = feed(&mut m, &[0x62, 2, 0, 10], t(3));
    assert!(requests(&out).is_empty(), "{:?}", out.list);
}
