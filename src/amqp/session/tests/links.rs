//! Links in the machine: attach both roles, credit, transfers (single,
//! multi-frame, aborted, over credit, over size), the client's flow,
//! disposition and detach.

use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Released, TerminusDurability};
use fe2o3_amqp_types::performatives::{Disposition, Flow};

use super::*;

/// An attached sender link on handle 0 to `a/b`, its answers cleared.
fn sending() -> Conn {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("/topic/a/b")));
    assert!(c.out.closed().is_none());
    c
}

fn attach_receiver(
    handle: u32,
    address: &str,
    mode: SenderSettleMode,
    durable: bool,
) -> Performative {
    let Performative::Attach(mut a) = attach_sender(handle, None) else {
        unreachable!()
    };
    a.name = format!("receiver-{handle}");
    a.role = Role::Receiver;
    a.snd_settle_mode = mode;
    a.source = Some(Box::new(Source {
        address: Some(address.into()),
        durable: if durable {
            TerminusDurability::UnsettledState
        } else {
            TerminusDurability::None
        },
        ..Source::default()
    }));
    a.target = Some(Box::new(TargetArchetype::Target(Target::default())));
    a.initial_delivery_count = None;
    Performative::Attach(a)
}

fn flows(c: &Conn) -> Vec<Flow> {
    c.frames()
        .into_iter()
        .filter_map(|f| match f {
            Out::Frame(1, Performative::Flow(flow)) => Some(flow),
            _ => None,
        })
        .collect()
}

fn published(c: &mut Conn) -> Vec<(Event, Option<Ack>)> {
    c.requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::Publish { event, ack } => Some((event, ack)),
            _ => None,
        })
        .collect()
}

/// The detach weft wrote last on channel 1: its handle and condition.
fn detached(c: &Conn) -> (u32, String) {
    let frames = c.frames();
    let Some(Out::Frame(1, Performative::Detach(d))) = frames.last() else {
        panic!("no detach last: {frames:?}");
    };
    assert!(d.closed);
    (d.handle.0, condition(d.error.as_ref()))
}

#[test]
fn sender_attach_is_answered_with_credit() {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("/topic/a/b")));
    let frames = c.frames();
    let [Out::Frame(1, Performative::Attach(a)), Out::Frame(1, Performative::Flow(f))] =
        &frames[..]
    else {
        panic!("{frames:?}");
    };
    assert_eq!(
        (a.name.as_str(), a.handle.0, a.role.clone()),
        ("sender-0", 0, Role::Receiver)
    );
    assert!(a.target.is_some());
    assert_eq!(a.max_message_size, Some(600));
    assert_eq!(f.handle, Some(Handle(0)));
    assert_eq!((f.delivery_count, f.link_credit), (Some(0), Some(4)));
    assert_eq!(f.next_incoming_id, Some(100));
    // The outgoing side is the outbound's, as the glue says it.
    c.m.set_outgoing(1, 7, 99);
    c.send(
        1,
        Performative::Flow(Flow {
            echo: true,
            ..session_flow(Some(Handle(0)))
        }),
    );
    let f = &flows(&c)[0];
    assert_eq!((f.next_outgoing_id, f.outgoing_window), (7, 99));
}

