//! What the log's records mean: the typed records a shard writes about
//! the state it owns (retained messages whose topic it owns, the
//! persistent MQTT sessions it hosts and their QoS 1/2 events), and their
//! encoding as `(kind, body)` for the log layer (`persist::log`), which
//! frames and checksums them.
//!
//! Owns: the record vocabulary and its byte layout (little endian, length
//! prefixed strings and bytes). Must not touch: files, the shard, time
//! (callers pass wall-clock values in).
//!
//! A session's records name it by `sn`, a number unique within the log of
//! the shard that wrote them (never reused while the process runs: the
//! shard id in its top bits, so that a recovery that merges several
//! shards' logs keeps them apart). `Session` opens it with the client id
//! and a `gen`eration: the highest generation of a client id wins at
//! recovery, so a session that moved to another shard (takeover) leaves
//! its old records behind without a record of the move.

use std::sync::Arc;

use crate::event::{Event, EventMeta};

pub const RETAIN: u8 = 16;
pub const SESSION: u8 = 17;
pub const SUB: u8 = 18;
pub const UNSUB: u8 = 19;
pub const OFFLINE: u8 = 20;
pub const END: u8 = 21;
pub const QUEUE: u8 = 22;
pub const SENT: u8 = 23;
pub const DONE: u8 = 24;
pub const REL: u8 = 25;
pub const IN_QOS2: u8 = 26;
pub const IN_REL: u8 = 27;
pub const WILL_GONE: u8 = 28;
pub const MESH_KEEP: u8 = 29;
pub const MESH_GONE: u8 = 30;
pub const WILL: u8 = 31;

/// A persistent session as opened (or resumed) on a shard.
#[derive(Debug, Clone)]
pub struct SessionOpen {
    pub sn: u64,
    pub gen: u64,
    pub client_id: Box<str>,
    /// MQTT protocol level: 4 or 5.
    pub version: u8,
    /// MQTT 5 Session Expiry Interval; None: 3.1.1 (the configured
    /// `offline_session_expiry_s` applies).
    pub expiry_s: Option<u32>,
    pub subscriptions: Vec<(Box<str>, u8)>,
    pub identifiers: Vec<(Box<str>, u32)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub awaiting_release: Vec<u16>,
    /// The will and its delay in seconds (None: sent at once).
    pub will: Option<(Option<u32>, Event)>,
}

#[derive(Debug, Clone)]
pub enum Record {
    /// A retained message (empty payload: deleted) with its stamp.
    Retain {
        stamp: u64,
        event: Event,
    },
    Session(Box<SessionOpen>),
    Sub {
        sn: u64,
        filter: Box<str>,
        qos: u8,
    },
    /// An MQTT 5 subscription identifier (0: none) of a filter.
    SubId {
        sn: u64,
        filter: Box<str>,
        id: u32,
    },
    Unsub {
        sn: u64,
        filter: Box<str>,
    },
    /// The connection ended; the session is kept until `wall_ms` +
    /// its expiry.
    Offline {
        sn: u64,
        wall_ms: u64,
        expiry_s: Option<u32>,
    },
    /// The session ended (expired, or a clean start took it over).
    End {
        sn: u64,
    },
    /// A QoS 1/2 event queued for the session, `seq` its number there.
    Queue {
        sn: u64,
        seq: u64,
        qos: u8,
        event: Event,
    },
    /// Queued event `seq` sent with packet id `pid`.
    Sent {
        sn: u64,
        seq: u64,
        pid: u16,
    },
    /// PUBACK / PUBCOMP (or an MQTT 5 PUBREC with an error) of `pid`.
    Done {
        sn: u64,
        pid: u16,
    },
    /// PUBREC of `pid`: PUBREL is owed, not the PUBLISH.
    Rel {
        sn: u64,
        pid: u16,
    },
    /// Inbound QoS 2: `pid` routed, awaiting PUBREL.
    InQos2 {
        sn: u64,
        pid: u16,
    },
    InRel {
        sn: u64,
        pid: u16,
    },
    /// The session's will was sent or discarded.
    WillGone {
        sn: u64,
    },
    /// The session's will (its connection's, or one waiting for its
    /// delay once the connection ended) and its delay in seconds.
    Will {
        sn: u64,
        delay_s: Option<u32>,
        event: Event,
    },
    /// The bridge keeps a QoS 1 copy for peer router `peer` (its resend
    /// store), encoded as the link frame numbered `seq`.
    MeshKeep {
        peer: Box<str>,
        seq: u64,
        frame: Vec<u8>,
    },
    /// Every copy kept for `peer` up to `upto` left the store
    /// (acknowledged, or pushed out of a full store).
    MeshGone {
        peer: Box<str>,
        upto: u64,
    },
}

