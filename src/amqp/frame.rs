//! AMQP 1.0 framing (OASIS AMQP 1.0 part 2.3): the 8-byte protocol
//! headers, the 8-byte frame header, the decode of one frame body into a
//! performative or a SASL frame, and the encoders weft writes.
//!
//! Owns: bytes ⇄ frames. Performatives, SASL frames and error lists go
//! through `fe2o3-amqp-types` + `serde_amqp` (the well-kept codec), except
//! on the per-message path: `transfer` is decoded by hand
//! ([`decode_transfer`], borrowing, no allocation: serde would build a
//! `Transfer` with an owned delivery tag per frame) and the `accepted`
//! disposition is written by hand ([`write_accepted`]). Must not touch:
//! session state (the machine's), message sections (`amqp::message`).

use std::fmt;

use fe2o3_amqp_types::performatives::Performative;
use serde::Serialize;

/// The AMQP protocol header (protocol id 0, version 1.0.0).
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The SASL security layer's protocol header (protocol id 3).
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// An empty AMQP frame on channel 0: a heartbeat (part 2.4.5).
pub const HEARTBEAT: [u8; 8] = [0, 0, 0, 8, 2, 0, 0, 0];
/// The smallest max-frame-size a peer may announce (MIN-MAX-FRAME-SIZE).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// Frame types (part 2.3.1).
pub const TYPE_AMQP: u8 = 0;
pub const TYPE_SASL: u8 = 1;

/// The descriptor code of `transfer` (part 2.7.5).
const TRANSFER_CODE: u64 = 0x14;

/// What the client's 8 bytes at the start of a layer say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    Amqp,
    Sasl,
    /// Anything else (another version, TLS, HTTP): answered with weft's
    /// header, then the socket closes (part 2.2).
    Other,
}

/// One unit of input: a protocol header or a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Header(ProtocolHeader),
    /// `body` is what follows the extended header; empty for a heartbeat.
    Frame {
        kind: u8,
        channel: u16,
        body: &'a [u8],
    },
}

/// Bytes that are not AMQP framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The header's size is over the max-frame-size weft announced.
    TooLarge { size: u32, max: u32 },
    /// A size under 8 or a data offset under 2 or past the size.
    BadHeader { size: u32, doff: u8 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes over max-frame-size {max}")
            }
            FrameError::BadHeader { size, doff } => {
                write!(f, "bad frame header (size {size}, doff {doff})")
            }
        }
    }
}

impl FrameError {
    /// The AMQP error condition of the close it causes.
    pub fn condition(&self) -> &'static str {
        "amqp:connection:framing-error"
    }
}

/// The protocol header at the front of `buf`; None when more bytes are
/// needed. A byte that cannot start `AMQP` decides at once, so a client
/// speaking something else gets its answer without sending 8 bytes.
pub fn decode_header(buf: &[u8]) -> Option<(ProtocolHeader, usize)> {
    let seen = buf.len().min(8);
    if buf[..seen.min(4)] != AMQP_HEADER[..seen.min(4)] {
        return Some((ProtocolHeader::Other, seen));
    }
    if buf.len() < 8 {
        return None;
    }
    let header = match <[u8; 8]>::try_from(&buf[..8]).expect("8 bytes") {
        AMQP_HEADER => ProtocolHeader::Amqp,
        SASL_HEADER => ProtocolHeader::Sasl,
        _ => ProtocolHeader::Other,
    };
    Some((header, 8))
}

/// The size a frame at the front of `buf` announces, or 0 before its
/// first 4 bytes.
pub fn frame_len(buf: &[u8]) -> usize {
    match buf.get(..4) {
        Some(size) => u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize,
        None => 0,
    }
}

/// One frame from the front of `buf` and the bytes it used; None when
/// more bytes are needed. Refuses a frame over `max_frame_size` from its
/// header, before its body is buffered.
pub fn decode_frame(
    buf: &[u8],
    max_frame_size: u32,
) -> Result<Option<(Packet<'_>, usize)>, FrameError> {
    if buf.len() < 8 {
        // The size alone already tells an oversize frame.
        if buf.len() >= 4 {
            let size = frame_len(buf) as u32;
            if size > max_frame_size {
                return Err(FrameError::TooLarge {
                    size,
                    max: max_frame_size,
                });
            }
        }
        return Ok(None);
    }
    let size = frame_len(buf) as u32;
    let doff = buf[4];
    if size > max_frame_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_frame_size,
        });
    }
    if size < 8 || doff < 2 || u32::from(doff) * 4 > size {
        return Err(FrameError::BadHeader { size, doff });
    }
    let size = size as usize;
    if buf.len() < size {
        return Ok(None);
    }
    let packet = Packet::Frame {
        kind: buf[5],
        channel: u16::from_be_bytes([buf[6], buf[7]]),
        body: &buf[usize::from(doff) * 4..size],
    };
    Ok(Some((packet, size)))
}

