//! The NATS machine with a virtual clock: no socket, no executor.

use super::*;
use crate::session::Action;

fn settings() -> Settings {
    Settings {
        limits: NatsLimits {
            control_line_bytes_max: 64,
            payload_bytes_max: 16,
        },
        topic_limits: TopicLimits::default(),
        ping_interval: Duration::from_secs(10),
        pings_outstanding_max: 2,
        connect_timeout: Duration::from_secs(5),
    }
}

fn info() -> ServerInfo {
    ServerInfo {
        server_id: "NTEST".into(),
        host: "127.0.0.1".into(),
        port: 4222,
        max_payload: 16,
        client_id: 7,
        client_ip: "10.0.0.9".into(),
        tls_required: false,
        tls_available: false,
        auth_required: false,
        nonce: None,
    }
}

/// A machine started at `t0`, with its INFO taken off.
fn started(t0: Instant) -> (NatsSession, Actions<Request>) {
    let mut s = NatsSession::new(settings(), info(), t0);
    let mut out = Actions::default();
    s.start(t0, &mut out);
    assert!(out.bytes.starts_with(b"INFO {"));
    out.clear();
    (s, out)
}

/// Decodes every operation of `input` and feeds it, as the driver does.
fn feed(s: &mut NatsSession, input: &[u8], now: Instant, out: &mut Actions<Request>) {
    let mut at = 0;
    loop {
        match s.decode(&input[at..]) {
            Ok(Some((op, used))) => {
                s.handle(op, now, out);
                at += used;
            }
            Ok(None) => break,
            Err(e) => {
                s.malformed(&e, now, out);
                break;
            }
        }
    }
}

/// The bytes the actions write, in order.
fn written(out: &Actions<Request>) -> String {
    let mut text = String::new();
    for a in &out.list {
        if let Action::Write { from, to } = a {
            text.push_str(std::str::from_utf8(&out.bytes[*from..*to]).unwrap());
        }
    }
    text
}

#[test]
fn info_announces_the_nats_server_level_and_the_client() {
    let line = info().line();
    let text = std::str::from_utf8(&line).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(text.strip_prefix("INFO ").unwrap().trim_end()).unwrap();
    assert_eq!(json["version"], NATS_SERVER_VERSION);
    assert!(json["version"].as_str().unwrap().starts_with("2."));
    assert_eq!(json["weft_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["client_id"], 7);
    assert_eq!(json["client_ip"], "10.0.0.9");
    assert_eq!(json["headers"], true);
    assert!(text.ends_with("\r\n"));
    // TLS flags only when set, as nats-server.
    assert!(json.get("tls_required").is_none() && json.get("tls_available").is_none());
}

#[test]
fn info_says_whether_tls_is_required_or_available_and_can_be_taken_off() {
    let parse = |info: ServerInfo| -> serde_json::Value {
        let line = String::from_utf8(info.line()).unwrap();
        serde_json::from_str(line.strip_prefix("INFO ").unwrap().trim_end()).unwrap()
    };
    let json = parse(ServerInfo {
        tls_required: true,
        ..info()
    });
    assert_eq!(json["tls_required"], true);
    assert!(json.get("tls_available").is_none());
    let json = parse(ServerInfo {
        tls_available: true,
        ..info()
    });
    assert_eq!(json["tls_available"], true);
    assert!(json.get("tls_required").is_none());
    // Sent before a TLS upgrade: the session then starts without it.
    let t0 = Instant::now();
    let mut s = NatsSession::new(settings(), info(), t0);
    assert!(s.take_info_line().unwrap().starts_with(b"INFO {"));
    let mut out = Actions::default();
    s.start(t0, &mut out);
    assert_eq!(written(&out), "");
}

#[test]
fn ping_is_answered_with_pong_and_verbose_acknowledges() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    feed(&mut s, b"PING\r\n", t0, &mut out);
    assert_eq!(written(&out), "PONG\r\n");
    out.clear();
    feed(
        &mut s,
        b"CONNECT {\"verbose\":true,\"echo\":false}\r\n",
        t0,
        &mut out,
    );
    assert!(matches!(
        out.list[0],
        Action::Request(Request::Connect { echo: false, .. })
    ));
    // +OK once the glue authenticated the client.
    assert_eq!(written(&out), "");
    s.authenticated(anonymous(), &mut out);
    assert_eq!(written(&out), "+OK\r\n");
    out.clear();
    feed(&mut s, b"PUB a.b 2\r\nhi\r\n", t0, &mut out);
    // +OK before the publish, as nats-server.
    assert!(matches!(out.list[0], Action::Write { .. }));
    let Action::Request(Request::Publish { event, .. }) = &out.list[1] else {
        panic!("a publish request: {:?}", out.list);
    };
    assert_eq!(event.topic(), "a/b");
    assert_eq!(event.payload(), b"hi");
}

#[test]
fn server_pings_on_its_interval_and_pong_resets_the_count() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    let interval = settings().ping_interval;
    assert_eq!(s.next_deadline(), Some(t0 + interval));
    // Before the deadline: nothing.
    s.handle_timeout(t0 + interval - Duration::from_millis(1), &mut out);
    assert!(out.list.is_empty());
    s.handle_timeout(t0 + interval, &mut out);
    assert_eq!(written(&out), "PING\r\n");
    assert_eq!(s.pings_outstanding(), 1);
    assert_eq!(s.next_deadline(), Some(t0 + interval * 2));
    out.clear();
    feed(&mut s, b"PONG\r\n", t0 + interval, &mut out);
    assert_eq!(s.pings_outstanding(), 0);
    assert!(out.list.is_empty());
}

