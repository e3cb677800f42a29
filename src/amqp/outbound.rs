//! AMQP's delivery side of one connection, sans-IO: per receiver link the
//! queue of deliveries waiting for credit, its link-credit and
//! delivery-count; per session weft's next-outgoing-id and the client's
//! incoming window; delivery ids and tags; the unsettled map and what a
//! disposition does to it (released → sent again, modified → sent again
//! with delivery-count + 1, or handed on); drain and echo flows; and the
//! transfer encoder (a described list written by hand: no serde per
//! delivery; in `outbound/encode.rs`).
//!
//! Owns: the state above. Must not touch: the mailbox's queue accounting
//! and limits (the shard's mailbox holds this and calls in when it queues
//! an event, writes a batch, or carries out the client's flow and
//! disposition), sockets, clocks, the router (a hand-on is returned to the
//! caller). Everything inbound (frames, attach, the credit weft grants) is
//! the machine's (`amqp::session`).
//!
//! Bounds: the queues are bounded by the mailbox's limits (it counts every
//! event queued here: [`Outbound::queued`], [`Outbound::queued_bytes`]);
//! the unsettled map holds at most `inflight_max` deliveries
//! (`limits.inflight_max`): past it, unsettled links wait for a
//! disposition as an MQTT window waits for a PUBACK. Links per connection
//! are the machine's bound (`[amqp] channel_max` × `handles_max`).
//!
//! Hot path: [`Outbound::write`] runs per delivery: a transfer is a fixed
//! header and ~30 bytes of performative written in place, then the
//! message's sections (`amqp::message::write_message`); no allocation but
//! `buf`'s growth. Rerun `weft bench` after changing it.

use std::collections::{BTreeMap, VecDeque};

use crate::event::Event;

mod encode;

use encode::{write_disposition, write_flow, write_transfer};

/// What the client's disposition said of a delivery (the contract's
/// `amqp::session::Outcome`, mapped by the glue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Released,
    Rejected,
    Modified {
        delivery_failed: bool,
        undeliverable_here: bool,
    },
}

/// A link's unsettled and queued deliveries when it goes away (the caller
/// hands them on to a queue group, keeps them for a durable link, or drops
/// and counts them).
#[derive(Debug, Default)]
pub struct Leftover {
    /// (event, qos, delivery-count), unsettled ones first, in order.
    pub events: Vec<(Event, u8, u32)>,
    /// How many of `events` were sent and not settled.
    pub unsettled: usize,
}

/// What a disposition did, for the caller's counters and hand-ons.
#[derive(Debug, Default)]
pub struct Settled {
    pub accepted: usize,
    pub rejected: usize,
    /// Sent again (released, or modified without undeliverable-here).
    pub requeued: usize,
    /// Modified with undeliverable-here: for another member of the link's
    /// group, else dropped (the caller decides): (handle, event).
    pub undeliverable: Vec<(u32, Event)>,
}

#[derive(Debug)]
struct Waiting {
    event: Event,
    qos: u8,
    delivery_count: u32,
    /// Its [`wire_len`], counted once when queued (review 1.5: the
    /// message was sized about four times per delivery).
    wire_len: usize,
}

#[derive(Debug)]
struct Link {
    channel: u16,
    handle: u32,
    /// 0: weft sends pre-settled; 1: unsettled.
    qos: u8,
    credit: u32,
    delivery_count: u32,
    drain: bool,
    /// A flow to send (echo asked, or a drain finished).
    flow_due: bool,
    queue: VecDeque<Waiting>,
    /// The first this many of `queue` are resends (released, modified),
    /// in delivery order: later resends go after them, before the rest.
    resends: usize,
}

#[derive(Debug)]
struct Unsettled {
    handle: u32,
    event: Event,
    qos: u8,
    delivery_count: u32,
}

