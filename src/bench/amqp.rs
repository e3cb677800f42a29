//! The bench client's AMQP 1.0 connection (`weft bench --amqp`): one
//! blocking connection with one session and one link, a sender or a
//! receiver, so that the same load tool measures AMQP 1 → N / N → 1
//! against weft's `--amqp-listen` and another broker (RabbitMQ's AMQP 1.0
//! plugin, perf/amqp-compare.sh).
//!
//! The handshake (SASL ANONYMOUS or PLAIN, open, begin, attach, the first
//! flow) and every rare frame (detach, end, close and their errors) go
//! through `fe2o3-amqp-types` + `serde_amqp`. The per-message frames do
//! not (`amqp_codec`: hand-encoded transfers patched in place, a small
//! field reader for transfer, flow and disposition), so that the tool
//! spends its CPU on the broker's messages, not on serde.
//!
//! Link model (one link per connection, on channel 0, handle 0):
//! * single-frame deliveries only (64 B .. 64 KiB): the delivery id, the
//!   session's transfer id and the link's delivery count all advance by one
//!   per message, so one counter serves for the three;
//! * a sender writes while the link credit and the broker's session
//!   incoming window allow (`amqp_codec::Credit::room`);
//! * a receiver grants [`RECEIVER_CREDIT`] and tops it up when half is
//!   used, re-announcing its session window in the same flow.
//!
//! Owns: the connection, its setup and the state of its one link. Must not
//! touch: the load loops and their counters (`amqp_clients`).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp_types::definitions::{
    Handle, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo,
};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Source, Target};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Close, Disposition, Flow, MaxFrameSize, Open, Performative,
};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use serde_amqp::primitives::{Binary, Symbol};

use super::amqp_codec::{
    descriptor, message_payload, put_frame, read_disposition, read_flow, read_transfer, Credit,
    DESC_ACCEPTED, DESC_DISPOSITION, DESC_FLOW, DESC_TRANSFER, FRAME_AMQP, FRAME_SASL,
};
pub use super::amqp_codec::{patch_delivery, put_transfer, transfer_len};
use super::stream::Stream;

const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The largest frame this client accepts (announced in its open).
pub const MAX_FRAME_BYTES: u32 = 64 * 1024;
/// Credit a receiver grants; topped up to this when half is used.
pub const RECEIVER_CREDIT: u32 = 10_000;
/// The receiver's session incoming window (re-announced with each credit).
const INCOMING_WINDOW: u32 = 1 << 20;
/// How long [`Link::close`] waits for the broker's close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The close performative's descriptor code.
const DESC_CLOSE: u8 = 0x18;
/// The sender's session outgoing window (informational in AMQP 1.0).
const OUTGOING_WINDOW: u32 = 1 << 20;

/// How each delivery is settled: `--qos 0` pre-settled (at most once),
/// `--qos 1` unsettled (the receiver accepts; a sender counts `accepted`
/// dispositions as acknowledgements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Pre,
    Unsettled,
}

impl Settle {
    pub fn from_qos(qos: u8) -> Settle {
        if qos == 0 {
            Settle::Pre
        } else {
            Settle::Unsettled
        }
    }
}

/// The SASL identity: ANONYMOUS without a user, PLAIN with one.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<String>,
}

/// The link a connection attaches: its name (also the container id),
/// the address (a sender's target, a receiver's source), role and
/// settlement.
pub struct LinkSpec<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub role: Role,
    pub settle: Settle,
}

/// A whole frame in the read buffer: its type, channel and the byte range
/// of its body (after the extended header).
#[derive(Clone, Copy, Debug)]
struct FrameAt {
    kind: u8,
    channel: u16,
    body: (usize, usize),
}

/// What a sender or receiver learned from one frame of the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A message (the payload of its first data or amqp-value section, or
    /// empty when it has neither); `delivery_id` when it is unsettled.
    Message {
        payload: &'a [u8],
        unsettled: Option<u32>,
    },
    /// Our deliveries `first..=last` were accepted (settled by the broker).
    Accepted { first: u32, last: u32 },
    /// Anything else handled here (flow, empty frame, a settled
    /// disposition of something else).
    Other,
}

