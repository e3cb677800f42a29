//! WebSocket frame decoder (server side), `weft::ws::frame`.
//!
//! The decoder is a stream decoder (payloads handed out as they arrive),
//! so instead of the one-packet contract it checks: the outcome never
//! depends on how TCP split the bytes (whole, byte by byte, in 7-byte
//! pieces: the same messages, control frames and error, if any); every
//! data range lies in the buffer given; and the messages decoded re-encode
//! as masked frames that decode to the same messages.
//! The first input byte picks whether text is allowed; small limits let
//! the fuzzer reach them.

use weft::ws::frame::{encode_frame, CloseCode, DecodeError, Decoder, Item, Limits, Opcode, Role};

#[derive(Debug, PartialEq)]
enum Seen {
    Message(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseCode>, Vec<u8>),
}

#[derive(Debug, PartialEq)]
struct Trace {
    seen: Vec<Seen>,
    /// The message begun and not finished (only when no error).
    partial: Vec<u8>,
    error: Option<DecodeError>,
}

fn trace(wire: &[u8], limits: Limits, chunk: usize) -> Trace {
    let mut decoder = Decoder::new(Role::Server, limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut seen = Vec::new();
    let mut message = Vec::new();
    loop {
        let step = match decoder.decode(&mut buf) {
            Ok(step) => step,
            Err(e) => {
                return Trace {
                    seen,
                    partial: Vec::new(),
                    error: Some(e),
                }
            }
        };
        assert!(step.consumed <= buf.len(), "consumed past the buffer");
        if step.consumed == 0 && step.item.is_none() {
            if fed == wire.len() {
                return Trace {
                    seen,
                    partial: message,
                    error: None,
                };
            }
            let n = chunk.min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
            continue;
        }
        match step.item {
            Some(Item::Data { range, fin }) => {
                assert!(range.end <= step.consumed, "data beyond what was consumed");
                message.extend_from_slice(&buf[range]);
                if fin {
                    seen.push(Seen::Message(std::mem::take(&mut message)));
                }
            }
            Some(Item::Ping(r)) => seen.push(Seen::Ping(buf[r].to_vec())),
            Some(Item::Pong(r)) => seen.push(Seen::Pong(buf[r].to_vec())),
            Some(Item::Close { code, reason }) => seen.push(Seen::Close(code, buf[reason].to_vec())),
            None => {}
        }
        buf.drain(..step.consumed);
    }
}

pub fn check(data: &[u8]) {
    let Some((&first, wire)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        frame_bytes_max: 512,
        message_bytes_max: 1024,
        text_allowed: first & 1 == 1,
    };
    let whole = trace(wire, limits, wire.len().max(1));
    for chunk in [1, 7] {
        assert_eq!(trace(wire, limits, chunk), whole, "in pieces of {chunk}");
    }
    // Binary messages re-encode (one masked frame each) to the same.
    let mut again = Vec::new();
    let mut expected = Vec::new();
    for s in &whole.seen {
        if let Seen::Message(m) = s {
            if m.len() as u64 <= limits.frame_bytes_max {
                encode_frame(&mut again, true, Opcode::Binary, m, Some([1, 2, 3, 4]));
                expected.push(Seen::Message(m.clone()));
            }
        }
    }
    let round = trace(&again, Limits { text_allowed: false, ..limits }, again.len().max(1));
    assert_eq!(round.error, None);
    assert_eq!(round.seen, expected, "re-encoded messages");
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mask = Some([0x37, 0xfa, 0x21, 0x3d]);
    let mut fragmented = vec![1u8];
    encode_frame(&mut fragmented, false, Opcode::Text, "hé".as_bytes(), mask);
    encode_frame(&mut fragmented, true, Opcode::Ping, b"p", mask);
    encode_frame(&mut fragmented, true, Opcode::Continuation, "llo €".as_bytes(), mask);
    encode_frame(&mut fragmented, true, Opcode::Close, &1000u16.to_be_bytes(), mask);
    let mut binary = vec![0u8];
    encode_frame(&mut binary, true, Opcode::Binary, &[0x10, 0x0c, 0, 4, b'M', b'Q'], mask);
    encode_frame(&mut binary, true, Opcode::Binary, &[7; 300], mask);
    encode_frame(&mut binary, true, Opcode::Pong, b"", mask);
    let mut unmasked = vec![0u8];
    encode_frame(&mut unmasked, true, Opcode::Binary, b"x", None);
    vec![fragmented, binary, unmasked]
}
