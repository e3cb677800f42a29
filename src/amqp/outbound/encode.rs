//! The hand-written encoders of the delivery side: `transfer` (one
//! delivery, split into frames past the peer's max-frame-size), `flow`
//! and weft's settling `disposition`, each a described list written in
//! place with no serde (they run per delivery). Split from `outbound.rs`
//! to keep each file to one concern. Owns: the bytes of these three
//! performatives and the session counters a transfer moves
//! (next-outgoing-id, the client's incoming window). Must not touch: any
//! other state of the delivery side (`outbound.rs` decides what to
//! write), the message's sections (`amqp::message::write_message`).

use super::{Outcome, Session};
use crate::event::Event;

/// AMQP's constructor codes used here (OASIS AMQP 1.0, part 1).
const NULL: u8 = 0x40;
const TRUE: u8 = 0x41;
const FALSE: u8 = 0x42;
const UINT0: u8 = 0x43;
const SMALL_UINT: u8 = 0x52;
const UINT: u8 = 0x70;
const VBIN8: u8 = 0xa0;
const LIST0: u8 = 0x45;
const LIST8: u8 = 0xc0;
const DESCRIBED: u8 = 0x00;
const SMALL_ULONG: u8 = 0x53;
/// Performative descriptors (2.7).
const FLOW: u8 = 0x13;
const TRANSFER: u8 = 0x14;
const DISPOSITION: u8 = 0x15;
/// The outcomes (3.4.2-3.4.5).
const ACCEPTED: u8 = 0x24;
const REJECTED: u8 = 0x25;
const RELEASED: u8 = 0x26;
const MODIFIED: u8 = 0x27;

fn put_uint(buf: &mut Vec<u8>, v: u32) {
    match v {
        0 => buf.push(UINT0),
        1..=255 => buf.extend_from_slice(&[SMALL_UINT, v as u8]),
        _ => {
            buf.push(UINT);
            buf.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Starts a frame on `channel` with a described list of `count` fields:
/// returns where the frame and the list's size byte are, for [`close`].
fn open(buf: &mut Vec<u8>, channel: u16, descriptor: u8, count: u8) -> (usize, usize) {
    let frame = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, 2, 0]);
    buf.extend_from_slice(&channel.to_be_bytes());
    buf.extend_from_slice(&[DESCRIBED, SMALL_ULONG, descriptor, LIST8, 0, count]);
    (frame, buf.len() - 2)
}

/// Fills the list's size (after `open`'s fields) and, once the frame's
/// body is written too, the frame's size.
fn close_list(buf: &mut [u8], size_at: usize) {
    let size = buf.len() - size_at - 1;
    debug_assert!(size <= 255, "list8 holds the fields");
    buf[size_at] = size as u8;
}

fn close_frame(buf: &mut [u8], frame: usize) {
    let size = (buf.len() - frame) as u32;
    buf[frame..frame + 4].copy_from_slice(&size.to_be_bytes());
}

/// One delivery as one transfer frame, or several (`more`) when the message
/// exceeds `frame_room`: the performative (handle, delivery-id, the id as
/// its four-byte tag, message-format 0, settled) then the sections.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_transfer(
    buf: &mut Vec<u8>,
    s: &mut Session,
    handle: u32,
    delivery_id: u32,
    settled: bool,
    frame_room: usize,
    event: &Event,
    qos: u8,
    delivery_count: u32,
) {
    let first = buf.len();
    let (frame, size_at) = open(buf, s.channel, TRANSFER, 5);
    put_uint(buf, handle);
    put_uint(buf, delivery_id);
    buf.extend_from_slice(&[VBIN8, 4]);
    buf.extend_from_slice(&delivery_id.to_be_bytes());
    buf.push(UINT0);
    buf.push(if settled { TRUE } else { FALSE });
    close_list(buf, size_at);
    let body = buf.len();
    crate::amqp::message::write_message(event, qos, delivery_count, buf);
    let len = buf.len() - body;
    s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
    s.remote_incoming_window = s.remote_incoming_window.saturating_sub(1);
    if len <= frame_room {
        close_frame(buf, frame);
        return;
    }
    // Too long for one frame: split. The message is moved out and written
    // back frame by frame (a large message only; the common case above).
    let message: Vec<u8> = buf.drain(body..).collect();
    buf.truncate(first);
    let mut chunks = message.chunks(frame_room.max(1)).peekable();
    let mut first_frame = true;
    while let Some(chunk) = chunks.next() {
        let more = chunks.peek().is_some();
        let (frame, size_at) = open(buf, s.channel, TRANSFER, 6);
        put_uint(buf, handle);
        if first_frame {
            put_uint(buf, delivery_id);
            buf.extend_from_slice(&[VBIN8, 4]);
            buf.extend_from_slice(&delivery_id.to_be_bytes());
            buf.push(UINT0);
        } else {
            buf.extend_from_slice(&[NULL, NULL, NULL]);
        }
        buf.push(if settled { TRUE } else { FALSE });
        buf.push(if more { TRUE } else { FALSE });
        close_list(buf, size_at);
        buf.extend_from_slice(chunk);
        close_frame(buf, frame);
        if !first_frame {
            s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
            s.remote_incoming_window = s.remote_incoming_window.saturating_sub(1);
        }
        first_frame = false;
    }
}

/// A flow with the session's state and one link's (2.7.4).
pub(super) fn write_flow(
    buf: &mut Vec<u8>,
    s: &Session,
    handle: u32,
    delivery_count: u32,
    credit: u32,
    available: u32,
    drain: bool,
) {
    let (frame, size_at) = open(buf, s.channel, FLOW, 9);
    put_uint(buf, s.next_incoming_id);
    put_uint(buf, s.incoming_window);
    put_uint(buf, s.next_outgoing_id);
    // weft's outgoing window: it sends as the client's window allows.
    put_uint(buf, u32::MAX);
    put_uint(buf, handle);
    put_uint(buf, delivery_count);
    put_uint(buf, credit);
    put_uint(buf, available);
    buf.push(if drain { TRUE } else { FALSE });
    close_list(buf, size_at);
    close_frame(buf, frame);
}

/// weft (role sender) settles `first..=last` with the client's outcome:
/// the answer to a client that gave a terminal outcome without settling
/// (rcv-settle-mode second; 3.4: the sender settles with that outcome).
pub(super) fn write_disposition(
    buf: &mut Vec<u8>,
    channel: u16,
    first: u32,
    last: u32,
    outcome: Outcome,
) {
    let (frame, size_at) = open(buf, channel, DISPOSITION, 5);
    buf.push(FALSE); // role: sender
    put_uint(buf, first);
    put_uint(buf, last);
    buf.push(TRUE);
    match outcome {
        Outcome::Accepted => buf.extend_from_slice(&[DESCRIBED, SMALL_ULONG, ACCEPTED, LIST0]),
        Outcome::Rejected => buf.extend_from_slice(&[DESCRIBED, SMALL_ULONG, REJECTED, LIST0]),
        Outcome::Released => buf.extend_from_slice(&[DESCRIBED, SMALL_ULONG, RELEASED, LIST0]),
        Outcome::Modified {
            delivery_failed,
            undeliverable_here,
        } => buf.extend_from_slice(&[
            DESCRIBED,
            SMALL_ULONG,
            MODIFIED,
            LIST8,
            3,
            2,
            if delivery_failed { TRUE } else { FALSE },
            if undeliverable_here { TRUE } else { FALSE },
        ]),
    }
    close_list(buf, size_at);
    close_frame(buf, frame);
}
