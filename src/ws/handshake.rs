//! The WebSocket opening handshake (RFC 6455 §4.2), server side, sans-IO:
//! [`parse_upgrade`] reads the client's HTTP/1.1 request head from a
//! buffer (with `httparse`; the head is bounded by `head_bytes_max`) and
//! either accepts it ([`accept_response`] writes the 101) or refuses it
//! with a precise status and a one-line reason ([`refusal_response`]).
//!
//! What is checked, in this order, each with its own status: the head's
//! size (431) and syntax (400), HTTP/1.1 (400), GET (405), the path (404),
//! `Upgrade: websocket` (426: a plain HTTP request to a WebSocket
//! endpoint), `Connection: upgrade` (400), `Sec-WebSocket-Version: 13`
//! (426, naming the version served), a key that is 16 bytes in base64
//! (400), and the subprotocol where the endpoint requires one (400).
//! `Origin` is not checked: the endpoints carry MQTT and NATS, whose own
//! authentication applies, not a browser's cookies. Extensions offered
//! (permessage-deflate) are declined by not naming them (see `ws`).

use std::fmt::Write as _;

use base64::Engine as _;
use sha1::{Digest, Sha1};
use thiserror::Error;

/// The GUID every accept key is hashed with (§1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Headers a request may carry: more is a refusal (431), not a growth.
const HEADERS_MAX: usize = 48;

/// What an endpoint serves.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The path served (the query is ignored); None takes any path (the
    /// caller routes by [`Upgrade::path`]).
    pub path: Option<&'a str>,
    /// The subprotocols spoken, in preference order.
    pub subprotocols: &'static [&'static str],
    /// Whether a client must offer one of them (MQTT: yes, as mosquitto;
    /// NATS: none is used).
    pub subprotocol_required: bool,
    /// The largest request head accepted, in bytes.
    pub head_bytes_max: usize,
}

/// An accepted upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request target (path and query).
    pub path: String,
    /// The client's `Sec-WebSocket-Key` (24 base64 characters).
    pub key: [u8; 24],
    /// The subprotocol chosen (one of `Expect::subprotocols`).
    pub subprotocol: Option<&'static str>,
    /// Length of the request head: bytes after it are the client's first
    /// frames.
    pub head_len: usize,
}

/// Why an upgrade request was refused; [`Refusal::status`] gives the
/// HTTP status and the message the one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("request head over {max} bytes")]
    HeadTooLarge { max: usize },
    #[error("more than {HEADERS_MAX} header fields")]
    TooManyHeaders,
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    #[error("HTTP/1.1 required")]
    NotHttp11,
    #[error("method {0} not allowed: a WebSocket upgrade is a GET")]
    Method(String),
    #[error("no WebSocket endpoint at {path} (this one is at {expected})")]
    NotFound { path: String, expected: String },
    #[error("WebSocket upgrade required (Upgrade: websocket)")]
    NotUpgrade,
    #[error("Connection header without the upgrade token")]
    NoConnectionUpgrade,
    #[error("unsupported Sec-WebSocket-Version {0:?} (13 is served)")]
    Version(Option<String>),
    #[error("missing Sec-WebSocket-Key")]
    NoKey,
    #[error("Sec-WebSocket-Key is not 16 bytes in base64")]
    BadKey,
    #[error("no supported subprotocol offered (Sec-WebSocket-Protocol: {wanted})")]
    NoSubprotocol { wanted: String },
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::HeadTooLarge { .. } | Refusal::TooManyHeaders => 431,
            Refusal::Method(_) => 405,
            Refusal::NotFound { .. } => 404,
            Refusal::NotUpgrade | Refusal::Version(_) => 426,
            _ => 400,
        }
    }
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> impl Iterator<Item = &'h [u8]> {
    let name = name.to_owned();
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(&name))
        .map(|h| h.value)
}

/// The comma-separated tokens of every `name` header, trimmed.
fn tokens<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> impl Iterator<Item = &'h [u8]> {
    header(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii())
}

/// Reads an upgrade request from `buf`: Ok(None) while the head is not
/// complete (and within `head_bytes_max`), the accepted upgrade, or the
/// refusal.
pub fn parse_upgrade(buf: &[u8], expect: &Expect<'_>) -> Result<Option<Upgrade>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= expect.head_bytes_max => {
            return Err(Refusal::HeadTooLarge {
                max: expect.head_bytes_max,
            })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooManyHeaders),
        Err(e) => return Err(Refusal::Malformed(e.to_string())),
    };
    if head_len > expect.head_bytes_max {
        return Err(Refusal::HeadTooLarge {
            max: expect.head_bytes_max,
        });
    }
    validate(&request, head_len, expect).map(Some)
}

