//! The client-id directory of MQTT sessions: which shard hosts a client
//! id, taking a session over from wherever it lives (MQTT-3.1.4-2),
//! handing its state to the new connection, keeping persistent sessions
//! offline (parked) until they are resumed or expire.
//!
//! Owns: the sessions hosted here by client id (online, offline, and those
//! still in their CONNECT handshake), this shard's share of the directory
//! (client id → host shard, for the ids that hash here), the offline queue
//! with its expiries, and the numbers of assigned client ids. Asks other
//! shards through `control` (claims and takeovers); releases a session's
//! subscriptions through `routing` and its key through the table; must not
//! touch the trie or the rings itself.
//!
//! Bounds: the hosted sessions are bounded by `limits.connections_max`
//! plus the offline ones, which `limits.offline_session_expiry_s` ends; the
//! offline queue is compacted to twice its live entries.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::control::Reply;
use super::{SessionState, ShardCtx, ShardMsg};
use crate::event::Event;
use crate::mqtt::session::expiry::ExpiryQueue;
use crate::shard::mailbox::{Backlog, CloseReason, Mailbox as Session, Protocol};
use crate::topic::trie::SessionKey;

#[derive(Default)]
pub(super) struct Directory {
    /// MQTT sessions hosted here by client id (online or kept offline),
    /// and those still in their CONNECT handshake.
    homes: RefCell<hashbrown::HashMap<Box<str>, Rc<Session>>>,
    connecting: RefCell<hashbrown::HashMap<Box<str>, Rc<Session>>>,
    /// For the client ids whose directory is this shard: their host shard.
    hosts: RefCell<hashbrown::HashMap<Box<str>, u16>>,
    /// Offline persistent sessions, oldest first, with their expiry.
    /// Offline persistent sessions by expiry, earliest first (their
    /// expiries differ, so the first parked is not the first due).
    offline: RefCell<ExpiryQueue<Rc<Session>>>,
    offline_count: Cell<usize>,
    next_client_number: Cell<u64>,
}

/// The token of a claim whose reply nobody waits for (a durable AMQP link
/// kept: the directory must know its host, the caller needs no answer).
const NO_REPLY: u64 = u64::MAX;

/// The directory's id of a durable AMQP link: its name behind a NUL, which
/// no MQTT client id holds (MQTT-1.5.3-2), so the two never meet.
fn durable_id(name: &str) -> Box<str> {
    format!("\0amqp/{name}").into()
}

impl Directory {
    /// Records `host` as the host of `client_id` (this shard keeps its
    /// directory entry); returns the host before.
    fn claim(&self, client_id: &str, host: usize) -> Option<u16> {
        self.hosts
            .borrow_mut()
            .insert(client_id.into(), host as u16)
    }

    fn release(&self, client_id: &str, host: usize) {
        let mut hosts = self.hosts.borrow_mut();
        if hosts.get(client_id) == Some(&(host as u16)) {
            hosts.remove(client_id);
        }
    }

    /// Drops the capacity left by sessions gone.
    pub(super) fn trim(&self) {
        self.homes.borrow_mut().shrink_to_fit();
        self.connecting.borrow_mut().shrink_to_fit();
        self.hosts.borrow_mut().shrink_to_fit();
    }

    /// Offline persistent sessions kept here.
    pub(super) fn offline_sessions(&self) -> usize {
        self.offline_count.get()
    }
}

impl ShardCtx {
    pub fn assign_client_id(&self) -> Box<str> {
        self.assign_client_number().1
    }

    /// A client id the router makes, and its number (never reused on this
    /// shard: NATS INFO's numeric `client_id` is built from it).
    pub fn assign_client_number(&self) -> (u64, Box<str>) {
        let n = self.directory.next_client_number.get();
        self.directory.next_client_number.set(n + 1);
        (n, format!("weft-{}-{n}", self.id).into())
    }

