//! The mailbox's side of persistence (`crate::persist`, `shard::ctx::persist`):
//! a persistent session's [`Journal`] (its records, numbered as its queue
//! is), the copy of its backlog a snapshot writes, and the gated
//! acknowledgements whose batch leaves only once the logs hold what they
//! promise. A child of `mailbox`, so it reaches the queue directly.
//!
//! Owns: nothing of its own beyond the `Journal` type; the state is the
//! mailbox's fields. Off (no journal, no gated item): one `None` check per
//! QoS 1/2 delivery.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::{short, Backlog, Mailbox, OutItem, INLINE_BYTES};
use crate::event::Event;
use crate::persist::records::Record;

/// Where a persistent session's records go (`persist::records`): the
/// shard's log and the session's number in it.
pub struct Journal {
    pub log: Rc<crate::persist::log::Log>,
    pub sn: u64,
    /// The generation its snapshot opened it with.
    pub gen: u64,
    /// When its connection ended (wall clock, ms); None while connected.
    pub offline_wall_ms: Option<u64>,
    /// The number of the last QoS 1/2 event queued for the session.
    pub seq: Cell<u64>,
    /// Inbound QoS 2 packet ids awaiting PUBREL (the machine's own list,
    /// mirrored for snapshots and takeovers).
    pub awaiting_release: RefCell<Vec<u16>>,
    /// The session's will as journaled (for snapshots).
    pub will: RefCell<Option<(Option<u32>, Event)>>,
}

impl Journal {
    /// Appends a record; a log that refuses it (full, failed) has made
    /// its health an error, which refuses new QoS 1/2 publishes: the
    /// record lost here costs at most a duplicate or a resend.
    pub fn write(&self, record: Record) {
        let _ = record.append_to(&self.log);
    }
}

impl Journal {
    /// Journals the session's will (`None`: sent or discarded) and keeps
    /// it for snapshots.
    pub fn set_will(&self, will: Option<(Option<u32>, Event)>) {
        let record = match &will {
            Some((delay_s, event)) => Record::Will {
                sn: self.sn,
                delay_s: *delay_s,
                event: event.clone(),
            },
            None => Record::WillGone { sn: self.sn },
        };
        self.write(record);
        *self.will.borrow_mut() = will;
    }
}

impl Mailbox {
    /// Queues an acknowledgement that may leave only once what was
    /// routed before it is durable (see `OutItem::Gated`).
    pub fn send_gated(&self, frame: &[u8]) {
        debug_assert!(frame.len() <= INLINE_BYTES, "an acknowledgement");
        let mut out = self.out.borrow_mut();
        self.gated_pushed.set(self.gated_pushed.get() + 1);
        self.push(&mut out, OutItem::Gated(short(frame), frame.len() as u8));
    }

    /// The gated acknowledgements queued so far, if some are not yet
    /// covered by a durable wait (the writer waits, then `set_gate`).
    pub fn gate_due(&self) -> Option<u64> {
        let pushed = self.gated_pushed.get();
        (pushed > self.gate.get().0).then_some(pushed)
    }

    /// The first `upto` gated acknowledgements may leave: as they are if
    /// `ok`, else as refusals (MQTT 5: reason 0x97; 3.1.1, which has no
    /// refusal: the connection is closed).
    pub fn set_gate(&self, upto: u64, ok: bool) {
        self.gate.set((upto, ok));
    }

    /// Writes a gated acknowledgement the gate covers; false (nothing
    /// written) if it does not cover it yet.
    pub(super) fn write_gated(&self, bytes: &[u8], version: u8, buf: &mut Vec<u8>) -> bool {
        let n = self.gated_popped.get() + 1;
        let (covered, ok) = self.gate.get();
        if n > covered {
            return false;
        }
        self.gated_popped.set(n);
        if ok {
            buf.extend_from_slice(bytes);
        } else if version == 5 {
            // PUBACK, packet id, reason: Quota exceeded.
            buf.extend_from_slice(&[
                bytes[0],
                3,
                bytes[2],
                bytes[3],
                crate::mqtt::v5::reason::QUOTA_EXCEEDED,
            ]);
        } else {
            // Closed by the writer once this batch is gathered.
            self.gate.set((covered, false));
            self.gate_refused.set(true);
        }
        true
    }

    /// A gated acknowledgement was refused on an MQTT 3.1.1 connection
    /// (cleared): the writer closes it.
    pub fn take_gate_refused(&self) -> bool {
        self.gate_refused.replace(false)
    }

