//! One event's MSG/HMSG for many NATS subscriptions: everything but the
//! sid built once (`MSG <subject> ` before it; `[reply ][hdr-len ]<len>\r\n`
//! and the header block after it), so that each delivery of a fan-out
//! writes four slices (start, sid, end, payload) and a CRLF into its
//! session's queue, byte for byte what `codec::put_msg` writes and
//! exactly `codec::msg_len` long.
//!
//! Owns: the NATS wire form of a delivery's frame pieces. Must not touch:
//! queues, sockets, which events get here (`nats::deliver::frame` builds
//! one from an event). Bounds: the pieces are a subject, a reply subject
//! and a header block the router already holds, copied once per event
//! (inline up to `INLINE_BYTES`: no allocation for ordinary events).
//! Hot path: `put` runs once per NATS delivery; rerun
//! `cargo bench --bench nats_deliver` after changing it.
//!
//! Hand-written: a few byte copies; no crate builds NATS frames.

/// Bytes of the pieces kept inline (start and end together): enough for
/// `MSG `, a subject of some 60 bytes and a plain MSG's end; longer ones
/// (long subjects, reply subjects, header blocks) take one allocation.
const INLINE_BYTES: usize = 88;

/// The pieces of an event's MSG/HMSG around the sid.
#[derive(Debug, Clone)]
pub struct MsgFrame {
    /// `MSG <subject> ` (or `HMSG `), then
    /// ` [reply ][hdr-len ]<total-len>\r\n[headers]`: the start is
    /// `[..split]`, the end `[split..used]`; in `inline` when they fit,
    /// else in `heap`.
    inline: [u8; INLINE_BYTES],
    heap: Vec<u8>,
    split: usize,
    used: usize,
    /// Bytes of the frame without its sid.
    len: usize,
}