#[test]
fn presettled_and_unsettled_transfers_publish() {
    let mut c = sending();
    c.feed(&transfer_frame(
        0,
        Some(0),
        Some(true),
        false,
        &message(b"hot"),
    ));
    let p = published(&mut c);
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].0.topic(), p[0].0.payload(), p[0].0.qos),
        ("a/b", &b"hot"[..], 0)
    );
    assert_eq!(p[0].1, None);

    c.feed(&transfer_frame(
        0,
        Some(1),
        Some(false),
        false,
        &message(b"cold"),
    ));
    assert!(c.written().is_empty(), "nothing before the glue's answer");
    let p = published(&mut c);
    assert_eq!(p[0].0.qos, 1);
    let ack = p[0].1.unwrap();
    assert_eq!(
        ack,
        Ack {
            channel: 1,
            delivery_id: 1,
            handle: 0
        }
    );
    c.out.clear();
    c.m.accepted(ack, c.now, &mut c.out);
    let frames = c.frames();
    let Out::Frame(1, Performative::Disposition(d)) = &frames[0] else {
        panic!("{frames:?}");
    };
    assert_eq!((d.first, d.last, d.settled), (1, Some(1), true));
    assert_eq!(d.state, Some(DeliveryState::Accepted(Accepted {})));

    c.feed(&transfer_frame(0, Some(2), None, false, &message(b"x")));
    let ack = published(&mut c)[0].1.unwrap();
    c.out.clear();
    c.m.rejected(
        ack,
        "amqp:resource-limit-exceeded",
        "full",
        c.now,
        &mut c.out,
    );
    let frames = c.frames();
    let Out::Frame(1, Performative::Disposition(d)) = &frames[0] else {
        panic!("{frames:?}");
    };
    let Some(DeliveryState::Rejected(r)) = &d.state else {
        panic!("{d:?}");
    };
    assert_eq!(condition(r.error.as_ref()), "amqp:resource-limit-exceeded");
}

#[test]
fn credit_is_granted_again_as_messages_are_taken() {
    let mut c = sending();
    c.feed(&transfer_frame(
        0,
        Some(0),
        Some(true),
        false,
        &message(b"1"),
    ));
    assert!(flows(&c).is_empty());
    c.feed(&transfer_frame(
        0,
        Some(1),
        Some(true),
        false,
        &message(b"2"),
    ));
    let f = flows(&c);
    assert_eq!((f[0].delivery_count, f[0].link_credit), (Some(2), Some(4)));
    assert_eq!(f[0].next_incoming_id, Some(102));

    // Unsettled: the credit comes back with the glue's answers.
    let mut acks = Vec::new();
    for id in 2..6 {
        c.feed(&transfer_frame(
            0,
            Some(id),
            Some(false),
            false,
            &message(b"q"),
        ));
        assert!(flows(&c).is_empty());
        acks.extend(published(&mut c).into_iter().filter_map(|(_, ack)| ack));
    }
    assert_eq!(acks.len(), 4);
    // None left: the first answer's credit goes back at once; then one
    // flow per half of the credit.
    c.out.clear();
    c.m.accepted(acks[0], c.now, &mut c.out);
    let f = flows(&c);
    assert_eq!((f[0].delivery_count, f[0].link_credit), (Some(6), Some(1)));
    c.out.clear();
    c.m.accepted(acks[1], c.now, &mut c.out);
    assert!(flows(&c).is_empty());
    c.m.accepted(acks[2], c.now, &mut c.out);
    let f = flows(&c);
    assert_eq!((f[0].delivery_count, f[0].link_credit), (Some(6), Some(3)));
}

#[test]
fn transfer_beyond_credit_detaches_the_link_only() {
    let mut c = sending();
    for id in 0..4 {
        c.feed(&transfer_frame(
            0,
            Some(id),
            Some(false),
            false,
            &message(b"q"),
        ));
    }
    c.feed(&transfer_frame(
        0,
        Some(4),
        Some(false),
        false,
        &message(b"over"),
    ));
    assert_eq!(
        detached(&c),
        (0, "amqp:link:transfer-limit-exceeded".into())
    );
    assert!(c.out.closed().is_none(), "the connection stays");
    assert!(published(&mut c).is_empty());
    // Frames in flight on the link are dropped; its detach is the answer.
    c.feed(&transfer_frame(
        0,
        Some(5),
        Some(true),
        false,
        &message(b"late"),
    ));
    assert!(c.out.list.is_empty());
    c.send(1, detach(0));
    assert!(c.out.list.is_empty());
    // The handle is free again.
    c.send(1, attach_sender(0, Some("a/c")));
    assert_eq!(flows(&c).len(), 1);
}

