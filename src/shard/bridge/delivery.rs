//! The bridge's QoS 1 guarantees beyond one link (DESIGN.md "Delivery"):
//! which acknowledgements a copy holds back (`oblige`/`release`: a copy
//! that came over a link is acknowledged there once the copies made of it
//! are acknowledged by their next hops), copies parked for routers no
//! link leads to yet (`park`, `retry_parked`, `expire_parked`), holds that
//! end once their peer announced everything again, and the flow control
//! that makes this router's publishers wait for room in a live link's
//! resend store (`room`).
//!
//! Owns the [`Upstream`] and [`Parked`] types; the state is the `Bridge`'s
//! fields, and this file is the part of its `impl` that keeps those
//! promises, apart from the link sockets and frames (`connection.rs`,
//! `reader.rs`, `writer.rs`).

use super::*;

/// A QoS 1 copy that came over a link (its sequence number there): this
/// router acknowledges it only once every copy it made of it is
/// acknowledged by the next hop, dropped for good, or delivered here (see
/// `oblige`).
pub(super) type Upstream = (LinkId, u64);

/// A QoS 1 copy kept for destinations that no link leads to yet.
pub(super) struct Parked {
    pub(super) copy: EventCopy,
    /// The link it came in on (never sent back there).
    pub(super) from: Option<LinkId>,
    pub(super) upstream: Option<Upstream>,
    pub(super) event: Event,
    pub(super) stamp: u64,
    pub(super) until: Instant,
}

impl Bridge {
    /// A QoS 1 copy of the event being routed is kept (in a resend store,
    /// or parked): its upstream sequence number is not acknowledged until
    /// the copy is released. Hop-by-hop acknowledgement then means what a
    /// publisher's PUBACK promises: a router that crashes (`kill -9`) with
    /// copies not yet acknowledged by its next hops has not acknowledged
    /// them either, so the previous hop still has them and sends them
    /// again when it returns (the destinations drop duplicates).
    pub(super) fn oblige(&self) -> Option<Upstream> {
        let (link, seq) = self.upstream.get()?;
        if let Some(l) = self.links.borrow().get(&link) {
            l.session.borrow_mut().oblige(seq);
        }
        Some((link, seq))
    }

    /// The kept copy of `upstream` is acknowledged, or dropped for good;
    /// the acknowledgement goes out at the next `flush_acks`.
    pub(super) fn release(&self, upstream: Option<Upstream>) {
        let Some((link, seq)) = upstream else {
            return;
        };
        let links = self.links.borrow();
        let Some(l) = links.get(&link) else {
            return; // that connection is gone: its peer resends anyway
        };
        if l.session.borrow_mut().release(seq) {
            self.acks_due.borrow_mut().push(link);
        }
    }

    /// Sends the acknowledgements that `release` made due.
    pub(super) fn flush_acks(&self) {
        let mut due = std::mem::take(&mut *self.acks_due.borrow_mut());
        due.sort_unstable();
        due.dedup();
        for id in due {
            let link = self.links.borrow().get(&id).cloned();
            if let Some(l) = link {
                self.ack_if_due(&l);
            }
        }
    }

    /// Acknowledges what `link` sent up to the first copy still owed.
    pub(super) fn ack_if_due(&self, link: &Link) {
        let mut out = crate::mesh::session::Actions::default();
        link.session.borrow_mut().ack_if_due(&mut out);
        link.carry_out(&mut out);
    }

    /// Three quarters of `mesh.unacked_max` (see `live_store_full`).
    pub(super) fn store_threshold(&self) -> usize {
        let max = self.config.mesh.unacked_max;
        (max - max / 4).max(1)
    }

    /// Whether the resend store of a link that is up is three quarters
    /// full (of `mesh.unacked_max`): the events this router's publishers
    /// hand to the mesh then wait (see `room`) instead of pushing the
    /// oldest copies out of the store, which would lose the ones never
    /// written yet although their publishers hold PUBACKs.
    pub fn live_store_full(&self) -> bool {
        let threshold = self.store_threshold();
        let outboxes = self.outboxes.borrow();
        self.links
            .borrow()
            .values()
            .any(|l| outboxes.get(&l.peer).is_some_and(|o| o.len() >= threshold))
    }

