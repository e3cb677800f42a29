//! A link's write side: frames and event copies appended to the link's
//! buffer (bounded by `mesh.outbound_bytes_max`: QoS 0 past it is dropped
//! and counted, QoS 1 waits in the peer's resend store), copies for held
//! links kept for the peer's return, the retained-store exchange fed as
//! the buffer drains, and the write loop that flushes the buffer in
//! batches (one write per batch, never per event).
//!
//! Owns: what goes into a link's outbound buffer and the write loop. Must
//! not read the socket nor route: it sends what the routing core decided.

use super::stream::{flush, LinkIo};
use super::*;

impl Bridge {
    /// Queues a retained-store entry for the exchange on `link`; the queue
    /// is bounded (twice `limits.retained_messages_max`), past which the
    /// entry waits for the next time the link comes up (counted in the
    /// link's `dropped`).
    pub(super) fn queue_sync(&self, link: &Link, event: Event, stamp: u64) {
        let max = 2 * self.config.limits.retained_messages_max.max(1);
        let mut queue = link.sync.borrow_mut();
        if queue.len() >= max {
            link.slot.dropped.set(link.slot.dropped.get() + 1);
            return;
        }
        queue.push_back((event, stamp));
        drop(queue);
        link.wake_writer();
    }

    /// Sends the next entries of the retained-store exchange queued for
    /// `link`, while its buffer is under half of `mesh.outbound_bytes_max`
    /// (the rest follows as it drains).
    pub(super) fn feed_sync(&self, link: &Link) {
        let budget = self.config.mesh.outbound_bytes_max / 2;
        while !link.closed.get() && link.out.borrow().len() < budget {
            let Some((event, stamp)) = link.sync.borrow_mut().pop_front() else {
                return;
            };
            if event.expired() {
                continue;
            }
            let id = self.next_event.get();
            self.next_event.set(id + 1);
            let mut out = Vec::new();
            if self
                .router
                .borrow_mut()
                .sync_retained(link.id, event.topic(), id, &mut out)
            {
                self.retained_sent.set(self.retained_sent.get() + 1);
            }
            let body = Body::of_event(&event).stamped(stamp, true);
            self.apply(out, Some(&body));
        }
    }

    pub(super) fn push_frame(&self, link: &Link, frame: &Frame<'_>) {
        if link.closed.get() {
            return;
        }
        if let Err(e) = link::encode(frame, &mut link.out.borrow_mut()) {
            tracing::warn!(peer = link.peer, error = %e, frame = frame.name(), "mesh: frame not sent");
            return;
        }
        link.wake_writer();
    }

    pub(super) fn push_event(&self, link: &Link, copy: &CopyRef<'_>, body: &Body<'_>) {
        if link.closed.get() {
            // Going down: a QoS 1 copy waits for the peer's return.
            self.hold_event(&link.peer, copy, body);
            return;
        }
        let trace = &self.ctx.global.trace;
        if trace.exporting()
            && (body.meta.headers.is_some() || !body.meta.user_properties.is_empty())
        {
            trace.child_of(
                crate::trace::hop::find(
                    crate::trace::hop::w3c_props(body.meta.user_properties.iter().copied()),
                    body.meta.headers,
                ),
                crate::trace::SpanKind::LinkOut,
                now_ns(),
                copy.topic,
                &link.peer,
            );
        }
        let slot = &link.slot;
        let full = link.out.borrow().len() >= self.config.mesh.outbound_bytes_max;
        // A retained message crosses links as a QoS 1 copy does, whatever
        // its QoS: lost, a router whose store exchange already ran would
        // miss it for good (found by the mesh simulation, seed 1922).
        let reliable = (body.qos > 0 || body.retain) && !body.sync;
        if full && !reliable {
            slot.unsent.set(slot.unsent.get() + 1);
            return;
        }
        if !reliable {
            let frame = copy_frame(copy, 0, body);
            if let Err(e) = link::encode(&frame, &mut link.out.borrow_mut()) {
                tracing::warn!(peer = link.peer, error = %e, "mesh: event not sent");
                return;
            }
            link.wake_writer();
            return;
        }
        let mut outboxes = self.outboxes.borrow_mut();
        // No key copied per event: the peer's store exists after its first.
        if !outboxes.contains_key(&link.peer) {
            outboxes.insert(link.peer.clone(), Outbox::default());
        }
        let ob = outboxes.get_mut(&link.peer).expect("inserted above");
        let seq = ob.next_seq();
        let frame = copy_frame(copy, seq, body);
        let mut encoded = Vec::with_capacity(link::encoded_len(&frame));
        if let Err(e) = link::encode(&frame, &mut encoded) {
            tracing::warn!(peer = link.peer, error = %e, "mesh: event not sent");
            return;
        }
        self.journal_keep(&link.peer, seq, &encoded);
        let upstream = self.oblige();
        let mut out = link.out.borrow_mut();
        let room = (!full).then_some(&mut *out);
        let evicted = ob.keep(encoded, upstream, room, self.config.mesh.unacked_max);
        drop(out);
        if evicted.is_some() {
            self.journal_gone(&link.peer, ob.first_seq().map_or(seq, |f| f - 1));
        }
        if ob.len() >= self.store_threshold() {
            self.store_filled.set(true);
        }
        drop(outboxes);
        if let Some(old) = evicted {
            self.release(old.upstream);
            if old.unsent {
                // Never sent: lost. The routing core counted it out; as
                // `unsent` it leaves `events_out` (and shows in `dropped`),
                // so the peer's `events_in` still balances it.
                slot.unsent.set(slot.unsent.get() + 1);
            } else {
                // Sent, but no longer resent if the link drops.
                slot.evicted.set(slot.evicted.get() + 1);
            }
        }
        link.wake_writer();
    }

