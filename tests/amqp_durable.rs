//! Durable AMQP receivers (terminus durable / expiry-policy never) against
//! the running binary, with a real client (fe2o3-amqp): the subscription
//! outlives a dropped connection and a detach without `closed`, keeps what
//! was unsettled and what arrived meanwhile, and hands it to the next
//! attach of the same container-id and link name (the unsettled ones
//! first, with header.delivery-count + 1); a detach with `closed` ends it;
//! a plain receiver keeps nothing.

mod common;

#[path = "support/amqp.rs"]
mod amqp;

use std::net::SocketAddr;
use std::time::Duration;

use amqp::*;
use common::*;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, SenderSettleMode};
use fe2o3_amqp::types::messaging::{Source, TerminusDurability};
use fe2o3_amqp::Receiver;

/// Long enough that a delivery, had weft sent one, would have arrived on
/// loopback; only ever a wait for "nothing more".
const QUIET: Duration = Duration::from_millis(500);

const AMQP_ON: &str = "[amqp]\nlisten = \"127.0.0.1:0\"\n";

fn weft() -> Weft {
    let w = Weft::start(2, AMQP_ON);
    assert!(w.amqp.is_some(), "weft announced its AMQP listener");
    w
}

fn amqp_addr(w: &Weft) -> SocketAddr {
    w.amqp.expect("AMQP listener")
}

/// An unsettled receiver with manual credit; `durable`: its source asks
/// for durability (unsettled-state).
async fn receiver(c: &mut Amqp, name: &str, address: &str, durable: bool) -> Receiver {
    let mut source = Source::builder().address(address);
    if durable {
        source = source.durable(TerminusDurability::UnsettledState);
    }
    tokio::time::timeout(
        AMQP_WAIT,
        Receiver::builder()
            .name(name)
            .source(source.build())
            .sender_settle_mode(SenderSettleMode::Unsettled)
            .receiver_settle_mode(ReceiverSettleMode::First)
            .credit_mode(CreditMode::Manual)
            .attach(&mut c.session),
    )
    .await
    .expect("receiver attach in time")
    .unwrap_or_else(|e| panic!("receiver attach {address}: {e:?}"))
}

/// Receives `n` deliveries, accepting each: (payload, delivery-count).
async fn take(rx: &mut Receiver, n: usize) -> Vec<(Vec<u8>, u32)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let d = recv(rx).await;
        let count = d.message().header.as_ref().map_or(0, |h| h.delivery_count);
        got.push((body_bytes(&d.message().body), count));
        rx.accept(&d).await.unwrap();
    }
    got
}

async fn publish(w: &Weft, id: &str, topic: &str, payloads: &[&[u8]]) {
    let mut s = Amqp::open(amqp_addr(w), id).await;
    let mut tx = s.sender(id, topic).await;
    for p in payloads {
        tx.send(data(p)).await.unwrap();
    }
    s.close().await;
}

