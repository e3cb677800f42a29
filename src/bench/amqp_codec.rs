//! The hand-written half of the bench's AMQP 1.0 codec (`weft bench
//! --amqp`): what happens once per message or per batch. A publisher's
//! transfer frames are encoded here by hand ([`put_transfer`]) and only
//! patched per message ([`patch_delivery`]: delivery id and tag, fixed
//! width); the frames that arrive per message or batch (transfer, flow,
//! disposition) are read by a small field reader ([`Fields`]) that walks
//! AMQP's self-describing encoding by constructor subcategory. Everything
//! else (SASL, open, begin, attach, errors) goes through `fe2o3-amqp-types`
//! and `serde_amqp` in `amqp`; the tests below check this half against
//! serde_amqp both ways.
//!
//! Owns: the per-message encodings and a sender's credit arithmetic
//! ([`Credit`], sans-IO). Must not touch: sockets (`amqp`), load loops
//! (`amqp_clients`). Costs: a transfer is 33 bytes of framing + the payload
//! (≤ 255 B; 36 above); patching writes 8 bytes.

pub const FRAME_AMQP: u8 = 0;
pub const FRAME_SASL: u8 = 1;

/// Descriptor codes (AMQP 1.0 part 2.7 and 3.2).
pub const DESC_FLOW: u64 = 0x13;
pub const DESC_TRANSFER: u64 = 0x14;
pub const DESC_DISPOSITION: u64 = 0x15;
pub const DESC_DATA: u64 = 0x75;
pub const DESC_AMQP_VALUE: u64 = 0x77;
pub const DESC_ACCEPTED: u64 = 0x24;

/// A sender's view of the broker's limits (sans-IO: fed by flows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credit {
    /// The next delivery id = transfer id = delivery count (all start at
    /// 0 and advance by one per single-frame delivery).
    pub next: u32,
    /// The delivery count up to which the broker gave link credit.
    pub credit_until: u32,
    /// The transfer id up to which the broker's session incoming window
    /// lets us send.
    pub window_until: u32,
    /// The broker's handle for our link (from its attach): a flow names
    /// the link by its sender's handle.
    pub handle: u32,
}

impl Credit {
    /// A flow from the broker: its session part always, its link part
    /// when it names the broker's handle of our link.
    pub fn on_flow(&mut self, f: FlowFields) {
        let (next_incoming, window, handle, count, credit) = f;
        // Part 2.5.6: the broker's remaining incoming window is
        // next-incoming-id + incoming-window - our next-outgoing-id.
        self.window_until = next_incoming.unwrap_or(0).wrapping_add(window);
        if let (Some(h), Some(credit)) = (handle, credit) {
            if h != self.handle {
                return;
            }
            // Part 2.6.7: credit counts from the delivery count the
            // broker names (our initial one, 0, when it names none).
            self.credit_until = count.unwrap_or(0).wrapping_add(credit);
        }
    }

    /// How many more transfers the link credit and the broker's session
    /// window allow now.
    pub fn room(&self) -> u32 {
        let credit = self.credit_until.wrapping_sub(self.next) as i32;
        let window = self.window_until.wrapping_sub(self.next) as i32;
        credit.min(window).max(0) as u32
    }
}

/// Appends one frame header + `body` (a serialised performative or SASL
/// frame).
pub fn put_frame(out: &mut Vec<u8>, kind: u8, channel: u16, body: &[u8]) {
    out.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[2, kind]);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(body);
}

/// The offsets of what [`patch_delivery`] rewrites (delivery id, delivery
/// tag) in a frame appended by [`put_transfer`], from the frame's first
/// byte.
pub const TRANSFER_ID_AT: usize = 16;
pub const TRANSFER_TAG_AT: usize = 22;

