//! The HTTP machine driven with no socket and a virtual clock.

use super::*;
use crate::session::Action;

fn machine(now: Instant) -> HttpSession {
    HttpSession::new(HttpLimits::default(), TopicLimits::default(), now)
}

/// Feeds `bytes` whole; the actions and the bytes used.
fn feed(m: &mut HttpSession, bytes: &[u8], now: Instant) -> (Actions<Request>, usize) {
    let mut out = Actions::default();
    let mut at = 0;
    loop {
        match m.feed(&bytes[at..], now, &mut out) {
            Ok(Some(used)) => at += used,
            Ok(None) => break,
            Err(e) => {
                m.malformed(&e, now, &mut out);
                break;
            }
        }
    }
    (out, at)
}

fn written(out: &Actions<Request>) -> String {
    let mut text = Vec::new();
    for a in &out.list {
        if let Action::Write { from, to } = a {
            text.extend_from_slice(&out.bytes[*from..*to]);
        }
    }
    String::from_utf8(text).unwrap()
}

fn requests(out: Actions<Request>) -> Vec<Request> {
    out.list
        .into_iter()
        .filter_map(|a| match a {
            Action::Request(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_publish_asks_the_router_with_its_topic_qos_and_content_type() {
    let now = Instant::now();
    let mut m = machine(now);
    let req = b"POST /v1/topics/a%2Fb?qos=0&retain=true HTTP/1.1\r\nContent-Type: text/plain\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\nhi";
    let (out, used) = feed(&mut m, req, now);
    assert_eq!(used, req.len());
    let [Request::Publish(p)] = &requests(out)[..] else {
        panic!("one publish")
    };
    let [event] = &p.events[..] else {
        panic!("one event")
    };
    assert_eq!(event.topic(), "a/b");
    assert_eq!(event.payload(), b"hi");
    assert_eq!((event.qos, event.retain), (0, true));
    let meta = event.meta.as_ref().unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.authorization.as_deref(), Some(&b"Bearer t"[..]));
}

#[test]
fn accepted_then_keep_alive_or_close_as_asked() {
    let now = Instant::now();
    let mut m = machine(now);
    let (_, _) = feed(&mut m, b"POST /v1/topics/a HTTP/1.1\r\n\r\n", now);
    let mut out = Actions::default();
    m.answer(Answer::Accepted, now, &mut out);
    assert!(written(&out).starts_with("HTTP/1.1 202 Accepted\r\n"));
    assert_eq!(out.closed(), None);
    let (_, _) = feed(
        &mut m,
        b"POST /v1/topics/a HTTP/1.1\r\nConnection: close\r\n\r\n",
        now,
    );
    let mut out = Actions::default();
    m.answer(Answer::Accepted, now, &mut out);
    assert!(written(&out).contains("Connection: close"));
    assert_eq!(out.closed(), Some(CloseReason::ClientDisconnect));
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let now = Instant::now();
    let mut m = machine(now);
    let two = b"POST /v1/topics/x HTTP/1.1\r\nContent-Length: 1\r\n\r\n1POST /v1/topics/y HTTP/1.1\r\nContent-Length: 1\r\n\r\n2";
    let (out, used) = feed(&mut m, two, now);
    assert_eq!(used, two.len());
    let topics: Vec<_> = requests(out)
        .into_iter()
        .map(|r| match r {
            Request::Publish(p) => p.events[0].topic().to_string(),
            r => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(topics, ["x", "y"]);
}

#[test]
fn bad_requests_get_their_problem_and_the_connection_goes_on() {
    let now = Instant::now();
    let cases: [(&[u8], &str); 7] = [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", "404"),
        (b"GET /v1/topics/a HTTP/1.1\r\n\r\n", "405"),
        (b"POST /v1/subscribe HTTP/1.1\r\n\r\n", "405"),
        (b"POST /v1/topics/a/%2B HTTP/1.1\r\n\r\n", "400"),
        (b"POST /v1/topics/a?qos=2 HTTP/1.1\r\n\r\n", "400"),
        (b"GET /v1/subscribe HTTP/1.1\r\n\r\n", "400"),
        (
            b"GET /v1/subscribe?filter=a HTTP/1.1\r\nAccept: application/json\r\n\r\n",
            "406",
        ),
    ];
    for (req, status) in cases {
        let mut m = machine(now);
        let (out, _) = feed(&mut m, req, now);
        let text = written(&out);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{}: {text}",
            String::from_utf8_lossy(req)
        );
        assert!(text.contains("application/problem+json"), "{text}");
        assert_eq!(out.closed(), None, "{text}");
        assert!(requests(out).is_empty());
    }
}

#[test]
fn unframeable_requests_close_with_their_problem() {
    let now = Instant::now();
    let mut m = machine(now);
    let (out, _) = feed(
        &mut m,
        b"POST /v1/topics/a HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        now,
    );
    assert!(written(&out).starts_with("HTTP/1.1 413 "));
    assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
}

#[test]
fn subscribe_in_either_dialect_with_resume() {
    let now = Instant::now();
    let mut m = machine(now);
    let req = b"GET /v1/subscribe?filter=a%2F%2B&subject=b.%3E&last_event_id=5 HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n";
    let (out, _) = feed(&mut m, req, now);
    let [Request::Subscribe(s)] = &requests(out)[..] else {
        panic!("one subscribe")
    };
    assert_eq!(&s.filters[..], [Box::from("a/+"), Box::from("b/+/#")]);
    assert_eq!(s.after, Some(5));
    let req = b"GET /v1/subscribe?filter=a HTTP/1.1\r\nLast-Event-ID: 9\r\n\r\n";
    let (out, _) = feed(&mut machine(now), req, now);
    let [Request::Subscribe(s)] = &requests(out)[..] else {
        panic!("one subscribe")
    };
    assert_eq!(s.after, Some(9));
}

#[test]
fn a_stream_beats_and_ignores_what_the_client_sends() {
    let now = Instant::now();
    let mut m = machine(now);
    feed(
        &mut m,
        b"GET /v1/subscribe?filter=%23 HTTP/1.1\r\n\r\n",
        now,
    );
    let mut out = Actions::default();
    m.answer(Answer::Stream, now, &mut out);
    assert!(written(&out).contains("text/event-stream"));
    let beat = m.next_deadline().unwrap();
    assert_eq!(beat, now + Duration::from_millis(15_000));
    let mut out = Actions::default();
    m.handle_timeout(beat, &mut out);
    assert_eq!(written(&out), ": heartbeat\n\n");
    assert!(m.next_deadline().unwrap() > beat);
    let (out, used) = feed(&mut m, b"GET / HTTP/1.1\r\n\r\n", beat);
    assert_eq!(used, 18);
    assert!(out.list.is_empty());
}

#[test]
fn an_idle_connection_closes_after_its_keep_alive() {
    let now = Instant::now();
    let mut m = machine(now);
    let at = m.next_deadline().unwrap();
    assert_eq!(at, now + Duration::from_millis(60_000));
    let mut out = Actions::default();
    m.handle_timeout(at, &mut out);
    assert_eq!(out.closed(), Some(CloseReason::KeepAliveTimeout));
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn cloudevents_in_every_mode_and_their_errors() {
    let now = Instant::now();
    let binary = b"POST /v1/topics/ce HTTP/1.1\r\nce-specversion: 1.0\r\nce-id: 1\r\nce-source: /s\r\nce-type: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
    let (out, _) = feed(&mut machine(now), binary, now);
    let [Request::Publish(p)] = &requests(out)[..] else {
        panic!("one publish")
    };
    let meta = p.events[0].meta.as_ref().unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert!(meta
        .user_properties
        .iter()
        .any(|(k, v)| &**k == "id" && &**v == "1"));
    let batch = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t"}]"#;
    let req = [
        format!("POST /v1/topics/ce HTTP/1.1\r\nContent-Type: application/cloudevents-batch+json\r\nContent-Length: {}\r\n\r\n", batch.len()).as_bytes(),
        batch,
    ]
    .concat();
    let (out, _) = feed(&mut machine(now), &req, now);
    let [Request::Publish(p)] = &requests(out)[..] else {
        panic!("one publish")
    };
    assert_eq!(p.events.len(), 2);
    let cases: [(&str, &[u8], &str); 3] = [
        ("application/cloudevents+json", b"{not json", "400"),
        ("application/cloudevents+xml", b"<x/>", "415"),
        (
            "application/cloudevents+json",
            br#"{"specversion":"1.0","id":"1"}"#,
            "422",
        ),
    ];
    for (content_type, body, status) in cases {
        let req = [
            format!("POST /v1/topics/ce HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            body,
        ]
        .concat();
        let (out, _) = feed(&mut machine(now), &req, now);
        let text = written(&out);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert!(requests(out).is_empty());
    }
}

fn bytes(out: &Actions<Request>) -> Vec<u8> {
    let mut all = Vec::new();
    for a in &out.list {
        if let Action::Write { from, to } = a {
            all.extend_from_slice(&out.bytes[*from..*to]);
        }
    }
    all
}

/// A client's (masked) frame.
fn client_frame(opcode: crate::ws::frame::Opcode, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    crate::ws::frame::encode_frame(&mut f, true, opcode, payload, Some([1, 2, 3, 4]));
    f
}

const UPGRADE: &[u8] = b"GET /v1/subscribe?filter=a%2F%2B HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A machine with its WebSocket stream open (the 101 checked).
fn upgraded(now: Instant) -> HttpSession {
    let mut m = machine(now);
    let (out, used) = feed(&mut m, UPGRADE, now);
    assert_eq!(used, UPGRADE.len());
    let [Request::Subscribe(s)] = &requests(out)[..] else {
        panic!("one subscribe")
    };
    assert!(s.websocket);
    assert_eq!(&s.filters[..], [Box::from("a/+")]);
    let mut out = Actions::default();
    m.answer(Answer::Stream, now, &mut out);
    let head = written(&out);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    // RFC 6455 §1.3's example key and answer.
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_eq!(out.closed(), None);
    m
}

#[test]
fn a_websocket_subscribe_pings_answers_pings_and_closes_with_1000() {
    use crate::ws::frame::Opcode;
    let now = Instant::now();
    let mut m = upgraded(now);
    let beat = m.next_deadline().unwrap();
    assert_eq!(beat, now + Duration::from_millis(15_000));
    let mut out = Actions::default();
    m.handle_timeout(beat, &mut out);
    assert_eq!(bytes(&out), [0x89, 0x00], "an empty ping");
    // A ping split over two reads: answered once whole.
    let ping = client_frame(Opcode::Ping, b"hey");
    let (out, used) = feed(&mut m, &ping[..3], beat);
    assert_eq!((used, out.list.len()), (0, 0));
    let (out, used) = feed(&mut m, &ping, beat);
    assert_eq!(used, ping.len());
    assert_eq!(bytes(&out), b"\x8a\x03hey", "its pong");
    let (out, used) = feed(&mut m, &client_frame(Opcode::Pong, b""), beat);
    assert_eq!((used, out.list.len()), (6, 0));
    let close = client_frame(Opcode::Close, &1001u16.to_be_bytes());
    let (out, _) = feed(&mut m, &close, beat);
    assert_eq!(bytes(&out), [0x88, 0x02, 0x03, 0xe8], "close 1000");
    assert_eq!(out.closed(), Some(CloseReason::ClientDisconnect));
}

#[test]
fn a_websocket_subscribe_refuses_bad_frames_and_client_data() {
    use crate::ws::frame::Opcode;
    let now = Instant::now();
    let close_code = |out: &Actions<Request>| {
        let b = bytes(out);
        assert_eq!(b[0], 0x88, "a close frame: {b:?}");
        u16::from_be_bytes([b[2], b[3]])
    };
    // Unmasked: 1002.
    let mut m = upgraded(now);
    let mut unmasked = Vec::new();
    crate::ws::frame::encode(&mut unmasked, Opcode::Ping, b"");
    let (out, _) = feed(&mut m, &unmasked, now);
    assert_eq!(close_code(&out), 1002);
    assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
    // Text, binary (even its header alone): 1003.
    let text = client_frame(Opcode::Text, b"hello");
    let binary = client_frame(Opcode::Binary, &[0; 300]);
    for frame in [&text[..], &binary[..], &binary[..8]] {
        let mut m = upgraded(now);
        let (out, used) = feed(&mut m, frame, now);
        assert_eq!(used, frame.len());
        assert_eq!(close_code(&out), 1003);
        assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
    }
    // Ended elsewhere: a close frame says why, once.
    let mut m = upgraded(now);
    let mut out = Actions::default();
    m.closing(CloseReason::ServerShutdown, &mut out);
    assert_eq!(close_code(&out), 1001);
    let mut out = Actions::default();
    m.closing(CloseReason::PeerClosed, &mut out);
    assert!(out.list.is_empty());
}

#[test]
fn bad_websocket_upgrades_get_400_or_426_and_the_connection_goes_on() {
    let now = Instant::now();
    let version = b"GET /v1/subscribe?filter=a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let no_key = b"GET /v1/subscribe?filter=a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let no_connection = b"GET /v1/subscribe?filter=a HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let no_filter = b"GET /v1/subscribe HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let cases: [(&[u8], &str); 4] = [
        (version, "426"),
        (no_key, "400"),
        (no_connection, "400"),
        (no_filter, "400"),
    ];
    for (req, status) in cases {
        let mut m = machine(now);
        let (out, _) = feed(&mut m, req, now);
        let text = written(&out);
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert_eq!(
            text.contains("Sec-WebSocket-Version: 13\r\n"),
            status == "426",
            "{text}"
        );
        assert!(requests(out).is_empty());
        // Not upgraded: the next request is HTTP.
        let (out, _) = feed(&mut m, b"GET /nowhere HTTP/1.1\r\n\r\n", now);
        assert!(written(&out).starts_with("HTTP/1.1 404 "));
    }
}
