//! The WebSocket frame codec (RFC 6455 §5), sans-IO.
//!
//! [`Decoder::decode`] reads one step from the caller's buffer: a frame
//! header (refused from the header alone when the frame or the message it
//! grows is over its limit, before any payload is buffered), a chunk of a
//! data frame's payload as it arrives (unmasked in place, handed out as a
//! range of the caller's buffer: no copy, no allocation), or a whole
//! control frame (≤ 125 bytes, never fragmented, so it always fits the
//! caller's buffer). "Need more bytes" is not an error; every protocol
//! violation is a [`DecodeError`] that names the close code to answer with.
//!
//! Encoders write into the caller's buffer. Server frames are unmasked;
//! the masked encoder is for clients (the load tool, tests).
//! Hot path (every byte of MQTT/NATS over WebSocket goes through
//! `decode` and `apply_mask`): rerun `weft bench` after changing them.

use std::ops::Range;

use thiserror::Error;

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const HEADER_BYTES_MAX: usize = 14;

/// The largest payload of a control frame (§5.5).
pub const CONTROL_PAYLOAD_BYTES_MAX: usize = 125;

/// A frame's opcode (§5.2); the others are reserved and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A close frame's status code (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// A data type the endpoint does not accept (text frames on MQTT).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// Text that is not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether a peer may send this code in a close frame: 1004-1006 and
    /// 1015 are reserved for reports, never sent; below 1000 and from 5000
    /// are not codes; 1012-2999 are for future RFCs (1012-1014 are
    /// registered by IANA and sent by servers in practice).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// The limits a decoder enforces. `frame_bytes_max` caps one frame's
/// payload, `message_bytes_max` a whole (possibly fragmented) message;
/// both are checked from the headers, before the payload arrives.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub frame_bytes_max: u64,
    pub message_bytes_max: u64,
    /// Text messages are accepted (and checked to be UTF-8); when false a
    /// text frame is refused with 1003 (the MQTT endpoint: binary only).
    pub text_allowed: bool,
}

/// Which side of the connection decodes: a server requires masked frames,
/// a client unmasked ones (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Why a peer's frames were refused; each names its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("client frame not masked")]
    Unmasked,
    #[error("server frame masked")]
    Masked,
    #[error("reserved bits set (no extension was agreed)")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    #[error("continuation frame with no message begun")]
    UnexpectedContinuation,
    #[error("new data frame before the fragmented message ended")]
    MessageInterrupted,
    #[error("64-bit payload length with its top bit set")]
    LengthTopBit,
    #[error("frame of {len} bytes over the frame limit of {max}")]
    FrameTooBig { len: u64, max: u64 },
    #[error("message over the message limit of {max} bytes")]
    MessageTooBig { max: u64 },
    #[error("text frames not accepted on this endpoint")]
    TextRefused,
    #[error("text message not UTF-8")]
    InvalidUtf8,
    #[error("close frame with a 1-byte payload")]
    CloseTooShort,
    #[error("close code {0} may not be sent")]
    BadCloseCode(u16),
}

impl DecodeError {
    /// The code of the close frame that answers this error.
    pub fn close_code(self) -> CloseCode {
        match self {
            DecodeError::FrameTooBig { .. } | DecodeError::MessageTooBig { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            DecodeError::TextRefused => CloseCode::UNSUPPORTED_DATA,
            DecodeError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// What one decode step found. Ranges index the buffer given to `decode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Payload bytes of a text or binary message (unmasked in place);
    /// `fin` when they end the message. May be empty (an empty frame).
    Data {
        range: Range<usize>,
        fin: bool,
    },
    Ping(Range<usize>),
    Pong(Range<usize>),
    /// The peer's close: its code (None for an empty close frame) and its
    /// reason (UTF-8, checked).
    Close {
        code: Option<CloseCode>,
        reason: Range<usize>,
    },
}

/// One step of decoding: `consumed` bytes of the buffer are used up (the
/// caller drops them before the next call, after taking `item`). Nothing
/// consumed and no item: more bytes are needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub consumed: usize,
    pub item: Option<Item>,
}

const NEED_MORE: Decoded = Decoded {
    consumed: 0,
    item: None,
};

/// The payload of the data frame being read.
#[derive(Debug, Clone, Copy)]
struct Payload {
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// Position in the mask of the next byte.
    mask_offset: usize,
    fin: bool,
}

/// A streaming frame decoder for one connection (see the module comment).
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    role: Role,
    payload: Option<Payload>,
    /// The message begun and not finished (Text or Binary).
    message: Option<Opcode>,
    message_bytes: u64,
    utf8: Utf8Stream,
}

impl Decoder {
    pub fn new(role: Role, limits: Limits) -> Decoder {
        Decoder {
            limits,
            role,
            payload: None,
            message: None,
            message_bytes: 0,
            utf8: Utf8Stream::default(),
        }
    }