/// Appends one transfer frame (channel 0, handle 0) carrying `payload` as
/// a message with one data section, with delivery id and tag `id` (4 bytes
/// each, fixed width so that [`patch_delivery`] can rewrite them in place);
/// returns the offset of the payload within `out`. Hand-encoded: this is
/// the publisher's hot path (no serde per message).
pub fn put_transfer(out: &mut Vec<u8>, id: u32, settled: bool, payload: &[u8]) -> usize {
    let frame_at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, 2, FRAME_AMQP, 0, 0]);
    // Described list 0x14: handle, delivery-id, delivery-tag,
    // message-format, settled.
    out.extend_from_slice(&[0x00, 0x53, DESC_TRANSFER as u8, 0xc0, 0, 5]);
    let list_at = out.len();
    out.push(0x43); // handle: uint0
    out.push(0x70); // delivery-id: uint, 4 bytes
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0xa0, 4]); // delivery-tag: vbin8, 4 bytes
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0x43); // message-format: uint0
    out.push(if settled { 0x41 } else { 0x42 });
    let list_size = out.len() - list_at + 1; // + the count byte
    out[list_at - 2] = list_size as u8;
    debug_assert_eq!(out[frame_at + TRANSFER_ID_AT - 1], 0x70);
    debug_assert_eq!(out[frame_at + TRANSFER_TAG_AT - 2], 0xa0);
    // The bare message: one data section.
    out.extend_from_slice(&[0x00, 0x53, DESC_DATA as u8]);
    if payload.len() <= 255 {
        out.extend_from_slice(&[0xa0, payload.len() as u8]);
    } else {
        out.push(0xb0);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    }
    let payload_at = out.len();
    out.extend_from_slice(payload);
    let len = (out.len() - frame_at) as u32;
    out[frame_at..frame_at + 4].copy_from_slice(&len.to_be_bytes());
    payload_at
}

/// The length of the frame [`put_transfer`] appends for a payload of
/// `size` bytes.
pub fn transfer_len(size: usize) -> usize {
    8 + 6 + 1 + 5 + 6 + 1 + 1 + 3 + if size <= 255 { 2 } else { 5 } + size
}

/// Rewrites the delivery id and tag of the transfer frame at `frame`.
#[inline]
pub fn patch_delivery(frame: &mut [u8], id: u32) {
    frame[TRANSFER_ID_AT..TRANSFER_ID_AT + 4].copy_from_slice(&id.to_be_bytes());
    frame[TRANSFER_TAG_AT..TRANSFER_TAG_AT + 4].copy_from_slice(&id.to_be_bytes());
}

/// The extent of the encoded AMQP value at the start of `b` (constructor
/// included), from its constructor's subcategory (part 1.2): fixed widths
/// 0x4_ 0, 0x5_ 1, 0x6_ 2, 0x7_ 4, 0x8_ 8, 0x9_ 16 bytes; variable and
/// compound ones a 1-byte (0xa_, 0xc_, 0xe_) or 4-byte (0xb_, 0xd_, 0xf_)
/// size first. A described value (0x00) is its descriptor and its value.
pub fn value_len(b: &[u8]) -> Option<usize> {
    let c = *b.first()?;
    if c == 0x00 {
        let d = value_len(&b[1..])?;
        let v = value_len(b.get(1 + d..)?)?;
        return Some(1 + d + v);
    }
    let n = match c >> 4 {
        0x4 => 1,
        0x5 => 2,
        0x6 => 3,
        0x7 => 5,
        0x8 => 9,
        0x9 => 17,
        0xa | 0xc | 0xe => 2 + *b.get(1)? as usize,
        0xb | 0xd | 0xf => 5 + u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as usize,
        _ => return None,
    };
    (n <= b.len()).then_some(n)
}

/// A described value's numeric descriptor (smallulong or ulong) and the
/// bytes after the descriptor.
pub fn descriptor(b: &[u8]) -> Option<(u64, &[u8])> {
    match b {
        [0x00, 0x53, code, rest @ ..] => Some((*code as u64, rest)),
        [0x00, 0x80, rest @ ..] => Some((
            u64::from_be_bytes(rest.get(..8)?.try_into().ok()?),
            &rest[8..],
        )),
        [0x44, ..] | [0x00, 0x44, ..] => Some((0, &b[1..])),
        _ => None,
    }
}

