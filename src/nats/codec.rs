//! Sans-IO NATS client protocol codec: client operations in, server
//! operations out.
//!
//! `decode` borrows from the caller's buffer. The control line is capped at
//! `control_line_bytes_max` before its end is even found, and a PUB/HPUB
//! whose announced size exceeds `payload_bytes_max` is refused from its
//! control line, before the payload is buffered (as nats-server's parser
//! does). Operation names are case-insensitive; lines end in CRLF (a bare
//! LF is accepted, as nats-server does).

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NatsError {
    #[error("Unknown Protocol Operation")]
    UnknownOperation,
    #[error("Maximum Control Line Exceeded")]
    ControlLineTooLong,
    #[error("Maximum Payload Violation")]
    MaxPayload,
    #[error("invalid arguments for {0}")]
    BadArguments(&'static str),
    #[error("payload not followed by CRLF")]
    BadTerminator,
}

impl NatsError {
    /// The text of the `-ERR '...'` line real clients expect.
    pub fn client_message(&self) -> &'static str {
        match self {
            NatsError::UnknownOperation => "Unknown Protocol Operation",
            NatsError::ControlLineTooLong => "Maximum Control Line Exceeded",
            NatsError::MaxPayload => "Maximum Payload Violation",
            NatsError::BadArguments(_) | NatsError::BadTerminator => "Protocol Error",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct NatsLimits {
    pub control_line_bytes_max: usize,
    pub payload_bytes_max: usize,
}

impl Default for NatsLimits {
    fn default() -> Self {
        NatsLimits {
            control_line_bytes_max: 4096,
            payload_bytes_max: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// The JSON options object.
    Connect(&'a str),
    Pub {
        subject: &'a str,
        reply: Option<&'a str>,
        /// The header block of HPUB (`NATS/1.0...\r\n\r\n`), None for PUB.
        headers: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    Sub {
        subject: &'a str,
        queue: Option<&'a str>,
        sid: &'a str,
    },
    Unsub {
        sid: &'a str,
        max: Option<u64>,
    },
    Ping,
    Pong,
}

fn parse_size(s: &str, op: &'static str) -> Result<usize, NatsError> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NatsError::BadArguments(op));
    }
    s.parse().map_err(|_| NatsError::BadArguments(op))
}

/// Decodes one client operation from the front of `buf`: `Ok(None)` means
/// more bytes are needed.
pub fn decode<'a>(
    buf: &'a [u8],
    limits: &NatsLimits,
) -> Result<Option<(ClientOp<'a>, usize)>, NatsError> {
    let window = &buf[..buf.len().min(limits.control_line_bytes_max + 2)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        // Reject an unknown operation as soon as its name is complete: at a
        // blank, or at a CR (`CONNECT\r` may be followed by its LF), and
        // before the line length, so that the error does not depend on how
        // the bytes were split into reads.
        if let Some(end) = buf.iter().position(|&b| matches!(b, b' ' | b'\t' | b'\r')) {
            known_op(&buf[..end])?;
        } else if buf.len() > 7 {
            return Err(NatsError::UnknownOperation);
        }
        if buf.len() > limits.control_line_bytes_max + 1 {
            return Err(NatsError::ControlLineTooLong);
        }
        return Ok(None);
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let after_line = nl + 1;
    // Byte searches, not char patterns: this runs for every PUB.
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let name_end = buf[..line_end]
        .iter()
        .position(is_blank)
        .unwrap_or(line_end);
    // The name first, as before the line is complete (above).
    let op = known_op(&buf[..name_end])?;
    if matches!(op, Op::Pub | Op::HPub) && buf[..line_end].is_ascii() {
        // The hot path: the usual PUB line is ASCII, so it is split and
        // its sizes read as bytes, the same rules as below (which every
        // other line takes), no string handling per PUB.
        return decode_pub(buf, op, name_end, line_end, after_line, limits);
    }
    let line =
        std::str::from_utf8(&buf[..line_end]).map_err(|_| NatsError::BadArguments("line"))?;
    let rest = line[name_end..].trim_start();
    let mut arg_vec: smallvec::SmallVec<[&str; 4]> = smallvec::SmallVec::new();
    if op != Op::Connect {
        let mut rest = rest;
        while !rest.is_empty() {
            let end = rest
                .as_bytes()
                .iter()
                .position(is_blank)
                .unwrap_or(rest.len());
            if arg_vec.len() == 4 {
                return Err(NatsError::BadArguments(op.name()));
            }
            arg_vec.push(&rest[..end]);
            rest = rest[end..].trim_start_matches([' ', '\t']);
        }
    }
    let done = |op: ClientOp<'a>| Ok(Some((op, after_line)));
    match op {
        Op::Connect => done(ClientOp::Connect(rest)),
        Op::Ping => done(ClientOp::Ping),
        Op::Pong => done(ClientOp::Pong),
        Op::Sub => match arg_vec.as_slice() {
            [subject, sid] => done(ClientOp::Sub {
                subject,
                queue: None,
                sid,
            }),
            [subject, queue, sid] => done(ClientOp::Sub {
                subject,
                queue: Some(queue),
                sid,
            }),
            _ => Err(NatsError::BadArguments("SUB")),
        },
        Op::Unsub => match arg_vec.as_slice() {
            [sid] => done(ClientOp::Unsub { sid, max: None }),
            [sid, max] => done(ClientOp::Unsub {
                sid,
                max: Some(parse_size(max, "UNSUB")? as u64),
            }),
            _ => Err(NatsError::BadArguments("UNSUB")),
        },
        Op::Pub | Op::HPub => {
            let (subject, reply, header_len, total) = match (op, arg_vec.as_slice()) {
                (Op::Pub, [s, n]) => (*s, None, 0, parse_size(n, "PUB")?),
                (Op::Pub, [s, r, n]) => (*s, Some(*r), 0, parse_size(n, "PUB")?),
                (Op::HPub, [s, h, n]) => (*s, None, parse_size(h, "HPUB")?, parse_size(n, "HPUB")?),
                (Op::HPub, [s, r, h, n]) => {
                    (*s, Some(*r), parse_size(h, "HPUB")?, parse_size(n, "HPUB")?)
                }
                _ => return Err(NatsError::BadArguments(op.name())),
            };
            pub_body(
                buf, op, subject, reply, header_len, total, after_line, limits,
            )
        }
    }
}

/// PUB/HPUB from an ASCII control line (`decode`'s hot path): the
/// arguments split on blanks as bytes (the first ones skipped as
/// `str::trim_start` does for ASCII, the others as `decode` does), the
/// sizes read in one loop; then the body as for any PUB.
#[inline]
fn decode_pub<'a>(
    buf: &'a [u8],
    op: Op,
    name_end: usize,
    line_end: usize,
    after_line: usize,
    limits: &NatsLimits,
) -> Result<Option<(ClientOp<'a>, usize)>, NatsError> {
    let line = &buf[..line_end];
    let mut at = name_end;
    while at < line_end && matches!(line[at], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        at += 1;
    }
    let mut args: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    while at < line_end {
        let start = at;
        while at < line_end && !matches!(line[at], b' ' | b'\t') {
            at += 1;
        }
        if n == args.len() {
            return Err(NatsError::BadArguments(op.name()));
        }
        args[n] = &line[start..at];
        n += 1;
        while at < line_end && matches!(line[at], b' ' | b'\t') {
            at += 1;
        }
    }
    // SAFETY: the line is ASCII (checked by the caller), so is every
    // slice of it.
    let text = |b: &'a [u8]| unsafe { std::str::from_utf8_unchecked(b) };
    let name = op.name();
    let (subject, reply, header_len, total) = match (op, n) {
        (Op::Pub, 2) => (args[0], None, 0, size(args[1], name)?),
        (Op::Pub, 3) => (args[0], Some(args[1]), 0, size(args[2], name)?),
        (Op::HPub, 3) => (args[0], None, size(args[1], name)?, size(args[2], name)?),
        (Op::HPub, 4) => (
            args[0],
            Some(args[1]),
            size(args[2], name)?,
            size(args[3], name)?,
        ),
        _ => return Err(NatsError::BadArguments(name)),
    };
    let reply = reply.map(text);
    pub_body(
        buf,
        op,
        text(subject),
        reply,
        header_len,
        total,
        after_line,
        limits,
    )
}

/// `parse_size` on bytes: 1 to 12 ASCII digits.
#[inline]
fn size(s: &[u8], op: &'static str) -> Result<usize, NatsError> {
    if s.is_empty() || s.len() > 12 {
        return Err(NatsError::BadArguments(op));
    }
    let mut n = 0usize;
    for &b in s {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(NatsError::BadArguments(op));
        }
        n = n * 10 + usize::from(digit);
    }
    Ok(n)
}

/// A PUB/HPUB's body once its control line is read: the payload (and
/// header block), its CRLF, or "need more".
#[allow(clippy::too_many_arguments)]
#[inline]
fn pub_body<'a>(
    buf: &'a [u8],
    op: Op,
    subject: &'a str,
    reply: Option<&'a str>,
    header_len: usize,
    total: usize,
    after_line: usize,
    limits: &NatsLimits,
) -> Result<Option<(ClientOp<'a>, usize)>, NatsError> {
    if total > limits.payload_bytes_max {
        return Err(NatsError::MaxPayload);
    }
    if header_len > total {
        return Err(NatsError::BadArguments("HPUB"));
    }
    let end = after_line + total;
    // Payload plus its CRLF (a bare LF is tolerated).
    if buf.len() < end + 1 {
        return Ok(None);
    }
    let consumed = match buf[end] {
        b'\n' => end + 1,
        b'\r' => {
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if buf[end + 1] != b'\n' {
                return Err(NatsError::BadTerminator);
            }
            end + 2
        }
        _ => return Err(NatsError::BadTerminator),
    };
    let block = &buf[after_line..end];
    let (headers, payload) = if op == Op::HPub {
        (Some(&block[..header_len]), &block[header_len..])
    } else {
        (None, block)
    };
    Ok(Some((
        ClientOp::Pub {
            subject,
            reply,
            headers,
            payload,
        },
        consumed,
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Connect,
    Pub,
    HPub,
    Sub,
    Unsub,
    Ping,
    Pong,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Connect => "CONNECT",
            Op::Pub => "PUB",
            Op::HPub => "HPUB",
            Op::Sub => "SUB",
            Op::Unsub => "UNSUB",
            Op::Ping => "PING",
            Op::Pong => "PONG",
        }
    }
}

fn known_op(name: &[u8]) -> Result<Op, NatsError> {
    let mut upper = [0u8; 8];
    if name.len() > upper.len() {
        return Err(NatsError::UnknownOperation);
    }
    for (u, b) in upper.iter_mut().zip(name) {
        *u = b.to_ascii_uppercase();
    }
    Ok(match &upper[..name.len()] {
        b"CONNECT" => Op::Connect,
        b"PUB" => Op::Pub,
        b"HPUB" => Op::HPub,
        b"SUB" => Op::Sub,
        b"UNSUB" => Op::Unsub,
        b"PING" => Op::Ping,
        b"PONG" => Op::Pong,
        _ => return Err(NatsError::UnknownOperation),
    })
}

// ------------------------------------------------------------ server side

pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";
pub const OK: &[u8] = b"+OK\r\n";

pub fn err_line(message: &str) -> Vec<u8> {
    format!("-ERR '{message}'\r\n").into_bytes()
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

pub use crate::event::header_fields;

/// Appends `n` in decimal (no formatting machinery: once per MSG).
fn put_decimal(out: &mut Vec<u8>, n: usize) {
    // Most payloads take one to three digits: no loop for them.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    out.extend_from_slice(decimal(&mut [0u8; 20], n));
}

/// `n` in decimal, written at the end of `digits` (the slice returned).
#[inline]
pub(crate) fn decimal(digits: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Size of a MSG/HMSG whose subject is `subject_len` bytes long.
pub fn msg_len(
    subject_len: usize,
    sid: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload_len: usize,
) -> usize {
    let reply_len = reply.map_or(0, |r| r.len() + 1);
    let body = payload_len + headers.map_or(0, <[u8]>::len);
    let sizes = match headers {
        Some(h) => 5 + digits(h.len()) + 1 + digits(body),
        None => 4 + digits(body),
    };
    sizes + subject_len + 1 + sid.len() + 1 + reply_len + 2 + body + 2
}

/// Appends `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n` (or HMSG
/// when there are headers). `write_subject` appends the subject.
pub fn put_msg(
    out: &mut Vec<u8>,
    write_subject: impl FnOnce(&mut Vec<u8>),
    sid: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    out.extend_from_slice(if headers.is_some() { b"HMSG " } else { b"MSG " });
    write_subject(out);
    out.push(b' ');
    out.extend_from_slice(sid.as_bytes());
    out.push(b' ');
    if let Some(r) = reply {
        out.extend_from_slice(r.as_bytes());
        out.push(b' ');
    }
    let body = payload.len() + headers.map_or(0, <[u8]>::len);
    match headers {
        Some(h) => {
            put_decimal(out, h.len());
            out.push(b' ');
            put_decimal(out, body);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(h);
        }
        None => {
            put_decimal(out, body);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: NatsLimits = NatsLimits {
        control_line_bytes_max: 64,
        payload_bytes_max: 16,
    };

    fn one(bytes: &[u8]) -> ClientOp<'_> {
        let (op, used) = decode(bytes, &L).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "consumed all of {bytes:?}");
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut], &L),
                Ok(None),
                "prefix {cut} of {bytes:?}"
            );
        }
        op
    }

    #[test]
    fn operations() {
        assert_eq!(one(b"PING\r\n"), ClientOp::Ping);
        assert_eq!(one(b"pong\r\n"), ClientOp::Pong);
        assert_eq!(
            one(b"CONNECT {\"verbose\":false}\r\n"),
            ClientOp::Connect("{\"verbose\":false}")
        );
        assert_eq!(
            one(b"PUB a.b 5\r\nhello\r\n"),
            ClientOp::Pub {
                subject: "a.b",
                reply: None,
                headers: None,
                payload: b"hello"
            }
        );
        assert_eq!(
            one(b"PUB a.b _INBOX.1 0\r\n\r\n"),
            ClientOp::Pub {
                subject: "a.b",
                reply: Some("_INBOX.1"),
                headers: None,
                payload: b""
            }
        );
        assert_eq!(
            one(b"HPUB a r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
            ClientOp::Pub {
                subject: "a",
                reply: Some("r"),
                headers: Some(b"NATS/1.0\r\n\r\n"),
                payload: b"hi"
            }
        );
        assert_eq!(
            one(b"SUB a.* 1\r\n"),
            ClientOp::Sub {
                subject: "a.*",
                queue: None,
                sid: "1"
            }
        );
        assert_eq!(
            one(b"SUB a q 2\r\n"),
            ClientOp::Sub {
                subject: "a",
                queue: Some("q"),
                sid: "2"
            }
        );
        assert_eq!(
            one(b"UNSUB 2 5\r\n"),
            ClientOp::Unsub {
                sid: "2",
                max: Some(5)
            }
        );
        assert_eq!(
            one(b"UNSUB 2\n"),
            ClientOp::Unsub {
                sid: "2",
                max: None
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b"FOO bar\r\n", &L), Err(NatsError::UnknownOperation));
        assert_eq!(decode(b"GARBAGE!", &L), Err(NatsError::UnknownOperation));
        assert_eq!(decode(b"PUB a 17\r\n", &L), Err(NatsError::MaxPayload));
        assert_eq!(
            decode(b"PUB a x\r\n", &L),
            Err(NatsError::BadArguments("PUB"))
        );
        assert_eq!(
            decode(b"SUB a\r\n", &L),
            Err(NatsError::BadArguments("SUB"))
        );
        assert_eq!(
            decode(b"PUB a 2\r\nabX\n", &L),
            Err(NatsError::BadTerminator)
        );
        assert_eq!(
            decode(b"HPUB a 5 2\r\n", &L),
            Err(NatsError::BadArguments("HPUB"))
        );
        let long = [b"SUB ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(decode(&long, &L), Err(NatsError::ControlLineTooLong));
    }

    /// Found by the nats_decode fuzz target: a prefix of an operation must
    /// be "need more" or decide as the whole does. `CONNECT\r` (8 bytes,
    /// no blank yet) was refused as unknown though `CONNECT\r\n` is an
    /// operation; a long line with an unknown name was "control line too
    /// long" when it came in one read and "unknown operation" in two.
    #[test]
    fn a_prefix_decides_as_the_whole() {
        assert_eq!(decode(b"CONNECT\r", &L), Ok(None));
        assert_eq!(
            decode(b"CONNECT\r\n", &L),
            Ok(Some((ClientOp::Connect(""), 9)))
        );
        let long = [b"FOO ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(decode(&long[..10], &L), Err(NatsError::UnknownOperation));
        assert_eq!(decode(&long, &L), Err(NatsError::UnknownOperation));
        // Found by the fuzzer: an unknown name is refused before the line
        // is checked for UTF-8, complete or not.
        let bad = b"SUB\xff\xff\xff\xff\xff\xff\x07\r\n";
        assert_eq!(decode(&bad[..8], &L), Err(NatsError::UnknownOperation));
        assert_eq!(decode(bad, &L), Err(NatsError::UnknownOperation));
        assert_eq!(
            decode(b"PUB \xff 1\r\nx\r\n", &L),
            Err(NatsError::BadArguments("line"))
        );
    }

    /// The ASCII PUB/HPUB line takes `decode_pub`; its rules are the
    /// general path's (which a non-ASCII line takes): blanks, the leading
    /// whitespace `trim_start` skips, argument counts, sizes.
    #[test]
    fn pub_fast_path_keeps_the_rules() {
        let pub_ = |subject, reply, payload| ClientOp::Pub {
            subject,
            reply,
            headers: None,
            payload,
        };
        type Decoded<'a> = Result<Option<(ClientOp<'a>, usize)>, NatsError>;
        let cases: [(&[u8], Decoded<'_>); 12] = [
            (b"PUB a 1\r\nx\r\n", Ok(Some((pub_("a", None, b"x"), 12)))),
            (
                b"pub  a\t r  2\r\nxy\r\n",
                Ok(Some((pub_("a", Some("r"), b"xy"), 18))),
            ),
            (
                b"PUB \x0b\x0ca 1\r\nx\r\n",
                Ok(Some((pub_("a", None, b"x"), 14))),
            ),
            (b"PUB a 1 \r\nx\r\n", Ok(Some((pub_("a", None, b"x"), 13)))),
            (b"PUB a 1\r\nx", Ok(None)),
            (b"PUB a 1\r\nx\r", Ok(None)),
            (b"PUB a b c 1\r\n", Err(NatsError::BadArguments("PUB"))),
            (b"PUB a 1 2 3 4\r\n", Err(NatsError::BadArguments("PUB"))),
            (b"PUB a 1x\r\n", Err(NatsError::BadArguments("PUB"))),
            (
                b"PUB a 0000000000001\r\n",
                Err(NatsError::BadArguments("PUB")),
            ),
            (b"HPUB a 3 2\r\n", Err(NatsError::BadArguments("HPUB"))),
            (b"PUB a\r\n", Err(NatsError::BadArguments("PUB"))),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                decode(bytes, &L),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let h = decode(b"HPUB a r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", &L);
        assert_eq!(
            h,
            Ok(Some((
                ClientOp::Pub {
                    subject: "a",
                    reply: Some("r"),
                    headers: Some(b"NATS/1.0\r\n\r\n"),
                    payload: b"hi",
                },
                32
            )))
        );
        // A non-ASCII subject takes the general path, as before.
        assert_eq!(
            decode("PUB é 1\r\nx\r\n".as_bytes(), &L),
            Ok(Some((pub_("é", None, b"x"), 13)))
        );
    }

    #[test]
    fn decimals() {
        for n in [0, 9, 10, 64, 99, 100, 999, 1000, 12345, usize::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(out.len(), digits(n));
        }
    }

    #[test]
    fn msg_framing() {
        for (reply, headers) in [
            (None, None),
            (Some("r.1"), None),
            (Some("r"), Some(&b"NATS/1.0\r\n\r\n"[..])),
        ] {
            let mut out = Vec::new();
            put_msg(
                &mut out,
                |o| o.extend_from_slice(b"a.b"),
                "12",
                reply,
                headers,
                b"hello",
            );
            assert_eq!(out.len(), msg_len(3, "12", reply, headers, 5));
        }
        let mut out = Vec::new();
        put_msg(
            &mut out,
            |o| o.extend_from_slice(b"a.b"),
            "1",
            Some("r"),
            None,
            b"hi",
        );
        assert_eq!(out, b"MSG a.b 1 r 2\r\nhi\r\n");
        out.clear();
        put_msg(
            &mut out,
            |o| o.extend_from_slice(b"x"),
            "1",
            None,
            Some(b"NATS/1.0 503\r\n\r\n"),
            b"",
        );
        assert_eq!(out, b"HMSG x 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
    }
}
