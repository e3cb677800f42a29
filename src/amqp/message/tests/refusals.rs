//! Refusals of malformed input: section order, malformed sections,
//! truncated messages; and RFC 3339 instants.

use super::*;

fn refused(bytes: &[u8]) -> &'static str {
    to_event(bytes, Some("t"), 0, Origin::ROUTER, &L)
        .unwrap_err()
        .0
}

#[test]
fn section_order_is_checked() {
    let cat = |parts: &[&[u8]]| parts.concat();
    assert_eq!(refused(&[]), "empty message: no sections");
    assert_eq!(
        refused(&cat(&[&PROPERTIES_EMPTY, &HEADER_EMPTY, &DATA_X])),
        "message sections out of order"
    );
    assert_eq!(
        refused(&cat(&[&DATA_X, &PROPERTIES_EMPTY])),
        "message sections out of order"
    );
    assert_eq!(
        refused(&cat(&[&HEADER_EMPTY, &HEADER_EMPTY])),
        "a message section is repeated"
    );
    let value = [0x00, 0x53, 0x77, 0x40];
    assert_eq!(
        refused(&cat(&[&value, &value])),
        "more than one amqp-value section"
    );
    assert_eq!(
        refused(&cat(&[&DATA_X, &value])),
        "body sections of different kinds"
    );
    let footer = [0x00, 0x53, 0x78, 0xc1, 0x01, 0x00];
    assert_eq!(
        refused(&cat(&[&footer, &DATA_X])),
        "message sections out of order"
    );
    assert!(to_event(
        &cat(&[&HEADER_EMPTY, &PROPERTIES_EMPTY, &DATA_X, &DATA_X, &footer]),
        Some("t"),
        0,
        Origin::ROUTER,
        &L
    )
    .is_ok());
}

#[test]
fn malformed_sections_are_refused() {
    assert_eq!(
        refused(&[0x53, 0x75]),
        "a message section is not a described type"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x79, 0x40]),
        "unknown message section descriptor"
    );
    assert_eq!(
        refused(&[0x00, 0xa1, 0x01, b'x', 0x40]),
        "a section descriptor is not a ulong or symbol"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x75]),
        "a message section ends before its value"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x75, 0xa1, 0x01, b'x']),
        "a data section does not hold binary"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x72, 0xc0, 0x01, 0x00]),
        "annotations or footer are not a map"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x76, 0x40]),
        "an amqp-sequence section does not hold a list"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x75, 0x99]),
        "unknown AMQP type constructor"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x70, 0xc0, 0x02, 0x01, 0xa1]),
        "malformed header section"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x73, 0xc0, 0x02, 0x01, 0x41]),
        "malformed properties section"
    );
    assert_eq!(
        refused(&[0x00, 0x53, 0x74, 0xc1, 0x03, 0x02, 0x41, 0x41]),
        "malformed application-properties section"
    );
    // Found by the amqp_message fuzz target: an odd map count overflowed
    // inside serde_amqp (a panic in debug builds).
    assert_eq!(
        refused(&[0x00, 0x53, 0x74, 0xc1, 0x08, 0x03, 0xa1, 0x01, b'k', 0xa1, 0x01, b'v', 0x40]),
        "application-properties are not a map"
    );
    for map in [
        &[0x00, 0x53, 0x74, 0xc1, 0x00][..],
        &[0x00, 0x53, 0x72, 0xd1, 0, 0, 0, 1, 0],
    ] {
        assert!(refused(map).ends_with("not a map"), "{map:02x?}");
    }
    assert_eq!(
        refused(&[0x00, 0x53, 0x77, 0xa1, 0x01, 0xff]),
        "an amqp-value string is not UTF-8"
    );
    // Sizes are checked against the bytes, 32-bit sizes included.
    assert_eq!(
        refused(&[0x00, 0x53, 0x75, 0xb0, 0xff, 0xff, 0xff, 0xff, 0x00]),
        "a value runs past the end of the message"
    );
    // A descriptor nested past the bound.
    let mut deep = vec![0x00, 0x53, 0x77];
    deep.extend(std::iter::repeat_n(0x00, 100));
    deep.push(0x40);
    assert_eq!(refused(&deep), "described values nest too deep");
}

