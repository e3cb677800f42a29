//! The AMQP machine in virtual time, no socket: frames built with
//! fe2o3-amqp-types + serde_amqp (and, so that the framing is not only
//! checked against itself, a few written as literal bytes from the spec),
//! fed as the driver feeds them; weft's bytes decoded back the same way.
//! The handshake and connection errors here; links and transfers in
//! `tests/links.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{Handle, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{Data, Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Close, Detach, End, MaxFrameSize, Open, Performative, Transfer,
};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use serde_amqp::primitives::{Binary, Symbol};

use super::*;
use crate::config::{RulesConfig, SecurityConfig};
use crate::security::Permissions;
use crate::session::Action;

mod links;
mod review;

/// Virtual time: `t(ms)` after a fixed origin.
fn t(ms: u64) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now) + Duration::from_millis(ms)
}

fn limits() -> AmqpLimits {
    AmqpLimits {
        max_frame_size: 1024,
        message_bytes_max: 600,
        channel_max: 3,
        handles_max: 4,
        idle_timeout_ms: 10_000,
        sender_credit: 4,
        connect_timeout_ms: 5_000,
    }
}

fn settings(anonymous: bool) -> Settings {
    Settings {
        limits: limits(),
        topic_limits: TopicLimits {
            topic_bytes_max: 256,
            topic_levels_max: 16,
        },
        anonymous,
        container_id: "weft-test".into(),
        origin: Origin::ROUTER,
        durable_supported: false,
    }
}

fn identity() -> Identity {
    Identity {
        user: Some("guest".into()),
        account: "default".into(),
    }
}

/// Grants denying `deny` both ways.
fn grants(deny: &[&str]) -> Arc<Grants> {
    let c = SecurityConfig {
        anonymous: RulesConfig {
            allow: Vec::new(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        },
        ..SecurityConfig::default()
    };
    Permissions::from_config(&c)
        .unwrap()
        .grants(None, "c")
        .unwrap()
}

/// What weft wrote, decoded (a test value: its size does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Out {
    Header([u8; 8]),
    Heartbeat,
    Mechanisms(Vec<String>),
    Outcome(SaslCode),
    Frame(u16, Performative),
}

/// One connection under test: the machine, its virtual clock, and the
/// actions of the last feed.
struct Conn {
    m: AmqpSession,
    out: Actions<Request>,
    now: Instant,
}

impl Conn {
    fn new(anonymous: bool) -> Conn {
        Conn::with(settings(anonymous))
    }

    fn with(settings: Settings) -> Conn {
        Conn {
            m: AmqpSession::new(settings, t(0)),
            out: Actions::default(),
            now: t(0),
        }
    }

    /// Feeds `bytes` as the driver does (decode, handle, repeat; bad
    /// framing goes to `malformed`), after clearing the last actions.
    fn feed(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.clear();
        let mut at = 0;
        while at < bytes.len() && self.out.closed().is_none() {
            match self.m.feed(&bytes[at..], self.now, &mut self.out) {
                Ok(Some(used)) => at += used,
                Ok(None) => break,
                Err(e) => {
                    self.m.malformed(&e, self.now, &mut self.out);
                    break;
                }
            }
        }
        self
    }

    fn send(&mut self, channel: u16, p: Performative) -> &mut Self {
        self.feed(&amqp(channel, &p))
    }

    fn written(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for a in &self.out.list {
            if let Action::Write { from, to } = a {
                bytes.extend_from_slice(&self.out.bytes[*from..*to]);
            }
        }
        bytes
    }

    fn frames(&self) -> Vec<Out> {
        decode_all(&self.written())
    }