/// The fields of an encoded list, one value at a time (missing trailing
/// fields read as null).
pub struct Fields<'a> {
    rest: &'a [u8],
    left: u32,
    /// The bytes after the whole list.
    after: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The list at the start of `b`.
    fn new(b: &'a [u8]) -> Option<Fields<'a>> {
        let (count, items, len) = match *b.first()? {
            0x45 => (0, &b[1..1], 1),
            0xc0 => {
                let size = *b.get(1)? as usize;
                (*b.get(2)? as u32, b.get(3..2 + size)?, 2 + size)
            }
            0xd0 => {
                let size = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?) as usize;
                let count = u32::from_be_bytes(b.get(5..9)?.try_into().ok()?);
                (count, b.get(9..5 + size)?, 5 + size)
            }
            _ => return None,
        };
        Some(Fields {
            rest: items,
            left: count,
            after: &b[len..],
        })
    }

    /// The next field's encoding, or `[0x40]` (null) past the end.
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return Some(&[0x40]);
        }
        let n = value_len(self.rest)?;
        let (v, rest) = self.rest.split_at(n);
        self.rest = rest;
        self.left -= 1;
        Some(v)
    }

    fn uint(&mut self) -> Option<Option<u32>> {
        let v = self.next()?;
        Some(match v {
            [0x40] => None,
            [0x43] => Some(0),
            [0x52, b] => Some(*b as u32),
            [0x70, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => return None,
        })
    }

    fn bool(&mut self) -> Option<Option<bool>> {
        let v = self.next()?;
        Some(match v {
            [0x40] => None,
            [0x41] => Some(true),
            [0x42] => Some(false),
            [0x56, b] => Some(*b != 0),
            _ => return None,
        })
    }
}

/// The payload of the first data (or binary/string amqp-value) section of
/// a bare message.
pub fn message_payload(mut b: &[u8]) -> &[u8] {
    while !b.is_empty() {
        let Some(len) = value_len(b) else { break };
        if let Some((code, value)) = descriptor(b) {
            if code == DESC_DATA || code == DESC_AMQP_VALUE {
                return match value {
                    [0xa0 | 0xa1, n, rest @ ..] => rest.get(..*n as usize).unwrap_or(&[]),
                    [0xb0 | 0xb1, a, b, c, d, rest @ ..] => rest
                        .get(..u32::from_be_bytes([*a, *b, *c, *d]) as usize)
                        .unwrap_or(&[]),
                    _ => &[],
                };
            }
        }
        b = &b[len..];
    }
    &[]
}

/// One transfer's fields a receiver needs: (delivery id, settled, more),
/// and the bytes after the performative (the message).
pub fn read_transfer(body: &[u8]) -> Option<(Option<u32>, bool, bool, &[u8])> {
    let mut f = Fields::new(body)?;
    let _handle = f.uint()?;
    let id = f.uint()?;
    let _tag = f.next()?;
    let _format = f.uint()?;
    let settled = f.bool()?.unwrap_or(false);
    let more = f.bool()?.unwrap_or(false);
    Some((id, settled, more, f.after))
}

/// A flow's fields a sender needs: (next-incoming-id, incoming-window,
/// handle, delivery-count, link-credit).
pub type FlowFields = (Option<u32>, u32, Option<u32>, Option<u32>, Option<u32>);

pub fn read_flow(body: &[u8]) -> Option<FlowFields> {
    let mut f = Fields::new(body)?;
    let next_incoming = f.uint()?;
    let window = f.uint()?.unwrap_or(0);
    let _next_outgoing = f.uint()?;
    let _outgoing_window = f.uint()?;
    let handle = f.uint()?;
    let count = f.uint()?;
    let credit = f.uint()?;
    Some((next_incoming, window, handle, count, credit))
}

