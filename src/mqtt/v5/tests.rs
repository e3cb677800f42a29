use super::properties::{id, put_varint};
use super::reason::{self, *};
use super::*;

const L: DecodeLimits = DecodeLimits {
    packet_bytes_max: 4096,
    properties_bytes_max: 512,
    filters_per_packet_max: 4,
};

fn bytes(p: &Packet<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let n = encode(p, &mut out).unwrap();
    assert_eq!(n, out.len());
    assert_eq!(encoded_len(p), Ok(n));
    out
}

fn round_trip(p: Packet<'_>) -> Vec<u8> {
    let out = bytes(&p);
    let (back, used) = decode(&out, &L).unwrap().unwrap();
    assert_eq!(back, p);
    assert_eq!(used, out.len());
    // Every strict prefix is "need more bytes", never an error.
    for cut in 0..out.len() {
        assert_eq!(decode(&out[..cut], &L), Ok(None), "prefix {cut} of {p:?}");
    }
    // Re-encoding the decoded packet gives the same bytes.
    assert_eq!(bytes(&back), out);
    // Trailing bytes of the next packet are left alone.
    let mut two = out.clone();
    two.extend_from_slice(&[0xc0, 0x00]);
    assert_eq!(decode(&two, &L).unwrap().unwrap().1, out.len());
    out
}

/// Builds a packet from the first byte and the body, with the remaining
/// length in between.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A PUBACK (id 1, Success) whose property block is `props`.
fn puback_with(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, 0];
    put_varint(&mut body, props.len());
    body.extend_from_slice(props);
    packet(0x40, &body)
}

/// A QoS 0 PUBLISH to "t" whose property block is `props`.
fn publish_with(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, b't'];
    put_varint(&mut body, props.len());
    body.extend_from_slice(props);
    body.extend_from_slice(b"x");
    packet(0x30, &body)
}

/// A CONNACK (Success) whose property block is `props`.
fn connack_with(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    put_varint(&mut body, props.len());
    body.extend_from_slice(props);
    packet(0x20, &body)
}

/// A CONNECT with flags `flags` whose property block is `props`, client id
/// "c", then `rest`.
fn connect_with(level: u8, flags: u8, props: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 60];
    put_varint(&mut body, props.len());
    body.extend_from_slice(props);
    body.extend_from_slice(&[0, 1, b'c']);
    body.extend_from_slice(rest);
    packet(0x10, &body)
}

fn err(buf: &[u8]) -> DecodeError {
    match decode(buf, &L) {
        Err(e) => e,
        other => panic!("expected an error for {buf:x?}, got {other:?}"),
    }
}

fn assert_code(buf: &[u8], want: DecodeError, code: u8) {
    let got = err(buf);
    assert_eq!(got, want, "{buf:x?}");
    assert_eq!(got.reason_code(), code, "{want:?}");
}

fn full_will_props() -> Properties<'static> {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("text/plain"),
        response_topic: Some("resp/t"),
        correlation_data: Some(b"\x00\x01corr"),
        will_delay_interval: Some(30),
        user_properties: vec![("k", "v"), ("k", "v2")],
        ..Default::default()
    }
}

#[test]
fn round_trip_connect() {
    round_trip(Packet::Connect(Connect {
        clean_start: true,
        keep_alive_s: 30,
        properties: Properties {
            session_expiry_interval: Some(u32::MAX),
            receive_maximum: Some(20),
            maximum_packet_size: Some(65536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: vec![("a", "b")],
            authentication_method: Some("SCRAM-SHA-1"),
            authentication_data: Some(b"client-first"),
            ..Default::default()
        },
        client_id: "c1",
        will: Some(Box::new(Will {
            properties: full_will_props(),
            topic: "w/t",
            payload: b"bye",
            qos: 2,
            retain: true,
        })),
        username: Some("u"),
        password: Some(b"p\x00w"),
    }));
    // Minimal: no properties, empty client id, password without user name
    // (allowed in MQTT 5, §3.1.2.9).
    round_trip(Packet::Connect(Connect {
        clean_start: false,
        keep_alive_s: 0,
        properties: Properties::default(),
        client_id: "",
        will: None,
        username: None,
        password: Some(b"secret"),
    }));
}

#[test]
fn round_trip_connack() {
    round_trip(Packet::ConnAck(ConnAck {
        session_present: true,
        reason_code: SUCCESS,
        properties: Properties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(100),
            maximum_qos: Some(1),
            retain_available: Some(true),
            maximum_packet_size: Some(1 << 20),
            assigned_client_identifier: Some("auto-1234"),
            topic_alias_maximum: Some(16),
            reason_string: Some("welcome"),
            user_properties: vec![("region", "eu")],
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(false),
            shared_subscription_available: Some(true),
            server_keep_alive: Some(60),
            response_information: Some("resp/"),
            server_reference: Some("other:1883"),
            authentication_method: Some("SCRAM-SHA-1"),
            authentication_data: Some(b"server-final"),
            ..Default::default()
        },
    }));
    let short = round_trip(Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: NOT_AUTHORIZED,
        properties: Properties::default(),
    }));
    assert_eq!(short, [0x20, 3, 0, 0x87, 0]);
}

