//! The link codec's tests: frames round trip, batching, refusals of
//! malformed and oversize input, hello checks, the EVENT frame's lists as
//! views. TOPOLOGY and EXPLAIN frames in `tests/topology.rs` and
//! `tests/explain.rs`.

use super::*;

mod explain;
mod topology;

const L: LinkLimits = LinkLimits {
    frame_bytes_max: 1024,
    hops_max: 4,
    dests_max: 3,
    topology_bytes_max: 512,
    topology_links_max: 3,
    explain_reply_bytes_max: 256,
};

fn round_trip(f: Frame<'_>) {
    let mut out = Vec::new();
    encode(&f, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(&f), "{f:?}");
    let (back, used) = decode(&out, &L).unwrap().unwrap();
    assert_eq!(back, f);
    assert_eq!(used, out.len());
    // Every strict prefix is "need more bytes", never an error.
    for cut in 0..out.len() {
        assert_eq!(decode(&out[..cut], &L), Ok(None), "{f:?} prefix {cut}");
    }
    // Re-encoding the decoded frame gives the same bytes.
    let mut again = Vec::new();
    encode(&back, &mut again).unwrap();
    assert_eq!(again, out);
}

/// A frame from its type byte and hand-written body.
fn raw(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn event() -> Event<'static> {
    Event {
        id: 7,
        seq: 0,
        origin: "r1",
        hops: 0,
        dests: vec!["r2"].into(),
        groups: Default::default(),
        topic: "a/b",
        qos: 0,
        retain: false,
        stamp: 0,
        sync: false,
        payload: b"x",
        meta: LinkMeta::default(),
    }
}

fn full_meta() -> LinkMeta<'static> {
    LinkMeta {
        reply: Some("_INBOX.1"),
        headers: Some(b"NATS/1.0\r\nk: v\r\n\r\n"),
        response_topic: Some("resp/t"),
        correlation_data: Some(&[0, 1, 2]),
        content_type: Some("application/json"),
        payload_format: Some(1),
        user_properties: vec![("traceparent", "00-ab-cd-01"), ("k", ""), ("k", "v2")],
        expiry_ms: Some(30_000),
    }
}

fn topology_record() -> TopologyRecord<'static> {
    TopologyRecord {
        origin: "r1",
        seq: (1_733_500_000_000 << 16) + 3,
        age_ms: 1500,
        links: vec![
            TopologyLink {
                peer: "r2",
                state: LinkState::Up,
                tls: true,
                rtt_us: Some(140),
                events_in: 45,
                events_out: 123,
                dropped: 0,
            },
            TopologyLink {
                peer: "r3",
                state: LinkState::Connecting,
                tls: false,
                rtt_us: None,
                events_in: 0,
                events_out: 0,
                dropped: 7,
            },
        ],
    }
}

