use super::*;

const L: DecodeLimits = DecodeLimits {
    packet_bytes_max: 1024,
    filters_per_packet_max: 4,
};

fn round_trip(p: Packet<'_>) {
    let mut out = Vec::new();
    encode(&p, &mut out);
    let (back, used) = decode(&out, &L).unwrap().unwrap();
    assert_eq!(back, p);
    assert_eq!(used, out.len());
    // Every strict prefix is "need more bytes", never an error.
    for cut in 0..out.len() {
        assert_eq!(decode(&out[..cut], &L), Ok(None), "prefix {cut}");
    }
    // Re-encoding the decoded packet gives the same bytes.
    let mut again = Vec::new();
    encode(&back, &mut again);
    assert_eq!(again, out);
}

/// The QoS 0 delivery path (an event's shared buffer behind a fixed
/// header) writes the same bytes as the general encoder, across the
/// remaining-length sizes of 1, 2 and 3 bytes, and they decode.
#[test]
fn prefixed_publish_is_the_plain_qos0_publish() {
    for (topic, payload_len) in [("a", 0), ("a/b", 120), ("t/x", 130), ("long", 20_000)] {
        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
        let event = crate::event::Event::new(topic, &payload, 0, false);
        assert_eq!(event.topic(), topic);
        assert_eq!(event.payload(), &payload[..]);
        for retain in [false, true] {
            let mut prefixed = Vec::new();
            put_publish_prefixed(&mut prefixed, retain, event.prefixed_topic_and_payload());
            let mut plain = Vec::new();
            put_publish(&mut plain, false, 0, retain, topic.as_bytes(), 0, &payload);
            assert_eq!(prefixed, plain, "{topic} {payload_len} retain {retain}");
            assert_eq!(prefixed.len(), publish_len(topic.len(), 0, payload_len));
            let limits = DecodeLimits {
                packet_bytes_max: 1 << 20,
                filters_per_packet_max: 4,
            };
            let (packet, used) = decode(&prefixed, &limits).unwrap().unwrap();
            assert_eq!(used, prefixed.len());
            let Packet::Publish(p) = packet else {
                panic!("not a PUBLISH: {packet:?}");
            };
            assert_eq!(
                (p.topic, p.payload, p.qos, p.retain),
                (topic, &payload[..], 0, retain)
            );
        }
    }
}

#[test]
fn round_trips() {
    round_trip(Packet::Connect(Connect {
        protocol_name: PROTOCOL_NAME,
        level: 4,
        clean_session: true,
        keep_alive_s: 30,
        client_id: "c1",
        will: Some(Will {
            topic: "w/t",
            payload: b"bye",
            qos: 1,
            retain: true,
        }),
        username: Some("u"),
        password: Some(b"p"),
    }));
    round_trip(Packet::ConnAck {
        session_present: false,
        code: 0,
    });
    round_trip(Packet::Publish(Publish {
        dup: false,
        qos: 0,
        retain: false,
        topic: "a/b",
        packet_id: 0,
        payload: &[7; 300],
    }));
    round_trip(Packet::Publish(Publish {
        dup: true,
        qos: 1,
        retain: true,
        topic: "a/b",
        packet_id: 9,
        payload: b"",
    }));
    round_trip(Packet::PubAck(1));
    round_trip(Packet::PubRec(2));
    round_trip(Packet::PubRel(3));
    round_trip(Packet::PubComp(4));
    round_trip(Packet::Subscribe {
        packet_id: 5,
        filters: vec![("a/+", 1), ("#", 0)],
    });
    round_trip(Packet::SubAck {
        packet_id: 5,
        codes: vec![1, 0x80],
    });
    round_trip(Packet::Unsubscribe {
        packet_id: 6,
        filters: vec!["a/+"],
    });
    round_trip(Packet::UnsubAck(6));
    round_trip(Packet::PingReq);
    round_trip(Packet::PingResp);
    round_trip(Packet::Disconnect);
}

#[test]
fn publish_len_matches_encoding() {
    for (qos, n) in [(0, 0), (1, 100), (0, 200), (1, 20_000)] {
        let mut out = Vec::new();
        put_publish(&mut out, false, qos, false, b"t/x", 1, &vec![0; n]);
        assert_eq!(out.len(), publish_len(3, qos, n));
    }
}

#[test]
fn remaining_length_limits() {
    let mut out = Vec::new();
    for len in [
        0,
        127,
        128,
        16_383,
        16_384,
        2_097_151,
        2_097_152,
        REMAINING_LENGTH_MAX,
    ] {
        out.clear();
        out.push(0x30);
        put_remaining_length(&mut out, len);
        assert_eq!(out.len() - 1, remaining_length_len(len));
        assert_eq!(fixed_header(&out), Ok(Some((0x30, out.len(), len))));
    }
    assert_eq!(
        fixed_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
        Err(DecodeError::BadRemainingLength)
    );
    assert_eq!(
        fixed_header(&[0x30, 0x80, 0x00]),
        Err(DecodeError::BadRemainingLength)
    );
}

#[test]
fn oversize_refused_from_header() {
    // Only the fixed header has arrived; the body is 2000 bytes.
    let mut out = vec![0x30];
    put_remaining_length(&mut out, 2000);
    assert_eq!(
        decode(&out, &L),
        Err(DecodeError::TooLarge {
            size: 2003,
            limit: 1024
        })
    );
}

