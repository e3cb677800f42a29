//! Recovery, sans-IO: the records of every shard's log (as read at start,
//! in log order) folded into the state they describe — the retained
//! messages and the persistent sessions with their subscriptions, will,
//! QoS 2 packet ids and QoS 1/2 backlog — and that state dealt out again
//! as each new shard's snapshot (the shard count may have changed: a
//! session goes to its client id's directory shard, a retained message to
//! its topic's owner).
//!
//! Owns: the meaning of a sequence of records. Must not touch: files (the
//! start-up code in `persist::start` reads and writes them), the shards.
//!
//! Rules: a client id's session is the one opened with the highest
//! generation (a session that moved between shards left older records
//! behind); if that one ended, the client id has none. Within one log,
//! later records win. A retained topic's records are all in its owner's
//! log (the owner writes them), so log order is their order; across logs
//! (a crash during a start-up rewrite leaves copies) the higher stamp, then
//! the later log, wins.

use std::collections::BTreeMap;

use super::records::{Record, SessionOpen};
use crate::event::Event;
use crate::mqtt::outbound::{Backlog, Flight};

/// One persistent session as recovered.
#[derive(Debug)]
pub struct Session {
    pub open: SessionOpen,
    /// When its connection ended (wall clock, ms); None: it was connected
    /// when the router stopped.
    pub offline_wall_ms: Option<u64>,
    pub backlog: Backlog,
    /// It was connected when the router stopped: its connection ended
    /// then, without DISCONNECT (its will is due, after its delay).
    pub online_at_crash: bool,
}

/// What the logs describe.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Retained messages by topic, with their stamps (deletions applied).
    pub retained: BTreeMap<Box<str>, (u64, Event)>,
    pub sessions: Vec<Session>,
    /// The bridge's resend stores: per peer router, the copies kept (by
    /// their sequence number there).
    pub mesh: BTreeMap<Box<str>, BTreeMap<u64, Vec<u8>>>,
    pub records: u64,
    /// Records whose CRC held but that did not decode (logged, skipped).
    pub malformed: u64,
}

#[derive(Default)]
struct Queued {
    qos: u8,
    event: Option<Event>,
    pid: Option<u16>,
    released: bool,
}

struct Open {
    open: SessionOpen,
    offline_wall_ms: Option<u64>,
    ended: bool,
    queue: BTreeMap<u64, Queued>,
    by_pid: hashbrown::HashMap<u16, u64>,
}

impl Open {
    fn apply(&mut self, record: Record) {
        let s = &mut self.open;
        match record {
            Record::Sub { filter, qos, .. } => {
                match s.subscriptions.iter_mut().find(|(f, _)| *f == filter) {
                    Some(entry) => entry.1 = qos,
                    None => s.subscriptions.push((filter, qos)),
                }
            }
            Record::SubId { filter, id, .. } => {
                s.identifiers.retain(|(f, _)| *f != filter);
                if id != 0 {
                    s.identifiers.push((filter, id));
                }
            }
            Record::Unsub { filter, .. } => {
                s.subscriptions.retain(|(f, _)| *f != filter);
                s.identifiers.retain(|(f, _)| *f != filter);
            }
            Record::Offline {
                wall_ms, expiry_s, ..
            } => {
                self.offline_wall_ms = Some(wall_ms);
                s.expiry_s = expiry_s;
            }
            Record::End { .. } => self.ended = true,
            Record::Queue {
                seq, qos, event, ..
            } => {
                self.queue.insert(
                    seq,
                    Queued {
                        qos,
                        event: Some(event),
                        ..Queued::default()
                    },
                );
            }
            Record::Sent { seq, pid, .. } => {
                if let Some(q) = self.queue.get_mut(&seq) {
                    q.pid = Some(pid);
                    self.by_pid.insert(pid, seq);
                }
            }
            Record::Done { pid, .. } => {
                if let Some(seq) = self.by_pid.remove(&pid) {
                    self.queue.remove(&seq);
                }
            }
            Record::Rel { pid, .. } => {
                if let Some(q) = self.by_pid.get(&pid).and_then(|s| self.queue.get_mut(s)) {
                    q.released = true;
                }
            }
            Record::InQos2 { pid, .. } => {
                if !s.awaiting_release.contains(&pid) {
                    s.awaiting_release.push(pid);
                }
            }
            Record::InRel { pid, .. } => s.awaiting_release.retain(|p| *p != pid),
            Record::WillGone { .. } => s.will = None,
            Record::Will { delay_s, event, .. } => s.will = Some((delay_s, event)),
            Record::Retain { .. }
            | Record::Session(_)
            | Record::MeshKeep { .. }
            | Record::MeshGone { .. } => debug_assert!(false, "not a session's record"),
        }
    }

    fn finish(self) -> Session {
        let mut backlog = Backlog::default();
        let mut inflight: Vec<(u64, Flight)> = Vec::new();
        for (seq, q) in self.queue {
            let Some(event) = q.event else { continue };
            match q.pid {
                Some(id) => inflight.push((
                    seq,
                    Flight {
                        id,
                        event,
                        qos: q.qos,
                        released: q.released,
                    },
                )),
                None => backlog.queued.push((event, q.qos)),
            }
        }
        backlog.inflight = inflight.into_iter().map(|(_, f)| f).collect();
        Session {
            online_at_crash: self.offline_wall_ms.is_none(),
            open: self.open,
            offline_wall_ms: self.offline_wall_ms,
            backlog,
        }
    }
}

