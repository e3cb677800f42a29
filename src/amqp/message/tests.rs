//! Tests of the AMQP message mapping: literal encodings from the spec's
//! type tables (part 1.6), round trips through `serde_amqp` /
//! `fe2o3-amqp-types` both ways, and the refusals of malformed input.

use fe2o3_amqp_types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp_types::messaging::{
    AmqpSequence, AmqpValue, Body, Data, DeliveryAnnotations, Footer, Message, MessageAnnotations,
};
use serde_amqp::primitives::{Binary, Symbol, Timestamp, Uuid};
use serde_amqp::Value;

use super::*;

mod refusals;

/// Sections as bytes: a one-byte data body, empty properties, an empty header.
const DATA_X: [u8; 6] = [0x00, 0x53, 0x75, 0xa0, 0x01, b'x'];
const PROPERTIES_EMPTY: [u8; 4] = [0x00, 0x53, 0x73, 0x45];
const HEADER_EMPTY: [u8; 4] = [0x00, 0x53, 0x70, 0x45];

const L: TopicLimits = TopicLimits {
    topic_bytes_max: 1024,
    topic_levels_max: 32,
};

fn written(event: &Event, qos: u8, delivery_count: u32) -> Vec<u8> {
    let mut out = vec![0xee]; // appends: what is there stays
    write_message(event, qos, delivery_count, &mut out);
    assert_eq!(out[0], 0xee);
    out.remove(0);
    assert_eq!(
        out.len(),
        message_len(event, qos, delivery_count),
        "message_len"
    );
    out
}

/// What a client library reads from weft's bytes.
fn decoded(bytes: &[u8]) -> Message<Body<Value>> {
    serde_amqp::from_slice::<Deserializable<Message<Body<Value>>>>(bytes)
        .expect("serde_amqp decodes weft's message")
        .0
}

/// What a client library writes.
fn encoded(message: Message<Body<Value>>) -> Vec<u8> {
    serde_amqp::to_vec(&Serializable(message)).unwrap()
}

fn event_of(bytes: &[u8]) -> Event {
    to_event(bytes, Some("t"), 0, Origin::ROUTER, &L).unwrap()
}

fn user_properties(event: &Event) -> Vec<(&str, &str)> {
    event.meta.as_deref().map_or(Vec::new(), |m| {
        m.user_properties
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .collect()
    })
}

fn message() -> Message<Body<Value>> {
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: None,
        body: Body::Empty,
        footer: None,
    }
}

// ---------------------------------------------------------- literal bytes

/// The minimum: no header at QoS 0, properties holding `to` only (list8
/// 0xc0, two nulls 0x40, str8-utf8 0xa1), one data section (described
/// 0x00 0x53 0x75, vbin8 0xa0).
#[test]
fn plain_event_is_the_minimum_message() {
    let e = Event::new("a/b", b"hi", 0, false);
    let mut want = vec![0x00, 0x53, 0x73, 0xc0, 0x08, 0x03, 0x40, 0x40, 0xa1, 0x03];
    want.extend_from_slice(b"a/b");
    want.extend_from_slice(&[0x00, 0x53, 0x75, 0xa0, 0x02, b'h', b'i']);
    assert_eq!(written(&e, 0, 0), want);
}

/// QoS 1: a header with `durable` true (0x41) alone; a redelivery adds
/// the delivery-count (uint 0x70) after null priority, ttl and
/// first-acquirer.
#[test]
fn header_only_when_needed() {
    let e = Event::new("a", b"", 1, false);
    let bytes = written(&e, 1, 0);
    assert_eq!(bytes[..7], [0x00, 0x53, 0x70, 0xc0, 0x02, 0x01, 0x41]);
    let bytes = written(&e, 1, 3);
    assert_eq!(
        bytes[..16],
        [0x00, 0x53, 0x70, 0xc0, 0x0a, 0x05, 0x41, 0x40, 0x40, 0x40, 0x70, 0, 0, 0, 3, 0x00]
    );
    let bytes = written(&e, 0, 2);
    assert_eq!(bytes[6], 0x42, "not durable at QoS 0");
    let m = decoded(&bytes);
    let h = m.header.unwrap();
    assert_eq!((h.durable, h.delivery_count), (false, 2));
    assert!(decoded(&written(&e, 1, 0)).header.unwrap().durable);
    assert!(decoded(&written(&e, 0, 0)).header.is_none());
}