/// The numeric descriptor code of a described value at the front of
/// `body` (`0x00` then a ulong), if it has one: symbolic descriptors go
/// to serde, which knows the names.
pub fn descriptor_code(body: &[u8]) -> Option<u64> {
    match body {
        [0x00, 0x53, code, ..] => Some(u64::from(*code)),
        [0x00, 0x44, ..] => Some(0),
        [0x00, 0x80, rest @ ..] if rest.len() >= 8 => {
            Some(u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")))
        }
        _ => None,
    }
}

/// The symbolic descriptor of `transfer` (part 2.7.5).
const TRANSFER_NAME: &[u8] = b"amqp:transfer:list";

/// Whether an AMQP frame body is a `transfer` (decoded by hand), by its
/// numeric or its symbolic descriptor (both legal, part 1.5): one that
/// reached serde instead would be a `Performative::Transfer` with its
/// payload lost.
pub fn is_transfer(body: &[u8]) -> bool {
    match body {
        [0x00, 0xa3, len, rest @ ..] => rest.get(..usize::from(*len)) == Some(TRANSFER_NAME),
        [0x00, 0xb3, a, b, c, d, rest @ ..] => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            rest.get(..len) == Some(TRANSFER_NAME)
        }
        _ => descriptor_code(body) == Some(TRANSFER_CODE),
    }
}

/// A performative other than `transfer` (whose payload follows it).
pub fn decode_performative(body: &[u8]) -> Result<Performative, serde_amqp::Error> {
    check_shape(body).map_err(|e| serde_amqp::Error::Message(e.0.into()))?;
    serde_amqp::from_slice(body)
}

/// A SASL frame body as `T` (weft reads only sasl-init).
pub fn decode_sasl<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_amqp::Error> {
    check_shape(body).map_err(|e| serde_amqp::Error::Message(e.0.into()))?;
    serde_amqp::from_slice(body)
}

/// Checks the shape of an encoded value before serde reads it: every
/// list and map claims no more elements than its bytes hold and no more
/// bytes than there are, and arrays hold primitive elements only (weft
/// reads no array of lists or described values). serde_amqp 0.18 adds a
/// described list's claimed count to its field counter unchecked: an add
/// overflow, a panic where overflow checks are on (found by the
/// amqp_decode fuzz target). One pass over bytes already in memory, for
/// frames off the per-message path.
pub fn check_shape(body: &[u8]) -> Result<(), BodyError> {
    let mut r = Reader {
        buf: body,
        at: 0,
        arrays_of_primitives: true,
    };
    // Every value, not only the first: serde reads on past a bare one.
    while r.at < body.len() {
        r.check(0)?;
    }
    Ok(())
}

/// The same check over a message's sections (values back to back), before
/// `amqp::message` reads them with serde; arrays are bounded by their
/// bytes but not read (a message may carry any array in its body). Per
/// message: a few byte reads for a data section, whatever its size.
pub fn check_message(bytes: &[u8]) -> Result<(), BodyError> {
    let mut r = Reader {
        buf: bytes,
        at: 0,
        arrays_of_primitives: false,
    };
    while r.at < bytes.len() {
        r.check(0)?;
    }
    Ok(())
}

