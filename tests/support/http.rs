//! HTTP clients for `tests/http.rs`: curl (status, headers, body), a raw
//! Server-Sent Events reader that can stop reading, and a WebSocket
//! subscriber (`tungstenite`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::WAIT;

/// A WebSocket subscriber (`tungstenite`, blocking, reads bounded by
/// `WAIT`).
pub type Ws = tungstenite::WebSocket<std::net::TcpStream>;

/// What curl got: status, headers (lower-case names), body.
pub struct Curl {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Curl {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as an RFC 9457 problem with `status`.
    pub fn assert_problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        let p: serde_json::Value = serde_json::from_str(&self.body).expect("problem JSON");
        assert_eq!(p["status"], status);
        assert!(p["title"].is_string() && p["type"].is_string(), "{p}");
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{p}");
        p
    }
}

/// Runs curl (`-i`: headers in the output) with `args`, `body` on stdin.
pub fn curl(args: &[&str], body: &[u8]) -> Curl {
    let mut child = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl (installed by scripts/test.sh)");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl {
        status,
        headers,
        body: body.to_string(),
    }
}

pub fn post(http: SocketAddr, path: &str, body: &[u8], extra: &[&str]) -> Curl {
    let url = format!("http://{http}{path}");
    let mut args = vec!["-X", "POST", "--data-binary", "@-", &url];
    args.extend_from_slice(extra);
    curl(&args, body)
}

/// One Server-Sent Event.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// An event stream read over raw TCP.
pub struct Stream {
    pub reader: BufReader<TcpStream>,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
}

/// Opens `GET path` with `headers`; the status and, for a 200, the stream.
pub async fn open(http: SocketAddr, path: &str, headers: &str) -> (u16, Stream) {
    let mut s = TcpStream::connect(http).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: weft\r\nAccept: text/event-stream\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut status_line))
        .await
        .expect("a status line in time")
        .unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("status line {status_line:?}"))
        .parse()
        .unwrap();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    (
        status,
        Stream {
            reader,
            comments: 0,
        },
    )
}

impl Stream {
    /// The next event (comments counted and skipped).
    pub async fn next(&mut self) -> Sse {
        tokio::time::timeout(WAIT, self.read_event())
            .await
            .expect("an event in time")
    }

    pub async fn read_event(&mut self) -> Sse {
        let mut e = Sse::default();
        let mut data: Vec<String> = Vec::new();
        let mut fields = 0;
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.unwrap();
            assert!(n > 0, "the stream ended");
            let line = line.strip_suffix('\n').unwrap();
            if line.is_empty() {
                if fields > 0 {
                    e.data = data.join("\n");
                    return e;
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            fields += 1;
            let (name, value) = line.split_once(": ").unwrap_or((line, ""));
            match name {
                "id" => e.id = Some(value.parse().unwrap()),
                "event" => e.event = value.into(),
                "data" => data.push(value.into()),
                other => panic!("unknown field {other}"),
            }
        }
    }
}

/// Events until the one on `topic` (included).
pub async fn until(stream: &mut Stream, topic: &str) -> Vec<Sse> {
    let mut got = Vec::new();
    loop {
        let e = stream.next().await;
        let end = e.event == topic;
        got.push(e);
        if end {
            return got;
        }
    }
}

/// Opens `GET /v1/subscribe?{query}` over WebSocket.
pub fn ws_open(http: SocketAddr, query: &str) -> Ws {
    let stream = std::net::TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("ws://{http}/v1/subscribe?{query}");
    let (ws, response) = tungstenite::client::client(url, stream).expect("a WebSocket upgrade");
    assert_eq!(response.status(), 101);
    ws
}

/// The next event's JSON (pings skipped; tungstenite answers them).
pub fn ws_next(ws: &mut Ws) -> serde_json::Value {
    tokio::task::block_in_place(|| loop {
        match ws.read().expect("a message in time") {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str(&text).expect("a JSON message")
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("not an event: {other:?}"),
        }
    })
}

pub const UPGRADE: &str =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
