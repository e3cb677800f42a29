//! The client's receiving half: reading the router -> client ring,
//! decoding messages and control replies, holding messages for `recv`.
//!
//! Owns: `Rx` (under its lock). Bounds: at most `PENDING_MAX` messages
//! held; past that the bytes stay in the ring.

use std::os::fd::AsFd;
use std::time::Instant;

use super::{corrupt, lock, Client, Rx, Why, PENDING_MAX};
use crate::{doorbell, mqtt, nats, Dialect, Error, Message};

impl Client {
    pub(super) fn recv_with_deadline<R>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&str, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        let mut out = None;
        let got = self.wait_rx(deadline, |rx| {
            out = self.take_msg(rx, &mut f)?;
            Ok(out.is_some().then_some(()))
        })?;
        Ok(got.and(out))
    }

    /// Takes the next held or decoded message, reading the ring as needed.
    pub(super) fn take_msg<R>(
        &self,
        rx: &mut Rx,
        f: &mut impl FnMut(&str, &[u8]) -> R,
    ) -> Result<Option<R>, Error> {
        if let Some(m) = rx.pending.pop_front() {
            return Ok(Some(f(&m.topic, &m.payload)));
        }
        loop {
            match self.decode_one(rx, Some(&mut *f))? {
                Some(Some(r)) => return Ok(Some(r)),
                // A control operation (PING, PONG, +OK, SUBACK): a
                // message may follow it in the buffer.
                Some(None) => continue,
                None => {
                    if !self.fill(rx)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads the ring into the buffer; true if bytes came.
    pub(super) fn fill(&self, rx: &mut Rx) -> Result<bool, Error> {
        if rx.start > 0 && rx.start * 2 >= rx.buf.len() {
            rx.buf.drain(..rx.start);
            rx.start = 0;
        }
        let ready = rx.cons.available().map_err(corrupt)? as usize;
        if ready == 0 {
            return Ok(false);
        }
        let old = rx.buf.len();
        let take = ready.min(1 << 20);
        rx.buf.resize(old + take, 0);
        let n = rx.cons.read(&mut rx.buf[old..]).map_err(corrupt)?;
        rx.buf.truncate(old + n);
        if rx.cons.release() {
            doorbell::ring(self.to_router.as_fd());
        }
        Ok(n > 0)
    }

    /// Decodes one unit from the buffer: control operations are handled
    /// (Some(None) returned to go on); a message goes to `f` if given, else
    /// to `pending`. None: more bytes needed.
    #[allow(clippy::type_complexity)]
    pub(super) fn decode_one<R>(
        &self,
        rx: &mut Rx,
        f: Option<&mut impl FnMut(&str, &[u8]) -> R>,
    ) -> Result<Option<Option<R>>, Error> {
        let Rx {
            buf,
            start,
            pending,
            pongs,
            errors,
            last_error,
            connack,
            acks,
            ..
        } = rx;
        let bytes = &buf[*start..];
        match self.dialect {
            Dialect::Nats => {
                let Some((op, used)) = nats::decode(bytes).map_err(|e| Error::Protocol(e.0))?
                else {
                    return Ok(None);
                };
                let mut out = None;
                match op {
                    nats::ServerOp::Msg {
                        subject, payload, ..
                    } => match f {
                        Some(f) => out = Some(f(subject, payload)),
                        None => pending.push_back(Message {
                            topic: subject.to_string(),
                            payload: payload.to_vec(),
                        }),
                    },
                    nats::ServerOp::Ping => self.owe(nats::pong)?,
                    nats::ServerOp::Pong => *pongs += 1,
                    nats::ServerOp::Err(e) => {
                        *errors += 1;
                        *last_error = Some(e.to_string());
                    }
                    nats::ServerOp::Info | nats::ServerOp::Ok => {}
                }
                *start += used;
                self.flush_owed();
                Ok(Some(out))
            }
            Dialect::Mqtt => {
                let Some((packet, used)) = mqtt::decode(bytes).map_err(|e| Error::Protocol(e.0))?
                else {
                    return Ok(None);
                };
                let mut out = None;
                match packet {
                    mqtt::Packet::Publish {
                        topic,
                        payload,
                        qos,
                        pid,
                    } => {
                        if qos == 1 {
                            self.owe(|b| mqtt::puback(b, pid))?;
                        }
                        match f {
                            Some(f) => out = Some(f(topic, payload)),
                            None => pending.push_back(Message {
                                topic: topic.to_string(),
                                payload: payload.to_vec(),
                            }),
                        }
                    }
                    mqtt::Packet::ConnAck { code } => *connack = Some(code),
                    mqtt::Packet::SubAck { pid, codes } => {
                        acks.insert(pid, codes.to_vec());
                    }
                    mqtt::Packet::UnsubAck { pid } => {
                        acks.insert(pid, Vec::new());
                    }
                    mqtt::Packet::PingResp => {}
                }
                *start += used;
                self.flush_owed();
                Ok(Some(out))
            }
        }
    }

    /// Reads and decodes what is there, holding messages in `pending` (up
    /// to PENDING_MAX), so that acks behind messages are seen.
    pub(super) fn pump(&self, rx: &mut Rx) -> Result<(), Error> {
        loop {
            while rx.pending.len() < PENDING_MAX {
                match self.decode_one::<()>(rx, None::<&mut fn(&str, &[u8])>)? {
                    Some(_) => continue,
                    None => break,
                }
            }
            if rx.pending.len() >= PENDING_MAX || !self.fill(rx)? {
                return Ok(());
            }
        }
    }

    /// Waits until `ready` (under the rx lock, after a pump) gives Some,
    /// or the deadline passes (None).
    pub(super) fn wait_rx<T>(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Rx) -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        let mut out = None;
        let mut check = || -> Result<bool, Error> {
            let mut rx = lock(&self.rx);
            if let Some(v) = ready(&mut rx)? {
                out = Some(v);
                return Ok(true);
            }
            self.pump(&mut rx)?;
            if let Some(v) = ready(&mut rx)? {
                out = Some(v);
                return Ok(true);
            }
            Ok(false)
        };
        let got = self.wait(Why::Data, deadline, &mut check)?;
        Ok(if got { out } else { None })
    }
}
