//! A link's read side: reads in bounded batches (yielding after
//! `YIELD_BYTES`), decodes frames, feeds them to the link session and
//! carries out its requests: events routed and delivered to this router's
//! shards (waiting on a full ring, which is the backpressure the peer
//! feels through TCP), interest for the routing core, acknowledgements
//! that free the resend store.
//!
//! Owns: the read loop and what it does per frame. Must not write to the
//! socket (the writer does; the reader appends to the link's buffer and
//! wakes it) nor decide protocol rules (the session does).

use futures_lite::AsyncRead;

use super::stream::LinkIo;
use super::*;
use crate::mesh::route::Arrival;

/// A link's read buffer (a larger frame grows it to its size, up to
/// `mesh.frame_bytes_max`).
pub(super) const READ_BUFFER: usize = 256 * 1024;

impl Bridge {
    /// Reads and applies frames until the link ends (the session knows
    /// why).
    pub(super) async fn read_loop(
        self: &Rc<Self>,
        link: &Rc<Link>,
        slot: &Slot,
        stream: &LinkIo,
        mut rb: ReadBuffer,
    ) {
        // glommio hands back a read at once while data waits, so a peer
        // that floods would keep this task running: after this much read
        // without a break it yields, and the executor's other tasks (the
        // links' writers, other links, and shard 0's clients when the
        // bridge runs in its executor) get their turn.
        const YIELD_BYTES: usize = 256 * 1024;
        let mut since_yield = 0;
        // Heard from the peer: one clock read per read, not per frame.
        let mut now = Instant::now();
        loop {
            // The frames of this read, decoded in place; one action list
            // for all of them (cleared per frame, allocated once per read).
            let filled = rb.filled();
            let mut used = 0;
            let mut out = link_session::Actions::default();
            loop {
                out.clear();
                let (frame, n) = match link::decode(&filled[used..], &self.limits) {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => {
                        link.session.borrow_mut().on_decode_error(&e, &mut out);
                        link.carry_out(&mut out);
                        return;
                    }
                };
                if link.session.borrow().passes_on(&frame) {
                    // `on_frame` would only hand it back as `Route`. An
                    // event is lent, not moved (a frame is a few hundred
                    // bytes: each move a `memcpy`).
                    let open = if let Frame::Event(e) = &frame {
                        self.on_event(link, e).await
                    } else {
                        self.on_request(link, slot, link_session::Request::Route(frame))
                            .await
                    };
                    if !open {
                        return; // closed while delivering
                    }
                    used += n;
                    continue;
                }
                link.session.borrow_mut().on_frame(frame, now, &mut out);
                // By index: only a request is moved out of the list.
                for at in 0..out.list.len() {
                    match &out.list[at] {
                        link_session::Action::Write { from, to } => {
                            link.out
                                .borrow_mut()
                                .extend_from_slice(&out.bytes[*from..*to]);
                            link.wake_writer();
                        }
                        link_session::Action::Request(_) => {
                            let done = link_session::Action::Write { from: 0, to: 0 };
                            let link_session::Action::Request(r) =
                                std::mem::replace(&mut out.list[at], done)
                            else {
                                unreachable!("matched above")
                            };
                            if !self.on_request(link, slot, r).await {
                                return; // closed while delivering
                            }
                        }
                        link_session::Action::Close(_) => {
                            link.mark_closed();
                            return;
                        }
                    }
                }
                used += n;
            }
            drop(out);
            rb.start += used;
            if link.durable_owed.take() {
                // Persistence: a copy is acknowledged upstream once the
                // shards' logs (and this bridge's, for the copies it
                // passed on) hold it.
                let _ = self.ctx.durable().await;
            }
            self.ack_if_due(link);
            let pending = pending_len(rb.filled());
            let spare = rb.spare(READ_BUFFER, pending);
            if since_yield >= YIELD_BYTES {
                since_yield = 0;
                futures_lite::future::yield_now().await;
            }
            match read_once(stream, spare, Some(link)).await {
                Ok(n) => {
                    rb.end += n;
                    since_yield += n;
                    now = Instant::now();
                    link.read_ns.set(now_ns());
                    link.session.borrow_mut().heard(now);
                }
                Err((reason, detail)) => {
                    link.end(reason, detail, false);
                    return;
                }
            }
        }
    }

