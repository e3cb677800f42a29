//! TOPOLOGY frames: round trips, malformed and oversize records, bounds.

use super::*;

#[test]
fn topology_round_trips() {
    round_trip(Frame::Topology(topology_record()));
    for state in LinkState::ALL {
        let mut t = topology_record();
        t.links[0].state = state;
        t.links[1].rtt_us = Some(0);
        round_trip(Frame::Topology(t));
    }
    round_trip(Frame::Topology(TopologyRecord {
        links: vec![],
        ..topology_record()
    }));
    assert_eq!(LinkState::Connecting.label(), "connecting");
}

#[test]
fn topology_malformed_and_oversize() {
    let mut good = Vec::new();
    encode(&Frame::Topology(topology_record()), &mut good).unwrap();
    // Body: origin "r1" (4), seq (8), age (4), count (2), then the first
    // link: peer "r2" (4), state, flags.
    let state_at = PREFIX_LEN + 1 + 4 + 8 + 4 + 2 + 4;
    let mut bad_state = good.clone();
    bad_state[state_at] = 4;
    assert_eq!(decode(&bad_state, &L), Err(LinkError::BadLinkState(4)));
    assert_eq!(
        LinkError::BadLinkState(4).to_string(),
        "invalid link state 4 in a topology record (0 up, 1 held, 2 down, 3 connecting)"
    );
    let mut bad_flags = good.clone();
    bad_flags[state_at + 1] = 0b111;
    assert_eq!(
        decode(&bad_flags, &L),
        Err(LinkError::BadFlags {
            kind: kind::TOPOLOGY,
            flags: 0b111
        })
    );
    // The rtt flag cleared: its 8 bytes are read as the counters.
    let mut no_rtt = good.clone();
    no_rtt[state_at + 1] = 0b01;
    assert_eq!(decode(&no_rtt, &L), Err(LinkError::TrailingBytes));
    let mut short = good.clone();
    short.pop();
    let len = (short.len() - PREFIX_LEN) as u32;
    short[..PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    assert_eq!(decode(&short, &L), Err(LinkError::Truncated));
    // More links than the limit (3): refused from the count.
    let mut many = good.clone();
    many[PREFIX_LEN + 1 + 4 + 8 + 4..][..2].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        decode(&many, &L),
        Err(LinkError::TooManyLinks { count: 4, limit: 3 })
    );
    // Larger than topology_bytes_max (512) though within frame_bytes_max
    // (1024): refused from the first five bytes, before its body.
    let head = [&596u32.to_be_bytes()[..], &[kind::TOPOLOGY]].concat();
    assert_eq!(
        decode(&head, &L),
        Err(LinkError::TopologyTooLarge {
            size: 600,
            limit: 512
        })
    );
    assert_eq!(
        LinkError::TopologyTooLarge {
            size: 600,
            limit: 512
        }
        .to_string(),
        "topology frame of 600 bytes exceeds the limit of 512 bytes"
    );
    // An event of that size is fine.
    let head = [&596u32.to_be_bytes()[..], &[kind::EVENT]].concat();
    assert_eq!(decode(&head, &L), Ok(None));
}

#[test]
fn topology_bounds_pair() {
    // The largest record the default link bound allows fits the default
    // byte bound: a record the codec takes by count is never refused by
    // size.
    let d = LinkLimits::default();
    assert!(topology_frame_bytes(d.topology_links_max) <= d.topology_bytes_max);
    assert!(d.topology_bytes_max < d.frame_bytes_max);
    // And the bound is tight: a record of that many links with the
    // longest ids encodes to exactly that size.
    let id = "x".repeat(ROUTER_ID_MAX);
    let peers: Vec<String> = (0..3).map(|i| format!("{i}{}", &id[1..])).collect();
    let t = TopologyRecord {
        origin: &id,
        seq: 1,
        age_ms: 0,
        links: peers
            .iter()
            .map(|p| TopologyLink {
                peer: p,
                state: LinkState::Up,
                tls: true,
                rtt_us: Some(1),
                events_in: 1,
                events_out: 1,
                dropped: 1,
            })
            .collect(),
    };
    assert_eq!(encoded_len(&Frame::Topology(t)), topology_frame_bytes(3));
}
