//! Unit tests of the mailbox: queue accounting, the slow-consumer
//! decision, batching and the MQTT window, with no socket and no executor.

use super::*;
use crate::nats::frame::MsgFrame;
use std::rc::Rc;
use std::task::Waker;

fn mqtt(qos: u8) -> DeliverAs {
    DeliverAs::Mqtt { qos, retain: false }
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn limits() -> Limits {
    Limits {
        queued_messages_max: 2,
        queued_bytes_max: 1024,
        qos1_queued_messages_max: 3,
        qos1_queued_bytes_max: 2048,
        inflight_max: 1,
        ..Limits::default()
    }
}

#[test]
fn qos0_overflow_drops_and_counts() {
    let s = Mailbox::new(0, Protocol::Mqtt, "c".into());
    let l = limits();
    let e = Event::new("t", b"x", 0, false);
    assert_eq!(s.deliver(e.clone(), mqtt(0), &l), Delivery::Queued);
    assert_eq!(s.deliver(e.clone(), mqtt(0), &l), Delivery::Queued);
    assert_eq!(s.deliver(e.clone(), mqtt(0), &l), Delivery::Dropped);
    assert_eq!(s.dropped.get(), 1);
    let l2 = Limits {
        slow_consumer_policy: SlowConsumerPolicy::Disconnect,
        ..l
    };
    assert_eq!(s.deliver(e, mqtt(0), &l2), Delivery::SlowConsumer);
}

#[test]
fn qos1_congests_then_disconnects() {
    let s = Mailbox::new(0, Protocol::Mqtt, "c".into());
    let l = limits();
    let e = Event::new("t", b"x", 1, false);
    assert_eq!(s.deliver(e.clone(), mqtt(1), &l), Delivery::Queued);
    assert_eq!(s.deliver(e.clone(), mqtt(1), &l), Delivery::Queued);
    assert_eq!(s.deliver(e.clone(), mqtt(1), &l), Delivery::Congested);
    assert_eq!(s.deliver(e, mqtt(1), &l), Delivery::SlowConsumer);
}

#[test]
fn window_and_acks() {
    let s = Mailbox::new(0, Protocol::Mqtt, "c".into());
    let l = limits();
    let e = Event::new("t", b"x", 1, false);
    s.deliver(e.clone(), mqtt(1), &l);
    s.deliver(e.clone(), mqtt(1), &l);
    let mut buf = Vec::new();
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut Vec::new()),
        Poll::Ready(true)
    );
    assert_eq!(
        buf.len(),
        mqtt::deliver::wire_len(&e, 1),
        "window of 1 lets one through"
    );
    buf.clear();
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut Vec::new()),
        Poll::Pending
    );
    assert!(!s.acknowledge(2));
    assert!(s.acknowledge(1));
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut Vec::new()),
        Poll::Ready(true)
    );
    assert_eq!(s.queued(), (0, 0));
    s.close(CloseReason::PeerClosed);
    buf.clear();
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut Vec::new()),
        Poll::Ready(false)
    );
}

/// Every packet `poll_batch` writes, as (kind, dup, packet id, topic).
fn written(s: &Mailbox, l: &Limits) -> Vec<(u8, bool, u16, String)> {
    use crate::mqtt::codec::{decode, DecodeLimits, Packet};
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    while let Poll::Ready(true) = s.poll_batch(&mut cx(), &mut batch, l, &mut Vec::new()) {
        buf.append(&mut batch);
    }
    let limits = DecodeLimits {
        packet_bytes_max: 1 << 20,
        filters_per_packet_max: 8,
    };
    let mut at = 0;
    let mut packets = Vec::new();
    while at < buf.len() {
        let (p, used) = decode(&buf[at..], &limits).unwrap().expect("whole packets");
        packets.push(match p {
            Packet::Publish(p) => (3, p.dup, p.packet_id, p.topic.to_owned()),
            Packet::ConnAck { .. } => (2, false, 0, String::new()),
            other => panic!("unexpected {other:?}"),
        });
        at += used;
    }
    packets
}