/// The session number of a session record, if it is one.
fn sn_of(r: &Record) -> Option<u64> {
    Some(match r {
        Record::Retain { .. } | Record::MeshKeep { .. } | Record::MeshGone { .. } => return None,
        Record::Session(s) => s.sn,
        Record::Sub { sn, .. }
        | Record::SubId { sn, .. }
        | Record::Unsub { sn, .. }
        | Record::Offline { sn, .. }
        | Record::End { sn }
        | Record::Queue { sn, .. }
        | Record::Sent { sn, .. }
        | Record::Done { sn, .. }
        | Record::Rel { sn, .. }
        | Record::InQos2 { sn, .. }
        | Record::InRel { sn, .. }
        | Record::WillGone { sn }
        | Record::Will { sn, .. } => *sn,
    })
}

/// Folds the logs (each in its order) into the state they describe.
pub fn replay(logs: impl IntoIterator<Item = Vec<(u8, Vec<u8>)>>) -> Recovered {
    let mut out = Recovered::default();
    // Per log: sessions by sn (sns are unique within a log).
    let mut sessions: Vec<Open> = Vec::new();
    for log in logs {
        let mut open: hashbrown::HashMap<u64, Open> = hashbrown::HashMap::new();
        for (kind, body) in log {
            out.records += 1;
            let record = match Record::decode(kind, &body) {
                Ok(r) => r,
                Err(e) => {
                    out.malformed += 1;
                    tracing::warn!(
                        kind = e.0,
                        "persistence: a record that does not decode is skipped"
                    );
                    continue;
                }
            };
            match record {
                Record::Retain { stamp, event } => {
                    let topic: Box<str> = event.topic().into();
                    let newer = out.retained.get(&topic).is_none_or(|(s, _)| stamp >= *s);
                    if newer {
                        out.retained.insert(topic, (stamp, event));
                    }
                }
                Record::MeshKeep { peer, seq, frame } => {
                    out.mesh.entry(peer).or_default().insert(seq, frame);
                }
                Record::MeshGone { peer, upto } => {
                    if let Some(kept) = out.mesh.get_mut(&peer) {
                        kept.retain(|&seq, _| seq > upto);
                    }
                }
                Record::Session(s) => {
                    let sn = s.sn;
                    open.insert(
                        sn,
                        Open {
                            open: *s,
                            offline_wall_ms: None,
                            ended: false,
                            queue: BTreeMap::new(),
                            by_pid: hashbrown::HashMap::new(),
                        },
                    );
                }
                other => {
                    let sn = sn_of(&other).expect("a session record");
                    if let Some(o) = open.get_mut(&sn) {
                        o.apply(other);
                    }
                }
            }
        }
        sessions.extend(open.into_values());
    }
    out.retained.retain(|_, (_, e)| !e.payload().is_empty());
    out.mesh.retain(|_, kept| !kept.is_empty());
    // The highest generation of each client id decides.
    let mut best: hashbrown::HashMap<Box<str>, Open> = hashbrown::HashMap::new();
    for s in sessions {
        match best.get(&s.open.client_id) {
            Some(b) if b.open.gen >= s.open.gen => {}
            _ => {
                best.insert(s.open.client_id.clone(), s);
            }
        }
    }
    let mut kept: Vec<Session> = best
        .into_values()
        .filter(|o| !o.ended)
        .map(Open::finish)
        .collect();
    kept.sort_by(|a, b| a.open.client_id.cmp(&b.open.client_id));
    out.sessions = kept;
    out
}

/// FNV-1a of a name: stable across shards and runs, no seed to share
/// (the client-id directory uses the same hash).
pub fn fnv(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shard that writes a retained topic's records.
pub fn retained_owner(topic: &str, shards: usize) -> usize {
    (fnv(topic) % shards.max(1) as u64) as usize
}

/// The session number `n` of shard `shard`: unique in the process's logs.
pub fn sn(shard: usize, n: u64) -> u64 {
    (shard as u64) << 48 | (n & ((1 << 48) - 1))
}

/// The records of one session, as a snapshot writes it (its open record
/// with everything folded in, then its backlog).
pub fn session_records(
    s: &SessionOpen,
    offline_wall_ms: Option<u64>,
    backlog: &Backlog,
) -> Vec<Record> {
    let sn = s.sn;
    let mut out = vec![Record::Session(Box::new(s.clone()))];
    if let Some(wall_ms) = offline_wall_ms {
        out.push(Record::Offline {
            sn,
            wall_ms,
            expiry_s: s.expiry_s,
        });
    }
    let mut seq = 0;
    for f in &backlog.inflight {
        seq += 1;
        out.push(Record::Queue {
            sn,
            seq,
            qos: f.qos,
            event: f.event.clone(),
        });
        out.push(Record::Sent { sn, seq, pid: f.id });
        if f.released {
            out.push(Record::Rel { sn, pid: f.id });
        }
    }
    for (event, qos) in &backlog.queued {
        seq += 1;
        out.push(Record::Queue {
            sn,
            seq,
            qos: *qos,
            event: event.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests;
