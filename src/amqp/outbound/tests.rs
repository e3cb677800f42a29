//! The delivery side with no socket and no clock: what goes out is decoded
//! with fe2o3-amqp-types (so the hand-written encoders are checked against
//! the crate's reading of the spec).

use fe2o3_amqp_types::messaging::{message::__private::Deserializable, Body, Message};
use fe2o3_amqp_types::performatives::Performative;
use serde_amqp::Value;

use super::*;

const CH: u16 = 0;
const RX: u32 = 1;
const BATCH: usize = 64 * 1024;
const INFLIGHT: usize = 1024;

/// One frame as the client reads it: channel, performative, payload.
#[derive(Debug)]
struct Frame {
    channel: u16,
    performative: Performative,
    payload: Vec<u8>,
}

fn frames(mut buf: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let size = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(buf[4], 2, "doff");
        assert_eq!(buf[5], 0, "an AMQP frame");
        let channel = u16::from_be_bytes([buf[6], buf[7]]);
        let body = &buf[8..size];
        assert_eq!(&body[..2], &[0x00, 0x53], "a described performative");
        // list8 (these encoders) or list0.
        let len = match body[3] {
            0xc0 => 5 + usize::from(body[4]),
            0x45 => 4,
            other => panic!("list constructor {other:#x}"),
        };
        let performative = serde_amqp::from_slice(&body[..len]).expect("a performative");
        out.push(Frame {
            channel,
            performative,
            payload: body[len..].to_vec(),
        });
        buf = &buf[size..];
    }
    out
}

fn message(payload: &[u8]) -> Message<Body<Value>> {
    let m: Deserializable<Message<Body<Value>>> =
        serde_amqp::from_slice(payload).expect("a message");
    m.0
}

/// The bytes of a message's first data section.
fn first_data(body: Body<Value>) -> Vec<u8> {
    let mut data = body.try_into_data().expect("a data section");
    data.next().expect("one").into_vec()
}

fn event(n: u8) -> Event {
    Event::new("t/1", &[n; 8], 1, false)
}

/// One session, one unsettled receiver link, `queued` events waiting.
fn outbound(queued: u8) -> Outbound {
    let mut o = Outbound::default();
    o.begin(CH, 1000, 0);
    o.attach(CH, RX, 1);
    for n in 0..queued {
        assert!(o.enqueue(CH, RX, event(n), 1));
    }
    o
}

fn write(o: &mut Outbound) -> Vec<Frame> {
    let mut buf = Vec::new();
    let mut born = Vec::new();
    let before = o.queued_bytes();
    let dequeued = o.write(&mut buf, BATCH, INFLIGHT, &mut born);
    assert_eq!(before - o.queued_bytes(), dequeued, "bytes counted in step");
    frames(&buf)
}

fn credit(o: &mut Outbound, credit: u32, drain: bool, echo: bool) -> bool {
    o.flow(CH, Some(0), 1000, Some((RX, Some(0), credit, drain, echo)))
}

