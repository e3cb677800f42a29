//! One connection to a peer router, from its first byte to its end: the
//! stream made secure, the hello exchanged (`handshake`), the link taken
//! up by the routing core (interest, resend, retained exchange), its
//! reader, writer and keepalive tasks run, and on its end the link held
//! (`mesh.link_hold_ms`) or dropped, and its close counted by reason.
//!
//! Owns: the [`Link`] (a live connection's buffers, wakers and
//! [`LinkSession`]) and the [`Slot`] (its place in the admin view, across
//! reconnections). Must not decide protocol rules (the session in
//! `mesh/session.rs` does) nor route (the core in `mesh/route.rs` does):
//! this file only carries out what they return, so the rules stay
//! testable without sockets.

use super::reader::{pending_len, read_once, READ_BUFFER};
use super::stream::{flush, looks_like_tls, LinkIo};
use super::writer::write_loop;
use super::*;
use crate::config::MeshConfig;
use crate::mesh::route::LinkPolicy;
use crate::mesh::session::{LinkSession, LinkTimers};

/// Largest hello accepted (its fields are two short strings).
pub(super) const HELLO_BYTES_MAX: usize = 1024;
/// A link's place in the admin view: for a dialled link, the same across
/// its reconnections; for an accepted one, one connection.
pub(super) struct Slot {
    pub(super) remote: Cell<Option<SocketAddr>>,
    pub(super) dialled: bool,
    pub(super) peer: RefCell<Option<String>>,
    /// The connection running now, if up.
    pub(super) link: RefCell<Option<Rc<Link>>>,
    /// Counters of this slot's earlier connections.
    pub(super) base: Cell<LinkCounters>,
    pub(super) reconnects: Cell<u64>,
    pub(super) dropped: Cell<u64>,
    /// Copies the routing core counted out that never left: QoS 0 past a
    /// full buffer, QoS 1 evicted from the resend store before it was
    /// sent. Shown in `dropped`, taken off `events_out`.
    pub(super) unsent: Cell<u64>,
    /// QoS 1 copies sent but dropped from the resend store before their
    /// ack (more than `mesh.unacked_max` outstanding).
    pub(super) evicted: Cell<u64>,
    /// Copies acknowledged by custody on this slot's earlier connections
    /// (`LinkSession::custody_taken`).
    pub(super) custody: Cell<u64>,
    pub(super) rtt_us: Cell<Option<u64>>,
    /// An accepted slot is shown while its connection lives (or while its
    /// peer's link is held).
    pub(super) gone: Cell<bool>,
    /// See [`LinkInfo::last_error`].
    pub(super) last_error: RefCell<Option<String>>,
    /// When a dial failure was last logged (they repeat every backoff).
    pub(super) dial_warned: Cell<Option<Instant>>,
}

/// One connection to a peer router, from hello to close.
pub(super) struct Link {
    pub(super) id: LinkId,
    pub(super) peer: String,
    pub(super) slot: Rc<Slot>,
    pub(super) out: RefCell<Vec<u8>>,
    pub(super) writer: Cell<Option<Waker>>,
    pub(super) reader: Cell<Option<Waker>>,
    /// The session closed (mirrors `session.closed()`, read without a
    /// borrow by the tasks that wait on it).
    pub(super) closed: Cell<bool>,
    /// The link protocol's state (hello, keepalive, acknowledgements):
    /// this file carries out what it decides.
    pub(super) session: RefCell<LinkSession>,
    /// This router's retained store, still to be sent to the peer (the
    /// exchange that follows the interest table; see `feed_sync`).
    pub(super) sync: RefCell<VecDeque<(Event, u64)>>,
    /// Persistence: a QoS 1 copy from this link was delivered here since
    /// its acknowledgements last went out; the next ones wait for the
    /// logs first.
    pub(super) durable_owed: Cell<bool>,
    /// When the last read returned ([`now_ns`] time): the arrival time of
    /// the events it brought (their `born_ns`, a trace hop's start).
    pub(super) read_ns: Cell<u64>,
}