/// A record that does not decode: the log's CRC passed, so this is a
/// record of a newer or broken writer; recovery logs and skips it.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub u8);

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) -> u8 {
        let mut w = W(out);
        match self {
            Record::Retain { stamp, event } => {
                w.u64(*stamp);
                w.event(event);
                RETAIN
            }
            Record::Session(s) => {
                w.u64(s.sn);
                w.u64(s.gen);
                w.str(&s.client_id);
                w.u8(s.version);
                w.opt_u32(s.expiry_s);
                w.u32(s.subscriptions.len() as u32);
                for (f, q) in &s.subscriptions {
                    w.str(f);
                    w.u8(*q);
                }
                w.u32(s.identifiers.len() as u32);
                for (f, id) in &s.identifiers {
                    w.str(f);
                    w.u32(*id);
                }
                w.u32(s.awaiting_release.len() as u32);
                for pid in &s.awaiting_release {
                    w.u16(*pid);
                }
                match &s.will {
                    None => w.u8(0),
                    Some((delay, event)) => {
                        w.u8(1);
                        w.opt_u32(*delay);
                        w.event(event);
                    }
                }
                SESSION
            }
            Record::Sub { sn, filter, qos } => {
                w.u64(*sn);
                w.str(filter);
                w.u8(*qos);
                SUB
            }
            Record::SubId { sn, filter, id } => {
                w.u64(*sn);
                w.str(filter);
                w.u8(0xFF);
                w.u32(*id);
                SUB
            }
            Record::Unsub { sn, filter } => {
                w.u64(*sn);
                w.str(filter);
                UNSUB
            }
            Record::Offline {
                sn,
                wall_ms,
                expiry_s,
            } => {
                w.u64(*sn);
                w.u64(*wall_ms);
                w.opt_u32(*expiry_s);
                OFFLINE
            }
            Record::End { sn } => {
                w.u64(*sn);
                END
            }
            Record::Queue {
                sn,
                seq,
                qos,
                event,
            } => {
                w.u64(*sn);
                w.u64(*seq);
                w.u8(*qos);
                w.event(event);
                QUEUE
            }
            Record::Sent { sn, seq, pid } => {
                w.u64(*sn);
                w.u64(*seq);
                w.u16(*pid);
                SENT
            }
            Record::Done { sn, pid } => w.sn_pid(*sn, *pid, DONE),
            Record::Rel { sn, pid } => w.sn_pid(*sn, *pid, REL),
            Record::InQos2 { sn, pid } => w.sn_pid(*sn, *pid, IN_QOS2),
            Record::InRel { sn, pid } => w.sn_pid(*sn, *pid, IN_REL),
            Record::WillGone { sn } => {
                w.u64(*sn);
                WILL_GONE
            }
            Record::Will { sn, delay_s, event } => {
                w.u64(*sn);
                w.opt_u32(*delay_s);
                w.event(event);
                WILL
            }
            Record::MeshKeep { peer, seq, frame } => {
                w.str(peer);
                w.u64(*seq);
                w.bytes(frame);
                MESH_KEEP
            }
            Record::MeshGone { peer, upto } => {
                w.str(peer);
                w.u64(*upto);
                MESH_GONE
            }
        }
    }

    /// Appends the record to `log`, encoded in a buffer reused by every
    /// append of this thread (no allocation per record).
    pub fn append_to(&self, log: &super::log::Log) -> Result<u64, super::log::LogError> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| {
            let mut body = scratch.borrow_mut();
            body.clear();
            let kind = self.encode(&mut body);
            let appended = log.append(kind, &body);
            if body.capacity() > 1 << 20 {
                // A large event passed: do not keep its buffer.
                *body = Vec::new();
            }
            appended
        })
    }

    /// The record and its kind, ready for `Log::append`.
    pub fn to_bytes(&self) -> (u8, Vec<u8>) {
        let mut body = Vec::new();
        let kind = self.encode(&mut body);
        (kind, body)
    }

    pub fn decode(kind: u8, body: &[u8]) -> Result<Record, Malformed> {
        let mut r = R(body);
        let bad = || Malformed(kind);
        let record = match kind {
            RETAIN => Record::Retain {
                stamp: r.u64().ok_or_else(bad)?,
                event: r.event().ok_or_else(bad)?,
            },
            SESSION => Record::Session(Box::new(r.session().ok_or_else(bad)?)),
            SUB => {
                let sn = r.u64().ok_or_else(bad)?;
                let filter = r.str().ok_or_else(bad)?;
                match r.u8().ok_or_else(bad)? {
                    0xFF => Record::SubId {
                        sn,
                        filter,
                        id: r.u32().ok_or_else(bad)?,
                    },
                    qos => Record::Sub { sn, filter, qos },
                }
            }
            UNSUB => Record::Unsub {
                sn: r.u64().ok_or_else(bad)?,
                filter: r.str().ok_or_else(bad)?,
            },
            OFFLINE => Record::Offline {
                sn: r.u64().ok_or_else(bad)?,
                wall_ms: r.u64().ok_or_else(bad)?,
                expiry_s: r.opt_u32().ok_or_else(bad)?,
            },
            END => Record::End {
                sn: r.u64().ok_or_else(bad)?,
            },
            QUEUE => Record::Queue {
                sn: r.u64().ok_or_else(bad)?,
                seq: r.u64().ok_or_else(bad)?,
                qos: r.u8().ok_or_else(bad)?,
                event: r.event().ok_or_else(bad)?,
            },
            SENT => Record::Sent {
                sn: r.u64().ok_or_else(bad)?,
                seq: r.u64().ok_or_else(bad)?,
                pid: r.u16().ok_or_else(bad)?,
            },
            DONE | REL | IN_QOS2 | IN_REL => {
                let sn = r.u64().ok_or_else(bad)?;
                let pid = r.u16().ok_or_else(bad)?;
                match kind {
                    DONE => Record::Done { sn, pid },
                    REL => Record::Rel { sn, pid },
                    IN_QOS2 => Record::InQos2 { sn, pid },
                    _ => Record::InRel { sn, pid },
                }
            }
            WILL_GONE => Record::WillGone {
                sn: r.u64().ok_or_else(bad)?,
            },
            WILL => Record::Will {
                sn: r.u64().ok_or_else(bad)?,
                delay_s: r.opt_u32().ok_or_else(bad)?,
                event: r.event().ok_or_else(bad)?,
            },
            MESH_KEEP => Record::MeshKeep {
                peer: r.str().ok_or_else(bad)?,
                seq: r.u64().ok_or_else(bad)?,
                frame: r.bytes().ok_or_else(bad)?.to_vec(),
            },
            MESH_GONE => Record::MeshGone {
                peer: r.str().ok_or_else(bad)?,
                upto: r.u64().ok_or_else(bad)?,
            },
            _ => return Err(bad()),
        };
        if !r.0.is_empty() {
            return Err(bad());
        }
        Ok(record)
    }
}