#[test]
fn stale_after_the_unanswered_pings_in_virtual_time() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    let interval = settings().ping_interval;
    // pings_outstanding_max = 2: two PINGs go out unanswered …
    for n in 1..=2 {
        s.handle_timeout(t0 + interval * n, &mut out);
        assert_eq!(written(&out), "PING\r\n");
        assert_eq!(out.closed(), None);
        out.clear();
    }
    // … and when the third is due the connection is stale.
    s.handle_timeout(t0 + interval * 3, &mut out);
    assert_eq!(out.closed(), Some(CloseReason::StaleConnection));
    assert_eq!(written(&out), "-ERR 'Stale Connection'\r\n");
    assert!(
        matches!(out.list.last(), Some(Action::Close(_))),
        "the -ERR comes before the close: the last words"
    );
    assert_eq!(s.next_deadline(), None, "no timer after the close");
}

#[test]
fn a_zero_ping_interval_never_pings_nor_goes_stale() {
    let t0 = Instant::now();
    let mut s = NatsSession::new(
        Settings {
            ping_interval: Duration::ZERO,
            ..settings()
        },
        info(),
        t0,
    );
    let mut out = Actions::default();
    s.start(t0, &mut out);
    out.clear();
    assert_eq!(s.next_deadline(), None);
    for n in 1..=10 {
        s.handle_timeout(t0 + Duration::from_secs(3600) * n, &mut out);
    }
    assert!(out.list.is_empty(), "no PING, no close");
    assert_eq!(s.pings_outstanding(), 0);
}

#[test]
fn slow_consumer_close_gets_its_err() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    s.closing(CloseReason::SlowConsumer, &mut out);
    assert_eq!(written(&out), "-ERR 'Slow Consumer'\r\n");
    out.clear();
    // A close the client caused itself gets no words.
    let (mut s, mut out) = started(t0);
    s.closing(CloseReason::PeerClosed, &mut out);
    assert!(out.list.is_empty());
}