#[derive(Debug)]
struct Session {
    channel: u16,
    /// The transfer-id of weft's next transfer frame.
    next_outgoing_id: u32,
    next_delivery_id: u32,
    /// Transfers the client takes before its next flow.
    remote_incoming_window: u32,
    /// weft's own incoming side, as the machine last said it (flows carry
    /// it).
    next_incoming_id: u32,
    incoming_window: u32,
    unsettled: BTreeMap<u32, Unsettled>,
}

/// The delivery side of one AMQP connection.
#[derive(Debug)]
pub struct Outbound {
    sessions: Vec<Session>,
    links: Vec<Link>,
    /// Round-robin start among the links, so one busy link does not starve
    /// the others of a batch.
    next_link: usize,
    queued: usize,
    queued_bytes: usize,
    unsettled: usize,
    /// The client's max-frame-size (from its `open`): longer transfers are
    /// split into several frames.
    pub max_frame_size: u32,
    /// Dispositions weft owes the client (a terminal outcome it did not
    /// settle): (channel, first, last, the outcome to echo).
    settle_due: Vec<(u16, u32, u32, Outcome)>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            sessions: Vec::new(),
            links: Vec::new(),
            next_link: 0,
            queued: 0,
            queued_bytes: 0,
            unsettled: 0,
            max_frame_size: u32::MAX,
            settle_due: Vec::new(),
        }
    }
}

/// The frame header and the transfer performative, at most (list8 with
/// six fields, four-byte tag).
const TRANSFER_OVERHEAD_MAX: usize = 8 + 3 + 3 + 5 + 5 + 6 + 1 + 1 + 1;

/// Bytes one delivery takes on the wire (one frame; a split one takes a
/// few more, counted the same on queue and dequeue).
pub fn wire_len(event: &Event, qos: u8, delivery_count: u32) -> usize {
    TRANSFER_OVERHEAD_MAX + crate::amqp::message::message_len(event, qos, delivery_count)
}

impl Outbound {
    /// Events waiting for credit, all links.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Their wire bytes (as [`wire_len`] counted them).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Deliveries sent and not settled.
    pub fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// A session began: `incoming_window` is the client's, `next_outgoing_id`
    /// weft's first transfer-id (as its `begin` said).
    pub fn begin(&mut self, channel: u16, incoming_window: u32, next_outgoing_id: u32) {
        self.sessions.retain(|s| s.channel != channel);
        self.sessions.push(Session {
            channel,
            next_outgoing_id,
            next_delivery_id: 0,
            remote_incoming_window: incoming_window,
            next_incoming_id: 0,
            incoming_window: 0,
            unsettled: BTreeMap::new(),
        });
    }

    /// weft's incoming side of a session, as its machine keeps it (written
    /// in the flows this sends).
    pub fn set_incoming(&mut self, channel: u16, next_incoming_id: u32, incoming_window: u32) {
        if let Some(s) = self.session_mut(channel) {
            s.next_incoming_id = next_incoming_id;
            s.incoming_window = incoming_window;
        }
    }

    /// A session ended: its links' leftovers (the caller removed the links
    /// first through `Unsubscribe`; any left are dropped here).
    pub fn end(&mut self, channel: u16) -> Leftover {
        let mut left = Leftover::default();
        // No frame may follow the end on its channel (2.5.3).
        self.settle_due.retain(|d| d.0 != channel);
        let handles: Vec<u32> = self
            .links
            .iter()
            .filter(|l| l.channel == channel)
            .map(|l| l.handle)
            .collect();
        for handle in handles {
            let l = self.detach(channel, handle);
            left.unsettled += l.unsettled;
            left.events.extend(l.events);
        }
        if let Some(at) = self.sessions.iter().position(|s| s.channel == channel) {
            let s = self.sessions.swap_remove(at);
            self.unsettled -= s.unsettled.len();
            left.unsettled += s.unsettled.len();
            left.events.extend(
                s.unsettled
                    .into_values()
                    .map(|u| (u.event, u.qos, u.delivery_count)),
            );
        }
        left
    }

