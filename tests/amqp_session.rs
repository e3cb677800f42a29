//! AMQP 1.0 connection and delivery rules with a real client (fe2o3-amqp)
//! and a raw peer: the outcomes a receiver gives (released, modified,
//! rejected: issue 15, item 3), SASL PLAIN against weft's users and
//! ANONYMOUS refused where anonymous access is off, and idle timeouts both
//! ways (weft's heartbeats for a client that asks for them; the close of a
//! silent client).

mod common;

#[path = "support/amqp.rs"]
mod amqp;

use amqp::*;
use common::*;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::messaging::Modified;
use std::time::Duration;

fn weft_with(extra: &str) -> Weft {
    let w = Weft::start(1, &format!("[amqp]\nlisten = \"127.0.0.1:0\"\n{extra}"));
    assert!(w.amqp.is_some(), "weft announced its AMQP listener");
    w
}

fn delivery_count(d: &Got) -> u32 {
    d.message()
        .header
        .as_ref()
        .map(|h| h.delivery_count)
        .unwrap_or(0)
}

/// released: sent again, delivery-count unchanged; modified with
/// delivery-failed: sent again, delivery-count + 1; rejected: gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_modified_and_rejected_deliveries() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let mut c = Amqp::open(addr, "outcomes").await;
    let mut rx = c.receiver("outcomes-rx", "outcomes/t").await;
    rx.set_credit(20).await.unwrap();
    let mut tx = c.sender("outcomes-tx", "outcomes/t").await;

    tx.send(data(b"release me")).await.unwrap();
    let first = recv(&mut rx).await;
    assert_eq!(body_bytes(&first.message().body), b"release me");
    let count = delivery_count(&first);
    rx.release(&first).await.unwrap();
    let again = recv(&mut rx).await;
    assert_eq!(body_bytes(&again.message().body), b"release me");
    assert_eq!(
        delivery_count(&again),
        count,
        "released: delivery-count unchanged"
    );
    rx.accept(&again).await.unwrap();

    tx.send(data(b"modify me")).await.unwrap();
    let first = recv(&mut rx).await;
    assert_eq!(body_bytes(&first.message().body), b"modify me");
    let count = delivery_count(&first);
    let failed = Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: None,
    };
    rx.modify(&first, failed).await.unwrap();
    let again = recv(&mut rx).await;
    assert_eq!(body_bytes(&again.message().body), b"modify me");
    assert_eq!(
        delivery_count(&again),
        count + 1,
        "modified{{delivery-failed}}: delivery-count + 1"
    );
    rx.accept(&again).await.unwrap();

    tx.send(data(b"reject me")).await.unwrap();
    let first = recv(&mut rx).await;
    assert_eq!(body_bytes(&first.message().body), b"reject me");
    rx.reject(&first, None).await.unwrap();
    tx.send(data(b"after")).await.unwrap();
    let next = recv(&mut rx).await;
    assert_eq!(
        body_bytes(&next.message().body),
        b"after",
        "rejected: not sent again"
    );
    rx.accept(&next).await.unwrap();
    tx.send(data(b"marker")).await.unwrap();
    next_is_marker(&mut rx, b"marker", "nothing after the rejected one").await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_maps_onto_weft_users() {
    let argon = weft::security::auth::hash_password(b"wonderland").unwrap();
    let w = weft_with(&format!(
        "[[security.users]]\nname = \"alice\"\npassword = \"{argon}\"\n"
    ));
    let addr = w.amqp.unwrap();
    let plain = |user: &str, password: &str| SaslProfile::Plain {
        username: user.into(),
        password: password.into(),
    };
    let mut alice = Amqp::open_as(addr, "alice", plain("alice", "wonderland"))
        .await
        .expect("alice with her password");
    let mut rx = alice.receiver("alice-rx", "plain/t").await;
    rx.set_credit(1).await.unwrap();
    let mut tx = alice.sender("alice-tx", "plain/t").await;
    tx.send(data(b"signed")).await.unwrap();
    let d = recv(&mut rx).await;
    rx.accept(&d).await.unwrap();
    assert_eq!(body_bytes(&d.message().body), b"signed");
    let wrong = Amqp::open_as(addr, "mallory", plain("alice", "guess")).await;
    assert!(wrong.is_err(), "a wrong password is refused");
    let anonymous = Amqp::open_as(addr, "anon", SaslProfile::Anonymous).await;
    assert!(
        anonymous.is_err(),
        "ANONYMOUS is refused once users are configured"
    );
    alice.close().await;
}