/// Long strings and payloads take the 32-bit forms: str32 0xb1, vbin32
/// 0xb0, list32 0xd0.
#[test]
fn long_values_take_the_32_bit_forms() {
    let topic = "t/".repeat(150);
    let payload = vec![7u8; 300];
    let e = Event::new(&topic, &payload, 0, false);
    let bytes = written(&e, 0, 0);
    assert_eq!(bytes[..4], [0x00, 0x53, 0x73, 0xd0]);
    let size = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(bytes[8..12], [0, 0, 0, 3]);
    assert_eq!(bytes[12..15], [0x40, 0x40, 0xb1]);
    let data = 4 + 4 + size;
    assert_eq!(bytes[data..data + 4], [0x00, 0x53, 0x75, 0xb0]);
    assert_eq!(bytes[data + 4..data + 8], 300u32.to_be_bytes());
    let m = decoded(&bytes);
    assert_eq!(m.properties.unwrap().to.as_deref(), Some(&*topic));
    assert_eq!(m.body, Body::Data(vec![Data(Binary::from(payload))].into()));
}

// ------------------------------------------------- weft → client library

fn rich() -> Event {
    Event::new("$weft/acct/A/site/1", b"{}", 1, false).with_meta(EventMeta {
        response_topic: Some("replies/c7".into()),
        correlation_data: Some(b"req-1".to_vec().into()),
        content_type: Some("application/json".into()),
        user_properties: vec![
            ("unit".into(), "celsius".into()),
            (MESSAGE_ID_PROPERTY.into(), "m-1".into()),
            (SUBJECT_PROPERTY.into(), "reading".into()),
            ("unit".into(), "kelvin".into()),
        ],
        ..EventMeta::default()
    })
}

#[test]
fn metadata_maps_to_properties_and_application_properties() {
    let m = decoded(&written(&rich(), 1, 0));
    let p = m.properties.unwrap();
    assert_eq!(p.message_id, Some(MessageId::String("m-1".into())));
    assert_eq!(
        p.to.as_deref(),
        Some("site/1"),
        "account prefix not written"
    );
    assert_eq!(p.subject.as_deref(), Some("reading"));
    assert_eq!(p.reply_to.as_deref(), Some("replies/c7"));
    assert_eq!(p.correlation_id, Some(MessageId::String("req-1".into())));
    assert_eq!(p.content_type, Some(Symbol::from("application/json")));
    assert_eq!(p.user_id, None);
    let ap = m.application_properties.unwrap();
    let entries: Vec<_> = ap.0.iter().collect();
    assert_eq!(
        entries,
        [(&"unit".to_string(), &SimpleValue::String("celsius".into()))],
        "the native slots are not repeated, a repeated name is written once"
    );
    assert_eq!(
        m.body,
        Body::Data(vec![Data(Binary::from(b"{}".to_vec()))].into())
    );
}

#[test]
fn binary_correlation_data_is_a_binary_id() {
    let e = Event::new("t", b"", 0, false).with_meta(EventMeta {
        correlation_data: Some(vec![0xff, 0x00].into()),
        ..EventMeta::default()
    });
    let p = decoded(&written(&e, 0, 0)).properties.unwrap();
    assert_eq!(
        p.correlation_id,
        Some(MessageId::Binary(Binary::from(vec![0xff, 0x00])))
    );
    assert_eq!((p.subject, p.reply_to), (None, None));
}