    /// Journals a QoS 1/2 event queued for this session; its number
    /// (0: not journaled).
    #[inline]
    pub(super) fn journal_queued(&self, qos: u8, event: &Event) -> u64 {
        if qos == 0 || !self.journaled.get() {
            return 0;
        }
        self.journal_queued_now(qos, event)
    }

    #[cold]
    #[inline(never)]
    fn journal_queued_now(&self, qos: u8, event: &Event) -> u64 {
        let journal = self.journal.borrow();
        let Some(j) = journal.as_ref() else {
            return 0;
        };
        let seq = j.seq.get() + 1;
        j.seq.set(seq);
        j.write(Record::Queue {
            sn: j.sn,
            seq,
            qos,
            event: event.clone(),
        });
        seq
    }

    /// Journals a record of this session, if it is journaled.
    #[inline]
    pub fn journal_write(&self, record: impl FnOnce(u64) -> Record) {
        if self.journaled.get() {
            self.journal_write_now(record);
        }
    }

    #[cold]
    #[inline(never)]
    fn journal_write_now(&self, record: impl FnOnce(u64) -> Record) {
        if let Some(j) = self.journal.borrow().as_ref() {
            j.write(record(j.sn));
        }
    }

    /// Inbound QoS 2 packet ids awaiting PUBREL, as its journal mirrors
    /// them (empty when not journaled).
    pub fn journaled_awaiting_release(&self) -> Vec<u16> {
        self.journal
            .borrow()
            .as_ref()
            .map(|j| j.awaiting_release.borrow().clone())
            .unwrap_or_default()
    }

    /// Whether the session is journaled (persistence on, persistent).
    #[inline]
    pub fn is_journaled(&self) -> bool {
        self.journaled.get()
    }

    /// Starts journaling this session (persistence).
    pub fn set_journal(&self, journal: Journal) {
        *self.journal.borrow_mut() = Some(Box::new(journal));
        self.journaled.set(true);
    }

    /// Stops journaling this session; its journal, if it had one.
    pub fn take_journal(&self) -> Option<Journal> {
        self.journaled.set(false);
        self.journal.borrow_mut().take().map(|j| *j)
    }

    /// A copy of what the session would carry to its next connection,
    /// leaving it in place (for a snapshot of the log).
    pub fn backlog_copy(&self) -> Backlog {
        let out = self.out.borrow();
        let mut backlog = Backlog {
            inflight: out.mqtt.inflight_copy(),
            queued: Vec::new(),
        };
        for item in &out.queue {
            match item {
                OutItem::Event { event, qos, .. } if *qos > 0 => {
                    backlog.queued.push((event.clone(), *qos))
                }
                OutItem::Redeliver(flight) => backlog.inflight.push(flight.clone()),
                _ => {}
            }
        }
        backlog
    }

    /// Drops from the queue the deliveries `backlog` holds too (the same
    /// event, by its shared buffer): during a takeover both the kept
    /// session and this one were subscribed for a moment.
    pub fn drop_twins(&self, backlog: &Backlog) {
        if backlog.inflight.is_empty() && backlog.queued.is_empty() {
            return;
        }
        let key = |e: &Event| e.prefixed_topic_and_payload().as_ptr() as usize;
        let twins: hashbrown::HashSet<usize> = backlog
            .inflight
            .iter()
            .map(|f| key(&f.event))
            .chain(backlog.queued.iter().map(|(e, _)| key(e)))
            .collect();
        let mut out = self.out.borrow_mut();
        let before = out.queue.len();
        out.queue.retain(
            |item| !matches!(item, OutItem::Event { event, qos: 1.., .. } if twins.contains(&key(event))),
        );
        if out.queue.len() != before {
            out.bytes = out.queue.iter().map(OutItem::wire_len).sum();
        }
    }

    /// Numbers the journaled QoS 1/2 events still queued as a snapshot of
    /// `backlog_copy` numbers them (after the resends) and returns the
    /// last number: records after a compaction name them by these.
    pub fn renumber_journaled(&self) -> u64 {
        let mut out = self.out.borrow_mut();
        let resends = out
            .queue
            .iter()
            .filter(|i| matches!(i, OutItem::Redeliver(_)))
            .count();
        let mut n = (out.mqtt.in_flight() + resends) as u64;
        for item in out.queue.iter_mut() {
            if let OutItem::Event { qos: 1.., seq, .. } = item {
                n += 1;
                *seq = n;
            }
        }
        n
    }
}
