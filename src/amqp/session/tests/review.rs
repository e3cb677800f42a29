//! Findings of the AMQP review (h42) pinned: each failed (panicked or hung)
//! before its fix.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::*;

/// A transfer whose descriptor is the symbol, not the code (legal, part
/// 1.5): decoded as a transfer, not a panic.
#[test]
fn symbolic_transfer_descriptor_is_a_transfer() {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("a/b")));
    let mut b = transfer_frame(0, Some(0), Some(true), false, &message(b"x"));
    // The body starts at 8: 00 53 14 -> 00 a3 12 "amqp:transfer:list".
    assert_eq!(&b[8..11], &[0x00, 0x53, 0x14]);
    let mut sym = vec![0x00, 0xa3, 18];
    sym.extend_from_slice(b"amqp:transfer:list");
    b.splice(8..11, sym);
    let size = b.len() as u32;
    b[..4].copy_from_slice(&size.to_be_bytes());
    let r = catch_unwind(AssertUnwindSafe(|| {
        c.feed(&b);
    }));
    assert!(r.is_ok(), "symbolic-descriptor transfer panicked");
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    let published = c
        .requests()
        .into_iter()
        .filter(|r| matches!(r, Request::Publish { .. }))
        .count();
    assert_eq!(published, 1);
}

/// An `open` whose properties map claims an odd count: a decode error,
/// not serde_amqp's subtract overflow.
#[test]
fn odd_map_count_in_a_performative_is_a_decode_error() {
    let mut fields = fe2o3_amqp_types::definitions::Fields::new();
    fields.insert(Symbol::from("a"), serde_amqp::Value::String("b".into()));
    let Performative::Open(mut o) = open(4096, None) else {
        unreachable!()
    };
    o.properties = Some(fields);
    let mut body = serde_amqp::to_vec(&Performative::Open(o)).unwrap();
    let pat = [0xa3u8, 1, b'a', 0xa1, 1, b'b'];
    let at = body.windows(6).position(|w| w == pat).unwrap();
    assert_eq!(body[at - 1], 2, "map count");
    body[at - 1] = 1;
    let r = catch_unwind(|| frame::decode_performative(&body).is_err());
    assert!(
        matches!(r, Ok(true)),
        "odd map count in open.properties: {r:?}"
    );
}

/// With `idle_timeout_ms = 0`, a client that sends the AMQP header and
/// never opens is still closed: the handshake is bounded by
/// `connect_timeout_ms` from the connection's start, and handshake frames
/// do not move that deadline.
#[test]
fn handshake_is_bounded_by_the_connect_timeout_with_no_idle_timeout() {
    let mut s = settings(true);
    s.limits.idle_timeout_ms = 0;
    let mut c = Conn::with(s);
    assert_eq!(c.m.next_deadline(), Some(t(5_000)));
    c.now = t(4_000);
    c.feed(&frame::AMQP_HEADER);
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    assert_eq!(
        c.m.next_deadline(),
        Some(t(5_000)),
        "not moved by the header"
    );
    c.out.clear();
    c.m.handle_timeout(t(5_000), &mut c.out);
    assert_eq!(c.out.closed(), Some(CloseReason::ConnectTimeout));
    // Once open, idle_timeout_ms = 0 means no deadline.
    let mut s = settings(true);
    s.limits.idle_timeout_ms = 0;
    let mut c = Conn::with(s);
    c.feed(&frame::AMQP_HEADER);
    let answer = c.requests().into_iter().find_map(|r| match r {
        Request::Authenticate { .. } => Some(()),
        _ => None,
    });
    assert!(answer.is_some(), "a bare header authenticates");
    c.m.authenticated(identity(), Arc::new(Grants::allow_all()), c.now, &mut c.out);
    c.send(0, open(4096, None));
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    assert_eq!(c.m.next_deadline(), None);
}

/// Transfers a client wrote together, beyond the credit weft had told it
/// (`sender_credit` 4 from delivery-count 0): the fifth detaches the link
/// with `amqp:link:transfer-limit-exceeded`. Credit is not replenished
/// behind the client's back among frames it sent before it could read a
/// flow; the flow for the taken ones comes after the batch.
#[test]
fn transfers_written_together_beyond_told_credit_are_refused() {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("a/b")));
    let told = c.frames().into_iter().find_map(|f| match f {
        Out::Frame(1, Performative::Flow(f)) => Some((f.delivery_count, f.link_credit)),
        _ => None,
    });
    assert_eq!(told, Some((Some(0), Some(4))));
    let mut batch = Vec::new();
    for id in 0..5 {
        batch.extend(transfer_frame(
            0,
            Some(id),
            Some(true),
            false,
            &message(b"x"),
        ));
    }
    c.feed(&batch);
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    let frames = c.frames();
    let detach = frames.iter().find_map(|f| match f {
        Out::Frame(1, Performative::Detach(d)) => Some(d),
        _ => None,
    });
    let Some(detach) = detach else {
        panic!("no detach: {frames:?}");
    };
    assert_eq!(
        condition(detach.error.as_ref()),
        "amqp:link:transfer-limit-exceeded"
    );
    let flows_before_detach = frames
        .iter()
        .take_while(|f| !matches!(f, Out::Frame(_, Performative::Detach(_))))
        .filter(|f| matches!(f, Out::Frame(_, Performative::Flow(_))))
        .count();
    assert_eq!(flows_before_detach, 0, "{frames:?}");
    let published = c
        .requests()
        .into_iter()
        .filter(|r| matches!(r, Request::Publish { .. }))
        .count();
    assert_eq!(published, 4, "the four within credit are taken");
}

