//! Encoding refusals, the reason-code table, and mutated packets that
//! must never panic (what decodes round-trips).

use super::super::reason;
use super::*;

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