/// A NATS request: its reply subject is the reply-to (MQTT form), its
/// header fields application properties.
#[test]
fn nats_reply_and_headers() {
    let e = Event::new("svc/time", b"", 0, false).with_meta(EventMeta {
        reply: Some("_INBOX.abc.1".into()),
        headers: Some(
            b"NATS/1.0\r\nTrace: x1\r\nbad line\r\nK:  v \r\n\r\n"
                .to_vec()
                .into(),
        ),
        ..EventMeta::default()
    });
    let m = decoded(&written(&e, 0, 0));
    assert_eq!(
        m.properties.unwrap().reply_to.as_deref(),
        Some("_INBOX/abc/1")
    );
    let ap: Vec<_> = m
        .application_properties
        .unwrap()
        .0
        .into_inner()
        .into_iter()
        .collect();
    assert_eq!(
        ap,
        [
            ("Trace".to_string(), SimpleValue::String("x1".into())),
            ("K".to_string(), SimpleValue::String("v".into())),
        ]
    );
}

/// Message expiry: the remaining time as the header's ttl (ms, at least
/// 1), back to an expiry on the way in.
#[test]
fn expiry_is_the_ttl() {
    let e = Event::new("t", b"", 0, false).with_meta(EventMeta {
        expires_ns: Some(now_ns() + 5_000_000_000),
        ..EventMeta::default()
    });
    let bytes = written(&e, 0, 0);
    let h = decoded(&bytes).header.unwrap();
    let ttl = h.ttl.unwrap();
    assert!((4000..=5000).contains(&ttl), "{ttl}");
    assert!(!h.durable);
    let back = event_of(&bytes);
    let left = back.meta.unwrap().expires_ns.unwrap() - now_ns();
    assert!(left <= 5_000_000_000 && left > 3_000_000_000, "{left}");
    let gone = Event::new("t", b"", 0, false).with_meta(EventMeta {
        expires_ns: Some(1),
        ..EventMeta::default()
    });
    assert_eq!(decoded(&written(&gone, 0, 0)).header.unwrap().ttl, Some(1));
}

/// An absolute-expiry-time far in the future (i64::MAX ms) is taken as a
/// far expiry, not an overflow (review 1.3: it panicked).
#[test]
fn absolute_expiry_max_does_not_overflow() {
    let mut m = message();
    m.properties = Some(fe2o3_amqp_types::messaging::Properties {
        absolute_expiry_time: Some(Timestamp::from_milliseconds(i64::MAX)),
        ..Default::default()
    });
    let e = event_of(&encoded(m));
    let at = e.meta.unwrap().expires_ns.unwrap();
    assert!(at > now_ns() + 1_000_000_000_000, "{at}");
}

/// Repeated names are written once (the first), with few properties (the
/// scan) and with many (the hash set, review 1.5: 20k properties took
/// minutes in debug); the length counted is the length written. The time
/// is printed, not asserted.
#[test]
fn repeated_user_properties_are_written_once_few_or_many() {
    for n in [4usize, 20_000] {
        let mut props: Vec<(Box<str>, Box<str>)> = (0..n)
            .map(|i| (format!("k{i}").into(), format!("v{i}").into()))
            .collect();
        // Repeats of the first and the last name: dropped.
        props.push(("k0".into(), "again".into()));
        props.push((format!("k{}", n - 1).into(), "again".into()));
        let e = Event::new("t", b"x", 0, false).with_meta(EventMeta {
            user_properties: props,
            ..EventMeta::default()
        });
        let started = std::time::Instant::now();
        let bytes = written(&e, 0, 0);
        eprintln!(
            "{n} user properties: written and counted in {:?}",
            started.elapsed()
        );
        let app = decoded(&bytes).application_properties.expect("written").0;
        assert_eq!(app.len(), n);
        assert_eq!(app.get("k0"), Some(&SimpleValue::String("v0".into())));
        let last = format!("k{}", n - 1);
        let want = format!("v{}", n - 1);
        assert_eq!(app.get(&last), Some(&SimpleValue::String(want)));
    }
}