#[test]
fn round_trip_publish() {
    round_trip(Packet::Publish(Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: "a/b",
        packet_id: 0,
        properties: Properties::default(),
        payload: &[7; 300],
    }));
    let mut props = full_will_props();
    props.will_delay_interval = None;
    props.topic_alias = Some(3);
    props.subscription_identifiers = vec![1, 127, 128, 16_384, VARINT_MAX as u32];
    round_trip(Packet::Publish(Publish {
        dup: true,
        qos: 1,
        retain: true,
        topic: "a/b",
        packet_id: 9,
        properties: props,
        payload: b"",
    }));
    // An empty topic with a Topic Alias (§3.3.2.3.4).
    round_trip(Packet::Publish(Publish {
        dup: false,
        qos: 2,
        retain: false,
        topic: "",
        packet_id: 65535,
        properties: Properties {
            topic_alias: Some(1),
            ..Default::default()
        },
        payload: b"p",
    }));
}

#[test]
fn round_trip_pub_responses() {
    let reasoned = |code| PubResp {
        packet_id: 7,
        reason_code: code,
        properties: Properties::default(),
    };
    let with_props = |code| PubResp {
        packet_id: 7,
        reason_code: code,
        properties: Properties {
            reason_string: Some("why"),
            user_properties: vec![("x", "y")],
            ..Default::default()
        },
    };
    // Short forms: Success without properties is two bytes; another code
    // without properties is three.
    assert_eq!(round_trip(Packet::PubAck(PubResp::ok(1))), [0x40, 2, 0, 1]);
    assert_eq!(
        round_trip(Packet::PubAck(reasoned(NO_MATCHING_SUBSCRIBERS))),
        [0x40, 3, 0, 7, 0x10]
    );
    round_trip(Packet::PubAck(with_props(QUOTA_EXCEEDED)));
    round_trip(Packet::PubAck(with_props(SUCCESS)));
    assert_eq!(round_trip(Packet::PubRec(PubResp::ok(2))), [0x50, 2, 0, 2]);
    round_trip(Packet::PubRec(reasoned(PAYLOAD_FORMAT_INVALID)));
    round_trip(Packet::PubRec(with_props(SUCCESS)));
    assert_eq!(round_trip(Packet::PubRel(PubResp::ok(3))), [0x62, 2, 0, 3]);
    round_trip(Packet::PubRel(reasoned(PACKET_IDENTIFIER_NOT_FOUND)));
    round_trip(Packet::PubRel(with_props(SUCCESS)));
    assert_eq!(round_trip(Packet::PubComp(PubResp::ok(4))), [0x70, 2, 0, 4]);
    round_trip(Packet::PubComp(with_props(PACKET_IDENTIFIER_NOT_FOUND)));

    // The long forms other encoders may send decode to the same values.
    let same = |buf: &[u8], want: Packet<'_>| {
        assert_eq!(decode(buf, &L), Ok(Some((want, buf.len()))), "{buf:x?}");
    };
    same(&[0x40, 3, 0, 1, 0], Packet::PubAck(PubResp::ok(1)));
    same(&[0x40, 4, 0, 1, 0, 0], Packet::PubAck(PubResp::ok(1)));
    same(&[0x62, 4, 0, 1, 0x92, 0], {
        let mut r = PubResp::ok(1);
        r.reason_code = PACKET_IDENTIFIER_NOT_FOUND;
        Packet::PubRel(r)
    });
}

