//! The client side of the NATS protocol: a parser of server operations
//! (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`) and the encoders
//! of the few client operations the bench sends.
//!
//! Sans-IO like `weft::nats::codec` (which parses the *client* operations):
//! `parse` borrows from the caller's buffer; `Ok(None)` means "need more
//! bytes". Operation names are case-insensitive; a bare LF ends a line too.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp<'a> {
    Info(&'a str),
    Msg {
        subject: &'a str,
        sid: &'a str,
        reply: Option<&'a str>,
        payload: &'a [u8],
    },
    HMsg {
        subject: &'a str,
        sid: &'a str,
        reply: Option<&'a str>,
        headers: &'a [u8],
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    Err(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NATS protocol error: {}", self.0)
    }
}

/// Longest control line accepted (nats-server's INFO can be long).
const CONTROL_LINE_MAX: usize = 64 * 1024;

fn bad(what: &str, line: &[u8]) -> ParseError {
    let shown: String = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    ParseError(format!("{what}: {shown:?}"))
}

fn parse_usize(s: &str, line: &[u8]) -> Result<usize, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 12 {
        return Err(bad("invalid size", line));
    }
    Ok(s.parse().unwrap())
}

/// Parses one server operation from the front of `buf`; returns it and the
/// number of bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, ParseError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > CONTROL_LINE_MAX {
            return Err(ParseError("control line too long".into()));
        }
        return Ok(None);
    };
    let after_line = nl + 1;
    let line = if nl > 0 && buf[nl - 1] == b'\r' {
        &buf[..nl - 1]
    } else {
        &buf[..nl]
    };
    let (op, rest) = match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    fn text<'b>(b: &'b [u8], line: &[u8]) -> Result<&'b str, ParseError> {
        std::str::from_utf8(b).map_err(|_| bad("not UTF-8", line))
    }
    if op.eq_ignore_ascii_case(b"MSG") || op.eq_ignore_ascii_case(b"HMSG") {
        let headers = op.len() == 4;
        // No allocation per message: at most 5 arguments fit.
        let mut args = [""; 5];
        let mut n = 0;
        for a in text(rest, line)?.split_ascii_whitespace() {
            if n == args.len() {
                return Err(bad("wrong number of arguments", line));
            }
            args[n] = a;
            n += 1;
        }
        let args = &args[..n];
        // MSG subject sid [reply] size / HMSG subject sid [reply] hsize size
        let fixed = if headers { 4 } else { 3 };
        let (subject, sid, reply, sizes) = match args.len() {
            n if n == fixed => (args[0], args[1], None, &args[2..]),
            n if n == fixed + 1 => (args[0], args[1], Some(args[2]), &args[3..]),
            _ => return Err(bad("wrong number of arguments", line)),
        };
        let total = parse_usize(sizes[sizes.len() - 1], line)?;
        let hsize = if headers {
            let h = parse_usize(sizes[0], line)?;
            if h > total {
                return Err(bad("header size exceeds total size", line));
            }
            h
        } else {
            0
        };
        let end = after_line + total;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        let tail = &buf[end..end + 2];
        let used = if tail == b"\r\n" {
            end + 2
        } else if tail[0] == b'\n' {
            end + 1
        } else {
            return Err(bad("payload not followed by CRLF", line));
        };
        let body = &buf[after_line..end];
        let op = if headers {
            ServerOp::HMsg {
                subject,
                sid,
                reply,
                headers: &body[..hsize],
                payload: &body[hsize..],
            }
        } else {
            ServerOp::Msg {
                subject,
                sid,
                reply,
                payload: body,
            }
        };
        return Ok(Some((op, used)));
    }
    let op = if op.eq_ignore_ascii_case(b"PING") {
        ServerOp::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        ServerOp::Pong
    } else if op.eq_ignore_ascii_case(b"+OK") {
        ServerOp::Ok
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        let msg = text(rest, line)?.trim();
        let msg = msg
            .strip_prefix('\'')
            .and_then(|m| m.strip_suffix('\''))
            .unwrap_or(msg);
        ServerOp::Err(msg)
    } else if op.eq_ignore_ascii_case(b"INFO") {
        ServerOp::Info(text(rest, line)?.trim())
    } else {
        return Err(bad("unknown operation", line));
    };
    Ok(Some((op, after_line)))
}

