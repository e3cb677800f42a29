//! A session's mailbox: what the router sees of a connected (or parked)
//! session — the bounded outbound queue the router delivers into and the
//! session's own frames join, its accounting and slow-consumer decision,
//! the close and the wakers that tie the connection's driver and writer
//! tasks together — plus, until they move into the MQTT machine's own
//! sans-IO outbound state, MQTT's in-flight window and v5 extras.
//!
//! Owns: queue accounting and the slow-consumer decision for one session.
//! Must not touch: sockets (the writer task in `io` does the IO), protocol
//! rules (the session machines), other sessions. Invariant, checked in
//! debug builds: `bytes` is the sum of the wire sizes of the queued items.
//! Hot path: `deliver`, `deliver_nats` and `poll_batch` run per event;
//! rerun `weft bench` after changing them.
//!
//! NATS deliveries are written as MSG frames when delivered (the frame's
//! pieces built once per event, `nats::frame`), appended to a run of
//! frames at the back of the queue: one queue item per run, no reference
//! to the event kept, the run handed whole to the writer's batch. The
//! queue limits count each message of a run (`Outbound::run_extra`;
//! `mailbox::nats`).

use std::cell::{Cell, RefCell};
use std::task::{Context, Poll, Waker};

use crate::config::{Limits, SlowConsumerPolicy};
use crate::event::Event;
use crate::mqtt;
use crate::persist::records::Record;
use crate::topic::trie::SessionKey;

use crate::mqtt::outbound::Outbound as MqttOutbound;

pub(crate) mod amqp;
mod durable;
mod items;
mod nats;
pub use crate::mqtt::outbound::{Backlog, Flight};
pub use crate::session::CloseReason;
pub use durable::Journal;
pub use items::DeliverAs;
use items::{OutItem, Outbound, CONTROL_OVERTAKE_MAX, INLINE_BYTES};

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// Queued beyond the soft limit (QoS 1): the publisher should pause.
    Congested,
    /// Dropped (QoS 0 over the limit, policy `drop`, or session closing).
    Dropped,
    /// Over the limit and the policy says disconnect: the caller closes it.
    SlowConsumer,
}

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Mqtt,
    Nats,
    /// An HTTP edge subscriber (Server-Sent Events): subscribed as MQTT
    /// sessions are, so the router delivers to it as to one; its mailbox
    /// renders the events with `http::deliver`.
    Http,
    /// An AMQP 1.0 connection: one subscription per receiver link, as
    /// NATS has one per SUB (`shard::ctx::table::AmqpLink`).
    Amqp,
}

