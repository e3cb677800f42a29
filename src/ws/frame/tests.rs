//! The frame codec without a socket: fragments, masks, limits, control
//! frames and every refusal with its close code.

use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn limits() -> Limits {
    Limits {
        frame_bytes_max: 1 << 20,
        message_bytes_max: 1 << 20,
        text_allowed: true,
    }
}

fn server() -> Decoder {
    Decoder::new(Role::Server, limits())
}

fn client_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, payload, Some(MASK));
    out
}

/// Everything a decoder makes of `wire`, fed `chunk` bytes at a time:
/// the data bytes in order, the control items (with their payloads), and
/// the message ends seen.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    data: Vec<u8>,
    message_ends: usize,
    pings: Vec<Vec<u8>>,
    pongs: Vec<Vec<u8>>,
    closes: Vec<(Option<CloseCode>, Vec<u8>)>,
}

fn run(decoder: &mut Decoder, wire: &[u8], chunk: usize) -> Result<Seen, DecodeError> {
    let mut seen = Seen::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let step = decoder.decode(&mut buf)?;
        if step.consumed == 0 && step.item.is_none() {
            if fed == wire.len() {
                return Ok(seen);
            }
            let n = chunk.min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
            continue;
        }
        match step.item {
            Some(Item::Data { range, fin }) => {
                seen.data.extend_from_slice(&buf[range]);
                seen.message_ends += fin as usize;
            }
            Some(Item::Ping(r)) => seen.pings.push(buf[r].to_vec()),
            Some(Item::Pong(r)) => seen.pongs.push(buf[r].to_vec()),
            Some(Item::Close { code, reason }) => seen.closes.push((code, buf[reason].to_vec())),
            None => {}
        }
        buf.drain(..step.consumed);
    }
}

#[test]
fn a_masked_binary_frame_decodes_in_any_chunking() {
    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let wire = client_frame(true, Opcode::Binary, &payload);
    for chunk in [1, 2, 3, 7, 13, 126, 4096, wire.len()] {
        let seen = run(&mut server(), &wire, chunk).unwrap();
        assert_eq!(seen.data, payload, "chunk {chunk}");
        assert_eq!(seen.message_ends, 1);
    }
}

#[test]
fn every_length_form_round_trips() {
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
        let payload = vec![0xA5u8; len];
        let wire = client_frame(true, Opcode::Binary, &payload);
        let header = match len {
            0..=125 => 2,
            126..=65_535 => 4,
            _ => 10,
        } + 4;
        assert_eq!(wire.len(), header + len);
        let seen = run(&mut server(), &wire, 1000).unwrap();
        assert_eq!(seen.data, payload);
        assert_eq!(seen.message_ends, 1);
        // The server's own frame (unmasked) decodes on the client side.
        let mut out = Vec::new();
        encode(&mut out, Opcode::Binary, &payload);
        assert_eq!(out.len(), header - 4 + len);
        let seen = run(&mut Decoder::new(Role::Client, limits()), &out, 999).unwrap();
        assert_eq!(seen.data, payload);
    }
}

#[test]
fn fragments_make_one_message_with_control_frames_between() {
    let mut wire = client_frame(false, Opcode::Binary, b"hel");
    wire.extend(client_frame(true, Opcode::Ping, b"p1"));
    wire.extend(client_frame(false, Opcode::Continuation, b""));
    wire.extend(client_frame(false, Opcode::Continuation, b"lo "));
    wire.extend(client_frame(true, Opcode::Pong, b""));
    wire.extend(client_frame(true, Opcode::Continuation, b"world"));
    wire.extend(client_frame(true, Opcode::Binary, b"!"));
    wire.extend(client_frame(
        true,
        Opcode::Close,
        &[0x03, 0xE8, b'b', b'y', b'e'],
    ));
    for chunk in [1, 5, wire.len()] {
        let seen = run(&mut server(), &wire, chunk).unwrap();
        assert_eq!(seen.data, b"hello world!");
        assert_eq!(seen.message_ends, 2);
        assert_eq!(seen.pings, vec![b"p1".to_vec()]);
        assert_eq!(seen.pongs, vec![Vec::<u8>::new()]);
        assert_eq!(
            seen.closes,
            vec![(Some(CloseCode::NORMAL), b"bye".to_vec())]
        );
    }
}