impl Reader<'_> {
    fn check(&mut self, depth: u8) -> Result<(), BodyError> {
        const BAD: BodyError = BodyError("a list, map or array larger than its frame");
        if depth > 32 {
            return Err(BodyError("values nested too deep"));
        }
        let code = self.byte()?;
        let (size, count) = match code {
            0x00 => {
                self.check(depth + 1)?; // the descriptor
                return self.check(depth + 1);
            }
            0xc0 | 0xc1 => {
                let size = usize::from(self.byte()?);
                let count = usize::from(*self.take(1)?.first().ok_or(BAD)?);
                (size.checked_sub(1).ok_or(BAD)?, count)
            }
            0xd0 | 0xd1 => {
                let size = self.u32()? as usize;
                let count = self.u32()? as usize;
                (size.checked_sub(4).ok_or(BAD)?, count)
            }
            0xe0 | 0xf0 => {
                let (size, _count) = if code == 0xe0 {
                    (usize::from(self.byte()?), usize::from(self.byte()?))
                } else {
                    (self.u32()? as usize, self.u32()? as usize)
                };
                let constructor = self.byte()?;
                if self.arrays_of_primitives && (constructor == 0x00 || constructor >= 0xc0) {
                    return Err(BodyError("an array of compound or described values"));
                }
                let header = if code == 0xe0 { 1 } else { 4 };
                let rest = size.checked_sub(header + 1).ok_or(BAD)?;
                return self.take(rest).map(|_| ()).map_err(|_| BAD);
            }
            _ => {
                // A primitive: step back and skip it by its width.
                self.at -= 1;
                return self.skip(depth);
            }
        };
        if count > size || size > self.buf.len() - self.at {
            return Err(BAD);
        }
        // A map holds key-value pairs: serde_amqp 0.18 underflows (a
        // panic with overflow checks) on an odd count.
        if matches!(code, 0xc1 | 0xd1) && count % 2 == 1 {
            return Err(BodyError("a map with an odd number of elements"));
        }
        let end = self.at + size;
        let mut inner = Reader {
            buf: &self.buf[..end],
            at: self.at,
            arrays_of_primitives: self.arrays_of_primitives,
        };
        for _ in 0..count {
            inner.check(depth + 1)?;
        }
        self.at = end;
        Ok(())
    }
}

/// The fields of a `transfer` weft reads, borrowing from the frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer<'a> {
    pub handle: u32,
    pub delivery_id: Option<u32>,
    pub delivery_tag: Option<&'a [u8]>,
    pub message_format: Option<u32>,
    pub settled: Option<bool>,
    pub more: bool,
    pub aborted: bool,
    /// The frame's payload: this frame's part of the message.
    pub payload: &'a [u8],
}

/// Why a frame body does not decode, for `amqp:decode-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyError(pub &'static str);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A cursor over AMQP-encoded values (part 1.6), enough for `transfer`.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    /// `check`: arrays must hold primitives (performatives).
    arrays_of_primitives: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(BodyError("truncated transfer"))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, BodyError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, BodyError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// A `uint` or null.
    fn uint(&mut self) -> Result<Option<u32>, BodyError> {
        match self.byte()? {
            0x40 => Ok(None),
            0x43 => Ok(Some(0)),
            0x52 => Ok(Some(u32::from(self.byte()?))),
            0x70 => Ok(Some(self.u32()?)),
            _ => Err(BodyError("transfer: a uint field of another type")),
        }
    }

    fn boolean(&mut self) -> Result<Option<bool>, BodyError> {
        match self.byte()? {
            0x40 => Ok(None),
            0x41 => Ok(Some(true)),
            0x42 => Ok(Some(false)),
            0x56 => match self.byte()? {
                0 => Ok(Some(false)),
                1 => Ok(Some(true)),
                _ => Err(BodyError("transfer: a boolean neither 0 nor 1")),
            },
            _ => Err(BodyError("transfer: a boolean field of another type")),
        }
    }

    fn binary(&mut self) -> Result<Option<&'a [u8]>, BodyError> {
        match self.byte()? {
            0x40 => Ok(None),
            0xa0 => {
                let n = self.byte()?;
                Ok(Some(self.take(usize::from(n))?))
            }
            0xb0 => {
                let n = self.u32()?;
                Ok(Some(self.take(n as usize)?))
            }
            _ => Err(BodyError("transfer: a delivery-tag that is not binary")),
        }
    }

    /// Skips one value of any type: its format code's category tells its
    /// width (part 1.6.1), so no type needs to be known.
    fn skip(&mut self, depth: u8) -> Result<(), BodyError> {
        if depth > 16 {
            return Err(BodyError("transfer: values nested too deep"));
        }
        let code = self.byte()?;
        if code == 0x00 {
            self.skip(depth + 1)?; // the descriptor
            return self.skip(depth + 1);
        }
        let width = match code >> 4 {
            0x4 => 0,
            0x5 => 1,
            0x6 => 2,
            0x7 => 4,
            0x8 => 8,
            0x9 => 16,
            0xa | 0xc | 0xe => usize::from(self.byte()?),
            0xb | 0xd | 0xf => self.u32()? as usize,
            _ => return Err(BodyError("transfer: unknown format code")),
        };
        self.take(width).map(|_| ())
    }
}