/// A binary-mode CloudEvent (weft's form: attributes as user properties)
/// gets the AMQP binding's `cloudEvents:` application properties, and
/// reads back to weft's form.
#[test]
fn cloudevents_binding() {
    let attributes = [
        ("specversion", "1.0"),
        ("id", "e1"),
        ("source", "/s"),
        ("type", "t.x"),
        ("Not-An-Attribute", "v"),
    ];
    let e = Event::new("t", b"{}", 0, false).with_meta(EventMeta {
        content_type: Some("application/json".into()),
        user_properties: attributes
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ..EventMeta::default()
    });
    let bytes = written(&e, 0, 0);
    let m = decoded(&bytes);
    let keys: Vec<String> = m
        .application_properties
        .unwrap()
        .0
        .into_inner()
        .into_keys()
        .collect();
    assert_eq!(
        keys,
        [
            "cloudEvents:specversion",
            "cloudEvents:id",
            "cloudEvents:source",
            "cloudEvents:type",
            "Not-An-Attribute"
        ]
    );
    let back = event_of(&bytes);
    assert_eq!(user_properties(&back), attributes);
    assert_eq!(
        back.meta.unwrap().content_type.as_deref(),
        Some("application/json")
    );
    // Without the required attributes, names stay as they are.
    let plain = Event::new("t", b"", 0, false).with_meta(EventMeta {
        user_properties: vec![("id".into(), "1".into())],
        ..EventMeta::default()
    });
    let ap = decoded(&written(&plain, 0, 0))
        .application_properties
        .unwrap();
    assert!(ap.0.get("id").is_some());
}

// ------------------------------------------------- client library → weft

#[test]
fn client_message_to_event() {
    let mut ap = ApplicationProperties::default();
    ap.0.insert("s".into(), SimpleValue::String("x".into()));
    ap.0.insert("n".into(), SimpleValue::Long(-7));
    ap.0.insert("b".into(), SimpleValue::Bool(true));
    ap.0.insert("f".into(), SimpleValue::Double(1.5.into()));
    ap.0.insert(
        "bin".into(),
        SimpleValue::Binary(Binary::from(vec![1, 2, 3])),
    );
    ap.0.insert(
        "ts".into(),
        SimpleValue::Timestamp(Timestamp::from(1_700_000_000_123)),
    );
    ap.0.insert("u".into(), SimpleValue::Uuid(Uuid::from([0x11; 16])));
    ap.0.insert("null".into(), SimpleValue::Null);
    ap.0.insert("sym".into(), SimpleValue::Symbol(Symbol::from("y")));
    ap.0.insert("cloudEvents_id".into(), SimpleValue::String("e1".into()));
    let mut m = message();
    m.header = Some(Header {
        durable: true,
        ttl: Some(60_000),
        ..Header::default()
    });
    m.properties = Some(Properties {
        message_id: Some(MessageId::Ulong(42)),
        user_id: Some(Binary::from(b"claimed".to_vec())),
        to: Some("ignored/on/a/named/link".into()),
        subject: Some("subj".into()),
        reply_to: Some("/topic/replies.c1".into()),
        correlation_id: Some(MessageId::Uuid(Uuid::from([0xab; 16]))),
        content_type: Some(Symbol::from("text/plain")),
        ..Properties::default()
    });
    m.application_properties = Some(ap);
    m.body = Body::Data(vec![Data(Binary::from(b"pay".to_vec()))].into());
    let bytes = encoded(m);
    let e = to_event(
        &bytes,
        Some("a/b"),
        1,
        Origin {
            shard: 2,
            session: 9,
        },
        &L,
    )
    .unwrap();
    assert_eq!(
        (e.topic(), e.payload(), e.qos, e.retain),
        ("a/b", &b"pay"[..], 1, false)
    );
    assert_eq!(
        e.origin,
        Origin {
            shard: 2,
            session: 9
        }
    );
    assert_eq!(
        user_properties(&e),
        [
            (MESSAGE_ID_PROPERTY, "42"),
            (SUBJECT_PROPERTY, "subj"),
            ("s", "x"),
            ("n", "-7"),
            ("b", "true"),
            ("f", "1.5"),
            ("bin", "AQID"),
            ("ts", "2023-11-14T22:13:20.123Z"),
            ("u", "11111111-1111-1111-1111-111111111111"),
            ("null", ""),
            ("sym", "y"),
            ("id", "e1"),
        ]
    );
    let meta = e.meta.as_deref().unwrap();
    assert_eq!(meta.response_topic.as_deref(), Some("replies/c1"));
    assert_eq!(
        meta.correlation_data.as_deref(),
        Some(&b"abababab-abab-abab-abab-abababababab"[..])
    );
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert!(meta.expires_ns.is_some());
    assert_eq!(meta.reply, None);
}