/// One connection, one session, one link.
pub struct Link {
    pub stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    role: Role,
    settle: Settle,
    /// Sender: what the broker allows us to send.
    pub credit: Credit,
    /// Receiver: the next transfer id expected (session) and the link's
    /// delivery count, and that count at the last credit granted.
    next_incoming: u32,
    count: u32,
    granted_at: u32,
    /// The broker's idle time-out (we must write something within it).
    pub peer_idle_timeout: Option<Duration>,
    out: Vec<u8>,
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn put_performative(out: &mut Vec<u8>, p: &Performative) -> io::Result<()> {
    let body = serde_amqp::to_vec(p).map_err(|e| other(format!("encoding {p:?}: {e}")))?;
    put_frame(out, FRAME_AMQP, 0, &body);
    Ok(())
}

/// "detach / end / close" with their error, as one line.
fn describe_error(p: &Performative) -> String {
    let (what, err) = match p {
        Performative::Detach(d) => ("detach", d.error.as_ref()),
        Performative::End(e) => ("end", e.error.as_ref()),
        Performative::Close(c) => ("close", c.error.as_ref()),
        _ => return format!("unexpected {p:?}"),
    };
    match err {
        Some(e) => format!(
            "the broker sent {what}: {:?}: {}",
            e.condition,
            e.description.as_deref().unwrap_or("")
        ),
        None => format!("the broker sent {what}"),
    }
}

impl Link {
    /// Connects to `addr` (TLS with `tls`), authenticates, opens, begins
    /// and attaches one link named `name` to `address` (the target of a
    /// sender, the source of a receiver), and waits for the broker's
    /// attach (and, for a sender, its first credit; a receiver grants its
    /// own).
    pub fn open(
        addr: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        spec: LinkSpec<'_>,
        creds: &Credentials,
        timeout: Duration,
    ) -> io::Result<Link> {
        let LinkSpec {
            name,
            address,
            role,
            settle,
        } = spec;
        let mut info = Vec::new();
        let stream = Stream::connect(addr, tls, false, timeout, &mut info)?;
        stream.set_read_timeout(Some(timeout))?;
        let mut link = Link {
            stream,
            buf: vec![0; 4 * MAX_FRAME_BYTES as usize],
            start: 0,
            end: 0,
            role,
            settle,
            credit: Credit::default(),
            next_incoming: 0,
            count: 0,
            granted_at: 0,
            peer_idle_timeout: None,
            out: Vec::with_capacity(64 * 1024),
        };
        link.sasl(creds)?;
        link.attach(name, address)?;
        Ok(link)
    }

    fn sasl(&mut self, creds: &Credentials) -> io::Result<()> {
        self.stream.write_all(&SASL_HEADER)?;
        self.expect_header(&SASL_HEADER, "SASL")?;
        let frame = self.next_frame_blocking()?;
        let mechs: SaslMechanisms = self.decode(frame, FRAME_SASL)?;
        let offered: Vec<&str> = mechs
            .sasl_server_mechanisms
            .0
            .iter()
            .map(|s| s.0.as_str())
            .collect();
        let (mechanism, response) = match &creds.user {
            Some(user) => {
                let pass = creds.password.as_deref().unwrap_or("");
                let mut r = vec![0u8];
                r.extend_from_slice(user.as_bytes());
                r.push(0);
                r.extend_from_slice(pass.as_bytes());
                ("PLAIN", Some(Binary::from(r)))
            }
            None => ("ANONYMOUS", Some(Binary::from(b"weft-bench".to_vec()))),
        };
        if !offered.contains(&mechanism) {
            return Err(other(format!(
                "SASL: the broker offers {offered:?}, not {mechanism} (--user selects PLAIN)"
            )));
        }
        let init = SaslInit {
            mechanism: Symbol::from(mechanism),
            initial_response: response,
            hostname: None,
        };
        let body = serde_amqp::to_vec(&init).map_err(|e| other(e.to_string()))?;
        let mut out = Vec::new();
        put_frame(&mut out, FRAME_SASL, 0, &body);
        self.stream.write_all(&out)?;
        let frame = self.next_frame_blocking()?;
        let outcome: SaslOutcome = self.decode(frame, FRAME_SASL)?;
        if outcome.code != SaslCode::Ok {
            return Err(other(format!(
                "SASL {mechanism}: the broker refused ({:?})",
                outcome.code
            )));
        }
        Ok(())
    }