/// Where the pieces are written: the inline array or the heap buffer.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Sink for Cursor<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl MsgFrame {
    /// The frame of a message on `subject` with an optional reply
    /// subject and header block, and a payload of `payload_len` bytes.
    pub fn new(
        subject: &[u8],
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload_len: usize,
    ) -> MsgFrame {
        let body = payload_len + headers.map_or(0, <[u8]>::len);
        let mut body_digits = [0u8; 20];
        let body_digits = super::codec::decimal(&mut body_digits, body);
        let mut header_digits = [0u8; 20];
        let header_digits =
            super::codec::decimal(&mut header_digits, headers.map_or(0, <[u8]>::len));
        let split = if headers.is_some() { 5 } else { 4 } + subject.len() + 1;
        let used = split
            + 1
            + reply.map_or(0, |r| r.len() + 1)
            + headers.map_or(0, |h| header_digits.len() + 1 + h.len())
            + body_digits.len()
            + 2;
        let mut frame = MsgFrame {
            inline: [0; INLINE_BYTES],
            heap: Vec::new(),
            split,
            used,
            len: used + payload_len + 2,
        };
        let pieces = |sink: &mut dyn FnMut(&[u8])| {
            sink(if headers.is_some() {
                &b"HMSG "[..]
            } else {
                &b"MSG "[..]
            });
            sink(subject);
            sink(b" ");
            sink(b" ");
            if let Some(r) = reply {
                sink(r.as_bytes());
                sink(b" ");
            }
            if headers.is_some() {
                sink(header_digits);
                sink(b" ");
            }
            sink(body_digits);
            sink(b"\r\n");
            if let Some(h) = headers {
                sink(h);
            }
        };
        if used <= INLINE_BYTES {
            let mut cursor = Cursor {
                buf: &mut frame.inline,
                at: 0,
            };
            pieces(&mut |b| cursor.put(b));
            debug_assert_eq!(cursor.at, used);
        } else {
            let mut heap = Vec::with_capacity(used);
            pieces(&mut |b| heap.put(b));
            debug_assert_eq!(heap.len(), used);
            frame.heap = heap;
        }
        frame
    }

    /// Bytes of the frame for subscription `sid` (`codec::msg_len`).
    #[inline]
    pub fn len(&self, sid: &str) -> usize {
        self.len + sid.len()
    }

    /// Appends the frame for subscription `sid`; `payload` is the one
    /// `new` was given the length of.
    #[inline]
    pub fn put(&self, out: &mut Vec<u8>, sid: &str, payload: &[u8]) {
        debug_assert_eq!(self.len, self.used + payload.len() + 2);
        let pieces = if self.used <= INLINE_BYTES {
            &self.inline[..self.used]
        } else {
            &self.heap[..]
        };
        out.reserve(self.len + sid.len());
        out.extend_from_slice(&pieces[..self.split]);
        out.extend_from_slice(sid.as_bytes());
        out.extend_from_slice(&pieces[self.split..]);
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::codec;

    /// Byte for byte what `codec::put_msg` writes, and `codec::msg_len`
    /// long, for every shape: with and without reply and headers, sids
    /// and subjects of many lengths, payloads across digit boundaries.
    #[test]
    fn same_bytes_as_put_msg() {
        let long_subject = "s".repeat(200);
        // Around the inline size, whichever the other pieces.
        let near: Vec<String> = (70..=86).step_by(4).map(|n| "n".repeat(n)).collect();
        let long_reply = format!("_INBOX.{}", "r".repeat(150));
        let mut subjects: Vec<&[u8]> = vec![
            &b"a"[..],
            &b"a.b.c"[..],
            &b"site.42.dev.17.temp"[..],
            long_subject.as_bytes(),
        ];
        subjects.extend(near.iter().map(|n| n.as_bytes()));
        let long_sid = "9".repeat(40);
        let sids = ["1", "12", "123456789", long_sid.as_str()];
        let replies = [
            None,
            Some("r"),
            Some("_INBOX.abc.1"),
            Some(long_reply.as_str()),
        ];
        let big = vec![b'h'; 300];
        let headers: [Option<&[u8]>; 4] = [
            None,
            Some(&b"NATS/1.0\r\n\r\n"[..]),
            Some(&b"NATS/1.0 503\r\n\r\n"[..]),
            Some(&big[..]),
        ];
        let payloads: Vec<Vec<u8>> = [0, 1, 9, 10, 64, 99, 100, 999, 1000, 70_000]
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
            .collect();
        let mut shapes = 0;
        for &subject in &subjects {
            for sid in sids {
                for reply in replies {
                    for h in headers {
                        for payload in &payloads {
                            let mut want = Vec::new();
                            codec::put_msg(
                                &mut want,
                                |o| o.extend_from_slice(subject),
                                sid,
                                reply,
                                h,
                                payload,
                            );
                            let frame = MsgFrame::new(subject, reply, h, payload.len());
                            let mut got = b"before".to_vec();
                            frame.put(&mut got, sid, payload);
                            assert_eq!(&got[..6], b"before");
                            assert_eq!(got[6..], want[..], "{sid} {reply:?} {}", payload.len());
                            assert_eq!(frame.len(sid), want.len());
                            assert_eq!(
                                frame.len(sid),
                                codec::msg_len(subject.len(), sid, reply, h, payload.len())
                            );
                            shapes += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(shapes, subjects.len() * 4 * 4 * 4 * 10);
    }

    /// One frame, many subscriptions: only the sid differs.
    #[test]
    fn reused_for_each_sid() {
        let frame = MsgFrame::new(b"a.b", Some("r"), None, 2);
        let mut out = Vec::new();
        for sid in ["1", "22", "333"] {
            frame.put(&mut out, sid, b"hi");
        }
        assert_eq!(
            out,
            b"MSG a.b 1 r 2\r\nhi\r\nMSG a.b 22 r 2\r\nhi\r\nMSG a.b 333 r 2\r\nhi\r\n"
        );
    }
}