#[test]
fn the_mask_carries_over_chunk_boundaries() {
    for len in 0..40 {
        for offset in 0..4 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut whole = plain.clone();
            apply_mask(&mut whole, MASK, offset);
            let mut bytewise = plain.clone();
            for (i, b) in bytewise.iter_mut().enumerate() {
                *b ^= MASK[(offset + i) & 3];
            }
            assert_eq!(whole, bytewise);
            let cut = len / 3;
            let mut split = plain.clone();
            apply_mask(&mut split[..cut], MASK, offset);
            apply_mask(&mut split[cut..], MASK, offset + cut);
            assert_eq!(split, bytewise);
        }
    }
}

fn refused(wire: &[u8], limits: Limits) -> DecodeError {
    let mut d = Decoder::new(Role::Server, limits);
    run(&mut d, wire, wire.len()).unwrap_err()
}

#[test]
fn protocol_errors_close_with_1002() {
    let mut unmasked = Vec::new();
    encode(&mut unmasked, Opcode::Binary, b"x");
    let mut rsv = client_frame(true, Opcode::Binary, b"x");
    rsv[0] |= 0x40;
    let mut reserved_op = client_frame(true, Opcode::Binary, b"x");
    reserved_op[0] = 0x83;
    let mut fragmented_ping = client_frame(true, Opcode::Ping, b"");
    fragmented_ping[0] = Opcode::Ping.bits(); // FIN clear
    let mut long_ping = client_frame(true, Opcode::Ping, b"");
    long_ping[1] = 0x80 | 126;
    let mut top_bit = vec![0x82, 0x80 | 127];
    top_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
    top_bit.extend_from_slice(&MASK);
    let mut interrupted = client_frame(false, Opcode::Binary, b"a");
    interrupted.extend(client_frame(true, Opcode::Binary, b"b"));
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (unmasked, DecodeError::Unmasked),
        (rsv, DecodeError::ReservedBits),
        (reserved_op, DecodeError::ReservedOpcode(3)),
        (fragmented_ping, DecodeError::FragmentedControl),
        (long_ping, DecodeError::ControlTooLong),
        (top_bit, DecodeError::LengthTopBit),
        (
            client_frame(true, Opcode::Continuation, b"x"),
            DecodeError::UnexpectedContinuation,
        ),
        (interrupted, DecodeError::MessageInterrupted),
        (
            client_frame(true, Opcode::Close, &[3]),
            DecodeError::CloseTooShort,
        ),
        (
            client_frame(true, Opcode::Close, &1005u16.to_be_bytes()),
            DecodeError::BadCloseCode(1005),
        ),
        (
            client_frame(true, Opcode::Close, &999u16.to_be_bytes()),
            DecodeError::BadCloseCode(999),
        ),
    ];
    for (wire, expected) in cases {
        let e = refused(&wire, limits());
        assert_eq!(e, expected);
        assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR, "{e}");
    }
    // A client refuses a masked server frame.
    let e = run(
        &mut Decoder::new(Role::Client, limits()),
        &client_frame(true, Opcode::Binary, b"x"),
        10,
    )
    .unwrap_err();
    assert_eq!(e, DecodeError::Masked);
}

