//! AMQP 1.0 with a real Rust client (fe2o3-amqp) against the running binary
//! (issue 15, acceptance 1): send and receive with exact bytes and
//! properties, pre-settled and unsettled, a credit-limited consumer, a
//! consumer that vanishes holding unaccepted deliveries, request/reply via
//! reply-to against NATS and MQTT 5 responders, the mapping to and from NATS
//! and MQTT 5 subscribers, and across a two-router mesh. The error cases
//! (malformed frames, bad performatives, credit and size violations) are in
//! tests/amqp_errors.rs; the python-qpid-proton scripts in tests/amqp_interop.rs.
//! With persistence on, an accepted AMQP publish survives `kill -9`.

mod common;

#[path = "support/amqp.rs"]
mod amqp;

use std::time::Duration;

use amqp::*;
use common::*;
use fe2o3_amqp::types::messaging::Outcome;
use futures::StreamExt;
use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as Q5;

const AMQP_ON: &str = "[amqp]\nlisten = \"127.0.0.1:0\"\n";

fn weft() -> Weft {
    let w = Weft::start(2, AMQP_ON);
    assert!(w.amqp.is_some(), "weft announced its AMQP listener");
    w
}

fn amqp_addr(w: &Weft) -> std::net::SocketAddr {
    w.amqp.expect("AMQP listener")
}