    fn requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.out.list)
            .into_iter()
            .filter_map(|a| match a {
                Action::Request(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The condition of the close weft wrote, and that the connection
    /// closes with a protocol error.
    fn closed_with(&self) -> String {
        assert_eq!(
            self.out.closed(),
            Some(CloseReason::ProtocolError),
            "{:?}",
            self.out.list
        );
        let frames = self.frames();
        let Some(Out::Frame(0, Performative::Close(close))) = frames.last() else {
            panic!("no close frame last: {frames:?}");
        };
        condition(close.error.as_ref())
    }
}

fn condition(e: Option<&AmqpErrorList>) -> String {
    let e = e.expect("an error");
    serde_amqp::to_value(&e.condition)
        .map(|v| match v {
            serde_amqp::Value::Symbol(s) => s.0,
            other => format!("{other:?}"),
        })
        .unwrap()
}

fn amqp(channel: u16, p: &Performative) -> Vec<u8> {
    let mut b = Vec::new();
    frame::write_frame(&mut b, TYPE_AMQP, channel, p);
    b
}

fn sasl<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut b = Vec::new();
    frame::write_frame(&mut b, TYPE_SASL, 0, value);
    b
}

fn decode_all(mut bytes: &[u8]) -> Vec<Out> {
    let mut outs = Vec::new();
    while !bytes.is_empty() {
        if bytes.starts_with(b"AMQP") {
            outs.push(Out::Header(bytes[..8].try_into().unwrap()));
            bytes = &bytes[8..];
            continue;
        }
        let (packet, used) = frame::decode_frame(bytes, u32::MAX).unwrap().unwrap();
        let Packet::Frame {
            kind,
            channel,
            body,
        } = packet
        else {
            unreachable!()
        };
        outs.push(match (kind, body.is_empty()) {
            (TYPE_AMQP, true) => Out::Heartbeat,
            (TYPE_AMQP, false) => Out::Frame(channel, frame::decode_performative(body).unwrap()),
            _ if frame::descriptor_code(body) == Some(0x40) => {
                let m: SaslMechanisms = serde_amqp::from_slice(body).unwrap();
                Out::Mechanisms(
                    m.sasl_server_mechanisms
                        .0
                        .into_iter()
                        .map(|s| s.0)
                        .collect(),
                )
            }
            _ => Out::Outcome(serde_amqp::from_slice::<SaslOutcome>(body).unwrap().code),
        });
        bytes = &bytes[used..];
    }
    outs
}

fn open(max_frame_size: u32, idle_time_out: Option<u32>) -> Performative {
    Performative::Open(Open {
        container_id: "client-1".into(),
        hostname: None,
        max_frame_size: MaxFrameSize(max_frame_size),
        channel_max: ChannelMax(u16::MAX),
        idle_time_out,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })
}

fn begin() -> Performative {
    Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: 100,
        incoming_window: 50,
        outgoing_window: 1000,
        handle_max: Handle(u32::MAX),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })
}

fn plain(user: &str, pass: &str) -> Vec<u8> {
    let mut response = vec![0];
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.extend_from_slice(pass.as_bytes());
    sasl(&SaslInit {
        mechanism: Symbol::from("PLAIN"),
        initial_response: Some(Binary::from(response)),
        hostname: None,
    })
}

/// A connection past SASL PLAIN (granted `grants`), open (idle-time-out
/// `idle`), and a session on channel 1.
fn opened_with(grants: Arc<Grants>, idle: Option<u32>) -> Conn {
    let mut c = Conn::new(false);
    c.feed(&frame::SASL_HEADER).feed(&plain("guest", "secret"));
    c.m.authenticated(identity(), grants, c.now, &mut c.out);
    c.feed(&frame::AMQP_HEADER)
        .send(0, open(4096, idle))
        .send(1, begin());
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    c
}

fn opened() -> Conn {
    opened_with(Arc::new(Grants::allow_all()), None)
}