#[test]
fn an_oversize_frame_or_message_is_refused_from_its_header() {
    let small = Limits {
        frame_bytes_max: 100,
        message_bytes_max: 150,
        text_allowed: false,
    };
    // Only the header of a 101-byte frame is given: refused already.
    let wire = client_frame(true, Opcode::Binary, &[0; 101]);
    let mut d = Decoder::new(Role::Server, small);
    let e = d.decode(&mut wire[..6].to_vec()).unwrap_err();
    assert_eq!(e, DecodeError::FrameTooBig { len: 101, max: 100 });
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // 100 + 100 in two fragments: the second header passes the message cap.
    let mut wire = client_frame(false, Opcode::Binary, &[0; 100]);
    wire.extend(client_frame(true, Opcode::Continuation, &[0; 100]));
    let e = refused(&wire, small);
    assert_eq!(e, DecodeError::MessageTooBig { max: 150 });
    assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // The limits are per message: two 100-byte messages pass.
    let mut wire = client_frame(true, Opcode::Binary, &[1; 100]);
    wire.extend(client_frame(true, Opcode::Binary, &[2; 100]));
    let seen = run(&mut Decoder::new(Role::Server, small), &wire, 7).unwrap();
    assert_eq!(seen.data.len(), 200);
}

#[test]
fn text_is_refused_or_checked_as_utf8_across_fragments() {
    let binary_only = Limits {
        text_allowed: false,
        ..limits()
    };
    let e = refused(&client_frame(true, Opcode::Text, b"hi"), binary_only);
    assert_eq!(e, DecodeError::TextRefused);
    assert_eq!(e.close_code(), CloseCode::UNSUPPORTED_DATA);
    // "né€😀" cut inside every multi-byte character.
    let text = "né€😀".as_bytes();
    for cut in 0..=text.len() {
        let mut wire = client_frame(false, Opcode::Text, &text[..cut]);
        wire.extend(client_frame(true, Opcode::Continuation, &text[cut..]));
        for chunk in [1, 3, wire.len()] {
            let seen = run(&mut server(), &wire, chunk).unwrap();
            assert_eq!(seen.data, text, "cut {cut} chunk {chunk}");
        }
    }
    // Not UTF-8: a bad byte, or a character cut off at the message's end.
    for bad in [&b"ab\xffcd"[..], &"€".as_bytes()[..2], b"\xed\xa0\x80"] {
        let e = refused(&client_frame(true, Opcode::Text, bad), limits());
        assert_eq!(e, DecodeError::InvalidUtf8);
        assert_eq!(e.close_code(), CloseCode::INVALID_PAYLOAD);
    }
    let mut reason = 1000u16.to_be_bytes().to_vec();
    reason.push(0xff);
    let e = refused(&client_frame(true, Opcode::Close, &reason), limits());
    assert_eq!(e, DecodeError::InvalidUtf8);
}

#[test]
fn a_truncated_frame_waits_and_says_so() {
    let wire = client_frame(true, Opcode::Binary, b"hello");
    let mut d = server();
    let mut buf = wire[..8].to_vec();
    let step = d.decode(&mut buf).unwrap();
    assert_eq!(step.consumed, 8);
    assert_eq!(&buf[6..8], b"he");
    assert!(!d.between_frames(), "three bytes are still owed");
    let mut rest = wire[8..].to_vec();
    let step = d.decode(&mut rest).unwrap();
    assert_eq!(
        step.item,
        Some(Item::Data {
            range: 0..3,
            fin: true
        })
    );
    assert!(d.between_frames());
    // A control frame waits whole.
    let ping = client_frame(true, Opcode::Ping, b"abc");
    let mut part = ping[..ping.len() - 1].to_vec();
    assert_eq!(server().decode(&mut part).unwrap(), NEED_MORE);
}

#[test]
fn close_frames_encode_with_a_cut_reason() {
    let mut out = Vec::new();
    encode_close(&mut out, CloseCode::MESSAGE_TOO_BIG, &"é".repeat(100));
    assert_eq!(out.len(), 2 + 2 + 122, "cut to a character boundary");
    let seen = run(&mut Decoder::new(Role::Client, limits()), &out, 3).unwrap();
    let (code, reason) = &seen.closes[0];
    assert_eq!(*code, Some(CloseCode::MESSAGE_TOO_BIG));
    assert!(std::str::from_utf8(reason).is_ok());
    assert!(CloseCode(4000).is_sendable() && !CloseCode(1006).is_sendable());
}