    /// Waits until no live link's resend store is full, for at most
    /// `limits.backpressure_pause_ms_max` (the publishers' pause policy:
    /// past it the store drops its oldest copies, counted, as before).
    /// The shard paths that hand events to the bridge call it, so the wait
    /// reaches the publishers (their readers stop), never a link reader:
    /// two link readers waiting on each other's acknowledgements could
    /// stall both directions.
    pub async fn room(&self) {
        if !self.store_filled.get() {
            return;
        }
        if !self.live_store_full() {
            self.store_filled.set(false);
            return;
        }
        self.room_waits.set(self.room_waits.get() + 1);
        let pause = Duration::from_millis(self.config.limits.backpressure_pause_ms_max);
        futures_lite::future::or(
            poll_fn(|cx| {
                if self.live_store_full() {
                    self.room_waiters.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }),
            glommio::timer::sleep(pause),
        )
        .await;
    }

    pub(super) fn wake_room(&self) {
        let waiters = std::mem::take(&mut *self.room_waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// The link up now to `peer`, if any.
    pub(super) fn live_link_to(&self, peer: &str) -> Option<Rc<Link>> {
        self.links
            .borrow()
            .values()
            .find(|l| l.peer == peer && !l.closed.get())
            .cloned()
    }

    /// Destinations no link leads to now (a router that just restarted
    /// has not heard from all its links yet; a router behind a held link
    /// is expected back). A QoS 1 copy has been acknowledged hop by hop
    /// already, so it is kept here for `mesh.link_hold_ms`, at most
    /// `mesh.unacked_max` of them (the oldest goes first), and goes on as
    /// soon as a route appears (`retry_parked`); a QoS 0 copy, a
    /// retained-store exchange, or any copy with holding off
    /// (`link_hold_ms = 0`) is dropped and counted in `no_route`.
    pub(super) fn park(&self, copy: EventCopy, from: Option<LinkId>, body: Option<&Body<'_>>) {
        let lost = (copy.dests.len() + copy.groups.len()) as u64;
        let hold_ms = self.config.mesh.link_hold_ms;
        let body = match body {
            Some(b)
                if (b.qos > 0 || b.retain)
                    && !b.sync
                    && hold_ms > 0
                    && !self.ctx.stopping.get() =>
            {
                b
            }
            _ => {
                self.router.borrow_mut().count_no_route(lost);
                return;
            }
        };
        let until = self
            .reparking
            .get()
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(hold_ms));
        let event = body.to_event(&copy.topic, self.origin, now_ns());
        let mut parked = self.parked.borrow_mut();
        if parked.len() >= self.config.mesh.unacked_max {
            if let Some(old) = parked.pop_front() {
                let n = old.copy.dests.len() + old.copy.groups.len();
                self.router.borrow_mut().count_no_route(n as u64);
                self.release(old.upstream);
                tracing::warn!(
                    origin = old.copy.origin,
                    topic = old.copy.topic,
                    max = self.config.mesh.unacked_max,
                    "mesh: a copy waiting for a route dropped (mesh.unacked_max reached)"
                );
            }
        }
        let upstream = self.oblige();
        parked.push_back(Parked {
            copy,
            from,
            upstream,
            event,
            stamp: body.stamp,
            until,
        });
    }

    /// Sends on the parked copies whose destinations have a route now (in
    /// the order they arrived); the others stay, with their deadline.
    pub(super) fn retry_parked(&self) {
        if !self.parked_dirty.replace(false) {
            return;
        }
        let waiting = std::mem::take(&mut *self.parked.borrow_mut());
        for p in waiting {
            self.reparking.set(Some(p.until));
            self.upstream.set(p.upstream);
            let mut out = Vec::new();
            self.router.borrow_mut().retry(p.copy, p.from, &mut out);
            let body = Body::of_event(&p.event).stamped(p.stamp, false);
            // The new copies take over the obligation before it is let go.
            self.apply(out, Some(&body));
            self.release(p.upstream);
        }
        self.upstream.set(None);
        self.reparking.set(None);
        self.flush_acks();
    }

    /// Drops the parked copies whose `mesh.link_hold_ms` has passed.
    pub(super) fn expire_parked(&self) {
        let now = Instant::now();
        let mut dropped = 0u64;
        let mut parked = self.parked.borrow_mut();
        let mut released = Vec::new();
        while parked.front().is_some_and(|p| p.until <= now) {
            let p = parked.pop_front().expect("checked");
            dropped += (p.copy.dests.len() + p.copy.groups.len()) as u64;
            released.push(p.upstream);
        }
        drop(parked);
        for upstream in released {
            self.release(upstream);
        }
        self.flush_acks();
        if dropped > 0 {
            self.router.borrow_mut().count_no_route(dropped);
            tracing::warn!(
                destinations = dropped,
                hold_ms = self.config.mesh.link_hold_ms,
                "mesh: QoS 1 copies dropped: no route to their routers within mesh.link_hold_ms"
            );
        }
    }

    /// Held links that have no route left (their peer is back and has
    /// announced everything they kept) end.
    pub(super) fn end_empty_holds(&self) {
        let mut out = Vec::new();
        let ended = self.router.borrow_mut().end_empty_holds(&mut out);
        for id in ended {
            self.held.borrow_mut().remove(&id);
        }
        self.apply(out, None);
    }

    // ------------------------------------------------------- persistence

    /// The resend stores a restart found in the log (persistence): sent
    /// again when a link to their peer comes up.
    pub(super) fn restore_outboxes(&self, outboxes: crate::persist::start::Outboxes) {
        let mut stores = self.outboxes.borrow_mut();
        for (peer, kept) in outboxes {
            tracing::info!(
                peer = &*peer,
                copies = kept.len(),
                "persistence: QoS 1 copies for a peer router restored"
            );
            let ob = stores.entry(peer.into()).or_default();
            for (seq, frame) in kept {
                ob.restore(seq, frame);
            }
        }
    }

    /// Journals a copy kept for `peer` (persistence on).
    pub(super) fn journal_keep(&self, peer: &str, seq: u64, frame: &[u8]) {
        if let Some(log) = self.ctx.log() {
            let _ = crate::persist::records::Record::MeshKeep {
                peer: peer.into(),
                seq,
                frame: frame.to_vec(),
            }
            .append_to(log);
        }
    }

    /// Journals that `peer`'s store holds nothing up to `upto` any more.
    pub(super) fn journal_gone(&self, peer: &str, upto: u64) {
        if let Some(log) = self.ctx.log() {
            let _ = crate::persist::records::Record::MeshGone {
                peer: peer.into(),
                upto,
            }
            .append_to(log);
        }
    }

    /// The resend stores as records, for a compaction of the bridge's log.
    pub(super) fn outbox_records(&self) -> Vec<(u8, Vec<u8>)> {
        let mut records = Vec::new();
        for (peer, ob) in self.outboxes.borrow().iter() {
            for kept in ob.iter() {
                records.push(
                    crate::persist::records::Record::MeshKeep {
                        peer: peer.as_str().into(),
                        seq: kept.seq,
                        frame: kept.frame.clone(),
                    }
                    .to_bytes(),
                );
            }
        }
        records
    }
}