struct W<'a>(&'a mut Vec<u8>);

impl W<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        self.opt_bytes(s.map(str::as_bytes));
    }
    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.u8(0),
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
        }
    }
    fn sn_pid(&mut self, sn: u64, pid: u16, kind: u8) -> u8 {
        self.u64(sn);
        self.u16(pid);
        kind
    }
    /// An event: topic, payload, QoS, retain and its metadata; a message
    /// expiry is kept as the wall-clock instant it falls due.
    fn event(&mut self, e: &Event) {
        self.str(e.topic());
        self.bytes(e.payload());
        self.u8(e.qos);
        self.u8(u8::from(e.retain));
        match e.meta.as_deref() {
            None => self.u8(0),
            Some(m) => {
                self.u8(1);
                self.opt_str(m.reply.as_deref());
                self.opt_bytes(m.headers.as_deref());
                self.opt_str(m.response_topic.as_deref());
                self.opt_bytes(m.correlation_data.as_deref());
                self.opt_str(m.content_type.as_deref());
                match m.payload_format {
                    None => self.u8(0),
                    Some(f) => {
                        self.u8(1);
                        self.u8(f);
                    }
                }
                self.u32(m.user_properties.len() as u32);
                for (k, v) in &m.user_properties {
                    self.str(k);
                    self.str(v);
                }
                match m.expires_ns {
                    None => self.u8(0),
                    Some(at) => {
                        self.u8(1);
                        let left = at.saturating_sub(crate::event::now_ns());
                        self.u64(crate::event::wall_ns().saturating_add(left));
                    }
                }
            }
        }
    }
}