/// A `transfer` frame body by hand: the described list's fields in order
/// (absent trailing fields take their defaults), then the payload.
pub fn decode_transfer(body: &[u8]) -> Result<Transfer<'_>, BodyError> {
    let mut r = Reader {
        buf: body,
        at: 0,
        arrays_of_primitives: true,
    };
    match r.byte()? {
        0x00 => r.skip(0)?, // the descriptor, already known to be transfer
        _ => return Err(BodyError("transfer: not a described list")),
    }
    let (size, count) = match r.byte()? {
        0x45 => (0, 0),
        0xc0 => {
            let size = usize::from(r.byte()?);
            let at = r.at;
            let count = u32::from(r.byte()?);
            (
                size.checked_sub(r.at - at)
                    .ok_or(BodyError("transfer: list size"))?,
                count,
            )
        }
        0xd0 => {
            let size = r.u32()? as usize;
            let at = r.at;
            let count = r.u32()?;
            (
                size.checked_sub(r.at - at)
                    .ok_or(BodyError("transfer: list size"))?,
                count,
            )
        }
        _ => return Err(BodyError("transfer: not a list")),
    };
    let end = r.at.checked_add(size).filter(|&e| e <= body.len());
    let end = end.ok_or(BodyError("truncated transfer"))?;
    let fields = Reader {
        buf: &body[..end],
        at: r.at,
        arrays_of_primitives: true,
    };
    let mut r = fields;
    let mut t = Transfer::default();
    if count == 0 {
        return Err(BodyError("transfer without a handle"));
    }
    for field in 0..count {
        match field {
            0 => t.handle = r.uint()?.ok_or(BodyError("transfer without a handle"))?,
            1 => t.delivery_id = r.uint()?,
            2 => t.delivery_tag = r.binary()?,
            3 => t.message_format = r.uint()?,
            4 => t.settled = r.boolean()?,
            5 => t.more = r.boolean()?.unwrap_or(false),
            // rcv-settle-mode, state, resume: not used by weft.
            6..=8 => r.skip(0)?,
            9 => t.aborted = r.boolean()?.unwrap_or(false),
            _ => r.skip(0)?,
        }
    }
    if r.at != end {
        return Err(BodyError("transfer: list size disagrees with its fields"));
    }
    t.payload = &body[end..];
    Ok(t)
}