/// MQTT-3.2.0-1 and MQTT-4.4.0-1: a resumed session whose
/// subscriptions deliver while it is installed writes nothing before
/// its CONNACK, then its resends with their ids, then what came
/// meanwhile, with a new id.
#[test]
fn nothing_before_the_connack_and_resends_before_new_deliveries() {
    let l = Limits {
        inflight_max: 16,
        ..Limits::default()
    };
    // The previous connection: one QoS 1 delivery in flight (id 1).
    let old = Mailbox::new(0, Protocol::Mqtt, "c".into());
    old.deliver(Event::new("old", b"x", 1, false), mqtt(1), &l);
    assert_eq!(written(&old, &l), [(3, false, 1, "old".into())]);
    let backlog = old.take_backlog();

    let s = Mailbox::new(0, Protocol::Mqtt, "c".into());
    s.await_greeting();
    s.deliver(Event::new("new", b"y", 1, false), mqtt(1), &l);
    assert_eq!(written(&s, &l), [], "nothing before the CONNACK");
    s.send(&[0x20, 2, 1, 0]);
    s.restore_backlog(backlog);
    assert_eq!(
        written(&s, &l),
        [
            (2, false, 0, String::new()),
            (3, true, 1, "old".into()),
            (3, false, 2, "new".into()),
        ]
    );
}

#[test]
fn an_http_item_does_not_grow_the_queue_entry() {
    // The largest variant sets the size of every queued item: no larger
    // than a NATS delivery made it before NATS runs; an HTTP one (its `ws`
    // flag included) fits beside it.
    let nats = std::mem::size_of::<(Event, Rc<str>, Rc<[u8]>)>();
    let http = std::mem::size_of::<(Event, u64, bool)>();
    assert!(http <= nats, "{http} > {nats}");
    assert!(std::mem::size_of::<OutItem>() <= nats + 8);
}

/// AMQP deliveries wait for link credit outside the queue but count
/// against the same limits, and go once the client's flow grants credit.
#[test]
fn amqp_waits_for_credit_within_the_queue_limits() {
    let s = Mailbox::new(0, Protocol::Amqp, "c".into());
    let l = limits();
    let amqp = |qos| DeliverAs::Amqp {
        handle: 1,
        channel: 0,
        qos,
    };
    s.amqp_begin(0, 100, 0);
    s.amqp_attach(0, 1, 1);
    let e = Event::new("t", b"x", 1, false);
    assert_eq!(s.deliver(e.clone(), amqp(1), &l), Delivery::Queued);
    assert_eq!(s.deliver(e.clone(), amqp(1), &l), Delivery::Queued);
    let (queued, bytes) = s.queued();
    assert_eq!(queued, 2);
    assert_eq!(bytes, 2 * crate::amqp::outbound::wire_len(&e, 1, 0));
    // Over the soft limit, as any QoS 1 delivery.
    assert_eq!(s.deliver(e.clone(), amqp(1), &l), Delivery::Congested);
    assert_eq!(s.deliver(e.clone(), amqp(0), &l), Delivery::Dropped);
    let mut buf = Vec::new();
    let mut born = Vec::new();
    assert!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut born)
            .is_pending(),
        "no credit: nothing to write"
    );
    s.amqp_flow(0, Some(0), 100, Some((1, Some(0), 1, false, false)));
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut born),
        Poll::Ready(true)
    );
    assert_eq!(born.len(), 1, "one transfer: one credit");
    assert_eq!(s.queued().0, 2);
    // The unsettled bound (inflight_max 1) holds the next one back even
    // with credit, until the client settles.
    s.amqp_flow(0, Some(1), 100, Some((1, Some(1), 5, false, false)));
    buf.clear();
    assert!(s
        .poll_batch(&mut cx(), &mut buf, &l, &mut born)
        .is_pending());
    let done = s.amqp_settle(
        0,
        0,
        0,
        true,
        Some(crate::amqp::outbound::Outcome::Accepted),
    );
    assert_eq!(done.accepted, 1);
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut born),
        Poll::Ready(true)
    );
    assert_eq!(born.len(), 2);
    // A link that goes away leaves what waits and what is unsettled.
    let left = s.amqp_detach(0, 1);
    assert_eq!((left.unsettled, left.events.len()), (1, 2));
    assert_eq!(s.queued(), (0, 0));
}

fn nats_frame(e: &Event) -> MsgFrame {
    crate::nats::deliver::frame(e, &crate::nats::deliver::subject(e))
}

