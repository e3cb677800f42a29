//! The NATS session machine, `weft::nats::session`, fed a script (see
//! [`crate::script`]): the client's bytes, decoded and handled as the
//! connection driver does, virtual time passing (`handle_timeout` once
//! `next_deadline` has come: server PINGs, the stale-connection rule), and
//! closes decided by the driver (`closing`). SUB is answered as the glue
//! does (`subscribed`, yes or too many: the script chooses), and a request
//! that reached no one gets its no-responders answer (`undelivered`) when
//! the script says so.
//!
//! Properties, after every call:
//! - what the machine writes is whole server lines a client parses: INFO
//!   with a JSON object, PING, PONG, +OK, `-ERR '<text>'` (the text
//!   without quote or line break);
//! - a `Close` is the last action of its call, and there is at most one;
//!   a `Subscribe` request is last too (the contract: its answer follows);
//! - once closed, no call yields any action;
//! - after `handle_timeout(now)`, `next_deadline` is None or after `now`;
//! - unanswered server PINGs never exceed `pings_outstanding_max`;
//! - no panic.

use std::time::{Duration, Instant};

use weft::nats::codec::NatsLimits;
use weft::nats::session::{NatsSession, Request, ServerInfo, Settings, Subscribed};
use weft::session::{Action, Actions, CloseReason, Deadline, Machine};
use weft::topic::TopicLimits;

use crate::script::{Script, Seed, Step};

const SETTINGS: Settings = Settings {
    limits: NatsLimits {
        control_line_bytes_max: 128,
        payload_bytes_max: 256,
    },
    topic_limits: TopicLimits {
        topic_bytes_max: 64,
        topic_levels_max: 8,
    },
    ping_interval: Duration::from_secs(2),
    pings_outstanding_max: 2,
    connect_timeout: Duration::from_secs(5),
};

const DRIVER_CLOSES: [CloseReason; 5] = [
    CloseReason::PeerClosed,
    CloseReason::ReadError,
    CloseReason::WriteError,
    CloseReason::SlowConsumer,
    CloseReason::ServerShutdown,
];

/// Checks that `bytes` are whole server lines.
fn server_lines(bytes: &[u8]) {
    assert!(!bytes.is_empty(), "an empty write");
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{bytes:?}: {e}"));
    assert!(text.ends_with("\r\n"), "whole lines: {text:?}");
    for line in text[..text.len() - 2].split("\r\n") {
        assert!(!line.contains(['\r', '\n']), "{line:?}");
        if let Some(info) = line.strip_prefix("INFO ") {
            assert!(info.starts_with('{') && info.ends_with('}'), "{line:?}");
        } else if let Some(message) = line.strip_prefix("-ERR '") {
            let message = message
                .strip_suffix('\'')
                .unwrap_or_else(|| panic!("{line:?}"));
            assert!(!message.is_empty() && !message.contains('\''), "{line:?}");
        } else {
            assert!(matches!(line, "PING" | "PONG" | "+OK"), "{line:?}");
        }
    }
}

struct Run<'a> {
    s: NatsSession,
    script: Script<'a>,
    closed: bool,
}

impl Run<'_> {
    fn after(&mut self, out: Actions<Request>) {
        if self.closed {
            assert!(
                out.list.is_empty(),
                "actions after the close: {:?}",
                out.list
            );
            return;
        }
        let last = out.list.len().saturating_sub(1);
        for (i, action) in out.list.iter().enumerate() {
            match action {
                Action::Write { from, to } => server_lines(&out.bytes[*from..*to]),
                Action::Close(_) => assert_eq!(i, last, "a close is last: {:?}", out.list),
                Action::Request(Request::Subscribe { .. }) => {
                    assert_eq!(i, last, "a subscribe is last: {:?}", out.list)
                }
                Action::Request(_) => {}
            }
        }
        assert!(self.s.pings_outstanding() <= SETTINGS.pings_outstanding_max);
        let close = out.closed();
        for action in out.list {
            let mut answer = Actions::default();
            match action {
                Action::Request(Request::Subscribe { .. }) => {
                    let yes = self.script.outcome().is_multiple_of(2);
                    let answer_is = if yes {
                        Subscribed::Yes
                    } else {
                        Subscribed::TooMany
                    };
                    self.s.subscribed(answer_is, &mut answer);
                }
                Action::Request(Request::Publish {
                    event,
                    answer_undelivered: true,
                }) => {
                    if self.script.outcome() % 2 == 1 {
                        continue; // someone got it
                    }
                    self.s.undelivered(&event, &mut answer);
                }
                _ => continue,
            }
            self.after(answer);
        }
        if close.is_some() {
            self.closed = true;
        }
    }

    fn feed(&mut self, buf: &mut Vec<u8>, bytes: &[u8], now: Instant) {
        if self.closed {
            return;
        }
        buf.extend_from_slice(bytes);
        let mut at = 0;
        while !self.closed {
            let mut out = Actions::default();
            match self.s.decode(&buf[at..]) {
                Ok(Some((op, used))) => {
                    assert!(used > 0 && at + used <= buf.len());
                    at += used;
                    self.s.handle(op, now, &mut out);
                }
                Ok(None) => break,
                Err(e) => {
                    self.s.malformed(&e, now, &mut out);
                    assert!(out.closed().is_some(), "malformed bytes close: {e}");
                }
            }
            self.after(out);
        }
        buf.drain(..at);
    }
}