#[test]
fn multi_frame_transfer_is_assembled() {
    let mut c = sending();
    let whole = message(&[7u8; 300]);
    let (a, rest) = whole.split_at(100);
    let (b, last) = rest.split_at(150);
    c.feed(&transfer_frame(0, Some(0), Some(true), true, a));
    c.feed(&transfer_frame(0, None, None, true, b));
    assert!(c.out.list.is_empty());
    c.feed(&transfer_frame(0, None, None, false, last));
    let p = published(&mut c);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0.payload(), &[7u8; 300][..]);
}

#[test]
fn aborted_transfer_is_dropped() {
    let mut c = sending();
    let whole = message(b"never whole");
    c.feed(&transfer_frame(0, Some(0), Some(true), true, &whole[..5]));
    c.feed(&transfer_with(0, None, None, false, true, b""));
    assert!(published(&mut c).is_empty());
    // The next delivery starts clean.
    c.feed(&transfer_frame(
        0,
        Some(1),
        Some(true),
        false,
        &message(b"next"),
    ));
    assert_eq!(published(&mut c)[0].0.payload(), b"next");
}

#[test]
fn aborted_delivery_credit_is_granted_again() {
    // Two aborted deliveries are half of the credit of 4: one flow.
    let mut c = sending();
    for id in 0..2 {
        c.feed(&transfer_frame(0, Some(id), Some(true), true, b"part"));
        c.feed(&transfer_with(0, None, None, false, true, b""));
    }
    let f = flows(&c);
    assert_eq!((f[0].delivery_count, f[0].link_credit), (Some(2), Some(4)));
}

#[test]
fn messages_in_assembly_are_bounded_per_connection() {
    // Four links of channel 1 and one of channel 2, each with a message
    // begun: 4 x 599 bytes fit in 4 x 600, the fifth's first bytes do not.
    let mut c = five_links();
    for handle in 0..4 {
        c.feed(&transfer_frame(
            handle,
            Some(handle),
            Some(true),
            true,
            &[0; 599],
        ));
        assert!(c.out.list.is_empty(), "{:?}", c.out.list);
    }
    c.feed(&on_channel_2(transfer_frame(
        0,
        Some(0),
        Some(true),
        true,
        &[0; 10],
    )));
    assert_eq!(c.closed_with(), "amqp:resource-limit-exceeded");
}

#[test]
fn finished_and_detached_assemblies_free_their_bytes() {
    // The same, but one link's message finishes and one link detaches
    // before the others begin theirs: the fifth fits.
    let mut c = five_links();
    let whole = message(&[5; 590]);
    c.feed(&transfer_frame(0, Some(0), Some(true), true, &whole[..590]));
    c.feed(&transfer_frame(0, None, None, false, &whole[590..]));
    assert_eq!(published(&mut c).len(), 1);
    c.feed(&transfer_frame(1, Some(1), Some(true), true, &[0; 599]));
    c.send(1, detach(1));
    for handle in [0, 2, 3] {
        c.feed(&transfer_frame(
            handle,
            Some(handle + 4),
            Some(true),
            true,
            &[0; 599],
        ));
    }
    c.feed(&on_channel_2(transfer_frame(
        0,
        Some(0),
        Some(true),
        true,
        &[0; 599],
    )));
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
}

/// Sender links 0..4 on channel 1 and 0 on channel 2.
fn five_links() -> Conn {
    let mut c = sending();
    c.send(2, begin());
    for handle in 1..4 {
        c.send(1, attach_sender(handle, Some("a/b")));
    }
    c.send(2, attach_sender(0, Some("a/b")));
    assert!(c.out.closed().is_none());
    c
}

fn on_channel_2(mut frame: Vec<u8>) -> Vec<u8> {
    frame[6..8].copy_from_slice(&2u16.to_be_bytes());
    frame
}