async fn next_v5_publish(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<P5>,
) -> rumqttc::v5::mqttbytes::v5::Publish {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(P5::Publish(p))) => return p,
            Ok(Some(_)) => {}
            other => panic!("no MQTT 5 publish: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_keep_bytes_and_properties() {
    let w = weft();
    let mut c = Amqp::open(amqp_addr(&w), "rt").await;
    let mut rx = c.receiver("rt-rx", "rt/exact").await;
    rx.set_credit(10).await.unwrap();
    let mut tx = c.sender("rt-tx", "rt/exact").await;
    let payload: Vec<u8> = (0..=255u8).collect();
    let props = Props {
        message_id: "mid-1",
        correlation_id: b"corr-\x00\x01",
        reply_to: Some("rt/replies"),
        content_type: "application/octet-stream",
        subject: "subject-1",
        app: &[("colour", "blue"), ("k2", "v2")],
    };
    let outcome = tx.send(with_props(&payload, &props)).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    // The empty payload too.
    tx.send(data(b"")).await.unwrap();
    let got = recv(&mut rx).await;
    rx.accept(&got).await.unwrap();
    let m = got.message();
    assert_eq!(body_bytes(&m.body), payload);
    let p = m.properties.as_ref().expect("properties");
    assert_eq!(
        format!("{:?}", p.message_id.as_ref().unwrap()),
        format!(
            "{:?}",
            fe2o3_amqp::types::messaging::MessageId::String("mid-1".into())
        )
    );
    assert_eq!(
        correlation_bytes(p.correlation_id.as_ref().unwrap()),
        b"corr-\x00\x01"
    );
    assert_eq!(
        p.content_type.as_ref().map(|s| s.0.as_str()),
        Some("application/octet-stream")
    );
    assert_eq!(p.subject.as_deref(), Some("subject-1"));
    // reply-to as weft renders a topic (the MQTT form).
    assert_eq!(p.reply_to.as_deref(), Some("rt/replies"));
    assert_eq!(app_prop(m, "colour").as_deref(), Some("blue"));
    assert_eq!(app_prop(m, "k2").as_deref(), Some("v2"));
    let empty = recv(&mut rx).await;
    rx.accept(&empty).await.unwrap();
    assert_eq!(body_bytes(&empty.message().body), b"");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presettled_and_unsettled_sends_reach_both_receiver_modes() {
    let w = weft();
    let mut r = Amqp::open(amqp_addr(&w), "settle-rx").await;
    let mut alo = r.receiver("alo", "settle/t").await;
    let mut amo = r.settled_receiver("amo", "settle/t").await;
    alo.set_credit(20).await.unwrap();
    amo.set_credit(20).await.unwrap();
    let mut s = Amqp::open(amqp_addr(&w), "settle-tx").await;
    let mut pre = s.presettled_sender("pre", "settle/t").await;
    let mut ack = s.sender("ack", "settle/t").await;
    for i in 0..5 {
        let sendable = fe2o3_amqp::Sendable::builder()
            .message(data(format!("pre-{i}").as_bytes()))
            .settled(true)
            .build();
        pre.send(sendable).await.unwrap();
    }
    for i in 0..5 {
        let outcome = ack.send(data(format!("ack-{i}").as_bytes())).await.unwrap();
        assert!(
            matches!(outcome, Outcome::Accepted(_)),
            "unsettled send {i}: {outcome:?}"
        );
    }
    // Sent after the ten: each receiver's eleventh delivery.
    ack.send(data(b"marker")).await.unwrap();
    let mut want: Vec<String> = (0..5)
        .flat_map(|i| [format!("pre-{i}"), format!("ack-{i}")])
        .collect();
    want.sort();
    for rx in [&mut alo, &mut amo] {
        let mut got = Vec::new();
        for _ in 0..10 {
            let d = recv(rx).await;
            got.push(String::from_utf8(body_bytes(&d.message().body)).unwrap());
            // Accepting a pre-settled delivery is a no-op for the client.
            let _ = rx.accept(&d).await;
        }
        got.sort();
        assert_eq!(got, want);
        next_is_marker(rx, b"marker", "nothing beyond the ten").await;
    }
    s.close().await;
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_never_gets_more_than_its_credit() {
    // Each round queues exactly `credit` events and then a marker, and
    // grants `credit`: a delivery beyond it is the marker arriving with no
    // credit left, which fe2o3-amqp refuses (TransferLimitExceeded: the
    // next recv errs); granting one more then must bring exactly the
    // marker. (The arithmetic itself, with a client lowering its credit
    // while deliveries are in flight, is checked frame by frame in
    // tests/amqp_session.rs.)
    let w = weft();
    let mut r = Amqp::open(amqp_addr(&w), "credit-rx").await;
    let mut rx = r.receiver("credit", "credit/t").await;
    let mut s = Amqp::open(amqp_addr(&w), "credit-tx").await;
    let mut tx = s.sender("credit-tx", "credit/t").await;
    let mut seen = Vec::new();
    let mut next = 0u8;
    for credit in [1u32, 2, 3, 4] {
        for _ in 0..credit {
            tx.send(data(&[next])).await.unwrap();
            next += 1;
        }
        let marker = format!("marker-{credit}");
        tx.send(data(marker.as_bytes())).await.unwrap();
        rx.set_credit(credit).await.unwrap();
        for _ in 0..credit {
            let d = recv(&mut rx).await;
            seen.extend(body_bytes(&d.message().body));
            rx.accept(&d).await.unwrap();
        }
        rx.set_credit(1).await.unwrap();
        next_is_marker(
            &mut rx,
            marker.as_bytes(),
            &format!("a delivery beyond credit {credit} (seen so far {seen:?})"),
        )
        .await;
    }
    assert_eq!(seen, (0..10).collect::<Vec<u8>>(), "all, in order, once");
    s.close().await;
    r.close().await;
}

/// A queue-group consumer vanishes (its socket cut, no detach) holding five
/// unaccepted deliveries: the other member gets exactly those five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaccepted_deliveries_of_a_vanished_consumer_are_redelivered() {
    let w = weft();
    let (via, cut) = cuttable(amqp_addr(&w)).await;
    let mut a = Amqp::open(via, "red-a").await;
    let mut a_rx = a.receiver("red-a", "$share/g/red/q").await;
    a_rx.set_credit(5).await.unwrap();
    let mut s = Amqp::open(amqp_addr(&w), "red-tx").await;
    let mut tx = s.sender("red-tx", "red/q").await;
    for i in 0..5u8 {
        tx.send(data(&[b'r', i])).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(body_bytes(&recv(&mut a_rx).await.message().body));
    }
    let mut b = Amqp::open(amqp_addr(&w), "red-b").await;
    let mut b_rx = b.receiver("red-b", "$share/g/red/q").await;
    b_rx.set_credit(10).await.unwrap();
    cut.send(()).unwrap();
    // B's first five are A's five (one B had got while A held it would
    // make a duplicate among them or after them).
    let mut again = Vec::new();
    for _ in 0..5 {
        let d = recv(&mut b_rx).await;
        again.push(body_bytes(&d.message().body));
        b_rx.accept(&d).await.unwrap();
    }
    held.sort();
    again.sort();
    assert_eq!(again, held);
    // A is gone (its five came back): B is the group, the marker is B's.
    tx.send(data(b"marker")).await.unwrap();
    next_is_marker(&mut b_rx, b"marker", "no duplicate").await;
    drop(a);
    b.close().await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_with_a_nats_responder() {
    let w = weft();
    let nc = nats(w.nats).await;
    let mut service = nc.subscribe("svc.nats").await.unwrap();
    nats_sync(&nc).await;
    let responder = tokio::spawn({
        let nc = nc.clone();
        async move {
            let req = tokio::time::timeout(WAIT, service.next())
                .await
                .unwrap()
                .unwrap();
            let reply = req
                .reply
                .clone()
                .expect("the AMQP reply-to as the NATS reply");
            let mut answer = b"pong:".to_vec();
            answer.extend_from_slice(&req.payload);
            nc.publish(reply.clone(), answer.into()).await.unwrap();
            nc.flush().await.unwrap();
            reply.to_string()
        }
    });
    let mut c = Amqp::open(amqp_addr(&w), "req-nats").await;
    let mut replies = c.receiver("replies", "replies/nats/1").await;
    replies.set_credit(1).await.unwrap();
    let mut tx = c.sender("req", "svc/nats").await;
    let props = Props {
        message_id: "q1",
        correlation_id: b"c-nats",
        reply_to: Some("replies/nats/1"),
        content_type: "text/plain",
        subject: "ping",
        app: &[],
    };
    tx.send(with_props(b"ping", &props)).await.unwrap();
    let reply_subject = responder.await.unwrap();
    assert_eq!(reply_subject, "replies.nats.1");
    let got = recv(&mut replies).await;
    replies.accept(&got).await.unwrap();
    assert_eq!(body_bytes(&got.message().body), b"pong:ping");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_with_an_mqtt5_responder() {
    let w = weft();
    let (v5, mut rx5) = v5_client(w.addr, "svc-mqtt5", Some(("svc/mqtt", Q5::AtLeastOnce))).await;
    let responder = tokio::spawn(async move {
        let req = next_v5_publish(&mut rx5).await;
        let props = req.properties.clone().expect("request properties");
        let topic = props
            .response_topic
            .clone()
            .expect("reply-to as Response Topic");
        let reply = PublishProperties {
            correlation_data: props.correlation_data.clone(),
            ..Default::default()
        };
        let mut answer = b"pong:".to_vec();
        answer.extend_from_slice(&req.payload);
        v5.publish_with_properties(topic.clone(), Q5::AtLeastOnce, false, answer, reply)
            .await
            .unwrap();
        (topic, props.correlation_data.map(|b| b.to_vec()))
    });
    let mut c = Amqp::open(amqp_addr(&w), "req-mqtt").await;
    let mut replies = c.receiver("replies", "replies/mqtt/1").await;
    replies.set_credit(1).await.unwrap();
    let mut tx = c.sender("req", "svc/mqtt").await;
    let props = Props {
        message_id: "q2",
        correlation_id: b"c-mqtt-\xff",
        reply_to: Some("replies/mqtt/1"),
        content_type: "text/plain",
        subject: "ping",
        app: &[],
    };
    tx.send(with_props(b"ping", &props)).await.unwrap();
    let (topic, corr) = responder.await.unwrap();
    assert_eq!(topic, "replies/mqtt/1");
    assert_eq!(
        corr.as_deref(),
        Some(&b"c-mqtt-\xff"[..]),
        "correlation-id as Correlation Data"
    );
    let got = recv(&mut replies).await;
    replies.accept(&got).await.unwrap();
    assert_eq!(body_bytes(&got.message().body), b"pong:ping");
    let p = got.message().properties.as_ref().expect("reply properties");
    assert_eq!(
        correlation_bytes(p.correlation_id.as_ref().expect("correlation-id")),
        b"c-mqtt-\xff"
    );
    c.close().await;
}

/// An AMQP event reaches a NATS and an MQTT 5 subscriber with its
/// properties mapped (the contract's table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_event_reaches_nats_and_mqtt5_subscribers() {
    let w = weft();
    let nc = nats(w.nats).await;
    let mut nsub = nc.subscribe("map.out").await.unwrap();
    nats_sync(&nc).await;
    let (_v5, mut rx5) = v5_client(w.addr, "map-v5", Some(("map/out", Q5::AtLeastOnce))).await;
    let mut c = Amqp::open(amqp_addr(&w), "map-tx").await;
    let mut tx = c.sender("map-tx", "map/out").await;
    let props = Props {
        message_id: "mid-9",
        correlation_id: b"corr-9",
        reply_to: Some("map/back"),
        content_type: "application/json",
        subject: "subj-9",
        app: &[("trace", "t-1")],
    };
    tx.send(with_props(b"{\"v\":1}", &props)).await.unwrap();
    let n = tokio::time::timeout(WAIT, nsub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&n.payload[..], b"{\"v\":1}");
    assert_eq!(n.reply.as_deref(), Some("map.back"));
    let h = n.headers.expect("NATS headers from application properties");
    assert_eq!(h.get("trace").map(|v| v.as_str()), Some("t-1"));
    let p = next_v5_publish(&mut rx5).await;
    assert_eq!(&p.payload[..], b"{\"v\":1}");
    let pp = p.properties.expect("MQTT 5 properties");
    assert_eq!(pp.content_type.as_deref(), Some("application/json"));
    assert_eq!(pp.response_topic.as_deref(), Some("map/back"));
    assert_eq!(pp.correlation_data.as_deref(), Some(&b"corr-9"[..]));
    let user: Vec<(String, String)> = pp.user_properties.clone();
    assert!(user.contains(&("trace".into(), "t-1".into())), "{user:?}");
    assert!(
        user.contains(&("amqp-subject".into(), "subj-9".into())),
        "{user:?}"
    );
    assert!(
        user.contains(&("amqp-message-id".into(), "mid-9".into())),
        "{user:?}"
    );
    c.close().await;
}

/// MQTT 5 and NATS events reach an AMQP receiver as valid messages with
/// their properties mapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_and_nats_events_reach_an_amqp_receiver() {
    let w = weft();
    let mut c = Amqp::open(amqp_addr(&w), "map-rx").await;
    let mut rx = c.receiver("map-rx", "map/in/#").await;
    rx.set_credit(10).await.unwrap();
    let (v5, _rx5) = v5_client(w.addr, "map-v5-pub", None).await;
    let props = PublishProperties {
        content_type: Some("text/plain".into()),
        response_topic: Some("map/answers".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"cd-1")),
        user_properties: vec![("k".into(), "v".into())],
        ..Default::default()
    };
    v5.publish_with_properties("map/in/mqtt", Q5::AtLeastOnce, false, "from mqtt", props)
        .await
        .unwrap();
    let got = recv(&mut rx).await;
    rx.accept(&got).await.unwrap();
    let m = got.message();
    assert_eq!(body_bytes(&m.body), b"from mqtt");
    let p = m.properties.as_ref().expect("properties from MQTT 5");
    assert_eq!(
        p.content_type.as_ref().map(|s| s.0.as_str()),
        Some("text/plain")
    );
    assert_eq!(p.reply_to.as_deref(), Some("map/answers"));
    assert_eq!(
        correlation_bytes(p.correlation_id.as_ref().unwrap()),
        b"cd-1"
    );
    assert_eq!(p.to.as_deref(), Some("map/in/mqtt"));
    assert_eq!(app_prop(m, "k").as_deref(), Some("v"));

    let nc = nats(w.nats).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("h1", "x");
    nc.publish_with_reply_and_headers("map.in.nats", "map.reply", headers, "from nats".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let got = recv(&mut rx).await;
    rx.accept(&got).await.unwrap();
    let m = got.message();
    assert_eq!(body_bytes(&m.body), b"from nats");
    assert_eq!(app_prop(m, "h1").as_deref(), Some("x"));
    let p = m.properties.as_ref().expect("properties from NATS");
    assert_eq!(p.reply_to.as_deref(), Some("map/reply"));
    c.close().await;
}

/// AMQP across a two-router mesh: published on one, received on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_events_cross_the_mesh() {
    let one = mesh_router("one", AMQP_ON, "info", "127.0.0.1:0", &[]);
    let two = mesh_router(
        "two",
        AMQP_ON,
        "info",
        "127.0.0.1:0",
        &[one.mesh.expect("mesh listener")],
    );
    wait_links_up(&one, 1).await;
    let mut r = Amqp::open(amqp_addr(&two), "mesh-rx").await;
    let mut rx = r.receiver("mesh-rx", "mesh/amqp/#").await;
    rx.set_credit(1000).await.unwrap();
    let mut s = Amqp::open(amqp_addr(&one), "mesh-tx").await;
    let mut tx = s.sender("mesh-tx", "mesh/amqp/probe").await;
    // Interest travels asynchronously: probe until one arrives.
    let mut probes = 0;
    loop {
        tx.send(data(b"probe")).await.unwrap();
        probes += 1;
        if let Some(d) = recv_within(&mut rx, Duration::from_millis(100)).await {
            rx.accept(&d).await.unwrap();
            break;
        }
        assert!(probes < 200, "no probe crossed the mesh");
    }
    let mut event = s.sender("mesh-ev", "mesh/amqp/event").await;
    event.send(data(b"over the mesh")).await.unwrap();
    loop {
        let d = recv(&mut rx).await;
        rx.accept(&d).await.unwrap();
        if body_bytes(&d.message().body) == b"over the mesh" {
            assert_eq!(
                d.message()
                    .properties
                    .as_ref()
                    .and_then(|p| p.to.as_deref()),
                Some("mesh/amqp/event")
            );
            break;
        }
    }
    s.close().await;
    r.close().await;
}