#[test]
fn round_trip_subscribe() {
    round_trip(Packet::Subscribe(Subscribe {
        packet_id: 5,
        properties: Properties {
            subscription_identifiers: vec![42],
            user_properties: vec![("k", "v")],
            ..Default::default()
        },
        filters: vec![
            ("a/+", SubscriptionOptions::default()),
            (
                "#",
                SubscriptionOptions {
                    qos: 2,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            ),
            (
                "$share/g/x",
                SubscriptionOptions {
                    qos: 1,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: RetainHandling::SendIfNew,
                },
            ),
        ],
    }));
    round_trip(Packet::SubAck(SubAck {
        packet_id: 5,
        properties: Properties {
            reason_string: Some("partly"),
            ..Default::default()
        },
        reason_codes: &[
            GRANTED_QOS_0,
            GRANTED_QOS_2,
            SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        ],
    }));
    round_trip(Packet::Unsubscribe(Unsubscribe {
        packet_id: 6,
        properties: Properties {
            user_properties: vec![("k", "")],
            ..Default::default()
        },
        filters: vec!["a/+", "#"],
    }));
    round_trip(Packet::UnsubAck(SubAck {
        packet_id: 6,
        properties: Properties::default(),
        reason_codes: &[SUCCESS, NO_SUBSCRIPTION_EXISTED],
    }));
}

#[test]
fn subscription_options_bits() {
    for b in 0..=255u8 {
        match SubscriptionOptions::from_byte(b) {
            Ok(o) => assert_eq!(o.to_byte(), b),
            Err(DecodeError::BadSubscriptionOptions(x)) => {
                assert_eq!(x, b);
                assert_ne!(b & 0xc0, 0);
            }
            Err(DecodeError::BadSubscriptionOption(x)) => {
                assert_eq!(x, b);
                assert!(b & 3 == 3 || (b >> 4) & 3 == 3);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let o = SubscriptionOptions::from_byte(0b0010_1110).unwrap();
    assert_eq!(
        o,
        SubscriptionOptions {
            qos: 2,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        }
    );
}

#[test]
fn round_trip_ping_disconnect_auth() {
    assert_eq!(round_trip(Packet::PingReq), [0xc0, 0]);
    assert_eq!(round_trip(Packet::PingResp), [0xd0, 0]);
    assert_eq!(
        round_trip(Packet::Disconnect(ReasonOnly::new(NORMAL_DISCONNECTION))),
        [0xe0, 0]
    );
    assert_eq!(
        round_trip(Packet::Disconnect(ReasonOnly::new(
            DISCONNECT_WITH_WILL_MESSAGE
        ))),
        [0xe0, 1, 0x04]
    );
    round_trip(Packet::Disconnect(ReasonOnly {
        reason_code: SERVER_MOVED,
        properties: Properties {
            session_expiry_interval: Some(0),
            reason_string: Some("moving"),
            server_reference: Some("b:1883"),
            user_properties: vec![("a", "b")],
            ..Default::default()
        },
    }));
    assert_eq!(
        round_trip(Packet::Auth(ReasonOnly::new(SUCCESS))),
        [0xf0, 0]
    );
    assert_eq!(
        round_trip(Packet::Auth(ReasonOnly::new(CONTINUE_AUTHENTICATION))),
        [0xf0, 2, 0x18, 0]
    );
    round_trip(Packet::Auth(ReasonOnly {
        reason_code: RE_AUTHENTICATE,
        properties: Properties {
            authentication_method: Some("SCRAM-SHA-1"),
            authentication_data: Some(b"\x01\x02"),
            reason_string: Some("again"),
            user_properties: vec![("a", "b")],
            ..Default::default()
        },
    }));
    // Long forms from other encoders.
    assert_eq!(
        decode(&[0xe0, 2, 0, 0], &L),
        Ok(Some((Packet::Disconnect(ReasonOnly::new(0)), 4)))
    );
    assert_eq!(
        decode(&[0xf0, 1, 0x18], &L),
        Ok(Some((Packet::Auth(ReasonOnly::new(0x18)), 3)))
    );
}

#[test]
fn varints() {
    let mut out = Vec::new();
    for v in [
        0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
    ] {
        out.clear();
        out.push(0x30);
        put_varint(&mut out, v);
        assert_eq!(out.len() - 1, properties::varint_len(v));
        assert_eq!(fixed_header(&out), Ok(Some((0x30, out.len(), v))));
    }
    // A fifth byte: malformed, as soon as the fourth has a continuation bit.
    assert_code(
        &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        DecodeError::BadVarint,
        MALFORMED_PACKET,
    );
    assert_code(
        &[0x30, 0xff, 0xff, 0xff, 0xff],
        DecodeError::BadVarint,
        0x81,
    );
    // Not minimal.
    assert_code(&[0x30, 0x80, 0x00], DecodeError::BadVarint, 0x81);
    // The same rules inside a property block: the property length ...
    let mut bad_len = vec![0, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x01];
    bad_len.extend_from_slice(&[0; 4]);
    assert_code(&packet(0x40, &bad_len), DecodeError::BadVarint, 0x81);
    // ... and a subscription identifier of five bytes.
    assert_code(
        &publish_with(&[0x0b, 0x80, 0x80, 0x80, 0x80, 0x01]),
        DecodeError::BadVarint,
        0x81,
    );
    assert_code(
        &publish_with(&[0x0b, 0x81, 0x00]),
        DecodeError::BadVarint,
        0x81,
    );
}

#[test]
fn oversize_refused_from_header() {
    let mut out = vec![0x30];
    put_varint(&mut out, 5000);
    assert_code(
        &out,
        DecodeError::TooLarge {
            size: 5003,
            limit: 4096,
        },
        PACKET_TOO_LARGE,
    );
}

#[test]
fn duplicate_properties() {
    // Duplicates of a once-only property: 0x82.
    for (props, id) in [
        (
            &[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2][..],
            id::MESSAGE_EXPIRY_INTERVAL,
        ),
        (&[0x01, 0, 0x01, 1][..], id::PAYLOAD_FORMAT_INDICATOR),
        (&[0x23, 0, 1, 0x23, 0, 2][..], id::TOPIC_ALIAS),
        (&[0x03, 0, 1, b'a', 0x03, 0, 0][..], id::CONTENT_TYPE),
    ] {
        assert_code(
            &publish_with(props),
            DecodeError::DuplicateProperty(id),
            PROTOCOL_ERROR,
        );
    }
    assert_code(
        &puback_with(&[0x1f, 0, 1, b'a', 0x1f, 0, 1, b'b']),
        DecodeError::DuplicateProperty(id::REASON_STRING),
        PROTOCOL_ERROR,
    );
    assert_code(
        &connack_with(&[0x21, 0, 1, 0x21, 0, 1]),
        DecodeError::DuplicateProperty(id::RECEIVE_MAXIMUM),
        PROTOCOL_ERROR,
    );
    assert_code(
        &connect_with(5, 2, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1], &[]),
        DecodeError::DuplicateProperty(id::SESSION_EXPIRY_INTERVAL),
        PROTOCOL_ERROR,
    );
    // User properties repeat anywhere, subscription identifiers in PUBLISH.
    let buf = publish_with(&[
        0x26, 0, 1, b'k', 0, 1, b'1', 0x26, 0, 1, b'k', 0, 1, b'2', 0x0b, 1, 0x0b, 2,
    ]);
    let (p, _) = decode(&buf, &L).unwrap().unwrap();
    let Packet::Publish(p) = p else { panic!() };
    assert_eq!(p.properties.user_properties, [("k", "1"), ("k", "2")]);
    assert_eq!(p.properties.subscription_identifiers, [1, 2]);
    // But a SUBSCRIBE carries one subscription identifier at most.
    let sub = packet(0x82, &[0, 1, 4, 0x0b, 1, 0x0b, 2, 0, 1, b'a', 0]);
    assert_code(
        &sub,
        DecodeError::DuplicateProperty(id::SUBSCRIPTION_IDENTIFIER),
        PROTOCOL_ERROR,
    );
}

#[test]
fn properties_in_the_wrong_packet() {
    // §2.2.2.2: an identifier not valid for the packet type is malformed.
    assert_code(
        &publish_with(&[0x11, 0, 0, 0, 1]),
        DecodeError::PropertyNotAllowed {
            id: id::SESSION_EXPIRY_INTERVAL,
            ctx: Context::Publish,
        },
        MALFORMED_PACKET,
    );
    assert_code(
        &puback_with(&[0x23, 0, 1]),
        DecodeError::PropertyNotAllowed {
            id: id::TOPIC_ALIAS,
            ctx: Context::PubAck,
        },
        MALFORMED_PACKET,
    );
    assert_code(
        &connack_with(&[0x18, 0, 0, 0, 1]),
        DecodeError::PropertyNotAllowed {
            id: id::WILL_DELAY_INTERVAL,
            ctx: Context::ConnAck,
        },
        MALFORMED_PACKET,
    );
    // Will Delay Interval belongs in the Will Properties, not CONNECT's.
    assert_code(
        &connect_with(5, 2, &[0x18, 0, 0, 0, 1], &[]),
        DecodeError::PropertyNotAllowed {
            id: id::WILL_DELAY_INTERVAL,
            ctx: Context::Connect,
        },
        MALFORMED_PACKET,
    );
    // And Session Expiry Interval not in the Will Properties.
    assert_code(
        &connect_with(5, 0x06, &[], &[5, 0x11, 0, 0, 0, 1, 0, 1, b'w', 0, 0]),
        DecodeError::PropertyNotAllowed {
            id: id::SESSION_EXPIRY_INTERVAL,
            ctx: Context::Will,
        },
        MALFORMED_PACKET,
    );
    let unsub = packet(0xa2, &[0, 1, 2, 0x0b, 1, 0, 1, b'a']);
    assert_code(
        &unsub,
        DecodeError::PropertyNotAllowed {
            id: id::SUBSCRIPTION_IDENTIFIER,
            ctx: Context::Unsubscribe,
        },
        MALFORMED_PACKET,
    );
    // Unknown identifiers, one- and two-byte.
    assert_code(
        &publish_with(&[0x04, 0]),
        DecodeError::UnknownProperty(4),
        MALFORMED_PACKET,
    );
    assert_code(
        &publish_with(&[0x81, 0x01, 0]),
        DecodeError::UnknownProperty(0x81),
        MALFORMED_PACKET,
    );
    // The table agrees with itself.
    assert!(properties::allowed_in(id::USER_PROPERTY, Context::Will));
    assert!(!properties::allowed_in(id::TOPIC_ALIAS, Context::Will));
    assert!(properties::property_info(0x00).is_none());
}

#[test]
fn bad_property_values() {
    let bad = |id, value| DecodeError::BadPropertyValue { id, value };
    let cases: &[(Vec<u8>, DecodeError)] = &[
        (
            connect_with(5, 2, &[0x21, 0, 0], &[]),
            bad(id::RECEIVE_MAXIMUM, 0),
        ),
        (connack_with(&[0x21, 0, 0]), bad(id::RECEIVE_MAXIMUM, 0)),
        (
            connect_with(5, 2, &[0x27, 0, 0, 0, 0], &[]),
            bad(id::MAXIMUM_PACKET_SIZE, 0),
        ),
        (publish_with(&[0x23, 0, 0]), bad(id::TOPIC_ALIAS, 0)),
        (
            publish_with(&[0x01, 2]),
            bad(id::PAYLOAD_FORMAT_INDICATOR, 2),
        ),
        (
            publish_with(&[0x0b, 0]),
            bad(id::SUBSCRIPTION_IDENTIFIER, 0),
        ),
        (connack_with(&[0x24, 2]), bad(id::MAXIMUM_QOS, 2)),
        (connack_with(&[0x25, 2]), bad(id::RETAIN_AVAILABLE, 2)),
        (
            connack_with(&[0x2a, 0xff]),
            bad(id::SHARED_SUBSCRIPTION_AVAILABLE, 255),
        ),
        (
            connect_with(5, 2, &[0x17, 3], &[]),
            bad(id::REQUEST_PROBLEM_INFORMATION, 3),
        ),
        (
            connect_with(5, 2, &[0x19, 2], &[]),
            bad(id::REQUEST_RESPONSE_INFORMATION, 2),
        ),
        (
            connect_with(5, 2, &[0x16, 0, 1, 9], &[]),
            DecodeError::AuthDataWithoutMethod,
        ),
        (
            packet(0x82, &[0, 1, 2, 0x0b, 0, 0, 1, b'a', 0]),
            bad(id::SUBSCRIPTION_IDENTIFIER, 0),
        ),
    ];
    for (buf, want) in cases {
        assert_code(buf, *want, PROTOCOL_ERROR);
    }
    // Zero is fine where the spec allows it.
    assert!(decode(&connack_with(&[0x22, 0, 0, 0x13, 0, 0]), &L).is_ok());
}

#[test]
fn bad_lengths_and_strings() {
    let m = MALFORMED_PACKET;
    // Property length past the end of the packet.
    assert_code(
        &packet(0x40, &[0, 1, 0, 5, 0x1f, 0, 1]),
        DecodeError::Truncated,
        m,
    );
    // A property value cut short by the property length.
    assert_code(&puback_with(&[0x1f, 0, 5, b'a']), DecodeError::Truncated, m);
    assert_code(&publish_with(&[0x02, 0, 0]), DecodeError::Truncated, m);
    // A user property missing its value.
    assert_code(
        &publish_with(&[0x26, 0, 1, b'k']),
        DecodeError::Truncated,
        m,
    );
    // Invalid UTF-8 and U+0000, in a property, a topic, a user property.
    assert_code(&puback_with(&[0x1f, 0, 1, 0xff]), DecodeError::BadUtf8, m);
    assert_code(&puback_with(&[0x1f, 0, 1, 0x00]), DecodeError::BadUtf8, m);
    // An encoded surrogate (U+D800) is not UTF-8.
    assert_code(
        &puback_with(&[0x1f, 0, 3, 0xed, 0xa0, 0x80]),
        DecodeError::BadUtf8,
        m,
    );
    assert_code(
        &publish_with(&[0x26, 0, 1, b'k', 0, 2, 0xc3, 0x28]),
        DecodeError::BadUtf8,
        m,
    );
    assert_code(&packet(0x30, &[0, 1, 0xfe, 0]), DecodeError::BadUtf8, m);
    // Topic longer than the packet.
    assert_code(&packet(0x30, &[0, 9, b'a', 0]), DecodeError::Truncated, m);
    // PUBLISH without its property length.
    assert_code(&packet(0x30, &[0, 1, b'a']), DecodeError::Truncated, m);
    // Trailing bytes after a complete body.
    assert_code(&[0xc0, 1, 0], DecodeError::TrailingBytes, m);
    assert_code(&[0x40, 5, 0, 1, 0, 0, 9], DecodeError::TrailingBytes, m);
    assert_code(&[0x20, 4, 0, 0, 0, 9], DecodeError::TrailingBytes, m);
    // CONNACK without its property length.
    assert_code(&[0x20, 2, 0, 0], DecodeError::Truncated, m);
    // Property block over the configured limit: quota, not malformed.
    let mut big = Vec::new();
    for _ in 0..60 {
        big.extend_from_slice(&[0x26, 0, 1, b'k', 0, 3, b'v', b'v', b'v']);
    }
    assert_code(
        &publish_with(&big),
        DecodeError::PropertiesTooLarge {
            size: 540,
            limit: 512,
        },
        QUOTA_EXCEEDED,
    );
}

#[test]
fn fixed_header_rules() {
    let m = MALFORMED_PACKET;
    assert_code(&[0x00, 0x00], DecodeError::ReservedType(0), m);
    assert_code(
        &[0xc1, 0x00],
        DecodeError::BadFlags { kind: 12, flags: 1 },
        m,
    );
    assert_code(
        &[0xf1, 0x00],
        DecodeError::BadFlags { kind: 15, flags: 1 },
        m,
    );
    assert_code(
        &[0x60, 0x02, 0, 1],
        DecodeError::BadFlags { kind: 6, flags: 0 },
        m,
    );
    assert_code(&[0x36, 0x03, 0, 1, b'a'], DecodeError::BadQos, m);
    assert_code(
        &[0x38, 0x03, 0, 1, b'a'],
        DecodeError::BadFlags { kind: 3, flags: 8 },
        m,
    );
    // A bad first byte is refused before the body arrives.
    assert_code(
        b"GET / HTTP/1.1",
        DecodeError::BadFlags { kind: 4, flags: 7 },
        m,
    );
}

#[test]
fn protocol_errors_in_packets() {
    let p = PROTOCOL_ERROR;
    // Packet identifier 0.
    assert_code(
        &packet(0x32, &[0, 1, b'a', 0, 0, 0]),
        DecodeError::ZeroPacketId,
        p,
    );
    assert_code(&[0x40, 2, 0, 0], DecodeError::ZeroPacketId, p);
    // Empty topic without alias.
    assert_code(
        &packet(0x30, &[0, 0, 0]),
        DecodeError::EmptyTopicWithoutAlias,
        p,
    );
    // No filters.
    assert_code(&packet(0x82, &[0, 1, 0]), DecodeError::NoFilters, p);
    assert_code(&packet(0xa2, &[0, 1, 0]), DecodeError::NoFilters, p);
    // SUBACK/UNSUBACK with no codes.
    assert_code(&packet(0x90, &[0, 1, 0]), DecodeError::NoReasonCodes, p);
    assert_code(&packet(0xb0, &[0, 1, 0]), DecodeError::NoReasonCodes, p);
    // Reason codes not valid for the packet type.
    let bad = |kind, code| DecodeError::BadReasonCode { kind, code };
    assert_code(&[0x40, 3, 0, 1, 0x92], bad(PacketType::PubAck, 0x92), p);
    assert_code(&[0x62, 3, 0, 1, 0x10], bad(PacketType::PubRel, 0x10), p);
    assert_code(&[0x70, 3, 0, 1, 0x80], bad(PacketType::PubComp, 0x80), p);
    assert_code(&[0x20, 3, 0, 0x04, 0], bad(PacketType::ConnAck, 0x04), p);
    assert_code(&[0xe0, 1, 0x01], bad(PacketType::Disconnect, 0x01), p);
    assert_code(&[0xe0, 1, 0x91], bad(PacketType::Disconnect, 0x91), p);
    assert_code(&[0xf0, 1, 0x80], bad(PacketType::Auth, 0x80), p);
    assert_code(
        &packet(0x90, &[0, 1, 0, 0, 0x11]),
        bad(PacketType::SubAck, 0x11),
        p,
    );
    assert_code(
        &packet(0xb0, &[0, 1, 0, 0x01]),
        bad(PacketType::UnsubAck, 0x01),
        p,
    );
    // CONNACK: session present with an error code; reserved ack bits.
    assert_code(
        &[0x20, 3, 1, 0x80, 0],
        DecodeError::SessionPresentOnError,
        p,
    );
    assert_code(
        &[0x20, 3, 2, 0, 0],
        DecodeError::BadConnAckFlags(2),
        MALFORMED_PACKET,
    );
}

#[test]
fn subscribe_rules() {
    let sub = |opts: u8, filter: &[u8]| {
        let mut body = vec![0, 1, 0, 0, filter.len() as u8];
        body.extend_from_slice(filter);
        body.push(opts);
        packet(0x82, &body)
    };
    // Reserved bits 6-7: malformed (MQTT-3.8.3-5).
    assert_code(
        &sub(0x40, b"a"),
        DecodeError::BadSubscriptionOptions(0x40),
        MALFORMED_PACKET,
    );
    assert_code(
        &sub(0x81, b"a"),
        DecodeError::BadSubscriptionOptions(0x81),
        MALFORMED_PACKET,
    );
    // QoS 3, Retain Handling 3: protocol errors.
    assert_code(
        &sub(0x03, b"a"),
        DecodeError::BadSubscriptionOption(0x03),
        PROTOCOL_ERROR,
    );
    assert_code(
        &sub(0x30, b"a"),
        DecodeError::BadSubscriptionOption(0x30),
        PROTOCOL_ERROR,
    );
    // No Local on a shared subscription (MQTT-3.8.3-4).
    assert_code(
        &sub(0x04, b"$share/g/a"),
        DecodeError::NoLocalOnShared,
        PROTOCOL_ERROR,
    );
    assert!(decode(&sub(0x04, b"$shared"), &L).is_ok());
    // Filter without options byte.
    assert_code(
        &packet(0x82, &[0, 1, 0, 0, 1, b'a']),
        DecodeError::Truncated,
        MALFORMED_PACKET,
    );
    // Too many filters.
    let mut body = vec![0, 1, 0];
    for _ in 0..5 {
        body.extend_from_slice(&[0, 1, b'a', 0]);
    }
    assert_code(
        &packet(0x82, &body),
        DecodeError::TooManyFilters(4),
        QUOTA_EXCEEDED,
    );
    let mut body = vec![0, 1, 0];
    for _ in 0..5 {
        body.extend_from_slice(&[0, 1, b'a']);
    }
    assert_code(
        &packet(0xa2, &body),
        DecodeError::TooManyFilters(4),
        QUOTA_EXCEEDED,
    );
}

#[test]
fn connect_rules() {
    let ok = connect_with(5, 0x02, &[], &[]);
    assert!(matches!(decode(&ok, &L), Ok(Some((Packet::Connect(_), _)))));
    let m = MALFORMED_PACKET;
    assert_code(
        &connect_with(5, 0x03, &[], &[]),
        DecodeError::BadConnectFlags,
        m,
    );
    // Will QoS / Will Retain without the Will flag.
    assert_code(
        &connect_with(5, 0x08, &[], &[]),
        DecodeError::BadConnectFlags,
        m,
    );
    assert_code(
        &connect_with(5, 0x20, &[], &[]),
        DecodeError::BadConnectFlags,
        m,
    );
    // Will QoS 3.
    assert_code(&connect_with(5, 0x1c, &[], &[]), DecodeError::BadQos, m);
    // Will flag set but no Will fields.
    assert_code(&connect_with(5, 0x04, &[], &[]), DecodeError::Truncated, m);
    // User name flag without a user name.
    assert_code(&connect_with(5, 0x80, &[], &[]), DecodeError::Truncated, m);
    // Invalid UTF-8 client id.
    let mut bad_id = connect_with(5, 0x02, &[], &[]);
    *bad_id.last_mut().unwrap() = 0xff;
    assert_code(&bad_id, DecodeError::BadUtf8, m);
    // Wrong protocol name.
    let mut wrong = ok.clone();
    wrong[4] = b'X';
    assert_code(
        &wrong,
        DecodeError::BadProtocolName,
        UNSUPPORTED_PROTOCOL_VERSION,
    );
}

/// A 3.1.1 CONNECT (level 4, no property length) is refused with 0x84, and
/// `peek_connect_level` tells the caller which codec to use.
#[test]
fn protocol_level_dispatch() {
    let mut v311 = Vec::new();
    crate::mqtt::codec::encode(
        &crate::mqtt::codec::Packet::Connect(crate::mqtt::codec::Connect {
            protocol_name: crate::mqtt::codec::PROTOCOL_NAME,
            level: 4,
            clean_session: true,
            keep_alive_s: 30,
            client_id: "c1",
            will: None,
            username: None,
            password: None,
        }),
        &mut v311,
    );
    assert_code(
        &v311,
        DecodeError::UnsupportedProtocolVersion(4),
        UNSUPPORTED_PROTOCOL_VERSION,
    );
    assert_eq!(peek_connect_level(&v311), Ok(Some(4)));
    let v5 = bytes(&Packet::Connect(Connect {
        clean_start: true,
        keep_alive_s: 30,
        properties: Properties::default(),
        client_id: "c1",
        will: None,
        username: None,
        password: None,
    }));
    assert_eq!(peek_connect_level(&v5), Ok(Some(5)));
    // The level is known from the first 9 bytes; before that, wait.
    for cut in 0..9 {
        assert_eq!(peek_connect_level(&v5[..cut]), Ok(None), "{cut}");
    }
    assert_eq!(peek_connect_level(&v5[..9]), Ok(Some(5)));
    // Not a CONNECT; a CONNECT too short for its protocol name.
    assert_eq!(DecodeError::NotConnect(3).reason_code(), PROTOCOL_ERROR);
    assert_eq!(
        peek_connect_level(&[0x30, 0]),
        Err(DecodeError::NotConnect(3))
    );
    assert_eq!(
        peek_connect_level(&[0x10, 3, 0, 4, b'M']),
        Err(DecodeError::Truncated)
    );
    // The 3.1.1 decoder does not mistake a v5 CONNECT for a valid one of
    // its own level: it sees level 5, which its session refuses.
    match crate::mqtt::codec::decode(&v5, &crate::mqtt::codec::DecodeLimits::default()) {
        Ok(Some((crate::mqtt::codec::Packet::Connect(c), _))) => assert_eq!(c.level, 5),
        other => assert!(other.is_err(), "{other:?}"),
    }
}

#[test]
fn encode_refuses_invalid_packets() {
    let mut out = vec![1, 2, 3];
    let publish = |properties, qos, packet_id| {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: "t",
            packet_id,
            properties,
            payload: b"",
        })
    };
    let cases = [
        (
            publish(
                Properties {
                    session_expiry_interval: Some(1),
                    ..Default::default()
                },
                0,
                0,
            ),
            EncodeError::PropertyNotAllowed {
                id: id::SESSION_EXPIRY_INTERVAL,
                ctx: Context::Publish,
            },
        ),
        (
            publish(
                Properties {
                    subscription_identifiers: vec![0],
                    ..Default::default()
                },
                0,
                0,
            ),
            EncodeError::ValueOutOfRange {
                id: id::SUBSCRIPTION_IDENTIFIER,
            },
        ),
        (
            publish(Properties::default(), 1, 0),
            EncodeError::InvalidField("packet identifier 0"),
        ),
        (
            publish(Properties::default(), 3, 1),
            EncodeError::InvalidField("QoS above 2"),
        ),
        (
            Packet::PubAck(PubResp {
                packet_id: 1,
                reason_code: 0x92,
                properties: Properties::default(),
            }),
            EncodeError::InvalidField("reason code not valid for packet"),
        ),
        (
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: Properties {
                    subscription_identifiers: vec![1, 2],
                    ..Default::default()
                },
                filters: vec![("a", SubscriptionOptions::default())],
            }),
            EncodeError::ValueOutOfRange {
                id: id::SUBSCRIPTION_IDENTIFIER,
            },
        ),
    ];
    for (p, want) in cases {
        assert_eq!(encode(&p, &mut out), Err(want), "{p:?}");
        assert_eq!(encoded_len(&p), Err(want));
    }
    let long = "x".repeat(70_000);
    let p = Packet::Publish(Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: &long,
        packet_id: 0,
        properties: Properties::default(),
        payload: b"",
    });
    assert_eq!(encode(&p, &mut out), Err(EncodeError::FieldTooLong));
    // Nothing was written.
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn reason_code_table() {
    assert_eq!(reason::ALL.len(), 43);
    for w in reason::ALL.windows(2) {
        assert!(w[0] < w[1]);
    }
    for code in 0..=255u8 {
        assert_eq!(
            reason::name(code).is_some(),
            reason::ALL.contains(&code),
            "{code:#x}"
        );
    }
    assert_eq!(
        reason::name(0xA2),
        Some("Wildcard Subscriptions not supported")
    );
    assert_eq!(reason::name(0x00), Some("Success"));
    // Every code valid for some packet is a defined code.
    for kind in 1..=15 {
        let kind = PacketType::from_u8(kind).unwrap();
        for code in 0..=255u8 {
            if reason::valid_for(kind, code) {
                assert!(reason::ALL.contains(&code), "{kind:?} {code:#x}");
            }
        }
    }
    // DISCONNECT accepts 29 codes, CONNACK 22 (§3.14.2.1, §3.2.2.2).
    let count = |k| (0..=255u8).filter(|&c| reason::valid_for(k, c)).count();
    assert_eq!(count(PacketType::Disconnect), 29);
    assert_eq!(count(PacketType::ConnAck), 22);
    assert_eq!(count(PacketType::SubAck), 12);
    assert_eq!(count(PacketType::UnsubAck), 7);
    assert_eq!(count(PacketType::PubAck), 9);
}