#[test]
fn anonymous_link_takes_the_topic_from_to() {
    let mut m = message();
    m.properties = Some(Properties {
        to: Some("/topic/sensors.t1".into()),
        ..Properties::default()
    });
    m.body = Body::Value(AmqpValue(Value::String("hello".into())));
    let bytes = encoded(m);
    let e = to_event(&bytes, None, 0, Origin::ROUTER, &L).unwrap();
    assert_eq!((e.topic(), e.payload()), ("sensors/t1", &b"hello"[..]));
    assert_eq!(e.meta.as_deref().unwrap().payload_format, Some(1));

    let none = encoded(message());
    assert_eq!(
        to_event(&none, None, 0, Origin::ROUTER, &L).unwrap_err(),
        MessageError("a message on an anonymous link needs properties.to")
    );
    for bad_to in ["a/+", "", "/queue/q", "$weft/x"] {
        let mut m = message();
        m.properties = Some(Properties {
            to: Some(bad_to.into()),
            ..Properties::default()
        });
        assert_eq!(
            to_event(&encoded(m), None, 0, Origin::ROUTER, &L).unwrap_err(),
            MessageError("properties.to is not a valid topic"),
            "{bad_to}"
        );
    }
    let mut m = message();
    m.properties = Some(Properties {
        reply_to: Some("a.*".into()),
        ..Properties::default()
    });
    assert_eq!(
        to_event(&encoded(m), Some("t"), 0, Origin::ROUTER, &L).unwrap_err(),
        MessageError("properties.reply-to is not a valid topic")
    );
}

/// Bodies: data sections concatenated; amqp-value binary as the payload;
/// other values and sequences keep their encoding and go back out as the
/// same sections; an empty body (proton sends it) is an empty payload.
#[test]
fn bodies() {
    let mut m = message();
    m.body = Body::Data(
        vec![
            Data(Binary::from(b"ab".to_vec())),
            Data(Binary::from(b"cd".to_vec())),
        ]
        .into(),
    );
    assert_eq!(event_of(&encoded(m)).payload(), b"abcd");

    let mut m = message();
    m.body = Body::Value(AmqpValue(Value::Binary(Binary::from(vec![9, 8]))));
    let e = event_of(&encoded(m));
    assert_eq!(e.payload(), [9, 8]);
    assert!(e.meta.is_none(), "a binary value needs no metadata");

    // fe2o3's empty body (amqp-value null) and no body section at all.
    for bytes in [encoded(message()), PROPERTIES_EMPTY.to_vec()] {
        let e = event_of(&bytes);
        assert_eq!(e.payload(), b"");
        assert!(e.meta.is_none());
    }

    let structured = Value::List(vec![Value::Int(1), Value::String("x".into())]);
    let mut m = message();
    m.body = Body::Value(AmqpValue(structured.clone()));
    let e = event_of(&encoded(m));
    assert_eq!(user_properties(&e), [(BODY_PROPERTY, "value")]);
    assert_eq!(e.payload(), serde_amqp::to_vec(&structured).unwrap());
    assert_eq!(
        decoded(&written(&e, 0, 0)).body,
        Body::Value(AmqpValue(structured))
    );

    let sequences = vec![
        AmqpSequence(vec![Value::Int(1)]),
        AmqpSequence(vec![Value::Bool(true), Value::Null]),
    ];
    let mut m = message();
    m.body = Body::Sequence(sequences.clone().into());
    let e = event_of(&encoded(m));
    assert_eq!(user_properties(&e), [(BODY_PROPERTY, "sequence")]);
    assert_eq!(
        decoded(&written(&e, 0, 0)).body,
        Body::Sequence(sequences.into())
    );

    // A publisher that claims an AMQP body it does not hold gets data.
    let lying = Event::new("t", b"\xc0\x05", 0, false).with_meta(EventMeta {
        user_properties: vec![(BODY_PROPERTY.into(), "value".into())],
        ..EventMeta::default()
    });
    assert_eq!(
        decoded(&written(&lying, 0, 0)).body,
        Body::Data(vec![Data(Binary::from(b"\xc0\x05".to_vec()))].into())
    );
}