/// Within the told credit, frames written together get one flow after
/// the last of them, granting the credit of the taken ones again.
#[test]
fn a_batch_within_credit_gets_one_flow_after_it() {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("a/b")));
    let mut batch = Vec::new();
    for id in 0..4 {
        batch.extend(transfer_frame(
            0,
            Some(id),
            Some(true),
            false,
            &message(b"x"),
        ));
    }
    c.feed(&batch);
    let frames = c.frames();
    let flows: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            Out::Frame(1, Performative::Flow(f)) => Some((f.delivery_count, f.link_credit)),
            _ => None,
        })
        .collect();
    assert_eq!(flows, [(Some(4), Some(4))], "{frames:?}");
}

/// A multi-frame message's assembly buffer is freed once the message is
/// taken: a kept one per link would be memory the connection's
/// `assembly_bytes` bound does not see (many links x many sessions).
#[test]
fn the_assembly_buffer_is_freed_after_a_multi_frame_message() {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("a/b")));
    let m = message(&[7u8; 300]);
    let (first, second) = m.split_at(150);
    let mut bytes = transfer_frame(0, Some(0), Some(true), true, first);
    bytes.extend(transfer_frame(0, None, None, false, second));
    c.feed(&bytes);
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    let published = c
        .requests()
        .into_iter()
        .filter(|r| matches!(r, Request::Publish { .. }))
        .count();
    assert_eq!(published, 1);
    let session = c.m.sessions[1].as_ref().expect("session on channel 1");
    let Some(Link {
        state: LinkState::Incoming(incoming),
    }) = session.links[0].as_ref()
    else {
        panic!("an incoming link");
    };
    assert_eq!(
        incoming.buffer.capacity(),
        0,
        "buffer kept between messages"
    );
    assert_eq!(c.m.assembly_bytes, 0);
}

/// The attach reply's source for a receiver link (weft's, authoritative):
/// the address, no filter weft does not apply, and durability only where
/// durable receivers are supported.
#[test]
fn reply_source_echoes_the_address_and_only_what_weft_honours() {
    use fe2o3_amqp_types::messaging::{TerminusDurability, TerminusExpiryPolicy};
    let mut filter = fe2o3_amqp_types::messaging::FilterSet::new();
    filter.insert(Symbol::from("jms-selector"), serde_amqp::Value::Null);
    let requested = Source {
        address: Some("a/b".into()),
        durable: TerminusDurability::UnsettledState,
        expiry_policy: TerminusExpiryPolicy::Never,
        filter: Some(filter),
        ..Source::default()
    };
    let plain = links_reply_source(&requested, false);
    assert_eq!(plain.address.as_deref(), Some("a/b"));
    assert_eq!(plain.filter, None);
    assert_eq!(plain.durable, TerminusDurability::None);
    assert_eq!(plain.expiry_policy, TerminusExpiryPolicy::SessionEnd);
    let durable = links_reply_source(&requested, true);
    assert_eq!(durable.durable, TerminusDurability::UnsettledState);
    assert_eq!(durable.expiry_policy, TerminusExpiryPolicy::Never);
    assert_eq!(durable.filter, None);

    // Through the machine: the attach reply carries that source.
    let mut c = opened();
    let Performative::Attach(mut a) = attach_sender(0, None) else {
        unreachable!()
    };
    a.name = "r".into();
    a.role = Role::Receiver;
    a.source = Some(Box::new(requested));
    c.send(1, Performative::Attach(a));
    let subscribe = c.requests().into_iter().find_map(|r| match r {
        Request::Subscribe { link, .. } => Some(link),
        _ => None,
    });
    let link = subscribe.expect("a subscribe");
    c.out.clear();
    c.m.subscribed(link, Subscribed::Yes, c.now, &mut c.out);
    let reply = c.frames().into_iter().find_map(|f| match f {
        Out::Frame(1, Performative::Attach(a)) => Some(a),
        _ => None,
    });
    let source = reply.and_then(|a| a.source).expect("a source in the reply");
    assert_eq!(source.filter, None);
    assert_eq!(source.durable, TerminusDurability::None);
}

fn links_reply_source(s: &Source, durable_supported: bool) -> Source {
    super::super::links::reply_source(s, durable_supported)
}

/// An attach on a handle in use is a session error (part 2.7.3): weft
/// ends that session with `amqp:session:handle-in-use`, the connection
/// stays, and the session's frames are dropped until the client's end;
/// the channel can then begin again.
#[test]
fn handle_in_use_ends_the_session_not_the_connection() {
    let mut c = opened();
    c.send(1, attach_sender(0, Some("a/b")));
    c.send(1, attach_sender(0, Some("a/c")));
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    let frames = c.frames();
    let [Out::Frame(1, Performative::End(end))] = &frames[..] else {
        panic!("{frames:?}");
    };
    assert_eq!(condition(end.error.as_ref()), "amqp:session:handle-in-use");
    assert!(c
        .requests()
        .iter()
        .any(|r| matches!(r, Request::End { channel: 1 })));
    // In flight before the client saw the end: dropped.
    c.feed(&transfer_frame(
        0,
        Some(0),
        Some(true),
        false,
        &message(b"x"),
    ));
    assert!(c.out.list.is_empty(), "{:?}", c.out.list);
    c.send(1, Performative::End(End { error: None }));
    assert!(c.out.list.is_empty(), "{:?}", c.out.list);
    c.send(1, begin());
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    assert!(matches!(
        c.frames()[..],
        [Out::Frame(1, Performative::Begin(_))]
    ));
}
