use super::*;
use crate::persist::records::{Record, SessionOpen};

fn open(sn: u64, gen: u64, id: &str) -> Record {
    Record::Session(Box::new(SessionOpen {
        sn,
        gen,
        client_id: id.into(),
        version: 4,
        expiry_s: None,
        subscriptions: vec![("a/#".into(), 1)],
        identifiers: vec![],
        awaiting_release: vec![],
        will: None,
    }))
}

fn ev(n: u32) -> Event {
    Event::new("a/x", &n.to_be_bytes(), 1, false)
}

fn log(records: Vec<Record>) -> Vec<(u8, Vec<u8>)> {
    records.iter().map(Record::to_bytes).collect()
}

#[test]
fn queued_sent_and_acknowledged_fold_into_the_backlog() {
    let r = replay([log(vec![
        open(1, 10, "c"),
        Record::Queue {
            sn: 1,
            seq: 1,
            qos: 1,
            event: ev(1),
        },
        Record::Queue {
            sn: 1,
            seq: 2,
            qos: 2,
            event: ev(2),
        },
        Record::Queue {
            sn: 1,
            seq: 3,
            qos: 1,
            event: ev(3),
        },
        Record::Queue {
            sn: 1,
            seq: 4,
            qos: 1,
            event: ev(4),
        },
        Record::Sent {
            sn: 1,
            seq: 1,
            pid: 7,
        },
        Record::Sent {
            sn: 1,
            seq: 2,
            pid: 8,
        },
        Record::Sent {
            sn: 1,
            seq: 3,
            pid: 9,
        },
        Record::Done { sn: 1, pid: 7 },
        Record::Rel { sn: 1, pid: 8 },
        Record::Sub {
            sn: 1,
            filter: "b".into(),
            qos: 2,
        },
        Record::Unsub {
            sn: 1,
            filter: "a/#".into(),
        },
        Record::InQos2 { sn: 1, pid: 5 },
        Record::InQos2 { sn: 1, pid: 6 },
        Record::InRel { sn: 1, pid: 5 },
        Record::Offline {
            sn: 1,
            wall_ms: 77,
            expiry_s: Some(30),
        },
    ])]);
    assert_eq!(r.sessions.len(), 1);
    let s = &r.sessions[0];
    assert_eq!(&*s.open.client_id, "c");
    assert_eq!(s.open.subscriptions, vec![("b".into(), 2)]);
    assert_eq!(s.open.awaiting_release, vec![6]);
    assert_eq!(s.offline_wall_ms, Some(77));
    assert_eq!(s.open.expiry_s, Some(30));
    let inflight: Vec<_> = s
        .backlog
        .inflight
        .iter()
        .map(|f| (f.id, f.released))
        .collect();
    assert_eq!(inflight, vec![(8, true), (9, false)]);
    let queued: Vec<_> = s
        .backlog
        .queued
        .iter()
        .map(|(e, _)| e.payload().to_vec())
        .collect();
    assert_eq!(queued, vec![4u32.to_be_bytes().to_vec()]);
}

#[test]
fn the_highest_generation_wins_and_an_ended_one_removes_the_session() {
    // Moved from shard 0 (gen 1) to shard 1 (gen 2): shard 0's records
    // are stale; shard 1's are the session.
    let r = replay([
        log(vec![
            open(1, 1, "moved"),
            Record::Queue {
                sn: 1,
                seq: 1,
                qos: 1,
                event: ev(1),
            },
        ]),
        log(vec![
            open(1 << 48 | 1, 2, "moved"),
            open(1 << 48 | 2, 5, "gone"),
            Record::End { sn: 1 << 48 | 2 },
        ]),
        log(vec![open(2 << 48 | 1, 4, "gone")]),
    ]);
    let ids: Vec<_> = r.sessions.iter().map(|s| &*s.open.client_id).collect();
    assert_eq!(ids, vec!["moved"]);
    assert!(
        r.sessions[0].backlog.queued.is_empty(),
        "gen 1's queue is stale"
    );
}

#[test]
fn retained_latest_wins_and_deletions_remove() {
    let r = replay([log(vec![
        Record::Retain {
            stamp: 0,
            event: Event::new("t/1", b"old", 0, true),
        },
        Record::Retain {
            stamp: 0,
            event: Event::new("t/1", b"new", 0, true),
        },
        Record::Retain {
            stamp: 0,
            event: Event::new("t/2", b"x", 0, true),
        },
        Record::Retain {
            stamp: 0,
            event: Event::new("t/2", b"", 0, true),
        },
    ])]);
    let got: Vec<_> = r
        .retained
        .iter()
        .map(|(t, (_, e))| (&**t, e.payload().to_vec()))
        .collect();
    assert_eq!(got, vec![("t/1", b"new".to_vec())]);
}

#[test]
fn a_snapshot_of_a_session_replays_to_the_same_session() {
    let r = replay([log(vec![
        open(1, 3, "c"),
        Record::Queue {
            sn: 1,
            seq: 1,
            qos: 2,
            event: ev(1),
        },
        Record::Queue {
            sn: 1,
            seq: 2,
            qos: 1,
            event: ev(2),
        },
        Record::Sent {
            sn: 1,
            seq: 1,
            pid: 4,
        },
        Record::Rel { sn: 1, pid: 4 },
    ])]);
    let s = &r.sessions[0];
    let again = replay([log(session_records(&s.open, Some(5), &s.backlog))]);
    let t = &again.sessions[0];
    assert_eq!(format!("{:?}", t.backlog), format!("{:?}", s.backlog));
    assert_eq!(t.offline_wall_ms, Some(5));
}

#[test]
fn undecodable_records_are_counted_and_skipped() {
    let mut l = log(vec![open(1, 1, "c")]);
    l.insert(0, (super::super::records::QUEUE, vec![1, 2]));
    let r = replay([l]);
    assert_eq!((r.records, r.malformed, r.sessions.len()), (2, 1, 1));
}

#[test]
fn the_bridge_resend_stores_keep_what_no_ack_or_eviction_took() {
    let keep = |peer: &str, seq: u64| Record::MeshKeep {
        peer: peer.into(),
        seq,
        frame: vec![seq as u8],
    };
    let r = replay([log(vec![
        keep("b", 1),
        keep("b", 2),
        keep("b", 3),
        keep("c", 1),
        Record::MeshGone {
            peer: "b".into(),
            upto: 2,
        },
        Record::MeshGone {
            peer: "c".into(),
            upto: 1,
        },
    ])]);
    let b: Vec<u64> = r.mesh["b"].keys().copied().collect();
    assert_eq!(b, vec![3]);
    assert!(!r.mesh.contains_key("c"), "nothing left for c");
}