#[test]
fn sasl_plain_from_literal_bytes() {
    let mut c = Conn::new(false);
    // The SASL header and a sasl-init PLAIN ("\0guest\0guest") as written
    // on the wire (part 5.3.3.2: descriptor 0x41, a list of two fields).
    let literal: &[u8] = b"AMQP\x03\x01\x00\x00\
        \x00\x00\x00\x23\x02\x01\x00\x00\
        \x00\x53\x41\xc0\x16\x02\
        \xa3\x05PLAIN\
        \xa0\x0c\x00guest\x00guest";
    c.feed(literal);
    let frames = c.frames();
    assert!(matches!(frames[0], Out::Header(h) if h == frame::SASL_HEADER));
    assert!(
        matches!(&frames[1], Out::Mechanisms(m) if m == &["PLAIN"]),
        "{frames:?}"
    );
    let requests = c.requests();
    let [Request::Authenticate { credentials }] = &requests[..] else {
        panic!("{requests:?}");
    };
    assert_eq!(credentials.username.as_deref(), Some("guest"));
    assert_eq!(credentials.password.as_deref(), Some(&b"guest"[..]));

    c.out.clear();
    c.m.authenticated(identity(), Arc::new(Grants::allow_all()), c.now, &mut c.out);
    assert!(matches!(c.frames()[..], [Out::Outcome(SaslCode::Ok)]));
    // The AMQP header, then an open as literal bytes (descriptor 0x10, a
    // list of one field: container-id "client").
    c.feed(
        b"AMQP\x00\x01\x00\x00\
        \x00\x00\x00\x16\x02\x00\x00\x00\
        \x00\x53\x10\xc0\x09\x01\xa1\x06client",
    );
    let frames = c.frames();
    assert!(matches!(frames[0], Out::Header(h) if h == frame::AMQP_HEADER));
    let Out::Frame(0, Performative::Open(open)) = &frames[1] else {
        panic!("{frames:?}");
    };
    assert_eq!(open.container_id, "weft-test");
    assert_eq!(open.max_frame_size.0, 1024);
    assert_eq!(open.channel_max.0, 3);
    assert_eq!(open.idle_time_out, Some(10_000));
    // The client's max-frame-size defaults to 2^32-1: weft's bounds it.
    assert_eq!(c.m.max_frame_size_out(), 1024);
}

#[test]
fn anonymous_mechanism_only_where_allowed() {
    let anonymous = sasl(&SaslInit {
        mechanism: Symbol::from("ANONYMOUS"),
        initial_response: None,
        hostname: None,
    });
    let mut c = Conn::new(true);
    c.feed(&frame::SASL_HEADER);
    assert!(matches!(&c.frames()[1], Out::Mechanisms(m) if m == &["PLAIN", "ANONYMOUS"]));
    c.feed(&anonymous);
    let requests = c.requests();
    let [Request::Authenticate { credentials }] = &requests[..] else {
        panic!("{requests:?}");
    };
    assert!(credentials.username.is_none());

    let mut c = Conn::new(false);
    c.feed(&frame::SASL_HEADER).feed(&anonymous);
    assert!(matches!(c.frames()[..], [Out::Outcome(SaslCode::Auth)]));
    assert_eq!(c.out.closed(), Some(CloseReason::ConnectRefused));
}

#[test]
fn amqp_header_sent_before_the_outcome_waits_for_it() {
    let mut c = Conn::new(false);
    let mut bytes = frame::SASL_HEADER.to_vec();
    bytes.extend_from_slice(&plain("guest", "secret"));
    bytes.extend_from_slice(&frame::AMQP_HEADER);
    c.feed(&bytes);
    assert!(c.out.closed().is_none(), "{:?}", c.out.list);
    assert!(matches!(c.requests()[..], [Request::Authenticate { .. }]));
    c.out.clear();
    c.m.authenticated(identity(), Arc::new(Grants::allow_all()), c.now, &mut c.out);
    let frames = c.frames();
    assert!(
        matches!(frames[..], [Out::Outcome(SaslCode::Ok), Out::Header(h)] if h == frame::AMQP_HEADER),
        "{frames:?}"
    );
    c.send(0, open(4096, None));
    assert!(matches!(
        c.frames()[..],
        [Out::Frame(0, Performative::Open(_))]
    ));
}