/// Checks a parsed request head (for a caller that parsed it itself, the
/// HTTP edge) as [`parse_upgrade`] does.
pub fn validate(
    request: &httparse::Request<'_, '_>,
    head_len: usize,
    expect: &Expect<'_>,
) -> Result<Upgrade, Refusal> {
    if request.version != Some(1) {
        return Err(Refusal::NotHttp11);
    }
    let method = request.method.unwrap_or_default();
    if method != "GET" {
        return Err(Refusal::Method(method.chars().take(16).collect()));
    }
    let target = request.path.unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    if let Some(expected) = expect.path {
        if path != expected {
            return Err(Refusal::NotFound {
                path: path.chars().take(64).collect(),
                expected: expected.to_owned(),
            });
        }
    }
    let headers = &*request.headers;
    if !tokens(headers, "upgrade").any(|t| t.eq_ignore_ascii_case(b"websocket")) {
        return Err(Refusal::NotUpgrade);
    }
    if !tokens(headers, "connection").any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
        return Err(Refusal::NoConnectionUpgrade);
    }
    let version = header(headers, "sec-websocket-version").next();
    if version.map(<[u8]>::trim_ascii) != Some(b"13") {
        let shown = version.map(|v| String::from_utf8_lossy(&v[..v.len().min(16)]).into_owned());
        return Err(Refusal::Version(shown));
    }
    let key = header(headers, "sec-websocket-key")
        .next()
        .ok_or(Refusal::NoKey)?
        .trim_ascii();
    let mut decoded = [0u8; 18];
    let key: [u8; 24] = key.try_into().map_err(|_| Refusal::BadKey)?;
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => {}
        _ => return Err(Refusal::BadKey),
    }
    let subprotocol = tokens(headers, "sec-websocket-protocol")
        .find_map(|offered| known(offered, expect.subprotocols));
    if subprotocol.is_none() && expect.subprotocol_required {
        return Err(Refusal::NoSubprotocol {
            wanted: expect.subprotocols.join(", "),
        });
    }
    Ok(Upgrade {
        path: target.to_owned(),
        key,
        subprotocol,
        head_len,
    })
}

fn known(offered: &[u8], served: &'static [&'static str]) -> Option<&'static str> {
    served.iter().copied().find(|s| s.as_bytes() == offered)
}

/// The `Sec-WebSocket-Accept` value for a client's key: base64 of the SHA-1
/// of the key and the GUID.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .expect("20 bytes are 28 in base64");
    debug_assert_eq!(n, 28);
    out
}

/// Appends the 101 answer that accepts `upgrade` to `out`.
pub fn accept_response(upgrade: &Upgrade, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept_key(&upgrade.key));
    out.extend_from_slice(b"\r\n");
    if let Some(p) = upgrade.subprotocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the HTTP answer to a refused request to `out`: its status, a