/// (delivery-id, settled, payload byte) of each transfer.
fn transfers(frames: &[Frame]) -> Vec<(u32, bool, u8)> {
    frames
        .iter()
        .filter_map(|f| match &f.performative {
            Performative::Transfer(t) => {
                assert_eq!(t.handle.0, RX);
                let id = t.delivery_id.expect("a first frame");
                let tag = t.delivery_tag.as_ref().expect("a tag");
                assert_eq!(&tag[..], &id.to_be_bytes(), "the tag is the id");
                let data = first_data(message(&f.payload).body);
                Some((id, t.settled == Some(true), data[0]))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_goes_without_credit_then_as_much_as_the_credit() {
    let mut o = outbound(3);
    assert!(!o.ready());
    assert!(write(&mut o).is_empty(), "no credit, no transfer");
    assert!(credit(&mut o, 2, false, false), "credit wakes the writer");
    let sent = write(&mut o);
    assert!(sent.iter().all(|f| f.channel == CH));
    assert_eq!(transfers(&sent), [(0, false, 0), (1, false, 1)]);
    assert_eq!((o.queued(), o.unsettled()), (1, 2));
    assert!(write(&mut o).is_empty(), "credit used up");
    // The client's delivery-count caught up (2): 1 more credit.
    o.flow(CH, Some(2), 1000, Some((RX, Some(2), 1, false, false)));
    assert_eq!(transfers(&write(&mut o)), [(2, false, 2)]);
    assert_eq!(o.queued(), 0);
    assert_eq!(o.queued_bytes(), 0);
}

#[test]
fn pre_settled_links_keep_nothing_unsettled() {
    let mut o = Outbound::default();
    o.begin(CH, 1000, 0);
    o.attach(CH, RX, 0);
    for n in 0..2 {
        // A QoS 1 event to a settled link goes pre-settled.
        o.enqueue(CH, RX, event(n), 1);
    }
    credit(&mut o, 10, false, false);
    assert_eq!(transfers(&write(&mut o)), [(0, true, 0), (1, true, 1)]);
    assert_eq!(o.unsettled(), 0);
}

#[test]
fn the_session_window_holds_transfers_back() {
    let mut o = outbound(3);
    o.flow(CH, Some(0), 1, Some((RX, Some(0), 10, false, false)));
    assert_eq!(transfers(&write(&mut o)).len(), 1, "window of one");
    assert!(!o.ready());
    // The client took transfer 0 and opens its window to 5 from 1.
    assert!(o.flow(CH, Some(1), 5, None));
    assert_eq!(transfers(&write(&mut o)).len(), 2);
}

#[test]
fn the_unsettled_map_is_bounded() {
    let mut o = outbound(3);
    credit(&mut o, 10, false, false);
    let mut buf = Vec::new();
    o.write(&mut buf, BATCH, 2, &mut Vec::new());
    assert_eq!(transfers(&frames(&buf)).len(), 2, "inflight_max 2");
    buf.clear();
    o.write(&mut buf, BATCH, 2, &mut Vec::new());
    assert!(buf.is_empty(), "waits for a disposition");
    let done = o.settle(CH, 0, 0, true, Some(Outcome::Accepted));
    assert_eq!(done.accepted, 1);
    o.write(&mut buf, BATCH, 2, &mut Vec::new());
    assert_eq!(transfers(&frames(&buf)), [(2, false, 2)]);
}

#[test]
fn drain_uses_up_the_credit_and_says_so() {
    let mut o = outbound(2);
    credit(&mut o, 5, true, false);
    let sent = write(&mut o);
    assert_eq!(transfers(&sent).len(), 2);
    let Some(Performative::Flow(flow)) = sent.last().map(|f| &f.performative) else {
        panic!("a flow after the transfers: {sent:?}")
    };
    assert_eq!(flow.handle.as_ref().map(|h| h.0), Some(RX));
    assert_eq!(flow.delivery_count, Some(5), "advanced by the whole credit");
    assert_eq!(flow.link_credit, Some(0));
    assert!(flow.drain);
    assert_eq!(flow.next_outgoing_id, 2, "after two transfers");
    // Nothing queued, drain again: answered at once.
    o.flow(CH, Some(2), 1000, Some((RX, Some(5), 3, true, false)));
    let sent = write(&mut o);
    let Some(Performative::Flow(flow)) = sent.first().map(|f| &f.performative) else {
        panic!("a flow: {sent:?}")
    };
    assert_eq!((flow.delivery_count, flow.link_credit), (Some(8), Some(0)));
}

#[test]
fn echo_answers_with_the_link_state() {
    let mut o = outbound(0);
    o.set_incoming(CH, 7, 100);
    assert!(credit(&mut o, 4, false, true));
    let sent = write(&mut o);
    assert_eq!(sent.len(), 1);
    let Performative::Flow(flow) = &sent[0].performative else {
        panic!("a flow")
    };
    assert_eq!(
        (flow.next_incoming_id, flow.incoming_window),
        (Some(7), 100)
    );
    assert_eq!((flow.delivery_count, flow.link_credit), (Some(0), Some(4)));
    assert!(!flow.drain && !flow.echo);
    assert!(write(&mut o).is_empty(), "once");
}

#[test]
fn released_is_sent_again_as_it_was_modified_with_one_more_delivery() {
    let mut o = outbound(2);
    credit(&mut o, 10, false, false);
    assert_eq!(transfers(&write(&mut o)).len(), 2);
    let done = o.settle(CH, 0, 0, true, Some(Outcome::Released));
    assert_eq!(done.requeued, 1);
    let failed = Outcome::Modified {
        delivery_failed: true,
        undeliverable_here: false,
    };
    assert_eq!(o.settle(CH, 1, 1, true, Some(failed)).requeued, 1);
    let sent = write(&mut o);
    // Sent again, new delivery ids, oldest first.
    assert_eq!(transfers(&sent), [(2, false, 0), (3, false, 1)]);
    let counts: Vec<u32> = sent
        .iter()
        .map(|f| message(&f.payload).header.map_or(0, |h| h.delivery_count))
        .collect();
    assert_eq!(counts, [0, 1], "released: unchanged; modified: + 1");
    // Settled again: already settled ids are ignored.
    assert_eq!(o.settle(CH, 0, 3, true, None).accepted, 2);
    assert_eq!(o.unsettled(), 0);
}

#[test]
fn rejected_and_undeliverable_here_are_returned() {
    let mut o = outbound(3);
    credit(&mut o, 10, false, false);
    write(&mut o);
    assert_eq!(
        o.settle(CH, 0, 0, true, Some(Outcome::Rejected)).rejected,
        1
    );
    let here = Outcome::Modified {
        delivery_failed: false,
        undeliverable_here: true,
    };
    let done = o.settle(CH, 1, 2, true, Some(here));
    assert_eq!(done.undeliverable.len(), 2);
    assert_eq!(done.undeliverable[0].0, RX);
    assert_eq!(o.unsettled(), 0);
    assert!(write(&mut o).is_empty(), "not sent again here");
}

#[test]
fn an_unsettled_outcome_is_settled_by_weft() {
    let mut o = outbound(1);
    credit(&mut o, 1, false, false);
    write(&mut o);
    o.settle(CH, 0, 0, false, Some(Outcome::Accepted));
    let sent = write(&mut o);
    let Performative::Disposition(d) = &sent[0].performative else {
        panic!("a disposition: {sent:?}")
    };
    assert!(d.settled);
    assert_eq!((d.first, d.last), (0, Some(0)));
}

#[test]
fn a_detached_link_leaves_its_unsettled_then_its_queue() {
    let mut o = outbound(3);
    credit(&mut o, 1, false, false);
    write(&mut o);
    let left = o.detach(CH, RX);
    assert_eq!(left.unsettled, 1);
    let order: Vec<u8> = left.events.iter().map(|(e, _, _)| e.payload()[0]).collect();
    assert_eq!(order, [0, 1, 2]);
    assert_eq!((o.queued(), o.queued_bytes(), o.unsettled()), (0, 0, 0));
    assert!(!o.enqueue(CH, RX, event(9), 1), "the link is gone");
}

#[test]
fn large_messages_are_split_to_the_client_frame_size() {
    let mut o = outbound(0);
    o.max_frame_size = 512;
    let big = Event::new("t/1", &[7u8; 2000], 1, false);
    let whole = crate::amqp::message::message_len(&big, 1, 0);
    o.enqueue(CH, RX, big, 1);
    credit(&mut o, 1, false, false);
    let mut buf = Vec::new();
    o.write(&mut buf, BATCH, INFLIGHT, &mut Vec::new());
    let sent = frames(&buf);
    assert!(sent.len() >= 4, "{} frames", sent.len());
    let mut payload = Vec::new();
    for (i, f) in sent.iter().enumerate() {
        let Performative::Transfer(t) = &f.performative else {
            panic!("transfers only")
        };
        assert_eq!(t.more, i + 1 < sent.len());
        assert_eq!(t.delivery_id.is_some(), i == 0);
        payload.extend_from_slice(&f.payload);
    }
    let mut at = 0;
    for _ in &sent {
        let size = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        assert!(size <= 512, "a frame of {size} bytes");
        at += size;
    }
    assert_eq!(payload.len(), whole);
    assert_eq!(first_data(message(&payload).body).len(), 2000);
}

#[test]
fn links_take_turns() {
    let mut o = outbound(0);
    o.attach(CH, 2, 1);
    for n in 0..3 {
        o.enqueue(CH, RX, event(n), 1);
        o.enqueue(CH, 2, event(10 + n), 1);
    }
    o.flow(CH, Some(0), 1000, Some((RX, Some(0), 10, false, false)));
    o.flow(CH, Some(0), 1000, Some((2, Some(0), 10, false, false)));
    let mut buf = Vec::new();
    o.write(&mut buf, 1, INFLIGHT, &mut Vec::new());
    let first = frames(&buf);
    buf.clear();
    o.write(&mut buf, 1, INFLIGHT, &mut Vec::new());
    let second = frames(&buf);
    let handle = |f: &[Frame]| match &f[0].performative {
        Performative::Transfer(t) => t.handle.0,
        _ => panic!(),
    };
    assert_ne!(handle(&first), handle(&second), "one batch each");
}

/// A durable link's kept backlog and its new queue share an event (both
/// subscriptions got it): it goes once; the counts follow.
#[test]
fn twins_of_a_kept_backlog_leave_the_queue() {
    let mut o = outbound(0);
    let shared = event(7);
    assert!(o.enqueue(CH, RX, shared.clone(), 1));
    assert!(o.enqueue(CH, RX, event(8), 1));
    let backlog = crate::mqtt::outbound::Backlog {
        inflight: Vec::new(),
        queued: vec![(shared, 1)],
    };
    o.drop_twins(CH, RX, &backlog);
    assert_eq!(o.queued(), 1);
    assert_eq!(o.queued_bytes(), wire_len(&event(8), 1, 0));
    credit(&mut o, 10, false, false);
    assert_eq!(transfers(&write(&mut o)), [(0, false, 8)]);
    assert_eq!(o.queued_bytes(), 0);
}

/// 2.6.7: link-credit = rcv delivery-count + rcv link-credit - snd delivery-count,
/// and a negative result is 0 (transfers in flight exceed the new credit).
#[test]
fn h42_credit_lowered_below_in_flight_is_zero() {
    let mut o = outbound(6);
    credit(&mut o, 3, false, false);
    assert_eq!(transfers(&write(&mut o)).len(), 3);
    // The client has not seen those three yet (its delivery-count 0) and
    // lowers its credit to 1: 0 + 1 - 3 < 0, nothing may go.
    o.flow(CH, Some(0), 1000, Some((RX, Some(0), 1, false, false)));
    assert_eq!(
        transfers(&write(&mut o)).len(),
        0,
        "sent beyond the client's credit"
    );
}

/// 2.5.6: remote-incoming-window = next-incoming-id(flow) + incoming-window(flow)
/// - next-outgoing-id; a flow that lags the transfers in flight leaves no window.
#[test]
fn h42_session_window_behind_in_flight_is_zero() {
    let mut o = outbound(6);
    credit(&mut o, 100, false, false);
    assert_eq!(transfers(&write(&mut o)).len(), 6);
    // The client had seen none of them and grants a window of 2.
    o.flow(CH, Some(0), 2, None);
    assert!(o.enqueue(CH, RX, event(9), 1));
    assert_eq!(
        transfers(&write(&mut o)).len(),
        0,
        "sent beyond the client's session window"
    );
}

/// Review 2.6: weft settles with the client's own outcome (it wrote
/// accepted for every one), and an ended session gets no disposition
/// after its end.
#[test]
fn weft_settles_with_the_clients_outcome_and_not_after_end() {
    use fe2o3_amqp_types::messaging::DeliveryState;
    let mut o = outbound(3);
    credit(&mut o, 3, false, false);
    assert_eq!(transfers(&write(&mut o)).len(), 3);
    o.settle(CH, 0, 0, false, Some(Outcome::Rejected));
    let modified = Outcome::Modified {
        delivery_failed: true,
        undeliverable_here: true,
    };
    o.settle(CH, 1, 1, false, Some(modified));
    let sent = write(&mut o);
    let states: Vec<&DeliveryState> = sent
        .iter()
        .filter_map(|f| match &f.performative {
            Performative::Disposition(d) => d.state.as_ref(),
            _ => None,
        })
        .collect();
    assert_eq!(states.len(), 2, "{sent:?}");
    assert!(
        matches!(states[0], DeliveryState::Rejected(_)),
        "{:?}",
        states[0]
    );
    let DeliveryState::Modified(m) = states[1] else {
        panic!("modified: {:?}", states[1]);
    };
    assert_eq!(
        (m.delivery_failed, m.undeliverable_here),
        (Some(true), Some(true))
    );
    o.settle(CH, 2, 2, false, Some(Outcome::Accepted));
    o.end(CH);
    assert!(write(&mut o).is_empty(), "a disposition after the end");
}
