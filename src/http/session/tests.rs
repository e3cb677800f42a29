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
