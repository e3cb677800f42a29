//! One blocking client connection, MQTT 3.1.1 or NATS: handshake,
//! subscribe, buffered reads, and parsing of what the server sends into
//! protocol-neutral [`Inbound`] events. Keep-alive answers (NATS `PONG`)
//! and QoS 1 acknowledgements (MQTT `PUBACK`) are queued automatically and
//! written by [`Conn::flush_replies`]. Acknowledgements of our own
//! messages (MQTT PUBACK, the answers to NATS `--js` publishes on the
//! subscription [`REPLY_SID`]) carry the id that [`patch_id`] wrote.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use crate::mqtt::codec::{self, Connect, DecodeLimits, Packet};

use super::nats::{self, ServerOp};
use super::stream::Stream;
use super::Protocol;

/// A `Conn` is MQTT or NATS: AMQP clients run on `bench::amqp` (their
/// threads are `bench::amqp_clients`; `Conn::open` refuses AMQP).
const AMQP_ELSEWHERE: &str = "AMQP clients use bench::amqp";

/// NATS subscription id of a `--js` publisher's reply inbox, and as the
/// server writes it in MSG (compared as text: no parse per message).
pub const REPLY_SID: u32 = 2;
const REPLY_SID_TEXT: &str = "2";

const MQTT_LIMITS: DecodeLimits = DecodeLimits {
    packet_bytes_max: 64 * 1024 * 1024,
    filters_per_packet_max: 1024,
};

/// What the server sent, minus the protocol.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// A delivered message (MQTT PUBLISH, NATS MSG/HMSG).
    Msg(&'a [u8]),
    /// MQTT PUBACK for one of our QoS 1 PUBLISHes, or the answer to one
    /// of our NATS `--js` publishes; with the message's id.
    PubAck(u16),
    /// MQTT CONNACK with its return code.
    ConnAck(u8),
    /// MQTT SUBACK: whether every filter was granted.
    SubAck(bool),
    /// NATS PONG.
    Pong,
    /// Anything else (INFO, +OK, PINGRESP, PING already answered, ...).
    Other,
}

pub struct Conn {
    pub stream: Stream,
    proto: Protocol,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Queued PONGs and PUBACKs.
    replies: Vec<u8>,
}