pub struct Mailbox {
    pub key: SessionKey,
    pub protocol: Protocol,
    pub client_id: Box<str>,
    /// NATS `echo`: false = never deliver this session's own publishes.
    pub echo: Cell<bool>,
    out: RefCell<Outbound>,
    close: Cell<Option<CloseReason>>,
    reader: Cell<Option<Waker>>,
    /// Filters this session holds, with granted QoS: what to release on
    /// disconnect. Bounded by `subscriptions_per_session_max`.
    pub subscriptions: RefCell<crate::topic::filter_set::FilterSet>,
    /// NATS: sid → key of the subscription in the shard's table.
    pub nats_subs: RefCell<hashbrown::HashMap<Box<str>, SessionKey>>,
    /// AMQP: (channel, handle) of a receiver link → its key in the table.
    pub amqp_links: RefCell<hashbrown::HashMap<(u16, u32), SessionKey>>,
    pub dropped: Cell<u64>,
    /// A publisher already paused `backpressure_pause_ms_max` for this
    /// session without it draining: until it drains, QoS 1 events queue up
    /// to the hard limit without pausing anyone again.
    pub pause_spent: Cell<bool>,
    /// Holds other shards put on this session as a publisher (`hold`).
    pub hold: super::publisher_hold::PublisherHold,
    /// NATS: server PINGs not yet answered.
    pub pings_outstanding: Cell<u32>,
    /// The client's address, for the admin views and log lines.
    pub peer: Cell<Option<std::net::SocketAddr>>,
    /// Who the client authenticated as (None until its CONNECT was
    /// accepted), for the admin views, per-user limits and a reload that
    /// revokes its user.
    pub identity: RefCell<Option<crate::security::Identity>>,
    /// What the client may read, tested per delivery only for its checked
    /// subscriptions (`topic::trie::CHECKED`); None: no rules.
    pub grants: RefCell<Option<std::sync::Arc<crate::security::Grants>>>,
    /// MQTT clean session 0: kept after the connection ends.
    pub persistent: Cell<bool>,
    /// A kept session with no connection: QoS 1 events queue (bounded by
    /// the QoS 1 hard limits), QoS 0 events are dropped.
    pub offline: Cell<bool>,
    /// Its state was handed to another session (takeover): the connection
    /// that ends must not release it again.
    pub detached: Cell<bool>,
    /// MQTT 5 Session Expiry Interval (None: the configured one).
    pub expiry_s: Cell<Option<u32>>,
    /// MQTT 5 Subscription Identifiers by filter (only for subscriptions
    /// that set one; empty, unallocated, otherwise).
    pub sub_identifiers: RefCell<hashbrown::HashMap<Box<str>, u32>>,
    /// An HTTP subscriber over WebSocket: its events are text messages
    /// (`http::deliver::write_ws`), not Server-Sent Events.
    pub http_ws: Cell<bool>,
    /// A will waiting for its Will Delay Interval (MQTT-3.1.3-9).
    pub pending_will: RefCell<Option<Event>>,
    /// Persistence on and the session persistent: where its records go
    /// (set and taken through `set_journal` / `take_journal`, which keep
    /// `journaled` in step: the one test the event path pays).
    /// Boxed: most sessions have none, and 160 B inline would be held by
    /// every connection's mailbox.
    pub journal: RefCell<Option<Box<Journal>>>,
    journaled: Cell<bool>,
    /// `Gated` acknowledgements queued and written so far, and how many
    /// of them the last durable wait covered (with its outcome).
    gated_pushed: Cell<u64>,
    gated_popped: Cell<u64>,
    gate: Cell<(u64, bool)>,
    gate_refused: Cell<bool>,
    /// MQTT, from attach until the CONNACK is queued: nothing is written
    /// before the CONNACK (MQTT-3.2.0-1), which goes to the front of the
    /// queue. A resumed session's subscriptions are installed (and a
    /// barrier awaited) before its CONNACK, so deliveries may queue first.
    greeting: Cell<Greeting>,
}

/// Where the session's first frame stands (`Mailbox::await_greeting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    /// Not awaited (NATS, tests) or long written.
    None,
    /// Awaited: the writer writes nothing yet.
    Awaited,
    /// Queued at the front: a resumed session's backlog goes right after
    /// it, before what was delivered while it was awaited.
    Queued,
}

impl Mailbox {
    pub fn new(key: SessionKey, protocol: Protocol, client_id: Box<str>) -> Mailbox {
        Mailbox {
            key,
            protocol,
            client_id,
            echo: Cell::new(true),
            out: RefCell::new(Outbound {
                amqp: (protocol == Protocol::Amqp).then(Box::default),
                ..Outbound::default()
            }),
            close: Cell::new(None),
            reader: Cell::new(None),
            subscriptions: RefCell::default(),
            nats_subs: RefCell::default(),
            amqp_links: RefCell::default(),
            dropped: Cell::new(0),
            pause_spent: Cell::new(false),
            hold: Default::default(),
            pings_outstanding: Cell::new(0),
            peer: Cell::new(None),
            identity: RefCell::new(None),
            grants: RefCell::new(None),
            persistent: Cell::new(false),
            offline: Cell::new(false),
            detached: Cell::new(false),
            expiry_s: Cell::new(None),
            sub_identifiers: RefCell::default(),
            http_ws: Cell::new(false),
            pending_will: RefCell::new(None),
            journal: RefCell::new(None),
            journaled: Cell::new(false),
            gated_pushed: Cell::new(0),
            gated_popped: Cell::new(0),
            gate: Cell::new((0, true)),
            gate_refused: Cell::new(false),
            greeting: Cell::new(Greeting::None),
        }
    }

    /// Nothing is written until the next `send` (the CONNACK), which goes
    /// first; call before the writer starts.
    pub fn await_greeting(&self) {
        self.greeting.set(Greeting::Awaited);
    }

    /// Whether the protocol tells the client why it is closed (NATS
    /// `-ERR`, MQTT 5 DISCONNECT); MQTT 3.1.1 has no such packet.
    pub fn sends_last_words(&self) -> bool {
        matches!(self.protocol, Protocol::Nats | Protocol::Amqp) || self.version() == 5
    }