/// A client that announces an idle-time-out gets frames (empty ones when
/// there is nothing else) often enough to keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_sends_heartbeats_within_the_client_idle_timeout() {
    let w = weft_with("");
    let mut raw = RawAmqp::open_idle(w.amqp.unwrap(), Some(600)).await;
    for _ in 0..3 {
        assert!(raw.heartbeat().await, "connection ended before a heartbeat");
        // Our side of the bargain: weft's own idle timeout is the default.
        raw.send(&frame(0, 0, &[])).await;
    }
}

/// A silent client is closed after weft's idle timeout with
/// amqp:resource-limit-exceeded; weft announced the timeout in its open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let w = weft_with("idle_timeout_ms = 400\n");
    let addr = w.amqp.unwrap();
    let mut raw = RawAmqp::open(addr).await;
    let announced = raw.their_open.as_ref().and_then(|o| o.idle_time_out);
    assert!(
        announced.is_some_and(|ms| ms > 0 && ms <= 400),
        "weft's open: {announced:?}"
    );
    assert_eq!(
        raw.ended().await,
        Ended::Close(Some("amqp:resource-limit-exceeded".into()))
    );
    // Another client is served as before.
    let mut c = Amqp::open(addr, "after-idle").await;
    let mut rx = c.receiver("rx", "idle/t").await;
    rx.set_credit(1).await.unwrap();
    let mut tx = c.sender("tx", "idle/t").await;
    tx.send(data(b"x")).await.unwrap();
    let d = recv(&mut rx).await;
    rx.accept(&d).await.unwrap();
    c.close().await;
}

/// In a queue group, modified{undeliverable-here} hands the delivery to
/// another member, and a member's link that closes holding unaccepted
/// deliveries hands them on too (the contract's delivery side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_hands_deliveries_on() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let mut a = Amqp::open(addr, "group-a").await;
    let mut a_rx = a.receiver("group-a", "$share/g/hand/on").await;
    a_rx.set_credit(3).await.unwrap();
    let mut s = Amqp::open(addr, "group-tx").await;
    let mut tx = s.sender("group-tx", "hand/on").await;
    for i in 0..3u8 {
        tx.send(data(&[b'h', i])).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(recv(&mut a_rx).await);
    }
    let mut b = Amqp::open(addr, "group-b").await;
    let mut b_rx = b.receiver("group-b", "$share/g/hand/on").await;
    b_rx.set_credit(10).await.unwrap();
    // Not here: to B. (A delivery B had got while A held it would come
    // first here, or as a duplicate before the marker below.)
    let elsewhere = Modified {
        delivery_failed: None,
        undeliverable_here: Some(true),
        message_annotations: None,
    };
    let first = held.remove(0);
    a_rx.modify(&first, elsewhere).await.unwrap();
    let d = recv(&mut b_rx).await;
    b_rx.accept(&d).await.unwrap();
    assert_eq!(
        body_bytes(&d.message().body),
        body_bytes(&first.message().body)
    );
    // A's link closes with two unaccepted: B gets them.
    a_rx.close().await.unwrap();
    let mut again = Vec::new();
    for _ in 0..2 {
        let d = recv(&mut b_rx).await;
        again.push(body_bytes(&d.message().body));
        b_rx.accept(&d).await.unwrap();
    }
    again.sort();
    let mut want: Vec<Vec<u8>> = held.iter().map(|d| body_bytes(&d.message().body)).collect();
    want.sort();
    assert_eq!(again, want);
    // A's link is closed (its two came back): the marker is B's.
    tx.send(data(b"marker")).await.unwrap();
    next_is_marker(&mut b_rx, b"marker", "no duplicate").await;
    a.close().await;
    b.close().await;
    s.close().await;
}