/// A durable receiver holds three unaccepted deliveries when its connection
/// is cut; two more events come meanwhile; the same container-id and link
/// name on a new connection gets the three again (delivery-count 1) then
/// the two (delivery-count 0), each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_receiver_gets_what_it_left_and_what_came_meanwhile() {
    let w = weft();
    let (via, cut) = cuttable(amqp_addr(&w)).await;
    let mut a = Amqp::open(via, "dur-c").await;
    let mut rx = receiver(&mut a, "sub1", "dur/t", true).await;
    rx.set_credit(3).await.unwrap();
    publish(&w, "dur-tx1", "dur/t", &[b"a1", b"a2", b"a3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(body_bytes(&recv(&mut rx).await.message().body));
    }
    assert_eq!(held, [b"a1".to_vec(), b"a2".to_vec(), b"a3".to_vec()]);
    cut.send(()).unwrap();
    // Published once the cut connection is gone for weft: a plain
    // receiver on the same filter shows when the events were routed.
    let mut watch = Amqp::open(amqp_addr(&w), "dur-watch").await;
    let mut wrx = receiver(&mut watch, "watch", "dur/t", false).await;
    wrx.set_credit(10).await.unwrap();
    publish(&w, "dur-tx2", "dur/t", &[b"b1", b"b2"]).await;
    assert_eq!(take(&mut wrx, 2).await.len(), 2);
    drop(a);

    let mut b = Amqp::open(amqp_addr(&w), "dur-c").await;
    let mut rx = receiver(&mut b, "sub1", "dur/t", true).await;
    rx.set_credit(10).await.unwrap();
    let got = take(&mut rx, 5).await;
    let want: Vec<(Vec<u8>, u32)> = [("a1", 1), ("a2", 1), ("a3", 1), ("b1", 0), ("b2", 0)]
        .iter()
        .map(|(p, c)| (p.as_bytes().to_vec(), *c))
        .collect();
    assert_eq!(got, want);
    assert!(recv_within(&mut rx, QUIET).await.is_none(), "no duplicate");
    // The subscription goes on.
    publish(&w, "dur-tx3", "dur/t", &[b"c1"]).await;
    assert_eq!(take(&mut rx, 1).await, [(b"c1".to_vec(), 0)]);
    watch.close().await;
    b.close().await;
}

/// A detach without `closed` keeps the subscription too (same connection);
/// a detach with `closed` ends it: a later attach of the name gets nothing
/// of what came between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_keeps_a_durable_subscription_and_close_ends_it() {
    let w = weft();
    let mut c = Amqp::open(amqp_addr(&w), "dur-d").await;
    let rx = receiver(&mut c, "sub2", "dur/d", true).await;
    rx.detach().await.unwrap();
    publish(&w, "dur-d-tx1", "dur/d", &[b"kept"]).await;
    let mut rx = receiver(&mut c, "sub2", "dur/d", true).await;
    rx.set_credit(10).await.unwrap();
    assert_eq!(take(&mut rx, 1).await, [(b"kept".to_vec(), 0)]);
    rx.close().await.unwrap();
    publish(&w, "dur-d-tx2", "dur/d", &[b"gone"]).await;
    let mut rx = receiver(&mut c, "sub2", "dur/d", true).await;
    rx.set_credit(10).await.unwrap();
    assert!(
        recv_within(&mut rx, QUIET).await.is_none(),
        "a closed durable subscription kept an event"
    );
    publish(&w, "dur-d-tx3", "dur/d", &[b"new"]).await;
    assert_eq!(take(&mut rx, 1).await, [(b"new".to_vec(), 0)]);
    c.close().await;
}

/// A plain receiver's connection goes: what came after is not kept for the
/// next attach of its name (topic semantics, as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_receiver_keeps_nothing() {
    let w = weft();
    let (via, cut) = cuttable(amqp_addr(&w)).await;
    let mut a = Amqp::open(via, "dur-p").await;
    let mut rx = receiver(&mut a, "sub3", "dur/p", false).await;
    rx.set_credit(3).await.unwrap();
    publish(&w, "dur-p-tx1", "dur/p", &[b"p1"]).await;
    assert_eq!(body_bytes(&recv(&mut rx).await.message().body), b"p1");
    cut.send(()).unwrap();
    let mut watch = Amqp::open(amqp_addr(&w), "dur-p-watch").await;
    let mut wrx = receiver(&mut watch, "watch", "dur/p", false).await;
    wrx.set_credit(10).await.unwrap();
    publish(&w, "dur-p-tx2", "dur/p", &[b"p2"]).await;
    assert_eq!(take(&mut wrx, 1).await.len(), 1);
    drop(a);
    let mut b = Amqp::open(amqp_addr(&w), "dur-p").await;
    let mut rx = receiver(&mut b, "sub3", "dur/p", false).await;
    rx.set_credit(10).await.unwrap();
    assert!(
        recv_within(&mut rx, QUIET).await.is_none(),
        "a plain receiver's events were kept"
    );
    watch.close().await;
    b.close().await;
}