#[test]
fn refused_credentials_answer_auth_and_close() {
    let mut c = Conn::new(false);
    c.feed(&frame::SASL_HEADER).feed(&plain("guest", "wrong"));
    c.out.clear();
    c.m.refused(c.now, &mut c.out);
    assert!(matches!(c.frames()[..], [Out::Outcome(SaslCode::Auth)]));
    assert_eq!(c.out.closed(), Some(CloseReason::ConnectRefused));
}

#[test]
fn bare_amqp_header_only_where_anonymous_is_allowed() {
    // Allowed: authenticated as anonymous, then the AMQP header back.
    let mut c = Conn::new(true);
    c.feed(&frame::AMQP_HEADER);
    let requests = c.requests();
    assert!(
        matches!(&requests[..], [Request::Authenticate { credentials }] if credentials.username.is_none())
    );
    c.out.clear();
    c.m.authenticated(identity(), Arc::new(Grants::allow_all()), c.now, &mut c.out);
    assert!(matches!(c.frames()[..], [Out::Header(h)] if h == frame::AMQP_HEADER));
    c.send(0, open(512, None));
    assert!(matches!(
        c.frames()[..],
        [Out::Frame(0, Performative::Open(_))]
    ));
    assert_eq!(c.m.max_frame_size_out(), 512);

    // Not allowed: weft's header (SASL is required), then close.
    let mut c = Conn::new(false);
    c.feed(&frame::AMQP_HEADER);
    assert!(matches!(c.frames()[..], [Out::Header(h)] if h == frame::SASL_HEADER));
    assert_eq!(c.out.closed(), Some(CloseReason::ProtocolError));
}

#[test]
fn wrong_protocol_header_is_answered_then_closed() {
    for wrong in [&b"AMQP\x00\x02\x00\x00"[..], b"GET / HTTP/1.1\r\n"] {
        let mut c = Conn::new(true);
        c.feed(wrong);
        assert!(matches!(c.frames()[..], [Out::Header(h)] if h == frame::SASL_HEADER));
        assert_eq!(c.out.closed(), Some(CloseReason::ProtocolError));
        assert!(c.requests().is_empty());
    }
}

#[test]
fn begin_is_answered_on_the_clients_channel() {
    let mut c = Conn::new(false);
    c.feed(&frame::SASL_HEADER).feed(&plain("guest", "secret"));
    c.m.authenticated(identity(), Arc::new(Grants::allow_all()), c.now, &mut c.out);
    c.feed(&frame::AMQP_HEADER).send(0, open(4096, None));
    c.send(2, begin());
    let frames = c.frames();
    let [Out::Frame(2, Performative::Begin(b))] = &frames[..] else {
        panic!("{frames:?}");
    };
    assert_eq!(b.remote_channel, Some(2));
    assert_eq!(b.next_outgoing_id, FIRST_OUTGOING_ID);
    assert_eq!(b.handle_max.0, 3);
    let requests = c.requests();
    assert!(matches!(
        requests[..],
        [Request::Begin {
            channel: 2,
            incoming_window: 50,
            next_incoming_id: FIRST_OUTGOING_ID
        }]
    ));
    assert_eq!(c.m.incoming(2).map(|(next, _)| next), Some(100));

    // The same channel again; a channel over channel-max.
    c.send(2, begin());
    assert_eq!(c.closed_with(), "amqp:not-allowed");
    let mut c = opened();
    c.send(3, begin());
    assert!(c.out.closed().is_none());
    let mut c = opened();
    c.send(4, begin());
    assert_eq!(c.closed_with(), "amqp:not-allowed");
}

#[test]
fn end_and_close_are_answered() {
    let mut c = opened();
    c.send(1, Performative::End(End { error: None }));
    assert!(matches!(
        c.frames()[..],
        [Out::Frame(1, Performative::End(End { error: None }))]
    ));
    assert!(matches!(c.requests()[..], [Request::End { channel: 1 }]));
    // The channel is free again: a frame on it now names no session.
    c.send(1, detach(0));
    assert_eq!(c.closed_with(), "amqp:not-found");

    let mut c = opened();
    c.send(0, Performative::Close(Close { error: None }));
    assert!(matches!(
        c.frames()[..],
        [Out::Frame(0, Performative::Close(Close { error: None }))]
    ));
    assert_eq!(c.out.closed(), Some(CloseReason::ClientDisconnect));
}

