//! MQTT 3.1.1 (and 3.1) decoder, `weft::mqtt::codec`.
//!
//! Properties: the decoder contract (see the crate comment); the encoding is
//! canonical (minimal remaining length, every flag bit either meaningful or
//! refused), so a decoded packet re-encodes to exactly the bytes it came
//! from; a decoded CONNECT's level is what `peek_connect_level` (the
//! 3.1.1-or-5 dispatch) reads from the same bytes.

use weft::mqtt::codec::{
    decode, encode, put_publish, Connect, DecodeLimits, Packet, Publish, Will,
};

/// Small limits, so the fuzzer reaches them within its input size.
const LIMITS: DecodeLimits = DecodeLimits {
    packet_bytes_max: 1024,
    filters_per_packet_max: 8,
};

pub fn check(data: &[u8]) {
    let Ok(Some((packet, used))) = crate::decoder_contract(data, |b| decode(b, &LIMITS)) else {
        return;
    };
    let mut again = Vec::new();
    encode(&packet, &mut again);
    assert_eq!(again, &data[..used], "re-encoding {packet:?}");
    if let Packet::Connect(c) = &packet {
        assert_eq!(
            weft::mqtt::v5::peek_connect_level(data),
            Ok(Some(c.level)),
            "dispatch reads the level the decoder read"
        );
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let packets = [
        Packet::Connect(Connect {
            protocol_name: weft::mqtt::codec::PROTOCOL_NAME,
            level: 4,
            clean_session: true,
            keep_alive_s: 60,
            client_id: "client-1",
            will: Some(Will {
                topic: "will/t",
                payload: b"gone",
                qos: 1,
                retain: true,
            }),
            username: Some("user"),
            password: Some(b"secret"),
        }),
        Packet::Connect(Connect {
            protocol_name: weft::mqtt::codec::PROTOCOL_NAME_31,
            level: 3,
            clean_session: false,
            keep_alive_s: 0,
            client_id: "old",
            will: None,
            username: None,
            password: None,
        }),
        Packet::ConnAck {
            session_present: true,
            code: 0,
        },
        Packet::Publish(Publish {
            dup: true,
            qos: 2,
            retain: true,
            topic: "a/b/c",
            packet_id: 7,
            payload: b"hello",
        }),
        Packet::Subscribe {
            packet_id: 1,
            filters: vec![("a/+/c", 1), ("#", 2), ("$share/g/x", 0)],
        },
        Packet::SubAck {
            packet_id: 1,
            codes: vec![1, 2, 0x80],
        },
        Packet::Unsubscribe {
            packet_id: 2,
            filters: vec!["a/+/c", "#"],
        },
        Packet::PubRel(7),
    ];
    let mut seeds: Vec<Vec<u8>> = packets
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            encode(p, &mut out);
            out
        })
        .collect();
    // A stream: QoS 0 PUBLISH, PUBACK, PINGREQ, DISCONNECT back to back.
    let mut stream = Vec::new();
    put_publish(&mut stream, false, 0, false, b"t", 0, b"x");
    for p in [Packet::PubAck(3), Packet::PingReq, Packet::Disconnect] {
        encode(&p, &mut stream);
    }
    seeds.push(stream);
    seeds
}