/// A receiver that lowers its credit while deliveries are in flight (OASIS
/// AMQP 1.0, 2.6.7): credit 5, three delivered, then flow(delivery-count 0,
/// link-credit 1): its delivery-count + link-credit − weft's delivery-count
/// is 0 + 1 − 3 < 0, so weft's credit is 0. weft answers an echo with
/// delivery-count 3, link-credit 0, sends nothing for an event published
/// then, and sends it once a flow grants again. Frame by frame: a client
/// library keeps its delivery-count in step and never sends this flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_lowered_below_the_deliveries_in_flight_is_zero() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let mut raw = RawAmqp::open(addr).await;
    let initial = raw.attach_receiver(0, "credit/raw").await;
    assert_eq!(initial, 0, "weft's initial delivery-count");
    raw.link_flow(0, 0, 5, false).await;
    let mut c = Amqp::open(addr, "credit-raw-tx").await;
    let mut tx = c.sender("credit-raw-tx", "credit/raw").await;
    for i in 0..3u8 {
        tx.send(data(&[b'c', i])).await.unwrap();
    }
    for i in 0..3u8 {
        match raw.link_frame().await {
            LinkFrame::Transfer(body) => assert!(contains(&body, &[b'c', i]), "delivery {i}"),
            LinkFrame::Flow(f) => panic!("a flow before delivery {i}: {f:?}"),
        }
    }
    // Lowered while the three were in flight.
    raw.link_flow(0, 0, 1, true).await;
    let echoed = match raw.link_frame().await {
        LinkFrame::Flow(f) => f,
        LinkFrame::Transfer(_) => panic!("a transfer instead of the echo"),
    };
    assert_eq!(
        (echoed.delivery_count, echoed.link_credit),
        (Some(3), Some(0)),
        "weft's link state after the lowered flow"
    );
    // Routed (accepted) while the credit is 0: must wait.
    tx.send(data(b"must-wait")).await.unwrap();
    raw.link_flow(0, 0, 1, true).await;
    match raw.link_frame().await {
        LinkFrame::Flow(f) => assert_eq!(
            (f.delivery_count, f.link_credit),
            (Some(3), Some(0)),
            "weft's link state with an event waiting"
        ),
        LinkFrame::Transfer(_) => panic!("a transfer with no credit"),
    }
    // Granted again (in step with weft's count): the waiting event is the
    // next frame.
    raw.link_flow(0, 3, 1, false).await;
    match raw.link_frame().await {
        LinkFrame::Transfer(body) => assert!(contains(&body, b"must-wait"), "the waiting event"),
        LinkFrame::Flow(f) => panic!("a flow instead of the waiting event: {f:?}"),
    }
    c.close().await;
}

/// Review 2.3: weft's credit flows for a client's sender link carry
/// weft's current next-outgoing-id on a session that also receives (they
/// carried the one of the client's last flow: fe2o3-amqp takes its
/// next-incoming-id from them and went backwards). A raw peer sends on
/// handle 0 and receives on handle 1 of one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_flows_carry_the_current_next_outgoing_id() {
    use fe2o3_amqp::types::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
    use fe2o3_amqp::types::messaging::{Source, Target};
    use fe2o3_amqp::types::performatives::{Attach, Flow, Performative};
    let w = weft_with("sender_credit = 2\n");
    let mut raw = RawAmqp::open(w.amqp.unwrap()).await;
    assert_eq!(raw.attach_sender("flows/t").await, 2);
    let attach = Attach {
        name: "raw-receiver".into(),
        handle: 1.into(),
        role: Role::Receiver,
        snd_settle_mode: SenderSettleMode::Settled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(Box::new(Source::builder().address("flows/t").build())),
        target: Some(Box::new(Target::builder().build().into())),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: None,
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    raw.send(&frame(0, 0, &performative(&Performative::Attach(attach))))
        .await;
    raw.until(
        |p| matches!(p, Performative::Attach(a) if a.handle.0 == 1),
        "receiver attach reply",
    )
    .await;
    let flow = Flow {
        next_incoming_id: None,
        incoming_window: 1000,
        next_outgoing_id: 0,
        outgoing_window: 1000,
        handle: Some(1.into()),
        delivery_count: Some(0),
        link_credit: Some(100),
        available: None,
        drain: false,
        echo: false,
        properties: None,
    };
    raw.send(&frame(0, 0, &performative(&Performative::Flow(flow))))
        .await;
    // Three messages through weft and back: weft's next-outgoing-id is 3.
    let is_transfer = |body: &[u8]| body.starts_with(&[0x00, 0x53, 0x14]);
    for id in 0..3 {
        raw.transfer(id, b"m").await;
        loop {
            let f = raw.next_frame().await.expect("a frame");
            if is_transfer(&f.body) {
                break;
            }
        }
    }
    // The fourth: weft gives its credit back with a flow, which must say
    // weft sent 3 transfers (its first id is 0).
    raw.transfer(3, b"m").await;
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let Some(f) = raw.next_frame().await else {
                return false;
            };
            if let Ok(Performative::Flow(f)) = serde_amqp::from_slice::<Performative>(&f.body) {
                if f.handle.map(|h| h.0) == Some(0) {
                    seen.push(f.next_outgoing_id);
                    if f.next_outgoing_id >= 3 {
                        return true;
                    }
                }
            }
        }
    })
    .await;
    assert_eq!(found, Ok(true), "flows' next-outgoing-id: {seen:?}");
}