#[test]
fn bad_input_is_refused_with_its_err() {
    let t0 = Instant::now();
    // Each fatal error: -ERR with the text clients expect, then the close.
    for (input, words) in [
        (&b"FOO\r\n"[..], "-ERR 'Unknown Protocol Operation'\r\n"),
        (b"PUB a 17\r\n", "-ERR 'Maximum Payload Violation'\r\n"),
        (
            &[b"SUB ".as_slice(), &[b'a'; 80], b" 1\r\n"].concat(),
            "-ERR 'Maximum Control Line Exceeded'\r\n",
        ),
        (b"CONNECT {nope}\r\n", "-ERR 'Protocol Error'\r\n"),
    ] {
        let (mut s, mut out) = started(t0);
        feed(&mut s, input, t0, &mut out);
        assert_eq!(written(&out), words, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(out.closed(), Some(CloseReason::ProtocolError));
        // After the close, the machine does nothing more.
        out.clear();
        feed(&mut s, b"PING\r\n", t0, &mut out);
        assert!(out.list.is_empty());
    }
    // Invalid subjects are refused and the connection stays open.
    let (mut s, mut out) = started(t0);
    feed(&mut s, b"PUB a.* 1\r\nx\r\nSUB a..b 1\r\n", t0, &mut out);
    assert_eq!(
        written(&out),
        "-ERR 'Invalid Publish Subject'\r\n-ERR 'Invalid Subject'\r\n"
    );
    assert_eq!(out.closed(), None);
    assert!(!out.list.iter().any(|a| matches!(a, Action::Request(_))));
}

#[test]
fn subscribe_is_answered_by_the_router() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    feed(&mut s, b"CONNECT {\"verbose\":true}\r\n", t0, &mut out);
    out.clear();
    feed(&mut s, b"SUB a.> q 1\r\n", t0, &mut out);
    let Some(Action::Request(Request::Subscribe {
        sid, filter, queue, ..
    })) = out.list.last()
    else {
        panic!("a subscribe request, last: {:?}", out.list);
    };
    assert_eq!(
        (&**sid, filter.as_str(), queue.as_deref()),
        ("1", "a/+/#", Some("q"))
    );
    assert_eq!(written(&out), "", "no +OK before the router's answer");
    s.subscribed(Subscribed::Yes, &mut out);
    assert_eq!(written(&out), "+OK\r\n");
    out.clear();
    s.subscribed(Subscribed::TooMany, &mut out);
    assert_eq!(written(&out), "-ERR 'Maximum Subscriptions Exceeded'\r\n");
    assert_eq!(out.closed(), None);
}

#[test]
fn request_without_responders_gets_a_503_from_the_router() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    feed(
        &mut s,
        b"CONNECT {\"headers\":true,\"no_responders\":true}\r\nPUB svc _INBOX.x 0\r\n\r\n",
        t0,
        &mut out,
    );
    let Some(Action::Request(Request::Publish {
        event,
        answer_undelivered: true,
    })) = out.list.last()
    else {
        panic!("a publish asking for an answer: {:?}", out.list);
    };
    let event = event.clone();
    out.clear();
    s.undelivered(&event, &mut out);
    let Some(Action::Request(Request::RouterPublish(status))) = out.list.last() else {
        panic!("a router publish: {:?}", out.list);
    };
    assert_eq!(status.topic(), "_INBOX/x");
    assert_eq!(status.headers(), Some(NO_RESPONDERS));
    assert_eq!(status.origin, crate::event::Origin::ROUTER);
    // Without the options, a request asks for nothing.
    let (mut s, mut out) = started(t0);
    feed(&mut s, b"PUB svc _INBOX.x 0\r\n\r\n", t0, &mut out);
    assert!(matches!(
        out.list.last(),
        Some(Action::Request(Request::Publish {
            answer_undelivered: false,
            ..
        }))
    ));
}

fn anonymous() -> crate::security::Identity {
    crate::security::Identity {
        user: None,
        account: "default".into(),
    }
}

#[test]
fn refused_credentials_get_authorization_violation_and_close() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    feed(
        &mut s,
        b"CONNECT {\"verbose\":true,\"user\":\"u\",\"pass\":\"p\"}\r\n",
        t0,
        &mut out,
    );
    let Action::Request(Request::Connect { credentials, .. }) = &out.list[0] else {
        panic!("a connect request: {:?}", out.list);
    };
    assert_eq!(credentials.username.as_deref(), Some("u"));
    assert_eq!(credentials.password.as_deref(), Some(&b"p"[..]));
    out.clear();
    s.refused(crate::security::Refusal::BadCredentials, &mut out);
    assert_eq!(written(&out), "-ERR 'Authorization Violation'\r\n");
    assert!(out
        .list
        .iter()
        .any(|a| matches!(a, Action::Close(CloseReason::ConnectRefused))));
    assert!(s.identity().is_none());
}