fn detach(handle: u32) -> Performative {
    Performative::Detach(Detach {
        handle: Handle(handle),
        closed: true,
        error: None,
    })
}

#[test]
fn malformed_frame_closes_with_decode_error() {
    let mut c = opened();
    // A described list with descriptor begin (0x11) whose list is cut.
    c.feed(b"\x00\x00\x00\x0e\x02\x00\x00\x01\x00\x53\x11\xc0\x05\x04");
    assert_eq!(c.closed_with(), "amqp:decode-error");
    // A transfer whose handle is a string.
    let mut c = opened();
    c.feed(b"\x00\x00\x00\x11\x02\x00\x00\x01\x00\x53\x14\xc0\x04\x01\xa1\x01x");
    assert_eq!(c.closed_with(), "amqp:decode-error");
}

#[test]
fn frame_over_max_frame_size_closes_with_framing_error() {
    let mut c = opened();
    // 1025 bytes announced, over weft's 1024: refused from the header.
    c.feed(&[0, 0, 4, 1, 2, 0, 0, 1]);
    assert_eq!(c.closed_with(), "amqp:connection:framing-error");
    assert!(c.m.error().unwrap().contains("1025"));
    let mut c = opened();
    c.feed(&[0, 0, 0, 8, 1, 0, 0, 1]);
    assert_eq!(c.closed_with(), "amqp:connection:framing-error");
}

#[test]
fn frame_before_open_gets_open_then_close() {
    let mut c = Conn::new(true);
    c.feed(&frame::AMQP_HEADER);
    c.m.authenticated(identity(), Arc::new(Grants::allow_all()), c.now, &mut c.out);
    c.send(0, begin());
    let frames = c.frames();
    assert!(matches!(
        frames[..],
        [
            Out::Frame(0, Performative::Open(_)),
            Out::Frame(0, Performative::Close(_))
        ]
    ));
    assert_eq!(c.closed_with(), "amqp:not-allowed");
}

#[test]
fn small_max_frame_size_is_refused() {
    let mut c = Conn::new(true);
    c.feed(&frame::AMQP_HEADER);
    c.m.authenticated(identity(), Arc::new(Grants::allow_all()), c.now, &mut c.out);
    c.send(0, open(511, None));
    assert_eq!(c.closed_with(), "amqp:frame-size-too-small");
}

#[test]
fn unknown_channel_closes_with_not_found() {
    let mut c = opened();
    c.send(2, attach_sender(0, Some("a/b")));
    assert_eq!(c.closed_with(), "amqp:not-found");
}

#[test]
fn unknown_handle_ends_the_session_and_closes() {
    for p in [
        amqp(1, &detach(2)),
        transfer_frame(2, Some(0), Some(true), false, b""),
    ] {
        let mut c = opened();
        c.feed(&p);
        let frames = c.frames();
        let Out::Frame(1, Performative::End(end)) = &frames[0] else {
            panic!("{frames:?}");
        };
        assert_eq!(
            condition(end.error.as_ref()),
            "amqp:session:unattached-handle"
        );
        assert_eq!(c.closed_with(), "amqp:session:unattached-handle");
    }
}