/// NATS deliveries are written when delivered, consecutive ones in one
/// run: the bytes are the frames in order (a PONG queued between them
/// keeps its place), the queue counts each message, and the writer gets
/// every event's latency entry.
#[test]
fn nats_runs_keep_order_and_count_each_message() {
    let s = Mailbox::new(0, Protocol::Nats, "n".into());
    let l = Limits {
        queued_messages_max: 10,
        ..Limits::default()
    };
    let mut e = Event::new("a/b", b"hi", 0, false);
    e.born_ns = 50;
    let frame = nats_frame(&e);
    assert_eq!(s.deliver_nats(&e, &frame, "1", &l), Delivery::Queued);
    e.born_ns = 40;
    assert_eq!(s.deliver_nats(&e, &frame, "22", &l), Delivery::Queued);
    s.send(crate::nats::codec::PONG);
    e.born_ns = crate::event::REPLAY_NS;
    assert_eq!(s.deliver_nats(&e, &frame, "3", &l), Delivery::Queued);
    let want: &[u8] = b"MSG a.b 1 2\r\nhi\r\nMSG a.b 22 2\r\nhi\r\nPONG\r\nMSG a.b 3 2\r\nhi\r\n";
    assert_eq!(s.queued(), (4, want.len()), "three messages and a PONG");
    let mut buf = Vec::new();
    let mut born = Vec::new();
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut born),
        Poll::Ready(true)
    );
    assert_eq!(buf, want);
    assert_eq!(born, [40, 40, crate::event::REPLAY_NS]);
    assert_eq!(s.queued(), (0, 0));
}

/// The limits count a run's messages one by one: the soft limit drops
/// (or disconnects, by policy) as for any QoS 0 delivery.
#[test]
fn nats_runs_obey_the_queue_limits() {
    let s = Mailbox::new(0, Protocol::Nats, "n".into());
    let l = limits();
    let e = Event::new("t", b"x", 0, false);
    let frame = nats_frame(&e);
    assert_eq!(s.deliver_nats(&e, &frame, "1", &l), Delivery::Queued);
    assert_eq!(s.deliver_nats(&e, &frame, "1", &l), Delivery::Queued);
    assert_eq!(s.deliver_nats(&e, &frame, "1", &l), Delivery::Dropped);
    assert_eq!(s.dropped.get(), 1);
    assert_eq!(s.queued(), (2, 2 * frame.len("1")));
    let l2 = Limits {
        slow_consumer_policy: SlowConsumerPolicy::Disconnect,
        ..limits()
    };
    assert_eq!(s.deliver_nats(&e, &frame, "1", &l2), Delivery::SlowConsumer);
    // Bytes too: a frame that does not fit under `queued_bytes_max`.
    let t = Mailbox::new(1, Protocol::Nats, "m".into());
    let big = Event::new("t", &[0; 1000], 0, false);
    let big_frame = nats_frame(&big);
    assert_eq!(t.deliver_nats(&big, &big_frame, "1", &l), Delivery::Queued);
    assert_eq!(t.deliver_nats(&big, &big_frame, "1", &l), Delivery::Dropped);
    // A closing session takes nothing.
    t.close(CloseReason::ClientDisconnect);
    assert_eq!(t.deliver_nats(&e, &frame, "1", &l), Delivery::Dropped);
}

/// A run holds at most `write_batch_bytes_max` (or one larger frame); the
/// writer takes whole runs and stops at its batch size.
#[test]
fn nats_runs_are_bounded_by_the_batch_size() {
    let s = Mailbox::new(0, Protocol::Nats, "n".into());
    let l = Limits {
        write_batch_bytes_max: 100,
        ..Limits::default()
    };
    let e = Event::new("t", &[7; 30], 0, false);
    let frame = nats_frame(&e);
    let one = frame.len("1");
    assert!(one < 50 && 2 * one <= 100 && 3 * one > 100, "{one}");
    for _ in 0..5 {
        assert_eq!(s.deliver_nats(&e, &frame, "1", &l), Delivery::Queued);
    }
    assert_eq!(s.queued(), (5, 5 * one));
    let mut buf = Vec::new();
    let mut born = Vec::new();
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut born),
        Poll::Ready(true)
    );
    // Runs of 2, 2 and 1 frames; the first two fill the batch.
    assert_eq!((buf.len(), born.len()), (4 * one, 4));
    assert_eq!(s.queued(), (1, one));
    let mut expected = Vec::new();
    for _ in 0..4 {
        frame.put(&mut expected, "1", e.payload());
    }
    assert_eq!(buf, expected);
    let big = Event::new("t", &[7; 300], 0, false);
    let big_frame = nats_frame(&big);
    assert_eq!(s.deliver_nats(&big, &big_frame, "1", &l), Delivery::Queued);
    assert_eq!(s.deliver_nats(&e, &frame, "1", &l), Delivery::Queued);
    assert_eq!(s.queued(), (3, 2 * one + big_frame.len("1")));
}

