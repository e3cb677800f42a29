//! The AMQP 1.0 side of tests/amqp.rs and tests/amqp_errors.rs: a real client
//! (fe2o3-amqp, SASL ANONYMOUS as weft's anonymous access allows) with the
//! few helpers the tests share, and a raw-TCP peer for what no client sends
//! (malformed frames, unknown performatives, transfers beyond credit or
//! size). The raw peer encodes performatives with fe2o3-amqp-types through
//! serde_amqp, never by hand, except the 8-byte frame header and the broken
//! bytes a test is about.

#![allow(dead_code)] // each test file uses its part

use std::net::SocketAddr;
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Message, MessageId, Properties, Source, Target,
};
use fe2o3_amqp::types::performatives::{Attach, Begin, Open, Performative, Transfer};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Value};
use fe2o3_amqp::types::sasl::SaslInit;
use fe2o3_amqp::{Connection, Delivery, Receiver, Sender, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for anything waited for (tests/common's WAIT).
pub const AMQP_WAIT: Duration = Duration::from_secs(20);

/// What a received message is read as: any body section.
pub type Got = Delivery<Body<Value>>;

/// One client connection with one session.
pub struct Amqp {
    pub conn: ConnectionHandle<()>,
    pub session: SessionHandle<()>,
}

impl Amqp {
    pub async fn open(addr: SocketAddr, id: &str) -> Amqp {
        Self::open_as(addr, id, SaslProfile::Anonymous)
            .await
            .unwrap_or_else(|e| panic!("AMQP open to {addr}: {e}"))
    }

    /// Opens with this SASL profile (PLAIN: a weft user); the refusal as
    /// text.
    pub async fn open_as(addr: SocketAddr, id: &str, sasl: SaslProfile) -> Result<Amqp, String> {
        let mut conn = tokio::time::timeout(
            AMQP_WAIT,
            Connection::builder()
                .container_id(id)
                .sasl_profile(sasl)
                .open(format!("amqp://{addr}").as_str()),
        )
        .await
        .expect("AMQP open in time")
        .map_err(|e| format!("{e:?}"))?;
        let session = tokio::time::timeout(AMQP_WAIT, Session::begin(&mut conn))
            .await
            .expect("begin in time")
            .map_err(|e| format!("{e:?}"))?;
        Ok(Amqp { conn, session })
    }

    /// A sender whose transfers are unsettled: each send waits for the
    /// broker's outcome.
    pub async fn sender(&mut self, name: &str, address: &str) -> Sender {
        self.sender_mode(name, address, SenderSettleMode::Unsettled)
            .await
    }

    /// A sender whose transfers are pre-settled (at most once).
    pub async fn presettled_sender(&mut self, name: &str, address: &str) -> Sender {
        self.sender_mode(name, address, SenderSettleMode::Settled)
            .await
    }

    async fn sender_mode(&mut self, name: &str, address: &str, mode: SenderSettleMode) -> Sender {
        tokio::time::timeout(
            AMQP_WAIT,
            Sender::builder()
                .name(name)
                .target(address)
                .sender_settle_mode(mode)
                .attach(&mut self.session),
        )
        .await
        .expect("sender attach in time")
        .unwrap_or_else(|e| panic!("sender attach {address}: {e:?}"))
    }

    /// A receiver with manual credit (none until `set_credit`), unsettled
    /// deliveries (the test accepts them).
    pub async fn receiver(&mut self, name: &str, address: &str) -> Receiver {
        self.receiver_with(name, address, SenderSettleMode::Unsettled)
            .await
    }

    /// A receiver asking for pre-settled deliveries (at most once).
    pub async fn settled_receiver(&mut self, name: &str, address: &str) -> Receiver {
        self.receiver_with(name, address, SenderSettleMode::Settled)
            .await
    }

    /// A receiver attach that may be refused: the refusal as text.
    pub async fn try_receiver(&mut self, name: &str, address: &str) -> Result<Receiver, String> {
        tokio::time::timeout(
            AMQP_WAIT,
            Receiver::builder()
                .name(name)
                .source(Source::builder().address(address).build())
                .credit_mode(CreditMode::Manual)
                .attach(&mut self.session),
        )
        .await
        .expect("receiver attach answered in time")
        .map_err(|e| format!("{e:?}"))
    }

    /// A sender with no target address (the anonymous relay): each
    /// message's `to` names its topic.
    pub async fn anonymous_sender(&mut self, name: &str) -> Sender {
        tokio::time::timeout(
            AMQP_WAIT,
            Sender::builder()
                .name(name)
                .target(Target::builder().build())
                .attach(&mut self.session),
        )
        .await
        .expect("sender attach in time")
        .unwrap_or_else(|e| panic!("anonymous sender attach: {e:?}"))
    }

    async fn receiver_with(
        &mut self,
        name: &str,
        address: &str,
        mode: SenderSettleMode,
    ) -> Receiver {
        tokio::time::timeout(
            AMQP_WAIT,
            Receiver::builder()
                .name(name)
                .source(Source::builder().address(address).build())
                .sender_settle_mode(mode)
                .receiver_settle_mode(ReceiverSettleMode::First)
                .credit_mode(CreditMode::Manual)
                .attach(&mut self.session),
        )
        .await
        .expect("receiver attach in time")
        .unwrap_or_else(|e| panic!("receiver attach {address}: {e:?}"))
    }

    pub async fn close(mut self) {
        let _ = self.session.end().await;
        let _ = self.conn.close().await;
    }
}

/// The next delivery (bounded by AMQP_WAIT).
pub async fn recv(receiver: &mut Receiver) -> Got {
    tokio::time::timeout(AMQP_WAIT, receiver.recv::<Body<Value>>())
        .await
        .expect("a delivery in time")
        .expect("recv")
}

/// A delivery arriving within `quiet`, if any (a test that expects none
/// waits this long: the only way to see that nothing more comes).
pub async fn recv_within(receiver: &mut Receiver, quiet: Duration) -> Option<Got> {
    match tokio::time::timeout(quiet, receiver.recv::<Body<Value>>()).await {
        Ok(got) => Some(got.expect("recv")),
        Err(_) => None,
    }
}

/// The payload bytes of a body: its data sections, or an amqp-value string
/// or binary.
pub fn body_bytes(body: &Body<Value>) -> Vec<u8> {
    match body {
        Body::Data(batch) => batch.iter().flat_map(|d| d.0.to_vec()).collect(),
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Binary(b) => b.to_vec(),
            other => panic!("body value {other:?}"),
        },
        Body::Empty => Vec::new(),
        other => panic!("body {other:?}"),
    }
}

/// A message of `payload` in one data section.
pub fn data(payload: &[u8]) -> Message<fe2o3_amqp::types::messaging::Data> {
    Message::builder()
        .data(Binary::from(payload.to_vec()))
        .build()
}

/// A message with the bare-message properties the contract maps.
pub struct Props<'a> {
    pub message_id: &'a str,
    pub correlation_id: &'a [u8],
    pub reply_to: Option<&'a str>,
    pub content_type: &'a str,
    pub subject: &'a str,
    pub app: &'a [(&'a str, &'a str)],
}