#[test]
fn malformed() {
    let bad: &[(&[u8], DecodeError)] = &[
        (&[0x00, 0x00], DecodeError::ReservedType(0)),
        (&[0xf0, 0x00], DecodeError::ReservedType(15)),
        (&[0xc1, 0x00], DecodeError::BadFlags { kind: 12, flags: 1 }),
        (&[0x36, 0x03, 0, 1, b'a'], DecodeError::BadQos),
        (
            &[0x38, 0x03, 0, 1, b'a'],
            DecodeError::BadFlags { kind: 3, flags: 8 },
        ),
        (&[0x30, 0x03, 0, 2, b'a'], DecodeError::Truncated),
        (&[0x30, 0x03, 0, 1, 0xff], DecodeError::BadUtf8),
        (&[0x30, 0x03, 0, 1, 0x00], DecodeError::BadUtf8),
        (&[0x32, 0x05, 0, 1, b'a', 0, 0], DecodeError::ZeroPacketId),
        (&[0x82, 0x02, 0, 1], DecodeError::NoFilters),
        (
            &[0x82, 0x06, 0, 1, 0, 1, b'a', 3],
            DecodeError::BadSubscriptionOptions(3),
        ),
        (
            &[0x80, 0x06, 0, 1, 0, 1, b'a', 0],
            DecodeError::BadFlags { kind: 8, flags: 0 },
        ),
        (&[0x40, 0x03, 0, 1, 9], DecodeError::TrailingBytes),
        (&[0xc0, 0x01, 0], DecodeError::TrailingBytes),
        (&[0xe0, 0x01, 0], DecodeError::TrailingBytes),
        // Found by the mqtt311_decode fuzz target: decoded as a plain
        // CONNACK, so it re-encoded to other bytes.
        (&[0x20, 0x02, 0x02, 0x00], DecodeError::BadConnAckFlags(2)),
        (
            &[0x20, 0x02, 0x81, 0x00],
            DecodeError::BadConnAckFlags(0x81),
        ),
    ];
    for (bytes, want) in bad {
        assert_eq!(decode(bytes, &L), Err(*want), "{bytes:x?}");
    }
    let mut too_many = vec![0x82, 0, 0, 1];
    for _ in 0..5 {
        too_many.extend_from_slice(&[0, 1, b'a', 0]);
    }
    too_many[1] = (too_many.len() - 2) as u8;
    assert_eq!(decode(&too_many, &L), Err(DecodeError::TooManyFilters(4)));
    // A bad first byte is refused before the body arrives.
    assert_eq!(
        decode(b"GET / HTTP/1.1", &L),
        Err(DecodeError::BadFlags { kind: 4, flags: 7 })
    );
}

#[test]
fn connect_flag_rules() {
    let base = |flags: u8| {
        let mut out = vec![0x10, 0];
        out.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 10, 0, 1, b'c']);
        out[1] = (out.len() - 2) as u8;
        out
    };
    assert!(matches!(
        decode(&base(0x02), &L),
        Ok(Some((Packet::Connect(_), _)))
    ));
    assert_eq!(decode(&base(0x03), &L), Err(DecodeError::BadConnectFlags));
    assert_eq!(decode(&base(0x40), &L), Err(DecodeError::BadConnectFlags));
    assert_eq!(decode(&base(0x08), &L), Err(DecodeError::BadConnectFlags));
    let mut wrong_name = base(0x02);
    wrong_name[4] = b'X';
    assert_eq!(decode(&wrong_name, &L), Err(DecodeError::BadProtocolName));
}

#[test]
fn mqtt_31_connect() {
    // MQTT 3.1 §3.1, as a 3.1 client (mosquitto_sub -V mqttv31) sends it.
    let mut bytes = vec![0x10, 0];
    bytes.extend_from_slice(&[0, 6]);
    bytes.extend_from_slice(b"MQIsdp");
    bytes.extend_from_slice(&[3, 0x02, 0, 60, 0, 3]);
    bytes.extend_from_slice(b"old");
    bytes[1] = (bytes.len() - 2) as u8;
    let (packet, used) = decode(&bytes, &L).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    let want = Connect {
        protocol_name: PROTOCOL_NAME_31,
        level: PROTOCOL_LEVEL_31,
        clean_session: true,
        keep_alive_s: 60,
        client_id: "old",
        will: None,
        username: None,
        password: None,
    };
    assert_eq!(packet, Packet::Connect(want.clone()));
    // The encoder writes the same bytes back.
    let mut again = Vec::new();
    encode(&Packet::Connect(want.clone()), &mut again);
    assert_eq!(again, bytes);
    round_trip(Packet::Connect(Connect {
        will: Some(Will {
            topic: "w",
            payload: b"x",
            qos: 2,
            retain: false,
        }),
        username: Some("u"),
        password: Some(b"p"),
        ..want
    }));
    // A name of another case or length is not MQTT.
    for name in [&b"mqisdp"[..], b"MQIsd", b"MQTTT"] {
        let mut bad = vec![0x10, 0, 0, name.len() as u8];
        bad.extend_from_slice(name);
        bad.extend_from_slice(&[3, 0x02, 0, 60, 0, 1, b'c']);
        bad[1] = (bad.len() - 2) as u8;
        assert_eq!(decode(&bad, &L), Err(DecodeError::BadProtocolName));
    }
}