struct R<'a>(&'a [u8]);

impl R<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn opt_u32(&mut self) -> Option<Option<u32>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.u32()?)),
            _ => None,
        }
    }
    fn bytes(&mut self) -> Option<&[u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<Box<str>> {
        std::str::from_utf8(self.bytes()?).ok().map(Box::from)
    }
    fn opt_bytes(&mut self) -> Option<Option<Box<[u8]>>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes()?.into())),
            _ => None,
        }
    }
    fn opt_str(&mut self) -> Option<Option<Box<str>>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }
    /// A session is always in a length-checked count: bounded by the body.
    fn count(&mut self, each_min: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(each_min) <= self.0.len()).then_some(n)
    }
    fn session(&mut self) -> Option<SessionOpen> {
        let sn = self.u64()?;
        let gen = self.u64()?;
        let client_id = self.str()?;
        let version = self.u8()?;
        let expiry_s = self.opt_u32()?;
        let mut subscriptions = Vec::new();
        for _ in 0..self.count(5)? {
            subscriptions.push((self.str()?, self.u8()?));
        }
        let mut identifiers = Vec::new();
        for _ in 0..self.count(8)? {
            identifiers.push((self.str()?, self.u32()?));
        }
        let mut awaiting_release = Vec::new();
        for _ in 0..self.count(2)? {
            awaiting_release.push(self.u16()?);
        }
        let will = match self.u8()? {
            0 => None,
            1 => Some((self.opt_u32()?, self.event()?)),
            _ => return None,
        };
        Some(SessionOpen {
            sn,
            gen,
            client_id,
            version,
            expiry_s,
            subscriptions,
            identifiers,
            awaiting_release,
            will,
        })
    }
    fn event(&mut self) -> Option<Event> {
        let topic = self.str()?;
        if topic.len() > usize::from(u16::MAX) {
            return None;
        }
        let payload = self.bytes()?.to_vec();
        let qos = self.u8()?;
        let retain = self.u8()? != 0;
        let event = Event::new(&topic, &payload, qos.min(2), retain);
        Some(match self.u8()? {
            0 => event,
            1 => {
                let reply = self.opt_str()?;
                let headers = self.opt_bytes()?;
                let response_topic = self.opt_str()?;
                let correlation_data = self.opt_bytes()?;
                let content_type = self.opt_str()?;
                let payload_format = match self.u8()? {
                    0 => None,
                    _ => Some(self.u8()?),
                };
                let mut user_properties = Vec::new();
                for _ in 0..self.count(8)? {
                    user_properties.push((self.str()?, self.str()?));
                }
                let expires_ns = match self.u8()? {
                    0 => None,
                    _ => {
                        let at_wall = self.u64()?;
                        let left = at_wall.saturating_sub(crate::event::wall_ns());
                        Some(crate::event::now_ns().saturating_add(left))
                    }
                };
                let mut event = event;
                event.meta = Some(Arc::new(EventMeta {
                    reply,
                    headers,
                    response_topic,
                    correlation_data,
                    content_type,
                    payload_format,
                    user_properties,
                    expires_ns,
                }));
                event
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: Record) {
        let (kind, body) = r.to_bytes();
        // (Events compare by their debug form: content, origin, age.)
        let back = Record::decode(kind, &body).expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{r:?}"));
        // Every strict prefix is refused, never misread.
        for cut in 0..body.len() {
            assert!(
                Record::decode(kind, &body[..cut]).is_err(),
                "{r:?} cut {cut}"
            );
        }
    }

    #[test]
    fn every_record_round_trips_and_truncations_are_refused() {
        let plain = Event::new("a/b", b"payload", 1, false);
        let rich = Event::new("t", b"", 2, true).with_meta(EventMeta {
            reply: Some("r".into()),
            headers: Some(b"NATS/1.0\r\n\r\n".to_vec().into()),
            response_topic: Some("resp".into()),
            correlation_data: Some(b"c".to_vec().into()),
            content_type: Some("text/plain".into()),
            payload_format: Some(1),
            user_properties: vec![("k".into(), "v".into())],
            expires_ns: None,
        });
        round_trip(Record::Retain {
            stamp: 7,
            event: plain.clone(),
        });
        round_trip(Record::Retain {
            stamp: 0,
            event: rich.clone(),
        });
        round_trip(Record::Session(Box::new(SessionOpen {
            sn: 1 << 56 | 3,
            gen: 99,
            client_id: "c1".into(),
            version: 5,
            expiry_s: Some(60),
            subscriptions: vec![("a/#".into(), 1), ("$share/g/b".into(), 2)],
            identifiers: vec![("a/#".into(), 4)],
            awaiting_release: vec![1, 65535],
            will: Some((Some(5), rich.clone())),
        })));
        round_trip(Record::Sub {
            sn: 1,
            filter: "x/+".into(),
            qos: 2,
        });
        round_trip(Record::SubId {
            sn: 1,
            filter: "x/+".into(),
            id: 9,
        });
        round_trip(Record::Unsub {
            sn: 1,
            filter: "x/+".into(),
        });
        round_trip(Record::Offline {
            sn: 1,
            wall_ms: 123,
            expiry_s: None,
        });
        round_trip(Record::End { sn: 1 });
        round_trip(Record::Queue {
            sn: 1,
            seq: 2,
            qos: 1,
            event: plain,
        });
        round_trip(Record::Sent {
            sn: 1,
            seq: 2,
            pid: 3,
        });
        round_trip(Record::Done { sn: 1, pid: 3 });
        round_trip(Record::Rel { sn: 1, pid: 3 });
        round_trip(Record::InQos2 { sn: 1, pid: 3 });
        round_trip(Record::InRel { sn: 1, pid: 3 });
        round_trip(Record::WillGone { sn: 1 });
        round_trip(Record::Will {
            sn: 1,
            delay_s: Some(3),
            event: Event::new("w", b"gone", 1, true),
        });
        round_trip(Record::MeshKeep {
            peer: "b".into(),
            seq: 4,
            frame: vec![1, 2, 3],
        });
        round_trip(Record::MeshGone {
            peer: "b".into(),
            upto: 4,
        });
    }

    #[test]
    fn unknown_kinds_and_trailing_bytes_are_malformed() {
        assert_eq!(Record::decode(200, &[]).err(), Some(Malformed(200)));
        let (kind, mut body) = Record::End { sn: 1 }.to_bytes();
        body.push(0);
        assert_eq!(Record::decode(kind, &body).err(), Some(Malformed(END)));
    }

    #[test]
    fn a_message_expiry_is_kept_as_time_left() {
        let at = crate::event::now_ns() + 3_600_000_000_000;
        let e = Event::new("t", b"x", 1, false).with_meta(EventMeta {
            expires_ns: Some(at),
            ..EventMeta::default()
        });
        let (kind, body) = Record::Queue {
            sn: 1,
            seq: 1,
            qos: 1,
            event: e,
        }
        .to_bytes();
        let Ok(Record::Queue { event, .. }) = Record::decode(kind, &body) else {
            panic!("decodes");
        };
        let back = event.meta.unwrap().expires_ns.unwrap();
        // Within a second of the original instant (clock reads between).
        assert!(back.abs_diff(at) < 1_000_000_000, "{back} vs {at}");
    }
}