/// Addresses in both dialects and as brokers write them: a NATS-dialect
/// wildcard source, an MQTT one behind `/topic/`, a target behind
/// `/exchange/amq.topic/`, an anonymous sender naming each message's `to`;
/// `/queue/...` refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_in_either_dialect_and_broker_prefixes() {
    let w = weft();
    let mut c = Amqp::open(amqp_addr(&w), "dialects").await;
    let mut nats_style = c.receiver("nats-style", "dial.*").await;
    let mut mqtt_style = c.receiver("mqtt-style", "/topic/dial/#").await;
    nats_style.set_credit(10).await.unwrap();
    mqtt_style.set_credit(10).await.unwrap();
    let mut exchange = c.sender("exchange", "/exchange/amq.topic/dial.x").await;
    exchange.send(data(b"via exchange")).await.unwrap();
    let mut anonymous = c.anonymous_sender("anon").await;
    let to_dial_y = fe2o3_amqp::types::messaging::Message::builder()
        .properties(
            fe2o3_amqp::types::messaging::Properties::builder()
                .to("dial/y")
                .build(),
        )
        .data(fe2o3_amqp::types::primitives::Binary::from(
            b"via to".to_vec(),
        ))
        .build();
    let outcome = anonymous.send(to_dial_y).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    for rx in [&mut nats_style, &mut mqtt_style] {
        let mut got = Vec::new();
        for _ in 0..2 {
            let d = recv(rx).await;
            rx.accept(&d).await.unwrap();
            let to = d.message().properties.as_ref().and_then(|p| p.to.clone());
            got.push((to.unwrap_or_default(), body_bytes(&d.message().body)));
        }
        got.sort();
        assert_eq!(
            got,
            [
                ("dial/x".to_string(), b"via exchange".to_vec()),
                ("dial/y".to_string(), b"via to".to_vec())
            ]
        );
    }
    let refused = c.try_receiver("queue", "/queue/orders").await;
    let Err(why) = refused else {
        panic!("/queue/orders was attached")
    };
    assert!(why.contains("weft has no queues"), "{why}");
    // The connection is still good: a new session on it attaches. (A
    // new session: fe2o3-amqp's session sometimes refuses the next attach
    // with a local IllegalState after a refused one, under load.)
    let session = tokio::time::timeout(WAIT, fe2o3_amqp::Session::begin(&mut c.conn))
        .await
        .expect("begin in time")
        .expect("a new session on the same connection");
    c.session = session;
    let mut after = c.receiver("after", "dial.z").await;
    after.set_credit(1).await.unwrap();
    c.close().await;
}

