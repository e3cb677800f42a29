//! MQTT and NATS over WebSocket (`[mqtt.ws]`, `[nats.ws]`) against a real
//! `weft`: rumqttc (`websocket` feature) and async-nats (`websockets`)
//! exchange events with plain TCP clients both ways, wss with the
//! protocol's TLS material, and a raw client does what no library does:
//! packets split across frames and messages, several packets in one frame,
//! and bad input (refused handshakes, an unmasked frame, an oversize
//! message, a text frame on MQTT, a truncated frame), each of which closes
//! only its own connection while another client's traffic goes on.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use rumqttc::{MqttOptions, QoS, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::ws::frame::{self, CloseCode, Decoder, Item, Opcode, Role};

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn start(extra: &str) -> Weft {
    let toml = format!(
        "[mqtt.ws]\nlisten = \"127.0.0.1:0\"\nframe_bytes_max = 4096\nmessage_bytes_max = 8192\n\
         [nats.ws]\nlisten = \"127.0.0.1:0\"\n{extra}"
    );
    Weft::start(2, &toml)
}

fn ws_options(addr: SocketAddr, id: &str) -> MqttOptions {
    let url = format!("ws://127.0.0.1:{}/mqtt", addr.port());
    let mut o = MqttOptions::new(id, url, addr.port());
    o.set_transport(Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

async fn expect_publish(client: &mut Client, topic: &str, payload: &[u8]) {
    loop {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a PUBLISH in time")
        {
            rumqttc::Packet::Publish(p) => {
                assert_eq!(p.topic, topic);
                assert_eq!(&p.payload[..], payload);
                return;
            }
            _ => continue,
        }
    }
}

async fn subscribed(client: &mut Client, filter: &str) {
    client
        .client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let rumqttc::Packet::SubAck(_) = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("SUBACK")
        {
            return;
        }
    }
}

/// A round trip between two established clients (one over WebSocket,
/// one over TCP): the traffic that must go on while others misbehave.
struct Pair {
    ws: Client,
    tcp: Client,
    n: u32,
}

impl Pair {
    async fn new(weft: &Weft) -> Pair {
        let mut ws = connect_options(ws_options(weft.mqtt_ws.unwrap(), "pair-ws"), "pair-ws").await;
        let mut tcp = connect(weft.addr, "pair-tcp").await;
        subscribed(&mut ws, "pair/to-ws").await;
        subscribed(&mut tcp, "pair/to-tcp").await;
        Pair { ws, tcp, n: 0 }
    }

    async fn still_flows(&mut self) {
        self.n += 1;
        let body = format!("round {}", self.n);
        self.tcp
            .client
            .publish("pair/to-ws", QoS::AtLeastOnce, false, body.clone())
            .await
            .unwrap();
        expect_publish(&mut self.ws, "pair/to-ws", body.as_bytes()).await;
        self.ws
            .client
            .publish("pair/to-tcp", QoS::AtLeastOnce, false, body.clone())
            .await
            .unwrap();
        expect_publish(&mut self.tcp, "pair/to-tcp", body.as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_websocket_and_tcp_exchange_events_both_ways() {
    let weft = start("");
    let mut pair = Pair::new(&weft).await;
    for _ in 0..3 {
        pair.still_flows().await;
    }
    // A payload larger than one server frame (write_frame_bytes_max
    // 65536) arrives whole over WebSocket.
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    pair.tcp
        .client
        .publish("pair/to-ws", QoS::AtMostOnce, false, big.clone())
        .await
        .unwrap();
    expect_publish(&mut pair.ws, "pair/to-ws", &big).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_over_websocket_and_tcp_exchange_events_both_ways() {
    let weft = start("");
    let url = format!("ws://127.0.0.1:{}", weft.nats_ws.unwrap().port());
    let ws = async_nats::connect(url).await.expect("NATS over WebSocket");
    let tcp = nats(weft.nats).await;
    let mut on_ws = ws.subscribe("ws.in").await.unwrap();
    let mut on_tcp = tcp.subscribe("ws.out").await.unwrap();
    nats_sync(&ws).await;
    nats_sync(&tcp).await;
    for i in 0..3 {
        tcp.publish("ws.in", format!("to ws {i}").into())
            .await
            .unwrap();
        let m = tokio::time::timeout(WAIT, on_ws.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&m.payload[..], format!("to ws {i}").as_bytes());
        ws.publish("ws.out", format!("to tcp {i}").into())
            .await
            .unwrap();
        let m = tokio::time::timeout(WAIT, on_tcp.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&m.payload[..], format!("to tcp {i}").as_bytes());
    }
    // Across protocols: an MQTT client over WebSocket reaches NATS over
    // WebSocket.
    let mut sub = ws.subscribe("cross.ws").await.unwrap();
    nats_sync(&ws).await;
    let mqtt = connect_options(ws_options(weft.mqtt_ws.unwrap(), "cross"), "cross").await;
    mqtt.client
        .publish("cross/ws", QoS::AtLeastOnce, false, "from mqtt ws")
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"from mqtt ws");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_serves_each_protocol_with_its_tls_material() {
    use common::pki::Pki;
    let pki = Pki::new();
    let ca = pki.ca("ws");
    let server = pki.signed(&ca, "server", "localhost");
    let toml = format!(
        "[mqtt.ws]\nlisten = \"127.0.0.1:0\"\ntls = true\n[mqtt.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n\
         [nats.ws]\nlisten = \"127.0.0.1:0\"\ntls = true\n[nats.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n",
        c = server.cert,
        k = server.key
    );
    let weft = Weft::start(1, &toml);
    let port = weft.mqtt_ws.unwrap().port();
    let mut o = MqttOptions::new("wss", format!("wss://localhost:{port}/mqtt"), port);
    o.set_transport(Transport::wss(std::fs::read(&ca.path).unwrap(), None, None));
    let mut wss = connect_options(o, "wss").await;
    subscribed(&mut wss, "wss/t").await;
    let tcp = connect(weft.addr, "wss-tcp").await;
    tcp.client
        .publish("wss/t", QoS::AtLeastOnce, false, "over tls")
        .await
        .unwrap();
    expect_publish(&mut wss, "wss/t", b"over tls").await;

    let nc = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.path.clone().into())
        .connect(format!("wss://localhost:{}", weft.nats_ws.unwrap().port()))
        .await
        .expect("NATS over wss");
    let mut sub = nc.subscribe("wss.n").await.unwrap();
    nats_sync(&nc).await;
    tcp.client
        .publish("wss/n", QoS::AtMostOnce, false, "to nats wss")
        .await
        .unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"to nats wss");
}

// ---- the raw client ----

/// An upgrade request for `path`, with `protocol` offered, and the
/// standard headers unless `drop` names one to leave out (or `version`
/// replaces 13).
fn upgrade_request(path: &str, protocol: Option<&str>, drop: &str, version: &str) -> Vec<u8> {
    let mut lines = vec![
        format!("GET {path} HTTP/1.1"),
        "Host: localhost".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
        format!("Sec-WebSocket-Version: {version}"),
    ];
    if let Some(p) = protocol {
        lines.push(format!("Sec-WebSocket-Protocol: {p}"));
    }
    lines.retain(|l| drop.is_empty() || !l.starts_with(drop));
    let mut r = lines.join("\r\n");
    r.push_str("\r\n\r\n");
    r.into_bytes()
}

/// Sends `request` and reads the response head; returns it and the bytes
/// read after it.
async fn handshake(stream: &mut TcpStream, request: &[u8]) -> (String, Vec<u8>) {
    stream.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got[end + 4..].to_vec();
            return (String::from_utf8_lossy(&got[..end]).into_owned(), rest);
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// A raw WebSocket client: masked frames out, server frames decoded in.
struct RawWs {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl RawWs {
    async fn open(addr: SocketAddr, path: &str, protocol: Option<&str>) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let (head, rest) = handshake(&mut stream, &upgrade_request(path, protocol, "", "13")).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        let limits = frame::Limits {
            frame_bytes_max: 1 << 24,
            message_bytes_max: 1 << 24,
            text_allowed: true,
        };
        RawWs {
            stream,
            decoder: Decoder::new(Role::Client, limits),
            buf: rest,
        }
    }

    async fn send(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) {
        let mut out = Vec::new();
        frame::encode_frame(&mut out, fin, opcode, payload, Some(MASK));
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next thing the server sends.
    async fn next(&mut self) -> Got {
        let mut chunk = [0u8; 8192];
        loop {
            let step = self
                .decoder
                .decode(&mut self.buf)
                .expect("valid server frames");
            if step.consumed == 0 && step.item.is_none() {
                let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                    .await
                    .expect("the server sends or closes in time");
                match read {
                    Ok(0) | Err(_) => return Got::End,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
            let got = match step.item {
                Some(Item::Data { range, .. }) => Some(Got::Data(self.buf[range].to_vec())),
                Some(Item::Ping(r)) => Some(Got::Ping(self.buf[r].to_vec())),
                Some(Item::Pong(r)) => Some(Got::Pong(self.buf[r].to_vec())),
                Some(Item::Close { code, .. }) => Some(Got::Close(code)),
                None => None,
            };
            self.buf.drain(..step.consumed);
            if let Some(got) = got {
                return got;
            }
        }
    }

    /// Application bytes until `n` have come; control frames on the way
    /// are returned beside them.
    async fn data(&mut self, n: usize) -> (Vec<u8>, Vec<Got>) {
        let mut data = Vec::new();
        let mut controls = Vec::new();
        while data.len() < n {
            match self.next().await {
                Got::Data(d) => data.extend(d),
                Got::End => panic!("ended after {data:?}"),
                other => controls.push(other),
            }
        }
        (data, controls)
    }

    /// The server's close: its code, then the end of the stream (data
    /// before it is ignored).
    async fn closed_with(&mut self) -> Option<CloseCode> {
        loop {
            match self.next().await {
                Got::Close(code) => {
                    assert_eq!(self.next().await, Got::End, "the end after the close");
                    return code;
                }
                Got::End => panic!("ended without a close frame"),
                _ => {}
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Got {
    Data(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseCode>),
    End,
}

fn subscribe_packet(filter: &str) -> Vec<u8> {
    let mut p = vec![0x82, (2 + 2 + filter.len() + 1) as u8, 0, 1];
    p.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    p.extend_from_slice(filter.as_bytes());
    p.push(0);
    p
}

fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x30, (2 + topic.len() + payload.len()) as u8];
    p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    p.extend_from_slice(topic.as_bytes());
    p.extend_from_slice(payload);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_packets_span_frames_and_messages_and_share_frames() {
    let weft = start("");
    let mut raw = RawWs::open(weft.mqtt_ws.unwrap(), "/mqtt", Some("mqtt")).await;
    let connect = connect_packet("raw-ws", 30, 4, true);
    let subscribe = subscribe_packet("raw/t");
    // CONNECT: its first 3 bytes in a message of two frames (the second
    // empty), a ping between the fragments, the rest of it and the whole
    // SUBSCRIBE in a second message of two frames.
    raw.send(false, Opcode::Binary, &connect[..3]).await;
    raw.send(true, Opcode::Ping, b"are you there").await;
    raw.send(true, Opcode::Continuation, b"").await;
    let mut rest = connect[3..].to_vec();
    rest.extend_from_slice(&subscribe);
    let cut = rest.len() - 4;
    raw.send(false, Opcode::Binary, &rest[..cut]).await;
    raw.send(true, Opcode::Continuation, &rest[cut..]).await;
    let (data, controls) = raw.data(4 + 5).await;
    assert_eq!(data, [0x20, 2, 0, 0, 0x90, 3, 0, 1, 0], "CONNACK, SUBACK");
    let pong = match controls.as_slice() {
        [] => match raw.next().await {
            Got::Pong(p) => p,
            other => panic!("{other:?}"),
        },
        [Got::Pong(p)] => p.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(pong, b"are you there");
    // Two PUBLISHes and a PINGREQ in one frame.
    let mut three = publish_packet("raw/t", b"one");
    three.extend(publish_packet("raw/t", b"two"));
    three.extend_from_slice(&[0xC0, 0]);
    raw.send(true, Opcode::Binary, &three).await;
    let mut expected = [0xD0, 0].to_vec();
    let mut publishes = publish_packet("raw/t", b"one");
    publishes.extend(publish_packet("raw/t", b"two"));
    let (data, _) = raw.data(publishes.len() + 2).await;
    // The PINGRESP may come before the deliveries (they go through the
    // router), never inside one.
    if data.starts_with(&[0xD0, 0]) {
        expected.extend(publishes);
    } else {
        expected = publishes;
        expected.extend_from_slice(&[0xD0, 0]);
    }
    assert_eq!(data, expected);
    // A clean close: answered with the same code, then the end.
    raw.send(true, Opcode::Close, &1000u16.to_be_bytes()).await;
    assert_eq!(raw.closed_with().await, Some(CloseCode::NORMAL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_over_websocket_starts_with_info_after_the_upgrade() {
    let weft = start("");
    let mut raw = RawWs::open(weft.nats_ws.unwrap(), "/", None).await;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        match raw.next().await {
            Got::Data(d) => line.extend(d),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        line.starts_with(b"INFO {"),
        "{}",
        String::from_utf8_lossy(&line)
    );
    // Text frames are accepted on NATS.
    raw.send(
        true,
        Opcode::Text,
        b"CONNECT {\"verbose\":false}\r\nPING\r\n",
    )
    .await;
    let (data, _) = raw.data(6).await;
    assert_eq!(data, b"PONG\r\n");
}

/// Opens a raw connection and returns the response's status line for
/// `request`.
async fn refused(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (head, body) = handshake(&mut stream, request).await;
    let mut rest = body;
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    let status = head.lines().next().unwrap().to_string();
    format!("{status} | {}", String::from_utf8_lossy(&rest).trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_its_own_connection() {
    let weft = start("");
    let mqtt_ws = weft.mqtt_ws.unwrap();
    let mut pair = Pair::new(&weft).await;
    pair.still_flows().await;

    // Refused handshakes, each with its status and a one-line reason.
    let cases = [
        (
            upgrade_request("/mqtt", Some("mqtt"), "", "8"),
            "426",
            "Sec-WebSocket-Version",
        ),
        (
            upgrade_request("/mqtt", Some("mqtt"), "Sec-WebSocket-Key", "13"),
            "400",
            "Sec-WebSocket-Key",
        ),
        (
            upgrade_request("/other", Some("mqtt"), "", "13"),
            "404",
            "/other",
        ),
        (
            upgrade_request("/mqtt", None, "", "13"),
            "400",
            "subprotocol",
        ),
        (
            upgrade_request("/mqtt", Some("mqtt"), "Upgrade", "13"),
            "426",
            "Upgrade",
        ),
    ];
    for (request, status, says) in cases {
        let answer = refused(mqtt_ws, &request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert!(answer.contains(says), "{answer} lacks {says}");
        pair.still_flows().await;
    }
    // A head over handshake_bytes_max (8192).
    let mut big = upgrade_request("/mqtt", Some("mqtt"), "", "13");
    big.truncate(big.len() - 2);
    big.extend(format!("X-Pad: {}\r\n\r\n", "p".repeat(9000)).into_bytes());
    let answer = refused(mqtt_ws, &big).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    pair.still_flows().await;

    // An unmasked frame: 1002.
    let mut raw = RawWs::open(mqtt_ws, "/mqtt", Some("mqtt")).await;
    let mut unmasked = Vec::new();
    frame::encode(
        &mut unmasked,
        Opcode::Binary,
        &connect_packet("u", 30, 4, true),
    );
    raw.stream.write_all(&unmasked).await.unwrap();
    assert_eq!(raw.closed_with().await, Some(CloseCode::PROTOCOL_ERROR));
    pair.still_flows().await;

    // A message over message_bytes_max (8192) in frames under
    // frame_bytes_max (4096): 1009 at the third frame's header.
    // Its bytes open a CONNECT of 11,997 bytes, which the MQTT session
    // waits for (under limits.packet_bytes_max).
    let mut raw = RawWs::open(mqtt_ws, "/mqtt", Some("mqtt")).await;
    let mut first = vec![0u8; 4000];
    first[..3].copy_from_slice(&[0x10, 0xDD, 0x5D]); // 11,997 = 0x5D << 7 | 0x5D
    raw.send(false, Opcode::Binary, &first).await;
    raw.send(false, Opcode::Continuation, &[0; 4000]).await;
    raw.send(true, Opcode::Continuation, &[0; 4000]).await;
    assert_eq!(raw.closed_with().await, Some(CloseCode::MESSAGE_TOO_BIG));
    pair.still_flows().await;
    // One frame over frame_bytes_max: 1009 from its header.
    let mut raw = RawWs::open(mqtt_ws, "/mqtt", Some("mqtt")).await;
    raw.send(true, Opcode::Binary, &[0; 5000]).await;
    assert_eq!(raw.closed_with().await, Some(CloseCode::MESSAGE_TOO_BIG));
    pair.still_flows().await;

    // A text frame on MQTT: 1003.
    let mut raw = RawWs::open(mqtt_ws, "/mqtt", Some("mqtt")).await;
    raw.send(true, Opcode::Text, b"hello").await;
    assert_eq!(raw.closed_with().await, Some(CloseCode::UNSUPPORTED_DATA));
    pair.still_flows().await;

    // A truncated frame, then the end of the stream: the server closes.
    let mut raw = RawWs::open(mqtt_ws, "/mqtt", Some("mqtt")).await;
    let mut whole = Vec::new();
    frame::encode_frame(
        &mut whole,
        true,
        Opcode::Binary,
        &connect_packet("t", 30, 4, true),
        Some(MASK),
    );
    raw.stream
        .write_all(&whole[..whole.len() / 2])
        .await
        .unwrap();
    raw.stream.shutdown().await.unwrap();
    loop {
        match raw.next().await {
            Got::End => break,
            Got::Data(d) => panic!("served a truncated CONNECT: {d:?}"),
            _ => {}
        }
    }
    pair.still_flows().await;

    // And a bad NATS client over WebSocket: same.
    let mut raw = RawWs::open(weft.nats_ws.unwrap(), "/", None).await;
    raw.stream.write_all(&unmasked).await.unwrap();
    assert_eq!(raw.closed_with().await, Some(CloseCode::PROTOCOL_ERROR));
    pair.still_flows().await;
}