pub fn with_props(payload: &[u8], p: &Props) -> Message<fe2o3_amqp::types::messaging::Data> {
    let mut props = Properties::builder()
        .message_id(p.message_id.to_string())
        .correlation_id(MessageId::Binary(Binary::from(p.correlation_id.to_vec())))
        .content_type(p.content_type)
        .subject(p.subject);
    if let Some(r) = p.reply_to {
        props = props.reply_to(r);
    }
    let mut app = ApplicationProperties::builder();
    for (k, v) in p.app {
        app = app.insert(k.to_string(), SimpleValue::String(v.to_string()));
    }
    Message::builder()
        .properties(props.build())
        .application_properties(app.build())
        .data(Binary::from(payload.to_vec()))
        .build()
}

/// The correlation-id as bytes, whichever form it came in.
pub fn correlation_bytes(id: &MessageId) -> Vec<u8> {
    match id {
        MessageId::Binary(b) => b.to_vec(),
        MessageId::String(s) => s.as_bytes().to_vec(),
        MessageId::Ulong(n) => n.to_string().into_bytes(),
        MessageId::Uuid(u) => format!("{u:?}").into_bytes(),
    }
}

/// An application property as text (string values as-is, others rendered).
pub fn app_prop(msg: &Message<Body<Value>>, key: &str) -> Option<String> {
    let map = &msg.application_properties.as_ref()?.0;
    map.get(key).map(|v| match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.0.clone(),
        other => format!("{other:?}"),
    })
}