    fn attach(&mut self, name: &str, address: &str) -> io::Result<()> {
        self.stream.write_all(&AMQP_HEADER)?;
        self.expect_header(&AMQP_HEADER, "AMQP")?;
        let sender = self.role == Role::Sender;
        let (snd, rcv) = match self.settle {
            Settle::Pre => (SenderSettleMode::Settled, ReceiverSettleMode::First),
            Settle::Unsettled => (SenderSettleMode::Unsettled, ReceiverSettleMode::First),
        };
        let mut out = Vec::new();
        put_performative(
            &mut out,
            &Performative::Open(Open {
                container_id: name.to_string(),
                hostname: None,
                max_frame_size: MaxFrameSize(MAX_FRAME_BYTES),
                channel_max: ChannelMax(0),
                idle_time_out: None,
                outgoing_locales: None,
                incoming_locales: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
        )?;
        put_performative(
            &mut out,
            &Performative::Begin(Begin {
                remote_channel: None,
                next_outgoing_id: 0,
                incoming_window: INCOMING_WINDOW,
                outgoing_window: OUTGOING_WINDOW,
                handle_max: Handle(0),
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
        )?;
        put_performative(
            &mut out,
            &Performative::Attach(Attach {
                name: name.to_string(),
                handle: Handle(0),
                role: self.role.clone(),
                snd_settle_mode: snd,
                rcv_settle_mode: rcv,
                source: Some(Box::new(
                    Source::builder()
                        .address(if sender { name } else { address })
                        .build(),
                )),
                target: Some(Box::new(
                    Target::builder()
                        .address(if sender { address } else { name })
                        .build()
                        .into(),
                )),
                unsettled: None,
                incomplete_unsettled: false,
                initial_delivery_count: sender.then_some(0),
                max_message_size: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            }),
        )?;
        self.stream.write_all(&out)?;
        let (mut opened, mut begun, mut attached) = (false, false, false);
        while !(opened && begun && attached && (!sender || self.credit.room() > 0)) {
            let frame = self.next_frame_blocking()?;
            if frame.body.0 == frame.body.1 {
                continue; // an empty frame (heartbeat)
            }
            let p: Performative = self.decode(frame, FRAME_AMQP)?;
            match p {
                Performative::Open(o) => {
                    opened = true;
                    self.peer_idle_timeout = o
                        .idle_time_out
                        .filter(|&ms| ms > 0)
                        .map(|ms| Duration::from_millis(ms as u64));
                }
                Performative::Begin(b) => {
                    begun = true;
                    self.credit.window_until = b.incoming_window;
                    self.next_incoming = b.next_outgoing_id;
                }
                Performative::Attach(a) => {
                    // A refused link comes back with no terminus; its
                    // detach (with the error) follows.
                    if (sender && a.target.is_none()) || (!sender && a.source.is_none()) {
                        continue;
                    }
                    attached = true;
                    self.credit.handle = a.handle.0;
                    if !sender {
                        // Our delivery count follows the broker's.
                        self.count = a.initial_delivery_count.unwrap_or(0);
                        self.grant()?;
                        self.flush()?;
                    }
                }
                Performative::Flow(f) => self.credit.on_flow((
                    f.next_incoming_id,
                    f.incoming_window,
                    f.handle.map(|h| h.0),
                    f.delivery_count,
                    f.link_credit,
                )),
                p @ (Performative::Detach(_) | Performative::End(_) | Performative::Close(_)) => {
                    return Err(other(describe_error(&p)))
                }
                p => return Err(other(format!("unexpected during setup: {p:?}"))),
            }
        }
        Ok(())
    }

    fn expect_header(&mut self, want: &[u8; 8], what: &str) -> io::Result<()> {
        while self.end - self.start < 8 {
            self.fill()?;
        }
        let got = &self.buf[self.start..self.start + 8];
        if got != want {
            return Err(other(format!(
                "{what} protocol header: the broker answered {:?}",
                String::from_utf8_lossy(got)
            )));
        }
        self.start += 8;
        Ok(())
    }

    fn decode<'a, T: serde::Deserialize<'a>>(&'a self, f: FrameAt, kind: u8) -> io::Result<T> {
        if f.kind != kind {
            return Err(other(format!("frame type {} where {kind} was due", f.kind)));
        }
        serde_amqp::from_slice(&self.buf[f.body.0..f.body.1])
            .map_err(|e| other(format!("decoding a frame from the broker: {e}")))
    }

    /// Reads until the buffer holds one whole frame.
    fn next_frame_blocking(&mut self) -> io::Result<FrameAt> {
        loop {
            if let Some(f) = self.next_frame()? {
                return Ok(f);
            }
            self.fill()?;
        }
    }

    /// The next whole frame in the buffer, consumed, or None.
    fn next_frame(&mut self) -> io::Result<Option<FrameAt>> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 8 {
            return Ok(None);
        }
        let size = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        let doff = b[4] as usize * 4;
        if size > MAX_FRAME_BYTES as usize || doff < 8 || doff > size {
            return Err(other(format!(
                "a frame of {size} bytes (data offset {doff}) from the broker; at most {MAX_FRAME_BYTES}"
            )));
        }
        if b.len() < size {
            return Ok(None);
        }
        let f = FrameAt {
            kind: b[5],
            channel: u16::from_be_bytes([b[6], b[7]]),
            body: (self.start + doff, self.start + size),
        };
        self.start += size;
        Ok(Some(f))
    }

    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// One blocking read (up to the read timeout).
    pub fn fill(&mut self) -> io::Result<usize> {
        self.make_room();
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(other("connection closed by the broker"));
        }
        self.end += n;
        Ok(n)
    }

    /// One read that does not block: `Ok(0)` when nothing is waiting.
    pub fn try_fill(&mut self) -> io::Result<usize> {
        self.make_room();
        match self.stream.read_now(&mut self.buf[self.end..]) {
            Ok(0) => Err(other("connection closed by the broker")),
            Ok(n) => {
                self.end += n;
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Parses every whole frame buffered, handing what matters to `f`.
    /// A receiver tops up its credit and queues its replies (written by
    /// [`Link::flush`]). An error frame from the broker is an error.
    pub fn drain(&mut self, mut f: impl FnMut(Event<'_>)) -> io::Result<()> {
        while let Some(frame) = self.next_frame()? {
            if frame.kind != FRAME_AMQP {
                return Err(other("a SASL frame after SASL"));
            }
            if frame.channel != 0 || frame.body.0 == frame.body.1 {
                continue; // one session; an empty frame is a heartbeat
            }
            let body = &self.buf[frame.body.0..frame.body.1];
            let bad = || other("a malformed frame from the broker");
            match descriptor(body) {
                Some((DESC_TRANSFER, rest)) => {
                    let (id, settled, more, message) = read_transfer(rest).ok_or_else(bad)?;
                    if self.role != Role::Receiver {
                        return Err(other("a transfer to a sender link"));
                    }
                    self.next_incoming = self.next_incoming.wrapping_add(1);
                    self.count = self.count.wrapping_add(1);
                    if more {
                        // Multi-frame deliveries are outside this tool's
                        // sizes; counting their last frame only would
                        // need the delivery tracked.
                        return Err(other("a multi-frame delivery (use --size below 60000)"));
                    }
                    // A transfer without delivery id continues a
                    // delivery; single-frame ones always carry it.
                    let id = id.ok_or_else(bad)?;
                    let unsettled = (!settled).then_some(id);
                    f(Event::Message {
                        payload: message_payload(message),
                        unsettled,
                    });
                }
                Some((DESC_FLOW, rest)) => {
                    let flow = read_flow(rest).ok_or_else(bad)?;
                    if self.role == Role::Sender {
                        self.credit.on_flow(flow);
                    }
                    f(Event::Other);
                }
                Some((DESC_DISPOSITION, rest)) => {
                    let (receiver, first, last, settled, state) =
                        read_disposition(rest).ok_or_else(bad)?;
                    if receiver && self.role == Role::Sender {
                        match state {
                            Some(DESC_ACCEPTED) if settled => f(Event::Accepted { first, last }),
                            Some(DESC_ACCEPTED) => {
                                return Err(other(
                                    "an accepted but unsettled disposition (receiver settle mode second)",
                                ))
                            }
                            Some(code) => {
                                let p: Result<Performative, _> = serde_amqp::from_slice(body);
                                return Err(other(format!(
                                    "deliveries {first}..={last} not accepted (state 0x{code:x}): {p:?}"
                                )));
                            }
                            None => f(Event::Other),
                        }
                    } else {
                        f(Event::Other);
                    }
                }
                _ => {
                    let p: Performative = serde_amqp::from_slice(body)
                        .map_err(|e| other(format!("decoding a frame from the broker: {e}")))?;
                    match p {
                        Performative::Detach(_) | Performative::End(_) | Performative::Close(_) => {
                            return Err(other(describe_error(&p)))
                        }
                        _ => f(Event::Other),
                    }
                }
            }
        }
        if self.role == Role::Receiver
            && self.count.wrapping_sub(self.granted_at) >= RECEIVER_CREDIT / 2
        {
            self.grant()?;
        }
        Ok(())
    }

    /// Receiver: credit back to [`RECEIVER_CREDIT`] from the link's
    /// delivery count now, with the session window re-announced.
    fn grant(&mut self) -> io::Result<()> {
        let count: SequenceNo = self.count;
        self.granted_at = count;
        put_performative(
            &mut self.out,
            &Performative::Flow(Flow {
                next_incoming_id: Some(self.next_incoming),
                incoming_window: INCOMING_WINDOW,
                next_outgoing_id: 0,
                outgoing_window: OUTGOING_WINDOW,
                handle: Some(Handle(0)),
                delivery_count: Some(count),
                link_credit: Some(RECEIVER_CREDIT),
                available: None,
                drain: false,
                echo: false,
                properties: None,
            }),
        )
    }

    /// Receiver: accepts (and settles) deliveries `first..=last` with one
    /// ranged disposition, queued for [`Link::flush`].
    pub fn accept(&mut self, first: u32, last: u32) -> io::Result<()> {
        put_performative(
            &mut self.out,
            &Performative::Disposition(Disposition {
                role: Role::Receiver,
                first,
                last: Some(last),
                settled: true,
                state: Some(DeliveryState::Accepted(Accepted {})),
                batchable: false,
            }),
        )
    }

    /// Writes the queued flows and dispositions; whether there were any.
    pub fn flush(&mut self) -> io::Result<bool> {
        if self.out.is_empty() {
            return Ok(false);
        }
        self.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(true)
    }

    /// An empty frame, keeping the broker's idle timer quiet.
    pub fn heartbeat(&mut self) -> io::Result<()> {
        self.stream.write_all(&[0, 0, 0, 8, 2, FRAME_AMQP, 0, 0])
    }

    pub fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b)
    }

    /// Closes the connection: our close, then reads until the broker's
    /// close or the end of the stream (at most [`CLOSE_WAIT`]), so that
    /// the socket is not dropped with unread bytes (the kernel would
    /// answer with a reset, and a broker may discard what it had not read
    /// yet, e.g. a sender's last pre-settled transfers). Errors are
    /// ignored.
    pub fn close(mut self) {
        let mut out = Vec::new();
        let close = Performative::Close(Close { error: None });
        if put_performative(&mut out, &close).is_err() || self.stream.write_all(&out).is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)));
        while std::time::Instant::now() < deadline {
            match self.fill() {
                Ok(_) => {}
                Err(e) if super::wire::is_timeout(&e) => continue,
                Err(_) => return, // the end of the stream (or worse): done
            }
            loop {
                match self.next_frame() {
                    Ok(Some(f)) => {
                        let body = &self.buf[f.body.0..f.body.1];
                        if f.kind == FRAME_AMQP && body.starts_with(&[0x00, 0x53, DESC_CLOSE]) {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
}
