//! A mailbox's queue items and its outbound state: how one subscriber gets
//! an event (`DeliverAs`), what the queue holds (`OutItem`: deliveries,
//! NATS runs, HTTP events, resends, inline and gated frames) with its wire
//! size, and the queue with the protocols' outbound hooks (`Outbound`).
//!
//! Owns: the shapes and sizes; the rules that fill and drain them are the
//! mailbox's (`super`). Hot path: `OutItem::wire_len` runs on push and pop.

use std::collections::VecDeque;
use std::task::Waker;

use super::{Flight, MqttOutbound};
use crate::event::Event;
use crate::mqtt;

/// How one subscriber gets an event.
#[derive(Debug, Clone)]
pub enum DeliverAs {
    /// `retain`: a retained message sent because of a new subscription.
    /// (NATS subscribers get theirs through `Mailbox::deliver_nats`.)
    Mqtt { qos: u8, retain: bool },
    /// A retained message replayed to an HTTP subscriber, `id` its stamp
    /// (the event stream's id; live events are stamped when written).
    Http { id: u64 },
    /// To an AMQP receiver link (weft's channel and handle for it); `qos`
    /// 0 pre-settled, 1 unsettled.
    Amqp { handle: u32, channel: u16, qos: u8 },
}

impl DeliverAs {
    pub(super) fn qos(&self) -> u8 {
        match self {
            DeliverAs::Mqtt { qos, .. } | DeliverAs::Amqp { qos, .. } => *qos,
            DeliverAs::Http { .. } => 0,
        }
    }
}

pub(super) enum OutItem {
    Event {
        event: Event,
        qos: u8,
        retain: bool,
        /// Its number in the session's journal (0: not journaled).
        seq: u64,
    },
    /// NATS MSG/HMSG frames written when delivered, consecutive ones in
    /// one buffer (at most `write_batch_bytes_max`, or one larger frame):
    /// `msgs` of them, `live` with their events' `born_ns` at least
    /// `oldest_ns` (the rest replays, `REPLAY_NS`).
    NatsRun {
        bytes: Vec<u8>,
        msgs: u32,
        live: u32,
        oldest_ns: u64,
    },
    /// An event for an HTTP subscriber; `id` 0: stamped when written.
    /// `ws`: as a WebSocket text message, else a Server-Sent Event.
    Http {
        event: Event,
        id: u64,
        ws: bool,
    },
    /// An unacknowledged delivery resent after reconnection, with its
    /// original packet id and DUP, or its PUBREL (MQTT-4.4.0-1).
    Redeliver(Flight),
    /// A frame of at most `INLINE_BYTES` (PUBACK, PINGRESP, NATS PONG,
    /// `+OK`, most `-ERR` lines): no allocation.
    Short([u8; INLINE_BYTES], u8),
    /// An acknowledgement that promises durability (persistence): the
    /// batch it is written in leaves only once every shard's log holds
    /// what was routed before it (the writer waits, `take_gated`).
    Gated([u8; INLINE_BYTES], u8),
    Frame(Box<[u8]>),
}

impl OutItem {
    pub(super) fn wire_len(&self) -> usize {
        match self {
            OutItem::Event { event, qos, .. } => mqtt::deliver::wire_len(event, *qos),
            // (MQTT 5 sizes differ slightly; the queue's byte count uses
            // the 3.1.1 size for every version, consistently on push and
            // pop.)
            OutItem::NatsRun { bytes, .. } => bytes.len(),
            OutItem::Http { event, ws, .. } => crate::http::deliver::wire_len(event, *ws),
            OutItem::Redeliver(f) if f.released => 4,
            OutItem::Redeliver(f) => mqtt::deliver::wire_len(&f.event, f.qos),
            OutItem::Short(_, len) | OutItem::Gated(_, len) => usize::from(*len),
            OutItem::Frame(f) => f.len(),
        }
    }
}

/// Frames up to this size are queued inline: as large as fits without
/// growing `OutItem` (its largest variant, an MQTT delivery, sets the size).
pub(super) const INLINE_BYTES: usize = 30;

/// How far past a window-blocked PUBLISH the writer looks for control
/// packets to send first (bounds the scan).
pub(super) const CONTROL_OVERTAKE_MAX: usize = 64;

#[derive(Default)]
pub(super) struct Outbound {
    pub(super) queue: VecDeque<OutItem>,
    pub(super) bytes: usize,
    pub(super) writer: Option<Waker>,
    pub(super) drain_waiters: Vec<Waker>,
    /// MQTT's hook: the in-flight window, packet ids and v5 extras
    /// (sans-IO, `mqtt::outbound`); untouched by NATS sessions.
    pub(super) mqtt: MqttOutbound,
    /// AMQP's: per link credit and queue, the unsettled map (sans-IO,
    /// `amqp::outbound`); its queued events count in `bytes` and `len`.
    pub(super) amqp: Option<Box<crate::amqp::outbound::Outbound>>,
    /// Messages in the queue's NATS runs beyond one per run (each run is
    /// one queue item): what `len` adds so that it counts messages.
    pub(super) run_extra: usize,
    /// The writer's empty batch buffer while it waits for something to
    /// write (it held it while waiting before): a NATS run starts in it.
    pub(super) spare: Vec<u8>,
}

impl Outbound {
    /// Messages queued: the queue's (a NATS run's each) and those waiting
    /// for AMQP link credit.
    pub(super) fn len(&self) -> usize {
        self.queue.len() + self.run_extra + self.amqp.as_ref().map_or(0, |a| a.queued())
    }
}
