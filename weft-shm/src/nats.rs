//! The NATS client protocol, the little the client speaks: CONNECT, PUB,
//! SUB, UNSUB, PING, PONG out; INFO, MSG, HMSG, PING, PONG, +OK, -ERR in.
//!
//! Owns: bytes <-> operations, sans IO. Bounds: a control line is at most
//! [`CONTROL_LINE_BYTES_MAX`], a payload at most [`PAYLOAD_BYTES_MAX`];
//! more is [`DecodeError`]. Hand-written because the crate may depend
//! on nothing but nix and libc (a NATS crate would bring
//! an async runtime).

/// The longest control line accepted (INFO included).
pub const CONTROL_LINE_BYTES_MAX: usize = 64 << 10;
/// The largest payload accepted.
pub const PAYLOAD_BYTES_MAX: usize = 64 << 20;

/// What the router sends.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerOp<'a> {
    Info,
    Msg {
        subject: &'a str,
        sid: u64,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Ok,
    Err(&'a str),
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

pub fn connect(out: &mut Vec<u8>, name: &str, user: Option<&str>, pass: Option<&str>) {
    out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"lang\":\"weft-shm\",\"version\":\"0.1.0\",\"protocol\":1,\"name\":");
    json_str(out, name);
    if let Some(user) = user {
        out.extend_from_slice(b",\"user\":");
        json_str(out, user);
    }
    if let Some(pass) = pass {
        out.extend_from_slice(b",\"pass\":");
        json_str(out, pass);
    }
    out.extend_from_slice(b"}\r\n");
}

/// Appends `PUB subject len\r\npayload\r\n`.
pub fn publish(out: &mut Vec<u8>, subject: &str, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

pub fn subscribe(out: &mut Vec<u8>, subject: &str, sid: u64) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
}

pub fn unsubscribe(out: &mut Vec<u8>, sid: u64) {
    out.extend_from_slice(b"UNSUB ");
    push_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
}

pub fn ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

pub fn pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A subject or filter the client may send: non-empty, no whitespace.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() || subject.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(format!("invalid NATS subject {subject:?}"));
    }
    Ok(())
}

fn parse_u64(s: &str) -> Result<u64, DecodeError> {
    s.parse()
        .map_err(|_| DecodeError(format!("bad number {s:?}")))
}

/// Decodes one operation from the front of `buf`: `Ok(None)` needs more
/// bytes; `Ok(Some((op, used)))`.
pub fn decode(buf: &[u8]) -> Result<Option<(ServerOp<'_>, usize)>, DecodeError> {
    let Some(eol) = buf.iter().position(|b| *b == b'\n') else {
        if buf.len() > CONTROL_LINE_BYTES_MAX {
            return Err(DecodeError("control line too long".into()));
        }
        return Ok(None);
    };
    if eol > CONTROL_LINE_BYTES_MAX {
        return Err(DecodeError("control line too long".into()));
    }
    let line = &buf[..eol];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line =
        std::str::from_utf8(line).map_err(|_| DecodeError("control line is not UTF-8".into()))?;
    let after = eol + 1;
    let (verb, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let op = match verb.to_ascii_uppercase().as_str() {
        "INFO" => ServerOp::Info,
        "PING" => ServerOp::Ping,
        "PONG" => ServerOp::Pong,
        "+OK" => ServerOp::Ok,
        "-ERR" => ServerOp::Err(rest.trim().trim_matches('\'')),
        "MSG" | "HMSG" => {
            let args: Vec<&str> = rest.split_ascii_whitespace().collect();
            let headers = verb.eq_ignore_ascii_case("HMSG");
            // MSG subject sid [reply] len; HMSG subject sid [reply] hlen len
            let (subject, sid, hlen, len) = match (headers, args.as_slice()) {
                (false, [s, sid, len]) | (false, [s, sid, _, len]) => (*s, *sid, "0", *len),
                (true, [s, sid, h, len]) | (true, [s, sid, _, h, len]) => (*s, *sid, *h, *len),
                _ => return Err(DecodeError(format!("bad {verb} line {line:?}"))),
            };
            let sid = parse_u64(sid)?;
            let hlen = parse_u64(hlen)? as usize;
            let len = parse_u64(len)? as usize;
            if len > PAYLOAD_BYTES_MAX || hlen > len {
                return Err(DecodeError(format!("bad {verb} sizes {hlen}/{len}")));
            }
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err(DecodeError("payload not followed by CRLF".into()));
            }
            let payload = &buf[after + hlen..after + len];
            return Ok(Some((
                ServerOp::Msg {
                    subject,
                    sid,
                    payload,
                },
                after + len + 2,
            )));
        }
        _ => return Err(DecodeError(format!("unknown operation {verb:?}"))),
    };
    Ok(Some((op, after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_client_operations() {
        let mut out = Vec::new();
        publish(&mut out, "a.b", b"hi");
        subscribe(&mut out, "a.*", 7);
        unsubscribe(&mut out, 7);
        ping(&mut out);
        assert_eq!(out, b"PUB a.b 2\r\nhi\r\nSUB a.* 7\r\nUNSUB 7\r\nPING\r\n");
        out.clear();
        connect(&mut out, "c\"1", Some("u"), None);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("CONNECT {") && s.ends_with("}\r\n"), "{s}");
        assert!(
            s.contains("\"name\":\"c\\\"1\"")
                && s.contains("\"user\":\"u\"")
                && !s.contains("pass")
        );
    }

    #[test]
    fn decodes_server_operations_in_pieces() {
        let stream = b"INFO {\"server_id\":\"x\"}\r\nMSG a.b 3 5\r\nhello\r\nMSG a.c 4 r.1 0\r\n\r\nHMSG h 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n+OK\r\n-ERR 'Permissions Violation'\r\n";
        let mut ops = Vec::new();
        let mut at = 0;
        // Fed a byte at a time, it waits for more, never fails.
        let mut end = 0;
        while at < stream.len() {
            end = (end + 1).min(stream.len());
            match decode(&stream[at..end]).unwrap() {
                None => continue,
                Some((op, used)) => {
                    ops.push(format!("{op:?}"));
                    at += used;
                }
            }
        }
        assert_eq!(
            ops,
            [
                "Info",
                "Msg { subject: \"a.b\", sid: 3, payload: [104, 101, 108, 108, 111] }",
                "Msg { subject: \"a.c\", sid: 4, payload: [] }",
                "Msg { subject: \"h\", sid: 1, payload: [104, 105] }",
                "Ping",
                "Ok",
                "Err(\"Permissions Violation\")",
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"BOGUS\r\n").is_err());
        assert!(decode(b"MSG a 1 x\r\n").is_err());
        assert!(decode(b"MSG a 1 2\r\nhiXX").is_err());
        assert!(decode(format!("MSG a 1 {}\r\n", PAYLOAD_BYTES_MAX + 1).as_bytes()).is_err());
        assert!(decode(&vec![b'A'; CONTROL_LINE_BYTES_MAX + 1]).is_err());
        assert!(
            check_subject("a b").is_err()
                && check_subject("").is_err()
                && check_subject("a.>").is_ok()
        );
    }
}