/// Authorization: nats-server's `-ERR` texts, the connection kept, the
/// denial counted, and a wide subscription marked checked.
#[test]
fn permission_violations_keep_the_connection() {
    use crate::config::{RulesConfig, SecurityConfig};
    use crate::security::{Denied, Permissions};
    let c = SecurityConfig {
        anonymous: RulesConfig {
            allow: Vec::new(),
            deny: vec!["secret.>".into()],
        },
        ..SecurityConfig::default()
    };
    let grants = Permissions::from_config(&c)
        .unwrap()
        .grants(None, "n")
        .unwrap();
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    s.authorized(grants);
    let denied = |out: &Actions<Request>| -> Vec<Denied> {
        out.list
            .iter()
            .filter_map(|a| match a {
                Action::Request(Request::Denied(d)) => Some(*d),
                _ => None,
            })
            .collect()
    };
    feed(&mut s, b"PUB secret.a 1\r\nx\r\n", t0, &mut out);
    assert_eq!(
        written(&out),
        "-ERR 'Permissions Violation for Publish to \"secret.a\"'\r\n"
    );
    assert_eq!(denied(&out), vec![Denied::Publish]);
    assert_eq!(out.closed(), None);
    out.clear();
    feed(
        &mut s,
        b"SUB secret.> 1\r\nSUB secret.x q 2\r\n",
        t0,
        &mut out,
    );
    assert_eq!(
        written(&out),
        "-ERR 'Permissions Violation for Subscription to \"secret.>\"'\r\n\
         -ERR 'Permissions Violation for Subscription to \"secret.x\" using queue \"q\"'\r\n"
    );
    assert_eq!(denied(&out), vec![Denied::Subscribe; 2]);
    out.clear();
    // Wide: granted and checked; narrow: granted plainly; allowed PUB
    // routed.
    feed(
        &mut s,
        b"SUB > 3\r\nSUB open.x 4\r\nPUB open.x 1\r\nx\r\n",
        t0,
        &mut out,
    );
    let marks: Vec<(&str, bool)> = out
        .list
        .iter()
        .filter_map(|a| match a {
            Action::Request(Request::Subscribe { sid, checked, .. }) => Some((&**sid, *checked)),
            _ => None,
        })
        .collect();
    assert_eq!(marks, vec![("3", true), ("4", false)]);
    assert!(out
        .list
        .iter()
        .any(|a| matches!(a, Action::Request(Request::Publish { .. }))));
    assert!(written(&out).is_empty());
}

