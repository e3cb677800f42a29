//! Durability on one shard (issue 13): this shard's log (`persist::log`),
//! what it writes there, and the waits that make an acknowledgement mean
//! "durable".
//!
//! What a shard writes is what it owns: the persistent MQTT sessions it
//! hosts (through each session's [`Journal`]: opened with a snapshot of
//! the session, then its subscriptions and its QoS 1/2 events queued,
//! sent, released and acknowledged) and the retained messages whose topic
//! it owns (`persist::recover::retained_owner`: every shard holds every
//! retained message, one writes it). So a log needs no other shard's to
//! be compacted: a snapshot of what the shard owns supersedes it.
//!
//! An acknowledgement that promises durability (QoS 1 PUBACK, QoS 2
//! PUBREC, SUBACK and CONNACK of a persistent session) waits for
//! [`ShardCtx::durable`]: this shard's log durable up to what it appended,
//! and a *durable barrier* through every other shard — each answers once
//! its own log holds everything it had appended when the barrier came,
//! which, the rings being FIFO, covers the events this shard sent it
//! before. Persistence off: no log, `durable` returns at once, and nothing
//! here runs on the event path (a `None` check per persistent session's
//! QoS 1/2 delivery).
//!
//! Owns: the log handle, session numbers and generations. Must not touch:
//! sessions' queues (the mailbox journals its own), files (the log).

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ShardCtx;
use crate::event::Event;
use crate::persist::log::{Log, LogError};
use crate::persist::records::{Record, SessionOpen};
use crate::persist::recover;
use crate::persist::start::ShardStart;
use crate::shard::mailbox::{Backlog, Journal, Mailbox as Session};

#[derive(Default)]
pub(super) struct Durability {
    log: OnceCell<Rc<Log>>,
    next_sn: Cell<u64>,
    last_gen: Cell<u64>,
}

impl ShardCtx {
    /// Persistence on, before the shard serves: takes every retained
    /// message and this shard's recovered sessions (offline, subscribed,
    /// with their backlogs), opens the log after the start-up snapshot and
    /// starts its writer; returns once every client shard has done so (a
    /// publish accepted anywhere then finds every recovered subscription).
    pub async fn start_persistence(
        self: &Rc<Self>,
        start: ShardStart,
        retained: &[(u64, Event)],
        recovery: Option<(Duration, u64, u64, u64)>,
    ) -> std::io::Result<glommio::task::JoinHandle<()>> {
        // Before the log: what the snapshot holds is not written again.
        for (stamp, event) in retained {
            self.store_retained(event, *stamp);
        }
        let shards = self.global.client_shards.max(1);
        let cfg = self.config().persistence.per_shard(shards);
        let log = Log::open(&start.dir, &cfg, self.stats.persist.clone())?;
        let task = glommio::spawn_local(log.clone().run()).detach();
        self.set_log(log.clone(), start.next_sn);
        let adopted = !start.sessions.is_empty();
        let mut wills = Vec::new();
        for session in start.sessions {
            wills.extend(self.adopt_recovered(session, &log));
        }
        if let Some((took, records, bad_crc, torn)) = recovery {
            self.stats
                .persist
                .set_recovery(took, records, bad_crc, torn);
        } else {
            self.stats.persist.on.store(true, Ordering::Relaxed);
        }
        if adopted {
            self.barrier().await;
        }
        self.global.persist_started.fetch_add(1, Ordering::AcqRel);
        // Every client shard, and the bridge when the mesh is on (its
        // resend stores restored before an event reaches it).
        self.persistence_started().await;
        // Wills due already (their connection was lost at the stop, or
        // their delay passed meanwhile), now that every shard has its
        // subscribers back.
        for will in wills {
            if will.retain {
                self.retain(&will);
            }
            self.publish(will, &mut Vec::new()).await;
        }
        Ok(task)
    }

    /// Persistence on, on the mesh's bridge: opens its log after the
    /// start-up snapshot (the bridge's resend stores, which the caller
    /// restores) and starts its writer.
    pub fn start_bridge_persistence(
        &self,
        dir: &std::path::Path,
    ) -> std::io::Result<(Rc<Log>, glommio::task::JoinHandle<()>)> {
        // The bridge's share of the disk budget: one more than the shards.
        let cfg = self.config().persistence.per_shard(self.shards);
        let log = Log::open(dir, &cfg, self.stats.persist.clone())?;
        let task = glommio::spawn_local(log.clone().run()).detach();
        self.set_log(log.clone(), 1);
        Ok((log, task))
    }