#[test]
fn oversize_message_detaches_the_link() {
    // Over `message_bytes_max` (600) across frames…
    let mut c = sending();
    let whole = message(&[1u8; 700]);
    c.feed(&transfer_frame(0, Some(0), Some(true), true, &whole[..400]));
    assert!(c.out.list.is_empty());
    c.feed(&transfer_frame(0, None, None, false, &whole[400..]));
    assert_eq!(detached(&c), (0, "amqp:link:message-size-exceeded".into()));
    assert!(c.out.closed().is_none());
    assert!(published(&mut c).is_empty());
    // …and in one frame.
    let mut c = sending();
    c.feed(&transfer_frame(0, Some(0), Some(true), false, &whole));
    assert_eq!(detached(&c), (0, "amqp:link:message-size-exceeded".into()));
}

#[test]
fn attach_to_a_forbidden_target_is_refused() {
    let mut c = opened_with(grants(&["secret/#"]), None);
    c.send(1, attach_sender(1, Some("secret/plans")));
    let frames = c.frames();
    let Out::Frame(1, Performative::Attach(a)) = &frames[0] else {
        panic!("{frames:?}");
    };
    assert!(a.target.is_none(), "a refused link answers with no target");
    assert_eq!(detached(&c), (1, "amqp:unauthorized-access".into()));
    assert!(matches!(
        c.requests()[..],
        [Request::Denied(Denied::Publish)]
    ));
    // An allowed target on the same connection works.
    c.send(1, attach_sender(2, Some("open/plans")));
    assert_eq!(flows(&c).len(), 1);
}

#[test]
fn invalid_target_address_is_refused() {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("a/+")));
    assert_eq!(detached(&c), (0, "amqp:invalid-field".into()));
    assert!(c.out.closed().is_none());
}

#[test]
fn handle_over_handle_max_closes() {
    let mut c = opened();
    c.send(1, attach_sender(4, Some("a")));
    assert_eq!(c.closed_with(), "amqp:connection:framing-error");
}

#[test]
fn receiver_attach_subscribes() {
    let mut c = opened();
    c.send(
        1,
        attach_receiver(2, "/topic/a/+", SenderSettleMode::Mixed, false),
    );
    assert!(c.written().is_empty(), "answered after the router");
    let requests = c.requests();
    let [Request::Subscribe {
        link,
        filter,
        queue,
        qos,
        checked,
        durable,
    }] = &requests[..]
    else {
        panic!("{requests:?}");
    };
    assert_eq!(
        *link,
        LinkRef {
            channel: 1,
            handle: 2
        }
    );
    assert_eq!(
        (filter.as_str(), queue, *qos, *checked, durable),
        ("a/+", &None, 1, false, &None)
    );
    c.out.clear();
    c.m.subscribed(*link, Subscribed::Yes, c.now, &mut c.out);
    let frames = c.frames();
    let [Out::Frame(1, Performative::Attach(a))] = &frames[..] else {
        panic!("{frames:?}");
    };
    assert_eq!(
        (a.role.clone(), a.initial_delivery_count),
        (Role::Sender, Some(0))
    );
    assert_eq!(a.snd_settle_mode, SenderSettleMode::Unsettled);
    assert!(a.source.is_some());

    // The client's flow for it, a session flow, a disposition.
    c.send(
        1,
        Performative::Flow(Flow {
            link_credit: Some(10),
            delivery_count: Some(0),
            drain: true,
            ..session_flow(Some(Handle(2)))
        }),
    );
    let requests = c.requests();
    assert!(
        matches!(
            requests[..],
            [Request::Flow {
                channel: 1,
                next_incoming_id: Some(0),
                incoming_window: 20,
                link: Some(LinkFlow {
                    handle: 2,
                    delivery_count: Some(0),
                    link_credit: 10,
                    drain: true,
                    echo: false
                })
            }]
        ),
        "{requests:?}"
    );
    c.send(1, Performative::Flow(session_flow(None)));
    assert!(matches!(
        c.requests()[..],
        [Request::Flow { link: None, .. }]
    ));
    c.send(
        1,
        Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: 3,
            last: Some(5),
            settled: true,
            state: Some(DeliveryState::Released(Released {})),
            batchable: false,
        }),
    );
    assert!(matches!(
        c.requests()[..],
        [Request::Settle {
            channel: 1,
            first: 3,
            last: 5,
            settled: true,
            outcome: Some(Outcome::Released)
        }]
    ));

    // Detach: unsubscribe, answered.
    c.send(1, detach(2));
    assert!(matches!(
        c.frames()[..],
        [Out::Frame(1, Performative::Detach(_))]
    ));
    assert!(matches!(
        c.requests()[..],
        [Request::Unsubscribe {
            link: LinkRef {
                channel: 1,
                handle: 2
            },
            closed: true
        }]
    ));
}