pub fn check(data: &[u8]) {
    let info = ServerInfo {
        server_id: "NFUZZ".into(),
        host: "0.0.0.0".into(),
        port: 4222,
        max_payload: SETTINGS.limits.payload_bytes_max,
        client_id: 1,
        client_ip: "10.0.0.1".into(),
        tls_required: false,
        tls_available: false,
        auth_required: false,
        nonce: None,
    };
    let mut now = Instant::now();
    let mut run = Run {
        s: NatsSession::new(SETTINGS, info, now),
        script: Script::new(data),
        closed: false,
    };
    let mut out = Actions::default();
    run.s.start(now, &mut out);
    assert!(out.bytes.starts_with(b"INFO {"));
    run.after(out);
    let mut buf = Vec::new();
    while let Some(step) = run.script.step() {
        match step {
            Step::Feed(bytes) => run.feed(&mut buf, bytes, now),
            Step::Wait(d) => {
                now += d;
                if run.s.next_deadline().is_some_and(|at| at <= now) {
                    let mut out = Actions::default();
                    run.s.handle_timeout(now, &mut out);
                    if let Some(at) = run.s.next_deadline() {
                        assert!(at > now, "deadline {at:?} not after {now:?}");
                    }
                    run.after(out);
                }
            }
            Step::Close(which) => {
                let reason = DRIVER_CLOSES[usize::from(which) % DRIVER_CLOSES.len()];
                let mut out = Actions::default();
                run.s.closing(reason, &mut out);
                assert!(
                    out.list.iter().all(|a| matches!(a, Action::Write { .. })),
                    "closing writes only: {:?}",
                    out.list
                );
                if !run.closed {
                    out.close(reason);
                }
                run.after(out);
            }
            Step::Other(_) => {}
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        Seed::default()
            .feed(b"CONNECT {\"verbose\":true,\"headers\":true,\"no_responders\":true}\r\n")
            .feed(b"PING\r\n")
            .feed(b"SUB a.* q 1\r\nSUB a.> 2\r\n")
            .feed(b"PUB a.b 5\r\nhello\r\n")
            .feed(b"HPUB a.b _INBOX.r 18 23\r\nNATS/1.0\r\nk: v\r\n\r\nhello\r\n")
            .feed(b"PUB a.b _INBOX.s 0\r\n\r\n")
            .feed(b"UNSUB 1 5\r\nUNSUB 2\r\n")
            .0,
        // Server PINGs: one answered, then the connection goes stale.
        Seed::default()
            .feed(b"CONNECT {}\r\n")
            .wait(13)
            .feed(b"PONG\r\n")
            .wait(13)
            .wait(13)
            .wait(13)
            .0,
        // Rules broken: bad subjects (stay open), then a bad CONNECT.
        Seed::default()
            .feed(b"CONNECT {\"echo\":false}\r\nSUB a..b 1\r\nPUB a.* 0\r\n\r\n")
            .feed(b"CONNECT {\"verbose\":3}\r\n")
            .0,
        // A payload split over reads, then a slow consumer.
        Seed::default()
            .feed(b"PUB x.y 10\r\n01234")
            .feed(b"56789\r\nPING\r\n")
            .close(3)
            .0,
        Seed::default().feed(b"FOO bar\r\n").0,
    ]
}
