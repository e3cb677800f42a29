//! `ExactlyOnce`: an MQTT 5 subscriber written with raw packets that
//! implements the receiver's side of QoS 2 (each application delivery and
//! QoS 2 packet traced), and `RawV5`, the raw MQTT 5 connection under it.

use super::*;

/// One application-level delivery of an [`ExactlyOnce`] receiver.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub dup: bool,
    pub packet_id: u16,
    pub connection: usize,
}

#[derive(Default)]
struct ReceiverState {
    delivered: Vec<Delivered>,
    /// QoS 2 packet ids received and delivered, PUBREL not yet received:
    /// the receiver's half of the session state (kept across reconnects).
    awaiting_pubrel: HashSet<u16>,
    /// PUBLISH packets whose QoS 2 packet id was already awaiting PUBREL
    /// (resent by the server: acknowledged again, not delivered again).
    resent_seen: usize,
    pubrels: usize,
    ended: bool,
    /// Every QoS 2 packet seen, in order (for a failing test's report).
    trace: Vec<Trace>,
}

/// One QoS 2 packet an [`ExactlyOnce`] receiver saw.
#[derive(Clone, Debug)]
pub enum Trace {
    /// PUBLISH: connection, packet id, DUP, payload, delivered (false: a
    /// resend of an id awaiting PUBREL).
    Publish(usize, u16, bool, String, bool),
    /// PUBREL: connection, packet id, whether the id was awaiting it.
    PubRel(usize, u16, bool),
}