    /// Waits until every client shard and the bridge (every peer of the
    /// rings) installed what the start-up recovery gave them.
    pub async fn persistence_started(&self) {
        while self.global.persist_started.load(Ordering::Acquire) < self.shards {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The bridge restored its resend stores (see `start_persistence`).
    pub fn bridge_persistence_started(&self) {
        self.global.persist_started.fetch_add(1, Ordering::AcqRel);
    }

    /// Holds `will` in the offline session `kept` for `delay`, then
    /// publishes it unless a reconnection took the session (which cancels
    /// it) or its expiry published it first. Journaled with the session.
    pub fn arm_will(self: &Rc<Self>, kept: Rc<Session>, will: Event, delay: Duration) {
        if let Some(j) = kept.journal.borrow().as_ref() {
            let delay_s = delay.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
            j.set_will(Some((Some(delay_s), will.clone())));
        }
        *kept.pending_will.borrow_mut() = Some(will);
        let ctx = self.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(delay).await;
            let due = kept.pending_will.borrow_mut().take();
            if let Some(will) = due.filter(|_| !kept.detached.get()) {
                if let Some(j) = kept.journal.borrow().as_ref() {
                    j.set_will(None);
                }
                if will.retain {
                    ctx.retain(&will);
                }
                ctx.publish(will, &mut Vec::new()).await;
            }
        })
        .detach();
    }

    /// Gives the shard its log (persistence on); `next_sn`: the first
    /// session number not used by its start-up snapshot.
    pub fn set_log(&self, log: Rc<Log>, next_sn: u64) {
        self.durability.next_sn.set(next_sn);
        let _ = self.durability.log.set(log);
    }

    pub fn log(&self) -> Option<&Rc<Log>> {
        self.durability.log.get()
    }

    pub fn persisting(&self) -> bool {
        self.durability.log.get().is_some()
    }

    /// Whether the log takes new QoS 1/2 work (disk full, IO error: no).
    pub fn log_healthy(&self) -> bool {
        self.log().is_none_or(|l| l.health().is_ok())
    }

    /// A generation above every earlier one of any client id, on any
    /// shard: the wall clock, kept increasing here.
    fn next_gen(&self) -> u64 {
        let gen = crate::event::wall_ns().max(self.durability.last_gen.get() + 1);
        self.durability.last_gen.set(gen);
        gen
    }

    fn next_sn(&self) -> u64 {
        let n = self.durability.next_sn.get();
        self.durability.next_sn.set(n + 1);
        recover::sn(self.id, n)
    }

    /// Starts journaling a persistent session: writes a snapshot of it
    /// (the session with its subscriptions, then `backlog`, numbered as
    /// `Mailbox::restore_backlog` numbers it) under a new number and
    /// generation, which supersedes its earlier records wherever they are.
    pub fn open_journal(
        &self,
        session: &Session,
        awaiting_release: Vec<u16>,
        offline_wall_ms: Option<u64>,
        backlog: &Backlog,
    ) {
        let Some(log) = self.log() else { return };
        let open = session_open(session, self.next_sn(), self.next_gen(), awaiting_release);
        // What the session queued before it was journaled (a takeover's
        // phase 1 subscribed it already) goes after the backlog, as
        // `Mailbox::restore_backlog` will put it: numbered in that order
        // (`renumber_journaled` once the backlog is restored).
        let mut all = backlog.clone();
        all.queued.extend(session.backlog_copy().queued);
        let backlog = &all;
        let journal = Journal {
            log: log.clone(),
            sn: open.sn,
            gen: open.gen,
            offline_wall_ms,
            seq: Cell::new((backlog.inflight.len() + backlog.queued.len()) as u64),
            awaiting_release: std::cell::RefCell::new(open.awaiting_release.clone()),
            will: std::cell::RefCell::new(None),
        };
        for record in recover::session_records(&open, offline_wall_ms, backlog) {
            journal.write(record);
        }
        session.set_journal(journal);
    }