/// Every cut of a valid message inside a section is refused, never read
/// past; cuts at a section boundary are whole messages.
#[test]
fn truncated_messages_are_refused() {
    let bytes = written(&rich(), 1, 2);
    let mut boundaries = vec![];
    let mut at = 0;
    while at < bytes.len() {
        at += section(&bytes[at..]).unwrap().whole.len();
        boundaries.push(at);
    }
    for cut in 1..bytes.len() {
        let r = to_event(&bytes[..cut], Some("t"), 0, Origin::ROUTER, &L);
        assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}: {r:?}");
    }
}

#[test]
fn rfc3339_known_instants() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
}

/// `message_len` is what `write_message` writes, for every shape.
#[test]
fn message_len_matches() {
    let long = "x".repeat(300);
    let events = [
        Event::new("a", b"", 0, false),
        rich(),
        Event::new("t", &vec![1; 70_000], 0, false).with_meta(EventMeta {
            user_properties: (0..100)
                .map(|i| (format!("k{i}").into(), long.as_str().into()))
                .collect(),
            content_type: Some(long.as_str().into()),
            ..EventMeta::default()
        }),
    ];
    for e in &events {
        for (qos, dc) in [(0, 0), (1, 0), (0, 1), (1, u32::MAX)] {
            let bytes = written(e, qos, dc);
            assert_eq!(decoded(&bytes).header.map_or(0, |h| h.delivery_count), dc);
        }
    }
}

/// W3C AMQP draft: weft writes the trace context into the
/// message-annotations (an intermediary's place, read first) as well as
/// the application-properties; on the way in, annotations win over the
/// application-properties.
#[test]
fn trace_context_in_message_annotations() {
    use fe2o3_amqp_types::messaging::annotations::OwnedKey;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let e = Event::new("t", b"x", 0, false).with_meta(EventMeta {
        user_properties: vec![
            ("traceparent".into(), tp.into()),
            ("tracestate".into(), "weft=a".into()),
        ],
        ..EventMeta::default()
    });
    let m = decoded(&written(&e, 0, 0));
    let annotations: Vec<(String, Value)> = m
        .message_annotations
        .expect("message-annotations")
        .0
        .into_iter()
        .map(|(k, v)| match k {
            OwnedKey::Symbol(s) => (s.0, v),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        annotations,
        [
            ("traceparent".to_string(), Value::String(tp.into())),
            ("tracestate".to_string(), Value::String("weft=a".into())),
        ]
    );
    assert!(m
        .application_properties
        .unwrap()
        .0
        .get("traceparent")
        .is_some());
    // No traceparent, no section.
    let plain = Event::new("t", b"x", 0, false).with_meta(EventMeta {
        user_properties: vec![("tracestate".into(), "a=1".into())],
        ..EventMeta::default()
    });
    assert!(decoded(&written(&plain, 0, 0))
        .message_annotations
        .is_none());

    // In: the annotation replaces the application property.
    let mut message = message();
    let mut ma = MessageAnnotations::default();
    ma.0.insert(
        OwnedKey::Symbol(Symbol::from("traceparent")),
        Value::String(tp.into()),
    );
    ma.0.insert(
        OwnedKey::Symbol(Symbol::from("x-opt-other")),
        Value::Uint(1),
    );
    message.message_annotations = Some(ma);
    let mut ap = ApplicationProperties::default();
    ap.0.insert("traceparent".into(), SimpleValue::String("00-old".into()));
    ap.0.insert("tracestate".into(), SimpleValue::String("old=1".into()));
    ap.0.insert("k".into(), SimpleValue::String("v".into()));
    message.application_properties = Some(ap);
    let event = event_of(&encoded(message));
    assert_eq!(
        user_properties(&event)
            .into_iter()
            .filter(|(k, _)| *k != "k")
            .collect::<Vec<_>>(),
        [("traceparent", tp)],
        "the annotation's context, the old tracestate gone with its traceparent"
    );
}