    /// Which shard keeps the directory entry of a client id.
    fn directory_shard(&self, client_id: &str) -> usize {
        // FNV-1a: stable across shards and runs, no seed to share.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in client_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let shards = match self.global.client_shards {
            0 => self.shards,
            n => n,
        };
        (h % shards as u64) as usize
    }

    /// Records this shard as `id`'s home at the id's directory shard (here,
    /// or by a round trip over the rings) and returns the previous home.
    async fn claim_at_directory(&self, id: &Arc<str>) -> Option<u16> {
        let directory = self.directory_shard(id);
        if directory == self.id {
            return self.directory.claim(id, self.id);
        }
        let token = self.control.token();
        self.control.push(
            Some(directory),
            ShardMsg::Claim {
                client_id: id.clone(),
                token,
            },
        );
        match self.control.wait_reply(token, &self.stopping).await {
            Some(Reply::Claimed(previous)) => previous,
            _ => None,
        }
    }

    /// CONNECT of an MQTT client id on this shard: ends any other session
    /// of that id, wherever it lives (MQTT-3.1.4-2), and returns its state
    /// when `want_state` (clean session 0) and it was persistent.
    pub async fn establish(&self, session: &Rc<Session>, want_state: bool) -> Option<SessionState> {
        let id: Arc<str> = Arc::from(&*session.client_id);
        // Visible to takeovers while the handshake runs.
        if let Some(other) = self
            .directory
            .connecting
            .borrow_mut()
            .insert(id.as_ref().into(), session.clone())
        {
            other.close(CloseReason::TakenOver);
        }
        let previous = self.claim_at_directory(&id).await;
        // The host we may not know of is ourselves: check locally too.
        let (mut state, will) = self.take_over(&id, want_state, session);
        if let Some(will) = will {
            self.publish_will(will).await;
        }
        if let Some(home) = previous.map(usize::from).filter(|&h| h != self.id) {
            if want_state {
                // Phase 1: subscribe this session to the kept session's
                // filters (its old connection ends; it collects offline
                // meanwhile) before phase 2 releases them there, so that
                // no publish falls between the two (an event reaching both
                // is dropped from this queue when the backlog comes).
                let token = self.control.token();
                self.control.push(
                    Some(home),
                    ShardMsg::Prepare {
                        client_id: id.clone(),
                        token,
                    },
                );
                if let Some(Reply::State(Some(s))) =
                    self.control.wait_reply(token, &self.stopping).await
                {
                    self.adopt_subscriptions(session, &s.subscriptions);
                    self.barrier().await;
                }
            }
            let token = self.control.token();
            self.control.push(
                Some(home),
                ShardMsg::Takeover {
                    client_id: id.clone(),
                    token,
                    want_state,
                },
            );
            if let Some(Reply::State(s)) = self.control.wait_reply(token, &self.stopping).await {
                state = state.or(s.map(|b| *b));
            }
        }
        tracing::debug!(
            shard = self.id,
            client_id = &*id,
            ?previous,
            resumed = state.is_some(),
            inflight = state.as_ref().map_or(0, |s| s.backlog.inflight.len()),
            queued = state.as_ref().map_or(0, |s| s.backlog.queued.len()),
            "session established"
        );
        let mut connecting = self.directory.connecting.borrow_mut();
        if connecting.get(&*id).is_some_and(|s| Rc::ptr_eq(s, session)) {
            connecting.remove(&*id);
        }
        drop(connecting);
        if session.close_reason().is_none() {
            self.directory
                .homes
                .borrow_mut()
                .insert(id.as_ref().into(), session.clone());
        }
        state
    }

    /// Ends this shard's session of `client_id` other than `except`;
    /// returns its state if wanted and it was persistent, and the will it
    /// held back for its delay if the session ends here (publish it now).
    fn take_over(
        &self,
        client_id: &str,
        want_state: bool,
        except: &Rc<Session>,
    ) -> (Option<SessionState>, Option<Event>) {
        let connecting = self.directory.connecting.borrow_mut().remove(client_id);
        if let Some(c) = connecting {
            if Rc::ptr_eq(&c, except) {
                self.directory
                    .connecting
                    .borrow_mut()
                    .insert(client_id.into(), c);
            } else {
                c.close(CloseReason::TakenOver);
            }
        }
        let Some(old) = self.directory.homes.borrow_mut().remove(client_id) else {
            return (None, None);
        };
        if Rc::ptr_eq(&old, except) {
            self.directory
                .homes
                .borrow_mut()
                .insert(client_id.into(), old);
            return (None, None);
        }
        let keep = want_state && old.persistent.get();
        // Read by the old connection if it closed on its own just before
        // (its reason came first): whether the session goes on decides
        // its will there too (`driver_mqtt::serve_on`).
        old.persistent.set(keep);
        // Whether the session goes on decides its will (the connection's
        // machine reads it from the reason): held back, or sent now.
        old.close(if keep {
            CloseReason::TakenOverResumed
        } else {
            CloseReason::TakenOver
        });
        if old.offline.get() && !old.detached.get() {
            let count = &self.directory.offline_count;
            count.set(count.get() - 1);
        }
        let subscriptions: Vec<(Box<str>, u8)> = if keep {
            old.subscriptions
                .borrow()
                .iter()
                .map(|(f, q)| (f.into(), q))
                .collect()
        } else {
            Vec::new()
        };
        let identifiers: Vec<(Box<str>, u32)> = if keep {
            old.sub_identifiers
                .borrow()
                .iter()
                .map(|(f, i)| (f.clone(), *i))
                .collect()
        } else {
            Vec::new()
        };
        // A will waiting for its delay (MQTT 5 §3.1.2.5): not sent if the
        // session goes on (MQTT-3.1.3-9), sent now if it ends here (a
        // clean start: "or the Session ends"). mosquitto 2.0 drops it in
        // both cases (its takeover cancels the delay it just armed); the
        // spec is followed where they differ.
        if keep && except.key != SessionKey::MAX {
            // Here, the new session takes the filters before the old one
            // lets them go: the other shards see no interest change, and
            // no publish falls between.
            self.adopt_subscriptions(except, &subscriptions);
        }
        let will = old.pending_will.borrow_mut().take().filter(|_| !keep);
        let backlog = old.take_backlog();
        let awaiting_release = old.journaled_awaiting_release();
        if keep {
            // Its new host journals it under a newer generation.
            old.take_journal();
        } else {
            self.end_journal(&old);
        }
        // Release everything of the old session here (its connection, if
        // any, sees `detached` and leaves it alone).
        self.release_session(&old);
        let state = keep.then_some(SessionState {
            subscriptions,
            identifiers,
            backlog,
            awaiting_release,
        });
        (state, will)
    }

    /// A will due now that its session ended.
    async fn publish_will(&self, will: Event) {
        if will.retain {
            self.retain(&will);
        }
        self.publish(will, &mut Vec::new()).await;
    }

    fn take_over_remote(
        &self,
        client_id: &str,
        want_state: bool,
    ) -> (Option<SessionState>, Option<Event>) {
        let placeholder = Rc::new(Session::new(SessionKey::MAX, Protocol::Mqtt, "".into()));
        self.take_over(client_id, want_state, &placeholder)
    }

    /// Removes a session's subscriptions and slot, once.
    fn release_session(&self, session: &Rc<Session>) {
        if session.detached.get() {
            return;
        }
        // Not via `unregister`: the directory keeps pointing at the new
        // host, which claimed the id.
        self.drop_mqtt_subscriptions(session);
        session.detached.set(true);
        self.table.remove_session(session.key);
    }

    /// Installs a session state handed over from a previous connection.
    /// Re-subscribes a resumed session and returns its backlog, once every
    /// shard knows the subscriptions (so a publish after the CONNACK, on
    /// any shard, reaches it). Queue the CONNACK, then the backlog.
    pub async fn install(&self, session: &Rc<Session>, state: SessionState) -> Backlog {
        self.adopt_subscriptions(session, &state.subscriptions);
        // Events that reached both the kept session and this one while
        // both were subscribed (takeover phase 1) are in the backlog.
        session.drop_twins(&state.backlog);
        session
            .sub_identifiers
            .borrow_mut()
            .extend(state.identifiers);
        if !state.subscriptions.is_empty() {
            self.barrier().await;
        }
        state.backlog
    }

    /// Subscribes `session` to a kept session's filters, but those its
    /// rights now deny (rules changed by a reload, or another user
    /// resuming the id: dropped, as UNSUBSCRIBE). Made under the rights of
    /// an earlier connection, so with rules every one is checked.
    /// Idempotent (a filter held is only updated).
    fn adopt_subscriptions(&self, session: &Session, subscriptions: &[(Box<str>, u8)]) {
        let grants = session.grants.borrow().clone();
        let checked = if grants.is_some() {
            crate::topic::trie::CHECKED
        } else {
            0
        };
        for (filter, qos) in subscriptions {
            let (_, plain) = crate::topic::split_share(filter);
            if grants.as_ref().is_some_and(|g| {
                g.subscription(plain) == crate::security::permissions::Subscription::Denied
            }) {
                continue;
            }
            self.subscribe(session, filter, *qos | checked);
        }
    }

    /// Phase 1 of a takeover from another shard: the kept session's
    /// filters, its connection (if any) ended (it parks and collects
    /// offline until phase 2 hands it over). None if not kept here.
    fn prepare_takeover(&self, client_id: &str) -> Option<SessionState> {
        let old = self.directory.homes.borrow().get(client_id).cloned()?;
        if !old.persistent.get() || old.detached.get() {
            return None;
        }
        old.close(CloseReason::TakenOverResumed);
        let subscriptions: Vec<(Box<str>, u8)> = old
            .subscriptions
            .borrow()
            .iter()
            .map(|(f, q)| (f.into(), q))
            .collect();
        Some(SessionState {
            subscriptions,
            ..SessionState::default()
        })
    }

    /// The connection of a persistent session ended: keep the session,
    /// offline, in the same slot (its subscriptions stay in the trie), until
    /// a reconnection takes it or `offline_session_expiry_s` passes.
    pub fn park(&self, session: &Rc<Session>) -> Rc<Session> {
        let kept = Rc::new(Session::new(
            session.key,
            Protocol::Mqtt,
            session.client_id.clone(),
        ));
        kept.persistent.set(true);
        kept.offline.set(true);
        *kept.subscriptions.borrow_mut() = std::mem::take(&mut *session.subscriptions.borrow_mut());
        let backlog = session.take_backlog();
        *kept.sub_identifiers.borrow_mut() =
            std::mem::take(&mut *session.sub_identifiers.borrow_mut());
        kept.expiry_s.set(session.expiry_s.get());
        kept.set_version(session.version());
        if session.journal.borrow().is_some() || (self.persisting() && session.persistent.get()) {
            // Offline from now: a snapshot under a new generation.
            let awaiting_release = session.journaled_awaiting_release();
            session.take_journal();
            let wall_ms = crate::event::wall_ns() / 1_000_000;
            self.open_journal(&kept, awaiting_release, Some(wall_ms), &backlog);
        }
        kept.restore_backlog(backlog);
        // Its checked subscriptions go on being tested while it is offline.
        *kept.grants.borrow_mut() = session.grants.borrow().clone();
        session.detached.set(true);
        self.table.replace_session(session.key, kept.clone());
        let mut homes = self.directory.homes.borrow_mut();
        if homes
            .get(&*session.client_id)
            .is_some_and(|h| Rc::ptr_eq(h, session))
        {
            homes.insert(session.client_id.clone(), kept.clone());
        }
        drop(homes);
        let expiry = self.offline_expiry(session.expiry_s.get());
        let count = &self.directory.offline_count;
        count.set(count.get() + 1);
        let mut offline = self.directory.offline.borrow_mut();
        offline.push(Instant::now() + expiry, kept.clone());
        // Entries of sessions resumed since stay until compacted: keep the
        // queue within twice the live ones (amortised O(log n)).
        if offline.len() > 2 * count.get() + 1024 {
            offline.retain(|s| s.offline.get() && !s.detached.get());
        }
        kept
    }

    /// Takes a session the start-up recovery dealt to this shard (its
    /// client id's directory shard): offline, subscribed, with its backlog
    /// and the journal its snapshot opened; its expiry counts from when
    /// its connection ended.
    /// Returns its will if it is due now (see `start_persistence`).
    pub(super) fn adopt_recovered(
        self: &Rc<Self>,
        s: crate::persist::recover::Session,
        log: &Rc<crate::persist::log::Log>,
    ) -> Option<Event> {
        let id = s.open.client_id.clone();
        let session = self.register(Protocol::Mqtt, id.clone());
        session.persistent.set(true);
        session.offline.set(true);
        session.set_version(s.open.version);
        session.expiry_s.set(s.open.expiry_s);
        for (filter, qos) in &s.open.subscriptions {
            self.subscribe(&session, filter, *qos);
        }
        session
            .sub_identifiers
            .borrow_mut()
            .extend(s.open.identifiers.iter().cloned());
        let numbered = (s.backlog.inflight.len() + s.backlog.queued.len()) as u64;
        session.set_journal(crate::shard::mailbox::Journal {
            log: log.clone(),
            sn: s.open.sn,
            gen: s.open.gen,
            offline_wall_ms: s.offline_wall_ms,
            seq: Cell::new(numbered),
            awaiting_release: RefCell::new(s.open.awaiting_release.clone()),
            will: RefCell::new(s.open.will.clone()),
        });
        session.restore_backlog(s.backlog);
        debug_assert_eq!(self.directory_shard(&id), self.id);
        self.directory.claim(&id, self.id);
        self.directory
            .homes
            .borrow_mut()
            .insert(id, session.clone());
        let expiry_ms = self.offline_expiry(s.open.expiry_s).as_millis() as u64;
        let now_ms = crate::event::wall_ns() / 1_000_000;
        let since = s.offline_wall_ms.unwrap_or(now_ms);
        let left = (since.saturating_add(expiry_ms)).saturating_sub(now_ms);
        let count = &self.directory.offline_count;
        count.set(count.get() + 1);
        self.directory.offline.borrow_mut().push(
            Instant::now() + Duration::from_millis(left),
            session.clone(),
        );
        // Its will: the connection ended at the stop (or earlier, with the
        // will waiting for its delay); due after the delay, at the latest
        // when the session ends.
        let (delay_s, will) = s.open.will?;
        let lost_ms = if s.online_at_crash { now_ms } else { since };
        let due_ms = lost_ms
            .saturating_add(u64::from(delay_s.unwrap_or(0)) * 1000)
            .min(since.saturating_add(expiry_ms));
        match due_ms.saturating_sub(now_ms) {
            0 => {
                if let Some(j) = session.journal.borrow().as_ref() {
                    j.set_will(None);
                }
                Some(will)
            }
            wait => {
                self.arm_will(session, will, Duration::from_millis(wait));
                None
            }
        }
    }

    /// How long a session is kept offline: its MQTT 5 expiry, capped by
    /// `offline_session_expiry_s` (which alone applies to 3.1.1).
    fn offline_expiry(&self, expiry_s: Option<u32>) -> Duration {
        let configured = self.limits().offline_session_expiry_s;
        Duration::from_secs(expiry_s.map_or(configured, |s| u64::from(s).min(configured)))
    }

    /// Drops the home entry of a session that ends for good, and its
    /// directory entry.
    pub(super) fn leave_home(&self, session: &Rc<Session>) {
        let mut homes = self.directory.homes.borrow_mut();
        if !homes
            .get(&*session.client_id)
            .is_some_and(|h| Rc::ptr_eq(h, session))
        {
            return;
        }
        homes.remove(&*session.client_id);
        drop(homes);
        let id: Arc<str> = Arc::from(&*session.client_id);
        let directory = self.directory_shard(&id);
        if directory == self.id {
            self.directory.release(&id, self.id);
        } else {
            self.control
                .push(Some(directory), ShardMsg::Release { client_id: id });
        }
    }

    /// Ends offline sessions whose expiry passed; returns the wills still
    /// waiting for their delay, due now that their session ended.
    pub(super) fn expire_offline(&self) -> Vec<Event> {
        let mut wills = Vec::new();
        let now = Instant::now();
        loop {
            let next = self.directory.offline.borrow_mut().pop_due(now);
            let Some(session) = next else {
                return wills;
            };
            if session.offline.get() && !session.detached.get() {
                let count = &self.directory.offline_count;
                count.set(count.get() - 1);
                wills.extend(session.pending_will.borrow_mut().take());
                tracing::debug!(
                    shard = self.id,
                    client_id = &*session.client_id,
                    "offline session expired"
                );
                self.unregister(&session);
            }
        }
    }

    /// Keeps a durable AMQP receiver link that went without closing: a
    /// held session of its name (an offline persistent MQTT session in
    /// all but protocol: subscribed to the link's filter at QoS 1, the
    /// same queue limits and drop policy, the same expiry,
    /// `offline_session_expiry_s`), claimed in the directory so that an
    /// attach of the name on any shard takes it. The caller restores the
    /// link's leftovers into it. In memory only (not journaled).
    pub(super) fn amqp_durable_park(&self, link: &super::table::AmqpLink) -> Rc<Session> {
        let name = link.durable.as_deref().unwrap_or_default();
        let id = durable_id(name);
        // A name held here already (two links of one name): the newer wins.
        let old = self.directory.homes.borrow_mut().remove(&*id);
        if let Some(old) = old {
            if old.offline.get() && !old.detached.get() {
                let count = &self.directory.offline_count;
                count.set(count.get() - 1);
            }
            self.unregister(&old);
        }
        let kept = self.register(Protocol::Mqtt, id.clone());
        kept.persistent.set(true);
        kept.offline.set(true);
        *kept.grants.borrow_mut() = link.session.grants.borrow().clone();
        let full: std::borrow::Cow<str> = match &link.group {
            Some(group) => format!("$share/{group}/{}", link.filter).into(),
            None => (&*link.filter).into(),
        };
        let checked = if link.checked {
            crate::topic::trie::CHECKED
        } else {
            0
        };
        self.subscribe(&kept, &full, 1 | checked);
        let directory = self.directory_shard(&id);
        if directory == self.id {
            self.directory.claim(&id, self.id);
        } else {
            self.control.push(
                Some(directory),
                ShardMsg::Claim {
                    client_id: Arc::from(&*id),
                    token: NO_REPLY,
                },
            );
        }
        self.directory.homes.borrow_mut().insert(id, kept.clone());
        let count = &self.directory.offline_count;
        count.set(count.get() + 1);
        self.directory
            .offline
            .borrow_mut()
            .push(Instant::now() + self.offline_expiry(None), kept.clone());
        tracing::debug!(shard = self.id, name, "durable AMQP link kept");
        kept
    }

    /// An attach of durable link `name`: takes its held session from
    /// wherever it is (ending it there) and returns its backlog, unsettled
    /// first (`amqp::resumed` makes them deliveries). None if none is held.
    /// The new link subscribed first, so nothing falls between; an event
    /// that reached both is dropped from the link's queue by the caller.
    pub async fn amqp_durable_take(&self, name: &str) -> Option<Backlog> {
        let id: Arc<str> = Arc::from(&*durable_id(name));
        let previous = self.claim_at_directory(&id).await;
        let placeholder = Rc::new(Session::new(SessionKey::MAX, Protocol::Mqtt, "".into()));
        let (mut state, _) = self.take_over(&id, true, &placeholder);
        if let Some(home) = previous.map(usize::from).filter(|&h| h != self.id) {
            let token = self.control.token();
            self.control.push(
                Some(home),
                ShardMsg::Takeover {
                    client_id: id.clone(),
                    token,
                    want_state: true,
                },
            );
            if let Some(Reply::State(s)) = self.control.wait_reply(token, &self.stopping).await {
                state = state.or(s.map(|b| *b));
            }
        }
        // Nobody holds the name now (the link is attached): free its entry.
        let directory = self.directory_shard(&id);
        if directory == self.id {
            self.directory.release(&id, self.id);
        } else {
            self.control
                .push(Some(directory), ShardMsg::Release { client_id: id });
        }
        state.map(|s| s.backlog)
    }

    /// A directory message from another shard (claim, takeover, release).
    pub(super) fn on_ring_directory(self: &Rc<Self>, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Claim { client_id, token } => {
                let previous = self.directory.claim(&client_id, from);
                self.control
                    .push(Some(from), ShardMsg::ClaimReply { token, previous });
            }
            ShardMsg::ClaimReply { token, previous } => {
                if token != NO_REPLY {
                    self.control.answer(token, Reply::Claimed(previous))
                }
            }
            ShardMsg::Takeover {
                client_id,
                token,
                want_state,
            } => {
                // First let every event already on its way here arrive (a
                // barrier: each peer answers after what it sent before), so
                // that what was acknowledged to publishers before this
                // reconnection travels with the session. Then hand it over.
                let ctx = self.clone();
                glommio::spawn_local(async move {
                    ctx.barrier().await;
                    // No session of ours is excluded: the claimant is elsewhere.
                    let (state, will) = ctx.take_over_remote(&client_id, want_state);
                    ctx.control.push(
                        Some(from),
                        ShardMsg::TakeoverReply {
                            token,
                            state: state.map(Box::new),
                        },
                    );
                    if let Some(will) = will {
                        ctx.publish_will(will).await;
                    }
                })
                .detach();
            }
            ShardMsg::Prepare { client_id, token } => {
                let state = self.prepare_takeover(&client_id).map(Box::new);
                self.control
                    .push(Some(from), ShardMsg::TakeoverReply { token, state });
            }
            ShardMsg::TakeoverReply { token, state } => {
                self.control.answer(token, Reply::State(state))
            }
            ShardMsg::Release { client_id } => self.directory.release(&client_id, from),
            _ => debug_assert!(false, "not a directory message"),
        }
    }
}