#[test]
fn round_trips() {
    round_trip(Frame::Hello(Hello {
        version: LINK_VERSION,
        router_id: "r1",
        mesh: "prod",
    }));
    round_trip(Frame::InterestAdd {
        filter: "a/+/#",
        group: None,
        origin: "r2",
        distance: 3,
    });
    round_trip(Frame::InterestAdd {
        filter: "a/b",
        group: Some("workers"),
        origin: "r2",
        distance: 0,
    });
    round_trip(Frame::InterestRemove {
        filter: "a/+/#",
        group: None,
        origin: "r2",
    });
    round_trip(Frame::InterestRemove {
        filter: "a/b",
        group: Some(""),
        origin: "r2",
    });
    round_trip(Frame::Event(event()));
    round_trip(Frame::Event(Event {
        id: u64::MAX,
        hops: 4,
        dests: vec!["r2", "r3", "r4"].into(),
        groups: vec![("r5", "workers"), ("r2", "q")].into(),
        qos: 1,
        retain: true,
        payload: &[9; 300],
        meta: full_meta(),
        ..event()
    }));
    round_trip(Frame::Event(Event {
        retain: true,
        stamp: 1_790_000_000_000_000_000,
        sync: true,
        payload: b"",
        ..event()
    }));
    // Each metadata field alone (presence bits are independent), and
    // present-but-empty values, which differ from absent ones.
    let full = full_meta();
    let singles = [
        LinkMeta {
            reply: full.reply,
            ..LinkMeta::default()
        },
        LinkMeta {
            headers: Some(b""),
            ..LinkMeta::default()
        },
        LinkMeta {
            response_topic: Some(""),
            ..LinkMeta::default()
        },
        LinkMeta {
            correlation_data: full.correlation_data,
            ..LinkMeta::default()
        },
        LinkMeta {
            content_type: full.content_type,
            ..LinkMeta::default()
        },
        LinkMeta {
            payload_format: Some(0),
            ..LinkMeta::default()
        },
        LinkMeta {
            user_properties: vec![("a", "b")],
            ..LinkMeta::default()
        },
        LinkMeta {
            expiry_ms: Some(0),
            ..LinkMeta::default()
        },
    ];
    for meta in singles {
        round_trip(Frame::Event(Event {
            qos: 2,
            payload: b"",
            meta,
            ..event()
        }));
    }
    round_trip(Frame::Ack { seq: 42 });
    round_trip(Frame::Ping { nonce: 1 });
    round_trip(Frame::Pong { nonce: u64::MAX });
    round_trip(Frame::Close { reason: "" });
    round_trip(Frame::Close {
        reason: "shutting down ✓",
    });
}

#[test]
fn absent_metadata_costs_one_byte() {
    let bare = encoded_len(&Frame::Event(event()));
    // prefix, type, id, seq, origin, hops, dest count, one dest, group
    // count, topic, flags, presence, payload.
    assert_eq!(bare, 4 + 1 + 8 + 8 + 4 + 1 + 2 + 4 + 2 + 5 + 1 + 1 + 5);
}

#[test]
fn batching() {
    let frames = [
        Frame::Hello(Hello {
            version: LINK_VERSION,
            router_id: "r1",
            mesh: "m",
        }),
        Frame::Event(Event {
            meta: full_meta(),
            ..event()
        }),
        Frame::Ping { nonce: 5 },
    ];
    let mut out = Vec::new();
    for f in &frames {
        encode(f, &mut out).unwrap();
    }
    // Half of a fourth frame has arrived too.
    let mut tail = Vec::new();
    encode(&Frame::Close { reason: "bye" }, &mut tail).unwrap();
    out.extend_from_slice(&tail[..tail.len() / 2]);
    let mut at = 0;
    for want in &frames {
        let (got, used) = decode(&out[at..], &L).unwrap().unwrap();
        assert_eq!(&got, want);
        at += used;
    }
    assert_eq!(decode(&out[at..], &L), Ok(None));
    assert_eq!(out.len() - at, tail.len() / 2);
}

#[test]
fn oversize_refused_from_prefix() {
    // Only the length prefix has arrived; the frame would be 2000 bytes.
    let prefix = 1996u32.to_be_bytes();
    assert_eq!(
        decode(&prefix, &L),
        Err(LinkError::TooLarge {
            size: 2000,
            limit: 1024
        })
    );
    // The largest allowed frame is only waited for.
    assert_eq!(decode(&1020u32.to_be_bytes(), &L), Ok(None));
    assert_eq!(
        decode(&u32::MAX.to_be_bytes(), &LinkLimits::default()),
        Err(LinkError::TooLarge {
            size: u32::MAX as usize + 4,
            limit: 4 * 1024 * 1024
        })
    );
}

