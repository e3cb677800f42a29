//! AMQP 1.0 end to end against the running binary, with the fe2o3-amqp
//! client: a sender and a receiver on weft (unsettled both ways), and an
//! MQTT subscriber (rumqttc) that gets the same event. The wider suite
//! (credit, redelivery, interop) is in the other `amqp_*` tests.

mod common;

use std::time::Duration;

use common::*;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::SenderSettleMode;
use fe2o3_amqp::types::messaging::{Body, Outcome};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use rumqttc::QoS;

const WAIT: Duration = Duration::from_secs(10);

/// A message's payload as weft writes it: one data section (or a string
/// or binary value).
fn payload(body: &Body<Value>) -> Vec<u8> {
    match body {
        Body::Data(data) => data.iter().flat_map(|d| d.0.iter().copied()).collect(),
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Binary(b) => b.to_vec(),
            other => panic!("body {other:?}"),
        },
        other => panic!("body {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsettled_send_and_receive_meets_mqtt() {
    let weft = Weft::launch_args(2, "", &["--amqp-listen", "127.0.0.1:0"]);
    let amqp = weft.amqp.expect("the amqp listening line");
    let url = format!("amqp://{amqp}");

    let mut mqtt = connect(weft.addr, "mqtt-sub").await;
    mqtt.subscribe("sensors/#", QoS::AtLeastOnce).await;

    let mut connection = tokio::time::timeout(WAIT, Connection::open("smoke", &url[..]))
        .await
        .expect("open in time")
        .expect("open");
    let mut session = Session::begin(&mut connection).await.expect("begin");
    // An unsettled receiver: weft keeps each delivery until accepted.
    let mut receiver = Receiver::builder()
        .name("rx")
        .source("sensors/+")
        .sender_settle_mode(SenderSettleMode::Unsettled)
        .attach(&mut session)
        .await
        .expect("receiver attached");
    let mut sender = Sender::attach(&mut session, "tx", "sensors/t1")
        .await
        .expect("sender attached");

    // Unsettled: accepted once weft took it.
    let outcome = tokio::time::timeout(WAIT, sender.send("21.5"))
        .await
        .expect("outcome in time")
        .expect("sent");
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");

    let delivery = tokio::time::timeout(WAIT, receiver.recv::<Body<Value>>())
        .await
        .expect("delivery in time")
        .expect("received");
    let info = DeliveryInfo::from(&delivery);
    assert_eq!(payload(delivery.body()), b"21.5");
    receiver.accept(info).await.expect("accepted");

    // The same event, to MQTT.
    let p = tokio::time::timeout(WAIT, mqtt.next_publish())
        .await
        .expect("MQTT delivery in time");
    assert_eq!(p.topic, "sensors/t1");
    assert_eq!(&p.payload[..], b"21.5");

    // And an MQTT publish reaches the AMQP receiver.
    mqtt.publish("sensors/t2", QoS::AtLeastOnce, "from mqtt")
        .await;
    let delivery = tokio::time::timeout(WAIT, receiver.recv::<Body<Value>>())
        .await
        .expect("delivery in time")
        .expect("received");
    assert_eq!(payload(delivery.body()), b"from mqtt");
    receiver.accept(&delivery).await.expect("accepted");

    sender.close().await.expect("sender closed");
    receiver.close().await.expect("receiver closed");
    session.end().await.expect("session ended");
    connection.close().await.expect("connection closed");
}

/// An unsettled receiver on its own connection, attached to `source`.
async fn receiver(
    url: &str,
    name: &str,
    source: &str,
) -> (ConnectionHandle<()>, SessionHandle<()>, Receiver) {
    let mut connection = tokio::time::timeout(WAIT, Connection::open(name, url))
        .await
        .expect("open in time")
        .expect("open");
    let mut session = Session::begin(&mut connection).await.expect("begin");
    let receiver = Receiver::builder()
        .name(name)
        .source(source)
        .sender_settle_mode(SenderSettleMode::Unsettled)
        .attach(&mut session)
        .await
        .expect("receiver attached");
    (connection, session, receiver)
}

async fn recv(receiver: &mut Receiver) -> fe2o3_amqp::link::delivery::Delivery<Body<Value>> {
    tokio::time::timeout(WAIT, receiver.recv::<Body<Value>>())
        .await
        .expect("delivery in time")
        .expect("received")
}

/// Released: sent again as it was; modified (delivery failed): sent again
/// with one more delivery-count; a queue-group member that leaves with an
/// unsettled delivery: another member gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispositions_and_a_leaving_group_member() {
    let weft = Weft::launch_args(2, "", &["--amqp-listen", "127.0.0.1:0"]);
    let url = format!("amqp://{}", weft.amqp.expect("the amqp listening line"));
    let mqtt = connect(weft.addr, "mqtt-pub").await;

    let (_c, _s, mut rx) = receiver(&url, "rx", "jobs/plain").await;
    mqtt.publish("jobs/plain", QoS::AtLeastOnce, "j1").await;
    let first = recv(&mut rx).await;
    assert_eq!(payload(first.body()), b"j1");
    rx.release(&first).await.expect("released");
    let again = recv(&mut rx).await;
    assert_eq!(payload(again.body()), b"j1", "sent again");
    let count = |d: &fe2o3_amqp::link::delivery::Delivery<Body<Value>>| {
        d.message().header.as_ref().map_or(0, |h| h.delivery_count)
    };
    assert_eq!(count(&again), 0, "released: delivery-count unchanged");
    let failed = fe2o3_amqp::types::messaging::Modified {
        delivery_failed: Some(true),
        undeliverable_here: None,
        message_annotations: None,
    };
    rx.modify(&again, failed).await.expect("modified");
    let third = recv(&mut rx).await;
    assert_eq!(payload(third.body()), b"j1");
    assert_eq!(count(&third), 1, "modified: one more delivery");
    rx.accept(&third).await.expect("accepted");

    // A queue group: the only member takes the job and leaves unsettled.
    let (_ca, _sa, mut a) = receiver(&url, "a", "$share/workers/jobs/+").await;
    mqtt.publish("jobs/x", QoS::AtLeastOnce, "j2").await;
    let taken = recv(&mut a).await;
    assert_eq!(payload(taken.body()), b"j2");
    let (_cb, _sb, mut b) = receiver(&url, "b", "$share/workers/jobs/+").await;
    a.close().await.expect("a closed");
    let handed = recv(&mut b).await;
    assert_eq!(
        payload(handed.body()),
        b"j2",
        "handed on to the other member"
    );
    b.accept(&handed).await.expect("accepted");
}
