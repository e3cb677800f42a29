//! Decoding refusals: every malformed or out-of-place packet is refused
//! with the precise error and the reason code a v5 peer is sent.

use super::super::reason::*;
use super::super::*;
use super::*;

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
