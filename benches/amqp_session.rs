//! AMQP session machine benchmark: the per-transfer inbound path of
//! `weft::amqp::session` (frame header, the hand-decoded transfer, the
//! link's state and credit, `amqp::message::to_event`, the `Publish`
//! request), and the transfer decode alone by hand and through serde (the
//! reason the machine decodes it by hand).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench amqp_session`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{Data, Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, MaxFrameSize, Open, Performative, Transfer,
};
use serde_amqp::primitives::Binary;
use weft::amqp::frame::{self, TYPE_AMQP};
use weft::amqp::session::{AmqpLimits, AmqpSession, Request, Settings};
use weft::event::Origin;
use weft::security::{Grants, Identity};
use weft::session::{Action, Actions, Machine};
use weft::topic::TopicLimits;

fn amqp(p: &Performative) -> Vec<u8> {
    let mut b = Vec::new();
    frame::write_frame(&mut b, TYPE_AMQP, 0, p);
    b
}

/// A pre-settled transfer of a 64 B data section on handle 0.
fn transfer_frame() -> Vec<u8> {
    let mut b = amqp(&Performative::Transfer(Transfer {
        handle: Handle(0),
        delivery_id: Some(0),
        delivery_tag: Some(Binary::from(vec![0, 0, 0, 1])),
        message_format: Some(0),
        settled: Some(true),
        more: false,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted: false,
        batchable: false,
    }));
    b.extend_from_slice(&serde_amqp::to_vec(&Data(Binary::from(vec![0x5a; 64]))).unwrap());
    let size = b.len() as u32;
    b[..4].copy_from_slice(&size.to_be_bytes());
    b
}

/// A machine past the handshake with a sender link on handle 0.
fn attached(now: Instant) -> AmqpSession {
    let settings = Settings {
        limits: AmqpLimits::default(),
        topic_limits: TopicLimits::default(),
        anonymous: true,
        container_id: "bench".into(),
        origin: Origin::ROUTER,
        durable_supported: false,
    };
    let mut m = AmqpSession::new(settings, now);
    let mut out = Actions::default();
    let mut input = frame::AMQP_HEADER.to_vec();
    input.extend(amqp(&Performative::Open(Open {
        container_id: "c".into(),
        hostname: None,
        max_frame_size: MaxFrameSize(65536),
        channel_max: ChannelMax(1),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })));
    input.extend(amqp(&Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: 0,
        incoming_window: u32::MAX,
        outgoing_window: u32::MAX,
        handle_max: Handle(7),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })));
    input.extend(amqp(&Performative::Attach(Attach {
        name: "s".into(),
        handle: Handle(0),
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Settled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(Box::new(Source::default())),
        target: Some(Box::new(TargetArchetype::Target(Target {
            address: Some("site/42/dev/17/temp".into()),
            ..Target::default()
        }))),
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: Some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    })));
    let mut at = 0;
    while let Ok(Some(used)) = m.feed(&input[at..], now, &mut out) {
        at += used;
        if out
            .list
            .iter()
            .any(|a| matches!(a, Action::Request(Request::Authenticate { .. })))
        {
            let identity = Identity {
                user: None,
                account: "default".into(),
            };
            m.authenticated(identity, Grants::allow_all().into(), now, &mut out);
        }
        out.clear();
    }
    assert_eq!(at, input.len());
    m
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let wire = transfer_frame();
    let mut g = c.benchmark_group("amqp_session");
    g.throughput(Throughput::Elements(1));
    let mut m = attached(now);
    let mut out = Actions::default();
    g.bench_function("feed/presettled_transfer_64B", |b| {
        b.iter(|| {
            out.clear();
            let used = m.feed(black_box(&wire), now, &mut out).unwrap();
            debug_assert_eq!(used, Some(wire.len()));
            black_box(&out.list);
        })
    });
    let body = &wire[8..];
    g.bench_function("decode_transfer/by_hand", |b| {
        b.iter(|| black_box(frame::decode_transfer(black_box(body)).unwrap().handle))
    });
    let payload_len = frame::decode_transfer(body).unwrap().payload.len();
    let performative = &body[..body.len() - payload_len];
    g.bench_function("decode_transfer/serde", |b| {
        b.iter(|| {
            let t: Transfer = serde_amqp::from_slice(black_box(performative)).unwrap();
            black_box(t.handle)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