impl Conn {
    /// Connects and completes the protocol handshake (CONNECT/CONNACK, or
    /// INFO, CONNECT and a PING/PONG round trip), over TLS with `tls`.
    pub fn open(
        proto: Protocol,
        addr: &str,
        name: &str,
        timeout: Duration,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Conn> {
        Conn::open_session(proto, addr, name, timeout, tls, true)
    }

    /// [`Conn::open`], MQTT with the CONNECT's clean session flag
    /// `clean_session` (false: a persistent session named `name`).
    pub fn open_session(
        proto: Protocol,
        addr: &str,
        name: &str,
        timeout: Duration,
        tls: Option<&Arc<rustls::ClientConfig>>,
        clean_session: bool,
    ) -> io::Result<Conn> {
        if proto == Protocol::Amqp {
            return Err(io::Error::other(AMQP_ELSEWHERE));
        }
        let mut info = Vec::new();
        let stream = Stream::connect(addr, tls, proto == Protocol::Nats, timeout, &mut info)?;
        let mut buf = vec![0; 256 * 1024];
        buf[..info.len()].copy_from_slice(&info);
        let mut c = Conn {
            stream,
            proto,
            buf,
            start: 0,
            end: info.len(),
            replies: Vec::with_capacity(64 * 1024),
        };
        let mut out = Vec::new();
        match proto {
            Protocol::Mqtt => {
                codec::encode(
                    &Packet::Connect(Connect {
                        protocol_name: codec::PROTOCOL_NAME,
                        level: codec::PROTOCOL_LEVEL_311,
                        clean_session,
                        keep_alive_s: 0,
                        client_id: name,
                        will: None,
                        username: None,
                        password: None,
                    }),
                    &mut out,
                );
                c.stream.write_all(&out)?;
                c.wait_for("CONNACK", |ev| match ev {
                    Inbound::ConnAck(0) => Some(Ok(())),
                    Inbound::ConnAck(code) => Some(Err(io::Error::other(format!(
                        "CONNACK refused the connection (code {code})"
                    )))),
                    _ => None,
                })?;
            }
            Protocol::Nats => {
                nats::put_connect(&mut out, name);
                c.stream.write_all(&out)?;
                c.wait_for("PONG", |ev| matches!(ev, Inbound::Pong).then_some(Ok(())))?;
            }
            Protocol::Amqp => unreachable!("{AMQP_ELSEWHERE}"),
        }
        Ok(c)
    }

    /// Subscribes to `subject` and waits until the server confirmed it
    /// (SUBACK, or the PONG after SUB).
    pub fn subscribe(&mut self, subject: &str, qos: u8) -> io::Result<()> {
        let mut out = Vec::new();
        match self.proto {
            Protocol::Mqtt => {
                codec::encode(
                    &Packet::Subscribe {
                        packet_id: 1,
                        filters: vec![(subject, qos)],
                    },
                    &mut out,
                );
                self.stream.write_all(&out)?;
                self.wait_for("SUBACK", |ev| match ev {
                    Inbound::SubAck(true) => Some(Ok(())),
                    Inbound::SubAck(false) => {
                        Some(Err(io::Error::other("SUBACK refused the subscription")))
                    }
                    _ => None,
                })
            }
            Protocol::Nats => {
                nats::put_sub(&mut out, subject, 1);
                self.stream.write_all(&out)?;
                self.wait_for("PONG", |ev| matches!(ev, Inbound::Pong).then_some(Ok(())))
            }
            Protocol::Amqp => unreachable!("{AMQP_ELSEWHERE}"),
        }
    }

    /// NATS: subscribes to every reply subject starting with `prefix`
    /// (`prefix*`, one token of id digits) as [`REPLY_SID`] and waits for
    /// the PONG that confirms it.
    pub fn subscribe_replies(&mut self, prefix: &str) -> io::Result<()> {
        let mut out = Vec::new();
        nats::put_sub(&mut out, &format!("{prefix}*"), REPLY_SID);
        self.stream.write_all(&out)?;
        self.wait_for("PONG", |ev| matches!(ev, Inbound::Pong).then_some(Ok(())))
    }

    fn wait_for(
        &mut self,
        what: &str,
        mut f: impl FnMut(&Inbound<'_>) -> Option<io::Result<()>>,
    ) -> io::Result<()> {
        loop {
            let mut done = None;
            self.drain(|ev| {
                if done.is_none() {
                    done = f(&ev);
                }
            })?;
            self.flush_replies()?;
            if let Some(r) = done {
                return r;
            }
            match self.fill() {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no {what} from the server"),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
    }

    /// One blocking read (subject to the socket's read timeout); EOF is an
    /// error.
    pub fn fill(&mut self) -> io::Result<usize> {
        self.make_room();
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        self.end += n;
        Ok(n)
    }

    /// One read that does not block: `Ok(0)` when nothing is waiting.
    pub fn try_fill(&mut self) -> io::Result<usize> {
        self.make_room();
        match self.stream.read_now(&mut self.buf[self.end..]) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            )),
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Parses every whole packet buffered, handing each to `f`. PINGs are
    /// answered and QoS 1 deliveries acknowledged (queued for
    /// [`Conn::flush_replies`]). A NATS `-ERR` is an error.
    pub fn drain(&mut self, mut f: impl FnMut(Inbound<'_>)) -> io::Result<()> {
        match self.proto {
            Protocol::Mqtt => loop {
                match codec::decode(&self.buf[self.start..self.end], &MQTT_LIMITS) {
                    Ok(Some((p, used))) => {
                        self.start += used;
                        let ev = match p {
                            Packet::Publish(p) => {
                                if p.qos == 1 {
                                    self.replies.extend_from_slice(&[0x40, 2]);
                                    self.replies.extend_from_slice(&p.packet_id.to_be_bytes());
                                } else if p.qos == 2 {
                                    return Err(io::Error::other("QoS 2 delivery not supported"));
                                }
                                Inbound::Msg(p.payload)
                            }
                            Packet::PubAck(id) => Inbound::PubAck(id),
                            Packet::ConnAck { code, .. } => Inbound::ConnAck(code),
                            Packet::SubAck { codes, .. } => {
                                Inbound::SubAck(codes.iter().all(|&c| c <= 2))
                            }
                            _ => Inbound::Other,
                        };
                        f(ev);
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(io::Error::other(format!("MQTT decode: {e}"))),
                }
            },
            Protocol::Nats => loop {
                match nats::parse(&self.buf[self.start..self.end]) {
                    Ok(Some((op, used))) => {
                        self.start += used;
                        let ev = match op {
                            ServerOp::Msg {
                                subject,
                                sid,
                                payload,
                                ..
                            } if sid == REPLY_SID_TEXT => reply_ack(subject, payload)?,
                            ServerOp::Msg { payload, .. } | ServerOp::HMsg { payload, .. } => {
                                Inbound::Msg(payload)
                            }
                            ServerOp::Ping => {
                                self.replies.extend_from_slice(b"PONG\r\n");
                                Inbound::Other
                            }
                            ServerOp::Pong => Inbound::Pong,
                            ServerOp::Err(msg) => {
                                return Err(io::Error::other(format!("server: -ERR '{msg}'")))
                            }
                            ServerOp::Info(_) | ServerOp::Ok => Inbound::Other,
                        };
                        f(ev);
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            },
            Protocol::Amqp => unreachable!("{AMQP_ELSEWHERE}"),
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes queued PONGs and PUBACKs.
    pub fn flush_replies(&mut self) -> io::Result<()> {
        if !self.replies.is_empty() {
            self.stream.write_all(&self.replies)?;
            self.replies.clear();
        }
        Ok(())
    }

    /// Says goodbye politely (MQTT DISCONNECT); errors are ignored.
    pub fn close(mut self) {
        if self.proto == Protocol::Mqtt {
            let _ = self.stream.write_all(&[0xe0, 0]);
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The answer to one of our NATS `--js` publishes: its id, or the error
/// the server answered (JetStream: `{"error":{...}}`).
fn reply_ack<'a>(subject: &str, payload: &[u8]) -> io::Result<Inbound<'a>> {
    let id = nats::reply_id(subject)
        .ok_or_else(|| io::Error::other(format!("reply on an unexpected subject {subject:?}")))?;
    if payload.windows(7).any(|w| w == b"\"error\"") {
        return Err(io::Error::other(format!(
            "the server answered a publish with an error: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        )));
    }
    Ok(Inbound::PubAck(id))
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Appends one PUBLISH / PUB carrying `payload` (NATS: with a reply
/// subject `reply_prefix` + id digits when given); returns the offset of
/// the message id (MQTT QoS 1 packet id, NATS reply id: see [`patch_id`])
/// and of the payload within `out`.
pub fn put_message(
    proto: Protocol,
    out: &mut Vec<u8>,
    subject: &str,
    qos: u8,
    reply_prefix: Option<&str>,
    payload: &[u8],
) -> (usize, usize) {
    match proto {
        Protocol::Mqtt => {
            codec::put_publish(out, false, qos, false, subject.as_bytes(), 1, payload);
            let payload_at = out.len() - payload.len();
            (payload_at - 2, payload_at)
        }
        Protocol::Nats => {
            let id_at = match reply_prefix {
                Some(prefix) => nats::put_pub_with_reply(out, subject, prefix, payload),
                None => {
                    nats::put_pub(out, subject, payload);
                    out.len() - 2 - payload.len()
                }
            };
            (id_at, out.len() - 2 - payload.len())
        }
        Protocol::Amqp => unreachable!("{AMQP_ELSEWHERE}"),
    }
}

/// Writes message id `id` at `at` (an offset [`put_message`] returned).
pub fn patch_id(proto: Protocol, buf: &mut [u8], at: usize, id: u16) {
    match proto {
        Protocol::Mqtt => buf[at..at + 2].copy_from_slice(&id.to_be_bytes()),
        Protocol::Nats => nats::put_reply_id(&mut buf[at..], id),
        Protocol::Amqp => unreachable!("{AMQP_ELSEWHERE}"),
    }
}

/// Encoded size of one message.
pub fn message_len(
    proto: Protocol,
    subject: &str,
    qos: u8,
    reply_prefix: Option<&str>,
    size: usize,
) -> usize {
    match (proto, reply_prefix) {
        (Protocol::Mqtt, _) => codec::publish_len(subject.len(), qos, size),
        (Protocol::Nats, None) => nats::pub_len(subject, size),
        (Protocol::Nats, Some(prefix)) => nats::pub_with_reply_len(subject, prefix, size),
        (Protocol::Amqp, _) => unreachable!("{AMQP_ELSEWHERE}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_sid_text_is_the_sid() {
        assert_eq!(REPLY_SID.to_string(), REPLY_SID_TEXT);
    }

    #[test]
    fn answers_to_js_publishes_are_acks_with_their_id_or_errors() {
        let ack = reply_ack("_INBOX.weftbench.1.0.00042", br#"{"stream":"B","seq":7}"#);
        assert!(matches!(ack, Ok(Inbound::PubAck(42))), "{ack:?}");
        let err = reply_ack(
            "_INBOX.weftbench.1.0.00001",
            br#"{"error":{"code":503,"description":"no space"}}"#,
        )
        .expect_err("an error answer fails the publisher");
        assert!(err.to_string().contains("no space"), "{err}");
        assert!(reply_ack("_INBOX.other", b"{}").is_err(), "no id");
    }

    #[test]
    fn patched_ids_are_where_put_message_said() {
        let mut mqtt = Vec::new();
        let (at, _) = put_message(Protocol::Mqtt, &mut mqtt, "a/b", 1, None, b"xy");
        patch_id(Protocol::Mqtt, &mut mqtt, at, 0x1234);
        let (p, used) = codec::decode(&mqtt, &MQTT_LIMITS).unwrap().unwrap();
        assert_eq!(used, mqtt.len());
        assert_eq!(message_len(Protocol::Mqtt, "a/b", 1, None, 2), mqtt.len());
        assert!(matches!(p, Packet::Publish(p) if p.packet_id == 0x1234 && p.payload == b"xy"));

        let mut nats = Vec::new();
        let (at, payload_at) = put_message(
            Protocol::Nats,
            &mut nats,
            "a.b",
            0,
            Some("_INBOX.x."),
            b"xy",
        );
        patch_id(Protocol::Nats, &mut nats, at, 513);
        assert_eq!(nats, b"PUB a.b _INBOX.x.00513 2\r\nxy\r\n");
        assert_eq!(&nats[payload_at..payload_at + 2], b"xy");
        assert_eq!(
            message_len(Protocol::Nats, "a.b", 0, Some("_INBOX.x."), 2),
            nats.len()
        );
    }
}