/// An MQTT 5 subscriber written with raw packets (weft's v5 codec as its
/// encoder and decoder) because rumqttc hands every QoS 2 PUBLISH to the
/// application, a resent one too: this one implements the receiver's side
/// of QoS 2 as MQTT 5 §4.3.3 says (method B): store the packet id and
/// deliver on PUBLISH, answer PUBREC; a PUBLISH with a stored id is not
/// delivered again; PUBREL discards the id and is answered with PUBCOMP.
/// The stored ids survive its reconnects (a persistent session).
pub struct ExactlyOnce {
    pub id: String,
    state: Arc<Mutex<ReceiverState>>,
    connections: usize,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ExactlyOnce {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl ExactlyOnce {
    pub fn new(id: &str) -> ExactlyOnce {
        ExactlyOnce {
            id: id.to_string(),
            state: Default::default(),
            connections: 0,
            task: None,
        }
    }

    /// Connects with Session Expiry Interval `expiry_s` (clean start only
    /// for the first connection); subscribes `filter` at QoS 2 when given.
    /// Returns the CONNACK's session-present flag.
    pub async fn connect(&mut self, addr: SocketAddr, expiry_s: u32, filter: Option<&str>) -> bool {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut out = Vec::new();
        wv5::encode(
            &wv5::Packet::Connect(wv5::Connect {
                clean_start: self.connections == 0,
                keep_alive_s: 60,
                properties: wv5::Properties {
                    session_expiry_interval: Some(expiry_s),
                    ..Default::default()
                },
                client_id: &self.id,
                will: None,
                username: None,
                password: None,
            }),
            &mut out,
        )
        .unwrap();
        if let Some(filter) = filter {
            wv5::encode(
                &wv5::Packet::Subscribe(wv5::Subscribe {
                    packet_id: 1,
                    properties: Default::default(),
                    filters: vec![(
                        filter,
                        wv5::SubscriptionOptions {
                            qos: 2,
                            ..Default::default()
                        },
                    )],
                }),
                &mut out,
            )
            .unwrap();
        }
        stream.write_all(&out).await.unwrap();
        let mut buf = Vec::with_capacity(64 * 1024);
        // CONNACK, then (when subscribing) the SUBACK; deliveries that
        // arrive in between are handled below.
        let session_present = match read_v5(&mut stream, &mut buf).await {
            Some(bytes) => match wv5::decode(&bytes, &Default::default()) {
                Ok(Some((wv5::Packet::ConnAck(a), _))) => {
                    assert_eq!(a.reason_code, 0, "{}: CONNACK {a:?}", self.id);
                    a.session_present
                }
                other => panic!("{}: CONNACK expected, got {other:?}", self.id),
            },
            None => panic!("{}: connection ended before CONNACK", self.id),
        };
        let connection = self.connections;
        self.connections += 1;
        let state = self.state.clone();
        state.lock().unwrap().ended = false;
        let (suback_tx, suback_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let name = self.id.clone();
        self.task = Some(tokio::spawn(async move {
            let mut suback_tx = Some(suback_tx);
            while let Some(bytes) = read_v5(&mut stream, &mut buf).await {
                let packet = match wv5::decode(&bytes, &Default::default()) {
                    Ok(Some((p, _))) => p,
                    other => panic!("{name}: undecodable packet {other:?}"),
                };
                let mut reply = Vec::new();
                match packet {
                    wv5::Packet::SubAck(a) => {
                        if let Some(tx) = suback_tx.take() {
                            let _ = tx.send(a.reason_codes.to_vec());
                        }
                    }
                    wv5::Packet::Publish(p) => {
                        let mut s = state.lock().unwrap();
                        let fresh = p.qos < 2 || s.awaiting_pubrel.insert(p.packet_id);
                        if p.qos == 2 {
                            s.trace.push(Trace::Publish(
                                connection,
                                p.packet_id,
                                p.dup,
                                String::from_utf8_lossy(p.payload).into_owned(),
                                fresh,
                            ));
                        }
                        if fresh {
                            s.delivered.push(Delivered {
                                topic: p.topic.to_string(),
                                payload: p.payload.to_vec(),
                                qos: p.qos,
                                dup: p.dup,
                                packet_id: p.packet_id,
                                connection,
                            });
                        } else {
                            s.resent_seen += 1;
                        }
                        let ack = wv5::PubResp::ok(p.packet_id);
                        match p.qos {
                            1 => wv5::encode(&wv5::Packet::PubAck(ack), &mut reply).unwrap(),
                            2 => wv5::encode(&wv5::Packet::PubRec(ack), &mut reply).unwrap(),
                            _ => 0,
                        };
                    }
                    wv5::Packet::PubRel(r) => {
                        let mut s = state.lock().unwrap();
                        let awaited = s.awaiting_pubrel.remove(&r.packet_id);
                        s.trace
                            .push(Trace::PubRel(connection, r.packet_id, awaited));
                        s.pubrels += 1;
                        wv5::encode(
                            &wv5::Packet::PubComp(wv5::PubResp::ok(r.packet_id)),
                            &mut reply,
                        )
                        .unwrap();
                    }
                    wv5::Packet::Disconnect(_) => break,
                    _ => {}
                }
                if !reply.is_empty() && stream.write_all(&reply).await.is_err() {
                    break;
                }
            }
            state.lock().unwrap().ended = true;
        }));
        if filter.is_some() {
            let codes = tokio::time::timeout(WAIT, suback_rx)
                .await
                .unwrap_or_else(|_| panic!("{}: no SUBACK in time", self.id))
                .unwrap_or_else(|_| panic!("{}: connection ended before SUBACK", self.id));
            assert_eq!(codes, vec![2], "{}: SUBACK grants QoS 2", self.id);
        }
        session_present
    }

    pub fn delivered(&self) -> Vec<Delivered> {
        self.state.lock().unwrap().delivered.clone()
    }

    /// QoS 2 PUBLISH packets received again for an id awaiting PUBREL.
    pub fn resent_seen(&self) -> usize {
        self.state.lock().unwrap().resent_seen
    }

    /// The QoS 2 packets seen, in order.
    pub fn trace(&self) -> Vec<Trace> {
        self.state.lock().unwrap().trace.clone()
    }

    /// Packet ids still awaiting their PUBREL.
    pub fn awaiting_pubrel(&self) -> usize {
        self.state.lock().unwrap().awaiting_pubrel.len()
    }

    /// Waits (bounded by `WAIT`) until `ok` holds over the deliveries;
    /// whether it did (false at once if the connection ended).
    pub async fn reached(&self, ok: impl Fn(&[Delivered]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (d, ended) = {
                let s = self.state.lock().unwrap();
                (s.delivered.clone(), s.ended)
            };
            if ok(&d) {
                return true;
            }
            if ended || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads one whole MQTT packet (any level: same fixed header) from
/// `stream`, with `buf` holding what was read past the previous one;
/// `None` at the end of the connection.
async fn read_v5(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Ok(Some((_, header, remaining))) = wv5::fixed_header(buf) {
            let total = header + remaining;
            if buf.len() >= total {
                let packet = buf[..total].to_vec();
                buf.drain(..total);
                return Some(packet);
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw MQTT 5 publisher (weft's v5 codec), to read exactly the reason
/// code of each acknowledgement (rumqttc ends its connection on an error
/// reason instead of reporting it).
pub struct RawV5 {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u16,
}

impl RawV5 {
    /// Connects with a clean start; the CONNACK must accept.
    pub async fn connect(addr: SocketAddr, id: &str) -> RawV5 {
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut out = Vec::new();
        wv5::encode(
            &wv5::Packet::Connect(wv5::Connect {
                clean_start: true,
                keep_alive_s: 60,
                properties: Default::default(),
                client_id: id,
                will: None,
                username: None,
                password: None,
            }),
            &mut out,
        )
        .unwrap();
        stream.write_all(&out).await.unwrap();
        let mut raw = RawV5 {
            stream,
            buf: Vec::new(),
            next_id: 1,
        };
        let bytes = raw.read().await.expect("CONNACK");
        match wv5::decode(&bytes, &Default::default()) {
            Ok(Some((wv5::Packet::ConnAck(a), _))) => {
                assert_eq!(a.reason_code, 0, "{id}: CONNACK {a:?}")
            }
            other => panic!("{id}: CONNACK expected, got {other:?}"),
        }
        raw
    }

    async fn read(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, read_v5(&mut self.stream, &mut self.buf))
            .await
            .expect("a packet in time")
    }

    /// Publishes; for QoS 1 returns the PUBACK's reason code, or `None` when
    /// the server closed the connection instead. QoS 0: `Some(0)` once sent.
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: &[u8],
    ) -> Option<u8> {
        let packet_id = if qos == 0 { 0 } else { self.next_id };
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let mut out = Vec::new();
        wv5::encode(
            &wv5::Packet::Publish(wv5::Publish {
                dup: false,
                qos,
                retain,
                topic,
                packet_id,
                properties: Default::default(),
                payload,
            }),
            &mut out,
        )
        .unwrap();
        if self.stream.write_all(&out).await.is_err() {
            return None;
        }
        if qos == 0 {
            return Some(0);
        }
        loop {
            let bytes = self.read().await?;
            match wv5::decode(&bytes, &Default::default()) {
                Ok(Some((wv5::Packet::PubAck(a), _))) if a.packet_id == packet_id => {
                    return Some(a.reason_code)
                }
                Ok(Some((wv5::Packet::Disconnect(_), _))) => return None,
                Ok(Some(_)) => {}
                other => panic!("undecodable packet {other:?}"),
            }
        }
    }
}
