//! NATS client-protocol decoder, `weft::nats::codec`.
//!
//! Properties: the decoder contract (see the crate comment) with the
//! control-line and payload caps small enough to reach; a decoded operation
//! written back in its plain form (one space between arguments, CRLF)
//! decodes to the same operation. weft has no encoder for client
//! operations (it only reads them), so the plain form is written here;
//! byte equality with the input is not expected, as NATS allows runs of
//! blanks, a bare LF and any case in operation names.

use weft::nats::codec::{decode, ClientOp, NatsLimits};

const LIMITS: NatsLimits = NatsLimits {
    control_line_bytes_max: 256,
    payload_bytes_max: 1024,
};

/// The plain form may be longer than a bare-LF input.
const LOOSE: NatsLimits = NatsLimits {
    control_line_bytes_max: 1 << 16,
    payload_bytes_max: 1 << 20,
};

/// The plain wire form of a client operation.
pub fn write(op: &ClientOp<'_>, out: &mut Vec<u8>) {
    let mut line = |parts: &[&[u8]]| {
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(part);
        }
        out.extend_from_slice(b"\r\n");
    };
    match op {
        ClientOp::Connect(options) => line(&[b"CONNECT", options.as_bytes()]),
        ClientOp::Ping => line(&[b"PING"]),
        ClientOp::Pong => line(&[b"PONG"]),
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => match queue {
            Some(q) => line(&[b"SUB", subject.as_bytes(), q.as_bytes(), sid.as_bytes()]),
            None => line(&[b"SUB", subject.as_bytes(), sid.as_bytes()]),
        },
        ClientOp::Unsub { sid, max } => match max {
            Some(max) => line(&[b"UNSUB", sid.as_bytes(), max.to_string().as_bytes()]),
            None => line(&[b"UNSUB", sid.as_bytes()]),
        },
        ClientOp::Pub {
            subject,
            reply,
            headers,
            payload,
        } => {
            let header_len = headers.map_or(0, <[u8]>::len);
            let total = (header_len + payload.len()).to_string();
            let header_len = header_len.to_string();
            let mut parts: Vec<&[u8]> = vec![if headers.is_some() { b"HPUB" } else { b"PUB" }];
            parts.push(subject.as_bytes());
            if let Some(r) = reply {
                parts.push(r.as_bytes());
            }
            if headers.is_some() {
                parts.push(header_len.as_bytes());
            }
            parts.push(total.as_bytes());
            line(&parts);
            out.extend_from_slice(headers.unwrap_or_default());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
    }
}

pub fn check(data: &[u8]) {
    let Ok(Some((op, _))) = crate::decoder_contract(data, |b| decode(b, &LIMITS)) else {
        return;
    };
    let mut plain = Vec::new();
    write(&op, &mut plain);
    assert_eq!(
        decode(&plain, &LOOSE),
        Ok(Some((op.clone(), plain.len()))),
        "{op:?} written as {:?}",
        String::from_utf8_lossy(&plain)
    );
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [
        &b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n"[..],
        b"PUB a.b 5\r\nhello\r\n",
        b"PUB a.b _INBOX.x1 0\r\n\r\n",
        b"HPUB a.b reply 18 23\r\nNATS/1.0\r\nk: v\r\n\r\nhello\r\n",
        b"SUB a.* q 1\r\n",
        b"SUB a.> 2\r\n",
        b"UNSUB 1 5\r\n",
        b"sub\tx  3\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    seeds.push(b"PING\r\nPONG\r\nPUB x 1\r\ny\r\nUNSUB 2\r\n".to_vec());
    seeds
}