/// An idle connection's mailbox holds one queue slot (its CONNACK's), not
/// the four a first push reserves; deliveries grow it as before.
#[test]
fn first_frame_reserves_one_slot() {
    let s = Mailbox::new(0, Protocol::Mqtt, "c".into());
    s.await_greeting();
    s.send(&[0x20, 2, 0, 0]);
    eprintln!(
        "OutItem {} B, Outbound {} B, MqttOutbound {} B, Journal {} B, PublisherHold {} B, \
         Identity {} B, FilterSet {} B, Event {} B",
        std::mem::size_of::<OutItem>(),
        std::mem::size_of::<Outbound>(),
        std::mem::size_of::<MqttOutbound>(),
        std::mem::size_of::<Journal>(),
        std::mem::size_of::<super::super::publisher_hold::PublisherHold>(),
        std::mem::size_of::<crate::security::Identity>(),
        std::mem::size_of::<crate::topic::filter_set::FilterSet>(),
        std::mem::size_of::<Event>(),
    );
    assert_eq!(s.out.borrow().queue.capacity(), 1);
    let mut buf = Vec::new();
    let mut born = Vec::new();
    let l = limits();
    assert!(s.poll_batch(&mut cx(), &mut buf, &l, &mut born).is_ready());
    assert_eq!(buf, [0x20, 2, 0, 0]);
    let e = Event::new("t", b"x", 0, false);
    assert_eq!(s.deliver(e.clone(), mqtt(0), &l), Delivery::Queued);
    assert_eq!(s.deliver(e, mqtt(0), &l), Delivery::Queued);
    assert!(s.out.borrow().queue.capacity() >= 2);
}

/// A waiting writer leaves its empty buffer with the mailbox: the next
/// NATS run is written straight into it and the writer gets it back
/// filled (no allocation, no copy); a wake-up for anything else gives it
/// back as it was, and a closed session keeps none.
#[test]
fn a_waiting_writers_buffer_takes_the_next_nats_run() {
    let s = Mailbox::new(0, Protocol::Nats, "n".into());
    let l = Limits::default();
    let mut buf = Vec::with_capacity(4096);
    let ptr = buf.as_ptr();
    assert!(s
        .poll_batch(&mut cx(), &mut buf, &l, &mut Vec::new())
        .is_pending());
    assert_eq!(buf.capacity(), 0, "left with the mailbox");
    let e = Event::new("a", b"x", 0, false);
    let frame = nats_frame(&e);
    assert_eq!(s.deliver_nats(&e, &frame, "1", &l), Delivery::Queued);
    assert_eq!(s.deliver_nats(&e, &frame, "2", &l), Delivery::Queued);
    assert_eq!(
        s.poll_batch(&mut cx(), &mut buf, &l, &mut Vec::new()),
        Poll::Ready(true)
    );
    assert_eq!(buf.as_ptr(), ptr, "the same buffer, filled in place");
    assert_eq!(buf, b"MSG a 1 1\r\nx\r\nMSG a 2 1\r\nx\r\n");

    let mut other = Vec::with_capacity(100);
    let ptr = other.as_ptr();
    assert!(s
        .poll_batch(&mut cx(), &mut other, &l, &mut Vec::new())
        .is_pending());
    s.send(crate::nats::codec::PONG);
    assert_eq!(
        s.poll_batch(&mut cx(), &mut other, &l, &mut Vec::new()),
        Poll::Ready(true)
    );
    assert_eq!((other.as_ptr(), &other[..]), (ptr, &b"PONG\r\n"[..]));

    other.clear();
    assert!(s
        .poll_batch(&mut cx(), &mut other, &l, &mut Vec::new())
        .is_pending());
    s.close(CloseReason::ServerShutdown);
    assert_eq!(
        s.poll_batch(&mut cx(), &mut Vec::new(), &l, &mut Vec::new()),
        Poll::Ready(false)
    );
    assert_eq!(s.out.borrow().spare.capacity(), 0, "released at the end");
}