/// `CONNECT {...}\r\nPING\r\n`: the PONG answer confirms the connection.
pub fn put_connect(out: &mut Vec<u8>, name: &str) {
    let opts = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "tls_required": false,
        "name": name,
        "lang": "rust",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "echo": false,
        "headers": false,
    });
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(opts.to_string().as_bytes());
    out.extend_from_slice(b"\r\nPING\r\n");
}

/// `SUB subject sid\r\nPING\r\n`: the PONG answer confirms the subscription.
pub fn put_sub(out: &mut Vec<u8>, subject: &str, sid: u32) {
    out.extend_from_slice(format!("SUB {subject} {sid}\r\nPING\r\n").as_bytes());
}

/// Size of one encoded `PUB`.
pub fn pub_len(subject: &str, payload_len: usize) -> usize {
    4 + subject.len() + 1 + payload_len.to_string().len() + 2 + payload_len + 2
}

/// Appends `PUB subject size\r\npayload\r\n`.
pub fn put_pub(out: &mut Vec<u8>, subject: &str, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Digits of the message id that ends a `--js` reply subject (ids are u16,
/// zero-padded so that every message of a pre-encoded batch has one size
/// and its id can be patched in place, as MQTT's packet id).
pub const REPLY_ID_DIGITS: usize = 5;

/// Size of one encoded `PUB subject reply size` whose reply is
/// `reply_prefix` followed by [`REPLY_ID_DIGITS`] digits.
pub fn pub_with_reply_len(subject: &str, reply_prefix: &str, payload_len: usize) -> usize {
    pub_len(subject, payload_len) + 1 + reply_prefix.len() + REPLY_ID_DIGITS
}

/// Appends `PUB subject {reply_prefix}00000 size\r\npayload\r\n`; returns
/// the offset of the id digits within `out` (see [`put_reply_id`]).
pub fn put_pub_with_reply(
    out: &mut Vec<u8>,
    subject: &str,
    reply_prefix: &str,
    payload: &[u8],
) -> usize {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(reply_prefix.as_bytes());
    let id_at = out.len();
    out.extend_from_slice(&[b'0'; REPLY_ID_DIGITS]);
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    id_at
}

/// Writes `id` as the [`REPLY_ID_DIGITS`] digits at the start of `digits`.
pub fn put_reply_id(digits: &mut [u8], mut id: u16) {
    for d in digits[..REPLY_ID_DIGITS].iter_mut().rev() {
        *d = b'0' + (id % 10) as u8;
        id /= 10;
    }
}

/// The id at the end of a reply subject made by [`put_pub_with_reply`].
pub fn reply_id(subject: &str) -> Option<u16> {
    let digits = subject.get(subject.len().checked_sub(REPLY_ID_DIGITS)?..)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> (ServerOp<'_>, usize) {
        parse(buf).unwrap().unwrap()
    }

    #[test]
    fn simple_operations() {
        assert_eq!(one(b"PING\r\n"), (ServerOp::Ping, 6));
        assert_eq!(one(b"pong\r\nPING"), (ServerOp::Pong, 6));
        assert_eq!(one(b"+OK\r\n"), (ServerOp::Ok, 5));
        assert_eq!(one(b"PING\n"), (ServerOp::Ping, 5));
        assert_eq!(
            one(b"-ERR 'Slow Consumer'\r\n"),
            (ServerOp::Err("Slow Consumer"), 22)
        );
        let info = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n";
        assert_eq!(
            one(info),
            (
                ServerOp::Info("{\"server_id\":\"x\",\"max_payload\":1048576}"),
                info.len()
            )
        );
    }

    #[test]
    fn msg_with_and_without_reply() {
        let buf = b"MSG a.b 7 5\r\nhello\r\nPING\r\n";
        let (op, used) = one(buf);
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "a.b",
                sid: "7",
                reply: None,
                payload: b"hello"
            }
        );
        assert_eq!(used, 20);
        assert_eq!(one(&buf[used..]).0, ServerOp::Ping);

        let (op, used) = one(b"MSG a.b 1 _INBOX.x 0\r\n\r\n");
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "a.b",
                sid: "1",
                reply: Some("_INBOX.x"),
                payload: b""
            }
        );
        assert_eq!(used, 24);
        // The payload may contain CR LF itself.
        let (op, _) = one(b"MSG s 1 4\r\n\r\n\r\n\r\n");
        assert!(matches!(op, ServerOp::Msg { payload, .. } if payload == b"\r\n\r\n"));
    }

    #[test]
    fn hmsg_splits_headers_from_payload() {
        let hdr = b"NATS/1.0\r\nA: b\r\n\r\n";
        let mut buf = format!("HMSG s 2 r {} {}\r\n", hdr.len(), hdr.len() + 3).into_bytes();
        buf.extend_from_slice(hdr);
        buf.extend_from_slice(b"xyz\r\n");
        let (op, used) = one(&buf);
        assert_eq!(used, buf.len());
        assert_eq!(
            op,
            ServerOp::HMsg {
                subject: "s",
                sid: "2",
                reply: Some("r"),
                headers: hdr,
                payload: b"xyz"
            }
        );
        assert!(parse(b"HMSG s 2 10 5\r\n0123456789\r\n").is_err());
    }

    #[test]
    fn every_prefix_needs_more_bytes() {
        let buf = b"MSG subject.x 12 reply 10\r\n0123456789\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse(&buf[..cut]), Ok(None), "prefix {cut}");
        }
        assert_eq!(one(buf).1, buf.len());
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(parse(b"BOGUS\r\n").is_err());
        assert!(parse(b"MSG a\r\n").is_err());
        assert!(parse(b"MSG a 1 x\r\n").is_err());
        assert!(parse(b"MSG a 1 -1\r\n").is_err());
        assert!(parse(b"MSG a 1 2\r\nabXY").is_err());
        assert!(parse(&vec![b'I'; CONTROL_LINE_MAX + 1]).is_err());
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        put_pub(&mut out, "a.b", b"hello");
        assert_eq!(out, b"PUB a.b 5\r\nhello\r\n");
        assert_eq!(pub_len("a.b", 5), out.len());
        assert_eq!(pub_len("a.b", 1234), {
            let mut o = Vec::new();
            put_pub(&mut o, "a.b", &[0; 1234]);
            o.len()
        });
        out.clear();
        put_sub(&mut out, "a.>", 1);
        assert_eq!(out, b"SUB a.> 1\r\nPING\r\n");
        out.clear();
        put_connect(&mut out, "n");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("CONNECT {") && text.ends_with("}\r\nPING\r\n"));
        assert!(text.contains("\"verbose\":false"));
    }

    #[test]
    fn reply_ids_round_trip_through_the_encoded_publish() {
        let mut out = Vec::new();
        let at = put_pub_with_reply(&mut out, "a.b", "_INBOX.x.", b"hi");
        assert_eq!(out, b"PUB a.b _INBOX.x.00000 2\r\nhi\r\n");
        assert_eq!(pub_with_reply_len("a.b", "_INBOX.x.", 2), out.len());
        for id in [1u16, 42, 9999, 10_000, u16::MAX] {
            put_reply_id(&mut out[at..], id);
            let text = std::str::from_utf8(&out).unwrap();
            assert_eq!(text.len(), pub_with_reply_len("a.b", "_INBOX.x.", 2));
            let reply = text.split_ascii_whitespace().nth(2).unwrap();
            assert_eq!(reply_id(reply), Some(id), "{text:?}");
        }
        assert_eq!(reply_id("_INBOX.x.0012a"), None);
        assert_eq!(reply_id("1234"), None, "too short");
        assert_eq!(reply_id("_INBOX.x.99999"), None, "beyond u16");
    }
}