    /// Carries out one request of the session; false when the link was
    /// closed (from elsewhere) while an event waited for a shard's ring.
    pub(super) async fn on_request(&self, link: &Link, slot: &Slot, request: Request<'_>) -> bool {
        match request {
            Request::Route(Frame::Event(e)) => return self.on_event(link, &e).await,
            Request::Route(Frame::Topology(t)) => self.on_topology(link, &t),
            Request::Route(frame @ (Frame::Explain(_) | Frame::ExplainReply { .. })) => {
                self.on_explain_frame(link.id, frame)
            }
            Request::Route(frame) => self.on_interest(link, frame),
            Request::Acked(seq) => {
                let mut done = Vec::new();
                if let Some(ob) = self.outboxes.borrow_mut().get_mut(&link.peer) {
                    ob.acked(seq, &mut done);
                }
                self.journal_gone(&link.peer, seq);
                for upstream in done {
                    self.release(Some(upstream));
                }
                self.flush_acks();
                self.wake_room();
            }
            Request::TableReceived => self.table_received(link),
            Request::RoundTrip(rtt) => slot.rtt_us.set(Some(rtt.as_micros() as u64)),
            // Only at hello (see `handshake`).
            Request::Up => debug_assert!(false, "a second Up"),
        }
        true
    }

    /// An event copy from the link: routed, delivered here, passed on.
    pub(super) async fn on_event(&self, link: &Link, e: &link::Event<'_>) -> bool {
        // When its read returned (one clock read per read).
        let arrived = link.read_ns.get();
        // The common copy (for this router alone) is routed on the frame's
        // borrowed fields; any other as an owned copy.
        let fast = match (e.dests.only(), e.groups.is_empty()) {
            (Some(dest), true) => self
                .router
                .borrow_mut()
                .on_event_for_me(link.id, e.origin, e.id, dest, e.topic, e.retain),
            _ => Arrival::Other,
        };
        let mut out = Vec::new();
        if fast == Arrival::Other {
            let copy = EventCopy::from_frame(e);
            self.router
                .borrow_mut()
                .on_message(link.id, LinkMsg::Event(copy), &mut out);
        }
        let here = match fast {
            Arrival::Deliver { plain } => Some((e.topic, plain, &[][..])),
            _ => None,
        };
        // Trace context: this router's hop (`trace`), once per copy that
        // goes anywhere, before it is passed on or delivered.
        let trace = &self.ctx.global.trace;
        // A CloudEvent's attributes keep their starting trace
        // (`trace::hop::cloudevent`): only its NATS block is the hop's.
        let goes = !out.is_empty() || here.is_some();
        let hop = (goes && !e.sync && trace.propagating())
            .then(|| {
                let cloudevent =
                    crate::trace::hop::cloudevent(e.meta.user_properties.iter().copied());
                let props = crate::trace::hop::w3c_props(e.meta.user_properties.iter().copied());
                crate::trace::hop::find(props, e.meta.headers).map(|found| (found, cloudevent))
            })
            .flatten()
            .and_then(|(incoming, cloudevent)| {
                trace
                    .hop(
                        &incoming,
                        crate::trace::SpanKind::LinkIn,
                        arrived,
                        e.topic,
                        &link.peer,
                    )
                    .map(|h| (h, cloudevent))
            });
        let block = hop
            .as_ref()
            .and_then(|(h, _)| crate::trace::hop::replace_block(e.meta.headers?, h));
        let mut body = Body::of_frame(e);
        if let Some((h, _)) = hop.as_ref().filter(|(_, cloudevent)| !cloudevent) {
            crate::trace::hop::replace_pairs(
                &mut body.meta.user_properties,
                &h.traceparent,
                &h.tracestate,
                crate::trace::hop::TRACESTATE,
            );
        }
        if let Some(b) = &block {
            body.meta.headers = Some(b);
        }
        let body = body;
        if e.seq > 0 {
            self.upstream.set(Some((link.id, e.seq)));
        }
        let deliveries = self.apply(out, Some(&body));
        self.upstream.set(None);
        let general = deliveries
            .iter()
            .map(|(topic, plain, groups)| (topic.as_str(), *plain, groups.as_slice()));
        for (topic, plain, groups) in general.chain(here) {
            let event = body.to_event(topic, self.origin, arrived);
            if body.sync {
                // A peer's retained store: what is newer here is
                // stored and passed on, one link at a time, to the
                // other peers (each of which passes on what is news
                // to it: the exchange ends where nothing is newer).
                // Not over a link that rewrites topics: the
                // prefixed copies would echo back and forth.
                let prefixed = self
                    .config
                    .mesh
                    .policy_for(&link.peer)
                    .is_some_and(|p| !p.import_prefix.is_empty());
                if event.retain && !prefixed && shards::retain(&self.ctx, &event, body.stamp) {
                    self.retained_accepted.set(self.retained_accepted.get() + 1);
                    let others: Vec<Rc<Link>> = self
                        .links
                        .borrow()
                        .values()
                        .filter(|l| l.id != link.id)
                        .cloned()
                        .collect();
                    for other in others {
                        self.queue_sync(&other, event.clone(), body.stamp);
                    }
                }
                continue;
            }
            if event.retain {
                // Every router keeps every retained message (the
                // newest, by stamp).
                shards::retain(&self.ctx, &event, body.stamp);
            }
            if !plain && groups.is_empty() {
                continue;
            }
            // A full ring to a shard holds this link's reader (the
            // backpressure reaches the peer through TCP), but never
            // past the link's end: a link closed meanwhile (silent
            // past its timeout, shutdown) ends here, and the peer
            // resends the QoS 1 copies it has no ack for.
            let delivered = futures_lite::future::or(
                async {
                    shards::publish(&self.ctx, event, plain, groups).await;
                    true
                },
                async {
                    until_closed(link).await;
                    false
                },
            )
            .await;
            if !delivered {
                return false;
            }
        }
        if e.seq > 0 {
            link.session.borrow_mut().processed(e.seq);
            // Its acknowledgement waits for the logs (persistence).
            if self.persisting {
                link.durable_owed.set(true);
            }
        }
        true
    }

