//! Where links come from: dialling each configured peer for the life of
//! the router (resolved again before each dial, redialled with jittered
//! exponential backoff), accepting peers on the mesh listener within
//! `mesh.links_max`, and the slots that keep each link's place and
//! counters in the admin view across reconnections.
//!
//! Owns: the dial and accept loops and slot bookkeeping. Must not touch a
//! connection once it runs (`connection.rs` does): a dial or accept ends
//! by handing the socket to `run_link`.

use super::connection::add_counters;
use super::*;

/// A link that keeps failing to dial is logged at warn this often (and
/// whenever the reason changes); each attempt at debug.
pub(super) const DIAL_WARN_EVERY: Duration = Duration::from_secs(30);

impl Slot {
    /// A dial (or the resolution before it) failed. Every backoff repeats
    /// it: warned at the first failure, when the reason changes, and every
    /// DIAL_WARN_EVERY; each retry at debug. `/links` shows the last one.
    pub(super) fn dial_failed(&self, target: &str, error: String) {
        let changed = self.last_error.borrow().as_deref() != Some(&error);
        let due = self
            .dial_warned
            .get()
            .is_none_or(|t| t.elapsed() >= DIAL_WARN_EVERY);
        if changed || due {
            tracing::warn!(
                link = target,
                error,
                retries = self.reconnects.get(),
                "mesh: dial failed (retrying with backoff)"
            );
            self.dial_warned.set(Some(Instant::now()));
        } else {
            tracing::debug!(link = target, error, "mesh: dial failed");
        }
        *self.last_error.borrow_mut() = Some(error);
    }
}
impl Bridge {
    /// An accepted link from `peer`: its earlier connections' counters
    /// (ended accepted slots of the same peer) carry on in this one, so
    /// that the view keeps one entry per peer and direction.
    pub(super) fn adopt_history(&self, slot: &Rc<Slot>, peer: &str) {
        let mut slots = self.slots.borrow_mut();
        let mut adopted = Vec::new();
        slots.retain(|s| {
            let same = !Rc::ptr_eq(s, slot)
                && !s.dialled
                && s.gone.get()
                && s.link.borrow().is_none()
                && s.peer.borrow().as_deref() == Some(peer);
            if same {
                adopted.push(s.clone());
            }
            !same
        });
        for old in adopted {
            slot.base.set(add_counters(slot.base.get(), old.base.get()));
            slot.reconnects
                .set(slot.reconnects.get() + old.reconnects.get() + 1);
            slot.dropped.set(slot.dropped.get() + old.dropped.get());
            slot.unsent.set(slot.unsent.get() + old.unsent.get());
            slot.evicted.set(slot.evicted.get() + old.evicted.get());
            slot.custody.set(slot.custody.get() + old.custody.get());
        }
    }

    pub(super) fn new_slot(&self, remote: Option<SocketAddr>, dialled: bool) -> Rc<Slot> {
        let slot = Rc::new(Slot {
            remote: Cell::new(remote),
            dialled,
            peer: RefCell::new(None),
            link: RefCell::new(None),
            base: Cell::new(LinkCounters::default()),
            reconnects: Cell::new(0),
            dropped: Cell::new(0),
            unsent: Cell::new(0),
            evicted: Cell::new(0),
            custody: Cell::new(0),
            rtt_us: Cell::new(None),
            gone: Cell::new(false),
            last_error: RefCell::new(None),
            dial_warned: Cell::new(None),
        });
        let mut slots = self.slots.borrow_mut();
        // Ended accepted links stay (hidden) until their peer returns, for
        // their counters; at most links_max of them.
        let ended = slots.iter().filter(|s| s.gone.get()).count();
        if ended >= self.config.mesh.links_max {
            if let Some(i) = slots.iter().position(|s| s.gone.get()) {
                slots.remove(i);
            }
        }
        slots.push(slot.clone());
        slot
    }
}

/// Dials `target` for the life of the router, redialling with backoff.
/// `target` is IP:PORT, or HOST:PORT resolved again before every dial
/// (off the executor: resolving may block), so a peer that moves is found.
pub(super) async fn dial_loop(bridge: Rc<Bridge>, target: String) {
    let slot = bridge.new_slot(target.parse().ok(), true);
    let m = bridge.config.mesh.clone();
    let mut backoff = m.reconnect_min_ms;
    let mut first = true;
    let mut rng = now_ns() | 1;
    loop {
        if bridge.ctx.stopping.get() {
            return;
        }
        if !first {
            slot.reconnects.set(slot.reconnects.get() + 1);
        }
        first = false;
        let started = Instant::now();
        match resolve_link(&target).await {
            // Each address the name resolves to, in order, until one connects.
            Ok(addrs) => {
                for addr in addrs {
                    slot.remote.set(Some(addr));
                    let timeout = Duration::from_millis(m.connect_timeout_ms);
                    match TcpStream::connect_timeout(addr, timeout).await {
                        Ok(stream) => {
                            bridge.run_link(&slot, stream).await;
                            break;
                        }
                        Err(e) => slot.dial_failed(&target, format!("dial {addr}: {e}")),
                    }
                }
            }
            Err(e) => slot.dial_failed(
                &target,
                format!("cannot resolve link address {target}: {e}"),
            ),
        }
        if bridge.ctx.stopping.get() {
            return;
        }
        if started.elapsed() > Duration::from_millis(m.reconnect_max_ms) {
            backoff = m.reconnect_min_ms; // it was up a while: start over
        }
        // Jitter: 50–100 % of the backoff, so that routers that lost each
        // other at once do not redial in lockstep.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = backoff / 2 + rng % (backoff / 2 + 1);
        glommio::timer::sleep(Duration::from_millis(wait)).await;
        backoff = (backoff * 2).min(m.reconnect_max_ms);
    }
}

/// The addresses of a link's `target`: an IP:PORT as is, a HOST:PORT
/// through the system's resolver on glommio's blocking-thread pool.
pub(super) async fn resolve_link(target: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = target.parse() {
        return Ok(vec![addr]);
    }
    let name = target.to_owned();
    glommio::executor()
        .spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            let addrs: Vec<SocketAddr> =
                name.to_socket_addrs().map_err(|e| e.to_string())?.collect();
            if addrs.is_empty() {
                return Err("resolves to no address".to_string());
            }
            Ok(addrs)
        })
        .await
}

pub(super) async fn accept_loop(bridge: Rc<Bridge>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            bridge.ctx.stopped().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                // Links up and connections still in their hello, together,
                // stay within links_max.
                let open = bridge
                    .slots
                    .borrow()
                    .iter()
                    .filter(|s| !s.gone.get())
                    .count();
                if open >= bridge.config.mesh.links_max {
                    tracing::warn!(remote = ?stream.peer_addr().ok(), max = bridge.config.mesh.links_max, "mesh: connection refused: mesh.links_max reached");
                    continue;
                }
                let slot = bridge.new_slot(stream.peer_addr().ok(), false);
                let b = bridge.clone();
                glommio::spawn_local(async move {
                    b.run_link(&slot, stream).await;
                    slot.gone.set(true);
                })
                .detach();
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "mesh: accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