    /// MQTT protocol level: 4 (3.1.1) or 5.
    pub fn version(&self) -> u8 {
        self.out.borrow().mqtt.version
    }

    /// An MQTT 5 session: what its CONNECT said about what it receives
    /// (Receive Maximum, Maximum Packet Size, Topic Alias Maximum).
    /// The MQTT protocol level an offline session keeps (journaled).
    pub fn set_version(&self, version: u8) {
        self.out.borrow_mut().mqtt.version = version;
    }

    pub fn set_mqtt5(&self, receive_max: Option<u16>, max_packet: Option<u32>, alias_max: u16) {
        let mqtt = &mut self.out.borrow_mut().mqtt;
        mqtt.version = 5;
        if let Some(max) = receive_max {
            mqtt.receive_max = max;
        }
        if let Some(max) = max_packet {
            mqtt.max_packet = max;
        }
        mqtt.alias_max = alias_max;
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close.get()
    }

    /// Marks the session closed (first reason wins) and wakes its tasks.
    pub fn close(&self, reason: CloseReason) {
        if self.close.get().is_some() {
            return;
        }
        self.close.set(Some(reason));
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        let mut out = self.out.borrow_mut();
        if let Some(w) = out.writer.take() {
            w.wake();
        }
        for w in out.drain_waiters.drain(..) {
            w.wake();
        }
    }