/// A raw AMQP connection: SASL ANONYMOUS, open, begin, done by hand so that
/// the test can then send what a client library would refuse to.
pub struct RawAmqp {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Empty frames (heartbeats) read so far.
    pub heartbeats: u32,
    /// weft's open (its idle-time-out, max-frame-size).
    pub their_open: Option<Open>,
}

/// One frame read: its type (0 AMQP, 1 SASL), channel, body.
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub body: Vec<u8>,
}

/// How a raw connection ended or what error it got.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this error condition (None: no error).
    Close(Option<String>),
    /// A detach frame with this error condition.
    Detach(Option<String>),
    /// An end frame with this error condition.
    End(Option<String>),
    /// The socket closed with no close frame.
    Eof,
}

pub fn frame(kind: u8, channel: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    out.push(2);
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn performative(p: &Performative) -> Vec<u8> {
    serde_amqp::to_vec(p).expect("encode performative")
}

impl RawAmqp {
    /// Connected, SASL ANONYMOUS done, AMQP header exchanged, open and
    /// begin (channel 0) answered.
    pub async fn open(addr: SocketAddr) -> RawAmqp {
        Self::open_idle(addr, None).await
    }

    /// As `open`, announcing `idle_ms` as this peer's idle-time-out (weft
    /// must then send a frame at least that often).
    pub async fn open_idle(addr: SocketAddr, idle_ms: Option<u32>) -> RawAmqp {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut raw = RawAmqp {
            stream,
            buf: Vec::new(),
            heartbeats: 0,
            their_open: None,
        };
        raw.send(b"AMQP\x03\x01\x00\x00").await;
        assert_eq!(
            &raw.read_exact(8).await,
            b"AMQP\x03\x01\x00\x00",
            "SASL header"
        );
        let mechanisms = raw.frame().await;
        assert_eq!(mechanisms.kind, 1, "sasl-mechanisms");
        let init = SaslInit {
            mechanism: "ANONYMOUS".into(),
            initial_response: None,
            hostname: None,
        };
        raw.send(&frame(1, 0, &serde_amqp::to_vec(&init).unwrap()))
            .await;
        let outcome = raw.frame().await;
        assert_eq!(outcome.kind, 1, "sasl-outcome");
        raw.send(b"AMQP\x00\x01\x00\x00").await;
        assert_eq!(
            &raw.read_exact(8).await,
            b"AMQP\x00\x01\x00\x00",
            "AMQP header"
        );
        let open = Open {
            container_id: "raw-peer".into(),
            hostname: None,
            max_frame_size: 65536.into(),
            channel_max: 16.into(),
            idle_time_out: idle_ms,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        raw.send(&frame(0, 0, &performative(&Performative::Open(open))))
            .await;
        let begin = Begin {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window: 1000,
            outgoing_window: 1000,
            handle_max: 16.into(),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        raw.send(&frame(0, 0, &performative(&Performative::Begin(begin))))
            .await;
        match raw
            .until(|p| matches!(p, Performative::Open(_)), "open")
            .await
        {
            Performative::Open(o) => raw.their_open = Some(o),
            _ => unreachable!(),
        }
        raw.until(|p| matches!(p, Performative::Begin(_)), "begin")
            .await;
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("raw write");
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            let got = tokio::time::timeout(AMQP_WAIT, self.stream.read(&mut chunk))
                .await
                .expect("raw read in time");
            match got {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        assert!(self.fill(n).await, "connection closed before {n} bytes");
        self.buf.drain(..n).collect()
    }

    /// The next frame, or None at end of stream. Empty frames (heartbeats)
    /// are skipped.
    pub async fn next_frame(&mut self) -> Option<RawFrame> {
        loop {
            if !self.fill(8).await {
                return None;
            }
            let size = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
            let doff = self.buf[4] as usize * 4;
            assert!(
                size >= 8 && doff >= 8 && doff <= size,
                "frame header {:?}",
                &self.buf[..8]
            );
            if !self.fill(size).await {
                return None;
            }
            let f: Vec<u8> = self.buf.drain(..size).collect();
            if size == doff {
                self.heartbeats += 1;
                continue;
            }
            return Some(RawFrame {
                kind: f[5],
                channel: u16::from_be_bytes([f[6], f[7]]),
                body: f[doff..].to_vec(),
            });
        }
    }

    /// Reads frames until an empty one (a heartbeat): true, or false when
    /// the stream ends first.
    pub async fn heartbeat(&mut self) -> bool {
        let before = self.heartbeats;
        loop {
            if !self.fill(8).await {
                return false;
            }
            let size = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
            let doff = self.buf[4] as usize * 4;
            if !self.fill(size).await {
                return false;
            }
            self.buf.drain(..size);
            if size == doff {
                self.heartbeats += 1;
            }
            if self.heartbeats > before {
                return true;
            }
        }
    }

    async fn frame(&mut self) -> RawFrame {
        self.next_frame().await.expect("a frame")
    }

    /// Reads performatives until `want` (panics at end of stream).
    pub async fn until(
        &mut self,
        want: impl Fn(&Performative) -> bool,
        what: &str,
    ) -> Performative {
        loop {
            let f = self
                .next_frame()
                .await
                .unwrap_or_else(|| panic!("connection ended before {what}"));
            // A transfer frame carries its payload after the performative:
            // only the performatives without one are decoded here.
            if let Ok(p) = serde_amqp::from_slice::<Performative>(&f.body) {
                if want(&p) {
                    return p;
                }
            }
        }
    }

    /// Reads until weft ends something with an error (or the stream ends).
    pub async fn ended(&mut self) -> Ended {
        loop {
            let Some(f) = self.next_frame().await else {
                return Ended::Eof;
            };
            let cond = |e: &Option<fe2o3_amqp::types::definitions::Error>| {
                e.as_ref().map(|e| condition_name(&e.condition))
            };
            match serde_amqp::from_slice::<Performative>(&f.body) {
                Ok(Performative::Close(c)) => return Ended::Close(cond(&c.error)),
                Ok(Performative::Detach(d)) if d.error.is_some() => {
                    return Ended::Detach(cond(&d.error))
                }
                Ok(Performative::End(e)) if e.error.is_some() => return Ended::End(cond(&e.error)),
                _ => {}
            }
        }
    }

    /// Attaches a sender link (handle 0) to `address`, pre-settled, and
    /// returns the credit weft granted (its first flow for the handle).
    pub async fn attach_sender(&mut self, address: &str) -> u32 {
        let attach = Attach {
            name: "raw-sender".into(),
            handle: 0.into(),
            role: Role::Sender,
            snd_settle_mode: SenderSettleMode::Settled,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Box::new(Source::builder().build())),
            target: Some(Box::new(Target::builder().address(address).build().into())),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: Some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(&frame(0, 0, &performative(&Performative::Attach(attach))))
            .await;
        self.until(|p| matches!(p, Performative::Attach(_)), "attach reply")
            .await;
        match self
            .until(
                |p| matches!(p, Performative::Flow(f) if f.handle.is_some() && f.link_credit.unwrap_or(0) > 0),
                "credit for the raw sender",
            )
            .await
        {
            Performative::Flow(f) => f.link_credit.unwrap_or(0),
            _ => unreachable!(),
        }
    }

    /// One pre-settled transfer on handle 0 carrying `payload` as a data
    /// section.
    pub async fn transfer(&mut self, delivery_id: u32, payload: &[u8]) {
        let mut message = serde_amqp::to_vec(&data(payload).body).unwrap();
        let frame = transfer_frame(
            Some(delivery_id),
            false,
            false,
            std::mem::take(&mut message),
        );
        self.send(&frame).await;
    }

    /// The first frame of pre-settled delivery `delivery_id` on handle 0
    /// (more = true), then its abort: a delivery that used its credit
    /// (AMQP 2.6.14) and carries no message.
    pub async fn aborted_delivery(&mut self, delivery_id: u32) {
        let first = serde_amqp::to_vec(&data(b"partial").body).unwrap();
        let mut bytes = transfer_frame(Some(delivery_id), true, false, first);
        bytes.extend(transfer_frame(None, false, true, Vec::new()));
        self.send(&bytes).await;
    }
}

/// A transfer frame on channel 0, handle 0, pre-settled; `payload` after
/// the performative.
pub fn transfer_frame(
    delivery_id: Option<u32>,
    more: bool,
    aborted: bool,
    payload: Vec<u8>,
) -> Vec<u8> {
    let t = Transfer {
        handle: 0.into(),
        delivery_id,
        delivery_tag: delivery_id.map(|id| Binary::from(id.to_be_bytes().to_vec())),
        message_format: delivery_id.map(|_| 0),
        settled: Some(true),
        more,
        rcv_settle_mode: None,
        state: None,
        resume: false,
        aborted,
        batchable: false,
    };
    let mut body = performative(&Performative::Transfer(t));
    body.extend_from_slice(&payload);
    frame(0, 0, &body)
}

/// "amqp:decode-error" etc., from the condition as fe2o3 decodes it (its
/// wire form, a symbol).
pub fn condition_name(c: &fe2o3_amqp::types::definitions::ErrorCondition) -> String {
    let wire = serde_amqp::to_vec(c).expect("encode condition");
    serde_amqp::from_slice::<fe2o3_amqp::types::primitives::Symbol>(&wire)
        .expect("a condition is a symbol")
        .0
}

/// A TCP relay to `upstream` for one client connection, cut at once (both
/// sockets dropped, no AMQP close) when the returned sender fires or is
/// dropped: how a test makes a client vanish as a crashed process would.
pub async fn cuttable(upstream: SocketAddr) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, cut_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(upstream).await.unwrap();
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            _ = cut_rx => {}
        }
    });
    (addr, cut)
}