    /// On the housekeeping tick: when the log is past half its budget,
    /// writes a snapshot of what this shard owns (its retained topics, its
    /// journaled sessions with their backlogs) as the start of a new
    /// segment; the log drops the older ones once it is durable. Built in
    /// one go, without awaiting, so nothing lands between its records.
    pub(super) fn compact_log(&self) {
        let Some(log) = self.log() else { return };
        if !log.wants_compaction() {
            return;
        }
        let shards = self.global.client_shards.max(1);
        let mut records: Vec<(u8, Vec<u8>)> = Vec::new();
        for (event, stamp) in self.retained_snapshot() {
            let topic = event.topic();
            if !event.payload().is_empty()
                && !topic.starts_with("$SYS")
                && recover::retained_owner(topic, shards) == self.id
            {
                records.push(Record::Retain { stamp, event }.to_bytes());
            }
        }
        if let Some(mesh) = self.mesh.get() {
            records.extend(mesh.persist_records());
        }
        let mut sessions = 0;
        for session in self.all_sessions() {
            let journal = session.journal.borrow();
            let Some(j) = journal.as_ref() else { continue };
            sessions += 1;
            let open = session_open(&session, j.sn, j.gen, j.awaiting_release.borrow().clone());
            let backlog = session.backlog_copy();
            for r in recover::session_records(&open, j.offline_wall_ms, &backlog) {
                records.push(r.to_bytes());
            }
            if let Some((delay_s, event)) = j.will.borrow().clone() {
                records.push(
                    Record::Will {
                        sn: j.sn,
                        delay_s,
                        event,
                    }
                    .to_bytes(),
                );
            }
            j.seq.set(session.renumber_journaled());
        }
        tracing::debug!(
            shard = self.id,
            records = records.len(),
            sessions,
            "persistence: compacting the log"
        );
        log.compact(records.into_iter());
    }

    /// The session ended for good: its records are void.
    pub fn end_journal(&self, session: &Session) {
        if let Some(j) = session.take_journal() {
            j.write(Record::End { sn: j.sn });
        }
    }

    /// A retained message stored here: written if this shard owns its
    /// topic (`$SYS` statistics are not kept).
    pub(super) fn journal_retained(&self, event: &Event, stamp: u64) {
        let Some(log) = self.log() else { return };
        if event.topic().starts_with("$SYS")
            || recover::retained_owner(event.topic(), self.global.client_shards.max(1)) != self.id
        {
            return;
        }
        let _ = Record::Retain {
            stamp,
            event: event.clone(),
        }
        .append_to(log);
    }

    /// Waits until what this shard appended so far, and what every other
    /// shard appended before it saw this shard's barrier, is durable (per
    /// `persistence.sync`). At once when persistence is off.
    pub async fn durable(&self) -> Result<(), LogError> {
        let Some(log) = self.log().cloned() else {
            return Ok(());
        };
        log.health()?;
        let at = log.appended();
        let others = self.control.durable_barrier(&self.stopping).await;
        let here = log.wait_durable(at).await;
        here?;
        if others {
            Ok(())
        } else {
            Err(LogError::Failed("another shard's log failed".into()))
        }
    }

    /// Another shard's durable barrier: answered once this shard's log
    /// holds what it appended so far.
    pub(super) fn on_durable_barrier(self: &Rc<Self>, from: usize, id: u64) {
        let Some(log) = self.log() else {
            self.control.on_barrier(from, id);
            return;
        };
        let ctx = self.clone();
        log.on_durable(
            log.appended(),
            Box::new(move |result| match result {
                Ok(()) => ctx.control.on_barrier(from, id),
                Err(_) => ctx.control.on_barrier_failed(from, id),
            }),
        );
    }
}

/// The record that opens `session` in a snapshot: its subscriptions,
/// identifiers and expiry as they are now. (Its will, if any, follows as
/// a `Will` record.)
fn session_open(session: &Session, sn: u64, gen: u64, awaiting_release: Vec<u16>) -> SessionOpen {
    SessionOpen {
        sn,
        gen,
        client_id: session.client_id.clone(),
        version: session.version(),
        expiry_s: session.expiry_s.get(),
        subscriptions: session
            .subscriptions
            .borrow()
            .iter()
            .map(|(f, q)| (f.into(), q))
            .collect(),
        identifiers: session
            .sub_identifiers
            .borrow()
            .iter()
            .map(|(f, i)| (f.clone(), *i))
            .collect(),
        awaiting_release,
        will: None,
    }
}
