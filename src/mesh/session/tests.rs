//! The link session with no socket and no executor: bytes go from one
//! session to the other through the link codec, time is virtual.

use super::*;
use crate::mesh::link::{self, LinkLimits, LinkMeta};

const TIMERS: LinkTimers = LinkTimers {
    keepalive: Duration::from_millis(1000),
    link_timeout: Duration::from_millis(3000),
    hello_timeout: Duration::from_millis(500),
};

/// Decodes every frame in `bytes`.
fn frames(bytes: &[u8]) -> Vec<Frame<'_>> {
    let mut at = 0;
    let mut all = Vec::new();
    while let Some((f, n)) = link::decode(&bytes[at..], &LinkLimits::default()).unwrap() {
        all.push(f);
        at += n;
    }
    assert_eq!(at, bytes.len(), "whole frames only");
    all
}

fn written(out: &Actions<'_>) -> Vec<u8> {
    let mut all = Vec::new();
    for a in &out.list {
        if let Action::Write { from, to } = a {
            all.extend_from_slice(&out.bytes[*from..*to]);
        }
    }
    all
}

fn requests<'a, 'f>(out: &'a Actions<'f>) -> Vec<&'a Request<'f>> {
    out.list
        .iter()
        .filter_map(|a| match a {
            Action::Request(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn hello_frame(version: u16, router_id: &str, mesh: &str) -> Vec<u8> {
    let mut b = Vec::new();
    let hello = Frame::Hello(Hello {
        version,
        router_id,
        mesh,
    });
    link::encode(&hello, &mut b).unwrap();
    b
}

/// Feeds `bytes` to `s`; returns the frames it wrote and its requests'
/// names, and its close.
fn feed(s: &mut LinkSession, bytes: &[u8], now: Instant) -> (Vec<u8>, Vec<String>) {
    let mut out = Actions::default();
    for f in frames(bytes) {
        s.on_frame(f, now, &mut out);
    }
    let reqs = requests(&out).iter().map(|r| format!("{r:?}")).collect();
    (written(&out), reqs)
}

#[test]
fn hellos_cross_and_the_link_comes_up() {
    let t0 = Instant::now();
    let mut a = LinkSession::new("A", "eu", TIMERS, t0);
    let mut b = LinkSession::new("B", "eu", TIMERS, t0);
    let (mut oa, mut ob) = (Actions::default(), Actions::default());
    a.start(&mut oa);
    b.start(&mut ob);
    let (ha, hb) = (written(&oa), written(&ob));
    let (w, r) = feed(&mut a, &hb, t0);
    assert!(w.is_empty());
    assert_eq!(r, ["Up"]);
    assert_eq!(a.peer(), Some("B"));
    assert_eq!(feed(&mut b, &ha, t0).1, ["Up"]);
    // The table is written: a PING marks its end; the peer answers it and
    // knows its table is in.
    let mut out = Actions::default();
    a.table_sent(t0, &mut out);
    let ping = written(&out);
    assert!(matches!(frames(&ping)[..], [Frame::Ping { .. }]));
    let (pong, r) = feed(&mut b, &ping, t0);
    assert_eq!(r, ["TableReceived"]);
    assert!(matches!(frames(&pong)[..], [Frame::Pong { .. }]));
    let (_, r) = feed(&mut a, &pong, t0 + Duration::from_millis(7));
    assert_eq!(r, ["TableReceived", "RoundTrip(7ms)"]);
    assert!(a.is_up() && b.is_up());
}

/// A refusal at hello: the peer hears why in a CLOSE, and the session
/// closes with its typed reason.
fn refused(theirs: &[u8]) -> (LinkCloseReason, String, String) {
    let t0 = Instant::now();
    let mut a = LinkSession::new("A", "eu", TIMERS, t0);
    let mut out = Actions::default();
    for f in frames(theirs) {
        a.on_frame(f, t0, &mut out);
    }
    assert!(requests(&out).is_empty(), "no Up for a refused hello");
    let reason = out.closed().expect("closed");
    assert_eq!(a.closed(), Some(reason));
    assert!(!a.is_up());
    let words = match &frames(&written(&out))[..] {
        [Frame::Close { reason }] => reason.to_string(),
        other => panic!("expected one CLOSE, got {other:?}"),
    };
    assert_eq!(words, a.detail());
    (reason, words, a.peer().unwrap_or("").to_owned())
}

#[test]
fn wrong_version_is_refused() {
    let (reason, words, peer) = refused(&hello_frame(LINK_VERSION + 1, "B", "eu"));
    assert_eq!(reason, LinkCloseReason::VersionMismatch);
    assert_eq!(reason.label(), "version_mismatch");
    let theirs = format!("speaks link protocol version {}", LINK_VERSION + 1);
    assert!(words.contains(&theirs), "{words}");
    assert_eq!(peer, "");
}

#[test]
fn wrong_mesh_name_is_refused() {
    let (reason, words, _) = refused(&hello_frame(LINK_VERSION, "B", "us"));
    assert_eq!(reason, LinkCloseReason::MeshMismatch);
    assert!(
        words.contains(r#"peer router "B" is in mesh "us", this router is in mesh "eu""#),
        "{words}"
    );
}

#[test]
fn a_link_to_itself_is_refused() {
    let (reason, words, _) = refused(&hello_frame(LINK_VERSION, "A", "eu"));
    assert_eq!(reason, LinkCloseReason::SelfLink);
    assert!(words.contains("this router's own id"), "{words}");
}

#[test]
fn a_first_frame_that_is_no_hello_is_refused() {
    let mut ping = Vec::new();
    link::encode(&Frame::Ping { nonce: 1 }, &mut ping).unwrap();
    let (reason, _, _) = refused(&ping);
    assert_eq!(reason, LinkCloseReason::BadHello);
}

#[test]
fn no_hello_in_time_closes_at_the_deadline_not_before() {
    let t0 = Instant::now();
    let mut a = LinkSession::new("A", "eu", TIMERS, t0);
    let deadline = t0 + TIMERS.hello_timeout;
    assert_eq!(a.next_deadline(), Some(deadline));
    let mut out = Actions::default();
    a.handle_timeout(deadline - Duration::from_millis(1), &mut out);
    assert!(out.list.is_empty());
    a.handle_timeout(deadline, &mut out);
    assert_eq!(out.closed(), Some(LinkCloseReason::HelloTimeout));
    assert!(matches!(frames(&written(&out))[..], [Frame::Close { .. }]));
    // Closed: nothing more happens, a late hello included.
    let late = hello_frame(LINK_VERSION, "B", "eu");
    let mut out = Actions::default();
    for f in frames(&late) {
        a.on_frame(f, deadline, &mut out);
    }
    assert!(out.list.is_empty());
    assert_eq!(a.next_deadline(), None);
}

/// A session past hello and table, at `t0`.
fn up(t0: Instant) -> LinkSession {
    let mut a = LinkSession::new("A", "eu", TIMERS, t0);
    let hello = hello_frame(LINK_VERSION, "B", "eu");
    let mut out = Actions::default();
    for f in frames(&hello) {
        a.on_frame(f, t0, &mut out);
    }
    a.table_sent(t0, &mut out);
    a
}

#[test]
fn keepalive_pings_and_silence_drops_the_link_in_virtual_time() {
    let t0 = Instant::now();
    let mut a = up(t0);
    let ms = Duration::from_millis;
    assert_eq!(a.next_deadline(), Some(t0 + ms(1000)));
    let mut pings = 0;
    let mut now = t0;
    // Heard from every 900 ms: pinged every second, never dropped.
    for _ in 0..10 {
        now += ms(900);
        a.heard(now);
        let mut out = Actions::default();
        while a.next_deadline().is_some_and(|d| d <= now) {
            a.handle_timeout(now, &mut out);
        }
        assert_eq!(out.closed(), None);
        pings += frames(&written(&out)).len();
    }
    // Checked every 900 ms: a PING when a second has passed since the last
    // one (at 1.8 s, 3.6 s, 5.4 s, 7.2 s, 9 s).
    assert_eq!(pings, 5);
    // Silent from `now`: PINGs until the timeout, then the close (no CLOSE
    // frame: the peer is not listening).
    let silent_until = now + TIMERS.link_timeout;
    let mut out = Actions::default();
    let mut last = now;
    while let Some(d) = a.next_deadline() {
        assert!(d <= silent_until, "{d:?}");
        out.clear();
        a.handle_timeout(d, &mut out);
        last = d;
    }
    assert_eq!(last, silent_until);
    assert_eq!(out.closed(), Some(LinkCloseReason::Silent));
    assert!(written(&out).is_empty());
    assert_eq!(a.closed().unwrap().label(), "silent");
}

#[test]
fn peer_close_and_a_second_hello_end_the_link() {
    let t0 = Instant::now();
    let mut a = up(t0);
    let mut close = Vec::new();
    link::encode(&Frame::Close { reason: "bye" }, &mut close).unwrap();
    let mut out = Actions::default();
    for f in frames(&close) {
        a.on_frame(f, t0, &mut out);
    }
    assert_eq!(out.closed(), Some(LinkCloseReason::PeerClosed));
    assert!(a.closed().unwrap().graceful());
    assert_eq!(a.detail(), "peer closed the link: bye");

    let mut b = up(t0);
    let again = hello_frame(LINK_VERSION, "B", "eu");
    let mut out = Actions::default();
    for f in frames(&again) {
        b.on_frame(f, t0, &mut out);
    }
    assert_eq!(out.closed(), Some(LinkCloseReason::ProtocolError));
    assert!(!b.closed().unwrap().graceful());
}

fn event(seq: u64, id: u64) -> Vec<u8> {
    let mut b = Vec::new();
    let frame = Frame::Event(link::Event {
        id,
        seq,
        origin: "A",
        hops: 0,
        dests: vec!["B"].into(),
        groups: Default::default(),
        topic: "t",
        qos: 1,
        retain: false,
        stamp: 0,
        sync: false,
        payload: b"x",
        meta: LinkMeta::default(),
    });
    link::encode(&frame, &mut b).unwrap();
    b
}

/// The receiving side as a driver runs it: route the events (here:
/// record their ids), mark them processed, acknowledge.
fn receive(b: &mut LinkSession, bytes: &[u8], got: &mut Vec<u64>, now: Instant) -> Vec<u8> {
    let mut out = Actions::default();
    let mut seqs = Vec::new();
    for f in frames(bytes) {
        b.on_frame(f, now, &mut out);
    }
    for r in requests(&out) {
        if let Request::Route(Frame::Event(e)) = r {
            got.push(e.id);
            seqs.push(e.seq);
        }
    }
    let mut acks = Actions::default();
    for s in seqs {
        b.processed(s);
    }
    b.ack_if_due(&mut acks);
    written(&acks)
}

/// The sending side's answer to acknowledgements: the store lets go.
fn on_acks(a: &mut LinkSession, bytes: &[u8], store: &mut Outbox<()>) {
    let mut out = Actions::default();
    for f in frames(bytes) {
        a.on_frame(f, Instant::now(), &mut out);
    }
    for r in requests(&out) {
        if let Request::Acked(seq) = r {
            store.acked(*seq, &mut Vec::new());
        }
    }
}

#[test]
fn unacknowledged_copies_are_resent_after_a_drop_and_none_twice_once_acked() {
    let t0 = Instant::now();
    let mut store: Outbox<()> = Outbox::default();
    let mut a = up(t0);
    let mut b = up(t0);
    let mut wire = Vec::new();
    for id in 1..=5 {
        let seq = store.next_seq();
        store.keep(event(seq, id), None, Some(&mut wire), 100);
    }
    // The first three arrive and are acknowledged; the link drops with
    // the last two on the wire (lost), and the ack of the third too.
    let cut = frames(&wire)[..3]
        .iter()
        .map(link::encoded_len)
        .sum::<usize>();
    let mut got = Vec::new();
    let acks = receive(&mut b, &wire[..cut], &mut got, t0);
    assert!(matches!(frames(&acks)[..], [Frame::Ack { seq: 3 }]));
    assert_eq!(got, [1, 2, 3]);
    // Only the ack of the first two got through (a second ack frame for
    // two, as a peer acknowledging as it goes would have sent).
    let mut two = Vec::new();
    link::encode(&Frame::Ack { seq: 2 }, &mut two).unwrap();
    on_acks(&mut a, &two, &mut store);
    assert_eq!(store.seqs().collect::<Vec<_>>(), [3, 4, 5]);

    // Both sides see the drop; a new connection says hello again.
    let t1 = t0 + Duration::from_secs(1);
    let mut a = up(t1);
    let mut b = up(t1);
    store.rewind();
    let mut wire = Vec::new();
    store.refill(&mut wire, usize::MAX);
    let acks = receive(&mut b, &wire, &mut got, t1);
    // 3 again (its ack was lost: the far side drops it as a duplicate by
    // event id), then 4 and 5.
    assert_eq!(got, [1, 2, 3, 3, 4, 5]);
    on_acks(&mut a, &acks, &mut store);
    assert!(store.is_empty());

    // Another drop: nothing is sent twice once acknowledged.
    store.rewind();
    let mut wire = Vec::new();
    store.refill(&mut wire, usize::MAX);
    assert!(wire.is_empty());
    // New copies go on numbering after the acknowledged ones.
    assert_eq!(store.next_seq(), 6);
}

#[test]
fn an_ack_waits_for_the_copies_owed_to_next_hops() {
    let t0 = Instant::now();
    let mut b = up(t0);
    let mut out = Actions::default();
    b.processed(1);
    b.oblige(2);
    b.processed(2);
    b.oblige(3);
    b.oblige(3);
    b.processed(3);
    b.ack_if_due(&mut out);
    assert!(matches!(
        frames(&written(&out))[..],
        [Frame::Ack { seq: 1 }]
    ));
    assert!(b.release(2));
    assert!(!b.release(3), "one copy of 3 is still owed");
    out.clear();
    b.ack_if_due(&mut out);
    assert!(matches!(
        frames(&written(&out))[..],
        [Frame::Ack { seq: 2 }]
    ));
    assert!(b.release(3));
    out.clear();
    b.ack_if_due(&mut out);
    assert!(matches!(
        frames(&written(&out))[..],
        [Frame::Ack { seq: 3 }]
    ));
    // Nothing new: no second ack.
    out.clear();
    b.ack_if_due(&mut out);
    assert!(out.list.is_empty());
}

#[test]
fn a_copy_taken_over_is_acknowledged_with_those_before_it() {
    // Copy 1 is owed to a next hop; copy 2 came back round a routing loop
    // and is taken over here. The ack of 2 must not wait for copy 1: its
    // next hop may be waiting, round the loop, for this very ack.
    let t0 = Instant::now();
    let mut b = up(t0);
    let mut out = Actions::default();
    b.oblige(1);
    b.processed(1);
    b.take_over(2);
    b.processed(2);
    b.oblige(3);
    b.processed(3);
    b.ack_if_due(&mut out);
    assert!(matches!(
        frames(&written(&out))[..],
        [Frame::Ack { seq: 2 }]
    ));
    // Copy 1's next hop acknowledges later: nothing more owed for it.
    assert!(!b.release(1));
    assert!(b.release(3));
    out.clear();
    b.ack_if_due(&mut out);
    assert!(matches!(
        frames(&written(&out))[..],
        [Frame::Ack { seq: 3 }]
    ));
}

/// Drives `s`'s timeouts (the peer heard at each) until `until`;
/// returns the acks written.
fn acks_until(s: &mut LinkSession, mut now: Instant, until: Instant) -> Vec<u64> {
    let mut acks = Vec::new();
    while let Some(d) = s.next_deadline().filter(|d| *d <= until) {
        now = now.max(d);
        s.heard(now);
        let mut out = Actions::default();
        s.handle_timeout(now, &mut out);
        for f in frames(&written(&out)) {
            if let Frame::Ack { seq } = f {
                acks.push(seq);
            }
        }
    }
    acks
}

#[test]
fn a_copy_owed_past_the_custody_time_is_acknowledged() {
    // Copy 1 waits for a next hop that never acknowledges (a wait that
    // goes round through another link, or a peer gone for good); copy 2
    // owes nothing. Without custody neither is ever acknowledged.
    let t0 = Instant::now();
    let custody = Duration::from_secs(1);
    for with_custody in [false, true] {
        let mut b = up(t0);
        if with_custody {
            b.set_custody_after(Some(custody));
        }
        b.oblige(1);
        b.processed(1);
        b.processed(2);
        let mut out = Actions::default();
        b.ack_if_due(&mut out);
        assert!(out.list.is_empty());
        // Not before the custody time (counted from the first check, at
        // most a keepalive after the copy).
        assert_eq!(acks_until(&mut b, t0, t0 + custody), Vec::<u64>::new());
        let later = t0 + custody + TIMERS.keepalive * 2;
        let acks = acks_until(&mut b, t0 + custody, later);
        if with_custody {
            assert_eq!(acks, [2]);
            assert_eq!(b.custody_taken(), 1);
            // The next hop's late acknowledgement changes nothing.
            assert!(!b.release(1));
        } else {
            assert!(acks.is_empty());
        }
    }
}

#[test]
fn labels_are_distinct() {
    let labels: std::collections::BTreeSet<_> =
        LinkCloseReason::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(labels.len(), LinkCloseReason::ALL.len());
}

/// `passes_on` (the runtime's shortcut) is true exactly when `on_frame`
/// would do nothing but hand the frame back as `Route`: for every kind of
/// frame, before the hello and after it, and never once closed.
#[test]
fn passes_on_is_exactly_a_lone_route() {
    let t0 = Instant::now();
    let mut bytes = event(1, 7);
    for f in [
        Frame::InterestAdd {
            filter: "a/#",
            group: None,
            origin: "B",
            distance: 1,
        },
        Frame::InterestRemove {
            filter: "a/#",
            group: None,
            origin: "B",
        },
        Frame::Ack { seq: 1 },
        Frame::Ping { nonce: 3 },
        Frame::Pong { nonce: 3 },
        Frame::Close { reason: "bye" },
    ] {
        link::encode(&f, &mut bytes).unwrap();
    }
    bytes.extend_from_slice(&hello_frame(LINK_VERSION, "B", "eu"));
    let fresh = || LinkSession::new("A", "eu", TIMERS, t0);
    let mut checked = 0;
    for (name, make) in [
        ("before hello", &fresh as &dyn Fn() -> LinkSession),
        ("up", &|| up(t0)),
    ] {
        for f in frames(&bytes) {
            let mut s = make();
            let shortcut = s.passes_on(&f);
            let mut out = Actions::default();
            s.on_frame(f, t0, &mut out);
            let lone_route = out.bytes.is_empty()
                && matches!(&out.list[..], [Action::Request(Request::Route(_))]);
            assert_eq!(shortcut, lone_route, "{name}: {:?}", out.list);
            checked += usize::from(shortcut);
        }
    }
    // The event and the two interest frames, once up.
    assert_eq!(checked, 3);
    let mut closed = up(t0);
    let mut out = Actions::default();
    for f in frames(&bytes[bytes.len() - hello_frame(LINK_VERSION, "B", "eu").len()..]) {
        closed.on_frame(f, t0, &mut out); // a second hello: closed
    }
    assert!(closed.closed().is_some());
    assert!(frames(&bytes).iter().all(|f| !closed.passes_on(f)));
}