    /// Whether the decoder stands between two frames (a truncated frame
    /// at the end of the stream is not).
    pub fn between_frames(&self) -> bool {
        self.payload.is_none()
    }

    /// Decodes one step from `input` (see [`Decoded`]); masked payloads
    /// are unmasked in place.
    pub fn decode(&mut self, input: &mut [u8]) -> Result<Decoded, DecodeError> {
        if self.payload.is_some() {
            let step = self.payload_chunk(input, 0);
            self.check_text(input, &step)?;
            return Ok(step);
        }
        let [b0, b1, ..] = *input else {
            return Ok(NEED_MORE);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(DecodeError::ReservedBits);
        }
        let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(DecodeError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(DecodeError::Unmasked),
            (Role::Client, true) => return Err(DecodeError::Masked),
            _ => {}
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            // Refused from the first two bytes.
            if !fin {
                return Err(DecodeError::FragmentedControl);
            }
            if len7 as usize > CONTROL_PAYLOAD_BYTES_MAX {
                return Err(DecodeError::ControlTooLong);
            }
        }
        let length_bytes = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask_bytes = if masked { 4 } else { 0 };
        let header_len = 2 + length_bytes + mask_bytes;
        if input.len() < header_len {
            return Ok(NEED_MORE);
        }
        let len = match length_bytes {
            0 => len7 as u64,
            2 => u16::from_be_bytes([input[2], input[3]]) as u64,
            _ => u64::from_be_bytes(input[2..10].try_into().expect("8 bytes")),
        };
        if len >> 63 != 0 {
            return Err(DecodeError::LengthTopBit);
        }
        let mask = masked.then(|| {
            let at = 2 + length_bytes;
            [input[at], input[at + 1], input[at + 2], input[at + 3]]
        });
        if opcode.is_control() {
            return self.control(input, opcode, header_len, len as usize, mask);
        }
        match (opcode, self.message) {
            (Opcode::Continuation, None) => return Err(DecodeError::UnexpectedContinuation),
            (Opcode::Continuation, Some(_)) => {}
            (_, Some(_)) => return Err(DecodeError::MessageInterrupted),
            (Opcode::Text, None) if !self.limits.text_allowed => {
                return Err(DecodeError::TextRefused)
            }
            (_, None) => {
                self.message = Some(opcode);
                self.message_bytes = 0;
                self.utf8 = Utf8Stream::default();
            }
        }
        if len > self.limits.frame_bytes_max {
            return Err(DecodeError::FrameTooBig {
                len,
                max: self.limits.frame_bytes_max,
            });
        }
        self.message_bytes += len;
        if self.message_bytes > self.limits.message_bytes_max {
            return Err(DecodeError::MessageTooBig {
                max: self.limits.message_bytes_max,
            });
        }
        if len == 0 {
            if fin {
                self.end_message()?;
            }
            return Ok(Decoded {
                consumed: header_len,
                item: Some(Item::Data {
                    range: header_len..header_len,
                    fin,
                }),
            });
        }
        self.payload = Some(Payload {
            remaining: len,
            mask,
            mask_offset: 0,
            fin,
        });
        let step = self.payload_chunk(&mut input[header_len..], header_len);
        self.check_text(input, &step)?;
        Ok(step)
    }

    /// The next chunk of the current data frame's payload, at most what
    /// `input` holds; `offset` is where `input` starts in the caller's
    /// buffer (its ranges are reported in the caller's coordinates).
    fn payload_chunk(&mut self, input: &mut [u8], offset: usize) -> Decoded {
        let p = self.payload.as_mut().expect("inside a payload");
        let n = (input.len() as u64).min(p.remaining) as usize;
        if n == 0 {
            return Decoded {
                consumed: offset,
                item: None,
            };
        }
        if let Some(mask) = p.mask {
            apply_mask(&mut input[..n], mask, p.mask_offset);
            p.mask_offset = (p.mask_offset + n) & 3;
        }
        p.remaining -= n as u64;
        let fin = p.remaining == 0 && p.fin;
        if p.remaining == 0 {
            self.payload = None;
        }
        Decoded {
            consumed: offset + n,
            item: Some(Item::Data {
                range: offset..offset + n,
                fin,
            }),
        }
    }

    /// Checks a text message's bytes as they come, and ends a message
    /// whose last byte came.
    fn check_text(&mut self, input: &[u8], step: &Decoded) -> Result<(), DecodeError> {
        if let Some(Item::Data { range, fin }) = &step.item {
            if self.message == Some(Opcode::Text) {
                self.utf8.feed(&input[range.clone()])?;
            }
            if *fin {
                self.end_message()?;
            }
        }
        Ok(())
    }