#[test]
fn malformed() {
    let ev = |body: &[u8]| raw(kind::EVENT, body);
    // id 0, seq 0, origin "r", hops 0, no dests, no groups, topic "t".
    let head: &[u8] = &[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'r', 0, 0, 0, 0, 0, 0, 1, b't',
    ];
    let with = |tail: &[u8]| ev(&[head, tail].concat());
    let bad: Vec<(Vec<u8>, LinkError)> = vec![
        (vec![0, 0, 0, 0], LinkError::EmptyFrame),
        (raw(0, &[]), LinkError::UnknownType(0)),
        (raw(200, &[]), LinkError::UnknownType(200)),
        (raw(kind::PING, &[0; 7]), LinkError::Truncated),
        (raw(kind::PING, &[0; 9]), LinkError::TrailingBytes),
        (raw(kind::PONG, &[]), LinkError::Truncated),
        (raw(kind::CLOSE, &[0, 2, b'a']), LinkError::Truncated),
        (raw(kind::CLOSE, &[0, 1, 0xff]), LinkError::BadUtf8),
        (raw(kind::CLOSE, &[0, 1, b'a', 0]), LinkError::TrailingBytes),
        (
            raw(kind::HELLO, &[0, 1, 0, 2, 0xc3, 0x28, 0, 0]),
            LinkError::BadUtf8,
        ),
        (raw(kind::HELLO, &[0, 1, 0, 1, b'r']), LinkError::Truncated),
        (
            raw(kind::INTEREST_ADD, &[2, 0, 1, b'a', 0, 1, b'r', 0, 0]),
            LinkError::BadFlags {
                kind: kind::INTEREST_ADD,
                flags: 2,
            },
        ),
        // Interest add without its distance.
        (
            raw(kind::INTEREST_ADD, &[0, 0, 1, b'a', 0, 1, b'r']),
            LinkError::Truncated,
        ),
        // Interest remove with a distance it does not have.
        (
            raw(kind::INTEREST_REMOVE, &[0, 0, 1, b'a', 0, 1, b'r', 0, 0]),
            LinkError::TrailingBytes,
        ),
        // Group flagged but missing.
        (
            raw(kind::INTEREST_REMOVE, &[1, 0, 1, b'a', 0, 1, b'r']),
            LinkError::Truncated,
        ),
        (with(&[0, 0, 0, 0, 0, 0, 0]), LinkError::TrailingBytes),
        (with(&[0, 0, 0, 0, 0]), LinkError::Truncated),
        (with(&[0, 0, 0, 0, 0, 1]), LinkError::Truncated),
        (with(&[3, 0, 0, 0, 0, 0]), LinkError::BadQos(3)),
        (
            with(&[0x20, 0, 0, 0, 0, 0]),
            LinkError::BadFlags {
                kind: kind::EVENT,
                flags: 0x20,
            },
        ),
        // A stamp flagged but cut short.
        (with(&[EVENT_STAMP, 0, 0, 0, 0, 0]), LinkError::Truncated),
        // Found by the link_decode fuzz target: a stamp flagged but 0
        // decoded as "no stamp", so it re-encoded to other bytes.
        (
            with(&[EVENT_STAMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            LinkError::ZeroStamp,
        ),
        // Reply flagged but the payload length is read as its string.
        (with(&[0, META_REPLY, 0, 0, 0, 0]), LinkError::Truncated),
        (
            with(&[0, META_USER_PROPERTIES, 0, 0, 0, 0, 0, 0]),
            LinkError::EmptyUserProperties,
        ),
        // Headers longer than the frame.
        (
            with(&[0, META_HEADERS, 0, 0, 1, 0, 0, 0, 0, 0]),
            LinkError::Truncated,
        ),
        (raw(kind::ACK, &[0, 0, 0, 0, 0, 0, 0]), LinkError::Truncated),
        (raw(kind::ACK, &[0; 9]), LinkError::TrailingBytes),
    ];
    for (bytes, want) in &bad {
        assert_eq!(decode(bytes, &L), Err(*want), "{bytes:x?}");
    }
    // The minimal event the cases above are built on is well formed.
    let good = with(&[0, 0, 0, 0, 0, 0]);
    assert!(matches!(decode(&good, &L), Ok(Some((Frame::Event(_), _)))));
    // An unknown type is refused before its body arrives.
    assert_eq!(
        decode(&[0, 0, 1, 0, 0x47], &L),
        Err(LinkError::UnknownType(0x47))
    );
}

#[test]
fn limits() {
    let encoded = |e: Event<'_>| {
        let mut out = Vec::new();
        encode(&Frame::Event(e), &mut out).unwrap();
        out
    };
    let at_limit = encoded(Event {
        hops: 4,
        dests: vec!["a", "b", "c"].into(),
        ..event()
    });
    assert!(decode(&at_limit, &L).unwrap().is_some());
    assert_eq!(
        decode(&encoded(Event { hops: 5, ..event() }), &L),
        Err(LinkError::TooManyHops { hops: 5, limit: 4 })
    );
    // Refused from the count, before the destinations are read.
    let too_many = encoded(Event {
        dests: vec!["a", "b", "c", "d"].into(),
        ..event()
    });
    assert_eq!(
        decode(&too_many, &L),
        Err(LinkError::TooManyDests { count: 4, limit: 3 })
    );
    let defaults = LinkLimits::default();
    assert_eq!(defaults.frame_bytes_max, 4 * 1024 * 1024);
    assert_eq!(defaults.hops_max, 16);
    assert_eq!(defaults.dests_max, 64);
}

#[test]
fn encode_errors_leave_the_batch_intact() {
    let mut out = Vec::new();
    encode(&Frame::Ping { nonce: 1 }, &mut out).unwrap();
    let before = out.clone();
    let long = "x".repeat(70_000);
    assert_eq!(
        encode(
            &Frame::Event(Event {
                topic: &long,
                ..event()
            }),
            &mut out
        ),
        Err(EncodeError::FieldTooLong {
            field: "topic",
            len: 70_000
        })
    );
    let many = vec![("k", "v"); 70_000];
    assert_eq!(
        encode(
            &Frame::Event(Event {
                meta: LinkMeta {
                    user_properties: many,
                    ..LinkMeta::default()
                },
                ..event()
            }),
            &mut out
        ),
        Err(EncodeError::TooManyItems {
            field: "user properties",
            count: 70_000
        })
    );
    assert_eq!(out, before);
}

#[test]
fn hello_checks() {
    let ours = Hello {
        version: LINK_VERSION,
        router_id: "r1",
        mesh: "prod",
    };
    let theirs = |version, router_id, mesh| {
        Frame::Hello(Hello {
            version,
            router_id,
            mesh,
        })
    };
    assert_eq!(
        check_hello(&ours, &theirs(LINK_VERSION, "r2", "prod")),
        Ok(())
    );
    assert_eq!(
        check_hello(&ours, &Frame::Ping { nonce: 0 }),
        Err(HelloError::NotHello("ping"))
    );
    assert_eq!(
        check_hello(&ours, &theirs(LINK_VERSION + 1, "r2", "prod")),
        Err(HelloError::VersionMismatch {
            peer: "r2".into(),
            ours: LINK_VERSION,
            theirs: LINK_VERSION + 1
        })
    );
    assert_eq!(
        check_hello(&ours, &theirs(LINK_VERSION, "r2", "staging")),
        Err(HelloError::MeshMismatch {
            peer: "r2".into(),
            ours: "prod".into(),
            theirs: "staging".into()
        })
    );
    assert_eq!(
        check_hello(&ours, &theirs(LINK_VERSION, "r1", "prod")),
        Err(HelloError::SameRouterId("r1".into()))
    );
    let too_long = "x".repeat(ROUTER_ID_MAX + 1);
    for bad in ["", "has space", "tab\t", "é", &too_long] {
        assert!(
            matches!(
                check_hello(&ours, &theirs(LINK_VERSION, bad, "prod")),
                Err(HelloError::BadRouterId(_))
            ),
            "{bad:?}"
        );
    }
    assert!(valid_router_id(&"x".repeat(ROUTER_ID_MAX)));
    // An invalid id is reported before a version mismatch, and shown
    // bounded.
    let huge = "y".repeat(10_000);
    let Err(HelloError::BadRouterId(shown)) = check_hello(&ours, &theirs(9, &huge, "x")) else {
        panic!("expected BadRouterId");
    };
    assert_eq!(shown.len(), ROUTER_ID_MAX + 1);
    // The log line names both sides.
    let line = check_hello(&ours, &theirs(LINK_VERSION, "r2", "staging"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        line,
        "link refused: peer router \"r2\" is in mesh \"staging\", \
         this router is in mesh \"prod\""
    );
}

/// Mutated and random input from a hostile or broken peer: decoding
/// never panics, never claims more bytes than it was given, and what it
/// accepts re-encodes to exactly the bytes it came from (canonical).
#[test]
fn hostile_input_never_panics() {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for f in [
        Frame::Hello(Hello {
            version: LINK_VERSION,
            router_id: "r1",
            mesh: "prod",
        }),
        Frame::InterestAdd {
            filter: "a/+/#",
            group: Some("g"),
            origin: "r2",
            distance: 3,
        },
        Frame::Event(Event {
            meta: full_meta(),
            groups: vec![("r3", "g")].into(),
            ..event()
        }),
        Frame::Ack { seq: 9 },
        Frame::Close { reason: "bye" },
        Frame::Topology(topology_record()),
    ] {
        let mut out = Vec::new();
        encode(&f, &mut out).unwrap();
        seeds.push(out);
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut accepted = 0;
    for round in 0..200_000u32 {
        let mut bytes = seeds[round as usize % seeds.len()].clone();
        match next() % 4 {
            // Flip a few bytes.
            0 | 1 => {
                for _ in 0..=(next() % 4) {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            // Truncate, keeping the prefix's claimed length.
            2 => bytes.truncate((next() as usize) % bytes.len()),
            // Pure noise.
            _ => {
                bytes = (0..(next() % 64)).map(|_| next() as u8).collect();
            }
        }
        if let Ok(Some((frame, used))) = decode(&bytes, &L) {
            assert!(used <= bytes.len());
            let mut again = Vec::new();
            encode(&frame, &mut again).unwrap();
            assert_eq!(again, bytes[..used], "round {round}");
            accepted += 1;
        }
    }
    // The mutations left some frames valid: the check above ran.
    assert!(accepted > 1000, "{accepted}");
}

#[test]
fn event_lists_are_views_of_the_frame() {
    let mut out = Vec::new();
    let frame = Frame::Event(Event {
        dests: vec!["r2", "r3"].into(),
        groups: vec![("r5", "w")].into(),
        ..event()
    });
    encode(&frame, &mut out).unwrap();
    let (Frame::Event(e), _) = decode(&out, &L).unwrap().unwrap() else {
        panic!("an event")
    };
    assert!(matches!(e.dests, Strs::Wire { count: 2, .. }));
    assert!(matches!(e.groups, Pairs::Wire { count: 1, .. }));
    assert_eq!(e.dests.iter().collect::<Vec<_>>(), ["r2", "r3"]);
    assert_eq!(e.dests.only(), None);
    assert_eq!(e.groups.iter().collect::<Vec<_>>(), [("r5", "w")]);
    assert_eq!(encoded_len(&Frame::Event(e.clone())), out.len());
    // Encoded from the view: the same bytes.
    let mut again = Vec::new();
    encode(&Frame::Event(e), &mut again).unwrap();
    assert_eq!(again, out);
    // Borrowed from owned strings: equal to the same items in any form.
    let owned = ["B".to_owned()];
    assert_eq!(Strs::Strings(&owned).only(), Some("B"));
    assert_eq!(Strs::Strings(&owned), Strs::from(vec!["B"]));
    let pairs = [("B".to_owned(), "g".to_owned())];
    assert_eq!(Pairs::Strings(&pairs), Pairs::from(vec![("B", "g")]));
    assert_eq!(format!("{:?}", Strs::Strings(&owned)), r#"["B"]"#);
}

#[test]
fn event_list_with_bad_utf8_is_refused() {
    let mut out = Vec::new();
    encode(&Frame::Event(event()), &mut out).unwrap();
    // The one destination "r2" starts after prefix, type, id, seq, the
    // origin (u16 + "r1"), hops and the count.
    let at = out.windows(2).position(|w| w == b"r2").unwrap();
    out[at] = 0xff;
    assert_eq!(decode(&out, &L), Err(LinkError::BadUtf8));
}