/// Appends one frame: the header, then `value` serialized.
pub fn write_frame<T: Serialize>(out: &mut Vec<u8>, kind: u8, channel: u16, value: &T) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, 2, kind]);
    out.extend_from_slice(&channel.to_be_bytes());
    let mut serializer = serde_amqp::ser::Serializer::new(&mut *out);
    if let Err(e) = value.serialize(&mut serializer) {
        // Only weft's own values come here: a failure is a bug in the
        // value built, not bad input.
        debug_assert!(false, "AMQP encode: {e}");
        out.truncate(start);
        return;
    }
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a `disposition` (role receiver, settled, state `accepted`)
/// for deliveries `first..=last` by hand: once per unsettled message.
pub fn write_accepted(out: &mut Vec<u8>, channel: u16, first: u32, last: u32) {
    // Descriptor 0x15, list8 of 5 fields: role=true, first, last (uint),
    // settled=true, state=accepted (descriptor 0x24, empty list).
    const LIST_LEN: u8 = 1 + 1 + 5 + 5 + 1 + 4;
    let size: u32 = 8 + 3 + 2 + u32::from(LIST_LEN);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&[2, TYPE_AMQP]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&[0x00, 0x53, 0x15, 0xc0, LIST_LEN, 5, 0x41, 0x70]);
    out.extend_from_slice(&first.to_be_bytes());
    out.push(0x70);
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(&[0x41, 0x00, 0x53, 0x24, 0x45]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::definitions::{Handle, Role};
    use fe2o3_amqp_types::messaging::{Accepted, DeliveryState};
    use fe2o3_amqp_types::performatives::{Disposition, Transfer as TransferPerformative};
    use serde_amqp::primitives::Binary;

    fn transfer_body(t: &TransferPerformative, payload: &[u8]) -> Vec<u8> {
        let mut body = serde_amqp::to_vec(t).unwrap();
        body.extend_from_slice(payload);
        body
    }

    #[test]
    fn hand_decoded_transfer_agrees_with_serde() {
        let full = TransferPerformative {
            handle: Handle(7),
            delivery_id: Some(300),
            delivery_tag: Some(Binary::from(vec![1, 2, 3])),
            message_format: Some(0),
            settled: Some(true),
            more: true,
            rcv_settle_mode: None,
            state: Some(DeliveryState::Accepted(Accepted {})),
            resume: false,
            aborted: true,
            batchable: true,
        };
        let body = transfer_body(&full, b"payload");
        assert!(is_transfer(&body));
        let t = decode_transfer(&body).unwrap();
        assert_eq!(
            t,
            Transfer {
                handle: 7,
                delivery_id: Some(300),
                delivery_tag: Some(&[1, 2, 3]),
                message_format: Some(0),
                settled: Some(true),
                more: true,
                aborted: true,
                payload: b"payload",
            }
        );
        let short = TransferPerformative {
            handle: Handle(0),
            delivery_id: None,
            delivery_tag: None,
            message_format: None,
            settled: None,
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        let body = transfer_body(&short, b"");
        let t = decode_transfer(&body).unwrap();
        assert_eq!(t.handle, 0);
        assert_eq!(t.delivery_id, None);
        assert!(!t.more && t.payload.is_empty());
    }

    #[test]
    fn truncated_transfer_is_an_error() {
        let t = TransferPerformative {
            handle: Handle(1),
            delivery_id: Some(1),
            delivery_tag: Some(Binary::from(vec![9; 4])),
            message_format: None,
            settled: None,
            more: false,
            rcv_settle_mode: None,
            state: None,
            resume: false,
            aborted: false,
            batchable: false,
        };
        let body = transfer_body(&t, b"");
        for cut in 3..body.len() {
            assert!(decode_transfer(&body[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn hand_written_disposition_decodes_as_serde_reads_it() {
        let mut out = Vec::new();
        write_accepted(&mut out, 3, 10, 12);
        let (packet, used) = decode_frame(&out, 512).unwrap().unwrap();
        assert_eq!(used, out.len());
        let Packet::Frame {
            kind,
            channel,
            body,
        } = packet
        else {
            panic!("a frame");
        };
        assert_eq!((kind, channel), (TYPE_AMQP, 3));
        let Performative::Disposition(d) = decode_performative(body).unwrap() else {
            panic!("a disposition");
        };
        assert_eq!(
            d,
            Disposition {
                role: Role::Receiver,
                first: 10,
                last: Some(12),
                settled: true,
                state: Some(DeliveryState::Accepted(Accepted {})),
                batchable: false,
            }
        );
    }

    /// Found by the amqp_decode fuzz target: an `open` whose list32
    /// claims 2^32-1 fields. serde_amqp 0.18 adds that count to its field
    /// counter unchecked: an add overflow, a panic where overflow checks
    /// are on (the debug binary the tests run).
    #[test]
    fn a_list_claiming_more_fields_than_bytes_is_a_decode_error() {
        let body = b"\x00\x53\x10\xd0\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff";
        assert!(decode_performative(body).is_err());
        // The same nested: a close whose error list is such a list.
        let body = b"\x00\x53\x18\xc0\x0e\x01\x00\x53\x1d\xd0\x00\x00\x00\x04\xff\xff\xff\xff";
        assert!(decode_performative(body).is_err());
        // Found next by the fuzzer: a bare ulong first, the same list
        // after it (serde reads on past the first value).
        let body = b"\x53\x18\x00\x80\xed\x10\xc0\x01\x41\x09\x00\x53\xd0\x10\x10\x10\x10\xff\xff\xff\xff\xff";
        assert!(decode_performative(body).is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(decode_header(b"AMQ"), None);
        assert_eq!(
            decode_header(b"AMQP\x03\x01\x00\x00"),
            Some((ProtocolHeader::Sasl, 8))
        );
        assert_eq!(
            decode_header(b"AMQP\x00\x01\x00\x00x"),
            Some((ProtocolHeader::Amqp, 8))
        );
        assert_eq!(
            decode_header(b"AMQP\x01\x01\x00\x00"),
            Some((ProtocolHeader::Other, 8))
        );
        assert_eq!(decode_header(b"GE"), Some((ProtocolHeader::Other, 2)));
    }

    #[test]
    fn frame_header_limits() {
        assert_eq!(
            decode_frame(&[0, 0, 2, 1], 512),
            Err(FrameError::TooLarge {
                size: 513,
                max: 512
            })
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 7, 2, 0, 0, 0], 512),
            Err(FrameError::BadHeader { size: 7, doff: 2 })
        );
        assert_eq!(
            decode_frame(&[0, 0, 0, 8, 1, 0, 0, 0], 512),
            Err(FrameError::BadHeader { size: 8, doff: 1 })
        );
        assert!(matches!(
            decode_frame(&[0, 0, 0, 9, 2, 0, 0, 0], 512),
            Ok(None)
        ));
        let (p, used) = decode_frame(&HEARTBEAT, 512).unwrap().unwrap();
        assert_eq!(used, 8);
        assert!(matches!(
            p,
            Packet::Frame {
                kind: 0,
                channel: 0,
                body: []
            }
        ));
    }
}
