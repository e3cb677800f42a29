//! AMQP 1.0 end to end against the running binary, with the fe2o3-amqp
//! client: a sender and a receiver on weft (unsettled both ways), and an
//! MQTT subscriber (rumqttc) that gets the same event. The wider suite
//! (credit, redelivery, interop) is in the other `amqp_*` tests.

mod common;

use std::time::Duration;

use common::*;
use fe2o3_amqp::link::delivery::DeliveryInfo;
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