    /// A copy for a held link (down, its peer expected back): QoS 1 waits
    /// in the peer's resend store, sent when the peer returns; QoS 0 is
    /// dropped and counted.
    pub(super) fn hold_event(&self, peer: &str, copy: &CopyRef<'_>, body: &Body<'_>) {
        // A store-exchange copy is never kept: the next link-up exchanges
        // the stores again.
        if (body.qos == 0 && !body.retain) || body.sync {
            self.held_dropped.set(self.held_dropped.get() + 1);
            return;
        }
        let mut outboxes = self.outboxes.borrow_mut();
        if !outboxes.contains_key(peer) {
            outboxes.insert(peer.to_owned(), Outbox::default());
        }
        let ob = outboxes.get_mut(peer).expect("inserted above");
        let seq = ob.next_seq();
        let frame = copy_frame(copy, seq, body);
        let mut encoded = Vec::with_capacity(link::encoded_len(&frame));
        if let Err(e) = link::encode(&frame, &mut encoded) {
            tracing::warn!(peer, error = %e, "mesh: event not kept");
            return;
        }
        self.journal_keep(peer, seq, &encoded);
        let upstream = self.oblige();
        let evicted = ob.keep(encoded, upstream, None, self.config.mesh.unacked_max);
        if evicted.is_some() {
            self.journal_gone(peer, ob.first_seq().map_or(seq, |f| f - 1));
        }
        if ob.len() >= self.store_threshold() {
            self.store_filled.set(true);
        }
        drop(outboxes);
        if let Some(old) = evicted {
            self.release(old.upstream);
            self.held_dropped.set(self.held_dropped.get() + 1);
        }
    }

    /// Moves QoS 1 copies waiting for room into the link's buffer.
    pub(super) fn refill(&self, link: &Link) {
        self.refill_outbox(link);
        self.feed_sync(link);
    }

    pub(super) fn refill_outbox(&self, link: &Link) {
        if let Some(ob) = self.outboxes.borrow_mut().get_mut(&link.peer) {
            let max = self.config.mesh.outbound_bytes_max;
            ob.refill(&mut link.out.borrow_mut(), max);
        }
    }
}

/// The link frame of one copy (`seq` 0 for QoS 0), borrowing the copy's
/// lists (no allocation).
pub(super) fn copy_frame<'a>(copy: &CopyRef<'a>, seq: u64, body: &'a Body<'a>) -> Frame<'a> {
    Frame::Event(link::Event {
        id: copy.id,
        seq,
        origin: copy.origin,
        hops: copy.hops,
        dests: link::Strs::Strings(copy.dests),
        groups: link::Pairs::Strings(copy.groups),
        topic: copy.topic,
        qos: body.qos,
        retain: body.retain,
        stamp: body.stamp,
        sync: body.sync,
        payload: body.payload,
        meta: body.meta.clone(),
    })
}

/// Writes what the link buffers, in batches, until the link closes (then
/// what is left, bounded by a short time, for a final CLOSE).
pub(super) async fn write_loop(bridge: Rc<Bridge>, link: Rc<Link>, stream: Rc<LinkIo>) {
    let mut spare = Vec::new();
    loop {
        let batch = poll_fn(|cx| {
            bridge.refill(&link);
            let mut out = link.out.borrow_mut();
            if !out.is_empty() {
                return Poll::Ready(Some(std::mem::replace(
                    &mut *out,
                    std::mem::take(&mut spare),
                )));
            }
            if link.closed.get() {
                return Poll::Ready(None);
            }
            link.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        let Some(mut batch) = batch else {
            break;
        };
        let write = async {
            write_all(&stream, &batch).await?;
            flush(&stream).await
        };
        let ok = if link.closed.get() {
            // Last words (CLOSE) get a short, bounded chance.
            futures_lite::future::or(async { write.await.is_ok() }, async {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                false
            })
            .await
        } else {
            write.await.is_ok()
        };
        if !ok {
            link.end(LinkCloseReason::WriteError, "write failed", false);
            break;
        }
        batch.clear();
        spare = batch;
    }
    use std::os::fd::BorrowedFd;
    let fd = stream.borrow().raw_fd();
    // SAFETY: the fd stays open while `stream` lives (it is ours).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Both);
}
