//! MQTT 5 decoder, `weft::mqtt::v5`.
//!
//! Properties: the decoder contract (see the crate comment); every packet
//! the decoder accepts, the encoder accepts too, in exactly
//! `encoded_len` bytes; those bytes decode to the same packet, and encoding
//! that packet again gives the same bytes (the encoder's form is a fixed
//! point). Byte equality with the input is not expected: MQTT 5 lets a peer
//! order properties freely and spell a Success acknowledgement long or
//! short. A decoded CONNECT is level 5 to `peek_connect_level`.

use weft::mqtt::v5::{
    decode, encode, encoded_len, Auth, ConnAck, Connect, DecodeLimits, Disconnect, Packet,
    Properties, PubResp, Publish, RetainHandling, SubAck, Subscribe, SubscriptionOptions,
    Unsubscribe, Will,
};

/// Small limits, so the fuzzer reaches them within its input size.
const LIMITS: DecodeLimits = DecodeLimits {
    packet_bytes_max: 2048,
    properties_bytes_max: 256,
    filters_per_packet_max: 8,
};

/// For re-decoding the encoder's output, which may be a little longer
/// than the input (an AUTH's one-byte short form is written as two).
const LOOSE: DecodeLimits = DecodeLimits {
    packet_bytes_max: 1 << 20,
    properties_bytes_max: 1 << 20,
    filters_per_packet_max: 1 << 16,
};

pub fn check(data: &[u8]) {
    let Ok(Some((packet, _))) = crate::decoder_contract(data, |b| decode(b, &LIMITS)) else {
        return;
    };
    let mut out = Vec::new();
    let written = encode(&packet, &mut out)
        .unwrap_or_else(|e| panic!("decoded {packet:?} but cannot encode it: {e}"));
    assert_eq!(written, out.len());
    assert_eq!(encoded_len(&packet), Ok(written));
    let (back, used) = decode(&out, &LOOSE)
        .unwrap_or_else(|e| panic!("re-encoded {packet:?} as {out:x?}: {e}"))
        .expect("a whole packet");
    assert_eq!(used, out.len());
    assert_eq!(back, packet, "round trip through {out:x?}");
    let mut again = Vec::new();
    encode(&back, &mut again).expect("encoded once");
    assert_eq!(again, out, "the encoder's form is a fixed point");
    if matches!(packet, Packet::Connect(_)) {
        assert_eq!(weft::mqtt::v5::peek_connect_level(data), Ok(Some(5)));
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let publish_props = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain"),
        response_topic: Some("reply/here"),
        correlation_data: Some(b"corr"),
        topic_alias: Some(3),
        user_properties: vec![("k", "v"), ("k", "w")],
        ..Properties::default()
    };
    let packets = [
        Packet::Connect(Connect {
            clean_start: false,
            keep_alive_s: 30,
            properties: Properties {
                session_expiry_interval: Some(120),
                receive_maximum: Some(10),
                maximum_packet_size: Some(4096),
                topic_alias_maximum: Some(5),
                request_problem_information: Some(true),
                authentication_method: Some("PLAIN"),
                authentication_data: Some(b"xy"),
                ..Properties::default()
            },
            client_id: "c5",
            will: Some(Box::new(Will {
                properties: Properties {
                    will_delay_interval: Some(5),
                    ..Properties::default()
                },
                topic: "will/t",
                payload: b"bye",
                qos: 1,
                retain: false,
            })),
            username: Some("u"),
            password: Some(b"p"),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: 0,
            properties: Properties {
                assigned_client_identifier: Some("auto-1"),
                server_keep_alive: Some(60),
                maximum_qos: Some(1),
                retain_available: Some(true),
                ..Properties::default()
            },
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: 1,
            retain: true,
            topic: "a/b",
            packet_id: 9,
            properties: publish_props,
            payload: b"payload",
        }),
        Packet::PubAck(PubResp {
            packet_id: 9,
            reason_code: 0x10,
            properties: Properties {
                reason_string: Some("no subscribers"),
                ..Properties::default()
            },
        }),
        Packet::PubRel(PubResp::ok(4)),
        Packet::Subscribe(Subscribe {
            packet_id: 2,
            properties: Properties {
                subscription_identifiers: vec![7],
                ..Properties::default()
            },
            filters: vec![
                (
                    "a/+/#",
                    SubscriptionOptions {
                        qos: 2,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                ),
                ("$share/g/x", SubscriptionOptions::default()),
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: 2,
            properties: Properties::default(),
            reason_codes: &[2, 0x80],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            properties: Properties::default(),
            filters: vec!["a/+/#"],
        }),
        Packet::Disconnect(Disconnect {
            reason_code: 0x04,
            properties: Properties {
                session_expiry_interval: Some(0),
                ..Properties::default()
            },
        }),
        Packet::Auth(Auth::new(0x18)),
    ];
    let mut seeds: Vec<Vec<u8>> = packets
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            encode(p, &mut out).expect("seed encodes");
            out
        })
        .collect();
    // A stream of the short forms: PINGREQ, Success PUBACK, bare DISCONNECT.
    let mut stream = Vec::new();
    for p in [
        Packet::PingReq,
        Packet::PubAck(PubResp::ok(1)),
        Packet::Disconnect(Disconnect::new(0)),
    ] {
        encode(&p, &mut stream).expect("seed encodes");
    }
    seeds.push(stream);
    seeds
}
