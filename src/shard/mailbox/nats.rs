//! The mailbox's side of NATS: a delivery is written as its MSG/HMSG
//! frame when delivered (the frame's pieces built once per event by the
//! router, `nats::frame`) and appended to the run of frames at the back of
//! the queue (`OutItem::NatsRun`), so that a fan-out keeps no reference to
//! the event per subscriber and the writer takes a run whole. A child of
//! `mailbox`, so it reaches the queue directly.
//!
//! Owns: the runs' building and their accounting (`Outbound::run_extra`:
//! the queue limits count each message of a run). Bounds: a run holds at
//! most `write_batch_bytes_max` (or one larger frame); what runs hold
//! counts in `queued_bytes_max` and `queued_messages_max` as any queued
//! message does. Must not touch: NATS rules, the router. Hot path: once
//! per NATS delivery; rerun `cargo bench --bench nats_deliver`.

use super::{Delivery, Mailbox, OutItem};
use crate::config::{Limits, SlowConsumerPolicy};
use crate::event::Event;
use crate::nats::frame::MsgFrame;

impl Mailbox {
    /// Queues `event` for NATS subscription `sid` as its MSG/HMSG frame
    /// (`frame`, built once for the event's NATS subscribers), applying
    /// the queue limits as `deliver` does for QoS 0: the frame joins the
    /// run at the back of the queue, or starts one.
    pub fn deliver_nats(
        &self,
        event: &Event,
        frame: &MsgFrame,
        sid: &str,
        limits: &Limits,
    ) -> Delivery {
        if self.leaving() {
            return Delivery::Dropped;
        }
        let offline = self.offline.get() || self.close.get().is_some();
        let mut out = self.out.borrow_mut();
        let len = frame.len(sid);
        if offline || event.expired() {
            // (QoS 0: an offline session keeps none.)
            self.dropped.set(self.dropped.get() + 1);
            return Delivery::Dropped;
        }
        if out.len() >= limits.queued_messages_max || out.bytes + len > limits.queued_bytes_max {
            return match limits.slow_consumer_policy {
                SlowConsumerPolicy::Drop => {
                    self.dropped.set(self.dropped.get() + 1);
                    Delivery::Dropped
                }
                SlowConsumerPolicy::Disconnect => Delivery::SlowConsumer,
            };
        }
        self.pause_spent.set(false);
        let out = &mut *out;
        let born = event.born_ns;
        let live = u32::from(born != crate::event::REPLAY_NS);
        match out.queue.back_mut() {
            Some(OutItem::NatsRun {
                bytes,
                msgs,
                live: runs_live,
                oldest_ns,
            }) if bytes.len() + len <= limits.write_batch_bytes_max => {
                frame.put(bytes, sid, event.payload());
                *msgs += 1;
                *runs_live += live;
                if live == 1 && born < *oldest_ns {
                    *oldest_ns = born;
                }
                out.run_extra += 1;
            }
            _ => {
                // Into the waiting writer's own buffer (it takes it back
                // whole: no allocation, no copy), else with room for this
                // frame only (a fan-out to many subscribers whose writers
                // are busy holds no more than their frames; a run that
                // others join grows as a `Vec` does).
                let mut bytes = std::mem::take(&mut out.spare);
                bytes.reserve(len);
                frame.put(&mut bytes, sid, event.payload());
                out.queue.push_back(OutItem::NatsRun {
                    bytes,
                    msgs: 1,
                    live,
                    oldest_ns: if live == 1 { born } else { u64::MAX },
                });
            }
        }
        out.bytes += len;
        if let Some(w) = out.writer.take() {
            w.wake();
        }
        Delivery::Queued
    }
}