impl Link {
    pub(super) fn wake_writer(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Carries out the session's writes and close (its requests are the
    /// read loop's: see `Bridge::on_request`).
    pub(super) fn carry_out(&self, out: &mut link_session::Actions<'_>) {
        for action in out.list.drain(..) {
            match action {
                link_session::Action::Write { from, to } => {
                    if !self.closed.get() {
                        self.out
                            .borrow_mut()
                            .extend_from_slice(&out.bytes[from..to]);
                        self.wake_writer();
                    }
                }
                link_session::Action::Close(_) => self.mark_closed(),
                link_session::Action::Request(r) => {
                    debug_assert!(false, "request {r:?} outside the read loop")
                }
            }
        }
        out.bytes.clear();
    }

    pub(super) fn mark_closed(&self) {
        if !self.closed.replace(true) {
            self.wake_writer();
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
    }

    /// Ends the link from this side (`tell`: with a CLOSE to the peer).
    pub(super) fn end(&self, reason: LinkCloseReason, detail: impl Into<String>, tell: bool) {
        let mut out = link_session::Actions::default();
        self.session
            .borrow_mut()
            .close(reason, detail.into(), tell, &mut out);
        self.carry_out(&mut out);
    }
}

pub(super) fn policy_of(mesh: &MeshConfig, peer: &str) -> LinkPolicy {
    match mesh.policy_for(peer) {
        None => LinkPolicy::default(),
        Some(p) => LinkPolicy {
            export_deny: p.export_deny.clone(),
            export_allow: p.export_allow.clone(),
            import_deny: p.import_deny.clone(),
            import_allow: p.import_allow.clone(),
            import_prefix: p.import_prefix.clone(),
        },
    }
}

pub(super) fn add_counters(a: LinkCounters, b: LinkCounters) -> LinkCounters {
    LinkCounters {
        events_out: a.events_out + b.events_out,
        events_in: a.events_in + b.events_in,
        denied_export: a.denied_export + b.denied_export,
        denied_import: a.denied_import + b.denied_import,
    }
}
impl Bridge {
    // ------------------------------------------------------------- links

    pub(super) fn timers(&self) -> LinkTimers {
        let m = &self.config.mesh;
        LinkTimers {
            keepalive: Duration::from_millis(m.keepalive_ms),
            link_timeout: Duration::from_millis(m.link_timeout_ms),
            hello_timeout: Duration::from_millis(m.connect_timeout_ms),
        }
    }

    /// Counts a link's end by reason (`weft_mesh_link_closes_total`).
    pub(super) fn count_close(&self, reason: LinkCloseReason) {
        let i = LinkCloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL");
        self.closes.borrow_mut()[i] += 1;
    }

    /// Runs one connection: hello, then frames until it ends.
    pub(super) async fn run_link(self: &Rc<Self>, slot: &Rc<Slot>, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let remote = tcp.peer_addr().ok();
        slot.remote.set(remote.or(slot.remote.get()));
        let timeout = Duration::from_millis(self.config.mesh.connect_timeout_ms);
        let stream = match self.secure(slot, tcp, remote, timeout).await {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!(remote = ?remote, "mesh: link refused: {reason}");
                *slot.last_error.borrow_mut() = Some(format!("link refused: {reason}"));
                return;
            }
        };
        let stream: Rc<LinkIo> = Rc::new(RefCell::new(stream));
        let mut session = LinkSession::new(
            &self.router_id,
            &self.config.mesh.name,
            self.timers(),
            Instant::now(),
        );
        let custody = self.config.mesh.custody_ms;
        session.set_custody_after((custody > 0).then(|| Duration::from_millis(custody)));
        // Small until the peer proved itself with a hello.
        let mut rb = ReadBuffer::default();
        let result = self.handshake(&mut session, &stream, &mut rb).await;
        let peer = match result {
            Ok(peer) => peer,
            Err((reason, detail, last_words)) => {
                self.count_close(reason);
                tracing::warn!(remote = ?remote, reason = reason.label(), "mesh: {detail}");
                *slot.last_error.borrow_mut() = Some(detail);
                if !last_words.is_empty() && write_all(&stream, &last_words).await.is_ok() {
                    let _ = flush(&stream).await;
                }
                return;
            }
        };
        if self.links.borrow().len() >= self.config.mesh.links_max {
            self.count_close(LinkCloseReason::LinksMax);
            tracing::warn!(peer, remote = ?remote, max = self.config.mesh.links_max, "mesh: link refused: mesh.links_max reached");
            return;
        }
        let id = LinkId(self.next_link.get());
        self.next_link.set(id.0 + 1);
        let link = Rc::new(Link {
            id,
            peer: peer.clone(),
            slot: slot.clone(),
            out: RefCell::default(),
            writer: Cell::new(None),
            reader: Cell::new(None),
            closed: Cell::new(false),
            session: RefCell::new(session),
            sync: RefCell::default(),
            durable_owed: Cell::new(false),
            read_ns: Cell::new(now_ns()),
        });
        *slot.peer.borrow_mut() = Some(peer.clone());
        if !slot.dialled {
            self.adopt_history(slot, &peer);
        }
        *slot.link.borrow_mut() = Some(link.clone());
        self.links.borrow_mut().insert(id, link.clone());
        tracing::info!(peer, remote = ?remote, link = id.0, "mesh: link up");
        *slot.last_error.borrow_mut() = None;
        slot.dial_warned.set(None);
        // Interest first (the whole table), then what the peer never
        // acknowledged.
        let mut out = Vec::new();
        self.router.borrow_mut().link_up_with_policy(
            id,
            &peer,
            policy_of(&self.config.mesh, &peer),
            &mut out,
        );
        self.apply(out, None);
        // The mesh's graph as this router knows it.
        self.topology_link_up(&link);
        if let Some(ob) = self.outboxes.borrow_mut().get_mut(&peer) {
            // Resend what the peer never acknowledged.
            ob.rewind();
        }
        // Then this router's retained store, so that a router that joins
        // or returns learns what was retained (or deleted) meanwhile.
        *link.sync.borrow_mut() = self
            .ctx
            .retained_snapshot()
            .into_iter()
            .filter(|(e, _)| !self.imported(e.topic()))
            .collect();
        self.refill(&link);
        // A PING right after the table: the peer's first PING or PONG tells
        // it our whole table is in (see `table_received`).
        let mut out = link_session::Actions::default();
        link.session
            .borrow_mut()
            .table_sent(Instant::now(), &mut out);
        link.carry_out(&mut out);
        let writer = glommio::spawn_local(write_loop(self.clone(), link.clone(), stream.clone()));
        let keepalive = glommio::spawn_local(keepalive(link.clone()));
        // Links are few and busy: one buffer of a fixed size from now on,
        // grown only for a frame larger than it.
        if rb.data.len() < READ_BUFFER {
            rb.data.resize(READ_BUFFER, 0);
        }
        self.read_loop(&link, slot, &stream, rb).await;
        // Ended by the session (or from elsewhere); a loop that ended
        // otherwise lost its connection.
        link.end(LinkCloseReason::ConnectionLost, "read loop ended", false);
        keepalive.cancel().await;
        writer.await;
        let mut out = Vec::new();
        let hold_ms = self.config.mesh.link_hold_ms;
        let held = {
            let mut router = self.router.borrow_mut();
            if let Some(c) = router.link_counters(id) {
                slot.base.set(add_counters(slot.base.get(), c));
            }
            let custody = link.session.borrow().custody_taken();
            slot.custody.set(slot.custody.get() + custody);
            self.custody_ended.set(self.custody_ended.get() + custody);
            if hold_ms > 0 && !self.ctx.stopping.get() {
                router.link_hold(id, &mut out)
            } else {
                router.link_down(id, &mut out);
                false
            }
        };
        self.links.borrow_mut().remove(&id);
        self.topology_link_down(id);
        *slot.link.borrow_mut() = None;
        self.explain_link_down(id);
        if held {
            // Routers reachable only through this peer stay reachable for
            // mesh.link_hold_ms: their QoS 1 events wait for the peer.
            self.held.borrow_mut().insert(id, peer.clone());
            let bridge = self.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(hold_ms)).await;
                bridge.held.borrow_mut().remove(&id);
                if bridge.router.borrow().is_held(id) {
                    let mut out = Vec::new();
                    bridge.router.borrow_mut().link_down(id, &mut out);
                    bridge.apply(out, None);
                }
            })
            .detach();
        }
        self.apply(out, None);
        if self
            .outboxes
            .borrow()
            .get(&peer)
            .is_some_and(|o| o.is_empty())
        {
            self.outboxes.borrow_mut().remove(&peer);
        }
        let (reason, detail) = {
            let session = link.session.borrow();
            let reason = session.closed().expect("ended above");
            (reason, session.detail().to_owned())
        };
        self.count_close(reason);
        if self.ctx.stopping.get() || reason.graceful() {
            tracing::info!(peer, remote = ?remote, reason = detail, "mesh: link closed");
        } else {
            tracing::warn!(peer, remote = ?remote, reason = detail, "mesh: link down");
            *slot.last_error.borrow_mut() = Some(format!("link down: {detail}"));
        }
    }

    /// Sends this router's hello and reads the peer's, within
    /// `mesh.connect_timeout_ms`: the peer's router id, or why not (and
    /// the last words to write: a CLOSE that tells the peer).
    pub(super) async fn handshake(
        &self,
        session: &mut LinkSession,
        stream: &LinkIo,
        rb: &mut ReadBuffer,
    ) -> Result<String, (LinkCloseReason, String, Vec<u8>)> {
        let mut out = link_session::Actions::default();
        session.start(&mut out);
        let io = |e: std::io::Error| {
            (
                LinkCloseReason::ConnectionLost,
                format!("link closed before its hello: {e}"),
                Vec::new(),
            )
        };
        write_all(stream, &out.bytes).await.map_err(io)?;
        flush(stream).await.map_err(io)?;
        let deadline = session.next_deadline().expect("a hello has its deadline");
        loop {
            if self.tls.is_none() && looks_like_tls(rb.filled()) {
                let detail = "link refused: the peer speaks TLS: set [mesh.tls] here too";
                return Err((LinkCloseReason::TlsRefused, detail.into(), Vec::new()));
            }
            let mut out = link_session::Actions::default();
            let decoded = link::decode(rb.filled(), &self.limits);
            let decoded = match decoded {
                Ok(Some((frame, n))) => {
                    session.on_frame(frame, Instant::now(), &mut out);
                    // The hello's requests (Up) are read from the session.
                    out.list
                        .retain(|a| !matches!(a, link_session::Action::Request(_)));
                    Some(n)
                }
                Ok(None) => None,
                Err(e) => {
                    session.on_decode_error(&e, &mut out);
                    Some(0)
                }
            };
            let closed = out.closed();
            let last_words = std::mem::take(&mut out.bytes);
            drop(out);
            if let Some(reason) = closed {
                return Err((reason, session.detail().to_owned(), last_words));
            }
            match decoded {
                Some(n) => rb.start += n,
                None => {
                    let pending = pending_len(rb.filled());
                    if pending > HELLO_BYTES_MAX {
                        let detail =
                            format!("link refused: first frame of {pending} bytes is no hello");
                        return Err((LinkCloseReason::BadHello, detail, Vec::new()));
                    }
                    let spare = rb.spare(HELLO_BYTES_MAX, pending);
                    let read = futures_lite::future::or(
                        async { Some(read_once(stream, spare, None).await) },
                        async {
                            glommio::timer::sleep(
                                deadline.saturating_duration_since(Instant::now()),
                            )
                            .await;
                            None
                        },
                    )
                    .await;
                    match read {
                        Some(Ok(n)) => rb.end += n,
                        Some(Err((_, e))) => {
                            let detail = format!("link closed before its hello: {e}");
                            return Err((LinkCloseReason::ConnectionLost, detail, Vec::new()));
                        }
                        None => {
                            let mut out = link_session::Actions::default();
                            session.handle_timeout(Instant::now().max(deadline), &mut out);
                            if let Some(reason) = out.closed() {
                                let detail = session.detail().to_owned();
                                return Err((reason, detail, out.bytes));
                            }
                        }
                    }
                }
            }
            if session.is_up() {
                let peer = session.peer().expect("accepted").to_owned();
                if let Err(e) = self.check_cert(&stream.borrow(), &peer) {
                    let mut out = link_session::Actions::default();
                    let detail = format!("link refused: {e}");
                    session.close(LinkCloseReason::TlsRefused, detail, true, &mut out);
                    return Err((
                        LinkCloseReason::TlsRefused,
                        session.detail().into(),
                        out.bytes,
                    ));
                }
                return Ok(peer);
            }
        }
    }
}

/// Wakes the session at its deadlines: keepalive PINGs, and the drop of a
/// link silent past `mesh.link_timeout_ms`.
pub(super) async fn keepalive(link: Rc<Link>) {
    let mut out = link_session::Actions::default();
    loop {
        let Some(deadline) = link.session.borrow().next_deadline() else {
            return;
        };
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        if link.closed.get() {
            return;
        }
        out.clear();
        let now = Instant::now().max(deadline);
        link.session.borrow_mut().handle_timeout(now, &mut out);
        if out.closed() == Some(LinkCloseReason::Silent) {
            tracing::warn!(
                peer = link.peer,
                "mesh: link silent past mesh.link_timeout_ms"
            );
        }
        link.carry_out(&mut out);
    }
}