/// one-line plain-text reason, and the connection's close.
pub fn refusal_response(refusal: &Refusal, out: &mut Vec<u8>) {
    let status = refusal.status();
    let phrase = match status {
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = format!("{refusal}\n");
    let mut head = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    match refusal {
        Refusal::Version(_) => head.push_str("Sec-WebSocket-Version: 13\r\n"),
        Refusal::NotUpgrade => head.push_str("Upgrade: websocket\r\n"),
        Refusal::Method(_) => head.push_str("Allow: GET\r\n"),
        _ => {}
    }
    let _ = write!(head, "\r\n{body}");
    out.extend_from_slice(head.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MQTT: Expect<'static> = Expect {
        path: Some("/mqtt"),
        subprotocols: &["mqtt", "mqttv3.1"],
        subprotocol_required: true,
        head_bytes_max: 4096,
    };

    const NATS: Expect<'static> = Expect {
        path: Some("/"),
        subprotocols: &[],
        subprotocol_required: false,
        head_bytes_max: 4096,
    };

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut r = lines.join("\r\n");
        r.push_str("\r\n\r\n");
        r.into_bytes()
    }

    fn good(path: &str, protocol: Option<&str>) -> Vec<String> {
        let mut lines = vec![
            format!("GET {path} HTTP/1.1"),
            "Host: localhost".into(),
            "Upgrade: websocket".into(),
            "Connection: keep-alive, Upgrade".into(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
            "Sec-WebSocket-Version: 13".into(),
        ];
        if let Some(p) = protocol {
            lines.push(format!("Sec-WebSocket-Protocol: {p}"));
        }
        lines
    }

    fn refs(lines: &[String]) -> Vec<&str> {
        lines.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_rfc_example_is_accepted_with_its_accept_key() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut wire = request(&refs(&good("/mqtt", Some("mqttv3.1, mqtt"))));
        let head_len = wire.len();
        wire.extend_from_slice(&[0x82, 0x80]); // a first frame already sent
        let up = parse_upgrade(&wire, &MQTT).unwrap().unwrap();
        assert_eq!(up.head_len, head_len);
        assert_eq!(up.subprotocol, Some("mqttv3.1"), "the client's first known");
        let mut out = Vec::new();
        accept_response(&up, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        // NATS: no subprotocol, any query.
        let up = parse_upgrade(&request(&refs(&good("/?x=1", None))), &NATS)
            .unwrap()
            .unwrap();
        assert_eq!(up.subprotocol, None);
        assert_eq!(up.path, "/?x=1");
        let mut out = Vec::new();
        accept_response(&up, &mut out);
        assert!(!String::from_utf8(out)
            .unwrap()
            .contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn a_partial_head_waits_within_its_bound() {
        let wire = request(&refs(&good("/mqtt", Some("mqtt"))));
        for cut in 0..wire.len() {
            assert_eq!(parse_upgrade(&wire[..cut], &MQTT), Ok(None), "cut {cut}");
        }
        let small = Expect {
            head_bytes_max: 64,
            ..MQTT
        };
        assert_eq!(
            parse_upgrade(&wire[..64], &small),
            Err(Refusal::HeadTooLarge { max: 64 })
        );
        assert_eq!(
            parse_upgrade(&wire, &small),
            Err(Refusal::HeadTooLarge { max: 64 })
        );
    }

    #[test]
    fn each_bad_request_gets_its_status() {
        let swap = |from: &str, to: &str| {
            let lines: Vec<String> = good("/mqtt", Some("mqtt"))
                .into_iter()
                .filter_map(|l| {
                    if l.starts_with(from) {
                        (!to.is_empty()).then(|| to.to_owned())
                    } else {
                        Some(l)
                    }
                })
                .collect();
            request(&refs(&lines))
        };
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (
                b"GET /mqtt HTTP/1.1\r\nHost\r\n\r\n".to_vec(),
                400,
                "malformed",
            ),
            (swap("GET", "GET /mqtt HTTP/1.0"), 400, "HTTP/1.1"),
            (swap("GET", "POST /mqtt HTTP/1.1"), 405, "POST"),
            (swap("GET", "GET /other HTTP/1.1"), 404, "/other"),
            (swap("Upgrade", ""), 426, "Upgrade: websocket"),
            (
                swap("Connection", "Connection: keep-alive"),
                400,
                "upgrade token",
            ),
            (
                swap("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
                426,
                "\"8\"",
            ),
            (swap("Sec-WebSocket-Version", ""), 426, "None"),
            (
                swap("Sec-WebSocket-Key", ""),
                400,
                "missing Sec-WebSocket-Key",
            ),
            (
                swap("Sec-WebSocket-Key", "Sec-WebSocket-Key: short"),
                400,
                "16 bytes",
            ),
            (
                swap(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=",
                ),
                400,
                "16 bytes",
            ),
            (swap("Sec-WebSocket-Protocol", ""), 400, "mqtt, mqttv3.1"),
            (
                swap(
                    "Sec-WebSocket-Protocol",
                    "Sec-WebSocket-Protocol: MQTT, amqp",
                ),
                400,
                "subprotocol",
            ),
        ];
        for (wire, status, says) in cases {
            let refusal = parse_upgrade(&wire, &MQTT).unwrap_err();
            assert_eq!(refusal.status(), status, "{refusal}");
            let mut out = Vec::new();
            refusal_response(&refusal, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            assert!(text.contains(says), "{text} lacks {says}");
            let body = text.split("\r\n\r\n").nth(1).unwrap();
            assert_eq!(body.lines().count(), 1, "one line: {body}");
            assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        }
        let version = parse_upgrade(&swap("Sec-WebSocket-Version", ""), &MQTT).unwrap_err();
        let mut out = Vec::new();
        refusal_response(&version, &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Sec-WebSocket-Version: 13\r\n"));
        let many: Vec<String> = (0..HEADERS_MAX + 1).map(|i| format!("X-{i}: y")).collect();
        let mut lines = good("/mqtt", Some("mqtt"));
        lines.extend(many);
        assert_eq!(
            parse_upgrade(&request(&refs(&lines)), &MQTT),
            Err(Refusal::TooManyHeaders)
        );
    }
}