#[test]
fn info_carries_auth_required_and_the_nonce_only_when_set() {
    let plain = String::from_utf8(info().line()).unwrap();
    assert!(
        !plain.contains("auth_required") && !plain.contains("nonce"),
        "{plain}"
    );
    let secured = ServerInfo {
        auth_required: true,
        nonce: Some("abc_-123".into()),
        ..info()
    };
    let line = String::from_utf8(secured.line()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(line.strip_prefix("INFO ").unwrap().trim_end()).unwrap();
    assert_eq!(json["auth_required"], true);
    assert_eq!(json["nonce"], "abc_-123");
}

#[test]
fn with_auth_required_nothing_but_connect_comes_first() {
    let t0 = Instant::now();
    for first in [&b"PING\r\n"[..], b"SUB a 1\r\n", b"PUB a 1\r\nx\r\n"] {
        let mut s = NatsSession::new(
            settings(),
            ServerInfo {
                auth_required: true,
                ..info()
            },
            t0,
        );
        let mut out = Actions::default();
        s.start(t0, &mut out);
        out.clear();
        feed(&mut s, first, t0, &mut out);
        assert_eq!(written(&out), "-ERR 'Authorization Violation'\r\n");
        assert!(out
            .list
            .iter()
            .any(|a| matches!(a, Action::Close(CloseReason::ConnectRefused))));
        assert!(!out.list.iter().any(|a| matches!(a, Action::Request(_))));
    }
    // CONNECT first: then anything.
    let mut s = NatsSession::new(
        settings(),
        ServerInfo {
            auth_required: true,
            ..info()
        },
        t0,
    );
    let mut out = Actions::default();
    s.start(t0, &mut out);
    out.clear();
    feed(&mut s, b"CONNECT {\"auth_token\":\"t\"}\r\n", t0, &mut out);
    assert!(matches!(
        out.list[0],
        Action::Request(Request::Connect { .. })
    ));
    s.authenticated(anonymous(), &mut out);
    out.clear();
    feed(&mut s, b"PING\r\n", t0, &mut out);
    assert_eq!(written(&out), "PONG\r\n");
    // Without auth required, a PING before CONNECT is answered (as before).
    let (mut s, mut out) = started(t0);
    feed(&mut s, b"PING\r\n", t0, &mut out);
    assert_eq!(written(&out), "PONG\r\n");
}

/// Where authentication is required, CONNECT is due within the connect
/// timeout (nats-server's auth timeout); once it came, only PINGs keep
/// time. Without authentication there is no such deadline.
#[test]
fn authentication_is_due_within_the_connect_timeout() {
    let t0 = Instant::now();
    let timeout = settings().connect_timeout;
    let auth = ServerInfo {
        auth_required: true,
        ..info()
    };
    let mut s = NatsSession::new(settings(), auth.clone(), t0);
    let mut out = Actions::default();
    s.start(t0, &mut out);
    out.clear();
    assert_eq!(s.next_deadline(), Some(t0 + timeout));
    s.handle_timeout(t0 + timeout - Duration::from_millis(1), &mut out);
    assert!(out.list.is_empty(), "not yet");
    s.handle_timeout(t0 + timeout, &mut out);
    assert_eq!(written(&out), "-ERR 'Authentication Timeout'\r\n");
    assert_eq!(out.closed(), Some(CloseReason::ConnectTimeout));

    // CONNECT in time: the deadline is gone.
    let mut s = NatsSession::new(settings(), auth, t0);
    let mut out = Actions::default();
    s.start(t0, &mut out);
    feed(&mut s, b"CONNECT {\"user\":\"u\"}\r\n", t0, &mut out);
    out.clear();
    assert_eq!(s.next_deadline(), Some(t0 + settings().ping_interval));
    s.handle_timeout(t0 + timeout, &mut out);
    assert!(out.list.is_empty());

    // No authentication: PINGs only, as before.
    let (s, _) = started(t0);
    assert_eq!(s.next_deadline(), Some(t0 + settings().ping_interval));
}

/// A PUB's event is built in one pass (`nats::publish`): its topic is the
/// subject's internal form, as `subject::to_internal` gives it, for the
/// usual subjects and the escaped ones alike; the refused ones are
/// answered and publish nothing.
#[test]
fn publish_builds_the_event_of_the_internal_topic() {
    let t0 = Instant::now();
    let (mut s, mut out) = started(t0);
    let input = b"PUB a.b.c 1\r\nx\r\nPUB a.b//c 1\r\ny\r\nPUB /.a 1\r\nz\r\n\
                  PUB a..b 1\r\nw\r\nPUB $SYS.x r.1 2\r\nhi\r\n";
    feed(&mut s, input, t0, &mut out);
    let published: Vec<(String, Vec<u8>, Option<String>)> = out
        .list
        .iter()
        .filter_map(|a| match a {
            Action::Request(Request::Publish { event, .. }) => Some((
                event.topic().to_string(),
                event.payload().to_vec(),
                event.reply().map(String::from),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        published,
        [
            ("a/b/c".to_string(), b"x".to_vec(), None),
            ("a/b.c".to_string(), b"y".to_vec(), None),
            ("/a".to_string(), b"z".to_vec(), None),
            (
                "$SYS/x".to_string(),
                b"hi".to_vec(),
                Some("r.1".to_string())
            ),
        ]
    );
    assert_eq!(written(&out), "-ERR 'Invalid Publish Subject'\r\n");
    assert_eq!(out.closed(), None);
}
