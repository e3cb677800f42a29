//! The request codec: one HTTP/1.1 request (head and `Content-Length`
//! body) from the front of a buffer, borrowed from it.
//!
//! Bounded from the head: a head longer than `head_bytes_max` (or with
//! more than `headers_max` headers) is refused before more is buffered, a
//! `Content-Length` over `body_bytes_max` before the body is read. "Need
//! more bytes" is `Ok(None)`, not an error.
//!
//! Owns: parsing and the errors that end a connection (a request that
//! cannot be framed: the bytes after it cannot be trusted). Must not
//! touch: routes and their answers (`session`).

use smallvec::SmallVec;
use thiserror::Error;

use super::{HttpLimits, HEADERS_HARD_MAX};

/// What ends a connection: its problem's status, then the close.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Malformed {
    #[error("request head over {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    #[error("body of {got} bytes over the {max}-byte limit")]
    BodyTooLarge { got: usize, max: usize },
    #[error("a body without Content-Length (chunked bodies are not accepted)")]
    LengthRequired,
    #[error("{0}")]
    Bad(&'static str),
}

impl Malformed {
    pub fn status(&self) -> u16 {
        match self {
            Malformed::HeadTooLarge(_) | Malformed::TooManyHeaders(_) => 431,
            Malformed::BodyTooLarge { .. } => 413,
            Malformed::LengthRequired => 411,
            Malformed::Bad(_) => 400,
        }
    }
}

/// One request, borrowed from the read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query after `?`, empty if none.
    pub query: &'a str,
    /// HTTP/1.0 or 1.1: 0 or 1.
    pub minor_version: u8,
    /// The connection closes after the answer (`Connection: close`, or
    /// HTTP/1.0 without `keep-alive`).
    pub close: bool,
    /// Every header, in order (the CloudEvents binding reads `ce-*`).
    pub headers: SmallVec<[(&'a str, &'a [u8]); 16]>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// A header's value as text (None if absent or not UTF-8), trimmed.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }
}

/// Parses the request at the front of `buf`: the request and the bytes it
/// used, or None when more bytes are needed.
pub fn decode<'a>(
    buf: &'a [u8],
    limits: &HttpLimits,
) -> Result<Option<(Request<'a>, usize)>, Malformed> {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_HARD_MAX];
    let slots = &mut slots[..limits.headers_max.min(HEADERS_HARD_MAX)];
    let mut parsed = httparse::Request::new(slots);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.head_bytes_max {
                return Err(Malformed::HeadTooLarge(limits.head_bytes_max));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Malformed::TooManyHeaders(limits.headers_max))
        }
        Err(e) => return Err(Malformed::Bad(bad_head(e))),
    };
    if head_len > limits.head_bytes_max {
        return Err(Malformed::HeadTooLarge(limits.head_bytes_max));
    }
    let method = parsed.method.ok_or(Malformed::Bad("no method"))?;
    let target = parsed.path.ok_or(Malformed::Bad("no request target"))?;
    let minor_version = parsed.version.ok_or(Malformed::Bad("no HTTP version"))?;
    let mut headers = SmallVec::new();
    let mut length: Option<usize> = None;
    let mut close = minor_version == 0;
    for h in parsed.headers.iter() {
        headers.push((h.name, h.value));
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(Malformed::Bad("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Malformed::Bad("two different Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Malformed::LengthRequired);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor_version == 0 {
                    close = false;
                }
            }
        }
    }
    let length = length.unwrap_or(0);
    if length > limits.body_bytes_max {
        return Err(Malformed::BodyTooLarge {
            got: length,
            max: limits.body_bytes_max,
        });
    }
    let end = head_len + length;
    if buf.len() < end {
        return Ok(None);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some((
        Request {
            method,
            path,
            query,
            minor_version,
            close,
            headers,
            body: &buf[head_len..end],
        },
        end,
    )))
}

/// The whole size of the request begun at the front of `buf` once its
/// head is in (head and `Content-Length`), else 0: the driver grows its
/// read buffer to it.
pub fn request_len(buf: &[u8], limits: &HttpLimits) -> usize {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_HARD_MAX];
    let slots = &mut slots[..limits.headers_max.min(HEADERS_HARD_MAX)];
    let mut parsed = httparse::Request::new(slots);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(buf) else {
        return 0;
    };
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(0);
    head_len + length.min(limits.body_bytes_max)
}

fn bad_head(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            head_bytes_max: 256,
            body_bytes_max: 16,
            headers_max: 4,
            ..HttpLimits::default()
        }
    }

    #[test]
    fn a_request_with_its_body_and_the_next_one_behind_it() {
        let buf = b"POST /v1/topics/a%2Fb?qos=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        let (req, used) = decode(buf, &limits()).unwrap().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/topics/a%2Fb");
        assert_eq!(req.query, "qos=0");
        assert_eq!(req.body, b"hello");
        assert!(!req.close);
        assert_eq!(req.header_str("host"), Some("x"));
        let (next, rest) = decode(&buf[used..], &limits()).unwrap().unwrap();
        assert_eq!(next.method, "GET");
        assert_eq!(used + rest, buf.len());
    }

    #[test]
    fn partial_heads_and_bodies_wait_for_more() {
        let buf = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel";
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut], &limits()).unwrap().is_none(), "{cut}");
        }
        assert_eq!(request_len(buf, &limits()), buf.len() + 2);
    }

    #[test]
    fn oversize_input_is_refused_from_the_head() {
        let long = vec![b'a'; 300];
        assert_eq!(
            decode(&long, &limits()).unwrap_err(),
            Malformed::HeadTooLarge(256)
        );
        let buf = b"POST /x HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
        assert_eq!(decode(buf, &limits()).unwrap_err().status(), 413);
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\n\r\n";
        assert_eq!(decode(many, &limits()).unwrap_err().status(), 431);
    }

    #[test]
    fn bad_framing_is_an_error_with_its_status() {
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(decode(chunked, &limits()).unwrap_err().status(), 411);
        let nan = b"POST /x HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert_eq!(decode(nan, &limits()).unwrap_err().status(), 400);
        let two = b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(decode(two, &limits()).unwrap_err().status(), 400);
        let garbage = b"\x01\x02 nonsense\r\n\r\n";
        assert_eq!(decode(garbage, &limits()).unwrap_err().status(), 400);
    }

    #[test]
    fn connection_rules_by_version() {
        let old = b"GET / HTTP/1.0\r\n\r\n";
        assert!(decode(old, &limits()).unwrap().unwrap().0.close);
        let kept = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        assert!(!decode(kept, &limits()).unwrap().unwrap().0.close);
        let closed = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert!(decode(closed, &limits()).unwrap().unwrap().0.close);
    }
}