#[test]
fn idle_client_is_closed_with_resource_limit_exceeded() {
    let mut c = opened();
    // Every frame moves the deadline; silence past it closes.
    assert_eq!(c.m.next_deadline(), Some(t(10_000)));
    c.now = t(9_000);
    c.feed(&frame::HEARTBEAT);
    assert!(c.out.list.is_empty());
    assert_eq!(c.m.next_deadline(), Some(t(19_000)));
    c.out.clear();
    c.m.handle_timeout(t(18_999), &mut c.out);
    assert!(c.out.list.is_empty());
    c.m.handle_timeout(t(19_000), &mut c.out);
    assert_eq!(c.out.closed(), Some(CloseReason::KeepAliveTimeout));
    let frames = c.frames();
    let [Out::Frame(0, Performative::Close(close))] = &frames[..] else {
        panic!("{frames:?}");
    };
    assert_eq!(
        condition(close.error.as_ref()),
        "amqp:resource-limit-exceeded"
    );
    assert_eq!(c.m.next_deadline(), None);
}

#[test]
fn heartbeats_at_half_the_clients_idle_time_out() {
    let mut c = opened_with(Arc::new(Grants::allow_all()), Some(4_000));
    assert_eq!(c.m.next_deadline(), Some(t(2_000)));
    c.out.clear();
    c.m.handle_timeout(t(2_000), &mut c.out);
    assert!(matches!(c.frames()[..], [Out::Heartbeat]));
    assert!(c.out.closed().is_none());
    assert_eq!(c.m.next_deadline(), Some(t(4_000)));
    c.out.clear();
    c.m.handle_timeout(t(4_000), &mut c.out);
    assert!(matches!(c.frames()[..], [Out::Heartbeat]));
}

#[test]
fn closing_for_the_glue_writes_a_close() {
    let mut c = opened();
    c.out.clear();
    c.m.closing(CloseReason::SlowConsumer, &mut c.out);
    let frames = c.frames();
    let [Out::Frame(0, Performative::Close(close))] = &frames[..] else {
        panic!("{frames:?}");
    };
    assert_eq!(
        condition(close.error.as_ref()),
        "amqp:resource-limit-exceeded"
    );
}

// Builders shared with `links`.

fn attach_sender(handle: u32, address: Option<&str>) -> Performative {
    Performative::Attach(Attach {
        name: format!("sender-{handle}"),
        handle: Handle(handle),
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Mixed,
        rcv_settle_mode: Default::default(),
        source: Some(Box::new(Source::default())),
        target: Some(Box::new(TargetArchetype::Target(Target {
            address: address.map(Into::into),
            ..Target::default()
        }))),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })
}

/// A transfer frame on channel 1.
fn transfer_frame(
    handle: u32,
    id: Option<u32>,
    settled: Option<bool>,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    transfer_with(handle, id, settled, more, false, payload)
}

fn transfer_with(
    handle: u32,
    id: Option<u32>,
    settled: Option<bool>,
    more: bool,
    aborted: bool,
    payload: &[u8],
) -> Vec<u8> {
    let t = Performative::Transfer(Transfer {
        handle: Handle(handle),
        delivery_id: id,
        delivery_tag: id.map(|id| Binary::from(id.to_be_bytes().to_vec())),
        message_format: id.map(|_| 0),
        settled,
        more,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted,
        batchable: false,
    });
    let mut b = amqp(1, &t);
    b.extend_from_slice(payload);
    let size = b.len() as u32;
    b[..4].copy_from_slice(&size.to_be_bytes());
    b
}

/// A message of one data section.
fn message(payload: &[u8]) -> Vec<u8> {
    serde_amqp::to_vec(&Data(Binary::from(payload.to_vec()))).unwrap()
}

#[test]
fn silent_handshake_closes_as_a_connect_timeout() {
    let mut c = Conn::new(false);
    c.feed(&frame::SASL_HEADER);
    c.out.clear();
    c.m.handle_timeout(t(10_000), &mut c.out);
    assert_eq!(c.out.closed(), Some(CloseReason::ConnectTimeout));
    assert!(
        c.written().is_empty(),
        "no AMQP frames before the AMQP layer"
    );
}

#[test]
fn heartbeat_interval_has_a_floor() {
    let c = opened_with(Arc::new(Grants::allow_all()), Some(10));
    assert_eq!(c.m.next_deadline(), Some(t(100)));
}