    /// A receiver link attached (weft sends on it): no credit until the
    /// client's flow.
    pub fn attach(&mut self, channel: u16, handle: u32, qos: u8) {
        debug_assert!(self.link(channel, handle).is_none(), "handle in use");
        self.links.push(Link {
            channel,
            handle,
            qos,
            credit: 0,
            delivery_count: 0,
            drain: false,
            flow_due: false,
            queue: VecDeque::new(),
            resends: 0,
        });
    }

    /// A receiver link went away: its unsettled deliveries (oldest first)
    /// then its queue, for the caller to hand on, keep or drop.
    pub fn detach(&mut self, channel: u16, handle: u32) -> Leftover {
        let mut left = Leftover::default();
        if let Some(s) = self.sessions.iter_mut().find(|s| s.channel == channel) {
            let ids: Vec<u32> = s
                .unsettled
                .iter()
                .filter(|(_, u)| u.handle == handle)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let u = s.unsettled.remove(&id).expect("listed");
                left.events.push((u.event, u.qos, u.delivery_count));
            }
            left.unsettled = left.events.len();
            self.unsettled -= left.unsettled;
        }
        if let Some(at) = self
            .links
            .iter()
            .position(|l| l.channel == channel && l.handle == handle)
        {
            let link = self.links.swap_remove(at);
            for w in link.queue {
                self.queued -= 1;
                self.queued_bytes -= w.wire_len;
                left.events.push((w.event, w.qos, w.delivery_count));
            }
        }
        left
    }

    /// Queues an event for a link; false (nothing queued) if the link is
    /// gone. Its wire bytes are [`wire_len`].
    pub fn enqueue(&mut self, channel: u16, handle: u32, event: Event, qos: u8) -> bool {
        self.enqueue_counted(channel, handle, event, qos, 0, false)
    }

    /// [`Outbound::enqueue`] of an event whose [`wire_len`] at `qos` (and
    /// delivery-count 0) the caller counted already: not counted again.
    pub fn enqueue_sized(
        &mut self,
        channel: u16,
        handle: u32,
        event: Event,
        qos: u8,
        len: usize,
    ) -> bool {
        self.enqueue_inner(channel, handle, event, qos, 0, false, Some(len))
    }

    /// Queues a delivery again (a durable link's kept backlog, a resend):
    /// `front` puts it after the resends waiting, before the rest.
    pub fn enqueue_counted(
        &mut self,
        channel: u16,
        handle: u32,
        event: Event,
        qos: u8,
        delivery_count: u32,
        front: bool,
    ) -> bool {
        self.enqueue_inner(channel, handle, event, qos, delivery_count, front, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue_inner(
        &mut self,
        channel: u16,
        handle: u32,
        event: Event,
        qos: u8,
        delivery_count: u32,
        front: bool,
        counted: Option<usize>,
    ) -> bool {
        let Some(link) = self.link_mut(channel, handle) else {
            return false;
        };
        let counted = counted.filter(|_| qos <= link.qos);
        let qos = qos.min(link.qos);
        let len = counted.unwrap_or_else(|| wire_len(&event, qos, delivery_count));
        let w = Waiting {
            event,
            qos,
            delivery_count,
            wire_len: len,
        };
        if front {
            link.queue.insert(link.resends, w);
            link.resends += 1;
        } else {
            link.queue.push_back(w);
        }
        self.queued += 1;
        self.queued_bytes += len;
        true
    }

    /// Drops from a link's queue the events `backlog` holds too (the same
    /// event, by its shared bytes): a durable link's new subscription and
    /// its kept one both got them while both were subscribed.
    pub fn drop_twins(
        &mut self,
        channel: u16,
        handle: u32,
        backlog: &crate::mqtt::outbound::Backlog,
    ) {
        let key = |e: &Event| e.prefixed_topic_and_payload().as_ptr() as usize;
        let Some(link) = self.link_mut(channel, handle) else {
            return;
        };
        if link.queue.is_empty() {
            return;
        }
        let twins: hashbrown::HashSet<usize> = backlog
            .inflight
            .iter()
            .map(|f| key(&f.event))
            .chain(backlog.queued.iter().map(|(e, _)| key(e)))
            .collect();
        let mut gone = (0, 0);
        link.queue.retain(|w| {
            let twin = twins.contains(&key(&w.event));
            if twin {
                gone.0 += 1;
                gone.1 += wire_len(&w.event, w.qos, w.delivery_count);
            }
            !twin
        });
        link.resends = link.resends.min(link.queue.len());
        self.queued -= gone.0;
        self.queued_bytes -= gone.1;
    }

    /// The client's flow: the session part (its incoming window) and, when
    /// it names a receiver link, the link's credit (OASIS AMQP 1.0, 2.6.7:
    /// link-credit = the receiver's delivery-count + its link-credit −
    /// weft's delivery-count), drain and echo. True when something may be
    /// written now (the writer should wake).
    #[allow(clippy::too_many_arguments)]
    pub fn flow(
        &mut self,
        channel: u16,
        next_incoming_id: Option<u32>,
        incoming_window: u32,
        link: Option<(u32, Option<u32>, u32, bool, bool)>,
    ) -> bool {
        if let Some(s) = self.session_mut(channel) {
            // 2.5.6: the window the client grants counts from the id it
            // expects next (before any transfer: weft's first id).
            // Serial arithmetic (RFC 1982): transfers sent past the id
            // the client expects are in flight and use up its window; a
            // flow that lags them leaves none (never a wrapped huge one).
            let expected = next_incoming_id.unwrap_or(s.next_outgoing_id);
            s.remote_incoming_window = serial_left(incoming_window, s.next_outgoing_id, expected);
        }
        if let Some((handle, delivery_count, credit, drain, echo)) = link {
            if let Some(l) = self.link_mut(channel, handle) {
                let theirs = delivery_count.unwrap_or(0);
                // In flight: what weft sent the client has not counted
                // yet; more than the new credit leaves 0, never a clamp
                // to the credit granted.
                l.credit = serial_left(credit, l.delivery_count, theirs);
                l.drain = drain;
                l.flow_due |= echo;
                if drain && l.queue.is_empty() {
                    finish_drain(l);
                }
            }
        }
        self.ready()
    }

    /// Something can be written now: a flow or disposition due, or a
    /// queued delivery whose link has credit (the writer then wakes).
    pub fn ready(&self) -> bool {
        !self.settle_due.is_empty()
            || self.links.iter().any(|l| {
                l.flow_due || (!l.queue.is_empty() && l.credit > 0 && self.window(l.channel) > 0)
            })
    }

    /// The client's disposition of deliveries `first..=last` weft sent on
    /// `channel`. A terminal outcome ends a delivery (settled, or settled by
    /// weft in return when the client did not); released ones are sent
    /// again as they were, modified ones with delivery-count + 1 or handed
    /// on (undeliverable-here). Ids not unsettled are ignored (2.6.12:
    /// already settled).
    pub fn settle(
        &mut self,
        channel: u16,
        first: u32,
        last: u32,
        settled: bool,
        outcome: Option<Outcome>,
    ) -> Settled {
        let mut done = Settled::default();
        let Some(at) = self.sessions.iter().position(|s| s.channel == channel) else {
            return done;
        };
        let outcome = match (outcome, settled) {
            (Some(o), _) => o,
            // Settled with no outcome: the client is done with it.
            (None, true) => Outcome::Accepted,
            // A non-terminal state (received): nothing changes.
            (None, false) => return done,
        };
        // The ids wrapped within the range: two spans. Taken one at a time
        // (no list of ids per disposition: the hot path of unsettled links).
        let spans = if first <= last {
            [(first, last), (1, 0)]
        } else {
            [(first, u32::MAX), (0, last)]
        };
        let any = spans.iter().any(|&(lo, hi)| {
            lo <= hi && self.sessions[at].unsettled.range(lo..=hi).next().is_some()
        });
        if !settled && any {
            self.settle_due.push((channel, first, last, outcome));
        }
        for (lo, hi) in spans {
            if lo > hi {
                continue;
            }
            while let Some(id) = self.sessions[at]
                .unsettled
                .range(lo..=hi)
                .next()
                .map(|(id, _)| *id)
            {
                let mut u = self.sessions[at].unsettled.remove(&id).expect("listed");
                self.unsettled -= 1;
                let again = match outcome {
                    Outcome::Accepted => {
                        done.accepted += 1;
                        false
                    }
                    Outcome::Rejected => {
                        done.rejected += 1;
                        false
                    }
                    Outcome::Released => true,
                    Outcome::Modified {
                        undeliverable_here: true,
                        ..
                    } => {
                        done.undeliverable.push((u.handle, u.event));
                        continue;
                    }
                    Outcome::Modified {
                        delivery_failed, ..
                    } => {
                        if delivery_failed {
                            u.delivery_count += 1;
                        }
                        true
                    }
                };
                // Sent again before what waits, oldest first (each after
                // the resends queued before it).
                if again
                    && self.enqueue_counted(
                        channel,
                        u.handle,
                        u.event,
                        u.qos,
                        u.delivery_count,
                        true,
                    )
                {
                    done.requeued += 1;
                }
            }
        }
        done
    }

    /// Writes what may go now into `buf`, up to `batch_bytes_max`: flows
    /// and dispositions due, then transfers, round-robin over the links,
    /// each while its link has credit, its session's window is open and
    /// (unsettled) the unsettled map has room under `inflight_max`.
    /// `born` gets each written event's `born_ns`. Returns the bytes taken
    /// off the queue count (as [`wire_len`] counted them).
    pub fn write(
        &mut self,
        buf: &mut Vec<u8>,
        batch_bytes_max: usize,
        inflight_max: usize,
        born: &mut Vec<u64>,
    ) -> usize {
        for (channel, first, last, outcome) in self.settle_due.drain(..) {
            write_disposition(buf, channel, first, last, outcome);
        }
        let mut dequeued = 0;
        let n = self.links.len();
        if n == 0 {
            return 0;
        }
        let start = self.next_link % n;
        let mut progress = true;
        while progress && buf.len() < batch_bytes_max {
            progress = false;
            for i in 0..n {
                if buf.len() >= batch_bytes_max {
                    break;
                }
                let at = (start + i) % n;
                if self.write_one(at, buf, inflight_max, born, &mut dequeued) {
                    progress = true;
                }
            }
        }
        self.next_link = start + 1;
        // Flows last: a drain finished by this batch goes out with it.
        for at in 0..n {
            let l = &mut self.links[at];
            if l.drain && l.queue.is_empty() && l.credit > 0 {
                finish_drain(l);
            }
            if l.flow_due {
                l.flow_due = false;
                let (channel, handle, count, credit, drain, available) = (
                    l.channel,
                    l.handle,
                    l.delivery_count,
                    l.credit,
                    l.drain,
                    l.queue.len() as u32,
                );
                if credit == 0 {
                    // The drain is answered by this flow (drain set).
                    l.drain = false;
                }
                if let Some(s) = self.sessions.iter().find(|s| s.channel == channel) {
                    write_flow(buf, s, handle, count, credit, available, drain);
                }
            }
        }
        dequeued
    }

    /// One delivery of link `at`, if it may go; true if written.
    fn write_one(
        &mut self,
        at: usize,
        buf: &mut Vec<u8>,
        inflight_max: usize,
        born: &mut Vec<u64>,
        dequeued: &mut usize,
    ) -> bool {
        let l = &self.links[at];
        let Some(front) = l.queue.front() else {
            return false;
        };
        if l.credit == 0 || (front.qos > 0 && self.unsettled >= inflight_max) {
            return false;
        }
        let channel = l.channel;
        let Some(si) = self.sessions.iter().position(|s| s.channel == channel) else {
            return false;
        };
        let len = front.wire_len - TRANSFER_OVERHEAD_MAX;
        let frame_room = (self.max_frame_size as usize).saturating_sub(TRANSFER_OVERHEAD_MAX);
        let frames = len.div_ceil(frame_room.max(1)).max(1);
        if (self.sessions[si].remote_incoming_window as usize) < frames {
            return false;
        }
        let l = &mut self.links[at];
        let w = l.queue.pop_front().expect("front exists");
        l.resends = l.resends.saturating_sub(1);
        l.credit -= 1;
        l.delivery_count = l.delivery_count.wrapping_add(1);
        let handle = l.handle;
        self.queued -= 1;
        let queued_len = w.wire_len;
        self.queued_bytes -= queued_len;
        *dequeued += queued_len;
        if w.event.expired() {
            // Waited past its expiry: not sent (the credit is kept).
            let l = &mut self.links[at];
            l.credit += 1;
            l.delivery_count = l.delivery_count.wrapping_sub(1);
            return true;
        }
        born.push(w.event.born_ns);
        let s = &mut self.sessions[si];
        let delivery_id = s.next_delivery_id;
        s.next_delivery_id = s.next_delivery_id.wrapping_add(1);
        let settled = w.qos == 0;
        write_transfer(
            buf,
            s,
            handle,
            delivery_id,
            settled,
            frame_room,
            &w.event,
            w.qos,
            w.delivery_count,
        );
        if !settled {
            s.unsettled.insert(
                delivery_id,
                Unsettled {
                    handle,
                    event: w.event,
                    qos: w.qos,
                    delivery_count: w.delivery_count,
                },
            );
            self.unsettled += 1;
        }
        true
    }

    /// weft's next transfer-id on a session (the machine's flows carry it).
    pub fn next_outgoing_id(&self, channel: u16) -> Option<u32> {
        self.sessions
            .iter()
            .find(|s| s.channel == channel)
            .map(|s| s.next_outgoing_id)
    }

    /// (channel, weft's next transfer-id) of every session.
    pub fn each_outgoing(&self, f: &mut impl FnMut(u16, u32)) {
        for s in &self.sessions {
            f(s.channel, s.next_outgoing_id);
        }
    }

    fn session_mut(&mut self, channel: u16) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.channel == channel)
    }

    fn window(&self, channel: u16) -> u32 {
        self.sessions
            .iter()
            .find(|s| s.channel == channel)
            .map_or(0, |s| s.remote_incoming_window)
    }

    fn link(&self, channel: u16, handle: u32) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| l.channel == channel && l.handle == handle)
    }

    fn link_mut(&mut self, channel: u16, handle: u32) -> Option<&mut Link> {
        self.links
            .iter_mut()
            .find(|l| l.channel == channel && l.handle == handle)
    }
}

/// What is left of `granted` (counted from the peer's `theirs`) once the
/// ones weft sent past it (up to `ours`) are taken off, in serial
/// arithmetic (RFC 1982, as 2.5.6 and 2.6.7 ask): `ours` behind `theirs`
/// (a confused peer) leaves `granted`; more in flight than granted, 0.
fn serial_left(granted: u32, ours: u32, theirs: u32) -> u32 {
    let in_flight = ours.wrapping_sub(theirs);
    if (in_flight as i32) >= 0 {
        granted.saturating_sub(in_flight)
    } else {
        granted
    }
}

/// 2.6.7: a drain with nothing to send uses up the credit (delivery-count
/// advanced by it) and tells the client so.
fn finish_drain(l: &mut Link) {
    l.delivery_count = l.delivery_count.wrapping_add(l.credit);
    l.credit = 0;
    l.flow_due = true;
}

#[cfg(test)]
mod tests;
