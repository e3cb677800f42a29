use super::properties::{id, put_varint};
use super::reason::*;
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

mod encode_and_fuzz;
mod refusals;