    /// Resolves when the session is closed (raced against socket reads).
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        match self.close.get() {
            Some(r) => Poll::Ready(r),
            None => {
                self.reader.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }

    #[inline]
    fn push(&self, out: &mut Outbound, item: OutItem) {
        out.bytes += item.wire_len();
        out.queue.push_back(item);
        if let Some(w) = out.writer.take() {
            w.wake();
        }
    }

    /// Queues frames the session wrote (acknowledgements, PONG, SUBACK, …)
    /// behind the deliveries already queued. They answer the client's own
    /// packets, so they are bounded by its reading, not by the queue
    /// limit. Small ones cost no allocation.
    pub fn send(&self, frame: &[u8]) {
        let item = if frame.len() <= INLINE_BYTES {
            let mut bytes = [0; INLINE_BYTES];
            bytes[..frame.len()].copy_from_slice(frame);
            OutItem::Short(bytes, frame.len() as u8)
        } else {
            OutItem::Frame(frame.into())
        };
        let mut out = self.out.borrow_mut();
        if out.queue.capacity() == 0 {
            // A session's first frame (CONNACK, the NATS INFO's answers):
            // one slot, not the four a first push reserves (~100 B each),
            // which an idle connection would hold for its whole life. The
            // queue grows by doubling from there when deliveries come.
            out.queue.reserve_exact(1);
        }
        if self.greeting.get() == Greeting::Awaited {
            self.greeting.set(Greeting::Queued);
            out.bytes += item.wire_len();
            out.queue.push_front(item);
            if let Some(w) = out.writer.take() {
                w.wake();
            }
            return;
        }
        self.push(&mut out, item);
    }

    /// True once the connection is closing and nothing more will be
    /// delivered to this session (a persistent session whose connection is
    /// closing keeps collecting, as it will once parked).
    pub fn leaving(&self) -> bool {
        self.close.get().is_some() && (!self.persistent.get() || self.detached.get())
    }

    /// Queues `event` for delivery, applying the queue limits.
    pub fn deliver(&self, event: Event, how: DeliverAs, limits: &Limits) -> Delivery {
        if self.leaving() {
            return Delivery::Dropped;
        }
        let offline = self.offline.get() || self.close.get().is_some();
        let qos = how.qos();
        let mut out = self.out.borrow_mut();
        let len = match &how {
            DeliverAs::Mqtt { qos, .. } => out.mqtt.wire_len(&event, *qos),
            DeliverAs::Http { .. } => crate::http::deliver::wire_len(&event, self.http_ws.get()),
            DeliverAs::Amqp { qos, .. } => crate::amqp::outbound::wire_len(&event, *qos, 0),
        };
        let too_large = matches!(how, DeliverAs::Mqtt { .. }) && out.mqtt.too_large(len);
        if too_large || event.expired() {
            self.dropped.set(self.dropped.get() + 1);
            return Delivery::Dropped;
        }
        if offline {
            let full = out.len() >= limits.qos1_queued_messages_max
                || out.bytes + len > limits.qos1_queued_bytes_max;
            if qos == 0 || full {
                self.dropped.set(self.dropped.get() + 1);
                return Delivery::Dropped;
            }
        }
        let over_soft = !offline
            && (out.len() >= limits.queued_messages_max
                || out.bytes + len > limits.queued_bytes_max);
        let mut outcome = Delivery::Queued;
        if !over_soft {
            self.pause_spent.set(false);
        } else {
            if qos == 0 {
                return match limits.slow_consumer_policy {
                    SlowConsumerPolicy::Drop => {
                        self.dropped.set(self.dropped.get() + 1);
                        Delivery::Dropped
                    }
                    SlowConsumerPolicy::Disconnect => Delivery::SlowConsumer,
                };
            }
            if out.len() >= limits.qos1_queued_messages_max
                || out.bytes + len > limits.qos1_queued_bytes_max
            {
                return Delivery::SlowConsumer;
            }
            if !self.pause_spent.get() {
                outcome = Delivery::Congested;
            }
        }
        let item = match how {
            // An HTTP subscriber's subscriptions are MQTT-shaped: the
            // router delivers to it as to an MQTT session.
            DeliverAs::Mqtt { .. } if self.protocol == Protocol::Http => OutItem::Http {
                event,
                id: 0,
                ws: self.http_ws.get(),
            },
            DeliverAs::Http { id } => OutItem::Http {
                event,
                id,
                ws: self.http_ws.get(),
            },
            DeliverAs::Mqtt { qos, retain } => {
                let seq = self.journal_queued(qos, &event);
                OutItem::Event {
                    event,
                    qos,
                    retain,
                    seq,
                }
            }
            DeliverAs::Amqp {
                handle,
                channel,
                qos,
            } => return self.queue_amqp(&mut out, (channel, handle), event, qos, len, outcome),
        };
        self.push(&mut out, item);
        outcome
    }

    /// True while the queue is over its soft limits.
    pub fn over_soft(&self, limits: &Limits) -> bool {
        let out = self.out.borrow();
        out.len() >= limits.queued_messages_max || out.bytes > limits.queued_bytes_max
    }

    /// True when a QoS 1 packet of the largest size might not fit under
    /// the hard limits any more.
    pub fn no_room(&self, limits: &Limits) -> bool {
        let out = self.out.borrow();
        out.len() >= limits.qos1_queued_messages_max
            || out.bytes + limits.packet_bytes_max > limits.qos1_queued_bytes_max
    }

    /// True once the queue is back under its soft limits (or closed): a
    /// paused publisher may go on.
    pub fn poll_drained(&self, cx: &mut Context<'_>, limits: &Limits) -> Poll<()> {
        let mut out = self.out.borrow_mut();
        if self.close.get().is_some()
            || (out.len() < limits.queued_messages_max && out.bytes <= limits.queued_bytes_max)
        {
            return Poll::Ready(());
        }
        out.drain_waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// Moves queued packets into `buf` (up to `batch_bytes_max`) for one
    /// write. Ready(true): write `buf`. Ready(false): closed, stop writing.
    /// `born` receives the `born_ns` of every event written, for the
    /// latency histogram.
    pub fn poll_batch(
        &self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
        limits: &Limits,
        born: &mut Vec<u64>,
    ) -> Poll<bool> {
        let closed = self.close.get();
        if matches!(closed, Some(r) if !r.flushes()) {
            self.out.borrow_mut().spare = Vec::new();
            return Poll::Ready(false);
        }
        if self.greeting.get() == Greeting::Awaited {
            // No CONNACK yet: nothing may go before it.
            if closed.is_some() {
                return Poll::Ready(false);
            }
            self.out.borrow_mut().writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let ids = self.sub_identifiers.borrow();
        let mut out = self.out.borrow_mut();
        let out = &mut *out;
        if buf.capacity() == 0 {
            // The buffer it left here while it waited (below), unless a
            // NATS run took it.
            std::mem::swap(buf, &mut out.spare);
        }
        let mut gate_blocked = false;
        while buf.len() < limits.write_batch_bytes_max {
            let Some(front) = out.queue.front() else {
                break;
            };
            if let OutItem::Event { qos: 1.., .. } = front {
                if out.mqtt.window_full(limits.inflight_max) {
                    // Window full: the PUBLISH waits for an ack, but the
                    // control packets behind it (PINGRESP, acks, SUBACK)
                    // need not: let the first few through.
                    let mut at = 1;
                    while at < out.queue.len().min(CONTROL_OVERTAKE_MAX) {
                        if matches!(out.queue[at], OutItem::Short(..) | OutItem::Frame(_)) {
                            let item = out.queue.remove(at).expect("index in range");
                            out.bytes -= item.wire_len();
                            match item {
                                OutItem::Short(bytes, len) => {
                                    buf.extend_from_slice(&bytes[..usize::from(len)])
                                }
                                OutItem::Frame(frame) => buf.extend_from_slice(&frame),
                                _ => unreachable!("matched above"),
                            }
                        } else {
                            at += 1;
                        }
                    }
                    break; // wait for a PUBACK
                }
            }
            if let OutItem::Gated(bytes, len) = front {
                // Not past the gate: the writer waits for durability first.
                let version = out.mqtt.version;
                if !self.write_gated(&bytes[..usize::from(*len)], version, buf) {
                    gate_blocked = true;
                    break;
                }
                let item = out.queue.pop_front().expect("front exists");
                out.bytes -= item.wire_len();
                continue;
            }
            let item = out.queue.pop_front().expect("front exists");
            out.bytes -= item.wire_len();
            // MQTT 5 Message Expiry also applies to what waited in a queue
            // (MQTT-3.3.2-5).
            if let OutItem::Event { event, .. } = &item {
                if event.expired() {
                    continue;
                }
            }
            match &item {
                OutItem::Event { event, .. } | OutItem::Http { event, .. } => {
                    born.push(event.born_ns)
                }
                OutItem::NatsRun {
                    msgs,
                    live,
                    oldest_ns,
                    ..
                } => {
                    // The run's oldest for each of its live events (the
                    // latency summary takes a write's oldest anyway,
                    // `ctx::telemetry`), the rest replays.
                    out.run_extra -= (*msgs - 1) as usize;
                    born.extend(std::iter::repeat_n(*oldest_ns, *live as usize));
                    born.extend(std::iter::repeat_n(
                        crate::event::REPLAY_NS,
                        (*msgs - *live) as usize,
                    ));
                }
                _ => {}
            }
            match item {
                OutItem::Event {
                    event,
                    qos,
                    retain,
                    seq,
                } => {
                    let pid = out.mqtt.write(buf, event, qos, retain, &ids);
                    if seq != 0 {
                        self.journal_write(|sn| Record::Sent { sn, seq, pid });
                    }
                }
                OutItem::Short(bytes, len) => buf.extend_from_slice(&bytes[..usize::from(len)]),
                OutItem::Gated(..) => unreachable!("written above"),
                OutItem::NatsRun { mut bytes, .. } => {
                    if buf.is_empty() {
                        // The run is the batch: handed over, not copied.
                        std::mem::swap(buf, &mut bytes);
                    } else {
                        buf.extend_from_slice(&bytes);
                    }
                }
                OutItem::Http { event, id, ws } => crate::http::deliver::write(&event, id, ws, buf),
                OutItem::Redeliver(flight) => out.mqtt.rewrite(buf, flight, &ids),
                OutItem::Frame(frame) => buf.extend_from_slice(&frame),
            }
        }
        if !gate_blocked && buf.len() < limits.write_batch_bytes_max {
            if let Some(amqp) = out.amqp.as_deref_mut() {
                // After the queue: a link's attach is queued there before
                // its first credit, so before its first transfer.
                out.bytes -=
                    amqp.write(buf, limits.write_batch_bytes_max, limits.inflight_max, born);
            }
        }
        debug_assert_eq!(
            out.bytes,
            out.queue.iter().map(OutItem::wire_len).sum::<usize>()
                + out.amqp.as_ref().map_or(0, |a| a.queued_bytes()),
            "queued bytes out of step with the queue"
        );
        if !out.drain_waiters.is_empty()
            && out.len() < limits.queued_messages_max
            && out.bytes <= limits.queued_bytes_max
        {
            for w in out.drain_waiters.drain(..) {
                w.wake();
            }
        }
        if !buf.is_empty() || gate_blocked {
            // (Empty at a gate: the writer waits for durability, then
            // comes back.)
            return Poll::Ready(true);
        }
        if closed.is_some() {
            out.spare = Vec::new();
            return Poll::Ready(false);
        }
        if out.spare.capacity() == 0 {
            // The writer's empty buffer waits here with it: the next NATS
            // run is written straight into it (`mailbox::nats`), and the
            // writer gets it back, filled, without a copy.
            std::mem::swap(buf, &mut out.spare);
        }
        out.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// For a writer blocked on the socket: Ready once the session is closed
    /// for a reason that does not flush (the write is abandoned).
    pub fn poll_abandon(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self.close.get() {
            Some(r) if !r.flushes() => Poll::Ready(()),
            _ => {
                self.out.borrow_mut().writer = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Handles PUBACK (QoS 1) or PUBCOMP (QoS 2, after PUBREL): frees the
    /// packet id. False if no such delivery was in flight.
    pub fn acknowledge(&self, packet_id: u16) -> bool {
        let mut out = self.out.borrow_mut();
        if !out.mqtt.acknowledge(packet_id) {
            return false;
        }
        self.journal_write(|sn| Record::Done { sn, pid: packet_id });
        if !out.queue.is_empty() {
            if let Some(w) = out.writer.take() {
                w.wake();
            }
        }
        true
    }

    /// Ends a delivery the client refused (MQTT 5 PUBREC with an error).
    pub fn forget(&self, packet_id: u16) {
        self.out.borrow_mut().mqtt.forget(packet_id);
        self.journal_write(|sn| Record::Done { sn, pid: packet_id });
    }

    /// Handles PUBREC of a QoS 2 delivery: answers PUBREL (MQTT-4.3.3-3).
    /// False if no such delivery was waiting for it.
    pub fn received(&self, packet_id: u16) -> bool {
        let mut out = self.out.borrow_mut();
        if !out.mqtt.received(packet_id) {
            return false;
        }
        self.journal_write(|sn| Record::Rel { sn, pid: packet_id });
        let frame = mqtt::outbound::pubrel(packet_id);
        self.push(&mut out, OutItem::Short(short(&frame), frame.len() as u8));
        true
    }

    /// Takes what a persistent session must carry to its next connection.
    pub fn take_backlog(&self) -> Backlog {
        let mut out = self.out.borrow_mut();
        let mut backlog = Backlog {
            inflight: out.mqtt.take_inflight().collect(),
            queued: Vec::new(),
        };
        for item in out.queue.drain(..) {
            match item {
                OutItem::Event { event, qos, .. } if qos > 0 => backlog.queued.push((event, qos)),
                OutItem::Redeliver(flight) => backlog.inflight.push(flight),
                _ => {}
            }
        }
        out.bytes = 0;
        out.run_extra = 0;
        backlog
    }

    /// Queues a backlog: first the resends, then what was never sent. Right
    /// after the CONNACK when it is queued at the front (a resumed
    /// session): before what was delivered while the CONNACK was awaited,
    /// so the resends keep their order and their packet ids are in flight
    /// again before a new delivery takes an id (MQTT-4.4.0-1).
    pub fn restore_backlog(&self, backlog: Backlog) {
        let mut out = self.out.borrow_mut();
        let mut at = match self.greeting.replace(Greeting::None) {
            Greeting::Queued => Some(1.min(out.queue.len())),
            _ => None,
        };
        // Journaled: numbered as `persist::recover::session_records`
        // numbered them (in flight first, then the queue).
        let journaled = self.is_journaled();
        let base = backlog.inflight.len() as u64;
        let items = backlog.inflight.into_iter().map(OutItem::Redeliver).chain(
            backlog
                .queued
                .into_iter()
                .enumerate()
                .map(|(i, (mut event, qos))| {
                    // Waited for this session: a replay, not routing latency.
                    event.born_ns = crate::event::REPLAY_NS;
                    OutItem::Event {
                        event,
                        qos,
                        retain: false,
                        seq: if journaled { base + i as u64 + 1 } else { 0 },
                    }
                }),
        );
        for item in items {
            match &mut at {
                Some(i) => {
                    out.bytes += item.wire_len();
                    out.queue.insert(*i, item);
                    *i += 1;
                    if let Some(w) = out.writer.take() {
                        w.wake();
                    }
                }
                None => self.push(&mut out, item),
            }
        }
    }

    pub fn queued(&self) -> (usize, usize) {
        let out = self.out.borrow();
        (out.len(), out.bytes)
    }
}

fn short(frame: &[u8]) -> [u8; INLINE_BYTES] {
    let mut bytes = [0; INLINE_BYTES];
    bytes[..frame.len()].copy_from_slice(frame);
    bytes
}

#[cfg(test)]
mod tests;