    /// Interest from the link, for the routing core.
    pub(super) fn on_interest(&self, link: &Link, frame: Frame<'_>) {
        let msg = match frame {
            Frame::InterestAdd {
                filter,
                origin,
                distance,
                ..
            } => LinkMsg::InterestAdd {
                filter: filter.to_owned(),
                origin: origin.to_owned(),
                distance,
            },
            Frame::InterestRemove { filter, origin, .. } => LinkMsg::InterestRemove {
                filter: filter.to_owned(),
                origin: origin.to_owned(),
            },
            other => {
                debug_assert!(false, "{} is no interest", other.name());
                return;
            }
        };
        if matches!(msg, LinkMsg::InterestAdd { .. }) && !self.parked.borrow().is_empty() {
            self.parked_dirty.set(true);
        }
        let mut out = Vec::new();
        self.router.borrow_mut().on_message(link.id, msg, &mut out);
        self.apply(out, None);
    }

    /// The peer's first PING or PONG on a link: everything it sent before,
    /// its whole interest table included, has been applied. A held link of
    /// the same peer ends now, not at hello: its routes never lapse.
    pub(super) fn table_received(&self, link: &Link) {
        let had = self.held.borrow().values().any(|p| *p == link.peer);
        if had {
            let mut out = Vec::new();
            let ended = self.router.borrow_mut().release_held(&link.peer, &mut out);
            for id in ended {
                self.held.borrow_mut().remove(&id);
            }
            self.apply(out, None);
        }
        // The peer's table may lead to routers that copies wait for.
        self.retry_parked();
    }
}

/// Length of the frame at the front of `buf`, if its prefix is there.
pub(super) fn pending_len(buf: &[u8]) -> usize {
    buf.first_chunk::<4>()
        .map_or(0, |p| u32::from_be_bytes(*p) as usize + 4)
}

/// Returns once the link is closed (from elsewhere).
pub(super) async fn until_closed(link: &Link) {
    poll_fn(|cx| {
        if link.closed.get() {
            Poll::Ready(())
        } else {
            link.reader.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    })
    .await
}

/// One read; ends early when the link is closed from elsewhere (with the
/// session's reason).
pub(super) async fn read_once(
    stream: &LinkIo,
    buf: &mut [u8],
    link: Option<&Link>,
) -> Result<usize, (LinkCloseReason, String)> {
    poll_fn(|cx| {
        if let Some(l) = link {
            if l.closed.get() {
                let s = l.session.borrow();
                let reason = s.closed().unwrap_or(LinkCloseReason::ConnectionLost);
                return Poll::Ready(Err((reason, s.detail().to_owned())));
            }
            l.reader.set(Some(cx.waker().clone()));
        }
        match Pin::new(&mut *stream.borrow_mut()).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(Err((
                LinkCloseReason::ConnectionLost,
                "peer closed the connection".into(),
            ))),
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err((
                LinkCloseReason::ReadError,
                format!("read error: {e}"),
            ))),
        }
    })
    .await
}