/// Mutated packets never panic the decoder, and whatever it accepts
/// encodes and decodes back to the same value.
#[test]
fn mutations_never_panic_and_accepted_packets_round_trip() {
    let seeds: Vec<Vec<u8>> = vec![
        bytes(&Packet::Connect(Connect {
            clean_start: true,
            keep_alive_s: 30,
            properties: Properties {
                receive_maximum: Some(5),
                authentication_method: Some("m"),
                authentication_data: Some(b"d"),
                user_properties: vec![("a", "b")],
                ..Default::default()
            },
            client_id: "c",
            will: Some(Box::new(Will {
                properties: full_will_props(),
                topic: "w",
                payload: b"x",
                qos: 1,
                retain: false,
            })),
            username: Some("u"),
            password: Some(b"p"),
        })),
        bytes(&Packet::Publish(Publish {
            dup: false,
            qos: 1,
            retain: false,
            topic: "a/b",
            packet_id: 3,
            properties: Properties {
                topic_alias: Some(2),
                subscription_identifiers: vec![1, 300],
                content_type: Some("t"),
                ..Default::default()
            },
            payload: b"hello",
        })),
        connack_with(&[0x24, 1, 0x25, 0, 0x27, 0, 0, 1, 0, 0x1f, 0, 1, b'r']),
        puback_with(&[0x1f, 0, 2, b'o', b'k', 0x26, 0, 1, b'k', 0, 1, b'v']),
        packet(0x82, &[0, 9, 2, 0x0b, 7, 0, 1, b'a', 0x2e, 0, 1, b'#', 1]),
        packet(0x90, &[0, 9, 0, 0, 1, 0x80]),
        packet(0xa2, &[0, 9, 0, 0, 1, b'a']),
        packet(0xe0, &[0x9c, 5, 0x1c, 0, 2, b's', b'1']),
        packet(0xf0, &[0x18, 7, 0x15, 0, 1, b'm', 0x16, 0, 0]),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for seed in &seeds {
        assert!(decode(seed, &L).unwrap().is_some(), "seed {seed:x?}");
        for _ in 0..3000 {
            let mut m = seed.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % m.len() as u64) as usize;
                match next() % 4 {
                    0 => m[at] ^= 1 << (next() % 8),
                    1 => m[at] = next() as u8,
                    2 => m.truncate(at.max(1)),
                    _ => m.insert(at, next() as u8),
                }
            }
            if let Ok(Some((p, used))) = decode(&m, &L) {
                accepted += 1;
                let again = bytes(&p);
                let (back, n) = decode(&again, &L).unwrap().unwrap();
                assert_eq!(back, p, "{m:x?}");
                assert_eq!(n, again.len());
                assert!(used <= m.len());
            }
        }
    }
    assert!(accepted > 100, "only {accepted} mutations decoded");
}
