//! AMQP 1.0 bad input (issue 15, acceptance 3): malformed frames, bad
//! performatives, a transfer beyond the credit weft granted and a transfer
//! beyond `[amqp] message_bytes_max` each end only the offending connection
//! (or link, where the contract makes it a link error) with the AMQP error
//! condition the spec names, while another AMQP connection keeps working.
//! The offending peer is raw TCP (tests/support/amqp.rs): no client library
//! sends these.

mod common;

#[path = "support/amqp.rs"]
mod amqp;

use std::net::SocketAddr;

use amqp::*;
use common::*;
use fe2o3_amqp::types::performatives::{Begin, Performative};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn weft_with(extra: &str) -> Weft {
    let w = Weft::start(1, &format!("[amqp]\nlisten = \"127.0.0.1:0\"\n{extra}"));
    assert!(w.amqp.is_some(), "weft announced its AMQP listener");
    w
}

/// A client connected before the bad one; after it, a round trip on it
/// and on a fresh connection must still work.
struct Bystander {
    c: Amqp,
    rx: fe2o3_amqp::Receiver,
    tx: fe2o3_amqp::Sender,
}

impl Bystander {
    async fn new(addr: SocketAddr) -> Bystander {
        let mut c = Amqp::open(addr, "bystander").await;
        let mut rx = c.receiver("by-rx", "alive/t").await;
        rx.set_credit(10).await.unwrap();
        let tx = c.sender("by-tx", "alive/t").await;
        Bystander { c, rx, tx }
    }

    async fn still_works(mut self, addr: SocketAddr) {
        self.tx.send(data(b"still here")).await.unwrap();
        let d = recv(&mut self.rx).await;
        self.rx.accept(&d).await.unwrap();
        assert_eq!(body_bytes(&d.message().body), b"still here");
        self.c.close().await;
        let mut fresh = Amqp::open(addr, "fresh").await;
        let mut rx = fresh.receiver("fresh-rx", "alive/u").await;
        rx.set_credit(1).await.unwrap();
        let mut tx = fresh.sender("fresh-tx", "alive/u").await;
        tx.send(data(b"fresh")).await.unwrap();
        let d = recv(&mut rx).await;
        rx.accept(&d).await.unwrap();
        fresh.close().await;
    }
}

async fn closed_with(raw: &mut RawAmqp, condition: &str) {
    assert_eq!(raw.ended().await, Ended::Close(Some(condition.into())));
    assert!(
        raw.next_frame().await.is_none(),
        "the socket closes after the close frame"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_header_too_small_closes_with_framing_error() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut raw = RawAmqp::open(addr).await;
    // Size 4: less than the 8-byte header itself.
    raw.send(&[0, 0, 0, 4, 2, 0, 0, 0]).await;
    closed_with(&mut raw, "amqp:connection:framing-error").await;
    by.still_works(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_offset_inside_the_header_closes_with_framing_error() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut raw = RawAmqp::open(addr).await;
    // doff 1 (4 bytes): the body would start inside the header.
    raw.send(&[0, 0, 0, 12, 1, 0, 0, 0, 0x00, 0x53, 0x10, 0x45])
        .await;
    closed_with(&mut raw, "amqp:connection:framing-error").await;
    by.still_works(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_beyond_max_frame_size_closes_with_framing_error() {
    let w = weft_with("max_frame_size = 4096\n");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut raw = RawAmqp::open(addr).await;
    let mut big = frame(0, 0, &vec![0x40; 8192]);
    big.truncate(4096 + 8); // the header announces more than weft allows
    raw.send(&big).await;
    closed_with(&mut raw, "amqp:connection:framing-error").await;
    by.still_works(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_header_gets_weft_header_and_a_close() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("weft closes")
        .ok();
    // The spec: answer with the header weft speaks, then close the socket.
    assert!(
        got == b"AMQP\x03\x01\x00\x00" || got == b"AMQP\x00\x01\x00\x00",
        "{got:?}"
    );
    by.still_works(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_performative_closes_with_decode_error() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut raw = RawAmqp::open(addr).await;
    // Descriptor 0x30: no performative has it; an empty list follows.
    raw.send(&frame(0, 0, &[0x00, 0x53, 0x30, 0x45])).await;
    closed_with(&mut raw, "amqp:decode-error").await;
    by.still_works(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_performative_closes_with_decode_error() {
    let w = weft_with("");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut raw = RawAmqp::open(addr).await;
    // A begin whose list says 200 bytes follow; 3 do.
    raw.send(&frame(0, 1, &[0x00, 0x53, 0x11, 0xc0, 200, 4, 0x40]))
        .await;
    closed_with(&mut raw, "amqp:decode-error").await;
    by.still_works(addr).await;
}

/// A sender that transfers beyond the credit weft told it loses its link
/// (amqp:link:transfer-limit-exceeded on the detach); its connection
/// stays (the contract), so it can begin another session.
///
/// weft told credit 2 (delivery-count 0); the client writes three
/// pre-settled transfers at once, before reading any flow: the third is
/// beyond what it was told, however fast weft takes the first two (their
/// credit comes back in a flow after the frames read together, which the
/// client could not have read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_beyond_credit_detaches_with_transfer_limit_exceeded() {
    let w = weft_with("sender_credit = 2\n");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut raw = RawAmqp::open(addr).await;
    let credit = raw.attach_sender("credit/violation").await;
    assert_eq!(credit, 2, "weft grants [amqp] sender_credit");
    let mut three = Vec::new();
    for id in 0..3 {
        let body = serde_amqp::to_vec(&data(b"x").body).unwrap();
        three.extend(transfer_frame(Some(id), false, false, body));
    }
    raw.send(&three).await;
    assert_eq!(
        raw.ended().await,
        Ended::Detach(Some("amqp:link:transfer-limit-exceeded".into()))
    );
    let begin = Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: 10,
        outgoing_window: 10,
        handle_max: 4.into(),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    raw.send(&frame(0, 0, &[])).await; // an empty frame: a heartbeat
    raw.send(&frame(0, 1, &performative(&Performative::Begin(begin))))
        .await;
    let reply = raw
        .until(
            |p| matches!(p, Performative::Begin(_) | Performative::Close(_)),
            "begin reply",
        )
        .await;
    assert!(
        matches!(reply, Performative::Begin(ref b) if b.remote_channel == Some(1)),
        "{reply:?}"
    );
    by.still_works(addr).await;
}

/// A message larger than `[amqp] message_bytes_max`: the link ends with
/// amqp:link:message-size-exceeded (the spec's condition for a message
/// over the receiver's max-message-size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_beyond_message_bytes_max_ends_with_message_size_exceeded() {
    let w = weft_with("message_bytes_max = 1024\n");
    let addr = w.amqp.unwrap();
    let by = Bystander::new(addr).await;
    let mut raw = RawAmqp::open(addr).await;
    raw.attach_sender("size/violation").await;
    raw.transfer(0, &vec![7u8; 4000]).await;
    match raw.ended().await {
        Ended::Detach(Some(c)) | Ended::Close(Some(c)) => {
            assert_eq!(c, "amqp:link:message-size-exceeded")
        }
        other => panic!("{other:?}"),
    }
    by.still_works(addr).await;
}