/// A disposition's fields: (role is receiver, first, last, settled,
/// state descriptor).
pub fn read_disposition(body: &[u8]) -> Option<(bool, u32, u32, bool, Option<u64>)> {
    let mut f = Fields::new(body)?;
    let receiver = f.bool()?.unwrap_or(false);
    let first = f.uint()??;
    let last = f.uint()?.unwrap_or(first);
    let settled = f.bool()?.unwrap_or(false);
    let state = f.next()?;
    Some((
        receiver,
        first,
        last,
        settled,
        descriptor(state).map(|d| d.0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::definitions::{Handle, Role};
    use fe2o3_amqp_types::messaging::Data;
    use fe2o3_amqp_types::messaging::{Accepted, DeliveryState};
    use fe2o3_amqp_types::performatives::Transfer;
    use fe2o3_amqp_types::performatives::{Disposition, Flow, Performative};

    /// Splits one frame into (size, doff, type, channel, body).
    fn frame_parts(f: &[u8]) -> (usize, u8, u8, u16, &[u8]) {
        let size = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        (
            size,
            f[4],
            f[5],
            u16::from_be_bytes([f[6], f[7]]),
            &f[f[4] as usize * 4..size],
        )
    }

    #[test]
    fn hand_encoded_transfers_decode_with_serde_amqp_and_patch_in_place() {
        for (size, settled) in [
            (64usize, true),
            (64, false),
            (0, true),
            (255, false),
            (256, true),
            (4000, false),
        ] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut out = vec![0xee; 3]; // appends after what is there
            let payload_at = put_transfer(&mut out, 7, settled, &payload);
            let frame = &mut out[3..];
            assert_eq!(frame.len(), transfer_len(size), "size {size}");
            assert_eq!(&frame[payload_at - 3..], &payload[..]);
            patch_delivery(frame, 0xdead_beef);
            let (len, doff, kind, channel, body) = frame_parts(frame);
            assert_eq!((len, doff, kind, channel), (frame.len(), 2, FRAME_AMQP, 0));
            // The performative, then the message: read as serde_amqp does.
            let mut rest = body;
            let p: Performative = serde_amqp::from_reader(&mut rest).expect("a performative");
            let Performative::Transfer(t) = p else {
                panic!("not a transfer: {p:?}")
            };
            let Transfer {
                handle,
                delivery_id,
                delivery_tag,
                message_format,
                settled: s,
                more,
                ..
            } = t;
            assert_eq!(handle, Handle(0));
            assert_eq!(delivery_id, Some(0xdead_beef));
            assert_eq!(
                delivery_tag.map(|t| t.into_vec()),
                Some(0xdead_beef_u32.to_be_bytes().to_vec())
            );
            assert_eq!(message_format, Some(0));
            assert_eq!(s, Some(settled));
            assert!(!more);
            let data: Data = serde_amqp::from_slice(rest).expect("a data section");
            assert_eq!(&data.0[..], &payload[..]);
            // The receiver's own reader agrees with serde_amqp.
            let (_, after) = descriptor(body).unwrap();
            let (id, s2, more2, message) = read_transfer(after).expect("read_transfer");
            assert_eq!((id, s2, more2), (Some(0xdead_beef), settled, false));
            assert_eq!(message_payload(message), &payload[..]);
            assert_eq!(message, rest, "the message starts where serde_amqp stopped");
        }
    }

    #[test]
    fn the_field_reader_reads_frames_serde_amqp_writes() {
        let flow = Performative::Flow(Flow {
            next_incoming_id: Some(300),
            incoming_window: 65_535,
            next_outgoing_id: 1,
            outgoing_window: 0,
            handle: Some(Handle(0)),
            delivery_count: Some(u32::MAX),
            link_credit: Some(1000),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        });
        let body = serde_amqp::to_vec(&flow).unwrap();
        let (code, rest) = descriptor(&body).unwrap();
        assert_eq!(code, DESC_FLOW);
        assert_eq!(
            read_flow(rest),
            Some((Some(300), 65_535, Some(0), Some(u32::MAX), Some(1000)))
        );
        let disposition = Performative::Disposition(Disposition {
            role: Role::Receiver,
            first: 5,
            last: Some(260),
            settled: true,
            state: Some(DeliveryState::Accepted(Accepted {})),
            batchable: false,
        });
        let body = serde_amqp::to_vec(&disposition).unwrap();
        let (code, rest) = descriptor(&body).unwrap();
        assert_eq!(code, DESC_DISPOSITION);
        assert_eq!(
            read_disposition(rest),
            Some((true, 5, 260, true, Some(DESC_ACCEPTED)))
        );
    }

    #[test]
    fn a_sender_counts_credit_and_window_from_flows() {
        let mut c = Credit {
            window_until: 100,
            ..Credit::default()
        };
        assert_eq!(c.room(), 0, "no credit before the first flow");
        c.on_flow((Some(0), 100, Some(0), None, Some(1000)));
        assert_eq!(c.room(), 100, "the session window bounds");
        c.on_flow((Some(0), 5000, Some(0), Some(0), Some(1000)));
        assert_eq!(c.room(), 1000);
        c.on_flow((Some(0), 5000, Some(3), Some(0), Some(1)));
        assert_eq!(c.room(), 1000, "another handle's credit is not ours");
        c.handle = 3;
        c.on_flow((Some(0), 5000, Some(3), Some(0), Some(1000)));
        assert_eq!(
            c.room(),
            1000,
            "the broker names our link by its own handle"
        );
        c.next = 990;
        assert_eq!(c.room(), 10);
        c.next = 1001; // more than allowed: no room, not a huge one
        assert_eq!(c.room(), 0);
        c.next = u32::MAX - 1; // across the wrap
        c.on_flow((
            Some(u32::MAX - 1),
            5000,
            Some(3),
            Some(u32::MAX - 1),
            Some(10),
        ));
        assert_eq!(c.room(), 10);
    }
}