    fn end_message(&mut self) -> Result<(), DecodeError> {
        let text = self.message.take() == Some(Opcode::Text);
        if text && !self.utf8.at_boundary() {
            return Err(DecodeError::InvalidUtf8);
        }
        Ok(())
    }

    /// A whole control frame, or "need more" until it is all there.
    fn control(
        &mut self,
        input: &mut [u8],
        opcode: Opcode,
        header_len: usize,
        len: usize,
        mask: Option<[u8; 4]>,
    ) -> Result<Decoded, DecodeError> {
        let end = header_len + len;
        if input.len() < end {
            return Ok(NEED_MORE);
        }
        if let Some(mask) = mask {
            apply_mask(&mut input[header_len..end], mask, 0);
        }
        let item = match opcode {
            Opcode::Ping => Item::Ping(header_len..end),
            Opcode::Pong => Item::Pong(header_len..end),
            _ => match len {
                0 => Item::Close {
                    code: None,
                    reason: end..end,
                },
                1 => return Err(DecodeError::CloseTooShort),
                _ => {
                    let code = CloseCode(u16::from_be_bytes([
                        input[header_len],
                        input[header_len + 1],
                    ]));
                    if !code.is_sendable() {
                        return Err(DecodeError::BadCloseCode(code.0));
                    }
                    if std::str::from_utf8(&input[header_len + 2..end]).is_err() {
                        return Err(DecodeError::InvalidUtf8);
                    }
                    Item::Close {
                        code: Some(code),
                        reason: header_len + 2..end,
                    }
                }
            },
        };
        Ok(Decoded {
            consumed: end,
            item: Some(item),
        })
    }
}

/// UTF-8 checked across chunk boundaries: at most 3 bytes of a character
/// begun at the end of one chunk wait for the next.
#[derive(Debug, Default, Clone, Copy)]
struct Utf8Stream {
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Stream {
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), DecodeError> {
        if self.pending_len > 0 {
            let width = match self.pending[0] {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (width - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < width {
                // Still incomplete; but what came must be a valid prefix.
                return match std::str::from_utf8(&self.pending[..self.pending_len]) {
                    Err(e) if e.error_len().is_some() => Err(DecodeError::InvalidUtf8),
                    _ => Ok(()),
                };
            }
            std::str::from_utf8(&self.pending[..width]).map_err(|_| DecodeError::InvalidUtf8)?;
            self.pending_len = 0;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(DecodeError::InvalidUtf8),
            Err(e) => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.pending_len == 0
    }
}

/// XORs `data` with `mask`, starting at position `offset` of the mask
/// (a payload unmasked in chunks carries its position over). Eight bytes
/// at a time: this touches every byte a client sends.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let m = [
        mask[offset & 3],
        mask[(offset + 1) & 3],
        mask[(offset + 2) & 3],
        mask[(offset + 3) & 3],
    ];
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// Writes a frame header into `out`; returns its length. `mask` is for
/// client frames (the payload must then be masked by the caller).
pub fn encode_header(
    out: &mut [u8; HEADER_BYTES_MAX],
    fin: bool,
    opcode: Opcode,
    len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    debug_assert!(!opcode.is_control() || (fin && len <= CONTROL_PAYLOAD_BYTES_MAX as u64));
    out[0] = if fin { 0x80 } else { 0 } | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = 2;
    if len < 126 {
        out[1] = mask_bit | len as u8;
    } else if len <= u16::MAX as u64 {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        at = 4;
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        at = 10;
    }
    if let Some(mask) = mask {
        out[at..at + 4].copy_from_slice(&mask);
        at += 4;
    }
    at
}

/// Appends a frame to `out`: unmasked (a server's) when `mask` is None,
/// else masked with it (a client's).
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut header = [0u8; HEADER_BYTES_MAX];
    let n = encode_header(&mut header, fin, opcode, payload.len() as u64, mask);
    out.extend_from_slice(&header[..n]);
    let at = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[at..], mask, 0);
    }
}

/// Appends a whole, unmasked (server) frame to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    encode_frame(out, true, opcode, payload, None);
}

/// Appends a server close frame with `code` and `reason` (cut at a
/// character boundary to fit the 125-byte control payload).
pub fn encode_close(out: &mut Vec<u8>, code: CloseCode, reason: &str) {
    let mut cut = reason.len().min(CONTROL_PAYLOAD_BYTES_MAX - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; CONTROL_PAYLOAD_BYTES_MAX];
    payload[..2].copy_from_slice(&code.0.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    encode(out, Opcode::Close, &payload[..2 + cut]);
}

#[cfg(test)]
mod tests;
