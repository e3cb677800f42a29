//! EXPLAIN frames: round trips, malformed and bounded replies.

use super::*;

fn explain() -> Explain<'static> {
    Explain {
        origin: "a",
        request: 7,
        seek: None,
        hops: 1,
        budget_ms: 1500,
        topic: "eu/x",
        dests: vec!["b", "c"],
    }
}

#[test]
fn explain_frames_round_trip() {
    round_trip(Frame::Explain(explain()));
    round_trip(Frame::Explain(Explain {
        seek: Some("c"),
        dests: Vec::new(),
        ..explain()
    }));
    round_trip(Frame::ExplainReply {
        origin: "a",
        request: 7,
        body: br#"{"routers":[],"unreached":[]}"#,
    });
    round_trip(Frame::ExplainReply {
        origin: "a",
        request: u64::MAX,
        body: b"",
    });
}

#[test]
fn explain_frames_malformed_and_bounded() {
    let encoded = |f: Frame<'_>| {
        let mut out = Vec::new();
        encode(&f, &mut out).unwrap();
        out
    };
    // Reserved flag bits.
    let mut bytes = encoded(Frame::Explain(explain()));
    bytes[PREFIX_LEN + 1] = 0x80;
    assert_eq!(
        decode(&bytes, &L),
        Err(LinkError::BadFlags {
            kind: kind::EXPLAIN,
            flags: 0x80
        })
    );
    // More destinations or hops than the limits.
    let many = Frame::Explain(Explain {
        dests: vec!["b", "c", "d", "e"],
        ..explain()
    });
    assert_eq!(
        decode(&encoded(many), &L),
        Err(LinkError::TooManyDests { count: 4, limit: 3 })
    );
    let far = Frame::Explain(Explain {
        hops: 5,
        ..explain()
    });
    assert_eq!(
        decode(&encoded(far), &L),
        Err(LinkError::TooManyHops { hops: 5, limit: 4 })
    );
    // A reply body over `explain_reply_bytes_max`, refused from its length.
    let body = vec![b'x'; 257];
    let big = encoded(Frame::ExplainReply {
        origin: "a",
        request: 1,
        body: &body,
    });
    assert_eq!(
        decode(&big, &L),
        Err(LinkError::ExplainReplyTooLarge {
            size: 257,
            limit: 256
        })
    );
    // Truncated and trailing bodies.
    let ok = encoded(Frame::Explain(explain()));
    let body = &ok[PREFIX_LEN + 1..];
    assert_eq!(
        decode(&raw(kind::EXPLAIN, &body[..body.len() - 1]), &L),
        Err(LinkError::Truncated)
    );
    let mut longer = body.to_vec();
    longer.push(0);
    assert_eq!(
        decode(&raw(kind::EXPLAIN, &longer), &L),
        Err(LinkError::TrailingBytes)
    );
    // Past the last type this version knows: refused from the type byte.
    assert_eq!(decode(&raw(12, &[0]), &L), Err(LinkError::UnknownType(12)));
}