/// Asserts the next delivery on `receiver` is `marker` (and accepts it).
/// A check that nothing else came: the test publishes the marker after
/// whatever must not arrive, so a delivery that was merely late still comes
/// before the marker and fails here, where a wait for silence would pass.
pub async fn next_is_marker(receiver: &mut Receiver, marker: &[u8], what: &str) {
    let d = recv(receiver).await;
    let _ = receiver.accept(&d).await;
    let got = body_bytes(&d.message().body);
    assert_eq!(
        got,
        marker,
        "{what}: the next delivery is {:?}, not the marker {:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(marker)
    );
}

/// A frame of a raw receiver link: a transfer (its whole body, payload
/// included) or a flow naming a link.
pub enum LinkFrame {
    Transfer(Vec<u8>),
    Flow(fe2o3_amqp::types::performatives::Flow),
}

/// A transfer performative's descriptor: 0x00, then ulong 0x14 as a
/// smallulong (0x53) or a ulong (0x80).
pub fn is_transfer_body(body: &[u8]) -> bool {
    body.starts_with(&[0x00, 0x53, 0x14])
        || (body.len() >= 10 && body[..2] == [0x00, 0x80] && body[2..10] == 0x14u64.to_be_bytes())
}

impl RawAmqp {
    /// Attaches a receiver link (`handle`) to `address` asking for
    /// pre-settled deliveries; waits for weft's attach and returns its
    /// initial delivery-count.
    pub async fn attach_receiver(&mut self, handle: u32, address: &str) -> u32 {
        let attach = Attach {
            name: format!("raw-receiver-{handle}"),
            handle: handle.into(),
            role: Role::Receiver,
            snd_settle_mode: SenderSettleMode::Settled,
            rcv_settle_mode: ReceiverSettleMode::First,
            source: Some(Box::new(Source::builder().address(address).build())),
            target: Some(Box::new(Target::builder().build().into())),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: None,
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(&frame(0, 0, &performative(&Performative::Attach(attach))))
            .await;
        match self
            .until(|p| matches!(p, Performative::Attach(_)), "attach reply")
            .await
        {
            Performative::Attach(a) => a.initial_delivery_count.unwrap_or(0),
            _ => unreachable!(),
        }
    }

    /// A flow on channel 0 for link `handle`: the receiver's
    /// delivery-count and link-credit (the session window wide open).
    pub async fn link_flow(&mut self, handle: u32, delivery_count: u32, credit: u32, echo: bool) {
        let flow = fe2o3_amqp::types::performatives::Flow {
            next_incoming_id: None,
            incoming_window: 1000,
            next_outgoing_id: 0,
            outgoing_window: 1000,
            handle: Some(handle.into()),
            delivery_count: Some(delivery_count),
            link_credit: Some(credit),
            available: None,
            drain: false,
            echo,
            properties: None,
        };
        self.send(&frame(0, 0, &performative(&Performative::Flow(flow))))
            .await;
    }

    /// The next transfer, or flow naming a link (other frames skipped).
    pub async fn link_frame(&mut self) -> LinkFrame {
        loop {
            let f = self
                .next_frame()
                .await
                .expect("connection ended before a transfer or link flow");
            if is_transfer_body(&f.body) {
                return LinkFrame::Transfer(f.body);
            }
            if let Ok(Performative::Flow(flow)) = serde_amqp::from_slice::<Performative>(&f.body) {
                if flow.handle.is_some() {
                    return LinkFrame::Flow(flow);
                }
            }
        }
    }
}

/// Whether `haystack` holds `needle` (a payload inside a transfer frame).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