#[test]
fn receiver_settle_mode_and_durability() {
    let mut c = opened();
    c.send(
        1,
        attach_receiver(0, "a.b", SenderSettleMode::Settled, true),
    );
    let requests = c.requests();
    let [Request::Subscribe { qos, durable, .. }] = &requests[..] else {
        panic!("{requests:?}");
    };
    assert_eq!(*qos, 0);
    assert_eq!(durable.as_deref(), Some("client-1/receiver-0"));
    // A session that ends unsubscribes its links without closing them.
    c.m.subscribed(
        LinkRef {
            channel: 1,
            handle: 0,
        },
        Subscribed::Yes,
        c.now,
        &mut c.out,
    );
    c.send(1, Performative::End(End { error: None }));
    assert!(matches!(
        c.requests()[..],
        [
            Request::Unsubscribe {
                link: LinkRef {
                    channel: 1,
                    handle: 0
                },
                closed: false
            },
            Request::End { channel: 1 }
        ]
    ));
}

#[test]
fn refused_subscriptions_attach_then_detach() {
    let mut c = opened();
    c.send(
        1,
        attach_receiver(0, "a/b", SenderSettleMode::Unsettled, false),
    );
    c.out.clear();
    c.m.subscribed(
        LinkRef {
            channel: 1,
            handle: 0,
        },
        Subscribed::TooMany,
        c.now,
        &mut c.out,
    );
    let frames = c.frames();
    assert!(matches!(&frames[0], Out::Frame(1, Performative::Attach(a)) if a.source.is_none()));
    assert_eq!(detached(&c), (0, "amqp:resource-limit-exceeded".into()));

    let mut c = opened_with(grants(&["secret/#"]), None);
    c.send(
        1,
        attach_receiver(0, "secret/#", SenderSettleMode::Unsettled, false),
    );
    assert_eq!(detached(&c), (0, "amqp:unauthorized-access".into()));
    assert!(matches!(
        c.requests()[..],
        [Request::Denied(Denied::Subscribe)]
    ));
}

fn session_flow(handle: Option<Handle>) -> Flow {
    Flow {
        next_incoming_id: Some(0),
        incoming_window: 20,
        next_outgoing_id: 100,
        outgoing_window: 1000,
        handle,
        delivery_count: None,
        link_credit: None,
        available: None,
        drain: false,
        echo: false,
        properties: None,
    }
}

/// A message whose properties (a list32) claim 2^32-1 fields: serde_amqp
/// 0.18 panicked on it (add overflow, debug builds) inside
/// `message::to_event`; now the message is rejected.
#[test]
fn message_sections_claiming_more_than_their_bytes_are_rejected() {
    let mut c = sending();
    let bad = b"\x00\x53\x73\xd0\x00\x00\x00\x04\xff\xff\xff\xff\x00\x53\x75\xa0\x01x";
    c.feed(&transfer_frame(0, Some(0), Some(false), false, bad));
    let frames = c.frames();
    let Out::Frame(1, Performative::Disposition(d)) = &frames[0] else {
        panic!("{frames:?}");
    };
    let Some(DeliveryState::Rejected(r)) = &d.state else {
        panic!("{d:?}");
    };
    assert_eq!(condition(r.error.as_ref()), "amqp:decode-error");
    assert!(published(&mut c).is_empty());
}
