//! The mailbox's side of AMQP: events queued for a receiver link wait in
//! the connection's `amqp::outbound` state (per link, for credit) rather
//! than in the mailbox's queue, but count against the same limits (the
//! mailbox's `bytes` and `len` include them); the client's flows and
//! dispositions reach that state through here, and wake the writer when
//! they let something go. A child of `mailbox`, so it reaches the queue
//! directly.
//!
//! Owns: nothing of its own; the state is `amqp::outbound`'s. Must not
//! touch: the router (a link's leftovers and undeliverable deliveries are
//! returned to the glue, which hands them on or drops them).

use super::{Delivery, Mailbox, Outbound};
use crate::amqp::outbound::{self, Leftover, Outcome, Settled};
use crate::event::Event;
use crate::mqtt::outbound::{Backlog, Flight};

impl Mailbox {
    /// `deliver`'s end for an AMQP link: queued with its link (past the
    /// limit checks `deliver` made; `len`: the wire length they counted,
    /// kept with the delivery so that it is not counted again).
    pub(super) fn queue_amqp(
        &self,
        out: &mut Outbound,
        (channel, handle): (u16, u32),
        event: Event,
        qos: u8,
        len: usize,
        outcome: Delivery,
    ) -> Delivery {
        let Some(amqp) = out.amqp.as_deref_mut() else {
            debug_assert!(false, "an AMQP delivery to a session of another protocol");
            return Delivery::Dropped;
        };
        let before = amqp.queued_bytes();
        if !amqp.enqueue_sized(channel, handle, event, qos, len) {
            // The link detached while the event was on its way.
            self.dropped.set(self.dropped.get() + 1);
            return Delivery::Dropped;
        }
        out.bytes += amqp.queued_bytes() - before;
        if amqp.ready() {
            if let Some(w) = out.writer.take() {
                w.wake();
            }
        }
        outcome
    }

    /// Runs `f` on the connection's AMQP state, keeping the queued bytes
    /// in step and waking the writer when something may go.
    fn with_amqp<R>(&self, f: impl FnOnce(&mut outbound::Outbound) -> R) -> Option<R> {
        let mut out = self.out.borrow_mut();
        let out = &mut *out;
        let amqp = out.amqp.as_deref_mut()?;
        let before = amqp.queued_bytes();
        let r = f(amqp);
        let after = amqp.queued_bytes();
        out.bytes = out.bytes + after - before;
        if amqp.ready() {
            if let Some(w) = out.writer.take() {
                w.wake();
            }
        }
        Some(r)
    }

    /// The client's max-frame-size (its `open`).
    pub fn amqp_max_frame_size(&self, size: u32) {
        self.with_amqp(|a| a.max_frame_size = size);
    }

    pub fn amqp_begin(&self, channel: u16, incoming_window: u32, next_outgoing_id: u32) {
        self.with_amqp(|a| a.begin(channel, incoming_window, next_outgoing_id));
    }

    /// weft's incoming side of a session, as its machine keeps it.
    pub fn amqp_set_incoming(&self, channel: u16, next_incoming_id: u32, incoming_window: u32) {
        self.with_amqp(|a| a.set_incoming(channel, next_incoming_id, incoming_window));
    }

    /// weft's next transfer-id on a session.
    pub fn amqp_next_outgoing_id(&self, channel: u16) -> Option<u32> {
        self.out.borrow().amqp.as_ref()?.next_outgoing_id(channel)
    }

    /// weft's next transfer-id of every session, for the machine's flows
    /// (no allocation: called before each feed).
    pub fn amqp_each_outgoing(&self, mut f: impl FnMut(u16, u32)) {
        if let Some(amqp) = self.out.borrow().amqp.as_ref() {
            amqp.each_outgoing(&mut f);
        }
    }

    pub fn amqp_end(&self, channel: u16) -> Leftover {
        self.with_amqp(|a| a.end(channel)).unwrap_or_default()
    }

    pub fn amqp_attach(&self, channel: u16, handle: u32, qos: u8) {
        self.with_amqp(|a| a.attach(channel, handle, qos));
    }

    pub fn amqp_detach(&self, channel: u16, handle: u32) -> Leftover {
        self.with_amqp(|a| a.detach(channel, handle))
            .unwrap_or_default()
    }

    /// A durable link's kept backlog on its next attach: queued before
    /// what waits (unsettled ones first, with their delivery-count + 1);
    /// an event that reached both the kept subscription and the new link
    /// (both subscribed for a moment) goes once.
    pub fn amqp_resume(&self, channel: u16, handle: u32, backlog: Backlog) {
        self.with_amqp(|a| {
            a.drop_twins(channel, handle, &backlog);
            for (event, qos, count) in resumed(backlog) {
                a.enqueue_counted(channel, handle, event, qos, count, true);
            }
        });
    }

    pub fn amqp_flow(
        &self,
        channel: u16,
        next_incoming_id: Option<u32>,
        incoming_window: u32,
        link: Option<(u32, Option<u32>, u32, bool, bool)>,
    ) {
        self.with_amqp(|a| a.flow(channel, next_incoming_id, incoming_window, link));
    }

    pub fn amqp_settle(
        &self,
        channel: u16,
        first: u32,
        last: u32,
        settled: bool,
        outcome: Option<Outcome>,
    ) -> Settled {
        self.with_amqp(|a| a.settle(channel, first, last, settled, outcome))
            .unwrap_or_default()
    }
}

/// A durable link's leftovers as a held session's backlog: the unsettled
/// ones "in flight" (the id field holds the delivery-count they were sent
/// with: a held session never sends, and the next attach sends them with
/// the count + 1), the queued ones queued.
pub fn held(left: Leftover) -> Backlog {
    let mut backlog = Backlog::default();
    for (i, (event, qos, count)) in left.events.into_iter().enumerate() {
        if i < left.unsettled {
            backlog.inflight.push(Flight {
                id: count.min(u32::from(u16::MAX)) as u16,
                event,
                qos: qos.max(1),
                released: false,
            });
        } else {
            backlog.queued.push((event, qos.max(1)));
        }
    }
    backlog
}

/// A held backlog as a reattached link's deliveries: (event, qos,
/// delivery-count), the ones sent before first with their count + 1.
fn resumed(backlog: Backlog) -> impl Iterator<Item = (Event, u8, u32)> {
    let sent = backlog
        .inflight
        .into_iter()
        .map(|f| (f.event, f.qos, u32::from(f.id) + 1));
    sent.chain(backlog.queued.into_iter().map(|(e, q)| (e, q, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u8) -> Event {
        Event::new("t/1", &[n], 1, false)
    }

    /// Kept and resumed: the sent ones first with their count + 1, then
    /// the waiting ones with theirs at 0; all unsettled.
    #[test]
    fn a_kept_link_resumes_its_sent_ones_first_counted_once_more() {
        let left = Leftover {
            events: vec![(event(1), 1, 0), (event(2), 1, 3), (event(3), 0, 0)],
            unsettled: 2,
        };
        let backlog = held(left);
        assert_eq!((backlog.inflight.len(), backlog.queued.len()), (2, 1));
        let got: Vec<(u8, u8, u32)> = resumed(backlog)
            .map(|(e, q, c)| (e.payload()[0], q, c))
            .collect();
        assert_eq!(got, [(1, 1, 1), (2, 1, 4), (3, 1, 0)]);
    }
}
