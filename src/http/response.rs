//! Responses: status lines, headers and RFC 9457 problem details, written
//! into the caller's buffer.
//!
//! Owns: the bytes of every answer. Must not touch: which answer a request
//! gets (`session`).

use std::io::Write;

/// An error answer: an RFC 9457 problem (`type` is `about:blank`, so
/// `title` is the status's phrase; `detail` says what was wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub detail: String,
    /// `Retry-After` in seconds (429, 503).
    pub retry_after_s: Option<u32>,
    /// 405: the methods the path allows.
    pub allow: Option<&'static str>,
    /// 426 to a WebSocket upgrade of another version: the one served
    /// (`Sec-WebSocket-Version: 13`, RFC 6455 §4.4).
    pub websocket_version: bool,
}

impl Problem {
    pub fn new(status: u16, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            detail: detail.into(),
            retry_after_s: None,
            allow: None,
            websocket_version: false,
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> Problem {
        self.retry_after_s = Some(seconds);
        self
    }
}

/// The reason phrase of the statuses weft answers.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// `202 Accepted`, no body.
pub fn accepted(out: &mut Vec<u8>, close: bool) {
    out.extend_from_slice(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The head of an event stream: the body runs until the connection
/// closes (no length, no chunking: each event is written as it comes).
pub fn event_stream(out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
          X-Accel-Buffering: no\r\nConnection: close\r\n\r\n",
    );
}

/// A problem answer, head and JSON body.
pub fn problem(out: &mut Vec<u8>, p: &Problem, close: bool) {
    let mut body = Vec::with_capacity(96 + p.detail.len());
    body.extend_from_slice(b"{\"type\":\"about:blank\",\"title\":");
    json_string(&mut body, reason(p.status));
    let _ = write!(body, ",\"status\":{},\"detail\":", p.status);
    json_string(&mut body, &p.detail);
    body.push(b'}');
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\n",
        p.status,
        reason(p.status),
        body.len()
    );
    if let Some(s) = p.retry_after_s {
        let _ = write!(out, "Retry-After: {s}\r\n");
    }
    if let Some(allow) = p.allow {
        let _ = write!(out, "Allow: {allow}\r\n");
    }
    if p.websocket_version {
        out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    if p.status == 401 {
        out.extend_from_slice(b"WWW-Authenticate: Basic realm=\"weft\", Bearer realm=\"weft\"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
}

/// `s` as a JSON string (RFC 8259 escapes).
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_json_with_its_headers() {
        let mut out = Vec::new();
        problem(
            &mut out,
            &Problem::new(429, "slow \"subscriber\"\n").retry_after(1),
            true,
        );
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains("Content-Type: application/problem+json"));
        assert!(head.contains("Retry-After: 1"));
        assert!(head.contains("Connection: close"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(
            body,
            r#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"slow \"subscriber\"\n"}"#
        );
    }
}