/// With persistence on, `accepted` for an unsettled AMQP publish means
/// durable (README, Durability): the event queued for a parked persistent
/// MQTT session (QoS 1) is still there after `kill -9` and a restart on
/// the same directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_amqp_publish_survives_kill9() {
    use common::durable::*;
    let dir = TempDir::new("amqp-kill9");
    let mut weft = Durable::start(2, AMQP_ON, &persistence_args(&dir.path));
    let mut sub = Recorder::new("amqp-dur-sub");
    assert!(
        !sub.connect(weft.addr(), false).await,
        "a new session: session present = 0"
    );
    sub.subscribe("amqp/dur/#", rumqttc::QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut c = Amqp::open(weft.weft.amqp.expect("AMQP listener"), "dur-tx").await;
    let mut tx = c.sender("dur-tx", "amqp/dur/event").await;
    let outcome = tx.send(data(b"kept across kill -9")).await.unwrap();
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    weft.restart();
    let present = sub.connect(weft.addr(), false).await;
    assert!(present, "after kill -9: session present = 1");
    if !sub
        .reached(|got| got.iter().any(|g| g.topic == "amqp/dur/event"))
        .await
    {
        weft.dump();
        panic!("the accepted AMQP event did not survive kill -9");
    }
    let got = sub.on("amqp/dur/event");
    assert_eq!(got[0].payload, b"kept across kill -9");
    assert_eq!(got[0].qos, 1);
    drop(c);
}
