//! Router-to-router link frame decoder, `weft::mesh::link`.
//!
//! Properties: the decoder contract (see the crate comment); the encoding
//! is canonical (the module promises `encode(decode(bytes)) == bytes`), so a
//! decoded frame re-encodes to exactly its bytes, and `encoded_len` says how
//! many before writing them.

use weft::mesh::link::{
    decode, encode, encoded_len, Event, Frame, Hello, LinkLimits, LinkMeta, LinkState,
    TopologyLink, TopologyRecord, LINK_VERSION,
};

/// Small limits, so the fuzzer reaches them within its input size.
const LIMITS: LinkLimits = LinkLimits {
    frame_bytes_max: 2048,
    hops_max: 8,
    dests_max: 4,
    topology_bytes_max: 1024,
    topology_links_max: 4,
    explain_reply_bytes_max: 256,
};

pub fn check(data: &[u8]) {
    let Ok(Some((frame, used))) = crate::decoder_contract(data, |b| decode(b, &LIMITS)) else {
        return;
    };
    assert_eq!(encoded_len(&frame), used, "{frame:?}");
    let mut again = Vec::new();
    encode(&frame, &mut again).unwrap_or_else(|e| panic!("decoded {frame:?}, encode: {e}"));
    assert_eq!(again, &data[..used], "re-encoding {frame:?}");
}

pub fn seeds() -> Vec<Vec<u8>> {
    let event = Event {
        id: 42,
        seq: 7,
        origin: "r1",
        hops: 1,
        dests: vec!["r2", "r3"].into(),
        groups: vec![("r2", "workers")].into(),
        topic: "a/b",
        qos: 1,
        retain: true,
        stamp: 1_700_000_000_000_000_000,
        sync: false,
        payload: b"payload",
        meta: LinkMeta {
            reply: Some("_INBOX.1"),
            headers: Some(b"NATS/1.0\r\nk: v\r\n\r\n"),
            response_topic: Some("resp/t"),
            correlation_data: Some(&[0, 1, 2]),
            content_type: Some("text/plain"),
            payload_format: Some(1),
            user_properties: vec![("k", "v")],
            expiry_ms: Some(30_000),
        },
    };
    let frames = [
        Frame::Hello(Hello {
            version: LINK_VERSION,
            router_id: "r1",
            mesh: "prod",
        }),
        Frame::InterestAdd {
            filter: "a/+/#",
            group: Some("workers"),
            origin: "r2",
            distance: 2,
        },
        Frame::InterestRemove {
            filter: "a/b",
            group: None,
            origin: "r2",
        },
        Frame::Event(event.clone()),
        Frame::Event(Event {
            seq: 0,
            qos: 0,
            retain: false,
            stamp: 0,
            sync: true,
            dests: Default::default(),
            groups: Default::default(),
            meta: LinkMeta::default(),
            ..event
        }),
        Frame::Close { reason: "shutdown" },
    ];
    let mut seeds: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            encode(f, &mut out).expect("seed encodes");
            out
        })
        .collect();
    let mut stream = Vec::new();
    for f in [
        Frame::Ack { seq: 7 },
        Frame::Ping { nonce: 1 },
        Frame::Pong { nonce: 1 },
    ] {
        encode(&f, &mut stream).expect("seed encodes");
    }
    seeds.push(stream);
    let topology = Frame::Topology(TopologyRecord {
        origin: "r1",
        seq: 1 << 16,
        age_ms: 20,
        links: vec![
            TopologyLink {
                peer: "r2",
                state: LinkState::Up,
                tls: true,
                rtt_us: Some(140),
                events_in: 1,
                events_out: 2,
                dropped: 0,
            },
            TopologyLink {
                peer: "r3",
                state: LinkState::Held,
                tls: false,
                rtt_us: None,
                events_in: 0,
                events_out: 0,
                dropped: 3,
            },
        ],
    });
    let mut out = Vec::new();
    encode(&topology, &mut out).expect("seed encodes");
    seeds.push(out);
    seeds
}