/// A client's application property named `amqp-body` does not change
/// how the body is read or written: the body section says what it is.
#[test]
fn amqp_body_is_not_taken_from_application_properties() {
    let mut ap = ApplicationProperties::default();
    ap.0.insert(BODY_PROPERTY.into(), SimpleValue::String("value".into()));
    let mut m = message();
    m.application_properties = Some(ap);
    // A data body that happens to be an AMQP encoding (str8 "hi").
    m.body = Body::Data(vec![Data(Binary::from(b"\xa1\x02hi".to_vec()))].into());
    let e = event_of(&encoded(m));
    assert!(e.meta.is_none(), "{:?}", user_properties(&e));
    assert_eq!(
        decoded(&written(&e, 0, 0)).body,
        Body::Data(vec![Data(Binary::from(b"\xa1\x02hi".to_vec()))].into())
    );
}

/// Every section fe2o3 writes is read (annotations and footer dropped),
/// with symbolic descriptors too.
#[test]
fn annotations_footer_and_symbolic_descriptors() {
    let mut m = message();
    m.delivery_annotations = Some(DeliveryAnnotations::default());
    m.message_annotations = Some(MessageAnnotations::default());
    m.footer = Some(Footer::default());
    m.body = Body::Data(vec![Data(Binary::from(b"x".to_vec()))].into());
    assert_eq!(event_of(&encoded(m)).payload(), b"x");
    // The data section with its symbolic descriptor (sym8 0xa3).
    let mut bytes = vec![0x00, 0xa3, 16];
    bytes.extend_from_slice(b"amqp:data:binary");
    bytes.extend_from_slice(&[0xa0, 0x01, b'z']);
    assert_eq!(event_of(&bytes).payload(), b"z");
    // ulong (0x80) descriptor.
    let bytes = [0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x75, 0xa0, 0x01, b'q'];
    assert_eq!(event_of(&bytes).payload(), b"q");
}

/// weft → weft over AMQP keeps what the mapping carries.
#[test]
fn write_then_read_round_trip() {
    let e = rich();
    let back = to_event(&written(&e, 1, 0), None, 1, Origin::ROUTER, &L).unwrap();
    assert_eq!(back.topic(), "site/1");
    assert_eq!(back.payload(), e.payload());
    let m = back.meta.as_deref().unwrap();
    assert_eq!(m.response_topic.as_deref(), Some("replies/c7"));
    assert_eq!(m.correlation_data.as_deref(), Some(&b"req-1"[..]));
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        user_properties(&back),
        [
            (MESSAGE_ID_PROPERTY, "m-1"),
            (SUBJECT_PROPERTY, "reading"),
            ("unit", "celsius")
        ]
    );
}
