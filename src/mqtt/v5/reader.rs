//! The byte reader every v5 decoder uses (strings, binary data, variable
//! byte integers, each checked as §1.5 says) and the limits a decoder
//! applies.

use super::error::DecodeError;
use super::kind::PacketType;
use super::reason;

/// Largest value a variable byte integer can carry (§1.5.5), so also the
/// largest remaining length.
pub const VARINT_MAX: usize = 268_435_455;

#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest whole packet (fixed header included) accepted; this is the
    /// Maximum Packet Size a server announces.
    pub packet_bytes_max: usize,
    /// Largest property block (each block of a packet separately: CONNECT
    /// has two).
    pub properties_bytes_max: usize,
    /// Most filters in one SUBSCRIBE/UNSUBSCRIBE.
    pub filters_per_packet_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            packet_bytes_max: 1024 * 1024,
            properties_bytes_max: 64 * 1024,
            filters_per_packet_max: 64,
        }
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let head = self.take_slice(N)?;
        Ok(head.try_into().expect("length checked"))
    }
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A variable byte integer (§1.5.5): at most four bytes, minimal.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(DecodeError::BadVarint);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint)
    }
    pub(crate) fn take_slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }
    /// The next `len` bytes as their own reader.
    pub(crate) fn take(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        Ok(Reader {
            buf: self.take_slice(len)?,
        })
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    /// Binary data: two-byte length, then the bytes (§1.5.6).
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        self.take_slice(len)
    }
    /// UTF-8 encoded string (§1.5.4): valid UTF-8 (so no surrogates) and no
    /// U+0000 (MQTT-1.5.4-1, -2), else malformed.
    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let raw = self.bytes()?;
        if raw.contains(&0) {
            return Err(DecodeError::BadUtf8);
        }
        std::str::from_utf8(raw).map_err(|_| DecodeError::BadUtf8)
    }
    pub(crate) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }
    pub(crate) fn reason_code(&mut self, kind: PacketType) -> Result<u8, DecodeError> {
        let code = self.u8()?;
        if reason::valid_for(kind, code) {
            Ok(code)
        } else {
            Err(DecodeError::BadReasonCode { kind, code })
        }
    }
    pub(crate) fn done(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}
